//! Ciphertext blob behaviour: round trips, tampering, context binding, key commitment.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use keyledger_crypto::blob::{self, BLOB_OVERHEAD, HEADER_LEN, MAX_CIPHERTEXT_BLOB_LEN};
use keyledger_crypto::{
    canonical_context, open, parse_header, seal, BlobHeader, CryptoError, EncryptionContext, KeyMaterial,
};

const KEY_ID: [u8; 16] = [0x11; 16];

fn ec(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn is_invalid(r: Result<keyledger_crypto::Plaintext, CryptoError>) -> bool {
    matches!(r, Err(CryptoError::InvalidCiphertext))
}

#[test]
fn seal_then_open_returns_the_plaintext_for_every_size_up_to_the_aws_limit() {
    let m = KeyMaterial::generate();
    let ctx = ec(&[("purpose", "test")]);
    for len in [0usize, 1, 15, 16, 17, 255, 256, 1000, 4096] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let b = seal(&m, KEY_ID, 3, &ctx, &plaintext);
        assert_eq!(b.len(), len + BLOB_OVERHEAD);
        assert!(b.len() <= MAX_CIPHERTEXT_BLOB_LEN);
        assert_eq!(open(&m, &b, &ctx).unwrap().as_bytes(), &plaintext[..]);
    }
}

#[test]
fn header_names_key_and_material_version() {
    let m = KeyMaterial::generate();
    let key_id = *b"0123456789abcdef";
    let b = seal(&m, key_id, 0xDEAD_BEEF, &EncryptionContext::new(), b"x");
    assert_eq!(parse_header(&b).unwrap(), BlobHeader { key_id, material_version: 0xDEAD_BEEF });
    assert_eq!(&b[..3], b"KL\x01");
}

#[test]
fn two_seals_of_the_same_plaintext_differ() {
    let m = KeyMaterial::generate();
    let ctx = EncryptionContext::new();
    assert_ne!(seal(&m, KEY_ID, 1, &ctx, b"same"), seal(&m, KEY_ID, 1, &ctx, b"same"));
}

#[test]
fn flipping_any_byte_of_a_blob_makes_it_invalid_ciphertext() {
    let m = KeyMaterial::generate();
    let ctx = ec(&[("a", "b")]);
    let b = seal(&m, KEY_ID, 1, &ctx, b"attack at dawn");
    for i in 0..b.len() {
        for mask in [0x01u8, 0x80] {
            let mut t = b.clone();
            t[i] ^= mask;
            assert!(is_invalid(open(&m, &t, &ctx)), "byte {i} mask {mask:#x}");
        }
    }
}

#[test]
fn decrypt_with_wrong_context_is_invalid_ciphertext() {
    let m = KeyMaterial::generate();
    let ctx = ec(&[("tenant", "a"), ("purpose", "x")]);
    let b = seal(&m, KEY_ID, 1, &ctx, b"secret");
    // Altered value, altered case, missing pair, extra pair, empty context.
    for wrong in [
        ec(&[("tenant", "b"), ("purpose", "x")]),
        ec(&[("Tenant", "a"), ("purpose", "x")]),
        ec(&[("tenant", "a")]),
        ec(&[("tenant", "a"), ("purpose", "x"), ("extra", "")]),
        EncryptionContext::new(),
    ] {
        assert!(is_invalid(open(&m, &b, &wrong)), "{wrong:?}");
    }
    // A blob sealed without context does not open with one.
    let b0 = seal(&m, KEY_ID, 1, &EncryptionContext::new(), b"secret");
    assert!(is_invalid(open(&m, &b0, &ec(&[("k", "v")]))));
}

#[test]
fn context_pairs_given_in_another_order_still_decrypt() {
    let m = KeyMaterial::generate();
    let mut forward = EncryptionContext::new();
    for (k, v) in [("zeta", "1"), ("alpha", "2"), ("mid", "3")] {
        forward.insert(k.into(), v.into());
    }
    let b = seal(&m, KEY_ID, 1, &forward, b"ok");
    let mut backward = EncryptionContext::new();
    for (k, v) in [("mid", "3"), ("alpha", "2"), ("zeta", "1")] {
        backward.insert(k.into(), v.into());
    }
    assert_eq!(open(&m, &b, &backward).unwrap().as_bytes(), b"ok");
}

#[test]
fn colliding_concatenations_do_not_decrypt_each_other() {
    let m = KeyMaterial::generate();
    let b = seal(&m, KEY_ID, 1, &ec(&[("ab", "c")]), b"p");
    assert!(is_invalid(open(&m, &b, &ec(&[("a", "bc")]))));
}

#[test]
fn a_blob_opens_under_its_own_material_only() {
    let ctx = EncryptionContext::new();
    for _ in 0..32 {
        let m1 = KeyMaterial::generate();
        let m2 = KeyMaterial::generate();
        let b = seal(&m1, KEY_ID, 1, &ctx, b"committed");
        assert!(open(&m1, &b, &ctx).is_ok());
        assert!(is_invalid(open(&m2, &b, &ctx)));
    }
}

#[test]
fn aead_valid_body_with_a_forged_commitment_is_rejected() {
    // Re-encrypt the body under the genuine AEAD key but with a different commitment in the
    // AAD and header: the AEAD alone would accept it, the commitment check must not.
    let m = KeyMaterial::from_bytes([9; 32]);
    let ctx = EncryptionContext::new();
    let b = seal(&m, KEY_ID, 1, &ctx, b"payload");
    let mut okm = [0u8; 64];
    let mut h = blake3::Hasher::new_derive_key("keyledger 2026-11-29 ciphertext v1");
    h.update(m.as_bytes());
    h.update(&b[..HEADER_LEN]);
    h.finalize_xof().fill(&mut okm);
    let forged_commitment = [0x42u8; 32];
    let mut aad = b[..HEADER_LEN].to_vec();
    aad.extend_from_slice(&forged_commitment);
    aad.extend_from_slice(&canonical_context(&ctx));
    let nonce = XNonce::try_from(&b[HEADER_LEN - 24..HEADER_LEN]).unwrap();
    let body = XChaCha20Poly1305::new_from_slice(&okm[..32])
        .unwrap()
        .encrypt(&nonce, Payload { msg: b"payload", aad: &aad })
        .unwrap();
    let mut forged = b[..HEADER_LEN].to_vec();
    forged.extend_from_slice(&forged_commitment);
    forged.extend_from_slice(&body);
    assert!(is_invalid(open(&m, &forged, &ctx)));
}

#[test]
fn truncated_blobs_are_invalid_ciphertext() {
    let m = KeyMaterial::generate();
    let ctx = EncryptionContext::new();
    let b = seal(&m, KEY_ID, 1, &ctx, b"some plaintext");
    for len in 0..b.len() {
        assert!(is_invalid(open(&m, &b[..len], &ctx)), "length {len}");
    }
    for len in 0..BLOB_OVERHEAD {
        assert!(matches!(parse_header(&b[..len]), Err(CryptoError::InvalidCiphertext)));
    }
    let mut longer = b.clone();
    longer.push(0);
    assert!(is_invalid(open(&m, &longer, &ctx)));
}

#[test]
fn unknown_version_or_magic_is_rejected_by_parse_header() {
    let m = KeyMaterial::generate();
    let b = seal(&m, KEY_ID, 1, &EncryptionContext::new(), b"");
    assert!(parse_header(&b).is_ok());
    for (i, v) in [(2usize, 0u8), (2, 2), (2, 0xFF), (0, b'k'), (1, b'l')] {
        let mut t = b.clone();
        t[i] = v;
        assert!(matches!(parse_header(&t), Err(CryptoError::InvalidCiphertext)));
    }
}

#[test]
fn invalid_ciphertext_error_carries_no_detail() {
    let e = CryptoError::InvalidCiphertext.to_string();
    assert_eq!(e, "invalid ciphertext");
}

#[test]
fn layout_matches_the_documented_format_built_from_primitives() {
    // Independent construction from CIPHERTEXT.md using blake3 and chacha20poly1305 directly.
    let m = KeyMaterial::from_bytes(*b"material material material mater");
    let key_id = *b"KEY-ID-16-BYTES!";
    let version = 0x0102_0304u32;
    let nonce = [0x5Au8; 24];
    let ctx = ec(&[("b", "2"), ("a", "1")]);
    let plaintext = b"documented format";

    let mut header = b"KL\x01".to_vec();
    header.extend_from_slice(&key_id);
    header.extend_from_slice(&version.to_be_bytes());
    header.extend_from_slice(&nonce);
    let mut okm = [0u8; 64];
    let mut h = blake3::Hasher::new_derive_key("keyledger 2026-11-29 ciphertext v1");
    h.update(m.as_bytes());
    h.update(&header);
    h.finalize_xof().fill(&mut okm);
    let mut aad = header.clone();
    aad.extend_from_slice(&okm[32..]);
    // canonical context written out by hand: count 2, ("a","1"), ("b","2")
    aad.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 1, b'1']);
    aad.extend_from_slice(&[0, 0, 0, 1, b'b', 0, 0, 0, 1, b'2']);
    let body = XChaCha20Poly1305::new_from_slice(&okm[..32])
        .unwrap()
        .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
        .unwrap();
    let mut expected = header;
    expected.extend_from_slice(&okm[32..]);
    expected.extend_from_slice(&body);

    let actual = blob::seal_with_nonce(&m, key_id, version, &ctx, plaintext, nonce);
    assert_eq!(hex::encode(&actual), hex::encode(&expected));
}
