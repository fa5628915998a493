//! A simulated validator network for the consensus tests: real simplex, real BLS threshold
//! keys, real marshal and storage, under the deterministic runtime with simulated links.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentic_node::consensus::{
    deal, start_simulated, Config, Digest, PrivateKey, PublicKey, Scheme, Share, Sharing,
    CHANNEL_VOTES,
};
use agentic_node::{Chain, Mempool, MempoolLimits, SharedChain, Submit, Submitter};
use agentic_protocol::test_utils::{address_of, fast_params, key, GenesisBuilder};
use agentic_protocol::{Address, Amount, ChainId, Genesis, Hash, Height, SignedTx, Tx, TxBody};
use commonware_codec::{DecodeExt, Encode};
use commonware_consensus::simplex::types::{Finalize, Notarize, Proposal, Vote};
use commonware_cryptography::{Hasher, Sha256, Signer};
use commonware_p2p::{
    simulated::{self, Link, Network, Oracle},
    Receiver, Recipients, Sender,
};
use commonware_runtime::{deterministic, Clock, Handle, Quota, Spawner, Supervisor};
use commonware_utils::{probability, NZUsize, NZU32};

/// The chain id of the test network.
pub const CHAIN_ID: u64 = 7;
/// Users funded at genesis (seeds `USER_SEED..USER_SEED + USERS`).
pub const USERS: u64 = 8;
const USER_SEED: u64 = 100;
const QUOTA: Quota = Quota::per_second(NZU32!(10_000));

/// A lossy, jittery link.
pub const LINK: Link = Link {
    latency: Duration::from_millis(40),
    jitter: Duration::from_millis(10),
    success_rate: probability!(98, 100),
};

/// Validator keys (threshold shares dealt from a seed) and the genesis.
pub struct Keys {
    /// Validator keys, sorted by public key (so `shares[i]` belongs to `signers[i]`).
    pub signers: Vec<PrivateKey>,
    pub participants: Vec<PublicKey>,
    pub polynomial: Sharing,
    pub shares: Vec<Share>,
    pub genesis: Genesis,
}

impl Keys {
    /// Keys for `n` validators and a genesis funding [`USERS`] users.
    pub fn new(n: usize) -> Keys {
        let mut signers: Vec<PrivateKey> = (0..n as u64)
            .map(|i| PrivateKey::from_seed(1_000 + i))
            .collect();
        signers.sort_by_key(|k| k.public_key());
        let participants: Vec<PublicKey> = signers.iter().map(|k| k.public_key()).collect();
        let (polynomial, shares) = deal(n as u32, 42).unwrap();
        let mut genesis = GenesisBuilder::new(CHAIN_ID).params(fast_params());
        for u in 0..USERS {
            genesis = genesis.account(address_of(&key(USER_SEED + u)), 1_000_000, 0);
        }
        Keys {
            signers,
            participants,
            polynomial,
            shares,
            genesis: genesis.build(),
        }
    }

    /// The consensus configuration of validator `i`.
    pub fn config(&self, i: usize) -> Config {
        Config::new(
            self.signers[i].clone(),
            self.participants.clone(),
            self.polynomial.clone(),
            self.shares[i].clone(),
            Config::namespace_for(ChainId(CHAIN_ID)),
            format!("validator-{i}"),
        )
    }
}

/// The test network: keys, genesis and the simulated p2p oracle.
pub struct Net {
    pub context: deterministic::Context,
    pub oracle: Oracle<PublicKey, deterministic::Context>,
    pub keys: Keys,
}

impl std::ops::Deref for Net {
    type Target = Keys;
    fn deref(&self) -> &Keys {
        &self.keys
    }
}

/// A running validator.
pub struct Validator {
    pub index: usize,
    pub chain: SharedChain,
    pub submitter: Submitter,
    handle: Handle<()>,
}

impl Validator {
    /// Height of the last applied block.
    pub fn height(&self) -> u64 {
        self.chain.read().unwrap().height().0
    }
    /// Current state root.
    pub fn root(&self) -> Hash {
        self.chain.read().unwrap().root()
    }
    /// `(digest, state root)` of the block at `h`.
    pub fn block_at(&self, h: u64) -> Option<([u8; 32], Hash)> {
        self.chain
            .read()
            .unwrap()
            .block(Height(h))
            .map(|b| (b.digest, b.state_root))
    }
    /// Whether `id` is in a finalized block, and whether it succeeded.
    pub fn receipt(&self, id: &Hash) -> Option<bool> {
        self.chain
            .read()
            .unwrap()
            .receipt(id)
            .map(|r| r.result.is_ok())
    }
    /// Balance after the last applied block.
    pub fn balance(&self, who: &Address) -> Amount {
        self.chain.read().unwrap().state().balance(who)
    }
    /// Crashes the validator: every task it runs is aborted (its storage stays).
    pub async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

impl Net {
    /// `n` validators with dealt threshold keys, every pair linked with [`LINK`].
    pub async fn new(context: deterministic::Context, n: usize) -> Net {
        let keys = Keys::new(n);
        let participants = keys.participants.clone();
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: 8 << 20,
                max_peers_per_set: NZUsize!(n),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            participants.clone(),
        )
        .await;
        network.start();
        let net = Net {
            context,
            oracle,
            keys,
        };
        net.link_all(LINK).await;
        net
    }

    /// Links every ordered pair of validators.
    pub async fn link_all(&self, link: Link) {
        for a in &self.participants {
            for b in &self.participants {
                if a != b {
                    let _ = self.oracle.remove_link(a.clone(), b.clone()).await;
                    self.oracle
                        .add_link(a.clone(), b.clone(), link.clone())
                        .await
                        .unwrap();
                }
            }
        }
    }

    /// Cuts every link between `left` and the others.
    pub async fn partition(&self, left: &[usize]) {
        for i in 0..self.participants.len() {
            for j in 0..self.participants.len() {
                if left.contains(&i) != left.contains(&j) {
                    let _ = self
                        .oracle
                        .remove_link(self.participants[i].clone(), self.participants[j].clone())
                        .await;
                }
            }
        }
    }

    /// Starts validator `i` from its storage (empty the first time) and a chain at genesis.
    pub async fn start(&self, i: usize) -> Validator {
        let chain = Chain::new(&self.genesis).unwrap().shared();
        let mempool = Arc::new(Mutex::new(Mempool::new(MempoolLimits::default())));
        let (handle, submitter) = start_simulated(
            &self.context,
            &self.oracle,
            self.config(i),
            chain.clone(),
            mempool,
            QUOTA,
        )
        .await
        .unwrap();
        Validator {
            index: i,
            chain,
            submitter,
            handle,
        }
    }

    /// Starts validator `i` as an equivocator: it runs no engine, and answers every notarize
    /// and finalize vote it sees with two of its own for the same round, one for the seen
    /// proposal and one for a made-up one.
    pub async fn start_equivocator(&self, i: usize) -> Handle<()> {
        let scheme = Scheme::signer(
            &Config::namespace_for(ChainId(CHAIN_ID)),
            commonware_utils::ordered::Set::from_iter_dedup(self.participants.iter().cloned()),
            self.polynomial.clone(),
            self.shares[i].clone(),
        )
        .unwrap();
        let control = self.oracle.control(self.participants[i].clone());
        let (mut sender, mut receiver) = control.register(CHANNEL_VOTES, QUOTA).await.unwrap();
        self.context
            .child("equivocator")
            .spawn(move |_| async move {
                let mut counter = 0u64;
                while let Ok((_, msg)) = receiver.recv().await {
                    let Ok(vote) = Vote::<Scheme, Digest>::decode(msg) else {
                        continue;
                    };
                    counter += 1;
                    let fake = Sha256::hash(&[b"equivocation", &counter.to_be_bytes()]);
                    let conflicting: Vec<Vote<Scheme, Digest>> = match vote {
                        Vote::Notarize(n) => {
                            let other = Proposal::new(n.proposal.round, n.proposal.parent, fake);
                            vec![
                                Vote::Notarize(Notarize::sign(&scheme, other).unwrap()),
                                Vote::Notarize(Notarize::sign(&scheme, n.proposal).unwrap()),
                            ]
                        }
                        Vote::Finalize(f) => {
                            let other = Proposal::new(f.proposal.round, f.proposal.parent, fake);
                            vec![
                                Vote::Finalize(Finalize::sign(&scheme, other).unwrap()),
                                Vote::Finalize(Finalize::sign(&scheme, f.proposal).unwrap()),
                            ]
                        }
                        _ => continue,
                    };
                    for v in conflicting {
                        sender.send(Recipients::All, v.encode(), true);
                    }
                }
            })
    }

    /// Waits (virtual time) until `done` holds.
    pub async fn wait_until(&self, mut done: impl FnMut() -> bool) {
        while !done() {
            self.context.sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sleeps `secs` of virtual time.
    pub async fn sleep(&self, secs: u64) {
        self.context.sleep(Duration::from_secs(secs)).await;
    }
}

/// A transfer of `amount` from user `from` (its `nonce`-th transaction) to `to`.
pub fn transfer(from: u64, nonce: u64, to: Address, amount: u128) -> SignedTx {
    SignedTx::sign(
        &key(USER_SEED + from),
        Tx {
            chain_id: ChainId(CHAIN_ID),
            nonce,
            fee: Amount(1),
            body: TxBody::Transfer {
                to,
                amount: Amount(amount),
            },
        },
    )
}

/// Submits through `v` and returns the id.
pub fn submit(v: &Validator, tx: SignedTx) -> Hash {
    v.submitter.submit(tx).expect("admitted")
}

/// Asserts that the validators agree on every block and state root they both have, and
/// returns the lowest height all of them reached.
pub fn assert_agree(validators: &[&Validator]) -> u64 {
    let common = validators.iter().map(|v| v.height()).min().unwrap_or(0);
    let highest = validators.iter().map(|v| v.height()).max().unwrap_or(0);
    for h in 1..=highest {
        let seen: BTreeSet<([u8; 32], Hash)> =
            validators.iter().filter_map(|v| v.block_at(h)).collect();
        assert!(
            seen.len() <= 1,
            "validators disagree at height {h}: {seen:?}"
        );
    }
    for h in 1..=common {
        assert!(validators.iter().all(|v| v.block_at(h).is_some()));
    }
    common
}

/// A recipient address that no test key controls.
pub fn sink(i: u8) -> Address {
    Address([i; 32])
}

/// A deterministic runtime with `seed` (plus `CONSENSUS_SEED_OFFSET` from the environment,
/// to explore other schedules) and a virtual-time limit. Logs go to the test output when
/// `RUST_LOG` is set.
pub fn runner(seed: u64) -> deterministic::Runner {
    let seed = seed
        + std::env::var("CONSENSUS_SEED_OFFSET")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(600))),
    )
}
