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
//!  2. market (the ledger's own State at Params::default())
//!     seeded PRNG ─▶ N jobs (tiny-gpt input shapes, metered ops; a share are two-stage
//!     pipelines) placed on honest providers (stakes 10k–1M, prices 8–12, joining over the
//!     first half of the run) or, with probability f, on a cheating target (round robin).
//!     Every audit is the ledger's: the commit block's beacon decides, the auditor is drawn
//!     by stake among all qualified providers, commits before any replica reveals, and
//!     opens its commitment with its salt; second replicas are drawn by stake too.
//!        honest run      Sampled, f = 0   → audit_overhead = audited stage-ops / stage-ops
//!        baseline run    Audited, f = 0   → every stage re-executed (the same jobs)
//!        cheater run     Sampled, f       → six single cheaters × stakes 10k / 100k / 1M
//!        coalition run   Sampled, f       → five coalition strategies
//!
//!  3. the inequality at the defaults   p·(1 − c)·S ≥ (1 − p)·V + p·c·(V + F)
//!                                       (State::audit_probability_for)
//! ```
//!
//! # The market
//!
//! Every job, audit draw, dispute, slash, claim and payment is the ledger's: the bench only
//! signs the transactions each actor would send (each with the fee its work requires,
//! `Params::required_fee`) and applies blocks (`State::apply_block`; each block's beacon
//! comes from a seeded stream, so the draws vary per block). Traces are the protocol test
//! model's (`test_utils::Trace`: layer `l` maps `x` to `blake3(model, l, x)`, refereed by
//! `TestReferee`) over the real tiny-gpt layer count, with the real metered ops of each
//! job's input shape; the dispute of part 1 is the one that runs the real compute runtime.
//! Nobody challenges from outside, so detection comes from audits alone (a lower bound).
//! Jobs start after one unbonding delay, so stake unbonded at the start is withdrawable.
//!
//! Every provider audits honestly when drawn (a wrong audit is refuted and slashed), except
//! a coalition partner drawn to audit its own coalition's worker. Single cheaters (each a
//! provider that behaves so in every replica slot it takes):
//!
//! | strategy | computes | what it reveals, and in a dispute |
//! |---|---|---|
//! | `wrong_output` | nothing | a made-up output with a consistent made-up trace; plays the game with it |
//! | `perturbed_layer` | every layer | one layer's output corrupted, the rest computed from it |
//! | `smaller_model` | embeddings and head | the decoder blocks skipped (identity) |
//! | `random_output` | nothing | random output and root; its moves carry no valid proof |
//! | `copy_replica` | nothing | (2-replica jobs) commits blindly, then tries to reveal the other replica's result |
//! | `silent_in_dispute` | nothing | like `wrong_output`, but stops answering once disputed |
//!
//! Coalitions (`--coalition k` identities where a strategy has partners):
//!
//! | strategy | who | what it tries, and what the ledger does |
//! |---|---|---|
//! | `auditor_sybil` | 1 worker + k−1 partners, cheapest offers | the worker reveals a made-up result; a partner drawn as its auditor commits to that result and approves it. Its odds are the partners' share of the qualified stake (the draw is by stake, not price) |
//! | `unbond_then_lose` | 1 provider | reveals a made-up result; once an audit is drawn on it, unbonds all it may (the ledger keeps `min_provider_stake` bonded; the rest is still slashable while it unbonds) |
//! | `echo_replica` | 1 withholder + k−1 partners | (2-replica jobs) the withholder commits blindly and keeps its reveal back after the other replica revealed, so a partner drawn for the freed slot could echo the public result: the slot is never refilled |
//! | `penalty_farming` | a requester | posts jobs whose input nobody can fetch, hoping to collect miss penalties; the assigned provider claims the data unavailable (`ClaimUnavailable`), and the requester pays it the penalty instead |
//! | `retire_while_disputed` | 1 provider | reveals a made-up result with withdrawable stake waiting; once disputed, tries to retire, withdraw and unbond (all refused while the dispute is open) |
//!
//! # Profit
//!
//! A party's realized profit on a stage = payments (replica bill, audit fee, its share of a
//! loser's slash, availability compensation) − slash − miss penalty − its transaction fees
//! − compute cost (`--compute-cost` per mega-op it actually computed); a coalition's is the
//! sum over its identities. Each identity's balance plus slashable stake at the end must
//! equal its genesis amount plus these flows (`unreconciled` counts those that do not).
//!
//! The *expected* profit of a cheating stage weighs the outcomes the ledger produced over
//! its audit draw. At the block where the stage's last commitment lands, the bench computes
//! the ledger's audit probability `p` (`State::audit_probability_for`, the maximum over the
//! stage's replicas of reputation, value and slashable stake, as the ledger does) and
//! predicts the draw from the block's beacon; a prediction that disagrees with the ledger's
//! `AuditAssigned` is counted (`audit_predictions_wrong`, 0 when `p` is the ledger's). The
//! branch that happened is the measured profit; the other is the same stage's counterpart
//! (paid `V` when not audited; slashed `S = slash_ppm × slashable stake`, unpaid, when
//! audited), with the fees the strategy paid on its stages of that branch. For
//! `auditor_sybil` the audited branch splits again on `q`, the partners' share of the
//! stake qualified for the draw at that block: approved (worker paid `V`, partner its fee)
//! with probability `q`, slashed otherwise. `max_cheater_profit` is the best expected profit
//! per job over every single (strategy, stake) and every coalition variant.
//!
//! `honest_unpaid` sums, over every honest replica that revealed the stage's true output
//! and every honest auditor whose report was agreed or upheld, its bill less what it was
//! paid. `auditor_commitments_unpaid` counts honest audits committed for a stage that went
//! back to matching before any replica revealed (the audit slot is released unpaid).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use agentic_compute::metering::{InputShape, OpCounter};
use agentic_compute::registry;
use agentic_compute::{Activation, Model};
use agentic_protocol::bisection::max_rounds;
use agentic_protocol::referee::{Referee, RefereeError};
use agentic_protocol::reputation::ReputationParams;
use agentic_protocol::state::{
    BlockOutcome, DisputeKind, DisputePhase, Job, JobStatus, StagePhase,
};
use agentic_protocol::test_utils::{
    address_of, job_spec, key, layer_output, offer, salt_for, GenesisBuilder, TestReferee,
    Trace as TestTrace,
};
use agentic_protocol::tx::{SignedTx, StageResult, StageSpec, Tx};
use agentic_protocol::types::{Amount, VerificationLevel, PPM};
use agentic_protocol::{
    Address, Block, DisputeId, Event, Genesis, Hash, JobId, Leaves, Params, State, TxBody, TxError,
};
use anyhow::{bail, ensure, Context as _};
use commonware_cryptography::ed25519::PrivateKey;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Jobs in each market run (honest, audited baseline, with cheaters, coalitions).
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Share of jobs placed on cheating targets in the cheater and coalition runs.
    #[arg(long, default_value_t = 0.1)]
    pub cheaters: f64,
    /// Jobs submitted per block.
    #[arg(long, default_value_t = 50)]
    pub jobs_per_block: usize,
    /// Honest providers (stakes 10k–1M, prices 8–12, joining over the first half).
    #[arg(long, default_value_t = 30)]
    pub providers: usize,
    /// A provider's compute cost, base units per mega-op it computes (prices are 8–12).
    #[arg(long, default_value_t = 6)]
    pub compute_cost: u64,
    /// Identities in the `auditor_sybil` and `echo_replica` coalitions (one works, the
    /// others hope to be drawn as its auditor or as its replacement).
    #[arg(long, default_value_t = 4)]
    pub coalition: usize,
    /// Share of jobs that are two-stage pipelines (a cheating target takes the last stage,
    /// an honest provider the first).
    #[arg(long, default_value_t = 0.2)]
    pub pipelines: f64,
    /// Seed of the PRNG (input shapes, placements, beacons).
    #[arg(long, default_value_t = 6)]
    pub seed: u64,
}

const MODEL: &str = "tiny-gpt";
/// The input of the real disputes (tiny-gpt's byte tokenizer: one token per byte).
const DISPUTE_TEXT: &str = "Only one layer is ever re-executed by the validators.";
const CHAIN: u64 = 66;
/// Single cheaters' stakes: the minimum, 10×, 100×.
const CHEATER_STAKES: [u128; 3] = [10_000, 100_000, 1_000_000];
const CHEATER_PRICE: u128 = 10;
/// Coalitions post the cheapest offers (honest prices are 8–12).
const COALITION_PRICE: u128 = 7;
/// `auditor_sybil` variants: (worker stake, each partner's stake, worker price). At the
/// cheapest price a new worker's reputation sets its audit probability; at the job's
/// max price its stage is worth enough that the value floor `V / (V + S)` sets it.
const SYBIL_VARIANTS: [(u128, u128, u128); 6] = [
    (10_000, 10_000, COALITION_PRICE),
    (100_000, 100_000, COALITION_PRICE),
    (1_000_000, 1_000_000, COALITION_PRICE),
    (10_000, 1_000_000, COALITION_PRICE),
    (10_000, 10_000, MAX_PRICE),
    (10_000, 1_000_000, MAX_PRICE),
];
/// `echo_replica`: the withholder at the minimum stake, partners at 10×.
const ECHO_VARIANT: (u128, u128) = (10_000, 100_000);
/// `unbond_then_lose` stakes (at the minimum there is nothing it may unbond).
const UNBOND_STAKES: [u128; 2] = [100_000, 1_000_000];
/// `retire_while_disputed` bonded stakes; each also has as much again withdrawable.
const RETIRE_STAKES: [u128; 3] = [10_000, 100_000, 1_000_000];
/// Job max price (the dearest honest provider).
const MAX_PRICE: u128 = 12;
const CAPACITY: u32 = 100_000;
/// Every identity's spendable balance at genesis.
const BALANCE: u128 = 1_000_000_000_000;
/// Blocks a market run may take past its last submission.
const TAIL_BLOCKS: u64 = 1_000;

pub fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(args.jobs > 0, "--jobs must be positive");
    ensure!(args.jobs_per_block > 0, "--jobs-per-block must be positive");
    ensure!(args.providers > 0, "--providers must be positive");
    ensure!(
        args.coalition >= 2,
        "--coalition needs at least 2 identities"
    );
    ensure!(
        (0.0..=1.0).contains(&args.cheaters),
        "--cheaters is a share in 0..=1"
    );
    ensure!(
        (0.0..=1.0).contains(&args.pipelines),
        "--pipelines is a share in 0..=1"
    );
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

    let workload = Workload::generate(args, model)?;
    let honest = Market::run(
        &workload,
        Cast::new(&workload, false, None),
        VerificationLevel::Sampled,
        0.0,
        "honest",
        &progress,
    )?;
    let audited = Market::run(
        &workload,
        Cast::new(&workload, false, None),
        VerificationLevel::Audited,
        0.0,
        "audited baseline",
        &progress,
    )?;
    let cheat = Market::run(
        &workload,
        Cast::new(&workload, true, None),
        VerificationLevel::Sampled,
        args.cheaters,
        "with cheaters",
        &progress,
    )?;
    let coalitions = Market::run(
        &workload,
        Cast::new(&workload, false, Some(args.coalition)),
        VerificationLevel::Sampled,
        args.cheaters,
        "coalitions",
        &progress,
    )?;
    progress.finish_and_clear();

    let mut report = report(
        args,
        &workload,
        &disputes,
        &[&honest, &audited, &cheat, &coalitions],
    )?;
    report["training_referee"] = training;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
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
            .state
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
// The ledger driver
// ----------------------------------------------------------------------------------------

/// What a transaction was for (fee attribution and the refusals we expect).
#[derive(Clone, Copy, Debug)]
struct Tag {
    /// Who signed it (set by [`Ledger::push`]).
    signer: Address,
    /// The fee it carries (set by [`Ledger::push`]).
    fee: u128,
    /// The market stage it belongs to.
    unit: Option<usize>,
    /// The market job it submits.
    job: Option<usize>,
    /// The refusal the ledger must answer with (a cheater's doomed attempt).
    expect: Option<Expect>,
}

/// A doomed attempt and the refusals that answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A copier's reveal of another replica's result against its own commitment.
    CommitmentMismatch,
    /// A random-output cheater's move, which has no valid Merkle proof.
    BadProof,
    /// Unbonding below what the provider must keep bonded.
    UnbondBelowMinimum,
    /// Retiring with open assignments, audits or disputes.
    RetireObligated,
    /// Withdrawing stake while it may still owe a slash.
    WithdrawObligated,
}

impl Expect {
    /// The name under which the refusal is counted, if `e` is the expected one.
    fn refused(self, e: &TxError) -> Option<&'static str> {
        match (self, e) {
            (Expect::CommitmentMismatch, TxError::CommitmentMismatch) => {
                Some("copied_reveal_refused")
            }
            (Expect::BadProof, TxError::BadProof { .. }) => Some("move_without_proof_refused"),
            (Expect::UnbondBelowMinimum, TxError::InsufficientStake { .. }) => {
                Some("unbond_below_minimum_refused")
            }
            (Expect::RetireObligated, TxError::OpenAssignments(_)) => {
                Some("retire_with_open_assignments_refused")
            }
            (Expect::RetireObligated, TxError::OpenObligations { .. }) => {
                Some("retire_with_open_obligations_refused")
            }
            (Expect::WithdrawObligated, TxError::OpenObligations { .. }) => {
                Some("withdraw_with_open_obligations_refused")
            }
            _ => None,
        }
    }
}

impl Tag {
    fn none() -> Self {
        Tag {
            signer: Address::default(),
            fee: 0,
            unit: None,
            job: None,
            expect: None,
        }
    }
    fn unit(u: usize) -> Self {
        Tag {
            unit: Some(u),
            ..Tag::none()
        }
    }
    fn doomed(u: Option<usize>, expect: Expect) -> Self {
        Tag {
            unit: u,
            expect: Some(expect),
            ..Tag::none()
        }
    }
}

/// A ledger applied block by block: signs with per-account nonces (re-read after every
/// block, as refused transactions use none) and the fee each body's work requires; draws
/// each block's beacon from a seeded stream, one block ahead so draws can be predicted.
struct Ledger {
    state: State,
    pending: Vec<SignedTx>,
    tags: Vec<Tag>,
    nonces: BTreeMap<Address, u64>,
    beacons: ChaCha8Rng,
    /// The beacon of the next block.
    next_beacon: [u8; 32],
}

impl Ledger {
    fn new(genesis: &Genesis, seed: u64) -> anyhow::Result<Self> {
        let mut beacons = ChaCha8Rng::seed_from_u64(seed ^ 0xbeac_0000);
        let next_beacon = beacons.gen();
        Ok(Ledger {
            state: State::new(genesis).context("genesis")?,
            pending: Vec::new(),
            tags: Vec::new(),
            nonces: BTreeMap::new(),
            beacons,
            next_beacon,
        })
    }

    fn next_nonce(&mut self, who: Address) -> u64 {
        *self
            .nonces
            .entry(who)
            .or_insert_with(|| self.state.nonce(&who))
    }

    fn sign(&mut self, key: &PrivateKey, body: TxBody, nonce: u64, tag: Tag) {
        let fee = self.state.params().required_fee(&body);
        self.pending.push(SignedTx::sign(
            key,
            Tx {
                chain_id: self.state.chain_id(),
                nonce,
                fee,
                body,
            },
        ));
        self.tags.push(Tag {
            signer: address_of(key),
            fee: fee.0,
            ..tag
        });
    }

    /// Queues a transaction the ledger should accept.
    fn push(&mut self, key: &PrivateKey, body: TxBody, tag: Tag) {
        let who = address_of(key);
        let nonce = self.next_nonce(who);
        self.nonces.insert(who, nonce + 1);
        self.sign(key, body, nonce, tag);
    }

    /// Queues a transaction the ledger must refuse: it takes the signer's next nonce
    /// without using it up (a refusal spends no nonce), so it goes after every accepted
    /// transaction of its signer in the block, and several may share one nonce.
    fn push_doomed(&mut self, key: &PrivateKey, body: TxBody, tag: Tag) {
        let nonce = self.next_nonce(address_of(key));
        self.sign(key, body, nonce, tag);
    }

    /// Applies a block of the queued transactions; returns its outcome and their tags.
    fn produce(&mut self, referee: &dyn Referee) -> anyhow::Result<(BlockOutcome, Vec<Tag>)> {
        let beacon = std::mem::replace(&mut self.next_beacon, self.beacons.gen());
        let block = Block {
            height: self.state.height().plus(1),
            beacon,
            txs: std::mem::take(&mut self.pending),
        };
        let out = self
            .state
            .apply_block(&block, referee)
            .map_err(|e| anyhow::anyhow!("apply block {}: {e:?}", block.height.0))?;
        self.nonces.clear();
        Ok((out, std::mem::take(&mut self.tags)))
    }

    /// [`Ledger::produce`], requiring every transaction to be accepted.
    fn produce_ok(&mut self, referee: &dyn Referee) -> anyhow::Result<BlockOutcome> {
        let (out, _) = self.produce(referee)?;
        if let Some(e) = out.receipts.iter().find_map(|r| r.as_ref().err()) {
            bail!("a transaction was rejected: {e:?}");
        }
        Ok(out)
    }
}

/// The ledger's audit draw for a stage from a block's beacon, uniform in `0..10^6` (the
/// formula of `agentic_protocol::state::jobs::audit_draw`, which the crate does not
/// export): audited when below the stage's audit probability in ppm.
fn audit_draw(beacon: &[u8; 32], job: JobId, stage: u32) -> u32 {
    let h = Hash::digest(
        "agentic audit draw v1",
        &[beacon, &job.0.to_be_bytes(), &stage.to_be_bytes()],
    );
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.0[..8]);
    (u64::from_le_bytes(b) % u64::from(PPM)) as u32
}

// ----------------------------------------------------------------------------------------
// Part 2: the market
// ----------------------------------------------------------------------------------------

/// How a provider behaves (see the module docs' tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Strategy {
    Honest,
    WrongOutput,
    PerturbedLayer,
    SmallerModel,
    RandomOutput,
    CopyReplica,
    SilentInDispute,
    /// `auditor_sybil`'s identity that takes the jobs and lies.
    SybilWorker,
    /// `auditor_sybil`'s identities that hope to audit the worker.
    SybilPartner,
    UnbondThenLose,
    RetireWhileDisputed,
    /// `echo_replica`'s identity that commits blindly and keeps its reveal back.
    EchoWithholder,
    /// `echo_replica`'s identities that hope to fill the freed slot.
    EchoPartner,
}

/// What a provider puts in a replica slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replica {
    /// Computes every layer.
    Honest,
    /// A made-up output with a consistent made-up trace.
    MadeUp,
    /// One layer corrupted, the rest computed from it.
    Perturbed,
    /// The decoder blocks skipped.
    Smaller,
    /// A random output and root.
    Random,
    /// A blind commitment; nothing to reveal of its own.
    Blind,
}

impl Strategy {
    const CHEATS: [Strategy; 6] = [
        Strategy::WrongOutput,
        Strategy::PerturbedLayer,
        Strategy::SmallerModel,
        Strategy::RandomOutput,
        Strategy::CopyReplica,
        Strategy::SilentInDispute,
    ];

    fn name(self) -> &'static str {
        match self {
            Strategy::Honest => "honest",
            Strategy::WrongOutput => "wrong_output",
            Strategy::PerturbedLayer => "perturbed_layer",
            Strategy::SmallerModel => "smaller_model",
            Strategy::RandomOutput => "random_output",
            Strategy::CopyReplica => "copy_replica",
            Strategy::SilentInDispute => "silent_in_dispute",
            Strategy::SybilWorker => "sybil_worker",
            Strategy::SybilPartner => "sybil_partner",
            Strategy::UnbondThenLose => "unbond_then_lose",
            Strategy::RetireWhileDisputed => "retire_while_disputed",
            Strategy::EchoWithholder => "echo_withholder",
            Strategy::EchoPartner => "echo_partner",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Strategy::WrongOutput => {
                "computes nothing; reveals a made-up output with a consistent made-up trace and plays the dispute with it"
            }
            Strategy::PerturbedLayer => {
                "computes every layer, corrupts one layer's output and computes the rest from it"
            }
            Strategy::SmallerModel => {
                "runs a smaller model: embeddings and head only, decoder blocks skipped"
            }
            Strategy::RandomOutput => {
                "computes nothing; reveals a random output and root, so none of its dispute moves carries a valid proof"
            }
            Strategy::CopyReplica => {
                "on 2-replica jobs: computes nothing, commits blindly, then tries to reveal the other replica's result"
            }
            Strategy::SilentInDispute => {
                "computes nothing, reveals a made-up output, and stops answering once disputed"
            }
            _ => "computes every layer and reports it",
        }
    }

    fn replica(self) -> Replica {
        match self {
            Strategy::Honest | Strategy::SybilPartner | Strategy::EchoPartner => Replica::Honest,
            Strategy::WrongOutput
            | Strategy::SilentInDispute
            | Strategy::SybilWorker
            | Strategy::UnbondThenLose
            | Strategy::RetireWhileDisputed => Replica::MadeUp,
            Strategy::PerturbedLayer => Replica::Perturbed,
            Strategy::SmallerModel => Replica::Smaller,
            Strategy::RandomOutput => Replica::Random,
            Strategy::CopyReplica | Strategy::EchoWithholder => Replica::Blind,
        }
    }

    /// Whether it answers dispute rounds with its trace.
    fn plays(self) -> bool {
        self != Strategy::SilentInDispute
            && matches!(
                self.replica(),
                Replica::Honest | Replica::MadeUp | Replica::Perturbed | Replica::Smaller
            )
    }

    /// Whether its jobs ask for two replicas (it needs another replica's reveal).
    fn needs_two_replicas(self) -> bool {
        self.replica() == Replica::Blind
    }
}

/// The coalition strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum CoalitionKind {
    AuditorSybil,
    UnbondThenLose,
    EchoReplica,
    PenaltyFarming,
    RetireWhileDisputed,
}

impl CoalitionKind {
    const ALL: [CoalitionKind; 5] = [
        CoalitionKind::AuditorSybil,
        CoalitionKind::UnbondThenLose,
        CoalitionKind::EchoReplica,
        CoalitionKind::PenaltyFarming,
        CoalitionKind::RetireWhileDisputed,
    ];

    fn name(self) -> &'static str {
        match self {
            CoalitionKind::AuditorSybil => "auditor_sybil",
            CoalitionKind::UnbondThenLose => "unbond_then_lose",
            CoalitionKind::EchoReplica => "echo_replica",
            CoalitionKind::PenaltyFarming => "penalty_farming",
            CoalitionKind::RetireWhileDisputed => "retire_while_disputed",
        }
    }

    fn what(self) -> &'static str {
        match self {
            CoalitionKind::AuditorSybil => {
                "k identities with the cheapest offers: one takes jobs and reveals made-up results, the others hope to be drawn as its auditor and approve them; the auditor is drawn by stake among qualified providers, so their odds are their share of the qualified stake"
            }
            CoalitionKind::UnbondThenLose => {
                "reveals made-up results; once an audit is drawn on it, unbonds everything it may before losing the dispute (the ledger keeps the minimum bonded and slashes unbonding stake too)"
            }
            CoalitionKind::EchoReplica => {
                "on 2-replica jobs one identity commits blindly and withholds its reveal after the other replica revealed, so that a partner drawn for the freed slot could echo the public result; the ledger never refills a slot once a replica revealed"
            }
            CoalitionKind::PenaltyFarming => {
                "a requester posts jobs whose input nobody can fetch, to collect miss penalties; the assigned provider claims the data unavailable and, once the validators cannot fetch it either, the requester compensates it from the escrow"
            }
            CoalitionKind::RetireWhileDisputed => {
                "reveals made-up results with withdrawable stake waiting; once disputed, tries to retire, withdraw and unbond (refused while the dispute is open)"
            }
        }
    }
}

/// A stage's layers and metered ops.
#[derive(Clone, Debug, Default)]
struct Span {
    first: u32,
    layers: u32,
    ops: u64,
    /// Metered ops of each of its layers.
    layer_ops: Vec<u64>,
}

/// One job of the workload (the same in every market run).
#[derive(Clone, Debug)]
struct JobPlan {
    /// Metered ops of each tiny-gpt layer for this input shape.
    layer_ops: Vec<u64>,
    ops: u64,
    input: Hash,
    /// Uniform in [0, 1): below the cheater share, the job goes to a cheating target.
    cheat_draw: f64,
    /// Whether it is a two-stage pipeline.
    pipeline: bool,
    /// Which qualified honest provider takes its first stage.
    pick: u64,
    /// Which other honest provider takes an honest pipeline's second stage.
    pick2: u64,
}

impl JobPlan {
    /// Its stages: every layer in one, or split in two halves.
    fn spans(&self, stages: usize) -> Vec<Span> {
        let layers = self.layer_ops.len() as u32;
        if stages < 2 || layers < 2 {
            return vec![Span {
                first: 0,
                layers,
                ops: self.ops.max(1),
                layer_ops: self.layer_ops.clone(),
            }];
        }
        let cut = layers / 2;
        let ops = |r: std::ops::Range<usize>| self.layer_ops[r].iter().sum::<u64>().max(1);
        vec![
            Span {
                first: 0,
                layers: cut,
                ops: ops(0..cut as usize),
                layer_ops: self.layer_ops[..cut as usize].to_vec(),
            },
            Span {
                first: cut,
                layers: layers - cut,
                ops: ops(cut as usize..layers as usize),
                layer_ops: self.layer_ops[cut as usize..].to_vec(),
            },
        ]
    }
}

struct Workload {
    jobs: Vec<JobPlan>,
    jobs_per_block: usize,
    providers: usize,
    compute_cost: u64,
    seed: u64,
    model: Hash,
    layers: u32,
    /// The block of the first job: one unbonding delay in, so stake unbonded at the
    /// start is withdrawable.
    first_job: u64,
}

impl Workload {
    fn generate(args: &Args, model: &Model) -> anyhow::Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let mut jobs = Vec::with_capacity(args.jobs);
        for i in 0..args.jobs {
            let lines = rng.gen_range(1..=2usize);
            let seq_lens: Vec<usize> = (0..lines).map(|_| rng.gen_range(8..=64)).collect();
            let layer_ops = model.meter(&InputShape::Tokens { seq_lens })?;
            let ops = layer_ops.iter().sum();
            jobs.push(JobPlan {
                layer_ops,
                ops,
                input: Hash::digest("agentic bench verify input", &[&(i as u64).to_be_bytes()]),
                cheat_draw: rng.gen::<f64>(),
                pipeline: rng.gen::<f64>() < args.pipelines,
                pick: rng.gen(),
                pick2: rng.gen(),
            });
        }
        Ok(Workload {
            jobs,
            jobs_per_block: args.jobs_per_block,
            providers: args.providers,
            compute_cost: args.compute_cost,
            seed: args.seed,
            model: Hash::digest("agentic bench verify model", &[MODEL.as_bytes()]),
            layers: model.layers() as u32,
            first_job: Params::default().unbonding_delay + 2,
        })
    }

    fn submit_blocks(&self) -> u64 {
        self.jobs.len().div_ceil(self.jobs_per_block) as u64
    }
}

struct Actor {
    key: PrivateKey,
    addr: Address,
    strategy: Strategy,
    /// The slashable stake it keeps (bonded again after slashes and penalties).
    stake: u128,
    /// Bonded at genesis.
    bonded: u128,
    price: u128,
    /// Block at which it registers.
    join: u64,
    coalition: Option<usize>,
}

/// A coalition strategy's identities.
struct Coalition {
    kind: CoalitionKind,
    /// The identity the jobs are placed on (none for the farming requester).
    worker: Option<usize>,
    partners: Vec<usize>,
    worker_stake: u128,
    partner_stake: u128,
    worker_price: u128,
}

impl Coalition {
    fn members(&self) -> impl Iterator<Item = usize> + '_ {
        self.worker.into_iter().chain(self.partners.iter().copied())
    }
}

/// Where a cheating job goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Provider(usize),
    /// Posted by the farming requester of that coalition, on an honest provider.
    Farmer(usize),
}

/// Everyone in a market run.
struct Cast {
    actors: Vec<Actor>,
    coalitions: Vec<Coalition>,
    targets: Vec<Target>,
}

impl Cast {
    fn new(w: &Workload, singles: bool, coalition: Option<usize>) -> Cast {
        let mut cast = Cast {
            actors: Vec::new(),
            coalitions: Vec::new(),
            targets: Vec::new(),
        };
        let spread = (w.submit_blocks() / 2).max(1);
        for i in 0..w.providers {
            // Stakes 10k, 31.6k, 100k, 316k, 1M; prices 8–12; joining over the first half,
            // three of them before the first job (a pipeline's two providers and an
            // auditor: with fewer, the ledger opens a stage's reveals unaudited).
            let stake = [10_000, 31_623, 100_000, 316_228, 1_000_000][i % 5];
            let late = i.saturating_sub(2) as u64;
            cast.add(
                Strategy::Honest,
                stake,
                8 + ((i * 3) % 5) as u128,
                w.first_job - 1 + (late * spread) / w.providers as u64,
                None,
            );
        }
        if singles {
            for s in Strategy::CHEATS {
                for stake in CHEATER_STAKES {
                    let i = cast.add(s, stake, CHEATER_PRICE, 1, None);
                    cast.targets.push(Target::Provider(i));
                }
            }
        }
        if let Some(k) = coalition {
            for (worker, partner, price) in SYBIL_VARIANTS {
                cast.coalition(
                    CoalitionKind::AuditorSybil,
                    (Strategy::SybilWorker, worker, price),
                    (Strategy::SybilPartner, partner, k - 1),
                    COALITION_PRICE,
                );
            }
            for stake in UNBOND_STAKES {
                cast.coalition(
                    CoalitionKind::UnbondThenLose,
                    (Strategy::UnbondThenLose, stake, CHEATER_PRICE),
                    (Strategy::Honest, 0, 0),
                    CHEATER_PRICE,
                );
            }
            let (worker, partner) = ECHO_VARIANT;
            cast.coalition(
                CoalitionKind::EchoReplica,
                (Strategy::EchoWithholder, worker, COALITION_PRICE),
                (Strategy::EchoPartner, partner, k - 1),
                COALITION_PRICE,
            );
            let c = cast.coalitions.len();
            cast.coalitions.push(Coalition {
                kind: CoalitionKind::PenaltyFarming,
                worker: None,
                partners: Vec::new(),
                worker_stake: 0,
                partner_stake: 0,
                worker_price: 0,
            });
            cast.targets.push(Target::Farmer(c));
            for stake in RETIRE_STAKES {
                cast.coalition(
                    CoalitionKind::RetireWhileDisputed,
                    (Strategy::RetireWhileDisputed, stake, CHEATER_PRICE),
                    (Strategy::Honest, 0, 0),
                    CHEATER_PRICE,
                );
            }
        }
        cast
    }

    /// Adds a provider (keys from seed 101 on, in order) and returns its index.
    fn add(
        &mut self,
        strategy: Strategy,
        stake: u128,
        price: u128,
        join: u64,
        coalition: Option<usize>,
    ) -> usize {
        let k = key(101 + self.actors.len() as u64);
        // A provider that retires while disputed keeps as much again as it bonds
        // withdrawable: bonded twice at genesis, half unbonded at registration.
        let slashable = if strategy == Strategy::RetireWhileDisputed {
            2 * stake
        } else {
            stake
        };
        self.actors.push(Actor {
            addr: address_of(&k),
            key: k,
            strategy,
            stake: slashable,
            bonded: slashable,
            price,
            join,
            coalition,
        });
        self.actors.len() - 1
    }

    fn coalition(
        &mut self,
        kind: CoalitionKind,
        (worker, worker_stake, worker_price): (Strategy, u128, u128),
        (partner, partner_stake, partners): (Strategy, u128, usize),
        price: u128,
    ) {
        let c = self.coalitions.len();
        let w = self.add(worker, worker_stake, worker_price, 1, Some(c));
        let partners = (0..partners)
            .map(|_| self.add(partner, partner_stake, price, 1, Some(c)))
            .collect();
        self.coalitions.push(Coalition {
            kind,
            worker: Some(w),
            partners,
            worker_stake,
            partner_stake,
            worker_price,
        });
        self.targets.push(Target::Provider(w));
    }
}

/// What one party did for one stage, fixed when it first acts.
struct Work {
    /// The trace it can open in a dispute (none for random output and blind commitments).
    trace: Option<TestTrace>,
    /// What it reveals or reports (none for a blind commitment).
    result: Option<StageResult>,
    salt: Hash,
    commitment: Hash,
    computed_ops: u64,
}

/// Which transaction a party sent (each at most once per stage, round or dispute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Act {
    Commit,
    Reveal,
    AuditCommit,
    AuditReport,
    Move,
    Claim,
    Unbond,
    Exit,
}

/// One market job.
struct JobRun {
    id: Option<JobId>,
    units: Vec<usize>,
    /// Posted by the farming requester over an input nobody can fetch.
    farmed: bool,
    /// The farming requester's flows on it.
    escrow: u128,
    refund: u128,
    fee: u128,
    status: Option<JobStatus>,
}

/// The audit draw of a stage at the block its last commitment landed, as the bench
/// computed it from the ledger's state.
#[derive(Clone, Copy, Debug, Default)]
struct Draw {
    p_ppm: u32,
    /// The placed provider's reputation and slashable stake.
    score_ppm: u32,
    slashable: u128,
    /// Its coalition partners' share of the stake qualified for the auditor draw.
    share: f64,
}

/// One stage of a market job.
#[derive(Clone, Debug, Default)]
struct Unit {
    job: usize,
    span: Span,
    /// The stage's honest output.
    truth: Hash,
    /// The provider first matched to replica 0 (the placed one unless it no longer
    /// qualified at matching).
    provider: usize,
    matched: bool,
    /// Whether it was placed for a cheating target.
    cheat: bool,
    /// Replica 0's bill: ops × its price.
    value: u128,
    /// The draw at the commit block that included the placed provider.
    draw: Option<Draw>,
    /// Whether that draw audited the stage.
    audited: Option<bool>,
    /// `auditor_sybil` coalitions' shares of the qualified stake at the latest draw.
    shares: Vec<(usize, f64)>,
    auditor: Option<usize>,
    /// The auditor was a partner of the placed provider's coalition.
    self_audited: bool,
    audit_committed: bool,
    audit_settled: bool,
    revealed: bool,
    dispute: Option<DisputeId>,
    rounds: u32,
    /// The stage's final phase and its job's final status.
    phase: &'static str,
    status: Option<JobStatus>,
}

impl Unit {
    fn failed(&self) -> bool {
        self.status == Some(JobStatus::Failed) && self.phase == "cancelled"
    }
}

/// One party's flows on one stage (base units).
#[derive(Clone, Debug, Default)]
struct Flow {
    auditor: bool,
    /// It approved its own coalition worker's result as the auditor.
    approved_partner: bool,
    price: u128,
    paid: u128,
    audit_fee: u128,
    /// Its share of a loser's slash.
    share: u128,
    compensation: u128,
    slashed: u128,
    penalty: u128,
    fees: u128,
    computed_ops: u64,
    revealed: Option<Hash>,
    reported: bool,
    missed_under_audit: bool,
}

impl Flow {
    fn income(&self) -> i128 {
        (self.paid + self.audit_fee + self.share + self.compensation) as i128
            - (self.slashed + self.penalty) as i128
    }
}

/// A transaction an actor sends next: `(actor, body, tag)`.
type Action = (usize, TxBody, Tag);

/// Figures and state of one market run.
struct Market {
    label: &'static str,
    level: VerificationLevel,
    cheater_share: f64,
    compute_cost: u64,
    params: Params,
    rp: ReputationParams,
    actors: Vec<Actor>,
    coalitions: Vec<Coalition>,
    targets: Vec<Target>,
    index: HashMap<Address, usize>,
    ledger: Ledger,
    referee: TestReferee,
    requester: PrivateKey,
    farmer: PrivateKey,
    registered: Vec<bool>,
    jobs: Vec<JobRun>,
    units: Vec<Unit>,
    flows: HashMap<(usize, usize), Flow>,
    /// Fees of transactions that belong to no stage (registration, top-ups, exits).
    overhead_fees: Vec<u128>,
    by_id: HashMap<JobId, usize>,
    by_dispute: HashMap<DisputeId, usize>,
    active: Vec<JobId>,
    works: HashMap<(JobId, u32, Address), Work>,
    sent: HashSet<(u64, Address, Act, u32)>,
    next_plan: usize,
    next_target: usize,
    // Figures.
    blocks: u64,
    stage_ops: u128,
    audited_ops: u128,
    audited_stages: usize,
    honest_slashed: usize,
    honest_missed: usize,
    /// Refused doomed attempts, by `strategy/refusal`.
    rejections: BTreeMap<String, usize>,
    /// Refused doomed attempts, by actor and refusal.
    refused_by: BTreeMap<(usize, &'static str), usize>,
    disputes: usize,
    predictions: usize,
    predictions_wrong: usize,
    refills_after_reveal: usize,
    partner_refills: usize,
    /// Per `auditor_sybil` coalition: Σ of its qualified-stake share over every audit
    /// drawn in the run, and how many of them drew one of its partners.
    partner_draws: BTreeMap<usize, (f64, usize)>,
    auditor_commitments_unpaid: (usize, u128),
    payer_compensated: u128,
    claims: usize,
    unavailable: usize,
    /// Per actor: accepted unbonds and the amount.
    unbonded: BTreeMap<usize, (usize, u128)>,
    anomalies: Vec<String>,
    unreconciled: Vec<String>,
    supply_ok: bool,
    rounds_bound: u32,
}

impl Market {
    fn run(
        w: &Workload,
        cast: Cast,
        level: VerificationLevel,
        cheater_share: f64,
        label: &'static str,
        progress: &ProgressBar,
    ) -> anyhow::Result<Market> {
        progress.set_message(format!("market: {} jobs, {label}", w.jobs.len()));
        let params = Params::default();
        let (requester, farmer) = (key(1), key(2));
        let mut genesis = GenesisBuilder::new(CHAIN)
            .params(params.clone())
            .account(address_of(&requester), u128::from(u64::MAX), 0)
            .account(address_of(&farmer), u128::from(u64::MAX), 0);
        for a in &cast.actors {
            genesis = genesis.account(a.addr, BALANCE, a.bonded);
        }
        let ledger = Ledger::new(&genesis.build(), w.seed)?;
        let index = cast
            .actors
            .iter()
            .enumerate()
            .map(|(i, a)| (a.addr, i))
            .collect();
        let n = cast.actors.len();
        let mut m = Market {
            label,
            level,
            cheater_share,
            compute_cost: w.compute_cost,
            rp: ReputationParams {
                half_life_blocks: params.reputation_half_life,
                stake_per_value_ppm: params.reputation_stake_ratio,
                ..ReputationParams::default()
            },
            params,
            actors: cast.actors,
            coalitions: cast.coalitions,
            targets: cast.targets,
            index,
            ledger,
            referee: TestReferee::default(),
            requester,
            farmer,
            registered: vec![false; n],
            jobs: Vec::with_capacity(w.jobs.len()),
            units: Vec::with_capacity(w.jobs.len() * 2),
            flows: HashMap::new(),
            overhead_fees: vec![0; n],
            by_id: HashMap::new(),
            by_dispute: HashMap::new(),
            active: Vec::new(),
            works: HashMap::new(),
            sent: HashSet::new(),
            next_plan: 0,
            next_target: 0,
            blocks: 0,
            stage_ops: 0,
            audited_ops: 0,
            audited_stages: 0,
            honest_slashed: 0,
            honest_missed: 0,
            rejections: BTreeMap::new(),
            refused_by: BTreeMap::new(),
            disputes: 0,
            predictions: 0,
            predictions_wrong: 0,
            refills_after_reveal: 0,
            partner_refills: 0,
            partner_draws: BTreeMap::new(),
            auditor_commitments_unpaid: (0, 0),
            payer_compensated: 0,
            claims: 0,
            unavailable: 0,
            unbonded: BTreeMap::new(),
            anomalies: Vec::new(),
            unreconciled: Vec::new(),
            supply_ok: false,
            rounds_bound: max_rounds(w.layers + 1),
        };
        let last_block = w.first_job + w.submit_blocks() + TAIL_BLOCKS;
        loop {
            let height = m.ledger.state.height().0 + 1;
            if height > last_block {
                bail!(
                    "{label}: {} jobs still open after {} blocks",
                    m.active.len(),
                    height - 1
                );
            }
            let topped = m.accounts(height);
            if height >= w.first_job {
                m.submit(w, &topped)?;
            }
            let completing = m.act(w, height, &topped);
            let (out, tags) = m.ledger.produce(&m.referee)?;
            m.blocks = out.height.0;
            m.absorb(&out, &tags, &completing)?;
            progress.inc(m.finish_jobs() as u64);
            if m.next_plan == w.jobs.len() && m.active.is_empty() {
                break;
            }
        }
        m.supply_ok = m.ledger.state.total_supply_check();
        m.reconcile();
        tracing::info!(
            label,
            blocks = m.blocks,
            audited = m.audited_stages,
            disputes = m.disputes,
            "market run finished"
        );
        Ok(m)
    }

    fn flow(&mut self, unit: usize, who: usize) -> &mut Flow {
        self.flows.entry((unit, who)).or_default()
    }

    fn unit_of(&self, job: JobId, stage: u32) -> anyhow::Result<usize> {
        let j = self.by_id.get(&job).context("an event of an unknown job")?;
        self.jobs[*j]
            .units
            .get(stage as usize)
            .copied()
            .context("an event of an unknown stage")
    }

    /// Registrations due this block, and bonds that restore each provider's slashable
    /// stake after slashes and penalties (returned per address, as they apply before
    /// anything else in the block).
    fn accounts(&mut self, height: u64) -> HashMap<Address, u128> {
        for (i, a) in self.actors.iter().enumerate() {
            if !self.registered[i] && a.join <= height {
                self.registered[i] = true;
                self.ledger.push(
                    &a.key,
                    TxBody::RegisterProvider {
                        offer: offer(a.price, CAPACITY),
                        stake: Amount::ZERO,
                    },
                    Tag::none(),
                );
                if a.strategy == Strategy::RetireWhileDisputed {
                    self.ledger.push(
                        &a.key,
                        TxBody::Unbond {
                            amount: Amount(a.stake / 2),
                        },
                        Tag::none(),
                    );
                }
            }
        }
        let mut topped = HashMap::new();
        for a in &self.actors {
            let slashable = self.ledger.state.slashable(&a.addr).0;
            if slashable < a.stake {
                topped.insert(a.addr, a.stake - slashable);
                self.ledger.push(
                    &a.key,
                    TxBody::Bond {
                        amount: Amount(a.stake - slashable),
                    },
                    Tag::none(),
                );
            }
        }
        topped
    }

    /// This block's new jobs.
    fn submit(&mut self, w: &Workload, topped: &HashMap<Address, u128>) -> anyhow::Result<()> {
        let state = &self.ledger.state;
        let min_stake = self.params.min_provider_stake.0;
        let qualified = |i: usize| {
            let a = &self.actors[i];
            self.registered[i]
                && state.provider(&a.addr).is_some_and(|p| !p.retired)
                && state.account(&a.addr).bonded.0 + topped.get(&a.addr).unwrap_or(&0) >= min_stake
        };
        let honest: Vec<usize> = (0..self.actors.len())
            .filter(|&i| self.actors[i].strategy == Strategy::Honest && qualified(i))
            .collect();
        ensure!(
            !honest.is_empty(),
            "{}: no honest provider registered",
            self.label
        );
        let mut submissions = Vec::new();
        let end = (self.next_plan + w.jobs_per_block).min(w.jobs.len());
        while self.next_plan < end {
            let p = self.next_plan;
            let plan = &w.jobs[p];
            let mut target = None;
            if plan.cheat_draw < self.cheater_share && !self.targets.is_empty() {
                let n = self.targets.len();
                for k in 0..n {
                    let t = self.targets[(self.next_target + k) % n];
                    if match t {
                        Target::Provider(i) => qualified(i),
                        Target::Farmer(_) => true,
                    } {
                        target = Some(t);
                        self.next_target = (self.next_target + k + 1) % n;
                        break;
                    }
                }
            }
            let farmed = matches!(target, Some(Target::Farmer(_)));
            let n = honest.len();
            let stages = if plan.pipeline && !farmed && (n >= 2 || target.is_some()) {
                2
            } else {
                1
            };
            let first_pick = (plan.pick % n as u64) as usize;
            let first = honest[first_pick];
            let placement: Vec<usize> = match (stages, target) {
                (1, Some(Target::Provider(i))) => vec![i],
                (1, _) => vec![first],
                (_, Some(Target::Provider(i))) => vec![first, i],
                _ => {
                    let mut second = (plan.pick2 % (n as u64 - 1)) as usize;
                    if second >= first_pick {
                        second += 1;
                    }
                    vec![first, honest[second]]
                }
            };
            let replicas = match target {
                Some(Target::Provider(i)) if self.actors[i].strategy.needs_two_replicas() => 2,
                _ => 1,
            };
            let input = if farmed {
                let input = Hash::digest(
                    "agentic bench verify unavailable input",
                    &[&(p as u64).to_be_bytes()],
                );
                self.referee.unavailable_inputs.insert(input);
                input
            } else {
                plan.input
            };
            let spans = plan.spans(stages);
            let shape: Vec<(u32, u64)> = spans.iter().map(|s| (s.layers, s.ops)).collect();
            let mut spec = job_spec(w.model, input, &shape, MAX_PRICE, self.level);
            spec.requirements.replicas = replicas;
            spec.placement = placement.iter().map(|&i| self.actors[i].addr).collect();
            let j = self.jobs.len();
            let mut units = Vec::with_capacity(spans.len());
            let mut x = input;
            let last = spans.len() - 1;
            for (s, span) in spans.into_iter().enumerate() {
                let truth = TestTrace::honest(&w.model, span.first, span.layers, x)
                    .result()
                    .output;
                x = truth;
                let provider = placement[s];
                self.stage_ops += u128::from(span.ops);
                units.push(self.units.len());
                self.units.push(Unit {
                    job: j,
                    value: Amount::cost(span.ops, Amount(self.actors[provider].price))
                        .unwrap_or_default()
                        .0,
                    span,
                    truth,
                    provider,
                    cheat: s == last && matches!(target, Some(Target::Provider(_))),
                    phase: "open",
                    ..Unit::default()
                });
            }
            self.jobs.push(JobRun {
                id: None,
                units,
                farmed,
                escrow: 0,
                refund: 0,
                fee: 0,
                status: None,
            });
            submissions.push((farmed, spec, j));
            self.next_plan += 1;
        }
        for (farmed, spec, j) in submissions {
            let who = if farmed {
                self.farmer.clone()
            } else {
                self.requester.clone()
            };
            self.ledger.push(
                &who,
                TxBody::SubmitJob { spec },
                Tag {
                    job: Some(j),
                    ..Tag::none()
                },
            );
        }
        Ok(())
    }

    /// Every party's next move on the open jobs; returns the stages whose last commitment
    /// goes in this block, with the bench's prediction of the ledger's audit draw and
    /// whether the draw is the one the placed provider takes part in.
    fn act(
        &mut self,
        w: &Workload,
        height: u64,
        topped: &HashMap<Address, u128>,
    ) -> Vec<(usize, bool, bool)> {
        let state = &self.ledger.state;
        let mut regular: Vec<Action> = Vec::new();
        let mut exits: Vec<Action> = Vec::new();
        let mut doomed: Vec<Action> = Vec::new();
        let mut completing = Vec::new();
        let mut unbonding: HashMap<Address, u128> = HashMap::new();
        let min_stake = self.params.min_provider_stake.0;
        for &id in &self.active {
            let Some(job) = state.job(id) else { continue };
            let jr = self.by_id[&id];
            if self.jobs[jr].farmed {
                // The assigned provider cannot fetch the input: it claims so, once.
                let claimant = job
                    .stages
                    .iter()
                    .flat_map(|s| s.slots.iter())
                    .filter_map(|s| s.assignment.as_ref())
                    .find(|a| a.commitment.is_none());
                if let (None, JobStatus::Active, Some(a)) = (job.claim, job.status, claimant) {
                    if self.sent.insert((id.0, a.provider, Act::Claim, 0)) {
                        regular.push((
                            self.index[&a.provider],
                            TxBody::ClaimUnavailable { job: id },
                            Tag::unit(self.jobs[jr].units[0]),
                        ));
                    }
                }
                continue;
            }
            for (s, st) in job.stages.iter().enumerate() {
                let stage = s as u32;
                let u = self.jobs[jr].units[s];
                // The stage's input: the job's, or the previous stage's agreed output once
                // no dispute hangs over it.
                let input = if s == 0 {
                    Some(job.spec.input)
                } else {
                    let prev = &job.stages[s - 1];
                    prev.result
                        .filter(|_| !matches!(prev.phase, StagePhase::Disputed { .. }))
                        .map(|r| r.output)
                };
                match st.phase {
                    StagePhase::Running { reveal_deadline } => {
                        let Some(input) = input else { continue };
                        let span = self.units[u].span.clone();
                        let revealed: Vec<StageResult> = st
                            .slots
                            .iter()
                            .filter_map(|x| x.assignment.as_ref()?.result)
                            .collect();
                        let mut committing = false;
                        let mut complete = st.slots.iter().all(|x| x.assignment.is_some());
                        for a in st.slots.iter().filter_map(|x| x.assignment.as_ref()) {
                            let who = self.index[&a.provider];
                            let strategy = self.actors[who].strategy;
                            let work =
                                self.works
                                    .entry((id, stage, a.provider))
                                    .or_insert_with(|| {
                                        make_work(strategy, &a.provider, id, stage, input, &span, w)
                                    });
                            if a.commitment.is_none() {
                                if self.sent.insert((id.0, a.provider, Act::Commit, stage)) {
                                    self.flows.entry((u, who)).or_default().computed_ops =
                                        work.computed_ops;
                                    regular.push((
                                        who,
                                        TxBody::CommitResult {
                                            job: id,
                                            stage,
                                            commitment: work.commitment,
                                        },
                                        Tag::unit(u),
                                    ));
                                    committing = true;
                                } else {
                                    complete = false;
                                }
                                continue;
                            }
                            if reveal_deadline.is_none()
                                || a.result.is_some()
                                || !self.sent.insert((id.0, a.provider, Act::Reveal, stage))
                            {
                                continue;
                            }
                            match (work.result, strategy) {
                                (None, Strategy::CopyReplica) => {
                                    // Copy once the other replica has revealed.
                                    match revealed.first() {
                                        Some(copied) => doomed.push((
                                            who,
                                            TxBody::RevealResult {
                                                job: id,
                                                stage,
                                                result: *copied,
                                                salt: work.salt,
                                            },
                                            Tag::doomed(Some(u), Expect::CommitmentMismatch),
                                        )),
                                        None => {
                                            self.sent.remove(&(
                                                id.0,
                                                a.provider,
                                                Act::Reveal,
                                                stage,
                                            ));
                                        }
                                    }
                                }
                                // Keeps its reveal back (it has nothing of its own).
                                (None, _) => {}
                                (Some(result), _) => regular.push((
                                    who,
                                    TxBody::RevealResult {
                                        job: id,
                                        stage,
                                        result,
                                        salt: work.salt,
                                    },
                                    Tag::unit(u),
                                )),
                            }
                        }
                        if committing && complete {
                            // The last commitment: this block's beacon draws the audit.
                            let p = audit_probability(
                                state,
                                &self.params,
                                &self.rp,
                                job,
                                s,
                                height,
                                topped,
                            );
                            let predicted = audit_draw(&self.ledger.next_beacon, id, stage) < p;
                            let shares =
                                sybil_shares(state, &self.actors, &self.coalitions, job, topped);
                            let unit = &mut self.units[u];
                            let placed = self.actors[unit.provider].addr;
                            let first = unit.draw.is_none()
                                && st.slots.iter().any(|x| {
                                    x.assignment.as_ref().is_some_and(|a| a.provider == placed)
                                });
                            if first {
                                let top = topped.get(&placed).copied().unwrap_or(0);
                                let bonded = state.account(&placed).bonded.0 + top;
                                let own = self.actors[unit.provider].coalition;
                                unit.draw = Some(Draw {
                                    p_ppm: p,
                                    score_ppm: state
                                        .provider(&placed)
                                        .map(|x| x.reputation.score_ppm(height, bonded, &self.rp))
                                        .unwrap_or(0),
                                    slashable: state.slashable(&placed).0 + top,
                                    share: shares
                                        .iter()
                                        .find(|(c, _)| Some(*c) == own)
                                        .map_or(0.0, |x| x.1),
                                });
                            }
                            unit.shares = shares;
                            completing.push((u, predicted, first));
                        }
                        let Some(audit) = &st.audit else { continue };
                        // The drawn auditor commits before anyone reveals.
                        if audit.commitment.is_none()
                            && reveal_deadline.is_none()
                            && self
                                .sent
                                .insert((id.0, audit.auditor, Act::AuditCommit, stage))
                        {
                            let who = self.index[&audit.auditor];
                            let work = audit_work(
                                &self.actors,
                                &self.coalitions,
                                &self.works,
                                who,
                                (id, stage, st),
                                input,
                                &span,
                                w,
                            );
                            let f = self.flows.entry((u, who)).or_default();
                            f.computed_ops = work.computed_ops;
                            regular.push((
                                who,
                                TxBody::AuditCommit {
                                    job: id,
                                    stage,
                                    commitment: work.commitment,
                                },
                                Tag::unit(u),
                            ));
                            self.works.insert((id, stage, audit.auditor), work);
                        }
                        // unbond_then_lose: an audit is drawn on it; it unbonds what it may.
                        for a in st.slots.iter().filter_map(|x| x.assignment.as_ref()) {
                            let who = self.index[&a.provider];
                            if self.actors[who].strategy != Strategy::UnbondThenLose
                                || !self.sent.insert((id.0, a.provider, Act::Unbond, stage))
                            {
                                continue;
                            }
                            // Several of its stages may be audited in one block.
                            let planned = unbonding.entry(a.provider).or_default();
                            let bonded = state.account(&a.provider).bonded.0
                                + topped.get(&a.provider).unwrap_or(&0)
                                - *planned;
                            let keep = min_stake.max(job.spec.requirements.min_stake.0);
                            if bonded > keep {
                                *planned += bonded - keep;
                                exits.push((
                                    who,
                                    TxBody::Unbond {
                                        amount: Amount(bonded - keep),
                                    },
                                    Tag::unit(u),
                                ));
                            }
                            // …and then the rest, below the minimum.
                            doomed.push((
                                who,
                                TxBody::Unbond {
                                    amount: Amount(bonded.min(keep).max(1)),
                                },
                                Tag::doomed(Some(u), Expect::UnbondBelowMinimum),
                            ));
                        }
                    }
                    StagePhase::Auditing { auditor, .. } => {
                        if !self.sent.insert((id.0, auditor, Act::AuditReport, stage)) {
                            continue;
                        }
                        if let Some(result) = self
                            .works
                            .get(&(id, stage, auditor))
                            .and_then(|x| x.result.map(|r| (r, x.salt)))
                        {
                            regular.push((
                                self.index[&auditor],
                                TxBody::AuditReport {
                                    job: id,
                                    stage,
                                    result: result.0,
                                    salt: result.1,
                                },
                                Tag::unit(u),
                            ));
                        }
                    }
                    StagePhase::Disputed { dispute } => {
                        let Some(d) = state.dispute(dispute) else {
                            continue;
                        };
                        if d.phase != DisputePhase::Bisecting {
                            continue;
                        }
                        // retire_while_disputed, as the defendant, tries every way out.
                        let party = d.defendant;
                        let who = self.index[&party];
                        if self.actors[who].strategy == Strategy::RetireWhileDisputed
                            && self.sent.insert((dispute.0, party, Act::Exit, 0))
                        {
                            doomed.push((
                                who,
                                TxBody::Retire,
                                Tag::doomed(Some(u), Expect::RetireObligated),
                            ));
                            let acct = state.account(&party);
                            if acct.withdrawable.0 > 0 {
                                doomed.push((
                                    who,
                                    TxBody::Withdraw {
                                        amount: acct.withdrawable,
                                    },
                                    Tag::doomed(Some(u), Expect::WithdrawObligated),
                                ));
                            }
                            let bonded = acct.bonded.0 + topped.get(&party).unwrap_or(&0);
                            if bonded > 0 {
                                doomed.push((
                                    who,
                                    TxBody::Unbond {
                                        amount: Amount(bonded),
                                    },
                                    Tag::doomed(Some(u), Expect::UnbondBelowMinimum),
                                ));
                            }
                        }
                        if d.game.midpoint().is_none() {
                            continue;
                        }
                        let round = d.game.round();
                        for (party, moved) in [
                            (d.defendant, d.defendant_move.is_some()),
                            (d.challenger, d.challenger_move.is_some()),
                        ] {
                            if moved || !self.sent.insert((dispute.0, party, Act::Move, round)) {
                                continue;
                            }
                            let who = self.index[&party];
                            let strategy = self.actors[who].strategy;
                            let auditor = self.flows.get(&(u, who)).is_some_and(|f| f.auditor);
                            let trace = self
                                .works
                                .get(&(id, stage, party))
                                .and_then(|x| x.trace.clone());
                            match (auditor || strategy.plays(), trace) {
                                (true, Some(t)) => {
                                    if let Ok(Some(tx)) = t.next_move(dispute, d, party) {
                                        regular.push((who, tx, Tag::unit(u)));
                                    }
                                }
                                _ if !auditor && strategy == Strategy::RandomOutput => {
                                    // It answers, but nothing it says opens its root.
                                    let depth =
                                        (u32::BITS - d.game.leaves().leading_zeros()) as usize;
                                    let junk = Hash::digest(
                                        "agentic bench verify junk",
                                        &[&dispute.0.to_be_bytes(), &round.to_be_bytes()],
                                    );
                                    doomed.push((
                                        who,
                                        TxBody::Bisect {
                                            dispute,
                                            leaf: junk,
                                            proof: vec![junk; depth],
                                        },
                                        Tag::doomed(Some(u), Expect::BadProof),
                                    ));
                                }
                                _ => {} // silent
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        // Accepted transactions first: commitments (so the draws above see the reputation
        // and stake the ledger sees: an agreed audit report raises its auditor's score),
        // the other stage moves, exits; then the doomed ones, which spend no nonce.
        let (commits, moves): (Vec<Action>, Vec<Action>) = regular
            .into_iter()
            .partition(|a| matches!(a.1, TxBody::CommitResult { .. }));
        for (who, body, tag) in commits.into_iter().chain(moves).chain(exits) {
            let k = self.actors[who].key.clone();
            self.ledger.push(&k, body, tag);
        }
        for (who, body, tag) in doomed {
            let k = self.actors[who].key.clone();
            self.ledger.push_doomed(&k, body, tag);
        }
        completing
    }

    /// Receipts and events of a block.
    fn absorb(
        &mut self,
        out: &BlockOutcome,
        tags: &[Tag],
        completing: &[(usize, bool, bool)],
    ) -> anyhow::Result<()> {
        let farmer = address_of(&self.farmer);
        let mut unexpected: Vec<String> = Vec::new();
        for (receipt, tag) in out.receipts.iter().zip(tags) {
            match receipt {
                Ok(()) => {
                    if let Some(&who) = self.index.get(&tag.signer) {
                        match tag.unit {
                            Some(u) => self.flow(u, who).fees += tag.fee,
                            None => self.overhead_fees[who] += tag.fee,
                        }
                    } else if tag.signer == farmer {
                        if let Some(j) = tag.job {
                            self.jobs[j].fee += tag.fee;
                        }
                    }
                }
                Err(e) => {
                    let strategy = self
                        .index
                        .get(&tag.signer)
                        .map_or("requester", |&i| self.actors[i].strategy.name());
                    match tag.expect.and_then(|x| x.refused(e)) {
                        Some(name) => {
                            *self
                                .rejections
                                .entry(format!("{strategy}/{name}"))
                                .or_default() += 1;
                            if let Some(&i) = self.index.get(&tag.signer) {
                                *self.refused_by.entry((i, name)).or_default() += 1;
                            }
                        }
                        None => unexpected
                            .push(format!("{strategy}: {e:?} (expected {:?})", tag.expect)),
                    }
                }
            }
        }
        ensure!(
            unexpected.is_empty(),
            "{}: unexpected rejections at block {}: {unexpected:?}",
            self.label,
            out.height.0
        );
        let mut audited_now: HashSet<usize> = HashSet::new();
        // Slashes wait for the event that says what they were for.
        let mut slashes: Vec<(Address, u128, u128)> = Vec::new();
        for rec in &out.events {
            match &rec.event {
                Event::JobSubmitted { job, escrow, .. } => {
                    let j = rec
                        .tx
                        .and_then(|t| tags.get(t as usize))
                        .and_then(|t| t.job)
                        .context("a job from an untagged transaction")?;
                    self.jobs[j].id = Some(*job);
                    self.jobs[j].escrow = escrow.0;
                    self.by_id.insert(*job, j);
                    self.active.push(*job);
                }
                Event::StageAssigned {
                    job,
                    stage,
                    replica,
                    provider,
                    price,
                    ..
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    let who = self.index[provider];
                    if self.units[u].revealed {
                        self.refills_after_reveal += 1;
                        if self.actors[who].strategy == Strategy::EchoPartner {
                            self.partner_refills += 1;
                        }
                    }
                    let unit = &mut self.units[u];
                    if *replica == 0 && !unit.matched {
                        // A placed provider that no longer qualified when matched is
                        // replaced by the matcher: the stage is its replacement's.
                        unit.matched = true;
                        unit.provider = who;
                        unit.value = Amount::cost(unit.span.ops, *price).unwrap_or_default().0;
                    }
                    self.flow(u, who).price = price.0;
                }
                Event::AuditAssigned {
                    job,
                    stage,
                    auditor,
                    ..
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    let who = self.index[auditor];
                    audited_now.insert(u);
                    self.audited_stages += 1;
                    self.audited_ops += u128::from(self.units[u].span.ops);
                    for &(c, q) in &self.units[u].shares {
                        let e = self.partner_draws.entry(c).or_default();
                        e.0 += q;
                        if self.coalitions[c].partners.contains(&who) {
                            e.1 += 1;
                        }
                    }
                    // A partner drawn to audit a stage its coalition's worker holds.
                    let approves = self.actors[who].strategy == Strategy::SybilPartner
                        && self.actors[who]
                            .coalition
                            .and_then(|c| self.coalitions[c].worker)
                            .is_some_and(|wk| self.flows.contains_key(&(u, wk)));
                    let price = self.actors[who].price;
                    let unit = &mut self.units[u];
                    unit.auditor = Some(who);
                    unit.audit_committed = false;
                    unit.audit_settled = false;
                    if approves
                        && self.actors[unit.provider].coalition == self.actors[who].coalition
                    {
                        unit.self_audited = true;
                    }
                    let f = self.flow(u, who);
                    f.auditor = true;
                    f.approved_partner = approves;
                    f.price = price;
                }
                Event::AuditCommitted { job, stage, .. } => {
                    let u = self.unit_of(*job, *stage)?;
                    self.units[u].audit_committed = true;
                }
                Event::ResultRevealed {
                    job,
                    stage,
                    provider,
                    output,
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    self.units[u].revealed = true;
                    let who = self.index[provider];
                    self.flow(u, who).revealed = Some(*output);
                }
                Event::DisputeOpened {
                    dispute,
                    job,
                    stage,
                    challenger,
                    ..
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    self.by_dispute.insert(*dispute, u);
                    self.units[u].dispute = Some(*dispute);
                    self.disputes += 1;
                    let kind = self.ledger.state.dispute(*dispute).map(|d| d.kind);
                    // An auditor that disagrees reported: it is the challenger.
                    if kind == Some(DisputeKind::Audit) {
                        if let Some(a) = self.index.get(challenger).copied() {
                            self.flow(u, a).reported = true;
                        }
                    }
                    // Replicas that disagree release a committed auditor with its fee.
                    let unit = &self.units[u];
                    if kind == Some(DisputeKind::Replica)
                        && unit.audit_committed
                        && !unit.audit_settled
                    {
                        if let Some(a) = unit.auditor {
                            self.settle_audit(u, a);
                        }
                    }
                }
                Event::BisectionNarrowed { dispute, .. } => {
                    if let Some(&u) = self.by_dispute.get(dispute) {
                        self.units[u].rounds += 1;
                    }
                }
                Event::Slashed {
                    who,
                    amount,
                    to_winner,
                    ..
                } => {
                    if self
                        .index
                        .get(who)
                        .is_some_and(|&i| self.actors[i].strategy == Strategy::Honest)
                    {
                        self.honest_slashed += 1;
                    }
                    slashes.push((*who, amount.0, to_winner.0));
                }
                Event::DeadlineMissed {
                    job,
                    stage,
                    provider,
                    penalty,
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    let who = self.index[provider];
                    // Under audit a missed reveal is slashed (the slash came just before).
                    match slashes
                        .iter()
                        .position(|s| s.0 == *provider && s.1 == penalty.0)
                    {
                        Some(k) => {
                            let (_, amount, _) = slashes.remove(k);
                            let f = self.flow(u, who);
                            f.slashed += amount;
                            f.missed_under_audit = true;
                        }
                        None => self.flow(u, who).penalty += penalty.0,
                    }
                    if self.actors[who].strategy.replica() == Replica::Honest {
                        self.honest_missed += 1;
                    }
                    // Before any reveal the stage goes back to matching and its audit slot
                    // is released unpaid.
                    let unit = &self.units[u];
                    if !unit.revealed && unit.audit_committed && !unit.audit_settled {
                        if let Some(a) = unit.auditor {
                            let fee = self.audit_fee(u, a);
                            self.auditor_commitments_unpaid.0 += 1;
                            self.auditor_commitments_unpaid.1 += fee;
                            self.units[u].audit_settled = true;
                        }
                    }
                }
                Event::DisputeResolved {
                    dispute, winner, ..
                } => {
                    let u = *self
                        .by_dispute
                        .get(dispute)
                        .context("an unknown dispute resolved")?;
                    let w = winner.and_then(|a| self.index.get(&a).copied());
                    for (who, amount, to_winner) in std::mem::take(&mut slashes) {
                        let loser = *self.index.get(&who).context("a slash of a non-provider")?;
                        self.flow(u, loser).slashed += amount;
                        if to_winner > 0 {
                            match w {
                                Some(w) => self.flow(u, w).share += to_winner,
                                None => self
                                    .anomalies
                                    .push(format!("a winner's share without a winner: {rec:?}")),
                            }
                        }
                    }
                    // An auditor that disputed and won is paid its fee.
                    let d = self
                        .ledger
                        .state
                        .dispute(*dispute)
                        .map(|d| (d.kind, d.challenger));
                    if let Some((DisputeKind::Audit, challenger)) = d {
                        if *winner == Some(challenger) {
                            self.settle_audit(u, self.index[&challenger]);
                        }
                    }
                }
                Event::StagePaid {
                    job,
                    stage,
                    provider,
                    amount,
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    let who = self.index[provider];
                    self.flow(u, who).paid += amount.0;
                }
                Event::AuditAgreed {
                    job,
                    stage,
                    auditor,
                    fee,
                } => {
                    let u = self.unit_of(*job, *stage)?;
                    let who = self.index[auditor];
                    let f = self.flow(u, who);
                    f.audit_fee += fee.0;
                    f.reported = true;
                    self.units[u].audit_settled = true;
                }
                Event::PayerCompensated { amount, .. } => self.payer_compensated += amount.0,
                Event::UnavailabilityClaimed { .. } => self.claims += 1,
                Event::DataUnavailable {
                    job,
                    compensation,
                    refund,
                } => {
                    self.unavailable += 1;
                    let j = self.by_id[job];
                    self.jobs[j].refund += refund.0;
                    // The farmed job's one assigned provider receives the compensation.
                    let parties: Vec<Address> = self
                        .ledger
                        .state
                        .job(*job)
                        .map(|x| {
                            x.stages
                                .iter()
                                .flat_map(|s| s.slots.iter())
                                .filter_map(|s| s.assignment.as_ref().map(|a| a.provider))
                                .collect()
                        })
                        .unwrap_or_default();
                    match parties.as_slice() {
                        [p] => {
                            let (u, who) = (self.jobs[j].units[0], self.index[p]);
                            self.flow(u, who).compensation += compensation.0;
                        }
                        _ => self
                            .anomalies
                            .push(format!("compensation among {parties:?}: {rec:?}")),
                    }
                }
                Event::JobCompleted { job, refund }
                | Event::JobFailed { job, refund }
                | Event::JobCancelled { job, refund }
                | Event::JobSettled { job, refund } => {
                    let j = self.by_id[job];
                    self.jobs[j].refund += refund.0;
                }
                Event::UnbondStarted { who, amount, .. } => {
                    if let Some(&i) = self.index.get(who) {
                        if self.actors[i].strategy == Strategy::UnbondThenLose {
                            let e = self.unbonded.entry(i).or_default();
                            e.0 += 1;
                            e.1 += amount.0;
                        }
                    }
                }
                Event::AuditMissed { .. }
                | Event::ChainBroken { .. }
                | Event::ClaimRejected { .. } => {
                    self.anomalies.push(format!("{:?}", rec.event));
                }
                _ => {}
            }
        }
        if !slashes.is_empty() {
            self.anomalies.push(format!(
                "slashes with no cause at block {}: {slashes:?}",
                out.height.0
            ));
        }
        for &(u, predicted, first) in completing {
            let actual = audited_now.contains(&u);
            self.predictions += 1;
            if actual != predicted {
                self.predictions_wrong += 1;
                tracing::warn!(
                    run = self.label,
                    height = out.height.0,
                    predicted,
                    unit = ?self.units[u],
                    "the ledger's audit draw differs from the bench's prediction"
                );
            }
            if first {
                self.units[u].audited = Some(actual);
            }
        }
        Ok(())
    }

    fn audit_fee(&self, u: usize, auditor: usize) -> u128 {
        Amount::cost(self.units[u].span.ops, Amount(self.actors[auditor].price))
            .unwrap_or_default()
            .0
    }

    /// The ledger paid an auditor its fee without an event of its own (a won dispute, or
    /// its release when the replicas disputed among themselves); the reconciliation of
    /// every account checks these.
    fn settle_audit(&mut self, u: usize, auditor: usize) {
        let fee = self.audit_fee(u, auditor);
        self.flow(u, auditor).audit_fee += fee;
        self.units[u].audit_settled = true;
    }

    /// Jobs whose every stage is final leave the open set; returns how many.
    fn finish_jobs(&mut self) -> usize {
        let state = &self.ledger.state;
        let mut finished = Vec::new();
        self.active.retain(|id| {
            let Some(job) = state.job(*id) else {
                return false;
            };
            let done = job.status != JobStatus::Active
                && job
                    .stages
                    .iter()
                    .all(|s| matches!(s.phase, StagePhase::Finalized | StagePhase::Cancelled));
            if done {
                finished.push(*id);
            }
            !done
        });
        for id in &finished {
            let Some(job) = self.ledger.state.job(*id) else {
                continue;
            };
            let j = self.by_id[id];
            self.jobs[j].status = Some(job.status);
            for (s, st) in job.stages.iter().enumerate() {
                let u = self.jobs[j].units[s];
                self.units[u].phase = st.phase.name();
                self.units[u].status = Some(job.status);
            }
        }
        finished.len()
    }

    /// Every identity's balance + slashable stake against its genesis amount and the flows
    /// the bench attributed to it; the farming requester's balance against its jobs.
    fn reconcile(&mut self) {
        let mut sums = vec![0i128; self.actors.len()];
        for ((_, who), f) in &self.flows {
            sums[*who] += f.income() - f.fees as i128;
        }
        for (i, a) in self.actors.iter().enumerate() {
            let state = &self.ledger.state;
            let end = (state.balance(&a.addr).0 + state.slashable(&a.addr).0) as i128;
            let start = (BALANCE + a.bonded) as i128;
            let attributed = sums[i] - self.overhead_fees[i] as i128;
            if end - start != attributed {
                self.unreconciled.push(format!(
                    "{} #{i}: changed by {}, flows say {attributed}",
                    a.strategy.name(),
                    end - start
                ));
            }
        }
        let farmer = address_of(&self.farmer);
        let change = self.ledger.state.balance(&farmer).0 as i128 - i128::from(u64::MAX);
        let attributed: i128 = self
            .jobs
            .iter()
            .filter(|j| j.farmed)
            .map(|j| j.refund as i128 - j.escrow as i128 - j.fee as i128)
            .sum();
        if change != attributed {
            self.unreconciled.push(format!(
                "farming requester: changed by {change}, its jobs say {attributed}"
            ));
        }
    }
}

/// The ledger's audit probability (ppm) for a stage whose last commitment lands at
/// `height`: the maximum over its replicas of `State::audit_probability_for` at each
/// one's reputation, bill and slashable stake (with this block's top-ups).
fn audit_probability(
    state: &State,
    params: &Params,
    rp: &ReputationParams,
    job: &Job,
    stage: usize,
    height: u64,
    topped: &HashMap<Address, u128>,
) -> u32 {
    match job.spec.requirements.verification {
        VerificationLevel::Optimistic => 0,
        VerificationLevel::Audited => PPM,
        VerificationLevel::Sampled => {
            let ops = job.spec.stages[stage].ops;
            job.stages[stage]
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .filter_map(|a| {
                    let p = state.provider(&a.provider)?;
                    let top = topped.get(&a.provider).copied().unwrap_or(0);
                    let bonded = state.account(&a.provider).bonded.0 + top;
                    Some(State::audit_probability_for(
                        params,
                        p.reputation.score_ppm(height, bonded, rp),
                        Amount::cost(ops, a.price).unwrap_or(Amount(u128::MAX)),
                        Amount::cost(ops, job.spec.max_price).unwrap_or(Amount(u128::MAX)),
                        Amount(state.slashable(&a.provider).0 + top),
                    ))
                })
                .max()
                .unwrap_or(params.audit_ppm)
        }
    }
}

/// Each `auditor_sybil` coalition's share of the stake the auditor draw of `job` may pick
/// from now: registered providers with the minimum bonded, within the job's price, not
/// excluded from it and holding no role in it (as `matching::draw_by_stake` weighs them).
fn sybil_shares(
    state: &State,
    actors: &[Actor],
    coalitions: &[Coalition],
    job: &Job,
    topped: &HashMap<Address, u128>,
) -> Vec<(usize, f64)> {
    let sybils: Vec<usize> = (0..coalitions.len())
        .filter(|&c| coalitions[c].kind == CoalitionKind::AuditorSybil)
        .collect();
    if sybils.is_empty() {
        return Vec::new();
    }
    let mut used: Vec<Address> = Vec::new();
    for st in &job.stages {
        if st.phase == StagePhase::Cancelled {
            continue;
        }
        used.extend(
            st.slots
                .iter()
                .filter_map(|s| s.assignment.as_ref().map(|a| a.provider)),
        );
        if let StagePhase::Auditing { auditor, .. } = st.phase {
            used.push(auditor);
        }
        if let Some(a) = &st.audit {
            used.push(a.auditor);
        }
    }
    let min = state.params().min_provider_stake.0;
    let mut total = 0u128;
    let mut by: HashMap<usize, u128> = HashMap::new();
    for (i, a) in actors.iter().enumerate() {
        let Some(p) = state.provider(&a.addr) else {
            continue;
        };
        let bonded = state.account(&a.addr).bonded.0 + topped.get(&a.addr).unwrap_or(&0);
        if p.retired
            || bonded < min
            || bonded == 0
            || p.offer.price > job.spec.max_price
            || p.offer.capacity <= p.active
            || used.contains(&a.addr)
            || job.excluded.contains(&a.addr)
        {
            continue;
        }
        total += bonded;
        if let Some(c) = a.coalition {
            if coalitions[c].partners.contains(&i) {
                *by.entry(c).or_default() += bonded;
            }
        }
    }
    sybils
        .into_iter()
        .map(|c| {
            let share = by.get(&c).copied().unwrap_or(0) as f64 / total.max(1) as f64;
            (c, share)
        })
        .collect()
}

/// What a provider of `strategy` computes, reveals and can open for a stage.
fn make_work(
    strategy: Strategy,
    who: &Address,
    job: JobId,
    stage: u32,
    input: Hash,
    span: &Span,
    w: &Workload,
) -> Work {
    let salt = salt_for(who, job, stage);
    let made_up = |i: u32| {
        Hash::digest(
            "agentic bench verify made-up leaf",
            &[
                &job.0.to_be_bytes(),
                &stage.to_be_bytes(),
                &who.0,
                &i.to_be_bytes(),
            ],
        )
    };
    let (first, layers) = (span.first, span.layers);
    let (trace, computed_ops) = match strategy.replica() {
        Replica::Honest => (
            Some(TestTrace::honest(&w.model, first, layers, input)),
            span.ops,
        ),
        Replica::MadeUp => {
            let mut leaves = vec![input];
            leaves.extend((1..=layers).map(made_up));
            (Some(TestTrace::new(leaves)), 0)
        }
        Replica::Perturbed => {
            let bad = u32::from(
                Hash::digest(
                    "agentic bench verify bad layer",
                    &[&job.0.to_be_bytes(), &stage.to_be_bytes()],
                )
                .0[0],
            ) % layers.max(1);
            (
                Some(TestTrace::cheating(&w.model, first, layers, input, bad)),
                span.ops,
            )
        }
        Replica::Smaller => {
            // The embeddings and the head run; the decoder blocks between are skipped.
            let mut leaves = vec![input];
            let mut x = input;
            let mut ops = 0;
            for l in first..first + layers {
                if l == 0 || l + 1 == w.layers {
                    x = layer_output(&w.model, l, &x);
                    ops += span
                        .layer_ops
                        .get((l - first) as usize)
                        .copied()
                        .unwrap_or(0);
                }
                leaves.push(x);
            }
            (Some(TestTrace::new(leaves)), ops)
        }
        Replica::Random | Replica::Blind => (None, 0),
    };
    let result = match (strategy.replica(), &trace) {
        (_, Some(t)) => Some(t.result()),
        (Replica::Random, None) => Some(StageResult {
            input,
            output: made_up(u32::MAX),
            trace_root: made_up(u32::MAX - 1),
        }),
        _ => None,
    };
    let commitment = match result {
        Some(res) => res.commitment(job, stage, &salt, who),
        // A blind commitment: it has nothing to commit to.
        None => made_up(u32::MAX - 2),
    };
    Work {
        trace,
        result,
        salt,
        commitment,
        computed_ops,
    }
}

/// What a drawn auditor commits to: the honest result, computed from the stage's agreed
/// input — unless it is an `auditor_sybil` partner and its coalition's worker holds a
/// replica slot of the stage, in which case it commits to the worker's claim unchecked.
#[allow(clippy::too_many_arguments)]
fn audit_work(
    actors: &[Actor],
    coalitions: &[Coalition],
    works: &HashMap<(JobId, u32, Address), Work>,
    auditor: usize,
    (job, stage, st): (JobId, u32, &agentic_protocol::state::Stage),
    input: Hash,
    span: &Span,
    w: &Workload,
) -> Work {
    let who = actors[auditor].addr;
    let worker = (actors[auditor].strategy == Strategy::SybilPartner)
        .then(|| actors[auditor].coalition)
        .flatten()
        .and_then(|c| coalitions[c].worker)
        .map(|i| actors[i].addr)
        .filter(|wa| {
            st.slots
                .iter()
                .any(|s| s.assignment.as_ref().is_some_and(|a| a.provider == *wa))
        });
    let claim = worker
        .and_then(|wa| works.get(&(job, stage, wa)))
        .and_then(|x| Some((x.result?, x.trace.clone())));
    match claim {
        Some((result, trace)) => {
            let salt = salt_for(&who, job, stage);
            Work {
                trace,
                result: Some(result),
                commitment: result.commitment(job, stage, &salt, &who),
                salt,
                computed_ops: 0,
            }
        }
        None => make_work(Strategy::Honest, &who, job, stage, input, span, w),
    }
}

// ----------------------------------------------------------------------------------------
// Profit
// ----------------------------------------------------------------------------------------

/// Which way the audit draw went for a cheating stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Branch {
    Unaudited,
    /// Audited by a provider outside the placed one's coalition.
    Audited,
    /// Audited by a partner of the placed provider (`auditor_sybil`).
    SelfAudited,
}

fn mean(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for x in xs {
        sum += x;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

impl Market {
    fn compute(&self, ops: u64) -> f64 {
        ops as f64 * self.compute_cost as f64 / 1e6
    }

    fn flow_of(&self, u: usize, who: usize) -> Flow {
        self.flows.get(&(u, who)).cloned().unwrap_or_default()
    }

    /// One party's fees and compute on a stage.
    fn cost(&self, u: usize, who: usize) -> f64 {
        let f = self.flow_of(u, who);
        f.fees as f64 + self.compute(f.computed_ops)
    }

    fn realized(&self, u: usize, who: usize) -> f64 {
        self.flow_of(u, who).income() as f64 - self.cost(u, who)
    }

    /// The identities whose flows on a stage count for its placed provider: itself and
    /// its coalition.
    fn side(&self, u: usize) -> Vec<usize> {
        let p = self.units[u].provider;
        match self.actors[p].coalition {
            Some(c) => self.coalitions[c].members().collect(),
            None => vec![p],
        }
    }

    /// What the placed provider earned by its work on a stage: its realized profit less
    /// any share of a loser's slash it won there.
    fn work_profit(&self, u: usize) -> f64 {
        let p = self.units[u].provider;
        self.realized(u, p) - self.flow_of(u, p).share as f64
    }

    fn side_realized(&self, u: usize) -> f64 {
        self.side(u).into_iter().map(|m| self.realized(u, m)).sum()
    }

    fn side_cost(&self, u: usize) -> f64 {
        self.side(u).into_iter().map(|m| self.cost(u, m)).sum()
    }

    fn strategy(&self, u: usize) -> Strategy {
        self.actors[self.units[u].provider].strategy
    }

    fn branch(&self, u: usize) -> Option<Branch> {
        let unit = &self.units[u];
        match unit.audited? {
            false => Some(Branch::Unaudited),
            true if unit.self_audited => Some(Branch::SelfAudited),
            true => Some(Branch::Audited),
        }
    }

    /// The mean fees and compute a strategy's side paid on its stages of each branch.
    fn branch_costs(&self) -> HashMap<(Strategy, Branch), f64> {
        let mut acc: HashMap<(Strategy, Branch), (f64, usize)> = HashMap::new();
        for u in 0..self.units.len() {
            if let Some(b) = self.branch(u) {
                let e = acc.entry((self.strategy(u), b)).or_default();
                e.0 += self.side_cost(u);
                e.1 += 1;
            }
        }
        acc.into_iter()
            .map(|(k, (sum, n))| (k, sum / n as f64))
            .collect()
    }

    /// The slash of the placed provider at the stake it had when the draw was made.
    fn model_slash(&self, u: usize) -> u128 {
        let d = self.units[u].draw.unwrap_or_default();
        Amount(d.slashable).mul_ppm(self.params.slash_ppm).0
    }

    /// What the ledger pays (+) or takes (−) from the placed provider's side on a stage in
    /// `branch`: paid `V` unaudited; slashed `S` when audited; `V` and the partner's audit
    /// fee when a partner approves; a blind committer pays the miss penalty, or `S` when
    /// audited, and an `echo_replica` partner in the other slot keeps its honest pay.
    fn model_income(&self, u: usize, branch: Branch) -> f64 {
        let unit = &self.units[u];
        let d = unit.draw.unwrap_or_default();
        let slash = self.model_slash(u) as f64;
        let value = unit.value as f64;
        match (self.strategy(u).replica(), branch) {
            (Replica::Blind, b) => {
                let partners: f64 = self
                    .side(u)
                    .into_iter()
                    .filter(|&m| m != unit.provider)
                    .map(|m| self.flow_of(u, m).income() as f64)
                    .sum();
                let own = if b == Branch::Unaudited {
                    Amount(d.slashable).mul_ppm(self.params.miss_penalty_ppm).0 as f64
                } else {
                    slash
                };
                partners - own
            }
            (_, Branch::Unaudited) => value,
            (_, Branch::Audited) => -slash,
            (_, Branch::SelfAudited) => {
                value
                    + Amount::cost(unit.span.ops, Amount(COALITION_PRICE))
                        .unwrap_or_default()
                        .0 as f64
            }
        }
    }

    /// Fees and compute of a branch no stage of the strategy took: commit and reveal (and
    /// the dispute moves of a strategy that plays; an approving partner's commit and
    /// report), at `min_fee` each.
    fn model_cost(&self, u: usize, branch: Branch) -> f64 {
        let fee = self.params.min_fee.0 as f64;
        let s = self.strategy(u);
        let moves = if branch == Branch::Audited && s.plays() {
            f64::from(self.rounds_bound)
        } else {
            0.0
        };
        let partner = if branch == Branch::SelfAudited {
            2.0
        } else {
            0.0
        };
        fee * (2.0 + moves + partner)
            + self.compute(self.flow_of(u, self.units[u].provider).computed_ops)
    }

    /// The stage's profit for the placed provider's side in expectation over the ledger's
    /// audit draw (see the module docs); honest stages and stages without a draw: realized.
    fn expected_profit(&self, u: usize, costs: &HashMap<(Strategy, Branch), f64>) -> f64 {
        let unit = &self.units[u];
        let s = self.strategy(u);
        let (Some(d), Some(taken)) = (unit.draw, self.branch(u)) else {
            return self.side_realized(u);
        };
        if s.replica() == Replica::Honest {
            return self.side_realized(u);
        }
        let p = d.p_ppm as f64 / PPM as f64;
        let q = if s == Strategy::SybilWorker {
            d.share
        } else {
            0.0
        };
        [
            (Branch::Unaudited, 1.0 - p),
            (Branch::Audited, p * (1.0 - q)),
            (Branch::SelfAudited, p * q),
        ]
        .into_iter()
        .filter(|(_, w)| *w > 0.0)
        .map(|(b, w)| {
            let outcome = if b == taken {
                self.side_realized(u)
            } else {
                let cost = costs
                    .get(&(s, b))
                    .copied()
                    .unwrap_or_else(|| self.model_cost(u, b));
                self.model_income(u, b) - cost
            };
            w * outcome
        })
        .sum()
    }

    /// Whether the ledger did to the placed provider what the model of its branch says.
    fn as_modelled(&self, u: usize) -> bool {
        let unit = &self.units[u];
        let s = self.strategy(u);
        let Some(b) = self.branch(u) else {
            return true;
        };
        let f = self.flow_of(u, unit.provider);
        match (s.replica(), b) {
            (Replica::Honest, _) => true,
            (Replica::Blind, Branch::Unaudited) => f.penalty > 0 && f.slashed == 0 && f.paid == 0,
            (Replica::Blind, _) => f.slashed > 0 && f.missed_under_audit && f.paid == 0,
            (_, Branch::Unaudited) => {
                f.paid == unit.value
                    && f.slashed == 0
                    && f.penalty == 0
                    && unit.status == Some(JobStatus::Completed)
            }
            (_, Branch::Audited) => f.slashed > 0 && f.paid == 0 && unit.failed(),
            (_, Branch::SelfAudited) => {
                let fee: u128 = self
                    .side(u)
                    .into_iter()
                    .filter(|&m| m != unit.provider)
                    .map(|m| self.flow_of(u, m).audit_fee)
                    .sum();
                f.paid == unit.value
                    && f.slashed == 0
                    && fee
                        == Amount::cost(unit.span.ops, Amount(COALITION_PRICE))
                            .unwrap_or_default()
                            .0
            }
        }
    }

    fn caught(&self, u: usize) -> bool {
        let f = self.flow_of(u, self.units[u].provider);
        f.slashed > 0 || f.penalty > 0 || self.units[u].failed()
    }

    /// Honest delivered work and what of it went unpaid: every honest replica that
    /// revealed its stage's true output (its bill: ops × its price) and every honest
    /// auditor whose report was agreed or upheld (its fee). Returns (unpaid, delivered,
    /// roles).
    fn honest_unpaid(&self) -> (u128, u128, usize) {
        let (mut unpaid, mut delivered, mut roles) = (0u128, 0u128, 0usize);
        for ((u, who), f) in &self.flows {
            let unit = &self.units[*u];
            if self.jobs[unit.job].farmed {
                continue;
            }
            let (counts, got) = if f.auditor {
                (f.reported && !f.approved_partner, f.audit_fee)
            } else {
                (
                    self.actors[*who].strategy.replica() == Replica::Honest
                        && f.revealed == Some(unit.truth),
                    f.paid,
                )
            };
            if counts {
                let bill = Amount::cost(unit.span.ops, Amount(f.price))
                    .unwrap_or_default()
                    .0;
                delivered += bill;
                unpaid += bill.saturating_sub(got);
                roles += 1;
                if got < bill {
                    tracing::warn!(run = self.label, unit = ?unit, flow = ?f, "honest work unpaid");
                }
            }
        }
        (unpaid, delivered, roles)
    }

    /// Honest stages delivered in jobs that failed because of another stage, and what of
    /// their bills was paid.
    fn failed_jobs_honest_stages(&self) -> (usize, u128, u128) {
        let (mut n, mut bills, mut paid) = (0, 0u128, 0u128);
        for (u, unit) in self.units.iter().enumerate() {
            if unit.status != Some(JobStatus::Failed) || unit.phase != "finalized" {
                continue;
            }
            for ((fu, who), f) in &self.flows {
                if *fu == u
                    && !f.auditor
                    && self.actors[*who].strategy.replica() == Replica::Honest
                    && f.revealed == Some(unit.truth)
                {
                    n += 1;
                    bills += Amount::cost(unit.span.ops, Amount(f.price))
                        .unwrap_or_default()
                        .0;
                    paid += f.paid;
                }
            }
        }
        (n, bills, paid)
    }

    fn overhead(&self) -> f64 {
        self.audited_ops as f64 / self.stage_ops.max(1) as f64
    }

    /// The audit overhead the ledger's probabilities predict for the stages drawn.
    fn expected_overhead(&self) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for unit in &self.units {
            if let Some(d) = unit.draw {
                num += d.p_ppm as f64 / PPM as f64 * unit.span.ops as f64;
                den += unit.span.ops as f64;
            }
        }
        if den > 0.0 {
            num / den
        } else {
            0.0
        }
    }

    /// Stages placed on honest providers (not farmed).
    fn honest_units(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.units.len()).filter(|&u| {
            self.strategy(u) == Strategy::Honest && !self.jobs[self.units[u].job].farmed
        })
    }

    fn summary(&self) -> Value {
        let count = |s: JobStatus| self.jobs.iter().filter(|j| j.status == Some(s)).count();
        let (unpaid, delivered, roles) = self.honest_unpaid();
        let (failed_n, failed_bills, failed_paid) = self.failed_jobs_honest_stages();
        json!({
            "run": self.label,
            "verification": format!("{:?}", self.level),
            "cheater_share": self.cheater_share,
            "jobs": self.jobs.len(),
            "stages": self.units.len(),
            "pipelines": self.jobs.iter().filter(|j| j.units.len() > 1).count(),
            "completed": count(JobStatus::Completed),
            "failed": count(JobStatus::Failed),
            "cancelled": count(JobStatus::Cancelled),
            "blocks": self.blocks,
            "stage_ops": self.stage_ops as f64,
            "audited_stages": self.audited_stages,
            "audited_stage_ops": self.audited_ops as f64,
            "audit_overhead": self.overhead(),
            "audit_predictions": self.predictions,
            "audit_predictions_wrong": self.predictions_wrong,
            "disputes": self.disputes,
            "honest_providers_slashed": self.honest_slashed,
            "honest_deadline_misses": self.honest_missed,
            "honest_delivered": delivered as f64,
            "honest_delivered_roles": roles,
            "honest_unpaid": unpaid as f64,
            "failed_jobs_honest_stages": failed_n,
            "failed_jobs_honest_bills": failed_bills as f64,
            "failed_jobs_honest_paid": failed_paid as f64,
            "auditor_commitments_unpaid": self.auditor_commitments_unpaid.0,
            "auditor_commitments_unpaid_fees": self.auditor_commitments_unpaid.1 as f64,
            "payer_compensated": self.payer_compensated as f64,
            "refills_after_reveal": self.refills_after_reveal,
            "refused": self.rejections,
            "unreconciled": self.unreconciled,
            "anomalies": self.anomalies,
            "supply_conserved": self.supply_ok,
        })
    }
}

// ----------------------------------------------------------------------------------------
// Report
// ----------------------------------------------------------------------------------------

/// Both sides of the ledger's audit inequality `p·(1 − c)·S ≥ (1 − p)·V + p·c·(V + F)`
/// for a stage worth `value` to a provider with the minimum stake and a perfect
/// reputation (the lowest probability the ledger allows), an auditor's fee of at most
/// `fee`, and `c = audit_collusion_ppm` (a coalition's assumed share of the qualified
/// stake, which approves when drawn as the auditor).
fn inequality(params: &Params, value: u128, fee: u128) -> Value {
    let stake = params.min_provider_stake;
    let (value, fee) = (Amount(value), Amount(fee));
    let p_ppm = State::audit_probability_for(params, PPM, value, fee, stake);
    let floor_ppm = State::value_floor(params, value, fee, stake);
    let p = p_ppm as f64 / PPM as f64;
    let c = params.audit_collusion_ppm as f64 / PPM as f64;
    let slash = stake.mul_ppm(params.slash_ppm).0 as f64;
    let expected_slash = p * (1.0 - c) * slash;
    let expected_gain = (1.0 - p) * value.0 as f64 + p * c * (value.0 + fee.0) as f64;
    json!({
        "stage_value": value.0 as f64,
        "audit_fee_bound": fee.0 as f64,
        "stake": stake.0 as f64,
        "slash": slash,
        "collusion_share": c,
        "reputation": 1.0,
        "p_min": floor_ppm as f64 / PPM as f64,
        "p_reputation_floor": params.audit_min_ppm as f64 / PPM as f64,
        "p": p,
        "expected_slash": expected_slash,
        "expected_gain": expected_gain,
        "holds": expected_slash >= expected_gain,
    })
}

/// The single cheaters' figures (cheater run): per strategy and stake.
#[allow(clippy::type_complexity)]
fn singles(
    m: &Market,
) -> anyhow::Result<(Value, Option<(f64, Strategy, u128)>, usize, usize, usize)> {
    let costs = m.branch_costs();
    let mut strategies = serde_json::Map::new();
    let mut best: Option<(f64, Strategy, u128)> = None;
    let (mut jobs, mut caught, mut mismatches) = (0usize, 0usize, 0usize);
    for s in Strategy::CHEATS {
        let us: Vec<usize> = (0..m.units.len())
            .filter(|&u| m.units[u].cheat && m.strategy(u) == s)
            .collect();
        jobs += us.len();
        caught += us.iter().filter(|&&u| m.caught(u)).count();
        for &u in us.iter().filter(|&&u| !m.as_modelled(u)) {
            tracing::warn!(strategy = s.name(), unit = ?m.units[u], "outcome not as modelled");
            mismatches += 1;
        }
        let mut stakes = Vec::new();
        for stake in CHEATER_STAKES {
            let g: Vec<usize> = us
                .iter()
                .copied()
                .filter(|&u| m.actors[m.units[u].provider].stake == stake)
                .collect();
            if g.is_empty() {
                continue;
            }
            let expected = mean(g.iter().map(|&u| m.expected_profit(u, &costs)));
            if best.is_none_or(|b| expected > b.0) {
                best = Some((expected, s, stake));
            }
            stakes.push(json!({
                "stake": stake as f64,
                "jobs": g.len(),
                "caught": g.iter().filter(|&&u| m.caught(u)).count(),
                "audited": g.iter().filter(|&&u| m.units[u].audited == Some(true)).count(),
                "mean_audit_probability": mean(g.iter().filter_map(|&u| m.units[u].draw).map(|d| d.p_ppm as f64 / PPM as f64)),
                "expected_profit_per_job": expected,
                "realized_profit_per_job": mean(g.iter().map(|&u| m.side_realized(u))),
            }));
        }
        let computed: u64 = us
            .iter()
            .map(|&u| m.flow_of(u, m.units[u].provider).computed_ops)
            .sum();
        let ops: u64 = us.iter().map(|&u| m.units[u].span.ops).sum();
        let n = us.len().max(1) as f64;
        strategies.insert(
            s.name().into(),
            json!({
                "what": s.what(),
                "jobs": us.len(),
                "detection_rate": us.iter().filter(|&&u| m.caught(u)).count() as f64 / n,
                "audited_share": us.iter().filter(|&&u| m.units[u].audited == Some(true)).count() as f64 / n,
                "mean_audit_probability": mean(us.iter().filter_map(|&u| m.units[u].draw).map(|d| d.p_ppm as f64 / PPM as f64)),
                "compute_share": computed as f64 / ops.max(1) as f64,
                "expected_profit_per_job": mean(us.iter().map(|&u| m.expected_profit(u, &costs))),
                "realized_profit_per_job": mean(us.iter().map(|&u| m.side_realized(u))),
                "slashed_total": us.iter().map(|&u| m.flow_of(u, m.units[u].provider).slashed as f64).sum::<f64>(),
                "penalties_total": us.iter().map(|&u| m.flow_of(u, m.units[u].provider).penalty as f64).sum::<f64>(),
                "by_stake": stakes,
            }),
        );
    }
    Ok((Value::Object(strategies), best, jobs, caught, mismatches))
}

/// The coalition strategies' figures (coalition run); returns them, the best variant's
/// expected profit per job with its name, and the outcomes not as modelled.
fn coalitions(m: &Market) -> (Value, Option<(f64, String)>, usize) {
    let costs = m.branch_costs();
    let mut out = serde_json::Map::new();
    let mut best: Option<(f64, String)> = None;
    let mut mismatches = 0usize;
    for kind in CoalitionKind::ALL {
        let mut variants = Vec::new();
        let mut kind_best: Option<f64> = None;
        for (c, co) in m
            .coalitions
            .iter()
            .enumerate()
            .filter(|(_, x)| x.kind == kind)
        {
            let label = match kind {
                CoalitionKind::PenaltyFarming => "requester".to_string(),
                _ if co.partners.is_empty() => format!("stake {}", co.worker_stake),
                _ => format!(
                    "worker stake {} at price {}, {} partners × {}",
                    co.worker_stake,
                    co.worker_price,
                    co.partners.len(),
                    co.partner_stake
                ),
            };
            let mut v = serde_json::Map::new();
            v.insert("variant".into(), json!(label));
            let expected = if kind == CoalitionKind::PenaltyFarming {
                let jobs: Vec<&JobRun> = m.jobs.iter().filter(|j| j.farmed).collect();
                let per_job: Vec<f64> = jobs
                    .iter()
                    .map(|j| j.refund as f64 - j.escrow as f64 - j.fee as f64)
                    .collect();
                let compensation: u128 = (0..m.units.len())
                    .filter(|&u| m.jobs[m.units[u].job].farmed)
                    .map(|u| {
                        m.flows
                            .iter()
                            .filter(|((fu, _), _)| *fu == u)
                            .map(|(_, f)| f.compensation)
                            .sum::<u128>()
                    })
                    .sum();
                let expected = mean(per_job.iter().copied());
                v.insert("jobs".into(), json!(jobs.len()));
                v.insert("claims".into(), json!(m.claims));
                v.insert("data_unavailable".into(), json!(m.unavailable));
                v.insert("compensation_paid".into(), json!(compensation as f64));
                v.insert(
                    "miss_penalties_collected".into(),
                    json!(jobs
                        .iter()
                        .flat_map(|j| j.units.iter())
                        .map(|&u| m
                            .flows
                            .iter()
                            .filter(|((fu, _), _)| *fu == u)
                            .map(|(_, f)| f.penalty)
                            .sum::<u128>())
                        .sum::<u128>() as f64),
                );
                v.insert(
                    "best_job_profit".into(),
                    json!(per_job.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                );
                v.insert("realized_profit_per_job".into(), json!(expected));
                expected
            } else {
                let worker = co.worker.unwrap_or_default();
                let us: Vec<usize> = (0..m.units.len())
                    .filter(|&u| m.units[u].cheat && m.units[u].provider == worker)
                    .collect();
                for &u in us.iter().filter(|&&u| !m.as_modelled(u)) {
                    tracing::warn!(coalition = kind.name(), unit = ?m.units[u], "outcome not as modelled");
                    mismatches += 1;
                }
                let audited: Vec<usize> = us
                    .iter()
                    .copied()
                    .filter(|&u| m.units[u].audited == Some(true))
                    .collect();
                let expected = mean(us.iter().map(|&u| m.expected_profit(u, &costs)));
                v.insert("identities".into(), json!(1 + co.partners.len()));
                v.insert("worker_stake".into(), json!(co.worker_stake as f64));
                v.insert("partner_stake".into(), json!(co.partner_stake as f64));
                v.insert("worker_price".into(), json!(co.worker_price as f64));
                v.insert("jobs".into(), json!(us.len()));
                v.insert("audited".into(), json!(audited.len()));
                v.insert(
                    "caught".into(),
                    json!(us.iter().filter(|&&u| m.caught(u)).count()),
                );
                v.insert(
                    "mean_audit_probability".into(),
                    json!(mean(
                        us.iter()
                            .filter_map(|&u| m.units[u].draw)
                            .map(|d| d.p_ppm as f64 / PPM as f64)
                    )),
                );
                v.insert(
                    "realized_profit_per_job".into(),
                    json!(mean(us.iter().map(|&u| m.side_realized(u)))),
                );
                let slashed: u128 = us.iter().map(|&u| m.flow_of(u, worker).slashed).sum();
                v.insert("slashed_total".into(), json!(slashed as f64));
                match kind {
                    CoalitionKind::AuditorSybil => {
                        let own = audited.iter().filter(|&&u| m.units[u].self_audited).count();
                        let (expected_draws, draws) =
                            m.partner_draws.get(&c).copied().unwrap_or_default();
                        v.insert(
                            "qualified_stake_share".into(),
                            json!(mean(
                                us.iter().filter_map(|&u| m.units[u].draw).map(|d| d.share)
                            )),
                        );
                        v.insert("self_audited".into(), json!(own));
                        v.insert(
                            "self_audit_frequency".into(),
                            json!(own as f64 / audited.len().max(1) as f64),
                        );
                        v.insert(
                            "partner_draws_all_audits".into(),
                            json!({
                                "what": "auditor draws of the whole run (every stage) that picked one of its partners, against the sum of their qualified-stake share at each draw",
                                "audits": m.audited_stages,
                                "observed": draws,
                                "expected": expected_draws,
                                "observed_share": draws as f64 / m.audited_stages.max(1) as f64,
                                "expected_share": expected_draws / m.audited_stages.max(1) as f64,
                            }),
                        );
                        let fees: u128 = us
                            .iter()
                            .flat_map(|&u| co.partners.iter().map(move |&p| (u, p)))
                            .map(|(u, p)| m.flow_of(u, p).audit_fee)
                            .sum();
                        v.insert("approval_fees".into(), json!(fees as f64));
                    }
                    CoalitionKind::UnbondThenLose => {
                        let (n, amount) = m.unbonded.get(&worker).copied().unwrap_or_default();
                        let exact = audited
                            .iter()
                            .filter(|&&u| m.flow_of(u, worker).slashed == m.model_slash(u))
                            .count();
                        v.insert("unbonds_accepted".into(), json!(n));
                        v.insert("unbonded_total".into(), json!(amount as f64));
                        v.insert("refused".into(), json!(refusals(m, worker)));
                        v.insert(
                            "slashed_as_if_never_unbonded".into(),
                            json!({ "audited": audited.len(), "slash_of_full_stake": exact }),
                        );
                    }
                    CoalitionKind::EchoReplica => {
                        let withheld = us
                            .iter()
                            .filter(|&&u| {
                                let f = m.flow_of(u, worker);
                                f.penalty > 0 || f.missed_under_audit
                            })
                            .count();
                        v.insert("withheld_reveals".into(), json!(withheld));
                        v.insert("refills_after_reveal".into(), json!(m.refills_after_reveal));
                        v.insert("partner_refills".into(), json!(m.partner_refills));
                    }
                    CoalitionKind::RetireWhileDisputed => {
                        let disputed = us.iter().filter(|&&u| m.units[u].dispute.is_some()).count();
                        v.insert("disputed".into(), json!(disputed));
                        v.insert("withdrawable_stake".into(), json!(co.worker_stake as f64));
                        v.insert("refused".into(), json!(refusals(m, worker)));
                    }
                    CoalitionKind::PenaltyFarming => {}
                }
                expected
            };
            v.insert("expected_profit_per_job".into(), json!(expected));
            if kind_best.is_none_or(|b| expected > b) {
                kind_best = Some(expected);
            }
            if best.as_ref().is_none_or(|b| expected > b.0) {
                best = Some((expected, format!("{} ({label})", kind.name())));
            }
            variants.push(Value::Object(v));
        }
        out.insert(
            kind.name().into(),
            json!({
                "what": kind.what(),
                "expected_profit_per_job": kind_best,
                "variants": variants,
            }),
        );
    }
    (Value::Object(out), best, mismatches)
}

/// The refusals counted for one identity's doomed attempts.
fn refusals(m: &Market, who: usize) -> BTreeMap<&'static str, usize> {
    m.refused_by
        .iter()
        .filter(|((i, _), _)| *i == who)
        .map(|((_, name), n)| (*name, *n))
        .collect()
}

fn report(
    args: &Args,
    w: &Workload,
    d: &RealDisputes,
    runs: &[&Market; 4],
) -> anyhow::Result<Value> {
    let params = Params::default();
    let [honest, audited, cheat, coalition] = *runs;

    // Part 1: referee and bisection.
    let job_ops = d.job_ops.max(1) as f64;
    let mut fractions = Vec::new();
    let per_layer: Vec<Value> = d
        .disputes
        .iter()
        .map(|x| {
            let ops: u64 = x.referee_calls.iter().map(|c| c.1).sum();
            let mut layers: Vec<u32> = x.referee_calls.iter().map(|c| c.0).collect();
            layers.dedup();
            let fraction = ops as f64 / job_ops;
            fractions.push(fraction);
            json!({
                "disputed_layer": x.layer,
                "layer_name": x.layer_name,
                "rounds": x.rounds,
                "referee_calls": x.referee_calls.len(),
                "referee_layers": layers.len(),
                "referee_layer": layers.first(),
                "referee_ops": ops,
                "metered_layer_ops": d.layer_ops[x.layer],
                "fraction": fraction,
                "cheater_slashed": x.slashed as f64,
            })
        })
        .collect();
    let referee_fraction = fractions.iter().copied().fold(0.0, f64::max);
    let referee_layers = d
        .disputes
        .iter()
        .map(|x| {
            let mut l: Vec<u32> = x.referee_calls.iter().map(|c| c.0).collect();
            l.dedup();
            l.len()
        })
        .max()
        .unwrap_or(0);
    let rounds = d.disputes.iter().map(|x| x.rounds).max().unwrap_or(0);
    let leaves = d.layers as u32 + 1;
    let ceil_log2 = |n: u32| {
        if n <= 1 {
            0
        } else {
            u32::BITS - (n - 1).leading_zeros()
        }
    };

    // Part 2: the market.
    let audit_overhead = honest.overhead();
    let baseline = audited.overhead();
    let mut by_stake: BTreeMap<u128, Vec<usize>> = BTreeMap::new();
    for u in honest.honest_units() {
        by_stake
            .entry(honest.actors[honest.units[u].provider].stake)
            .or_default()
            .push(u);
    }
    let by_stake: Vec<Value> = by_stake
        .iter()
        .map(|(stake, us)| {
            json!({
                "stake": *stake as f64,
                "stages": us.len(),
                "audited": us.iter().filter(|&&u| honest.units[u].audited == Some(true)).count(),
                "mean_reputation": mean(us.iter().filter_map(|&u| honest.units[u].draw).map(|d| d.score_ppm as f64 / PPM as f64)),
                "mean_audit_probability": mean(us.iter().filter_map(|&u| honest.units[u].draw).map(|d| d.p_ppm as f64 / PPM as f64)),
            })
        })
        .collect();
    let scores: Vec<f64> = honest
        .units
        .iter()
        .filter_map(|u| u.draw)
        .map(|d| d.score_ppm as f64 / PPM as f64)
        .collect();

    let (strategies, best_single, cheater_jobs, cheater_caught, single_mismatches) =
        singles(cheat)?;
    let Some((single_profit, best_strategy, best_stake)) = best_single else {
        bail!("no job went to a single cheater: raise --jobs or --cheaters");
    };
    let (coalition_figures, best_coalition, coalition_mismatches) = coalitions(coalition);
    let Some((coalition_profit, best_coalition_name)) = best_coalition else {
        bail!("no job went to a coalition: raise --jobs or --cheaters");
    };
    let (max_cheater_profit, best_cheat) = if coalition_profit > single_profit {
        (
            coalition_profit,
            json!({ "kind": "coalition", "strategy": best_coalition_name }),
        )
    } else {
        (
            single_profit,
            json!({ "kind": "single", "strategy": best_strategy.name(), "stake": best_stake as f64 }),
        )
    };
    let honest_earnings = mean(cheat.honest_units().map(|u| cheat.work_profit(u)));
    let honest_earnings_alone = mean(honest.honest_units().map(|u| honest.work_profit(u)));
    let honest_windfall = mean(
        cheat
            .honest_units()
            .map(|u| cheat.flow_of(u, cheat.units[u].provider).share as f64),
    );
    let detection_rate = cheater_caught as f64 / cheater_jobs.max(1) as f64;
    let honest_unpaid: u128 = runs.iter().map(|m| m.honest_unpaid().0).sum();
    let honest_delivered: u128 = runs.iter().map(|m| m.honest_unpaid().1).sum();
    let supply_conserved = runs.iter().all(|m| m.supply_ok);
    let unreconciled: usize = runs.iter().map(|m| m.unreconciled.len()).sum();
    let predictions_wrong: usize = runs.iter().map(|m| m.predictions_wrong).sum();
    let anomalies: usize = runs.iter().map(|m| m.anomalies.len()).sum();

    let values: Vec<u128> = w
        .jobs
        .iter()
        .map(|j| Amount::cost(j.ops, Amount(MAX_PRICE)).unwrap_or_default().0)
        .collect();
    let max_value = values.iter().copied().max().unwrap_or(0);
    let mean_ops =
        (w.jobs.iter().map(|j| j.ops as u128).sum::<u128>() / w.jobs.len().max(1) as u128) as u64;
    let mean_value = Amount::cost(mean_ops, Amount(CHEATER_PRICE))
        .unwrap_or_default()
        .0;
    let mean_fee = Amount::cost(mean_ops, Amount(MAX_PRICE))
        .unwrap_or_default()
        .0;
    let mut ineq = inequality(&params, max_value, max_value);
    if let Some(o) = ineq.as_object_mut() {
        o.insert("case".into(), json!("the workload's largest stage at the highest price, minimum stake, perfect reputation"));
        o.insert(
            "mean_stage".into(),
            inequality(&params, mean_value, mean_fee),
        );
    }

    Ok(json!({
        "bench": "verify",
        "ratio": audit_overhead / baseline.max(f64::MIN_POSITIVE),
        "audit_overhead": audit_overhead,
        "referee_fraction": referee_fraction,
        "max_cheater_profit": max_cheater_profit,
        "best_cheat": best_cheat,
        "max_single_cheater_profit": single_profit,
        "max_coalition_profit": coalition_profit,
        "honest_earnings": honest_earnings,
        "honest_unpaid": honest_unpaid as f64,
        "honest_delivered": honest_delivered as f64,
        "supply_conserved": supply_conserved,
        "bisection_rounds": rounds,
        "detection_rate": detection_rate,
        "inequality": ineq,
        "coalitions": coalition_figures,
        "audit": {
            "what": "audited stage-ops / stage-ops over the honest run's stages (Sampled, Params::default(), providers of varied stake, price and reputation; auditors drawn by stake)",
            "value": audit_overhead,
            "expected_from_ledger_probabilities": honest.expected_overhead(),
            "baseline_audited_overhead": baseline,
            "ratio": audit_overhead / baseline.max(f64::MIN_POSITIVE),
            "stages": honest.units.len(),
            "audited_stages": honest.audited_stages,
            "reputation": {
                "min": scores.iter().copied().fold(f64::INFINITY, f64::min),
                "mean": mean(scores.iter().copied()),
                "max": scores.iter().copied().fold(0.0, f64::max),
            },
            "by_stake": by_stake,
        },
        "referee": {
            "what": "ops the referee meters re-executing the disputed layer / ops of the whole job (an audit re-executes all of them); one real dispute per layer",
            "model": MODEL,
            "input_tokens": d.input_tokens,
            "layers": d.layers,
            "layer_ops": d.layer_ops,
            "job_ops": d.job_ops,
            "job_ops_model_run": d.run_ops,
            "layers_reexecuted": referee_layers,
            "fraction_max": referee_fraction,
            "fraction_min": fractions.iter().copied().fold(f64::INFINITY, f64::min),
            "fraction_mean": mean(fractions.iter().copied()),
            "disputes": per_layer,
        },
        "bisection": {
            "rounds": rounds,
            "rounds_per_dispute": d.disputes.iter().map(|x| x.rounds).collect::<Vec<_>>(),
            "layers": d.layers,
            "trace_leaves": leaves,
            "ledger_bound": max_rounds(leaves),
            "ceil_log2_layers": ceil_log2(d.layers as u32),
            "ceil_log2_layers_plus_1": ceil_log2(leaves),
        },
        "simulation": {
            "method": "the ledger's own State (Params::default()) applying every block: jobs, audit draws (beacon per block from a seeded stream; auditors and second replicas drawn by stake), audit commit-reveal, disputes, slashes, availability claims and payments are the ledger's; traces are the protocol test model's over tiny-gpt's layer count with each job's real metered ops; no outside challengers (audits only)",
            "seed": w.seed,
            "jobs": cheat.jobs.len(),
            "pipelines_share": args.pipelines,
            "cheater_share": args.cheaters,
            "coalition_identities": args.coalition,
            "cheater_jobs": cheater_jobs,
            "detection_rate": detection_rate,
            "compute_cost_per_mega_op": w.compute_cost,
            "max_cheater_profit": max_cheater_profit,
            "best_cheat": { "strategy": best_strategy.name(), "stake": best_stake as f64 },
            "honest_earnings": honest_earnings,
            "honest_earnings_without_cheaters": honest_earnings_alone,
            "honest_slash_shares_per_stage": honest_windfall,
            "cheat_to_honest_ratio": max_cheater_profit / honest_earnings,
            "honest_providers_slashed": runs.iter().map(|m| m.honest_slashed).sum::<usize>(),
            "outcomes_not_as_modelled": single_mismatches + coalition_mismatches,
            "audit_predictions_wrong": predictions_wrong,
            "unreconciled_accounts": unreconciled,
            "anomalies": anomalies,
            "strategies": strategies,
        },
        "runs": runs.iter().map(|m| m.summary()).collect::<Vec<_>>(),
        "params": {
            "audit_ppm": params.audit_ppm,
            "audit_min_ppm": params.audit_min_ppm,
            "slash_ppm": params.slash_ppm,
            "min_provider_stake": params.min_provider_stake.0 as f64,
            "miss_penalty_ppm": params.miss_penalty_ppm,
            "min_fee": params.min_fee.0 as f64,
            "fee_per_slot": params.fee_per_slot.0 as f64,
            "unbonding_delay": params.unbonding_delay,
        },
    }))
}

fn print_text(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!(
        "verify bench ({} jobs per market run)",
        r["simulation"]["jobs"]
    );
    println!(
        "  audit overhead        {:.4} of job compute (Audited baseline {:.2})   ratio {:.4}",
        f(&r["audit_overhead"]),
        f(&r["audit"]["baseline_audited_overhead"]),
        f(&r["ratio"]),
    );
    println!(
        "  referee               {:.4} of a job's ops at most ({} layer re-executed of {})",
        f(&r["referee_fraction"]),
        r["referee"]["layers_reexecuted"],
        r["referee"]["layers"],
    );
    println!(
        "  bisection             {} rounds (ledger bound {})",
        r["bisection_rounds"], r["bisection"]["ledger_bound"],
    );
    let t = &r["training_referee"];
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
        "  best cheat            {:.2} per job ({}){}; honest {:.2} per stage",
        f(&r["max_cheater_profit"]),
        r["best_cheat"]["strategy"],
        if f(&r["max_cheater_profit"]) < 0.0 {
            ""
        } else {
            "  ← CHEATING PAYS"
        },
        f(&r["honest_earnings"]),
    );
    if let Some(cs) = r["coalitions"].as_object() {
        for (name, c) in cs {
            println!(
                "  {:<21} {:.2} per job",
                name,
                f(&c["expected_profit_per_job"])
            );
        }
    }
    println!("  detection rate        {:.4}", f(&r["detection_rate"]));
    println!(
        "  honest unpaid         {} of {} delivered",
        f(&r["honest_unpaid"]),
        f(&r["honest_delivered"])
    );
    let i = &r["inequality"];
    println!(
        "  audit inequality      p·(1−c)·S ≥ (1−p)·V + p·c·(V+F): {:.2} ≥ {:.2} at p = {:.4} \
         (V = {}, F = {}, stake = {}, c = {})",
        f(&i["expected_slash"]),
        f(&i["expected_gain"]),
        f(&i["p"]),
        i["stage_value"],
        i["audit_fee_bound"],
        i["stake"],
        i["collusion_share"],
    );
}
