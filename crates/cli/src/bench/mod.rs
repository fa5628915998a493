//! `agentic bench …`: every bench prints JSON with a top-level `ratio` against a baseline
//! measured in the same run.

pub mod consensus;
pub mod generate;
pub mod ledger;
pub mod llm;
pub mod matmul;
pub mod model;
pub mod pipeline;
pub mod scale;
pub mod verify;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// Finalization latency and committed transfers per second of validators on loopback,
    /// vs the ledger's signed apply rate.
    Consensus(consensus::Args),
    /// Generation as one provider and as a k-stage session ring on a local market: time
    /// to first token, decode tokens/s, latency per hop, the ring over emulated RTT, and
    /// audit and referee cost.
    Generate(generate::Args),
    /// Signed and apply-only transfer throughput vs raw ed25519 batch verification.
    Ledger(ledger::Args),
    /// SmolLM2 prefill and decode tokens per second vs candle's quantized Llama.
    Llm(llm::Args),
    /// Deterministic matmul vs the `matrixmultiply` crate's sgemm.
    Matmul(matmul::Args),
    /// MiniLM embeddings vs candle's BERT, and decoder tokens per second.
    Model(model::Args),
    /// The same batch on one provider and as a k-stage pipeline over loopback: throughput
    /// ratio and the latency each extra stage adds.
    Pipeline(pipeline::Args),
    /// Per-block ledger cost as the market grows to 100,000 providers (offer index,
    /// waiting jobs), against the same blocks at 1,000 providers.
    Scale(scale::Args),
    /// What verification costs (audits, referee, bisection) and what each cheating strategy
    /// earns on the ledger, vs full audits and honest work.
    Verify(verify::Args),
}

pub fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Consensus(args) => consensus::run(&args),
        Bench::Generate(args) => generate::run(&args),
        Bench::Ledger(args) => ledger::run(&args),
        Bench::Llm(args) => llm::run(&args),
        Bench::Matmul(args) => matmul::run(&args),
        Bench::Model(args) => model::run(&args),
        Bench::Pipeline(args) => pipeline::run(&args),
        Bench::Scale(args) => scale::run(&args),
        Bench::Verify(args) => verify::run(&args),
    }
}

/// Fails with how to get the baseline when this build was made without the `baselines`
/// feature (`bench matmul`, `bench model` and `bench llm` measure against outside code).
pub(crate) fn require_baselines(bench: &str, baseline: &str) -> anyhow::Result<()> {
    if cfg!(feature = "baselines") {
        return Ok(());
    }
    anyhow::bail!(
        "`agentic bench {bench}` measures against {baseline}, which this build leaves out; \
         build with the `baselines` feature: \
         cargo run --release -p agentic-cli --features baselines -- bench {bench}"
    )
}

/// Runs `agentic bench <bench> --child <engine> <args…>` with `RAYON_NUM_THREADS=threads`
/// (rayon and candle size their pools once per process) and parses the JSON line it prints.
pub(crate) fn spawn_child(
    bench: &str,
    engine: &str,
    threads: usize,
    args: &[String],
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    eprintln!("bench {bench}: {engine} on {threads} thread(s) …");
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", bench, "--child", engine])
        .args(args)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .context("spawning the bench child")?;
    if !out.status.success() {
        anyhow::bail!(
            "bench child `{engine}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).context("bench child output")
}
