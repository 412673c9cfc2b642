//! Integration tests of the frame-processor: its HTTP API end to end.

mod accuracy;
mod helpers;
mod metrics;
mod process;
mod queue;
mod traces;
