//! The trace analyzer: what a set of journeys says about the pipeline as a whole.
//!
//! [`analyze`] takes journeys (as `GET /frames/{id}/journey` returns them) and reports:
//! - the **stage latency breakdown**: per (service, stage), how long it took (p50, p90,
//!   p99, max), its self time (without the stages it wraps) and how far into the journey
//!   it started (the time to reach it);
//! - the **waits** between stages: idle stretches such as queue time, per pair of stages;
//! - the **slowest frames**, each with the stage of most self time and its longest wait;
//! - the **failed frames**, with the stages that failed and their error messages;
//! - the **incomplete journeys**: frames that lack an expected stage (given, or inferred
//!   as the stages most journeys have), with what they lack and where they stopped;
//! - the **orphan spans**: events whose parent span is not among the analysed events of
//!   their trace (a service that did not export the parent, or exported it without
//!   `frame.id`), and frames whose journey spans more than one trace (context lost at a
//!   hop).
//!
//! It is a pure function over journeys, so `tracker analyze` (which fetches them from a
//! running tracker, see [`crate::client`]), `cargo xtask analyze` and the demo's checks
//! share one implementation, and the JSON form of the [`Report`] is what scripts read.
//!
//! ```
//! # use tracker::analysis::{analyze, Expectation};
//! let report = analyze(&[], &Expectation::Inferred, 10);
//! assert_eq!(report.frames, 0);
//! assert!(report.render().contains("no frames"));
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use frame_tracking::FrameId;
use serde::{Deserialize, Serialize};

use crate::journey::Journey;
use crate::model::{EventStatus, FrameStatus};
use crate::waterfall::{column_width, cut, format_duration, one_line};

/// Which stages a complete journey has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// These stage names (span names), in any order.
    Stages(Vec<String>),
    /// The stages that more than half of the analysed journeys have.
    Inferred,
}

/// What [`analyze`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Journeys analysed.
    pub frames: u64,
    /// Events in them.
    pub events: u64,
    /// Earliest event start, Unix nanoseconds (0 without frames).
    pub first_seen_unix_nanos: i64,
    /// Latest event end, Unix nanoseconds (0 without frames).
    pub last_seen_unix_nanos: i64,
    /// The stages a complete journey has.
    pub expected_stages: Vec<String>,
    /// Whether [`Report::expected_stages`] was inferred from the data.
    pub expected_inferred: bool,
    /// Journeys with every expected stage.
    pub complete: u64,
    /// Journeys with at least one failed event.
    pub failed: u64,
    /// Per (service, stage), in pipeline order (median time to reach the stage).
    pub stages: Vec<StageBreakdown>,
    /// Idle stretches between stages, longest median first.
    pub waits: Vec<WaitBreakdown>,
    /// The journey of median duration.
    pub typical: Option<FrameBrief>,
    /// The slowest journeys, slowest first.
    pub slowest: Vec<FrameBrief>,
    /// Failed journeys (the first ones, newest first); [`Report::failed`] counts them all.
    pub failed_frames: Vec<FailedFrame>,
    /// Journeys lacking an expected stage: how many.
    pub incomplete: u64,
    /// Journeys lacking an expected stage (the first ones).
    pub incomplete_frames: Vec<IncompleteJourney>,
    /// Per expected stage, how many journeys lack it.
    pub missing_stages: BTreeMap<String, u64>,
    /// Events whose parent span is not among the analysed events of their trace: how many.
    pub orphans: u64,
    /// Orphan events (the first ones).
    pub orphan_spans: Vec<OrphanSpan>,
    /// Journeys whose events belong to more than one trace: how many.
    pub multi_trace: u64,
    /// Journeys whose events belong to more than one trace (the first ones).
    pub multi_trace_frames: Vec<FrameId>,
}

/// Latency percentiles, nanoseconds (nearest rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50_nanos: i64,
    /// 90th percentile.
    pub p90_nanos: i64,
    /// 99th percentile.
    pub p99_nanos: i64,
    /// Maximum.
    pub max_nanos: i64,
}

impl Percentiles {
    /// The percentiles of `values` (sorted here); all zero when empty.
    pub fn of(values: &mut [i64]) -> Percentiles {
        values.sort_unstable();
        let rank = |p: f64| -> i64 {
            if values.is_empty() {
                return 0;
            }
            let rank = (p / 100.0 * values.len() as f64).ceil() as usize;
            values[rank.clamp(1, values.len()) - 1]
        };
        Percentiles {
            p50_nanos: rank(50.0),
            p90_nanos: rank(90.0),
            p99_nanos: rank(99.0),
            max_nanos: values.last().copied().unwrap_or(0),
        }
    }
}

/// How one stage of one service performed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageBreakdown {
    /// The service.
    pub service: String,
    /// The stage (span name).
    pub stage: String,
    /// Journeys with this stage.
    pub frames: u64,
    /// Events of this stage.
    pub events: u64,
    /// Failed events of this stage.
    pub failed: u64,
    /// Event durations.
    pub duration: Percentiles,
    /// Event self times: the duration minus the time covered by the event's children
    /// (where the time actually went, for stages that wrap others).
    pub self_time: Percentiles,
    /// Start of the stage's first event relative to its journey's start.
    pub reached_after: Percentiles,
}

/// The idle stretches between two stages (see [`crate::journey::Gap`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitBreakdown {
    /// The stage that ended last before the wait.
    pub after_stage: String,
    /// The stage that started after it.
    pub before_stage: String,
    /// How many such waits.
    pub count: u64,
    /// Their lengths.
    pub duration: Percentiles,
}

/// One journey in a few numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameBrief {
    /// The frame.
    pub frame_id: FrameId,
    /// Its camera.
    pub camera_id: Option<String>,
    /// Its status.
    pub status: FrameStatus,
    /// First start to last end, nanoseconds.
    pub duration_nanos: i64,
    /// Its event with the longest self time (see [`StageBreakdown::self_time`]): stage
    /// and self time (nanoseconds).
    pub slowest_stage: Option<(String, i64)>,
    /// Its longest wait: the stage after it and its length (nanoseconds).
    pub longest_wait: Option<(String, i64)>,
}

/// A failed journey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedFrame {
    /// The frame.
    pub frame_id: FrameId,
    /// Its camera.
    pub camera_id: Option<String>,
    /// Its failed events.
    pub failures: Vec<Failure>,
}

/// A failed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The service.
    pub service: String,
    /// The stage.
    pub stage: String,
    /// The error message, when the span had one.
    pub error_message: Option<String>,
}

/// A journey lacking expected stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompleteJourney {
    /// The frame.
    pub frame_id: FrameId,
    /// Its camera.
    pub camera_id: Option<String>,
    /// Its status (a failed stage often explains the missing ones).
    pub status: FrameStatus,
    /// The expected stages it lacks.
    pub missing: Vec<String>,
    /// The stage of its last event to start.
    pub last_stage: String,
}

/// An event whose parent span is not among the analysed events of its trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanSpan {
    /// The frame.
    pub frame_id: FrameId,
    /// The service.
    pub service: String,
    /// The stage.
    pub stage: String,
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// The span id, 16 hex digits.
    pub span_id: String,
    /// The parent span id that resolves to nothing, 16 hex digits.
    pub parent_span_id: String,
}

/// Analyses `journeys`; lists (slowest, failed, incomplete, orphans) keep `top` entries.
pub fn analyze(journeys: &[Journey], expectation: &Expectation, top: usize) -> Report {
    let (expected_stages, expected_inferred) = match expectation {
        Expectation::Stages(stages) => (stages.clone(), false),
        Expectation::Inferred => (infer_stages(journeys), true),
    };
    let mut report = Report {
        frames: journeys.len() as u64,
        events: journeys.iter().map(|j| j.events.len() as u64).sum(),
        first_seen_unix_nanos: journeys
            .iter()
            .map(|j| j.start_unix_nanos)
            .min()
            .unwrap_or(0),
        last_seen_unix_nanos: journeys.iter().map(|j| j.end_unix_nanos).max().unwrap_or(0),
        expected_stages,
        expected_inferred,
        complete: 0,
        failed: 0,
        stages: Vec::new(),
        waits: Vec::new(),
        typical: None,
        slowest: Vec::new(),
        failed_frames: Vec::new(),
        incomplete: 0,
        incomplete_frames: Vec::new(),
        missing_stages: BTreeMap::new(),
        orphans: 0,
        orphan_spans: Vec::new(),
        multi_trace: 0,
        multi_trace_frames: Vec::new(),
    };

    // Every span of every analysed trace, so a parent in another frame's journey resolves.
    let spans: HashSet<(opentelemetry::trace::TraceId, opentelemetry::trace::SpanId)> = journeys
        .iter()
        .flat_map(|j| &j.events)
        .map(|e| (e.event.event.trace_id, e.event.event.span_id))
        .collect();

    #[derive(Default)]
    struct StageSamples {
        frames: u64,
        failed: u64,
        durations: Vec<i64>,
        self_times: Vec<i64>,
        reached: Vec<i64>,
        /// Index of the stage's first event in its journey: orders stages that start
        /// together.
        index: Vec<i64>,
    }
    let mut stages: HashMap<(String, String), StageSamples> = HashMap::new();
    let mut waits: HashMap<(String, String), Vec<i64>> = HashMap::new();
    let mut briefs = Vec::with_capacity(journeys.len());

    for journey in journeys {
        let self_times = self_times(journey);
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        for (index, event) in journey.events.iter().enumerate() {
            let stored = &event.event.event;
            let samples = stages
                .entry((stored.service.clone(), stored.stage.clone()))
                .or_default();
            if seen.insert((&stored.service, &stored.stage)) {
                samples.frames += 1;
                samples.reached.push(event.offset_nanos);
                samples.index.push(index as i64);
            }
            samples.durations.push(event.duration_nanos);
            samples.self_times.push(self_times[index]);
            if stored.status == EventStatus::Error {
                samples.failed += 1;
            }
            if let Some(parent) = stored.parent_span_id
                && !spans.contains(&(stored.trace_id, parent))
            {
                report.orphans += 1;
                if report.orphan_spans.len() < top {
                    report.orphan_spans.push(OrphanSpan {
                        frame_id: journey.frame_id,
                        service: stored.service.clone(),
                        stage: stored.stage.clone(),
                        trace_id: stored.trace_id.to_string(),
                        span_id: stored.span_id.to_string(),
                        parent_span_id: parent.to_string(),
                    });
                }
            }
        }
        for gap in &journey.gaps {
            waits
                .entry((gap.after_stage.clone(), gap.before_stage.clone()))
                .or_default()
                .push(gap.duration_nanos);
        }

        let stage_names: HashSet<&str> = journey
            .events
            .iter()
            .map(|e| e.event.event.stage.as_str())
            .collect();
        let missing: Vec<String> = report
            .expected_stages
            .iter()
            .filter(|stage| !stage_names.contains(stage.as_str()))
            .cloned()
            .collect();
        if missing.is_empty() {
            report.complete += 1;
        } else {
            report.incomplete += 1;
            for stage in &missing {
                *report.missing_stages.entry(stage.clone()).or_default() += 1;
            }
            if report.incomplete_frames.len() < top {
                report.incomplete_frames.push(IncompleteJourney {
                    frame_id: journey.frame_id,
                    camera_id: journey.camera_id.clone(),
                    status: journey.status,
                    missing,
                    last_stage: journey
                        .events
                        .last()
                        .map(|e| e.event.event.stage.clone())
                        .unwrap_or_default(),
                });
            }
        }

        if journey.status == FrameStatus::Failed {
            report.failed += 1;
            if report.failed_frames.len() < top {
                report.failed_frames.push(FailedFrame {
                    frame_id: journey.frame_id,
                    camera_id: journey.camera_id.clone(),
                    failures: journey
                        .events
                        .iter()
                        .map(|e| &e.event.event)
                        .filter(|e| e.status == EventStatus::Error)
                        .map(|e| Failure {
                            service: e.service.clone(),
                            stage: e.stage.clone(),
                            error_message: e.error_message.clone(),
                        })
                        .collect(),
                });
            }
        }
        if journey.traces.len() > 1 {
            report.multi_trace += 1;
            if report.multi_trace_frames.len() < top {
                report.multi_trace_frames.push(journey.frame_id);
            }
        }
        briefs.push(brief(journey, &self_times));
    }

    let mut breakdown: Vec<(i64, StageBreakdown)> = stages
        .into_iter()
        .map(|((service, stage), mut samples)| {
            let index = Percentiles::of(&mut samples.index).p50_nanos;
            let breakdown = StageBreakdown {
                service,
                stage,
                frames: samples.frames,
                events: samples.durations.len() as u64,
                failed: samples.failed,
                duration: Percentiles::of(&mut samples.durations),
                self_time: Percentiles::of(&mut samples.self_times),
                reached_after: Percentiles::of(&mut samples.reached),
            };
            (index, breakdown)
        })
        .collect();
    breakdown.sort_by(|(a_index, a), (b_index, b)| {
        (a.reached_after.p50_nanos, a_index, &a.service, &a.stage).cmp(&(
            b.reached_after.p50_nanos,
            b_index,
            &b.service,
            &b.stage,
        ))
    });
    report.stages = breakdown.into_iter().map(|(_, stage)| stage).collect();

    let mut waits: Vec<WaitBreakdown> = waits
        .into_iter()
        .map(|((after_stage, before_stage), mut lengths)| WaitBreakdown {
            after_stage,
            before_stage,
            count: lengths.len() as u64,
            duration: Percentiles::of(&mut lengths),
        })
        .collect();
    waits.sort_by(|a, b| {
        (b.duration.p50_nanos, &a.after_stage, &a.before_stage).cmp(&(
            a.duration.p50_nanos,
            &b.after_stage,
            &b.before_stage,
        ))
    });
    report.waits = waits;

    briefs.sort_by_key(|brief| std::cmp::Reverse(brief.duration_nanos));
    report.typical = briefs.get(briefs.len() / 2).cloned();
    briefs.truncate(top);
    report.slowest = briefs;
    report
}

/// The stages more than half of `journeys` have, in order of their median first start
/// (then of their median position in the journey).
fn infer_stages(journeys: &[Journey]) -> Vec<String> {
    let mut counts: BTreeMap<&str, (u64, Vec<i64>, Vec<i64>)> = BTreeMap::new();
    for journey in journeys {
        let mut seen = HashSet::new();
        for (index, event) in journey.events.iter().enumerate() {
            let stage = event.event.event.stage.as_str();
            if seen.insert(stage) {
                let entry = counts.entry(stage).or_default();
                entry.0 += 1;
                entry.1.push(event.offset_nanos);
                entry.2.push(index as i64);
            }
        }
    }
    let mut common: Vec<(i64, i64, &str)> = counts
        .into_iter()
        .filter(|(_, (count, _, _))| *count * 2 > journeys.len() as u64)
        .map(|(stage, (_, mut offsets, mut indexes))| {
            (
                Percentiles::of(&mut offsets).p50_nanos,
                Percentiles::of(&mut indexes).p50_nanos,
                stage,
            )
        })
        .collect();
    common.sort();
    common
        .into_iter()
        .map(|(_, _, stage)| stage.to_owned())
        .collect()
}

/// Per event of `journey` (same order), its duration minus the union of its children's
/// intervals (clipped to it).
fn self_times(journey: &Journey) -> Vec<i64> {
    let mut children: HashMap<
        (opentelemetry::trace::TraceId, opentelemetry::trace::SpanId),
        Vec<(i64, i64)>,
    > = HashMap::new();
    for event in &journey.events {
        let stored = &event.event.event;
        if let Some(parent) = stored.parent_span_id {
            children
                .entry((stored.trace_id, parent))
                .or_default()
                .push((stored.start_unix_nanos, stored.end_unix_nanos));
        }
    }
    journey
        .events
        .iter()
        .map(|event| {
            let stored = &event.event.event;
            let (start, end) = (stored.start_unix_nanos, stored.end_unix_nanos);
            let Some(intervals) = children.get_mut(&(stored.trace_id, stored.span_id)) else {
                return event.duration_nanos;
            };
            intervals.sort_unstable();
            let mut covered = 0;
            let mut reach = start;
            for &(child_start, child_end) in intervals.iter() {
                let (from, to) = (child_start.max(reach), child_end.min(end));
                if to > from {
                    covered += to - from;
                    reach = to;
                }
            }
            (event.duration_nanos - covered).max(0)
        })
        .collect()
}

fn brief(journey: &Journey, self_times: &[i64]) -> FrameBrief {
    FrameBrief {
        frame_id: journey.frame_id,
        camera_id: journey.camera_id.clone(),
        status: journey.status,
        duration_nanos: journey.duration_nanos,
        slowest_stage: journey
            .events
            .iter()
            .zip(self_times)
            .max_by_key(|(_, self_time)| **self_time)
            .map(|(e, self_time)| (e.event.event.stage.clone(), *self_time)),
        longest_wait: journey
            .gaps
            .iter()
            .max_by_key(|g| g.duration_nanos)
            .map(|g| (g.before_stage.clone(), g.duration_nanos)),
    }
}

/// One line about a journey: id, camera, duration, slowest stage, longest wait, status.
fn write_brief(out: &mut String, frame: &FrameBrief) {
    let _ = write!(
        out,
        "{}  {}  {}",
        frame.frame_id,
        frame.camera_id.as_deref().unwrap_or("-"),
        format_duration(frame.duration_nanos),
    );
    if let Some((stage, nanos)) = &frame.slowest_stage {
        let _ = write!(out, "  most self time {stage} {}", format_duration(*nanos));
    }
    if let Some((stage, nanos)) = &frame.longest_wait {
        let _ = write!(
            out,
            "  longest wait {} before {stage}",
            format_duration(*nanos)
        );
    }
    if frame.status == FrameStatus::Failed {
        out.push_str("  FAILED");
    }
    out.push('\n');
}

impl Report {
    /// The report as text for a terminal (lines end with `\n`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.frames == 0 {
            out.push_str("no frames to analyse\n");
            return out;
        }
        let _ = writeln!(
            out,
            "{} frames, {} events, over {}",
            self.frames,
            self.events,
            format_duration(self.last_seen_unix_nanos - self.first_seen_unix_nanos)
        );
        let _ = writeln!(
            out,
            "expected stages ({}): {}",
            if self.expected_inferred {
                "those most journeys have"
            } else {
                "as given"
            },
            self.expected_stages.join(", ")
        );
        let _ = writeln!(
            out,
            "complete {}  incomplete {}  failed {}  orphan spans {}  frames in more than one trace {}",
            self.complete, self.incomplete, self.failed, self.orphans, self.multi_trace
        );

        out.push_str("\nstage latency\n");
        let service_width = column_width("service", self.stages.iter().map(|s| s.service.as_str()));
        let stage_width = column_width("stage", self.stages.iter().map(|s| s.stage.as_str()));
        let _ = writeln!(
            out,
            "  {:<service_width$}  {:<stage_width$}  {:>6}  {:>6}  {:>9}  {:>9}  {:>9}  {:>9}  {:>11}  {:>11}",
            "service",
            "stage",
            "spans",
            "failed",
            "p50",
            "p99",
            "max",
            "self p50",
            "reached p50",
            "reached p99"
        );
        for stage in &self.stages {
            let _ = writeln!(
                out,
                "  {:<service_width$}  {:<stage_width$}  {:>6}  {:>6}  {:>9}  {:>9}  {:>9}  {:>9}  {:>11}  {:>11}",
                cut(&stage.service, service_width),
                cut(&stage.stage, stage_width),
                stage.events,
                stage.failed,
                format_duration(stage.duration.p50_nanos),
                format_duration(stage.duration.p99_nanos),
                format_duration(stage.duration.max_nanos),
                format_duration(stage.self_time.p50_nanos),
                format_duration(stage.reached_after.p50_nanos),
                format_duration(stage.reached_after.p99_nanos),
            );
        }

        if !self.waits.is_empty() {
            out.push_str("\nwaits between stages (idle time: queues, network)\n");
            for wait in &self.waits {
                let _ = writeln!(
                    out,
                    "  {} -> {}: {} waits, p50 {}, p99 {}, max {}",
                    wait.after_stage,
                    wait.before_stage,
                    wait.count,
                    format_duration(wait.duration.p50_nanos),
                    format_duration(wait.duration.p99_nanos),
                    format_duration(wait.duration.max_nanos),
                );
            }
        }

        if let Some(typical) = &self.typical {
            let _ = writeln!(out, "\ntypical frame (median duration)");
            out.push_str("      ");
            write_brief(&mut out, typical);
        }
        let _ = writeln!(out, "\nslowest frames");
        for (rank, frame) in self.slowest.iter().enumerate() {
            let _ = write!(out, "  {:>2}. ", rank + 1);
            write_brief(&mut out, frame);
        }

        let _ = writeln!(out, "\nfailed frames: {}", self.failed);
        for frame in &self.failed_frames {
            let failures: Vec<String> = frame
                .failures
                .iter()
                .map(|f| match &f.error_message {
                    Some(message) => {
                        format!("{}/{}: {}", f.service, f.stage, one_line(message, 120))
                    }
                    None => format!("{}/{}", f.service, f.stage),
                })
                .collect();
            let _ = writeln!(out, "  {}  {}", frame.frame_id, failures.join("; "));
        }
        let _ = write!(out, "incomplete journeys: {}", self.incomplete);
        if !self.missing_stages.is_empty() {
            let missing: Vec<String> = self
                .missing_stages
                .iter()
                .map(|(stage, count)| format!("{count} lack {stage}"))
                .collect();
            let _ = write!(out, " ({})", missing.join(", "));
        }
        out.push('\n');
        for journey in &self.incomplete_frames {
            let _ = writeln!(
                out,
                "  {}  lacks {}  (last stage {}{})",
                journey.frame_id,
                journey.missing.join(", "),
                journey.last_stage,
                if journey.status == FrameStatus::Failed {
                    ", failed"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(out, "orphan spans: {}", self.orphans);
        for orphan in &self.orphan_spans {
            let _ = writeln!(
                out,
                "  {}  {}/{} span {} has parent {} (not found in trace {})",
                orphan.frame_id,
                orphan.service,
                orphan.stage,
                orphan.span_id,
                orphan.parent_span_id,
                orphan.trace_id
            );
        }
        if self.multi_trace > 0 {
            let _ = writeln!(
                out,
                "frames in more than one trace (context lost at a hop): {}",
                self.multi_trace
            );
            for frame in &self.multi_trace_frames {
                let _ = writeln!(out, "  {frame}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opentelemetry::trace::{SpanId, TraceId};

    use super::*;
    use crate::model::{Event, EventId, StoredEvent};

    const MS: i64 = 1_000_000;
    const BASE: i64 = 1_700_000_000_000_000_000;

    /// One span: (service, stage), start and end in ms after `BASE`, its span id, its
    /// parent's, and its trace.
    struct Span {
        service: &'static str,
        stage: &'static str,
        millis: (i64, i64),
        span: u64,
        parent: Option<u64>,
        trace: u8,
        failed: bool,
    }

    fn span(service: &'static str, stage: &'static str, millis: (i64, i64), span: u64) -> Span {
        Span {
            service,
            stage,
            millis,
            span,
            parent: None,
            trace: 1,
            failed: false,
        }
    }

    impl Span {
        fn child_of(mut self, parent: u64) -> Span {
            self.parent = Some(parent);
            self
        }
    }

    /// A frame's journey; span ids are offset by `frame` so frames do not share spans.
    fn journey(frame: u64, spans: Vec<Span>) -> Journey {
        let frame_id = FrameId::generate("cam01", "rgb").unwrap();
        let offset = frame * 100;
        let events = spans
            .into_iter()
            .enumerate()
            .map(|(position, s)| {
                let trace_id = TraceId::from_bytes([s.trace; 16]);
                let span_id = SpanId::from_bytes((s.span + offset).to_be_bytes());
                StoredEvent {
                    position: position as i64,
                    event: Event {
                        event_id: EventId::from_span(trace_id, span_id),
                        frame_id,
                        service: s.service.into(),
                        stage: s.stage.into(),
                        start_unix_nanos: BASE + s.millis.0 * MS,
                        end_unix_nanos: BASE + s.millis.1 * MS,
                        status: if s.failed {
                            EventStatus::Error
                        } else {
                            EventStatus::Unset
                        },
                        error_message: s.failed.then(|| "decoder failed".into()),
                        trace_id,
                        span_id,
                        parent_span_id: s
                            .parent
                            .map(|parent| SpanId::from_bytes((parent + offset).to_be_bytes())),
                        camera_id: Some("cam01".into()),
                        attributes: BTreeMap::new(),
                    },
                }
            })
            .collect();
        Journey::from_events(frame_id, events, None).unwrap()
    }

    /// capture (0..1 ms), a wait of `wait` ms, process_frame for `work` ms with a detect
    /// child.
    fn pipeline(frame: u64, wait: i64, work: i64) -> Journey {
        journey(
            frame,
            vec![
                span("frame-capture", "capture", (0, 1), 1),
                span(
                    "frame-processor",
                    "process_frame",
                    (1 + wait, 1 + wait + work),
                    2,
                )
                .child_of(1),
                span(
                    "frame-processor",
                    "detect_objects",
                    (1 + wait, wait + work),
                    3,
                )
                .child_of(2),
            ],
        )
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut values: Vec<i64> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut values);
        assert_eq!(
            (p.p50_nanos, p.p90_nanos, p.p99_nanos, p.max_nanos),
            (50, 90, 99, 100)
        );
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn a_healthy_pipeline_breaks_down_by_stage_and_wait() {
        let journeys: Vec<Journey> = (0..10).map(|i| pipeline(i, 2 + i as i64, 5)).collect();
        let report = analyze(&journeys, &Expectation::Inferred, 3);

        assert_eq!((report.frames, report.events), (10, 30));
        assert_eq!(
            report.expected_stages,
            ["capture", "process_frame", "detect_objects"]
        );
        assert!(report.expected_inferred);
        assert_eq!((report.complete, report.incomplete), (10, 0));
        assert_eq!(
            (report.failed, report.orphans, report.multi_trace),
            (0, 0, 0)
        );

        let stages: Vec<&str> = report.stages.iter().map(|s| s.stage.as_str()).collect();
        assert_eq!(stages, ["capture", "process_frame", "detect_objects"]);
        let process = &report.stages[1];
        assert_eq!((process.frames, process.events), (10, 10));
        assert_eq!(process.duration.p50_nanos, 5 * MS);
        // detect_objects covers 4 of its 5 ms.
        assert_eq!(process.self_time.p50_nanos, MS);
        assert_eq!(report.stages[2].self_time.p50_nanos, 4 * MS);
        // Reached after 1 ms of capture plus waits of 2..=11 ms.
        assert_eq!(process.reached_after.p50_nanos, (1 + 6) * MS);
        assert_eq!(process.reached_after.max_nanos, (1 + 11) * MS);

        assert_eq!(report.waits.len(), 1);
        let wait = &report.waits[0];
        assert_eq!(
            (wait.after_stage.as_str(), wait.before_stage.as_str()),
            ("capture", "process_frame")
        );
        assert_eq!((wait.count, wait.duration.max_nanos), (10, 11 * MS));

        // The slowest is the one that waited longest, and says so.
        assert_eq!(report.slowest.len(), 3);
        assert_eq!(report.slowest[0].frame_id, journeys[9].frame_id);
        assert_eq!(report.slowest[0].duration_nanos, (1 + 11 + 5) * MS);
        assert_eq!(
            report.slowest[0].longest_wait,
            Some(("process_frame".to_owned(), 11 * MS))
        );
        assert_eq!(
            report.slowest[0].slowest_stage,
            Some(("detect_objects".to_owned(), 4 * MS))
        );
        assert!(report.slowest[0].duration_nanos >= report.slowest[1].duration_nanos);
        // Waits of 2..=11 ms: the median journey (index 5 of 10, slowest first) waited 6 ms.
        let typical = report.typical.as_ref().unwrap();
        assert_eq!(typical.duration_nanos, (1 + 6 + 5) * MS);
    }

    #[test]
    fn failures_gaps_in_the_journey_orphans_and_lost_context_are_found() {
        let healthy: Vec<Journey> = (0..4).map(|i| pipeline(i, 1, 3)).collect();
        // Captured, never processed.
        let lost = journey(10, vec![span("frame-capture", "capture", (0, 1), 1)]);
        // Detection failed.
        let mut failing = span("frame-processor", "detect_objects", (2, 3), 3).child_of(2);
        failing.failed = true;
        let failed = journey(
            11,
            vec![
                span("frame-capture", "capture", (0, 1), 1),
                span("frame-processor", "process_frame", (1, 4), 2).child_of(1),
                failing,
            ],
        );
        // The processor's span names a parent nobody exported, in a new trace.
        let mut restarted = span("frame-processor", "process_frame", (2, 4), 2).child_of(99);
        restarted.trace = 2;
        let orphaned = journey(
            12,
            vec![
                span("frame-capture", "capture", (0, 1), 1),
                restarted,
                span("frame-processor", "detect_objects", (2, 3), 3).child_of(2),
            ],
        );
        let mut journeys = healthy;
        journeys.extend([lost.clone(), failed.clone(), orphaned.clone()]);

        let report = analyze(&journeys, &Expectation::Inferred, 10);
        assert_eq!((report.frames, report.complete), (7, 6));
        assert_eq!(report.incomplete, 1);
        let incomplete = &report.incomplete_frames[0];
        assert_eq!(incomplete.frame_id, lost.frame_id);
        assert_eq!(incomplete.missing, ["process_frame", "detect_objects"]);
        assert_eq!(incomplete.last_stage, "capture");
        assert_eq!(
            report.missing_stages,
            BTreeMap::from([("detect_objects".into(), 1), ("process_frame".into(), 1)])
        );

        assert_eq!(report.failed, 1);
        assert_eq!(report.failed_frames[0].frame_id, failed.frame_id);
        assert_eq!(
            report.failed_frames[0].failures,
            [Failure {
                service: "frame-processor".into(),
                stage: "detect_objects".into(),
                error_message: Some("decoder failed".into()),
            }]
        );
        let detect = report
            .stages
            .iter()
            .find(|s| s.stage == "detect_objects")
            .unwrap();
        assert_eq!(detect.failed, 1);

        // The process_frame span's parent is missing; its child, in the other trace,
        // also resolves nothing there.
        assert_eq!(report.orphans, 2);
        assert!(
            report
                .orphan_spans
                .iter()
                .all(|o| o.frame_id == orphaned.frame_id)
        );
        assert_eq!(report.orphan_spans[0].stage, "process_frame");
        assert_eq!(report.multi_trace, 1);
        assert_eq!(report.multi_trace_frames, [orphaned.frame_id]);

        let text = report.render();
        for expected in [
            "complete 6  incomplete 1  failed 1  orphan spans 2",
            "lacks process_frame, detect_objects  (last stage capture)",
            "incomplete journeys: 1 (1 lack detect_objects, 1 lack process_frame)",
            "frame-processor/detect_objects: decoder failed",
            "capture -> process_frame",
            &format!("{}", lost.frame_id),
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
    }

    #[test]
    fn given_stages_are_what_complete_means_and_lists_are_bounded() {
        let journeys: Vec<Journey> = (0..5).map(|i| pipeline(i, 1, 1)).collect();
        let expectation = Expectation::Stages(vec!["capture".into(), "store_result".into()]);
        let report = analyze(&journeys, &expectation, 2);
        assert!(!report.expected_inferred);
        assert_eq!((report.complete, report.incomplete), (0, 5));
        assert_eq!(report.incomplete_frames.len(), 2);
        assert_eq!(report.incomplete_frames[0].missing, ["store_result"]);
        assert_eq!(report.slowest.len(), 2);
    }

    #[test]
    fn the_json_report_round_trips() {
        let report = analyze(&[pipeline(0, 1, 1)], &Expectation::Inferred, 5);
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }
}
