//! cryptod: answers cryptographic and read operations from its projection.
//!
//! Stateless apart from what replay rebuilds (the projection) and a cache of unwrapped
//! material. Scales out by queue group. Before answering NotFound it catches up to the control
//! stream's head, so CreateKey followed at once by Encrypt works for clients that send no
//! minimum sequence.

use std::sync::Arc;

use keyledger_crypto::{self as crypto, EncryptionContext};
use keyledger_events::{AggregateKind, Body};
use keyledger_kms::{Caller, CryptoKey, ErrorKind, KeyId, KmsError, Operation, Request};
use tokio::task::JoinHandle;

use crate::pipeline::{Facts, Recheck};
use crate::roles::{RoleCtx, Success};

/// Runs `f` against the projection; if it answers NotFoundException, catches up to the head
/// and runs it once more.
async fn with_catch_up<T>(
    ctx: &RoleCtx,
    f: impl Fn(&keyledger_kms::Projection) -> Result<T, KmsError>,
) -> Result<(T, u64), KmsError> {
    let first = {
        let p = ctx.follower.read();
        f(&p).map(|v| (v, p.last_applied_seq()))
    };
    match first {
        Err(e) if e.kind == ErrorKind::NotFound => {
            ctx.follower.catch_up(ctx.config.projection_wait).await?;
            let p = ctx.follower.read();
            f(&p).map(|v| (v, p.last_applied_seq()))
        }
        other => other,
    }
}

/// Answers a read operation (DescribeKey, ListKeys, ListAliases, GetKeyRotationStatus,
/// ListKeyRotations, ListResourceTags).
pub async fn handle_read(
    ctx: &RoleCtx,
    caller: &Caller,
    request: &Request,
    facts: &mut Facts,
) -> Result<Success, KmsError> {
    let now = ctx.config.clock.now_unix_ms();
    let (answer, seq) =
        with_catch_up(ctx, |p| keyledger_kms::query(p, &ctx.config.realm, caller, request, now)).await?;
    facts.record.decided_at_seq = seq;
    facts.record.authorized_by = answer.authorized_by;
    Ok(Success::json(answer.body, Some(seq)))
}

/// The key a crypto operation will use, copied out of the projection: `action` is the policy
/// action (`Encrypt`, `GenerateDataKey…`, `ReEncryptTo`), `ec` the request's encryption
/// context (policy conditions and grant constraints see it).
async fn crypto_key(
    ctx: &RoleCtx,
    caller: &Caller,
    key_id: &str,
    op: Operation,
    action: &'static str,
    ec: &EncryptionContext,
) -> Result<(CryptoKey, u64), KmsError> {
    let now = ctx.config.clock.now_unix_ms();
    let access = keyledger_kms::Access::new(caller, action, now).with_context(Some(ec));
    with_catch_up(ctx, |p| keyledger_kms::resolve_for_crypto(p, &ctx.config.realm, &access, key_id, op, now)).await
}

fn dry_run() -> KmsError {
    KmsError::dry_run()
}

fn invalid_ciphertext() -> KmsError {
    KmsError::invalid_ciphertext()
}

/// Encrypts under the key's current material; returns the blob and the material id used.
async fn seal(
    ctx: &RoleCtx,
    key: &CryptoKey,
    ec: &EncryptionContext,
    plaintext: &[u8],
) -> Result<(Vec<u8>, [u8; 32]), KmsError> {
    let version = key.current_version;
    let reference = key.material(version).ok_or_else(|| KmsError::internal("The key has no current material."))?;
    let m = ctx.cache.get(&key.account, key.key_id.as_bytes(), &key.key_id.to_string(), reference).await?;
    Ok((crypto::seal(&m, *key.key_id.as_bytes(), version, ec, plaintext), reference.material_id))
}

/// Resolves the key a ciphertext names (a supplied key id must name the same key).
async fn decrypt_key(
    ctx: &RoleCtx,
    caller: &Caller,
    blob: &[u8],
    supplied_key_id: Option<&str>,
    action: &'static str,
    ec: &EncryptionContext,
) -> Result<(CryptoKey, u32, u64), KmsError> {
    let header = crypto::parse_header(blob).map_err(|_| invalid_ciphertext())?;
    let now = ctx.config.clock.now_unix_ms();
    let access = keyledger_kms::Access::new(caller, action, now).with_context(Some(ec));
    let (key, seq) = with_catch_up(ctx, |p| {
        keyledger_kms::resolve_for_decrypt(
            p,
            &ctx.config.realm,
            &access,
            header.key_id,
            header.material_version,
            supplied_key_id,
            now,
        )
    })
    .await?;
    Ok((key, header.material_version, seq))
}

/// Opens a ciphertext blob with the material version it names.
async fn open(
    ctx: &RoleCtx,
    key: &CryptoKey,
    version: u32,
    blob: &[u8],
    ec: &EncryptionContext,
) -> Result<(crypto::Plaintext, [u8; 32]), KmsError> {
    let reference = key.material(version).ok_or_else(invalid_ciphertext)?;
    let m = ctx.cache.get(&key.account, key.key_id.as_bytes(), &key.key_id.to_string(), reference).await?;
    let plaintext = crypto::open(&m, blob, ec).map_err(|_| invalid_ciphertext())?;
    Ok((plaintext, reference.material_id))
}

/// For DryRun with IGNORE_CIPHERTEXT the blob may be absent; then the key id is required.
fn require_blob(blob: &Option<Vec<u8>>) -> Result<&[u8], KmsError> {
    blob.as_deref().ok_or_else(|| KmsError::validation("CiphertextBlob is required."))
}

/// Answers a cryptographic operation. Replies that carry plaintext are built directly into a
/// buffer that is wiped when dropped. Returns, with the result, the decision to re-check once
/// the request's record is stored (see `pipeline.rs`).
pub async fn handle_crypto(
    ctx: &RoleCtx,
    caller: &Caller,
    request: &Request,
    facts: &mut Facts,
) -> Result<(Success, Option<Recheck>), KmsError> {
    let key_recheck =
        |input: &str, op: Operation, action: &'static str, ec: &EncryptionContext, key: &CryptoKey| Recheck::Key {
            caller: caller.clone(),
            input: input.to_owned(),
            op,
            action,
            ec: ec.clone(),
            key_arn: key.arn.clone(),
        };
    let blob_recheck =
        |blob: &[u8], supplied: &Option<String>, action: &'static str, ec: &EncryptionContext, key: &CryptoKey| {
            let header = crypto::parse_header(blob).ok()?;
            Some(Recheck::Blob {
                caller: caller.clone(),
                key_id: header.key_id,
                material_version: header.material_version,
                supplied: supplied.clone(),
                action,
                ec: ec.clone(),
                key_arn: key.arn.clone(),
            })
        };
    match request {
        Request::Encrypt(r) => {
            let ec = &r.encryption_context;
            let (key, seq) = crypto_key(ctx, caller, &r.key_id, Operation::Encrypt, "Encrypt", ec).await?;
            facts.record.authorized_by = key.authorized_by.clone();
            keyledger_kms::check_encryption_algorithm(&key, r.encryption_algorithm)?;
            if r.dry_run {
                return Err(dry_run());
            }
            let (blob, _) = seal(ctx, &key, ec, r.plaintext.as_bytes()).await?;
            facts.used_key(&key.arn, key.current_version, seq);
            facts.ciphertext(&blob);
            let recheck = key_recheck(&r.key_id, Operation::Encrypt, "Encrypt", ec, &key);
            Ok((Success::secret(keyledger_kms::response::encrypt_body(&key.arn, &blob), Some(seq)), Some(recheck)))
        }
        Request::Decrypt(r) => {
            if r.dry_run && r.ciphertext_blob.is_none() {
                let supplied = r
                    .key_id
                    .as_deref()
                    .ok_or_else(|| KmsError::validation("KeyId is required when the ciphertext is ignored."))?;
                let (key, _) =
                    crypto_key(ctx, caller, supplied, Operation::Decrypt, "Decrypt", &r.encryption_context).await?;
                keyledger_kms::check_encryption_algorithm(&key, r.encryption_algorithm)?;
                return Err(dry_run());
            }
            let blob = require_blob(&r.ciphertext_blob)?;
            let ec = &r.encryption_context;
            let (key, version, seq) = decrypt_key(ctx, caller, blob, r.key_id.as_deref(), "Decrypt", ec).await?;
            facts.record.authorized_by = key.authorized_by.clone();
            keyledger_kms::check_encryption_algorithm(&key, r.encryption_algorithm)?;
            if r.dry_run {
                return Err(dry_run());
            }
            facts.used_key(&key.arn, version, seq);
            let (plaintext, material_id) = open(ctx, &key, version, blob, &r.encryption_context).await?;
            let recheck = blob_recheck(blob, &r.key_id, "Decrypt", ec, &key);
            Ok((
                Success::secret(
                    keyledger_kms::response::decrypt_body(&key.arn, plaintext.as_bytes(), &material_id),
                    Some(seq),
                ),
                recheck,
            ))
        }
        Request::ReEncrypt(r) => {
            let dest_ec = &r.destination_encryption_context;
            let src_ec = &r.source_encryption_context;
            let (dest, dest_seq) =
                crypto_key(ctx, caller, &r.destination_key_id, Operation::ReEncrypt, "ReEncryptTo", dest_ec).await?;
            keyledger_kms::check_encryption_algorithm(&dest, r.destination_encryption_algorithm)?;
            if r.dry_run && r.ciphertext_blob.is_none() {
                let supplied = r
                    .source_key_id
                    .as_deref()
                    .ok_or_else(|| KmsError::validation("SourceKeyId is required when the ciphertext is ignored."))?;
                let (source, _) =
                    crypto_key(ctx, caller, supplied, Operation::ReEncrypt, "ReEncryptFrom", src_ec).await?;
                keyledger_kms::check_encryption_algorithm(&source, r.source_encryption_algorithm)?;
                return Err(dry_run());
            }
            let blob = require_blob(&r.ciphertext_blob)?;
            let (source, version, seq) =
                decrypt_key(ctx, caller, blob, r.source_key_id.as_deref(), "ReEncryptFrom", src_ec).await?;
            facts.record.authorized_by = format!("from {}; to {}", source.authorized_by, dest.authorized_by);
            keyledger_kms::check_encryption_algorithm(&source, r.source_encryption_algorithm)?;
            if r.dry_run {
                return Err(dry_run());
            }
            facts.used_key(&source.arn, version, seq.max(dest_seq));
            let (plaintext, source_material_id) = open(ctx, &source, version, blob, src_ec).await?;
            let (new_blob, dest_material_id) = seal(ctx, &dest, dest_ec, plaintext.as_bytes()).await?;
            drop(plaintext);
            facts.ciphertext(&new_blob);
            let dest_recheck = key_recheck(&r.destination_key_id, Operation::ReEncrypt, "ReEncryptTo", dest_ec, &dest);
            let recheck = match blob_recheck(blob, &r.source_key_id, "ReEncryptFrom", src_ec, &source) {
                Some(b) => Recheck::Both(Box::new(b), Box::new(dest_recheck)),
                None => dest_recheck,
            };
            Ok((
                Success::secret(
                    keyledger_kms::response::re_encrypt_body(
                        &source.arn,
                        &dest.arn,
                        &new_blob,
                        &source_material_id,
                        &dest_material_id,
                    ),
                    Some(seq.max(dest_seq)),
                ),
                Some(recheck),
            ))
        }
        Request::GenerateDataKey(r) | Request::GenerateDataKeyWithoutPlaintext(r) => {
            let with_plaintext = matches!(request, Request::GenerateDataKey(_));
            let op =
                if with_plaintext { Operation::GenerateDataKey } else { Operation::GenerateDataKeyWithoutPlaintext };
            let ec = &r.encryption_context;
            let (key, seq) = crypto_key(ctx, caller, &r.key_id, op, op.name(), ec).await?;
            facts.record.authorized_by = key.authorized_by.clone();
            if r.dry_run {
                return Err(dry_run());
            }
            let data_key = crypto::Plaintext::random(r.data_key_len());
            let (blob, material_id) = seal(ctx, &key, &r.encryption_context, data_key.as_bytes()).await?;
            facts.used_key(&key.arn, key.current_version, seq);
            facts.ciphertext(&blob);
            let plaintext = with_plaintext.then(|| data_key.as_bytes());
            let recheck = key_recheck(&r.key_id, op, op.name(), ec, &key);
            Ok((
                Success::secret(
                    keyledger_kms::response::generate_data_key_body(&key.arn, &blob, plaintext, &material_id),
                    Some(seq),
                ),
                Some(recheck),
            ))
        }
        Request::GenerateRandom(r) => {
            facts.record.authorized_by = keyledger_kms::Authorization::OwnAccount.audit_text();
            let bytes = crypto::Plaintext::random(r.number_of_bytes as usize);
            Ok((Success::secret(keyledger_kms::response::generate_random_body(bytes.as_bytes()), None), None))
        }
        other => Err(KmsError::new(
            ErrorKind::UnknownOperation,
            format!("{} is not a cryptographic operation", other.operation().name()),
        )),
    }
}

/// cryptod's background task: evicts unwrapped material of deleted keys, and of imported
/// material that expired or was deleted, from the cache.
pub fn background(ctx: Arc<RoleCtx>) -> Vec<JoinHandle<()>> {
    let mut events = ctx.follower.subscribe();
    vec![tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(applied) => {
                    if applied.event.aggregate_kind() == AggregateKind::Key
                        && matches!(applied.event.body, Body::KeyMaterialDeleted(_))
                    {
                        // Imported material expired or deleted: forget the unwrapped copy.
                        if let Ok(key_id) = applied.event.record.aggregate_id.parse::<KeyId>() {
                            ctx.cache.evict_key(key_id.as_bytes());
                        }
                    }
                    if applied.event.aggregate_kind() == AggregateKind::Key
                        && matches!(applied.event.body, Body::KeyDeleted(_))
                    {
                        if let Ok(key_id) = applied.event.record.aggregate_id.parse::<KeyId>() {
                            if ctx.follower.read().is_deleted(&applied.event.record.account, &key_id) {
                                ctx.cache.evict_key(key_id.as_bytes());
                            }
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let deleted = ctx.follower.read().deleted_keys();
                    for (_, key_id) in deleted {
                        ctx.cache.evict_key(key_id.as_bytes());
                    }
                }
                Err(_) => return,
            }
        }
    })]
}
