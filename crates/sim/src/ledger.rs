//! The ledger driver: the ledger's own [`State`] applied block by block.
//!
//! ```text
//!   push(key, body, tag) ──▶ pending txs ──┐
//!   push_doomed(key, body, tag)            ├─▶ produce(referee) ─▶ State::apply_block
//!   beacon stream (seeded ChaCha8) ────────┘        │
//!        next_beacon: known one block ahead         └─▶ (BlockOutcome, tags in tx order)
//! ```
//!
//! - Every transaction is signed with the signer's next nonce (re-read from the state
//!   after every block, since a refused transaction uses none) and exactly the fee its
//!   work requires ([`agentic_protocol::Params::required_fee`]).
//! - A *doomed* transaction is one the ledger must refuse (a cheater's attempt): it takes
//!   the signer's next nonce without using it up, so several may share a nonce and each
//!   goes after every accepted transaction of its signer in the block.
//! - Each transaction carries a [`Tag`] (which market stage or job it is for, and for a
//!   doomed one the refusal expected), returned with the block's receipts in order.
//! - Each block's beacon comes from a stream seeded by the run's seed, drawn one block
//!   ahead (`Ledger::next_beacon`) so the market can predict the ledger's audit draws
//!   (`agentic_protocol::state::audit_draw`) before it applies the block.
//!
//! It is not `agentic_protocol::test_utils::TestChain`: that driver fixes its referee to
//! the test referee, draws beacons from the height, panics on failure and has no doomed
//! transactions or tags. `agentic bench verify` also drives its real disputes (the compute
//! runtime as referee) through this one.

use std::collections::BTreeMap;

use agentic_protocol::referee::Referee;
use agentic_protocol::test_utils::address_of;
use agentic_protocol::tx::{SignedTx, Tx};
use agentic_protocol::{Address, Block, BlockOutcome, Genesis, State, TxBody, TxError};
use commonware_cryptography::ed25519::PrivateKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Error;

/// What a transaction was for (fee attribution and the refusals we expect).
#[derive(Clone, Copy, Debug)]
pub struct Tag {
    /// Who signed it (set by [`Ledger::push`]).
    pub(crate) signer: Address,
    /// The fee it carries (set by [`Ledger::push`]).
    pub(crate) fee: u128,
    /// The market stage it belongs to.
    pub(crate) unit: Option<usize>,
    /// The market job it submits.
    pub(crate) job: Option<usize>,
    /// The refusal the ledger must answer with (a cheater's doomed attempt).
    pub(crate) expect: Option<Expect>,
}

/// A doomed attempt and the refusals that answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A copier's reveal of another replica's result against its own commitment.
    CommitmentMismatch,
    /// A random-output cheater's move, which has no valid Merkle proof.
    BadProof,
    /// Unbonding below what the provider must keep bonded.
    UnbondBelowMinimum,
    /// Retiring with open assignments, audits or disputes.
    RetireObligated,
    /// Withdrawing stake while it may still owe a slash.
    WithdrawObligated,
}

impl Expect {
    /// The name under which the refusal is counted, if `e` is the expected one.
    pub(crate) fn refused(self, e: &TxError) -> Option<&'static str> {
        match (self, e) {
            (Expect::CommitmentMismatch, TxError::CommitmentMismatch) => {
                Some("copied_reveal_refused")
            }
            (Expect::BadProof, TxError::BadProof { .. }) => Some("move_without_proof_refused"),
            (Expect::UnbondBelowMinimum, TxError::InsufficientStake { .. }) => {
                Some("unbond_below_minimum_refused")
            }
            (Expect::RetireObligated, TxError::OpenAssignments(_)) => {
                Some("retire_with_open_assignments_refused")
            }
            (Expect::RetireObligated, TxError::OpenObligations { .. }) => {
                Some("retire_with_open_obligations_refused")
            }
            (Expect::WithdrawObligated, TxError::OpenObligations { .. }) => {
                Some("withdraw_with_open_obligations_refused")
            }
            _ => None,
        }
    }
}

impl Tag {
    /// A transaction that belongs to no market stage or job.
    pub fn none() -> Self {
        Tag {
            signer: Address::default(),
            fee: 0,
            unit: None,
            job: None,
            expect: None,
        }
    }
    pub(crate) fn unit(u: usize) -> Self {
        Tag {
            unit: Some(u),
            ..Tag::none()
        }
    }
    pub(crate) fn doomed(u: Option<usize>, expect: Expect) -> Self {
        Tag {
            unit: u,
            expect: Some(expect),
            ..Tag::none()
        }
    }
}

/// A ledger applied block by block: signs with per-account nonces (re-read after every
/// block, as refused transactions use none) and the fee each body's work requires; draws
/// each block's beacon from a seeded stream, one block ahead so draws can be predicted.
pub struct Ledger {
    pub(crate) state: State,
    pending: Vec<SignedTx>,
    tags: Vec<Tag>,
    nonces: BTreeMap<Address, u64>,
    beacons: ChaCha8Rng,
    /// The beacon of the next block.
    pub(crate) next_beacon: [u8; 32],
}

impl Ledger {
    /// The ledger at `genesis`, its beacons drawn from a stream seeded by `seed`.
    pub fn new(genesis: &Genesis, seed: u64) -> Result<Self, Error> {
        let mut beacons = ChaCha8Rng::seed_from_u64(seed ^ 0xbeac_0000);
        let next_beacon = beacons.gen();
        Ok(Ledger {
            state: State::new(genesis).map_err(Error::Genesis)?,
            pending: Vec::new(),
            tags: Vec::new(),
            nonces: BTreeMap::new(),
            beacons,
            next_beacon,
        })
    }

    /// The ledger's state after the last block.
    pub fn state(&self) -> &State {
        &self.state
    }

    fn next_nonce(&mut self, who: Address) -> u64 {
        *self
            .nonces
            .entry(who)
            .or_insert_with(|| self.state.nonce(&who))
    }

    fn sign(&mut self, key: &PrivateKey, body: TxBody, nonce: u64, tag: Tag) {
        let fee = self.state.params().required_fee(&body);
        self.pending.push(SignedTx::sign(
            key,
            Tx {
                chain_id: self.state.chain_id(),
                nonce,
                fee,
                body,
            },
        ));
        self.tags.push(Tag {
            signer: address_of(key),
            fee: fee.0,
            ..tag
        });
    }

    /// Queues a transaction the ledger should accept.
    pub fn push(&mut self, key: &PrivateKey, body: TxBody, tag: Tag) {
        let who = address_of(key);
        let nonce = self.next_nonce(who);
        self.nonces.insert(who, nonce + 1);
        self.sign(key, body, nonce, tag);
    }

    /// Queues a transaction the ledger must refuse: it takes the signer's next nonce
    /// without using it up (a refusal spends no nonce), so it goes after every accepted
    /// transaction of its signer in the block, and several may share one nonce.
    pub fn push_doomed(&mut self, key: &PrivateKey, body: TxBody, tag: Tag) {
        let nonce = self.next_nonce(address_of(key));
        self.sign(key, body, nonce, tag);
    }

    /// Applies a block of the queued transactions; returns its outcome and their tags.
    pub fn produce(&mut self, referee: &dyn Referee) -> Result<(BlockOutcome, Vec<Tag>), Error> {
        let beacon = std::mem::replace(&mut self.next_beacon, self.beacons.gen());
        let block = Block {
            height: self.state.height().plus(1),
            beacon,
            txs: std::mem::take(&mut self.pending),
        };
        let out = self
            .state
            .apply_block(&block, referee)
            .map_err(|error| Error::Block {
                height: block.height.0,
                error,
            })?;
        self.nonces.clear();
        Ok((out, std::mem::take(&mut self.tags)))
    }

    /// [`Ledger::produce`], requiring every transaction to be accepted.
    pub fn produce_ok(&mut self, referee: &dyn Referee) -> Result<BlockOutcome, Error> {
        let (out, _) = self.produce(referee)?;
        if let Some(e) = out.receipts.iter().find_map(|r| r.as_ref().err()) {
            return Err(Error::Rejected {
                height: out.height.0,
                error: e.clone(),
            });
        }
        Ok(out)
    }
}
