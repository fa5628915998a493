//! `SubmitJob`: the spec's checks, the escrow and who pays it.
//!
//! Escrow is `Σ_stages ops × max_price × (replicas + a)` where `a = 1` when
//! the job can be audited (verification above `Optimistic`): one auditor's
//! fee per stage is reserved. For a generation job a stage's `ops` are its
//! ops over `max_tokens` steps ([`JobSpec::stage_max_ops`]); such a job has
//! one replica per stage, no training stage, and `1 ≤ prompt_tokens`,
//! `1 ≤ max_tokens`, `prompt_tokens + max_tokens ≤ MAX_GENERATION_TOKENS`. Under a mandate the escrow comes from the
//! principal's balance and counts against the mandate's caps; every refund
//! goes back to the principal and gives the mandate that much room again.
//!
//! A job enters matching in the block that accepts it; a named placement
//! must qualify already at submission (it is checked again at matching).

use crate::error::TxError;
use crate::event::Event;
use crate::state::{BlockCtx, Job, JobStatus, Slot, Stage, StagePhase, State};
use crate::tx::JobSpec;
use crate::types::{limits, Address, Amount, JobId, VerificationLevel, PPM};

impl State {
    /// The escrow a job locks (see the module docs); `None` on overflow.
    pub fn escrow_for(spec: &JobSpec) -> Option<Amount> {
        let copies = spec.requirements.replicas as u128
            + u128::from(spec.requirements.verification != VerificationLevel::Optimistic);
        let mut total: u128 = 0;
        for i in 0..spec.stages.len() {
            let c = Amount::cost(spec.stage_max_ops(i)?, spec.max_price)?;
            total = total.checked_add(c.0.checked_mul(copies)?)?;
        }
        Some(Amount(total))
    }

    /// A generation job's own rules: token counts in range, every stage's
    /// ops over `max_tokens` steps countable, one provider per stage (the
    /// session), no training stage.
    fn check_generation(spec: &JobSpec) -> Result<(), TxError> {
        let Some(g) = spec.generation else {
            return Ok(());
        };
        if g.prompt_tokens == 0 {
            return Err(TxError::InvalidJob("generation needs a prompt".into()));
        }
        if g.max_tokens == 0 {
            return Err(TxError::InvalidJob(
                "generation needs max_tokens of at least 1".into(),
            ));
        }
        if g.prompt_tokens
            .checked_add(g.max_tokens)
            .is_none_or(|t| t > limits::MAX_GENERATION_TOKENS)
        {
            return Err(TxError::InvalidJob(
                "prompt plus max_tokens above MAX_GENERATION_TOKENS".into(),
            ));
        }
        if spec.requirements.replicas != 1 {
            return Err(TxError::GenerationReplicas(spec.requirements.replicas));
        }
        for (i, s) in spec.stages.iter().enumerate() {
            if s.step_units != 0 {
                return Err(TxError::InvalidJob(
                    "a generation job has no training stage".into(),
                ));
            }
            if spec.stage_max_ops(i).is_none() {
                return Err(TxError::InvalidJob(
                    "generation ops over max_tokens overflow".into(),
                ));
            }
        }
        Ok(())
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
        // No provider could ever bond more than every token there is: such a
        // job would only wait out its match timeout.
        let supply = self
            .meta
            .genesis_supply
            .0
            .saturating_add(self.meta.issued.0);
        if spec.requirements.min_stake.0 > supply {
            return Err(TxError::InvalidJob(
                "min stake above the whole token supply: no provider could ever qualify".into(),
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
        State::check_generation(spec)?;
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
        self.commit.touch_job(id, None);
        self.jobs.insert(id, job);
        self.enqueue_match(id);
        ctx.emit(Event::JobSubmitted {
            job: id,
            payer,
            escrow,
        });
        Ok(())
    }
}
