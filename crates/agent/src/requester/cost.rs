//! [`cost`]: what a job cost, as the ledger paid it.
//!
//! The ledger reports every token it moves for a job as an event: `StagePaid` for
//! each replica paid when its stage's challenge window closes (or when it wins a
//! dispute), `AuditAgreed` / `AuditPaid` for auditors' fees, `ProviderCompensated`
//! when nobody could fetch the job's data, and the refunds (`JobCompleted`,
//! `JobCancelled`, `JobFailed` then `JobSettled`, `DataUnavailable`, and
//! `PayerCompensated` from a cheater's slash), and what a broken generation session
//! burned of it (`SessionCharged`). [`cost`] adds those up; it never
//! recomputes a payment from prices. Beside each slot it shows the *bill* —
//! `Amount::cost(stage ops, matched price)`, what the slot earns by delivering the
//! agreed result — so a reader sees what was owed next to what was paid (the ledger
//! pays less when the escrow runs out).
//!
//! ```text
//!   locked   = State::escrow_for(&spec)                          (at submission)
//!   paid     = Σ StagePaid + Σ audit fees + Σ ProviderCompensated
//!   refunded = Σ refunds of JobCompleted/JobCancelled/JobFailed/JobSettled/DataUnavailable
//!   charged  = Σ SessionCharged (a broken session's bill, burned)
//!   settled ⇔ not active and no escrow held; then locked = paid + charged + refunded
//! ```
//!
//! [`crate::requester::Requester::bill`] reads the events from the node
//! (`/v1/events?from=` the job's submission height) and calls [`cost`].

use agentic_protocol::state::{Job, JobStatus, StagePhase};
use agentic_protocol::{Address, Amount, Event, State};
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
    /// Paid from the escrow so far: replicas, auditors, compensation.
    pub paid: Amount,
    /// Paid to providers whose data could not be fetched (`ProviderCompensated`).
    pub compensation: Amount,
    /// Escrow locked at submission (`State::escrow_for(&spec)`).
    pub locked: Amount,
    /// Escrow the ledger still holds for the job.
    pub still_locked: Amount,
    /// Burned from the escrow because the job's generation session broke
    /// (`SessionCharged`: its bill at the steps claimed, paid to nobody).
    pub charged: Amount,
    /// Returned to the payer from the escrow, once the job is settled (not active, no
    /// escrow held): then `locked = paid + charged + refund`.
    pub refund: Option<Amount>,
    /// Paid to the payer out of a cheater's slash (`PayerCompensated`), beyond the
    /// escrow.
    pub from_slash: Amount,
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
    /// Paid to this stage's replicas.
    pub paid: Amount,
    /// Paid to its auditor(s).
    pub audit_fees: Amount,
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
    /// What the ledger paid it (`StagePaid`).
    pub paid: Amount,
}

/// The bill of `job` from `events`, the ledger's events about it in order (see the
/// module docs; events about other jobs are ignored).
pub fn cost(job: &Job, job_id: agentic_protocol::JobId, events: &[Event]) -> CostBreakdown {
    let mine = || events.iter().filter(|e| e.job() == Some(job_id));
    let stage_paid_to = |stage: u32, who: &Address| {
        mine().fold(Amount::ZERO, |acc, e| match e {
            Event::StagePaid {
                stage: s,
                provider,
                amount,
                ..
            } if *s == stage && provider == who => acc.saturating_add(*amount),
            _ => acc,
        })
    };
    let mut stages = Vec::with_capacity(job.stages.len());
    let mut paid_total = Amount::ZERO;
    for (i, (st, spec)) in job.stages.iter().zip(&job.spec.stages).enumerate() {
        let stage = i as u32;
        let slots = st
            .slots
            .iter()
            .enumerate()
            .map(|(r, slot)| {
                let a = slot.assignment.as_ref();
                let paid = a.map_or(Amount::ZERO, |a| stage_paid_to(stage, &a.provider));
                SlotCost {
                    replica: r as u8,
                    provider: a.map(|a| a.provider),
                    price: a.map(|a| a.price),
                    bill: a.and_then(|a| Amount::cost(job.billed_ops(i), a.price)),
                    paid,
                }
            })
            .collect::<Vec<_>>();
        // Every `StagePaid` of the stage, slot or not: the ledger's figure.
        let all_paid = mine().fold(Amount::ZERO, |acc, e| match e {
            Event::StagePaid {
                stage: s, amount, ..
            } if *s == stage => acc.saturating_add(*amount),
            _ => acc,
        });
        let audit_fees = mine().fold(Amount::ZERO, |acc, e| match e {
            Event::AuditAgreed { stage: s, fee, .. } | Event::AuditPaid { stage: s, fee, .. }
                if *s == stage =>
            {
                acc.saturating_add(*fee)
            }
            _ => acc,
        });
        paid_total = paid_total
            .saturating_add(all_paid)
            .saturating_add(audit_fees);
        stages.push(StageCost {
            stage,
            first_layer: spec.first_layer,
            layers: spec.layers,
            ops: job.billed_ops(i),
            phase: st.phase,
            slots,
            paid: all_paid,
            audit_fees,
        });
    }
    let sum = |f: fn(&Event) -> Option<Amount>| {
        mine()
            .filter_map(f)
            .fold(Amount::ZERO, Amount::saturating_add)
    };
    let compensation = sum(|e| match e {
        Event::ProviderCompensated { amount, .. } => Some(*amount),
        _ => None,
    });
    let refunded = sum(|e| match e {
        Event::JobCompleted { refund, .. }
        | Event::JobCancelled { refund, .. }
        | Event::JobFailed { refund, .. }
        | Event::JobSettled { refund, .. }
        | Event::DataUnavailable { refund, .. } => Some(*refund),
        _ => None,
    });
    let from_slash = sum(|e| match e {
        Event::PayerCompensated { amount, .. } => Some(*amount),
        _ => None,
    });
    let charged = sum(|e| match e {
        Event::SessionCharged { burned, .. } => Some(*burned),
        _ => None,
    });
    let locked = State::escrow_for(&job.spec).unwrap_or(Amount(u128::MAX));
    let settled = job.status != JobStatus::Active && job.escrow == Amount::ZERO;
    CostBreakdown {
        status: job.status,
        stages,
        total_ops: job
            .spec
            .stages
            .iter()
            .fold(0u64, |a, s| a.saturating_add(s.ops)),
        paid: paid_total.saturating_add(compensation),
        compensation,
        locked,
        still_locked: job.escrow,
        charged,
        refund: settled.then_some(refunded),
        from_slash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_protocol::coord::Coord;
    use agentic_protocol::state::{Assignment, Slot, Stage};
    use agentic_protocol::tx::{JobSpec, Requirements, StageResult, StageSpec};
    use agentic_protocol::types::VerificationLevel;
    use agentic_protocol::{Hash, Height, JobId};

    fn result(output: u8) -> StageResult {
        StageResult {
            input: Hash([0; 32]),
            output: Hash([output; 32]),
            trace_root: Hash([output; 32]),
            steps: 0,
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
                input: None,
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
                    step_ops: 0,
                    key_ops: 0,
                },
                StageSpec {
                    first_layer: 2,
                    layers: 2,
                    ops: 1_500_000,
                    step_units: 0,
                    step_ops: 0,
                    key_ops: 0,
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
            generation: None,
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

    const ID: JobId = JobId(1);

    fn paid(stage: u32, provider: u8, amount: u128) -> Event {
        Event::StagePaid {
            job: ID,
            stage,
            provider: Address([provider; 32]),
            amount: Amount(amount),
        }
    }

    #[test]
    fn the_bill_is_what_the_ledger_paid() {
        let mut j = job(JobStatus::Active);
        // locked = (3M × 100 + 1.5M × 100) / 10^6 × 2 replicas = 900.
        j.escrow = Amount(900 - 120);
        let mut events = vec![
            paid(0, 10, 120),
            // Another job's payment is not this job's.
            Event::StagePaid {
                job: JobId(2),
                stage: 0,
                provider: Address([10; 32]),
                amount: Amount(999),
            },
        ];
        let c = cost(&j, ID, &events);
        assert_eq!(c.locked, Amount(900));
        assert_eq!(c.total_ops, 4_500_000);
        // Stage 0: replica 0 agreed and was paid its bill (3M × 40 / 10^6 = 120),
        // replica 1 did not agree and was paid nothing.
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

        // Stage 1 final, the job completed: both replicas paid, an auditor's fee,
        // the rest refunded — locked = paid + refund.
        let mut j = job(JobStatus::Completed);
        j.stages[1].phase = StagePhase::Finalized;
        events.extend([
            paid(1, 12, 120),
            paid(1, 13, 150),
            Event::AuditAgreed {
                job: ID,
                stage: 1,
                auditor: Address([14; 32]),
                fee: Amount(30),
            },
            Event::JobCompleted {
                job: ID,
                refund: Amount(480),
            },
        ]);
        let c = cost(&j, ID, &events);
        assert_eq!(c.stages[1].paid, Amount(270));
        assert_eq!(c.stages[1].audit_fees, Amount(30));
        assert_eq!(c.paid, Amount(420));
        assert_eq!(c.refund, Some(Amount(480)));
        assert_eq!(c.paid.0 + c.refund.unwrap().0, c.locked.0);
        // JSON for --json.
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["refund"], "480");
        assert_eq!(v["stages"][0]["slots"][0]["paid"], "120");
    }

    /// The ledger pays what is left when the escrow runs short: the bill shows what
    /// was owed, `paid` what arrived.
    #[test]
    fn a_short_payment_is_reported_as_paid_not_as_billed() {
        let j = job(JobStatus::Active);
        let c = cost(&j, ID, &[paid(0, 10, 70)]);
        assert_eq!(c.stages[0].slots[0].bill, Some(Amount(120)));
        assert_eq!(c.stages[0].slots[0].paid, Amount(70));
    }

    /// A failed job whose delivered stage is still in its challenge window holds
    /// that stage's bills: no refund figure until it settles.
    #[test]
    fn a_failed_job_settles_when_its_live_stages_do() {
        let mut j = job(JobStatus::Failed);
        j.escrow = Amount(270);
        let mut events = vec![
            paid(0, 10, 120),
            Event::JobFailed {
                job: ID,
                refund: Amount(510),
            },
        ];
        let c = cost(&j, ID, &events);
        assert_eq!((c.refund, c.still_locked), (None, Amount(270)));
        // The live stage finalized: its replicas paid, the rest refunded.
        j.stages[1].phase = StagePhase::Finalized;
        j.escrow = Amount::ZERO;
        events.extend([
            paid(1, 12, 120),
            paid(1, 13, 150),
            Event::JobSettled {
                job: ID,
                refund: Amount::ZERO,
            },
        ]);
        let c = cost(&j, ID, &events);
        assert_eq!(c.paid, Amount(390));
        assert_eq!(c.refund, Some(Amount(510)));
        assert_eq!(c.paid.0 + c.refund.unwrap().0, c.locked.0);
        assert_eq!(c.charged, Amount::ZERO);
    }

    #[test]
    fn a_broken_sessions_charge_is_neither_paid_nor_refunded() {
        let mut j = job(JobStatus::Failed);
        j.escrow = Amount::ZERO;
        j.stages[0].phase = StagePhase::Cancelled;
        j.stages[1].phase = StagePhase::Cancelled;
        let locked = State::escrow_for(&j.spec).unwrap();
        let events = vec![
            Event::SessionBroken { job: ID, stage: 1 },
            Event::SessionCharged {
                job: ID,
                steps: 4,
                burned: Amount(300),
            },
            Event::JobFailed {
                job: ID,
                refund: Amount(locked.0 - 300),
            },
        ];
        let c = cost(&j, ID, &events);
        assert_eq!(c.paid, Amount::ZERO);
        assert_eq!(c.charged, Amount(300));
        assert_eq!(c.refund, Some(Amount(locked.0 - 300)));
        assert_eq!(c.paid.0 + c.charged.0 + c.refund.unwrap().0, c.locked.0);
    }

    #[test]
    fn unmatched_slots_and_cancelled_jobs() {
        let mut j = job(JobStatus::Cancelled);
        for st in &mut j.stages {
            st.phase = StagePhase::Cancelled;
            st.result = None;
            st.slots[1].assignment = None;
        }
        let c = cost(
            &j,
            ID,
            &[Event::JobCancelled {
                job: ID,
                refund: Amount(900),
            }],
        );
        assert_eq!(c.paid, Amount::ZERO);
        assert_eq!(c.refund, Some(Amount(900)));
        assert_eq!(c.stages[0].slots[1].provider, None);
        assert_eq!(c.stages[0].slots[1].bill, None);
    }
}
