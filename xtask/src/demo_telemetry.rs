//! `cargo xtask demo telemetry`: two instrumented example services (A calls B) exporting to a local
//! OTLP receiver; sends them traffic and prints what was exported.
//!
//! Needs nothing but Rust: no collector, no Jaeger. Everything it prints was read back
//! from the receiver, the services' `/metrics` and their log lines.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::{Spawned, http_get};

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let requests: usize = match args {
        [] => 200,
        [flag, n] if flag == "--requests" => n.parse().context("--requests takes a number")?,
        _ => bail!("usage: cargo xtask demo telemetry [--requests N]"),
    };
    let root = crate::project_root();
    println!("building the example service and the OTLP receiver...");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .current_dir(&root)
        .args([
            "build",
            "-q",
            "-p",
            "telemetry",
            "-p",
            "otlp-sink",
            "--bins",
        ])
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let bin = root.join("target/debug");

    let mut sink = Spawned::start(
        Command::new(bin.join("otlp-sink")).arg("--report"),
        "otlp-sink",
        None,
    )?;
    let endpoints = sink.stdout_line(Duration::from_secs(10))?;
    let grpc = json_string(&endpoints, "grpc").context("otlp-sink printed no gRPC endpoint")?;
    println!("OTLP receiver on {grpc} (gRPC)");

    let service = |name: &str, downstream: Option<&str>| -> anyhow::Result<(Spawned, u16)> {
        let mut command = Command::new(bin.join("telemetry-example"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("OTEL_SERVICE_NAME", name)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &grpc)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .env("OTEL_LOGS_EXPORTER", "console,otlp")
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env("RUST_LOG", "info");
        if let Some(url) = downstream {
            command.env("DOWNSTREAM_URL", url);
        }
        let mut spawned = Spawned::start(&mut command, name, None)?;
        let port = spawned.port(Duration::from_secs(20))?;
        println!("{name} listening on http://127.0.0.1:{port}");
        Ok((spawned, port))
    };
    let (b, b_port) = service("service-b", None)?;
    let (a, a_port) = service("service-a", Some(&format!("http://127.0.0.1:{b_port}")))?;

    println!("\nsending {requests} requests to service-a...");
    let started = Instant::now();
    let mut statuses = std::collections::BTreeMap::<(String, u16), usize>::new();
    for i in 0..requests {
        let path = match i % 10 {
            0 => "/chain".to_owned(),
            1 => "/fail".to_owned(),
            2 => format!("/no/such/page/{i}?token=secret"),
            _ => format!("/items/{i}"),
        };
        let (status, _) = http_get(&format!("http://127.0.0.1:{a_port}{path}"))?;
        let route = path.split('/').nth(1).unwrap_or_default().to_owned();
        *statuses.entry((route, status)).or_default() += 1;
    }
    println!(
        "done in {:.2} s; responses by first path segment and status:",
        started.elapsed().as_secs_f64()
    );
    for ((route, status), count) in &statuses {
        println!("  /{route:<10} {status}  x{count}");
    }

    // Let the batch processors export before reading metrics.
    std::thread::sleep(Duration::from_millis(600));
    let (_, metrics) = http_get(&format!("http://127.0.0.1:{a_port}/metrics"))?;
    println!("\nservice-a /metrics (excerpt, http://127.0.0.1:{a_port}/metrics):");
    for line in metrics.lines().filter(|l| {
        l.starts_with("http_server_request_duration_seconds_count")
            || l.starts_with("http_server_errors_total")
            || l.starts_with("http_client_request_duration_seconds_count")
            || l.starts_with("telemetry_spans_")
            || l.starts_with("process_resident_memory_bytes")
            || l.starts_with("build_info")
    }) {
        println!("  {line}");
    }

    let a_logs = a.stop()?;
    let b_logs = b.stop()?;
    println!("\nservice-a log lines correlated with traces (JSON on stdout):");
    for line in a_logs.iter().filter(|l| l.contains("\"trace_id\"")).take(3) {
        println!("  {line}");
    }
    let correlated = a_logs
        .iter()
        .chain(&b_logs)
        .filter(|l| l.contains("\"trace_id\""))
        .count();
    println!(
        "  ({correlated} of {} log lines carry trace_id/span_id)",
        a_logs.len() + b_logs.len()
    );

    let report = sink.stop()?;
    println!("\nwhat the OTLP receiver got:");
    for line in &report {
        println!("  {line}");
    }
    let secret_leaked = report
        .iter()
        .chain(&a_logs)
        .any(|l| l.contains("token=secret"));
    if secret_leaked {
        bail!("a query string reached the exported telemetry");
    }
    println!(
        "\nno query string or credential reached spans or logs; all processes exited cleanly."
    );
    Ok(())
}

/// The string value of `"key":"value"` in a one-line JSON object.
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_owned())
}
