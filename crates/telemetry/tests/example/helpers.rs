//! Spawning the example service as a real process with real environment variables.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otlp_sink::OtlpSink;
use serde_json::Value;

/// A running `telemetry-example` process.
pub(crate) struct Example {
    child: Child,
    pub(crate) port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// How a process ended.
#[derive(Debug)]
pub(crate) struct Exit {
    pub(crate) status: ExitStatus,
    pub(crate) elapsed: Duration,
}

fn command(env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_telemetry-example"));
    // Only what the test sets: no OTEL_* leaks in from the developer's shell.
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.env("RUST_LOG", "info");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

fn pump(stream: impl std::io::Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
}

impl Example {
    /// Starts the service and waits for its `listening` log line.
    pub(crate) fn spawn(env: &[(&str, String)]) -> Example {
        let mut child = command(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        pump(child.stdout.take().unwrap(), stdout.clone());
        pump(child.stderr.take().unwrap(), stderr.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let port = stderr.lock().unwrap().iter().find_map(|line| {
                line.strip_prefix("listening on http://127.0.0.1:")?
                    .parse::<u64>()
                    .ok()
            });
            if let Some(port) = port {
                return Example {
                    child,
                    port: port as u16,
                    stdout,
                    stderr,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "example exited with {status} before listening; stderr: {:?}; stdout: {:?}",
                    stderr.lock().unwrap(),
                    stdout.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "example did not log `listening` within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Lines of stdout parsed as JSON (non-JSON lines are returned as strings).
    pub(crate) fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub(crate) fn logs(&self) -> Vec<Value> {
        self.stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first JSON log line whose `message` is `message`, waiting up to 10 s for it:
    /// the line reaches the test through a pipe and a reader thread, possibly after the
    /// response that followed it.
    pub(crate) async fn wait_for_log(&self, message: &str) -> Value {
        eventually(
            &format!("the log line {message:?}"),
            Duration::from_secs(10),
            || async {
                let logs = self.logs();
                logs.iter()
                    .find(|l| l["message"] == message)
                    .cloned()
                    .ok_or_else(|| format!("{} log lines, none with it", logs.len()))
            },
        )
        .await
    }

    pub(crate) fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (at most 60 s, to catch hangs) for the process to exit.
    pub(crate) fn terminate(mut self) -> (Exit, Example) {
        let start = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        let deadline = start + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                // Let the pump threads read what is left.
                std::thread::sleep(Duration::from_millis(50));
                return (
                    Exit {
                        status,
                        elapsed: start.elapsed(),
                    },
                    self,
                );
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("example did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the example expecting it to refuse to start; returns its stderr.
pub(crate) fn startup_error(env: &[(&str, String)]) -> String {
    let output = command(env)
        .stdin(Stdio::null())
        .output()
        .expect("the example binary runs");
    assert!(
        !output.status.success(),
        "expected a startup failure for {env:?}"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Variables that point every signal at `sink` with `protocol` and export quickly.
pub(crate) fn sink_env(sink: &OtlpSink, protocol: &str) -> Vec<(&'static str, String)> {
    let endpoint = match protocol {
        "grpc" => sink.grpc_endpoint(),
        _ => sink.http_endpoint(),
    };
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_SERVICE_NAME", "example".to_owned()),
    ]
}

/// Merges variable lists; later entries win.
pub(crate) fn env_with(
    base: Vec<(&'static str, String)>,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = base;
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push((key, (*value).to_owned()));
    }
    env
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Scrapes `/metrics`.
pub(crate) async fn scrape(example: &Example) -> String {
    client()
        .get(example.url("/metrics"))
        .send()
        .await
        .expect("scrape works")
        .text()
        .await
        .expect("scrape body")
}

/// The value of a sample line `name{labels} value` (labels given as the exact text).
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// GETs `path` and asserts the service answered 200.
pub(crate) async fn get_ok(example: &Example, path: &str) {
    let response = client()
        .get(example.url(path))
        .send()
        .await
        .expect("request works");
    assert_eq!(response.status(), 200, "GET {path}");
}

/// Polls `check` until it yields a value; fails naming `what` and the last state seen
/// once `timeout` has passed.
pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) => assert!(
                Instant::now() < deadline,
                "{what} within {timeout:?}: {state}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
