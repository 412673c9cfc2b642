//! Synthetic scenes with ground truth: a static textured background with mild per-frame
//! noise, and moving objects of a few known kinds whose bounding boxes are known exactly.
//!
//! Everything is a pure function of the [`SceneConfig`] (seed included) and the frame
//! index, so the processor's accuracy test can regenerate any frame and its truth.
//!
//! What the scene looks like, and why (the detectors rely on none of it being "known", but
//! the scene is built so that a correct detector can succeed):
//!
//! - the background is low-saturation grey tiles with grout lines and a vertical gradient;
//!   per-frame noise is ±[`NOISE`] per channel;
//! - objects are saturated colours: a `person` is a tall rounded body with a head (with a
//!   `face` pattern, skin oval + two eyes + mouth, on most persons; hair on the others), a
//!   `vehicle` a wide box with two dark wheels, a `ball` a disc;
//! - each object moves in its own horizontal lane (no occlusion) and bounces off the frame
//!   edges, so every frame has ground truth velocity too.
//!
//! ```
//! use frame_capture::scene::{Scene, SceneConfig};
//!
//! let scene = Scene::new(SceneConfig { width: 320, height: 240, objects: 3, seed: 7 })?;
//! let frame = scene.render(0);
//! assert_eq!(frame.image.dimensions(), (320, 240));
//! assert_eq!(frame.truth.len(), 3);
//! assert_eq!(scene.render(0).image, frame.image); // deterministic
//! # Ok::<(), frame_capture::scene::SceneError>(())
//! ```

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

/// The largest per-channel noise added to every pixel of every frame.
pub const NOISE: i32 = 6;

/// The smallest frame side the scene renders (objects must stay a few pixels wide).
pub const MIN_SIDE: u32 = 64;

/// The largest frame side the scene renders.
pub const MAX_SIDE: u32 = 4096;

/// The most objects (lanes) a scene has.
pub const MAX_OBJECTS: usize = 6;

/// What a scene looks like: size, number of moving objects and the seed of everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneConfig {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Number of moving objects (one lane each), 1 to [`MAX_OBJECTS`].
    pub objects: usize,
    /// The seed of the background, the objects and the noise.
    pub seed: u64,
}

/// Why a scene cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SceneError {
    /// Width or height outside [`MIN_SIDE`]..=[`MAX_SIDE`].
    #[error("frame size {width}x{height} is outside {MIN_SIDE}..={MAX_SIDE} per side")]
    Size {
        /// The requested width.
        width: u32,
        /// The requested height.
        height: u32,
    },
    /// Object count outside 1..=[`MAX_OBJECTS`].
    #[error("{0} objects requested, 1..={MAX_OBJECTS} are supported")]
    Objects(usize),
}

/// The kinds of objects a scene contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A tall body with a head.
    Person,
    /// A wide box with wheels.
    Vehicle,
    /// A disc.
    Ball,
}

impl ObjectKind {
    /// Every kind.
    pub const ALL: [ObjectKind; 3] = [ObjectKind::Person, ObjectKind::Vehicle, ObjectKind::Ball];

    /// The class name detectors report (`person`, `vehicle`, `ball`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Person => "person",
            ObjectKind::Vehicle => "vehicle",
            ObjectKind::Ball => "ball",
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
    /// Intersection over union with `other`, 0 when disjoint.
    pub fn iou(&self, other: &BoundingBox) -> f64 {
        let left = self.x.max(other.x);
        let top = self.y.max(other.y);
        let right = (self.x + self.width).min(other.x + other.width);
        let bottom = (self.y + self.height).min(other.y + other.height);
        if right <= left || bottom <= top {
            return 0.0;
        }
        let inter = f64::from(right - left) * f64::from(bottom - top);
        let union = f64::from(self.width) * f64::from(self.height)
            + f64::from(other.width) * f64::from(other.height)
            - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// The truth about one object in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// The object's kind.
    pub kind: ObjectKind,
    /// Its full extent (a vehicle's wheels included).
    pub bbox: BoundingBox,
    /// The face drawn on it (persons facing the camera only).
    pub face: Option<BoundingBox>,
    /// Its velocity in pixels per frame at this frame (x right, y down).
    pub velocity: (f32, f32),
}

/// One rendered frame and its truth.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedFrame {
    /// The frame's index in its scene.
    pub index: u64,
    /// The pixels.
    pub image: RgbImage,
    /// Every object in the frame.
    pub truth: Vec<GroundTruth>,
}

/// A scene: background and objects fixed by the seed, rendered per frame index.
#[derive(Debug, Clone)]
pub struct Scene {
    config: SceneConfig,
    background: RgbImage,
    objects: Vec<ObjectSpec>,
}

#[derive(Debug, Clone, Copy)]
struct ObjectSpec {
    kind: ObjectKind,
    width: u32,
    height: u32,
    lane_top: u32,
    lane_height: u32,
    start: (f32, f32),
    speed: (f32, f32),
    color: [u8; 3],
    skin: Option<[u8; 3]>,
}

const BODY_COLORS: [[u8; 3]; 4] = [[40, 90, 200], [50, 160, 70], [150, 60, 170], [200, 60, 50]];
const VEHICLE_COLORS: [[u8; 3]; 3] = [[220, 180, 30], [230, 120, 40], [30, 150, 160]];
const BALL_COLORS: [[u8; 3]; 3] = [[40, 200, 220], [210, 50, 200], [240, 140, 20]];
const SKIN_TONES: [[u8; 3]; 3] = [[225, 175, 140], [200, 150, 115], [240, 195, 165]];
const HAIR: [u8; 3] = [120, 70, 30];
const DARK: [u8; 3] = [35, 30, 30];
const MOUTH: [u8; 3] = [140, 50, 50];

impl Scene {
    /// Builds the scene: background texture and objects from the seed.
    pub fn new(config: SceneConfig) -> Result<Scene, SceneError> {
        let sides = MIN_SIDE..=MAX_SIDE;
        if !sides.contains(&config.width) || !sides.contains(&config.height) {
            return Err(SceneError::Size {
                width: config.width,
                height: config.height,
            });
        }
        if config.objects == 0 || config.objects > MAX_OBJECTS {
            return Err(SceneError::Objects(config.objects));
        }
        let mut rng = SplitMix64(config.seed ^ 0x5EED_CAFE_F00D_0001);
        let background = render_background(&config, &mut rng);
        let lane_height = config.height / config.objects as u32;
        let unit = lane_height.min(config.width / 3) as f32;
        let mut objects = Vec::with_capacity(config.objects);
        let first_kind = rng.below(3) as usize;
        for lane in 0..config.objects {
            // The first three lanes hold one object of each kind, further lanes random kinds.
            let kind = if lane < 3 {
                ObjectKind::ALL[(first_kind + lane) % 3]
            } else {
                ObjectKind::ALL[rng.below(3) as usize]
            };
            let (width, height, color) = match kind {
                ObjectKind::Person => {
                    let height = unit * 0.88;
                    (height * 0.36, height, pick(&BODY_COLORS, &mut rng))
                }
                ObjectKind::Vehicle => {
                    let height = unit * 0.5;
                    (height * 2.2, height, pick(&VEHICLE_COLORS, &mut rng))
                }
                ObjectKind::Ball => {
                    let side = unit * 0.38;
                    (side, side, pick(&BALL_COLORS, &mut rng))
                }
            };
            let (width, height) = (
                width.round().max(6.0) as u32,
                height.round().max(6.0) as u32,
            );
            let skin = (kind == ObjectKind::Person && rng.below(4) != 0)
                .then(|| pick(&SKIN_TONES, &mut rng));
            // Speeds scale with the frame so motion looks the same at every resolution.
            let scale = config.width as f32 / 320.0;
            let direction = if rng.below(2) == 0 { 1.0 } else { -1.0 };
            let vx = direction * (3.0 + rng.unit() * 4.0) * scale;
            let vy = match kind {
                ObjectKind::Ball => (1.0 + rng.unit() * 2.0) * scale,
                _ => 0.0,
            };
            let free_x = config.width.saturating_sub(width) as f32;
            let free_y = lane_height.saturating_sub(height) as f32;
            objects.push(ObjectSpec {
                kind,
                width,
                height,
                lane_top: lane as u32 * lane_height,
                lane_height,
                start: (rng.unit() * free_x, rng.unit() * free_y),
                speed: (vx, vy),
                color,
                skin,
            });
        }
        Ok(Scene {
            config,
            background,
            objects,
        })
    }

    /// The configuration the scene was built from.
    pub fn config(&self) -> &SceneConfig {
        &self.config
    }

    /// Renders frame `index`: background, noise, then every object, with its truth.
    pub fn render(&self, index: u64) -> RenderedFrame {
        let mut image = self.background.clone();
        add_noise(&mut image, self.config.seed, index);
        let mut truth = Vec::with_capacity(self.objects.len());
        for object in &self.objects {
            truth.push(object.draw(&mut image, self.config.width, index));
        }
        RenderedFrame {
            index,
            image,
            truth,
        }
    }
}

impl ObjectSpec {
    /// Draws the object at frame `index` and returns its truth.
    fn draw(&self, image: &mut RgbImage, frame_width: u32, index: u64) -> GroundTruth {
        let t = index as f32;
        let free_x = frame_width.saturating_sub(self.width) as f32;
        let free_y = self.lane_height.saturating_sub(self.height) as f32;
        let (x, vx) = bounce(self.start.0, self.speed.0, t, free_x);
        let (y, vy) = bounce(self.start.1, self.speed.1, t, free_y);
        let left = x.round() as u32;
        let top = self.lane_top + y.round() as u32;
        let (w, h) = (self.width, self.height);
        let mut bbox = BoundingBox {
            x: left,
            y: top,
            width: w,
            height: h,
        };
        let mut face = None;
        match self.kind {
            ObjectKind::Ball => {
                let r = w as f32 / 2.0;
                fill_ellipse(image, left as f32 + r, top as f32 + r, r, r, self.color);
            }
            ObjectKind::Vehicle => {
                // Body on the upper 80%, wheels hanging below it to the bottom edge.
                let body_h = (h as f32 * 0.8).round() as u32;
                fill_rect(image, left, top, w, body_h, self.color);
                let wheel_r = h as f32 * 0.2;
                let wheel_y = (top + h) as f32 - wheel_r;
                for fx in [0.22, 0.78] {
                    let cx = left as f32 + w as f32 * fx;
                    fill_ellipse(image, cx, wheel_y, wheel_r, wheel_r, DARK);
                }
                bbox.height = h;
            }
            ObjectKind::Person => {
                let head_h = (h as f32 * 0.3).round() as u32;
                let head_w = (w as f32 * 0.8).round().max(4.0) as u32;
                let head_left = left + (w - head_w) / 2;
                let body_top = top + head_h;
                fill_rect(image, left, body_top, w, h - head_h, self.color);
                let (cx, cy) = (
                    head_left as f32 + head_w as f32 / 2.0,
                    top as f32 + head_h as f32 / 2.0,
                );
                let (rx, ry) = (head_w as f32 / 2.0, head_h as f32 / 2.0);
                match self.skin {
                    Some(skin) => {
                        fill_ellipse(image, cx, cy, rx, ry, skin);
                        let eye_r = (rx * 0.22).max(1.2);
                        for fx in [-0.42, 0.42] {
                            fill_ellipse(image, cx + fx * rx, cy - ry * 0.2, eye_r, eye_r, DARK);
                        }
                        let mouth_w = (rx * 0.9).round().max(2.0) as u32;
                        let mouth_h = (ry * 0.18).round().max(1.0) as u32;
                        fill_rect(
                            image,
                            (cx - mouth_w as f32 / 2.0).round() as u32,
                            (cy + ry * 0.45).round() as u32,
                            mouth_w,
                            mouth_h,
                            MOUTH,
                        );
                        face = Some(BoundingBox {
                            x: head_left,
                            y: top,
                            width: head_w,
                            height: head_h,
                        });
                    }
                    None => fill_ellipse(image, cx, cy, rx, ry, HAIR),
                }
            }
        }
        GroundTruth {
            kind: self.kind,
            bbox,
            face,
            velocity: (vx, vy),
        }
    }
}

/// Position and velocity at time `t` of a point starting at `start` with speed `speed`,
/// bouncing between 0 and `span`.
fn bounce(start: f32, speed: f32, t: f32, span: f32) -> (f32, f32) {
    if span <= 0.0 || speed == 0.0 {
        return (start.clamp(0.0, span.max(0.0)), 0.0);
    }
    let period = 2.0 * span;
    let travelled = (start + speed * t).rem_euclid(period);
    // On the rising half of the triangle wave the object moves the way `speed` points.
    if travelled <= span {
        (travelled, speed)
    } else {
        (period - travelled, -speed)
    }
}

fn render_background(config: &SceneConfig, rng: &mut SplitMix64) -> RgbImage {
    let tile = (config.width / 10).max(8);
    let tint = rng.below(5) as i32 - 2;
    let salt = rng.next();
    RgbImage::from_fn(config.width, config.height, |x, y| {
        let (tx, ty) = (x / tile, y / tile);
        let grout = x % tile == 0 || y % tile == 0;
        let tile_shade = (hash3(salt, u64::from(tx), u64::from(ty)) % 24) as i32;
        let gradient = (y * 20 / config.height) as i32;
        let base = if grout {
            92
        } else {
            108 + tile_shade + gradient
        };
        Rgb([
            clamp_u8(base + tint),
            clamp_u8(base + 3),
            clamp_u8(base - tint),
        ])
    })
}

fn add_noise(image: &mut RgbImage, seed: u64, index: u64) {
    let frame_salt = hash3(seed, index, 0x004E_015E);
    let span = (2 * NOISE + 1) as u64;
    for (i, channel) in image.as_mut().iter_mut().enumerate() {
        let noise = (hash3(frame_salt, i as u64, 1) % span) as i32 - NOISE;
        *channel = clamp_u8(i32::from(*channel) + noise);
    }
}

fn fill_rect(image: &mut RgbImage, left: u32, top: u32, width: u32, height: u32, color: [u8; 3]) {
    let right = (left + width).min(image.width());
    let bottom = (top + height).min(image.height());
    for y in top..bottom {
        for x in left..right {
            image.put_pixel(x, y, Rgb(color));
        }
    }
}

fn fill_ellipse(image: &mut RgbImage, cx: f32, cy: f32, rx: f32, ry: f32, color: [u8; 3]) {
    let left = (cx - rx).floor().max(0.0) as u32;
    let top = (cy - ry).floor().max(0.0) as u32;
    let right = ((cx + rx).ceil().max(0.0) as u32).min(image.width());
    let bottom = ((cy + ry).ceil().max(0.0) as u32).min(image.height());
    for y in top..bottom {
        for x in left..right {
            let dx = (x as f32 + 0.5 - cx) / rx;
            let dy = (y as f32 + 0.5 - cy) / ry;
            if dx * dx + dy * dy <= 1.0 {
                image.put_pixel(x, y, Rgb(color));
            }
        }
    }
}

fn clamp_u8(value: i32) -> u8 {
    value.clamp(0, 255) as u8
}

fn pick(colors: &[[u8; 3]], rng: &mut SplitMix64) -> [u8; 3] {
    colors[rng.below(colors.len() as u64) as usize]
}

fn hash3(a: u64, b: u64, c: u64) -> u64 {
    let mut state = SplitMix64(a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ c.rotate_left(17));
    state.next()
}

/// SplitMix64: tiny, fast and fixed forever, so scenes do not change with a crate update.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> SceneConfig {
        SceneConfig {
            width: 320,
            height: 240,
            objects: 3,
            seed,
        }
    }

    #[test]
    fn the_same_seed_and_index_render_the_same_frame() {
        let a = Scene::new(config(11)).unwrap();
        let b = Scene::new(config(11)).unwrap();
        for index in [0, 1, 57] {
            assert_eq!(a.render(index), b.render(index));
        }
        assert_ne!(a.render(0).image, a.render(1).image);
        let other = Scene::new(config(12)).unwrap();
        assert_ne!(a.render(0).image, other.render(0).image);
    }

    #[test]
    fn the_first_three_lanes_hold_one_object_of_each_kind() {
        let frame = Scene::new(config(3)).unwrap().render(0);
        let mut kinds: Vec<_> = frame.truth.iter().map(|t| t.kind).collect();
        kinds.sort();
        assert_eq!(kinds, ObjectKind::ALL.to_vec());
    }

    #[test]
    fn objects_stay_inside_the_frame_and_move() {
        let scene = Scene::new(config(5)).unwrap();
        let first = scene.render(0);
        for index in 0..300 {
            let frame = scene.render(index);
            for truth in &frame.truth {
                assert!(truth.bbox.x + truth.bbox.width <= 320, "{truth:?}");
                assert!(truth.bbox.y + truth.bbox.height <= 240, "{truth:?}");
                assert!(truth.velocity.0.abs() >= 3.0, "{truth:?}");
            }
        }
        let later = scene.render(10);
        assert!(
            first
                .truth
                .iter()
                .zip(&later.truth)
                .all(|(a, b)| a.bbox != b.bbox)
        );
    }

    #[test]
    fn truth_boxes_cover_the_object_pixels() {
        let frame = Scene::new(config(9)).unwrap().render(4);
        for truth in &frame.truth {
            let b = truth.bbox;
            // The centre pixel of every object differs from a low-saturation background.
            let pixel = frame
                .image
                .get_pixel(b.x + b.width / 2, b.y + b.height * 2 / 3);
            let chroma = pixel.0.iter().max().unwrap() - pixel.0.iter().min().unwrap();
            assert!(chroma > 60, "{truth:?} {pixel:?}");
        }
    }

    #[test]
    fn velocity_sign_follows_the_bounce() {
        assert_eq!(bounce(0.0, 2.0, 1.0, 10.0), (2.0, 2.0));
        assert_eq!(bounce(0.0, 2.0, 6.0, 10.0), (8.0, -2.0));
        assert_eq!(bounce(5.0, -2.0, 1.0, 10.0), (3.0, -2.0));
    }

    #[test]
    fn background_noise_stays_low_saturation() {
        let scene = Scene::new(config(1)).unwrap();
        let frame = scene.render(2);
        let mut covered = vec![false; 320 * 240];
        for truth in &frame.truth {
            let b = truth.bbox;
            for y in b.y..b.y + b.height {
                for x in b.x..b.x + b.width {
                    covered[(y * 320 + x) as usize] = true;
                }
            }
        }
        for (i, pixel) in frame.image.pixels().enumerate() {
            if !covered[i] {
                let chroma = pixel.0.iter().max().unwrap() - pixel.0.iter().min().unwrap();
                assert!(chroma <= 2 * NOISE as u8 + 5, "{pixel:?}");
            }
        }
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let mut bad = config(1);
        bad.width = 10;
        assert!(matches!(Scene::new(bad), Err(SceneError::Size { .. })));
        let mut bad = config(1);
        bad.objects = 0;
        assert_eq!(Scene::new(bad).unwrap_err(), SceneError::Objects(0));
    }
}
