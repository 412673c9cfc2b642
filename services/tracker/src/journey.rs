//! The journey of one frame as `GET /frames/{id}/journey` returns it: its events in order
//! with offsets, per-stage durations, the gaps between stages (queue wait) and a link per
//! trace.
//!
//! ```
//! # use tracker::journey::{Journey, TraceUrlTemplate};
//! let template = TraceUrlTemplate::parse("http://localhost:16686/trace/{trace_id}").unwrap();
//! assert_eq!(
//!     template.url("4bf92f3577b34da6a3ce929d0e0e4736"),
//!     "http://localhost:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"
//! );
//! ```

use frame_tracking::FrameId;
use serde::{Deserialize, Serialize};

use crate::model::{EventStatus, FrameStatus, StoredEvent};

/// A frame's journey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journey {
    /// The frame.
    pub frame_id: FrameId,
    /// Its camera, from the first event that names one.
    pub camera_id: Option<String>,
    /// Failed when any event failed.
    pub status: FrameStatus,
    /// Earliest event start, Unix nanoseconds.
    pub start_unix_nanos: i64,
    /// Latest event end, Unix nanoseconds.
    pub end_unix_nanos: i64,
    /// `end - start`, nanoseconds.
    pub duration_nanos: i64,
    /// The events by start time.
    pub events: Vec<JourneyEvent>,
    /// Total time per (service, stage), in order of first start.
    pub stages: Vec<StageTime>,
    /// Idle stretches between events, when no earlier event was still running.
    pub gaps: Vec<Gap>,
    /// The traces the events belong to, with links when a template is configured.
    pub traces: Vec<TraceLink>,
}

/// One event of a journey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JourneyEvent {
    /// Start relative to the journey's start, nanoseconds.
    pub offset_nanos: i64,
    /// `end - start`, nanoseconds.
    pub duration_nanos: i64,
    /// The stored event.
    #[serde(flatten)]
    pub event: StoredEvent,
}

/// Time spent in one stage of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTime {
    /// The service.
    pub service: String,
    /// The stage.
    pub stage: String,
    /// Events of this stage.
    pub events: u64,
    /// Sum of their durations, nanoseconds.
    pub duration_nanos: i64,
    /// Failed when any of them failed.
    pub failed: bool,
}

/// An idle stretch: after everything before it had ended, before the next event started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Index (in `events`) of the event the gap comes before.
    pub before_event: usize,
    /// The stage that ended last before the gap.
    pub after_stage: String,
    /// The stage that starts after the gap.
    pub before_stage: String,
    /// Start relative to the journey's start, nanoseconds.
    pub offset_nanos: i64,
    /// Length, nanoseconds.
    pub duration_nanos: i64,
}

/// A trace the journey touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceLink {
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// A link to the trace in a trace UI, when `TRACE_URL_TEMPLATE` is set.
    pub url: Option<String>,
}

/// A URL template with a `{trace_id}` placeholder (`TRACE_URL_TEMPLATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceUrlTemplate(String);

impl TraceUrlTemplate {
    /// The template, if it contains `{trace_id}` and starts with `http://` or `https://`.
    pub fn parse(template: &str) -> Option<TraceUrlTemplate> {
        let valid = template.contains("{trace_id}")
            && (template.starts_with("http://") || template.starts_with("https://"));
        valid.then(|| TraceUrlTemplate(template.to_owned()))
    }

    /// The link to one trace.
    pub fn url(&self, trace_id: &str) -> String {
        self.0.replace("{trace_id}", trace_id)
    }
}

impl Journey {
    /// Builds the journey from a frame's stored events (any order); `None` when empty.
    pub fn from_events(
        frame_id: FrameId,
        mut stored: Vec<StoredEvent>,
        template: Option<&TraceUrlTemplate>,
    ) -> Option<Journey> {
        stored.sort_by_key(|stored| (stored.event.start_unix_nanos, stored.position));
        let start = stored.iter().map(|s| s.event.start_unix_nanos).min()?;
        let end = stored
            .iter()
            .map(|s| s.event.end_unix_nanos)
            .max()
            .unwrap_or(start);
        let status = if stored.iter().any(|s| s.event.status == EventStatus::Error) {
            FrameStatus::Failed
        } else {
            FrameStatus::Ok
        };
        let camera_id = stored.iter().find_map(|s| s.event.camera_id.clone());

        let mut stages: Vec<StageTime> = Vec::new();
        let mut gaps = Vec::new();
        let mut traces: Vec<TraceLink> = Vec::new();
        let mut running_until: Option<(i64, String)> = None;
        for (index, stored) in stored.iter().enumerate() {
            let event = &stored.event;
            let duration = event.end_unix_nanos - event.start_unix_nanos;
            match stages
                .iter_mut()
                .find(|stage| stage.service == event.service && stage.stage == event.stage)
            {
                Some(stage) => {
                    stage.events += 1;
                    stage.duration_nanos += duration;
                    stage.failed |= event.status == EventStatus::Error;
                }
                None => stages.push(StageTime {
                    service: event.service.clone(),
                    stage: event.stage.clone(),
                    events: 1,
                    duration_nanos: duration,
                    failed: event.status == EventStatus::Error,
                }),
            }
            if let Some((until, after_stage)) = &running_until
                && event.start_unix_nanos > *until
            {
                gaps.push(Gap {
                    before_event: index,
                    after_stage: after_stage.clone(),
                    before_stage: event.stage.clone(),
                    offset_nanos: until - start,
                    duration_nanos: event.start_unix_nanos - until,
                });
            }
            if running_until
                .as_ref()
                .is_none_or(|(until, _)| event.end_unix_nanos >= *until)
            {
                running_until = Some((event.end_unix_nanos, event.stage.clone()));
            }
            let trace_id = event.trace_id.to_string();
            if !traces.iter().any(|trace| trace.trace_id == trace_id) {
                traces.push(TraceLink {
                    url: template.map(|template| template.url(&trace_id)),
                    trace_id,
                });
            }
        }
        let events = stored
            .into_iter()
            .map(|stored| JourneyEvent {
                offset_nanos: stored.event.start_unix_nanos - start,
                duration_nanos: stored.event.end_unix_nanos - stored.event.start_unix_nanos,
                event: stored,
            })
            .collect();
        Some(Journey {
            frame_id,
            camera_id,
            status,
            start_unix_nanos: start,
            end_unix_nanos: end,
            duration_nanos: end - start,
            events,
            stages,
            gaps,
            traces,
        })
    }
}
