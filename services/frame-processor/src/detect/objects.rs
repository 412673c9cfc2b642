//! Object detection: foreground segmentation and connected components, classified by shape.
//!
//! Foreground is every pixel whose chroma (max minus min channel) exceeds a threshold: the
//! cameras this service is built for look at low-saturation scenes (floors, walls, roads)
//! where the things of interest are vivid. Regions smaller than a fraction of the frame are
//! noise. Each region is classified by the nearest shape prototype in (log aspect ratio,
//! fill ratio) space: tall and fairly full is a `person`, wide and full a `vehicle`, round
//! (aspect 1, fill pi/4) a `ball`; the confidence falls with the distance to the prototype,
//! and regions that fit no prototype are not reported.

use crate::detect::segment::{Component, Mask, chroma};
use crate::detect::{Detection, Detector, Stage, StageInput};

/// Finds persons, vehicles and balls.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectDetector {
    /// Pixels with a larger chroma are foreground.
    pub chroma_threshold: u8,
    /// Regions smaller than this fraction of the frame are ignored.
    pub min_area_fraction: f64,
    /// Regions whose best class scores below this are not reported.
    pub min_confidence: f32,
}

impl Default for ObjectDetector {
    fn default() -> ObjectDetector {
        ObjectDetector {
            chroma_threshold: 40,
            min_area_fraction: 1.0 / 1500.0,
            min_confidence: 0.25,
        }
    }
}

/// A class's shape: aspect ratio (height / width) and fill ratio of its bounding box.
struct Prototype {
    label: &'static str,
    aspect: f64,
    fill: f64,
}

const PROTOTYPES: [Prototype; 3] = [
    Prototype {
        label: "person",
        aspect: 2.8,
        fill: 0.87,
    },
    Prototype {
        label: "vehicle",
        aspect: 0.37,
        fill: 0.97,
    },
    Prototype {
        label: "ball",
        aspect: 1.0,
        fill: std::f64::consts::FRAC_PI_4,
    },
];

/// How far from a prototype a shape may be, per feature, for one unit of distance.
const ASPECT_SCALE: f64 = 0.35;
const FILL_SCALE: f64 = 0.1;

impl ObjectDetector {
    /// The foreground mask of an image.
    pub fn foreground(&self, image: &image::RgbImage) -> Mask {
        Mask::from_rule(image, |pixel| chroma(pixel) > self.chroma_threshold)
    }

    /// The best class of a region and its confidence.
    pub fn classify(component: &Component) -> (&'static str, f32) {
        let aspect = component.aspect().ln();
        let fill = component.fill();
        PROTOTYPES
            .iter()
            .map(|prototype| {
                let da = (aspect - prototype.aspect.ln()) / ASPECT_SCALE;
                let df = (fill - prototype.fill) / FILL_SCALE;
                let confidence = (-(da * da + df * df) / 2.0).exp();
                (prototype.label, confidence as f32)
            })
            .fold(("unknown", 0.0), |best, candidate| {
                if candidate.1 > best.1 {
                    candidate
                } else {
                    best
                }
            })
    }
}

impl Detector for ObjectDetector {
    fn stage(&self) -> Stage {
        Stage::Objects
    }

    fn detect(&self, input: &StageInput<'_>) -> Vec<Detection> {
        let image = input.image;
        let frame_area = f64::from(image.width()) * f64::from(image.height());
        let min_area = (frame_area * self.min_area_fraction).max(12.0) as u32;
        self.foreground(image)
            .components(min_area)
            .iter()
            .filter_map(|component| {
                let (label, confidence) = ObjectDetector::classify(component);
                (confidence >= self.min_confidence).then(|| Detection {
                    label: label.to_owned(),
                    confidence: (confidence * 1000.0).round() / 1000.0,
                    bbox: component.bbox,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use image::{Rgb, RgbImage};

    use super::*;

    fn grey_frame() -> RgbImage {
        RgbImage::from_fn(200, 150, |x, y| {
            let v = 110 + ((x * 7 + y * 13) % 9) as u8;
            Rgb([v, v + 2, v])
        })
    }

    fn rect(image: &mut RgbImage, x0: u32, y0: u32, w: u32, h: u32, color: [u8; 3]) {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                image.put_pixel(x, y, Rgb(color));
            }
        }
    }

    fn disc(image: &mut RgbImage, cx: f32, cy: f32, r: f32, color: [u8; 3]) {
        for y in 0..image.height() {
            for x in 0..image.width() {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                if dx * dx + dy * dy <= r * r {
                    image.put_pixel(x, y, Rgb(color));
                }
            }
        }
    }

    fn detect(image: &RgbImage) -> Vec<Detection> {
        ObjectDetector::default().detect(&StageInput::new(image, None))
    }

    #[test]
    fn a_grey_frame_has_no_objects() {
        assert!(detect(&grey_frame()).is_empty());
    }

    #[test]
    fn shapes_are_classified_by_aspect_and_fill() {
        let mut image = grey_frame();
        rect(&mut image, 10, 20, 20, 56, [40, 90, 200]);
        rect(&mut image, 60, 30, 70, 26, [220, 180, 30]);
        disc(&mut image, 160.0, 100.0, 14.0, [210, 50, 200]);
        let mut labels: Vec<_> = detect(&image)
            .into_iter()
            .map(|d| (d.label, d.bbox.x))
            .collect();
        labels.sort_by_key(|(_, x)| *x);
        let labels: Vec<_> = labels.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["person", "vehicle", "ball"]);
    }

    #[test]
    fn the_box_is_the_region_extent() {
        let mut image = grey_frame();
        rect(&mut image, 60, 30, 70, 26, [220, 180, 30]);
        let detections = detect(&image);
        assert_eq!(detections.len(), 1);
        assert_eq!(
            detections[0].bbox,
            crate::detect::BoundingBox {
                x: 60,
                y: 30,
                width: 70,
                height: 26
            }
        );
        assert!(detections[0].confidence > 0.5, "{detections:?}");
    }

    #[test]
    fn specks_and_odd_shapes_are_not_reported() {
        let mut image = grey_frame();
        rect(&mut image, 5, 5, 3, 3, [255, 0, 0]);
        // A thin diagonal line: neither tall, wide nor round and barely filled.
        for i in 0..60 {
            image.put_pixel(100 + i, 40 + i, Rgb([0, 0, 255]));
            image.put_pixel(101 + i, 40 + i, Rgb([0, 0, 255]));
        }
        assert!(detect(&image).is_empty(), "{:?}", detect(&image));
    }
}
