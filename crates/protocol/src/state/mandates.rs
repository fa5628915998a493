//! Mandates: `GrantMandate` and `RevokeMandate`.
//!
//! A mandate lets an agent spend from its principal's balance within caps
//! (total, per job, unit price), until an expiry, at or above a minimum
//! verification level. The principal grants and revokes it; the agent uses
//! it in `SubmitJob` (`jobs::submit`), where the escrow comes from the
//! principal's balance and counts against the caps (`spent`). Every refund
//! of that escrow goes back to the principal and gives the mandate that much
//! room again (`jobs::settle`, `jobs::stop`).

use super::{BlockCtx, Mandate, State, StateKey};
use crate::error::TxError;
use crate::event::Event;
use crate::tx::MandateTerms;
use crate::types::{Address, Amount, MandateId};

impl State {
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
        let at = self.mandate_prune_height(terms.expiry);
        self.schedule(at, super::Timer::Prune(StateKey::Mandate(id)));
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
        self.schedule_prune(StateKey::Mandate(id));
        ctx.emit(Event::MandateRevoked { mandate: id });
        Ok(())
    }
}
