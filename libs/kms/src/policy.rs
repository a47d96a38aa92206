//! Key policies: the AWS policy language as KMS reads it, parsed and evaluated as pure
//! functions (aws-kms-api.md §6; IAM User Guide, "IAM JSON policy element reference" and
//! "IAM JSON policy elements: Condition operators"; AWS KMS Developer Guide, "Key policies in
//! AWS KMS", "Default key policy", "Condition keys for AWS KMS").
//!
//! - [`KeyPolicy::parse`] checks a document (size, characters, grammar) and keeps it in a form
//!   that [`KeyPolicy::evaluate`] can test quickly;
//! - [`RequestContext`] is everything a decision looks at: principal, account, action, key,
//!   encryption context, grant operations, the request's time and any other condition key;
//! - [`KeyPolicy::evaluate`] answers [`Decision`]: an explicit `Deny` wins over any `Allow`,
//!   nothing allowed means [`Decision::ImplicitDeny`], and the deciding statement is named so the
//!   audit record can say which statement allowed or refused the request;
//! - [`default_key_policy`] is the policy CreateKey installs when none is given (§6.2);
//! - [`lockout_check`] is the policy lockout safety check of CreateKey/PutKeyPolicy (§6.5).
//!
//! **Principals without IAM.** Keyledger has no IAM: no identity policies to delegate through.
//! Issue #6 fixes the rule: *"`arn:aws:iam::<account>:root` and the bare 12-digit account id
//! stand for every authenticated principal of that account; `*` for everyone; a specific
//! principal ARN matches that principal exactly."* So where AWS reads an account principal as
//! "the account, which may delegate via IAM" (§6.3), Keyledger reads it as "every principal of
//! the account", which is what an account with an allow-everything IAM policy gets in AWS.
//! Principals are matched against Keyledger's canonical ARNs (`PrincipalV1::arn`, e.g.
//! `arn:aws:iam::111122223333:user/dev`). `{"Service": …}` principals parse but never match: no
//! Keyledger caller is an AWS service.
//!
//! Deliberate differences from AWS, all stricter:
//! - a statement without `Action`/`NotAction` or `Resource`/`NotResource` is refused
//!   (AWS accepts it and ignores it; aws-kms-api.md §6.1 recommends refusing);
//! - principals are checked for form only (Keyledger has no directory of principals);
//! - condition operators outside the String/Numeric/Date/Bool/Null/Arn families (`IpAddress`,
//!   `BinaryEquals`, …) are refused rather than silently never matching.
//!
//! [`crate::access::authorize`] applies it to every key operation (then the key's grants).
//! Nothing here does I/O or reads a clock: the request's time comes in
//! [`RequestContext::now_unix_ms`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::calendar::{civil_from_days, days_from_civil, days_in_month};
use crate::decide::Caller;
use crate::error::{shorten, validation_error, violation, ErrorKind, KmsError, Shown};
use crate::ids::Realm;

/// Largest key policy, in bytes (aws-kms-api.md §12.1: 32 KB, not adjustable). Larger
/// documents are refused with `LimitExceededException` (§5, §6.1).
pub const MAX_POLICY_BYTES: usize = 32_768;

/// The current policy language version (IAM JSON policy reference, "Version").
pub const POLICY_VERSION: &str = "2012-10-17";
/// The legacy policy language version, still accepted.
pub const LEGACY_POLICY_VERSION: &str = "2008-10-17";

/// AWS's message when the caller would lose PutKeyPolicy under the new policy (§6.5).
pub const LOCKOUT_MESSAGE: &str = "The new key policy will not allow you to update the key policy in the future.";

/// AWS's message for a principal it does not accept (§5).
pub const INVALID_PRINCIPALS_MESSAGE: &str = "Policy contains a statement with one or more invalid principals.";

/// A `MalformedPolicyDocumentException` with `message`.
fn malformed(message: impl Into<String>) -> KmsError {
    KmsError::new(ErrorKind::MalformedPolicyDocument, message)
}

/// Which statement of a policy: its `Sid` when it has a non-empty one, else its position
/// (0-based). Audit records name the statement that allowed or denied a request with this.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatementId {
    /// The statement's `Sid`.
    Sid(String),
    /// The statement's index in `Statement` (0-based), for statements without a `Sid`.
    Index(usize),
}

impl fmt::Display for StatementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatementId::Sid(s) => write!(f, "statement '{}'", shorten(s)),
            StatementId::Index(i) => write!(f, "statement #{i}"),
        }
    }
}

/// The outcome of evaluating a key policy (IAM User Guide, "Policy evaluation logic": an
/// explicit deny overrides any allow; without an allow the request is implicitly denied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Some statement allows the request and none denies it; `statement` is the first allowing
    /// statement in document order.
    Allow {
        /// The allowing statement.
        statement: StatementId,
    },
    /// A `Deny` statement applies; `statement` is the first one in document order.
    ExplicitDeny {
        /// The denying statement.
        statement: StatementId,
    },
    /// No statement applies.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// `Effect` of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `"Allow"`
    Allow,
    /// `"Deny"`
    Deny,
}

/// One principal named in `Principal` or `NotPrincipal` (IAM reference, "Principal").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `"*"` or `{"AWS": "*"}`: everyone.
    Everyone,
    /// `arn:<partition>:iam::<account>:root` or the bare account id: every principal of the
    /// account (issue #6).
    Account(String),
    /// A specific principal ARN (user, role, assumed-role session): that principal only.
    Arn(String),
    /// `{"Service": "<name>"}`: an AWS service principal; never matches a Keyledger caller.
    Service(String),
}

impl Principal {
    fn matches(&self, ctx: &RequestContext) -> bool {
        match self {
            Principal::Everyone => true,
            Principal::Account(a) => *a == ctx.principal_account,
            Principal::Arn(arn) => *arn == ctx.principal_arn,
            Principal::Service(_) => false,
        }
    }
}

/// A list that applies either to what it names or to everything else (`Action`/`NotAction`,
/// `Resource`/`NotResource`, `Principal`/`NotPrincipal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applies<T> {
    /// The element (`Action`, `Resource`, `Principal`): applies to the listed items.
    To(Vec<T>),
    /// The `Not…` element: applies to everything except the listed items.
    ToAllBut(Vec<T>),
}

/// The set qualifier of a condition operator (IAM User Guide, "Single-valued vs. multivalued
/// context keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetQualifier {
    /// No qualifier: any request value may match (single-valued keys have one value).
    None,
    /// `ForAnyValue:` at least one request value matches; false when the key is absent.
    ForAnyValue,
    /// `ForAllValues:` every request value matches; true when the key is absent.
    ForAllValues,
}

/// The comparison family and variant of a condition operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `StringEquals` / `StringNotEquals`: exact, case-sensitive.
    StringEquals,
    /// `StringEqualsIgnoreCase` / `StringNotEqualsIgnoreCase`.
    StringEqualsIgnoreCase,
    /// `StringLike` / `StringNotLike`: case-sensitive, `*` and `?` wildcards.
    StringLike,
    /// `NumericEquals` / `NumericNotEquals`.
    NumericEquals,
    /// `NumericLessThan`
    NumericLessThan,
    /// `NumericLessThanEquals`
    NumericLessThanEquals,
    /// `NumericGreaterThan`
    NumericGreaterThan,
    /// `NumericGreaterThanEquals`
    NumericGreaterThanEquals,
    /// `DateEquals` / `DateNotEquals`.
    DateEquals,
    /// `DateLessThan`
    DateLessThan,
    /// `DateLessThanEquals`
    DateLessThanEquals,
    /// `DateGreaterThan`
    DateGreaterThan,
    /// `DateGreaterThanEquals`
    DateGreaterThanEquals,
    /// `Bool`
    Bool,
    /// `ArnEquals`/`ArnLike` and their negations (both match with wildcards, case-sensitively).
    ArnLike,
    /// `Null`: `true` means the key must be absent, `false` that it must be present.
    Null,
}

/// A parsed condition operator such as `ForAnyValue:StringNotLikeIfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator {
    /// `ForAnyValue:` / `ForAllValues:` or none.
    pub set: SetQualifier,
    /// The comparison.
    pub comparison: Comparison,
    /// The `…Not…` form: true when the request value matches none of the policy values.
    pub negated: bool,
    /// The `…IfExists` suffix: true when the key is absent.
    pub if_exists: bool,
}

/// One test of a `Condition` block: operator, condition key and the policy's values.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The operator.
    pub operator: Operator,
    /// The condition key as written (matching is case-insensitive).
    pub key: String,
    /// The values, as strings (numbers and booleans in the JSON are taken as their text).
    pub values: Vec<String>,
    /// Date values pre-parsed to ms since the epoch (Date operators only).
    dates_ms: Vec<i64>,
    /// Numeric values pre-parsed (Numeric operators only).
    numbers: Vec<f64>,
}

/// One policy statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `Sid`, or the statement's index.
    pub id: StatementId,
    /// `Effect`.
    pub effect: Effect,
    /// `Principal` / `NotPrincipal`.
    pub principals: Applies<Principal>,
    /// `Action` / `NotAction` patterns (lower-cased; `*` and `?` wildcards).
    pub actions: Applies<String>,
    /// `Resource` / `NotResource` patterns (`*` means this key).
    pub resources: Applies<String>,
    /// All conditions (ANDed).
    pub conditions: Vec<Condition>,
}

/// A parsed key policy.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPolicy {
    /// `Version` (the legacy version when absent, as IAM does).
    pub version: String,
    /// `Id`, if any.
    pub id: Option<String>,
    /// The statements, in document order.
    pub statements: Vec<Statement>,
}

/// What a policy decision is evaluated against (IAM User Guide, "Request context"; the
/// condition keys of aws-kms-api.md §6.4).
///
/// Built-in keys are answered from the typed fields; every other key from [`Self::other`].
/// Condition key names are case-insensitive (IAM reference, "Condition"); in
/// `kms:EncryptionContext:<key>` the context key is matched case-insensitively too (§4.1,
/// §6.4: "key part case-insensitive"), while values compare as the operator says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestContext {
    /// The caller's canonical principal ARN (`aws:PrincipalArn`).
    pub principal_arn: String,
    /// The caller's account, 12 digits (`kms:CallerAccount`, `aws:PrincipalAccount`).
    pub principal_account: String,
    /// The action, `kms:<Operation>` (matched case-insensitively).
    pub action: String,
    /// The key ARN the request is about.
    pub resource: String,
    /// The request's encryption context (`kms:EncryptionContext:<key>`,
    /// `kms:EncryptionContextKeys`).
    pub encryption_context: BTreeMap<String, String>,
    /// CreateGrant's operations (`kms:GrantOperations`).
    pub grant_operations: Vec<String>,
    /// `kms:ViaService`, when an integrated service calls on the caller's behalf.
    pub via_service: Option<String>,
    /// `aws:SecureTransport`: whether the request arrived over TLS, when known.
    pub secure_transport: Option<bool>,
    /// `kms:BypassPolicyLockoutSafetyCheck` (CreateKey, PutKeyPolicy).
    pub bypass_policy_lockout_safety_check: Option<bool>,
    /// The request's time, ms since the epoch (`aws:CurrentTime`, `aws:EpochTime`).
    pub now_unix_ms: u64,
    /// Any other condition key and its values (one value for single-valued keys). Key names
    /// are compared case-insensitively.
    pub other: BTreeMap<String, Vec<String>>,
}

impl RequestContext {
    /// A context with the required fields and no optional keys.
    pub fn new(
        principal_arn: impl Into<String>,
        principal_account: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
        now_unix_ms: u64,
    ) -> Self {
        Self {
            principal_arn: principal_arn.into(),
            principal_account: principal_account.into(),
            action: action.into(),
            resource: resource.into(),
            now_unix_ms,
            ..Self::default()
        }
    }

    /// The context for `caller` doing `operation` (e.g. `"Encrypt"`) on the key `key_arn`.
    pub fn for_caller(caller: &Caller, operation: &str, key_arn: &str, now_unix_ms: u64) -> Self {
        Self::new(&caller.principal.arn, &caller.account, format!("kms:{operation}"), key_arn, now_unix_ms)
    }

    /// The values of condition key `key` in this request, or `None` when the key is absent
    /// (an empty multi-valued key counts as absent).
    pub fn values(&self, key: &str) -> Option<Vec<String>> {
        let lower = key.to_ascii_lowercase();
        let one = |v: &str| Some(vec![v.to_owned()]);
        let found = match lower.as_str() {
            "kms:calleraccount" | "aws:principalaccount" => one(&self.principal_account),
            "aws:principalarn" => one(&self.principal_arn),
            "kms:encryptioncontextkeys" => Some(self.encryption_context.keys().cloned().collect()),
            "kms:grantoperations" => Some(self.grant_operations.clone()),
            "kms:viaservice" => self.via_service.as_deref().and_then(one),
            "aws:securetransport" => self.secure_transport.map(|b| vec![b.to_string()]),
            "kms:bypasspolicylockoutsafetycheck" => {
                self.bypass_policy_lockout_safety_check.map(|b| vec![b.to_string()])
            }
            "aws:currenttime" => one(&format_iso8601_ms(self.now_unix_ms)),
            "aws:epochtime" => one(&(self.now_unix_ms / 1000).to_string()),
            _ => match lower.strip_prefix("kms:encryptioncontext:") {
                Some(_) => {
                    let wanted = &key["kms:encryptioncontext:".len()..];
                    let v: Vec<String> = self
                        .encryption_context
                        .iter()
                        .filter(|(k, _)| k.to_lowercase() == wanted.to_lowercase())
                        .map(|(_, v)| v.clone())
                        .collect();
                    Some(v)
                }
                None => self.other.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.clone()),
            },
        };
        found.filter(|v| !v.is_empty())
    }
}

impl KeyPolicy {
    /// Parses and checks a key policy document.
    ///
    /// Errors: over [`MAX_POLICY_BYTES`] → `LimitExceededException`; a character outside tab,
    /// LF, CR and U+0020–U+00FF → `ValidationException` (the API model's pattern for
    /// `Policy`); anything else wrong → `MalformedPolicyDocumentException` naming the
    /// statement (Sid or index) and the member.
    pub fn parse(text: &str) -> Result<KeyPolicy, KmsError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(KmsError::new(
                ErrorKind::LimitExceeded,
                format!("The key policy is {} bytes; the limit is {MAX_POLICY_BYTES} bytes.", text.len()),
            ));
        }
        if text.chars().any(|c| !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}')) {
            return Err(validation_error(&[violation(
                Shown::Hidden,
                "policy",
                "satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+",
            )]));
        }
        let doc: Value =
            serde_json::from_str(text).map_err(|e| malformed(format!("The policy is not valid JSON: {e}")))?;
        let Value::Object(doc) = doc else {
            return Err(malformed("The policy must be a JSON object."));
        };
        for member in doc.keys() {
            if !matches!(member.as_str(), "Version" | "Id" | "Statement") {
                return Err(malformed(format!("The policy has an unknown member '{}'.", shorten(member))));
            }
        }
        let version = match doc.get("Version") {
            None => LEGACY_POLICY_VERSION.to_owned(),
            Some(Value::String(v)) if v == POLICY_VERSION || v == LEGACY_POLICY_VERSION => v.clone(),
            Some(v) => {
                return Err(malformed(format!(
                    "The policy Version '{}' is not supported; use \"{POLICY_VERSION}\".",
                    shorten(&value_text(v))
                )))
            }
        };
        let id = match doc.get("Id") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(malformed("The policy Id must be a string.")),
        };
        let raw_statements = match doc.get("Statement") {
            None => return Err(malformed("The policy has no Statement.")),
            Some(Value::Array(a)) if a.is_empty() => return Err(malformed("The policy Statement list is empty.")),
            Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
            Some(s @ Value::Object(_)) => vec![s],
            Some(_) => return Err(malformed("The policy Statement must be an object or a list of objects.")),
        };
        let mut sids = BTreeSet::new();
        let mut statements = Vec::with_capacity(raw_statements.len());
        for (index, raw) in raw_statements.into_iter().enumerate() {
            let statement = parse_statement(index, raw)?;
            if let StatementId::Sid(sid) = &statement.id {
                if !sids.insert(sid.clone()) {
                    return Err(malformed(format!("The policy has more than one {}.", statement.id)));
                }
            }
            statements.push(statement);
        }
        Ok(KeyPolicy { version, id, statements })
    }

    /// Evaluates the policy for one request: the first matching `Deny` statement gives
    /// [`Decision::ExplicitDeny`]; otherwise the first matching `Allow` statement gives
    /// [`Decision::Allow`]; otherwise [`Decision::ImplicitDeny`] (IAM User Guide, "Policy
    /// evaluation logic"). A statement matches when its principal, action, resource and every
    /// condition match.
    pub fn evaluate(&self, ctx: &RequestContext) -> Decision {
        let mut allow = None;
        for s in &self.statements {
            if !s.matches(ctx) {
                continue;
            }
            match s.effect {
                Effect::Deny => return Decision::ExplicitDeny { statement: s.id.clone() },
                Effect::Allow => {
                    if allow.is_none() {
                        allow = Some(s.id.clone());
                    }
                }
            }
        }
        match allow {
            Some(statement) => Decision::Allow { statement },
            None => Decision::ImplicitDeny,
        }
    }
}

impl Statement {
    fn matches(&self, ctx: &RequestContext) -> bool {
        let principal = match &self.principals {
            Applies::To(ps) => ps.iter().any(|p| p.matches(ctx)),
            Applies::ToAllBut(ps) => !ps.iter().any(|p| p.matches(ctx)),
        };
        let action = ctx.action.to_ascii_lowercase();
        let action_ok = match &self.actions {
            Applies::To(pats) => pats.iter().any(|p| wildcard_match(p, &action)),
            Applies::ToAllBut(pats) => !pats.iter().any(|p| wildcard_match(p, &action)),
        };
        let resource_ok = match &self.resources {
            Applies::To(pats) => pats.iter().any(|p| wildcard_match(p, &ctx.resource)),
            Applies::ToAllBut(pats) => !pats.iter().any(|p| wildcard_match(p, &ctx.resource)),
        };
        principal && action_ok && resource_ok && self.conditions.iter().all(|c| c.holds(ctx))
    }
}

/// The default key policy CreateKey installs when the request has none (aws-kms-api.md §6.2;
/// AWS KMS Developer Guide, "Default key policy"): one statement, "Enable IAM User
/// Permissions", allowing `kms:*` to the owning account's root — in Keyledger, to every
/// principal of that account. Pretty-printed, as AWS returns it.
pub fn default_key_policy(realm: &Realm, account: &str) -> String {
    let policy = serde_json::json!({
        "Version": POLICY_VERSION,
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:{}:iam::{account}:root", realm.partition)},
            "Action": "kms:*",
            "Resource": "*",
        }],
    });
    serde_json::to_string_pretty(&policy).expect("a JSON value always serializes")
}

/// The policy lockout safety check (aws-kms-api.md §6.5; KMS API Reference, PutKeyPolicy
/// `BypassPolicyLockoutSafetyCheck`): unless `bypass`, the new `policy` must still allow the
/// caller of `request` `kms:PutKeyPolicy` on the key, else `MalformedPolicyDocumentException:
/// The new key policy will not allow you to update the key policy in the future.`
///
/// `request` is the context of the CreateKey/PutKeyPolicy request (principal, account, the
/// key's ARN, time, other keys); its action is replaced by `kms:PutKeyPolicy`.
pub fn lockout_check(policy: &KeyPolicy, request: &RequestContext, bypass: bool) -> Result<(), KmsError> {
    if bypass {
        return Ok(());
    }
    let mut ctx = request.clone();
    ctx.action = "kms:PutKeyPolicy".to_owned();
    ctx.bypass_policy_lockout_safety_check.get_or_insert(false);
    if policy.evaluate(&ctx).is_allowed() {
        Ok(())
    } else {
        Err(malformed(LOCKOUT_MESSAGE))
    }
}

// ---- parsing ----

fn parse_statement(index: usize, raw: &Value) -> Result<Statement, KmsError> {
    let Value::Object(s) = raw else {
        return Err(malformed(format!("{} is not a JSON object.", StatementId::Index(index))));
    };
    let id = match s.get("Sid") {
        None => StatementId::Index(index),
        Some(Value::String(sid)) if sid.is_empty() => StatementId::Index(index),
        Some(Value::String(sid)) => StatementId::Sid(sid.clone()),
        Some(_) => return Err(malformed(format!("{}: Sid must be a string.", StatementId::Index(index)))),
    };
    let bad = |what: String| malformed(format!("{id}: {what}"));
    for member in s.keys() {
        if !matches!(
            member.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(bad(format!("unknown member '{}'.", shorten(member))));
        }
    }
    let effect = match s.get("Effect") {
        None => return Err(bad("Effect is missing.".to_owned())),
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(v) => {
            return Err(bad(format!("Effect '{}' is not valid; use \"Allow\" or \"Deny\".", shorten(&value_text(v)))))
        }
    };
    let principals = match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(_), Some(_)) => return Err(bad("has both Principal and NotPrincipal.".to_owned())),
        (None, None) => return Err(bad("Principal is missing; every statement needs one.".to_owned())),
        (Some(p), None) => Applies::To(parse_principals(&id, "Principal", p)?),
        (None, Some(p)) => {
            if effect == Effect::Allow {
                return Err(bad("NotPrincipal may be used only with \"Effect\": \"Deny\".".to_owned()));
            }
            Applies::ToAllBut(parse_principals(&id, "NotPrincipal", p)?)
        }
    };
    let actions = match (s.get("Action"), s.get("NotAction")) {
        (Some(_), Some(_)) => return Err(bad("has both Action and NotAction.".to_owned())),
        (None, None) => return Err(bad("Action is missing; a statement without one has no effect.".to_owned())),
        (Some(a), None) => Applies::To(parse_actions(&id, "Action", a)?),
        (None, Some(a)) => Applies::ToAllBut(parse_actions(&id, "NotAction", a)?),
    };
    let resources = match (s.get("Resource"), s.get("NotResource")) {
        (Some(_), Some(_)) => return Err(bad("has both Resource and NotResource.".to_owned())),
        (None, None) => return Err(bad("Resource is missing; a statement without one has no effect.".to_owned())),
        (Some(r), None) => Applies::To(parse_resources(&id, "Resource", r)?),
        (None, Some(r)) => Applies::ToAllBut(parse_resources(&id, "NotResource", r)?),
    };
    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(c)) => parse_conditions(&id, c)?,
        Some(_) => return Err(bad("Condition must be an object.".to_owned())),
    };
    Ok(Statement { id, effect, principals, actions, resources, conditions })
}

/// A string or a non-empty list of strings.
fn string_list<'v>(id: &StatementId, member: &str, v: &'v Value) -> Result<Vec<&'v str>, KmsError> {
    let wrong = || malformed(format!("{id}: {member} must be a string or a non-empty list of strings."));
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) if !items.is_empty() => {
            items.iter().map(|i| i.as_str().ok_or_else(wrong)).collect::<Result<Vec<_>, _>>()
        }
        _ => Err(wrong()),
    }
}

fn parse_principals(id: &StatementId, member: &str, v: &Value) -> Result<Vec<Principal>, KmsError> {
    match v {
        Value::String(s) if s == "*" => Ok(vec![Principal::Everyone]),
        Value::Object(m) if !m.is_empty() => {
            let mut out = Vec::new();
            for (kind, values) in m {
                let values = string_list(id, &format!("{member}.{}", shorten(kind)), values)?;
                match kind.as_str() {
                    "AWS" => {
                        for p in values {
                            out.push(parse_aws_principal(p).ok_or_else(|| malformed(INVALID_PRINCIPALS_MESSAGE))?);
                        }
                    }
                    "Service" => {
                        for p in values {
                            if p.is_empty() || p.contains('*') {
                                return Err(malformed(INVALID_PRINCIPALS_MESSAGE));
                            }
                            out.push(Principal::Service(p.to_owned()));
                        }
                    }
                    _ => {
                        return Err(malformed(format!(
                            "{id}: {member} type '{}' is not supported; use \"AWS\" or \"Service\".",
                            shorten(kind)
                        )))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(malformed(format!("{id}: {member} must be \"*\" or an object such as {{\"AWS\": \"<arn>\"}}."))),
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `*`, a 12-digit account, `arn:<partition>:iam::<account>:root`, or a user, role or
/// assumed-role ARN. No other wildcards (IAM reference, "Principal").
fn parse_aws_principal(p: &str) -> Option<Principal> {
    if p == "*" {
        return Some(Principal::Everyone);
    }
    if is_account_id(p) {
        return Some(Principal::Account(p.to_owned()));
    }
    if p.contains('*') || p.contains('?') {
        return None;
    }
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return None;
    };
    if *arn != "arn" || partition.is_empty() || !region.is_empty() || !is_account_id(account) {
        return None;
    }
    match (*service, *resource) {
        ("iam", "root") => Some(Principal::Account((*account).to_owned())),
        ("iam", r) if has_named_suffix(r, "user/") || has_named_suffix(r, "role/") => {
            Some(Principal::Arn(p.to_owned()))
        }
        ("sts", r) if has_named_suffix(r, "assumed-role/") => Some(Principal::Arn(p.to_owned())),
        _ => None,
    }
}

fn has_named_suffix(resource: &str, prefix: &str) -> bool {
    resource.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && !rest.ends_with('/'))
}

fn parse_actions(id: &StatementId, member: &str, v: &Value) -> Result<Vec<String>, KmsError> {
    let mut out = Vec::new();
    for a in string_list(id, member, v)? {
        let valid = a == "*"
            || a.split_once(':').is_some_and(|(svc, op)| {
                !svc.is_empty()
                    && !op.is_empty()
                    && svc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && op.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
            });
        if !valid {
            return Err(malformed(format!(
                "{id}: {member} '{}' is not of the form \"kms:<Operation>\" (wildcards * and ? allowed).",
                shorten(a)
            )));
        }
        out.push(a.to_ascii_lowercase());
    }
    Ok(out)
}

fn parse_resources(id: &StatementId, member: &str, v: &Value) -> Result<Vec<String>, KmsError> {
    let mut out = Vec::new();
    for r in string_list(id, member, v)? {
        if r != "*" && !r.starts_with("arn:") {
            return Err(malformed(format!("{id}: {member} '{}' must be \"*\" or an ARN.", shorten(r))));
        }
        out.push(r.to_owned());
    }
    Ok(out)
}

fn parse_operator(name: &str) -> Option<Operator> {
    let (set, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
        (SetQualifier::ForAnyValue, r)
    } else if let Some(r) = name.strip_prefix("ForAllValues:") {
        (SetQualifier::ForAllValues, r)
    } else {
        (SetQualifier::None, name)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    use Comparison::*;
    let (comparison, negated) = match base {
        "StringEquals" => (StringEquals, false),
        "StringNotEquals" => (StringEquals, true),
        "StringEqualsIgnoreCase" => (StringEqualsIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (StringEqualsIgnoreCase, true),
        "StringLike" => (StringLike, false),
        "StringNotLike" => (StringLike, true),
        "NumericEquals" => (NumericEquals, false),
        "NumericNotEquals" => (NumericEquals, true),
        "NumericLessThan" => (NumericLessThan, false),
        "NumericLessThanEquals" => (NumericLessThanEquals, false),
        "NumericGreaterThan" => (NumericGreaterThan, false),
        "NumericGreaterThanEquals" => (NumericGreaterThanEquals, false),
        "DateEquals" => (DateEquals, false),
        "DateNotEquals" => (DateEquals, true),
        "DateLessThan" => (DateLessThan, false),
        "DateLessThanEquals" => (DateLessThanEquals, false),
        "DateGreaterThan" => (DateGreaterThan, false),
        "DateGreaterThanEquals" => (DateGreaterThanEquals, false),
        "Bool" => (Bool, false),
        "ArnEquals" | "ArnLike" => (ArnLike, false),
        "ArnNotEquals" | "ArnNotLike" => (ArnLike, true),
        "Null" if !if_exists && set == SetQualifier::None => (Null, false),
        _ => return None,
    };
    Some(Operator { set, comparison, negated, if_exists })
}

fn parse_conditions(id: &StatementId, block: &Map<String, Value>) -> Result<Vec<Condition>, KmsError> {
    let mut out = Vec::new();
    for (op_name, tests) in block {
        let operator = parse_operator(op_name)
            .ok_or_else(|| malformed(format!("{id}: Condition operator '{}' is not supported.", shorten(op_name))))?;
        let Value::Object(tests) = tests else {
            return Err(malformed(format!(
                "{id}: Condition operator '{}' must map condition keys to values.",
                shorten(op_name)
            )));
        };
        if tests.is_empty() {
            return Err(malformed(format!("{id}: Condition operator '{}' has no condition keys.", shorten(op_name))));
        }
        for (key, raw_values) in tests {
            let where_ = || format!("{id}: Condition {}/{}", shorten(op_name), shorten(key));
            if key.is_empty() {
                return Err(malformed(format!("{id}: Condition {} has an empty condition key.", shorten(op_name))));
            }
            if operator.set == SetQualifier::ForAllValues
                && key.to_ascii_lowercase().starts_with("kms:encryptioncontext:")
            {
                return Err(malformed(format!(
                    "{}: OverlyPermissiveCondition: ForAllValues cannot be used with the single-valued \
                     kms:EncryptionContext:<key>; use kms:EncryptionContextKeys.",
                    where_()
                )));
            }
            let items: Vec<&Value> = match raw_values {
                Value::Array(a) if !a.is_empty() => a.iter().collect(),
                Value::Array(_) => return Err(malformed(format!("{} has an empty list of values.", where_()))),
                v => vec![v],
            };
            let mut values = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => values.push(s.clone()),
                    Value::Number(n) => values.push(n.to_string()),
                    Value::Bool(b) => values.push(b.to_string()),
                    _ => return Err(malformed(format!("{}: values must be strings, numbers or booleans.", where_()))),
                }
            }
            let mut numbers = Vec::new();
            let mut dates_ms = Vec::new();
            use Comparison::*;
            match operator.comparison {
                NumericEquals
                | NumericLessThan
                | NumericLessThanEquals
                | NumericGreaterThan
                | NumericGreaterThanEquals => {
                    for v in &values {
                        let n = parse_number(v)
                            .ok_or_else(|| malformed(format!("{}: '{}' is not a number.", where_(), shorten(v))))?;
                        numbers.push(n);
                    }
                }
                DateEquals | DateLessThan | DateLessThanEquals | DateGreaterThan | DateGreaterThanEquals => {
                    for v in &values {
                        let d = parse_date_ms(v).ok_or_else(|| {
                            malformed(format!("{}: '{}' is not an ISO 8601 date or epoch time.", where_(), shorten(v)))
                        })?;
                        dates_ms.push(d);
                    }
                }
                Bool | Null => {
                    if let Some(v) =
                        values.iter().find(|v| !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false"))
                    {
                        return Err(malformed(format!("{}: '{}' is not true or false.", where_(), shorten(v))));
                    }
                }
                StringEquals | StringEqualsIgnoreCase | StringLike | ArnLike => {}
            }
            out.push(Condition { operator, key: key.clone(), values, dates_ms, numbers });
        }
    }
    Ok(out)
}

// ---- evaluation ----

impl Condition {
    /// Whether this condition holds for the request (IAM User Guide, "Condition operators",
    /// "…IfExists condition operators", "Condition operator to check existence of condition
    /// keys", "Set operators for multivalued context keys").
    fn holds(&self, ctx: &RequestContext) -> bool {
        let request = ctx.values(&self.key);
        if self.operator.comparison == Comparison::Null {
            let absent = request.is_none();
            return self.values.iter().any(|v| v.eq_ignore_ascii_case("true") == absent);
        }
        let Some(request) = request else {
            // An absent key: `…IfExists` and `ForAllValues:` hold; a negated operator holds
            // ("the key does not match"); everything else does not.
            return self.operator.if_exists
                || self.operator.set == SetQualifier::ForAllValues
                || (self.operator.negated && self.operator.set == SetQualifier::None);
        };
        let satisfies = |r: &String| {
            let any = self.any_value_matches(r);
            if self.operator.negated {
                !any
            } else {
                any
            }
        };
        match self.operator.set {
            SetQualifier::ForAllValues => request.iter().all(satisfies),
            SetQualifier::ForAnyValue => request.iter().any(satisfies),
            SetQualifier::None if self.operator.negated => request.iter().all(satisfies),
            SetQualifier::None => request.iter().any(satisfies),
        }
    }

    /// Whether request value `r` matches at least one policy value under the positive form of
    /// the comparison.
    fn any_value_matches(&self, r: &str) -> bool {
        use Comparison::*;
        match self.operator.comparison {
            StringEquals => self.values.iter().any(|p| p == r),
            StringEqualsIgnoreCase => {
                let r = r.to_lowercase();
                self.values.iter().any(|p| p.to_lowercase() == r)
            }
            StringLike | ArnLike => self.values.iter().any(|p| wildcard_match(p, r)),
            Bool => self.values.iter().any(|p| p.eq_ignore_ascii_case(r)),
            NumericEquals | NumericLessThan | NumericLessThanEquals | NumericGreaterThan | NumericGreaterThanEquals => {
                let Some(r) = parse_number(r) else { return false };
                self.numbers.iter().any(|p| compare(self.operator.comparison, r.partial_cmp(p)))
            }
            DateEquals | DateLessThan | DateLessThanEquals | DateGreaterThan | DateGreaterThanEquals => {
                let Some(r) = parse_date_ms(r) else { return false };
                self.dates_ms.iter().any(|p| compare(self.operator.comparison, Some(r.cmp(p))))
            }
            Null => false,
        }
    }
}

/// Applies an ordering comparison: `ord` is request value versus policy value.
fn compare(c: Comparison, ord: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    use Comparison::*;
    let Some(ord) = ord else { return false };
    match c {
        NumericEquals | DateEquals => ord == Equal,
        NumericLessThan | DateLessThan => ord == Less,
        NumericLessThanEquals | DateLessThanEquals => ord != Greater,
        NumericGreaterThan | DateGreaterThan => ord == Greater,
        NumericGreaterThanEquals | DateGreaterThanEquals => ord != Less,
        _ => false,
    }
}

fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')) {
        return None;
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Glob match with `*` (any run, also empty) and `?` (one character), as IAM's `StringLike`
/// and action/resource matching do. Both sides are compared as given (callers lower-case
/// action names first).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

// ---- dates (no clock: pure calendar arithmetic, crate::calendar) ----

/// `2026-11-30T02:15:12.345Z` for ms since the epoch (`aws:CurrentTime`).
fn format_iso8601_ms(ms: u64) -> String {
    let ms = ms as i64;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// A date as IAM's Date operators accept it: epoch seconds, or ISO 8601 —
/// `YYYY-MM-DD`, `YYYY-MM-DDThh:mm[:ss[.fff]]` with `Z` or `±hh:mm` (UTC when no zone is
/// given) — in ms since the epoch.
pub fn parse_date_ms(s: &str) -> Option<i64> {
    if !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().map(|secs| secs * 1000);
    }
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    if b.len() == 10 {
        return Some(ms);
    }
    if b[10] != b'T' || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let (h, mi) = (num(11, 2)?, num(14, 2)?);
    let mut i = 16;
    let mut sec = 0;
    let mut frac_ms = 0;
    if b.get(i) == Some(&b':') {
        sec = num(i + 1, 2)?;
        i += 3;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end == start {
                return None;
            }
            let digits = &s[start..end.min(start + 3)];
            frac_ms = digits.parse::<i64>().ok()? * 10_i64.pow(3 - digits.len() as u32);
            i = end;
        }
    }
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    ms += h * 3_600_000 + mi * 60_000 + sec * 1000 + frac_ms;
    match &b[i..] {
        [] | [b'Z'] => Some(ms),
        [sign @ (b'+' | b'-'), ..] if b.len() - i == 6 && b[i + 3] == b':' => {
            let offset = num(i + 1, 2)? * 3_600_000 + num(i + 4, 2)? * 60_000;
            Some(if *sign == b'+' { ms - offset } else { ms + offset })
        }
        _ => None,
    }
}

/// A JSON value as short text for an error message.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn dates_round_trip_and_parse() {
        assert_eq!(parse_date_ms("1970-01-01"), Some(0));
        assert_eq!(parse_date_ms("2026-11-30T02:15:12.345Z"), Some(1_796_004_912_345));
        assert_eq!(format_iso8601_ms(1_796_004_912_345), "2026-11-30T02:15:12.345Z");
        assert_eq!(parse_date_ms("2026-11-30T03:15:12+01:00"), parse_date_ms("2026-11-30T02:15:12Z"));
        assert_eq!(parse_date_ms("1796004912"), Some(1_796_004_912_000));
        assert_eq!(parse_date_ms("2026-02-30"), None);
        assert_eq!(parse_date_ms("yesterday"), None);
        for ms in [0u64, 951_782_400_000, 4_102_444_800_999] {
            assert_eq!(parse_date_ms(&format_iso8601_ms(ms)), Some(ms as i64));
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("kms:re*", "kms:reencryptfrom"));
        assert!(wildcard_match("kms:generate?atakey*", "kms:generatedatakeypair"));
        assert!(!wildcard_match("kms:generate?atakey*", "kms:generatemac"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
    }
}
