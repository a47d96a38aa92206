//! Stream, subject and bucket names: the one place they are spelled. All carry `v1`; a change
//! of layout is a new version next to the old one, never an edit.
//!
//! Subjects are scoped by account so that NATS permissions and consumers can filter per tenant.

use crate::AggregateKind;

/// The control stream: key, alias, account and system events; kept forever, deny delete/purge.
pub const CONTROL_STREAM: &str = "KL_CONTROL_V1";
/// Subject prefix of the control stream (`kl.v1.ctl.<account>.<kind>.<id>`).
pub const CONTROL_SUBJECT_PREFIX: &str = "kl.v1.ctl";
/// Filter matching every control subject.
pub const CONTROL_SUBJECTS: &str = "kl.v1.ctl.>";

/// The material stream: wrapped key material only, one message per material version; single
/// messages can be erased (crypto-shredding), so it is *not* deny-delete.
pub const MATERIAL_STREAM: &str = "KL_MATERIAL_V1";
/// Subject prefix of the material stream
/// (`kl.v1.mat.<account>.<key_id>.<version>.<material_id hex>`).
pub const MATERIAL_SUBJECT_PREFIX: &str = "kl.v1.mat";
/// Filter matching every material subject.
pub const MATERIAL_SUBJECTS: &str = "kl.v1.mat.>";

/// The NATS micro service name every role registers under.
pub const SERVICE_NAME: &str = "keyledger";
/// Prefix of the request subjects: `kms.v1.<Operation>` (AWS operation names).
pub const API_PREFIX: &str = "kms.v1";
/// Filter matching every API request subject (what tenant accounts import).
pub const API_SUBJECTS: &str = "kms.v1.>";

/// Subject of one aggregate's events. `id` must be a valid subject token (key ids are UUIDs,
/// alias names match `[a-zA-Z0-9/_-]+`, accounts are digits).
pub fn control_subject(account: &str, kind: AggregateKind, id: &str) -> String {
    format!("{CONTROL_SUBJECT_PREFIX}.{account}.{}.{id}", kind.subject_token())
}

/// Subject of one prepared material of a key: version and material id (the 32-byte
/// commitment, 64 lowercase hex) are both in the subject, so two writers preparing the same
/// version never collide, and material that was prepared but never committed by an event
/// (a writer that lost a race, or crashed) cannot block a later one.
pub fn material_subject(account: &str, key_id: &str, version: u32, material_id: &[u8; 32]) -> String {
    format!("{MATERIAL_SUBJECT_PREFIX}.{account}.{key_id}.{version}.{}", lower_hex(material_id))
}

/// Subject of the root-wrapped private half of an import wrapping key (GetParametersForImport):
/// `kl.v1.mat.<account>.<key_id>.imp.<token_id hex>` (32 lowercase hex). Inside
/// [`material_filter`], so it is erased with the key.
pub fn import_key_subject(account: &str, key_id: &str, token_id: &[u8; 16]) -> String {
    format!("{MATERIAL_SUBJECT_PREFIX}.{account}.{key_id}.imp.{}", lower_hex(token_id))
}

/// Lowercase hex of `bytes` (a subject token).
fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Filter matching every material (every version, committed or not) of a key.
pub fn material_filter(account: &str, key_id: &str) -> String {
    format!("{MATERIAL_SUBJECT_PREFIX}.{account}.{key_id}.>")
}

/// Request subject of an API operation (`Encrypt` → `kms.v1.Encrypt`).
pub fn api_subject(operation: &str) -> String {
    format!("{API_PREFIX}.{operation}")
}

/// True if `token` can be used as one NATS subject token (no separators, wildcards or
/// whitespace, not empty).
pub fn is_subject_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b > b' ' && b != b'.' && b != b'*' && b != b'>' && b < 0x7f)
}

/// Prefix of the usage streams: one stream per period (UTC month), `KL_USAGE_V1_<YYYYMM>`, so
/// that a closed period can be sealed, archived and kept for its own retention while the
/// control stream stays small.
pub const USAGE_STREAM_PREFIX: &str = "KL_USAGE_V1_";
/// Subject prefix of usage blocks: `kl.v1.use.<YYYYMM>.<lane>`.
pub const USAGE_SUBJECT_PREFIX: &str = "kl.v1.use";
/// Filter matching every usage subject of every period.
pub const USAGE_SUBJECTS: &str = "kl.v1.use.>";

/// The usage period (UTC year and month, `YYYYMM`) of a time in ms since the epoch.
pub fn usage_period(unix_ms: u64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}{:02}", t.year(), u8::from(t.month()))
}

/// The usage stream of a period (`YYYYMM`).
pub fn usage_stream(period: &str) -> String {
    format!("{USAGE_STREAM_PREFIX}{period}")
}

/// The subjects of a period's usage stream.
pub fn usage_stream_subjects(period: &str) -> String {
    format!("{USAGE_SUBJECT_PREFIX}.{period}.>")
}

/// The subject of one writer lane in one period. A lane id is unique per writer process start
/// (e.g. `cryptod-<random>`), so one process owns a lane at a time.
pub fn usage_subject(period: &str, lane: &str) -> String {
    format!("{USAGE_SUBJECT_PREFIX}.{period}.{lane}")
}

/// Core NATS subject on which the deletion alarm is published when any request uses a key that
/// is pending deletion: `kl.v1.alarm.<account>.pending-deletion`. The message body is JSON
/// `{"account", "key_arn", "operation", "request_id", "principal", "time_unix_ms"}`.
pub fn pending_deletion_alarm_subject(account: &str) -> String {
    format!("kl.v1.alarm.{account}.pending-deletion")
}

/// The checkpoint stream: the log's signed Merkle tree heads (C2SP signed checkpoints), one
/// subject per committed stream; kept forever, deny delete/purge.
pub const CHECKPOINT_STREAM: &str = "KL_CHECKPOINT_V1";
/// Subject prefix of the checkpoint stream (`kl.v1.ckpt.<stream name>`).
pub const CHECKPOINT_SUBJECT_PREFIX: &str = "kl.v1.ckpt";
/// Filter matching every checkpoint subject.
pub const CHECKPOINT_SUBJECTS: &str = "kl.v1.ckpt.>";

/// The subject of the checkpoints of one committed stream (`KL_CONTROL_V1`,
/// `KL_USAGE_V1_<YYYYMM>`): `kl.v1.ckpt.<stream>`.
pub fn checkpoint_subject(stream: &str) -> String {
    format!("{CHECKPOINT_SUBJECT_PREFIX}.{stream}")
}

/// The subject of the snapshot notes of one record stream: `kl.v1.ckpt.<stream>.snapshot`. A
/// snapshot note is a checkpoint of that stream at the snapshot's size whose extension line
/// commits to the snapshot's hash and state digest.
pub fn snapshot_subject(stream: &str) -> String {
    format!("{CHECKPOINT_SUBJECT_PREFIX}.{stream}.snapshot")
}

/// The key-value bucket holding the checkpointer's lease (one signer at a time).
pub const CHECKPOINT_LEASE_BUCKET: &str = "KL_CHECKPOINT_LEASE";

/// Internal request subject (service account only) on which the checkpointer answers
/// inclusion proofs: request JSON `{"stream", "seq"}`.
pub const PROOF_SUBJECT: &str = "kl.v1.sys.proof";
/// Filter matching every internal service subject.
pub const SYS_SUBJECTS: &str = "kl.v1.sys.>";
