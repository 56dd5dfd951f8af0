//! The llama.cpp-compatible quantizers on edge rows: wrong lengths, zeros,
//! a single nonzero value, tiny and huge values, negative zero, NaN and
//! infinities. The bytes of ordinary rows are checked against llama.cpp's
//! own files in `quant_llamacpp.rs`; here the crate's decoder checks what
//! the edge rows decode to.

use half::f16;
use llamette::quant::{f32_to_bf16, quantize_row as quantize, row_bytes};
use llamette::tensor::TensorType;

const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

fn h(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The values of a row of `n` elements of `ty`, by the crate's decoder
/// (itself checked against the Python `gguf` package's).
fn decode(ty: TensorType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    llamette::kernels::types::dequantize_row(ty, bytes, &mut out);
    out
}

fn encode(ty: TensorType, src: &[f32]) -> Vec<u8> {
    let mut out = vec![0xa5u8; row_bytes(ty, src.len()).unwrap()];
    quantize(ty, src, &mut out).unwrap();
    out
}

/// The types with quantizers of their own here (Q4_0 and Q8_0 are the
/// crate's older ones, tested in `quant.rs`; they are included where the
/// dispatcher is).
const NEW: [TensorType; 10] = [
    TensorType::Q4_1,
    TensorType::Q5_0,
    TensorType::Q5_1,
    TensorType::Q2_K,
    TensorType::Q3_K,
    TensorType::Q4_K,
    TensorType::Q5_K,
    TensorType::Q6_K,
    TensorType::IQ4_NL,
    TensorType::BF16,
];

/// A deterministic row of roughly normal values (std about `scale`).
fn gaussian_row(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut uniform = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| (0..4).map(|_| uniform()).sum::<f32>() - 2.0)
        .map(|x| x * 1.7 * scale)
        .collect()
}

#[test]
fn wrong_lengths_are_errors_not_panics() {
    for ty in llamette::kernels::types::GGML_TYPES.map(|(_, t)| t) {
        let bl = ty.block_len();
        let n = 2 * 256;
        let src = vec![0.5f32; n];
        let need = row_bytes(ty, n).unwrap();
        let mut dst = vec![0u8; need + 1];
        assert!(quantize(ty, &src, &mut dst[..need]).is_ok(), "{ty:?}");
        assert!(
            quantize(ty, &src, &mut dst[..need - 1]).is_err(),
            "{ty:?} short"
        );
        assert!(quantize(ty, &src, &mut dst).is_err(), "{ty:?} long");
        if bl > 1 {
            assert!(
                quantize(ty, &src[..n - 1], &mut dst[..need]).is_err(),
                "{ty:?}"
            );
            assert!(row_bytes(ty, bl + 1).is_err());
        }
        // No values: no bytes, fine.
        quantize(ty, &[], &mut []).unwrap();
        assert!(quantize(ty, &[], &mut [0u8; 1]).is_err());
    }
}

#[test]
fn zero_rows_encode_as_ggml_does() {
    for ty in NEW {
        let n = 256;
        let bytes = encode(ty, &vec![0.0; n]);
        let per_block = ty.block_bytes();
        let first = &bytes[..per_block];
        let mut want = vec![0u8; per_block];
        match ty {
            // d = 0 / -16 = -0.0; every level 16: low nibbles 0, fifth bits set.
            TensorType::Q5_0 => want[..6].copy_from_slice(&[0x00, 0x80, 0xff, 0xff, 0xff, 0xff]),
            // d = 0; every index 8 (level 1, the nearest to 0).
            TensorType::IQ4_NL => want[2..].fill(0x88),
            _ => {}
        }
        assert_eq!(first, &want[..], "{ty:?}");
        assert!(bytes.chunks(per_block).all(|b| b == first), "{ty:?}");
        assert!(decode(ty, &bytes, n).iter().all(|&v| v == 0.0), "{ty:?}");
        // Negative zeros decode to zeros too (Q4_1/Q5_1 store m = -0.0).
        let bytes = encode(ty, &vec![-0.0; n]);
        assert!(decode(ty, &bytes, n).iter().all(|&v| v == 0.0), "{ty:?}");
    }
}

/// Relative RMS error of each type on ordinary rows, and worst-case bounds
/// (the decoders here agree with the encoders' layouts).
#[test]
fn ordinary_rows_round_trip() {
    let n = 4096;
    for (ty, max_rel_rms) in [
        (TensorType::Q4_1, 0.12),
        (TensorType::Q5_0, 0.06),
        (TensorType::Q5_1, 0.06),
        (TensorType::Q2_K, 0.45),
        (TensorType::Q3_K, 0.22),
        (TensorType::Q4_K, 0.11),
        (TensorType::Q5_K, 0.055),
        (TensorType::Q6_K, 0.027),
        (TensorType::IQ4_NL, 0.11),
        (TensorType::BF16, 0.003),
        (TensorType::Q4_0, 0.13),
        (TensorType::Q8_0, 0.008),
        (TensorType::F16, 0.0004),
    ] {
        let src = gaussian_row(n, ty.ggml_type().unwrap_or(u32::MAX) as u64 + 1, 0.02);
        let out = decode(ty, &encode(ty, &src), n);
        let err: f32 = src.iter().zip(&out).map(|(a, b)| (a - b) * (a - b)).sum();
        let sig: f32 = src.iter().map(|a| a * a).sum();
        let rel = (err / sig).sqrt();
        assert!(rel < max_rel_rms, "{ty:?}: relative RMS error {rel}");
    }
}

#[test]
fn a_single_nonzero_value_survives() {
    for ty in NEW {
        for (pos, v) in [(0usize, 1.0f32), (37, -2.5), (255, 0.1)] {
            let mut src = vec![0f32; 256];
            src[pos] = v;
            let out = decode(ty, &encode(ty, &src), 256);
            // Q2_K has 2 bits: with a lone value its 4-level grid still
            // lands on it (or within a quarter of it).
            let tol = if ty == TensorType::Q2_K { 0.25 } else { 0.01 };
            assert!(
                (out[pos] - v).abs() <= tol * v.abs(),
                "{ty:?} {v}: {}",
                out[pos]
            );
            // IQ4_NL has no zero level: zeros beside the value decode to
            // d·1, about v/113 or v/127.
            let zero_tol = if ty == TensorType::IQ4_NL { 0.01 } else { 1e-3 };
            for (i, &o) in out.iter().enumerate() {
                if i != pos {
                    assert!(o.abs() <= zero_tol * v.abs(), "{ty:?} {v}: [{i}] = {o}");
                }
            }
        }
    }
}

#[test]
fn tiny_values_encode_as_zero_and_large_ones_within_f16() {
    for ty in NEW {
        // Far below f16's smallest subnormal: every scale underflows.
        let src: Vec<f32> = gaussian_row(256, 7, 1e-30);
        let out = decode(ty, &encode(ty, &src), 256);
        if ty == TensorType::BF16 {
            assert!(out.iter().zip(&src).all(|(a, b)| (a - b).abs() <= 1e-32));
        } else {
            assert!(out.iter().all(|&v| v.abs() <= 1e-30), "{ty:?}");
        }
        // Large but with scales inside f16's range (max 65504).
        let src: Vec<f32> = gaussian_row(256, 8, 1000.0);
        let out = decode(ty, &encode(ty, &src), 256);
        let err: f32 = src.iter().zip(&out).map(|(a, b)| (a - b).abs()).sum();
        let sig: f32 = src.iter().map(|a| a.abs()).sum();
        assert!(err / sig < 0.5, "{ty:?}: {}", err / sig);
    }
}

#[test]
fn non_finite_values_do_not_panic() {
    let specials = [
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        -f32::INFINITY,
        f32::MAX,
        -f32::MAX,
        1e-45,
        -0.0,
    ];
    for ty in llamette::kernels::types::GGML_TYPES.map(|(_, t)| t) {
        for (k, &s) in specials.iter().enumerate() {
            // One special among ordinary values, and rows of it alone.
            let mut row = gaussian_row(512, k as u64, 1.0);
            row[k * 37] = s;
            let _ = encode(ty, &row);
            let _ = encode(ty, &vec![s; 512]);
            let mixed: Vec<f32> = (0..512).map(|i| specials[(i * 7 + k) % 8]).collect();
            let _ = encode(ty, &mixed);
        }
    }
}

/// What the legacy types make of NaN and infinity (documented in
/// `quant::legacy`): NaN is skipped by the scale search and gets level 0;
/// an infinity makes the scale infinite.
#[test]
fn legacy_non_finite_behaviour() {
    let mut row = gaussian_row(32, 3, 1.0);
    row[5] = f32::NAN;
    for ty in [TensorType::Q4_1, TensorType::Q5_1] {
        let bytes = encode(ty, &row);
        let out = decode(ty, &bytes, 32);
        // Level 0: the block minimum.
        assert_eq!(out[5], h(&bytes, 2), "{ty:?}");
        let finite = row.iter().filter(|v| !v.is_nan()).cloned();
        let min = finite.fold(f32::MAX, f32::min);
        assert_eq!(h(&bytes, 2), f16::from_f32(min).to_f32());
    }
    let bytes = encode(TensorType::Q5_0, &row);
    let out = decode(TensorType::Q5_0, &bytes, 32);
    assert_eq!(out[5], -16.0 * h(&bytes, 0)); // level 0
    row[5] = f32::INFINITY;
    for ty in [TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1] {
        let bytes = encode(ty, &row);
        assert!(h(&bytes, 0).is_infinite(), "{ty:?}");
    }
}

#[test]
fn bf16_matches_ggml_rounding() {
    // ggml_compute_fp32_to_bf16: round to nearest even on the top 16 bits,
    // NaN quietened (bit 6 of the result) with sign and top payload kept.
    for bits in [
        0u32,
        0x8000_0000,
        0x3f80_0000,
        0x3f80_8000,
        0x3f81_8000,
        0x3f80_7fff,
        0x7f7f_ffff,
        0x7f80_0000,
        0xff80_0000,
        0x7f80_0001,
        0xff81_2345,
        0x7fc0_0000,
        0x0000_0001,
        0x0080_0000,
    ] {
        let x = f32::from_bits(bits);
        let want = if bits & 0x7fff_ffff > 0x7f80_0000 {
            (bits >> 16) as u16 | 0x40
        } else {
            let lsb = (bits >> 16) & 1;
            ((bits + 0x7fff + lsb) >> 16) as u16
        };
        assert_eq!(f32_to_bf16(x), want, "{bits:#010x}");
        let got = encode(TensorType::BF16, &[x]);
        assert_eq!(got, want.to_le_bytes(), "{bits:#010x}");
        if x.is_nan() {
            assert!(f32::from_bits(u32::from(want) << 16).is_nan());
        }
    }
}

/// IQ4_NL on a block that is exactly its table times 0.01: the indices
/// are the table positions, the scale 0.01 to f16 precision.
#[test]
fn iq4_nl_reproduces_its_own_grid() {
    let src: Vec<f32> = (0..32)
        .map(|i| IQ4_NL_VALUES[i % 16] as f32 * 0.01)
        .collect();
    let bytes = encode(TensorType::IQ4_NL, &src);
    for j in 0..16 {
        assert_eq!(bytes[2 + j], (j as u8) | ((j as u8) << 4));
    }
    assert!((h(&bytes, 0) - 0.01).abs() < 0.01 / 1024.0);
}
