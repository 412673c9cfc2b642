//! The tracker's typed configuration, from environment variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HOST`, `PORT` | `127.0.0.1`, `8081` | the HTTP listener (`0` = any free port) |
//! | `OTLP_GRPC_PORT` | `4317` | the OTLP/gRPC listener on `HOST` (`0` = any free port) |
//! | `DATA_DIR` | `./data/tracker` | SQLite database directory (`tracker.db` inside) |
//! | `DATABASE_URL` | unset | PostgreSQL instead of SQLite when set |
//! | `TRACE_URL_TEMPLATE` | unset | trace links in journeys, e.g. `http://localhost:16686/trace/{trace_id}` |
//! | `RETENTION_MAX_AGE` | unset | delete events that ended longer ago (`7d`) |
//! | `RETENTION_MAX_EVENTS` | unset | keep at most this many events |
//! | `RETENTION_MAX_BYTES` | unset | keep the log below this size (`10GiB`) |
//! | `RETENTION_INTERVAL` | `60s` | how often retention runs |
//! | `INGEST_MAX_BODY_BYTES` | `8MiB` | largest OTLP or JSON body, before and after gzip |
//! | `INGEST_BATCH_MAX_EVENTS` | `8192` | events per group commit, at most (about) |
//! | `INGEST_BATCH_MAX_WAIT` | `2ms` | how long a group commit waits for more requests |
//!
//! plus `MAX_BODY_BYTES` and `SHUTDOWN_DRAIN_TIMEOUT` ([`ListenConfig`]) and the standard
//! `OTEL_*` variables, except that `OTEL_TRACES_EXPORTER` defaults to `none` here
//! ([`telemetry_config`]).

use std::path::PathBuf;
use std::time::Duration;

use service_kit::env::{Env, EnvError};
use service_kit::serve::ListenConfig;
use telemetry::{ConfigError, TelemetryConfig};

use crate::ingest::writer::BatchConfig;
use crate::journey::TraceUrlTemplate;
use crate::store::{Retention, StoreConfig};

/// The default HTTP port.
pub const DEFAULT_PORT: u16 = 8081;

/// The default OTLP/gRPC port.
pub const DEFAULT_GRPC_PORT: u16 = 4317;

/// The tracker's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HTTP listener.
    pub listen: ListenConfig,
    /// The OTLP/gRPC port (on `listen.host`); 0 = any.
    pub grpc_port: u16,
    /// Where events are stored.
    pub store: StoreConfig,
    /// How much history to keep.
    pub retention: Retention,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Ingest limits and batching.
    pub ingest: IngestConfig,
    /// Where journey trace links point.
    pub trace_url_template: Option<TraceUrlTemplate>,
}

/// Ingest limits and batching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestConfig {
    /// Largest OTLP or JSON body, bytes, before and after gzip; also the gRPC message
    /// limit.
    pub max_body_bytes: usize,
    /// Group-commit batching.
    pub batch: BatchConfig,
}

impl Config {
    /// Reads the configuration; an invalid variable is an error naming it.
    pub fn from_env(env: &Env) -> Result<Config, EnvError> {
        let listen = ListenConfig::from_env(env, DEFAULT_PORT)?;
        let grpc_port = env.parse_or(
            "OTLP_GRPC_PORT",
            DEFAULT_GRPC_PORT,
            "a port number (0-65535)",
        )?;
        let store = match env.secret("DATABASE_URL") {
            Some(url) => {
                let url = url.expose();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(EnvError::redacted(
                        "DATABASE_URL",
                        "a postgres:// or postgresql:// URL",
                    ));
                }
                StoreConfig::Postgres {
                    url: url.to_owned(),
                }
            }
            None => {
                let data_dir = env
                    .string("DATA_DIR")
                    .unwrap_or_else(|| "./data/tracker".to_owned());
                StoreConfig::Sqlite {
                    path: PathBuf::from(data_dir).join("tracker.db"),
                }
            }
        };
        let trace_url_template = match env.string("TRACE_URL_TEMPLATE") {
            None => None,
            Some(template) => Some(TraceUrlTemplate::parse(&template).ok_or_else(|| {
                EnvError::new(
                    "TRACE_URL_TEMPLATE",
                    &template,
                    "an http(s) URL containing {trace_id}",
                )
            })?),
        };
        let retention = Retention {
            max_age: match env.raw("RETENTION_MAX_AGE") {
                None => None,
                Some(_) => Some(env.duration_or("RETENTION_MAX_AGE", Duration::ZERO)?),
            },
            max_events: env.parse("RETENTION_MAX_EVENTS", "a whole number of events")?,
            max_bytes: match env.raw("RETENTION_MAX_BYTES") {
                None => None,
                Some(_) => Some(env.bytes_or("RETENTION_MAX_BYTES", 0)?),
            },
        };
        let retention_interval = env.duration_or("RETENTION_INTERVAL", Duration::from_secs(60))?;
        if retention_interval.is_zero() {
            return Err(EnvError::new(
                "RETENTION_INTERVAL",
                "0",
                "a positive duration such as 60s",
            ));
        }
        let max_body_bytes = env.bytes_or("INGEST_MAX_BODY_BYTES", 8 << 20)?;
        let max_body_bytes = usize::try_from(max_body_bytes)
            .ok()
            .filter(|bytes| (1024..=(1 << 30)).contains(bytes))
            .ok_or_else(|| {
                EnvError::new(
                    "INGEST_MAX_BODY_BYTES",
                    &max_body_bytes.to_string(),
                    "a size from 1KiB to 1GiB",
                )
            })?;
        let max_events: usize = env.parse_or(
            "INGEST_BATCH_MAX_EVENTS",
            8192,
            "a number of events from 1 to 1000000",
        )?;
        if !(1..=1_000_000).contains(&max_events) {
            return Err(EnvError::new(
                "INGEST_BATCH_MAX_EVENTS",
                &max_events.to_string(),
                "a number of events from 1 to 1000000",
            ));
        }
        let max_wait = env.duration_or("INGEST_BATCH_MAX_WAIT", Duration::from_millis(2))?;
        if max_wait > Duration::from_secs(1) {
            return Err(EnvError::new(
                "INGEST_BATCH_MAX_WAIT",
                &format!("{max_wait:?}"),
                "a duration of at most 1s, such as 2ms",
            ));
        }
        Ok(Config {
            listen,
            grpc_port,
            store,
            retention,
            retention_interval,
            ingest: IngestConfig {
                max_body_bytes,
                batch: BatchConfig {
                    max_events,
                    max_wait,
                },
            },
            trace_url_template,
        })
    }
}

/// The telemetry configuration from the process environment, with one change:
/// `OTEL_TRACES_EXPORTER` defaults to `none`.
///
/// The OTLP default endpoint (`localhost:4317`) is the tracker's own gRPC port, so with
/// the usual default it would export its own request spans into itself, one export per
/// export, forever. Its spans carry no `frame.id` and would be dropped anyway; set
/// `OTEL_TRACES_EXPORTER=otlp` with an `OTEL_EXPORTER_OTLP_ENDPOINT` elsewhere (a
/// Collector, Jaeger) to trace the tracker itself.
pub fn telemetry_config() -> Result<TelemetryConfig, ConfigError> {
    TelemetryConfig::from_lookup(|name| {
        let value = std::env::var(name).ok();
        let unset = value.as_deref().is_none_or(|value| value.trim().is_empty());
        if name == "OTEL_TRACES_EXPORTER" && unset {
            Some("none".to_owned())
        } else {
            value
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sqlite_in_the_data_dir_and_the_usual_ports() {
        let config = Config::from_env(&Env::from_map::<&str, &str>([])).unwrap();
        assert_eq!(config.listen.port, 8081);
        assert_eq!(config.grpc_port, 4317);
        assert!(matches!(
            &config.store,
            StoreConfig::Sqlite { path } if path == &PathBuf::from("./data/tracker/tracker.db")
        ));
        assert_eq!(config.retention.max_age, None);
        assert_eq!(config.ingest.batch.max_wait, Duration::from_millis(2));
    }

    #[test]
    fn database_url_selects_postgres() {
        let env = Env::from_map([("DATABASE_URL", "postgres://u:pw@db/tracker")]);
        let config = Config::from_env(&env).unwrap();
        assert!(matches!(config.store, StoreConfig::Postgres { .. }));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value) in [
            ("OTLP_GRPC_PORT", "grpc"),
            ("TRACE_URL_TEMPLATE", "http://jaeger/trace"),
            ("RETENTION_MAX_AGE", "7 days"),
            ("RETENTION_MAX_EVENTS", "-1"),
            ("RETENTION_MAX_BYTES", "lots"),
            ("INGEST_MAX_BODY_BYTES", "1"),
            ("INGEST_BATCH_MAX_EVENTS", "0"),
            ("INGEST_BATCH_MAX_WAIT", "10s"),
            ("DATABASE_URL", "mysql://db"),
        ] {
            let error = Config::from_env(&Env::from_map([(var, value)])).unwrap_err();
            assert_eq!(error.var, var, "{error}");
            assert!(error.to_string().starts_with(&format!("invalid {var}=")));
        }
        let error =
            Config::from_env(&Env::from_map([("DATABASE_URL", "mysql://u:pw@db")])).unwrap_err();
        assert!(!error.to_string().contains("pw"), "{error}");
    }
}
