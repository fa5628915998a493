//! The finalized chain as this node sees it: the ledger state after the last
//! finalized block, a record of every finalized block, every transaction's
//! receipt, and a feed of what happened.
//!
//! Consensus (`crate::consensus`) hands each finalized block to [`Chain::apply`]
//! in height order, with the block's beacon (derived from the threshold-VRF seed
//! of the round that finalized it). Everything here is derived from the
//! finalized blocks alone, so a node that restarts rebuilds it by replaying
//! them; [`Chain::apply`] ignores a height it already has, which makes replay
//! after a crash idempotent.
//!
//! Block records, receipts and archived entities live in the [`History`] (on disk for a
//! node, [`Chain::open`]; in memory for tests, [`Chain::new`]); only the last
//! [`RECENT_BLOCKS`](crate::history::RECENT_BLOCKS) block records stay in memory. A block
//! the history already has (replay after a restart) is not written again.

use std::sync::{Arc, RwLock};

use agentic_protocol::state::Pruned;
use agentic_protocol::{
    Block, BlockError, EventRecord, Genesis, GenesisError, Hash, Height, Receipt, Referee,
    SignedTx, State,
};
use tokio::sync::broadcast;

use crate::history::{EntityKind, History, HistoryConfig, HistoryError};
use crate::metrics::LedgerMetrics;

/// Capacity of the event feed; a subscriber that falls further behind is told it lagged.
pub const EVENT_FEED_CAPACITY: usize = 4096;

/// A finalized block as consensus delivers it to the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalizedBlock {
    /// Ledger height (genesis is 0, so the first block is 1).
    pub height: Height,
    /// The consensus digest of the block.
    pub digest: [u8; 32],
    /// The consensus view (round) the block was proposed in.
    pub view: u64,
    /// The proposer's timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The block's randomness: blake3 of the finalizing round's VRF seed.
    pub beacon: [u8; 32],
    /// Transactions, in order.
    pub txs: Vec<SignedTx>,
}

/// What the node keeps about a finalized block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRecord {
    /// Ledger height.
    pub height: Height,
    /// Consensus digest.
    pub digest: [u8; 32],
    /// Consensus view.
    pub view: u64,
    /// Proposer timestamp (ms).
    pub timestamp_ms: u64,
    /// The block's randomness.
    pub beacon: [u8; 32],
    /// Ids of the block's transactions, in order.
    pub tx_ids: Vec<Hash>,
    /// The ledger's state root after the block.
    pub state_root: Hash,
    /// How many transactions succeeded.
    pub succeeded: u32,
    /// Everything the ledger did in the block, in order (what `/v1/events?from=`
    /// replays).
    pub events: Vec<EventRecord>,
}

/// Where a transaction landed and what it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxReceipt {
    /// The transaction id.
    pub id: Hash,
    /// The block it was finalized in.
    pub height: Height,
    /// Its index in that block.
    pub index: u32,
    /// Success, or why the ledger rejected it (a rejected transaction changes nothing).
    pub result: Receipt,
    /// The events it caused.
    pub events: Vec<EventRecord>,
}

/// One item of the event feed.
#[derive(Clone, Debug)]
pub enum ChainEvent {
    /// A block was finalized and applied.
    Block(Arc<BlockRecord>),
    /// Something happened in a block (`tx` is the transaction index, if any).
    Ledger {
        /// The block.
        height: Height,
        /// The event.
        record: EventRecord,
    },
}

/// Why the chain could not open or apply a block.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The genesis is invalid.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// The ledger refused the block.
    #[error(transparent)]
    Ledger(#[from] BlockError),
    /// The history could not open or store the block (boxed: errors travel up
    /// through the service and localnet errors).
    #[error(transparent)]
    History(Box<HistoryError>),
}

impl From<HistoryError> for ChainError {
    fn from(e: HistoryError) -> Self {
        ChainError::History(Box::new(e))
    }
}

/// The node's view of the finalized chain.
pub struct Chain {
    state: State,
    history: History,
    feed: broadcast::Sender<ChainEvent>,
    metrics: Option<LedgerMetrics>,
}

/// The chain shared between consensus (writer), the mempool and the API (readers).
pub type SharedChain = Arc<RwLock<Chain>>;

impl Chain {
    /// The chain at genesis, its history in memory (tests and in-process tools; a node
    /// uses [`Chain::open`]).
    pub fn new(genesis: &Genesis) -> Result<Chain, GenesisError> {
        let state = State::new(genesis)?;
        // An in-memory history only fails on a bug (it has no I/O); keep the signature.
        let history = History::in_memory(state.chain_id().0, state.root())
            .unwrap_or_else(|e| unreachable!("in-memory history: {e}"));
        Ok(Chain::with_history(state, history))
    }

    /// The chain at genesis with its history in `config` (opened, recovered after a
    /// crash, and checked to belong to this genesis). The ledger state starts at genesis
    /// whatever the history holds: consensus replays the finalized blocks, and the
    /// history serves the blocks it already has meanwhile.
    pub fn open(genesis: &Genesis, config: &HistoryConfig) -> Result<Chain, ChainError> {
        let state = State::new(genesis)?;
        let history = History::open(config, state.chain_id().0, state.root())?;
        Ok(Chain::with_history(state, history))
    }

    fn with_history(state: State, history: History) -> Chain {
        let (feed, _) = broadcast::channel(EVENT_FEED_CAPACITY);
        Chain {
            state,
            history,
            feed,
            metrics: None,
        }
    }

    /// The same chain, exporting the ledger's gauges to `metrics` (now, and after every
    /// applied block).
    pub fn with_metrics(mut self, mut metrics: LedgerMetrics) -> Chain {
        metrics.observe(&self.state, &[]);
        self.metrics = Some(metrics);
        self
    }

    /// Wraps the chain for sharing.
    pub fn shared(self) -> SharedChain {
        Arc::new(RwLock::new(self))
    }

    /// The ledger state after the last applied block.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Height of the last applied block (0 at genesis).
    pub fn height(&self) -> Height {
        self.state.height()
    }

    /// The state root after the last applied block.
    pub fn root(&self) -> Hash {
        self.state.root()
    }

    /// Applies the next finalized block. A block at or below the current height is
    /// ignored (`Ok(None)`): replay after a restart is idempotent. A gap is an error and
    /// changes nothing. The block's record and receipts then go to the history (a height
    /// it already has is checked, not written again); if that fails the ledger state has
    /// moved on without them, so the caller must stop (the executor halts the node).
    pub fn apply(
        &mut self,
        block: &FinalizedBlock,
        referee: &dyn Referee,
    ) -> Result<Option<Arc<BlockRecord>>, ChainError> {
        self.apply_inner(block, referee, false)
    }

    /// [`Chain::apply`] for a block whose signatures are known to be valid: consensus
    /// finalizes only blocks that a quorum certified after verifying every
    /// transaction's signature (at least f + 1 of them honest), so re-verifying at
    /// execution would only repeat that work.
    pub fn apply_verified(
        &mut self,
        block: &FinalizedBlock,
        referee: &dyn Referee,
    ) -> Result<Option<Arc<BlockRecord>>, ChainError> {
        self.apply_inner(block, referee, true)
    }

    fn apply_inner(
        &mut self,
        block: &FinalizedBlock,
        referee: &dyn Referee,
        verified: bool,
    ) -> Result<Option<Arc<BlockRecord>>, ChainError> {
        if block.height <= self.state.height() {
            return Ok(None);
        }
        let ledger_block = Block {
            height: block.height,
            beacon: block.beacon,
            txs: block.txs.clone(),
        };
        let outcome = if verified {
            let mask = vec![true; ledger_block.txs.len()];
            self.state
                .apply_block_preverified(&ledger_block, &mask, referee)?
        } else {
            self.state.apply_block(&ledger_block, referee)?
        };
        let tx_ids: Vec<Hash> = block.txs.iter().map(SignedTx::id).collect();
        let mut per_tx: Vec<Vec<EventRecord>> = vec![Vec::new(); block.txs.len()];
        for record in &outcome.events {
            if let Some(i) = record.tx {
                if let Some(v) = per_tx.get_mut(i as usize) {
                    v.push(record.clone());
                }
            }
        }
        let mut succeeded = 0u32;
        let mut receipts = Vec::with_capacity(tx_ids.len());
        for (i, ((id, result), events)) in tx_ids
            .iter()
            .zip(outcome.receipts.iter())
            .zip(per_tx)
            .enumerate()
        {
            succeeded += u32::from(result.is_ok());
            receipts.push(TxReceipt {
                id: *id,
                height: block.height,
                index: i as u32,
                result: result.clone(),
                events,
            });
        }
        let record = Arc::new(BlockRecord {
            height: block.height,
            digest: block.digest,
            view: block.view,
            timestamp_ms: block.timestamp_ms,
            beacon: block.beacon,
            tx_ids,
            state_root: outcome.root,
            succeeded,
            events: outcome.events,
        });
        // What the ledger pruned leaves the state here: archive it first, so a
        // block on disk always has its pruned entities archived (re-archiving the
        // same bytes on replay writes nothing).
        for p in &outcome.pruned {
            match p {
                Pruned::Job { id, job } => self.archive(EntityKind::Job, id.0, job)?,
                Pruned::Dispute { id, dispute } => {
                    self.archive(EntityKind::Dispute, id.0, dispute)?
                }
                Pruned::Proposal { id, proposal, .. } => {
                    self.archive(EntityKind::Proposal, id.0, proposal)?
                }
                Pruned::Mandate { id, mandate } => {
                    self.archive(EntityKind::Mandate, id.0, mandate)?
                }
            }
        }
        self.history.put_block(record.clone(), &receipts)?;
        if let Some(metrics) = &mut self.metrics {
            metrics.observe(&self.state, &record.events);
        }
        // The block's ledger events, then the block itself: a reader that has seen
        // `Block(h)` has seen everything height `h` did. Nobody listening is fine.
        for ev in &record.events {
            let _ = self.feed.send(ChainEvent::Ledger {
                height: block.height,
                record: ev.clone(),
            });
        }
        let _ = self.feed.send(ChainEvent::Block(record.clone()));
        Ok(Some(record))
    }

    /// The history (blocks, receipts, archived entities), for reads that want its errors.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The record of the block at `height` (from disk unless recent). A history that
    /// cannot be read is logged and answers `None`.
    pub fn block(&self, height: Height) -> Option<Arc<BlockRecord>> {
        logged(self.history.block(height))
    }

    /// The record of the block with consensus digest `digest`.
    pub fn block_by_digest(&self, digest: &[u8; 32]) -> Option<Arc<BlockRecord>> {
        logged(self.history.block_by_digest(digest))
    }

    /// Blocks with heights in `from..=to`, ascending (callers bound the range; it is read
    /// into memory). A history that cannot be read is logged and answers no blocks.
    pub fn blocks(&self, from: Height, to: Height) -> Vec<Arc<BlockRecord>> {
        logged(self.history.blocks(from, to).map(Some)).unwrap_or_default()
    }

    /// The receipt of a finalized transaction.
    pub fn receipt(&self, id: &Hash) -> Option<TxReceipt> {
        logged(self.history.receipt(id))
    }

    /// Archives `entity` (as JSON) under `kind` and `id`: what the ledger prunes from its
    /// state stays readable through [`Chain::archived`].
    pub fn archive<T: serde::Serialize>(
        &mut self,
        kind: EntityKind,
        id: u64,
        entity: &T,
    ) -> Result<(), HistoryError> {
        let body = serde_json::to_vec(entity)
            .map_err(|e| HistoryError::Encode(format!("{kind:?} {id}: {e}")))?;
        self.history.archive_entity(kind, id, &body)
    }

    /// An archived entity, decoded from its JSON (`None` if absent or unreadable, logged).
    pub fn archived<T: serde::de::DeserializeOwned>(&self, kind: EntityKind, id: u64) -> Option<T> {
        let body = logged(self.history.entity(kind, id))?;
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(?kind, id, error = %e, "archived entity does not decode");
                None
            }
        }
    }

    /// Subscribes to the event feed (from now on): each finalized block's ledger
    /// events, then the block.
    pub fn subscribe(&self) -> broadcast::Receiver<ChainEvent> {
        self.feed.subscribe()
    }
}

/// `Ok(v)` as `v`; an error logged and `None`.
fn logged<T>(r: Result<Option<T>, HistoryError>) -> Option<T> {
    r.unwrap_or_else(|e| {
        tracing::error!(error = %e, "history read failed");
        None
    })
}
