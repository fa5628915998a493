//! `copy-replica`: free-riding on another replica.
//!
//! On a replicated stage the cheater computes nothing. It waits for another replica
//! to commit and posts a copy of that commitment as its own; once every replica has
//! committed and the other one reveals, it tries to reveal the same result. The
//! ledger refuses: a commitment binds the result, the salt *and the committing
//! provider's address* (`StageResult::commitment`), so a copied commitment opens for
//! nobody but its author. The cheater misses the reveal deadline and is penalized
//! `miss_penalty_ppm` of its stake (`slash_requester_ppm` of that to the payer), records
//! a failure, is excluded from the job, and its slot is matched again; the honest
//! replica and the replacement are paid. On a stage without another replica it never
//! commits and misses its commit deadline instead.

use agentic_protocol::state::Stage;
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Address, Hash};

use super::Misbehaviour;

/// Whether `mode` is this cheat.
pub fn is(mode: Misbehaviour) -> bool {
    mode == Misbehaviour::CopyReplica
}

/// Another replica's commitment to copy, once one is posted.
pub fn commitment_to_copy(stage: &Stage, me: &Address) -> Option<Hash> {
    stage
        .slots
        .iter()
        .filter_map(|s| s.assignment.as_ref())
        .filter(|a| a.provider != *me)
        .find_map(|a| a.commitment)
}

/// Another replica's revealed result to claim, once one is revealed.
pub fn result_to_copy(stage: &Stage, me: &Address) -> Option<StageResult> {
    stage
        .slots
        .iter()
        .filter_map(|s| s.assignment.as_ref())
        .filter(|a| a.provider != *me)
        .find_map(|a| a.result)
}
