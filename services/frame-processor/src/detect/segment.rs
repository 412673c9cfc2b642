//! Pixel-level building blocks of the detectors: binary masks from per-pixel rules,
//! connected components with their statistics, and integer downscaling.

use image::{Rgb, RgbImage};

use crate::detect::BoundingBox;

/// A binary image: one flag per pixel, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    width: u32,
    height: u32,
    bits: Vec<bool>,
}

/// A connected region of a [`Mask`] (8-connectivity) and its statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Component {
    /// The smallest box holding every pixel of the region.
    pub bbox: BoundingBox,
    /// Number of pixels.
    pub area: u32,
    /// Mean x and y of its pixels.
    pub centroid: (f64, f64),
}

impl Mask {
    /// A mask of `image` where `rule` holds.
    pub fn from_rule(image: &RgbImage, rule: impl Fn(&Rgb<u8>) -> bool) -> Mask {
        Mask {
            width: image.width(),
            height: image.height(),
            bits: image.pixels().map(rule).collect(),
        }
    }

    /// The element-wise "or" of two masks of the same size (`None` if the sizes differ).
    pub fn union(&self, other: &Mask) -> Option<Mask> {
        if (self.width, self.height) != (other.width, other.height) {
            return None;
        }
        Some(Mask {
            width: self.width,
            height: self.height,
            bits: self
                .bits
                .iter()
                .zip(&other.bits)
                .map(|(a, b)| *a || *b)
                .collect(),
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Whether pixel (`x`, `y`) is set; `false` outside the mask.
    pub fn get(&self, x: u32, y: u32) -> bool {
        x < self.width && y < self.height && self.bits[(y * self.width + x) as usize]
    }

    /// Set pixels inside `bbox`: their count and centroid.
    pub fn stats_in(&self, bbox: &BoundingBox) -> (u32, (f64, f64)) {
        let (mut count, mut sum_x, mut sum_y) = (0u32, 0f64, 0f64);
        for y in bbox.y..(bbox.y + bbox.height).min(self.height) {
            for x in bbox.x..(bbox.x + bbox.width).min(self.width) {
                if self.get(x, y) {
                    count += 1;
                    sum_x += f64::from(x);
                    sum_y += f64::from(y);
                }
            }
        }
        let centroid = if count == 0 {
            (0.0, 0.0)
        } else {
            (sum_x / f64::from(count), sum_y / f64::from(count))
        };
        (count, centroid)
    }

    /// The connected regions (8-connectivity) of at least `min_area` pixels, largest first.
    pub fn components(&self, min_area: u32) -> Vec<Component> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut seen = vec![false; self.bits.len()];
        let mut stack = Vec::new();
        let mut found = Vec::new();
        for start in 0..self.bits.len() {
            if !self.bits[start] || seen[start] {
                continue;
            }
            seen[start] = true;
            stack.push(start);
            let (mut min_x, mut min_y, mut max_x, mut max_y) = (w, h, 0, 0);
            let (mut area, mut sum_x, mut sum_y) = (0u32, 0f64, 0f64);
            while let Some(index) = stack.pop() {
                let (x, y) = (index % w, index / w);
                area += 1;
                sum_x += x as f64;
                sum_y += y as f64;
                min_x = min_x.min(x);
                min_y = min_y.min(y);
                max_x = max_x.max(x);
                max_y = max_y.max(y);
                for dy in -1isize..=1 {
                    for dx in -1isize..=1 {
                        let (nx, ny) = (x as isize + dx, y as isize + dy);
                        if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                            continue;
                        }
                        let next = ny as usize * w + nx as usize;
                        if self.bits[next] && !seen[next] {
                            seen[next] = true;
                            stack.push(next);
                        }
                    }
                }
            }
            if area >= min_area {
                found.push(Component {
                    bbox: BoundingBox {
                        x: min_x as u32,
                        y: min_y as u32,
                        width: (max_x - min_x + 1) as u32,
                        height: (max_y - min_y + 1) as u32,
                    },
                    area,
                    centroid: (sum_x / f64::from(area), sum_y / f64::from(area)),
                });
            }
        }
        found.sort_by_key(|component| std::cmp::Reverse(component.area));
        found
    }
}

impl Component {
    /// Height over width of the bounding box.
    pub fn aspect(&self) -> f64 {
        f64::from(self.bbox.height) / f64::from(self.bbox.width.max(1))
    }

    /// The fraction of the bounding box the region fills.
    pub fn fill(&self) -> f64 {
        f64::from(self.area) / (f64::from(self.bbox.width) * f64::from(self.bbox.height)).max(1.0)
    }
}

/// Saturation as max minus min channel: near 0 for greys, large for vivid colours.
pub fn chroma(pixel: &Rgb<u8>) -> u8 {
    let [r, g, b] = pixel.0;
    r.max(g).max(b) - r.min(g).min(b)
}

/// Rec. 601 luma, 0..=255.
pub fn luma(pixel: &Rgb<u8>) -> u8 {
    let [r, g, b] = pixel.0.map(u32::from);
    ((299 * r + 587 * g + 114 * b) / 1000) as u8
}

/// Shrinks `image` by an integer `factor` with a box filter (each output pixel is the mean
/// of a `factor` x `factor` block; partial blocks at the edges are dropped).
pub fn downscale(image: &RgbImage, factor: u32) -> RgbImage {
    let factor = factor.max(1);
    if factor == 1 {
        return image.clone();
    }
    let (w, h) = (
        (image.width() / factor).max(1),
        (image.height() / factor).max(1),
    );
    let area = factor * factor;
    RgbImage::from_fn(w, h, |x, y| {
        let mut sum = [0u32; 3];
        for dy in 0..factor {
            for dx in 0..factor {
                let sx = (x * factor + dx).min(image.width() - 1);
                let sy = (y * factor + dy).min(image.height() - 1);
                let pixel = image.get_pixel(sx, sy);
                for (total, channel) in sum.iter_mut().zip(pixel.0) {
                    *total += u32::from(channel);
                }
            }
        }
        Rgb(sum.map(|total| (total / area) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_of(rows: &[&str]) -> Mask {
        let width = rows[0].len() as u32;
        let image = RgbImage::from_fn(width, rows.len() as u32, |x, y| {
            if rows[y as usize].as_bytes()[x as usize] == b'#' {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 0])
            }
        });
        Mask::from_rule(&image, |p| p.0[0] > 0)
    }

    #[test]
    fn components_are_eight_connected_and_sized() {
        let mask = mask_of(&["##....", "##..#.", "...#..", "......", "#....."]);
        let components = mask.components(1);
        assert_eq!(components.len(), 3);
        assert_eq!(components[0].area, 4);
        assert_eq!(
            components[0].bbox,
            BoundingBox {
                x: 0,
                y: 0,
                width: 2,
                height: 2
            }
        );
        // The diagonal pair is one component.
        assert_eq!(components[1].area, 2);
        assert_eq!(mask.components(2).len(), 2);
    }

    #[test]
    fn aspect_fill_and_centroid_describe_the_shape() {
        let mask = mask_of(&["#...", "#...", "#...", "##.."]);
        let component = mask.components(1)[0];
        assert_eq!(component.aspect(), 2.0);
        assert_eq!(component.fill(), 5.0 / 8.0);
        assert_eq!(component.centroid, (0.2, 1.8));
    }

    #[test]
    fn downscale_averages_blocks() {
        let image = RgbImage::from_fn(4, 2, |x, _| Rgb([if x % 2 == 0 { 0 } else { 200 }; 3]));
        let small = downscale(&image, 2);
        assert_eq!(small.dimensions(), (2, 1));
        assert_eq!(small.get_pixel(0, 0).0, [100; 3]);
    }
}
