//! `keyledger envelope encrypt|decrypt`: envelope encryption of a file of any size.
//!
//! Encrypt asks the service for a fresh 256-bit data key (GenerateDataKey, AES_256) under the
//! KMS key, encrypts the file locally with it in 64 KiB STREAM chunks (XChaCha20-Poly1305,
//! format in `libs/crypto/ENVELOPE.md`), and stores the encrypted data key in the file header.
//! Decrypt reads the header, asks the service to Decrypt the data key (same encryption
//! context), and decrypts chunk by chunk. Memory use does not grow with the file. Output goes
//! to a temporary file beside the target that is renamed into place only when the whole file
//! verified, so a tampered or truncated input never leaves a partial plaintext behind.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use keyledger_crypto::{envelope, DataKey, EncryptionContext};
use serde_json::json;
use zeroize::Zeroizing;

use crate::protocol::KmsClient;

fn temp_beside(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    target.with_file_name(format!(".{name}.keyledger-{}.tmp", uuid::Uuid::new_v4().simple()))
}

/// Checks an output path before anything is written: it must be a path for a regular file
/// (not `-`, not a device, directory or other special file — renaming over `/dev/stdout`
/// would replace it), not the input itself, and not an existing file unless `force`.
pub fn check_output(input: &Path, output: &Path, force: bool) -> anyhow::Result<()> {
    if output.as_os_str() == "-" {
        bail!("--out -: writing to standard output is not supported; give a file path (output is renamed into place only when complete)");
    }
    match std::fs::symlink_metadata(output) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot check --out {}: {e}", output.display()),
        Ok(meta) => {
            if !meta.file_type().is_file() {
                bail!("--out {} exists and is not a regular file; refusing to replace it", output.display());
            }
            if let (Ok(a), Ok(b)) = (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
                if a == b {
                    bail!("--in and --out are the same file ({})", output.display());
                }
            }
            if !force {
                bail!("--out {} exists; pass --force to replace it", output.display());
            }
        }
    }
    Ok(())
}

/// Writes `target` through a temporary file (mode 0600) beside it that is renamed into place
/// only if `write` succeeds; otherwise, or on Ctrl-C / SIGTERM, the temporary file is removed.
async fn write_atomically(
    target: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<u64> + Send + 'static,
) -> anyhow::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = temp_beside(target);
    let file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let (tmp_in, target_in) = (tmp.clone(), target.to_path_buf());
    let work = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let n = write(&mut out)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        std::fs::rename(&tmp_in, &target_in)
            .with_context(|| format!("cannot move the result to {}", target_in.display()))?;
        Ok(n)
    });
    let result = tokio::select! {
        r = work => r.map_err(|e| anyhow::anyhow!("the writer failed: {e}")).and_then(|r| r),
        _ = super::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn decode_b64_secret(value: &serde_json::Value, member: &str) -> anyhow::Result<DataKey> {
    let text = value.get(member).and_then(|v| v.as_str()).with_context(|| format!("the reply has no {member}"))?;
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .with_context(|| format!("the reply's {member} is not base64"))?,
    );
    Ok(DataKey::from_vec(bytes.to_vec()))
}

fn decode_b64(value: &serde_json::Value, member: &str) -> anyhow::Result<Vec<u8>> {
    let text = value.get(member).and_then(|v| v.as_str()).with_context(|| format!("the reply has no {member}"))?;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .with_context(|| format!("the reply's {member} is not base64"))
}

/// Encrypts `input` into `output` under a fresh data key of `key_id`.
pub async fn encrypt(
    client: &KmsClient,
    key_id: &str,
    context: EncryptionContext,
    input: &Path,
    output: &Path,
) -> anyhow::Result<u64> {
    let source = File::open(input).with_context(|| format!("cannot open --in {}", input.display()))?;
    if source.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        bail!("--in {} is a directory", input.display());
    }
    let mut reply = client
        .call("GenerateDataKey", &json!({ "KeyId": key_id, "KeySpec": "AES_256", "EncryptionContext": context }))
        .await?
        .body;
    let data_key = decode_b64_secret(&reply, "Plaintext")?;
    if let Some(serde_json::Value::String(s)) = reply.get_mut("Plaintext") {
        zeroize::Zeroize::zeroize(s);
    }
    let blob = decode_b64(&reply, "CiphertextBlob")?;
    let key_arn = reply.get("KeyId").and_then(|v| v.as_str()).context("the reply has no KeyId")?.to_owned();
    let header = envelope::EnvelopeHeader::new(key_arn, context, blob);
    write_atomically(output, move |out| {
        Ok(envelope::encrypt(&data_key, &header, BufReader::with_capacity(256 * 1024, source), out)?)
    })
    .await
}

/// What `envelope decrypt` requires of a file before it trusts it.
#[derive(Debug, Default)]
pub struct Expect {
    /// The KMS key the data key must be encrypted under (sent as Decrypt's KeyId, so the
    /// service refuses another with IncorrectKeyException); None: the key the header names.
    pub key_id: Option<String>,
    /// Pairs the header's encryption context must contain with these values.
    pub context_subset: EncryptionContext,
}

/// What a successful decryption read from the file.
#[derive(Debug)]
pub struct Decrypted {
    /// Plaintext bytes written.
    pub bytes: u64,
    /// The KMS key ARN that decrypted the data key (from the service's answer).
    pub key_arn: String,
    /// The file's encryption context (not secret by design).
    pub encryption_context: EncryptionContext,
}

/// Decrypts the envelope file `input` into `output`, refusing it unless it meets `expect`.
///
/// # Errors
/// The file's own errors (format, truncation, tampering); a context pair of `expect` missing
/// or different (nothing is sent then); the service's errors (`CallError::Service`):
/// IncorrectKeyException when the data key is not under `expect.key_id`,
/// InvalidCiphertextException when the header's encrypted data key or context was altered.
pub async fn decrypt(client: &KmsClient, input: &Path, output: &Path, expect: &Expect) -> anyhow::Result<Decrypted> {
    let file = File::open(input).with_context(|| format!("cannot open --in {}", input.display()))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        bail!("--in {} is a directory", input.display());
    }
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let parsed = envelope::read_header(&mut reader)?;
    let header = parsed.header();
    if header.key_arn.is_empty() {
        bail!("the envelope names no key");
    }
    for (k, v) in &expect.context_subset {
        match header.encryption_context.get(k) {
            Some(found) if found == v => {}
            Some(_) => bail!("the file's encryption context has another value for '{k}'; refusing it"),
            None => bail!("the file's encryption context has no '{k}'; refusing it"),
        }
    }
    let key_id = expect.key_id.as_deref().unwrap_or(&header.key_arn);
    let blob_b64 = base64::engine::general_purpose::STANDARD.encode(&header.encrypted_data_key);
    let encryption_context = header.encryption_context.clone();
    let mut reply = client
        .call("Decrypt", &json!({ "KeyId": key_id, "CiphertextBlob": blob_b64, "EncryptionContext": encryption_context }))
        .await
        .map_err(|e| match e.aws_name() {
            Some("InvalidCiphertextException") => anyhow::Error::new(e).context(
                "the file's data key did not decrypt: its header (encrypted data key or encryption context) was altered",
            ),
            Some("IncorrectKeyException") => {
                anyhow::Error::new(e).context(format!("the file was not encrypted under --key-id {key_id}"))
            }
            _ => anyhow::Error::new(e),
        })?
        .body;
    let data_key = decode_b64_secret(&reply, "Plaintext")?;
    if let Some(serde_json::Value::String(s)) = reply.get_mut("Plaintext") {
        zeroize::Zeroize::zeroize(s);
    }
    let key_arn = reply.get("KeyId").and_then(|v| v.as_str()).unwrap_or(&header.key_arn).to_owned();
    let bytes =
        write_atomically(output, move |out| Ok(envelope::decrypt_body(&data_key, &parsed, reader, out)?)).await?;
    Ok(Decrypted { bytes, key_arn, encryption_context })
}
