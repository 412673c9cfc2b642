//! [`App`]: the cameras and the small HTTP API, bound and ready to run.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use service_kit::serve::{Server, standard_router};
use telemetry::Telemetry;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::router;
use crate::camera::{Camera, Pace};
use crate::config::Config;
use crate::delivery::{Delivery, DeliveryError};
use crate::scene::{Scene, SceneConfig, SceneError};
use crate::stats::Stats;

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The port cannot be bound.
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// A scene cannot be built from the configuration.
    #[error("invalid scene: {0}")]
    Scene(#[from] SceneError),
    /// The delivery cannot be set up.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// The service, bound and ready to run.
#[derive(Debug)]
pub struct App {
    server: Server,
    router: Router,
    cameras: Vec<Arc<Camera>>,
    pace: Pace,
    duration: Option<Duration>,
    stats: Arc<Stats>,
}

impl App {
    /// Binds the listener, builds every camera's scene and the delivery.
    pub async fn build(config: Config, telemetry: &Telemetry) -> Result<App, BuildError> {
        let server = Server::bind(&config.listen).await?;
        let stats = Arc::new(Stats::new(&config.cameras));
        let delivery = Delivery::from_config(&config.delivery, telemetry).await?;
        let mut cameras = Vec::with_capacity(config.cameras.len());
        for index in 0..config.cameras.len() {
            let scene = Scene::new(SceneConfig {
                width: config.width,
                height: config.height,
                objects: config.objects,
                seed: config.seed.wrapping_add(index as u64),
            })?;
            if let Some(camera) = Camera::new(
                index,
                scene,
                config.encoding,
                delivery.clone(),
                stats.clone(),
            ) {
                cameras.push(Arc::new(camera));
            }
        }
        let router = standard_router(router(stats.clone()), telemetry, &config.listen);
        Ok(App {
            server,
            router,
            cameras,
            pace: Pace {
                fps: config.fps,
                max_in_flight: config.max_in_flight,
            },
            duration: config.duration,
            stats,
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

    /// The counters behind `/stats`.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The cameras (to capture single frames, as tests do).
    pub fn cameras(&self) -> &[Arc<Camera>] {
        &self.cameras
    }

    /// Captures until `DURATION` has passed (cameras stop, the API keeps serving) or
    /// `shutdown` resolves (cameras stop, frames in delivery finish, serving drains).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = shutdown_tx.send(true);
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut cameras = JoinSet::new();
        for camera in self.cameras {
            cameras.spawn(camera.run(self.pace, stop_rx.clone()));
        }
        let stats = self.stats.clone();
        let duration = self.duration;
        let mut until_shutdown = shutdown_rx.clone();
        let capturing = tokio::spawn(async move {
            let elapsed = async {
                match duration {
                    Some(duration) => tokio::time::sleep(duration).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = elapsed => tracing::info!("capture duration reached; cameras stop"),
                _ = until_shutdown.wait_for(|stopped| *stopped) => {}
            }
            let _ = stop_tx.send(true);
            while cameras.join_next().await.is_some() {}
            stats.stopped();
            tracing::info!("capture finished");
        });
        let mut serving_shutdown = shutdown_rx;
        let served = self
            .server
            .run(self.router, async move {
                let _ = serving_shutdown.wait_for(|stopped| *stopped).await;
            })
            .await;
        let _ = capturing.await;
        served
    }
}
