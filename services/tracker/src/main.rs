//! The `tracker` binary.
//!
//! - `tracker` or `tracker serve`: runs the service (configuration from the environment,
//!   see `tracker::config`).
//! - `tracker journey <frame-id> [--url http://127.0.0.1:8081]`: prints a frame's journey
//!   as an ASCII waterfall.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use frame_tracking::FrameId;
use service_kit::env::Env;
use tracker::app::App;
use tracker::config::{Config, telemetry_config};

const USAGE: &str = "\
usage: tracker [serve]
       tracker journey <frame-id> [--url http://127.0.0.1:8081]

serve     run the service (the default); configured by environment variables
journey   print a frame's journey as a waterfall, fetched from a running tracker";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    service_kit::serve::main(|| async move {
        match args.first().map(String::as_str) {
            None | Some("serve") if args.len() <= 1 => serve().await,
            Some("journey") => journey(&args[1..]).await,
            Some("-h" | "--help" | "help") => {
                write_stdout(&format!("{USAGE}\n"))?;
                Ok(())
            }
            _ => bail!("unexpected arguments {args:?}\n{USAGE}"),
        }
    })
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env(&Env::from_process())?;
    let telemetry = telemetry::Telemetry::start(
        telemetry::service_info!(catalogs: [&tracker::metrics::CATALOG]),
        telemetry_config()?,
        telemetry::Globals::Install,
    )?;
    let app = App::build(config, &telemetry)
        .await
        .context("cannot start the tracker")?;
    tracing::info!(port = app.port(), grpc_port = app.grpc_port(), "listening");
    // One plain line for scripts and tests that start the binary on port 0.
    eprintln!(
        "tracker listening on {} (OTLP/gRPC on {})",
        app.url(),
        app.grpc_url()
    );
    app.run_until_stopped(service_kit::serve::shutdown_signal())
        .await?;
    telemetry.shutdown()?;
    Ok(())
}

async fn journey(args: &[String]) -> anyhow::Result<()> {
    let mut frame_id = None;
    let mut url = "http://127.0.0.1:8081".to_owned();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--url" => url = rest.next().context("--url needs a value")?.clone(),
            other if other.starts_with("--url=") => url = other["--url=".len()..].to_owned(),
            other if frame_id.is_none() && !other.starts_with('-') => {
                frame_id = Some(
                    other
                        .parse::<FrameId>()
                        .with_context(|| format!("invalid frame id {other:?}"))?,
                );
            }
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    let frame_id = frame_id.with_context(|| format!("name a frame id\n{USAGE}"))?;
    let journey = tracker::client::fetch_journey(&url, &frame_id).await?;
    write_stdout(&tracker::waterfall::render(&journey))
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
