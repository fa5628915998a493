//! An account: balance, nonce, bonded stake and withdrawable stake.

use crate::types::{codec_struct, Amount};

/// An account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    /// Spendable tokens.
    pub balance: Amount,
    /// Next transaction nonce.
    pub nonce: u64,
    /// Bonded stake (provider collateral and voting weight; slashable).
    pub bonded: Amount,
    /// Unbonded stake released and ready for `Withdraw`.
    pub withdrawable: Amount,
}
codec_struct!(Account {
    balance,
    nonce,
    bonded,
    withdrawable
});
