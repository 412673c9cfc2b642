//! Integration tests: the example service as a real process, exporting to a real OTLP
//! receiver built from `opentelemetry-proto`.

mod helpers;
mod metrics;
mod shutdown;
mod spans;
mod startup;
mod traces;
mod variables;
