//! Who may read the audit index, and what they see.
//!
//! Today: `Authorization: Bearer <token>` against configured tokens ([`BearerTokens`]), each
//! mapping to one Keyledger account (sees only that account's records) or to the auditor role
//! (every account). SigV4 comes with the gateway: implement [`Authenticator`] for it (the
//! request headers carry everything SigV4 needs except the body, which audit GETs do not
//! have) and pass it to [`super::AuditdConfig::authenticator`].

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use keyledger_audit_index::Scope;
use keyledger_nats_server::Password;

/// Why a request was not authenticated. The text never contains the presented credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("the request carries no Authorization header; send `Authorization: Bearer <token>`")]
    Missing,
    /// A header that is not `Bearer <token>`.
    #[error("the Authorization header is not `Bearer <token>`")]
    Malformed,
    /// A token nobody configured.
    #[error("the token is not valid for this audit service")]
    Unknown,
}

/// Authenticates an HTTP request and says which records its caller may see.
pub trait Authenticator: Send + Sync + 'static {
    /// The caller's scope.
    ///
    /// # Errors
    /// [`AuthError`] when the request is not authenticated (the API answers 401).
    fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<Scope, AuthError>;
}

/// Longest bearer token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 256;

/// One configured token.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TokenEntry {
    /// A name for logs (never the token).
    pub name: String,
    /// The secret (redacting `Debug`, zeroized on drop).
    pub token: Password,
    /// `"auditor"` for every account; absent when `account` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The Keyledger account (12 digits) whose records the token may read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// The token file (`<data-dir>/audit-tokens.json`, mode 0600):
/// `{"url": "http://127.0.0.1:4280", "tokens": [{"name", "token", "role" | "account"}]}`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TokenFile {
    /// Where the audit API listens (for the CLI).
    pub url: String,
    /// The tokens.
    pub tokens: Vec<TokenEntry>,
}

impl TokenEntry {
    /// The scope this entry grants.
    ///
    /// # Errors
    /// When the entry names neither (or both) a role and an account, or an unknown role.
    pub fn scope(&self) -> anyhow::Result<Scope> {
        match (self.role.as_deref(), self.account.as_deref()) {
            (Some("auditor"), None) => Ok(Scope::All),
            (None, Some(a)) if !a.is_empty() && a.len() <= 64 => Ok(Scope::Account(a.to_owned())),
            _ => anyhow::bail!("token {:?}: set exactly one of role = \"auditor\" and account", self.name),
        }
    }
}

impl TokenFile {
    /// A fresh file: an auditor token and one token per `(name, account)`.
    pub fn generate(url: &str, accounts: &[(&str, &str)]) -> Self {
        let mut tokens = vec![TokenEntry {
            name: "auditor".to_owned(),
            token: Password::generate(),
            role: Some("auditor".to_owned()),
            account: None,
        }];
        for (name, account) in accounts {
            tokens.push(TokenEntry {
                name: (*name).to_owned(),
                token: Password::generate(),
                role: None,
                account: Some((*account).to_owned()),
            });
        }
        Self { url: url.to_owned(), tokens }
    }

    /// Reads a token file.
    ///
    /// # Errors
    /// Unreadable or invalid file.
    pub fn read_from(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file: Self =
            serde_json::from_slice(&bytes).with_context(|| format!("{} is not a token file", path.display()))?;
        for t in &file.tokens {
            t.scope()?;
        }
        Ok(file)
    }

    /// Writes the file with mode 0600 (atomically: temp file + rename).
    ///
    /// # Errors
    /// File system errors.
    pub fn write_to(&self, path: &Path) -> anyhow::Result<()> {
        crate::private_file::write_private(path, &serde_json::to_vec_pretty(self)?)
    }

    /// The token named `name`.
    pub fn token(&self, name: &str) -> Option<&TokenEntry> {
        self.tokens.iter().find(|t| t.name == name)
    }
}

/// Bearer tokens, held as BLAKE3 hashes so that lookup time does not depend on how much of a
/// presented token matches a real one.
pub struct BearerTokens {
    by_hash: HashMap<[u8; 32], (String, Scope)>,
}

fn token_hash(token: &str) -> [u8; 32] {
    blake3::derive_key("keyledger 2026-12 audit bearer token v1", token.as_bytes())
}

impl BearerTokens {
    /// From a token file.
    ///
    /// # Errors
    /// An entry with an invalid scope, or an empty token.
    pub fn new(file: &TokenFile) -> anyhow::Result<Self> {
        let mut by_hash = HashMap::new();
        for t in &file.tokens {
            anyhow::ensure!(
                !t.token.expose().is_empty() && t.token.expose().len() <= MAX_TOKEN_BYTES,
                "token {:?} is empty or longer than {MAX_TOKEN_BYTES} bytes",
                t.name
            );
            by_hash.insert(token_hash(t.token.expose()), (t.name.clone(), t.scope()?));
        }
        Ok(Self { by_hash })
    }
}

impl Authenticator for BearerTokens {
    fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<Scope, AuthError> {
        let value = headers.get(axum::http::header::AUTHORIZATION).ok_or(AuthError::Missing)?;
        let text = value.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = text.split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Unknown);
        }
        let (name, scope) = self.by_hash.get(&token_hash(token)).ok_or(AuthError::Unknown)?;
        tracing::debug!(token = %name, "audit API caller authenticated");
        Ok(scope.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn tokens_map_to_their_scope_and_strangers_are_refused() {
        let file = TokenFile::generate("http://127.0.0.1:1", &[("dev", "111122223333")]);
        let auth = BearerTokens::new(&file).unwrap();
        let auditor = file.token("auditor").unwrap().token.expose().to_owned();
        let dev = file.token("dev").unwrap().token.expose().to_owned();
        assert_eq!(auth.authenticate(&headers(&format!("Bearer {auditor}"))), Ok(Scope::All));
        assert_eq!(auth.authenticate(&headers(&format!("bearer {dev}"))), Ok(Scope::Account("111122223333".into())));
        assert_eq!(auth.authenticate(&axum::http::HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(auth.authenticate(&headers(&format!("Basic {dev}"))), Err(AuthError::Malformed));
        assert_eq!(auth.authenticate(&headers("Bearer nope")), Err(AuthError::Unknown));
        assert_eq!(auth.authenticate(&headers(&format!("Bearer {}", &dev[..10]))), Err(AuthError::Unknown));
        assert!(!format!("{file:?}").contains(&dev), "Debug never shows a token");
    }

    #[test]
    fn an_entry_must_name_a_role_or_an_account() {
        let mut file = TokenFile::generate("http://127.0.0.1:1", &[]);
        file.tokens[0].role = Some("admin".into());
        assert!(BearerTokens::new(&file).is_err());
        file.tokens[0].role = Some("auditor".into());
        file.tokens[0].account = Some("111122223333".into());
        assert!(BearerTokens::new(&file).is_err());
    }
}
