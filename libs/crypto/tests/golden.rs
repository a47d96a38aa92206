//! Golden vectors: fixed inputs whose encodings are checked in under `tests/golden/`. Encoding
//! must reproduce them byte for byte and decoding must accept them, so a format change cannot
//! slip by. To regenerate after a deliberate format change (new version!), run
//! `KEYLEDGER_WRITE_GOLDEN=1 cargo test -p keyledger-crypto --test golden` and review the diff.

use std::io::Cursor;
use std::path::PathBuf;

use keyledger_crypto::blob::{self, BlobHeader};
use keyledger_crypto::envelope::{self, EnvelopeHeader};
use keyledger_crypto::{open, parse_header, DataKey, EncryptionContext, KeyMaterial, MaterialAad, RootKey};

fn golden(name: &str, actual: &[u8]) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("KEYLEDGER_WRITE_GOLDEN").is_some() {
        std::fs::write(&path, format!("{}\n", hex::encode(actual))).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let expected = hex::decode(text.trim()).unwrap();
    assert_eq!(hex::encode(actual), hex::encode(&expected), "{name}: encoding differs from the checked-in vector");
    expected
}

fn material() -> KeyMaterial {
    KeyMaterial::from_bytes(std::array::from_fn(|i| i as u8)) // 00 01 .. 1f
}

fn root() -> RootKey {
    RootKey::from_bytes(std::array::from_fn(|i| 0xA0 + i as u8)) // a0 a1 .. bf
}

const KEY_ID: [u8; 16] =
    [0x6f, 0x1c, 0x1d, 0x1e, 0x2a, 0x3b, 0x4c, 0x5d, 0x8e, 0x9f, 0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5];

fn context() -> EncryptionContext {
    let mut ec = EncryptionContext::new();
    ec.insert("department".into(), "finance".into());
    ec.insert("purpose".into(), "golden vector".into());
    ec
}

#[test]
fn ciphertext_blob_v1_golden_vector_encodes_and_opens() {
    let plaintext = b"keyledger golden vector v1";
    let nonce: [u8; 24] = std::array::from_fn(|i| 0x40 + i as u8);
    let actual = blob::seal_with_nonce(&material(), KEY_ID, 7, &context(), plaintext, nonce);
    let expected = golden("blob_v1.hex", &actual);
    assert_eq!(parse_header(&expected).unwrap(), BlobHeader { key_id: KEY_ID, material_version: 7 });
    assert_eq!(open(&material(), &expected, &context()).unwrap().as_bytes(), plaintext);
}

#[test]
fn wrapped_material_v1_golden_vector_encodes_and_unwraps() {
    let aad = MaterialAad { account: "111122223333", key_id: KEY_ID, version: 1 };
    let nonce: [u8; 24] = std::array::from_fn(|i| 0x70 + i as u8);
    let actual = root().wrap_with_nonce(&aad, &material(), nonce);
    let expected = golden("wrapped_material_v1.hex", actual.as_bytes());
    let unwrapped = root().unwrap_verified(&aad, &expected, &root().material_id(&material())).unwrap();
    assert_eq!(unwrapped.as_bytes(), material().as_bytes());
}

#[test]
fn root_key_id_and_material_id_golden_vectors() {
    golden("root_key_id_v1.hex", &root().id());
    golden("material_id_v1.hex", &root().material_id(&material()));
}

#[test]
fn envelope_v1_golden_vector_encodes_and_decrypts() {
    let key = DataKey::from_vec((0..32).map(|i| 0xD0 ^ i).collect());
    let header = EnvelopeHeader {
        key_arn: "arn:aws:kms:eu-west-1:111122223333:key/6f1c1d1e-2a3b-4c5d-8e9f-a0b1c2d3e4f5".into(),
        encryption_context: context(),
        encrypted_data_key: b"stand-in for a ciphertext blob".to_vec(),
        chunk_size: 1024,
    };
    let plaintext: Vec<u8> = (0..2100u32).map(|i| (i % 253) as u8).collect();
    let prefix: [u8; 19] = std::array::from_fn(|i| 0x10 + i as u8);
    let mut actual = Vec::new();
    envelope::encrypt_with_nonce_prefix(&key, &header, prefix, Cursor::new(&plaintext), &mut actual).unwrap();
    let expected = golden("envelope_v1.hex", &actual);
    let mut input = Cursor::new(&expected[..]);
    let parsed = envelope::read_header(&mut input).unwrap();
    assert_eq!(parsed.header(), &header);
    let mut out = Vec::new();
    envelope::decrypt_body(&key, &parsed, &mut input, &mut out).unwrap();
    assert_eq!(out, plaintext);
}
