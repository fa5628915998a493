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
//!   jobs       id → spec (model, input, stages, max price, deadline, requirements, placement),
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
//! namespace [`tx::TX_NAMESPACE`] ([`tx`]). The fee is burned. A
//! transaction applies fully or not at all: a rejected one returns a
//! [`TxError`] and changes nothing, not even the nonce.
//!
//! | kind | effect |
//! | --- | --- |
//! | Transfer | move balance |
//! | Bond / Unbond / Withdraw | balance → bonded → (unbonding delay) → withdrawable → balance |
//! | RegisterProvider / UpdateProvider / Retire | standing offer; min stake bonded; retire once no open work |
//! | GrantMandate / RevokeMandate | let an agent spend the principal's balance within caps |
//! | SubmitJob | lock escrow (own balance, or the principal's under a mandate) |
//! | CancelJob | the requester withdraws a job before any commit: providers released, full refund |
//! | CommitResult / RevealResult | commit-then-reveal a stage result |
//! | AuditReport | the drawn auditor's own result: agree → paid, disagree → dispute |
//! | Challenge | anyone, with a bond, within the challenge window → dispute |
//! | Bisect | one move of the dispute game, with a Merkle proof |
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
//! 3. the referee judges every dispute narrowed to one layer; slashing;
//! 4. match waiting stages to providers ([`matching`]);
//! 5. issuance (a governed amount per block, zero by default).
//!
//! ## Job lifecycle
//!
//! ```text
//!   SubmitJob ──▶ Matching ──▶ Running ──commit──▶ reveal ──▶ (audit?) ──▶ Challengeable ──▶ Finalized
//!                    ▲  │         │ missed deadline              │ disagree       │ challenge
//!                    └──┼ re-route┘ (penalty, excluded)          └────▶ Disputed ◀┘
//!                       │                                          defendant wins → Challengeable
//!                       │                                          defendant loses → job Failed, refund
//!                       └─ CancelJob (requester, before any commit) or no provider in time → Cancelled, full refund
//! ```
//!
//! A job is split into `k` stages (contiguous layer ranges chosen by the
//! requester with the compute partitioner); each stage gets its own
//! provider (or the named placement, if it qualifies), `replicas` copies
//! each. Payment is exact: each provider gets `ops × its price / 10^6`,
//! the rest of the escrow returns to the payer.
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

pub mod bisection;
pub mod coord;
pub mod error;
pub mod event;
pub mod matching;
pub mod merkle;
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
pub use params::{ParamChange, ParamKey, Params};
pub use referee::{Finding, Referee, RefereeError, Verdict, Verdicts};
pub use state::{Block, BlockOutcome, Genesis, GenesisAccount, GenesisError, Receipt, State};
pub use tx::{verify_batch, SignedTx, Tx, TxBody};
pub use types::{
    Address, Amount, ChainId, DisputeId, Endpoint, Hash, Height, JobId, MandateId, ProposalId,
};
