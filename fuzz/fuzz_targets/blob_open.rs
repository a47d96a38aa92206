//! Ciphertext blobs (what `Decrypt` reads from a client).
//!
//! Input: 32 bytes of key material, then the candidate blob. Asserts:
//! - `parse_header` and `open` never panic on the blob, and `open` never succeeds unless
//!   `parse_header` does;
//! - round trip: the blob bytes, used as a plaintext, sealed under that material (with a nonce
//!   and header fields taken from the input, so a crash reproduces) open again to the same
//!   plaintext, with the header that was sealed;
//! - tampering: flipping any one bit of that sealed blob (position chosen by the input), or
//!   opening it with another encryption context, fails.
#![no_main]

use keyledger_crypto::blob::seal_with_nonce;
use keyledger_crypto::{open, parse_header, BlobHeader, EncryptionContext, KeyMaterial};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((material, blob)) = data.split_first_chunk::<32>() else { return };
    let material = KeyMaterial::from_bytes(*material);

    let mut ec = EncryptionContext::new();
    let header = parse_header(blob);
    let opened = open(&material, blob, &ec);
    assert!(header.is_ok() || opened.is_err(), "open accepted a blob parse_header refuses");

    // Round trip with header fields and nonce drawn from the input (deterministic).
    let pick = |at: usize| blob.get(at).copied().unwrap_or(at as u8);
    let key_id: [u8; 16] = std::array::from_fn(pick);
    let version = u32::from_be_bytes([pick(16), pick(17), pick(18), pick(19)]);
    let nonce: [u8; 24] = std::array::from_fn(|i| pick(20 + i));
    if blob.first().is_some_and(|b| b & 1 == 1) {
        ec.insert("purpose".into(), String::from_utf8_lossy(&blob[..blob.len().min(8)]).into());
    }
    let sealed = seal_with_nonce(&material, key_id, version, &ec, blob, nonce);
    assert_eq!(
        parse_header(&sealed).expect("a sealed blob has a valid header"),
        BlobHeader { key_id, material_version: version }
    );
    let plaintext = open(&material, &sealed, &ec).expect("a sealed blob opens");
    assert_eq!(plaintext.as_bytes(), blob, "round trip changed the plaintext");

    let bit = blob.iter().fold(0usize, |acc, b| acc.wrapping_mul(31).wrapping_add(*b as usize)) % (sealed.len() * 8);
    let mut tampered = sealed.clone();
    tampered[bit / 8] ^= 1 << (bit % 8);
    assert!(open(&material, &tampered, &ec).is_err(), "a blob with bit {bit} flipped opened");

    let mut other = ec.clone();
    other.insert("extra".into(), String::new());
    assert!(open(&material, &sealed, &other).is_err(), "a blob opened under another context");
});
