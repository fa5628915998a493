//! The node API, written once.
//!
//! - [`api`]: every request and response body of the node's HTTP API (and of a
//!   provider's data plane). The node's handlers build these types, the OpenAPI
//!   document at `/openapi.json` is checked against them, and [`Client`] returns them.
//! - [`Client`]: one typed method per route; errors keep the API's code.
//! - [`blobs`] and [`blob_routes`]: the content-addressed blob protocol, both ends of
//!   it — the on-disk store and the `PUT/GET/HEAD /v1/blobs/{hash}` routes that the
//!   node and every provider's data plane serve.
//! - [`keystore`]: key files (an ed25519 identity, and a validator's threshold share).
//!
//! `agent`, `provider` and the CLI talk to the network only through this crate; it
//! depends on `protocol` for the ledger's types and on nothing of the node.

pub mod api;
pub mod blob_routes;
pub mod blobs;
mod http;
pub mod keystore;
mod sse;

pub use http::{Client, ClientError};
