//! The bounded, embedded result store: the latest results by frame id, at most
//! `max_frames` of them and none older than `max_age`.
//!
//! Eviction is oldest-first on insert (count) and on every access (age), so memory stays
//! bounded whatever the traffic; `detektor_frame_storage_stored_frames` follows the size.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::STORED_FRAMES;
use crate::model::FrameResult;

/// How many results the store keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// The most results kept.
    pub max_frames: usize,
    /// Results older than this are dropped.
    pub max_age: Duration,
}

/// The result store.
#[derive(Debug)]
pub struct ResultStore {
    limits: StoreLimits,
    inner: Mutex<Inner>,
    /// [`STORED_FRAMES`], registered once.
    stored_frames: metrics::Gauge,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, (Instant, FrameResult)>,
    order: VecDeque<(Instant, String)>,
}

impl ResultStore {
    /// An empty store.
    pub fn new(limits: StoreLimits) -> ResultStore {
        ResultStore {
            limits,
            inner: Mutex::new(Inner::default()),
            stored_frames: metrics::gauge!(STORED_FRAMES),
        }
    }

    /// Stores a result (replacing an earlier one of the same frame), evicting the oldest
    /// beyond the limits.
    pub fn insert(&self, result: FrameResult) {
        self.insert_at(result, Instant::now());
    }

    fn insert_at(&self, result: FrameResult, now: Instant) {
        let mut inner = self.lock();
        let id = result.frame_id.clone();
        inner.order.push_back((now, id.clone()));
        inner.by_id.insert(id, (now, result));
        self.evict(&mut inner, now);
    }

    /// The stored result of a frame.
    pub fn get(&self, frame_id: &str) -> Option<FrameResult> {
        let now = Instant::now();
        let mut inner = self.lock();
        self.evict(&mut inner, now);
        inner.by_id.get(frame_id).map(|(_, result)| result.clone())
    }

    /// How many results are stored.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        let Inner { by_id, order } = inner;
        let is_current =
            |by_id: &HashMap<String, (Instant, FrameResult)>, at: &Instant, id: &str| {
                by_id.get(id).is_some_and(|(stored_at, _)| stored_at == at)
            };
        // A frame stored again leaves its older entry in `order`; drop those in bulk so
        // re-deliveries cannot grow it.
        if order.len() > 2 * self.limits.max_frames.max(1) {
            order.retain(|(at, id)| is_current(by_id, at, id));
        }
        while let Some((stored_at, id)) = order.front() {
            if is_current(by_id, stored_at, id) {
                let too_many = by_id.len() > self.limits.max_frames;
                let too_old = now.saturating_duration_since(*stored_at) > self.limits.max_age;
                if !too_many && !too_old {
                    break;
                }
                by_id.remove(id.as_str());
            }
            order.pop_front();
        }
        self.stored_frames.set(by_id.len() as f64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps behind; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Detections, StageResult, Summary};

    fn result(id: &str) -> FrameResult {
        let empty = StageResult {
            count: 0,
            items: Vec::new(),
            duration_ms: 0.0,
        };
        FrameResult {
            frame_id: id.into(),
            camera_id: "cam".into(),
            status: "processed".into(),
            width: 1,
            height: 1,
            timestamp: None,
            processed_at_ms: 0,
            processing_time_ms: 0.0,
            detections: Detections {
                objects: empty.clone(),
                faces: empty.clone(),
                gestures: empty,
            },
            summary: Summary {
                total_detections: 0,
                labels: Default::default(),
                max_confidence: 0.0,
            },
        }
    }

    fn store(max_frames: usize, max_age: Duration) -> ResultStore {
        ResultStore::new(StoreLimits {
            max_frames,
            max_age,
        })
    }

    #[test]
    fn the_oldest_results_go_beyond_the_count_limit() {
        let store = store(2, Duration::from_secs(60));
        for id in ["a", "b", "c"] {
            store.insert(result(id));
        }
        assert_eq!(store.len(), 2);
        assert!(store.get("a").is_none());
        assert!(store.get("c").is_some());
    }

    #[test]
    fn results_older_than_the_age_limit_go() {
        let store = store(10, Duration::from_secs(5));
        let start = Instant::now();
        store.insert_at(result("old"), start);
        store.insert_at(result("new"), start + Duration::from_secs(4));
        let mut inner = store.lock();
        store.evict(&mut inner, start + Duration::from_secs(6));
        assert!(!inner.by_id.contains_key("old"));
        assert!(inner.by_id.contains_key("new"));
    }

    #[test]
    fn storing_a_frame_again_keeps_one_entry() {
        let store = store(2, Duration::from_secs(60));
        store.insert(result("a"));
        store.insert(result("a"));
        store.insert(result("b"));
        assert_eq!(store.len(), 2);
        assert!(store.get("a").is_some());
        store.insert(result("c"));
        assert!(store.get("a").is_none());
        assert_eq!(store.len(), 2);
    }
}
