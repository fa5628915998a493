//! The mempool: signed transactions waiting for a block.
//!
//! A transaction is admitted only if it could apply on top of the finalized state
//! plus the transactions already pooled for its sender: a valid signature, this
//! chain's id, at least the fee its work requires (`Params::required_fee`: the
//! minimum fee, plus the slots a `SubmitJob` makes the ledger match and the body's
//! whole KiB), a nonce that is neither stale nor too far
//! ahead, and a balance that covers the fee. The ledger charges nothing for a
//! rejected transaction, so the mempool is what keeps free garbage out of blocks;
//! only admitted transactions are gossiped.
//!
//! Block building ([`Mempool::select`]) takes, per sender, the run of consecutive
//! nonces that starts at the sender's next nonce (counting transactions in blocks
//! that are proposed but not yet finalized), senders visited in address order,
//! until the block's transaction or byte budget is full. After each finalized
//! block, [`Mempool::prune`] drops what became stale.

use std::collections::{BTreeMap, HashMap};

use agentic_protocol::{Address, Amount, ChainId, Hash, SignedTx, State};

use crate::metrics::MempoolMetrics;

/// Bounds on what the mempool holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolLimits {
    /// Most transactions held in total.
    pub max_txs: usize,
    /// Most encoded bytes held in total.
    pub max_bytes: usize,
    /// Most transactions held per sender (nonces `next..next + max_per_sender`).
    pub max_per_sender: u64,
    /// Largest encoded transaction admitted.
    pub max_tx_bytes: usize,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        MempoolLimits {
            max_txs: 200_000,
            max_bytes: 256 << 20,
            max_per_sender: 1024,
            max_tx_bytes: 64 << 10,
        }
    }
}

/// Why a transaction was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The transaction names another chain.
    #[error("wrong chain id: this chain is {expected}, the transaction says {got}")]
    WrongChain {
        /// This chain.
        expected: ChainId,
        /// The transaction's.
        got: ChainId,
    },
    /// The fee is below what the transaction's work requires
    /// (`Params::required_fee`: at least the governed minimum).
    #[error("fee {fee} is below the {required} this transaction requires")]
    FeeTooLow {
        /// Offered.
        fee: Amount,
        /// Required.
        required: Amount,
    },
    /// The nonce was already used.
    #[error("stale nonce {got}: the sender's next nonce is {next}")]
    StaleNonce {
        /// The sender's next nonce.
        next: u64,
        /// The transaction's.
        got: u64,
    },
    /// The nonce is too far ahead of the sender's next nonce.
    #[error("nonce {got} is too far ahead: the sender's next nonce is {next}, at most {max_ahead} may be pending")]
    NonceTooFarAhead {
        /// The sender's next nonce.
        next: u64,
        /// The transaction's.
        got: u64,
        /// How many may be pending.
        max_ahead: u64,
    },
    /// The balance does not cover the fee.
    #[error("balance {have} cannot pay the fee {fee}")]
    CannotPayFee {
        /// The fee.
        fee: Amount,
        /// The balance.
        have: Amount,
    },
    /// The same transaction is already pooled.
    #[error("already in the mempool")]
    Duplicate,
    /// Another transaction with the same sender and nonce is pooled.
    #[error("another transaction with nonce {0} from this sender is pending")]
    NonceTaken(u64),
    /// The transaction's encoding is too large.
    #[error("transaction is {size} bytes, the limit is {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The mempool is full.
    #[error("mempool is full")]
    Full,
}

impl AdmitError {
    /// A stable machine-readable name: the API's error `code` and the `reason` label of
    /// the `mempool_rejected` metric.
    pub fn code(&self) -> &'static str {
        match self {
            AdmitError::BadSignature => "bad_signature",
            AdmitError::WrongChain { .. } => "wrong_chain",
            AdmitError::FeeTooLow { .. } => "fee_too_low",
            AdmitError::StaleNonce { .. } => "stale_nonce",
            AdmitError::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
            AdmitError::CannotPayFee { .. } => "cannot_pay_fee",
            AdmitError::Duplicate => "duplicate",
            AdmitError::NonceTaken(_) => "nonce_taken",
            AdmitError::TooLarge { .. } => "tx_too_large",
            AdmitError::Full => "mempool_full",
        }
    }
}

struct Entry {
    tx: SignedTx,
    size: usize,
}

/// Pending transactions, indexed by id and by `(sender, nonce)`.
pub struct Mempool {
    limits: MempoolLimits,
    by_id: HashMap<Hash, (Address, u64)>,
    by_sender: BTreeMap<Address, BTreeMap<u64, Entry>>,
    bytes: usize,
    metrics: MempoolMetrics,
}

impl Mempool {
    /// An empty mempool.
    pub fn new(limits: MempoolLimits) -> Mempool {
        Mempool {
            limits,
            by_id: HashMap::new(),
            by_sender: BTreeMap::new(),
            bytes: 0,
            metrics: MempoolMetrics::default(),
        }
    }

    /// The same mempool, reporting to `metrics` (size, admissions, rejections, removals).
    pub fn with_metrics(mut self, metrics: MempoolMetrics) -> Mempool {
        metrics.size(self.len(), self.bytes);
        self.metrics = metrics;
        self
    }

    /// Number of pooled transactions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether nothing is pooled.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Encoded bytes pooled.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a transaction with this id is pooled.
    pub fn contains(&self, id: &Hash) -> bool {
        self.by_id.contains_key(id)
    }

    /// Checks `tx` against the finalized `state` (see the module docs) and pools it.
    /// Returns its id. Changes nothing on error.
    pub fn admit(&mut self, tx: SignedTx, state: &State) -> Result<Hash, AdmitError> {
        let result = self.check_and_insert(tx, state);
        match &result {
            Ok(_) => {
                self.metrics.admitted();
                self.metrics.size(self.len(), self.bytes);
            }
            Err(e) => self.metrics.rejected(e),
        }
        result
    }

    fn check_and_insert(&mut self, tx: SignedTx, state: &State) -> Result<Hash, AdmitError> {
        let size = commonware_codec::EncodeSize::encode_size(&tx);
        if size > self.limits.max_tx_bytes {
            return Err(AdmitError::TooLarge {
                size,
                max: self.limits.max_tx_bytes,
            });
        }
        let id = tx.id();
        if self.by_id.contains_key(&id) {
            return Err(AdmitError::Duplicate);
        }
        let body = tx.tx();
        if body.chain_id != state.chain_id() {
            return Err(AdmitError::WrongChain {
                expected: state.chain_id(),
                got: body.chain_id,
            });
        }
        // The ledger's own rule (`min_fee` for a transfer, which matches nothing and
        // is under a KiB; the work's price for everything else): a fee it would
        // refuse never enters a block.
        let required = state.params().required_fee(&body.body);
        if body.fee < required {
            return Err(AdmitError::FeeTooLow {
                fee: body.fee,
                required,
            });
        }
        let sender = tx.sender();
        let next = state.nonce(&sender);
        if body.nonce < next {
            return Err(AdmitError::StaleNonce {
                next,
                got: body.nonce,
            });
        }
        if body.nonce - next >= self.limits.max_per_sender {
            return Err(AdmitError::NonceTooFarAhead {
                next,
                got: body.nonce,
                max_ahead: self.limits.max_per_sender,
            });
        }
        if let Some(q) = self.by_sender.get(&sender) {
            if q.contains_key(&body.nonce) {
                return Err(AdmitError::NonceTaken(body.nonce));
            }
        }
        let have = state.balance(&sender);
        if have < body.fee {
            return Err(AdmitError::CannotPayFee {
                fee: body.fee,
                have,
            });
        }
        if self.by_id.len() >= self.limits.max_txs || self.bytes + size > self.limits.max_bytes {
            return Err(AdmitError::Full);
        }
        // The signature last: it is the expensive check.
        if !tx.verify() {
            return Err(AdmitError::BadSignature);
        }
        let nonce = body.nonce;
        self.by_id.insert(id, (sender, nonce));
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(nonce, Entry { tx, size });
        self.bytes += size;
        Ok(id)
    }

    /// Transactions for the next block: per sender, consecutive nonces from the
    /// sender's next nonce after `state` and `in_flight` (transactions in proposed,
    /// not yet finalized ancestors); senders in address order; at most `max_txs`
    /// transactions and `max_bytes` encoded bytes.
    pub fn select(
        &self,
        state: &State,
        in_flight: &[SignedTx],
        max_txs: usize,
        max_bytes: usize,
    ) -> Vec<SignedTx> {
        let mut next_after_flight: BTreeMap<Address, u64> = BTreeMap::new();
        let mut flight_ids = std::collections::HashSet::new();
        for tx in in_flight {
            flight_ids.insert(tx.id());
            let s = tx.sender();
            let n = next_after_flight
                .entry(s)
                .or_insert_with(|| state.nonce(&s));
            if tx.tx().nonce == *n {
                *n += 1;
            }
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        'senders: for (sender, queue) in &self.by_sender {
            let mut want = next_after_flight
                .get(sender)
                .copied()
                .unwrap_or_else(|| state.nonce(sender));
            for (nonce, e) in queue.range(want..) {
                if *nonce != want {
                    break;
                }
                if out.len() >= max_txs {
                    break 'senders;
                }
                if bytes + e.size > max_bytes {
                    continue 'senders;
                }
                if !flight_ids.contains(&e.tx.id()) {
                    bytes += e.size;
                    out.push(e.tx.clone());
                }
                want += 1;
            }
        }
        out
    }

    /// Drops the transactions of a finalized block — including those the ledger
    /// rejected, which keep their nonce unused but must not be proposed again — and
    /// then everything [`Mempool::prune`] drops. Returns how many were dropped.
    pub fn remove_finalized(&mut self, included: &[SignedTx], state: &State) -> usize {
        let mut dropped = 0;
        for tx in included {
            let id = tx.id();
            if let Some((sender, nonce)) = self.by_id.remove(&id) {
                if let Some(queue) = self.by_sender.get_mut(&sender) {
                    if let Some(e) = queue.remove(&nonce) {
                        self.bytes -= e.size;
                    }
                    if queue.is_empty() {
                        self.by_sender.remove(&sender);
                    }
                }
                dropped += 1;
            }
        }
        self.metrics.removed("finalized", dropped);
        dropped + self.prune(state)
    }

    /// Drops every transaction whose nonce the finalized `state` has used (included,
    /// or replaced by another with the same nonce). Returns how many were dropped.
    pub fn prune(&mut self, state: &State) -> usize {
        let mut dropped = 0;
        let mut empty = Vec::new();
        for (sender, queue) in self.by_sender.iter_mut() {
            let next = state.nonce(sender);
            let stale: Vec<u64> = queue.range(..next).map(|(n, _)| *n).collect();
            for n in stale {
                if let Some(e) = queue.remove(&n) {
                    self.by_id.remove(&e.tx.id());
                    self.bytes -= e.size;
                    dropped += 1;
                }
            }
            if queue.is_empty() {
                empty.push(*sender);
            }
        }
        for s in empty {
            self.by_sender.remove(&s);
        }
        self.metrics.removed("stale", dropped);
        self.metrics.size(self.len(), self.bytes);
        dropped
    }
}

/// The mempool shared between the API, gossip and block building.
pub type SharedMempool = std::sync::Arc<std::sync::Mutex<Mempool>>;

/// Where the API sends a client's transaction: admit it to the local mempool
/// (checked against the finalized state) and, if admitted, gossip it to peers.
pub trait Submit: Send + Sync + 'static {
    /// Admits `tx`; returns its id, or why it was refused (nothing changes then).
    fn submit(&self, tx: SignedTx) -> Result<Hash, AdmitError>;
}
