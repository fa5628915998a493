//! Provider reputation: a value-weighted, time-decayed, stake-bounded Beta score.
//!
//! # The score
//!
//! A provider's record is two weights, measured in token base units of job
//! value: `success` (value of work completed and not successfully challenged)
//! and `failure` (value of work failed, missed, or slashed). Like the mean of
//! a Beta(α, β) distribution with a prior, the score is
//!
//! ```text
//!                      min(success, cap) + prior_success
//!   score = ─────────────────────────────────────────────────────────────   (in ppm)
//!            min(success, cap) + failure + prior_success + prior_failure
//! ```
//!
//! - **Value-weighted**: a 1,000-token job moves the score 1,000× as much as
//!   a 1-token job, so many tiny honest jobs do not buy trust for one big one.
//! - **Prior**: a newcomer scores `prior_success / (prior_success + prior_failure)`
//!   and the prior weights say how much evidence it takes to move away from it.
//! - **Slashes** count `slash_weight` times their value as failure: fraud is
//!   worse than failing.
//!
//! # Decay
//!
//! Both weights lose half their value every `half_life_blocks`, so the score
//! drifts back to the prior when a provider stops working and recent
//! behaviour dominates old behaviour. Exactly, for `e` elapsed blocks with
//! `e = q·H + r` (`H` = half-life, `0 ≤ r < H`):
//!
//! ```text
//!   w' = w >> q                          (whole half-lives: exact halvings)
//!   w'' = w' − floor(w' · r / (2H))      (within one: linear from w' to w'/2)
//! ```
//!
//! The linear segment is the chord of `2^(−r/H)` (it lies above the
//! exponential by at most 4.3% of `w'`; the floor rounds toward less weight);
//! it is integer-only, identical on every machine, and never increases with
//! elapsed time (also across half-life boundaries). Decay is applied lazily: a record stores the height it was last
//! brought up to date, and every update or read first decays to the current
//! height. Because of rounding, decaying in two steps can give a result at
//! most a few units lower than in one; the ledger always decays at the
//! heights where records change, so every node computes the same numbers.
//!
//! # Stake bound
//!
//! Reputation must not be farmable with little at stake (e.g. by a provider
//! buying its own jobs). The success weight that counts is capped by the
//! provider's **current** bonded stake:
//!
//! ```text
//!   cap = stake × 10^6 / stake_per_value_ppm
//! ```
//!
//! i.e. each unit of credited success value must be backed by
//! `stake_per_value_ppm / 10^6` units of stake (with the default 10^6: one
//! for one). With the priors `a`, `b`, the best score a provider can reach is
//! `(cap + a) / (cap + a + b)`: reaching 99% needs `cap ≈ 99·b`. Failures are
//! never capped, and unbonding lowers the score at once. `stake_per_value_ppm
//! = 0` disables the bound.
//!
//! # Arithmetic
//!
//! Everything is `u128`/`u64` integer math: additions saturate, the ratio is
//! computed after shifting all terms right just enough to avoid overflow, so
//! no input (up to `u128::MAX` weights) can panic or wrap. Below 2^108 in
//! total weight the score is the exact floor of the ratio; above, the shifts
//! may cost 1 ppm.

use bytes::BufMut;
use commonware_codec::{Buf, Error as CodecError, FixedSize, Read, ReadExt, Write};

/// One whole, in parts per million.
pub const PPM: u32 = 1_000_000;

/// Parameters of the reputation score (set by governance).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ReputationParams {
    /// Blocks for a weight to lose half its value (0 disables decay).
    pub half_life_blocks: u64,
    /// Prior success weight (pseudo-count in value units; JSON: a decimal string).
    #[serde(with = "crate::types::decimal_u128")]
    pub prior_success: u128,
    /// Prior failure weight (pseudo-count in value units; JSON: a decimal string).
    #[serde(with = "crate::types::decimal_u128")]
    pub prior_failure: u128,
    /// Multiplier of a slashed job's value when counted as failure.
    pub slash_weight: u32,
    /// Stake (ppm) that must back each unit of credited success value (0: no bound).
    pub stake_per_value_ppm: u32,
}

impl Default for ReputationParams {
    fn default() -> Self {
        Self {
            half_life_blocks: 10_000,
            prior_success: 1_000,
            prior_failure: 1_000,
            slash_weight: 4,
            stake_per_value_ppm: PPM,
        }
    }
}

impl ReputationParams {
    /// The score of a provider with no history, in ppm.
    pub fn prior_ppm(&self) -> u32 {
        ratio_ppm(0, 0, self.prior_success, self.prior_failure)
    }

    /// The success weight `stake` can back (see the module docs).
    pub fn success_cap(&self, stake: u128) -> u128 {
        if self.stake_per_value_ppm == 0 {
            return u128::MAX;
        }
        mul_div_floor(stake, u64::from(PPM), u64::from(self.stake_per_value_ppm))
    }
}

/// A provider's reputation record.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Reputation {
    /// Success weight, decayed to `last_height` (JSON: a decimal string).
    #[serde(with = "crate::types::decimal_u128")]
    pub success: u128,
    /// Failure weight, decayed to `last_height` (JSON: a decimal string).
    #[serde(with = "crate::types::decimal_u128")]
    pub failure: u128,
    /// Height the weights were last decayed to.
    pub last_height: u64,
}

impl Reputation {
    /// A fresh record at `height` (scores the prior).
    pub fn new(height: u64) -> Self {
        Self {
            success: 0,
            failure: 0,
            last_height: height,
        }
    }

    /// The weights decayed to `height` (no change if `height` is not later).
    pub fn decayed(&self, height: u64, params: &ReputationParams) -> (u128, u128) {
        let elapsed = height.saturating_sub(self.last_height);
        (
            decay(self.success, elapsed, params.half_life_blocks),
            decay(self.failure, elapsed, params.half_life_blocks),
        )
    }

    fn advance(&mut self, height: u64, params: &ReputationParams) {
        let (s, f) = self.decayed(height, params);
        self.success = s;
        self.failure = f;
        self.last_height = self.last_height.max(height);
    }

    /// Records work of `value` completed successfully at `height`.
    pub fn record_success(&mut self, value: u128, height: u64, params: &ReputationParams) {
        self.advance(height, params);
        self.success = self.success.saturating_add(value);
    }

    /// Records work of `value` failed or missed at `height`.
    pub fn record_failure(&mut self, value: u128, height: u64, params: &ReputationParams) {
        self.advance(height, params);
        self.failure = self.failure.saturating_add(value);
    }

    /// Records a slash over work of `value` at `height` (counts `slash_weight ×` as failure).
    pub fn record_slash(&mut self, value: u128, height: u64, params: &ReputationParams) {
        self.advance(height, params);
        let weight = value.saturating_mul(u128::from(params.slash_weight));
        self.failure = self.failure.saturating_add(weight);
    }

    /// The score in ppm at `height` for a provider with bonded `stake`.
    pub fn score_ppm(&self, height: u64, stake: u128, params: &ReputationParams) -> u32 {
        let (s, f) = self.decayed(height, params);
        let s = s.min(params.success_cap(stake));
        ratio_ppm(s, f, params.prior_success, params.prior_failure)
    }
}

/// Decays `w` over `elapsed` blocks with half-life `half_life` (see module docs).
fn decay(w: u128, elapsed: u64, half_life: u64) -> u128 {
    if half_life == 0 || elapsed == 0 || w == 0 {
        return w;
    }
    let halvings = elapsed / half_life;
    if halvings >= 128 {
        return 0;
    }
    let w = w >> halvings;
    let rem = elapsed % half_life;
    // floor(w · rem / (2H)) = floor(floor(w · rem / H) / 2), and rem < H keeps it ≤ w / 2.
    w - mul_div_floor(w, rem, half_life) / 2
}

/// `floor(a · b / c)` for `u64` `b`, `c` (`c > 0`), saturating at `u128::MAX`.
fn mul_div_floor(a: u128, b: u64, c: u64) -> u128 {
    if c == 0 {
        return u128::MAX;
    }
    let (b, c) = (u128::from(b), u128::from(c));
    let q = a / c;
    let r = a % c;
    // r < 2^64, b < 2^64: r·b fits.
    q.saturating_mul(b).saturating_add(r * b / c)
}

/// `(s + a) · 10^6 / (s + f + a + b)`, computed without overflow; 0 when the
/// denominator is 0.
fn ratio_ppm(s: u128, f: u128, a: u128, b: u128) -> u32 {
    // Shift all four terms right by 2 at most so that their sum fits.
    let mut terms = [s, f, a, b];
    let mut shift = 0;
    loop {
        let sum = terms
            .iter()
            .try_fold(0u128, |acc, t| acc.checked_add(t >> shift));
        if sum.is_some() || shift >= 2 {
            break;
        }
        shift += 1;
    }
    for t in terms.iter_mut() {
        *t >>= shift;
    }
    let [s, f, a, b] = terms;
    let num = s.saturating_add(a);
    let den = num.saturating_add(f).saturating_add(b);
    if den == 0 {
        return 0;
    }
    // Make room for the ×10^6 (2^20 > 10^6).
    let (num, den) = if den > u128::MAX >> 20 {
        (num >> 20, (den >> 20).max(1))
    } else {
        (num, den)
    };
    let ppm = num * u128::from(PPM) / den;
    u32::try_from(ppm.min(u128::from(PPM))).unwrap_or(PPM)
}

impl Write for Reputation {
    fn write(&self, buf: &mut impl BufMut) {
        self.success.write(buf);
        self.failure.write(buf);
        self.last_height.write(buf);
    }
}

impl Read for Reputation {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            success: u128::read(buf)?,
            failure: u128::read(buf)?,
            last_height: u64::read(buf)?,
        })
    }
}

impl FixedSize for Reputation {
    const SIZE: usize = 2 * u128::SIZE + u64::SIZE;
}

impl Write for ReputationParams {
    fn write(&self, buf: &mut impl BufMut) {
        self.half_life_blocks.write(buf);
        self.prior_success.write(buf);
        self.prior_failure.write(buf);
        self.slash_weight.write(buf);
        self.stake_per_value_ppm.write(buf);
    }
}

impl Read for ReputationParams {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            half_life_blocks: u64::read(buf)?,
            prior_success: u128::read(buf)?,
            prior_failure: u128::read(buf)?,
            slash_weight: u32::read(buf)?,
            stake_per_value_ppm: u32::read(buf)?,
        })
    }
}

impl FixedSize for ReputationParams {
    const SIZE: usize = u64::SIZE + 2 * u128::SIZE + 2 * u32::SIZE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};
    use proptest::prelude::*;

    const BIG_STAKE: u128 = u128::MAX;

    fn params() -> ReputationParams {
        ReputationParams::default()
    }

    #[test]
    fn newcomer_scores_the_prior() {
        let p = params();
        assert_eq!(p.prior_ppm(), 500_000);
        assert_eq!(Reputation::new(7).score_ppm(1_000, BIG_STAKE, &p), 500_000);
        let skewed = ReputationParams {
            prior_success: 1,
            prior_failure: 3,
            ..p
        };
        assert_eq!(Reputation::default().score_ppm(0, 0, &skewed), 250_000);
    }

    #[test]
    fn known_values() {
        let p = params();
        let mut r = Reputation::new(0);
        r.record_success(3_000, 0, &p);
        // (3000 + 1000) / (3000 + 1000 + 1000) = 0.8
        assert_eq!(r.score_ppm(0, BIG_STAKE, &p), 800_000);
        r.record_slash(500, 0, &p);
        // failure += 2000: 4000 / 7000
        assert_eq!(r.score_ppm(0, BIG_STAKE, &p), 571_428);
    }

    #[test]
    fn success_raises_failure_and_slash_lower() {
        let p = params();
        let mut r = Reputation::new(0);
        r.record_success(10_000, 0, &p);
        r.record_failure(2_000, 0, &p);
        let base = r.score_ppm(10, BIG_STAKE, &p);
        let mut up = r;
        up.record_success(5_000, 10, &p);
        assert!(up.score_ppm(10, BIG_STAKE, &p) > base);
        let mut down = r;
        down.record_failure(5_000, 10, &p);
        let failed = down.score_ppm(10, BIG_STAKE, &p);
        assert!(failed < base);
        let mut slashed = r;
        slashed.record_slash(5_000, 10, &p);
        assert!(slashed.score_ppm(10, BIG_STAKE, &p) < failed);
    }

    #[test]
    fn exact_halving_per_half_life() {
        let p = params();
        let mut r = Reputation::new(0);
        r.record_success(1 << 40, 0, &p);
        r.record_failure(1 << 20, 0, &p);
        assert_eq!(r.decayed(10_000, &p), (1 << 39, 1 << 19));
        assert_eq!(r.decayed(30_000, &p), (1 << 37, 1 << 17));
        // Halfway through a half-life: linear chord gives 3/4.
        assert_eq!(r.decayed(5_000, &p), (3 << 38, 3 << 18));
        assert_eq!(r.decayed(15_000, &p), (3 << 37, 3 << 17));
        // Far future: gone.
        assert_eq!(r.decayed(10_000 * 200, &p), (0, 0));
        // Height in the past: unchanged.
        let mut late = r;
        late.last_height = 50;
        assert_eq!(late.decayed(10, &p), (1 << 40, 1 << 20));
    }

    #[test]
    fn decay_moves_toward_the_prior() {
        let p = params();
        let prior = i64::from(p.prior_ppm());
        let mut good = Reputation::new(0);
        good.record_success(1_000_000, 0, &p);
        let mut bad = Reputation::new(0);
        bad.record_failure(1_000_000, 0, &p);
        for r in [good, bad] {
            let mut last = (i64::from(r.score_ppm(0, BIG_STAKE, &p)) - prior).abs();
            for h in (1_000..200_000).step_by(1_000) {
                let gap = (i64::from(r.score_ppm(h, BIG_STAKE, &p)) - prior).abs();
                assert!(gap <= last, "h = {h}");
                last = gap;
            }
            assert!(last < 1_000, "still {last} ppm from the prior");
        }
    }

    #[test]
    fn stake_bounds_the_score() {
        let p = params();
        let mut r = Reputation::new(0);
        r.record_success(1_000_000_000, 0, &p);
        // No stake: success doesn't count.
        assert_eq!(r.score_ppm(0, 0, &p), p.prior_ppm());
        // Stake 1000 backs 1000 of success: (1000+1000)/(1000+2000).
        assert_eq!(r.score_ppm(0, 1_000, &p), 666_666);
        // Scores grow with stake up to the uncapped value.
        let mut last = 0;
        for stake in [
            0u128,
            10,
            1_000,
            100_000,
            10_000_000,
            1_000_000_000,
            BIG_STAKE,
        ] {
            let s = r.score_ppm(0, stake, &p);
            assert!(s >= last);
            last = s;
        }
        assert_eq!(last, r.score_ppm(0, 1_000_000_000, &p));
        // Twice the stake requirement halves the cap.
        let strict = ReputationParams {
            stake_per_value_ppm: 2 * PPM,
            ..p
        };
        assert_eq!(strict.success_cap(1_000), 500);
        assert_eq!(r.score_ppm(0, 2_000, &strict), 666_666);
        // Bound disabled.
        let free = ReputationParams {
            stake_per_value_ppm: 0,
            ..p
        };
        assert_eq!(r.score_ppm(0, 0, &free), r.score_ppm(0, BIG_STAKE, &p));
    }

    #[test]
    fn no_overflow_at_extremes() {
        let p = ReputationParams {
            prior_success: u128::MAX,
            prior_failure: u128::MAX,
            slash_weight: u32::MAX,
            ..params()
        };
        let mut r = Reputation::new(0);
        r.record_success(u128::MAX, 0, &p);
        r.record_success(u128::MAX, 0, &p);
        r.record_slash(u128::MAX, u64::MAX, &p);
        assert_eq!(r.failure, u128::MAX);
        let s = r.score_ppm(u64::MAX, u128::MAX, &p);
        assert!(s <= PPM);
        // All four terms at u128::MAX: one half, within the 1 ppm of rounding
        // that the overflow-avoiding shifts may cost.
        let r = Reputation {
            success: u128::MAX,
            failure: u128::MAX,
            last_height: 0,
        };
        let unbounded = ReputationParams {
            stake_per_value_ppm: 0,
            ..p
        };
        assert!(r.score_ppm(0, 0, &unbounded).abs_diff(500_000) <= 1);
        let zero = ReputationParams {
            prior_success: 0,
            prior_failure: 0,
            ..params()
        };
        assert_eq!(Reputation::default().score_ppm(0, 0, &zero), 0);
    }

    #[test]
    fn codec_roundtrip() {
        let mut r = Reputation::new(3);
        r.record_success(12345, 9, &params());
        assert_eq!(r.encode().len(), Reputation::SIZE);
        assert_eq!(Reputation::decode(r.encode()).unwrap(), r);
        let p = params();
        assert_eq!(ReputationParams::decode(p.encode()).unwrap(), p);
    }

    #[test]
    fn mul_div_is_exact() {
        for (a, b, c) in [
            (1000u128, 3u64, 7u64),
            (u128::MAX, 1, 2),
            (u128::MAX, 5, 10),
            (u128::MAX, 0, 3),
            (u128::MAX - 1, u64::MAX - 1, u64::MAX),
        ] {
            let q = a / u128::from(c);
            let r = a % u128::from(c);
            assert_eq!(
                mul_div_floor(a, b, c),
                q * u128::from(b) + r * u128::from(b) / u128::from(c)
            );
        }
        assert_eq!(mul_div_floor(u128::MAX, 3, 2), u128::MAX);
        assert_eq!(mul_div_floor(5, 3, 0), u128::MAX);
    }

    proptest! {
        #[test]
        fn score_is_bounded_and_monotone(
            s in any::<u128>(), f in any::<u128>(), a in 1u128..=u128::MAX, b in 1u128..=u128::MAX,
            h0 in any::<u64>(), dh in 0u64..1_000_000, half_life in 0u64..100_000,
            value in 1u128..=u128::MAX, stake in any::<u128>(), slash in 0u32..=16,
            ppv in any::<u32>(),
        ) {
            let p = ReputationParams { half_life_blocks: half_life, prior_success: a, prior_failure: b, slash_weight: slash, stake_per_value_ppm: ppv };
            let r = Reputation { success: s, failure: f, last_height: h0 };
            let h = h0.saturating_add(dh);
            let base = r.score_ppm(h, stake, &p);
            prop_assert!(base <= PPM);
            let mut up = r; up.record_success(value, h, &p);
            let mut down = r; down.record_failure(value, h, &p);
            let mut slashed = r; slashed.record_slash(value, h, &p);
            // Rounding may hide a small change, never reverse it by more than a ppm.
            prop_assert!(up.score_ppm(h, stake, &p) + 1 >= base);
            prop_assert!(down.score_ppm(h, stake, &p) <= base + 1);
            prop_assert!(slashed.score_ppm(h, stake, &p) <= base + 1);
            // Decay never increases a weight.
            let (ds, df) = r.decayed(h, &p);
            prop_assert!(ds <= s && df <= f);
        }

        #[test]
        fn decay_is_monotone_in_time(w in any::<u128>(), e1 in 0u64..10_000_000, de in 0u64..10_000_000, hl in 1u64..1_000_000) {
            prop_assert!(decay(w, e1 + de, hl) <= decay(w, e1, hl));
        }
    }
}
