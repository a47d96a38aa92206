//! Process hardening against leaking secrets through core dumps and debuggers.

use crate::Result;

/// Makes the process non-dumpable and disables core files. Call it first thing in `main`,
/// before any secret is loaded.
///
/// On Linux:
/// - `prctl(PR_SET_DUMPABLE, 0)`: no core dump on a crash, and other processes of the same
///   user can no longer `ptrace` this one or read its `/proc/<pid>/mem` (prctl(2)). The
///   process itself can still open its own `/proc/self/fd/*`, so
///   [`RootKey::load_from_fd`](crate::RootKey::load_from_fd) works afterwards.
/// - `setrlimit(RLIMIT_CORE, 0, 0)`: soft and hard core-size limits 0 (getrlimit(2)), so even
///   a later `PR_SET_DUMPABLE=1` (which `execve` of a set-id binary may cause) writes no core.
///
/// On other systems it does nothing and returns `Ok(())`.
///
/// # Errors
/// [`CryptoError::Harden`](crate::CryptoError::Harden) naming the call that failed.
pub fn harden_process() -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use crate::CryptoError;
        use nix::sys::resource::{setrlimit, Resource};

        nix::sys::prctl::set_dumpable(false)
            .map_err(|e| CryptoError::Harden(format!("prctl(PR_SET_DUMPABLE, 0): {e}")))?;
        setrlimit(Resource::RLIMIT_CORE, 0, 0)
            .map_err(|e| CryptoError::Harden(format!("setrlimit(RLIMIT_CORE, 0): {e}")))?;
    }
    Ok(())
}
