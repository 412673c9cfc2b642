//! `cargo xtask bench <name> [args]`: named benchmarks. `tracker`, `tracker-ingest`,
//! `tracking` and `pipeline` (telemetry on vs off in the frame processor) have modules of
//! their own (`bench_<name>.rs`) that reuse the measurement helpers here; this module is
//! also the middleware benchmark:
//!
//! `cargo xtask bench middleware [--requests N] [--rate R] [--work-requests N]
//! [--rounds R] [--connections C] [--warmup N] [--work-warmup N] [--simultaneous]
//! [--protocol grpc|http/protobuf] [--work-us U] [--c-env NAME=VALUE]... [--no-pin]`
//! measures the per-request cost of instrumentation, side by side in one run: the same axum
//! handler (crate `bench`, binary `bench-server`) under (a) no middleware, (b) the upstream
//! stack a Rust user assembles today (tower-http `TraceLayer` at INFO +
//! tracing-opentelemetry + OTLP batch export + axum-prometheus) and (c) Pathlight's
//! `telemetry` layer (100 % sampling, OTLP to a local receiver, Prometheus metrics), in
//! three scenarios:
//! - no handler work at a fixed offered rate (`--rate`, default 20 000 req/s), below what
//!   every mode sustains, so every mode exports every span and CPU per request compares
//!   equal work;
//! - no handler work at maximum load (closed loop), for throughput; here an exporter that
//!   cannot keep up drops spans, which lowers its CPU per request, so the drops are
//!   reported next to the numbers;
//! - ~1 ms of CPU work per request at maximum load (`--work-us` sets another duration, to
//!   see how the overhead depends on the time between requests; the target is for 1 ms).
//!
//! `--c-env NAME=VALUE` runs (c) with extra variables, e.g. both exporters set to `none`
//! to measure what the layer costs without exporting; the report then says that (c) is not
//! the default configuration and gives no verdict on the ~1 ms target.
//!
//! How it measures, per round and scenario:
//! - three fresh `bench-server`s, one per mode (release builds), and a fresh `otlp-sink`
//!   receiver each for (b) and (c); both export OTLP to their sink, configured by the
//!   same `OTEL_*` variables: (b) over gRPC as opentelemetry-otlp's examples do, (c) over
//!   gRPC too unless `--protocol http/protobuf` (this crate's default protocol) is given;
//! - load comes from `bench-load`, a separate process on loopback (keep-alive HTTP/1.1,
//!   every response checked for status 200);
//! - each server is warmed up; then the measured requests go out in chunks (`--chunk`,
//!   `--work-chunk`), one chunk to each server in turn, a, b, c and then c, b, a (reversed
//!   by chunk and by round), so the three modes meet the same moments of this shared,
//!   noisy machine: only one server is loaded at a time, and a slow minute of the host
//!   hits all three instead of one mode's run;
//! - with `--simultaneous`, the ~1 ms scenario sends each chunk to the three servers at the
//!   same time instead (one `bench-load` each), and they share their CPU: a slow second of
//!   the host, which moves one chunk's CPU per request by a percent or more, then falls on
//!   all three alike, which the difference of a few tenths of a percent this scenario is
//!   about needs; each server's caches also see the others' requests in between its own;
//! - a chunk's CPU time is its server's CPU time from the end of that server's previous
//!   chunk (or warm-up) to the end of this one, read from `/proc/<pid>/task/*/schedstat`
//!   (nanoseconds on CPU, summed over threads), so it includes the exporter's and
//!   metrics' background threads, also when they run after the chunk (which counts their
//!   idle ticks during the other servers' chunks too); `/proc/<pid>/stat` (utime + stime,
//!   whole process, clock ticks) is recorded as a cross-check;
//! - the part of it spent by background threads (every thread but the main one and the
//!   runtime's `tokio-rt-worker`s: the exporter, the metrics sampler) is reported apart,
//!   so the report shows how much of what (c) adds lies on the request path;
//! - with ~1 ms of work, `bench-server` also reads its thread's CPU clock around the work
//!   loop and writes the nanoseconds into each response, and `bench-load` sums them, so
//!   the report splits each mode's CPU into the loop and everything outside it; c − a
//!   outside the loop, over (a)'s CPU per request, is the work-corrected overhead: the
//!   same quantity as c/a − 1 when the layer does not slow the loop (the report prints the
//!   loop's time per mode to show it does not), without the loop's own drift from chunk
//!   to chunk, which is most of a chunk's CPU and most of its noise;
//! - `VmRSS` is read after the measured requests; then the servers get SIGTERM and must
//!   exit 0 (they flush their telemetry first) within a few seconds, and the sinks report
//!   how many spans arrived.
//!
//! Ratios are paired: c/a of a round is (c's CPU / c's requests) / (a's, the same) over
//! the round's chunks, and the verdict takes the median over rounds; the per-round values,
//! the value pooled over rounds and the quartiles of the per-chunk ratios are printed too.
//! With `taskset` and two or more CPUs, the servers run pinned to the last CPU and the
//! load generator and receivers to CPU 0, so a server's measured CPU time is not inflated
//! by competing with its own load. Results are printed and written to
//! `target/bench/middleware.json`; server stderr goes to `target/bench/logs/`. The binaries
//! run from copies in `target/bench/bin/`, so a concurrent build cannot swap them mid-run.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::project_root;

const USAGE: &str = "\
usage: cargo xtask bench middleware [options]

Options:
  --requests N       measured requests per run with no handler work (default 100000)
  --rate R           offered rate of the fixed-rate scenario, req/s (default 20000)
  --work-requests N  measured requests per run with ~1 ms of handler work (default 5000)
  --warmup N         warm-up requests per run with no handler work (default 5000)
  --work-warmup N    warm-up requests per run with ~1 ms of handler work (default 500)
  --chunk N          requests sent to one server before the next mode's turn, no handler work
                     (default 10000)
  --work-chunk N     the same with ~1 ms of handler work (default 500)
  --rounds R         rounds, each with fresh servers; the report takes medians (default 3)
  --connections C    concurrent keep-alive connections of the load generator (default 32)
  --simultaneous     ~1 ms scenario: send each chunk to the three servers at the same time
                     (they share their CPU) instead of to one after the other
  --protocol P       OTLP protocol of (c): grpc (default, as (b)) or http/protobuf
  --work-us U        the handler work of the work scenario, µs of the calibrated loop
                     (default 1000; the < 0.3 % target is for ~1 ms)
  --c-env NAME=VALUE an environment variable for (c) only, after the common ones (repeatable):
                     e.g. OTEL_TRACES_EXPORTER=none measures the layer without span export
  --no-pin           do not pin the server and the load generator to separate CPUs";

/// How long a server may take to flush and exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The targets from the issue, printed next to the measurements.
const TARGET_CPU_RATIO: f64 = 1.3;
const TARGET_WORK_OVERHEAD_PERCENT: f64 = 0.3;
const TARGET_RSS_DELTA_MB: f64 = 5.0;

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    match args.split_first() {
        Some((name, rest)) if name == "middleware" => middleware(rest),
        Some((name, rest)) if name == "tracker" => crate::bench_tracker::run(rest),
        Some((name, rest)) if name == "tracker-ingest" => crate::bench_tracker_ingest::run(rest),
        Some((name, rest)) if name == "tracking" => crate::bench_tracking::run(rest),
        Some((name, rest)) if name == "pipeline" => crate::bench_pipeline::run(rest),
        Some((name, _)) if name == "-h" || name == "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        Some((name, _)) => {
            bail!(
                "unknown benchmark `{name}`; available: middleware, tracker, tracker-ingest, tracking, pipeline\n{USAGE}"
            )
        }
        None => bail!("name a benchmark\n{USAGE}"),
    }
}

/// The command line of `bench middleware`.
#[derive(Debug, Clone)]
struct Options {
    requests: u64,
    work_requests: u64,
    warmup: u64,
    work_warmup: u64,
    rate: u64,
    chunk: u64,
    work_chunk: u64,
    rounds: usize,
    connections: u64,
    pin: bool,
    /// The ~1 ms scenario loads the three servers at the same time.
    simultaneous: bool,
    /// How (c) exports its spans ((b) always uses gRPC).
    protocol: Protocol,
    /// Microseconds of the calibrated loop per request in the work scenario.
    work_us: u64,
    /// Extra environment of (c), set after the common variables.
    c_env: Vec<(String, String)>,
}

/// The OTLP protocol (c) exports with (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    const ALL: [Self; 2] = [Self::Grpc, Self::HttpProtobuf];

    fn flag(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// The instrumentation under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No middleware.
    A,
    /// The upstream stack.
    B,
    /// Pathlight's `telemetry`.
    C,
}

/// What the handler does besides answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    None,
    /// This many µs of the calibrated loop (1,000 unless `--work-us`).
    Busy(u64),
}

/// How the load generator offers load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// This many requests per second over all connections.
    Rate(u64),
    /// Back to back on every connection (closed loop).
    Max,
}

/// One row group of the report: what the handler does and how load is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scenario {
    work: Work,
    pace: Pace,
}

/// Paths of the release binaries.
#[derive(Debug)]
struct Binaries {
    server: PathBuf,
    load: PathBuf,
    sink: PathBuf,
}

/// Which CPU each process is pinned to, if any.
#[derive(Debug, Clone)]
pub(crate) struct Pinning {
    /// The process under test.
    pub(crate) server: Option<String>,
    /// The load generator and the receivers.
    pub(crate) load: Option<String>,
}

/// One server run's measurements.
#[derive(Debug, Clone)]
struct Sample {
    round: usize,
    mode: Mode,
    scenario: Scenario,
    requests: u64,
    errors: u64,
    load_seconds: f64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// Nanoseconds on CPU of the server's threads during the measured requests.
    cpu_ns: u64,
    /// The part of `cpu_ns` of its background threads (exporter, sampler; see [`CpuTime`]).
    background_ns: u64,
    /// The same from `/proc/<pid>/stat` (tick resolution, includes exited threads).
    stat_cpu_ns: u64,
    rss_kb: u64,
    threads: usize,
    /// Spans the receiver counted over the whole run, and the requests that should each
    /// have made one (warm-up included).
    spans: u64,
    expected_spans: u64,
    /// Bytes of the `/metrics` page after the run (modes b and c).
    metrics_bytes: Option<usize>,
    exit: ExitReport,
    stderr_bytes: u64,
    /// CPU µs per request of each chunk, in the order the chunks were sent.
    chunk_cpu_us: Vec<f64>,
    /// The part of `cpu_ns` the handler spent in its work loop (its thread's CPU time
    /// around [`bench::burn`], as `bench-server` reports it; 0 without work).
    work_ns: u64,
    /// CPU µs per request of each chunk outside the handler's work loop.
    chunk_other_us: Vec<f64>,
}

impl Sample {
    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_ns as f64 / 1_000.0 / self.requests as f64
    }

    /// CPU µs per request outside the handler's work loop.
    fn other_us_per_request(&self) -> f64 {
        self.cpu_ns.saturating_sub(self.work_ns) as f64 / 1_000.0 / self.requests as f64
    }

    fn stat_cpu_us_per_request(&self) -> f64 {
        self.stat_cpu_ns as f64 / 1_000.0 / self.requests as f64
    }

    fn rss_mb(&self) -> f64 {
        self.rss_kb as f64 / 1024.0
    }
}

/// How a server ended after SIGTERM.
#[derive(Debug, Clone)]
struct ExitReport {
    /// `None` when it was killed (did not exit in time, or died of a signal).
    code: Option<i32>,
    seconds: f64,
    timed_out: bool,
}

/// Medians over rounds for one (mode, work).
#[derive(Debug, Clone)]
struct Summary {
    mode: Mode,
    scenario: Scenario,
    cpu_us: f64,
    cpu_us_min: f64,
    cpu_us_max: f64,
    stat_cpu_us: f64,
    rps: f64,
    rss_mb: f64,
    p99_us: f64,
    spans: u64,
    expected_spans: u64,
    errors: u64,
}

/// The output of one `bench-load` run.
#[derive(Debug)]
pub(crate) struct LoadResult {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    pub(crate) rps: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// CPU time the server's handler spent in its work loop, summed over the responses
    /// (`bench-server` writes it into each body; 0 without work).
    pub(crate) work_ns: u64,
}

/// CPU time of a process, two ways.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTime {
    /// Nanoseconds on CPU of the threads alive now (`schedstat`).
    pub(crate) sched_ns: u64,
    /// The part of `sched_ns` spent by background threads: every thread but the main one
    /// and the runtime's workers (`tokio-rt-worker`), which serve the requests.
    pub(crate) background_ns: u64,
    /// utime + stime of the whole process, exited threads included (`stat`, ticks).
    pub(crate) stat_ns: u64,
    pub(crate) threads: usize,
    /// Minor page faults of the whole process (`stat`).
    pub(crate) minor_faults: u64,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::A, Mode::B, Mode::C];

    fn flag(self) -> &'static str {
        match self {
            Mode::A => "a",
            Mode::B => "b",
            Mode::C => "c",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Mode::A => "no middleware",
            Mode::B => "TraceLayer(INFO) + tracing-opentelemetry + OTLP batch + axum-prometheus",
            Mode::C => "Pathlight telemetry (100 % sampled, OTLP, Prometheus)",
        }
    }

    fn exports_spans(self) -> bool {
        self != Mode::A
    }
}

impl Work {
    /// The value of `bench-server --work`: whether the handler works (how long is given by
    /// `--work-iterations`).
    fn flag(self) -> &'static str {
        match self {
            Work::None => "none",
            Work::Busy(_) => "1ms",
        }
    }

    /// E.g. `none`, `1ms`, `250us`.
    fn label(self) -> String {
        match self {
            Work::None => "none".to_owned(),
            Work::Busy(micros) if micros % 1_000 == 0 => format!("{}ms", micros / 1_000),
            Work::Busy(micros) => format!("{micros}us"),
        }
    }

    fn is_busy(self) -> bool {
        matches!(self, Work::Busy(_))
    }
}

impl Scenario {
    /// The scenarios of a run, in the order they are run within each round.
    fn all(options: &Options) -> [Scenario; 3] {
        [
            Scenario {
                work: Work::None,
                pace: Pace::Rate(options.rate),
            },
            Scenario {
                work: Work::None,
                pace: Pace::Max,
            },
            Scenario {
                work: Work::Busy(options.work_us),
                pace: Pace::Max,
            },
        ]
    }

    /// E.g. `none@20000/s`, `1ms@max`.
    fn label(self) -> String {
        match self.pace {
            Pace::Rate(rate) => format!("{}@{rate}/s", self.work.label()),
            Pace::Max => format!("{}@max", self.work.label()),
        }
    }
}

fn middleware(args: &[String]) -> anyhow::Result<()> {
    let options = parse_options(args)?;
    let started = Instant::now();
    let target = target_dir();
    let out_dir = target.join("bench");
    let log_dir = out_dir.join("logs");
    fs::create_dir_all(&log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;

    crate::process::cargo_build(true, &["-p", "bench", "-p", "otlp-sink", "--bins"])?;
    let copy = |name: &str| release_copy(&target, name);
    let binaries = Binaries {
        server: copy("bench-server")?,
        load: copy("bench-load")?,
        sink: copy("otlp-sink")?,
    };
    let pinning = pinning(options.pin);
    let clock_ticks = clock_ticks_per_second();
    let load_before = loadavg();

    let iterations =
        (calibrate(&binaries, &pinning)?.saturating_mul(options.work_us) / 1_000).max(1);
    println!(
        "bench middleware: {} round(s); {} requests (+{} warm-up) with no work at {} req/s and at max load, \
         {} (+{}) with ~{} µs of work ({iterations} iterations) at max load{}; {} connections; {}",
        options.rounds,
        options.requests,
        options.warmup,
        options.rate,
        options.work_requests,
        options.work_warmup,
        options.work_us,
        if options.simultaneous {
            ", the three servers at the same time"
        } else {
            ""
        },
        options.connections,
        match (&pinning.server, &pinning.load) {
            (Some(server), Some(load)) =>
                format!("server pinned to CPU {server}, load generator and receiver to CPU {load}"),
            _ => "not pinned".to_owned(),
        }
    );
    println!("load average before: {load_before}");

    let setup = Setup {
        binaries: &binaries,
        pinning: &pinning,
        options: &options,
        log_dir: &log_dir,
        iterations,
        clock_ticks,
    };
    let mut samples = Vec::new();
    for round in 1..=options.rounds {
        for scenario in Scenario::all(&options) {
            let scenario_samples = run_scenario(&setup, round, scenario)
                .with_context(|| format!("round {round}, {}", scenario.label()))?;
            for sample in scenario_samples {
                println!(
                    "  round {round} {:<12} {} {:>8.2} µs/req (stat {:>7.2}) {:>9.0} req/s  RSS {:>6.1} MB  \
                     {} threads  errors {}  spans {}/{}  exit {} in {:.2} s",
                    scenario.label(),
                    sample.mode.flag(),
                    sample.cpu_us_per_request(),
                    sample.stat_cpu_us_per_request(),
                    sample.rps,
                    sample.rss_mb(),
                    sample.threads,
                    sample.errors,
                    sample.spans,
                    sample.expected_spans,
                    sample
                        .exit
                        .code
                        .map_or_else(|| "killed".to_owned(), |code| code.to_string()),
                    sample.exit.seconds,
                );
                samples.push(sample);
            }
        }
    }

    let load_after = loadavg();
    let summaries: Vec<Summary> = Scenario::all(&options)
        .into_iter()
        .flat_map(|scenario| Mode::ALL.map(|mode| summarise(&samples, mode, scenario)))
        .collect();
    let elapsed = started.elapsed();
    let report = Report {
        options: &options,
        pinning: &pinning,
        iterations,
        samples: &samples,
        summaries: &summaries,
        load_before,
        load_after,
        elapsed,
    };
    print!("{}", report.table());
    let json_path = out_dir.join("middleware.json");
    fs::write(&json_path, report.json())
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    println!("results written to {}", json_path.display());
    Ok(())
}

fn parse_options(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        requests: 100_000,
        work_requests: 5_000,
        warmup: 5_000,
        work_warmup: 500,
        rate: 20_000,
        chunk: 10_000,
        work_chunk: 500,
        rounds: 3,
        connections: 32,
        pin: true,
        simultaneous: false,
        protocol: Protocol::Grpc,
        work_us: 1_000,
        c_env: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "--no-pin" {
            options.pin = false;
            continue;
        }
        if flag == "--simultaneous" {
            options.simultaneous = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        if flag == "--protocol" {
            options.protocol = Protocol::ALL
                .into_iter()
                .find(|protocol| protocol.flag() == value)
                .with_context(|| format!("--protocol {value:?}: expected grpc or http/protobuf"))?;
            continue;
        }
        if flag == "--c-env" {
            let (name, env_value) = value
                .split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .with_context(|| format!("--c-env {value:?}: expected NAME=VALUE"))?;
            options.c_env.push((name.to_owned(), env_value.to_owned()));
            continue;
        }
        let number: u64 = value
            .replace('_', "")
            .parse()
            .with_context(|| format!("{flag} {value:?} is not a number"))?;
        match flag.as_str() {
            "--requests" => options.requests = number,
            "--work-requests" => options.work_requests = number,
            "--warmup" => options.warmup = number,
            "--work-warmup" => options.work_warmup = number,
            "--rate" => options.rate = number,
            "--chunk" => options.chunk = number,
            "--work-chunk" => options.work_chunk = number,
            "--rounds" => options.rounds = usize::try_from(number)?,
            "--connections" => options.connections = number,
            "--work-us" => options.work_us = number,
            _ => bail!("unknown option {flag:?}\n{USAGE}"),
        }
    }
    ensure!(options.rounds > 0, "--rounds must be at least 1");
    ensure!(
        options.requests > 0 && options.work_requests > 0,
        "--requests and --work-requests must be at least 1"
    );
    ensure!(options.connections > 0, "--connections must be at least 1");
    ensure!(options.rate > 0, "--rate must be at least 1");
    ensure!(options.work_us > 0, "--work-us must be at least 1");
    ensure!(
        options.chunk > 0 && options.work_chunk > 0,
        "--chunk and --work-chunk must be at least 1"
    );
    Ok(options)
}

/// The cargo target directory: `CARGO_TARGET_DIR`, or `target/` in the workspace.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), PathBuf::from)
}

/// Copies the release binary `name` to `<target>/bench/bin/` and returns the copy's path:
/// benchmarks run copies, so a build started by someone else during the run cannot swap
/// the binaries between rounds.
pub(crate) fn release_copy(target: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let bin_dir = target.join("bench").join("bin");
    fs::create_dir_all(&bin_dir).with_context(|| format!("cannot create {}", bin_dir.display()))?;
    let copied = bin_dir.join(name);
    fs::copy(target.join("release").join(name), &copied)
        .with_context(|| format!("cannot copy {name} to {}", bin_dir.display()))?;
    Ok(copied)
}

/// Pins the server to the last CPU and everything else to CPU 0 when `taskset` works and
/// there are at least two CPUs.
pub(crate) fn pinning(wanted: bool) -> Pinning {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let taskset_works = Command::new("taskset")
        .args(["-c", "0", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if wanted && cpus >= 2 && taskset_works {
        Pinning {
            server: Some((cpus - 1).to_string()),
            load: Some("0".to_owned()),
        }
    } else {
        if wanted {
            println!("note: not pinning (CPUs: {cpus}, taskset usable: {taskset_works})");
        }
        Pinning {
            server: None,
            load: None,
        }
    }
}

/// A command for `program`, run under `taskset -c cpu` when pinned (`taskset` execs the
/// program, so the child's pid is the program's).
pub(crate) fn command(program: &Path, cpu: Option<&String>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Asks the server binary, on the server's CPU, how many work iterations take ~1 ms; every
/// server then gets the same count.
fn calibrate(binaries: &Binaries, pinning: &Pinning) -> anyhow::Result<u64> {
    let output = command(&binaries.server, pinning.server.as_ref())
        .arg("--calibrate")
        .output()
        .context("cannot run bench-server --calibrate")?;
    ensure!(output.status.success(), "bench-server --calibrate failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let iterations = json_number(&stdout, "iterations")
        .context("bench-server --calibrate printed no iterations")?;
    Ok(iterations as u64)
}

/// What every scenario run shares.
#[derive(Debug)]
struct Setup<'a> {
    binaries: &'a Binaries,
    pinning: &'a Pinning,
    options: &'a Options,
    log_dir: &'a Path,
    iterations: u64,
    clock_ticks: u64,
}

/// One server of a scenario run, with its receiver and what was measured so far.
#[derive(Debug)]
struct Live {
    mode: Mode,
    /// The receiver of its spans ((b) and (c); (a) exports nothing).
    sink: Option<Sink>,
    server: Server,
    url: String,
    stderr_path: PathBuf,
    /// CPU time at the end of its previous chunk (or of its warm-up).
    last: CpuTime,
    chunks: Vec<ChunkResult>,
}

impl Live {
    /// Records a chunk's load result with the server's CPU time since its previous chunk.
    fn measure_chunk(&mut self, setup: &Setup<'_>, load: LoadResult) -> anyhow::Result<()> {
        let now = cpu_time(self.server.pid, setup.clock_ticks)?;
        self.chunks.push(ChunkResult {
            load,
            cpu_ns: now.sched_ns.saturating_sub(self.last.sched_ns),
            background_ns: now.background_ns.saturating_sub(self.last.background_ns),
            stat_cpu_ns: now.stat_ns.saturating_sub(self.last.stat_ns),
        });
        self.last = now;
        Ok(())
    }
}

/// One chunk of requests sent to one server.
#[derive(Debug)]
struct ChunkResult {
    load: LoadResult,
    cpu_ns: u64,
    background_ns: u64,
    stat_cpu_ns: u64,
}

/// The order of the modes for chunk `index` of `round`: a, b, c and the reverse,
/// alternating by chunk and by round, so no mode always follows the same one.
fn chunk_order(round: usize, index: usize) -> [Mode; 3] {
    if (round + index) % 2 == 1 {
        Mode::ALL
    } else {
        [Mode::C, Mode::B, Mode::A]
    }
}

/// The sizes of the chunks that make up `requests`: `chunk` each, the last one smaller.
fn chunk_sizes(requests: u64, chunk: u64) -> Vec<u64> {
    let chunk = chunk.max(1);
    let full = requests / chunk;
    let mut sizes = vec![chunk; usize::try_from(full).unwrap_or(usize::MAX)];
    if !requests.is_multiple_of(chunk) {
        sizes.push(requests % chunk);
    }
    sizes
}

/// Runs one scenario of one round: starts the three servers (and a receiver each for (b)
/// and (c)), warms each up, then sends the measured requests in chunks to the servers in
/// turn (see [`chunk_order`]), one server loaded at a time. A chunk's CPU time is its
/// server's CPU time from the end of that server's previous chunk to the end of this one,
/// so work a server does after a chunk (the batch exporter's next export, the process
/// sampler) is counted for it too.
fn run_scenario(
    setup: &Setup<'_>,
    round: usize,
    scenario: Scenario,
) -> anyhow::Result<Vec<Sample>> {
    let options = setup.options;
    let (requests, warmup, chunk) = match scenario.work {
        Work::None => (options.requests, options.warmup, options.chunk),
        Work::Busy(_) => (
            options.work_requests,
            options.work_warmup,
            options.work_chunk,
        ),
    };
    let mut live = Vec::with_capacity(Mode::ALL.len());
    for mode in Mode::ALL {
        let sink = if mode.exports_spans() {
            Some(Sink::start(
                &setup.binaries.sink,
                setup.pinning.load.as_ref(),
            )?)
        } else {
            None
        };
        let stderr_path = setup.log_dir.join(format!(
            "round{round}-{}-{}.stderr",
            scenario.label().replace('/', ""),
            mode.flag()
        ));
        // (a) reads no endpoint; it gets one so every mode has the same environment.
        let protocol = if mode == Mode::C {
            options.protocol
        } else {
            Protocol::Grpc
        };
        let endpoint = sink
            .as_ref()
            .map_or("http://127.0.0.1:4317", |sink| match protocol {
                Protocol::Grpc => sink.grpc_endpoint.as_str(),
                Protocol::HttpProtobuf => sink.http_endpoint.as_str(),
            });
        let server = Server::start(
            &setup.binaries.server,
            setup.pinning.server.as_ref(),
            mode,
            scenario.work,
            setup.iterations,
            (
                endpoint,
                protocol,
                if mode == Mode::C { &options.c_env } else { &[] },
            ),
            &stderr_path,
        )?;
        let url = format!("http://127.0.0.1:{}/items/", server.port);
        if warmup > 0 {
            // At the scenario's pace: a warm-up at max load would fill the exporters'
            // queues and drop spans that the fixed-rate scenario is meant to export.
            let warm = load(setup, &url, warmup, scenario.pace)?;
            ensure!(
                warm.errors == 0,
                "mode {}: {} errors during the warm-up",
                mode.flag(),
                warm.errors
            );
        }
        let last = cpu_time(server.pid, setup.clock_ticks)?;
        live.push(Live {
            mode,
            sink,
            server,
            url,
            stderr_path,
            last,
            chunks: Vec::new(),
        });
    }

    let simultaneous = options.simultaneous && scenario.work.is_busy();
    for (index, size) in chunk_sizes(requests, chunk).into_iter().enumerate() {
        if simultaneous {
            let results = all_at_once(
                live.iter()
                    .map(|server| move || load(setup, &server.url, size, scenario.pace)),
            )
            .with_context(|| format!("chunk {} of all modes at once", index + 1))?;
            for (server, measured) in live.iter_mut().zip(results) {
                server.measure_chunk(setup, measured)?;
            }
            continue;
        }
        for mode in chunk_order(round, index) {
            let Some(server) = live.iter_mut().find(|l| l.mode == mode) else {
                bail!("no server for mode {}", mode.flag());
            };
            let measured = load(setup, &server.url, size, scenario.pace)
                .with_context(|| format!("chunk {} of mode {}", index + 1, mode.flag()))?;
            server.measure_chunk(setup, measured)?;
        }
    }

    let mut samples = Vec::with_capacity(live.len());
    for mut server in live {
        let rss_kb = rss_kb(server.server.pid)?;
        // After the measurement, so the scrape is not counted: proves the metrics endpoint
        // of the instrumented modes works.
        let metrics_bytes = if server.mode == Mode::A {
            None
        } else {
            Some(scrape_metrics(server.server.port).context("cannot scrape /metrics")?)
        };
        let exit = server.server.stop()?;
        let stderr_bytes = fs::metadata(&server.stderr_path).map_or(0, |meta| meta.len());
        let spans = match server.sink.as_mut() {
            Some(sink) => sink.stop()?,
            None => 0,
        };
        let chunks = &server.chunks;
        let measured_requests: u64 = chunks.iter().map(|c| c.load.requests).sum();
        let seconds: f64 = chunks.iter().map(|c| c.load.seconds).sum();
        let median_of =
            |f: fn(&ChunkResult) -> f64| median(&chunks.iter().map(f).collect::<Vec<f64>>());
        samples.push(Sample {
            round,
            mode: server.mode,
            scenario,
            requests: measured_requests,
            errors: chunks.iter().map(|c| c.load.errors).sum(),
            load_seconds: seconds,
            rps: measured_requests as f64 / seconds.max(f64::MIN_POSITIVE),
            p50_us: median_of(|c| c.load.p50_us),
            p99_us: median_of(|c| c.load.p99_us),
            cpu_ns: chunks.iter().map(|c| c.cpu_ns).sum(),
            background_ns: chunks.iter().map(|c| c.background_ns).sum(),
            stat_cpu_ns: chunks.iter().map(|c| c.stat_cpu_ns).sum(),
            rss_kb,
            threads: server.last.threads,
            spans,
            expected_spans: if server.mode.exports_spans() {
                warmup + measured_requests
            } else {
                0
            },
            metrics_bytes,
            exit,
            stderr_bytes,
            chunk_cpu_us: chunks
                .iter()
                .map(|c| c.cpu_ns as f64 / 1_000.0 / c.load.requests.max(1) as f64)
                .collect(),
            work_ns: chunks.iter().map(|c| c.load.work_ns).sum(),
            chunk_other_us: chunks
                .iter()
                .map(|c| {
                    c.cpu_ns.saturating_sub(c.load.work_ns) as f64
                        / 1_000.0
                        / c.load.requests.max(1) as f64
                })
                .collect(),
        });
    }
    Ok(samples)
}

/// Runs `jobs` (the loads of one chunk) on threads of their own, all at the same time, and
/// returns their results in order, or the first error.
pub(crate) fn all_at_once<T: Send>(
    jobs: impl Iterator<Item = impl FnOnce() -> anyhow::Result<T> + Send>,
) -> anyhow::Result<Vec<T>> {
    std::thread::scope(|scope| {
        let running: Vec<_> = jobs.map(|job| scope.spawn(job)).collect();
        running
            .into_iter()
            .map(|job| {
                job.join()
                    .unwrap_or_else(|_| bail!("a load thread panicked"))
            })
            .collect()
    })
}

/// Runs `bench-load` to completion against `url` and parses its result line.
fn load(setup: &Setup<'_>, url: &str, requests: u64, pace: Pace) -> anyhow::Result<LoadResult> {
    let mut args = vec![
        "--url".to_owned(),
        url.to_owned(),
        "--requests".to_owned(),
        requests.to_string(),
        "--connections".to_owned(),
        setup.options.connections.to_string(),
    ];
    if let Pace::Rate(rate) = pace {
        args.extend(["--rate".to_owned(), rate.to_string()]);
    }
    run_load(&setup.binaries.load, setup.pinning.load.as_ref(), &args)
}

/// Runs the `bench-load` binary `load` with `args` (on `cpu` when pinned) to completion
/// and parses its result line.
pub(crate) fn run_load(
    load: &Path,
    cpu: Option<&String>,
    args: &[String],
) -> anyhow::Result<LoadResult> {
    let mut command = command(load, cpu);
    command.args(args);
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run bench-load")?;
    ensure!(
        output.status.success(),
        "bench-load failed ({})",
        output.status
    );
    let line = String::from_utf8_lossy(&output.stdout);
    let field = |key: &str| {
        json_number(&line, key).with_context(|| format!("bench-load printed no {key}: {line}"))
    };
    Ok(LoadResult {
        requests: field("requests")? as u64,
        errors: field("errors")? as u64,
        seconds: field("seconds")?,
        rps: field("rps")?,
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
        work_ns: field("work_ns")? as u64,
    })
}

/// A running `otlp-sink`.
#[derive(Debug)]
struct Sink {
    child: Child,
    stdout: BufReader<ChildStdout>,
    grpc_endpoint: String,
    http_endpoint: String,
}

impl Sink {
    fn start(binary: &Path, cpu: Option<&String>) -> anyhow::Result<Self> {
        let mut child = command(binary, cpu)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start otlp-sink")?;
        let mut stdout = BufReader::new(child.stdout.take().context("otlp-sink has no stdout")?);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .context("cannot read otlp-sink's address line")?;
        let (Some(grpc_endpoint), Some(http_endpoint)) =
            (json_string(&line, "grpc"), json_string(&line, "http"))
        else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("otlp-sink printed no gRPC and HTTP endpoints: {line:?}");
        };
        Ok(Self {
            child,
            stdout,
            grpc_endpoint,
            http_endpoint,
        })
    }

    /// Stops the sink and returns the spans it received.
    fn stop(&mut self) -> anyhow::Result<u64> {
        terminate(self.child.id())?;
        let mut spans = None;
        let mut line = String::new();
        while spans.is_none() {
            line.clear();
            if self
                .stdout
                .read_line(&mut line)
                .context("cannot read otlp-sink's counts")?
                == 0
            {
                break;
            }
            spans = json_number(&line, "spans");
        }
        let status = self.child.wait().context("cannot wait for otlp-sink")?;
        ensure!(status.success(), "otlp-sink exited with {status}");
        let spans = spans.context("otlp-sink printed no span count")?;
        Ok(spans as u64)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running `bench-server`.
#[derive(Debug)]
struct Server {
    child: Child,
    pid: u32,
    port: u16,
    /// Drains stdout (mode c logs JSON there, as a service would) so the server never
    /// blocks on a full pipe.
    drain: Option<JoinHandle<u64>>,
}

impl Server {
    fn start(
        binary: &Path,
        cpu: Option<&String>,
        mode: Mode,
        work: Work,
        iterations: u64,
        // The OTLP endpoint and protocol, and variables set after the common ones.
        (otlp_endpoint, protocol, extra_env): (&str, Protocol, &[(String, String)]),
        stderr_path: &Path,
    ) -> anyhow::Result<Self> {
        let stderr = fs::File::create(stderr_path)
            .with_context(|| format!("cannot create {}", stderr_path.display()))?;
        let mut command = command(binary, cpu);
        command.args([
            "--mode",
            mode.flag(),
            "--work",
            work.flag(),
            "--work-iterations",
            &iterations.to_string(),
            "--port",
            "0",
        ]);
        // Every mode gets the same environment; (a) ignores it, (b) reads the endpoint,
        // (c) reads all of it. Inherited OTEL_* variables would skew the comparison.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.flag())
            .env("OTEL_TRACES_SAMPLER", "always_on")
            .env("OTEL_METRICS_EXPORTER", "prometheus")
            .env("RUST_LOG", "info")
            .envs(extra_env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command.spawn().context("cannot start bench-server")?;
        let stdout = child.stdout.take().context("bench-server has no stdout")?;

        let (port_tx, port_rx) = mpsc::channel();
        let drain = std::thread::spawn(move || {
            let mut lines = 0;
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines += 1;
                if line.starts_with("{\"port\"")
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(line);
                }
            }
            lines
        });
        let mut server = Self {
            child,
            pid: 0,
            port: 0,
            drain: Some(drain),
        };
        let line = port_rx
            .recv_timeout(Duration::from_secs(30))
            .with_context(|| {
                format!(
                    "bench-server printed no port line; see {}",
                    stderr_path.display()
                )
            })?;
        server.port = json_number(&line, "port").context("no port in the port line")? as u16;
        server.pid = json_number(&line, "pid").context("no pid in the port line")? as u32;
        ensure!(
            server.pid == server.child.id(),
            "the server reports pid {} but was started as {}",
            server.pid,
            server.child.id()
        );
        Ok(server)
    }

    /// Sends SIGTERM and waits up to [`EXIT_TIMEOUT`]; kills the server after that.
    fn stop(&mut self) -> anyhow::Result<ExitReport> {
        let start = Instant::now();
        terminate(self.pid)?;
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if start.elapsed() > EXIT_TIMEOUT {
                timed_out = true;
                self.child.kill()?;
                break self.child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let seconds = start.elapsed().as_secs_f64();
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
        Ok(ExitReport {
            code: status.code(),
            seconds,
            timed_out,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends SIGTERM to a process this task started.
fn terminate(pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .context("cannot run kill")?;
    ensure!(status.success(), "kill -TERM {pid} failed");
    Ok(())
}

/// The CPU time of every thread of `pid`: the sum of `/proc/<pid>/task/*/schedstat`'s
/// first field (ns), and `/proc/<pid>/stat`'s utime + stime (ticks, converted).
pub(crate) fn cpu_time(pid: u32, clock_ticks: u64) -> anyhow::Result<CpuTime> {
    let mut sched_ns = 0;
    let mut background_ns = 0;
    let mut threads = 0;
    let tasks = format!("/proc/{pid}/task");
    let main_tid = pid.to_string();
    for entry in fs::read_dir(&tasks).with_context(|| format!("cannot list {tasks}"))? {
        let task = entry?.path();
        let path = task.join("schedstat");
        // A thread may end between listing and reading; its time is then lost here (the
        // stat cross-check keeps it).
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let on_cpu: u64 = text
            .split_whitespace()
            .next()
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("unexpected {}: {text:?}", path.display()))?;
        sched_ns += on_cpu;
        threads += 1;
        let main_thread = task.file_name().is_some_and(|tid| *tid == *main_tid);
        let worker = fs::read_to_string(task.join("comm"))
            .is_ok_and(|name| name.trim_end().starts_with("tokio-rt-worker"));
        if !main_thread && !worker {
            background_ns += on_cpu;
        }
    }
    let stat_path = format!("/proc/{pid}/stat");
    let stat =
        fs::read_to_string(&stat_path).with_context(|| format!("cannot read {stat_path}"))?;
    // Fields after the command name (which may contain spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc/<pid>/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // minflt is field 10.
    let minor_faults: u64 = fields
        .get(7)
        .and_then(|field| field.parse().ok())
        .context("unexpected minflt in /proc/<pid>/stat")?;
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc/<pid>/stat")?
        .iter()
        .map(|field| field.parse::<u64>())
        .sum::<Result<u64, _>>()
        .context("unexpected utime/stime")?;
    Ok(CpuTime {
        sched_ns,
        background_ns,
        stat_ns: ticks * 1_000_000_000 / clock_ticks,
        threads,
        minor_faults,
    })
}

pub(crate) fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

pub(crate) fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "unknown".to_owned(), |text| text.trim().to_owned())
}

/// GETs `/metrics` and returns the body's size; fails unless the status is 200.
fn scrape_metrics(port: u16) -> anyhow::Result<usize> {
    let (status, body) = crate::process::http_get(&format!("http://127.0.0.1:{port}/metrics"))?;
    ensure!(status == 200, "GET /metrics answered {status}");
    Ok(body.len())
}

fn summarise(samples: &[Sample], mode: Mode, scenario: Scenario) -> Summary {
    let runs: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.mode == mode && s.scenario == scenario)
        .collect();
    let values = |f: &dyn Fn(&Sample) -> f64| -> Vec<f64> { runs.iter().map(|s| f(s)).collect() };
    let cpu = values(&Sample::cpu_us_per_request);
    Summary {
        mode,
        scenario,
        cpu_us: median(&cpu),
        cpu_us_min: cpu.iter().copied().fold(f64::INFINITY, f64::min),
        cpu_us_max: cpu.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        stat_cpu_us: median(&values(&Sample::stat_cpu_us_per_request)),
        rps: median(&values(&|s| s.rps)),
        rss_mb: median(&values(&Sample::rss_mb)),
        p99_us: median(&values(&|s| s.p99_us)),
        spans: runs.iter().map(|s| s.spans).sum(),
        expected_spans: runs.iter().map(|s| s.expected_spans).sum(),
        errors: runs.iter().map(|s| s.errors).sum(),
    }
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `values` with `decimals` digits after the point, separated by ", ".
fn number_list(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `q` quantile (0 to 1) of `values`, by nearest rank.
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n => sorted[((n - 1) as f64 * q).round() as usize],
    }
}

/// Everything the printed table and the JSON file are made from.
#[derive(Debug)]
struct Report<'a> {
    options: &'a Options,
    pinning: &'a Pinning,
    iterations: u64,
    samples: &'a [Sample],
    summaries: &'a [Summary],
    load_before: String,
    load_after: String,
    elapsed: Duration,
}

/// The comparisons the issue asks for, for one scenario. Ratios and differences are
/// paired within a round (the three servers ran side by side, chunk by chunk) and then
/// the median over rounds is taken.
#[derive(Debug)]
struct Ratios {
    c_over_a: f64,
    b_over_a: f64,
    c_over_b: f64,
    /// Added CPU per request over (a), µs.
    b_minus_a: f64,
    c_minus_a: f64,
    /// c/a of each round (all its chunks), and over all rounds' CPU and requests.
    c_over_a_rounds: Vec<f64>,
    c_over_a_pooled: f64,
    /// Quartiles of c/a over chunks paired by round and position.
    c_over_a_chunk_q1: f64,
    c_over_a_chunk_q3: f64,
    /// Percentage of expected spans that never reached the receiver.
    b_lost_percent: f64,
    c_lost_percent: f64,
    /// With work: CPU µs per request in the handler's work loop, and outside it, of
    /// (a), (b), (c), pooled over rounds.
    work_us: [f64; 3],
    other_us: [f64; 3],
    /// With work: c − a outside the work loop, µs per request, per round (paired), its
    /// median, and its quartiles over chunks paired by round and position.
    c_minus_a_other_rounds: Vec<f64>,
    c_minus_a_other: f64,
    c_minus_a_other_chunk_q1: f64,
    c_minus_a_other_chunk_q3: f64,
}

impl Ratios {
    /// With work: what (c) adds outside the handler's work loop, as a percentage of (a)'s
    /// CPU per request, the loop included (the work-corrected overhead: the loop's own
    /// variation from chunk to chunk, which the layer cannot cause, is taken out).
    fn c_other_overhead_percent(&self) -> f64 {
        self.c_minus_a_other * 100.0 / (self.work_us[0] + self.other_us[0])
    }
}

impl Summary {
    fn lost_percent(&self) -> f64 {
        if self.expected_spans == 0 {
            return 0.0;
        }
        self.expected_spans.saturating_sub(self.spans) as f64 * 100.0 / self.expected_spans as f64
    }
}

impl Report<'_> {
    fn scenarios(&self) -> [Scenario; 3] {
        Scenario::all(self.options)
    }

    fn summary(&self, mode: Mode, scenario: Scenario) -> &Summary {
        self.summaries
            .iter()
            .find(|s| s.mode == mode && s.scenario == scenario)
            .expect("every mode and scenario is summarised")
    }

    /// The samples of `mode` in `scenario`, in round order.
    fn runs(&self, mode: Mode, scenario: Scenario) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.mode == mode && s.scenario == scenario)
            .collect()
    }

    fn ratios(&self, scenario: Scenario) -> Ratios {
        let [a, b, c] = Mode::ALL.map(|mode| self.runs(mode, scenario));
        // One value per round (or per chunk, paired by round and position) from x and y.
        let per_round =
            |x: &[&Sample], y: &[&Sample], metric: fn(&Sample) -> f64, f: fn(f64, f64) -> f64| {
                x.iter()
                    .zip(y)
                    .map(|(x, y)| f(metric(x), metric(y)))
                    .collect::<Vec<f64>>()
            };
        let per_chunk = |x: &[&Sample],
                         y: &[&Sample],
                         chunks: fn(&Sample) -> &[f64],
                         f: fn(f64, f64) -> f64| {
            x.iter()
                .zip(y)
                .flat_map(|(x, y)| chunks(x).iter().zip(chunks(y)).map(|(x, y)| f(*x, *y)))
                .collect::<Vec<f64>>()
        };
        let ratio = |x: f64, y: f64| x / y;
        let minus = |x: f64, y: f64| x - y;
        let cpu = Sample::cpu_us_per_request;
        let other = Sample::other_us_per_request;
        // µs per request over all rounds' nanoseconds and requests.
        let pooled_us = |runs: &[&Sample], ns: fn(&Sample) -> u64| {
            let ns: u64 = runs.iter().map(|s| ns(s)).sum();
            let requests: u64 = runs.iter().map(|s| s.requests).sum();
            ns as f64 / 1_000.0 / requests.max(1) as f64
        };
        let chunk_ratios = per_chunk(&c, &a, |s| &s.chunk_cpu_us, ratio);
        let c_over_a_rounds = per_round(&c, &a, cpu, ratio);
        let work_us = [&a, &b, &c].map(|runs| pooled_us(runs, |s| s.work_ns));
        let other_us =
            [&a, &b, &c].map(|runs| pooled_us(runs, |s| s.cpu_ns.saturating_sub(s.work_ns)));
        let c_minus_a_other_rounds = per_round(&c, &a, other, minus);
        let chunk_other_differences = per_chunk(&c, &a, |s| &s.chunk_other_us, minus);
        Ratios {
            work_us,
            other_us,
            c_minus_a_other: median(&c_minus_a_other_rounds),
            c_minus_a_other_rounds,
            c_minus_a_other_chunk_q1: quantile(&chunk_other_differences, 0.25),
            c_minus_a_other_chunk_q3: quantile(&chunk_other_differences, 0.75),
            c_over_a: median(&c_over_a_rounds),
            b_over_a: median(&per_round(&b, &a, cpu, ratio)),
            c_over_b: median(&per_round(&c, &b, cpu, ratio)),
            b_minus_a: median(&per_round(&b, &a, cpu, minus)),
            c_minus_a: median(&per_round(&c, &a, cpu, minus)),
            c_over_a_pooled: pooled_us(&c, |s| s.cpu_ns) / pooled_us(&a, |s| s.cpu_ns),
            c_over_a_rounds,
            c_over_a_chunk_q1: quantile(&chunk_ratios, 0.25),
            c_over_a_chunk_q3: quantile(&chunk_ratios, 0.75),
            b_lost_percent: self.summary(Mode::B, scenario).lost_percent(),
            c_lost_percent: self.summary(Mode::C, scenario).lost_percent(),
        }
    }

    /// What `mode` adds to (a)'s CPU per request, pooled over rounds, split into the
    /// threads that serve requests and the background threads.
    fn added_by_thread_kind(&self, mode: Mode, scenario: Scenario) -> (f64, f64) {
        let per_request = |mode: Mode| {
            let runs = self.runs(mode, scenario);
            let requests = runs.iter().map(|s| s.requests).sum::<u64>().max(1) as f64;
            let background: u64 = runs.iter().map(|s| s.background_ns).sum();
            let all: u64 = runs.iter().map(|s| s.cpu_ns).sum();
            (
                all.saturating_sub(background) as f64 / 1_000.0 / requests,
                background as f64 / 1_000.0 / requests,
            )
        };
        let (mode_request, mode_background) = per_request(mode);
        let (a_request, a_background) = per_request(Mode::A);
        (mode_request - a_request, mode_background - a_background)
    }

    /// `--c-env` as `NAME=VALUE NAME=VALUE`.
    fn c_env_list(&self) -> String {
        self.options
            .c_env
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The verdict on the ~1 ms target for a work scenario's overhead (in percent); only the
    /// default 1,000 µs of work and the default (c) are what the target is about.
    fn work_verdict(&self, overhead: f64) -> String {
        if self.options.work_us != 1_000 {
            format!("the < {TARGET_WORK_OVERHEAD_PERCENT} % target is for ~1 ms of work")
        } else if !self.options.c_env.is_empty() {
            format!("the < {TARGET_WORK_OVERHEAD_PERCENT} % target is for (c) without --c-env")
        } else {
            format!(
                "target < {TARGET_WORK_OVERHEAD_PERCENT} %: {}",
                verdict(overhead < TARGET_WORK_OVERHEAD_PERCENT)
            )
        }
    }

    fn rss_delta_mb(&self, mode: Mode, scenario: Scenario) -> f64 {
        self.summary(mode, scenario).rss_mb - self.summary(Mode::A, scenario).rss_mb
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "middleware benchmark: {} round(s), the three servers side by side in each, requests in \
             alternating chunks ({} without work, {} with); CPU = server process (all threads) per request; \
             ratios are paired within a round, then the median over rounds is taken",
            self.options.rounds, self.options.chunk, self.options.work_chunk,
        );
        for mode in Mode::ALL {
            let _ = writeln!(out, "  ({}) {}", mode.flag(), mode.describe());
            if mode == Mode::C && !self.options.c_env.is_empty() {
                let _ = writeln!(
                    out,
                    "      NOT the default configuration: (c) runs with {}",
                    self.c_env_list()
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "scenario      mode  CPU µs/req  (min–max)            stat µs/req     req/s   p99 µs  RSS MB  spans received/expected"
        );
        for summary in self.summaries {
            let spans = if summary.mode.exports_spans() {
                let lost = summary.lost_percent();
                if lost > 0.0 {
                    format!(
                        "{}/{} ({lost:.1} % lost)",
                        summary.spans, summary.expected_spans
                    )
                } else {
                    format!("{}/{}", summary.spans, summary.expected_spans)
                }
            } else {
                "-".to_owned()
            };
            let _ = writeln!(
                out,
                "{:<13} {:<5} {:>10.2}  ({:>8.2}–{:<8.2})  {:>11.2}  {:>8.0}  {:>7.0}  {:>6.1}  {spans}",
                summary.scenario.label(),
                summary.mode.flag(),
                summary.cpu_us,
                summary.cpu_us_min,
                summary.cpu_us_max,
                summary.stat_cpu_us,
                summary.rps,
                summary.p99_us,
                summary.rss_mb,
            );
        }
        let _ = writeln!(out);
        for scenario in self.scenarios() {
            let ratios = self.ratios(scenario);
            let lost = if ratios.b_lost_percent > 0.0 || ratios.c_lost_percent > 0.0 {
                format!(
                    "; spans lost: b {:.1} %, c {:.1} % (an exporter that drops does less work: not a like-for-like comparison)",
                    ratios.b_lost_percent, ratios.c_lost_percent
                )
            } else {
                "; every span arrived".to_owned()
            };
            match scenario.work {
                Work::None => {
                    let _ = writeln!(
                        out,
                        "{:<13} c/a = {:.2} (target ≤ {TARGET_CPU_RATIO}: {}), b/a = {:.2}, c/b = {:.2}; \
                         added µs/req: b {:+.2}, c {:+.2}{lost}",
                        scenario.label(),
                        ratios.c_over_a,
                        verdict(ratios.c_over_a <= TARGET_CPU_RATIO),
                        ratios.b_over_a,
                        ratios.c_over_b,
                        ratios.b_minus_a,
                        ratios.c_minus_a,
                    );
                }
                Work::Busy(_) => {
                    let overhead = (ratios.c_over_a - 1.0) * 100.0;
                    let _ = writeln!(
                        out,
                        "{:<13} c/a = {:.4} → overhead {overhead:+.2} % ({}), \
                         b/a = {:.4} ({:+.2} %), c/b = {:.4}; added µs/req: b {:+.2}, c {:+.2}{lost}",
                        scenario.label(),
                        ratios.c_over_a,
                        self.work_verdict(overhead),
                        ratios.b_over_a,
                        (ratios.b_over_a - 1.0) * 100.0,
                        ratios.c_over_b,
                        ratios.b_minus_a,
                        ratios.c_minus_a,
                    );
                }
            }
            let _ = writeln!(
                out,
                "{:<13}   c/a per round: {}; pooled over rounds {:.4}; per chunk (paired) quartiles {:.4}–{:.4}",
                "",
                number_list(&ratios.c_over_a_rounds, 4),
                ratios.c_over_a_pooled,
                ratios.c_over_a_chunk_q1,
                ratios.c_over_a_chunk_q3,
            );
            if scenario.work.is_busy() {
                let overhead = ratios.c_other_overhead_percent();
                let _ = writeln!(
                    out,
                    "{:<13}   work-corrected (CPU minus the handler loop's own thread CPU time): loop a {:.2}, b {:.2}, \
                     c {:.2} µs/req; outside it a {:.2}, b {:.2}, c {:.2} µs/req; c − a outside it {:+.2} µs/req → \
                     overhead {overhead:+.3} % ({}); per round: {} µs; \
                     per chunk (paired) quartiles {:+.2} to {:+.2} µs",
                    "",
                    ratios.work_us[0],
                    ratios.work_us[1],
                    ratios.work_us[2],
                    ratios.other_us[0],
                    ratios.other_us[1],
                    ratios.other_us[2],
                    ratios.c_minus_a_other,
                    self.work_verdict(overhead),
                    number_list(&ratios.c_minus_a_other_rounds, 2),
                    ratios.c_minus_a_other_chunk_q1,
                    ratios.c_minus_a_other_chunk_q3,
                );
            }
            let (request_threads, background) = self.added_by_thread_kind(Mode::C, scenario);
            let _ = writeln!(
                out,
                "{:<13}   c − a by thread, pooled over rounds: request threads {request_threads:+.2} µs/req, \
                 background threads (exporter, sampler) {background:+.2} µs/req",
                "",
            );
        }
        let none_scenarios: Vec<Scenario> = self
            .scenarios()
            .into_iter()
            .filter(|s| s.work == Work::None)
            .collect();
        for scenario in none_scenarios {
            let _ = writeln!(
                out,
                "RSS after {} + {} warm-up requests, {}: c − a = {:+.1} MB (target ≤ {TARGET_RSS_DELTA_MB} MB: {}), b − a = {:+.1} MB",
                self.options.requests,
                self.options.warmup,
                scenario.label(),
                self.rss_delta_mb(Mode::C, scenario),
                verdict(self.rss_delta_mb(Mode::C, scenario) <= TARGET_RSS_DELTA_MB),
                self.rss_delta_mb(Mode::B, scenario),
            );
        }
        let errors: u64 = self.samples.iter().map(|s| s.errors).sum();
        let _ = writeln!(out, "load generator errors: {errors}");
        let slow: Vec<String> = self
            .samples
            .iter()
            .filter_map(|s| match s.scenario.pace {
                Pace::Rate(rate) if s.rps < rate as f64 * 0.97 => Some(format!(
                    "round {} {} {}: {:.0} req/s",
                    s.round,
                    s.scenario.label(),
                    s.mode.flag(),
                    s.rps
                )),
                _ => None,
            })
            .collect();
        if !slow.is_empty() {
            let _ = writeln!(
                out,
                "fixed-rate runs that fell more than 3 % short of the offered rate: {}",
                slow.join("; ")
            );
        }
        let bad_exits: Vec<String> = self
            .samples
            .iter()
            .filter(|s| s.exit.code != Some(0) || s.exit.timed_out)
            .map(|s| {
                format!(
                    "round {} {} {}: {} after {:.1} s",
                    s.round,
                    s.scenario.label(),
                    s.mode.flag(),
                    if s.exit.timed_out {
                        "killed, did not exit".to_owned()
                    } else {
                        format!("exit code {:?}", s.exit.code)
                    },
                    s.exit.seconds
                )
            })
            .collect();
        let slowest_exit = self
            .samples
            .iter()
            .map(|s| s.exit.seconds)
            .fold(0.0, f64::max);
        if bad_exits.is_empty() {
            let _ = writeln!(
                out,
                "server exits on SIGTERM: all 0, slowest {slowest_exit:.2} s"
            );
        } else {
            let _ = writeln!(
                out,
                "server exits on SIGTERM: PROBLEMS: {}",
                bad_exits.join("; ")
            );
        }
        let noisy_stderr: Vec<String> = self
            .samples
            .iter()
            .filter(|s| s.stderr_bytes > 0)
            .map(|s| {
                format!(
                    "round {} {} {} ({} bytes)",
                    s.round,
                    s.scenario.label(),
                    s.mode.flag(),
                    s.stderr_bytes
                )
            })
            .collect();
        if !noisy_stderr.is_empty() {
            let _ = writeln!(
                out,
                "servers wrote to stderr (see target/bench/logs/): {}",
                noisy_stderr.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "work: {} iterations calibrated to ~{} µs; (c) exports OTLP over {}{}; {}; load average before: {}, after: {}; took {:.0} s",
            self.iterations,
            self.options.work_us,
            self.options.protocol.flag(),
            if self.options.c_env.is_empty() {
                String::new()
            } else {
                format!(" with {}", self.c_env_list())
            },
            match (&self.pinning.server, &self.pinning.load) {
                (Some(server), Some(load)) =>
                    format!("server on CPU {server}, load generator and receiver on CPU {load}"),
                _ => "not pinned".to_owned(),
            },
            self.load_before,
            self.load_after,
            self.elapsed.as_secs_f64(),
        );
        out
    }

    fn json(&self) -> String {
        let mut out = String::from("{\n");
        let options = self.options;
        let _ = writeln!(
            out,
            "  \"config\": {{\"rounds\": {}, \"requests\": {}, \"rate\": {}, \"work_requests\": {}, \"warmup\": {}, \
             \"work_warmup\": {}, \"chunk\": {}, \"work_chunk\": {}, \"connections\": {}, \"simultaneous\": {}, \"work_iterations\": {}, \
             \"server_cpu\": {}, \"load_cpu\": {}, \"protocol\": \"{}\", \"work_us\": {}, \"c_env\": {}, \"load_before\": {}, \"load_after\": {}, \
             \"seconds\": {:.1}}},",
            options.rounds,
            options.requests,
            options.rate,
            options.work_requests,
            options.warmup,
            options.work_warmup,
            options.chunk,
            options.work_chunk,
            options.connections,
            options.simultaneous,
            self.iterations,
            json_option(self.pinning.server.as_deref()),
            json_option(self.pinning.load.as_deref()),
            options.protocol.flag(),
            options.work_us,
            json_str(&self.c_env_list()),
            json_str(&self.load_before),
            json_str(&self.load_after),
            self.elapsed.as_secs_f64(),
        );
        out.push_str("  \"summary\": [\n");
        for (index, s) in self.summaries.iter().enumerate() {
            let _ = write!(
                out,
                "    {{\"scenario\": \"{}\", \"mode\": \"{}\", \"cpu_us_per_request\": {:.3}, \"cpu_us_min\": {:.3}, \
                 \"cpu_us_max\": {:.3}, \"stat_cpu_us_per_request\": {:.3}, \"rps\": {:.1}, \"p99_us\": {:.0}, \
                 \"rss_mb\": {:.2}, \"spans\": {}, \"expected_spans\": {}, \"errors\": {}}}",
                s.scenario.label(),
                s.mode.flag(),
                s.cpu_us,
                s.cpu_us_min,
                s.cpu_us_max,
                s.stat_cpu_us,
                s.rps,
                s.p99_us,
                s.rss_mb,
                s.spans,
                s.expected_spans,
                s.errors,
            );
            out.push_str(if index + 1 < self.summaries.len() {
                ",\n"
            } else {
                "\n"
            });
        }
        out.push_str("  ],\n  \"comparisons\": [\n");
        let scenarios = self.scenarios();
        for (index, scenario) in scenarios.iter().enumerate() {
            let r = self.ratios(*scenario);
            let _ = write!(
                out,
                "    {{\"scenario\": \"{}\", \"c_over_a\": {:.5}, \"b_over_a\": {:.5}, \"c_over_b\": {:.5}, \
                 \"c_minus_a_us\": {:.3}, \"b_minus_a_us\": {:.3}, \"c_overhead_percent\": {:.3}, \
                 \"b_overhead_percent\": {:.3}, \"c_spans_lost_percent\": {:.3}, \"b_spans_lost_percent\": {:.3}, \
                 \"rss_c_minus_a_mb\": {:.2}, \"rss_b_minus_a_mb\": {:.2}, \"c_over_a_rounds\": [{}], \
                 \"c_over_a_pooled\": {:.5}, \"c_over_a_chunk_q1\": {:.5}, \"c_over_a_chunk_q3\": {:.5}, \
                 \"work_us\": [{}], \"other_us\": [{}], \"c_minus_a_other_us\": {:.3}, \
                 \"c_minus_a_other_rounds_us\": [{}], \"c_other_overhead_percent\": {}}}",
                scenario.label(),
                r.c_over_a,
                r.b_over_a,
                r.c_over_b,
                r.c_minus_a,
                r.b_minus_a,
                (r.c_over_a - 1.0) * 100.0,
                (r.b_over_a - 1.0) * 100.0,
                r.c_lost_percent,
                r.b_lost_percent,
                self.rss_delta_mb(Mode::C, *scenario),
                self.rss_delta_mb(Mode::B, *scenario),
                number_list(&r.c_over_a_rounds, 5),
                r.c_over_a_pooled,
                r.c_over_a_chunk_q1,
                r.c_over_a_chunk_q3,
                number_list(&r.work_us, 3),
                number_list(&r.other_us, 3),
                r.c_minus_a_other,
                number_list(&r.c_minus_a_other_rounds, 3),
                if scenario.work.is_busy() {
                    format!("{:.4}", r.c_other_overhead_percent())
                } else {
                    "null".to_owned()
                },
            );
            out.push_str(if index + 1 < scenarios.len() {
                ",\n"
            } else {
                "\n"
            });
        }
        out.push_str("  ],\n  \"samples\": [\n");
        for (index, s) in self.samples.iter().enumerate() {
            let _ = write!(
                out,
                "    {{\"round\": {}, \"scenario\": \"{}\", \"mode\": \"{}\", \"requests\": {}, \"errors\": {}, \
                 \"load_seconds\": {:.4}, \"rps\": {:.1}, \"p50_us\": {:.0}, \"p99_us\": {:.0}, \"cpu_ns\": {}, \
                 \"background_cpu_ns\": {}, \"stat_cpu_ns\": {}, \"cpu_us_per_request\": {:.3}, \"rss_kb\": {}, \"threads\": {}, \"spans\": {}, \
                 \"expected_spans\": {}, \"metrics_bytes\": {}, \"exit_code\": {}, \"exit_seconds\": {:.3}, \
                 \"exit_timed_out\": {}, \"stderr_bytes\": {}, \"chunk_cpu_us\": [{}], \"work_ns\": {}, \
                 \"chunk_other_us\": [{}]}}",
                s.round,
                s.scenario.label(),
                s.mode.flag(),
                s.requests,
                s.errors,
                s.load_seconds,
                s.rps,
                s.p50_us,
                s.p99_us,
                s.cpu_ns,
                s.background_ns,
                s.stat_cpu_ns,
                s.cpu_us_per_request(),
                s.rss_kb,
                s.threads,
                s.spans,
                s.expected_spans,
                s.metrics_bytes
                    .map_or_else(|| "null".to_owned(), |bytes| bytes.to_string()),
                s.exit
                    .code
                    .map_or_else(|| "null".to_owned(), |code| code.to_string()),
                s.exit.seconds,
                s.exit.timed_out,
                s.stderr_bytes,
                number_list(&s.chunk_cpu_us, 3),
                s.work_ns,
                number_list(&s.chunk_other_us, 3),
            );
            out.push_str(if index + 1 < self.samples.len() {
                ",\n"
            } else {
                "\n"
            });
        }
        out.push_str("  ]\n}\n");
        out
    }
}

pub(crate) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

pub(crate) fn json_str(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn json_option(value: Option<&str>) -> String {
    value.map_or_else(|| "null".to_owned(), json_str)
}

/// The number after `"key":` in a one-line JSON object written by our own binaries.
pub(crate) fn json_number(line: &str, key: &str) -> Option<f64> {
    let rest = json_value_start(line, key)?;
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The string after `"key":` in a one-line JSON object (no escapes expected).
fn json_string(line: &str, key: &str) -> Option<String> {
    let rest = json_value_start(line, key)?.strip_prefix('"')?;
    rest.split_once('"').map(|(value, _)| value.to_owned())
}

fn json_value_start<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\"");
    let at = line.find(&needle)? + needle.len();
    Some(line[at..].trim_start().strip_prefix(':')?.trim_start())
}

#[cfg(test)]
mod tests {
    use crate::bench::{
        Mode, Protocol, Work, chunk_order, chunk_sizes, json_number, json_string, median,
        parse_options, quantile,
    };

    #[test]
    fn json_fields_are_read_from_one_line_objects() {
        let line = r#"{"requests":100,"errors":0,"seconds":1.5,"rps":66.7,"grpc":"http://127.0.0.1:4317"}"#;
        assert_eq!(json_number(line, "requests"), Some(100.0));
        assert_eq!(json_number(line, "seconds"), Some(1.5));
        assert_eq!(json_number(line, "missing"), None);
        assert_eq!(
            json_string(line, "grpc").as_deref(),
            Some("http://127.0.0.1:4317")
        );
    }

    #[test]
    fn the_protocol_option_takes_the_two_otlp_protocols_and_nothing_else() {
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let default = parse_options(&[]).map(|o| o.protocol).ok();
        assert_eq!(default, Some(Protocol::Grpc));
        let http = parse_options(&args(&["--protocol", "http/protobuf", "--rounds", "2"]))
            .map(|o| (o.protocol, o.rounds))
            .ok();
        assert_eq!(http, Some((Protocol::HttpProtobuf, 2)));
        let error = parse_options(&args(&["--protocol", "http/json"]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("--protocol \"http/json\": expected grpc or http/protobuf")
        );
    }

    #[test]
    fn work_and_c_env_options_set_the_work_scenario_and_the_environment_of_c() {
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let default = parse_options(&[]).map(|o| (o.work_us, o.c_env)).ok();
        assert_eq!(default, Some((1_000, Vec::new())));
        let set = parse_options(&args(&[
            "--work-us",
            "5000",
            "--c-env",
            "OTEL_TRACES_EXPORTER=none",
            "--c-env",
            "RUST_LOG=warn,telemetry=info",
        ]))
        .map(|o| (o.work_us, o.c_env))
        .ok();
        assert_eq!(
            set,
            Some((
                5_000,
                vec![
                    ("OTEL_TRACES_EXPORTER".to_owned(), "none".to_owned()),
                    ("RUST_LOG".to_owned(), "warn,telemetry=info".to_owned()),
                ]
            ))
        );
        let error = |list: &[&str]| parse_options(&args(list)).err().map(|e| e.to_string());
        assert_eq!(
            error(&["--c-env", "OTEL_TRACES_EXPORTER"]).as_deref(),
            Some("--c-env \"OTEL_TRACES_EXPORTER\": expected NAME=VALUE")
        );
        assert_eq!(
            error(&["--c-env", "=none"]).as_deref(),
            Some("--c-env \"=none\": expected NAME=VALUE")
        );
        assert_eq!(
            error(&["--work-us", "0"]).as_deref(),
            Some("--work-us must be at least 1")
        );
    }

    #[test]
    fn work_labels_name_the_duration() {
        assert_eq!(Work::None.label(), "none");
        assert_eq!(Work::Busy(1_000).label(), "1ms");
        assert_eq!(Work::Busy(5_000).label(), "5ms");
        assert_eq!(Work::Busy(250).label(), "250us");
    }

    #[test]
    fn median_of_even_count_averages_the_middle_pair() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let values = [4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(quantile(&values, 0.0), 1.0);
        assert_eq!(quantile(&values, 0.25), 2.0);
        assert_eq!(quantile(&values, 1.0), 5.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn chunks_cover_the_requests_and_the_last_one_takes_the_rest() {
        assert_eq!(chunk_sizes(30, 10), [10, 10, 10]);
        assert_eq!(chunk_sizes(25, 10), [10, 10, 5]);
        assert_eq!(chunk_sizes(5, 10), [5]);
    }

    #[test]
    fn the_order_of_the_modes_reverses_by_chunk_and_by_round() {
        assert_eq!(chunk_order(1, 0), [Mode::A, Mode::B, Mode::C]);
        assert_eq!(chunk_order(1, 1), [Mode::C, Mode::B, Mode::A]);
        assert_eq!(chunk_order(2, 0), [Mode::C, Mode::B, Mode::A]);
    }
}
