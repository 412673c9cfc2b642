//! [`OtlpSink`]: starting, querying, steering and stopping the receivers.

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{ShutdownError, StartError, WaitError};
use crate::model::{
    Counts, ReceivedLog, ReceivedMetric, ReceivedSpan, RequestInfo, Signal, Transport,
};
use crate::store::Store;
use crate::{grpc_server, http_server};

/// The largest export message accepted, compressed or not, on either transport.
pub(crate) const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How long [`OtlpSink::shutdown`] lets in-flight requests finish before aborting.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a server task ends with.
type ServeResult = Result<(), Box<dyn Error + Send + Sync>>;

/// A running OTLP receiver with a gRPC and an HTTP/protobuf listener.
///
/// Dropping the sink stops both servers, as [`OtlpSink::shutdown`] does, without
/// waiting for them.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
///
/// let sink = otlp_sink::OtlpSink::start().await?;
/// // Point an exporter at `sink.grpc_endpoint()` or `sink.http_endpoint()`, then:
/// let is_health = |span: &otlp_sink::ReceivedSpan| span.name == "GET /health";
/// let spans = sink
///     .wait_for_spans(|spans| spans.iter().any(is_health), Duration::from_secs(5))
///     .await?;
/// let health = spans.iter().find(|span| is_health(span)).expect("waited for it");
/// assert_eq!(health.str_attr("http.route"), Some("/health"));
/// sink.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct OtlpSink {
    store: Arc<Store>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    /// Set to `true`, or dropped, to stop both servers.
    stop: watch::Sender<bool>,
    grpc_task: JoinHandle<ServeResult>,
    http_task: JoinHandle<ServeResult>,
}

/// Where the sink listens and what it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// The OTLP/gRPC listen address; port 0 picks a free port.
    pub grpc_addr: SocketAddr,
    /// The OTLP/HTTP listen address; port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// Whether received items are kept or only counted.
    pub retention: Retention,
}

/// Whether the sink keeps what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep every span, log record, metric and [`RequestInfo`], for assertions.
    All,
    /// Decode every request fully but keep only [`Counts`], so memory stays flat under
    /// sustained load (benchmarks); `spans()`, `logs()`, `metrics()` and `requests()`
    /// stay empty.
    CountOnly,
}

/// How the sink answers export requests, to exercise exporter error handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Store the items and answer success.
    Accept,
    /// Answer gRPC `UNAVAILABLE` or HTTP 503 without storing the items (the request is
    /// still listed by [`OtlpSink::requests`] with `accepted: false`).
    Unavailable,
    /// Store the items at once but answer success only after the delay, to trigger
    /// exporter timeouts.
    Delay(Duration),
}

impl SinkConfig {
    /// Both listeners on `127.0.0.1` with OS-assigned ports, keeping everything.
    pub fn local() -> Self {
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self {
            grpc_addr: any_port,
            http_addr: any_port,
            retention: Retention::All,
        }
    }
}

impl OtlpSink {
    /// Starts a sink with [`SinkConfig::local`].
    pub async fn start() -> Result<Self, StartError> {
        Self::start_on(SinkConfig::local()).await
    }

    /// Binds both listeners, then serves them on the current tokio runtime.
    pub async fn start_on(config: SinkConfig) -> Result<Self, StartError> {
        let (grpc_listener, grpc_addr) = bind(Transport::Grpc, config.grpc_addr).await?;
        let (http_listener, http_addr) = bind(Transport::Http, config.http_addr).await?;
        let store = Arc::new(Store::new(config.retention));
        let (stop, _) = watch::channel(false);

        let grpc_serve =
            grpc_server::serve(grpc_listener, Arc::clone(&store), stopped(stop.subscribe()));
        let grpc_task = tokio::spawn(async move { grpc_serve.await.map_err(Into::into) });
        let http_serve =
            http_server::serve(http_listener, Arc::clone(&store), stopped(stop.subscribe()));
        let http_task = tokio::spawn(async move { http_serve.await.map_err(Into::into) });

        Ok(Self {
            store,
            grpc_addr,
            http_addr,
            stop,
            grpc_task,
            http_task,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The OTLP/HTTP base endpoint, e.g. `http://127.0.0.1:4318`, as used in
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; exporters append `/v1/traces` and so on.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The full OTLP/HTTP URL of one signal, e.g. `http://127.0.0.1:4318/v1/traces`, as
    /// used in `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    pub fn http_url(&self, signal: Signal) -> String {
        format!("{}/v1/{signal}", self.http_endpoint())
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store.spans()
    }

    /// Every log record received so far, in arrival order.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.store.logs()
    }

    /// Every metric received so far, in arrival order; periodic readers send each
    /// metric again on every export.
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        self.store.metrics()
    }

    /// Every export request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestInfo> {
        self.store.requests()
    }

    /// How many items and requests were received, whatever the [`Retention`].
    pub fn counts(&self) -> Counts {
        self.store.counts()
    }

    /// Waits until `predicate` holds for the spans received so far, then returns them.
    ///
    /// The predicate is re-evaluated after every export request. On timeout the error
    /// says how many spans arrived and names the first ones.
    pub async fn wait_for_spans<F>(
        &self,
        predicate: F,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, WaitError>
    where
        F: FnMut(&[ReceivedSpan]) -> bool,
    {
        self.store.wait_for_spans(predicate, timeout).await
    }

    /// Waits until `predicate` holds for the log records received so far, then
    /// returns them; see [`OtlpSink::wait_for_spans`].
    pub async fn wait_for_logs<F>(
        &self,
        predicate: F,
        timeout: Duration,
    ) -> Result<Vec<ReceivedLog>, WaitError>
    where
        F: FnMut(&[ReceivedLog]) -> bool,
    {
        self.store.wait_for_logs(predicate, timeout).await
    }

    /// Waits until `predicate` holds for the metrics received so far, then returns
    /// them; see [`OtlpSink::wait_for_spans`].
    pub async fn wait_for_metrics<F>(
        &self,
        predicate: F,
        timeout: Duration,
    ) -> Result<Vec<ReceivedMetric>, WaitError>
    where
        F: FnMut(&[ReceivedMetric]) -> bool,
    {
        self.store.wait_for_metrics(predicate, timeout).await
    }

    /// How the sink currently answers.
    pub fn behaviour(&self) -> Behaviour {
        self.store.behaviour()
    }

    /// Changes how the sink answers requests that arrive from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.store.set_behaviour(behaviour);
    }

    /// Forgets everything received, including the counts.
    pub fn clear(&self) {
        self.store.clear();
    }

    /// Stops both servers, letting in-flight requests finish for up to five seconds
    /// before aborting them.
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        let Self {
            stop,
            grpc_task,
            http_task,
            ..
        } = self;
        stop.send_replace(true);
        let (grpc, http) = tokio::join!(
            join(Transport::Grpc, grpc_task),
            join(Transport::Http, http_task),
        );
        grpc.and(http)
    }
}

async fn bind(
    transport: Transport,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind {
        transport,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local_addr))
}

/// Completes when `stop` turns `true` or its sender is dropped.
async fn stopped(mut stop: watch::Receiver<bool>) {
    // An error means the sink was dropped, which also means stop.
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn join(
    transport: Transport,
    mut task: JoinHandle<ServeResult>,
) -> Result<(), ShutdownError> {
    match tokio::time::timeout(SHUTDOWN_TIMEOUT, &mut task).await {
        Ok(Ok(result)) => result.map_err(|source| ShutdownError::Serve { transport, source }),
        Ok(Err(join_error)) => Err(ShutdownError::Serve {
            transport,
            source: Box::new(join_error),
        }),
        Err(_) => {
            task.abort();
            Err(ShutdownError::Timeout {
                transport,
                timeout: SHUTDOWN_TIMEOUT,
            })
        }
    }
}
