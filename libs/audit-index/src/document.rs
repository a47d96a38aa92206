//! [`AuditRecord`] ⇄ tantivy document.

use std::collections::BTreeMap;

use tantivy::schema::{OwnedValue, Value};
use tantivy::{DateTime, TantivyDocument};

use crate::record::{stream_rank, AuditRecord};
use crate::schema::Fields;
use crate::IndexError;

fn add_keyword(doc: &mut TantivyDocument, field: tantivy::schema::Field, value: &str) {
    if !value.is_empty() {
        doc.add_text(field, value);
    }
}

/// The document of a record. Empty strings and zero numbers are left out (they read back as
/// empty / zero), so "not applicable" never matches a term.
///
/// # Errors
/// [`IndexError::UnexpectedRecord`] when the record's stream is not one the index reads.
pub fn to_document(f: &Fields, r: &AuditRecord) -> Result<TantivyDocument, IndexError> {
    let rank = stream_rank(&r.stream)
        .ok_or_else(|| IndexError::UnexpectedRecord(format!("stream {} is not indexed", r.stream)))?;
    let mut doc = TantivyDocument::new();
    add_keyword(&mut doc, f.record_id, &r.record_id);
    add_keyword(&mut doc, f.request_id, &r.request_id);
    add_keyword(&mut doc, f.stream, &r.stream);
    doc.add_u64(f.stream_rank, rank);
    doc.add_u64(f.seq, r.seq);
    doc.add_u64(f.index, u64::from(r.index));
    doc.add_date(f.time, DateTime::from_timestamp_micros(r.time_unix_us));
    add_keyword(&mut doc, f.event_type, &r.event_type);
    for a in &r.accounts {
        add_keyword(&mut doc, f.account, a);
    }
    add_keyword(&mut doc, f.principal_arn, &r.principal_arn);
    add_keyword(&mut doc, f.principal_type, &r.principal_type);
    add_keyword(&mut doc, f.nats_account, &r.nats_account);
    add_keyword(&mut doc, f.nats_user, &r.nats_user);
    add_keyword(&mut doc, f.source_transport, &r.source_transport);
    add_keyword(&mut doc, f.source_client, &r.source_client);
    add_keyword(&mut doc, f.source_addr, &r.source_addr);
    add_keyword(&mut doc, f.operation, &r.operation);
    add_keyword(&mut doc, f.key_id_supplied, &r.key_id_supplied);
    add_keyword(&mut doc, f.key_arn, &r.key_arn);
    add_keyword(&mut doc, f.key_id, &r.key_id);
    add_keyword(&mut doc, f.alias, &r.alias);
    if r.material_version > 0 {
        doc.add_u64(f.material_version, u64::from(r.material_version));
    }
    if !r.encryption_context.is_empty() {
        let object: BTreeMap<String, OwnedValue> =
            r.encryption_context.iter().map(|(k, v)| (k.clone(), OwnedValue::Str(v.clone()))).collect();
        doc.add_object(f.encryption_context, object);
    }
    add_keyword(&mut doc, f.authorized_by, &r.authorized_by);
    add_keyword(&mut doc, f.outcome, &r.outcome);
    add_keyword(&mut doc, f.error_name, &r.error_name);
    if r.decided_at_seq > 0 {
        doc.add_u64(f.decided_at_seq, r.decided_at_seq);
    }
    add_keyword(&mut doc, f.ciphertext_digest, &r.ciphertext_digest);
    doc.add_bool(f.pending_deletion_alarm, r.pending_deletion_alarm);
    if r.suppressed_count > 0 {
        doc.add_u64(f.suppressed_count, r.suppressed_count);
    }
    add_keyword(&mut doc, f.text, &r.text);
    Ok(doc)
}

fn text(doc: &TantivyDocument, field: tantivy::schema::Field) -> String {
    doc.get_first(field).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn number(doc: &TantivyDocument, field: tantivy::schema::Field) -> u64 {
    doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0)
}

/// The record a stored document holds.
pub fn from_document(f: &Fields, doc: &TantivyDocument) -> AuditRecord {
    let time_unix_us =
        doc.get_first(f.time).and_then(|v| v.as_datetime()).map(|d| d.into_timestamp_micros()).unwrap_or(0);
    let mut encryption_context = BTreeMap::new();
    if let Some(object) = doc.get_first(f.encryption_context).and_then(|v| v.as_object()) {
        for (k, v) in object {
            if let Some(s) = v.as_str() {
                encryption_context.insert(k.to_owned(), s.to_owned());
            }
        }
    }
    AuditRecord {
        record_id: text(doc, f.record_id),
        request_id: text(doc, f.request_id),
        stream: text(doc, f.stream),
        seq: number(doc, f.seq),
        index: u32::try_from(number(doc, f.index)).unwrap_or(u32::MAX),
        time_unix_us,
        time: crate::record::format_time_us(time_unix_us),
        event_type: text(doc, f.event_type),
        accounts: doc.get_all(f.account).filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        principal_arn: text(doc, f.principal_arn),
        principal_type: text(doc, f.principal_type),
        nats_account: text(doc, f.nats_account),
        nats_user: text(doc, f.nats_user),
        source_transport: text(doc, f.source_transport),
        source_client: text(doc, f.source_client),
        source_addr: text(doc, f.source_addr),
        operation: text(doc, f.operation),
        key_id_supplied: text(doc, f.key_id_supplied),
        key_arn: text(doc, f.key_arn),
        key_id: text(doc, f.key_id),
        alias: text(doc, f.alias),
        material_version: u32::try_from(number(doc, f.material_version)).unwrap_or(u32::MAX),
        encryption_context,
        authorized_by: text(doc, f.authorized_by),
        outcome: text(doc, f.outcome),
        error_name: text(doc, f.error_name),
        decided_at_seq: number(doc, f.decided_at_seq),
        ciphertext_digest: text(doc, f.ciphertext_digest),
        pending_deletion_alarm: doc.get_first(f.pending_deletion_alarm).and_then(|v| v.as_bool()).unwrap_or(false),
        suppressed_count: number(doc, f.suppressed_count),
        text: text(doc, f.text),
    }
}
