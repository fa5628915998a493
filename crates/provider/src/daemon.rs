//! The provider daemon: one loop that turns assignments on the chain into work.
//!
//! ```text
//!  start: open store + journal ─▶ serve data plane ─▶ measure speed ─▶ Vivaldi probes
//!         ─▶ bond up to the configured stake ─▶ register (or update) the offer
//!
//!  every poll:  GET /v1/providers/{me}/work  (jobs where I hold an open slot or audit)
//!    for each stage I hold, by phase:
//!      Running, not committed ─▶ input known? ─▶ compute (fetch model + input, run layers)
//!                               ─▶ input == previous stage's revealed output? ─▶ journal ─▶ CommitResult
//!                               (output pushed to the next stage's providers as soon as computed)
//!                               model or job input not fetchable, retries spent ─▶ ClaimUnavailable (once)
//!      Running, reveal open   ─▶ publish the output on the node's blob store, then
//!                               RevealResult (result from the journal, salt from the key)
//!      finalized              ─▶ record the payment
//!    for each stage I was drawn to audit (when its last replica committed):
//!      stage.audit = me, not committed ─▶ recompute from the agreed input ─▶ journal
//!                                         (result + trace leaves) ─▶ AuditCommit (salted)
//!      Auditing { auditor: me }        ─▶ AuditReport (result from the journal + the salt)
//!    for each open dispute I am a party to (the work's `disputes`):
//!      Bisecting, not moved this round ─▶ Bisect { my leaf at the midpoint, its Merkle proof }
//!      AwaitingReferee (or lo = 0)     ─▶ replay up to the agreed leaf, check its hash,
//!                                        store it (data plane) and upload it to the node
//!    training disputes, once the step-level game found the step (`dispute.step`):
//!      replay the stage to the state before that step and run the step unit by unit
//!      StepRoots, not moved            ─▶ StepRoot { Merkle root of the unit leaves,
//!                                        proofs of leaf 0 and leaf U }
//!      Bisecting, not moved            ─▶ Bisect over the unit leaves
//!      AwaitingReferee                 ─▶ the carry entering unit lo, checked, uploaded
//! ```
//!
//! The input of stage `s > 0` is the output of stage `s − 1`. It normally arrives
//! pushed by the previous provider before the chain knows its hash; the daemon
//! computes on it at once (pipelining compute with the previous stage's reveal) but
//! commits only after checking its hash against the previous stage's result revealed
//! on chain — on a mismatch it fetches the right input by hash and recomputes. A
//! provider therefore never commits to work on an input the chain did not agree on.
//!
//! Restarts: the chain holds the assignments, the journal holds the committed results
//! with their trace leaves, the blob store holds the outputs, partial downloads resume.
//! A restarted daemon re-reads its work, reveals what it committed, recomputes what it
//! had not, and plays its open disputes from the journal's leaves.
//!
//! Disputes: the referee re-executes the one layer the parties disagree on, from the
//! activation both agree on (`dispute.agreed`, the input of layer `first_layer + lo`).
//! Validators fetch it from their own blob store, else from the parties' data planes;
//! if neither party makes it available within `dispute_timeout` blocks, the defendant
//! loses. So each party replays its own computation up to leaf `lo`, checks the hash,
//! keeps the bytes in its data-plane store and uploads them to its node.
//!
//! Audits are commit-reveal: the ledger draws the auditor in the block where a stage's
//! last replica commits, and no replica may reveal before the auditor committed to its
//! own result, so an auditor can never copy what it checks. The auditor's salt is
//! derived like a replica's ([`salt_for`]); a provider never holds both roles in a job.
//!
//! Data availability: a provider that cannot fetch a job's model or input (after
//! [`CLAIM_AFTER_FAILURES`] tries over [`CLAIM_PATIENCE`]) claims it unavailable with
//! `ClaimUnavailable` instead of missing its deadline; the validators check by fetching
//! both blobs themselves. (The "once per job" is kept in memory: a restarted daemon may
//! claim a job again.)
//!
//! Misbehaviour ([`Config::misbehave`], [`crate::misbehave`]): a daemon can be told to
//! cheat on the stages it holds, for the tests and the demo; in every other role it
//! stays honest.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentic_compute::activation::DecodeLimits;
use agentic_compute::bundle::{Bundle, BundleLimits};
use agentic_compute::registry::LoadedModel;
use agentic_compute::train::task::{TaskLimits, TrainState, TrainTask};
use agentic_compute::Activation;
use agentic_node::blobs::{BlobStore, DEFAULT_MAX_BLOB};
use agentic_node::client::{Client, ClientError};
use agentic_protocol::coord::{Coord, VivaldiNode};
use agentic_protocol::state::{Dispute, DisputePhase, Job, JobStatus, StagePhase};
use agentic_protocol::tx::{Offer, StageResult};
use agentic_protocol::types::{Capabilities, Endpoint, Region};
use agentic_protocol::{Address, Amount, DisputeId, Hash, JobId, Leaves, TxBody};
use commonware_codec::Encode as _;
use commonware_cryptography::ed25519::PrivateKey;
use commonware_cryptography::Signer as _;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::dataplane::{self, FetchError, Fetcher, Inbox, PlaneState};
use crate::journal::{Journal, JournalError, Role, StageRecord};
use crate::measure;
use crate::misbehave::{self, copy_replica, Misbehaviour};

/// Failed fetches in a row of a job's model or input before the daemon claims the data
/// unavailable (each turn of the loop retries).
pub const CLAIM_AFTER_FAILURES: u32 = 5;
/// Least time between the first failed fetch and the claim (the requester may still be
/// uploading).
pub const CLAIM_PATIENCE: Duration = Duration::from_secs(2);

/// How a provider is run.
#[derive(Clone)]
pub struct Config {
    /// The provider's key: its identity on the data plane and its ledger account.
    pub key: PrivateKey,
    /// The node API it talks to.
    pub node: String,
    /// Where the blob store, partial downloads and the journal live.
    pub data_dir: PathBuf,
    /// Data-plane listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// The endpoint published in the offer (default: the bound listen address).
    pub advertise: Option<String>,
    /// Price per mega-op.
    pub price: Amount,
    /// Stage assignments taken at once.
    pub capacity: u32,
    /// Region code published in the offer.
    pub region: Region,
    /// Capabilities published in the offer.
    pub capabilities: Capabilities,
    /// Bonded stake to hold (bonds the difference at start).
    pub stake: Amount,
    /// How often the chain is polled for work.
    pub poll: Duration,
    /// How long the speed measurement runs at start.
    pub speed_budget: Duration,
    /// Emulated slower hardware: execution takes `slowdown ×` its real time and the
    /// reported speed is divided by it (1: none). For demos and benches on one machine.
    pub slowdown: u32,
    /// Emulated access-link delay added to each round trip through this provider (zero:
    /// none). For demos and benches on one machine.
    pub extra_rtt: Duration,
    /// How long to wait for a transaction's receipt.
    pub tx_timeout: Duration,
    /// Vivaldi probe rounds at start (0: keep the origin).
    pub probe_rounds: usize,
    /// How often the peers are probed again to keep the published coordinate current
    /// (zero: never).
    pub refresh: Duration,
    /// How far (µs of predicted RTT) the coordinate must drift from the published one
    /// before the offer is updated (each update is a transaction and costs a fee).
    pub refresh_drift_us: u64,
    /// Cheat on the stages this provider holds, in the named way (`None`: honest). For
    /// tests and demos of the verification layer; see [`crate::misbehave`] for what
    /// each mode does and how the ledger catches it. Audits and disputes over others'
    /// results stay honest.
    pub misbehave: Option<Misbehaviour>,
}

impl Config {
    /// Defaults: any port on 127.0.0.1, price 10 per mega-op, capacity 4, stake 10,000.
    pub fn new(key: PrivateKey, node: impl Into<String>, data_dir: impl Into<PathBuf>) -> Config {
        Config {
            key,
            node: node.into(),
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            price: Amount(10),
            capacity: 4,
            region: Region(0),
            capabilities: Capabilities(1),
            stake: Amount(10_000),
            poll: Duration::from_millis(100),
            speed_budget: Duration::from_millis(300),
            slowdown: 1,
            extra_rtt: Duration::ZERO,
            tx_timeout: Duration::from_secs(60),
            probe_rounds: 3,
            refresh: Duration::from_secs(60),
            refresh_drift_us: 2_000,
            misbehave: None,
        }
    }
}

/// Why the daemon could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The node refused or could not be reached.
    #[error("node: {0}")]
    Node(#[from] ClientError),
    /// A blob could not be fetched.
    #[error("data plane: {0}")]
    Fetch(#[from] FetchError),
    /// The journal failed.
    #[error("{0}")]
    Journal(#[from] JournalError),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Store(#[from] agentic_node::blobs::BlobError),
    /// The model or input could not be run.
    #[error("compute: {0}")]
    Compute(#[from] agentic_compute::ComputeError),
    /// Local I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The node's answer did not have the documented shape.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// What the daemon reports about itself.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// The provider's address (hex).
    pub address: String,
    /// The published data-plane endpoint.
    pub endpoint: String,
    /// Measured speed (operations per second).
    pub speed: u64,
    /// Current Vivaldi coordinate.
    pub coord: Coord,
    /// Offer updates sent since start (the coordinate drifted).
    pub offer_updates: u64,
    /// Finalized height last seen.
    pub height: u64,
    /// Stages computed (including recomputations).
    pub stages_computed: u64,
    /// Stages committed.
    pub stages_committed: u64,
    /// Audit commitments sent (`AuditCommit`).
    pub audits_committed: u64,
    /// Audit reports sent (`AuditReport`, opening the commitment).
    pub audits_reported: u64,
    /// Jobs whose model or input this provider claimed unavailable (`ClaimUnavailable`).
    pub claims_sent: u64,
    /// Bisection moves sent (as defendant or challenger), inner rounds of training
    /// disputes included.
    pub bisect_moves: u64,
    /// Step roots posted (`StepRoot`: the unit leaves of a disputed training step).
    pub step_roots_posted: u64,
    /// Agreed activations (or, in training disputes, carries) made available for the
    /// referee (stored and uploaded).
    pub activations_provided: u64,
    /// The misbehaviour it runs with, if any.
    pub misbehaviour: Option<Misbehaviour>,
    /// Stages paid.
    pub stages_paid: u64,
    /// Total paid to this provider for stages.
    pub earned: Amount,
    /// Operations executed.
    pub ops: u64,
    /// The last error the loop hit, if any.
    pub last_error: Option<String>,
}

/// A running provider.
pub struct Provider {
    address: Address,
    endpoint: String,
    status: Arc<Mutex<Status>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Provider {
    /// Starts the daemon: data plane, measurements, bonding and registration, then the
    /// work loop in the background.
    ///
    /// A boxed future, built here: an `async fn` body is compiled again in every crate
    /// that awaits it, and this one reaches the whole daemon (each test binary paid
    /// for it). Behind a `dyn Future` it is compiled once, in this crate.
    pub fn start(
        config: Config,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Provider, ProviderError>> + Send>>
    {
        Box::pin(Provider::start_inner(config))
    }

    async fn start_inner(config: Config) -> Result<Provider, ProviderError> {
        let address = Address::from(&config.key.public_key());
        let client = Client::new(config.node.clone());
        std::fs::create_dir_all(&config.data_dir)?;
        let store = Arc::new(BlobStore::open(
            config.data_dir.join("blobs"),
            DEFAULT_MAX_BLOB,
        )?);
        let fetcher = Fetcher::new(store.clone(), config.data_dir.join("partial"), 4 << 20)?;
        let journal = Journal::open(config.data_dir.join("journal.json"))?;
        let inbox: Inbox = Arc::default();
        let vivaldi = Arc::new(Mutex::new(VivaldiNode::default()));

        // The data plane.
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let endpoint = match &config.advertise {
            Some(a) => a.clone(),
            None => listener.local_addr()?.to_string(),
        };
        let plane = dataplane::router(PlaneState {
            store: store.clone(),
            inbox: inbox.clone(),
            address,
            vivaldi: vivaldi.clone(),
            extra_rtt: config.extra_rtt,
        });
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, plane).await {
                tracing::error!(error = %e, "data plane stopped");
            }
        });

        // Measurements.
        let (budget, slowdown) = (config.speed_budget, config.slowdown);
        let speed = tokio::task::spawn_blocking(move || measure::measure_speed(budget, slowdown))
            .await
            .unwrap_or(0);
        let peers = peer_clients(&client, &address).await;
        measure::settle(&vivaldi, &peers, config.probe_rounds, config.extra_rtt).await;
        let coord = vivaldi.lock().unwrap_or_else(|e| e.into_inner()).coord;

        let status = Arc::new(Mutex::new(Status {
            address: address.to_hex(),
            endpoint: endpoint.clone(),
            speed,
            coord,
            misbehaviour: config.misbehave,
            ..Status::default()
        }));

        // Stake and offer.
        let offer = Offer {
            capabilities: config.capabilities,
            price: config.price,
            region: config.region,
            coord,
            capacity: config.capacity,
            endpoint: Endpoint(endpoint.clone()),
            speed,
        };
        if let Err(e) = register(&client, &config, &address, offer.clone()).await {
            server.abort();
            return Err(e);
        }
        tracing::info!(
            provider = %address.to_hex(),
            %endpoint,
            speed,
            "provider registered"
        );
        if let Some(m) = config.misbehave {
            tracing::warn!(misbehaviour = %m, "this provider cheats on the stages it holds");
        }

        let salt_secret = blake3::derive_key("agentic provider salt v1", &config.key.encode());
        let next_refresh = Instant::now() + config.refresh;
        let mut daemon = Daemon {
            config,
            me: address,
            client,
            fetcher,
            journal,
            inbox,
            models: Arc::default(),
            running: BTreeMap::new(),
            missing: BTreeMap::new(),
            claimed: BTreeSet::new(),
            computed: BTreeMap::new(),
            pushed: BTreeSet::new(),
            endpoints: BTreeMap::new(),
            provisions: BTreeMap::new(),
            step_plays: BTreeMap::new(),
            copy_attempted: BTreeSet::new(),
            status: status.clone(),
            salt_secret,
            next_refresh,
            offer,
            vivaldi,
        };
        let worker = tokio::spawn(async move { daemon.run().await });
        Ok(Provider {
            address,
            endpoint,
            status,
            tasks: vec![server, worker],
        })
    }

    /// The provider's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The published data-plane endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A snapshot of the daemon's status.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the daemon at once, as a crash would: no goodbye, nothing flushed beyond
    /// what the journal already holds.
    pub fn kill(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Clients for every other registered provider's data plane.
async fn peer_clients(client: &Client, me: &Address) -> Vec<Client> {
    let Ok(v) = client.get("/v1/offers").await else {
        return Vec::new();
    };
    let mine = me.to_hex();
    v["offers"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|o| o["provider"].as_str() != Some(mine.as_str()))
                .filter_map(|o| o["offer"]["endpoint"].as_str())
                .filter(|e| !e.is_empty())
                .map(Client::new)
                .collect()
        })
        .unwrap_or_default()
}

/// Bonds up to the configured stake and registers (or updates) the offer.
async fn register(
    client: &Client,
    config: &Config,
    me: &Address,
    offer: Offer,
) -> Result<(), ProviderError> {
    let acct = client.account(me).await?;
    let bonded = acct["bonded"]
        .as_str()
        .and_then(agentic_node::genesis::parse_amount)
        .unwrap_or(Amount::ZERO);
    let more = config.stake.saturating_sub(bonded);
    let existing = match client.get(&format!("/v1/providers/{}", me.to_hex())).await {
        Ok(v) => Some(v),
        Err(ClientError::Api { status: 404, .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let retired = existing
        .as_ref()
        .is_some_and(|v| v["retired"].as_bool() == Some(true));
    match existing {
        Some(v) if !retired => {
            if more.0 > 0 {
                send_tx(client, config, TxBody::Bond { amount: more }).await?;
            }
            let current: Option<Offer> = serde_json::from_value(v["offer"].clone()).ok();
            if current.as_ref() != Some(&offer) {
                send_tx(client, config, TxBody::UpdateProvider { offer }).await?;
            }
        }
        _ => {
            send_tx(
                client,
                config,
                TxBody::RegisterProvider { offer, stake: more },
            )
            .await?;
        }
    }
    Ok(())
}

/// Sends a transaction signed with the provider's key and waits for its receipt. A
/// transaction of ours still pending from before a restart holds the next nonce until
/// it lands: wait for it (up to `tx_timeout`) instead of failing.
async fn send_tx(
    client: &Client,
    config: &Config,
    body: TxBody,
) -> Result<serde_json::Value, ClientError> {
    let start = Instant::now();
    loop {
        match client
            .send(&config.key, body.clone(), config.tx_timeout)
            .await
        {
            Err(ClientError::Api { code, .. })
                if code == "nonce_taken" && start.elapsed() < config.tx_timeout =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r,
        }
    }
}

/// The salt of a stage's commitment: derived from the provider's key, secret until
/// revealed, the same after a restart.
pub fn salt_for(secret: &[u8; 32], job: JobId, stage: u32) -> Hash {
    let mut msg = [0u8; 12];
    msg[..8].copy_from_slice(&job.0.to_be_bytes());
    msg[8..].copy_from_slice(&stage.to_be_bytes());
    Hash(*blake3::keyed_hash(secret, &msg).as_bytes())
}

/// A stage computed (or audited) but not yet committed (or reported).
#[derive(Clone, Debug)]
struct Computed {
    result: StageResult,
    /// The trace leaves behind `result.trace_root` (activation hashes for inference,
    /// state hashes for training).
    leaves: Vec<Hash>,
    ops: u64,
    /// What goes to the next stage: `result.output`, except for a colluding upstream.
    pushed: Hash,
}

/// Where a background computation stands.
enum Poll {
    /// None was started.
    Idle,
    /// Still running.
    Running,
    /// Finished with this result.
    Done(Computed),
    /// Failed: no source had the model or the input (or none served its bytes).
    Unavailable {
        /// Which.
        what: Blob,
        /// What each source answered.
        detail: String,
    },
}

/// A blob a stage's computation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blob {
    /// The job's model (or training task).
    Model,
    /// The stage's input: the job's input for stage 0, else the previous stage's output.
    Input,
}

impl std::fmt::Display for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Blob::Model => "model",
            Blob::Input => "input",
        })
    }
}

/// Why a background computation failed.
#[derive(Debug)]
enum TaskError {
    /// No source had the blob, or every source that had it failed to serve bytes that
    /// hash to its name.
    Unavailable {
        /// Which blob.
        what: Blob,
        /// What each source answered.
        detail: String,
    },
    /// Anything else (a model that does not decode, a failed run, local storage).
    Failed(String),
}

impl TaskError {
    /// A failed fetch of `what`: unavailable when no source had it (or none served it
    /// intact); a local failure or an oversized blob is not the data's absence.
    fn fetch(what: Blob, e: FetchError) -> TaskError {
        match e {
            FetchError::NotFound(_) | FetchError::Failed { .. } => TaskError::Unavailable {
                what,
                detail: e.to_string(),
            },
            other => TaskError::Failed(format!("{what}: {other}")),
        }
    }
}

impl From<String> for TaskError {
    fn from(e: String) -> TaskError {
        TaskError::Failed(e)
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::Unavailable { what, detail } => write!(f, "{what}: {detail}"),
            TaskError::Failed(e) => f.write_str(e),
        }
    }
}

/// Making one agreed activation available for the referee.
enum Provision {
    /// Replaying the computation up to the agreed leaf.
    Replaying(JoinHandle<Result<Option<Hash>, String>>),
    /// Stored here and uploaded to the node.
    Done,
    /// This party has no activation behind that leaf (or the replay failed).
    Failed,
}

/// What a job's `model` blob holds, by its magic: a model bundle (`AGMODEL1`, the
/// stage runs layers on an activation) or a training task (`AGTRAIN1`, the stage runs
/// steps on a training state). See `crates/provider/README.md`, "Training jobs".
enum Workload {
    Inference(LoadedModel),
    Training(TrainTask),
}

type Models = Arc<Mutex<BTreeMap<Hash, Arc<Workload>>>>;

struct Daemon {
    config: Config,
    me: Address,
    client: Client,
    fetcher: Fetcher,
    journal: Journal,
    inbox: Inbox,
    models: Models,
    running: BTreeMap<(JobId, u32), JoinHandle<Result<Computed, TaskError>>>,
    /// Failed fetches of a job's data in a row, by stage held, and when the first failed.
    missing: BTreeMap<(JobId, u32), (u32, Instant)>,
    /// Jobs whose data this daemon claimed unavailable (at most once each).
    claimed: BTreeSet<JobId>,
    computed: BTreeMap<(JobId, u32), Computed>,
    pushed: BTreeSet<(JobId, u32, Address, Hash)>,
    endpoints: BTreeMap<Address, String>,
    /// Agreed activations being (or made) available, by dispute and hash.
    provisions: BTreeMap<(DisputeId, Hash), Provision>,
    /// Training disputes that reached one step: this party's replay of it.
    step_plays: BTreeMap<DisputeId, StepPlay>,
    /// Stages whose copied result a `copy-replica` daemon already tried to reveal.
    copy_attempted: BTreeSet<(JobId, u32)>,
    status: Arc<Mutex<Status>>,
    salt_secret: [u8; 32],
    /// When the coordinate is next re-measured.
    next_refresh: Instant,
    /// The offer as published.
    offer: Offer,
    vivaldi: Arc<Mutex<VivaldiNode>>,
}

impl Daemon {
    async fn run(&mut self) {
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "provider loop");
                self.status().last_error = Some(e.to_string());
            }
            if !self.config.refresh.is_zero() && Instant::now() >= self.next_refresh {
                self.next_refresh = Instant::now() + self.config.refresh;
                if let Err(e) = self.refresh_offer().await {
                    tracing::warn!(error = %e, "offer refresh");
                    self.status().last_error = Some(format!("offer refresh: {e}"));
                }
            }
            tokio::time::sleep(self.config.poll).await;
        }
    }

    /// Keeps the offer current: one more Vivaldi round against the providers now on
    /// the chain, and an `UpdateProvider` once the coordinate has drifted more than
    /// `refresh_drift_us` from the published one. Runs in the loop (not beside it)
    /// because the daemon's transactions share one nonce sequence.
    async fn refresh_offer(&mut self) -> Result<(), ProviderError> {
        let peers = peer_clients(&self.client, &self.me).await;
        if peers.is_empty() {
            return Ok(());
        }
        measure::settle(&self.vivaldi, &peers, 1, self.config.extra_rtt).await;
        let coord = self.vivaldi.lock().unwrap_or_else(|e| e.into_inner()).coord;
        self.status().coord = coord;
        let drift = coord
            .planar_us(&self.offer.coord)
            .saturating_add(coord.height.abs_diff(self.offer.coord.height).into());
        if drift < self.config.refresh_drift_us {
            return Ok(());
        }
        let offer = Offer {
            coord,
            ..self.offer.clone()
        };
        send_tx(
            &self.client,
            &self.config,
            TxBody::UpdateProvider {
                offer: offer.clone(),
            },
        )
        .await?;
        tracing::info!(
            drift_us = drift,
            ?coord,
            "offer updated: the coordinate moved"
        );
        self.offer = offer;
        self.status().offer_updates += 1;
        Ok(())
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn tick(&mut self) -> Result<(), ProviderError> {
        let work = self.client.provider_work(&self.me).await?;
        let height = work["height"].as_u64().unwrap_or(0);
        self.status().height = height;
        let list = work["jobs"]
            .as_array()
            .ok_or_else(|| ProviderError::Unexpected(format!("no jobs in {work}")))?;
        let mut jobs = Vec::with_capacity(list.len());
        for v in list {
            let id = JobId(v["id"].as_u64().unwrap_or(0));
            let job: Job = serde_json::from_value(v.clone())
                .map_err(|e| ProviderError::Unexpected(format!("job {}: {e}", id.0)))?;
            jobs.push((id, job));
        }
        // (A node from before disputes were listed answers without them.)
        let mut disputes = Vec::new();
        for v in work["disputes"].as_array().into_iter().flatten() {
            let id = DisputeId(v["id"].as_u64().unwrap_or(0));
            let d: Dispute = serde_json::from_value(v.clone())
                .map_err(|e| ProviderError::Unexpected(format!("dispute {}: {e}", id.0)))?;
            disputes.push((id, d));
        }
        for (id, job) in &jobs {
            for s in 0..job.stages.len() as u32 {
                if let Err(e) = self.step(*id, job, s, height).await {
                    tracing::warn!(job = id.0, stage = s, error = %e, "stage");
                    self.status().last_error = Some(format!("job {} stage {s}: {e}", id.0));
                }
                if let Err(e) = self.audit(*id, job, s, height).await {
                    tracing::warn!(job = id.0, stage = s, error = %e, "audit");
                    self.status().last_error =
                        Some(format!("audit of job {} stage {s}: {e}", id.0));
                }
            }
        }
        // A step replay is dropped once its dispute is no longer open.
        self.step_plays
            .retain(|id, _| disputes.iter().any(|(open, _)| open == id));
        for (id, d) in &disputes {
            if let Err(e) = self.play(*id, d, &jobs).await {
                tracing::warn!(dispute = id.0, error = %e, "dispute");
                self.status().last_error = Some(format!("dispute {}: {e}", id.0));
            }
        }
        self.collect_payments(&jobs).await?;
        Ok(())
    }

    /// Advances one stage of one job, if this provider holds it.
    async fn step(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        height: u64,
    ) -> Result<(), ProviderError> {
        let st = &job.stages[s as usize];
        let Some(a) = st
            .slots
            .iter()
            .filter_map(|x| x.assignment.as_ref())
            .find(|a| a.provider == self.me)
        else {
            return Ok(());
        };
        if self.config.misbehave.is_some_and(|m| !m.computes()) {
            return self.copy_replica(id, s, job, height).await;
        }
        let key = (id, s);
        if let StagePhase::Running { reveal_deadline } = st.phase {
            if a.commitment.is_none() {
                if height > a.deadline.0 {
                    return Ok(());
                }
                return self.work_on(id, job, s).await;
            }
            if reveal_deadline.is_some() && a.result.is_none() {
                let Some(rec) = self.journal.get(id, s).cloned() else {
                    return Err(ProviderError::Unexpected(format!(
                        "committed to job {} stage {s} but the journal has no result",
                        id.0
                    )));
                };
                // The data first: once the result is on chain, anyone may need the
                // output (the next stage, the requester, a referee).
                self.publish(&rec).await?;
                let salt = salt_for(&self.salt_secret, id, s);
                send_tx(
                    &self.client,
                    &self.config,
                    TxBody::RevealResult {
                        job: id,
                        stage: s,
                        result: rec.result,
                        salt,
                    },
                )
                .await?;
                // (The chain holds our commitment even if we died before noting it.)
                self.journal.update(id, s, |r| {
                    r.committed = true;
                    r.revealed = true;
                })?;
                tracing::info!(job = id.0, stage = s, "revealed");
            }
        }
        // Keep pushing the output to the next stage while it has not committed (a
        // re-routed replacement needs it too).
        if let Some(out) = self.output_of(key) {
            self.push_next(id, job, s, out).await;
        }
        Ok(())
    }

    /// The `copy-replica` cheat on a stage it holds (see [`copy_replica`]): commit a
    /// copy of another replica's commitment, then try to reveal that replica's result.
    async fn copy_replica(
        &mut self,
        id: JobId,
        s: u32,
        job: &Job,
        height: u64,
    ) -> Result<(), ProviderError> {
        let st = &job.stages[s as usize];
        let StagePhase::Running { reveal_deadline } = st.phase else {
            return Ok(());
        };
        let Some(a) = st
            .slots
            .iter()
            .filter_map(|x| x.assignment.as_ref())
            .find(|a| a.provider == self.me)
        else {
            return Ok(());
        };
        if a.commitment.is_none() {
            let Some(commitment) = copy_replica::commitment_to_copy(st, &self.me) else {
                return Ok(());
            };
            if height > a.deadline.0 {
                return Ok(());
            }
            send_tx(
                &self.client,
                &self.config,
                TxBody::CommitResult {
                    job: id,
                    stage: s,
                    commitment,
                },
            )
            .await?;
            self.status().stages_committed += 1;
            tracing::warn!(
                job = id.0,
                stage = s,
                "copy-replica: committed a copied commitment"
            );
            return Ok(());
        }
        if reveal_deadline.is_none() || a.result.is_some() || self.copy_attempted.contains(&(id, s))
        {
            return Ok(());
        }
        let Some(result) = copy_replica::result_to_copy(st, &self.me) else {
            return Ok(());
        };
        self.copy_attempted.insert((id, s));
        let salt = salt_for(&self.salt_secret, id, s);
        // The ledger refuses it (the commitment binds its author); the cheat then
        // sits out the reveal deadline.
        send_tx(
            &self.client,
            &self.config,
            TxBody::RevealResult {
                job: id,
                stage: s,
                result,
                salt,
            },
        )
        .await?;
        Ok(())
    }

    /// Uploads a stage's output activation to the node's blob store (once).
    async fn publish(&mut self, rec: &StageRecord) -> Result<(), ProviderError> {
        if rec.published {
            return Ok(());
        }
        let bytes = self
            .fetcher
            .store()
            .get(&rec.result.output)?
            .ok_or_else(|| ProviderError::Unexpected("output missing from the store".into()))?;
        self.client.put_blob(bytes).await?;
        self.journal
            .update(rec.job, rec.stage, |r| r.published = true)?;
        Ok(())
    }

    /// The activation stage `key` pushes to the next stage, once computed.
    fn output_of(&self, key: (JobId, u32)) -> Option<Hash> {
        self.journal
            .get(key.0, key.1)
            .filter(|r| r.role == Role::Stage)
            .map(StageRecord::pushed_output)
            .or_else(|| self.computed.get(&key).map(|c| c.pushed))
    }

    /// The input stage `s` must start from, once the chain knows it.
    fn expected_input(job: &Job, s: u32) -> Option<Hash> {
        if s == 0 {
            Some(job.spec.input)
        } else {
            job.stages[s as usize - 1].result.map(|r| r.output)
        }
    }

    /// Collects the background computation of `key`, if one was started.
    async fn poll_task(&mut self, key: (JobId, u32)) -> Result<Poll, ProviderError> {
        match self.running.get(&key) {
            None => return Ok(Poll::Idle),
            Some(h) if !h.is_finished() => return Ok(Poll::Running),
            Some(_) => {}
        }
        let Some(h) = self.running.remove(&key) else {
            return Ok(Poll::Idle);
        };
        match h.await {
            Ok(Ok(c)) => {
                self.missing.remove(&key);
                let mut st = self.status();
                st.stages_computed += 1;
                st.ops += c.ops;
                Ok(Poll::Done(c))
            }
            Ok(Err(TaskError::Unavailable { what, detail })) => {
                Ok(Poll::Unavailable { what, detail })
            }
            Ok(Err(TaskError::Failed(e))) => Err(ProviderError::Unexpected(e)),
            Err(e) => Err(ProviderError::Unexpected(format!("task: {e}"))),
        }
    }

    /// Starts computing stage `s` of `job` from `input` in the background.
    async fn start_compute(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        input: Hash,
        mode: Option<Misbehaviour>,
    ) {
        let spec = job.spec.stages[s as usize];
        let layers = spec.first_layer as usize..(spec.first_layer + spec.layers) as usize;
        let sources = self.sources(job, s).await;
        let task = ComputeTask {
            fetcher: self.fetcher.clone(),
            models: self.models.clone(),
            model: job.spec.model,
            layers,
            input,
            declared_ops: spec.ops,
            sources,
            slowdown: self.config.slowdown,
            mode,
            seed: seed_for(&self.salt_secret, id, s),
        };
        tracing::info!(job = id.0, stage = s, input = %input.to_hex(), "computing");
        self.running.insert((id, s), tokio::spawn(task.run()));
    }

    /// A stage assigned to us and not committed: compute, check, commit.
    async fn work_on(&mut self, id: JobId, job: &Job, s: u32) -> Result<(), ProviderError> {
        let key = (id, s);
        // Committed before a crash but the transaction never landed: commit again. (A
        // record of an audit of this stage that ended unreported is not a replica's
        // result: compute afresh, the new record replaces it.)
        if let Some(rec) = self.journal.get(id, s).cloned() {
            if rec.role == Role::Stage {
                return self.commit(id, s, rec).await;
            }
        }
        match self.poll_task(key).await? {
            Poll::Running => return Ok(()),
            Poll::Done(c) => {
                self.computed.insert(key, c);
            }
            Poll::Unavailable { what, detail } => {
                // Tried again next turn; claimed unavailable once retries run out.
                return self.data_missing(id, job, s, what, detail).await;
            }
            Poll::Idle => {}
        }
        let mode = self.config.misbehave;
        // A colluding downstream commits on the activation pushed to it, agreed or not
        // (as soon as the ledger takes a commitment: once the previous stage has an
        // agreed result).
        let collude = mode.is_some_and(Misbehaviour::commits_on_pushed_input);
        let expected = Daemon::expected_input(job, s);
        if let Some(c) = self.computed.get(&key).cloned() {
            self.push_next(id, job, s, c.pushed).await;
            if expected == Some(c.result.input) || (collude && expected.is_some()) {
                let mut rec = StageRecord::new(id, s, Role::Stage, c.result, c.leaves, c.ops);
                rec.misbehaviour = mode;
                rec.pushed = (c.pushed != c.result.output).then_some(c.pushed);
                self.journal.put(rec.clone())?;
                self.computed.remove(&key);
                return self.commit(id, s, rec).await;
            }
            let Some(h) = expected else {
                return Ok(()); // wait for the previous stage's reveal
            };
            tracing::warn!(
                job = id.0,
                stage = s,
                pushed = %c.result.input.to_hex(),
                agreed = %h.to_hex(),
                "pushed input differs from the chain's; recomputing"
            );
            self.computed.remove(&key);
            self.inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        // Start computing if the input is known.
        let pushed = self
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        let input = if collude {
            pushed.or(expected)
        } else {
            expected.or(pushed)
        };
        let Some(input) = input else {
            return Ok(());
        };
        self.start_compute(id, job, s, input, mode).await;
        Ok(())
    }

    /// A computation of a stage we hold could not fetch `what`. The job's own data — its
    /// model, or its input for stage 0 — may still be on its way, so the fetch is retried
    /// every turn; once it has failed [`CLAIM_AFTER_FAILURES`] times in a row over at
    /// least [`CLAIM_PATIENCE`], the daemon claims the data unavailable
    /// (`ClaimUnavailable`, once per job) instead of silently missing its deadline. The
    /// validators then try to fetch both blobs: if they can, the claim costs the miss
    /// penalty and the job goes on (the daemon keeps trying); if nobody can, the job is
    /// cancelled and the payer compensates every assigned provider. A later stage's
    /// input is the previous stage's output, not the job's data: it is never claimed.
    async fn data_missing(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        what: Blob,
        detail: String,
    ) -> Result<(), ProviderError> {
        let now = Instant::now();
        let (failures, since) = {
            let e = self.missing.entry((id, s)).or_insert((0, now));
            e.0 += 1;
            *e
        };
        let job_data = what == Blob::Model || s == 0;
        let due = failures >= CLAIM_AFTER_FAILURES && now.duration_since(since) >= CLAIM_PATIENCE;
        if !job_data || !due || job.claim.is_some() || self.claimed.contains(&id) {
            return Err(ProviderError::Unexpected(format!(
                "job {} stage {s}: cannot fetch the {what} ({failures} tries): {detail}",
                id.0
            )));
        }
        self.claimed.insert(id);
        send_tx(
            &self.client,
            &self.config,
            TxBody::ClaimUnavailable { job: id },
        )
        .await?;
        self.status().claims_sent += 1;
        tracing::warn!(
            job = id.0,
            stage = s,
            %what,
            failures,
            %detail,
            "the job's data cannot be fetched: claimed unavailable"
        );
        Ok(())
    }

    /// Audits stage `s` of `job` if this provider was drawn for it. The draw comes when
    /// the stage's last replica commits (`stage.audit`): recompute the stage from its
    /// agreed input (always honestly), journal the result with its trace leaves, and
    /// commit to it (`AuditCommit`, salted like a reveal) — the replicas cannot reveal
    /// before. Once they revealed and agree (`Auditing` with this provider as auditor),
    /// open the commitment (`AuditReport` with the journaled result and the salt).
    async fn audit(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        height: u64,
    ) -> Result<(), ProviderError> {
        let st = &job.stages[s as usize];
        if let (
            StagePhase::Running {
                reveal_deadline: None,
            },
            Some(slot),
        ) = (st.phase, &st.audit)
        {
            if slot.auditor != self.me || slot.commitment.is_some() || height > slot.deadline.0 {
                return Ok(());
            }
            return self.audit_commit(id, job, s, slot.price).await;
        }
        let StagePhase::Auditing {
            auditor, deadline, ..
        } = st.phase
        else {
            return Ok(());
        };
        if auditor != self.me || height > deadline.0 {
            return Ok(());
        }
        match self.journal.get(id, s).cloned() {
            Some(rec) if matches!(rec.role, Role::Audit { .. }) => {
                if rec.revealed {
                    return Ok(());
                }
                self.report(rec).await
            }
            _ => Err(ProviderError::Unexpected(format!(
                "auditing job {} stage {s} but the journal holds no committed audit result",
                id.0
            ))),
        }
    }

    /// The commit half of an audit: compute the stage from its agreed input (the job's
    /// input for stage 0, else the previous stage's agreed output — the ledger draws the
    /// auditor only once that is known), journal the result, send `AuditCommit`.
    async fn audit_commit(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        price: Amount,
    ) -> Result<(), ProviderError> {
        if let Some(rec) = self.journal.get(id, s).cloned() {
            if matches!(rec.role, Role::Audit { .. }) && !rec.committed {
                return self.send_audit_commit(rec).await;
            }
            // Committed (the chain will show it), or a record of another role.
            return Ok(());
        }
        let Some(input) = Daemon::expected_input(job, s) else {
            return Ok(());
        };
        match self.poll_task((id, s)).await? {
            Poll::Running => return Ok(()),
            Poll::Done(c) => {
                if c.result.input != input {
                    return Err(ProviderError::Unexpected(format!(
                        "audit of job {} stage {s} ran on {} instead of the agreed input {}",
                        id.0, c.result.input, input
                    )));
                }
                let rec = StageRecord::new(id, s, Role::Audit { price }, c.result, c.leaves, c.ops);
                self.journal.put(rec.clone())?;
                return self.send_audit_commit(rec).await;
            }
            Poll::Unavailable { what, detail } => {
                // Only an assigned replica may claim the data unavailable; an auditor
                // that cannot fetch it misses its commitment and is replaced.
                return Err(ProviderError::Unexpected(format!(
                    "audit of job {} stage {s}: cannot fetch the {what}: {detail}",
                    id.0
                )));
            }
            Poll::Idle => {}
        }
        self.start_compute(id, job, s, input, None).await;
        Ok(())
    }

    async fn send_audit_commit(&mut self, rec: StageRecord) -> Result<(), ProviderError> {
        let salt = salt_for(&self.salt_secret, rec.job, rec.stage);
        let commitment = rec.result.commitment(rec.job, rec.stage, &salt, &self.me);
        send_tx(
            &self.client,
            &self.config,
            TxBody::AuditCommit {
                job: rec.job,
                stage: rec.stage,
                commitment,
            },
        )
        .await?;
        self.journal
            .update(rec.job, rec.stage, |r| r.committed = true)?;
        self.status().audits_committed += 1;
        tracing::info!(
            job = rec.job.0,
            stage = rec.stage,
            output = %rec.result.output.to_hex(),
            "audit committed"
        );
        Ok(())
    }

    async fn report(&mut self, rec: StageRecord) -> Result<(), ProviderError> {
        let salt = salt_for(&self.salt_secret, rec.job, rec.stage);
        send_tx(
            &self.client,
            &self.config,
            TxBody::AuditReport {
                job: rec.job,
                stage: rec.stage,
                result: rec.result,
                salt,
            },
        )
        .await?;
        self.journal.update(rec.job, rec.stage, |r| {
            r.committed = true;
            r.revealed = true;
        })?;
        self.status().audits_reported += 1;
        tracing::info!(
            job = rec.job.0,
            stage = rec.stage,
            output = %rec.result.output.to_hex(),
            "audit reported"
        );
        Ok(())
    }

    /// One turn of a dispute this provider is a party to: make the agreed activation
    /// available when the referee may need it, and post this round's move.
    async fn play(
        &mut self,
        id: DisputeId,
        d: &Dispute,
        jobs: &[(JobId, Job)],
    ) -> Result<(), ProviderError> {
        let Some(rec) = self.journal.get(d.job, d.stage).cloned() else {
            return Err(ProviderError::Unexpected(format!(
                "no record of job {} stage {}: nothing to defend",
                d.job.0, d.stage
            )));
        };
        if d.step.is_some() {
            return self.play_step(id, d, &rec, jobs).await;
        }
        let on_chain = d.party(self.me).map(|p| p.root);
        if rec.leaves.is_empty() || on_chain != Some(rec.result.trace_root) {
            return Err(ProviderError::Unexpected(format!(
                "the journal holds no trace with root {on_chain:?} for job {} stage {}",
                d.job.0, d.stage
            )));
        }
        let leaves = Leaves::new(rec.leaves.clone());
        // (A training dispute's referee needs a carry inside the disputed step, not a
        // state: see `play_step`.)
        if d.step_units == 0 && (d.phase == DisputePhase::AwaitingReferee || d.game.lo() == 0) {
            self.provide(id, d, &rec, jobs).await?;
        }
        self.post_move(id, d, rec.role, &leaves, None).await
    }

    /// Posts this party's next move in dispute `id` over `leaves` (the stage's trace,
    /// or one step's unit leaves: [`Leaves::next_move`] decides which move), unless it
    /// is not our turn or this daemon is `silent` about its own results.
    async fn post_move(
        &mut self,
        id: DisputeId,
        d: &Dispute,
        role: Role,
        leaves: &Leaves,
        step: Option<u32>,
    ) -> Result<(), ProviderError> {
        // `silent` does not defend its own results.
        if role == Role::Stage && self.config.misbehave.is_some_and(|m| !m.answers_disputes()) {
            return Ok(());
        }
        let Some(tx) = leaves.next_move(id, d, self.me).map_err(|e| {
            ProviderError::Unexpected(format!("dispute {} step {step:?}: {e}", id.0))
        })?
        else {
            return Ok(());
        };
        let defendant = d.defendant == self.me;
        let root_posted = matches!(tx, TxBody::StepRoot { .. });
        let mid = d.game.midpoint();
        send_tx(&self.client, &self.config, tx).await?;
        if root_posted {
            self.status().step_roots_posted += 1;
            tracing::info!(dispute = id.0, ?step, defendant, "step root posted");
        } else {
            self.status().bisect_moves += 1;
            tracing::info!(
                dispute = id.0,
                ?step,
                ?mid,
                defendant,
                "bisection move posted"
            );
        }
        Ok(())
    }

    /// One turn of a training dispute that reached one step (`d.step`): replay this
    /// party's own computation to the state before that step and its unit leaves (in
    /// the background, once), then post the step root (`StepRoots`), this round's
    /// move over the units (`Bisecting`), or the agreed carry for the referee
    /// (`AwaitingReferee`).
    async fn play_step(
        &mut self,
        id: DisputeId,
        d: &Dispute,
        rec: &StageRecord,
        jobs: &[(JobId, Job)],
    ) -> Result<(), ProviderError> {
        let Some(step) = d.step else {
            return Ok(());
        };
        let work = match self.step_plays.remove(&id) {
            Some(StepPlay::Ready(w)) => w,
            Some(StepPlay::Failed) => {
                self.step_plays.insert(id, StepPlay::Failed);
                return Ok(());
            }
            Some(StepPlay::Replaying(h)) if !h.is_finished() => {
                self.step_plays.insert(id, StepPlay::Replaying(h));
                return Ok(());
            }
            Some(StepPlay::Replaying(h)) => {
                match h.await.map_err(|e| e.to_string()).and_then(|r| r) {
                    Ok(w) => Arc::new(w),
                    Err(e) => {
                        // Try again next turn (a fetch may have failed).
                        return Err(ProviderError::Unexpected(format!("step replay: {e}")));
                    }
                }
            }
            None => {
                let job = match jobs.iter().find(|(j, _)| *j == d.job) {
                    Some((_, j)) => j.clone(),
                    None => serde_json::from_value(self.client.job(d.job.0).await?)
                        .map_err(|e| ProviderError::Unexpected(format!("job {}: {e}", d.job.0)))?,
                };
                let spec = job.spec.stages[d.stage as usize];
                let first = u64::from(spec.first_layer);
                let task = StepReplay {
                    fetcher: self.fetcher.clone(),
                    models: self.models.clone(),
                    sources: self.sources(&job, d.stage).await,
                    model: job.spec.model,
                    steps: first..first + u64::from(spec.layers),
                    input: rec.result.input,
                    mode: rec.misbehaviour,
                    step: u64::from(step),
                };
                tracing::info!(dispute = id.0, step, "replaying to the disputed step");
                self.step_plays
                    .insert(id, StepPlay::Replaying(tokio::spawn(task.run())));
                return Ok(());
            }
        };
        self.step_plays.insert(id, StepPlay::Ready(work.clone()));
        if d.phase == DisputePhase::AwaitingReferee {
            return self.provide_carry(id, d, &work).await;
        }
        let leaves = Leaves::new(work.leaves.clone());
        self.post_move(id, d, rec.role, &leaves, Some(step)).await
    }

    /// Makes the carry the referee re-runs from — `d.agreed`, the input of unit `lo`
    /// of the disputed step — available on the node, once per dispute.
    async fn provide_carry(
        &mut self,
        id: DisputeId,
        d: &Dispute,
        work: &Arc<StepWork>,
    ) -> Result<(), ProviderError> {
        let key = (id, d.agreed);
        if self.provisions.contains_key(&key) {
            return Ok(());
        }
        let (w, k, mode) = (work.clone(), d.game.lo(), work.mode);
        let bytes = tokio::task::spawn_blocking(move || {
            let Workload::Training(t) = &*w.task else {
                return Err(TaskError::Failed("not a training task".into()));
            };
            misbehave::carry_bytes_at(mode, t, &w.steps, &w.state_before, k)
                .map_err(|e| TaskError::Failed(e.to_string()))
        })
        .await
        .map_err(|e| ProviderError::Unexpected(e.to_string()))?
        .map_err(|e| ProviderError::Unexpected(format!("carry {k}: {e}")))?;
        if Hash(*blake3::hash(&bytes).as_bytes()) != d.agreed {
            tracing::warn!(
                dispute = id.0,
                agreed = %d.agreed.to_hex(),
                "no carry of ours hashes to the agreed leaf"
            );
            self.provisions.insert(key, Provision::Failed);
            return Ok(());
        }
        self.fetcher.store().put(&d.agreed, &bytes)?;
        self.client.put_blob(bytes).await?;
        self.provisions.insert(key, Provision::Done);
        self.status().activations_provided += 1;
        tracing::info!(
            dispute = id.0,
            unit = k,
            agreed = %d.agreed.to_hex(),
            "agreed carry available for the referee"
        );
        Ok(())
    }

    /// Makes `d.agreed` — the activation entering the disputed stage's layer
    /// `first_layer + lo` — available to the referee: in this data plane's store and on
    /// the node. Replays this party's own computation up to leaf `lo` when the store
    /// lacks it, and checks the replay hashes to `agreed`.
    async fn provide(
        &mut self,
        id: DisputeId,
        d: &Dispute,
        rec: &StageRecord,
        jobs: &[(JobId, Job)],
    ) -> Result<(), ProviderError> {
        let key = (id, d.agreed);
        let store = self.fetcher.store().clone();
        match self.provisions.remove(&key) {
            Some(p @ (Provision::Done | Provision::Failed)) => {
                self.provisions.insert(key, p);
                return Ok(());
            }
            Some(Provision::Replaying(h)) if !h.is_finished() => {
                self.provisions.insert(key, Provision::Replaying(h));
                return Ok(());
            }
            Some(Provision::Replaying(h)) => {
                match h.await.map_err(|e| e.to_string()).and_then(|r| r) {
                    Ok(Some(got)) if got == d.agreed => {}
                    Ok(got) => {
                        // Not this party's activation: the other party must provide it.
                        tracing::warn!(
                            dispute = id.0,
                            agreed = %d.agreed.to_hex(),
                            replayed = ?got,
                            "no activation of ours hashes to the agreed leaf"
                        );
                        self.provisions.insert(key, Provision::Failed);
                        return Ok(());
                    }
                    // Try again next turn (a fetch may have failed).
                    Err(e) => return Err(ProviderError::Unexpected(format!("replay: {e}"))),
                }
            }
            None if store.size(&d.agreed)?.is_none() => {
                let job = match jobs.iter().find(|(j, _)| *j == d.job) {
                    Some((_, j)) => j.clone(),
                    None => serde_json::from_value(self.client.job(d.job.0).await?)
                        .map_err(|e| ProviderError::Unexpected(format!("job {}: {e}", d.job.0)))?,
                };
                let spec = job.spec.stages[d.stage as usize];
                let task = ReplayTask {
                    fetcher: self.fetcher.clone(),
                    models: self.models.clone(),
                    sources: self.sources(&job, d.stage).await,
                    model: job.spec.model,
                    layers: spec.first_layer as usize..(spec.first_layer + spec.layers) as usize,
                    input: rec.result.input,
                    mode: rec.misbehaviour,
                    leaf: d.game.lo() as usize,
                };
                tracing::info!(
                    dispute = id.0,
                    lo = d.game.lo(),
                    "replaying to the agreed leaf"
                );
                self.provisions
                    .insert(key, Provision::Replaying(tokio::spawn(task.run())));
                return Ok(());
            }
            None => {}
        }
        let bytes = store
            .get(&d.agreed)?
            .ok_or_else(|| ProviderError::Unexpected("agreed activation vanished".into()))?;
        self.client.put_blob(bytes).await?;
        self.provisions.insert(key, Provision::Done);
        self.status().activations_provided += 1;
        tracing::info!(
            dispute = id.0,
            agreed = %d.agreed.to_hex(),
            "agreed activation available for the referee"
        );
        Ok(())
    }

    async fn commit(&mut self, id: JobId, s: u32, rec: StageRecord) -> Result<(), ProviderError> {
        let salt = salt_for(&self.salt_secret, id, s);
        let commitment = rec.result.commitment(id, s, &salt, &self.me);
        send_tx(
            &self.client,
            &self.config,
            TxBody::CommitResult {
                job: id,
                stage: s,
                commitment,
            },
        )
        .await?;
        self.journal.update(id, s, |r| r.committed = true)?;
        self.status().stages_committed += 1;
        tracing::info!(job = id.0, stage = s, output = %rec.result.output.to_hex(), "committed");
        Ok(())
    }

    /// Where blobs for a job come from: the other providers of the job (peers first),
    /// then the node.
    async fn sources(&mut self, job: &Job, s: u32) -> Vec<Client> {
        let mut order: Vec<Address> = Vec::new();
        // The previous stage first (it holds our input), then the rest.
        let mut stages: Vec<usize> = (0..job.stages.len()).collect();
        if s > 0 {
            stages.sort_by_key(|&i| i != s as usize - 1);
        }
        for i in stages {
            for a in job.stages[i]
                .slots
                .iter()
                .filter_map(|x| x.assignment.as_ref())
            {
                if a.provider != self.me && !order.contains(&a.provider) {
                    order.push(a.provider);
                }
            }
        }
        let mut out = Vec::new();
        for a in order {
            if let Some(e) = self.endpoint(&a).await {
                out.push(Client::new(e));
            }
        }
        out.push(self.client.clone());
        out
    }

    async fn endpoint(&mut self, a: &Address) -> Option<String> {
        if let Some(e) = self.endpoints.get(a) {
            return Some(e.clone());
        }
        let v = self
            .client
            .get(&format!("/v1/providers/{}", a.to_hex()))
            .await
            .ok()?;
        let e = v["offer"]["endpoint"]
            .as_str()
            .filter(|e| !e.is_empty())?
            .to_string();
        self.endpoints.insert(*a, e.clone());
        Some(e)
    }

    /// Pushes our output of stage `s` to every provider of stage `s + 1` that has not
    /// committed yet (once per provider and output).
    async fn push_next(&mut self, id: JobId, job: &Job, s: u32, output: Hash) {
        let Some(next) = job.stages.get(s as usize + 1) else {
            return;
        };
        if !matches!(next.phase, StagePhase::Running { .. }) {
            return;
        }
        let targets: Vec<Address> = next
            .slots
            .iter()
            .filter_map(|x| x.assignment.as_ref())
            .filter(|a| a.commitment.is_none() && a.provider != self.me)
            .map(|a| a.provider)
            .filter(|p| !self.pushed.contains(&(id, s + 1, *p, output)))
            .collect();
        if targets.is_empty() {
            return;
        }
        let Ok(Some(bytes)) = self.fetcher.store().get(&output) else {
            return;
        };
        for p in targets {
            let Some(e) = self.endpoint(&p).await else {
                continue;
            };
            let path = format!("/v1/activations/{}/{}", id.0, s + 1);
            match Client::new(e).put_bytes(&path, bytes.clone()).await {
                Ok(_) => {
                    self.pushed.insert((id, s + 1, p, output));
                    tracing::debug!(job = id.0, stage = s + 1, "activation pushed");
                }
                Err(err) => tracing::debug!(error = %err, "activation push failed"),
            }
        }
    }

    /// Records the payment of every revealed stage whose challenge window closed.
    async fn collect_payments(&mut self, active: &[(JobId, Job)]) -> Result<(), ProviderError> {
        let unpaid: Vec<StageRecord> = self
            .journal
            .records()
            .filter(|r| r.paid.is_none())
            .cloned()
            .collect();
        for rec in unpaid {
            let job: Job = match active.iter().find(|(id, _)| *id == rec.job) {
                Some((_, j)) => j.clone(),
                None => {
                    let v = self.client.job(rec.job.0).await?;
                    serde_json::from_value(v)
                        .map_err(|e| ProviderError::Unexpected(format!("job {}: {e}", rec.job.0)))?
                }
            };
            let Some(st) = job.stages.get(rec.stage as usize) else {
                continue;
            };
            if let Role::Audit { price } = rec.role {
                self.settle_audit(&rec, &job, price)?;
                continue;
            }
            // Bring the journal up to date with the chain (we may have died between a
            // transaction landing and noting it).
            let mine = st
                .slots
                .iter()
                .filter_map(|x| x.assignment.as_ref())
                .find(|a| a.provider == self.me);
            let on_chain = (
                mine.is_some_and(|a| a.commitment.is_some()),
                mine.is_some_and(|a| a.result.is_some()),
            );
            if (on_chain.0 && !rec.committed) || (on_chain.1 && !rec.revealed) {
                self.journal.update(rec.job, rec.stage, |r| {
                    r.committed |= on_chain.0;
                    r.revealed |= on_chain.1;
                })?;
            }
            let finalized = st.phase == StagePhase::Finalized;
            let failed = matches!(job.status, JobStatus::Failed | JobStatus::Cancelled)
                && st.phase != StagePhase::Finalized;
            if !(finalized || failed) {
                continue;
            }
            let paid = if finalized {
                st.slots
                    .iter()
                    .filter_map(|x| x.assignment.as_ref())
                    .find(|a| a.provider == self.me)
                    .filter(|a| a.result.is_some_and(|r| Some(r) == st.result))
                    .and_then(|a| Amount::cost(job.spec.stages[rec.stage as usize].ops, a.price))
                    .unwrap_or(Amount::ZERO)
            } else {
                Amount::ZERO
            };
            self.journal
                .update(rec.job, rec.stage, |r| r.paid = Some(paid))?;
            let mut status = self.status();
            if paid.0 > 0 {
                status.stages_paid += 1;
                status.earned = Amount(status.earned.0.saturating_add(paid.0));
            }
            tracing::info!(job = rec.job.0, stage = rec.stage, %paid, "stage settled");
        }
        Ok(())
    }

    /// Records an audit's fee once the audit ended. While the stage's audit slot (or its
    /// `Auditing` phase) still names this provider, nothing is settled. A reported audit
    /// that agreed with the stage's result was paid its fee; a disputed one is settled by
    /// the dispute (see [`StageRecord::paid`]) and recorded once the stage is verified or
    /// the job ended. An audit that ended unreported was paid only if its commitment was
    /// on chain when the replicas disagreed (the replica dispute needs it no more);
    /// otherwise (missed, or the stage went back to matching) it earned nothing.
    fn settle_audit(
        &mut self,
        rec: &StageRecord,
        job: &Job,
        price: Amount,
    ) -> Result<(), ProviderError> {
        let st = &job.stages[rec.stage as usize];
        let holding = st.audit.as_ref().is_some_and(|a| a.auditor == self.me)
            || matches!(st.phase, StagePhase::Auditing { auditor, .. } if auditor == self.me);
        if holding && st.phase != StagePhase::Cancelled {
            return Ok(());
        }
        let verified = matches!(
            st.phase,
            StagePhase::Challengeable { .. } | StagePhase::Finalized
        );
        let fee = Amount::cost(job.spec.stages[rec.stage as usize].ops, price).unwrap_or_default();
        let paid = if rec.revealed {
            if !verified && job.status == JobStatus::Active && st.phase != StagePhase::Cancelled {
                return Ok(());
            }
            let agreed = verified && st.result.map(|r| r.output) == Some(rec.result.output);
            if agreed {
                fee
            } else {
                Amount::ZERO
            }
        } else {
            let outputs: BTreeSet<Hash> = st
                .slots
                .iter()
                .filter_map(|x| x.assignment.as_ref())
                .filter_map(|a| a.result.map(|r| r.output))
                .collect();
            if rec.committed && outputs.len() > 1 {
                fee
            } else {
                Amount::ZERO
            }
        };
        self.journal
            .update(rec.job, rec.stage, |r| r.paid = Some(paid))?;
        if paid.0 > 0 {
            let mut status = self.status();
            status.earned = Amount(status.earned.0.saturating_add(paid.0));
        }
        tracing::info!(job = rec.job.0, stage = rec.stage, %paid, reported = rec.revealed, "audit settled");
        Ok(())
    }
}

/// The secret seed of the made-up parts of a stage (the `random` cheat), derived like
/// the salt so that a restarted daemon claims the same.
fn seed_for(secret: &[u8; 32], job: JobId, stage: u32) -> [u8; 32] {
    Hash::digest(
        "agentic provider misbehaviour seed v1",
        &[secret, &job.0.to_be_bytes(), &stage.to_be_bytes()],
    )
    .0
}

/// The model (or training task) `model`, fetched from `sources` and decoded once per
/// daemon.
async fn load_workload(
    fetcher: &Fetcher,
    models: &Models,
    model: Hash,
    sources: &[Client],
) -> Result<Arc<Workload>, TaskError> {
    let quiet = |_: u64, _: u64| {};
    let cached = models
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&model)
        .cloned();
    if let Some(m) = cached {
        return Ok(m);
    }
    fetcher
        .fetch(&model, sources, &quiet)
        .await
        .map_err(|e| TaskError::fetch(Blob::Model, e))?;
    let store = fetcher.store().clone();
    let m = tokio::task::spawn_blocking(move || -> Result<Workload, String> {
        let bytes = store
            .get(&model)
            .map_err(|e| e.to_string())?
            .ok_or("model vanished from the store")?;
        if TrainTask::is_task(&bytes) {
            return TrainTask::decode(&bytes, TaskLimits::default())
                .map(Workload::Training)
                .map_err(|e| e.to_string());
        }
        let bundle = Bundle::decode(&bytes, BundleLimits::default()).map_err(|e| e.to_string())?;
        bundle
            .load()
            .map(Workload::Inference)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    let m = Arc::new(m);
    models
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(model, m.clone());
    Ok(m)
}

/// One stage's execution, off the loop.
struct ComputeTask {
    fetcher: Fetcher,
    models: Models,
    model: Hash,
    layers: Range<usize>,
    input: Hash,
    declared_ops: u64,
    sources: Vec<Client>,
    slowdown: u32,
    /// How to cheat (inference stages only; `None`: honestly).
    mode: Option<Misbehaviour>,
    /// Seed of what a cheat makes up.
    seed: [u8; 32],
}

impl ComputeTask {
    async fn run(self) -> Result<Computed, TaskError> {
        let quiet = |_: u64, _: u64| {};
        let model = load_workload(&self.fetcher, &self.models, self.model, &self.sources).await?;
        self.fetcher
            .fetch(&self.input, &self.sources, &quiet)
            .await
            .map_err(|e| TaskError::fetch(Blob::Input, e))?;
        let store = self.fetcher.store().clone();
        let (input, layers, declared) = (self.input, self.layers.clone(), self.declared_ops);
        let (mode, seed) = (self.mode, self.seed);
        let start = Instant::now();
        let computed = tokio::task::spawn_blocking(move || -> Result<Computed, String> {
            let bytes = store
                .get(&input)
                .map_err(|e| e.to_string())?
                .ok_or("input vanished from the store")?;
            let (computed, blobs) = match &*model {
                Workload::Inference(m) => run_layers(m, &bytes, layers, mode, &seed)?,
                Workload::Training(t) => run_steps(t, &bytes, layers, mode)?,
            };
            if computed.ops != declared && mode.is_none() {
                tracing::warn!(
                    metered = computed.ops,
                    declared,
                    "the job declared other ops than metered"
                );
            }
            for (hash, bytes) in blobs {
                store.put(&hash, &bytes).map_err(|e| e.to_string())?;
            }
            Ok(computed)
        })
        .await
        .map_err(|e| e.to_string())??;
        if self.slowdown > 1 {
            tokio::time::sleep(start.elapsed() * (self.slowdown - 1)).await;
        }
        Ok(computed)
    }
}

/// Replaying a stage's computation up to one trace leaf, for the referee.
struct ReplayTask {
    fetcher: Fetcher,
    models: Models,
    sources: Vec<Client>,
    model: Hash,
    layers: Range<usize>,
    /// The stage's input (leaf 0).
    input: Hash,
    /// The misbehaviour the disputed result was computed under.
    mode: Option<Misbehaviour>,
    /// The leaf whose activation is wanted.
    leaf: usize,
}

impl ReplayTask {
    /// Stores the activation this party claims at the leaf and returns its hash;
    /// `None` when it has none there.
    async fn run(self) -> Result<Option<Hash>, String> {
        let quiet = |_: u64, _: u64| {};
        let model = load_workload(&self.fetcher, &self.models, self.model, &self.sources)
            .await
            .map_err(|e| e.to_string())?;
        self.fetcher
            .fetch(&self.input, &self.sources, &quiet)
            .await
            .map_err(|e| format!("input: {e}"))?;
        let store = self.fetcher.store().clone();
        tokio::task::spawn_blocking(move || -> Result<Option<Hash>, String> {
            let Workload::Inference(m) = &*model else {
                return Err("a training dispute is refereed inside one step (StepPlay)".into());
            };
            let bytes = store
                .get(&self.input)
                .map_err(|e| e.to_string())?
                .ok_or("input vanished from the store")?;
            let act = Activation::from_canonical_bytes(&bytes, DecodeLimits::default())
                .map_err(|e| e.to_string())?;
            let Some(a) =
                misbehave::activation_at(self.mode, &m.model, self.layers, act, self.leaf)
                    .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let hash = misbehave::digest(&a);
            store
                .put(&hash, &a.canonical_bytes())
                .map_err(|e| e.to_string())?;
            Ok(Some(hash))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// A party's replay of a training dispute's step.
enum StepPlay {
    /// Replaying the stage to the disputed step.
    Replaying(JoinHandle<Result<StepWork, String>>),
    /// Replayed.
    Ready(Arc<StepWork>),
    /// Not playable (never set today: a failed replay is retried).
    #[allow(dead_code)]
    Failed,
}

/// The disputed step as this party computed it.
struct StepWork {
    /// The job's training task.
    task: Arc<Workload>,
    /// The stage's steps.
    steps: Range<u64>,
    /// The misbehaviour the disputed result was computed under.
    mode: Option<Misbehaviour>,
    /// The state before the step (carry 0).
    state_before: TrainState,
    /// The step's unit leaves (carries `0 ..= step_units`).
    leaves: Vec<Hash>,
}

/// Replaying a training stage up to one step and that step's units, for a dispute.
struct StepReplay {
    fetcher: Fetcher,
    models: Models,
    sources: Vec<Client>,
    model: Hash,
    /// The stage's steps.
    steps: Range<u64>,
    /// The stage's input state.
    input: Hash,
    /// The misbehaviour the disputed result was computed under.
    mode: Option<Misbehaviour>,
    /// The disputed step's position in the stage.
    step: u64,
}

impl StepReplay {
    async fn run(self) -> Result<StepWork, String> {
        let quiet = |_: u64, _: u64| {};
        let workload = load_workload(&self.fetcher, &self.models, self.model, &self.sources)
            .await
            .map_err(|e| e.to_string())?;
        if !matches!(&*workload, Workload::Training(_)) {
            return Err("not a training task: no step to replay".into());
        }
        self.fetcher
            .fetch(&self.input, &self.sources, &quiet)
            .await
            .map_err(|e| format!("input: {e}"))?;
        let store = self.fetcher.store().clone();
        tokio::task::spawn_blocking(move || -> Result<StepWork, String> {
            let Workload::Training(t) = &*workload else {
                return Err("not a training task".into());
            };
            let bytes = store
                .get(&self.input)
                .map_err(|e| e.to_string())?
                .ok_or("input vanished from the store")?;
            let input = TrainState::decode(&bytes, t).map_err(|e| e.to_string())?;
            let state_before =
                misbehave::state_at(self.mode, t, &input, self.steps.clone(), self.step)
                    .map_err(|e| e.to_string())?;
            let leaves = misbehave::step_leaves(self.mode, t, &self.steps, &state_before)
                .map_err(|e| e.to_string())?;
            Ok(StepWork {
                task: workload.clone(),
                steps: self.steps,
                mode: self.mode,
                state_before,
                leaves,
            })
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Blobs a computation leaves to store, each under its hash.
type Blobs = Vec<(Hash, Vec<u8>)>;

/// An inference stage: layers `layers` of `m` on the input activation's bytes, as
/// `mode` runs them; the result and the blobs to store (the claimed output, and the
/// pushed one when it differs).
fn run_layers(
    m: &LoadedModel,
    input: &[u8],
    layers: Range<usize>,
    mode: Option<Misbehaviour>,
    seed: &[u8; 32],
) -> Result<(Computed, Blobs), String> {
    let act = Activation::from_canonical_bytes(input, DecodeLimits::default())
        .map_err(|e| e.to_string())?;
    let e = misbehave::execute(mode, &m.model, layers, act, seed).map_err(|e| e.to_string())?;
    let mut blobs = vec![(e.result.output, e.output.canonical_bytes())];
    let pushed = match &e.pushed {
        Some(p) => {
            let h = misbehave::digest(p);
            blobs.push((h, p.canonical_bytes()));
            h
        }
        None => e.result.output,
    };
    let computed = Computed {
        result: e.result,
        leaves: e.leaves,
        ops: e.ops,
        pushed,
    };
    Ok((computed, blobs))
}

/// A training stage: the ledger's layer range is the step range; steps `steps` of
/// task `t` on the input state's bytes, as `mode` runs them; the result (its trace
/// leaves are the state hashes, [`misbehave::execute_steps`]) and the output state to
/// store.
fn run_steps(
    t: &TrainTask,
    input: &[u8],
    steps: Range<usize>,
    mode: Option<Misbehaviour>,
) -> Result<(Computed, Blobs), String> {
    let state = TrainState::decode(input, t).map_err(|e| e.to_string())?;
    let e = misbehave::execute_steps(mode, t, &state, steps.start as u64..steps.end as u64)
        .map_err(|e| e.to_string())?;
    let bytes = e.output.encode();
    let computed = Computed {
        result: e.result,
        leaves: e.leaves,
        ops: e.ops,
        pushed: e.result.output,
    };
    Ok((computed, vec![(e.result.output, bytes)]))
}
