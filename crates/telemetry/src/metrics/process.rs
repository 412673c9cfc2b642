//! Process metrics sampled by `sysinfo` on a background thread.
//!
//! Sampling reads `/proc` and is never done inside a scrape or a request: a thread refreshes
//! one [`ProcessSample`] every interval and renders its Prometheus text once; a scrape only
//! copies that text, and the OTLP exporter's callbacks only read the cached sample.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessSample {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Limit on file descriptors.
    pub max_fds: u64,
    /// Threads.
    pub threads: u64,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: u64,
}

impl ProcessSample {
    /// Renders the sample as Prometheus text, in the `process_*` names of [`super::standard::PROCESS`].
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut family = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
            );
        };
        family(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent by the process.",
            format!("{:.6}", self.cpu_seconds),
        );
        family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
            self.resident_memory_bytes.to_string(),
        );
        family(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory of the process.",
            self.virtual_memory_bytes.to_string(),
        );
        family(
            "process_open_fds",
            "gauge",
            "Open file descriptors of the process.",
            self.open_fds.to_string(),
        );
        family(
            "process_max_fds",
            "gauge",
            "Limit on open file descriptors of the process.",
            self.max_fds.to_string(),
        );
        family(
            "process_threads",
            "gauge",
            "Threads of the process.",
            self.threads.to_string(),
        );
        family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch.",
            self.start_time_seconds.to_string(),
        );
        out
    }
}

/// Samples this process with `sysinfo`.
#[derive(Debug)]
pub struct ProcessSampler {
    system: System,
    pid: Pid,
}

impl ProcessSampler {
    /// Prepares sampling of the current process; `None` where `sysinfo` cannot see it.
    pub fn new() -> Option<Self> {
        let pid = sysinfo::get_current_pid().ok()?;
        let system = System::new().ok()?;
        Some(Self { system, pid })
    }

    /// Takes one reading.
    pub fn sample(&mut self) -> Option<ProcessSample> {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_tasks(),
        );
        let process = self.system.process(self.pid)?;
        Some(ProcessSample {
            cpu_seconds: process.accumulated_cpu_time() as f64 / 1_000.0,
            resident_memory_bytes: process.memory(),
            virtual_memory_bytes: process.virtual_memory(),
            open_fds: process.open_files().unwrap_or(0) as u64,
            max_fds: process.open_files_limit().unwrap_or(0) as u64,
            threads: process.tasks().map_or(1, |t| t.len().max(1) as u64),
            start_time_seconds: process.start_time(),
        })
    }
}

/// The latest sample and its rendering, shared between the sampler thread and readers.
#[derive(Debug, Default)]
pub(crate) struct ProcessState {
    sample: Mutex<(ProcessSample, String)>,
}

impl ProcessState {
    pub(crate) fn latest(&self) -> ProcessSample {
        self.sample.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    pub(crate) fn rendered(&self) -> String {
        self.sample
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    fn store(&self, sample: ProcessSample) {
        let text = sample.render();
        *self.sample.lock().unwrap_or_else(PoisonError::into_inner) = (sample, text);
    }
}

/// The background thread that samples the process.
#[derive(Debug)]
pub(crate) struct BackgroundSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundSampler {
    /// Samples once now (so the first scrape has values), then every `interval`.
    ///
    /// Between samples the thread parks on a timed futex: one wake-up per sample. (A
    /// channel's `recv_timeout` spins and yields before it sleeps; on a 2-vCPU guest the
    /// idle thread used 128 µs of CPU per second with it.)
    pub(crate) fn start(state: Arc<ProcessState>, interval: Duration) -> std::io::Result<Self> {
        Self::start_with(state, interval, || {})
    }

    /// [`BackgroundSampler::start`], calling `tick` after each sample.
    fn start_with(
        state: Arc<ProcessState>,
        interval: Duration,
        tick: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut sampler = ProcessSampler::new();
        if let Some(sample) = sampler.as_mut().and_then(ProcessSampler::sample) {
            state.store(sample);
        }
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("telemetry-sampler".to_owned())
            .spawn(move || {
                let mut next = Instant::now() + interval;
                while sleep_until(next, &stopped) {
                    if let Some(sample) = sampler.as_mut().and_then(ProcessSampler::sample) {
                        state.store(sample);
                    }
                    tick();
                    // After a long stall (a suspended process), sample once, not once per
                    // missed interval.
                    next = (next + interval).max(Instant::now());
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

/// Parks until `deadline`; `false` as soon as `stop` is set (the setter unparks).
fn sleep_until(deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        // Wakes early on `unpark` and spuriously; the loop checks again.
        std::thread::park_timeout(deadline - now);
    }
}

impl Drop for BackgroundSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let mut sampler = ProcessSampler::new().unwrap();
        let sample = sampler.sample().unwrap();
        assert!(sample.resident_memory_bytes > 1_000_000, "{sample:?}");
        assert!(sample.threads >= 1);
        assert!(sample.open_fds >= 3, "{sample:?}");
        assert!(sample.max_fds >= sample.open_fds);
        assert!(sample.start_time_seconds > 1_600_000_000);
    }

    #[test]
    fn background_sampler_ticks_and_stops() {
        use std::sync::atomic::AtomicUsize;
        let ticks = Arc::new(AtomicUsize::new(0));
        let counted = ticks.clone();
        let state = Arc::new(ProcessState::default());
        let sampler =
            BackgroundSampler::start_with(state.clone(), Duration::from_millis(1), move || {
                counted.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        // The first sample is taken before `start` returns.
        assert!(state.latest().resident_memory_bytes > 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while ticks.load(Ordering::Relaxed) < 5 {
            assert!(
                Instant::now() < deadline,
                "the sampler never ticked 5 times"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(sampler);
        let after_stop = ticks.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            ticks.load(Ordering::Relaxed),
            after_stop,
            "ticked after drop"
        );
    }

    #[test]
    fn background_sampler_stops_without_waiting_for_its_tick() {
        let sampler = BackgroundSampler::start(
            Arc::new(ProcessState::default()),
            Duration::from_secs(3_600),
        )
        .unwrap();
        // Dropping joins the thread: without the unpark this would wait an hour.
        drop(sampler);
    }

    #[test]
    fn rendering_declares_every_process_metric() {
        let text = ProcessSample::default().render();
        let families = crate::metrics::catalog::parse_exposition(&text);
        for def in crate::metrics::standard::PROCESS.metrics {
            assert_eq!(families[def.name].kind, def.kind.as_str(), "{}", def.name);
        }
        assert_eq!(
            families.len(),
            crate::metrics::standard::PROCESS.metrics.len()
        );
    }
}
