//! The projections both backends keep: one [`FrameRow`] per frame and one [`CameraRow`]
//! per camera, computed here in Rust so that SQLite and PostgreSQL share one definition.
//!
//! A backend loads the rows an append (or a retention pass) touches, lets this module
//! merge the change into them, and writes them back in the same transaction as the log.
//!
//! Camera latency percentiles come from a [`Histogram`] of frame total durations with 16
//! linear sub-buckets per power of two (the layout HdrHistogram uses): a percentile is the
//! middle of its bucket, so it is within 1/32 (about 3 %) of a true frame duration at that
//! rank; durations under 16 ns are exact.

use std::collections::BTreeMap;

use frame_tracking::FrameId;
use opentelemetry::trace::{SpanId, TraceId};

use crate::model::{
    CameraStats, Event, EventId, EventStatus, FrameStatus, FrameSummary, StoredEvent,
};
use crate::store::StoreError;

/// Bytes counted for every event on top of its variable-length fields, for retention by
/// size: the fixed-width columns, the row header and the entries in the three indexes.
/// Measured on SQLite with the benchmark's events (~190 bytes per event on disk).
pub(crate) const EVENT_FIXED_BYTES: i64 = 120;

/// A frame's summary as stored: what [`FrameSummary`] shows plus what merging needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameRow {
    pub(crate) frame_id: String,
    pub(crate) camera_id: Option<String>,
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) events: i64,
    pub(crate) errors: i64,
    /// Distinct stages with their first start, ordered by (first start, name).
    pub(crate) stages: Vec<(String, i64)>,
}

/// A camera's statistics as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CameraRow {
    pub(crate) camera_id: String,
    pub(crate) frames: i64,
    pub(crate) failed_frames: i64,
    pub(crate) events: i64,
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) histogram: Histogram,
}

/// Counts of frame durations in log-linear buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Histogram {
    buckets: BTreeMap<u16, u64>,
}

/// A stored value that cannot be decoded: the store is corrupt or was written by
/// something else.
#[derive(Debug, thiserror::Error)]
#[error("corrupt store: {0}")]
pub(crate) struct Corrupt(pub(crate) String);

/// The code a status is stored as.
pub(crate) fn status_code(status: EventStatus) -> i16 {
    match status {
        EventStatus::Unset => 0,
        EventStatus::Ok => 1,
        EventStatus::Error => 2,
    }
}

/// The status stored as `code`.
pub(crate) fn status_from_code(code: i64) -> Result<EventStatus, StoreError> {
    match code {
        0 => Ok(EventStatus::Unset),
        1 => Ok(EventStatus::Ok),
        2 => Ok(EventStatus::Error),
        other => Err(corrupt(format!("unknown event status code {other}"))),
    }
}

/// An event's row as both backends store it (columns in this order), before decoding.
pub(crate) struct EventRow {
    pub(crate) position: i64,
    pub(crate) event_id: Vec<u8>,
    pub(crate) service: String,
    pub(crate) stage: String,
    pub(crate) start_unix_nanos: i64,
    pub(crate) end_unix_nanos: i64,
    pub(crate) status: i64,
    pub(crate) error_message: Option<String>,
    pub(crate) parent_span_id: Option<Vec<u8>>,
    pub(crate) camera_id: Option<String>,
    pub(crate) attributes: Option<String>,
}

impl EventRow {
    /// The stored event; its trace and span ids are the halves of its id.
    pub(crate) fn decode(self, frame_id: FrameId) -> Result<StoredEvent, StoreError> {
        let event_id: [u8; 24] = self
            .event_id
            .try_into()
            .map_err(|_| corrupt("an event id that is not 24 bytes".to_owned()))?;
        let parent_span_id = self
            .parent_span_id
            .map(|bytes| {
                <[u8; 8]>::try_from(bytes)
                    .map(SpanId::from_bytes)
                    .map_err(|_| corrupt("a parent span id that is not 8 bytes".to_owned()))
            })
            .transpose()?;
        let mut trace_id = [0u8; 16];
        trace_id.copy_from_slice(&event_id[..16]);
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&event_id[16..]);
        Ok(StoredEvent {
            position: self.position,
            event: Event {
                event_id: EventId::from_bytes(event_id),
                frame_id,
                service: self.service,
                stage: self.stage,
                start_unix_nanos: self.start_unix_nanos,
                end_unix_nanos: self.end_unix_nanos,
                status: status_from_code(self.status)?,
                error_message: self.error_message,
                trace_id: TraceId::from_bytes(trace_id),
                span_id: SpanId::from_bytes(span_id),
                parent_span_id,
                camera_id: self.camera_id,
                attributes: parse_attributes(self.attributes.as_deref())?,
            },
        })
    }
}

/// A [`StoreError::Failed`] for a value that does not decode.
pub(crate) fn corrupt(message: String) -> StoreError {
    StoreError::Failed(Box::new(Corrupt(message)))
}

/// The attributes as stored: JSON, or `NULL` when there are none.
pub(crate) fn attributes_json(event: &Event) -> Option<String> {
    if event.attributes.is_empty() {
        return None;
    }
    // A map of strings to JSON values always serializes.
    serde_json::to_string(&event.attributes).ok()
}

/// The attributes from their stored JSON.
pub(crate) fn parse_attributes(
    text: Option<&str>,
) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
    match text {
        None => Ok(BTreeMap::new()),
        Some(text) => serde_json::from_str(text)
            .map_err(|error| corrupt(format!("cannot decode event attributes: {error}"))),
    }
}

/// What an event counts for in retention by size: its variable-length fields plus
/// [`EVENT_FIXED_BYTES`].
pub(crate) fn event_size(event: &Event, attributes: Option<&str>) -> i64 {
    let variable = 2 * event.frame_id.as_str().len()
        + event.service.len()
        + event.stage.len()
        + event.error_message.as_deref().map_or(0, str::len)
        + event.camera_id.as_deref().map_or(0, str::len)
        + attributes.map_or(0, str::len);
    EVENT_FIXED_BYTES + i64::try_from(variable).unwrap_or(i64::MAX / 2)
}

impl FrameRow {
    /// A frame seen first in `event`.
    pub(crate) fn from_event(event: &Event) -> FrameRow {
        FrameRow {
            frame_id: event.frame_id.as_str().to_owned(),
            camera_id: event.camera_id.clone(),
            first_seen: event.start_unix_nanos,
            last_seen: event.end_unix_nanos,
            events: 1,
            errors: i64::from(event.status == EventStatus::Error),
            stages: vec![(event.stage.clone(), event.start_unix_nanos)],
        }
    }

    /// The frame of `events` (all of one frame), `None` when there are none.
    pub(crate) fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<FrameRow> {
        let mut events = events.into_iter();
        let mut row = FrameRow::from_event(events.next()?);
        for event in events {
            row.add(event);
        }
        Some(row)
    }

    /// Merges one more event of the frame.
    pub(crate) fn add(&mut self, event: &Event) {
        if self.camera_id.is_none() {
            self.camera_id.clone_from(&event.camera_id);
        }
        self.first_seen = self.first_seen.min(event.start_unix_nanos);
        self.last_seen = self.last_seen.max(event.end_unix_nanos);
        self.events += 1;
        self.errors += i64::from(event.status == EventStatus::Error);
        let order = |(a, a_start): &(String, i64), (b, b_start): &(String, i64)| {
            a_start.cmp(b_start).then_with(|| a.cmp(b))
        };
        match self
            .stages
            .iter_mut()
            .find(|(stage, _)| *stage == event.stage)
        {
            Some((_, start)) if event.start_unix_nanos < *start => {
                *start = event.start_unix_nanos;
                self.stages.sort_by(order);
            }
            Some(_) => {}
            None => {
                self.stages
                    .push((event.stage.clone(), event.start_unix_nanos));
                // Stages mostly arrive in order: sort only when the new one is not last.
                if let [.., before, last] = self.stages.as_slice()
                    && order(before, last).is_gt()
                {
                    self.stages.sort_by(order);
                }
            }
        }
    }

    /// First start to last end, nanoseconds.
    pub(crate) fn duration(&self) -> i64 {
        self.last_seen.saturating_sub(self.first_seen)
    }

    /// Whether any of its events failed.
    pub(crate) fn failed(&self) -> bool {
        self.errors > 0
    }

    /// The stages as stored: JSON `[[name, first start], ...]`.
    pub(crate) fn stages_json(&self) -> String {
        // A list of (string, integer) pairs always serializes.
        serde_json::to_string(&self.stages).unwrap_or_else(|_| "[]".to_owned())
    }

    /// The stages from their stored JSON.
    pub(crate) fn parse_stages(text: &str) -> Result<Vec<(String, i64)>, StoreError> {
        serde_json::from_str(text)
            .map_err(|error| corrupt(format!("cannot decode frame stages: {error}")))
    }

    /// The summary the API shows.
    pub(crate) fn summary(&self) -> Result<FrameSummary, StoreError> {
        let frame_id = self
            .frame_id
            .parse()
            .map_err(|error| corrupt(format!("stored frame id {:?}: {error}", self.frame_id)))?;
        Ok(FrameSummary {
            frame_id,
            camera_id: self.camera_id.clone(),
            first_seen_unix_nanos: self.first_seen,
            last_seen_unix_nanos: self.last_seen,
            total_duration_nanos: self.duration(),
            events: u64::try_from(self.events).unwrap_or_default(),
            stages: self.stages.iter().map(|(stage, _)| stage.clone()).collect(),
            status: if self.failed() {
                FrameStatus::Failed
            } else {
                FrameStatus::Ok
            },
        })
    }
}

impl CameraRow {
    /// A camera with no frames yet.
    pub(crate) fn empty(camera_id: &str) -> CameraRow {
        CameraRow {
            camera_id: camera_id.to_owned(),
            frames: 0,
            failed_frames: 0,
            events: 0,
            first_seen: i64::MAX,
            last_seen: i64::MIN,
            histogram: Histogram::default(),
        }
    }

    /// Counts a frame of this camera. First and last seen only widen.
    pub(crate) fn add_frame(&mut self, frame: &FrameRow) {
        self.frames += 1;
        self.failed_frames += i64::from(frame.failed());
        self.events += frame.events;
        self.first_seen = self.first_seen.min(frame.first_seen);
        self.last_seen = self.last_seen.max(frame.last_seen);
        self.histogram.record(frame.duration());
    }

    /// Stops counting a frame of this camera. First and last seen are left as they are:
    /// the caller recomputes them when the removed frame may have defined them.
    pub(crate) fn remove_frame(&mut self, frame: &FrameRow) {
        self.frames -= 1;
        self.failed_frames -= i64::from(frame.failed());
        self.events -= frame.events;
        self.histogram.remove(frame.duration());
    }

    /// The statistics the API shows.
    pub(crate) fn stats(&self) -> CameraStats {
        CameraStats {
            camera_id: self.camera_id.clone(),
            frames: u64::try_from(self.frames).unwrap_or_default(),
            failed_frames: u64::try_from(self.failed_frames).unwrap_or_default(),
            events: u64::try_from(self.events).unwrap_or_default(),
            latency_p50_nanos: self.histogram.percentile(0.50),
            latency_p90_nanos: self.histogram.percentile(0.90),
            latency_p99_nanos: self.histogram.percentile(0.99),
            first_seen_unix_nanos: self.first_seen,
            last_seen_unix_nanos: self.last_seen,
        }
    }
}

/// Moves one frame's contribution in `cameras` from `old` to `new` (either may be absent:
/// a new frame, a deleted frame). `cameras` must hold the rows of both frames' cameras;
/// missing ones start empty.
pub(crate) fn apply_frame_change(
    cameras: &mut BTreeMap<String, CameraRow>,
    old: Option<&FrameRow>,
    new: Option<&FrameRow>,
) {
    if let Some(old) = old
        && let Some(camera_id) = &old.camera_id
    {
        cameras
            .entry(camera_id.clone())
            .or_insert_with(|| CameraRow::empty(camera_id))
            .remove_frame(old);
    }
    if let Some(new) = new
        && let Some(camera_id) = &new.camera_id
    {
        cameras
            .entry(camera_id.clone())
            .or_insert_with(|| CameraRow::empty(camera_id))
            .add_frame(new);
    }
}

/// Sub-buckets per power of two.
const SUB_BUCKETS: i64 = 16;
/// log2 of [`SUB_BUCKETS`].
const SUB_BITS: u32 = 4;

impl Histogram {
    /// The bucket of a duration: exact below 16, then 16 per power of two.
    fn bucket(value: i64) -> u16 {
        if value < SUB_BUCKETS {
            return u16::try_from(value.max(0)).unwrap_or_default();
        }
        let log2 = 63 - value.leading_zeros();
        let sub = (value >> (log2 - SUB_BITS)) & (SUB_BUCKETS - 1);
        // log2 is at most 62, so at most 16 + 58 * 16 + 15 = 959: fits in u16.
        (SUB_BUCKETS + i64::from(log2 - SUB_BITS) * SUB_BUCKETS + sub) as u16
    }

    /// The value a bucket stands for: the value itself below 16, else the bucket's middle.
    fn value(bucket: u16) -> i64 {
        let bucket = i64::from(bucket);
        if bucket < SUB_BUCKETS {
            return bucket;
        }
        let shift = (bucket - SUB_BUCKETS) / SUB_BUCKETS;
        let sub = (bucket - SUB_BUCKETS) % SUB_BUCKETS;
        let lower = (SUB_BUCKETS + sub) << shift;
        lower + ((1i64 << shift) >> 1)
    }

    /// Counts one duration.
    pub(crate) fn record(&mut self, value: i64) {
        *self.buckets.entry(Histogram::bucket(value)).or_default() += 1;
    }

    /// Forgets one duration counted before.
    pub(crate) fn remove(&mut self, value: i64) {
        let bucket = Histogram::bucket(value);
        if let Some(count) = self.buckets.get_mut(&bucket) {
            *count -= 1;
            if *count == 0 {
                self.buckets.remove(&bucket);
            }
        }
    }

    /// The `quantile` (0 to 1) by nearest rank; 0 when empty.
    pub(crate) fn percentile(&self, quantile: f64) -> i64 {
        let total: u64 = self.buckets.values().sum();
        if total == 0 {
            return 0;
        }
        // Nearest rank: the smallest value with at least `quantile` of the counts at or
        // below it.
        let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Histogram::value(*bucket);
            }
        }
        0
    }

    /// The stored form: (bucket u16, count u64) pairs, little-endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.buckets.len() * 10);
        for (bucket, count) in &self.buckets {
            bytes.extend_from_slice(&bucket.to_le_bytes());
            bytes.extend_from_slice(&count.to_le_bytes());
        }
        bytes
    }

    /// From the stored form.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Histogram, StoreError> {
        if !bytes.len().is_multiple_of(10) {
            return Err(corrupt(format!(
                "camera histogram of {} bytes",
                bytes.len()
            )));
        }
        let buckets = bytes
            .chunks_exact(10)
            .map(|pair| {
                let bucket = u16::from_le_bytes([pair[0], pair[1]]);
                let mut count = [0u8; 8];
                count.copy_from_slice(&pair[2..]);
                (bucket, u64::from_le_bytes(count))
            })
            .collect();
        Ok(Histogram { buckets })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::projection::Histogram;

    #[test]
    fn small_durations_are_exact() {
        let mut histogram = Histogram::default();
        for value in [0, 1, 5, 15] {
            histogram.record(value);
        }
        assert_eq!(histogram.percentile(0.25), 0);
        assert_eq!(histogram.percentile(0.5), 1);
        assert_eq!(histogram.percentile(0.75), 5);
        assert_eq!(histogram.percentile(1.0), 15);
    }

    #[test]
    fn percentiles_are_within_a_thirty_second_of_the_true_value() {
        let mut histogram = Histogram::default();
        let values: Vec<i64> = (1..=1000).map(|i| i * 1_037_219).collect();
        for value in &values {
            histogram.record(*value);
        }
        for (quantile, truth) in [(0.5, values[499]), (0.9, values[899]), (0.99, values[989])] {
            let estimate = histogram.percentile(quantile);
            let error = (estimate - truth).abs() as f64 / truth as f64;
            assert!(error <= 1.0 / 32.0, "q{quantile}: {estimate} vs {truth}");
        }
    }

    #[test]
    fn every_bucket_value_maps_back_to_its_bucket() {
        for bucket in 0..960u16 {
            assert_eq!(Histogram::bucket(Histogram::value(bucket)), bucket);
        }
        assert_eq!(Histogram::bucket(i64::MAX), 959);
    }

    #[test]
    fn removing_undoes_recording_and_encoding_round_trips() {
        let mut histogram = Histogram::default();
        histogram.record(123_456);
        histogram.record(7);
        let encoded = histogram.encode();
        assert_eq!(Histogram::decode(&encoded).unwrap(), histogram);
        histogram.remove(123_456);
        histogram.remove(7);
        assert_eq!(histogram, Histogram::default());
        assert!(Histogram::decode(&[1, 2, 3]).is_err());
    }
}
