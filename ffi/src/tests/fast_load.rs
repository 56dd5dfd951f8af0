//! `llamette_model_open_file_ex` with `LLAMETTE_OPEN_FOR_SPEED`: the model
//! copied into library memory and interleaved where the kernels gain from
//! it gives the mapped model's greedy tokens, reports what it costs in
//! `owned_bytes`, and gives the memory back with its last handle.

use std::ffi::CString;
use std::path::PathBuf;
use std::ptr;

use llamette_core::format::gguf::Gguf;
use llamette_core::tensor::TensorType;

use super::common::*;
use super::no_alloc::live_bytes;
use crate::*;

fn shared_file(name: &str) -> Vec<u8> {
    let p = format!("{}/../../shared/models/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(p).expect("../shared/models beside the checkout")
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The offset after a GGUF metadata value of type `ty` at `at`.
fn skip_value(b: &[u8], at: usize, ty: u32) -> usize {
    match ty {
        0 | 1 | 7 => at + 1,
        2 | 3 => at + 2,
        4..=6 => at + 4,
        10..=12 => at + 8,
        8 => at + 8 + u64_at(b, at) as usize,
        9 => {
            let (elem, n) = (u32_at(b, at), u64_at(b, at + 4));
            (0..n).fold(at + 12, |at, _| skip_value(b, at, elem))
        }
        _ => panic!("GGUF value type {ty}"),
    }
}

/// stories260K.gguf (F32) with its 2-D matrices quantized to Q8_0, as
/// `llamette quantize --type q8_0` writes it: the same metadata, new tensor
/// records and data.
pub(super) fn quantized_stories260k() -> Vec<u8> {
    let src = shared_file("stories260K.gguf");
    let g = Gguf::parse(&src).unwrap();
    let mut at = 24; // magic, version, tensor and metadata counts
    for _ in 0..g.n_metadata {
        let key_len = u64_at(&src, at) as usize;
        at += 8 + key_len;
        let ty = u32_at(&src, at);
        at = skip_value(&src, at + 4, ty);
    }
    let mut out = src[..at].to_vec();
    let mut tensors = Vec::new();
    for t in g.tensors() {
        let t = t.unwrap();
        let data = g.tensor_data(&t);
        let cols = t.dims[0] as usize;
        if t.n_dims == 2 && cols.is_multiple_of(32) && t.ty == Some(TensorType::F32) {
            let ty = TensorType::Q8_0;
            let rb = llamette_core::quant::row_bytes(ty, cols).unwrap();
            let mut q = vec![0u8; data.len() / 4 / cols * rb];
            for (src, dst) in data.chunks_exact(4 * cols).zip(q.chunks_exact_mut(rb)) {
                let row: Vec<f32> = src
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                llamette_core::quant::quantize_row(ty, &row, dst).unwrap();
            }
            tensors.push((t, ty.ggml_type().unwrap(), q));
        } else {
            tensors.push((t, t.raw_type, data.to_vec()));
        }
    }
    let align = g.alignment as usize;
    let mut offset = 0usize;
    for (t, ty, data) in &tensors {
        out.extend_from_slice(&(t.name.len() as u64).to_le_bytes());
        out.extend_from_slice(t.name);
        out.extend_from_slice(&t.n_dims.to_le_bytes());
        for d in &t.dims[..t.n_dims as usize] {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + data.len()).next_multiple_of(align);
    }
    for (_, _, data) in &tensors {
        out.resize(out.len().next_multiple_of(align), 0);
        out.extend_from_slice(data);
    }
    out
}

/// A file that removes itself.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let p = std::env::temp_dir().join(format!("llamette-ffi-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        TempFile(p)
    }

    fn c_path(&self) -> CString {
        CString::new(self.0.to_str().unwrap()).unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn open_ex(path: &CString, tok: Option<&CString>, flags: u32) -> *mut llamette_model {
    let mut m = ptr::null_mut();
    let st = unsafe {
        llamette_model_open_file_ex(
            path.as_ptr(),
            tok.map_or(ptr::null(), |t| t.as_ptr()),
            flags,
            &mut m,
        )
    };
    assert_eq!(st, LLAMETTE_STATUS_OK, "{}", last_error());
    m
}

/// The greedy tokens of a 256-position session.
fn greedy_tokens(m: *const llamette_model) -> Vec<u32> {
    let s = new_session(m, 256);
    let (c, _) = run_greedy(s, info(m).bos_token);
    unsafe { llamette_session_free(s) };
    c.tokens
}

#[test]
fn loaded_for_speed_gives_the_mapped_tokens_and_reports_its_memory() {
    let q8 = quantized_stories260k();
    let file = TempFile::new("stories260K-q8_0.gguf", &q8);
    let path = file.c_path();
    let fast = llamette_kernels_interleaved() != 0;
    let huge_pages = cfg!(target_os = "linux");

    let mapped = open_ex(&path, None, 0);
    let mi = info(mapped);
    assert_eq!((mi.owned_bytes, mi.interleaved_matrices), (0, 0));
    let want = greedy_tokens(mapped);
    assert!(want.len() > 100, "{} tokens", want.len());

    let speedy = open_ex(&path, None, LLAMETTE_OPEN_FOR_SPEED);
    let si = info(speedy);
    // The embedding, the classifier and q, k, v, o of 5 layers.
    let (owned, matrices) = match (fast, huge_pages) {
        (true, _) => (q8.len() as u64, 22),
        (false, true) => (q8.len() as u64, 0),
        (false, false) => (0, 0),
    };
    assert_eq!((si.owned_bytes, si.interleaved_matrices), (owned, matrices));
    assert_eq!(si.file_bytes, q8.len() as u64);
    assert_eq!(greedy_tokens(speedy), want, "the same greedy tokens");
    eprintln!(
        "Q8_0 stories260K loaded for speed: {} bytes owned, {} matrices interleaved (kernels {})",
        si.owned_bytes,
        si.interleaved_matrices,
        llamette_core::kernels::active().name
    );
    // The file may go: the model reads its copy.
    drop(file);
    if owned > 0 {
        assert_eq!(greedy_tokens(speedy), want);
    }
    unsafe {
        llamette_model_free(speedy);
        llamette_model_free(mapped);
    }
}

#[test]
fn the_copy_goes_with_the_last_handle() {
    let q8 = quantized_stories260k();
    let file = TempFile::new("stories260K-q8_0-free.gguf", &q8);
    let path = file.c_path();
    let before = live_bytes();
    let m = open_ex(&path, None, LLAMETTE_OPEN_FOR_SPEED);
    let owned = info(m).owned_bytes as isize;
    if owned == 0 {
        eprintln!("no copy on this machine (mapped): nothing to free");
        unsafe { llamette_model_free(m) };
        return;
    }
    assert!(live_bytes() - before >= owned);
    let s = new_session(m, 64);
    let d = {
        let mut d = ptr::null_mut();
        assert_eq!(
            unsafe { llamette_decoder_new(m, &mut d) },
            LLAMETTE_STATUS_OK
        );
        d
    };
    unsafe { llamette_model_free(m) };
    assert!(
        live_bytes() - before >= owned,
        "the session and decoder keep it"
    );
    unsafe { llamette_session_free(s) };
    assert!(live_bytes() - before >= owned, "the decoder keeps it");
    unsafe { llamette_decoder_free(d) };
    let left = live_bytes() - before;
    assert!(left < owned / 2, "{left} bytes still allocated of {owned}");
}

#[test]
fn other_files_and_bad_flags() {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
    let bin = CString::new(format!("{models}/stories260K.bin")).unwrap();
    let tok = CString::new(format!("{models}/tok512.bin")).unwrap();
    let mut want = greedy_reference();
    want.pop();
    // A llama2.c file (nothing to interleave) and an F32 GGUF: run.c's text.
    let gguf = CString::new(format!(
        "{}/../../shared/models/stories260K.gguf",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for (path, tok) in [(&bin, Some(&tok)), (&gguf, None)] {
        let m = open_ex(path, tok, LLAMETTE_OPEN_FOR_SPEED);
        let i = info(m);
        assert_eq!(i.interleaved_matrices, 0);
        // A copy only for huge pages.
        let expect = if cfg!(target_os = "linux") {
            i.file_bytes
        } else {
            0
        };
        assert_eq!(i.owned_bytes, expect, "{path:?}");
        let s = new_session(m, 256);
        let (c, _) = run_greedy(s, i.bos_token);
        assert_eq!(c.text, want, "{path:?}");
        unsafe {
            llamette_session_free(s);
            llamette_model_free(m);
        }
    }
    // Unknown flags, missing files, NULLs: errors, the output untouched.
    let sentinel = ptr::dangling_mut::<llamette_model>();
    let mut m = sentinel;
    unsafe {
        assert_eq!(
            llamette_model_open_file_ex(bin.as_ptr(), tok.as_ptr(), 2, &mut m),
            LLAMETTE_STATUS_INVALID_ARGUMENT
        );
        assert!(last_error().contains("flags"), "{}", last_error());
        let missing = CString::new("/nonexistent/model.gguf").unwrap();
        assert_eq!(
            llamette_model_open_file_ex(
                missing.as_ptr(),
                ptr::null(),
                LLAMETTE_OPEN_FOR_SPEED,
                &mut m
            ),
            LLAMETTE_STATUS_IO
        );
        assert_eq!(
            llamette_model_open_file_ex(ptr::null(), ptr::null(), 0, &mut m),
            LLAMETTE_STATUS_NULL_ARGUMENT
        );
        assert_eq!(
            llamette_model_open_file_ex(bin.as_ptr(), ptr::null(), 0, ptr::null_mut()),
            LLAMETTE_STATUS_NULL_ARGUMENT
        );
        // Half a GGUF loaded for speed: BAD_FILE.
        let q8 = quantized_stories260k();
        let half = TempFile::new("half.gguf", &q8[..q8.len() / 2]);
        assert_eq!(
            llamette_model_open_file_ex(
                half.c_path().as_ptr(),
                ptr::null(),
                LLAMETTE_OPEN_FOR_SPEED,
                &mut m
            ),
            LLAMETTE_STATUS_BAD_FILE
        );
    }
    assert_eq!(m, sentinel);
}

/// A caller built against the first version of `llamette_model_info` (up
/// to `rope_theta`) gets those fields; the appended ones are not written.
#[test]
fn an_older_callers_model_info() {
    let m = default_model();
    let want = info(m);
    let mut i = llamette_model_info {
        owned_bytes: 77,
        interleaved_matrices: 77,
        ..Default::default()
    };
    i.struct_size = core::mem::offset_of!(llamette_model_info, owned_bytes);
    assert_eq!(
        unsafe { llamette_model_get_info(m, &mut i) },
        LLAMETTE_STATUS_OK
    );
    assert_eq!((i.dim, i.rope_theta), (want.dim, want.rope_theta));
    assert_eq!((i.owned_bytes, i.interleaved_matrices), (77, 77));
    i.struct_size -= 1;
    assert_eq!(
        unsafe { llamette_model_get_info(m, &mut i) },
        LLAMETTE_STATUS_INVALID_ARGUMENT
    );
    unsafe { llamette_model_free(m) };
}
