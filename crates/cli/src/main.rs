//! `agentic`: the one binary of the Agentic network.

mod bench;
mod demo;
mod model;

use clap::{Parser, Subcommand};

/// Agentic: a decentralized, verifiable compute market for AI workloads.
#[derive(Parser)]
#[command(name = "agentic", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole story in one process and print a report.
    Demo(demo::Args),
    /// Measure performance against a baseline in the same run (JSON with a top-level `ratio`).
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Run models locally with the deterministic runtime.
    #[command(subcommand)]
    Model(model::Model),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Bench(bench) => bench::run(bench),
        Command::Model(model) => model::run(model),
    }
}
