//! The whole network, simulated: N validators running the node's real consensus and
//! execution ([`agentic_node::Engine`]: simplex with BLS threshold signatures, marshal,
//! storage, the ledger) on commonware's deterministic runtime, over simulated links
//! whose latencies come from the city table ([`crate::geo`]); P providers and R
//! requesters as agents that do metered work (they sleep `ops / speed`, they do not run
//! a model) and talk to their nearest validator; a Poisson job arrival process; churn
//! (late joins, leaves, crashes); and cheaters that do not deliver (no-shows) or
//! withhold their reveals.
//!
//! ```text
//!  World (seeded: cities, cast, arrivals) ─▶ genesis (providers funded and bonded)
//!     ─▶ deterministic runtime: validators (real engines, geo links) + one agent driver
//!     ─▶ after the run: validator 0's chain replayed through State::apply_block
//!        (per-block apply time on this machine; the replay's root must equal the
//!        network's)
//!     ─▶ NetworkReport
//! ```
//!
//! What it does not model: cheaters that compute wrong results (the market simulator in
//! this crate plays them against the dispute game and the referee; here no validator
//! would have the model to referee with), Byzantine validators (the node's consensus
//! tests cover equivocation and partitions), bandwidth (links have latency and jitter,
//! not a rate), and the providers' peer-to-peer data plane.

mod agents;
mod net;
mod world;

use std::time::{Duration, Instant};

use agentic_protocol::test_utils::{address_of, key, TestReferee};
use agentic_protocol::{
    Block, ChainId, Genesis, GenesisAccount, GenesisProvider, Height, Params, State,
};
use commonware_runtime::{deterministic, Clock, Runner as _};
use serde::Serialize;

pub use net::NetError;
pub use world::{Behaviour, World};

/// What to simulate.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkConfig {
    /// The seed of everything (the cast, arrivals, and the runtime's schedule).
    pub seed: u64,
    /// Validators.
    pub validators: usize,
    /// Providers.
    pub providers: usize,
    /// Requesters.
    pub requesters: usize,
    /// Virtual time simulated.
    pub duration: Duration,
    /// Time before the first job (the providers present from the start are registered at
    /// genesis; this lets the network settle).
    pub warmup: Duration,
    /// Mean job arrivals per virtual second.
    pub jobs_per_second: f64,
    /// Jobs arrive in this share of the time after the warm-up (the rest of the run lets
    /// them finish, so the job latency is not cut short by the end of the run).
    pub arrival_share: f64,
    /// Share of providers that join after the warm-up.
    pub join_share: f64,
    /// Share of providers that leave (retire) during the run.
    pub leave_share: f64,
    /// Share of providers that crash during the run.
    pub crash_share: f64,
    /// Share of providers that never deliver.
    pub no_show_share: f64,
    /// Share of providers that commit and never reveal.
    pub withholder_share: f64,
    /// The retention window (blocks) of the run's ledger.
    pub retention: u64,
}

impl NetworkConfig {
    /// 100 validators and 10,000 providers (the scale issue's configuration).
    pub fn large() -> NetworkConfig {
        NetworkConfig {
            seed: 1,
            validators: 100,
            providers: 10_000,
            requesters: 200,
            duration: Duration::from_secs(22),
            warmup: Duration::from_secs(4),
            jobs_per_second: 8.0,
            arrival_share: 0.4,
            join_share: 0.05,
            leave_share: 0.02,
            crash_share: 0.02,
            no_show_share: 0.02,
            withholder_share: 0.01,
            retention: 100,
        }
    }

    /// A small network for tests.
    pub fn small() -> NetworkConfig {
        NetworkConfig {
            validators: 4,
            providers: 60,
            requesters: 6,
            duration: Duration::from_secs(40),
            warmup: Duration::from_secs(3),
            jobs_per_second: 1.0,
            arrival_share: 0.75,
            join_share: 0.1,
            leave_share: 0.05,
            crash_share: 0.05,
            no_show_share: 0.05,
            withholder_share: 0.05,
            retention: 30,
            ..NetworkConfig::large()
        }
    }
}

/// Sorted samples.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Adds one.
    pub fn push(&mut self, x: f64) {
        self.0.push(x);
    }

    /// The summary: count, mean, p50, p90, p99, max.
    pub fn summary(&self) -> Summary {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| -> f64 {
            if v.is_empty() {
                return f64::NAN;
            }
            let i = ((v.len() as f64 - 1.0) * q).round() as usize;
            v[i.min(v.len() - 1)]
        };
        Summary {
            count: v.len(),
            mean: if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            },
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// A distribution's summary.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Counts of what happened in the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    /// Blocks finalized (seen at validator 0).
    pub blocks: u64,
    /// Transactions in them.
    pub txs: u64,
    /// Transactions the agents sent.
    pub sent: u64,
    /// Transactions a mempool refused at admission, by reason.
    pub refused: std::collections::BTreeMap<String, u64>,
    /// Transactions the ledger rejected, by action and reason.
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Providers registered by transaction (late joiners; see
    /// [`NetworkReport::providers_at_genesis`]).
    pub registered: u64,
    /// Providers retired.
    pub retired: u64,
    /// Providers that crashed.
    pub crashed: u64,
    /// Jobs the ledger accepted.
    pub jobs_submitted: u64,
    /// Jobs paid (completed or settled), as their requesters saw it.
    pub jobs_completed: u64,
    /// Jobs failed or cancelled.
    pub jobs_failed: u64,
    /// Stage assignments.
    pub assignments: u64,
    /// Audits drawn.
    pub audits: u64,
    /// Stages paid.
    pub stages_paid: u64,
    /// Deadlines missed.
    pub deadlines_missed: u64,
    /// Audits missed.
    pub audits_missed: u64,
    /// Stake slashed.
    pub slashed: u128,
}

/// What the simulation measured.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkReport {
    /// The configuration.
    pub config: NetworkConfig,
    /// Regions in the measured RTT table.
    pub cities: usize,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Wall seconds the simulation took on this machine (the replay excluded).
    pub wall_s: f64,
    /// Finality: ms from a block's timestamp (its proposer's clock) to its application at
    /// each validator, every (block, validator), at the driver's 10 ms resolution.
    pub finality_ms: Summary,
    /// Mean virtual ms between finalized blocks.
    pub block_interval_ms: f64,
    /// Job latency: ms from the requester's decision to its seeing the job paid (including
    /// the challenge window, `challenge_window` blocks).
    pub job_latency_ms: Summary,
    /// Jobs decided by requesters.
    pub jobs_decided: usize,
    /// Jobs whose first stage was matched at least once / jobs the ledger accepted.
    pub fraction_matched: f64,
    /// Jobs still open at the end.
    pub jobs_open_at_end: usize,
    /// Price paid per assignment / the cheapest offer qualified for that job at that
    /// block (the assigned one included).
    pub price_over_cheapest: Summary,
    /// Per-block apply time (µs, this machine) replaying validator 0's chain.
    pub apply_us: Summary,
    /// Jobs in the state at the end (finished ones leave after the retention window).
    pub jobs_in_state: usize,
    /// Providers registered at genesis (the rest join by transaction during the run).
    pub providers_at_genesis: usize,
    /// Providers in the state at the end.
    pub providers_in_state: usize,
    /// Encoded bytes of the jobs in the state at the end.
    pub job_state_bytes: usize,
    /// Whether every validator reached the same state root at the common height.
    pub validators_agree: bool,
    /// Whether the replay reached validator 0's root.
    pub replay_matches: bool,
    /// Counts.
    pub tally: Tally,
}

/// Why the simulation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The validator network could not start.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A configuration value is out of range.
    #[error("bad configuration: {0}")]
    Config(&'static str),
    /// Replaying the chain failed.
    #[error("replaying validator 0's chain: {0}")]
    Replay(String),
}

/// The chain id of simulated networks.
pub const CHAIN_ID: ChainId = ChainId(77);

/// The genesis of `world`: every provider funded and bonded, those that do not join
/// late registered with their offers, every requester funded.
pub fn genesis(world: &World, config: &NetworkConfig) -> Genesis {
    let params = Params {
        retention: config.retention,
        ..Params::default()
    };
    let mut accounts: Vec<GenesisAccount> = world
        .providers
        .iter()
        .map(|p| GenesisAccount {
            address: p.addr,
            balance: agentic_protocol::Amount(1_000_000_000),
            bonded: agentic_protocol::Amount(p.stake),
        })
        .collect();
    accounts.extend(world.requesters.iter().map(|r| GenesisAccount {
        address: r.addr,
        balance: agentic_protocol::Amount(1_000_000_000_000_000),
        bonded: agentic_protocol::Amount(0),
    }));
    let providers = world
        .providers
        .iter()
        .filter(|p| p.join_at.is_none())
        .map(|p| GenesisProvider {
            address: p.addr,
            offer: p.offer(&world.cities),
        })
        .collect();
    Genesis {
        chain_id: CHAIN_ID,
        params,
        accounts,
        treasury: address_of(&key(0xEE)),
        providers,
    }
}

/// Runs the simulation; `progress` sees (virtual time, height at validator 0).
pub fn run(
    config: &NetworkConfig,
    progress: &mut (dyn FnMut(Duration, u64) + Send),
) -> Result<NetworkReport, NetworkError> {
    if config.validators == 0 || config.requesters == 0 {
        return Err(NetworkError::Config(
            "at least one validator and one requester",
        ));
    }
    if config.duration <= config.warmup {
        return Err(NetworkError::Config(
            "the run must last longer than the warm-up",
        ));
    }
    if config.jobs_per_second.is_nan() || config.jobs_per_second <= 0.0 {
        return Err(NetworkError::Config("jobs_per_second must be positive"));
    }
    let world = World::new(config);
    let genesis = genesis(&world, config);
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(config.seed)
            .with_timeout(None),
    );
    let wall = Instant::now();
    let (world, genesis_ref) = (&world, &genesis);
    let outcome = runner.start(|context| async move {
        let genesis = genesis_ref;
        let keys = net::Validators::new(world.validator_cities.clone(), config.seed)?;
        let validators = keys.start(&context, &world.cities, genesis).await?;
        let start = context
            .current()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let mut driver = agents::Driver::new(world, &validators, genesis.chain_id);
        driver.run(&context, start, config.duration, progress).await;
        let measured = Measured::take(world, &validators, driver);
        Ok::<_, NetworkError>(measured)
    });
    let measured = outcome?;
    let wall_s = wall.elapsed().as_secs_f64();
    let replay = replay(&genesis, &measured)?;
    let mut report = measured.report(config, wall_s, replay);
    report.providers_at_genesis = genesis.providers.len();
    Ok(report)
}

/// What the run left behind for the report.
struct Measured {
    cities: usize,
    finality_ms: Samples,
    job_latency_ms: Samples,
    price_ratio: Samples,
    tally: Tally,
    decided: usize,
    open: usize,
    /// Validator 0's blocks with the state root after each.
    blocks: Vec<(Block, agentic_protocol::Hash)>,
    first_ts: u64,
    last_ts: u64,
    jobs_in_state: usize,
    providers_in_state: usize,
    job_state_bytes: usize,
    matched_jobs: usize,
    agree: bool,
}

impl Measured {
    fn take(world: &World, validators: &[net::Validator], driver: agents::Driver<'_>) -> Measured {
        use commonware_codec::EncodeSize;
        let (decided, open) = (driver.decided(), driver.open_jobs());
        let common = validators
            .iter()
            .map(|v| v.chain.read().map(|c| c.height().0).unwrap_or(0))
            .min()
            .unwrap_or(0);
        let roots: std::collections::BTreeSet<_> = validators
            .iter()
            .filter_map(|v| {
                v.chain
                    .read()
                    .ok()?
                    .block(Height(common))
                    .map(|b| b.state_root)
            })
            .collect();
        let chain = validators[0].chain.read().ok();
        let mut blocks = Vec::new();
        let (mut first_ts, mut last_ts) = (0, 0);
        let (mut jobs_in_state, mut providers_in_state, mut job_state_bytes) = (0, 0, 0);
        let mut matched = std::collections::BTreeSet::new();
        if let Some(chain) = &chain {
            let height = chain.height().0;
            for h in 1..=height {
                let Some(r) = chain.block(Height(h)) else {
                    continue;
                };
                if h == 1 {
                    first_ts = r.timestamp_ms;
                }
                last_ts = r.timestamp_ms;
                let txs = r
                    .tx_ids
                    .iter()
                    .filter_map(|id| driver.sent.get(id).cloned())
                    .collect::<Vec<_>>();
                if txs.len() != r.tx_ids.len() {
                    // A transaction the driver did not send cannot be in a block.
                    blocks.clear();
                    break;
                }
                let block = Block {
                    height: Height(h),
                    beacon: r.beacon,
                    txs,
                };
                blocks.push((block, r.state_root));
                matched.extend(r.events.iter().filter_map(|e| match e.event {
                    agentic_protocol::Event::StageAssigned { job, stage: 0, .. } => Some(job),
                    _ => None,
                }));
            }
            let state = chain.state();
            jobs_in_state = state.jobs().count();
            providers_in_state = state.providers().count();
            job_state_bytes = state.jobs().map(|(_, j)| j.encode_size()).sum();
        }
        drop(chain);
        Measured {
            cities: world.cities.len(),
            finality_ms: driver.finality_ms,
            job_latency_ms: driver.job_latency_ms,
            price_ratio: driver.price_ratio,
            tally: driver.tally,
            decided,
            open,
            blocks,
            first_ts,
            last_ts,
            jobs_in_state,
            providers_in_state,
            job_state_bytes,
            matched_jobs: matched.len(),
            agree: roots.len() <= 1,
        }
    }

    fn report(self, config: &NetworkConfig, wall_s: f64, replay: Replay) -> NetworkReport {
        let blocks = self.blocks.len().max(1) as f64;
        NetworkReport {
            config: config.clone(),
            cities: self.cities,
            virtual_s: config.duration.as_secs_f64(),
            wall_s,
            finality_ms: self.finality_ms.summary(),
            block_interval_ms: (self.last_ts.saturating_sub(self.first_ts)) as f64
                / (blocks - 1.0).max(1.0),
            job_latency_ms: self.job_latency_ms.summary(),
            jobs_decided: self.decided,
            fraction_matched: if self.tally.jobs_submitted == 0 {
                f64::NAN
            } else {
                self.matched_jobs as f64 / self.tally.jobs_submitted as f64
            },
            jobs_open_at_end: self.open,
            price_over_cheapest: self.price_ratio.summary(),
            apply_us: replay.apply_us.summary(),
            jobs_in_state: self.jobs_in_state,
            providers_at_genesis: 0,
            providers_in_state: self.providers_in_state,
            job_state_bytes: self.job_state_bytes,
            validators_agree: self.agree,
            replay_matches: replay.matches,
            tally: self.tally,
        }
    }
}

struct Replay {
    apply_us: Samples,
    matches: bool,
}

/// Replays validator 0's blocks through a fresh [`State`], timing each
/// `apply_block` (signature checks included, as a validator's first application).
fn replay(genesis: &Genesis, m: &Measured) -> Result<Replay, NetworkError> {
    let mut state = State::new(genesis).map_err(|e| NetworkError::Replay(e.to_string()))?;
    let referee = TestReferee::default();
    let mut apply_us = Samples::default();
    let mut matches = !m.blocks.is_empty();
    for (block, root) in &m.blocks {
        let t = Instant::now();
        state
            .apply_block(block, &referee)
            .map_err(|e| NetworkError::Replay(e.to_string()))?;
        apply_us.push(t.elapsed().as_secs_f64() * 1e6);
        matches &= state.root() == *root;
    }
    Ok(Replay { apply_us, matches })
}

#[cfg(test)]
mod tests;
