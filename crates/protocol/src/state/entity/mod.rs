//! The ledger's entities: the values stored under each state key
//! (`state::commit::StateKey`), one module per kind, each type with its
//! canonical encoding (`commonware-codec`) and its JSON form (`serde`).
//!
//! | module | types | key |
//! | --- | --- | --- |
//! | `account` | Account | `Account(address)` |
//! | `provider` | Provider | `Provider(address)` |
//! | `mandate` | Mandate | `Mandate(id)` |
//! | `job` | Job, JobStatus, Stage, StagePhase, Slot, Assignment, AuditSlot, Claim | `Job(id)` |
//! | `dispute` | Dispute, DisputeKind, DisputePhase; Party (a view, not stored) | `Dispute(id)` |
//! | `proposal` | Proposal, ProposalStatus, VoteRecord | `Proposal(id)`, `Vote(id, voter)` |
//! | `meta` | Meta | `Meta` |
//!
//! The encodings are consensus: the state root hashes `key ‖ value` for
//! every entry, so changing a field's order, an enum's tags or a list's
//! bound changes the root of every state that holds one. Every type is
//! re-exported from [`crate::state`]; this module holds data only, no
//! ledger logic.

mod account;
mod dispute;
mod job;
mod mandate;
mod meta;
mod proposal;
mod provider;

pub use account::Account;
pub use dispute::{Dispute, DisputeKind, DisputePhase, Party};
pub use job::{Assignment, AuditSlot, Claim, Job, JobStatus, Slot, Stage, StagePhase};
pub use mandate::Mandate;
pub use meta::Meta;
pub use proposal::{Proposal, ProposalStatus, VoteRecord};
pub use provider::Provider;
