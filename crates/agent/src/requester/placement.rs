//! Placement: which contiguous layers each stage runs, and (optionally) on whom.
//!
//! Three ways, one per [`PlacementChoice`](super::request::PlacementChoice):
//!
//! ```text
//!   Ledger   balanced_split(layer_ops, k)                  → ranges; the ledger matches providers
//!   Named    balanced_split(layer_ops, k) + the k names    → ranges and providers (checked against
//!                                                             their offers when they are listed)
//!   Auto     partitioner over the ≤ 16 cheapest qualified  → ranges and providers minimizing the
//!            offers (Objective::Latency, Exactly(k))          predicted end-to-end latency
//! ```
//!
//! # Balanced split
//!
//! [`balanced_split`] cuts the layers into `k` non-empty contiguous ranges whose
//! largest sum of ops is as small as possible (an exact `O(k·L²)` dynamic
//! program). With identical providers that is the split whose slowest stage is
//! fastest; it is what a requester wants when it does not know who will run
//! the stages.
//!
//! # Automatic placement: the cost model
//!
//! The partitioner ([`agentic_compute::partition`]) prices a placement as the sum
//! of its computes and transfers. Its inputs are built here from what the
//! ledger and the offers say:
//!
//! | input | from |
//! | --- | --- |
//! | ops of each layer | [`agentic_compute::Model::meter`] on the job's input shape (exact) |
//! | bytes at each layer boundary | the canonical size of the activation there: header + `rows × width × 4` for hidden states, logits and pooled vectors; header + `ids × 4` for the token input |
//! | speed of each provider | `offer.speed` (ops/s, measured and reported by the provider, not checked by the ledger) |
//! | one-way latency between two parties | `coord.distance_us / 2` (the coordinates predict round-trip times) |
//! | bandwidth of every link | an assumed [`ASSUMED_BANDWIDTH_BYTES_PER_S`] (1 Gbit/s): offers do not report bandwidth yet |
//!
//! Candidates are the offers that pass the ledger's own qualification check
//! ([`agentic_protocol::matching::check`]: price ≤ max price, reputation, stake,
//! regions, capabilities) and report a non-zero speed; `/v1/offers` lists no
//! retired provider. The 16 cheapest (price, then address) enter the exact
//! search ([`agentic_compute::partition::MAX_PROVIDERS`]); should the search
//! table still be too large for a long model, the most expensive candidates
//! are dropped one by one until it fits.

use std::ops::Range;

use agentic_compute::partition::{
    self, Objective, PartitionError, PartitionProblem, StageCount, MAX_PROVIDERS,
};
use agentic_protocol::coord::Coord;
use agentic_protocol::matching;
use agentic_protocol::{Address, Amount};
use serde::Serialize;

use super::error::RequesterError;
use super::request::{candidate, JobRequest, OfferView};

/// The bandwidth assumed for every link (1 Gbit/s = 125,000,000 bytes/s).
pub const ASSUMED_BANDWIDTH_BYTES_PER_S: f64 = 125_000_000.0;

/// How a placement was chosen and what it is predicted to cost in time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanSummary {
    /// The stages in pipeline order.
    pub stages: Vec<PlannedStage>,
    /// Predicted end-to-end latency of the job (s) under the cost model; `None`
    /// when a provider's speed is unknown.
    pub latency_s: Option<f64>,
    /// Predicted largest single compute or transfer (s).
    pub bottleneck_s: Option<f64>,
    /// Offers that entered the search (automatic placement) or were named.
    pub candidates: usize,
    /// The bandwidth assumed for every link (bytes/s).
    pub bandwidth_bytes_per_s: f64,
}

/// One stage of a [`PlanSummary`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedStage {
    /// The provider.
    pub provider: Address,
    /// First layer.
    pub first_layer: u32,
    /// Number of layers.
    pub layers: u32,
    /// Metered operations.
    pub ops: u64,
    /// The provider's offered price per mega-op, if its offer is known.
    pub price: Option<Amount>,
    /// Its reported speed (ops/s), if known and non-zero.
    pub speed_ops_per_s: Option<u64>,
    /// Predicted compute time (s) = ops / speed.
    pub compute_s: Option<f64>,
}

/// Splits `layer_ops` into `k` non-empty contiguous ranges minimizing the
/// largest range's sum (see the module docs). `None` when `k` is zero or
/// exceeds the layers.
pub fn balanced_split(layer_ops: &[u64], k: usize) -> Option<Vec<Range<usize>>> {
    let l = layer_ops.len();
    if k == 0 || k > l {
        return None;
    }
    let mut prefix = vec![0u128; l + 1];
    for (i, &ops) in layer_ops.iter().enumerate() {
        prefix[i + 1] = prefix[i] + u128::from(ops);
    }
    let sum = |a: usize, b: usize| prefix[b] - prefix[a];
    // best[s][j]: the smallest largest-stage sum cutting layers 0..j into s stages;
    // from[s][j]: where the last of those stages starts.
    let mut best = vec![vec![u128::MAX; l + 1]; k + 1];
    let mut from = vec![vec![0usize; l + 1]; k + 1];
    best[0][0] = 0;
    for s in 1..=k {
        for j in s..=l {
            for m in (s - 1)..j {
                if best[s - 1][m] == u128::MAX {
                    continue;
                }
                let v = best[s - 1][m].max(sum(m, j));
                if v < best[s][j] {
                    best[s][j] = v;
                    from[s][j] = m;
                }
            }
        }
    }
    let mut ranges = Vec::with_capacity(k);
    let mut end = l;
    for s in (1..=k).rev() {
        let start = from[s][end];
        ranges.push(start..end);
        end = start;
    }
    ranges.reverse();
    Some(ranges)
}

/// Splits `n` equal units (a training job's steps) into `k` contiguous ranges whose
/// sizes differ by at most one, the longer ones first. `None` when `k` is zero or
/// exceeds `n`. For equal step costs this is what [`balanced_split`] finds, in
/// `O(k)` instead of `O(k·n²)`.
pub fn even_split(n: usize, k: usize) -> Option<Vec<Range<usize>>> {
    if k == 0 || k > n {
        return None;
    }
    let (q, r) = (n / k, n % k);
    let mut out = Vec::with_capacity(k);
    let mut start = 0;
    for i in 0..k {
        let len = q + usize::from(i < r);
        out.push(start..start + len);
        start += len;
    }
    Some(out)
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The partition problem over `offers` (see the module docs' table).
fn problem(
    requester: &Coord,
    offers: &[&OfferView],
    layer_ops: &[u64],
    boundary_bytes: &[u64],
) -> PartitionProblem {
    let one_way = |a: &Coord, b: &Coord| seconds(a.distance_us(b) / 2);
    let p = offers.len();
    PartitionProblem {
        layer_ops: layer_ops.to_vec(),
        boundary_bytes: boundary_bytes.to_vec(),
        speed_ops_per_s: offers.iter().map(|o| o.offer.speed as f64).collect(),
        latency_s: offers
            .iter()
            .map(|a| {
                offers
                    .iter()
                    .map(|b| one_way(&a.offer.coord, &b.offer.coord))
                    .collect()
            })
            .collect(),
        bandwidth_bytes_per_s: vec![vec![ASSUMED_BANDWIDTH_BYTES_PER_S; p]; p],
        requester_latency_s: offers
            .iter()
            .map(|o| one_way(requester, &o.offer.coord))
            .collect(),
        requester_bandwidth_bytes_per_s: vec![ASSUMED_BANDWIDTH_BYTES_PER_S; p],
    }
}

fn planned(
    offer: Option<&OfferView>,
    provider: Address,
    range: &Range<usize>,
    layer_ops: &[u64],
) -> PlannedStage {
    let ops: u64 = layer_ops[range.clone()].iter().sum();
    let speed = offer.map(|o| o.offer.speed).filter(|&s| s > 0);
    PlannedStage {
        provider,
        first_layer: range.start as u32,
        layers: range.len() as u32,
        ops,
        price: offer.map(|o| o.offer.price),
        speed_ops_per_s: speed,
        compute_s: speed.map(|s| ops as f64 / s as f64),
    }
}

/// Automatic placement (see the module docs): the providers and ranges that
/// minimize the predicted latency of `req.stages` stages.
pub fn auto(
    req: &JobRequest,
    offers: &[OfferView],
    layer_ops: &[u64],
    boundary_bytes: &[u64],
) -> Result<(Vec<Range<usize>>, PlanSummary), RequesterError> {
    let requirement = req.requirement();
    let mut qualified: Vec<&OfferView> = offers
        .iter()
        .filter(|o| o.offer.speed > 0 && matching::qualifies(&candidate(o), &requirement))
        .collect();
    if qualified.is_empty() {
        return Err(RequesterError::NoQualifiedOffer {
            offers: offers.len(),
            max_price: req.max_price,
        });
    }
    qualified.sort_by_key(|o| (o.offer.price, o.provider));
    qualified.dedup_by_key(|o| o.provider);
    qualified.truncate(MAX_PROVIDERS);
    if qualified.len() < req.stages {
        return Err(RequesterError::NotEnoughOffers {
            stages: req.stages,
            qualified: qualified.len(),
        });
    }
    let placement = loop {
        let pr = problem(&req.coord, &qualified, layer_ops, boundary_bytes);
        match pr.solve(StageCount::Exactly(req.stages), Objective::Latency) {
            Err(PartitionError::TooLarge { .. }) if qualified.len() > req.stages => {
                qualified.pop();
            }
            other => break other?,
        }
    };
    let stages = placement
        .stages
        .iter()
        .map(|s| {
            let o = qualified[s.provider];
            planned(Some(o), o.provider, &s.layers, layer_ops)
        })
        .collect();
    let ranges = placement.stages.iter().map(|s| s.layers.clone()).collect();
    Ok((
        ranges,
        PlanSummary {
            stages,
            latency_s: Some(placement.latency_s),
            bottleneck_s: Some(placement.bottleneck_s),
            candidates: qualified.len(),
            bandwidth_bytes_per_s: ASSUMED_BANDWIDTH_BYTES_PER_S,
        },
    ))
}

/// A named placement: `names` run the balanced split's ranges in order. A name
/// whose offer is listed in `offers` must qualify for the job; one not listed is
/// left to the ledger's check at submission. The predicted latency is given
/// when every named provider reports a speed.
pub fn named(
    req: &JobRequest,
    offers: &[OfferView],
    names: &[Address],
    layer_ops: &[u64],
    boundary_bytes: &[u64],
) -> Result<(Vec<Range<usize>>, PlanSummary), RequesterError> {
    if names.len() != req.stages {
        return Err(RequesterError::PlacementLength {
            named: names.len(),
            stages: req.stages,
        });
    }
    for (i, a) in names.iter().enumerate() {
        if names[..i].contains(a) {
            return Err(RequesterError::DuplicateProvider(*a));
        }
    }
    let ranges = balanced_split(layer_ops, req.stages).ok_or(RequesterError::ZeroStages)?;
    named_ranges(req, offers, names, ranges, layer_ops, boundary_bytes)
}

/// [`named`] with the ranges given (one per name, contiguous, tiling the layers —
/// a training job's even step split): checks each listed offer and predicts the
/// latency.
pub fn named_ranges(
    req: &JobRequest,
    offers: &[OfferView],
    names: &[Address],
    ranges: Vec<Range<usize>>,
    layer_ops: &[u64],
    boundary_bytes: &[u64],
) -> Result<(Vec<Range<usize>>, PlanSummary), RequesterError> {
    if names.len() != ranges.len() {
        return Err(RequesterError::PlacementLength {
            named: names.len(),
            stages: ranges.len(),
        });
    }
    for (i, a) in names.iter().enumerate() {
        if names[..i].contains(a) {
            return Err(RequesterError::DuplicateProvider(*a));
        }
    }
    let requirement = req.requirement();
    let found: Vec<Option<&OfferView>> = names
        .iter()
        .map(|a| offers.iter().find(|o| o.provider == *a))
        .collect();
    for (stage, (a, o)) in names.iter().zip(&found).enumerate() {
        if let Some(o) = o {
            matching::check(&candidate(o), &requirement).map_err(|reason| {
                RequesterError::Unqualified {
                    stage,
                    provider: *a,
                    reason,
                }
            })?;
        }
    }
    let stages: Vec<PlannedStage> = names
        .iter()
        .zip(&found)
        .zip(&ranges)
        .map(|((a, o), r)| planned(*o, *a, r, layer_ops))
        .collect();
    let known: Option<Vec<&OfferView>> = found
        .iter()
        .map(|o| o.filter(|o| o.offer.speed > 0))
        .collect();
    let (latency_s, bottleneck_s) = match known {
        Some(known) => {
            let pr = problem(&req.coord, &known, layer_ops, boundary_bytes);
            let stages: Vec<partition::Stage> = ranges
                .iter()
                .enumerate()
                .map(|(provider, layers)| partition::Stage {
                    provider,
                    layers: layers.clone(),
                })
                .collect();
            let (l, b) = pr.evaluate(&stages)?;
            (Some(l), Some(b))
        }
        None => (None, None),
    };
    Ok((
        ranges,
        PlanSummary {
            stages,
            latency_s,
            bottleneck_s,
            candidates: names.len(),
            bandwidth_bytes_per_s: ASSUMED_BANDWIDTH_BYTES_PER_S,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split_is_the_balanced_split_of_equal_steps() {
        for n in 1..=12usize {
            for k in 1..=n {
                let even = even_split(n, k).unwrap();
                let balanced = balanced_split(&vec![5; n], k).unwrap();
                let longest = |r: &[Range<usize>]| r.iter().map(|r| r.len()).max().unwrap();
                assert_eq!(longest(&even), longest(&balanced), "n={n} k={k}");
                assert_eq!(even.first().unwrap().start, 0);
                assert_eq!(even.last().unwrap().end, n);
                assert!(even.windows(2).all(|w| w[0].end == w[1].start));
                assert!(even.iter().all(|r| !r.is_empty()));
            }
            assert!(even_split(n, n + 1).is_none());
            assert!(even_split(n, 0).is_none());
        }
    }

    #[test]
    fn balanced_split_minimizes_the_largest_stage() {
        assert_eq!(balanced_split(&[1, 1, 1, 1], 2), Some(vec![0..2, 2..4]));
        assert_eq!(balanced_split(&[10, 1, 1, 1, 1], 2), Some(vec![0..1, 1..5]));
        let one = balanced_split(&[5], 1).unwrap();
        assert_eq!((one.len(), one[0].clone()), (1, 0..1));
        assert_eq!(balanced_split(&[1, 2, 3], 3), Some(vec![0..1, 1..2, 2..3]));
        assert_eq!(balanced_split(&[1, 2, 3], 4), None);
        assert_eq!(balanced_split(&[1, 2, 3], 0), None);
        // Brute force on a small case: no 3-way split has a smaller maximum.
        let ops = [7u64, 2, 9, 4, 4, 1, 8];
        let got = balanced_split(&ops, 3).unwrap();
        let max_of = |r: &[Range<usize>]| {
            r.iter()
                .map(|r| ops[r.clone()].iter().sum::<u64>())
                .max()
                .unwrap()
        };
        let mut best = u64::MAX;
        for a in 1..ops.len() {
            for b in a + 1..ops.len() {
                best = best.min(max_of(&[0..a, a..b, b..ops.len()]));
            }
        }
        assert_eq!(max_of(&got), best);
    }
}
