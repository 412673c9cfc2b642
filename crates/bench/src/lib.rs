//! Shared pieces of the middleware benchmark's binaries (`bench-server`, `bench-load`):
//! the CPU work a handler does, identical in every mode, and its calibration.
//!
//! `cargo xtask bench middleware` builds these binaries in release mode and drives them;
//! see `xtask/src/bench.rs` for what is measured and how.

#![warn(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Runs `iterations` steps of integer arithmetic (an xorshift-multiply mix) that the
/// optimiser cannot remove, and returns the final state.
///
/// The benchmark gives every server the same iteration count, so "1 ms of work" is the
/// same instructions in every mode rather than "until a clock says 1 ms": a wall-clock
/// loop would do less work in a mode whose background threads preempt the handler.
pub fn burn(iterations: u64) -> u64 {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for step in 0..iterations {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state = state.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(step);
        state = black_box(state);
    }
    state
}

/// Nanoseconds the calling thread has been on CPU (`CLOCK_THREAD_CPUTIME_ID`).
///
/// `bench-server` reads it around [`burn`], so the benchmark can tell the handler's work
/// from everything else a server spends per request.
pub fn thread_cpu_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// How many [`burn`] iterations take `target` on this machine, from the fastest of
/// several timed runs (the fastest is the one least disturbed by other processes).
pub fn calibrate(target: Duration) -> u64 {
    const PROBE: u64 = 200_000;
    black_box(burn(black_box(PROBE)));
    let fastest = (0..25)
        .map(|_| {
            let start = Instant::now();
            black_box(burn(black_box(PROBE)));
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_millis(1))
        .max(Duration::from_nanos(1));
    let iterations = target.as_nanos() * u128::from(PROBE) / fastest.as_nanos();
    u64::try_from(iterations).unwrap_or(u64::MAX).max(1)
}
