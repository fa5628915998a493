//! Reads: the entities by id or in key order, and the supply invariant.
//!
//! Everything here takes `&self`; the node API and the tests read the state
//! through these, never through its maps.

use super::{
    Account, Dispute, DisputeKind, DisputePhase, Job, Mandate, Meta, Proposal, Provider, State,
    VoteRecord,
};
use crate::params::Params;
use crate::types::{
    Address, Amount, ChainId, DisputeId, Hash, Height, JobId, MandateId, ProposalId,
};

impl State {
    /// The chain id.
    pub fn chain_id(&self) -> ChainId {
        self.chain_id
    }
    /// Height of the last applied block.
    pub fn height(&self) -> Height {
        self.meta.height
    }
    /// The state root after the last applied block.
    pub fn root(&self) -> Hash {
        self.commit.root()
    }
    /// Current parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }
    /// Chain-wide counters (supply, next ids).
    pub fn meta(&self) -> &Meta {
        &self.meta
    }
    /// An account (a default, empty one if never touched).
    pub fn account(&self, a: &Address) -> Account {
        self.accounts.get(a).map(|s| s.acct).unwrap_or_default()
    }
    /// Spendable balance.
    pub fn balance(&self, a: &Address) -> Amount {
        self.account(a).balance
    }
    /// Next nonce.
    pub fn nonce(&self, a: &Address) -> u64 {
        self.account(a).nonce
    }
    /// Every account, in address order.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter().map(|(a, s)| (a, &s.acct))
    }
    /// A provider.
    pub fn provider(&self, a: &Address) -> Option<&Provider> {
        self.providers.get(a)
    }
    /// Every provider, in address order.
    pub fn providers(&self) -> impl Iterator<Item = (&Address, &Provider)> {
        self.providers.iter()
    }
    /// A provider's reputation score now (ppm), with decay and the stake bound.
    pub fn reputation_ppm(&self, a: &Address) -> u32 {
        match self.providers.get(a) {
            Some(p) => self.score(p, a),
            None => 0,
        }
    }
    /// A mandate.
    pub fn mandate(&self, id: MandateId) -> Option<&Mandate> {
        self.mandates.get(&id)
    }
    /// Every mandate.
    pub fn mandates(&self) -> impl Iterator<Item = (&MandateId, &Mandate)> {
        self.mandates.iter()
    }
    /// A job.
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }
    /// Every job.
    pub fn jobs(&self) -> impl Iterator<Item = (&JobId, &Job)> {
        self.jobs.iter()
    }
    /// A dispute.
    pub fn dispute(&self, id: DisputeId) -> Option<&Dispute> {
        self.disputes.get(&id)
    }
    /// Every dispute.
    pub fn disputes(&self) -> impl Iterator<Item = (&DisputeId, &Dispute)> {
        self.disputes.iter()
    }
    /// A proposal.
    pub fn proposal(&self, id: ProposalId) -> Option<&Proposal> {
        self.proposals.get(&id)
    }
    /// Every proposal.
    pub fn proposals(&self) -> impl Iterator<Item = (&ProposalId, &Proposal)> {
        self.proposals.iter()
    }
    /// A recorded vote.
    pub fn vote_record(&self, p: ProposalId, voter: &Address) -> Option<VoteRecord> {
        self.votes.get(&(p, *voter)).copied()
    }
    /// Pending unbondings: (release height, address) → amount.
    pub fn unbonding(&self) -> impl Iterator<Item = (&(Height, Address), &Amount)> {
        self.unbonding.iter()
    }

    /// Sums every place tokens can be — balances, bonded, unbonding,
    /// withdrawable, escrow, challenge bonds and burned — and compares with
    /// genesis supply plus issuance. Returns `(held, expected)`.
    pub fn supply(&self) -> (u128, u128) {
        let mut held: u128 = 0;
        for s in self.accounts.values() {
            held += s.acct.balance.0 + s.acct.bonded.0 + s.acct.withdrawable.0;
        }
        held += self.unbonding.values().map(|a| a.0).sum::<u128>();
        held += self.jobs.values().map(|j| j.escrow.0).sum::<u128>();
        held += self
            .disputes
            .values()
            .filter(|d| d.phase != DisputePhase::Resolved)
            .map(|d| match d.kind {
                DisputeKind::External { bond } => bond.0,
                _ => 0,
            })
            .sum::<u128>();
        held += self.meta.burned.0;
        (held, self.meta.genesis_supply.0 + self.meta.issued.0)
    }

    /// Whether the supply invariant holds (see [`State::supply`]).
    pub fn total_supply_check(&self) -> bool {
        let (held, expected) = self.supply();
        held == expected
    }
}
