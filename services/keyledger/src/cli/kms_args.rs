//! `keyledger kms <operation> [--flag value …]`: the `aws kms` command line, mapped onto the
//! AWS JSON request.
//!
//! The operation is the AWS name in kebab case (`generate-data-key` → `GenerateDataKey`), each
//! `--flag-name` the member in kebab case (`--key-id` → `KeyId`). Values follow the aws CLI:
//! blobs are base64 text or `fileb://PATH` (raw bytes read from the file); maps are
//! `k=v,k2=v2` or JSON; lists take several values (`--tag-keys a b`) or JSON; tags take
//! `TagKey=k,TagValue=v` items or JSON; integers and booleans are typed; `--dry-run` /
//! `--no-dry-run` style switches set booleans. `--cli-input-json JSON|file://PATH` supplies
//! the whole request. Output flags: `--query Member` and `--output json|text`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

/// The parsed command line of one `kms` call.
#[derive(Debug)]
pub struct KmsInvocation {
    /// AWS operation name (PascalCase).
    pub operation: String,
    /// The JSON request.
    pub request: Value,
    /// `--query`: a JMESPath expression applied to the response (as the aws CLI does).
    pub query: Option<String>,
    /// `--output text`: scalars bare, lists tab-separated.
    pub text_output: bool,
    /// `--profile PATH` given after the operation.
    pub profile: Option<std::path::PathBuf>,
}

/// The request members each operation accepts (AWS API reference, request syntax). A flag
/// that is not one of them is refused, as the aws CLI refuses unknown options — a typo must
/// not silently drop, say, an encryption context.
pub fn members(operation: &str) -> Option<&'static [&'static str]> {
    const KEY: &[&str] = &["KeyId"];
    Some(match operation {
        "CreateKey" => &[
            "Policy",
            "Description",
            "KeyUsage",
            "CustomerMasterKeySpec",
            "KeySpec",
            "Origin",
            "CustomKeyStoreId",
            "BypassPolicyLockoutSafetyCheck",
            "Tags",
            "MultiRegion",
            "XksKeyId",
        ],
        "DescribeKey" => &["KeyId", "GrantTokens"],
        "ListKeys" => &["Limit", "Marker"],
        "UpdateKeyDescription" => &["KeyId", "Description"],
        "EnableKey"
        | "DisableKey"
        | "CancelKeyDeletion"
        | "RotateKeyOnDemand"
        | "DisableKeyRotation"
        | "GetKeyRotationStatus" => KEY,
        "ScheduleKeyDeletion" => &["KeyId", "PendingWindowInDays"],
        "GetParametersForImport" => &["KeyId", "WrappingAlgorithm", "WrappingKeySpec"],
        "ImportKeyMaterial" => &[
            "KeyId",
            "ImportToken",
            "EncryptedKeyMaterial",
            "ValidTo",
            "ExpirationModel",
            "ImportType",
            "KeyMaterialDescription",
            "KeyMaterialId",
        ],
        "DeleteImportedKeyMaterial" => &["KeyId", "KeyMaterialId"],
        "EnableKeyRotation" => &["KeyId", "RotationPeriodInDays"],
        "ListKeyRotations" => &["KeyId", "IncludeKeyMaterial", "Limit", "Marker"],
        "TagResource" => &["KeyId", "Tags"],
        "UntagResource" => &["KeyId", "TagKeys"],
        "ListResourceTags" => &["KeyId", "Limit", "Marker"],
        "CreateAlias" | "UpdateAlias" => &["AliasName", "TargetKeyId"],
        "DeleteAlias" => &["AliasName"],
        "ListAliases" => &["KeyId", "Limit", "Marker"],
        "Encrypt" => &["KeyId", "Plaintext", "EncryptionContext", "GrantTokens", "EncryptionAlgorithm", "DryRun"],
        "Decrypt" => &[
            "CiphertextBlob",
            "EncryptionContext",
            "GrantTokens",
            "KeyId",
            "EncryptionAlgorithm",
            "Recipient",
            "DryRun",
            "DryRunModifiers",
        ],
        "ReEncrypt" => &[
            "CiphertextBlob",
            "SourceEncryptionContext",
            "SourceKeyId",
            "DestinationKeyId",
            "DestinationEncryptionContext",
            "SourceEncryptionAlgorithm",
            "DestinationEncryptionAlgorithm",
            "GrantTokens",
            "DryRun",
            "DryRunModifiers",
        ],
        "GenerateDataKey" => {
            &["KeyId", "EncryptionContext", "NumberOfBytes", "KeySpec", "GrantTokens", "Recipient", "DryRun"]
        }
        "GenerateDataKeyWithoutPlaintext" => {
            &["KeyId", "EncryptionContext", "KeySpec", "NumberOfBytes", "GrantTokens", "DryRun"]
        }
        "GenerateRandom" => &["NumberOfBytes", "CustomKeyStoreId", "Recipient"],
        "PutKeyPolicy" => &["KeyId", "PolicyName", "Policy", "BypassPolicyLockoutSafetyCheck"],
        "GetKeyPolicy" => &["KeyId", "PolicyName"],
        "ListKeyPolicies" => &["KeyId", "Limit", "Marker"],
        "CreateGrant" => &[
            "KeyId",
            "GranteePrincipal",
            "RetiringPrincipal",
            "Operations",
            "Constraints",
            "GrantTokens",
            "Name",
            "DryRun",
        ],
        "ListGrants" => &["KeyId", "GrantId", "GranteePrincipal", "Limit", "Marker", "GrantTokens"],
        "ListRetirableGrants" => &["RetiringPrincipal", "Limit", "Marker"],
        "RetireGrant" => &["GrantToken", "KeyId", "GrantId", "DryRun"],
        "RevokeGrant" => &["KeyId", "GrantId", "DryRun"],
        _ => return None,
    })
}

/// The members each operation requires (AWS API reference, request syntax: "Required: Yes").
/// The service's parser is the authority (a missing one is a ValidationException `Value null
/// at '<member>'`); this list only lets `keyledger kms <operation> --help` say so, and a unit
/// test holds it to the parser.
pub fn required(operation: &str) -> &'static [&'static str] {
    const KEY: &[&str] = &["KeyId"];
    match operation {
        "DescribeKey"
        | "EnableKey"
        | "DisableKey"
        | "CancelKeyDeletion"
        | "RotateKeyOnDemand"
        | "DisableKeyRotation"
        | "GetKeyRotationStatus"
        | "ScheduleKeyDeletion"
        | "DeleteImportedKeyMaterial"
        | "EnableKeyRotation"
        | "ListKeyRotations"
        | "ListResourceTags"
        | "GenerateDataKey"
        | "GenerateDataKeyWithoutPlaintext"
        | "GetKeyPolicy"
        | "ListKeyPolicies"
        | "ListGrants" => KEY,
        "UpdateKeyDescription" => &["KeyId", "Description"],
        "GetParametersForImport" => &["KeyId", "WrappingAlgorithm", "WrappingKeySpec"],
        "ImportKeyMaterial" => &["KeyId", "ImportToken", "EncryptedKeyMaterial"],
        "TagResource" => &["KeyId", "Tags"],
        "UntagResource" => &["KeyId", "TagKeys"],
        "CreateAlias" | "UpdateAlias" => &["AliasName", "TargetKeyId"],
        "DeleteAlias" => &["AliasName"],
        "Encrypt" => &["KeyId", "Plaintext"],
        "Decrypt" => &["CiphertextBlob"],
        "ReEncrypt" => &["CiphertextBlob", "DestinationKeyId"],
        "PutKeyPolicy" => &["KeyId", "Policy"],
        "CreateGrant" => &["KeyId", "GranteePrincipal", "Operations"],
        "ListRetirableGrants" => &["RetiringPrincipal"],
        "RevokeGrant" => &["KeyId", "GrantId"],
        _ => &[],
    }
}

/// How a member's value is written on the command line (the placeholder in `--help`).
fn value_kind(member: &str) -> &'static str {
    if BOOL_MEMBERS.contains(&member) {
        ""
    } else if BLOB_MEMBERS.contains(&member) {
        "<blob>"
    } else if INT_MEMBERS.contains(&member) {
        "<integer>"
    } else if TIMESTAMP_MEMBERS.contains(&member) {
        "<timestamp>"
    } else if MAP_MEMBERS.contains(&member) {
        "<map>"
    } else if LIST_MEMBERS.contains(&member) {
        "<value>..."
    } else if member == "Tags" {
        "<tag>..."
    } else if TEXT_MEMBERS.contains(&member) {
        "<document>"
    } else {
        "<text>"
    }
}

/// `keyledger kms <operation> --help`: the operation's flags (required ones first, bare;
/// optional ones in brackets) and how each kind of value is written. `None` for a name that is
/// not an operation the command line knows.
pub fn operation_help(op: &str) -> Option<String> {
    let operation = pascal(op);
    let members = members(&operation)?;
    let required = required(&operation);
    let flag = |m: &str| {
        let kind = value_kind(m);
        if kind.is_empty() {
            format!("--{k} | --no-{k}", k = kebab_case(m))
        } else {
            format!("--{} {kind}", kebab_case(m))
        }
    };
    let mut usage = format!("usage: keyledger kms {}", kebab_case(&operation));
    for m in members.iter().filter(|m| required.contains(m)) {
        usage.push_str(&format!(" {}", flag(m)));
    }
    for m in members.iter().filter(|m| !required.contains(m)) {
        usage.push_str(&format!(" [{}]", flag(m)));
    }
    let mut kinds: Vec<&str> = members.iter().map(|m| value_kind(m)).filter(|k| !k.is_empty()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut text = format!(
        "{usage}\n\nThe request members of the AWS KMS {operation} operation, in kebab case (the AWS API \
         reference has what each means).\n"
    );
    for kind in kinds {
        let how = match kind {
            "<blob>" => "base64 text, or fileb://PATH for the raw bytes of a file",
            "<integer>" => "a whole number",
            "<timestamp>" => "epoch seconds, a date (2027-01-01, midnight UTC) or RFC 3339 (2027-01-01T00:00:00Z)",
            "<map>" => "k=v,k2=v2 or a JSON object",
            "<value>..." => "one or more values separated by spaces, or a JSON list",
            "<tag>..." => "one or more TagKey=k,TagValue=v, or a JSON list of {\"TagKey\",\"TagValue\"}",
            "<document>" => "JSON text, or file://PATH to read it from a file",
            _ => "a string (a key id, key ARN, alias name or alias ARN where it names a key)",
        };
        text.push_str(&format!("  {kind:<12} {how}\n"));
    }
    text.push_str(
        "\nAny flag but a <blob> also takes file://PATH (the file's text).\n\
         Also: --cli-input-json JSON|file://PATH (the whole request), --query EXPR (JMESPath), \
         --output json|text, --profile PATH.\nExit codes: 0 success, 254 the service refused (the AWS \
         error is printed), 252 a command-line error.",
    );
    Some(text)
}

/// AWS KMS operations Keyledger does not offer yet: sent as they are (the service answers
/// UnsupportedOperationException) instead of being refused as unknown.
const NOT_YET: &[&str] = &[
    "Sign",
    "Verify",
    "GetPublicKey",
    "GenerateMac",
    "VerifyMac",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "DeriveSharedSecret",
    "ReplicateKey",
    "UpdatePrimaryRegion",
    "GetKeyLastUsage",
];

/// aws CLI global switches that take no value and change nothing here.
const IGNORED_SWITCHES: &[&str] = &["no-cli-pager", "no-paginate", "no-verify-ssl"];

/// Members that are blobs (base64 in JSON).
const BLOB_MEMBERS: &[&str] = &["Plaintext", "CiphertextBlob", "ImportToken", "EncryptedKeyMaterial"];
/// Members that are timestamps: epoch seconds, a date or RFC 3339 (`2027-01-01T00:00:00Z`), as
/// the aws CLI accepts them; sent as epoch seconds.
const TIMESTAMP_MEMBERS: &[&str] = &["ValidTo"];
/// Members that are integers.
const INT_MEMBERS: &[&str] = &["NumberOfBytes", "Limit", "PendingWindowInDays", "RotationPeriodInDays"];
/// Members that are booleans.
const BOOL_MEMBERS: &[&str] = &["DryRun", "BypassPolicyLockoutSafetyCheck", "MultiRegion"];
/// Members that are string→string maps.
const MAP_MEMBERS: &[&str] =
    &["EncryptionContext", "SourceEncryptionContext", "DestinationEncryptionContext", "Constraints"];
/// Members that are lists of strings.
const LIST_MEMBERS: &[&str] = &["GrantTokens", "TagKeys", "DryRunModifiers", "Operations"];
/// Members that are text sent as is, even when it is JSON (a key policy document):
/// `file://PATH` reads it from a file, as the aws CLI does.
const TEXT_MEMBERS: &[&str] = &["Policy"];

/// A timestamp flag: epoch seconds (`1798761600`, fractions allowed), a date (midnight UTC) or
/// RFC 3339.
fn timestamp_value(raw: &str) -> Result<Value, String> {
    if let Ok(secs) = raw.parse::<f64>() {
        return serde_json::Number::from_f64(secs).map(Value::Number).ok_or_else(|| format!("'{raw}' is not a time"));
    }
    // A bare date (`2027-01-01`) is midnight UTC, as the aws CLI reads it.
    let date_only = time::macros::format_description!("[year]-[month]-[day]");
    let t = match time::Date::parse(raw, &date_only) {
        Ok(d) => d.midnight().assume_utc(),
        Err(_) => time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339).map_err(|_| {
            format!("'{raw}' is neither epoch seconds, a date (2027-01-01) nor an RFC 3339 time (2027-01-01T00:00:00Z)")
        })?,
    };
    let secs = t.unix_timestamp() as f64 + f64::from(t.nanosecond()) / 1e9;
    serde_json::Number::from_f64(secs).map(Value::Number).ok_or_else(|| format!("'{raw}' is not a time"))
}

/// Kebab case → PascalCase (`key-id` → `KeyId`).
pub fn pascal(kebab: &str) -> String {
    kebab
        .split('-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn blob_value(member: &str, raw: &str) -> Result<Value, String> {
    if let Some(path) = raw.strip_prefix("fileb://") {
        let bytes = std::fs::read(path).map_err(|e| format!("--{}: cannot read {path}: {e}", kebab_case(member)))?;
        return Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)));
    }
    base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| format!("--{}: expected base64 text or fileb://PATH", kebab_case(member)))?;
    Ok(Value::String(raw.to_owned()))
}

/// PascalCase → kebab case (`KeyId` → `key-id`).
pub fn kebab_case(pascal: &str) -> String {
    let mut out = String::new();
    for (i, ch) in pascal.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

fn json_or(raw: &str) -> Option<Value> {
    let t = raw.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        serde_json::from_str(raw).ok()
    } else {
        None
    }
}

/// Parses `k=v,k2=v2` (or a JSON object) into a JSON object of strings.
pub fn parse_map(raw: &str) -> Result<Value, String> {
    if let Some(v) = json_or(raw) {
        return if v.is_object() { Ok(v) } else { Err("expected a JSON object".into()) };
    }
    let mut map = BTreeMap::new();
    for pair in raw.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("expected key=value, got '{pair}'"))?;
        if map.insert(k.to_owned(), Value::String(v.to_owned())).is_some() {
            return Err(format!("key '{k}' given more than once"));
        }
    }
    Ok(Value::Object(map.into_iter().collect()))
}

fn parse_tags(values: &[String]) -> Result<Value, String> {
    if values.len() == 1 {
        if let Some(v) = json_or(&values[0]) {
            return Ok(v);
        }
    }
    let mut tags = Vec::new();
    for item in values {
        let mut tag = Map::new();
        for part in item.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("expected TagKey=k,TagValue=v, got '{item}'"))?;
            tag.insert(k.to_owned(), Value::String(v.to_owned()));
        }
        tags.push(Value::Object(tag));
    }
    Ok(Value::Array(tags))
}

/// Parses the arguments after `keyledger kms`.
pub fn parse(args: &[String]) -> Result<KmsInvocation, String> {
    let (op, rest) = args.split_first().ok_or("missing operation (e.g. `keyledger kms create-key`)")?;
    let operation = pascal(op);
    let allowed = members(&operation);
    if allowed.is_none() && !NOT_YET.contains(&operation.as_str()) {
        return Err(format!("argument operation: Invalid choice '{op}' (see `keyledger kms --help`)"));
    }
    let mut request = Map::new();
    let mut query = None;
    let mut text_output = false;
    let mut profile = None;
    let mut i = 0;
    while i < rest.len() {
        let flag = rest[i].strip_prefix("--").ok_or_else(|| format!("unexpected argument '{}'", rest[i]))?;
        // Collect the values up to the next flag.
        let mut values = Vec::new();
        let mut j = i + 1;
        while j < rest.len() && !rest[j].starts_with("--") {
            values.push(rest[j].clone());
            j += 1;
        }
        i = j;
        if IGNORED_SWITCHES.contains(&flag) {
            continue;
        }
        match flag {
            "query" => query = Some(single(flag, &values)?.to_owned()),
            "profile" => profile = Some(std::path::PathBuf::from(single(flag, &values)?)),
            "output" => {
                text_output = match single(flag, &values)? {
                    "text" => true,
                    "json" => false,
                    other => return Err(format!("--output: '{other}' is not supported (json or text)")),
                }
            }
            "cli-input-json" => {
                let raw = single(flag, &values)?;
                let text = match raw.strip_prefix("file://") {
                    Some(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
                    None => raw.to_owned(),
                };
                let v: Value = serde_json::from_str(&text).map_err(|e| format!("--cli-input-json: {e}"))?;
                let obj = v.as_object().ok_or("--cli-input-json must be a JSON object")?;
                request.extend(obj.clone());
            }
            _ => {
                let (negated, name) = match flag.strip_prefix("no-") {
                    Some(n) if BOOL_MEMBERS.contains(&pascal(n).as_str()) => (true, n),
                    _ => (false, flag),
                };
                let member = pascal(name);
                if let Some(allowed) = allowed {
                    if !allowed.contains(&member.as_str()) {
                        return Err(format!("Unknown options: --{flag} (not a member of {operation})"));
                    }
                }
                if request.contains_key(&member) {
                    return Err(format!("--{flag} given more than once"));
                }
                // `file://PATH` as the only value of a non-blob member: the file's text is the
                // value, as the aws CLI reads it (blobs take `fileb://`).
                let values = match values.as_slice() {
                    [one] if !BLOB_MEMBERS.contains(&member.as_str()) => match one.strip_prefix("file://") {
                        Some(path) => vec![std::fs::read_to_string(path)
                            .map_err(|e| format!("--{flag}: cannot read {path}: {e}"))?
                            .trim_end()
                            .to_owned()],
                        None => values,
                    },
                    _ => values,
                };
                let value = if BOOL_MEMBERS.contains(&member.as_str()) {
                    match values.first().map(String::as_str) {
                        None => Value::Bool(!negated),
                        Some("true") => Value::Bool(true),
                        Some("false") => Value::Bool(false),
                        Some(other) => return Err(format!("--{flag}: expected true or false, got '{other}'")),
                    }
                } else if BLOB_MEMBERS.contains(&member.as_str()) {
                    blob_value(&member, single(flag, &values)?)?
                } else if INT_MEMBERS.contains(&member.as_str()) {
                    let raw = single(flag, &values)?;
                    Value::from(raw.parse::<i64>().map_err(|_| format!("--{flag}: expected an integer, got '{raw}'"))?)
                } else if TIMESTAMP_MEMBERS.contains(&member.as_str()) {
                    timestamp_value(single(flag, &values)?).map_err(|e| format!("--{flag}: {e}"))?
                } else if MAP_MEMBERS.contains(&member.as_str()) {
                    parse_map(single(flag, &values)?).map_err(|e| format!("--{flag}: {e}"))?
                } else if LIST_MEMBERS.contains(&member.as_str()) {
                    if values.len() == 1 && json_or(&values[0]).is_some() {
                        json_or(&values[0]).unwrap()
                    } else if values.is_empty() {
                        return Err(format!("--{flag} needs at least one value"));
                    } else {
                        Value::Array(values.iter().cloned().map(Value::String).collect())
                    }
                } else if TEXT_MEMBERS.contains(&member.as_str()) {
                    Value::String(single(flag, &values)?.to_owned())
                } else if member == "Tags" {
                    if values.is_empty() {
                        return Err("--tags needs at least one TagKey=k,TagValue=v".into());
                    }
                    parse_tags(&values).map_err(|e| format!("--tags: {e}"))?
                } else {
                    let raw = single(flag, &values)?;
                    json_or(raw).unwrap_or_else(|| Value::String(raw.to_owned()))
                };
                request.insert(member, value);
            }
        }
    }
    Ok(KmsInvocation { operation, request: Value::Object(request), query, text_output, profile })
}

fn single<'a>(flag: &str, values: &'a [String]) -> Result<&'a str, String> {
    match values {
        [one] => Ok(one),
        [] => Err(format!("--{flag} needs a value")),
        _ => Err(format!("--{flag} takes one value, got {}", values.len())),
    }
}

/// Renders a response per `--query` (JMESPath, as the aws CLI) and `--output`.
///
/// Errors: an invalid JMESPath expression.
pub fn render(inv: &KmsInvocation, body: &Value) -> Result<String, String> {
    let selected = match &inv.query {
        None => body.clone(),
        Some(q) => {
            let expr = jmespath::compile(q).map_err(|e| format!("--query: {e}"))?;
            let data = jmespath::Variable::from_json(&body.to_string()).map_err(|e| format!("--query: {e}"))?;
            let result = expr.search(data).map_err(|e| format!("--query: {e}"))?;
            serde_json::to_value(&*result).map_err(|e| format!("--query: {e}"))?
        }
    };
    Ok(match (&selected, inv.text_output) {
        (Value::Null, true) => "None".to_owned(),
        (Value::String(s), true) => s.clone(),
        (Value::Array(items), true) if items.iter().all(|v| !v.is_object() && !v.is_array()) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
            .collect::<Vec<_>>()
            .join("\t"),
        (v, true) if !v.is_object() && !v.is_array() => v.to_string(),
        (v, _) => serde_json::to_string_pretty(v).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn operation_and_members_are_pascal_cased() {
        let inv =
            parse(&args(&["generate-data-key-without-plaintext", "--key-id", "alias/x", "--key-spec", "AES_256"]))
                .unwrap();
        assert_eq!(inv.operation, "GenerateDataKeyWithoutPlaintext");
        assert_eq!(inv.request, serde_json::json!({"KeyId": "alias/x", "KeySpec": "AES_256"}));
    }

    #[test]
    fn encryption_context_and_integers_and_switches_are_typed() {
        let inv = parse(&args(&[
            "generate-data-key",
            "--key-id",
            "k",
            "--number-of-bytes",
            "32",
            "--encryption-context",
            "b=2,a=1",
            "--dry-run",
        ]))
        .unwrap();
        assert_eq!(inv.request["NumberOfBytes"], 32);
        assert_eq!(inv.request["EncryptionContext"], serde_json::json!({"a": "1", "b": "2"}));
        assert_eq!(inv.request["DryRun"], true);
        let inv = parse(&args(&["encrypt", "--no-dry-run"])).unwrap();
        assert_eq!(inv.request["DryRun"], false);
    }

    #[test]
    fn blobs_are_read_from_fileb_paths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pt");
        std::fs::write(&p, b"hello").unwrap();
        let inv = parse(&args(&["encrypt", "--plaintext", &format!("fileb://{}", p.display())])).unwrap();
        assert_eq!(inv.request["Plaintext"], "aGVsbG8=");
        assert!(parse(&args(&["encrypt", "--plaintext", "not base64!"])).is_err());
    }

    #[test]
    fn tags_and_lists_take_several_values() {
        let inv =
            parse(&args(&["tag-resource", "--key-id", "k", "--tags", "TagKey=a,TagValue=1", "TagKey=b,TagValue=2"]))
                .unwrap();
        assert_eq!(
            inv.request["Tags"],
            serde_json::json!([{"TagKey":"a","TagValue":"1"},{"TagKey":"b","TagValue":"2"}])
        );
        let inv = parse(&args(&["untag-resource", "--key-id", "k", "--tag-keys", "a", "b"])).unwrap();
        assert_eq!(inv.request["TagKeys"], serde_json::json!(["a", "b"]));
    }

    #[test]
    fn unknown_flags_operations_and_repeats_are_refused() {
        let e = parse(&args(&["encrypt", "--key-id", "k", "--encrpytion-context", "a=1"])).unwrap_err();
        assert!(e.contains("Unknown options: --encrpytion-context"), "{e}");
        assert!(parse(&args(&["frobnicate"])).unwrap_err().contains("Invalid choice"));
        assert!(parse(&args(&["create-grant", "--key-id", "k"])).is_ok(), "known AWS operations go to the service");
        assert!(parse(&args(&["encrypt", "--key-id", "a", "--key-id", "b"])).unwrap_err().contains("more than once"));
        assert!(parse(&args(&["encrypt", "--encryption-context", "a=1,a=2"])).unwrap_err().contains("more than once"));
        let inv = parse(&args(&["list-keys", "--profile", "/x.json", "--no-cli-pager"])).unwrap();
        assert_eq!(inv.profile.as_deref(), Some(std::path::Path::new("/x.json")));
        assert_eq!(inv.request, serde_json::json!({}));
    }

    #[test]
    fn import_flags_take_blobs_and_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("material.bin");
        std::fs::write(&path, [1u8, 2, 3]).unwrap();
        let inv = parse(&args(&[
            "import-key-material",
            "--key-id",
            "k",
            "--import-token",
            "AAEC",
            "--encrypted-key-material",
            &format!("fileb://{}", path.display()),
            "--valid-to",
            "2027-01-01T00:00:00Z",
        ]))
        .unwrap();
        assert_eq!(inv.request["EncryptedKeyMaterial"], "AQID");
        assert_eq!(inv.request["ImportToken"], "AAEC");
        assert_eq!(inv.request["ValidTo"].as_f64(), Some(1_798_761_600.0));
        let inv = parse(&args(&["import-key-material", "--valid-to", "2027-01-01"])).unwrap();
        assert_eq!(inv.request["ValidTo"].as_f64(), Some(1_798_761_600.0));
        let inv = parse(&args(&["import-key-material", "--valid-to", "1798761600.5"])).unwrap();
        assert_eq!(inv.request["ValidTo"].as_f64(), Some(1_798_761_600.5));
        assert!(parse(&args(&["import-key-material", "--valid-to", "tomorrow"])).unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn policy_text_stays_text_and_grant_flags_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(&path, r#"{"Version":"2012-10-17","Statement":[]}"#).unwrap();
        let inv = parse(&args(&["put-key-policy", "--key-id", "k", "--policy", &format!("file://{}", path.display())]))
            .unwrap();
        assert_eq!(inv.request["Policy"], r#"{"Version":"2012-10-17","Statement":[]}"#);
        let inv = parse(&args(&["create-key", "--policy", r#"{"Statement":[]}"#])).unwrap();
        assert_eq!(inv.request["Policy"], r#"{"Statement":[]}"#, "inline JSON is sent as a string");
        let inv = parse(&args(&[
            "create-grant",
            "--key-id",
            "k",
            "--grantee-principal",
            "arn:aws:iam::111122223333:user/app",
            "--operations",
            "Encrypt",
            "Decrypt",
            "--constraints",
            r#"{"EncryptionContextSubset":{"a":"b"}}"#,
        ]))
        .unwrap();
        assert_eq!(inv.request["Operations"], serde_json::json!(["Encrypt", "Decrypt"]));
        assert_eq!(inv.request["Constraints"]["EncryptionContextSubset"]["a"], "b");
    }

    #[test]
    fn every_operation_has_help_and_its_required_members_are_the_parsers() {
        for op in keyledger_kms::Operation::all() {
            let name = op.name();
            let help = operation_help(&kebab_case(name)).unwrap_or_else(|| panic!("no help for {name}"));
            let members = members(name).unwrap();
            for m in members {
                assert!(help.contains(&format!("--{}", kebab_case(m))), "{name}: --help misses {m}");
            }
            // The parser, given no members at all, names exactly the required ones as null.
            let null_members: Vec<String> = match keyledger_kms::parse_request(op, b"{}") {
                Ok(_) => Vec::new(),
                Err(e) => e
                    .message
                    .split("Value null at '")
                    .skip(1)
                    .map(|rest| rest.split('\'').next().unwrap().to_owned())
                    .collect(),
            };
            let mut expected: Vec<String> = required(name)
                .iter()
                .map(|m| {
                    assert!(members.contains(m), "{name}: required {m} is not a member");
                    let mut c = m.chars();
                    c.next().unwrap().to_ascii_lowercase().to_string() + c.as_str()
                })
                .collect();
            let mut null_members = null_members;
            expected.sort();
            null_members.sort();
            assert_eq!(null_members, expected, "{name}: required members differ from the parser's");
        }
        assert!(operation_help("encrypt").unwrap().starts_with(
            "usage: keyledger kms encrypt --key-id <text> --plaintext <blob> [--encryption-context <map>]"
        ));
        assert!(operation_help("frobnicate").is_none());
    }

    #[test]
    fn file_urls_supply_maps_lists_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx.json");
        std::fs::write(&ctx, "{\"app\": \"orders\"}\n").unwrap();
        let inv = parse(&args(&["encrypt", "--encryption-context", &format!("file://{}", ctx.display())])).unwrap();
        assert_eq!(inv.request["EncryptionContext"], serde_json::json!({"app": "orders"}));
        let tokens = dir.path().join("tokens.json");
        std::fs::write(&tokens, r#"["t1","t2"]"#).unwrap();
        let inv = parse(&args(&["encrypt", "--grant-tokens", &format!("file://{}", tokens.display())])).unwrap();
        assert_eq!(inv.request["GrantTokens"], serde_json::json!(["t1", "t2"]));
        let missing = dir.path().join("missing.json");
        let e =
            parse(&args(&["encrypt", "--encryption-context", &format!("file://{}", missing.display())])).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn bad_command_lines_are_explained() {
        assert!(parse(&[]).unwrap_err().contains("missing operation"));
        assert!(parse(&args(&["encrypt", "stray"])).unwrap_err().contains("unexpected argument"));
        assert!(parse(&args(&["encrypt", "--key-id"])).unwrap_err().contains("needs a value"));
        assert!(parse(&args(&["generate-random", "--number-of-bytes", "x"])).unwrap_err().contains("integer"));
    }

    #[test]
    fn query_with_text_output_prints_the_bare_value() {
        let inv = parse(&args(&["describe-key", "--key-id", "k", "--query", "KeyId", "--output", "text"])).unwrap();
        assert_eq!(render(&inv, &serde_json::json!({"KeyId": "arn:x"})).unwrap(), "arn:x");
        let inv =
            parse(&args(&["describe-key", "--key-id", "k", "--query", "KeyMetadata.KeyState", "--output", "text"]))
                .unwrap();
        assert_eq!(render(&inv, &serde_json::json!({"KeyMetadata": {"KeyState": "Enabled"}})).unwrap(), "Enabled");
        let inv = parse(&args(&["list-keys", "--query", "Keys[*].KeyId", "--output", "text"])).unwrap();
        assert_eq!(render(&inv, &serde_json::json!({"Keys": [{"KeyId": "a"}, {"KeyId": "b"}]})).unwrap(), "a\tb");
        let inv = parse(&args(&["list-keys", "--query", "length(Keys)"])).unwrap();
        assert_eq!(render(&inv, &serde_json::json!({"Keys": [1, 2, 3]})).unwrap(), "3");
        let inv = parse(&args(&["list-keys", "--query", "Keys[?"])).unwrap();
        assert!(render(&inv, &serde_json::json!({})).is_err());
    }
}
