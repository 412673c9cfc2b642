//! The wire types of the API and the validation that turns a request into pixels.
//!
//! `POST /process` takes the detektor example's shape plus the pixels:
//!
//! ```json
//! {
//!   "frame_id": "...", "camera_id": "cam01",
//!   "frame_data": {"width": 640, "height": 480, "format": "png", "timestamp": 1717171717.5},
//!   "image": "<base64 of the PNG/JPEG file, or of raw rgb24 rows>"
//! }
//! ```
//!
//! A `metadata` field (the frame's `FrameMetadata`) may follow; its
//! `attributes.ground_truth` makes the frame scored, and nothing in it can fail the request.
//!
//! Every problem is reported naming the field: a missing `image`, a raw size that is not
//! `width x height x 3`, a PNG that does not decode or whose size differs from
//! `frame_data`.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::str::FromStr;

use base64::Engine as _;
use frame_capture::scene::GroundTruth;
use frame_tracking::FrameId;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::detect::{Detection, Stage};

/// The largest width or height accepted.
pub const MAX_SIDE: u32 = 4096;

/// The body of `POST /process`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessRequest {
    /// The frame's id (a `FrameId`, which carries the camera id).
    pub frame_id: String,
    /// The camera that captured it; must match the id's camera.
    pub camera_id: String,
    /// Size, pixel format and capture time.
    pub frame_data: FrameData,
    /// The pixels, base64: a PNG or JPEG file, or raw rgb24 rows.
    #[serde(default)]
    pub image: Option<String>,
    /// The frame's `FrameMetadata`, as frame-capture sends it. Only
    /// `attributes.ground_truth` is read (see [`crate::accuracy`]), leniently: any JSON is
    /// accepted here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// What the request says about the pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameData {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `rgb24`, `png` or `jpeg`.
    pub format: String,
    /// Capture time, seconds since the Unix epoch.
    #[serde(default)]
    pub timestamp: Option<f64>,
}

/// How the pixels are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelFormat {
    /// Raw 8-bit RGB rows, `width x height x 3` bytes.
    Rgb24,
    /// A PNG file.
    Png,
    /// A JPEG file.
    Jpeg,
}

impl PixelFormat {
    /// The format's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Png => "png",
            PixelFormat::Jpeg => "jpeg",
        }
    }
}

impl FromStr for PixelFormat {
    type Err = ();

    fn from_str(value: &str) -> Result<PixelFormat, ()> {
        match value.to_ascii_lowercase().as_str() {
            "rgb24" | "rgb8" | "raw" => Ok(PixelFormat::Rgb24),
            "png" => Ok(PixelFormat::Png),
            "jpeg" | "jpg" => Ok(PixelFormat::Jpeg),
            _ => Err(()),
        }
    }
}

/// A request that passed validation: typed fields and still-encoded pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameInput {
    /// The frame's id.
    pub frame_id: FrameId,
    /// The camera.
    pub camera_id: String,
    /// Declared width.
    pub width: u32,
    /// Declared height.
    pub height: u32,
    /// Encoding of `encoded`.
    pub format: PixelFormat,
    /// Capture time, seconds since the Unix epoch.
    pub timestamp: Option<f64>,
    /// The pixel bytes, base64-decoded but not yet image-decoded.
    pub encoded: Vec<u8>,
    /// What the frame shows, when its metadata says (synthetic frames): its detections are
    /// then scored ([`crate::accuracy`]).
    pub ground_truth: Option<Vec<GroundTruth>>,
}

/// Why a request's frame cannot be used; every message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The request is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// The pixels are well-formed base64 but not a decodable image (422).
    #[error("{0}")]
    Undecodable(String),
}

impl ProcessRequest {
    /// Checks ids, sizes and format, and base64-decodes the pixels.
    pub fn validate(self) -> Result<FrameInput, FrameError> {
        let invalid = |message: String| FrameError::Invalid(message);
        let frame_id = FrameId::from_str(&self.frame_id)
            .map_err(|error| invalid(format!("invalid frame_id {:?}: {error}", self.frame_id)))?;
        if self.camera_id != frame_id.camera_id() {
            return Err(invalid(format!(
                "camera_id {:?} does not match the camera of frame_id ({:?})",
                self.camera_id,
                frame_id.camera_id()
            )));
        }
        let data = self.frame_data;
        for (field, value) in [("width", data.width), ("height", data.height)] {
            if value == 0 || value > MAX_SIDE {
                return Err(invalid(format!(
                    "frame_data.{field} is {value}, expected 1 to {MAX_SIDE}"
                )));
            }
        }
        let format = PixelFormat::from_str(&data.format).map_err(|()| {
            invalid(format!(
                "frame_data.format {:?} is not supported, expected rgb24, png or jpeg",
                data.format
            ))
        })?;
        let Some(image) = self.image else {
            return Err(invalid(
                "missing image: the request carries no pixels (field `image`, base64)".to_owned(),
            ));
        };
        let encoded = base64::engine::general_purpose::STANDARD
            .decode(image.trim())
            .map_err(|error| invalid(format!("image is not valid base64: {error}")))?;
        if encoded.is_empty() {
            return Err(invalid("image is empty".to_owned()));
        }
        if format == PixelFormat::Rgb24 {
            let expected = u64::from(data.width) * u64::from(data.height) * 3;
            if encoded.len() as u64 != expected {
                return Err(invalid(format!(
                    "image has {} bytes, but frame_data says {}x{} rgb24, which is {expected} bytes",
                    encoded.len(),
                    data.width,
                    data.height
                )));
            }
        }
        Ok(FrameInput {
            frame_id,
            camera_id: self.camera_id,
            width: data.width,
            height: data.height,
            format,
            timestamp: data.timestamp,
            encoded,
            ground_truth: self
                .metadata
                .as_ref()
                .and_then(crate::accuracy::ground_truth_of_metadata),
        })
    }
}

impl FrameInput {
    /// Decodes the pixels, checking them against the declared size.
    pub fn decode(&self) -> Result<RgbImage, FrameError> {
        let image = match self.format {
            PixelFormat::Rgb24 => RgbImage::from_raw(self.width, self.height, self.encoded.clone())
                .ok_or_else(|| {
                    FrameError::Invalid("image size does not match frame_data".to_owned())
                })?,
            PixelFormat::Png | PixelFormat::Jpeg => {
                let file_format = match self.format {
                    PixelFormat::Png => image::ImageFormat::Png,
                    _ => image::ImageFormat::Jpeg,
                };
                let mut reader =
                    image::ImageReader::with_format(Cursor::new(&self.encoded), file_format);
                // A small file can claim a huge image: bound what decoding may allocate.
                let mut limits = image::Limits::default();
                limits.max_image_width = Some(MAX_SIDE);
                limits.max_image_height = Some(MAX_SIDE);
                limits.max_alloc = Some(u64::from(MAX_SIDE) * u64::from(MAX_SIDE) * 4);
                reader.limits(limits);
                let decoded = reader.decode().map_err(|error| {
                    FrameError::Undecodable(format!(
                        "image is not a decodable {}: {error}",
                        self.format.as_str()
                    ))
                })?;
                // `into_rgb8` hands over the decoder's buffer when it is RGB8 already (PNG
                // and JPEG from the cameras are); `to_rgb8` copied it, a frame-sized
                // allocation per frame that glibc malloc often returned to the kernel and
                // faulted back in on the next frame (see the README's Overhead section).
                decoded.into_rgb8()
            }
        };
        if image.dimensions() != (self.width, self.height) {
            return Err(FrameError::Invalid(format!(
                "image is {}x{}, but frame_data says {}x{}",
                image.width(),
                image.height(),
                self.width,
                self.height
            )));
        }
        Ok(image)
    }
}

/// What one stage found, in the response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    /// How many detections.
    pub count: usize,
    /// The detections: label (class, `face` or gesture), confidence, box.
    pub items: Vec<Detection>,
    /// Time the stage took, in milliseconds.
    pub duration_ms: f64,
}

/// The detections of a frame, by stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detections {
    /// Objects (persons, vehicles, balls).
    pub objects: StageResult,
    /// Faces.
    pub faces: StageResult,
    /// Gestures (swipes).
    pub gestures: StageResult,
}

impl Detections {
    /// The result of `stage`.
    pub fn stage(&self, stage: Stage) -> &StageResult {
        match stage {
            Stage::Objects => &self.objects,
            Stage::Faces => &self.faces,
            Stage::Gestures => &self.gestures,
        }
    }
}

/// A frame's summary: totals and counts per label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// All detections of all stages.
    pub total_detections: usize,
    /// Detections per label (`person`, `face`, `swipe_left`, ...).
    pub labels: BTreeMap<String, usize>,
    /// The highest confidence of any detection, 0 when none.
    pub max_confidence: f32,
}

/// The result of processing one frame: the response of `POST /process` and
/// `GET /frames/{frame_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameResult {
    /// The frame's id.
    pub frame_id: String,
    /// The camera.
    pub camera_id: String,
    /// Always `processed`.
    pub status: String,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Capture time from the request, seconds since the Unix epoch.
    pub timestamp: Option<f64>,
    /// When processing finished, milliseconds since the Unix epoch.
    pub processed_at_ms: u64,
    /// Total processing time in milliseconds.
    pub processing_time_ms: f64,
    /// Detections by stage.
    pub detections: Detections,
    /// Totals.
    pub summary: Summary,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(format: &str, image: Option<Vec<u8>>) -> ProcessRequest {
        ProcessRequest {
            frame_id: FrameId::generate("cam01", "test").unwrap().to_string(),
            camera_id: "cam01".into(),
            frame_data: FrameData {
                width: 4,
                height: 2,
                format: format.into(),
                timestamp: None,
            },
            image: image.map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes)),
            metadata: None,
        }
    }

    fn invalid(request: ProcessRequest) -> String {
        match request.validate() {
            Err(FrameError::Invalid(message)) => message,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn raw_pixels_of_the_declared_size_decode() {
        let input = request("rgb24", Some(vec![7; 24])).validate().unwrap();
        let image = input.decode().unwrap();
        assert_eq!(image.dimensions(), (4, 2));
        assert_eq!(image.get_pixel(3, 1).0, [7, 7, 7]);
    }

    #[test]
    fn a_request_without_pixels_names_the_image_field() {
        assert!(invalid(request("rgb24", None)).contains("missing image"));
    }

    #[test]
    fn a_raw_size_mismatch_names_both_sizes() {
        let message = invalid(request("rgb24", Some(vec![0; 23])));
        assert!(
            message.contains("23 bytes") && message.contains("24 bytes"),
            "{message}"
        );
    }

    #[test]
    fn bad_ids_formats_and_sizes_are_named() {
        let mut bad = request("rgb24", Some(vec![0; 24]));
        bad.frame_id = "nope".into();
        assert!(invalid(bad).contains("frame_id"));
        let mut bad = request("rgb24", Some(vec![0; 24]));
        bad.camera_id = "cam02".into();
        assert!(invalid(bad).contains("camera_id"));
        assert!(invalid(request("gif", Some(vec![0; 24]))).contains("frame_data.format"));
        let mut bad = request("rgb24", Some(vec![0; 24]));
        bad.frame_data.width = 0;
        assert!(invalid(bad).contains("frame_data.width"));
        let mut bad = request("png", None);
        bad.image = Some("***".into());
        assert!(invalid(bad).contains("base64"));
    }

    #[test]
    fn an_undecodable_png_is_unprocessable() {
        let input = request("png", Some(b"not a png".to_vec()))
            .validate()
            .unwrap();
        match input.decode() {
            Err(FrameError::Undecodable(message)) => assert!(message.contains("png"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_png_of_another_size_is_rejected() {
        let mut png = Vec::new();
        RgbImage::new(5, 2)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let message = match request("png", Some(png)).validate().unwrap().decode() {
            Err(FrameError::Invalid(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(
            message.contains("5x2") && message.contains("4x2"),
            "{message}"
        );
    }
}
