//! Imported key material: wrapping keys, unwrapping of `EncryptedKeyMaterial` (round trips and
//! interop with the OpenSSL commands of the AWS documentation), wrapped wrapping keys and import
//! tokens.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use keyledger_crypto::{
    wrap_for_import, CryptoError, ImportKeyAad, ImportTokenFields, ImportWrappingKey, KeyMaterial, RootKey,
    WrappingAlgorithm, WrappingKeySpec, IMPORT_TOKEN_LEN,
};

/// One wrapping key per spec, generated once for the whole test binary (RSA_4096 keygen takes
/// seconds).
fn key(spec: WrappingKeySpec) -> &'static ImportWrappingKey {
    static KEYS: [OnceLock<ImportWrappingKey>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    KEYS[usize::from(spec.code()) - 1].get_or_init(|| ImportWrappingKey::generate(spec))
}

/// A second RSA_2048 key, to present ciphertexts to the wrong key.
fn other_2048() -> &'static ImportWrappingKey {
    static KEY: OnceLock<ImportWrappingKey> = OnceLock::new();
    KEY.get_or_init(|| ImportWrappingKey::generate(WrappingKeySpec::Rsa2048))
}

fn material(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn assert_unwrap_error(result: keyledger_crypto::Result<zeroize::Zeroizing<Vec<u8>>>, what: &str) {
    match result {
        Err(e @ CryptoError::ImportUnwrap) => {
            assert_eq!(e.to_string(), "the encrypted key material could not be unwrapped with the wrapping key")
        }
        Err(other) => panic!("{what}: expected ImportUnwrap, got {other:?}"),
        Ok(_) => panic!("{what}: unwrapped"),
    }
}

#[test]
fn generated_keys_have_their_spec_and_a_parsable_public_key() {
    for spec in WrappingKeySpec::ALL {
        let k = key(spec);
        assert_eq!(k.spec(), spec);
        let der = k.public_key_der();
        // SPKI DER: a SEQUENCE, the rsaEncryption OID inside.
        assert_eq!(der[0], 0x30);
        let rsa_encryption_oid = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        assert!(der.windows(rsa_encryption_oid.len()).any(|w| w == rsa_encryption_oid));
        // PKCS#8 round trip keeps the key.
        let back = ImportWrappingKey::from_pkcs8_der(&k.to_pkcs8_der()).unwrap();
        assert_eq!(back.spec(), spec);
        assert_eq!(back.public_key_der(), der);
        assert_eq!(back.public_key_digest(), k.public_key_digest());
    }
}

#[test]
fn every_algorithm_round_trips_with_every_spec() {
    for spec in WrappingKeySpec::ALL {
        let k = key(spec);
        let public = k.public_key_der();
        for alg in WrappingAlgorithm::ALL {
            let lengths: &[usize] =
                if alg.uses_aes_key_wrap() { &[1, 7, 8, 9, 32, 64, 1217, 2400] } else { &[1, 32, 64] };
            for &len in lengths {
                let m = material(len);
                let encrypted = wrap_for_import(&public, alg, &m).unwrap();
                let expected_len = if alg.uses_aes_key_wrap() {
                    spec.modulus_len() + len.div_ceil(8) * 8 + 8
                } else {
                    spec.modulus_len()
                };
                assert_eq!(encrypted.len(), expected_len, "{} {} {len}", spec.as_str(), alg.as_str());
                let back = k.unwrap_material(alg, &encrypted).unwrap();
                assert_eq!(&back[..], &m[..], "{} {} {len}", spec.as_str(), alg.as_str());
            }
        }
        // Symmetric material goes on into KeyMaterial.
        let m = KeyMaterial::generate();
        let encrypted = wrap_for_import(&public, WrappingAlgorithm::RsaesOaepSha256, m.as_bytes()).unwrap();
        let back = k.unwrap_material(WrappingAlgorithm::RsaesOaepSha256, &encrypted).unwrap();
        assert_eq!(KeyMaterial::from_slice(&back).unwrap().as_bytes(), m.as_bytes());
    }
}

#[test]
fn oaep_material_length_limit_is_k_minus_2hlen_minus_2() {
    let k = key(WrappingKeySpec::Rsa2048);
    let public = k.public_key_der();
    for (alg, max) in [(WrappingAlgorithm::RsaesOaepSha1, 214), (WrappingAlgorithm::RsaesOaepSha256, 190)] {
        let encrypted = wrap_for_import(&public, alg, &material(max)).unwrap();
        assert_eq!(&k.unwrap_material(alg, &encrypted).unwrap()[..], &material(max)[..]);
        assert!(matches!(wrap_for_import(&public, alg, &material(max + 1)), Err(CryptoError::ImportParameters(_))));
    }
}

#[test]
fn wrap_for_import_refuses_bad_public_keys_and_empty_material() {
    let public = key(WrappingKeySpec::Rsa2048).public_key_der();
    for alg in WrappingAlgorithm::ALL {
        assert!(matches!(wrap_for_import(&public, alg, &[]), Err(CryptoError::ImportParameters(_))));
        assert!(matches!(wrap_for_import(b"not a key", alg, &[1; 32]), Err(CryptoError::ImportParameters(_))));
        assert!(matches!(
            wrap_for_import(&public[..public.len() - 1], alg, &[1; 32]),
            Err(CryptoError::ImportParameters(_))
        ));
    }
    assert!(matches!(ImportWrappingKey::from_pkcs8_der(b"garbage"), Err(CryptoError::ImportParameters(_))));
}

#[test]
fn wrong_algorithm_fails_with_the_single_unwrap_error() {
    let k = key(WrappingKeySpec::Rsa2048);
    let public = k.public_key_der();
    for wrapped_with in WrappingAlgorithm::ALL {
        let encrypted = wrap_for_import(&public, wrapped_with, &material(32)).unwrap();
        for unwrapped_with in WrappingAlgorithm::ALL {
            if unwrapped_with != wrapped_with {
                assert_unwrap_error(
                    k.unwrap_material(unwrapped_with, &encrypted),
                    &format!("{} read as {}", wrapped_with.as_str(), unwrapped_with.as_str()),
                );
            }
        }
    }
}

#[test]
fn altered_truncated_or_extended_ciphertexts_fail_with_the_single_unwrap_error() {
    let k = key(WrappingKeySpec::Rsa2048);
    let public = k.public_key_der();
    for alg in WrappingAlgorithm::ALL {
        let encrypted = wrap_for_import(&public, alg, &material(40)).unwrap();
        let n = encrypted.len();
        for pos in [0, 1, 100, 255, 256, 263, 264, n - 1] {
            if pos >= n {
                continue;
            }
            let mut bad = encrypted.clone();
            bad[pos] ^= 0x01;
            assert_unwrap_error(k.unwrap_material(alg, &bad), &format!("{} byte {pos} flipped", alg.as_str()));
        }
        // Down to nothing, and (for the key-wrap algorithms) down to the RSA part alone.
        for cut in [1, 8, 16, n - 256, n] {
            if cut == 0 {
                continue;
            }
            assert_unwrap_error(
                k.unwrap_material(alg, &encrypted[..n - cut]),
                &format!("{} truncated by {cut}", alg.as_str()),
            );
        }
        for extra in [1, 8] {
            let mut long = encrypted.clone();
            long.extend(std::iter::repeat_n(0, extra));
            assert_unwrap_error(k.unwrap_material(alg, &long), &format!("{} extended by {extra}", alg.as_str()));
        }
        assert_unwrap_error(other_2048().unwrap_material(alg, &encrypted), &format!("{} wrong key", alg.as_str()));
        assert_unwrap_error(k.unwrap_material(alg, &[]), "empty");
    }
}

#[test]
fn a_wrapped_aes_key_of_another_length_is_refused() {
    // RSA_AES_KEY_WRAP with an AES-128 ephemeral key: the OAEP layer decodes, the 32-byte rule
    // refuses it.
    let k = key(WrappingKeySpec::Rsa2048);
    let short_key = [5u8; 16];
    let mut encrypted = wrap_for_import(&k.public_key_der(), WrappingAlgorithm::RsaesOaepSha256, &short_key).unwrap();
    encrypted.extend_from_slice(&[0u8; 40]);
    assert_unwrap_error(k.unwrap_material(WrappingAlgorithm::RsaAesKeyWrapSha256, &encrypted), "AES-128 key");
}

#[test]
fn debug_of_a_wrapping_key_shows_no_private_bytes() {
    let k = key(WrappingKeySpec::Rsa2048);
    let debug = format!("{k:?}");
    assert!(debug.contains("RSA_2048"), "{debug}");
    assert!(debug.contains(&hex::encode(k.public_key_digest())), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
    let pkcs8 = k.to_pkcs8_der();
    for window in pkcs8.windows(6) {
        assert!(!debug.to_lowercase().contains(&hex::encode(window)), "{debug}");
    }
}

// ---------------------------------------------------------------------------------------------
// Interop with the OpenSSL commands the AWS documentation gives customers.

fn openssl_available() -> bool {
    let ok = Command::new("openssl").arg("version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("NOTICE: `openssl` is not on PATH; skipping the OpenSSL interop test");
    }
    ok
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn oaep_args(md: &str) -> [String; 6] {
    [
        "-pkeyopt".into(),
        "rsa_padding_mode:oaep".into(),
        "-pkeyopt".into(),
        format!("rsa_oaep_md:{md}"),
        "-pkeyopt".into(),
        format!("rsa_mgf1_md:{md}"),
    ]
}

fn md_of(alg: WrappingAlgorithm) -> &'static str {
    match alg {
        WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaAesKeyWrapSha1 => "sha1",
        _ => "sha256",
    }
}

/// What the customer does with OpenSSL (AWS KMS Developer Guide, "Encrypt key material").
fn openssl_wrap(dir: &Path, alg: WrappingAlgorithm, material: &[u8]) -> Vec<u8> {
    std::fs::write(dir.join("material.bin"), material).unwrap();
    let oaep = oaep_args(md_of(alg));
    let oaep: Vec<&str> = oaep.iter().map(String::as_str).collect();
    let encrypt = |input: &str, output: &str| {
        let mut args = vec!["pkeyutl", "-encrypt", "-in", input, "-out", output];
        args.extend(["-inkey", "pub.der", "-keyform", "DER", "-pubin"]);
        args.extend(&oaep);
        openssl(dir, &args);
    };
    if !alg.uses_aes_key_wrap() {
        encrypt("material.bin", "encrypted.bin");
        return std::fs::read(dir.join("encrypted.bin")).unwrap();
    }
    let aes_key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    std::fs::write(dir.join("aes-key.bin"), aes_key).unwrap();
    let aes_hex = hex::encode(aes_key);
    let args = format!("enc -id-aes256-wrap-pad -K {aes_hex} -iv A65959A6 -in material.bin -out kwp.bin");
    openssl(dir, &args.split(' ').collect::<Vec<_>>());
    encrypt("aes-key.bin", "aes-key-wrapped.bin");
    let mut out = std::fs::read(dir.join("aes-key-wrapped.bin")).unwrap();
    out.extend(std::fs::read(dir.join("kwp.bin")).unwrap());
    out
}

/// The reverse: OpenSSL with the private key reads what `wrap_for_import` wrote.
fn openssl_unwrap(dir: &Path, k: &ImportWrappingKey, alg: WrappingAlgorithm, encrypted: &[u8]) -> Vec<u8> {
    std::fs::write(dir.join("priv.der"), &*k.to_pkcs8_der()).unwrap();
    let oaep = oaep_args(md_of(alg));
    let oaep: Vec<&str> = oaep.iter().map(String::as_str).collect();
    let decrypt = |input: &str, output: &str| {
        let mut args = vec!["pkeyutl", "-decrypt", "-in", input, "-out", output];
        args.extend(["-inkey", "priv.der", "-keyform", "DER"]);
        args.extend(&oaep);
        openssl(dir, &args);
    };
    let k_len = k.spec().modulus_len();
    if !alg.uses_aes_key_wrap() {
        std::fs::write(dir.join("in.bin"), encrypted).unwrap();
        decrypt("in.bin", "out.bin");
    } else {
        std::fs::write(dir.join("rsa.bin"), &encrypted[..k_len]).unwrap();
        std::fs::write(dir.join("kwp.bin"), &encrypted[k_len..]).unwrap();
        decrypt("rsa.bin", "aes.bin");
        let aes_hex = hex::encode(std::fs::read(dir.join("aes.bin")).unwrap());
        let args = format!("enc -d -id-aes256-wrap-pad -K {aes_hex} -iv A65959A6 -in kwp.bin -out out.bin");
        openssl(dir, &args.split(' ').collect::<Vec<_>>());
    }
    let out = std::fs::read(dir.join("out.bin")).unwrap();
    std::fs::remove_file(dir.join("priv.der")).unwrap();
    out
}

#[test]
fn openssl_wrapped_material_unwraps_and_openssl_reads_ours() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for spec in WrappingKeySpec::ALL {
        let k = key(spec);
        std::fs::write(dir.path().join("pub.der"), k.public_key_der()).unwrap();
        for alg in WrappingAlgorithm::ALL {
            let lengths: &[usize] = if alg.uses_aes_key_wrap() { &[32, 13, 1217] } else { &[32] };
            for &len in lengths {
                let m = material(len);
                let what = format!("{} {} {len} bytes", spec.as_str(), alg.as_str());
                let encrypted = openssl_wrap(dir.path(), alg, &m);
                let back = k.unwrap_material(alg, &encrypted).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(&back[..], &m[..], "{what}");

                let ours = wrap_for_import(&k.public_key_der(), alg, &m).unwrap();
                assert_eq!(openssl_unwrap(dir.path(), k, alg, &ours), m, "{what}, OpenSSL reading ours");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wrapping keys stored under the root key.

const ACCOUNT: &str = "111122223333";

fn import_aad(account: &str) -> ImportKeyAad<'_> {
    ImportKeyAad { account, key_id: [7; 16], token_id: [9; 16] }
}

#[test]
fn wrapped_wrapping_key_round_trips_and_is_bound_to_root_account_key_and_token() {
    let root = RootKey::generate();
    let k = key(WrappingKeySpec::Rsa2048);
    let aad = import_aad(ACCOUNT);
    let wrapped = root.wrap_import_key(&aad, k);
    assert_eq!(wrapped[0], 1);
    assert_eq!(&wrapped[1..17], &root.id());
    assert_ne!(root.wrap_import_key(&aad, k), wrapped, "fresh nonce per wrap");

    let back = root.unwrap_import_key(&aad, &wrapped).unwrap();
    assert_eq!(back.public_key_der(), k.public_key_der());
    assert_eq!(*back.to_pkcs8_der(), *k.to_pkcs8_der());
    // Usable: unwraps material wrapped for the original key.
    let encrypted = wrap_for_import(&k.public_key_der(), WrappingAlgorithm::RsaAesKeyWrapSha256, &[3; 32]).unwrap();
    assert_eq!(&back.unwrap_material(WrappingAlgorithm::RsaAesKeyWrapSha256, &encrypted).unwrap()[..], &[3; 32]);

    // The PKCS#8 bytes do not appear in the clear.
    let pkcs8 = k.to_pkcs8_der();
    assert!(!wrapped.windows(16).any(|w| pkcs8.windows(16).any(|p| p == w)));

    let others = [
        ImportKeyAad { account: "444455556666", ..aad },
        ImportKeyAad { key_id: [8; 16], ..aad },
        ImportKeyAad { token_id: [10; 16], ..aad },
    ];
    for other in others {
        assert!(matches!(root.unwrap_import_key(&other, &wrapped), Err(CryptoError::UnwrapFailed)), "{other:?}");
    }
    match RootKey::generate().unwrap_import_key(&aad, &wrapped) {
        Err(CryptoError::WrongRootKey { wrapped_by, .. }) => assert_eq!(wrapped_by, root.id()),
        other => panic!("other root key: {other:?}"),
    }
    for pos in [0, 17, 40, 41, 500, wrapped.len() - 1] {
        let mut bad = wrapped.clone();
        bad[pos] ^= 0x80;
        assert!(root.unwrap_import_key(&aad, &bad).is_err(), "byte {pos} flipped");
    }
    for len in [0, 1, 41, 56, wrapped.len() - 1] {
        assert!(root.unwrap_import_key(&aad, &wrapped[..len]).is_err(), "truncated to {len}");
    }
    // A different root key with the same id cannot exist in practice; a forged id claiming this
    // root key still fails the tag.
    let mut forged = RootKey::generate().wrap_import_key(&aad, k);
    forged[1..17].copy_from_slice(&root.id());
    assert!(matches!(root.unwrap_import_key(&aad, &forged), Err(CryptoError::UnwrapFailed)));
}

// ---------------------------------------------------------------------------------------------
// Import tokens.

fn fields() -> ImportTokenFields {
    ImportTokenFields {
        account: ACCOUNT.to_owned(),
        key_id: [7; 16],
        token_id: [0x42; 16],
        wrapping_key_spec: WrappingKeySpec::Rsa3072,
        wrapping_algorithm: WrappingAlgorithm::RsaAesKeyWrapSha256,
        public_key_digest: [0xD1; 32],
        valid_to_unix_ms: 1_767_225_600_000,
    }
}

fn assert_invalid_token(result: keyledger_crypto::Result<ImportTokenFields>, what: &str) {
    match result {
        Err(e @ CryptoError::InvalidImportToken) => assert_eq!(e.to_string(), "invalid import token"),
        other => panic!("{what}: expected InvalidImportToken, got {other:?}"),
    }
}

#[test]
fn import_token_has_the_documented_layout_and_verifies() {
    let root = RootKey::generate();
    let f = fields();
    let token = root.import_token(&f);
    assert_eq!(token.len(), IMPORT_TOKEN_LEN);
    assert_eq!(token.len(), 93);
    assert_eq!(token[0], 1);
    assert_eq!(&token[1..17], &f.token_id);
    assert_eq!(&token[17..25], &f.valid_to_unix_ms.to_be_bytes());
    assert_eq!(&token[25..27], &[0, 2]); // RSA_3072
    assert_eq!(&token[27..29], &[0, 4]); // RSA_AES_KEY_WRAP_SHA_256
    assert_eq!(&token[29..61], &f.public_key_digest);
    assert_eq!(root.import_token(&f), token, "deterministic");
    assert_eq!(root.verify_import_token(ACCOUNT, [7; 16], &token).unwrap(), f);

    // Every spec and algorithm survives the round trip, and the public key digest of a real key.
    let k = key(WrappingKeySpec::Rsa2048);
    for spec in WrappingKeySpec::ALL {
        for alg in WrappingAlgorithm::ALL {
            let f = ImportTokenFields {
                wrapping_key_spec: spec,
                wrapping_algorithm: alg,
                public_key_digest: k.public_key_digest(),
                valid_to_unix_ms: u64::MAX,
                ..fields()
            };
            assert_eq!(root.verify_import_token(ACCOUNT, [7; 16], &root.import_token(&f)).unwrap(), f);
        }
    }
}

#[test]
fn import_token_for_another_account_key_or_root_is_invalid() {
    let root = RootKey::generate();
    let token = root.import_token(&fields());
    assert_invalid_token(root.verify_import_token("444455556666", [7; 16], &token), "other account");
    assert_invalid_token(root.verify_import_token("11112222333", [7; 16], &token), "account prefix");
    assert_invalid_token(root.verify_import_token("", [7; 16], &token), "empty account");
    assert_invalid_token(root.verify_import_token(ACCOUNT, [8; 16], &token), "other key id");
    assert_invalid_token(RootKey::generate().verify_import_token(ACCOUNT, [7; 16], &token), "other root key");
}

#[test]
fn import_token_with_any_field_changed_is_invalid() {
    let root = RootKey::generate();
    let token = root.import_token(&fields());
    // Each field of the token, by offset.
    let fields_at = [
        ("version", 0),
        ("token id", 1),
        ("token id end", 16),
        ("valid to", 17),
        ("valid to low byte", 24),
        ("spec", 26),
        ("algorithm", 28),
        ("public key digest", 29),
        ("public key digest end", 60),
        ("tag", 61),
        ("tag end", 92),
    ];
    for (name, pos) in fields_at {
        for bit in [0x01, 0x80] {
            let mut bad = token.clone();
            bad[pos] ^= bit;
            assert_invalid_token(root.verify_import_token(ACCOUNT, [7; 16], &bad), name);
        }
    }
    // A re-encoded token with a changed field, under the right root key but with the old tag.
    let changed = [
        ImportTokenFields { token_id: [0x43; 16], ..fields() },
        ImportTokenFields { valid_to_unix_ms: fields().valid_to_unix_ms + 1, ..fields() },
        ImportTokenFields { wrapping_key_spec: WrappingKeySpec::Rsa4096, ..fields() },
        ImportTokenFields { wrapping_algorithm: WrappingAlgorithm::RsaesOaepSha256, ..fields() },
        ImportTokenFields { public_key_digest: [0xD2; 32], ..fields() },
    ];
    for f in changed {
        let mut spliced = root.import_token(&f);
        spliced[61..].copy_from_slice(&token[61..]);
        assert_invalid_token(root.verify_import_token(ACCOUNT, [7; 16], &spliced), &format!("{f:?}"));
    }
}

#[test]
fn import_token_of_another_length_or_version_is_invalid() {
    let root = RootKey::generate();
    let token = root.import_token(&fields());
    for len in [0, 1, 61, 92] {
        assert_invalid_token(root.verify_import_token(ACCOUNT, [7; 16], &token[..len]), &format!("length {len}"));
    }
    let mut long = token.clone();
    long.push(0);
    assert_invalid_token(root.verify_import_token(ACCOUNT, [7; 16], &long), "extended by one byte");
    for version in [0u8, 2, 0xFF] {
        let mut other = token.clone();
        other[0] = version;
        assert_invalid_token(root.verify_import_token(ACCOUNT, [7; 16], &other), &format!("version {version}"));
    }
}

#[test]
fn import_token_verification_does_not_check_expiry() {
    // Expiry is the caller's: a token valid until the epoch still verifies.
    let root = RootKey::generate();
    let f = ImportTokenFields { valid_to_unix_ms: 0, ..fields() };
    assert_eq!(root.verify_import_token(ACCOUNT, [7; 16], &root.import_token(&f)).unwrap().valid_to_unix_ms, 0);
}
