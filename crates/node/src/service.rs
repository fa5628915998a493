//! A whole validator from its files: genesis + key file + data directory →
//! consensus over authenticated p2p, the chain, the mempool, the blob store and the
//! HTTP API. `agentic node run` starts one per process; `agentic devnet` starts
//! several in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use commonware_codec::DecodeExt;
use commonware_runtime::{
    Clock, Handle, Metrics, Network as RuntimeNetwork, Resolver, Spawner, Storage,
};
use rand_core::CryptoRng;

use crate::api::{self, ApiConfig, ApiState};
use crate::chain::{Chain, SharedChain};
use crate::consensus::{self, NetworkConfig, Peer, PublicKey};
use crate::genesis::{GenesisFile, GenesisFileError};
use crate::history::HistoryConfig;
use crate::mempool::{Mempool, MempoolLimits, SharedMempool};
use crate::metrics::{ApiMetrics, LedgerMetrics, MempoolMetrics};
use agentic_client::blobs::{BlobStore, DEFAULT_MAX_BLOB};
use agentic_client::keystore::KeyFile;

/// Why a validator could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The genesis file is invalid.
    #[error(transparent)]
    Genesis(#[from] GenesisFileError),
    /// The key is not one of the genesis validators.
    #[error("key {0} is not a validator in the genesis file")]
    NotValidator(String),
    /// The key file has no BLS share.
    #[error("key file has no bls_share: a validator needs its share of the threshold key (from `agentic node init`)")]
    NoShare,
    /// A threshold key does not decode.
    #[error("threshold key: {0}")]
    Threshold(#[from] consensus::KeyError),
    /// A validator public key does not decode.
    #[error("validator public key {0} is not an ed25519 key")]
    BadValidatorKey(String),
    /// The history (blocks and receipts on disk) could not open.
    #[error("history in {dir}: {source}")]
    History {
        /// Its directory.
        dir: PathBuf,
        /// Why.
        source: crate::ChainError,
    },
    /// The blob store could not open.
    #[error(transparent)]
    Blobs(#[from] agentic_client::blobs::BlobError),
    /// The network or engine could not start.
    #[error(transparent)]
    Network(#[from] consensus::NetworkError),
    /// The API listener could not bind.
    #[error("cannot listen for the API on {addr}: {source}")]
    Api {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// What one validator needs.
#[derive(Clone, Debug)]
pub struct ValidatorSetup {
    /// The network's genesis.
    pub genesis: GenesisFile,
    /// This validator's key file (ed25519 identity and BLS share).
    pub key: KeyFile,
    /// Where the blob store lives (consensus storage goes through the runtime's storage
    /// directory, under `partition_prefix`; the history, finalized blocks and receipts,
    /// next to the blobs: [`ValidatorSetup::history_dir`]).
    pub blob_dir: PathBuf,
    /// Prefix of this validator's storage partitions.
    pub partition_prefix: String,
    /// p2p listen address (default: the genesis entry's).
    pub p2p_listen: Option<SocketAddr>,
    /// API listen address (default: the genesis entry's).
    pub api_listen: Option<SocketAddr>,
    /// Allow loopback/private peers and fast redials (devnets).
    pub local: bool,
    /// Least time between blocks ([`consensus::Config::block_interval`]).
    pub block_interval: std::time::Duration,
}

impl ValidatorSetup {
    /// Where the node's history lives: `history` beside the blob store, with the blob
    /// directory's suffix (`data/blobs` → `data/history`, `net/blobs-2` →
    /// `net/history-2`; another name gets `-history` appended).
    pub fn history_dir(&self) -> PathBuf {
        let name = self
            .blob_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let history = match name.strip_prefix("blobs") {
            Some(suffix) => format!("history{suffix}"),
            None => format!("{name}-history"),
        };
        self.blob_dir.with_file_name(history)
    }
}

/// A started validator.
pub struct Running {
    /// Where the API listens.
    pub api: SocketAddr,
    /// Where p2p listens.
    pub p2p: SocketAddr,
    /// The chain (for in-process observers such as the devnet's status line).
    pub chain: SharedChain,
    /// The mempool.
    pub mempool: SharedMempool,
    /// Admission + gossip, what the API submits through (in-process clients may use it
    /// directly).
    pub submit: Arc<dyn crate::mempool::Submit>,
    /// Resolves when consensus stops.
    pub engine: Handle<()>,
}

/// Starts one validator: consensus (replaying its stored blocks first), p2p, the API.
pub async fn start_validator<E>(context: E, setup: ValidatorSetup) -> Result<Running, ServiceError>
where
    E: Spawner + Clock + CryptoRng + RuntimeNetwork + Resolver + Metrics + Storage,
{
    let genesis = setup.genesis.ledger()?;
    let keys = setup.genesis.validator_keys()?;
    let mut participants = Vec::with_capacity(keys.len());
    for (raw, entry) in keys.iter().zip(&setup.genesis.validators) {
        let pk = PublicKey::decode(raw.to_vec())
            .map_err(|_| ServiceError::BadValidatorKey(entry.public_key.clone()))?;
        participants.push(pk);
    }
    let me = setup.key.public_key();
    let my_entry = setup
        .genesis
        .validators
        .iter()
        .zip(&participants)
        .find(|(_, pk)| **pk == me)
        .map(|(e, _)| e.clone())
        .ok_or_else(|| ServiceError::NotValidator(agentic_protocol::hex::encode(me.as_ref())))?;
    let polynomial =
        consensus::polynomial_from_hex(&setup.genesis.threshold_public, participants.len() as u32)?;
    let share = consensus::share_from_hex(
        setup
            .key
            .bls_share
            .as_deref()
            .ok_or(ServiceError::NoShare)?,
    )?;
    let mut config = consensus::Config::new(
        setup.key.key.clone(),
        participants.clone(),
        polynomial,
        share,
        consensus::Config::namespace_for(genesis.chain_id),
        setup.partition_prefix.clone(),
    );
    config.block_interval = setup.block_interval;
    let p2p = setup.p2p_listen.unwrap_or(my_entry.p2p);
    let api_addr = setup.api_listen.unwrap_or(my_entry.api);
    let network = NetworkConfig {
        listen: p2p,
        peers: setup
            .genesis
            .validators
            .iter()
            .zip(&participants)
            .map(|(e, pk)| Peer {
                public_key: pk.clone(),
                address: if *pk == me { p2p } else { e.p2p },
            })
            .collect(),
        local: setup.local,
    };
    // Each actor's metrics in its own context (see `crate::metrics`); consensus, p2p and
    // storage register theirs under `engine` and `p2p`.
    let history_dir = setup.history_dir();
    let chain: SharedChain = Chain::open(&genesis, &HistoryConfig::on_disk(&history_dir))
        .map_err(|e| match e {
            crate::ChainError::Genesis(e) => ServiceError::Genesis(GenesisFileError::Ledger(e)),
            source => ServiceError::History {
                dir: history_dir.clone(),
                source,
            },
        })?
        .with_metrics(LedgerMetrics::register(&context.child("ledger")))
        .shared();
    let mempool: SharedMempool = Arc::new(Mutex::new(
        Mempool::new(MempoolLimits::default())
            .with_metrics(MempoolMetrics::register(&context.child("mempool"))),
    ));
    let api_metrics = ApiMetrics::register(context.child("api"));
    let blobs = Arc::new(BlobStore::open(&setup.blob_dir, DEFAULT_MAX_BLOB)?);
    config.arbiter = consensus::Arbiter::new(blobs.clone());
    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .map_err(|source| ServiceError::Api {
            addr: api_addr,
            source,
        })?;
    let api_bound = listener.local_addr().map_err(|source| ServiceError::Api {
        addr: api_addr,
        source,
    })?;
    let validators = config
        .participants
        .iter()
        .map(|k| agentic_protocol::hex::encode(k.as_ref()))
        .collect();
    let (engine, submitter) = consensus::network::start_authenticated(
        context,
        config,
        network,
        chain.clone(),
        mempool.clone(),
    )
    .await?;
    let submit: Arc<dyn crate::mempool::Submit> = Arc::new(submitter);
    let state = ApiState {
        chain: chain.clone(),
        mempool: mempool.clone(),
        submit: submit.clone(),
        blobs,
        config: ApiConfig {
            validators,
            ..ApiConfig::default()
        },
    };
    tokio::spawn(async move {
        if let Err(e) =
            api::serve_with_metrics(listener, state, api_metrics, std::future::pending()).await
        {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    tracing::info!(api = %api_bound, p2p = %p2p, "validator started");
    Ok(Running {
        api: api_bound,
        p2p,
        chain,
        mempool,
        submit,
        engine,
    })
}
