//! Provisioning of what the integration tests need: Redis, PostgreSQL, RabbitMQ and
//! `promtool`.
//!
//! For each server: the URL variable when set (checked for TCP reachability only), else
//! the local default when its port answers, else the system binary is started (and, as
//! root, its Debian package installed first). `promtool` comes from `PROMTOOL`, `PATH`, or
//! the Debian `prometheus` package. Whatever stays unavailable is reported loudly and the
//! run goes on: the tests that need it then fail naming it, they never pass silently.
//!
//! The checks run in parallel, so the usual case (everything already running) takes a
//! few milliseconds. Variable names and default URLs come from `testkit`, which the tests
//! use to read them back.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use testkit::Server;

use crate::project_root;

/// What the tests get: variables to set and what could not be provided.
#[derive(Debug)]
pub(crate) struct Provisioned {
    /// Variables for the test processes, e.g. `("REDIS_URL", "redis://127.0.0.1:6379")`.
    /// Servers that are down still get their URL, so their tests fail naming it; a
    /// missing `promtool` gets no `PROMTOOL`.
    pub(crate) env: Vec<(String, String)>,
    /// One line per server or tool that is not available, naming it and its variable.
    pub(crate) unavailable: Vec<String>,
}

/// Makes every server and tool available as far as this machine allows and prints one
/// line per item (plus a loud warning per missing one).
pub(crate) fn provision_all() -> Provisioned {
    let reports: Vec<Report> = thread::scope(|scope| {
        let servers: Vec<_> = DAEMONS
            .iter()
            .map(|daemon| scope.spawn(move || provision_server(daemon)))
            .collect();
        let promtool = scope.spawn(provision_promtool);
        servers
            .into_iter()
            .chain([promtool])
            .map(|handle| handle.join().expect("provisioning threads do not panic"))
            .collect()
    });

    let mut provisioned = Provisioned {
        env: Vec::new(),
        unavailable: Vec::new(),
    };
    for report in reports {
        match &report.status {
            Ok(how) => println!(
                "provision: {:<10} {} ({how})",
                report.name,
                testkit::redact_password(report.value.as_deref().unwrap_or_default())
            ),
            Err(reason) => {
                let line = format!(
                    "{} ({}) is not available: {reason:#}",
                    report.name, report.var
                );
                warn_loudly(&line, report.name, report.var);
                provisioned.unavailable.push(line);
            }
        }
        if let Some(value) = report.value {
            provisioned.env.push((report.var.to_owned(), value));
        }
    }
    provisioned
}

/// A server xtask knows how to start and install.
#[derive(Debug)]
struct Daemon {
    server: Server,
    /// The Debian package shipping `binary`.
    package: &'static str,
    binary: &'static str,
    /// Runs once after xtask installed `package`, before the first start.
    after_install: Option<fn() -> anyhow::Result<()>>,
    /// Starts the daemon in the background from `binary`; returns once it is launched,
    /// not necessarily listening.
    start: fn(binary: &Path) -> anyhow::Result<()>,
}

const DAEMONS: [Daemon; 3] = [
    Daemon {
        server: testkit::REDIS,
        package: "redis-server",
        binary: "redis-server",
        after_install: None,
        start: start_redis,
    },
    Daemon {
        server: testkit::POSTGRES,
        package: "postgresql",
        binary: "pg_ctlcluster",
        after_install: Some(trust_local_tcp_connections),
        start: start_postgres,
    },
    Daemon {
        server: testkit::RABBITMQ,
        package: "rabbitmq-server",
        binary: "rabbitmq-server",
        after_install: None,
        start: start_rabbitmq,
    },
];

/// A connect attempt gives up after this long: local servers answer in microseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a freshly started server may take to listen (RabbitMQ needs several seconds).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The outcome for one server or tool.
#[derive(Debug)]
struct Report {
    name: &'static str,
    var: &'static str,
    /// The value to pass in `var`, if any.
    value: Option<String>,
    /// How it was provided, or why it is not available.
    status: anyhow::Result<String>,
}

fn provision_server(daemon: &Daemon) -> Report {
    let server = daemon.server;
    let from_env = std::env::var(server.var())
        .ok()
        .filter(|url| !url.trim().is_empty());
    let url = from_env
        .clone()
        .unwrap_or_else(|| server.default_url().to_owned());
    let status = match from_env {
        Some(url) => check_given_url(server, &url),
        None => start_unless_running(daemon),
    };
    Report {
        name: server.name(),
        var: server.var(),
        value: Some(url),
        status,
    }
}

/// A URL the user chose is used as is: we only say whether it answers.
fn check_given_url(server: Server, url: &str) -> anyhow::Result<String> {
    let Some((host, port)) = testkit::host_port(url) else {
        bail!("cannot find a host and port in {}", server.var());
    };
    if testkit::tcp_reachable(&host, port, CONNECT_TIMEOUT) {
        Ok(format!("from {}", server.var()))
    } else {
        bail!(
            "nothing accepts connections at {host}:{port} (from {})",
            server.var()
        )
    }
}

fn start_unless_running(daemon: &Daemon) -> anyhow::Result<String> {
    let (host, port) = testkit::host_port(daemon.server.default_url())
        .expect("testkit's default URLs have a host and port");
    if testkit::tcp_reachable(&host, port, CONNECT_TIMEOUT) {
        return Ok("already running".to_owned());
    }

    let (binary, installed) = match testkit::which(daemon.binary) {
        Some(binary) => (binary, false),
        None => {
            apt_install(daemon.package).with_context(|| {
                format!(
                    "`{}` is not installed and installing it failed",
                    daemon.binary
                )
            })?;
            let binary = testkit::which(daemon.binary).with_context(|| {
                format!(
                    "package {} is installed but `{}` is still not found",
                    daemon.package, daemon.binary
                )
            })?;
            (binary, true)
        }
    };
    if let Some(after_install) = daemon.after_install.filter(|_| installed) {
        after_install()?;
    }

    // A package's install script may already have started the server.
    if !testkit::tcp_reachable(&host, port, CONNECT_TIMEOUT) {
        println!(
            "provision: starting {} with {}",
            daemon.server.name(),
            binary.display()
        );
        (daemon.start)(&binary)?;
    }
    let started = Instant::now();
    while !testkit::tcp_reachable(&host, port, CONNECT_TIMEOUT) {
        if started.elapsed() > START_TIMEOUT {
            bail!(
                "started {} but nothing listens on {host}:{port} after {}s",
                binary.display(),
                START_TIMEOUT.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
    let waited = started.elapsed().as_secs_f64();
    Ok(if installed {
        format!(
            "installed package {} and started it in {waited:.1}s",
            daemon.package
        )
    } else {
        format!("started it in {waited:.1}s")
    })
}

fn start_redis(binary: &Path) -> anyhow::Result<()> {
    for dir in ["/var/lib/redis", "/var/log/redis"] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    }
    run_logged(
        Command::new(binary).args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            // The leading `-` makes this address optional: hosts without IPv6 skip it.
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ]),
        "redis-server",
    )
}

fn start_postgres(binary: &Path) -> anyhow::Result<()> {
    let version = postgres_version()?;
    run_logged(
        Command::new(binary).args(["--skip-systemctl-redirect", &version, "main", "start"]),
        "pg_ctlcluster",
    )
}

fn start_rabbitmq(binary: &Path) -> anyhow::Result<()> {
    run_logged(Command::new(binary).arg("-detached"), "rabbitmq-server")
}

/// The newest PostgreSQL version with a configuration under `/etc/postgresql`.
fn postgres_version() -> anyhow::Result<String> {
    let dir = Path::new("/etc/postgresql");
    let mut versions: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    // Versions are numbers ("15", or "9.6" long ago); compare them as such.
    versions.sort_by_key(|version| version_key(version));
    versions
        .pop()
        .with_context(|| format!("no cluster configuration under {}", dir.display()))
}

fn version_key(version: &str) -> Vec<u64> {
    version
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// Debian's fresh cluster asks TCP clients for a password; the default `DATABASE_URL`
/// has none. Only called on a cluster xtask just installed (a throwaway CI machine), never
/// on a database someone configured.
fn trust_local_tcp_connections() -> anyhow::Result<()> {
    let version = postgres_version()?;
    let hba = Path::new("/etc/postgresql")
        .join(&version)
        .join("main/pg_hba.conf");
    let current =
        fs::read_to_string(&hba).with_context(|| format!("cannot read {}", hba.display()))?;
    // The first matching line wins, so the trust lines go first.
    let trusted = format!(
        "# Added by `cargo xtask test`: local test clients connect without a password.\n\
         host all all 127.0.0.1/32 trust\n\
         host all all ::1/128 trust\n\
         {current}"
    );
    fs::write(&hba, trusted).with_context(|| format!("cannot write {}", hba.display()))?;
    println!("provision: {} now trusts local TCP clients", hba.display());
    // When the package's install script already started the cluster it must reread the
    // file; when it did not, the reload fails harmlessly and the start reads the file.
    let _not_running = run_logged(
        Command::new("pg_ctlcluster").args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            "reload",
        ]),
        "pg_ctlcluster",
    );
    Ok(())
}

fn provision_promtool() -> Report {
    let var = testkit::PROMTOOL_VAR;
    let (value, status) = match find_or_install_promtool() {
        Ok((path, how)) => (Some(path.display().to_string()), Ok(how)),
        Err(error) => (None, Err(error)),
    };
    Report {
        name: "promtool",
        var,
        value,
        status,
    }
}

fn find_or_install_promtool() -> anyhow::Result<(PathBuf, String)> {
    let var = testkit::PROMTOOL_VAR;
    if let Some(path) = std::env::var_os(var).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{var}={} is not a file", path.display());
        }
        return Ok((path, format!("from {var}")));
    }
    if let Some(path) = testkit::which("promtool") {
        return Ok((path, "found on PATH".to_owned()));
    }
    // Debian's `prometheus` package ships /usr/bin/promtool. Its install script does not
    // start the Prometheus daemon in containers (policy-rc.d) and the tests never need one.
    apt_install("prometheus").context("`promtool` is not on PATH and installing it failed")?;
    let path = testkit::which("promtool")
        .context("package prometheus is installed but `promtool` is still not found")?;
    Ok((path, "installed package prometheus".to_owned()))
}

/// Installs a Debian package, running `apt-get update` before the first install of this
/// run. Installs run one at a time (apt holds a lock); their output goes to a log file.
fn apt_install(package: &str) -> anyhow::Result<()> {
    // Holds whether `apt-get update` already ran.
    static APT: Mutex<bool> = Mutex::new(false);

    if !is_root() {
        bail!("not root, so package {package} cannot be installed; install it and rerun");
    }
    let mut updated = APT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !*updated {
        println!(
            "provision: apt-get update (log: {})",
            log_path("apt").display()
        );
        run_logged(apt_get().arg("update"), "apt")?;
        *updated = true;
    }
    println!(
        "provision: apt-get install {package} (log: {})",
        log_path("apt").display()
    );
    run_logged(
        apt_get().args(["install", "-y", "--no-install-recommends", package]),
        "apt",
    )
}

fn apt_get() -> Command {
    let mut command = Command::new("apt-get");
    command.env("DEBIAN_FRONTEND", "noninteractive");
    command
}

fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.status.success() && output.stdout.trim_ascii() == b"0")
    })
}

/// Runs `command` to completion with its output appended to the log `name`, and fails
/// with the end of that output when it fails.
///
/// A file rather than a pipe: daemons that fork into the background inherit the output,
/// and waiting for a pipe's end would wait for the daemon to exit.
fn run_logged(command: &mut Command, name: &str) -> anyhow::Result<()> {
    let path = log_path(name);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let start = log.seek(SeekFrom::End(0))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if status.success() {
        return Ok(());
    }
    bail!(
        "{command:?} failed ({status}); end of {}:\n{}",
        path.display(),
        tail(&path, start)
    )
}

/// The last lines `path` got since byte `start`.
fn tail(path: &Path, start: u64) -> String {
    let mut text = String::new();
    let read = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(start))?;
        file.read_to_string(&mut text)
    });
    if let Err(error) = read {
        return format!("(cannot read the log: {error})");
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn log_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), PathBuf::from);
    target.join("xtask").join(format!("provision-{name}.log"))
}

fn warn_loudly(line: &str, name: &str, var: &str) {
    let rule = "*".repeat(78);
    eprintln!("warning: {rule}");
    eprintln!("warning: {line}");
    eprintln!("warning: tests that need {name} will fail naming {var}; fix the cause above");
    eprintln!("warning: (or point {var} at a working one) and rerun");
    eprintln!("warning: {rule}");
}
