//! An ASCII waterfall of a [`Journey`]: one line per event (service, stage, offset,
//! duration, a bar scaled to the whole journey, status), a line per gap, then the traces.
//!
//! ```text
//! frame 20261121T101530.123Z_0000K7PQ2XW9MD_cam01_rgb  camera cam01  failed  12.5 ms  3 events
//!
//! service          stage          offset   duration  |0                   12.5 ms|  status
//! frame-capture    capture          0 ns     1.0 ms  |##                        |  ok
//!                  ~ gap            1.0 ms   4.0 ms  |  ........                |  queue wait
//! frame-processor  process_frame    5.0 ms   7.5 ms  |          ###############|  error: decoder failed
//! ```
//!
//! [`render`] is a pure function, so the CLI (`tracker journey <id>`) and the demo print the
//! same thing.

use std::fmt::Write as _;

use crate::journey::Journey;
use crate::model::{EventStatus, FrameStatus};

/// Width of the bar column, characters.
const BAR_WIDTH: usize = 40;

/// Service and stage columns are cut to this many characters.
const MAX_NAME_COLUMN: usize = 28;

/// Renders `journey` as an ASCII waterfall (lines end with `\n`).
pub fn render(journey: &Journey) -> String {
    let mut out = String::new();
    let status = match journey.status {
        FrameStatus::Ok => "ok",
        FrameStatus::Failed => "FAILED",
    };
    let _ = write!(out, "frame {}", journey.frame_id);
    if let Some(camera) = &journey.camera_id {
        let _ = write!(out, "  camera {camera}");
    }
    let _ = writeln!(
        out,
        "  {status}  {}  {} event{}  {} trace{}",
        format_duration(journey.duration_nanos),
        journey.events.len(),
        plural(journey.events.len()),
        journey.traces.len(),
        plural(journey.traces.len()),
    );
    out.push('\n');

    let service_width = column_width(
        "service",
        journey
            .events
            .iter()
            .map(|e| e.event.event.service.as_str()),
    );
    let stage_width = column_width(
        "~ gap",
        journey.events.iter().map(|e| e.event.event.stage.as_str()),
    )
    .max("stage".len());
    let total = journey.duration_nanos.max(1);
    let scale_label = format_duration(journey.duration_nanos);
    let scale = format!(
        "0{:>width$}",
        scale_label,
        width = BAR_WIDTH.saturating_sub(1)
    );
    let _ = writeln!(
        out,
        "{:<service_width$}  {:<stage_width$}  {:>9}  {:>9}  |{scale}|  status",
        "service", "stage", "offset", "duration",
    );

    for (index, item) in journey.events.iter().enumerate() {
        for gap in journey.gaps.iter().filter(|gap| gap.before_event == index) {
            let bar = bar(gap.offset_nanos, gap.duration_nanos, total, '.');
            let _ = writeln!(
                out,
                "{:<service_width$}  {:<stage_width$}  {:>9}  {:>9}  |{bar}|  queue wait",
                "",
                "~ gap",
                format_duration(gap.offset_nanos),
                format_duration(gap.duration_nanos),
            );
        }
        let event = &item.event.event;
        let (fill, status) = match event.status {
            EventStatus::Error => (
                '!',
                match &event.error_message {
                    Some(message) => format!("error: {}", one_line(message, 60)),
                    None => "error".to_owned(),
                },
            ),
            EventStatus::Ok | EventStatus::Unset => ('#', "ok".to_owned()),
        };
        let bar = bar(item.offset_nanos, item.duration_nanos, total, fill);
        let _ = writeln!(
            out,
            "{:<service_width$}  {:<stage_width$}  {:>9}  {:>9}  |{bar}|  {status}",
            cut(&event.service, service_width),
            cut(&event.stage, stage_width),
            format_duration(item.offset_nanos),
            format_duration(item.duration_nanos),
        );
    }

    if !journey.traces.is_empty() {
        out.push('\n');
        for trace in &journey.traces {
            match &trace.url {
                Some(url) => {
                    let _ = writeln!(out, "trace {}  {url}", trace.trace_id);
                }
                None => {
                    let _ = writeln!(out, "trace {}", trace.trace_id);
                }
            }
        }
    }
    out
}

/// A duration in the most readable unit: `850 ns`, `12.3 us`, `4.0 ms`, `1.25 s`.
pub fn format_duration(nanos: i64) -> String {
    let value = nanos as f64;
    match nanos.unsigned_abs() {
        0..1_000 => format!("{nanos} ns"),
        1_000..1_000_000 => format!("{:.1} us", value / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} ms", value / 1e6),
        _ => format!("{:.2} s", value / 1e9),
    }
}

fn bar(offset: i64, duration: i64, total: i64, fill: char) -> String {
    let column = |nanos: i64| -> usize {
        let scaled = (nanos.clamp(0, total) as f64 / total as f64) * BAR_WIDTH as f64;
        (scaled.round() as usize).min(BAR_WIDTH)
    };
    let start = column(offset).min(BAR_WIDTH - 1);
    // Every event gets at least one character, however short.
    let end = column(offset.saturating_add(duration)).max(start + 1);
    let mut bar = String::with_capacity(BAR_WIDTH);
    for index in 0..BAR_WIDTH {
        bar.push(if (start..end).contains(&index) {
            fill
        } else {
            ' '
        });
    }
    bar
}

pub(crate) fn column_width<'a>(header: &str, values: impl Iterator<Item = &'a str>) -> usize {
    values
        .map(|value| value.chars().count())
        .max()
        .unwrap_or(0)
        .max(header.len())
        .min(MAX_NAME_COLUMN)
}

pub(crate) fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('~');
    cut
}

pub(crate) fn one_line(text: &str, width: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cut(&flat, width)
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use frame_tracking::FrameId;
    use opentelemetry::trace::{SpanId, TraceId};

    use super::*;
    use crate::journey::TraceUrlTemplate;
    use crate::model::{Event, EventId, StoredEvent};

    fn stored(
        frame_id: &FrameId,
        position: i64,
        (service, stage): (&str, &str),
        (start, end): (i64, i64),
        status: EventStatus,
    ) -> StoredEvent {
        let trace_id = TraceId::from_bytes([7; 16]);
        let span_id = SpanId::from_bytes((position as u64 + 1).to_be_bytes());
        StoredEvent {
            position,
            event: Event {
                event_id: EventId::from_span(trace_id, span_id),
                frame_id: *frame_id,
                service: service.into(),
                stage: stage.into(),
                start_unix_nanos: start,
                end_unix_nanos: end,
                status,
                error_message: (status == EventStatus::Error).then(|| "decoder\nfailed".into()),
                trace_id,
                span_id,
                parent_span_id: None,
                camera_id: Some("cam01".into()),
                attributes: BTreeMap::new(),
            },
        }
    }

    fn journey() -> Journey {
        let frame_id = FrameId::generate("cam01", "rgb").unwrap();
        let ms = 1_000_000;
        let base = 1_700_000_000_000_000_000;
        let events = vec![
            stored(
                &frame_id,
                3,
                ("frame-processor", "detect_objects"),
                (base + 6 * ms, base + 9 * ms),
                EventStatus::Error,
            ),
            stored(
                &frame_id,
                1,
                ("frame-capture", "capture"),
                (base, base + ms),
                EventStatus::Unset,
            ),
            stored(
                &frame_id,
                2,
                ("frame-processor", "process_frame"),
                (base + 5 * ms, base + 10 * ms),
                EventStatus::Ok,
            ),
        ];
        let template = TraceUrlTemplate::parse("http://jaeger:16686/trace/{trace_id}");
        Journey::from_events(frame_id, events, template.as_ref()).unwrap()
    }

    #[test]
    fn journeys_order_events_and_find_the_queue_wait() {
        let journey = journey();
        let stages: Vec<&str> = journey
            .events
            .iter()
            .map(|e| e.event.event.stage.as_str())
            .collect();
        assert_eq!(stages, ["capture", "process_frame", "detect_objects"]);
        assert_eq!(journey.duration_nanos, 10_000_000);
        assert_eq!(journey.status, FrameStatus::Failed);
        // Capture ends at 1 ms, processing starts at 5 ms; the nested detection is no gap.
        assert_eq!(journey.gaps.len(), 1);
        assert_eq!(journey.gaps[0].offset_nanos, 1_000_000);
        assert_eq!(journey.gaps[0].duration_nanos, 4_000_000);
        assert_eq!(journey.gaps[0].after_stage, "capture");
        assert_eq!(journey.traces.len(), 1);
        assert_eq!(
            journey.traces[0].url.as_deref(),
            Some("http://jaeger:16686/trace/07070707070707070707070707070707")
        );
        assert_eq!(journey.stages.len(), 3);
    }

    #[test]
    fn the_waterfall_has_a_line_per_event_and_gap() {
        let text = render(&journey());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("FAILED"), "{text}");
        assert!(lines[0].contains("10.0 ms"), "{text}");
        assert!(lines[2].starts_with("service"), "{text}");
        assert!(lines[3].starts_with("frame-capture"), "{text}");
        assert!(lines[3].contains("|####    "), "{text}");
        assert!(
            lines[4].contains("~ gap") && lines[4].contains("queue wait"),
            "{text}"
        );
        assert!(lines[4].contains("4.0 ms"), "{text}");
        assert!(lines[6].contains("error: decoder failed"), "{text}");
        assert!(lines[6].contains('!'), "{text}");
        assert!(text.contains("trace 07070707070707070707070707070707  http://"));
        let bar_lengths: Vec<usize> = lines[3..7]
            .iter()
            .map(|line| line.split('|').nth(1).map_or(0, |bar| bar.chars().count()))
            .collect();
        assert_eq!(bar_lengths, [BAR_WIDTH; 4], "{text}");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(format_duration(850), "850 ns");
        assert_eq!(format_duration(12_345), "12.3 us");
        assert_eq!(format_duration(4_000_000), "4.0 ms");
        assert_eq!(format_duration(1_250_000_000), "1.25 s");
    }
}
