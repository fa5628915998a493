//! Part 1b: a real training dispute — steps, then the units of one step.
//!
//! ```text
//!  tiny-gpt's shape (the shipped recipe), AdamW, the fables; a 4-step training stage
//!  cheater corrupts one value of the residual stream after unit `UNIT` of step `STEP`
//!    and trains on from there ─▶ Audited job: the drawn auditor trains honestly, disagrees
//!    ─▶ Bisect over the stage's 5 state hashes ─▶ StepRoots (both post their root over
//!       the isolated step's 2·n_layer + 6 carries, with the two proofs)
//!    ─▶ Bisect over that step's carries ─▶ the referee re-executes ONE unit of ONE step
//!       from the agreed carry (train::units::reexecute_unit, the validators' code) ─▶ slash
//!  referee_fraction = unit_ops / job ops;  wall time of that unit vs the whole stage's
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use agentic_compute::train::shipped::{Recipe, CORPUS};
use agentic_compute::train::task::{Init, LrSchedule, TokenWidth, TrainState, TrainTask};
use agentic_compute::train::trace::hash_bytes;
use agentic_compute::train::units::{
    carry_layout, reexecute_unit, run_unit, step_units, unit_kind, unit_ops, CarryLimits, StepCarry,
};
use agentic_compute::train::OptimizerConfig;
use agentic_protocol::referee::{Referee, RefereeError};
use agentic_protocol::state::DisputePhase;
use agentic_protocol::tx::StageSpec;
use agentic_protocol::{Event, Hash, Leaves};
use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

use super::{open_audited_dispute, Tag};
use agentic_protocol::test_utils::address_of;

/// Steps of the disputed training stage.
const STEPS: u64 = 4;
/// The step the cheater corrupts (0-based, within the stage).
const STEP: u64 = 2;
/// The unit after which it corrupts the carry: the first block's forward pass.
const UNIT: u32 = 1;
/// Bytes of the fables trained on.
const DATA: usize = 4_000;

/// The validators' referee for a training task: unit `step × units + unit` from the
/// agreed carry, fetched by hash from what the parties published.
struct UnitReferee<'a> {
    task: &'a TrainTask,
    task_hash: Hash,
    carries: HashMap<Hash, Vec<u8>>,
    /// `(flat unit index, unit ops, seconds)` of every re-execution.
    calls: RefCell<Vec<(u32, u64, f64)>>,
}

impl Referee for UnitReferee<'_> {
    fn execute_layer(&self, model: &Hash, layer: u32, input: &Hash) -> Result<Hash, RefereeError> {
        if *model != self.task_hash {
            return Err(RefereeError::ModelUnavailable);
        }
        let units = step_units(self.task);
        let (t, k) = (u64::from(layer / units), layer % units);
        let bytes = self
            .carries
            .get(input)
            .ok_or(RefereeError::InputUnavailable)?;
        let start = Instant::now();
        let out = reexecute_unit(self.task, t, k, bytes, input, CarryLimits::default())
            .map_err(|_| RefereeError::InputUnavailable)?;
        self.calls.borrow_mut().push((
            layer,
            unit_ops(self.task, k),
            start.elapsed().as_secs_f64(),
        ));
        Ok(out)
    }
}

/// One party's run of the stage: its state leaves, its unit leaves per step, the carries
/// of step [`STEP`] (what it publishes for the referee) and the wall time.
struct Party {
    states: Leaves,
    steps: Vec<Leaves>,
    carries: Vec<Vec<u8>>,
    seconds: f64,
}

/// Runs the stage unit by unit from `init`; `corrupt` flips one bit of the residual
/// stream in the carry after unit [`UNIT`] of step [`STEP`].
fn run_party(task: &TrainTask, init: &TrainState, corrupt: bool) -> anyhow::Result<Party> {
    let units = step_units(task);
    let start = Instant::now();
    let mut state = init.clone();
    let mut states = vec![state.hash()];
    let mut steps = Vec::new();
    let mut carries = Vec::new();
    for t in 0..STEPS {
        let mut carry = StepCarry::start(state);
        let mut leaves = vec![carry.hash()];
        if t == STEP {
            carries.push(carry.encode());
        }
        for u in 0..units {
            carry = run_unit(task, t, u, &carry)?;
            if corrupt && t == STEP && u == UNIT {
                let mut bytes = carry.encode();
                let x = carry_layout(task, t, u + 1)?
                    .into_iter()
                    .find(|s| s.name == "x")
                    .context("the carry after a block's forward holds x")?;
                bytes[x.offset as usize] ^= 1;
                carry = StepCarry::decode(&bytes, task, CarryLimits::default())?;
            }
            leaves.push(carry.hash());
            if t == STEP {
                carries.push(carry.encode());
            }
        }
        state = carry.into_state();
        states.push(state.hash());
        steps.push(Leaves::new(leaves));
    }
    Ok(Party {
        states: Leaves::new(states),
        steps,
        carries,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The task: tiny-gpt's shape and Adam settings from the shipped recipe, a constant rate.
fn task() -> TrainTask {
    let r = Recipe::shipped();
    TrainTask {
        config: r.config,
        optimizer: OptimizerConfig::Adam(r.adam),
        schedule: LrSchedule::Constant,
        steps: STEPS,
        batch: r.batch,
        seq: r.seq,
        data_seed: r.data_seed,
        token_width: TokenWidth::U8,
        data: CORPUS.as_bytes()[..DATA].to_vec(),
    }
}

/// The real training dispute's figures, as the report's `training_referee` object.
pub(super) fn training_dispute() -> anyhow::Result<Value> {
    let task = task();
    let units = step_units(&task);
    let init = task.initial_state(Init::Seed(Recipe::shipped().init_seed))?;
    let good = run_party(&task, &init, false)?;
    let bad = run_party(&task, &init, true)?;
    let task_hash = task.hash();
    let step_ops = task.step_ops();
    let job_ops = step_ops * STEPS;
    let carries = good
        .carries
        .iter()
        .chain(&bad.carries)
        .map(|b| (Hash(hash_bytes(b).0), b.clone()))
        .collect();
    let referee = UnitReferee {
        task: &task,
        task_hash,
        carries,
        calls: RefCell::new(Vec::new()),
    };
    let stage = StageSpec {
        first_layer: 0,
        layers: STEPS as u32,
        ops: job_ops,
        step_units: units,
        step_ops: 0,
        key_ops: 0,
    };
    let mut o = open_audited_dispute(
        &referee,
        task_hash,
        init.hash(),
        stage,
        (bad.states.result(), good.states.result()),
        7,
    )?;
    let dispute = o.dispute;
    let parties = [(&o.cheater, &bad), (&o.auditor, &good)];
    let (mut step_rounds, mut unit_rounds, mut step) = (0u32, 0u32, None);
    for _ in 0..64 {
        let d = o
            .ledger
            .state()
            .dispute(dispute)
            .context("the dispute")?
            .clone();
        // Each party plays the level the game is at: the per-step states until it
        // isolated a step, then that step's unit leaves.
        fn level(party: &Party, step: Option<u32>) -> &Leaves {
            match step {
                None => &party.states,
                Some(t) => &party.steps[t as usize],
            }
        }
        match d.phase {
            DisputePhase::Bisecting | DisputePhase::StepRoots => {
                for (key, party) in parties {
                    if let Some(tx) =
                        level(party, d.step).next_move(dispute, &d, address_of(key))?
                    {
                        o.ledger.push(key, tx, Tag::none());
                    }
                }
                match (d.phase, d.step) {
                    (DisputePhase::StepRoots, t) => step = t,
                    (_, None) => step_rounds += 1,
                    (_, Some(_)) => unit_rounds += 1,
                }
            }
            DisputePhase::AwaitingReferee => {}
            DisputePhase::Resolved => break,
        }
        let out = o.ledger.produce_ok(&referee)?;
        o.events.extend(out.events.into_iter().map(|e| e.event));
    }
    let d = o.ledger.state().dispute(dispute).context("the dispute")?;
    ensure!(
        d.phase == DisputePhase::Resolved,
        "the training dispute did not end"
    );
    ensure!(
        step == Some(STEP as u32),
        "the step-level game isolated step {step:?}, not {STEP}"
    );
    ensure!(
        d.game.lo() == UNIT,
        "the unit-level game isolated unit {}, not {UNIT}",
        d.game.lo()
    );
    let auditor = address_of(&o.auditor);
    let cheater = address_of(&o.cheater);
    let winner = o.events.iter().find_map(|e| match e {
        Event::DisputeResolved {
            dispute: x, winner, ..
        } if *x == dispute => Some(*winner),
        _ => None,
    });
    ensure!(
        winner == Some(Some(auditor)),
        "the training dispute ended {winner:?}, not with the auditor winning"
    );
    let slashed: u128 = o
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Slashed { who, amount, .. } if *who == cheater => Some(amount.0),
            _ => None,
        })
        .sum();
    ensure!(slashed > 0, "the training cheater was not slashed");
    let calls = referee.calls.into_inner();
    ensure!(
        calls.len() == 1,
        "the referee ran {} units, not one",
        calls.len()
    );
    let (index, ops, seconds) = calls[0];
    let carry_bytes: Vec<usize> = good.carries.iter().map(Vec::len).collect();
    Ok(json!({
        "what": "a training stage disputed on the real ledger: bisected over its state hashes, then over one step's unit carries; the referee re-executes one unit of one step (real compute)",
        "model": "tiny-gpt shape (shipped recipe), AdamW",
        "steps": STEPS,
        "step_units": units,
        "batch": task.batch,
        "seq": task.seq,
        "disputed_step": STEP,
        "disputed_unit": UNIT,
        "disputed_unit_kind": unit_kind(&task, UNIT).map(|u| format!("{u:?}")),
        "referee_index": index,
        "step_rounds": step_rounds,
        "unit_rounds": unit_rounds,
        "rounds": step_rounds + unit_rounds,
        "referee_units": calls.len(),
        "referee_ops": ops,
        "step_ops": step_ops,
        "job_ops": job_ops,
        "fraction": ops as f64 / job_ops as f64,
        "fraction_of_step": ops as f64 / step_ops as f64,
        "referee_seconds": seconds,
        "stage_seconds": good.seconds,
        "time_ratio": seconds / good.seconds.max(f64::MIN_POSITIVE),
        "carry_bytes_max": carry_bytes.iter().max(),
        "cheater_slashed": slashed as f64,
    }))
}
