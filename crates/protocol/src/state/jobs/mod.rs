//! The job lifecycle, from `SubmitJob` to payout.
//!
//! ```text
//!  SubmitJob ─▶ Matching ──(per-block match)──▶ Running ──all commit──▶ reveal window ──all reveal──┐
//!                  ▲  │                            │                                                │
//!                  │  ├─ no provider before        └─ a replica misses its deadline:                │
//!                  │  │  match_timeout: Cancelled     penalized, excluded, slot re-matched ─────────┤
//!                  │  └─ CancelJob before any commit (Matching or Running): Cancelled, full refund  │
//!                  └──────────────────────────────────────────────────────────────────────────────┘ │
//!            ┌──────────────────────────────────────────────────────────────────────────────────────┘
//!            ▼
//!   replicas disagree? ──yes──▶ Disputed (replica vs replica)
//!            │ no
//!   beacon draws an audit? ──yes──▶ Auditing ──agree──┐   (disagree ─▶ Disputed)
//!            │ no                                     │
//!            ▼                                        ▼
//!      Challengeable (challenge window; a Challenge ─▶ Disputed)
//!            │ window closes
//!            ▼
//!        Finalized: each replica paid ops × its price; when every stage is
//!        final the job completes and the unused escrow goes back to the payer.
//! ```
//!
//! One module per step, each an `impl State` block:
//!
//! | module | transactions | per-block step |
//! | --- | --- | --- |
//! | `submit` | SubmitJob (spec checks, escrow, payer) | |
//! | `matching` | | fill empty replica slots; vacated slots go back here |
//! | `commit` | CommitResult, CommitSession (a generation stage: its input claim in the clear) | |
//! | `audit` | | the beacon's audit decision at the last commitment, the auditor's draw |
//! | `reveal` | RevealResult | open the reveal window; compare the replicas' results |
//! | `deadlines` | | missed commit, reveal and audit deadlines |
//! | `settle` | | challenge windows close, payout, completion |
//! | `stop` | CancelJob | match timeout, failure after a lost dispute |
//! | `replace` | ReplaceStage (a generation session's stage lost its provider) | |
//!
//! The auditor's own transactions (`AuditCommit`, `AuditReport`) and the
//! dispute game live in `state::disputes`; availability claims in
//! `state::availability`.

mod audit;
mod commit;
mod deadlines;
mod matching;
mod replace;
mod reveal;
mod settle;
mod stop;
mod submit;

pub use audit::{audit_draw, auditor_seed};
pub use matching::{replica_seed, DRAW_ATTEMPTS};
pub use reveal::{session_break, session_break_among};
