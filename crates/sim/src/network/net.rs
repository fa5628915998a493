//! The validators: real simplex consensus, marshal, storage and execution
//! ([`agentic_node::Engine`]) over commonware's simulated p2p network, every ordered
//! pair of validators linked with the one-way latency between their cities.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentic_node::consensus::{
    deal, start_simulated, Config as ConsensusConfig, PrivateKey, PublicKey, Sharing,
    DEFAULT_BLOCK_INTERVAL,
};
use agentic_node::{Chain, Mempool, MempoolLimits, SharedChain, Submitter};
use agentic_protocol::Genesis;
use commonware_cryptography::Signer;
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{deterministic, Quota, Supervisor};
use commonware_utils::{NZUsize, NZU32};

use crate::geo::{Cities, CityId};

/// Messages per second a validator may send a peer on one channel: the node's default
/// (`Config::rate_per_second`). The simulated network sizes every channel's inbound mailbox
/// for a burst from every peer (peers × quota slots, allocated whole up front), so this
/// quota, not traffic, sets most of a validator's memory: 100,000 per second cost ~24 MB per
/// validator per peer and kept 100 validators from fitting in 24 GiB.
const QUOTA: Quota = Quota::per_second(NZU32!(1_024));

/// Jitter of every link, as a fraction of its latency (per mille).
const JITTER_PER_MILLE: u32 = 50;

/// Capacity of every actor mailbox of a simulated validator (the node uses 1,024).
const MAILBOX: usize = 8;

/// A running validator.
pub struct Validator {
    /// Its view of the finalized chain.
    pub chain: SharedChain,
    /// Admits transactions into its mempool and gossips them.
    pub submitter: Submitter,
}

/// The validators' keys and where they are.
pub struct Validators {
    signers: Vec<PrivateKey>,
    participants: Vec<PublicKey>,
    polynomial: Sharing,
    shares: Vec<agentic_node::consensus::Share>,
    /// Each validator's city (`cities[i]` belongs to `signers[i]`).
    pub cities: Vec<CityId>,
}

/// Why the validator network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Dealing the threshold keys failed.
    #[error("dealing validator keys: {0}")]
    Keys(String),
    /// The p2p simulator refused a link or a channel.
    #[error("simulated network: {0}")]
    P2p(String),
    /// The genesis is invalid.
    #[error("genesis: {0}")]
    Genesis(String),
    /// An engine failed to start.
    #[error("engine: {0}")]
    Engine(String),
}

impl Validators {
    /// `cities.len()` validators with threshold keys dealt from `seed`.
    pub fn new(cities: Vec<CityId>, seed: u64) -> Result<Validators, NetError> {
        let n = cities.len();
        let mut signers: Vec<PrivateKey> = (0..n as u64)
            .map(|i| PrivateKey::from_seed(seed.wrapping_mul(1_000_003).wrapping_add(i)))
            .collect();
        signers.sort_by_key(|k| k.public_key());
        let participants = signers.iter().map(|k| k.public_key()).collect();
        let (polynomial, shares) =
            deal(n as u32, seed).map_err(|e| NetError::Keys(e.to_string()))?;
        Ok(Validators {
            signers,
            participants,
            polynomial,
            shares,
            cities,
        })
    }

    /// How many validators.
    pub fn len(&self) -> usize {
        self.signers.len()
    }

    /// Starts the simulated network, links every ordered pair at the latency between their
    /// cities, and starts every validator from a fresh chain at `genesis`.
    pub async fn start(
        &self,
        context: &deterministic::Context,
        cities: &Cities,
        genesis: &Genesis,
    ) -> Result<Vec<Validator>, NetError> {
        let n = self.len();
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: 8 << 20,
                max_peers_per_set: NZUsize!(n.max(1)),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            self.participants.clone(),
        )
        .await;
        network.start();
        self.link(&oracle, cities).await?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(self.start_one(context, &oracle, i, genesis).await?);
        }
        Ok(out)
    }

    async fn link(
        &self,
        oracle: &Oracle<PublicKey, deterministic::Context>,
        cities: &Cities,
    ) -> Result<(), NetError> {
        for (i, a) in self.participants.iter().enumerate() {
            for (j, b) in self.participants.iter().enumerate() {
                if i == j {
                    continue;
                }
                let latency = cities.one_way(self.cities[i], self.cities[j]);
                let link = Link {
                    latency,
                    jitter: latency * JITTER_PER_MILLE / 1_000,
                    success_rate: commonware_utils::probability!(1, 1),
                };
                oracle
                    .add_link(a.clone(), b.clone(), link)
                    .await
                    .map_err(|e| NetError::P2p(e.to_string()))?;
            }
        }
        Ok(())
    }

    async fn start_one(
        &self,
        context: &deterministic::Context,
        oracle: &Oracle<PublicKey, deterministic::Context>,
        i: usize,
        genesis: &Genesis,
    ) -> Result<Validator, NetError> {
        let chain = Chain::new(genesis)
            .map_err(|e| NetError::Genesis(e.to_string()))?
            .shared();
        let mempool = Arc::new(Mutex::new(Mempool::new(MempoolLimits::default())));
        let mut config = ConsensusConfig::new(
            self.signers[i].clone(),
            self.participants.clone(),
            self.polynomial.clone(),
            self.shares[i].clone(),
            ConsensusConfig::namespace_for(genesis.chain_id),
            format!("validator-{i}"),
        );
        config.block_interval = DEFAULT_BLOCK_INTERVAL;
        // Every actor mailbox is allocated whole up front: keep them small (this alone
        // does not make 100 validators fit in 24 GiB; see the crate README).
        config.mailbox_size = MAILBOX;
        // A proposal crosses the world once (≤ 175 ms one way in the measured table)
        // before a vote.
        config.leader_timeout = Duration::from_secs(2);
        config.certification_timeout = Duration::from_secs(3);
        let (_, submitter) =
            start_simulated(context, oracle, config, chain.clone(), mempool, QUOTA)
                .await
                .map_err(|e| NetError::Engine(e.to_string()))?;
        Ok(Validator { chain, submitter })
    }
}
