//! # The Agentic provider daemon
//!
//! A provider sells its machine's compute: it bonds stake, keeps a standing offer on
//! the chain (price, capacity, measured speed, network coordinate, data-plane
//! endpoint), runs the pipeline stages the ledger assigns it, moves activations
//! directly to the next stage's provider, commits and reveals its results, and is
//! paid `ops × price` when the challenge window closes. It also audits the stages the
//! ledger draws it for (committing to its own result before the replicas reveal, then
//! opening it), claims a job's data unavailable when it cannot fetch it, and plays the
//! bisection game over results it defends or disputes, making the agreed activation
//! available to the validators' referee.
//!
//! ```text
//!                 ┌──────────────────────── node API (HTTP) ────────────────────────┐
//!                 │ work, jobs, offers, txs, blobs                                   │
//!   ┌─────────────┴────────────┐                                    ┌────────────────┴─────────┐
//!   │ provider A (stage 0)     │ ──PUT /v1/activations/{job}/1 ───▶ │ provider B (stage 1)     │
//!   │  daemon ─ journal        │ ◀──GET /v1/blobs/{hash} (range) ── │  daemon ─ journal        │
//!   │  data plane ─ blob store │                                    │  data plane ─ blob store │
//!   └──────────────────────────┘                                    └──────────────────────────┘
//! ```
//!
//! * [`daemon`] — the loop (`daemon/mod.rs`) and one module per role it plays:
//!   registration and the offer (`register`); the stages it holds — compute,
//!   commit-then-reveal, publication, pushing activations, availability claims
//!   (`stage`); audits, commit then report (`audit`); disputes, bisection moves and the
//!   agreed activation for the referee (`dispute`); payment, planned by a pure function
//!   of the journal and the jobs (`settle`); and the work it runs off the loop
//!   (`tasks`).
//! * [`dataplane`] — content-addressed blob routes, the activation inbox, RTT pings,
//!   and resumable verified downloads.
//! * [`journal`] — what survives a crash (results committed to with their trace leaves,
//!   what was revealed, audits reported).
//! * [`misbehave`] — the stage execution, and the named cheats a daemon can be told to
//!   commit (`--misbehave`): what each does and how the ledger catches it.
//! * [`measure`] — speed of the compute runtime and Vivaldi coordinates.
//! * [`payments`] — what the ledger paid, read from its events.
//! * `local` (feature `localnet`) — a whole market in one process (demo, benches,
//!   tests).
//!
//! Everything the daemon does is checked by someone else: the chain checks the
//! commitments and the stage chaining, the next provider checks its input against the
//! chain, auditors and the dispute game check the trace. The daemon itself trusts only
//! hashes that the chain agreed on.

pub mod daemon;
pub mod dataplane;
pub mod journal;
#[cfg(feature = "localnet")]
pub mod local;
pub mod measure;
pub mod misbehave;
pub mod payments;
pub mod session;

pub use daemon::{AuditTiming, Config, Provider, ProviderError, SessionTiming, Status, Stuck};
pub use misbehave::{Misbehaviour, UnknownMisbehaviour};
