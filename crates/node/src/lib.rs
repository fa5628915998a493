//! Agentic's node: validators run commonware simplex consensus with a BLS12-381
//! threshold-VRF beacon over commonware authenticated p2p; finalized blocks are
//! executed by the `agentic-protocol` ledger; blocks and consensus state persist in
//! commonware storage; a JSON HTTP API and a content-addressed blob store serve
//! clients and providers.
//!
//! ```text
//!   api (axum) ──submit──▶ mempool ──gossip──▶ peers
//!        │                    │ select
//!        │ query              ▼
//!        └──────────▶ chain ◀── consensus (simplex + marshal) ◀──▶ p2p
//!                     (State, event feed)
//!                       │
//!                     history (blocks, receipts, archived entities on disk;
//!                              the recent blocks in memory)
//! ```
//!
//! Every actor registers its metrics in its own runtime context; `GET /metrics` serves them
//! with commonware's consensus, p2p, storage and runtime metrics ([`metrics`]).
//!
//! See `README.md` in this crate for the decisions.

pub mod api;
pub mod chain;
pub mod consensus;
pub mod explorer;
pub mod genesis;
pub mod history;
pub mod localnet;
pub mod mempool;
pub mod metrics;
pub mod service;

pub use chain::{
    BlockRecord, Chain, ChainError, ChainEvent, FinalizedBlock, SharedChain, TxReceipt,
};
pub use consensus::{Arbiter, Engine, Submitter};
pub use history::{EntityKind, History, HistoryConfig, HistoryError};
pub use mempool::{AdmitError, Mempool, MempoolLimits, SharedMempool, Submit};
