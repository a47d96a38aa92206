//! `keyledger audit …`: search the audit index over its HTTP API, show one key's usage, or run
//! auditd on its own (`audit serve`).
//!
//! The client reads the URL and a token from `<data-dir>/audit-tokens.json` (written by
//! `keyledger dev`): the `auditor` token unless `--as <name>` picks another, or
//! `$KEYLEDGER_AUDIT_TOKEN`. It speaks plain HTTP/1.1 (hyper's client connection), which is
//! what a loopback dev API needs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Subcommand;
use http_body_util::BodyExt as _;
use keyledger_nats_server::Password;

use crate::auditd::{self, AuditdConfig, BearerTokens, RunnerTimings, TokenFile, TOKENS_FILE};

/// Largest response body the client reads, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Where to find the API and which token to use.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// Data directory holding audit-tokens.json.
    #[arg(long, default_value = ".keyledger", env = "KEYLEDGER_DATA_DIR", global = true)]
    data_dir: PathBuf,
    /// Base URL of the audit API (default: the URL in audit-tokens.json).
    #[arg(long, env = "KEYLEDGER_AUDIT_URL", global = true)]
    url: Option<String>,
    /// Name of the token to use from audit-tokens.json.
    #[arg(long = "as", default_value = "auditor", global = true)]
    token_name: String,
}

/// `keyledger audit` subcommands.
#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum AuditAction {
    /// Searches audit records, newest first. A value starting with `!` excludes
    /// (`--outcome '!ok'`); repeating a flag gives alternatives.
    Search {
        /// Key id, key ARN, alias name or alias ARN.
        #[arg(long)]
        key: Vec<String>,
        /// Alias name.
        #[arg(long)]
        alias: Vec<String>,
        /// AWS operation (`Encrypt`, `CreateKey`, …).
        #[arg(long)]
        operation: Vec<String>,
        /// ok, error, denied, withheld or suppressed.
        #[arg(long)]
        outcome: Vec<String>,
        /// Principal ARN or NATS user name.
        #[arg(long)]
        principal: Vec<String>,
        /// Account id.
        #[arg(long)]
        account: Vec<String>,
        /// AWS error name.
        #[arg(long)]
        error: Vec<String>,
        /// Request id (all records of one request).
        #[arg(long)]
        request: Vec<String>,
        /// From this time (RFC 3339 or epoch seconds, inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Before this time (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Encryption context pair `k=v` (`k!=v` excludes).
        #[arg(long)]
        ctx: Vec<String>,
        /// Free text.
        #[arg(long)]
        q: Option<String>,
        /// Records per page, 1–1000.
        #[arg(long)]
        limit: Option<u32>,
        /// Cursor printed by the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Shows one audit record by record id or request id.
    Get {
        /// Record id or request id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prints the inclusion proof of a record (by record id or request id) against the newest
    /// signed checkpoint, as JSON; save it and check it offline with `keyledger verify-receipt`.
    Proof {
        /// Record id or request id (a reply's `Keyledger-Request-Id`).
        id: String,
        /// Seconds to wait for the next checkpoint (0–10).
        #[arg(long, default_value_t = 5)]
        wait: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Shows how a key was used: last use, counts per operation and material version, recent
    /// principals.
    Usage {
        /// Key id or key ARN.
        key: String,
        /// How many recent principals to list (1–100).
        #[arg(long)]
        principals: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Runs auditd alone against an existing NATS deployment until SIGINT/SIGTERM.
    Serve {
        /// Service profile (JSON) with the NATS URL and service credentials.
        #[arg(long)]
        service_profile: PathBuf,
        /// Index directory.
        #[arg(long)]
        index_dir: PathBuf,
        /// Token file (see `keyledger dev`'s audit-tokens.json).
        #[arg(long)]
        tokens: PathBuf,
        /// HTTP listen address.
        #[arg(long, default_value = auditd::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// ARN partition of the roles.
        #[arg(long, default_value = "aws")]
        partition: String,
        /// Region of the roles.
        #[arg(long, default_value = "us-east-1")]
        region: String,
    },
}

/// Runs an `audit` subcommand; returns the process exit code.
///
/// # Errors
/// Unreadable token file, connection failures.
pub async fn run(action: AuditAction) -> anyhow::Result<std::process::ExitCode> {
    match action {
        AuditAction::Search {
            key,
            alias,
            operation,
            outcome,
            principal,
            account,
            error,
            request,
            from,
            to,
            ctx,
            q,
            limit,
            cursor,
            client,
        } => {
            let mut params: Vec<(String, String)> = Vec::new();
            for (name, values) in [
                ("key", key),
                ("alias", alias),
                ("operation", operation),
                ("outcome", outcome),
                ("principal", principal),
                ("account", account),
                ("error", error),
                ("request", request),
            ] {
                for v in values {
                    match v.strip_prefix('!') {
                        Some(excluded) => params.push((format!("{name}!"), excluded.to_owned())),
                        None => params.push((name.to_owned(), v)),
                    }
                }
            }
            for pair in ctx {
                let (k, v) = pair.split_once('=').with_context(|| format!("--ctx {pair:?} is not key=value"))?;
                params.push((format!("ctx.{k}"), v.to_owned()));
            }
            for (name, value) in [("from", from), ("to", to), ("q", q), ("cursor", cursor)] {
                if let Some(v) = value {
                    params.push((name.to_owned(), v));
                }
            }
            if let Some(l) = limit {
                params.push(("limit".to_owned(), l.to_string()));
            }
            let query = serde_urlencoded::to_string(&params)?;
            let (code, body) = get(&client, &format!("/v1/audit/search?{query}")).await?;
            if code == 200 {
                if let Some(c) = body.get("next_cursor").and_then(|c| c.as_str()) {
                    eprintln!("more records: --cursor {c}");
                }
            }
            Ok(print(code, &body))
        }
        AuditAction::Get { id, client } => {
            let (code, body) = get(&client, &format!("/v1/audit/records/{}", path_segment(&id))).await?;
            Ok(print(code, &body))
        }
        AuditAction::Proof { id, wait, client } => {
            let (code, body) = get(&client, &format!("/v1/audit/proof/{}?wait={wait}", path_segment(&id))).await?;
            Ok(print(code, &body))
        }
        AuditAction::Usage { key, principals, client } => {
            let mut path = format!("/v1/keys/{}/usage", path_segment(&key));
            if let Some(n) = principals {
                path.push_str(&format!("?principals={n}"));
            }
            let (code, body) = get(&client, &path).await?;
            Ok(print(code, &body))
        }
        AuditAction::Serve { service_profile, index_dir, tokens, listen, partition, region } => {
            let profile = keyledger_nats_server::ServiceProfile::read_from(&service_profile)?;
            let tokens = TokenFile::read_from(&tokens)?;
            let nats = super::connect_service(&profile).await?;
            let config = AuditdConfig {
                index_dir,
                listen,
                authenticator: Arc::new(BearerTokens::new(&tokens)?),
                realm: keyledger_audit_index::Realm { partition, region },
                writer: keyledger_audit_index::WriterOptions::default(),
                timings: RunnerTimings::default(),
            };
            let running = auditd::start(nats, config).await?;
            println!("auditd listening on http://{}", running.addr);
            super::shutdown_signal().await;
            running.stop().await;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// Percent-encodes a path segment (ids and ARNs hold `:` and `/`).
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn print(code: u16, body: &serde_json::Value) -> std::process::ExitCode {
    let text = serde_json::to_string_pretty(body).unwrap_or_default();
    if (200..300).contains(&code) {
        println!("{text}");
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("HTTP {code}: {text}");
        std::process::ExitCode::from(super::EXIT_SERVICE_ERROR)
    }
}

/// The audit API as a client sees it: base URL and bearer token.
pub(crate) struct AuditApi {
    base: String,
    token: Password,
}

impl AuditApi {
    /// Finds the API: `url` (else the URL in `<data_dir>/audit-tokens.json`), and the token
    /// from `$KEYLEDGER_AUDIT_TOKEN`, else the token named `token_name` in that file.
    ///
    /// # Errors
    /// No URL, an unreadable token file, or no such token.
    pub(crate) fn locate(data_dir: &Path, url: Option<&str>, token_name: &str) -> anyhow::Result<Self> {
        let path = data_dir.join(TOKENS_FILE);
        let file = TokenFile::read_from(&path).ok();
        let base = match (url, &file) {
            (Some(u), _) => u.to_owned(),
            (None, Some(f)) => f.url.clone(),
            (None, None) => {
                anyhow::bail!("cannot read {} (start `keyledger dev` first, or pass --url)", path.display())
            }
        };
        if let Ok(token) = std::env::var("KEYLEDGER_AUDIT_TOKEN") {
            return Ok(Self { base, token: Password::new(token) });
        }
        let file = file.with_context(|| format!("cannot read {}", path.display()))?;
        let entry =
            file.token(token_name).with_context(|| format!("no token named {token_name:?} in {}", path.display()))?;
        Ok(Self { base, token: entry.token.clone() })
    }

    fn from_args(client: &ClientArgs) -> anyhow::Result<Self> {
        Self::locate(&client.data_dir, client.url.as_deref(), &client.token_name)
    }

    /// The base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `GET base+path` with the bearer token; returns status and JSON body.
    ///
    /// # Errors
    /// An invalid URL, no connection, or an unreadable answer.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let base = &self.base;
        let uri: hyper::Uri =
            format!("{}{path}", base.trim_end_matches('/')).parse().context("invalid audit API URL")?;
        anyhow::ensure!(uri.scheme_str() == Some("http"), "the audit API URL must be http:// (loopback)");
        let host = uri.host().context("the audit API URL has no host")?.to_owned();
        let port = uri.port_u16().unwrap_or(80);
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_else(|| host.clone());
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("cannot connect to the audit API at {base} (is `keyledger dev` running?)"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let request = hyper::Request::get(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(hyper::header::HOST, authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token.expose()))
            .header(hyper::header::ACCEPT, "application/json")
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let response = sender.send_request(request).await.context("the audit API did not answer")?;
        let code = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the audit API's answer: {e}"))?
            .to_bytes();
        driver.abort();
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::json!({"raw": String::from_utf8_lossy(&body)}));
        Ok((code, json))
    }
}

/// `GET base+path` with the client's token.
async fn get(client: &ClientArgs, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    AuditApi::from_args(client)?.get(path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_escape_arn_separators() {
        assert_eq!(path_segment("arn:aws:kms:us-east-1:1:key/ab-c"), "arn%3Aaws%3Akms%3Aus-east-1%3A1%3Akey%2Fab-c");
    }
}
