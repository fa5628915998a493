//! Agentic's agent layer: everything that buys compute on the market.
//!
//! A requester — a person at the CLI, a program, or an autonomous agent under a
//! mandate — turns "run this model on this input" into a ledger job, follows it
//! to its end, fetches the verified output and accounts for every token:
//!
//! ```text
//!   JobRequest ──prepare()──▶ PreparedJob ──Requester::submit──▶ JobId ──wait──▶ Job
//!   (model, input,  │  pure: load the bundle,    │ uploads the bundle        │   │
//!    stages, price, │  encode + meter the input, │ and input blobs, signs    │   ├─ result(): output
//!    placement)     │  split layers, partition,  │ SubmitJob                 │   │  activation, hash-checked
//!                   │  escrow                    ▼                           │   └─ bill(): what the
//!          offers ──┘                  node API (agentic_client::Client)  ◀──┘      ledger's events paid
//! ```
//!
//! | module | what | state |
//! | --- | --- | --- |
//! | [`requester`] | the requester SDK: [`requester::prepare`] (pure), [`requester::Requester`] (the I/O shell over the node API), [`requester::cost`](mod@requester::cost) | here |
//! | [`procure`] | the autonomous procurement agent: a goal and a budget in, quotes, jobs, monitoring, local verification and challenges, re-purchase, and a report out, spending under an on-chain mandate | here |
//! | [`mcp`] | a Model Context Protocol server (rmcp, stdio and bearer-token-guarded streamable HTTP) exposing offers, quote, submit, status, result, challenge, balance and mandate as tools | here |
//! | [`gateway`] | an OpenAI-compatible HTTP gateway (`/v1/chat/completions` streamed or not, `/v1/completions`, `/v1/embeddings`, `/v1/models`): each request one market job under one key | here |
//! | [`verify`] | recompute a stage here, compare it with the agreed result, post a `Challenge` and play the bisection game — shared by `procure` and `mcp` | here |
//!
//! The split follows the rest of the workspace: what decides (the layer split, the
//! placement, the escrow, the bill) is plain functions over data, tested without a
//! network; the [`requester::Requester`] only moves bytes and transactions. The
//! ledger enforces every rule again — nothing here is trusted by anyone but its
//! own user — so these checks exist to fail early, with a clear reason, before
//! a model is uploaded or a fee is paid.

pub mod gateway;
pub mod mcp;
pub mod procure;
pub mod requester;
pub mod serve;
pub mod verify;
