//! Deterministic randomized robustness of the decoders that read bytes from outside: ciphertext
//! blobs ([`parse_header`], [`open`]), canonical encryption contexts
//! ([`parse_canonical_context`]) and envelope files ([`envelope::read_header`],
//! [`envelope::decrypt_body`]). The CI counterpart of the `blob_open`, `canonical_context` and
//! `envelope_read` fuzz targets (`fuzz/`, which needs libFuzzer).
//!
//! A small xorshift generator with fixed seeds drives random bytes and mutations of valid
//! encodings (bit flips, byte overwrites, truncations, insertions, deletions, duplicated
//! ranges). Properties: no decoder panics; a blob or an envelope file that differs from a
//! genuine one in any byte never opens (authentication, not just parsing); an accepted
//! context re-encodes byte for byte; seal/open and encrypt/decrypt round-trip.

use std::io::Cursor;

use keyledger_crypto::blob::{seal_with_nonce, BLOB_OVERHEAD};
use keyledger_crypto::envelope::{self, EnvelopeHeader};
use keyledger_crypto::{
    canonical_context, open, parse_canonical_context, parse_header, BlobHeader, DataKey, EncryptionContext, KeyMaterial,
};

/// xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators").
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-enough in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
    /// `0..max` random bytes.
    fn bytes_below(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.byte())
    }
}

/// Applies one random mutation to `bytes`; the result may equal the input only by chance
/// (an overwrite with the same byte, a duplicated range next to itself).
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    match rng.below(7) {
        0 if len > 0 => {
            let bit = rng.below(len * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            bytes[at] = [0x00, 0x01, 0x7F, 0x80, 0xFF, rng.byte()][rng.below(6)];
        }
        2 => bytes.truncate(rng.below(len + 1)),
        3 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let insert = rng.bytes(n);
            bytes.splice(at..at, insert);
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(8));
            bytes.drain(at..at + n);
        }
        5 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(16));
            let copy = bytes[at..at + n].to_vec();
            let to = rng.below(len + 1);
            bytes.splice(to..to, copy);
        }
        _ => bytes.push(rng.byte()),
    }
}

fn mutant(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..1 + rng.below(3) {
        mutate(rng, &mut bytes);
    }
    bytes
}

/// A random context of 0–3 pairs, with multi-byte UTF-8 and empty strings.
fn random_context(rng: &mut Rng) -> EncryptionContext {
    const WORDS: [&str; 8] = ["", "a", "b", "purpose", "tenant", "ü", "€uro", "aa"];
    (0..rng.below(4)).map(|_| (WORDS[rng.below(8)].to_owned(), WORDS[rng.below(8)].to_owned())).collect()
}

/// Runs `f`, turning a panic into a test failure that shows the input.
fn no_panic<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| panic!("{what} panicked on {}", hex::encode(input)))
}

#[test]
fn mutated_or_random_blobs_never_panic_and_never_open() {
    let mut rng = Rng::new(0x626c_6f62_2121_2121);
    let material = KeyMaterial::from_bytes(rng.array());
    let genuine: Vec<(Vec<u8>, EncryptionContext, Vec<u8>)> = (0..16)
        .map(|i| {
            let ec = random_context(&mut rng);
            let plaintext = rng.bytes([0, 1, 15, 16, 17, 100, 4096][i % 7]);
            let blob = seal_with_nonce(&material, rng.array(), rng.next() as u32, &ec, &plaintext, rng.array());
            (blob, ec, plaintext)
        })
        .collect();
    for (blob, ec, plaintext) in &genuine {
        assert_eq!(open(&material, blob, ec).unwrap().as_bytes(), &plaintext[..]);
    }

    for i in 0..30_000 {
        let (blob, ec, _) = &genuine[rng.below(genuine.len())];
        let input = if i % 5 == 0 {
            // Random bytes, mostly behind a valid magic and version.
            let mut b = rng.bytes_below(2 * BLOB_OVERHEAD);
            if i % 10 == 0 && b.len() >= 3 {
                b[..3].copy_from_slice(b"KL\x01");
            }
            b
        } else {
            mutant(&mut rng, blob)
        };
        let header = no_panic("parse_header", &input, || parse_header(&input));
        let opened = no_panic("open", &input, || open(&material, &input, ec));
        if input == *blob {
            assert!(opened.is_ok());
        } else {
            assert!(opened.is_err(), "a tampered blob opened: {}", hex::encode(&input));
        }
        if input.len() >= BLOB_OVERHEAD && input.starts_with(b"KL\x01") {
            assert_eq!(
                header.unwrap(),
                BlobHeader {
                    key_id: input[3..19].try_into().unwrap(),
                    material_version: u32::from_be_bytes(input[19..23].try_into().unwrap()),
                }
            );
        } else {
            assert!(header.is_err());
        }
    }
}

#[test]
fn blobs_round_trip_and_open_only_with_their_material_and_context() {
    let mut rng = Rng::new(0x726f_756e_6474_7270);
    for i in 0..5_000 {
        let material = KeyMaterial::from_bytes(rng.array());
        let ec = random_context(&mut rng);
        let plaintext = rng.bytes_below(if i % 50 == 0 { 4097 } else { 64 });
        let (key_id, version) = (rng.array(), rng.next() as u32);
        let blob = seal_with_nonce(&material, key_id, version, &ec, &plaintext, rng.array());
        assert_eq!(blob.len(), plaintext.len() + BLOB_OVERHEAD);
        assert_eq!(parse_header(&blob).unwrap(), BlobHeader { key_id, material_version: version });
        assert_eq!(open(&material, &blob, &ec).unwrap().as_bytes(), &plaintext[..]);

        let other_material = KeyMaterial::from_bytes(rng.array());
        assert!(open(&other_material, &blob, &ec).is_err());
        let mut other_ec = ec.clone();
        other_ec.insert("extra".into(), String::new());
        assert!(open(&material, &blob, &other_ec).is_err());
    }
}

#[test]
fn contexts_decode_only_their_canonical_encoding() {
    let mut rng = Rng::new(0x6374_7874_6374_7874);
    let mut accepted_mutants = 0;
    for i in 0..50_000 {
        let ec = random_context(&mut rng);
        let genuine = canonical_context(&ec);
        assert_eq!(parse_canonical_context(&genuine).unwrap(), ec, "round trip");
        let input = if i % 5 == 0 {
            let mut b = rng.bytes_below(40);
            // A small pair count, so the parser gets past the first field.
            if b.len() >= 4 {
                b[..4].copy_from_slice(&(rng.below(4) as u32).to_be_bytes());
            }
            b
        } else {
            mutant(&mut rng, &genuine)
        };
        let parsed = no_panic("parse_canonical_context", &input, || parse_canonical_context(&input));
        if let Ok(parsed) = parsed {
            assert_eq!(canonical_context(&parsed), input, "non-canonical accepted: {}", hex::encode(&input));
            if input != genuine {
                accepted_mutants += 1;
            }
        }
    }
    assert!(accepted_mutants > 100, "only {accepted_mutants} mutants parsed");
}

#[test]
fn mutated_or_random_envelope_files_never_panic_and_never_decrypt() {
    let mut rng = Rng::new(0x656e_7665_6c6f_7065);
    let key = DataKey::from_vec(rng.bytes(32));
    let genuine: Vec<(Vec<u8>, Vec<u8>)> = (0..8)
        .map(|i| {
            let header = EnvelopeHeader {
                key_arn: "arn:aws:kms:eu-west-1:111122223333:key/6f1c1d1e-2a3b-4c5d-8e9f-a0b1c2d3e4f5".into(),
                encryption_context: random_context(&mut rng),
                encrypted_data_key: rng.bytes_below(40).into_iter().chain([7]).collect(),
                chunk_size: envelope::MIN_CHUNK_SIZE,
            };
            let plaintext = rng.bytes([0, 1, 1023, 1024, 1025, 2100, 3072, 100][i]);
            let mut file = Vec::new();
            envelope::encrypt_with_nonce_prefix(&key, &header, rng.array(), &plaintext[..], &mut file).unwrap();
            (file, plaintext)
        })
        .collect();

    for i in 0..20_000 {
        let (file, plaintext) = &genuine[rng.below(genuine.len())];
        let input = if i % 5 == 0 {
            let mut b = rng.bytes_below(200);
            if i % 10 == 0 && b.len() >= 6 {
                b[..6].copy_from_slice(b"KLENV\x01");
            }
            b
        } else {
            mutant(&mut rng, file)
        };
        let mut reader = Cursor::new(&input[..]);
        let parsed = no_panic("read_header", &input, || envelope::read_header(&mut reader));
        let Ok(parsed) = parsed else { continue };
        let raw = parsed.raw_bytes();
        assert_eq!(raw, &input[..raw.len()], "raw header bytes differ from the input");
        let mut out = Vec::new();
        let decrypted =
            no_panic("decrypt_body", &input, || envelope::decrypt_body(&key, &parsed, &mut reader, &mut out));
        if input == *file {
            assert_eq!(decrypted.unwrap(), plaintext.len() as u64);
            assert_eq!(out, *plaintext);
        } else {
            assert!(decrypted.is_err(), "a tampered envelope file decrypted: {}", hex::encode(&input));
        }
    }
}
