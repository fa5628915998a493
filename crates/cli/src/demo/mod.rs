//! `agentic demo`: the whole story of the market, on the real network, in one
//! process — and a report that checks every promise it makes.
//!
//! ```text
//!   temp dir ─▶ local market (agentic_provider::local): genesis + keys, N validators
//!               (simplex consensus, p2p, storage on loopback, HTTP API)
//!     │
//!     ├─ 1 the market opens      validators bond; provider daemons (emulated speeds and
//!     │                          latencies) measure, probe, bond, register
//!     ├─ 2 a pipeline job        alice → SDK → partitioner places 3 stages on 3 daemons →
//!     │                          same bits as one local run; each stage paid ops × price
//!     ├─ 3 an agent's mandate    bob grants caps; bob-agent buys within them; a purchase
//!     │                          over the per-job cap is refused by the ledger
//!     ├─ 4 a provider dies       killed mid-stage → deadline missed → penalty, reputation,
//!     │                          re-route → same bits, paid once
//!     ├─ 5 a dispute             a cheating daemon (one ulp off in one layer) is audited →
//!     │                          bisection to one layer → validators re-execute it → slash
//!     ├─ 6 governance            validators vote; the parameter changes at its activation height
//!     └─ 7 the books close       supply conserved and one state root on every validator
//!     │
//!   report (readable, or --json) ─▶ exit 0 only if every check held; --serve keeps it up
//! ```
//!
//! Nothing is scripted around the ledger: every transaction is signed, gossiped,
//! ordered by consensus and applied by every validator; the providers are the
//! real daemon with its data plane; buyers use the requester SDK over HTTP.
//! What one machine cannot provide is emulated by the daemons themselves (a
//! slower machine, a longer link: see [`cast`]).

mod acts;
mod cast;
mod purchase;
mod report;
mod world;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agentic_provider::local::{self, LocalMarket, MarketSpec};
use anyhow::{bail, Context};
use tracing::Instrument as _;

use report::{NetworkReport, Report, SCENARIO};
use world::World;

#[derive(clap::Args)]
pub struct Args {
    /// Print the report as JSON (amounts as exact decimal strings).
    #[arg(long)]
    pub json: bool,
    /// Keep the network (validators and providers) running after the report, until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// Create the market's files here and keep them (default: a temporary directory,
    /// removed at the end unless --serve).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Number of validators.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub validators: usize,
    /// Least time between blocks, in milliseconds.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub block_ms: u64,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let (dir, keep) = match &args.dir {
        Some(d) => (d.clone(), true),
        None => (
            std::env::temp_dir().join(format!(
                "agentic-demo-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
            )),
            args.serve,
        ),
    };
    if args.validators == 0 {
        bail!("a network needs at least one validator");
    }
    let mut spec = MarketSpec::new(args.validators, &[]);
    spec.users = cast::users();
    spec.block_interval = Duration::from_millis(args.block_ms);
    for (name, value) in cast::PARAMS {
        spec = spec.param(name, value);
    }
    let options = Options {
        json: args.json,
        serve: args.serve,
        block_ms: args.block_ms,
        dir: dir.display().to_string(),
        started,
    };
    let outcome = local::run(&dir, spec, move |market| story(market, options));
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome.with_context(|| format!("the local market in {}", dir.display()))?
}

/// What the story needs from the command line.
struct Options {
    json: bool,
    serve: bool,
    block_ms: u64,
    dir: String,
    started: Instant,
}

/// Plays every act, prints the report, serves if asked.
async fn story(market: LocalMarket, opts: Options) -> anyhow::Result<()> {
    let network = NetworkReport {
        chain_id: market.files.genesis.chain_id,
        validators: market.validators.len(),
        block_interval_ms: opts.block_ms,
        api: market.api.clone(),
        validator_apis: (0..market.validators.len())
            .map(|i| market.api(i))
            .collect(),
        dir: opts.dir.clone(),
    };
    tracing::info!(api = %network.api, validators = network.validators, "market up");
    let mut w = World::new(market, acts::COUNT).await?;
    let played = play(&mut w, network, &opts).await;
    w.progress.finish();
    let report = played?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    if !report.all_checks_held {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.held)
            .map(|c| c.name.as_str())
            .collect();
        bail!(
            "{} of {} checks failed: {}",
            failed.len(),
            report.checks.len(),
            failed.join("; ")
        );
    }
    if opts.serve {
        let msg = format!(
            "serving: the network stays up (explorer {}/ in a browser; API {}, validators {}; files in {}). Ctrl-C to stop.",
            report.network.api.trim_end_matches('/'),
            report.network.api,
            report.network.validator_apis.join(" "),
            report.network.dir
        );
        if opts.json {
            eprintln!("{msg}");
        } else {
            println!("\n{msg}");
        }
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    Ok(())
}

/// The acts, in order.
async fn play(w: &mut World, network: NetworkReport, opts: &Options) -> anyhow::Result<Report> {
    let market = acts::open::run(w)
        .instrument(tracing::info_span!("act", n = 1, name = "open"))
        .await
        .context("act 1, the market opens")?;
    let pipeline_job = acts::pipeline::run(w)
        .instrument(tracing::info_span!("act", n = 2, name = "pipeline"))
        .await
        .context("act 2, the pipeline job")?;
    let agent_job = acts::mandate::run(w)
        .instrument(tracing::info_span!("act", n = 3, name = "mandate"))
        .await
        .context("act 3, the agent under a mandate")?;
    let failover = acts::failover::run(w)
        .instrument(tracing::info_span!("act", n = 4, name = "failover"))
        .await
        .context("act 4, the provider that dies")?;
    let dispute = acts::dispute::run(w)
        .instrument(tracing::info_span!("act", n = 5, name = "dispute"))
        .await
        .context("act 5, the dispute")?;
    let governance = acts::governance::run(w)
        .instrument(tracing::info_span!("act", n = 6, name = "governance"))
        .await
        .context("act 6, governance")?;
    let generation = acts::generation::run(w)
        .instrument(tracing::info_span!("act", n = 7, name = "generation"))
        .await
        .context("act 7, the chat completion")?;
    let (supply, accounts) = acts::ledger::run(w)
        .instrument(tracing::info_span!("act", n = 8, name = "ledger"))
        .await
        .context("act 8, the books")?;
    let checks = w.checks().to_vec();
    Ok(Report {
        scenario: SCENARIO,
        network,
        elapsed_s: opts.started.elapsed().as_secs_f64(),
        height: w.height(),
        acts: w.acts().to_vec(),
        market,
        pipeline_job,
        agent_job,
        failover,
        dispute,
        governance,
        generation,
        supply_conserved: supply.conserved,
        supply,
        accounts,
        all_checks_held: checks.iter().all(|c| c.held),
        checks,
    })
}
