//! `agentic bench pipeline`: the same batch of inference jobs run as 1-stage jobs on one
//! provider and as k-stage pipelines over k providers, on a real local market (validators
//! with consensus, provider daemons with their HTTP data planes, all on loopback, in one
//! process): throughput ratio, end-to-end latency, and what each extra stage adds.
//!
//! ```text
//!   texts ─▶ B inputs (tiny-gpt, L lines × 64 tokens each)
//!      │ local reference: every stage's layers run here, timed (compute per stage)
//!      ▼
//!   LocalMarket: V validators (block interval I) + providers p0, p1, …, p(k−1)
//!      │
//!      ├─ single:   B × SubmitJob{1 stage, placement [p0]}           ─┐ signed with
//!      └─ pipeline: B × SubmitJob{k stages, placement [p0, …, pk−1]}  ─┘ consecutive nonces,
//!                                                                      posted back to back
//!   chain event feed (validator 0) ─▶ when each job was assigned, committed, revealed,
//!                                     finalized, completed (seen here, in this process)
//! ```
//!
//! The run, in order:
//!
//! 1. **Reference.** Each job's input is run locally stage by stage with the layer ranges
//!    the requester SDK chooses (ops-balanced split); each stage's compute is timed on an
//!    otherwise idle process, and the final output hash is the reference both network
//!    runs must reproduce.
//! 2. **Market.** `--validators` validators from a fresh genesis, then `--stages`
//!    provider daemons, all started before either phase so that both phases run next to
//!    the same idle processes. Each provider takes up to `jobs + 1` stages at once, so the
//!    batch is matched as soon as it lands.
//! 3. **Single.** One untimed warm-up job (the provider fetches and loads the model), the
//!    batch as 1-stage jobs named to provider 0, then batch job 0 once more, alone.
//! 4. **Pipeline.** The same as k-stage jobs, stage i named to provider i (the warm-up
//!    loads the model on every provider).
//! 5. **Push.** Each stage boundary's real activation is PUT over loopback into the next
//!    provider's data plane (what the daemons do to hand activations on), timed, median
//!    of three.
//!
//! Figures (every time is this process's wall clock; "seen" means applied on validator 0):
//!
//! * latency of a job = its `JobCompleted` seen − the start of its `SubmitJob` POST (the
//!   input and model blobs are uploaded before the clock starts, in both phases);
//! * `jobs_per_s` = completed jobs / (last `JobCompleted` seen − first POST);
//! * `ratio` = pipeline `jobs_per_s` / single `jobs_per_s`;
//! * `added_latency_per_stage_ms` = (pipeline mean latency − single mean latency) / (k − 1),
//!   in the batch; `added_latency_per_stage_solo_ms` the same for the job run alone (no
//!   queue: the protocol's own cost of a stage);
//! * the timeline of each stage (mean over jobs, ms after the POST): assigned, committed,
//!   revealed, finalized, and the blocks between them. `hop_ms[i]` = stage i's result
//!   agreed minus stage i−1's: the time each extra stage puts on the critical path.
//!
//! Each provider daemon sends its transactions one at a time and waits for each receipt,
//! so in a batch its commits and reveals queue behind each other (about a block each):
//! the batch figures include that queue, the solo job does not.
//!
//! What this bench is not: every provider shares this machine's cores, so a pipeline
//! gains no hardware — the ratio measures what splitting a job costs or saves in
//! protocol and scheduling (per-stage commit/reveal rounds, activation hand-off, each
//! daemon's own serial transaction loop), not what k machines would add. Jobs use the
//! optimistic verification level (no audits) and the challenge window given by
//! `--challenge-window`, which every job waits out once at its end in both phases.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentic_agent::requester::{
    prepare, JobInput, JobRequest, OfferView, PlacementChoice, PreparedJob,
};
use agentic_client::Client;
use agentic_compute::bundle::Bundle;
use agentic_compute::Activation;
use agentic_node::chain::ChainEvent;
use agentic_protocol::event::Event;
use agentic_protocol::state::JobStatus;
use agentic_protocol::tx::{SignedTx, Tx};
use agentic_protocol::types::ChainId;
use agentic_protocol::{Address, Hash, JobId};
use agentic_provider::local::{self, LocalMarket, MarketSpec};
use agentic_provider::Provider;
use anyhow::{bail, ensure, Context as _};
use commonware_cryptography::ed25519::PrivateKey;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Jobs in the batch (each phase runs the same batch).
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Input lines per job: 64-byte texts, 64 tokens each for tiny-gpt.
    #[arg(long, default_value_t = 128)]
    pub lines: usize,
    /// Pipeline stages (one provider each).
    #[arg(long, default_value_t = 3)]
    pub stages: usize,
    /// Validators on loopback.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Least time between blocks (ms).
    #[arg(long, default_value_t = DEFAULT_BLOCK_INTERVAL_MS)]
    pub block_interval_ms: u64,
    /// Blocks a verified stage stays open to challenges before it is paid.
    #[arg(long, default_value_t = 2)]
    pub challenge_window: u64,
    /// How often each provider daemon polls the chain for work (ms).
    #[arg(long, default_value_t = 100)]
    pub provider_poll_ms: u64,
    /// Worker threads of the async runtime the whole market shares.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

const DEFAULT_BLOCK_INTERVAL_MS: u64 =
    agentic_node::consensus::DEFAULT_BLOCK_INTERVAL.as_millis() as u64;
const MODEL: &str = "tiny-gpt";
/// tiny-gpt's context (its byte tokenizer makes one token per byte).
const LINE_BYTES: usize = 64;
const CHAIN: u64 = 1337;
/// Every provider's price per mega-op (all equal: the bench is about time, not cost).
const PRICE: u128 = 10;
/// Blocks a provider has to deliver; far beyond what the batch needs.
const DEADLINE_BLOCKS: u64 = 1_000;
/// Blocks a provider has to reveal after committing. The daemon sends its transactions
/// one at a time, so with a batch it reveals its first job only after committing all of
/// them; the default (10) would expire those reveals for batches of about ten jobs.
const REVEAL_WINDOW: u64 = 500;
const PUSH_REPS: usize = 3;

pub fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(args.jobs > 0, "--jobs must be positive");
    ensure!(args.lines > 0, "--lines must be positive");
    ensure!(args.stages >= 2, "--stages must be at least 2");
    ensure!(args.validators > 0, "--validators must be positive");
    ensure!(
        args.challenge_window > 0,
        "--challenge-window must be positive"
    );
    let progress = ProgressBar::new(5).with_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg}")
            .context("progress template")?,
    );
    progress.enable_steady_tick(Duration::from_millis(100));

    progress.set_message(format!(
        "reference: {} jobs of {} lines run locally, stage by stage",
        args.jobs, args.lines
    ));
    let work = Workload::build(args)?;
    progress.inc(1);

    let dir = std::env::temp_dir().join(format!(
        "agentic-bench-pipeline-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    let settings = Settings::of(args);
    let mut users = vec!["requester".to_string()];
    users.extend((0..args.stages).map(provider_name));
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut spec = MarketSpec::new(args.validators, &user_refs)
        .param("challenge_window", args.challenge_window)
        .param("reveal_window", REVEAL_WINDOW);
    spec.chain_id = CHAIN;
    spec.threads = args.threads.max(1);
    spec.block_interval = Duration::from_millis(args.block_interval_ms);
    progress.set_message(format!(
        "starting {} validators and {} providers",
        args.validators, args.stages
    ));
    let market_started = Instant::now();
    let result = {
        let (work, progress) = (work.clone(), progress.clone());
        local::run(&dir, spec, move |market| async move {
            measure(market, settings, work, progress).await
        })
    };
    let _ = std::fs::remove_dir_all(&dir);
    let figures = result.context("the local market")??;
    let market_s = market_started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    report(args, &work, &figures, market_s)
}

fn provider_name(i: usize) -> String {
    format!("provider-{i}")
}

/// What `measure` needs from the arguments (owned: it runs on the market's runtime).
#[derive(Clone, Copy)]
struct Settings {
    jobs: usize,
    stages: usize,
    poll: Duration,
    timeout: Duration,
}

impl Settings {
    fn of(args: &Args) -> Settings {
        Settings {
            jobs: args.jobs,
            stages: args.stages,
            poll: Duration::from_millis(args.provider_poll_ms.max(1)),
            timeout: Duration::from_secs(args.timeout),
        }
    }
}

/// The batch, its warm-up jobs, and the local reference run.
#[derive(Clone)]
struct Workload {
    /// Texts of each batch job.
    batch: Vec<Vec<String>>,
    /// Texts of the warm-up job of each phase.
    warmup: Vec<String>,
    /// Layer ranges of the pipeline's stages, as the SDK splits them.
    ranges: Vec<(u32, u32)>,
    layers: usize,
    /// Ops of each pipeline stage (the same for every job: same shapes).
    stage_ops: Vec<u64>,
    /// Canonical bytes of the input, each stage boundary's activation, and the output.
    boundary_bytes: Vec<u64>,
    /// Blake3 of each batch job's output, from the local run.
    reference: Vec<Hash>,
    /// Compute time of each stage, per job (ms).
    compute_ms: Vec<Vec<f64>>,
    /// Job 0's activation at each inner stage boundary (canonical bytes), for the push
    /// measurement.
    boundaries: Vec<Vec<u8>>,
}

impl Workload {
    fn build(args: &Args) -> anyhow::Result<Workload> {
        let batch: Vec<Vec<String>> = (0..args.jobs).map(|j| texts(j, args.lines)).collect();
        let warmup = texts(args.jobs + 1, 1);
        // The split the SDK makes (the ledger placement uses the same ops-balanced split
        // as a named one).
        let mut req = JobRequest::new(MODEL, JobInput::Texts(batch[0].clone()));
        req.stages = args.stages;
        let prepared = prepare(&req, &[]).context("preparing the pipeline job")?;
        let ranges: Vec<(u32, u32)> = prepared
            .spec
            .stages
            .iter()
            .map(|s| (s.first_layer, s.first_layer + s.layers))
            .collect();
        let stage_ops = prepared.spec.stages.iter().map(|s| s.ops).collect();
        let layers = prepared.layer_ops.len();
        let mut boundary_bytes = vec![prepared.boundary_bytes[0]];
        boundary_bytes.extend(ranges.iter().map(|r| prepared.boundary_bytes[r.1 as usize]));

        let loaded = Bundle::of(MODEL)?.load()?;
        let mut reference = Vec::with_capacity(args.jobs);
        let mut compute_ms = vec![Vec::with_capacity(args.jobs); ranges.len()];
        let mut boundaries = Vec::new();
        for (j, lines) in batch.iter().enumerate() {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let mut act: Activation = loaded.encode(&refs)?;
            for (s, &(a, b)) in ranges.iter().enumerate() {
                let t = Instant::now();
                let out = loaded.model.run_range(a as usize..b as usize, act)?;
                compute_ms[s].push(t.elapsed().as_secs_f64() * 1e3);
                act = out.output;
                if j == 0 && s + 1 < ranges.len() {
                    boundaries.push(act.canonical_bytes());
                }
            }
            reference.push(act.hash());
        }
        Ok(Workload {
            batch,
            warmup,
            ranges,
            layers,
            stage_ops,
            boundary_bytes,
            reference,
            compute_ms,
            boundaries,
        })
    }
}

/// `lines` texts of exactly [`LINE_BYTES`] printable bytes, different for every job and
/// line: windows of a fixed fable at offsets that depend on both.
fn texts(job: usize, lines: usize) -> Vec<String> {
    const FABLE: &str = "A Fox once saw a Crow fly off with a piece of cheese in its beak \
        and settle on a branch of a tree. That's for me, as I am a Fox, said Master Reynard, \
        and he walked up to the foot of the tree. Good day, Mistress Crow, he cried. How well \
        you are looking today: how glossy your feathers; how bright your eye. I feel sure your \
        voice must surpass that of other birds, just as your figure does; let me hear but one \
        song from you that I may greet you as the Queen of Birds. The Crow lifted up her head \
        and began to caw her best, but the moment she opened her mouth the piece of cheese fell \
        to the ground, only to be snapped up by Master Fox. That will do, said he. That was all \
        I wanted. In exchange for your cheese I will give you a piece of advice for the future: \
        do not trust flatterers. ";
    let bytes = FABLE.as_bytes();
    (0..lines)
        .map(|i| {
            let start = (job * 7919 + i * 131) % (bytes.len() - LINE_BYTES);
            // FABLE is ASCII: any window is valid UTF-8.
            String::from_utf8_lossy(&bytes[start..start + LINE_BYTES]).into_owned()
        })
        .collect()
}

/// What a ledger event says about one of our jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Submitted,
    Assigned(u32),
    Committed(u32),
    Revealed(u32),
    Finalized(u32),
    Missed(u32),
    Completed,
    Failed,
    Cancelled,
}

impl Mark {
    fn of(event: &Event) -> Option<(JobId, Mark)> {
        Some(match *event {
            Event::JobSubmitted { job, .. } => (job, Mark::Submitted),
            Event::StageAssigned { job, stage, .. } => (job, Mark::Assigned(stage)),
            Event::ResultCommitted { job, stage, .. } => (job, Mark::Committed(stage)),
            Event::ResultRevealed { job, stage, .. } => (job, Mark::Revealed(stage)),
            Event::StageFinalized { job, stage } => (job, Mark::Finalized(stage)),
            Event::DeadlineMissed { job, stage, .. } => (job, Mark::Missed(stage)),
            Event::JobCompleted { job, .. } => (job, Mark::Completed),
            Event::JobFailed { job, .. } => (job, Mark::Failed),
            Event::JobCancelled { job, .. } => (job, Mark::Cancelled),
            _ => return None,
        })
    }

    fn terminal(self) -> bool {
        matches!(self, Mark::Completed | Mark::Failed | Mark::Cancelled)
    }
}

/// A mark and when it was seen.
#[derive(Clone, Copy, Debug)]
struct Seen {
    mark: Mark,
    at: Instant,
    height: u64,
}

/// Everything validator 0's event feed showed, from a task on the market's runtime.
#[derive(Default)]
struct Log {
    jobs: BTreeMap<JobId, Vec<Seen>>,
    /// (seen, height, proposer timestamp ms) of each block.
    blocks: Vec<(Instant, u64, u64)>,
    /// Events the feed dropped because this reader fell behind.
    lagged: u64,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Log>>);

impl Recorder {
    fn start(market: &LocalMarket) -> anyhow::Result<Recorder> {
        let mut feed = market.validators[0]
            .chain
            .read()
            .map_err(|_| anyhow::anyhow!("the chain lock is poisoned"))?
            .subscribe();
        let rec = Recorder::default();
        let log = rec.0.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let item = feed.recv().await;
                let at = Instant::now();
                let Ok(mut log) = log.lock() else { return };
                match item {
                    Ok(ChainEvent::Block(b)) => {
                        log.blocks.push((at, b.height.0, b.timestamp_ms));
                    }
                    Ok(ChainEvent::Ledger { height, record }) => {
                        if let Some((job, mark)) = Mark::of(&record.event) {
                            log.jobs.entry(job).or_default().push(Seen {
                                mark,
                                at,
                                height: height.0,
                            });
                        }
                    }
                    Err(RecvError::Lagged(n)) => log.lagged += n,
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(rec)
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many of `jobs` have ended (completed, failed or cancelled).
    fn ended(&self, jobs: &[JobId]) -> usize {
        let log = self.log();
        jobs.iter()
            .filter(|j| {
                log.jobs
                    .get(j)
                    .is_some_and(|v| v.iter().any(|s| s.mark.terminal()))
            })
            .count()
    }

    fn marks(&self, job: JobId) -> Vec<Seen> {
        self.log().jobs.get(&job).cloned().unwrap_or_default()
    }
}

/// One job of a phase, as measured.
struct JobRun {
    id: JobId,
    posted: Instant,
    marks: Vec<Seen>,
    status: JobStatus,
    output: Option<Hash>,
}

impl JobRun {
    fn first(&self, want: Mark) -> Option<Seen> {
        self.marks.iter().find(|s| s.mark == want).copied()
    }

    /// Milliseconds from the POST to the first `want`.
    fn ms(&self, want: Mark) -> Option<f64> {
        self.first(want)
            .map(|s| s.at.duration_since(self.posted).as_secs_f64() * 1e3)
    }

    fn latency_ms(&self) -> Option<f64> {
        (self.status == JobStatus::Completed)
            .then(|| self.ms(Mark::Completed))
            .flatten()
    }
}

/// What one phase (single or pipeline) measured.
struct Phase {
    stages: usize,
    runs: Vec<JobRun>,
    /// First POST to last `JobCompleted` seen.
    elapsed: Duration,
    warmup_ms: f64,
    /// Batch job 0's input again, submitted alone after the batch (nothing queued).
    solo: JobRun,
    /// Proposer timestamps of the blocks applied during the phase.
    block_timestamps: Vec<u64>,
    lagged: u64,
}

impl Phase {
    fn completed(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.latency_ms().is_some())
            .count()
    }

    fn jobs_per_s(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.completed() as f64 / s
        } else {
            0.0
        }
    }

    fn latencies(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.runs.iter().filter_map(JobRun::latency_ms).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn mean_latency_ms(&self) -> f64 {
        mean(&self.latencies())
    }

    fn measured_block_interval_ms(&self) -> Option<f64> {
        let (first, last) = (
            self.block_timestamps.first()?,
            self.block_timestamps.last()?,
        );
        (self.block_timestamps.len() > 1)
            .then(|| (last - first) as f64 / (self.block_timestamps.len() - 1) as f64)
    }

    /// Mean over jobs of `f(job)` where defined.
    fn mean_of(&self, f: impl Fn(&JobRun) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| mean(&v))
    }

    /// Blocks between two marks of a job.
    fn blocks_between(r: &JobRun, a: Mark, b: Mark) -> Option<f64> {
        Some(r.first(b)?.height as f64 - r.first(a)?.height as f64)
    }

    /// ms between two marks of a job.
    fn ms_between(r: &JobRun, a: Mark, b: Mark) -> Option<f64> {
        Some(r.ms(b)? - r.ms(a)?)
    }

    /// Each stage's timeline, mean over jobs.
    fn timeline(&self) -> Vec<Value> {
        (0..self.stages as u32)
            .map(|s| {
                // What the stage waited on before its commit: the job landing for stage
                // 0, the previous stage's result being agreed otherwise.
                let input = if s == 0 {
                    Mark::Submitted
                } else {
                    Mark::Revealed(s - 1)
                };
                json!({
                    "stage": s,
                    "assigned_ms": self.mean_of(|r| r.ms(Mark::Assigned(s))),
                    "committed_ms": self.mean_of(|r| r.ms(Mark::Committed(s))),
                    "revealed_ms": self.mean_of(|r| r.ms(Mark::Revealed(s))),
                    "finalized_ms": self.mean_of(|r| r.ms(Mark::Finalized(s))),
                    "commit_after_input_ms": self.mean_of(|r| Phase::ms_between(r, input, Mark::Committed(s))),
                    "commit_after_input_blocks": self.mean_of(|r| Phase::blocks_between(r, input, Mark::Committed(s))),
                    "reveal_after_commit_ms": self.mean_of(|r| Phase::ms_between(r, Mark::Committed(s), Mark::Revealed(s))),
                    "reveal_after_commit_blocks": self.mean_of(|r| Phase::blocks_between(r, Mark::Committed(s), Mark::Revealed(s))),
                })
            })
            .collect()
    }

    /// For each stage after the first: its result agreed − the previous stage's (mean).
    fn hop_ms(&self) -> Vec<Option<f64>> {
        (1..self.stages as u32)
            .map(|s| {
                self.mean_of(|r| Phase::ms_between(r, Mark::Revealed(s - 1), Mark::Revealed(s)))
            })
            .collect()
    }

    /// The same for the solo job.
    fn solo_hop_ms(&self) -> Vec<Option<f64>> {
        (1..self.stages as u32)
            .map(|s| Phase::ms_between(&self.solo, Mark::Revealed(s - 1), Mark::Revealed(s)))
            .collect()
    }

    fn solo_ms(&self) -> Option<f64> {
        self.solo.latency_ms()
    }

    fn outputs(&self) -> Vec<Option<String>> {
        self.runs
            .iter()
            .map(|r| r.output.as_ref().map(Hash::to_hex))
            .collect()
    }

    fn json(&self) -> Value {
        let lat = self.latencies();
        let misses: usize = self
            .runs
            .iter()
            .map(|r| {
                r.marks
                    .iter()
                    .filter(|s| matches!(s.mark, Mark::Missed(_)))
                    .count()
            })
            .sum();
        json!({
            "stages": self.stages,
            "jobs": self.runs.len(),
            "completed": self.completed(),
            "jobs_per_s": self.jobs_per_s(),
            "seconds": self.elapsed.as_secs_f64(),
            "latency_ms": {
                "mean": mean(&lat),
                "p50": percentile(&lat, 0.5),
                "max": percentile(&lat, 1.0),
                "min": lat.first().copied().unwrap_or(0.0),
            },
            "output_agreed_ms": self.mean_of(|r| r.ms(Mark::Revealed(self.stages as u32 - 1))),
            "timeline": self.timeline(),
            "hop_ms": self.hop_ms(),
            "deadline_misses": misses,
            "warmup_job_ms": self.warmup_ms,
            "solo_job": {
                "latency_ms": self.solo_ms(),
                "output_agreed_ms": self.solo.ms(Mark::Revealed(self.stages as u32 - 1)),
                "hop_ms": self.solo_hop_ms(),
                "output": self.solo.output.as_ref().map(Hash::to_hex),
            },
            "blocks": self.block_timestamps.len(),
            "measured_block_interval_ms": self.measured_block_interval_ms(),
            "feed_events_lost": self.lagged,
            "job_ids": self.runs.iter().map(|r| r.id.0).collect::<Vec<_>>(),
            "outputs": self.outputs(),
        })
    }
}

/// Everything the market part measured.
struct Figures {
    single: Phase,
    pipeline: Phase,
    /// Per inner boundary: median ms to PUT the activation into the next provider.
    push_ms: Vec<f64>,
    capacity: u32,
}

/// Starts the providers and runs both phases and the push measurement.
async fn measure(
    market: LocalMarket,
    settings: Settings,
    work: Workload,
    progress: ProgressBar,
) -> anyhow::Result<Figures> {
    let capacity = u32::try_from(settings.jobs + 1).unwrap_or(u32::MAX);
    let mut providers: Vec<Provider> = Vec::with_capacity(settings.stages);
    for i in 0..settings.stages {
        progress.set_message(format!(
            "starting provider {} of {}",
            i + 1,
            settings.stages
        ));
        let p = market
            .provider(&provider_name(i), PRICE, |c| {
                c.capacity = capacity;
                c.poll = settings.poll;
                c.tx_timeout = Duration::from_secs(120);
            })
            .await
            .with_context(|| format!("starting provider {i}"))?;
        providers.push(p);
    }
    let recorder = Recorder::start(&market)?;
    let bench = Bench {
        client: market.client(),
        key: market.key("requester").key,
        recorder,
        settings,
        progress: progress.clone(),
    };
    let offers = bench.offers().await?;
    progress.inc(1);

    let single_names = vec![providers[0].address()];
    let single = bench.phase("single", &work, &single_names, &offers).await?;
    progress.inc(1);

    let names: Vec<Address> = providers.iter().map(Provider::address).collect();
    let pipeline = bench.phase("pipeline", &work, &names, &offers).await?;
    progress.inc(1);

    progress.set_message("timing activation pushes over loopback");
    let mut push_ms = Vec::new();
    for (s, bytes) in work.boundaries.iter().enumerate() {
        let next = Client::new(providers[s + 1].endpoint());
        let mut times = Vec::with_capacity(PUSH_REPS);
        for _ in 0..PUSH_REPS {
            let t = Instant::now();
            next.put_blob(bytes.clone())
                .await
                .with_context(|| format!("pushing boundary {s}'s activation"))?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        push_ms.push(percentile(&times, 0.5));
    }
    progress.inc(1);
    drop(providers);
    Ok(Figures {
        single,
        pipeline,
        push_ms,
        capacity,
    })
}

/// The requester side of the bench.
struct Bench {
    client: Client,
    key: PrivateKey,
    recorder: Recorder,
    settings: Settings,
    progress: ProgressBar,
}

impl Bench {
    async fn offers(&self) -> anyhow::Result<Vec<OfferView>> {
        Ok(self
            .client
            .offers()
            .await
            .context("reading /v1/offers")?
            .offers)
    }

    /// Prepares `texts` as a job over `names` (one stage each) with the requester SDK.
    fn prepare(
        &self,
        texts: &[String],
        names: &[Address],
        offers: &[OfferView],
    ) -> anyhow::Result<PreparedJob> {
        let mut req = JobRequest::new(MODEL, JobInput::Texts(texts.to_vec()));
        req.stages = names.len();
        req.deadline = DEADLINE_BLOCKS;
        req.placement = PlacementChoice::Named(names.to_vec());
        Ok(prepare(&req, offers)?)
    }

    /// Uploads what the node lacks of the jobs' blobs.
    async fn upload(&self, jobs: &[PreparedJob]) -> anyhow::Result<()> {
        for j in jobs {
            for (hash, bytes) in [(&j.model_hash, &j.bundle), (&j.input_hash, &j.input)] {
                if self.client.blob_size(hash).await?.is_none() {
                    self.client.put_blob(bytes.clone()).await?;
                }
            }
        }
        Ok(())
    }

    /// Signs one `SubmitJob` per job with consecutive nonces, POSTs them back to back,
    /// and returns each job's id and POST start.
    async fn submit(&self, jobs: &[PreparedJob]) -> anyhow::Result<Vec<(JobId, Instant)>> {
        use commonware_cryptography::Signer as _;
        let me = Address::from(&self.key.public_key());
        let nonce = self.client.nonce(&me).await?;
        // Each job's fee by its work (`Params::required_fee`: its replica and auditor slots).
        let params = self.client.params().await?;
        let txs: Vec<SignedTx> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                SignedTx::sign(
                    &self.key,
                    Tx {
                        chain_id: ChainId(CHAIN),
                        nonce: nonce + i as u64,
                        fee: j.fee(&params),
                        body: j.submit_body(),
                    },
                )
            })
            .collect();
        let mut posted = Vec::with_capacity(txs.len());
        for tx in &txs {
            let at = Instant::now();
            let id = self.client.submit(tx).await?;
            posted.push((id, at));
        }
        let mut out = Vec::with_capacity(posted.len());
        for (id, at) in posted {
            let receipt = self.client.wait(&id, Duration::from_secs(60)).await?;
            ensure!(
                receipt.result.ok,
                "SubmitJob {id} was rejected: {}",
                receipt.result.error.as_deref().unwrap_or("unknown error")
            );
            let job = receipt
                .events
                .iter()
                .find_map(|e| match e.event {
                    Event::JobSubmitted { job, .. } => Some(job),
                    _ => None,
                })
                .with_context(|| format!("no JobSubmitted in the receipt of {id}"))?;
            out.push((job, at));
        }
        Ok(out)
    }

    /// Waits until every job ended, or the timeout.
    async fn wait(&self, what: &str, ids: &[JobId]) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let ended = self.recorder.ended(ids);
            self.progress
                .set_message(format!("{what}: {ended}/{} jobs ended", ids.len()));
            if ended == ids.len() {
                return Ok(());
            }
            if start.elapsed() > self.settings.timeout {
                bail!(
                    "{what}: only {ended} of {} jobs ended within {:?}",
                    ids.len(),
                    self.settings.timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One phase: a warm-up job, then the batch, over the providers `names`.
    async fn phase(
        &self,
        what: &str,
        work: &Workload,
        names: &[Address],
        offers: &[OfferView],
    ) -> anyhow::Result<Phase> {
        self.progress
            .set_message(format!("{what}: preparing {} jobs", work.batch.len()));
        let warm = self.prepare(&work.warmup, names, offers)?;
        let jobs: Vec<PreparedJob> = work
            .batch
            .iter()
            .map(|t| self.prepare(t, names, offers))
            .collect::<anyhow::Result<_>>()?;
        let solo = jobs[0].clone();
        if names.len() > 1 {
            let ranges: Vec<(u32, u32)> = jobs[0]
                .spec
                .stages
                .iter()
                .map(|s| (s.first_layer, s.first_layer + s.layers))
                .collect();
            ensure!(
                ranges == work.ranges,
                "the SDK split {ranges:?}, the reference ran {:?}",
                work.ranges
            );
        }
        self.upload(std::slice::from_ref(&warm)).await?;
        self.upload(&jobs).await?;

        self.progress
            .set_message(format!("{what}: warm-up job (loads the model)"));
        let w = self.submit(std::slice::from_ref(&warm)).await?;
        self.wait(&format!("{what} warm-up"), &[w[0].0]).await?;
        let warm_run = self.run_of(w[0].0, w[0].1).await?;
        ensure!(
            warm_run.status == JobStatus::Completed,
            "{what}: the warm-up job ended {:?}",
            warm_run.status
        );
        let warmup_ms = warm_run.latency_ms().unwrap_or(0.0);

        let blocks_before = self.recorder.log().blocks.len();
        let submitted = self.submit(&jobs).await?;
        let ids: Vec<JobId> = submitted.iter().map(|s| s.0).collect();
        self.wait(what, &ids).await?;
        let mut runs = Vec::with_capacity(submitted.len());
        for &(id, at) in &submitted {
            runs.push(self.run_of(id, at).await?);
        }
        let first = submitted
            .iter()
            .map(|s| s.1)
            .min()
            .unwrap_or_else(Instant::now);
        let last = runs
            .iter()
            .filter_map(|r| r.first(Mark::Completed))
            .map(|s| s.at)
            .max()
            .unwrap_or(first);

        self.progress
            .set_message(format!("{what}: one job alone (nothing queued)"));
        let s = self.submit(std::slice::from_ref(&solo)).await?;
        self.wait(&format!("{what} solo job"), &[s[0].0]).await?;
        let solo = self.run_of(s[0].0, s[0].1).await?;

        let (block_timestamps, lagged) = {
            let log = self.recorder.log();
            let ts = log.blocks[blocks_before..]
                .iter()
                .filter(|b| b.0 >= first && b.0 <= last)
                .map(|b| b.2)
                .collect();
            (ts, log.lagged)
        };
        Ok(Phase {
            stages: names.len(),
            runs,
            elapsed: last.duration_since(first),
            warmup_ms,
            solo,
            block_timestamps,
            lagged,
        })
    }

    /// The job's marks, final status and output (fetched from the node: it must be there
    /// and hash to the agreed result).
    async fn run_of(&self, id: JobId, posted: Instant) -> anyhow::Result<JobRun> {
        let job = self
            .client
            .job(id)
            .await
            .with_context(|| format!("reading job {id}"))?;
        let output = match job.stages.last().and_then(|s| s.result) {
            Some(r) if job.status == JobStatus::Completed => {
                self.client
                    .get_blob(&r.output)
                    .await
                    .with_context(|| format!("fetching job {id}'s output"))?;
                Some(r.output)
            }
            _ => None,
        };
        Ok(JobRun {
            id,
            posted,
            marks: self.recorder.marks(id),
            status: job.status,
            output,
        })
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(args: &Args, work: &Workload, f: &Figures, market_s: f64) -> anyhow::Result<()> {
    let (s, p) = (&f.single, &f.pipeline);
    let ratio = if s.jobs_per_s() > 0.0 {
        p.jobs_per_s() / s.jobs_per_s()
    } else {
        0.0
    };
    let extra_stages = (args.stages - 1) as f64;
    let added = (p.mean_latency_ms() - s.mean_latency_ms()) / extra_stages;
    let added_solo = match (p.solo_ms(), s.solo_ms()) {
        (Some(a), Some(b)) => Some((a - b) / extra_stages),
        _ => None,
    };
    let reference: Vec<Option<String>> = work.reference.iter().map(|h| Some(h.to_hex())).collect();
    let all_completed = s.completed() == args.jobs && p.completed() == args.jobs;
    let solo_identical = [s, p]
        .iter()
        .all(|ph| ph.solo.output.is_some() && ph.solo.output == work.reference.first().copied());
    let identical =
        all_completed && s.outputs() == reference && p.outputs() == reference && solo_identical;
    let compute_ms: Vec<f64> = work.compute_ms.iter().map(|v| mean(v)).collect();
    let report = json!({
        "bench": "pipeline",
        "ratio": ratio,
        "added_latency_per_stage_ms": added,
        "added_latency_per_stage_solo_ms": added_solo,
        "jobs": args.jobs,
        "stages": args.stages,
        "block_interval_ms": args.block_interval_ms,
        "outputs_identical": identical,
        "single": s.json(),
        "pipeline": p.json(),
        "reference_outputs": reference,
        "breakdown": {
            "what": "compute: each stage's layers run in this process before the market started, mean per job; push: the real activation PUT into the next provider's data plane over loopback after the run, median of 3; hop: in the pipeline run, stage i's result agreed on chain minus stage i-1's, mean per job (see pipeline.timeline for its commit and reveal parts)",
            "compute_ms_per_stage": compute_ms,
            "compute_ms_whole_job": compute_ms.iter().sum::<f64>(),
            "activation_bytes_per_hop": &work.boundary_bytes[1..work.boundary_bytes.len() - 1],
            "activation_push_ms_per_hop": f.push_ms,
            "pipeline_hop_ms": p.hop_ms(),
        },
        "workload": {
            "model": MODEL,
            "layers": work.layers,
            "stage_layers": work.ranges.iter().map(|r| [r.0, r.1]).collect::<Vec<_>>(),
            "stage_ops": work.stage_ops,
            "ops_per_job": work.stage_ops.iter().sum::<u64>(),
            "lines_per_job": args.lines,
            "tokens_per_line": LINE_BYTES,
            "input_bytes": work.boundary_bytes[0],
            "output_bytes": work.boundary_bytes.last(),
            "verification": "optimistic",
        },
        "network": {
            "validators": args.validators,
            "block_interval_ms": args.block_interval_ms,
            "challenge_window_blocks": args.challenge_window,
            "reveal_window_blocks": REVEAL_WINDOW,
            "provider_poll_ms": args.provider_poll_ms,
            "provider_capacity": f.capacity,
            "runtime_threads": args.threads,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "market_seconds": market_s,
        },
        "baseline": "the same batch as 1-stage jobs on one provider, on the same market in the same run",
        "note": "all providers share this machine's cores: the ratio is the protocol's cost or gain of splitting a job, not the speed-up of more machines",
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_readable(args, work, f, ratio, (added, added_solo), &compute_ms);
        println!("  outputs identical (single = pipeline = local reference): {identical}");
    }
    ensure!(
        all_completed,
        "not every job completed (single {}/{}, pipeline {}/{})",
        s.completed(),
        args.jobs,
        p.completed(),
        args.jobs
    );
    ensure!(
        identical,
        "the outputs differ between the single run, the pipeline and the local reference"
    );
    Ok(())
}

fn print_readable(
    args: &Args,
    work: &Workload,
    f: &Figures,
    ratio: f64,
    (added, added_solo): (f64, Option<f64>),
    compute_ms: &[f64],
) {
    let (s, p) = (&f.single, &f.pipeline);
    println!(
        "pipeline bench: {} jobs of {} × {} tokens on {MODEL} ({} layers), {} validators, one block every {} ms",
        args.jobs, args.lines, LINE_BYTES, work.layers, args.validators, args.block_interval_ms
    );
    for (name, ph) in [("single", s), ("pipeline", p)] {
        let lat = ph.latencies();
        println!(
            "  {name:<9}{} stage(s)  {:>6.2} jobs/s  latency mean {:>7.0} ms  p50 {:>7.0}  max {:>7.0}  ({}/{} completed)",
            ph.stages,
            ph.jobs_per_s(),
            mean(&lat),
            percentile(&lat, 0.5),
            percentile(&lat, 1.0),
            ph.completed(),
            ph.runs.len()
        );
        println!(
            "  {:<9}one job alone: {} ms",
            "",
            ph.solo_ms()
                .map(|x| format!("{x:.0}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    println!("  ratio (pipeline / single throughput) {ratio:.3}");
    println!(
        "  added latency per extra stage        {added:.0} ms in the batch, {} alone",
        added_solo
            .map(|x| format!("{x:.0} ms"))
            .unwrap_or_else(|| "-".into())
    );
    println!("  where a pipeline stage's time goes:");
    let hops = p.hop_ms();
    for (i, (a, b)) in work.ranges.iter().enumerate() {
        let hop = if i == 0 {
            String::from("-")
        } else {
            hops[i - 1]
                .map(|h| format!("{h:.0} ms"))
                .unwrap_or_else(|| "-".into())
        };
        let push = if i == 0 {
            String::from("-")
        } else {
            format!(
                "{:.1} ms for {} bytes",
                f.push_ms[i - 1],
                work.boundary_bytes[i]
            )
        };
        println!(
            "    stage {i} (layers {a}..{b}): compute {:>6.1} ms, push in {push}, result agreed {hop} after the previous stage's",
            compute_ms[i]
        );
    }
}
