//! `agentic job`: buy neural-network inference or training on the market, follow
//! it, fetch the verified output and see the bill — the CLI face of
//! [`agentic_agent::requester`].
//!
//! ```text
//!   agentic job submit --key FILE --model M (--text T… | --input-file F | --tensor F) [--stages K] …
//!   agentic job submit --key FILE --model M --train DATA_FILE --steps N [--batch B] [--seq S]
//!                      [--optimizer adam|sgd] [--lr X] [--warmup W] [--init-seed S] [--stages K] …
//!        │  prepare (local: bundle or task, encode, meter, split/place, escrow) ── --dry-run stops here
//!        │  upload model + input blobs (if the node lacks them), SubmitJob ──▶ job id
//!        └─ --wait: one progress bar per stage (matching → running → revealing →
//!                   audit/challenge window → finalized), then the cost breakdown;
//!                   --out FILE writes the output (a directory for training)
//!   agentic job status ID            phase, providers and deadlines of every stage
//!   agentic job wait ID              follow until the job ends
//!   agentic job result ID --out F    the output (hash-checked) as JSON + the cost breakdown;
//!                                    for a training job, F is a directory: model.safetensors,
//!                                    config.json, trace.json (every step's loss and root), state.bin
//!   agentic job cancel ID --key F    withdraw a job no provider committed to; full refund
//!   agentic job stop ID --key F      end a generation job's session at its next token
//!                                    (signed by the requester; the bill is what ran)
//! ```
//!
//! A training job (`--train`) trains the model's architecture — from its weights, or
//! from `--init-seed` — for `--steps` steps on the file's bytes (one token each);
//! its stages are step ranges split evenly, its bill `steps × ops per step × price`.
//!
//! The node is `--node URL`, else `$AGENTIC_NODE`, else `http://127.0.0.1:8000`.
//! Readable text by default, JSON with `--json`; any failure exits non-zero with
//! the reason (the ledger's, for a rejected transaction).

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentic_agent::requester::{
    CostBreakdown, GenerationInput, JobInput, JobRequest, JobResult, PlacementChoice, PreparedJob,
    Requester, Submitted, TrainingInput, TrainingResult,
};
use agentic_client::keystore::KeyFile;
use agentic_compute::llm::Sampler;
use agentic_compute::train::shipped;
use agentic_compute::train::task::LrSchedule;
use agentic_compute::train::{AdamConfig, OptimizerConfig};
use agentic_compute::Activation;
use agentic_protocol::coord::Coord;
use agentic_protocol::state::{Job, JobStatus, StagePhase};
use agentic_protocol::types::{Capabilities, Region, VerificationLevel};
use agentic_protocol::{Address, Amount, Hash, JobId, MandateId};
use anyhow::{bail, Context};
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::node_cmds::{self, table, NodeArgs};

#[derive(clap::Args)]
pub struct JobArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: JobCmd,
}

#[derive(Subcommand)]
enum JobCmd {
    /// Prepare a job locally (model, input, stages, escrow), upload its blobs, submit it.
    Submit(Box<SubmitArgs>),
    /// Every stage's phase, providers and deadlines, and the bill so far.
    Status {
        /// The job id.
        id: u64,
    },
    /// Follow a job until it ends, then print its bill.
    Wait {
        /// The job id.
        id: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        timeout: u64,
    },
    /// Fetch the job's output (checked against its hash) into a JSON file, or for a
    /// training job the new weights and the per-step trace into a directory.
    Result {
        /// The job id.
        id: u64,
        /// Where to write `{job, model, output_hash, stage_results, rows, width, data}`;
        /// for a training job, a directory (model.safetensors, config.json, trace.json,
        /// state.bin).
        #[arg(long, value_name = "FILE|DIR")]
        out: PathBuf,
    },
    /// Withdraw a job before any provider committed work; the escrow comes back.
    Cancel {
        /// The job id.
        id: u64,
        /// The requester's key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Stop a generation job's session at its next token: the stages bill the tokens
    /// generated, the rest of the escrow comes back when the job settles.
    Stop {
        /// The job id.
        id: u64,
        /// The requester's key file (the stop is signed with it).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["text", "input_file", "tensor", "train", "generate"])))]
struct SubmitArgs {
    /// The requester's key file (it signs and pays, or spends under --mandate).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Registry name (`tiny-gpt`, `minilm`) or a model directory (config.json +
    /// model.safetensors [+ tokenizer.json]).
    #[arg(long, value_name = "NAME|DIR")]
    model: String,
    /// An input text, one sequence (repeat for a batch).
    #[arg(long, value_name = "TEXT")]
    text: Vec<String>,
    /// A file of input texts, one per line (blank lines skipped).
    #[arg(long, value_name = "LINES.txt")]
    input_file: Option<PathBuf>,
    /// A file holding an activation's canonical bytes: token ids, or feature rows for
    /// an MLP (e.g. a job's input fetched with `agentic query blob get HASH --out FILE`).
    #[arg(long, value_name = "FILE")]
    tensor: Option<PathBuf>,
    /// Train the model on this file's bytes (one token each) instead of running it: a
    /// training job whose stages are step ranges. Needs --steps.
    #[arg(long, value_name = "DATA_FILE")]
    train: Option<PathBuf>,
    /// Generate text after this prompt with an LLM (`--model smollm2-135m` or a .gguf
    /// file): the stages run as one session across their providers and stream tokens.
    #[arg(long, value_name = "PROMPT")]
    generate: Option<String>,
    /// Generation: wrap the prompt as one user turn of the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Generation: most tokens to generate (escrow covers them all; the bill counts
    /// those generated).
    #[arg(long, default_value_t = 64, value_name = "N")]
    max_tokens: u32,
    /// Generation: the most likely token at each step instead of sampling.
    #[arg(long)]
    greedy: bool,
    /// Generation: sampling seed (the tokens are a pure function of it).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Generation: sampling temperature.
    #[arg(long, default_value_t = Sampler::DEFAULT_TEMPERATURE)]
    temperature: f32,
    /// Generation: sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = Sampler::DEFAULT_TOP_K)]
    top_k: usize,
    /// Generation: sample within the smallest set of tokens holding this much
    /// probability.
    #[arg(long, default_value_t = Sampler::DEFAULT_TOP_P)]
    top_p: f32,
    /// Generation: print the tokens as they stream from the last stage (implies --wait).
    #[arg(long)]
    stream: bool,
    /// Training: optimizer steps.
    #[arg(long, value_name = "N")]
    steps: Option<u64>,
    /// Training: sequences per batch [default: 4].
    #[arg(long, value_name = "B")]
    batch: Option<usize>,
    /// Training: positions per sequence, at most the model's [default: 32].
    #[arg(long, value_name = "S")]
    seq: Option<usize>,
    /// Training: optimizer [default: adam].
    #[arg(long, value_parser = ["adam", "sgd"])]
    optimizer: Option<String>,
    /// Training: (peak) learning rate [default: 0.001].
    #[arg(long, value_name = "LR")]
    lr: Option<f32>,
    /// Training: SGD momentum, or Adam's β₁ [defaults: 0, 0.9].
    #[arg(long, value_name = "M")]
    momentum: Option<f32>,
    /// Training: decoupled weight decay (AdamW) [default: 0].
    #[arg(long, value_name = "WD")]
    weight_decay: Option<f32>,
    /// Training: linear warm-up over this many steps, then linear decay to
    /// --min-lr-frac of the rate at the last step [default: a constant rate].
    #[arg(long, value_name = "STEPS")]
    warmup: Option<u64>,
    /// Training: final rate as a fraction of the peak, with --warmup [default: 0.1].
    #[arg(long, value_name = "F")]
    min_lr_frac: Option<f64>,
    /// Training: seed of the batch offsets [default: 0].
    #[arg(long, value_name = "SEED")]
    data_seed: Option<u64>,
    /// Training: start from a fresh initialization of the model's architecture with
    /// this seed instead of from its weights.
    #[arg(long, value_name = "SEED")]
    init_seed: Option<u64>,
    /// Pipeline stages [default: 1, or the number of providers named by --placement].
    #[arg(long, value_name = "K")]
    stages: Option<usize>,
    /// Independent providers per stage.
    #[arg(long, default_value_t = 1, value_name = "R")]
    replicas: u8,
    /// Highest price paid, base units per mega-op (10^6 ops).
    #[arg(long, default_value = "100", value_parser = node_cmds::amount, value_name = "P")]
    max_price: Amount,
    /// Blocks a provider has to deliver after it is assigned.
    #[arg(long, default_value_t = 100, value_name = "BLOCKS")]
    deadline: u64,
    /// How results are checked: optimistic, sampled, audited.
    #[arg(long, default_value = "optimistic", value_parser = node_cmds::level)]
    verification: VerificationLevel,
    /// Who runs the stages: `ledger` (the ledger matches), `auto` (the partitioner
    /// picks among current offers), or providers ADDR,ADDR,… (addresses or key files).
    #[arg(long, default_value = "ledger", value_parser = placement, value_name = "ledger|auto|ADDR,…")]
    placement: PlacementChoice,
    /// Spend under this mandate (the key must be its agent).
    #[arg(long, value_name = "ID")]
    mandate: Option<u64>,
    /// Lowest provider reputation accepted (ppm).
    #[arg(long, default_value_t = 0)]
    min_reputation_ppm: u32,
    /// Lowest provider bonded stake accepted.
    #[arg(long, default_value = "0", value_parser = node_cmds::amount)]
    min_stake: Amount,
    /// Accepted provider regions, comma-separated (none: any).
    #[arg(long, value_delimiter = ',')]
    regions: Vec<u16>,
    /// Capabilities every provider must have: cpu, gpu, training, large-memory [default: none].
    #[arg(long, value_parser = node_cmds::capabilities)]
    capabilities: Option<Capabilities>,
    /// The requester's network coordinate x,y,height (µs).
    #[arg(long, default_value = "0,0,0", value_parser = node_cmds::coord, allow_hyphen_values = true)]
    coord: Coord,
    /// Prepare and print the plan and escrow; submit nothing.
    #[arg(long)]
    dry_run: bool,
    /// Follow the job until it ends, then print its bill.
    #[arg(long)]
    wait: bool,
    /// With --wait: seconds to follow the job before giving up.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    timeout: u64,
    /// Write the output here once the job completes (implies --wait); for a training
    /// job a directory (model.safetensors, config.json, trace.json, state.bin).
    #[arg(long, value_name = "FILE|DIR")]
    out: Option<PathBuf>,
}

/// `ledger`, `auto`, or a comma list of addresses / key files.
fn placement(s: &str) -> Result<PlacementChoice, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "ledger" => Ok(PlacementChoice::Ledger),
        "auto" => Ok(PlacementChoice::Auto),
        _ => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(node_cmds::address)
            .collect::<Result<Vec<Address>, String>>()
            .and_then(|v| {
                if v.is_empty() {
                    Err("name at least one provider, or use `ledger` or `auto`".into())
                } else {
                    Ok(PlacementChoice::Named(v))
                }
            }),
    }
}

pub fn run(args: JobArgs) -> anyhow::Result<()> {
    let rt = node_cmds::runtime()?;
    let json = args.json;
    let node = args.node;
    match args.cmd {
        JobCmd::Submit(s) => rt.block_on(submit(&node, &s, json)),
        JobCmd::Status { id } => rt.block_on(status(&node, JobId(id), json)),
        JobCmd::Wait { id, timeout } => rt.block_on(async {
            let req = reader(&node);
            let job = follow(&req, JobId(id), Duration::from_secs(timeout), json).await?;
            let c = bill(&req, JobId(id)).await?;
            finish(&job, JobId(id), &c, None, json)
        }),
        JobCmd::Result { id, out } => rt.block_on(result(&node, JobId(id), &out, json)),
        JobCmd::Cancel { id, key } => rt.block_on(cancel(&node, JobId(id), &key, json)),
        JobCmd::Stop { id, key } => rt.block_on(stop(&node, JobId(id), &key, json)),
    }
}

/// A requester for read-only commands (no key needed: a throwaway one).
fn reader(node: &NodeArgs) -> Requester {
    Requester::new(node.client(), KeyFile::generate("reader").key)
}

fn signer(node: &NodeArgs, key: &Path) -> anyhow::Result<Requester> {
    let k = KeyFile::read(key).with_context(|| format!("cannot use key file {}", key.display()))?;
    Ok(Requester::new(node.client(), k.key))
}

fn input(args: &SubmitArgs) -> anyhow::Result<JobInput> {
    if let Some(prompt) = &args.generate {
        let sampler = Sampler::from_flags(
            args.greedy,
            args.seed,
            args.temperature,
            args.top_k,
            args.top_p,
        )?;
        if args.max_tokens == 0 {
            bail!("--max-tokens must be at least 1");
        }
        return Ok(JobInput::Generate(GenerationInput {
            prompt: prompt.clone(),
            chat: args.chat,
            max_tokens: args.max_tokens,
            sampler,
            stop: None,
        }));
    }
    if args.chat || args.stream {
        bail!("--chat and --stream apply to --generate");
    }
    if let Some(path) = &args.train {
        return training_input(args, path).map(JobInput::Training);
    }
    let training_flags = [
        ("--steps", args.steps.is_some()),
        ("--batch", args.batch.is_some()),
        ("--seq", args.seq.is_some()),
        ("--optimizer", args.optimizer.is_some()),
        ("--lr", args.lr.is_some()),
        ("--momentum", args.momentum.is_some()),
        ("--weight-decay", args.weight_decay.is_some()),
        ("--warmup", args.warmup.is_some()),
        ("--min-lr-frac", args.min_lr_frac.is_some()),
        ("--data-seed", args.data_seed.is_some()),
        ("--init-seed", args.init_seed.is_some()),
    ];
    if let Some((flag, _)) = training_flags.iter().find(|(_, set)| *set) {
        bail!("{flag} is a training flag: use it with --train DATA_FILE");
    }
    if let Some(path) = &args.tensor {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(JobInput::Activation(bytes));
    }
    if let Some(path) = &args.input_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let lines: Vec<String> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        if lines.is_empty() {
            bail!("{} holds no text (one input per line)", path.display());
        }
        return Ok(JobInput::Texts(lines));
    }
    Ok(JobInput::Texts(args.text.clone()))
}

/// The training flags onto a [`TrainingInput`] (its defaults for what is not given).
fn training_input(args: &SubmitArgs, path: &Path) -> anyhow::Result<TrainingInput> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let Some(steps) = args.steps else {
        bail!("--train needs --steps N (optimizer steps)");
    };
    let mut t = TrainingInput::new(data, steps);
    if let Some(b) = args.batch {
        t.batch = b;
    }
    if let Some(s) = args.seq {
        t.seq = s;
    }
    let lr = args.lr.unwrap_or(t.optimizer.lr());
    t.optimizer = match args.optimizer.as_deref() {
        Some("sgd") => {
            if args.weight_decay.is_some() {
                bail!("--weight-decay is Adam's (AdamW); SGD takes --lr and --momentum");
            }
            OptimizerConfig::Sgd {
                lr,
                momentum: args.momentum.unwrap_or(0.0),
            }
        }
        _ => {
            let d = AdamConfig::default();
            OptimizerConfig::Adam(AdamConfig {
                lr,
                beta1: args.momentum.unwrap_or(d.beta1),
                weight_decay: args.weight_decay.unwrap_or(d.weight_decay),
                ..d
            })
        }
    };
    match (args.warmup, args.min_lr_frac) {
        (Some(warmup), frac) => {
            t.schedule = LrSchedule::WarmupLinearDecay {
                warmup,
                min_lr_frac: frac.unwrap_or(0.1),
            }
        }
        (None, Some(_)) => bail!("--min-lr-frac sets the decay of --warmup's schedule"),
        (None, None) => {}
    }
    if let Some(s) = args.data_seed {
        t.data_seed = s;
    }
    t.init_seed = args.init_seed;
    Ok(t)
}

fn request(args: &SubmitArgs) -> anyhow::Result<JobRequest> {
    let mut r = JobRequest::new(args.model.clone(), input(args)?);
    r.stages = match (&args.placement, args.stages) {
        (_, Some(k)) => k,
        (PlacementChoice::Named(names), None) => names.len(),
        (_, None) => 1,
    };
    r.replicas = args.replicas;
    r.max_price = args.max_price;
    r.deadline = args.deadline;
    r.verification = args.verification;
    r.min_reputation_ppm = args.min_reputation_ppm;
    r.min_stake = args.min_stake;
    r.regions = args.regions.iter().copied().map(Region).collect();
    r.capabilities = args.capabilities.unwrap_or(Capabilities(0));
    r.placement = args.placement.clone();
    r.mandate = args.mandate.map(MandateId);
    r.coord = args.coord;
    Ok(r)
}

async fn submit(node: &NodeArgs, args: &SubmitArgs, json: bool) -> anyhow::Result<()> {
    let req = signer(node, &args.key)?;
    let r = request(args)?;
    let prepared = req
        .prepare(&r)
        .await
        .with_context(|| format!("preparing a job of model `{}`", r.model))?;
    if args.dry_run {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&plan_json(&r, &prepared))?
            );
        } else {
            print!("{}", plan_text(&r, &prepared));
            println!("dry run: nothing submitted");
        }
        return Ok(());
    }
    if !json {
        print!("{}", plan_text(&r, &prepared));
    }
    let sub = req
        .submit_detailed(&prepared)
        .await
        .with_context(|| format!("submitting the job to {}", req.client().base()))?;
    if !json {
        println!(
            "submitted  job {} (escrow {} locked from {}, fee {}, {} uploaded)",
            sub.job,
            sub.escrow,
            short(&sub.payer),
            sub.fee,
            bytes(sub.uploaded_bytes)
        );
    }
    let mut out = plan_json(&r, &prepared);
    out["job"] = json!(sub.job.0);
    out["fee"] = json!(sub.fee);
    out["payer"] = json!(sub.payer);
    out["uploaded_bytes"] = json!(sub.uploaded_bytes);
    if args.generate.is_some() && (args.stream || args.wait) {
        return stream_generation(&req, &r, &sub, args, out, json).await;
    }
    if !(args.wait || args.out.is_some()) {
        if json {
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("follow it with: agentic job status {}", sub.job);
        }
        return Ok(());
    }
    let job = follow(&req, sub.job, Duration::from_secs(args.timeout), json).await?;
    let c = bill(&req, sub.job).await?;
    out["status"] = json!(job.status);
    out["cost"] = serde_json::to_value(&c)?;
    if !json {
        print!("{}", cost_text(&c, Some(&sub)));
    }
    if job.status != JobStatus::Completed {
        if json {
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        bail!("job {} ended {:?}", sub.job, job.status);
    }
    if let (Some(dir), Some(_)) = (&args.out, &prepared.training) {
        let res = req
            .training_result(sub.job)
            .await
            .with_context(|| format!("fetching job {}'s trained state", sub.job))?;
        write_training(dir, &job, &res)?;
        out["output_hash"] = json!(res.output_hash);
        out["out"] = json!(dir.display().to_string());
        out["losses"] = json!(res.steps.iter().map(|s| s.loss).collect::<Vec<_>>());
        if !json {
            print!("{}", training_text(&res, dir));
        }
    } else if let Some(path) = &args.out {
        let res = req
            .result(sub.job)
            .await
            .with_context(|| format!("fetching job {}'s output", sub.job))?;
        write_result(path, &job, &res)?;
        out["output_hash"] = json!(res.output_hash);
        out["out"] = json!(path.display().to_string());
        if !json {
            println!(
                "output     {} ({} × {} {}) written to {}",
                short_hash(&res.output_hash),
                res.output.rows(),
                res.output.width(),
                res.output.kind().name(),
                path.display()
            );
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// Streams a generation job's tokens as text while they are sampled, then follows it
/// to settlement and prints the bill.
async fn stream_generation(
    req: &Requester,
    r: &JobRequest,
    sub: &Submitted,
    args: &SubmitArgs,
    mut out: Value,
    json: bool,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let (m, _, _) = agentic_agent::requester::generate::load_llm(&r.model)?;
    let mut text = agentic_compute::llm::generate::TextStream::default();
    let timeout = Duration::from_secs(args.timeout);
    if !json {
        println!("streaming  job {} from its last stage:", sub.job);
    }
    let stream = req.stream(sub.job, timeout, |_, tok| {
        if !json {
            print!("{}", text.push(&m.tokenizer, tok));
            let _ = std::io::stdout().flush();
        }
    });
    tokio::pin!(stream);
    // Ctrl-C stops the generation (the requester's signed stop to the last stage): the
    // stream ends at the next token, the job settles and the bill is the tokens
    // generated. A second Ctrl-C leaves the job to settle without us.
    let streamed = tokio::select! {
        r = &mut stream => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!(
                "\nCtrl-C: stopping job {}'s generation (the stages bill the tokens generated; \
                 Ctrl-C again to quit)",
                sub.job
            );
            if let Err(e) = req.stop(sub.job).await {
                eprintln!("could not stop the generation: {e}");
            }
            tokio::select! {
                r = &mut stream => r,
                _ = tokio::signal::ctrl_c() => {
                    bail!("interrupted: job {} settles without us (`agentic job wait {}`)", sub.job, sub.job)
                }
            }
        }
    }
    .with_context(|| format!("streaming job {}'s tokens", sub.job))?;
    if !json {
        println!();
        println!(
            "generated  {} tokens · first token after {:.2} s · {:.2} s in all",
            streamed.tokens.len(),
            streamed.first_token.unwrap_or_default().as_secs_f64(),
            streamed.elapsed.as_secs_f64()
        );
    }
    let job = follow(req, sub.job, timeout, json).await?;
    let verified = req.check_transcript(sub.job, &streamed.tokens).await?;
    let c = bill(req, sub.job).await?;
    out["tokens"] = json!(streamed.tokens);
    out["text"] = json!(m.tokenizer.decode(&streamed.tokens).unwrap_or_default());
    out["steps"] = json!(streamed.steps);
    out["transcript"] = json!(streamed.transcript);
    out["transcript_on_chain"] = json!(verified);
    out["first_token_s"] = json!(streamed.first_token.map(|d| d.as_secs_f64()));
    out["status"] = json!(job.status);
    out["cost"] = serde_json::to_value(&c)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "transcript {} {}",
            short_hash(&streamed.transcript),
            if verified {
                "(= the last stage's revealed output)"
            } else {
                "(not revealed)"
            }
        );
        print!("{}", cost_text(&c, Some(sub)));
    }
    if job.status != JobStatus::Completed {
        bail!("job {} ended {:?}", sub.job, job.status);
    }
    Ok(())
}

async fn status(node: &NodeArgs, id: JobId, json: bool) -> anyhow::Result<()> {
    let req = reader(node);
    let job = req
        .job(id)
        .await
        .with_context(|| format!("reading job {id} from {}", req.client().base()))?;
    let c = bill(&req, id).await?;
    if json {
        let v = json!({"id": id.0, "job": job, "cost": c});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let height = req.client().status().await.ok().map(|s| s.height.0);
    print!("{}", status_text(id, &job, height));
    print!("{}", cost_text(&c, None));
    Ok(())
}

async fn result(node: &NodeArgs, id: JobId, out: &Path, json: bool) -> anyhow::Result<()> {
    let req = reader(node);
    let job = req
        .job(id)
        .await
        .with_context(|| format!("reading job {id}"))?;
    if req
        .is_training(&job)
        .await
        .with_context(|| format!("reading job {id}'s model blob"))?
    {
        return training_result(&req, id, &job, out, json).await;
    }
    let res = req
        .result(id)
        .await
        .with_context(|| format!("fetching job {id}'s output"))?;
    write_result(out, &job, &res)?;
    let c = bill(&req, id).await?;
    if json {
        let v = json!({
            "job": id.0,
            "status": job.status,
            "output_hash": res.output_hash,
            "rows": res.output.rows(),
            "width": res.output.width(),
            "out": out.display().to_string(),
            "cost": c,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "job {id}: output {} ({} × {} {}, hash checked) written to {}",
            res.output_hash.to_hex(),
            res.output.rows(),
            res.output.width(),
            res.output.kind().name(),
            out.display()
        );
        if job.status != JobStatus::Completed {
            println!(
                "note: the job is {:?}; challenge windows are still open",
                job.status
            );
        }
        print!("{}", cost_text(&c, None));
    }
    Ok(())
}

/// `job result` of a training job: the weights, config and trace into `dir`.
async fn training_result(
    req: &Requester,
    id: JobId,
    job: &Job,
    dir: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let res = req
        .training_result(id)
        .await
        .with_context(|| format!("fetching job {id}'s trained state"))?;
    write_training(dir, job, &res)?;
    let c = bill(req, id).await?;
    if json {
        let v = json!({
            "job": id.0,
            "status": job.status,
            "kind": "training",
            "output_hash": res.output_hash,
            "steps": res.steps.len(),
            "losses": res.steps.iter().map(|s| s.loss).collect::<Vec<_>>(),
            "out": dir.display().to_string(),
            "cost": c,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "job {id}: trained state {} (hash checked; every stage's trace root re-derived)",
            res.output_hash.to_hex()
        );
        print!("{}", training_text(&res, dir));
        if job.status != JobStatus::Completed {
            println!(
                "note: the job is {:?}; challenge windows are still open",
                job.status
            );
        }
        print!("{}", cost_text(&c, None));
    }
    Ok(())
}

/// A training job's output directory: `model.safetensors` (the new weights, Hugging
/// Face GPT-2 names), `config.json` (so the directory is a model `agentic model run
/// --model DIR` loads), `trace.json` (every step's loss and root, every stage's
/// range and result) and `state.bin` (the final state blob, hash = `output_hash`).
fn write_training(dir: &Path, job: &Job, res: &TrainingResult) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))
    };
    let weights = res
        .params()
        .to_safetensors()
        .context("serializing the trained weights")?;
    write("model.safetensors", &weights)?;
    write(
        "config.json",
        shipped::config_json(&res.task.config).as_bytes(),
    )?;
    write("state.bin", &res.state.encode())?;
    let trace = training_json(job, res);
    write(
        "trace.json",
        (serde_json::to_string_pretty(&trace)? + "\n").as_bytes(),
    )
}

fn training_json(job: &Job, res: &TrainingResult) -> Value {
    let stages: Vec<Value> = job
        .spec
        .stages
        .iter()
        .zip(&res.stage_results)
        .enumerate()
        .map(|(s, (spec, r))| {
            json!({
                "stage": s,
                "steps": [spec.first_layer, spec.first_layer + spec.layers],
                "ops": spec.ops,
                "input": r.input,
                "output": r.output,
                "trace_root": r.trace_root,
            })
        })
        .collect();
    json!({
        "job": res.job.0,
        "task": job.spec.model,
        "initial_state": job.spec.input,
        "output_hash": res.output_hash,
        "config": res.task.config,
        "steps_done": res.state.step(),
        "step_ops": res.task.step_ops(),
        "batch": res.task.batch,
        "seq": res.task.seq,
        "tokens": res.task.tokens(),
        "stages": stages,
        "steps": res.steps,
    })
}

/// Loss over the steps (at most 20 rows, first and last included) and where the
/// files went.
fn training_text(res: &TrainingResult, dir: &Path) -> String {
    let n = res.steps.len();
    let mut out = String::new();
    if let (Some(first), Some(last)) = (res.steps.first(), res.steps.last()) {
        out.push_str(&format!(
            "trained    {n} steps, loss {:.4} (step {}) → {:.4} (step {})\n",
            first.loss, first.step, last.loss, last.step
        ));
    }
    let rows: Vec<Vec<String>> = shown_steps(n)
        .into_iter()
        .map(|i| {
            let s = &res.steps[i];
            vec![
                s.step.to_string(),
                s.stage.to_string(),
                format!("{:.4}", s.loss),
                short_hash(&s.root),
            ]
        })
        .collect();
    for line in table(&["step", "stage", "loss", "step root"], &rows).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!(
        "weights    {} (+ config.json, trace.json, state.bin)\n",
        dir.join("model.safetensors").display()
    ));
    out
}

/// Indices of the steps a summary shows: all of up to 20, else 20 spread evenly
/// with the first and the last.
fn shown_steps(n: usize) -> Vec<usize> {
    const MAX: usize = 20;
    if n <= MAX {
        return (0..n).collect();
    }
    let mut v: Vec<usize> = (0..MAX).map(|i| i * (n - 1) / (MAX - 1)).collect();
    v.dedup();
    v
}

async fn stop(node: &NodeArgs, id: JobId, key: &Path, json: bool) -> anyhow::Result<()> {
    let req = signer(node, key)?;
    let tokens = req
        .stop(id)
        .await
        .with_context(|| format!("stopping job {id}'s generation"))?;
    if json {
        println!(
            "{}",
            json!({"job": id.0, "stopping": true, "tokens": tokens})
        );
    } else {
        println!(
            "job {id} stops after its next token ({tokens} sampled so far); \
             `agentic job wait {id}` follows it to the bill"
        );
    }
    Ok(())
}

async fn cancel(node: &NodeArgs, id: JobId, key: &Path, json: bool) -> anyhow::Result<()> {
    let req = signer(node, key)?;
    let refund = req
        .cancel(id)
        .await
        .with_context(|| format!("cancelling job {id}"))?;
    if json {
        println!(
            "{}",
            json!({"job": id.0, "status": "Cancelled", "refund": refund})
        );
    } else {
        println!("job {id} cancelled; {refund} refunded to the payer");
    }
    Ok(())
}

/// The output file: `{job, model, output_hash, stage_results, kind, seq_lens, rows, width, data}`.
fn write_result(path: &Path, job: &Job, res: &JobResult) -> anyhow::Result<()> {
    let v = result_json(job, res);
    let text = serde_json::to_string(&v)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

fn result_json(job: &Job, res: &JobResult) -> Value {
    let out: &Activation = &res.output;
    let width = out.width();
    let data: Vec<&[f32]> = if width == 0 {
        Vec::new()
    } else {
        out.tensor().data().chunks(width).collect()
    };
    json!({
        "job": res.job.0,
        "model": job.spec.model,
        "input": job.spec.input,
        "output_hash": res.output_hash,
        "stage_results": res.stage_results,
        "kind": out.kind().name(),
        "seq_lens": out.seq_lens(),
        "rows": out.rows(),
        "width": width,
        "data": data,
    })
}

// ---- following a job ----

/// How far a stage has come (0..=5) and a line saying where it is.
fn stage_progress(job: &Job, s: usize) -> (u64, String) {
    let st = &job.stages[s];
    let replicas = st.slots.len();
    let assigned: Vec<_> = st
        .slots
        .iter()
        .filter_map(|x| x.assignment.as_ref())
        .collect();
    let committed = assigned.iter().filter(|a| a.commitment.is_some()).count();
    let revealed = assigned.iter().filter(|a| a.result.is_some()).count();
    let who = assigned
        .iter()
        .map(|a| short(&a.provider))
        .collect::<Vec<_>>()
        .join(",");
    match st.phase {
        StagePhase::Matching { since } => (
            0,
            format!(
                "matching since height {since} ({}/{replicas} assigned)",
                assigned.len()
            ),
        ),
        StagePhase::Running {
            reveal_deadline: None,
        } => match &st.audit {
            // Every replica committed; reveals wait for the drawn auditor's commitment.
            Some(a) if committed == replicas => (
                2,
                format!(
                    "committed on {who}; auditor {} commits by height {}",
                    short(&a.auditor),
                    a.deadline
                ),
            ),
            _ if job.claim.is_some() => (
                1,
                format!(
                    "running on {who}: {committed}/{replicas} committed; deadlines wait while the validators check a claim that the job's data is unavailable"
                ),
            ),
            _ => {
                let deadline = assigned.iter().map(|a| a.deadline.0).min().unwrap_or(0);
                (
                    1,
                    format!("running on {who}: {committed}/{replicas} committed, commit by height {deadline}"),
                )
            }
        },
        StagePhase::Running {
            reveal_deadline: Some(d),
        } => (
            2,
            format!("revealing on {who}: {revealed}/{replicas} revealed, by height {d}"),
        ),
        StagePhase::Auditing {
            auditor, deadline, ..
        } => (
            3,
            format!("audited by {} until height {deadline}", short(&auditor)),
        ),
        StagePhase::Disputed { dispute } => (3, format!("disputed (dispute {dispute})")),
        StagePhase::Challengeable { until } => (
            4,
            format!("verified; challenge window until height {until}"),
        ),
        StagePhase::Finalized => (5, format!("finalized, paid {who}")),
        StagePhase::Cancelled => (5, "cancelled".to_string()),
    }
}

/// Polls the job until it ends, drawing one bar per stage (hidden with --json or
/// when stderr is not a terminal).
async fn follow(req: &Requester, id: JobId, timeout: Duration, json: bool) -> anyhow::Result<Job> {
    let multi = MultiProgress::with_draw_target(if json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let style = ProgressStyle::with_template("{spinner} {prefix} [{bar:12}] {msg}")
        .context("progress template")?
        .progress_chars("=> ");
    let mut bars: Vec<ProgressBar> = Vec::new();
    let job = req
        .wait(id, timeout, |job| {
            if bars.is_empty() {
                for (s, spec) in job.spec.stages.iter().enumerate() {
                    let bar = multi.add(ProgressBar::new(5).with_style(style.clone()));
                    bar.set_prefix(format!(
                        "stage {s} {}..{}",
                        spec.first_layer,
                        spec.first_layer + spec.layers
                    ));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bars.push(bar);
                }
            }
            for (s, bar) in bars.iter().enumerate() {
                let (pos, msg) = stage_progress(job, s);
                bar.set_position(pos);
                bar.set_message(msg);
            }
        })
        .await;
    for bar in &bars {
        bar.finish();
    }
    let job = job.with_context(|| format!("following job {id}"))?;
    if !json {
        println!("job {id} {:?}", job.status);
    }
    Ok(job)
}

/// The job's bill as the ledger paid it (its events, replayed from the node).
async fn bill(req: &Requester, id: JobId) -> anyhow::Result<CostBreakdown> {
    req.bill(id)
        .await
        .with_context(|| format!("reading job {id}'s bill from {}", req.client().base()))
}

/// After `job wait`: the bill, and a non-zero exit unless the job completed.
fn finish(
    job: &Job,
    id: JobId,
    c: &CostBreakdown,
    sub: Option<&Submitted>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"id": id.0, "status": job.status, "cost": c}))?
        );
    } else {
        print!("{}", cost_text(c, sub));
    }
    if job.status != JobStatus::Completed {
        bail!("job {id} ended {:?}", job.status);
    }
    Ok(())
}

// ---- readable output ----

fn short(a: &Address) -> String {
    let s = a.to_string();
    format!("{}…", &s[..10])
}

pub(crate) fn short_hash(h: &Hash) -> String {
    let s = h.to_string();
    format!("{}…", &s[..12])
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: impl ToString) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn placement_name(p: &PlacementChoice) -> &'static str {
    match p {
        PlacementChoice::Ledger => "ledger (the ledger matches each stage)",
        PlacementChoice::Auto => "auto (partitioner over current offers)",
        PlacementChoice::Named(_) => "named",
    }
}

fn plan_json(r: &JobRequest, p: &PreparedJob) -> Value {
    json!({
        "kind": if p.training.is_some() { "training" } else if p.spec.generation.is_some() { "generation" } else { "inference" },
        "training": p.training,
        "model": r.model,
        "model_hash": p.model_hash,
        "bundle_bytes": p.bundle.len(),
        "input_hash": p.input_hash,
        "input_bytes": p.input.len(),
        "layer_ops": p.layer_ops,
        "layer_names": p.layer_names,
        "boundary_bytes": p.boundary_bytes,
        "total_ops": p.total_ops(),
        "spec": p.spec,
        "escrow": p.escrow,
        "placement": p.placement,
    })
}

fn plan_text(r: &JobRequest, p: &PreparedJob) -> String {
    let mut out = String::new();
    if let Some(t) = &p.training {
        out.push_str(&format!(
            "training   {} ({} params) from {}: {} steps × batch {} × seq {} on {} tokens\n",
            r.model,
            thousands(t.params),
            t.init,
            t.steps,
            t.batch,
            t.seq,
            thousands(t.tokens)
        ));
        out.push_str(&format!(
            "task       {} ({}), {} ops per step\n",
            short_hash(&p.model_hash),
            bytes(p.bundle.len() as u64),
            thousands(t.step_ops)
        ));
        out.push_str(&format!(
            "state      {} ({}, initial)\n",
            short_hash(&p.input_hash),
            bytes(p.input.len() as u64)
        ));
    } else {
        out.push_str(&format!(
            "model      {} {} ({} bundle, {} layers)\n",
            r.model,
            short_hash(&p.model_hash),
            bytes(p.bundle.len() as u64),
            p.layer_ops.len()
        ));
        out.push_str(&format!(
            "input      {} ({})\n",
            short_hash(&p.input_hash),
            bytes(p.input.len() as u64)
        ));
    }
    out.push_str(&format!(
        "placement  {} · {} stage(s) × {} replica(s) · {:?} · deadline {} blocks\n",
        placement_name(&r.placement),
        p.spec.stages.len(),
        r.replicas,
        r.verification,
        r.deadline
    ));
    let rows: Vec<Vec<String>> = p
        .spec
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let first = s.first_layer as usize;
            let last = first + s.layers as usize - 1;
            let mut row = vec![
                i.to_string(),
                format!("{first}..{}", last + 1),
                if first == last {
                    p.layer_names[first].clone()
                } else {
                    format!("{}..{}", p.layer_names[first], p.layer_names[last])
                },
                thousands(s.ops),
                format!("≤ {}", Amount::cost(s.ops, r.max_price).unwrap_or_default()),
            ];
            match p.placement.as_ref().and_then(|pl| pl.stages.get(i)) {
                Some(ps) => {
                    row.push(short(&ps.provider));
                    row.push(ps.price.map_or("-".into(), |x| x.to_string()));
                    row.push(
                        ps.speed_ops_per_s
                            .map_or("-".into(), |x| format!("{} ops/s", thousands(x))),
                    );
                    row.push(ps.compute_s.map_or("-".into(), |x| format!("{:.3} s", x)));
                }
                None => row.extend([
                    "ledger match".to_string(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]),
            }
            row
        })
        .collect();
    let t = table(
        &[
            "stage",
            if p.training.is_some() {
                "steps"
            } else {
                "layers"
            },
            "names",
            "ops",
            "cost at max",
            "provider",
            "price",
            "speed",
            "compute",
        ],
        &rows,
    );
    for line in t.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    if let Some(pl) = &p.placement {
        if let Some(l) = pl.latency_s {
            out.push_str(&format!(
                "predicted  {:.3} s end to end (bottleneck {:.3} s; links at an assumed {} Gbit/s; {} candidate(s))\n",
                l,
                pl.bottleneck_s.unwrap_or(0.0),
                pl.bandwidth_bytes_per_s * 8.0 / 1e9,
                pl.candidates
            ));
        }
    }
    out.push_str(&format!(
        "escrow     {} = {} ops × max price {} per mega-op × {} cop{}\n",
        p.escrow,
        thousands(p.total_ops()),
        r.max_price,
        u32::from(r.replicas) + u32::from(r.verification != VerificationLevel::Optimistic),
        if r.replicas == 1 && r.verification == VerificationLevel::Optimistic {
            "y"
        } else {
            "ies (replicas + auditor)"
        }
    ));
    out
}

fn status_text(id: JobId, job: &Job, height: Option<u64>) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "job {id}: {:?}{}\n",
        job.status,
        height.map_or(String::new(), |h| format!(" (chain at height {h})"))
    ));
    out.push_str(&format!(
        "  requester {}  payer {}  submitted at height {}\n",
        job.requester, job.payer, job.submitted_at
    ));
    out.push_str(&format!(
        "  model {}  input {}\n",
        short_hash(&job.spec.model),
        short_hash(&job.spec.input)
    ));
    out.push_str(&format!(
        "  max price {} per mega-op · deadline {} blocks · {} replica(s) · {:?}{}\n",
        job.spec.max_price,
        job.spec.deadline,
        job.spec.requirements.replicas,
        job.spec.requirements.verification,
        job.spec
            .mandate
            .map_or(String::new(), |m| format!(" · mandate {m}"))
    ));
    let mut rows = Vec::new();
    for (s, spec) in job.spec.stages.iter().enumerate() {
        let (_, phase) = stage_progress(job, s);
        rows.push(vec![
            s.to_string(),
            format!("{}..{}", spec.first_layer, spec.first_layer + spec.layers),
            thousands(spec.ops),
            phase,
        ]);
        for (r, slot) in job.stages[s].slots.iter().enumerate() {
            let line = match &slot.assignment {
                None => format!("replica {r}: waiting for a provider"),
                Some(a) => format!(
                    "replica {r}: {} at {} per mega-op, deadline {}, {}",
                    a.provider,
                    a.price,
                    a.deadline,
                    match (a.commitment.is_some(), &a.result) {
                        (_, Some(res)) => format!("revealed output {}", short_hash(&res.output)),
                        (true, None) => "committed".to_string(),
                        (false, None) => "working".to_string(),
                    }
                ),
            };
            rows.push(vec![String::new(), String::new(), String::new(), line]);
        }
        if let Some(res) = &job.stages[s].result {
            rows.push(vec![
                String::new(),
                String::new(),
                String::new(),
                format!("agreed output {}", res.output),
            ]);
        }
    }
    for line in table(&["stage", "layers", "ops", "phase"], &rows).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    if !job.excluded.is_empty() {
        out.push_str(&format!(
            "  excluded (missed a deadline or lost a dispute): {}\n",
            job.excluded
                .iter()
                .map(short)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

/// The bill: ops × price per stage and replica, the fee, the escrow and the refund.
fn cost_text(c: &CostBreakdown, sub: Option<&Submitted>) -> String {
    let mut rows = Vec::new();
    for st in &c.stages {
        for s in &st.slots {
            rows.push(vec![
                st.stage.to_string(),
                s.replica.to_string(),
                s.provider.as_ref().map_or("-".into(), short),
                thousands(st.ops),
                s.price.map_or("-".into(), |p| p.to_string()),
                s.bill.map_or("-".into(), |b| b.to_string()),
                s.paid.to_string(),
            ]);
        }
    }
    let mut out =
        String::from("cost (ops × price / 10^6 per replica, paid once a stage is final)\n");
    for line in table(
        &[
            "stage", "replica", "provider", "ops", "price", "bill", "paid",
        ],
        &rows,
    )
    .lines()
    {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!("  paid to providers  {}\n", c.paid));
    if let Some(sub) = sub {
        out.push_str(&format!("  fee (SubmitJob)    {} (burned)\n", sub.fee));
    }
    out.push_str(&format!("  escrow locked      {}\n", c.locked));
    if c.charged.0 > 0 {
        out.push_str(&format!(
            "  charged, burned    {} (the generation session broke: its bill, paid to nobody)\n",
            c.charged
        ));
    }
    match c.refund {
        Some(r) if c.charged.0 > 0 => out.push_str(&format!(
            "  refund             {r} (locked − paid − charged)\n"
        )),
        Some(r) => out.push_str(&format!("  refund             {r} (locked − paid)\n")),
        None => out.push_str(&format!(
            "  still in escrow    {} (the job is active)\n",
            c.still_locked
        )),
    }
    if let Some(sub) = sub {
        out.push_str(&format!(
            "  total spent        {}\n",
            Amount(
                c.paid
                    .0
                    .saturating_add(c.charged.0)
                    .saturating_add(sub.fee.0)
            )
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_flag_forms() {
        assert_eq!(placement("ledger"), Ok(PlacementChoice::Ledger));
        assert_eq!(placement("AUTO"), Ok(PlacementChoice::Auto));
        let a = "11".repeat(32);
        let b = "22".repeat(32);
        assert_eq!(
            placement(&format!("{a}, {b}")),
            Ok(PlacementChoice::Named(vec![
                Address([0x11; 32]),
                Address([0x22; 32])
            ]))
        );
        assert!(placement("nobody").is_err());
        assert!(placement(",").is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        job: JobArgs,
    }

    fn submit_args(extra: &[&str]) -> Result<SubmitArgs, clap::Error> {
        use clap::Parser as _;
        let mut argv = vec![
            "agentic", "submit", "--key", "k.json", "--model", "tiny-gpt",
        ];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv)?.job.cmd {
            JobCmd::Submit(s) => Ok(*s),
            _ => unreachable!(),
        }
    }

    #[test]
    fn submit_flags_map_onto_the_request() {
        let a = "11".repeat(32);
        let b = "22".repeat(32);
        let names = format!("{a},{b}");
        let args = submit_args(&[
            "--text",
            "one",
            "--text",
            "two",
            "--placement",
            &names,
            "--replicas",
            "2",
            "--max-price",
            "7",
            "--verification",
            "audited",
            "--mandate",
            "3",
            "--coord",
            "-5,6,7",
            "--regions",
            "1,2",
        ])
        .unwrap();
        let r = request(&args).unwrap();
        // Named providers set the stage count when --stages is absent.
        assert_eq!(r.stages, 2);
        assert_eq!(r.input, JobInput::Texts(vec!["one".into(), "two".into()]));
        assert_eq!(r.replicas, 2);
        assert_eq!(r.max_price, Amount(7));
        assert_eq!(r.verification, VerificationLevel::Audited);
        assert_eq!(r.mandate, Some(MandateId(3)));
        assert_eq!(r.coord, Coord::new(-5, 6, 7));
        assert_eq!(r.regions, vec![Region(1), Region(2)]);
        assert_eq!(r.capabilities, Capabilities(0));
        // Defaults.
        let r = request(&submit_args(&["--text", "x"]).unwrap()).unwrap();
        assert_eq!((r.stages, r.replicas, r.deadline), (1, 1, 100));
        assert_eq!(r.placement, PlacementChoice::Ledger);
        // Exactly one input source.
        assert!(submit_args(&[]).is_err());
        assert!(submit_args(&["--text", "x", "--tensor", "t.bin"]).is_err());
    }

    #[test]
    fn input_files_hold_one_text_per_line() {
        let dir = std::env::temp_dir().join(format!("agentic-job-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lines.txt");
        std::fs::write(&path, "first\n\n  \nsecond  \n").unwrap();
        let args = submit_args(&["--input-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(
            input(&args).unwrap(),
            JobInput::Texts(vec!["first".into(), "second".into()])
        );
        std::fs::write(&path, "\n\n").unwrap();
        assert!(input(&args).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn training_flags_map_onto_a_training_request() {
        let dir = std::env::temp_dir().join(format!("agentic-job-train-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("fables.txt");
        std::fs::write(&data, "The Fox and the Crow.").unwrap();
        let d = data.to_str().unwrap();
        let args = submit_args(&[
            "--train",
            d,
            "--steps",
            "12",
            "--stages",
            "3",
            "--batch",
            "2",
            "--seq",
            "16",
            "--lr",
            "0.003",
            "--weight-decay",
            "0.01",
            "--warmup",
            "2",
            "--data-seed",
            "5",
            "--init-seed",
            "9",
        ])
        .unwrap();
        let r = request(&args).unwrap();
        assert_eq!(r.stages, 3);
        let JobInput::Training(t) = &r.input else {
            panic!("not a training request: {:?}", r.input)
        };
        assert_eq!(t.data, b"The Fox and the Crow.");
        assert_eq!((t.steps, t.batch, t.seq), (12, 2, 16));
        assert_eq!(
            t.optimizer,
            OptimizerConfig::Adam(AdamConfig {
                lr: 0.003,
                weight_decay: 0.01,
                ..AdamConfig::default()
            })
        );
        assert_eq!(
            t.schedule,
            LrSchedule::WarmupLinearDecay {
                warmup: 2,
                min_lr_frac: 0.1
            }
        );
        assert_eq!((t.data_seed, t.init_seed), (5, Some(9)));
        // Defaults, and SGD.
        let r =
            request(&submit_args(&["--train", d, "--steps", "4", "--optimizer", "sgd"]).unwrap())
                .unwrap();
        let JobInput::Training(t) = &r.input else {
            unreachable!()
        };
        assert_eq!(
            t.optimizer,
            OptimizerConfig::Sgd {
                lr: 1e-3,
                momentum: 0.0
            }
        );
        assert_eq!((t.batch, t.seq, t.schedule), (4, 32, LrSchedule::Constant));
        // --train needs --steps; training flags need --train; one input only.
        assert!(request(&submit_args(&["--train", d]).unwrap()).is_err());
        assert!(request(&submit_args(&["--text", "x", "--steps", "3"]).unwrap()).is_err());
        assert!(request(
            &submit_args(&["--train", d, "--steps", "3", "--min-lr-frac", "0.5"]).unwrap()
        )
        .is_err());
        assert!(submit_args(&["--text", "x", "--train", d, "--steps", "3"]).is_err());
        assert!(request(
            &submit_args(&[
                "--train",
                d,
                "--steps",
                "3",
                "--optimizer",
                "sgd",
                "--weight-decay",
                "0.1"
            ])
            .unwrap()
        )
        .is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_long_run_shows_twenty_steps_first_and_last_included() {
        assert_eq!(shown_steps(3), vec![0, 1, 2]);
        let v = shown_steps(1000);
        assert_eq!(v.len(), 20);
        assert_eq!((v[0], v[19]), (0, 999));
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1234567u64), "1,234,567");
        assert_eq!(thousands(999u64), "999");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
