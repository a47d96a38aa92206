//! # keyledger-audit-index
//!
//! Keyledger's searchable audit index, a tantivy 0.27 index derived from the log:
//!
//! * [`records_from_message`] turns one stored stream message into audit records (one per
//!   management event on the control stream; one per usage record or rate-limiter summary in
//!   a usage block) — a pure function, so a rebuild from the log yields the same records.
//! * [`AuditIndex::writer`] starts the one writer thread ([`AuditWriter`]); it commits every
//!   ~1 s or 20,000 documents with a [`Checkpoint`] (last indexed sequence per stream) as the
//!   commit payload, so indexing resumes exactly after a crash: no record twice, none missed.
//! * [`AuditIndex::search`] runs structured [`Query`]s (never tantivy's query parser on user
//!   input), newest first, with keyset [`Cursor`]s, always within a [`Scope`];
//!   [`AuditIndex::get`] fetches one record; [`AuditIndex::key_usage`] aggregates one key's
//!   use.
//!
//! Searches and commits are blocking (CPU and disk): call them from a dedicated thread or
//! `spawn_blocking`. See README.md for the schema, the resume rule and the query rules.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::Path;

use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, TermQuery};
use tantivy::schema::{IndexRecordOption, Schema};
use tantivy::{DocAddress, Index, IndexReader, ReloadPolicy, SegmentReader, TantivyDocument, Term};

mod authority;
mod document;
mod query;
mod record;
mod schema;
mod usage;
mod writer;

pub use authority::Authorities;
pub use document::{from_document, to_document};
pub use query::{
    Condition, ContextCondition, Cursor, Query, Scope, TermFilter, DEFAULT_LIMIT, MAX_CONDITIONS, MAX_CURSOR_CHARS,
    MAX_LIMIT, MAX_TEXT_BYTES, MAX_TEXT_TOKENS, MAX_VALUES_PER_CONDITION, MAX_VALUE_BYTES,
};
pub use record::{
    alias_of, control_operation, format_time_us, key_id_of_arn, outcome, parse_time, records_from_message, stream_rank,
    AuditRecord, Realm, EVENT_API_CALL, EVENT_SERVICE, EVENT_SUPPRESSED, HTTP_CLIENT_PRINCIPAL_PREFIX,
    OPERATION_SUPPRESSED,
};
pub use schema::{build_schema, Fields, FIELD_NAMES, SCHEMA_VERSION};
pub use usage::{KeyUsage, PrincipalUsage, UsageEvent, CRYPTO_OPERATIONS};
pub use writer::{AuditWriter, Checkpoint, IndexedMessage, WriterOptions, WriterStatus, CHECKPOINT_FORMAT};

/// Errors of the index. Messages never contain record contents beyond identifiers.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A query or cursor is invalid (bounds, syntax); the text says which rule.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A stored log record could not be decoded (the log is damaged).
    #[error("undecodable log record: {0}")]
    Decode(String),
    /// A record that does not belong where it was found (stream / body mismatch).
    #[error("unexpected record: {0}")]
    UnexpectedRecord(String),
    /// The commit payload is not ours or names another schema version.
    #[error("index checkpoint: {0}")]
    Checkpoint(String),
    /// The writer thread has ended.
    #[error("the index writer has stopped")]
    WriterStopped,
    /// A commit failed.
    #[error("index commit failed: {0}")]
    Commit(String),
    /// File system.
    #[error("index I/O: {0}")]
    Io(String),
    /// tantivy.
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}

impl From<tantivy::directory::error::OpenDirectoryError> for IndexError {
    fn from(e: tantivy::directory::error::OpenDirectoryError) -> Self {
        IndexError::Io(e.to_string())
    }
}

/// One page of search results, newest first.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SearchPage {
    /// At most `limit` records.
    pub records: Vec<AuditRecord>,
    /// Records matching the query (all pages, within scope, ignoring the cursor).
    pub total: u64,
    /// Cursor of the next page, `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The index: schema, directory and a reader (cheap to clone; clones share the reader).
#[derive(Clone)]
pub struct AuditIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    schema: Schema,
}

impl std::fmt::Debug for AuditIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditIndex").field("docs", &self.num_docs()).finish()
    }
}

/// Sort key of newest-first order: (time µs, stream rank, seq, index).
type Position = (i64, u64, u64, u64);

fn position_of(reader: &SegmentReader) -> impl FnMut(tantivy::DocId) -> Position {
    let ff = reader.fast_fields();
    let time = ff.column_opt::<tantivy::DateTime>("time").ok().flatten();
    let rank = ff.column_opt::<u64>("stream_rank").ok().flatten();
    let seq = ff.column_opt::<u64>("seq").ok().flatten();
    let index = ff.column_opt::<u64>("index").ok().flatten();
    move |doc| {
        (
            time.as_ref().and_then(|c| c.first(doc)).map(|d| d.into_timestamp_micros()).unwrap_or(i64::MIN),
            rank.as_ref().and_then(|c| c.first(doc)).unwrap_or(0),
            seq.as_ref().and_then(|c| c.first(doc)).unwrap_or(0),
            index.as_ref().and_then(|c| c.first(doc)).unwrap_or(0),
        )
    }
}

/// Normalises a record id as users may type it: lowercase; a hyphenated UUID becomes 32 hex.
fn normalise_id(id: &str) -> String {
    let lower = id.trim().to_ascii_lowercase();
    if lower.len() == 36 && lower.bytes().filter(|b| *b == b'-').count() == 4 {
        lower.replace('-', "")
    } else {
        lower
    }
}

impl AuditIndex {
    /// Opens the index in `dir` (created if missing, with its parents).
    ///
    /// # Errors
    /// [`IndexError::Io`] for the directory; [`IndexError::Tantivy`] when the directory holds
    /// an index with another schema (delete it: the index is rebuilt from the log).
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let (schema, fields) = build_schema();
        let index = Index::open_or_create(MmapDirectory::open(dir)?, schema.clone())?;
        Self::with_index(index, schema, fields)
    }

    /// An index in memory (tests).
    ///
    /// # Errors
    /// [`IndexError::Tantivy`].
    pub fn in_memory() -> Result<Self, IndexError> {
        let (schema, fields) = build_schema();
        let index = Index::create_in_ram(schema.clone());
        Self::with_index(index, schema, fields)
    }

    fn with_index(index: Index, schema: Schema, fields: Fields) -> Result<Self, IndexError> {
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Self { index, reader, fields, schema })
    }

    /// The field handles.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The last committed checkpoint (read from `meta.json`).
    ///
    /// # Errors
    /// [`IndexError::Checkpoint`] / [`IndexError::Tantivy`].
    pub fn checkpoint(&self) -> Result<Checkpoint, IndexError> {
        let metas = self.index.load_metas()?;
        Checkpoint::from_payload(metas.payload.as_deref())
    }

    /// Starts the one writer thread, resuming from the committed checkpoint.
    ///
    /// # Errors
    /// tantivy's `LockBusy` when another writer holds the directory.
    pub fn writer(&self, options: WriterOptions) -> Result<AuditWriter, IndexError> {
        let committed = self.checkpoint()?;
        AuditWriter::start(&self.index, self.reader.clone(), self.fields, committed, options)
    }

    /// Re-reads the committed state (needed only when another process writes the index).
    ///
    /// # Errors
    /// [`IndexError::Tantivy`].
    pub fn reload(&self) -> Result<(), IndexError> {
        Ok(self.reader.reload()?)
    }

    /// Documents in the index (committed).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// One page of the records matching `query` within `scope`, newest first, starting after
    /// `cursor` (text from a previous page's `next_cursor`). `limit` is 1..=[`MAX_LIMIT`].
    ///
    /// # Errors
    /// [`IndexError::InvalidQuery`] for a bad limit, cursor or query bound.
    pub fn search(
        &self,
        scope: &Scope,
        query: &Query,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<SearchPage, IndexError> {
        if limit == 0 || limit > MAX_LIMIT {
            return Err(IndexError::InvalidQuery(format!("limit must be between 1 and {MAX_LIMIT}")));
        }
        let cursor = cursor.map(Cursor::decode).transpose()?;
        let mut analyzer = self.index.tokenizer_for_field(self.fields.text)?;
        let searcher = self.reader.searcher();
        let total = {
            let q = query::build(&self.fields, &mut analyzer, scope, query, None)?;
            searcher.search(&q, &Count)? as u64
        };
        let q = query::build(&self.fields, &mut analyzer, scope, query, cursor.as_ref())?;
        let hits: Vec<(Position, DocAddress)> =
            searcher.search(&q, &TopDocs::with_limit(limit + 1).order_by(position_of))?;
        let more = hits.len() > limit;
        let mut records = Vec::with_capacity(limit.min(hits.len()));
        let mut last = None;
        for (pos, addr) in hits.into_iter().take(limit) {
            let doc: TantivyDocument = searcher.doc(addr)?;
            records.push(from_document(&self.fields, &doc));
            last = Some(pos);
        }
        let next_cursor = match (more, last) {
            (true, Some((time_us, rank, seq, index))) => Some(Cursor { time_us, rank, seq, index }.encode()),
            _ => None,
        };
        Ok(SearchPage { records, total, next_cursor })
    }

    /// The record with this id (record id, or the request id of a management event; hyphenated
    /// UUIDs are accepted), if it is within `scope`.
    ///
    /// # Errors
    /// [`IndexError::InvalidQuery`] for an id over [`MAX_VALUE_BYTES`]; tantivy errors.
    pub fn get(&self, scope: &Scope, id: &str) -> Result<Option<AuditRecord>, IndexError> {
        if id.is_empty() || id.len() > MAX_VALUE_BYTES {
            return Err(IndexError::InvalidQuery("record id is empty or too long".to_owned()));
        }
        let id = normalise_id(id);
        let request_id = uuid::Uuid::try_parse(&id).map(|u| u.hyphenated().to_string()).unwrap_or_default();
        let searcher = self.reader.searcher();
        let term = |field, v: &str| -> Box<dyn tantivy::query::Query> {
            Box::new(TermQuery::new(Term::from_field_text(field, v), IndexRecordOption::Basic))
        };
        let mut by_id: Vec<(Occur, Box<dyn tantivy::query::Query>)> =
            vec![(Occur::Should, term(self.fields.record_id, &id))];
        if !request_id.is_empty() {
            by_id.push((Occur::Should, term(self.fields.request_id, &request_id)));
        }
        let mut clauses: Vec<(Occur, Box<dyn tantivy::query::Query>)> =
            vec![(Occur::Must, Box::new(BooleanQuery::new(by_id)))];
        if let Scope::Account(a) = scope {
            clauses.push((Occur::Must, term(self.fields.account, a)));
        }
        let q = BooleanQuery::new(clauses);
        let hits: Vec<(Position, DocAddress)> = searcher.search(&q, &TopDocs::with_limit(8).order_by(position_of))?;
        let mut found: Vec<AuditRecord> = Vec::with_capacity(hits.len());
        for (_, addr) in hits {
            let doc: TantivyDocument = searcher.doc(addr)?;
            found.push(from_document(&self.fields, &doc));
        }
        // A record id match wins over a request id match.
        let exact = found.iter().position(|r| r.record_id == id);
        Ok(match exact {
            Some(i) => Some(found.swap_remove(i)),
            None => found.into_iter().next(),
        })
    }

    /// Aggregates the use of one key (key id or key ARN) within `scope`: counts per operation,
    /// outcome and material version, the last use (successful crypto operation), the last
    /// activity, and the `recent_principals` (≤ 100) principals with the newest records.
    ///
    /// # Errors
    /// [`IndexError::InvalidQuery`] when `key` is not a key id or key ARN.
    pub fn key_usage(&self, scope: &Scope, key: &str, recent_principals: usize) -> Result<KeyUsage, IndexError> {
        if key.is_empty() || key.len() > MAX_VALUE_BYTES || alias_of(key).is_some() {
            return Err(IndexError::InvalidQuery("key must be a key id or key ARN".to_owned()));
        }
        let key_id = key_id_of_arn(key).unwrap_or(key).to_owned();
        let key_condition = Condition { field: TermFilter::Key, values: vec![key.to_owned()], exclude: false };
        let all = Query { conditions: vec![key_condition.clone()], ..Query::default() };
        let mut analyzer = self.index.tokenizer_for_field(self.fields.text)?;
        let searcher = self.reader.searcher();
        let q = query::build(&self.fields, &mut analyzer, scope, &all, None)?;
        let counts = searcher.search(&q, &usage::CountsCollector)?;
        let newest = |query: &Query| -> Result<Option<UsageEvent>, IndexError> {
            let page = self.search(scope, query, 1, None)?;
            Ok(page.records.into_iter().next().map(|r| UsageEvent {
                record_id: r.record_id,
                time: r.time,
                time_unix_us: r.time_unix_us,
                operation: r.operation,
                principal_arn: r.principal_arn,
                outcome: r.outcome,
            }))
        };
        let used = Query {
            conditions: vec![
                key_condition,
                Condition {
                    field: TermFilter::Operation,
                    values: CRYPTO_OPERATIONS.iter().map(|s| (*s).to_owned()).collect(),
                    exclude: false,
                },
                Condition { field: TermFilter::Outcome, values: vec![outcome::OK.to_owned()], exclude: false },
            ],
            ..Query::default()
        };
        let last_used = newest(&used)?;
        let last_activity = newest(&all)?;
        let mut principals: Vec<PrincipalUsage> = counts
            .principals
            .into_iter()
            .map(|(arn, (t, n))| PrincipalUsage {
                principal_arn: arn,
                last_time: format_time_us(t),
                last_time_unix_us: t,
                records: n,
            })
            .collect();
        principals
            .sort_by(|a, b| b.last_time_unix_us.cmp(&a.last_time_unix_us).then(a.principal_arn.cmp(&b.principal_arn)));
        principals.truncate(recent_principals.min(100));
        Ok(KeyUsage {
            key_id,
            records: counts.records,
            last_used,
            last_activity,
            by_operation: counts.by_operation.into_iter().collect(),
            by_outcome: counts.by_outcome.into_iter().collect(),
            by_material_version: counts
                .by_material_version
                .into_iter()
                .map(|(v, n)| (u32::try_from(v).unwrap_or(u32::MAX), n))
                .collect(),
            recent_principals: principals,
        })
    }
}
