//! Consensus: validators order blocks of ledger transactions with commonware simplex
//! (BLS12-381 threshold signatures with a VRF seed per round), marshal delivers finalized
//! blocks in height order, and the executor applies them to the [`Chain`](crate::Chain).
//!
//! ```text
//!            txs channel                    blocks channel          backfill channel
//!   Submit ──gossip──▶ peers ──▶ mempool   (buffered broadcast)     (marshal resolver)
//!     │                  ▲          │ select            │                 │
//!     ▼                  │          ▼                   ▼                 ▼
//!   mempool ◀── admit ───┘    Application ◀──▶ Deferred (marshal wrapper) ◀──▶ marshal
//!                           propose/verify          ▲   │ activity             │ Update::Block
//!                                                   │   ▼                      ▼ (finalized, durable)
//!             votes/certificates/resolver ──▶ simplex engine ──▶ seeds      Executor
//!                                                                            │ Chain::apply
//!                                                                            ▼ mempool.prune
//! ```
//!
//! # The rules
//!
//! 1. **Propose.** The leader walks its parent's ancestry back to the chain's applied height,
//!    collects the transactions of those not-yet-applied ancestors (`in_flight`), and asks the
//!    mempool for the next transactions on top of the applied state plus those
//!    ([`Mempool::select`](crate::Mempool::select)). The timestamp is the proposer's clock,
//!    raised to the parent's timestamp + 1 if needed; the leader first waits until
//!    [`Config::block_interval`] has passed since the parent's timestamp. The block also
//!    carries the VRF seed signature of its parent's round (see 4).
//! 2. **Verify.** Marshal's [`Deferred`](commonware_consensus::marshal::standard::Deferred)
//!    wrapper checks the embedded context, the parent digest and the height; the application
//!    then checks: timestamp strictly above the parent's and not more than
//!    [`Config::max_future_ms`] ahead of the local clock (a block from the future waits rather
//!    than fails, so clock skew delays a vote instead of splitting validators), the transaction
//!    count and byte limits, every transaction's signature (batch verification), no transaction
//!    twice in the block, and the parent seed signature. Nonces, balances and everything else
//!    stateful are the ledger's business: a transaction it rejects gets a failed receipt and
//!    changes nothing, so validators need no execution before voting.
//! 3. **Execute.** Marshal hands each finalized block, after it is durably stored, to the
//!    [`executor`], in height order. The executor applies it to the chain with
//!    [`Chain::apply`](crate::Chain::apply), prunes the mempool, and acknowledges.
//! 4. **Beacon.** A block's beacon is `blake3(encoded seed signature of the block's round)`. The
//!    seed is a threshold BLS signature over the round alone, so it is unique: whichever
//!    certificate a node learns it from, it is the same bytes. The executor reads it from the
//!    finalization stored for the block's height; a block finalized only through a descendant
//!    has no finalization of its own, and then the seed comes from its child, which carries it
//!    (`parent_seed`, verified at verify). Every validator, including one that synced the block
//!    much later, computes the same beacon.
//! 5. **Restart.** Marshal, simplex and the buffers keep their state in storage partitions
//!    prefixed by [`Config::partition_prefix`]. On start the executor replays finalized blocks
//!    `chain height + 1 ..= processed height` from marshal's archive before it handles new
//!    deliveries, so a restarted validator reaches the same state root it had, then catches up
//!    through marshal's backfill.
//! 6. **Gossip.** Transactions admitted through [`Submitter`] are sent to every peer on the
//!    transaction channel; a received transaction is decoded (bounded) and admitted against the
//!    applied state, never re-gossiped.
//!
//! # Where this deviates from alto
//!
//! Blocks carry transactions and the parent's seed; execution happens at finalization
//! (alto only logs); the beacon feeds the ledger. Like alto, blocks carry no state root: a
//! validator whose execution diverged would not be caught by consensus itself (the roots are
//! compared by the tests and exposed by the API).

pub mod application;
pub mod block;
pub mod dealer;
pub mod engine;
pub mod executor;
pub mod gossip;
pub mod network;
pub mod referee;
pub mod seeds;

use std::time::Duration;

use commonware_consensus::simplex::{scheme::bls12381_threshold::vrf, types};
use commonware_cryptography::{
    bls12381::primitives::{sharing, variant::MinSig},
    ed25519, sha256,
};

pub use application::Application;
pub use block::{Block, BlockLimits};
pub use dealer::{
    deal, participant_index, polynomial_from_hex, polynomial_to_hex, share_from_hex, share_to_hex,
    KeyError,
};
pub use engine::{Engine, EngineError};
pub use gossip::Submitter;
pub use network::{
    max_message_size, register_simulated, start_authenticated, start_simulated, Channels,
    NetworkConfig, NetworkError, Peer, CHANNEL_BACKFILL, CHANNEL_BLOCKS, CHANNEL_CERTIFICATES,
    CHANNEL_RESOLVER, CHANNEL_TXS, CHANNEL_VOTES,
};
pub use referee::{Arbiter, Question};

/// A validator's network identity.
pub type PublicKey = ed25519::PublicKey;
/// A validator's network signing key.
pub type PrivateKey = ed25519::PrivateKey;
/// Block digests.
pub type Digest = sha256::Digest;
/// The BLS12-381 variant: small signatures, public keys in G2.
pub type Variant = MinSig;
/// The simplex signing scheme: threshold BLS with a VRF seed per round.
pub type Scheme = vrf::Scheme<PublicKey, MinSig>;
/// The simplex context a block is proposed in.
pub type Context = types::Context<Digest, PublicKey>;
/// A finalization certificate.
pub type Finalization = types::Finalization<Scheme, Digest>;
/// What simplex reports.
pub type Activity = types::Activity<Scheme, Digest>;
/// The signature type of a round's seed.
pub type SeedSignature =
    <MinSig as commonware_cryptography::bls12381::primitives::variant::Variant>::Signature;
/// The validators' public polynomial (group key and partial-signature keys).
pub type Sharing = sharing::Sharing<MinSig>;
/// One validator's secret share of the group key.
pub type Share = commonware_cryptography::bls12381::primitives::group::Share;

/// The block interval of `agentic node run`, `agentic devnet` and the local markets:
/// 5 blocks a second, so the default windows (10–20 blocks) last a few seconds.
pub const DEFAULT_BLOCK_INTERVAL: Duration = Duration::from_millis(200);

/// Everything a validator needs to run consensus.
#[derive(Clone)]
pub struct Config {
    /// This validator's ed25519 key (p2p identity, and its place in `participants`).
    pub signer: PrivateKey,
    /// Every validator's ed25519 public key (order does not matter; they are sorted).
    pub participants: Vec<PublicKey>,
    /// The public polynomial from the dealer (threshold = 2f+1).
    pub polynomial: Sharing,
    /// This validator's secret share.
    pub share: Share,
    /// Domain separation for every consensus signature and the p2p handshake; include the
    /// chain id so that two chains' votes can never be confused.
    pub namespace: Vec<u8>,
    /// Prefix of every storage partition this validator uses.
    pub partition_prefix: String,
    /// How long to wait for the leader's proposal.
    pub leader_timeout: Duration,
    /// How long to wait for a notarization before voting to skip the view.
    pub certification_timeout: Duration,
    /// How often to re-broadcast a nullify vote while stuck.
    pub timeout_retry: Duration,
    /// How long to wait for a peer's answer when fetching.
    pub fetch_timeout: Duration,
    /// Views of history simplex keeps behind the finalized tip.
    pub view_retention: u64,
    /// Transaction limits per block.
    pub block_limits: BlockLimits,
    /// How far ahead of the local clock a block's timestamp may be before the vote waits.
    pub max_future_ms: u64,
    /// Least time between a parent's timestamp and its child's proposal: the leader waits
    /// that long before proposing (a proposer policy, not a validity rule). Zero proposes
    /// as fast as consensus allows; networks use [`DEFAULT_BLOCK_INTERVAL`] so that windows
    /// measured in blocks mean seconds.
    pub block_interval: Duration,
    /// Capacity of the actors' mailboxes.
    pub mailbox_size: usize,
    /// Largest gossiped transaction accepted (bytes).
    pub max_tx_bytes: usize,
    /// Outbound messages per second per peer on each channel.
    pub rate_per_second: u32,
    /// Referees disputed layers for this validator (fetches into its blob store).
    pub arbiter: Arbiter,
}

impl Config {
    /// A configuration with sensible defaults for everything but the keys, the namespace and
    /// the partition prefix.
    pub fn new(
        signer: PrivateKey,
        participants: Vec<PublicKey>,
        polynomial: Sharing,
        share: Share,
        namespace: Vec<u8>,
        partition_prefix: String,
    ) -> Config {
        Config {
            signer,
            participants,
            polynomial,
            share,
            namespace,
            partition_prefix,
            leader_timeout: Duration::from_secs(1),
            certification_timeout: Duration::from_secs(2),
            timeout_retry: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(2),
            view_retention: 256,
            block_limits: BlockLimits::default(),
            max_future_ms: 500,
            block_interval: Duration::ZERO,
            mailbox_size: 1024,
            max_tx_bytes: 64 << 10,
            rate_per_second: 1024,
            arbiter: Arbiter::default(),
        }
    }

    /// The namespace for a chain id (`agentic-<id>`), what [`Config::namespace`] should be.
    pub fn namespace_for(chain_id: agentic_protocol::ChainId) -> Vec<u8> {
        format!("agentic-{}", chain_id.0).into_bytes()
    }
}
