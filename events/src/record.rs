//! The frozen record header (`RecordV1`), its exact encoding and its hash.
//!
//! Field order **is** the wire format (postcard, see <https://postcard.jamesmunns.com/wire-format>).
//! Never reorder, insert, remove or retype a field of a `…V1` struct: a different header is a new
//! `record_version` with a new struct. The design is `../shared/design/audit-integrity.md` §2.2–2.3
//! and §2.11.

use serde::{Deserialize, Serialize};

use crate::{Body, EventError};

/// The four raw bytes that open every Keyledger record.
pub const MAGIC: [u8; 4] = *b"KLRe";
/// The only record version this crate writes and reads.
pub const RECORD_VERSION: u16 = 1;

/// Longest account id, in bytes (AWS uses exactly 12 ASCII digits).
pub const MAX_ACCOUNT_BYTES: usize = 64;
/// Longest aggregate id, in bytes (key ids are 36, alias names at most 256).
pub const MAX_AGGREGATE_ID_BYTES: usize = 256;
/// Longest principal field (ARN, user or NATS account name), in bytes.
pub const MAX_PRINCIPAL_FIELD_BYTES: usize = 512;
/// Largest encoded body of a control-plane record, in bytes.
pub const MAX_BODY_BYTES: usize = 48 * 1024;
/// Largest encoded control-plane record, in bytes (the control stream's `max_msg_size` is set
/// from this).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Largest encoded body of a usage block (aggregate kind UsageLane), in bytes.
pub const MAX_USAGE_BODY_BYTES: usize = 896 * 1024;
/// Largest encoded usage block record, in bytes (under NATS's default 1 MiB max payload, with
/// room for headers).
pub const MAX_USAGE_RECORD_BYTES: usize = 960 * 1024;

/// Body and record limits for an aggregate kind code.
fn limits(aggregate_kind: u16) -> (usize, usize) {
    if aggregate_kind == AggregateKind::UsageLane.code() {
        (MAX_USAGE_BODY_BYTES, MAX_USAGE_RECORD_BYTES)
    } else {
        (MAX_BODY_BYTES, MAX_RECORD_BYTES)
    }
}

/// BLAKE3 `derive_key` context for the hash of a stored record (hard-coded, globally unique).
pub const RECORD_HASH_CONTEXT: &str = "keyledger 2026-11-29 event record hash v1";
/// BLAKE3 `derive_key` context for the `prev_hash` of an aggregate's first record.
pub const GENESIS_CONTEXT: &str = "keyledger 2026-11-29 aggregate chain genesis v1";

/// What kind of aggregate (chain) a record belongs to. Stored as a `u16` code; append-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggregateKind {
    /// A KMS key; aggregate id = the key id (lowercase UUID text).
    Key = 1,
    /// An alias; aggregate id = the full alias name (`alias/...`).
    Alias = 2,
    /// An account (quotas, settings); aggregate id = the account id.
    Account = 3,
    /// Service-wide events (writers, checkpoints); aggregate id = a role or lane name.
    System = 4,
    /// A usage-record writer lane (issue 3); aggregate id = the lane id.
    UsageLane = 5,
}

impl AggregateKind {
    /// The stored code.
    pub fn code(self) -> u16 {
        self as u16
    }
    /// The kind for a stored code, or `None` for a code this build does not know.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => Self::Key,
            2 => Self::Alias,
            3 => Self::Account,
            4 => Self::System,
            5 => Self::UsageLane,
            _ => return None,
        })
    }
    /// The subject token used for this kind (`kl.v1.ctl.<account>.<token>.<id>`).
    pub fn subject_token(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Alias => "alias",
            Self::Account => "account",
            Self::System => "sys",
            Self::UsageLane => "lane",
        }
    }
}

/// How the caller of a request was identified. Codes are append-only.
pub mod principal_kind {
    /// Keyledger itself (time-driven events: rotation, deletion, expiry).
    pub const SERVICE: u16 = 0;
    /// A NATS user, identified by the server-stamped `Nats-Request-Info` of a request that
    /// crossed a service import with `share: true`.
    pub const NATS_USER: u16 = 1;
    /// An AWS SigV4 access key verified by the gateway and forwarded from its own account.
    pub const SIGV4: u16 = 2;
}

/// Who asked for the change. Only authenticated identity is recorded, never a claimed one,
/// and never a credential (only its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalV1 {
    /// A [`principal_kind`] code.
    pub kind: u16,
    /// The Keyledger account (12 ASCII digits) the principal belongs to; empty for the service.
    pub account: String,
    /// Canonical principal ARN, e.g. `arn:aws:iam::111122223333:user/dev`
    /// (`arn:aws:iam::<account>:root` style names are used where no user is known).
    pub arn: String,
    /// The NATS account the request came from, as the server stamped it (empty if none).
    pub nats_account: String,
    /// The NATS user name, or the SigV4 access key id (never its secret).
    pub user: String,
}

impl PrincipalV1 {
    /// The principal recorded on events Keyledger appends on its own (time-driven actions).
    pub fn service() -> Self {
        Self {
            kind: principal_kind::SERVICE,
            account: String::new(),
            arn: "keyledger:service".to_owned(),
            nats_account: String::new(),
            user: String::new(),
        }
    }
}

/// The record as stored on the log: a frozen header plus an opaque, typed body.
///
/// The record's hash is not a field: it is BLAKE3 (derive-key mode, [`RECORD_HASH_CONTEXT`])
/// over the exact stored bytes, and it is the next record's `prev_hash` in the same aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordV1 {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// Always [`RECORD_VERSION`].
    pub record_version: u16,
    /// UUIDv7 of this event (16 bytes, time-ordered, unique); also its `Nats-Msg-Id`.
    pub event_id: [u8; 16],
    /// The account owning the aggregate (12 ASCII digits for AWS-style accounts).
    pub account: String,
    /// An [`AggregateKind`] code.
    pub aggregate_kind: u16,
    /// The aggregate's id within the account (key id, alias name, …).
    pub aggregate_id: String,
    /// Position in the aggregate's chain: 0 for its first event, then +1 per event.
    pub aggregate_seq: u64,
    /// Writer clock when the event was decided, milliseconds since the Unix epoch. Untrusted
    /// for irreversible steps, which also check the server's own timestamp.
    pub time_unix_ms: u64,
    /// Who caused the event.
    pub principal: PrincipalV1,
    /// The request that caused the event (UUID, 16 bytes), all zero for time-driven events.
    pub request_id: [u8; 16],
    /// Body registry code (see [`crate::body_type`]).
    pub body_type: u16,
    /// Schema version of that body.
    pub body_version: u16,
    /// Hash of the previous record of this aggregate, or [`genesis_hash`] for `aggregate_seq` 0.
    pub prev_hash: [u8; 32],
    /// `postcard(body)`: opaque to chain verification.
    pub body: Vec<u8>,
}

/// A decoded record with its typed body and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The header exactly as stored (its `body` holds the encoded body bytes).
    pub record: RecordV1,
    /// The decoded body.
    pub body: Body,
    /// BLAKE3 hash of the stored bytes.
    pub hash: [u8; 32],
}

/// Hash of exactly these stored bytes (32 bytes).
pub fn record_hash(stored: &[u8]) -> [u8; 32] {
    blake3::derive_key(RECORD_HASH_CONTEXT, stored)
}

/// The `prev_hash` of an aggregate's first record: BLAKE3 derive-key over
/// `kind (u16 LE) ‖ len(account) (u32 LE) ‖ account ‖ len(id) (u32 LE) ‖ id`.
pub fn genesis_hash(kind: AggregateKind, account: &str, aggregate_id: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(10 + account.len() + aggregate_id.len());
    input.extend_from_slice(&kind.code().to_le_bytes());
    input.extend_from_slice(&(account.len() as u32).to_le_bytes());
    input.extend_from_slice(account.as_bytes());
    input.extend_from_slice(&(aggregate_id.len() as u32).to_le_bytes());
    input.extend_from_slice(aggregate_id.as_bytes());
    blake3::derive_key(GENESIS_CONTEXT, &input)
}

/// Everything needed to write one record except its body.
#[derive(Debug, Clone)]
pub struct Draft {
    /// UUIDv7 bytes of the new event.
    pub event_id: [u8; 16],
    /// Owning account.
    pub account: String,
    /// Aggregate kind.
    pub aggregate_kind: AggregateKind,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Position in the aggregate chain.
    pub aggregate_seq: u64,
    /// Writer clock, ms since the epoch.
    pub time_unix_ms: u64,
    /// Who caused it.
    pub principal: PrincipalV1,
    /// Request id (zero for time-driven events).
    pub request_id: [u8; 16],
    /// Hash of the previous record of the aggregate (or its genesis).
    pub prev_hash: [u8; 32],
}

/// Encodes a record once. The returned bytes are what must be stored; the returned hash is
/// computed over exactly those bytes.
///
/// Errors: [`EventError::TooLarge`] if a bounded field or the whole record is over its limit.
pub fn encode(draft: &Draft, body: &Body) -> Result<(Vec<u8>, [u8; 32]), EventError> {
    let body_bytes = body.encode()?;
    let record = RecordV1 {
        magic: MAGIC,
        record_version: RECORD_VERSION,
        event_id: draft.event_id,
        account: draft.account.clone(),
        aggregate_kind: draft.aggregate_kind.code(),
        aggregate_id: draft.aggregate_id.clone(),
        aggregate_seq: draft.aggregate_seq,
        time_unix_ms: draft.time_unix_ms,
        principal: draft.principal.clone(),
        request_id: draft.request_id,
        body_type: body.body_type(),
        body_version: body.body_version(),
        prev_hash: draft.prev_hash,
        body: body_bytes,
    };
    check_bounds(&record)?;
    let bytes = postcard::to_stdvec(&record).map_err(|e| EventError::Encode(e.to_string()))?;
    if bytes.len() > limits(record.aggregate_kind).1 {
        return Err(EventError::TooLarge("record"));
    }
    let hash = record_hash(&bytes);
    Ok((bytes, hash))
}

fn check_bounds(r: &RecordV1) -> Result<(), EventError> {
    if r.account.len() > MAX_ACCOUNT_BYTES {
        return Err(EventError::TooLarge("account"));
    }
    if r.aggregate_id.len() > MAX_AGGREGATE_ID_BYTES {
        return Err(EventError::TooLarge("aggregate_id"));
    }
    let p = &r.principal;
    for f in [&p.account, &p.arn, &p.nats_account, &p.user] {
        if f.len() > MAX_PRINCIPAL_FIELD_BYTES {
            return Err(EventError::TooLarge("principal"));
        }
    }
    if r.body.len() > limits(r.aggregate_kind).0 {
        return Err(EventError::TooLarge("body"));
    }
    Ok(())
}

/// Decodes stored bytes into an [`Event`], refusing anything that is not the one canonical
/// encoding: trailing bytes, padded varints, non-0/1 booleans, a wrong magic or version, an
/// unknown aggregate kind, over-long fields, or a body that does not itself round-trip.
pub fn decode(stored: &[u8]) -> Result<Event, EventError> {
    if stored.len() > MAX_USAGE_RECORD_BYTES {
        return Err(EventError::TooLarge("record"));
    }
    if stored.len() < 5 || stored[..4] != MAGIC {
        return Err(EventError::BadMagic);
    }
    let (record, rest): (RecordV1, &[u8]) =
        postcard::take_from_bytes(stored).map_err(|e| EventError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(EventError::NotCanonical("trailing bytes after the record"));
    }
    if record.record_version != RECORD_VERSION {
        return Err(EventError::UnknownRecordVersion(record.record_version));
    }
    check_bounds(&record)?;
    if stored.len() > limits(record.aggregate_kind).1 {
        return Err(EventError::TooLarge("record"));
    }
    let reencoded = postcard::to_stdvec(&record).map_err(|e| EventError::Encode(e.to_string()))?;
    if reencoded != stored {
        return Err(EventError::NotCanonical("record does not re-encode to the stored bytes"));
    }
    if AggregateKind::from_code(record.aggregate_kind).is_none() {
        return Err(EventError::UnknownAggregateKind(record.aggregate_kind));
    }
    let body = Body::decode(record.body_type, record.body_version, &record.body)?;
    Ok(Event { hash: record_hash(stored), record, body })
}

impl Event {
    /// The aggregate kind (decode has already checked the code is known).
    pub fn aggregate_kind(&self) -> AggregateKind {
        AggregateKind::from_code(self.record.aggregate_kind).expect("checked by decode")
    }

    /// The draft this record was encoded from: [`encode`] of it with [`Event::body`] gives the
    /// stored bytes again (decode accepts only canonical encodings). Tests and the fuzz target
    /// derive altered records from it.
    pub fn draft(&self) -> Draft {
        let r = &self.record;
        Draft {
            event_id: r.event_id,
            account: r.account.clone(),
            aggregate_kind: self.aggregate_kind(),
            aggregate_id: r.aggregate_id.clone(),
            aggregate_seq: r.aggregate_seq,
            time_unix_ms: r.time_unix_ms,
            principal: r.principal.clone(),
            request_id: r.request_id,
            prev_hash: r.prev_hash,
        }
    }
}
