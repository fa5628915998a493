//! Deterministic market matching: which provider takes which pipeline stage.
//!
//! Providers keep standing offers; a job states requirements. Matching is a
//! pure function of the offers, the requirements and the requester's
//! network coordinate, so every validator picks the same providers.
//!
//! # Qualification ([`check`], [`qualifies`])
//!
//! A candidate qualifies for a job when, in this order (the first failing
//! rule is the reported [`Disqualified`] reason):
//!
//! 1. it has a free slot (`free_capacity > 0`);
//! 2. its price per mega-op is at most the job's `max_price`;
//! 3. its reputation is at least `min_reputation_ppm`;
//! 4. its bonded stake is at least `min_stake`;
//! 5. its region is one of `regions` (an empty list accepts any region);
//! 6. it has every capability bit the job asks for.
//!
//! # Ranking ([`rank`], [`effective_price`])
//!
//! Qualified candidates are ordered by an *effective price*: the offered
//! price, discounted for reputation and surcharged for latency from the
//! point the stage's input comes from (the requester for stage 0, the
//! previous stage's provider otherwise):
//!
//! ```text
//!   discount  = reputation_ppm · reputation_discount_ppm / 10^6         (ppm)
//!   surcharge = rtt_us · latency_ppm_per_ms / 1000                       (ppm)
//!   effective = price · (10^6 − discount) / 10^6 · (10^6 + surcharge) / 10^6
//! ```
//!
//! (floors, saturating at `u128::MAX`). With the defaults a perfect
//! reputation is worth 20% of price, and every millisecond of RTT costs
//! 0.1%. Ties go to the nearer candidate, then to the smaller id, so the
//! order is total and independent of the input order.
//!
//! # Pipelines ([`assign_stages`])
//!
//! A job of `k` stages gets `k` distinct providers, chosen greedily stage by
//! stage: stage 0 is the best candidate as seen from the requester, stage
//! `i` the best remaining one as seen from stage `i − 1`'s provider. Greedy
//! is not globally optimal (it ignores the return trip and what an early
//! pick costs later stages); requesters who want the optimum compute it
//! off-chain with the compute partitioner and name the providers, and the
//! ledger only checks that such a placement is valid
//! ([`validate_placement`]). The ledger never runs the partitioner.
//!
//! # Draws ([`draw_by_stake`])
//!
//! Auditors and replicas after the first are not ranked but drawn from the
//! block beacon among the qualified candidates, weighted by stake, so that
//! nobody can arrange to audit or replicate its own work by offering the
//! lowest price, and a coalition's odds are its share of qualified stake.
//!
//! Everything is integer arithmetic over slices: no hashing, no floats, no
//! iteration over unordered maps.

use crate::coord::Coord;

/// One whole, in parts per million.
const PPM: u64 = 1_000_000;

/// A provider's standing offer as the matcher sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Candidate<Id> {
    /// The provider.
    pub id: Id,
    /// Price per mega-op (base units).
    pub price: u128,
    /// Current reputation score (ppm).
    pub reputation_ppm: u32,
    /// Network coordinate.
    pub coord: Coord,
    /// Bonded stake (base units).
    pub stake: u128,
    /// Stage slots it can still take.
    pub free_capacity: u32,
    /// Region code.
    pub region: u16,
    /// Capability bits.
    pub capabilities: u64,
}

/// What a job asks of its providers.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requirement {
    /// Highest acceptable price per mega-op.
    pub max_price: u128,
    /// Lowest acceptable reputation (ppm).
    pub min_reputation_ppm: u32,
    /// Lowest acceptable bonded stake.
    pub min_stake: u128,
    /// Acceptable regions (empty: any).
    pub regions: Vec<u16>,
    /// Capability bits every provider must have.
    pub capabilities: u64,
    /// The requester's network coordinate (where stage 0's input comes from).
    pub requester: Coord,
}

/// Alias kept for callers that use the plural name.
pub type Requirements = Requirement;

/// How the ranking trades price against reputation and latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MatchWeights {
    /// Price discount (ppm) for a perfect reputation, scaled by reputation.
    pub reputation_discount_ppm: u32,
    /// Price surcharge (ppm) per millisecond of RTT from the input's source.
    pub latency_ppm_per_ms: u32,
}

impl Default for MatchWeights {
    fn default() -> Self {
        Self {
            reputation_discount_ppm: 200_000,
            latency_ppm_per_ms: 1_000,
        }
    }
}

/// Why a candidate does not qualify (the first failing rule).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum Disqualified {
    /// No free slot.
    #[error("no free capacity")]
    NoCapacity,
    /// Price above the job's maximum.
    #[error("price {price} above the maximum {max}")]
    PriceTooHigh {
        /// Offered price.
        price: u128,
        /// Job's maximum.
        max: u128,
    },
    /// Reputation below the job's minimum.
    #[error("reputation {reputation_ppm} ppm below the minimum {min_ppm} ppm")]
    ReputationTooLow {
        /// Candidate's score.
        reputation_ppm: u32,
        /// Job's minimum.
        min_ppm: u32,
    },
    /// Stake below the job's minimum.
    #[error("stake {stake} below the minimum {min}")]
    StakeTooLow {
        /// Candidate's stake.
        stake: u128,
        /// Job's minimum.
        min: u128,
    },
    /// Region not accepted.
    #[error("region {0} not accepted")]
    WrongRegion(u16),
    /// Required capability bits missing.
    #[error("missing capabilities {missing:#x}")]
    MissingCapabilities {
        /// The bits required but not offered.
        missing: u64,
    },
}

/// Why stages cannot be assigned or a placement is invalid.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum MatchError {
    /// A job needs at least one stage.
    #[error("a job needs at least one stage")]
    NoStages,
    /// Not enough distinct qualified providers for every stage.
    #[error("no qualified provider left for stage {stage}")]
    NotEnoughProviders {
        /// The first stage left without a provider.
        stage: u32,
    },
    /// A named provider is not among the candidates.
    #[error("stage {stage}: unknown provider")]
    UnknownProvider {
        /// The stage.
        stage: u32,
    },
    /// A named provider appears twice.
    #[error("stage {stage}: provider already used by an earlier stage")]
    DuplicateProvider {
        /// The later stage.
        stage: u32,
    },
    /// A named provider does not qualify.
    #[error("stage {stage}: {reason}")]
    Disqualified {
        /// The stage.
        stage: u32,
        /// Why.
        reason: Disqualified,
    },
}

/// Checks the qualification rules in order (see the module docs).
pub fn check<Id>(c: &Candidate<Id>, req: &Requirement) -> Result<(), Disqualified> {
    if c.free_capacity == 0 {
        return Err(Disqualified::NoCapacity);
    }
    if c.price > req.max_price {
        return Err(Disqualified::PriceTooHigh {
            price: c.price,
            max: req.max_price,
        });
    }
    if c.reputation_ppm < req.min_reputation_ppm {
        return Err(Disqualified::ReputationTooLow {
            reputation_ppm: c.reputation_ppm,
            min_ppm: req.min_reputation_ppm,
        });
    }
    if c.stake < req.min_stake {
        return Err(Disqualified::StakeTooLow {
            stake: c.stake,
            min: req.min_stake,
        });
    }
    if !req.regions.is_empty() && !req.regions.contains(&c.region) {
        return Err(Disqualified::WrongRegion(c.region));
    }
    let missing = req.capabilities & !c.capabilities;
    if missing != 0 {
        return Err(Disqualified::MissingCapabilities { missing });
    }
    Ok(())
}

/// Whether the candidate qualifies ([`check`] without the reason).
pub fn qualifies<Id>(c: &Candidate<Id>, req: &Requirement) -> bool {
    check(c, req).is_ok()
}

/// `floor(a · b / c)` for `c > 0`, exact unless it saturates at `u128::MAX`.
fn mul_div(a: u128, b: u64, c: u64) -> u128 {
    if c == 0 {
        return u128::MAX;
    }
    let (b, c) = (u128::from(b), u128::from(c));
    let (q, r) = (a / c, a % c);
    // r < c < 2^64 and b < 2^64: r · b fits.
    q.saturating_mul(b).saturating_add(r * b / c)
}

/// The ranking price of `c` for a stage whose input comes from `from`.
pub fn effective_price<Id>(c: &Candidate<Id>, from: &Coord, weights: &MatchWeights) -> u128 {
    let reputation = u64::from(c.reputation_ppm).min(PPM);
    let discount = reputation * u64::from(weights.reputation_discount_ppm).min(PPM) / PPM;
    let rtt_us = u128::from(c.coord.distance_us(from));
    let surcharge = rtt_us.saturating_mul(u128::from(weights.latency_ppm_per_ms)) / 1_000;
    let surcharge = u64::try_from(surcharge).unwrap_or(u64::MAX);
    let discounted = mul_div(c.price, PPM - discount, PPM);
    mul_div(discounted, PPM.saturating_add(surcharge), PPM)
}

/// The lowest effective price any candidate offering `price` can have: a
/// perfect reputation and no latency. [`effective_price`] is monotone in the
/// discount and never below the discounted price, so a scan in ascending
/// offered price may stop once this bound exceeds the best key found (the
/// offer index's branch and bound).
pub fn effective_price_floor(price: u128, weights: &MatchWeights) -> u128 {
    let discount = u64::from(weights.reputation_discount_ppm).min(PPM);
    mul_div(price, PPM - discount, PPM)
}

/// The total order of the ranking: effective price, then distance, then id.
pub fn rank_key<Id: Ord + Copy>(
    c: &Candidate<Id>,
    from: &Coord,
    weights: &MatchWeights,
) -> (u128, u64, Id) {
    (
        effective_price(c, from, weights),
        c.coord.distance_us(from),
        c.id,
    )
}

/// Qualified candidates, best first, for a stage whose input comes from `from`.
pub fn rank<Id: Ord + Copy>(
    candidates: &[Candidate<Id>],
    req: &Requirement,
    from: &Coord,
    weights: &MatchWeights,
) -> Vec<Id> {
    let mut keyed: Vec<(u128, u64, Id)> = candidates
        .iter()
        .filter(|c| qualifies(c, req))
        .map(|c| rank_key(c, from, weights))
        .collect();
    keyed.sort_unstable();
    // Equal ids with different offers cannot both be ranked: keep the first.
    let mut out: Vec<Id> = Vec::with_capacity(keyed.len());
    for (_, _, id) in keyed {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// The best qualified candidate not in `exclude`, for a stage whose input
/// comes from `from`.
pub fn best_from<Id: Ord + Copy>(
    candidates: &[Candidate<Id>],
    req: &Requirement,
    exclude: &[Id],
    from: &Coord,
    weights: &MatchWeights,
) -> Option<Id> {
    candidates
        .iter()
        .filter(|c| !exclude.contains(&c.id) && qualifies(c, req))
        .map(|c| rank_key(c, from, weights))
        .min()
        .map(|(_, _, id)| id)
}

/// The best qualified candidate not in `exclude` as seen from the requester,
/// with the default [`MatchWeights`].
pub fn best<Id: Ord + Copy>(
    candidates: &[Candidate<Id>],
    req: &Requirement,
    exclude: &[Id],
) -> Option<Id> {
    best_from(
        candidates,
        req,
        exclude,
        &req.requester,
        &MatchWeights::default(),
    )
}

/// A qualified candidate not in `exclude`, drawn with probability
/// proportional to its stake: the candidates are taken in the slice's order
/// (callers pass them in address order), and the draw is
/// `u128(seed[..16]) mod Σ stake` located on the cumulative stakes.
///
/// This is how auditors and replicas beyond the first are chosen: splitting
/// a stake over many identities does not raise its odds, and a coalition is
/// drawn with the probability of its share of qualified stake (the modulo
/// bias is below `Σ stake / 2^128`). `None` when nobody qualifies.
pub fn draw_by_stake<Id: Ord + Copy>(
    candidates: &[Candidate<Id>],
    req: &Requirement,
    exclude: &[Id],
    seed: &[u8; 32],
) -> Option<Id> {
    let eligible = || {
        candidates
            .iter()
            .filter(|c| c.stake > 0 && !exclude.contains(&c.id) && qualifies(c, req))
    };
    let total = eligible().try_fold(0u128, |t, c| t.checked_add(c.stake))?;
    if total == 0 {
        return None;
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&seed[..16]);
    let mut point = u128::from_le_bytes(b) % total;
    for c in eligible() {
        if point < c.stake {
            return Some(c.id);
        }
        point -= c.stake;
    }
    None
}

/// One distinct qualified provider per stage, greedily (see the module docs).
pub fn assign_stages<Id: Ord + Copy>(
    candidates: &[Candidate<Id>],
    req: &Requirement,
    stages: usize,
    exclude: &[Id],
    weights: &MatchWeights,
) -> Result<Vec<Id>, MatchError> {
    if stages == 0 {
        return Err(MatchError::NoStages);
    }
    let mut used: Vec<Id> = exclude.to_vec();
    let mut out: Vec<Id> = Vec::with_capacity(stages.min(candidates.len()));
    let mut from = req.requester;
    for stage in 0..stages {
        let stage_no = u32::try_from(stage).unwrap_or(u32::MAX);
        let id = best_from(candidates, req, &used, &from, weights)
            .ok_or(MatchError::NotEnoughProviders { stage: stage_no })?;
        from = candidates
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.coord)
            .unwrap_or(from);
        used.push(id);
        out.push(id);
    }
    Ok(out)
}

/// Checks a requester-named placement: every provider exists, qualifies
/// (free capacity included), and appears once.
pub fn validate_placement<Id: Ord + Copy>(
    candidates: &[Candidate<Id>],
    req: &Requirement,
    placement: &[Id],
) -> Result<(), MatchError> {
    if placement.is_empty() {
        return Err(MatchError::NoStages);
    }
    for (i, id) in placement.iter().enumerate() {
        let stage = u32::try_from(i).unwrap_or(u32::MAX);
        if placement[..i].contains(id) {
            return Err(MatchError::DuplicateProvider { stage });
        }
        let c = candidates
            .iter()
            .find(|c| c.id == *id)
            .ok_or(MatchError::UnknownProvider { stage })?;
        check(c, req).map_err(|reason| MatchError::Disqualified { stage, reason })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cand(id: u32, price: u128) -> Candidate<u32> {
        Candidate {
            id,
            price,
            reputation_ppm: 500_000,
            coord: Coord::ORIGIN,
            stake: 1_000,
            free_capacity: 1,
            region: 1,
            capabilities: 0b11,
        }
    }

    fn req() -> Requirement {
        Requirement {
            max_price: 1_000,
            min_reputation_ppm: 0,
            min_stake: 0,
            regions: vec![],
            capabilities: 0,
            requester: Coord::ORIGIN,
        }
    }

    const W: MatchWeights = MatchWeights {
        reputation_discount_ppm: 200_000,
        latency_ppm_per_ms: 1_000,
    };

    #[test]
    fn cheaper_wins() {
        let cs = [cand(1, 120), cand(2, 100), cand(3, 110)];
        assert_eq!(rank(&cs, &req(), &Coord::ORIGIN, &W), vec![2, 3, 1]);
        assert_eq!(best(&cs, &req(), &[]), Some(2));
        assert_eq!(best(&cs, &req(), &[2]), Some(3));
    }

    #[test]
    fn higher_reputation_wins_at_equal_price() {
        let mut a = cand(1, 100);
        a.reputation_ppm = 400_000;
        let mut b = cand(2, 100);
        b.reputation_ppm = 900_000;
        assert_eq!(
            rank(&[a.clone(), b.clone()], &req(), &Coord::ORIGIN, &W),
            vec![2, 1]
        );
        // A perfect reputation is worth 20%: 100 vs 80.
        b.reputation_ppm = 1_000_000;
        assert_eq!(effective_price(&b, &Coord::ORIGIN, &W), 80);
        // ... so it beats a 15% cheaper newcomer but not a 25% cheaper one.
        let mut c = cand(3, 85);
        c.reputation_ppm = 0;
        assert_eq!(
            best_from(&[b.clone(), c.clone()], &req(), &[], &Coord::ORIGIN, &W),
            Some(2)
        );
        c.price = 75;
        assert_eq!(best_from(&[b, c], &req(), &[], &Coord::ORIGIN, &W), Some(3));
    }

    #[test]
    fn nearer_wins_at_equal_price() {
        let mut far = cand(1, 100);
        far.reputation_ppm = 0;
        far.coord = Coord::new(100_000, 0, 0); // 100 ms
        let mut near = cand(2, 100);
        near.reputation_ppm = 0;
        near.coord = Coord::new(5_000, 0, 0); // 5 ms
        assert_eq!(
            rank(&[far.clone(), near.clone()], &req(), &Coord::ORIGIN, &W),
            vec![2, 1]
        );
        // 100 ms costs 10%: a far provider must be >10% cheaper to win.
        assert_eq!(effective_price(&far, &Coord::ORIGIN, &W), 110);
        far.price = 90; // 99 vs 100 (5 ms costs 0.5%)
        assert_eq!(
            rank(&[far.clone(), near.clone()], &req(), &Coord::ORIGIN, &W),
            vec![1, 2]
        );
        // Even with latency weight 0, distance breaks the tie.
        let flat = MatchWeights {
            latency_ppm_per_ms: 0,
            ..W
        };
        far.price = 100;
        assert_eq!(
            rank(&[far, near], &req(), &Coord::ORIGIN, &flat),
            vec![2, 1]
        );
    }

    #[test]
    fn ties_break_by_id() {
        let cs = [cand(9, 100), cand(3, 100), cand(5, 100)];
        assert_eq!(rank(&cs, &req(), &Coord::ORIGIN, &W), vec![3, 5, 9]);
    }

    #[test]
    fn disqualification_reasons() {
        let r = Requirement {
            max_price: 100,
            min_reputation_ppm: 600_000,
            min_stake: 500,
            regions: vec![1, 2],
            capabilities: 0b101,
            requester: Coord::ORIGIN,
        };
        let mut c = cand(1, 100);
        c.reputation_ppm = 600_000;
        c.capabilities = 0b111;
        assert_eq!(check(&c, &r), Ok(()));
        let mut x = c.clone();
        x.free_capacity = 0;
        assert_eq!(check(&x, &r), Err(Disqualified::NoCapacity));
        let mut x = c.clone();
        x.price = 101;
        assert_eq!(
            check(&x, &r),
            Err(Disqualified::PriceTooHigh {
                price: 101,
                max: 100
            })
        );
        let mut x = c.clone();
        x.reputation_ppm = 599_999;
        assert!(matches!(
            check(&x, &r),
            Err(Disqualified::ReputationTooLow { .. })
        ));
        let mut x = c.clone();
        x.stake = 499;
        assert!(matches!(
            check(&x, &r),
            Err(Disqualified::StakeTooLow { .. })
        ));
        let mut x = c.clone();
        x.region = 3;
        assert_eq!(check(&x, &r), Err(Disqualified::WrongRegion(3)));
        let mut x = c.clone();
        x.capabilities = 0b011;
        assert_eq!(
            check(&x, &r),
            Err(Disqualified::MissingCapabilities { missing: 0b100 })
        );
        // Disqualified candidates are never ranked, even when cheapest.
        let mut cheap = c.clone();
        cheap.id = 2;
        cheap.price = 1;
        cheap.region = 9;
        assert_eq!(rank(&[c, cheap], &r, &Coord::ORIGIN, &W), vec![1]);
    }

    #[test]
    fn stages_follow_the_pipeline() {
        // Requester at 0; providers on a line. Stage 0 picks the nearest to
        // the requester, stage 1 the nearest to stage 0, etc.
        let mut cs: Vec<Candidate<u32>> = (0..4)
            .map(|i| {
                let mut c = cand(i, 100);
                c.coord = Coord::new(i as i32 * 20_000, 0, 0);
                c
            })
            .collect();
        cs.reverse();
        let r = req();
        assert_eq!(assign_stages(&cs, &r, 3, &[], &W), Ok(vec![0, 1, 2]));
        assert_eq!(assign_stages(&cs, &r, 3, &[1], &W), Ok(vec![0, 2, 3]));
        assert_eq!(
            assign_stages(&cs, &r, 5, &[], &W),
            Err(MatchError::NotEnoughProviders { stage: 4 })
        );
        assert_eq!(
            assign_stages(&cs, &r, 0, &[], &W),
            Err(MatchError::NoStages)
        );
    }

    #[test]
    fn placements_are_validated() {
        let mut cs = vec![cand(1, 100), cand(2, 100), cand(3, 2_000)];
        cs[1].free_capacity = 0;
        let r = req();
        assert_eq!(validate_placement(&cs, &r, &[1]), Ok(()));
        assert_eq!(validate_placement(&cs, &r, &[]), Err(MatchError::NoStages));
        assert_eq!(
            validate_placement(&cs, &r, &[1, 1]),
            Err(MatchError::DuplicateProvider { stage: 1 })
        );
        assert_eq!(
            validate_placement(&cs, &r, &[1, 7]),
            Err(MatchError::UnknownProvider { stage: 1 })
        );
        assert_eq!(
            validate_placement(&cs, &r, &[2]),
            Err(MatchError::Disqualified {
                stage: 0,
                reason: Disqualified::NoCapacity
            })
        );
        assert!(matches!(
            validate_placement(&cs, &r, &[1, 3]),
            Err(MatchError::Disqualified {
                stage: 1,
                reason: Disqualified::PriceTooHigh { .. }
            })
        ));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let mut c = cand(1, u128::MAX);
        c.coord = Coord::new(i32::MAX, i32::MAX, u32::MAX);
        let w = MatchWeights {
            reputation_discount_ppm: u32::MAX,
            latency_ppm_per_ms: u32::MAX,
        };
        let r = Requirement {
            max_price: u128::MAX,
            requester: Coord::new(i32::MIN, i32::MIN, u32::MAX),
            ..req()
        };
        // Reputation 50% with a (clamped) 100% discount weight halves the price.
        let no_latency = MatchWeights {
            latency_ppm_per_ms: 0,
            ..w
        };
        assert_eq!(
            effective_price(&c, &r.requester, &no_latency),
            u128::MAX / 2
        );
        // The latency surcharge saturates.
        assert_eq!(effective_price(&c, &r.requester, &w), u128::MAX);
        assert_eq!(rank(&[c], &r, &r.requester, &w), vec![1]);
    }

    fn candidate() -> impl Strategy<Value = Candidate<u32>> {
        (
            0u32..40,
            0u128..200,
            0u32..=1_000_000,
            (-50_000i32..50_000, -50_000i32..50_000, 0u32..2_000),
            0u128..2_000,
            0u32..3,
            0u16..4,
            0u64..8,
        )
            .prop_map(
                |(id, price, rep, (x, y, h), stake, cap, region, caps)| Candidate {
                    id,
                    price,
                    reputation_ppm: rep,
                    coord: Coord::new(x, y, h),
                    stake,
                    free_capacity: cap,
                    region,
                    capabilities: caps,
                },
            )
    }

    proptest! {
        /// Shuffling the candidates never changes the outcome.
        #[test]
        fn deterministic_under_permutation(
            cs in proptest::collection::vec(candidate(), 0..24),
            seed in any::<u64>(),
            stages in 1usize..5,
            max_price in 0u128..250,
            regions in proptest::collection::vec(0u16..4, 0..3),
            caps in 0u64..4,
        ) {
            // Unique ids (the ledger's candidates are unique providers).
            let mut cs = cs;
            cs.sort_by_key(|c| c.id);
            cs.dedup_by_key(|c| c.id);
            let r = Requirement { max_price, min_reputation_ppm: 100_000, min_stake: 100, regions, capabilities: caps, requester: Coord::new(1_000, -2_000, 50) };
            let mut shuffled = cs.clone();
            // Fisher–Yates with a fixed PRNG.
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let ranked = rank(&cs, &r, &r.requester, &W);
            prop_assert_eq!(&ranked, &rank(&shuffled, &r, &r.requester, &W));
            prop_assert_eq!(assign_stages(&cs, &r, stages, &[], &W), assign_stages(&shuffled, &r, stages, &[], &W));
            prop_assert_eq!(best(&cs, &r, &[]), best(&shuffled, &r, &[]));
            // Everything ranked qualifies; everything qualifying is ranked.
            for c in &cs {
                prop_assert_eq!(qualifies(c, &r), ranked.contains(&c.id));
            }
            prop_assert_eq!(best(&cs, &r, &[]), ranked.first().copied());
            // Any assignment is a valid placement of distinct qualified providers.
            if let Ok(p) = assign_stages(&cs, &r, stages, &[], &W) {
                prop_assert_eq!(p.len(), stages);
                prop_assert_eq!(validate_placement(&cs, &r, &p), Ok(()));
            }
        }
    }
}
