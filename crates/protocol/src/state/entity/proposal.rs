//! A governance proposal, its status, and one recorded vote.

use crate::params::ParamChange;
use crate::types::{codec_struct, Address, Amount, Height};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};

/// A governance proposal's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProposalStatus {
    /// Open for votes until `voting_ends` (inclusive).
    Voting,
    /// Passed; takes effect at the given height.
    Passed {
        /// Activation height.
        activates: Height,
    },
    /// Quorum or threshold not met.
    Rejected,
    /// Took effect.
    Enacted,
    /// Passed but invalid when it was due (other changes intervened).
    Voided,
}

impl Write for ProposalStatus {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            ProposalStatus::Voting => buf.put_u8(0),
            ProposalStatus::Passed { activates } => {
                buf.put_u8(1);
                activates.write(buf);
            }
            ProposalStatus::Rejected => buf.put_u8(2),
            ProposalStatus::Enacted => buf.put_u8(3),
            ProposalStatus::Voided => buf.put_u8(4),
        }
    }
}
impl EncodeSize for ProposalStatus {
    fn encode_size(&self) -> usize {
        match self {
            ProposalStatus::Passed { .. } => 9,
            _ => 1,
        }
    }
}
impl Read for ProposalStatus {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(match u8::read(buf)? {
            0 => ProposalStatus::Voting,
            1 => ProposalStatus::Passed {
                activates: Height::read(buf)?,
            },
            2 => ProposalStatus::Rejected,
            3 => ProposalStatus::Enacted,
            4 => ProposalStatus::Voided,
            t => return Err(CodecError::InvalidEnum(t)),
        })
    }
}

/// A parameter-change proposal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    /// Who proposed.
    pub proposer: Address,
    /// The change.
    pub change: ParamChange,
    /// Last height to vote.
    pub voting_ends: Height,
    /// Total bonded stake when proposed (the quorum base).
    pub bonded_snapshot: Amount,
    /// Yes weight.
    pub yes: Amount,
    /// No weight.
    pub no: Amount,
    /// Status.
    pub status: ProposalStatus,
}
codec_struct!(Proposal {
    proposer,
    change,
    voting_ends,
    bonded_snapshot,
    yes,
    no,
    status
});

/// One recorded vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoteRecord {
    /// Yes or no.
    pub approve: bool,
    /// Bonded stake of the voter when it voted.
    pub weight: Amount,
}
codec_struct!(VoteRecord { approve, weight });
