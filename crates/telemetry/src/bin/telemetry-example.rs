//! A small instrumented service: what a Pathlight service looks like, and the process the
//! telemetry integration tests and `cargo xtask demo` run.
//!
//! Configuration: the `OTEL_*` variables, plus `PORT` (default 0 = any free port),
//! `DOWNSTREAM_URL` (where `GET /chain` calls) and `EXAMPLE_RUNTIME`
//! (`multi_thread` (default), `multi_thread_1` or `current_thread`).
//! It logs `listening` with the bound port, and stops on SIGTERM or Ctrl-C.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use telemetry::http::ResponseError;
use telemetry::metrics::QueueMetrics;

#[derive(Clone)]
struct AppState {
    client: reqwest_middleware::ClientWithMiddleware,
    downstream: Option<String>,
    queue: QueueMetrics,
}

fn main() {
    if let Err(error) = run() {
        // One line naming the problem, e.g. the invalid variable.
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = match std::env::var("EXAMPLE_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        Ok("multi_thread_1") => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?,
        Ok("multi_thread") | Err(_) => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
        Ok(other) => return Err(format!("invalid EXAMPLE_RUNTIME={other:?}: expected current_thread, multi_thread_1 or multi_thread").into()),
    };
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| format!("invalid PORT={p:?}: expected a port number"))?,
        Err(_) => 0,
    };
    runtime.block_on(async move {
        let telemetry = telemetry::init(telemetry::service_info!())?;
        let state = AppState {
            client: telemetry.http_client(reqwest::Client::new()),
            downstream: std::env::var("DOWNSTREAM_URL").ok(),
            queue: QueueMetrics::new("example"),
        };
        let app = Router::new()
            .route("/items/{id}", get(get_item))
            .route("/fail", get(fail))
            .route("/chain", get(chain))
            .route("/health", get(|| async { "ok" }))
            .with_state(state)
            .merge(telemetry.metrics_router())
            .layer(telemetry.http_layer());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        tracing::info!(port, "listening");
        // Also on stderr, for whoever starts this process with console logs turned off.
        eprintln!("listening on http://127.0.0.1:{port}");
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await?;
        tracing::info!("stopped serving");
        // Lost telemetry is reported, but it does not make the service's exit a failure.
        if let Err(error) = telemetry.shutdown() {
            eprintln!("warning: {error}");
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

async fn get_item(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    state.queue.published(1);
    let item = load_item(&id).await;
    state.queue.processed(1);
    state.queue.set_length(0);
    state.queue.set_pending(0);
    state.queue.set_lag(Duration::ZERO);
    Json(serde_json::json!({ "id": id, "item": item })).into_response()
}

#[tracing::instrument(fields(item.id = %id))]
async fn load_item(id: &str) -> String {
    tracing::info!("loading item");
    tokio::time::sleep(Duration::from_millis(1)).await;
    format!("item-{id}")
}

async fn fail(State(state): State<AppState>) -> Response {
    state.queue.failed(1);
    state.queue.redelivered(1);
    state.queue.dead_lettered(1);
    telemetry::metrics::record_error("example", "storage");
    tracing::error!("storage is unavailable");
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": "storage unavailable" })),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(ResponseError::new("storage", "storage is unavailable"));
    response
}

async fn chain(State(state): State<AppState>) -> Response {
    let Some(downstream) = state.downstream.clone() else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "DOWNSTREAM_URL is not set" })),
        )
            .into_response();
    };
    match state.client.get(format!("{downstream}/items/7")).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            Json(serde_json::json!({ "downstream_status": status })).into_response()
        }
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({ "error": "downstream unreachable", "detail": error.to_string() })),
        )
            .into_response(),
    }
}
