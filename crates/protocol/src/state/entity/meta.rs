//! Chain-wide counters: height, next ids, supply, burned, total bonded.

use crate::types::{
    codec_struct, Address, Amount, DisputeId, Height, JobId, MandateId, ProposalId,
};

/// Chain-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// Height of the last applied block (0 = genesis).
    pub height: Height,
    /// Next job id.
    pub next_job: JobId,
    /// Next mandate id.
    pub next_mandate: MandateId,
    /// Next dispute id.
    pub next_dispute: DisputeId,
    /// Next proposal id.
    pub next_proposal: ProposalId,
    /// Tokens created at genesis.
    pub genesis_supply: Amount,
    /// Tokens minted since genesis.
    pub issued: Amount,
    /// Tokens burned (fees, slash remainders, forfeited bonds).
    pub burned: Amount,
    /// Sum of every account's bonded stake.
    pub total_bonded: Amount,
    /// Receives issuance.
    pub treasury: Address,
}
codec_struct!(Meta {
    height,
    next_job,
    next_mandate,
    next_dispute,
    next_proposal,
    genesis_supply,
    issued,
    burned,
    total_bonded,
    treasury,
});
