//! The frame-processor binary: configuration, telemetry, serve until SIGTERM/Ctrl-C.

use std::process::ExitCode;

use frame_processor::{App, Config};
use service_kit::env::Env;

/// mimalloc instead of glibc malloc: every frame allocates and frees buffers of a frame's
/// size, which glibc gives back to the kernel and faults in again (its heap trimming and
/// mmap threshold), so a frame cost tens of page faults and their kernel time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    service_kit::serve::main(|| async {
        let config = Config::from_env(&Env::from_process())?;
        let telemetry = telemetry::init(
            telemetry::service_info!(catalogs: [&frame_processor::metrics::CATALOG]),
        )?;
        frame_processor::metrics::register();
        let app = App::build(config, &telemetry).await?;
        tracing::info!(port = app.port(), "listening");
        // Also on stderr, for whoever starts the process with console logs turned off.
        eprintln!("listening on {}", app.url());
        app.run_until_stopped(service_kit::serve::shutdown_signal())
            .await?;
        tracing::info!("stopped serving");
        if let Err(error) = telemetry.shutdown() {
            eprintln!("warning: {error}");
        }
        Ok::<(), anyhow::Error>(())
    })
}
