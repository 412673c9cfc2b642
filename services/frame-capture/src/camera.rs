//! A camera: renders its scene at the configured rate and delivers every frame, dropping
//! frames instead of queueing them when the processor falls behind.
//!
//! Each frame gets a [`FrameId`], [`FrameMetadata`] and a root span `capture` (attributes
//! `frame.id`, `camera.id`, `frame.sequence`, `frame.width`, `frame.height`,
//! `frame.format`, `frame.size_bytes`, `objects.count`) that covers rendering, encoding
//! and delivery, so the delivery's client span and everything downstream share its trace.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use frame_tracking::{FrameId, FrameMetadata};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::config::Encoding;
use crate::delivery::{CapturedFrame, Delivery, DeliveryError};
use crate::scene::{RenderedFrame, Scene};
use crate::stats::{DropReason, Stats};

/// The `source` part of the frame ids this service generates.
pub const SOURCE: &str = "synthetic";

/// One synthetic camera.
#[derive(Debug)]
pub struct Camera {
    camera_id: String,
    index: usize,
    scene: Scene,
    encoding: Encoding,
    delivery: Delivery,
    stats: Arc<Stats>,
}

/// Why a frame was not captured and delivered.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The camera id cannot make a frame id.
    #[error("cannot make a frame id: {0}")]
    Id(#[from] frame_tracking::FrameIdError),
    /// Rendering or encoding failed.
    #[error("cannot render the frame: {0}")]
    Render(String),
    /// Delivery failed.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// How a camera runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Frames per second.
    pub fps: f64,
    /// Frames in delivery at once; a frame due beyond that is dropped.
    pub max_in_flight: usize,
}

impl Camera {
    /// Camera number `index` of `stats`, rendering `scene`.
    pub fn new(
        index: usize,
        scene: Scene,
        encoding: Encoding,
        delivery: Delivery,
        stats: Arc<Stats>,
    ) -> Option<Camera> {
        let camera_id = stats.camera(index)?.camera_id().to_owned();
        Some(Camera {
            camera_id,
            index,
            scene,
            encoding,
            delivery,
            stats,
        })
    }

    /// The camera's id.
    pub fn camera_id(&self) -> &str {
        &self.camera_id
    }

    /// Captures frame `sequence` and delivers it, counting the outcome.
    pub async fn capture(self: &Arc<Self>, sequence: u64) -> Result<FrameId, CaptureError> {
        let frame_id = FrameId::generate(&self.camera_id, SOURCE)?;
        let (width, height) = (self.scene.config().width, self.scene.config().height);
        // Integers are recorded as i64: OpenTelemetry has no unsigned attribute type.
        let span = tracing::info_span!(
            parent: None,
            "capture",
            frame.id = frame_id.as_str(),
            camera.id = self.camera_id.as_str(),
            frame.sequence = sequence as i64,
            frame.width = i64::from(width),
            frame.height = i64::from(height),
            frame.format = self.encoding.as_str(),
            frame.size_bytes = Empty,
            objects.count = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        let outcome = self
            .capture_in_span(frame_id, sequence)
            .instrument(span.clone())
            .await;
        if let Err(error) = &outcome {
            if let Some(counters) = self.stats.camera(self.index) {
                counters.dropped(DropReason::Error);
            }
            let error_type = match error {
                CaptureError::Delivery(_) => "delivery",
                _ => "capture",
            };
            span.record("error.type", error_type);
            span.record("otel.status_code", "ERROR");
            span.in_scope(|| tracing::warn!(error = %error, "frame dropped"));
        }
        outcome.map(|()| frame_id)
    }

    async fn capture_in_span(
        self: &Arc<Self>,
        frame_id: FrameId,
        sequence: u64,
    ) -> Result<(), CaptureError> {
        let this = Arc::clone(self);
        let span = tracing::Span::current();
        let frame = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            this.render(frame_id, sequence)
        })
        .await
        .map_err(|error| CaptureError::Render(error.to_string()))??;
        let current = tracing::Span::current();
        current.record("frame.size_bytes", frame.encoded.len() as i64);
        current.record("objects.count", frame.truth.len() as i64);
        if let Some(counters) = self.stats.camera(self.index) {
            counters.captured(frame.encoded.len() as u64, &frame.truth);
        }
        self.delivery.deliver(&frame).await?;
        if let Some(counters) = self.stats.camera(self.index) {
            counters.delivered();
        }
        Ok(())
    }

    fn render(&self, frame_id: FrameId, sequence: u64) -> Result<CapturedFrame, CaptureError> {
        let RenderedFrame { image, truth, .. } = self.scene.render(sequence);
        let encoded = match self.encoding {
            Encoding::Rgb24 => image.as_raw().clone(),
            Encoding::Png => {
                let mut png = Vec::new();
                image
                    .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                    .map_err(|error| CaptureError::Render(error.to_string()))?;
                png
            }
        };
        let mut metadata = FrameMetadata::new(frame_id);
        metadata.width = image.width();
        metadata.height = image.height();
        metadata.format = self.encoding.as_str().to_owned();
        metadata.size_bytes = encoded.len() as u64;
        metadata.sequence = sequence;
        metadata.source = SOURCE.to_owned();
        // Ground truth travels with the frame so a consumer can score detections.
        if let Ok(json) = serde_json::to_string(&truth) {
            metadata.attributes.insert("ground_truth".to_owned(), json);
        }
        Ok(CapturedFrame {
            metadata,
            encoding: self.encoding,
            encoded,
            truth,
        })
    }

    /// Captures at `pace` until `stop` turns true, then waits for frames in delivery.
    ///
    /// A tick that finds `max_in_flight` frames still in delivery drops its frame
    /// (reason `backpressure`) before rendering it, so a slow processor costs neither
    /// memory nor CPU here. Ticks missed because the runtime was busy are skipped, not
    /// caught up in a burst.
    pub async fn run(self: Arc<Self>, pace: Pace, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(pace.max_in_flight.max(1)));
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / pace.fps));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut deliveries = JoinSet::new();
        let mut window = (Instant::now(), 0u32);
        for sequence in 0u64.. {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
            while deliveries.try_join_next().is_some() {}
            let counters = self.stats.camera(self.index);
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => {
                    let camera = Arc::clone(&self);
                    deliveries.spawn(async move {
                        // Errors are counted and logged inside `capture`.
                        let _ = camera.capture(sequence).await;
                        drop(slot);
                    });
                    window.1 += 1;
                }
                Err(_) => {
                    if let Some(counters) = counters {
                        counters.dropped(DropReason::Backpressure);
                    }
                }
            }
            let elapsed = window.0.elapsed();
            if elapsed >= Duration::from_secs(1) {
                if let Some(counters) = counters {
                    counters.set_fps(f64::from(window.1) / elapsed.as_secs_f64());
                }
                window = (Instant::now(), 0);
            }
        }
        while deliveries.join_next().await.is_some() {}
        if let Some(counters) = self.stats.camera(self.index) {
            counters.set_fps(0.0);
        }
    }
}
