//! Connection profiles that dev mode hands to the CLI (`connection.json`) and to the roles.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::secret::Password;
use crate::Error;

/// How a tenant client (the CLI) connects: `connection.json` written by `keyledger dev`.
///
/// JSON object with the field names below; the file holds a password and is written mode 0600.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientProfile {
    /// Server URL, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// NATS user name.
    pub user: String,
    /// NATS password.
    pub password: Password,
    /// Value for `ConnectOptions::custom_inbox_prefix` (`_INBOX.<user>`); the user may subscribe
    /// to nothing else.
    pub inbox_prefix: String,
    /// The Keyledger account id (12 digits) this tenant maps to.
    pub keyledger_account: String,
    /// CA certificate (PEM) to verify a `tls://` server with; None: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// How a role (keyd, cryptod, auditd) connects to the service account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceProfile {
    /// Server URL, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// NATS account of the user (`KEYLEDGER`).
    pub nats_account: String,
    /// NATS user name.
    pub user: String,
    /// NATS password.
    pub password: Password,
    /// Value for `ConnectOptions::custom_inbox_prefix` (`_INBOX.<user>`).
    pub inbox_prefix: String,
    /// CA certificate (PEM) to verify a `tls://` server with; None: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl ClientProfile {
    /// Writes the profile as pretty JSON to `path`, mode 0600, atomically (temp file + rename).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    pub fn write_to(&self, path: &Path) -> Result<(), Error> {
        write_private_json(path, self)
    }

    /// Reads a profile written by [`ClientProfile::write_to`].
    ///
    /// # Errors
    /// [`Error::Io`] if unreadable, [`Error::Config`] if not a valid profile.
    pub fn read_from(path: &Path) -> Result<Self, Error> {
        read_json(path)
    }
}

impl ServiceProfile {
    /// Writes the profile as pretty JSON to `path`, mode 0600, atomically (temp file + rename).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    pub fn write_to(&self, path: &Path) -> Result<(), Error> {
        write_private_json(path, self)
    }

    /// Reads a profile written by [`ServiceProfile::write_to`].
    ///
    /// # Errors
    /// [`Error::Io`] if unreadable, [`Error::Config`] if not a valid profile.
    pub fn read_from(path: &Path) -> Result<Self, Error> {
        read_json(path)
    }
}

fn write_private_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| Error::Config(format!("cannot serialize profile: {e}")))?;
    write_private_file(path, &text)
}

/// Writes `bytes` to `path` with mode 0600: a sibling temp file is created with that mode
/// (never wider), synced, then renamed over `path`.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let file_name = path.file_name().ok_or_else(|| Error::Config(format!("{} is not a file path", path.display())))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let io = |context: String| move |source| Error::Io { context, source };
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(format!("creating {}", tmp.display())))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io(format!("writing {}", tmp.display())))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))?;
    Ok(())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let bytes =
        fs::read(path).map_err(|source| Error::Io { context: format!("reading {}", path.display()), source })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Config(format!("{} is not a valid profile: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn client_profile_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connection.json");
        let p = ClientProfile {
            url: "nats://127.0.0.1:1".into(),
            user: "dev".into(),
            password: Password::new("pw-123"),
            inbox_prefix: "_INBOX.dev".into(),
            keyledger_account: "111122223333".into(),
            ca_file: None,
        };
        p.write_to(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(ClientProfile::read_from(&path).unwrap(), p);
        // Overwriting keeps the mode and replaces the content.
        let mut q = p.clone();
        q.user = "dev2".into();
        q.write_to(&path).unwrap();
        assert_eq!(ClientProfile::read_from(&path).unwrap().user, "dev2");
        assert!(!format!("{q:?}").contains("pw-123"));
    }
}
