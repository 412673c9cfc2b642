//! Face detection: skin-tone regions verified by a face pattern.
//!
//! Candidates are connected regions of skin-tone pixels (a colour rule in RGB: red clearly
//! above green, green clearly above blue, bright red). A candidate is a face when it is
//! roughly oval (aspect ratio and fill), has a dark eye in each half of its upper part and
//! a mouth (dark or red, non-skin pixels) in the middle of its lower part. The confidence
//! adds up how well each part of the pattern matched.

use image::{Rgb, RgbImage};

use crate::detect::segment::{Component, Mask, luma};
use crate::detect::{BoundingBox, Detection, Detector, Stage, StageInput};

/// Finds faces.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceDetector {
    /// Skin regions smaller than this many pixels are ignored.
    pub min_area: u32,
    /// Candidates scoring below this are not reported.
    pub min_confidence: f32,
}

impl Default for FaceDetector {
    fn default() -> FaceDetector {
        FaceDetector {
            min_area: 40,
            min_confidence: 0.6,
        }
    }
}

/// The skin-tone rule.
pub fn is_skin(pixel: &Rgb<u8>) -> bool {
    let [r, g, b] = pixel.0.map(i32::from);
    r >= 165 && (22..=85).contains(&(r - g)) && (12..=65).contains(&(g - b))
}

fn is_eye(pixel: &Rgb<u8>) -> bool {
    !is_skin(pixel) && luma(pixel) < 90
}

fn is_mouth(pixel: &Rgb<u8>) -> bool {
    let [r, g, _] = pixel.0.map(i32::from);
    !is_skin(pixel) && (luma(pixel) < 90 || r - g > 60)
}

impl FaceDetector {
    /// Scores a skin region against the face pattern; `None` when it is no face.
    fn score(&self, image: &RgbImage, component: &Component) -> Option<f32> {
        let aspect = component.aspect();
        let fill = component.fill();
        if !(0.6..=2.0).contains(&aspect) || !(0.45..=0.95).contains(&fill) {
            return None;
        }
        let b = component.bbox;
        let part = |fx0: f64, fx1: f64, fy0: f64, fy1: f64| BoundingBox {
            x: b.x + (f64::from(b.width) * fx0) as u32,
            y: b.y + (f64::from(b.height) * fy0) as u32,
            width: ((f64::from(b.width) * (fx1 - fx0)).ceil() as u32).max(1),
            height: ((f64::from(b.height) * (fy1 - fy0)).ceil() as u32).max(1),
        };
        let count = |region: BoundingBox, rule: fn(&Rgb<u8>) -> bool| {
            let mut found = 0u32;
            for y in region.y..(region.y + region.height).min(image.height()) {
                for x in region.x..(region.x + region.width).min(image.width()) {
                    found += u32::from(rule(image.get_pixel(x, y)));
                }
            }
            found
        };
        let left_eye = count(part(0.05, 0.5, 0.1, 0.6), is_eye);
        let right_eye = count(part(0.5, 0.95, 0.1, 0.6), is_eye);
        if left_eye == 0 || right_eye == 0 {
            return None;
        }
        let mouth = count(part(0.2, 0.8, 0.6, 0.95), is_mouth);
        let symmetry = left_eye.min(right_eye) as f32 / left_eye.max(right_eye) as f32;
        let roundness = 1.0 - ((aspect.ln().abs() / 0.7).min(1.0) as f32);
        let score = 0.4 + 0.2 * symmetry + if mouth > 0 { 0.25 } else { 0.0 } + 0.15 * roundness;
        Some(score.min(1.0))
    }
}

impl Detector for FaceDetector {
    fn stage(&self) -> Stage {
        Stage::Faces
    }

    fn detect(&self, input: &StageInput<'_>) -> Vec<Detection> {
        let image = input.image;
        Mask::from_rule(image, is_skin)
            .components(self.min_area)
            .iter()
            .filter_map(|component| {
                let confidence = self.score(image, component)?;
                (confidence >= self.min_confidence).then(|| Detection {
                    label: "face".to_owned(),
                    confidence: (confidence * 1000.0).round() / 1000.0,
                    bbox: component.bbox,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKIN: [u8; 3] = [225, 175, 140];

    fn ellipse(image: &mut RgbImage, cx: f32, cy: f32, rx: f32, ry: f32, color: [u8; 3]) {
        for y in 0..image.height() {
            for x in 0..image.width() {
                let dx = (x as f32 + 0.5 - cx) / rx;
                let dy = (y as f32 + 0.5 - cy) / ry;
                if dx * dx + dy * dy <= 1.0 {
                    image.put_pixel(x, y, Rgb(color));
                }
            }
        }
    }

    /// A skin oval at (cx, cy), with eyes and mouth when `pattern` is set.
    fn head(image: &mut RgbImage, cx: f32, cy: f32, pattern: bool) {
        ellipse(image, cx, cy, 12.0, 13.0, SKIN);
        if pattern {
            ellipse(image, cx - 5.0, cy - 3.0, 2.5, 2.5, [30, 30, 30]);
            ellipse(image, cx + 5.0, cy - 3.0, 2.5, 2.5, [30, 30, 30]);
            for x in (cx - 5.0) as u32..(cx + 5.0) as u32 {
                image.put_pixel(x, (cy + 6.0) as u32, Rgb([140, 50, 50]));
            }
        }
    }

    fn detect(image: &RgbImage) -> Vec<Detection> {
        FaceDetector::default().detect(&StageInput::new(image, None))
    }

    #[test]
    fn a_skin_oval_with_eyes_and_mouth_is_a_face() {
        let mut image = RgbImage::from_pixel(120, 80, Rgb([115, 118, 115]));
        head(&mut image, 40.0, 40.0, true);
        let faces = detect(&image);
        assert_eq!(faces.len(), 1, "{faces:?}");
        let bbox = faces[0].bbox;
        assert!(
            (27..=29).contains(&bbox.x) && (26..=28).contains(&bbox.y),
            "{bbox:?}"
        );
        assert!(faces[0].confidence > 0.9, "{faces:?}");
    }

    #[test]
    fn a_plain_skin_oval_is_not_a_face() {
        let mut image = RgbImage::from_pixel(120, 80, Rgb([115, 118, 115]));
        head(&mut image, 40.0, 40.0, false);
        assert!(detect(&image).is_empty());
    }

    #[test]
    fn vivid_non_skin_colours_are_not_skin() {
        for color in [
            [200, 60, 50],
            [220, 180, 30],
            [240, 140, 20],
            [210, 50, 200],
        ] {
            assert!(!is_skin(&Rgb(color)), "{color:?}");
        }
        assert!(is_skin(&Rgb(SKIN)));
    }

    #[test]
    fn each_face_is_found_once() {
        let mut image = RgbImage::from_pixel(160, 80, Rgb([115, 118, 115]));
        head(&mut image, 30.0, 40.0, true);
        head(&mut image, 110.0, 40.0, true);
        assert_eq!(detect(&image).len(), 2);
    }
}
