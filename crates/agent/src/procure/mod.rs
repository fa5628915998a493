//! The autonomous procurement agent: a goal and a budget in; quotes, a purchase
//! under its mandate, monitoring, re-submission on failure, and a report out.
//!
//! ```text
//!  goal.toml ─▶ Goal ─▶ ProcurementAgent::run ─▶ Report (what it bought, why, what it cost, what it got)
//!                        │ plan: quotes + scores (pure)
//!                        │ policy: budget, balance, mandate (pure) ── refuse with a reason
//!                        │ watch: follow the job, record disputes, recompute stages here
//!                        │        and challenge a wrong one (crate::verify)
//!                        │ generation: stream a generation's tokens, check them against
//!                        │        the chain and (verify_locally) a local run
//!                        └ requester: submit, result, cancel (I/O)
//! ```
//!
//! The agent signs with its own key. Under a mandate the principal pays, and the
//! ledger enforces the caps and the expiry whatever the agent does; the agent
//! checks the same rules first ([`policy`]) so that a forbidden purchase is never
//! signed, and adds its goal's own budget on top.

mod agent;
mod error;
pub mod generation;
pub mod goal;
pub mod plan;
pub mod policy;
mod report;
pub mod watch;

pub use agent::{Attempt, Outcome, ProcurementAgent, Report};
pub use error::AgentError;
pub use generation::{Generation, LocalCheck, TranscriptCheck};
pub use goal::{GenerateGoal, Goal, GoalError, Preferences};
pub use plan::Quote;
pub use policy::Refusal;
pub use watch::{Check, DisputeRecord, OpenedBy, StageCheck, Step, Verdict};
