//! Structured queries: filters become a `BooleanQuery` of `TermQuery` / `RangeQuery` clauses.
//!
//! Rules (nats-tantivy.md §5.3):
//! * No user string ever reaches tantivy's `QueryParser`. The free-text filter is split with the
//!   `text` field's own tokenizer and every token becomes a required `TermQuery`, so query
//!   syntax in user input (`field:`, `AND NOT`, `*`, parentheses) is just text.
//! * Exclusions are `MustNot` clauses, and a query whose only clauses are exclusions gets
//!   `(Must, AllQuery)`, so "everything except …" matches what it should (a boolean clause
//!   with only a negative part matches nothing in tantivy 0.27).
//! * Every reader sees only its scope: an account-scoped reader's query always carries a
//!   required `account` term.
//! * Newest first: records are ordered by (time, stream rank, sequence, index) descending,
//!   which is a total order; a [`Cursor`] names the last record of a page and the next page
//!   is "strictly before it" (keyset paging: each page costs the same).

use std::ops::Bound;

use base64::Engine as _;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query as TantivyQuery, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DateTime, Term};

use crate::record::{alias_of, key_id_of_arn};
use crate::schema::Fields;
use crate::IndexError;

/// Most records one page may hold.
pub const MAX_LIMIT: usize = 1000;
/// Records per page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 50;
/// Most conditions (term conditions plus context conditions) in one query.
pub const MAX_CONDITIONS: usize = 32;
/// Most alternative values in one condition.
pub const MAX_VALUES_PER_CONDITION: usize = 16;
/// Longest filter value, in bytes (AWS key ids and ARNs are at most 2048 bytes).
pub const MAX_VALUE_BYTES: usize = 2048;
/// Longest free-text filter, in bytes.
pub const MAX_TEXT_BYTES: usize = 512;
/// Most tokens of a free-text filter.
pub const MAX_TEXT_TOKENS: usize = 16;
/// Longest cursor accepted, in characters.
pub const MAX_CURSOR_CHARS: usize = 128;

/// Which records a reader may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every account's records (the auditor role).
    All,
    /// Only records that belong to this account (as key owner or as caller).
    Account(String),
}

/// A field a term condition tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermFilter {
    /// The key: a key id, key ARN, alias name or alias ARN (matched against `key_id`,
    /// `key_arn` or `alias` accordingly).
    Key,
    /// The alias name (`alias/…`, or an alias ARN).
    Alias,
    /// The principal: an ARN (matched against `principal_arn`) or a NATS user name.
    Principal,
    /// An account id.
    Account,
    /// The AWS operation or service event name.
    Operation,
    /// The outcome (`ok`, `error`, `denied`, `withheld`, `suppressed`).
    Outcome,
    /// The AWS error name.
    ErrorName,
    /// `AwsApiCall`, `AwsServiceEvent` or `KeyledgerSuppressedRequests`.
    EventType,
    /// The request id (hyphenated UUID or 32 hex): every record of one request.
    RequestId,
}

/// "field is one of `values`" (or, with `exclude`, "is none of them").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// What is tested.
    pub field: TermFilter,
    /// Alternatives (OR), 1..=[`MAX_VALUES_PER_CONDITION`], each 1..=[`MAX_VALUE_BYTES`] bytes.
    pub values: Vec<String>,
    /// Negated: records matching any value are left out.
    pub exclude: bool,
}

/// "the encryption context holds exactly `key` = `value`" (or, with `exclude`, does not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextCondition {
    /// Context key (exact, case-sensitive; dots allowed).
    pub key: String,
    /// Context value (exact).
    pub value: String,
    /// Negated.
    pub exclude: bool,
}

/// A search: all conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Term conditions.
    pub conditions: Vec<Condition>,
    /// Encryption-context conditions.
    pub context: Vec<ContextCondition>,
    /// Records at or after this time (µs since the epoch).
    pub from_us: Option<i64>,
    /// Records strictly before this time (µs since the epoch).
    pub to_us: Option<i64>,
    /// Free text: every word must occur in the record's `text` field.
    pub text: Option<String>,
}

/// Position of a record in the newest-first order; the opaque cursor of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// Time, µs since the epoch.
    pub time_us: i64,
    /// Stream rank ([`crate::stream_rank`]).
    pub rank: u64,
    /// Stream sequence.
    pub seq: u64,
    /// Index in the message.
    pub index: u64,
}

const CURSOR_VERSION: u8 = 1;
const CURSOR_BYTES: usize = 1 + 8 * 4;

impl Cursor {
    /// Opaque text: URL-safe base64 (no padding) of `1 ‖ time i64 BE ‖ rank ‖ seq ‖ index`
    /// (u64 BE each) — 33 bytes, 44 characters.
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(CURSOR_BYTES);
        b.push(CURSOR_VERSION);
        b.extend_from_slice(&self.time_us.to_be_bytes());
        b.extend_from_slice(&self.rank.to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.index.to_be_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// Parses a cursor made by [`Cursor::encode`].
    ///
    /// # Errors
    /// [`IndexError::InvalidQuery`] for anything else (too long, not base64, wrong length or
    /// version).
    pub fn decode(text: &str) -> Result<Self, IndexError> {
        let bad = || IndexError::InvalidQuery("cursor is not a cursor returned by this API".to_owned());
        if text.is_empty() || text.len() > MAX_CURSOR_CHARS {
            return Err(bad());
        }
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        if b.len() != CURSOR_BYTES || b[0] != CURSOR_VERSION {
            return Err(bad());
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[1 + 8 * i..9 + 8 * i]);
            w
        };
        Ok(Self {
            time_us: i64::from_be_bytes(word(0)),
            rank: u64::from_be_bytes(word(1)),
            seq: u64::from_be_bytes(word(2)),
            index: u64::from_be_bytes(word(3)),
        })
    }
}

fn check_value(what: &str, v: &str) -> Result<(), IndexError> {
    if v.is_empty() {
        return Err(IndexError::InvalidQuery(format!("{what} must not be empty")));
    }
    if v.len() > MAX_VALUE_BYTES {
        return Err(IndexError::InvalidQuery(format!("{what} is longer than {MAX_VALUE_BYTES} bytes")));
    }
    if v.chars().any(char::is_control) {
        return Err(IndexError::InvalidQuery(format!("{what} contains control characters")));
    }
    Ok(())
}

impl Query {
    /// Checks every bound of the query.
    ///
    /// # Errors
    /// [`IndexError::InvalidQuery`] naming the first violated bound.
    pub fn validate(&self) -> Result<(), IndexError> {
        if self.conditions.len() + self.context.len() > MAX_CONDITIONS {
            return Err(IndexError::InvalidQuery(format!("at most {MAX_CONDITIONS} filters are allowed")));
        }
        for c in &self.conditions {
            if c.values.is_empty() || c.values.len() > MAX_VALUES_PER_CONDITION {
                return Err(IndexError::InvalidQuery(format!("a filter takes 1 to {MAX_VALUES_PER_CONDITION} values")));
            }
            for v in &c.values {
                check_value("a filter value", v)?;
            }
        }
        for c in &self.context {
            check_value("an encryption context key", &c.key)?;
            if c.value.len() > MAX_VALUE_BYTES || c.value.chars().any(char::is_control) {
                return Err(IndexError::InvalidQuery(
                    "an encryption context value is too long or contains control characters".to_owned(),
                ));
            }
        }
        if let (Some(from), Some(to)) = (self.from_us, self.to_us) {
            if from >= to {
                return Err(IndexError::InvalidQuery("from must be before to".to_owned()));
            }
        }
        if let Some(t) = &self.text {
            if t.len() > MAX_TEXT_BYTES {
                return Err(IndexError::InvalidQuery(format!("q is longer than {MAX_TEXT_BYTES} bytes")));
            }
        }
        Ok(())
    }
}

fn term_query(term: Term) -> Box<dyn TantivyQuery> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

fn text_term(field: Field, v: &str) -> Box<dyn TantivyQuery> {
    term_query(Term::from_field_text(field, v))
}

fn u64_range(field: Field, lo: Bound<u64>, hi: Bound<u64>) -> Box<dyn TantivyQuery> {
    let map = |b: Bound<u64>| match b {
        Bound::Included(v) => Bound::Included(Term::from_field_u64(field, v)),
        Bound::Excluded(v) => Bound::Excluded(Term::from_field_u64(field, v)),
        Bound::Unbounded => Bound::Unbounded,
    };
    Box::new(RangeQuery::new(map(lo), map(hi)))
}

fn time_range(field: Field, lo: Bound<i64>, hi: Bound<i64>) -> Box<dyn TantivyQuery> {
    let map = |b: Bound<i64>| match b {
        Bound::Included(v) => Bound::Included(Term::from_field_date(field, DateTime::from_timestamp_micros(v))),
        Bound::Excluded(v) => Bound::Excluded(Term::from_field_date(field, DateTime::from_timestamp_micros(v))),
        Bound::Unbounded => Bound::Unbounded,
    };
    Box::new(RangeQuery::new(map(lo), map(hi)))
}

fn all_of(clauses: Vec<Box<dyn TantivyQuery>>) -> Box<dyn TantivyQuery> {
    Box::new(BooleanQuery::new(clauses.into_iter().map(|q| (Occur::Must, q)).collect()))
}

fn any_of(mut clauses: Vec<Box<dyn TantivyQuery>>) -> Box<dyn TantivyQuery> {
    if clauses.len() == 1 {
        return clauses.pop().expect("one clause");
    }
    Box::new(BooleanQuery::new(clauses.into_iter().map(|q| (Occur::Should, q)).collect()))
}

/// Escapes a context key as one JSON path segment (`.` and `\` are escaped), so a key with
/// dots addresses that key, not a nested object.
fn json_path_segment(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for ch in key.chars() {
        if ch == '.' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The record(s) a value of `filter` names, as alternative term queries.
fn term_alternatives(f: &Fields, filter: TermFilter, value: &str) -> Vec<Box<dyn TantivyQuery>> {
    match filter {
        TermFilter::Key => {
            if let Some(alias) = alias_of(value) {
                vec![text_term(f.alias, alias)]
            } else if key_id_of_arn(value).is_some() {
                vec![text_term(f.key_arn, value)]
            } else {
                vec![text_term(f.key_id, value)]
            }
        }
        TermFilter::Alias => vec![text_term(f.alias, alias_of(value).unwrap_or(value))],
        TermFilter::Principal => {
            if value.starts_with("arn:") || value.contains(':') {
                vec![text_term(f.principal_arn, value)]
            } else {
                vec![text_term(f.nats_user, value)]
            }
        }
        TermFilter::Account => vec![text_term(f.account, value)],
        TermFilter::Operation => vec![text_term(f.operation, value)],
        TermFilter::Outcome => vec![text_term(f.outcome, value)],
        TermFilter::ErrorName => vec![text_term(f.error_name, value)],
        TermFilter::EventType => vec![text_term(f.event_type, value)],
        TermFilter::RequestId => {
            let normal = uuid::Uuid::try_parse(value).map(|u| u.hyphenated().to_string());
            vec![text_term(f.request_id, normal.as_deref().unwrap_or(value))]
        }
    }
}

/// "strictly before `c` in newest-first order": time < t, or same time and an earlier
/// (rank, seq, index).
fn before(f: &Fields, c: &Cursor) -> Box<dyn TantivyQuery> {
    let same_time = || time_range(f.time, Bound::Included(c.time_us), Bound::Included(c.time_us));
    let eq = |field: Field, v: u64| u64_range(field, Bound::Included(v), Bound::Included(v));
    let lt = |field: Field, v: u64| u64_range(field, Bound::Unbounded, Bound::Excluded(v));
    let mut alternatives = vec![time_range(f.time, Bound::Unbounded, Bound::Excluded(c.time_us))];
    if c.rank > 0 {
        alternatives.push(all_of(vec![same_time(), lt(f.stream_rank, c.rank)]));
    }
    if c.seq > 0 {
        alternatives.push(all_of(vec![same_time(), eq(f.stream_rank, c.rank), lt(f.seq, c.seq)]));
    }
    if c.index > 0 {
        alternatives.push(all_of(vec![same_time(), eq(f.stream_rank, c.rank), eq(f.seq, c.seq), lt(f.index, c.index)]));
    }
    any_of(alternatives)
}

/// Builds the tantivy query for `query` as seen by `scope`, optionally restricted to records
/// strictly before `cursor`. `text_analyzer` is the `text` field's tokenizer.
///
/// # Errors
/// [`IndexError::InvalidQuery`] when a bound is violated or the free text has too many words.
pub fn build(
    f: &Fields,
    text_analyzer: &mut TextAnalyzer,
    scope: &Scope,
    query: &Query,
    cursor: Option<&Cursor>,
) -> Result<Box<dyn TantivyQuery>, IndexError> {
    query.validate()?;
    let mut clauses: Vec<(Occur, Box<dyn TantivyQuery>)> = Vec::new();
    if let Scope::Account(account) = scope {
        clauses.push((Occur::Must, text_term(f.account, account)));
    }
    for c in &query.conditions {
        let alternatives: Vec<_> = c.values.iter().flat_map(|v| term_alternatives(f, c.field, v)).collect();
        clauses.push((if c.exclude { Occur::MustNot } else { Occur::Must }, any_of(alternatives)));
    }
    for c in &query.context {
        let mut term = Term::from_field_json_path(f.encryption_context, &json_path_segment(&c.key), false);
        term.append_type_and_str(&c.value);
        clauses.push((if c.exclude { Occur::MustNot } else { Occur::Must }, term_query(term)));
    }
    if query.from_us.is_some() || query.to_us.is_some() {
        let lo = query.from_us.map_or(Bound::Unbounded, Bound::Included);
        let hi = query.to_us.map_or(Bound::Unbounded, Bound::Excluded);
        clauses.push((Occur::Must, time_range(f.time, lo, hi)));
    }
    if let Some(text) = &query.text {
        let mut tokens = Vec::new();
        let mut stream = text_analyzer.token_stream(text);
        while stream.advance() {
            let t = stream.token().text.clone();
            if !tokens.contains(&t) {
                tokens.push(t);
            }
        }
        if tokens.len() > MAX_TEXT_TOKENS {
            return Err(IndexError::InvalidQuery(format!("q has more than {MAX_TEXT_TOKENS} words")));
        }
        for t in tokens {
            clauses.push((Occur::Must, text_term(f.text, &t)));
        }
    }
    if let Some(c) = cursor {
        clauses.push((Occur::Must, before(f, c)));
    }
    if !clauses.iter().any(|(occur, _)| *occur == Occur::Must) {
        clauses.push((Occur::Must, Box::new(AllQuery)));
    }
    Ok(Box::new(BooleanQuery::new(clauses)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let c = Cursor { time_us: 1_764_410_400_123_000, rank: 202_611, seq: 42, index: 7 };
        let text = c.encode();
        assert_eq!(text.len(), 44);
        assert_eq!(Cursor::decode(&text).unwrap(), c);
        for bad in ["", "not base64!", "AAAA", &"A".repeat(200), &c.encode()[..40]] {
            assert!(Cursor::decode(bad).is_err(), "{bad:?}");
        }
        let mut other_version = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&text).unwrap();
        other_version[0] = 2;
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other_version);
        assert!(Cursor::decode(&other).is_err());
    }

    #[test]
    fn queries_over_their_bounds_are_refused() {
        let many = Query {
            conditions: (0..=MAX_CONDITIONS)
                .map(|i| Condition { field: TermFilter::Operation, values: vec![format!("Op{i}")], exclude: false })
                .collect(),
            ..Query::default()
        };
        assert!(many.validate().is_err());
        let long = Query {
            conditions: vec![Condition {
                field: TermFilter::Key,
                values: vec!["k".repeat(MAX_VALUE_BYTES + 1)],
                exclude: false,
            }],
            ..Query::default()
        };
        assert!(long.validate().is_err());
        let empty = Query {
            conditions: vec![Condition { field: TermFilter::Key, values: vec![], exclude: false }],
            ..Query::default()
        };
        assert!(empty.validate().is_err());
        let backwards = Query { from_us: Some(10), to_us: Some(10), ..Query::default() };
        assert!(backwards.validate().is_err());
        assert!(Query::default().validate().is_ok());
    }

    #[test]
    fn dotted_context_keys_are_one_path_segment() {
        assert_eq!(json_path_segment("aws.pi"), "aws\\.pi");
        assert_eq!(json_path_segment("a\\b"), "a\\\\b");
    }
}
