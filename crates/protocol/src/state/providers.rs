//! Providers: RegisterProvider, UpdateProvider, Retire.
//!
//! A provider is an account with a standing [`Offer`] and at least
//! `min_provider_stake` bonded. The offer carries what matching uses
//! (price, capabilities, region, coordinate, capacity) and what requesters
//! use off-chain: the data-plane `endpoint` (`host:port`) and the measured
//! `speed` (ops/s) their partitioner places stages by; the ledger checks
//! only the endpoint's form. Retiring is allowed once it holds no open
//! assignment or audit (its liability for past work ends with the last
//! challenge window); a retired provider keeps its reputation and may
//! register again.

use super::{BlockCtx, Provider, State, StateKey};
use crate::error::TxError;
use crate::event::Event;
use crate::tx::Offer;
use crate::types::{Address, Amount};

fn check_offer(offer: &Offer) -> Result<(), TxError> {
    if offer.price.0 == 0 {
        return Err(TxError::InvalidOffer("price must be positive".into()));
    }
    if offer.capacity == 0 {
        return Err(TxError::InvalidOffer("capacity must be positive".into()));
    }
    // Decoding already refuses a malformed endpoint; this covers offers
    // built in memory through the public field.
    if offer.endpoint.check().is_err() {
        return Err(TxError::InvalidOffer(
            "endpoint must be at most 128 bytes of printable ASCII without spaces".into(),
        ));
    }
    Ok(())
}

impl State {
    /// Registers a [`GenesisProvider`] while the genesis state is built.
    pub(crate) fn register_at_genesis(
        &mut self,
        gp: &super::GenesisProvider,
    ) -> Result<(), super::GenesisError> {
        let address = gp.address;
        check_offer(&gp.offer).map_err(|_| super::GenesisError::ProviderOffer(address))?;
        if self.providers.contains_key(&address) {
            return Err(super::GenesisError::DuplicateProvider(address));
        }
        if self.account(&address).bonded < self.params.min_provider_stake {
            return Err(super::GenesisError::ProviderStake(address));
        }
        self.providers
            .insert(address, Provider::new(gp.offer.clone(), self.now()));
        self.offers.touch(address);
        Ok(())
    }

    pub(crate) fn register_provider(
        &mut self,
        who: Address,
        fee: Amount,
        avail: Amount,
        offer: &Offer,
        stake: Amount,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        check_offer(offer)?;
        let existing = self.providers.get(&who);
        if matches!(existing, Some(p) if !p.retired) {
            return Err(TxError::AlreadyRegistered);
        }
        if avail < stake {
            return Err(TxError::InsufficientBalance {
                need: stake.checked_add(fee).ok_or(TxError::Overflow)?,
                have: avail.checked_add(fee).ok_or(TxError::Overflow)?,
            });
        }
        let bonded = self.account(&who).bonded;
        let total = bonded.checked_add(stake).ok_or(TxError::Overflow)?;
        if total < self.params.min_provider_stake {
            return Err(TxError::InsufficientStake {
                need: self.params.min_provider_stake,
                have: total,
            });
        }
        self.charge(who, fee);
        if stake.0 > 0 {
            self.do_bond(who, stake);
            ctx.emit(Event::Bonded { who, amount: stake });
        }
        let now = self.now();
        // A retired provider coming back keeps its record and what it still holds.
        let record = match self.providers.get(&who) {
            Some(p) => Provider {
                offer: offer.clone(),
                registered_at: now,
                retired: false,
                ..p.clone()
            },
            None => Provider::new(offer.clone(), now),
        };
        self.commit
            .touch(StateKey::Provider(who), self.providers.get(&who));
        self.providers.insert(who, record);
        self.offers.touch(who);
        ctx.emit(Event::ProviderRegistered { provider: who });
        Ok(())
    }

    pub(crate) fn update_provider(
        &mut self,
        who: Address,
        fee: Amount,
        offer: &Offer,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        check_offer(offer)?;
        match self.providers.get(&who) {
            Some(p) if !p.retired => {}
            _ => return Err(TxError::NotProvider(who)),
        }
        self.charge(who, fee);
        if let Some(p) = self.provider_mut(who) {
            p.offer = offer.clone();
        }
        ctx.emit(Event::ProviderUpdated { provider: who });
        Ok(())
    }

    pub(crate) fn retire(
        &mut self,
        who: Address,
        fee: Amount,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        match self.providers.get(&who) {
            Some(p) if !p.retired => {
                if p.open > 0 {
                    return Err(TxError::OpenAssignments(p.open));
                }
            }
            _ => return Err(TxError::NotProvider(who)),
        }
        // Not out of a dispute either (as defendant, replica or auditor).
        self.check_no_obligations(&who)?;
        self.charge(who, fee);
        if let Some(p) = self.provider_mut(who) {
            p.retired = true;
        }
        ctx.emit(Event::ProviderRetired { provider: who });
        Ok(())
    }

    /// A provider's reputation score now, bounded by its stake.
    pub(crate) fn score(&self, p: &Provider, who: &Address) -> u32 {
        let stake = self.account(who).bonded;
        p.reputation
            .score_ppm(self.meta.height.0, stake.0, &self.reputation_params())
    }

    /// The reputation parameters derived from the governed ones.
    pub(crate) fn reputation_params(&self) -> crate::reputation::ReputationParams {
        crate::reputation::ReputationParams {
            half_life_blocks: self.params.reputation_half_life,
            stake_per_value_ppm: self.params.reputation_stake_ratio,
            ..crate::reputation::ReputationParams::default()
        }
    }
}
