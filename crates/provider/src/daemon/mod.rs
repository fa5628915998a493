//! The provider daemon: one loop that turns assignments on the chain into work.
//!
//! ```text
//!  start: open store + journal ─▶ serve data plane ─▶ measure speed ─▶ Vivaldi probes
//!         ─▶ bond up to the configured stake ─▶ register (or update) the offer
//!
//!  every poll:  GET /v1/providers/{me}/work  (jobs where I hold an open slot or audit)
//!               (the receipts of the transactions in flight are read first)
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
//! Every turn is observe ─▶ plan ─▶ execute ([`Daemon::tick`]): the decisions above are
//! one pure function ([`plan::plan`]) of what was observed, and the executor performs
//! them, sending transactions with pipelined nonces ([`exec`]). The code follows the
//! roles:
//!
//! ```text
//!  mod.rs       Config, Status, ProviderError, Provider::start (the start-up above),
//!               the Daemon's state and its loop: run ─▶ tick ─▶ observe, plan, execute
//!  plan.rs      the planner: View, Local, Action, TxKey, Landed, Stuck; plan() calls each
//!               role's planner; the Actor (honest, or a cheat as a whole actor)
//!  exec.rs      the Sender: pipelined nonces, receipts read back, nonce gaps filled
//!  register.rs  bonding, registering and refreshing the offer
//!  stage.rs     the replica slots held: plan_stage (compute, commit, publish, reveal,
//!               push, the availability claim) and its executor parts
//!  audit.rs     the audits drawn: plan_audit (AuditCommit, then AuditReport)
//!  dispute.rs   the disputes played: plan_dispute (bisection moves, the agreed
//!               activation or carry for the referee) and the replays it starts
//!  settle.rs    the payments read from the ledger's events; plan_settlement, a pure
//!               function of the journal and the jobs, decides what ended and is settled
//!  tasks.rs     what runs off the loop: ComputeTask, ReplayTask, StepReplay; the
//!               workloads; the salt and the cheat's seed
//! ```

mod audit;
mod dispute;
mod exec;
mod generation;
pub(crate) mod plan;
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
use exec::{Receipt, Sender};
pub use plan::Stuck;
use plan::{Action, Actor, Landed, Local, Me, Missing, Subject, TxKey, View};
use register::{peer_clients, register};
pub use stage::{CLAIM_AFTER_FAILURES, CLAIM_PATIENCE};
pub use tasks::salt_for;
use tasks::{Computed, Models, StepWork, TaskError};

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
    /// Emulated one-way delay added before each frame this provider sends on a
    /// generation session's link (zero: none), so a hop between two stages costs
    /// `link_delay` more one way. For benches on one machine (`agentic bench generate`).
    pub link_delay: Duration,
    /// Shared by daemons in one process so that their generation replays (audits,
    /// rebuilds) take turns, each timed alone as on a machine of its own (`None`: no
    /// turns). For benches on one machine (`agentic bench generate`).
    pub replay_turns: Option<Arc<Mutex<()>>>,
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
            link_delay: Duration::ZERO,
            replay_turns: None,
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
    /// The ledger refused a transaction of ours (nothing was charged).
    #[error("{kind} rejected: {reason}")]
    Rejected {
        /// The transaction's kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// Something the planner found that no action can fix this turn.
    #[error("{0}")]
    Stuck(#[from] Stuck),
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
    /// The last generation session this provider finished a stage of (for benches).
    pub last_session: Option<SessionTiming>,
    /// The last generation audit this provider replayed (for benches).
    pub last_audit: Option<AuditTiming>,
}

/// How long this provider's part of a generation session took, measured around
/// `session::run` (after the model and the request are loaded).
#[derive(Clone, Debug, Serialize)]
pub struct SessionTiming {
    /// The job.
    pub job: JobId,
    /// The stage held.
    pub stage: u32,
    /// Steps (tokens) the session ran.
    pub steps: u32,
    /// When the stage joined the session (dialing its links), in ms since the Unix
    /// epoch: comparable with the requester's clock on the same machine.
    pub started_unix_ms: f64,
    /// From joining to the end of the stage's last step (links, waits and compute).
    pub wall_ms: f64,
}

/// How long an audit of a generation stage took.
#[derive(Clone, Debug, Serialize)]
pub struct AuditTiming {
    /// The job.
    pub job: JobId,
    /// The stage audited.
    pub stage: u32,
    /// The replay alone (one prefill through the stage's layers), the model loaded and
    /// the transcript fetched.
    pub replay_ms: f64,
    /// Whether it replayed from the stage's input rows (the stage's layers only) rather
    /// than from the prompt (every layer up to the stage's last).
    pub from_rows: bool,
}

/// A running provider.
pub struct Provider {
    address: Address,
    endpoint: String,
    status: Arc<Mutex<Status>>,
    sessions: Arc<crate::session::Sessions>,
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
        let sessions = generation::registry(&config.key);
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
            sessions: sessions.clone(),
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
        let sender = Sender::new(client.clone(), config.key.clone(), config.tx_timeout);
        let mut daemon = Daemon {
            me: Me {
                address,
                salt_secret,
            },
            actor: Actor::new(config.misbehave),
            config,
            client,
            sender,
            payments,
            fetcher,
            journal,
            inbox,
            sessions,
            models: Arc::default(),
            local: Local::default(),
            running: BTreeMap::new(),
            missing_since: BTreeMap::new(),
            replays: BTreeMap::new(),
            step_replays: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            jobs: BTreeMap::new(),
            status: status.clone(),
            next_refresh,
            offer,
            vivaldi,
        };
        let sessions = daemon.sessions.clone();
        let worker = tokio::spawn(async move { daemon.run().await });
        Ok(Provider {
            address,
            endpoint,
            status,
            sessions,
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
        drop(self);
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // Connections the data plane already handed out (a session link, a token
        // stream) outlive its listener: end them as a dead process would.
        self.sessions.shutdown();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // The background work dies with the daemon (a session's links with it).
        for t in self.running.values() {
            t.abort();
        }
    }
}

/// A replay up to an agreed leaf: the hash of the activation it reached (`None`: the
/// trace has no activation there).
type Replayed = Result<Option<Hash>, String>;

/// The loop's state: what it talks to, what it remembers across turns (besides the
/// journal: [`Local`] and the background tasks), and what it reports. Each role adds
/// its executor methods in its own module.
struct Daemon {
    config: Config,
    me: Me,
    actor: Actor,
    client: Client,
    /// The transactions in flight.
    sender: Sender,
    /// Each finalized block's payments to us, from [`payments::follow`].
    payments: mpsc::Receiver<BlockPayments>,
    fetcher: Fetcher,
    journal: Journal,
    inbox: Inbox,
    /// Generation sessions (shared with the data plane).
    sessions: Arc<crate::session::Sessions>,
    models: Models,
    /// What the planner reads besides the chain and the journal.
    local: Local,
    /// Stage computations running in the background.
    running: BTreeMap<(JobId, u32), JoinHandle<Result<Computed, TaskError>>>,
    /// When the first of the failed fetches in a row of a stage's data happened.
    missing_since: BTreeMap<(JobId, u32), Instant>,
    /// Replays up to an agreed leaf running in the background.
    replays: BTreeMap<(DisputeId, Hash), JoinHandle<Replayed>>,
    /// Replays of a training dispute's step running in the background.
    step_replays: BTreeMap<DisputeId, JoinHandle<Result<StepWork, String>>>,
    endpoints: BTreeMap<Address, String>,
    /// This tick's jobs (the work's, the disputes', the unpaid records').
    jobs: BTreeMap<JobId, Job>,
    status: Arc<Mutex<Status>>,
    /// When the coordinate is next re-measured.
    next_refresh: Instant,
    /// The offer as published.
    offer: Offer,
    vivaldi: Arc<Mutex<VivaldiNode>>,
}

impl Daemon {
    /// The loop: a turn ([`Daemon::tick`]), the offer refreshed when due, then a pause
    /// of `poll`. Errors are logged and kept in the status; the loop never stops on its
    /// own.
    async fn run(&mut self) {
        loop {
            if let Err(e) = self.tick().await {
                self.report(&e.to_string());
            }
            if !self.config.refresh.is_zero() && Instant::now() >= self.next_refresh {
                self.next_refresh = Instant::now() + self.config.refresh;
                if let Err(e) = self.refresh_offer().await {
                    self.report(&format!("offer refresh: {e}"));
                }
            }
            tokio::time::sleep(self.config.poll).await;
        }
    }

    /// The status, to update.
    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs `e` and keeps it as the status's last error.
    fn report(&self, e: &str) {
        tracing::warn!(error = %e, "provider loop");
        self.status().last_error = Some(e.to_string());
    }

    /// One turn: observe (receipts, payments, the work, finished tasks), plan
    /// ([`plan::plan`], pure), execute.
    async fn tick(&mut self) -> Result<(), ProviderError> {
        let (height, work, disputes) = self.observe().await?;
        let actions = {
            let view = View {
                height,
                work: &work,
                disputes: &disputes,
                jobs: &self.jobs,
                journal: &self.journal,
                local: &self.local,
            };
            plan::plan(&view, &self.me, self.actor)
        };
        self.execute(actions, &disputes).await;
        if let Err(e) = self.sender.fill_gaps().await {
            self.report(&format!("filling a nonce: {e}"));
        }
        Ok(())
    }

    /// Everything the planner reads, as of now: the receipts of the transactions in
    /// flight first (so the work read after reflects every one that landed), the
    /// payments, this provider's work, the jobs of its disputes and unpaid records, and
    /// the background tasks that finished.
    async fn observe(
        &mut self,
    ) -> Result<(u64, Vec<JobId>, Vec<(DisputeId, Dispute)>), ProviderError> {
        for r in self.sender.poll().await {
            match r {
                Receipt::Applied(landed) => {
                    if let Err(e) = self.landed(landed) {
                        self.report(&e.to_string());
                    }
                }
                Receipt::Rejected { kind, reason } => {
                    self.report(&ProviderError::Rejected { kind, reason }.to_string());
                    self.sender.refresh_params();
                }
                Receipt::Lost { kind } => {
                    self.report(&format!("{kind}: no receipt within the timeout"));
                }
            }
        }
        self.local.pending = self.sender.pending();
        let work = self.client.provider_work(&self.me.address).await?;
        let height = work.height.0;
        self.status().height = height;
        self.take_payments()?;
        self.jobs.clear();
        let mut held = Vec::with_capacity(work.jobs.len());
        for j in work.jobs {
            held.push(JobId(j.id));
            self.jobs.insert(JobId(j.id), j.item);
        }
        let disputes: Vec<(DisputeId, Dispute)> = work
            .disputes
            .into_iter()
            .map(|d| (DisputeId(d.id), d.item))
            .collect();
        // The jobs the disputes and the unpaid records need, read once each; a job
        // that cannot be read leaves its records for a later turn.
        let mut wanted: Vec<JobId> = disputes.iter().map(|(_, d)| d.job).collect();
        if settle::events_read(self.journal.events_height(), height) {
            wanted.extend(
                self.journal
                    .records()
                    .filter(|r| r.paid.is_none())
                    .map(|r| r.job),
            );
        }
        for id in wanted {
            if self.jobs.contains_key(&id) {
                continue;
            }
            match self.client.job(id).await {
                Ok(j) => {
                    self.jobs.insert(id, j);
                }
                Err(e) => {
                    self.report(&format!("job {}: {e}", id.0));
                    break;
                }
            }
        }
        // A training dispute's replay is dropped once the dispute is no longer open.
        let open: BTreeSet<DisputeId> = disputes.iter().map(|(id, _)| *id).collect();
        self.local.step_work.retain(|id, _| open.contains(id));
        self.step_replays.retain(|id, _| open.contains(id));
        self.collect_tasks().await;
        self.refresh_sessions(&held).await;
        self.local.faults = self.sessions.faults();
        self.local.inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok((height, held, disputes))
    }

    /// Moves the background tasks that finished into [`Local`].
    async fn collect_tasks(&mut self) {
        for m in self.local.missing.values_mut() {
            m.fresh = false;
        }
        let done: Vec<(JobId, u32)> = self
            .running
            .iter()
            .filter(|(_, h)| h.is_finished())
            .map(|(k, _)| *k)
            .collect();
        for key in done {
            let Some(h) = self.running.remove(&key) else {
                continue;
            };
            match h.await {
                Ok(Ok(c)) => {
                    self.local.missing.remove(&key);
                    self.missing_since.remove(&key);
                    {
                        let mut st = self.status();
                        st.stages_computed += 1;
                        st.ops += c.ops;
                    }
                    self.local.computed.insert(key, c);
                }
                Ok(Err(TaskError::Unavailable { what, detail })) => {
                    let since = *self.missing_since.entry(key).or_insert_with(Instant::now);
                    let failures = self.local.missing.get(&key).map_or(0, |m| m.failures) + 1;
                    self.local.missing.insert(
                        key,
                        Missing {
                            what,
                            failures,
                            waited: since.elapsed(),
                            fresh: true,
                        },
                    );
                    self.report(&format!(
                        "job {} stage {}: cannot fetch the {what}: {detail}",
                        key.0 .0, key.1
                    ));
                }
                Ok(Err(TaskError::Failed(e))) => {
                    self.report(&format!("job {} stage {}: {e}", key.0 .0, key.1))
                }
                Err(e) => self.report(&format!("job {} stage {}: {e}", key.0 .0, key.1)),
            }
        }
        self.local.running = self.running.keys().copied().collect();
        let done: Vec<(DisputeId, Hash)> = self
            .replays
            .iter()
            .filter(|(_, h)| h.is_finished())
            .map(|(k, _)| *k)
            .collect();
        for key in done {
            let Some(h) = self.replays.remove(&key) else {
                continue;
            };
            match h.await.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(Some(got)) if got == key.1 => {} // stored: uploaded next
                Ok(got) => {
                    // Not this party's activation: the other party must provide it.
                    tracing::warn!(
                        dispute = key.0 .0,
                        agreed = %key.1.to_hex(),
                        replayed = ?got,
                        "no activation of ours hashes to the agreed leaf"
                    );
                    self.local.provided.insert(key);
                }
                // Tried again next turn (a fetch may have failed).
                Err(detail) => self.report(
                    &ProviderError::Replay {
                        dispute: key.0,
                        detail,
                    }
                    .to_string(),
                ),
            }
        }
        self.local.providing = self.replays.keys().copied().collect();
        let done: Vec<DisputeId> = self
            .step_replays
            .iter()
            .filter(|(_, h)| h.is_finished())
            .map(|(k, _)| *k)
            .collect();
        for id in done {
            let Some(h) = self.step_replays.remove(&id) else {
                continue;
            };
            match h.await.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(w) => {
                    self.local.step_work.insert(id, Arc::new(w));
                }
                Err(detail) => self.report(
                    &ProviderError::StepReplay {
                        dispute: id,
                        detail,
                    }
                    .to_string(),
                ),
            }
        }
        self.local.step_replaying = self.step_replays.keys().copied().collect();
    }

    /// Performs the planned actions in order; an action that fails is reported and the
    /// later actions on the same subject are skipped this turn.
    async fn execute(&mut self, actions: Vec<Action>, disputes: &[(DisputeId, Dispute)]) {
        let mut failed: BTreeSet<Subject> = BTreeSet::new();
        for action in actions {
            let subject = action.subject();
            if failed.contains(&subject) {
                continue;
            }
            if let Err(e) = self.act(action, disputes).await {
                self.report(&e.to_string());
                failed.insert(subject);
            }
        }
    }

    /// Performs one action.
    async fn act(
        &mut self,
        action: Action,
        disputes: &[(DisputeId, Dispute)],
    ) -> Result<(), ProviderError> {
        let dispute = |id: DisputeId| disputes.iter().find(|(d, _)| *d == id).map(|(_, d)| d);
        match action {
            Action::Compute {
                job,
                stage,
                input,
                mode,
            } => {
                if let Some(j) = self.jobs.get(&job).cloned() {
                    self.start_compute(job, &j, stage, input, mode).await;
                }
            }
            Action::Discard { job, stage } => {
                self.local.computed.remove(&(job, stage));
                self.inbox
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(job, stage));
            }
            Action::Journal {
                job,
                stage,
                role,
                misbehaviour,
            } => self.journal_computed(job, stage, role, misbehaviour)?,
            Action::Push {
                job,
                stage,
                output,
                to,
            } => self.push(job, stage, output, &to).await,
            Action::Publish { job, stage } => self.publish(job, stage).await?,
            Action::Send { key, body, landed } => {
                if let Landed::CopiedReveal(j, s) = landed {
                    self.local.copy_attempted.insert((j, s));
                }
                if let TxKey::Claim(j) = key {
                    self.local.claimed.insert(j);
                }
                self.sender.send(key, body, landed).await?;
            }
            Action::Provide { dispute: id } => {
                if let Some(d) = dispute(id).cloned() {
                    self.provide(id, &d).await?;
                }
            }
            Action::ReplayStep { dispute: id } => {
                if let Some(d) = dispute(id).cloned() {
                    self.replay_step(id, &d).await?;
                }
            }
            Action::ProvideCarry { dispute: id } => {
                if let Some(d) = dispute(id).cloned() {
                    self.provide_carry(id, &d).await?;
                }
            }
            Action::Settle(s) => self.apply_settle(s)?,
            Action::Stuck(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Records what a transaction that landed means.
    fn landed(&mut self, landed: Landed) -> Result<(), ProviderError> {
        match landed {
            Landed::Committed(j, s) => {
                self.journal.update(j, s, |r| r.committed = true)?;
                self.status().stages_committed += 1;
                tracing::info!(job = j.0, stage = s, "committed");
            }
            Landed::CommittedCopy => {
                self.status().stages_committed += 1;
                tracing::warn!("copy-replica: committed a copied commitment");
            }
            Landed::Revealed(j, s) => {
                // (The chain holds our commitment even if we died before noting it.)
                self.journal.update(j, s, |r| {
                    r.committed = true;
                    r.revealed = true;
                })?;
                tracing::info!(job = j.0, stage = s, "revealed");
            }
            Landed::AuditCommitted(j, s) => {
                self.journal.update(j, s, |r| r.committed = true)?;
                self.status().audits_committed += 1;
                tracing::info!(job = j.0, stage = s, "audit committed");
            }
            Landed::AuditReported(j, s) => {
                self.journal.update(j, s, |r| {
                    r.committed = true;
                    r.revealed = true;
                })?;
                self.status().audits_reported += 1;
                tracing::info!(job = j.0, stage = s, "audit reported");
            }
            Landed::Claimed => {
                self.status().claims_sent += 1;
                tracing::warn!("the job's data cannot be fetched: claimed unavailable");
            }
            Landed::Moved => self.status().bisect_moves += 1,
            Landed::StepRootPosted => self.status().step_roots_posted += 1,
            Landed::OfferUpdated => self.status().offer_updates += 1,
            Landed::CopiedReveal(..) | Landed::Nothing => {}
        }
        Ok(())
    }

    /// A job, from this turn's reads or the node.
    async fn job(&mut self, id: JobId) -> Result<Job, ProviderError> {
        if let Some(j) = self.jobs.get(&id) {
            return Ok(j.clone());
        }
        let j = self.client.job(id).await?;
        self.jobs.insert(id, j.clone());
        Ok(j)
    }
}
