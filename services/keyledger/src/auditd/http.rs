//! The audit HTTP API (axum 0.8).
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/audit/search` | records matching filters, newest first, keyset-paged |
//! | `GET /v1/audit/records/{id}` | one record by record id or request id |
//! | `GET /v1/audit/proof/{id}` | a `c2sp.org/tlog-proof@v1` inclusion proof of the message holding the record, against the newest signed checkpoint (`?wait=S`, 0–10 s, default 5: how long to wait for the next checkpoint) |
//! | `GET /v1/keys/{id}/usage` | one key's usage aggregates |
//! | `GET /healthz` | 200 with status JSON (incl. lag); 503 when the indexer is stopped or failing |
//! | `GET /metrics` | Prometheus text |
//!
//! `/v1/*` needs `Authorization: Bearer <token>` (401 otherwise); every query is limited to
//! the token's scope. Errors are JSON `{"error": "<Code>", "message": "…"}` with codes
//! `InvalidParameter` (400), `Unauthorized` (401), `NotFound` (404), `Busy` / `Unavailable`
//! (503), `Internal` (500). `/healthz` and `/metrics` carry no record data and need no token.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keyledger_audit_index::{
    outcome, parse_time, AuditIndex, AuditWriter, Condition, ContextCondition, IndexError, Query, Scope, TermFilter,
    DEFAULT_LIMIT, MAX_CURSOR_CHARS, MAX_LIMIT,
};
use serde_json::json;
use tokio::sync::Semaphore;

use super::auth::{AuthError, Authenticator};
use super::runner::{FollowState, RunnerState};

/// Longest query string accepted, in bytes.
pub const MAX_QUERY_STRING_BYTES: usize = 16 * 1024;
/// Most query parameters in one request.
pub const MAX_PARAMS: usize = 40;
/// Searches running at once; more wait up to [`SEARCH_QUEUE_WAIT`].
pub const MAX_CONCURRENT_SEARCHES: usize = 4;
/// Longest wait for a search slot before answering 503 Busy.
pub const SEARCH_QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Default and largest number of recent principals in a usage answer.
pub const DEFAULT_RECENT_PRINCIPALS: usize = 10;
/// Largest `principals` parameter.
pub const MAX_RECENT_PRINCIPALS: usize = 100;

/// Everything a handler needs.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub index: AuditIndex,
    pub auth: Arc<dyn Authenticator>,
    pub writer: Arc<AuditWriter>,
    pub runner: Arc<RunnerState>,
    pub runner_alive: Arc<AtomicBool>,
    pub searches: Arc<Semaphore>,
    /// The service connection (proof requests to the checkpointer).
    pub nats: async_nats::Client,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code: "InvalidParameter", message: message.into() }
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, code: "NotFound", message: message.into() }
    }
    fn internal(message: impl Into<String>) -> Self {
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, code: "Internal", message: message.into() }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self { status: StatusCode::UNAUTHORIZED, code: "Unauthorized", message: e.to_string() }
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::InvalidQuery(m) => Self::bad(m),
            other => {
                tracing::error!(error = %other, "audit search failed");
                Self::internal("the audit index could not answer")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.code, "message": self.message}));
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// The router.
pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/audit/search", get(search))
        .route("/v1/audit/records/{id}", get(record))
        .route("/v1/audit/proof/{id}", get(proof))
        .route("/v1/keys/{id}/usage", get(key_usage))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

/// A search request, parsed and bounded.
#[derive(Debug, PartialEq, Eq)]
pub struct SearchRequest {
    /// Filters.
    pub query: Query,
    /// Page size.
    pub limit: usize,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

fn term_filter(name: &str) -> Option<TermFilter> {
    Some(match name {
        "key" => TermFilter::Key,
        "alias" => TermFilter::Alias,
        "principal" => TermFilter::Principal,
        "account" => TermFilter::Account,
        "operation" => TermFilter::Operation,
        "outcome" => TermFilter::Outcome,
        "error" => TermFilter::ErrorName,
        "event_type" => TermFilter::EventType,
        "request" => TermFilter::RequestId,
        _ => return None,
    })
}

fn parse_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let raw = raw.unwrap_or("");
    if raw.len() > MAX_QUERY_STRING_BYTES {
        return Err(ApiError::bad(format!("the query string is longer than {MAX_QUERY_STRING_BYTES} bytes")));
    }
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw).map_err(|_| ApiError::bad("the query string is not valid URL encoding"))?;
    if pairs.len() > MAX_PARAMS {
        return Err(ApiError::bad(format!("at most {MAX_PARAMS} query parameters are allowed")));
    }
    Ok(pairs)
}

/// Parses `GET /v1/audit/search` parameters.
///
/// Term filters `key`, `alias`, `principal`, `account`, `operation`, `outcome`, `error`,
/// `event_type`, `request`: repeating a parameter gives alternatives (OR); a name ending in `!`
/// (`outcome!=ok`) excludes. `ctx.<key>=<value>` (or `ctx.<key>!=<value>`) tests one
/// encryption-context pair exactly. `from` (inclusive) / `to` (exclusive): RFC 3339 or epoch
/// seconds. `q`: free text. `limit`: 1..=1000 (default 50). `cursor`: from `next_cursor`.
///
/// # Errors
/// 400 for unknown or repeated single-valued parameters and values out of bounds.
pub fn parse_search(raw: Option<&str>) -> Result<SearchRequest, ApiError> {
    let pairs = parse_pairs(raw)?;
    let mut query = Query::default();
    let mut limit = None;
    let mut cursor = None;
    let mut positive: Vec<(TermFilter, Vec<String>)> = Vec::new();
    let mut negative: Vec<(TermFilter, Vec<String>)> = Vec::new();
    let once = |slot: &mut Option<String>, name: &str, value: String| -> Result<(), ApiError> {
        if slot.replace(value).is_some() {
            return Err(ApiError::bad(format!("parameter {name} is given more than once")));
        }
        Ok(())
    };
    let (mut from, mut to, mut text, mut limit_text) = (None, None, None, None);
    for (name, value) in pairs {
        let (base, exclude) = match name.strip_suffix('!') {
            Some(b) => (b, true),
            None => (name.as_str(), false),
        };
        if let Some(key) = base.strip_prefix("ctx.") {
            query.context.push(ContextCondition { key: key.to_owned(), value, exclude });
            continue;
        }
        if let Some(field) = term_filter(base) {
            if field == TermFilter::Outcome && !outcome::ALL.contains(&value.as_str()) {
                return Err(ApiError::bad(format!("outcome must be one of {}", outcome::ALL.join(", "))));
            }
            let list = if exclude { &mut negative } else { &mut positive };
            match list.iter_mut().find(|(f, _)| *f == field) {
                Some((_, values)) => values.push(value),
                None => list.push((field, vec![value])),
            }
            continue;
        }
        if exclude {
            return Err(ApiError::bad(format!("parameter {base} cannot be negated")));
        }
        match base {
            "from" => once(&mut from, "from", value)?,
            "to" => once(&mut to, "to", value)?,
            "q" => once(&mut text, "q", value)?,
            "limit" => once(&mut limit_text, "limit", value)?,
            "cursor" => once(&mut cursor, "cursor", value)?,
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(ApiError::bad(format!(
                    "unknown parameter {shown:?}; use key, alias, principal, account, operation, outcome, error, event_type, request, ctx.<key>, from, to, q, limit, cursor"
                )));
            }
        }
    }
    for (field, values) in positive {
        query.conditions.push(Condition { field, values, exclude: false });
    }
    for (field, values) in negative {
        query.conditions.push(Condition { field, values, exclude: true });
    }
    if let Some(f) = from {
        query.from_us = Some(parse_time(&f).map_err(|_| ApiError::bad("from must be RFC 3339 or epoch seconds"))?);
    }
    if let Some(t) = to {
        query.to_us = Some(parse_time(&t).map_err(|_| ApiError::bad("to must be RFC 3339 or epoch seconds"))?);
    }
    query.text = text.filter(|t| !t.trim().is_empty());
    if let Some(l) = limit_text {
        match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = Some(n),
            _ => return Err(ApiError::bad(format!("limit must be an integer between 1 and {MAX_LIMIT}"))),
        }
    }
    if let Some(c) = &cursor {
        if c.len() > MAX_CURSOR_CHARS {
            return Err(ApiError::bad("cursor is not a cursor returned by this API"));
        }
    }
    query.validate().map_err(ApiError::from)?;
    Ok(SearchRequest { query, limit: limit.unwrap_or(DEFAULT_LIMIT), cursor })
}

/// Runs blocking index work on the blocking pool, at most [`MAX_CONCURRENT_SEARCHES`] at once.
async fn blocking<T: Send + 'static>(
    state: &ApiState,
    work: impl FnOnce(AuditIndex) -> Result<T, IndexError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = tokio::time::timeout(SEARCH_QUEUE_WAIT, state.searches.clone().acquire_owned())
        .await
        .map_err(|_| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "Busy",
            message: "too many searches; retry".into(),
        })?
        .map_err(|_| ApiError::internal("search slots closed"))?;
    let index = state.index.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work(index)
    })
    .await
    .map_err(|_| ApiError::internal("the search task failed"))?;
    Ok(result?)
}

async fn search(
    State(state): State<ApiState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let scope = state.auth.authenticate(&headers)?;
    let request = parse_search(raw.as_deref())?;
    let scope_text = scope_text(&scope);
    let page =
        blocking(&state, move |index| index.search(&scope, &request.query, request.limit, request.cursor.as_deref()))
            .await?;
    Ok(Json(json!({
        "scope": scope_text,
        "total": page.total,
        "next_cursor": page.next_cursor,
        "records": page.records,
    }))
    .into_response())
}

fn scope_text(scope: &Scope) -> String {
    match scope {
        Scope::All => "all".to_owned(),
        Scope::Account(a) => format!("account:{a}"),
    }
}

async fn record(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let scope = state.auth.authenticate(&headers)?;
    if id.is_empty() || id.len() > 128 {
        return Err(ApiError::bad("record id must be 1 to 128 characters"));
    }
    match blocking(&state, move |index| index.get(&scope, &id)).await? {
        Some(r) => Ok(Json(r).into_response()),
        None => Err(ApiError::not_found("no audit record with this id in your scope")),
    }
}

/// Longest `wait` of a proof request, in seconds.
pub const MAX_PROOF_WAIT_S: u64 = 10;

/// `GET /v1/audit/proof/{id}`: the record (in the caller's scope), then the checkpointer's
/// inclusion proof of the message holding it. The answer names no other record: a proof is
/// sibling hashes only.
async fn proof(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let scope = state.auth.authenticate(&headers)?;
    let mut wait = Duration::from_secs(5);
    for (name, value) in parse_pairs(raw.as_deref())? {
        match (name.as_str(), value.parse::<u64>()) {
            ("wait", Ok(s)) if s <= MAX_PROOF_WAIT_S => wait = Duration::from_secs(s),
            ("wait", _) => return Err(ApiError::bad(format!("wait must be 0 to {MAX_PROOF_WAIT_S} seconds"))),
            (other, _) => {
                let shown: String = other.chars().take(64).collect();
                return Err(ApiError::bad(format!("unknown parameter {shown:?}; use wait")));
            }
        }
    }
    if id.is_empty() || id.len() > 128 {
        return Err(ApiError::bad("record id must be 1 to 128 characters"));
    }
    // A record is searchable up to a commit interval (0.3 s) after its reply: wait for it
    // within `wait` too.
    let deadline = tokio::time::Instant::now() + wait;
    let record =
        loop {
            let (scope, id) = (scope.clone(), id.clone());
            match blocking(&state, move |index| index.get(&scope, &id)).await? {
                Some(r) => break r,
                None if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                None => return Err(ApiError::not_found(
                    "no audit record with this id in your scope (a record is searchable within a second of its reply)",
                )),
            }
        };
    let request = crate::checkpointer::ProofRequest { stream: record.stream.clone(), seq: record.seq };
    let body = serde_json::to_vec(&request).map_err(|e| ApiError::internal(e.to_string()))?;
    loop {
        let unavailable = |message: &str| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "Unavailable",
            message: message.to_owned(),
        };
        let reply = state
            .nats
            .request(keyledger_events::names::PROOF_SUBJECT, body.clone().into())
            .await
            .map_err(|_| unavailable("no checkpointer answered; is the checkpointer role running?"))?;
        if let Ok(answer) = serde_json::from_slice::<crate::checkpointer::ProofAnswer>(&reply.payload) {
            return Ok(Json(json!({
                "record_id": record.record_id,
                "request_id": record.request_id,
                "stream": answer.stream,
                "seq": answer.seq,
                "record_index": record.index,
                "leaf_index": answer.index,
                "tree_size": answer.size,
                "origin": answer.origin,
                "event_hash": answer.event_hash,
                "proof": answer.proof,
            }))
            .into_response());
        }
        let refusal: crate::checkpointer::ProofRefusal = serde_json::from_slice(&reply.payload)
            .map_err(|_| ApiError::internal("the checkpointer's answer is unreadable"))?;
        match refusal.error.as_str() {
            "NotCheckpointed" if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            "NotCheckpointed" => {
                return Err(ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "NotCheckpointed",
                    message: "the record is not under a signed checkpoint yet; retry in a second".to_owned(),
                })
            }
            _ => {
                tracing::error!(error = %refusal.error, message = %refusal.message, "no proof for a stored record");
                return Err(ApiError::internal(format!("no proof: {}", refusal.error)));
            }
        }
    }
}

async fn key_usage(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let scope = state.auth.authenticate(&headers)?;
    let mut principals = DEFAULT_RECENT_PRINCIPALS;
    for (name, value) in parse_pairs(raw.as_deref())? {
        match name.as_str() {
            "principals" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_RECENT_PRINCIPALS).contains(&n) => principals = n,
                _ => {
                    return Err(ApiError::bad(format!(
                        "principals must be an integer between 1 and {MAX_RECENT_PRINCIPALS}"
                    )))
                }
            },
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(ApiError::bad(format!("unknown parameter {shown:?}; use principals")));
            }
        }
    }
    if id.is_empty() || id.len() > 2048 {
        return Err(ApiError::bad("key must be a key id or key ARN"));
    }
    let usage = blocking(&state, move |index| index.key_usage(&scope, &id, principals)).await?;
    Ok(Json(usage).into_response())
}

/// Overall health: `ok`, `starting` (no stream found yet), `failing` (a follower stopped,
/// or stream discovery fails) or `stopped` (the writer or the runner ended).
fn health(state: &ApiState) -> (StatusCode, serde_json::Value) {
    let writer = state.writer.status();
    let streams = state.runner.streams();
    let discovery_error = state.runner.discovery_error.lock().expect("discovery").clone();
    let runner_alive = state.runner_alive.load(Ordering::SeqCst);
    let status = if !writer.running || writer.failure.is_some() || !runner_alive {
        "stopped"
    } else if streams.iter().any(|s| s.state == FollowState::Failed) || discovery_error.is_some() {
        "failing"
    } else if streams.is_empty() {
        "starting"
    } else {
        "ok"
    };
    let code = if matches!(status, "stopped" | "failing") { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let lag: u64 = streams.iter().map(|s| s.lag).sum();
    let lag_seconds = streams.iter().map(|s| s.lag_seconds).fold(0.0_f64, f64::max);
    (
        code,
        json!({
            "status": status,
            "indexed_records": writer.docs_committed,
            "lag": lag,
            "lag_seconds": lag_seconds,
            "streams": streams,
            "writer": {
                "running": writer.running,
                "failure": writer.failure,
                "commits": writer.commits,
                "last_commit_unix_ms": writer.last_commit_unix_ms,
                "duplicates_dropped": writer.duplicates_dropped,
                "gaps": writer.gaps,
            },
            "discovery_error": discovery_error,
        }),
    )
}

async fn healthz(State(state): State<ApiState>) -> Response {
    let (code, body) = health(&state);
    (code, Json(body)).into_response()
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let writer = state.writer.status();
    let streams = state.runner.streams();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, samples: Vec<(Option<&str>, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (stream, value) in samples {
            match stream {
                Some(s) => {
                    let _ = writeln!(out, "{name}{{stream=\"{}\"}} {value}", label(s));
                }
                None => {
                    let _ = writeln!(out, "{name} {value}");
                }
            }
        }
    };
    gauge(
        "keyledger_audit_indexed_records",
        "Audit records in the index (committed).",
        "gauge",
        vec![(None, writer.docs_committed.to_string())],
    );
    gauge(
        "keyledger_audit_records_added_total",
        "Audit records added since start.",
        "counter",
        vec![(None, writer.docs_added.to_string())],
    );
    gauge(
        "keyledger_audit_commits_total",
        "Index commits since start.",
        "counter",
        vec![(None, writer.commits.to_string())],
    );
    gauge(
        "keyledger_audit_last_commit_timestamp_seconds",
        "Wall-clock time of the last commit.",
        "gauge",
        vec![(None, format!("{:.3}", writer.last_commit_unix_ms.unwrap_or(0) as f64 / 1000.0))],
    );
    gauge(
        "keyledger_audit_writer_up",
        "1 while the index writer runs without failure.",
        "gauge",
        vec![(None, u8::from(writer.running && writer.failure.is_none()).to_string())],
    );
    gauge(
        "keyledger_audit_duplicates_dropped_total",
        "Re-delivered messages dropped by the writer.",
        "counter",
        vec![(None, writer.duplicates_dropped.to_string())],
    );
    gauge(
        "keyledger_audit_stream_head_sequence",
        "Last sequence of the stream at the last check.",
        "gauge",
        streams.iter().map(|s| (Some(s.stream.as_str()), s.head.to_string())).collect(),
    );
    gauge(
        "keyledger_audit_stream_indexed_sequence",
        "Last committed sequence of the stream.",
        "gauge",
        streams.iter().map(|s| (Some(s.stream.as_str()), s.indexed.to_string())).collect(),
    );
    gauge(
        "keyledger_audit_stream_lag_messages",
        "Messages in the stream not yet searchable.",
        "gauge",
        streams.iter().map(|s| (Some(s.stream.as_str()), s.lag.to_string())).collect(),
    );
    gauge(
        "keyledger_audit_stream_lag_seconds",
        "Age of the oldest stored message not yet searchable (0 when fully indexed).",
        "gauge",
        streams.iter().map(|s| (Some(s.stream.as_str()), format!("{:.3}", s.lag_seconds))).collect(),
    );
    gauge(
        "keyledger_audit_stream_failed",
        "1 when the stream's follower stopped on a gap or an undecodable record.",
        "gauge",
        streams
            .iter()
            .map(|s| (Some(s.stream.as_str()), u8::from(s.state == FollowState::Failed).to_string()))
            .collect(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(raw: &str) -> String {
        match parse_search(Some(raw)) {
            Err(e) => {
                assert_eq!(e.status, StatusCode::BAD_REQUEST, "{raw}");
                e.message
            }
            Ok(r) => panic!("{raw} was accepted: {r:?}"),
        }
    }

    #[test]
    fn search_parameters_become_conditions() {
        let r = parse_search(Some(
            "key=k1&operation=Encrypt&operation=Decrypt&outcome!=ok&ctx.app.id=7&ctx.x!=y&from=1764410400&to=2026-01-01T00:00:00Z&q=hello&limit=10&cursor=abc",
        ))
        .unwrap();
        assert_eq!(r.limit, 10);
        assert_eq!(r.cursor.as_deref(), Some("abc"));
        assert_eq!(r.query.text.as_deref(), Some("hello"));
        assert_eq!(r.query.from_us, Some(1_764_410_400_000_000));
        assert!(r.query.to_us.is_some());
        assert!(r.query.conditions.contains(&Condition {
            field: TermFilter::Operation,
            values: vec!["Encrypt".into(), "Decrypt".into()],
            exclude: false
        }));
        assert!(r.query.conditions.contains(&Condition {
            field: TermFilter::Outcome,
            values: vec!["ok".into()],
            exclude: true
        }));
        assert_eq!(r.query.context[0], ContextCondition { key: "app.id".into(), value: "7".into(), exclude: false });
        assert!(r.query.context[1].exclude);
        assert_eq!(parse_search(None).unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn bad_search_parameters_are_refused_with_a_reason() {
        assert!(bad("limit=0").contains("limit"));
        assert!(bad("limit=1001").contains("limit"));
        assert!(bad("limit=ten").contains("limit"));
        assert!(bad("colour=red").contains("unknown parameter"));
        assert!(bad("limit=5&limit=6").contains("more than once"));
        assert!(bad("outcome=maybe").contains("outcome"));
        assert!(bad("from=yesterday").contains("from"));
        assert!(bad("from=20&to=10").contains("before"));
        assert!(bad("q!=x").contains("negated"));
        assert!(bad(&format!("cursor={}", "a".repeat(200))).contains("cursor"));
        assert!(bad(&"operation=A&".repeat(41)).contains("at most"));
        assert!(bad(&format!("key={}", "k".repeat(3000))).contains("longer"));
    }
}
