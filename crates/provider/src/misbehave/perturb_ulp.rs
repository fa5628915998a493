//! `perturb-ulp`: one unit in the last place, once, and an honest-looking trace after.
//!
//! The stage runs one layer at a time; after its middle layer ([`layer`]: position
//! `layers / 2` in the stage's range) the first element of the output moves to the
//! next representable `f32` ([`bump`]), and the remaining layers compute on from the
//! perturbed activation. The trace is therefore self-consistent and diverges from the
//! honest one exactly at that layer's output — the smallest possible lie, which a
//! tolerance-based checker would accept. Bitwise determinism catches it: the bisection
//! game converges on that layer (both agree on its input), the referee re-runs it and
//! gets the honest bits, and the cheater is slashed as for `wrong-output`.

use agentic_compute::{Activation, ComputeError};

/// The position (0-based, within a stage of `n` layers) of the perturbed layer.
pub fn layer(n: usize) -> usize {
    n / 2
}

/// `a` with its first element moved one ulp up.
pub fn bump(a: &Activation) -> Result<Activation, ComputeError> {
    super::edit_first(a, f32::next_up)
}
