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

/// Writes `target` through a temporary file that is renamed into place only if `write`
/// succeeds; otherwise the temporary file is removed.
fn write_atomically(target: &Path, write: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let tmp = temp_beside(target);
    let result = (|| {
        let file = File::options().write(true).create_new(true).open(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        write(&mut out)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        std::fs::rename(&tmp, target).with_context(|| format!("cannot move the result to {}", target.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn decode_b64_secret(value: &serde_json::Value, member: &str) -> anyhow::Result<DataKey> {
    let text = value.get(member).and_then(|v| v.as_str()).with_context(|| format!("the reply has no {member}"))?;
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD.decode(text).with_context(|| format!("the reply's {member} is not base64"))?,
    );
    Ok(DataKey::from_vec(bytes.to_vec()))
}

fn decode_b64(value: &serde_json::Value, member: &str) -> anyhow::Result<Vec<u8>> {
    let text = value.get(member).and_then(|v| v.as_str()).with_context(|| format!("the reply has no {member}"))?;
    base64::engine::general_purpose::STANDARD.decode(text).with_context(|| format!("the reply's {member} is not base64"))
}

/// Encrypts `input` into `output` under a fresh data key of `key_id`.
pub async fn encrypt(client: &KmsClient, key_id: &str, context: EncryptionContext, input: &Path, output: &Path) -> anyhow::Result<u64> {
    let source = File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
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
    let mut bytes = 0;
    let output_owned = output.to_path_buf();
    tokio::task::block_in_place(|| {
        write_atomically(&output_owned, |out| {
            bytes = envelope::encrypt(&data_key, &header, BufReader::with_capacity(256 * 1024, source), out)?;
            Ok(())
        })
    })?;
    Ok(bytes)
}

/// Decrypts the envelope file `input` into `output`.
pub async fn decrypt(client: &KmsClient, input: &Path, output: &Path) -> anyhow::Result<u64> {
    let file = File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let parsed = envelope::read_header(&mut reader)?;
    let header = parsed.header();
    if header.key_arn.is_empty() {
        bail!("the envelope names no key");
    }
    let blob_b64 = base64::engine::general_purpose::STANDARD.encode(&header.encrypted_data_key);
    let mut reply = client
        .call(
            "Decrypt",
            &json!({ "KeyId": header.key_arn, "CiphertextBlob": blob_b64, "EncryptionContext": header.encryption_context }),
        )
        .await?
        .body;
    let data_key = decode_b64_secret(&reply, "Plaintext")?;
    if let Some(serde_json::Value::String(s)) = reply.get_mut("Plaintext") {
        zeroize::Zeroize::zeroize(s);
    }
    let mut bytes = 0;
    let output_owned = output.to_path_buf();
    tokio::task::block_in_place(|| {
        write_atomically(&output_owned, |out| {
            bytes = envelope::decrypt_body(&data_key, &parsed, reader, out)?;
            Ok(())
        })
    })?;
    Ok(bytes)
}
