//! `llamette bench`: whole-run prompt and decode speed against a bandwidth probe.

use std::path::Path;
use std::time::Instant;

use llamette::parallel::ThreadPool;
use llamette::session::KvType;
use llamette::{Session, SessionParams};

use crate::files::{open_model, CliError, Layout};

/// Best-of-3 read bandwidth of `threads` threads summing a 1 GiB buffer, in
/// GB/s. The buffer is anonymous memory advised to use transparent huge
/// pages (as `--huge-pages` and `--repack` weights), so that TLB misses do
/// not lower the ceiling; without huge pages it reads 10-20% less here.
pub fn bandwidth_probe(threads: usize) -> f64 {
    const BYTES: usize = 1 << 30;
    let Ok(mut map) = memmap2::MmapMut::map_anon(BYTES) else {
        return 0.0;
    };
    #[cfg(target_os = "linux")]
    {
        // Before the first touch, so that the pages are allocated huge.
        let _ = map.advise(memmap2::Advice::HugePage);
    }
    let buf: &mut [u64] = bytemuck::cast_slice_mut(&mut map[..]);
    for (i, v) in buf.iter_mut().enumerate() {
        *v = i as u64;
    }
    let buf: &[u64] = buf;
    let per = buf.len() / threads;
    let mut best = 0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let sum: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        // Eight independent sums keep several loads in flight.
                        let mut acc = [0u64; 8];
                        for c in chunk.chunks_exact(8) {
                            for j in 0..8 {
                                acc[j] = acc[j].wrapping_add(c[j]);
                            }
                        }
                        acc.iter().fold(0u64, |a, &b| a.wrapping_add(b))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0, u64::wrapping_add)
        });
        std::hint::black_box(sum);
        best = best.max(BYTES as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// What `llamette bench` runs.
pub struct BenchOptions {
    /// Threads (0: one per core; `None`: chosen by the model's size).
    pub threads: Option<usize>,
    /// Prompt length to prefill.
    pub prompt_tokens: usize,
    /// Tokens to generate after the prompt.
    pub gen_tokens: usize,
    /// Decode from the first token alone (as llama-bench's tg tests)
    /// rather than after the prompt.
    pub decode_from_start: bool,
    /// Run the read-bandwidth probe after.
    pub probe: bool,
    /// How the weights are held.
    pub layout: Layout,
    /// The KV cache type.
    pub kv_type: KvType,
}

/// Runs the benchmark and prints its report to stdout.
pub fn bench(path: &Path, o: &BenchOptions) -> Result<(), CliError> {
    let BenchOptions {
        threads,
        prompt_tokens,
        gen_tokens,
        decode_from_start,
        probe,
        layout,
        kv_type,
    } = *o;
    let loaded = open_model(Some(&path.to_path_buf()), layout, threads)?;
    let (input, huge_pages, interleaved) = (loaded.input, loaded.copied, loaded.interleaved);
    let model = crate::load_model(&input)?;
    crate::files::say(&loaded.note);
    let c = model.config;
    if prompt_tokens == 0 || prompt_tokens + gen_tokens + 1 > c.seq_len {
        return Err(input.err(format!(
            "--prompt-tokens must be at least 1 and prompt + generated tokens must fit the context ({})",
            c.seq_len
        )));
    }
    // Touch every page once so that page faults are not measured.
    let mut sum = 0u8;
    for page in input.bytes.chunks(4096) {
        sum = sum.wrapping_add(page[0]);
    }
    std::hint::black_box(sum);

    let pool = crate::thread_pool(threads, &model)?;
    let params = SessionParams {
        context: prompt_tokens + gen_tokens + 1,
        kv_type,
        ..Default::default()
    };
    let bytes = Session::required_bytes(&model, &params).map_err(|e| input.err(e))?;
    let mut buf = vec![0u64; bytes.div_ceil(8)];
    let mut s = Session::new(&model, params, bytemuck::cast_slice_mut(&mut buf))
        .map_err(|e| input.err(e))?;
    s.set_parallel(&pool);
    // A deterministic prompt of ordinary tokens.
    let vocab = c.vocab_size as u32;
    let prompt: Vec<u32> = std::iter::once(1)
        .chain((1..prompt_tokens as u32).map(|i| 3 + (i * 7919) % (vocab - 3)))
        .collect();

    // Warm up: one token, then start over.
    s.feed(&prompt[..1]).map_err(|e| input.err(e))?;
    s.reset();

    let start = Instant::now();
    s.feed(&prompt).map_err(|e| input.err(e))?;
    let prefill = start.elapsed().as_secs_f64();
    if decode_from_start {
        s.reset();
        s.feed(&prompt[..1]).map_err(|e| input.err(e))?;
    }

    let mut step_times = Vec::with_capacity(gen_tokens);
    let mut greedy = llamette::Sampler::new(llamette::SamplerParams::greedy(), 0);
    let before_decode = pool.stats();
    let decode_start = Instant::now();
    for _ in 0..gen_tokens {
        let t0 = Instant::now();
        let next = s.sample(&mut greedy).map_err(|e| input.err(e))?;
        s.feed(&[next]).map_err(|e| input.err(e))?;
        step_times.push(t0.elapsed().as_secs_f64());
    }
    let decode = decode_start.elapsed().as_secs_f64();
    let after_decode = pool.stats();

    let per_token = model.bytes_per_token() as f64;
    let prompt_tps = prompt_tokens as f64 / prefill;
    let decode_tps = gen_tokens as f64 / decode;
    let median_tps = 1.0 / median(&mut step_times).max(1e-12);
    println!(
        "model: {} ({}; weights {})",
        input.name,
        model.format.name(),
        if huge_pages {
            "copied into huge pages"
        } else {
            "memory-mapped"
        }
    );
    if let Some((done, secs)) = interleaved {
        println!(
            "interleaved {} matrices ({:.1} MB) in place in {secs:.2} s",
            done.tensors,
            done.bytes as f64 / 1e6
        );
    }
    if let Some(huge) = crate::files::huge_page_bytes(input.bytes.as_ptr()) {
        println!(
            "weights in 2 MiB pages: {:.1} of {:.1} MB",
            huge as f64 / 1e6,
            input.bytes.len() as f64 / 1e6
        );
    }
    println!(
        "shape: dim {}, hidden {}, layers {}, heads {}/{} kv, vocab {}",
        c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size
    );
    println!(
        "kernels: {}, threads: {}, KV cache: {:?}",
        llamette::kernels::active().name,
        pool_threads(&pool),
        kv_type
    );
    println!("prompt: {prompt_tokens} tokens in {prefill:.3} s = {prompt_tps:.2} tok/s");
    println!(
        "decode: {gen_tokens} tokens in {decode:.3} s = {decode_tps:.2} tok/s (median step {median_tps:.2} tok/s), {}",
        if decode_from_start {
            "from the first token".to_string()
        } else {
            format!("after the {prompt_tokens}-token prompt")
        }
    );
    println!(
        "weights read per token: {:.1} MB; decode streams {:.2} GB/s",
        per_token / 1e6,
        per_token * decode_tps / 1e9
    );
    if pool_threads(&pool) > 1 {
        let regions = after_decode.regions - before_decode.regions;
        let waited = (after_decode.waited - before_decode.waited).as_secs_f64();
        println!(
            "decode: {:.1} parallel regions per token; the calling thread waited {:.1}% of the decode time at their ends",
            regions as f64 / gen_tokens as f64,
            100.0 * waited / decode.max(1e-12)
        );
    }
    println!("session memory: {bytes} bytes");
    if let Some(m) = crate::mem::report() {
        println!("{m}");
    }
    if probe {
        let bw = bandwidth_probe(pool_threads(&pool));
        if bw == 0.0 {
            println!("read bandwidth probe: could not map its 1 GiB buffer");
            return Ok(());
        }
        let n = pool_threads(&pool);
        println!(
            "read bandwidth probe ({n} thread{}): {:.2} GB/s; decode reaches {:.0}% of it",
            if n == 1 { "" } else { "s" },
            bw,
            100.0 * per_token * decode_tps / 1e9 / bw
        );
    }
    Ok(())
}

fn pool_threads(pool: &ThreadPool) -> usize {
    use llamette::parallel::Parallel;
    pool.n_threads()
}
