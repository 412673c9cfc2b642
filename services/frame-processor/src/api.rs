//! The HTTP API: `GET /health`, `POST /process`, `GET /frames/{frame_id}`,
//! `GET /cameras/{camera_id}/stats`, `POST /simulate` (`GET /metrics` and the JSON 404
//! come from `service_kit::serve::standard_router`).

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use opentelemetry::KeyValue;
use serde_json::{Value, json};
use service_kit::{ApiError, ApiJson, ApiPath};
use telemetry::http::ServerSpan;

use crate::cameras::CameraStats;
use crate::model::{FrameError, FrameResult, ProcessRequest};
use crate::pipeline::{ProcessError, Processor};
use crate::simulate::{SimulateRequest, SimulateResponse, simulate};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The pipeline, store and camera state.
    pub processor: Arc<Processor>,
}

/// The service's routes, without the standard layers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/process", post(process))
        .route("/frames/{frame_id}", get(get_frame))
        .route("/cameras/{camera_id}/stats", get(camera_stats))
        .route("/simulate", post(simulate_frames))
        .with_state(state)
}

async fn health() -> ApiJson<Value> {
    ApiJson(json!({ "status": "ok", "service": "frame-processor" }))
}

async fn process(
    axum::extract::State(state): axum::extract::State<AppState>,
    server_span: ServerSpan,
    request: Result<ApiJson<ProcessRequest>, ApiError>,
) -> Result<ApiJson<FrameResult>, ApiError> {
    let ApiJson(request) = request.inspect_err(|_| crate::metrics::error("invalid_request"))?;
    // The transport span belongs to the frame's journey too: the tracker keeps spans by
    // `frame.id`, and a journey whose server span were missing would have an orphan.
    server_span.set_attribute(KeyValue::new("frame.id", request.frame_id.clone()));
    server_span.set_attribute(KeyValue::new("camera.id", request.camera_id.clone()));
    let input = request.validate().map_err(|error| {
        crate::metrics::error("invalid_request");
        api_error(ProcessError::Frame(error))
    })?;
    let result = state.processor.process(input).await.map_err(api_error)?;
    Ok(ApiJson(result))
}

async fn get_frame(
    axum::extract::State(state): axum::extract::State<AppState>,
    ApiPath(frame_id): ApiPath<String>,
) -> Result<ApiJson<FrameResult>, ApiError> {
    state
        .processor
        .result(&frame_id)
        .map(ApiJson)
        .ok_or_else(|| ApiError::not_found("no stored result for this frame id"))
}

async fn camera_stats(
    axum::extract::State(state): axum::extract::State<AppState>,
    ApiPath(camera_id): ApiPath<String>,
) -> Result<ApiJson<CameraStats>, ApiError> {
    state
        .processor
        .camera_stats(&camera_id)
        .map(ApiJson)
        .ok_or_else(|| ApiError::not_found("no frames processed for this camera id"))
}

async fn simulate_frames(
    axum::extract::State(state): axum::extract::State<AppState>,
    ApiJson(request): ApiJson<SimulateRequest>,
) -> Result<ApiJson<SimulateResponse>, ApiError> {
    simulate(&state.processor, request)
        .await
        .map(ApiJson)
        .map_err(api_error)
}

/// The client's view of a processing error.
fn api_error(error: ProcessError) -> ApiError {
    match error {
        ProcessError::Frame(FrameError::Invalid(message)) => ApiError::bad_request(message),
        ProcessError::Frame(FrameError::Undecodable(message)) => ApiError::unprocessable(message),
        ProcessError::Internal(message) => {
            ApiError::internal("processing", std::io::Error::other(message))
        }
    }
}
