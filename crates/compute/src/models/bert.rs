//! A BERT-style encoder producing sentence embeddings (all-MiniLM-L6-v2 and kin).
//!
//! ```text
//!  ids ─L0─► LN(word[id] + type[0] + pos[p])                         embeddings
//!      ─L1..=Ln─► x = LN(x + Wo·attn(Wq x, Wk x, Wv x))              post-LN encoder block
//!                 x = LN(x + W2·gelu(W1 x))
//!      ─L(n+1)─► e = mean over the sequence's tokens; e / max(‖e‖₂, 1e-12)
//! ```
//!
//! Loads Hugging Face `BertModel` checkpoints (names `embeddings.*`,
//! `encoder.layer.{i}.*`, optionally under `bert.`), with `config.json` fields
//! `vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
//! max_position_embeddings, type_vocab_size, layer_norm_eps, hidden_act`.
//!
//! Batches are ragged (see [`crate::activation`]): linear layers run over all tokens of
//! the batch at once (rows are independent, so batching changes no bit); attention runs
//! per sequence, in parallel across sequences. Single sentences use token type 0, as
//! sentence-transformers does.

use rayon::prelude::*;

use super::ops::{self, LayerNorm, Layout, Linear};
use super::{check_hidden, check_tokens, token_lens};
use crate::activation::{Activation, ActivationKind};
use crate::kernels;
use crate::loader::{cfg_f32_or, cfg_usize, Checkpoint};
use crate::metering::{cost, InputShape, OpCounter};
use crate::ComputeError;

/// The encoder's shape (fields of a BERT `config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    /// `true` for `gelu` (erf form), `false` for `gelu_new` (tanh form).
    pub gelu_erf: bool,
}

impl BertConfig {
    /// Parses and validates a `config.json` value.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, ComputeError> {
        let gelu_erf = match v
            .get("hidden_act")
            .and_then(|a| a.as_str())
            .unwrap_or("gelu")
        {
            "gelu" => true,
            "gelu_new" | "gelu_pytorch_tanh" => false,
            other => {
                return Err(ComputeError::config(format!(
                    "unsupported hidden_act `{other}`"
                )))
            }
        };
        let c = BertConfig {
            vocab_size: cfg_usize(v, &["vocab_size"])?,
            hidden_size: cfg_usize(v, &["hidden_size"])?,
            num_hidden_layers: cfg_usize(v, &["num_hidden_layers"])?,
            num_attention_heads: cfg_usize(v, &["num_attention_heads"])?,
            intermediate_size: cfg_usize(v, &["intermediate_size"])?,
            max_position_embeddings: cfg_usize(v, &["max_position_embeddings"])?,
            type_vocab_size: cfg_usize(v, &["type_vocab_size"]).unwrap_or(2),
            layer_norm_eps: cfg_f32_or(v, &["layer_norm_eps"], 1e-12)?,
            gelu_erf,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks the shape is usable.
    pub fn validate(&self) -> Result<(), ComputeError> {
        let c = self;
        if [
            c.vocab_size,
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
        ]
        .contains(&0)
            || c.intermediate_size == 0
            || c.max_position_embeddings == 0
            || c.type_vocab_size == 0
        {
            return Err(ComputeError::config(format!("zero dimension in {c:?}")));
        }
        if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(ComputeError::config(
                "hidden_size not divisible by num_attention_heads",
            ));
        }
        if c.layer_norm_eps.is_nan() || c.layer_norm_eps <= 0.0 {
            return Err(ComputeError::config("layer_norm_eps must be > 0"));
        }
        Ok(())
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[derive(Debug)]
struct EncoderBlock {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln1: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ln2: LayerNorm,
}

/// A loaded BERT encoder.
#[derive(Debug)]
pub struct Bert {
    config: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_ln: LayerNorm,
    blocks: Vec<EncoderBlock>,
}

const PREFIXES: &[&str] = &["", "bert.", "model."];

impl Bert {
    /// Builds the encoder from a checkpoint, validating every tensor's shape.
    pub fn from_checkpoint(config: BertConfig, ck: &mut Checkpoint) -> Result<Self, ComputeError> {
        config.validate()?;
        let c = &config;
        let d = c.hidden_size;
        let mut take = |name: &str, shape: &[usize]| ck.take_prefixed(PREFIXES, name, shape);
        let word = take("embeddings.word_embeddings.weight", &[c.vocab_size, d])?;
        let position = take(
            "embeddings.position_embeddings.weight",
            &[c.max_position_embeddings, d],
        )?;
        let token_type = take(
            "embeddings.token_type_embeddings.weight",
            &[c.type_vocab_size, d],
        )?;
        let emb_ln = LayerNorm {
            gamma: take("embeddings.LayerNorm.weight", &[d])?,
            beta: take("embeddings.LayerNorm.bias", &[d])?,
            eps: c.layer_norm_eps,
        };
        let mut blocks = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{i}.");
            let mut lin = |name: &str, k: usize, n: usize| -> Result<Linear, ComputeError> {
                let w = take(&format!("{p}{name}.weight"), &[n, k])?;
                let b = take(&format!("{p}{name}.bias"), &[n])?;
                Ok(Linear::new(&w, Some(b), k, n, Layout::OutIn))
            };
            let q = lin("attention.self.query", d, d)?;
            let k = lin("attention.self.key", d, d)?;
            let v = lin("attention.self.value", d, d)?;
            let o = lin("attention.output.dense", d, d)?;
            let ffn_in = lin("intermediate.dense", d, c.intermediate_size)?;
            let ffn_out = lin("output.dense", c.intermediate_size, d)?;
            let mut ln = |name: &str| -> Result<LayerNorm, ComputeError> {
                Ok(LayerNorm {
                    gamma: take(&format!("{p}{name}.weight"), &[d])?,
                    beta: take(&format!("{p}{name}.bias"), &[d])?,
                    eps: c.layer_norm_eps,
                })
            };
            let ln1 = ln("attention.output.LayerNorm")?;
            let ln2 = ln("output.LayerNorm")?;
            blocks.push(EncoderBlock {
                q,
                k,
                v,
                o,
                ln1,
                ffn_in,
                ffn_out,
                ln2,
            });
        }
        Ok(Bert {
            config,
            word,
            position,
            token_type,
            emb_ln,
            blocks,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// `1 + num_hidden_layers + 1`.
    pub fn layers(&self) -> usize {
        self.blocks.len() + 2
    }

    pub fn layer_name(&self, i: usize) -> String {
        match i {
            0 => "embeddings".into(),
            i if i <= self.blocks.len() => format!("encoder.{}", i - 1),
            i if i == self.blocks.len() + 1 => "pool+normalize".into(),
            i => format!("out-of-range.{i}"),
        }
    }

    pub(crate) fn run_layer(
        &self,
        i: usize,
        input: &Activation,
        ops: &OpCounter,
    ) -> Result<Activation, ComputeError> {
        let c = &self.config;
        if i == 0 {
            check_tokens(input, i, c.vocab_size, c.max_position_embeddings)?;
            return self.embeddings(input, ops);
        }
        check_hidden(input, i, c.hidden_size, c.max_position_embeddings)?;
        if let Some(block) = self.blocks.get(i - 1) {
            return self.encoder_block(block, input, ops);
        }
        self.pool(input, ops)
    }

    fn embeddings(&self, input: &Activation, ops: &OpCounter) -> Result<Activation, ComputeError> {
        let d = self.config.hidden_size;
        let rows = input.rows();
        let mut x = vec![0.0f32; rows * d];
        let ty = &self.token_type[..d];
        let mut row = 0;
        for &len in input.seq_lens() {
            for p in 0..len {
                let id = input.ids()[row] as usize;
                let w = &self.word[id * d..(id + 1) * d];
                let pe = &self.position[p * d..(p + 1) * d];
                let out = &mut x[row * d..(row + 1) * d];
                for e in 0..d {
                    out[e] = (w[e] + ty[e]) + pe[e];
                }
                row += 1;
            }
        }
        ops.add(2 * cost::elementwise(rows * d));
        let y = self.emb_ln.apply(&x, rows, ops);
        Activation::derived(
            ActivationKind::Hidden,
            input.seq_lens().to_vec(),
            rows,
            d,
            y,
        )
    }

    fn encoder_block(
        &self,
        b: &EncoderBlock,
        input: &Activation,
        ops: &OpCounter,
    ) -> Result<Activation, ComputeError> {
        let c = &self.config;
        let d = c.hidden_size;
        let rows = input.rows();
        let x = input.tensor().data();
        let q = b.q.apply(x, rows, ops);
        let k = b.k.apply(x, rows, ops);
        let v = b.v.apply(x, rows, ops);
        let mut ctx = vec![0.0f32; rows * d];
        // Split the context buffer per sequence and attend in parallel.
        let mut chunks: Vec<(usize, usize, &mut [f32])> =
            Vec::with_capacity(input.seq_lens().len());
        let mut rest = ctx.as_mut_slice();
        let mut start = 0;
        for &len in input.seq_lens() {
            let (head, tail) = rest.split_at_mut(len * d);
            chunks.push((start, len, head));
            rest = tail;
            start += len;
        }
        let (heads, hd) = (c.num_attention_heads, c.head_dim());
        chunks.into_par_iter().for_each(|(start, len, out)| {
            let r = start * d..(start + len) * d;
            ops::attention_full(
                &q[r.clone()],
                &k[r.clone()],
                &v[r],
                out,
                len,
                heads,
                hd,
                ops,
            );
        });
        let mut a = b.o.apply(&ctx, rows, ops);
        ops::add_inplace(&mut a, x, ops);
        let a = b.ln1.apply(&a, rows, ops);
        let mut h = b.ffn_in.apply(&a, rows, ops);
        if c.gelu_erf {
            ops::gelu_erf(&mut h, ops);
        } else {
            ops::gelu_tanh(&mut h, ops);
        }
        let mut y = b.ffn_out.apply(&h, rows, ops);
        ops::add_inplace(&mut y, &a, ops);
        let y = b.ln2.apply(&y, rows, ops);
        Activation::derived(
            ActivationKind::Hidden,
            input.seq_lens().to_vec(),
            rows,
            d,
            y,
        )
    }

    fn pool(&self, input: &Activation, ops: &OpCounter) -> Result<Activation, ComputeError> {
        let d = self.config.hidden_size;
        let x = input.tensor().data();
        let lens = input.seq_lens();
        let mut out = vec![0.0f32; lens.len() * d];
        let mut start = 0;
        for (s, &len) in lens.iter().enumerate() {
            let rows = &x[start * d..(start + len) * d];
            let mask = vec![true; len];
            let o = &mut out[s * d..(s + 1) * d];
            kernels::mean_pool(rows, &mask, len, d, o);
            kernels::l2_normalize(o);
            ops.add(cost::mean_pool(len, d) + cost::l2_normalize(d));
            start += len;
        }
        Activation::derived(ActivationKind::Pooled, lens.to_vec(), lens.len(), d, out)
    }

    /// Operations per layer for a batch of sequences of these lengths.
    pub(crate) fn meter(&self, shape: &InputShape) -> Result<Vec<u64>, ComputeError> {
        let c = &self.config;
        let lens = token_lens(shape, c.max_position_embeddings)?;
        let (d, f) = (c.hidden_size, c.intermediate_size);
        let t: usize = lens.iter().sum();
        let mut per_layer = Vec::with_capacity(self.layers());
        per_layer.push(2 * cost::elementwise(t * d) + cost::layer_norm(t, d));
        let attn: u64 = lens
            .iter()
            .map(|&l| {
                cost::attention(
                    cost::attention_pairs(l, false),
                    c.num_attention_heads,
                    c.head_dim(),
                )
            })
            .sum();
        let gelu = if c.gelu_erf {
            cost::gelu_erf(t * f)
        } else {
            cost::gelu_tanh(t * f)
        };
        let block = 4 * cost::linear(t, d, d, true)
            + attn
            + cost::elementwise(t * d)
            + cost::layer_norm(t, d)
            + cost::linear(t, d, f, true)
            + gelu
            + cost::linear(t, f, d, true)
            + cost::elementwise(t * d)
            + cost::layer_norm(t, d);
        per_layer.extend(std::iter::repeat_n(block, c.num_hidden_layers));
        per_layer.push(
            lens.iter()
                .map(|&l| cost::mean_pool(l, d) + cost::l2_normalize(d))
                .sum::<u64>(),
        );
        Ok(per_layer)
    }
}
