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
///
/// # Safety
///
/// The decoder's tasks write disjoint parts of shared buffers, each task
/// its own part, so an implementation must call `task(i)` **exactly once**
/// for every `i` in `0..n_tasks` (never twice, never skipping one, never an
/// index outside the range) and return from `parallel_for` only after every
/// call has returned. An implementation that breaks this would make two
/// tasks write the same memory at once: undefined behaviour, which is why
/// implementing the trait is `unsafe`. (The C ABI's adapter for a host's
/// `parallel_for` callback checks the host's calls and enforces this.)
pub unsafe trait Parallel: Sync {
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

// SAFETY: every index is called once, in order, before returning.
unsafe impl Parallel for Inline {
    fn n_threads(&self) -> usize {
        1
    }

    fn parallel_for(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        for i in 0..n_tasks {
            task(i);
        }
    }
}

/// A task of [`for_each_chunk_pair`]: its index and its two chunks.
pub(crate) type ChunkPairTask<'t> = dyn Fn(usize, &mut [f32], &mut [f32]) + Sync + 't;

/// Calls `task(i, &mut a[i * ca..][..ca], &mut b[i * cb..][..cb])` for every
/// `i` in `0..n`: on `par` when `parallel`, else in order on this thread.
/// Each task gets its own chunks of both buffers, so tasks never share
/// what they write.
pub(crate) fn for_each_chunk_pair(
    par: &dyn Parallel,
    parallel: bool,
    n: usize,
    (a, ca): (&mut [f32], usize),
    (b, cb): (&mut [f32], usize),
    task: &ChunkPairTask,
) {
    let (a, b) = (&mut a[..n * ca], &mut b[..n * cb]);
    if !parallel || n <= 1 || ca == 0 || cb == 0 {
        for (i, (a, b)) in a
            .chunks_exact_mut(ca.max(1))
            .zip(b.chunks_exact_mut(cb.max(1)))
            .enumerate()
        {
            task(i, a, b);
        }
        return;
    }
    let (pa, pb) = (Chunks(a.as_mut_ptr()), Chunks(b.as_mut_ptr()));
    par.parallel_for(n, &|i| {
        // SAFETY: `a` and `b` hold `n` chunks each (sliced above) and stay
        // borrowed until `parallel_for` returns; task `i` alone gets chunk
        // `i` of each, so no two live slices overlap.
        let (a, b) = unsafe {
            (
                core::slice::from_raw_parts_mut(pa.at(i * ca), ca),
                core::slice::from_raw_parts_mut(pb.at(i * cb), cb),
            )
        };
        task(i, a, b);
    });
}

/// The start of a buffer whose disjoint chunks parallel tasks write.
#[derive(Clone, Copy)]
struct Chunks(*mut f32);

impl Chunks {
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

// SAFETY: only used by `for_each_chunk_pair` and `for_each_strip`, whose
// tasks write disjoint parts of a buffer that outlives them.
unsafe impl Sync for Chunks {}

/// One output of [`for_each_strip`]: whole vectors of `rows` values, one
/// after the other (vector `b`'s rows at `out[b * rows..(b + 1) * rows]`),
/// split into `n_tasks` strips of `per_task` rows: strip `t` is rows
/// `t * per_task..` (at most `per_task`, within `rows`) of every vector.
#[derive(Default)]
pub(crate) struct StripJob<'o> {
    /// The output: whole vectors of `rows` values, one after the other.
    pub out: &'o mut [f32],
    /// Rows per vector.
    pub rows: usize,
    /// Rows per strip (positive).
    pub per_task: usize,
    /// Strips.
    pub n_tasks: usize,
}

/// The most outputs [`for_each_strip`] takes.
pub(crate) const MAX_STRIP_JOBS: usize = 4;

/// Calls `task(j, t, strip)` for every strip `t` of every output `j`, on
/// `par`, in one parallel region (one wake-up and one wait for all). The
/// strips are disjoint, so the tasks run in parallel safely.
pub(crate) fn for_each_strip(
    par: &dyn Parallel,
    jobs: &mut [StripJob],
    task: &(dyn Fn(usize, usize, &mut Strip) + Sync),
) {
    assert!(
        jobs.len() <= MAX_STRIP_JOBS,
        "for_each_strip: too many outputs"
    );
    // Per job: its start, rows, vectors, strip size, strips, first task.
    let mut shape = [(Chunks(core::ptr::null_mut()), 0, 0, 0, 0, 0); MAX_STRIP_JOBS];
    let mut total = 0;
    for (s, job) in shape.iter_mut().zip(jobs.iter_mut()) {
        let n_vecs = job.out.len().checked_div(job.rows).unwrap_or(0);
        assert!(
            n_vecs * job.rows == job.out.len() && job.per_task > 0,
            "for_each_strip: out is not whole vectors"
        );
        *s = (
            Chunks(job.out.as_mut_ptr()),
            job.rows,
            n_vecs,
            job.per_task,
            job.n_tasks,
            total,
        );
        total += job.n_tasks;
    }
    let shape = &shape[..jobs.len()];
    par.parallel_for(total, &|i| {
        // The job whose tasks include i (the last one starting at or before it).
        let j = shape.iter().rposition(|s| s.5 <= i && s.4 > 0).unwrap_or(0);
        let (base, rows, n_vecs, per_task, _, first) = shape[j];
        let t = i - first;
        let mut strip = Strip {
            base,
            rows,
            n_vecs,
            start: (t * per_task).min(rows),
            end: ((t + 1) * per_task).min(rows),
            _out: core::marker::PhantomData,
        };
        task(j, t, &mut strip);
    });
}

/// One task's rows of every vector of an output split by
/// [`for_each_strip`].
pub(crate) struct Strip<'o> {
    base: Chunks,
    rows: usize,
    n_vecs: usize,
    start: usize,
    end: usize,
    _out: core::marker::PhantomData<&'o mut [f32]>,
}

impl Strip<'_> {
    /// The strip's first row.
    pub(crate) fn start(&self) -> usize {
        self.start
    }

    /// One past the strip's last row.
    pub(crate) fn end(&self) -> usize {
        self.end
    }

    /// The strip's rows of vector `b`.
    pub(crate) fn vector(&mut self, b: usize) -> &mut [f32] {
        assert!(b < self.n_vecs, "Strip: vector out of range");
        // SAFETY: rows start..end of vector b lie inside its job's `out`
        // (asserted by `for_each_strip` and above), which stays
        // exclusively borrowed until `parallel_for` returns; each task index
        // is called exactly once (the `Parallel` contract) and owns rows
        // start..end of every vector of one job, which no other task's strip
        // covers; `&mut self` keeps one slice of this strip alive at a time.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.base.at(b * self.rows + self.start),
                self.end - self.start,
            )
        }
    }
}

#[cfg(feature = "std")]
pub use pool::{PoolStats, ThreadPool};

#[cfg(feature = "std")]
mod pool {
    use super::Parallel;
    use crate::error::Error;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread::JoinHandle;
    use std::vec::Vec;

    /// How many times an idle worker polls for new work before it sleeps.
    const SPIN: u32 = 20_000;

    /// The task of the current parallel region, its lifetime erased.
    #[derive(Clone, Copy)]
    struct TaskRef(*const (dyn Fn(usize) + Sync));

    // SAFETY: the pointee is `Sync`, and the pointer is only dereferenced
    // while `parallel_for` (which owns the borrow) waits for the region to end.
    unsafe impl Send for TaskRef {}

    pub(crate) struct Shared {
        /// Bumped for every parallel region; workers wait for a change.
        generation: AtomicU64,
        /// The current region: its generation, task and size.
        job: Mutex<Option<(u64, TaskRef, usize)>>,
        /// The next task to claim: the region's generation (low 32 bits) in
        /// the high half, the task index in the low half. A claim succeeds
        /// only for the current region, so a worker that is late never runs
        /// a task of a region that has ended.
        next: AtomicU64,
        /// Tasks finished in the current region.
        done: AtomicUsize,
        /// A task panicked in the current region.
        panicked: AtomicBool,
        shutdown: AtomicBool,
        /// Workers that have started and reached their wait loop.
        started: AtomicUsize,
        /// The number of workers asleep on `wake` (changed only under
        /// `sleep`), so that a region wakes them (a system call) only when
        /// one is asleep: while workers spin, starting a region is a store.
        sleep: Mutex<usize>,
        wake: Condvar,
    }

    impl Shared {
        /// Claims and runs tasks of region `generation` until none is left.
        fn run_tasks(&self, generation: u64, task: TaskRef, n_tasks: usize) {
            let tag = (generation & 0xffff_ffff) << 32;
            let mut cur = self.next.load(Ordering::Acquire);
            loop {
                if cur & !0xffff_ffff != tag || (cur & 0xffff_ffff) as usize >= n_tasks {
                    return;
                }
                match self.next.compare_exchange_weak(
                    cur,
                    cur + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {}
                    Err(now) => {
                        cur = now;
                        continue;
                    }
                }
                let i = (cur & 0xffff_ffff) as usize;
                cur += 1;
                // SAFETY: see `TaskRef`: the claim succeeded for the current
                // region, which closes only once every claimed task has
                // counted itself done, so the task is still borrowed.
                let f = unsafe { &*task.0 };
                if catch_unwind(AssertUnwindSafe(|| f(i))).is_err() {
                    self.panicked.store(true, Ordering::Release);
                }
                self.done.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// A persistent pool of worker threads; the calling thread works too.
    ///
    /// `ThreadPool::try_new(n)` starts `n - 1` threads. Regions from several
    /// threads are serialised. Dropping the pool stops and joins its threads.
    pub struct ThreadPool {
        shared: Arc<Shared>,
        workers: Vec<JoinHandle<()>>,
        n_threads: usize,
        region: Mutex<()>,
        /// Parallel regions run on the threads so far.
        regions: AtomicU64,
        /// Nanoseconds the calling thread spent, at the ends of those
        /// regions, waiting for the other threads' tasks.
        waited_ns: AtomicU64,
    }

    /// What a [`ThreadPool`] counted since it was made
    /// ([`ThreadPool::stats`]): how often it woke its threads, and how long
    /// the calling thread then waited for them, its own tasks done (a
    /// barrier's cost: a core idle while another finishes).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct PoolStats {
        /// Parallel regions run on the threads (those of one task, or on a
        /// pool of one thread, run inline and are not counted).
        pub regions: u64,
        /// Time the calling thread waited at the ends of those regions.
        pub waited: std::time::Duration,
    }

    impl core::fmt::Debug for ThreadPool {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("ThreadPool")
                .field("n_threads", &self.n_threads)
                .finish()
        }
    }

    impl ThreadPool {
        /// A pool of `n_threads` threads in all (the caller included);
        /// 0 means one per available core.
        ///
        /// Errors: [`Error::ThreadSpawn`] if the system refuses a thread;
        /// the threads already started are stopped and joined first, so
        /// nothing is left behind.
        pub fn try_new(n_threads: usize) -> Result<ThreadPool, Error> {
            ThreadPool::start(n_threads, true, spawn_worker)
        }

        /// Like [`ThreadPool::try_new`], but never fails: when the system
        /// refuses a thread, the pool keeps the threads that did start (at
        /// least the calling thread, which always works), and
        /// [`Parallel::n_threads`] says how many that is. It never panics,
        /// so it cannot poison the caller's state; results do not depend
        /// on the thread count.
        pub fn new(n_threads: usize) -> ThreadPool {
            // Without `all_or_nothing` a refusal only stops the spawning.
            ThreadPool::start(n_threads, false, spawn_worker)
                .unwrap_or_else(|_| ThreadPool::from_parts(Arc::new(Shared::new()), Vec::new()))
        }

        /// Starts the workers with `spawn`; on a refusal, fails (stopping
        /// those started) when `all_or_nothing`, else keeps those started.
        fn start(
            n_threads: usize,
            all_or_nothing: bool,
            mut spawn: impl FnMut(usize, Arc<Shared>) -> std::io::Result<JoinHandle<()>>,
        ) -> Result<ThreadPool, Error> {
            let n = if n_threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                n_threads
            };
            let shared = Arc::new(Shared::new());
            let mut workers = Vec::new();
            for i in 1..n {
                match spawn(i, Arc::clone(&shared)) {
                    Ok(w) => workers.push(w),
                    Err(_) if all_or_nothing => {
                        let started = workers.len() + 1;
                        // Dropping the pool stops and joins the workers.
                        drop(ThreadPool::from_parts(shared, workers));
                        return Err(Error::ThreadSpawn {
                            requested: n,
                            started,
                        });
                    }
                    Err(_) => break,
                }
            }
            Ok(ThreadPool::from_parts(shared, workers))
        }

        /// [`ThreadPool::start`] for the tests, which refuse threads.
        #[cfg(test)]
        pub(crate) fn start_for_test(
            n_threads: usize,
            all_or_nothing: bool,
            spawn: impl FnMut(usize, Arc<Shared>) -> std::io::Result<JoinHandle<()>>,
        ) -> Result<ThreadPool, Error> {
            ThreadPool::start(n_threads, all_or_nothing, spawn)
        }

        fn from_parts(shared: Arc<Shared>, workers: Vec<JoinHandle<()>>) -> ThreadPool {
            // Wait until every worker runs: a thread's start-up allocates
            // (its name, thread-locals), and that must not happen later,
            // during inference.
            while shared.started.load(Ordering::Acquire) < workers.len() {
                std::thread::yield_now();
            }
            ThreadPool {
                n_threads: workers.len() + 1,
                shared,
                workers,
                region: Mutex::new(()),
                regions: AtomicU64::new(0),
                waited_ns: AtomicU64::new(0),
            }
        }

        /// The regions run and the calling thread's waits so far (two
        /// clock reads per region, which is all they cost).
        pub fn stats(&self) -> PoolStats {
            PoolStats {
                regions: self.regions.load(Ordering::Relaxed),
                waited: std::time::Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed)),
            }
        }
    }

    impl Shared {
        fn new() -> Shared {
            Shared {
                generation: AtomicU64::new(0),
                job: Mutex::new(None),
                next: AtomicU64::new(0),
                done: AtomicUsize::new(0),
                panicked: AtomicBool::new(false),
                shutdown: AtomicBool::new(false),
                started: AtomicUsize::new(0),
                sleep: Mutex::new(0),
                wake: Condvar::new(),
            }
        }
    }

    /// Starts worker `i`.
    pub(crate) fn spawn_worker(i: usize, shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(std::format!("llamette-{i}"))
            .spawn(move || worker(&shared))
    }

    fn worker(s: &Shared) {
        s.started.fetch_add(1, Ordering::AcqRel);
        let mut seen = 0u64;
        loop {
            // Wait for a new region: spin a little, then sleep.
            let mut spins = 0;
            loop {
                if s.shutdown.load(Ordering::Acquire) {
                    return;
                }
                let g = s.generation.load(Ordering::Acquire);
                if g != seen {
                    seen = g;
                    break;
                }
                if spins < SPIN {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    let mut asleep = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
                    if s.generation.load(Ordering::Acquire) == seen
                        && !s.shutdown.load(Ordering::Acquire)
                    {
                        *asleep += 1;
                        let mut asleep = s.wake.wait(asleep).unwrap_or_else(|e| e.into_inner());
                        *asleep -= 1;
                    }
                }
            }
            let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((g, task, n)) = job {
                s.run_tasks(g, task, n);
            }
        }
    }

    /// Re-raises a task's panic on the thread that called `parallel_for`,
    /// as `std::thread::scope` does (the C ABI's boundary catches it).
    #[cold]
    #[allow(clippy::panic)] // deliberate: the panic of a task, passed on
    fn worker_panicked() -> ! {
        panic!("a llamette worker task panicked");
    }

    // SAFETY: a task index is handed out only by a successful claim of
    // `next` (a compare-and-swap that increments it), so each index of the
    // region runs exactly once; `parallel_for` returns only after `done`
    // counts every task.
    unsafe impl Parallel for ThreadPool {
        fn n_threads(&self) -> usize {
            self.n_threads
        }

        fn parallel_for(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
            if self.n_threads == 1 || n_tasks <= 1 {
                for i in 0..n_tasks {
                    task(i);
                }
                return;
            }
            let _region = self.region.lock().unwrap_or_else(|e| e.into_inner());
            let s = &*self.shared;
            // SAFETY: lifetime erasure; the pointer is used only until this
            // function returns; it waits below until every task is done and
            // clears the job before returning.
            let task_ref = TaskRef(unsafe {
                core::mem::transmute::<
                    *const (dyn Fn(usize) + Sync + '_),
                    *const (dyn Fn(usize) + Sync + 'static),
                >(task as *const _)
            });
            let g = s.generation.load(Ordering::Acquire) + 1;
            *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some((g, task_ref, n_tasks));
            s.done.store(0, Ordering::Release);
            s.panicked.store(false, Ordering::Release);
            s.next.store((g & 0xffff_ffff) << 32, Ordering::Release);
            {
                // Under the lock: a worker checks `generation` and counts
                // itself asleep under it too, so none misses the change.
                let asleep = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
                s.generation.store(g, Ordering::Release);
                if *asleep > 0 {
                    s.wake.notify_all();
                }
            }
            s.run_tasks(g, task_ref, n_tasks);
            if s.done.load(Ordering::Acquire) < n_tasks {
                let t0 = std::time::Instant::now();
                while s.done.load(Ordering::Acquire) < n_tasks {
                    std::hint::spin_loop();
                }
                let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.waited_ns.fetch_add(ns, Ordering::Relaxed);
            }
            self.regions.fetch_add(1, Ordering::Relaxed);
            // Late workers may still read the job; their claims fail.
            *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if s.panicked.load(Ordering::Acquire) {
                worker_panicked();
            }
        }
    }

    impl Drop for ThreadPool {
        fn drop(&mut self) {
            {
                let _g = self.shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
                self.shared.shutdown.store(true, Ordering::Release);
                self.shared.wake.notify_all();
            }
            for w in self.workers.drain(..) {
                let _ = w.join();
            }
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_refused_thread_is_an_error_or_a_smaller_pool() {
        // The system refuses the fourth worker.
        let refuse = |i: usize, shared| {
            if i == 4 {
                Err(std::io::Error::other("refused"))
            } else {
                pool::spawn_worker(i, shared)
            }
        };
        let r = ThreadPool::start_for_test(8, true, refuse);
        assert_eq!(
            r.err(),
            Some(crate::error::Error::ThreadSpawn {
                requested: 8,
                started: 4
            })
        );
        let pool = ThreadPool::start_for_test(8, false, refuse).unwrap();
        assert_eq!(pool.n_threads(), 4);
        let hits: std::vec::Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
        pool.parallel_for(100, &|i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        assert_eq!(ThreadPool::try_new(3).unwrap().n_threads(), 3);
        assert_eq!(ThreadPool::new(2).n_threads(), 2);
    }

    #[test]
    fn stats_count_regions_on_the_threads_and_the_wait_for_them() {
        let pool = ThreadPool::try_new(2).unwrap();
        assert_eq!(pool.stats(), PoolStats::default());
        pool.parallel_for(1, &|_| {}); // one task: inline, not counted
        assert_eq!(pool.stats().regions, 0);
        // The calling thread's task is short, the other's sleeps: the
        // caller waits for it (unless it ran both, then it slept itself).
        let t0 = std::time::Instant::now();
        pool.parallel_for(2, &|i| {
            if i == 1 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        let wall = t0.elapsed();
        let s = pool.stats();
        assert_eq!(s.regions, 1);
        assert!(s.waited <= wall, "{s:?} in {wall:?}");
        let single = ThreadPool::try_new(1).unwrap();
        single.parallel_for(4, &|_| {});
        assert_eq!(single.stats(), PoolStats::default());
    }
}
