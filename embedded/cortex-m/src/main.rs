//! Llamette on a microcontroller.
//!
//! Firmware for Arm's MPS2 board with the AN386 image (a Cortex-M4F), as
//! QEMU models it (`qemu-system-arm -machine mps2-an386`). stories260K and
//! its tokenizer are compiled into the code memory (`include_bytes!`) and
//! read where they lie; the session, the tokenizer index and the model's
//! views are static buffers in RAM, the session's sized exactly by
//! `build.rs`. Nothing allocates: there is no heap.
//!
//! It runs `llamette generate -t 0 -n 256 --batch 1` twice, with the F32 KV
//! cache and with the Q8_0 one, reusing the same session buffer, and
//! prints through semihosting, for each run, the text between a
//! `--- text (kv ...) ---` line and an `--- end ---` line, the token ids
//! (BOS, then every sampled token) and what the run took. Time is emulated
//! time: SysTick counts the board's 25 MHz core clock in QEMU's virtual
//! time, which under `-icount shift=0` (run.sh) advances 1 ns per
//! instruction. At the end: RAM by region and the stack's high-water marks
//! (cortex-m-rt paints the stack at reset; words still painted were never
//! touched).
#![no_std]
#![no_main]

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::{entry, exception, ExceptionFrame, STACK_PAINT_VALUE};
use cortex_m_semihosting::{debug, hio};
use llamette::session::KvType;
use llamette::{
    Bos, Event, GenerateParams, Generator, Model, SamplerParams, Session, SessionParams, TextMode,
    Tokenizer,
};
use panic_semihosting as _;
use static_cell::{ConstStaticCell, StaticCell};

/// The sizes `build.rs` computed on the host for these model bytes.
mod sizes {
    include!(concat!(env!("OUT_DIR"), "/sizes.rs"));
}

/// Positions to run, BOS included: `llamette generate -n 256`. The session
/// holds exactly this many (the CLI sizes its context the same way).
const STEPS: usize = 256;

/// The embedded default model: llama2.c "version 0" (fp32) stories260K.
static MODEL: &[u8] = include_bytes!("../../../models/stories260K.bin");
/// Its 512-token vocabulary, in llama2.c's tokenizer.bin format.
static TOKENIZER: &[u8] = include_bytes!("../../../models/tok512.bin");

/// The session buffer: its start 64-byte aligned (`Session::ALIGN` asks 8;
/// every region is placed at a multiple of 64 from the start).
#[repr(C, align(64))]
struct SessionMemory([u8; sizes::SESSION_BUFFER]);

// Zero-initialised statics: they live in `.bss`, never on the stack.
static SESSION_MEMORY: ConstStaticCell<SessionMemory> =
    ConstStaticCell::new(SessionMemory([0; sizes::SESSION_BUFFER]));
static TOKENIZER_INDEX: ConstStaticCell<[u32; sizes::TOKENIZER_INDEX]> =
    ConstStaticCell::new([0; sizes::TOKENIZER_INDEX]);
/// The model's views of the weights (`Model` keeps 128 layer slots).
static MODEL_VIEWS: StaticCell<llamette::Result<Model<'static>>> = StaticCell::new();

/// The MPS2's core clock (SYSCLK), which SysTick counts.
const CORE_HZ: u64 = 25_000_000;
/// SysTick counts down from this; an exception counts the wraps.
const SYSTICK_RELOAD: u32 = 0x00FF_FFFF;
static SYSTICK_WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    SYSTICK_WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// SysTick ticks since it was started.
fn ticks() -> u64 {
    loop {
        let before = SYSTICK_WRAPS.load(Ordering::Relaxed);
        let current = SYST::get_current();
        if SYSTICK_WRAPS.load(Ordering::Relaxed) == before {
            return u64::from(before) * (u64::from(SYSTICK_RELOAD) + 1)
                + u64::from(SYSTICK_RELOAD - current);
        }
    }
}

/// Ends the QEMU run (semihosting's "application exit"); on a board
/// without a debugger attached, stops here.
fn exit(status: debug::ExitStatus) -> ! {
    debug::exit(status);
    #[allow(clippy::empty_loop)]
    loop {}
}

// cortex-m-rt requires an `unsafe fn` for the HardFault handler.
/// A fault ends the QEMU run with a failure status instead of hanging.
#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    if let Ok(mut out) = hio::hstdout() {
        let _ = writeln!(out, "HardFault: {frame:?}");
    }
    exit(debug::EXIT_FAILURE)
}

/// Text to the host's console; a failed semihosting write has nowhere to
/// be reported.
struct Console(hio::HostStream);

impl Console {
    fn bytes(&mut self, b: &[u8]) {
        let _ = self.0.write_all(b);
    }
}

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

/// What one generation did and took.
struct Run {
    session_bytes: usize,
    positions: usize,
    /// BOS, then every sampled token.
    ids: [u32; STEPS + 1],
    n_ids: usize,
    ticks: u64,
}

/// `llamette generate -t 0 -n 256 --kv KV --batch 1`: the same core calls
/// as the CLI, the text as run.c prints it.
fn generate(
    out: &mut Console,
    model: &Model,
    tok: &Tokenizer,
    kv_type: KvType,
    memory: &mut [u8],
) -> Run {
    let params = SessionParams {
        context: STEPS,
        kv_type,
        batch: 1,
    };
    let session_bytes =
        Session::required_bytes(model, &params).unwrap_or_else(|e| panic!("session size: {e}"));
    let mut session =
        Session::new(model, params, memory).unwrap_or_else(|e| panic!("session: {e}"));
    // The empty prompt with BOS, as run.c encodes it.
    let mut ids = [0u32; STEPS + 1];
    let n_prompt = tok
        .encode("", Bos::Add, &mut ids[..8])
        .unwrap_or_else(|e| panic!("prompt: {e}"))
        .len();
    let mut n_ids = n_prompt;
    let start = ticks();
    let mut gen = Generator::new(Some(tok), TextMode::Llama2c);
    gen.feed(&mut session, &ids[..n_prompt])
        .unwrap_or_else(|e| panic!("prompt: {e}"));
    // run.c's loop: stop at BOS (EOS's piece prints) or a full context.
    let params = GenerateParams {
        sampler: SamplerParams::greedy(),
        // Greedy draws nothing at random.
        seed: 0,
        max_tokens: 0,
        stop_at_eos: false,
        stop_at_bos: true,
        stop_strings: &[],
    };
    gen.generate(&mut session, &params, &mut |_| {}, &mut |e| {
        match e {
            Event::Text(t) => out.bytes(t),
            Event::Token(id) if n_ids < ids.len() => {
                ids[n_ids] = id;
                n_ids += 1;
            }
            Event::Token(_) => {}
        }
        true
    })
    .unwrap_or_else(|e| panic!("generate: {e}"));
    let ticks = ticks() - start;
    out.bytes(b"\n");
    Run {
        session_bytes,
        positions: session.pos(),
        ids,
        n_ids,
        ticks,
    }
}

/// Reads the model's views into a static. Not inlined, so that the stack
/// `Model::load` takes (its result is a 37 KB value: 128 layer slots) is
/// this call's alone, measured apart from generation's.
#[inline(never)]
fn load_model() -> &'static Model<'static> {
    match MODEL_VIEWS.init_with(|| Model::load(MODEL)) {
        Ok(model) => model,
        Err(e) => panic!("model: {e}"),
    }
}

// Linker symbols (cortex-m-rt's `link.x`): only their addresses are used.
// The stack is the RAM from `_stack_end` (above .bss) up to `_stack_start`
// (the end of RAM); it grows down.
extern "C" {
    static __vector_table: u32;
    static __sdata: u32;
    static __edata: u32;
    static __sidata: u32;
    static __sbss: u32;
    static __ebss: u32;
    static mut _stack_end: u32;
    static _stack_start: u32;
}

/// Bytes from `a` to `b`.
fn span(a: *const u32, b: *const u32) -> usize {
    b as usize - a as usize
}

/// Bytes of stack touched since it was last painted: the region less the
/// words at its bottom that still hold the paint.
fn stack_used() -> usize {
    let bottom = &raw const _stack_end;
    let region = span(bottom, &raw const _stack_start);
    let mut untouched = 0;
    while untouched < region / 4 {
        // SAFETY: the word lies in the stack region the linker script
        // reserves in RAM, [_stack_end, _stack_start), 4-byte aligned; a
        // word not yet reached is below the stack pointer, where no Rust
        // object lives, and reading it disturbs nothing. Volatile: the
        // compiler cannot know what is there.
        let word = unsafe { bottom.add(untouched).read_volatile() };
        if word != STACK_PAINT_VALUE {
            break;
        }
        untouched += 1;
    }
    region - untouched * 4
}

/// Paints the free stack again, as cortex-m-rt did at reset, from the
/// bottom of the stack region to 64 bytes below the stack pointer: a later
/// [`stack_used`] sees only what ran after this (plus the frames live now).
#[inline(never)]
fn repaint_stack() {
    let bottom = &raw mut _stack_end;
    let sp = cortex_m::register::msp::read() as usize;
    let words = (sp - 64 - bottom as usize) / 4;
    for i in 0..words {
        // SAFETY: the word lies in the stack region, [_stack_end, SP - 64),
        // 4-byte aligned. Everything below the stack pointer is free: this
        // function's frame and every live one are above it, and an
        // exception (SysTick) pushes its frame below the current SP only
        // while it runs, so nothing live is overwritten.
        unsafe { bottom.add(i).write_volatile(STACK_PAINT_VALUE) };
    }
}

/// Integer with thousands separators, as the README's tables print them.
struct Grouped(u64);

impl core::fmt::Display for Grouped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut groups = [0u16; 7];
        let (mut v, mut n) = (self.0, 0);
        loop {
            groups[n] = (v % 1000) as u16;
            n += 1;
            v /= 1000;
            if v == 0 {
                break;
            }
        }
        write!(f, "{}", groups[n - 1])?;
        for g in groups[..n - 1].iter().rev() {
            write!(f, ",{g:03}")?;
        }
        Ok(())
    }
}

#[entry]
fn main() -> ! {
    let mut out = Console(hio::hstdout().unwrap_or_else(|_| exit(debug::EXIT_FAILURE)));
    let core = cortex_m::Peripherals::take().unwrap();
    let mut syst = core.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYSTICK_RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();

    let model = load_model();
    let vocab = model.config.vocab_size as u32;
    let index = TOKENIZER_INDEX.take();
    let tok = Tokenizer::load_for_vocab(TOKENIZER, vocab, index)
        .unwrap_or_else(|e| panic!("tokenizer: {e}"));
    let session_memory = &mut SESSION_MEMORY.take().0;
    let _ = writeln!(
        out,
        "llamette on mps2-an386 (Cortex-M4F): stories260K, fp32 weights read from flash, \
         greedy, {STEPS} steps"
    );
    let stack_loading = stack_used();
    repaint_stack();

    let runs = [
        ("f32", KvType::F32, sizes::SESSION_F32),
        ("q8_0", KvType::Q8_0, sizes::SESSION_Q8_0),
    ];
    for (name, kv_type, expected) in runs {
        let _ = writeln!(out, "--- text (kv {name}) ---");
        let run = generate(&mut out, model, &tok, kv_type, session_memory);
        let _ = writeln!(out, "--- end ---");
        if run.session_bytes != expected {
            panic!(
                "kv {name}: the session takes {} bytes here, build.rs sized it {expected}",
                run.session_bytes
            );
        }
        let _ = write!(out, "ids (kv {name}):");
        for id in &run.ids[..run.n_ids] {
            let _ = write!(out, " {id}");
        }
        let ns = run.ticks * 1_000_000_000 / CORE_HZ;
        let _ = writeln!(
            out,
            "\nkv {name}: session {} bytes; {} positions in {} SysTick ticks = {} ns emulated \
             = {} tok/s emulated",
            Grouped(run.session_bytes as u64),
            run.positions,
            Grouped(run.ticks),
            Grouped(ns),
            Grouped(run.positions as u64 * CORE_HZ / run.ticks.max(1)),
        );
    }
    let stack_generating = stack_used();

    // Where RAM and flash went.
    let data = span(&raw const __sdata, &raw const __edata);
    let bss = span(&raw const __sbss, &raw const __ebss);
    let statics = data + bss;
    let known = sizes::SESSION_BUFFER + sizes::TOKENIZER_INDEX * 4 + size_of::<Model>();
    let stack = stack_loading.max(stack_generating);
    let _ = writeln!(
        out,
        "ram: static {} bytes (.data {}, .bss {}: session buffer {}, tokenizer index {}, \
         model views {}, other {}); stack high-water mark {} bytes (loading {}, generating {}); \
         total {} bytes",
        Grouped(statics as u64),
        Grouped(data as u64),
        Grouped(bss as u64),
        Grouped(sizes::SESSION_BUFFER as u64),
        Grouped(sizes::TOKENIZER_INDEX as u64 * 4),
        Grouped(size_of::<Model>() as u64),
        Grouped((statics - known) as u64),
        Grouped(stack as u64),
        Grouped(stack_loading as u64),
        Grouped(stack_generating as u64),
        Grouped((statics + stack) as u64),
    );
    // .data's initial values are the last thing in flash.
    let flash = span(&raw const __vector_table, &raw const __sidata) + data;
    let _ = writeln!(
        out,
        "flash: {} bytes (model {}, tokenizer {}, code and the rest {})",
        Grouped(flash as u64),
        Grouped(MODEL.len() as u64),
        Grouped(TOKENIZER.len() as u64),
        Grouped((flash - MODEL.len() - TOKENIZER.len()) as u64),
    );
    exit(debug::EXIT_SUCCESS)
}
