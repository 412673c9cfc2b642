//! The processing pipeline of one frame, and where its spans come from.
//!
//! ```text
//! process_frame                  frame.id, camera.id, frame.width/height/format, detections.total
//! ├── detect_objects  ┐          frame.id, camera.id, detections.count/labels/max_confidence
//! ├── detect_faces    ├ parallel (the frame's blocking thread + the detection pool)
//! ├── detect_gestures ┘
//! ├── decode_frame               frame.id, camera.id, frame.format (before the stages)
//! └── store_result               frame.id, camera.id, store.frames
//! ```
//!
//! Decoding and detection are CPU work: they run in `spawn_blocking`, with the
//! `process_frame` span entered in the closure and each stage span created with that span
//! as its explicit parent and entered by whichever thread runs the stage (see the
//! `pool` module), so the tree above holds across threads. Over HTTP,
//! `process_frame` is a child of the server span of the telemetry layer, which continues
//! the caller's `traceparent`.
//!
//! The same frame-aware pattern works for any function of your own: put the frame's id on
//! the span and every log line and child span inside is attributed to the frame. Record
//! text as a `&str` (`frame.id = id.as_str()`) rather than with `%`: a `%` field goes
//! through `fmt` into a buffer, about 500 instructions a field where a `&str` is copied.
//!
//! ```
//! #[tracing::instrument(skip(pixels), fields(frame.id = frame_id, camera.id = camera_id))]
//! fn enhance(frame_id: &str, camera_id: &str, pixels: &mut [u8]) {
//!     tracing::debug!(bytes = pixels.len(), "enhancing");
//! }
//! enhance("cam01-rgb-...", "cam01", &mut [0u8; 12]);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use frame_capture::scene::GroundTruth;
use tokio::sync::Semaphore;
use tracing::field::Empty;
use tracing::{Instrument as _, Span};

use crate::accuracy::{self, FrameScore};
use crate::cameras::{CameraStats, Cameras, Processed};
use crate::detect::{Detection, Detector, Stage, StageInput, Thumbnail};
use crate::metrics::{self, FrameMetrics, Timed};
use crate::model::{Detections, FrameError, FrameInput, FrameResult, StageResult, Summary};
use crate::pool::StagePool;
use crate::store::{ResultStore, StoreLimits};

/// How the processor is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorLimits {
    /// Results kept by the store.
    pub store: StoreLimits,
    /// Cameras whose statistics and history are kept.
    pub max_cameras: usize,
    /// Frames analysed at the same time; more wait for a slot.
    pub max_concurrent_frames: usize,
}

/// Why a frame was not processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The frame is invalid or undecodable: the client's problem.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Something failed inside the service.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Runs the detectors on frames and keeps the results.
#[derive(Debug)]
pub struct Processor {
    detectors: Vec<Arc<dyn Detector>>,
    store: ResultStore,
    cameras: Cameras,
    slots: Semaphore,
    pool: StagePool,
    metrics: FrameMetrics,
}

/// What the camera keeps of a frame besides its result.
struct Recorded {
    thumbnail: Arc<Thumbnail>,
    ground_truth: Option<Arc<[GroundTruth]>>,
    score: Option<FrameScore>,
}

/// What the blocking part of processing hands back.
struct Analysis {
    thumbnail: Arc<Thumbnail>,
    stages: Vec<(Stage, Vec<Detection>, Duration)>,
}

impl Processor {
    /// A processor running `detectors` (see [`crate::detect::default_detectors`]).
    pub fn new(detectors: Vec<Arc<dyn Detector>>, limits: ProcessorLimits) -> Processor {
        Processor {
            store: ResultStore::new(limits.store),
            cameras: Cameras::new(limits.max_cameras),
            slots: Semaphore::new(limits.max_concurrent_frames.max(1)),
            // The frame's own thread runs one stage: the others need a worker each, for
            // every frame that may be in analysis at once.
            pool: StagePool::start(
                detectors.len().saturating_sub(1) * limits.max_concurrent_frames.max(1),
            ),
            detectors,
            metrics: FrameMetrics::new(),
        }
    }

    /// Processes one frame: decode, detect (stages in parallel), store.
    pub async fn process(self: &Arc<Self>, input: FrameInput) -> Result<FrameResult, ProcessError> {
        // Integers are recorded as i64: OpenTelemetry has no unsigned attribute type.
        let span = tracing::info_span!(
            "process_frame",
            frame.id = input.frame_id.as_str(),
            camera.id = input.camera_id.as_str(),
            frame.width = i64::from(input.width),
            frame.height = i64::from(input.height),
            frame.format = input.format.as_str(),
            detections.total = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        let outcome = self.process_in_span(input).instrument(span.clone()).await;
        if let Err(error) = &outcome {
            let error_type = match error {
                ProcessError::Frame(FrameError::Invalid(_)) => "invalid_request",
                ProcessError::Frame(FrameError::Undecodable(_)) => "decode",
                ProcessError::Internal(_) => "internal",
            };
            metrics::error(error_type);
            span.record("error.type", error_type);
            span.record("otel.status_code", "ERROR");
            span.in_scope(|| tracing::warn!(error = %error, "frame not processed"));
        }
        outcome
    }

    async fn process_in_span(
        self: &Arc<Self>,
        mut input: FrameInput,
    ) -> Result<FrameResult, ProcessError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| ProcessError::Internal("the processor is shutting down".into()))?;
        let started = Instant::now();
        let previous = self.cameras.previous(&input.camera_id, &input.frame_id);
        // Gestures are scored against the truth of the frame the gesture stage compares
        // this one with, whichever frame that is.
        let (previous_thumbnail, previous_truth) = match previous {
            Some(previous) => (Some(previous.thumbnail), previous.ground_truth),
            None => (None, None),
        };
        let ground_truth: Option<Arc<[_]>> = input.ground_truth.take().map(Arc::from);
        let span = Span::current();
        let this = Arc::clone(self);
        let (input, analysis) = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let analysis = this.analyse(&input, previous_thumbnail);
            (input, analysis)
        })
        .await
        .map_err(|error| ProcessError::Internal(format!("the detection task failed: {error}")))?;
        let analysis = analysis?;

        let mut detections = Detections {
            objects: empty_stage(),
            faces: empty_stage(),
            gestures: empty_stage(),
        };
        for (stage, items, elapsed) in analysis.stages {
            let result = match stage {
                Stage::Objects => &mut detections.objects,
                Stage::Faces => &mut detections.faces,
                Stage::Gestures => &mut detections.gestures,
            };
            self.metrics.duration(Timed::Stage(stage), elapsed);
            self.metrics.detections(stage, items.len());
            result.count += items.len();
            result.items.extend(items);
            result.duration_ms += elapsed.as_secs_f64() * 1000.0;
        }
        let score = ground_truth
            .as_deref()
            .map(|truth| accuracy::score_frame(truth, previous_truth.as_deref(), &detections));
        let summary = summarise(&detections);
        Span::current().record("detections.total", summary.total_detections as i64);
        let result = FrameResult {
            frame_id: input.frame_id.to_string(),
            camera_id: input.camera_id.clone(),
            status: "processed".to_owned(),
            width: input.width,
            height: input.height,
            timestamp: input.timestamp,
            processed_at_ms: unix_millis(),
            processing_time_ms: started.elapsed().as_secs_f64() * 1000.0,
            detections,
            summary,
        };
        self.store(
            &input,
            Recorded {
                thumbnail: analysis.thumbnail,
                ground_truth,
                score,
            },
            &result,
        );
        self.metrics.frame_processed();
        self.metrics.duration(Timed::Total, started.elapsed());
        Ok(result)
    }

    /// The blocking part: decode, then the detectors in parallel: the first on this
    /// thread, the others on the pool.
    fn analyse(
        &self,
        input: &FrameInput,
        previous: Option<Arc<Thumbnail>>,
    ) -> Result<Analysis, ProcessError> {
        let image = Arc::new(decode_frame(input, &self.metrics)?);
        let thumbnail = Arc::new(Thumbnail::of(&image));
        let parent = Span::current();
        let frame_id = input.frame_id.as_str();
        let tasks: Vec<_> = self
            .detectors
            .iter()
            .map(|detector| {
                let span = stage_span(detector.stage(), &parent, frame_id, &input.camera_id);
                let detector = Arc::clone(detector);
                let image = Arc::clone(&image);
                let thumbnail = Arc::clone(&thumbnail);
                let previous = previous.clone();
                move || {
                    let _entered = span.enter();
                    let stage_input = StageInput {
                        image: &image,
                        thumbnail,
                        previous,
                    };
                    run_stage(detector.as_ref(), &stage_input, &span)
                }
            })
            .collect();
        let stages = self
            .pool
            .run(tasks)
            .into_iter()
            .map(|stage| {
                stage.ok_or_else(|| ProcessError::Internal("a detector panicked".to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Analysis { thumbnail, stages })
    }

    fn store(&self, input: &FrameInput, recorded: Recorded, result: &FrameResult) {
        let span = tracing::info_span!(
            "store_result",
            frame.id = input.frame_id.as_str(),
            camera.id = input.camera_id.as_str(),
            store.frames = Empty,
        );
        let _entered = span.enter();
        let started = Instant::now();
        self.store.insert(result.clone());
        self.cameras.record(Processed {
            frame_id: input.frame_id,
            thumbnail: recorded.thumbnail,
            ground_truth: recorded.ground_truth,
            score: recorded.score,
            result,
        });
        span.record("store.frames", self.store.len() as i64);
        self.metrics.duration(Timed::Store, started.elapsed());
    }

    /// The stored result of a frame.
    pub fn result(&self, frame_id: &str) -> Option<FrameResult> {
        self.store.get(frame_id)
    }

    /// The statistics of a camera.
    pub fn camera_stats(&self, camera_id: &str) -> Option<CameraStats> {
        self.cameras.stats(camera_id)
    }
}

/// Decodes the pixels in a span of its own: the frame-aware `#[tracing::instrument]`
/// pattern, for any function that works on one frame.
#[tracing::instrument(
    name = "decode_frame",
    skip_all,
    fields(frame.id = input.frame_id.as_str(), camera.id = input.camera_id.as_str(), frame.format = input.format.as_str()),
)]
fn decode_frame(input: &FrameInput, metrics: &FrameMetrics) -> Result<image::RgbImage, FrameError> {
    let started = Instant::now();
    let image = input.decode()?;
    metrics.duration(Timed::Decode, started.elapsed());
    Ok(image)
}

fn run_stage(
    detector: &dyn Detector,
    input: &StageInput<'_>,
    span: &Span,
) -> (Stage, Vec<Detection>, Duration) {
    let stage = detector.stage();
    let started = Instant::now();
    let detections = detector.detect(input);
    let elapsed = started.elapsed();
    let mut labels: Vec<&str> = detections.iter().map(|d| d.label.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    let max_confidence = detections
        .iter()
        .map(|d| f64::from(d.confidence))
        .fold(0.0, f64::max);
    record_results(span, detections.len(), &labels.join(","), max_confidence);
    tracing::debug!(count = detections.len(), "stage finished");
    (stage, detections, elapsed)
}

/// Records a stage's results on its span in one call: each `Span::record` looks the span
/// up in the registry again, and three of them cost twice what one does.
fn record_results(span: &Span, count: usize, labels: &str, max_confidence: f64) {
    let Some(metadata) = span.metadata() else {
        return;
    };
    let fields = metadata.fields();
    let (Some(count_field), Some(labels_field), Some(confidence_field)) = (
        fields.field("detections.count"),
        fields.field("detections.labels"),
        fields.field("detections.max_confidence"),
    ) else {
        return;
    };
    let count = count as i64;
    span.record_all(&fields.value_set(&[
        (&count_field, Some(&count as &dyn tracing::Value)),
        (&labels_field, Some(&labels as &dyn tracing::Value)),
        (
            &confidence_field,
            Some(&max_confidence as &dyn tracing::Value),
        ),
    ]));
}

/// The span of a stage. Span names are static in `tracing`, hence one arm per stage.
fn stage_span(stage: Stage, parent: &Span, frame_id: &str, camera_id: &str) -> Span {
    macro_rules! stage_span {
        ($name:literal) => {
            tracing::info_span!(
                parent: parent,
                $name,
                frame.id = frame_id,
                camera.id = camera_id,
                detections.count = Empty,
                detections.labels = Empty,
                detections.max_confidence = Empty,
            )
        };
    }
    match stage {
        Stage::Objects => stage_span!("detect_objects"),
        Stage::Faces => stage_span!("detect_faces"),
        Stage::Gestures => stage_span!("detect_gestures"),
    }
}

fn empty_stage() -> StageResult {
    StageResult {
        count: 0,
        items: Vec::new(),
        duration_ms: 0.0,
    }
}

fn summarise(detections: &Detections) -> Summary {
    let mut labels = BTreeMap::new();
    let mut max_confidence = 0.0f32;
    let mut total = 0;
    for stage in Stage::ALL {
        for item in &detections.stage(stage).items {
            *labels.entry(item.label.clone()).or_default() += 1;
            max_confidence = max_confidence.max(item.confidence);
            total += 1;
        }
    }
    Summary {
        total_detections: total,
        labels,
        max_confidence,
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}
