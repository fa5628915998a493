//! `agentic agent run --goal goal.toml`: the autonomous procurement agent
//! ([`agentic_agent::procure`]) at the command line. It quotes the goal against
//! the market, refuses what its budget or mandate forbids (exit 2, the reason on
//! stderr, nothing signed), buys, follows the job with a progress line, buys again
//! from other providers if a job fails, and prints its report (text or `--json`;
//! `--report FILE` also writes the JSON). A generation goal (`[generate]`) prints
//! its text as the tokens stream.

use std::path::PathBuf;
use std::time::Duration;

use agentic_agent::procure::{Goal, Outcome, ProcurementAgent, Report, Step};
use agentic_agent::requester::Requester;
use agentic_client::keystore::KeyFile;
use agentic_client::Client;
use anyhow::Context as _;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use crate::node_cmds::NodeArgs;

/// `agentic agent …`.
#[derive(Subcommand)]
pub enum AgentCmd {
    /// Work a procurement goal to its end and report.
    Run(RunArgs),
}

/// `agentic agent run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The goal (TOML: model, texts or input_file or `[generate]`, stages, budget,
    /// max_price, deadlines, min_verification, attempts, mandate, verify_locally,
    /// `[preferences]`).
    #[arg(long)]
    pub goal: PathBuf,
    /// The agent's key file (it signs; under a mandate its principal pays).
    #[arg(long)]
    pub key: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Runs `agentic agent …`; exits 2 when the agent refused to buy.
pub fn run(cmd: AgentCmd) -> anyhow::Result<()> {
    let AgentCmd::Run(args) = cmd;
    let goal = Goal::load(&args.goal)?;
    let key = KeyFile::read(&args.key)
        .with_context(|| format!("reading key file {}", args.key.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let mut req = Requester::new(Client::new(args.node.url()), key.key);
        req.poll_interval = Duration::from_millis(200);
        let agent = ProcurementAgent::new(req);
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        let mut streamed = String::new();
        let r = agent
            .run(&goal, |step| match step {
                Step::Quoted { attempt, quotes } => {
                    let list: Vec<String> = quotes
                        .iter()
                        .map(|q| format!("{} {} (score {:.2})", q.plan, q.expected_bill, q.score))
                        .collect();
                    bar.println(format!("attempt {attempt}: quotes {}", list.join(", ")));
                }
                Step::Submitted {
                    attempt,
                    job,
                    plan,
                    escrow,
                } => {
                    bar.println(format!(
                        "attempt {attempt}: bought `{plan}` as job {job}, escrow {escrow} locked"
                    ));
                }
                Step::Token { index, text, .. } => {
                    // The text so far on the progress line (the report prints it whole).
                    if index == 0 {
                        streamed.clear();
                    }
                    streamed.push_str(text);
                    let flat = streamed.replace('\n', " ");
                    let tail: String = {
                        let n = flat.chars().count();
                        flat.chars().skip(n.saturating_sub(60)).collect()
                    };
                    bar.set_message(format!("token {}: …{tail}", index + 1));
                }
                Step::Job(j) => {
                    let stages: Vec<&str> = j.stages.iter().map(|s| s.phase.name()).collect();
                    bar.set_message(format!("{:?}: {}", j.status, stages.join(" │ ")));
                }
                Step::Checked { job, check } => {
                    bar.println(format!(
                        "job {job} stage {}: {:?}",
                        check.stage, check.check
                    ));
                }
                Step::Dispute { job, record } => {
                    bar.println(format!(
                        "job {job} stage {}: dispute {} ({:?}): {:?}",
                        record.stage, record.dispute, record.opened_by, record.verdict
                    ));
                }
            })
            .await;
        bar.finish_and_clear();
        r
    })?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.report {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print_report(&report);
    }
    if let Outcome::Refused { reason } = &report.outcome {
        eprintln!("refused: {reason}");
        std::process::exit(2);
    }
    if let Outcome::GaveUp { reason } = &report.outcome {
        anyhow::bail!("gave up: {reason}");
    }
    Ok(())
}

fn print_report(r: &Report) {
    let what = match &r.goal.generate {
        Some(g) => format!("up to {} generated token(s)", g.max_tokens),
        None => format!("{} input(s)", r.goal.texts.len()),
    };
    println!(
        "goal      {} on {what}, {} stage(s), budget {}, max price {}",
        r.goal.model, r.goal.stages, r.goal.budget, r.goal.max_price
    );
    println!(
        "quotes    (lower score wins; weights cost {} latency {} reputation {})",
        r.goal.preferences.cost, r.goal.preferences.latency, r.goal.preferences.reputation
    );
    for q in &r.quotes {
        let lat = q
            .latency_s
            .map(|l| format!("{:.3} s", l))
            .unwrap_or_else(|| "?".into());
        println!(
            "  {:<10} bill {:<8} escrow {:<8} latency {:<9} reputation ≥ {:>7} ppm  score {:.3}",
            q.plan, q.expected_bill, q.escrow, lat, q.min_reputation_ppm, q.score
        );
    }
    for a in &r.attempts {
        for line in a.lines() {
            println!("{line}");
        }
    }
    match &r.outcome {
        Outcome::Completed {
            job,
            output_hash,
            shape,
        } => println!(
            "result    job {job}: output {} {:?} (hash-checked against the chain)",
            crate::job::short_hash(output_hash),
            shape
        ),
        Outcome::Generated {
            job,
            text,
            tokens,
            transcript,
            paid,
            ..
        } => {
            println!(
                "result    job {job}: {tokens} token(s), transcript {} (checked against the chain), bill {paid}",
                crate::job::short_hash(transcript)
            );
            println!("text      {text}");
        }
        Outcome::Refused { reason } => println!("refused   {reason}"),
        Outcome::GaveUp { reason } => println!("gave up   {reason}"),
    }
    println!(
        "spent     {} of {} (left {}), {:.1} s",
        r.spent, r.goal.budget, r.budget_left, r.elapsed_s
    );
}
