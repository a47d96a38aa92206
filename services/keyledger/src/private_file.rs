//! Files that hold secrets or credentials (profiles, dev state, token files, access keys).

use std::path::Path;

use anyhow::Context as _;

/// Writes `bytes` to `path` with mode 0600, atomically: a temporary file beside it (named after
/// it and this process) is written, synced and renamed over `path`, so a reader never sees a
/// partial file and the content is never readable by others, even briefly.
///
/// # Errors
/// File system errors, or a `path` without a file name.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = path.file_name().context("not a file path")?.to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(())
}
