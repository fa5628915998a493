//! The requester SDK: from "run this model on this input" to a verified output
//! and an exact bill.
//!
//! ```text
//!            ┌──────────────────────── pure (no network) ─────────────────────────┐
//!  JobRequest│ prepare(): bundle ─ encode input ─ meter ops ─ split / place ─ spec │PreparedJob
//!  + offers  │            (placement: Ledger | Named | Auto → partitioner)         │ + escrow
//!            └─────────────────────────────────────────────────────────────────────┘
//!                                          │
//!  Requester (I/O): submit ── HEAD/PUT /v1/blobs (bundle, input) ── SubmitJob ──▶ JobId
//!                   wait   ── GET /v1/events: re-read GET /v1/jobs/{id} after each block that
//!                             touched the job, until settled (progress callback)
//!                   result ── last stage's agreed output ── GET /v1/blobs/{hash} ── check ──▶ Activation
//!                   cancel ── CancelJob (only before any provider committed)
//!                                          │
//!                   bill   ── GET /v1/events?from=<submitted_at>: the job's payment events
//!  cost(&Job, id, &events) (pure): per stage and replica what the ledger paid (beside
//!                   the bill ops × price), auditors' fees, locked, refund
//! ```
//!
//! # Rules this module follows
//!
//! 1. **The job names content, not places.** The model is the blake3 of its
//!    bundle (`agentic_compute::bundle`), the input the blake3 of its
//!    activation's canonical bytes; both blobs go to the node's blob store
//!    before `SubmitJob`, skipped when the node already holds them.
//! 2. **Stages are contiguous layer ranges** that tile the model; a stage's ops
//!    are the sum of its layers' metered ops, so the spec's total equals the
//!    metered total exactly and the escrow is `State::escrow_for(&spec)`.
//! 3. **Placement** ([`placement`]): the ledger matches (layers balanced by
//!    ops), the requester names providers (balanced layers), or the
//!    partitioner chooses both from the offers' speeds and coordinates.
//! 4. **Pipelines chain by hash.** Stage `i`'s agreed output is stage `i + 1`'s
//!    input; the last stage's output is the job's output, published by its
//!    provider to the node's blob store; [`Requester::result`] refuses bytes
//!    that do not hash to it.
//! 5. **Costs are recomputed, not trusted** ([`cost`](mod@cost)): the same formula the
//!    ledger pays with, from the job record.
//! 6. **Training is a job of the same shape** ([`training`]): the model blob is a
//!    training task, the input a training state, a stage's layer range a step
//!    range (split evenly, every step costs the same), and
//!    [`Requester::training_result`] returns the new weights with every step's
//!    loss, checked against the stages' agreed trace roots.

mod client;
pub mod cost;
mod error;
mod follow;
pub mod generate;
pub mod placement;
mod prepare;
mod request;
mod spec;
pub mod training;

pub use client::{JobResult, Requester, Submitted};
pub use cost::{cost, CostBreakdown, SlotCost, StageCost};
pub use error::RequesterError;
pub use follow::JobFeed;
pub use generate::{GenerationInput, Streamed};
pub use placement::{PlanSummary, PlannedStage, ASSUMED_BANDWIDTH_BYTES_PER_S};
pub use prepare::prepare;
pub(crate) use request::candidate;
pub use request::{JobInput, JobRequest, OfferView, PlacementChoice, TrainingInput};
pub use spec::PreparedJob;
pub use training::{StepSummary, TrainingResult, TrainingSummary};

#[cfg(test)]
mod tests;
