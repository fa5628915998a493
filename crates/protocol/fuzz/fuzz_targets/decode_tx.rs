//! Decoding arbitrary bytes as a signed transaction must never panic, and
//! whatever decodes must re-encode to the same bytes (canonical encoding).
#![no_main]

use agentic_protocol::SignedTx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = SignedTx::from_bytes(data) {
        assert_eq!(tx.to_bytes(), data);
        let _ = tx.verify();
    }
});
