//! Transaction gossip (rule 6 of [`crate::consensus`]).
//!
//! [`Submitter`] is what the HTTP API submits through: it admits a transaction to the local
//! mempool against the applied state and, if admitted, queues it for the gossip actor, which
//! sends it to every peer on the transaction channel. A transaction received from a peer is
//! decoded (at most `max_tx_bytes`, never panicking) and admitted; it is never re-gossiped, so
//! a transaction travels one hop from the validator a client reached.

use agentic_protocol::{Hash, SignedTx};
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{spawn_cell, ContextCell, Handle, Metrics, Spawner};
use commonware_utils::channel::mpsc;
use tracing::{debug, trace};

use super::PublicKey;
use crate::metrics::GossipMetrics;
use crate::{AdmitError, SharedChain, SharedMempool, Submit};

/// Admits transactions locally and gossips them: the API's way into the network.
#[derive(Clone)]
pub struct Submitter {
    chain: SharedChain,
    mempool: SharedMempool,
    outbox: mpsc::UnboundedSender<SignedTx>,
}

impl Submit for Submitter {
    fn submit(&self, tx: SignedTx) -> Result<Hash, AdmitError> {
        let id = {
            let chain = self.chain.read().map_err(|_| AdmitError::Full)?;
            let mut mempool = self.mempool.lock().map_err(|_| AdmitError::Full)?;
            mempool.admit(tx.clone(), chain.state())?
        };
        // Nobody gossiping (engine stopped) only means the transaction stays local.
        let _ = self.outbox.send(tx);
        Ok(id)
    }
}

/// Sends submitted transactions to peers and admits theirs.
pub struct Gossip<E: Spawner> {
    context: ContextCell<E>,
    chain: SharedChain,
    mempool: SharedMempool,
    outbox: mpsc::UnboundedReceiver<SignedTx>,
    max_tx_bytes: usize,
    metrics: GossipMetrics,
}

impl<E: Spawner + Metrics> Gossip<E> {
    /// The gossip actor and the submit handle that feeds it; its metrics are registered in
    /// `context`.
    pub fn new(
        context: E,
        chain: SharedChain,
        mempool: SharedMempool,
        max_tx_bytes: usize,
    ) -> (Gossip<E>, Submitter) {
        let (sender, outbox) = mpsc::unbounded_channel();
        let metrics = GossipMetrics::register(&context);
        (
            Gossip {
                context: ContextCell::new(context),
                chain: chain.clone(),
                mempool: mempool.clone(),
                outbox,
                max_tx_bytes,
                metrics,
            },
            Submitter {
                chain,
                mempool,
                outbox: sender,
            },
        )
    }

    /// Runs the actor on the transaction channel.
    pub fn start(
        mut self,
        network: (
            impl Sender<PublicKey = PublicKey>,
            impl Receiver<PublicKey = PublicKey>,
        ),
    ) -> Handle<()> {
        spawn_cell!(self.context, self.run(network))
    }

    async fn run(
        mut self,
        (mut sender, mut receiver): (
            impl Sender<PublicKey = PublicKey>,
            impl Receiver<PublicKey = PublicKey>,
        ),
    ) {
        loop {
            select! {
                tx = self.outbox.recv() => {
                    let Some(tx) = tx else { return };
                    sender.send(Recipients::All, tx.to_bytes(), false);
                    self.metrics.sent.inc();
                },
                message = receiver.recv() => {
                    let Ok((peer, bytes)) = message else { return };
                    self.admit(&peer, bytes.as_ref());
                },
            }
        }
    }

    fn admit(&self, peer: &PublicKey, bytes: &[u8]) {
        self.metrics.received.inc();
        if bytes.len() > self.max_tx_bytes {
            self.metrics.invalid.inc();
            debug!(?peer, size = bytes.len(), "gossiped transaction too large");
            return;
        }
        let tx = match SignedTx::from_bytes(bytes) {
            Ok(tx) => tx,
            Err(e) => {
                self.metrics.invalid.inc();
                debug!(?peer, error = %e, "undecodable gossiped transaction");
                return;
            }
        };
        let (Ok(chain), Ok(mut mempool)) = (self.chain.read(), self.mempool.lock()) else {
            return;
        };
        match mempool.admit(tx, chain.state()) {
            Ok(id) => trace!(?peer, ?id, "admitted gossiped transaction"),
            Err(e) => trace!(?peer, error = %e, "gossiped transaction not admitted"),
        }
    }
}
