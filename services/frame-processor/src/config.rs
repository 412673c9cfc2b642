//! The processor's configuration, from environment variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HOST`, `PORT` | `127.0.0.1`, `8080` | where to listen |
//! | `MAX_BODY_BYTES` | `8MiB` | largest request body (a 640x480 rgb24 frame in base64 is ~1.2 MB) |
//! | `SHUTDOWN_DRAIN_TIMEOUT` | `10s` | how long in-flight requests may finish |
//! | `STORE_MAX_FRAMES` | `10000` | results kept |
//! | `STORE_MAX_AGE` | `1h` | results older than this are dropped |
//! | `MAX_CAMERAS` | `256` | cameras whose statistics and history are kept |
//! | `MAX_CONCURRENT_FRAMES` | CPU count | frames analysed at the same time |
//! | `QUEUE` | `none` | also consume a queue: `redis` or `amqp` (see [`QueueSource`]) |

use std::time::Duration;

use service_kit::env::{Env, EnvError};
use service_kit::serve::ListenConfig;

use crate::consumer::QueueSource;
use crate::pipeline::ProcessorLimits;
use crate::store::StoreLimits;

/// The default port.
pub const DEFAULT_PORT: u16 = 8080;

/// The default request body limit: room for a 1920x1080 PNG or a 640x480 raw frame.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 << 20;

/// The processor's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where and how to listen.
    pub listen: ListenConfig,
    /// Bounds of the processor.
    pub limits: ProcessorLimits,
    /// The queue to consume besides HTTP, if any.
    pub queue: Option<QueueSource>,
}

impl Config {
    /// Reads the variables of the table above.
    pub fn from_env(env: &Env) -> Result<Config, EnvError> {
        let mut listen = ListenConfig::from_env(env, DEFAULT_PORT)?;
        listen.max_body_bytes = env.bytes_or("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?;
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Config {
            listen,
            limits: ProcessorLimits {
                store: StoreLimits {
                    max_frames: positive(env, "STORE_MAX_FRAMES", 10_000)?,
                    max_age: env.duration_or("STORE_MAX_AGE", Duration::from_secs(3600))?,
                },
                max_cameras: positive(env, "MAX_CAMERAS", 256)?,
                max_concurrent_frames: positive(env, "MAX_CONCURRENT_FRAMES", cpus)?,
            },
            queue: QueueSource::from_env(env)?,
        })
    }
}

fn positive(env: &Env, var: &str, default: usize) -> Result<usize, EnvError> {
    let value: usize = env.parse_or(var, default, "a positive integer")?;
    if value == 0 {
        return Err(EnvError::new(var, "0", "a positive integer"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_a_raw_vga_frame() {
        let config = Config::from_env(&Env::from_map::<&str, &str>([])).unwrap();
        assert_eq!(config.listen.port, DEFAULT_PORT);
        // 640 x 480 x 3 bytes in base64, plus JSON around it.
        assert!(config.listen.max_body_bytes > 640 * 480 * 3 * 4 / 3 + 4096);
        assert_eq!(config.limits.store.max_frames, 10_000);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let env = Env::from_map([("STORE_MAX_FRAMES", "0")]);
        assert_eq!(
            Config::from_env(&env).unwrap_err().to_string(),
            r#"invalid STORE_MAX_FRAMES="0": expected a positive integer"#
        );
        let env = Env::from_map([("STORE_MAX_AGE", "soon")]);
        assert_eq!(Config::from_env(&env).unwrap_err().var, "STORE_MAX_AGE");
    }
}
