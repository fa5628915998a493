//! `agentic`: the one binary of the Agentic network.

mod agent_cmd;
mod bench;
mod demo;
mod gateway_cmd;
mod job;
mod llm_run;
mod mcp_cmd;
mod model;
mod network;
mod node_cmds;
mod provider_cmd;

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
    /// Create and inspect key files (ed25519 identities).
    #[command(subcommand)]
    Keys(node_cmds::keys::Keys),
    /// Sign a transaction with a key file, submit it to a node, wait for its receipt.
    Tx(node_cmds::tx::TxArgs),
    /// Read a node's finalized chain, follow its events, move blobs.
    Query(node_cmds::query::QueryArgs),
    /// Buy inference: submit a job (model, input, stages, placement), follow it, fetch its output.
    Job(job::JobArgs),
    /// Procure compute autonomously: quote a goal, buy within budget and mandate, report.
    #[command(subcommand)]
    Agent(agent_cmd::AgentCmd),
    /// Serve the market to LLM agents: a Model Context Protocol server (stdio, or --http ADDR).
    Mcp(mcp_cmd::McpArgs),
    /// Serve an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/embeddings, …) that buys on the market.
    Gateway(gateway_cmd::GatewayArgs),
    /// Sell compute: run the provider daemon (bond, register, execute stages, get paid).
    #[command(subcommand)]
    Provider(provider_cmd::ProviderCmd),
    /// Create a network (genesis + keys) or run one validator of it.
    #[command(subcommand)]
    Node(network::Node),
    /// A whole network of validators in one process on loopback, with funded keys.
    Devnet(network::DevnetArgs),
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
        Command::Keys(keys) => node_cmds::keys::run(keys),
        Command::Tx(args) => node_cmds::tx::run(args),
        Command::Query(args) => node_cmds::query::run(args),
        Command::Job(args) => job::run(args),
        Command::Mcp(args) => mcp_cmd::run(args),
        Command::Gateway(args) => gateway_cmd::run(args),
        Command::Provider(cmd) => provider_cmd::run(cmd),
        Command::Agent(cmd) => agent_cmd::run(cmd),
        Command::Node(network::Node::Init(args)) => network::init(&args),
        Command::Node(network::Node::Run(args)) => network::run(&args),
        Command::Devnet(args) => network::devnet(&args),
    }
}
