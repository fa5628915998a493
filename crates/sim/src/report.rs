//! The simulation's figures, typed: what [`crate::run`] returns and `agentic bench verify
//! --json` prints (under the same keys, amounts in base units as `f64`).
//!
//! ```text
//!   Report
//!   ├─ headline figures       ratio, audit_overhead, max_cheater_profit, best_cheat,
//!   │                         honest_earnings, honest_unpaid, detection_rate, …
//!   ├─ inequality             AuditInequality: the ledger's p·(1 − c)·S ≥ (1 − p)·V + p·c·(V + F)
//!   │                         at the workload's largest stage, and at its mean stage
//!   ├─ coalitions             per CoalitionKind: CoalitionFigures, one Variant each
//!   ├─ audit                  AuditFigures of the honest run, by stake
//!   ├─ simulation             Simulation: the single cheaters' StrategyFigures, checks
//!   ├─ runs                   one RunSummary per market run
//!   └─ params                 ParamsFigures: the ledger parameters the runs used
//! ```

use std::collections::BTreeMap;

use agentic_protocol::state::JobStatus;
use agentic_protocol::types::{Amount, PPM};
use agentic_protocol::Params;
use serde::Serialize;

use crate::analysis::{coalitions, inequality, mean, singles};
use crate::cast::{CHEATER_PRICE, MAX_PRICE};
use crate::market::Market;
use crate::workload::Workload;
use crate::{Config, Error};

/// Everything a simulation measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Audit overhead of the honest run over that of the `Audited` baseline.
    pub ratio: f64,
    /// Audited stage-ops / stage-ops in the honest run.
    pub audit_overhead: f64,
    /// The best expected profit per job over every cheating strategy, single or coalition.
    pub max_cheater_profit: f64,
    /// Which strategy that is.
    pub best_cheat: BestCheat,
    /// The best single cheater's expected profit per job.
    pub max_single_cheater_profit: f64,
    /// The best coalition variant's expected profit per job.
    pub max_coalition_profit: f64,
    /// What an honest provider earned per stage in the cheater run.
    pub honest_earnings: f64,
    /// Honest delivered work left unpaid, over every run.
    pub honest_unpaid: f64,
    /// Honest delivered work (bills and audit fees), over every run.
    pub honest_delivered: f64,
    /// Whether every run ended with the ledger's supply check passing.
    pub supply_conserved: bool,
    /// Share of single cheaters' jobs on which they were caught.
    pub detection_rate: f64,
    /// The audit inequality at the defaults.
    pub inequality: AuditInequality,
    /// Per coalition strategy (keyed by [`crate::CoalitionKind::name`]).
    pub coalitions: BTreeMap<&'static str, CoalitionFigures>,
    /// What audits cost in the honest run.
    pub audit: AuditFigures,
    /// How the simulation ran, the single cheaters, and its self-checks.
    pub simulation: Simulation,
    /// One summary per market run: honest, audited baseline, with cheaters, coalitions.
    pub runs: Vec<RunSummary>,
    /// The ledger parameters every run used (`Params::default()`).
    pub params: ParamsFigures,
}

/// The most profitable cheat.
#[derive(Clone, Debug, Serialize)]
pub struct BestCheat {
    /// `single` or `coalition`.
    pub kind: &'static str,
    /// The strategy (a coalition's with its variant).
    pub strategy: String,
    /// A single cheater's stake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stake: Option<f64>,
}

/// The best single cheat: strategy and stake.
#[derive(Clone, Debug, Serialize)]
pub struct BestSingle {
    pub strategy: &'static str,
    pub stake: f64,
}

/// Both sides of the ledger's audit inequality `p·(1 − c)·S ≥ (1 − p)·V + p·c·(V + F)`
/// for a stage worth `stage_value` to a provider with the minimum stake and a perfect
/// reputation, and an auditor's fee of at most `audit_fee_bound`.
#[derive(Clone, Debug, Serialize)]
pub struct Inequality {
    pub stage_value: f64,
    pub audit_fee_bound: f64,
    pub stake: f64,
    pub slash: f64,
    pub collusion_share: f64,
    pub reputation: f64,
    pub p_min: f64,
    pub p_reputation_floor: f64,
    pub p: f64,
    pub expected_slash: f64,
    pub expected_gain: f64,
    pub holds: bool,
}

/// The inequality at the workload's largest stage (flattened), and at its mean stage.
#[derive(Clone, Debug, Serialize)]
pub struct AuditInequality {
    #[serde(flatten)]
    pub largest: Inequality,
    pub case: &'static str,
    pub mean_stage: Inequality,
}

/// One single cheating strategy in the cheater run.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyFigures {
    pub what: &'static str,
    pub jobs: usize,
    pub detection_rate: f64,
    pub audited_share: f64,
    pub mean_audit_probability: f64,
    pub compute_share: f64,
    pub expected_profit_per_job: f64,
    pub realized_profit_per_job: f64,
    pub slashed_total: f64,
    pub penalties_total: f64,
    pub by_stake: Vec<StakeProfit>,
}

/// A single cheating strategy at one stake.
#[derive(Clone, Debug, Serialize)]
pub struct StakeProfit {
    pub stake: f64,
    pub jobs: usize,
    pub caught: usize,
    pub audited: usize,
    pub mean_audit_probability: f64,
    pub expected_profit_per_job: f64,
    pub realized_profit_per_job: f64,
}

/// One coalition strategy in the coalition run.
#[derive(Clone, Debug, Serialize)]
pub struct CoalitionFigures {
    pub what: &'static str,
    /// The best of its variants.
    pub expected_profit_per_job: Option<f64>,
    pub variants: Vec<Variant>,
}

/// One variant of a coalition strategy (stakes, prices, identities).
#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    pub variant: String,
    #[serde(flatten)]
    pub figures: VariantFigures,
    pub expected_profit_per_job: f64,
}

/// A variant's figures: the farming requester's, or a coalition of providers'.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum VariantFigures {
    Farming(FarmingFigures),
    Providers(ProviderFigures),
}

/// `penalty_farming`: the requester's jobs.
#[derive(Clone, Debug, Serialize)]
pub struct FarmingFigures {
    pub jobs: usize,
    pub claims: usize,
    pub data_unavailable: usize,
    pub compensation_paid: f64,
    pub miss_penalties_collected: f64,
    pub best_job_profit: f64,
    pub realized_profit_per_job: f64,
}

/// A coalition of providers: its worker's jobs, and what its strategy tried.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderFigures {
    pub identities: usize,
    pub worker_stake: f64,
    pub partner_stake: f64,
    pub worker_price: f64,
    pub jobs: usize,
    pub audited: usize,
    pub caught: usize,
    pub mean_audit_probability: f64,
    pub realized_profit_per_job: f64,
    pub slashed_total: f64,
    /// What its strategy tried (none for a strategy with nothing more to count).
    #[serde(flatten)]
    pub tried: Option<Tried>,
}

/// What a coalition of providers tried, by strategy.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Tried {
    AuditorSybil {
        qualified_stake_share: f64,
        self_audited: usize,
        self_audit_frequency: f64,
        partner_draws_all_audits: PartnerDraws,
        approval_fees: f64,
    },
    UnbondThenLose {
        unbonds_accepted: usize,
        unbonded_total: f64,
        refused: BTreeMap<&'static str, usize>,
        slashed_as_if_never_unbonded: FullSlash,
    },
    EchoReplica {
        withheld_reveals: usize,
        refills_after_reveal: usize,
        partner_refills: usize,
    },
    RetireWhileDisputed {
        disputed: usize,
        withdrawable_stake: f64,
        refused: BTreeMap<&'static str, usize>,
    },
}

/// `auditor_sybil`: auditor draws of the whole run that picked a partner.
#[derive(Clone, Debug, Serialize)]
pub struct PartnerDraws {
    pub what: &'static str,
    pub audits: usize,
    pub observed: usize,
    pub expected: f64,
    pub observed_share: f64,
    pub expected_share: f64,
}

/// `unbond_then_lose`: audited stages slashed as if it had never unbonded.
#[derive(Clone, Debug, Serialize)]
pub struct FullSlash {
    pub audited: usize,
    pub slash_of_full_stake: usize,
}

/// The honest run's audits.
#[derive(Clone, Debug, Serialize)]
pub struct AuditFigures {
    pub what: &'static str,
    pub value: f64,
    pub expected_from_ledger_probabilities: f64,
    pub baseline_audited_overhead: f64,
    pub ratio: f64,
    pub stages: usize,
    pub audited_stages: usize,
    pub reputation: Spread,
    pub by_stake: Vec<StakeAudits>,
}

/// Least, mean and greatest of a figure.
#[derive(Clone, Debug, Serialize)]
pub struct Spread {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

/// The honest run's stages placed on providers of one stake.
#[derive(Clone, Debug, Serialize)]
pub struct StakeAudits {
    pub stake: f64,
    pub stages: usize,
    pub audited: usize,
    pub mean_reputation: f64,
    pub mean_audit_probability: f64,
}

/// How the simulation ran, the single cheaters, and its self-checks.
#[derive(Clone, Debug, Serialize)]
pub struct Simulation {
    pub method: &'static str,
    pub seed: u64,
    pub jobs: usize,
    pub pipelines_share: f64,
    pub cheater_share: f64,
    pub coalition_identities: usize,
    pub cheater_jobs: usize,
    pub detection_rate: f64,
    pub compute_cost_per_mega_op: u64,
    pub max_cheater_profit: f64,
    pub best_cheat: BestSingle,
    pub honest_earnings: f64,
    pub honest_earnings_without_cheaters: f64,
    pub honest_slash_shares_per_stage: f64,
    pub cheat_to_honest_ratio: f64,
    pub honest_providers_slashed: usize,
    /// Cheating stages whose outcome differs from the profit model's branch (0).
    pub outcomes_not_as_modelled: usize,
    /// Audit draws the simulator predicted differently from the ledger (0).
    pub audit_predictions_wrong: usize,
    /// Accounts whose end balance the flows do not explain (0).
    pub unreconciled_accounts: usize,
    pub anomalies: usize,
    /// Per single cheating strategy (keyed by [`crate::Strategy::name`]).
    pub strategies: BTreeMap<&'static str, StrategyFigures>,
}

/// One market run.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub run: &'static str,
    pub verification: String,
    pub cheater_share: f64,
    pub jobs: usize,
    pub stages: usize,
    pub pipelines: usize,
    pub completed: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub blocks: u64,
    pub stage_ops: f64,
    pub audited_stages: usize,
    pub audited_stage_ops: f64,
    pub audit_overhead: f64,
    pub audit_predictions: usize,
    pub audit_predictions_wrong: usize,
    pub disputes: usize,
    pub honest_providers_slashed: usize,
    pub honest_deadline_misses: usize,
    pub honest_delivered: f64,
    pub honest_delivered_roles: usize,
    pub honest_unpaid: f64,
    pub failed_jobs_honest_stages: usize,
    pub failed_jobs_honest_bills: f64,
    pub failed_jobs_honest_paid: f64,
    pub auditor_commitments_unpaid: usize,
    pub auditor_commitments_unpaid_fees: f64,
    pub payer_compensated: f64,
    pub refills_after_reveal: usize,
    /// Refused doomed attempts, by `strategy/refusal`.
    pub refused: BTreeMap<String, usize>,
    pub unreconciled: Vec<String>,
    pub anomalies: Vec<String>,
    pub supply_conserved: bool,
}

/// The ledger parameters the runs used.
#[derive(Clone, Debug, Serialize)]
pub struct ParamsFigures {
    pub audit_ppm: u32,
    pub audit_min_ppm: u32,
    pub slash_ppm: u32,
    pub min_provider_stake: f64,
    pub miss_penalty_ppm: u32,
    pub min_fee: f64,
    pub fee_per_slot: f64,
    pub unbonding_delay: u64,
}

impl Market {
    /// The run's summary.
    pub(crate) fn summary(&self) -> RunSummary {
        let count = |s: JobStatus| self.jobs.iter().filter(|j| j.status == Some(s)).count();
        let (unpaid, delivered, roles) = self.honest_unpaid();
        let (failed_n, failed_bills, failed_paid) = self.failed_jobs_honest_stages();
        RunSummary {
            run: self.label,
            verification: format!("{:?}", self.level),
            cheater_share: self.cheater_share,
            jobs: self.jobs.len(),
            stages: self.units.len(),
            pipelines: self.jobs.iter().filter(|j| j.units.len() > 1).count(),
            completed: count(JobStatus::Completed),
            failed: count(JobStatus::Failed),
            cancelled: count(JobStatus::Cancelled),
            blocks: self.blocks,
            stage_ops: self.stage_ops as f64,
            audited_stages: self.audited_stages,
            audited_stage_ops: self.audited_ops as f64,
            audit_overhead: self.overhead(),
            audit_predictions: self.predictions,
            audit_predictions_wrong: self.predictions_wrong,
            disputes: self.disputes,
            honest_providers_slashed: self.honest_slashed,
            honest_deadline_misses: self.honest_missed,
            honest_delivered: delivered as f64,
            honest_delivered_roles: roles,
            honest_unpaid: unpaid as f64,
            failed_jobs_honest_stages: failed_n,
            failed_jobs_honest_bills: failed_bills as f64,
            failed_jobs_honest_paid: failed_paid as f64,
            auditor_commitments_unpaid: self.auditor_commitments_unpaid.0,
            auditor_commitments_unpaid_fees: self.auditor_commitments_unpaid.1 as f64,
            payer_compensated: self.payer_compensated as f64,
            refills_after_reveal: self.refills_after_reveal,
            refused: self.rejections.clone(),
            unreconciled: self.unreconciled.clone(),
            anomalies: self.anomalies.clone(),
            supply_conserved: self.supply_ok,
        }
    }
}

/// The report of the four runs of `w`: honest, audited baseline, with cheaters,
/// coalitions.
pub(crate) fn report(config: &Config, w: &Workload, runs: &[&Market; 4]) -> Result<Report, Error> {
    let params = Params::default();
    let [honest, audited, cheat, coalition] = *runs;

    let audit_overhead = honest.overhead();
    let baseline = audited.overhead();
    let mut by_stake: BTreeMap<u128, Vec<usize>> = BTreeMap::new();
    for u in honest.honest_units() {
        by_stake
            .entry(honest.actors[honest.units[u].provider].stake)
            .or_default()
            .push(u);
    }
    let by_stake: Vec<StakeAudits> = by_stake
        .iter()
        .map(|(stake, us)| StakeAudits {
            stake: *stake as f64,
            stages: us.len(),
            audited: us
                .iter()
                .filter(|&&u| honest.units[u].audited == Some(true))
                .count(),
            mean_reputation: mean(
                us.iter()
                    .filter_map(|&u| honest.units[u].draw)
                    .map(|d| d.score_ppm as f64 / PPM as f64),
            ),
            mean_audit_probability: mean(
                us.iter()
                    .filter_map(|&u| honest.units[u].draw)
                    .map(|d| d.p_ppm as f64 / PPM as f64),
            ),
        })
        .collect();
    let scores: Vec<f64> = honest
        .units
        .iter()
        .filter_map(|u| u.draw)
        .map(|d| d.score_ppm as f64 / PPM as f64)
        .collect();

    let singles = singles(cheat);
    let Some((single_profit, best_strategy, best_stake)) = singles.best else {
        return Err(Error::NoCheatingJobs("single cheater"));
    };
    let coalitions = coalitions(coalition);
    let Some((coalition_profit, best_coalition_name)) = coalitions.best else {
        return Err(Error::NoCheatingJobs("coalition"));
    };
    let (max_cheater_profit, best_cheat) = if coalition_profit > single_profit {
        (
            coalition_profit,
            BestCheat {
                kind: "coalition",
                strategy: best_coalition_name,
                stake: None,
            },
        )
    } else {
        (
            single_profit,
            BestCheat {
                kind: "single",
                strategy: best_strategy.name().to_string(),
                stake: Some(best_stake as f64),
            },
        )
    };
    let honest_earnings = mean(cheat.honest_units().map(|u| cheat.work_profit(u)));
    let honest_earnings_alone = mean(honest.honest_units().map(|u| honest.work_profit(u)));
    let honest_windfall = mean(
        cheat
            .honest_units()
            .map(|u| cheat.flow_of(u, cheat.units[u].provider).share as f64),
    );
    let detection_rate = singles.caught as f64 / singles.jobs.max(1) as f64;
    let honest_unpaid: u128 = runs.iter().map(|m| m.honest_unpaid().0).sum();
    let honest_delivered: u128 = runs.iter().map(|m| m.honest_unpaid().1).sum();
    let supply_conserved = runs.iter().all(|m| m.supply_ok);
    let unreconciled: usize = runs.iter().map(|m| m.unreconciled.len()).sum();
    let predictions_wrong: usize = runs.iter().map(|m| m.predictions_wrong).sum();
    let anomalies: usize = runs.iter().map(|m| m.anomalies.len()).sum();

    let values: Vec<u128> = w
        .jobs
        .iter()
        .map(|j| Amount::cost(j.ops, Amount(MAX_PRICE)).unwrap_or_default().0)
        .collect();
    let max_value = values.iter().copied().max().unwrap_or(0);
    let mean_ops =
        (w.jobs.iter().map(|j| j.ops as u128).sum::<u128>() / w.jobs.len().max(1) as u128) as u64;
    let mean_value = Amount::cost(mean_ops, Amount(CHEATER_PRICE))
        .unwrap_or_default()
        .0;
    let mean_fee = Amount::cost(mean_ops, Amount(MAX_PRICE))
        .unwrap_or_default()
        .0;
    let ineq = AuditInequality {
        largest: inequality(&params, max_value, max_value),
        case:
            "the workload's largest stage at the highest price, minimum stake, perfect reputation",
        mean_stage: inequality(&params, mean_value, mean_fee),
    };

    Ok(Report {
        ratio: audit_overhead / baseline.max(f64::MIN_POSITIVE),
        audit_overhead,
        max_cheater_profit,
        best_cheat,
        max_single_cheater_profit: single_profit,
        max_coalition_profit: coalition_profit,
        honest_earnings,
        honest_unpaid: honest_unpaid as f64,
        honest_delivered: honest_delivered as f64,
        supply_conserved,
        detection_rate,
        inequality: ineq,
        coalitions: coalitions.figures,
        audit: AuditFigures {
            what: "audited stage-ops / stage-ops over the honest run's stages (Sampled, Params::default(), providers of varied stake, price and reputation; auditors drawn by stake)",
            value: audit_overhead,
            expected_from_ledger_probabilities: honest.expected_overhead(),
            baseline_audited_overhead: baseline,
            ratio: audit_overhead / baseline.max(f64::MIN_POSITIVE),
            stages: honest.units.len(),
            audited_stages: honest.audited_stages,
            reputation: Spread {
                min: scores.iter().copied().fold(f64::INFINITY, f64::min),
                mean: mean(scores.iter().copied()),
                max: scores.iter().copied().fold(0.0, f64::max),
            },
            by_stake,
        },
        simulation: Simulation {
            method: "the ledger's own State (Params::default()) applying every block: jobs, audit draws (beacon per block from a seeded stream; auditors and second replicas drawn by stake), audit commit-reveal, disputes, slashes, availability claims and payments are the ledger's; traces are the protocol test model's over tiny-gpt's layer count with each job's real metered ops; no outside challengers (audits only)",
            seed: w.seed,
            jobs: cheat.jobs.len(),
            pipelines_share: config.pipelines,
            cheater_share: config.cheaters,
            coalition_identities: config.coalition,
            cheater_jobs: singles.jobs,
            detection_rate,
            compute_cost_per_mega_op: w.compute_cost,
            max_cheater_profit,
            best_cheat: BestSingle {
                strategy: best_strategy.name(),
                stake: best_stake as f64,
            },
            honest_earnings,
            honest_earnings_without_cheaters: honest_earnings_alone,
            honest_slash_shares_per_stage: honest_windfall,
            cheat_to_honest_ratio: max_cheater_profit / honest_earnings,
            honest_providers_slashed: runs.iter().map(|m| m.honest_slashed).sum::<usize>(),
            outcomes_not_as_modelled: singles.mismatches + coalitions.mismatches,
            audit_predictions_wrong: predictions_wrong,
            unreconciled_accounts: unreconciled,
            anomalies,
            strategies: singles.figures,
        },
        runs: runs.iter().map(|m| m.summary()).collect(),
        params: ParamsFigures {
            audit_ppm: params.audit_ppm,
            audit_min_ppm: params.audit_min_ppm,
            slash_ppm: params.slash_ppm,
            min_provider_stake: params.min_provider_stake.0 as f64,
            miss_penalty_ppm: params.miss_penalty_ppm,
            min_fee: params.min_fee.0 as f64,
            fee_per_slot: params.fee_per_slot.0 as f64,
            unbonding_delay: params.unbonding_delay,
        },
    })
}
