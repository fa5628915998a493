//! `lapse`: a generation stage that runs the session and then never commits.
//!
//! The session streams every token (the requester has its text), and then this
//! stage's provider goes quiet: it neither commits nor reveals, as a provider that
//! dies after the last token would — or a requester's second identity holding one
//! stage, hoping the job fails so that the honest stages go unpaid and the escrow
//! comes back. The ledger's answer (`jobs::deadlines`): once another stage has
//! committed, the lapsed provider pays the miss penalty, is excluded, and the stage
//! goes back to matching; the replacement rebuilds the stage's trace from the
//! transcript by one prefill (as an auditor replays it) and commits, and every stage
//! is paid once. On any other job the daemon is honest.

use super::Misbehaviour;

/// Whether a daemon in `mode` commits the generation stages it ran.
pub fn commits_generation(mode: Option<Misbehaviour>) -> bool {
    mode != Some(Misbehaviour::Lapse)
}
