//! The Agentic ledger state machine (module docs written by the protocol work).

pub mod bisection;
pub mod coord;
pub mod matching;
pub mod merkle;
pub mod reputation;
pub mod root;
