//! Mandates and the job lifecycle up to payout.
//!
//! ```text
//!  SubmitJob ─▶ Matching ──(per-block match)──▶ Running ──all commit──▶ reveal window ──all reveal──┐
//!                  ▲  │                            │                                                │
//!                  │  ├─ no provider before        └─ a replica misses its deadline:                │
//!                  │  │  match_timeout: Cancelled     penalized, excluded, slot re-matched ─────────┤
//!                  │  └─ CancelJob before any commit (Matching or Running): Cancelled, full refund  │
//!                  └──────────────────────────────────────────────────────────────────────────────┘ │
//!            ┌──────────────────────────────────────────────────────────────────────────────────────┘
//!            ▼
//!   replicas disagree? ──yes──▶ Disputed (replica vs replica)
//!            │ no
//!   beacon draws an audit? ──yes──▶ Auditing ──agree──┐   (disagree ─▶ Disputed)
//!            │ no                                     │
//!            ▼                                        ▼
//!      Challengeable (challenge window; a Challenge ─▶ Disputed)
//!            │ window closes
//!            ▼
//!        Finalized: each replica paid ops × its price; when every stage is
//!        final the job completes and the unused escrow goes back to the payer.
//! ```
//!
//! The requester may withdraw its job with `CancelJob` as long as no
//! provider has committed work: every stage still `Matching` or `Running`
//! and no replica's commitment posted. The assigned providers are released
//! (their `active` and `open` counts drop, no penalty), the whole escrow
//! returns to the payer (under a mandate, `spent` drops by as much), the job
//! ends `Cancelled` with a `JobCancelled` event and leaves the matching
//! queue. Once any commitment is posted the job runs to its end (result or
//! missed deadline): a provider that already did the work is owed a fair
//! outcome.
//!
//! Escrow is `Σ_stages ops × max_price × (replicas + a)` where `a = 1` when
//! the job can be audited (verification above `Optimistic`): one auditor's
//! fee per stage is reserved. Under a mandate the escrow comes from the
//! principal's balance and counts against the mandate's caps; every refund
//! goes back to the principal and gives the mandate that much room again.

use super::{
    Assignment, BlockCtx, Job, JobStatus, Mandate, Slot, Stage, StagePhase, State, StateKey, Timer,
};
use crate::error::TxError;
use crate::event::Event;
use crate::matching::{self, Candidate, Requirement};
use crate::tx::{JobSpec, MandateTerms, StageResult};
use crate::types::{limits, Address, Amount, Hash, JobId, MandateId, VerificationLevel, PPM};

impl State {
    // ------------------------------------------------------------------
    // Mandates
    // ------------------------------------------------------------------

    pub(crate) fn grant_mandate(
        &mut self,
        who: Address,
        fee: Amount,
        terms: &MandateTerms,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        if terms.agent == who {
            return Err(TxError::InvalidMandate(
                "agent must differ from principal".into(),
            ));
        }
        if terms.per_job_cap > terms.total_cap {
            return Err(TxError::InvalidMandate(
                "per-job cap exceeds total cap".into(),
            ));
        }
        if terms.total_cap.0 == 0 || terms.max_unit_price.0 == 0 {
            return Err(TxError::InvalidMandate("caps must be positive".into()));
        }
        if terms.expiry <= self.now() {
            return Err(TxError::InvalidMandate("expiry is in the past".into()));
        }
        self.charge(who, fee);
        let id = self.meta.next_mandate;
        self.meta.next_mandate = MandateId(id.0 + 1);
        self.commit.touch::<Mandate>(StateKey::Mandate(id), None);
        self.mandates.insert(
            id,
            Mandate {
                principal: who,
                terms: terms.clone(),
                spent: Amount::ZERO,
                revoked: false,
            },
        );
        ctx.emit(Event::MandateGranted {
            mandate: id,
            principal: who,
            agent: terms.agent,
        });
        Ok(())
    }

    pub(crate) fn revoke_mandate(
        &mut self,
        who: Address,
        fee: Amount,
        id: MandateId,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let m = self.mandates.get(&id).ok_or(TxError::UnknownMandate(id))?;
        if m.principal != who {
            return Err(TxError::NotPrincipal);
        }
        if m.revoked {
            return Err(TxError::MandateRevoked(id));
        }
        self.charge(who, fee);
        if let Some(m) = self.mandate_mut(id) {
            m.revoked = true;
        }
        ctx.emit(Event::MandateRevoked { mandate: id });
        Ok(())
    }

    // ------------------------------------------------------------------
    // SubmitJob
    // ------------------------------------------------------------------

    /// The escrow a job locks (see the module docs); `None` on overflow.
    pub fn escrow_for(spec: &JobSpec) -> Option<Amount> {
        let copies = spec.requirements.replicas as u128
            + u128::from(spec.requirements.verification != VerificationLevel::Optimistic);
        let mut total: u128 = 0;
        for s in &spec.stages {
            let c = Amount::cost(s.ops, spec.max_price)?;
            total = total.checked_add(c.0.checked_mul(copies)?)?;
        }
        Some(Amount(total))
    }

    fn check_spec(&self, spec: &JobSpec) -> Result<Amount, TxError> {
        if spec.stages.is_empty() || spec.stages.len() > limits::MAX_STAGES {
            return Err(TxError::InvalidJob("stage count".into()));
        }
        if spec.model.is_zero() {
            return Err(TxError::ZeroHash("model".into()));
        }
        if spec.input.is_zero() {
            return Err(TxError::ZeroHash("input".into()));
        }
        let mut next_layer: Option<u32> = None;
        for s in &spec.stages {
            if s.layers == 0 || s.layers > limits::MAX_LAYERS {
                return Err(TxError::InvalidJob("stage layer count".into()));
            }
            if s.ops == 0 {
                return Err(TxError::InvalidJob("stage ops must be positive".into()));
            }
            if s.step_units > limits::MAX_STEP_UNITS {
                return Err(TxError::InvalidJob("step units".into()));
            }
            // A training dispute's referee question names unit `step × units + unit`,
            // below `end × units` ≤ u32::MAX, so never the availability probe's index.
            if s.step_units > 0
                && s.first_layer
                    .checked_add(s.layers)
                    .and_then(|end| end.checked_mul(s.step_units))
                    .is_none()
            {
                return Err(TxError::InvalidJob(
                    "training steps × step units overflow the referee's index".into(),
                ));
            }
            if let Some(n) = next_layer {
                if s.first_layer != n {
                    return Err(TxError::InvalidJob("stages must be contiguous".into()));
                }
            }
            next_layer = Some(
                s.first_layer
                    .checked_add(s.layers)
                    .ok_or(TxError::InvalidJob("layer range overflows".into()))?,
            );
        }
        let r = spec.requirements.replicas as usize;
        if r == 0 || r > limits::MAX_REPLICAS {
            return Err(TxError::InvalidJob("replicas".into()));
        }
        if spec.deadline == 0 || spec.deadline > self.params.max_deadline {
            return Err(TxError::InvalidJob("deadline".into()));
        }
        if spec.max_price.0 == 0 {
            return Err(TxError::InvalidJob("max price must be positive".into()));
        }
        if spec.requirements.min_reputation_ppm > PPM {
            return Err(TxError::InvalidJob(
                "min reputation above 1,000,000 ppm".into(),
            ));
        }
        if !spec.placement.is_empty() {
            if spec.placement.len() != spec.stages.len() {
                return Err(TxError::InvalidJob(
                    "placement must name one provider per stage".into(),
                ));
            }
            for (i, a) in spec.placement.iter().enumerate() {
                if spec.placement[..i].contains(a) {
                    return Err(TxError::InvalidJob(
                        "placement names a provider twice".into(),
                    ));
                }
            }
        }
        let escrow = State::escrow_for(spec).ok_or(TxError::Overflow)?;
        if escrow.0 == 0 {
            return Err(TxError::InvalidJob("escrow rounds to zero".into()));
        }
        Ok(escrow)
    }

    pub(crate) fn submit_job(
        &mut self,
        who: Address,
        fee: Amount,
        avail: Amount,
        spec: &JobSpec,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let escrow = self.check_spec(spec)?;
        let now = self.now();
        // Who pays, and within which limits.
        let payer = match spec.mandate {
            None => {
                if avail < escrow {
                    return Err(TxError::InsufficientBalance {
                        need: escrow.checked_add(fee).ok_or(TxError::Overflow)?,
                        have: avail.checked_add(fee).ok_or(TxError::Overflow)?,
                    });
                }
                who
            }
            Some(id) => {
                let m = self.mandates.get(&id).ok_or(TxError::UnknownMandate(id))?;
                if m.terms.agent != who {
                    return Err(TxError::NotAgent);
                }
                if m.revoked {
                    return Err(TxError::MandateRevoked(id));
                }
                if now >= m.terms.expiry {
                    return Err(TxError::MandateExpired(m.terms.expiry));
                }
                if spec.max_price > m.terms.max_unit_price {
                    return Err(TxError::MandateUnitPriceExceeded {
                        price: spec.max_price,
                        cap: m.terms.max_unit_price,
                    });
                }
                if spec.requirements.verification < m.terms.min_verification {
                    return Err(TxError::MandateVerificationTooWeak);
                }
                if escrow > m.terms.per_job_cap {
                    return Err(TxError::MandatePerJobCapExceeded {
                        escrow,
                        cap: m.terms.per_job_cap,
                    });
                }
                let after = m.spent.checked_add(escrow).ok_or(TxError::Overflow)?;
                if after > m.terms.total_cap {
                    return Err(TxError::MandateTotalCapExceeded {
                        spent: m.spent,
                        escrow,
                        cap: m.terms.total_cap,
                    });
                }
                let principal = m.principal;
                // The agent pays the fee; the principal pays the escrow.
                let have = if principal == who {
                    avail
                } else {
                    self.balance(&principal)
                };
                if have < escrow {
                    return Err(TxError::InsufficientBalance { need: escrow, have });
                }
                principal
            }
        };
        let id = self.meta.next_job;
        let mut job = Job {
            requester: who,
            payer,
            spec: spec.clone(),
            submitted_at: now,
            escrow,
            status: JobStatus::Active,
            stages: spec
                .stages
                .iter()
                .map(|_| Stage {
                    phase: StagePhase::Matching { since: now },
                    slots: vec![Slot { assignment: None }; spec.requirements.replicas as usize],
                    result: None,
                    audit: None,
                })
                .collect(),
            excluded: Vec::new(),
            claim: None,
        };
        // A named placement must qualify now (it is re-checked at matching).
        for (i, a) in spec.placement.iter().enumerate() {
            if self.qualify(&job, a, &[]).is_none() {
                return Err(TxError::PlacementUnqualified {
                    stage: i as u32,
                    provider: *a,
                });
            }
        }
        // Validation done: mutate.
        self.charge(who, fee);
        let p = self.account_mut(payer);
        p.balance = p.balance.saturating_sub(escrow);
        if let Some(mid) = spec.mandate {
            if let Some(m) = self.mandate_mut(mid) {
                m.spent = Amount(m.spent.0.saturating_add(escrow.0));
            }
        }
        job.excluded.clear();
        self.meta.next_job = JobId(id.0 + 1);
        self.commit.touch::<Job>(StateKey::Job(id), None);
        self.jobs.insert(id, job);
        self.matching.insert(id);
        ctx.emit(Event::JobSubmitted {
            job: id,
            payer,
            escrow,
        });
        Ok(())
    }

    // ------------------------------------------------------------------
    // Matching
    // ------------------------------------------------------------------

    /// Whether provider `a` may take a slot of `job` now (requirements,
    /// price, stake, reputation, free capacity, not excluded); returns the
    /// matching candidate.
    pub(crate) fn qualify(
        &self,
        job: &Job,
        a: &Address,
        exclude: &[Address],
    ) -> Option<Candidate<Address>> {
        if exclude.contains(a) || job.excluded.contains(a) {
            return None;
        }
        let p = self.providers.get(a)?;
        let c = self.candidate(a, p)?;
        let req = self.requirement(job);
        matching::qualifies(&c, &req).then_some(c)
    }

    fn candidate(&self, a: &Address, p: &super::Provider) -> Option<Candidate<Address>> {
        if p.retired {
            return None;
        }
        let stake = self.account(a).bonded;
        if stake < self.params.min_provider_stake {
            return None;
        }
        Some(Candidate {
            id: *a,
            price: p.offer.price.0,
            reputation_ppm: self.score(p, a),
            coord: p.offer.coord,
            stake: stake.0,
            free_capacity: p.offer.capacity.saturating_sub(p.active),
            region: p.offer.region.0,
            capabilities: p.offer.capabilities.0,
        })
    }

    fn requirement(&self, job: &Job) -> Requirement {
        let r = &job.spec.requirements;
        Requirement {
            max_price: job.spec.max_price.0,
            min_reputation_ppm: r.min_reputation_ppm,
            min_stake: r.min_stake.0,
            regions: r.regions.iter().map(|x| x.0).collect(),
            capabilities: r.capabilities.0,
            requester: job.spec.coord,
        }
    }

    /// The best qualified provider for a slot of `job`, not in `exclude`.
    pub(crate) fn select(&self, job: &Job, exclude: &[Address]) -> Option<(Address, Amount)> {
        let candidates: Vec<Candidate<Address>> = self
            .providers
            .iter()
            .filter(|(a, _)| !exclude.contains(a) && !job.excluded.contains(a))
            .filter_map(|(a, p)| self.candidate(a, p))
            .collect();
        let req = self.requirement(job);
        let best = matching::best(&candidates, &req, &[])?;
        let price = self.providers.get(&best)?.offer.price;
        Some((best, price))
    }

    /// A qualified provider for a slot of `job`, not in `exclude`, drawn by
    /// stake from `seed` ([`matching::draw_by_stake`]); with its price.
    pub(crate) fn draw(
        &self,
        job: &Job,
        exclude: &[Address],
        seed: &[u8; 32],
    ) -> Option<(Address, Amount)> {
        let candidates: Vec<Candidate<Address>> = self
            .providers
            .iter()
            .filter(|(a, _)| !exclude.contains(a) && !job.excluded.contains(a))
            .filter_map(|(a, p)| self.candidate(a, p))
            .collect();
        let req = self.requirement(job);
        let drawn = matching::draw_by_stake(&candidates, &req, &[], seed)?;
        let price = self.providers.get(&drawn)?.offer.price;
        Some((drawn, price))
    }

    /// Providers currently holding a slot of `job` (any stage) — a job never
    /// gets the same provider twice, so replicas and auditors are independent.
    fn job_providers(job: &Job) -> Vec<Address> {
        let mut out = Vec::new();
        for s in &job.stages {
            if matches!(s.phase, StagePhase::Cancelled) {
                continue;
            }
            for slot in &s.slots {
                if let Some(a) = &slot.assignment {
                    out.push(a.provider);
                }
            }
            if let StagePhase::Auditing { auditor, .. } = s.phase {
                out.push(auditor);
            }
            if let Some(a) = &s.audit {
                out.push(a.auditor);
            }
        }
        out
    }

    /// Per-block: fill empty slots of waiting jobs, in job-id order.
    ///
    /// Replica 0 is the best-ranked offer (or the named placement); every
    /// further replica is drawn by stake from the block's beacon, so nobody
    /// can place itself as the replica that checks its own work.
    pub(crate) fn match_jobs(&mut self, ctx: &mut BlockCtx) {
        let queue: Vec<JobId> = self.matching.iter().copied().collect();
        let now = self.now();
        for id in queue {
            let Some(job) = self.jobs.get(&id) else {
                self.matching.remove(&id);
                continue;
            };
            if job.status != JobStatus::Active {
                self.matching.remove(&id);
                continue;
            }
            let mut waiting = false;
            let mut cancel = false;
            let mut assigned: Vec<(usize, usize, Address, Amount)> = Vec::new();
            let mut used = State::job_providers(job);
            for (s, stage) in job.stages.iter().enumerate() {
                let StagePhase::Matching { since } = stage.phase else {
                    continue;
                };
                let mut filled = true;
                for (r, slot) in stage.slots.iter().enumerate() {
                    if slot.assignment.is_some() {
                        continue;
                    }
                    let pick = if r == 0 {
                        job.spec
                            .placement
                            .get(s)
                            .and_then(|a| {
                                self.qualify(job, a, &used).map(|c| (c.id, Amount(c.price)))
                            })
                            .or_else(|| self.select(job, &used))
                    } else {
                        let seed = replica_seed(&ctx.beacon, id, s as u32, r as u8);
                        self.draw(job, &used, &seed)
                    };
                    match pick {
                        Some((p, price)) => {
                            // Capacity is consumed by earlier picks in this loop.
                            let taken = assigned.iter().filter(|x| x.2 == p).count() as u32;
                            let prov = self.providers.get(&p);
                            let free = prov
                                .map(|pp| pp.offer.capacity.saturating_sub(pp.active))
                                .unwrap_or(0);
                            if taken >= free {
                                filled = false;
                                continue;
                            }
                            used.push(p);
                            assigned.push((s, r, p, price));
                        }
                        None => filled = false,
                    }
                }
                if !filled {
                    waiting = true;
                    if now.0 > since.0.saturating_add(self.params.match_timeout) {
                        cancel = true;
                    }
                }
            }
            if cancel {
                // Give back nothing assigned this round: the job is cancelled.
                self.cancel_job(id, ctx);
                self.matching.remove(&id);
                continue;
            }
            let deadline = now.plus(job.spec.deadline);
            for &(s, r, p, price) in &assigned {
                if let Some(prov) = self.provider_mut(p) {
                    prov.active += 1;
                    prov.open += 1;
                }
                self.add_role(p, id);
                if let Some(job) = self.job_mut(id) {
                    if let Some(slot) = job.stages.get_mut(s).and_then(|st| st.slots.get_mut(r)) {
                        slot.assignment = Some(Assignment {
                            provider: p,
                            price,
                            deadline,
                            commitment: None,
                            result: None,
                        });
                    }
                }
                ctx.emit(Event::StageAssigned {
                    job: id,
                    stage: s as u32,
                    replica: r as u8,
                    provider: p,
                    price,
                    deadline,
                });
            }
            let mut timers = Vec::new();
            if let Some(job) = self.job_mut(id) {
                for (s, stage) in job.stages.iter_mut().enumerate() {
                    if matches!(stage.phase, StagePhase::Matching { .. })
                        && stage.slots.iter().all(|x| x.assignment.is_some())
                    {
                        stage.phase = StagePhase::Running {
                            reveal_deadline: None,
                        };
                        timers.push(s as u32);
                    }
                }
            }
            for s in timers {
                self.schedule(deadline.plus(1), Timer::Stage(id, s));
            }
            if !waiting {
                self.matching.remove(&id);
            }
        }
    }

    // ------------------------------------------------------------------
    // Commit, reveal
    // ------------------------------------------------------------------

    fn stage_ref(&self, job: JobId, stage: u32) -> Result<(&Job, &Stage), TxError> {
        let j = self.jobs.get(&job).ok_or(TxError::UnknownJob(job))?;
        let s = j
            .stages
            .get(stage as usize)
            .ok_or(TxError::UnknownStage { job, stage })?;
        Ok((j, s))
    }

    pub(crate) fn commit_result(
        &mut self,
        who: Address,
        fee: Amount,
        job: JobId,
        stage: u32,
        commitment: Hash,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let now = self.now();
        let (j, st) = self.stage_ref(job, stage)?;
        if !matches!(st.phase, StagePhase::Running { .. }) {
            return Err(TxError::WrongPhase("running".into()));
        }
        // A commitment needs an agreed input: the beacon of the block that
        // completes the commitments draws the audit, and the auditor must be
        // able to compute from that input at once.
        State::expected_input(j, stage)?;
        let r = st
            .slots
            .iter()
            .position(|s| s.assignment.as_ref().is_some_and(|a| a.provider == who))
            .ok_or(TxError::NotAssigned)?;
        let a = st.slots[r]
            .assignment
            .as_ref()
            .ok_or(TxError::NotAssigned)?;
        if a.commitment.is_some() {
            return Err(TxError::AlreadyCommitted);
        }
        if now > a.deadline {
            return Err(TxError::DeadlinePassed(a.deadline));
        }
        self.charge(who, fee);
        let mut all = false;
        if let Some(j) = self.job_mut(job) {
            let st = &mut j.stages[stage as usize];
            if let Some(a) = st.slots[r].assignment.as_mut() {
                a.commitment = Some(commitment);
            }
            all = st.slots.iter().all(|s| {
                s.assignment
                    .as_ref()
                    .is_some_and(|a| a.commitment.is_some())
            });
        }
        ctx.emit(Event::ResultCommitted {
            job,
            stage,
            provider: who,
        });
        if all {
            self.on_stage_committed(job, stage, ctx);
        }
        Ok(())
    }

    /// Every replica's commitment is final (in this block): the block's
    /// beacon — unknowable when they signed — decides whether the stage is
    /// audited and draws the auditor by stake. An audited stage waits for the
    /// auditor's commitment before anyone reveals; otherwise reveals open now.
    fn on_stage_committed(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        let st = &j.stages[stage as usize];
        let level = j.spec.requirements.verification;
        let audited = match level {
            VerificationLevel::Optimistic => false,
            VerificationLevel::Audited => true,
            VerificationLevel::Sampled => {
                // The most tempting provider sets the odds: the lowest score and,
                // for the value floor, each provider's own value against its
                // slashable stake.
                let ops = j.spec.stages[stage as usize].ops;
                let audit_fee = Amount::cost(ops, j.spec.max_price).unwrap_or(Amount(u128::MAX));
                let probability = st
                    .slots
                    .iter()
                    .filter_map(|s| s.assignment.as_ref())
                    .filter_map(|a| {
                        let p = self.providers.get(&a.provider)?;
                        let value = Amount::cost(ops, a.price).unwrap_or(Amount(u128::MAX));
                        let stake = self.slashable(&a.provider);
                        Some(State::audit_probability_for(
                            &self.params,
                            self.score(p, &a.provider),
                            value,
                            audit_fee,
                            stake,
                        ))
                    })
                    .max()
                    .unwrap_or(self.params.audit_ppm);
                audit_draw(&ctx.beacon, job, stage) < probability
            }
        };
        if audited && self.assign_auditor(job, stage, ctx) {
            return;
        }
        self.open_reveals(job, stage);
    }

    /// Draws an auditor for a stage by stake (excluding everyone holding a
    /// role in the job and everyone excluded from it) and gives it
    /// `audit_window` blocks to commit. Returns whether one was found.
    pub(crate) fn assign_auditor(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) -> bool {
        let Some(j) = self.jobs.get(&job) else {
            return false;
        };
        let used = State::job_providers(j);
        let seed = auditor_seed(&ctx.beacon, job, stage);
        let Some((auditor, price)) = self.draw(j, &used, &seed) else {
            return false;
        };
        let deadline = self.now().plus(self.params.audit_window);
        if let Some(p) = self.provider_mut(auditor) {
            p.active += 1;
            p.open += 1;
        }
        self.add_role(auditor, job);
        if let Some(jm) = self.job_mut(job) {
            jm.stages[stage as usize].audit = Some(super::AuditSlot {
                auditor,
                price,
                deadline,
                commitment: None,
            });
        }
        self.schedule(deadline.plus(1), Timer::Audit(job, stage));
        ctx.emit(Event::AuditAssigned {
            job,
            stage,
            auditor,
            deadline,
        });
        true
    }

    /// Opens a stage's reveal window (every replica committed and, when
    /// audited, the auditor too).
    pub(crate) fn open_reveals(&mut self, job: JobId, stage: u32) {
        let rd = self.now().plus(self.params.reveal_window);
        if let Some(j) = self.job_mut(job) {
            j.stages[stage as usize].phase = StagePhase::Running {
                reveal_deadline: Some(rd),
            };
        }
        self.schedule(rd.plus(1), Timer::Stage(job, stage));
    }

    /// Releases a stage's auditor (its slot ends without a report): paid its
    /// fee if `pay` (it committed work that the stage no longer needs).
    /// Frees a stage's auditor (drawn or auditing); with `pay`, pays it its fee from
    /// the escrow and returns `(auditor, paid)` for the caller's `AuditPaid` event.
    pub(crate) fn release_auditor(
        &mut self,
        job: JobId,
        stage: u32,
        pay: bool,
    ) -> Option<(Address, Amount)> {
        let j = self.jobs.get(&job)?;
        let st = &j.stages[stage as usize];
        let ops = j.spec.stages[stage as usize].ops;
        let auditor = match (&st.audit, st.phase) {
            (_, StagePhase::Auditing { auditor, price, .. }) => Some((auditor, price)),
            (Some(a), _) => Some((a.auditor, a.price)),
            _ => None,
        };
        let (auditor, price) = auditor?;
        if let Some(jm) = self.job_mut(job) {
            jm.stages[stage as usize].audit = None;
        }
        let paid = pay.then(|| {
            let fee = Amount::cost(ops, price).unwrap_or_default();
            (auditor, self.pay_from_escrow(job, auditor, fee))
        });
        if let Some(p) = self.provider_mut(auditor) {
            p.active = p.active.saturating_sub(1);
            p.open = p.open.saturating_sub(1);
        }
        paid
    }

    /// The input a stage must start from: the job input, or the previous
    /// stage's agreed output.
    fn expected_input(j: &Job, stage: u32) -> Result<Hash, TxError> {
        if stage == 0 {
            return Ok(j.spec.input);
        }
        j.stages
            .get(stage as usize - 1)
            .and_then(|p| p.result)
            .map(|r| r.output)
            .ok_or(TxError::PreviousStageUnrevealed)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reveal_result(
        &mut self,
        who: Address,
        fee: Amount,
        job: JobId,
        stage: u32,
        result: &StageResult,
        salt: &Hash,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let now = self.now();
        let (j, st) = self.stage_ref(job, stage)?;
        let rd = match st.phase {
            StagePhase::Running {
                reveal_deadline: Some(rd),
            } => rd,
            StagePhase::Running {
                reveal_deadline: None,
            } => return Err(TxError::RevealTooEarly),
            _ => return Err(TxError::WrongPhase("running".into())),
        };
        let r = st
            .slots
            .iter()
            .position(|s| s.assignment.as_ref().is_some_and(|a| a.provider == who))
            .ok_or(TxError::NotAssigned)?;
        let a = st.slots[r]
            .assignment
            .as_ref()
            .ok_or(TxError::NotAssigned)?;
        if a.result.is_some() {
            return Err(TxError::AlreadyRevealed);
        }
        if now > rd {
            return Err(TxError::DeadlinePassed(rd));
        }
        let c = a.commitment.ok_or(TxError::RevealTooEarly)?;
        if result.commitment(job, stage, salt, &who) != c {
            return Err(TxError::CommitmentMismatch);
        }
        let agreed = State::expected_input(j, stage)?;
        if result.input != agreed {
            // The commitment opened: the provider signed a result built on an
            // input the chain never agreed on. Honest providers commit only
            // after the previous stage's reveal, so this is fraud, not bad luck.
            self.charge(who, fee);
            self.break_chain(job, stage, r, who, result.input, agreed, ctx);
            return Ok(());
        }
        self.charge(who, fee);
        if let Some(p) = self.provider_mut(who) {
            p.active = p.active.saturating_sub(1);
        }
        let mut all = false;
        if let Some(j) = self.job_mut(job) {
            let st = &mut j.stages[stage as usize];
            if let Some(a) = st.slots[r].assignment.as_mut() {
                a.result = Some(*result);
            }
            // Every replica still holding its slot revealed (a slot emptied
            // after reveals began stays empty).
            all = st
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .all(|a| a.result.is_some());
        }
        ctx.emit(Event::ResultRevealed {
            job,
            stage,
            provider: who,
            output: result.output,
        });
        if all {
            self.on_stage_revealed(job, stage, ctx);
        }
        Ok(())
    }

    /// A revealed result that does not chain onto the previous stage: slash
    /// its provider, free its slot, and send the stage back to matching.
    #[allow(clippy::too_many_arguments)]
    fn break_chain(
        &mut self,
        job: JobId,
        stage: u32,
        slot: usize,
        who: Address,
        claimed: Hash,
        agreed: Hash,
        ctx: &mut BlockCtx,
    ) {
        let Some(payer) = self.jobs.get(&job).map(|j| j.payer) else {
            return;
        };
        ctx.emit(Event::ChainBroken {
            job,
            stage,
            provider: who,
            claimed,
            agreed,
        });
        self.slash(who, None, payer, ctx);
        if let Some(p) = self.provider_mut(who) {
            p.active = p.active.saturating_sub(1);
            p.open = p.open.saturating_sub(1);
        }
        self.vacate(job, stage, &[slot], ctx);
    }

    /// Empties the given slots of a stage (their providers were already
    /// penalized and released) and excludes those providers from the job.
    ///
    /// Before any replica of the stage revealed, the slots go back to
    /// matching: a replacement commits before any result is public. Once a
    /// replica revealed, a replacement could only echo a public result, so
    /// the slots stay empty and the stage goes on with the replicas left;
    /// if those all revealed, the stage is judged now.
    fn vacate(&mut self, job: JobId, stage: u32, slots: &[usize], ctx: &mut BlockCtx) {
        let now = self.now();
        let mut release_audit = false;
        let mut judge = false;
        let mut rematch = false;
        if let Some(j) = self.job_mut(job) {
            let st = &mut j.stages[stage as usize];
            let mut gone = Vec::new();
            for &r in slots {
                if let Some(a) = st.slots.get_mut(r).and_then(|s| s.assignment.take()) {
                    gone.push(a.provider);
                }
            }
            let revealed = st
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .any(|a| a.result.is_some());
            if revealed {
                judge = st
                    .slots
                    .iter()
                    .filter_map(|s| s.assignment.as_ref())
                    .all(|a| a.result.is_some());
            } else {
                st.phase = StagePhase::Matching { since: now };
                // A fresh commit phase draws its own audit.
                release_audit = st.audit.is_some();
                rematch = true;
            }
            for who in gone {
                if !j.excluded.contains(&who) && j.excluded.len() < limits::MAX_EXCLUDED {
                    j.excluded.push(who);
                }
            }
        }
        if release_audit {
            self.release_auditor(job, stage, false);
        }
        if rematch {
            self.matching.insert(job);
        }
        if judge {
            self.on_stage_revealed(job, stage, ctx);
        }
    }

    /// Every replica revealed: compare, then let the auditor open its
    /// commitment or open the challenge window.
    fn on_stage_revealed(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        let st = &j.stages[stage as usize];
        let results: Vec<(Address, StageResult)> = st
            .slots
            .iter()
            .filter_map(|s| s.assignment.as_ref())
            .filter_map(|a| a.result.map(|r| (a.provider, r)))
            .collect();
        let Some(&(first, r0)) = results.first() else {
            return;
        };
        if let Some(&(other, r1)) = results.iter().find(|(_, r)| r.output != r0.output) {
            // The replica dispute decides; an auditor that committed did its
            // work and is paid its fee, the game needs it no more.
            let committed = st.audit.as_ref().is_some_and(|a| a.commitment.is_some());
            if let Some((auditor, fee)) = self.release_auditor(job, stage, committed) {
                ctx.emit(Event::AuditPaid {
                    job,
                    stage,
                    auditor,
                    fee,
                });
            }
            let Some(j) = self.jobs.get(&job) else { return };
            let st = &j.stages[stage as usize];
            let price = st
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .find(|a| a.provider == other)
                .map(|a| a.price)
                .unwrap_or_default();
            self.open_dispute(
                job,
                stage,
                super::DisputeKind::Replica,
                (first, r0),
                (other, r1),
                price,
                ctx,
            );
            return;
        }
        // Agreement. An auditor drawn at commit time (and committed) now opens
        // its commitment; otherwise the challenge window opens.
        let audit = st
            .audit
            .as_ref()
            .filter(|a| a.commitment.is_some())
            .map(|a| (a.auditor, a.price));
        let now = self.now();
        if let Some(jm) = self.job_mut(job) {
            jm.stages[stage as usize].result = Some(r0);
        }
        self.extend_next_stage(job, stage + 1);
        match audit {
            Some((auditor, price)) => {
                let deadline = now.plus(self.params.audit_window);
                if let Some(jm) = self.job_mut(job) {
                    jm.stages[stage as usize].phase = StagePhase::Auditing {
                        auditor,
                        price,
                        deadline,
                    };
                }
                self.schedule(deadline.plus(1), Timer::Audit(job, stage));
            }
            None => self.open_window(job, stage, ctx),
        }
    }

    /// The stage before `stage` has an agreed result: its input exists from
    /// now on, so its replicas that have not committed get the job's whole
    /// `deadline` from this block (never less than they had). Without this a
    /// downstream stage, assigned when the job was matched, would miss its
    /// deadline while an upstream stage is re-routed after a failure.
    pub(crate) fn extend_next_stage(&mut self, job: JobId, stage: u32) {
        let now = self.now();
        let Some(j) = self.job_mut(job) else { return };
        let until = now.plus(j.spec.deadline);
        let Some(st) = j.stages.get_mut(stage as usize) else {
            return;
        };
        let mut extended = false;
        for a in st.slots.iter_mut().filter_map(|s| s.assignment.as_mut()) {
            if a.commitment.is_none() && a.deadline < until {
                a.deadline = until;
                extended = true;
            }
        }
        if extended {
            self.schedule(until.plus(1), Timer::Stage(job, stage));
        }
    }

    /// Audit probability (ppm) of a `Sampled` stage worth `value` to a provider
    /// with reputation `score` and slashable `stake`, when an auditor's fee for
    /// the stage is at most `audit_fee` (ops × the job's `max_price`).
    ///
    /// Reputation discounts it from `audit_ppm` down to `audit_min_ppm`; the
    /// result is then raised, where needed, to the value floor
    /// ([`State::value_floor`]) with `S = slash_ppm × stake` and `c =
    /// audit_collusion_ppm`, so that
    ///
    /// ```text
    ///   p · (1 − c) · S  ≥  (1 − p) · V  +  p · c · (V + F)      expected slash ≥ expected gain
    /// ```
    ///
    /// A cheater who skips the work is paid `V` when not audited. When
    /// audited, the auditor is drawn by stake: with probability `c` at most it
    /// is the cheater's own partner, who approves (the worker is paid `V`, the
    /// partner its fee `F`); otherwise the cheater loses `S`. So a coalition
    /// holding at most `c` of the qualified stake has a non-positive expected
    /// profit, however valuable the stage is relative to the stake. Stakes
    /// large against job values keep `p` at the reputation level; a stage worth
    /// more than the stake can back is audited more, up to always.
    pub fn audit_probability_for(
        params: &crate::params::Params,
        score: u32,
        value: Amount,
        audit_fee: Amount,
        stake: Amount,
    ) -> u32 {
        let base = params.audit_ppm as u64;
        let floor = (params.audit_min_ppm as u64).min(base);
        let discount = (base - floor) * score.min(PPM) as u64 / PPM as u64;
        let reputational = (base - discount) as u32;
        reputational.max(Self::value_floor(params, value, audit_fee, stake))
    }

    /// The least audit probability (ppm) at which skipping the work does not
    /// pay, even for a coalition holding `c = audit_collusion_ppm` of the
    /// qualified stake: solving the inequality of
    /// [`State::audit_probability_for`] for `p`,
    ///
    /// ```text
    ///   p  ≥  V / ((1 − c)·(S + V) − c·F)
    /// ```
    ///
    /// rounded up, and 10^6 (always audit) when the denominator is not
    /// positive or the amounts are absurd. With `c = 0` it is `⌈V / (V + S)⌉`.
    pub fn value_floor(
        params: &crate::params::Params,
        value: Amount,
        audit_fee: Amount,
        stake: Amount,
    ) -> u32 {
        let v = value.0;
        if v == 0 || params.audit_ppm == 0 {
            return 0;
        }
        let ppm = PPM as u128;
        let c = (params.audit_collusion_ppm as u128).min(ppm);
        let s = stake.mul_ppm(params.slash_ppm).0;
        // Everything in ppm units: (1 − c)·(S + V) − c·F.
        let Some(gain) = s.checked_add(v).and_then(|sv| sv.checked_mul(ppm - c)) else {
            return PPM;
        };
        let Some(loss) = audit_fee.0.checked_mul(c) else {
            return PPM;
        };
        let Some(denom) = gain.checked_sub(loss).filter(|d| *d > 0) else {
            return PPM;
        };
        let Some(num) = v.checked_mul(ppm).and_then(|x| x.checked_mul(ppm)) else {
            return PPM;
        };
        let p = num / denom + u128::from(!num.is_multiple_of(denom));
        p.min(ppm) as u32
    }

    /// Starts (or restarts) a stage's challenge window.
    pub(crate) fn open_window(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let until = self.now().plus(self.params.challenge_window);
        if let Some(j) = self.job_mut(job) {
            j.stages[stage as usize].phase = StagePhase::Challengeable { until };
        }
        self.schedule(until.plus(1), Timer::Window(job, stage));
        ctx.emit(Event::ChallengeWindowOpened { job, stage, until });
    }

    // ------------------------------------------------------------------
    // Deadlines
    // ------------------------------------------------------------------

    /// Per-block: replicas that missed their commit or reveal deadline are
    /// penalized, excluded from the job, and their slot goes back to matching.
    pub(crate) fn check_stage_deadlines(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let now = self.now();
        let Some(j) = self.jobs.get(&job) else { return };
        let Some(st) = j.stages.get(stage as usize) else {
            return;
        };
        let StagePhase::Running { reveal_deadline } = st.phase else {
            return;
        };
        let ops = j.spec.stages[stage as usize].ops;
        // A commit deadline runs only once the stage's input is agreed and
        // undisputed, and not while an availability claim is checked: an
        // honest downstream replica is never blamed for an upstream failure
        // (its deadline is extended when the input arrives or its dispute
        // ends, and after a rejected claim).
        let input_ready = j.claim.is_none()
            && (stage == 0 || {
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
        if missed.is_empty() {
            return;
        }
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
        self.vacate(job, stage, &slots, ctx);
    }

    /// Slashes `miss_penalty_ppm` of a provider's stake (the payer gets the
    /// requester share, the rest is burned) and records a failure.
    pub(crate) fn penalize_miss(
        &mut self,
        provider: Address,
        payer: Address,
        value: Amount,
    ) -> Amount {
        let penalty = self.take_stake(provider, self.params.miss_penalty_ppm);
        let to_payer = penalty.mul_ppm(self.params.slash_requester_ppm);
        self.credit(payer, to_payer);
        self.burn(penalty.saturating_sub(to_payer));
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
        let value = Amount::cost(j.spec.stages[stage as usize].ops, price).unwrap_or_default();
        let payer = j.payer;
        self.penalize_miss(auditor, payer, value);
        self.release_auditor(job, stage, false);
        if let Some(jm) = self.job_mut(job) {
            if !jm.excluded.contains(&auditor) && jm.excluded.len() < limits::MAX_EXCLUDED {
                jm.excluded.push(auditor);
            }
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

    // ------------------------------------------------------------------
    // Payout
    // ------------------------------------------------------------------

    /// Pays `amount` (capped by what is left) from a job's escrow to `to`.
    pub(crate) fn pay_from_escrow(&mut self, job: JobId, to: Address, amount: Amount) -> Amount {
        let Some(j) = self.job_mut(job) else {
            return Amount::ZERO;
        };
        let paid = if amount < j.escrow { amount } else { j.escrow };
        j.escrow = j.escrow.saturating_sub(paid);
        self.credit(to, paid);
        paid
    }

    /// Per-block: a challenge window closed without a challenge; pay out.
    pub(crate) fn close_challenge_window(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let now = self.now();
        let Some(j) = self.jobs.get(&job) else { return };
        let Some(st) = j.stages.get(stage as usize) else {
            return;
        };
        let StagePhase::Challengeable { until } = st.phase else {
            return;
        };
        if until >= now {
            return;
        }
        let Some(agreed) = st.result else { return };
        let ops = j.spec.stages[stage as usize].ops;
        let slots: Vec<Assignment> = st
            .slots
            .iter()
            .filter_map(|s| s.assignment.clone())
            .collect();
        let rp = self.reputation_params();
        for a in slots {
            if a.result.is_some_and(|r| r.output == agreed.output) {
                let bill = Amount::cost(ops, a.price).unwrap_or_default();
                let paid = self.pay_from_escrow(job, a.provider, bill);
                if let Some(p) = self.provider_mut(a.provider) {
                    p.reputation.record_success(paid.0, now.0, &rp);
                }
                ctx.emit(Event::StagePaid {
                    job,
                    stage,
                    provider: a.provider,
                    amount: paid,
                });
            }
            if let Some(p) = self.provider_mut(a.provider) {
                p.open = p.open.saturating_sub(1);
            }
        }
        if let Some(j) = self.job_mut(job) {
            j.stages[stage as usize].phase = StagePhase::Finalized;
        }
        ctx.emit(Event::StageFinalized { job, stage });
        self.settle_if_done(job, ctx);
    }

    /// Once every stage is final, refunds what is left of the escrow: an
    /// active job completes; a failed job whose delivered stages were still
    /// being verified is settled.
    pub(crate) fn settle_if_done(&mut self, job: JobId, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        let done = j
            .stages
            .iter()
            .all(|s| matches!(s.phase, StagePhase::Finalized | StagePhase::Cancelled));
        if !done {
            return;
        }
        match j.status {
            JobStatus::Active => {
                let refund = self.refund_escrow(job, JobStatus::Completed);
                ctx.emit(Event::JobCompleted { job, refund });
            }
            JobStatus::Failed => {
                let refund = self.refund_escrow(job, JobStatus::Failed);
                ctx.emit(Event::JobSettled { job, refund });
            }
            _ => {}
        }
    }

    /// Returns the unused escrow to the payer (giving the mandate room back)
    /// and sets the job's final status.
    pub(crate) fn refund_escrow(&mut self, job: JobId, status: JobStatus) -> Amount {
        let Some(j) = self.job_mut(job) else {
            return Amount::ZERO;
        };
        let refund = j.escrow;
        j.escrow = Amount::ZERO;
        j.status = status;
        let payer = j.payer;
        let mandate = j.spec.mandate;
        self.credit(payer, refund);
        self.release_roles(job);
        if let Some(mid) = mandate {
            if let Some(m) = self.mandate_mut(mid) {
                m.spent = m.spent.saturating_sub(refund);
            }
        }
        refund
    }

    /// Releases every provider holding a role in one stage (no pay, no
    /// penalty) and marks the stage cancelled.
    pub(crate) fn cancel_stage(&mut self, job: JobId, stage: u32) {
        let Some(j) = self.jobs.get(&job) else { return };
        let Some(st) = j.stages.get(stage as usize) else {
            return;
        };
        if matches!(st.phase, StagePhase::Finalized | StagePhase::Cancelled) {
            return;
        }
        let release: Vec<(Address, bool)> = st
            .slots
            .iter()
            .filter_map(|s| s.assignment.as_ref())
            .map(|a| (a.provider, a.result.is_none()))
            .collect();
        self.release_auditor(job, stage, false);
        for (p, active) in release {
            if let Some(p) = self.provider_mut(p) {
                if active {
                    p.active = p.active.saturating_sub(1);
                }
                p.open = p.open.saturating_sub(1);
            }
        }
        if let Some(j) = self.job_mut(job) {
            j.stages[stage as usize].phase = StagePhase::Cancelled;
        }
    }

    /// Releases every provider still holding part of a stopped job and
    /// marks its unfinished stages cancelled.
    pub(crate) fn stop_stages(&mut self, job: JobId) {
        let n = self.jobs.get(&job).map_or(0, |j| j.stages.len());
        for s in 0..n as u32 {
            self.cancel_stage(job, s);
        }
        self.matching.remove(&job);
        self.claims.remove(&job);
    }

    /// `CancelJob`: the requester withdraws a job no provider has committed
    /// work for. Every assigned provider is released without penalty, the
    /// whole escrow goes back to the payer (and its room to the mandate).
    pub(crate) fn cancel_job_tx(
        &mut self,
        who: Address,
        fee: Amount,
        job: JobId,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let j = self.jobs.get(&job).ok_or(TxError::UnknownJob(job))?;
        if j.requester != who {
            return Err(TxError::NotRequester);
        }
        if j.status != JobStatus::Active {
            return Err(TxError::JobNotActive(job));
        }
        let started = j.stages.iter().any(|st| {
            !matches!(
                st.phase,
                StagePhase::Matching { .. } | StagePhase::Running { .. }
            ) || st.slots.iter().any(|s| {
                s.assignment
                    .as_ref()
                    .is_some_and(|a| a.commitment.is_some())
            })
        });
        if started {
            return Err(TxError::JobStarted);
        }
        self.charge(who, fee);
        self.cancel_job(job, ctx);
        Ok(())
    }

    /// No provider qualified in time, or the requester cancelled: release,
    /// refund, cancel.
    pub(crate) fn cancel_job(&mut self, job: JobId, ctx: &mut BlockCtx) {
        self.stop_stages(job);
        let refund = self.refund_escrow(job, JobStatus::Cancelled);
        ctx.emit(Event::JobCancelled { job, refund });
    }

    /// A stage lost a dispute: the job fails.
    ///
    /// Stages that delivered a result and are still being verified (auditing,
    /// challengeable, or in a dispute of their own) run on to their end and
    /// pay their honest replicas and auditors from the escrow as usual: a
    /// provider is never unpaid for delivered work because another party
    /// cheated. Stages not yet delivered are released (no pay, no penalty).
    /// The escrow is refunded now except what those live stages may still
    /// pay; that remainder is refunded when the last of them settles
    /// (`JobSettled`).
    pub(crate) fn fail_job(&mut self, job: JobId, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        if j.status != JobStatus::Active {
            return;
        }
        let undelivered: Vec<u32> = j
            .stages
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                matches!(
                    s.phase,
                    StagePhase::Matching { .. } | StagePhase::Running { .. }
                )
            })
            .map(|(i, _)| i as u32)
            .collect();
        for s in undelivered {
            self.cancel_stage(job, s);
        }
        self.matching.remove(&job);
        self.claims.remove(&job);
        let reserve = self.live_reserve(job);
        let Some(j) = self.job_mut(job) else { return };
        j.status = JobStatus::Failed;
        let refund = j.escrow.saturating_sub(reserve);
        j.escrow = j.escrow.saturating_sub(refund);
        let payer = j.payer;
        let mandate = j.spec.mandate;
        self.credit(payer, refund);
        if let Some(mid) = mandate {
            if let Some(m) = self.mandate_mut(mid) {
                m.spent = m.spent.saturating_sub(refund);
            }
        }
        // With no live stage left the refund above was the whole escrow;
        // otherwise the last live stage to end settles the job (`JobSettled`).
        self.release_roles(job);
        ctx.emit(Event::JobFailed { job, refund });
    }

    /// What a job's live (delivered, still verified) stages may yet pay: each
    /// replica's bill and each auditor's fee.
    fn live_reserve(&self, job: JobId) -> Amount {
        let Some(j) = self.jobs.get(&job) else {
            return Amount::ZERO;
        };
        let mut total = Amount::ZERO;
        for (i, st) in j.stages.iter().enumerate() {
            if matches!(st.phase, StagePhase::Finalized | StagePhase::Cancelled) {
                continue;
            }
            let ops = j.spec.stages[i].ops;
            let mut prices: Vec<Amount> = st
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .map(|a| a.price)
                .collect();
            match (&st.audit, st.phase) {
                (_, StagePhase::Auditing { price, .. }) => prices.push(price),
                (Some(a), _) => prices.push(a.price),
                (None, StagePhase::Disputed { dispute }) => {
                    // An auditor that disputes is paid if it wins.
                    if let Some(d) = self.disputes.get(&dispute) {
                        if d.kind == super::DisputeKind::Audit {
                            prices.push(d.challenger_price);
                        }
                    }
                }
                _ => {}
            }
            for p in prices {
                let bill = Amount::cost(ops, p).unwrap_or_default();
                total = Amount(total.0.saturating_add(bill.0));
            }
        }
        total
    }
}

/// The beacon's audit draw for a stage, uniform in `0..1_000_000`.
pub fn audit_draw(beacon: &[u8; 32], job: JobId, stage: u32) -> u32 {
    let h = Hash::digest(
        "agentic audit draw v1",
        &[beacon, &job.0.to_be_bytes(), &stage.to_be_bytes()],
    );
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.0[..8]);
    (u64::from_le_bytes(b) % PPM as u64) as u32
}

/// The seed of the stake-weighted draw of replica `replica` (≥ 1) of a stage.
pub fn replica_seed(beacon: &[u8; 32], job: JobId, stage: u32, replica: u8) -> [u8; 32] {
    Hash::digest(
        "agentic replica draw v1",
        &[
            beacon,
            &job.0.to_be_bytes(),
            &stage.to_be_bytes(),
            &[replica],
        ],
    )
    .0
}

/// The seed of the stake-weighted draw of a stage's auditor.
pub fn auditor_seed(beacon: &[u8; 32], job: JobId, stage: u32) -> [u8; 32] {
    Hash::digest(
        "agentic auditor draw v1",
        &[beacon, &job.0.to_be_bytes(), &stage.to_be_bytes()],
    )
    .0
}
