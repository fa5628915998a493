//! The executor: applies finalized blocks to the chain (rules 3–5 of [`crate::consensus`]).
//!
//! Marshal reports `Update::Block` for each finalized block, in height order, after storing
//! it durably. The executor derives the block's beacon from its round's seed, applies the
//! block with [`Chain::apply`](crate::Chain::apply), prunes the mempool, and acknowledges;
//! marshal only counts a block as processed once acknowledged, so a crash between storing and
//! applying replays the block. On start it first replays `chain height + 1 ..= processed`
//! from marshal's archive, so a restarted validator rebuilds its state before it handles new
//! blocks.

use std::time::Duration;

use agentic_protocol::Height as LedgerHeight;
use commonware_actor::Feedback;
use commonware_codec::Encode;
use commonware_consensus::{
    marshal::{core::Mailbox as MarshalMailbox, standard::Standard, Identifier, Update},
    types::Height,
    Heightable, Reporter,
};
use commonware_cryptography::{Digested, Digestible};
use commonware_runtime::{
    spawn_cell,
    telemetry::metrics::{GaugeExt as _, HistogramExt as _},
    Clock, ContextCell, Handle, Metrics, Spawner,
};
use commonware_utils::{
    channel::{mpsc, oneshot},
    Acknowledgement,
};
use tracing::{debug, error, info, warn};

use super::{Block, SeedSignature};
use crate::metrics::ExecutorMetrics;
use crate::{FinalizedBlock, SharedChain, SharedMempool};

/// How often the executor looks again for a child block that carries a seed.
const CHILD_POLL: Duration = Duration::from_millis(50);

/// Marshal's mailbox for our block type.
pub type Marshal = MarshalMailbox<super::Scheme, Standard<Block>>;

/// Where marshal reports finalized blocks (the executor's ingress).
#[derive(Clone)]
pub struct Mailbox {
    sender: mpsc::UnboundedSender<Update<Block>>,
}

impl Reporter for Mailbox {
    type Activity = Update<Block>;

    fn report(&mut self, update: Update<Block>) -> Feedback {
        // Marshal bounds the updates in flight (`max_pending_acks`), so this queue is bounded.
        match self.sender.send(update) {
            Ok(()) => Feedback::Ok,
            Err(_) => Feedback::Closed,
        }
    }
}

/// Why the executor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// Marshal does not have a block it reported as processed.
    #[error("finalized block {0} missing from storage")]
    MissingBlock(u64),
    /// The ledger refused a finalized block, or the history could not store it (the node
    /// cannot continue safely).
    #[error("cannot apply block {height}: {source}")]
    Ledger {
        /// The block.
        height: u64,
        /// Why.
        source: crate::ChainError,
    },
    /// A lock was poisoned by a panic elsewhere.
    #[error("chain or mempool lock poisoned")]
    Poisoned,
}

/// Applies finalized blocks to the chain.
pub struct Executor<E: Clock + Spawner + Metrics> {
    context: ContextCell<E>,
    chain: SharedChain,
    mempool: SharedMempool,
    receiver: mpsc::UnboundedReceiver<Update<Block>>,
    metrics: ExecutorMetrics,
}

impl<E: Clock + Spawner + Metrics> Executor<E> {
    /// An executor and the mailbox marshal reports to; its metrics are registered in
    /// `context`.
    pub fn new(context: E, chain: SharedChain, mempool: SharedMempool) -> (Self, Mailbox) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let metrics = ExecutorMetrics::register(&context);
        (
            Executor {
                context: ContextCell::new(context),
                chain,
                mempool,
                receiver,
                metrics,
            },
            Mailbox { sender },
        )
    }

    /// Starts the executor: replay (then `replayed` fires), then apply what marshal delivers.
    pub fn start(mut self, marshal: Marshal, replayed: oneshot::Sender<()>) -> Handle<()> {
        spawn_cell!(self.context, self.run(marshal, replayed))
    }

    async fn run(mut self, marshal: Marshal, replayed: oneshot::Sender<()>) {
        if let Err(e) = self.replay(&marshal).await {
            error!(error = %e, "replay failed; executor stopped");
            return;
        }
        let _ = replayed.send(());
        while let Some(update) = self.receiver.recv().await {
            match update {
                Update::Tip(_, height, _) => debug!(%height, "finalized tip"),
                Update::Block(block, ack) => {
                    if let Err(e) = self.execute(&marshal, &block).await {
                        // Not acknowledging stops marshal: the node halts rather than diverges.
                        error!(error = %e, "execution failed; executor stopped");
                        return;
                    }
                    ack.acknowledge();
                }
            }
        }
    }

    /// Re-applies the finalized blocks marshal has already processed (after a restart).
    async fn replay(&mut self, marshal: &Marshal) -> Result<(), ExecutorError> {
        let Some(processed) = marshal.get_processed().await else {
            return Ok(());
        };
        let from = self.applied() + 1;
        let to = processed.height().get();
        if from > to {
            return Ok(());
        }
        info!(from, to, "replaying finalized blocks from storage");
        for h in from..=to {
            let block = marshal
                .get_block(Identifier::Height(Height::new(h)))
                .await
                .ok_or(ExecutorError::MissingBlock(h))?;
            self.execute(marshal, &block).await?;
            self.metrics.replayed.inc();
        }
        Ok(())
    }

    fn applied(&self) -> u64 {
        self.chain.read().map(|c| c.height().0).unwrap_or(0)
    }

    async fn execute(
        &mut self,
        marshal: &Marshal,
        block: &Digested<Block>,
    ) -> Result<(), ExecutorError> {
        let height = block.height().get();
        if height <= self.applied() {
            return Ok(()); // redelivery after a restart
        }
        let seed = self.seed(marshal, block).await;
        let inner = block.inner();
        let finalized = FinalizedBlock {
            height: LedgerHeight(height),
            digest: inner.digest_bytes(),
            view: inner.context.round.view().get(),
            timestamp_ms: inner.timestamp_ms,
            beacon: *blake3::hash(&seed.encode()).as_bytes(),
            txs: inner.txs.clone(),
        };
        let started = self.context.current();
        let mut chain = self.chain.write().map_err(|_| ExecutorError::Poisoned)?;
        let record = chain
            .apply_verified(&finalized, &agentic_protocol::Verdicts(&inner.verdicts))
            .map_err(|source| ExecutorError::Ledger { height, source })?;
        let pruned = self
            .mempool
            .lock()
            .map_err(|_| ExecutorError::Poisoned)?
            .remove_finalized(&finalized.txs, chain.state());
        drop(chain);
        self.metrics
            .apply
            .observe_between(started, self.context.current());
        if let Some(record) = record {
            let txs = record.tx_ids.len() as u64;
            let succeeded = u64::from(record.succeeded);
            self.metrics.blocks.inc();
            self.metrics.txs_applied.inc_by(succeeded);
            self.metrics.txs_failed.inc_by(txs - succeeded);
            let _ = self.metrics.height.try_set(height);
            info!(
                height,
                txs = record.tx_ids.len(),
                succeeded = record.succeeded,
                pruned,
                root = ?record.state_root,
                "applied finalized block"
            );
        }
        Ok(())
    }

    /// The seed signature of the block's round: from the finalization stored for its height,
    /// or, if it was finalized only through a descendant, from its child's `parent_seed`.
    async fn seed(&self, marshal: &Marshal, block: &Digested<Block>) -> SeedSignature {
        let height = block.height();
        let round = block.inner().context.round;
        if let Some(finalization) = marshal.get_finalization(height).await {
            if finalization.proposal.payload == block.digest()
                && finalization.proposal.round == round
            {
                if let Some(signature) = finalization.certificate.get() {
                    return signature.seed_signature;
                }
            }
        }
        // Finalized through a descendant: the child is finalized too and names this round's
        // seed (checked at verify). Marshal stores it with this block; wait if it is not yet.
        loop {
            if let Some(child) = marshal.get_block(Identifier::Height(height.next())).await {
                if child.inner().parent == block.digest() {
                    if let Some(seed) = child.inner().parent_seed {
                        debug!(%height, "finalized through a descendant: seed from the child");
                        return seed;
                    }
                }
                warn!(%height, "child block does not carry this block's seed");
            }
            self.context.sleep(CHILD_POLL).await;
        }
    }
}
