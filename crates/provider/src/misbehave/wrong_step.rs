//! `wrong-step`: a training stage with one bit wrong in the middle of one step.
//!
//! The stage runs its steps honestly except the middle one ([`step`]: position
//! `steps / 2` in the stage's range), which it runs unit by unit
//! ([`agentic_compute::train::units`]); after unit [`UNIT`] (the first block's
//! forward) it flips the lowest bit of the first element of the residual stream `x` in
//! the carry, and computes on from there: the rest of the step, and the steps after
//! it, run honestly on the corrupted values. Its trace (state hashes) and the step's
//! unit leaves are self-consistent, and every replay reproduces them.
//!
//! How it is caught: an audit recomputes the stage and disagrees from the state after
//! the corrupted step on; the step-level bisection ends at that step, both parties
//! post the step's unit leaves (`StepRoot`), the unit-level bisection ends at unit
//! [`UNIT`] (both agree on its input carry, not on its output), and the referee
//! re-runs that one unit from the served carry and gets the honest bits.

use agentic_compute::train::task::{TaskError, TrainState, TrainTask};
use agentic_compute::train::units::{self, CarryLimits, StepCarry};
use agentic_compute::train::Hash;

/// The position (0-based, within a stage of `n` steps) of the corrupted step.
pub fn step(n: usize) -> usize {
    n / 2
}

/// The unit after which the carry is corrupted (unit 1: block 0's forward; its output
/// carry holds the residual stream `x`).
pub const UNIT: u32 = 1;

/// Carry `k` of the corrupted step after `state_before`, and the leaves `0 ..= k`.
fn walk(
    task: &TrainTask,
    state_before: &TrainState,
    k: u32,
) -> Result<(StepCarry, Vec<Hash>), TaskError> {
    let t = state_before.step();
    let mut carry = StepCarry::start(state_before.clone());
    let mut leaves = vec![carry.hash()];
    for unit in 0..k {
        carry = units::run_unit(task, t, unit, &carry)?;
        if unit == UNIT {
            carry = corrupt(task, t, unit + 1, &carry)?;
        }
        leaves.push(carry.hash());
    }
    Ok((carry, leaves))
}

/// `carry` (carry `k` of step `t`) with the lowest bit of its residual stream's first
/// byte flipped.
fn corrupt(task: &TrainTask, t: u64, k: u32, carry: &StepCarry) -> Result<StepCarry, TaskError> {
    let layout = units::carry_layout(task, t, k)?;
    let x = layout
        .iter()
        .find(|s| s.name == "x" && s.len > 0)
        .ok_or_else(|| TaskError::Invalid(format!("carry {k} of step {t} holds no x")))?;
    let mut bytes = carry.encode();
    let at = usize::try_from(x.offset).map_err(|_| TaskError::Invalid("carry offset".into()))?;
    let b = bytes
        .get_mut(at)
        .ok_or_else(|| TaskError::Invalid("carry shorter than its layout".into()))?;
    *b ^= 1;
    StepCarry::decode(&bytes, task, CarryLimits::default())
}

/// The corrupted step after `state_before`: its unit leaves (`step_units + 1`) and
/// the state after it.
pub fn run(
    task: &TrainTask,
    state_before: &TrainState,
) -> Result<(Vec<Hash>, TrainState), TaskError> {
    let (carry, leaves) = walk(task, state_before, units::step_units(task))?;
    Ok((leaves, carry.into_state()))
}

/// Carry `k` of the corrupted step after `state_before`, as bytes.
pub fn carry_bytes(
    task: &TrainTask,
    state_before: &TrainState,
    k: u32,
) -> Result<Vec<u8>, TaskError> {
    Ok(walk(task, state_before, k)?.0.encode())
}
