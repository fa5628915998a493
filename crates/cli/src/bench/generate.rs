//! `agentic bench generate`: one prompt generated greedily as a 1-stage job and as a
//! k-stage session ring, on a real local market (validators with consensus, provider
//! daemons with their data planes and session links, all on loopback, in one process):
//! time to first token, decode tokens per second, what each hop of the ring adds, the
//! same ring over emulated wide-area links, and what verifying a generation costs.
//!
//! ```text
//!   LocalMarket: V validators + providers p0 … p(k−1) (loopback links)
//!                              + providers q0 … q(k−1) (each link frame sent RTT/2 late)
//!   requester ── SubmitJob ──▶ chain ──▶ the stage holders join one session
//!       ▲                                    p0 ─Rows─▶ p1 ─Rows─▶ … p(k−1) ─Token─▶ p0
//!       └──── SSE token stream (each token timed here, on arrival) ──┘
//! ```
//!
//! The run, in order (every job: smollm2-135m, the same chat prompt, greedy, `--tokens`
//! tokens with no stop token, the placement named):
//!
//! 1. **Warm-up.** A 4-token k-stage job on p0…p(k−1) and one on q0…q(k−1): each
//!    provider loads the model (untimed).
//! 2. **Rounds** (`--runs`, 5 by default), each:
//!    * **1 stage.** The job on p0 alone, at the audited verification level; the bench
//!      waits for an auditor's prefill replay of it before going on.
//!    * **k stages.** The job on p0…p(k−1), audited: the bench waits for each stage's
//!      auditor (drawn among the q's, the only providers with no role in the job) to
//!      replay it — past stage 0 from the input rows the stage received, checked
//!      against the input claim it published with its commitment.
//!
//!    Two processes sharing two cores make any single timing noisy (one round's speed
//!    ratio has ranged 0.82–0.99 on the same code): the speed figures (`ratio`, `hops`,
//!    `one_stage`, `ring`, the RTT bound's compute) are the round with the median speed
//!    ratio's, the audit figures (`audit`, `audit_one_stage`) the round with the median
//!    audit ratio's, and `runs` lists every round's.
//! 3. **k stages, RTT.** The job on q0…q(k−1), whose daemons run with
//!    `Config::link_delay` = RTT/2: every frame a session link sends is written one
//!    way-delay late (latency, not bandwidth: frames in flight overlap).
//!
//! Figures (times are this process's clocks; the providers run in it too):
//!
//! * `ttft_submit_ms`: first token seen − the start of the `SubmitJob` (its receipt,
//!   matching and the session's start included); `ttft_session_ms`: first token seen −
//!   the moment the last of the job's stages joined the session (`Status::last_session`;
//!   before that the ring cannot turn);
//! * decode rate = (n − 1) / (t_last − t_first) over the tokens as the requester's stream
//!   delivers them; `per_token_ms` its inverse;
//! * `ratio` = k-stage decode rate / 1-stage decode rate, on loopback;
//! * hops: a k-stage ring makes k hops per token (stage i → i+1 carries the rows,
//!   the last stage → stage 0 carries the sampled token), a 1-stage job none, so
//!   `per_hop_ms` = (k-stage per-token time − 1-stage per-token time) / k: everything the
//!   split adds (framing, the links, the threads' hand-offs, the per-stage overhead of a
//!   step), charged to the hops;
//! * RTT bound: `bound_per_token_ms` = 1-stage per-token time (the compute) + k × RTT/2
//!   (each hop is one way); `over_bound_ms` = measured − bound;
//! * audit: the k-stage job's audits (`Status::last_audit` of each stage's auditor): the
//!   longest stage replay (the auditors work at once, each on its own machine) / the
//!   session's wall time (its stages' longest, `Status::last_session`). On this one
//!   machine the providers' replays take turns (`Config::replay_turns`), so each is timed
//!   alone, as on a machine of its own; `all_ratio` is their sum / the same wall time
//!   (all the verification compute). `audit_one_stage`: the 1-stage job's replay (one
//!   prefill of the prompt and the transcript through every layer) / its session;
//! * referee: a dispute ends with the referee re-executing one (step, layer) leaf;
//!   `ops_last_step` = the costliest layer's `Llama::layer_ops` at the last step (one
//!   row), `ops_worst_leaf` the costliest leaf of the whole session (a block at the
//!   prefill, over the prompt's rows), each against the job's metered ops (its stages'
//!   `generation_ops`, what the ledger bills).
//!
//! What this bench is not: every provider shares this machine's cores and only one
//! stage computes at a time, so a ring gains no hardware — it measures what splitting a
//! generation costs, not what more machines would add.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentic_agent::requester::{
    GenerationInput, JobInput, JobRequest, PlacementChoice, PreparedJob, Requester,
};
use agentic_compute::llm::Sampler;
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Amount, JobId};
use agentic_provider::local::{self, LocalMarket, MarketSpec};
use agentic_provider::{AuditTiming, Provider, SessionTiming};
use anyhow::{bail, ensure, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Tokens generated per job (no stop token: every job generates all of them).
    #[arg(long, default_value_t = 64)]
    pub tokens: u32,
    /// Stages of the ring (one provider each).
    #[arg(long, default_value_t = 3)]
    pub stages: usize,
    /// Emulated round trip per hop of the delayed ring (ms; each frame is sent RTT/2
    /// late).
    #[arg(long, default_value_t = 20)]
    pub rtt_ms: u64,
    /// Validators on loopback.
    #[arg(long, default_value_t = 1)]
    pub validators: usize,
    /// Worker threads of the async runtime the whole market shares.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Give up on a job after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Rounds of (the 1-stage job, the ring on loopback), each audited: the figures are
    /// the median round's, every round's are listed under `runs`.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

const MODEL: &str = "smollm2-135m";
const PROMPT: &str = "Name three colours of the rainbow.";
const CHAIN: u64 = 1337;
const PRICE: u128 = 10;
const WARMUP_TOKENS: u32 = 4;
/// The targets of issue 16 (reported next to the figures, not enforced).
const TARGET_RATIO: f64 = 0.85;
const TARGET_PER_HOP_MS: f64 = 2.0;
const TARGET_AUDIT: f64 = 0.1;

pub fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(
        args.tokens >= 2,
        "--tokens must be at least 2 (a decode rate)"
    );
    ensure!(args.stages >= 2, "--stages must be at least 2");
    ensure!(args.validators > 0, "--validators must be positive");
    ensure!(args.runs > 0, "--runs must be positive");
    let progress = ProgressBar::new(4 + 2 * args.runs as u64).with_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg}")
            .context("progress template")?,
    );
    progress.enable_steady_tick(Duration::from_millis(100));

    let dir = std::env::temp_dir().join(format!(
        "agentic-bench-generate-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    let mut users = vec!["requester".to_string()];
    users.extend((0..args.stages).map(|i| format!("p{i}")));
    users.extend((0..args.stages).map(|i| format!("q{i}")));
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut spec = MarketSpec::new(args.validators, &user_refs)
        .param("reveal_window", 500)
        .param("challenge_window", 2)
        .param("match_timeout", 40)
        .param("audit_window", 100);
    spec.chain_id = CHAIN;
    spec.threads = args.threads.max(1);
    let settings = Settings {
        tokens: args.tokens,
        stages: args.stages,
        one_way: Duration::from_micros(args.rtt_ms * 500),
        timeout: Duration::from_secs(args.timeout),
        runs: args.runs,
    };
    progress.set_message(format!(
        "starting {} validator(s) and {} providers",
        args.validators,
        2 * args.stages
    ));
    let started = Instant::now();
    let result = {
        let progress = progress.clone();
        local::run(&dir, spec, move |market| async move {
            measure(market, settings, progress).await
        })
    };
    let _ = std::fs::remove_dir_all(&dir);
    let figures = result.context("the local market")??;
    let market_s = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    report(args, &figures, market_s)
}

/// What `measure` needs from the arguments (owned: it runs on the market's runtime).
#[derive(Clone, Copy)]
struct Settings {
    tokens: u32,
    stages: usize,
    one_way: Duration,
    timeout: Duration,
    runs: usize,
}

/// One generation job as the requester saw it.
struct Run {
    stages: usize,
    job: JobId,
    tokens: Vec<u32>,
    /// From the start of the `SubmitJob` to the first token (ms).
    ttft_submit_ms: f64,
    /// When the first token arrived (ms since the Unix epoch).
    first_unix_ms: f64,
    /// Each token's arrival after the first (ms).
    arrivals_ms: Vec<f64>,
    /// Each stage's session timing, from its provider's status, in stage order.
    sessions: Vec<SessionTiming>,
}

impl Run {
    fn decode_ms(&self) -> f64 {
        self.arrivals_ms.last().copied().unwrap_or(0.0)
    }

    fn tokens_per_s(&self) -> f64 {
        let n = self.arrivals_ms.len();
        if n < 2 || self.decode_ms() <= 0.0 {
            return 0.0;
        }
        (n - 1) as f64 / (self.decode_ms() / 1e3)
    }

    fn per_token_ms(&self) -> f64 {
        let n = self.arrivals_ms.len();
        if n < 2 {
            return 0.0;
        }
        self.decode_ms() / (n - 1) as f64
    }

    /// First token − the last stage's join.
    fn ttft_session_ms(&self) -> f64 {
        let joined = self
            .sessions
            .iter()
            .map(|s| s.started_unix_ms)
            .fold(f64::MIN, f64::max);
        self.first_unix_ms - joined
    }

    fn json(&self) -> Value {
        json!({
            "stages": self.stages,
            "job": self.job.0,
            "tokens": self.tokens.len(),
            "ttft_submit_ms": self.ttft_submit_ms,
            "ttft_session_ms": self.ttft_session_ms(),
            "decode_tokens_per_s": self.tokens_per_s(),
            "per_token_ms": self.per_token_ms(),
            "decode_ms": self.decode_ms(),
            "session_wall_ms": self.sessions.iter().map(|s| s.wall_ms).collect::<Vec<_>>(),
            "token_ids": self.tokens,
        })
    }
}

/// One round: the 1-stage job and the ring on loopback, each with its audits.
struct Round {
    one: Run,
    /// The 1-stage job's audit (a whole-model replay).
    audit: AuditTiming,
    ring: Run,
    /// The ring's audits, one per stage, in stage order.
    ring_audits: Vec<AuditTiming>,
}

impl Round {
    /// Ring tokens/s / 1-stage tokens/s.
    fn speed_ratio(&self) -> f64 {
        ratio(self.ring.tokens_per_s(), self.one.tokens_per_s())
    }

    /// The ring's longest stage replay.
    fn longest_replay_ms(&self) -> f64 {
        self.ring_audits
            .iter()
            .map(|a| a.replay_ms)
            .fold(0.0, f64::max)
    }

    /// The ring's longest stage replay / its session's wall time.
    fn audit_ratio(&self) -> f64 {
        ratio(self.longest_replay_ms(), wall(&self.ring))
    }

    fn json(&self) -> Value {
        json!({
            "one_stage_job": self.one.job.0,
            "ring_job": self.ring.job.0,
            "one_stage_tokens_per_s": self.one.tokens_per_s(),
            "ring_tokens_per_s": self.ring.tokens_per_s(),
            "ratio": self.speed_ratio(),
            "per_hop_ms": (self.ring.per_token_ms() - self.one.per_token_ms())
                / self.ring.stages as f64,
            "stage_replays_ms": self.ring_audits.iter().map(|a| a.replay_ms).collect::<Vec<_>>(),
            "generation_ms": wall(&self.ring),
            "audit_ratio": self.audit_ratio(),
            "one_stage_audit_ratio": ratio(self.audit.replay_ms, wall(&self.one)),
        })
    }
}

/// A session's wall time: its stages' longest (`Status::last_session`).
fn wall(r: &Run) -> f64 {
    r.sessions.iter().map(|s| s.wall_ms).fold(0.0, f64::max)
}

/// The round with the median `ratio` (the lower middle of an even count).
fn median_round(rounds: &[Round], ratio: fn(&Round) -> f64) -> &Round {
    let mut order: Vec<&Round> = rounds.iter().collect();
    order.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    order[(order.len() - 1) / 2]
}

impl Figures {
    /// The speed figures' round (the median speed ratio's) and the audit figures' (the
    /// median audit ratio's).
    fn median_rounds(&self) -> (&Round, &Round) {
        (
            median_round(&self.rounds, Round::speed_ratio),
            median_round(&self.rounds, Round::audit_ratio),
        )
    }
}

struct Figures {
    rounds: Vec<Round>,
    ring_rtt: Run,
    prompt_tokens: u32,
    /// The 1-stage job's metered ops (what the ledger bills for its stages).
    job_ops: u64,
    /// The costliest layer at the last step, and the costliest leaf of the session.
    referee_last_step: u64,
    referee_worst_leaf: u64,
    layers: usize,
    stage_layers: Vec<[u32; 2]>,
}

async fn measure(
    market: LocalMarket,
    s: Settings,
    progress: ProgressBar,
) -> anyhow::Result<Figures> {
    let mut loopback = Vec::new();
    let mut delayed = Vec::new();
    // Replays take turns: each is timed alone, as on a machine of its own.
    let turns = Arc::new(Mutex::new(()));
    for i in 0..s.stages {
        let t = turns.clone();
        loopback.push(
            market
                .provider(&format!("p{i}"), PRICE, move |c| c.replay_turns = Some(t))
                .await?,
        );
        let (one_way, t) = (s.one_way, turns.clone());
        delayed.push(
            market
                .provider(&format!("q{i}"), PRICE, move |c| {
                    c.link_delay = one_way;
                    c.replay_turns = Some(t);
                })
                .await?,
        );
    }
    progress.inc(1);
    let mut req = Requester::new(market.client(), market.key("requester").key);
    req.poll_interval = Duration::from_millis(10);
    let bench = Bench {
        req,
        settings: s,
        progress,
    };
    let names = |ps: &[Provider]| ps.iter().map(Provider::address).collect::<Vec<_>>();
    let (p, q) = (names(&loopback), names(&delayed));
    let everyone: Vec<&Provider> = loopback.iter().chain(&delayed).collect();

    bench.say("warm-up: every provider loads the model");
    bench
        .generate(&p, WARMUP_TOKENS, VerificationLevel::Optimistic, &loopback)
        .await
        .context("warm-up on loopback")?;
    bench
        .generate(&q, WARMUP_TOKENS, VerificationLevel::Optimistic, &delayed)
        .await
        .context("warm-up with link delay")?;
    bench.progress.inc(1);

    let mut rounds = Vec::with_capacity(s.runs);
    let mut prepared = None;
    for round in 1..=s.runs {
        bench.say(&format!("round {round}/{}: 1 stage (audited)", s.runs));
        let (one, p1) = bench
            .generate(
                &p[..1],
                s.tokens,
                VerificationLevel::Audited,
                &loopback[..1],
            )
            .await
            .context("the 1-stage job")?;
        bench.say(&format!("round {round}/{}: 1 stage: its audit", s.runs));
        let audit = bench.audit_of(one.job, 0, &everyone).await?;
        bench.progress.inc(1);
        bench.say(&format!(
            "round {round}/{}: {} stages on loopback (audited)",
            s.runs, s.stages
        ));
        let (ring, _) = bench
            .generate(&p, s.tokens, VerificationLevel::Audited, &loopback)
            .await
            .context("the ring on loopback")?;
        bench.say(&format!(
            "round {round}/{}: {} stages: their audits",
            s.runs, s.stages
        ));
        let mut ring_audits = Vec::with_capacity(s.stages);
        for stage in 0..s.stages as u32 {
            ring_audits.push(bench.audit_of(ring.job, stage, &everyone).await?);
        }
        bench.progress.inc(1);
        rounds.push(Round {
            one,
            audit,
            ring,
            ring_audits,
        });
        prepared = Some(p1);
    }
    let prepared = prepared.context("no round ran")?;
    bench.say(&format!(
        "{} stages, {:?} RTT per hop",
        s.stages,
        s.one_way * 2
    ));
    let (ring_rtt, ring_prepared) = bench
        .generate(&q, s.tokens, VerificationLevel::Optimistic, &delayed)
        .await
        .context("the ring with link delay")?;
    bench.progress.inc(1);

    bench.say("referee cost (the model's layer ops)");
    let g = prepared
        .spec
        .generation
        .context("the job has no generation spec")?;
    let steps = s.tokens;
    let job_ops = prepared
        .spec
        .stages
        .iter()
        .map(|st| st.generation_ops(g.prompt_tokens, steps))
        .sum::<Option<u64>>()
        .context("the job's ops overflow")?;
    let (referee_last_step, referee_worst_leaf, layers) =
        tokio::task::spawn_blocking(move || referee_ops(g.prompt_tokens as usize, steps as usize))
            .await??;
    bench.progress.inc(1);
    drop(loopback);
    drop(delayed);
    Ok(Figures {
        rounds,
        ring_rtt,
        prompt_tokens: g.prompt_tokens,
        job_ops,
        referee_last_step,
        referee_worst_leaf,
        layers,
        stage_layers: ring_prepared
            .spec
            .stages
            .iter()
            .map(|st| [st.first_layer, st.first_layer + st.layers])
            .collect(),
    })
}

/// The costliest leaf at the last step and over the whole session, and the model's
/// trace layers. Step 0 runs the prompt's `p` rows at positions 0…p−1, step t ≥ 1 one
/// row at position p + t − 1; the head computes one row at every step.
fn referee_ops(prompt: usize, steps: usize) -> anyhow::Result<(u64, u64, usize)> {
    let (m, _, _) = agentic_agent::requester::generate::load_llm(MODEL)?;
    let llama = &m.model;
    let layers = llama.config().layers();
    let last = prompt + steps - 2;
    let at_last = (0..layers)
        .map(|l| llama.layer_ops(l, last, 1, 1))
        .max()
        .unwrap_or(0);
    let at_prefill = (0..layers)
        .map(|l| llama.layer_ops(l, 0, prompt, 1))
        .max()
        .unwrap_or(0);
    Ok((at_last, at_last.max(at_prefill), layers))
}

/// The requester side of the bench.
struct Bench {
    req: Requester,
    settings: Settings,
    progress: ProgressBar,
}

impl Bench {
    fn say(&self, what: &str) {
        self.progress.set_message(what.to_string());
    }

    /// Submits the prompt as a job over `names` (one stage each), streams its tokens,
    /// and reads each stage's session timing from its provider.
    async fn generate(
        &self,
        names: &[Address],
        tokens: u32,
        verification: VerificationLevel,
        holders: &[Provider],
    ) -> anyhow::Result<(Run, PreparedJob)> {
        let mut r = JobRequest::new(
            MODEL,
            JobInput::Generate(GenerationInput {
                prompt: PROMPT.into(),
                chat: true,
                max_tokens: tokens,
                sampler: Sampler::Greedy,
                stop: Some(Vec::new()), // no stop token: all `tokens`
            }),
        );
        r.stages = names.len();
        r.max_price = Amount(10_000);
        r.deadline = 400;
        r.verification = verification;
        r.placement = PlacementChoice::Named(names.to_vec());
        let prepared = self.req.prepare(&r).await.context("preparing the job")?;
        let submitted = Instant::now();
        let sub = self
            .req
            .submit_detailed(&prepared)
            .await
            .context("submitting")?;
        let mut arrivals: Vec<Instant> = Vec::with_capacity(tokens as usize);
        let mut first_unix_ms = 0.0;
        let streamed = self
            .req
            .stream(sub.job, self.settings.timeout, |_, _| {
                if arrivals.is_empty() {
                    first_unix_ms = unix_ms();
                }
                arrivals.push(Instant::now());
            })
            .await
            .with_context(|| format!("streaming job {}", sub.job))?;
        ensure!(
            streamed.tokens.len() == tokens as usize,
            "job {}: {} tokens streamed, {tokens} asked",
            sub.job,
            streamed.tokens.len()
        );
        let first = arrivals[0];
        let mut sessions = Vec::with_capacity(holders.len());
        for p in holders {
            sessions.push(self.session_of(sub.job, p).await?);
        }
        sessions.sort_by_key(|t| t.stage);
        Ok((
            Run {
                stages: names.len(),
                job: sub.job,
                tokens: streamed.tokens,
                ttft_submit_ms: ms(first.duration_since(submitted)),
                first_unix_ms,
                arrivals_ms: arrivals
                    .iter()
                    .map(|t| ms(t.duration_since(first)))
                    .collect(),
                sessions,
            },
            prepared,
        ))
    }

    /// `p`'s part of `job`'s session, once it recorded it.
    async fn session_of(&self, job: JobId, p: &Provider) -> anyhow::Result<SessionTiming> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let last = p.status().last_session;
            if let Some(t) = &last {
                if t.job == job {
                    return Ok(t.clone());
                }
            }
            if Instant::now() > until {
                bail!(
                    "job {job}: provider {} recorded no session (its last: {last:?})",
                    p.address()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The replay of the audit of `job`'s stage `stage`, by whichever provider the ledger
    /// drew.
    async fn audit_of(
        &self,
        job: JobId,
        stage: u32,
        providers: &[&Provider],
    ) -> anyhow::Result<AuditTiming> {
        let until = Instant::now() + self.settings.timeout;
        loop {
            for p in providers {
                if let Some(a) = p.status().last_audit {
                    if a.job == job && a.stage == stage {
                        return Ok(a);
                    }
                }
            }
            if Instant::now() > until {
                bail!(
                    "job {job} stage {stage}: no audit replayed within {:?}",
                    self.settings.timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `v` as "0.912 / 0.954 / …".
fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.3}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or_default()
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn report(args: &Args, f: &Figures, market_s: f64) -> anyhow::Result<()> {
    let k = args.stages as f64;
    let one_way_ms = args.rtt_ms as f64 / 2.0;
    let (sp, au) = f.median_rounds();
    let added = sp.ring.per_token_ms() - sp.one.per_token_ms();
    let per_hop = added / k;
    let bound = sp.one.per_token_ms() + k * one_way_ms;
    let one_generation_ms = wall(&au.one);
    let generation_ms = wall(&au.ring);
    let longest = au.longest_replay_ms();
    let all: f64 = au.ring_audits.iter().map(|a| a.replay_ms).sum();
    // The same against the generation a network makes: the session over links with the
    // emulated RTT (what a requester waits for on the internet).
    let rtt_generation_ms = wall(&f.ring_rtt);
    let first = &f.rounds[0].one.tokens;
    let identical = f
        .rounds
        .iter()
        .all(|r| &r.one.tokens == first && &r.ring.tokens == first)
        && &f.ring_rtt.tokens == first;
    let report = json!({
        "bench": "generate",
        "ratio": sp.speed_ratio(),
        "tokens_identical": identical,
        "model": MODEL,
        "prompt": PROMPT,
        "prompt_tokens": f.prompt_tokens,
        "tokens": args.tokens,
        "stages": args.stages,
        "stage_layers": f.stage_layers,
        "layers": f.layers,
        "one_stage": sp.one.json(),
        "ring": sp.ring.json(),
        "ring_rtt": f.ring_rtt.json(),
        "runs": f.rounds.iter().map(Round::json).collect::<Vec<_>>(),
        "hops": {
            "hops_per_token": args.stages,
            "added_per_token_ms": added,
            "per_hop_ms": per_hop,
        },
        "rtt": {
            "rtt_ms": args.rtt_ms,
            "one_way_ms": one_way_ms,
            "per_token_ms": f.ring_rtt.per_token_ms(),
            "tokens_per_s": f.ring_rtt.tokens_per_s(),
            "bound_per_token_ms": bound,
            "bound_tokens_per_s": if bound > 0.0 { 1e3 / bound } else { 0.0 },
            "over_bound_ms": f.ring_rtt.per_token_ms() - bound,
        },
        "audit": {
            "job": au.ring.job.0,
            "stages": au.ring_audits.iter().map(|a| json!({
                "stage": a.stage,
                "replay_ms": a.replay_ms,
                "from_rows": a.from_rows,
            })).collect::<Vec<_>>(),
            "longest_replay_ms": longest,
            "all_replays_ms": all,
            "generation_ms": generation_ms,
            "ratio": au.audit_ratio(),
            "all_ratio": ratio(all, generation_ms),
            "rtt_generation_ms": rtt_generation_ms,
            "ratio_at_rtt": ratio(longest, rtt_generation_ms),
        },
        "audit_one_stage": {
            "job": au.one.job.0,
            "replay_ms": au.audit.replay_ms,
            "generation_ms": one_generation_ms,
            "ratio": ratio(au.audit.replay_ms, one_generation_ms),
        },
        "referee": {
            "ops_last_step": f.referee_last_step,
            "ops_worst_leaf": f.referee_worst_leaf,
            "job_ops": f.job_ops,
            "ratio_last_step": ratio(f.referee_last_step as f64, f.job_ops as f64),
            "ratio_worst_leaf": ratio(f.referee_worst_leaf as f64, f.job_ops as f64),
        },
        "targets": {
            "ratio_at_least": TARGET_RATIO,
            "per_hop_ms_at_most": TARGET_PER_HOP_MS,
            "audit_ratio_at_most": TARGET_AUDIT,
        },
        "network": {
            "validators": args.validators,
            "runtime_threads": args.threads,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "market_seconds": market_s,
        },
        "definitions": {
            "decode_tokens_per_s": "(tokens - 1) / (last token - first token), as the requester's SSE stream delivers them",
            "ttft_submit_ms": "first token - start of the SubmitJob (receipt, matching and session start included)",
            "ttft_session_ms": "first token - when the last of the job's stages joined the session",
            "per_hop_ms": "(ring per-token ms - 1-stage per-token ms) / hops per token; a k-stage ring makes k hops per token (k-1 carrying rows, 1 carrying the token back to stage 0)",
            "bound_per_token_ms": "1-stage per-token ms (the compute) + hops per token x RTT/2 (each hop is one way)",
            "audit.ratio": "the longest of the k-stage job's stage audits (each stage's auditor replays it by one prefill: stage 0 from the transcript, later stages from the input rows they received, checked against the input claim published with the commitment; timed alone, as on a machine of its own) / the session's wall time (loopback)",
            "audit.all_ratio": "the sum of those replays / the same wall time: all the verification compute",
            "audit.ratio_at_rtt": "the longest replay / the wall time of the k-stage session with the emulated RTT per hop (the generation a requester waits for over a network)",
            "runs": "each round's 1-stage job and ring on loopback: the figures above are the median round's (by speed ratio for the speed figures, by audit ratio for the audit figures)",
            "audit_one_stage.ratio": "the 1-stage job's audit (one prefill of the prompt and the transcript through every layer) / that job's session wall time",
            "referee": "ops of the one (step, layer) leaf a referee re-executes (the costliest layer at the last step; the costliest leaf of the session, a block at the prefill) vs the job's metered ops",
        },
        "baseline": "the same prompt as a 1-stage job on one provider, on the same market in the same run",
        "note": "all providers share this machine's cores and one stage computes at a time: the ratio is what splitting a generation costs, not what more machines add",
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_readable(args, f, &report);
    }
    ensure!(
        identical,
        "the 1-stage, ring and delayed-ring runs generated different tokens"
    );
    Ok(())
}

fn print_readable(args: &Args, f: &Figures, r: &Value) {
    println!(
        "generate bench: {MODEL}, {} prompt tokens, {} tokens greedy, {} validator(s)",
        f.prompt_tokens, args.tokens, args.validators
    );
    println!(
        "  {:<22}{:>10}{:>12}{:>12}{:>12}",
        "run", "TTFT ms", "(session)", "tokens/s", "ms/token"
    );
    let rtt = format!("{} stages, {} ms RTT", args.stages, args.rtt_ms);
    let loop_label = format!("{} stages, loopback", args.stages);
    let (sp, au) = f.median_rounds();
    let each = |ratio: fn(&Round) -> f64| list(&f.rounds.iter().map(ratio).collect::<Vec<_>>());
    println!(
        "  (the median of {} rounds; each round's ratio: {}; audit ratio: {})",
        f.rounds.len(),
        each(Round::speed_ratio),
        each(Round::audit_ratio)
    );
    for (name, run) in [
        ("1 stage", &sp.one),
        (loop_label.as_str(), &sp.ring),
        (rtt.as_str(), &f.ring_rtt),
    ] {
        println!(
            "  {name:<22}{:>10.0}{:>12.0}{:>12.2}{:>12.2}",
            run.ttft_submit_ms,
            run.ttft_session_ms(),
            run.tokens_per_s(),
            run.per_token_ms()
        );
    }
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!(
        "  ratio (ring / 1 stage tokens/s)     {:.3}   (target ≥ {TARGET_RATIO})",
        num(&r["ratio"])
    );
    println!(
        "  added per hop (loopback)            {:.2} ms (target ≤ {TARGET_PER_HOP_MS} ms; {} hops per token)",
        num(&r["hops"]["per_hop_ms"]),
        args.stages
    );
    println!(
        "  ring with RTT: {:.2} ms/token vs bound {:.2} (compute + {} × {} ms)",
        f.ring_rtt.per_token_ms(),
        num(&r["rtt"]["bound_per_token_ms"]),
        args.stages,
        num(&r["rtt"]["one_way_ms"])
    );
    let replays: Vec<String> = au
        .ring_audits
        .iter()
        .map(|a| {
            let from = if a.from_rows { "rows" } else { "prefix" };
            format!("{:.0} ({from})", a.replay_ms)
        })
        .collect();
    println!(
        "  audit: stage replays {} ms; longest / generation {:.0} ms = {:.3}   (target ≤ {TARGET_AUDIT}); all / generation = {:.3}",
        replays.join(", "),
        num(&r["audit"]["generation_ms"]),
        num(&r["audit"]["ratio"]),
        num(&r["audit"]["all_ratio"])
    );
    println!(
        "  audit: longest replay / the generation at {} ms RTT ({:.0} ms) = {:.3}",
        args.rtt_ms,
        num(&r["audit"]["rtt_generation_ms"]),
        num(&r["audit"]["ratio_at_rtt"])
    );
    println!(
        "  1-stage audit: replay {:.0} ms / generation {:.0} ms = {:.3}",
        au.audit.replay_ms,
        num(&r["audit_one_stage"]["generation_ms"]),
        num(&r["audit_one_stage"]["ratio"])
    );
    println!(
        "  referee ops / job ops: {:.2e} at the last step, {:.2e} worst leaf (job {} ops)",
        num(&r["referee"]["ratio_last_step"]),
        num(&r["referee"]["ratio_worst_leaf"]),
        f.job_ops
    );
    println!(
        "  tokens identical (1 stage = ring = ring with RTT): {}",
        r["tokens_identical"]
    );
}
