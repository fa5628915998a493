//! A registered provider: its standing offer, load and reputation.

use crate::reputation::Reputation;
use crate::tx::Offer;
use crate::types::{codec_struct, Height};

/// A registered provider. Its stake is its account's bonded amount.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Provider {
    /// The standing offer.
    pub offer: Offer,
    /// When it (last) registered.
    pub registered_at: Height,
    /// Stage assignments it is executing now (counts against capacity).
    pub active: u32,
    /// Assignments and audits not yet settled (blocks `Retire`).
    pub open: u32,
    /// Whether it retired (kept so its reputation survives re-registration).
    pub retired: bool,
    /// Value-weighted track record.
    pub reputation: Reputation,
}
codec_struct!(Provider {
    offer,
    registered_at,
    active,
    open,
    retired,
    reputation
});

impl Provider {
    /// A first registration at `now`: a fresh reputation, nothing open.
    pub fn new(offer: Offer, now: Height) -> Self {
        Provider {
            offer,
            registered_at: now,
            active: 0,
            open: 0,
            retired: false,
            reputation: Reputation::new(now.0),
        }
    }
}
