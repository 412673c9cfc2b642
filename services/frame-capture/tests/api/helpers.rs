//! A stand-in processor that records what it receives, and ways to run the capture
//! service (in-process on port 0, or as its real binary).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use frame_capture::{App, Config};
use serde_json::Value;
use service_kit::env::Env;
use telemetry::{Globals, Telemetry, TelemetryConfig};
use tokio::sync::{Semaphore, oneshot};

/// How the stand-in processor answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200 at once.
    Accept,
    /// 200 once the gate opens ([`Receiver::open`]).
    WaitForGate,
    /// 500.
    Fail,
}

/// A stand-in for the processor's `POST /process`: records bodies and headers.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    state: Arc<ReceiverState>,
}

struct ReceiverState {
    answer: Answer,
    gate: Semaphore,
    received: Mutex<Vec<(HeaderMap, Value)>>,
    in_flight: Mutex<(usize, usize)>,
}

impl Receiver {
    pub(crate) async fn start(answer: Answer) -> Receiver {
        let state = Arc::new(ReceiverState {
            answer,
            gate: Semaphore::new(0),
            received: Mutex::new(Vec::new()),
            in_flight: Mutex::new((0, 0)),
        });
        let router = Router::new()
            .route("/process", post(receive))
            .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, state }
    }

    pub(crate) fn received(&self) -> Vec<(HeaderMap, Value)> {
        self.state.received.lock().expect("lock").clone()
    }

    /// The most requests that were in progress at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.state.in_flight.lock().expect("lock").1
    }

    pub(crate) fn open(&self) {
        self.state.gate.add_permits(1_000_000);
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    {
        let mut in_flight = state.in_flight.lock().expect("lock");
        in_flight.0 += 1;
        in_flight.1 = in_flight.1.max(in_flight.0);
    }
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    state.received.lock().expect("lock").push((headers, value));
    if state.answer == Answer::WaitForGate {
        let _ = state.gate.acquire().await;
    }
    state.in_flight.lock().expect("lock").0 -= 1;
    match state.answer {
        Answer::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    }
}

/// The capture service inside the test process, telemetry off.
pub(crate) struct TestApp {
    pub(crate) url: String,
    stop: Option<oneshot::Sender<()>>,
    _telemetry: Telemetry,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub(crate) async fn spawn_app(vars: &[(&str, &str)]) -> TestApp {
    let mut pairs = vec![("PORT", "0")];
    pairs.extend_from_slice(vars);
    let config = Config::from_env(&Env::from_map(pairs)).expect("valid config");
    let telemetry = Telemetry::start(
        telemetry::service_info!(),
        TelemetryConfig::from_lookup(|name| (name == "OTEL_SDK_DISABLED").then(|| "true".into()))
            .expect("telemetry config"),
        Globals::Skip,
    )
    .expect("telemetry starts");
    let app = App::build(config, &telemetry).await.expect("app builds");
    let url = app.url();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        url,
        stop: Some(stop),
        _telemetry: telemetry,
    }
}

pub(crate) async fn get_json(url: &str) -> Value {
    let text = reqwest::get(url)
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON from {url}: {text}"))
}

/// Polls `/stats` until `done` holds for it (at most 60 s, to catch hangs).
pub(crate) async fn stats_until(base: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = get_json(&format!("{base}/stats")).await;
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "stats never got there: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The capture service's real binary, with only the variables the test sets.
pub(crate) struct CaptureProcess {
    child: Child,
    pub(crate) url: String,
}

fn command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_frame-capture"));
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.env("PORT", "0");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

impl CaptureProcess {
    pub(crate) fn spawn(env: &[(&str, &str)]) -> CaptureProcess {
        let mut child = command(env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the capture binary starts");
        let stream = child.stderr.take().expect("stderr is piped");
        let (sender, url) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = sender.send(url.to_owned());
                }
            }
        });
        let url = url
            .recv_timeout(Duration::from_secs(30))
            .expect("the capture binary logs `listening on`");
        CaptureProcess { child, url }
    }
}

impl Drop for CaptureProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary expecting a startup failure; returns its stderr.
pub(crate) fn startup_error(env: &[(&str, &str)]) -> String {
    let output = command(env).output().expect("the capture binary runs");
    assert!(!output.status.success(), "expected a startup failure");
    String::from_utf8_lossy(&output.stderr).into_owned()
}
