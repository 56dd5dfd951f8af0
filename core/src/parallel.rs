//! Parallelism belongs to the host.
//!
//! The decoder splits each matrix product into independent tasks and hands
//! them to a [`Parallel`] implementation. The default, [`Inline`], runs them
//! one after another on the calling thread. A host plugs in its own thread
//! pool (GCD's `dispatch_apply`, .NET's thread pool, an RTOS task group).
//!
//! Every task computes whole output rows, so the result never depends on how
//! many threads ran them.

/// Runs `n_tasks` independent tasks, possibly in parallel.
pub trait Parallel: Sync {
    /// How many tasks are worth creating per parallel region (usually the
    /// number of threads). Must be at least 1.
    fn n_threads(&self) -> usize;

    /// Calls `task(i)` once for every `i` in `0..n_tasks`, in any order and on
    /// any threads, and returns only when all calls have returned.
    fn parallel_for(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync));
}

/// Runs every task on the calling thread, in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inline;

impl Parallel for Inline {
    fn n_threads(&self) -> usize {
        1
    }

    fn parallel_for(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        for i in 0..n_tasks {
            task(i);
        }
    }
}
