//! Detection: the [`Detector`] trait and the three stages that analyse a frame's pixels.
//!
//! - [`objects::ObjectDetector`]: foreground segmentation (saturated pixels against a
//!   low-saturation background) and connected components, classified by shape;
//! - [`faces::FaceDetector`]: skin-tone regions verified by a pattern (two dark eyes in the
//!   upper half, a dark mouth below);
//! - [`gestures::GestureDetector`]: motion of foreground regions between the camera's
//!   previous frame and this one, reported as swipes.
//!
//! Every stage is a [`Detector`]; the pipeline runs them in parallel, each in its own span.
//!
//! ```
//! use frame_processor::detect::{Detector, StageInput, objects::ObjectDetector};
//! use image::{Rgb, RgbImage};
//!
//! // A grey frame with one blue upright rectangle: a person-shaped region.
//! let mut image = RgbImage::from_pixel(120, 120, Rgb([120, 120, 120]));
//! for y in 20..90 {
//!     for x in 40..65 {
//!         image.put_pixel(x, y, Rgb([40, 90, 200]));
//!     }
//! }
//! let detections = ObjectDetector::default().detect(&StageInput::new(&image, None));
//! assert_eq!(detections[0].label, "person");
//! ```

pub mod faces;
pub mod gestures;
pub mod objects;
pub mod segment;

use std::fmt;
use std::sync::Arc;

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// The stages of detection; each has its span name, metric label and detection type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Objects (persons, vehicles, balls).
    Objects,
    /// Faces.
    Faces,
    /// Gestures (motion across frames).
    Gestures,
}

impl Stage {
    /// Every stage, in response order.
    pub const ALL: [Stage; 3] = [Stage::Objects, Stage::Faces, Stage::Gestures];

    /// The `stage` label of the duration histogram.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Objects => "objects",
            Stage::Faces => "faces",
            Stage::Gestures => "gestures",
        }
    }

    /// The `type` label of the detections counter.
    pub fn detection_type(self) -> &'static str {
        match self {
            Stage::Objects => "object",
            Stage::Faces => "face",
            Stage::Gestures => "gesture",
        }
    }
}

/// An axis-aligned box in pixels; `x`, `y` is the top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundingBox {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl BoundingBox {
    /// The box scaled by an integer factor (thumbnail to full-resolution coordinates).
    pub fn scaled(&self, factor: u32) -> BoundingBox {
        BoundingBox {
            x: self.x * factor,
            y: self.y * factor,
            width: self.width * factor,
            height: self.height * factor,
        }
    }
}

/// One thing a stage found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// What it is: an object class (`person`, `vehicle`, `ball`), `face`, or a gesture
    /// (`swipe_left`, `swipe_right`, `swipe_up`, `swipe_down`).
    pub label: String,
    /// How sure the stage is, 0 to 1.
    pub confidence: f32,
    /// Where it is, in the frame's pixels.
    pub bbox: BoundingBox,
}

/// A downscaled copy of a frame (at most [`Thumbnail::MAX_WIDTH`] wide) for analyses that
/// need less resolution, kept per camera for motion.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail {
    /// The pixels.
    pub image: RgbImage,
    /// How many frame pixels one thumbnail pixel spans per side.
    pub factor: u32,
}

impl Thumbnail {
    /// The widest a thumbnail gets.
    pub const MAX_WIDTH: u32 = 160;

    /// The thumbnail of `image`.
    pub fn of(image: &RgbImage) -> Thumbnail {
        let factor = image.width().div_ceil(Self::MAX_WIDTH).max(1);
        Thumbnail {
            image: segment::downscale(image, factor),
            factor,
        }
    }
}

/// What a stage sees: the frame, its thumbnail, and the thumbnail of the camera's previous
/// frame when there is one.
#[derive(Debug, Clone)]
pub struct StageInput<'a> {
    /// The frame.
    pub image: &'a RgbImage,
    /// The frame's thumbnail (shared by the stages of the frame, and kept afterwards as
    /// the camera's previous frame).
    pub thumbnail: Arc<Thumbnail>,
    /// The camera's previous frame, downscaled the same way.
    pub previous: Option<Arc<Thumbnail>>,
}

impl<'a> StageInput<'a> {
    /// The input for `image`, computing its thumbnail.
    pub fn new(image: &'a RgbImage, previous: Option<Arc<Thumbnail>>) -> StageInput<'a> {
        StageInput {
            image,
            thumbnail: Arc::new(Thumbnail::of(image)),
            previous,
        }
    }
}

/// A detection stage. Implementations analyse pixels only and must not panic on any image.
///
/// ```
/// use frame_processor::detect::{Detection, Detector, Stage, StageInput};
///
/// /// Reports the whole frame as one object when it is mostly bright.
/// #[derive(Debug)]
/// struct Brightness;
///
/// impl Detector for Brightness {
///     fn stage(&self) -> Stage {
///         Stage::Objects
///     }
///     fn detect(&self, input: &StageInput<'_>) -> Vec<Detection> {
///         let bright = input.image.pixels().filter(|p| p.0[0] > 200).count();
///         if bright * 2 > input.image.pixels().len() {
///             vec![Detection {
///                 label: "light".into(),
///                 confidence: 1.0,
///                 bbox: frame_processor::detect::BoundingBox {
///                     x: 0,
///                     y: 0,
///                     width: input.image.width(),
///                     height: input.image.height(),
///                 },
///             }]
///         } else {
///             Vec::new()
///         }
///     }
/// }
/// ```
pub trait Detector: Send + Sync + fmt::Debug {
    /// Which stage this detector implements (its span, metric label and result field).
    fn stage(&self) -> Stage;

    /// Analyses the frame.
    fn detect(&self, input: &StageInput<'_>) -> Vec<Detection>;
}

/// The default detectors: one per stage.
pub fn default_detectors() -> Vec<Arc<dyn Detector>> {
    vec![
        Arc::new(objects::ObjectDetector::default()),
        Arc::new(faces::FaceDetector::default()),
        Arc::new(gestures::GestureDetector::default()),
    ]
}
