//! Misbehaving providers: named cheats, one small module each, and the stage execution
//! every daemon runs (honestly unless told otherwise).
//!
//! The verification layer (audits, challenges, the bisection game and the referee, the
//! commit-then-reveal rules, the pipeline chaining check) is only as good as the cheats
//! it is tested against. Each cheat here is a real, running provider daemon
//! (`agentic provider run --misbehave MODE`, [`crate::Config::misbehave`]) used by the
//! end-to-end tests (`tests/verify.rs`), the demo and benches:
//!
//! ```text
//!   mode           what it does                                   how it is caught
//!   ─────────────  ─────────────────────────────────────────────  ─────────────────────────────────────
//!   wrong-output   honest run, false final output (trace agrees   audit/challenge → bisection ends at the
//!                  except the last leaf)                          stage's last layer → referee → slashed
//!   perturb-ulp    +1 ulp on one element of a middle layer's      bisection ends at that layer → referee
//!                  output, then computes on from it
//!   smaller-model  runs the first and last layer of its range,    bisection ends at the first skipped
//!                  identity for the layers between                layer → referee
//!   random         no compute: random output of the right shape,  bisection ends at the first layer →
//!                  random trace leaves                            referee
//!   copy-replica   no compute: copies the other replica's         cannot open the copied commitment →
//!                  commitment, then tries to reveal its result    misses the reveal deadline → penalty
//!                                                                 (slashed in full if the stage is
//!                                                                 audited); its slot stays empty
//!   silent         like wrong-output, and never answers a round   loses the bisection by timeout
//!   collude        upstream: reveals a false output, pushes the   downstream: its reveal does not chain →
//!                  true activation; downstream: commits on the    slashed (chain broken); upstream: audit
//!                  pushed activation without checking it against  → bisection → referee → slashed
//!                  the chain's
//!   wrong-step     training: one bit flipped in the residual      audit → bisection over steps, then over
//!                  stream inside the middle step, trained on       the step's units → referee re-runs one
//!                  from there                                     unit of one step → slashed
//!   perturb-step   generation: one block's output rows negated    prefill audit → descent over steps, then
//!                  at one step, generated on from there            layers → referee re-runs that block at
//!                                                                 that step from the prefix rows → slashed
//!   lapse          generation: runs the session honestly, then     misses its commit deadline → miss
//!                  never commits (a stage that dies after the      penalty, excluded; the stage goes back
//!                  last token, or a requester's second identity    to matching and the replacement rebuilds
//!                  hoping to void the honest stages' pay)          it from the transcript: everyone else paid
//! ```
//!
//! The inference modes cheat on inference stages only (a training stage they hold is
//! trained honestly); `wrong-step` cheats on training stages only.
//!
//! A misbehaving daemon cheats only on the stages it holds. In every other role (an
//! audit, a dispute over someone else's result) it is honest, and it plays the
//! bisection game faithfully for the trace it committed to (except `silent`), so a
//! test exercises the verification layer, not a daemon that gives up.
//!
//! [`execute`] is the one stage execution: it walks the stage's layers one at a time
//! ([`agentic_compute::Model::run_layer_counted`]), letting the mode change what each
//! layer yields, and returns the claimed result, its trace leaves, and the output to
//! store (and to push, which differs for `collude`). [`activation_at`] replays the same
//! walk up to one leaf: what a party must publish for the referee. For training,
//! [`execute_steps`], [`state_at`], [`step_leaves`] and [`carry_bytes_at`] are the same
//! four things one level down: the stage's state hashes, the state before a disputed
//! step, that step's unit leaves, and the carry a referee needs.

pub mod collude;
pub mod copy_replica;
pub mod lapse;
pub mod perturb_step;
pub mod perturb_ulp;
pub mod random;
pub mod silent;
pub mod smaller_model;
pub mod wrong_output;
pub mod wrong_step;

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use agentic_compute::metering::OpCounter;
use agentic_compute::train::task::{TaskError, TrainState, TrainTask};
use agentic_compute::train::units;
use agentic_compute::{Activation, ComputeError, Model};
use agentic_protocol::leaves::result_of;
use agentic_protocol::tx::StageResult;
use agentic_protocol::Hash;

/// A named way of cheating (see the module docs). A daemon without one is honest.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Misbehaviour {
    /// Computes honestly, then claims a different final output ([`wrong_output`]).
    WrongOutput,
    /// One ulp off in one middle layer, computed on from there ([`perturb_ulp`]).
    PerturbUlp,
    /// Runs only the first and last layer of its range ([`smaller_model`]).
    SmallerModel,
    /// No compute: a random output and random trace leaves ([`random`]).
    Random,
    /// No compute: copies another replica's commitment ([`copy_replica`]).
    CopyReplica,
    /// Like `wrong-output`, and never answers a bisection round ([`silent`]).
    Silent,
    /// Breaks the pipeline chain with the provider of the next stage ([`collude`]).
    Collude,
    /// Training: one bit wrong inside the middle step ([`wrong_step`]).
    WrongStep,
    /// Generation: one block's rows negated at one step, generated on ([`perturb_step`]).
    PerturbStep,
    /// Generation: runs the session, then never commits its stage ([`lapse`]).
    Lapse,
}

/// A mode name that is not one of [`Misbehaviour::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown misbehaviour {given:?}: expected one of {known}")]
pub struct UnknownMisbehaviour {
    /// The name given.
    pub given: String,
    /// The known names, comma-separated.
    pub known: String,
}

impl Misbehaviour {
    /// Every mode.
    pub const ALL: &'static [Misbehaviour] = &[
        Misbehaviour::WrongOutput,
        Misbehaviour::PerturbUlp,
        Misbehaviour::SmallerModel,
        Misbehaviour::Random,
        Misbehaviour::CopyReplica,
        Misbehaviour::Silent,
        Misbehaviour::Collude,
        Misbehaviour::WrongStep,
        Misbehaviour::PerturbStep,
        Misbehaviour::Lapse,
    ];

    /// The mode's name (`wrong-output`, …), as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Misbehaviour::WrongOutput => "wrong-output",
            Misbehaviour::PerturbUlp => "perturb-ulp",
            Misbehaviour::SmallerModel => "smaller-model",
            Misbehaviour::Random => "random",
            Misbehaviour::CopyReplica => "copy-replica",
            Misbehaviour::Silent => "silent",
            Misbehaviour::Collude => "collude",
            Misbehaviour::WrongStep => "wrong-step",
            Misbehaviour::PerturbStep => "perturb-step",
            Misbehaviour::Lapse => "lapse",
        }
    }

    /// Whether it answers the bisection rounds of disputes over its own results.
    pub fn answers_disputes(self) -> bool {
        silent::answers_disputes(self)
    }

    /// Whether it computes the stages it holds at all (`copy-replica` does not).
    pub fn computes(self) -> bool {
        !copy_replica::is(self)
    }

    /// Whether it commits on an activation pushed to it without waiting for the chain
    /// to agree on the previous stage's output (`collude`).
    pub fn commits_on_pushed_input(self) -> bool {
        collude::commits_on_pushed_input(self)
    }
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Misbehaviour {
    type Err = UnknownMisbehaviour;
    fn from_str(s: &str) -> Result<Self, UnknownMisbehaviour> {
        Misbehaviour::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownMisbehaviour {
                given: s.to_string(),
                known: Misbehaviour::ALL
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// A stage's execution as this provider claims it.
#[derive(Clone, Debug)]
pub struct Execution {
    /// The result it commits to.
    pub result: StageResult,
    /// Its trace leaves: the input's hash, then each layer's output hash
    /// (`merkle::root(leaves) = result.trace_root`).
    pub leaves: Vec<Hash>,
    /// Operations metered while computing (less than declared for modes that skip work).
    pub ops: u64,
    /// The claimed output activation (hash `result.output`).
    pub output: Activation,
    /// What goes to the next stage's provider when it is not `output` (`collude`: the
    /// true output).
    pub pushed: Option<Activation>,
}

/// Runs layers `layers` of `model` on `input` as `mode` would (honestly for `None`).
/// `seed` feeds the modes that make things up (`random`), so a rerun claims the same.
pub fn execute(
    mode: Option<Misbehaviour>,
    model: &Model,
    layers: Range<usize>,
    input: Activation,
    seed: &[u8; 32],
) -> Result<Execution, ComputeError> {
    if mode == Some(Misbehaviour::Random) {
        return random::execute(model, layers, &input, seed);
    }
    let counter = OpCounter::new();
    let n = layers.len();
    let mut leaves = Vec::with_capacity(n + 1);
    leaves.push(digest(&input));
    let mut act = input;
    for j in 0..n {
        act = layer(mode, model, &layers, j, &act, &counter)?;
        leaves.push(digest(&act));
    }
    let (output, pushed) = match mode {
        Some(Misbehaviour::WrongOutput | Misbehaviour::Silent) => {
            (wrong_output::falsify(&act)?, None)
        }
        Some(Misbehaviour::Collude) => collude::claim_and_push(act)?,
        _ => (act, None),
    };
    if let Some(last) = leaves.last_mut() {
        *last = digest(&output);
    }
    Ok(Execution {
        result: result_of(&leaves),
        leaves,
        ops: counter.get(),
        output,
        pushed,
    })
}

/// The activation `mode` claims at trace leaf `leaf` (the input of layer
/// `layers.start + leaf`), recomputed from the stage's `input`: what a dispute party
/// publishes for the referee. `None` when the mode has no activation behind that leaf
/// (`random`'s made-up leaves).
pub fn activation_at(
    mode: Option<Misbehaviour>,
    model: &Model,
    layers: Range<usize>,
    input: Activation,
    leaf: usize,
) -> Result<Option<Activation>, ComputeError> {
    let n = layers.len();
    if leaf > n {
        return Err(ComputeError::LayerOutOfRange {
            layer: layers.start + leaf,
            layers: layers.end,
        });
    }
    if leaf == 0 {
        return Ok(Some(input));
    }
    if mode == Some(Misbehaviour::Random) {
        return Ok(None);
    }
    if leaf == n {
        return execute(mode, model, layers, input, &[0; 32]).map(|e| Some(e.output));
    }
    let counter = OpCounter::new();
    let mut act = input;
    for j in 0..leaf {
        act = layer(mode, model, &layers, j, &act, &counter)?;
    }
    Ok(Some(act))
}

/// The activation after the stage's `j`-th layer (absolute layer `layers.start + j`) as
/// `mode` claims it, from the claimed activation before it.
fn layer(
    mode: Option<Misbehaviour>,
    model: &Model,
    layers: &Range<usize>,
    j: usize,
    act: &Activation,
    counter: &OpCounter,
) -> Result<Activation, ComputeError> {
    let n = layers.len();
    let i = layers.start + j;
    match mode {
        Some(Misbehaviour::SmallerModel) if !smaller_model::runs(j, n) => Ok(act.clone()),
        Some(Misbehaviour::PerturbUlp) if j == perturb_ulp::layer(n) => {
            perturb_ulp::bump(&model.run_layer_counted(i, act, counter)?)
        }
        _ => model.run_layer_counted(i, act, counter),
    }
}

/// A training stage's execution as this provider claims it.
#[derive(Clone, Debug)]
pub struct TrainExecution {
    /// The result it commits to.
    pub result: StageResult,
    /// Its trace leaves: the input state's hash, then the hash of the state after each
    /// step (`merkle::root(leaves) = result.trace_root`).
    pub leaves: Vec<Hash>,
    /// Operations charged (`step_ops × steps`).
    pub ops: u64,
    /// The claimed output state (hash `result.output`).
    pub output: TrainState,
}

/// Whether `mode` corrupts step `t` of a stage over `steps`.
fn corrupts(mode: Option<Misbehaviour>, steps: &Range<u64>, t: u64) -> bool {
    let n = (steps.end - steps.start) as usize;
    mode == Some(Misbehaviour::WrongStep) && t == steps.start + wrong_step::step(n) as u64
}

/// Runs steps `steps` of `task` from `input` (the state before `steps.start`) as
/// `mode` would (honestly for `None` and for the inference-only modes).
pub fn execute_steps(
    mode: Option<Misbehaviour>,
    task: &TrainTask,
    input: &TrainState,
    steps: Range<u64>,
) -> Result<TrainExecution, TaskError> {
    let end = steps.end;
    execute_prefix(mode, task, input, &steps, end)
}

/// [`execute_steps`] over the first steps of a stage over `stage`, up to step `end`
/// (the cheat's position is the whole stage's).
fn execute_prefix(
    mode: Option<Misbehaviour>,
    task: &TrainTask,
    input: &TrainState,
    stage: &Range<u64>,
    end: u64,
) -> Result<TrainExecution, TaskError> {
    let (leaves, output, ops) = if mode == Some(Misbehaviour::WrongStep) {
        let mut leaves = vec![input.hash()];
        let mut state = input.clone();
        for t in stage.start..end {
            state = if corrupts(mode, stage, t) {
                wrong_step::run(task, &state)?.1
            } else {
                task.run_steps(&state, t..t + 1)?.state
            };
            leaves.push(state.hash());
        }
        let ops = task
            .step_ops()
            .saturating_mul(end.saturating_sub(stage.start));
        (leaves, state, ops)
    } else {
        let run = task.run_steps(input, stage.start..end)?;
        let leaves = run.states.clone();
        (leaves, run.state, run.ops)
    };
    Ok(TrainExecution {
        result: result_of(&leaves),
        leaves,
        ops,
        output,
    })
}

/// The state `mode` claims after the first `i` steps of a stage over `steps`, replayed
/// from the stage's `input`: the input of a disputed step.
pub fn state_at(
    mode: Option<Misbehaviour>,
    task: &TrainTask,
    input: &TrainState,
    steps: Range<u64>,
    i: u64,
) -> Result<TrainState, TaskError> {
    if i == 0 {
        return Ok(input.clone());
    }
    let end = steps.start.saturating_add(i);
    if end > steps.end {
        return Err(TaskError::StepRange {
            start: steps.start,
            end,
            reason: format!("the stage runs steps {}..{}", steps.start, steps.end),
        });
    }
    Ok(execute_prefix(mode, task, input, &steps, end)?.output)
}

/// The unit leaves (`step_units + 1` carry hashes) `mode` claims for the step after
/// `state_before` in a stage over `steps`.
pub fn step_leaves(
    mode: Option<Misbehaviour>,
    task: &TrainTask,
    steps: &Range<u64>,
    state_before: &TrainState,
) -> Result<Vec<Hash>, TaskError> {
    Ok(if corrupts(mode, steps, state_before.step()) {
        wrong_step::run(task, state_before)?.0
    } else {
        units::step_leaves(task, state_before)?.0
    })
}

/// Carry `k` of the step after `state_before` as `mode` claims it, as bytes: what a
/// party publishes for a referee who re-runs unit `k`.
pub fn carry_bytes_at(
    mode: Option<Misbehaviour>,
    task: &TrainTask,
    steps: &Range<u64>,
    state_before: &TrainState,
    k: u32,
) -> Result<Vec<u8>, TaskError> {
    if corrupts(mode, steps, state_before.step()) {
        wrong_step::carry_bytes(task, state_before, k)
    } else {
        units::carry_bytes_at(task, state_before, k)
    }
}

/// The ledger's hash of an activation.
pub fn digest(a: &Activation) -> Hash {
    a.hash()
}

/// `a` with its tensor's first element replaced by `f(x)` (the cheats' one-number
/// edits); an activation without elements is refused.
pub(crate) fn edit_first(
    a: &Activation,
    f: impl FnOnce(f32) -> f32,
) -> Result<Activation, ComputeError> {
    let mut data = a.tensor().data().to_vec();
    let Some(x) = data.first_mut() else {
        return Err(ComputeError::EmptyInput(
            "an activation without elements cannot be altered".into(),
        ));
    };
    *x = f(*x);
    Activation::from_parts(
        a.kind(),
        a.seq_lens().to_vec(),
        a.ids().to_vec(),
        a.rows(),
        a.width(),
        data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_compute::bundle::Bundle;
    use agentic_compute::registry::LoadedModel;

    fn tiny() -> (LoadedModel, Activation) {
        let m = Bundle::of("tiny-gpt").unwrap().load().unwrap();
        let x = m.encode(&["a cheat, caught"]).unwrap();
        (m, x)
    }

    #[test]
    fn names_round_trip_and_unknown_is_typed() {
        for &m in Misbehaviour::ALL {
            assert_eq!(m.name().parse::<Misbehaviour>(), Ok(m));
            assert_eq!(
                serde_json::to_value(m).unwrap(),
                serde_json::json!(m.name())
            );
            let v = <Misbehaviour as clap::ValueEnum>::to_possible_value(&m).unwrap();
            assert_eq!(v.get_name(), m.name());
        }
        let e = "lazy".parse::<Misbehaviour>().unwrap_err();
        assert_eq!(e.given, "lazy");
        assert!(e.known.contains("wrong-output") && e.known.contains("collude"));
    }

    /// Honest execution is `run_range`; each cheat's trace is consistent with its own
    /// claim and first differs from the honest one exactly where the module says.
    #[test]
    fn each_cheat_diverges_where_documented() {
        let (m, x) = tiny();
        let n = m.model.layers();
        let honest_run = m.model.run_range(0..n, x.clone()).unwrap();
        let honest = execute(None, &m.model, 0..n, x.clone(), &[0; 32]).unwrap();
        assert_eq!(honest.result.trace_root, honest_run.trace.root);
        assert_eq!(honest.output, honest_run.output);
        assert_eq!(honest.ops, honest_run.total_ops());
        let first_diff = |e: &Execution| {
            (0..=n)
                .find(|&i| e.leaves[i] != honest.leaves[i])
                .expect("a cheat differs somewhere")
        };
        for (mode, diverges_at) in [
            (Misbehaviour::WrongOutput, n),
            (Misbehaviour::Silent, n),
            (Misbehaviour::Collude, n),
            (Misbehaviour::PerturbUlp, perturb_ulp::layer(n) + 1),
            (Misbehaviour::SmallerModel, 2),
            (Misbehaviour::Random, 1),
        ] {
            let e = execute(Some(mode), &m.model, 0..n, x.clone(), &[7; 32]).unwrap();
            assert_eq!(e.leaves.len(), n + 1, "{mode}");
            assert_eq!(e.result, result_of(&e.leaves), "{mode}");
            assert_eq!(e.result.input, honest.result.input, "{mode}");
            assert_eq!(e.result.output, digest(&e.output), "{mode}");
            assert_ne!(e.result.output, honest.result.output, "{mode}");
            assert_eq!(first_diff(&e), diverges_at, "{mode}");
            // The shape of the claimed output is the honest one.
            assert_eq!(e.output.kind(), honest.output.kind(), "{mode}");
            assert_eq!(
                (e.output.rows(), e.output.width()),
                (honest.output.rows(), honest.output.width()),
                "{mode}"
            );
            // What a party publishes for the referee hashes to its own leaf.
            for leaf in 0..=n {
                match activation_at(Some(mode), &m.model, 0..n, x.clone(), leaf).unwrap() {
                    Some(a) => assert_eq!(digest(&a), e.leaves[leaf], "{mode} leaf {leaf}"),
                    None => assert!(mode == Misbehaviour::Random && leaf > 0),
                }
            }
        }
        // collude pushes the true output; the others push what they claim.
        let c = execute(
            Some(Misbehaviour::Collude),
            &m.model,
            0..n,
            x.clone(),
            &[0; 32],
        )
        .unwrap();
        assert_eq!(c.pushed.as_ref(), Some(&honest.output));
        // random does no compute and claims the same for the same seed.
        let r1 = execute(
            Some(Misbehaviour::Random),
            &m.model,
            0..n,
            x.clone(),
            &[1; 32],
        )
        .unwrap();
        let r2 = execute(
            Some(Misbehaviour::Random),
            &m.model,
            0..n,
            x.clone(),
            &[1; 32],
        )
        .unwrap();
        assert_eq!(r1.ops, 0);
        assert_eq!(r1.result, r2.result);
        // smaller-model runs two layers' worth of ops.
        let s = execute(
            Some(Misbehaviour::SmallerModel),
            &m.model,
            0..n,
            x,
            &[0; 32],
        )
        .unwrap();
        assert_eq!(
            s.ops,
            honest_run.ops[0] + honest_run.ops[n - 1],
            "only the first and last layer ran"
        );
    }

    fn tiny_task(steps: u64) -> TrainTask {
        use agentic_compute::train::task::{LrSchedule, TokenWidth};
        use agentic_compute::train::{AdamConfig, GptConfig, OptimizerConfig};
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
            steps,
            batch: 2,
            seq: 4,
            data_seed: 3,
            token_width: TokenWidth::U8,
            data: b"the quick brown fox jumps over the lazy dog".to_vec(),
        }
    }

    #[test]
    fn wrong_step_diverges_inside_its_step_and_replays_consistently() {
        use agentic_compute::train::task::Init;
        let task = tiny_task(5);
        let input = task.initial_state(Init::Seed(5)).unwrap();
        // A stage over steps 1..5: the corrupted step is 1 + 4/2 = 3.
        let steps = 1..5u64;
        let s1 = task.run_steps(&input, 0..1).unwrap().state;
        let honest = execute_steps(None, &task, &s1, steps.clone()).unwrap();
        let run = task.run_steps(&s1, steps.clone()).unwrap();
        assert_eq!(honest.result.trace_root, run.trace_root);
        assert_eq!(honest.output, run.state);
        // The inference-only modes train honestly.
        let wrong_output =
            execute_steps(Some(Misbehaviour::WrongOutput), &task, &s1, steps.clone()).unwrap();
        assert_eq!(wrong_output.result, honest.result);

        let cheat =
            execute_steps(Some(Misbehaviour::WrongStep), &task, &s1, steps.clone()).unwrap();
        assert_eq!(cheat.leaves.len(), 5);
        assert_eq!(cheat.result, result_of(&cheat.leaves));
        assert_eq!(cheat.ops, honest.ops);
        let at = wrong_step::step(4);
        assert_eq!(at, 2);
        // Agrees up to the state before the corrupted step, differs from after it on.
        assert_eq!(cheat.leaves[..=at], honest.leaves[..=at]);
        assert!((at + 1..5).all(|i| cheat.leaves[i] != honest.leaves[i]));
        assert_eq!(cheat.result.output, cheat.output.hash());

        // Replays give the same states; the disputed step's unit leaves agree up to
        // carry UNIT and differ from UNIT + 1 on, ending at the claimed state after it.
        for i in 0..=4u64 {
            let st = state_at(Some(Misbehaviour::WrongStep), &task, &s1, steps.clone(), i).unwrap();
            assert_eq!(st.hash(), cheat.leaves[i as usize], "state {i}");
        }
        assert!(state_at(None, &task, &s1, steps.clone(), 5).is_err());
        let before = state_at(None, &task, &s1, steps.clone(), at as u64).unwrap();
        let ours = step_leaves(None, &task, &steps, &before).unwrap();
        let theirs = step_leaves(Some(Misbehaviour::WrongStep), &task, &steps, &before).unwrap();
        let u = units::step_units(&task) as usize;
        assert_eq!((ours.len(), theirs.len()), (u + 1, u + 1));
        assert_eq!(ours[0], honest.leaves[at]);
        assert_eq!(theirs[0], honest.leaves[at]);
        assert_eq!(ours[u], honest.leaves[at + 1]);
        assert_eq!(theirs[u], cheat.leaves[at + 1]);
        let k = wrong_step::UNIT as usize;
        assert_eq!(ours[..=k], theirs[..=k]);
        assert!((k + 1..=u).all(|i| ours[i] != theirs[i]));
        assert_eq!(units::disputed_unit(&ours, &theirs), Some(wrong_step::UNIT));
        // The carries a party serves hash to its own leaves; the honest one is what the
        // referee re-runs the disputed unit from.
        for k in [0, wrong_step::UNIT, wrong_step::UNIT + 1, u as u32] {
            let c =
                carry_bytes_at(Some(Misbehaviour::WrongStep), &task, &steps, &before, k).unwrap();
            assert_eq!(
                *blake3::hash(&c).as_bytes(),
                theirs[k as usize].0,
                "carry {k}"
            );
            let h = carry_bytes_at(None, &task, &steps, &before, k).unwrap();
            assert_eq!(
                *blake3::hash(&h).as_bytes(),
                ours[k as usize].0,
                "carry {k}"
            );
        }
        let agreed = carry_bytes_at(None, &task, &steps, &before, wrong_step::UNIT).unwrap();
        let out = units::reexecute_unit(
            &task,
            before.step(),
            wrong_step::UNIT,
            &agreed,
            &ours[k],
            units::CarryLimits::default(),
        )
        .unwrap();
        assert_eq!(
            out.0,
            ours[k + 1].0,
            "the referee sides with the honest party"
        );
        assert_ne!(out.0, theirs[k + 1].0);
    }
}
