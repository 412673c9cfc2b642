//! `cargo xtask test [cargo test args]`: everything CI checks, in CI's order.
//!
//! Steps: `cargo fmt --check` (in CI only), clippy with `-D warnings`, the codegen
//! staleness check, provisioning of the test servers, `cargo test` with their URLs in the
//! environment, then (without extra arguments) the end-to-end runs of the vision pipeline
//! (`cargo xtask demo --debug --seconds 40 --min-processed 300`, over HTTP and over Redis
//! Streams). Each step prints a header and its duration; the first failing step stops the
//! run and is named in the error. In CI (`CI=true` or `CI=1`) cargo also gets
//! `--locked`.

use std::ffi::OsStr;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{codegen, is_ci, project_root, provision};

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let ci = is_ci();
    let locked: &[&str] = if ci { &["--locked"] } else { &[] };
    let started = Instant::now();
    let mut steps = Steps { count: 0 };

    if ci {
        steps.run("fmt", || cargo(["fmt", "--all", "--", "--check"], &[]))?;
    }
    steps.run("clippy", || {
        let clippy_args = ["clippy", "--workspace", "--all-targets"]
            .iter()
            .chain(locked)
            .chain(&["--", "-D", "warnings"]);
        cargo(clippy_args, &[])
    })?;
    steps.run("codegen --check", || codegen::run(&["--check".to_owned()]))?;
    let provisioned = steps.run("provision", || Ok(provision::provision_all()))?;
    steps.run("test", || {
        // `--workspace` would override a `-p` selection, so it is only the default.
        let selects_packages = args
            .iter()
            .take_while(|arg| *arg != "--")
            .any(|arg| arg.starts_with("-p") || arg.starts_with("--package"));
        let workspace: &[&str] = if selects_packages {
            &[]
        } else {
            &["--workspace"]
        };
        let test_args = ["test"]
            .iter()
            .chain(workspace)
            .chain(locked)
            .map(|arg| (*arg).to_owned())
            .chain(args.iter().cloned());
        cargo(test_args, &provisioned.env)
    })?;
    if args.is_empty() {
        // The seed's success metrics, on the real binaries: 300+ frames through the three
        // services, once over HTTP and once over Redis Streams; every processed frame has
        // a complete journey in the tracker, one trace, no orphan span, no span without
        // frame.id, and every /metrics passes promtool (see `demo.rs`). 40 s at 3 cameras
        // x 5 fps offers 600 frames: a busy machine skips capture ticks (a debug build at
        // load 7 captured 242 in 20 s), and 300 must still get through.
        let e2e = |extra: &[&str]| {
            let demo_args: Vec<String> = ["--debug", "--seconds", "40", "--min-processed", "300"]
                .iter()
                .chain(extra)
                .map(|arg| (*arg).to_owned())
                .collect();
            crate::demo::run(&demo_args)
        };
        steps.run("end-to-end over HTTP", || e2e(&[]))?;
        let redis_url = provisioned
            .env
            .iter()
            .find(|(var, _)| var == "REDIS_URL")
            .map(|(_, url)| url.clone())
            .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
        steps.run("end-to-end over Redis Streams", || {
            e2e(&["--redis", &redis_url])
        })?;
    }

    println!(
        "\nxtask test: all {} steps passed in {:.1}s",
        steps.count,
        started.elapsed().as_secs_f64()
    );
    if !provisioned.unavailable.is_empty() {
        // The tests passed although something was missing: say so again at the end,
        // where it is seen.
        println!("xtask test: note, these were not available:");
        for line in &provisioned.unavailable {
            println!("  {line}");
        }
    }
    Ok(())
}

/// Numbers, announces and times the steps.
#[derive(Debug)]
struct Steps {
    count: usize,
}

impl Steps {
    fn run<T>(
        &mut self,
        name: &str,
        step: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.count += 1;
        println!("\n==> [{}] {name}", self.count);
        let started = Instant::now();
        let result = step();
        let seconds = started.elapsed().as_secs_f64();
        match &result {
            Ok(_) => println!("<== [{}] {name}: ok in {seconds:.1}s", self.count),
            Err(_) => println!("<== [{}] {name}: FAILED after {seconds:.1}s", self.count),
        }
        result.with_context(|| format!("step `{name}` failed"))
    }
}

/// Runs cargo (the one that runs us) in the workspace root with extra variables.
fn cargo<I>(args: I, env: &[(String, String)]) -> anyhow::Result<()>
where
    I: IntoIterator,
    I::Item: AsRef<OsStr>,
{
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(args).current_dir(project_root());
    for (var, value) in env {
        command.env(var, value);
    }
    let shown = format!(
        "cargo {}",
        command
            .get_args()
            .map(|arg| arg.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("cannot run `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` exited with {status}");
    }
    Ok(())
}
