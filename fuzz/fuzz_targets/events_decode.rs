//! `keyledger_events::decode` on arbitrary bytes (event records as read from JetStream).
//!
//! Asserts: no panic; and whatever `decode` accepts is the one canonical encoding of what it
//! returned: encoding the decoded header and body again gives back exactly the input bytes,
//! the body bytes re-encode to the stored body, and both hashes equal `record_hash(input)`.
#![no_main]

use keyledger_events::{decode, encode, record_hash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = decode(data) else { return };
    let r = &event.record;
    let draft = event.draft();
    let body = event.body.encode().expect("a decoded body re-encodes");
    assert_eq!(body, r.body, "decoded body does not re-encode to the stored body bytes");
    let (bytes, hash) = encode(&draft, &event.body).expect("a decoded record re-encodes");
    assert_eq!(bytes, data, "decode accepted bytes that are not the canonical encoding");
    assert_eq!(hash, record_hash(data), "encode's hash differs from record_hash");
    assert_eq!(event.hash, record_hash(data), "decode's hash differs from record_hash");
});
