//! Root key files and descriptors, derived ids, and key-material wrapping.

use std::fs;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::PermissionsExt;

use keyledger_crypto::{CryptoError, KeyMaterial, MaterialAad, RootKey, WrappedMaterial, WRAPPED_MATERIAL_LEN};

const ROOT_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn root_bytes() -> [u8; 32] {
    hex::decode(ROOT_HEX).unwrap().try_into().unwrap()
}

fn write_key_file(dir: &tempfile::TempDir, content: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.path().join("root.key");
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn aad(account: &str) -> MaterialAad<'_> {
    MaterialAad { account, key_id: [7; 16], version: 1 }
}

#[test]
fn root_key_file_with_mode_0600_loads_the_written_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_key_file(&dir, &format!("{ROOT_HEX}\n"), 0o600);
    let loaded = RootKey::load(&path).unwrap();
    assert_eq!(loaded.id(), RootKey::from_bytes(root_bytes()).id());
    // Without the trailing newline too, and in upper case.
    let path = write_key_file(&dir, &ROOT_HEX.to_uppercase(), 0o400);
    assert_eq!(RootKey::load(&path).unwrap().id(), loaded.id());
}

#[test]
fn root_key_file_readable_by_group_or_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
        let path = write_key_file(&dir, &format!("{ROOT_HEX}\n"), mode);
        match RootKey::load(&path) {
            Err(CryptoError::RootKeyFile(msg)) => {
                assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
                assert!(!msg.contains(ROOT_HEX), "{msg}");
            }
            other => panic!("mode {mode:o}: {other:?}"),
        }
    }
}

#[test]
fn root_key_file_with_wrong_length_or_non_hex_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        String::new(),
        ROOT_HEX[..62].to_owned(),
        format!("{ROOT_HEX}00"),
        format!("{ROOT_HEX}\n\n"),
        format!("{}zz", &ROOT_HEX[..62]),
        format!(" {}", &ROOT_HEX[..63]),
        "a".repeat(10_000),
    ];
    for content in bad {
        let path = write_key_file(&dir, &content, 0o600);
        match RootKey::load(&path) {
            Err(CryptoError::RootKeyFile(msg)) => {
                assert!(!msg.contains(&ROOT_HEX[..16]), "{msg}")
            }
            other => panic!("{content:?}: {other:?}"),
        }
    }
}

#[test]
fn missing_root_key_file_or_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(RootKey::load(&dir.path().join("absent")), Err(CryptoError::RootKeyFile(_))));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    assert!(matches!(RootKey::load(dir.path()), Err(CryptoError::RootKeyFile(_))));
}

#[test]
fn create_file_writes_a_0600_hex_file_that_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.key");
    let created = RootKey::create_file(&path).unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let content = fs::read_to_string(&path).unwrap();
    assert_eq!(content.len(), 65);
    assert!(content.ends_with('\n'));
    assert!(content[..64].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(RootKey::load(&path).unwrap().id(), created.id());
}

#[test]
fn create_file_refuses_to_overwrite_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_key_file(&dir, &format!("{ROOT_HEX}\n"), 0o600);
    assert!(matches!(RootKey::create_file(&path), Err(CryptoError::RootKeyFile(_))));
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{ROOT_HEX}\n"));
}

#[test]
fn root_key_loads_from_an_inherited_descriptor_and_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_key_file(&dir, &format!("{ROOT_HEX}\n"), 0o600);
    let fd = fs::File::open(&path).unwrap().into_raw_fd();
    let key = RootKey::load_from_fd(fd).unwrap();
    assert_eq!(key.id(), RootKey::from_bytes(root_bytes()).id());
    // Closed: the number is free or (other tests run in parallel) reused for another file.
    let now = fs::read_link(format!("/proc/self/fd/{fd}")).ok();
    assert_ne!(now, Some(path), "descriptor {fd} should be closed");
}

#[test]
fn root_key_loads_from_an_inherited_pipe() {
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let mut writer = fs::File::from(write_end);
    std::io::Write::write_all(&mut writer, format!("{ROOT_HEX}\n").as_bytes()).unwrap();
    drop(writer);
    let key = RootKey::load_from_fd(read_end.into_raw_fd()).unwrap();
    assert_eq!(key.id(), RootKey::from_bytes(root_bytes()).id());
}

#[test]
fn root_key_descriptor_of_a_loose_file_or_stdout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_key_file(&dir, &format!("{ROOT_HEX}\n"), 0o644);
    let fd = fs::File::open(&path).unwrap().into_raw_fd();
    assert!(matches!(RootKey::load_from_fd(fd), Err(CryptoError::RootKeyFile(_))));
    for fd in [-1, 1, 2] {
        assert!(matches!(RootKey::load_from_fd(fd), Err(CryptoError::RootKeyFile(_))));
    }
}

#[test]
fn root_key_debug_shows_only_the_id() {
    let key = RootKey::from_bytes(root_bytes());
    let s = format!("{key:?}");
    assert!(s.contains(&hex::encode(key.id())));
    assert!(!s.contains("0001020304"));
    assert!(s.contains("redacted"));
}

#[test]
fn root_key_id_and_material_id_follow_their_blake3_definitions() {
    let key = RootKey::from_bytes(root_bytes());
    let full = blake3::derive_key("keyledger 2026-11-29 root key id v1", &root_bytes());
    assert_eq!(key.id(), full[..16]);
    let m = KeyMaterial::from_bytes([3; 32]);
    let ck = blake3::derive_key("keyledger 2026-11-29 key material commitment v1", &root_bytes());
    assert_eq!(key.material_id(&m), *blake3::keyed_hash(&ck, &[3; 32]).as_bytes());
    // Different material, different id; different root, different id for the same material.
    assert_ne!(key.material_id(&m), key.material_id(&KeyMaterial::from_bytes([4; 32])));
    assert_ne!(key.material_id(&m), RootKey::from_bytes([1; 32]).material_id(&m));
}

#[test]
fn wrap_then_unwrap_returns_the_material() {
    let key = RootKey::generate();
    let m = KeyMaterial::generate();
    let w = key.wrap(&aad("111122223333"), &m);
    assert_eq!(w.as_bytes().len(), WRAPPED_MATERIAL_LEN);
    assert_eq!(w.as_bytes()[0], 1);
    assert_eq!(&w.as_bytes()[1..17], &key.id());
    assert_eq!(WrappedMaterial::root_key_id_of(w.as_bytes()).unwrap(), key.id());
    assert_eq!(w.digest(), *blake3::hash(w.as_bytes()).as_bytes());
    let back = key.unwrap(&aad("111122223333"), w.as_bytes()).unwrap();
    assert_eq!(back.as_bytes(), m.as_bytes());
    let verified = key.unwrap_verified(&aad("111122223333"), w.as_bytes(), &key.material_id(&m)).unwrap();
    assert_eq!(verified.as_bytes(), m.as_bytes());
    assert_ne!(w, key.wrap(&aad("111122223333"), &m), "fresh nonce per wrap");
}

#[test]
fn unwrap_with_another_account_key_id_or_version_fails() {
    let key = RootKey::generate();
    let m = KeyMaterial::generate();
    let good = MaterialAad { account: "acct", key_id: [1; 16], version: 2 };
    let w = key.wrap(&good, &m);
    for wrong in [
        MaterialAad { account: "acct2", ..good },
        MaterialAad { account: "", ..good },
        MaterialAad { key_id: [2; 16], ..good },
        MaterialAad { version: 1, ..good },
        MaterialAad { version: 3, ..good },
    ] {
        assert!(matches!(key.unwrap(&wrong, w.as_bytes()), Err(CryptoError::UnwrapFailed)), "{wrong:?}");
    }
}

#[test]
fn unwrap_under_another_root_key_names_both_root_key_ids() {
    let a = RootKey::generate();
    let b = RootKey::generate();
    let w = a.wrap(&aad("x"), &KeyMaterial::generate());
    match b.unwrap(&aad("x"), w.as_bytes()) {
        Err(e @ CryptoError::WrongRootKey { wrapped_by, loaded }) => {
            assert_eq!(wrapped_by, a.id());
            assert_eq!(loaded, b.id());
            assert!(e.to_string().contains(&hex::encode(a.id())));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tampered_or_malformed_wrapped_material_fails_to_unwrap() {
    let key = RootKey::generate();
    let w = key.wrap(&aad("x"), &KeyMaterial::generate());
    let bytes = w.as_bytes();
    for i in (0..bytes.len()).filter(|i| !(1..17).contains(i)) {
        let mut t = bytes.to_vec();
        t[i] ^= 0x01;
        assert!(matches!(key.unwrap(&aad("x"), &t), Err(CryptoError::UnwrapFailed)), "byte {i}");
    }
    assert!(key.unwrap(&aad("x"), &bytes[..bytes.len() - 1]).is_err());
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(key.unwrap(&aad("x"), &longer).is_err());
    assert!(key.unwrap(&aad("x"), &[]).is_err());
}

#[test]
fn unwrap_verified_rejects_material_that_differs_from_the_logged_commitment() {
    let key = RootKey::generate();
    let m = KeyMaterial::generate();
    let other = KeyMaterial::generate();
    let w = key.wrap(&aad("x"), &m);
    assert!(matches!(
        key.unwrap_verified(&aad("x"), w.as_bytes(), &key.material_id(&other)),
        Err(CryptoError::MaterialIdMismatch)
    ));
}

#[test]
fn material_aad_layout_is_the_documented_one() {
    let a = MaterialAad { account: "ab", key_id: [0xEE; 16], version: 0x0A0B_0C0D };
    let root_id = [0x99u8; 16];
    let mut expected = b"keyledger material aad v1".to_vec();
    expected.extend_from_slice(&root_id);
    expected.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
    expected.extend_from_slice(&[0xEE; 16]);
    expected.extend_from_slice(&[0x0A, 0x0B, 0x0C, 0x0D]);
    expected.extend_from_slice(&[0, 0, 0, 12]);
    expected.extend_from_slice(b"key-material");
    assert_eq!(a.canonical_bytes(&root_id), expected);
}
