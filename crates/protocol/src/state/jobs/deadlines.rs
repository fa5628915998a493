//! Missed deadlines, checked by the per-block timers.
//!
//! A replica that misses its commit deadline (counted only once its input is
//! agreed and no availability claim is pending) or its reveal deadline pays
//! the miss penalty — or is slashed, when it kept a reveal back from an
//! audited stage — and is excluded from the job; its slot is vacated
//! (`jobs::matching`). In a generation job the late stage goes back to
//! matching only once another stage has committed — the session ran to its
//! end, and a replacement rebuilds the stage's trace from the transcript by
//! one prefill, as an auditor does — and while replacements remain
//! ([`limits::MAX_SESSION_REPLACEMENTS`]). No stage committed: the job fails,
//! its escrow refunded (no stage delivered anything); the replacements used
//! up: the session is salvaged (`jobs::stop`), its committed stages verified
//! and paid. An auditor that misses its deadline pays the miss
//! penalty and is excluded too: one that missed its commitment is replaced
//! by a fresh draw (reveals open unaudited if nobody qualifies); one that
//! missed its report lets the stage go on to its challenge window.

use crate::event::Event;
use crate::state::{BlockCtx, JobStatus, StagePhase, State};
use crate::types::{limits, Address, Amount, JobId};

impl State {
    /// Per-block: replicas that missed their commit or reveal deadline are
    /// penalized, excluded from the job, and their slot goes back to matching.
    ///
    /// In a generation job every stage is checked and each late provider is
    /// penalized and excluded as above. If another stage has committed, the
    /// session ran to its end and its providers did the work: the late
    /// stages go back to matching (the replacement rebuilds the trace from
    /// the transcript and commits; reveals open once every stage committed,
    /// and a stage re-filled after others revealed is always audited under
    /// `Sampled`, `jobs::audit`). Without the requeue a requester holding one
    /// stage through a second identity could let it lapse after the last
    /// token and get the generation for one miss penalty, the honest stages
    /// unpaid. Nobody committed (the session never finished): the job fails
    /// with its escrow refunded (`fail_job`), the stages still running
    /// released unpaid. The job used up its replacements: the session is
    /// salvaged (`salvage_session`): the stages that committed are revealed,
    /// verified and paid, the rest refunded. A stage kept by a salvage that
    /// then misses its reveal is dropped too.
    pub(crate) fn check_stage_deadlines(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let Some((generation, stages)) = self
            .jobs
            .get(&job)
            .map(|j| (j.is_generation(), j.stages.len() as u32))
        else {
            return;
        };
        if !generation {
            let slots = self.penalize_late(job, stage, ctx);
            if !slots.is_empty() {
                self.vacate(job, stage, &slots, ctx);
            }
            return;
        }
        let mut late = Vec::new();
        for s in 0..stages {
            let slots = self.penalize_late(job, s, ctx);
            if slots.is_empty() {
                continue;
            }
            late.push(s);
            // Already penalized and released: out of the job, so stopping it
            // does not release them twice.
            if let Some(jm) = self.job_mut(job) {
                let mut gone = Vec::new();
                for r in slots {
                    if let Some(a) = jm.stages[s as usize]
                        .slots
                        .get_mut(r)
                        .and_then(|x| x.assignment.take())
                    {
                        gone.push(a.provider);
                    }
                }
                for who in gone {
                    jm.exclude(who);
                }
            }
        }
        if late.is_empty() {
            return;
        }
        let Some((active, delivered, room)) = self.jobs.get(&job).map(|j| {
            (
                j.status == JobStatus::Active,
                j.any_committed(),
                j.excluded.len() <= limits::MAX_SESSION_REPLACEMENTS,
            )
        }) else {
            return;
        };
        if !active {
            // A kept stage of a salvaged session lapsed: it is dropped too, and
            // the stages left are judged without it.
            for s in late {
                self.cancel_stage(job, s);
            }
            self.on_session_revealed(job, ctx);
            return;
        }
        match (delivered, room) {
            // (A late stage has no agreed result: that needs every reveal.)
            (true, true) => self.requeue_stages(job, &late),
            (true, false) => self.salvage_session(job, ctx),
            (false, _) => self.fail_job(job, ctx),
        }
    }

    /// Penalizes the replicas of a running stage that missed their commit or
    /// reveal deadline and releases them (`active`, `open`); returns their
    /// slots, for the caller to vacate.
    fn penalize_late(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) -> Vec<usize> {
        let now = self.now();
        let Some(j) = self.jobs.get(&job) else {
            return Vec::new();
        };
        let Some(st) = j.stages.get(stage as usize) else {
            return Vec::new();
        };
        let StagePhase::Running { reveal_deadline } = st.phase else {
            return Vec::new();
        };
        let ops = j.billed_ops(stage as usize);
        // A commit deadline runs only once the stage's input is agreed and
        // undisputed, and not while an availability claim is checked: an
        // honest downstream replica is never blamed for an upstream failure
        // (its deadline is extended when the input arrives or its dispute
        // ends, and after a rejected claim). A generation session's stages
        // need no agreed input to commit.
        let input_ready = j.claim.is_none()
            && (stage == 0 || j.is_generation() || {
                let prev = &j.stages[stage as usize - 1];
                prev.result.is_some() && !matches!(prev.phase, StagePhase::Disputed { .. })
            });
        // A replica that committed, then saw the audit drawn against it and
        // kept its result back would otherwise trade the slash for the miss
        // penalty: under audit, a missed reveal is slashed like a lost dispute.
        let audited = st.audit.is_some();
        let missed: Vec<(usize, Address, Amount, bool)> = st
            .slots
            .iter()
            .enumerate()
            .filter_map(|(r, s)| {
                let a = s.assignment.as_ref()?;
                let late_commit = input_ready && a.commitment.is_none() && a.deadline < now;
                let late_reveal = a.result.is_none() && reveal_deadline.is_some_and(|rd| rd < now);
                (late_commit || late_reveal).then_some((r, a.provider, a.price, late_reveal))
            })
            .collect();
        let payer = j.payer;
        let mut slots = Vec::new();
        for (r, provider, price, late_reveal) in missed {
            let value = Amount::cost(ops, price).unwrap_or(Amount::ZERO);
            let penalty = if late_reveal && audited {
                self.slash(provider, None, payer, ctx)
            } else {
                self.penalize_miss(provider, payer, value)
            };
            if let Some(p) = self.provider_mut(provider) {
                p.active = p.active.saturating_sub(1);
                p.open = p.open.saturating_sub(1);
            }
            ctx.emit(Event::DeadlineMissed {
                job,
                stage,
                provider,
                penalty,
            });
            slots.push(r);
        }
        slots
    }

    /// Slashes `miss_penalty_ppm` of a provider's stake (the payer gets the
    /// requester share, the rest is burned) and records a failure.
    pub(crate) fn penalize_miss(
        &mut self,
        provider: Address,
        payer: Address,
        value: Amount,
    ) -> Amount {
        let penalty = self.take_miss_penalty(provider, value);
        let to_payer = penalty.mul_ppm(self.params.slash_requester_ppm);
        self.credit(payer, to_payer);
        self.burn(penalty.saturating_sub(to_payer));
        penalty
    }

    /// The miss penalty of a provider a neighbour reported out of a session
    /// (`ReplaceStage`): the same amount and failure record, all of it burned.
    /// The ledger cannot tell a dead provider from a false report, so no
    /// report may pay anyone: a requester that reported an honest stage would
    /// otherwise earn its share of that provider's stake.
    pub(crate) fn penalize_reported(&mut self, provider: Address, value: Amount) -> Amount {
        let penalty = self.take_miss_penalty(provider, value);
        self.burn(penalty);
        penalty
    }

    /// Takes `miss_penalty_ppm` of `provider`'s stake and records a failure
    /// on `value`; the caller places the amount.
    fn take_miss_penalty(&mut self, provider: Address, value: Amount) -> Amount {
        let penalty = self.take_stake(provider, self.params.miss_penalty_ppm);
        let rp = self.reputation_params();
        let now = self.now().0;
        if let Some(p) = self.provider_mut(provider) {
            p.reputation.record_failure(value.0, now, &rp);
        }
        penalty
    }

    /// Per-block: an auditor that did not act in time is penalized and
    /// excluded. One that missed its commitment is replaced by a fresh draw
    /// (the replicas wait; if nobody qualifies, reveals open unaudited); one
    /// that committed but did not open its commitment lets the stage proceed
    /// to its challenge window.
    pub(crate) fn check_audit_deadline(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let now = self.now();
        let Some(j) = self.jobs.get(&job) else { return };
        let Some(st) = j.stages.get(stage as usize) else {
            return;
        };
        let (auditor, price, reporting) = match (st.phase, &st.audit) {
            (
                StagePhase::Auditing {
                    auditor,
                    price,
                    deadline,
                },
                _,
            ) if deadline < now => (auditor, price, true),
            (
                StagePhase::Running {
                    reveal_deadline: None,
                },
                Some(a),
            ) if a.commitment.is_none() && a.deadline < now => (a.auditor, a.price, false),
            _ => return,
        };
        let value = Amount::cost(j.billed_ops(stage as usize), price).unwrap_or_default();
        let payer = j.payer;
        self.penalize_miss(auditor, payer, value);
        self.release_auditor(job, stage, false);
        if let Some(jm) = self.job_mut(job) {
            jm.exclude(auditor);
        }
        ctx.emit(Event::AuditMissed {
            job,
            stage,
            auditor,
        });
        if reporting {
            self.open_window(job, stage, ctx);
        } else if !self.assign_auditor(job, stage, ctx) {
            self.open_reveals(job, stage);
        }
    }
}
