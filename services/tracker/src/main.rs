//! The `tracker` binary.
//!
//! - `tracker` or `tracker serve`: runs the service (configuration from the environment,
//!   see `tracker::config`).
//! - `tracker journey <frame-id> [--url http://127.0.0.1:8081]`: prints a frame's journey
//!   as an ASCII waterfall.
//! - `tracker analyze [--url ..] [filters] [--expect ..] [--top N] [--json] [--save FILE]`:
//!   the trace analyzer over a running tracker's journeys (see `tracker::analysis`).

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use frame_tracking::FrameId;
use service_kit::env::Env;
use tracker::analysis::Expectation;
use tracker::app::App;
use tracker::client::TrackerClient;
use tracker::config::{Config, telemetry_config};

const USAGE: &str = "\
usage: tracker [serve]
       tracker journey <frame-id> [--url http://127.0.0.1:8081]
       tracker analyze [--url http://127.0.0.1:8081] [options]

serve     run the service (the default); configured by environment variables
journey   print a frame's journey as a waterfall, fetched from a running tracker
analyze   analyse the newest journeys of a running tracker: stage latency breakdown,
          waits between stages, slowest frames, failed frames, incomplete journeys,
          orphan spans

analyze options:
  --camera ID         only this camera's frames
  --status ok|failed  only frames with this status
  --since T, --until T
                      first seen in [since, until): RFC 3339 or Unix milliseconds
  --last DURATION     first seen in the last DURATION (e.g. 15m, 2h)
  --limit N           analyse at most the N newest frames (default 10000)
  --expect S1,S2,..   the stages of a complete journey (default: those most journeys have)
  --top N             entries per list: slowest, failed, incomplete, orphans (default 10)
  --json              print the report as JSON instead of text
  --save FILE         also write the report as JSON to FILE";

/// `tracker analyze` reads at most this many frames unless `--limit` says otherwise.
const DEFAULT_ANALYZE_LIMIT: usize = 10_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    service_kit::serve::main(|| async move {
        match args.first().map(String::as_str) {
            None | Some("serve") if args.len() <= 1 => serve().await,
            Some("journey") => journey(&args[1..]).await,
            Some("analyze") => analyze(&args[1..]).await,
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

async fn analyze(args: &[String]) -> anyhow::Result<()> {
    let mut url = "http://127.0.0.1:8081".to_owned();
    let mut filters: Vec<(&str, String)> = Vec::new();
    let mut limit = DEFAULT_ANALYZE_LIMIT;
    let mut expectation = Expectation::Inferred;
    let mut top = 10;
    let mut json = false;
    let mut save = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            match &inline {
                Some(value) => Ok(value.clone()),
                None => rest
                    .next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value\n{USAGE}")),
            }
        };
        match flag {
            "--url" => url = value()?,
            "--camera" => filters.push(("camera", value()?)),
            "--status" => filters.push(("status", value()?)),
            "--since" => filters.push(("since", value()?)),
            "--until" => filters.push(("until", value()?)),
            "--last" => {
                let text = value()?;
                let window = service_kit::env::parse_duration(&text).with_context(|| {
                    format!("invalid --last {text:?}: expected a duration such as 15m or 2h")
                })?;
                let since = std::time::SystemTime::now()
                    .checked_sub(window)
                    .and_then(|since| since.duration_since(std::time::UNIX_EPOCH).ok())
                    .with_context(|| format!("--last {text:?} reaches before 1970"))?;
                filters.push(("since", since.as_millis().to_string()));
            }
            "--limit" => {
                let text = value()?;
                limit = text
                    .parse()
                    .ok()
                    .filter(|limit| *limit > 0)
                    .with_context(|| format!("invalid --limit {text:?}: expected a number > 0"))?;
            }
            "--expect" => {
                let stages: Vec<String> = value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|stage| !stage.is_empty())
                    .map(str::to_owned)
                    .collect();
                if stages.is_empty() {
                    bail!("--expect needs stage names separated by commas");
                }
                expectation = Expectation::Stages(stages);
            }
            "--top" => {
                let text = value()?;
                top = text
                    .parse()
                    .with_context(|| format!("invalid --top {text:?}: expected a number"))?;
            }
            "--json" if inline.is_none() => json = true,
            "--save" => save = Some(value()?),
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    let client = TrackerClient::new(&url)?;
    let frames = client.frames(&filters, limit).await?;
    let ids: Vec<FrameId> = frames.into_iter().map(|frame| frame.frame_id).collect();
    let journeys = client.journeys(&ids).await?;
    let report = tracker::analysis::analyze(&journeys, &expectation, top);
    let report_json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = save {
        std::fs::write(&path, format!("{report_json}\n"))
            .with_context(|| format!("cannot write the report to {path}"))?;
    }
    if json {
        write_stdout(&format!("{report_json}\n"))
    } else {
        write_stdout(&report.render())
    }
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
