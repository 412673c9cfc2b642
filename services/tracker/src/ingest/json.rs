//! `POST /events`: lifecycle events as JSON, for producers that do not speak OTLP.
//!
//! The body is `{"events": [...]}`, each event the [`Event`] model without `event_id`
//! (derived from `trace_id` and `span_id`, as for spans). Every event is validated before
//! anything is stored; the first invalid one fails the request with a message naming its
//! index and field: `invalid event at index 3: end_unix_nanos is before start_unix_nanos`.

use std::collections::BTreeMap;

use frame_tracking::FrameId;
use serde::Deserialize;

use crate::ingest::otlp::{
    MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES, MAX_ERROR_MESSAGE_BYTES,
    MAX_NAME_BYTES,
};
use crate::model::{Event, EventId, EventStatus, parse_span_id, parse_trace_id};

/// At most this many events per request.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;

/// Why a JSON body was refused; the message is what the client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonEventsError {
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    /// The body is JSON of the wrong shape.
    #[error("the body must be a JSON object {{\"events\": [...]}}")]
    Shape,
    /// Too many events in one request.
    #[error("too many events: {found}, at most {MAX_EVENTS_PER_REQUEST} per request")]
    TooMany {
        /// Events in the request.
        found: usize,
    },
    /// One event is invalid.
    #[error("invalid event at index {index}: {reason}")]
    Event {
        /// Its index in `events`.
        index: usize,
        /// What is wrong, naming the field.
        reason: String,
    },
}

/// One event as a producer sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventInput {
    frame_id: String,
    service: String,
    stage: String,
    start_unix_nanos: i64,
    end_unix_nanos: i64,
    #[serde(default)]
    status: Option<EventStatus>,
    #[serde(default)]
    error_message: Option<String>,
    trace_id: String,
    span_id: String,
    #[serde(default)]
    parent_span_id: Option<String>,
    #[serde(default)]
    camera_id: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, serde_json::Value>,
}

/// Parses and validates a `POST /events` body.
pub fn parse_events(body: &[u8]) -> Result<Vec<Event>, JsonEventsError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| JsonEventsError::Syntax(error.to_string()))?;
    let serde_json::Value::Object(mut object) = value else {
        return Err(JsonEventsError::Shape);
    };
    let Some(serde_json::Value::Array(items)) = object.remove("events") else {
        return Err(JsonEventsError::Shape);
    };
    if !object.is_empty() {
        return Err(JsonEventsError::Shape);
    }
    if items.len() > MAX_EVENTS_PER_REQUEST {
        return Err(JsonEventsError::TooMany { found: items.len() });
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            parse_event(item).map_err(|reason| JsonEventsError::Event { index, reason })
        })
        .collect()
}

fn parse_event(item: serde_json::Value) -> Result<Event, String> {
    let input: EventInput = serde_json::from_value(item).map_err(|error| error.to_string())?;
    let frame_id: FrameId = input
        .frame_id
        .parse()
        .map_err(|error| format!("frame_id: {error}"))?;
    let trace_id = parse_trace_id(&input.trace_id)
        .ok_or("trace_id: expected 32 lowercase hex digits, not all zero")?;
    let span_id = parse_span_id(&input.span_id)
        .ok_or("span_id: expected 16 lowercase hex digits, not all zero")?;
    let parent_span_id = match &input.parent_span_id {
        None => None,
        Some(text) => Some(
            parse_span_id(text)
                .ok_or("parent_span_id: expected 16 lowercase hex digits, not all zero")?,
        ),
    };
    check_name("service", &input.service)?;
    check_name("stage", &input.stage)?;
    if let Some(camera_id) = &input.camera_id {
        check_name("camera_id", camera_id)?;
    }
    if input.start_unix_nanos <= 0 {
        return Err("start_unix_nanos must be positive".to_owned());
    }
    if input.end_unix_nanos < input.start_unix_nanos {
        return Err("end_unix_nanos is before start_unix_nanos".to_owned());
    }
    if let Some(message) = &input.error_message
        && message.len() > MAX_ERROR_MESSAGE_BYTES
    {
        return Err(format!(
            "error_message is longer than {MAX_ERROR_MESSAGE_BYTES} bytes"
        ));
    }
    check_attributes(&input.attributes)?;
    Ok(Event {
        event_id: EventId::from_span(trace_id, span_id),
        camera_id: input
            .camera_id
            .or_else(|| Some(frame_id.camera_id().to_owned())),
        frame_id,
        service: input.service,
        stage: input.stage,
        start_unix_nanos: input.start_unix_nanos,
        end_unix_nanos: input.end_unix_nanos,
        status: input.status.unwrap_or(EventStatus::Unset),
        error_message: input.error_message,
        trace_id,
        span_id,
        parent_span_id,
        attributes: input.attributes,
    })
}

fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(format!("{field} is longer than {MAX_NAME_BYTES} bytes"));
    }
    Ok(())
}

fn check_attributes(attributes: &BTreeMap<String, serde_json::Value>) -> Result<(), String> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(format!(
            "attributes: {} entries, at most {MAX_ATTRIBUTES}",
            attributes.len()
        ));
    }
    for (key, value) in attributes {
        if key.is_empty() || key.len() > MAX_ATTRIBUTE_KEY_BYTES {
            return Err(format!(
                "attributes: keys must be 1 to {MAX_ATTRIBUTE_KEY_BYTES} bytes"
            ));
        }
        let scalar_ok = |value: &serde_json::Value| match value {
            serde_json::Value::String(text) => text.len() <= MAX_ATTRIBUTE_VALUE_BYTES,
            serde_json::Value::Bool(_) | serde_json::Value::Number(_) => true,
            serde_json::Value::Null
            | serde_json::Value::Array(_)
            | serde_json::Value::Object(_) => false,
        };
        let ok = match value {
            serde_json::Value::Array(items) => items.len() <= 16 && items.iter().all(scalar_ok),
            other => scalar_ok(other),
        };
        if !ok {
            return Err(format!(
                "attributes.{key}: expected a string of at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes, \
                 a number, a boolean or an array of at most 16 of those"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(frame_id: &str) -> serde_json::Value {
        serde_json::json!({
            "frame_id": frame_id,
            "service": "legacy-camera",
            "stage": "upload",
            "start_unix_nanos": 1_000,
            "end_unix_nanos": 2_000,
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "attributes": {"frame.size_bytes": 1024}
        })
    }

    fn frame_id() -> String {
        FrameId::generate("cam01", "rgb").unwrap().to_string()
    }

    #[test]
    fn valid_events_parse_with_derived_ids() {
        let body = serde_json::json!({ "events": [event(&frame_id())] }).to_string();
        let events = parse_events(body.as_bytes()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].event_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e473600f067aa0ba902b7"
        );
        assert_eq!(events[0].camera_id.as_deref(), Some("cam01"));
        assert_eq!(events[0].status, EventStatus::Unset);
    }

    #[test]
    fn errors_name_the_index_and_the_field() {
        let mut bad = event(&frame_id());
        bad["end_unix_nanos"] = 10.into();
        let body = serde_json::json!({ "events": [event(&frame_id()), bad] }).to_string();
        assert_eq!(
            parse_events(body.as_bytes()).unwrap_err().to_string(),
            "invalid event at index 1: end_unix_nanos is before start_unix_nanos"
        );

        let body = serde_json::json!({ "events": [event("nope")] }).to_string();
        let message = parse_events(body.as_bytes()).unwrap_err().to_string();
        assert!(
            message.starts_with("invalid event at index 0: frame_id:"),
            "{message}"
        );

        let mut missing = event(&frame_id());
        missing.as_object_mut().unwrap().remove("stage");
        let body = serde_json::json!({ "events": [missing] }).to_string();
        let message = parse_events(body.as_bytes()).unwrap_err().to_string();
        assert!(message.contains("missing field `stage`"), "{message}");

        let mut nested = event(&frame_id());
        nested["attributes"] = serde_json::json!({"a": {"b": 1}});
        let body = serde_json::json!({ "events": [nested] }).to_string();
        let message = parse_events(body.as_bytes()).unwrap_err().to_string();
        assert!(message.contains("attributes.a"), "{message}");
    }

    #[test]
    fn bodies_of_the_wrong_shape_are_refused() {
        assert_eq!(parse_events(b"[]"), Err(JsonEventsError::Shape));
        assert!(matches!(
            parse_events(b"{"),
            Err(JsonEventsError::Syntax(_))
        ));
        assert_eq!(
            parse_events(br#"{"events": [], "x": 1}"#),
            Err(JsonEventsError::Shape)
        );
    }
}
