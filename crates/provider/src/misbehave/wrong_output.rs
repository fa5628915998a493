//! `wrong-output`: computes the stage honestly, then claims a different final output.
//!
//! The claimed output is a real activation (the honest one with its first element
//! increased by one), so it can be stored, pushed and published like any output; the
//! trace is the honest trace with its last leaf replaced by the claimed output's hash.
//! The cheater plays the bisection game faithfully for that trace: every round agrees
//! until `lo = layers − 1`, where both parties agree on the input of the stage's last
//! layer and disagree on its output. The referee re-runs that one layer and the cheater
//! is slashed (`slash_ppm` of its stake: `slash_winner_ppm` to the auditor or
//! challenger, `slash_requester_ppm` to the payer, the rest burned), the job fails and
//! the payer gets the unpaid escrow back.

use agentic_compute::{Activation, ComputeError};

/// The false output claimed instead of `honest`.
pub fn falsify(honest: &Activation) -> Result<Activation, ComputeError> {
    super::edit_first(honest, |x| x + 1.0)
}
