//! The Redis Streams adapter: one stream, one consumer group, at-least-once delivery.
//!
//! - A message is one stream entry with the fields `metadata` (JSON), `payload` (bytes)
//!   and `_traceparent`/`_tracestate`.
//! - Consumers read with `XREADGROUP ... >` and `XACK` only after successful handling.
//! - A consumer (re)starting under the same name first re-reads its own pending entries
//!   (`XREADGROUP ... 0`): what it had read but not acked before a restart.
//! - Every claim interval a consumer takes over entries idle longer than the claim
//!   interval with `XAUTOCLAIM`: those of a crashed consumer and those nacked (failed)
//!   earlier, which is how a failed message is retried.
//! - The delivery count comes from `XPENDING`; an entry delivered `max_deliveries` times
//!   without an ack goes to the dead-letter stream `<stream>:dead` (a copy of its fields
//!   plus `dead_letter.*` fields) and is acked in the same `MULTI`.
//! - Trimming never drops an entry that is pending or not yet delivered; see
//!   [`RedisQueue::trim`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingCountReply,
    StreamPendingReply, StreamRangeReply, StreamReadReply,
};
use redis::{Cmd, FromRedisValue, RedisError, Value};
use telemetry::metrics::QueueMetrics;
use tokio::sync::Mutex;

use crate::carrier;
use crate::metadata::FrameMetadata;
use crate::queue::{
    Batch, Delivery, Propagation, QueueError, Received, Settle, SpanInfo, poll_interval,
};

/// How a [`RedisQueue`] is set up.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The Redis URL, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// The stream key, e.g. `frames:queue`.
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// This consumer's name within the group; keep it stable across restarts so a
    /// restarted consumer re-reads what it had not acked.
    pub consumer: String,
    /// Entries pending longer than this are claimed by a live consumer (and retried), and
    /// consumers check for such entries this often.
    pub claim_interval: Duration,
    /// Deliveries after which an entry that was not acked is dead-lettered.
    pub max_deliveries: u64,
    /// When the stream is longer than this, acked entries are trimmed; entries that are
    /// pending or not yet delivered are never trimmed. `None` never trims.
    pub max_len: Option<u64>,
    /// How many entries one read fetches.
    pub batch: usize,
    /// Whether messages carry trace context.
    pub propagation: Propagation,
}

/// A Redis Streams queue; clones share the connections and the consumer state.
#[derive(Debug, Clone)]
pub struct RedisQueue {
    shared: Arc<Shared>,
}

/// The settle handle of a Redis delivery: the entry id.
pub(crate) struct Pending {
    shared: Arc<Shared>,
    id: String,
}

#[derive(Debug)]
struct Shared {
    config: RedisConfig,
    dead_stream: String,
    spans: SpanInfo,
    metrics: QueueMetrics,
    /// Sends, acks and maintenance; never blocked by a waiting read.
    commands: ConnectionManager,
    /// Blocking reads only, with a response timeout longer than the block time.
    reads: ConnectionManager,
    consumer: Mutex<ConsumerState>,
}

/// The fields of a well-formed entry.
struct Decoded {
    metadata: FrameMetadata,
    payload: Vec<u8>,
    trace: Vec<(String, String)>,
}

#[derive(Debug)]
struct ConsumerState {
    buffer: VecDeque<Received>,
    /// Re-reading this consumer's own pending entries, after this id.
    recovering: Option<String>,
    claim_cursor: String,
    last_maintenance: Option<Instant>,
}

impl RedisConfig {
    /// A queue on `stream` read by `consumer` of `group`: claim interval 30 s, dead-letter
    /// after 5 deliveries, trim acked entries beyond 100 000, read 16 at a time, with
    /// propagation.
    pub fn new(
        url: impl Into<String>,
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            stream: stream.into(),
            group: group.into(),
            consumer: consumer.into(),
            claim_interval: Duration::from_secs(30),
            max_deliveries: 5,
            max_len: Some(100_000),
            batch: 16,
            propagation: Propagation::W3c,
        }
    }

    /// The dead-letter stream: `<stream>:dead`.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}:dead", self.stream)
    }
}

impl RedisQueue {
    /// Connects and creates the consumer group (reading from the start of the stream, so
    /// nothing sent before the first consumer started is missed) when it does not exist.
    pub async fn connect(config: RedisConfig) -> Result<RedisQueue, QueueError> {
        if config.max_deliveries == 0 || config.batch == 0 || config.claim_interval.is_zero() {
            return Err(QueueError::Config(
                "max_deliveries, batch and claim_interval must be positive".to_owned(),
            ));
        }
        let error = |operation| {
            let queue = config.stream.clone();
            move |source| QueueError::Redis {
                queue,
                operation,
                source,
            }
        };
        let client = redis::Client::open(config.url.as_str()).map_err(error("connect"))?;
        let commands = client
            .get_connection_manager()
            .await
            .map_err(error("connect"))?;
        let read_timeout = poll_interval(config.claim_interval) + Duration::from_secs(5);
        let reads = client
            .get_connection_manager_with_config(
                ConnectionManagerConfig::new().set_response_timeout(Some(read_timeout)),
            )
            .await
            .map_err(error("connect"))?;
        let created = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&config.stream)
            .arg(&config.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async::<()>(&mut commands.clone())
            .await;
        match created {
            Err(err) if err.code() != Some("BUSYGROUP") => {
                return Err(error("XGROUP CREATE")(err));
            }
            _ => {}
        }
        let spans = SpanInfo {
            system: "redis",
            destination: config.stream.clone(),
            send_operation: "xadd",
            propagation: config.propagation,
        };
        Ok(RedisQueue {
            shared: Arc::new(Shared {
                dead_stream: config.dead_letter_stream(),
                metrics: QueueMetrics::new(config.stream.clone()),
                spans,
                commands,
                reads,
                consumer: Mutex::new(ConsumerState {
                    buffer: VecDeque::new(),
                    recovering: Some("0".to_owned()),
                    claim_cursor: "0-0".to_owned(),
                    last_maintenance: None,
                }),
                config,
            }),
        })
    }

    /// The stream name.
    pub fn name(&self) -> &str {
        &self.shared.config.stream
    }

    /// Sends a frame with `XADD`; see [`FrameQueue::send`](crate::queue::FrameQueue::send).
    ///
    /// `XADD` carries no `MAXLEN`: a producer cannot see what is pending, and trimming by
    /// length would drop pending and undelivered entries alike. Consumers trim instead
    /// ([`RedisQueue::trim`]).
    pub async fn send(
        &self,
        metadata: &FrameMetadata,
        payload: &[u8],
    ) -> Result<String, QueueError> {
        let shared = &self.shared;
        let span = shared.spans.producer_span(metadata);
        let json = metadata.to_json()?;
        let mut trace = Vec::new();
        carrier::inject(
            &shared.spans.context_of(&span, metadata),
            &mut carrier::StreamFieldsInjector(&mut trace),
        );
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&shared.config.stream)
            .arg("*")
            .arg("metadata")
            .arg(json)
            .arg("payload")
            .arg(payload);
        for (field, value) in &trace {
            cmd.arg(field).arg(value);
        }
        let id: String = shared.query(&cmd, "XADD").await?;
        span.record("messaging.message.id", id.as_str());
        shared.metrics.published(1);
        Ok(id)
    }

    /// Waits for the next message; see
    /// [`FrameQueue::receive`](crate::queue::FrameQueue::receive).
    pub async fn receive(&self) -> Result<Delivery, QueueError> {
        let mut state = self.shared.consumer.lock().await;
        loop {
            if let Some(received) = state.buffer.pop_front() {
                return Ok(self.shared.spans.single(received));
            }
            self.shared.fill(&mut state, true).await?;
        }
    }

    /// Waits for at least one message and returns up to `max` that are ready; see
    /// [`FrameQueue::receive_batch`](crate::queue::FrameQueue::receive_batch).
    pub async fn receive_batch(&self, max: usize) -> Result<Batch, QueueError> {
        let max = max.max(1);
        let mut state = self.shared.consumer.lock().await;
        while state.buffer.is_empty() {
            self.shared.fill(&mut state, true).await?;
        }
        if state.buffer.len() < max {
            self.shared.fill(&mut state, false).await?;
        }
        let take = state.buffer.len().min(max);
        let received: Vec<Received> = state.buffer.drain(..take).collect();
        Ok(self.shared.spans.batch(received))
    }

    /// Trims acked entries when the stream is longer than `max_len`, with
    /// `XTRIM MINID <floor>`; consumers call it every claim interval.
    ///
    /// The floor is, over every group of the stream, the oldest pending entry, or when a
    /// group has none pending, the entry after the last one it was given. Everything
    /// below the floor has been acked by every group, so nothing pending or undelivered
    /// is ever trimmed, even when that leaves the stream longer than `max_len` (a backlog
    /// is data, and the length gauge shows it). `XADD MAXLEN` was not used because it
    /// trims by position, blind to the pending entries list. The trim is exact rather than
    /// `~` (whole radix-tree nodes only), so a small stream is trimmed too; it runs once per
    /// claim interval, not per message, so its cost does not matter.
    pub async fn trim(&self) -> Result<(), QueueError> {
        self.shared.trim().await
    }
}

impl Shared {
    fn error(&self, operation: &'static str) -> impl FnOnce(RedisError) -> QueueError + '_ {
        move |source| QueueError::Redis {
            queue: self.config.stream.clone(),
            operation,
            source,
        }
    }

    async fn query<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        operation: &'static str,
    ) -> Result<T, QueueError> {
        cmd.query_async(&mut self.commands.clone())
            .await
            .map_err(self.error(operation))
    }

    /// Adds messages to the buffer: maintenance when due, then this consumer's own pending
    /// entries after a restart, then new entries (waiting for them when `block`).
    async fn fill(
        self: &Arc<Self>,
        state: &mut ConsumerState,
        block: bool,
    ) -> Result<(), QueueError> {
        let due = state
            .last_maintenance
            .is_none_or(|last| last.elapsed() >= self.config.claim_interval);
        if due {
            state.last_maintenance = Some(Instant::now());
            self.claim(state).await?;
            self.observe().await?;
            if self.config.max_len.is_some() {
                self.trim().await?;
            }
            if !state.buffer.is_empty() {
                return Ok(());
            }
        }
        if let Some(cursor) = state.recovering.clone() {
            let entries = self.read_group(&cursor, None).await?;
            match entries.last() {
                None => state.recovering = None,
                Some(last) => state.recovering = Some(last.id.clone()),
            }
            self.deliver_pending(state, entries).await?;
            return Ok(());
        }
        let wait = block.then(|| poll_interval(self.config.claim_interval));
        let entries = self.read_group(">", wait).await?;
        for entry in entries {
            self.accept(state, entry, 1).await?;
        }
        Ok(())
    }

    /// `XREADGROUP` from `id` (`>` for new entries, an id for this consumer's own pending
    /// ones), blocking up to `wait` when given.
    async fn read_group(
        &self,
        id: &str,
        wait: Option<Duration>,
    ) -> Result<Vec<StreamId>, QueueError> {
        let config = &self.config;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&config.group)
            .arg(&config.consumer)
            .arg("COUNT")
            .arg(config.batch);
        if let Some(wait) = wait {
            cmd.arg("BLOCK").arg(wait.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&config.stream).arg(id);
        let connection = if wait.is_some() {
            &self.reads
        } else {
            &self.commands
        };
        let reply: Option<StreamReadReply> = cmd
            .query_async(&mut connection.clone())
            .await
            .map_err(self.error("XREADGROUP"))?;
        Ok(reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .collect())
    }

    /// `XAUTOCLAIM`s entries idle longer than the claim interval into this consumer.
    async fn claim(self: &Arc<Self>, state: &mut ConsumerState) -> Result<(), QueueError> {
        let config = &self.config;
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&config.stream)
            .arg(&config.group)
            .arg(&config.consumer)
            .arg(config.claim_interval.as_millis() as u64)
            .arg(&state.claim_cursor)
            .arg("COUNT")
            .arg(config.batch);
        let reply: StreamAutoClaimReply = self.query(&cmd, "XAUTOCLAIM").await?;
        state.claim_cursor = reply.next_stream_id;
        self.deliver_pending(state, reply.claimed).await
    }

    /// Buffers entries that were delivered before, with their delivery counts from
    /// `XPENDING`; dead-letters those delivered more than `max_deliveries` times.
    async fn deliver_pending(
        self: &Arc<Self>,
        state: &mut ConsumerState,
        entries: Vec<StreamId>,
    ) -> Result<(), QueueError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&first.id)
            .arg(&last.id)
            .arg(entries.len())
            .arg(&self.config.consumer);
        let pending: StreamPendingCountReply = self.query(&cmd, "XPENDING").await?;
        let counts: HashMap<String, u64> = pending
            .ids
            .into_iter()
            .map(|id| (id.id, id.times_delivered as u64))
            .collect();
        for entry in entries {
            // A claim can return an entry this consumer has buffered and not handed out
            // yet (buffered longer than the claim interval), and a restart's re-read one it
            // has just claimed: one copy is enough.
            if state
                .buffer
                .iter()
                .any(|buffered| buffered.message_id == entry.id)
            {
                continue;
            }
            let count = counts.get(&entry.id).copied().unwrap_or(1);
            if count > self.config.max_deliveries {
                self.dead_letter(&entry.id, count - 1, "not acked within the claim interval")
                    .await?;
            } else {
                self.metrics.redelivered(1);
                self.accept(state, entry, count).await?;
            }
        }
        Ok(())
    }

    /// Decodes an entry into the buffer; a malformed one goes straight to the dead letters.
    async fn accept(
        self: &Arc<Self>,
        state: &mut ConsumerState,
        entry: StreamId,
        delivery_count: u64,
    ) -> Result<(), QueueError> {
        match self.decode(&entry) {
            Ok(decoded) => {
                state.buffer.push_back(Received {
                    payload: decoded.payload,
                    metadata: decoded.metadata,
                    context: self
                        .spans
                        .extract(&carrier::StreamFieldsExtractor(&decoded.trace)),
                    message_id: entry.id.clone(),
                    delivery_count,
                    settle: Settle::Redis(Pending {
                        shared: Arc::clone(self),
                        id: entry.id,
                    }),
                });
                Ok(())
            }
            Err(reason) => self.dead_letter(&entry.id, delivery_count, reason).await,
        }
    }

    fn decode(&self, entry: &StreamId) -> Result<Decoded, &'static str> {
        let field = |name: &str| entry.map.get(name).ok_or("a field is missing");
        let json: String = redis::from_redis_value_ref(field("metadata")?)
            .map_err(|_| "metadata is not a string")?;
        let metadata = FrameMetadata::from_json(&json).map_err(|_| "metadata is invalid")?;
        let payload: Vec<u8> =
            redis::from_redis_value_ref(field("payload")?).map_err(|_| "payload is not bytes")?;
        let trace = entry
            .map
            .iter()
            .filter(|(name, _)| name.starts_with('_'))
            .filter_map(|(name, value)| {
                let value: String = redis::from_redis_value_ref(value).ok()?;
                Some((name.clone(), value))
            })
            .collect();
        Ok(Decoded {
            metadata,
            payload,
            trace,
        })
    }

    /// Copies entry `id` to the dead-letter stream and acks it, atomically.
    async fn dead_letter(&self, id: &str, deliveries: u64, reason: &str) -> Result<(), QueueError> {
        let config = &self.config;
        let mut range = redis::cmd("XRANGE");
        range.arg(&config.stream).arg(id).arg(id);
        let entries: StreamRangeReply = self.query(&range, "XRANGE").await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(entry) = entries.ids.first() {
            let add = pipe.cmd("XADD").arg(&self.dead_stream).arg("*");
            for (field, value) in &entry.map {
                if let Value::BulkString(bytes) = value {
                    add.arg(field).arg(bytes.as_slice());
                }
            }
            add.arg("dead_letter.source_id")
                .arg(id)
                .arg("dead_letter.deliveries")
                .arg(deliveries)
                .arg("dead_letter.reason")
                .arg(reason)
                .ignore();
        }
        pipe.cmd("XACK")
            .arg(&config.stream)
            .arg(&config.group)
            .arg(id)
            .ignore();
        pipe.query_async::<()>(&mut self.commands.clone())
            .await
            .map_err(self.error("dead-letter"))?;
        self.metrics.dead_lettered(1);
        tracing::warn!(
            queue = %config.stream,
            entry = id,
            deliveries,
            reason,
            "message moved to the dead-letter stream"
        );
        Ok(())
    }

    /// Sets the length, pending and lag gauges from `XINFO GROUPS` and `XPENDING`.
    async fn observe(&self) -> Result<(), QueueError> {
        let config = &self.config;
        let mut info = redis::cmd("XINFO");
        info.arg("GROUPS").arg(&config.stream);
        let groups: StreamInfoGroupsReply = self.query(&info, "XINFO GROUPS").await?;
        if let Some(group) = groups.groups.iter().find(|g| g.name == config.group) {
            self.metrics
                .set_length(group.lag.unwrap_or_default() as u64);
        }
        let summary = self.pending_summary(&config.group).await?;
        match summary {
            StreamPendingReply::Data(data) => {
                self.metrics.set_pending(data.count as u64);
                self.metrics.set_lag(age_of(&data.start_id));
            }
            _ => {
                self.metrics.set_pending(0);
                self.metrics.set_lag(Duration::ZERO);
            }
        }
        Ok(())
    }

    async fn pending_summary(&self, group: &str) -> Result<StreamPendingReply, QueueError> {
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&self.config.stream).arg(group);
        self.query(&cmd, "XPENDING").await
    }

    async fn trim(&self) -> Result<(), QueueError> {
        let Some(max_len) = self.config.max_len else {
            return Ok(());
        };
        let mut len = redis::cmd("XLEN");
        len.arg(&self.config.stream);
        let length: u64 = self.query(&len, "XLEN").await?;
        if length <= max_len {
            return Ok(());
        }
        let mut info = redis::cmd("XINFO");
        info.arg("GROUPS").arg(&self.config.stream);
        let groups: StreamInfoGroupsReply = self.query(&info, "XINFO GROUPS").await?;
        let mut floor: Option<(u64, u64)> = None;
        for group in &groups.groups {
            let group_floor = match self.pending_summary(&group.name).await? {
                StreamPendingReply::Data(data) => parse_id(&data.start_id),
                _ => parse_id(&group.last_delivered_id).map(|(ms, seq)| match seq.checked_add(1) {
                    Some(seq) => (ms, seq),
                    None => (ms + 1, 0),
                }),
            };
            // An id that does not parse means we do not know what is safe: trim nothing.
            let Some(group_floor) = group_floor else {
                return Ok(());
            };
            floor = Some(floor.map_or(group_floor, |floor| floor.min(group_floor)));
        }
        let Some((ms, seq)) = floor else {
            return Ok(());
        };
        let mut trim = redis::cmd("XTRIM");
        trim.arg(&self.config.stream)
            .arg("MINID")
            .arg(format!("{ms}-{seq}"));
        self.query::<u64>(&trim, "XTRIM").await?;
        Ok(())
    }
}

impl Pending {
    pub(crate) async fn ack(self) -> Result<(), QueueError> {
        let config = &self.shared.config;
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&config.stream).arg(&config.group).arg(&self.id);
        self.shared.query::<u64>(&cmd, "XACK").await?;
        self.shared.metrics.processed(1);
        Ok(())
    }

    /// Leaves the entry pending, to be claimed again after the claim interval, or
    /// dead-letters it when this was delivery `max_deliveries`.
    pub(crate) async fn nack(self, delivery_count: u64) -> Result<(), QueueError> {
        self.shared.metrics.failed(1);
        if delivery_count >= self.shared.config.max_deliveries {
            self.shared
                .dead_letter(&self.id, delivery_count, "handling failed")
                .await?;
        }
        Ok(())
    }
}

/// `ms-seq` stream id parts.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// How long ago the entry with stream id `id` was added (its id is its time in ms).
fn age_of(id: &str) -> Duration {
    let Some((ms, _)) = parse_id(id) else {
        return Duration::ZERO;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use crate::queue::redis::{age_of, parse_id};

    #[test]
    fn stream_ids_parse_into_milliseconds_and_sequence() {
        assert_eq!(parse_id("1700000000000-3"), Some((1_700_000_000_000, 3)));
        assert_eq!(parse_id("garbage"), None);
        assert_eq!(parse_id("1-x"), None);
    }

    #[test]
    fn unparsable_id_has_no_age() {
        assert_eq!(age_of("nope"), std::time::Duration::ZERO);
    }
}
