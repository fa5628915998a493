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
//!
//! The code follows the roles:
//!
//! ```text
//!  mod.rs       Config, Status, ProviderError, Provider::start (the start-up above),
//!               the Daemon's state and its loop: run ─▶ tick ─▶ each role below
//!  register.rs  bonding, registering and refreshing the offer; send_tx
//!  stage.rs     the replica slots held: compute, commit, publish, reveal, push; the
//!               availability claim; the copy-replica cheat
//!  audit.rs     the audits drawn: AuditCommit, then AuditReport
//!  dispute.rs   the disputes played: bisection moves, the agreed activation (or carry)
//!               for the referee
//!  settle.rs    the payments read from the ledger's events; plan_settlement, a pure
//!               function of the journal and the jobs, decides what ended and is settled
//!  tasks.rs     what runs off the loop: ComputeTask, ReplayTask, StepReplay; the
//!               workloads; the salt and the cheat's seed
//! ```

mod audit;
mod dispute;
mod register;
mod settle;
mod stage;
mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentic_client::blobs::{BlobStore, DEFAULT_MAX_BLOB};
use agentic_client::{Client, ClientError};
use agentic_protocol::coord::{Coord, VivaldiNode};
use agentic_protocol::leaves::MoveError;
use agentic_protocol::state::{Dispute, Job};
use agentic_protocol::tx::Offer;
use agentic_protocol::types::{Capabilities, Endpoint, Region};
use agentic_protocol::{Address, Amount, DisputeId, Hash, Height, JobId};
use commonware_codec::Encode as _;
use commonware_cryptography::ed25519::PrivateKey;
use commonware_cryptography::Signer as _;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dataplane::{self, FetchError, Fetcher, Inbox, PlaneState};
use crate::journal::{Journal, JournalError};
use crate::measure;
use crate::misbehave::Misbehaviour;
use crate::payments::{self, BlockPayments};
use register::{peer_clients, register};
pub use stage::{CLAIM_AFTER_FAILURES, CLAIM_PATIENCE};
pub use tasks::salt_for;
use tasks::{Computed, Models, Provision, StepPlay, TaskError};

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
    Store(#[from] agentic_client::blobs::BlobError),
    /// The model or input could not be run.
    #[error("compute: {0}")]
    Compute(#[from] agentic_compute::ComputeError),
    /// Local I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A background task (computation, replay) panicked or was cancelled.
    #[error("task: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A stage's computation failed for a reason other than missing data (a model that
    /// does not decode, a failed run, local storage).
    #[error("{0}")]
    Task(String),
    /// The chain holds our commitment to a stage but the journal has no result to
    /// reveal.
    #[error("committed to job {job} stage {stage} but the journal has no result")]
    NotJournaled {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
    },
    /// A stage's output, to be published before the reveal, is not in the blob store.
    #[error("output missing from the store")]
    OutputMissing {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
    },
    /// The model or input of a stage held could not be fetched (not claimed
    /// unavailable: not yet, not the job's own data, or claimed already).
    #[error("job {job} stage {stage}: cannot fetch the {what} ({tries} tries): {detail}")]
    Unfetchable {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// `model` or `input`.
        what: &'static str,
        /// Failed fetches in a row.
        tries: u32,
        /// What each source answered.
        detail: String,
    },
    /// This provider is the stage's auditor in `Auditing` but its journal holds no
    /// committed audit result to report.
    #[error("auditing job {job} stage {stage} but the journal holds no committed audit result")]
    AuditNotJournaled {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
    },
    /// An audit's computation ran on another input than the stage's agreed one.
    #[error(
        "audit of job {job} stage {stage} ran on {ran_on} instead of the agreed input {agreed}"
    )]
    AuditInput {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// The input it ran on.
        ran_on: Hash,
        /// The agreed input.
        agreed: Hash,
    },
    /// An audited stage's model or input could not be fetched (only a replica may
    /// claim it unavailable).
    #[error("audit of job {job} stage {stage}: cannot fetch the {what}: {detail}")]
    AuditUnfetchable {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// `model` or `input`.
        what: &'static str,
        /// What each source answered.
        detail: String,
    },
    /// A dispute names this provider but its journal has no record of the stage.
    #[error("no record of job {job} stage {stage}: nothing to defend")]
    NothingToDefend {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
    },
    /// The journal holds no trace with the root this party posted.
    #[error("the journal holds no trace with root {root:?} for job {job} stage {stage}")]
    NoTrace {
        /// The job.
        job: JobId,
        /// The stage.
        stage: u32,
        /// This party's root on chain (`None`: not a party).
        root: Option<Hash>,
    },
    /// This party's next move could not be built from its leaves.
    #[error("dispute {dispute} step {step:?}: {source}")]
    Move {
        /// The dispute.
        dispute: DisputeId,
        /// The disputed step (training disputes at the unit level).
        step: Option<u32>,
        /// Why.
        source: MoveError,
    },
    /// Replaying a stage up to the agreed leaf failed (retried next turn).
    #[error("replay: {detail}")]
    Replay {
        /// The dispute.
        dispute: DisputeId,
        /// Why.
        detail: String,
    },
    /// Replaying a training stage up to the disputed step failed (retried next turn).
    #[error("step replay: {detail}")]
    StepReplay {
        /// The dispute.
        dispute: DisputeId,
        /// Why.
        detail: String,
    },
    /// The carry entering a unit of the disputed step could not be computed.
    #[error("carry {unit}: {detail}")]
    Carry {
        /// The dispute.
        dispute: DisputeId,
        /// The unit.
        unit: u32,
        /// Why.
        detail: String,
    },
    /// The agreed activation, replayed and stored, is no longer in the store.
    #[error("agreed activation vanished")]
    AgreedVanished {
        /// The dispute.
        dispute: DisputeId,
    },
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

        // Payments come from the ledger's events: follow them from where the journal
        // stopped (a fresh journal has nothing to be paid for before now).
        let from = match journal.events_height() {
            Some(h) => Height(h.0 + 1),
            None if journal.records().next().is_some() => Height(1),
            None => Height(client.status().await?.height.0 + 1),
        };
        let (pay_tx, payments) = mpsc::channel(1024);
        let follower = tokio::spawn(payments::follow(client.clone(), address, from, pay_tx));

        let salt_secret = blake3::derive_key("agentic provider salt v1", &config.key.encode());
        let next_refresh = Instant::now() + config.refresh;
        let mut daemon = Daemon {
            config,
            me: address,
            client,
            payments,
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
            tasks: vec![server, follower, worker],
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

/// The loop's state: what it talks to, what it remembers across turns (besides the
/// journal), and what it reports. Each role adds its methods in its own module.
struct Daemon {
    config: Config,
    me: Address,
    client: Client,
    /// Each finalized block's payments to us, from [`payments::follow`].
    payments: mpsc::Receiver<BlockPayments>,
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
    /// The loop: a turn of every role ([`Daemon::tick`]), the offer refreshed when
    /// due, then a pause of `poll`. Errors are logged and kept in the status; the loop
    /// never stops on its own.
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

    /// The status, to update.
    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One turn: read this provider's work at the current height, then act in each
    /// role — every stage held ([`Daemon::step`]) and audited ([`Daemon::audit`]), every
    /// open dispute ([`Daemon::play`]) — and settle what ended
    /// ([`Daemon::take_payments`], [`Daemon::collect_payments`]). A role's error is
    /// logged and the others go on.
    async fn tick(&mut self) -> Result<(), ProviderError> {
        let work = self.client.provider_work(&self.me).await?;
        let height = work.height.0;
        self.status().height = height;
        let jobs: Vec<(JobId, Job)> = work
            .jobs
            .into_iter()
            .map(|j| (JobId(j.id), j.item))
            .collect();
        let disputes: Vec<(DisputeId, Dispute)> = work
            .disputes
            .into_iter()
            .map(|d| (DisputeId(d.id), d.item))
            .collect();
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
        self.take_payments(height).await?;
        self.collect_payments(&jobs, height).await?;
        Ok(())
    }
}
