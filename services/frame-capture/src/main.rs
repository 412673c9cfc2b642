//! The frame-capture binary: configuration, telemetry, capture until `DURATION` or
//! SIGTERM/Ctrl-C.

use std::process::ExitCode;

use frame_capture::{App, Config};
use service_kit::env::Env;

fn main() -> ExitCode {
    service_kit::serve::main(|| async {
        let config = Config::from_env(&Env::from_process())?;
        let telemetry = telemetry::init(
            telemetry::service_info!(catalogs: [&frame_capture::metrics::CATALOG]),
        )?;
        frame_capture::metrics::register(&config.cameras);
        let app = App::build(config, &telemetry).await?;
        tracing::info!(port = app.port(), "listening");
        // Also on stderr, for whoever starts the process with console logs turned off.
        eprintln!("listening on {}", app.url());
        app.run_until_stopped(service_kit::serve::shutdown_signal())
            .await?;
        tracing::info!("stopped");
        if let Err(error) = telemetry.shutdown() {
            eprintln!("warning: {error}");
        }
        Ok::<(), anyhow::Error>(())
    })
}
