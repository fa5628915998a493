//! Accounts and staking: Transfer, Bond, Unbond, Withdraw; release of
//! unbonded stake and issuance.
//!
//! ```text
//!   balance ──Bond──▶ bonded ──Unbond──▶ unbonding queue ──(delay)──▶ withdrawable ──Withdraw──▶ balance
//!                        │                     │                              │
//!                        └─────────────────────┴──────────────────────────────┴── slashed (dispute lost, deadline missed)
//! ```
//!
//! **Slashable stake** is everything staked that has not been withdrawn:
//! bonded + unbonding + withdrawable. Taking a slash draws from bonded
//! first, then the unbonding queue (latest release first), then
//! withdrawable. Unbonding therefore never dodges a slash, and stake leaves
//! the ledger's reach only through `Withdraw`, which is refused while the
//! account holds any open job role, audit or dispute.
//!
//! `Unbond` keeps, for a registered provider, `min_provider_stake` and the
//! `min_stake` of every job it holds a role in bonded, and is refused while
//! stake the account voted with is locked (until the vote ends).

use super::{AccountSlot, BlockCtx, State, StateKey};
use crate::error::TxError;
use crate::event::Event;
use crate::types::{Address, Amount, Height};

impl State {
    /// The transfer fast path: nonce, fee and amount checked and applied
    /// with one map lookup per side.
    pub(crate) fn transfer(
        &mut self,
        from: Address,
        nonce: u64,
        fee: Amount,
        to: Address,
        amount: Amount,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let epoch = self.meta.height.0;
        let slot = self.accounts.get_mut(&from).ok_or(TxError::BadNonce {
            expected: 0,
            got: nonce,
        });
        let slot = match slot {
            Ok(s) => s,
            // A never-seen account has nonce 0 and no balance.
            Err(_) if nonce != 0 => {
                return Err(TxError::BadNonce {
                    expected: 0,
                    got: nonce,
                })
            }
            Err(_) => {
                let need = fee.checked_add(amount).ok_or(TxError::Overflow)?;
                return Err(TxError::InsufficientBalance {
                    need,
                    have: Amount::ZERO,
                });
            }
        };
        if slot.acct.nonce != nonce {
            return Err(TxError::BadNonce {
                expected: slot.acct.nonce,
                got: nonce,
            });
        }
        let need = fee.checked_add(amount).ok_or(TxError::Overflow)?;
        if slot.acct.balance < need {
            return Err(TxError::InsufficientBalance {
                need,
                have: slot.acct.balance,
            });
        }
        if amount.0 == 0 {
            return Err(TxError::ZeroAmount);
        }
        // Validation done: mutate.
        self.commit.touch_account(from, slot, epoch);
        slot.acct.nonce += 1;
        slot.acct.balance = Amount(slot.acct.balance.0 - need.0);
        self.meta.burned = Amount(self.meta.burned.0.saturating_add(fee.0));
        let commit = &mut self.commit;
        let dest = self.accounts.entry(to).or_insert_with(|| {
            commit.new_account(to);
            AccountSlot {
                acct: Default::default(),
                touched: epoch,
            }
        });
        commit.touch_account(to, dest, epoch);
        // Cannot overflow: total supply fits in u128.
        dest.acct.balance = Amount(dest.acct.balance.0.saturating_add(amount.0));
        ctx.emit(Event::Transferred { from, to, amount });
        Ok(())
    }

    pub(crate) fn bond(
        &mut self,
        who: Address,
        fee: Amount,
        avail: Amount,
        amount: Amount,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        if amount.0 == 0 {
            return Err(TxError::ZeroAmount);
        }
        if avail < amount {
            return Err(TxError::InsufficientBalance {
                need: amount.checked_add(fee).ok_or(TxError::Overflow)?,
                have: avail.checked_add(fee).ok_or(TxError::Overflow)?,
            });
        }
        self.charge(who, fee);
        self.do_bond(who, amount);
        ctx.emit(Event::Bonded { who, amount });
        Ok(())
    }

    /// Moves `amount` from balance to bonded (caller checked the balance).
    pub(crate) fn do_bond(&mut self, who: Address, amount: Amount) {
        let a = self.account_mut(who);
        a.balance = a.balance.saturating_sub(amount);
        a.bonded = Amount(a.bonded.0.saturating_add(amount.0));
        self.meta.total_bonded = Amount(self.meta.total_bonded.0.saturating_add(amount.0));
        // A provider's stake weighs its offer in stake draws.
        self.offers.touch(who);
    }

    pub(crate) fn unbond(
        &mut self,
        who: Address,
        fee: Amount,
        amount: Amount,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        if amount.0 == 0 {
            return Err(TxError::ZeroAmount);
        }
        let acct = self.account(&who);
        if acct.bonded < amount {
            return Err(TxError::InsufficientStake {
                need: amount,
                have: acct.bonded,
            });
        }
        // Stake that voted stays bonded until the longest vote it joined ends.
        if let Some(&until) = self.vote_locks.get(&who) {
            if self.now() <= until {
                return Err(TxError::StakeLocked(until));
            }
        }
        // A provider keeps the minimum stake, and every assigned job's
        // `min_stake`, bonded.
        let min = self.required_bond(&who);
        let left = acct.bonded.saturating_sub(amount);
        if left < min {
            return Err(TxError::InsufficientStake {
                need: min.checked_add(amount).ok_or(TxError::Overflow)?,
                have: acct.bonded,
            });
        }
        let release = self.meta.height.plus(self.params.unbonding_delay);
        let key = (release, who);
        let queued = self.unbonding.get(&key).copied().unwrap_or_default();
        let queued_after = queued.checked_add(amount).ok_or(TxError::Overflow)?;
        self.charge(who, fee);
        let a = self.account_mut(who);
        a.bonded = a.bonded.saturating_sub(amount);
        self.meta.total_bonded = self.meta.total_bonded.saturating_sub(amount);
        self.offers.touch(who);
        self.commit
            .touch(StateKey::Unbonding(release, who), self.unbonding.get(&key));
        self.unbonding.insert(key, queued_after);
        self.unbonding_by.entry(who).or_default().insert(release);
        ctx.emit(Event::UnbondStarted {
            who,
            amount,
            release,
        });
        Ok(())
    }

    pub(crate) fn withdraw(
        &mut self,
        who: Address,
        fee: Amount,
        amount: Amount,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        if amount.0 == 0 {
            return Err(TxError::ZeroAmount);
        }
        let acct = self.account(&who);
        if acct.withdrawable < amount {
            return Err(TxError::InsufficientWithdrawable {
                need: amount,
                have: acct.withdrawable,
            });
        }
        // Withdrawn stake is out of the ledger's reach: not while it may owe a slash.
        self.check_no_obligations(&who)?;
        self.charge(who, fee);
        let a = self.account_mut(who);
        a.withdrawable = a.withdrawable.saturating_sub(amount);
        a.balance = Amount(a.balance.0.saturating_add(amount.0));
        ctx.emit(Event::Withdrawn { who, amount });
        Ok(())
    }

    /// Per-block: unbonding entries whose release height has come become
    /// withdrawable.
    pub(crate) fn release_unbonded(&mut self, ctx: &mut BlockCtx) {
        let h = self.meta.height;
        while let Some((&(release, who), &amount)) = self.unbonding.first_key_value() {
            if release > h {
                break;
            }
            self.commit
                .touch(StateKey::Unbonding(release, who), Some(&amount));
            self.unbonding.remove(&(release, who));
            self.forget_unbonding(who, release);
            let a = self.account_mut(who);
            a.withdrawable = Amount(a.withdrawable.0.saturating_add(amount.0));
            ctx.emit(Event::UnbondReleased { who, amount });
        }
    }

    /// Per-block: mint the governed issuance to the treasury.
    pub(crate) fn issue(&mut self, ctx: &mut BlockCtx) {
        let amount = self.params.issuance_per_block;
        if amount.0 == 0 {
            return;
        }
        let Some(issued) = self.meta.issued.checked_add(amount) else {
            return;
        };
        let total = self.meta.genesis_supply.checked_add(issued);
        if total.is_none() {
            return;
        }
        self.meta.issued = issued;
        let to = self.meta.treasury;
        self.credit(to, amount);
        ctx.emit(Event::Issued { to, amount });
    }

    /// Everything `who` staked and has not withdrawn: bonded + unbonding +
    /// withdrawable. Slashes are a share of this.
    pub fn slashable(&self, who: &Address) -> Amount {
        let a = self.account(who);
        let unbonding: u128 = self
            .unbonding_by
            .get(who)
            .map(|hs| {
                hs.iter()
                    .filter_map(|h| self.unbonding.get(&(*h, *who)))
                    .map(|x| x.0)
                    .sum()
            })
            .unwrap_or(0);
        Amount(
            a.bonded
                .0
                .saturating_add(unbonding)
                .saturating_add(a.withdrawable.0),
        )
    }

    /// Slashes `ppm` of `who`'s slashable stake ([`State::slashable`]): from
    /// bonded first, then the unbonding queue (latest release first), then
    /// withdrawable. Returns the amount taken (the caller distributes it).
    pub(crate) fn take_stake(&mut self, who: Address, ppm: u32) -> Amount {
        let amount = self.slashable(&who).mul_ppm(ppm);
        if amount.0 == 0 {
            return amount;
        }
        let mut left = amount;
        let a = self.account_mut(who);
        let from_bonded = if a.bonded < left { a.bonded } else { left };
        a.bonded = a.bonded.saturating_sub(from_bonded);
        left = left.saturating_sub(from_bonded);
        self.meta.total_bonded = self.meta.total_bonded.saturating_sub(from_bonded);
        self.offers.touch(who);
        let releases: Vec<Height> = self
            .unbonding_by
            .get(&who)
            .map(|hs| hs.iter().rev().copied().collect())
            .unwrap_or_default();
        for release in releases {
            if left.0 == 0 {
                break;
            }
            let key = (release, who);
            let Some(&queued) = self.unbonding.get(&key) else {
                continue;
            };
            let take = if queued < left { queued } else { left };
            left = left.saturating_sub(take);
            self.commit
                .touch(StateKey::Unbonding(release, who), Some(&queued));
            let rest = queued.saturating_sub(take);
            if rest.0 == 0 {
                self.unbonding.remove(&key);
                self.forget_unbonding(who, release);
            } else {
                self.unbonding.insert(key, rest);
            }
        }
        if left.0 > 0 {
            let a = self.account_mut(who);
            let take = if a.withdrawable < left {
                a.withdrawable
            } else {
                left
            };
            a.withdrawable = a.withdrawable.saturating_sub(take);
        }
        amount
    }

    /// Drops `release` from `who`'s unbonding index.
    fn forget_unbonding(&mut self, who: Address, release: Height) {
        if let Some(hs) = self.unbonding_by.get_mut(&who) {
            hs.remove(&release);
            if hs.is_empty() {
                self.unbonding_by.remove(&who);
            }
        }
    }

    /// Height helper for handlers.
    pub(crate) fn now(&self) -> Height {
        self.meta.height
    }
}
