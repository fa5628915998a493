//! `agentic job`: buy neural-network inference on the market, follow it, fetch
//! the verified output and see the bill — the CLI face of
//! [`agentic_agent::requester`].
//!
//! ```text
//!   agentic job submit --key FILE --model M (--text T… | --input-file F | --tensor F) [--stages K] …
//!        │  prepare (local: bundle, encode, meter, split/place, escrow) ── --dry-run stops here
//!        │  upload model + input blobs (if the node lacks them), SubmitJob ──▶ job id
//!        └─ --wait: one progress bar per stage (matching → running → revealing →
//!                   audit/challenge window → finalized), then the cost breakdown;
//!                   --out FILE writes the output
//!   agentic job status ID            phase, providers and deadlines of every stage
//!   agentic job wait ID              follow until the job ends
//!   agentic job result ID --out F    the output (hash-checked) as JSON + the cost breakdown
//!   agentic job cancel ID --key F    withdraw a job no provider committed to; full refund
//! ```
//!
//! The node is `--node URL`, else `$AGENTIC_NODE`, else `http://127.0.0.1:8000`.
//! Readable text by default, JSON with `--json`; any failure exits non-zero with
//! the reason (the ledger's, for a rejected transaction).

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentic_agent::requester::{
    cost, CostBreakdown, JobInput, JobRequest, JobResult, PlacementChoice, PreparedJob, Requester,
    Submitted,
};
use agentic_compute::Activation;
use agentic_node::blobs::hex32;
use agentic_node::keystore::KeyFile;
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
    /// Fetch the job's output (checked against its hash) into a JSON file.
    Result {
        /// The job id.
        id: u64,
        /// Where to write `{job, model, output_hash, stage_results, rows, width, data}`.
        #[arg(long, value_name = "FILE")]
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
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["text", "input_file", "tensor"])))]
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
    /// Write the output here once the job completes (implies --wait).
    #[arg(long, value_name = "FILE")]
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
            finish(&job, JobId(id), None, json)
        }),
        JobCmd::Result { id, out } => rt.block_on(result(&node, JobId(id), &out, json)),
        JobCmd::Cancel { id, key } => rt.block_on(cancel(&node, JobId(id), &key, json)),
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
    if !(args.wait || args.out.is_some()) {
        if json {
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("follow it with: agentic job status {}", sub.job);
        }
        return Ok(());
    }
    let job = follow(&req, sub.job, Duration::from_secs(args.timeout), json).await?;
    let c = cost(&job);
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
    if let Some(path) = &args.out {
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

async fn status(node: &NodeArgs, id: JobId, json: bool) -> anyhow::Result<()> {
    let req = reader(node);
    let job = req
        .job(id)
        .await
        .with_context(|| format!("reading job {id} from {}", req.client().base()))?;
    let c = cost(&job);
    if json {
        let v = json!({"id": id.0, "job": job, "cost": c});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let height = req
        .client()
        .status()
        .await
        .ok()
        .and_then(|s| s["height"].as_u64());
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
    let res = req
        .result(id)
        .await
        .with_context(|| format!("fetching job {id}'s output"))?;
    write_result(out, &job, &res)?;
    let c = cost(&job);
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
            hex32(&res.output_hash),
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
        } => {
            let deadline = assigned.iter().map(|a| a.deadline.0).min().unwrap_or(0);
            (
                1,
                format!("running on {who}: {committed}/{replicas} committed, commit by height {deadline}"),
            )
        }
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

/// After `job wait`: the bill, and a non-zero exit unless the job completed.
fn finish(job: &Job, id: JobId, sub: Option<&Submitted>, json: bool) -> anyhow::Result<()> {
    let c = cost(job);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"id": id.0, "status": job.status, "cost": c}))?
        );
    } else {
        print!("{}", cost_text(&c, sub));
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

fn short_hash(h: &Hash) -> String {
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
fn thousands(n: impl ToString) -> String {
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
            "layers",
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
    match c.refund {
        Some(r) => out.push_str(&format!("  refund             {r} (locked − paid)\n")),
        None => out.push_str(&format!(
            "  still in escrow    {} (the job is active)\n",
            c.still_locked
        )),
    }
    if let Some(sub) = sub {
        out.push_str(&format!(
            "  total spent        {}\n",
            Amount(c.paid.0.saturating_add(sub.fee.0))
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
    fn numbers_read_well() {
        assert_eq!(thousands(1234567u64), "1,234,567");
        assert_eq!(thousands(999u64), "999");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
