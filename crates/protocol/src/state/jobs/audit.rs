//! Audits: whether a stage is audited, and who audits it.
//!
//! When a stage's last commitment lands, that block's beacon — unknowable
//! when the replicas signed — decides: `Optimistic` never, `Audited` always,
//! `Sampled` with a probability that falls with reputation and rises with
//! the stage's value against the slashable stake
//! ([`State::audit_probability_for`], [`State::value_floor`]), compared
//! against [`audit_draw`]. The auditor is drawn by stake ([`auditor_seed`])
//! among providers with no role in the job and not excluded from it, and
//! commits before any replica reveals; if nobody qualifies, reveals open
//! unaudited.
//!
//! The auditor's transactions (`AuditCommit`, `AuditReport`) are in
//! `state::disputes`; its missed deadline in `jobs::deadlines`.

use crate::event::Event;
use crate::state::{AuditSlot, BlockCtx, StagePhase, State, Timer};
use crate::types::{Address, Amount, Hash, JobId, VerificationLevel, PPM};

impl State {
    /// Every replica's commitment is final (in this block): the block's
    /// beacon — unknowable when they signed — decides whether the stage is
    /// audited and draws the auditor by stake. An audited stage waits for the
    /// auditor's commitment before anyone reveals; otherwise reveals open now.
    ///
    /// A generation stage re-filled after its provider missed a deadline keeps
    /// an auditor already drawn for it (its commitment binds the auditor's own
    /// replay, the same for any honest holder); one re-filled after another
    /// stage revealed is always audited under `Sampled`, for its provider saw
    /// the revealed hashes it must chain to before committing.
    pub(super) fn on_stage_committed(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        let st = &j.stages[stage as usize];
        if st.audit.is_some() {
            // Drawn before the stage was re-filled: reveals open once it commits
            // (`AuditCommit`), or now if it has.
            if st.audit.as_ref().is_some_and(|a| a.commitment.is_some()) {
                self.open_reveals(job, stage);
            }
            return;
        }
        let rebuilt = j.is_generation() && j.stages.iter().any(|s| s.result.is_some());
        let level = j.spec.requirements.verification;
        let audited = match level {
            VerificationLevel::Optimistic => false,
            VerificationLevel::Audited => true,
            VerificationLevel::Sampled if rebuilt => true,
            VerificationLevel::Sampled => {
                // The most tempting provider sets the odds: the lowest score and,
                // for the value floor, each provider's own value against its
                // slashable stake.
                // Before the reveal, a generation's steps are unknown: its
                // value is taken at `max_tokens` (the most it can bill).
                let ops = j.spec.stage_max_ops(stage as usize).unwrap_or(u64::MAX);
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
        self.flush_offers();
        let Some(j) = self.jobs.get(&job) else {
            return false;
        };
        let used = State::job_providers(j);
        let seed = auditor_seed(&ctx.beacon, job, stage);
        let Some((auditor, price)) = self.draw(j, &used, &seed, &mut 0) else {
            return false;
        };
        let deadline = self.now().plus(self.params.audit_window);
        if let Some(p) = self.provider_mut(auditor) {
            p.active += 1;
            p.open += 1;
        }
        self.add_role(auditor, job);
        if let Some(jm) = self.job_mut(job) {
            jm.stages[stage as usize].audit = Some(AuditSlot {
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
        let ops = j.billed_ops(stage as usize);
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

/// The seed of the stake-weighted draw of a stage's auditor.
pub fn auditor_seed(beacon: &[u8; 32], job: JobId, stage: u32) -> [u8; 32] {
    Hash::digest(
        "agentic auditor draw v1",
        &[beacon, &job.0.to_be_bytes(), &stage.to_be_bytes()],
    )
    .0
}
