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
//!
//! A generation stage's dispute is a **descent** ([`crate::bisection`], "Descent"): each
//! round both parties post the left and right child nodes of the span (`Bisect` with
//! `leaf` = left, `proof = [right]`). A dispute does not say which game it plays, but
//! the game does by its length: a bisection is over as many leaves as the trace has
//! ([`Bisection::leaves`](crate::bisection::Bisection::leaves)), a descent over one
//! fewer ([`Bisection::descent_leaves`](crate::bisection::Bisection::descent_leaves)),
//! and a generation stage has no step units. [`Leaves::next_descent_move`] plays a
//! descent for a caller that knows the job.

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
    /// A generation dispute's descent reached one leaf: the defendant names the
    /// referee's rows blob (`StepRoot` with the blob's hash), which a trace alone
    /// cannot build.
    #[error("the defendant must name the referee's rows blob")]
    RowsToName,
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
    ///
    /// A generation dispute (module docs: a game with no step units whose descent is
    /// over exactly these leaves) plays [`Leaves::next_descent_move`] instead.
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
        if self.is_descent(d) {
            return self.next_descent_move(id, d, me);
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

    /// Whether dispute `d` is a generation stage's descent over these leaves (module
    /// docs): no step units, and a game over one leaf more than this trace has.
    fn is_descent(&self, d: &Dispute) -> bool {
        d.step_units == 0 && self.0.len() + 1 == d.game.leaves() as usize
    }

    /// This party's move in generation dispute `id` now (`Ok(None)`: not its turn):
    ///
    /// - `Bisecting`: these leaves must be the stage's whole trace, hashing to this
    ///   party's root on chain; the move posts the left and right child nodes of the
    ///   game's span (`Bisect`, `leaf` = left, `proof = [right]`).
    /// - `StepRoots`: the descent is down to one leaf; the challenger waits, the
    ///   defendant must name the referee's rows blob, which these leaves cannot build
    ///   ([`MoveError::RowsToName`]).
    pub fn next_descent_move(
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
                if d.game.descent_split().is_none() {
                    return Ok(None);
                }
                let ours = self.root();
                if ours != party.root {
                    return Err(MoveError::RootMismatch {
                        ours,
                        on_chain: party.root,
                    });
                }
                let (left, right) = crate::bisection::descent_children(&self.0, &d.game).ok_or(
                    MoveError::Length {
                        game: d.game.descent_leaves(),
                        ours: self.0.len(),
                    },
                )?;
                Ok(Some(TxBody::Bisect {
                    dispute: id,
                    leaf: left,
                    proof: vec![right],
                }))
            }
            DisputePhase::StepRoots if party.defendant => Err(MoveError::RowsToName),
            DisputePhase::StepRoots | DisputePhase::AwaitingReferee | DisputePhase::Resolved => {
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bisection::{root_of_top, Bisection};
    use crate::state::DisputeKind;
    use crate::types::{Amount, Height, JobId};

    const DEFENDANT: Address = Address([1; 32]);
    const CHALLENGER: Address = Address([2; 32]);

    /// A generation stage's trace: 3 steps × (3 layers + 1) leaves.
    fn trace(first_bad: Option<usize>) -> Leaves {
        let mut leaves: Vec<Hash> = (0..12u8).map(|i| Hash([i; 32])).collect();
        if let Some(i) = first_bad {
            for leaf in &mut leaves[i..] {
                leaf.0[31] ^= 0xff;
            }
        }
        Leaves::new(leaves)
    }

    fn dispute(game: Bisection, defendant: &Leaves, challenger: &Leaves) -> Dispute {
        Dispute {
            job: JobId(7),
            stage: 0,
            kind: DisputeKind::Audit,
            defendant: DEFENDANT,
            defendant_root: defendant.root(),
            challenger: CHALLENGER,
            challenger_root: challenger.root(),
            challenger_price: Amount(0),
            game,
            agreed: Hash::default(),
            defendant_hi: Hash::default(),
            challenger_hi: Hash::default(),
            defendant_output: Hash::default(),
            challenger_output: Hash::default(),
            defendant_move: None,
            challenger_move: None,
            deadline: Height(10),
            phase: DisputePhase::Bisecting,
            step_units: 0,
            step: None,
        }
    }

    /// The ledger's check of a descent move (`State::descend`): the two children hash
    /// to the party's node, its trace root at the top.
    fn accepted(d: &Dispute, party_root: Hash, party_hi: Hash, body: &TxBody) -> Option<Hash> {
        let TxBody::Bisect { leaf, proof, .. } = body else {
            return None;
        };
        let [right] = proof.as_slice() else {
            return None;
        };
        let node = crate::merkle::hash_node(&leaf.0, &right.0);
        let ok = if d.game.round() == 0 {
            root_of_top(u64::from(d.game.descent_leaves()), &node) == party_root.0
        } else {
            node == party_hi.0
        };
        ok.then_some(*leaf)
    }

    #[test]
    fn a_generation_dispute_descends_to_the_first_differing_leaf() {
        let (ours, theirs) = (trace(None), trace(Some(6)));
        let game = Bisection::descent(ours.len() as u32).unwrap();
        let mut d = dispute(game, &ours, &theirs);
        while d.game.descent_split().is_some() {
            let mut lefts = Vec::new();
            for (who, leaves) in [(DEFENDANT, &ours), (CHALLENGER, &theirs)] {
                let body = leaves.next_move(DisputeId(1), &d, who).unwrap().unwrap();
                let p = d.party(who).unwrap();
                let left = accepted(&d, p.root, p.hi, &body).expect("the ledger takes it");
                let TxBody::Bisect { proof, .. } = body else {
                    unreachable!()
                };
                if p.defendant {
                    d.defendant_hi = proof[0];
                } else {
                    d.challenger_hi = proof[0];
                }
                lefts.push(left);
            }
            let agree = lefts[0] == lefts[1];
            d.game.record_descent(agree).unwrap();
            if !agree {
                d.defendant_hi = lefts[0];
                d.challenger_hi = lefts[1];
            }
        }
        assert_eq!(d.game.descent_leaf(), Some(6));
        // Down to one leaf: the defendant names the rows, the challenger waits.
        d.phase = DisputePhase::StepRoots;
        assert_eq!(
            ours.next_move(DisputeId(1), &d, DEFENDANT),
            Err(MoveError::RowsToName)
        );
        assert_eq!(theirs.next_move(DisputeId(1), &d, CHALLENGER), Ok(None));
    }

    #[test]
    fn a_descent_move_needs_this_partys_trace() {
        let (ours, theirs) = (trace(None), trace(Some(2)));
        let game = Bisection::descent(ours.len() as u32).unwrap();
        let d = dispute(game, &ours, &theirs);
        assert_eq!(
            theirs.next_move(DisputeId(1), &d, DEFENDANT),
            Err(MoveError::RootMismatch {
                ours: theirs.root(),
                on_chain: ours.root(),
            })
        );
        assert_eq!(
            ours.next_move(DisputeId(1), &d, Address([3; 32])),
            Err(MoveError::NotParty)
        );
        // A bisection over the same trace still opens its midpoint.
        let d = dispute(Bisection::new(ours.len() as u32).unwrap(), &ours, &theirs);
        let (leaf, proof) = ours.open(d.game.midpoint().unwrap()).unwrap();
        assert_eq!(
            ours.next_move(DisputeId(1), &d, DEFENDANT),
            Ok(Some(TxBody::Bisect {
                dispute: DisputeId(1),
                leaf,
                proof,
            }))
        );
    }
}
