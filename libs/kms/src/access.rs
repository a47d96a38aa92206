//! Who may do what to a key: its key policy, then its grants (aws-kms-api.md §6.3, §7).
//!
//! [`authorize`] is the one access decision every key operation goes through — management
//! (`decide`), reads (`query`) and cryptography (`crypto_rules`):
//!
//! 1. the key policy is evaluated ([`KeyPolicy::evaluate`]): an explicit `Deny` refuses, even if
//!    a grant would allow (AWS: "an explicit deny in any policy overrides any allow");
//! 2. an `Allow` statement authorizes;
//! 3. otherwise a grant on the key that names the caller as grantee, lists the operation and
//!    whose encryption-context constraint the request meets authorizes;
//! 4. otherwise `AccessDeniedException` in AWS's words.
//!
//! The returned [`Authorization`] names the deciding statement or grant; the audit record of
//! the request keeps it (`UsageRecordV1::authorized_by`), and a refusal names the statement
//! that denied it the same way.
//!
//! **Without IAM** (issue #6): the account root principal (`arn:aws:iam::<account>:root`) in a
//! policy or as a grantee stands for every authenticated principal of that account. The
//! default key policy therefore lets every principal of the owning account use and manage the
//! key. Keys created before key policies existed, and keys created without `Policy`, have the
//! default key policy; it is evaluated without being parsed ([`default_policy_allows`] is
//! tested to agree with the parsed document).

use std::collections::BTreeMap;
use std::sync::Arc;

use keyledger_events::{codes, GrantConstraintV1, GrantCreatedV1};
use serde::{Deserialize, Serialize};

use crate::api::EncryptionContext;
use crate::decide::Caller;
use crate::error::{ErrorKind, KmsError};
use crate::ids::Realm;
use crate::policy::{Decision, KeyPolicy, RequestContext, StatementId};
use crate::state::Key;

/// The `Sid` of the default key policy's only statement (AWS KMS Developer Guide, "Default key
/// policy").
pub const DEFAULT_POLICY_SID: &str = "Enable IAM User Permissions";

/// The only policy name a key has (AWS API reference, GetKeyPolicy `PolicyName`).
pub const POLICY_NAME: &str = "default";

/// A key policy as the projection holds it: the document exactly as it was put, and its parsed
/// form. Serialized (state digest, snapshots) as the text alone.
#[derive(Debug, PartialEq)]
pub struct StoredPolicy {
    text: String,
    /// `None` when a stored document no longer parses (a later build became stricter): such a
    /// policy allows nothing until PutKeyPolicy replaces it — fail closed, never open.
    parsed: Option<KeyPolicy>,
}

impl StoredPolicy {
    /// Wraps a stored document, parsing it.
    pub fn new(text: String) -> Self {
        let parsed = KeyPolicy::parse(&text).ok();
        Self { text, parsed }
    }

    /// The document as it was put.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl Eq for StoredPolicy {}

/// A key's policy: the default key policy, or a document given to CreateKey or PutKeyPolicy.
/// Keys share one allocation per document (8 bytes per key for the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySlot(Option<Arc<StoredPolicy>>);

impl PolicySlot {
    /// A key with the default key policy.
    pub fn default_policy() -> Self {
        Self(None)
    }

    /// A key with the document `text`.
    pub fn custom(text: String) -> Self {
        Self(Some(Arc::new(StoredPolicy::new(text))))
    }

    /// The custom document, or `None` for the default key policy.
    pub fn custom_policy(&self) -> Option<&StoredPolicy> {
        self.0.as_deref()
    }

    /// The document GetKeyPolicy returns (the default policy pretty-printed, as AWS does).
    pub fn text(&self, realm: &Realm, account: &str) -> String {
        match &self.0 {
            Some(p) => p.text.clone(),
            None => crate::policy::default_key_policy(realm, account),
        }
    }

    /// Evaluates the policy for `ctx`; `key_account` is the owning account (whose root the
    /// default policy names).
    pub fn evaluate(&self, key_account: &str, ctx: &RequestContext) -> Decision {
        match &self.0 {
            None => default_policy_allows(key_account, ctx),
            Some(p) => match &p.parsed {
                Some(policy) => policy.evaluate(ctx),
                None => Decision::ImplicitDeny,
            },
        }
    }
}

impl Serialize for PolicySlot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().map(|p| p.text.as_str()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PolicySlot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<String>::deserialize(d)? {
            None => PolicySlot::default_policy(),
            Some(text) => PolicySlot::custom(text),
        })
    }
}

/// The default key policy's decision without parsing it: its one statement allows `kms:*` on
/// `*` to the owning account's root, which in Keyledger is every principal of that account.
pub fn default_policy_allows(key_account: &str, ctx: &RequestContext) -> Decision {
    if ctx.principal_account == key_account {
        Decision::Allow { statement: StatementId::Sid(DEFAULT_POLICY_SID.to_owned()) }
    } else {
        Decision::ImplicitDeny
    }
}

/// Condition keys Keyledger's requests carry (case-insensitive; `kms:EncryptionContext:<key>`
/// by prefix). A key policy whose conditions test any other key is refused by CreateKey and
/// PutKeyPolicy ([`check_enforceable`]): such a condition could never be met here (the key is
/// never present), so a `Deny` on it would silently never apply.
pub const SUPPORTED_CONDITION_KEYS: &[&str] = &[
    "kms:CallerAccount",
    "aws:PrincipalAccount",
    "aws:PrincipalArn",
    "kms:EncryptionContextKeys",
    "kms:GrantOperations",
    "kms:GranteePrincipal",
    "kms:RetiringPrincipal",
    "kms:GrantConstraintType",
    "kms:GrantIsForAWSResource",
    "kms:BypassPolicyLockoutSafetyCheck",
    "aws:CurrentTime",
    "aws:EpochTime",
];

/// Refuses a policy with a condition on a key Keyledger's requests never carry
/// (`aws:SecureTransport`, `aws:SourceIp`, `kms:ViaService`, a misspelt key, …):
/// `MalformedPolicyDocumentException` naming the statement and the key. Stricter than AWS, on
/// purpose: a `Deny` that can never match protects nothing.
pub fn check_enforceable(policy: &KeyPolicy) -> Result<(), KmsError> {
    for s in &policy.statements {
        for c in &s.conditions {
            let known = SUPPORTED_CONDITION_KEYS.iter().any(|k| k.eq_ignore_ascii_case(&c.key))
                || c.key.to_ascii_lowercase().starts_with("kms:encryptioncontext:");
            if !known {
                return Err(KmsError::new(
                    ErrorKind::MalformedPolicyDocument,
                    format!(
                        "{}: condition key {} is never present in Keyledger requests, so the condition could never \
                         be met; Keyledger refuses it rather than ignore it (supported: {}, kms:EncryptionContext:<key>).",
                        s.id,
                        crate::error::shorten(&c.key),
                        SUPPORTED_CONDITION_KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// AWS `GrantOperation`s (API reference, CreateGrant `Operations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[allow(missing_docs)] // each variant is the AWS grant operation of the same name
pub enum GrantOperation {
    Decrypt,
    Encrypt,
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    ReEncryptFrom,
    ReEncryptTo,
    Sign,
    Verify,
    GetPublicKey,
    CreateGrant,
    RetireGrant,
    DescribeKey,
    GenerateDataKeyPair,
    GenerateDataKeyPairWithoutPlaintext,
    GenerateMac,
    VerifyMac,
    DeriveSharedSecret,
}

impl GrantOperation {
    /// Every grant operation, in the API model's order.
    pub const ALL: [GrantOperation; 17] = [
        GrantOperation::Decrypt,
        GrantOperation::Encrypt,
        GrantOperation::GenerateDataKey,
        GrantOperation::GenerateDataKeyWithoutPlaintext,
        GrantOperation::ReEncryptFrom,
        GrantOperation::ReEncryptTo,
        GrantOperation::Sign,
        GrantOperation::Verify,
        GrantOperation::GetPublicKey,
        GrantOperation::CreateGrant,
        GrantOperation::RetireGrant,
        GrantOperation::DescribeKey,
        GrantOperation::GenerateDataKeyPair,
        GrantOperation::GenerateDataKeyPairWithoutPlaintext,
        GrantOperation::GenerateMac,
        GrantOperation::VerifyMac,
        GrantOperation::DeriveSharedSecret,
    ];

    /// The AWS name, e.g. `"ReEncryptFrom"`.
    pub fn name(self) -> &'static str {
        use GrantOperation::*;
        match self {
            Decrypt => "Decrypt",
            Encrypt => "Encrypt",
            GenerateDataKey => "GenerateDataKey",
            GenerateDataKeyWithoutPlaintext => "GenerateDataKeyWithoutPlaintext",
            ReEncryptFrom => "ReEncryptFrom",
            ReEncryptTo => "ReEncryptTo",
            Sign => "Sign",
            Verify => "Verify",
            GetPublicKey => "GetPublicKey",
            CreateGrant => "CreateGrant",
            RetireGrant => "RetireGrant",
            DescribeKey => "DescribeKey",
            GenerateDataKeyPair => "GenerateDataKeyPair",
            GenerateDataKeyPairWithoutPlaintext => "GenerateDataKeyPairWithoutPlaintext",
            GenerateMac => "GenerateMac",
            VerifyMac => "VerifyMac",
            DeriveSharedSecret => "DeriveSharedSecret",
        }
    }

    /// The operation of this exact AWS name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    /// The stored code ([`codes::grant_operation`]).
    pub fn code(self) -> u16 {
        Self::ALL.iter().position(|o| *o == self).expect("in ALL") as u16 + 1
    }

    /// The operation of a stored code.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// Whether a symmetric encryption key supports it (others → ValidationException at
    /// CreateGrant, aws-kms-api.md §7).
    pub fn valid_for_symmetric_key(self) -> bool {
        use GrantOperation::*;
        matches!(
            self,
            Decrypt
                | Encrypt
                | GenerateDataKey
                | GenerateDataKeyWithoutPlaintext
                | ReEncryptFrom
                | ReEncryptTo
                | CreateGrant
                | RetireGrant
                | DescribeKey
        )
    }

    /// Whether the operation takes an encryption context (where a grant's constraint bites).
    pub fn takes_encryption_context(self) -> bool {
        use GrantOperation::*;
        matches!(
            self,
            Decrypt
                | Encrypt
                | GenerateDataKey
                | GenerateDataKeyWithoutPlaintext
                | ReEncryptFrom
                | ReEncryptTo
                | GenerateDataKeyPair
                | GenerateDataKeyPairWithoutPlaintext
        )
    }
}

/// The encryption-context constraint of a grant (AWS `GrantConstraints`). In constraints,
/// context keys compare case-insensitively and values case-sensitively (AWS KMS Developer
/// Guide, "Using grant constraints"; aws-kms-api.md §7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrantConstraint {
    /// `EncryptionContextEquals`: the request's context has exactly these pairs.
    Equals(Vec<(String, String)>),
    /// `EncryptionContextSubset`: the request's context has at least these pairs.
    Subset(Vec<(String, String)>),
}

impl GrantConstraint {
    /// Whether a request with context `ec` meets the constraint.
    pub fn allows(&self, ec: &EncryptionContext) -> bool {
        let has = |k: &str, v: &str| ec.iter().any(|(ek, ev)| ek.to_lowercase() == k.to_lowercase() && ev == v);
        match self {
            GrantConstraint::Equals(pairs) => pairs.len() == ec.len() && pairs.iter().all(|(k, v)| has(k, v)),
            GrantConstraint::Subset(pairs) => pairs.iter().all(|(k, v)| has(k, v)),
        }
    }

    /// Whether every request this constraint allows, `parent` allows too (grant chaining:
    /// a grant created through a grant may not be looser than its parent).
    pub fn at_least_as_strict_as(&self, parent: &GrantConstraint) -> bool {
        let covers = |mine: &[(String, String)], theirs: &[(String, String)]| {
            theirs.iter().all(|(k, v)| mine.iter().any(|(mk, mv)| mk.to_lowercase() == k.to_lowercase() && mv == v))
        };
        match (self, parent) {
            (GrantConstraint::Equals(a), GrantConstraint::Equals(b)) => {
                a.len() == b.len() && covers(a, b) && covers(b, a)
            }
            (GrantConstraint::Equals(a), GrantConstraint::Subset(b))
            | (GrantConstraint::Subset(a), GrantConstraint::Subset(b)) => covers(a, b),
            (GrantConstraint::Subset(_), GrantConstraint::Equals(_)) => false,
        }
    }

    /// The AWS JSON form (`{"EncryptionContextEquals": {...}}`).
    pub fn to_json(&self) -> serde_json::Value {
        let (member, pairs) = match self {
            GrantConstraint::Equals(p) => ("EncryptionContextEquals", p),
            GrantConstraint::Subset(p) => ("EncryptionContextSubset", p),
        };
        let map: serde_json::Map<String, serde_json::Value> =
            pairs.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        serde_json::json!({ member: map })
    }

    /// The stored form.
    pub fn to_event(&self) -> GrantConstraintV1 {
        let (kind, pairs) = match self {
            GrantConstraint::Equals(p) => (codes::grant_constraint::EQUALS, p),
            GrantConstraint::Subset(p) => (codes::grant_constraint::SUBSET, p),
        };
        GrantConstraintV1 {
            kind,
            pairs: pairs
                .iter()
                .map(|(k, v)| keyledger_events::ContextPairV1 { key: k.clone(), value: v.clone() })
                .collect(),
        }
    }

    /// From the stored form (`None` for an unknown kind code).
    pub fn from_event(c: &GrantConstraintV1) -> Option<Self> {
        let pairs = c.pairs.iter().map(|p| (p.key.clone(), p.value.clone())).collect();
        match c.kind {
            codes::grant_constraint::EQUALS => Some(GrantConstraint::Equals(pairs)),
            codes::grant_constraint::SUBSET => Some(GrantConstraint::Subset(pairs)),
            _ => None,
        }
    }
}

/// A live grant on a key, as the projection holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `GrantId`, 32 bytes (64 lowercase hex characters in the API).
    pub id: [u8; 32],
    /// `Name` (empty when none).
    pub name: String,
    /// `GranteePrincipal`.
    pub grantee: String,
    /// `RetiringPrincipal` (empty when none).
    pub retiring: String,
    /// `Operations`, ascending, unique.
    pub operations: Vec<GrantOperation>,
    /// `Constraints`.
    pub constraint: Option<GrantConstraint>,
    /// The account that created the grant, 12 digits.
    pub issuing_account: String,
    /// `CreationDate`, ms since the epoch (writer clock).
    pub created_unix_ms: u64,
    /// Control stream sequence of the GrantCreated event (what a grant token waits for).
    pub created_seq: u64,
}

impl Grant {
    /// The projection's grant from its event (`None` if a code is unknown).
    pub fn from_event(b: &GrantCreatedV1, created_unix_ms: u64, created_seq: u64) -> Option<Self> {
        let operations = b.operations.iter().map(|c| GrantOperation::from_code(*c)).collect::<Option<Vec<_>>>()?;
        let constraint = match &b.constraint {
            None => None,
            Some(c) => Some(GrantConstraint::from_event(c)?),
        };
        Some(Self {
            id: b.grant_id,
            name: b.name.clone(),
            grantee: b.grantee_principal.clone(),
            retiring: b.retiring_principal.clone(),
            operations,
            constraint,
            issuing_account: b.issuing_account.clone(),
            created_unix_ms,
            created_seq,
        })
    }

    /// The grant id as the API shows it: 64 lowercase hex characters.
    pub fn id_hex(&self) -> String {
        hex_lower(&self.id)
    }

    /// Whether `caller` is the grantee: the exact principal ARN, or the root of the caller's
    /// account (which stands for every principal of it).
    pub fn names_grantee(&self, realm: &Realm, caller: &Caller) -> bool {
        principal_matches(realm, &self.grantee, caller)
    }

    /// Whether this grant lets `caller` do `op` with encryption context `ec` (`None` when the
    /// operation takes none; then a constraint does not apply, aws-kms-api.md §7).
    pub fn allows(&self, realm: &Realm, caller: &Caller, op: GrantOperation, ec: Option<&EncryptionContext>) -> bool {
        if !self.operations.contains(&op) || !self.names_grantee(realm, caller) {
            return false;
        }
        match (&self.constraint, op.takes_encryption_context()) {
            (Some(c), true) => c.allows(ec.unwrap_or(&EncryptionContext::new())),
            _ => true,
        }
    }

    /// Whether `caller` may retire it (RetireGrant): the retiring principal; the grantee when
    /// the grant lists RetireGrant; or a principal of the account that created it (AWS API
    /// reference, RetireGrant).
    pub fn retirable_by(&self, realm: &Realm, caller: &Caller) -> bool {
        (!self.retiring.is_empty() && principal_matches(realm, &self.retiring, caller))
            || (self.operations.contains(&GrantOperation::RetireGrant) && self.names_grantee(realm, caller))
            || caller.account == self.issuing_account
    }
}

/// Whether a principal ARN as written in a grant names `caller`: the caller's own ARN, or its
/// account's root.
pub fn principal_matches(realm: &Realm, written: &str, caller: &Caller) -> bool {
    written == caller.principal.arn || written == format!("arn:{}:iam::{}:root", realm.partition, caller.account)
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What allowed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// A key policy statement.
    KeyPolicy(StatementId),
    /// A grant (its id).
    Grant([u8; 32]),
    /// An operation whose permission is not evaluated against a key policy (IAM-only in AWS:
    /// CreateKey, ListKeys, ListAliases, GenerateRandom, ListRetirableGrants): any
    /// authenticated principal may call it for its own account.
    OwnAccount,
}

impl Authorization {
    /// The audit record's `authorized_by` text: `key-policy:<Sid or #index>`, `grant:<hex id>`
    /// or `account`.
    pub fn audit_text(&self) -> String {
        match self {
            Authorization::KeyPolicy(StatementId::Sid(s)) => format!("key-policy:{s}"),
            Authorization::KeyPolicy(StatementId::Index(i)) => format!("key-policy:#{i}"),
            Authorization::Grant(id) => format!("grant:{}", hex_lower(id)),
            Authorization::OwnAccount => "account".to_owned(),
        }
    }
}

/// One access question: may `caller` perform `action` on a key, with this request's context?
#[derive(Debug, Clone)]
pub struct Access<'a> {
    /// Who asks.
    pub caller: &'a Caller,
    /// The policy action without the `kms:` prefix: the operation's name, or `ReEncryptFrom` /
    /// `ReEncryptTo` for the two keys of ReEncrypt.
    pub action: &'static str,
    /// The request's encryption context, for operations that take one.
    pub encryption_context: Option<&'a EncryptionContext>,
    /// CreateGrant: the operations of the requested grant (`kms:GrantOperations`).
    pub grant_operations: Vec<String>,
    /// Extra condition keys of the request (`kms:GranteePrincipal`, …), by name.
    pub other: BTreeMap<String, Vec<String>>,
    /// PutKeyPolicy's `BypassPolicyLockoutSafetyCheck` (`kms:BypassPolicyLockoutSafetyCheck`).
    pub bypass_policy_lockout_safety_check: Option<bool>,
    /// The request's time (writer or worker clock), ms since the epoch.
    pub now_unix_ms: u64,
}

impl<'a> Access<'a> {
    /// A question about `action` with no context or extra keys.
    pub fn new(caller: &'a Caller, action: &'static str, now_unix_ms: u64) -> Self {
        Self {
            caller,
            action,
            encryption_context: None,
            grant_operations: Vec::new(),
            other: BTreeMap::new(),
            bypass_policy_lockout_safety_check: None,
            now_unix_ms,
        }
    }

    /// CreateGrant's question (AWS API reference, CreateGrant; aws-kms-api.md §6.4): the
    /// condition keys `kms:GrantOperations`, `kms:GranteePrincipal`, `kms:RetiringPrincipal`,
    /// `kms:GrantConstraintType` and `kms:GrantIsForAWSResource` (always false here). keyd asks
    /// it before a grant exists; the audit index asks it again from the GrantCreated event.
    pub fn create_grant(
        caller: &'a Caller,
        now_unix_ms: u64,
        operations: &[GrantOperation],
        grantee: &str,
        retiring: Option<&str>,
        constraint: Option<&GrantConstraint>,
    ) -> Self {
        let mut access = Self::new(caller, "CreateGrant", now_unix_ms);
        access.grant_operations = operations.iter().map(|o| o.name().to_owned()).collect();
        access.other.insert("kms:GranteePrincipal".into(), vec![grantee.to_owned()]);
        if let Some(r) = retiring.filter(|r| !r.is_empty()) {
            access.other.insert("kms:RetiringPrincipal".into(), vec![r.to_owned()]);
        }
        if let Some(c) = constraint {
            let kind = match c {
                GrantConstraint::Equals(_) => "EncryptionContextEquals",
                GrantConstraint::Subset(_) => "EncryptionContextSubset",
            };
            access.other.insert("kms:GrantConstraintType".into(), vec![kind.into()]);
        }
        access.other.insert("kms:GrantIsForAWSResource".into(), vec!["false".into()]);
        access
    }

    /// The same question with the request's encryption context.
    pub fn with_context(mut self, ec: Option<&'a EncryptionContext>) -> Self {
        self.encryption_context = ec;
        self
    }

    /// The policy request context for key `key_arn`.
    pub fn request_context(&self, key_arn: &str) -> RequestContext {
        let mut ctx = RequestContext::for_caller(self.caller, self.action, key_arn, self.now_unix_ms);
        if let Some(ec) = self.encryption_context {
            ctx.encryption_context = ec.clone();
        }
        ctx.grant_operations = self.grant_operations.clone();
        ctx.other = self.other.clone();
        ctx.bypass_policy_lockout_safety_check = self.bypass_policy_lockout_safety_check;
        ctx
    }
}

/// The AccessDenied refusal in AWS's words; `denied_by` names the statement of an explicit
/// deny (kept in the error for the audit record, never in the message beyond AWS's text).
pub fn access_denied(caller: &Caller, action: &str, resource_arn: &str, denied_by: Option<&StatementId>) -> KmsError {
    let principal = &caller.principal.arn;
    match denied_by {
        Some(statement) => KmsError::new(
            ErrorKind::AccessDenied,
            format!(
                "User: {principal} is not authorized to perform: kms:{action} on resource: {resource_arn} \
                 with an explicit deny in a resource-based policy"
            ),
        )
        .decided_by(format!("deny:{}", Authorization::KeyPolicy(statement.clone()).audit_text())),
        None => KmsError::access_denied(principal, action, resource_arn).decided_by("no-allow".to_owned()),
    }
}

/// The access decision for `access` on `key` (module docs): the key policy, then the grants.
///
/// Errors: `AccessDeniedException` (AWS's message; it names the caller, the action and the key
/// ARN the caller used, nothing else).
pub fn authorize(realm: &Realm, key: &Key, access: &Access<'_>) -> Result<Authorization, KmsError> {
    // The default key policy allows every principal of the owning account: decided without
    // building the request context (the hot path of every Encrypt on such a key).
    if key.policy.custom_policy().is_none() && access.caller.account == key.account {
        return Ok(Authorization::KeyPolicy(StatementId::Sid(DEFAULT_POLICY_SID.to_owned())));
    }
    let arn = key.arn(realm);
    let ctx = access.request_context(&arn);
    match key.policy.evaluate(&key.account, &ctx) {
        Decision::Allow { statement } => return Ok(Authorization::KeyPolicy(statement)),
        Decision::ExplicitDeny { statement } => {
            return Err(access_denied(access.caller, access.action, &arn, Some(&statement)))
        }
        Decision::ImplicitDeny => {}
    }
    if let Some(op) = GrantOperation::parse(access.action) {
        if let Some(g) = key.grants.iter().find(|g| g.allows(realm, access.caller, op, access.encryption_context)) {
            return Ok(Authorization::Grant(g.id));
        }
    }
    Err(access_denied(access.caller, access.action, &arn, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_operation_codes_are_the_stored_codes() {
        use codes::grant_operation as c;
        let stored = [
            (GrantOperation::Decrypt, c::DECRYPT),
            (GrantOperation::Encrypt, c::ENCRYPT),
            (GrantOperation::GenerateDataKey, c::GENERATE_DATA_KEY),
            (GrantOperation::GenerateDataKeyWithoutPlaintext, c::GENERATE_DATA_KEY_WITHOUT_PLAINTEXT),
            (GrantOperation::ReEncryptFrom, c::RE_ENCRYPT_FROM),
            (GrantOperation::ReEncryptTo, c::RE_ENCRYPT_TO),
            (GrantOperation::Sign, c::SIGN),
            (GrantOperation::Verify, c::VERIFY),
            (GrantOperation::GetPublicKey, c::GET_PUBLIC_KEY),
            (GrantOperation::CreateGrant, c::CREATE_GRANT),
            (GrantOperation::RetireGrant, c::RETIRE_GRANT),
            (GrantOperation::DescribeKey, c::DESCRIBE_KEY),
            (GrantOperation::GenerateDataKeyPair, c::GENERATE_DATA_KEY_PAIR),
            (GrantOperation::GenerateDataKeyPairWithoutPlaintext, c::GENERATE_DATA_KEY_PAIR_WITHOUT_PLAINTEXT),
            (GrantOperation::GenerateMac, c::GENERATE_MAC),
            (GrantOperation::VerifyMac, c::VERIFY_MAC),
            (GrantOperation::DeriveSharedSecret, c::DERIVE_SHARED_SECRET),
        ];
        assert_eq!(stored.len(), GrantOperation::ALL.len());
        for (op, code) in stored {
            assert_eq!(op.code(), code, "{op:?}");
            assert_eq!(GrantOperation::from_code(code), Some(op));
        }
        assert_eq!(GrantOperation::from_code(0), None);
        assert_eq!(GrantOperation::from_code(18), None);
    }
}
