//! # The Agentic ledger
//!
//! A pure, deterministic state machine: no I/O, no clock, no OS randomness,
//! no floating point. The node feeds it blocks (`height`, a `beacon` from
//! the threshold VRF, signed transactions) and a [`Referee`] that can
//! re-execute one neural-network layer; everything else is computed here,
//! identically on every machine.
//!
//! ## State
//!
//! ```text
//!   accounts   address → balance, nonce, bonded, withdrawable
//!   unbonding  (release height, address) → amount
//!   providers  address → offer (capabilities, price/mega-op, region, coordinate, capacity,
//!                        endpoint host:port, speed ops/s), load, reputation
//!   mandates   id → principal, agent, caps (total, per job, unit price), expiry, min verification, spent
//!   jobs       id → spec (model, input, stages, max price, deadline, requirements, placement,
//!                          generation token counts),
//!                   escrow, per-stage phase and replica assignments
//!   disputes   id → parties, trace roots, bisection interval, moves, deadline
//!   proposals  id → change, tallies, status;   votes (proposal, voter) → weight
//!   params, meta (height, next ids, genesis supply, issued, burned, total bonded)
//! ```
//!
//! Every entry has a canonical encoding; the state root ([`State::root`]) is
//! an LtHash ([`root`]) over all `key ‖ value` entries, updated at the end of
//! each block for exactly the entries the block changed.
//!
//! ## Transactions
//!
//! Signed with ed25519 over `(chain id, nonce, fee, body)` under the
//! namespace [`tx::TX_NAMESPACE`] ([`tx`]). The fee is burned and must cover
//! the work the transaction causes ([`Params::required_fee`]: per slot to
//! match and per KiB). A
//! transaction applies fully or not at all: a rejected one returns a
//! [`TxError`] and changes nothing, not even the nonce.
//!
//! | kind | effect |
//! | --- | --- |
//! | Transfer | move balance |
//! | Bond / Unbond / Withdraw | balance → bonded → (unbonding delay) → withdrawable → balance; all slashable until withdrawn; no withdraw with open work or disputes, no unbond of voted stake before the vote ends |
//! | RegisterProvider / UpdateProvider / Retire | standing offer; min stake bonded; retire once no open work or dispute |
//! | GrantMandate / RevokeMandate | let an agent spend the principal's balance within caps |
//! | SubmitJob | lock escrow (own balance, or the principal's under a mandate) |
//! | CancelJob | the requester withdraws a job before any commit: providers released, full refund |
//! | CommitResult / RevealResult | commit-then-reveal a stage result |
//! | CommitSession | a generation stage's commitment, with its input claim in the clear for the drawn auditor; its reveal must claim the same input |
//! | AuditCommit | the auditor drawn at the stage's last commitment commits to its own result; replicas reveal only after it |
//! | AuditReport | the auditor opens that commitment once replicas revealed: agree → paid, disagree → dispute |
//! | ClaimUnavailable | an assigned provider claims the job's model or input unavailable; the referee checks |
//! | Challenge | anyone, with a bond, within the challenge window → dispute |
//! | Bisect | one move of the dispute game, with a Merkle proof |
//! | StepRoot | a training dispute's root over the disputed step's units |
//! | ReplaceStage | a generation session member reports a stage that dropped out: re-matched |
//! | Propose / Vote | parameter changes by bonded stake |
//!
//! ## JSON
//!
//! Every data type here — transactions, state entries, events, errors,
//! parameters — is `serde` `Serialize` and `Deserialize`, so the node API
//! writes them and clients read them back into the same types
//! (`from_value(to_value(x)) == x`). Amounts are decimal strings, hashes and
//! addresses 64 hex digits ([`types`]); values that have invariants (an
//! [`Endpoint`], a bisection game) are checked on the way in.
//!
//! ## Per-block steps (after the transactions, in this order)
//!
//! 1. due timers, by height: parameter activations, proposal tallies,
//!    commit/reveal deadlines (penalize, exclude, re-route), audit
//!    deadlines, challenge-window closes (payout), dispute timeouts;
//! 2. release unbonded stake whose delay has passed;
//! 3. the referee judges every dispute narrowed to one layer (slashing,
//!    settlement) and every availability claim;
//! 4. match waiting stages to providers ([`matching`]);
//! 5. issuance (a governed amount per block, zero by default).
//!
//! ## Job lifecycle
//!
//! ```text
//!   SubmitJob ──▶ Matching ──▶ Running ──commit──▶ (audit drawn? auditor commits) ──▶ reveal ──▶ (auditor reports) ──▶ Challengeable ──▶ Finalized
//!                    ▲  │         │ missed deadline              │ disagree       │ challenge
//!                    └──┼ re-route┘ (penalty, excluded)          └────▶ Disputed ◀┘
//!                       │                                          defendant wins → Challengeable
//!                       │                                          defendant loses → job Failed: delivered stages still paid, rest refunded
//!                       └─ CancelJob (requester, before any commit) or no provider in time → Cancelled, full refund
//! ```
//!
//! A job is split into `k` stages (contiguous layer ranges chosen by the
//! requester with the compute partitioner); each stage gets its own
//! provider (or the named placement, if it qualifies), `replicas` copies
//! each. Payment is exact: each provider gets `ops × its price / 10^6`,
//! the rest of the escrow returns to the payer.
//!
//! ## Generation jobs
//!
//! A job with [`tx::JobSpec::generation`] (`prompt_tokens`, `max_tokens`) is
//! one session across its stages: their providers generate token by token
//! off-chain and the chain sees only the end. Such a job has one replica per
//! stage and no training stage, is matched whole, and every stage may commit
//! as soon as it is assigned, with `CommitSession`: the commitment plus the
//! stage's input claim in the clear, which the drawn auditor checks the input
//! rows it fetches against before it commits (it replays only the stage's own
//! layers) and the reveal must repeat. A stage's ops over a generation of `n` steps
//! after a prompt of `p` tokens are
//! `ops + (n−1)·step_ops + key_ops·((n−1)·p + (n−1)·n/2)`
//! ([`tx::StageSpec::generation_ops`]); the escrow covers `n = max_tokens`
//! and each provider is paid for the `steps` it revealed. The stages' results
//! are held until all revealed, then checked as one session
//! ([`state::session_break`]): same steps, each stage's output the next one's
//! input, the last stage's output stage 0's input (the token transcript). A
//! broken session fails the job, nobody paid, its bill burned (breaking a
//! session never pays); a stage that misses a deadline after the session
//! ended is re-filled, or the session salvaged: its committed stages paid
//! (see the crate README).
//!
//! ## The dispute game
//!
//! A trace is the list `input hash, output hash of layer 1, …, layer n`,
//! committed as a Merkle root ([`merkle`]). The parties agree on leaf 0 (the
//! stage input) and disagree on leaf `n` (the output). Each round both
//! reveal the leaf at the midpoint with a proof; the interval halves
//! ([`bisection`]). After `⌈log2 n⌉` rounds one layer is left whose input
//! both agree on: the validators re-execute it through the [`Referee`] and
//! the loser is slashed. A party that does not move in time loses.
//!
//! ## Economics: why cheating does not pay
//!
//! A provider that returns a wrong result to save the cost `C` of a stage
//! is caught with probability at least `p` (the audit probability, or 1
//! with replicas, or whenever anyone re-executes and challenges) and then
//! loses `slash_ppm × stake`, plus the stage payment. Cheating is
//! unprofitable when `p × slash_ppm × stake ≥ C`; with the defaults (`p ≥
//! 2%`, `slash = 50%`, `min_provider_stake = 10,000`), any stage cheaper
//! than 100 tokens is covered by the minimum stake alone, and requesters can
//! require more stake (`min_stake`) or full audits for costlier jobs.
//! Frivolous challengers lose their bond, so challenges cost nothing to the
//! honest. Reputation lowers audit probability, but is bounded by stake so
//! it cannot be farmed cheaply.
//!
//! ## Coalitions
//!
//! Identities are free, so every rule is checked against a coalition of
//! them: auditors and replicas after the first are drawn by stake (a
//! coalition audits itself in proportion to its stake, whatever its
//! prices); auditors commit before anyone reveals (no copying); stake stays
//! slashable until withdrawn and cannot be withdrawn, retired or unbonded
//! below a job's `min_stake` while its work or disputes are open; a failed
//! job still pays honest delivered work, from the cheater's slash first;
//! data a requester does not publish costs it the providers' penalties;
//! voted stake stays locked until the vote ends. `tests/adversarial.rs`
//! plays each attack.

pub mod bisection;
pub mod coord;
pub mod error;
pub mod event;
pub mod leaves;
pub mod matching;
pub use agentic_primitives::{hex, merkle};
pub mod params;
pub mod referee;
pub mod reputation;
pub mod root;
pub mod state;
pub mod tx;
pub mod types;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

pub use error::{BlockError, TxError};
pub use event::{Event, EventRecord, Resolution};
pub use leaves::{Leaves, MoveError};
pub use params::{ParamChange, ParamKey, Params};
pub use referee::{Finding, Referee, RefereeError, Verdict, Verdicts};
pub use state::{
    Block, BlockOutcome, Genesis, GenesisAccount, GenesisError, GenesisProvider, Receipt, State,
};
pub use tx::{verify_batch, SignedTx, Tx, TxBody};
pub use types::{
    Address, Amount, ChainId, DisputeId, Endpoint, Hash, Height, JobId, MandateId, ProposalId,
};
