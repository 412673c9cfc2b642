//! Child processes and plain HTTP for the tasks that run services (`demo`): start a
//! binary, learn its URL from the `listening on http://...` line every service prints on
//! stderr, stop it with SIGTERM and check that it exited cleanly.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// `cargo build [--release] [--locked in CI] <args>` in the workspace root, the command
/// echoed first; fails when the build fails.
pub(crate) fn cargo_build(release: bool, args: &[&str]) -> anyhow::Result<()> {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.arg("build");
    if release {
        command.arg("--release");
    }
    if crate::is_ci() {
        command.arg("--locked");
    }
    command.args(args).current_dir(crate::project_root());
    let shown: Vec<String> = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    println!("$ cargo {}", shown.join(" "));
    let status = command.status().context("cannot run cargo build")?;
    ensure!(status.success(), "cargo build failed ({status})");
    Ok(())
}

/// A running child process; stdout goes to a log file or a channel, stderr lines to a
/// channel (and to a log file when one is given).
pub(crate) struct Spawned {
    name: String,
    child: Child,
    stdout: Option<mpsc::Receiver<String>>,
    stderr: mpsc::Receiver<String>,
    stdout_seen: Vec<String>,
}

impl Spawned {
    /// Starts `command`; with `log_dir`, stdout is written to `<log_dir>/<name>.log` and
    /// stderr copied to `<log_dir>/<name>.stderr.log`.
    pub(crate) fn start(
        command: &mut Command,
        name: &str,
        log_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let stdout_file = match log_dir {
            Some(dir) => Some(
                File::create(dir.join(format!("{name}.log")))
                    .with_context(|| format!("cannot create the log file of {name}"))?,
            ),
            None => None,
        };
        command.stderr(Stdio::piped());
        match &stdout_file {
            Some(file) => command.stdout(Stdio::from(file.try_clone()?)),
            None => command.stdout(Stdio::piped()),
        };
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdout = match stdout_file {
            Some(_) => None,
            None => Some(lines(child.stdout.take().context("no stdout")?, None)),
        };
        let stderr_copy = match log_dir {
            Some(dir) => Some(File::create(dir.join(format!("{name}.stderr.log")))?),
            None => None,
        };
        let stderr = lines(child.stderr.take().context("no stderr")?, stderr_copy);
        Ok(Self {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            stdout_seen: Vec::new(),
        })
    }

    /// The next stdout line (only without a log directory).
    pub(crate) fn stdout_line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let stdout = self.stdout.as_ref().context("stdout goes to a log file")?;
        let line = stdout
            .recv_timeout(timeout)
            .with_context(|| format!("{} printed nothing within {timeout:?}", self.name))?;
        self.stdout_seen.push(line.clone());
        Ok(line)
    }

    /// Waits for the `listening on http://host:port` line and returns the URL. Other
    /// stderr lines seen meanwhile are echoed, so a startup error is visible.
    pub(crate) fn url(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = match self.stderr.recv_timeout(remaining) {
                Ok(line) => line,
                Err(_) => {
                    let exited = self.child.try_wait().ok().flatten();
                    match exited {
                        Some(status) => {
                            bail!("{} exited with {status} before listening", self.name)
                        }
                        None => bail!("{} did not start listening within {timeout:?}", self.name),
                    }
                }
            };
            if let Some(url) = listening_url(&line) {
                return Ok(url.to_owned());
            }
            eprintln!("{}: {line}", self.name);
        }
    }

    /// The port of [`Spawned::url`].
    pub(crate) fn port(&mut self, timeout: Duration) -> anyhow::Result<u16> {
        let url = self.url(timeout)?;
        url.rsplit(':')
            .next()
            .and_then(|port| port.trim_end_matches('/').parse().ok())
            .with_context(|| format!("no port in {url}"))
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id (for reading `/proc/<pid>/`).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process name given at start.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// SIGTERM, wait for a clean exit (at most 15 s), return what it printed on stdout
    /// (when stdout was not a log file).
    pub(crate) fn stop(mut self) -> anyhow::Result<Vec<String>> {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("cannot signal {}", self.name);
        }
        let exit = loop {
            if let Some(exit) = self.child.try_wait()? {
                break exit;
            }
            if started.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                bail!("{} did not exit within 15 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if !exit.success() {
            bail!("{} exited with {exit}", self.name);
        }
        let mut lines = std::mem::take(&mut self.stdout_seen);
        if let Some(stdout) = &self.stdout {
            while let Ok(line) = stdout.recv_timeout(Duration::from_millis(200)) {
                lines.push(line);
            }
        }
        for line in self.stderr.try_iter() {
            if line.starts_with("warning") || line.starts_with("error") {
                println!("{}: {line}", self.name);
            }
        }
        println!(
            "{} stopped in {} ms",
            self.name,
            started.elapsed().as_millis()
        );
        Ok(lines)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URL in a `... listening on http://host:port ...` line.
fn listening_url(line: &str) -> Option<&str> {
    let start = line.find("listening on http://")? + "listening on ".len();
    let rest = &line[start..];
    Some(rest.split_whitespace().next().unwrap_or(rest))
}

fn lines(stream: impl Read + Send + 'static, mut copy: Option<File>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(file) = &mut copy {
                let _ = writeln!(file, "{line}");
            }
            // The receiver may be gone (nobody reads stderr after startup); keep copying.
            let _ = tx.send(line);
        }
    });
    rx
}

/// A minimal HTTP/1.1 GET over a fresh connection: (status, body). `url` is
/// `http://host:port/path`.
pub(crate) fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http URL: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, "/"),
    };
    let mut stream =
        TcpStream::connect(authority).with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("bad HTTP response for {path}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad HTTP status line for {path}"))?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase().starts_with("transfer-encoding:")
            && line.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// `http_get` of a JSON document that must answer 200.
pub(crate) fn get_json(url: &str) -> anyhow::Result<serde_json::Value> {
    let (status, body) = http_get(url)?;
    if status != 200 {
        bail!("GET {url} answered {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("GET {url} did not answer JSON"))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_give_their_url() {
        assert_eq!(
            listening_url("listening on http://127.0.0.1:4000"),
            Some("http://127.0.0.1:4000")
        );
        assert_eq!(
            listening_url(
                "tracker listening on http://127.0.0.1:81 (OTLP/gRPC on http://127.0.0.1:82)"
            ),
            Some("http://127.0.0.1:81")
        );
        assert_eq!(listening_url("starting"), None);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"), "Wikipedia");
    }
}
