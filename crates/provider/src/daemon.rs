//! The provider daemon: one loop that turns assignments on the chain into work.
//!
//! ```text
//!  start: open store + journal ─▶ serve data plane ─▶ measure speed ─▶ Vivaldi probes
//!         ─▶ bond up to the configured stake ─▶ register (or update) the offer
//!
//!  every poll:  GET /v1/providers/{me}/work  (active jobs where I hold a slot)
//!    for each stage I hold, by phase:
//!      Running, not committed ─▶ input known? ─▶ compute (fetch model + input, run layers)
//!                               ─▶ input == previous stage's revealed output? ─▶ journal ─▶ CommitResult
//!                               (output pushed to the next stage's providers as soon as computed)
//!      Running, reveal open   ─▶ publish the output on the node's blob store, then
//!                               RevealResult (result from the journal, salt from the key)
//!      finalized              ─▶ record the payment
//! ```
//!
//! The input of stage `s > 0` is the output of stage `s − 1`. It normally arrives
//! pushed by the previous provider before the chain knows its hash; the daemon
//! computes on it at once (pipelining compute with the previous stage's reveal) but
//! commits only after checking its hash against the previous stage's result revealed
//! on chain — on a mismatch it fetches the right input by hash and recomputes. A
//! provider therefore never commits to work on an input the chain did not agree on.
//!
//! Restarts: the chain holds the assignments, the journal holds the committed results,
//! the blob store holds the outputs, partial downloads resume. A restarted daemon
//! re-reads its work, reveals what it committed, and recomputes what it had not.

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
use agentic_node::blobs::{hex32, BlobStore, DEFAULT_MAX_BLOB};
use agentic_node::client::{Client, ClientError};
use agentic_protocol::coord::{Coord, VivaldiNode};
use agentic_protocol::state::{Job, JobStatus, StagePhase};
use agentic_protocol::tx::{Offer, StageResult};
use agentic_protocol::types::{Capabilities, Endpoint, Region};
use agentic_protocol::{Address, Amount, Hash, JobId, TxBody};
use commonware_codec::Encode as _;
use commonware_cryptography::ed25519::PrivateKey;
use commonware_cryptography::Signer as _;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::dataplane::{self, FetchError, Fetcher, Inbox, PlaneState};
use crate::journal::{Journal, JournalError, StageRecord};
use crate::measure;

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
    pub async fn start(config: Config) -> Result<Provider, ProviderError> {
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
            address: hex32(&Hash(address.0)),
            endpoint: endpoint.clone(),
            speed,
            coord,
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
            provider = %hex32(&Hash(address.0)),
            %endpoint,
            speed,
            "provider registered"
        );

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
            computed: BTreeMap::new(),
            pushed: BTreeSet::new(),
            endpoints: BTreeMap::new(),
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
    let mine = hex32(&Hash(me.0));
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
    let existing = match client
        .get(&format!("/v1/providers/{}", hex32(&Hash(me.0))))
        .await
    {
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
                client
                    .send(
                        &config.key,
                        TxBody::Bond { amount: more },
                        config.tx_timeout,
                    )
                    .await?;
            }
            let current: Option<Offer> = serde_json::from_value(v["offer"].clone()).ok();
            if current.as_ref() != Some(&offer) {
                client
                    .send(
                        &config.key,
                        TxBody::UpdateProvider { offer },
                        config.tx_timeout,
                    )
                    .await?;
            }
        }
        _ => {
            client
                .send(
                    &config.key,
                    TxBody::RegisterProvider { offer, stake: more },
                    config.tx_timeout,
                )
                .await?;
        }
    }
    Ok(())
}

/// The salt of a stage's commitment: derived from the provider's key, secret until
/// revealed, the same after a restart.
pub fn salt_for(secret: &[u8; 32], job: JobId, stage: u32) -> Hash {
    let mut msg = [0u8; 12];
    msg[..8].copy_from_slice(&job.0.to_be_bytes());
    msg[8..].copy_from_slice(&stage.to_be_bytes());
    Hash(*blake3::keyed_hash(secret, &msg).as_bytes())
}

/// A stage computed but not yet committed.
#[derive(Clone, Copy, Debug)]
struct Computed {
    input: Hash,
    output: Hash,
    trace_root: Hash,
    ops: u64,
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
    running: BTreeMap<(JobId, u32), JoinHandle<Result<Computed, String>>>,
    computed: BTreeMap<(JobId, u32), Computed>,
    pushed: BTreeSet<(JobId, u32, Address, Hash)>,
    endpoints: BTreeMap<Address, String>,
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
        self.client
            .send(
                &self.config.key,
                TxBody::UpdateProvider {
                    offer: offer.clone(),
                },
                self.config.tx_timeout,
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
        for (id, job) in &jobs {
            for s in 0..job.stages.len() as u32 {
                if let Err(e) = self.step(*id, job, s, height).await {
                    tracing::warn!(job = id.0, stage = s, error = %e, "stage");
                    self.status().last_error = Some(format!("job {} stage {s}: {e}", id.0));
                }
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
                self.client
                    .send(
                        &self.config.key,
                        TxBody::RevealResult {
                            job: id,
                            stage: s,
                            result: rec.result,
                            salt,
                        },
                        self.config.tx_timeout,
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

    fn output_of(&self, key: (JobId, u32)) -> Option<Hash> {
        self.journal
            .get(key.0, key.1)
            .map(|r| r.result.output)
            .or_else(|| self.computed.get(&key).map(|c| c.output))
    }

    /// The input stage `s` must start from, once the chain knows it.
    fn expected_input(job: &Job, s: u32) -> Option<Hash> {
        if s == 0 {
            Some(job.spec.input)
        } else {
            job.stages[s as usize - 1].result.map(|r| r.output)
        }
    }

    /// A stage assigned to us and not committed: compute, check, commit.
    async fn work_on(&mut self, id: JobId, job: &Job, s: u32) -> Result<(), ProviderError> {
        let key = (id, s);
        // Committed before a crash but the transaction never landed: commit again.
        if let Some(rec) = self.journal.get(id, s).cloned() {
            return self.commit(id, s, rec).await;
        }
        if let Some(h) = self.running.get(&key) {
            if !h.is_finished() {
                return Ok(());
            }
            let h = self.running.remove(&key).expect("present");
            match h.await {
                Ok(Ok(c)) => {
                    self.computed.insert(key, c);
                    let mut st = self.status();
                    st.stages_computed += 1;
                    st.ops += c.ops;
                }
                Ok(Err(e)) => return Err(ProviderError::Unexpected(e)),
                Err(e) => return Err(ProviderError::Unexpected(format!("task: {e}"))),
            }
        }
        let expected = Daemon::expected_input(job, s);
        if let Some(c) = self.computed.get(&key).copied() {
            self.push_next(id, job, s, c.output).await;
            match expected {
                None => return Ok(()), // wait for the previous stage's reveal
                Some(h) if h == c.input => {
                    let rec = StageRecord {
                        job: id,
                        stage: s,
                        result: StageResult {
                            input: c.input,
                            output: c.output,
                            trace_root: c.trace_root,
                        },
                        ops: c.ops,
                        committed: false,
                        revealed: false,
                        published: false,
                        paid: None,
                    };
                    self.journal.put(rec.clone())?;
                    self.computed.remove(&key);
                    return self.commit(id, s, rec).await;
                }
                Some(h) => {
                    tracing::warn!(
                        job = id.0,
                        stage = s,
                        pushed = %hex32(&c.input),
                        agreed = %hex32(&h),
                        "pushed input differs from the chain's; recomputing"
                    );
                    self.computed.remove(&key);
                    self.inbox
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                }
            }
        }
        // Start computing if the input is known.
        let pushed = self
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        let Some(input) = expected.or(pushed) else {
            return Ok(());
        };
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
        };
        tracing::info!(job = id.0, stage = s, input = %hex32(&input), "computing");
        self.running.insert(key, tokio::spawn(task.run()));
        Ok(())
    }

    async fn commit(&mut self, id: JobId, s: u32, rec: StageRecord) -> Result<(), ProviderError> {
        let salt = salt_for(&self.salt_secret, id, s);
        let commitment = rec.result.commitment(id, s, &salt, &self.me);
        self.client
            .send(
                &self.config.key,
                TxBody::CommitResult {
                    job: id,
                    stage: s,
                    commitment,
                },
                self.config.tx_timeout,
            )
            .await?;
        self.journal.update(id, s, |r| r.committed = true)?;
        self.status().stages_committed += 1;
        tracing::info!(job = id.0, stage = s, output = %hex32(&rec.result.output), "committed");
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
            .get(&format!("/v1/providers/{}", hex32(&Hash(a.0))))
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
}

impl ComputeTask {
    async fn run(self) -> Result<Computed, String> {
        let quiet = |_: u64, _: u64| {};
        let cached = self
            .models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.model)
            .cloned();
        let model = match cached {
            Some(m) => m,
            None => {
                self.fetcher
                    .fetch(&self.model, &self.sources, &quiet)
                    .await
                    .map_err(|e| format!("model: {e}"))?;
                let store = self.fetcher.store().clone();
                let hash = self.model;
                let m = tokio::task::spawn_blocking(move || -> Result<Workload, String> {
                    let bytes = store
                        .get(&hash)
                        .map_err(|e| e.to_string())?
                        .ok_or("model vanished from the store")?;
                    if TrainTask::is_task(&bytes) {
                        return TrainTask::decode(&bytes, TaskLimits::default())
                            .map(Workload::Training)
                            .map_err(|e| e.to_string());
                    }
                    let bundle = Bundle::decode(&bytes, BundleLimits::default())
                        .map_err(|e| e.to_string())?;
                    bundle
                        .load()
                        .map(Workload::Inference)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())??;
                let m = Arc::new(m);
                self.models
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(self.model, m.clone());
                m
            }
        };
        self.fetcher
            .fetch(&self.input, &self.sources, &quiet)
            .await
            .map_err(|e| format!("input: {e}"))?;
        let store = self.fetcher.store().clone();
        let (input, layers, declared) = (self.input, self.layers.clone(), self.declared_ops);
        let start = Instant::now();
        let computed = tokio::task::spawn_blocking(move || -> Result<Computed, String> {
            let bytes = store
                .get(&input)
                .map_err(|e| e.to_string())?
                .ok_or("input vanished from the store")?;
            let (computed, bytes) = match &*model {
                Workload::Inference(m) => run_layers(m, &bytes, layers)?,
                Workload::Training(t) => run_steps(t, &bytes, layers)?,
            };
            if computed.ops != declared {
                tracing::warn!(
                    metered = computed.ops,
                    declared,
                    "the job declared other ops than metered"
                );
            }
            store
                .put(&computed.output, &bytes)
                .map_err(|e| e.to_string())?;
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

/// An inference stage: layers `layers` of `m` on the input activation's bytes; the
/// result and the output activation's canonical bytes.
fn run_layers(
    m: &LoadedModel,
    input: &[u8],
    layers: Range<usize>,
) -> Result<(Computed, Vec<u8>), String> {
    let act = Activation::from_canonical_bytes(input, DecodeLimits::default())
        .map_err(|e| e.to_string())?;
    let out = m.model.run_range(layers, act).map_err(|e| e.to_string())?;
    let computed = Computed {
        input: Hash(out.trace.input_hash.0),
        output: Hash(out.trace.output_hash().0),
        trace_root: Hash(out.trace.root.0),
        ops: out.total_ops(),
    };
    Ok((computed, out.output.canonical_bytes()))
}

/// A training stage: the ledger's layer range is the step range; steps `steps` of
/// task `t` on the input state's bytes; the result and the output state's bytes.
fn run_steps(
    t: &TrainTask,
    input: &[u8],
    steps: Range<usize>,
) -> Result<(Computed, Vec<u8>), String> {
    let state = TrainState::decode(input, t).map_err(|e| e.to_string())?;
    let run = t
        .run_steps(&state, steps.start as u64..steps.end as u64)
        .map_err(|e| e.to_string())?;
    let bytes = run.state.encode();
    let computed = Computed {
        input: Hash(*blake3::hash(input).as_bytes()),
        output: Hash(*blake3::hash(&bytes).as_bytes()),
        trace_root: Hash(run.trace_root.0),
        ops: run.ops,
    };
    Ok((computed, bytes))
}
