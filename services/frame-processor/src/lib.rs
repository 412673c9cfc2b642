//! frame-processor: the detection service of the vision pipeline (the detektor example,
//! in Rust).
//!
//! A frame arrives (`POST /process`, JSON with base64 pixels), is decoded, and three
//! [`detect::Detector`] stages analyse its pixels in parallel: objects (foreground
//! segmentation and connected components), faces (skin regions verified by a face
//! pattern) and gestures (motion against the camera's previous frame). The result is
//! stored in a bounded store and returned.
//!
//! - [`config`]: typed configuration from the environment.
//! - [`app`]: [`App::build`](app::App::build) binds first, then serves.
//! - [`api`]: the routes and handlers.
//! - [`model`]: wire types and request validation.
//! - [`pipeline`]: one frame's processing, its spans and metrics; its stages run on a
//!   fixed pool of detection threads (`pool`).
//! - [`detect`]: the detectors.
//! - [`consumer`]: the optional queue consumer (Redis Streams, RabbitMQ).
//! - [`store`], [`cameras`]: bounded result store and per-camera state.
//! - [`simulate`]: server-side synthetic frames.
//! - [`metrics`]: the metric catalog.
//! - [`accuracy`]: detections scored against ground truth, when a frame carries it.

#![warn(missing_docs)]

pub mod accuracy;
pub mod api;
pub mod app;
pub mod cameras;
pub mod config;
pub mod consumer;
pub mod detect;
pub mod metrics;
pub mod model;
pub mod pipeline;
mod pool;
pub mod simulate;
pub mod store;

pub use crate::app::App;
pub use crate::config::Config;
