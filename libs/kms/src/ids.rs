//! Identifiers: the realm (partition + region), key ids, ARNs, and how a `KeyId` request member
//! is resolved to a key or an alias (aws-kms-api.md §1.4).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::KmsError;

/// Where this service runs, as AWS names it in ARNs. Configuration; defaults to partition
/// `aws`, region `us-east-1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Realm {
    /// ARN partition, e.g. `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: String,
    /// Region, e.g. `us-east-1`.
    pub region: String,
}

impl Default for Realm {
    fn default() -> Self {
        Self { partition: "aws".to_owned(), region: "us-east-1".to_owned() }
    }
}

impl Realm {
    /// `arn:<partition>:kms:<region>:<account>:key/<key id>`
    pub fn key_arn(&self, account: &str, key_id: &KeyId) -> String {
        format!("arn:{}:kms:{}:{}:key/{}", self.partition, self.region, account, key_id)
    }

    /// `arn:<partition>:kms:<region>:<account>:<alias name>`; `alias_name` includes its
    /// `alias/` prefix.
    pub fn alias_arn(&self, account: &str, alias_name: &str) -> String {
        format!("arn:{}:kms:{}:{}:{}", self.partition, self.region, account, alias_name)
    }
}

/// A KMS key id: 16 bytes, shown as a lowercase hyphenated UUID
/// (`1234abcd-12ab-34cd-56ef-1234567890ab`). Fresh ids are UUID v4 made by the shell
/// (`KeyId::from_uuid(Uuid::new_v4())`); this crate never makes one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyId([u8; 16]);

impl KeyId {
    /// The id with these 16 bytes (the `target_key_id` form used in events).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id of a UUID.
    pub fn from_uuid(uuid: uuid::Uuid) -> Self {
        Self(*uuid.as_bytes())
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the canonical text form only: 36 characters, lowercase hex, hyphens at
    /// positions 8, 13, 18 and 23. Anything else (upper case, braces, no hyphens, `mrk-` ids)
    /// is `None`; callers answer `NotFoundException: Invalid keyId '<x>'`.
    pub fn parse(text: &str) -> Option<KeyId> {
        let b = text.as_bytes();
        if b.len() != 36 {
            return None;
        }
        for (i, c) in b.iter().enumerate() {
            let ok = match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
            };
            if !ok {
                return None;
            }
        }
        uuid::Uuid::parse_str(text).ok().map(KeyId::from_uuid)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KmsError;
    /// [`KeyId::parse`], failing with `NotFoundException: Invalid keyId '<x>'`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyId::parse(s).ok_or_else(|| KmsError::invalid_key_id(s))
    }
}

impl From<uuid::Uuid> for KeyId {
    fn from(u: uuid::Uuid) -> Self {
        KeyId::from_uuid(u)
    }
}

/// Whether `s` is an AWS account id: exactly 12 ASCII digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// What a `KeyId`-style request member names, with the account it lives in (the caller's for
/// bare ids and alias names, the ARN's otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A key, by id or key ARN.
    Key {
        /// Owning account (12 digits).
        account: String,
        /// The key id.
        key_id: KeyId,
    },
    /// An alias, by alias name or alias ARN.
    Alias {
        /// Owning account (12 digits).
        account: String,
        /// Full alias name including `alias/`.
        alias_name: String,
    },
}

impl KeyRef {
    /// The account the reference points into.
    pub fn account(&self) -> &str {
        match self {
            KeyRef::Key { account, .. } | KeyRef::Alias { account, .. } => account,
        }
    }
}

/// Resolves the text form of a key reference (aws-kms-api.md §1.4).
///
/// Accepted forms: a bare key id and a key ARN always; an alias name (`alias/x`) and an alias
/// ARN only when `allow_alias` (crypto operations and DescribeKey). A bare id or alias name is
/// in `caller_account`; an ARN names its own account (cross-account use is then an access
/// question, not a parsing one).
///
/// Errors (checked in this order):
/// - `NotFoundException: Invalid keyId '<x>'` — not an ARN, not an alias, not a canonical key id
///   (also for a malformed id inside a key ARN);
/// - `InvalidArnException` — an `arn:` string that is not `arn:<partition>:kms:<region>:<12
///   digits>:key/<id>|alias/<name>`, or whose partition is not ours;
/// - `InvalidArnException: Key Aliases are not supported for this operation.` — alias form
///   where `allow_alias` is false;
/// - `NotFoundException: Invalid arn <region>` — a well-formed ARN of another region.
pub fn parse_key_ref(input: &str, realm: &Realm, caller_account: &str, allow_alias: bool) -> Result<KeyRef, KmsError> {
    if let Some(rest) = input.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts[..] else {
            return Err(KmsError::invalid_arn(input));
        };
        if service != "kms" || !is_account_id(account) || region.is_empty() {
            return Err(KmsError::invalid_arn(input));
        }
        let target = if let Some(id) = resource.strip_prefix("key/") {
            let key_id = KeyId::parse(id).ok_or_else(|| KmsError::invalid_key_id(id))?;
            KeyRef::Key { account: account.to_owned(), key_id }
        } else if resource.starts_with("alias/") {
            if !allow_alias {
                return Err(KmsError::aliases_not_supported());
            }
            KeyRef::Alias { account: account.to_owned(), alias_name: resource.to_owned() }
        } else {
            return Err(KmsError::invalid_arn(input));
        };
        if partition != realm.partition {
            return Err(KmsError::invalid_arn(input));
        }
        if region != realm.region {
            return Err(KmsError::wrong_region_arn(region));
        }
        return Ok(target);
    }
    if input.starts_with("alias/") {
        if !allow_alias {
            return Err(KmsError::aliases_not_supported());
        }
        return Ok(KeyRef::Alias { account: caller_account.to_owned(), alias_name: input.to_owned() });
    }
    let key_id = KeyId::parse(input).ok_or_else(|| KmsError::invalid_key_id(input))?;
    Ok(KeyRef::Key { account: caller_account.to_owned(), key_id })
}
