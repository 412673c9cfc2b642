//! The detection threads: a fixed pool that lives as long as the [`Processor`], so the
//! stages of a frame run in parallel without starting threads per frame.
//!
//! Starting three threads per frame cost about 2 % of the CPU per frame (clone, exit, the
//! allocator's fresh per-thread heap), and with telemetry on every fresh thread also set up
//! its per-thread state again (the tracing registry's span stack, the metrics recorder's
//! epoch handle, the span encoder's buffers): a cost that showed up only with telemetry,
//! and grew its overhead. Here the frame's own (blocking) thread runs the first stage and
//! the pool runs the others; each stage runs inside its span, entered on whichever thread
//! runs it, so the span tree is the same as with scoped threads.
//!
//! [`Processor`]: crate::pipeline::Processor

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

/// A unit of work for the pool: runs one stage and reports back on its own channel.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of threads running [`Job`]s.
#[derive(Debug)]
pub(crate) struct StagePool {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl StagePool {
    /// Starts up to `threads` workers named `detect-{n}`. Threads that cannot be started
    /// are left out: with none, [`StagePool::run`] runs every job on the caller's thread.
    pub(crate) fn start(threads: usize) -> StagePool {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let threads: Vec<JoinHandle<()>> = (0..threads)
            .filter_map(|n| {
                let queue: Receiver<Job> = queue.clone();
                std::thread::Builder::new()
                    .name(format!("detect-{n}"))
                    .spawn(move || {
                        for job in queue {
                            job();
                        }
                    })
                    .inspect_err(|error| {
                        tracing::warn!(%error, "cannot start a detection thread");
                    })
                    .ok()
            })
            .collect();
        StagePool {
            jobs: (!threads.is_empty()).then_some(jobs),
            threads,
        }
    }

    /// Runs every task, the first on the caller's thread and the others on the pool, and
    /// returns their results in the order of `tasks`; a task that panicked yields `None`.
    pub(crate) fn run<T, F>(&self, tasks: Vec<F>) -> Vec<Option<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let count = tasks.len();
        let (done, results) = crossbeam_channel::bounded::<(usize, Option<T>)>(count);
        let mut inline = Vec::new();
        for (index, task) in tasks.into_iter().enumerate() {
            let done = done.clone();
            let job = move || {
                let result = catch_unwind(AssertUnwindSafe(task)).ok();
                // The receiver lives until every result arrived.
                let _ = done.send((index, result));
            };
            match &self.jobs {
                Some(jobs) if index > 0 => {
                    if let Err(rejected) = jobs.send(Box::new(job)) {
                        inline.push(rejected.0);
                    }
                }
                _ => inline.push(Box::new(job)),
            }
        }
        drop(done);
        for job in inline {
            job();
        }
        let mut ordered: Vec<Option<T>> = (0..count).map(|_| None).collect();
        // Every job sends exactly once (a panic is caught), so this ends after `count`.
        for (index, result) in results.iter().take(count) {
            ordered[index] = result;
        }
        ordered
    }
}

impl Drop for StagePool {
    fn drop(&mut self) {
        // Closing the queue ends every worker once it finished its current job.
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    #[test]
    fn runs_every_task_in_order_of_submission() {
        let pool = StagePool::start(2);
        let tasks: Vec<_> = (0..5).map(|n| move || n * 10).collect();
        assert_eq!(
            pool.run(tasks),
            vec![Some(0), Some(10), Some(20), Some(30), Some(40)]
        );
    }

    #[test]
    fn tasks_run_in_parallel_on_the_pool() {
        // Three tasks that each wait for the others: they finish only when all three run
        // at the same time (the caller's thread and two workers).
        let pool = StagePool::start(2);
        let barrier = Arc::new(Barrier::new(3));
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                move || {
                    barrier.wait();
                    std::thread::current().name().unwrap_or_default().to_owned()
                }
            })
            .collect();
        let names = pool.run(tasks);
        assert_eq!(names.len(), 3);
        let on_pool = |name: &Option<String>| name.as_deref().map(|n| n.starts_with("detect-"));
        assert_eq!(on_pool(&names[0]), Some(false), "{names:?}");
        assert_eq!(on_pool(&names[1]), Some(true), "{names:?}");
        assert_eq!(on_pool(&names[2]), Some(true), "{names:?}");
    }

    #[test]
    fn a_panicking_task_yields_none_and_the_pool_keeps_working() {
        let pool = StagePool::start(1);
        let tasks: Vec<Box<dyn FnOnce() -> u8 + Send>> =
            vec![Box::new(|| 1), Box::new(|| panic!("detector bug"))];
        assert_eq!(pool.run(tasks), vec![Some(1), None]);
        let tasks: Vec<Box<dyn FnOnce() -> u8 + Send>> = vec![Box::new(|| 2), Box::new(|| 3)];
        assert_eq!(pool.run(tasks), vec![Some(2), Some(3)]);
    }

    #[test]
    fn without_workers_everything_runs_on_the_caller() {
        let pool = StagePool::start(0);
        let tasks: Vec<_> = (0..3)
            .map(|n| move || (n, std::thread::current().id()))
            .collect();
        let here = std::thread::current().id();
        for (n, result) in pool.run(tasks).into_iter().enumerate() {
            assert_eq!(result, Some((n, here)));
        }
    }
}
