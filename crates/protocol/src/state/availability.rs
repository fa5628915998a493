//! Data availability before blame: `ClaimUnavailable`.
//!
//! A provider cannot compute a job whose model or input nobody can fetch,
//! and without recourse it would miss its deadline and pay the penalty —
//! which a requester could farm by posting jobs over data it never
//! publishes. So an assigned provider that has not committed may claim the
//! job's data unavailable:
//!
//! ```text
//!   ClaimUnavailable ─▶ job.claim (the job's commit deadlines wait)
//!        │  the referee is asked the availability probe
//!        │  (model, AVAILABILITY_PROBE, job input): can the validators
//!        │  fetch both, hash-checked? (the node's proposer settles it and
//!        │  every voter re-checks, as for a dispute's layer)
//!        ├─ available  → the claimant pays the miss penalty (payer's share to
//!        │               the payer), its claim is dropped, and every
//!        │               uncommitted deadline of the job moves by the wait
//!        └─ unavailable, after `dispute_timeout` blocks of patience (the
//!           requester's time to publish) → the job is cancelled; every
//!           assigned provider and auditor receives, from the escrow, the
//!           penalty it would have paid (`miss_penalty_ppm` of its slashable
//!           stake); the rest is refunded
//! ```
//!
//! The requester whose data is unavailable pays the penalties instead of
//! receiving them; a false claim costs the claimant what a missed deadline
//! would. Zero hashes are refused at `SubmitJob`.

use super::{BlockCtx, Claim, JobStatus, StagePhase, State, Timer};
use crate::error::TxError;
use crate::event::Event;
use crate::referee::{Referee, RefereeError, AVAILABILITY_PROBE};
use crate::types::{Address, Amount, Hash, JobId};

impl State {
    pub(crate) fn claim_unavailable(
        &mut self,
        who: Address,
        fee: Amount,
        job: JobId,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let j = self.jobs.get(&job).ok_or(TxError::UnknownJob(job))?;
        if j.status != JobStatus::Active {
            return Err(TxError::JobNotActive(job));
        }
        if j.claim.is_some() {
            return Err(TxError::ClaimPending);
        }
        let assigned = j.stages.iter().any(|st| {
            matches!(
                st.phase,
                StagePhase::Matching { .. } | StagePhase::Running { .. }
            ) && st
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .any(|a| a.provider == who && a.commitment.is_none())
        });
        if !assigned {
            return Err(TxError::NotClaimant);
        }
        self.charge(who, fee);
        let since = self.now();
        if let Some(jm) = self.job_mut(job) {
            jm.claim = Some(Claim {
                claimant: who,
                since,
            });
        }
        self.claims.insert(job);
        ctx.emit(Event::UnavailabilityClaimed { job, claimant: who });
        Ok(())
    }

    /// Per-block: asks the referee about every open availability claim.
    pub(crate) fn check_claims(&mut self, referee: &dyn Referee, ctx: &mut BlockCtx) {
        let now = self.now();
        let queue: Vec<JobId> = self.claims.iter().copied().collect();
        for job in queue {
            let Some(j) = self.jobs.get(&job) else {
                self.claims.remove(&job);
                continue;
            };
            let Some(claim) = j.claim else {
                self.claims.remove(&job);
                continue;
            };
            if j.status != JobStatus::Active {
                self.claims.remove(&job);
                continue;
            }
            let patient = now <= claim.since.plus(self.params.dispute_timeout);
            let expired = now
                > claim
                    .since
                    .plus(self.params.dispute_timeout)
                    .plus(self.params.referee_timeout);
            match referee.execute_layer(&j.spec.model, AVAILABILITY_PROBE, &j.spec.input) {
                Ok(_) => self.reject_claim(job, claim, true, ctx),
                // The validators never answered: the claim lapses, nobody
                // penalized, and the job's deadlines move on as after a
                // rejection.
                Err(RefereeError::Pending) if expired => self.reject_claim(job, claim, false, ctx),
                Err(RefereeError::Pending) => continue,
                Err(_) if patient => continue,
                Err(_) => self.data_unavailable(job, ctx),
            }
            self.claims.remove(&job);
        }
    }

    /// The data was there (`penalize`: the claimant pays the miss penalty),
    /// or nobody answered in time (no penalty); either way the job's
    /// uncommitted deadlines move by the time the claim held them.
    fn reject_claim(&mut self, job: JobId, claim: Claim, penalize: bool, ctx: &mut BlockCtx) {
        let Some(payer) = self.jobs.get(&job).map(|j| j.payer) else {
            return;
        };
        let penalty = if penalize {
            self.penalize_miss(claim.claimant, payer, Amount::ZERO)
        } else {
            Amount::ZERO
        };
        let waited = self.now().0.saturating_sub(claim.since.0);
        let mut timers = Vec::new();
        if let Some(jm) = self.job_mut(job) {
            jm.claim = None;
            for (s, st) in jm.stages.iter_mut().enumerate() {
                if !matches!(st.phase, StagePhase::Running { .. }) {
                    continue;
                }
                let mut moved = None;
                for a in st.slots.iter_mut().filter_map(|x| x.assignment.as_mut()) {
                    if a.commitment.is_none() {
                        a.deadline = a.deadline.plus(waited);
                        moved = Some(a.deadline);
                    }
                }
                if let Some(d) = moved {
                    timers.push((d, s as u32));
                }
            }
        }
        for (d, s) in timers {
            self.schedule(d.plus(1), Timer::Stage(job, s));
        }
        ctx.emit(Event::ClaimRejected {
            job,
            claimant: claim.claimant,
            penalty,
        });
    }

    /// Nobody could fetch the data: every assigned provider and auditor is
    /// compensated from the escrow, the job is cancelled, the rest refunded.
    fn data_unavailable(&mut self, job: JobId, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        let mut parties: Vec<Address> = Vec::new();
        for st in &j.stages {
            for a in st.slots.iter().filter_map(|s| s.assignment.as_ref()) {
                parties.push(a.provider);
            }
            if let Some(a) = &st.audit {
                parties.push(a.auditor);
            }
        }
        let mut compensation = Amount::ZERO;
        for p in parties {
            let due = self.slashable(&p).mul_ppm(self.params.miss_penalty_ppm);
            let amount = self.pay_from_escrow(job, p, due);
            compensation = compensation.saturating_add(amount);
            ctx.emit(Event::ProviderCompensated {
                job,
                provider: p,
                amount,
            });
        }
        if let Some(jm) = self.job_mut(job) {
            jm.claim = None;
        }
        self.stop_stages(job);
        let refund = self.refund_escrow(job, JobStatus::Cancelled);
        ctx.emit(Event::DataUnavailable {
            job,
            compensation,
            refund,
        });
    }

    /// Every question the referee must answer for the next block: the layer
    /// of each dispute awaiting the referee, and the availability probe of
    /// each job under a claim, as `(model, layer, input)`, in a fixed order.
    /// The node's proposer settles exactly these into verdicts.
    pub fn referee_questions(&self) -> Vec<(Hash, u32, Hash)> {
        let mut out = Vec::new();
        for id in &self.referee_queue {
            let Some(d) = self.disputes.get(id) else {
                continue;
            };
            let Some(j) = self.jobs.get(&d.job) else {
                continue;
            };
            if let Some(q) = State::referee_question(d, j) {
                out.push(q);
            }
        }
        for id in &self.claims {
            if let Some(j) = self.jobs.get(id) {
                out.push((j.spec.model, AVAILABILITY_PROBE, j.spec.input));
            }
        }
        out
    }
}
