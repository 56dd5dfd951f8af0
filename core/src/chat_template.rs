//! Which chat format a model's conversations use, and the chat templates of
//! GGUF files that are not Llama 2's.
//!
//! A GGUF converted from a Hugging Face model carries the model's Jinja
//! chat template under `tokenizer.chat_template`. [`ChatFormat::of_file`]
//! reads it: no template, or Llama 2's (one that mentions both `[INST]`
//! and `<<SYS>>`, as llama.cpp recognises it), is [`ChatFormat::Llama2`],
//! the built-in, `no_std`, reference-exact format of [`crate::chat`];
//! any other template (TinyLlama-Chat's Zephyr format, Mistral-Instruct's)
//! is [`ChatFormat::Template`].
//!
//! With the `std` feature a template is rendered with the `minijinja`
//! crate as Hugging Face's `apply_chat_template` renders it: blocks trimmed
//! (`trim_blocks`, `lstrip_blocks`), `messages` (each with `role` and
//! `content`), `bos_token` and `eos_token` (the texts of the tokenizer's
//! BOS and EOS), `add_generation_prompt` (true: the dialog ends with a
//! user message) and `raise_exception(message)` (an error). The text is
//! then tokenized as llama.cpp tokenizes a prompt with special tokens
//! parsed: the texts of control tokens (`<s>`, `</s>`) become those tokens,
//! every stretch of text between them is encoded on its own (each with
//! SentencePiece's leading space), and a BOS goes in front unless the
//! template wrote one. Rendering runs on a fuel budget, so a hostile
//! template is an error, not a hang. Without `std`, encoding with a
//! template is [`Error::Template`].
//!
//! # The injection guard with templates
//!
//! Llama 2's format refuses messages carrying its tags (see
//! [`crate::chat`]). With a template, a message is refused
//! ([`Error::SpecialTagInMessage`], unless
//! [`ChatOptions::allow_special_tags`]) when it contains the text of the
//! BOS or EOS token (`<s>`, `</s>`: rendered into the prompt they would
//! become control tokens, and `</s>` would end a turn), or one of the
//! markers in [`TEMPLATE_TAGS`] that the template's own source contains
//! (Zephyr's `<|user|>`, Mistral's `[INST]`). A template's markers are
//! plain text to the tokenizer, so markers not on that list cannot be told
//! apart from text: an application that uses such a template must screen
//! its users' messages itself.

use crate::chat::{ChatOptions, Message};
use crate::error::{Error, Name, Result};
use crate::format::gguf::Gguf;

/// The format a dialog is encoded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFormat<'t> {
    /// Llama 2's chat format, built in ([`crate::chat::encode_dialog`]).
    Llama2,
    /// A Jinja chat template (the file's `tokenizer.chat_template`),
    /// rendered with `minijinja` (feature `std`).
    Template(&'t str),
}

/// Markers of common chat templates that a message may not contain when
/// the template's source contains them (see the module documentation).
pub const TEMPLATE_TAGS: [&str; 10] = [
    "[INST]",
    "[/INST]",
    "<<SYS>>",
    "<</SYS>>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|end|>",
];

/// The GGUF key of a chat template.
pub const TEMPLATE_KEY: &str = "tokenizer.chat_template";

impl<'t> ChatFormat<'t> {
    /// The format for a file whose template is `template`: Llama 2's for
    /// none (or an empty one), or for a template that mentions both `[INST]` and `<<SYS>>`
    /// (Llama 2's own, which the built-in format reproduces exactly);
    /// otherwise the template.
    pub fn detect(template: Option<&'t str>) -> Self {
        match template {
            Some(t) if !t.trim().is_empty() && !is_llama2_template(t) => ChatFormat::Template(t),
            _ => ChatFormat::Llama2,
        }
    }

    /// The format of a model or tokenizer file: a GGUF's
    /// `tokenizer.chat_template` as [`ChatFormat::detect`] sees it; a
    /// llama2.c file has none (Llama 2).
    ///
    /// Errors: a GGUF that does not parse, or whose template is not a
    /// string or not UTF-8 ([`Error::BadMetadata`]).
    pub fn of_file(bytes: &'t [u8]) -> Result<Self> {
        if !bytes.starts_with(b"GGUF") {
            return Ok(ChatFormat::Llama2);
        }
        Ok(Self::detect(template_of(&Gguf::parse(bytes)?)?))
    }

    /// A short name: `"llama2"` or `"template"`.
    pub fn name(&self) -> &'static str {
        match self {
            ChatFormat::Llama2 => "llama2",
            ChatFormat::Template(_) => "template",
        }
    }

    /// What a person reads: `"Llama 2 (built in)"` or `"the file's chat
    /// template (tokenizer.chat_template)"`.
    pub fn describe(&self) -> &'static str {
        match self {
            ChatFormat::Llama2 => "Llama 2 (built in)",
            ChatFormat::Template(_) => "the file's chat template (tokenizer.chat_template)",
        }
    }
}

/// Whether a template is taken for Llama 2's: it mentions both `[INST]`
/// and `<<SYS>>` (the test llama.cpp applies).
pub fn is_llama2_template(template: &str) -> bool {
    template.contains("[INST]") && template.contains("<<SYS>>")
}

/// A GGUF's `tokenizer.chat_template`, if it has one.
///
/// Errors: [`Error::BadMetadata`] for a value that is not a UTF-8 string.
pub fn template_of<'a>(gguf: &Gguf<'a>) -> Result<Option<&'a str>> {
    match gguf.get_str(TEMPLATE_KEY)? {
        None => Ok(None),
        Some(b) => core::str::from_utf8(b)
            .map(Some)
            .map_err(|_| Error::BadMetadata {
                key: Name::new(TEMPLATE_KEY.as_bytes()),
                reason: "the chat template is not UTF-8",
            }),
    }
}

/// The first tag `text` may not contain under `template` (see the module
/// documentation); `bos_text` and `eos_text` are the texts of the BOS and
/// EOS tokens.
fn guarded(template: &str, text: &str, bos_text: &str, eos_text: &str) -> Option<&'static str> {
    // The control tokens' texts, when they are the usual ones (the tag is
    // reported as a static string).
    for (t, s) in [(bos_text, "<s>"), (eos_text, "</s>")] {
        if !t.is_empty() && text.contains(t) {
            return Some(if t == s { s } else { "a control token's text" });
        }
    }
    TEMPLATE_TAGS
        .iter()
        .copied()
        .find(|tag| template.contains(tag) && text.contains(tag))
}

/// Checks the injection guard for `messages` under `template` (see the
/// module documentation).
///
/// Errors: [`Error::SpecialTagInMessage`].
pub fn check_messages(
    template: &str,
    messages: &[Message],
    opts: &ChatOptions,
    bos_text: &str,
    eos_text: &str,
) -> Result<()> {
    if opts.allow_special_tags {
        return Ok(());
    }
    for (i, m) in messages.iter().enumerate() {
        if let Some(tag) = guarded(template, m.content, bos_text, eos_text) {
            return Err(Error::SpecialTagInMessage { tag, message: i });
        }
    }
    Ok(())
}

#[cfg(feature = "std")]
pub use render::{encode_dialog_as, prefill_dialog_as, render_template};

#[cfg(feature = "std")]
mod render {
    use std::collections::BTreeMap;
    use std::string::{String, ToString};
    use std::vec;
    use std::vec::Vec;

    use minijinja::syntax::SyntaxConfig;
    use minijinja::value::Value;
    use minijinja::{Environment, ErrorKind};

    use super::{check_messages, ChatFormat};
    use crate::chat::{self, ChatOptions, ContextPolicy, Message, Prefill, Role};
    use crate::error::{Error, Name, Result};
    use crate::generate::Generator;
    use crate::session::Session;
    use crate::tokenizer::{Bos, TokenType, Tokenizer};

    /// Instructions a template may run per byte of its input (and a floor):
    /// generous for any real template, finite for a hostile one.
    const FUEL_PER_BYTE: u64 = 64;
    const FUEL_FLOOR: u64 = 1_000_000;

    fn template_error(e: &minijinja::Error) -> Error {
        let text = match e.detail() {
            Some(d) => d.to_string(),
            None => e.kind().to_string(),
        };
        Error::Template {
            message: Name::new(text.as_bytes()),
        }
    }

    fn role_name(r: Role) -> &'static str {
        match r {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// Renders `template` over `messages` as Hugging Face's
    /// `apply_chat_template` does (see the module documentation), with
    /// `add_generation_prompt` as given.
    ///
    /// Errors: [`Error::Template`] (a syntax error, an undefined filter or
    /// function, an exception the template raised, fuel or recursion
    /// exhausted).
    pub fn render_template(
        template: &str,
        messages: &[Message],
        bos_text: &str,
        eos_text: &str,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error(&e))?;
        env.set_syntax(syntax);
        let input: usize = template.len() + messages.iter().map(|m| m.content.len()).sum::<usize>();
        env.set_fuel(Some(
            FUEL_FLOOR.saturating_add((input as u64).saturating_mul(FUEL_PER_BYTE)),
        ));
        env.add_function(
            "raise_exception",
            |msg: String| -> core::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        let tmpl = env
            .template_from_str(template)
            .map_err(|e| template_error(&e))?;
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut o = BTreeMap::new();
                o.insert("role", Value::from(role_name(m.role)));
                o.insert("content", Value::from(m.content));
                Value::from(o)
            })
            .collect();
        let mut ctx = BTreeMap::new();
        ctx.insert("messages", Value::from(msgs));
        ctx.insert("bos_token", Value::from(bos_text));
        ctx.insert("eos_token", Value::from(eos_text));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        tmpl.render(Value::from(ctx))
            .map_err(|e| template_error(&e))
    }

    fn piece_text<'a>(tok: &Tokenizer<'a>, id: u32) -> &'a str {
        tok.piece(id)
            .ok()
            .and_then(|p| core::str::from_utf8(p).ok())
            .unwrap_or("")
    }

    /// Tokenizes rendered text as llama.cpp does with special tokens
    /// parsed: control tokens' texts become those tokens (the longest
    /// first where two start at the same place), the text between them is
    /// encoded stretch by stretch; BOS in front unless the text starts with it.
    fn tokenize_special(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
        let mut controls: Vec<(&str, u32)> = (0..tok.n_tokens())
            .filter(|&id| matches!(tok.token_type(id), Ok(TokenType::Control)))
            .map(|id| (piece_text(tok, id), id))
            .filter(|(t, _)| !t.is_empty())
            .collect();
        controls.sort_by_key(|c| core::cmp::Reverse(c.0.len()));
        let mut ids = Vec::new();
        let mut work = Vec::new();
        let mut encode = |s: &str, ids: &mut Vec<u32>| -> Result<()> {
            if s.is_empty() {
                return Ok(());
            }
            work.resize(Tokenizer::encode_work_len(s.len()), 0);
            ids.extend_from_slice(tok.encode(s, Bos::None, &mut work)?);
            Ok(())
        };
        let mut rest = text;
        let mut start = 0;
        while start < rest.len() {
            let here = &rest[start..];
            match controls.iter().find(|(t, _)| here.starts_with(t)) {
                Some(&(t, id)) => {
                    encode(&rest[..start], &mut ids)?;
                    ids.push(id);
                    rest = &here[t.len()..];
                    start = 0;
                }
                None => {
                    start += here.chars().next().map_or(1, char::len_utf8);
                }
            }
        }
        encode(rest, &mut ids)?;
        if ids.first() != Some(&tok.bos()) {
            ids.insert(0, tok.bos());
        }
        Ok(ids)
    }

    /// Encodes `messages` in `format`: Llama 2's built-in format
    /// ([`chat::encode_dialog`]) or a template (see the module
    /// documentation). The dialog's shape is checked as for Llama 2 (an
    /// optional system message, then user and assistant alternating,
    /// ending with a user message); a template may refuse more (Mistral's
    /// takes no system message).
    ///
    /// Errors: those of [`chat::encode_dialog`], [`Error::Template`].
    pub fn encode_dialog_as(
        tok: &Tokenizer,
        format: ChatFormat,
        messages: &[Message],
        opts: &ChatOptions,
    ) -> Result<Vec<u32>> {
        match format {
            ChatFormat::Llama2 => {
                let mut work = vec![0u32; chat::dialog_work_len(messages)];
                let n = chat::encode_dialog(tok, messages, opts, &mut work)?;
                work.truncate(n);
                Ok(work)
            }
            ChatFormat::Template(t) => {
                // The shape first (the guard is the template's, below).
                let shape = ChatOptions {
                    allow_special_tags: true,
                    ..*opts
                };
                chat::check_dialog(messages, &shape)?;
                let (bos, eos) = (piece_text(tok, tok.bos()), piece_text(tok, tok.eos()));
                check_messages(t, messages, opts, bos, eos)?;
                let text = render_template(t, messages, bos, eos, true)?;
                tokenize_special(tok, &text)
            }
        }
    }

    /// [`chat::prefill_dialog`] in `format`: keeps the longest prefix the
    /// session holds and feeds the rest of the dialog's encoding; with
    /// [`ContextPolicy::KeepSystemAndLatest`], drops the oldest
    /// user/assistant pairs until it fits.
    ///
    /// Errors: those of [`encode_dialog_as`] and [`chat::prefill_dialog`].
    pub fn prefill_dialog_as(
        gen: &mut Generator,
        session: &mut Session,
        tok: &Tokenizer,
        format: ChatFormat,
        messages: &[Message],
        opts: &ChatOptions,
    ) -> Result<Prefill> {
        if format == ChatFormat::Llama2 {
            let mut work = vec![0u32; chat::dialog_work_len(messages)];
            return chat::prefill_dialog(gen, session, tok, messages, opts, &mut work);
        }
        let context = session.context();
        let system = usize::from(messages.first().map(|m| m.role) == Some(Role::System));
        let mut dropped = 0;
        let ids = loop {
            let d: Vec<Message> = messages[..system]
                .iter()
                .chain(&messages[system + 2 * dropped..])
                .copied()
                .collect();
            let ids = encode_dialog_as(tok, format, &d, opts)?;
            let n = ids.len();
            let fits = match opts.context_policy {
                ContextPolicy::Error => n <= context,
                ContextPolicy::KeepSystemAndLatest { reserve } => {
                    n.saturating_add(reserve) <= context
                }
            };
            if fits {
                break ids;
            }
            if matches!(opts.context_policy, ContextPolicy::Error) || d.len() - system == 1 {
                return Err(Error::ContextFull {
                    pos: 0,
                    requested: n,
                    context,
                });
            }
            dropped += 1;
        };
        let (reused, fed) = chat::prefill_ids(gen, session, &ids)?;
        Ok(Prefill {
            reused,
            fed,
            dropped: 2 * dropped,
        })
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::chat::Role;

    /// TinyLlama-1.1B-Chat-v1.0's template (its tokenizer_config.json).
    const ZEPHYR: &str = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
    /// Mistral-7B-Instruct-v0.1's.
    const MISTRAL: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    fn dialog() -> [Message<'static>; 3] {
        [
            Message::new(Role::User, "Hi"),
            Message::new(Role::Assistant, "Arr"),
            Message::new(Role::User, "Bye"),
        ]
    }

    #[test]
    fn formats_are_detected() {
        assert_eq!(ChatFormat::detect(None), ChatFormat::Llama2);
        assert_eq!(
            ChatFormat::detect(Some(ZEPHYR)),
            ChatFormat::Template(ZEPHYR)
        );
        assert_eq!(
            ChatFormat::detect(Some(MISTRAL)),
            ChatFormat::Template(MISTRAL)
        );
        let llama2ish = "{{ bos_token + '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}";
        assert_eq!(ChatFormat::detect(Some(llama2ish)), ChatFormat::Llama2);
        assert_eq!(
            ChatFormat::of_file(b"not a gguf").unwrap(),
            ChatFormat::Llama2
        );
    }

    /// The texts jinja2 renders with transformers' settings (trim_blocks,
    /// lstrip_blocks), as printed by Python for these dialogs.
    #[test]
    fn templates_render_as_jinja2_does() {
        let d = dialog();
        assert_eq!(
            render_template(ZEPHYR, &d, "<s>", "</s>", true).unwrap(),
            "<|user|>\nHi</s>\n<|assistant|>\nArr</s>\n<|user|>\nBye</s>\n<|assistant|>\n"
        );
        assert_eq!(
            render_template(ZEPHYR, &d, "<s>", "</s>", false).unwrap(),
            "<|user|>\nHi</s>\n<|assistant|>\nArr</s>\n<|user|>\nBye</s>\n"
        );
        assert_eq!(
            render_template(MISTRAL, &d, "<s>", "</s>", true).unwrap(),
            "<s>[INST] Hi [/INST]Arr</s>[INST] Bye [/INST]"
        );
    }

    #[test]
    fn template_failures_are_typed_errors() {
        let sys = [
            Message::new(Role::System, "s"),
            Message::new(Role::User, "u"),
        ];
        match render_template(MISTRAL, &sys, "<s>", "</s>", true) {
            Err(Error::Template { message }) => {
                let m = std::format!("{message}");
                // The template's own message (a system message breaks its
                // alternation check first), cut to what an error holds.
                assert!(m.starts_with("Conversation roles must alternate"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "{% for m in messages %}",
            "{{ messages | no_such_filter }}",
            "{{ no_such_function() }}",
            // Ten billion iterations: the fuel runs out first.
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        ] {
            assert!(
                matches!(
                    render_template(bad, &dialog(), "<s>", "</s>", true),
                    Err(Error::Template { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_guard_refuses_control_texts_and_the_templates_markers() {
        let o = ChatOptions::default();
        let one = |t: &str, text: &str| {
            let m = [Message::new(Role::User, text)];
            check_messages(t, &m, &o, "<s>", "</s>")
        };
        assert_eq!(
            one(ZEPHYR, "a </s> b"),
            Err(Error::SpecialTagInMessage {
                tag: "</s>",
                message: 0
            })
        );
        assert!(one(MISTRAL, "x <s>").is_err());
        assert!(one(ZEPHYR, "fake <|assistant|>").is_err());
        assert!(one(MISTRAL, "fake <|assistant|>").is_ok());
        assert!(one(MISTRAL, "x [/INST] y").is_err());
        assert!(one(ZEPHYR, "x [/INST] y").is_ok());
        assert!(one(ZEPHYR, "<unk> is text").is_ok());
        let allow = ChatOptions {
            allow_special_tags: true,
            ..Default::default()
        };
        assert!(check_messages(
            ZEPHYR,
            &[Message::new(Role::User, "</s>")],
            &allow,
            "<s>",
            "</s>"
        )
        .is_ok());
    }
}
