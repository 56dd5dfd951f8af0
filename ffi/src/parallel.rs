//! Where a session's matrix products run: inline, the built-in pool, or the
//! host's `parallel_for`.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use llamette_core::parallel::{Parallel, ThreadPool};

use crate::sized::SizedStruct;

/// One task of a parallel region, given to the host's `parallel_for`: call
/// it as `task(task_ctx, i)` once for every `i` in `0 .. n_tasks`.
///
/// Arguments: `task_ctx` (the pointer `parallel_for` received), the task index.
/// The calls may run on any threads, in any order, at the same time. It does
/// not unwind.
#[allow(non_camel_case_types)]
pub type llamette_task_fn = Option<unsafe extern "C" fn(task_ctx: *mut c_void, index: u32)>;

/// The host's parallel loop: runs `task(task_ctx, i)` for every `i` in
/// `0 .. n_tasks`, possibly in parallel, and returns only after every call has
/// returned (GCD's `dispatch_apply`, .NET's `Parallel.For`, an RTOS task group).
/// Every index exactly once: a loop that skips one, calls one twice or out
/// of range is detected (the library then runs each index once itself)
/// and the session call returns `LLAMETTE_STATUS_BAD_PARALLEL_FOR`.
///
/// Arguments: `user_data` (from `llamette_parallel`), `n_tasks` (at least 2),
/// `task`, `task_ctx`. It is called on the thread that called the session
/// function, never concurrently for one session, and must not unwind (no C++
/// exception may leave it).
#[allow(non_camel_case_types)]
pub type llamette_parallel_for_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        n_tasks: u32,
        task: llamette_task_fn,
        task_ctx: *mut c_void,
    ),
>;

/// A host thread pool, plugged into a session with
/// `llamette_session_set_parallel`. Initialise it with
/// `LLAMETTE_PARALLEL_INIT` (or set `struct_size`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llamette_parallel {
    /// `sizeof(llamette_parallel)`, set by the caller.
    pub struct_size: usize,
    /// Passed to `parallel_for` as its first argument.
    pub user_data: *mut c_void,
    /// How many tasks are worth creating per parallel region (usually the
    /// number of threads the host will use); 1 to 1024.
    pub n_threads: u32,
    /// The host's loop; must not be NULL.
    pub parallel_for: llamette_parallel_for_fn,
}

impl Default for llamette_parallel {
    /// As `LLAMETTE_PARALLEL_INIT`: no pool yet.
    fn default() -> Self {
        llamette_parallel {
            struct_size: core::mem::size_of::<Self>(),
            user_data: core::ptr::null_mut(),
            n_threads: 0,
            parallel_for: None,
        }
    }
}

// SAFETY: repr(C), `struct_size` first, then a raw pointer, an integer and
// a nullable function pointer: every bit pattern is a value.
unsafe impl SizedStruct for llamette_parallel {
    const NAME: &'static str = "llamette_parallel";
}

/// What a session runs its parallel regions on.
pub(crate) enum Dispatch {
    /// The calling thread only.
    Inline,
    /// The host's callback.
    Host {
        user_data: *mut c_void,
        n_threads: usize,
        parallel_for: unsafe extern "C" fn(*mut c_void, u32, llamette_task_fn, *mut c_void),
    },
    /// The built-in persistent pool, owned by the session.
    Pool(ThreadPool),
}

/// How a host's `parallel_for` broke its contract in a call (the first
/// region where it did).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HostFault {
    /// Tasks of the region.
    pub(crate) n_tasks: u32,
    /// Indices the host never called (the library ran them itself).
    pub(crate) skipped: u32,
    /// Calls with an index already run (ignored).
    pub(crate) repeated: u32,
    /// Calls with an index outside `0..n_tasks` (ignored).
    pub(crate) out_of_range: u32,
}

impl core::fmt::Display for HostFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the host's parallel_for broke its contract (call task(ctx, i) exactly once for every i in 0..n_tasks): \
             in a region of {} tasks it skipped {} indices, repeated {} calls and made {} calls \
             out of range; the library ran every index once itself and stopped the call as a \
             cancellation stops it",
            self.n_tasks, self.skipped, self.repeated, self.out_of_range
        )
    }
}

/// A `Dispatch` that can be replaced between calls while the session holds a
/// shared reference to it, and what its host did wrong during a call.
pub(crate) struct DispatchCell {
    dispatch: UnsafeCell<Dispatch>,
    /// The first contract breach of the host's `parallel_for` in the
    /// current call (the session takes it when the call ends).
    fault: Mutex<Option<HostFault>>,
    /// The session's cancel flag, raised on a breach so that the call
    /// stops within one layer (null until `set_stop_flag`).
    stop: AtomicPtr<AtomicBool>,
}

// SAFETY: the contents are replaced only by `set`, which the session calls
// while no call on the session runs (its busy flag is held and the contract
// is one thread at a time), so no `parallel_for` reads it concurrently. The
// host's `user_data` is the host's to make thread safe (documented).
unsafe impl Sync for DispatchCell {}
// SAFETY: as above; the session handle may move between threads.
unsafe impl Send for DispatchCell {}

impl DispatchCell {
    pub(crate) fn new() -> DispatchCell {
        DispatchCell {
            dispatch: UnsafeCell::new(Dispatch::Inline),
            fault: Mutex::new(None),
            stop: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The flag to raise when the host breaks its contract: the session's
    /// cancel flag, which the core polls once per layer.
    ///
    /// # Safety
    ///
    /// `flag` outlives `self` (both are fields of the session handle).
    pub(crate) unsafe fn set_stop_flag(&self, flag: *const AtomicBool) {
        self.stop.store(flag.cast_mut(), Ordering::Release);
    }

    /// The host's contract breach in the call that just ended, if any
    /// (cleared: the next call starts afresh).
    pub(crate) fn take_fault(&self) -> Option<HostFault> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether the call running has met a breach.
    pub(crate) fn has_fault(&self) -> bool {
        self.fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Records a breach (the first of a call is kept) and stops the call.
    fn report(&self, f: HostFault) {
        let mut g = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(f);
        }
        drop(g);
        let stop = self.stop.load(Ordering::Acquire);
        if !stop.is_null() {
            // SAFETY: the session's cancel flag, alive as long as `self`
            // (`set_stop_flag`'s contract).
            unsafe { (*stop).store(true, Ordering::Release) };
        }
    }

    /// Replaces the dispatch (the old pool, if any, is stopped and joined).
    ///
    /// # Safety
    ///
    /// No `parallel_for` or `n_threads` call on `self` runs meanwhile.
    pub(crate) unsafe fn set(&self, d: Dispatch) {
        // SAFETY: exclusive by the caller's promise.
        let old = core::mem::replace(unsafe { &mut *self.dispatch.get() }, d);
        drop(old);
    }

    fn get(&self) -> &Dispatch {
        // SAFETY: only `set` writes, never while a reader runs (see `Sync`).
        unsafe { &*self.dispatch.get() }
    }
}

/// The most tasks of one region handed to the host (a region with more
/// runs on the calling thread). Regions have `4 * n_threads` tasks (at most
/// 4096) or one per kv head.
const MAX_HOST_TASKS: usize = 4096;

/// What the host's tasks need: the region's closure and bookkeeping.
struct TaskCtx<'a> {
    task: &'a (dyn Fn(usize) + Sync),
    n_tasks: usize,
    /// One bit per task index, set by the call that runs it: a second call
    /// with the same index finds it set and runs nothing.
    claimed: [AtomicU64; MAX_HOST_TASKS / 64],
    /// Task calls that have started and not yet returned.
    running: AtomicUsize,
    panicked: AtomicBool,
    /// Calls with an index already claimed.
    repeated: AtomicU32,
    /// Calls with an index outside `0..n_tasks`.
    out_of_range: AtomicU32,
}

impl TaskCtx<'_> {
    /// Claims index `i` (in range): true for the first claim only.
    fn claim(&self, i: usize) -> bool {
        let bit = 1u64 << (i % 64);
        self.claimed[i / 64].fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    /// Runs task `i`, catching a panic (which must not unwind into the
    /// host's C frames: it is re-raised on the session's thread later).
    fn run(&self, i: usize) {
        if catch_unwind(AssertUnwindSafe(|| (self.task)(i))).is_err() {
            self.panicked.store(true, Ordering::Release);
        }
    }
}

/// The `llamette_task_fn` handed to the host.
unsafe extern "C" fn run_task(task_ctx: *mut c_void, index: u32) {
    if task_ctx.is_null() {
        return;
    }
    // SAFETY: `task_ctx` is the `TaskCtx` that `parallel_for` below passed to
    // the host, alive until the host's `parallel_for` returns, and the host
    // calls tasks only before that (its contract). Only shared access.
    let ctx = unsafe { &*(task_ctx as *const TaskCtx<'_>) };
    ctx.running.fetch_add(1, Ordering::AcqRel);
    let i = index as usize;
    // Each index runs at most once, whatever the host does: a task writes
    // memory no other task may touch at the same time.
    if i >= ctx.n_tasks {
        ctx.out_of_range.fetch_add(1, Ordering::Relaxed);
    } else if ctx.claim(i) {
        ctx.run(i);
    } else {
        ctx.repeated.fetch_add(1, Ordering::Relaxed);
    }
    ctx.running.fetch_sub(1, Ordering::AcqRel);
}

// SAFETY: the pool and inline dispatches call every index once (the core's
// implementations); the host dispatch runs an index only after claiming it
// (at most once), runs every index the host skipped itself after the host
// returns, and returns only when no task call is still running. A host
// that breaks its contract is reported (`take_fault`) and the call stopped
// through the cancel flag: wrong use never becomes wrong memory access.
unsafe impl Parallel for DispatchCell {
    fn n_threads(&self) -> usize {
        match self.get() {
            Dispatch::Inline => 1,
            Dispatch::Host { n_threads, .. } => *n_threads,
            Dispatch::Pool(p) => p.n_threads(),
        }
    }

    fn parallel_for(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        match self.get() {
            Dispatch::Inline => {
                for i in 0..n_tasks {
                    task(i);
                }
            }
            Dispatch::Pool(p) => p.parallel_for(n_tasks, task),
            Dispatch::Host {
                user_data,
                parallel_for,
                ..
            } => {
                if n_tasks <= 1 || n_tasks > MAX_HOST_TASKS {
                    for i in 0..n_tasks {
                        task(i);
                    }
                    return;
                }
                let ctx = TaskCtx {
                    task,
                    n_tasks,
                    claimed: [const { AtomicU64::new(0) }; MAX_HOST_TASKS / 64],
                    running: AtomicUsize::new(0),
                    panicked: AtomicBool::new(false),
                    repeated: AtomicU32::new(0),
                    out_of_range: AtomicU32::new(0),
                };
                // SAFETY: the host's function pointer, called as documented;
                // `ctx` outlives the call, which returns only after every task
                // has returned (the host's contract).
                unsafe {
                    parallel_for(
                        *user_data,
                        n_tasks as u32,
                        Some(run_task),
                        &ctx as *const TaskCtx<'_> as *mut c_void,
                    )
                };
                // A host that returned early: wait for its task calls.
                while ctx.running.load(Ordering::Acquire) != 0 {
                    std::hint::spin_loop();
                }
                // The indices the host skipped run here, so that every
                // index runs exactly once whatever the host did.
                let mut skipped = 0u32;
                for i in 0..n_tasks {
                    if ctx.claim(i) {
                        skipped += 1;
                        ctx.run(i);
                    }
                }
                // A task's panic is a bug of the library: it reaches the
                // export's boundary (LLAMETTE_STATUS_PANIC).
                if ctx.panicked.load(Ordering::Acquire) {
                    task_panicked();
                }
                let fault = HostFault {
                    n_tasks: n_tasks as u32,
                    skipped,
                    repeated: ctx.repeated.load(Ordering::Acquire),
                    out_of_range: ctx.out_of_range.load(Ordering::Acquire),
                };
                if fault.skipped + fault.repeated + fault.out_of_range > 0 {
                    // The host broke its contract: the region's results are
                    // right (every index ran once), but the call stops at
                    // its next cancellation check and reports it.
                    self.report(fault);
                }
            }
        }
    }
}

/// Re-raises a task's panic on the calling thread, where the export's
/// boundary turns it into `LLAMETTE_STATUS_PANIC`.
#[cold]
#[allow(clippy::panic)] // deliberate: the panic of a task, passed on
fn task_panicked() -> ! {
    panic!("a task run by the host's parallel_for panicked");
}
