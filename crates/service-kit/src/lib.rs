//! What every Pathlight service shares, so that seven services do not each copy it.
//!
//! - [`env`]: typed configuration from environment variables; a bad value stops startup
//!   with one line naming the variable and what it accepts.
//! - [`error`]: [`ApiError`], the one error type of an HTTP API (a status and a JSON body
//!   `{"error": "...", "detail": ...}`), and extractors whose rejections are `ApiError`s.
//! - [`serve`]: binding first (so port 0 works), serving with graceful shutdown on
//!   SIGTERM/Ctrl-C and a bounded drain, and [`serve::main`] for a thin `main.rs`.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use service_kit::{env::Env, serve::{ListenConfig, Server}};
//!
//! fn main() -> std::process::ExitCode {
//!     service_kit::serve::main(|| async {
//!         let env = Env::from_process();
//!         let listen = ListenConfig::from_env(&env, 8080)?;
//!         let server = Server::bind(&listen).await?;
//!         let router = Router::new().route("/health", get(|| async { "ok" }));
//!         server.run(router, service_kit::serve::shutdown_signal()).await?;
//!         Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//!     })
//! }
//! ```

#![warn(missing_docs)]

pub mod env;
pub mod error;
pub mod serve;

pub use crate::env::{Env, EnvError};
pub use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
