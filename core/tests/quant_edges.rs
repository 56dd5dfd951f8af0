//! The llama.cpp-compatible quantizers on edge rows: wrong lengths, zeros,
//! a single nonzero value, tiny and huge values, negative zero, NaN and
//! infinities. The bytes of ordinary rows are checked against llama.cpp's
//! own files in `quant_llamacpp.rs`; here a small decoder per type (from
//! ggml-common.h's layouts) checks what the edge rows decode to.

use half::f16;
use llamette::quant::{f32_to_bf16, quantize, GgmlType};

const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

fn h(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Q4_K/Q5_K's 6-bit scale and minimum `j`.
fn scale_min_k4(j: usize, s: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    };
    (sc as f32, m as f32)
}

/// Value `i` of one block.
fn decode_one(ty: GgmlType, b: &[u8], i: usize) -> f32 {
    match ty {
        GgmlType::F32 => f32::from_le_bytes(b[..4].try_into().unwrap()),
        GgmlType::F16 => h(b, 0),
        GgmlType::BF16 => f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16),
        GgmlType::Q8_0 => h(b, 0) * (b[2 + i] as i8) as f32,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::IQ4_NL => {
            let qs = if ty == GgmlType::Q4_1 {
                &b[4..]
            } else {
                &b[2..]
            };
            let q = if i < 16 { qs[i] & 0xf } else { qs[i - 16] >> 4 };
            match ty {
                GgmlType::Q4_0 => h(b, 0) * (q as f32 - 8.0),
                GgmlType::Q4_1 => h(b, 0) * q as f32 + h(b, 2),
                _ => h(b, 0) * IQ4_NL_VALUES[q as usize] as f32,
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let at = if ty == GgmlType::Q5_0 { 2 } else { 4 };
            let qh = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            let qs = &b[at + 4..];
            let low = if i < 16 { qs[i] & 0xf } else { qs[i - 16] >> 4 };
            let q = (low as u32 | (((qh >> i) & 1) << 4)) as f32;
            if ty == GgmlType::Q5_0 {
                h(b, 0) * (q - 16.0)
            } else {
                h(b, 0) * q + h(b, 2)
            }
        }
        GgmlType::Q2_K => {
            let (scales, qs) = (&b[..16], &b[16..80]);
            let q = (qs[32 * (i / 128) + i % 32] >> (2 * (i % 128 / 32))) & 3;
            let sc = scales[i / 16];
            h(b, 80) * (sc & 0xf) as f32 * q as f32 - h(b, 82) * (sc >> 4) as f32
        }
        GgmlType::Q3_K => {
            let (hmask, qs, s) = (&b[..32], &b[32..96], &b[96..108]);
            let low = (qs[32 * (i / 128) + i % 32] >> (2 * (i % 128 / 32))) & 3;
            let high = (hmask[i % 32] >> (i / 32)) & 1;
            let q = low as i32 + 4 * high as i32 - 4;
            let j = i / 16;
            let l4 = if j < 8 { s[j] & 0xf } else { s[j - 8] >> 4 };
            let sc = (l4 | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i32 - 32;
            h(b, 108) * sc as f32 * q as f32
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let (sc, m) = scale_min_k4(i / 32, &b[4..16]);
            let qs = if ty == GgmlType::Q4_K {
                &b[16..]
            } else {
                &b[48..]
            };
            let (c, r) = (i / 64, i % 64);
            let byte = qs[32 * c + r % 32];
            let mut q = if r < 32 { byte & 0xf } else { byte >> 4 };
            if ty == GgmlType::Q5_K {
                q |= ((b[16 + r % 32] >> (2 * c + r / 32)) & 1) << 4;
            }
            h(b, 0) * sc * q as f32 - h(b, 2) * m
        }
        GgmlType::Q6_K => {
            let (ql, qh, sc) = (&b[..128], &b[128..192], &b[192..208]);
            let (half, r) = (i / 128, i % 128);
            let (k, l) = (r / 32, r % 32);
            let byte = ql[64 * half + l + 32 * (k % 2)];
            let low = if k < 2 { byte & 0xf } else { byte >> 4 };
            let high = (qh[32 * half + l] >> (2 * k)) & 3;
            let q = (low | (high << 4)) as i32 - 32;
            h(b, 208) * (sc[i / 16] as i8) as f32 * q as f32
        }
    }
}

fn decode(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let (bl, bb) = (ty.block_len(), ty.block_bytes());
    (0..n)
        .map(|i| decode_one(ty, &bytes[i / bl * bb..][..bb], i % bl))
        .collect()
}

fn encode(ty: GgmlType, src: &[f32]) -> Vec<u8> {
    let mut out = vec![0xa5u8; ty.row_bytes(src.len()).unwrap()];
    quantize(ty, src, &mut out).unwrap();
    out
}

/// The types with quantizers of their own here (Q4_0 and Q8_0 are the
/// crate's older ones, tested in `quant.rs`; they are included where the
/// dispatcher is).
const NEW: [GgmlType; 10] = [
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::BF16,
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
    for ty in GgmlType::ALL {
        let bl = ty.block_len();
        let n = 2 * 256;
        let src = vec![0.5f32; n];
        let need = ty.row_bytes(n).unwrap();
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
            assert!(ty.row_bytes(bl + 1).is_err());
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
            GgmlType::Q5_0 => want[..6].copy_from_slice(&[0x00, 0x80, 0xff, 0xff, 0xff, 0xff]),
            // d = 0; every index 8 (level 1, the nearest to 0).
            GgmlType::IQ4_NL => want[2..].fill(0x88),
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
        (GgmlType::Q4_1, 0.12),
        (GgmlType::Q5_0, 0.06),
        (GgmlType::Q5_1, 0.06),
        (GgmlType::Q2_K, 0.45),
        (GgmlType::Q3_K, 0.22),
        (GgmlType::Q4_K, 0.11),
        (GgmlType::Q5_K, 0.055),
        (GgmlType::Q6_K, 0.027),
        (GgmlType::IQ4_NL, 0.11),
        (GgmlType::BF16, 0.003),
        (GgmlType::Q4_0, 0.13),
        (GgmlType::Q8_0, 0.008),
        (GgmlType::F16, 0.0004),
    ] {
        let src = gaussian_row(n, ty.number() as u64 + 1, 0.02);
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
            let tol = if ty == GgmlType::Q2_K { 0.25 } else { 0.01 };
            assert!(
                (out[pos] - v).abs() <= tol * v.abs(),
                "{ty:?} {v}: {}",
                out[pos]
            );
            // IQ4_NL has no zero level: zeros beside the value decode to
            // d·1, about v/113 or v/127.
            let zero_tol = if ty == GgmlType::IQ4_NL { 0.01 } else { 1e-3 };
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
        if ty == GgmlType::BF16 {
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
    for ty in GgmlType::ALL {
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
    for ty in [GgmlType::Q4_1, GgmlType::Q5_1] {
        let bytes = encode(ty, &row);
        let out = decode(ty, &bytes, 32);
        // Level 0: the block minimum.
        assert_eq!(out[5], h(&bytes, 2), "{ty:?}");
        let finite = row.iter().filter(|v| !v.is_nan()).cloned();
        let min = finite.fold(f32::MAX, f32::min);
        assert_eq!(h(&bytes, 2), f16::from_f32(min).to_f32());
    }
    let bytes = encode(GgmlType::Q5_0, &row);
    let out = decode(GgmlType::Q5_0, &bytes, 32);
    assert_eq!(out[5], -16.0 * h(&bytes, 0)); // level 0
    row[5] = f32::INFINITY;
    for ty in [GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1] {
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
        let got = encode(GgmlType::BF16, &[x]);
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
    let bytes = encode(GgmlType::IQ4_NL, &src);
    for j in 0..16 {
        assert_eq!(bytes[2 + j], (j as u8) | ((j as u8) << 4));
    }
    assert!((h(&bytes, 0) - 0.01).abs() < 0.01 / 1024.0);
}
