//! Queue adapters against real servers: trace propagation checked on exported spans,
//! redelivery after a restart or a crash, dead letters, trimming and metrics.
//!
//! Redis and RabbitMQ must be reachable (`REDIS_URL`, `AMQP_URL`, or the local defaults);
//! a test fails naming the server when it is not.

mod crash;
mod helpers;
mod memory;
mod poison;
mod propagation;
mod rabbitmq;
mod redis;
