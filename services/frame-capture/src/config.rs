//! The capture service's configuration, from environment variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HOST`, `PORT` | `127.0.0.1`, `8082` | where `/health`, `/stats`, `/metrics` listen |
//! | `CAMERAS` | `2` | a count (`cam01`..) or a comma-separated list of camera ids |
//! | `FPS` | `5` | frames per second per camera (0.1 to 120) |
//! | `WIDTH`, `HEIGHT` | `640`, `480` | frame size |
//! | `OBJECTS` | `3` | moving objects per camera (1 to 6) |
//! | `SEED` | `1` | scene seed; camera *n* uses `SEED + n` |
//! | `FORMAT` | `png` | pixel encoding sent: `png` or `rgb24` |
//! | `DELIVERY` | `http` | `http` (`POST {PROCESSOR_URL}/process`), `redis` or `amqp` |
//! | `PROCESSOR_URL` | `http://127.0.0.1:8080` | the processor |
//! | `DELIVERY_TIMEOUT` | `10s` | per-frame delivery timeout (HTTP) |
//! | `REDIS_URL` | `redis://127.0.0.1:6379` | with `DELIVERY=redis` (a secret: never logged) |
//! | `AMQP_URL` | `amqp://127.0.0.1:5672/%2f` | with `DELIVERY=amqp` (a secret) |
//! | `QUEUE_NAME` | `frames:queue` | the Redis stream or RabbitMQ queue |
//! | `MAX_IN_FLIGHT` | `4` | frames per camera being delivered at once; more are dropped |
//! | `DURATION` | unset | stop capturing after this long (unset: until stopped) |

use std::time::Duration;

use frame_tracking::FrameId;
use service_kit::env::{Env, EnvError, Secret};
use service_kit::serve::ListenConfig;

/// The default port.
pub const DEFAULT_PORT: u16 = 8082;

/// How frames reach the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryConfig {
    /// `POST {url}/process`.
    Http {
        /// The processor's base URL.
        url: String,
        /// Per-frame timeout.
        timeout: Duration,
    },
    /// A frame-tracking queue the processor consumes.
    Queue(QueueTarget),
}

/// Which broker carries frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Redis Streams.
    Redis,
    /// RabbitMQ.
    Amqp,
}

/// A queue to send frames to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTarget {
    /// The broker.
    pub kind: QueueKind,
    /// The broker URL (may carry credentials).
    pub url: Secret,
    /// The stream or queue name.
    pub name: String,
}

impl QueueTarget {
    /// Reads `REDIS_URL` or `AMQP_URL` and `QUEUE_NAME` for `kind`.
    pub fn from_env(env: &Env, kind: QueueKind) -> QueueTarget {
        let (var, default) = match kind {
            QueueKind::Redis => ("REDIS_URL", "redis://127.0.0.1:6379"),
            QueueKind::Amqp => ("AMQP_URL", "amqp://127.0.0.1:5672/%2f"),
        };
        QueueTarget {
            kind,
            url: env.secret(var).unwrap_or_else(|| Secret::new(default)),
            name: env
                .string("QUEUE_NAME")
                .unwrap_or_else(|| "frames:queue".to_owned()),
        }
    }
}

/// How pixels are encoded in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A PNG file.
    Png,
    /// Raw rgb24 rows.
    Rgb24,
}

impl Encoding {
    /// The `frame_data.format` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Png => "png",
            Encoding::Rgb24 => "rgb24",
        }
    }
}

/// The capture service's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where to listen.
    pub listen: ListenConfig,
    /// Camera ids.
    pub cameras: Vec<String>,
    /// Frames per second per camera.
    pub fps: f64,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Moving objects per camera.
    pub objects: usize,
    /// The scene seed of the first camera.
    pub seed: u64,
    /// Pixel encoding.
    pub encoding: Encoding,
    /// Delivery.
    pub delivery: DeliveryConfig,
    /// Frames per camera in delivery at once.
    pub max_in_flight: usize,
    /// Stop capturing after this long.
    pub duration: Option<Duration>,
}

impl Config {
    /// Reads the variables of the table above.
    pub fn from_env(env: &Env) -> Result<Config, EnvError> {
        let listen = ListenConfig::from_env(env, DEFAULT_PORT)?;
        let cameras = cameras(env)?;
        let fps: f64 = env.parse_or("FPS", 5.0, "frames per second, 0.1 to 120")?;
        if !(0.1..=120.0).contains(&fps) {
            return Err(EnvError::new(
                "FPS",
                &fps.to_string(),
                "frames per second, 0.1 to 120",
            ));
        }
        let side = |var: &str, default: u32| -> Result<u32, EnvError> {
            let expected = "a size in pixels, 64 to 4096";
            let value: u32 = env.parse_or(var, default, expected)?;
            if !(crate::scene::MIN_SIDE..=crate::scene::MAX_SIDE).contains(&value) {
                return Err(EnvError::new(var, &value.to_string(), expected));
            }
            Ok(value)
        };
        let objects: usize = env.parse_or("OBJECTS", 3, "a count of objects, 1 to 6")?;
        if !(1..=crate::scene::MAX_OBJECTS).contains(&objects) {
            return Err(EnvError::new(
                "OBJECTS",
                &objects.to_string(),
                "a count of objects, 1 to 6",
            ));
        }
        let encoding = match env.choice_or("FORMAT", &["png", "rgb24"], "png")? {
            "rgb24" => Encoding::Rgb24,
            _ => Encoding::Png,
        };
        let delivery = match env.choice_or("DELIVERY", &["http", "redis", "amqp"], "http")? {
            "redis" => DeliveryConfig::Queue(QueueTarget::from_env(env, QueueKind::Redis)),
            "amqp" => DeliveryConfig::Queue(QueueTarget::from_env(env, QueueKind::Amqp)),
            _ => DeliveryConfig::Http {
                url: processor_url(env)?,
                timeout: env.duration_or("DELIVERY_TIMEOUT", Duration::from_secs(10))?,
            },
        };
        let max_in_flight: usize = env.parse_or("MAX_IN_FLIGHT", 4, "a positive integer")?;
        if max_in_flight == 0 {
            return Err(EnvError::new("MAX_IN_FLIGHT", "0", "a positive integer"));
        }
        let duration = match env.raw("DURATION") {
            None => None,
            Some(_) => Some(env.duration_or("DURATION", Duration::ZERO)?),
        };
        Ok(Config {
            listen,
            cameras,
            fps,
            width: side("WIDTH", 640)?,
            height: side("HEIGHT", 480)?,
            objects,
            seed: env.parse_or("SEED", 1, "an unsigned integer")?,
            encoding,
            delivery,
            max_in_flight,
            duration,
        })
    }
}

fn cameras(env: &Env) -> Result<Vec<String>, EnvError> {
    let expected = "a count (1 to 64) or a comma-separated list of camera ids ([A-Za-z0-9-], at most 16 bytes)";
    let Some(value) = env.raw("CAMERAS") else {
        return Ok(vec!["cam01".to_owned(), "cam02".to_owned()]);
    };
    if let Ok(count) = value.parse::<usize>() {
        if !(1..=64).contains(&count) {
            return Err(EnvError::new("CAMERAS", &value, expected));
        }
        return Ok((1..=count).map(|n| format!("cam{n:02}")).collect());
    }
    let ids: Vec<String> = value.split(',').map(|id| id.trim().to_owned()).collect();
    let valid = ids
        .iter()
        .all(|id| FrameId::generate(id, "synthetic").is_ok());
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    if !valid || unique.len() != ids.len() || ids.len() > 64 {
        return Err(EnvError::new("CAMERAS", &value, expected));
    }
    Ok(ids)
}

fn processor_url(env: &Env) -> Result<String, EnvError> {
    let url = env
        .string("PROCESSOR_URL")
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let valid = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.contains('?')
        && !url.contains('@');
    if !valid {
        // The value is not echoed in full: a URL may carry credentials.
        return Err(EnvError::redacted(
            "PROCESSOR_URL",
            "an http:// or https:// base URL without credentials or query",
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, EnvError> {
        Config::from_env(&Env::from_map(pairs.iter().copied()))
    }

    #[test]
    fn defaults_are_two_vga_cameras_over_http() {
        let config = config(&[]).unwrap();
        assert_eq!(config.cameras, ["cam01", "cam02"]);
        assert_eq!((config.width, config.height), (640, 480));
        assert_eq!(config.encoding, Encoding::Png);
        assert_eq!(
            config.delivery,
            DeliveryConfig::Http {
                url: "http://127.0.0.1:8080".into(),
                timeout: Duration::from_secs(10)
            }
        );
        assert_eq!(config.duration, None);
    }

    #[test]
    fn cameras_are_a_count_or_a_list() {
        assert_eq!(
            config(&[("CAMERAS", "3")]).unwrap().cameras,
            ["cam01", "cam02", "cam03"]
        );
        assert_eq!(
            config(&[("CAMERAS", "door, yard")]).unwrap().cameras,
            ["door", "yard"]
        );
        for bad in ["0", "a b", "x,x", "has_underscore"] {
            assert_eq!(
                config(&[("CAMERAS", bad)]).unwrap_err().var,
                "CAMERAS",
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("FPS", "0"),
            ("FPS", "fast"),
            ("WIDTH", "10"),
            ("OBJECTS", "9"),
            ("FORMAT", "gif"),
            ("DELIVERY", "carrier-pigeon"),
            ("MAX_IN_FLIGHT", "0"),
            ("DURATION", "5"),
            ("PROCESSOR_URL", "ftp://x"),
        ] {
            assert_eq!(
                config(&[(var, value)]).unwrap_err().var,
                var,
                "{var}={value}"
            );
        }
        let queue = config(&[("DELIVERY", "redis"), ("REDIS_URL", "redis://:pw@h:1")]).unwrap();
        assert!(!format!("{queue:?}").contains("pw"));
        let error = config(&[("PROCESSOR_URL", "http://user:pw@host")]).unwrap_err();
        assert!(!error.to_string().contains("pw"), "{error}");
    }
}
