//! The tracker: the frame-tracking service.
//!
//! An append-only audit log of every frame's lifecycle, fed by OTLP spans that carry
//! `frame.id` (and by a JSON API for producers that do not speak OTLP), which answers
//! "where has frame X been, how long did each stage take, did it fail" for any id, without
//! a service name or a time range.
//!
//! - [`model`]: the lifecycle [`Event`](model::Event) and what queries return.
//! - [`store`]: the [`JourneyStore`](store::JourneyStore) trait and its backends.
//! - [`ingest`]: OTLP/HTTP and JSON ingest, spans to events, the group-commit writer;
//!   [`grpc`]: OTLP/gRPC ingest.
//! - [`api`]: the HTTP router (ingest, journeys, search, statistics, health, metrics);
//!   [`journey`]: the journey view; [`waterfall`]: its ASCII rendering.
//! - [`config`], [`app`]: typed configuration and the running service; [`metrics`]: the
//!   tracker's metric catalog; [`client`]: fetching journeys from a running tracker.

#![warn(missing_docs)]

pub mod analysis;
pub mod api;
pub mod app;
pub mod client;
pub mod config;
pub mod grpc;
pub mod ingest;
pub mod journey;
pub mod metrics;
pub mod model;
pub mod store;
pub mod waterfall;
