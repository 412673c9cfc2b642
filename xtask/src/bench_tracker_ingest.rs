//! `cargo xtask bench tracker-ingest [--events N] [--spans S] [--connections C] [--rounds R]`:
//! the tracker's durable ingest throughput through `POST /v1/traces`.
//!
//! Builds `tracker` and `tracker-load` in release, then `--rounds` times, for gzip off and
//! on (alternating, so that a noisy stretch hits both): starts a fresh tracker on SQLite (a new `DATA_DIR` under `target/bench/`, `synchronous=FULL`, so
//! every 200 answer is committed to disk), lets `tracker-load` send realistic export
//! requests (10 spans per frame, ~8 attributes per span, 512 spans per request as a
//! batch span processor sends them) over concurrent connections, and reports events per
//! second, request latency, the tracker's CPU time per event (from `/proc/<pid>/stat`)
//! and the load client's (which it reports itself), and the machine's 1-minute load
//! average before and after each run. Load generator and tracker share the machine's
//! CPUs; nothing is pinned. With several rounds the median of each mode is printed too.
//! Results are printed and written to `target/bench/tracker-ingest.json`; the tracker's
//! stderr goes to `target/bench/logs/`.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::project_root;

const USAGE: &str = "\
usage: cargo xtask bench tracker-ingest [options]

Options:
  --events N       events per measurement (default 200000)
  --spans S        spans per export request (default 512)
  --connections C  concurrent connections of the load client (default 8)
  --rounds R       measurements per mode, alternating plain and gzip (default 3)";

/// The target from the issue, printed next to the measurement.
const TARGET_EVENTS_PER_SECOND: f64 = 100_000.0;

/// Events `tracker-load` sends before its measurement (fills caches, grows the WAL).
const WARMUP_EVENTS: u64 = 20_000;

#[derive(Debug)]
struct Options {
    events: u64,
    spans: u64,
    connections: u64,
    rounds: u64,
}

#[derive(Debug)]
struct Sample {
    gzip: bool,
    events: f64,
    seconds: f64,
    events_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    request_bytes: f64,
    cpu_seconds: f64,
    client_cpu_seconds: f64,
    /// The 1-minute load average before and after the run.
    load: (f64, f64),
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let options = parse(args)?;
    let root = project_root();
    crate::process::cargo_build(
        true,
        &["-p", "tracker", "--bin", "tracker", "--bin", "tracker-load"],
    )?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bench_dir = root.join("target/bench");
    fs::create_dir_all(bench_dir.join("logs"))?;
    let tracker = target.join("release/tracker");
    let load = target.join("release/tracker-load");
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "tracker ingest: {} events per run, {} spans per request, {} connections, {cpus} CPUs, SQLite",
        options.events, options.spans, options.connections
    );
    let mut samples = Vec::new();
    for round in 0..options.rounds {
        for gzip in [false, true] {
            let sample = measure(&tracker, &load, &bench_dir, &options, gzip)?;
            println!(
                "  round {} gzip {:<3} {:>9.0} events/s  p50 {:>6.1} ms  p99 {:>6.1} ms  CPU/event: tracker {:>5.2} us, client {:>5.2} us  {:>7.0} B/request  load {:.2} -> {:.2}",
                round + 1,
                if gzip { "on" } else { "off" },
                sample.events_per_second,
                sample.p50_ms,
                sample.p99_ms,
                sample.cpu_seconds * 1e6 / sample.events,
                sample.client_cpu_seconds * 1e6 / sample.events,
                sample.request_bytes,
                sample.load.0,
                sample.load.1,
            );
            samples.push(sample);
        }
    }
    for gzip in [false, true] {
        let mut rates: Vec<f64> = samples
            .iter()
            .filter(|sample| sample.gzip == gzip)
            .map(|sample| sample.events_per_second)
            .collect();
        rates.sort_by(f64::total_cmp);
        if let (Some(low), Some(high)) = (rates.first(), rates.last()) {
            println!(
                "  gzip {:<3} median {:>9.0} events/s (min {:.0}, max {:.0}, {} runs)",
                if gzip { "on" } else { "off" },
                rates[rates.len() / 2],
                low,
                high,
                rates.len()
            );
        }
    }
    println!("  target: >= {TARGET_EVENTS_PER_SECOND:.0} events/s");
    let json = report(&options, cpus, &samples);
    let path = bench_dir.join("tracker-ingest.json");
    fs::write(&path, json)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        events: 200_000,
        spans: 512,
        connections: 8,
        rounds: 3,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            bail!("{USAGE}");
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number: u64 = value
            .parse()
            .with_context(|| format!("{flag} {value:?} is not a number"))?;
        match flag.as_str() {
            "--events" => options.events = number,
            "--spans" => options.spans = number,
            "--connections" => options.connections = number,
            "--rounds" => options.rounds = number,
            _ => bail!("unknown option {flag:?}\n{USAGE}"),
        }
    }
    ensure!(
        options.events > 0 && options.connections > 0 && options.rounds > 0,
        "--events, --connections and --rounds must be positive"
    );
    ensure!(
        options.spans >= 10,
        "--spans must be at least 10 (one frame)"
    );
    Ok(options)
}

fn measure(
    tracker: &Path,
    load: &Path,
    bench_dir: &Path,
    options: &Options,
    gzip: bool,
) -> anyhow::Result<Sample> {
    let name = if gzip { "gzip" } else { "plain" };
    let data_dir = bench_dir.join(format!("tracker-ingest-data-{name}"));
    let _ = fs::remove_dir_all(&data_dir);
    fs::create_dir_all(&data_dir)?;
    let mut server = Command::new(tracker)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORT", "0")
        .env("OTLP_GRPC_PORT", "0")
        .env("DATA_DIR", &data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the tracker")?;
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let pipe = server.stderr.take().context("no stderr")?;
    let pump = {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        })
    };
    let result = (|| {
        let url = wait_for_url(&mut server, &lines)?;
        let load_before = load_average();
        let cpu_before = cpu_seconds(server.id())?;
        let started = Instant::now();
        let mut command = Command::new(load);
        command.args([
            "--url",
            &url,
            "--events",
            &options.events.to_string(),
            "--spans",
            &options.spans.to_string(),
            "--connections",
            &options.connections.to_string(),
            "--warmup",
            &WARMUP_EVENTS.to_string(),
        ]);
        if gzip {
            command.arg("--gzip");
        }
        let output = command.output().context("cannot run tracker-load")?;
        let cpu_total = cpu_seconds(server.id())? - cpu_before;
        ensure!(
            output.status.success(),
            "tracker-load failed after {:?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let field = |name: &str| {
            number_field(&stdout, name).with_context(|| format!("no {name} in {stdout:?}"))
        };
        let seconds = field("seconds")?;
        let events = field("events")?;
        Ok(Sample {
            gzip,
            events,
            seconds,
            events_per_second: field("events_per_second")?,
            p50_ms: field("p50_ms")?,
            p99_ms: field("p99_ms")?,
            request_bytes: field("request_bytes")?,
            // CPU covers the warm-up too: count it per event over everything sent.
            cpu_seconds: cpu_total * events / (events + WARMUP_EVENTS as f64),
            // The client measures its own, over the measured requests only.
            client_cpu_seconds: field("client_cpu_seconds")?,
            load: (load_before, load_average()),
        })
    })();
    stop(&mut server);
    let _ = pump.join();
    let log = lines
        .lock()
        .map(|lines| lines.join("\n"))
        .unwrap_or_default();
    fs::write(
        bench_dir.join(format!("logs/tracker-ingest-{name}.log")),
        log,
    )?;
    let _ = fs::remove_dir_all(&data_dir);
    result
}

fn wait_for_url(server: &mut Child, lines: &Mutex<Vec<String>>) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = lines.lock().ok().and_then(|lines| {
            lines.iter().find_map(|line| {
                let rest = line.strip_prefix("tracker listening on ")?;
                Some(rest.split_once(' ')?.0.to_owned())
            })
        });
        if let Some(url) = found {
            return Ok(url);
        }
        if let Some(status) = server.try_wait()? {
            bail!("the tracker exited with {status} before listening");
        }
        ensure!(
            Instant::now() < deadline,
            "the tracker did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then SIGKILL if it does not exit within 10 s.
fn stop(server: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// User + system CPU time of a process, from `/proc/<pid>/stat` (clock ticks of 10 ms).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(index)
            .context("short /proc stat")?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// The 1-minute load average (0 where `/proc/loadavg` is missing).
fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or_default()
}

/// A number field of a flat JSON object.
fn number_field(json: &str, name: &str) -> Option<f64> {
    let key = format!("\"{name}\":");
    let start = json.find(&key)? + key.len();
    let rest = json[start..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn report(options: &Options, cpus: usize, samples: &[Sample]) -> String {
    let mut json = String::new();
    let _ = write!(
        json,
        "{{\n  \"benchmark\": \"tracker-ingest\",\n  \"backend\": \"sqlite\",\n  \"cpus\": {cpus},\n  \
         \"events\": {},\n  \"spans_per_request\": {},\n  \"connections\": {},\n  \
         \"rounds\": {},\n  \"target_events_per_second\": {TARGET_EVENTS_PER_SECOND},\n  \"results\": [",
        options.events, options.spans, options.connections, options.rounds
    );
    for (index, sample) in samples.iter().enumerate() {
        let _ = write!(
            json,
            "{}\n    {{\"gzip\": {}, \"events\": {}, \"seconds\": {:.3}, \"events_per_second\": {:.0}, \
             \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"request_bytes\": {:.0}, \
             \"tracker_cpu_us_per_event\": {:.3}, \"client_cpu_us_per_event\": {:.3}, \
             \"load_average_1m\": [{:.2}, {:.2}]}}",
            if index == 0 { "" } else { "," },
            sample.gzip,
            sample.events,
            sample.seconds,
            sample.events_per_second,
            sample.p50_ms,
            sample.p99_ms,
            sample.request_bytes,
            sample.cpu_seconds * 1e6 / sample.events,
            sample.client_cpu_seconds * 1e6 / sample.events,
            sample.load.0,
            sample.load.1,
        );
    }
    json.push_str("\n  ]\n}\n");
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_fields_are_read_from_flat_json() {
        let json = r#"{"events":5120,"events_per_second":123456.7,"p50_ms":1.5e0}"#;
        assert_eq!(number_field(json, "events"), Some(5120.0));
        assert_eq!(number_field(json, "events_per_second"), Some(123_456.7));
        assert_eq!(number_field(json, "p50_ms"), Some(1.5));
        assert_eq!(number_field(json, "missing"), None);
    }
}
