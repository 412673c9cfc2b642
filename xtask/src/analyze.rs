//! `cargo xtask analyze [options]`: the trace analyzer over a running tracker's data.
//!
//! Builds the `tracker` binary (release, as the demo does, so after `cargo xtask demo
//! --keep-running` nothing is rebuilt) and runs `tracker analyze` with the same options:
//! the stage latency breakdown, waits between stages, slowest frames, failed frames,
//! incomplete journeys and orphan spans of the newest journeys (`--limit`, default
//! 10 000). `cargo xtask analyze --help` lists the options; the analysis itself is
//! `tracker::analysis`.

use std::process::Command;

use anyhow::{Context, ensure};

/// Builds the tracker and runs `tracker analyze <args>`.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    crate::process::cargo_build(true, &["-q", "-p", "tracker", "--bin", "tracker"])?;
    let tracker = crate::bench::target_dir().join("release").join("tracker");
    let args: Vec<&str> = match args.first().map(String::as_str) {
        Some("-h" | "--help" | "help") => vec!["--help"],
        _ => std::iter::once("analyze")
            .chain(args.iter().map(String::as_str))
            .collect(),
    };
    let status = Command::new(&tracker)
        .args(&args)
        .status()
        .with_context(|| format!("cannot run {}", tracker.display()))?;
    ensure!(status.success(), "tracker analyze failed ({status})");
    Ok(())
}
