//! `agentic bench scale`: what one block costs the ledger as the market grows.
//!
//! For each provider count P (default 1,000 / 10,000 / 100,000), a seeded
//! market of P registered providers (prices, regions, capabilities,
//! capacities, coordinates and stakes drawn at random) and 1,000 funded
//! requesters, then, each on a fresh copy of that state (copying not timed),
//! the wall time of `State::apply_block_preverified` (the state machine with
//! its per-block matching; signatures are checked before and do not depend
//! on P) for:
//!
//! - **one SubmitJob** in a block;
//! - **1,000 SubmitJobs** in a block (random requirements, 1–3 stages);
//! - **an empty block with 1,000 waiting jobs**: jobs asking a capability no
//!   provider offers, submitted (not timed) before.
//!
//! Beside them, the old rule measured in the same run: the scan of every
//! provider that one slot cost before the offer index
//! (`State::select_by_scan`, the test oracle), against the index's
//! `select` on the same jobs — same choices, checked here too.
//!
//! `ratio` = apply time of 1,000 SubmitJobs at the largest P / at the
//! smallest P (flat is 1.0).

use std::time::{Duration, Instant};

use agentic_protocol::coord::Coord;
use agentic_protocol::state::{Block, StateKey};
use agentic_protocol::test_utils::{address_of, job_spec, key, GenesisBuilder, TestReferee};
use agentic_protocol::tx::{JobSpec, Offer, SignedTx, Tx, TxBody};
use agentic_protocol::types::{
    Amount, Capabilities, ChainId, Endpoint, Hash, JobId, Region, VerificationLevel,
};
use agentic_protocol::State;
use anyhow::{ensure, Context};
use commonware_codec::EncodeSize;
use commonware_cryptography::ed25519::PrivateKey;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Provider counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    pub providers: Vec<usize>,
    /// SubmitJobs in the busy block (and waiting jobs in the empty one).
    #[arg(long, default_value_t = 1_000)]
    pub jobs: usize,
    /// Repetitions of each timed block; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Seed of the market and the jobs.
    #[arg(long, default_value_t = 17)]
    pub seed: u64,
    /// Validators of the whole-network simulation (0 skips it). Its wall time grows
    /// with the square of the count (every validator checks every other's votes):
    /// 100 validators × 10,000 providers × 22 virtual s took 428 s on this 2-core machine.
    #[arg(long, default_value_t = 100)]
    pub sim_validators: usize,
    /// Providers of the whole-network simulation.
    #[arg(long, default_value_t = 10_000)]
    pub sim_providers: usize,
    /// Virtual seconds of the whole-network simulation (the warm-up included).
    #[arg(long, default_value_t = 22)]
    pub sim_seconds: u64,
    /// Virtual seconds of the simulation's warm-up, before the first job (jobs
    /// arrive in the next 40 % of the run and have the rest to finish).
    #[arg(long, default_value_t = 4)]
    pub sim_warmup: u64,
}

/// Targets from issue 17 (this machine): 1,000 SubmitJobs at 100,000
/// providers, and an empty block with 1,000 waiting jobs.
const TARGET_BUSY_MS: f64 = 100.0;
const TARGET_EMPTY_MS: f64 = 1.0;
const CHAIN: u64 = 1;
/// A capability bit no provider of the bench offers: jobs asking it wait.
const NOBODY: u64 = 1 << 40;

pub fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(
        !args.providers.is_empty() && args.providers.iter().all(|&p| p > 0),
        "--providers needs positive counts"
    );
    ensure!(
        args.jobs > 0 && args.reps > 0,
        "--jobs and --reps must be positive"
    );
    let progress = ProgressBar::new(args.providers.len() as u64 * 4).with_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg}")
            .context("progress template")?,
    );
    // First, while the heap is small: resident memory only shows what grows
    // past what earlier work freed.
    progress.set_message("RAM of 10,000 finished jobs");
    let ram = finished_jobs_ram(10_000)?;
    let requesters: Vec<PrivateKey> = (0..args.jobs as u64)
        .into_par_iter()
        .map(|i| key(1_000_000_000 + i))
        .collect();
    let mut rows = Vec::new();
    for &p in &args.providers {
        progress.set_message(format!("{p} providers: registering"));
        let market = Market::build(p, &requesters, args.seed)?;
        progress.inc(1);

        progress.set_message(format!("{p} providers: one SubmitJob"));
        let one = market.block(&requesters[..1], args.seed, false)?;
        let one_ms = ms(best(args.reps, &market.state, &one)?);
        progress.inc(1);

        progress.set_message(format!("{p} providers: {} SubmitJobs", args.jobs));
        let busy = market.block(&requesters, args.seed + 1, false)?;
        let busy_ms = ms(best(args.reps, &market.state, &busy)?);
        progress.inc(1);

        progress.set_message(format!(
            "{p} providers: an empty block, {} waiting",
            args.jobs
        ));
        let waiting = market.block(&requesters, args.seed + 2, true)?;
        let mut base = market.state.clone();
        let out = base
            .apply_block_preverified(
                &waiting,
                &vec![true; waiting.txs.len()],
                &TestReferee::default(),
            )
            .context("waiting jobs")?;
        ensure!(
            out.receipts.iter().all(Result::is_ok),
            "a waiting job was refused"
        );
        let (_, asleep) = base.matching_queues();
        ensure!(asleep == args.jobs, "{asleep} of {} jobs asleep", args.jobs);
        let empty = Block {
            height: base.height().plus(1),
            beacon: [9; 32],
            txs: Vec::new(),
        };
        let empty_ms = ms(best(args.reps, &base, &empty)?);

        // The old rule in the same run: one slot by a scan of every provider,
        // against the index, on the busy block's jobs (same choices).
        let mut matched = market.state.clone();
        matched
            .apply_block_preverified(&busy, &vec![true; busy.txs.len()], &TestReferee::default())
            .context("busy block")?;
        let first = market.state.meta().next_job.0;
        let ids: Vec<JobId> = (first..first + args.jobs as u64).map(JobId).collect();
        let start = Instant::now();
        let scanned: Vec<_> = ids
            .iter()
            .map(|id| matched.select_by_scan(matched.job(*id).expect("submitted"), &[]))
            .collect();
        let scan_us = start.elapsed().as_secs_f64() * 1e6 / ids.len() as f64;
        let start = Instant::now();
        let mut examined = 0;
        let indexed: Vec<_> = ids
            .iter()
            .map(|id| {
                let (pick, work) = matched.select_indexed(*id, &[]);
                examined += work;
                pick
            })
            .collect();
        let index_us = start.elapsed().as_secs_f64() * 1e6 / ids.len() as f64;
        ensure!(
            scanned == indexed,
            "the index chose differently from the scan"
        );
        progress.inc(1);

        rows.push(json!({
            "providers": p,
            "indexed_offers": market.state.indexed_offers(),
            "one_submit_ms": one_ms,
            "submits": args.jobs,
            "submits_ms": busy_ms,
            "empty_block_waiting": args.jobs,
            "empty_block_ms": empty_ms,
            "slot_by_scan_us": scan_us,
            "slot_by_index_us": index_us,
            "offers_examined_per_slot": examined as f64 / ids.len() as f64,
            "scan_over_index": scan_us / index_us.max(1e-9),
        }));
    }
    progress.finish_and_clear();

    let busy = |r: &Value| r["submits_ms"].as_f64().unwrap_or(f64::NAN);
    let (small, large) = (&rows[0], &rows[rows.len() - 1]);
    let ratio = busy(large) / busy(small);
    let mut finished = finished_job_bytes()?;
    finished["ram"] = ram;
    let simulation = if args.sim_validators > 0 {
        Some(simulate(args)?)
    } else {
        None
    };
    let report = json!({
        "bench": "scale",
        "ratio": ratio,
        "ratio_is": "apply time of the busy block at the largest provider count / at the smallest (flat is 1.0)",
        "threads": rayon::current_num_threads(),
        "seed": args.seed,
        "reps": args.reps,
        "rows": rows,
        "finished_job": finished,
        "simulation": simulation,
        "targets": {
            "submits_ms_at_100k_at_most": TARGET_BUSY_MS,
            "empty_block_ms_at_most": TARGET_EMPTY_MS,
        },
        "method": "State::apply_block_preverified on a fresh copy of the market (copy not timed), best of reps; signatures are checked before apply and do not depend on the provider count (see bench ledger)",
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "bench scale (ratio {ratio:.2}: busy block at {} / at {} providers)",
            large["providers"], small["providers"]
        );
        for r in &report["rows"].as_array().cloned().unwrap_or_default() {
            println!(
                "  {:>7} providers: 1 submit {:.2} ms · {} submits {:.1} ms · empty block with {} waiting {:.3} ms · slot by scan {:.1} µs vs index {:.1} µs ({:.1} offers examined)",
                r["providers"], num(&r["one_submit_ms"]), r["submits"], num(&r["submits_ms"]),
                r["empty_block_waiting"], num(&r["empty_block_ms"]), num(&r["slot_by_scan_us"]),
                num(&r["slot_by_index_us"]), num(&r["offers_examined_per_slot"]),
            );
        }
        println!(
            "  a finished job: {} bytes of state, 0 after the retention window ({} blocks); about {:.0} bytes of RAM ({} jobs)",
            report["finished_job"]["state_bytes"],
            report["finished_job"]["retention_blocks"],
            num(&report["finished_job"]["ram"]["bytes_per_job"]),
            report["finished_job"]["ram"]["jobs"],
        );
        let sim = &report["simulation"];
        if !sim.is_null() {
            println!(
                "  simulation {} validators × {} providers, {} virtual s in {:.0} s wall: finality p50 {:.0} ms p99 {:.0} ms · job latency p50 {:.0} ms p99 {:.0} ms · {} jobs paid of {}",
                sim["config"]["validators"], sim["config"]["providers"], num(&sim["virtual_s"]),
                num(&sim["wall_s"]), num(&sim["finality_ms"]["p50"]), num(&sim["finality_ms"]["p99"]),
                num(&sim["job_latency_ms"]["p50"]), num(&sim["job_latency_ms"]["p99"]),
                sim["tally"]["jobs_completed"], sim["tally"]["jobs_submitted"],
            );
        }
    }
    Ok(())
}

/// The whole-network simulation (`agentic_sim::network`): real consensus and execution
/// on the deterministic runtime, validators and agents placed in the regions of the measured RTT table.
fn simulate(args: &Args) -> anyhow::Result<Value> {
    let config = agentic_sim::network::NetworkConfig {
        seed: args.seed,
        validators: args.sim_validators,
        providers: args.sim_providers,
        duration: Duration::from_secs(args.sim_seconds),
        warmup: Duration::from_secs(args.sim_warmup),
        ..agentic_sim::network::NetworkConfig::large()
    };
    let progress = ProgressBar::new(args.sim_seconds).with_style(
        ProgressStyle::with_template(
            "simulating {msg}: {bar:30} {pos}/{len} virtual s, {elapsed} wall",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_message(format!(
        "{} validators × {} providers",
        config.validators, config.providers
    ));
    let report = agentic_sim::network::run(&config, &mut |t, _| progress.set_position(t.as_secs()))
        .context("the network simulation")?;
    progress.finish_and_clear();
    ensure!(
        report.validators_agree && report.replay_matches,
        "the simulated validators disagree, or the replay differs"
    );
    Ok(serde_json::to_value(&report)?)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Best of `reps` applications of `block` to fresh copies of `state`.
fn best(reps: usize, state: &State, block: &Block) -> anyhow::Result<Duration> {
    let referee = TestReferee::default();
    let mask = vec![true; block.txs.len()];
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let mut s = state.clone();
        let start = Instant::now();
        let out = s.apply_block_preverified(block, &mask, &referee)?;
        best = best.min(start.elapsed());
        ensure!(
            out.receipts.iter().all(Result::is_ok),
            "a bench transaction was refused: {:?}",
            out.receipts.iter().find(|r| r.is_err())
        );
    }
    Ok(best)
}

/// A market of registered providers and funded requesters.
struct Market {
    state: State,
}

impl Market {
    fn build(providers: usize, requesters: &[PrivateKey], seed: u64) -> anyhow::Result<Market> {
        let keys: Vec<PrivateKey> = (0..providers as u64)
            .into_par_iter()
            .map(|i| key(i + 1))
            .collect();
        let mut genesis = GenesisBuilder::new(CHAIN);
        for k in &keys {
            genesis = genesis.account(address_of(k), 1_000_000_000, 0);
        }
        for k in requesters {
            genesis = genesis.account(address_of(k), 1 << 90, 0);
        }
        let mut state = State::new(&genesis.build()).context("genesis")?;
        let min_stake = state.params().min_provider_stake.0;
        let offers: Vec<(Offer, Amount)> = {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..providers)
                .map(|_| {
                    let offer = Offer {
                        capabilities: Capabilities(rng.gen_range(1..16)),
                        price: Amount(rng.gen_range(1..=2_000)),
                        region: Region(rng.gen_range(1..=8)),
                        coord: coord(&mut rng),
                        capacity: rng.gen_range(1..=4),
                        endpoint: Endpoint::NONE,
                        speed: 0,
                    };
                    (
                        offer,
                        Amount(min_stake + rng.gen_range(0..=5 * min_stake.max(1))),
                    )
                })
                .collect()
        };
        let params = state.params().clone();
        let txs: Vec<SignedTx> = keys
            .par_iter()
            .zip(offers.par_iter())
            .map(|(k, (offer, stake))| {
                let body = TxBody::RegisterProvider {
                    offer: offer.clone(),
                    stake: *stake,
                };
                SignedTx::sign(
                    k,
                    Tx {
                        chain_id: ChainId(CHAIN),
                        nonce: 0,
                        fee: params.required_fee(&body),
                        body,
                    },
                )
            })
            .collect();
        let referee = TestReferee::default();
        for chunk in txs.chunks(10_000) {
            let block = Block {
                height: state.height().plus(1),
                beacon: [state.height().0 as u8; 32],
                txs: chunk.to_vec(),
            };
            let out = state.apply_block_preverified(&block, &vec![true; chunk.len()], &referee)?;
            ensure!(
                out.receipts.iter().all(Result::is_ok),
                "a registration was refused: {:?}",
                out.receipts.iter().find(|r| r.is_err())
            );
        }
        Ok(Market { state })
    }

    /// A block of one SubmitJob per requester (random requirements; with
    /// `waiting`, asking a capability nobody offers).
    fn block(&self, requesters: &[PrivateKey], seed: u64, waiting: bool) -> anyhow::Result<Block> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let specs: Vec<JobSpec> = (0..requesters.len())
            .map(|i| spec(&mut rng, i, waiting))
            .collect();
        let params = self.state.params().clone();
        let txs = requesters
            .par_iter()
            .zip(specs)
            .map(|(k, spec)| {
                let body = TxBody::SubmitJob { spec };
                SignedTx::sign(
                    k,
                    Tx {
                        chain_id: ChainId(CHAIN),
                        nonce: self.state.nonce(&address_of(k)),
                        fee: params.required_fee(&body),
                        body,
                    },
                )
            })
            .collect();
        Ok(Block {
            height: self.state.height().plus(1),
            beacon: Hash::digest("bench scale", &[&seed.to_be_bytes()]).0,
            txs,
        })
    }
}

fn coord(rng: &mut ChaCha8Rng) -> Coord {
    Coord::new(
        rng.gen_range(-80_000..80_000),
        rng.gen_range(-80_000..80_000),
        rng.gen_range(0..10_000),
    )
}

/// A job of 1–3 stages with random requirements.
fn spec(rng: &mut ChaCha8Rng, i: usize, waiting: bool) -> JobSpec {
    let stages: Vec<(u32, u64)> = (0..rng.gen_range(1..=3)).map(|_| (2, 5_000_000)).collect();
    let mut spec = job_spec(
        Hash::digest("bench model", &[]),
        Hash::digest("bench input", &[&(i as u64).to_be_bytes()]),
        &stages,
        rng.gen_range(200..=3_000),
        VerificationLevel::Optimistic,
    );
    let r = &mut spec.requirements;
    let regions = rng.gen_range(0..=2);
    r.regions = (0..regions).map(|_| Region(rng.gen_range(1..=8))).collect();
    r.regions.sort();
    r.regions.dedup();
    r.capabilities = Capabilities(if waiting {
        NOBODY
    } else if rng.gen_bool(0.5) {
        0
    } else {
        1 << rng.gen_range(0..4)
    });
    spec.coord = coord(rng);
    spec
}

/// A small chain that prunes after `retention` blocks: one provider of
/// `capacity` slots registered, and a funded requester.
fn small_chain(
    retention: u64,
    capacity: u32,
) -> anyhow::Result<(
    agentic_protocol::test_utils::TestChain,
    PrivateKey,
    PrivateKey,
)> {
    use agentic_protocol::test_utils::{fast_params, offer, TestChain};
    let provider = key(1);
    let requester = key(2);
    let g = GenesisBuilder::new(CHAIN)
        .params(agentic_protocol::Params {
            retention,
            ..fast_params()
        })
        .account(address_of(&provider), 1 << 40, 0)
        .account(address_of(&requester), 1 << 60, 0)
        .build();
    let mut chain = TestChain::new(&g);
    chain
        .step(
            &provider,
            TxBody::RegisterProvider {
                offer: offer(100, capacity),
                stake: Amount(20_000),
            },
        )
        .map_err(|e| anyhow::anyhow!("register: {e}"))?;
    Ok((chain, provider, requester))
}

/// The state a finished job keeps: its key and encoded entity once one honest
/// job ran to completion on a small chain, and after the retention window (the
/// job pruned, checked).
fn finished_job_bytes() -> anyhow::Result<Value> {
    const RETENTION: u64 = 20;
    let (mut chain, provider, requester) = small_chain(RETENTION, 1)?;
    let id = chain.state.meta().next_job;
    let spec = job_spec(
        Hash::digest("bench model", &[]),
        Hash::digest("bench input", &[]),
        &[(2, 5_000_000)],
        1_000,
        VerificationLevel::Optimistic,
    );
    chain
        .step(&requester, TxBody::SubmitJob { spec })
        .map_err(|e| anyhow::anyhow!("submit: {e}"))?;
    let trace = chain.honest_trace(id, 0).context("trace")?;
    chain
        .deliver(&provider, id, 0, &trace)
        .map_err(|e| anyhow::anyhow!("deliver: {e}"))?;
    let mut finished_at = None;
    let mut pruned_at = None;
    for _ in 0..(RETENTION + 40) {
        let out = chain.produce();
        let h = out.height;
        match chain.state.job(id) {
            Some(j) if j.status == agentic_protocol::state::JobStatus::Completed => {
                finished_at
                    .get_or_insert((h, StateKey::Job(id).to_bytes().len() + j.encode_size()));
            }
            Some(_) => {}
            None => {
                ensure!(
                    out.pruned.iter().any(|p| matches!(p, agentic_protocol::state::Pruned::Job { id: x, .. } if *x == id)),
                    "the job left the state without being handed out"
                );
                pruned_at = Some(h);
                break;
            }
        }
    }
    let (done, bytes) = finished_at.context("the job did not complete")?;
    let pruned = pruned_at.context("the job was not pruned after the retention window")?;
    ensure!(
        chain.state.root() == chain.state.full_root(),
        "root differs from a rebuild"
    );
    Ok(json!({
        "state_bytes": bytes,
        "after_retention_bytes": 0,
        "retention_blocks": RETENTION,
        "completed_at": done.0,
        "pruned_at": pruned.0,
        "note": "encoded key + entity in the state root while the job is kept; after the retention window the job is absent from the state (checked) and the node serves it from its archive",
    }))
}

/// Resident memory of this process (bytes), from `/proc/self/statm`.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The RAM `n` finished jobs hold: resident memory grown while `n` honest
/// one-stage jobs ran to completion on a small chain, per job; then the
/// retention window passes and every one is pruned (checked).
fn finished_jobs_ram(n: usize) -> anyhow::Result<Value> {
    use agentic_protocol::test_utils::salt_for;
    // Longer than the whole run (13 blocks per batch), so every job is
    // still in the state when the memory is read.
    const RETENTION: u64 = 400;
    const PER_BLOCK: usize = 1_000;
    let (mut chain, provider, requester) = small_chain(RETENTION, n as u32)?;
    let who = address_of(&provider);
    let before = rss_bytes();
    let first = chain.state.meta().next_job.0;
    for batch in 0..n.div_ceil(PER_BLOCK) {
        let ids: Vec<JobId> = (0..PER_BLOCK.min(n - batch * PER_BLOCK))
            .map(|i| {
                let i = (batch * PER_BLOCK + i) as u64;
                let spec = job_spec(
                    Hash::digest("bench model", &[]),
                    Hash::digest("bench input", &[&i.to_be_bytes()]),
                    &[(2, 5_000_000)],
                    1_000,
                    VerificationLevel::Optimistic,
                );
                chain.push(&requester, TxBody::SubmitJob { spec });
                JobId(first + i)
            })
            .collect();
        chain.produce();
        let mut reveals = Vec::with_capacity(ids.len());
        for &id in &ids {
            let trace = chain.honest_trace(id, 0).context("trace")?;
            let result = trace.result();
            let salt = salt_for(&who, id, 0);
            chain.push(
                &provider,
                TxBody::CommitResult {
                    job: id,
                    stage: 0,
                    commitment: result.commitment(id, 0, &salt, &who),
                },
            );
            reveals.push(TxBody::RevealResult {
                job: id,
                stage: 0,
                result,
                salt,
            });
        }
        chain.produce();
        for body in reveals {
            chain.push(&provider, body);
        }
        chain.produce();
        chain.advance(10);
    }
    let done = (first..first + n as u64)
        .filter(|&j| {
            chain
                .state
                .job(JobId(j))
                .is_some_and(|job| job.status == agentic_protocol::state::JobStatus::Completed)
        })
        .count();
    ensure!(done == n, "{done} of {n} jobs completed");
    let after = rss_bytes();
    chain.advance(RETENTION + 2);
    let left = (first..first + n as u64)
        .filter(|&j| chain.state.job(JobId(j)).is_some())
        .count();
    ensure!(
        left == 0,
        "{left} finished jobs still in the state after the retention window"
    );
    let per_job = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / n as f64),
        _ => None,
    };
    Ok(json!({
        "jobs": n,
        "bytes_per_job": per_job,
        "after_retention_jobs_in_state": left,
        "method": "resident memory grown while the jobs ran to completion (their entities plus the chain's indexes of them), divided by the jobs; after the window none is in the state (the allocator may keep the pages)",
    }))
}
