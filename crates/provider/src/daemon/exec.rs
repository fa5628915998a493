//! The executor: performs the planner's [`Action`]s, and sends transactions with
//! pipelined nonces.
//!
//! ```text
//!  Sender::send ─▶ sign (chain id, the next free nonce, the fee the body requires)
//!               ─▶ POST /v1/txs ─▶ pending[key] (no waiting)
//!  Sender::poll (each tick, before the work is read) ─▶ GET /v1/txs/{id} per pending
//!               applied  ─▶ its Landed is returned (the journal and status note it)
//!               rejected ─▶ logged; its nonce is free again (the ledger charges
//!                           nothing and does not bump the nonce)
//!               unseen past tx_timeout ─▶ dropped; the nonce is read again from the chain
//!  Sender::fill_gaps ─▶ a nonce freed below a pending one stalls every later
//!               transaction: fill it with a 1-unit transfer to itself
//! ```
//!
//! Several transactions of one daemon can therefore land in the same block: a commit of
//! one job, a reveal of another and a bisection move no longer wait for each other's
//! finality. The mempool keeps up to `max_per_sender` consecutive nonces per sender.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use agentic_client::api::TxStatus;
use agentic_client::{Client, ClientError};
use agentic_protocol::params::Params;
use agentic_protocol::{Address, ChainId, Hash, SignedTx, Tx, TxBody};
use commonware_cryptography::ed25519::PrivateKey;

use super::plan::{Landed, TxKey};

/// A transaction sent whose receipt is not read yet.
struct Pending {
    id: Hash,
    nonce: u64,
    sent: Instant,
    landed: Landed,
    kind: &'static str,
}

/// What a receipt said, as [`Sender::poll`] read it.
pub(crate) enum Receipt {
    /// Applied: record what it means.
    Applied(Landed),
    /// Refused by the ledger (nothing charged).
    Rejected {
        /// The transaction's kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// Not finalized within the timeout: forgotten.
    Lost {
        /// The transaction's kind.
        kind: &'static str,
    },
}

/// One signer's transactions, sent without waiting for each other.
pub(crate) struct Sender {
    client: Client,
    key: PrivateKey,
    me: Address,
    timeout: Duration,
    chain_id: Option<ChainId>,
    params: Option<Params>,
    /// The next nonce never used by us (`None`: read it from the chain).
    next: Option<u64>,
    /// Nonces below `next` that a rejected or lost transaction left unused.
    free: BTreeSet<u64>,
    pending: BTreeMap<TxKey, Pending>,
}

impl Sender {
    pub(crate) fn new(client: Client, key: PrivateKey, timeout: Duration) -> Sender {
        let me = Address::from(&commonware_cryptography::Signer::public_key(&key));
        Sender {
            client,
            key,
            me,
            timeout,
            chain_id: None,
            params: None,
            next: None,
            free: BTreeSet::new(),
            pending: BTreeMap::new(),
        }
    }

    /// The keys of the transactions in flight.
    pub(crate) fn pending(&self) -> BTreeSet<TxKey> {
        self.pending.keys().copied().collect()
    }

    /// Forgets the cached parameters (read again at the next send: governance may have
    /// changed the fees).
    pub(crate) fn refresh_params(&mut self) {
        self.params = None;
    }

    /// Signs and submits `body` under `key`; returns once the node admitted it.
    pub(crate) async fn send(
        &mut self,
        key: TxKey,
        body: TxBody,
        landed: Landed,
    ) -> Result<(), ClientError> {
        if self.chain_id.is_none() {
            self.chain_id = Some(self.client.status().await?.chain_id);
        }
        if self.params.is_none() {
            self.params = Some(self.client.params().await?);
        }
        let (Some(chain_id), Some(params)) = (self.chain_id, self.params.as_ref()) else {
            return Ok(());
        };
        let fee = params.required_fee(&body);
        let kind = body.kind();
        // A transaction of ours from before a restart (or a lost one) may hold the
        // nonce we pick: skip it and try the next.
        for _ in 0..16 {
            let nonce = self.take_nonce().await?;
            let tx = SignedTx::sign(
                &self.key,
                Tx {
                    chain_id,
                    nonce,
                    fee,
                    body: body.clone(),
                },
            );
            match self.client.submit(&tx).await {
                Ok(id) => {
                    self.pending.insert(
                        key,
                        Pending {
                            id,
                            nonce,
                            sent: Instant::now(),
                            landed,
                            kind,
                        },
                    );
                    return Ok(());
                }
                Err(ClientError::Api { code, .. }) if code == "nonce_taken" => continue,
                Err(e @ ClientError::Api { .. }) => {
                    // Stale (the chain moved past our count), too far ahead, or a fee
                    // the parameters no longer allow: read both again next time.
                    self.next = None;
                    self.free.clear();
                    self.params = None;
                    return Err(e);
                }
                Err(e) => {
                    // Not admitted (the node did not answer): the nonce is unused.
                    self.free.insert(nonce);
                    return Err(e);
                }
            }
        }
        Err(ClientError::Api {
            status: 422,
            code: "nonce_taken".into(),
            message: "every nonce tried is held by another pending transaction".into(),
        })
    }

    /// The lowest nonce free for a new transaction.
    async fn take_nonce(&mut self) -> Result<u64, ClientError> {
        let held: BTreeSet<u64> = self.pending.values().map(|p| p.nonce).collect();
        while let Some(n) = self.free.pop_first() {
            if !held.contains(&n) {
                return Ok(n);
            }
        }
        let mut n = match self.next {
            Some(n) => n,
            None => self.client.nonce(&self.me).await?,
        };
        while held.contains(&n) {
            n += 1;
        }
        self.next = Some(n + 1);
        Ok(n)
    }

    /// Reads the receipts of the transactions in flight; returns what each finalized
    /// (or timed-out) one means.
    pub(crate) async fn poll(&mut self) -> Vec<Receipt> {
        let mut out = Vec::new();
        let keys: Vec<TxKey> = self.pending.keys().copied().collect();
        for key in keys {
            let Some(p) = self.pending.get(&key) else {
                continue;
            };
            match self.client.tx(&p.id).await {
                Ok(TxStatus::Finalized(r)) => {
                    let Some(p) = self.pending.remove(&key) else {
                        continue;
                    };
                    if r.result.ok {
                        out.push(Receipt::Applied(p.landed));
                    } else {
                        // The ledger neither charged it nor used its nonce.
                        self.free.insert(p.nonce);
                        out.push(Receipt::Rejected {
                            kind: p.kind,
                            reason: r.result.error.unwrap_or_else(|| "unknown".into()),
                        });
                    }
                }
                Ok(TxStatus::Pending(_)) => {}
                Err(e) if !e.is_not_found() => {
                    tracing::debug!(error = %e, "reading a receipt");
                    continue;
                }
                Err(_) => {}
            }
            if self
                .pending
                .get(&key)
                .is_some_and(|p| p.sent.elapsed() > self.timeout)
            {
                if let Some(p) = self.pending.remove(&key) {
                    // It may still land: read the nonce from the chain again.
                    self.next = None;
                    self.free.clear();
                    out.push(Receipt::Lost { kind: p.kind });
                }
            }
        }
        self.trim();
        out
    }

    /// Free nonces at the top of the sequence are simply reused next.
    fn trim(&mut self) {
        let top = self.pending.values().map(|p| p.nonce).max();
        while let (Some(&n), Some(next)) = (self.free.last(), self.next) {
            if n + 1 == next && top.is_none_or(|t| t < n) {
                self.free.pop_last();
                self.next = Some(n);
            } else {
                break;
            }
        }
    }

    /// Fills each free nonce below a pending transaction's (which would otherwise stall
    /// every later one) with a 1-unit transfer to ourselves.
    pub(crate) async fn fill_gaps(&mut self) -> Result<(), ClientError> {
        let Some(top) = self.pending.values().map(|p| p.nonce).max() else {
            return Ok(());
        };
        let gaps: Vec<u64> = self.free.range(..top).copied().collect();
        for n in gaps {
            tracing::info!(
                nonce = n,
                "filling a nonce a rejected transaction left unused"
            );
            self.send(
                TxKey::Filler(n),
                TxBody::Transfer {
                    to: self.me,
                    amount: agentic_protocol::Amount(1),
                },
                Landed::Nothing,
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "localnet"))]
mod tests {
    use agentic_protocol::{Amount, Hash, JobId};

    use super::*;
    use crate::local::{self, MarketSpec};

    /// Reads receipts (filling gaps as the daemon does each turn) until nothing is in
    /// flight; returns every receipt read.
    async fn drain(sender: &mut Sender) -> Vec<Receipt> {
        let start = Instant::now();
        let mut out = Vec::new();
        while !sender.pending().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "transactions stalled"
            );
            out.extend(sender.poll().await);
            sender.fill_gaps().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        out
    }

    #[test]
    fn a_refused_transaction_leaves_no_gap_that_stalls_the_ones_after_it() {
        let dir = std::env::temp_dir().join(format!("agentic-exec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spec = MarketSpec::new(1, &["alice", "bob"]);
        local::run(&dir, spec, |net| async move {
            let c = net.client();
            let (alice, bob) = (net.key("alice"), net.key("bob").address());
            let bob_before = c.account(&bob).await.unwrap().account.balance;
            let mut sender = Sender::new(c.clone(), alice.key.clone(), Duration::from_secs(30));
            // Admitted by the mempool (signature, nonce, fee), refused by the ledger:
            // there is no job 999. The ledger neither charges it nor uses its nonce.
            let refused = TxBody::CommitResult {
                job: JobId(999),
                stage: 0,
                commitment: Hash([1; 32]),
            };
            let pay = |n| TxBody::Transfer {
                to: bob,
                amount: Amount(n),
            };
            sender
                .send(TxKey::Commit(JobId(999), 0), refused, Landed::Nothing)
                .await
                .unwrap();
            sender
                .send(TxKey::Offer, pay(5), Landed::OfferUpdated)
                .await
                .unwrap();
            assert_eq!(sender.pending().len(), 2, "both sent without waiting");
            let first = drain(&mut sender).await;
            assert!(matches!(
                first[0],
                Receipt::Rejected {
                    kind: "commit_result",
                    ..
                }
            ));
            // The transfer behind it either went in the same block (and was refused
            // with it: its nonce was not next) or waited behind the freed nonce until
            // a filler took it; either way nothing is left stuck.
            let paid_first = first
                .iter()
                .any(|r| matches!(r, Receipt::Applied(Landed::OfferUpdated)));
            sender
                .send(TxKey::Offer, pay(7), Landed::OfferUpdated)
                .await
                .unwrap();
            let second = drain(&mut sender).await;
            assert!(matches!(
                second[..],
                [Receipt::Applied(Landed::OfferUpdated)]
            ));
            let bob_after = c.account(&bob).await.unwrap().account.balance;
            let expected = if paid_first { 12 } else { 7 };
            assert_eq!(bob_after.0 - bob_before.0, expected);
            // Every nonce used belongs to a transaction that applied.
            let applied = first
                .iter()
                .chain(&second)
                .filter(|r| matches!(r, Receipt::Applied(_)))
                .count() as u64;
            let nonce = c.account(&alice.address()).await.unwrap().account.nonce;
            assert_eq!(nonce, applied);

            // The race the filler is for: a transaction signed with the next nonce
            // before the receipt of the refused one before it was read.
            let refused = TxBody::CommitResult {
                job: JobId(998),
                stage: 0,
                commitment: Hash([2; 32]),
            };
            sender
                .send(TxKey::Commit(JobId(998), 0), refused, Landed::Nothing)
                .await
                .unwrap();
            let start = Instant::now();
            let mut receipts = Vec::new();
            while receipts.is_empty() {
                assert!(start.elapsed() < Duration::from_secs(30));
                receipts = sender.poll().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(matches!(receipts[..], [Receipt::Rejected { .. }]));
            // The refused nonce is the next one again; sign the transfer as if it had
            // been sent while the refused one was still in flight.
            let gap = sender.next.expect("the nonce is known");
            sender.next = Some(gap + 1);
            sender
                .send(TxKey::Offer, pay(11), Landed::OfferUpdated)
                .await
                .unwrap();
            // Blocks go by (one every 200 ms) and the transfer waits behind the gap.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(sender.poll().await.is_empty(), "stalled behind nonce {gap}");
            assert_eq!(sender.pending().len(), 1);
            sender.free.insert(gap);
            let filled = drain(&mut sender).await;
            assert_eq!(
                filled.len(),
                2,
                "the filler and the transfer: {}",
                filled.len()
            );
            assert!(filled.iter().all(|r| matches!(r, Receipt::Applied(_))));
            let bob_end = c.account(&bob).await.unwrap().account.balance;
            // The filler paid alice herself; bob got the 11.
            assert_eq!(bob_end.0 - bob_after.0, 11);
            assert_eq!(
                c.account(&alice.address()).await.unwrap().account.nonce,
                applied + 2
            );
        })
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
