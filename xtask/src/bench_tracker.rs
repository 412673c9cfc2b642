//! `cargo xtask bench tracker [--events N] [--backend sqlite|postgres|both] [...]`: the
//! journey store's load and lookup benchmark.
//!
//! Builds `tracker-bench` (crate `tracker`) in release mode and runs it with
//! `--events 10000000` unless told otherwise; every other argument is passed through (see
//! `tracker-bench --help`). It loads the events into a fresh SQLite file and a fresh
//! PostgreSQL database (created on the server at `DATABASE_URL`, dropped afterwards),
//! measures journey lookups by frame id (p50/p99/max over 10 000 random existing frames,
//! plus unknown ids, summaries and a camera search), prints a table and writes
//! `target/bench/tracker.json`. PostgreSQL must be reachable when it is benchmarked: the
//! task checks first and names the variable when it is not.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, ensure};

use crate::project_root;

/// Events loaded when `--events` is not given.
const DEFAULT_EVENTS: &str = "10000000";

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let root = project_root();
    let mut args = args.to_vec();
    if !args.iter().any(|arg| arg == "--events") {
        args.extend(["--events".to_owned(), DEFAULT_EVENTS.to_owned()]);
    }
    let backend = args
        .iter()
        .position(|arg| arg == "--backend")
        .and_then(|index| args.get(index + 1))
        .map_or("both", String::as_str);
    if backend != "sqlite" && !args.iter().any(|arg| arg == "--database-url") {
        testkit::check_reachable(
            testkit::POSTGRES.name(),
            testkit::POSTGRES.var(),
            &testkit::POSTGRES.url(),
        )
        .map_err(anyhow::Error::msg)?;
    }

    crate::process::cargo_build(true, &["-p", "tracker", "--bin", "tracker-bench"])?;

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_relative() {
                root.join(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("release").join("tracker-bench");
    println!("$ {} {}", binary.display(), args.join(" "));
    let status = Command::new(&binary)
        .args(&args)
        .env("DATABASE_URL", testkit::POSTGRES.url())
        .current_dir(&root)
        .status()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    ensure!(status.success(), "tracker-bench failed ({status})");
    Ok(())
}
