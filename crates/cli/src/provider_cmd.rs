//! `agentic provider run`: sell this machine's compute.
//!
//! Starts the provider daemon (`agentic_provider`): measures the runtime's speed and
//! the network coordinate, bonds up to `--stake`, registers (or updates) the offer,
//! serves the data plane, and works the stages the ledger assigns until Ctrl-C. State
//! that must survive a restart lives in `--data` (journal, blobs, partial downloads):
//! run it again with the same `--data` and `--key` to resume.
//!
//! `--misbehave MODE` makes the daemon cheat on the stages it holds, in one of the
//! named ways of `agentic_provider::misbehave` (for demos and tests of the
//! verification layer: audits, the bisection game, the referee, commit-then-reveal,
//! the pipeline chaining check). Each mode's documentation says how it is caught.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agentic_client::keystore::KeyFile;
use agentic_protocol::types::{Capabilities, Region};
use agentic_protocol::Amount;
use agentic_provider::{Config, Misbehaviour, Provider};
use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::node_cmds::{self, NodeArgs};

/// `agentic provider …`.
#[derive(Subcommand)]
pub enum ProviderCmd {
    /// Run the provider daemon until Ctrl-C.
    Run(RunArgs),
}

/// `agentic provider run`.
#[derive(Args)]
pub struct RunArgs {
    /// The provider's key file (its identity and ledger account).
    #[arg(long)]
    pub key: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Directory for the journal, the blob store and partial downloads.
    #[arg(long)]
    pub data: PathBuf,
    /// Data-plane listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Endpoint to publish in the offer [default: the bound listen address].
    #[arg(long)]
    pub advertise: Option<String>,
    /// Price per mega-op (10^6 metered operations), base units.
    #[arg(long, default_value = "1000", value_parser = node_cmds::amount)]
    pub price: Amount,
    /// Stage assignments taken at once.
    #[arg(long, default_value_t = 4)]
    pub capacity: u32,
    /// Region code published in the offer.
    #[arg(long, default_value_t = 0)]
    pub region: u16,
    /// Bonded stake to hold (the difference is bonded at start).
    #[arg(long, default_value = "10000", value_parser = node_cmds::amount)]
    pub stake: Amount,
    /// Emulate slower hardware: execution takes N× its real time (demos, benches).
    #[arg(long, default_value_t = 1)]
    pub slowdown: u32,
    /// Emulate a far-away machine: milliseconds added to each round trip (demos, benches).
    #[arg(long, default_value_t = 0)]
    pub extra_rtt_ms: u64,
    /// Cheat on the stages this provider holds, in the named way (it is slashed or
    /// penalized for it): wrong-output, perturb-ulp, smaller-model, random,
    /// copy-replica, silent, collude, wrong-step (training). Audits and others' disputes
    /// stay honest.
    #[arg(long, value_enum, value_name = "MODE")]
    pub misbehave: Option<Misbehaviour>,
    /// Print the status as JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `agentic provider …`.
pub fn run(cmd: ProviderCmd) -> anyhow::Result<()> {
    let ProviderCmd::Run(args) = cmd;
    let key = KeyFile::read(&args.key)
        .with_context(|| format!("reading key file {}", args.key.display()))?;
    let mut cfg = Config::new(key.key, args.node.url(), &args.data);
    cfg.listen = args.listen;
    cfg.advertise = args.advertise;
    cfg.price = args.price;
    cfg.capacity = args.capacity;
    cfg.region = Region(args.region);
    cfg.capabilities = Capabilities::CPU;
    cfg.stake = args.stake;
    cfg.slowdown = args.slowdown.max(1);
    cfg.extra_rtt = Duration::from_millis(args.extra_rtt_ms);
    cfg.misbehave = args.misbehave;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let provider = Provider::start(cfg)
            .await
            .context("starting the provider")?;
        let st = provider.status();
        if args.json {
            println!("{}", serde_json::to_string(&st)?);
        } else {
            println!(
                "provider {} registered: endpoint {}, speed {} Mops/s, coordinate ({}, {}, h {}) µs",
                st.address,
                st.endpoint,
                st.speed / 1_000_000,
                st.coord.x,
                st.coord.y,
                st.coord.height
            );
            if let Some(m) = st.misbehaviour {
                println!("misbehaving on purpose: {m} (the ledger is expected to catch it)");
            }
            println!("working; Ctrl-C stops (run again with the same --data to resume)");
        }
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("interrupted; the journal in {} keeps open work", args.data.display());
                    return Ok(());
                }
                _ = tick.tick() => {
                    let st = provider.status();
                    if args.json {
                        println!("{}", serde_json::to_string(&st)?);
                    } else {
                        println!(
                            "height {}  computed {}  committed {}  audits {}  moves {}  paid {}  earned {}{}",
                            st.height,
                            st.stages_computed,
                            st.stages_committed,
                            st.audits_reported,
                            st.bisect_moves,
                            st.stages_paid,
                            st.earned,
                            st.last_error.map(|e| format!("  last error: {e}")).unwrap_or_default()
                        );
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ProviderCmd,
    }

    fn parse(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let args = ["agentic", "run", "--key", "p.json", "--data", "p"];
        Cli::try_parse_from(args.iter().chain(extra)).map(|c| match c.cmd {
            ProviderCmd::Run(a) => a,
        })
    }

    #[test]
    fn misbehave_takes_the_named_modes_only() {
        assert_eq!(parse(&[]).unwrap().misbehave, None);
        for &m in Misbehaviour::ALL {
            let a = parse(&["--misbehave", m.name()]).unwrap();
            assert_eq!(a.misbehave, Some(m));
        }
        let Err(err) = parse(&["--misbehave", "lazy"]) else {
            panic!("an unknown mode is refused");
        };
        let err = err.to_string();
        assert!(
            err.contains("lazy") && err.contains("wrong-output") && err.contains("collude"),
            "{err}"
        );
    }
}
