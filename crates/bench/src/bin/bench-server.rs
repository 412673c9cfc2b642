//! `bench-server --mode a|b|c --work none|1ms [--work-iterations K] [--port P]`: the same
//! axum handler under (a) no middleware, (b) the instrumentation a Rust user assembles
//! today from upstream crates, or (c) Pathlight's `telemetry` layer.
//!
//! Prints `{"port":N,"pid":P}` as one line on stdout once listening (in mode c the
//! telemetry's JSON log lines share stdout, so readers look for the line starting with
//! `{"port"`), serves until SIGTERM, flushes telemetry and exits 0.
//! `bench-server --calibrate` prints `{"iterations":K}`: the `--work-iterations` that take
//! about 1 ms on this machine.
//!
//! (b) is what the upstream documentation leads to: a `tracing` subscriber with an
//! `EnvFilter` at `info` and `tracing-opentelemetry` over an SDK tracer provider with the
//! batch exporter (OTLP over gRPC, endpoint from `OTEL_EXPORTER_OTLP_ENDPOINT`), tower-http's
//! `TraceLayer` making INFO spans, and axum-prometheus serving `/metrics`. (c) is
//! `telemetry::init` configured by the same `OTEL_*` variables, its `http_layer` and
//! `metrics_router`.

// Stdout is this binary's interface: the port line is what the benchmark harness parses.
#![allow(clippy::print_stdout)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Serialize;
use tower_http::trace::{DefaultMakeSpan, TraceLayer};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

const USAGE: &str =
    "usage: bench-server --mode a|b|c [--work none|1ms] [--work-iterations K] [--port P]
       bench-server --calibrate";

/// The parsed command line.
#[derive(Debug)]
struct Args {
    mode: Mode,
    /// Iterations of [`bench::burn`] per request; 0 for no work.
    work_iterations: u64,
    port: u16,
}

/// Which instrumentation wraps the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No middleware.
    Bare,
    /// tower-http `TraceLayer` + tracing-opentelemetry + OTLP batch export + axum-prometheus.
    Upstream,
    /// Pathlight's `telemetry` crate.
    Pathlight,
}

/// What must be flushed once the server has stopped.
#[derive(Debug)]
enum Instrumentation {
    None,
    Upstream(SdkTracerProvider),
    // Boxed: `Telemetry` is large and this enum is built once.
    Pathlight(Box<telemetry::Telemetry>),
}

/// The handler's response body.
#[derive(Debug, Serialize)]
struct Item {
    id: u64,
    name: String,
    work: u64,
    /// CPU time of this thread in [`bench::burn`], ns (0 without work): `bench-load` sums
    /// it, so the benchmark can subtract the handler's own work from the server's CPU.
    work_ns: u64,
}

fn main() -> anyhow::Result<()> {
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        return Ok(());
    };
    // One worker, the same in every mode: the harness pins the server to one core, and the
    // CPU time of every thread of the process is what is compared.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let iterations = args.work_iterations;
    let items = Router::new().route(
        "/items/{id}",
        get(move |Path(id): Path<u64>| async move {
            let (work, work_ns) = if iterations == 0 {
                (0, 0)
            } else {
                let start = bench::thread_cpu_ns();
                let work = bench::burn(std::hint::black_box(iterations));
                (work, bench::thread_cpu_ns().saturating_sub(start))
            };
            Json(Item {
                id,
                name: format!("item-{id}"),
                work,
                work_ns,
            })
        }),
    );

    // Inside the runtime: the tonic exporter and axum-prometheus's upkeep task need its
    // context when they are built.
    let (app, instrumentation) = match args.mode {
        Mode::Bare => (items, Instrumentation::None),
        Mode::Upstream => {
            let provider = upstream_tracer_provider()?;
            let tracer = provider.tracer("bench-server");
            tracing_subscriber::registry()
                .with(tracing_subscriber::EnvFilter::new("info"))
                .with(tracing_opentelemetry::layer().with_tracer(tracer))
                .try_init()
                .context("cannot install the tracing subscriber")?;
            opentelemetry::global::set_tracer_provider(provider.clone());
            let (prometheus_layer, prometheus_handle) =
                axum_prometheus::PrometheusMetricLayer::pair();
            let app = items
                .route(
                    "/metrics",
                    get(move || async move { prometheus_handle.render() }),
                )
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO)),
                )
                .layer(prometheus_layer);
            (app, Instrumentation::Upstream(provider))
        }
        Mode::Pathlight => {
            let telemetry = telemetry::init(telemetry::service_info!())
                .context("cannot initialise telemetry")?;
            let app = items
                .merge(telemetry.metrics_router())
                .layer(telemetry.http_layer());
            (app, Instrumentation::Pathlight(Box::new(telemetry)))
        }
    };

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)))
            .await
            .context("cannot bind the listener")?;
    let port = listener.local_addr()?.port();
    println!("{{\"port\":{port},\"pid\":{}}}", std::process::id());

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            terminate.recv().await;
        })
        .await
        .context("the server failed")?;

    match instrumentation {
        Instrumentation::None => {}
        Instrumentation::Upstream(provider) => {
            provider
                .shutdown_with_timeout(Duration::from_secs(5))
                .context("cannot flush the tracer provider")?;
        }
        Instrumentation::Pathlight(telemetry) => {
            telemetry.shutdown().context("cannot flush telemetry")?;
        }
    }
    Ok(())
}

/// The tracer provider as the opentelemetry-otlp examples build it: OTLP over gRPC (the
/// endpoint comes from `OTEL_EXPORTER_OTLP_ENDPOINT`), the SDK's batch span processor.
fn upstream_tracer_provider() -> anyhow::Result<SdkTracerProvider> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .context("mode b needs OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .context("cannot build the OTLP span exporter")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("bench-server")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Parses the arguments; `None` when the command was answered already (help, calibrate).
fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
    let mut mode = None;
    let mut work = "none".to_owned();
    let mut work_iterations = None;
    let mut port = 0;
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--calibrate" => {
                let iterations = bench::calibrate(Duration::from_millis(1));
                println!("{{\"iterations\":{iterations}}}");
                return Ok(None);
            }
            _ => {}
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--mode" => {
                mode = Some(match value.as_str() {
                    "a" => Mode::Bare,
                    "b" => Mode::Upstream,
                    "c" => Mode::Pathlight,
                    _ => bail!("--mode {value:?}: expected a, b or c"),
                });
            }
            "--work" => work = value,
            "--work-iterations" => {
                work_iterations = Some(
                    value
                        .parse()
                        .with_context(|| format!("--work-iterations {value:?} is not a number"))?,
                );
            }
            "--port" => {
                port = value
                    .parse()
                    .with_context(|| format!("--port {value:?} is not a port number"))?;
            }
            _ => bail!("unknown argument {flag:?}\n{USAGE}"),
        }
    }
    let mode = mode.with_context(|| format!("--mode is required\n{USAGE}"))?;
    let work_iterations = match (work.as_str(), work_iterations) {
        ("none", _) => 0,
        // The harness passes one calibrated count to every server so the work is
        // identical across modes; calibrating here is for running the server by hand.
        ("1ms", Some(iterations)) => iterations,
        ("1ms", None) => bench::calibrate(Duration::from_millis(1)),
        _ => bail!("--work {work:?}: expected none or 1ms"),
    };
    Ok(Some(Args {
        mode,
        work_iterations,
        port,
    }))
}
