//! Quotes: the candidate purchases for a goal and how they score.
//!
//! Three ways to place a job, each a complete quote (providers, layer ranges,
//! expected bill, predicted latency, weakest reputation):
//!
//! | plan | providers |
//! | --- | --- |
//! | `fastest` | the partitioner's choice over the qualified offers (speeds, coordinates) |
//! | `cheapest` | the `k` lowest prices |
//! | `reputable` | the `k` highest reputations |
//!
//! Every named plan asks for a max price equal to the highest price among its
//! providers (never above the goal's), so the escrow locked is as small as the
//! plan allows. Scores are relative (`lower is better`):
//!
//! ```text
//! score = w_cost · bill / min bill + w_latency · latency / min latency
//!       + w_reputation · (1 − weakest reputation)
//! ```
//!
//! A plan with an unknown latency (a provider without a measured speed) takes
//! the worst latency of the others. If no named plan can be formed, the ledger's
//! own matching is the only quote (`ledger`), priced at the goal's max price.
//!
//! A generation goal ([`generation_quotes`]) is prepared once — its layer split
//! does not depend on who runs it — and quoted per plan by naming `k` qualified
//! providers (`fastest`: the highest measured speeds). Its bill and escrow are
//! for the whole `max_tokens` (prefill plus every decode step: `stage_max_ops`),
//! the most the ledger can charge; the job is billed for the tokens generated.
//! Its latency is the time of that many tokens through the pipeline, Σ stage ops
//! / speed (a session's stages run one after the other for each token).

use agentic_protocol::state::State;
use agentic_protocol::{Address, Amount};
use serde::Serialize;

use agentic_protocol::matching;

use super::goal::Goal;
use crate::requester::{
    candidate, prepare, JobRequest, OfferView, PlacementChoice, PreparedJob, RequesterError,
};

/// One candidate purchase.
#[derive(Clone, Debug, Serialize)]
pub struct Quote {
    /// `fastest`, `cheapest`, `reputable` or `ledger`.
    pub plan: &'static str,
    /// Providers by stage (empty: the ledger matches).
    pub providers: Vec<Address>,
    /// Expected bill: Σ stage ops × provider price (the escrow bound for `ledger`).
    pub expected_bill: Amount,
    /// Escrow locked at submission.
    pub escrow: Amount,
    /// The job's max price per mega-op.
    pub max_price: Amount,
    /// Predicted latency (s), when every provider's speed is known.
    pub latency_s: Option<f64>,
    /// The weakest provider's reputation (ppm).
    pub min_reputation_ppm: u32,
    /// Relative score (lower is better), filled by [`score`].
    pub score: f64,
    /// The prepared job.
    #[serde(skip)]
    pub job: PreparedJob,
}

/// Quotes the goal against the offers, leaving out `excluded` providers. Plans
/// that cannot be formed are skipped (their reasons returned alongside).
pub fn quotes(
    goal: &Goal,
    offers: &[OfferView],
    excluded: &[Address],
) -> (Vec<Quote>, Vec<(String, RequesterError)>) {
    let base = goal.request();
    let k = goal.stages;
    let usable: Vec<OfferView> = offers
        .iter()
        .filter(|o| !excluded.contains(&o.provider))
        .filter(|o| o.offer.price <= goal.max_price && o.offer.capacity > 0)
        .cloned()
        .collect();
    let rep = |a: &Address| {
        usable
            .iter()
            .find(|o| o.provider == *a)
            .map(|o| o.reputation_ppm)
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut by_price = usable.clone();
    by_price.sort_by_key(|o| (o.offer.price, o.provider));
    let mut by_rep = usable.clone();
    by_rep.sort_by_key(|o| {
        (
            std::cmp::Reverse(o.reputation_ppm),
            o.offer.price,
            o.provider,
        )
    });
    let mut plans: Vec<(&'static str, PlacementChoice)> = vec![("fastest", PlacementChoice::Auto)];
    if usable.len() >= k {
        plans.push((
            "cheapest",
            PlacementChoice::Named(by_price.iter().take(k).map(|o| o.provider).collect()),
        ));
        plans.push((
            "reputable",
            PlacementChoice::Named(by_rep.iter().take(k).map(|o| o.provider).collect()),
        ));
    }
    for (name, placement) in plans {
        let req = JobRequest {
            placement,
            ..base.clone()
        };
        let mut job = match prepare(&req, &usable) {
            Ok(j) => j,
            Err(e) => {
                skipped.push((name.to_string(), e));
                continue;
            }
        };
        let Some(plan) = job.placement.clone() else {
            continue;
        };
        let providers: Vec<Address> = plan.stages.iter().map(|s| s.provider).collect();
        if out.iter().any(|q: &Quote| q.providers == providers) {
            continue;
        }
        // Lock no more than the plan needs: its highest price, not the goal's cap.
        let top = plan
            .stages
            .iter()
            .filter_map(|s| s.price)
            .max()
            .unwrap_or(goal.max_price)
            .min(goal.max_price);
        job.spec.max_price = top;
        match State::escrow_for(&job.spec) {
            Some(e) if e.0 > 0 => job.escrow = e,
            _ => {
                skipped.push((name.to_string(), RequesterError::EscrowOverflow));
                continue;
            }
        }
        let bill: u128 = plan
            .stages
            .iter()
            .map(|s| Amount::cost(s.ops, s.price.unwrap_or(top)).map_or(0, |a| a.0))
            .sum::<u128>()
            .saturating_mul(u128::from(goal.replicas));
        out.push(Quote {
            plan: name,
            min_reputation_ppm: providers.iter().map(rep).min().unwrap_or(0),
            providers,
            expected_bill: Amount(bill),
            escrow: job.escrow,
            max_price: top,
            latency_s: plan.latency_s,
            score: 0.0,
            job,
        });
    }
    if out.is_empty() {
        match prepare(&base, &usable) {
            Ok(job) => out.push(Quote {
                plan: "ledger",
                providers: Vec::new(),
                expected_bill: job.escrow,
                escrow: job.escrow,
                max_price: base.max_price,
                latency_s: None,
                min_reputation_ppm: 0,
                score: 0.0,
                job,
            }),
            Err(e) => skipped.push(("ledger".to_string(), e)),
        }
    }
    (out, skipped)
}

/// Quotes a generation goal against the offers, leaving out `excluded`
/// providers: `base` is the goal's job prepared for the ledger's matching
/// (`prepare(&goal.request(), &[])`); each plan names its providers on a copy.
pub fn generation_quotes(
    goal: &Goal,
    base: &PreparedJob,
    offers: &[OfferView],
    excluded: &[Address],
) -> (Vec<Quote>, Vec<(String, RequesterError)>) {
    let k = base.spec.stages.len();
    let requirement = goal.request().requirement();
    let usable: Vec<&OfferView> = offers
        .iter()
        .filter(|o| !excluded.contains(&o.provider))
        .filter(|o| o.offer.price <= goal.max_price && o.offer.capacity > 0)
        .filter(|o| matching::qualifies(&candidate(o), &requirement))
        .collect();
    let mut by_speed: Vec<&OfferView> = usable
        .iter()
        .copied()
        .filter(|o| o.offer.speed > 0)
        .collect();
    by_speed.sort_by_key(|o| (std::cmp::Reverse(o.offer.speed), o.offer.price, o.provider));
    let mut by_price = usable.clone();
    by_price.sort_by_key(|o| (o.offer.price, o.provider));
    let mut by_rep = usable.clone();
    by_rep.sort_by_key(|o| {
        (
            std::cmp::Reverse(o.reputation_ppm),
            o.offer.price,
            o.provider,
        )
    });
    let mut out: Vec<Quote> = Vec::new();
    let mut skipped = Vec::new();
    for (name, ranked) in [
        ("fastest", by_speed),
        ("cheapest", by_price),
        ("reputable", by_rep),
    ] {
        if ranked.len() < k {
            skipped.push((
                name.to_string(),
                RequesterError::NotEnoughOffers {
                    stages: k,
                    qualified: ranked.len(),
                },
            ));
            continue;
        }
        let chosen = &ranked[..k];
        let providers: Vec<Address> = chosen.iter().map(|o| o.provider).collect();
        if out.iter().any(|q| q.providers == providers) {
            continue;
        }
        let top = chosen
            .iter()
            .map(|o| o.offer.price)
            .max()
            .unwrap_or(goal.max_price);
        let mut job = base.clone();
        job.spec.placement = providers.clone();
        job.spec.max_price = top;
        match State::escrow_for(&job.spec) {
            Some(e) if e.0 > 0 => job.escrow = e,
            _ => {
                skipped.push((name.to_string(), RequesterError::EscrowOverflow));
                continue;
            }
        }
        let stage_ops = |i: usize| job.spec.stage_max_ops(i).unwrap_or(u64::MAX);
        let bill: u128 = chosen
            .iter()
            .enumerate()
            .map(|(i, o)| Amount::cost(stage_ops(i), o.offer.price).map_or(u128::MAX, |a| a.0))
            .fold(0u128, u128::saturating_add);
        let latency_s = chosen
            .iter()
            .enumerate()
            .map(|(i, o)| (o.offer.speed > 0).then(|| stage_ops(i) as f64 / o.offer.speed as f64))
            .sum::<Option<f64>>();
        out.push(Quote {
            plan: name,
            min_reputation_ppm: chosen.iter().map(|o| o.reputation_ppm).min().unwrap_or(0),
            providers,
            expected_bill: Amount(bill),
            escrow: job.escrow,
            max_price: top,
            latency_s,
            score: 0.0,
            job,
        });
    }
    if out.is_empty() {
        out.push(Quote {
            plan: "ledger",
            providers: Vec::new(),
            expected_bill: base.escrow,
            escrow: base.escrow,
            max_price: base.spec.max_price,
            latency_s: None,
            min_reputation_ppm: 0,
            score: 0.0,
            job: base.clone(),
        });
    }
    (out, skipped)
}

/// Scores the quotes in place (see the module docs); returns the best one's index.
pub fn score(quotes: &mut [Quote], goal: &Goal) -> Option<usize> {
    let min_bill = quotes.iter().map(|q| q.expected_bill.0).min()?.max(1) as f64;
    let lats: Vec<f64> = quotes.iter().filter_map(|q| q.latency_s).collect();
    let min_lat = lats.iter().copied().fold(f64::INFINITY, f64::min);
    let max_lat = lats.iter().copied().fold(0.0, f64::max);
    let p = goal.preferences;
    for q in quotes.iter_mut() {
        let lat = q.latency_s.unwrap_or(max_lat);
        let lat_norm = if min_lat.is_finite() && min_lat > 0.0 {
            lat / min_lat
        } else {
            1.0
        };
        q.score = p.cost * (q.expected_bill.0 as f64 / min_bill)
            + p.latency * lat_norm
            + p.reputation * (1.0 - f64::from(q.min_reputation_ppm) / 1e6);
    }
    quotes
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.score.total_cmp(&b.1.score))
        .map(|(i, _)| i)
}
