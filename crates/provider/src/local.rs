//! A whole market in one process: validators with real consensus, p2p and storage on
//! loopback ([`agentic_node::localnet`]), and provider daemons started on demand —
//! what `agentic demo`, `agentic bench pipeline` and the end-to-end tests run on.
//!
//! ```text
//!   run(dir, spec, f) ─▶ genesis + keys in dir ─▶ commonware tokio runtime
//!        ─▶ validators (finalizing) ─▶ f(LocalMarket) ─▶ .provider(name, …) daemons
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentic_client::keystore::KeyFile;
use agentic_client::Client;
use agentic_node::localnet::{self, LocalnetError, NetworkFiles, NetworkSpec};
use agentic_node::service::Running;
use agentic_protocol::Amount;
use commonware_runtime::Runner as _;

use crate::{Config, Provider, ProviderError};

/// What the market is made of.
#[derive(Clone, Debug)]
pub struct MarketSpec {
    /// Chain id.
    pub chain_id: u64,
    /// Number of validators.
    pub validators: usize,
    /// Funded accounts (key files NAME.json) and their balances (`None`: the default).
    pub users: Vec<(String, Option<u128>)>,
    /// Genesis parameters that differ from the defaults (name → decimal value).
    pub params: BTreeMap<String, String>,
    /// Worker threads of the runtime.
    pub threads: usize,
    /// Least time between blocks.
    pub block_interval: Duration,
}

impl MarketSpec {
    /// `validators` validators and the named accounts, default parameters, 2 threads,
    /// the default block interval.
    pub fn new(validators: usize, users: &[&str]) -> MarketSpec {
        MarketSpec {
            chain_id: 1337,
            validators,
            users: users.iter().map(|u| (u.to_string(), None)).collect(),
            params: BTreeMap::new(),
            threads: 2,
            block_interval: agentic_node::consensus::DEFAULT_BLOCK_INTERVAL,
        }
    }

    /// Sets a genesis parameter.
    pub fn param(mut self, name: &str, value: impl ToString) -> MarketSpec {
        self.params.insert(name.to_string(), value.to_string());
        self
    }
}

/// The running market handed to the closure of [`run`].
pub struct LocalMarket {
    /// Where its files live.
    pub dir: PathBuf,
    /// Genesis and keys.
    pub files: NetworkFiles,
    /// The validators.
    pub validators: Vec<Running>,
    /// Validator 0's API URL.
    pub api: String,
}

impl LocalMarket {
    /// A client of validator 0's API.
    pub fn client(&self) -> Client {
        Client::new(self.api.clone())
    }

    /// The API URL of validator `i`.
    pub fn api(&self, i: usize) -> String {
        format!("http://{}", self.validators[i].api)
    }

    /// The key file of account `name` (panics on a name not in the spec: a
    /// programming error of the caller).
    pub fn key(&self, name: &str) -> KeyFile {
        self.files
            .account(name)
            .unwrap_or_else(|| panic!("no account {name} in the market spec"))
            .clone()
    }

    /// Starts a provider daemon for account `name` at `price` per mega-op, its data
    /// under `dir/name`, with `tweak` applied to its config (a short speed measurement,
    /// two Vivaldi rounds, no periodic offer refresh unless `tweak` sets one).
    pub async fn provider(
        &self,
        name: &str,
        price: u128,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<Provider, ProviderError> {
        let mut cfg = Config::new(self.key(name).key, self.api.clone(), self.dir.join(name));
        cfg.price = Amount(price);
        cfg.speed_budget = Duration::from_millis(100);
        cfg.probe_rounds = 2;
        // No periodic offer updates unless asked for: their fees would blur the exact
        // accounting that demos and tests check.
        cfg.refresh = Duration::ZERO;
        tweak(&mut cfg);
        Provider::start(cfg).await
    }

    /// The finalized height of validator 0.
    pub fn height(&self) -> u64 {
        localnet::height(&self.validators[0])
    }
}

/// Creates a market in `dir` (which must not hold one), runs it on a commonware tokio
/// runtime, and returns what `f` returns once it finishes.
pub fn run<F, Fut, T>(dir: &Path, spec: MarketSpec, f: F) -> Result<T, LocalnetError>
where
    F: FnOnce(LocalMarket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let files = localnet::create(
        dir,
        NetworkSpec {
            chain_id: spec.chain_id,
            addresses: localnet::loopback(spec.validators)?,
            users: spec.users,
            funded: Vec::new(),
            params: spec.params,
        },
    )?;
    let cfg = commonware_runtime::tokio::Config::new()
        .with_storage_directory(dir.join("storage"))
        .with_worker_threads(spec.threads.max(1))
        .with_catch_panics(false);
    let dir = dir.to_path_buf();
    commonware_runtime::tokio::Runner::new(cfg).start(|context| async move {
        let validators = localnet::start(
            context,
            &dir,
            &files.genesis,
            &files.validators,
            spec.block_interval,
            Duration::from_secs(60),
        )
        .await?;
        let api = format!("http://{}", validators[0].api);
        Ok(f(LocalMarket {
            dir,
            files,
            validators,
            api,
        })
        .await)
    })
}
