//! [`App`]: the processor bound to its port, ready to serve.

use std::future::Future;
use std::sync::Arc;

use frame_tracking::queue::{FrameQueue, QueueError};

use axum::Router;
use service_kit::serve::{Server, standard_router};
use telemetry::Telemetry;
use tokio::sync::watch;

use crate::api::{AppState, router};
use crate::config::Config;
use crate::consumer::consume;
use crate::detect::default_detectors;
use crate::pipeline::Processor;

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The port cannot be bound.
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// The configured queue cannot be reached.
    #[error("cannot connect the frame queue: {0}")]
    Queue(#[from] QueueError),
}

/// The service, bound and ready to run.
#[derive(Debug)]
pub struct App {
    server: Server,
    router: Router,
    state: AppState,
    queue: Option<FrameQueue>,
}

impl App {
    /// Binds the listener (port 0 picks a free one) and builds the router.
    ///
    /// With `QUEUE` set, the queue is connected here too: an unreachable broker stops
    /// startup.
    pub async fn build(config: Config, telemetry: &Telemetry) -> Result<App, BuildError> {
        let server = Server::bind(&config.listen).await?;
        let queue = match &config.queue {
            Some(source) => Some(source.connect().await?),
            None => None,
        };
        let state = AppState {
            processor: Arc::new(Processor::new(default_detectors(), config.limits)),
        };
        let router = standard_router(router(state.clone()), telemetry, &config.listen);
        Ok(App {
            server,
            router,
            state,
            queue,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The shared state (for a queue consumer next to the HTTP API).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves (and consumes the queue) until `shutdown` resolves, then drains.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let consumer = self
            .queue
            .map(|queue| tokio::spawn(consume(queue, self.state.processor.clone(), stop_rx)));
        let served = self
            .server
            .run(self.router, async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await;
        if let Some(consumer) = consumer {
            let _ = consumer.await;
        }
        served
    }
}
