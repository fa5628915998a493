//! Agentic's deterministic simulator: a market of honest providers, cheaters and
//! coalitions run on the ledger's own [`State`](agentic_protocol::State), and what
//! cheating earns there.
//!
//! ```text
//!  Config + Meter (the model: name, layers, metered ops per input shape)
//!     │
//!     ▼
//!  Workload ── seeded PRNG ─▶ N jobs (input shapes, metered ops; a share are two-stage
//!     │                       pipelines; a share f placed on cheating targets)
//!     ▼
//!  four market runs on the same jobs, each a Cast on a fresh ledger (Params::default()):
//!     honest      Sampled, f = 0   → audit_overhead = audited stage-ops / stage-ops
//!     baseline    Audited, f = 0   → every stage re-executed (the same jobs)
//!     cheaters    Sampled, f       → six single cheaters × stakes 10k / 100k / 1M
//!     coalitions  Sampled, f       → five coalition strategies
//!     │      each block: registrations and top-ups ─▶ new jobs ─▶ every party's next
//!     │      move ─▶ Ledger::produce (State::apply_block) ─▶ receipts and events
//!     │      absorbed into per-stage, per-party flows
//!     ▼
//!  analysis: expected profit of every cheating strategy over the ledger's audit draw,
//!     honest pay, reconciliation of every account, the audit inequality at the defaults
//!     p·(1 − c)·S ≥ (1 − p)·V + p·c·(V + F)       (State::audit_probability_for)
//!     ▼
//!  Report (typed, Serialize): the figures `agentic bench verify --json` prints
//! ```
//!
//! Modules: [`ledger`] drives the ledger block by block (also used by the bench's real
//! disputes); [`strategy`] names what each party does; [`workload`] draws the jobs;
//! `cast` builds each run's providers and coalitions; `market` runs a market block by
//! block; `analysis` turns its flows into profits; [`report`] holds the typed figures.
//!
//! Runs are deterministic: the same [`Config`] and [`Meter`] give the same [`Report`]
//! (every draw comes from seeded ChaCha streams; the ledger is deterministic).
//!
//! # The market
//!
//! Every job, audit draw, dispute, slash, claim and payment is the ledger's: the
//! simulator only signs the transactions each actor would send (each with the fee its
//! work requires, `Params::required_fee`) and applies blocks (`State::apply_block`; each
//! block's beacon comes from a seeded stream, so the draws vary per block). Traces are the
//! protocol test model's (`test_utils::Trace`: layer `l` maps `x` to `blake3(model, l,
//! x)`, refereed by `TestReferee`) over the [`Meter`]'s layer count (tiny-gpt's, in `bench
//! verify`), with the metered ops of each job's input shape; `bench verify`'s real
//! disputes are the ones that run the real compute runtime.
//! Nobody challenges from outside, so detection comes from audits alone (a lower bound).
//! Jobs start after one unbonding delay, so stake unbonded at the start is withdrawable.
//!
//! Every provider audits honestly when drawn (a wrong audit is refuted and slashed), except
//! a coalition partner drawn to audit its own coalition's worker. Single cheaters (each a
//! provider that behaves so in every replica slot it takes):
//!
//! | strategy | computes | what it reveals, and in a dispute |
//! |---|---|---|
//! | `wrong_output` | nothing | a made-up output with a consistent made-up trace; plays the game with it |
//! | `perturbed_layer` (`PerturbUlp`) | every layer | one layer's output corrupted, the rest computed from it |
//! | `smaller_model` | embeddings and head | the decoder blocks skipped (identity) |
//! | `random_output` (`Random`) | nothing | random output and root; its moves carry no valid proof |
//! | `copy_replica` | nothing | (2-replica jobs) commits blindly, then tries to reveal the other replica's result |
//! | `silent_in_dispute` (`Silent`) | nothing | like `wrong_output`, but stops answering once disputed |
//!
//! Coalitions ([`Config::coalition`] `= k` identities where a strategy has partners):
//!
//! | strategy | who | what it tries, and what the ledger does |
//! |---|---|---|
//! | `auditor_sybil` | 1 worker + k−1 partners, cheapest offers | the worker reveals a made-up result; a partner drawn as its auditor commits to that result and approves it. Its odds are the partners' share of the qualified stake (the draw is by stake, not price) |
//! | `unbond_then_lose` | 1 provider | reveals a made-up result; once an audit is drawn on it, unbonds all it may (the ledger keeps `min_provider_stake` bonded; the rest is still slashable while it unbonds) |
//! | `echo_replica` | 1 withholder + k−1 partners | (2-replica jobs) the withholder commits blindly and keeps its reveal back after the other replica revealed, so a partner drawn for the freed slot could echo the public result: the slot is never refilled |
//! | `penalty_farming` | a requester | posts jobs whose input nobody can fetch, hoping to collect miss penalties; the assigned provider claims the data unavailable (`ClaimUnavailable`), and the requester pays it the penalty instead |
//! | `retire_while_disputed` | 1 provider | reveals a made-up result with withdrawable stake waiting; once disputed, tries to retire, withdraw and unbond (all refused while the dispute is open) |
//!
//! # Profit
//!
//! A party's realized profit on a stage = payments (replica bill, audit fee, its share of a
//! loser's slash, availability compensation) − slash − miss penalty − its transaction fees
//! − compute cost ([`Config::compute_cost`] per mega-op it actually computed); a coalition's is the
//! sum over its identities. Each identity's balance plus slashable stake at the end must
//! equal its genesis amount plus these flows (`unreconciled` counts those that do not).
//!
//! The *expected* profit of a cheating stage weighs the outcomes the ledger produced over
//! its audit draw. At the block where the stage's last commitment lands, the simulator computes
//! the ledger's audit probability `p` (`State::audit_probability_for`, the maximum over the
//! stage's replicas of reputation, value and slashable stake, as the ledger does) and
//! predicts the draw from the block's beacon (`agentic_protocol::state::audit_draw`, the
//! ledger's own function); a prediction that disagrees with the ledger's
//! `AuditAssigned` is counted (`audit_predictions_wrong`, 0 when `p` is the ledger's). The
//! branch that happened is the measured profit; the other is the same stage's counterpart
//! (paid `V` when not audited; slashed `S = slash_ppm × slashable stake`, unpaid, when
//! audited), with the fees the strategy paid on its stages of that branch. For
//! `auditor_sybil` the audited branch splits again on `q`, the partners' share of the
//! stake qualified for the draw at that block: approved (worker paid `V`, partner its fee)
//! with probability `q`, slashed otherwise. `max_cheater_profit` is the best expected profit
//! per job over every single (strategy, stake) and every coalition variant.
//!
//! `honest_unpaid` sums, over every honest replica that revealed the stage's true output
//! and every honest auditor whose report was agreed or upheld, its bill less what it was
//! paid. `auditor_commitments_unpaid` counts honest audits committed for a stage that went
//! back to matching before any replica revealed (the audit slot is released unpaid).

use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{BlockError, GenesisError, TxError};

mod analysis;
mod cast;
pub mod geo;
pub mod ledger;
mod market;
pub mod network;
pub mod report;
pub mod strategy;
pub mod workload;

pub use ledger::{Ledger, Tag};
pub use report::Report;
pub use strategy::{CoalitionKind, Strategy};
pub use workload::Meter;

use market::Market;
use workload::Workload;

/// What a simulation runs: the market's size and mix. The defaults are
/// `agentic bench verify`'s.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Jobs in each market run (honest, audited baseline, with cheaters, coalitions).
    pub jobs: usize,
    /// Share of jobs placed on cheating targets in the cheater and coalition runs.
    pub cheaters: f64,
    /// Jobs submitted per block.
    pub jobs_per_block: usize,
    /// Honest providers (stakes 10k–1M, prices 8–12, joining over the first half).
    pub providers: usize,
    /// A provider's compute cost, base units per mega-op it computes (prices are 8–12).
    pub compute_cost: u64,
    /// Identities in the `auditor_sybil` and `echo_replica` coalitions (one works, the
    /// others hope to be drawn as its auditor or as its replacement).
    pub coalition: usize,
    /// Share of jobs that are two-stage pipelines (a cheating target takes the last
    /// stage, an honest provider the first).
    pub pipelines: f64,
    /// Seed of the PRNGs (input shapes, placements, beacons).
    pub seed: u64,
}

impl Config {
    /// `agentic bench verify`'s defaults.
    pub const DEFAULT: Config = Config {
        jobs: 10_000,
        cheaters: 0.1,
        jobs_per_block: 50,
        providers: 30,
        compute_cost: 6,
        coalition: 4,
        pipelines: 0.2,
        seed: 6,
    };

    /// Checks that the config describes a market that can run.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |what| Err(Error::Config(what));
        if self.jobs == 0 {
            return invalid("jobs must be positive");
        }
        if self.jobs_per_block == 0 {
            return invalid("jobs per block must be positive");
        }
        if self.providers == 0 {
            return invalid("providers must be positive");
        }
        if self.coalition < 2 {
            return invalid("a coalition needs at least 2 identities");
        }
        if !(0.0..=1.0).contains(&self.cheaters) {
            return invalid("the cheater share is a share in 0..=1");
        }
        if !(0.0..=1.0).contains(&self.pipelines) {
            return invalid("the pipeline share is a share in 0..=1");
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

/// Told how a simulation advances (a progress bar, a log); `()` ignores it all.
pub trait Observer {
    /// A market run starts: its label and its jobs.
    fn market_started(&mut self, label: &str, jobs: usize);
    /// `n` more jobs of the current run finished.
    fn jobs_finished(&mut self, n: usize);
}

impl Observer for () {
    fn market_started(&mut self, _: &str, _: usize) {}
    fn jobs_finished(&mut self, _: usize) {}
}

/// What went wrong in a simulation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config describes no market that can run.
    #[error("invalid simulation config: {0}")]
    Config(&'static str),
    /// The model could not be metered for a job's input shape.
    #[error("metering a job's input: {0}")]
    Meter(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The genesis was refused.
    #[error("genesis: {0}")]
    Genesis(#[source] GenesisError),
    /// The ledger refused a block.
    #[error("apply block {height}: {error:?}")]
    Block { height: u64, error: BlockError },
    /// A transaction that should have been accepted was refused.
    #[error("a transaction was rejected at block {height}: {error:?}")]
    Rejected { height: u64, error: TxError },
    /// The ledger refused transactions with errors other than the ones expected.
    #[error("{run}: unexpected rejections at block {height}: {rejections:?}")]
    UnexpectedRejections {
        run: &'static str,
        height: u64,
        rejections: Vec<String>,
    },
    /// Jobs were still open when the run's last block came.
    #[error("{run}: {open} jobs still open after {blocks} blocks")]
    Stalled {
        run: &'static str,
        open: usize,
        blocks: u64,
    },
    /// No honest provider had registered when jobs were to be placed.
    #[error("{run}: no honest provider registered")]
    NoHonestProvider { run: &'static str },
    /// An event or receipt names a job, stage, dispute or party the market did not track.
    #[error("{0}")]
    Untracked(&'static str),
    /// No job went to a single cheater, or none to a coalition: there is nothing to
    /// measure.
    #[error("no job went to a {0}: raise the job count or the cheater share")]
    NoCheatingJobs(&'static str),
}

/// Runs the four market runs of `config` on jobs metered by `model` and returns their
/// figures.
pub fn run(
    config: &Config,
    model: &dyn Meter,
    observer: &mut dyn Observer,
) -> Result<Report, Error> {
    config.validate()?;
    let workload = Workload::generate(config, model)?;
    let mut market =
        |cast, level, share, label| Market::run(&workload, cast, level, share, label, observer);
    let honest = market(
        cast::Cast::new(&workload, false, None),
        VerificationLevel::Sampled,
        0.0,
        "honest",
    )?;
    let audited = market(
        cast::Cast::new(&workload, false, None),
        VerificationLevel::Audited,
        0.0,
        "audited baseline",
    )?;
    let cheat = market(
        cast::Cast::new(&workload, true, None),
        VerificationLevel::Sampled,
        config.cheaters,
        "with cheaters",
    )?;
    let coalitions = market(
        cast::Cast::new(&workload, false, Some(config.coalition)),
        VerificationLevel::Sampled,
        config.cheaters,
        "coalitions",
    )?;
    report::report(config, &workload, &[&honest, &audited, &cheat, &coalitions])
}

#[cfg(test)]
pub(crate) mod test_utils;
#[cfg(test)]
mod tests;
