//! Token samplers: greedy, temperature, top-k, top-p, min-p and repetition
//! penalty, seedable.
//!
//! With `top_k == 0`, `min_p == 0` and `repeat_penalty == 1` the sampler is
//! llama2.c's `run.c` sampler, bit for bit: the same xorshift generator, the
//! same order of float operations, the same nucleus cut-off and tie order.
//! The other settings add filters in llama.cpp's sense, applied in the order
//! penalty, temperature, top-k, min-p, top-p.

use crate::error::{Error, FloatValue, Result};
use crate::math::softmax;

/// Sampler settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerParams {
    /// Divides the logits; 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Nucleus: keep the most likely tokens whose mass first exceeds `top_p`;
    /// values outside (0, 1) keep all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely; 0 keeps all.
    pub min_p: f32,
    /// Penalise tokens among the last `repeat_last_n`: positive logits are
    /// divided by it, negative ones multiplied; 1 is off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
}

impl Default for SamplerParams {
    /// llama2.c's defaults: temperature 1.0, top-p 0.9, nothing else.
    fn default() -> Self {
        SamplerParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
        }
    }
}

impl SamplerParams {
    /// Checks every setting against its range: `temperature` a finite
    /// number >= 0, `top_p` in [0, 1] (0 and 1 keep all), `min_p` in [0, 1],
    /// `repeat_penalty` a finite number > 0.
    ///
    /// Errors: [`Error::InvalidParameter`] naming the first bad field and
    /// its value.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: f32, expected| {
            Err(Error::InvalidParameter {
                name,
                value: FloatValue::new(value),
                expected,
            })
        };
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return bad("temperature", t, "a finite number >= 0 (0 is greedy)");
        }
        // `!(a <= x && x <= b)` is also true for NaN.
        if !(0.0 <= self.top_p && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "in [0, 1] (0 and 1 turn it off)");
        }
        if !(0.0 <= self.min_p && self.min_p <= 1.0) {
            return bad("min_p", self.min_p, "in [0, 1] (0 turns it off)");
        }
        let r = self.repeat_penalty;
        if !(r.is_finite() && r > 0.0) {
            return bad("repeat_penalty", r, "a finite number > 0 (1 turns it off)");
        }
        Ok(())
    }

    /// Always the most likely token.
    pub fn greedy() -> Self {
        SamplerParams {
            temperature: 0.0,
            ..Default::default()
        }
    }
}

/// A seeded sampler. Its state is the random generator's.
#[derive(Debug, Clone)]
pub struct Sampler {
    /// The settings (may be changed between calls).
    pub params: SamplerParams,
    rng: u64,
}

/// What a zero seed or state becomes (xorshift would be stuck at 0).
const ZERO_SEED: u64 = 0x853c_49e6_748f_ea9b;

impl Sampler {
    /// A sampler with settings `params`, its random generator seeded with
    /// `seed` (llama2.c's: the same seed gives run.c's draws; 0 is replaced
    /// by a fixed non-zero constant).
    pub fn new(params: SamplerParams, seed: u64) -> Sampler {
        let mut s = Sampler { params, rng: 0 };
        s.reseed(seed);
        s
    }

    /// Restarts the random generator from `seed` (as [`Sampler::new`]).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = if seed == 0 { ZERO_SEED } else { seed };
    }

    /// The random generator's state (to save a session and continue it
    /// elsewhere with the same draws).
    pub fn rng_state(&self) -> u64 {
        self.rng
    }

    /// Sets the random generator's state (as [`Sampler::rng_state`] gave it;
    /// 0 is replaced as in [`Sampler::new`]).
    pub fn set_rng_state(&mut self, state: u64) {
        self.reseed(state);
    }

    /// llama2.c's xorshift*: the next 32 random bits.
    pub fn random_u32(&mut self) -> u32 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    /// A random float in [0, 1).
    pub fn random_f32(&mut self) -> f32 {
        (self.random_u32() >> 8) as f32 / 16_777_216.0
    }

    /// Draws a token from `logits` (left untouched). `history` is the tokens
    /// so far (for the repetition penalty); `probs` and `cand` are scratch of
    /// at least `logits.len()` entries each.
    pub fn sample(
        &mut self,
        logits: &[f32],
        history: &[u32],
        probs: &mut [f32],
        cand: &mut [u64],
    ) -> u32 {
        self.sample_adjusted(logits, |_| {}, history, probs, cand)
    }

    /// [`Sampler::sample`] with a hook: `adjust` gets a copy of the logits
    /// before anything else happens to them (a logit bias, banned tokens set
    /// to `f32::NEG_INFINITY`, an app's own rules); `logits` stay untouched.
    /// A hook that leaves every logit `-inf` or NaN makes the choice
    /// arbitrary (token 0 or the first), never a panic.
    pub fn sample_adjusted(
        &mut self,
        logits: &[f32],
        adjust: impl FnOnce(&mut [f32]),
        history: &[u32],
        probs: &mut [f32],
        cand: &mut [u64],
    ) -> u32 {
        let n = logits.len();
        let p = self.params;
        let probs = &mut probs[..n];
        probs.copy_from_slice(logits);
        adjust(probs);
        if p.repeat_penalty != 1.0 && p.repeat_penalty > 0.0 {
            let recent = &history[history.len().saturating_sub(p.repeat_last_n)..];
            for (i, &t) in recent.iter().enumerate() {
                let t = t as usize;
                // Penalise each distinct token once.
                if t >= n || recent[..i].contains(&(t as u32)) {
                    continue;
                }
                let l = &mut probs[t];
                *l = if *l > 0.0 {
                    *l / p.repeat_penalty
                } else {
                    *l * p.repeat_penalty
                };
            }
        }
        // Not a positive number (0, negative, NaN): greedy.
        if p.temperature.is_nan() || p.temperature <= 0.0 {
            return argmax(probs) as u32;
        }
        for v in probs.iter_mut() {
            *v /= p.temperature;
        }
        softmax(probs);
        let coin = self.random_f32();
        let cand = &mut cand[..n];
        let min_p_on = p.min_p > 0.0;
        if p.top_k == 0 && !min_p_on {
            if p.top_p <= 0.0 || p.top_p >= 1.0 {
                sample_mult(probs, coin) as u32
            } else {
                sample_topp(probs, p.top_p, cand, coin)
            }
        } else {
            sample_filtered(probs, &p, cand, coin)
        }
    }
}

/// Index of the first largest value.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Samples index `i` with probability `probs[i]` (they sum to 1).
fn sample_mult(probs: &[f32], coin: f32) -> usize {
    let mut cdf = 0f32;
    for (i, &p) in probs.iter().enumerate() {
        cdf += p;
        if coin < cdf {
            return i;
        }
    }
    probs.len() - 1
}

/// A sort key: descending probability, then ascending index (the order of a
/// stable sort of llama2.c's candidates, which are collected in index order).
fn key(p: f32, i: usize) -> u64 {
    // Probabilities are >= 0, so their bits order like their values.
    ((p.to_bits() as u64) << 32) | (u32::MAX - i as u32) as u64
}

fn key_prob(k: u64) -> f32 {
    f32::from_bits((k >> 32) as u32)
}

fn key_index(k: u64) -> u32 {
    u32::MAX - k as u32
}

/// llama2.c's `sample_topp`.
fn sample_topp(probs: &[f32], topp: f32, cand: &mut [u64], coin: f32) -> u32 {
    let n = probs.len();
    // Tokens below this cannot be part of the nucleus.
    let cutoff = (1.0 - topp) / (n - 1).max(1) as f32;
    let mut n0 = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p >= cutoff {
            cand[n0] = key(p, i);
            n0 += 1;
        }
    }
    let cand = &mut cand[..n0];
    cand.sort_unstable_by(|a, b| b.cmp(a));
    nucleus(cand, topp, coin)
}

/// Samples from the shortest prefix of `cand` (sorted) whose mass exceeds `topp`.
fn nucleus(cand: &[u64], topp: f32, coin: f32) -> u32 {
    if cand.is_empty() {
        // Only possible when the probabilities are not numbers (NaN logits).
        return 0;
    }
    let mut cumulative = 0f32;
    let mut last = cand.len() - 1;
    for (i, &k) in cand.iter().enumerate() {
        cumulative += key_prob(k);
        if cumulative > topp {
            last = i;
            break;
        }
    }
    let r = coin * cumulative;
    let mut cdf = 0f32;
    for &k in &cand[..=last] {
        cdf += key_prob(k);
        if r < cdf {
            return key_index(k);
        }
    }
    key_index(cand[last])
}

/// Top-k, then min-p, then top-p over the sorted candidates.
fn sample_filtered(probs: &[f32], p: &SamplerParams, cand: &mut [u64], coin: f32) -> u32 {
    let max = probs.iter().fold(0f32, |m, &x| m.max(x));
    let floor = if p.min_p > 0.0 { max * p.min_p } else { 0.0 };
    let mut n0 = 0;
    for (i, &x) in probs.iter().enumerate() {
        if x >= floor {
            cand[n0] = key(x, i);
            n0 += 1;
        }
    }
    let mut cand = &mut cand[..n0];
    if p.top_k > 0 && p.top_k < cand.len() {
        cand.select_nth_unstable_by(p.top_k - 1, |a, b| b.cmp(a));
        cand = &mut cand[..p.top_k];
    }
    cand.sort_unstable_by(|a, b| b.cmp(a));
    let topp = if p.top_p > 0.0 && p.top_p < 1.0 {
        // Relative to the mass that survived the other filters.
        p.top_p * cand.iter().map(|&k| key_prob(k)).sum::<f32>()
    } else {
        f32::INFINITY
    };
    nucleus(cand, topp, coin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_matches_llama2c() {
        // run.c: state = 42; random_u32 computed by hand from its definition.
        let mut s = Sampler::new(
            SamplerParams {
                ..Default::default()
            },
            42,
        );
        let mut state: u64 = 42;
        for _ in 0..1000 {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let want = (state.wrapping_mul(0x2545F4914F6CDD1D) >> 32) as u32;
            assert_eq!(s.random_u32(), want);
        }
    }

    #[test]
    fn validate_names_the_bad_field() {
        assert_eq!(SamplerParams::default().validate(), Ok(()));
        assert_eq!(SamplerParams::greedy().validate(), Ok(()));
        let cases: [(SamplerParams, &str); 8] = [
            (
                SamplerParams {
                    temperature: f32::NAN,
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplerParams {
                    temperature: -0.5,
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplerParams {
                    temperature: f32::INFINITY,
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplerParams {
                    top_p: 1.5,
                    ..Default::default()
                },
                "top_p",
            ),
            (
                SamplerParams {
                    top_p: -0.1,
                    ..Default::default()
                },
                "top_p",
            ),
            (
                SamplerParams {
                    min_p: f32::NAN,
                    ..Default::default()
                },
                "min_p",
            ),
            (
                SamplerParams {
                    repeat_penalty: 0.0,
                    ..Default::default()
                },
                "repeat_penalty",
            ),
            (
                SamplerParams {
                    repeat_penalty: -1.0,
                    ..Default::default()
                },
                "repeat_penalty",
            ),
        ];
        for (p, field) in cases {
            match p.validate() {
                Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, field, "{p:?}"),
                other => panic!("{p:?}: {other:?}"),
            }
        }
        let e = SamplerParams {
            top_p: 2.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        extern crate std;
        use std::string::ToString;
        assert!(e.to_string().contains("top_p 2"), "{e}");
    }

    #[test]
    fn reseed_restarts_the_draws() {
        let mut a = Sampler::new(SamplerParams::default(), 42);
        let first: [u32; 4] = core::array::from_fn(|_| a.random_u32());
        a.reseed(42);
        let again: [u32; 4] = core::array::from_fn(|_| a.random_u32());
        assert_eq!(first, again);
        a.reseed(43);
        let other: [u32; 4] = core::array::from_fn(|_| a.random_u32());
        assert_ne!(first, other);
        // Zero is the fixed constant, as in `new`.
        let (mut z, mut n) = (
            Sampler::new(SamplerParams::default(), 7),
            Sampler::new(SamplerParams::default(), 0),
        );
        z.reseed(0);
        assert_eq!(z.random_u32(), n.random_u32());
    }

    #[test]
    fn adjust_hook_bans_a_token() {
        let mut s = Sampler::new(SamplerParams::greedy(), 0);
        let logits = [1.0, 3.0, 2.0];
        let (mut p, mut c) = ([0f32; 3], [0u64; 3]);
        let t = s.sample_adjusted(&logits, |l| l[1] = f32::NEG_INFINITY, &[], &mut p, &mut c);
        assert_eq!(t, 2);
        assert_eq!(logits, [1.0, 3.0, 2.0], "logits are left untouched");
    }

    #[test]
    fn greedy_picks_first_max() {
        let mut s = Sampler::new(SamplerParams::greedy(), 0);
        let logits = [1.0, 3.0, 3.0, -1.0];
        let (mut p, mut c) = ([0f32; 4], [0u64; 4]);
        assert_eq!(s.sample(&logits, &[], &mut p, &mut c), 1);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(
            SamplerParams {
                top_k: 1,
                ..Default::default()
            },
            7,
        );
        let logits = [0.5, 0.1, 2.0, 1.9];
        let (mut p, mut c) = ([0f32; 4], [0u64; 4]);
        for _ in 0..50 {
            assert_eq!(s.sample(&logits, &[], &mut p, &mut c), 2);
        }
    }

    #[test]
    fn min_p_drops_unlikely() {
        let mut s = Sampler::new(
            SamplerParams {
                min_p: 0.5,
                top_p: 1.0,
                ..Default::default()
            },
            3,
        );
        // Token 0 is e^4 times more likely than the rest.
        let logits = [4.0, 0.0, 0.0, 0.0];
        let (mut p, mut c) = ([0f32; 4], [0u64; 4]);
        for _ in 0..50 {
            assert_eq!(s.sample(&logits, &[], &mut p, &mut c), 0);
        }
    }

    #[test]
    fn repetition_penalty_changes_greedy_choice() {
        let mut s = Sampler::new(
            SamplerParams {
                repeat_penalty: 2.0,
                ..SamplerParams::greedy()
            },
            0,
        );
        let logits = [1.0, 1.5, 0.2];
        let (mut p, mut c) = ([0f32; 3], [0u64; 3]);
        assert_eq!(s.sample(&logits, &[], &mut p, &mut c), 1);
        // 1.5 / 2 = 0.75 < 1.0.
        assert_eq!(s.sample(&logits, &[1, 1], &mut p, &mut c), 0);
        assert_eq!(logits, [1.0, 1.5, 0.2], "logits are left untouched");
    }

    #[test]
    fn temperature_sampling_follows_distribution() {
        let mut s = Sampler::new(
            SamplerParams {
                top_p: 1.0,
                ..Default::default()
            },
            11,
        );
        // p = [0.5, 0.25, 0.25]
        let logits = [2f32.ln(), 0.0, 0.0];
        let (mut p, mut c) = ([0f32; 3], [0u64; 3]);
        let mut counts = [0usize; 3];
        for _ in 0..20000 {
            counts[s.sample(&logits, &[], &mut p, &mut c) as usize] += 1;
        }
        assert!((9500..10500).contains(&counts[0]), "{counts:?}");
        assert!((4500..5500).contains(&counts[1]), "{counts:?}");
    }
}
