//! Governance: Propose, Vote; tallies and activation.
//!
//! ```text
//!   Propose (bonded ≥ proposal_min_stake; change valid now)
//!     │ voting open for `voting_period` blocks; quorum base = total bonded now
//!     ▼
//!   Vote: weight = the voter's bonded stake when it votes (one vote each)
//!     │ after voting_ends:
//!     ▼
//!   passed ⇔ yes + no ≥ quorum_ppm × bonded_snapshot  and  yes > threshold_ppm × (yes + no)
//!     │ takes effect in the per-block step of height voting_ends + activation_delay
//!     ▼
//!   Enacted (or Voided if, by then, other changes made it invalid)
//! ```
//!
//! Snapshot rule: a vote's weight is fixed when cast. Stake cannot vote
//! twice by moving: a voter's `Unbond` is refused until the end of the
//! longest vote it joined (`StakeLocked`), fixed when it voted and so
//! immune to later changes of `voting_period` or `unbonding_delay`; and a
//! parameter rule keeps any new vote shorter than the unbonding delay.

use super::{BlockCtx, Proposal, ProposalStatus, State, StateKey, Timer, VoteRecord};
use crate::error::TxError;
use crate::event::Event;
use crate::params::{ParamChange, ParamError};
use crate::types::{Address, Amount, ProposalId};

impl State {
    pub(crate) fn propose(
        &mut self,
        who: Address,
        fee: Amount,
        change: ParamChange,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let bonded = self.account(&who).bonded;
        if bonded < self.params.proposal_min_stake {
            return Err(TxError::InsufficientStake {
                need: self.params.proposal_min_stake,
                have: bonded,
            });
        }
        let next = self.params.with_change(change)?;
        self.check_open_votes(&next)?;
        self.charge(who, fee);
        let id = self.meta.next_proposal;
        self.meta.next_proposal = ProposalId(id.0 + 1);
        let voting_ends = self.now().plus(self.params.voting_period);
        self.commit.touch::<Proposal>(StateKey::Proposal(id), None);
        self.proposals.insert(
            id,
            Proposal {
                proposer: who,
                change,
                voting_ends,
                bonded_snapshot: self.meta.total_bonded,
                yes: Amount::ZERO,
                no: Amount::ZERO,
                status: ProposalStatus::Voting,
            },
        );
        self.schedule(voting_ends.plus(1), Timer::Tally(id));
        ctx.emit(Event::ProposalSubmitted {
            proposal: id,
            change,
            voting_ends,
        });
        Ok(())
    }

    pub(crate) fn vote(
        &mut self,
        who: Address,
        fee: Amount,
        id: ProposalId,
        approve: bool,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let p = self
            .proposals
            .get(&id)
            .ok_or(TxError::UnknownProposal(id))?;
        if p.status != ProposalStatus::Voting || self.now() > p.voting_ends {
            return Err(TxError::VotingClosed);
        }
        if self.votes.contains_key(&(id, who)) {
            return Err(TxError::AlreadyVoted);
        }
        let weight = self.account(&who).bonded;
        if weight.0 == 0 {
            return Err(TxError::InsufficientStake {
                need: Amount(1),
                have: weight,
            });
        }
        let (yes, no) = if approve {
            (p.yes.checked_add(weight).ok_or(TxError::Overflow)?, p.no)
        } else {
            (p.yes, p.no.checked_add(weight).ok_or(TxError::Overflow)?)
        };
        self.charge(who, fee);
        if let Some(p) = self.proposal_mut(id) {
            p.yes = yes;
            p.no = no;
        }
        self.commit
            .touch::<VoteRecord>(StateKey::Vote(id, who), None);
        self.votes.insert((id, who), VoteRecord { approve, weight });
        // The stake that voted stays bonded until this vote ends, whatever
        // later changes to the voting period or unbonding delay say.
        let until = self.proposals.get(&id).map(|p| p.voting_ends);
        if let Some(until) = until {
            let lock = self.vote_locks.entry(who).or_insert(until);
            if *lock < until {
                *lock = until;
            }
        }
        ctx.emit(Event::Voted {
            proposal: id,
            voter: who,
            approve,
            weight,
        });
        Ok(())
    }

    /// Cross-parameter rules against every open vote: the unbonding delay
    /// may not become shorter than what is left of any vote still open (stake
    /// unbonded now must not be free before a vote it could have joined ends).
    fn check_open_votes(&self, next: &crate::params::Params) -> Result<(), ParamError> {
        let now = self.now();
        let longest = self
            .proposals
            .values()
            .filter(|p| p.status == ProposalStatus::Voting)
            .map(|p| p.voting_ends.0.saturating_sub(now.0))
            .max()
            .unwrap_or(0);
        if next.unbonding_delay < longest {
            return Err(ParamError::VotingOutlastsUnbonding);
        }
        Ok(())
    }

    /// Per-block: count a proposal whose voting period ended.
    pub(crate) fn tally_proposal(&mut self, id: ProposalId, ctx: &mut BlockCtx) {
        let Some(p) = self.proposals.get(&id) else {
            return;
        };
        if p.status != ProposalStatus::Voting || p.voting_ends >= self.now() {
            return;
        }
        let cast = Amount(p.yes.0.saturating_add(p.no.0));
        let quorum = cast >= p.bonded_snapshot.mul_ppm(self.params.quorum_ppm) && cast.0 > 0;
        let threshold = p.yes > cast.mul_ppm(self.params.threshold_ppm);
        let activates = p.voting_ends.plus(self.params.activation_delay);
        let passed = quorum && threshold;
        if let Some(p) = self.proposal_mut(id) {
            p.status = if passed {
                ProposalStatus::Passed { activates }
            } else {
                ProposalStatus::Rejected
            };
        }
        if passed {
            self.schedule(activates, Timer::Activate(id));
            ctx.emit(Event::ProposalPassed {
                proposal: id,
                activates,
            });
        } else {
            self.schedule_prune(StateKey::Proposal(id));
            ctx.emit(Event::ProposalRejected { proposal: id });
        }
    }

    /// Per-block: a passed change takes effect at its activation height.
    pub(crate) fn activate_proposal(&mut self, id: ProposalId, ctx: &mut BlockCtx) {
        let Some(p) = self.proposals.get(&id) else {
            return;
        };
        let ProposalStatus::Passed { activates } = p.status else {
            return;
        };
        if activates > self.now() {
            return;
        }
        let change = p.change;
        let next = self
            .params
            .with_change(change)
            .and_then(|next| self.check_open_votes(&next).map(|()| next));
        match next {
            Ok(next) => {
                self.params = next;
                if let Some(p) = self.proposal_mut(id) {
                    p.status = ProposalStatus::Enacted;
                }
                self.schedule_prune(StateKey::Proposal(id));
                // A parameter may have made a waiting job matchable (a lower
                // provider minimum stake): every waiting job is tried again.
                self.wake_all_waiting();
                ctx.emit(Event::ParamChanged {
                    proposal: id,
                    change,
                });
            }
            Err(_) => {
                if let Some(p) = self.proposal_mut(id) {
                    p.status = ProposalStatus::Voided;
                }
                self.schedule_prune(StateKey::Proposal(id));
                ctx.emit(Event::ProposalVoided { proposal: id });
            }
        }
    }
}
