//! AWS KMS errors: the error names clients match on, their HTTP status, and the exact messages
//! AWS sends (aws-kms-api.md §1.3, §3.3, §5).
//!
//! Every message here is safe to log and to return: none ever contains plaintext, key
//! material, a ciphertext or a grant token. Values echoed in validation messages are request
//! members that AWS echoes too (identifiers, numbers, enum values); blobs are elided.

use serde_json::{json, Value};

/// The AWS KMS error names (`__type`) this service returns.
///
/// Variant names drop the `Exception` suffix; [`ErrorKind::aws_name`] gives the wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `NotFoundException`: unknown key or alias, malformed key id, wrong-region ARN.
    NotFound,
    /// `InvalidArnException`: malformed ARN, or an alias where only keys are accepted.
    InvalidArn,
    /// `AlreadyExistsException`: the alias name is taken.
    AlreadyExists,
    /// `DisabledException`: the key is Disabled.
    Disabled,
    /// `KMSInvalidStateException`: the key state does not allow the operation.
    KMSInvalidState,
    /// `InvalidKeyUsageException`: the key's usage or spec does not allow the operation.
    InvalidKeyUsage,
    /// `UnsupportedOperationException`: a valid AWS feature this service does not offer (yet),
    /// or one the key type does not support.
    UnsupportedOperation,
    /// `IncorrectKeyException`: Decrypt's `KeyId` is not the key that encrypted the blob.
    IncorrectKey,
    /// `InvalidCiphertextException`: corrupt blob, wrong encryption context (empty message).
    InvalidCiphertext,
    /// `InvalidGrantTokenException`
    InvalidGrantToken,
    /// `InvalidMarkerException`: a pagination marker this service did not issue.
    InvalidMarker,
    /// `InvalidGrantIdException`: not a grant id, or no such grant on the key.
    InvalidGrantId,
    /// `InvalidAliasNameException`: e.g. the reserved `alias/aws/` prefix.
    InvalidAliasName,
    /// `LimitExceededException`: a resource quota (keys, aliases per key, on-demand rotations).
    LimitExceeded,
    /// `TagException`: too many, duplicate or reserved tags.
    Tag,
    /// `ConflictException`: RotateKeyOnDemand while an automatic rotation is (nearly) due.
    Conflict,
    /// `DryRunOperationException`: the request would have succeeded.
    DryRunOperation,
    /// `AccessDeniedException`: the caller may not use this key.
    AccessDenied,
    /// `ValidationException`: a model constraint or a semantic check failed.
    Validation,
    /// `SerializationException`: malformed JSON or a member of the wrong JSON type.
    Serialization,
    /// `UnknownOperationException`: no such operation.
    UnknownOperation,
    /// `ThrottlingException`: request rate too high (retryable; HTTP 400 on purpose).
    Throttling,
    /// `KMSInternalException`: an internal error (HTTP 500, retryable).
    KMSInternal,
    /// `DependencyTimeoutException`: a dependency (the log, the material store) timed out
    /// (HTTP 503, retryable).
    DependencyTimeout,
    /// `KeyUnavailableException`: the key is temporarily unavailable (HTTP 500, retryable).
    KeyUnavailable,
    /// `InvalidImportTokenException`: the import token is malformed, forged, or belongs to
    /// another key or wrapping key.
    InvalidImportToken,
    /// `ExpiredImportTokenException`: the import token's 24 hours have passed.
    ExpiredImportToken,
    /// `IncorrectKeyMaterialException`: reimported material differs from the key's, or the
    /// material is not valid for the key spec.
    IncorrectKeyMaterial,
    /// `MalformedPolicyDocumentException`: a key policy that is not valid JSON or policy
    /// grammar, names an invalid principal, or fails the lockout safety check.
    MalformedPolicyDocument,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 29] = [
        ErrorKind::NotFound,
        ErrorKind::InvalidArn,
        ErrorKind::AlreadyExists,
        ErrorKind::Disabled,
        ErrorKind::KMSInvalidState,
        ErrorKind::InvalidKeyUsage,
        ErrorKind::UnsupportedOperation,
        ErrorKind::IncorrectKey,
        ErrorKind::InvalidCiphertext,
        ErrorKind::InvalidGrantToken,
        ErrorKind::InvalidMarker,
        ErrorKind::InvalidGrantId,
        ErrorKind::InvalidAliasName,
        ErrorKind::LimitExceeded,
        ErrorKind::Tag,
        ErrorKind::Conflict,
        ErrorKind::DryRunOperation,
        ErrorKind::AccessDenied,
        ErrorKind::Validation,
        ErrorKind::Serialization,
        ErrorKind::UnknownOperation,
        ErrorKind::Throttling,
        ErrorKind::KMSInternal,
        ErrorKind::DependencyTimeout,
        ErrorKind::KeyUnavailable,
        ErrorKind::InvalidImportToken,
        ErrorKind::ExpiredImportToken,
        ErrorKind::IncorrectKeyMaterial,
        ErrorKind::MalformedPolicyDocument,
    ];

    /// The AWS error name sent as `__type`, e.g. `"NotFoundException"`.
    pub fn aws_name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NotFoundException",
            ErrorKind::InvalidArn => "InvalidArnException",
            ErrorKind::AlreadyExists => "AlreadyExistsException",
            ErrorKind::Disabled => "DisabledException",
            ErrorKind::KMSInvalidState => "KMSInvalidStateException",
            ErrorKind::InvalidKeyUsage => "InvalidKeyUsageException",
            ErrorKind::UnsupportedOperation => "UnsupportedOperationException",
            ErrorKind::IncorrectKey => "IncorrectKeyException",
            ErrorKind::InvalidCiphertext => "InvalidCiphertextException",
            ErrorKind::InvalidGrantToken => "InvalidGrantTokenException",
            ErrorKind::InvalidMarker => "InvalidMarkerException",
            ErrorKind::InvalidGrantId => "InvalidGrantIdException",
            ErrorKind::InvalidAliasName => "InvalidAliasNameException",
            ErrorKind::LimitExceeded => "LimitExceededException",
            ErrorKind::Tag => "TagException",
            ErrorKind::Conflict => "ConflictException",
            ErrorKind::DryRunOperation => "DryRunOperationException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::Validation => "ValidationException",
            ErrorKind::Serialization => "SerializationException",
            ErrorKind::UnknownOperation => "UnknownOperationException",
            ErrorKind::Throttling => "ThrottlingException",
            ErrorKind::KMSInternal => "KMSInternalException",
            ErrorKind::DependencyTimeout => "DependencyTimeoutException",
            ErrorKind::KeyUnavailable => "KeyUnavailableException",
            ErrorKind::InvalidImportToken => "InvalidImportTokenException",
            ErrorKind::ExpiredImportToken => "ExpiredImportTokenException",
            ErrorKind::IncorrectKeyMaterial => "IncorrectKeyMaterialException",
            ErrorKind::MalformedPolicyDocument => "MalformedPolicyDocumentException",
        }
    }

    /// The kind for an AWS error name. Accepts the forms botocore normalises: an optional
    /// `namespace#` prefix and an optional `:suffix` are ignored.
    pub fn from_aws_name(name: &str) -> Option<ErrorKind> {
        let name = name.rsplit('#').next().unwrap_or(name);
        let name = name.split(':').next().unwrap_or(name);
        ErrorKind::ALL.into_iter().find(|k| k.aws_name() == name)
    }

    /// The HTTP status AWS's JSON endpoint sends: 400 for every client error (including
    /// `ThrottlingException`, which legacy botocore retries only with 400), 500 for
    /// `KMSInternalException` and `KeyUnavailableException`, 503 for
    /// `DependencyTimeoutException` (aws-kms-api.md §1.3).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::KMSInternal | ErrorKind::KeyUnavailable => 500,
            ErrorKind::DependencyTimeout => 503,
            _ => 400,
        }
    }

    /// Whether a client should retry the same request: the server faults and throttling.
    /// (botocore's standard mode also retries `LimitExceededException`; we do not call it
    /// retryable because waiting does not lift a quota.)
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::KMSInternal | ErrorKind::KeyUnavailable | ErrorKind::DependencyTimeout | ErrorKind::Throttling
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.aws_name())
    }
}

/// An AWS KMS error: its kind and its message. `Display` is `"<AwsName>: <message>"` (just the
/// name when the message is empty, as for `InvalidCiphertextException`).
///
/// The message never contains a secret; constructors below produce AWS's exact texts.
///
/// Two errors are equal when the caller would see the same thing (kind and message);
/// [`KmsError::decided_by`] is audit metadata and not compared.
#[derive(Debug, Clone, Eq, thiserror::Error)]
#[error("{}", self.display())]
pub struct KmsError {
    /// What went wrong, as an AWS error name.
    pub kind: ErrorKind,
    /// The human-readable message (may be empty).
    pub message: String,
    /// For `AccessDeniedException`: what refused the request, for its audit record
    /// (`deny:key-policy:<statement>` for an explicit deny, `no-allow` when nothing allowed
    /// it). Never sent to the caller.
    pub decided_by: Option<String>,
}

impl PartialEq for KmsError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl KmsError {
    fn display(&self) -> String {
        if self.message.is_empty() {
            self.kind.aws_name().to_owned()
        } else {
            format!("{}: {}", self.kind.aws_name(), self.message)
        }
    }

    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), decided_by: None }
    }

    /// The same error, noting what refused it (see [`KmsError::decided_by`]).
    pub fn decided_by(mut self, by: String) -> Self {
        self.decided_by = Some(by);
        self
    }

    /// The wire body: `{"__type": "<AwsName>", "message": "<message>"}` (aws-kms-api.md §1.3).
    pub fn to_json(&self) -> Value {
        json!({"__type": self.kind.aws_name(), "message": self.message})
    }

    /// `DisabledException: <arn> is disabled.` (key-state matrix "D").
    pub fn disabled(key_arn: &str) -> Self {
        Self::new(ErrorKind::Disabled, format!("{key_arn} is disabled."))
    }

    /// `KMSInvalidStateException: <arn> is pending deletion.` (matrix "PD"). Keep the text:
    /// AWS's recommended deletion alarm matches on it.
    pub fn pending_deletion(key_arn: &str) -> Self {
        Self::new(ErrorKind::KMSInvalidState, format!("{key_arn} is pending deletion."))
    }

    /// `KMSInvalidStateException: <arn> is not pending deletion.` (matrix "NPD").
    pub fn not_pending_deletion(key_arn: &str) -> Self {
        Self::new(ErrorKind::KMSInvalidState, format!("{key_arn} is not pending deletion."))
    }

    /// `InvalidImportTokenException`: the token is malformed, forged, for another key, or no
    /// longer open for this key.
    pub fn invalid_import_token() -> Self {
        Self::new(
            ErrorKind::InvalidImportToken,
            "The import token is not valid for this KMS key: use the ImportToken and PublicKey of one GetParametersForImport response for this key.",
        )
    }

    /// `ExpiredImportTokenException`: the import parameters' 24 hours have passed.
    pub fn expired_import_token() -> Self {
        Self::new(
            ErrorKind::ExpiredImportToken,
            "The import token has expired (import parameters are valid for 24 hours); call GetParametersForImport again.",
        )
    }

    /// `KMSInvalidStateException: <arn> is pending import.` (matrix "PI").
    pub fn pending_import(key_arn: &str) -> Self {
        Self::new(ErrorKind::KMSInvalidState, format!("{key_arn} is pending import."))
    }

    /// `KMSInvalidStateException: <arn> is unavailable.` (matrix "UA").
    pub fn unavailable(key_arn: &str) -> Self {
        Self::new(ErrorKind::KMSInvalidState, format!("{key_arn} is unavailable."))
    }

    /// `NotFoundException: Key '<arn>' does not exist` (the message always shows the ARN).
    pub fn key_not_found(key_arn: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("Key '{key_arn}' does not exist"))
    }

    /// `NotFoundException: Invalid keyId '<input>'` for a syntactically invalid key id.
    pub fn invalid_key_id(input: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("Invalid keyId '{}'", shorten(input)))
    }

    /// `NotFoundException: Invalid arn <region>` for an ARN of another region.
    pub fn wrong_region_arn(region: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("Invalid arn {}", shorten(region)))
    }

    /// `InvalidArnException: <input> is not a valid KMS key or alias ARN.` (AWS sends no fixed
    /// text for this case; ours names the input, which is not secret.)
    pub fn invalid_arn(input: &str) -> Self {
        Self::new(ErrorKind::InvalidArn, format!("{} is not a valid KMS key or alias ARN.", shorten(input)))
    }

    /// `InvalidArnException: Key Aliases are not supported for this operation.` — an alias
    /// name or alias ARN given to an operation that takes only key ids and key ARNs.
    pub fn aliases_not_supported() -> Self {
        Self::new(ErrorKind::InvalidArn, "Key Aliases are not supported for this operation.")
    }

    /// `NotFoundException: Alias <alias arn> is not found.`
    pub fn alias_not_found(alias_arn: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("Alias {alias_arn} is not found."))
    }

    /// `AlreadyExistsException: An alias with the name <alias arn> already exists`
    pub fn alias_already_exists(alias_arn: &str) -> Self {
        Self::new(ErrorKind::AlreadyExists, format!("An alias with the name {alias_arn} already exists"))
    }

    /// `AccessDeniedException: User: <principal> is not authorized to perform: kms:<Op> on
    /// resource: <arn> because no resource-based policy allows the kms:<Op> action`
    /// (AWS's message style, aws-kms-api.md §5).
    pub fn access_denied(principal_arn: &str, operation: &str, resource_arn: &str) -> Self {
        Self::new(
            ErrorKind::AccessDenied,
            format!(
                "User: {principal_arn} is not authorized to perform: kms:{operation} on resource: \
                 {resource_arn} because no resource-based policy allows the kms:{operation} action"
            ),
        )
    }

    /// The deliberately vague `AccessDeniedException` for a ciphertext whose key does not
    /// exist, is in another region or account, or may not be used (aws-kms-api.md §4.2): it
    /// must not reveal which.
    pub fn ciphertext_key_access_denied() -> Self {
        Self::new(
            ErrorKind::AccessDenied,
            "The ciphertext refers to a customer master key that does not exist, does not exist \
             in this region, or you are not allowed to access.",
        )
    }

    /// `IncorrectKeyException: The key ID in the request does not identify a CMK that can
    /// perform this operation.`
    pub fn incorrect_key() -> Self {
        Self::new(
            ErrorKind::IncorrectKey,
            "The key ID in the request does not identify a CMK that can perform this operation.",
        )
    }

    /// `InvalidCiphertextException` with AWS's empty message.
    pub fn invalid_ciphertext() -> Self {
        Self::new(ErrorKind::InvalidCiphertext, "")
    }

    /// `InvalidKeyUsageException: <arn> key usage is <USAGE> which is not valid for <Op>.`
    pub fn invalid_key_usage(key_arn: &str, usage: &str, operation: &str) -> Self {
        Self::new(
            ErrorKind::InvalidKeyUsage,
            format!("{key_arn} key usage is {usage} which is not valid for {operation}."),
        )
    }

    /// `UnsupportedOperationException: <arn> origin is <ORIGIN> which is not valid for this
    /// operation.`
    pub fn origin_not_valid(key_arn: &str, origin: &str) -> Self {
        Self::new(
            ErrorKind::UnsupportedOperation,
            format!("{key_arn} origin is {origin} which is not valid for this operation."),
        )
    }

    /// `LimitExceededException` for the on-demand rotation quota, AWS's exact text.
    pub fn on_demand_rotation_limit(key_arn: &str) -> Self {
        Self::new(
            ErrorKind::LimitExceeded,
            format!(
                "The on-demand rotations limit has been reached for the given keyId. No more \
                 on-demand rotations can be performed for this key: {key_arn}"
            ),
        )
    }

    /// `TagException: Too many tags`
    pub fn too_many_tags() -> Self {
        Self::new(ErrorKind::Tag, "Too many tags")
    }

    /// `TagException: Duplicate tag keys`
    pub fn duplicate_tag_keys() -> Self {
        Self::new(ErrorKind::Tag, "Duplicate tag keys")
    }

    /// `TagException: Tags beginning with aws: are reserved`
    pub fn reserved_tag() -> Self {
        Self::new(ErrorKind::Tag, "Tags beginning with aws: are reserved")
    }

    /// `InvalidMarkerException`, the API reference's description as message.
    pub fn invalid_marker() -> Self {
        Self::new(
            ErrorKind::InvalidMarker,
            "The request was rejected because the marker that specifies where pagination should \
             next begin is not valid.",
        )
    }

    /// `DryRunOperationException: The request would have succeeded, but the DryRun option is
    /// set.`
    pub fn dry_run() -> Self {
        Self::new(ErrorKind::DryRunOperation, "The request would have succeeded, but the DryRun option is set.")
    }

    /// `ValidationException` with a free-form (semantic) message.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }

    /// `UnsupportedOperationException` with a message saying what is not supported.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnsupportedOperation, message)
    }

    /// `SerializationException` (malformed JSON, wrong JSON type, bad base64).
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Serialization, message)
    }

    /// `KMSInternalException` (a broken invariant in the caller's shell or the state).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::KMSInternal, message)
    }
}

/// How a violating value is shown in a validation message.
#[derive(Debug, Clone, Copy)]
pub enum Shown<'a> {
    /// `Value '<v>' at …` (strings, numbers, enum values).
    Value(&'a str),
    /// `Value at …` (blobs, maps and secret-bearing lists are never echoed).
    Hidden,
    /// `Value null at …` (a required member is missing).
    Null,
}

/// One model-constraint violation in AWS's format:
/// `Value '<v>' at '<camelCaseMember>' failed to satisfy constraint: Member must <rule>`
/// (aws-kms-api.md §1.3). `member` is the camelCase path, e.g. `numberOfBytes` or
/// `tags.1.member.tagKey`; `rule` is the text after "Member must ", e.g.
/// `have value less than or equal to 1024`.
pub fn violation(value: Shown<'_>, member: &str, rule: &str) -> String {
    let value = match value {
        Shown::Value(v) => format!("Value '{}' at", shorten(v)),
        Shown::Hidden => "Value at".to_owned(),
        Shown::Null => "Value null at".to_owned(),
    };
    format!("{value} '{member}' failed to satisfy constraint: Member must {rule}")
}

/// The `ValidationException` for one or more violations:
/// `1 validation error detected: a` or `N validation errors detected: a; b`.
///
/// At most [`MAX_LISTED_VIOLATIONS`] violations are spelled out (the count stays exact), so a
/// request with thousands of bad list items cannot produce an error larger than itself.
pub fn validation_error(violations: &[String]) -> KmsError {
    let n = violations.len();
    let noun = if n == 1 { "error" } else { "errors" };
    let mut listed = violations.iter().take(MAX_LISTED_VIOLATIONS).cloned().collect::<Vec<_>>().join("; ");
    if n > MAX_LISTED_VIOLATIONS {
        listed.push_str(&format!("; and {} more", n - MAX_LISTED_VIOLATIONS));
    }
    KmsError::validation(format!("{n} validation {noun} detected: {listed}"))
}

/// Most violations spelled out in one ValidationException message.
pub const MAX_LISTED_VIOLATIONS: usize = 10;

/// Longest client-supplied value echoed in an error message, in characters. Longer values are
/// cut and marked with `...`, so an error can never be larger than a bounded size (a
/// 1 MiB description must not come back as a 1 MiB error).
pub const MAX_ECHOED_CHARS: usize = 256;

/// `v` cut to [`MAX_ECHOED_CHARS`] characters.
pub fn shorten(v: &str) -> std::borrow::Cow<'_, str> {
    match v.char_indices().nth(MAX_ECHOED_CHARS) {
        None => std::borrow::Cow::Borrowed(v),
        Some((cut, _)) => std::borrow::Cow::Owned(format!("{}...", &v[..cut])),
    }
}

#[cfg(test)]
mod echo_tests {
    use super::*;

    #[test]
    fn echoed_values_are_bounded() {
        let long = "é".repeat(10_000);
        let e = KmsError::invalid_key_id(&long);
        assert!(e.message.chars().count() < MAX_ECHOED_CHARS + 32, "{}", e.message.len());
        assert!(e.message.ends_with("...'"));
        let m = violation(Shown::Value(&"d".repeat(1 << 20)), "description", "have length less than or equal to 8192");
        assert!(m.len() < 600);
        assert_eq!(shorten("short"), "short");
        let many: Vec<String> = (0..10_000).map(|i| format!("violation {i}")).collect();
        let e = validation_error(&many);
        assert!(e.message.starts_with("10000 validation errors detected: violation 0; "));
        assert!(e.message.ends_with("; and 9990 more"));
        assert!(e.message.len() < 400);
    }
}
