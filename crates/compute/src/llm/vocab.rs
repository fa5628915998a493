//! Tokenizers and chat templates for LLM checkpoints.
//!
//! * GGUF: `tokenizer.ggml.model = "gpt2"` (byte-level BPE) with `tokenizer.ggml.tokens`,
//!   `…merges`, `…token_type` and the pre-tokenizer named by `tokenizer.ggml.pre`, turned
//!   into the equivalent Hugging Face `tokenizer.json` and loaded by the same `tokenizers`
//!   crate as every other model. SentencePiece vocabularies (`"llama"`) and pre-tokenizers
//!   not listed in [`pre_tokenizer`] are a typed error naming them.
//! * Hugging Face: `tokenizer.json` as shipped.
//!
//! Chat: the ChatML template (`<|im_start|>role\ncontent<|im_end|>\n`, SmolLM2, Qwen2),
//! recognized in the checkpoint's `chat_template`, with the template's default system
//! message when it has one. Other templates are a typed error from [`ChatTemplate::render`].

use serde_json::{json, Value};

use crate::llm::gguf::Gguf;
use crate::tokenizer::TextTokenizer;
use crate::ComputeError;

/// The GPT-2 pre-tokenizer regex split (ByteLevel's own).
fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split(pattern: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false})
}

/// The pre-tokenizer of a GGUF `tokenizer.ggml.pre` name, as `tokenizer.json` describes it.
pub(crate) fn pre_tokenizer(pre: &str) -> Result<Value, ComputeError> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Ok(match pre {
        "gpt2" | "default" => byte_level(true),
        "smollm" | "starcoder" | "refact" | "codeshell" => json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)],
        }),
        "llama-bpe" | "llama3" => json!({
            "type": "Sequence", "pretokenizers": [split(LLAMA3), byte_level(false)],
        }),
        "qwen2" => json!({
            "type": "Sequence", "pretokenizers": [split(QWEN2), byte_level(false)],
        }),
        other => {
            return Err(ComputeError::Tokenizer(format!(
                "GGUF pre-tokenizer `{other}` is not supported (supported: gpt2, default, smollm, starcoder, refact, codeshell, llama-bpe, qwen2)"
            )))
        }
    })
}

/// A GGUF file's tokenizer and its special ids.
#[derive(Debug)]
pub struct GgufVocab {
    pub tokenizer: TextTokenizer,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Prepend `bos` when encoding (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    pub chat_template: Option<String>,
}

/// Builds the tokenizer a GGUF file describes.
pub fn from_gguf(g: &Gguf) -> Result<GgufVocab, ComputeError> {
    let model = g.str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(ComputeError::Tokenizer(format!(
            "GGUF tokenizer model `{model}` is not supported (supported: gpt2, byte-level BPE)"
        )));
    }
    let pre = g
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let tokens = g.strings("tokenizer.ggml.tokens")?;
    let merges = g.strings("tokenizer.ggml.merges")?;
    let types: Vec<u64> = match g.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .as_array()
            .ok_or_else(|| ComputeError::config("tokenizer.ggml.token_type is not an array"))?
            .iter()
            .map(|t| t.as_u64().unwrap_or(1))
            .collect(),
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(ComputeError::config(format!(
            "{} token types for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, (&tok, &ty)) in tokens.iter().zip(&types).enumerate() {
        if vocab.insert(tok.to_string(), json!(id)).is_some() {
            return Err(ComputeError::Tokenizer(format!(
                "token `{tok}` appears twice in the vocabulary"
            )));
        }
        // 3 = control, 4 = user-defined: matched whole, never split by BPE.
        if ty == 3 || ty == 4 {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == 3,
            }));
        }
    }
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer(pre)?,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    let bytes = serde_json::to_vec(&doc).map_err(|e| ComputeError::Tokenizer(e.to_string()))?;
    let tokenizer = TextTokenizer::from_json(&bytes, None)?;
    let id = |k: &str| {
        g.get(k)
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&v| (v as usize) < tokens.len())
    };
    Ok(GgufVocab {
        tokenizer,
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        add_bos: g
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        chat_template: g
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    })
}

/// A chat template the runtime can apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
    /// `<|im_start|>assistant\n`; `default_system` is inserted when the conversation
    /// does not start with a system message.
    ChatMl { default_system: Option<String> },
}

impl ChatTemplate {
    /// Recognizes a checkpoint's Jinja `chat_template`.
    pub fn detect(template: Option<&str>) -> Result<ChatTemplate, ComputeError> {
        let t = template
            .ok_or_else(|| ComputeError::Tokenizer("this model has no chat template".into()))?;
        if !t.contains("<|im_start|>") {
            return Err(ComputeError::Tokenizer(
                "this model's chat template is not ChatML, the only one supported".into(),
            ));
        }
        let marker = "<|im_start|>system\n";
        let default_system = t.find(marker).and_then(|at| {
            let rest = &t[at + marker.len()..];
            let end = rest.find("<|im_end|>")?;
            let s = &rest[..end];
            // A literal message, not a Jinja expression such as `' + message['content']`.
            (!s.contains('{') && !s.contains('\'') && !s.is_empty()).then(|| s.to_string())
        });
        Ok(ChatTemplate::ChatMl { default_system })
    }

    /// Renders `(role, content)` messages and opens the assistant's turn.
    pub fn render(&self, messages: &[(&str, &str)]) -> String {
        let ChatTemplate::ChatMl { default_system } = self;
        let mut s = String::new();
        if let Some(sys) = default_system {
            if messages.first().is_none_or(|(r, _)| *r != "system") {
                s.push_str(&format!("<|im_start|>system\n{sys}<|im_end|>\n"));
            }
        }
        for (role, content) in messages {
            s.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
        }
        s.push_str("<|im_start|>assistant\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_with_the_default_system_message() {
        let t = ChatTemplate::detect(Some(
            "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are nice<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role']}}",
        ))
        .unwrap();
        assert_eq!(
            t.render(&[("user", "hi")]),
            "<|im_start|>system\nYou are nice<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(ChatTemplate::detect(Some("[INST] {{ m }} [/INST]")).is_err());
        assert!(ChatTemplate::detect(None).is_err());
    }

    #[test]
    fn unknown_pre_tokenizers_are_named() {
        let e = pre_tokenizer("deepseek-coder").unwrap_err();
        assert!(e.to_string().contains("deepseek-coder"));
    }
}
