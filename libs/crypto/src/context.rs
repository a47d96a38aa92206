//! AWS encryption context and its canonical, collision-free byte encoding.

use std::collections::BTreeMap;

/// An AWS KMS encryption context: string → string pairs bound to a ciphertext as AAD (AWS KMS
/// API reference, Encrypt `EncryptionContext`; Developer Guide, "Encryption context").
///
/// A `BTreeMap` keeps the pairs sorted by key, and `String`'s order is the order of the
/// keys' UTF-8 bytes, which is the order [`canonical_context`] uses. Decrypt must present the
/// same set of pairs, byte-exact and case-sensitive; only ordering may differ.
pub type EncryptionContext = BTreeMap<String, String>;

/// Largest length of one key or value that the encoding can carry (u32 length prefix).
const MAX_FIELD: usize = u32::MAX as usize;

/// The canonical bytes of an encryption context, used as AAD.
///
/// Layout (all integers big-endian):
///
/// ```text
/// u32 pair count
/// for each pair, sorted by the key's UTF-8 bytes:
///     u32 key length in bytes ‖ key (UTF-8) ‖ u32 value length in bytes ‖ value (UTF-8)
/// ```
///
/// Every field is length-prefixed, so the encoding is injective: `{"ab":"c"}` and `{"a":"bc"}`
/// encode differently (a plain `key‖value` concatenation would collide). The empty context
/// encodes as the four bytes `00 00 00 00`.
///
/// # Panics
/// If a key or value is longer than 4 GiB − 1 bytes (impossible for a request the service
/// accepted; callers bound contexts far below that).
#[must_use]
pub fn canonical_context(ec: &EncryptionContext) -> Vec<u8> {
    let size: usize = 4 + ec.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    put_u32_len(&mut out, ec.len());
    for (k, v) in ec {
        put_u32_len(&mut out, k.len());
        out.extend_from_slice(k.as_bytes());
        put_u32_len(&mut out, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Decodes bytes produced by [`canonical_context`], accepting only the canonical form: keys in
/// strictly increasing byte order (so no duplicates), valid UTF-8, no bytes left over.
///
/// # Errors
/// A static description of the first problem found (truncated, not UTF-8, out of order,
/// trailing bytes); the input is never echoed.
pub fn parse_canonical_context(bytes: &[u8]) -> Result<EncryptionContext, &'static str> {
    let mut rest = bytes;
    let count = take_u32(&mut rest).ok_or("encryption context is truncated")?;
    let mut ec = EncryptionContext::new();
    let mut previous: Option<String> = None;
    for _ in 0..count {
        let key = take_str(&mut rest)?;
        let value = take_str(&mut rest)?;
        if let Some(prev) = &previous {
            if prev.as_bytes() >= key.as_bytes() {
                return Err("encryption context keys are not in strictly increasing order");
            }
        }
        previous = Some(key.clone());
        ec.insert(key, value);
    }
    if !rest.is_empty() {
        return Err("encryption context has trailing bytes");
    }
    Ok(ec)
}

fn put_u32_len(out: &mut Vec<u8>, len: usize) {
    assert!(len <= MAX_FIELD, "field longer than a u32 length prefix allows");
    #[allow(clippy::cast_possible_truncation)] // checked just above
    out.extend_from_slice(&(len as u32).to_be_bytes());
}

fn take_u32(rest: &mut &[u8]) -> Option<u32> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(u32::from_be_bytes(*head))
}

fn take_str(rest: &mut &[u8]) -> Result<String, &'static str> {
    let len = take_u32(rest).ok_or("encryption context is truncated")? as usize;
    if rest.len() < len {
        return Err("encryption context is truncated");
    }
    let (field, tail) = rest.split_at(len);
    *rest = tail;
    String::from_utf8(field.to_vec()).map_err(|_| "encryption context is not valid UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn concatenation_lookalikes_encode_differently() {
        assert_ne!(canonical_context(&ec(&[("ab", "c")])), canonical_context(&ec(&[("a", "bc")])));
        assert_ne!(canonical_context(&ec(&[("a", ""), ("b", "")])), canonical_context(&ec(&[("a", "\0\0\0\u{1}b")])));
    }

    #[test]
    fn encoding_is_exactly_the_documented_layout() {
        let bytes = canonical_context(&ec(&[("b", "2"), ("a", "xy")]));
        let expected: Vec<u8> =
            [&[0, 0, 0, 2][..], &[0, 0, 0, 1], b"a", &[0, 0, 0, 2], b"xy", &[0, 0, 0, 1], b"b", &[0, 0, 0, 1], b"2"]
                .concat();
        assert_eq!(bytes, expected);
        assert_eq!(canonical_context(&EncryptionContext::new()), vec![0, 0, 0, 0]);
    }

    #[test]
    fn keys_sort_by_utf8_bytes_not_by_case_folding() {
        let bytes = canonical_context(&ec(&[("a", "1"), ("B", "2"), ("é", "3")]));
        // 'B' (0x42) < 'a' (0x61) < 'é' (0xC3 0xA9)
        let b_pos = bytes.windows(1).position(|w| w == b"B").unwrap();
        let a_pos = bytes.windows(1).position(|w| w == b"a").unwrap();
        let e_pos = bytes.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        assert!(b_pos < a_pos && a_pos < e_pos);
    }

    #[test]
    fn parse_round_trips_and_rejects_non_canonical_forms() {
        let original = ec(&[("purpose", "test"), ("tenant", "ü"), ("x", "")]);
        let bytes = canonical_context(&original);
        assert_eq!(parse_canonical_context(&bytes).unwrap(), original);

        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(parse_canonical_context(&trailing).is_err());
        assert!(parse_canonical_context(&bytes[..bytes.len() - 1]).is_err());
        assert!(parse_canonical_context(&[]).is_err());

        // Same pairs written in descending order: not canonical.
        let unsorted: Vec<u8> =
            [&[0, 0, 0, 2][..], &[0, 0, 0, 1], b"b", &[0, 0, 0, 0], &[0, 0, 0, 1], b"a", &[0, 0, 0, 0]].concat();
        assert!(parse_canonical_context(&unsorted).is_err());
        // Duplicate key.
        let dup: Vec<u8> =
            [&[0, 0, 0, 2][..], &[0, 0, 0, 1], b"a", &[0, 0, 0, 0], &[0, 0, 0, 1], b"a", &[0, 0, 0, 0]].concat();
        assert!(parse_canonical_context(&dup).is_err());
        // Invalid UTF-8.
        let bad: Vec<u8> = [&[0, 0, 0, 1][..], &[0, 0, 0, 1], &[0xFF], &[0, 0, 0, 0]].concat();
        assert!(parse_canonical_context(&bad).is_err());
    }
}
