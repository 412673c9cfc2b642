//! `POST /simulate`: synthetic frames generated server-side (with frame-capture's scene
//! renderer) and processed like any other frame, returned with their ground truth so a
//! client can compare.

use std::sync::Arc;

use frame_capture::scene::{GroundTruth, Scene, SceneConfig};
use frame_tracking::FrameId;
use serde::{Deserialize, Serialize};

use crate::model::{FrameError, FrameInput, FrameResult, PixelFormat};
use crate::pipeline::{ProcessError, Processor};

/// The most frames one request may simulate.
pub const MAX_FRAMES: u32 = 100;

/// The body of `POST /simulate`; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateRequest {
    /// The camera id of the generated frames (default `sim01`).
    #[serde(default = "default_camera")]
    pub camera_id: String,
    /// How many consecutive frames (default 10, at most [`MAX_FRAMES`]).
    #[serde(default = "default_frames")]
    pub frames: u32,
    /// Frame width (default 320).
    #[serde(default = "default_width")]
    pub width: u32,
    /// Frame height (default 240).
    #[serde(default = "default_height")]
    pub height: u32,
    /// Moving objects in the scene (default 3).
    #[serde(default = "default_objects")]
    pub objects: usize,
    /// The scene's seed (default 1).
    #[serde(default = "default_seed")]
    pub seed: u64,
}

/// One simulated frame: what was there and what was found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulatedFrame {
    /// The frame's index in the scene.
    pub index: u64,
    /// What the scene drew.
    pub ground_truth: Vec<GroundTruth>,
    /// What the processor found.
    pub result: FrameResult,
}

/// The response of `POST /simulate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulateResponse {
    /// The camera id used.
    pub camera_id: String,
    /// Every frame, in order.
    pub frames: Vec<SimulatedFrame>,
}

fn default_camera() -> String {
    "sim01".to_owned()
}
fn default_frames() -> u32 {
    10
}
fn default_width() -> u32 {
    320
}
fn default_height() -> u32 {
    240
}
fn default_objects() -> usize {
    3
}
fn default_seed() -> u64 {
    1
}

/// Generates and processes the frames, one after the other (gestures need the order).
pub async fn simulate(
    processor: &Arc<Processor>,
    request: SimulateRequest,
) -> Result<SimulateResponse, ProcessError> {
    let invalid = |message: String| ProcessError::Frame(FrameError::Invalid(message));
    if request.frames == 0 || request.frames > MAX_FRAMES {
        return Err(invalid(format!(
            "frames is {}, expected 1 to {MAX_FRAMES}",
            request.frames
        )));
    }
    let config = SceneConfig {
        width: request.width,
        height: request.height,
        objects: request.objects,
        seed: request.seed,
    };
    let scene = Scene::new(config).map_err(|error| invalid(error.to_string()))?;
    let mut frames = Vec::with_capacity(request.frames as usize);
    for index in 0..u64::from(request.frames) {
        let frame_id = FrameId::generate(&request.camera_id, "sim")
            .map_err(|error| invalid(format!("invalid camera_id: {error}")))?;
        let scene = scene.clone();
        let rendered = tokio::task::spawn_blocking(move || scene.render(index))
            .await
            .map_err(|error| ProcessError::Internal(format!("rendering failed: {error}")))?;
        let input = FrameInput {
            frame_id,
            camera_id: request.camera_id.clone(),
            width: request.width,
            height: request.height,
            format: PixelFormat::Rgb24,
            timestamp: None,
            encoded: rendered.image.into_raw(),
            // The scene's truth is known here, so simulated frames are scored too.
            ground_truth: Some(rendered.truth.clone()),
        };
        let result = processor.process(input).await?;
        frames.push(SimulatedFrame {
            index,
            ground_truth: rendered.truth,
            result,
        });
    }
    Ok(SimulateResponse {
        camera_id: request.camera_id,
        frames,
    })
}
