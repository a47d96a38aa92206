//! The index schema: one document per audit record.
//!
//! Keyword fields (`STRING`) match exactly and case-sensitively; fields used for sorting,
//! keyset paging or aggregation are also `FAST`. The encryption context is a JSON object
//! indexed with the `raw` tokenizer, so `ctx.<key>=<value>` is an exact match of one pair
//! (nats-tantivy.md §5.1). Only `text` is tokenised (default tokenizer: split on
//! non-alphanumerics, lower-cased) for free-text search.

use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, JsonObjectOptions, NumericOptions, Schema,
    TextFieldIndexing, FAST, INDEXED, STORED, STRING, TEXT,
};

/// Schema version. A change of fields is a new version and a new index directory, rebuilt
/// from the log (the index is a derived artifact).
pub const SCHEMA_VERSION: u32 = 1;

/// Every field of a document, by name, in schema order. Tests assert that documents hold
/// exactly these fields and nothing else.
pub const FIELD_NAMES: [&str; 31] = [
    "record_id",
    "request_id",
    "stream",
    "stream_rank",
    "seq",
    "index",
    "time",
    "event_type",
    "account",
    "principal_arn",
    "principal_type",
    "nats_account",
    "nats_user",
    "source_transport",
    "source_client",
    "source_addr",
    "operation",
    "key_id_supplied",
    "key_arn",
    "key_id",
    "alias",
    "material_version",
    "encryption_context",
    "authorized_by",
    "outcome",
    "error_name",
    "decided_at_seq",
    "ciphertext_digest",
    "pending_deletion_alarm",
    "suppressed_count",
    "text",
];

/// Handles of every field (see the crate README for what each holds).
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)]
pub struct Fields {
    pub record_id: Field,
    pub request_id: Field,
    pub stream: Field,
    pub stream_rank: Field,
    pub seq: Field,
    pub index: Field,
    pub time: Field,
    pub event_type: Field,
    pub account: Field,
    pub principal_arn: Field,
    pub principal_type: Field,
    pub nats_account: Field,
    pub nats_user: Field,
    pub source_transport: Field,
    pub source_client: Field,
    pub source_addr: Field,
    pub operation: Field,
    pub key_id_supplied: Field,
    pub key_arn: Field,
    pub key_id: Field,
    pub alias: Field,
    pub material_version: Field,
    pub encryption_context: Field,
    pub authorized_by: Field,
    pub outcome: Field,
    pub error_name: Field,
    pub decided_at_seq: Field,
    pub ciphertext_digest: Field,
    pub pending_deletion_alarm: Field,
    pub suppressed_count: Field,
    pub text: Field,
}

/// Builds the schema and returns it with its field handles.
pub fn build_schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let keyword = STRING | STORED;
    let keyword_fast = STRING | STORED | FAST;
    let number: NumericOptions = NumericOptions::default().set_indexed().set_fast().set_stored();
    let record_id = b.add_text_field("record_id", keyword.clone());
    let request_id = b.add_text_field("request_id", keyword.clone());
    let stream = b.add_text_field("stream", keyword_fast.clone());
    let stream_rank = b.add_u64_field("stream_rank", INDEXED | FAST);
    let seq = b.add_u64_field("seq", number.clone());
    let index = b.add_u64_field("index", number.clone());
    let time = b.add_date_field(
        "time",
        DateOptions::from(INDEXED).set_fast().set_stored().set_precision(DateTimePrecision::Microseconds),
    );
    let event_type = b.add_text_field("event_type", keyword.clone());
    let account = b.add_text_field("account", keyword.clone());
    let principal_arn = b.add_text_field("principal_arn", keyword_fast.clone());
    let principal_type = b.add_text_field("principal_type", keyword.clone());
    let nats_account = b.add_text_field("nats_account", keyword.clone());
    let nats_user = b.add_text_field("nats_user", keyword.clone());
    let source_transport = b.add_text_field("source_transport", keyword.clone());
    let source_client = b.add_text_field("source_client", keyword.clone());
    let source_addr = b.add_text_field("source_addr", keyword.clone());
    let operation = b.add_text_field("operation", keyword_fast.clone());
    let key_id_supplied = b.add_text_field("key_id_supplied", keyword.clone());
    let key_arn = b.add_text_field("key_arn", keyword.clone());
    let key_id = b.add_text_field("key_id", keyword_fast.clone());
    let alias = b.add_text_field("alias", keyword.clone());
    let material_version = b.add_u64_field("material_version", number.clone());
    let encryption_context = b.add_json_field(
        "encryption_context",
        JsonObjectOptions::default().set_stored().set_indexing_options(
            TextFieldIndexing::default().set_tokenizer("raw").set_index_option(IndexRecordOption::Basic),
        ),
    );
    let authorized_by = b.add_text_field("authorized_by", keyword.clone());
    let outcome = b.add_text_field("outcome", keyword_fast.clone());
    let error_name = b.add_text_field("error_name", keyword.clone());
    let decided_at_seq = b.add_u64_field("decided_at_seq", number.clone());
    let ciphertext_digest = b.add_text_field("ciphertext_digest", keyword.clone());
    let pending_deletion_alarm = b.add_bool_field("pending_deletion_alarm", INDEXED | STORED);
    let suppressed_count = b.add_u64_field("suppressed_count", STORED);
    let text = b.add_text_field("text", TEXT | STORED);
    let fields = Fields {
        record_id,
        request_id,
        stream,
        stream_rank,
        seq,
        index,
        time,
        event_type,
        account,
        principal_arn,
        principal_type,
        nats_account,
        nats_user,
        source_transport,
        source_client,
        source_addr,
        operation,
        key_id_supplied,
        key_arn,
        key_id,
        alias,
        material_version,
        encryption_context,
        authorized_by,
        outcome,
        error_name,
        decided_at_seq,
        ciphertext_digest,
        pending_deletion_alarm,
        suppressed_count,
        text,
    };
    (b.build(), fields)
}
