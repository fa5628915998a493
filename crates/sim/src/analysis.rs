//! From flows to profits: what each party realized on each stage, what a cheating stage
//! earns in expectation over the ledger's audit draw, what honest work was paid, and the
//! single cheaters' and coalitions' figures.
//!
//! ```text
//!   realized(stage, party) = payments (bill, audit fee, share of a loser's slash,
//!                            availability compensation) − slash − miss penalty
//!                            − transaction fees − compute cost (ops × cost per mega-op)
//!   side(stage)            = the placed provider and its coalition partners
//!
//!   expected(stage) =  (1 − p)     · outcome(Unaudited)
//!                    +  p · (1 − q) · outcome(Audited)
//!                    +  p · q       · outcome(SelfAudited)      (auditor_sybil only)
//!     p: the ledger's audit probability at the block of the stage's last commitment
//!     q: the coalition's partners' share of the stake qualified for the auditor draw
//!     outcome(branch taken) = the side's realized profit;
//!     outcome(other branch) = model_income − the mean cost the strategy paid there
//! ```
//!
//! `as_modelled` checks that the ledger did to every cheating stage what the model of
//! its branch assumes; the report counts those where it did not (0).

use std::collections::{BTreeMap, HashMap};

use agentic_protocol::state::JobStatus;
use agentic_protocol::types::{Amount, PPM};
use agentic_protocol::{Params, State};

use crate::cast::{CHEATER_STAKES, COALITION_PRICE};
use crate::market::{Flow, JobRun, Market};
use crate::report::{
    CoalitionFigures, FarmingFigures, FullSlash, Inequality, PartnerDraws, ProviderFigures,
    StakeProfit, StrategyFigures, Tried, Variant, VariantFigures,
};
use crate::strategy::{CoalitionKind, Replica, Strategy};

/// Which way the audit draw went for a cheating stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Branch {
    Unaudited,
    /// Audited by a provider outside the placed one's coalition.
    Audited,
    /// Audited by a partner of the placed provider (`auditor_sybil`).
    SelfAudited,
}

pub(crate) fn mean(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for x in xs {
        sum += x;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

impl Market {
    pub(crate) fn compute(&self, ops: u64) -> f64 {
        ops as f64 * self.compute_cost as f64 / 1e6
    }

    pub(crate) fn flow_of(&self, u: usize, who: usize) -> Flow {
        self.flows.get(&(u, who)).cloned().unwrap_or_default()
    }

    /// One party's fees and compute on a stage.
    pub(crate) fn cost(&self, u: usize, who: usize) -> f64 {
        let f = self.flow_of(u, who);
        f.fees as f64 + self.compute(f.computed_ops)
    }

    pub(crate) fn realized(&self, u: usize, who: usize) -> f64 {
        self.flow_of(u, who).income() as f64 - self.cost(u, who)
    }

    /// The identities whose flows on a stage count for its placed provider: itself and
    /// its coalition.
    pub(crate) fn side(&self, u: usize) -> Vec<usize> {
        let p = self.units[u].provider;
        match self.actors[p].coalition {
            Some(c) => self.coalitions[c].members().collect(),
            None => vec![p],
        }
    }

    /// What the placed provider earned by its work on a stage: its realized profit less
    /// any share of a loser's slash it won there.
    pub(crate) fn work_profit(&self, u: usize) -> f64 {
        let p = self.units[u].provider;
        self.realized(u, p) - self.flow_of(u, p).share as f64
    }

    pub(crate) fn side_realized(&self, u: usize) -> f64 {
        self.side(u).into_iter().map(|m| self.realized(u, m)).sum()
    }

    pub(crate) fn side_cost(&self, u: usize) -> f64 {
        self.side(u).into_iter().map(|m| self.cost(u, m)).sum()
    }

    pub(crate) fn strategy(&self, u: usize) -> Strategy {
        self.actors[self.units[u].provider].strategy
    }

    pub(crate) fn branch(&self, u: usize) -> Option<Branch> {
        let unit = &self.units[u];
        match unit.audited? {
            false => Some(Branch::Unaudited),
            true if unit.self_audited => Some(Branch::SelfAudited),
            true => Some(Branch::Audited),
        }
    }

    /// The mean fees and compute a strategy's side paid on its stages of each branch.
    pub(crate) fn branch_costs(&self) -> HashMap<(Strategy, Branch), f64> {
        let mut acc: HashMap<(Strategy, Branch), (f64, usize)> = HashMap::new();
        for u in 0..self.units.len() {
            if let Some(b) = self.branch(u) {
                let e = acc.entry((self.strategy(u), b)).or_default();
                e.0 += self.side_cost(u);
                e.1 += 1;
            }
        }
        acc.into_iter()
            .map(|(k, (sum, n))| (k, sum / n as f64))
            .collect()
    }

    /// The slash of the placed provider at the stake it had when the draw was made.
    pub(crate) fn model_slash(&self, u: usize) -> u128 {
        let d = self.units[u].draw.unwrap_or_default();
        Amount(d.slashable).mul_ppm(self.params.slash_ppm).0
    }

    /// What the ledger pays (+) or takes (−) from the placed provider's side on a stage in
    /// `branch`: paid `V` unaudited; slashed `S` when audited; `V` and the partner's audit
    /// fee when a partner approves; a blind committer pays the miss penalty, or `S` when
    /// audited, and an `echo_replica` partner in the other slot keeps its honest pay.
    pub(crate) fn model_income(&self, u: usize, branch: Branch) -> f64 {
        let unit = &self.units[u];
        let d = unit.draw.unwrap_or_default();
        let slash = self.model_slash(u) as f64;
        let value = unit.value as f64;
        match (self.strategy(u).replica(), branch) {
            (Replica::Blind, b) => {
                let partners: f64 = self
                    .side(u)
                    .into_iter()
                    .filter(|&m| m != unit.provider)
                    .map(|m| self.flow_of(u, m).income() as f64)
                    .sum();
                let own = if b == Branch::Unaudited {
                    Amount(d.slashable).mul_ppm(self.params.miss_penalty_ppm).0 as f64
                } else {
                    slash
                };
                partners - own
            }
            (_, Branch::Unaudited) => value,
            (_, Branch::Audited) => -slash,
            (_, Branch::SelfAudited) => {
                value
                    + Amount::cost(unit.span.ops, Amount(COALITION_PRICE))
                        .unwrap_or_default()
                        .0 as f64
            }
        }
    }

    /// Fees and compute of a branch no stage of the strategy took: commit and reveal (and
    /// the dispute moves of a strategy that plays; an approving partner's commit and
    /// report), at `min_fee` each.
    pub(crate) fn model_cost(&self, u: usize, branch: Branch) -> f64 {
        let fee = self.params.min_fee.0 as f64;
        let s = self.strategy(u);
        let moves = if branch == Branch::Audited && s.plays() {
            f64::from(self.rounds_bound)
        } else {
            0.0
        };
        let partner = if branch == Branch::SelfAudited {
            2.0
        } else {
            0.0
        };
        fee * (2.0 + moves + partner)
            + self.compute(self.flow_of(u, self.units[u].provider).computed_ops)
    }

    /// The stage's profit for the placed provider's side in expectation over the ledger's
    /// audit draw (see the module docs); honest stages and stages without a draw: realized.
    pub(crate) fn expected_profit(
        &self,
        u: usize,
        costs: &HashMap<(Strategy, Branch), f64>,
    ) -> f64 {
        let unit = &self.units[u];
        let s = self.strategy(u);
        let (Some(d), Some(taken)) = (unit.draw, self.branch(u)) else {
            return self.side_realized(u);
        };
        if s.replica() == Replica::Honest {
            return self.side_realized(u);
        }
        let p = d.p_ppm as f64 / PPM as f64;
        let q = if s == Strategy::SybilWorker {
            d.share
        } else {
            0.0
        };
        [
            (Branch::Unaudited, 1.0 - p),
            (Branch::Audited, p * (1.0 - q)),
            (Branch::SelfAudited, p * q),
        ]
        .into_iter()
        .filter(|(_, w)| *w > 0.0)
        .map(|(b, w)| {
            let outcome = if b == taken {
                self.side_realized(u)
            } else {
                let cost = costs
                    .get(&(s, b))
                    .copied()
                    .unwrap_or_else(|| self.model_cost(u, b));
                self.model_income(u, b) - cost
            };
            w * outcome
        })
        .sum()
    }

    /// Whether the ledger did to the placed provider what the model of its branch says.
    pub(crate) fn as_modelled(&self, u: usize) -> bool {
        let unit = &self.units[u];
        let s = self.strategy(u);
        let Some(b) = self.branch(u) else {
            return true;
        };
        let f = self.flow_of(u, unit.provider);
        match (s.replica(), b) {
            (Replica::Honest, _) => true,
            (Replica::Blind, Branch::Unaudited) => f.penalty > 0 && f.slashed == 0 && f.paid == 0,
            (Replica::Blind, _) => f.slashed > 0 && f.missed_under_audit && f.paid == 0,
            (_, Branch::Unaudited) => {
                f.paid == unit.value
                    && f.slashed == 0
                    && f.penalty == 0
                    && unit.status == Some(JobStatus::Completed)
            }
            (_, Branch::Audited) => f.slashed > 0 && f.paid == 0 && unit.failed(),
            (_, Branch::SelfAudited) => {
                let fee: u128 = self
                    .side(u)
                    .into_iter()
                    .filter(|&m| m != unit.provider)
                    .map(|m| self.flow_of(u, m).audit_fee)
                    .sum();
                f.paid == unit.value
                    && f.slashed == 0
                    && fee
                        == Amount::cost(unit.span.ops, Amount(COALITION_PRICE))
                            .unwrap_or_default()
                            .0
            }
        }
    }

    pub(crate) fn caught(&self, u: usize) -> bool {
        let f = self.flow_of(u, self.units[u].provider);
        f.slashed > 0 || f.penalty > 0 || self.units[u].failed()
    }

    /// Honest delivered work and what of it went unpaid: every honest replica that
    /// revealed its stage's true output (its bill: ops × its price) and every honest
    /// auditor whose report was agreed or upheld (its fee). Returns (unpaid, delivered,
    /// roles).
    pub(crate) fn honest_unpaid(&self) -> (u128, u128, usize) {
        let (mut unpaid, mut delivered, mut roles) = (0u128, 0u128, 0usize);
        for ((u, who), f) in &self.flows {
            let unit = &self.units[*u];
            if self.jobs[unit.job].farmed {
                continue;
            }
            let (counts, got) = if f.auditor {
                (f.reported && !f.approved_partner, f.audit_fee)
            } else {
                (
                    self.actors[*who].strategy.replica() == Replica::Honest
                        && f.revealed == Some(unit.truth),
                    f.paid,
                )
            };
            if counts {
                let bill = Amount::cost(unit.span.ops, Amount(f.price))
                    .unwrap_or_default()
                    .0;
                delivered += bill;
                unpaid += bill.saturating_sub(got);
                roles += 1;
                if got < bill {
                    tracing::warn!(run = self.label, unit = ?unit, flow = ?f, "honest work unpaid");
                }
            }
        }
        (unpaid, delivered, roles)
    }

    /// Honest stages delivered in jobs that failed because of another stage, and what of
    /// their bills was paid.
    pub(crate) fn failed_jobs_honest_stages(&self) -> (usize, u128, u128) {
        let (mut n, mut bills, mut paid) = (0, 0u128, 0u128);
        for (u, unit) in self.units.iter().enumerate() {
            if unit.status != Some(JobStatus::Failed) || unit.phase != "finalized" {
                continue;
            }
            for ((fu, who), f) in &self.flows {
                if *fu == u
                    && !f.auditor
                    && self.actors[*who].strategy.replica() == Replica::Honest
                    && f.revealed == Some(unit.truth)
                {
                    n += 1;
                    bills += Amount::cost(unit.span.ops, Amount(f.price))
                        .unwrap_or_default()
                        .0;
                    paid += f.paid;
                }
            }
        }
        (n, bills, paid)
    }

    pub(crate) fn overhead(&self) -> f64 {
        self.audited_ops as f64 / self.stage_ops.max(1) as f64
    }

    /// The audit overhead the ledger's probabilities predict for the stages drawn.
    pub(crate) fn expected_overhead(&self) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for unit in &self.units {
            if let Some(d) = unit.draw {
                num += d.p_ppm as f64 / PPM as f64 * unit.span.ops as f64;
                den += unit.span.ops as f64;
            }
        }
        if den > 0.0 {
            num / den
        } else {
            0.0
        }
    }

    /// Stages placed on honest providers (not farmed).
    pub(crate) fn honest_units(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.units.len()).filter(|&u| {
            self.strategy(u) == Strategy::Honest && !self.jobs[self.units[u].job].farmed
        })
    }
}

/// Both sides of the ledger's audit inequality `p·(1 − c)·S ≥ (1 − p)·V + p·c·(V + F)`
/// for a stage worth `value` to a provider with the minimum stake and a perfect
/// reputation (the lowest probability the ledger allows), an auditor's fee of at most
/// `fee`, and `c = audit_collusion_ppm` (a coalition's assumed share of the qualified
/// stake, which approves when drawn as the auditor).
pub(crate) fn inequality(params: &Params, value: u128, fee: u128) -> Inequality {
    let stake = params.min_provider_stake;
    let (value, fee) = (Amount(value), Amount(fee));
    let p_ppm = State::audit_probability_for(params, PPM, value, fee, stake);
    let floor_ppm = State::value_floor(params, value, fee, stake);
    let p = p_ppm as f64 / PPM as f64;
    let c = params.audit_collusion_ppm as f64 / PPM as f64;
    let slash = stake.mul_ppm(params.slash_ppm).0 as f64;
    let expected_slash = p * (1.0 - c) * slash;
    let expected_gain = (1.0 - p) * value.0 as f64 + p * c * (value.0 + fee.0) as f64;
    Inequality {
        stage_value: value.0 as f64,
        audit_fee_bound: fee.0 as f64,
        stake: stake.0 as f64,
        slash,
        collusion_share: c,
        reputation: 1.0,
        p_min: floor_ppm as f64 / PPM as f64,
        p_reputation_floor: params.audit_min_ppm as f64 / PPM as f64,
        p,
        expected_slash,
        expected_gain,
        holds: expected_slash >= expected_gain,
    }
}

/// The single cheaters' figures of a run.
pub(crate) struct Singles {
    /// Per strategy (keyed by [`Strategy::name`]).
    pub(crate) figures: BTreeMap<&'static str, StrategyFigures>,
    /// The best expected profit per job, with its strategy and stake.
    pub(crate) best: Option<(f64, Strategy, u128)>,
    /// Jobs placed on single cheaters, and those on which they were caught.
    pub(crate) jobs: usize,
    pub(crate) caught: usize,
    /// Cheating stages whose outcome is not the one its branch models.
    pub(crate) mismatches: usize,
}

/// The single cheaters' figures (cheater run): per strategy and stake.
pub(crate) fn singles(m: &Market) -> Singles {
    let costs = m.branch_costs();
    let mut strategies = BTreeMap::new();
    let mut best: Option<(f64, Strategy, u128)> = None;
    let (mut jobs, mut caught, mut mismatches) = (0usize, 0usize, 0usize);
    for s in Strategy::CHEATS {
        let us: Vec<usize> = (0..m.units.len())
            .filter(|&u| m.units[u].cheat && m.strategy(u) == s)
            .collect();
        jobs += us.len();
        caught += us.iter().filter(|&&u| m.caught(u)).count();
        for &u in us.iter().filter(|&&u| !m.as_modelled(u)) {
            tracing::warn!(strategy = s.name(), unit = ?m.units[u], "outcome not as modelled");
            mismatches += 1;
        }
        let p_of = |us: &[usize]| {
            mean(
                us.iter()
                    .filter_map(|&u| m.units[u].draw)
                    .map(|d| d.p_ppm as f64 / PPM as f64),
            )
        };
        let mut stakes = Vec::new();
        for stake in CHEATER_STAKES {
            let g: Vec<usize> = us
                .iter()
                .copied()
                .filter(|&u| m.actors[m.units[u].provider].stake == stake)
                .collect();
            if g.is_empty() {
                continue;
            }
            let expected = mean(g.iter().map(|&u| m.expected_profit(u, &costs)));
            if best.is_none_or(|b| expected > b.0) {
                best = Some((expected, s, stake));
            }
            stakes.push(StakeProfit {
                stake: stake as f64,
                jobs: g.len(),
                caught: g.iter().filter(|&&u| m.caught(u)).count(),
                audited: g
                    .iter()
                    .filter(|&&u| m.units[u].audited == Some(true))
                    .count(),
                mean_audit_probability: p_of(&g),
                expected_profit_per_job: expected,
                realized_profit_per_job: mean(g.iter().map(|&u| m.side_realized(u))),
            });
        }
        let computed: u64 = us
            .iter()
            .map(|&u| m.flow_of(u, m.units[u].provider).computed_ops)
            .sum();
        let ops: u64 = us.iter().map(|&u| m.units[u].span.ops).sum();
        let n = us.len().max(1) as f64;
        let placed = |u: usize| m.flow_of(u, m.units[u].provider);
        strategies.insert(
            s.name(),
            StrategyFigures {
                what: s.what(),
                jobs: us.len(),
                detection_rate: us.iter().filter(|&&u| m.caught(u)).count() as f64 / n,
                audited_share: us
                    .iter()
                    .filter(|&&u| m.units[u].audited == Some(true))
                    .count() as f64
                    / n,
                mean_audit_probability: p_of(&us),
                compute_share: computed as f64 / ops.max(1) as f64,
                expected_profit_per_job: mean(us.iter().map(|&u| m.expected_profit(u, &costs))),
                realized_profit_per_job: mean(us.iter().map(|&u| m.side_realized(u))),
                slashed_total: us.iter().map(|&u| placed(u).slashed as f64).sum::<f64>(),
                penalties_total: us.iter().map(|&u| placed(u).penalty as f64).sum::<f64>(),
                by_stake: stakes,
            },
        );
    }
    Singles {
        figures: strategies,
        best,
        jobs,
        caught,
        mismatches,
    }
}

/// The coalitions' figures of a run.
pub(crate) struct Coalitions {
    /// Per strategy (keyed by [`CoalitionKind::name`]).
    pub(crate) figures: BTreeMap<&'static str, CoalitionFigures>,
    /// The best variant's expected profit per job, with its name.
    pub(crate) best: Option<(f64, String)>,
    /// Cheating stages whose outcome is not the one its branch models.
    pub(crate) mismatches: usize,
}

/// The coalition strategies' figures (coalition run).
pub(crate) fn coalitions(m: &Market) -> Coalitions {
    let costs = m.branch_costs();
    let mut out = BTreeMap::new();
    let mut best: Option<(f64, String)> = None;
    let mut mismatches = 0usize;
    for kind in CoalitionKind::ALL {
        let mut variants = Vec::new();
        let mut kind_best: Option<f64> = None;
        for (c, co) in m
            .coalitions
            .iter()
            .enumerate()
            .filter(|(_, x)| x.kind == kind)
        {
            let label = match kind {
                CoalitionKind::PenaltyFarming => "requester".to_string(),
                _ if co.partners.is_empty() => format!("stake {}", co.worker_stake),
                _ => format!(
                    "worker stake {} at price {}, {} partners × {}",
                    co.worker_stake,
                    co.worker_price,
                    co.partners.len(),
                    co.partner_stake
                ),
            };
            let (expected, figures) = if kind == CoalitionKind::PenaltyFarming {
                let jobs: Vec<&JobRun> = m.jobs.iter().filter(|j| j.farmed).collect();
                let per_job: Vec<f64> = jobs
                    .iter()
                    .map(|j| j.refund as f64 - j.escrow as f64 - j.fee as f64)
                    .collect();
                let on_unit = |u: usize, f: fn(&Flow) -> u128| {
                    m.flows
                        .iter()
                        .filter(|((fu, _), _)| *fu == u)
                        .map(|(_, x)| f(x))
                        .sum::<u128>()
                };
                let compensation: u128 = (0..m.units.len())
                    .filter(|&u| m.jobs[m.units[u].job].farmed)
                    .map(|u| on_unit(u, |f| f.compensation))
                    .sum();
                let penalties: u128 = jobs
                    .iter()
                    .flat_map(|j| j.units.iter())
                    .map(|&u| on_unit(u, |f| f.penalty))
                    .sum();
                let expected = mean(per_job.iter().copied());
                let figures = VariantFigures::Farming(FarmingFigures {
                    jobs: jobs.len(),
                    claims: m.claims,
                    data_unavailable: m.unavailable,
                    compensation_paid: compensation as f64,
                    miss_penalties_collected: penalties as f64,
                    best_job_profit: per_job.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    realized_profit_per_job: expected,
                });
                (expected, figures)
            } else {
                let worker = co.worker.unwrap_or_default();
                let us: Vec<usize> = (0..m.units.len())
                    .filter(|&u| m.units[u].cheat && m.units[u].provider == worker)
                    .collect();
                for &u in us.iter().filter(|&&u| !m.as_modelled(u)) {
                    tracing::warn!(coalition = kind.name(), unit = ?m.units[u], "outcome not as modelled");
                    mismatches += 1;
                }
                let audited: Vec<usize> = us
                    .iter()
                    .copied()
                    .filter(|&u| m.units[u].audited == Some(true))
                    .collect();
                let expected = mean(us.iter().map(|&u| m.expected_profit(u, &costs)));
                let tried = match kind {
                    CoalitionKind::AuditorSybil => {
                        let own = audited.iter().filter(|&&u| m.units[u].self_audited).count();
                        let (expected_draws, draws) =
                            m.partner_draws.get(&c).copied().unwrap_or_default();
                        let fees: u128 = us
                            .iter()
                            .flat_map(|&u| co.partners.iter().map(move |&p| (u, p)))
                            .map(|(u, p)| m.flow_of(u, p).audit_fee)
                            .sum();
                        Some(Tried::AuditorSybil {
                            qualified_stake_share: mean(
                                us.iter().filter_map(|&u| m.units[u].draw).map(|d| d.share),
                            ),
                            self_audited: own,
                            self_audit_frequency: own as f64 / audited.len().max(1) as f64,
                            partner_draws_all_audits: PartnerDraws {
                                what: "auditor draws of the whole run (every stage) that picked one of its partners, against the sum of their qualified-stake share at each draw",
                                audits: m.audited_stages,
                                observed: draws,
                                expected: expected_draws,
                                observed_share: draws as f64 / m.audited_stages.max(1) as f64,
                                expected_share: expected_draws / m.audited_stages.max(1) as f64,
                            },
                            approval_fees: fees as f64,
                        })
                    }
                    CoalitionKind::UnbondThenLose => {
                        let (n, amount) = m.unbonded.get(&worker).copied().unwrap_or_default();
                        let exact = audited
                            .iter()
                            .filter(|&&u| m.flow_of(u, worker).slashed == m.model_slash(u))
                            .count();
                        Some(Tried::UnbondThenLose {
                            unbonds_accepted: n,
                            unbonded_total: amount as f64,
                            refused: refusals(m, worker),
                            slashed_as_if_never_unbonded: FullSlash {
                                audited: audited.len(),
                                slash_of_full_stake: exact,
                            },
                        })
                    }
                    CoalitionKind::EchoReplica => Some(Tried::EchoReplica {
                        withheld_reveals: us
                            .iter()
                            .filter(|&&u| {
                                let f = m.flow_of(u, worker);
                                f.penalty > 0 || f.missed_under_audit
                            })
                            .count(),
                        refills_after_reveal: m.refills_after_reveal,
                        partner_refills: m.partner_refills,
                    }),
                    CoalitionKind::RetireWhileDisputed => Some(Tried::RetireWhileDisputed {
                        disputed: us.iter().filter(|&&u| m.units[u].dispute.is_some()).count(),
                        withdrawable_stake: co.worker_stake as f64,
                        refused: refusals(m, worker),
                    }),
                    CoalitionKind::PenaltyFarming => None,
                };
                let figures = VariantFigures::Providers(ProviderFigures {
                    identities: 1 + co.partners.len(),
                    worker_stake: co.worker_stake as f64,
                    partner_stake: co.partner_stake as f64,
                    worker_price: co.worker_price as f64,
                    jobs: us.len(),
                    audited: audited.len(),
                    caught: us.iter().filter(|&&u| m.caught(u)).count(),
                    mean_audit_probability: mean(
                        us.iter()
                            .filter_map(|&u| m.units[u].draw)
                            .map(|d| d.p_ppm as f64 / PPM as f64),
                    ),
                    realized_profit_per_job: mean(us.iter().map(|&u| m.side_realized(u))),
                    slashed_total: us
                        .iter()
                        .map(|&u| m.flow_of(u, worker).slashed)
                        .sum::<u128>() as f64,
                    tried,
                });
                (expected, figures)
            };
            if kind_best.is_none_or(|b| expected > b) {
                kind_best = Some(expected);
            }
            if best.as_ref().is_none_or(|b| expected > b.0) {
                best = Some((expected, format!("{} ({label})", kind.name())));
            }
            variants.push(Variant {
                variant: label,
                figures,
                expected_profit_per_job: expected,
            });
        }
        out.insert(
            kind.name(),
            CoalitionFigures {
                what: kind.what(),
                expected_profit_per_job: kind_best,
                variants,
            },
        );
    }
    Coalitions {
        figures: out,
        best,
        mismatches,
    }
}

/// The refusals counted for one identity's doomed attempts.
fn refusals(m: &Market, who: usize) -> BTreeMap<&'static str, usize> {
    m.refused_by
        .iter()
        .filter(|((i, _), _)| *i == who)
        .map(|((_, name), n)| (*name, *n))
        .collect()
}
