//! Act 5 (pending): an audit catches a cheating provider and the dispute game
//! slashes it.
//!
//! The ledger side exists (audits, `AuditReport`, the bisection game, the
//! referee, slashing — see `agentic_protocol::state::disputes`), but the
//! provider daemon has no misbehaviour modes yet, so nothing on this network
//! can cheat or dispute for real. The act arrives with issue #6, which adds the
//! named cheating providers (one small module per misbehaviour) and the
//! daemon's auditor and dispute moves; until then the demo says so instead of
//! faking it.

use serde::Serialize;

use crate::demo::world::World;

/// Where the dispute act stands.
#[derive(Clone, Debug, Serialize)]
pub struct DisputeReport {
    /// `pending`.
    pub status: &'static str,
    /// Why, and when it arrives.
    pub note: &'static str,
}

/// The act's title.
pub const TITLE: &str = "An audit catches a cheating provider; the dispute game slashes it";

/// Why the act is not played yet.
pub const NOTE: &str = "the dispute act arrives with issue #6: provider misbehaviour modes (and the daemon's auditor and dispute moves) are not built yet, so this demo does not fake one";

pub fn run(w: &mut World) -> DisputeReport {
    w.progress.begin(TITLE);
    w.act(&format!("{TITLE} (pending)"), vec![NOTE.to_string()]);
    DisputeReport {
        status: "pending",
        note: NOTE,
    }
}
