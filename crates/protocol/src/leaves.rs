//! A party's trace, and the one place that turns it into what the ledger takes:
//! the claimed [`StageResult`], a leaf with its Merkle proof, and the next move in a
//! dispute.
//!
//! A trace is a list of 32-byte leaves committed by one Merkle root
//! ([`crate::merkle`]): for an inference stage, leaf 0 is the stage's input and leaf
//! `i ≥ 1` the output of its `i`-th layer; for a training stage, leaf `t` is the state
//! before step `t` (the step-level game) or, inside one step, leaf `u` is the carry
//! before unit `u` (the unit-level game). The rules here do not care which: they are
//! the same for every level.
//!
//! Every client that plays a dispute (the provider daemon, the requester's challenge,
//! the MCP server, the benches, the tests) calls [`Leaves::next_move`]: it says
//! whether it is this party's turn and builds the transaction the ledger will accept
//! (`Bisect` at the game's midpoint, or `StepRoot` when a training dispute reached one
//! step), or says why these leaves cannot play this dispute.

use crate::merkle;
use crate::state::{Dispute, DisputePhase};
use crate::tx::{StageResult, TxBody};
use crate::types::{Address, DisputeId, Hash};

/// Why a trace cannot play a dispute.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    /// The account is neither the defendant nor the challenger.
    #[error("not a party to the dispute")]
    NotParty,
    /// The root on chain for this party is not the root of these leaves.
    #[error("these leaves have root {ours}, the party's root on chain is {on_chain}")]
    RootMismatch {
        /// The root of these leaves.
        ours: Hash,
        /// The party's root in the dispute.
        on_chain: Hash,
    },
    /// The game is over more (or fewer) leaves than this trace has.
    #[error("the game is over {game} leaves, this trace has {ours}")]
    Length {
        /// Leaves in the game.
        game: u32,
        /// Leaves here.
        ours: usize,
    },
    /// A step's unit leaves must start at the agreed state and end at this party's
    /// state after the step.
    #[error("the step's unit leaves do not run from the agreed state to this party's")]
    StepEnds,
}

/// The Merkle root committing `leaves` (and their count).
pub fn root_of(leaves: &[Hash]) -> Hash {
    let raw: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
    Hash(merkle::root(&raw))
}

/// The result a trace with these leaves claims: the first leaf (the input), the last
/// (the output) and the root. An empty trace claims zero input and output.
pub fn result_of(leaves: &[Hash]) -> StageResult {
    StageResult {
        input: leaves.first().copied().unwrap_or_default(),
        output: leaves.last().copied().unwrap_or_default(),
        trace_root: root_of(leaves),
        steps: 0,
    }
}

/// One party's leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leaves(Vec<Hash>);

impl From<Vec<Hash>> for Leaves {
    fn from(leaves: Vec<Hash>) -> Self {
        Leaves(leaves)
    }
}

impl std::ops::Deref for Leaves {
    type Target = [Hash];
    fn deref(&self) -> &[Hash] {
        &self.0
    }
}

impl Leaves {
    /// The leaves, in order.
    pub fn new(leaves: Vec<Hash>) -> Self {
        Leaves(leaves)
    }

    /// The leaves back.
    pub fn into_inner(self) -> Vec<Hash> {
        self.0
    }

    fn raw(&self) -> Vec<[u8; 32]> {
        self.0.iter().map(|h| h.0).collect()
    }

    /// The Merkle root committing these leaves (and their count).
    pub fn root(&self) -> Hash {
        root_of(&self.0)
    }

    /// The claimed result ([`result_of`]).
    pub fn result(&self) -> StageResult {
        result_of(&self.0)
    }

    /// Leaf `i` and its Merkle proof against [`Leaves::root`]; `None` past the end.
    pub fn open(&self, i: u32) -> Option<(Hash, Vec<Hash>)> {
        let leaf = *self.0.get(i as usize)?;
        let proof = merkle::proof(&self.raw(), i as usize)?;
        Some((leaf, proof.into_iter().map(Hash).collect()))
    }

    /// This party's move in dispute `id` now: `Ok(None)` when it is not its turn
    /// (it already moved this round, or the game is not waiting on moves).
    ///
    /// - `Bisecting`: these leaves must be the ones the game is over (the stage's
    ///   trace, a training stage's per-step states, or one step's unit leaves once
    ///   `d.step` is set) and hash to this party's root on chain; the move opens the
    ///   game's midpoint (`Bisect`).
    /// - `StepRoots`: these are the unit leaves of the disputed step; they must start
    ///   at the agreed state and end at this party's state after the step; the move
    ///   posts their root with both end proofs (`StepRoot`).
    pub fn next_move(
        &self,
        id: DisputeId,
        d: &Dispute,
        me: Address,
    ) -> Result<Option<TxBody>, MoveError> {
        let party = d.party(me).ok_or(MoveError::NotParty)?;
        if party.moved {
            return Ok(None);
        }
        match d.phase {
            DisputePhase::Bisecting => {
                let Some(mid) = d.game.midpoint() else {
                    return Ok(None);
                };
                if self.0.len() != d.game.leaves() as usize {
                    return Err(MoveError::Length {
                        game: d.game.leaves(),
                        ours: self.0.len(),
                    });
                }
                let ours = self.root();
                if ours != party.root {
                    return Err(MoveError::RootMismatch {
                        ours,
                        on_chain: party.root,
                    });
                }
                let (leaf, proof) = self.open(mid).ok_or(MoveError::Length {
                    game: d.game.leaves(),
                    ours: self.0.len(),
                })?;
                Ok(Some(TxBody::Bisect {
                    dispute: id,
                    leaf,
                    proof,
                }))
            }
            DisputePhase::StepRoots => {
                let units = d.step_units;
                if self.0.len() != units as usize + 1 {
                    return Err(MoveError::Length {
                        game: units.saturating_add(1),
                        ours: self.0.len(),
                    });
                }
                if self.0.first() != Some(&d.agreed) || self.0.last() != Some(&party.hi) {
                    return Err(MoveError::StepEnds);
                }
                let (Some((_, first_proof)), Some((_, last_proof))) =
                    (self.open(0), self.open(units))
                else {
                    return Err(MoveError::StepEnds);
                };
                Ok(Some(TxBody::StepRoot {
                    dispute: id,
                    root: self.root(),
                    first_proof,
                    last_proof,
                }))
            }
            DisputePhase::AwaitingReferee | DisputePhase::Resolved => Ok(None),
        }
    }
}
