//! A mandate: an agent may spend from a principal's balance within caps.

use crate::tx::MandateTerms;
use crate::types::{codec_struct, Address, Amount};

/// A mandate: an agent may spend from the principal's balance within caps.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mandate {
    /// Who pays.
    pub principal: Address,
    /// The caps.
    pub terms: MandateTerms,
    /// Escrow locked plus amounts paid out under this mandate (refunds give it back).
    pub spent: Amount,
    /// Whether the principal revoked it.
    pub revoked: bool,
}
codec_struct!(Mandate {
    principal,
    terms,
    spent,
    revoked
});
