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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use agentic_protocol::{
    Block, BlockError, EventRecord, Genesis, GenesisError, Hash, Height, Receipt, Referee,
    SignedTx, State,
};
use tokio::sync::broadcast;

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

/// The node's view of the finalized chain.
pub struct Chain {
    state: State,
    blocks: BTreeMap<Height, Arc<BlockRecord>>,
    by_digest: HashMap<[u8; 32], Height>,
    receipts: HashMap<Hash, TxReceipt>,
    feed: broadcast::Sender<ChainEvent>,
    metrics: Option<LedgerMetrics>,
}

/// The chain shared between consensus (writer), the mempool and the API (readers).
pub type SharedChain = Arc<RwLock<Chain>>;

impl Chain {
    /// The chain at genesis.
    pub fn new(genesis: &Genesis) -> Result<Chain, GenesisError> {
        let (feed, _) = broadcast::channel(EVENT_FEED_CAPACITY);
        Ok(Chain {
            state: State::new(genesis)?,
            blocks: BTreeMap::new(),
            by_digest: HashMap::new(),
            receipts: HashMap::new(),
            feed,
            metrics: None,
        })
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
    /// changes nothing.
    pub fn apply(
        &mut self,
        block: &FinalizedBlock,
        referee: &dyn Referee,
    ) -> Result<Option<Arc<BlockRecord>>, BlockError> {
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
    ) -> Result<Option<Arc<BlockRecord>>, BlockError> {
        self.apply_inner(block, referee, true)
    }

    fn apply_inner(
        &mut self,
        block: &FinalizedBlock,
        referee: &dyn Referee,
        verified: bool,
    ) -> Result<Option<Arc<BlockRecord>>, BlockError> {
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
        for (i, ((id, result), events)) in tx_ids
            .iter()
            .zip(outcome.receipts.iter())
            .zip(per_tx)
            .enumerate()
        {
            succeeded += u32::from(result.is_ok());
            self.receipts.insert(
                *id,
                TxReceipt {
                    id: *id,
                    height: block.height,
                    index: i as u32,
                    result: result.clone(),
                    events,
                },
            );
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
        self.blocks.insert(block.height, record.clone());
        self.by_digest.insert(block.digest, block.height);
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

    /// The record of the block at `height`.
    pub fn block(&self, height: Height) -> Option<Arc<BlockRecord>> {
        self.blocks.get(&height).cloned()
    }

    /// The record of the block with consensus digest `digest`.
    pub fn block_by_digest(&self, digest: &[u8; 32]) -> Option<Arc<BlockRecord>> {
        self.by_digest.get(digest).and_then(|h| self.block(*h))
    }

    /// Blocks with heights in `from..=to`, ascending.
    pub fn blocks(&self, from: Height, to: Height) -> impl Iterator<Item = &Arc<BlockRecord>> {
        self.blocks.range(from..=to).map(|(_, b)| b)
    }

    /// The receipt of a finalized transaction.
    pub fn receipt(&self, id: &Hash) -> Option<&TxReceipt> {
        self.receipts.get(id)
    }

    /// Subscribes to the event feed (from now on): each finalized block's ledger
    /// events, then the block.
    pub fn subscribe(&self) -> broadcast::Receiver<ChainEvent> {
        self.feed.subscribe()
    }
}
