//! The library as firmware uses it: `#![no_std]`, no allocator, the model
//! and tokenizer in read-only memory (`include_bytes!`: flash on a
//! microcontroller) and every buffer a `static` array, handed out once.
//!
//! ```sh
//! cargo run --release -p llamette --example no_std_static
//! ```
//!
//! Everything but `main` uses only `core` and `llamette`: this crate has no
//! `alloc`, so nothing here can allocate (and the library allocates nothing
//! either, `core/tests/no_alloc.rs`). `std` is linked only so that the
//! example runs on the host: it gives `main` and the printing.
//! `embedded/cortex-m/` is the same program on a Cortex-M4F.
#![no_std]

extern crate std;

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use llamette::{Bos, Model, Sampler, SamplerParams, Session, SessionParams, Tokenizer};

static MODEL: &[u8] = include_bytes!("../../models/stories260K.bin");
static VOCAB: &[u8] = include_bytes!("../../models/tok512.bin");

/// Positions the session holds.
const CONTEXT: usize = 128;
/// The prompt; its encoding needs `Tokenizer::encode_work_len(len)` entries.
const PROMPT: &str = "Once upon a time";

/// A static buffer handed out once as `&'static mut` (what the
/// `static_cell` crate does on a microcontroller).
struct Memory<T> {
    taken: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: `take` hands the data out at most once, so no two threads (or
// interrupts) ever hold a reference to it.
unsafe impl<T: Send> Sync for Memory<T> {}

impl<T> Memory<T> {
    const fn new(data: T) -> Self {
        Memory {
            taken: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        }
    }

    /// The buffer, the first time; `None` after.
    #[allow(clippy::mut_from_ref)] // the flag makes the one reference unique
    fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the flag was false, so this is the only reference ever
        // made, and the static lives forever.
        Some(unsafe { &mut *self.data.get() })
    }
}

/// The session: `Session::required_bytes` for this model and context
/// (checked at run time, where a short buffer is `Error::BufferTooSmall`).
static SESSION: Memory<[u8; 200 * 1024]> = Memory::new([0; 200 * 1024]);
/// The tokenizer's index: `Tokenizer::index_len_for(VOCAB)` entries.
static INDEX: Memory<[u32; 2048]> = Memory::new([0; 2048]);
/// The prompt's encoding work, then the generated ids.
static WORK: Memory<[u32; 6 * (PROMPT.len() + 1)]> = Memory::new([0; 6 * (PROMPT.len() + 1)]);

/// Runs the prompt and up to `steps` sampled tokens, giving their text to
/// `emit`; returns the number of tokens generated.
fn run(steps: usize, emit: &mut dyn FnMut(&str)) -> llamette::Result<usize> {
    let (Some(memory), Some(index), Some(work)) = (SESSION.take(), INDEX.take(), WORK.take())
    else {
        return Err(llamette::Error::InvalidArgument {
            what: "the static buffers were already taken",
        });
    };
    let model = Model::load(MODEL)?;
    let tok = Tokenizer::load_for_vocab(VOCAB, model.config.vocab_size as u32, index)?;
    let params = SessionParams {
        context: CONTEXT,
        batch: 8,
        ..SessionParams::default()
    };
    let mut session = Session::new(&model, params, memory)?;
    session.feed(tok.encode(PROMPT, Bos::Add, work)?)?;
    emit(PROMPT);

    let mut sampler = Sampler::new(SamplerParams::greedy(), 0);
    let mut text = tok.decoder();
    let mut n = 0;
    while n < steps && session.pos() < CONTEXT {
        let next = session.sample(&mut sampler)?;
        if tok.is_control(next) {
            break;
        }
        text.push(next, &mut *emit)?;
        session.feed(&[next])?;
        n += 1;
    }
    text.flush(&mut *emit);
    Ok(n)
}

fn main() {
    let mut emit = |s: &str| std::print!("{s}");
    match run(100, &mut emit) {
        Ok(n) => std::println!("\n({n} tokens, no allocation)"),
        Err(e) => {
            std::eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
