//! AWS JSON request bodies (`keyledger_kms::parse_request`), what every client sends.
//!
//! Input: the first byte picks the operation (modulo the number of operations in
//! `Operation::all()`), the rest is the body. Asserts:
//! - no panic; an accepted request is of the operation asked for;
//! - a body that is not UTF-8 or not JSON gets exactly `SerializationException: The request
//!   body is not valid JSON.` (so such a body is never echoed), and valid JSON that is not an
//!   object gets exactly `The request body must be a JSON object.`;
//! - error messages are bounded: at most `MESSAGE_BASE_BYTES + MESSAGE_BYTES_PER_BODY_BYTE ×
//!   body length`. A ValidationException lists one violation per bad list item (and echoes
//!   member values), so no constant bound holds; the linear bound catches anything worse than
//!   the per-item violations of a list (see fuzz/README.md, "Findings");
//! - `Plaintext` never influences an error message except through its decoded length: the
//!   body is parsed again with every base64 symbol of `Plaintext` replaced by another one
//!   that keeps the string exactly as (in)valid and of the same decoded length, and the two
//!   results must be identical.
#![no_main]

use keyledger_kms::{parse_request, ErrorKind, KmsError, Operation, Request};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NOT_JSON: &str = "The request body is not valid JSON.";
const NOT_OBJECT: &str = "The request body must be a JSON object.";
/// Fixed part of the message bound: the longest fixed texts (enum value sets) fit many times.
const MESSAGE_BASE_BYTES: usize = 1024;
/// Variable part: an item of a list as short as `{},` (3 bytes) can draw two violations of
/// about 100 bytes each (`tags.N.member.tagKey` and `…tagValue` must not be null).
const MESSAGE_BYTES_PER_BODY_BYTE: usize = 80;

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Replaces every base64 symbol of `s` by another one: `v ^ 0x3F`, except the last symbol,
/// `v ^ 0x30`, which keeps its low four bits (the trailing bits a canonical decoder checks).
/// Everything else (padding, foreign characters, length) stays, so the result decodes if and
/// only if `s` does, to as many bytes.
fn scramble_base64(s: &str) -> String {
    let value = |c: char| BASE64.iter().position(|&a| char::from(a) == c);
    let last = s.char_indices().rev().find(|&(_, c)| value(c).is_some()).map(|(i, _)| i);
    s.char_indices()
        .map(|(i, c)| match value(c) {
            Some(v) if Some(i) == last => char::from(BASE64[v ^ 0x30]),
            Some(v) => char::from(BASE64[v ^ 0x3F]),
            None => c,
        })
        .collect()
}

fn outcome(r: &Result<Request, KmsError>) -> Result<Operation, (ErrorKind, String)> {
    match r {
        Ok(req) => Ok(req.operation()),
        Err(e) => Err((e.kind, e.message.clone())),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let ops: Vec<Operation> = Operation::all().collect();
    let op = ops[usize::from(selector) % ops.len()];
    let result = parse_request(op, body);

    let blank = body.iter().all(u8::is_ascii_whitespace);
    let json = serde_json::from_slice::<Value>(body);
    match &result {
        Ok(req) => {
            assert_eq!(req.operation(), op);
            assert!(blank || matches!(json, Ok(Value::Object(_))), "accepted a body that is not a JSON object");
            if let Request::Encrypt(r) = req {
                assert!((1..=4096).contains(&r.plaintext.len()));
            }
        }
        Err(e) => {
            let _ = e.to_json();
            let _ = e.to_string();
            assert!(
                e.message.len() <= MESSAGE_BASE_BYTES + MESSAGE_BYTES_PER_BODY_BYTE * body.len(),
                "error message of {} bytes for a body of {} bytes",
                e.message.len(),
                body.len()
            );
            if std::str::from_utf8(body).is_err() {
                assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Serialization, NOT_JSON));
            }
        }
    }
    if !blank {
        match &json {
            Err(_) => assert_eq!(outcome(&result), Err((ErrorKind::Serialization, NOT_JSON.into()))),
            Ok(Value::Object(_)) => {}
            Ok(_) => assert_eq!(outcome(&result), Err((ErrorKind::Serialization, NOT_OBJECT.into()))),
        }
    }

    // Plaintext influences nothing but its decoded length.
    if let Ok(Value::Object(map)) = json {
        if let Some(Value::String(plaintext)) = map.get("Plaintext") {
            let scrambled = scramble_base64(plaintext);
            let original = serde_json::to_vec(&map).expect("a Value serialises");
            let mut other = map.clone();
            other.insert("Plaintext".into(), Value::String(scrambled));
            let other = serde_json::to_vec(&other).expect("a Value serialises");
            assert_eq!(
                outcome(&parse_request(op, &original)),
                outcome(&parse_request(op, &other)),
                "the result depends on the Plaintext's content"
            );
        }
    }
});
