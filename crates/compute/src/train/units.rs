//! One training step cut into re-executable units, joined by hash-addressed carries.
//!
//! A dispute over a training job bisects twice: first over steps (the state hashes
//! every stage commits, [`super::task`]), then over the *units of the disputed step*.
//! A referee then re-executes exactly one unit — one block's forward, one block's
//! backward, the optimizer update — from that unit's input carry (bytes fetched by
//! hash) and the task, and compares the hash of what it gets with the claimed next
//! carry.
//!
//! # The units of a step
//!
//! With `L = n_layer`, a step has [`step_units`] `= 2·L + 5` units, in this order:
//!
//! ```text
//!  unit      what it runs (GptParams::…)                          carry after it holds
//!  ───────   ──────────────────────────────────────────────────   ─────────────────────────────────
//!  0         embed_forward   x = wte[tok] + wpe[pos]              state, x
//!  1 … L     block_forward   block l = unit − 1, x updated        state, caches h.0 … h.l, x
//!  L+1       head_forward + cross_entropy (ln_f, logits, loss)    state, loss, caches h.*, ln_f, dlogits
//!  L+2       head_backward   dwte (head part), dln_f, dx          state, loss, caches h.*, dx, grads
//!  L+3 …     block_backward  block l = 2L+2 − unit (L−1 down to 0) state, loss, caches h.0 … h.l−1, dx, grads
//!   … 2L+2
//!  2L+3      embed_backward  dwte += rows, dwpe                   state, loss, all grads
//!  2L+4      optimizer       TrainTask::finish_step (update, log) the state after the step
//!
//!  carry₀ ──unit 0──▶ carry₁ ──unit 1──▶ … ──unit 2L+4──▶ carry_{2L+5}
//!  = state before step t                                   = state after step t
//! ```
//!
//! The monolithic step ([`super::task::TrainTask::run_steps`], via
//! `GptParams::loss_and_grads`) calls the *same* functions in the same order with the
//! same buffers, so running the units one by one gives the monolithic step's bits by
//! construction; the tests check it anyway.
//!
//! # Carries and leaves
//!
//! Carry `k` of step `t` is everything units `k …` need: the state before the step
//! (parameters, moments, step count, step log — unchanged until the optimizer unit),
//! the step and unit position, the saved forward caches the backward has yet to use,
//! the residual stream or its gradient, the loss and the gradients written so far.
//! Caches are dropped once their backward unit has run, so carries shrink on the way
//! back. The batch is not carried: it is a pure function of `(task, t)`.
//!
//! The step's leaves are the hashes of carries `0 ..= U` (`U + 1` leaves). The two
//! boundary carries *are* states: their canonical bytes are the [`TrainState`] bytes
//! (`"AGSTATE1" …`), so **leaf 0 is the hash of the state before step `t`, and leaf
//! `U` the hash of the state after it** — exactly the hashes the step-level bisection
//! agreed and disagreed on. Inner carries (`0 < k < U`) are
//!
//! ```text
//! carry = "AGCARRY1" | u64 step t | u32 units done k
//!       | the state before step t (TrainState bytes, length fixed by the task and t)
//!       | sections, each raw little-endian f32, in this order:
//!           forward  (1 ≤ k ≤ L+1):   h.0 … h.(k−2) caches | x [n×d]
//!           head     (k = L+2):       loss | h.0 … h.(L−1) caches | ln_f.xhat [n×d] | ln_f.rstd [n]
//!                                     | ln_f.out [n×d] | dlogits [n×V]
//!           backward (L+3 ≤ k ≤ 2L+3): loss | h.0 … h.(r−1) caches (r = 2L+3 − k) | dx [n×d]
//!                                     | grads of wte, then of every tensor from h.r on (layout order)
//!           grads    (k = 2L+4):      loss | grads of every tensor (layout order)
//!   block cache h.l = ln_1.xhat [n×d] | ln_1.rstd [n] | ln_1.out [n×d] | qkv [n×3d]
//!                   | probs [batch×heads×seq×seq] | att [n×d] | ln_2.xhat [n×d] | ln_2.rstd [n]
//!                   | ln_2.out [n×d] | fc_pre [n×4d] | fc_act [n×4d]
//! ```
//!
//! with `n = batch·seq`. Every size is fixed by `(task, t, k)`, so the length is
//! checked before anything is allocated and every carry has one encoding; decoding
//! never panics on untrusted bytes and returns a typed [`TaskError`].
//! [`carry_layout`] lists the sections with their byte offsets.
//!
//! # Metering
//!
//! [`unit_ops`] splits the training op model ([`super::task`], "Metering") by unit:
//! the embedding's `n·d`, each block's forward, `ln_f + lm_head + cross-entropy`, the
//! head's backward, each block's backward, the embedding backward's `2·n·d`, and the
//! optimizer. They sum to [`TrainTask::step_ops`] exactly (the step's formula is
//! written as that sum).

use super::gpt::{targets, GptParams, LayerCache};
use super::ops::{self, LayerNormCache};
use super::task::{Reader, TaskError, TrainState, TrainTask, LOG_ENTRY, STATE_HEADER};
use super::trace::{hash_bytes, Hash};

/// The inner carry's magic prefix (format version 1).
pub const CARRY_MAGIC: &[u8; 8] = b"AGCARRY1";
/// Bytes before the embedded state in an inner carry: magic, step, units done.
const CARRY_HEADER: usize = 8 + 8 + 4;
/// Arrays per block cache (module docs).
const CACHE_PARTS: usize = 11;

/// Bounds for decoding an untrusted carry (its layout is fixed by the task).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CarryLimits {
    /// Largest carry blob, in bytes.
    pub max_bytes: u64,
}

impl Default for CarryLimits {
    /// 2 GiB.
    fn default() -> Self {
        CarryLimits { max_bytes: 2 << 30 }
    }
}

/// What one unit of a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Token and position embeddings.
    Embed,
    /// Block `l`'s forward.
    BlockForward(u32),
    /// `ln_f`, the LM head and the cross-entropy loss.
    Head,
    /// The tied head's and `ln_f`'s backward.
    HeadBackward,
    /// Block `l`'s backward.
    BlockBackward(u32),
    /// The embeddings' backward.
    EmbedBackward,
    /// The optimizer update and the step's log record.
    Optimizer,
}

impl Unit {
    /// Unit `k` of a step of a model with `n_layer` blocks, or `None` past the last.
    pub fn of(n_layer: u32, k: u32) -> Option<Unit> {
        let l = u64::from(n_layer);
        let k = u64::from(k);
        Some(match k {
            0 => Unit::Embed,
            k if k <= l => Unit::BlockForward((k - 1) as u32),
            k if k == l + 1 => Unit::Head,
            k if k == l + 2 => Unit::HeadBackward,
            k if k <= 2 * l + 2 => Unit::BlockBackward((2 * l + 2 - k) as u32),
            k if k == 2 * l + 3 => Unit::EmbedBackward,
            k if k == 2 * l + 4 => Unit::Optimizer,
            _ => return None,
        })
    }
}

/// Units in one step of `task`: `2·n_layer + 5` (module docs).
pub fn step_units(task: &TrainTask) -> u32 {
    u32::try_from(2 * task.config.n_layer as u64 + 5).unwrap_or(u32::MAX)
}

fn n_layer(task: &TrainTask) -> u32 {
    u32::try_from(task.config.n_layer).unwrap_or(u32::MAX)
}

/// Unit `unit` of `task`'s steps, or `None` past the last.
pub fn unit_kind(task: &TrainTask, unit: u32) -> Option<Unit> {
    Unit::of(n_layer(task), unit)
}

/// Operations of unit `unit` under the training op model; they sum to
/// [`TrainTask::step_ops`] over a step's units. `0` past the last unit; saturates
/// at `u64::MAX` for a task [`TrainTask::validate`] refuses.
pub fn unit_ops(task: &TrainTask, unit: u32) -> u64 {
    let p = task.step_parts();
    let ops = match unit_kind(task, unit) {
        None => 0,
        Some(Unit::Embed) => p.embed,
        Some(Unit::BlockForward(_)) => p.block,
        Some(Unit::Head) => p.head + p.loss,
        Some(Unit::HeadBackward) => p.head_backward,
        Some(Unit::BlockBackward(_)) => p.block_backward,
        Some(Unit::EmbedBackward) => p.embed_backward,
        Some(Unit::Optimizer) => p.optimizer,
    };
    u64::try_from(ops).unwrap_or(u64::MAX)
}

/// What an inner carry holds besides the state (module docs, by phase).
#[derive(Clone, Debug, PartialEq)]
enum Work {
    /// After the embedding and `blocks.len()` block forwards.
    Forward {
        blocks: Vec<LayerCache<f32>>,
        x: Vec<f32>,
    },
    /// After the head's forward and the loss.
    Head {
        loss: f32,
        blocks: Vec<LayerCache<f32>>,
        lnf: LayerNormCache<f32>,
        lnf_out: Vec<f32>,
        dlogits: Vec<f32>,
    },
    /// After the head's backward and the backward of every block from
    /// `blocks.len()` on. `grads` has every tensor; those not written yet are zero
    /// and not encoded.
    Backward {
        loss: f32,
        blocks: Vec<LayerCache<f32>>,
        dx: Vec<f32>,
        grads: Vec<Vec<f32>>,
    },
    /// After the embeddings' backward: every gradient.
    Grads { loss: f32, grads: Vec<Vec<f32>> },
}

#[derive(Clone, Debug, PartialEq)]
struct Inner {
    step: u64,
    done: u32,
    state: TrainState,
    work: Work,
}

#[derive(Clone, Debug, PartialEq)]
enum Carry {
    Boundary(TrainState),
    Inner(Box<Inner>),
}

/// What flows between the units of a step: a state at either end, and inside a
/// step the state plus the step's work so far (module docs, "Carries and leaves").
/// Built only by [`StepCarry::start`], [`run_unit`] and [`StepCarry::decode`], so
/// its parts always fit one another.
#[derive(Clone, Debug, PartialEq)]
pub struct StepCarry(Carry);

impl StepCarry {
    /// Carry 0 of the step after `state` (its bytes are the state's bytes).
    pub fn start(state: TrainState) -> StepCarry {
        StepCarry(Carry::Boundary(state))
    }

    /// Whether this carry is a state (carry 0 of a step, or the last carry of the
    /// step before).
    pub fn is_boundary(&self) -> bool {
        matches!(self.0, Carry::Boundary(_))
    }

    /// The state: after the step's last unit, the state after the step; otherwise
    /// the state before it.
    pub fn state(&self) -> &TrainState {
        match &self.0 {
            Carry::Boundary(s) => s,
            Carry::Inner(i) => &i.state,
        }
    }

    /// The state, by value ([`StepCarry::state`]).
    pub fn into_state(self) -> TrainState {
        match self.0 {
            Carry::Boundary(s) => s,
            Carry::Inner(i) => i.state,
        }
    }

    /// `(step, units done)` of an inner carry; `None` for a boundary (whose step is
    /// its state's [`TrainState::step`], units done 0).
    pub fn position(&self) -> Option<(u64, u32)> {
        match &self.0 {
            Carry::Boundary(_) => None,
            Carry::Inner(i) => Some((i.step, i.done)),
        }
    }

    /// The step's loss, once the head unit has run (and until the optimizer unit).
    pub fn loss(&self) -> Option<f32> {
        match &self.0 {
            Carry::Inner(i) => match &i.work {
                Work::Forward { .. } => None,
                Work::Head { loss, .. }
                | Work::Backward { loss, .. }
                | Work::Grads { loss, .. } => Some(*loss),
            },
            Carry::Boundary(_) => None,
        }
    }

    /// The canonical bytes (module docs): a boundary's are its state's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match &self.0 {
            Carry::Boundary(s) => s.encode(),
            Carry::Inner(i) => {
                let state = i.state.encode();
                let parts = i.work.parts();
                let body: usize = parts.iter().map(|p| p.len()).sum();
                let mut out = Vec::with_capacity(CARRY_HEADER + state.len() + 4 * body);
                out.extend_from_slice(CARRY_MAGIC);
                out.extend_from_slice(&i.step.to_le_bytes());
                out.extend_from_slice(&i.done.to_le_bytes());
                out.extend_from_slice(&state);
                for part in parts {
                    for x in part {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
                out
            }
        }
    }

    /// The carry's content hash: blake3 of [`StepCarry::encode`] (for a boundary,
    /// [`TrainState::hash`]).
    pub fn hash(&self) -> Hash {
        hash_bytes(&self.encode())
    }

    /// Decodes untrusted bytes as a carry of `task`: a state (`"AGSTATE1"`) or an
    /// inner carry (`"AGCARRY1"`) whose length must be exactly the one its step and
    /// position fix. Every failure is a [`TaskError`].
    pub fn decode(
        bytes: &[u8],
        task: &TrainTask,
        limits: CarryLimits,
    ) -> Result<StepCarry, TaskError> {
        if bytes.len() as u64 > limits.max_bytes {
            return Err(TaskError::TooLarge {
                what: "the carry blob (bytes)",
                size: bytes.len() as u64,
                limit: limits.max_bytes,
            });
        }
        task.check_runnable()?;
        if TrainState::is_state(bytes) {
            return Ok(StepCarry::start(TrainState::decode(bytes, task)?));
        }
        let mut r = Reader {
            rest: bytes,
            what: "carry",
        };
        if r.take(8, "magic").ok() != Some(CARRY_MAGIC.as_slice()) {
            return Err(TaskError::NotA("carry"));
        }
        let step = r.u64("step")?;
        let done = r.u32("units done")?;
        if step >= task.steps {
            return Err(carry_err(format!(
                "step {step}, the task has {} steps",
                task.steps
            )));
        }
        if done == 0 || done >= step_units(task) {
            return Err(carry_err(format!(
                "{done} units done: an inner carry of a {}-unit step has 1 to {}",
                step_units(task),
                step_units(task) - 1
            )));
        }
        // The exact length, before reading (and allocating) anything large.
        let layout = body_layout(task, done);
        let state_len = state_bytes(task, step);
        let expected =
            CARRY_HEADER as u128 + state_len + 4 * layout.iter().map(|(_, n)| *n).sum::<u128>();
        if expected != bytes.len() as u128 {
            return Err(carry_err(format!(
                "{} bytes, the layout of step {step} after {done} units needs {expected}",
                bytes.len()
            )));
        }
        // Every size below is part of `expected`, which fits in memory.
        let state = TrainState::decode(r.take(state_len as usize, "state")?, task)?;
        if state.step() != step {
            return Err(carry_err(format!(
                "the state has done {} steps, the carry is inside step {step}",
                state.step()
            )));
        }
        let mut parts = Vec::with_capacity(layout.len());
        for (name, n) in &layout {
            parts.push(r.f32s(*n as usize, name)?);
        }
        let work = Work::assemble(task, done, parts);
        Ok(StepCarry(Carry::Inner(Box::new(Inner {
            step,
            done,
            state,
            work,
        }))))
    }

    /// Checks that this carry sits at unit `unit` of step `t` of `task` and that
    /// every buffer has the size the task fixes (so running a unit cannot panic).
    fn check_at(&self, task: &TrainTask, t: u64, unit: u32) -> Result<(), TaskError> {
        let bad = |reason: String| TaskError::UnitMismatch {
            step: t,
            unit,
            reason,
        };
        match &self.0 {
            Carry::Boundary(s) => {
                if unit != 0 {
                    return Err(bad("the carry is a state (the input of unit 0)".into()));
                }
                if s.step() != t {
                    return Err(bad(format!("the state has done {} steps", s.step())));
                }
                s.check_layout(task)
            }
            Carry::Inner(i) => {
                if (i.step, i.done) != (t, unit) {
                    return Err(bad(format!(
                        "the carry is the input of unit {} of step {}",
                        i.done, i.step
                    )));
                }
                i.state.check_layout(task)?;
                let want = body_layout(task, unit);
                let have = i.work.parts();
                let grads_ok = match &i.work {
                    Work::Backward { grads, .. } | Work::Grads { grads, .. } => {
                        grads.len() == i.state.params.params.tensors.len()
                            && grads
                                .iter()
                                .zip(&i.state.params.params.tensors)
                                .all(|(g, p)| g.len() == p.data.len())
                    }
                    _ => true,
                };
                let phase_ok = matches!(
                    (&i.work, phase(task, unit)),
                    (Work::Forward { .. }, Phase::Forward { .. })
                        | (Work::Head { .. }, Phase::Head)
                        | (Work::Backward { .. }, Phase::Backward { .. })
                        | (Work::Grads { .. }, Phase::Grads)
                );
                if !phase_ok
                    || !grads_ok
                    || want.len() != have.len()
                    || want
                        .iter()
                        .zip(&have)
                        .any(|((_, n), h)| *n != h.len() as u128)
                {
                    return Err(bad("the carry's buffers do not fit the task".into()));
                }
                Ok(())
            }
        }
    }
}

fn carry_err(detail: String) -> TaskError {
    TaskError::Malformed {
        what: "carry",
        detail,
    }
}

/// Which buffers an inner carry after `done` units holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// `blocks` block caches and `x`.
    Forward {
        blocks: usize,
    },
    Head,
    /// `blocks` caches left, `dx`, the gradients written so far.
    Backward {
        blocks: usize,
    },
    Grads,
}

/// The phase of the carry after `done` units (`0 < done < U`).
fn phase(task: &TrainTask, done: u32) -> Phase {
    let l = task.config.n_layer;
    let k = done as usize;
    if k <= l + 1 {
        Phase::Forward { blocks: k - 1 }
    } else if k == l + 2 {
        Phase::Head
    } else if k <= 2 * l + 3 {
        Phase::Backward {
            blocks: 2 * l + 3 - k,
        }
    } else {
        Phase::Grads
    }
}

/// Whether tensor `i`'s gradient is written once block `blocks`'s backward (and
/// every later one) has run: `wte` (the head's part) and every tensor from block
/// `blocks` on, `ln_f` included (the layout puts the blocks before `ln_f`).
fn grad_written(i: usize, blocks: usize) -> bool {
    i == 0 || i >= 2 + 12 * blocks
}

/// Bytes of the task's state after `t` steps.
fn state_bytes(task: &TrainTask, t: u64) -> u128 {
    let p: u128 = task
        .config
        .tensor_layout()
        .iter()
        .map(|(_, s)| s.iter().map(|&x| x as u128).product::<u128>())
        .sum();
    STATE_HEADER as u128
        + 4 * p * (1 + u128::from(task.moment_buffers()))
        + u128::from(t) * LOG_ENTRY as u128
}

/// The f32 sections after the embedded state of the inner carry after `done` units,
/// in encoding order: `(name, elements)`.
fn body_layout(task: &TrainTask, done: u32) -> Vec<(String, u128)> {
    let c = &task.config;
    let (b, s) = (task.batch as u128, task.seq as u128);
    let (d, v, h) = (c.n_embd as u128, c.vocab_size as u128, c.n_head as u128);
    let n = b * s;
    let cache = |l: usize, out: &mut Vec<(String, u128)>| {
        let sizes = [
            ("ln_1.xhat", n * d),
            ("ln_1.rstd", n),
            ("ln_1.out", n * d),
            ("qkv", 3 * n * d),
            ("probs", b * h * s * s),
            ("att", n * d),
            ("ln_2.xhat", n * d),
            ("ln_2.rstd", n),
            ("ln_2.out", n * d),
            ("fc_pre", 4 * n * d),
            ("fc_act", 4 * n * d),
        ];
        out.extend(sizes.iter().map(|(x, k)| (format!("h.{l}.{x}"), *k)));
    };
    let grads = |out: &mut Vec<(String, u128)>, written: &dyn Fn(usize) -> bool| {
        for (i, (name, shape)) in c.tensor_layout().into_iter().enumerate() {
            if written(i) {
                let k = shape.iter().map(|&x| x as u128).product();
                out.push((format!("grad.{name}"), k));
            }
        }
    };
    let mut out = Vec::new();
    match phase(task, done) {
        Phase::Forward { blocks } => {
            (0..blocks).for_each(|l| cache(l, &mut out));
            out.push(("x".into(), n * d));
        }
        Phase::Head => {
            out.push(("loss".into(), 1));
            (0..c.n_layer).for_each(|l| cache(l, &mut out));
            out.push(("ln_f.xhat".into(), n * d));
            out.push(("ln_f.rstd".into(), n));
            out.push(("ln_f.out".into(), n * d));
            out.push(("dlogits".into(), n * v));
        }
        Phase::Backward { blocks } => {
            out.push(("loss".into(), 1));
            (0..blocks).for_each(|l| cache(l, &mut out));
            out.push(("dx".into(), n * d));
            grads(&mut out, &|i| grad_written(i, blocks));
        }
        Phase::Grads => {
            out.push(("loss".into(), 1));
            grads(&mut out, &|_| true);
        }
    }
    out
}

fn cache_parts(c: &LayerCache<f32>) -> [&[f32]; CACHE_PARTS] {
    [
        &c.ln1.xhat,
        &c.ln1.rstd,
        &c.ln1_out,
        &c.qkv,
        &c.probs,
        &c.att,
        &c.ln2.xhat,
        &c.ln2.rstd,
        &c.ln2_out,
        &c.fc_pre,
        &c.fc_act,
    ]
}

impl Work {
    /// The encoded buffers, in [`body_layout`] order.
    fn parts(&self) -> Vec<&[f32]> {
        fn blocks<'a>(bs: &'a [LayerCache<f32>], out: &mut Vec<&'a [f32]>) {
            for b in bs {
                out.extend(cache_parts(b));
            }
        }
        let mut out: Vec<&[f32]> = Vec::new();
        match self {
            Work::Forward { blocks: bs, x } => {
                blocks(bs, &mut out);
                out.push(x);
            }
            Work::Head {
                loss,
                blocks: bs,
                lnf,
                lnf_out,
                dlogits,
            } => {
                out.push(std::slice::from_ref(loss));
                blocks(bs, &mut out);
                out.extend([&lnf.xhat[..], &lnf.rstd, lnf_out, dlogits]);
            }
            Work::Backward {
                loss,
                blocks: bs,
                dx,
                grads,
            } => {
                out.push(std::slice::from_ref(loss));
                blocks(bs, &mut out);
                out.push(dx);
                let r = bs.len();
                out.extend(
                    grads
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| grad_written(*i, r))
                        .map(|(_, g)| &g[..]),
                );
            }
            Work::Grads { loss, grads } => {
                out.push(std::slice::from_ref(loss));
                out.extend(grads.iter().map(|g| &g[..]));
            }
        }
        out
    }

    /// The inverse of [`Work::parts`]: `parts` has exactly the sizes of
    /// [`body_layout`]`(task, done)`.
    fn assemble(task: &TrainTask, done: u32, parts: Vec<Vec<f32>>) -> Work {
        let mut it = parts.into_iter();
        let mut next = || it.next().unwrap_or_default();
        fn caches(k: usize, next: &mut dyn FnMut() -> Vec<f32>) -> Vec<LayerCache<f32>> {
            (0..k)
                .map(|_| LayerCache {
                    ln1: LayerNormCache {
                        xhat: next(),
                        rstd: next(),
                    },
                    ln1_out: next(),
                    qkv: next(),
                    probs: next(),
                    att: next(),
                    ln2: LayerNormCache {
                        xhat: next(),
                        rstd: next(),
                    },
                    ln2_out: next(),
                    fc_pre: next(),
                    fc_act: next(),
                })
                .collect()
        }
        let sizes: Vec<usize> = task
            .config
            .tensor_layout()
            .iter()
            .map(|(_, s)| s.iter().product())
            .collect();
        let first = |v: Vec<f32>| v.first().copied().unwrap_or(0.0);
        match phase(task, done) {
            Phase::Forward { blocks } => {
                let blocks = caches(blocks, &mut next);
                Work::Forward { blocks, x: next() }
            }
            Phase::Head => {
                let loss = first(next());
                let blocks = caches(task.config.n_layer, &mut next);
                Work::Head {
                    loss,
                    blocks,
                    lnf: LayerNormCache {
                        xhat: next(),
                        rstd: next(),
                    },
                    lnf_out: next(),
                    dlogits: next(),
                }
            }
            Phase::Backward { blocks: r } => {
                let loss = first(next());
                let blocks = caches(r, &mut next);
                let dx = next();
                let grads = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| {
                        if grad_written(i, r) {
                            next()
                        } else {
                            vec![0.0; n]
                        }
                    })
                    .collect();
                Work::Backward {
                    loss,
                    blocks,
                    dx,
                    grads,
                }
            }
            Phase::Grads => {
                let loss = first(next());
                let grads = sizes.iter().map(|_| next()).collect();
                Work::Grads { loss, grads }
            }
        }
    }
}

/// One section of a carry's canonical bytes ([`carry_layout`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarrySection {
    /// What it holds: `header`, `state.header`, `param.<tensor>`, `state.moments`,
    /// `state.log`, then the body's sections (`x`, `h.0.qkv`, `loss`, `dx`,
    /// `grad.<tensor>`, … — module docs).
    pub name: String,
    /// Offset in the carry's bytes.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The sections of carry `k` (`0 ..= step_units`) of step `t` of `task`, with their
/// byte offsets; the last one ends at the carry's length. Errors on a task that cannot
/// run or a position outside the task.
pub fn carry_layout(task: &TrainTask, t: u64, k: u32) -> Result<Vec<CarrySection>, TaskError> {
    task.check_runnable()?;
    let units = step_units(task);
    if t >= task.steps || k > units {
        return Err(TaskError::UnitMismatch {
            step: t,
            unit: k,
            reason: format!(
                "the task has {} steps of {units} units (carries 0..={units})",
                task.steps
            ),
        });
    }
    let mut out = Vec::new();
    let mut offset = 0u128;
    let mut push = |name: String, len: u128| {
        out.push(CarrySection {
            name,
            offset: u64::try_from(offset).unwrap_or(u64::MAX),
            len: u64::try_from(len).unwrap_or(u64::MAX),
        });
        offset += len;
    };
    let inner = k != 0 && k != units;
    let state_step = if k == units { t + 1 } else { t };
    if inner {
        push("header".into(), CARRY_HEADER as u128);
    }
    push("state.header".into(), STATE_HEADER as u128);
    for (name, shape) in task.config.tensor_layout() {
        push(
            format!("param.{name}"),
            4 * shape.iter().map(|&x| x as u128).product::<u128>(),
        );
    }
    let p_bytes: u128 = 4 * task
        .config
        .tensor_layout()
        .iter()
        .map(|(_, s)| s.iter().map(|&x| x as u128).product::<u128>())
        .sum::<u128>();
    push(
        "state.moments".into(),
        p_bytes * u128::from(task.moment_buffers()),
    );
    push(
        "state.log".into(),
        u128::from(state_step) * LOG_ENTRY as u128,
    );
    if inner {
        for (name, n) in body_layout(task, k) {
            push(name, 4 * n);
        }
    }
    Ok(out)
}

/// Runs exactly unit `unit` of step `t` (0-based) of `task` on `carry`, which must be
/// that unit's input: carry `unit` of step `t`. Returns carry `unit + 1` (after the
/// last unit, the state after the step). `carry` is not modified.
pub fn run_unit(
    task: &TrainTask,
    t: u64,
    unit: u32,
    carry: &StepCarry,
) -> Result<StepCarry, TaskError> {
    advance(task, t, unit, carry.clone())
}

/// [`run_unit`], consuming the carry (no copy of the state and caches).
fn advance(task: &TrainTask, t: u64, unit: u32, carry: StepCarry) -> Result<StepCarry, TaskError> {
    task.check_runnable()?;
    let kind = unit_kind(task, unit).ok_or_else(|| TaskError::UnitMismatch {
        step: t,
        unit,
        reason: format!("a step has {} units", step_units(task)),
    })?;
    if t >= task.steps {
        return Err(TaskError::UnitMismatch {
            step: t,
            unit,
            reason: format!("the task has {} steps", task.steps),
        });
    }
    carry.check_at(task, t, unit)?;
    let batch = task.sample(t);
    let (mut state, work) = match carry.0 {
        Carry::Boundary(s) => (s, None),
        Carry::Inner(i) => (i.state, Some(i.work)),
    };
    let params: &GptParams<f32> = &state.params;
    params.check(&batch)?;
    let n = batch.batch * batch.seq;
    let shape = params.attn_shape(batch.batch, batch.seq);
    let inner = |work: Work, state: TrainState| {
        StepCarry(Carry::Inner(Box::new(Inner {
            step: t,
            done: unit + 1,
            state,
            work,
        })))
    };
    // `check_at` matched the work to the unit, so the `_` arms are unreachable.
    let mismatch = || TaskError::UnitMismatch {
        step: t,
        unit,
        reason: "the carry's phase does not fit the unit".into(),
    };
    let next = match (kind, work) {
        (Unit::Embed, None) => {
            let x = params.embed_forward(batch.batch, batch.seq, |b, p| batch.input(b, p));
            Work::Forward {
                blocks: Vec::new(),
                x,
            }
        }
        (Unit::BlockForward(l), Some(Work::Forward { mut blocks, mut x })) => {
            blocks.push(params.block_forward(l as usize, &mut x, shape));
            Work::Forward { blocks, x }
        }
        (Unit::Head, Some(Work::Forward { blocks, x })) => {
            let head = params.head_forward(&x, n);
            let (loss, dlogits) =
                ops::cross_entropy(&head.logits, &targets(&batch), n, task.config.vocab_size);
            Work::Head {
                loss,
                blocks,
                lnf: head.lnf,
                lnf_out: head.lnf_out,
                dlogits,
            }
        }
        (
            Unit::HeadBackward,
            Some(Work::Head {
                loss,
                blocks,
                lnf,
                lnf_out,
                dlogits,
            }),
        ) => {
            let mut grads = params.params.zeros_like();
            let dx = params.head_backward(&dlogits, &lnf_out, &lnf, n, &mut grads);
            Work::Backward {
                loss,
                blocks,
                dx,
                grads,
            }
        }
        (
            Unit::BlockBackward(l),
            Some(Work::Backward {
                loss,
                mut blocks,
                mut dx,
                mut grads,
            }),
        ) => {
            let cache = blocks.pop().ok_or_else(mismatch)?;
            params.block_backward(l as usize, &cache, &mut dx, &mut grads, shape);
            Work::Backward {
                loss,
                blocks,
                dx,
                grads,
            }
        }
        (
            Unit::EmbedBackward,
            Some(Work::Backward {
                loss,
                dx,
                mut grads,
                ..
            }),
        ) => {
            params.embed_backward(&batch, &dx, &mut grads);
            Work::Grads { loss, grads }
        }
        (Unit::Optimizer, Some(Work::Grads { loss, grads })) => {
            task.finish_step(t, &mut state, &batch, loss, &grads);
            return Ok(StepCarry::start(state));
        }
        _ => return Err(mismatch()),
    };
    Ok(inner(next, state))
}

/// Runs the whole step after `state_before` (step `t = state_before.step()`) unit by
/// unit. Returns the step's leaves — the hashes of carries `0 ..= step_units` (leaf 0
/// is `state_before.hash()`, the last the hash of the state after) — and the state
/// after the step, bit-identical to `task.run_steps(state_before, t..t + 1)`.
pub fn step_leaves(
    task: &TrainTask,
    state_before: &TrainState,
) -> Result<(Vec<Hash>, TrainState), TaskError> {
    let t = state_before.step();
    let units = step_units(task);
    let mut carry = StepCarry::start(state_before.clone());
    let mut leaves = Vec::with_capacity(units as usize + 1);
    leaves.push(carry.hash());
    for unit in 0..units {
        carry = advance(task, t, unit, carry)?;
        leaves.push(carry.hash());
    }
    Ok((leaves, carry.into_state()))
}

/// Carry `k` (`0 ..= step_units`) of the step after `state_before`, running units
/// `0 .. k` — what a party serves a referee who asks for the input of unit `k`.
pub fn carry_at(
    task: &TrainTask,
    state_before: &TrainState,
    k: u32,
) -> Result<StepCarry, TaskError> {
    let t = state_before.step();
    let units = step_units(task);
    if k > units {
        return Err(TaskError::UnitMismatch {
            step: t,
            unit: k,
            reason: format!("a step has carries 0..={units}"),
        });
    }
    let mut carry = StepCarry::start(state_before.clone());
    for unit in 0..k {
        carry = advance(task, t, unit, carry)?;
    }
    Ok(carry)
}

/// [`carry_at`]'s canonical bytes, for serving by hash.
pub fn carry_bytes_at(
    task: &TrainTask,
    state_before: &TrainState,
    k: u32,
) -> Result<Vec<u8>, TaskError> {
    Ok(carry_at(task, state_before, k)?.encode())
}

/// The referee's check of one unit: decodes the served input carry of unit `unit` of
/// step `t`, checks it is the agreed leaf `agreed_input`, runs the unit and returns
/// the hash of its output — to compare with the disputed leaf `unit + 1`.
pub fn reexecute_unit(
    task: &TrainTask,
    t: u64,
    unit: u32,
    input: &[u8],
    agreed_input: &Hash,
    limits: CarryLimits,
) -> Result<Hash, TaskError> {
    if hash_bytes(input) != *agreed_input {
        return Err(TaskError::UnitMismatch {
            step: t,
            unit,
            reason: "the served carry is not the agreed leaf".into(),
        });
    }
    let carry = StepCarry::decode(input, task, limits)?;
    Ok(advance(task, t, unit, carry)?.hash())
}

/// The unit a bisection over two parties' leaves of one step converges to: the first
/// `k` with `leaves[k + 1]` different while `leaves[k]` agrees. `None` if the leaf
/// lists agree, have different lengths, or already differ at leaf 0 (the step's input
/// state — a dispute for the step-level bisection).
pub fn disputed_unit(ours: &[Hash], theirs: &[Hash]) -> Option<u32> {
    if ours.len() != theirs.len() || ours.first() != theirs.first() {
        return None;
    }
    let k = (1..ours.len()).find(|&i| ours[i] != theirs[i])?;
    u32::try_from(k - 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::task::{Init, LrSchedule, TokenWidth};
    use crate::train::{AdamConfig, GptConfig, OptimizerConfig};

    fn tiny() -> TrainTask {
        TrainTask {
            config: GptConfig {
                n_layer: 2,
                n_head: 2,
                n_embd: 8,
                vocab_size: 256,
                n_positions: 8,
                layer_norm_epsilon: 1e-5,
            },
            optimizer: OptimizerConfig::Adam(AdamConfig::default()),
            schedule: LrSchedule::Constant,
            steps: 2,
            batch: 2,
            seq: 4,
            data_seed: 3,
            token_width: TokenWidth::U8,
            data: b"the quick brown fox jumps over the lazy dog".to_vec(),
        }
    }

    #[test]
    fn unit_kinds_cover_the_step_in_order() {
        let task = tiny();
        let kinds: Vec<Unit> = (0..step_units(&task))
            .map(|k| unit_kind(&task, k).expect("in range"))
            .collect();
        assert_eq!(
            kinds,
            vec![
                Unit::Embed,
                Unit::BlockForward(0),
                Unit::BlockForward(1),
                Unit::Head,
                Unit::HeadBackward,
                Unit::BlockBackward(1),
                Unit::BlockBackward(0),
                Unit::EmbedBackward,
                Unit::Optimizer,
            ]
        );
        assert_eq!(unit_kind(&task, step_units(&task)), None);
    }

    #[test]
    fn layout_matches_the_encoding() {
        let task = tiny();
        let s0 = task.initial_state(Init::Seed(1)).expect("state");
        for k in 0..=step_units(&task) {
            let bytes = carry_bytes_at(&task, &s0, k).expect("carry");
            let layout = carry_layout(&task, 0, k).expect("layout");
            let last = layout.last().expect("sections");
            assert_eq!(last.offset + last.len, bytes.len() as u64, "carry {k}");
        }
    }
}
