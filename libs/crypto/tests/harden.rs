//! Process hardening. A test binary of its own: hardening is process-wide and irreversible.

#[cfg(target_os = "linux")]
#[test]
fn hardened_process_is_not_dumpable_and_has_no_core_limit() {
    use nix::sys::resource::{getrlimit, Resource};

    keyledger_crypto::harden_process().unwrap();
    assert!(!nix::sys::prctl::get_dumpable().unwrap());
    assert_eq!(getrlimit(Resource::RLIMIT_CORE).unwrap(), (0, 0));
    // Idempotent.
    keyledger_crypto::harden_process().unwrap();

    // The root key can still be read from an inherited descriptor afterwards.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    let key = keyledger_crypto::RootKey::create_file(&path).unwrap();
    let fd = std::os::fd::IntoRawFd::into_raw_fd(std::fs::File::open(&path).unwrap());
    assert_eq!(keyledger_crypto::RootKey::load_from_fd(fd).unwrap().id(), key.id());
}
