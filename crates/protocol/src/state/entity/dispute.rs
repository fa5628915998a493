//! A dispute: the two parties, their trace roots and the bisection game
//! between them, and where the game is.

use crate::bisection::Bisection;
use crate::types::{codec_struct, Address, Amount, Hash, Height, JobId};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};

/// Who opened a dispute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DisputeKind {
    /// Two replicas revealed different outputs.
    Replica,
    /// The auditor disagreed.
    Audit,
    /// An outside challenger posted `bond`.
    External {
        /// The bond held by the ledger.
        bond: Amount,
    },
}

impl Write for DisputeKind {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            DisputeKind::Replica => buf.put_u8(0),
            DisputeKind::Audit => buf.put_u8(1),
            DisputeKind::External { bond } => {
                buf.put_u8(2);
                bond.write(buf);
            }
        }
    }
}
impl EncodeSize for DisputeKind {
    fn encode_size(&self) -> usize {
        match self {
            DisputeKind::External { .. } => 17,
            _ => 1,
        }
    }
}
impl Read for DisputeKind {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(match u8::read(buf)? {
            0 => DisputeKind::Replica,
            1 => DisputeKind::Audit,
            2 => DisputeKind::External {
                bond: Amount::read(buf)?,
            },
            t => return Err(CodecError::InvalidEnum(t)),
        })
    }
}

/// A bisection dispute between a stage's defendant and a challenger.
///
/// Trace leaves are indexed `0..=layers` (leaf 0 = the stage input, leaf
/// `i` = output of the stage's layer `i - 1`). Invariant: both parties agree
/// on leaf `lo` (value `agreed`) and disagree on leaf `hi`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dispute {
    /// The job.
    pub job: JobId,
    /// The stage.
    pub stage: u32,
    /// Who opened it.
    pub kind: DisputeKind,
    /// The provider whose result is disputed.
    pub defendant: Address,
    /// Its trace root.
    pub defendant_root: Hash,
    /// The challenger (replica, auditor or outsider).
    pub challenger: Address,
    /// Its trace root.
    pub challenger_root: Hash,
    /// What a provider challenger (replica or auditor) is paid per mega-op if it wins.
    pub challenger_price: Amount,
    /// The bisection game: both agree on leaf `game.lo()`, disagree on `game.hi()`.
    pub game: Bisection,
    /// Value of leaf `lo` (both agree).
    pub agreed: Hash,
    /// The defendant's value of leaf `hi`.
    pub defendant_hi: Hash,
    /// The challenger's value of leaf `hi`.
    pub challenger_hi: Hash,
    /// The defendant's claimed stage output (its last leaf).
    pub defendant_output: Hash,
    /// The challenger's claimed stage output (its last leaf).
    pub challenger_output: Hash,
    /// The defendant's leaf at the current midpoint, once moved.
    pub defendant_move: Option<Hash>,
    /// The challenger's leaf at the current midpoint, once moved.
    pub challenger_move: Option<Hash>,
    /// Last height for the current round's moves.
    pub deadline: Height,
    /// Where the game is.
    pub phase: DisputePhase,
    /// Units of one step when the stage is a training stage (`0`: inference).
    pub step_units: u32,
    /// A training dispute's step (stage-relative), once the step-level game
    /// isolated it. From then on `game` is over the step's `step_units + 1`
    /// unit leaves and the roots are the parties' step roots.
    pub step: Option<u32>,
}

/// One party's side of a dispute ([`Dispute::party`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Party {
    /// Whether it is the defendant (else the challenger).
    pub defendant: bool,
    /// Its trace root (its step root once a training dispute reached one step).
    pub root: Hash,
    /// Its value of leaf `game.hi()`.
    pub hi: Hash,
    /// Whether it already moved this round.
    pub moved: bool,
}

impl Dispute {
    /// `who`'s side, if it is a party.
    pub fn party(&self, who: Address) -> Option<Party> {
        if who == self.defendant {
            Some(Party {
                defendant: true,
                root: self.defendant_root,
                hi: self.defendant_hi,
                moved: self.defendant_move.is_some(),
            })
        } else if who == self.challenger {
            Some(Party {
                defendant: false,
                root: self.challenger_root,
                hi: self.challenger_hi,
                moved: self.challenger_move.is_some(),
            })
        } else {
            None
        }
    }

    /// The referee question's layer index once the game is down to one leaf
    /// pair: the absolute layer `first_layer + lo` for inference; for a
    /// training stage, the flat unit index
    /// `(first_layer + step) × step_units + lo` (the referee splits it back).
    /// `None` when a training dispute has no step yet, or on overflow.
    pub fn referee_layer(&self, first_layer: u32) -> Option<u32> {
        if self.step_units == 0 {
            return Some(first_layer.saturating_add(self.game.lo()));
        }
        first_layer
            .checked_add(self.step?)?
            .checked_mul(self.step_units)?
            .checked_add(self.game.lo())
    }
}

/// Where a dispute is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DisputePhase {
    /// Parties are bisecting.
    Bisecting,
    /// One layer is left; the referee re-executes it in this block's per-block step.
    AwaitingReferee,
    /// Over.
    Resolved,
    /// A training dispute's step-level game isolated one step: each party
    /// posts its root over that step's unit leaves (`StepRoot`).
    StepRoots,
}

impl Write for DisputePhase {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(match self {
            DisputePhase::Bisecting => 0,
            DisputePhase::AwaitingReferee => 1,
            DisputePhase::Resolved => 2,
            DisputePhase::StepRoots => 3,
        });
    }
}
impl commonware_codec::FixedSize for DisputePhase {
    const SIZE: usize = 1;
}
impl Read for DisputePhase {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(match u8::read(buf)? {
            0 => DisputePhase::Bisecting,
            1 => DisputePhase::AwaitingReferee,
            2 => DisputePhase::Resolved,
            3 => DisputePhase::StepRoots,
            t => return Err(CodecError::InvalidEnum(t)),
        })
    }
}
codec_struct!(Dispute {
    job,
    stage,
    kind,
    defendant,
    defendant_root,
    challenger,
    challenger_root,
    challenger_price,
    game,
    agreed,
    defendant_hi,
    challenger_hi,
    defendant_output,
    challenger_output,
    defendant_move,
    challenger_move,
    deadline,
    phase,
    step_units,
    step,
});
