//! The primitives every Agentic crate shares, below both the ledger (`protocol`)
//! and the runtime (`compute`):
//!
//! - [`Hash`] and [`Address`]: 32-byte values with one binary encoding
//!   (commonware-codec), one JSON form (64 hex digits) and one text form.
//! - [`hex`]: encoding and strict decoding of hex strings, with typed errors.
//! - [`merkle`]: the binary Merkle tree over 32-byte leaves that commits every
//!   trace; the runtime builds roots with it, the ledger checks proofs with it.
//! - [`codec`]: bounded list encoding and the `codec_struct!` macro for structs
//!   written field by field.
//!
//! Everything here is pure and deterministic: no clock, no randomness, no floating
//! point.

pub mod bytes32;
pub mod codec;
pub mod hex;
pub mod merkle;

pub use bytes32::{Address, Hash};

// For the `codec_struct!` macro's expansion in other crates.
#[doc(hidden)]
pub use bytes as __bytes;
#[doc(hidden)]
pub use commonware_codec as __codec;
