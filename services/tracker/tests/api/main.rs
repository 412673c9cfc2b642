//! The tracker's integration tests: one binary, one module per feature, every test over a
//! real store (SQLite in a temporary directory; PostgreSQL on `DATABASE_URL` where named).

mod cli;
mod crash;
mod events_json;
mod fuzz;
mod helpers;
mod ingest_grpc;
mod ingest_http;
mod metrics;
mod query;
mod telemetry_e2e;
mod unavailable;
