//! `agentic bench verify`: what verification costs, and why cheating does not pay.
//!
//! ```text
//!  1. dispute (real compute, real ledger)        tiny-gpt, one stage of all its layers
//!     cheater perturbs layer k ─▶ Audited job: the drawn auditor commits to its own result,
//!       the cheater reveals, the auditor opens its commitment and disagrees
//!       ─▶ Bisect rounds, both parties opening their real traces with Merkle proofs
//!       ─▶ the referee re-executes layer k alone (compute runtime, metered) ─▶ slash
//!     referee_fraction = ops(layer k) / ops(whole job);   rounds vs ⌈log2⌉
//!  1b. a training dispute (real compute, real ledger)   verify/training.rs
//!     a 4-step stage of tiny-gpt's shape; the cheater corrupts one unit of one step
//!       ─▶ bisect over state hashes ─▶ StepRoots ─▶ bisect over that step's carries
//!       ─▶ the referee re-executes that one unit ─▶ slash      (training_referee)
//!
//!  2. market (agentic_sim, crates/sim: the ledger's own State at Params::default())
//!     N jobs with tiny-gpt's input shapes, metered by the compute runtime (TinyGpt);
//!     four runs on the same jobs: honest (Sampled), the Audited baseline, six single
//!     cheaters × three stakes, five coalition strategies
//!        audit_overhead, max_cheater_profit, honest_earnings, detection_rate, …
//!
//!  3. the inequality at the defaults   p·(1 − c)·S ≥ (1 − p)·V + p·c·(V + F)
//!                                       (State::audit_probability_for, in agentic_sim)
//! ```
//!
//! The market, its cheats and coalitions, and how their profit is reckoned are
//! documented in `crates/sim` (its crate docs and README). This command maps its flags
//! onto [`agentic_sim::Config`], runs the real disputes of parts 1 and 1b through the
//! simulator's [`Ledger`] driver, and prints the simulator's [`agentic_sim::Report`]
//! with them: the JSON is the report's fields plus `bench`, `referee`,
//! `referee_fraction`, `bisection`, `bisection_rounds` and `training_referee`.

use std::cell::RefCell;
use std::collections::HashMap;

use agentic_compute::metering::{InputShape, OpCounter};
use agentic_compute::registry;
use agentic_compute::{Activation, Model};
use agentic_protocol::bisection::max_rounds;
use agentic_protocol::referee::{Referee, RefereeError};
use agentic_protocol::state::DisputePhase;
use agentic_protocol::test_utils::{address_of, job_spec, key, offer, salt_for, GenesisBuilder};
use agentic_protocol::tx::{StageResult, StageSpec};
use agentic_protocol::types::{Amount, VerificationLevel};
use agentic_protocol::{DisputeId, Event, Hash, Leaves, TxBody};
use agentic_sim::{Config, Ledger, Meter, Observer, Tag};
use anyhow::{ensure, Context as _};
use commonware_cryptography::ed25519::PrivateKey;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Jobs in each market run (honest, audited baseline, with cheaters, coalitions).
    #[arg(long, default_value_t = Config::DEFAULT.jobs)]
    pub jobs: usize,
    /// Share of jobs placed on cheating targets in the cheater and coalition runs.
    #[arg(long, default_value_t = Config::DEFAULT.cheaters)]
    pub cheaters: f64,
    /// Jobs submitted per block.
    #[arg(long, default_value_t = Config::DEFAULT.jobs_per_block)]
    pub jobs_per_block: usize,
    /// Honest providers (stakes 10k–1M, prices 8–12, joining over the first half).
    #[arg(long, default_value_t = Config::DEFAULT.providers)]
    pub providers: usize,
    /// A provider's compute cost, base units per mega-op it computes (prices are 8–12).
    #[arg(long, default_value_t = Config::DEFAULT.compute_cost)]
    pub compute_cost: u64,
    /// Identities in the `auditor_sybil` and `echo_replica` coalitions (one works, the
    /// others hope to be drawn as its auditor or as its replacement).
    #[arg(long, default_value_t = Config::DEFAULT.coalition)]
    pub coalition: usize,
    /// Share of jobs that are two-stage pipelines (a cheating target takes the last stage,
    /// an honest provider the first).
    #[arg(long, default_value_t = Config::DEFAULT.pipelines)]
    pub pipelines: f64,
    /// Seed of the PRNG (input shapes, placements, beacons).
    #[arg(long, default_value_t = Config::DEFAULT.seed)]
    pub seed: u64,
}

impl Args {
    /// The simulator's config for these flags.
    fn config(&self) -> Config {
        Config {
            jobs: self.jobs,
            cheaters: self.cheaters,
            jobs_per_block: self.jobs_per_block,
            providers: self.providers,
            compute_cost: self.compute_cost,
            coalition: self.coalition,
            pipelines: self.pipelines,
            seed: self.seed,
        }
    }
}

const MODEL: &str = "tiny-gpt";
/// The input of the real disputes (tiny-gpt's byte tokenizer: one token per byte).
const DISPUTE_TEXT: &str = "Only one layer is ever re-executed by the validators.";
const CHAIN: u64 = 66;

pub fn run(args: &Args) -> anyhow::Result<()> {
    let config = args.config();
    config.validate()?;
    let loaded = registry::load(MODEL).context("load tiny-gpt")?;
    let model = &loaded.model;
    let progress = ProgressBar::new(4 * args.jobs as u64 + model.layers() as u64).with_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            .context("progress template")?,
    );

    progress.set_message("real disputes: one per layer of tiny-gpt");
    let input = loaded
        .encode(&[DISPUTE_TEXT])
        .context("tokenize the dispute input")?;
    let disputes = real_disputes(model, &input, &progress)?;
    progress.set_message("a real training dispute: steps, then one step's units");
    let training = training::training_dispute().context("the training dispute")?;

    let market = agentic_sim::run(&config, &TinyGpt(model), &mut Progress(&progress))
        .context("the market simulation")?;
    progress.finish_and_clear();

    let report = Report::new(market, &disputes, training);
    if args.json {
        // Through a `Value`, whose maps are sorted: the keys print in the order they
        // always have.
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&report)?)?
        );
    } else {
        print_text(&report);
    }
    Ok(())
}

/// The real tiny-gpt as the simulator sees it: its name, layers, and metered ops.
struct TinyGpt<'a>(&'a Model);

impl Meter for TinyGpt<'_> {
    fn name(&self) -> &str {
        MODEL
    }

    fn layers(&self) -> u32 {
        self.0.layers() as u32
    }

    fn layer_ops(
        &self,
        seq_lens: &[usize],
    ) -> Result<Vec<u64>, Box<dyn std::error::Error + Send + Sync>> {
        let shape = InputShape::Tokens {
            seq_lens: seq_lens.to_vec(),
        };
        Ok(self.0.meter(&shape)?)
    }
}

/// The progress bar, told of each market run and its finished jobs.
struct Progress<'a>(&'a ProgressBar);

impl Observer for Progress<'_> {
    fn market_started(&mut self, label: &str, jobs: usize) {
        self.0.set_message(format!("market: {jobs} jobs, {label}"));
    }

    fn jobs_finished(&mut self, n: usize) {
        self.0.inc(n as u64);
    }
}

// ----------------------------------------------------------------------------------------
// Part 1: real disputes
// ----------------------------------------------------------------------------------------

mod training;

/// The referee validators run: re-executes one layer of the real model on an activation
/// fetched by hash from what the parties published, metering it.
struct RuntimeReferee<'a> {
    model: &'a Model,
    model_hash: Hash,
    store: HashMap<Hash, Activation>,
    /// `(layer, metered ops)` of every re-execution.
    calls: RefCell<Vec<(u32, u64)>>,
}

impl Referee for RuntimeReferee<'_> {
    fn execute_layer(&self, model: &Hash, layer: u32, input: &Hash) -> Result<Hash, RefereeError> {
        if *model != self.model_hash {
            return Err(RefereeError::ModelUnavailable);
        }
        let x = self
            .store
            .get(input)
            .ok_or(RefereeError::InputUnavailable)?;
        let ops = OpCounter::new();
        let out = self
            .model
            .run_layer_counted(layer as usize, x, &ops)
            .map_err(|_| RefereeError::LayerOutOfRange(layer))?;
        self.calls.borrow_mut().push((layer, ops.get()));
        Ok(out.hash())
    }
}

/// Every layer's output from `input` (index 0 is the input), with each layer's metered
/// ops; `perturb` corrupts that layer's output (one mantissa bit) and computes the rest
/// from the corrupted value.
fn run_layers(
    model: &Model,
    input: &Activation,
    perturb: Option<usize>,
) -> anyhow::Result<(Vec<Activation>, Vec<u64>)> {
    let mut acts = vec![input.clone()];
    let mut ops = Vec::with_capacity(model.layers());
    for i in 0..model.layers() {
        let counter = OpCounter::new();
        let prev = acts.last().context("an activation")?;
        let mut out = model.run_layer_counted(i, prev, &counter)?;
        ops.push(counter.get());
        if perturb == Some(i) {
            let mut data = out.tensor().data().to_vec();
            let first = data.first_mut().context("a non-empty layer output")?;
            *first = f32::from_bits(first.to_bits() ^ 1);
            out = Activation::from_parts(
                out.kind(),
                out.seq_lens().to_vec(),
                out.ids().to_vec(),
                out.rows(),
                out.width(),
                data,
            )?;
        }
        acts.push(out);
    }
    Ok((acts, ops))
}

/// A party's trace over real activations.
fn real_trace(acts: &[Activation]) -> Leaves {
    Leaves::new(acts.iter().map(Activation::hash).collect())
}

/// One real dispute's figures.
struct RealDispute {
    layer: usize,
    layer_name: String,
    rounds: u32,
    /// `(layer, ops)` of each referee re-execution.
    referee_calls: Vec<(u32, u64)>,
    slashed: u128,
}

struct RealDisputes {
    layers: usize,
    layer_ops: Vec<u64>,
    job_ops: u64,
    /// The whole job run through `Model::run` (the same total, and the trace root the
    /// honest party commits).
    run_ops: u64,
    input_tokens: usize,
    disputes: Vec<RealDispute>,
}

fn real_disputes(
    model: &Model,
    input: &Activation,
    progress: &ProgressBar,
) -> anyhow::Result<RealDisputes> {
    let (honest, layer_ops) = run_layers(model, input, None)?;
    let job_ops: u64 = layer_ops.iter().sum();
    let run = model.run(input.clone())?;
    let honest_trace = real_trace(&honest);
    ensure!(
        run.trace.root.0 == honest_trace.result().trace_root.0,
        "layer-by-layer trace root differs from Model::run's"
    );
    let model_hash = Hash::digest(
        "agentic bench verify model",
        &[registry::TINY_GPT_CONFIG, registry::TINY_GPT_WEIGHTS],
    );
    let mut disputes = Vec::with_capacity(model.layers());
    for k in 0..model.layers() {
        let d = dispute_at(model, model_hash, input, &honest, k)
            .with_context(|| format!("the dispute over layer {k}"))?;
        tracing::info!(
            layer = k,
            rounds = d.rounds,
            referee_ops = ?d.referee_calls,
            "real dispute resolved"
        );
        disputes.push(d);
        progress.inc(1);
    }
    Ok(RealDisputes {
        layers: model.layers(),
        layer_ops,
        job_ops,
        run_ops: run.total_ops(),
        input_tokens: input.seq_lens().iter().sum(),
        disputes,
    })
}

/// A job whose provider corrupts layer `k`; the job is `Audited`, so the other provider
/// recomputes it, disagrees, and both play the game to the referee.
fn dispute_at(
    model: &Model,
    model_hash: Hash,
    input: &Activation,
    honest: &[Activation],
    k: usize,
) -> anyhow::Result<RealDispute> {
    let (cheated, _) = run_layers(model, input, Some(k))?;
    let good = real_trace(honest);
    let bad = real_trace(&cheated);
    let job_ops: u64 = model
        .meter(&input.input_shape())?
        .iter()
        .sum::<u64>()
        .max(1);
    // What the parties published: every activation of both traces.
    let store = honest
        .iter()
        .chain(&cheated)
        .map(|a| (a.hash(), a.clone()))
        .collect();
    let referee = RuntimeReferee {
        model,
        model_hash,
        store,
        calls: RefCell::new(Vec::new()),
    };
    let stage = StageSpec::layers(0, model.layers() as u32, job_ops);
    let mut o = open_audited_dispute(
        &referee,
        model_hash,
        input.hash(),
        stage,
        (bad.result(), good.result()),
        k as u64,
    )?;
    let (ledger, dispute, cheater, auditor) = (&mut o.ledger, o.dispute, &o.cheater, &o.auditor);
    let auditor_addr = address_of(auditor);
    let mut events = std::mem::take(&mut o.events);
    for _ in 0..64 {
        let d = ledger
            .state()
            .dispute(dispute)
            .context("the dispute")?
            .clone();
        if d.phase != DisputePhase::Bisecting {
            break;
        }
        for (party, trace) in [(cheater, &bad), (auditor, &good)] {
            if let Some(tx) = trace.next_move(dispute, &d, address_of(party))? {
                ledger.push(party, tx, Tag::none());
            }
        }
        let out = ledger.produce_ok(&referee)?;
        events.extend(out.events.into_iter().map(|e| e.event));
    }
    let rounds = events
        .iter()
        .filter(|e| matches!(e, Event::BisectionNarrowed { dispute: d, .. } if *d == dispute))
        .count() as u32;
    let winner = events.iter().find_map(|e| match e {
        Event::DisputeResolved {
            dispute: d, winner, ..
        } if *d == dispute => Some(*winner),
        _ => None,
    });
    ensure!(
        winner == Some(Some(auditor_addr)),
        "the dispute over layer {k} ended {winner:?}, not with the auditor winning"
    );
    let slashed = events
        .iter()
        .filter_map(|e| match e {
            Event::Slashed { who, amount, .. } if *who == address_of(cheater) => Some(amount.0),
            _ => None,
        })
        .sum();
    ensure!(slashed > 0, "the cheater was not slashed");
    let referee_calls = referee.calls.into_inner();
    Ok(RealDispute {
        layer: k,
        layer_name: model.layer_name(k),
        rounds,
        referee_calls,
        slashed,
    })
}

/// An audited job whose provider (`cheater`) claims `results.0` and whose drawn auditor
/// claims `results.1`, up to the dispute the auditor's report opens.
struct OpenedDispute {
    ledger: Ledger,
    dispute: DisputeId,
    cheater: PrivateKey,
    auditor: PrivateKey,
    /// Every event so far.
    events: Vec<Event>,
}

/// Runs the real ledger from genesis to the dispute over a one-stage `Audited` job:
/// the cheater commits, the auditor is drawn and commits to its own result, the cheater
/// reveals, the auditor reports and disagrees.
fn open_audited_dispute(
    referee: &dyn Referee,
    model_hash: Hash,
    input: Hash,
    stage: StageSpec,
    results: (StageResult, StageResult),
    seed: u64,
) -> anyhow::Result<OpenedDispute> {
    let (claim, honest) = results;
    let (requester, cheater, auditor) = (key(1), key(2), key(3));
    let genesis = GenesisBuilder::new(CHAIN)
        .account(address_of(&requester), 1_000_000_000_000, 0)
        .account(address_of(&cheater), 1_000_000_000, 100_000)
        .account(address_of(&auditor), 1_000_000_000, 100_000)
        .build();
    let mut ledger = Ledger::new(&genesis, seed)?;
    for p in [&cheater, &auditor] {
        ledger.push(
            p,
            TxBody::RegisterProvider {
                offer: offer(10, 10),
                stake: Amount::ZERO,
            },
            Tag::none(),
        );
    }
    ledger.produce_ok(referee)?;
    let mut spec = job_spec(
        model_hash,
        input,
        &[(stage.layers, stage.ops)],
        10,
        VerificationLevel::Audited,
    );
    spec.stages[0] = stage;
    spec.placement = vec![address_of(&cheater)];
    ledger.push(&requester, TxBody::SubmitJob { spec }, Tag::none());
    let out = ledger.produce_ok(referee)?;
    let job = out
        .events
        .iter()
        .find_map(|e| match e.event {
            Event::JobSubmitted { job, .. } => Some(job),
            _ => None,
        })
        .context("the job was not submitted")?;
    let who = address_of(&cheater);
    let salt = salt_for(&who, job, 0);
    ledger.push(
        &cheater,
        TxBody::CommitResult {
            job,
            stage: 0,
            commitment: claim.commitment(job, 0, &salt, &who),
        },
        Tag::none(),
    );
    // The commitment completes the stage: the block's beacon draws the auditor (an
    // Audited stage always is), who commits to its own result before anyone reveals.
    let out = ledger.produce_ok(referee)?;
    let auditor_addr = address_of(&auditor);
    ensure!(
        out.events.iter().any(|e| matches!(
            e.event,
            Event::AuditAssigned { auditor: a, .. } if a == auditor_addr
        )),
        "the Audited stage got no auditor"
    );
    let audit_salt = salt_for(&auditor_addr, job, 0);
    ledger.push(
        &auditor,
        TxBody::AuditCommit {
            job,
            stage: 0,
            commitment: honest.commitment(job, 0, &audit_salt, &auditor_addr),
        },
        Tag::none(),
    );
    ledger.produce_ok(referee)?;
    ledger.push(
        &cheater,
        TxBody::RevealResult {
            job,
            stage: 0,
            result: claim,
            salt,
        },
        Tag::none(),
    );
    ledger.produce_ok(referee)?;
    ledger.push(
        &auditor,
        TxBody::AuditReport {
            job,
            stage: 0,
            result: honest,
            salt: audit_salt,
        },
        Tag::none(),
    );
    let out = ledger.produce_ok(referee)?;
    let dispute = out
        .events
        .iter()
        .find_map(|e| match e.event {
            Event::DisputeOpened { dispute, .. } => Some(dispute),
            _ => None,
        })
        .context("the auditor's disagreement opened no dispute")?;
    Ok(OpenedDispute {
        ledger,
        dispute,
        cheater,
        auditor,
        events: out.events.into_iter().map(|e| e.event).collect(),
    })
}

// ----------------------------------------------------------------------------------------
// Report
// ----------------------------------------------------------------------------------------

/// Everything `bench verify` prints: the simulator's report and the real disputes.
#[derive(Serialize)]
struct Report {
    bench: &'static str,
    #[serde(flatten)]
    market: agentic_sim::Report,
    /// The largest share of a job's ops the referee re-executed in a real dispute.
    referee_fraction: f64,
    /// The most bisection rounds a real dispute took.
    bisection_rounds: u32,
    referee: RefereeFigures,
    bisection: BisectionFigures,
    /// The training dispute's figures (`verify/training.rs`).
    training_referee: Value,
}

/// The real disputes: what the referee re-executed.
#[derive(Serialize)]
struct RefereeFigures {
    what: &'static str,
    model: &'static str,
    input_tokens: usize,
    layers: usize,
    layer_ops: Vec<u64>,
    job_ops: u64,
    job_ops_model_run: u64,
    layers_reexecuted: usize,
    fraction_max: f64,
    fraction_min: f64,
    fraction_mean: f64,
    disputes: Vec<DisputeFigures>,
}

/// One real dispute.
#[derive(Serialize)]
struct DisputeFigures {
    disputed_layer: usize,
    layer_name: String,
    rounds: u32,
    referee_calls: usize,
    referee_layers: usize,
    referee_layer: Option<u32>,
    referee_ops: u64,
    metered_layer_ops: u64,
    fraction: f64,
    cheater_slashed: f64,
}

/// The real disputes' rounds against the ledger's bound.
#[derive(Serialize)]
struct BisectionFigures {
    rounds: u32,
    rounds_per_dispute: Vec<u32>,
    layers: usize,
    trace_leaves: u32,
    ledger_bound: u32,
    ceil_log2_layers: u32,
    ceil_log2_layers_plus_1: u32,
}

/// `⌈log2 n⌉` (0 for `n ≤ 1`).
fn ceil_log2(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        u32::BITS - (n - 1).leading_zeros()
    }
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().fold(0.0, |a, x| a + x) / xs.len() as f64
    }
}

impl Report {
    fn new(market: agentic_sim::Report, d: &RealDisputes, training: Value) -> Report {
        let job_ops = d.job_ops.max(1) as f64;
        let disputes: Vec<DisputeFigures> = d
            .disputes
            .iter()
            .map(|x| {
                let ops: u64 = x.referee_calls.iter().map(|c| c.1).sum();
                let mut layers: Vec<u32> = x.referee_calls.iter().map(|c| c.0).collect();
                layers.dedup();
                DisputeFigures {
                    disputed_layer: x.layer,
                    layer_name: x.layer_name.clone(),
                    rounds: x.rounds,
                    referee_calls: x.referee_calls.len(),
                    referee_layers: layers.len(),
                    referee_layer: layers.first().copied(),
                    referee_ops: ops,
                    metered_layer_ops: d.layer_ops[x.layer],
                    fraction: ops as f64 / job_ops,
                    cheater_slashed: x.slashed as f64,
                }
            })
            .collect();
        let fractions: Vec<f64> = disputes.iter().map(|x| x.fraction).collect();
        let referee_fraction = fractions.iter().copied().fold(0.0, f64::max);
        let rounds = d.disputes.iter().map(|x| x.rounds).max().unwrap_or(0);
        let leaves = d.layers as u32 + 1;
        Report {
            bench: "verify",
            market,
            referee_fraction,
            bisection_rounds: rounds,
            referee: RefereeFigures {
                what: "ops the referee meters re-executing the disputed layer / ops of the whole job (an audit re-executes all of them); one real dispute per layer",
                model: MODEL,
                input_tokens: d.input_tokens,
                layers: d.layers,
                layer_ops: d.layer_ops.clone(),
                job_ops: d.job_ops,
                job_ops_model_run: d.run_ops,
                layers_reexecuted: disputes.iter().map(|x| x.referee_layers).max().unwrap_or(0),
                fraction_max: referee_fraction,
                fraction_min: fractions.iter().copied().fold(f64::INFINITY, f64::min),
                fraction_mean: mean(&fractions),
                disputes,
            },
            bisection: BisectionFigures {
                rounds,
                rounds_per_dispute: d.disputes.iter().map(|x| x.rounds).collect(),
                layers: d.layers,
                trace_leaves: leaves,
                ledger_bound: max_rounds(leaves),
                ceil_log2_layers: ceil_log2(d.layers as u32),
                ceil_log2_layers_plus_1: ceil_log2(leaves),
            },
            training_referee: training,
        }
    }
}

fn print_text(r: &Report) {
    let m = &r.market;
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!("verify bench ({} jobs per market run)", m.simulation.jobs);
    println!(
        "  audit overhead        {:.4} of job compute (Audited baseline {:.2})   ratio {:.4}",
        m.audit_overhead, m.audit.baseline_audited_overhead, m.ratio,
    );
    println!(
        "  referee               {:.4} of a job's ops at most ({} layer re-executed of {})",
        r.referee_fraction, r.referee.layers_reexecuted, r.referee.layers,
    );
    println!(
        "  bisection             {} rounds (ledger bound {})",
        r.bisection_rounds, r.bisection.ledger_bound,
    );
    let t = &r.training_referee;
    println!(
        "  training referee      {:.4} of a {}-step job's ops (1 unit of {} in step {}; {} + {} rounds; {:.4} of its wall time)",
        f(&t["fraction"]),
        t["steps"],
        t["step_units"],
        t["disputed_step"],
        t["step_rounds"],
        t["unit_rounds"],
        f(&t["time_ratio"]),
    );
    println!(
        "  best cheat            {:.2} per job ({:?}){}; honest {:.2} per stage",
        m.max_cheater_profit,
        m.best_cheat.strategy,
        if m.max_cheater_profit < 0.0 {
            ""
        } else {
            "  ← CHEATING PAYS"
        },
        m.honest_earnings,
    );
    for (name, c) in &m.coalitions {
        println!(
            "  {:<21} {:.2} per job",
            name,
            c.expected_profit_per_job.unwrap_or(0.0)
        );
    }
    println!("  detection rate        {:.4}", m.detection_rate);
    println!(
        "  honest unpaid         {} of {} delivered",
        m.honest_unpaid, m.honest_delivered
    );
    let i = &m.inequality.largest;
    println!(
        "  audit inequality      p·(1−c)·S ≥ (1−p)·V + p·c·(V+F): {:.2} ≥ {:.2} at p = {:.4} \
         (V = {:?}, F = {:?}, stake = {:?}, c = {:?})",
        i.expected_slash,
        i.expected_gain,
        i.p,
        i.stage_value,
        i.audit_fee_bound,
        i.stake,
        i.collusion_share,
    );
}
