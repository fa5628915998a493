//! The small model that ships with Agentic, and the recipe that trains it.
//!
//! So that everything works offline on a fresh machine, the repository carries
//! a tiny byte-level GPT (`assets/tiny-gpt/`) trained by this runtime on a
//! public-domain text (`assets/corpus.txt`, fables of Aesop). The recipe is
//! fully deterministic, so anyone can regenerate the weights bit for bit and
//! check them against the committed blake3:
//!
//! ```text
//! corpus bytes ──► tokens (token = byte, vocab 256)
//! init  = GptParams::init(config, seed)                      SplitMix64 normals
//! for t in 1..=steps:
//!     batch_t = `batch` windows of seq+1 bytes at offsets drawn from SplitMix64(data_seed)
//!     lr_t    = linear warm-up, then linear decay to min_lr_frac·lr      (f64 → f32)
//!     θ_t     = Adam(θ_{t-1}, ∇loss(batch_t), lr_t)                       one StepTrace each
//! write model.safetensors (HF GPT-2 names, F32 LE) + config.json
//! ```
//!
//! `cargo run --release -p agentic-compute --example train_shipped` runs it.

use std::path::Path;

use super::gpt::{GptConfig, GptParams, TokenBatch};
use super::optim::{AdamConfig, OptState, OptimizerConfig};
use super::rng::SplitMix64;
use super::trace::{hash_bytes, Hash, RunTrace, StepTrace};
use super::{train_step, TrainError, Trainable};

/// The training text: fables of Aesop (public domain), ASCII.
pub const CORPUS: &str = include_str!("../../assets/corpus.txt");

/// blake3 of the committed `assets/tiny-gpt/model.safetensors`, which
/// `train_shipped` reproduces bit for bit.
pub const SHIPPED_MODEL_BLAKE3: &str =
    "dc66b4a25468fd9fb9d684aa35c3cf616b35669b5740508ad1183562a152ea5b";

/// Everything that determines the shipped weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recipe {
    /// Model shape.
    pub config: GptConfig,
    /// Seed of the parameter initialization.
    pub init_seed: u64,
    /// Seed of the batch offsets.
    pub data_seed: u64,
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per batch.
    pub batch: usize,
    /// Predicted positions per sequence (≤ `n_positions`).
    pub seq: usize,
    /// Adam hyper-parameters; `lr` is the peak learning rate.
    pub adam: AdamConfig,
    /// Steps of linear warm-up from 0 to the peak rate.
    pub warmup: u64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_frac: f64,
}

impl Recipe {
    /// The recipe of the committed `assets/tiny-gpt`.
    pub fn shipped() -> Self {
        Self {
            config: GptConfig {
                n_layer: 2,
                n_head: 4,
                n_embd: 128,
                vocab_size: 256,
                n_positions: 64,
                layer_norm_epsilon: 1e-5,
            },
            init_seed: 0x4147_454e_5449_4331, // "AGENTIC1"
            data_seed: 0x4145_534f_5046_4142, // "AESOPFAB"
            steps: 2000,
            batch: 8,
            seq: 64,
            adam: AdamConfig {
                lr: 3e-3,
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.01,
            },
            warmup: 50,
            min_lr_frac: 0.1,
        }
    }

    /// The learning rate of step `t` (1-based).
    pub fn lr_at(&self, t: u64) -> f32 {
        let peak = f64::from(self.adam.lr);
        let f = if t <= self.warmup {
            t as f64 / self.warmup.max(1) as f64
        } else {
            let span = self.steps.saturating_sub(self.warmup).max(1) as f64;
            let done = ((t - self.warmup) as f64 / span).min(1.0);
            1.0 - (1.0 - self.min_lr_frac) * done
        };
        (peak * f) as f32
    }
}

/// Draws a batch of `batch` windows of `seq + 1` bytes from `corpus`.
pub fn sample_batch(
    corpus: &[u8],
    rng: &mut SplitMix64,
    batch: usize,
    seq: usize,
) -> Result<TokenBatch, TrainError> {
    if corpus.len() < seq + 2 {
        return Err(TrainError::BadBatch(format!(
            "corpus of {} bytes is shorter than a window",
            corpus.len()
        )));
    }
    let span = (corpus.len() - seq - 1) as u64;
    let mut tokens = Vec::with_capacity(batch * (seq + 1));
    for _ in 0..batch {
        let off = rng.below(span + 1) as usize;
        tokens.extend(corpus[off..off + seq + 1].iter().map(|&b| u32::from(b)));
    }
    Ok(TokenBatch { batch, seq, tokens })
}

/// Trains `model` by `recipe` on `corpus`, calling `on_step` after every step.
pub fn train(
    recipe: &Recipe,
    corpus: &[u8],
    model: &mut GptParams<f32>,
    mut on_step: impl FnMut(&StepTrace),
) -> Result<RunTrace, TrainError> {
    let sizes: Vec<usize> = model.params.tensors.iter().map(|p| p.data.len()).collect();
    let mut opt = OptState::<f32>::new(OptimizerConfig::Adam(recipe.adam), &sizes);
    let mut rng = SplitMix64::new(recipe.data_seed);
    let mut run = RunTrace::default();
    for t in 1..=recipe.steps {
        let batch = sample_batch(corpus, &mut rng, recipe.batch, recipe.seq)?;
        opt.config.set_lr(recipe.lr_at(t));
        let step = train_step(model, &mut opt, &batch)?;
        on_step(&step);
        run.push(step);
    }
    Ok(run)
}

/// Mean next-byte loss (nats) over consecutive non-overlapping windows of
/// `seq + 1` bytes covering `corpus`.
pub fn eval_loss(model: &GptParams<f32>, corpus: &[u8], seq: usize) -> Result<f64, TrainError> {
    let windows: Vec<u32> = corpus.iter().map(|&b| u32::from(b)).collect();
    let mut total = 0.0f64;
    let mut count = 0usize;
    let per = 16;
    let mut start = 0;
    while start + seq < windows.len() {
        let mut tokens = Vec::new();
        let mut batch = 0;
        while batch < per && start + seq < windows.len() {
            tokens.extend_from_slice(&windows[start..start + seq + 1]);
            start += seq;
            batch += 1;
        }
        let loss = model.loss(&TokenBatch { batch, seq, tokens })?;
        total += f64::from(loss) * batch as f64;
        count += batch;
    }
    if count == 0 {
        return Err(TrainError::BadBatch(
            "corpus shorter than one window".into(),
        ));
    }
    Ok(total / count as f64)
}

/// Entropy (nats) of the corpus's byte frequencies: the loss of the best
/// model that ignores context. A trained model must get clearly below it.
pub fn unigram_entropy(corpus: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &b in corpus {
        counts[b as usize] += 1;
    }
    let n = corpus.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64 / n)
        .map(|p| -p * libm::log(p))
        .sum()
}

/// Continues `prompt` by `n` bytes. `temperature = 0` is greedy; otherwise
/// bytes are sampled from `softmax(logits/temperature)` with a seeded stream.
pub fn generate(
    model: &GptParams<f32>,
    prompt: &[u8],
    n: usize,
    temperature: f64,
    seed: u64,
) -> Result<Vec<u8>, TrainError> {
    let mut out: Vec<u8> = prompt.to_vec();
    let mut rng = SplitMix64::new(seed);
    let ctx = model.config.n_positions;
    let v = model.config.vocab_size;
    for _ in 0..n {
        let start = out.len().saturating_sub(ctx);
        let window: Vec<u32> = if out.is_empty() {
            vec![u32::from(b'\n')]
        } else {
            out[start..].iter().map(|&b| u32::from(b)).collect()
        };
        let logits = model.logits(&window)?;
        let last = &logits[(window.len() - 1) * v..window.len() * v];
        let next = if temperature <= 0.0 {
            let mut best = 0;
            for (i, &x) in last.iter().enumerate() {
                if x > last[best] {
                    best = i;
                }
            }
            best
        } else {
            let mx = last
                .iter()
                .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
            let w: Vec<f64> = last
                .iter()
                .map(|&x| libm::exp((f64::from(x) - mx) / temperature))
                .collect();
            let total: f64 = w.iter().sum();
            let mut u = rng.next_f64() * total;
            let mut pick = w.len() - 1;
            for (i, &p) in w.iter().enumerate() {
                if u < p {
                    pick = i;
                    break;
                }
                u -= p;
            }
            pick
        };
        out.push(u8::try_from(next).unwrap_or(b'?'));
    }
    Ok(out)
}

/// The Hugging Face style `config.json` of a byte-level GPT-2.
pub fn config_json(c: &GptConfig) -> String {
    format!(
        "{{\n  \"model_type\": \"gpt2\",\n  \"n_layer\": {},\n  \"n_head\": {},\n  \"n_embd\": {},\n  \"vocab_size\": {},\n  \"n_positions\": {},\n  \"layer_norm_epsilon\": {:e},\n  \"tokenizer\": \"bytes\"\n}}\n",
        c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.n_positions, c.layer_norm_epsilon
    )
}

/// Writes `model.safetensors` and `config.json` into `dir`; returns the blake3
/// of the weights file.
pub fn write_assets(model: &GptParams<f32>, dir: &Path) -> Result<Hash, TrainError> {
    let io = |e: std::io::Error| TrainError::Checkpoint(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let bytes = model.to_safetensors()?;
    std::fs::write(dir.join("model.safetensors"), &bytes).map_err(io)?;
    std::fs::write(dir.join("config.json"), config_json(&model.config)).map_err(io)?;
    Ok(hash_bytes(&bytes))
}

/// Loads a model written by [`write_assets`] from `dir`.
pub fn load_assets(dir: &Path) -> Result<GptParams<f32>, TrainError> {
    let io = |e: std::io::Error| TrainError::Checkpoint(format!("{}: {e}", dir.display()));
    let json = std::fs::read_to_string(dir.join("config.json")).map_err(io)?;
    let config: GptConfig =
        serde_json::from_str(&json).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let bytes = std::fs::read(dir.join("model.safetensors")).map_err(io)?;
    GptParams::from_safetensors(config, &bytes)
}

/// The directory of the committed shipped model.
pub fn assets_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/tiny-gpt"))
}

/// The result of [`train_shipped`].
pub struct Shipped {
    /// The trained parameters.
    pub model: GptParams<f32>,
    /// Every step's trace.
    pub trace: RunTrace,
}

/// Trains the shipped model from scratch by [`Recipe::shipped`].
pub fn train_shipped(on_step: impl FnMut(&StepTrace)) -> Result<Shipped, TrainError> {
    let recipe = Recipe::shipped();
    let mut model = GptParams::<f32>::init(recipe.config, recipe.init_seed)?;
    let trace = train(&recipe, CORPUS.as_bytes(), &mut model, on_step)?;
    Ok(Shipped { model, trace })
}
