//! [`App`]: the processor bound to its port, ready to serve.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::Router;
use service_kit::serve::{Server, standard_router};
use telemetry::Telemetry;

use crate::api::{AppState, router};
use crate::config::Config;
use crate::detect::default_detectors;
use crate::pipeline::Processor;

/// The service, bound and ready to run.
#[derive(Debug)]
pub struct App {
    server: Server,
    router: Router,
    state: AppState,
}

impl App {
    /// Binds the listener (port 0 picks a free one) and builds the router.
    pub async fn build(config: Config, telemetry: &Telemetry) -> io::Result<App> {
        let server = Server::bind(&config.listen).await?;
        let state = AppState {
            processor: Arc::new(Processor::new(default_detectors(), config.limits)),
        };
        let router = standard_router(router(state.clone()), telemetry, &config.listen);
        Ok(App {
            server,
            router,
            state,
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

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        self.server.run(self.router, shutdown).await
    }
}
