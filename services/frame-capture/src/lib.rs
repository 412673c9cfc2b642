//! frame-capture: synthetic camera sources for the vision pipeline.
//!
//! - [`scene`]: a deterministic renderer with ground truth (background, moving objects).

#![warn(missing_docs)]

pub mod scene;
