//! The p2p channels consensus uses, and how to get them from a network.
//!
//! | channel | carries |
//! | --- | --- |
//! | [`CHANNEL_VOTES`] | simplex votes |
//! | [`CHANNEL_CERTIFICATES`] | simplex certificates |
//! | [`CHANNEL_RESOLVER`] | simplex certificate fetches |
//! | [`CHANNEL_BLOCKS`] | proposed blocks (buffered broadcast) |
//! | [`CHANNEL_BACKFILL`] | marshal's block and finalization fetches |
//! | [`CHANNEL_TXS`] | gossiped transactions |

use std::{net::SocketAddr, num::NonZeroU32, num::NonZeroUsize, time::Duration};

use commonware_consensus::marshal::{self, standard::Standard};
use commonware_cryptography::ChaCha20Poly1305;
use commonware_p2p::{
    authenticated::lookup, simulated, Address, AddressableManager, Channel, Receiver, Sender,
};
use commonware_runtime::{
    Clock, Handle, Metrics, Network as RuntimeNetwork, Quota, Resolver, Spawner, Storage,
};
use commonware_stream::{cups, sake};
use commonware_utils::ordered::Map;
use rand_core::CryptoRng;

use super::{Block, Config, Digest, Engine, EngineError, PublicKey, Scheme, Submitter};
use crate::{SharedChain, SharedMempool};

/// Simplex votes.
pub const CHANNEL_VOTES: Channel = 0;
/// Simplex certificates.
pub const CHANNEL_CERTIFICATES: Channel = 1;
/// Simplex certificate fetches.
pub const CHANNEL_RESOLVER: Channel = 2;
/// Proposed blocks.
pub const CHANNEL_BLOCKS: Channel = 3;
/// Marshal backfill.
pub const CHANNEL_BACKFILL: Channel = 4;
/// Gossiped transactions.
pub const CHANNEL_TXS: Channel = 5;

/// One `(sender, receiver)` pair per channel.
pub struct Channels<S, R> {
    /// [`CHANNEL_VOTES`].
    pub votes: (S, R),
    /// [`CHANNEL_CERTIFICATES`].
    pub certificates: (S, R),
    /// [`CHANNEL_RESOLVER`].
    pub resolver: (S, R),
    /// [`CHANNEL_BLOCKS`].
    pub blocks: (S, R),
    /// [`CHANNEL_BACKFILL`].
    pub backfill: (S, R),
    /// [`CHANNEL_TXS`].
    pub txs: (S, R),
}

/// Why the network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The simulated network refused a registration.
    #[error("simulated network: {0}")]
    Simulated(#[from] simulated::Error),
    /// Two peers with the same key.
    #[error("duplicate peer")]
    DuplicatePeer,
    /// The consensus engine could not be built.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The validator's task ended before its engine was built.
    #[error("the validator task ended")]
    Ended,
}

/// Another validator: its identity and where to dial it.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Its ed25519 public key (must be one of [`Config::participants`]).
    pub public_key: PublicKey,
    /// Its p2p address.
    pub address: SocketAddr,
}

/// How a production validator's p2p network is set up.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Every validator's address, this one's included.
    pub peers: Vec<Peer>,
    /// Loopback/private addresses allowed and fast redials (devnets on one machine).
    pub local: bool,
}

/// The largest message any consensus channel carries for `participants` validators.
pub fn max_message_size(config: &Config) -> u32 {
    let n = config.participants.len() as u32;
    let marshal = marshal::max_payload_size::<Standard<Block>, Scheme>(n, &config.block_limits);
    let simplex = commonware_consensus::simplex::max_payload_size::<Scheme, Digest>(n);
    let largest = marshal.max(simplex).max(config.max_tx_bytes) + 1024;
    u32::try_from(largest).unwrap_or(u32::MAX)
}

/// Builds the authenticated p2p network (commonware `lookup`: peers are known by key and
/// address), registers the consensus channels, and starts the network and the engine. This is
/// what `agentic node run` calls under the tokio runtime. Returns a handle that resolves when
/// the network or the engine stops, and the submit handle for the API.
pub async fn start_authenticated<E>(
    context: E,
    config: Config,
    network: NetworkConfig,
    chain: SharedChain,
    mempool: SharedMempool,
) -> Result<(Handle<()>, Submitter), NetworkError>
where
    E: Spawner + Clock + CryptoRng + RuntimeNetwork + Resolver + Metrics + Storage,
{
    let handshake = cups::Cups::<_, ChaCha20Poly1305>::new(
        sake::Sake {
            signer: config.signer.clone(),
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let max_peers = NonZeroUsize::new(network.peers.len().max(1)).unwrap_or(NonZeroUsize::MIN);
    let mailbox = NonZeroUsize::new(config.mailbox_size.max(1)).unwrap_or(NonZeroUsize::MIN);
    let max_size = max_message_size(&config);
    let p2p_config = if network.local {
        lookup::Config::local(
            handshake,
            &config.namespace,
            network.listen,
            max_peers,
            max_size,
            mailbox,
        )
    } else {
        lookup::Config::recommended(
            handshake,
            &config.namespace,
            network.listen,
            max_peers,
            max_size,
            mailbox,
        )
    };
    let (mut p2p, mut oracle) = lookup::Network::new(context.child("p2p"), p2p_config);
    let peers: Map<PublicKey, Address> = Map::try_from(
        network
            .peers
            .iter()
            .map(|p| (p.public_key.clone(), Address::Symmetric(p.address)))
            .collect::<Vec<_>>(),
    )
    .map_err(|_| NetworkError::DuplicatePeer)?;
    let _ = oracle.track(0, peers);

    let quota = Quota::per_second(
        NonZeroU32::new(config.rate_per_second.max(1)).unwrap_or(NonZeroU32::MIN),
    );
    let channels = Channels {
        votes: p2p.register(CHANNEL_VOTES, quota),
        certificates: p2p.register(CHANNEL_CERTIFICATES, quota),
        resolver: p2p.register(CHANNEL_RESOLVER, quota),
        blocks: p2p.register(CHANNEL_BLOCKS, quota),
        backfill: p2p.register(CHANNEL_BACKFILL, quota),
        txs: p2p.register(CHANNEL_TXS, quota),
    };
    let network_handle = p2p.start();

    let (engine, submitter) = Engine::new(
        context.child("engine"),
        config,
        oracle.clone(),
        oracle,
        chain,
        mempool,
    )
    .await?;
    let engine_handle = engine.start(channels);
    // One handle for both: it resolves when either the network or the engine stops.
    let handle = context.child("validator").spawn(move |_| async move {
        futures::future::select(network_handle, engine_handle).await;
    });
    Ok((handle, submitter))
}

/// Starts one validator on a simulated network (the node's tests and `agentic-sim`):
/// registers its channels for `config.signer` at `quota` messages per second per
/// channel, builds its engine in a task of its own — aborting the returned handle
/// aborts every actor it started — and returns that handle with the engine's submitter.
pub async fn start_simulated(
    context: &commonware_runtime::deterministic::Context,
    oracle: &simulated::Oracle<PublicKey, commonware_runtime::deterministic::Context>,
    config: Config,
    chain: SharedChain,
    mempool: SharedMempool,
    quota: Quota,
) -> Result<(Handle<()>, Submitter), NetworkError> {
    use commonware_cryptography::Signer as _;
    use commonware_runtime::Supervisor as _;
    let control = oracle.control(config.signer.public_key());
    let channels = register_simulated(&control, quota).await?;
    let manager = oracle.manager();
    let index = config
        .participants
        .iter()
        .position(|p| *p == config.signer.public_key());
    let (ready, submitter) = futures::channel::oneshot::channel();
    let handle = context
        .child("validator")
        .with_attribute("index", index.unwrap_or(usize::MAX))
        .spawn(move |context| async move {
            match Engine::new(
                context.child("engine"),
                config,
                control,
                manager,
                chain,
                mempool,
            )
            .await
            {
                Ok((engine, submitter)) => {
                    let _ = ready.send(Ok(submitter));
                    let _ = engine.start(channels).await;
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        });
    let submitter = submitter.await.map_err(|_| NetworkError::Ended)??;
    Ok((handle, submitter))
}

/// Registers every consensus channel for one peer of a simulated network (tests).
pub async fn register_simulated<E: Clock>(
    control: &simulated::Control<PublicKey, E>,
    quota: Quota,
) -> Result<Channels<simulated::Sender<PublicKey, E>, simulated::Receiver<PublicKey>>, NetworkError>
where
    simulated::Sender<PublicKey, E>: Sender<PublicKey = PublicKey>,
    simulated::Receiver<PublicKey>: Receiver<PublicKey = PublicKey>,
{
    Ok(Channels {
        votes: control.register(CHANNEL_VOTES, quota).await?,
        certificates: control.register(CHANNEL_CERTIFICATES, quota).await?,
        resolver: control.register(CHANNEL_RESOLVER, quota).await?,
        blocks: control.register(CHANNEL_BLOCKS, quota).await?,
        backfill: control.register(CHANNEL_BACKFILL, quota).await?,
        txs: control.register(CHANNEL_TXS, quota).await?,
    })
}
