//! Serving: bind first (so port 0 works and tests learn the port), the standard layers,
//! graceful shutdown on SIGTERM/Ctrl-C with a bounded drain, and a thin `main`.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use telemetry::Telemetry;
use tokio::net::TcpListener;

use crate::env::{Env, EnvError};

/// Where and how a service listens. From `HOST` (default `127.0.0.1`: listening on every
/// interface is a deployment decision, `HOST=0.0.0.0`), `PORT` (the service's default; `0`
/// picks a free port), `MAX_BODY_BYTES` and `SHUTDOWN_DRAIN_TIMEOUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenConfig {
    /// The address to bind.
    pub host: IpAddr,
    /// The port to bind; 0 = any free port.
    pub port: u16,
    /// The largest request body accepted (413 above).
    pub max_body_bytes: u64,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
}

impl ListenConfig {
    /// The default request body limit: 2 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: u64 = 2 << 20;

    /// Reads `HOST`, `PORT`, `MAX_BODY_BYTES` and `SHUTDOWN_DRAIN_TIMEOUT`.
    pub fn from_env(env: &Env, default_port: u16) -> Result<ListenConfig, EnvError> {
        Ok(ListenConfig {
            host: env.parse_or(
                "HOST",
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                "an IP address such as 127.0.0.1 or 0.0.0.0",
            )?,
            port: env.parse_or("PORT", default_port, "a port number (0-65535)")?,
            max_body_bytes: env.bytes_or("MAX_BODY_BYTES", Self::DEFAULT_MAX_BODY_BYTES)?,
            drain_timeout: env.duration_or("SHUTDOWN_DRAIN_TIMEOUT", Duration::from_secs(10))?,
        })
    }

    /// Localhost on a free port with the default limits: for tests.
    pub fn local_any_port() -> ListenConfig {
        ListenConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// A bound listener, ready to serve a router.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    address: SocketAddr,
    config: ListenConfig,
}

impl Server {
    /// Binds the listener now, so the caller knows the port before serving.
    pub async fn bind(config: &ListenConfig) -> io::Result<Server> {
        let listener = TcpListener::bind((config.host, config.port)).await?;
        let address = listener.local_addr()?;
        Ok(Server {
            listener,
            address,
            config: config.clone(),
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The address actually bound.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://host:port`, for logs and clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish for at most
    /// the drain timeout.
    pub async fn run(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
        let graceful = async move {
            shutdown.await;
            let _ = draining_tx.send(());
        };
        let serve = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(graceful)
        .into_future();
        tokio::pin!(serve);
        tokio::select! {
            result = &mut serve => return result,
            Ok(()) = draining_rx => {}
        }
        tracing::info!(
            timeout_ms = self.config.drain_timeout.as_millis() as u64,
            "draining in-flight requests"
        );
        match tokio::time::timeout(self.config.drain_timeout, serve).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!("drain timeout reached; closing the remaining connections");
                Ok(())
            }
        }
    }
}

/// The standard outer layers of a service's router: the JSON 404 fallback, the body limit,
/// `GET /metrics` and the telemetry layer (server spans and RED metrics, outermost so that
/// it sees every response, the 404s and 413s included).
pub fn standard_router(router: Router, telemetry: &Telemetry, config: &ListenConfig) -> Router {
    let limit = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
    router
        .fallback(crate::error::not_found)
        .merge(telemetry.metrics_router())
        .layer(DefaultBodyLimit::max(limit))
        .layer(telemetry.http_layer())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// A thin `main`: runs `run` on a multi-threaded runtime; on error prints one line
/// `error: ...` (with its cause chain) to stderr and exits with 1.
pub fn main<F, Fut, E>(run: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_config_defaults_to_localhost_and_the_service_port() {
        let config = ListenConfig::from_env(&Env::from_map::<&str, &str>([]), 8081).unwrap();
        assert_eq!(config.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.port, 8081);
        assert_eq!(config.max_body_bytes, ListenConfig::DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn listen_config_names_the_bad_variable() {
        let env = Env::from_map([("HOST", "localhost")]);
        let error = ListenConfig::from_env(&env, 80).unwrap_err();
        assert_eq!(error.var, "HOST");
    }

    #[tokio::test]
    async fn serving_stops_when_the_shutdown_future_resolves() {
        let server = Server::bind(&ListenConfig::local_any_port()).await.unwrap();
        assert_ne!(server.port(), 0);
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(router, async {
            let _ = stop_rx.await;
        }));
        stop_tx.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), serving).await;
        assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
    }
}
