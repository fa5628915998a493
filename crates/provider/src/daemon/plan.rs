//! The daemon's decisions, as one pure function: [`plan`].
//!
//! ```text
//!  tick:  observe (receipts of the transactions in flight, payments, the work, finished
//!         background tasks) ─▶ View ─▶ plan(view, me, actor) ─▶ [Action] ─▶ execute
//! ```
//!
//! [`plan`] reads a [`View`] — the chain as of this tick (the jobs and disputes this
//! provider has a part in), the journal, and what the daemon knows locally ([`Local`]:
//! finished and running computations, pushed inputs, transactions in flight, …) — and
//! returns the [`Action`]s to take, in order. It does no I/O, reads no clock (elapsed
//! times come in the view) and is tested on its own (the tests below), in the spirit
//! of malachite's effects: the executor ([`super::exec`]) performs the actions.
//!
//! Each role plans in its own module: [`super::stage::plan_stage`] (the replica slots
//! held), [`super::audit::plan_audit`], [`super::dispute::plan_dispute`] and
//! [`super::settle::plan_settlement`]. The [`Actor`] decides who plans the stages held:
//! the honest provider, or one of the cheats as a whole actor beside it
//! ([`crate::misbehave`]: `copy-replica` plans its own stages from others'
//! commitments; `silent` never moves in a dispute over its own result; `collude`
//! commits on the input pushed to it; the computing cheats compute under their mode).
//!
//! Transactions are sent without waiting for their receipts (pipelined nonces): an
//! action's [`TxKey`] stays in [`Local::pending`] until its receipt is read, so the
//! planner never sends the same thing twice, and what a landed transaction means for
//! the journal and the status ([`Landed`]) is recorded when its receipt says it applied.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use agentic_protocol::leaves::MoveError;
use agentic_protocol::state::{Dispute, Job};
use agentic_protocol::{Address, DisputeId, Hash, JobId, TxBody};

use super::settle::{plan_settlement, Settle};
use super::tasks::{Blob, Computed, StepWork};
use crate::journal::{Journal, Role};
use crate::misbehave::Misbehaviour;

/// Who this provider is: what it knows that nobody else does.
pub(crate) struct Me {
    /// Its address.
    pub(crate) address: Address,
    /// The secret its salts and cheat seeds derive from ([`super::salt_for`]).
    pub(crate) salt_secret: [u8; 32],
}

/// Who plans the stages this provider holds: the honest provider or a cheat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Actor {
    /// Computes, checks its input against the chain, commits, reveals, defends.
    Honest,
    /// A named cheat ([`crate::misbehave`]); honest in every role but the stages held.
    Cheat(Misbehaviour),
}

impl Actor {
    /// The actor a daemon configured with `misbehave` runs.
    pub(crate) fn new(misbehave: Option<Misbehaviour>) -> Actor {
        misbehave.map_or(Actor::Honest, Actor::Cheat)
    }

    /// The mode its own stages are computed (and replayed) under.
    pub(crate) fn mode(self) -> Option<Misbehaviour> {
        match self {
            Actor::Honest => None,
            Actor::Cheat(m) => Some(m),
        }
    }
}

/// Failed fetches in a row of a stage's data, as the executor counted them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Missing {
    /// Which blob failed last.
    pub(crate) what: Blob,
    /// Failures in a row.
    pub(crate) failures: u32,
    /// Time since the first of them.
    pub(crate) waited: Duration,
    /// The last failure was collected this tick (the computation is not retried in the
    /// tick that saw it fail).
    pub(crate) fresh: bool,
}

/// What the daemon knows locally, besides the journal.
#[derive(Default)]
pub(crate) struct Local {
    /// Stages (held or audited) being computed in the background.
    pub(crate) running: BTreeSet<(JobId, u32)>,
    /// Finished computations, not yet journaled.
    pub(crate) computed: BTreeMap<(JobId, u32), Computed>,
    /// Failed fetches of a stage's data, by stage.
    pub(crate) missing: BTreeMap<(JobId, u32), Missing>,
    /// Inputs pushed to us by the previous stage's providers (by hash).
    pub(crate) inbox: BTreeMap<(JobId, u32), Hash>,
    /// Jobs whose data this daemon claimed unavailable (at most once each).
    pub(crate) claimed: BTreeSet<JobId>,
    /// Outputs pushed: (job, next stage, provider, output).
    pub(crate) pushed: BTreeSet<(JobId, u32, Address, Hash)>,
    /// Transactions sent whose receipts are not read yet.
    pub(crate) pending: BTreeSet<TxKey>,
    /// Stages whose copied result a `copy-replica` daemon already tried to reveal.
    pub(crate) copy_attempted: BTreeSet<(JobId, u32)>,
    /// Agreed activations (or carries) whose provision ended: made available, or not
    /// ours to provide.
    pub(crate) provided: BTreeSet<(DisputeId, Hash)>,
    /// Agreed activations being replayed.
    pub(crate) providing: BTreeSet<(DisputeId, Hash)>,
    /// Training disputes whose step this party replayed.
    pub(crate) step_work: BTreeMap<DisputeId, Arc<StepWork>>,
    /// Training disputes whose step is being replayed.
    pub(crate) step_replaying: BTreeSet<DisputeId>,
    /// Stages our generation sessions saw drop out: (job, stage, the provider blamed).
    pub(crate) faults: Vec<(JobId, u32, Address)>,
}

/// The chain and the journal as of this tick, and the local facts.
pub(crate) struct View<'a> {
    /// The finalized height the work was read at.
    pub(crate) height: u64,
    /// The jobs where this provider holds a slot or an audit (the work), in id order.
    pub(crate) work: &'a [JobId],
    /// The open disputes this provider is a party to.
    pub(crate) disputes: &'a [(DisputeId, Dispute)],
    /// Every job a decision may read: the work's, the disputes', the unpaid records'.
    pub(crate) jobs: &'a BTreeMap<JobId, Job>,
    /// What this provider computed, committed and was paid.
    pub(crate) journal: &'a Journal,
    /// The local facts.
    pub(crate) local: &'a Local,
}

/// What a transaction in flight is for: one at a time per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TxKey {
    /// `CommitResult` on a stage held.
    Commit(JobId, u32),
    /// `RevealResult` on a stage held.
    Reveal(JobId, u32),
    /// `AuditCommit` on a stage audited.
    AuditCommit(JobId, u32),
    /// `AuditReport` on a stage audited.
    AuditReport(JobId, u32),
    /// `ClaimUnavailable` on a job.
    Claim(JobId),
    /// `ReplaceStage` on a stage of a generation session this provider takes part in.
    Replace(JobId, u32),
    /// A move (`Bisect`, `StepRoot`) in a dispute.
    Move(DisputeId),
    /// `UpdateProvider`.
    Offer,
    /// A transfer to itself that fills a nonce left unused by a rejected transaction.
    Filler(u64),
}

/// What a transaction means once the ledger applied it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Landed {
    /// A stage's commitment: the journal notes it; counted.
    Committed(JobId, u32),
    /// A copied commitment (`copy-replica`): counted only.
    CommittedCopy,
    /// A copied reveal (`copy-replica`; the ledger refuses it): tried once, noted when
    /// sent.
    CopiedReveal(JobId, u32),
    /// A stage's reveal: the journal notes it.
    Revealed(JobId, u32),
    /// An audit's commitment: the journal notes it; counted.
    AuditCommitted(JobId, u32),
    /// An audit's report: the journal notes it; counted.
    AuditReported(JobId, u32),
    /// An availability claim: counted.
    Claimed,
    /// A bisection move: counted.
    Moved,
    /// A step root: counted.
    StepRootPosted,
    /// The offer was updated: counted.
    OfferUpdated,
    /// Nothing to record.
    Nothing,
}

/// Something the planner found wrong that no action can fix this tick (reported in the
/// status; the next tick looks again).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stuck {
    /// The chain holds our commitment to a stage but the journal has no result to
    /// reveal.
    #[error("committed to job {job} stage {stage} but the journal has no result")]
    NotJournaled {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
    },
    /// The model or input of a stage held could not be fetched (not claimed
    /// unavailable: not yet, not the job's own data, or claimed already).
    #[error("job {job} stage {stage}: cannot fetch the {what} ({tries} tries)")]
    Unfetchable {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// `model` or `input`.
        what: &'static str,
        /// Failed fetches in a row.
        tries: u32,
    },
    /// This provider is the stage's auditor in `Auditing` but its journal holds no
    /// committed audit result to report.
    #[error("auditing job {job} stage {stage} but the journal holds no committed audit result")]
    AuditNotJournaled {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
    },
    /// An audit's computation ran on another input than the stage's agreed one (it is
    /// discarded and recomputed).
    #[error(
        "audit of job {job} stage {stage} ran on {ran_on} instead of the agreed input {agreed}"
    )]
    AuditInput {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// The input it ran on.
        ran_on: Hash,
        /// The agreed input.
        agreed: Hash,
    },
    /// An audited stage's model or input could not be fetched (only a replica may
    /// claim it unavailable).
    #[error("audit of job {job} stage {stage}: cannot fetch the {what}")]
    AuditUnfetchable {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// `model` or `input`.
        what: &'static str,
    },
    /// A dispute names this provider but its journal has no record of the stage.
    #[error("no record of job {job} stage {stage}: nothing to defend")]
    NothingToDefend {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
    },
    /// The journal holds no trace with the root this party posted.
    #[error("the journal holds no trace with root {root:?} for job {job} stage {stage}")]
    NoTrace {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// This party's root on chain (`None`: not a party).
        root: Option<Hash>,
    },
    /// This party's next move could not be built from its leaves.
    #[error("dispute {dispute} step {step:?}: {source}")]
    Move {
        /// The dispute.
        dispute: DisputeId,
        /// The disputed step (training disputes at the unit level).
        step: Option<u32>,
        /// Why.
        source: MoveError,
    },
}

/// What the subject of an action is: an action failing stops the actions after it on
/// the same subject for this tick (a reveal is not sent when its output could not be
/// published).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Subject {
    /// A stage of a job (held or audited), or the job (a claim).
    Stage(JobId, u32),
    /// A dispute.
    Dispute(DisputeId),
    /// Settlement.
    Settlement,
}

/// One thing to do, decided by [`plan`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Start computing a stage (held or audited) from `input` in the background, under
    /// `mode` (a cheat's, on a stage it holds; `None` otherwise).
    Compute {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// The input.
        input: Hash,
        /// The mode.
        mode: Option<Misbehaviour>,
    },
    /// Forget a finished computation and the pushed input it ran on (the chain agreed
    /// on another input).
    Discard {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
    },
    /// Journal the finished computation of a stage as this provider's result.
    Journal {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// As a replica or as the auditor.
        role: Role,
        /// The mode it was computed under.
        misbehaviour: Option<Misbehaviour>,
    },
    /// Push `output` of `stage` to these providers of `stage + 1`.
    Push {
        /// The job.
        job: JobId,
        /// The stage whose output it is.
        stage: u32,
        /// The output's hash.
        output: Hash,
        /// The next stage's providers that have not committed.
        to: Vec<Address>,
    },
    /// Upload the journaled output of a stage to the node's blob store.
    Publish {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
    },
    /// Send a transaction (without waiting for it).
    Send {
        /// What it is for.
        key: TxKey,
        /// The body.
        body: TxBody,
        /// What it means once applied.
        landed: Landed,
    },
    /// Make a dispute's agreed activation available to the referee: upload it, or
    /// replay this party's computation up to it first.
    Provide {
        /// The dispute.
        dispute: DisputeId,
    },
    /// Replay a training dispute's stage to the state before its step.
    ReplayStep {
        /// The dispute.
        dispute: DisputeId,
    },
    /// Make the carry entering a training dispute's unit `lo` available to the referee.
    ProvideCarry {
        /// The dispute.
        dispute: DisputeId,
    },
    /// Record what an ended stage or audit earned (and catch up with the chain).
    Settle(Settle),
    /// Report what cannot be acted on.
    Stuck(Stuck),
}

impl Action {
    /// What the action is about (for [`Subject`]'s rule).
    pub(crate) fn subject(&self) -> Subject {
        match self {
            Action::Compute { job, stage, .. }
            | Action::Discard { job, stage }
            | Action::Journal { job, stage, .. }
            | Action::Push { job, stage, .. }
            | Action::Publish { job, stage } => Subject::Stage(*job, *stage),
            Action::Send { key, .. } => match *key {
                TxKey::Commit(j, s)
                | TxKey::Reveal(j, s)
                | TxKey::AuditCommit(j, s)
                | TxKey::AuditReport(j, s)
                | TxKey::Replace(j, s) => Subject::Stage(j, s),
                TxKey::Claim(j) => Subject::Stage(j, u32::MAX),
                TxKey::Move(d) => Subject::Dispute(d),
                TxKey::Offer | TxKey::Filler(_) => Subject::Settlement,
            },
            Action::Provide { dispute }
            | Action::ReplayStep { dispute }
            | Action::ProvideCarry { dispute } => Subject::Dispute(*dispute),
            Action::Settle(_) => Subject::Settlement,
            Action::Stuck(_) => Subject::Settlement,
        }
    }
}

/// Everything this provider should do this tick, in order: per job of the work, per
/// stage, the stage held then the audit; then each open dispute; then settlement.
pub(crate) fn plan(view: &View<'_>, me: &Me, actor: Actor) -> Vec<Action> {
    let mut out = Vec::new();
    for id in view.work {
        let Some(job) = view.jobs.get(id) else {
            continue;
        };
        for s in 0..job.stages.len() as u32 {
            match actor {
                Actor::Cheat(m) if !m.computes() => {
                    crate::misbehave::copy_replica::plan_stage(view, me, *id, job, s, &mut out)
                }
                _ => super::stage::plan_stage(view, me, actor, *id, job, s, &mut out),
            }
            super::audit::plan_audit(view, me, *id, job, s, &mut out);
        }
    }
    super::generation::plan_replacements(view, &mut out);
    for (id, d) in view.disputes {
        super::dispute::plan_dispute(view, me, actor, *id, d, &mut out);
    }
    let unpaid: Vec<_> = view
        .journal
        .records()
        .filter(|r| r.paid.is_none())
        .cloned()
        .collect();
    out.extend(
        plan_settlement(
            &me.address,
            &unpaid,
            view.jobs,
            view.journal.events_height(),
            view.height,
        )
        .into_iter()
        .map(Action::Settle),
    );
    out
}

/// Queues `body` under `key` unless a transaction with that key is in flight.
pub(crate) fn send(
    view: &View<'_>,
    out: &mut Vec<Action>,
    key: TxKey,
    body: TxBody,
    landed: Landed,
) {
    if !view.local.pending.contains(&key) {
        out.push(Action::Send { key, body, landed });
    }
}

#[cfg(test)]
mod tests {
    use agentic_protocol::bisection::Bisection;
    use agentic_protocol::state::{
        Assignment, AuditSlot, DisputeKind, DisputePhase, JobStatus, Slot, Stage, StagePhase,
    };
    use agentic_protocol::test_utils::{address_of, job_spec, key};
    use agentic_protocol::tx::StageResult;
    use agentic_protocol::types::VerificationLevel;
    use agentic_protocol::{Amount, Height, Leaves};

    use super::*;
    use crate::daemon::salt_for;
    use crate::journal::StageRecord;

    const JOB: JobId = JobId(7);
    const HEIGHT: u64 = 20;

    fn me() -> Me {
        Me {
            address: address_of(&key(1)),
            salt_secret: [3; 32],
        }
    }

    fn other() -> Address {
        address_of(&key(2))
    }

    fn input() -> Hash {
        Hash([2; 32])
    }

    fn result(input: Hash) -> StageResult {
        StageResult {
            input,
            output: Hash([5; 32]),
            trace_root: Hash([6; 32]),
            steps: 0,
        }
    }

    fn computed(input: Hash) -> Computed {
        Computed {
            result: result(input),
            leaves: vec![Hash([8; 32]); 3],
            ops: 1_000,
            pushed: Hash([5; 32]),
        }
    }

    fn assignment(provider: Address) -> Assignment {
        Assignment {
            provider,
            price: Amount(10),
            deadline: Height(50),
            commitment: None,
            result: None,
            input: None,
        }
    }

    /// A one-stage job (input [`input`]) running with `slots` as its replicas.
    fn job(slots: Vec<Assignment>) -> Job {
        Job {
            requester: other(),
            payer: other(),
            spec: job_spec(
                Hash([1; 32]),
                input(),
                &[(2, 1_000_000)],
                1_000,
                VerificationLevel::Optimistic,
            ),
            submitted_at: Height(1),
            escrow: Amount(1_000),
            status: JobStatus::Active,
            stages: vec![Stage {
                phase: StagePhase::Running {
                    reveal_deadline: None,
                },
                slots: slots
                    .into_iter()
                    .map(|a| Slot {
                        assignment: Some(a),
                    })
                    .collect(),
                result: None,
                audit: None,
            }],
            excluded: Vec::new(),
            claim: None,
        }
    }

    /// An empty journal in a fresh directory.
    fn journal(name: &str) -> Journal {
        let dir = std::env::temp_dir().join(format!("agentic-plan-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Journal::open(dir.join("journal.json")).unwrap()
    }

    /// What `actor` plans for `job` (as this provider's work), `disputes`, `journal` and
    /// `local`.
    fn plan_for(
        actor: Actor,
        job: Job,
        disputes: &[(DisputeId, Dispute)],
        journal: &Journal,
        local: &Local,
    ) -> Vec<Action> {
        let jobs = BTreeMap::from([(JOB, job)]);
        let view = View {
            height: HEIGHT,
            work: &[JOB],
            disputes,
            jobs: &jobs,
            journal,
            local,
        };
        plan(&view, &me(), actor)
    }

    fn commit_of(input: Hash) -> Action {
        let salt = salt_for(&me().salt_secret, JOB, 0);
        Action::Send {
            key: TxKey::Commit(JOB, 0),
            body: TxBody::CommitResult {
                job: JOB,
                stage: 0,
                commitment: result(input).commitment(JOB, 0, &salt, &me().address),
            },
            landed: Landed::Committed(JOB, 0),
        }
    }

    #[test]
    fn a_stage_held_is_computed_from_the_agreed_input_then_journaled_and_committed() {
        let j = journal("compute");
        let job = job(vec![assignment(me().address)]);
        let mut local = Local::default();
        assert_eq!(
            plan_for(Actor::Honest, job.clone(), &[], &j, &local),
            vec![Action::Compute {
                job: JOB,
                stage: 0,
                input: input(),
                mode: None
            }]
        );
        local.running.insert((JOB, 0));
        assert!(plan_for(Actor::Honest, job.clone(), &[], &j, &local).is_empty());
        local.running.clear();
        local.computed.insert((JOB, 0), computed(input()));
        assert_eq!(
            plan_for(Actor::Honest, job, &[], &j, &local),
            vec![
                Action::Journal {
                    job: JOB,
                    stage: 0,
                    role: Role::Stage,
                    misbehaviour: None
                },
                commit_of(input()),
            ]
        );
    }

    #[test]
    fn a_transaction_in_flight_is_not_sent_again() {
        let mut j = journal("pending");
        j.put(StageRecord::new(
            JOB,
            0,
            Role::Stage,
            result(input()),
            Vec::new(),
            1_000,
        ))
        .unwrap();
        let job = job(vec![assignment(me().address)]);
        let mut local = Local::default();
        // Journaled but the commitment is not on chain: (re)commit…
        assert_eq!(
            plan_for(Actor::Honest, job.clone(), &[], &j, &local),
            vec![commit_of(input())]
        );
        // …unless it is in flight.
        local.pending.insert(TxKey::Commit(JOB, 0));
        assert!(plan_for(Actor::Honest, job, &[], &j, &local).is_empty());
    }

    #[test]
    fn a_stage_past_its_deadline_is_left_alone() {
        let j = journal("deadline");
        let mut a = assignment(me().address);
        a.deadline = Height(HEIGHT - 1);
        assert!(plan_for(Actor::Honest, job(vec![a]), &[], &j, &Local::default()).is_empty());
    }

    #[test]
    fn a_reveal_publishes_the_output_first() {
        let mut j = journal("reveal");
        let mut rec = StageRecord::new(JOB, 0, Role::Stage, result(input()), Vec::new(), 1);
        rec.committed = true;
        j.put(rec).unwrap();
        let mut a = assignment(me().address);
        a.commitment = Some(Hash([9; 32]));
        let mut job = job(vec![a]);
        job.stages[0].phase = StagePhase::Running {
            reveal_deadline: Some(Height(60)),
        };
        let reveal = Action::Send {
            key: TxKey::Reveal(JOB, 0),
            body: TxBody::RevealResult {
                job: JOB,
                stage: 0,
                result: result(input()),
                salt: salt_for(&me().salt_secret, JOB, 0),
            },
            landed: Landed::Revealed(JOB, 0),
        };
        assert_eq!(
            plan_for(Actor::Honest, job.clone(), &[], &j, &Local::default()),
            vec![Action::Publish { job: JOB, stage: 0 }, reveal.clone()]
        );
        j.update(JOB, 0, |r| r.published = true).unwrap();
        assert_eq!(
            plan_for(Actor::Honest, job.clone(), &[], &j, &Local::default()),
            vec![reveal]
        );
        // Committed on chain with no record: nothing to reveal.
        let empty = journal("reveal-empty");
        assert_eq!(
            plan_for(Actor::Honest, job, &[], &empty, &Local::default()),
            vec![Action::Stuck(Stuck::NotJournaled { job: JOB, stage: 0 })]
        );
    }

    #[test]
    fn missing_data_is_claimed_once_retries_and_patience_run_out() {
        let j = journal("claim");
        let job = job(vec![assignment(me().address)]);
        let missing = |failures, secs| Missing {
            what: Blob::Model,
            failures,
            waited: Duration::from_secs(secs),
            fresh: true,
        };
        let mut local = Local::default();
        local.missing.insert((JOB, 0), missing(2, 10));
        assert_eq!(
            plan_for(Actor::Honest, job.clone(), &[], &j, &local),
            vec![Action::Stuck(Stuck::Unfetchable {
                job: JOB,
                stage: 0,
                what: "model",
                tries: 2
            })]
        );
        local.missing.insert((JOB, 0), missing(5, 10));
        assert_eq!(
            plan_for(Actor::Honest, job.clone(), &[], &j, &local),
            vec![Action::Send {
                key: TxKey::Claim(JOB),
                body: TxBody::ClaimUnavailable { job: JOB },
                landed: Landed::Claimed
            }]
        );
        // Once claimed, never again.
        local.claimed.insert(JOB);
        assert!(matches!(
            plan_for(Actor::Honest, job.clone(), &[], &j, &local)[..],
            [Action::Stuck(Stuck::Unfetchable { .. })]
        ));
        // A failure seen on an earlier tick: compute again.
        local.missing.get_mut(&(JOB, 0)).unwrap().fresh = false;
        assert!(matches!(
            plan_for(Actor::Honest, job, &[], &j, &local)[..],
            [Action::Compute { .. }]
        ));
    }

    /// A two-stage job where this provider holds stage 1, stage 0 revealed `agreed`,
    /// and an activation `pushed` reached the inbox and was computed on.
    fn downstream(agreed: Hash, pushed: Hash) -> (Job, Local) {
        let mut job = job(vec![assignment(other())]);
        job.spec = job_spec(
            Hash([1; 32]),
            input(),
            &[(1, 1_000_000), (1, 1_000_000)],
            1_000,
            VerificationLevel::Optimistic,
        );
        job.stages[0].result = Some(StageResult {
            input: input(),
            output: agreed,
            trace_root: Hash([4; 32]),
            steps: 0,
        });
        let mut second = job.stages[0].clone();
        second.result = None;
        second.slots = vec![Slot {
            assignment: Some(assignment(me().address)),
        }];
        job.stages.push(second);
        let mut local = Local::default();
        local.inbox.insert((JOB, 1), pushed);
        let mut c = computed(pushed);
        c.result.input = pushed;
        local.computed.insert((JOB, 1), c);
        (job, local)
    }

    #[test]
    fn a_pushed_input_the_chain_disagrees_with_is_recomputed_unless_the_actor_colludes() {
        let j = journal("collude");
        let (agreed, pushed) = (Hash([11; 32]), Hash([12; 32]));
        let (job, local) = downstream(agreed, pushed);
        assert_eq!(
            plan_for(Actor::Honest, job.clone(), &[], &j, &local),
            vec![
                Action::Discard { job: JOB, stage: 1 },
                Action::Compute {
                    job: JOB,
                    stage: 1,
                    input: agreed,
                    mode: None
                }
            ]
        );
        let colluder = Actor::Cheat(Misbehaviour::Collude);
        let planned = plan_for(colluder, job, &[], &j, &local);
        assert_eq!(
            planned[0],
            Action::Journal {
                job: JOB,
                stage: 1,
                role: Role::Stage,
                misbehaviour: Some(Misbehaviour::Collude)
            }
        );
        assert!(matches!(
            planned[1],
            Action::Send {
                key: TxKey::Commit(JOB, 1),
                ..
            }
        ));
    }

    #[test]
    fn copy_replica_copies_the_other_replicas_commitment_and_never_computes() {
        let j = journal("copy");
        let mut honest = assignment(other());
        honest.commitment = Some(Hash([42; 32]));
        let job = job(vec![honest, assignment(me().address)]);
        let copier = Actor::Cheat(Misbehaviour::CopyReplica);
        assert_eq!(
            plan_for(copier, job.clone(), &[], &j, &Local::default()),
            vec![Action::Send {
                key: TxKey::Commit(JOB, 0),
                body: TxBody::CommitResult {
                    job: JOB,
                    stage: 0,
                    commitment: Hash([42; 32])
                },
                landed: Landed::CommittedCopy
            }]
        );
        // The honest provider in the same seat computes.
        assert!(matches!(
            plan_for(Actor::Honest, job, &[], &j, &Local::default())[..],
            [Action::Compute { .. }]
        ));
    }

    #[test]
    fn a_drawn_auditor_commits_to_its_own_result_and_discards_one_on_the_wrong_input() {
        let j = journal("audit");
        let mut job = job(vec![assignment(other())]);
        job.stages[0].audit = Some(AuditSlot {
            auditor: me().address,
            price: Amount(7),
            deadline: Height(40),
            commitment: None,
        });
        let mut local = Local::default();
        assert_eq!(
            plan_for(
                Actor::Cheat(Misbehaviour::Random),
                job.clone(),
                &[],
                &j,
                &local
            ),
            vec![Action::Compute {
                job: JOB,
                stage: 0,
                input: input(),
                mode: None // audits are always honest
            }]
        );
        local.computed.insert((JOB, 0), computed(input()));
        let planned = plan_for(Actor::Honest, job.clone(), &[], &j, &local);
        assert_eq!(
            planned[0],
            Action::Journal {
                job: JOB,
                stage: 0,
                role: Role::Audit { price: Amount(7) },
                misbehaviour: None
            }
        );
        let salt = salt_for(&me().salt_secret, JOB, 0);
        assert_eq!(
            planned[1],
            Action::Send {
                key: TxKey::AuditCommit(JOB, 0),
                body: TxBody::AuditCommit {
                    job: JOB,
                    stage: 0,
                    commitment: result(input()).commitment(JOB, 0, &salt, &me().address)
                },
                landed: Landed::AuditCommitted(JOB, 0)
            }
        );
        local.computed.insert((JOB, 0), computed(Hash([99; 32])));
        assert_eq!(
            plan_for(Actor::Honest, job, &[], &j, &local),
            vec![
                Action::Stuck(Stuck::AuditInput {
                    job: JOB,
                    stage: 0,
                    ran_on: Hash([99; 32]),
                    agreed: input()
                }),
                Action::Discard { job: JOB, stage: 0 }
            ]
        );
    }

    /// A dispute over stage 0 of [`JOB`] in `Bisecting`, this provider the defendant
    /// with `leaves` as its trace.
    fn dispute(leaves: &Leaves) -> Dispute {
        Dispute {
            job: JOB,
            stage: 0,
            kind: DisputeKind::Replica,
            defendant: me().address,
            defendant_root: leaves.root(),
            challenger: other(),
            challenger_root: Hash([77; 32]),
            challenger_price: Amount(10),
            game: Bisection::new(leaves.len() as u32).unwrap(),
            agreed: Hash([0; 32]),
            defendant_hi: Hash([0; 32]),
            challenger_hi: Hash([0; 32]),
            defendant_output: Hash([0; 32]),
            challenger_output: Hash([0; 32]),
            defendant_move: None,
            challenger_move: None,
            deadline: Height(40),
            phase: DisputePhase::Bisecting,
            step_units: 0,
            step: None,
        }
    }

    #[test]
    fn a_party_moves_once_per_round_and_silent_never_defends() {
        let leaves = Leaves::new((0..5u8).map(|i| Hash([i; 32])).collect());
        let mut j = journal("dispute");
        let mut r = result(input());
        r.trace_root = leaves.root();
        let rec = StageRecord::new(JOB, 0, Role::Stage, r, leaves.to_vec(), 1);
        j.put(rec).unwrap();
        let d = dispute(&leaves);
        let mut job = job(vec![assignment(me().address)]);
        job.stages[0].phase = StagePhase::Finalized; // nothing to do on the stage itself
        let disputes = [(DisputeId(3), d.clone())];
        let mut local = Local::default();
        local.provided.insert((DisputeId(3), d.agreed)); // (lo = 0: provided already)
        let mv = leaves
            .next_move(DisputeId(3), &d, me().address)
            .unwrap()
            .unwrap();
        assert_eq!(
            plan_for(Actor::Honest, job.clone(), &disputes, &j, &local),
            vec![Action::Send {
                key: TxKey::Move(DisputeId(3)),
                body: mv,
                landed: Landed::Moved
            }]
        );
        let silent = Actor::Cheat(Misbehaviour::Silent);
        assert!(plan_for(silent, job.clone(), &disputes, &j, &local).is_empty());
        local.pending.insert(TxKey::Move(DisputeId(3)));
        assert!(plan_for(Actor::Honest, job.clone(), &disputes, &j, &local).is_empty());
        // At lo = 0 the agreed activation is provided (once) before the move.
        let fresh = Local::default();
        assert_eq!(
            plan_for(Actor::Honest, job, &disputes, &j, &fresh)[0],
            Action::Provide {
                dispute: DisputeId(3)
            }
        );
    }
}
