//! Pipeline-stage generation: one generation split over providers that each hold a
//! contiguous range of trace layers, bit-identical to the whole model.
//!
//! ```text
//!  trace layers   0 (embed) │ 1 ..= L (blocks) │ L+1 (head)
//!                 ├── stage 0 ──┤├── stage 1 ──┤├── stage 2 ──┤      [first, first+count)
//!
//!  step t:   tokens ─► stage 0 ─ rows n×dim ─► stage 1 ─ rows ─► stage 2 ─► logits ─► sample
//!              ▲                                                              │
//!              └───────────────────── the sampled token (step t+1) ──────────┘
//! ```
//!
//! # Rules
//!
//! 1. A [`StageRange`] is trace layers `[first, first + count)` of `0..=L+1`, `count ≥ 1`.
//!    Stage 0 (`first = 0`) takes token ids ([`StageInput::Tokens`]); every other stage
//!    takes the previous stage's output rows ([`StageInput::Rows`], `n × dim` f32). The
//!    stage that holds `L+1` returns the logits of the step's last row
//!    ([`StageOutput::Logits`]); the caller samples ([`crate::llm::Sampler::pick`]).
//! 2. A [`StageSession`] holds the model and a KV cache for its range's blocks only. Step
//!    0 is the prompt's prefill, step `t ≥ 1` one decode row — as in
//!    [`crate::llm::LlmModel::generate`]. Every row is computed by the same operations as
//!    in the whole-model forward ([`crate::llm::llama`] docs, batch invariance), so each
//!    stage's rows, leaves and sampled tokens are bit-identical to the whole model's.
//! 3. Each step yields `count + 1` leaves: the input leaf, then one per layer of the range.
//!    The input leaf of stage 0 is [`tokens_leaf`] of the step's tokens; of any other
//!    stage `rows_hash(first − 1, rows, dim)` — the previous stage's last leaf of that
//!    step, so adjacent stages' traces chain. Layer leaves are the whole model's
//!    ([`crate::llm::llama::rows_hash`]).
//! 4. A stage claims `(input, output)` over the session ([`StageTrace::claim`]): the chain
//!    ([`chain_hash`]) of its input leaves and of its output leaves, with the transcript
//!    hash ([`tokens_hash`]) at the two ends of the pipeline. Stage `i`'s output claim
//!    equals stage `i+1`'s input claim.
//! 5. The audit ([`replay_stage`]) is one teacher-forced prefill over
//!    `prompt ++ tokens[..n−1]` through layers `0..first+count`, cut into the same `n`
//!    steps: the range's leaves and (with the head) the sampled tokens, at the cost of a
//!    prefill. Past stage 0 it can start from the range's input rows instead
//!    ([`replay_stage_from_rows`], the rows a session keeps: [`StageSession::input_rows`],
//!    checked against the input claim by [`rows_input_claim`]) and cost only the range's
//!    layers.
//! 6. Metering is the whole model's (`Llama::layer_ops`) summed over the range; in closed
//!    form for the ledger by [`stage_cost`].
//! 7. A job's input blob is a [`GenerationRequest`] (canonical bytes, bounded decoding);
//!    [`ends`] is the one stop rule of a split run and of
//!    [`crate::llm::LlmModel::generate_request`].

use std::ops::Range;

use rayon::prelude::*;

use crate::llm::llama::{rows_hash, BlockScratch, KvCache, Llama, RopeTable};
use crate::llm::sample::Sampler;
use crate::trace::Hash;
use crate::ComputeError;

/// Trace layers `[first, first + count)` of `0..=L+1` held by one pipeline stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StageRange {
    pub first: usize,
    pub count: usize,
}

impl StageRange {
    pub fn new(first: usize, count: usize) -> Self {
        StageRange { first, count }
    }

    /// One past the last layer (saturating).
    pub fn end(&self) -> usize {
        self.first.saturating_add(self.count)
    }

    /// The trace layers held.
    pub fn layers(&self) -> Range<usize> {
        self.first..self.end()
    }

    /// Checks `count ≥ 1` and `first + count ≤ layers_total` (`L + 2`).
    pub fn validate(&self, layers_total: usize) -> Result<(), ComputeError> {
        match self.first.checked_add(self.count) {
            Some(end) if self.count >= 1 && end <= layers_total => Ok(()),
            _ => Err(ComputeError::LayerOutOfRange {
                layer: if self.count == 0 {
                    self.first
                } else {
                    self.end().saturating_sub(1)
                },
                layers: layers_total,
            }),
        }
    }

    /// Whether the stage takes token ids (it holds the embedding).
    pub fn takes_tokens(&self) -> bool {
        self.first == 0
    }

    /// Whether the stage holds the head (and returns logits).
    pub fn has_head(&self, layers_total: usize) -> bool {
        self.end() == layers_total
    }

    /// The decoder blocks held, as 0-based block indices (trace layer `l` is block
    /// `l − 1`), for a model of `n_layer` blocks.
    pub fn blocks(&self, n_layer: usize) -> Range<usize> {
        let lo = self.first.max(1) - 1;
        let hi = self.end().min(n_layer + 1).saturating_sub(1);
        lo..hi.max(lo)
    }
}

/// A stage's input for one step.
#[derive(Clone, Debug, PartialEq)]
pub enum StageInput {
    /// The step's token ids (stage 0 only).
    Tokens(Vec<u32>),
    /// The previous stage's output rows, `n × dim` f32, `n ≥ 1`.
    Rows(Vec<f32>),
}

/// A stage's output for one step.
#[derive(Clone, Debug, PartialEq)]
pub enum StageOutput {
    /// Rows for the next stage, `n × dim`.
    Rows(Vec<f32>),
    /// The logits (vocabulary wide) of the step's last row: the stage holds the head.
    Logits(Vec<f32>),
}

/// What one step of a stage produced.
#[derive(Clone, Debug, PartialEq)]
pub struct StepResult {
    pub output: StageOutput,
    /// `count + 1` leaves: the input leaf, then each layer's output leaf (module docs).
    pub leaves: Vec<Hash>,
    /// Metered operations of the range's layers for this step.
    pub ops: u64,
}

/// One step of a stage's trace, as [`StageSession::resume`] rebuilt it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    /// The step's `count + 1` leaves.
    pub leaves: Vec<Hash>,
    /// Its metered ops.
    pub ops: u64,
}

/// One provider's part of a generation: its layers, and a KV cache for its blocks.
#[derive(Debug)]
pub struct StageSession<'m> {
    model: &'m Llama,
    range: StageRange,
    cache: KvCache,
    positions: usize,
    /// Steps run so far.
    steps: usize,
    /// Past stage 0: every input row so far (`positions × dim`), what the stage serves
    /// its auditor ([`StageSession::input_rows`]).
    inputs: Vec<f32>,
    /// A misbehaviour under test ([`StageSession::set_fault`]): `(step, layer)`.
    fault: Option<(usize, usize)>,
}

impl<'m> StageSession<'m> {
    /// Makes this session cheat (a misbehaving provider under test): at step `step`,
    /// every value of trace layer `layer`'s output rows is negated before its
    /// leaf is hashed, and the session computes on from the perturbed rows (the K/V of
    /// the later layers, and every later step, are built from them). A layer outside the
    /// range, or a block-less one, is never perturbed.
    pub fn set_fault(&mut self, step: usize, layer: usize) {
        self.fault = Some((step, layer));
    }

    /// A session for `range` of `model` (a typed error when the range does not fit).
    pub fn new(model: &'m Llama, range: StageRange) -> Result<Self, ComputeError> {
        Self::with_capacity(model, range, 0)
    }

    /// As [`StageSession::new`], with cache room for `positions` positions.
    pub fn with_capacity(
        model: &'m Llama,
        range: StageRange,
        positions: usize,
    ) -> Result<Self, ComputeError> {
        let c = model.config();
        range.validate(c.layers())?;
        Ok(StageSession {
            model,
            range,
            cache: KvCache::for_blocks(c, range.blocks(c.n_layer), positions),
            positions: 0,
            steps: 0,
            inputs: Vec::new(),
            fault: None,
        })
    }

    pub fn range(&self) -> StageRange {
        self.range
    }

    /// Positions processed so far (prompt + decoded rows).
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Bytes held by the KV cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Past stage 0, the input rows of every position so far (`positions × dim`, the
    /// rows of layer `first − 1` in order: the prompt's, then one per decoded token):
    /// what the stage's auditor replays from ([`replay_claim_from_rows`]). Empty for
    /// stage 0, whose input is the transcript.
    pub fn input_rows(&self) -> &[f32] {
        &self.inputs
    }

    /// A session that already ran the `tokens.len()` steps whose sampled tokens are
    /// `tokens` (the transcript so far), rebuilt by one prefill of
    /// `prompt ++ tokens[..n−1]` through layers `0..first+count` ([`replay_stage`]'s):
    /// how a replacement joins a running generation. Returns the session, ready for
    /// step `n`, with the trace of steps `0..n` and each step's ops — bit-identical to
    /// having run them step by step (batch invariance). No tokens: a fresh session.
    /// With the head, each step's logits must sample `tokens` under `sampler`, or the
    /// transcript is not this model's (a typed error).
    pub fn resume(
        model: &'m Llama,
        range: StageRange,
        prompt: &[u32],
        tokens: &[u32],
        sampler: &Sampler,
        capacity: usize,
    ) -> Result<(Self, Vec<StepRecord>), ComputeError> {
        let mut sess = Self::with_capacity(model, range, capacity)?;
        if tokens.is_empty() {
            return Ok((sess, Vec::new()));
        }
        let c = model.config();
        let p = prefill(model, &range, prompt, tokens, None, &mut sess.cache)?;
        sess.inputs = p.inputs;
        if let Some(logits) = &p.logits {
            for (t, row) in logits.chunks_exact(c.vocab).enumerate() {
                let pick = sampler.pick(row, t as u64);
                if pick != tokens[t] {
                    return Err(ComputeError::BadActivation {
                        layer: c.n_layer + 1,
                        detail: format!(
                            "step {t} samples token {pick}, the transcript says {}",
                            tokens[t]
                        ),
                    });
                }
            }
        }
        sess.positions = prompt.len() + tokens.len() - 1;
        sess.steps = tokens.len();
        let steps = p
            .leaves
            .into_iter()
            .zip(p.step_ops)
            .map(|(leaves, ops)| StepRecord { leaves, ops })
            .collect();
        Ok((sess, steps))
    }

    /// Steps run (or rebuilt) so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Rolls the session back to its first `steps` steps (a step every stage agrees on);
    /// more steps than it ran change nothing.
    pub fn truncate(&mut self, steps: usize) {
        if steps >= self.steps {
            return;
        }
        // Step 0 is the prompt's rows, every later step one row.
        let prompt = self.positions + 1 - self.steps;
        let positions = if steps == 0 { 0 } else { prompt + steps - 1 };
        self.cache.truncate(positions);
        self.inputs.truncate(positions * self.model.config().dim);
        self.positions = positions;
        self.steps = steps;
    }

    /// Runs one step (module docs). On an error nothing changes: the input is checked
    /// before the cache is touched.
    pub fn step(&mut self, input: StageInput) -> Result<StepResult, ComputeError> {
        let m = self.model;
        let c = m.config();
        let (d, first, start) = (c.dim, self.range.first, self.positions);
        let fits = |n: usize| match start.checked_add(n) {
            Some(len) if len <= c.context => Ok(()),
            len => Err(ComputeError::InputTooLong {
                len: len.unwrap_or(usize::MAX),
                max: c.context,
            }),
        };
        let (mut x, input_leaf) = match input {
            StageInput::Tokens(tokens) if first == 0 => {
                if tokens.is_empty() {
                    return Err(ComputeError::EmptyInput("no tokens for the stage".into()));
                }
                check_vocab(&tokens, c.vocab)?;
                fits(tokens.len())?;
                let mut x = vec![0.0f32; tokens.len() * d];
                m.embed_rows(&tokens, &mut x);
                (x, tokens_leaf(&tokens))
            }
            StageInput::Rows(rows) if first > 0 => {
                if rows.is_empty() {
                    return Err(ComputeError::EmptyInput("no rows for the stage".into()));
                }
                if !rows.len().is_multiple_of(d) {
                    return Err(ComputeError::BadActivation {
                        layer: first,
                        detail: format!("{} values are not rows of width {d}", rows.len()),
                    });
                }
                fits(rows.len() / d)?;
                let leaf = rows_hash(first - 1, &rows, d);
                (rows, leaf)
            }
            StageInput::Tokens(_) => {
                return Err(ComputeError::BadActivation {
                    layer: first,
                    detail: format!(
                        "a stage from layer {first} takes rows of width {d}, not token ids"
                    ),
                })
            }
            StageInput::Rows(_) => {
                return Err(ComputeError::BadActivation {
                    layer: 0,
                    detail: "the stage holding the embedding takes token ids, not rows".into(),
                })
            }
        };
        let n = x.len() / d;
        if first > 0 {
            self.inputs.extend_from_slice(&x);
        }
        let mut leaves = Vec::with_capacity(self.range.count + 1);
        leaves.push(input_leaf);
        let mut ops = 0u64;
        if first == 0 {
            leaves.push(rows_hash(0, &x, d));
            ops += m.layer_ops(0, start, n, 1);
        }
        let fault = self.fault.filter(|&(t, _)| t == self.steps).map(|f| f.1);
        run_blocks_mut(
            m,
            self.range.layers(),
            &mut x,
            start,
            &mut self.cache,
            |l, x| {
                if fault == Some(l) {
                    x.iter_mut().for_each(|v| *v = -*v);
                }
                leaves.push(rows_hash(l, x, d));
                ops += m.layer_ops(l, start, n, 1);
            },
        );
        let output = if self.range.has_head(c.layers()) {
            let logits = m.head_rows(&x[(n - 1) * d..]);
            leaves.push(rows_hash(c.n_layer + 1, &logits, c.vocab));
            ops += m.layer_ops(c.n_layer + 1, start, n, 1);
            StageOutput::Logits(logits)
        } else {
            StageOutput::Rows(x)
        };
        self.positions = start + n;
        self.steps += 1;
        Ok(StepResult {
            output,
            leaves,
            ops,
        })
    }
}

fn check_vocab(tokens: &[u32], vocab: usize) -> Result<(), ComputeError> {
    match tokens.iter().find(|&&t| t as usize >= vocab) {
        Some(&id) => Err(ComputeError::TokenOutOfRange { id, vocab }),
        None => Ok(()),
    }
}

/// Runs the decoder blocks among trace layers `layers` over the rows `x` at positions
/// `start..`, appending to `cache` (which holds those blocks); `after(layer, x)` after each.
fn run_blocks(
    m: &Llama,
    layers: Range<usize>,
    x: &mut [f32],
    start: usize,
    cache: &mut KvCache,
    mut after: impl FnMut(usize, &[f32]),
) {
    run_blocks_mut(m, layers, x, start, cache, |l, x| after(l, x))
}

/// [`run_blocks`] whose `after` may change the rows (a misbehaviour under test).
fn run_blocks_mut(
    m: &Llama,
    layers: Range<usize>,
    x: &mut [f32],
    start: usize,
    cache: &mut KvCache,
    mut after: impl FnMut(usize, &mut [f32]),
) {
    let c = m.config();
    let (lo, hi) = (layers.start.max(1), layers.end.min(c.n_layer + 1));
    if lo >= hi {
        return;
    }
    let n = x.len() / c.dim;
    let positions: Vec<usize> = (start..start + n).collect();
    let rope = RopeTable::new(c, &positions);
    let mut scratch = BlockScratch::default();
    for l in lo..hi {
        m.block(
            l - 1,
            x,
            &positions,
            &rope,
            &mut [&mut *cache],
            &[(0, n, start)],
            &mut scratch,
        );
        after(l, x);
    }
}

/// Domain tags of the stage hashes.
const TOKENS_LEAF_TAG: &[u8; 8] = b"AGLLMTK1";
const TRANSCRIPT_TAG: &[u8; 8] = b"AGLLMTS1";
const CHAIN_TAG: &[u8; 8] = b"AGLLMCH1";

fn tagged_tokens(tag: &[u8; 8], tokens: &[u32]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(tag);
    h.update(&(tokens.len() as u32).to_le_bytes());
    for t in tokens {
        h.update(&t.to_le_bytes());
    }
    Hash(*h.finalize().as_bytes())
}

/// Stage 0's input leaf for one step: `blake3("AGLLMTK1" ‖ count u32 LE ‖ tokens u32 LE)`.
pub fn tokens_leaf(tokens: &[u32]) -> Hash {
    tagged_tokens(TOKENS_LEAF_TAG, tokens)
}

/// A session's transcript (the sampled tokens): `blake3("AGLLMTS1" ‖ count ‖ tokens)`.
pub fn tokens_hash(tokens: &[u32]) -> Hash {
    tagged_tokens(TRANSCRIPT_TAG, tokens)
}

/// The bytes of a transcript blob (the last stage stores and publishes it): their
/// blake3 is [`tokens_hash`] of the tokens.
pub fn transcript_bytes(tokens: &[u32]) -> Vec<u8> {
    let mut b = TRANSCRIPT_TAG.to_vec();
    b.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
    for t in tokens {
        b.extend_from_slice(&t.to_le_bytes());
    }
    b
}

/// Decodes a transcript blob (`None`: not one).
pub fn transcript_from_bytes(b: &[u8]) -> Option<Vec<u32>> {
    let rest = b.strip_prefix(TRANSCRIPT_TAG)?;
    let n = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let body = rest.get(4..)?;
    if body.len() != n.checked_mul(4)? {
        return None;
    }
    Some(
        body.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// A stage's input or output over all steps: `blake3("AGLLMCH1" ‖ count u32 LE ‖ leaves)`.
pub fn chain_hash(leaves: &[Hash]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(CHAIN_TAG);
    h.update(&(leaves.len() as u32).to_le_bytes());
    for l in leaves {
        h.update(&l.0);
    }
    Hash(*h.finalize().as_bytes())
}

/// A stage's whole trace over a session of `n` steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageTrace {
    /// `leaves[step]` = that step's [`StepResult::leaves`].
    pub leaves: Vec<Vec<Hash>>,
    pub ops: u64,
}

impl StageTrace {
    /// Appends one step's result.
    pub fn push(&mut self, step: &StepResult) {
        self.leaves.push(step.leaves.clone());
        self.ops = self.ops.saturating_add(step.ops);
    }

    pub fn steps(&self) -> usize {
        self.leaves.len()
    }

    /// All leaves, step-major.
    pub fn flat(&self) -> Vec<Hash> {
        self.leaves.iter().flatten().copied().collect()
    }

    /// The Merkle root ([`agentic_primitives::merkle::root`]) over [`StageTrace::flat`].
    pub fn root(&self) -> Hash {
        let flat: Vec<[u8; 32]> = self.leaves.iter().flatten().map(|h| h.0).collect();
        Hash(agentic_primitives::merkle::root(&flat))
    }

    /// What the stage claims, `(input, output)` (module docs, rule 4): stage 0's input and
    /// the last stage's output are `tokens_hash(transcript)` (all `n` sampled tokens);
    /// otherwise the [`chain_hash`] of the steps' input leaves (`leaves[t][0]`) and output
    /// leaves (`leaves[t][count]`). `layers_total` is `L + 2`.
    pub fn claim(
        &self,
        range: &StageRange,
        layers_total: usize,
        transcript: &[u32],
    ) -> (Hash, Hash) {
        let column = |i: usize| -> Vec<Hash> {
            self.leaves
                .iter()
                .map(|l| l.get(i).copied().unwrap_or(Hash::ZERO))
                .collect()
        };
        let input = if range.takes_tokens() {
            tokens_hash(transcript)
        } else {
            chain_hash(&column(0))
        };
        let output = if range.has_head(layers_total) {
            tokens_hash(transcript)
        } else {
            chain_hash(&column(range.count))
        };
        (input, output)
    }
}

/// The auditor: one teacher-forced prefill over `prompt ++ tokens[..n−1]` through layers
/// `0..first+count` (the layers before the range computed, not recorded), cut into the
/// generation's `n` steps. Returns the range's trace and, when the range holds the head,
/// the token each step's logits sample.
pub fn replay_stage(
    model: &Llama,
    range: &StageRange,
    prompt: &[u32],
    tokens: &[u32],
    sampler: &Sampler,
) -> Result<(StageTrace, Option<Vec<u32>>), ComputeError> {
    replay(model, range, prompt, tokens, None, sampler)
}

/// [`replay_stage`] from the range's input rows instead of the layers before it: `rows`
/// are layer `first − 1`'s rows at positions `0..p+n−1` (the prompt's `p`, then one per
/// decoded token but the last), as the stage received them ([`StageSession::input_rows`]).
/// Costs the range's layers only — what an auditor of a stage past 0 pays once it has
/// checked the rows against the stage's published input claim ([`rows_input_claim`]).
/// Stage 0 takes tokens, not rows (a typed error), as does a row count that does not
/// fit the prompt and the tokens.
pub fn replay_stage_from_rows(
    model: &Llama,
    range: &StageRange,
    prompt: &[u32],
    tokens: &[u32],
    rows: &[f32],
    sampler: &Sampler,
) -> Result<(StageTrace, Option<Vec<u32>>), ComputeError> {
    replay(model, range, prompt, tokens, Some(rows), sampler)
}

fn replay(
    model: &Llama,
    range: &StageRange,
    prompt: &[u32],
    tokens: &[u32],
    rows: Option<&[f32]>,
    sampler: &Sampler,
) -> Result<(StageTrace, Option<Vec<u32>>), ComputeError> {
    sampler.validate()?;
    let c = model.config();
    range.validate(c.layers())?;
    let mut cache = KvCache::for_blocks(c, range.blocks(c.n_layer), 0);
    let p = prefill(model, range, prompt, tokens, rows, &mut cache)?;
    // Each step's pick is independent of the others' (its seed is the step's): in
    // parallel, in step order.
    let picks = p.logits.map(|logits| {
        logits
            .par_chunks_exact(c.vocab)
            .enumerate()
            .map(|(t, row)| sampler.pick(row, t as u64))
            .collect()
    });
    let ops = p.step_ops.iter().fold(0u64, |a, &o| a.saturating_add(o));
    Ok((
        StageTrace {
            leaves: p.leaves,
            ops,
        },
        picks,
    ))
}

/// [`replay_stage`], and what an honest holder of `range` claims for that transcript
/// ([`StageTrace::claim`]): a range that holds the head (the last stage) claims the
/// tokens its logits sample, any other the transcript it was fed. Returns the trace and
/// the claimed `(input, output)` — what an auditor commits to, what a stage rebuilt
/// after its holder lapsed commits as its own, what a requester's local check compares.
pub fn replay_claim(
    model: &Llama,
    range: &StageRange,
    prompt: &[u32],
    tokens: &[u32],
    sampler: &Sampler,
) -> Result<(StageTrace, Hash, Hash), ComputeError> {
    let (trace, picks) = replay_stage(model, range, prompt, tokens, sampler)?;
    Ok(claimed(model, range, trace, picks, tokens))
}

/// [`replay_claim`] from the range's input rows ([`replay_stage_from_rows`]).
pub fn replay_claim_from_rows(
    model: &Llama,
    range: &StageRange,
    prompt: &[u32],
    tokens: &[u32],
    rows: &[f32],
    sampler: &Sampler,
) -> Result<(StageTrace, Hash, Hash), ComputeError> {
    let (trace, picks) = replay_stage_from_rows(model, range, prompt, tokens, rows, sampler)?;
    Ok(claimed(model, range, trace, picks, tokens))
}

fn claimed(
    model: &Llama,
    range: &StageRange,
    trace: StageTrace,
    picks: Option<Vec<u32>>,
    tokens: &[u32],
) -> (StageTrace, Hash, Hash) {
    let claimed = picks.unwrap_or_else(|| tokens.to_vec());
    let (input, output) = trace.claim(range, model.config().layers(), &claimed);
    (trace, input, output)
}

/// The input claim ([`StageTrace::claim`]) of a stage past 0 whose input rows over a
/// session of `steps` steps after a `prompt_len`-token prompt are `rows`
/// ([`StageSession::input_rows`]): the [`chain_hash`] of each step's
/// `rows_hash(first − 1, …)`. An auditor checks fetched rows with it before it replays
/// from them. A typed error when the rows do not have that shape or the range is
/// stage 0's.
pub fn rows_input_claim(
    model: &Llama,
    range: &StageRange,
    prompt_len: usize,
    steps: usize,
    rows: &[f32],
) -> Result<Hash, ComputeError> {
    let d = model.config().dim;
    let spans = input_spans(range, prompt_len, steps, rows.len(), d)?;
    let leaves: Vec<Hash> = spans
        .iter()
        .map(|s| rows_hash(range.first - 1, &rows[s.start * d..s.end * d], d))
        .collect();
    Ok(chain_hash(&leaves))
}

/// The rows of each step (step 0: the prompt's `p`, then one each) for `steps` steps,
/// checking that `values` values are exactly those rows of width `d` and that the range
/// takes rows.
fn input_spans(
    range: &StageRange,
    p: usize,
    steps: usize,
    values: usize,
    d: usize,
) -> Result<Vec<Range<usize>>, ComputeError> {
    if range.takes_tokens() {
        return Err(ComputeError::BadActivation {
            layer: 0,
            detail: "the stage holding the embedding replays from tokens, not rows".into(),
        });
    }
    if p == 0 || steps == 0 {
        return Err(ComputeError::EmptyInput("no steps to replay".into()));
    }
    let positions = p.checked_add(steps - 1);
    if positions.and_then(|n| n.checked_mul(d)) != Some(values) {
        return Err(ComputeError::BadActivation {
            layer: range.first,
            detail: format!(
                "{values} input values are not the rows of a {p}-token prompt and {steps} \
                 steps of width {d}"
            ),
        });
    }
    Ok(step_spans(p, steps))
}

/// Rows of each step: the prompt, then one row per decoded token.
fn step_spans(p: usize, n: usize) -> Vec<Range<usize>> {
    (0..n)
        .map(|t| if t == 0 { 0..p } else { p + t - 1..p + t })
        .collect()
}

/// Bytes of a stage's input rows as it serves them to its auditor:
/// `"AGLLMIR1" ‖ width u32 ‖ row count u32 ‖ f32 LE…`.
pub fn input_rows_bytes(rows: &[f32], width: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(INPUT_ROWS_HEADER + 4 * rows.len());
    b.extend_from_slice(INPUT_ROWS_MAGIC);
    b.extend_from_slice(&(width as u32).to_le_bytes());
    b.extend_from_slice(&((rows.len() / width.max(1)) as u32).to_le_bytes());
    for v in rows {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

/// The length of [`input_rows_bytes`] for `rows` rows `width` wide (saturating): what
/// an auditor fetches at most.
pub fn input_rows_len(rows: usize, width: usize) -> u64 {
    let values = (rows as u64).saturating_mul(width as u64);
    (INPUT_ROWS_HEADER as u64).saturating_add(values.saturating_mul(4))
}

/// Bytes before the values in [`input_rows_bytes`]: the magic, the width, the count.
const INPUT_ROWS_HEADER: usize = 16;

/// Decodes [`input_rows_bytes`] of rows `width` wide (`None`: not such rows — another
/// width, a count that disagrees with the bytes, anything after them).
pub fn input_rows_from_bytes(b: &[u8], width: usize) -> Option<Vec<f32>> {
    let rest = b.strip_prefix(INPUT_ROWS_MAGIC)?;
    let w = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let n = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?) as usize;
    let body = rest.get(8..)?;
    if w != width || body.len() != n.checked_mul(w)?.checked_mul(4)? {
        return None;
    }
    Some(
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Magic of [`input_rows_bytes`].
pub const INPUT_ROWS_MAGIC: &[u8; 8] = b"AGLLMIR1";

/// What [`prefill`] computed for a range over `n` steps.
struct Prefilled {
    /// `leaves[step]`, as a session's.
    leaves: Vec<Vec<Hash>>,
    /// Metered ops of each step.
    step_ops: Vec<u64>,
    /// With the head: the logits of each step's last row, `n × vocab`.
    logits: Option<Vec<f32>>,
    /// Past stage 0: the range's input rows (as [`StageSession::input_rows`]).
    inputs: Vec<f32>,
}

/// One teacher-forced prefill over `prompt ++ tokens[..n−1]` through layers
/// `0..first+count`, cut into `n` steps — or, given the range's input `rows`, through the
/// range's layers only; the range's blocks fill `cache` (which holds exactly them), the
/// blocks before the range a scratch cache.
fn prefill(
    model: &Llama,
    range: &StageRange,
    prompt: &[u32],
    tokens: &[u32],
    rows: Option<&[f32]>,
    cache: &mut KvCache,
) -> Result<Prefilled, ComputeError> {
    let c = model.config();
    range.validate(c.layers())?;
    if prompt.is_empty() {
        return Err(ComputeError::EmptyInput("the prompt is empty".into()));
    }
    if tokens.is_empty() {
        return Err(ComputeError::EmptyInput(
            "no generated tokens to replay".into(),
        ));
    }
    let (p, n, d) = (prompt.len(), tokens.len(), c.dim);
    let len = p.saturating_add(n - 1);
    if len > c.context {
        return Err(ComputeError::InputTooLong {
            len,
            max: c.context,
        });
    }
    check_vocab(prompt, c.vocab)?;
    check_vocab(tokens, c.vocab)?;
    if let Some(rows) = rows {
        input_spans(range, p, n, rows.len(), d)?;
    }
    let mut seq = prompt.to_vec();
    seq.extend_from_slice(&tokens[..n - 1]);
    let spans = step_spans(p, n);
    let first = range.first;
    let mut leaves = vec![Vec::with_capacity(range.count + 1); n];
    let mut step_ops = vec![0u64; n];
    // Leaves are hashed in parallel over the steps (each its own hash), pushed in order.
    let record = |leaves: &mut Vec<Vec<Hash>>, layer: usize, x: &[f32]| {
        let hashes: Vec<Hash> = spans
            .par_iter()
            .map(|s| rows_hash(layer, &x[s.start * d..s.end * d], d))
            .collect();
        for (step, h) in leaves.iter_mut().zip(hashes) {
            step.push(h);
        }
    };
    let meter = |step_ops: &mut Vec<u64>, layer: usize| {
        for (o, s) in step_ops.iter_mut().zip(&spans) {
            *o = o.saturating_add(model.layer_ops(layer, s.start, s.len(), 1));
        }
    };
    let blocks = range.blocks(c.n_layer);
    let after = |leaves: &mut Vec<Vec<Hash>>, step_ops: &mut Vec<u64>, l: usize, x: &[f32]| {
        // The range's input (layer first − 1) and its layers.
        if l + 1 >= first {
            record(leaves, l, x);
        }
        if l >= first {
            meter(step_ops, l);
        }
    };
    let mut x = match rows {
        Some(rows) => {
            // The range's input as given: its leaves, then the range's own layers.
            let x = rows.to_vec();
            record(&mut leaves, first - 1, &x);
            x
        }
        None => {
            let mut x = vec![0.0f32; seq.len() * d];
            model.embed_rows(&seq, &mut x);
            if first == 0 {
                for (t, s) in spans.iter().enumerate() {
                    leaves[t].push(tokens_leaf(&seq[s.clone()]));
                }
                record(&mut leaves, 0, &x);
                meter(&mut step_ops, 0);
            } else if first == 1 {
                record(&mut leaves, 0, &x);
            }
            let mut before = KvCache::for_blocks(c, 0..blocks.start, seq.len());
            run_blocks(
                model,
                1..blocks.start + 1,
                &mut x,
                0,
                &mut before,
                |l, x| after(&mut leaves, &mut step_ops, l, x),
            );
            x
        }
    };
    let inputs = if first > 0 && rows.is_none() {
        x.clone()
    } else {
        Vec::new()
    };
    run_blocks(
        model,
        blocks.start + 1..range.end(),
        &mut x,
        0,
        cache,
        |l, x| after(&mut leaves, &mut step_ops, l, x),
    );
    let logits = if range.has_head(c.layers()) {
        let mut last = Vec::with_capacity(n * d);
        for s in &spans {
            last.extend_from_slice(&x[(s.end - 1) * d..s.end * d]);
        }
        let logits = model.head_rows(&last);
        let head = c.n_layer + 1;
        let hashes: Vec<Hash> = logits
            .par_chunks_exact(c.vocab)
            .map(|row| rows_hash(head, row, c.vocab))
            .collect();
        for (step, h) in leaves.iter_mut().zip(hashes) {
            step.push(h);
        }
        meter(&mut step_ops, head);
        Some(logits)
    } else {
        None
    };
    Ok(Prefilled {
        leaves,
        step_ops,
        logits,
        inputs,
    })
}

/// Metering in closed form (integers only): the ops of a generation of `n ≥ 1` steps after
/// a prompt of `p` tokens are
/// `prefill + (n−1)·step + per_key·((n−1)·p + (n−1)·n/2)` ([`GenerationCost::ops`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerationCost {
    /// Ops of step 0 (the prompt's `p` rows).
    pub prefill: u64,
    /// Ops of one decode row, attention over the keys excepted.
    pub step: u64,
    /// Ops per attended key per decode row.
    pub per_key: u64,
}

impl GenerationCost {
    /// `prefill + (n−1)·step + per_key·((n−1)·p + (n−1)·n/2)` for `steps = n`, checked
    /// (`None` on overflow); 0 for no step.
    pub fn ops(&self, prompt_len: u64, steps: u64) -> Option<u64> {
        let Some(m) = steps.checked_sub(1) else {
            return Some(0);
        };
        let keys = m
            .checked_mul(prompt_len)?
            .checked_add(m.checked_mul(steps)? / 2)?;
        self.prefill
            .checked_add(m.checked_mul(self.step)?)?
            .checked_add(self.per_key.checked_mul(keys)?)
    }
}

/// The [`GenerationCost`] of `range` for a prompt of `prompt_len` tokens: the numbers
/// `Llama::layer_ops` meters, summed over the range (saturating at `u64::MAX`, far beyond
/// any context).
pub fn stage_cost(model: &Llama, range: &StageRange, prompt_len: usize) -> GenerationCost {
    let c = model.config();
    let blocks = range.blocks(c.n_layer).len() as u128;
    let head = range.has_head(c.layers()) as u128;
    let (row, key, head_row) = (
        model.block_row_ops() as u128,
        model.block_key_ops() as u128,
        model.head_row_ops() as u128,
    );
    let p = prompt_len as u128;
    // Step 0: p rows at positions 0..p, row i attending i + 1 keys.
    let prefill = blocks * (p * row + p * (p + 1) / 2 * key) + head * head_row;
    let sat = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    GenerationCost {
        prefill: sat(prefill),
        step: sat(blocks * row + head * head_row),
        per_key: sat(blocks * key),
    }
}

/// Magic of a [`GenerationRequest`]'s bytes.
pub const REQUEST_MAGIC: &[u8; 8] = b"AGGENRQ1";
/// Most prompt tokens a request may carry.
pub const MAX_PROMPT_TOKENS: usize = 1 << 20;
/// Most stop tokens a request may carry.
pub const MAX_STOP_TOKENS: usize = 1024;

/// The request a generation job carries as its input blob.
///
/// Bytes (little-endian): `"AGGENRQ1" ‖ prompt count u32 ‖ prompt u32… ‖ max_tokens u32 ‖
/// sampler tag u8 (0 greedy; 1 sample: seed u64, temperature f32 bits, top_k u32, top_p
/// f32 bits) ‖ stop count u32 ‖ stop u32…`, nothing after. Decoding bounds every count
/// ([`MAX_PROMPT_TOKENS`], [`MAX_STOP_TOKENS`], and the bytes present) before allocating.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationRequest {
    pub prompt: Vec<u32>,
    pub max_tokens: u32,
    pub sampler: Sampler,
    /// The session ends after any of these ([`ends`]).
    pub stop: Vec<u32>,
}

/// A cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ComputeError> {
        let bytes: &'a [u8] = self.bytes;
        let rest = &bytes[self.at..];
        if rest.len() < n {
            return Err(ComputeError::MalformedRequest(format!(
                "truncated at byte {} reading {what}",
                self.at
            )));
        }
        self.at += n;
        Ok(&rest[..n])
    }

    fn u8(&mut self, what: &str) -> Result<u8, ComputeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, ComputeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ComputeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A count-prefixed list of u32, at most `max` long.
    fn tokens(&mut self, max: usize, what: &str) -> Result<Vec<u32>, ComputeError> {
        let count = self.u32(what)? as usize;
        let left = (self.bytes.len() - self.at) / 4;
        if count > max || count > left {
            return Err(ComputeError::MalformedRequest(format!(
                "{count} {what} (at most {max}; {left} fit in the bytes left)"
            )));
        }
        (0..count).map(|_| self.u32(what)).collect()
    }
}

impl GenerationRequest {
    /// Whether `bytes` claim to be a request (they start with [`REQUEST_MAGIC`]).
    pub fn is_request(bytes: &[u8]) -> bool {
        bytes.starts_with(REQUEST_MAGIC)
    }

    /// The canonical bytes (type docs). A `top_k` beyond `u32::MAX` is written as
    /// `u32::MAX` (the same sampler: no vocabulary is that large).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 4 * (self.prompt.len() + self.stop.len()) + 37);
        b.extend_from_slice(REQUEST_MAGIC);
        b.extend_from_slice(&(self.prompt.len() as u32).to_le_bytes());
        for t in &self.prompt {
            b.extend_from_slice(&t.to_le_bytes());
        }
        b.extend_from_slice(&self.max_tokens.to_le_bytes());
        match self.sampler {
            Sampler::Greedy => b.push(0),
            Sampler::Sample {
                seed,
                temperature,
                top_k,
                top_p,
            } => {
                b.push(1);
                b.extend_from_slice(&seed.to_le_bytes());
                b.extend_from_slice(&temperature.to_bits().to_le_bytes());
                b.extend_from_slice(&u32::try_from(top_k).unwrap_or(u32::MAX).to_le_bytes());
                b.extend_from_slice(&top_p.to_bits().to_le_bytes());
            }
        }
        b.extend_from_slice(&(self.stop.len() as u32).to_le_bytes());
        for t in &self.stop {
            b.extend_from_slice(&t.to_le_bytes());
        }
        b
    }

    /// Decodes untrusted bytes: a typed error, never a panic, for anything but the exact
    /// encoding of a request (semantic checks are [`GenerationRequest::validate`]'s).
    pub fn decode(bytes: &[u8]) -> Result<Self, ComputeError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8, "the magic")? != REQUEST_MAGIC {
            return Err(ComputeError::MalformedRequest(
                "not a generation request (magic)".into(),
            ));
        }
        let prompt = r.tokens(MAX_PROMPT_TOKENS, "prompt tokens")?;
        let max_tokens = r.u32("max_tokens")?;
        let sampler = match r.u8("the sampler tag")? {
            0 => Sampler::Greedy,
            1 => Sampler::Sample {
                seed: r.u64("the seed")?,
                temperature: f32::from_bits(r.u32("the temperature")?),
                top_k: r.u32("top_k")? as usize,
                top_p: f32::from_bits(r.u32("top_p")?),
            },
            tag => {
                return Err(ComputeError::MalformedRequest(format!(
                    "unknown sampler tag {tag}"
                )))
            }
        };
        let stop = r.tokens(MAX_STOP_TOKENS, "stop tokens")?;
        if r.at != bytes.len() {
            return Err(ComputeError::MalformedRequest(format!(
                "{} bytes after the request",
                bytes.len() - r.at
            )));
        }
        Ok(GenerationRequest {
            prompt,
            max_tokens,
            sampler,
            stop,
        })
    }

    /// Checks the request against `model`: a non-empty prompt, every token (prompt and
    /// stop) in the vocabulary, `max_tokens ≥ 1`, `prompt + max_tokens ≤ context`, the
    /// limits of the encoding, a sensible sampler.
    pub fn validate(&self, model: &Llama) -> Result<(), ComputeError> {
        let c = model.config();
        if self.prompt.is_empty() {
            return Err(ComputeError::EmptyInput("the prompt is empty".into()));
        }
        if self.prompt.len() > MAX_PROMPT_TOKENS || self.stop.len() > MAX_STOP_TOKENS {
            return Err(ComputeError::config(format!(
                "{} prompt / {} stop tokens (at most {MAX_PROMPT_TOKENS} / {MAX_STOP_TOKENS})",
                self.prompt.len(),
                self.stop.len()
            )));
        }
        check_vocab(&self.prompt, c.vocab)?;
        check_vocab(&self.stop, c.vocab)?;
        if self.max_tokens == 0 {
            return Err(ComputeError::config("max_tokens must be at least 1"));
        }
        let len = self.prompt.len().saturating_add(self.max_tokens as usize);
        if len > c.context {
            return Err(ComputeError::InputTooLong {
                len,
                max: c.context,
            });
        }
        self.sampler.validate()
    }
}

/// Whether the token `token` sampled at step `step` (0-based: `step` tokens were sampled
/// before it) ends the session: it is a stop token, or it is the `max_tokens`-th, or
/// `prompt + step + 1 ≥ context`.
pub fn ends(req: &GenerationRequest, context: usize, step: usize, token: u32) -> bool {
    req.stop.contains(&token)
        || step.saturating_add(1) >= req.max_tokens as usize
        || req.prompt.len().saturating_add(step).saturating_add(1) >= context
}
