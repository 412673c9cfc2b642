//! The HTTP API: [`router`] (ingest, journeys, search, statistics, health, metrics) over
//! an [`AppState`], separate from serving so tests can drive it without a socket.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/traces` | OTLP/HTTP protobuf traces, gzip accepted |
//! | `POST /events` | lifecycle events as JSON |
//! | `GET /frames/{id}/journey` | a frame's events, stage times, gaps, trace links |
//! | `GET /frames` | search: `camera`, `status`, `min_duration_ms`, `since`, `until`, `limit`, `cursor` |
//! | `GET /cameras/{id}/stats` | a camera's frame counts and latency percentiles |
//! | `GET /health` | 200 with store counts and ingest lag; 503 when the store is unreachable |
//!
//! `GET /metrics` (Prometheus text, the standard catalogs plus [`crate::metrics::CATALOG`])
//! is added by `service_kit::serve::standard_router` in [`crate::app`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use frame_tracking::FrameId;
use serde::Serialize;
use service_kit::{ApiError, ApiJson, ApiPath, ApiQuery};

use crate::ingest::writer::IngestWriter;
use crate::journey::{Journey, TraceUrlTemplate};
use crate::metrics::TrackerMetrics;
use crate::model::{CameraStats, FrameCursor, FramePage, FrameQuery, FrameStatus, FrameSummary};
use crate::store::{JourneyStore, StoreError, StoreStatus};

/// Default page size of `GET /frames`.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Largest page size of `GET /frames`.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The event store.
    pub store: Arc<dyn JourneyStore>,
    /// The group-commit writer.
    pub writer: IngestWriter,
    /// The tracker's metrics.
    pub metrics: Arc<TrackerMetrics>,
    /// API settings.
    pub config: Arc<ApiConfig>,
}

/// Settings of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// The largest ingest body, bytes, before or after gzip.
    pub max_body_bytes: usize,
    /// Where journey trace links point.
    pub trace_url_template: Option<TraceUrlTemplate>,
}

/// A page of `GET /frames`, with the cursor encoded.
#[derive(Debug, Serialize)]
struct FramesResponse {
    frames: Vec<FrameSummary>,
    next_cursor: Option<String>,
}

/// `GET /health`.
#[derive(Debug, Serialize)]
struct HealthResponse {
    status: &'static str,
    store: StoreStatus,
    /// Events acknowledged by nobody yet: waiting for the writer.
    ingest_queued_events: u64,
    /// Positions appended but not yet reflected in the projections.
    projection_lag: i64,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The tracker's routes. Ingest routes take bodies up to `max_body_bytes`.
pub fn router(state: AppState) -> Router {
    let ingest_limit = DefaultBodyLimit::max(state.config.max_body_bytes);
    Router::new()
        .route(
            "/v1/traces",
            post(crate::ingest::otlp_traces).layer(ingest_limit),
        )
        .route(
            "/events",
            post(crate::ingest::json_events).layer(ingest_limit),
        )
        .route("/frames/{id}/journey", get(journey))
        .route("/frames", get(search_frames))
        .route("/cameras/{id}/stats", get(camera_stats))
        .route("/health", get(health))
        .with_state(state)
}

/// The API error for a failed store call.
pub(crate) fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Unavailable(_) => ApiError::unavailable(
            "store_unavailable",
            "the event store is unavailable, retry later",
            error,
        ),
        StoreError::Failed(_) | StoreError::Open(_) => ApiError::internal("store_failed", error),
    }
}

fn parse_frame_id(text: &str) -> Result<FrameId, ApiError> {
    text.parse().map_err(|error| {
        let shown: String = text.chars().take(80).collect();
        ApiError::bad_request(format!("invalid frame id {shown:?}: {error}"))
    })
}

async fn journey(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<Journey>, ApiError> {
    let frame_id = parse_frame_id(&id)?;
    let events = state.store.journey(&frame_id).await.map_err(store_error)?;
    Journey::from_events(frame_id, events, state.config.trace_url_template.as_ref())
        .map(ApiJson)
        .ok_or_else(|| ApiError::not_found(format!("no events for frame {frame_id}")))
}

async fn search_frames(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<HashMap<String, String>>,
) -> Result<ApiJson<FramesResponse>, ApiError> {
    let query = parse_frame_query(&params)?;
    let FramePage {
        frames,
        next_cursor,
    } = state
        .store
        .search_frames(&query)
        .await
        .map_err(store_error)?;
    Ok(ApiJson(FramesResponse {
        frames,
        next_cursor: next_cursor.as_ref().map(encode_cursor),
    }))
}

async fn camera_stats(
    State(state): State<AppState>,
    ApiPath(camera_id): ApiPath<String>,
) -> Result<ApiJson<CameraStats>, ApiError> {
    if camera_id.is_empty() || camera_id.len() > 256 {
        return Err(ApiError::bad_request(
            "invalid camera id: expected 1 to 256 bytes",
        ));
    }
    state
        .store
        .camera_stats(&camera_id)
        .await
        .map_err(store_error)?
        .map(ApiJson)
        .ok_or_else(|| ApiError::not_found(format!("no frames for camera {camera_id:?}")))
}

async fn health(State(state): State<AppState>) -> Result<ApiJson<HealthResponse>, ApiError> {
    let store = state.store.status().await.map_err(|error| {
        ApiError::unavailable("store_unavailable", "the event store is unreachable", error)
    })?;
    Ok(ApiJson(HealthResponse {
        status: "ok",
        ingest_queued_events: state.writer.queued_events(),
        projection_lag: (store.last_position - store.projected_position).max(0),
        store,
    }))
}

/// Parses the query string of `GET /frames`; errors name the parameter.
pub fn parse_frame_query(params: &HashMap<String, String>) -> Result<FrameQuery, ApiError> {
    let mut query = FrameQuery {
        limit: DEFAULT_PAGE_SIZE,
        ..FrameQuery::default()
    };
    let invalid = |name: &str, expected: &str| {
        ApiError::bad_request(format!(
            "invalid query parameter {name}: expected {expected}"
        ))
    };
    for (name, value) in params {
        match name.as_str() {
            "camera" => {
                if value.is_empty() || value.len() > 256 {
                    return Err(invalid("camera", "a camera id of 1 to 256 bytes"));
                }
                query.camera_id = Some(value.clone());
            }
            "status" => {
                query.status = Some(match value.as_str() {
                    "ok" => FrameStatus::Ok,
                    "failed" => FrameStatus::Failed,
                    _ => return Err(invalid("status", "ok or failed")),
                });
            }
            "min_duration_ms" => {
                let millis: u64 = value
                    .parse()
                    .map_err(|_| invalid("min_duration_ms", "a whole number of milliseconds"))?;
                let nanos = i64::try_from(millis)
                    .ok()
                    .and_then(|millis| millis.checked_mul(1_000_000))
                    .ok_or_else(|| invalid("min_duration_ms", "a smaller number"))?;
                query.min_duration_nanos = Some(nanos);
            }
            "since" | "until" => {
                let nanos = parse_time(value).ok_or_else(|| {
                    invalid(
                        name,
                        "an RFC 3339 time such as 2026-01-02T03:04:05Z, or Unix milliseconds",
                    )
                })?;
                if name == "since" {
                    query.since_unix_nanos = Some(nanos);
                } else {
                    query.until_unix_nanos = Some(nanos);
                }
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_PAGE_SIZE).contains(limit))
                    .ok_or_else(|| invalid("limit", "a number from 1 to 1000"))?;
            }
            "cursor" => {
                query.cursor = Some(
                    decode_cursor(value)
                        .ok_or_else(|| invalid("cursor", "a next_cursor of a previous page"))?,
                );
            }
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {shown:?}: expected camera, status, \
                     min_duration_ms, since, until, limit or cursor"
                )));
            }
        }
    }
    Ok(query)
}

/// A cursor as an opaque URL-safe string.
pub fn encode_cursor(cursor: &FrameCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}:{}",
        cursor.first_seen_unix_nanos, cursor.frame_id
    ))
}

/// The cursor behind [`encode_cursor`]'s string; `None` when it is not one.
pub fn decode_cursor(text: &str) -> Option<FrameCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (nanos, frame_id) = text.split_once(':')?;
    let frame_id: FrameId = frame_id.parse().ok()?;
    Some(FrameCursor {
        first_seen_unix_nanos: nanos.parse().ok()?,
        frame_id: frame_id.to_string(),
    })
}

/// Parses Unix milliseconds or an RFC 3339 time (`2026-01-02T03:04:05.123Z`,
/// `2026-01-02T04:04:05+01:00`) into Unix nanoseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok()?.checked_mul(1_000_000);
    }
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') || bytes[16] != b':' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = fraction[..digits].parse::<i64>().ok()? * 10i64.pow(9 - digits as u32);
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let offset = rest.get(1..)?;
            let (hours, minutes) = offset.split_once(':')?;
            if hours.len() != 2 || minutes.len() != 2 {
                return None;
            }
            let hours: i64 = hours.parse().ok()?;
            let minutes: i64 = minutes.parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_unix_millis() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("1000"), Some(1_000_000_000));
        assert_eq!(
            parse_time("2026-01-02T03:04:05.5Z"),
            Some(1_767_323_045_500_000_000)
        );
        assert_eq!(
            parse_time("2026-01-02T04:04:05.5+01:00"),
            Some(1_767_323_045_500_000_000)
        );
        assert_eq!(parse_time("2026-13-02T03:04:05Z"), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2026-01-02T03:04:05"), None);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = FrameCursor {
            first_seen_unix_nanos: 42,
            frame_id: FrameId::generate("cam01", "rgb").unwrap().to_string(),
        };
        let text = encode_cursor(&cursor);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode_cursor(&text), Some(cursor));
        assert_eq!(decode_cursor("%%%"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("12:nope")), None);
    }

    #[test]
    fn bad_parameters_are_named() {
        let params = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let error = parse_frame_query(&params(&[("limit", "0")])).unwrap_err();
        assert!(error.message().contains("limit"), "{}", error.message());
        let error = parse_frame_query(&params(&[("status", "meh")])).unwrap_err();
        assert!(error.message().contains("status"), "{}", error.message());
        let error = parse_frame_query(&params(&[("colour", "red")])).unwrap_err();
        assert!(error.message().contains("colour"), "{}", error.message());
        let query = parse_frame_query(&params(&[
            ("camera", "cam01"),
            ("status", "failed"),
            ("min_duration_ms", "5"),
        ]))
        .unwrap();
        assert_eq!(query.min_duration_nanos, Some(5_000_000));
        assert_eq!(query.limit, DEFAULT_PAGE_SIZE);
    }
}
