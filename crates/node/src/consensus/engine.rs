//! The engine: builds every consensus actor from a [`Config`] and wires their mailboxes.
//! Nothing else happens here; start-up order reads top to bottom.

use std::{
    num::{NonZeroU16, NonZeroU64, NonZeroUsize},
    sync::Arc,
    time::Duration,
};

use commonware_broadcast::buffered;
use commonware_consensus::{
    marshal::{
        self,
        core::Actor as MarshalActor,
        resolver::p2p as marshal_resolver,
        standard::{Deferred, Standard},
    },
    simplex::{
        self,
        elector::{Random, RandomVersion},
        ForwardPolicy, SkipBudget, SkipPolicy,
    },
    types::{Epoch, FixedEpocher, Height, Round, View, ViewDelta},
    Reporters,
};
use commonware_cryptography::{certificate::ConstantProvider, Digested, Hasher, Sha256, Signer};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{
    buffer::paged::CacheRef, spawn_cell, Clock, ContextCell, Handle, Metrics, Spawner, Storage,
};
use commonware_storage::archive::immutable;
use commonware_utils::{channel::oneshot, ordered::Set, NonZeroDuration, TryCollect};
use futures::future::try_join_all;
use rand_core::CryptoRng;
use tracing::{error, info, warn};

use super::{
    application::Application,
    executor::{self, Executor},
    gossip::{Gossip, Submitter},
    network::Channels,
    seeds::Seeds,
    Block, Config, Context, Digest, Finalization, PublicKey, Scheme,
};
use crate::{SharedChain, SharedMempool};

/// Everything runs in one epoch (no reconfiguration yet).
const EPOCH: Epoch = Epoch::zero();
/// One epoch covers every height.
const EPOCH_LENGTH: NonZeroU64 = NonZeroU64::MAX;
const PAGE_SIZE: NonZeroU16 = match NonZeroU16::new(4096) {
    Some(n) => n,
    None => unreachable!(),
};
const PAGE_CACHE_PAGES: usize = 4096;
const ITEMS_PER_SECTION: u64 = 4096;
const BUFFER: usize = 1 << 20;
const FREEZER_TABLE_INITIAL_SIZE: u32 = 1 << 12;
const FREEZER_VALUE_TARGET_SIZE: u64 = 1 << 30;
const MAX_REPAIR: usize = 16;
const MAX_PENDING_ACKS: usize = 16;
/// Marshal keeps unfinalized data this many times longer than simplex, to help lagging peers.
const MARSHAL_RETENTION_MULTIPLIER: u64 = 10;
/// Blocks cached per peer by the broadcast buffer.
const DEQUE_SIZE: usize = 16;

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The participant list is empty or has duplicates.
    #[error("invalid participant set")]
    Participants,
    /// This validator's key is not among the participants.
    #[error("this validator is not a participant")]
    NotParticipant,
    /// The share does not match the public polynomial at this validator's index.
    #[error("the share does not belong to this validator under this polynomial")]
    ShareMismatch,
    /// The polynomial's size or threshold does not fit the participants.
    #[error("the polynomial is for {total} validators with threshold {required}, expected {n} and a 2f+1 quorum")]
    Polynomial {
        /// Validators in the polynomial.
        total: u32,
        /// Its threshold.
        required: u32,
        /// Participants configured.
        n: usize,
    },
    /// The block limits exceed what the ledger accepts.
    #[error("block limits exceed the ledger's")]
    Limits,
    /// The chain handed to the engine is not at genesis.
    #[error("the chain must start at genesis (height 0); the engine replays the rest")]
    NotAtGenesis,
    /// Storage could not be opened.
    #[error("storage: {0}")]
    Storage(#[from] commonware_storage::archive::Error),
}

type Marshaled<E> = Deferred<E, Scheme, Application, Block, FixedEpocher>;
type ConsensusReporter<E> = Reporters<Marshaled<E>, Seeds>;
type Consensus<E, B> = simplex::Engine<
    E,
    Scheme,
    Random,
    B,
    Digest,
    Marshaled<E>,
    Marshaled<E>,
    ConsensusReporter<E>,
    Sequential,
>;
type BlockArchive<E> = immutable::Archive<E, Digest, Arc<Block>>;
type FinalizationArchive<E> = immutable::Archive<E, Digest, Finalization>;
type Marshal<E> = MarshalActor<
    E,
    Standard<Block>,
    ConstantProvider<Scheme, Epoch>,
    FinalizationArchive<E>,
    BlockArchive<E>,
    FixedEpocher,
    Sequential,
>;

/// The configuration of one immutable archive (by height) under `prefix`.
fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: &CacheRef,
    codec_config: C,
) -> immutable::Config<C> {
    let buffer = NonZeroUsize::new(BUFFER).unwrap_or(NonZeroUsize::MIN);
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: FREEZER_TABLE_INITIAL_SIZE,
        freezer_table_resize_frequency: 4,
        freezer_table_resize_chunk_size: 1 << 16,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_key_write_buffer: buffer,
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_write_buffer: buffer,
        freezer_value_target_size: FREEZER_VALUE_TARGET_SIZE,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        ordinal_write_buffer: buffer,
        items_per_section: NonZeroU64::new(ITEMS_PER_SECTION).unwrap_or(NonZeroU64::MIN),
        codec_config,
        replay_buffer: buffer,
    }
}

/// A validator's consensus: simplex, marshal, the broadcast buffer, the executor and
/// transaction gossip.
pub struct Engine<E, B, P>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics,
    B: Blocker<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
{
    context: ContextCell<E>,
    me: PublicKey,
    blocker: B,
    provider: P,
    mailbox_size: NonZeroUsize,
    fetch_timeout: NonZeroDuration,

    buffer: buffered::Engine<E, PublicKey, Block, P, Sequential>,
    buffer_mailbox: buffered::Mailbox<PublicKey, Block>,
    marshal: Marshal<E>,
    marshal_mailbox: executor::Marshal,
    marshaled: Marshaled<E>,
    executor: Executor<E>,
    executor_mailbox: executor::Mailbox,
    gossip: Gossip<E>,
    consensus: Consensus<E, B>,
}

/// The block at height 0, identical on every validator of the chain: it commits to the
/// namespace (chain id) and the genesis state root, so validators with different genesis
/// files never agree on a block.
pub fn genesis_block(namespace: &[u8], genesis_root: &agentic_protocol::Hash) -> Block {
    let anchor = Sha256::hash(&[b"agentic genesis v1", namespace, &genesis_root.0]);
    let context = Context {
        round: Round::new(EPOCH, View::zero()),
        leader: commonware_cryptography::ed25519::PrivateKey::from_seed(0).public_key(),
        parent: (View::zero(), anchor),
    };
    Block::new(
        context,
        anchor,
        Height::zero(),
        0,
        None,
        Vec::new(),
        Vec::new(),
    )
}

impl<E, B, P> Engine<E, B, P>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics,
    B: Blocker<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
{
    /// Builds the engine (opens storage) and returns the handle the API submits through.
    /// `chain` must be at genesis: the executor replays stored finalized blocks on start.
    pub async fn new(
        context: E,
        cfg: Config,
        blocker: B,
        provider: P,
        chain: SharedChain,
        mempool: SharedMempool,
    ) -> Result<(Self, Submitter), EngineError> {
        // Keys.
        let me = cfg.signer.public_key();
        let participants: Set<PublicKey> = cfg
            .participants
            .iter()
            .cloned()
            .try_collect()
            .map_err(|_| EngineError::Participants)?;
        if participants.is_empty() {
            return Err(EngineError::Participants);
        }
        if participants.position(&me).is_none() {
            return Err(EngineError::NotParticipant);
        }
        let n = participants.len();
        if cfg.polynomial.total().get() as usize != n
            || cfg.polynomial.required()
                != commonware_utils::ordered::Quorum::quorum::<commonware_utils::N3f1>(
                    &participants,
                )
        {
            return Err(EngineError::Polynomial {
                total: cfg.polynomial.total().get(),
                required: cfg.polynomial.required(),
                n,
            });
        }
        if cfg.block_limits.max_txs > agentic_protocol::types::limits::MAX_BLOCK_TXS {
            return Err(EngineError::Limits);
        }
        let scheme = Scheme::signer(
            &cfg.namespace,
            participants.clone(),
            cfg.polynomial.clone(),
            cfg.share.clone(),
        )
        .ok_or(EngineError::ShareMismatch)?;
        let genesis_root = {
            let chain = chain.read().map_err(|_| EngineError::NotAtGenesis)?;
            if chain.height().0 != 0 {
                return Err(EngineError::NotAtGenesis);
            }
            chain.root()
        };
        let genesis = genesis_block(&cfg.namespace, &genesis_root);
        let genesis_digest = commonware_cryptography::Digestible::digest(&genesis);

        let mailbox_size = NonZeroUsize::new(cfg.mailbox_size.max(1)).unwrap_or(NonZeroUsize::MIN);
        let fetch_timeout = NonZeroDuration::new(cfg.fetch_timeout.max(Duration::from_millis(1)))
            .unwrap_or(NonZeroDuration::new(Duration::from_secs(1)).expect("non-zero"));
        let page_cache = CacheRef::new(
            PAGE_SIZE,
            NonZeroUsize::new(PAGE_CACHE_PAGES).unwrap_or(NonZeroUsize::MIN),
        );
        let prefix = cfg.partition_prefix.clone();
        let buffer = NonZeroUsize::new(BUFFER).unwrap_or(NonZeroUsize::MIN);
        let items_per_section = NonZeroU64::new(ITEMS_PER_SECTION).unwrap_or(NonZeroU64::MIN);

        // Broadcast buffer: disseminates proposed blocks.
        let (buffer_engine, buffer_mailbox) = buffered::Engine::new(
            context.child("buffer"),
            buffered::Config {
                public_key: me.clone(),
                mailbox_size,
                deque_size: DEQUE_SIZE,
                priority: false,
                codec_config: cfg.block_limits,
                peer_provider: provider.clone(),
                strategy: Sequential,
            },
        );

        // Archives of finalizations and finalized blocks, by height.
        // The certificate codec needs no configuration (fixed-size threshold signatures).
        let certificate_codec = ();
        let finalizations: FinalizationArchive<E> = immutable::Archive::init(
            context.child("finalizations_by_height"),
            archive_config(
                &prefix,
                "finalizations-by-height",
                &page_cache,
                certificate_codec,
            ),
        )
        .await?;
        let blocks: BlockArchive<E> = immutable::Archive::init(
            context.child("finalized_blocks"),
            archive_config(&prefix, "finalized-blocks", &page_cache, cfg.block_limits),
        )
        .await?;

        // Marshal: orders finalized blocks, stores them, backfills.
        let epocher = FixedEpocher::new(EPOCH_LENGTH);
        let (marshal, marshal_mailbox, floor) = MarshalActor::init(
            context.child("marshal"),
            finalizations,
            blocks,
            marshal::Config {
                provider: ConstantProvider::new(scheme.clone()),
                epocher: epocher.clone(),
                start: marshal::Start::Genesis(Digested::precomputed(genesis, genesis_digest)),
                partition_prefix: prefix.clone(),
                mailbox_size,
                view_retention: ViewDelta::new(
                    cfg.view_retention
                        .saturating_mul(MARSHAL_RETENTION_MULTIPLIER)
                        .max(1),
                ),
                prunable_items_per_section: items_per_section,
                page_cache: page_cache.clone(),
                replay_buffer: buffer,
                key_write_buffer: buffer,
                value_write_buffer: buffer,
                block_codec_config: cfg.block_limits,
                max_repair: NonZeroUsize::new(MAX_REPAIR).unwrap_or(NonZeroUsize::MIN),
                max_pending_acks: NonZeroUsize::new(MAX_PENDING_ACKS).unwrap_or(NonZeroUsize::MIN),
                strategy: Sequential,
            },
        )
        .await;
        if let Some(processed) = floor.processed() {
            info!(height = %processed.height(), "marshal restored");
        }

        // Application, wrapped by marshal's deferred-verification adapter.
        let seeds = Seeds::default();
        let application = Application::new(
            chain.clone(),
            mempool.clone(),
            seeds.clone(),
            scheme.clone(),
            cfg.block_limits,
            cfg.max_future_ms,
            cfg.block_interval,
            cfg.arbiter.clone(),
        );
        let marshaled = Deferred::new(
            context.child("application"),
            application,
            marshal_mailbox.clone(),
            epocher,
        );

        // Executor and gossip.
        let (executor, executor_mailbox) =
            Executor::new(context.child("executor"), chain.clone(), mempool.clone());
        let (gossip, submitter) =
            Gossip::new(context.child("gossip"), chain, mempool, cfg.max_tx_bytes);

        // Simplex.
        let reporter: ConsensusReporter<E> = (marshaled.clone(), seeds).into();
        let consensus = simplex::Engine::new(
            context.child("consensus"),
            simplex::Config {
                scheme,
                elector: Random::new(RandomVersion::V1),
                blocker: blocker.clone(),
                automaton: marshaled.clone(),
                relay: marshaled.clone(),
                reporter,
                strategy: Sequential,
                partition: format!("{prefix}-consensus"),
                mailbox_size,
                epoch: EPOCH,
                floor: simplex::Floor::Genesis(genesis_digest),
                replay_buffer: buffer,
                write_buffer: buffer,
                page_cache,
                leader_timeout: cfg.leader_timeout,
                certification_timeout: cfg.certification_timeout,
                timeout_retry: cfg.timeout_retry,
                view_retention: ViewDelta::new(cfg.view_retention.max(1)),
                skip: SkipPolicy::Enabled {
                    timeout: cfg.certification_timeout.max(cfg.timeout_retry) * 2,
                    budget: SkipBudget::Participants,
                },
                fetch_timeout,
                fetch_retry_delay: Duration::from_millis(100),
                forward: ForwardPolicy::SilentLeader,
                track_historical_votes: false,
            },
        );

        Ok((
            Engine {
                context: ContextCell::new(context),
                me,
                blocker,
                provider,
                mailbox_size,
                fetch_timeout,
                buffer: buffer_engine,
                buffer_mailbox,
                marshal,
                marshal_mailbox,
                marshaled,
                executor,
                executor_mailbox,
                gossip,
                consensus,
            },
            submitter,
        ))
    }

    /// Starts every actor on the given channels; the handle resolves when one of them stops.
    pub fn start<S, R>(mut self, channels: Channels<S, R>) -> Handle<()>
    where
        S: Sender<PublicKey = PublicKey>,
        R: Receiver<PublicKey = PublicKey>,
    {
        spawn_cell!(self.context, self.run(channels))
    }

    async fn run<S, R>(self, channels: Channels<S, R>)
    where
        S: Sender<PublicKey = PublicKey>,
        R: Receiver<PublicKey = PublicKey>,
    {
        let context = self.context.into_present();

        // Marshal's backfill resolver.
        let resolver = marshal_resolver::init(
            context.child("backfill"),
            marshal_resolver::Config {
                public_key: self.me,
                peer_provider: self.provider,
                blocker: self.blocker,
                mailbox_size: self.mailbox_size,
                fetch_timeout: self.fetch_timeout,
                fetch_retry_delay: Duration::from_millis(100),
                priority_requests: false,
                priority_responses: false,
            },
            channels.backfill,
        );

        // The buffer, then marshal, then the executor (it replays before consensus asks for
        // anything), then gossip, then consensus.
        let buffer = self.buffer.start(channels.blocks);
        let marshal = self
            .marshal
            .start(self.executor_mailbox, self.buffer_mailbox, resolver);
        let (replayed, replay_done) = oneshot::channel();
        let executor = self.executor.start(self.marshal_mailbox, replayed);
        let gossip = self.gossip.start(channels.txs);
        if replay_done.await.is_err() {
            error!("executor stopped before replay finished; consensus not started");
            return;
        }
        let consensus =
            self.consensus
                .start(channels.votes, channels.certificates, channels.resolver);
        drop(self.marshaled);

        if let Err(e) = try_join_all(vec![buffer, marshal, executor, gossip, consensus]).await {
            error!(?e, "consensus engine failed");
        } else {
            warn!("consensus engine stopped");
        }
    }
}
