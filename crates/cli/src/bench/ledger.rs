//! `agentic bench ledger`: how fast the ledger applies signed transfers.
//!
//! Three figures over the same set of signed transfers, measured in one run:
//!
//! - **raw**: ed25519 batch verification alone (commonware's `BatchVerifier`)
//!   over the same blocks, in the faster of two configurations — commonware's
//!   own parallel batch verifier per block, or one batch equation per rayon
//!   thread per block: the ceiling for any ledger that checks signatures;
//! - **signed**: `State::apply_block` — batch-verify every signature in
//!   parallel, then apply (nonce, fee, balance checks, events, incremental
//!   state root at block end);
//! - **apply-only**: `State::apply_block_preverified`, the state machine alone.
//!
//! `ratio` = signed / raw: how much of the signature-checking ceiling the
//! whole ledger keeps. Each figure is the best of `--reps` runs, each run on a
//! fresh copy of the genesis state (copying is not timed).

use std::time::{Duration, Instant};

use agentic_protocol::state::Block;
use agentic_protocol::test_utils::{address_of, key, GenesisBuilder, TestReferee};
use agentic_protocol::tx::{SignedTx, Tx, TxBody, TX_NAMESPACE};
use agentic_protocol::types::{Amount, ChainId, Height};
use agentic_protocol::State;
use anyhow::{ensure, Context};
use commonware_cryptography::{ed25519::PublicKey, BatchEntry, BatchVerifier};
use commonware_parallel::Sequential;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Signed transfers in the workload.
    #[arg(long, default_value_t = 200_000)]
    pub txs: usize,
    /// Distinct sending accounts (each signs txs/accounts transfers, in nonce order).
    #[arg(long, default_value_t = 10_000)]
    pub accounts: usize,
    /// Transfers per block.
    #[arg(long, default_value_t = 10_000)]
    pub block: usize,
    /// Repetitions; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
}

const CHAIN: u64 = 1;

pub fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(
        args.txs > 0 && args.accounts > 0 && args.block > 0 && args.reps > 0,
        "all sizes must be positive"
    );
    let threads = rayon::current_num_threads();
    let progress = ProgressBar::new(4).with_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg}")
            .context("progress template")?,
    );
    progress.set_message(format!(
        "signing {} transfers from {} accounts",
        args.txs, args.accounts
    ));
    let (genesis_state, blocks) = workload(&Workload {
        txs: args.txs,
        accounts: args.accounts,
        block: args.block,
    })?;
    progress.inc(1);

    // The baseline is raw ed25519 batch verification of the same blocks, in the
    // faster of two configurations: commonware's own parallel batch verifier over
    // each whole block, and one batch equation per thread over each block.
    progress.set_message("raw ed25519 batch verification");
    let strategy = commonware_parallel::Rayon::new(
        std::num::NonZeroUsize::new(threads).context("at least one thread")?,
    )
    .map_err(|e| anyhow::anyhow!("rayon strategy: {e:?}"))?;
    let raw_block = best(args.reps, || {
        for block in &blocks {
            let ok = PublicKey::verify_batch(
                &mut commonware_utils::test_rng(),
                &block.txs,
                entry,
                &strategy,
            );
            ensure!(ok, "a workload signature failed to verify");
        }
        Ok(())
    })?;
    let raw_per_thread = best(args.reps, || {
        for block in &blocks {
            let chunk = block.txs.len().div_ceil(threads).max(1);
            let ok = block.txs.par_chunks(chunk).all(|c| {
                PublicKey::verify_batch(&mut commonware_utils::test_rng(), c, entry, &Sequential)
            });
            ensure!(ok, "a workload signature failed to verify");
        }
        Ok(())
    })?;
    let raw = raw_block.min(raw_per_thread);
    progress.inc(1);

    let referee = TestReferee::default();
    progress.set_message("signed path: verify + apply");
    let signed = signed_time(args.reps, &genesis_state, &blocks)?;
    progress.inc(1);

    progress.set_message("apply only");
    let masks: Vec<Vec<bool>> = blocks.iter().map(|b| vec![true; b.txs.len()]).collect();
    let mut final_root = None;
    let apply = best_with_state(args.reps, &genesis_state, |state| {
        for (block, mask) in blocks.iter().zip(&masks) {
            let out = state.apply_block_preverified(block, mask, &referee)?;
            ensure!(
                out.receipts.iter().all(|r| r.is_ok()),
                "a transfer was rejected"
            );
            final_root = Some(out.root);
        }
        ensure!(state.total_supply_check(), "supply not conserved");
        Ok(())
    })?;
    progress.inc(1);
    progress.finish_and_clear();

    let n = args.txs as f64;
    let raw_per_s = n / raw.as_secs_f64();
    let signed_per_s = n / signed.as_secs_f64();
    let apply_per_s = n / apply.as_secs_f64();
    let ratio = signed_per_s / raw_per_s;
    let report = json!({
        "bench": "ledger",
        "ratio": ratio,
        "signed_transfers_per_sec": signed_per_s,
        "apply_only_transfers_per_sec": apply_per_s,
        "raw_ed25519_batch_verify_per_sec": raw_per_s,
        "raw_configurations_per_sec": {
            "commonware_parallel_batch_per_block": n / raw_block.as_secs_f64(),
            "one_batch_per_thread_per_block": n / raw_per_thread.as_secs_f64(),
        },
        "threads": threads,
        "cpu": cpu_id(),
        "avx512": avx512(),
        "txs": args.txs,
        "accounts": args.accounts,
        "block_size": args.block,
        "blocks": blocks.len(),
        "reps": args.reps,
        "final_state_root": final_root.map(|r| agentic_protocol::hex::encode(&r.0)),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "ledger bench: {} transfers, {} accounts, blocks of {}, {} threads",
            args.txs, args.accounts, args.block, threads
        );
        println!("  cpu {}, AVX-512 {}", cpu_id(), avx512());
        println!(
            "  raw ed25519 batch verify   {:>12.0} /s   (baseline)",
            raw_per_s
        );
        println!(
            "  signed (verify + apply)    {:>12.0} /s   ratio {:.3}",
            signed_per_s, ratio
        );
        println!("  apply only                 {:>12.0} /s", apply_per_s);
    }
    Ok(())
}

/// The shape of a signed-transfer workload.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Signed transfers.
    pub txs: usize,
    /// Distinct sending accounts (each signs txs/accounts transfers, in nonce order).
    pub accounts: usize,
    /// Transfers per block.
    pub block: usize,
}

/// The ledger's signed transfer rate (transfers per second, best of `reps`): batch-verify
/// every signature, then apply — the "signed" figure of `agentic bench ledger`, for other
/// benches to compare against.
pub fn signed_transfers_per_sec(shape: &Workload, reps: usize) -> anyhow::Result<f64> {
    ensure!(
        shape.txs > 0 && shape.accounts > 0 && shape.block > 0 && reps > 0,
        "all sizes must be positive"
    );
    let (genesis_state, blocks) = workload(shape)?;
    let signed = signed_time(reps, &genesis_state, &blocks)?;
    Ok(shape.txs as f64 / signed.as_secs_f64())
}

/// Best time of `reps` runs of `State::apply_block` over `blocks` from `genesis`.
fn signed_time(reps: usize, genesis: &State, blocks: &[Block]) -> anyhow::Result<Duration> {
    let referee = TestReferee::default();
    best_with_state(reps, genesis, |state| {
        for block in blocks {
            let out = state.apply_block(block, &referee)?;
            ensure!(
                out.receipts.iter().all(|r| r.is_ok()),
                "a transfer was rejected"
            );
        }
        Ok(())
    })
}

/// The genesis state and the blocks of signed transfers.
fn workload(args: &Workload) -> anyhow::Result<(State, Vec<Block>)> {
    let keys: Vec<_> = (0..args.accounts as u64)
        .into_par_iter()
        .map(|i| key(i + 1))
        .collect();
    let addresses: Vec<_> = keys.iter().map(address_of).collect();
    let mut genesis = GenesisBuilder::new(CHAIN);
    for a in &addresses {
        genesis = genesis.account(*a, 1_000_000_000_000, 0);
    }
    let state = State::new(&genesis.build()).context("genesis")?;
    // Transaction i is sent by account i % accounts with nonce i / accounts, so every
    // block's transactions are in nonce order per sender.
    let txs: Vec<SignedTx> = (0..args.txs)
        .into_par_iter()
        .map(|i| {
            let from = i % keys.len();
            let to = addresses[(i * 7 + 1) % addresses.len()];
            SignedTx::sign(
                &keys[from],
                Tx {
                    chain_id: ChainId(CHAIN),
                    nonce: (i / keys.len()) as u64,
                    fee: Amount(1),
                    body: TxBody::Transfer {
                        to,
                        amount: Amount(3),
                    },
                },
            )
        })
        .collect();
    let blocks = txs
        .chunks(args.block)
        .enumerate()
        .map(|(h, chunk)| Block {
            height: Height(h as u64 + 1),
            beacon: [h as u8; 32],
            txs: chunk.to_vec(),
        })
        .collect();
    Ok((state, blocks))
}

fn best(reps: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

fn best_with_state(
    reps: usize,
    genesis: &State,
    mut f: impl FnMut(&mut State) -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let mut state = genesis.clone();
        let start = Instant::now();
        f(&mut state)?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

/// The CPU, as `/proc/cpuinfo` names it, with its family and model numbers (a
/// virtual machine may show only "AMD EPYC": the numbers tell Zen 3 from Zen 4).
fn cpu_id() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    match (field("model name"), field("cpu family"), field("model")) {
        (Some(m), Some(f), Some(n)) => format!("{m} (family {f}, model {n})"),
        (Some(m), _, _) => m,
        _ => std::env::consts::ARCH.to_string(),
    }
}

/// Whether blake3 can take its AVX-512 path (`avx512f` + `avx512vl`). The state
/// root expands every changed account into 2 KiB of blake3 XOF output; only the
/// AVX-512 path computes those blocks 16 at a time (elsewhere one 64-byte block
/// per compression), so apply-only figures from machines that differ here are
/// not comparable (see the README's bench table: 1.05M/s recorded on 2026-11-25,
/// 259k–312k/s on a Zen 3 without AVX-512 on 2026-12-04, the same code).
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The batch-verification entry of a transaction (its signed payload under the
/// transaction namespace).
fn entry(_: usize, t: &SignedTx) -> BatchEntry<'_, PublicKey> {
    BatchEntry {
        namespace: TX_NAMESPACE,
        message: t.payload(),
        public_key: t.signer(),
        signature: t.signature(),
    }
}
