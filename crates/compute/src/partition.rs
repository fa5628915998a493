//! The partitioner: split a model's layers into pipeline stages on distinct providers.
//!
//! A requester (the CLI or an agent) that wants a job run as a pipeline
//! chooses *which contiguous layer ranges* go to *which providers*. This
//! module finds the placement that is optimal for a simple, explicit cost
//! model. It runs off-chain; the ledger only checks that a named placement
//! qualifies (`agentic_protocol::matching::validate_placement`).
//!
//! # Cost model
//!
//! ```text
//!   requester ──in──▶ [p1: layers 0..a) ──link──▶ [p2: a..b) ──link──▶ … [pk: ..L) ──out──▶ requester
//! ```
//!
//! - compute of a stage on provider `p` = `Σ layer_ops[range] / speed[p]` (s);
//! - a transfer of `bytes` over a link = `latency + bytes / bandwidth` (s):
//!   the input (`boundary_bytes[0]`) from the requester to the first stage,
//!   the activation at each cut (`boundary_bytes[a]`) between consecutive
//!   stages, and the output (`boundary_bytes[L]`) back to the requester;
//! - **latency** of a placement = the sum of all computes and transfers
//!   (one input, end to end);
//! - **bottleneck** = the largest single compute or transfer: a pipeline
//!   fed a stream of inputs finishes one per bottleneck interval, so
//!   minimizing it maximizes throughput.
//!
//! [`Objective::Latency`] minimizes latency. [`Objective::Throughput`]
//! minimizes the bottleneck and, among placements with that bottleneck, the
//! latency (two exact passes: the second forbids any component above the
//! optimal bottleneck).
//!
//! # Algorithm
//!
//! Exact dynamic programming over states `(used providers as a bitmask,
//! last provider p ∈ mask, layers done j)`:
//!
//! ```text
//!   best({q}, q, j')       = in(q) ⊕ compute(q, 0..j')
//!   best(m ∪ {q}, q, j')   = min over p ∈ m, j < j' of
//!                            best(m, p, j) ⊕ link(p → q, bytes[j]) ⊕ compute(q, j..j')
//!   answer                 = min over |m| = k (or 1 ≤ |m| ≤ K), p ∈ m of best(m, p, L) ⊕ out(p)
//! ```
//!
//! with `⊕ = +` for latency and `max` for the bottleneck. The number of
//! stages is `|m|`, so "exactly k" and "any k up to K" are the same pass.
//! Time `O(Σ_s C(P, s)·s·(P − s)·L²)` ≤ `O(2^P·P²·L²)`, memory one cell per
//! `(mask, p ∈ mask, j)`; providers are capped at [`MAX_PROVIDERS`] = 16 and
//! the table at [`MAX_STATES`] cells, beyond which a typed error is
//! returned instead of running for hours.
//!
//! Floating point is allowed here (this is not consensus code), but the
//! result is deterministic: masks, providers and cut points are visited in
//! increasing order, only strictly better values replace a cell, so ties go
//! to fewer stages, then lower provider indices, then earlier cuts; IEEE
//! `+`, `/` and `max` give the same bits on every platform.

use std::ops::Range;

/// Most providers the exact search accepts (the table has `2^P` masks).
pub const MAX_PROVIDERS: usize = 16;
/// Most DP cells `(mask, provider in mask, layers done)` the search will allocate.
pub const MAX_STATES: usize = 1 << 24;

/// Why a partition problem cannot be solved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PartitionError {
    /// The model has no layers.
    #[error("the model has no layers")]
    NoLayers,
    /// There are no providers.
    #[error("no providers")]
    NoProviders,
    /// More providers than the exact search handles.
    #[error("{providers} providers exceed the exact search's limit of {max}")]
    TooManyProviders {
        /// Providers given.
        providers: usize,
        /// The limit.
        max: usize,
    },
    /// A vector or matrix has the wrong size.
    #[error("{what} has {got} entries, expected {expected}")]
    SizeMismatch {
        /// Which input.
        what: &'static str,
        /// Its size.
        got: usize,
        /// The size it must have.
        expected: usize,
    },
    /// A provider's speed is not a finite positive number.
    #[error("provider {provider} has speed {speed}, must be finite and > 0")]
    BadSpeed {
        /// The provider.
        provider: usize,
        /// Its speed.
        speed: f64,
    },
    /// A latency is negative or not a number.
    #[error("{what} latency {value} is negative or NaN")]
    BadLatency {
        /// Which link.
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// A bandwidth is not positive (infinite is allowed: a free link).
    #[error("{what} bandwidth {value} must be > 0")]
    BadBandwidth {
        /// Which link.
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// Zero stages requested.
    #[error("at least one stage is needed")]
    ZeroStages,
    /// More stages than layers or providers.
    #[error("{stages} stages but only {layers} layers and {providers} providers")]
    TooManyStages {
        /// Stages requested.
        stages: usize,
        /// Layers available.
        layers: usize,
        /// Providers available.
        providers: usize,
    },
    /// The DP table would exceed [`MAX_STATES`].
    #[error("the search needs {states} states, more than {max}")]
    TooLarge {
        /// Cells needed.
        states: usize,
        /// The limit.
        max: usize,
    },
    /// A placement passed to [`PartitionProblem::evaluate`] is malformed.
    #[error("invalid placement: {0}")]
    InvalidPlacement(&'static str),
}

/// A model to split and the providers and links to split it over.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionProblem {
    /// Operations of each layer (`L` entries).
    pub layer_ops: Vec<u64>,
    /// Bytes at each layer boundary: the input of layer 0, …, the output of
    /// layer `L − 1` (`L + 1` entries).
    pub boundary_bytes: Vec<u64>,
    /// Each provider's speed in operations per second (`P` entries).
    pub speed_ops_per_s: Vec<f64>,
    /// One-way latency between providers, seconds (`P × P`; the diagonal is unused).
    pub latency_s: Vec<Vec<f64>>,
    /// Bandwidth between providers, bytes per second (`P × P`; diagonal unused).
    pub bandwidth_bytes_per_s: Vec<Vec<f64>>,
    /// Latency between the requester and each provider, seconds (`P`).
    pub requester_latency_s: Vec<f64>,
    /// Bandwidth between the requester and each provider, bytes per second (`P`).
    pub requester_bandwidth_bytes_per_s: Vec<f64>,
}

/// How many stages the placement may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageCount {
    /// Exactly this many (an error if more than the layers or providers).
    Exactly(usize),
    /// Any number from 1 to this (capped at the layers and providers).
    UpTo(usize),
}

/// What the placement optimizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// End-to-end latency of one input.
    Latency,
    /// Pipeline throughput: the smallest bottleneck, then the smallest latency.
    Throughput,
}

/// One pipeline stage: a provider and the contiguous layers it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Index of the provider in the problem.
    pub provider: usize,
    /// The layers it runs.
    pub layers: Range<usize>,
}

/// An ordered placement of stages and its costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Stages in pipeline order; their layer ranges tile `0..L`.
    pub stages: Vec<Stage>,
    /// End-to-end latency of one input (s).
    pub latency_s: f64,
    /// Largest single compute or transfer (s).
    pub bottleneck_s: f64,
}

/// One DP cell: the best value and where it came from.
#[derive(Clone, Copy)]
struct Cell {
    value: f64,
    /// Previous stage's provider (`NONE` for the first stage).
    prev: u8,
    /// Layers done before this stage.
    from: u32,
}

const NONE: u8 = u8::MAX;
const EMPTY: Cell = Cell {
    value: f64::INFINITY,
    prev: NONE,
    from: 0,
};

/// How values combine along a path.
#[derive(Clone, Copy)]
enum Fold {
    Sum,
    Max,
}

impl Fold {
    fn apply(self, acc: f64, x: f64) -> f64 {
        match self {
            Fold::Sum => acc + x,
            Fold::Max => acc.max(x),
        }
    }
}

fn transfer(bytes: u64, latency: f64, bandwidth: f64) -> f64 {
    latency + bytes as f64 / bandwidth
}

fn check_latency(what: &'static str, value: f64) -> Result<(), PartitionError> {
    if value.is_nan() || value < 0.0 {
        return Err(PartitionError::BadLatency { what, value });
    }
    Ok(())
}

fn check_bandwidth(what: &'static str, value: f64) -> Result<(), PartitionError> {
    if value.is_nan() || value <= 0.0 {
        return Err(PartitionError::BadBandwidth { what, value });
    }
    Ok(())
}

fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), PartitionError> {
    if got != expected {
        return Err(PartitionError::SizeMismatch {
            what,
            got,
            expected,
        });
    }
    Ok(())
}

impl PartitionProblem {
    /// Number of layers `L`.
    pub fn layers(&self) -> usize {
        self.layer_ops.len()
    }

    /// Number of providers `P`.
    pub fn providers(&self) -> usize {
        self.speed_ops_per_s.len()
    }

    /// Checks sizes and values (see [`PartitionError`]).
    pub fn validate(&self) -> Result<(), PartitionError> {
        let l = self.layers();
        let p = self.providers();
        if l == 0 {
            return Err(PartitionError::NoLayers);
        }
        if p == 0 {
            return Err(PartitionError::NoProviders);
        }
        if p > MAX_PROVIDERS {
            return Err(PartitionError::TooManyProviders {
                providers: p,
                max: MAX_PROVIDERS,
            });
        }
        check_len("boundary_bytes", self.boundary_bytes.len(), l + 1)?;
        check_len("latency_s", self.latency_s.len(), p)?;
        check_len("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s.len(), p)?;
        check_len("requester_latency_s", self.requester_latency_s.len(), p)?;
        check_len(
            "requester_bandwidth_bytes_per_s",
            self.requester_bandwidth_bytes_per_s.len(),
            p,
        )?;
        for (i, &speed) in self.speed_ops_per_s.iter().enumerate() {
            if !(speed.is_finite() && speed > 0.0) {
                return Err(PartitionError::BadSpeed { provider: i, speed });
            }
        }
        for i in 0..p {
            check_len("latency_s row", self.latency_s[i].len(), p)?;
            check_len(
                "bandwidth_bytes_per_s row",
                self.bandwidth_bytes_per_s[i].len(),
                p,
            )?;
            for j in (0..p).filter(|&j| j != i) {
                check_latency("provider link", self.latency_s[i][j])?;
                check_bandwidth("provider link", self.bandwidth_bytes_per_s[i][j])?;
            }
            check_latency("requester link", self.requester_latency_s[i])?;
            check_bandwidth("requester link", self.requester_bandwidth_bytes_per_s[i])?;
        }
        Ok(())
    }

    /// Compute time of `layers` on provider `p` (`prefix` = prefix sums of ops).
    fn compute(&self, prefix: &[u128], p: usize, from: usize, to: usize) -> f64 {
        (prefix[to] - prefix[from]) as f64 / self.speed_ops_per_s[p]
    }

    fn input(&self, q: usize) -> f64 {
        transfer(
            self.boundary_bytes[0],
            self.requester_latency_s[q],
            self.requester_bandwidth_bytes_per_s[q],
        )
    }

    fn output(&self, p: usize) -> f64 {
        transfer(
            self.boundary_bytes[self.layers()],
            self.requester_latency_s[p],
            self.requester_bandwidth_bytes_per_s[p],
        )
    }

    fn link(&self, p: usize, q: usize, cut: usize) -> f64 {
        transfer(
            self.boundary_bytes[cut],
            self.latency_s[p][q],
            self.bandwidth_bytes_per_s[p][q],
        )
    }

    fn prefix(&self) -> Vec<u128> {
        let mut prefix = Vec::with_capacity(self.layers() + 1);
        let mut acc = 0u128;
        prefix.push(acc);
        for &ops in &self.layer_ops {
            acc += u128::from(ops);
            prefix.push(acc);
        }
        prefix
    }

    /// Latency and bottleneck of a given placement, after checking that its
    /// stages tile `0..L` in order on distinct, existing providers.
    pub fn evaluate(&self, stages: &[Stage]) -> Result<(f64, f64), PartitionError> {
        self.validate()?;
        let l = self.layers();
        let p = self.providers();
        let Some(first) = stages.first() else {
            return Err(PartitionError::InvalidPlacement("no stages"));
        };
        let mut used = 0u32;
        let mut next = 0;
        for s in stages {
            if s.provider >= p {
                return Err(PartitionError::InvalidPlacement("unknown provider"));
            }
            if used & (1 << s.provider) != 0 {
                return Err(PartitionError::InvalidPlacement("provider used twice"));
            }
            used |= 1 << s.provider;
            if s.layers.start != next || s.layers.end <= s.layers.start || s.layers.end > l {
                return Err(PartitionError::InvalidPlacement(
                    "stages must be non-empty, contiguous and in order",
                ));
            }
            next = s.layers.end;
        }
        if next != l {
            return Err(PartitionError::InvalidPlacement(
                "stages do not cover every layer",
            ));
        }
        let prefix = self.prefix();
        let mut parts = Vec::with_capacity(2 * stages.len() + 1);
        parts.push(self.input(first.provider));
        for (i, s) in stages.iter().enumerate() {
            if i > 0 {
                parts.push(self.link(stages[i - 1].provider, s.provider, s.layers.start));
            }
            parts.push(self.compute(&prefix, s.provider, s.layers.start, s.layers.end));
        }
        parts.push(self.output(stages[stages.len() - 1].provider));
        let latency = parts.iter().fold(0.0, |a, &x| a + x);
        let bottleneck = parts.iter().fold(0.0, |a: f64, &x| a.max(x));
        Ok((latency, bottleneck))
    }

    /// The optimal placement (see the module docs).
    pub fn solve(
        &self,
        count: StageCount,
        objective: Objective,
    ) -> Result<Placement, PartitionError> {
        self.validate()?;
        let l = self.layers();
        let p = self.providers();
        let (k_min, k_max) = match count {
            StageCount::Exactly(0) | StageCount::UpTo(0) => return Err(PartitionError::ZeroStages),
            StageCount::Exactly(k) if k > l || k > p => {
                return Err(PartitionError::TooManyStages {
                    stages: k,
                    layers: l,
                    providers: p,
                })
            }
            StageCount::Exactly(k) => (k, k),
            StageCount::UpTo(k) => (1, k.min(l).min(p)),
        };
        state_count(p, k_max, l)?;
        let stages = match objective {
            Objective::Latency => self.search(k_min, k_max, Fold::Sum, f64::INFINITY),
            Objective::Throughput => {
                let first = self.search(k_min, k_max, Fold::Max, f64::INFINITY);
                let (_, bottleneck) = self.evaluate(&first)?;
                self.search(k_min, k_max, Fold::Sum, bottleneck)
            }
        };
        let (latency_s, bottleneck_s) = self.evaluate(&stages)?;
        Ok(Placement {
            stages,
            latency_s,
            bottleneck_s,
        })
    }

    /// The DP of the module docs; `bound` forbids any single component above it.
    /// Always finds a placement: the caller checked `1 ≤ k_min ≤ k_max ≤ min(L, P)`.
    fn search(&self, k_min: usize, k_max: usize, fold: Fold, bound: f64) -> Vec<Stage> {
        let l = self.layers();
        let p = self.providers();
        let prefix = self.prefix();
        let exact = k_min == k_max;
        // table[mask]: cells for (provider slot within mask, layers done), row-major.
        let mut table: Vec<Vec<Cell>> = vec![Vec::new(); 1 << p];
        let width = l + 1;
        let slot = |mask: u32, q: usize| (mask & ((1u32 << q) - 1)).count_ones() as usize;
        let ok = |x: f64| x <= bound;

        // First stages.
        for q in 0..p {
            let mask = 1u32 << q;
            let mut cells = vec![EMPTY; width];
            let input = self.input(q);
            if ok(input) {
                // With exactly k stages, the first leaves at least k − 1 layers.
                let last = if exact { l - (k_max - 1) } else { l };
                for (j, cell) in cells.iter_mut().enumerate().take(last + 1).skip(1) {
                    let c = self.compute(&prefix, q, 0, j);
                    if ok(c) {
                        *cell = Cell {
                            value: fold.apply(input, c),
                            prev: NONE,
                            from: 0,
                        };
                    }
                }
            }
            table[mask as usize] = cells;
        }

        // Grow masks by popcount, in increasing mask order.
        for s in 1..k_max {
            for mask in 0u32..(1u32 << p) {
                if mask.count_ones() as usize != s || table[mask as usize].is_empty() {
                    continue;
                }
                for last in (0..p).filter(|&x| mask & (1 << x) != 0) {
                    let base = slot(mask, last) * width;
                    for j in s..l {
                        let cell = table[mask as usize][base + j];
                        if !cell.value.is_finite() {
                            continue;
                        }
                        for q in (0..p).filter(|&x| mask & (1 << x) == 0) {
                            let link = self.link(last, q, j);
                            if !ok(link) {
                                continue;
                            }
                            let next_mask = mask | (1 << q);
                            let after_link = fold.apply(cell.value, link);
                            let end = if exact { l - (k_max - s - 1) } else { l };
                            for j2 in (j + 1)..=end {
                                let c = self.compute(&prefix, q, j, j2);
                                if !ok(c) {
                                    continue;
                                }
                                let value = fold.apply(after_link, c);
                                let next = &mut table[next_mask as usize];
                                if next.is_empty() {
                                    *next = vec![EMPTY; (s + 1) * width];
                                }
                                let target = &mut next[slot(next_mask, q) * width + j2];
                                if value < target.value {
                                    *target = Cell {
                                        value,
                                        prev: last as u8,
                                        from: j as u32,
                                    };
                                }
                            }
                        }
                    }
                }
            }
        }

        // Best finished placement: fewest stages, then lowest mask, then provider.
        let mut best: Option<(f64, u32, usize)> = None;
        for s in k_min..=k_max {
            for mask in 0u32..(1u32 << p) {
                if mask.count_ones() as usize != s || table[mask as usize].is_empty() {
                    continue;
                }
                for last in (0..p).filter(|&x| mask & (1 << x) != 0) {
                    let cell = table[mask as usize][slot(mask, last) * width + l];
                    let out = self.output(last);
                    if !cell.value.is_finite() || !ok(out) {
                        continue;
                    }
                    let value = fold.apply(cell.value, out);
                    if best.is_none_or(|(b, _, _)| value < b) {
                        best = Some((value, mask, last));
                    }
                }
            }
        }

        // Walk the parents back.
        let mut stages = Vec::new();
        if let Some((_, mut mask, mut last)) = best {
            let mut end = l;
            loop {
                let cell = table[mask as usize][slot(mask, last) * width + end];
                let from = cell.from as usize;
                stages.push(Stage {
                    provider: last,
                    layers: from..end,
                });
                if cell.prev == NONE {
                    break;
                }
                mask &= !(1u32 << last);
                last = cell.prev as usize;
                end = from;
            }
        }
        stages.reverse();
        stages
    }
}

/// Cells the table needs: `Σ_{s ≤ k} C(P, s) · s · (L + 1)`, or an error above [`MAX_STATES`].
fn state_count(p: usize, k: usize, l: usize) -> Result<usize, PartitionError> {
    let mut total: usize = 0;
    let mut binom: usize = 1; // C(p, 0)
    for s in 1..=k {
        binom = binom * (p + 1 - s) / s;
        total = total.saturating_add(binom.saturating_mul(s).saturating_mul(l + 1));
    }
    if total > MAX_STATES {
        return Err(PartitionError::TooLarge {
            states: total,
            max: MAX_STATES,
        });
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `P` identical providers on identical links.
    fn uniform(
        layer_ops: Vec<u64>,
        bytes: u64,
        p: usize,
        speed: f64,
        lat: f64,
        bw: f64,
    ) -> PartitionProblem {
        let l = layer_ops.len();
        PartitionProblem {
            layer_ops,
            boundary_bytes: vec![bytes; l + 1],
            speed_ops_per_s: vec![speed; p],
            latency_s: vec![vec![lat; p]; p],
            bandwidth_bytes_per_s: vec![vec![bw; p]; p],
            requester_latency_s: vec![lat; p],
            requester_bandwidth_bytes_per_s: vec![bw; p],
        }
    }

    /// All compositions of `l` into `k` positive parts.
    fn compositions(l: usize, k: usize) -> Vec<Vec<usize>> {
        if k == 1 {
            return vec![vec![l]];
        }
        let mut out = Vec::new();
        for first in 1..=l.saturating_sub(k - 1) {
            for mut rest in compositions(l - first, k - 1) {
                rest.insert(0, first);
                out.push(rest);
            }
        }
        out
    }

    /// All ordered tuples of `k` distinct providers out of `p`.
    fn tuples(p: usize, k: usize) -> Vec<Vec<usize>> {
        if k == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for t in tuples(p, k - 1) {
            for q in 0..p {
                if !t.contains(&q) {
                    let mut t = t.clone();
                    t.push(q);
                    out.push(t);
                }
            }
        }
        out
    }

    /// Brute force: (min latency, min bottleneck, min latency among min-bottleneck placements).
    fn brute(problem: &PartitionProblem, ks: Range<usize>) -> (f64, f64, f64) {
        let mut best_latency = f64::INFINITY;
        let mut all = Vec::new();
        for k in ks {
            for comp in compositions(problem.layers(), k) {
                for t in tuples(problem.providers(), k) {
                    let mut start = 0;
                    let stages: Vec<Stage> = comp
                        .iter()
                        .zip(&t)
                        .map(|(&n, &q)| {
                            let s = Stage {
                                provider: q,
                                layers: start..start + n,
                            };
                            start += n;
                            s
                        })
                        .collect();
                    let (lat, bot) = problem.evaluate(&stages).unwrap();
                    best_latency = best_latency.min(lat);
                    all.push((lat, bot));
                }
            }
        }
        let best_bot = all.iter().fold(f64::INFINITY, |a, x| a.min(x.1));
        let lat_at_best_bot = all
            .iter()
            .filter(|x| x.1 == best_bot)
            .fold(f64::INFINITY, |a, x| a.min(x.0));
        (best_latency, best_bot, lat_at_best_bot)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn single_stage_picks_the_fastest_provider() {
        let mut pr = uniform(vec![100, 200, 300], 10, 3, 100.0, 0.01, 1e6);
        pr.speed_ops_per_s = vec![100.0, 600.0, 300.0];
        let pl = pr
            .solve(StageCount::Exactly(1), Objective::Latency)
            .unwrap();
        assert_eq!(
            pl.stages,
            vec![Stage {
                provider: 1,
                layers: 0..3
            }]
        );
        // in 0.01 + 10/1e6, compute 600/600 = 1, out 0.01 + 10/1e6.
        assert!(close(pl.latency_s, 1.0 + 2.0 * (0.01 + 1e-5)));
        assert!(close(pl.bottleneck_s, 1.0));
    }

    #[test]
    fn two_fast_providers_split_evenly_for_throughput() {
        // Four equal layers on two equal providers with free links: the
        // bottleneck halves by splitting 2 + 2; latency prefers one stage
        // (no extra link), throughput prefers two.
        let pr = uniform(vec![100; 4], 1_000, 2, 100.0, 0.001, 1e9);
        let lat = pr.solve(StageCount::UpTo(2), Objective::Latency).unwrap();
        assert_eq!(lat.stages.len(), 1);
        let thr = pr
            .solve(StageCount::UpTo(2), Objective::Throughput)
            .unwrap();
        assert_eq!(thr.stages.len(), 2);
        assert_eq!(thr.stages[0].layers, 0..2);
        assert_eq!(thr.stages[1].layers, 2..4);
        assert_ne!(thr.stages[0].provider, thr.stages[1].provider);
        assert!(close(thr.bottleneck_s, 2.0));
        assert!(thr.bottleneck_s < lat.bottleneck_s);
        assert!(thr.latency_s >= lat.latency_s);
    }

    #[test]
    fn cuts_go_where_activations_are_small() {
        // Three layers, two stages: the activation after layer 0 is huge, after layer 1 tiny.
        let mut pr = uniform(vec![100, 100, 100], 10, 2, 100.0, 0.001, 1_000.0);
        pr.boundary_bytes = vec![10, 1_000_000, 10, 10];
        let pl = pr
            .solve(StageCount::Exactly(2), Objective::Latency)
            .unwrap();
        assert_eq!(pl.stages[0].layers, 0..2);
        assert_eq!(pl.stages[1].layers, 2..3);
    }

    #[test]
    fn far_requester_links_are_avoided() {
        let mut pr = uniform(vec![10; 4], 1_000, 4, 1_000.0, 0.001, 1e6);
        // Provider 0 is fast but far from the requester; 2 is close.
        pr.speed_ops_per_s[0] = 1e9;
        pr.requester_latency_s = vec![5.0, 0.2, 0.001, 0.2];
        let pl = pr
            .solve(StageCount::Exactly(2), Objective::Latency)
            .unwrap();
        assert!(pl.stages.iter().all(|s| s.provider != 0));
        assert_eq!(pl.stages[0].provider, 2);
    }

    #[test]
    fn errors_are_typed() {
        let good = uniform(vec![1, 2, 3], 4, 3, 10.0, 0.1, 100.0);
        assert!(good.validate().is_ok());
        let mut pr = good.clone();
        pr.layer_ops.clear();
        pr.boundary_bytes = vec![1];
        assert_eq!(pr.validate(), Err(PartitionError::NoLayers));
        let mut pr = good.clone();
        pr.boundary_bytes.pop();
        assert!(matches!(
            pr.validate(),
            Err(PartitionError::SizeMismatch {
                what: "boundary_bytes",
                ..
            })
        ));
        let mut pr = good.clone();
        pr.latency_s[1].pop();
        assert!(matches!(
            pr.validate(),
            Err(PartitionError::SizeMismatch { .. })
        ));
        let mut pr = good.clone();
        pr.requester_bandwidth_bytes_per_s.push(1.0);
        assert!(matches!(
            pr.validate(),
            Err(PartitionError::SizeMismatch { .. })
        ));
        let mut pr = good.clone();
        pr.speed_ops_per_s[2] = 0.0;
        assert!(matches!(
            pr.validate(),
            Err(PartitionError::BadSpeed { provider: 2, .. })
        ));
        let mut pr = good.clone();
        pr.speed_ops_per_s[0] = f64::NAN;
        assert!(matches!(
            pr.validate(),
            Err(PartitionError::BadSpeed { provider: 0, .. })
        ));
        let mut pr = good.clone();
        pr.latency_s[0][1] = -1.0;
        assert!(matches!(
            pr.validate(),
            Err(PartitionError::BadLatency { .. })
        ));
        let mut pr = good.clone();
        pr.bandwidth_bytes_per_s[2][0] = 0.0;
        assert!(matches!(
            pr.validate(),
            Err(PartitionError::BadBandwidth { .. })
        ));
        // Infinite bandwidth and a garbage diagonal are fine.
        let mut pr = good.clone();
        pr.bandwidth_bytes_per_s[0][1] = f64::INFINITY;
        pr.latency_s[1][1] = f64::NAN;
        assert!(pr.validate().is_ok());
        let pr = uniform(vec![1; 3], 1, 17, 1.0, 0.0, 1.0);
        assert!(matches!(
            pr.validate(),
            Err(PartitionError::TooManyProviders { providers: 17, .. })
        ));
        assert_eq!(
            good.solve(StageCount::Exactly(0), Objective::Latency),
            Err(PartitionError::ZeroStages)
        );
        assert!(matches!(
            good.solve(StageCount::Exactly(4), Objective::Latency),
            Err(PartitionError::TooManyStages { stages: 4, .. })
        ));
        let two = uniform(vec![1; 5], 1, 2, 1.0, 0.0, 1.0);
        assert!(matches!(
            two.solve(StageCount::Exactly(3), Objective::Latency),
            Err(PartitionError::TooManyStages { .. })
        ));
        // UpTo caps instead.
        assert!(two.solve(StageCount::UpTo(9), Objective::Latency).is_ok());
        // Huge problems are refused up front.
        let huge = uniform(vec![1; 4_000], 1, 16, 1.0, 0.0, 1.0);
        assert!(matches!(
            huge.solve(StageCount::UpTo(16), Objective::Latency),
            Err(PartitionError::TooLarge { .. })
        ));
        // Malformed placements.
        let s = |provider, layers| Stage { provider, layers };
        assert!(good.evaluate(&[]).is_err());
        assert!(good.evaluate(&[s(0, 0..2)]).is_err());
        assert!(good.evaluate(&[s(0, 0..1), s(0, 1..3)]).is_err());
        assert!(good.evaluate(&[s(0, 0..1), s(1, 2..3)]).is_err());
        assert!(good.evaluate(&[s(5, 0..3)]).is_err());
        assert!(good.evaluate(&[s(0, 0..0), s(1, 0..3)]).is_err());
        assert!(good.evaluate(&[s(0, 0..1), s(1, 1..3)]).is_ok());
    }

    #[test]
    fn sixteen_providers_solve() {
        // The documented maximum runs (k ≤ 4 keeps it quick in tests).
        let mut pr = uniform(
            (1..=12).map(|i| i * 1_000).collect(),
            4_096,
            16,
            1e4,
            0.002,
            1e7,
        );
        for (i, s) in pr.speed_ops_per_s.iter_mut().enumerate() {
            *s = 1e4 * (1.0 + i as f64);
        }
        let pl = pr.solve(StageCount::UpTo(4), Objective::Latency).unwrap();
        let (lat, _) = pr.evaluate(&pl.stages).unwrap();
        assert_eq!(lat, pl.latency_s);
        // The fastest provider alone beats splitting when links cost more than compute saved.
        assert_eq!(pl.stages[0].provider, 15);
    }

    #[test]
    fn deterministic() {
        let pr = uniform(vec![7, 7, 7, 7, 7], 3, 4, 10.0, 0.01, 100.0);
        let a = pr
            .solve(StageCount::UpTo(3), Objective::Throughput)
            .unwrap();
        for _ in 0..3 {
            assert_eq!(
                pr.solve(StageCount::UpTo(3), Objective::Throughput)
                    .unwrap(),
                a
            );
        }
        // Ties go to lower provider indices.
        assert_eq!(
            pr.solve(StageCount::Exactly(1), Objective::Latency)
                .unwrap()
                .stages[0]
                .provider,
            0
        );
    }

    fn problem() -> impl Strategy<Value = PartitionProblem> {
        (1usize..=6, 1usize..=4).prop_flat_map(|(l, p)| {
            (
                proptest::collection::vec(1u64..1_000, l),
                proptest::collection::vec(0u64..10_000, l + 1),
                proptest::collection::vec(1u32..100, p),
                proptest::collection::vec(proptest::collection::vec((0u32..50, 1u32..100), p), p),
                proptest::collection::vec((0u32..50, 1u32..100), p),
            )
                .prop_map(|(ops, bytes, speeds, links, req)| PartitionProblem {
                    layer_ops: ops,
                    boundary_bytes: bytes,
                    speed_ops_per_s: speeds.iter().map(|&s| f64::from(s) * 10.0).collect(),
                    latency_s: links
                        .iter()
                        .map(|row| row.iter().map(|&(l, _)| f64::from(l) / 1_000.0).collect())
                        .collect(),
                    bandwidth_bytes_per_s: links
                        .iter()
                        .map(|row| row.iter().map(|&(_, b)| f64::from(b) * 1_000.0).collect())
                        .collect(),
                    requester_latency_s: req.iter().map(|&(l, _)| f64::from(l) / 1_000.0).collect(),
                    requester_bandwidth_bytes_per_s: req
                        .iter()
                        .map(|&(_, b)| f64::from(b) * 1_000.0)
                        .collect(),
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// DP equals brute force, for exact k and for "up to K", both objectives.
        #[test]
        fn dp_equals_brute_force(pr in problem(), k in 1usize..=3) {
            let k = k.min(pr.layers()).min(pr.providers());
            let (lat, bot, lat_at_bot) = brute(&pr, k..k + 1);
            let pl = pr.solve(StageCount::Exactly(k), Objective::Latency).unwrap();
            prop_assert_eq!(pl.stages.len(), k);
            prop_assert!(close(pl.latency_s, lat), "dp {} brute {}", pl.latency_s, lat);
            let pt = pr.solve(StageCount::Exactly(k), Objective::Throughput).unwrap();
            prop_assert!(close(pt.bottleneck_s, bot));
            prop_assert!(close(pt.latency_s, lat_at_bot));

            let (lat, bot, lat_at_bot) = brute(&pr, 1..k + 1);
            let pl = pr.solve(StageCount::UpTo(k), Objective::Latency).unwrap();
            prop_assert!(pl.stages.len() <= k);
            prop_assert!(close(pl.latency_s, lat));
            let pt = pr.solve(StageCount::UpTo(k), Objective::Throughput).unwrap();
            prop_assert!(close(pt.bottleneck_s, bot));
            prop_assert!(close(pt.latency_s, lat_at_bot));
            // Reported costs are the placement's own.
            let (l2, b2) = pr.evaluate(&pt.stages).unwrap();
            prop_assert_eq!((l2, b2), (pt.latency_s, pt.bottleneck_s));
        }
    }
}
