//! Loading an LLM by name or path, and generating text with its trace.
//!
//! [`LlmModel::generate`] runs step 0 as a prefill of the prompt, then one decode step per
//! new token (the KV cache holds the prefix), sampling each token with [`Sampler`] from
//! that step's logits and handing it to a callback as soon as it exists. Its trace is the
//! Merkle root of the (step, layer) leaves ([`crate::llm`] docs). [`LlmModel::replay`]
//! recomputes those leaves with one teacher-forced prefill over prompt + tokens — the
//! auditor's check, at the cost of a prefill.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use crate::llm::gguf::Gguf;
use crate::llm::llama::{KvCache, Llama, SeqInput};
use crate::llm::sample::Sampler;
use crate::llm::stage::{self, GenerationRequest};
use crate::llm::vocab::{self, ChatTemplate};
use crate::loader::{parse_config, read_file};
use crate::tokenizer::TextTokenizer;
use crate::trace::Hash;
use crate::ComputeError;

/// A Llama-family model with its tokenizer.
#[derive(Debug)]
pub struct LlmModel {
    /// Registry name or path.
    pub name: String,
    pub model: Llama,
    pub tokenizer: TextTokenizer,
    /// Prepended to every prompt when set (`add_bos_token`).
    pub bos: Option<u32>,
    /// Generation ends after any of these.
    pub stop_tokens: Vec<u32>,
    /// The checkpoint's chat template, if any.
    pub chat_template: Option<String>,
}

pub use crate::models::gpt::StopReason;

/// A finished generation and its trace.
#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt: Vec<u32>,
    /// New tokens, the stop token included when one ended the generation.
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    /// `leaves[step][layer]`; one step per generated token.
    pub leaves: Vec<Vec<Hash>>,
    /// `ops[step][layer]`.
    pub ops: Vec<Vec<u64>>,
}

impl Generation {
    /// All leaves, step-major.
    pub fn flat_leaves(&self) -> Vec<Hash> {
        self.leaves.iter().flatten().copied().collect()
    }

    /// The Merkle root over [`Generation::flat_leaves`]: what a provider commits.
    pub fn trace_root(&self) -> Hash {
        trace_root(&self.leaves)
    }

    pub fn total_ops(&self) -> u64 {
        self.ops.iter().flatten().sum()
    }

    /// Operations of the prefill (step 0) and of the decode steps.
    pub fn prefill_and_decode_ops(&self) -> (u64, u64) {
        let prefill = self.ops.first().map_or(0, |s| s.iter().sum());
        (prefill, self.total_ops() - prefill)
    }
}

/// Merkle root of `(step, layer)` leaves, step-major.
pub fn trace_root(leaves: &[Vec<Hash>]) -> Hash {
    let flat: Vec<[u8; 32]> = leaves.iter().flatten().map(|d| d.0).collect();
    Hash(agentic_primitives::merkle::root(&flat))
}

/// Loads `smollm2-135m` (the registry), a `.gguf` file, or a Hugging Face directory
/// (`config.json` with `model_type` llama/mistral/qwen2, `model.safetensors`,
/// `tokenizer.json`).
pub fn load(name_or_path: &str) -> Result<LlmModel, ComputeError> {
    if let Some(path) = crate::registry::llm_path(name_or_path)? {
        let mut m = load_gguf(&path)?;
        m.name = name_or_path.to_string();
        return Ok(m);
    }
    let p = Path::new(name_or_path);
    if p.is_file() {
        return load_gguf(p);
    }
    if p.is_dir() {
        return load_hf_dir(p);
    }
    Err(ComputeError::ModelNotFound {
        name: name_or_path.into(),
        detail: "not a registry LLM (smollm2-135m), a .gguf file, nor a model directory".into(),
    })
}

/// Loads a GGUF file.
pub fn load_gguf(path: &Path) -> Result<LlmModel, ComputeError> {
    let io = |source| ComputeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut r = BufReader::new(File::open(path).map_err(io)?);
    let mut m = load_gguf_from(&mut r)?;
    m.name = path.display().to_string();
    Ok(m)
}

/// Loads a GGUF model from any seekable reader (a file, bytes in memory).
pub fn load_gguf_from<R: std::io::Read + std::io::Seek>(
    r: &mut R,
) -> Result<LlmModel, ComputeError> {
    let mut g = Gguf::parse(r)?;
    // The tokenizer first, then its metadata (~100k strings) is dropped before the weights.
    let v = vocab::from_gguf(&g)?;
    g.metadata.retain(|k, _| !k.starts_with("tokenizer.ggml."));
    let model = Llama::from_gguf(&g, r)?;
    if v.tokenizer.vocab_size() > model.config().vocab {
        return Err(ComputeError::config(format!(
            "tokenizer has {} tokens, the model {}",
            v.tokenizer.vocab_size(),
            model.config().vocab
        )));
    }
    let stop_tokens = stop_tokens(&v.tokenizer, v.eos);
    Ok(LlmModel {
        name: "gguf".into(),
        model,
        tokenizer: v.tokenizer,
        bos: v.bos.filter(|_| v.add_bos),
        stop_tokens,
        chat_template: v.chat_template,
    })
}

/// Loads a Hugging Face directory.
pub fn load_hf_dir(dir: &Path) -> Result<LlmModel, ComputeError> {
    let cfg = parse_config(&read_file(&dir.join("config.json"))?)?;
    let weights = read_file(&dir.join("model.safetensors"))?;
    let model = Llama::from_safetensors(&cfg, &weights)?;
    drop(weights);
    let tokenizer = TextTokenizer::from_json(&read_file(&dir.join("tokenizer.json"))?, None)?;
    let eos = cfg
        .get("eos_token_id")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok());
    // tokenizer_config.json carries the chat template in Hugging Face checkpoints.
    let chat_template = read_file(&dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("chat_template")?.as_str().map(str::to_string));
    Ok(LlmModel {
        name: dir.display().to_string(),
        stop_tokens: stop_tokens(&tokenizer, eos),
        model,
        tokenizer,
        bos: None,
        chat_template,
    })
}

fn stop_tokens(tok: &TextTokenizer, eos: Option<u32>) -> Vec<u32> {
    let mut s: Vec<u32> = eos.into_iter().collect();
    for t in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>"] {
        if let Some(id) = tok.token_id(t) {
            if !s.contains(&id) {
                s.push(id);
            }
        }
    }
    s
}

/// Generation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    /// At least 1.
    pub max_tokens: usize,
    pub sampler: Sampler,
}

impl LlmModel {
    /// Prompt token ids: the text as is, or as one user turn of the chat template.
    pub fn encode_prompt(&self, text: &str, chat: bool) -> Result<Vec<u32>, ComputeError> {
        if text.is_empty() {
            return Err(ComputeError::EmptyInput("the prompt is empty".into()));
        }
        let text = if chat {
            ChatTemplate::detect(self.chat_template.as_deref())?.render(&[("user", text)])
        } else {
            text.to_string()
        };
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        ids.extend(self.tokenizer.encode(&text)?);
        if ids.is_empty() {
            return Err(ComputeError::EmptyInput("the prompt has no tokens".into()));
        }
        let max = self.model.config().context;
        if ids.len() > max {
            return Err(ComputeError::InputTooLong {
                len: ids.len(),
                max,
            });
        }
        Ok(ids)
    }

    /// Generates up to `params.max_tokens` tokens after `prompt`, calling `on_token`
    /// with each as soon as it is sampled.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        on_token: impl FnMut(u32),
    ) -> Result<Generation, ComputeError> {
        params.sampler.validate()?;
        if params.max_tokens == 0 {
            return Err(ComputeError::config("max_tokens must be at least 1"));
        }
        let context = self.model.config().context;
        let capacity = prompt.len() + params.max_tokens;
        self.run(prompt, &params.sampler, capacity, on_token, |step, tok| {
            if self.stop_tokens.contains(&tok) {
                Some(StopReason::StopToken)
            } else if step + 1 >= params.max_tokens {
                Some(StopReason::MaxTokens)
            } else if prompt.len() + step >= context {
                // The cache holds prompt + step positions: full.
                Some(StopReason::ContextFull)
            } else {
                None
            }
        })
    }

    /// Generates for a job's [`GenerationRequest`], stopping by [`stage::ends`] — the rule
    /// a pipeline-split run follows — with the request's stop tokens (not the model's).
    pub fn generate_request(
        &self,
        req: &GenerationRequest,
        on_token: impl FnMut(u32),
    ) -> Result<Generation, ComputeError> {
        req.validate(&self.model)?;
        let context = self.model.config().context;
        let capacity = req.prompt.len() + req.max_tokens as usize;
        self.run(
            &req.prompt,
            &req.sampler,
            capacity,
            on_token,
            |step, tok| {
                if !stage::ends(req, context, step, tok) {
                    None
                } else if req.stop.contains(&tok) {
                    Some(StopReason::StopToken)
                } else if step + 1 >= req.max_tokens as usize {
                    Some(StopReason::MaxTokens)
                } else {
                    Some(StopReason::ContextFull)
                }
            },
        )
    }

    /// Prefill, then one decode step per token until `stop(step, token)` says why not.
    fn run(
        &self,
        prompt: &[u32],
        sampler: &Sampler,
        capacity: usize,
        mut on_token: impl FnMut(u32),
        mut stop: impl FnMut(usize, u32) -> Option<StopReason>,
    ) -> Result<Generation, ComputeError> {
        let mut cache = KvCache::with_capacity(self.model.config(), capacity);
        let mut g = Generation {
            prompt: prompt.to_vec(),
            tokens: Vec::new(),
            stop: StopReason::MaxTokens,
            leaves: Vec::new(),
            ops: Vec::new(),
        };
        let mut input: Vec<u32> = prompt.to_vec();
        loop {
            let steps = [input.len()];
            let mut seqs = [SeqInput {
                cache: &mut cache,
                tokens: &input,
                steps: &steps,
            }];
            let mut out = self.model.forward(&mut seqs)?;
            let o = out.pop().unwrap_or_default();
            let step = g.tokens.len();
            let logits = o
                .logits
                .last()
                .ok_or_else(|| ComputeError::EmptyInput("no logits".into()))?;
            let tok = sampler.pick(logits, step as u64);
            g.leaves.extend(o.leaves);
            g.ops.extend(o.ops);
            g.tokens.push(tok);
            on_token(tok);
            if let Some(reason) = stop(step, tok) {
                g.stop = reason;
                break;
            }
            input = vec![tok];
        }
        Ok(g)
    }

    /// The auditor's check: one teacher-forced prefill over `prompt ++ tokens[..n-1]` cut
    /// into the generation's steps; returns `(leaves, the token each step's logits
    /// sample)`. For an honest generation both equal the generation's.
    pub fn replay(
        &self,
        prompt: &[u32],
        tokens: &[u32],
        sampler: &Sampler,
    ) -> Result<(Vec<Vec<Hash>>, Vec<u32>), ComputeError> {
        if tokens.is_empty() {
            return Err(ComputeError::EmptyInput(
                "no generated tokens to replay".into(),
            ));
        }
        let mut seq = prompt.to_vec();
        seq.extend_from_slice(&tokens[..tokens.len() - 1]);
        let steps: Vec<usize> = (prompt.len()..=seq.len()).collect();
        let mut cache = KvCache::new(self.model.config());
        let mut seqs = [SeqInput {
            cache: &mut cache,
            tokens: &seq,
            steps: &steps,
        }];
        let o = self.model.forward(&mut seqs)?.pop().unwrap_or_default();
        let picks = o
            .logits
            .iter()
            .enumerate()
            .map(|(t, l)| sampler.pick(l, t as u64))
            .collect();
        Ok((o.leaves, picks))
    }
}

/// Turns a stream of token ids into a stream of text, holding back bytes until they form
/// whole UTF-8 characters.
#[derive(Debug, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream {
    /// Adds a token; returns the new text it completes (possibly empty).
    pub fn push(&mut self, tok: &TextTokenizer, id: u32) -> String {
        self.ids.push(id);
        let text = tok.decode(&self.ids).unwrap_or_default();
        if text.ends_with('\u{fffd}') || text.len() < self.emitted {
            return String::new();
        }
        let new = text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = text.len();
        new
    }
}
