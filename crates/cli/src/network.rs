//! `agentic node init|run` (one validator per process, for real networks) and
//! `agentic devnet` (a whole network of validators in one process on loopback).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentic_client::keystore::KeyFile;
use agentic_node::genesis::{AccountEntry, GenesisFile};
use agentic_node::localnet;
use agentic_node::service::{self, Running, ValidatorSetup};
use agentic_protocol::hex;
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use commonware_runtime::{Runner as _, Supervisor as _};
use serde_json::json;

pub(crate) use agentic_node::localnet::{NetworkFiles, FUNDING};

/// `agentic node …`.
#[derive(Subcommand)]
pub enum Node {
    /// Create a new network: genesis file, validator key files (with their shares of the
    /// threshold key, dealt here), and funded user key files.
    Init(InitArgs),
    /// Run one validator from a genesis file and its key file.
    Run(RunArgs),
}

/// `agentic node init`.
#[derive(Args)]
pub struct InitArgs {
    /// Number of validators (tolerates f = ⌊(n−1)/3⌋ faulty).
    #[arg(long, default_value_t = 4)]
    pub validators: u32,
    /// Directory to write into (must not contain a genesis.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Chain id.
    #[arg(long, default_value_t = 1337)]
    pub chain_id: u64,
    /// Host every validator's p2p and API addresses use.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Validator i listens for p2p on `p2p-base + i`.
    #[arg(long, default_value_t = 7000)]
    pub p2p_base: u16,
    /// Validator i serves the API on `api-base + i`.
    #[arg(long, default_value_t = 8000)]
    pub api_base: u16,
    /// Funded user accounts to create (key files NAME.json).
    #[arg(long = "account", default_values_t = ["alice".to_string(), "bob".to_string()])]
    pub accounts: Vec<String>,
}

/// `agentic node run`.
#[derive(Args)]
pub struct RunArgs {
    /// The network's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// This validator's key file (from `agentic node init`).
    #[arg(long)]
    pub key: PathBuf,
    /// Where this validator keeps its blocks, consensus state and blobs.
    #[arg(long)]
    pub data: PathBuf,
    /// p2p listen address (default: this validator's genesis entry).
    #[arg(long)]
    pub p2p: Option<SocketAddr>,
    /// API listen address (default: this validator's genesis entry).
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// Allow loopback/private peer addresses (networks on one machine or a LAN).
    #[arg(long)]
    pub local: bool,
    /// Worker threads of the async runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// `agentic devnet`.
#[derive(Args)]
pub struct DevnetArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    pub validators: u32,
    /// Directory for the genesis, key files and storage. An existing devnet there is
    /// resumed from its storage.
    #[arg(long, default_value = ".agentic-devnet")]
    pub dir: PathBuf,
    /// Delete an existing devnet in `--dir` first.
    #[arg(long)]
    pub fresh: bool,
    /// Chain id.
    #[arg(long, default_value_t = 1337)]
    pub chain_id: u64,
    /// Validator i listens for p2p on `p2p-base + i` (127.0.0.1).
    #[arg(long, default_value_t = 7000)]
    pub p2p_base: u16,
    /// Validator i serves the API on `api-base + i` (127.0.0.1).
    #[arg(long, default_value_t = 8000)]
    pub api_base: u16,
    /// Exit once every validator has finalized this height (for scripts and tests).
    #[arg(long)]
    pub until_height: Option<u64>,
    /// Print the endpoints as JSON.
    #[arg(long)]
    pub json: bool,
    /// Worker threads of the async runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// What a new network is made of.
pub(crate) struct NetworkSpec<'a> {
    /// Chain id.
    pub chain_id: u64,
    /// Each validator's p2p and API address; their number is the number of validators.
    pub addresses: Vec<(SocketAddr, SocketAddr)>,
    /// Funded user accounts to create key files for (NAME.json).
    pub users: &'a [String],
    /// Further genesis accounts with no key file (benches that sign with their own keys).
    pub funded: Vec<AccountEntry>,
}

/// Addresses `host:p2p_base + i` and `host:api_base + i` for validators `0..n`.
fn consecutive(
    n: u32,
    host: IpAddr,
    p2p_base: u16,
    api_base: u16,
) -> anyhow::Result<Vec<(SocketAddr, SocketAddr)>> {
    (0..n)
        .map(|i| {
            Ok((
                SocketAddr::new(host, port(p2p_base, i)?),
                SocketAddr::new(host, port(api_base, i)?),
            ))
        })
        .collect()
}

fn port(base: u16, i: u32) -> anyhow::Result<u16> {
    u16::try_from(u32::from(base) + i).context("port out of range")
}

/// Creates and writes genesis.json, validator-i.json and NAME.json in `dir`
/// ([`agentic_node::localnet::create`]).
pub(crate) fn create_network(dir: &Path, spec: NetworkSpec<'_>) -> anyhow::Result<NetworkFiles> {
    Ok(localnet::create(
        dir,
        localnet::NetworkSpec {
            chain_id: spec.chain_id,
            addresses: spec.addresses,
            users: spec.users.iter().map(|u| (u.clone(), None)).collect(),
            funded: spec.funded,
            params: Default::default(),
        },
    )?)
}

/// `agentic node init`.
pub fn init(args: &InitArgs) -> anyhow::Result<()> {
    let files = create_network(
        &args.out,
        NetworkSpec {
            chain_id: args.chain_id,
            addresses: consecutive(args.validators, args.host, args.p2p_base, args.api_base)?,
            users: &args.accounts,
            funded: Vec::new(),
        },
    )?;
    println!(
        "network {} with {} validators written to {}",
        files.genesis.chain_id,
        files.validators.len(),
        args.out.display()
    );
    println!("  genesis   {}", args.out.join("genesis.json").display());
    for ((path, _), v) in files.validators.iter().zip(&files.genesis.validators) {
        println!(
            "  validator {}  p2p {}  api http://{}",
            path.display(),
            v.p2p,
            v.api
        );
    }
    for (path, key) in &files.accounts {
        println!(
            "  account   {}  {}",
            path.display(),
            hex::encode(&key.address().0)
        );
    }
    println!("start each validator with:");
    println!(
        "  agentic node run --genesis {} --key {} --data <DIR> [--local]",
        args.out.join("genesis.json").display(),
        files
            .validators
            .first()
            .map(|(p, _)| p.display().to_string())
            .unwrap_or_default()
    );
    Ok(())
}

pub(crate) fn runtime(storage: &Path, threads: usize) -> commonware_runtime::tokio::Runner {
    let cfg = commonware_runtime::tokio::Config::new()
        .with_storage_directory(storage)
        .with_worker_threads(threads.max(1))
        .with_catch_panics(false);
    commonware_runtime::tokio::Runner::new(cfg)
}

/// `agentic node run`.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let genesis = GenesisFile::read(&args.genesis)?;
    let key = KeyFile::read(&args.key)?;
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
    let setup = ValidatorSetup {
        genesis,
        key,
        blob_dir: args.data.join("blobs"),
        partition_prefix: "validator".to_string(),
        p2p_listen: args.p2p,
        api_listen: args.api,
        local: args.local,
        block_interval: agentic_node::consensus::DEFAULT_BLOCK_INTERVAL,
    };
    runtime(&args.data.join("storage"), args.threads).start(|context| async move {
        let running = service::start_validator(context.child("validator"), setup).await?;
        eprintln!(
            "validator running: api http://{}  p2p {}  (height {} after replay)",
            running.api,
            running.p2p,
            running.chain.read().map(|c| c.height().0).unwrap_or(0)
        );
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted; stopping");
                Ok(())
            }
            r = running.engine => {
                bail!("consensus stopped: {r:?}")
            }
        }
    })
}

/// `agentic devnet`.
pub fn devnet(args: &DevnetArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.fresh && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("removing {}", args.dir.display()))?;
    }
    let genesis_path = args.dir.join("genesis.json");
    let (genesis, keys, accounts) = if genesis_path.exists() {
        let genesis = GenesisFile::read(&genesis_path)?;
        let mut keys = Vec::new();
        for i in 0..genesis.validators.len() {
            let p = args.dir.join(format!("validator-{i}.json"));
            keys.push((p.clone(), KeyFile::read(&p)?));
        }
        (genesis, keys, Vec::new())
    } else {
        let files = create_network(
            &args.dir,
            NetworkSpec {
                chain_id: args.chain_id,
                addresses: consecutive(
                    args.validators,
                    IpAddr::from([127, 0, 0, 1]),
                    args.p2p_base,
                    args.api_base,
                )?,
                users: &["alice".to_string(), "bob".to_string()],
                funded: Vec::new(),
            },
        )?;
        (files.genesis, files.validators, files.accounts)
    };
    let dir = args.dir.clone();
    let until = args.until_height;
    let json_out = args.json;
    runtime(&dir.join("storage"), args.threads).start(|context| async move {
        let running: Vec<Running> = localnet::start(
            context,
            &dir,
            &genesis,
            &keys,
            agentic_node::consensus::DEFAULT_BLOCK_INTERVAL,
            Duration::from_secs(60),
        )
        .await?;
        let ready = started.elapsed();
        let alice = accounts
            .iter()
            .find(|(_, k)| k.name == "alice")
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| dir.join("alice.json"));
        let bob = dir.join("bob.json");
        if json_out {
            println!(
                "{}",
                json!({
                    "chain_id": genesis.chain_id,
                    "ready_ms": ready.as_millis() as u64,
                    "genesis": dir.join("genesis.json"),
                    "validators": running.iter().zip(&keys).map(|(r, (p, _))| json!({
                        "api": format!("http://{}", r.api),
                        "p2p": r.p2p.to_string(),
                        "key": p,
                    })).collect::<Vec<_>>(),
                    "accounts": [alice.clone(), bob.clone()],
                })
            );
        } else {
            println!(
                "devnet {} ready in {:.1} s: {} validators (tolerates {} faulty), data in {}",
                genesis.chain_id,
                ready.as_secs_f64(),
                running.len(),
                (running.len().saturating_sub(1)) / 3,
                dir.display()
            );
            for (i, r) in running.iter().enumerate() {
                println!("  validator {i}: api http://{}  p2p {}", r.api, r.p2p);
            }
            println!("  funded keys: {}  {}", alice.display(), bob.display());
            println!("send a first transaction:");
            println!(
                "  agentic tx --node http://{} --key {} transfer --to {} --amount 1000",
                running[0].api,
                alice.display(),
                bob.display()
            );
            println!(
                "  agentic query --node http://{} account {}",
                running[running.len() - 1].api,
                bob.display()
            );
            println!("Ctrl-C stops the devnet; running it again resumes from its storage.");
        }
        let mut last_print = Instant::now();
        loop {
            let heights: Vec<u64> = running.iter().map(height).collect();
            if let Some(h) = until {
                if heights.iter().all(|x| *x >= h) {
                    let roots: Vec<String> = running
                        .iter()
                        .map(|r| {
                            let c = r.chain.read().expect("chain lock");
                            c.block(agentic_protocol::Height(h))
                                .map(|b| hex::encode(&b.state_root.0))
                                .unwrap_or_default()
                        })
                        .collect();
                    if roots.iter().any(|x| *x != roots[0]) {
                        bail!("validators disagree on the state root at height {h}: {roots:?}");
                    }
                    eprintln!(
                        "every validator finalized height {h} with state root {}",
                        roots[0]
                    );
                    return Ok(());
                }
            }
            if !json_out && last_print.elapsed() >= Duration::from_secs(10) {
                last_print = Instant::now();
                let r = &running[0];
                let (txs, root) = {
                    let c = r.chain.read().expect("chain lock");
                    (
                        r.mempool.lock().map(|m| m.len()).unwrap_or(0),
                        hex::encode(&c.root().0),
                    )
                };
                eprintln!("heights {heights:?}  root {}…  mempool {txs}", &root[..12]);
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("interrupted; the devnet's storage stays in {}", dir.display());
                    return Ok(());
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    })
}

fn height(r: &Running) -> u64 {
    r.chain.read().map(|c| c.height().0).unwrap_or(0)
}
