//! The HTTP API: `GET /health` and `GET /stats` (`GET /metrics` and the JSON 404 come from
//! `service_kit::serve::standard_router`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};
use service_kit::ApiJson;

use crate::stats::{Stats, StatsSnapshot};

/// The service's routes, without the standard layers.
pub fn router(stats: Arc<Stats>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats_snapshot))
        .with_state(stats)
}

async fn health() -> ApiJson<Value> {
    ApiJson(json!({ "status": "ok", "service": "frame-capture" }))
}

async fn stats_snapshot(State(stats): State<Arc<Stats>>) -> ApiJson<StatsSnapshot> {
    ApiJson(stats.snapshot())
}
