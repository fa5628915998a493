//! The ledger state and block application.
//!
//! [`State`] holds every entity in ordered maps (deterministic iteration),
//! applies blocks ([`State::apply_block`]) and keeps an incremental state
//! root ([`State::root`]).
//!
//! ```text
//!   state/
//!     mod.rs        State, Genesis, apply_block, apply_tx dispatch, per-block step order
//!     entity/       the stored entities and their encodings (Account … Meta)
//!     reads.rs      reads by id / in key order, the supply invariant
//!     commit.rs     the incremental state root, dirty tracking (StateKey)
//!     <handlers>    one module per domain (below)
//! ```
//!
//! The handlers live in submodules by domain:
//!
//! | module | transactions | per-block step |
//! | --- | --- | --- |
//! | `accounts` | Transfer, Bond, Unbond, Withdraw | release unbonded stake, issuance |
//! | `providers` | RegisterProvider, UpdateProvider, Retire | |
//! | `mandates` | GrantMandate, RevokeMandate | |
//! | `jobs` | SubmitJob, CommitResult, CommitSession, RevealResult, CancelJob, ReplaceStage | matching, deadlines, audits, challenge windows, payout |
//! | `disputes` | AuditCommit, AuditReport, Challenge, Bisect, StepRoot | dispute timeouts, referee, slashing |
//! | `availability` | ClaimUnavailable | the referee's availability probe |
//! | `governance` | Propose, Vote | tallies, activation |
//!
//! Every handler validates everything first and mutates only after all
//! checks passed, so a rejected transaction changes nothing (not even the
//! nonce or the fee).

mod accounts;
mod availability;
mod commit;
mod disputes;
mod entity;
mod governance;
mod jobs;
mod mandates;
mod obligations;
mod offers;
mod providers;
mod prune;
mod reads;

use crate::error::{BlockError, TxError};
use crate::event::{Event, EventRecord};
use crate::params::Params;
use crate::referee::Referee;
use crate::tx::{verify_batch, SignedTx, TxBody};
use crate::types::{
    limits, Address, Amount, ChainId, DisputeId, Hash, Height, JobId, MandateId, ProposalId,
};
use std::collections::{BTreeMap, BTreeSet};

pub use commit::StateKey;
pub use entity::{
    Account, Assignment, AuditSlot, Claim, Dispute, DisputeKind, DisputePhase, Job, JobStatus,
    Mandate, Meta, Party, Proposal, ProposalStatus, Provider, Slot, Stage, StagePhase, VoteRecord,
};
pub use jobs::{
    audit_draw, auditor_seed, replica_seed, session_break, session_break_among, DRAW_ATTEMPTS,
};
pub use prune::Pruned;

/// An account at genesis.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenesisAccount {
    /// Address.
    pub address: Address,
    /// Spendable balance.
    pub balance: Amount,
    /// Bonded stake.
    pub bonded: Amount,
}

/// A provider registered at genesis: its account (in [`Genesis::accounts`])
/// must have at least `min_provider_stake` bonded. It starts as one registered
/// by `RegisterProvider` in block 0 would: fresh reputation, nothing open.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenesisProvider {
    /// The provider's account.
    pub address: Address,
    /// Its offer.
    pub offer: crate::tx::Offer,
}

/// The initial state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Genesis {
    /// The chain id every transaction must carry.
    pub chain_id: ChainId,
    /// Initial parameters.
    pub params: Params,
    /// Initial accounts.
    pub accounts: Vec<GenesisAccount>,
    /// Receives issuance (if governance turns it on).
    pub treasury: Address,
    /// Providers registered from the start (a network launched with its sellers, a
    /// simulation that starts in a steady state). Absent from the JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<GenesisProvider>,
}

/// Why a genesis is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum GenesisError {
    /// Invalid parameters.
    #[error("invalid params: {0}")]
    Params(#[from] crate::params::ParamError),
    /// An address appears twice.
    #[error("duplicate genesis account {0:?}")]
    DuplicateAccount(Address),
    /// The supply overflows u128.
    #[error("genesis supply overflows")]
    Overflow,
    /// A provider appears twice.
    #[error("duplicate genesis provider {0:?}")]
    DuplicateProvider(Address),
    /// A provider's account bonds less than `min_provider_stake` (or is absent).
    #[error("genesis provider {0:?} bonds less than min_provider_stake")]
    ProviderStake(Address),
    /// A provider's offer breaks `RegisterProvider`'s rules (a positive price and
    /// capacity, an endpoint of at most 128 printable ASCII bytes without spaces).
    #[error("genesis provider {0:?}: invalid offer (a positive price and capacity and a valid endpoint are required)")]
    ProviderOffer(Address),
}

/// A block as the ledger sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Height (must be the state's height + 1).
    pub height: Height,
    /// The block's randomness (the threshold-VRF output the node supplies).
    pub beacon: [u8; 32],
    /// Transactions in order.
    pub txs: Vec<SignedTx>,
}

/// The result of one transaction.
pub type Receipt = Result<(), TxError>;

/// What applying a block produced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockOutcome {
    /// The block height.
    pub height: Height,
    /// One receipt per transaction, in order.
    pub receipts: Vec<Receipt>,
    /// Everything that happened, in order.
    pub events: Vec<EventRecord>,
    /// The state root after the block.
    pub root: Hash,
    /// Entities whose retention ended in this block: gone from the state
    /// and its root, handed out here for the node's archive.
    #[serde(default)]
    pub pruned: Vec<Pruned>,
}

/// A scheduled per-block check (an index over deadlines stored in the
/// entities; derived state, not committed separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A stage's commit/reveal deadlines.
    Stage(JobId, u32),
    /// A stage's audit deadline.
    Audit(JobId, u32),
    /// A stage's challenge window end.
    Window(JobId, u32),
    /// A dispute round's timeout.
    Dispute(DisputeId),
    /// A proposal's voting end.
    Tally(ProposalId),
    /// A passed proposal's activation.
    Activate(ProposalId),
    /// A waiting job's match timeout.
    Match(JobId),
    /// A final entity's retention ends (`prune.rs`).
    Prune(StateKey),
    /// A dispute waiting for the referee reaches a patience limit (its
    /// deadline, or the referee timeout after it).
    Referee(DisputeId),
}

/// An account with the block epoch in which it was last touched (for
/// dirty tracking without a second map lookup).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AccountSlot {
    pub(crate) acct: Account,
    pub(crate) touched: u64,
}

/// Per-block scratch: events and the block's beacon.
pub(crate) struct BlockCtx {
    pub(crate) events: Vec<EventRecord>,
    pub(crate) tx: Option<u32>,
    pub(crate) beacon: [u8; 32],
}

impl BlockCtx {
    #[inline]
    pub(crate) fn emit(&mut self, event: Event) {
        self.events.push(EventRecord { tx: self.tx, event });
    }
}

/// The whole ledger state.
#[derive(Clone)]
pub struct State {
    chain_id: ChainId,
    params: Params,
    meta: Meta,
    accounts: BTreeMap<Address, AccountSlot>,
    providers: BTreeMap<Address, Provider>,
    mandates: BTreeMap<MandateId, Mandate>,
    jobs: BTreeMap<JobId, Job>,
    disputes: BTreeMap<DisputeId, Dispute>,
    proposals: BTreeMap<ProposalId, Proposal>,
    votes: BTreeMap<(ProposalId, Address), VoteRecord>,
    unbonding: BTreeMap<(Height, Address), Amount>,
    timers: BTreeSet<(Height, Timer)>,
    /// Jobs queued for this block's matching (new, re-matched or woken).
    matching: BTreeSet<JobId>,
    /// Jobs with an empty slot that matching tried and could not fill: they
    /// sleep until an offer that could serve them gets better, or their
    /// match timeout (derived).
    waiting: BTreeSet<JobId>,
    /// Qualified offers by group and price (derived; `offers.rs`).
    offers: offers::Offers,
    /// What this block pruned so far (handed out in the block's outcome).
    pruned: Vec<Pruned>,
    referee_queue: BTreeSet<DisputeId>,
    /// The disputes of `referee_queue` by their referee question, so a
    /// block's verdicts find theirs without a scan (derived).
    referee_index: BTreeMap<crate::referee::Question, BTreeSet<DisputeId>>,
    /// The question each queued dispute is indexed under (derived).
    referee_keys: BTreeMap<DisputeId, crate::referee::Question>,
    /// Queued disputes whose patience timer fired this block (derived).
    referee_due: BTreeSet<DisputeId>,
    /// Jobs whose availability claim waits for the referee.
    claims: BTreeSet<JobId>,
    /// Jobs in which an address took a role (slot or audit); an index derived
    /// from the jobs, checked against them on read (see `open_roles`).
    roles: BTreeMap<Address, BTreeSet<JobId>>,
    /// The reverse of `roles`: who took a role in each job not yet settled, so
    /// a settled job's entries can be dropped without a scan (derived).
    role_holders: BTreeMap<JobId, BTreeSet<Address>>,
    /// Disputes an address is a party to, until resolved (derived).
    party_disputes: BTreeMap<Address, BTreeSet<DisputeId>>,
    /// The latest `voting_ends` among proposals an address voted on (derived
    /// from votes and proposals).
    vote_locks: BTreeMap<Address, Height>,
    /// Release heights of an address's unbonding entries (derived).
    unbonding_by: BTreeMap<Address, BTreeSet<Height>>,
    commit: commit::Commitment,
}

impl State {
    /// Builds the genesis state (height 0).
    pub fn new(genesis: &Genesis) -> Result<State, GenesisError> {
        genesis.params.validate()?;
        let mut accounts = BTreeMap::new();
        let mut supply = Amount::ZERO;
        let mut bonded_total = Amount::ZERO;
        for ga in &genesis.accounts {
            let acct = Account {
                balance: ga.balance,
                nonce: 0,
                bonded: ga.bonded,
                withdrawable: Amount::ZERO,
            };
            if accounts
                .insert(ga.address, AccountSlot { acct, touched: 0 })
                .is_some()
            {
                return Err(GenesisError::DuplicateAccount(ga.address));
            }
            supply = supply
                .checked_add(ga.balance)
                .and_then(|s| s.checked_add(ga.bonded))
                .ok_or(GenesisError::Overflow)?;
            bonded_total = bonded_total
                .checked_add(ga.bonded)
                .ok_or(GenesisError::Overflow)?;
        }
        let meta = Meta {
            genesis_supply: supply,
            total_bonded: bonded_total,
            treasury: genesis.treasury,
            ..Meta::default()
        };
        let mut state = State {
            chain_id: genesis.chain_id,
            params: genesis.params.clone(),
            meta,
            accounts,
            providers: BTreeMap::new(),
            mandates: BTreeMap::new(),
            jobs: BTreeMap::new(),
            disputes: BTreeMap::new(),
            proposals: BTreeMap::new(),
            votes: BTreeMap::new(),
            unbonding: BTreeMap::new(),
            timers: BTreeSet::new(),
            matching: BTreeSet::new(),
            waiting: BTreeSet::new(),
            offers: offers::Offers::default(),
            pruned: Vec::new(),
            referee_queue: BTreeSet::new(),
            referee_index: BTreeMap::new(),
            referee_keys: BTreeMap::new(),
            referee_due: BTreeSet::new(),
            claims: BTreeSet::new(),
            roles: BTreeMap::new(),
            role_holders: BTreeMap::new(),
            party_disputes: BTreeMap::new(),
            vote_locks: BTreeMap::new(),
            unbonding_by: BTreeMap::new(),
            commit: commit::Commitment::default(),
        };
        for gp in &genesis.providers {
            state.register_at_genesis(gp)?;
        }
        state.flush_offers();
        state.rebuild_root();
        Ok(state)
    }

    // ------------------------------------------------------------------
    // Block application
    // ------------------------------------------------------------------

    /// Verifies every signature (batched, in parallel) and applies the block.
    pub fn apply_block(
        &mut self,
        block: &Block,
        referee: &dyn Referee,
    ) -> Result<BlockOutcome, BlockError> {
        let mask = verify_batch(&block.txs);
        self.apply_block_preverified(block, &mask, referee)
    }

    /// Applies a block whose signatures the caller already checked:
    /// `sig_ok[i]` says whether `block.txs[i]` is correctly signed (see
    /// [`crate::tx::verify_batch`]).
    pub fn apply_block_preverified(
        &mut self,
        block: &Block,
        sig_ok: &[bool],
        referee: &dyn Referee,
    ) -> Result<BlockOutcome, BlockError> {
        let expected = self.meta.height.plus(1);
        if block.height != expected {
            return Err(BlockError::WrongHeight {
                expected,
                got: block.height,
            });
        }
        if sig_ok.len() != block.txs.len() {
            return Err(BlockError::MaskLength {
                mask: sig_ok.len(),
                txs: block.txs.len(),
            });
        }
        if block.txs.len() > limits::MAX_BLOCK_TXS {
            return Err(BlockError::TooManyTxs(block.txs.len()));
        }
        self.commit.begin_block(&self.params, &self.meta);
        self.offers.begin_block(&block.beacon);
        self.meta.height = block.height;
        let mut ctx = BlockCtx {
            events: Vec::with_capacity(block.txs.len() + 16),
            tx: None,
            beacon: block.beacon,
        };
        let mut receipts = Vec::with_capacity(block.txs.len());
        // Transactions apply in order on this thread. Every `EAGER_CHUNK`
        // transactions, the old values of the accounts first touched since the
        // last chunk are handed to another rayon thread, which removes them
        // from a partial root while application goes on (see
        // `commit::remove_old_accounts`). The root is a commutative sum, so
        // this overlap cannot change it.
        let eager = std::sync::Mutex::new(crate::root::StateCommitment::new());
        rayon::scope(|scope| {
            for (c, chunk) in block.txs.chunks(commit::EAGER_CHUNK).enumerate() {
                for (j, stx) in chunk.iter().enumerate() {
                    let i = c * commit::EAGER_CHUNK + j;
                    ctx.tx = Some(i as u32);
                    let r = if sig_ok[i] {
                        self.apply_tx(stx, &mut ctx)
                    } else {
                        Err(TxError::BadSignature)
                    };
                    receipts.push(r);
                }
                let olds = self.commit.take_old_accounts();
                let eager = &eager;
                scope.spawn(move |_| commit::remove_old_accounts(&olds, eager));
            }
        });
        ctx.tx = None;
        self.end_block(referee, &mut ctx);
        let eager = eager.into_inner().unwrap_or_else(|e| e.into_inner());
        let root = self.commit_block(eager);
        Ok(BlockOutcome {
            height: block.height,
            receipts,
            events: ctx.events,
            root,
            pruned: std::mem::take(&mut self.pruned),
        })
    }

    /// Applies one (signature-checked) transaction.
    fn apply_tx(&mut self, stx: &SignedTx, ctx: &mut BlockCtx) -> Result<(), TxError> {
        let tx = stx.tx();
        if tx.chain_id != self.chain_id {
            return Err(TxError::WrongChain {
                expected: self.chain_id,
                got: tx.chain_id,
            });
        }
        if tx.fee < self.params.min_fee {
            return Err(TxError::FeeTooLow {
                fee: tx.fee,
                min: self.params.min_fee,
            });
        }
        if !matches!(tx.body, TxBody::Transfer { .. }) {
            // Transfers are smaller than a KiB and match nothing: `min_fee` is
            // their whole price, checked above, and their path stays lean.
            let required = self.params.required_fee(&tx.body);
            if tx.fee < required {
                return Err(TxError::FeeBelowWork {
                    fee: tx.fee,
                    required,
                });
            }
        }
        let sender = stx.sender();
        if let TxBody::Transfer { to, amount } = &tx.body {
            // The hot path: one lookup per side, no allocation.
            return self.transfer(sender, tx.nonce, tx.fee, *to, *amount, ctx);
        }
        let acct = self.account(&sender);
        if tx.nonce != acct.nonce {
            return Err(TxError::BadNonce {
                expected: acct.nonce,
                got: tx.nonce,
            });
        }
        if acct.balance < tx.fee {
            return Err(TxError::InsufficientBalance {
                need: tx.fee,
                have: acct.balance,
            });
        }
        // What the body may spend: the balance left after the fee.
        let avail = acct.balance.saturating_sub(tx.fee);
        let fee = tx.fee;
        match &tx.body {
            TxBody::Transfer { to, amount } => {
                self.transfer(sender, tx.nonce, fee, *to, *amount, ctx)
            }
            TxBody::Bond { amount } => self.bond(sender, fee, avail, *amount, ctx),
            TxBody::Unbond { amount } => self.unbond(sender, fee, *amount, ctx),
            TxBody::Withdraw { amount } => self.withdraw(sender, fee, *amount, ctx),
            TxBody::RegisterProvider { offer, stake } => {
                self.register_provider(sender, fee, avail, offer, *stake, ctx)
            }
            TxBody::UpdateProvider { offer } => self.update_provider(sender, fee, offer, ctx),
            TxBody::Retire => self.retire(sender, fee, ctx),
            TxBody::GrantMandate { terms } => self.grant_mandate(sender, fee, terms, ctx),
            TxBody::RevokeMandate { mandate } => self.revoke_mandate(sender, fee, *mandate, ctx),
            TxBody::SubmitJob { spec } => self.submit_job(sender, fee, avail, spec, ctx),
            TxBody::CommitResult {
                job,
                stage,
                commitment,
            } => self.commit_result(sender, fee, *job, *stage, *commitment, None, ctx),
            TxBody::CommitSession {
                job,
                stage,
                commitment,
                input,
            } => self.commit_result(sender, fee, *job, *stage, *commitment, Some(*input), ctx),
            TxBody::RevealResult {
                job,
                stage,
                result,
                salt,
            } => self.reveal_result(sender, fee, *job, *stage, result, salt, ctx),
            TxBody::AuditReport {
                job,
                stage,
                result,
                salt,
            } => self.audit_report(sender, fee, *job, *stage, result, salt, ctx),
            TxBody::AuditCommit {
                job,
                stage,
                commitment,
            } => self.audit_commit(sender, fee, *job, *stage, *commitment, ctx),
            TxBody::ClaimUnavailable { job } => self.claim_unavailable(sender, fee, *job, ctx),
            TxBody::Challenge { job, stage, result } => {
                self.challenge(sender, fee, avail, *job, *stage, result, ctx)
            }
            TxBody::Bisect {
                dispute,
                leaf,
                proof,
            } => self.bisect(sender, fee, *dispute, *leaf, proof, ctx),
            TxBody::StepRoot {
                dispute,
                root,
                first_proof,
                last_proof,
            } => self.step_root(sender, fee, *dispute, *root, first_proof, last_proof, ctx),
            TxBody::Propose { change } => self.propose(sender, fee, *change, ctx),
            TxBody::Vote { proposal, approve } => self.vote(sender, fee, *proposal, *approve, ctx),
            TxBody::CancelJob { job } => self.cancel_job_tx(sender, fee, *job, ctx),
            TxBody::ReplaceStage {
                job,
                stage,
                provider,
            } => self.replace_stage(sender, fee, *job, *stage, *provider, ctx),
        }
    }

    /// The per-block steps, in a fixed order.
    fn end_block(&mut self, referee: &dyn Referee, ctx: &mut BlockCtx) {
        let h = self.meta.height;
        // Timers due now, in (height, timer) order. Each handler re-checks the
        // entity, so stale timers are harmless.
        // At most `MAX_TIMERS_PER_BLOCK` fire per block; the rest fire in the
        // next blocks, in the same order (every handler compares the stored
        // deadlines with the height, so firing late changes nothing else).
        let mut fired = 0;
        while let Some(&(at, timer)) = self.timers.first() {
            if at > h || fired >= limits::MAX_TIMERS_PER_BLOCK {
                break;
            }
            fired += 1;
            self.timers.pop_first();
            match timer {
                Timer::Activate(p) => self.activate_proposal(p, ctx),
                Timer::Tally(p) => self.tally_proposal(p, ctx),
                Timer::Stage(j, s) => self.check_stage_deadlines(j, s, ctx),
                Timer::Audit(j, s) => self.check_audit_deadline(j, s, ctx),
                Timer::Window(j, s) => self.close_challenge_window(j, s, ctx),
                Timer::Dispute(d) => self.check_dispute_timeout(d, ctx),
                Timer::Match(j) => self.check_match_timeout(j),
                Timer::Prune(k) => self.prune(k),
                Timer::Referee(d) => {
                    self.referee_due.insert(d);
                }
            }
        }
        self.release_unbonded(ctx);
        self.run_referee(referee, ctx);
        self.check_claims(referee, ctx);
        self.match_jobs(ctx);
        self.issue(ctx);
    }

    /// Schedules `timer` to fire in the per-block step of height `at`.
    pub(crate) fn schedule(&mut self, at: Height, timer: Timer) {
        self.timers.insert((at, timer));
    }

    /// Charges the fee and bumps the nonce (the last step of validation;
    /// callers checked the balance covers the fee).
    pub(crate) fn charge(&mut self, who: Address, fee: Amount) {
        let epoch = self.meta.height.0;
        let commit = &mut self.commit;
        let slot = self.accounts.entry(who).or_insert_with(|| {
            commit.new_account(who);
            AccountSlot {
                acct: Account::default(),
                touched: epoch,
            }
        });
        commit.touch_account(who, slot, epoch);
        slot.acct.balance = slot.acct.balance.saturating_sub(fee);
        slot.acct.nonce = slot.acct.nonce.wrapping_add(1);
        self.meta.burned = Amount(self.meta.burned.0.saturating_add(fee.0));
    }

    /// Mutable access to an account, creating it and recording it as dirty.
    pub(crate) fn account_mut(&mut self, who: Address) -> &mut Account {
        let epoch = self.meta.height.0;
        let commit = &mut self.commit;
        let slot = self.accounts.entry(who).or_insert_with(|| {
            commit.new_account(who);
            AccountSlot {
                acct: Account::default(),
                touched: epoch,
            }
        });
        commit.touch_account(who, slot, epoch);
        &mut slot.acct
    }

    /// Credits `amount` to `who`'s balance.
    pub(crate) fn credit(&mut self, who: Address, amount: Amount) {
        if amount.0 == 0 {
            return;
        }
        let a = self.account_mut(who);
        a.balance = Amount(a.balance.0.saturating_add(amount.0));
    }

    /// Burns `amount` (already removed from wherever it was held).
    pub(crate) fn burn(&mut self, amount: Amount) {
        self.meta.burned = Amount(self.meta.burned.0.saturating_add(amount.0));
    }

    /// Mutable job, recorded as dirty.
    pub(crate) fn job_mut(&mut self, id: JobId) -> Option<&mut Job> {
        let job = self.jobs.get_mut(&id)?;
        self.commit.touch_job(id, Some(&*job));
        Some(job)
    }
    /// Mutable provider, recorded as dirty.
    pub(crate) fn provider_mut(&mut self, a: Address) -> Option<&mut Provider> {
        let p = self.providers.get_mut(&a)?;
        self.commit.touch(StateKey::Provider(a), Some(&*p));
        self.offers.touch(a);
        Some(p)
    }
    /// Mutable dispute, recorded as dirty.
    pub(crate) fn dispute_mut(&mut self, id: DisputeId) -> Option<&mut Dispute> {
        let d = self.disputes.get_mut(&id)?;
        self.commit.touch(StateKey::Dispute(id), Some(&*d));
        Some(d)
    }
    /// Mutable mandate, recorded as dirty.
    pub(crate) fn mandate_mut(&mut self, id: MandateId) -> Option<&mut Mandate> {
        let m = self.mandates.get_mut(&id)?;
        self.commit.touch(StateKey::Mandate(id), Some(&*m));
        Some(m)
    }
    /// Mutable proposal, recorded as dirty.
    pub(crate) fn proposal_mut(&mut self, id: ProposalId) -> Option<&mut Proposal> {
        let p = self.proposals.get_mut(&id)?;
        self.commit.touch(StateKey::Proposal(id), Some(&*p));
        Some(p)
    }
}
