//! `silent`: a wrong result, and no answer.
//!
//! Computes like [`super::wrong_output`] (honest trace, false final output) and then
//! never posts a `Bisect` move in a dispute over its own result. The ledger's rule for
//! a round nobody finishes: the party that did not move by the round's deadline
//! (`dispute_timeout` blocks) loses. So the challenger's single move wins the dispute
//! by timeout, without a referee, and the cheater is slashed like any loser. In other
//! roles (an audit, a dispute it opened as an auditor) it plays.

use super::Misbehaviour;

/// Whether a daemon in `mode` answers the rounds of disputes over its own results.
pub fn answers_disputes(mode: Misbehaviour) -> bool {
    mode != Misbehaviour::Silent
}
