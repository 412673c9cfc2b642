//! Test helpers: the tracker in process on port 0 over a real store, the tracker binary
//! as a child process, OTLP request builders and typed request helpers.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;
use frame_tracking::FrameId;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use service_kit::env::Env;
use telemetry::{Globals, Telemetry, TelemetryConfig};
use tracker::app::App;
use tracker::config::Config;
use tracker::store::StoreConfig;

/// A tracker running in this process.
pub(crate) struct TestApp {
    pub(crate) url: String,
    pub(crate) grpc_url: String,
    pub(crate) http: reqwest::Client,
    _data: TempDir,
    _telemetry: Telemetry,
}

/// A directory removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Telemetry that exports nothing and installs nothing global.
pub(crate) fn quiet_telemetry() -> Telemetry {
    let config = TelemetryConfig::from_lookup(|name| match name {
        "OTEL_SDK_DISABLED" => Some("true".to_owned()),
        _ => None,
    })
    .unwrap();
    Telemetry::start(telemetry::service_info!(), config, Globals::Skip).unwrap()
}

/// The tracker on SQLite in a fresh directory, ports 0, with `extra` variables.
pub(crate) async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let data = TempDir::new("tracker-api");
    let data_dir = data.path().display().to_string();
    let mut vars = vec![
        ("PORT", "0"),
        ("OTLP_GRPC_PORT", "0"),
        ("DATA_DIR", data_dir.as_str()),
        (
            "TRACE_URL_TEMPLATE",
            "http://localhost:16686/trace/{trace_id}",
        ),
    ];
    vars.extend_from_slice(extra);
    let config = Config::from_env(&Env::from_map(vars)).unwrap();
    assert!(matches!(config.store, StoreConfig::Sqlite { .. }));
    let telemetry = quiet_telemetry();
    let app = App::build(config, &telemetry).await.unwrap();
    let url = app.url();
    let grpc_url = app.grpc_url();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        url,
        grpc_url,
        http: reqwest::Client::new(),
        _data: data,
        _telemetry: telemetry,
    }
}

/// The tracker on SQLite in a fresh directory.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A JSON answer.
#[derive(Debug)]
pub(crate) struct JsonResponse {
    pub(crate) status: u16,
    pub(crate) body: serde_json::Value,
}

/// What `POST /v1/traces` answered.
#[derive(Debug)]
pub(crate) enum OtlpAnswer {
    Ok(ExportTraceServiceResponse),
    Error(OtlpFailure),
}

/// A failed OTLP/HTTP export as the client sees it.
#[derive(Debug)]
pub(crate) struct OtlpFailure {
    pub(crate) status: u16,
    /// `application/x-protobuf` (a `google.rpc.Status`) or `application/json` (the
    /// service's `ApiError`).
    pub(crate) content_type: String,
    /// `Status.message`, or the JSON `error` (with its `detail`).
    pub(crate) message: String,
    /// `Status.code`, for protobuf answers.
    pub(crate) code: Option<i32>,
    pub(crate) retry_after: Option<String>,
}

impl OtlpAnswer {
    pub(crate) fn ok(self) -> ExportTraceServiceResponse {
        match self {
            OtlpAnswer::Ok(response) => response,
            OtlpAnswer::Error(error) => panic!("expected 200, got {error:?}"),
        }
    }

    pub(crate) fn error(self) -> OtlpFailure {
        match self {
            OtlpAnswer::Ok(response) => panic!("expected an error, got 200 {response:?}"),
            OtlpAnswer::Error(error) => error,
        }
    }
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub(crate) async fn get(&self, path: &str) -> JsonResponse {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        json_response(response).await
    }

    pub(crate) async fn post_events(&self, body: &serde_json::Value) -> JsonResponse {
        let response = self
            .http
            .post(self.url("/events"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        json_response(response).await
    }

    /// Posts raw bytes to `/v1/traces` with the given headers.
    pub(crate) async fn post_otlp_raw(
        &self,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> OtlpAnswer {
        send_otlp_raw(&self.http, &self.url, body, headers)
            .await
            .unwrap()
    }

    /// Posts an export request as protobuf, gzipped or not.
    pub(crate) async fn post_otlp(
        &self,
        request: &ExportTraceServiceRequest,
        gzip: bool,
    ) -> OtlpAnswer {
        send_otlp(&self.http, &self.url, request, gzip)
            .await
            .unwrap()
    }

    pub(crate) async fn journey(&self, frame_id: &FrameId) -> JsonResponse {
        self.get(&format!("/frames/{frame_id}/journey")).await
    }
}

/// Posts raw bytes to `{base_url}/v1/traces` with the given headers; `Err` when the
/// tracker cannot be reached.
pub(crate) async fn send_otlp_raw(
    http: &reqwest::Client,
    base_url: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Result<OtlpAnswer, reqwest::Error> {
    let mut request = http.post(format!("{base_url}/v1/traces")).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Ok(otlp_answer(request.send().await?).await)
}

/// Posts an export request as protobuf to `{base_url}/v1/traces`, gzipped or not.
pub(crate) async fn send_otlp(
    http: &reqwest::Client,
    base_url: &str,
    request: &ExportTraceServiceRequest,
    gzip: bool,
) -> Result<OtlpAnswer, reqwest::Error> {
    let (body, headers) = encode_otlp(request, gzip);
    send_otlp_raw(http, base_url, body, &headers).await
}

/// The body and headers of an OTLP/HTTP export.
pub(crate) fn encode_otlp(
    request: &ExportTraceServiceRequest,
    gzip: bool,
) -> (Vec<u8>, Vec<(&'static str, &'static str)>) {
    let body = request.encode_to_vec();
    if gzip {
        (
            gzip_bytes(&body),
            vec![
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
        )
    } else {
        (body, vec![("content-type", "application/x-protobuf")])
    }
}

pub(crate) fn gzip_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub(crate) async fn json_response(response: reqwest::Response) -> JsonResponse {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "status {status}: body is not JSON: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    JsonResponse { status, body }
}

pub(crate) async fn otlp_answer(response: reqwest::Response) -> OtlpAnswer {
    let status = response.status().as_u16();
    if status == 200 {
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
        let bytes = response.bytes().await.unwrap();
        OtlpAnswer::Ok(ExportTraceServiceResponse::decode(bytes.as_ref()).unwrap())
    } else {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after");
        let bytes = response.bytes().await.unwrap();
        let (message, code) = if content_type == "application/x-protobuf" {
            let status = tonic_types::Status::decode(bytes.as_ref()).unwrap();
            (status.message, Some(status.code))
        } else {
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let mut message = body["error"].as_str().unwrap().to_owned();
            if let Some(detail) = body.get("detail") {
                message.push_str(&format!(": {detail}"));
            }
            (message, None)
        };
        OtlpAnswer::Error(OtlpFailure {
            status,
            content_type,
            message,
            code,
            retry_after,
        })
    }
}

pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub(crate) fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

pub(crate) fn int_attribute(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// A unique, valid trace id.
pub(crate) fn trace_id() -> [u8; 16] {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(now_nanos() ^ u64::from(std::process::id())).to_be_bytes());
    bytes[8..].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    bytes
}

/// A span of `frame_id` (or without `frame.id` when `None`).
pub(crate) struct SpanSpec<'a> {
    pub(crate) frame_id: Option<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: u64,
    pub(crate) parent: Option<u64>,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) error: Option<&'a str>,
}

pub(crate) fn span(spec: SpanSpec<'_>) -> Span {
    let mut attributes = vec![
        int_attribute("frame.size_bytes", 921_600),
        string_attribute("messaging.system", "redis"),
        int_attribute("detections.count", 3),
        string_attribute("http.request.method", "POST"),
    ];
    if let Some(frame_id) = spec.frame_id {
        attributes.push(string_attribute("frame.id", frame_id));
    }
    Span {
        trace_id: spec.trace_id.to_vec(),
        span_id: spec.span_id.to_be_bytes().to_vec(),
        parent_span_id: spec
            .parent
            .map(|p| p.to_be_bytes().to_vec())
            .unwrap_or_default(),
        name: spec.name.to_owned(),
        kind: 1,
        start_time_unix_nano: spec.start,
        end_time_unix_nano: spec.end,
        attributes,
        status: spec.error.map(|message| Status {
            message: message.to_owned(),
            code: 2,
        }),
        ..Span::default()
    }
}

/// One export request of `service` holding `spans`.
pub(crate) fn export_request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_attribute("service.name", service)],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// A frame's three-stage journey: capture (0-1 ms), a 4 ms queue wait, then processing
/// (5-10 ms) with a failed nested detection when `fail` is set.
pub(crate) fn frame_spans(
    frame_id: &FrameId,
    fail: bool,
) -> (ExportTraceServiceRequest, ExportTraceServiceRequest) {
    let trace = trace_id();
    let base = now_nanos();
    let ms = 1_000_000;
    let id = frame_id.to_string();
    let capture = span(SpanSpec {
        frame_id: Some(&id),
        name: "capture",
        trace_id: trace,
        span_id: 1,
        parent: None,
        start: base,
        end: base + ms,
        error: None,
    });
    let process = span(SpanSpec {
        frame_id: Some(&id),
        name: "process_frame",
        trace_id: trace,
        span_id: 2,
        parent: Some(1),
        start: base + 5 * ms,
        end: base + 10 * ms,
        error: None,
    });
    let detect = span(SpanSpec {
        frame_id: Some(&id),
        name: "detect_objects",
        trace_id: trace,
        span_id: 3,
        parent: Some(2),
        start: base + 6 * ms,
        end: base + 9 * ms,
        error: fail.then_some("model not loaded"),
    });
    (
        export_request("frame-capture", vec![capture]),
        export_request("frame-processor", vec![process, detect]),
    )
}

pub(crate) fn frame_id(camera: &str) -> FrameId {
    FrameId::generate(camera, "rgb").unwrap()
}

/// Polls `check` until it returns `Some`, at most `timeout`.
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tracker binary as a child process.
pub(crate) struct TrackerProcess {
    child: Child,
    pub(crate) url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl TrackerProcess {
    /// Starts `tracker serve` with only `env` (plus `PATH`), ports 0, and waits for its
    /// `tracker listening on` line.
    pub(crate) fn spawn(env: &[(&str, &str)]) -> TrackerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tracker"));
        command.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        command
            .env("PORT", "0")
            .env("OTLP_GRPC_PORT", "0")
            .env("RUST_LOG", "warn");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = stderr.lock().unwrap().iter().find_map(|line| {
                let rest = line.strip_prefix("tracker listening on ")?;
                let (http, _grpc) = rest.split_once(" (OTLP/gRPC on ")?;
                Some(http.to_owned())
            });
            if let Some(url) = found {
                return TrackerProcess { child, url, stderr };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "tracker exited with {status} before listening: {:?}",
                    stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tracker did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// SIGKILL: no chance to flush or drain anything.
    pub(crate) fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "{status}: {:?}",
            self.stderr.lock().unwrap()
        );
        status
    }
}

impl Drop for TrackerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh, uniquely named PostgreSQL database on `DATABASE_URL`; dropped at the end.
pub(crate) struct TestDatabase {
    admin_url: String,
    name: String,
    pub(crate) url: String,
}

impl TestDatabase {
    pub(crate) async fn create() -> TestDatabase {
        let admin_url = testkit::database_url();
        testkit::require_reachable("PostgreSQL", "DATABASE_URL", &admin_url);
        let name = format!(
            "tracker_api_{}_{}",
            std::process::id(),
            trace_id()[8..]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let client = connect(&admin_url).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = database_url_with_name(&admin_url, &name);
        TestDatabase {
            admin_url,
            name,
            url,
        }
    }

    pub(crate) async fn drop_database(self) {
        let client = connect(&self.admin_url).await;
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// `url` with its database name replaced by `name` (options kept).
fn database_url_with_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut new = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        new.push('?');
        new.push_str(query);
    }
    new
}

/// A TCP proxy in front of a server that can be cut off: while down, existing
/// connections are closed and new ones are accepted and closed at once.
pub(crate) struct CutProxy {
    pub(crate) port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl CutProxy {
    /// Forwards `127.0.0.1:<port>` to `upstream` (`host:port`).
    pub(crate) async fn start(upstream: String) -> CutProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*watch.borrow() {
                    continue;
                }
                let upstream = upstream.clone();
                let mut down = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        CutProxy { port, up }
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// `url` (a PostgreSQL URL) pointing at `127.0.0.1:port` instead of its host and port.
pub(crate) fn database_url_via(url: &str, port: u16) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let userinfo = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    format!(
        "{}{userinfo}127.0.0.1:{port}{}",
        &url[..scheme_end],
        &rest[authority_end..]
    )
}

/// The tracker in process over PostgreSQL at `database_url`.
pub(crate) async fn spawn_app_on_postgres(database_url: &str) -> TestApp {
    let data = TempDir::new("tracker-api-pg");
    let vars = vec![
        ("PORT", "0"),
        ("OTLP_GRPC_PORT", "0"),
        ("DATABASE_URL", database_url),
    ];
    let config = Config::from_env(&Env::from_map(vars)).unwrap();
    let telemetry = quiet_telemetry();
    let app = App::build(config, &telemetry).await.unwrap();
    let url = app.url();
    let grpc_url = app.grpc_url();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        url,
        grpc_url,
        http: reqwest::Client::new(),
        _data: data,
        _telemetry: telemetry,
    }
}
