//! Spawning the processor (in-process on port 0, or as its real binary) and talking to it.

use std::io::{BufRead, BufReader, Cursor};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use frame_capture::scene::RenderedFrame;
use frame_processor::{App, Config};
use frame_tracking::FrameId;
use serde_json::{Value, json};
use service_kit::env::Env;
use telemetry::{Globals, Telemetry, TelemetryConfig};
use tokio::sync::oneshot;

/// The processor running inside the test process, telemetry off.
pub(crate) struct TestApp {
    pub(crate) url: String,
    stop: Option<oneshot::Sender<()>>,
    _telemetry: Telemetry,
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub(crate) async fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    let mut pairs = vec![("PORT", "0")];
    pairs.extend_from_slice(vars);
    let config = Config::from_env(&Env::from_map(pairs)).expect("valid test config");
    let telemetry_config =
        TelemetryConfig::from_lookup(|name| (name == "OTEL_SDK_DISABLED").then(|| "true".into()))
            .expect("telemetry config");
    let telemetry = Telemetry::start(telemetry::service_info!(), telemetry_config, Globals::Skip)
        .expect("telemetry starts");
    let app = App::build(config, &telemetry).await.expect("app binds");
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

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestApp {
    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        send(client().post(format!("{}{path}", self.url)).json_body(body)).await
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        send(client().get(format!("{}{path}", self.url))).await
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// `.json()` needs reqwest's `json` feature; this is the same with serde_json.
pub(crate) trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}

pub(crate) async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request is sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body is read");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The `POST /process` body of a rendered frame, pixels encoded as `format`.
pub(crate) fn frame_body(camera_id: &str, frame: &RenderedFrame, format: &str) -> Value {
    let frame_id = FrameId::generate(camera_id, "test").expect("valid camera id");
    let bytes = match format {
        "rgb24" => frame.image.as_raw().clone(),
        "png" | "jpeg" => {
            let file_format = if format == "png" {
                image::ImageFormat::Png
            } else {
                image::ImageFormat::Jpeg
            };
            let mut encoded = Vec::new();
            frame
                .image
                .write_to(&mut Cursor::new(&mut encoded), file_format)
                .expect("encodes");
            encoded
        }
        other => panic!("unknown format {other}"),
    };
    json!({
        "frame_id": frame_id.to_string(),
        "camera_id": camera_id,
        "frame_data": {
            "width": frame.image.width(),
            "height": frame.image.height(),
            "format": format,
            "timestamp": 1_717_171_717.25,
        },
        "image": base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

/// The processor's real binary, with only the variables the test sets.
pub(crate) struct ProcessorProcess {
    child: Child,
    pub(crate) url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl ProcessorProcess {
    pub(crate) fn spawn(env: &[(&str, String)]) -> ProcessorProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_frame-processor"));
        command.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        command.env("PORT", "0").env("RUST_LOG", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the processor binary starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let stream = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().expect("lines lock").push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = stderr
                .lock()
                .expect("lines lock")
                .iter()
                .find_map(|line| line.strip_prefix("listening on ").map(str::to_owned));
            if let Some(url) = url {
                return ProcessorProcess { child, url, stderr };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("processor exited with {status}: {:?}", stderr.lock());
            }
            assert!(Instant::now() < deadline, "processor did not start in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        send(client().post(format!("{}{path}", self.url)).json_body(body)).await
    }

    pub(crate) async fn scrape(&self) -> String {
        client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("scrape body")
    }

    pub(crate) fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("lines lock").clone()
    }
}

impl Drop for ProcessorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One OTLP sink for the test binary and process-wide telemetry exporting to it as
/// service `frame-capture` (the camera code runs in this process). Installed once: the
/// `tracing` subscriber is global.
pub(crate) struct Harness {
    pub(crate) sink: otlp_sink::OtlpSink,
    pub(crate) telemetry: Telemetry,
}

pub(crate) fn harness() -> &'static Harness {
    static HARNESS: std::sync::OnceLock<Harness> = std::sync::OnceLock::new();
    HARNESS.get_or_init(|| {
        // The sink lives on its own runtime, which outlives every test's runtime.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime for the sink");
            runtime.block_on(async move {
                let sink = otlp_sink::OtlpSink::start().await.expect("the sink starts");
                sender.send(sink).expect("the test waits for the sink");
                std::future::pending::<()>().await;
            });
        });
        let sink = receiver.recv().expect("the sink thread sends the sink");
        let vars = std::collections::HashMap::from([
            ("OTEL_SERVICE_NAME", "frame-capture".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.grpc_endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ("OTEL_METRICS_EXPORTER", "none".to_owned()),
            ("OTEL_LOGS_EXPORTER", "none".to_owned()),
        ]);
        let config =
            TelemetryConfig::from_lookup(|name| vars.get(name).cloned()).expect("telemetry config");
        let telemetry = Telemetry::start(telemetry::service_info!(), config, Globals::Install)
            .expect("telemetry starts");
        Harness { sink, telemetry }
    })
}

/// A name no other test run uses (queues and consumer groups live on shared servers).
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!("{prefix}:{}:{nanos}", std::process::id())
}

/// A camera of the capture service delivering through `delivery`.
pub(crate) fn camera(
    camera_id: &str,
    delivery: frame_capture::delivery::Delivery,
) -> (
    Arc<frame_capture::camera::Camera>,
    Arc<frame_capture::stats::Stats>,
) {
    let scene = frame_capture::scene::Scene::new(frame_capture::scene::SceneConfig {
        width: 320,
        height: 240,
        objects: 3,
        seed: 21,
    })
    .expect("scene");
    let stats = Arc::new(frame_capture::stats::Stats::new(&[camera_id.to_owned()]));
    let camera = frame_capture::camera::Camera::new(
        0,
        scene,
        frame_capture::config::Encoding::Png,
        delivery,
        stats.clone(),
    )
    .expect("camera 0");
    (Arc::new(camera), stats)
}
