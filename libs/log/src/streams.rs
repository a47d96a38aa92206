//! Stream setup: create the control and material streams if missing, otherwise verify them.
//!
//! Rule (BRIEF invariant 8): an existing stream is **never updated**. A config update that
//! lowers limits can wipe even a deny-delete stream, so this crate has no code path calling
//! `update_stream`, `purge` or `delete_stream`. If the existing config is weaker than expected
//! in any protection, setup fails with [`StreamSetupError::Weaker`] naming the field, and the
//! stream is left as it is for an operator to deal with.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, PersistenceMode, RetentionPolicy, StorageType, Stream};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{context::CreateStreamErrorKind, Context};
use keyledger_events::{names, MAX_RECORD_BYTES};

/// How long stream creation waits for a cluster to be able to place every replica.
pub const PLACEMENT_WAIT: Duration = Duration::from_secs(30);

/// Dedup horizon of `Nats-Msg-Id` on both streams (nats-tantivy.md §2.3): 120 s.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Allowance for NATS headers (`Nats-Msg-Id`, `Nats-Expected-*`) on top of the payload, in
/// bytes. The server's `max_msg_size` counts headers plus payload, so a stream limit of exactly
/// [`MAX_RECORD_BYTES`] would refuse a maximal record once its publish headers are added.
pub const HEADER_ALLOWANCE_BYTES: usize = 1024;

/// Largest wrapped key material accepted by the material stream, in bytes (16 KiB; wrapped
/// symmetric material is under 100 bytes, an RSA-4096 private key about 2.5 KiB).
pub const MAX_MATERIAL_BYTES: usize = 16 * 1024;

/// Errors of stream setup.
#[derive(Debug, thiserror::Error)]
pub enum StreamSetupError {
    /// The existing stream is weaker than required (or incompatible) in `field`. Nothing was
    /// changed.
    #[error("stream {stream} exists with a weaker configuration: {field} is {found}, expected {expected}; refusing to use it (it is never updated automatically)")]
    Weaker {
        /// Stream name.
        stream: String,
        /// Field name as the JetStream API spells it (`deny_delete`, `max_age`, ...).
        field: &'static str,
        /// What the stream has.
        found: String,
        /// What Keyledger requires.
        expected: String,
    },
    /// JetStream could not be asked or answered with an error.
    #[error("stream {stream}: {message}")]
    Nats {
        /// Stream name.
        stream: String,
        /// What went wrong (no payload data).
        message: String,
    },
}

/// The control stream's required config: `names::CONTROL_STREAM` on `names::CONTROL_SUBJECTS`,
/// File storage, limits retention, `deny_delete`, `deny_purge`, no rollups, discard New, no age,
/// count or byte limits, direct get allowed, [`DUPLICATE_WINDOW`], max message
/// `MAX_RECORD_BYTES + HEADER_ALLOWANCE_BYTES` bytes, `replicas` replicas (1 dev, 3 production).
pub fn control_stream_config(replicas: usize) -> Config {
    Config {
        name: names::CONTROL_STREAM.to_owned(),
        description: Some("Keyledger control events v1 (immutable, hash-chained)".to_owned()),
        subjects: vec![names::CONTROL_SUBJECTS.to_owned()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        num_replicas: replicas,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        discard: DiscardPolicy::New,
        max_age: Duration::ZERO,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        allow_direct: true,
        max_message_size: i32::try_from(MAX_RECORD_BYTES + HEADER_ALLOWANCE_BYTES).unwrap_or(i32::MAX),
        ..Default::default()
    }
}

/// A usage stream's required config (one stream per period, `names::usage_stream(period)` on
/// `names::usage_stream_subjects(period)`): like the control stream — File storage, limits
/// retention, deny delete and purge, no rollups, discard New, no age or count limit, direct
/// get — with room for group-committed blocks (`MAX_USAGE_RECORD_BYTES` + header allowance per
/// message) and an optional byte cap: when the stream is full it refuses new blocks, so the
/// service fails closed (no result without its record) instead of dropping history.
pub fn usage_stream_config(period: &str, replicas: usize, max_bytes: Option<i64>) -> Config {
    Config {
        name: names::usage_stream(period),
        description: Some(format!("Keyledger usage records v1, period {period} (immutable, lane-chained)")),
        subjects: vec![names::usage_stream_subjects(period)],
        max_bytes: max_bytes.unwrap_or(-1),
        max_message_size: i32::try_from(keyledger_events::MAX_USAGE_RECORD_BYTES + HEADER_ALLOWANCE_BYTES)
            .unwrap_or(i32::MAX),
        ..control_stream_config(replicas)
    }
}

/// Creates a period's usage stream if missing, else verifies it (never updates it).
///
/// # Errors
/// As [`ensure_control_stream`].
pub async fn ensure_usage_stream(
    js: &Context,
    period: &str,
    replicas: usize,
    max_bytes: Option<i64>,
) -> Result<Stream, StreamSetupError> {
    ensure(js, usage_stream_config(period, replicas, max_bytes)).await
}

/// The checkpoint stream's required config: like the control stream (File storage, limits
/// retention, deny delete and purge, no rollups, discard New, kept forever) on
/// `names::CHECKPOINT_SUBJECTS`, with room for a signed note of
/// `keyledger_transparency::MAX_NOTE_BYTES` (256 KiB) plus headers.
pub fn checkpoint_stream_config(replicas: usize) -> Config {
    Config {
        name: names::CHECKPOINT_STREAM.to_owned(),
        description: Some("Keyledger signed checkpoints v1 (C2SP tlog-checkpoint notes)".to_owned()),
        subjects: vec![names::CHECKPOINT_SUBJECTS.to_owned()],
        max_message_size: i32::try_from(MAX_CHECKPOINT_NOTE_BYTES + HEADER_ALLOWANCE_BYTES).unwrap_or(i32::MAX),
        ..control_stream_config(replicas)
    }
}

/// Largest signed checkpoint note stored, in bytes (`c2sp.org/signed-note` notes are bounded
/// by the verifier; 256 KiB as `keyledger_transparency::MAX_NOTE_BYTES`).
pub const MAX_CHECKPOINT_NOTE_BYTES: usize = 256 * 1024;

/// Creates the checkpoint stream if missing, else verifies it (never updates it).
///
/// # Errors
/// As [`ensure_control_stream`].
pub async fn ensure_checkpoint_stream(js: &Context, replicas: usize) -> Result<Stream, StreamSetupError> {
    ensure(js, checkpoint_stream_config(replicas)).await
}

/// The material stream's required config: `names::MATERIAL_STREAM` on
/// `names::MATERIAL_SUBJECTS`, File storage, limits retention, `deny_delete` **false** (single
/// messages are erased when a key is deleted), `deny_purge`, no rollups, discard New with one
/// message per subject (`max_msgs_per_subject` 1, `discard_new_per_subject`: a second message
/// for a material version is refused rather than replacing the first), no age limit, direct get
/// allowed, max message `MAX_MATERIAL_BYTES + HEADER_ALLOWANCE_BYTES` bytes.
pub fn material_stream_config(replicas: usize) -> Config {
    Config {
        name: names::MATERIAL_STREAM.to_owned(),
        description: Some("Keyledger wrapped key material v1 (one message per version)".to_owned()),
        subjects: vec![names::MATERIAL_SUBJECTS.to_owned()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        num_replicas: replicas,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: false,
        deny_purge: true,
        allow_rollup: false,
        discard: DiscardPolicy::New,
        discard_new_per_subject: true,
        max_age: Duration::ZERO,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: 1,
        allow_direct: true,
        max_message_size: i32::try_from(MAX_MATERIAL_BYTES + HEADER_ALLOWANCE_BYTES).unwrap_or(i32::MAX),
        ..Default::default()
    }
}

/// Creates the control stream if missing, else verifies it (never updates it).
///
/// # Errors
/// [`StreamSetupError::Weaker`] if the existing stream is weaker; [`StreamSetupError::Nats`]
/// if JetStream is unreachable or refuses.
pub async fn ensure_control_stream(js: &Context, replicas: usize) -> Result<Stream, StreamSetupError> {
    ensure(js, control_stream_config(replicas)).await
}

/// Creates the material stream if missing, else verifies it (never updates it).
///
/// # Errors
/// As [`ensure_control_stream`].
pub async fn ensure_material_stream(js: &Context, replicas: usize) -> Result<Stream, StreamSetupError> {
    ensure(js, material_stream_config(replicas)).await
}

async fn ensure(js: &Context, expected: Config) -> Result<Stream, StreamSetupError> {
    let name = expected.name.clone();
    let nats = |message: String| StreamSetupError::Nats { stream: name.clone(), message };
    // Existing stream? Verify it; never update it.
    if let Some(stream) = existing(js, &name).await.map_err(nats)? {
        verify_config(&expected, &stream.cached_info().config)?;
        return Ok(stream);
    }
    let mut created = js.create_stream(expected.clone()).await;
    // A cluster that is still forming (or missing members) cannot place the replicas yet
    // (JetStream error 10005, "no suitable peers for placement"): wait for it, bounded.
    let deadline = std::time::Instant::now() + PLACEMENT_WAIT;
    while let Err(e) = &created {
        let placement = matches!(e.kind(), CreateStreamErrorKind::JetStream(je) if je.error_code().0 == 10005);
        if !placement || std::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        created = js.create_stream(expected.clone()).await;
    }
    match created {
        Ok(stream) => {
            // The server may normalize values; verify what it stored.
            verify_config(&expected, &stream.cached_info().config)?;
            Ok(stream)
        }
        Err(e) => {
            // Lost a creation race to a different config: verify what won.
            if let CreateStreamErrorKind::JetStream(je) = e.kind() {
                if je.error_code() == ErrorCode::STREAM_NAME_EXIST {
                    if let Some(stream) = existing(js, &name).await.map_err(nats)? {
                        verify_config(&expected, &stream.cached_info().config)?;
                        return Ok(stream);
                    }
                }
            }
            Err(nats(format!("cannot create: {e}")))
        }
    }
}

/// The stream if it exists. A cluster that is (re)starting answers stream info only once the
/// stream's replicas have elected a leader: unanswered requests are retried for
/// [`PLACEMENT_WAIT`].
async fn existing(js: &Context, name: &str) -> Result<Option<Stream>, String> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    let deadline = std::time::Instant::now() + PLACEMENT_WAIT;
    loop {
        match js.get_stream(name).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(je) if je.error_code() == ErrorCode::STREAM_NOT_FOUND => return Ok(None),
                GetStreamErrorKind::Request if std::time::Instant::now() < deadline => {
                    tracing::info!(stream = name, error = %e, "stream info not answered yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                _ => return Err(format!("cannot read stream info: {e}")),
            },
        }
    }
}

/// Compares an existing stream's config with the required one. Only *protections* and what
/// Keyledger's correctness needs are checked; cosmetic fields (description, metadata, consumer
/// limits) are not.
///
/// # Errors
/// [`StreamSetupError::Weaker`] naming the first weaker field.
pub fn verify_config(expected: &Config, found: &Config) -> Result<(), StreamSetupError> {
    let stream = found.name.clone();
    let weaker = |field: &'static str, found: String, expected: String| {
        Err(StreamSetupError::Weaker { stream: stream.clone(), field, found, expected })
    };

    if found.subjects != expected.subjects {
        return weaker("subjects", format!("{:?}", found.subjects), format!("{:?}", expected.subjects));
    }
    if found.storage != StorageType::File {
        return weaker("storage", format!("{:?}", found.storage), "File".into());
    }
    if found.retention != RetentionPolicy::Limits {
        return weaker("retention", format!("{:?}", found.retention), "Limits".into());
    }
    if found.num_replicas < expected.num_replicas {
        return weaker("num_replicas", found.num_replicas.to_string(), format!(">= {}", expected.num_replicas));
    }
    if expected.deny_delete && !found.deny_delete {
        return weaker("deny_delete", "false".into(), "true".into());
    }
    if expected.deny_purge && !found.deny_purge {
        return weaker("deny_purge", "false".into(), "true".into());
    }
    if found.allow_rollup {
        return weaker("allow_rollup_hdrs", "true".into(), "false".into());
    }
    if found.discard != DiscardPolicy::New {
        return weaker("discard", format!("{:?}", found.discard), "New".into());
    }
    if !found.max_age.is_zero() {
        return weaker("max_age", format!("{:?}", found.max_age), "0 (no limit)".into());
    }
    if found.max_messages > 0 {
        return weaker("max_msgs", found.max_messages.to_string(), "-1 (no limit)".into());
    }
    // A byte limit with discard New refuses writes when full (fail closed) and never drops
    // history, so the usage streams may carry one — but only the one expected.
    if found.max_bytes > 0 && found.max_bytes != expected.max_bytes {
        return weaker("max_bytes", found.max_bytes.to_string(), "-1 (no limit)".into());
    }
    let per_subject_ok = if expected.max_messages_per_subject > 0 {
        found.max_messages_per_subject == expected.max_messages_per_subject
    } else {
        found.max_messages_per_subject <= 0
    };
    if !per_subject_ok {
        return weaker(
            "max_msgs_per_subject",
            found.max_messages_per_subject.to_string(),
            expected.max_messages_per_subject.to_string(),
        );
    }
    if expected.discard_new_per_subject && !found.discard_new_per_subject {
        return weaker("discard_new_per_subject", "false".into(), "true".into());
    }
    if found.duplicate_window < expected.duplicate_window {
        return weaker(
            "duplicate_window",
            format!("{:?}", found.duplicate_window),
            format!(">= {:?}", expected.duplicate_window),
        );
    }
    if expected.allow_direct && !found.allow_direct {
        return weaker("allow_direct", "false".into(), "true".into());
    }
    if found.max_message_size > 0 && found.max_message_size < expected.max_message_size {
        return weaker("max_msg_size", found.max_message_size.to_string(), format!(">= {}", expected.max_message_size));
    }
    if found.no_ack {
        return weaker("no_ack", "true".into(), "false".into());
    }
    if found.sealed {
        return weaker("sealed", "true".into(), "false".into());
    }
    if found.mirror.is_some() {
        return weaker("mirror", "set".into(), "none".into());
    }
    if found.sources.as_ref().is_some_and(|s| !s.is_empty()) {
        return weaker("sources", "set".into(), "none".into());
    }
    if found.republish.is_some() {
        return weaker("republish", "set".into(), "none".into());
    }
    if found.subject_transform.is_some() {
        return weaker("subject_transform", "set".into(), "none".into());
    }
    if found.persist_mode == Some(PersistenceMode::Async) {
        return weaker("persist_mode", "async".into(), "default".into());
    }
    if found.allow_message_ttl {
        return weaker("allow_msg_ttl", "true".into(), "false".into());
    }
    if found.allow_message_counter {
        return weaker("allow_msg_counter", "true".into(), "false".into());
    }
    if found.allow_message_schedules {
        return weaker("allow_msg_schedules", "true".into(), "false".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<(), StreamSetupError>) -> &'static str {
        match r {
            Err(StreamSetupError::Weaker { field, .. }) => field,
            other => panic!("expected Weaker, got {other:?}"),
        }
    }

    #[test]
    fn the_expected_configs_verify_against_themselves() {
        verify_config(&control_stream_config(3), &control_stream_config(3)).unwrap();
        verify_config(&material_stream_config(1), &material_stream_config(1)).unwrap();
        // More replicas than required is fine.
        verify_config(&control_stream_config(1), &control_stream_config(3)).unwrap();
    }

    #[test]
    fn each_weaker_protection_is_named() {
        let exp = control_stream_config(3);
        type Weaken = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Weaken)> = vec![
            ("deny_delete", Box::new(|c| c.deny_delete = false)),
            ("deny_purge", Box::new(|c| c.deny_purge = false)),
            ("allow_rollup_hdrs", Box::new(|c| c.allow_rollup = true)),
            ("discard", Box::new(|c| c.discard = DiscardPolicy::Old)),
            ("max_age", Box::new(|c| c.max_age = Duration::from_secs(86400))),
            ("max_msgs", Box::new(|c| c.max_messages = 1000)),
            ("max_bytes", Box::new(|c| c.max_bytes = 1 << 30)),
            ("max_msgs_per_subject", Box::new(|c| c.max_messages_per_subject = 10)),
            ("num_replicas", Box::new(|c| c.num_replicas = 1)),
            ("subjects", Box::new(|c| c.subjects = vec!["kl.v1.>".into()])),
            ("retention", Box::new(|c| c.retention = RetentionPolicy::WorkQueue)),
            ("storage", Box::new(|c| c.storage = StorageType::Memory)),
            ("allow_direct", Box::new(|c| c.allow_direct = false)),
            ("duplicate_window", Box::new(|c| c.duplicate_window = Duration::from_secs(1))),
            ("allow_msg_ttl", Box::new(|c| c.allow_message_ttl = true)),
            ("persist_mode", Box::new(|c| c.persist_mode = Some(PersistenceMode::Async))),
            ("sealed", Box::new(|c| c.sealed = true)),
        ];
        for (field, weaken) in cases {
            let mut found = exp.clone();
            weaken(&mut found);
            assert_eq!(field_of(verify_config(&exp, &found)), field);
        }
    }

    #[test]
    fn material_stream_needs_exactly_one_message_per_subject() {
        let exp = material_stream_config(1);
        let mut found = exp.clone();
        found.max_messages_per_subject = -1;
        assert_eq!(field_of(verify_config(&exp, &found)), "max_msgs_per_subject");
        let mut found = exp.clone();
        found.discard_new_per_subject = false;
        assert_eq!(field_of(verify_config(&exp, &found)), "discard_new_per_subject");
        // deny_delete false is what the material stream expects.
        let mut found = exp.clone();
        found.deny_delete = true;
        verify_config(&exp, &found).unwrap();
    }
}
