//! frame-capture: synthetic camera sources for the vision pipeline.
//!
//! Every camera renders a deterministic [`scene`] (background, moving persons with faces,
//! vehicles and balls, with ground truth) at the configured rate, wraps each frame in a
//! `FrameId`, `FrameMetadata` and a `capture` span, and delivers it to the processor,
//! dropping frames when the processor falls behind.
//!
//! - [`config`]: typed configuration from the environment.
//! - [`app`]: [`App::build`](app::App::build) binds first, then runs cameras and the API.
//! - [`camera`]: one camera's loop, back-pressure and spans.
//! - [`delivery`]: how frames reach the processor.
//! - [`stats`]: the counters behind `GET /stats`.
//! - [`scene`]: the renderer and its ground truth, also used by the processor's tests.
//! - [`metrics`]: the metric catalog.

#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod camera;
pub mod config;
pub mod delivery;
pub mod metrics;
pub mod scene;
pub mod stats;

pub use crate::app::App;
pub use crate::config::Config;
