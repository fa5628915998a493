//! `collude`: two providers on consecutive stages hide a lie between them.
//!
//! Both daemons run in this mode; each plays the side its position gives it.
//!
//! * **Upstream** (it holds stage `s` and stage `s + 1` exists): computes honestly,
//!   pushes the *true* output to the next stage's provider, but commits to and reveals
//!   a false output (as [`super::wrong_output`]: a real activation, published on
//!   reveal, with the honest trace up to the last leaf).
//! * **Downstream** (it holds stage `s + 1`): computes on the activation pushed to it
//!   and commits on it as soon as the ledger takes a commitment (once stage `s` has an
//!   agreed result: before that the ledger refuses it, `PreviousStageUnrevealed`),
//!   without checking the pushed activation against that result.
//!
//! The pair hopes the requester gets the right answer while the chain records
//! something else (so the upstream's lie is never exercised downstream). It cannot
//! work: the downstream's reveal opens a commitment whose input is not the chain's
//! agreed output of stage `s` — signed proof of a broken chain, so the ledger slashes
//! it (`slash_ppm`, `slash_requester_ppm` of it to the payer, the rest burned) and
//! re-routes the stage (no replica revealed yet: a replacement computes afresh from the
//! agreed input). The upstream's false output is caught like `wrong-output`, by its
//! audit (or a challenge), the bisection game and the referee; a replacement that
//! delivered stage `s + 1` before that is paid (from the upstream's slash first).

use agentic_compute::{Activation, ComputeError};

use super::Misbehaviour;

/// Whether a daemon in `mode` commits on a pushed input without the chain's agreement.
pub fn commits_on_pushed_input(mode: Misbehaviour) -> bool {
    mode == Misbehaviour::Collude
}

/// From the honest output: the false output to claim and the true one to push.
pub fn claim_and_push(
    honest: Activation,
) -> Result<(Activation, Option<Activation>), ComputeError> {
    let claimed = super::wrong_output::falsify(&honest)?;
    Ok((claimed, Some(honest)))
}
