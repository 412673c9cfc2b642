//! Pathlight's project tasks, run as `cargo xtask <subcommand>` (see `cargo xtask help`).
//!
//! One binary, one module per task, few dependencies: arguments are parsed by hand and
//! paths derive from this crate's manifest directory, so the tasks work from any current
//! directory.

// Printing progress and results to stdout is what a task runner is for; the workspace
// warns on `print_stdout` to keep services logging through `tracing`, which does not apply
// here.
#![allow(clippy::print_stdout)]

mod analyze;
mod bench;
mod bench_pipeline;
mod bench_tracker;
mod bench_tracker_ingest;
mod bench_tracking;
mod codegen;
mod demo;
mod demo_telemetry;
mod process;
mod provision;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;

const HELP: &str = "\
Pathlight's project tasks.

Usage: cargo xtask <subcommand> [args]

Subcommands:
  test [cargo test args]   fmt check (when CI is set), clippy, codegen --check, start the
                           test servers (Redis, PostgreSQL, RabbitMQ, promtool), then
                           `cargo test --workspace`; e.g. `cargo xtask test -p telemetry`
  bench <name> [args]      run a named benchmark: middleware, tracker, tracker-ingest,
                           tracking; `bench tracker`: store load + journey lookups
                           `bench pipeline`: frame-processor with telemetry on vs off
  demo [args]              run the services together on this machine
  analyze [args]           the trace analyzer over a running tracker (default
                           http://127.0.0.1:8081): stage latency, waits, slowest, failed
                           and incomplete journeys, orphan spans; `analyze --help`
  codegen [--check]        regenerate the generated files, or check they are up to date
  help                     print this help

Environment:
  CI=true|1                also check formatting and pass --locked to cargo
  REDIS_URL, DATABASE_URL, AMQP_URL, PROMTOOL
                           use these instead of provisioning local servers/tools
";

fn main() -> ExitCode {
    // Errors are printed here, as one line with their causes, rather than by returning
    // them: the default report adds a backtrace whenever `RUST_BACKTRACE` is set, which
    // buries the message of a failed step.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((subcommand, rest)) = args.split_first() else {
        print!("{HELP}");
        bail!("no subcommand given");
    };
    match subcommand.as_str() {
        "test" => test::run(rest),
        "bench" => bench::run(rest),
        "demo" => demo::run(rest),
        "analyze" => analyze::run(rest),
        "codegen" => codegen::run(rest),
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown subcommand `{other}`; run `cargo xtask help`"),
    }
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a subdirectory of the workspace")
        .to_path_buf()
}

/// Whether we run in CI: `CI` is `true` (any case) or `1`.
pub(crate) fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}
