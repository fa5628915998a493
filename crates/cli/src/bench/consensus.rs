//! `agentic bench consensus`: finalization latency and committed transfer throughput of a
//! whole network — validators on loopback with real authenticated p2p, in one process.
//!
//! ```text
//!   pre-signed transfers ──submit──▶ validator v (sender s → v = s mod n) ──gossip──▶ peers
//!                                        │ propose / verify / finalize (simplex)
//!                                        ▼
//!   watcher thread (polls every chain every 1 ms) ── first sight of each block record
//!                                        │
//!                                        ▼
//!   latency = receipt seen on v − submit to v;   tx/s = receipts / (last receipt − first submit)
//! ```
//!
//! The run, in order:
//!
//! 1. **Baseline.** The ledger's signed transfer rate (`State::apply_block`: batch-verify
//!    every signature, then apply), measured as `agentic bench ledger` measures it, before
//!    the network starts so that nothing else competes for the cores.
//! 2. **Network.** `--validators` validators from a fresh genesis in a temp dir, on free
//!    loopback ports, with `--senders` generated accounts funded in genesis; ready once
//!    every validator has finalized a block. Consensus runs with its default
//!    [`Config`](agentic_node::consensus::Config) and block limits.
//! 3. **Light load.** `--light-txs` transfers submitted one at a time, evenly spread over
//!    `--seconds`, round-robin over the validators. Their p50/p99 are the headline
//!    `finality_p50_ms` / `finality_p99_ms`.
//! 4. **Full load.** `--txs` transfers, signed beforehand, submitted back to back from one
//!    thread as fast as admission takes them. Each sender always goes to the same validator,
//!    so every validator holds whole runs of consecutive nonces and never waits on a gap
//!    left by a gossip message the peers' rate limits dropped. `tx_per_sec` = successful
//!    receipts / (last receipt − first submit).
//! 5. **Agreement.** Every validator reaches the height of the last receipt; their state
//!    roots at the lowest common height must be equal, and every transfer must have
//!    succeeded (failures are reported).
//!
//! `ratio` = `tx_per_sec` / the ledger's signed rate: how much of what the ledger alone can
//! apply survives ordering, gossip, admission and n-fold re-verification on the same cores.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentic_node::chain::{BlockRecord, SharedChain};
use agentic_node::consensus::BlockLimits;
use agentic_node::genesis::AccountEntry;
use agentic_node::service::Running;
use agentic_node::{AdmitError, MempoolLimits, Submit};
use agentic_protocol::hex;
use agentic_protocol::test_utils::{address_of, key};
use agentic_protocol::tx::{SignedTx, Tx, TxBody};
use agentic_protocol::types::{Amount, ChainId, Hash, Height};
use anyhow::{bail, ensure, Context as _};
use commonware_runtime::Runner as _;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;

use super::ledger;
use crate::network::{self, NetworkSpec};

#[derive(clap::Args)]
pub struct Args {
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Validators on loopback.
    #[arg(long, default_value_t = 4)]
    pub validators: u32,
    /// Transfers submitted under full load.
    #[arg(long, default_value_t = 60_000)]
    pub txs: usize,
    /// Sending accounts funded in genesis (each sends txs/senders transfers in nonce order;
    /// at most 1024 may be pending per sender).
    #[arg(long, default_value_t = 200)]
    pub senders: usize,
    /// Length of the light-load phase: its transfers are spread evenly over it.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Transfers submitted under light load.
    #[arg(long, default_value_t = 200)]
    pub light_txs: usize,
    /// Worker threads of the async runtime the validators share.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

const CHAIN: u64 = 1337;
/// How long the network may take to finalize its first block.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Blocks every validator finalizes after the first before the measurement starts.
const WARMUP_BLOCKS: u64 = 20;
/// How long a phase may wait for its receipts after its last submission.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the watcher looks at every chain.
const WATCH_INTERVAL: Duration = Duration::from_millis(1);
/// The baseline's workload: `agentic bench ledger`'s shape (10,000 accounts, blocks of
/// 10,000), fewer transfers, best of two.
const BASELINE: ledger::Workload = ledger::Workload {
    txs: 50_000,
    accounts: 10_000,
    block: 10_000,
};
const BASELINE_REPS: usize = 2;

pub fn run(args: &Args) -> anyhow::Result<()> {
    let max_pending = MempoolLimits::default().max_per_sender as usize;
    ensure!(
        args.validators > 0 && args.txs > 0 && args.senders > 0 && args.light_txs > 0,
        "all sizes must be positive"
    );
    ensure!(
        args.seconds.is_finite() && args.seconds >= 0.0,
        "--seconds must be a non-negative number"
    );
    ensure!(
        args.txs.div_ceil(args.senders) <= max_pending
            && args.light_txs.div_ceil(args.senders) <= max_pending,
        "at most {max_pending} transfers may be pending per sender: use more --senders"
    );
    let progress = ProgressBar::new(5).with_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg}")
            .context("progress template")?,
    );
    progress.enable_steady_tick(Duration::from_millis(100));

    progress.set_message(format!(
        "baseline: the ledger's signed rate over {} transfers",
        BASELINE.txs
    ));
    let ledger_per_s = ledger::signed_transfers_per_sec(&BASELINE, BASELINE_REPS)?;
    progress.inc(1);

    progress.set_message(format!(
        "signing {} transfers from {} senders",
        args.light_txs + args.txs,
        args.senders
    ));
    let transfers = Transfers::sign(args);
    progress.inc(1);

    progress.set_message(format!("starting {} validators", args.validators));
    let dir = std::env::temp_dir().join(format!(
        "agentic-bench-consensus-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    let result = measure(args, transfers, &dir, &progress);
    let _ = std::fs::remove_dir_all(&dir);
    let figures = result?;
    progress.finish_and_clear();
    report(args, &figures, ledger_per_s)
}

/// The transfers of both phases, signed, with the validator each goes to.
struct Transfers {
    accounts: Vec<AccountEntry>,
    light: Vec<Planned>,
    full: Vec<Planned>,
}

/// One signed transfer and the validator it is submitted to.
struct Planned {
    validator: usize,
    tx: SignedTx,
}

impl Transfers {
    /// Transfer k of a phase is sent by sender k mod S with that sender's next nonce, to
    /// validator (k mod S) mod n; the full phase continues the light phase's nonces.
    fn sign(args: &Args) -> Transfers {
        let keys: Vec<_> = (0..args.senders as u64)
            .into_par_iter()
            .map(|i| key(1_000_000 + i))
            .collect();
        let addresses: Vec<_> = keys.iter().map(address_of).collect();
        let accounts = addresses
            .iter()
            .map(|a| AccountEntry {
                address: hex::encode(&a.0),
                balance: network::FUNDING.to_string(),
                bonded: "0".to_string(),
            })
            .collect();
        let mut next_nonce = vec![0u64; keys.len()];
        let mut phase = |count: usize| -> Vec<Planned> {
            let plan: Vec<(usize, u64)> = (0..count)
                .map(|k| {
                    let from = k % keys.len();
                    let nonce = next_nonce[from];
                    next_nonce[from] += 1;
                    (from, nonce)
                })
                .collect();
            plan.into_par_iter()
                .map(|(from, nonce)| Planned {
                    validator: from % args.validators as usize,
                    tx: SignedTx::sign(
                        &keys[from],
                        Tx {
                            chain_id: ChainId(CHAIN),
                            nonce,
                            fee: Amount(1),
                            body: TxBody::Transfer {
                                to: addresses[(from * 7 + 1) % addresses.len()],
                                amount: Amount(3),
                            },
                        },
                    ),
                })
                .collect()
        };
        let light = phase(args.light_txs);
        let full = phase(args.txs);
        Transfers {
            accounts,
            light,
            full,
        }
    }
}

/// Free loopback ports: bind :0 for each, all at once so that they differ, then release.
fn free_addresses(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let host = IpAddr::from([127, 0, 0, 1]);
    let listeners = (0..n)
        .map(|_| TcpListener::bind(SocketAddr::new(host, 0)))
        .collect::<Result<Vec<_>, _>>()
        .context("binding a free loopback port")?;
    listeners
        .iter()
        .map(|l| l.local_addr().context("free port address"))
        .collect()
}

/// When each validator first saw each block applied, from a thread that polls the chains.
struct Watcher {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What one validator's watcher has seen.
#[derive(Default)]
struct Seen {
    /// Height of the last block seen.
    height: u64,
    /// When each transaction's receipt appeared.
    receipts: HashMap<Hash, Instant>,
    /// Blocks, in height order.
    blocks: Vec<Arc<BlockRecord>>,
}

impl Watcher {
    fn start(chains: Vec<SharedChain>) -> Watcher {
        let seen: Arc<Mutex<Vec<Seen>>> =
            Arc::new(Mutex::new(chains.iter().map(|_| Seen::default()).collect()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (v, chain) in chains.iter().enumerate() {
                        let new: Vec<Arc<BlockRecord>> = {
                            let Ok(chain) = chain.read() else { return };
                            let from = seen.lock().map(|s| s[v].height).unwrap_or(u64::MAX);
                            if chain.height().0 <= from {
                                continue;
                            }
                            chain
                                .blocks(Height(from + 1), chain.height())
                                .into_iter()
                                .collect()
                        };
                        let now = Instant::now();
                        let Ok(mut seen) = seen.lock() else { return };
                        let s = &mut seen[v];
                        for block in new {
                            s.height = block.height.0;
                            s.receipts.extend(block.tx_ids.iter().map(|id| (*id, now)));
                            s.blocks.push(block);
                        }
                    }
                    std::thread::sleep(WATCH_INTERVAL);
                }
            })
        };
        Watcher {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// How many of `submitted` have a receipt on the validator they were submitted to.
    fn committed(&self, submitted: &[Submitted]) -> usize {
        let seen = self.seen.lock().expect("watcher lock");
        submitted
            .iter()
            .filter(|s| seen[s.validator].receipts.contains_key(&s.id))
            .count()
    }

    /// The receipt time of each of `submitted` (None: not seen).
    fn receipt_times(&self, submitted: &[Submitted]) -> Vec<Option<Instant>> {
        let seen = self.seen.lock().expect("watcher lock");
        submitted
            .iter()
            .map(|s| seen[s.validator].receipts.get(&s.id).copied())
            .collect()
    }

    /// Validator 0's blocks with heights in `from..=to`.
    fn blocks(&self, from: u64, to: u64) -> Vec<Arc<BlockRecord>> {
        let seen = self.seen.lock().expect("watcher lock");
        seen[0]
            .blocks
            .iter()
            .filter(|b| (from..=to).contains(&b.height.0))
            .cloned()
            .collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A transaction admitted by a validator.
#[derive(Clone, Copy)]
struct Submitted {
    validator: usize,
    id: Hash,
    at: Instant,
}

/// What a phase measured.
struct Phase {
    txs: usize,
    /// Refused at admission (never retried past `Full`).
    refused: usize,
    /// Admitted but with no receipt before the timeout.
    missing: usize,
    /// With a receipt the ledger rejected.
    failed: usize,
    latencies_ms: Vec<f64>,
    /// First submission to last receipt.
    elapsed: Duration,
    /// First submission to last submission.
    submit_elapsed: Duration,
    /// Heights of the first and last block that carried the phase's transfers.
    heights: Option<(u64, u64)>,
    blocks: Vec<Arc<BlockRecord>>,
}

impl Phase {
    fn succeeded(&self) -> usize {
        self.txs - self.refused - self.missing - self.failed
    }

    fn percentile(&self, p: f64) -> f64 {
        percentile(&self.latencies_ms, p)
    }

    /// Mean time between consecutive blocks (proposer timestamps), ms.
    fn block_interval_ms(&self) -> Option<f64> {
        let (first, last) = (self.blocks.first()?, self.blocks.last()?);
        (self.blocks.len() > 1).then(|| {
            (last.timestamp_ms - first.timestamp_ms) as f64 / (self.blocks.len() - 1) as f64
        })
    }

    fn avg_txs_per_block(&self) -> f64 {
        let txs: usize = self.blocks.iter().map(|b| b.tx_ids.len()).sum();
        txs as f64 / self.blocks.len().max(1) as f64
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "txs": self.txs,
            "succeeded": self.succeeded(),
            "refused_at_admission": self.refused,
            "missing": self.missing,
            "failed": self.failed,
            "p50_ms": self.percentile(0.50),
            "p99_ms": self.percentile(0.99),
            "max_ms": self.percentile(1.0),
            "seconds": self.elapsed.as_secs_f64(),
            "submit_seconds": self.submit_elapsed.as_secs_f64(),
            "tx_per_sec": self.succeeded() as f64 / self.elapsed.as_secs_f64(),
            "first_height": self.heights.map(|h| h.0),
            "last_height": self.heights.map(|h| h.1),
            "blocks": self.blocks.len(),
            "avg_txs_per_block": self.avg_txs_per_block(),
            "max_txs_per_block": self.blocks.iter().map(|b| b.tx_ids.len()).max().unwrap_or(0),
            "block_interval_ms": self.block_interval_ms(),
        })
    }
}

/// Everything measured on the network.
struct Figures {
    light: Phase,
    full: Phase,
    ready: Duration,
    final_height: u64,
    final_root: String,
}

/// Starts the network in `dir`, runs both phases, checks agreement.
fn measure(
    args: &Args,
    transfers: Transfers,
    dir: &Path,
    progress: &ProgressBar,
) -> anyhow::Result<Figures> {
    let n = args.validators as usize;
    let ports = free_addresses(2 * n)?;
    let files = network::create_network(
        dir,
        NetworkSpec {
            chain_id: CHAIN,
            addresses: (0..n).map(|i| (ports[2 * i], ports[2 * i + 1])).collect(),
            users: &[],
            funded: transfers.accounts,
        },
    )?;
    let (light_txs, full_txs) = (transfers.light, transfers.full);
    let dir: PathBuf = dir.to_path_buf();
    let light_interval = Duration::from_secs_f64(args.seconds / args.light_txs as f64);
    let progress = progress.clone();
    network::runtime(&dir.join("storage"), args.threads).start(|context| async move {
        let started = Instant::now();
        // Raw consensus speed: no block interval (the network default paces blocks).
        let running: Vec<Running> = agentic_node::localnet::start(
            context,
            &dir,
            &files.genesis,
            &files.validators,
            Duration::ZERO,
            Duration::from_secs(60),
        )
        .await?;
        let chains: Vec<SharedChain> = running.iter().map(|r| r.chain.clone()).collect();
        let submit: Vec<Arc<dyn Submit>> = running.iter().map(|r| r.submit.clone()).collect();
        while chains.iter().any(|c| height(c) == 0) {
            if started.elapsed() > READY_TIMEOUT {
                bail!("the network did not finalize a block within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ready = started.elapsed();
        // Warm up: the first views after start can time out while peers are still dialing
        // each other; measure from a network that has finalized a few more blocks.
        progress.set_message("warming up");
        let warm = WARMUP_BLOCKS + chains.iter().map(height).max().unwrap_or(0);
        while chains.iter().any(|c| height(c) < warm) {
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "the network did not finalize {WARMUP_BLOCKS} blocks within {READY_TIMEOUT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let watcher = Watcher::start(chains.clone());
        progress.inc(1);

        // Light load: one transfer every `light_interval`, from this task.
        progress.set_message(format!(
            "light load: {} transfers over {:.1} s",
            light_txs.len(),
            args.seconds
        ));
        let first = Instant::now();
        let mut light = Vec::with_capacity(light_txs.len());
        let mut refused = 0;
        for (k, p) in light_txs.iter().enumerate() {
            let due = first + light_interval.mul_f64(k as f64);
            tokio::time::sleep_until(due.into()).await;
            match submit[p.validator].submit(p.tx.clone()) {
                Ok(id) => light.push(Submitted {
                    validator: p.validator,
                    id,
                    at: Instant::now(),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "light-load transfer refused");
                    refused += 1;
                }
            }
        }
        wait_for(&watcher, &light, &progress, "light load").await;
        let light = phase(&watcher, &chains, light_txs.len(), refused, &light);
        progress.inc(1);

        // Full load: everything, back to back, from one thread.
        progress.set_message(format!("full load: {} transfers", full_txs.len()));
        let submitter = {
            let submit = submit.clone();
            std::thread::spawn(move || submit_all(&submit, &full_txs))
        };
        while !submitter.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (full, refused) = submitter
            .join()
            .map_err(|_| anyhow::anyhow!("the submitting thread panicked"))?;
        wait_for(&watcher, &full, &progress, "full load").await;
        let full = phase(&watcher, &chains, args.txs, refused, &full);
        progress.inc(1);

        // Agreement: every validator reaches the last receipt's height; compare roots at the
        // lowest common height.
        progress.set_message("checking that the validators agree");
        let target = full.heights.map(|h| h.1).unwrap_or(0);
        let deadline = Instant::now() + RECEIPT_TIMEOUT;
        while chains.iter().any(|c| height(c) < target) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let final_height = chains.iter().map(height).min().unwrap_or(0);
        let roots: Vec<String> = chains
            .iter()
            .map(|c| {
                c.read()
                    .ok()
                    .and_then(|c| c.block(Height(final_height)))
                    .map(|b| hex::encode(&b.state_root.0))
                    .unwrap_or_default()
            })
            .collect();
        drop(watcher);
        if final_height < target {
            bail!("a validator stayed below height {target} (at {final_height})");
        }
        if roots.iter().any(|r| *r != roots[0]) {
            bail!("validators disagree on the state root at height {final_height}: {roots:?}");
        }
        Ok(Figures {
            light,
            full,
            ready,
            final_height,
            final_root: roots[0].clone(),
        })
    })
}

/// Submits every transfer to its validator as fast as admission takes them (a full mempool
/// is retried); returns what was admitted and how many were refused.
fn submit_all(submit: &[Arc<dyn Submit>], txs: &[Planned]) -> (Vec<Submitted>, usize) {
    let mut admitted = Vec::with_capacity(txs.len());
    let mut refused = 0;
    for p in txs {
        loop {
            match submit[p.validator].submit(p.tx.clone()) {
                Ok(id) => {
                    admitted.push(Submitted {
                        validator: p.validator,
                        id,
                        at: Instant::now(),
                    });
                }
                Err(AdmitError::Full) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "full-load transfer refused");
                    refused += 1;
                }
            }
            break;
        }
    }
    (admitted, refused)
}

/// Waits until every submitted transaction has a receipt, or the timeout.
async fn wait_for(watcher: &Watcher, submitted: &[Submitted], progress: &ProgressBar, what: &str) {
    let deadline = Instant::now() + RECEIPT_TIMEOUT;
    loop {
        let done = watcher.committed(submitted);
        progress.set_message(format!(
            "{what}: {done}/{} transfers finalized",
            submitted.len()
        ));
        if done == submitted.len() || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The figures of a phase whose `admitted` transactions were submitted (`refused` more
/// were not admitted).
fn phase(
    watcher: &Watcher,
    chains: &[SharedChain],
    txs: usize,
    refused: usize,
    admitted: &[Submitted],
) -> Phase {
    let times = watcher.receipt_times(admitted);
    let mut latencies_ms = Vec::with_capacity(admitted.len());
    let mut missing = 0;
    let mut failed = 0;
    let mut heights: Option<(u64, u64)> = None;
    let mut last_receipt = None;
    for (s, t) in admitted.iter().zip(&times) {
        let Some(t) = t else {
            missing += 1;
            continue;
        };
        latencies_ms.push(t.duration_since(s.at).as_secs_f64() * 1e3);
        last_receipt = last_receipt.max(Some(*t));
        let receipt = chains[s.validator]
            .read()
            .ok()
            .and_then(|c| c.receipt(&s.id).map(|r| (r.height.0, r.result.is_ok())));
        match receipt {
            Some((h, ok)) => {
                failed += usize::from(!ok);
                heights = Some(match heights {
                    None => (h, h),
                    Some((a, b)) => (a.min(h), b.max(h)),
                });
            }
            None => missing += 1,
        }
    }
    latencies_ms.sort_by(f64::total_cmp);
    let first_submit = admitted.first().map(|s| s.at);
    let elapsed = match (first_submit, last_receipt) {
        (Some(a), Some(b)) => b.duration_since(a),
        _ => Duration::ZERO,
    };
    let submit_elapsed = match (admitted.first(), admitted.last()) {
        (Some(a), Some(b)) => b.at.duration_since(a.at),
        _ => Duration::ZERO,
    };
    let blocks = heights
        .map(|(a, b)| watcher.blocks(a, b))
        .unwrap_or_default();
    Phase {
        txs,
        refused,
        missing,
        failed,
        latencies_ms,
        elapsed,
        submit_elapsed,
        heights,
        blocks,
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

fn height(chain: &SharedChain) -> u64 {
    chain.read().map(|c| c.height().0).unwrap_or(0)
}

fn report(args: &Args, f: &Figures, ledger_per_s: f64) -> anyhow::Result<()> {
    let tx_per_sec = f.full.succeeded() as f64 / f.full.elapsed.as_secs_f64();
    let ratio = tx_per_sec / ledger_per_s;
    let limits = BlockLimits::default();
    let report = json!({
        "bench": "consensus",
        "ratio": ratio,
        "finality_p50_ms": f.light.percentile(0.50),
        "finality_p99_ms": f.light.percentile(0.99),
        "tx_per_sec": tx_per_sec,
        "ledger_signed_transfers_per_sec": ledger_per_s,
        "baseline": {
            "what": "State::apply_block (batch verify + apply), as `agentic bench ledger` measures its signed rate",
            "txs": BASELINE.txs,
            "accounts": BASELINE.accounts,
            "block_size": BASELINE.block,
            "reps": BASELINE_REPS,
        },
        "validators": args.validators,
        "txs": args.txs,
        "senders": args.senders,
        "runtime_threads": args.threads,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "block_limits": { "max_txs": limits.max_txs, "max_bytes": limits.max_bytes },
        "ready_ms": f.ready.as_secs_f64() * 1e3,
        "light_load": f.light.json(),
        "full_load": f.full.json(),
        "final_height": f.final_height,
        "final_state_root": f.final_root,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let (l, fl) = (&f.light, &f.full);
    println!(
        "consensus bench: {} validators on loopback, {} senders, {} runtime threads",
        args.validators, args.senders, args.threads
    );
    println!(
        "  light load  {:>6} transfers over {:.1} s   finality p50 {:>7.1} ms  p99 {:>7.1} ms",
        l.txs,
        args.seconds,
        l.percentile(0.5),
        l.percentile(0.99)
    );
    println!(
        "  full load   {:>6} transfers in {:.1} s     finality p50 {:>7.1} ms  p99 {:>7.1} ms",
        fl.txs,
        fl.elapsed.as_secs_f64(),
        fl.percentile(0.5),
        fl.percentile(0.99)
    );
    println!(
        "              {} blocks, {:.0} transfers per block, one block every {} ms",
        fl.blocks.len(),
        fl.avg_txs_per_block(),
        fl.block_interval_ms()
            .map(|x| format!("{x:.0}"))
            .unwrap_or_else(|| "-".to_string())
    );
    println!(
        "  committed   {:>12.0} transfers/s   ratio {:.4}",
        tx_per_sec, ratio
    );
    println!(
        "  ledger      {:>12.0} transfers/s   (baseline: signed verify + apply)",
        ledger_per_s
    );
    println!(
        "  failures    {} refused, {} missing, {} failed (light: {} / {} / {})",
        fl.refused, fl.missing, fl.failed, l.refused, l.missing, l.failed
    );
    println!(
        "  every validator at height {} with state root {}",
        f.final_height, f.final_root
    );
    Ok(())
}
