//! The quantizers and the per-tensor type choice against files llama.cpp's
//! `llama-quantize` wrote (../shared/testdata/llamacpp-quants: a random
//! F16 Llama, dim 256, 2 layers, tied classifier, quantized by llama.cpp
//! c392e50 without importance matrix): every tensor must get the same type
//! and the same bytes.

mod common;

use common::shared;
use llamette::format::gguf::{Gguf, TensorInfo};
use llamette::quant::ftype::{sort_in_llamacpp_order, target_type, Counters};
use llamette::quant::{quantize_row as quantize, FileType, ModelInfo};
use llamette::tensor::TensorType;

const DIR: &str = "testdata/llamacpp-quants";

/// The bytes of tensor `t` (every type of these files is one the crate
/// reads, so the parser checked their place).
fn tensor_bytes<'a>(g: &Gguf<'a>, t: &TensorInfo<'a>) -> &'a [u8] {
    assert!(t.ty.is_some(), "type {} of {:?}", t.raw_type, name(t));
    g.tensor_data(t)
}

fn name<'a>(t: &TensorInfo<'a>) -> &'a str {
    std::str::from_utf8(t.name).unwrap()
}

fn tensors<'a>(g: &Gguf<'a>) -> Vec<TensorInfo<'a>> {
    g.tensors().collect::<Result<_, _>>().unwrap()
}

/// Compares one llama.cpp file with what the crate makes of the F16 model;
/// returns (tensors compared, identical), printing the first differing
/// block of each tensor that differs.
fn compare(ftype: FileType) -> (usize, usize) {
    let src_bytes = shared(&format!("{DIR}/t256-f16.gguf"));
    let src = Gguf::parse(&src_bytes).unwrap();
    let file = format!("t256-{}.gguf", ftype.name());
    let ref_bytes = shared(&format!("{DIR}/{file}"));
    let reference = Gguf::parse(&ref_bytes).unwrap();
    assert_eq!(
        reference.get_u64("general.file_type").unwrap(),
        Some(u64::from(ftype.number())),
        "{file}"
    );

    let get = |k| src.get_u64(k).unwrap().unwrap() as u32;
    let mut src_tensors = tensors(&src);
    let model = ModelInfo::new(
        get("llama.attention.head_count"),
        get("llama.attention.head_count_kv"),
        get("llama.block_count"),
        src_tensors.iter().map(|t| t.name),
    );
    sort_in_llamacpp_order(&mut src_tensors, |t| t.name);
    // llama-quantize writes the tensors in the order it visits them.
    let ref_order: Vec<&str> = tensors(&reference).iter().map(name).collect();
    let our_order: Vec<&str> = src_tensors.iter().map(name).collect();
    assert_eq!(our_order, ref_order, "{file}: tensor order");

    let mut counters = Counters::default();
    let (mut compared, mut identical, mut quantized) = (0, 0, 0);
    for t in &src_tensors {
        let r = reference.tensor(t.name).unwrap();
        assert_eq!((r.n_dims, r.dims), (t.n_dims, t.dims), "{file} {}", name(t));
        let dims = &t.dims[..t.n_dims as usize];
        let chosen = target_type(ftype, t.name, dims, &model, &mut counters).unwrap();
        let src_type = TensorType::from_ggml(t.raw_type).unwrap();
        let ty = chosen.unwrap_or(src_type);
        assert_eq!(
            ty.ggml_type().unwrap_or(u32::MAX),
            r.raw_type,
            "{file} {}: type {} chosen, llama.cpp wrote {}",
            name(t),
            ty.name(),
            llamette::tensor::ggml_type_name(r.raw_type)
        );

        let want = tensor_bytes(&reference, &r);
        let mut got = vec![0u8; want.len()];
        let data = tensor_bytes(&src, t);
        if ty == src_type {
            got.copy_from_slice(data); // llama.cpp copies those
        } else {
            assert_eq!(src_type, TensorType::F16);
            quantized += 1;
            let values: Vec<f32> = data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect();
            let row_bytes = llamette::quant::row_bytes(ty, t.dims[0] as usize).unwrap();
            for (x, y) in values
                .chunks_exact(t.dims[0] as usize)
                .zip(got.chunks_exact_mut(row_bytes))
            {
                quantize(ty, x, y).unwrap();
            }
        }
        compared += 1;
        if got == want {
            identical += 1;
        } else {
            let bb = ty.block_bytes();
            let b = (0..want.len() / bb)
                .find(|&b| got[b * bb..(b + 1) * bb] != want[b * bb..(b + 1) * bb])
                .unwrap();
            let n_diff = got
                .chunks_exact(bb)
                .zip(want.chunks_exact(bb))
                .filter(|(g, w)| g != w)
                .count();
            eprintln!(
                "{file} {} ({}): {n_diff} of {} blocks differ, first block {b}\n  ours:     {:02x?}\n  llama.cpp {:02x?}",
                name(t),
                ty.name(),
                want.len() / bb,
                &got[b * bb..(b + 1) * bb],
                &want[b * bb..(b + 1) * bb]
            );
        }
    }
    println!(
        "{file}: {compared} tensors compared ({quantized} quantized here, {} copied), {identical} identical",
        compared - quantized
    );
    assert_eq!(quantized, 15, "{file}: every matrix quantized");
    (compared, identical)
}

fn check(ftype: FileType) {
    let (compared, identical) = compare(ftype);
    assert_eq!(compared, 20, "{}", ftype.name());
    assert_eq!(identical, compared, "{}", ftype.name());
}

#[test]
fn q2_k_file() {
    check(FileType::Q2_K);
}

#[test]
fn q3_k_l_file() {
    check(FileType::Q3_K_L);
}

#[test]
fn q3_k_m_file() {
    check(FileType::Q3_K_M);
}

#[test]
fn q4_0_file() {
    check(FileType::Q4_0);
}

#[test]
fn q4_1_file() {
    check(FileType::Q4_1);
}

#[test]
fn q4_k_m_file() {
    check(FileType::Q4_K_M);
}

#[test]
fn q4_k_s_file() {
    check(FileType::Q4_K_S);
}

#[test]
fn q5_0_file() {
    check(FileType::Q5_0);
}

#[test]
fn q5_1_file() {
    check(FileType::Q5_1);
}

#[test]
fn q5_k_m_file() {
    check(FileType::Q5_K_M);
}

#[test]
fn q6_k_file() {
    check(FileType::Q6_K);
}
