//! Chat templates through the C ABI: a tokenizer GGUF carrying a template
//! (the shared Llama 2 vocabulary with `tokenizer.chat_template` appended)
//! over the embedded model's weights; the ids were computed by
//! `scripts/chat_template_reference.py`'s reference (jinja2 and
//! sentencepiece), which `test.sh` runs on more dialogs.

use std::ptr;

use super::common::*;
use crate::*;

/// TinyLlama-1.1B-Chat-v1.0's template.
const ZEPHYR: &str = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
/// Mistral-7B-Instruct-v0.1's.
const MISTRAL: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

/// The shared vocabulary-only GGUF with `tokenizer.chat_template` added
/// (its key/value section ends the file: it has no tensors).
fn vocab_with(template: &str) -> Vec<u8> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/models/ggml-vocab-llama-spm.gguf"
    );
    let mut b = std::fs::read(p).expect("../shared/models beside the checkout");
    let n_kv = u64::from_le_bytes(b[16..24].try_into().unwrap());
    b[16..24].copy_from_slice(&(n_kv + 1).to_le_bytes());
    let key = b"tokenizer.chat_template";
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(&8u32.to_le_bytes()); // string
    b.extend_from_slice(&(template.len() as u64).to_le_bytes());
    b.extend_from_slice(template.as_bytes());
    b
}

fn open(vocab: &[u8]) -> *mut llamette_model {
    let weights = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/stories260K.bin"
    ))
    .unwrap();
    let weights = Box::leak(weights.into_boxed_slice());
    let vocab = Box::leak(vocab.to_vec().into_boxed_slice());
    let mut m = ptr::null_mut();
    assert_eq!(
        unsafe {
            llamette_model_open_memory(
                weights.as_ptr(),
                weights.len(),
                vocab.as_ptr(),
                vocab.len(),
                &mut m,
            )
        },
        LLAMETTE_STATUS_OK,
        "{}",
        last_error()
    );
    m
}

fn msg(role: u32, s: &str) -> llamette_chat_message {
    llamette_chat_message {
        struct_size: std::mem::size_of::<llamette_chat_message>(),
        role,
        content: s.as_ptr().cast(),
        content_len: s.len(),
    }
}

fn encode(
    m: *const llamette_model,
    d: &[llamette_chat_message],
    flags: u32,
) -> Result<Vec<u32>, u32> {
    let o = llamette_chat_options {
        struct_size: std::mem::size_of::<llamette_chat_options>(),
        flags,
        ..Default::default()
    };
    let mut ids = vec![0u32; 4096];
    let mut n = 0;
    let st =
        unsafe { llamette_chat_encode(m, d.as_ptr(), d.len(), &o, ids.as_mut_ptr(), 4096, &mut n) };
    if st != LLAMETTE_STATUS_OK {
        return Err(st);
    }
    ids.truncate(n);
    Ok(ids)
}

fn format(m: *const llamette_model, flags: u32) -> u32 {
    let o = llamette_chat_options {
        struct_size: std::mem::size_of::<llamette_chat_options>(),
        flags,
        ..Default::default()
    };
    let mut f = 0;
    assert_eq!(
        unsafe { llamette_model_chat_format(m, &o, &mut f) },
        LLAMETTE_STATUS_OK
    );
    f
}

fn ids(s: &str) -> Vec<u32> {
    s.split(' ').map(|x| x.parse().unwrap()).collect()
}

#[test]
fn templates_are_used_reported_and_guarded() {
    let zephyr = open(&vocab_with(ZEPHYR));
    let mistral = open(&vocab_with(MISTRAL));
    let plain = open(&vocab_with(""));
    assert_eq!(format(zephyr, 0), LLAMETTE_CHAT_FORMAT_TEMPLATE);
    assert_eq!(format(mistral, 0), LLAMETTE_CHAT_FORMAT_TEMPLATE);
    assert_eq!(
        format(zephyr, LLAMETTE_CHAT_LLAMA2_FORMAT),
        LLAMETTE_CHAT_FORMAT_LLAMA2
    );
    let d = [
        msg(LLAMETTE_ROLE_SYSTEM, "Be a pirate"),
        msg(LLAMETTE_ROLE_USER, "Hi"),
        msg(LLAMETTE_ROLE_ASSISTANT, "Arr"),
        msg(LLAMETTE_ROLE_USER, "Bye"),
    ];
    assert_eq!(
        encode(zephyr, &d, 0).unwrap(),
        ids("1 529 29989 5205 29989 29958 13 3629 263 21625 403 2 29871 13 29966 29989 1792 29989 29958 13 18567 2 29871 13 29966 29989 465 22137 29989 29958 13 16401 2 29871 13 29966 29989 1792 29989 29958 13 2059 29872 2 29871 13 29966 29989 465 22137 29989 29958 13")
    );
    assert_eq!(
        encode(mistral, &d[1..], 0).unwrap(),
        ids("1 518 25580 29962 6324 518 29914 25580 29962 16401 2 518 25580 29962 2648 29872 518 29914 25580 29962")
    );
    // Mistral's template takes no system message: its own exception.
    assert_eq!(encode(mistral, &d, 0), Err(LLAMETTE_STATUS_TEMPLATE));
    assert!(
        last_error().contains("Conversation roles must alternate"),
        "{}",
        last_error()
    );
    // Forced, or an empty template: Llama 2's format, as for a file without one.
    assert_eq!(
        encode(zephyr, &d, LLAMETTE_CHAT_LLAMA2_FORMAT).unwrap(),
        encode(plain, &d, 0).unwrap()
    );
    // The guard: control-token texts, and the template's own markers.
    let typed = |m, s| encode(m, &[msg(LLAMETTE_ROLE_USER, s)], 0);
    assert_eq!(typed(zephyr, "a </s> b"), Err(LLAMETTE_STATUS_REFUSED));
    assert_eq!(typed(mistral, "<s>"), Err(LLAMETTE_STATUS_REFUSED));
    assert_eq!(typed(zephyr, "<|assistant|>"), Err(LLAMETTE_STATUS_REFUSED));
    assert!(typed(mistral, "<|assistant|>").is_ok());
    assert_eq!(typed(mistral, "x [/INST]"), Err(LLAMETTE_STATUS_REFUSED));
    assert!(typed(zephyr, "x [/INST]").is_ok());
    // Opted out, `</s>` in a message is EOS (as Hugging Face renders it).
    let eos = encode(
        zephyr,
        &[msg(LLAMETTE_ROLE_USER, "a</s>")],
        LLAMETTE_CHAT_ALLOW_SPECIAL_TAGS,
    )
    .unwrap();
    assert_eq!(eos.iter().filter(|&&t| t == 2).count(), 2);
    // A session prefills with the template and reports it (the ids are
    // beyond the embedded model's 512 tokens, so the feed is refused and
    // the session is unchanged).
    let s = new_session(zephyr, 512);
    let mut r = llamette_chat_prefill_result {
        struct_size: std::mem::size_of::<llamette_chat_prefill_result>(),
        ..Default::default()
    };
    let st = unsafe { llamette_chat_prefill(s, d.as_ptr(), d.len(), ptr::null(), &mut r) };
    assert_eq!(st, LLAMETTE_STATUS_UNKNOWN_TOKEN);
    let mut pos = 9;
    unsafe { llamette_session_position(s, &mut pos) };
    assert_eq!(pos, 0);
    unsafe {
        llamette_session_free(s);
        llamette_model_free(zephyr);
        llamette_model_free(mistral);
        llamette_model_free(plain);
    }
}
