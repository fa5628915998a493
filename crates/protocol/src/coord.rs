//! Network coordinates: Vivaldi with heights, in integer microseconds.
//!
//! Every node keeps a synthetic coordinate such that the distance between
//! two coordinates predicts the round-trip time between the two nodes
//! (Dabek et al., "Vivaldi: A Decentralized Network Coordinate System",
//! SIGCOMM 2004). Providers report their coordinate with their offer, and the
//! market ([`crate::matching`]) uses it to prefer providers near the
//! requester and near the previous pipeline stage, without measuring every
//! pair.
//!
//! # Model
//!
//! A coordinate is a point in the plane plus a *height* (the access-link
//! delay every packet pays, which a plane alone cannot represent):
//!
//! ```text
//!              a = (xa, ya, ha)          b = (xb, yb, hb)
//!
//!   distance(a, b) = floor( sqrt((xa-xb)² + (ya-yb)²) ) + ha + hb     (a ≠ b)
//!   distance(a, a) = 0
//! ```
//!
//! All values are microseconds of round-trip time, `i32`/`u32` (±35 min of
//! range, far beyond any real RTT). The square root is the exact integer
//! floor (`u128::isqrt`), so every node and the ledger compute the same
//! distance bit for bit. `distance` is symmetric, zero on identical
//! coordinates, and satisfies the triangle inequality up to 1 µs of floor
//! rounding (tested).
//!
//! # The update step (off-chain, but reproducible)
//!
//! A node `i` with coordinate `xi` and error estimate `ei` that measures an
//! RTT `rtt` to node `j` (coordinate `xj`, error `ej`) does, with all
//! fractions in ppm:
//!
//! ```text
//!   w     = ei / (ei + ej)                    confidence weight (½ when both 0)
//!   es    = min(|dist(xi,xj) − rtt| / rtt, 1) relative error of this sample
//!   ei   ← es·ce·w + ei·(1 − ce·w)            error moving average
//!   δ     = cc · w                            adaptive timestep
//!   f     = δ · (rtt − dist)                  spring force (µs, signed)
//!   xi   ← xi + f · u(xi − xj)                move along the spring
//! ```
//!
//! where `u(v) = v / ‖v‖` with the height norm `‖(dx, dy, h)‖ = |(dx,dy)| + h`
//! and `xi − xj = (dx, dy, hi + hj)`, so the height grows when the plane
//! cannot explain the delay and shrinks otherwise (never below
//! `min_height_us`). When two nodes sit at the same point, the planar
//! direction is one of eight fixed unit vectors chosen by hashing both
//! coordinates and the RTT (Vivaldi picks a random one; this keeps the step a pure
//! function). Samples with `rtt = 0` or above `max_rtt_us` are ignored.

use bytes::BufMut;
use commonware_codec::{Buf, Error as CodecError, FixedSize, Read, ReadExt, Write};

/// One whole, in parts per million.
const PPM: i128 = 1_000_000;

/// A Vivaldi coordinate in microseconds of round-trip time.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Coord {
    /// Planar x (µs).
    pub x: i32,
    /// Planar y (µs).
    pub y: i32,
    /// Height: access-link delay (µs).
    pub height: u32,
}

impl Coord {
    /// The origin with zero height (every node's starting point).
    pub const ORIGIN: Coord = Coord {
        x: 0,
        y: 0,
        height: 0,
    };

    /// A coordinate from its parts.
    pub const fn new(x: i32, y: i32, height: u32) -> Self {
        Self { x, y, height }
    }

    /// Planar Euclidean distance, floored (µs).
    pub fn planar_us(&self, other: &Coord) -> u64 {
        let dx = i128::from(self.x) - i128::from(other.x);
        let dy = i128::from(self.y) - i128::from(other.y);
        // |dx|, |dy| < 2^32, so dx² + dy² < 2^65: no overflow.
        let sq = (dx * dx + dy * dy).unsigned_abs();
        // isqrt of a value < 2^65 is < 2^33.
        u64::try_from(sq.isqrt()).unwrap_or(u64::MAX)
    }

    /// Predicted round-trip time to `other` (µs); 0 for an identical coordinate.
    pub fn distance_us(&self, other: &Coord) -> u64 {
        if self == other {
            return 0;
        }
        self.planar_us(other)
            .saturating_add(u64::from(self.height))
            .saturating_add(u64::from(other.height))
    }

    /// One Vivaldi step (see the module docs): this node, with error estimate
    /// `error_ppm`, measured `rtt_us` to a node at `remote` with error
    /// `remote_error_ppm`. Updates the coordinate and the error estimate;
    /// returns `false` (and changes nothing) for an unusable sample.
    pub fn vivaldi_update(
        &mut self,
        error_ppm: &mut u32,
        remote: &Coord,
        remote_error_ppm: u32,
        rtt_us: u64,
        params: &VivaldiParams,
    ) -> bool {
        if rtt_us == 0 || rtt_us > params.max_rtt_us {
            return false;
        }
        let rtt = i128::from(rtt_us);
        let ei = i128::from(*error_ppm).min(PPM);
        let ej = i128::from(remote_error_ppm).min(PPM);
        let w = if ei + ej == 0 {
            PPM / 2
        } else {
            ei * PPM / (ei + ej)
        };

        let planar = i128::from(self.planar_us(remote));
        let heights = i128::from(self.height) + i128::from(remote.height);
        let dist = planar + heights;

        // Error estimate.
        let es = ((dist - rtt).abs() * PPM / rtt).min(PPM);
        let ce_w = i128::from(params.ce_ppm).min(PPM) * w / PPM;
        let new_error = (es * ce_w + ei * (PPM - ce_w)) / PPM;
        *error_ppm = u32::try_from(new_error.clamp(0, PPM)).unwrap_or(u32::MAX);

        // Spring force along the unit vector.
        let delta = i128::from(params.cc_ppm).min(PPM) * w / PPM;
        let force = delta * (rtt - dist) / PPM;
        let (dx, dy) = if planar == 0 {
            let (ux, uy) = fallback_direction(self, remote, rtt_us);
            (force * ux / PPM, force * uy / PPM)
        } else {
            let ddx = i128::from(self.x) - i128::from(remote.x);
            let ddy = i128::from(self.y) - i128::from(remote.y);
            (force * ddx / dist, force * ddy / dist)
        };
        let dh = if planar == 0 || dist == 0 {
            0
        } else {
            force * heights / dist
        };
        self.x = clamp_i32(i128::from(self.x) + dx);
        self.y = clamp_i32(i128::from(self.y) + dy);
        let h = (i128::from(self.height) + dh).max(i128::from(params.min_height_us));
        self.height = u32::try_from(h.min(i128::from(u32::MAX))).unwrap_or(u32::MAX);
        true
    }
}

fn clamp_i32(v: i128) -> i32 {
    i32::try_from(v.clamp(i128::from(i32::MIN), i128::from(i32::MAX))).unwrap_or(0)
}

/// Eight unit vectors (ppm) for coincident points.
const DIRECTIONS: [(i128, i128); 8] = [
    (1_000_000, 0),
    (707_107, 707_107),
    (0, 1_000_000),
    (-707_107, 707_107),
    (-1_000_000, 0),
    (-707_107, -707_107),
    (0, -1_000_000),
    (707_107, -707_107),
];

/// A direction chosen by hashing (local, remote, rtt): a pure stand-in for Vivaldi's random one.
fn fallback_direction(local: &Coord, remote: &Coord, rtt_us: u64) -> (i128, i128) {
    let mut h = blake3::Hasher::new();
    h.update(b"agentic/vivaldi/direction");
    h.update(&rtt_us.to_le_bytes());
    for c in [local, remote] {
        h.update(&c.x.to_le_bytes());
        h.update(&c.y.to_le_bytes());
        h.update(&c.height.to_le_bytes());
    }
    let byte = h.finalize().as_bytes()[0];
    DIRECTIONS[usize::from(byte % 8)]
}

/// Tuning of the Vivaldi step (the constants of the paper, in ppm).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct VivaldiParams {
    /// Error moving-average weight `ce` (paper: 0.25).
    pub ce_ppm: u32,
    /// Timestep constant `cc` (paper: 0.25).
    pub cc_ppm: u32,
    /// Lowest height a coordinate may have (µs).
    pub min_height_us: u32,
    /// Samples above this RTT are discarded (µs).
    pub max_rtt_us: u64,
}

impl Default for VivaldiParams {
    fn default() -> Self {
        Self {
            ce_ppm: 250_000,
            cc_ppm: 250_000,
            min_height_us: 10,
            max_rtt_us: 10_000_000,
        }
    }
}

/// A node's off-chain Vivaldi state: its coordinate and error estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct VivaldiNode {
    /// The current coordinate (what gets reported on-chain).
    pub coord: Coord,
    /// Relative error estimate (ppm; starts at 100%).
    pub error_ppm: u32,
}

impl Default for VivaldiNode {
    fn default() -> Self {
        Self {
            coord: Coord::ORIGIN,
            error_ppm: 1_000_000,
        }
    }
}

impl VivaldiNode {
    /// Applies one RTT sample to a remote node (see [`Coord::vivaldi_update`]).
    pub fn observe(&mut self, remote: &VivaldiNode, rtt_us: u64, params: &VivaldiParams) -> bool {
        self.coord.vivaldi_update(
            &mut self.error_ppm,
            &remote.coord,
            remote.error_ppm,
            rtt_us,
            params,
        )
    }
}

impl Write for Coord {
    fn write(&self, buf: &mut impl BufMut) {
        self.x.write(buf);
        self.y.write(buf);
        self.height.write(buf);
    }
}

impl Read for Coord {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            x: i32::read(buf)?,
            y: i32::read(buf)?,
            height: u32::read(buf)?,
        })
    }
}

impl FixedSize for Coord {
    const SIZE: usize = 2 * i32::SIZE + u32::SIZE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};
    use proptest::prelude::*;

    #[test]
    fn known_triangles() {
        let o = Coord::ORIGIN;
        let a = Coord::new(3_000, 4_000, 0);
        assert_eq!(o.distance_us(&a), 5_000);
        assert_eq!(a.distance_us(&o), 5_000);
        let b = Coord::new(-5_000, -12_000, 0);
        assert_eq!(o.distance_us(&b), 13_000);
        // Heights add to every distance but the self-distance.
        let ah = Coord::new(3_000, 4_000, 700);
        let bh = Coord::new(-5_000, -12_000, 300);
        assert_eq!(ah.distance_us(&bh), 17_888 + 1_000);
        assert_eq!(ah.distance_us(&ah), 0);
        // Floor of irrational roots: (1,1) → 1.
        assert_eq!(o.distance_us(&Coord::new(1, 1, 0)), 1);
        // Extreme corners do not overflow.
        let min = Coord::new(i32::MIN, i32::MIN, u32::MAX);
        let max = Coord::new(i32::MAX, i32::MAX, u32::MAX);
        assert_eq!(min.planar_us(&max), 6_074_000_998); // floor(sqrt(2)·(2^32−1))
        assert_eq!(
            min.distance_us(&max),
            6_074_000_998 + 2 * u64::from(u32::MAX)
        );
    }

    #[test]
    fn codec_roundtrip() {
        let c = Coord::new(-123, 456, 789);
        assert_eq!(c.encode().len(), Coord::SIZE);
        assert_eq!(Coord::decode(c.encode()).unwrap(), c);
    }

    #[test]
    fn update_moves_along_the_spring() {
        let p = VivaldiParams::default();
        // Too close: measured 10 ms but predicted 5 ms → move away.
        let mut c = Coord::new(3_000, 4_000, 0);
        let mut e = 1_000_000;
        assert!(c.vivaldi_update(&mut e, &Coord::ORIGIN, 1_000_000, 10_000, &p));
        assert!(c.distance_us(&Coord::ORIGIN) > 5_000);
        assert!(c.x > 3_000 && c.y > 4_000);
        // Too far: measured 1 ms → move closer.
        let mut c = Coord::new(3_000, 4_000, 0);
        let mut e = 1_000_000;
        c.vivaldi_update(&mut e, &Coord::ORIGIN, 1_000_000, 1_000, &p);
        assert!(c.distance_us(&Coord::ORIGIN) < 5_000);
        // Exact prediction: error estimate falls.
        let mut c = Coord::new(3_000, 4_000, 10);
        let mut e = 1_000_000;
        c.vivaldi_update(&mut e, &Coord::ORIGIN, 1_000_000, 5_010, &p);
        assert_eq!(c, Coord::new(3_000, 4_000, 10));
        assert!(e < 1_000_000);
        // Coincident points separate deterministically.
        let mut a = Coord::ORIGIN;
        let mut ea = 1_000_000;
        a.vivaldi_update(&mut ea, &Coord::ORIGIN, 1_000_000, 8_000, &p);
        assert_ne!(a, Coord::ORIGIN);
        let mut again = Coord::ORIGIN;
        let mut e2 = 1_000_000;
        again.vivaldi_update(&mut e2, &Coord::ORIGIN, 1_000_000, 8_000, &p);
        assert_eq!(a, again);
        // Unusable samples change nothing.
        let mut c = Coord::new(1, 2, 3);
        let mut e = 5;
        assert!(!c.vivaldi_update(&mut e, &Coord::ORIGIN, 0, 0, &p));
        assert!(!c.vivaldi_update(&mut e, &Coord::ORIGIN, 0, p.max_rtt_us + 1, &p));
        assert_eq!((c, e), (Coord::new(1, 2, 3), 5));
    }

    /// Small deterministic PRNG for the simulation (no OS randomness).
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Nodes on a hidden plane with access delays converge to coordinates
    /// whose predictions are within 2% of the true RTTs (median; about 0.6%
    /// observed after 400 rounds of one sample per node).
    #[test]
    fn converges_on_a_synthetic_network() {
        let p = VivaldiParams::default();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let n = 24;
        // True positions within ±50 ms, access delays 0.1..2 ms.
        let truth: Vec<Coord> = (0..n)
            .map(|_| {
                let x = (xorshift(&mut rng) % 100_000) as i32 - 50_000;
                let y = (xorshift(&mut rng) % 100_000) as i32 - 50_000;
                let h = 100 + (xorshift(&mut rng) % 1_900) as u32;
                Coord::new(x, y, h)
            })
            .collect();
        let rtt = |i: usize, j: usize| truth[i].distance_us(&truth[j]);
        let mut nodes = vec![VivaldiNode::default(); n];
        let median_error = |nodes: &[VivaldiNode]| {
            let mut errs: Vec<u64> = Vec::new();
            for i in 0..n {
                for j in (i + 1)..n {
                    let pred = nodes[i].coord.distance_us(&nodes[j].coord);
                    let real = rtt(i, j);
                    errs.push(pred.abs_diff(real) * 1_000_000 / real);
                }
            }
            errs.sort_unstable();
            errs[errs.len() / 2]
        };
        let before = median_error(&nodes);
        for _ in 0..400 {
            for i in 0..n {
                let j = (xorshift(&mut rng) % n as u64) as usize;
                if i != j {
                    let remote = nodes[j];
                    nodes[i].observe(&remote, rtt(i, j), &p);
                }
            }
        }
        let after = median_error(&nodes);
        assert!(
            before > 900_000,
            "start should be ~100% wrong, got {before}"
        );
        assert!(
            after < 20_000,
            "median relative error {after} ppm after 400 rounds"
        );
    }

    fn coord() -> impl Strategy<Value = Coord> {
        (any::<i32>(), any::<i32>(), any::<u32>()).prop_map(|(x, y, h)| Coord::new(x, y, h))
    }

    proptest! {
        #[test]
        fn metric_properties(a in coord(), b in coord(), c in coord()) {
            prop_assert_eq!(a.distance_us(&a), 0);
            prop_assert_eq!(a.distance_us(&b), b.distance_us(&a));
            prop_assert!(a.distance_us(&c) <= a.distance_us(&b) + b.distance_us(&c) + 1);
            // Floor sqrt is exact.
            let r = a.planar_us(&b) as u128;
            let dx = (i128::from(a.x) - i128::from(b.x)).unsigned_abs();
            let dy = (i128::from(a.y) - i128::from(b.y)).unsigned_abs();
            let sq = dx * dx + dy * dy;
            prop_assert!(r * r <= sq && (r + 1) * (r + 1) > sq);
        }

        #[test]
        fn update_never_panics(mut a in coord(), b in coord(), e in any::<u32>(), eb in any::<u32>(), rtt in any::<u64>()) {
            let mut e = e;
            if a.vivaldi_update(&mut e, &b, eb, rtt, &VivaldiParams::default()) {
                prop_assert!(e <= 1_000_000);
                prop_assert!(a.height >= 10);
            }
        }
    }
}
