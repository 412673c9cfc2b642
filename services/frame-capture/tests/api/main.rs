//! Integration tests of the capture service: delivery, back-pressure, `/stats`, `/metrics`.

mod delivery;
mod helpers;
mod metrics;
