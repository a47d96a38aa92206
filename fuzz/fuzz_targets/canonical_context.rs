//! `keyledger_crypto::parse_canonical_context` on arbitrary bytes (the encryption context
//! inside an envelope file header).
//!
//! Asserts: no panic; whatever it accepts re-encodes byte for byte (`canonical_context`), so
//! one context has exactly one accepted encoding.
#![no_main]

use keyledger_crypto::{canonical_context, parse_canonical_context};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = parse_canonical_context(data) {
        assert_eq!(canonical_context(&parsed), data, "parse_canonical_context accepted a non-canonical encoding");
    }
});
