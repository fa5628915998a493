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

use agentic_protocol::state::{Job, Stage, StagePhase};
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Address, Hash, JobId, TxBody};

use crate::daemon::plan::{send, Action, Landed, Me, TxKey, View};
use crate::daemon::salt_for;

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

/// The cheat as a whole actor on a stage it holds (the daemon's planner calls this
/// instead of the honest [`crate::daemon`] stage planner): commit a copy of another
/// replica's commitment, then try — once — to reveal that replica's result.
pub(crate) fn plan_stage(
    view: &View<'_>,
    me: &Me,
    id: JobId,
    job: &Job,
    s: u32,
    out: &mut Vec<Action>,
) {
    let st = &job.stages[s as usize];
    let StagePhase::Running { reveal_deadline } = st.phase else {
        return;
    };
    let Some(a) = st
        .slots
        .iter()
        .filter_map(|x| x.assignment.as_ref())
        .find(|a| a.provider == me.address)
    else {
        return;
    };
    if a.commitment.is_none() {
        let Some(commitment) = commitment_to_copy(st, &me.address) else {
            return;
        };
        if view.height > a.deadline.0 {
            return;
        }
        send(
            view,
            out,
            TxKey::Commit(id, s),
            TxBody::CommitResult {
                job: id,
                stage: s,
                commitment,
            },
            Landed::CommittedCopy,
        );
        return;
    }
    if reveal_deadline.is_none()
        || a.result.is_some()
        || view.local.copy_attempted.contains(&(id, s))
    {
        return;
    }
    let Some(result) = result_to_copy(st, &me.address) else {
        return;
    };
    // The ledger refuses it (the commitment binds its author); the cheat then sits out
    // the reveal deadline.
    send(
        view,
        out,
        TxKey::Reveal(id, s),
        TxBody::RevealResult {
            job: id,
            stage: s,
            result,
            salt: salt_for(&me.salt_secret, id, s),
        },
        Landed::CopiedReveal(id, s),
    );
}
