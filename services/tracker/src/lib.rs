//! The tracker: the frame-tracking service.
//!
//! An append-only audit log of every frame's lifecycle, fed by OTLP spans that carry
//! `frame.id` (and by a JSON API for producers that do not speak OTLP), which answers
//! "where has frame X been, how long did each stage take, did it fail" for any id, without
//! a service name or a time range.
//!
//! - [`model`]: the lifecycle [`Event`](model::Event) and what queries return.
//! - [`store`]: the [`JourneyStore`](store::JourneyStore) trait and its backends.

#![warn(missing_docs)]

pub mod model;
pub mod store;
