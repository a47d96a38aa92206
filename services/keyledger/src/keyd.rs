//! keyd: decides management commands against the projection and appends their events.
//!
//! The imperative shell around the pure rulebook (`keyledger_kms::decide`):
//! 1. prepare what the rulebook may not make itself (fresh key id, fresh wrapped material
//!    stored in the material stream, the clock reading);
//! 2. decide against the projection; 3. encode the one event, append it with the aggregate's
//!    expected last subject sequence (optimistic concurrency decided by JetStream);
//! 4. on a conflict, catch the projection up and decide again (bounded); 5. wait until the
//!    projection has applied the event, answer from it, with the event's stream sequence.
//!
//! Time-driven actions (rotation due, imported material expiry, deletion due) run the same
//! path on a timer, as the service principal. Two keyd instances racing on one due action are
//! decided by the subject sequence; the loser discards the material it prepared. When a deletion has taken effect,
//! the key's material is erased from the material stream (the event is appended first); when
//! imported material expired or was deleted, that material's stored copy is erased likewise.
//!
//! Imported key material (GetParametersForImport, ImportKeyMaterial) is prepared here too:
//! the RSA wrapping key is generated and the customer's material unwrapped in keyd only; the
//! wrapping private key is stored root-wrapped in the material stream and never leaves it.

use std::sync::Arc;

use base64::Engine as _;
use keyledger_crypto as crypto;
use keyledger_events::{names, AggregateKind, Body, Draft, ImportParametersIssuedV1, PrincipalV1};
use keyledger_kms::{Caller, Command, Ctx, Decision, ErrorKind, ImportedMaterial, KeyId, KmsError, Request};
use keyledger_log::AppendError;
use tokio::task::JoinHandle;

use crate::pipeline::Facts;
use crate::roles::{RoleCtx, Success};

/// Handles one management request.
///
/// A request that appends an event is recorded by that event; `facts` is told so. A request
/// that changes nothing (or fails) is recorded by the caller as a usage record.
pub async fn handle(
    ctx: &RoleCtx,
    caller: &Caller,
    request: Request,
    request_id: uuid::Uuid,
    facts: &mut Facts,
) -> Result<Success, KmsError> {
    let prepared = match &request {
        Request::GetParametersForImport(r) => {
            return get_parameters_for_import(ctx, caller, r, request_id, facts).await;
        }
        Request::ImportKeyMaterial(r) => prepare_import(ctx, caller, r).await?,
        Request::RetireGrant(keyledger_kms::api::RetireGrantRequest { grant_token: Some(token), .. }) => {
            let t = ctx.root.verify_grant_token(token).map_err(|_| crate::pipeline::invalid_grant_token())?;
            Prepared {
                retire_token: Some(keyledger_kms::decide::TokenGrant {
                    account: t.account,
                    key_id: KeyId::from_bytes(t.key_id),
                    grant_id: t.grant_id,
                }),
                ..Prepared::default()
            }
        }
        _ => Prepared::default(),
    };
    let command = Command::Request(request);
    let result = execute_with(ctx, caller, &command, *request_id.as_bytes(), &prepared).await;
    // A timed-out append may still have stored the event that commits the material: keep it
    // then (an unreferenced copy is erased with the key), as for generated material.
    if matches!(&result, Err(e) if e.kind != ErrorKind::DependencyTimeout) {
        prepared.discard(ctx).await;
    }
    let (seq, decision) = result?;
    if let (Some(imported), Some(d)) = (&prepared.imported, &decision) {
        spend_import_token(ctx, &d.account, &d.aggregate_id, imported.token_id).await;
    }
    facts.record.decided_at_seq = seq;
    facts.recorded_elsewhere = decision.is_some();
    if decision.is_some() {
        facts.recorded_at = Some(crate::pipeline::AuditPosition { stream: names::CONTROL_STREAM.to_owned(), seq });
    }
    let Command::Request(request) = &command else { unreachable!("built above") };
    let projection = ctx.follower.read();
    let mut body =
        keyledger_kms::management_response(&projection, &ctx.config.realm, caller, request, decision.as_ref())?;
    if let Some((account, key_id, grant_id, log_seq)) =
        keyledger_kms::query::created_grant(&projection, &ctx.config.realm, caller, request, decision.as_ref())
    {
        let fields = crypto::GrantTokenFields { account, key_id: *key_id.as_bytes(), grant_id, log_seq };
        let token =
            ctx.root.grant_token(&fields).map_err(|_| KmsError::internal("The grant token could not be made."))?;
        body["GrantToken"] = serde_json::Value::String(token);
    }
    Ok(Success::json(body, Some(seq)))
}

/// What the shell prepared for an import operation before deciding.
#[derive(Default)]
struct Prepared {
    /// GetParametersForImport: the issued parameters (the wrapping key is stored).
    import_parameters: Option<ImportParametersIssuedV1>,
    /// ImportKeyMaterial: the material, root-wrapped and stored.
    imported: Option<ImportedMaterial>,
    /// Whether `imported` was stored by this request (and so must be erased if not committed).
    stored_now: Option<(String, [u8; 16], String)>,
    /// The import token held until the request ends.
    _token: Option<TokenGuard>,
    /// RetireGrant by token: the grant the (verified) token names.
    retire_token: Option<keyledger_kms::decide::TokenGrant>,
}

impl Prepared {
    /// Erases what this request stored when no event committed it.
    async fn discard(&self, ctx: &RoleCtx) {
        if let (Some((account, key_id, key_text)), Some(imported)) = (&self.stored_now, &self.imported) {
            if let Err(e) = ctx.cache.erase_deleted(account, key_id, key_text, &imported.material).await {
                tracing::warn!(error = %e, "cannot erase uncommitted imported material; it is erased with the key");
            }
        }
    }
}

/// RSA decryptions a token's wrapping key performs at most, successful or not: the `rsa`
/// crate's decryption is not constant time (RUSTSEC-2023-0071), so the number of decryptions
/// per wrapping key is what bounds a timing attack. A token is single use in any case (its
/// wrapping key is erased once material is imported with it); after this many attempts that do
/// not import, its wrapping key is erased too. Counted per keyd process, reserved before the
/// decryption (parallel requests cannot overrun it).
pub const MAX_UNWRAP_ATTEMPTS_PER_TOKEN: u32 = 3;

#[derive(Default)]
struct TokenUse {
    attempts: std::collections::HashMap<[u8; 16], u32>,
    busy: std::collections::HashSet<[u8; 16]>,
}

fn token_use() -> &'static std::sync::Mutex<TokenUse> {
    static USE: std::sync::OnceLock<std::sync::Mutex<TokenUse>> = std::sync::OnceLock::new();
    USE.get_or_init(Default::default)
}

fn spent_import_token() -> KmsError {
    KmsError::new(
        ErrorKind::InvalidImportToken,
        format!(
            "The import token was already used, or had {MAX_UNWRAP_ATTEMPTS_PER_TOKEN} unwrap attempts, and cannot be used again; call GetParametersForImport for new parameters."
        ),
    )
}

/// One ImportKeyMaterial holding a token: no other request may use it meanwhile.
struct TokenGuard {
    token_id: [u8; 16],
    /// This was the token's last permitted unwrap attempt.
    last_attempt: bool,
}

impl TokenGuard {
    fn acquire(token_id: [u8; 16]) -> Result<Self, KmsError> {
        let mut u = token_use().lock().unwrap_or_else(|p| p.into_inner());
        if u.busy.contains(&token_id) {
            return Err(KmsError::new(
                ErrorKind::InvalidImportToken,
                "The import token is being used by another ImportKeyMaterial request.",
            ));
        }
        let attempts = u.attempts.entry(token_id).or_insert(0);
        if *attempts >= MAX_UNWRAP_ATTEMPTS_PER_TOKEN {
            return Err(spent_import_token());
        }
        *attempts += 1;
        let last_attempt = *attempts >= MAX_UNWRAP_ATTEMPTS_PER_TOKEN;
        u.busy.insert(token_id);
        Ok(Self { token_id, last_attempt })
    }
}

impl Drop for TokenGuard {
    fn drop(&mut self) {
        token_use().lock().unwrap_or_else(|p| p.into_inner()).busy.remove(&self.token_id);
    }
}

/// GetParametersForImport: checks the request, generates an RSA wrapping key pair off the
/// async threads, stores its private half root-wrapped in the material stream, appends
/// `ImportParametersIssued` and answers with the public key (DER), the authenticated import
/// token and `ParametersValidTo` (now + 24 h).
async fn get_parameters_for_import(
    ctx: &RoleCtx,
    caller: &Caller,
    r: &keyledger_kms::api::GetParametersForImportRequest,
    request_id: uuid::Uuid,
    facts: &mut crate::pipeline::Facts,
) -> Result<Success, KmsError> {
    let realm = &ctx.config.realm;
    let (account, key_id, arn) = {
        let projection = ctx.follower.read();
        let key =
            keyledger_kms::import_parameters_target(&projection, realm, caller, r, ctx.config.clock.now_unix_ms())?;
        (key.account.clone(), key.id, key.arn(realm))
    };
    let internal = || KmsError::internal("The import parameters could not be prepared; retry the request.");
    let spec = r.wrapping_key_spec.code().and_then(crypto::WrappingKeySpec::from_code).ok_or_else(internal)?;
    let algorithm = r.wrapping_algorithm.code().and_then(crypto::WrappingAlgorithm::from_code).ok_or_else(internal)?;
    let wrapping =
        tokio::task::spawn_blocking(move || crypto::ImportWrappingKey::generate(spec)).await.map_err(|_| internal())?;
    let token_id = *uuid::Uuid::new_v4().as_bytes();
    let key_text = key_id.to_string();
    let aad = crypto::ImportKeyAad { account: &account, key_id: *key_id.as_bytes(), token_id };
    let wrapped = ctx.root.wrap_import_key(&aad, &wrapping);
    ctx.materials.put_import_key(&account, &key_text, &token_id, &wrapped).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot store the import wrapping key");
        KmsError::new(ErrorKind::DependencyTimeout, "The key material store is not reachable; retry the request.")
    })?;
    let valid_to = ctx.config.clock.now_unix_ms() + keyledger_kms::IMPORT_PARAMETERS_VALIDITY_MS;
    let params = ImportParametersIssuedV1 {
        token_id,
        wrapping_key_spec: spec.code(),
        wrapping_algorithm: algorithm.code(),
        public_key_digest: wrapping.public_key_digest(),
        root_key_id: ctx.root.id(),
        wrapped_key_digest: *blake3::hash(&wrapped).as_bytes(),
        valid_to_unix_ms: valid_to,
    };
    let prepared = Prepared { import_parameters: Some(params), ..Prepared::default() };
    let command = Command::Request(Request::GetParametersForImport(r.clone()));
    let (seq, decision) = match execute_with(ctx, caller, &command, *request_id.as_bytes(), &prepared).await {
        Ok(v) => v,
        Err(e) => {
            if let Err(erase) = ctx.materials.erase_import_key(&account, &key_text, &token_id).await {
                tracing::warn!(error = %erase, "cannot erase an unused import wrapping key; it is erased with the key");
            }
            return Err(e);
        }
    };
    facts.record.decided_at_seq = seq;
    facts.recorded_elsewhere = decision.is_some();
    if decision.is_some() {
        facts.recorded_at = Some(crate::pipeline::AuditPosition { stream: names::CONTROL_STREAM.to_owned(), seq });
    }
    let token = ctx.root.import_token(&crypto::ImportTokenFields {
        account: account.clone(),
        key_id: *key_id.as_bytes(),
        token_id,
        wrapping_key_spec: spec,
        wrapping_algorithm: algorithm,
        public_key_digest: wrapping.public_key_digest(),
        valid_to_unix_ms: valid_to,
    });
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(Success::json(
        serde_json::json!({
            "KeyId": arn,
            "ImportToken": b64.encode(token),
            "PublicKey": b64.encode(wrapping.public_key_der()),
            "ParametersValidTo": valid_to as f64 / 1000.0,
        }),
        Some(seq),
    ))
}

/// ImportKeyMaterial before deciding: the rulebook's checks ([`keyledger_kms::import_target`]),
/// the token (authenticated by the root key, bound to this key, open in the projection, not
/// expired), the stored wrapping key (its digest as committed, unwrapped by the root key, its
/// public key the token's), the RSA unwrap (`InvalidCiphertextException`; at most
/// [`MAX_UNWRAP_ATTEMPTS_PER_TOKEN`] attempts per token, one request at a time), the material's
/// length (32 bytes for SYMMETRIC_DEFAULT, else `IncorrectKeyMaterialException`) and its
/// commitment against the key's bound material. The material is then stored root-wrapped
/// (or, when the key still holds it, the stored copy is kept).
async fn prepare_import(
    ctx: &RoleCtx,
    caller: &Caller,
    r: &keyledger_kms::api::ImportKeyMaterialRequest,
) -> Result<Prepared, KmsError> {
    let realm = &ctx.config.realm;
    let now = ctx.config.clock.now_unix_ms();
    let (account, key_id, import, current) = {
        let projection = ctx.follower.read();
        let key = keyledger_kms::import_target(&projection, realm, caller, r, now)?;
        (key.account.clone(), key.id, key.import().clone(), key.current_material().cloned())
    };
    let key_text = key_id.to_string();
    let fields = ctx
        .root
        .verify_import_token(&account, *key_id.as_bytes(), &r.import_token)
        .map_err(|_| KmsError::invalid_import_token())?;
    let params = import.parameters(&fields.token_id).ok_or_else(KmsError::invalid_import_token)?;
    if params.public_key_digest != fields.public_key_digest
        || params.valid_to_unix_ms != fields.valid_to_unix_ms
        || params.wrapping_key_spec != fields.wrapping_key_spec.code()
        || params.wrapping_algorithm != fields.wrapping_algorithm.code()
    {
        return Err(KmsError::invalid_import_token());
    }
    if params.valid_to_unix_ms <= now {
        return Err(KmsError::expired_import_token());
    }
    let guard = TokenGuard::acquire(fields.token_id)?;
    let last_attempt = guard.last_attempt;
    let result = unwrap_and_store(ctx, r, &account, key_id, &import, current, &fields, params).await;
    match result {
        Ok(mut prepared) => {
            prepared._token = Some(guard);
            Ok(prepared)
        }
        Err(e) => {
            if last_attempt {
                tracing::warn!(key_id = %key_text, "import token spent after its last unwrap attempt; wrapping key erased");
                if let Err(erase) = ctx.materials.erase_import_key(&account, &key_text, &fields.token_id).await {
                    tracing::warn!(error = %erase, "cannot erase a spent import wrapping key");
                }
            }
            Err(e)
        }
    }
}

/// The part of [`prepare_import`] that holds the token: fetch and unwrap the wrapping key,
/// unwrap the material, check it, store it.
#[allow(clippy::too_many_arguments)]
async fn unwrap_and_store(
    ctx: &RoleCtx,
    r: &keyledger_kms::api::ImportKeyMaterialRequest,
    account: &str,
    key_id: KeyId,
    import: &keyledger_kms::ImportState,
    current: Option<keyledger_events::MaterialRefV1>,
    fields: &crypto::ImportTokenFields,
    params: &ImportParametersIssuedV1,
) -> Result<Prepared, KmsError> {
    let key_text = key_id.to_string();
    let integrity = || KmsError::new(ErrorKind::KMSInternal, "The import wrapping key failed its integrity check.");
    let wrapped = ctx
        .materials
        .get_import_key(account, &key_text, &fields.token_id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot fetch the import wrapping key");
            KmsError::new(ErrorKind::DependencyTimeout, "The key material store is not reachable; retry the request.")
        })?
        // Erased once used, or after its last unwrap attempt: the token is spent.
        .ok_or_else(spent_import_token)?;
    if *blake3::hash(&wrapped).as_bytes() != params.wrapped_key_digest {
        tracing::error!(key_id = %key_text, "stored import wrapping key does not match its commitment");
        return Err(integrity());
    }
    let aad = crypto::ImportKeyAad { account, key_id: *key_id.as_bytes(), token_id: fields.token_id };
    let wrapping = ctx.root.unwrap_import_key(&aad, &wrapped).map_err(|e| {
        tracing::error!(key_id = %key_text, error = %e, "cannot unwrap the import wrapping key");
        integrity()
    })?;
    if wrapping.public_key_digest() != params.public_key_digest {
        return Err(integrity());
    }
    let algorithm = fields.wrapping_algorithm;
    let encrypted = r.encrypted_key_material.clone();
    let unwrapped = tokio::task::spawn_blocking(move || wrapping.unwrap_material(algorithm, &encrypted))
        .await
        .map_err(|_| KmsError::internal("The key material could not be unwrapped; retry the request."))?;
    let unwrapped = unwrapped.map_err(|_| {
        KmsError::new(
            ErrorKind::InvalidCiphertext,
            "The encrypted key material could not be unwrapped with the wrapping key of this import token and its WrappingAlgorithm.",
        )
    })?;
    let material = crypto::KeyMaterial::from_slice(&unwrapped).map_err(|_| {
        KmsError::new(
            ErrorKind::IncorrectKeyMaterial,
            format!(
                "The key material must be 32 bytes (256 bits) for a SYMMETRIC_DEFAULT key; it is {} bytes.",
                unwrapped.len()
            ),
        )
    })?;
    drop(unwrapped);
    let material_id = ctx.root.material_id(&material);
    if import.bound_material_id.is_some_and(|bound| bound != material_id) {
        return Err(KmsError::new(
            ErrorKind::IncorrectKeyMaterial,
            "The key material does not match the key material previously imported into this KMS key: a KMS key is permanently associated with its key material.",
        ));
    }
    // Reimport while the material is present (e.g. to change ValidTo): keep the stored copy.
    if let Some(current) = current.filter(|c| c.material_id == material_id) {
        return Ok(Prepared {
            imported: Some(ImportedMaterial { material: current, token_id: fields.token_id }),
            ..Prepared::default()
        });
    }
    // After a deletion whose erase has not run yet, the old copy still occupies the subject.
    if let Some(old) = &import.last_deleted {
        let _ = ctx.cache.erase_deleted(account, key_id.as_bytes(), &key_text, old).await;
    }
    let reference = ctx.cache.store_material(account, key_id.as_bytes(), &key_text, 1, &material).await?;
    Ok(Prepared {
        imported: Some(ImportedMaterial { material: reference, token_id: fields.token_id }),
        stored_now: Some((account.to_owned(), *key_id.as_bytes(), key_text)),
        ..Prepared::default()
    })
}

/// An import token is single use: once its material is imported, its wrapping key is erased
/// (the token then answers InvalidImportTokenException). Fewer live RSA private keys, and no
/// decryption oracle left open for the rest of the 24 hours (RUSTSEC-2023-0071).
async fn spend_import_token(ctx: &RoleCtx, account: &str, key_text: &str, token_id: [u8; 16]) {
    if let Err(e) = ctx.materials.erase_import_key(account, key_text, &token_id).await {
        tracing::warn!(error = %e, "cannot erase a spent import wrapping key; it is erased with the key");
    }
}

/// Decides and appends `command`. Returns the log sequence that reflects it (the appended
/// event's, or the projection's when nothing had to change) and the decision, if any.
pub async fn execute(
    ctx: &RoleCtx,
    caller: &Caller,
    command: &Command,
    request_id: [u8; 16],
) -> Result<(u64, Option<Decision>), KmsError> {
    execute_with(ctx, caller, command, request_id, &Prepared::default()).await
}

async fn execute_with(
    ctx: &RoleCtx,
    caller: &Caller,
    command: &Command,
    request_id: [u8; 16],
    extra: &Prepared,
) -> Result<(u64, Option<Decision>), KmsError> {
    let new_key_id = KeyId::from_uuid(uuid::Uuid::new_v4());
    let mut new_grant_id = [0u8; 32];
    getrandom::getrandom(&mut new_grant_id).map_err(|_| KmsError::internal("No randomness for a grant id."))?;
    let mut prepared: Option<(String, String, keyledger_events::MaterialRefV1)> = None;
    let mut last_conflict = None;
    for _attempt in 0..ctx.config.max_append_attempts {
        let now = ctx.config.clock.now_unix_ms();
        // Which material (if any) this command needs, given the state now.
        let need = {
            let projection = ctx.follower.read();
            keyledger_kms::material_needed(&projection, &ctx.config.realm, caller, command, &new_key_id, now)?
        };
        let material = match need {
            None => None,
            Some(target) => {
                let key_text = target.key_id.to_string();
                let reuse = matches!(&prepared, Some((acct, key, m)) if *acct == target.account && *key == key_text && m.version == target.version);
                if !reuse {
                    if let Some((acct, key, m)) = prepared.take() {
                        ctx.cache.discard(&acct, &key, &m).await;
                    }
                    let m =
                        ctx.cache.prepare(&target.account, target.key_id.as_bytes(), &key_text, target.version).await?;
                    prepared = Some((target.account.clone(), key_text, m));
                }
                prepared.as_ref().map(|(_, _, m)| m.clone())
            }
        };
        // Decide under the same view that still needs exactly the prepared material: if the
        // projection moved on meanwhile (a concurrent rotation applied), prepare again.
        let decided = {
            let projection = ctx.follower.read();
            let still =
                keyledger_kms::material_needed(&projection, &ctx.config.realm, caller, command, &new_key_id, now)?;
            let same = match (&still, &material) {
                (None, None) => true,
                (Some(t), Some(m)) => t.version == m.version,
                _ => false,
            };
            if !same {
                None
            } else {
                let decide_ctx = Ctx {
                    now_unix_ms: now,
                    new_key_id,
                    new_material: material.clone(),
                    import_parameters: extra.import_parameters.clone(),
                    imported: extra.imported.clone(),
                    new_grant_id,
                    retire_token: extra.retire_token.clone(),
                };
                Some(
                    keyledger_kms::decide(
                        &projection,
                        &ctx.config.realm,
                        caller,
                        command,
                        &decide_ctx,
                        &ctx.config.limits,
                    )
                    .map(|d| (d, projection.last_applied_seq())),
                )
            }
        };
        let Some(decided) = decided else { continue };
        let (decision, applied) = match decided {
            Ok(v) => v,
            Err(e) => {
                discard(ctx, prepared.take()).await;
                return Err(e);
            }
        };
        let Some(decision) = decision else {
            discard(ctx, prepared.take()).await;
            return Ok((applied, None));
        };
        let event_id = *uuid::Uuid::now_v7().as_bytes();
        let draft = Draft {
            event_id,
            account: decision.account.clone(),
            aggregate_kind: decision.aggregate_kind,
            aggregate_id: decision.aggregate_id.clone(),
            aggregate_seq: decision.head.next_aggregate_seq,
            time_unix_ms: now,
            principal: caller.principal.clone(),
            request_id,
            prev_hash: decision.head.last_hash,
        };
        let (bytes, _hash) = keyledger_events::encode(&draft, &decision.body).map_err(|e| {
            tracing::error!(error = %e, "cannot encode event");
            KmsError::new(ErrorKind::KMSInternal, "The event could not be encoded.")
        })?;
        let subject = names::control_subject(&decision.account, decision.aggregate_kind, &decision.aggregate_id);
        match ctx.log.append(&subject, decision.head.last_stream_seq, event_id, bytes).await {
            Ok(seq) => {
                // The material (if any) is now committed by the event.
                ctx.follower.wait_for(seq, ctx.config.projection_wait).await?;
                return Ok((seq, Some(decision)));
            }
            Err(AppendError::Conflict { .. }) => {
                tracing::debug!(subject = %subject, "append conflict; re-deciding");
                last_conflict = Some(subject);
                ctx.follower.catch_up(ctx.config.projection_wait).await?;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot append event");
                // The event may still have been stored (a timed-out publish is not a failure
                // to store): keep the prepared material, it is erased with the key if unused.
                return Err(KmsError::new(
                    ErrorKind::DependencyTimeout,
                    "The key log did not acknowledge the change in time; retry the request.",
                ));
            }
        }
    }
    discard(ctx, prepared.take()).await;
    tracing::warn!(subject = ?last_conflict, "giving up after repeated append conflicts");
    Err(KmsError::new(ErrorKind::Conflict, "The resource was changed concurrently too many times; retry the request."))
}

async fn discard(ctx: &RoleCtx, prepared: Option<(String, String, keyledger_events::MaterialRefV1)>) {
    if let Some((acct, key, m)) = prepared {
        ctx.cache.discard(&acct, &key, &m).await;
    }
}

/// Most due actions started per scheduler tick.
const MAX_DUE_ACTIONS_PER_TICK: usize = 64;

/// keyd's background tasks: the scheduler of time-driven actions and the material eraser.
pub fn background(ctx: Arc<RoleCtx>) -> Vec<JoinHandle<()>> {
    let scheduler = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = Caller { account: String::new(), principal: PrincipalV1::service() };
            loop {
                tokio::time::sleep(ctx.config.scheduler_tick).await;
                let due = {
                    let projection = ctx.follower.read();
                    keyledger_kms::due_actions(&projection, ctx.config.clock.now_unix_ms(), MAX_DUE_ACTIONS_PER_TICK)
                };
                // Deletion is irreversible: propose it only when the server's clock agrees it is
                // due (the projection ignores a deletion stamped earlier anyway; this keeps a fast
                // local clock from appending such ignored events every tick).
                let mut server_now: Option<u64> = None;
                for command in due {
                    if let Command::DeletionDue { due_unix_ms, .. } | Command::MaterialExpiryDue { due_unix_ms, .. } =
                        &command
                    {
                        if server_now.is_none() {
                            match ctx.log.server_time_unix_ms().await {
                                Ok(t) => server_now = Some(t),
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot read the server's clock; deletions wait");
                                    continue;
                                }
                            }
                        }
                        if server_now.unwrap_or(0) < *due_unix_ms {
                            tracing::debug!("deletion due by the local clock but not yet by the server's");
                            continue;
                        }
                    }
                    match execute(&ctx, &service, &command, [0; 16]).await {
                        Ok(_) => {}
                        Err(e) => tracing::info!(error = %e, "time-driven action not applied"),
                    }
                }
            }
        })
    };
    let eraser = {
        let ctx = ctx.clone();
        let mut events = ctx.follower.subscribe();
        tokio::spawn(async move {
            // Keys deleted before this instance started (or whose erase was interrupted).
            let tombstones = ctx.follower.read().deleted_keys();
            for (account, key_id) in tombstones {
                erase(&ctx, &account, &key_id).await;
            }
            // Imported material deleted or expired before this instance started: erased only
            // if the stored bytes are still the deleted ones (a reimport is never touched).
            let deleted_materials: Vec<_> = ctx
                .follower
                .read()
                .all_keys()
                .filter_map(|k| k.import().last_deleted.clone().map(|m| (k.account.clone(), k.id, m)))
                .collect();
            for (account, key_id, material) in deleted_materials {
                erase_deleted(&ctx, &account, &key_id, &material).await;
            }
            loop {
                match events.recv().await {
                    Ok(applied) => {
                        if applied.event.aggregate_kind() != AggregateKind::Key {
                            continue;
                        }
                        if let Body::KeyMaterialDeleted(b) = &applied.event.body {
                            let Ok(key_id) = applied.event.record.aggregate_id.parse::<KeyId>() else { continue };
                            erase_deleted(&ctx, &applied.event.record.account, &key_id, &b.material).await;
                            continue;
                        }
                        if !matches!(applied.event.body, Body::KeyDeleted(_)) {
                            continue;
                        }
                        let Ok(key_id) = applied.event.record.aggregate_id.parse::<KeyId>() else { continue };
                        let deleted = ctx.follower.read().is_deleted(&applied.event.record.account, &key_id);
                        if deleted {
                            erase(&ctx, &applied.event.record.account, &key_id).await;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let tombstones = ctx.follower.read().deleted_keys();
                        for (account, key_id) in tombstones {
                            erase(&ctx, &account, &key_id).await;
                        }
                    }
                    Err(_) => return,
                }
            }
        })
    };
    vec![scheduler, eraser]
}

async fn erase_deleted(ctx: &RoleCtx, account: &str, key_id: &KeyId, material: &keyledger_events::MaterialRefV1) {
    match ctx.cache.erase_deleted(account, key_id.as_bytes(), &key_id.to_string(), material).await {
        Ok(false) => {}
        Ok(true) => tracing::info!(key_id = %key_id, version = material.version, "imported key material erased"),
        Err(e) => tracing::warn!(key_id = %key_id, error = %e, "imported key material not erased yet"),
    }
}

async fn erase(ctx: &RoleCtx, account: &str, key_id: &KeyId) {
    match ctx.cache.erase_key(account, key_id.as_bytes(), &key_id.to_string()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(key_id = %key_id, erased = n, "key material erased"),
        Err(e) => tracing::warn!(key_id = %key_id, error = %e, "key material not erased yet"),
    }
}
