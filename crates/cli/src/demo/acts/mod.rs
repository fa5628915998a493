//! The acts of the story, in the order they are played; each returns its part
//! of the report and records its checks in the [`World`](super::world::World).

pub mod dispute;
pub mod failover;
pub mod generation;
pub mod governance;
pub mod ledger;
pub mod mandate;
pub mod open;
pub mod pipeline;

/// Number of acts (for the progress display).
pub const COUNT: u64 = 8;
