//! A whole network on one machine: the genesis, the validators' keys (with their
//! shares of the threshold key, dealt here) and funded user keys, written to a
//! directory; then every validator started in one process on loopback with real p2p
//! and storage.
//!
//! `agentic node init` writes the files of a real network with [`create`];
//! `agentic devnet`, `agentic demo`, the benches and the end-to-end tests also run it
//! with [`start`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use commonware_runtime::Supervisor as _;

use crate::consensus;
use crate::genesis::{AccountEntry, GenesisFile, GenesisFileError, ValidatorEntry};
use crate::service::{self, Running, ServiceError, ValidatorSetup};
use agentic_client::keystore::{KeyError, KeyFile};
use agentic_protocol::hex;

/// Balance every generated account starts with (base units).
pub const FUNDING: u128 = 1_000_000_000_000;

/// Why a local network could not be created or started.
#[derive(Debug, thiserror::Error)]
pub enum LocalnetError {
    /// The spec is unusable.
    #[error("{0}")]
    Spec(String),
    /// Writing or reading its files failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key file failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The genesis failed.
    #[error(transparent)]
    Genesis(#[from] GenesisFileError),
    /// A validator did not start.
    #[error("validator {index}: {source}")]
    Validator {
        /// Which.
        index: usize,
        /// Why.
        source: ServiceError,
    },
    /// The network did not finalize its first block in time.
    #[error("the network did not finalize a block within {0:?}")]
    NotReady(Duration),
}

/// What a new network is made of.
#[derive(Clone, Debug)]
pub struct NetworkSpec {
    /// Chain id.
    pub chain_id: u64,
    /// Each validator's p2p and API address; their number is the number of validators.
    pub addresses: Vec<(SocketAddr, SocketAddr)>,
    /// Funded user accounts to create key files for (NAME.json), with their balances
    /// (`None`: [`FUNDING`]).
    pub users: Vec<(String, Option<u128>)>,
    /// Further genesis accounts with no key file (benches that sign with their own keys).
    pub funded: Vec<AccountEntry>,
    /// Parameters that differ from the defaults (name → decimal value).
    pub params: BTreeMap<String, String>,
}

/// The files of a new network.
pub struct NetworkFiles {
    /// The genesis.
    pub genesis: GenesisFile,
    /// Validator key files, in validator order.
    pub validators: Vec<(PathBuf, KeyFile)>,
    /// User key files.
    pub accounts: Vec<(PathBuf, KeyFile)>,
}

impl NetworkFiles {
    /// The user key named `name`.
    pub fn account(&self, name: &str) -> Option<&KeyFile> {
        self.accounts
            .iter()
            .map(|(_, k)| k)
            .find(|k| k.name == name)
    }
}

/// `n` validators on 127.0.0.1, each with a free p2p and API port.
///
/// The ports are bound later, by the node, so they are taken from below the kernel's
/// ephemeral range (`ip_local_port_range`, 32768 and up on Linux): a port the OS hands
/// to `bind(0)` or to any outgoing connection meanwhile (tests open many) could
/// otherwise be gone by the time the node binds it. Each candidate is probed; the
/// start is spread by process id so concurrent local markets rarely probe the same
/// ports.
pub fn loopback(n: usize) -> Result<Vec<(SocketAddr, SocketAddr)>, LocalnetError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let spread = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    let free = || -> Result<SocketAddr, LocalnetError> {
        for _ in 0..SPAN {
            let port = LOW + (spread + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
            let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
            if std::net::TcpListener::bind(addr).is_ok() {
                return Ok(addr);
            }
        }
        Err(LocalnetError::Io {
            path: PathBuf::from("127.0.0.1"),
            source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free loopback port"),
        })
    };
    (0..n).map(|_| Ok((free()?, free()?))).collect()
}

/// Creates and writes genesis.json, validator-i.json and NAME.json in `dir`.
pub fn create(dir: &Path, spec: NetworkSpec) -> Result<NetworkFiles, LocalnetError> {
    let n = u32::try_from(spec.addresses.len())
        .map_err(|_| LocalnetError::Spec("too many validators".into()))?;
    if n == 0 {
        return Err(LocalnetError::Spec(
            "a network needs at least one validator".into(),
        ));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LocalnetError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let genesis_path = dir.join("genesis.json");
    if genesis_path.exists() {
        return Err(LocalnetError::Spec(format!(
            "{} already exists; refusing to overwrite a network",
            genesis_path.display()
        )));
    }
    let dealer_seed = {
        use rand::RngCore;
        rand::rngs::OsRng.next_u64()
    };
    let (polynomial, shares) = consensus::deal(n, dealer_seed)
        .map_err(|e| LocalnetError::Spec(format!("dealing keys: {e}")))?;
    let mut validators = Vec::new();
    let mut entries = Vec::new();
    let mut funded = Vec::new();
    // The dealer's shares are indexed by the sorted participant order.
    let mut keys: Vec<KeyFile> = (0..n)
        .map(|i| KeyFile::generate(format!("validator-{i}")))
        .collect();
    keys.sort_by_key(|k| k.public_key());
    for (i, mut key) in keys.into_iter().enumerate() {
        key.name = format!("validator-{i}");
        let share = shares
            .get(i)
            .ok_or_else(|| LocalnetError::Spec("dealer returned too few shares".into()))?;
        key.bls_share = Some(consensus::share_to_hex(share));
        let (p2p, api) = spec.addresses[i];
        entries.push(ValidatorEntry {
            public_key: hex::encode(key.public_key().as_ref()),
            p2p,
            api,
        });
        funded.push(AccountEntry {
            address: hex::encode(&key.address().0),
            balance: FUNDING.to_string(),
            bonded: "0".to_string(),
        });
        validators.push((dir.join(format!("validator-{i}.json")), key));
    }
    let mut users = Vec::new();
    for (name, balance) in &spec.users {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(LocalnetError::Spec(format!(
                "account name {name:?}: use letters, digits, - and _"
            )));
        }
        let key = KeyFile::generate(name.clone());
        funded.push(AccountEntry {
            address: hex::encode(&key.address().0),
            balance: balance.unwrap_or(FUNDING).to_string(),
            bonded: "0".to_string(),
        });
        users.push((dir.join(format!("{name}.json")), key));
    }
    funded.extend(spec.funded);
    let treasury = hex::encode(&validators[0].1.address().0);
    let genesis = GenesisFile {
        chain_id: spec.chain_id,
        treasury,
        params: spec.params,
        accounts: funded,
        validators: entries,
        threshold_public: consensus::polynomial_to_hex(&polynomial),
    };
    genesis.ledger()?;
    for (path, key) in validators.iter().chain(users.iter()) {
        key.write_new(path)?;
    }
    genesis.write(&genesis_path)?;
    Ok(NetworkFiles {
        genesis,
        validators,
        accounts: users,
    })
}

/// Starts every validator of `files` in this process (storage under the runtime's
/// directory, blobs under `dir/blobs-i`), proposing at most one block per
/// `block_interval`, and waits until each has finalized a block.
///
/// On the tokio runtime, not generic over it, and a boxed future: the validator stack
/// under this call is generic over the runtime context, and both a generic entry point
/// and a plain `async fn` (whose body is compiled in every crate that awaits it) made
/// every test binary that starts a local network compile that whole stack again. This
/// is compiled once, here.
pub fn start<'a>(
    context: commonware_runtime::tokio::Context,
    dir: &'a Path,
    genesis: &'a GenesisFile,
    validators: &'a [(PathBuf, KeyFile)],
    block_interval: Duration,
    ready_within: Duration,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Running>, LocalnetError>> + Send + 'a>,
> {
    Box::pin(start_inner(
        context,
        dir,
        genesis,
        validators,
        block_interval,
        ready_within,
    ))
}

async fn start_inner(
    context: commonware_runtime::tokio::Context,
    dir: &Path,
    genesis: &GenesisFile,
    validators: &[(PathBuf, KeyFile)],
    block_interval: Duration,
    ready_within: Duration,
) -> Result<Vec<Running>, LocalnetError> {
    let mut running: Vec<Running> = Vec::new();
    for (i, (_, key)) in validators.iter().enumerate() {
        let setup = ValidatorSetup {
            genesis: genesis.clone(),
            key: key.clone(),
            blob_dir: dir.join(format!("blobs-{i}")),
            partition_prefix: format!("validator-{i}"),
            p2p_listen: None,
            api_listen: None,
            local: true,
            block_interval,
        };
        running.push(
            // The same metric names for every validator, told apart by a `validator` label
            // (not `index`: commonware uses that one for channels and peers).
            service::start_validator(
                context.child("validator").with_attribute("validator", i),
                setup,
            )
            .await
            .map_err(|source| LocalnetError::Validator { index: i, source })?,
        );
    }
    let deadline = Instant::now() + ready_within;
    while running.iter().any(|r| height(r) == 0) {
        if Instant::now() > deadline {
            return Err(LocalnetError::NotReady(ready_within));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(running)
}

/// A running validator's finalized height.
pub fn height(r: &Running) -> u64 {
    r.chain.read().map(|c| c.height().0).unwrap_or(0)
}
