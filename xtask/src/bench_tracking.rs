//! `cargo xtask bench tracking [--messages N] [--rounds R]`: the frame-tracking
//! benchmark. Builds `frame-tracking-bench` and `otlp-sink` in release mode, starts the
//! sink (counting only), runs the benchmark with its spans exported to the sink over OTLP
//! gRPC, and leaves the table on stdout and the results in `target/bench/tracking.json`.
//!
//! What is measured, and how, is described in
//! `crates/frame-tracking/src/bin/frame-tracking-bench.rs`. Needs Redis (`REDIS_URL`, or
//! the local default).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};

use crate::project_root;

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let root = project_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out_dir = target.join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let redis_url = testkit::redis_url();
    if let Err(message) = testkit::check_reachable("Redis", "REDIS_URL", &redis_url) {
        bail!("{message}");
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = [
        "build",
        "--release",
        "-p",
        "frame-tracking",
        "--bin",
        "frame-tracking-bench",
        "-p",
        "otlp-sink",
        "--bin",
        "otlp-sink",
    ];
    println!("$ cargo {}", build.join(" "));
    let status = Command::new(cargo)
        .args(build)
        .current_dir(&root)
        .status()
        .context("cannot run cargo build")?;
    ensure!(status.success(), "cargo build failed ({status})");

    let release = target.join("release");
    let mut sink = Command::new(release.join("otlp-sink"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start otlp-sink")?;
    let mut sink_out = BufReader::new(sink.stdout.take().context("otlp-sink has no stdout")?);
    let mut line = String::new();
    sink_out
        .read_line(&mut line)
        .context("cannot read otlp-sink's address line")?;
    let endpoint = line
        .split("\"grpc\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned);
    let Some(endpoint) = endpoint else {
        let _ = sink.kill();
        let _ = sink.wait();
        bail!("otlp-sink printed no gRPC endpoint: {line:?}");
    };

    let out = out_dir.join("tracking.json");
    let status = Command::new(release.join("frame-tracking-bench"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("REDIS_URL", &redis_url)
        .env("OTEL_SERVICE_NAME", "frame-tracking-bench")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_LOGS_EXPORTER", "none")
        .env("OTEL_METRICS_EXPORTER", "none")
        // The queue spans are INFO spans: a stricter filter would drop them, and with them
        // everything propagation costs.
        .env("RUST_LOG", "info")
        .status()
        .context("cannot run frame-tracking-bench");

    let stopped = Command::new("kill")
        .args(["-TERM", &sink.id().to_string()])
        .status();
    let mut counts = String::new();
    while counts.is_empty() || !counts.contains("spans") {
        counts.clear();
        if sink_out.read_line(&mut counts).unwrap_or(0) == 0 {
            break;
        }
    }
    let _ = sink.wait();
    let status = status?;
    ensure!(status.success(), "frame-tracking-bench failed ({status})");
    ensure!(
        stopped.is_ok_and(|status| status.success()),
        "cannot stop otlp-sink"
    );
    println!("otlp-sink received: {}", counts.trim());
    println!("results: {}", out.display());
    Ok(())
}
