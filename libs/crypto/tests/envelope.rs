//! Envelope file format: round trips, truncation, reordering, trailing data, header tampering.

use std::io::Cursor;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use keyledger_crypto::envelope::{self, decrypt_body, read_header, EnvelopeHeader, DEFAULT_CHUNK_SIZE, MIN_CHUNK_SIZE};
use keyledger_crypto::{CryptoError, DataKey, EncryptionContext};

const ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/6f1c1d1e-0000-4000-8000-000000000001";

fn header(chunk_size: u32) -> EnvelopeHeader {
    let mut ec = EncryptionContext::new();
    ec.insert("file".into(), "report.pdf".into());
    ec.insert("owner".into(), "alice".into());
    EnvelopeHeader { key_arn: ARN.into(), encryption_context: ec, encrypted_data_key: vec![0xE0; 127], chunk_size }
}

fn data(len: usize) -> Vec<u8> {
    // Deterministic, non-repeating enough to catch reordering.
    let mut out = Vec::with_capacity(len);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push((x >> 24) as u8);
    }
    out
}

fn seal_file(key: &DataKey, h: &EnvelopeHeader, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let n = envelope::encrypt(key, h, Cursor::new(plaintext), &mut out).unwrap();
    assert_eq!(n, plaintext.len() as u64);
    out
}

/// Reads the header and decrypts; returns what was written and the result.
fn open_file(key: &DataKey, file: &[u8]) -> (Vec<u8>, Result<u64, CryptoError>) {
    let mut input = Cursor::new(file);
    let parsed = match read_header(&mut input) {
        Ok(p) => p,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut out = Vec::new();
    let r = decrypt_body(key, &parsed, &mut input, &mut out);
    (out, r)
}

fn header_len(file: &[u8]) -> usize {
    let mut input = Cursor::new(file);
    read_header(&mut input).unwrap().raw_bytes().len()
}

#[test]
fn round_trip_at_chunk_edges_and_several_megabytes() {
    let key = DataKey::generate(32);
    let c = MIN_CHUNK_SIZE as usize;
    for (chunk, len) in [
        (c, 0),
        (c, 1),
        (c, c - 1),
        (c, c),
        (c, c + 1),
        (c, 3 * c),
        (c, 3 * c + 17),
        (DEFAULT_CHUNK_SIZE as usize, 5 * 1024 * 1024 + 3),
    ] {
        let h = header(chunk as u32);
        let plaintext = data(len);
        let file = seal_file(&key, &h, &plaintext);
        // Full chunks, then a final chunk shorter than a full one (empty when len % chunk == 0).
        let expected_body = (len / chunk) * (chunk + 16) + (len % chunk) + 16;
        assert_eq!(file.len() - header_len(&file), expected_body, "len {len}");
        let (out, r) = open_file(&key, &file);
        assert_eq!(r.unwrap(), len as u64);
        assert!(out == plaintext, "len {len}: plaintext differs");
    }
}

#[test]
fn header_fields_read_back_exactly() {
    let key = DataKey::generate(16);
    let h = header(4096);
    let file = seal_file(&key, &h, b"hello");
    let mut input = Cursor::new(&file[..]);
    let parsed = read_header(&mut input).unwrap();
    assert_eq!(parsed.header(), &h);
    assert_eq!(&file[..6], b"KLENV\x01");
    assert_eq!(&file[parsed.raw_bytes().len() - 19..parsed.raw_bytes().len()], parsed.nonce_prefix());
    assert_eq!(input.position() as usize, parsed.raw_bytes().len());
}

#[test]
fn two_encryptions_of_the_same_file_differ() {
    let key = DataKey::generate(32);
    let h = header(1024);
    assert_ne!(seal_file(&key, &h, b"same"), seal_file(&key, &h, b"same"));
}

#[test]
fn truncation_at_any_chunk_boundary_or_inside_a_chunk_is_an_error() {
    let key = DataKey::generate(32);
    let c = 1024usize;
    let file = seal_file(&key, &header(c as u32), &data(3 * c + 100));
    let hl = header_len(&file);
    let full = c + 16;
    // Boundaries: after the header, after chunk 0, 1, 2 (before the final chunk).
    for k in 0..=3 {
        let cut = hl + k * full;
        let (out, r) = open_file(&key, &file[..cut]);
        assert!(matches!(r, Err(CryptoError::Envelope(_))), "boundary {k}");
        assert_eq!(out.len(), k * c, "only verified chunks were written");
    }
    // Inside chunks and inside the final chunk, and one byte short of the end.
    for cut in [hl + 1, hl + 15, hl + 16, hl + 500, hl + full + 700, file.len() - 1, file.len() - 16] {
        let (_, r) = open_file(&key, &file[..cut]);
        assert!(matches!(r, Err(CryptoError::Envelope(_))), "cut at {cut}");
    }
    // Inside the header.
    for cut in [0, 3, 6, 10, hl - 1] {
        let (_, r) = open_file(&key, &file[..cut]);
        assert!(matches!(r, Err(CryptoError::Envelope(_))), "header cut at {cut}");
    }
}

#[test]
fn truncation_of_an_exact_multiple_file_before_its_empty_final_chunk_is_an_error() {
    let key = DataKey::generate(32);
    let file = seal_file(&key, &header(1024), &data(2048));
    let (_, r) = open_file(&key, &file[..file.len() - 16]);
    assert!(matches!(r, Err(CryptoError::Envelope(_))));
}

#[test]
fn swapped_duplicated_or_dropped_chunks_are_errors() {
    let key = DataKey::generate(32);
    let c = 1024usize;
    let file = seal_file(&key, &header(c as u32), &data(4 * c + 10));
    let hl = header_len(&file);
    let full = c + 16;
    let chunk = |i: usize| file[hl + i * full..hl + (i + 1) * full].to_vec();
    let tail = file[hl + 4 * full..].to_vec();
    let assemble = |order: &[usize]| {
        let mut f = file[..hl].to_vec();
        for &i in order {
            f.extend_from_slice(&chunk(i));
        }
        f.extend_from_slice(&tail);
        f
    };
    assert!(open_file(&key, &assemble(&[0, 1, 2, 3])).1.is_ok());
    for order in [&[1, 0, 2, 3][..], &[0, 1, 3, 2], &[0, 0, 2, 3], &[0, 1, 2], &[1, 2, 3], &[0, 1, 2, 3, 3]] {
        let (_, r) = open_file(&key, &assemble(order));
        assert!(matches!(r, Err(CryptoError::Envelope(_))), "{order:?}");
    }
    // Final chunk moved before a full chunk.
    let mut f = file[..hl].to_vec();
    f.extend_from_slice(&tail);
    f.extend_from_slice(&chunk(0));
    assert!(open_file(&key, &f).1.is_err());
}

#[test]
fn bytes_after_the_final_chunk_are_an_error() {
    let key = DataKey::generate(32);
    let file = seal_file(&key, &header(1024), &data(1500));
    for extra in [&b"\0"[..], b"garbage", &[0u8; 1040]] {
        let mut f = file.clone();
        f.extend_from_slice(extra);
        let (out, r) = open_file(&key, &f);
        assert!(matches!(r, Err(CryptoError::Envelope(_))));
        assert_eq!(out.len(), 1024, "the unconfirmed final chunk is not written");
    }
    // A second, complete envelope appended is trailing data too.
    let mut f = file.clone();
    f.extend_from_slice(&file);
    assert!(open_file(&key, &f).1.is_err());
}

#[test]
fn flipping_any_header_byte_is_an_error() {
    let key = DataKey::generate(32);
    let file = seal_file(&key, &header(1024), &data(3000));
    let hl = header_len(&file);
    for i in 0..hl {
        let mut f = file.clone();
        f[i] ^= 0x01;
        let (out, r) = open_file(&key, &f);
        assert!(r.is_err(), "header byte {i}");
        assert!(out.is_empty(), "header byte {i}: nothing written");
    }
}

#[test]
fn flipping_any_body_byte_is_an_error_and_nothing_of_that_chunk_is_written() {
    let key = DataKey::generate(32);
    let c = 1024usize;
    let file = seal_file(&key, &header(c as u32), &data(2 * c + 50));
    let hl = header_len(&file);
    for i in (hl..file.len()).step_by(7).chain([file.len() - 1]) {
        let mut f = file.clone();
        f[i] ^= 0x80;
        let (out, r) = open_file(&key, &f);
        assert!(matches!(r, Err(CryptoError::Envelope(_))), "body byte {i}");
        let chunk_index = (i - hl) / (c + 16);
        assert_eq!(out.len(), chunk_index * c, "body byte {i}");
    }
}

#[test]
fn wrong_data_key_is_an_error() {
    let file = seal_file(&DataKey::generate(32), &header(1024), b"x");
    let (out, r) = open_file(&DataKey::generate(32), &file);
    assert!(matches!(r, Err(CryptoError::Envelope(_))));
    assert!(out.is_empty());
}

#[test]
fn out_of_bound_header_fields_are_refused_when_writing() {
    let key = DataKey::generate(32);
    let mut bad = Vec::new();
    let mut h = header(1023);
    bad.push(h.clone());
    h.chunk_size = 16 * 1024 * 1024 + 1;
    bad.push(h.clone());
    h = header(1024);
    h.key_arn = String::new();
    bad.push(h.clone());
    h.key_arn = "a".repeat(2049);
    bad.push(h.clone());
    h = header(1024);
    h.encrypted_data_key = vec![];
    bad.push(h.clone());
    h.encrypted_data_key = vec![0; 6145];
    bad.push(h.clone());
    for h in bad {
        let mut out = Vec::new();
        let r = envelope::encrypt(&key, &h, Cursor::new(b"x"), &mut out);
        assert!(matches!(r, Err(CryptoError::Envelope(_))), "{h:?}");
        assert!(out.is_empty());
    }
    for len in [0, 15, 1025] {
        let r = envelope::encrypt(&DataKey::generate(len), &header(1024), Cursor::new(b"x"), Vec::new());
        assert!(matches!(r, Err(CryptoError::Envelope(_))), "data key {len}");
    }
}

#[test]
fn garbage_headers_give_clear_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"%PDF-1.7 not an envelope".to_vec(), "magic"),
        (b"KLENV\x02".to_vec(), "version"),
        ([&b"KLENV\x01"[..], &[0xFF, 0xFF, 0xFF, 0xFF]].concat(), "key ARN length"),
        ([&b"KLENV\x01"[..], &[0, 0, 0, 0]].concat(), "key ARN length"),
        ([&b"KLENV\x01"[..], &[0, 0, 0, 2, 0xC3, 0x28]].concat(), "UTF-8"),
        ([&b"KLENV\x01"[..], &[0, 0, 0, 1, b'a', 0, 1, 0, 1]].concat(), "encryption context length"),
        ([&b"KLENV\x01"[..], &[0, 0, 0, 1, b'a', 0, 0, 0, 4, 0, 0, 0, 1]].concat(), "truncated"),
        (
            [&b"KLENV\x01"[..], &[0, 0, 0, 1, b'a', 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0x18, 1]].concat(),
            "encrypted data key length",
        ),
        (
            [&b"KLENV\x01"[..], &[0, 0, 0, 1, b'a', 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0, 9]].concat(),
            "chunk size",
        ),
        (b"KLE".to_vec(), "truncated"),
    ];
    for (bytes, needle) in cases {
        match read_header(&mut Cursor::new(&bytes)) {
            Err(CryptoError::Envelope(msg)) => assert!(msg.contains(needle), "{needle}: {msg}"),
            other => panic!("{needle}: {other:?}"),
        }
    }
}

#[test]
fn format_matches_the_documented_stream_construction_built_from_primitives() {
    // Independent construction from ENVELOPE.md with blake3 and XChaCha20-Poly1305 directly.
    let key = DataKey::from_vec(vec![0x42; 32]);
    let h = header(1024);
    let prefix = [0x37u8; 19];
    let plaintext = data(2 * 1024 + 5);
    let mut actual = Vec::new();
    envelope::encrypt_with_nonce_prefix(&key, &h, prefix, Cursor::new(&plaintext), &mut actual).unwrap();

    let mut expected = b"KLENV\x01".to_vec();
    expected.extend_from_slice(&(ARN.len() as u32).to_be_bytes());
    expected.extend_from_slice(ARN.as_bytes());
    let ec = keyledger_crypto::canonical_context(&h.encryption_context);
    expected.extend_from_slice(&(ec.len() as u32).to_be_bytes());
    expected.extend_from_slice(&ec);
    expected.extend_from_slice(&127u32.to_be_bytes());
    expected.extend_from_slice(&[0xE0; 127]);
    expected.extend_from_slice(&1024u32.to_be_bytes());
    expected.extend_from_slice(&prefix);
    let aad = blake3::hash(&expected);
    let mut km = vec![0x42u8; 32];
    km.extend_from_slice(&prefix);
    let payload_key = blake3::derive_key("keyledger 2026-11-29 envelope payload v1", &km);
    let aead = XChaCha20Poly1305::new_from_slice(&payload_key).unwrap();
    let chunks: Vec<&[u8]> = vec![&plaintext[..1024], &plaintext[1024..2048], &plaintext[2048..]];
    for (i, chunk) in chunks.iter().enumerate() {
        let mut nonce = prefix.to_vec();
        nonce.extend_from_slice(&(i as u32).to_be_bytes());
        nonce.push(u8::from(i == 2));
        let ct =
            aead.encrypt(&XNonce::try_from(&nonce[..]).unwrap(), Payload { msg: chunk, aad: aad.as_bytes() }).unwrap();
        expected.extend_from_slice(&ct);
    }
    assert_eq!(hex::encode(&actual), hex::encode(&expected));
}
