//! [`cost`]: what a job costs, from the job record alone.
//!
//! The bill is exact because metering is: a replica slot whose revealed result
//! equals its stage's agreed result is paid `Amount::cost(stage ops, its
//! matched price)` = `ops × price / 10^6` (rounded down) when the stage is
//! finalized — the same formula the ledger applies when the challenge window
//! closes. What was locked is `State::escrow_for(&spec)`; what comes back when
//! the job ends is the rest.
//!
//! ```text
//!   locked  = Σ_stages ops × max_price × (replicas + [audited])   (at submission)
//!   paid    = Σ_finalized stages Σ_agreeing slots ops × slot price
//!   refund  = locked − paid                                        (once the job is settled)
//! ```
//!
//! A job is settled once it is no longer active and the ledger holds none of
//! its escrow. A failed job refunds in two steps: at failure everything but
//! what its delivered stages still being verified may pay (`JobFailed`), the
//! rest when the last of them settles (`JobSettled`) — its honest delivered
//! stages are still paid. Until then `refund` is `None` and `still_locked`
//! says what is held.
//!
//! Not visible in the job record: an auditor's fee (`ops × auditor price`,
//! paid from the escrow when an audit agrees) and the pay of a replica that
//! wins a dispute in a failed job. For such jobs `refund` over-states the
//! tokens returned by those amounts; `still_locked` is always the ledger's own
//! figure.

use agentic_protocol::state::{Job, JobStatus, StagePhase};
use agentic_protocol::{Address, Amount, State};
use serde::Serialize;

/// A job's bill (see the module docs); serializable for `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CostBreakdown {
    /// The job's status.
    pub status: JobStatus,
    /// Per stage, per replica.
    pub stages: Vec<StageCost>,
    /// Metered operations of the whole job (one replica).
    pub total_ops: u64,
    /// Paid to stage providers so far.
    pub paid: Amount,
    /// Escrow locked at submission (`State::escrow_for(&spec)`).
    pub locked: Amount,
    /// Escrow the ledger still holds for the job.
    pub still_locked: Amount,
    /// `locked − paid`, once the job is settled (not active, no escrow held).
    pub refund: Option<Amount>,
}

/// One stage's bill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageCost {
    /// The stage index.
    pub stage: u32,
    /// First layer.
    pub first_layer: u32,
    /// Number of layers.
    pub layers: u32,
    /// Metered operations.
    pub ops: u64,
    /// Where the stage is.
    pub phase: StagePhase,
    /// One entry per replica slot.
    pub slots: Vec<SlotCost>,
    /// Paid for this stage.
    pub paid: Amount,
}

/// One replica slot's bill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlotCost {
    /// The replica index.
    pub replica: u8,
    /// Its provider, once matched.
    pub provider: Option<Address>,
    /// The provider's price per mega-op when matched.
    pub price: Option<Amount>,
    /// What it earns by delivering the agreed result: `ops × price / 10^6`.
    pub bill: Option<Amount>,
    /// What it was paid (its bill once the stage is finalized and its result agreed).
    pub paid: Amount,
}

/// The bill of `job` (see the module docs).
pub fn cost(job: &Job) -> CostBreakdown {
    let mut stages = Vec::with_capacity(job.stages.len());
    let mut paid_total = Amount::ZERO;
    for (i, (st, spec)) in job.stages.iter().zip(&job.spec.stages).enumerate() {
        let finalized = st.phase == StagePhase::Finalized;
        let mut stage_paid = Amount::ZERO;
        let slots = st
            .slots
            .iter()
            .enumerate()
            .map(|(r, slot)| {
                let a = slot.assignment.as_ref();
                let bill = a.and_then(|a| Amount::cost(spec.ops, a.price));
                let agreed = match (a.and_then(|a| a.result), st.result) {
                    (Some(mine), Some(agreed)) => mine.output == agreed.output,
                    _ => false,
                };
                let paid = match bill {
                    Some(b) if finalized && agreed => b,
                    _ => Amount::ZERO,
                };
                stage_paid = Amount(stage_paid.0.saturating_add(paid.0));
                SlotCost {
                    replica: r as u8,
                    provider: a.map(|a| a.provider),
                    price: a.map(|a| a.price),
                    bill,
                    paid,
                }
            })
            .collect();
        paid_total = Amount(paid_total.0.saturating_add(stage_paid.0));
        stages.push(StageCost {
            stage: i as u32,
            first_layer: spec.first_layer,
            layers: spec.layers,
            ops: spec.ops,
            phase: st.phase,
            slots,
            paid: stage_paid,
        });
    }
    let locked = State::escrow_for(&job.spec).unwrap_or(Amount(u128::MAX));
    CostBreakdown {
        status: job.status,
        stages,
        total_ops: job
            .spec
            .stages
            .iter()
            .fold(0u64, |a, s| a.saturating_add(s.ops)),
        paid: paid_total,
        locked,
        still_locked: job.escrow,
        refund: (job.status != JobStatus::Active && job.escrow == Amount::ZERO)
            .then(|| locked.saturating_sub(paid_total)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_protocol::coord::Coord;
    use agentic_protocol::state::{Assignment, Slot, Stage};
    use agentic_protocol::tx::{JobSpec, Requirements, StageResult, StageSpec};
    use agentic_protocol::types::VerificationLevel;
    use agentic_protocol::{Hash, Height};

    fn result(output: u8) -> StageResult {
        StageResult {
            input: Hash([0; 32]),
            output: Hash([output; 32]),
            trace_root: Hash([output; 32]),
        }
    }

    fn slot(provider: u8, price: u128, revealed: Option<u8>) -> Slot {
        Slot {
            assignment: Some(Assignment {
                provider: Address([provider; 32]),
                price: Amount(price),
                deadline: Height(50),
                commitment: revealed.map(|_| Hash([9; 32])),
                result: revealed.map(result),
            }),
        }
    }

    /// Two stages, two replicas, max price 100: stage 0 finalized with one
    /// replica disagreeing, stage 1 still in its challenge window.
    fn job(status: JobStatus) -> Job {
        let spec = JobSpec {
            mandate: None,
            model: Hash([1; 32]),
            input: Hash([2; 32]),
            stages: vec![
                StageSpec {
                    first_layer: 0,
                    layers: 2,
                    ops: 3_000_000,
                    step_units: 0,
                },
                StageSpec {
                    first_layer: 2,
                    layers: 2,
                    ops: 1_500_000,
                    step_units: 0,
                },
            ],
            max_price: Amount(100),
            deadline: 10,
            requirements: Requirements {
                replicas: 2,
                verification: VerificationLevel::Optimistic,
                ..Requirements::default()
            },
            coord: Coord::ORIGIN,
            placement: vec![],
        };
        Job {
            requester: Address([7; 32]),
            payer: Address([7; 32]),
            spec,
            submitted_at: Height(1),
            escrow: Amount(0),
            status,
            stages: vec![
                Stage {
                    phase: StagePhase::Finalized,
                    slots: vec![slot(10, 40, Some(5)), slot(11, 60, Some(6))],
                    result: Some(result(5)),
                    audit: None,
                },
                Stage {
                    phase: StagePhase::Challengeable { until: Height(30) },
                    slots: vec![slot(12, 80, Some(8)), slot(13, 100, Some(8))],
                    result: Some(result(8)),
                    audit: None,
                },
            ],
            excluded: vec![],
            claim: None,
        }
    }

    #[test]
    fn pays_agreeing_slots_of_finalized_stages_only() {
        let mut j = job(JobStatus::Active);
        // locked = (3M × 100 + 1.5M × 100) / 10^6 × 2 replicas = 900.
        j.escrow = Amount(900 - 120);
        let c = cost(&j);
        assert_eq!(c.locked, Amount(900));
        assert_eq!(c.total_ops, 4_500_000);
        // Stage 0: replica 0 agreed (3M × 40 / 10^6 = 120), replica 1 did not.
        assert_eq!(c.stages[0].slots[0].bill, Some(Amount(120)));
        assert_eq!(c.stages[0].slots[0].paid, Amount(120));
        assert_eq!(c.stages[0].slots[1].bill, Some(Amount(180)));
        assert_eq!(c.stages[0].slots[1].paid, Amount::ZERO);
        // Stage 1 is not final: nothing paid yet, bills known.
        assert_eq!(c.stages[1].slots[0].bill, Some(Amount(120)));
        assert_eq!(c.stages[1].slots[1].bill, Some(Amount(150)));
        assert_eq!(c.stages[1].paid, Amount::ZERO);
        assert_eq!(c.paid, Amount(120));
        assert_eq!(c.still_locked, Amount(780));
        assert_eq!(c.refund, None);

        // Once stage 1 is final and the job completed: both replicas paid, the rest refunded.
        let mut j = job(JobStatus::Completed);
        j.stages[1].phase = StagePhase::Finalized;
        let c = cost(&j);
        assert_eq!(c.stages[1].paid, Amount(270));
        assert_eq!(c.paid, Amount(390));
        assert_eq!(c.refund, Some(Amount(510)));
        assert_eq!(c.still_locked, Amount::ZERO);
        // JSON for --json.
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["refund"], "510");
        assert_eq!(v["stages"][0]["slots"][0]["paid"], "120");
    }

    /// A failed job whose delivered stage is still in its challenge window holds
    /// that stage's bills: no refund figure until it settles.
    #[test]
    fn a_failed_job_settles_when_its_live_stages_do() {
        let mut j = job(JobStatus::Failed);
        j.escrow = Amount(270);
        let c = cost(&j);
        assert_eq!((c.refund, c.still_locked), (None, Amount(270)));
        // The live stage finalized: its replicas paid, the rest refunded.
        j.stages[1].phase = StagePhase::Finalized;
        j.escrow = Amount::ZERO;
        let c = cost(&j);
        assert_eq!(c.paid, Amount(390));
        assert_eq!(c.refund, Some(Amount(510)));
    }

    #[test]
    fn unmatched_slots_and_cancelled_jobs() {
        let mut j = job(JobStatus::Cancelled);
        for st in &mut j.stages {
            st.phase = StagePhase::Cancelled;
            st.result = None;
            st.slots[1].assignment = None;
        }
        let c = cost(&j);
        assert_eq!(c.paid, Amount::ZERO);
        assert_eq!(c.refund, Some(Amount(900)));
        assert_eq!(c.stages[0].slots[1].provider, None);
        assert_eq!(c.stages[0].slots[1].bill, None);
    }
}
