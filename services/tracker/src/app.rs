//! The running service: [`App::build`] opens the store and binds both listeners (so port
//! 0 works and tests learn the ports), [`App::run_until_stopped`] serves HTTP and gRPC
//! until shutdown, then drains the ingest writer so every acknowledged request stays
//! acknowledged.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use service_kit::serve::Server;
use telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{ApiConfig, AppState};
use crate::config::Config;
use crate::ingest::writer::{IngestWriter, WriterTask};
use crate::metrics::TrackerMetrics;
use crate::store::{self, JourneyStore, StoreError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot bind the {listener} listener to {address}")]
    Bind {
        /// `HTTP` or `OTLP/gRPC`.
        listener: &'static str,
        /// The address tried.
        address: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Http(#[source] io::Error),
    /// The gRPC server failed.
    #[error("the OTLP/gRPC server failed")]
    Grpc(#[source] tonic::transport::Error),
    /// A server task panicked.
    #[error("a server task failed: {0}")]
    Task(String),
}

/// The tracker, bound and ready to serve.
#[derive(Debug)]
pub struct App {
    server: Server,
    grpc_listener: TcpListener,
    grpc_address: SocketAddr,
    router: Router,
    state: AppState,
    writer_task: WriterTask,
    retention: Option<JoinHandle<()>>,
    drain_timeout: std::time::Duration,
}

impl App {
    /// Opens the store described by `config.store`, then binds and wires everything.
    pub async fn build(config: Config, telemetry: &Telemetry) -> Result<App, StartError> {
        let store = store::open(&config.store).await?;
        App::with_store(config, store, telemetry).await
    }

    /// Like [`App::build`], over a store already open.
    pub async fn with_store(
        config: Config,
        store: Arc<dyn JourneyStore>,
        telemetry: &Telemetry,
    ) -> Result<App, StartError> {
        let server = Server::bind(&config.listen)
            .await
            .map_err(|source| StartError::Bind {
                listener: "HTTP",
                address: format!("{}:{}", config.listen.host, config.listen.port),
                source,
            })?;
        let grpc_bind = SocketAddr::new(config.listen.host, config.grpc_port);
        let bind_error = |source| StartError::Bind {
            listener: "OTLP/gRPC",
            address: grpc_bind.to_string(),
            source,
        };
        let grpc_listener = TcpListener::bind(grpc_bind).await.map_err(bind_error)?;
        let grpc_address = grpc_listener.local_addr().map_err(bind_error)?;

        let metrics = Arc::new(TrackerMetrics::register());
        let (writer, writer_task) = IngestWriter::start(
            Arc::clone(&store),
            config.ingest.batch,
            Arc::clone(&metrics),
        );
        let no_retention = config.retention.max_age.is_none()
            && config.retention.max_events.is_none()
            && config.retention.max_bytes.is_none();
        let retention = (!no_retention).then(|| {
            store::spawn_retention(
                Arc::clone(&store),
                config.retention,
                config.retention_interval,
            )
        });
        let state = AppState {
            store,
            writer,
            metrics,
            config: Arc::new(ApiConfig {
                max_body_bytes: config.ingest.max_body_bytes,
                trace_url_template: config.trace_url_template.clone(),
            }),
        };
        let router = service_kit::serve::standard_router(
            crate::api::router(state.clone()),
            telemetry,
            &config.listen,
        );
        Ok(App {
            server,
            grpc_listener,
            grpc_address,
            router,
            state,
            writer_task,
            retention,
            drain_timeout: config.listen.drain_timeout,
        })
    }

    /// The HTTP port actually bound.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The OTLP/gRPC port actually bound.
    pub fn grpc_port(&self) -> u16 {
        self.grpc_address.port()
    }

    /// `http://host:port` of the HTTP API.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `http://host:port` of the OTLP/gRPC listener.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_address)
    }

    /// The store the service writes to.
    pub fn store(&self) -> Arc<dyn JourneyStore> {
        Arc::clone(&self.state.store)
    }

    /// Serves until `shutdown` resolves (or a server fails), lets in-flight requests
    /// finish within the drain timeout, then waits for the writer to commit what it holds.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let App {
            server,
            grpc_listener,
            router,
            state,
            writer_task,
            retention,
            drain_timeout,
            ..
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut receiver: watch::Receiver<bool>| async move {
            let _ = receiver.wait_for(|stop| *stop).await;
        };
        let mut http = tokio::spawn(server.run(router, stopped(stop_rx.clone())));
        let mut grpc = tokio::spawn(crate::grpc::serve(
            grpc_listener,
            state.clone(),
            stopped(stop_rx),
        ));
        drop(state);
        let mut result = Ok(());
        let mut http_done = false;
        let mut grpc_done = false;
        tokio::select! {
            () = shutdown => {}
            joined = &mut http => {
                http_done = true;
                result = http_result(joined);
            }
            joined = &mut grpc => {
                grpc_done = true;
                result = grpc_result(joined);
            }
        }
        let _ = stop_tx.send(true);
        // The HTTP server bounds its own drain; gRPC gets the same bound here.
        if !http_done {
            let joined = http.await;
            result = result.and(http_result(joined));
        }
        if !grpc_done {
            match tokio::time::timeout(drain_timeout, &mut grpc).await {
                Ok(joined) => result = result.and(grpc_result(joined)),
                Err(_) => {
                    tracing::warn!("OTLP/gRPC drain timeout reached; closing its connections");
                    grpc.abort();
                }
            }
        }
        // Every request handler has finished, so the writer's queue only shrinks now.
        if tokio::time::timeout(drain_timeout, writer_task.finished())
            .await
            .is_err()
        {
            tracing::warn!("the ingest writer did not drain within the drain timeout");
        }
        if let Some(retention) = retention {
            retention.abort();
        }
        result
    }
}

fn http_result(joined: Result<io::Result<()>, tokio::task::JoinError>) -> Result<(), RunError> {
    match joined {
        Ok(result) => result.map_err(RunError::Http),
        Err(error) => Err(RunError::Task(error.to_string())),
    }
}

fn grpc_result(
    joined: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), RunError> {
    match joined {
        Ok(result) => result.map_err(RunError::Grpc),
        Err(error) => Err(RunError::Task(error.to_string())),
    }
}
