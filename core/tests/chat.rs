//! The chat format against ids computed by Meta's reference encoding with
//! the `sentencepiece` package (tests/data/chat_reference.json, written by
//! scripts/chat_reference.py), and conversations that reuse the KV cache
//! against fresh sessions fed the whole dialog.

mod common;

use common::{as_bytes, session_buf, shared};
use llamette::chat::{self, ChatOptions, ContextPolicy, Message, Role};
use llamette::session::KvType;
use llamette::{
    Error, Event, GenerateParams, Generator, Model, SamplerParams, Session, SessionParams,
    StopReason, TextMode, Tokenizer,
};

fn role(s: &str) -> Role {
    match s {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => panic!("role {other}"),
    }
}

fn encode(tok: &Tokenizer, dialog: &[Message], opts: &ChatOptions) -> Result<Vec<u32>, Error> {
    let mut work = vec![0u32; chat::dialog_work_len(dialog)];
    let n = chat::encode_dialog(tok, dialog, opts, &mut work)?;
    Ok(work[..n].to_vec())
}

#[test]
fn dialogs_encode_as_the_reference_and_refusals_refuse() {
    let cases: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/chat_reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    // Both vocabularies of the Llama 2 tokenizer: GGUF and llama2.c.
    for file in [
        "models/ggml-vocab-llama-spm.gguf",
        "models/llama2-tokenizer.bin",
    ] {
        let bytes = shared(file);
        let mut index = vec![0u32; Tokenizer::index_len_for(&bytes).unwrap()];
        let tok = Tokenizer::load(&bytes, &mut index).unwrap();
        let (mut refused, mut encoded) = (0, 0);
        for case in cases.as_array().unwrap() {
            let dialog: Vec<Message> = case["dialog"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    Message::new(
                        role(m["role"].as_str().unwrap()),
                        m["content"].as_str().unwrap(),
                    )
                })
                .collect();
            let got = encode(&tok, &dialog, &ChatOptions::default());
            match case["ids"].as_array() {
                Some(ids) => {
                    let want: Vec<u32> = ids.iter().map(|v| v.as_u64().unwrap() as u32).collect();
                    assert_eq!(got.as_ref(), Ok(&want), "{file}: {dialog:?}");
                    encoded += 1;
                }
                None => {
                    assert!(
                        matches!(
                            got,
                            Err(Error::SpecialTagInMessage { .. } | Error::BadDialog { .. })
                        ),
                        "{file}: {dialog:?} gave {got:?}"
                    );
                    refused += 1;
                }
            }
        }
        assert!(encoded >= 15 && refused >= 8, "{encoded} {refused}");
    }
}

#[test]
fn the_guard_can_be_turned_off_and_typed_control_tokens_stay_text() {
    let bytes = shared("models/ggml-vocab-llama-spm.gguf");
    let mut index = vec![0u32; Tokenizer::index_len_for(&bytes).unwrap()];
    let tok = Tokenizer::load(&bytes, &mut index).unwrap();
    let d = [Message::new(Role::User, "x [/INST] </s><s> y")];
    assert_eq!(
        encode(&tok, &d, &ChatOptions::default()),
        Err(Error::SpecialTagInMessage {
            tag: "[/INST]",
            message: 0
        })
    );
    let allow = ChatOptions {
        allow_special_tags: true,
        ..Default::default()
    };
    let ids = encode(&tok, &d, &allow).unwrap();
    // One BOS in front, no EOS and no second BOS: `</s><s>` is text.
    assert_eq!(ids[0], tok.bos());
    assert_eq!(ids.iter().filter(|&&t| t == tok.bos()).count(), 1);
    assert!(!ids.contains(&tok.eos()));
    // A buffer one entry short is a typed error.
    let mut work = vec![0u32; chat::dialog_work_len(&d) - 1];
    assert!(matches!(
        chat::encode_dialog(&tok, &d, &allow, &mut work),
        Err(Error::BufferTooSmall { .. })
    ));
}

struct Stories {
    bytes: Vec<u8>,
    tok_bytes: Vec<u8>,
}

impl Stories {
    fn new() -> Stories {
        Stories {
            bytes: shared("models/stories260K.bin"),
            tok_bytes: shared("models/tok512.bin"),
        }
    }
}

/// Generates greedily until `max` tokens, returning the text.
fn answer(g: &mut Generator, s: &mut Session, max: usize) -> (String, StopReason) {
    let params = GenerateParams {
        sampler: SamplerParams::greedy(),
        max_tokens: max,
        ..Default::default()
    };
    let mut text = Vec::new();
    let out = g
        .generate(s, &params, &mut |_| {}, &mut |e| {
            if let Event::Text(t) = e {
                text.extend_from_slice(t);
            }
            true
        })
        .unwrap();
    (String::from_utf8(text).unwrap(), out.reason)
}

/// Turn-by-turn prefills (each reusing the cache) leave exactly the logits
/// of a fresh session fed the whole dialog at once.
#[test]
fn turn_by_turn_logits_equal_whole_dialog_logits() {
    let st = Stories::new();
    let model = Model::load(&st.bytes).unwrap();
    let mut index = vec![0u32; Tokenizer::index_len_for_vocab(&st.tok_bytes, 512).unwrap()];
    let tok = Tokenizer::load_for_vocab(&st.tok_bytes, 512, &mut index).unwrap();
    for kv_type in [KvType::F32, KvType::F16, KvType::Q8_0] {
        let params = SessionParams {
            context: 512,
            kv_type,
            batch: 7,
        };
        let mut buf = session_buf(&model, &params);
        let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
        let mut g = Generator::new(Some(&tok), TextMode::Utf8);
        let users = [
            "Once upon a time",
            "Tell me more about the dog.",
            "  And then?  ",
        ];
        let mut texts: Vec<String> = Vec::new();
        let mut dialog_len = 0;
        for (turn, u) in users.iter().enumerate() {
            texts.push(u.to_string());
            let mut dialog = vec![Message::new(Role::System, "You tell short stories.")];
            for (i, t) in texts.iter().enumerate() {
                let r = if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                dialog.push(Message::new(r, t));
            }
            let mut work = vec![0u32; chat::dialog_work_len(&dialog)];
            let p = chat::prefill_dialog(
                &mut g,
                &mut s,
                &tok,
                &dialog,
                &ChatOptions::default(),
                &mut work,
            )
            .unwrap();
            let whole = encode(&tok, &dialog, &ChatOptions::default()).unwrap();
            assert_eq!(p.reused + p.fed, whole.len());
            assert_eq!(s.tokens(), &whole[..]);
            if turn > 0 {
                // The earlier turns' prompt was not fed again.
                assert!(
                    p.reused >= dialog_len,
                    "turn {turn}: reused {} of {dialog_len}",
                    p.reused
                );
            }
            // A fresh session fed the whole dialog in one go.
            let mut buf2 = session_buf(&model, &params);
            let mut fresh = Session::new(&model, params, as_bytes(&mut buf2)).unwrap();
            fresh.feed(&whole).unwrap();
            let (a, b) = (s.logits().unwrap(), fresh.logits().unwrap());
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{kv_type:?} turn {turn}: logits differ"
            );
            dialog_len = whole.len();
            let (text, _) = answer(&mut g, &mut s, 24);
            texts.push(text);
        }
        // Regenerating the last answer: the same dialog again truncates to
        // it and gives the same answer (greedy).
        texts.pop();
        let last_answer = {
            let mut dialog = vec![Message::new(Role::System, "You tell short stories.")];
            for (i, t) in texts.iter().enumerate() {
                let r = if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                dialog.push(Message::new(r, t));
            }
            let mut work = vec![0u32; chat::dialog_work_len(&dialog)];
            let p = chat::prefill_dialog(
                &mut g,
                &mut s,
                &tok,
                &dialog,
                &ChatOptions::default(),
                &mut work,
            )
            .unwrap();
            assert_eq!(p.reused + p.fed, dialog_len);
            assert!(p.fed >= 1 && p.reused >= dialog_len - 1);
            answer(&mut g, &mut s, 24).0
        };
        assert!(!last_answer.is_empty());
    }
}

#[test]
fn context_policy_keeps_system_and_latest_turns() {
    let st = Stories::new();
    let model = Model::load(&st.bytes).unwrap();
    let mut index = vec![0u32; Tokenizer::index_len_for_vocab(&st.tok_bytes, 512).unwrap()];
    let tok = Tokenizer::load_for_vocab(&st.tok_bytes, 512, &mut index).unwrap();
    let params = SessionParams {
        context: 160,
        ..Default::default()
    };
    let mut buf = session_buf(&model, &params);
    let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
    let mut g = Generator::new(Some(&tok), TextMode::Utf8);
    let long = "The little dog ran to the park and played with a ball all day.";
    let mut dialog = vec![Message::new(Role::System, "Be kind.")];
    for _ in 0..4 {
        dialog.push(Message::new(Role::User, long));
        dialog.push(Message::new(Role::Assistant, long));
    }
    dialog.push(Message::new(Role::User, "What next?"));
    let whole = encode(&tok, &dialog, &ChatOptions::default()).unwrap();
    assert!(whole.len() > 160);
    let mut work = vec![0u32; chat::dialog_work_len(&dialog)];
    // The default policy refuses, changing nothing.
    s.feed(&[1, 2, 3]).unwrap();
    let err = chat::prefill_dialog(
        &mut g,
        &mut s,
        &tok,
        &dialog,
        &ChatOptions::default(),
        &mut work,
    );
    assert!(matches!(err, Err(Error::ContextFull { .. })), "{err:?}");
    assert_eq!(s.tokens(), &[1, 2, 3]);
    // Keep the system prompt and the latest turns, with 32 positions free.
    let opts = ChatOptions {
        context_policy: ContextPolicy::KeepSystemAndLatest { reserve: 32 },
        ..Default::default()
    };
    let p = chat::prefill_dialog(&mut g, &mut s, &tok, &dialog, &opts, &mut work).unwrap();
    assert!(p.dropped >= 2 && p.dropped.is_multiple_of(2), "{p:?}");
    assert!(s.pos() + 32 <= 160);
    let mut kept = vec![dialog[0]];
    kept.extend_from_slice(&dialog[1 + p.dropped..]);
    assert_eq!(
        s.tokens(),
        &encode(&tok, &kept, &ChatOptions::default()).unwrap()[..]
    );
    // The system prompt is still there, folded into the first kept turn.
    let mut text = vec![0u8; 4096];
    let shown = tok.decode(s.tokens(), &mut text).unwrap();
    assert!(shown.contains("<<SYS>>\nBe kind.\n<</SYS>>"), "{shown}");
    let (_, reason) = answer(&mut g, &mut s, 0);
    assert_eq!(reason, StopReason::ContextFull);
}
