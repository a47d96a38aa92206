//! Envelope files (`keyledger envelope decrypt` reads them from disk).
//!
//! Input: a candidate envelope file. The data key is fixed: the one of the golden vector
//! `libs/crypto/tests/golden/envelope_v1.hex`, so seeding the corpus with that file lets the
//! fuzzer reach the chunk decryption path. Asserts:
//! - `read_header` then `decrypt_body` (into `std::io::sink()`) never panic;
//! - an accepted header is exactly the bytes read, and writing the parsed header again (same
//!   nonce prefix) reproduces those bytes: one header, one encoding;
//! - round trip: the input, used as a plaintext, encrypted under the fixed key with a small
//!   chunk size, decrypts to itself.
#![no_main]

use keyledger_crypto::envelope::{self, EnvelopeHeader};
use keyledger_crypto::{DataKey, EncryptionContext};
use libfuzzer_sys::fuzz_target;

fn data_key() -> DataKey {
    DataKey::from_vec((0..32u8).map(|i| 0xD0 ^ i).collect())
}

fuzz_target!(|data: &[u8]| {
    let key = data_key();
    let mut input = data;
    if let Ok(parsed) = envelope::read_header(&mut input) {
        let raw = parsed.raw_bytes();
        assert_eq!(raw, &data[..raw.len()], "raw header bytes differ from the input");
        assert_eq!(input.len(), data.len() - raw.len(), "read_header read past its header");
        let _ = envelope::decrypt_body(&key, &parsed, input, std::io::sink());

        // Re-encoding the parsed header (empty plaintext) must start with the same bytes. Keep
        // this to small chunk sizes: the writer allocates a whole chunk.
        if parsed.header().chunk_size <= 64 * 1024 {
            let mut again = Vec::new();
            envelope::encrypt_with_nonce_prefix(&key, parsed.header(), *parsed.nonce_prefix(), &[][..], &mut again)
                .expect("a header read_header accepted can be written");
            assert_eq!(&again[..raw.len()], raw, "an accepted header is not canonical");
        }
    }

    // Round trip of the input as plaintext.
    let header = EnvelopeHeader {
        key_arn: "arn:aws:kms:eu-west-1:111122223333:key/fuzz".into(),
        encryption_context: EncryptionContext::new(),
        encrypted_data_key: vec![1],
        chunk_size: envelope::MIN_CHUNK_SIZE,
    };
    let mut file = Vec::new();
    envelope::encrypt_with_nonce_prefix(&key, &header, [7; 19], data, &mut file)
        .expect("encrypting from memory cannot fail");
    let mut reader = &file[..];
    let parsed = envelope::read_header(&mut reader).expect("our own header reads back");
    assert_eq!(parsed.header(), &header);
    let mut out = Vec::new();
    envelope::decrypt_body(&key, &parsed, reader, &mut out).expect("our own file decrypts");
    assert_eq!(out, data, "envelope round trip changed the plaintext");
});
