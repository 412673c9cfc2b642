//! Gesture detection: how foreground regions moved since the camera's previous frame.
//!
//! Works on thumbnails. Foreground (chroma above a threshold) of the previous and the
//! current frame are joined; each connected region of the union holds one moving thing in
//! both frames. When the region has a similar amount of foreground in both frames, the
//! shift of its foreground centroid is the motion: a shift of at least `min_shift`
//! thumbnail pixels is a swipe in its dominant direction (`swipe_left`, `swipe_right`,
//! `swipe_up`, `swipe_down`). The confidence grows with the shift's length and with how
//! clearly one axis dominates. Without a previous frame there is no motion to report.

use crate::detect::segment::{Mask, chroma};
use crate::detect::{Detection, Detector, Stage, StageInput};

/// Finds swipes.
#[derive(Debug, Clone, PartialEq)]
pub struct GestureDetector {
    /// Pixels with a larger chroma are foreground.
    pub chroma_threshold: u8,
    /// The smallest centroid shift, in thumbnail pixels, that counts as motion.
    pub min_shift: f64,
    /// Regions smaller than this fraction of the thumbnail are ignored.
    pub min_area_fraction: f64,
}

impl Default for GestureDetector {
    fn default() -> GestureDetector {
        GestureDetector {
            chroma_threshold: 40,
            min_shift: 0.6,
            min_area_fraction: 1.0 / 1500.0,
        }
    }
}

/// The gesture a shift (`dx`, `dy`, y pointing down) is, by its dominant axis.
pub fn swipe(dx: f64, dy: f64) -> &'static str {
    if dx.abs() >= dy.abs() {
        if dx >= 0.0 {
            "swipe_right"
        } else {
            "swipe_left"
        }
    } else if dy >= 0.0 {
        "swipe_down"
    } else {
        "swipe_up"
    }
}

impl Detector for GestureDetector {
    fn stage(&self) -> Stage {
        Stage::Gestures
    }

    fn detect(&self, input: &StageInput<'_>) -> Vec<Detection> {
        let Some(previous) = &input.previous else {
            return Vec::new();
        };
        let current = &input.thumbnail;
        if previous.factor != current.factor
            || previous.image.dimensions() != current.image.dimensions()
        {
            return Vec::new();
        }
        let foreground = |image| Mask::from_rule(image, |p| chroma(p) > self.chroma_threshold);
        let now = foreground(&current.image);
        let before = foreground(&previous.image);
        let Some(union) = now.union(&before) else {
            return Vec::new();
        };
        let area = f64::from(union.width()) * f64::from(union.height());
        let min_area = (area * self.min_area_fraction).max(4.0) as u32;
        union
            .components(min_area)
            .iter()
            .filter_map(|component| {
                let (count_now, centre_now) = now.stats_in(&component.bbox);
                let (count_before, centre_before) = before.stats_in(&component.bbox);
                let (small, large) = (
                    count_now.min(count_before),
                    count_now.max(count_before).max(1),
                );
                if small * 2 < min_area || f64::from(small) / f64::from(large) < 0.5 {
                    return None;
                }
                let (dx, dy) = (
                    centre_now.0 - centre_before.0,
                    centre_now.1 - centre_before.1,
                );
                let length = dx.hypot(dy);
                if length < self.min_shift {
                    return None;
                }
                let dominance = dx.abs().max(dy.abs()) / (dx.abs() + dy.abs());
                let confidence = (length / (2.0 * self.min_shift)).min(1.0) * dominance;
                Some(Detection {
                    label: swipe(dx, dy).to_owned(),
                    confidence: ((confidence * 1000.0).round() / 1000.0) as f32,
                    bbox: component.bbox.scaled(current.factor),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use image::{Rgb, RgbImage};

    use super::*;
    use crate::detect::Thumbnail;

    fn frame_with_box(x0: u32, y0: u32) -> RgbImage {
        let mut image = RgbImage::from_pixel(320, 240, Rgb([118, 121, 118]));
        for y in y0..y0 + 30 {
            for x in x0..x0 + 30 {
                image.put_pixel(x, y, Rgb([40, 200, 220]));
            }
        }
        image
    }

    fn gestures(before: &RgbImage, now: &RgbImage) -> Vec<Detection> {
        let previous = Arc::new(Thumbnail::of(before));
        GestureDetector::default().detect(&StageInput::new(now, Some(previous)))
    }

    #[test]
    fn a_region_moving_right_is_a_swipe_right() {
        let found = gestures(&frame_with_box(100, 100), &frame_with_box(108, 102));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].label, "swipe_right");
        assert!(found[0].confidence > 0.7, "{found:?}");
        assert!(found[0].bbox.x <= 100 && found[0].bbox.x + found[0].bbox.width >= 138);
    }

    #[test]
    fn directions_follow_the_dominant_axis() {
        assert_eq!(
            gestures(&frame_with_box(100, 100), &frame_with_box(98, 80))[0].label,
            "swipe_up"
        );
        assert_eq!(
            gestures(&frame_with_box(100, 100), &frame_with_box(90, 101))[0].label,
            "swipe_left"
        );
        assert_eq!(swipe(0.2, 3.0), "swipe_down");
    }

    #[test]
    fn no_motion_or_no_history_is_no_gesture() {
        let image = frame_with_box(100, 100);
        assert!(gestures(&image, &image).is_empty());
        let first = GestureDetector::default().detect(&StageInput::new(&image, None));
        assert!(first.is_empty());
    }

    #[test]
    fn history_of_another_size_is_ignored() {
        let small = RgbImage::from_pixel(64, 64, Rgb([0, 0, 0]));
        assert!(gestures(&small, &frame_with_box(10, 10)).is_empty());
    }
}
