//! `agentic bench verify`: what verification costs, and why cheating does not pay.
//!
//! ```text
//!  1. dispute (real compute, real ledger)        tiny-gpt, one stage of all its layers
//!     cheater perturbs layer k ─▶ Audited job: the auditor recomputes and disagrees
//!       ─▶ Bisect rounds, both parties opening their real traces with Merkle proofs
//!       ─▶ the referee re-executes layer k alone (compute runtime, metered) ─▶ slash
//!     referee_fraction = ops(layer k) / ops(whole job);   rounds vs ⌈log2⌉
//!
//!  2. market (the ledger's own State at Params::default())
//!     seeded PRNG ─▶ N one-stage jobs (tiny-gpt input shapes, metered ops), placed on
//!     honest providers (stakes 10k–1M, prices 8–12, joining over the first half of the
//!     run) or, with probability f, on cheaters (6 strategies × stakes 10k / 100k / 1M);
//!     auditors and second replicas come from an honest pool the matcher picks
//!        honest run     Sampled, f = 0   → audit_overhead = audited stage-ops / stage-ops
//!        baseline run   Audited, f = 0   → every stage re-executed (the same jobs)
//!        cheater run    Sampled, f       → detection, profit per strategy, honest earnings
//!
//!  3. the inequality at the defaults   p·S ≥ (1 − p)·V   (State::audit_probability_for)
//! ```
//!
//! # The market
//!
//! Every job, audit, dispute, slash and payment is the ledger's: the bench only signs the
//! transactions each actor would send and applies blocks (`State::apply_block`, each
//! block's beacon drawn from the seeded stream, so the audit draws vary per block). Traces
//! in the market are the protocol test model's (`test_utils::Trace`: layer `l` maps `x` to
//! `blake3(model, l, x)`, refereed by `TestReferee`), over the real tiny-gpt layer count,
//! with the real metered ops of each job's input shape; the dispute of part 1 is the
//! one that runs the real compute runtime. Nobody challenges from outside, so detection
//! comes from audits alone (a lower bound).
//!
//! Cheating strategies (each a provider that behaves so on every job it takes):
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
//! A provider's profit on a job = payment − slash − missed-deadline penalty − its
//! transaction fees − compute cost (`--compute-cost` per mega-op it actually computed).
//! The *expected* profit of a job takes the ledger's audit probability `p` for it (from
//! the reputation, value and stake the ledger sees when the stage is revealed) and
//! weighs the two outcomes the ledger produces (paid `V` when not audited; slashed
//! `S = slash_ppm × stake`, unpaid, when audited); the realized profit is what happened
//! on this run's draws. `max_cheater_profit` is the best expected profit per job over
//! every (strategy, stake) a cheater could choose.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use agentic_compute::metering::{InputShape, OpCounter};
use agentic_compute::registry;
use agentic_compute::{Activation, Model};
use agentic_protocol::bisection::max_rounds;
use agentic_protocol::merkle;
use agentic_protocol::referee::{Referee, RefereeError};
use agentic_protocol::reputation::ReputationParams;
use agentic_protocol::state::{BlockOutcome, DisputePhase, JobStatus, StagePhase};
use agentic_protocol::test_utils::{
    address_of, job_spec, key, layer_output, offer, salt_for, GenesisBuilder, TestReferee,
    Trace as TestTrace,
};
use agentic_protocol::tx::{SignedTx, StageResult, Tx};
use agentic_protocol::types::{Amount, VerificationLevel, PPM};
use agentic_protocol::{
    Address, Block, DisputeId, Event, Genesis, Hash, JobId, Params, State, TxBody, TxError,
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
    /// Jobs in each market run (honest, audited baseline, with cheaters).
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Share of jobs placed on cheating providers in the cheater run.
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
    /// Seed of the PRNG (input shapes, placements, beacons).
    #[arg(long, default_value_t = 6)]
    pub seed: u64,
}

const MODEL: &str = "tiny-gpt";
/// The input of the real disputes (tiny-gpt's byte tokenizer: one token per byte).
const DISPUTE_TEXT: &str = "Only one layer is ever re-executed by the validators.";
const CHAIN: u64 = 66;
/// Honest pool (auditors, second replicas): cheapest, so the matcher picks it.
const POOL: usize = 8;
const POOL_PRICE: u128 = 5;
const POOL_STAKE: u128 = 1_000_000;
/// Cheater stakes: the minimum, 10×, 100×.
const CHEATER_STAKES: [u128; 3] = [10_000, 100_000, 1_000_000];
const CHEATER_PRICE: u128 = 10;
/// Job max price (the dearest honest provider).
const MAX_PRICE: u128 = 12;
const CAPACITY: u32 = 100_000;
/// Blocks a market run may take past its last submission.
const TAIL_BLOCKS: u64 = 1_000;

pub fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(args.jobs > 0, "--jobs must be positive");
    ensure!(args.jobs_per_block > 0, "--jobs-per-block must be positive");
    ensure!(args.providers > 0, "--providers must be positive");
    ensure!(
        (0.0..=1.0).contains(&args.cheaters),
        "--cheaters is a share in 0..=1"
    );
    let loaded = registry::load(MODEL).context("load tiny-gpt")?;
    let model = &loaded.model;
    let progress = ProgressBar::new(3 * args.jobs as u64 + model.layers() as u64).with_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            .context("progress template")?,
    );

    progress.set_message("real disputes: one per layer of tiny-gpt");
    let input = loaded
        .encode(&[DISPUTE_TEXT])
        .context("tokenize the dispute input")?;
    let disputes = real_disputes(model, &input, &progress)?;

    let workload = Workload::generate(args, model)?;
    let honest = Market::run(
        &workload,
        VerificationLevel::Sampled,
        0.0,
        "honest",
        &progress,
    )?;
    let audited = Market::run(
        &workload,
        VerificationLevel::Audited,
        0.0,
        "audited baseline",
        &progress,
    )?;
    let cheat = Market::run(
        &workload,
        VerificationLevel::Sampled,
        args.cheaters,
        "with cheaters",
        &progress,
    )?;
    progress.finish_and_clear();

    let report = report(args, &workload, &disputes, &honest, &audited, &cheat)?;
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
        Ok(Hash(out.hash().0))
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

/// A party's trace over real activations: leaves, root, and what it claims.
struct RealTrace {
    leaves: Vec<[u8; 32]>,
}

impl RealTrace {
    fn of(acts: &[Activation]) -> Self {
        RealTrace {
            leaves: acts.iter().map(|a| a.hash().0).collect(),
        }
    }
    fn result(&self) -> StageResult {
        StageResult {
            input: Hash(self.leaves[0]),
            output: Hash(*self.leaves.last().unwrap_or(&self.leaves[0])),
            trace_root: Hash(merkle::root(&self.leaves)),
        }
    }
    fn open(&self, i: u32) -> (Hash, Vec<Hash>) {
        let proof = merkle::proof(&self.leaves, i as usize)
            .unwrap_or_default()
            .into_iter()
            .map(Hash)
            .collect();
        (Hash(self.leaves[i as usize]), proof)
    }
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
    let honest_trace = RealTrace::of(&honest);
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
    let good = RealTrace::of(honest);
    let bad = RealTrace::of(&cheated);
    let job_ops: u64 = model
        .meter(&input.input_shape())?
        .iter()
        .sum::<u64>()
        .max(1);
    let (requester, cheater, auditor) = (key(1), key(2), key(3));
    let genesis = GenesisBuilder::new(CHAIN)
        .account(address_of(&requester), 1_000_000_000_000, 0)
        .account(address_of(&cheater), 1_000_000_000, 100_000)
        .account(address_of(&auditor), 1_000_000_000, 100_000)
        .build();
    // What the parties published: every activation of both traces.
    let store = honest
        .iter()
        .chain(&cheated)
        .map(|a| (Hash(a.hash().0), a.clone()))
        .collect();
    let referee = RuntimeReferee {
        model,
        model_hash,
        store,
        calls: RefCell::new(Vec::new()),
    };
    let mut ledger = Ledger::new(&genesis, k as u64)?;
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
    ledger.produce_ok(&referee)?;
    let mut spec = job_spec(
        model_hash,
        Hash(input.hash().0),
        &[(model.layers() as u32, job_ops)],
        10,
        VerificationLevel::Audited,
    );
    spec.placement = vec![address_of(&cheater)];
    ledger.push(&requester, TxBody::SubmitJob { spec }, Tag::none());
    let out = ledger.produce_ok(&referee)?;
    let job = out
        .events
        .iter()
        .find_map(|e| match e.event {
            Event::JobSubmitted { job, .. } => Some(job),
            _ => None,
        })
        .context("the job was not submitted")?;
    let claim = bad.result();
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
    ledger.produce_ok(&referee)?;
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
    let out = ledger.produce_ok(&referee)?;
    ensure!(
        out.events.iter().any(|e| matches!(
            e.event,
            Event::AuditAssigned { auditor: a, .. } if a == address_of(&auditor)
        )),
        "the Audited stage got no auditor"
    );
    ledger.push(
        &auditor,
        TxBody::AuditReport {
            job,
            stage: 0,
            result: good.result(),
        },
        Tag::none(),
    );
    let out = ledger.produce_ok(&referee)?;
    let dispute = out
        .events
        .iter()
        .find_map(|e| match e.event {
            Event::DisputeOpened { dispute, .. } => Some(dispute),
            _ => None,
        })
        .context("the auditor's disagreement opened no dispute")?;
    let mut events: Vec<Event> = out.events.into_iter().map(|e| e.event).collect();
    for _ in 0..64 {
        let d = ledger.state.dispute(dispute).context("the dispute")?;
        if d.phase != DisputePhase::Bisecting {
            break;
        }
        let mid = d
            .game
            .midpoint()
            .context("a bisecting game has a midpoint")?;
        for (party, trace) in [(&cheater, &bad), (&auditor, &good)] {
            let (leaf, proof) = trace.open(mid);
            ledger.push(
                party,
                TxBody::Bisect {
                    dispute,
                    leaf,
                    proof,
                },
                Tag::none(),
            );
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
        winner == Some(Some(address_of(&auditor))),
        "the dispute over layer {k} ended {winner:?}, not with the auditor winning"
    );
    let slashed = events
        .iter()
        .filter_map(|e| match e {
            Event::Slashed { who, amount, .. } if *who == address_of(&cheater) => Some(amount.0),
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

// ----------------------------------------------------------------------------------------
// The ledger driver
// ----------------------------------------------------------------------------------------

/// What a transaction was for (fee attribution and the rejections we expect).
#[derive(Clone, Copy, Debug)]
struct Tag {
    /// Who signed it (set by [`Ledger::push`]).
    signer: Address,
    /// The market job record it belongs to.
    job: Option<usize>,
    /// The rejection the ledger must answer with (a cheater's doomed attempt).
    expect: Option<Expect>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A copier's reveal of another replica's result against its own commitment.
    CommitmentMismatch,
    /// A random-output cheater's move, which has no valid Merkle proof.
    BadProof,
}

impl Tag {
    fn none() -> Self {
        Tag {
            signer: Address::default(),
            job: None,
            expect: None,
        }
    }
    fn job(r: usize) -> Self {
        Tag {
            signer: Address::default(),
            job: Some(r),
            expect: None,
        }
    }
}

/// A ledger applied block by block: signs with per-account nonces (re-read after every
/// block, as rejected transactions use none), draws each block's beacon from a seeded
/// stream.
struct Ledger {
    state: State,
    pending: Vec<SignedTx>,
    tags: Vec<Tag>,
    nonces: BTreeMap<Address, u64>,
    beacons: ChaCha8Rng,
}

impl Ledger {
    fn new(genesis: &Genesis, seed: u64) -> anyhow::Result<Self> {
        Ok(Ledger {
            state: State::new(genesis).context("genesis")?,
            pending: Vec::new(),
            tags: Vec::new(),
            nonces: BTreeMap::new(),
            beacons: ChaCha8Rng::seed_from_u64(seed ^ 0xbeac_0000),
        })
    }

    fn push(&mut self, key: &PrivateKey, body: TxBody, tag: Tag) {
        let who = address_of(key);
        let tag = Tag { signer: who, ..tag };
        let nonce = *self
            .nonces
            .entry(who)
            .or_insert_with(|| self.state.nonce(&who));
        self.nonces.insert(who, nonce + 1);
        self.pending.push(SignedTx::sign(
            key,
            Tx {
                chain_id: self.state.chain_id(),
                nonce,
                fee: self.state.params().min_fee,
                body,
            },
        ));
        self.tags.push(tag);
    }

    /// Applies a block of the queued transactions; returns its outcome and their tags.
    fn produce(&mut self, referee: &dyn Referee) -> anyhow::Result<(BlockOutcome, Vec<Tag>)> {
        let block = Block {
            height: self.state.height().plus(1),
            beacon: self.beacons.gen(),
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

// ----------------------------------------------------------------------------------------
// Part 2: the market
// ----------------------------------------------------------------------------------------

/// How a provider behaves on every job it takes (see the module docs' table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Strategy {
    Honest,
    WrongOutput,
    PerturbedLayer,
    SmallerModel,
    RandomOutput,
    CopyReplica,
    SilentInDispute,
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
        }
    }

    fn what(self) -> &'static str {
        match self {
            Strategy::Honest => "computes every layer and reports it",
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
        }
    }

    /// Whether it answers dispute rounds with its trace.
    fn plays(self) -> bool {
        matches!(
            self,
            Strategy::Honest
                | Strategy::WrongOutput
                | Strategy::PerturbedLayer
                | Strategy::SmallerModel
        )
    }
}

/// One job of the workload (the same in every market run).
#[derive(Clone, Debug)]
struct JobPlan {
    /// Metered ops of each tiny-gpt layer for this input shape.
    layer_ops: Vec<u64>,
    ops: u64,
    input: Hash,
    /// Uniform in [0, 1): below the cheater share, the job goes to a cheater.
    cheat_draw: f64,
    /// Which qualified provider takes it.
    pick: u64,
}

struct Workload {
    jobs: Vec<JobPlan>,
    jobs_per_block: usize,
    providers: usize,
    compute_cost: u64,
    seed: u64,
    model: Hash,
    layers: u32,
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
                pick: rng.gen(),
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
        })
    }

    fn submit_blocks(&self) -> u64 {
        self.jobs.len().div_ceil(self.jobs_per_block) as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Worker,
    Pool,
}

struct Actor {
    key: PrivateKey,
    addr: Address,
    role: Role,
    strategy: Strategy,
    stake: u128,
    price: u128,
    /// Block at which it registers.
    join: u64,
}

/// What one provider did for one job's stage, fixed when it first acts.
struct Work {
    /// The trace it can open in a dispute (none for random output and copying).
    trace: Option<TestTrace>,
    /// What it reveals (a copier has nothing of its own).
    result: Option<StageResult>,
    salt: Hash,
    commitment: Hash,
    computed_ops: u64,
}

/// One job of a market run, from the placed provider's point of view.
#[derive(Clone, Debug, Default)]
struct JobRecord {
    id: Option<JobId>,
    /// Index of the provider first matched to replica 0 (the placed one, unless it no
    /// longer qualified) in the actors.
    provider: usize,
    /// Whether replica 0 was matched yet.
    matched: bool,
    ops: u64,
    /// Its payment when paid: ops × its price.
    value: u128,
    /// The ledger's audit probability (ppm) for the stage, when it was revealed.
    p_ppm: Option<u32>,
    score_ppm: u32,
    stake_at_reveal: u128,
    audited: bool,
    dispute: Option<DisputeId>,
    rounds: u32,
    paid: u128,
    slashed: u128,
    penalty: u128,
    fees: u128,
    computed_ops: u64,
    status: Option<JobStatus>,
}

/// Figures of one market run.
struct Market {
    label: &'static str,
    level: VerificationLevel,
    cheater_share: f64,
    actors: Vec<Actor>,
    records: Vec<JobRecord>,
    blocks: u64,
    stage_ops: u128,
    audited_ops: u128,
    audited_stages: usize,
    honest_slashed: usize,
    honest_missed: usize,
    rejections: BTreeMap<&'static str, usize>,
    disputes: usize,
    pool_earned: u128,
    supply_ok: bool,
    min_fee: u128,
    compute_cost: u64,
    rounds_bound: u32,
}

/// A transaction an actor sends next: `(actor, body, tag)`.
type Action = (usize, TxBody, Tag);

impl Market {
    fn actors(w: &Workload, cheaters: bool) -> Vec<Actor> {
        let mut actors = Vec::new();
        let mut seed = 100;
        let mut next_key = || {
            seed += 1;
            let k = key(seed);
            (address_of(&k), k)
        };
        for _ in 0..POOL {
            let (addr, key) = next_key();
            actors.push(Actor {
                key,
                addr,
                role: Role::Pool,
                strategy: Strategy::Honest,
                stake: POOL_STAKE,
                price: POOL_PRICE,
                join: 1,
            });
        }
        let spread = (w.submit_blocks() / 2).max(1);
        for i in 0..w.providers {
            let (addr, key) = next_key();
            // Stakes 10k, 31.6k, 100k, 316k, 1M; prices 8–12; joining over the first half.
            let stake = [10_000, 31_623, 100_000, 316_228, 1_000_000][i % 5];
            actors.push(Actor {
                key,
                addr,
                role: Role::Worker,
                strategy: Strategy::Honest,
                stake,
                price: 8 + ((i * 3) % 5) as u128,
                join: 1 + (i as u64 * spread) / w.providers as u64,
            });
        }
        if cheaters {
            for s in Strategy::CHEATS {
                for stake in CHEATER_STAKES {
                    let (addr, key) = next_key();
                    actors.push(Actor {
                        key,
                        addr,
                        role: Role::Worker,
                        strategy: s,
                        stake,
                        price: CHEATER_PRICE,
                        join: 1,
                    });
                }
            }
        }
        actors
    }

    fn run(
        w: &Workload,
        level: VerificationLevel,
        cheater_share: f64,
        label: &'static str,
        progress: &ProgressBar,
    ) -> anyhow::Result<Market> {
        progress.set_message(format!("market: {} jobs, {label}", w.jobs.len()));
        let params = Params::default();
        let actors = Market::actors(w, cheater_share > 0.0);
        let requester = key(1);
        let mut genesis = GenesisBuilder::new(CHAIN).params(params.clone()).account(
            address_of(&requester),
            u128::from(u64::MAX),
            0,
        );
        for a in &actors {
            genesis = genesis.account(a.addr, 1_000_000_000_000, a.stake);
        }
        let genesis = genesis.build();
        let index: HashMap<Address, usize> = actors
            .iter()
            .enumerate()
            .map(|(i, a)| (a.addr, i))
            .collect();
        let mut ledger = Ledger::new(&genesis, w.seed)?;
        let referee = TestReferee::default();
        let rp = ReputationParams {
            half_life_blocks: params.reputation_half_life,
            stake_per_value_ppm: params.reputation_stake_ratio,
            ..ReputationParams::default()
        };
        let min_stake = params.min_provider_stake.0;

        let mut m = Market {
            label,
            level,
            cheater_share,
            records: Vec::with_capacity(w.jobs.len()),
            blocks: 0,
            stage_ops: 0,
            audited_ops: 0,
            audited_stages: 0,
            honest_slashed: 0,
            honest_missed: 0,
            rejections: BTreeMap::new(),
            disputes: 0,
            pool_earned: 0,
            supply_ok: false,
            min_fee: params.min_fee.0,
            compute_cost: w.compute_cost,
            rounds_bound: max_rounds(w.layers + 1),
            actors,
        };
        let mut by_id: HashMap<JobId, usize> = HashMap::new();
        let mut by_dispute: HashMap<DisputeId, usize> = HashMap::new();
        let mut active: Vec<JobId> = Vec::new();
        let mut works: HashMap<(JobId, Address), Work> = HashMap::new();
        let mut sent: HashSet<(u64, Address, u8, u32)> = HashSet::new();
        let mut registered = vec![false; m.actors.len()];
        let mut next_job = 0usize;
        let mut unexpected: Vec<String> = Vec::new();
        let mut doomed: Vec<Action> = Vec::new();
        let last_block = w.submit_blocks() + TAIL_BLOCKS;
        let mut done = 0usize;

        loop {
            let height = ledger.state.height().0 + 1;
            if height > last_block {
                bail!(
                    "{label}: {} jobs still open after {} blocks",
                    active.len(),
                    height - 1
                );
            }
            // Registrations due.
            for (i, a) in m.actors.iter().enumerate() {
                if !registered[i] && a.join <= height {
                    registered[i] = true;
                    ledger.push(
                        &a.key,
                        TxBody::RegisterProvider {
                            offer: offer(a.price, CAPACITY),
                            stake: Amount::ZERO,
                        },
                        Tag::none(),
                    );
                }
            }
            // Re-bond what slashes and penalties took (placed before this block's jobs).
            let mut topped: HashMap<usize, u128> = HashMap::new();
            for (i, a) in m.actors.iter().enumerate() {
                let bonded = ledger.state.account(&a.addr).bonded.0;
                if bonded < a.stake {
                    topped.insert(i, a.stake - bonded);
                    ledger.push(
                        &a.key,
                        TxBody::Bond {
                            amount: Amount(a.stake - bonded),
                        },
                        Tag::none(),
                    );
                }
            }
            // This block's new jobs.
            if height >= 2 {
                let qualified = |i: usize, a: &Actor| {
                    a.role == Role::Worker
                        && ledger.state.provider(&a.addr).is_some()
                        && ledger.state.account(&a.addr).bonded.0 + topped.get(&i).unwrap_or(&0)
                            >= min_stake
                };
                let honest: Vec<usize> = m
                    .actors
                    .iter()
                    .enumerate()
                    .filter(|(i, a)| a.strategy == Strategy::Honest && qualified(*i, a))
                    .map(|(i, _)| i)
                    .collect();
                let cheats: Vec<usize> = m
                    .actors
                    .iter()
                    .enumerate()
                    .filter(|(i, a)| a.strategy != Strategy::Honest && qualified(*i, a))
                    .map(|(i, _)| i)
                    .collect();
                ensure!(!honest.is_empty(), "{label}: no honest provider registered");
                let end = (next_job + w.jobs_per_block).min(w.jobs.len());
                while next_job < end {
                    let plan = &w.jobs[next_job];
                    let pool = if plan.cheat_draw < cheater_share && !cheats.is_empty() {
                        &cheats
                    } else {
                        &honest
                    };
                    let provider = pool[(plan.pick % pool.len() as u64) as usize];
                    let a = &m.actors[provider];
                    let replicas = if a.strategy == Strategy::CopyReplica {
                        2
                    } else {
                        1
                    };
                    let mut spec = job_spec(
                        w.model,
                        plan.input,
                        &[(w.layers, plan.ops)],
                        MAX_PRICE,
                        level,
                    );
                    spec.requirements.replicas = replicas;
                    spec.placement = vec![a.addr];
                    let r = m.records.len();
                    m.records.push(JobRecord {
                        provider,
                        ops: plan.ops,
                        value: Amount::cost(plan.ops, Amount(a.price))
                            .unwrap_or_default()
                            .0,
                        ..JobRecord::default()
                    });
                    m.stage_ops += u128::from(plan.ops);
                    ledger.push(&requester, TxBody::SubmitJob { spec }, Tag::job(r));
                    next_job += 1;
                }
            }
            // Every actor's next move on the open jobs.
            let mut actions: Vec<Action> = Vec::new();
            for &id in &active {
                let Some(job) = ledger.state.job(id) else {
                    continue;
                };
                let r = by_id[&id];
                let plan = &w.jobs[r];
                let st = &job.stages[0];
                match st.phase {
                    StagePhase::Running { reveal_deadline } => {
                        let revealed: Vec<StageResult> = st
                            .slots
                            .iter()
                            .filter_map(|s| s.assignment.as_ref()?.result)
                            .collect();
                        let unrevealed = st
                            .slots
                            .iter()
                            .filter(|s| s.assignment.as_ref().is_some_and(|a| a.result.is_none()))
                            .count();
                        for a in st.slots.iter().filter_map(|s| s.assignment.as_ref()) {
                            let who = index[&a.provider];
                            let actor = &m.actors[who];
                            let work = works.entry((id, a.provider)).or_insert_with(|| {
                                make_work(actor.strategy, &a.provider, id, plan, w)
                            });
                            if a.commitment.is_none() {
                                if sent.insert((id.0, a.provider, 0, 0)) {
                                    if who == m.records[r].provider {
                                        m.records[r].computed_ops = work.computed_ops;
                                    }
                                    actions.push((
                                        who,
                                        TxBody::CommitResult {
                                            job: id,
                                            stage: 0,
                                            commitment: work.commitment,
                                        },
                                        Tag::job(r),
                                    ));
                                }
                                continue;
                            }
                            if reveal_deadline.is_none() || a.result.is_some() {
                                continue;
                            }
                            match (work.result, actor.strategy) {
                                (None, Strategy::CopyReplica) => {
                                    // Copy once the other replica has revealed.
                                    if let Some(copied) = revealed.first() {
                                        if sent.insert((id.0, a.provider, 1, 0)) {
                                            actions.push((
                                                who,
                                                TxBody::RevealResult {
                                                    job: id,
                                                    stage: 0,
                                                    result: *copied,
                                                    salt: work.salt,
                                                },
                                                Tag {
                                                    expect: Some(Expect::CommitmentMismatch),
                                                    ..Tag::job(r)
                                                },
                                            ));
                                        }
                                    }
                                }
                                (None, _) => {}
                                (Some(result), _) => {
                                    if !sent.insert((id.0, a.provider, 1, 0)) {
                                        continue;
                                    }
                                    // The last reveal draws the audit: note the ledger's
                                    // probability for it (one replica: its provider's).
                                    if unrevealed == 1
                                        && who == m.records[r].provider
                                        && st.slots.len() == 1
                                    {
                                        let stake = ledger.state.account(&a.provider).bonded.0
                                            + topped.get(&who).unwrap_or(&0);
                                        let score = ledger
                                            .state
                                            .provider(&a.provider)
                                            .map(|p| p.reputation.score_ppm(height, stake, &rp))
                                            .unwrap_or(0);
                                        let rec = &mut m.records[r];
                                        rec.score_ppm = score;
                                        rec.stake_at_reveal = stake;
                                        rec.p_ppm = Some(State::audit_probability_for(
                                            &params,
                                            score,
                                            Amount::cost(plan.ops, a.price)
                                                .unwrap_or(Amount(u128::MAX)),
                                            Amount(stake),
                                        ));
                                    }
                                    actions.push((
                                        who,
                                        TxBody::RevealResult {
                                            job: id,
                                            stage: 0,
                                            result,
                                            salt: work.salt,
                                        },
                                        Tag::job(r),
                                    ));
                                }
                            }
                        }
                    }
                    StagePhase::Auditing { auditor, .. } if sent.insert((id.0, auditor, 2, 0)) => {
                        let honest = TestTrace::honest(&w.model, 0, w.layers, plan.input);
                        actions.push((
                            index[&auditor],
                            TxBody::AuditReport {
                                job: id,
                                stage: 0,
                                result: honest.result(),
                            },
                            Tag::job(r),
                        ));
                    }
                    StagePhase::Disputed { dispute } => {
                        let Some(d) = ledger.state.dispute(dispute) else {
                            continue;
                        };
                        if d.phase != DisputePhase::Bisecting {
                            continue;
                        }
                        let Some(mid) = d.game.midpoint() else {
                            continue;
                        };
                        let round = d.game.round();
                        for (party, moved) in [
                            (d.defendant, d.defendant_move.is_some()),
                            (d.challenger, d.challenger_move.is_some()),
                        ] {
                            if moved || !sent.insert((dispute.0, party, 3, round)) {
                                continue;
                            }
                            let who = index[&party];
                            let strategy = m.actors[who].strategy;
                            let trace = works.get(&(id, party)).and_then(|w| w.trace.clone());
                            let trace = match m.actors[who].role {
                                // The auditor's trace is the honest one.
                                Role::Pool => trace.or_else(|| {
                                    Some(TestTrace::honest(&w.model, 0, w.layers, plan.input))
                                }),
                                Role::Worker => trace,
                            };
                            match (strategy.plays(), trace) {
                                (true, Some(t)) => {
                                    let (leaf, proof) = t.open(mid);
                                    actions.push((
                                        who,
                                        TxBody::Bisect {
                                            dispute,
                                            leaf,
                                            proof,
                                        },
                                        Tag::job(r),
                                    ));
                                }
                                _ if strategy == Strategy::RandomOutput => {
                                    // It answers, but nothing it says opens its root.
                                    let depth =
                                        (u32::BITS - d.game.leaves().leading_zeros()) as usize;
                                    let junk = Hash::digest(
                                        "agentic bench verify junk",
                                        &[&dispute.0.to_be_bytes(), &round.to_be_bytes()],
                                    );
                                    actions.push((
                                        who,
                                        TxBody::Bisect {
                                            dispute,
                                            leaf: junk,
                                            proof: vec![junk; depth],
                                        },
                                        Tag {
                                            expect: Some(Expect::BadProof),
                                            ..Tag::job(r)
                                        },
                                    ));
                                }
                                _ => {} // silent
                            }
                        }
                    }
                    _ => {}
                }
            }
            // A doomed attempt (one the ledger must refuse) uses no nonce, so it goes last
            // in the block and one per signer; the rest wait for the next block.
            let (regular, new_doomed): (Vec<Action>, Vec<Action>) =
                actions.into_iter().partition(|a| a.2.expect.is_none());
            doomed.extend(new_doomed);
            for (who, body, tag) in regular {
                let k = m.actors[who].key.clone();
                ledger.push(&k, body, tag);
            }
            let mut signers = HashSet::new();
            for (who, body, tag) in std::mem::take(&mut doomed) {
                if signers.insert(who) {
                    let k = m.actors[who].key.clone();
                    ledger.push(&k, body, tag);
                } else {
                    doomed.push((who, body, tag));
                }
            }

            let (out, tags) = ledger.produce(&referee)?;
            m.blocks = out.height.0;
            // Receipts: fees of the placed provider, rejections we expect.
            for (receipt, tag) in out.receipts.iter().zip(&tags) {
                match receipt {
                    Ok(()) => {
                        if let Some(r) = tag.job {
                            if m.actors[m.records[r].provider].addr == tag.signer {
                                m.records[r].fees += m.min_fee;
                            }
                        }
                    }
                    Err(e) => match (tag.expect, e) {
                        (Some(Expect::CommitmentMismatch), TxError::CommitmentMismatch) => {
                            *m.rejections.entry("copied_reveal_refused").or_default() += 1;
                        }
                        (Some(Expect::BadProof), TxError::BadProof { .. }) => {
                            *m.rejections
                                .entry("move_without_proof_refused")
                                .or_default() += 1;
                        }
                        // Held back a block behind the signer's other doomed attempt, and
                        // by then too late (the window or the round is over).
                        (
                            Some(_),
                            TxError::DeadlinePassed(_)
                            | TxError::DisputeNotOpen
                            | TxError::WrongPhase(_),
                        ) => {
                            *m.rejections.entry("late_attempt_refused").or_default() += 1;
                        }
                        _ => unexpected.push(format!("{e:?} (expected {:?})", tag.expect)),
                    },
                }
            }
            ensure!(
                unexpected.is_empty(),
                "{label}: unexpected rejections at block {}: {unexpected:?}",
                out.height.0
            );
            // Events.
            let mut slashes: Vec<(Address, u128)> = Vec::new();
            for rec in &out.events {
                match &rec.event {
                    Event::JobSubmitted { job, .. } => {
                        let tag = rec
                            .tx
                            .and_then(|t| tags.get(t as usize))
                            .and_then(|t| t.job)
                            .context("a job from an untagged transaction")?;
                        m.records[tag].id = Some(*job);
                        by_id.insert(*job, tag);
                        active.push(*job);
                    }
                    Event::StageAssigned {
                        job,
                        replica: 0,
                        provider,
                        price,
                        ..
                    } => {
                        // A placed provider that no longer qualified when matched (slashed
                        // in the block it was named) is replaced by the matcher: the job is
                        // its replacement's.
                        let r = by_id[job];
                        if !m.records[r].matched {
                            m.records[r].matched = true;
                            m.records[r].provider = index[provider];
                            m.records[r].value =
                                Amount::cost(m.records[r].ops, *price).unwrap_or_default().0;
                        }
                    }
                    Event::AuditAssigned { job, .. } => {
                        let r = by_id[job];
                        m.records[r].audited = true;
                        m.audited_stages += 1;
                        m.audited_ops += u128::from(m.records[r].ops);
                    }
                    Event::DisputeOpened { dispute, job, .. } => {
                        let r = by_id[job];
                        m.records[r].dispute = Some(*dispute);
                        by_dispute.insert(*dispute, r);
                        m.disputes += 1;
                    }
                    Event::BisectionNarrowed { dispute, .. } => {
                        if let Some(&r) = by_dispute.get(dispute) {
                            m.records[r].rounds += 1;
                        }
                    }
                    Event::Slashed { who, amount, .. } => {
                        if m.actors[index[who]].strategy == Strategy::Honest {
                            m.honest_slashed += 1;
                        }
                        slashes.push((*who, amount.0));
                    }
                    Event::DisputeResolved { dispute, .. } => {
                        if let Some(&r) = by_dispute.get(dispute) {
                            let placed = m.actors[m.records[r].provider].addr;
                            for (who, amount) in slashes.drain(..) {
                                if who == placed {
                                    m.records[r].slashed += amount;
                                }
                            }
                        }
                    }
                    Event::DeadlineMissed {
                        job,
                        provider,
                        penalty,
                        ..
                    } => {
                        let r = by_id[job];
                        if m.actors[index[provider]].strategy == Strategy::Honest {
                            m.honest_missed += 1;
                        }
                        if m.actors[m.records[r].provider].addr == *provider {
                            m.records[r].penalty += penalty.0;
                        }
                    }
                    Event::StagePaid {
                        job,
                        provider,
                        amount,
                        ..
                    } => {
                        let r = by_id[job];
                        if m.actors[m.records[r].provider].addr == *provider {
                            m.records[r].paid += amount.0;
                        } else {
                            m.pool_earned += amount.0;
                        }
                    }
                    Event::AuditAgreed { fee, .. } => m.pool_earned += fee.0,
                    Event::JobCompleted { job, .. } => {
                        m.records[by_id[job]].status = Some(JobStatus::Completed)
                    }
                    Event::JobFailed { job, .. } => {
                        m.records[by_id[job]].status = Some(JobStatus::Failed)
                    }
                    Event::JobCancelled { job, .. } => {
                        m.records[by_id[job]].status = Some(JobStatus::Cancelled)
                    }
                    _ => {}
                }
            }
            let before = active.len();
            active.retain(|id| m.records[by_id[id]].status.is_none());
            done += before - active.len();
            progress.inc((before - active.len()) as u64);
            if next_job == w.jobs.len() && active.is_empty() && done == w.jobs.len() {
                break;
            }
            if active.is_empty() && next_job == w.jobs.len() {
                bail!("{label}: {} jobs were never submitted", w.jobs.len() - done);
            }
        }
        m.supply_ok = ledger.state.total_supply_check();
        tracing::info!(
            label,
            blocks = m.blocks,
            audited = m.audited_stages,
            disputes = m.disputes,
            "market run finished"
        );
        Ok(m)
    }

    fn honest_records(&self) -> impl Iterator<Item = &JobRecord> {
        self.records
            .iter()
            .filter(|r| self.actors[r.provider].strategy == Strategy::Honest)
    }

    fn compute_cost(&self, ops: u64) -> f64 {
        ops as f64 * self.compute_cost as f64 / 1e6
    }

    fn realized_profit(&self, r: &JobRecord) -> f64 {
        r.paid as f64
            - r.slashed as f64
            - r.penalty as f64
            - r.fees as f64
            - self.compute_cost(r.computed_ops)
    }

    /// The job's profit in expectation over the ledger's audit draw (see the module docs).
    fn expected_profit(&self, r: &JobRecord) -> f64 {
        let actor = &self.actors[r.provider];
        let Some(p_ppm) = r.p_ppm.filter(|_| {
            actor.strategy != Strategy::Honest && actor.strategy != Strategy::CopyReplica
        }) else {
            return self.realized_profit(r);
        };
        let p = p_ppm as f64 / PPM as f64;
        let slash = Amount(r.stake_at_reveal)
            .mul_ppm(Params::default().slash_ppm)
            .0 as f64;
        let dispute_fees = if actor.strategy.plays() {
            (self.rounds_bound as u128 * self.min_fee) as f64
        } else {
            0.0
        };
        (1.0 - p) * r.value as f64
            - p * (slash + dispute_fees)
            - self.compute_cost(r.computed_ops)
            - (2 * self.min_fee) as f64
    }

    fn caught(r: &JobRecord) -> bool {
        r.slashed > 0 || r.penalty > 0 || r.status == Some(JobStatus::Failed)
    }

    fn overhead(&self) -> f64 {
        self.audited_ops as f64 / self.stage_ops.max(1) as f64
    }

    fn expected_overhead(&self) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for r in &self.records {
            if let Some(p) = r.p_ppm {
                num += p as f64 / PPM as f64 * r.ops as f64;
                den += r.ops as f64;
            }
        }
        if den > 0.0 {
            num / den
        } else {
            0.0
        }
    }

    fn summary(&self) -> Value {
        let completed = self
            .records
            .iter()
            .filter(|r| r.status == Some(JobStatus::Completed))
            .count();
        json!({
            "run": self.label,
            "verification": format!("{:?}", self.level),
            "cheater_share": self.cheater_share,
            "jobs": self.records.len(),
            "completed": completed,
            "failed": self.records.iter().filter(|r| r.status == Some(JobStatus::Failed)).count(),
            "blocks": self.blocks,
            "stage_ops": self.stage_ops as f64,
            "audited_stages": self.audited_stages,
            "audited_stage_ops": self.audited_ops as f64,
            "audit_overhead": self.overhead(),
            "disputes": self.disputes,
            "honest_providers_slashed": self.honest_slashed,
            "honest_deadline_misses": self.honest_missed,
            "refused_cheats": self.rejections,
            "auditor_pool_earned": self.pool_earned as f64,
            "supply_conserved": self.supply_ok,
        })
    }
}

/// What a provider of `strategy` computes, reveals and can open for a job.
fn make_work(strategy: Strategy, who: &Address, job: JobId, plan: &JobPlan, w: &Workload) -> Work {
    let layers = w.layers;
    let salt = salt_for(who, job, 0);
    let made_up = |i: u32| {
        Hash::digest(
            "agentic bench verify made-up leaf",
            &[&job.0.to_be_bytes(), &who.0, &i.to_be_bytes()],
        )
    };
    let all: u64 = plan.ops;
    let (trace, computed_ops) = match strategy {
        Strategy::Honest => (
            Some(TestTrace::honest(&w.model, 0, layers, plan.input)),
            all,
        ),
        Strategy::WrongOutput | Strategy::SilentInDispute => {
            let mut leaves = vec![plan.input];
            leaves.extend((1..=layers).map(made_up));
            (Some(TestTrace { leaves }), 0)
        }
        Strategy::PerturbedLayer => {
            let bad = (Hash::digest("agentic bench verify bad layer", &[&job.0.to_be_bytes()]).0[0]
                as u32)
                % layers;
            (
                Some(TestTrace::cheating(&w.model, 0, layers, plan.input, bad)),
                all,
            )
        }
        Strategy::SmallerModel => {
            // Embeddings, then the decoder blocks skipped (identity), then the head.
            let mut leaves = vec![plan.input];
            let mut x = layer_output(&w.model, 0, &plan.input);
            leaves.push(x);
            for _ in 1..layers.saturating_sub(1) {
                leaves.push(x);
            }
            if layers > 1 {
                x = layer_output(&w.model, layers - 1, &x);
                leaves.push(x);
            }
            let ops = plan.layer_ops.first().copied().unwrap_or(0)
                + if layers > 1 {
                    plan.layer_ops.last().copied().unwrap_or(0)
                } else {
                    0
                };
            (Some(TestTrace { leaves }), ops)
        }
        Strategy::RandomOutput | Strategy::CopyReplica => (None, 0),
    };
    let result = match (strategy, &trace) {
        (_, Some(t)) => Some(t.result()),
        (Strategy::RandomOutput, None) => Some(StageResult {
            input: plan.input,
            output: made_up(u32::MAX),
            trace_root: made_up(u32::MAX - 1),
        }),
        _ => None,
    };
    let commitment = match result {
        Some(res) => res.commitment(job, 0, &salt, who),
        // A blind commitment: it has nothing to commit to yet.
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

// ----------------------------------------------------------------------------------------
// Report
// ----------------------------------------------------------------------------------------

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

/// Whether the ledger did what the expected-profit model assumes for a cheater whose
/// outcome rides on the audit draw: audited ⇒ slashed and unpaid; not audited ⇒ paid in
/// full and never slashed.
fn outcome_as_modelled(m: &Market, r: &JobRecord) -> bool {
    let s = m.actors[r.provider].strategy;
    if s == Strategy::Honest || s == Strategy::CopyReplica {
        return true;
    }
    if r.audited {
        r.slashed > 0 && r.paid == 0 && r.status == Some(JobStatus::Failed)
    } else {
        r.slashed == 0 && r.paid == r.value && r.status == Some(JobStatus::Completed)
    }
}

/// Both sides of `p·S ≥ (1 − p)·V` for a stage worth `value` to a provider with the
/// minimum stake and a perfect reputation (the lowest probability the ledger allows).
fn inequality(params: &Params, value: u128) -> Value {
    let stake = params.min_provider_stake;
    let value = Amount(value);
    let p_ppm = State::audit_probability_for(params, PPM, value, stake);
    let floor_ppm = State::value_floor(params, value, stake);
    let p = p_ppm as f64 / PPM as f64;
    let slash = stake.mul_ppm(params.slash_ppm).0 as f64;
    let expected_slash = p * slash;
    let expected_gain = (1.0 - p) * value.0 as f64;
    json!({
        "stage_value": value.0 as f64,
        "stake": stake.0 as f64,
        "slash": slash,
        "reputation": 1.0,
        "p_min": floor_ppm as f64 / PPM as f64,
        "p_reputation_floor": params.audit_min_ppm as f64 / PPM as f64,
        "p": p,
        "expected_slash": expected_slash,
        "expected_gain": expected_gain,
        "holds": expected_slash >= expected_gain,
    })
}

fn report(
    args: &Args,
    w: &Workload,
    d: &RealDisputes,
    honest: &Market,
    audited: &Market,
    cheat: &Market,
) -> anyhow::Result<Value> {
    let params = Params::default();

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
    let mut by_stake: BTreeMap<u128, Vec<&JobRecord>> = BTreeMap::new();
    for r in honest.honest_records() {
        by_stake
            .entry(honest.actors[r.provider].stake)
            .or_default()
            .push(r);
    }
    let by_stake: Vec<Value> = by_stake
        .iter()
        .map(|(stake, rs)| {
            json!({
                "stake": *stake as f64,
                "stages": rs.len(),
                "audited": rs.iter().filter(|r| r.audited).count(),
                "mean_reputation": mean(rs.iter().map(|r| r.score_ppm as f64 / PPM as f64)),
                "mean_audit_probability":
                    mean(rs.iter().filter_map(|r| r.p_ppm).map(|p| p as f64 / PPM as f64)),
            })
        })
        .collect();
    let scores: Vec<f64> = honest
        .records
        .iter()
        .filter(|r| r.p_ppm.is_some())
        .map(|r| r.score_ppm as f64 / PPM as f64)
        .collect();

    let mut strategies = serde_json::Map::new();
    let mut best: Option<(f64, Strategy, u128)> = None;
    let mut cheater_jobs = 0usize;
    let mut cheater_caught = 0usize;
    let mut mismatches = 0usize;
    for s in Strategy::CHEATS {
        let rs: Vec<&JobRecord> = cheat
            .records
            .iter()
            .filter(|r| cheat.actors[r.provider].strategy == s)
            .collect();
        cheater_jobs += rs.len();
        cheater_caught += rs.iter().filter(|r| Market::caught(r)).count();
        for r in rs.iter().filter(|r| !outcome_as_modelled(cheat, r)) {
            tracing::warn!(strategy = s.name(), record = ?r, "outcome not as modelled");
            mismatches += 1;
        }
        let mut stakes = Vec::new();
        for stake in CHEATER_STAKES {
            let g: Vec<&&JobRecord> = rs
                .iter()
                .filter(|r| cheat.actors[r.provider].stake == stake)
                .collect();
            if g.is_empty() {
                continue;
            }
            let expected = mean(g.iter().map(|r| cheat.expected_profit(r)));
            if best.is_none_or(|b| expected > b.0) {
                best = Some((expected, s, stake));
            }
            stakes.push(json!({
                "stake": stake as f64,
                "jobs": g.len(),
                "caught": g.iter().filter(|r| Market::caught(r)).count(),
                "mean_audit_probability":
                    mean(g.iter().filter_map(|r| r.p_ppm).map(|p| p as f64 / PPM as f64)),
                "expected_profit_per_job": expected,
                "realized_profit_per_job": mean(g.iter().map(|r| cheat.realized_profit(r))),
            }));
        }
        let computed: u64 = rs.iter().map(|r| r.computed_ops).sum();
        let ops: u64 = rs.iter().map(|r| r.ops).sum();
        strategies.insert(
            s.name().into(),
            json!({
                "what": s.what(),
                "jobs": rs.len(),
                "detection_rate": rs.iter().filter(|r| Market::caught(r)).count() as f64
                    / rs.len().max(1) as f64,
                "audited_share": rs.iter().filter(|r| r.audited).count() as f64
                    / rs.len().max(1) as f64,
                "mean_audit_probability":
                    mean(rs.iter().filter_map(|r| r.p_ppm).map(|p| p as f64 / PPM as f64)),
                "compute_share": computed as f64 / ops.max(1) as f64,
                "expected_profit_per_job": mean(rs.iter().map(|r| cheat.expected_profit(r))),
                "realized_profit_per_job": mean(rs.iter().map(|r| cheat.realized_profit(r))),
                "slashed_total": rs.iter().map(|r| r.slashed as f64).sum::<f64>(),
                "penalties_total": rs.iter().map(|r| r.penalty as f64).sum::<f64>(),
                "by_stake": stakes,
            }),
        );
    }
    let (max_cheater_profit, best_strategy, best_stake) = match best {
        Some(b) => b,
        None => bail!("no job went to a cheater: raise --jobs or --cheaters"),
    };
    let honest_earnings = mean(cheat.honest_records().map(|r| cheat.realized_profit(r)));
    let honest_earnings_alone = mean(honest.honest_records().map(|r| honest.realized_profit(r)));
    let detection_rate = cheater_caught as f64 / cheater_jobs.max(1) as f64;

    let values: Vec<u128> = w
        .jobs
        .iter()
        .map(|j| Amount::cost(j.ops, Amount(MAX_PRICE)).unwrap_or_default().0)
        .collect();
    let max_value = values.iter().copied().max().unwrap_or(0);
    let mean_value = Amount::cost(
        (w.jobs.iter().map(|j| j.ops as u128).sum::<u128>() / w.jobs.len().max(1) as u128) as u64,
        Amount(CHEATER_PRICE),
    )
    .unwrap_or_default()
    .0;
    let mut ineq = inequality(&params, max_value);
    if let Some(o) = ineq.as_object_mut() {
        o.insert("case".into(), json!("the workload's largest stage at the highest price, minimum stake, perfect reputation"));
        o.insert("mean_stage".into(), inequality(&params, mean_value));
    }

    Ok(json!({
        "bench": "verify",
        "ratio": audit_overhead / baseline.max(f64::MIN_POSITIVE),
        "audit_overhead": audit_overhead,
        "referee_fraction": referee_fraction,
        "max_cheater_profit": max_cheater_profit,
        "honest_earnings": honest_earnings,
        "bisection_rounds": rounds,
        "detection_rate": detection_rate,
        "inequality": ineq,
        "audit": {
            "what": "audited stage-ops / stage-ops over the honest run's jobs (Sampled, Params::default(), providers of varied stake, price and reputation)",
            "value": audit_overhead,
            "expected_from_ledger_probabilities": honest.expected_overhead(),
            "baseline_audited_overhead": baseline,
            "ratio": audit_overhead / baseline.max(f64::MIN_POSITIVE),
            "stages": honest.records.len(),
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
            "method": "the ledger's own State (Params::default()) applying every block: jobs, audits drawn from a per-block beacon of a seeded stream, disputes, slashes and payments are the ledger's; traces are the protocol test model's over tiny-gpt's layer count with each job's real metered ops; no outside challengers (audits only)",
            "seed": w.seed,
            "jobs": cheat.records.len(),
            "cheater_share": args.cheaters,
            "cheater_jobs": cheater_jobs,
            "detection_rate": detection_rate,
            "compute_cost_per_mega_op": w.compute_cost,
            "max_cheater_profit": max_cheater_profit,
            "best_cheat": { "strategy": best_strategy.name(), "stake": best_stake as f64 },
            "honest_earnings": honest_earnings,
            "honest_earnings_without_cheaters": honest_earnings_alone,
            "cheat_to_honest_ratio": max_cheater_profit / honest_earnings,
            "honest_providers_slashed": cheat.honest_slashed + honest.honest_slashed + audited.honest_slashed,
            "outcomes_not_as_modelled": mismatches,
            "strategies": strategies,
        },
        "runs": [honest.summary(), audited.summary(), cheat.summary()],
        "params": {
            "audit_ppm": params.audit_ppm,
            "audit_min_ppm": params.audit_min_ppm,
            "slash_ppm": params.slash_ppm,
            "min_provider_stake": params.min_provider_stake.0 as f64,
            "miss_penalty_ppm": params.miss_penalty_ppm,
            "min_fee": params.min_fee.0 as f64,
        },
    }))
}

fn print_text(r: &Value) {
    println!(
        "verify bench ({} jobs per market run)",
        r["simulation"]["jobs"]
    );
    println!(
        "  audit overhead        {:.4} of job compute (Audited baseline {:.2})   ratio {:.4}",
        r["audit_overhead"].as_f64().unwrap_or(0.0),
        r["audit"]["baseline_audited_overhead"]
            .as_f64()
            .unwrap_or(0.0),
        r["ratio"].as_f64().unwrap_or(0.0),
    );
    println!(
        "  referee               {:.4} of a job's ops at most ({} layer re-executed of {})",
        r["referee_fraction"].as_f64().unwrap_or(0.0),
        r["referee"]["layers_reexecuted"],
        r["referee"]["layers"],
    );
    println!(
        "  bisection             {} rounds (ledger bound {})",
        r["bisection_rounds"], r["bisection"]["ledger_bound"],
    );
    println!(
        "  best cheat            {:.2} per job ({} at stake {}); honest {:.2} per job",
        r["max_cheater_profit"].as_f64().unwrap_or(0.0),
        r["simulation"]["best_cheat"]["strategy"],
        r["simulation"]["best_cheat"]["stake"],
        r["honest_earnings"].as_f64().unwrap_or(0.0),
    );
    println!(
        "  detection rate        {:.4}",
        r["detection_rate"].as_f64().unwrap_or(0.0)
    );
    let i = &r["inequality"];
    println!(
        "  p·S ≥ (1−p)·V         {:.2} ≥ {:.2} at p = {:.4} (V = {}, stake = {})",
        i["expected_slash"].as_f64().unwrap_or(0.0),
        i["expected_gain"].as_f64().unwrap_or(0.0),
        i["p"].as_f64().unwrap_or(0.0),
        i["stage_value"],
        i["stake"],
    );
}
