//! Key policies as a table of documents × requests → decision (aws-kms-api.md §6; IAM JSON
//! policy reference), plus malformed documents, the default policy and the lockout check.

use keyledger_kms::policy::{Decision, StatementId, MAX_POLICY_BYTES};
use keyledger_kms::{default_key_policy, lockout_check, ErrorKind, KeyPolicy, Realm, RequestContext};
use serde_json::{json, Value};

const ACCOUNT: &str = "111122223333";
const OTHER_ACCOUNT: &str = "444455556666";
const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const OTHER_KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/0000abcd-12ab-34cd-56ef-1234567890ab";
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const BOB: &str = "arn:aws:iam::111122223333:user/bob";
const CAROL_ELSEWHERE: &str = "arn:aws:iam::444455556666:user/carol";
/// 2026-11-30T02:15:12Z
const NOW_MS: u64 = 1_796_004_912_000;

fn doc(statements: Value) -> String {
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

/// One statement allowing or denying `action` to `principal` on every resource, with an
/// optional condition block.
fn st(sid: &str, effect: &str, principal: Value, action: Value, condition: Option<Value>) -> Value {
    let mut s = json!({"Sid": sid, "Effect": effect, "Principal": principal, "Action": action, "Resource": "*"});
    if let Some(c) = condition {
        s["Condition"] = c;
    }
    s
}

fn everyone() -> Value {
    json!("*")
}

fn aws(p: &str) -> Value {
    json!({"AWS": p})
}

/// Alice in ACCOUNT calling `action` on KEY_ARN at NOW_MS.
fn req(action: &str) -> RequestContext {
    RequestContext::new(ALICE, ACCOUNT, action, KEY_ARN, NOW_MS)
}

fn with_ec(mut ctx: RequestContext, pairs: &[(&str, &str)]) -> RequestContext {
    ctx.encryption_context = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ctx
}

fn with_key(mut ctx: RequestContext, key: &str, values: &[&str]) -> RequestContext {
    ctx.other.insert(key.to_owned(), values.iter().map(|v| v.to_string()).collect());
    ctx
}

fn allow(sid: &str) -> Decision {
    Decision::Allow { statement: StatementId::Sid(sid.to_owned()) }
}

fn deny(sid: &str) -> Decision {
    Decision::ExplicitDeny { statement: StatementId::Sid(sid.to_owned()) }
}

const IMPLICIT: Decision = Decision::ImplicitDeny;

/// Allow `kms:*` to everyone under a single condition; the row then says whether it held.
fn cond(op: &str, key: &str, values: Value) -> String {
    doc(json!([st("C", "Allow", everyone(), json!("kms:*"), Some(json!({op: {key: values}})))]))
}

#[test]
fn policy_decisions_table() {
    let allow_all = doc(json!([st("All", "Allow", everyone(), json!("kms:*"), None)]));
    let allow_and_deny = doc(json!([
        st("UseKey", "Allow", aws(ALICE), json!(["kms:Encrypt", "kms:Decrypt"]), None),
        st("NoDecrypt", "Deny", everyone(), json!("kms:Decrypt"), None),
    ]));
    let reencrypt = doc(json!([st("Re", "Allow", aws(ALICE), json!("kms:Re*"), None)]));
    let datakeys = doc(json!([st("DK", "Allow", aws(ALICE), json!("kms:Generate?ataKey*"), None)]));
    let not_action = doc(json!([
        st("Admin", "Allow", aws(ACCOUNT), json!("kms:*"), None),
        {"Sid": "NoCrypto", "Effect": "Deny", "Principal": aws(BOB), "NotAction": ["kms:Describe*", "kms:List*"], "Resource": "*"},
    ]));
    let cross_by_arn = doc(json!([st("Carol", "Allow", aws(CAROL_ELSEWHERE), json!("kms:Decrypt"), None)]));
    let cross_by_root = doc(json!([st(
        "Other",
        "Allow",
        aws(&format!("arn:aws:iam::{OTHER_ACCOUNT}:root")),
        json!("kms:Decrypt"),
        None
    )]));
    let bare_account = doc(json!([st("Bare", "Allow", json!({"AWS": [OTHER_ACCOUNT]}), json!("kms:Decrypt"), None)]));
    let service_only = doc(json!([st("Svc", "Allow", json!({"Service": "logs.amazonaws.com"}), json!("kms:*"), None)]));
    let not_principal = doc(json!([
        st("All", "Allow", everyone(), json!("kms:*"), None),
        {"Sid": "OnlyAlice", "Effect": "Deny", "NotPrincipal": aws(ALICE), "Action": "kms:Decrypt", "Resource": "*"},
    ]));
    let resource_arn = doc(json!([
        {"Sid": "ThisKey", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": KEY_ARN},
    ]));
    let not_resource = doc(json!([
        {"Sid": "NotThat", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "NotResource": OTHER_KEY_ARN},
    ]));
    let no_sid = doc(json!([
        {"Effect": "Allow", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"},
    ]));
    let single_object = json!({"Version": "2008-10-17", "Statement":
        {"Sid": "One", "Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "KMS:ENCRYPT", "Resource": "*"}})
    .to_string();
    let ec_keys_any = cond("ForAnyValue:StringEquals", "kms:EncryptionContextKeys", json!(["Dept", "Project"]));
    let ec_keys_all = cond("ForAllValues:StringEquals", "kms:EncryptionContextKeys", json!(["Dept", "Project"]));
    let grant_ops_all = cond("ForAllValues:StringEquals", "kms:GrantOperations", json!(["Decrypt", "Encrypt"]));
    let grant_ops_any_not = cond("ForAnyValue:StringNotEquals", "kms:GrantOperations", json!(["Decrypt", "Encrypt"]));
    let two_conditions = doc(json!([st(
        "Both",
        "Allow",
        everyone(),
        json!("kms:*"),
        Some(json!({"StringEquals": {"kms:CallerAccount": ACCOUNT, "kms:EncryptionContext:Dept": ["HR", "IT"]},
                    "Bool": {"aws:SecureTransport": "true"}}))
    )]));

    let rows: Vec<(&str, String, RequestContext, Decision)> = vec![
        // Effect, principals, explicit deny.
        ("allow all", allow_all.clone(), req("kms:Encrypt"), allow("All")),
        ("allow by principal ARN", allow_and_deny.clone(), req("kms:Encrypt"), allow("UseKey")),
        ("explicit deny beats allow", allow_and_deny.clone(), req("kms:Decrypt"), deny("NoDecrypt")),
        (
            "other principal: nothing allows",
            allow_and_deny.clone(),
            RequestContext::new(BOB, ACCOUNT, "kms:Encrypt", KEY_ARN, NOW_MS),
            IMPLICIT,
        ),
        ("action not listed", allow_and_deny.clone(), req("kms:ScheduleKeyDeletion"), IMPLICIT),
        ("action names are case-insensitive", single_object.clone(), req("kms:encrypt"), allow("One")),
        ("legacy version, single statement object", single_object.clone(), req("kms:Encrypt"), allow("One")),
        // Action wildcards.
        ("kms:Re* matches ReEncryptFrom", reencrypt.clone(), req("kms:ReEncryptFrom"), allow("Re")),
        ("kms:Re* matches RetireGrant too", reencrypt.clone(), req("kms:RetireGrant"), allow("Re")),
        ("kms:Re* does not match Decrypt", reencrypt.clone(), req("kms:Decrypt"), IMPLICIT),
        (
            "Generate?ataKey* matches GenerateDataKeyPair",
            datakeys.clone(),
            req("kms:GenerateDataKeyPairWithoutPlaintext"),
            allow("DK"),
        ),
        ("Generate?ataKey* matches GenerateDataKey", datakeys.clone(), req("kms:GenerateDataKey"), allow("DK")),
        ("Generate?ataKey* does not match GenerateRandom", datakeys.clone(), req("kms:GenerateRandom"), IMPLICIT),
        // NotAction.
        (
            "NotAction: Bob may describe",
            not_action.clone(),
            RequestContext::new(BOB, ACCOUNT, "kms:DescribeKey", KEY_ARN, NOW_MS),
            allow("Admin"),
        ),
        (
            "NotAction: Bob may not encrypt",
            not_action.clone(),
            RequestContext::new(BOB, ACCOUNT, "kms:Encrypt", KEY_ARN, NOW_MS),
            deny("NoCrypto"),
        ),
        ("NotAction: Alice unaffected", not_action.clone(), req("kms:Encrypt"), allow("Admin")),
        // Cross-account.
        (
            "cross-account by ARN: that principal",
            cross_by_arn.clone(),
            RequestContext::new(CAROL_ELSEWHERE, OTHER_ACCOUNT, "kms:Decrypt", KEY_ARN, NOW_MS),
            allow("Carol"),
        ),
        (
            "cross-account by ARN: not another of that account",
            cross_by_arn.clone(),
            RequestContext::new("arn:aws:iam::444455556666:user/dave", OTHER_ACCOUNT, "kms:Decrypt", KEY_ARN, NOW_MS),
            IMPLICIT,
        ),
        (
            "cross-account by root: any principal of that account",
            cross_by_root.clone(),
            RequestContext::new("arn:aws:iam::444455556666:role/app", OTHER_ACCOUNT, "kms:Decrypt", KEY_ARN, NOW_MS),
            allow("Other"),
        ),
        ("cross-account by root: not the owner account", cross_by_root.clone(), req("kms:Decrypt"), IMPLICIT),
        (
            "bare account id = account root",
            bare_account.clone(),
            RequestContext::new(CAROL_ELSEWHERE, OTHER_ACCOUNT, "kms:Decrypt", KEY_ARN, NOW_MS),
            allow("Bare"),
        ),
        ("service principals never match", service_only.clone(), req("kms:Encrypt"), IMPLICIT),
        ("NotPrincipal deny spares the named principal", not_principal.clone(), req("kms:Decrypt"), allow("All")),
        (
            "NotPrincipal deny hits everyone else",
            not_principal.clone(),
            RequestContext::new(BOB, ACCOUNT, "kms:Decrypt", KEY_ARN, NOW_MS),
            deny("OnlyAlice"),
        ),
        // Resources.
        ("Resource ARN: this key", resource_arn.clone(), req("kms:Encrypt"), allow("ThisKey")),
        (
            "Resource ARN: another key",
            resource_arn.clone(),
            RequestContext::new(ALICE, ACCOUNT, "kms:Encrypt", OTHER_KEY_ARN, NOW_MS),
            IMPLICIT,
        ),
        ("NotResource: this key", not_resource.clone(), req("kms:Encrypt"), allow("NotThat")),
        (
            "NotResource: the excluded key",
            not_resource.clone(),
            RequestContext::new(ALICE, ACCOUNT, "kms:Encrypt", OTHER_KEY_ARN, NOW_MS),
            IMPLICIT,
        ),
        // Statements without Sid are named by index.
        (
            "no Sid: allow by index",
            no_sid.clone(),
            req("kms:Encrypt"),
            Decision::Allow { statement: StatementId::Index(0) },
        ),
        (
            "no Sid: deny by index",
            no_sid.clone(),
            req("kms:Decrypt"),
            Decision::ExplicitDeny { statement: StatementId::Index(1) },
        ),
        // String operators.
        ("StringEquals +", cond("StringEquals", "kms:CallerAccount", json!(ACCOUNT)), req("kms:Encrypt"), allow("C")),
        (
            "StringEquals -",
            cond("StringEquals", "kms:CallerAccount", json!(OTHER_ACCOUNT)),
            req("kms:Encrypt"),
            IMPLICIT,
        ),
        (
            "StringEquals is case-sensitive",
            cond("StringEquals", "kms:EncryptionContext:Dept", json!("hr")),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR")]),
            IMPLICIT,
        ),
        (
            "condition key names are case-insensitive",
            cond("StringEquals", "KMS:CALLERACCOUNT", json!(ACCOUNT)),
            req("kms:Encrypt"),
            allow("C"),
        ),
        (
            "EncryptionContext:<key>: key part case-insensitive",
            cond("StringEquals", "kms:EncryptionContext:dept", json!("HR")),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR")]),
            allow("C"),
        ),
        (
            "StringNotEquals +",
            cond("StringNotEquals", "kms:EncryptionContext:Dept", json!(["IT", "Ops"])),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR")]),
            allow("C"),
        ),
        (
            "StringNotEquals -",
            cond("StringNotEquals", "kms:EncryptionContext:Dept", json!(["IT", "HR"])),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR")]),
            IMPLICIT,
        ),
        (
            "StringNotEquals, key absent: holds",
            cond("StringNotEquals", "kms:EncryptionContext:Dept", json!("HR")),
            req("kms:Encrypt"),
            allow("C"),
        ),
        (
            "StringEqualsIgnoreCase +",
            cond("StringEqualsIgnoreCase", "kms:EncryptionContext:Dept", json!("hr")),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR")]),
            allow("C"),
        ),
        (
            "StringEqualsIgnoreCase -",
            cond("StringEqualsIgnoreCase", "kms:EncryptionContext:Dept", json!("it")),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR")]),
            IMPLICIT,
        ),
        (
            "StringNotEqualsIgnoreCase +",
            cond("StringNotEqualsIgnoreCase", "kms:EncryptionContext:Dept", json!("it")),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR")]),
            allow("C"),
        ),
        (
            "StringNotEqualsIgnoreCase -",
            cond("StringNotEqualsIgnoreCase", "kms:EncryptionContext:Dept", json!("hr")),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR")]),
            IMPLICIT,
        ),
        (
            "StringLike +",
            cond("StringLike", "kms:EncryptionContext:Path", json!("/data/*/in?ut")),
            with_ec(req("kms:Encrypt"), &[("Path", "/data/x/y/input")]),
            allow("C"),
        ),
        (
            "StringLike -",
            cond("StringLike", "kms:EncryptionContext:Path", json!("/data/*")),
            with_ec(req("kms:Encrypt"), &[("Path", "/tmp/x")]),
            IMPLICIT,
        ),
        (
            "StringNotLike +",
            cond("StringNotLike", "kms:EncryptionContext:Path", json!("/secret/*")),
            with_ec(req("kms:Encrypt"), &[("Path", "/data/x")]),
            allow("C"),
        ),
        (
            "StringNotLike -",
            cond("StringNotLike", "kms:EncryptionContext:Path", json!("/secret/*")),
            with_ec(req("kms:Encrypt"), &[("Path", "/secret/x")]),
            IMPLICIT,
        ),
        (
            "StringEquals, key absent: fails",
            cond("StringEquals", "kms:EncryptionContext:Dept", json!("HR")),
            req("kms:Encrypt"),
            IMPLICIT,
        ),
        // IfExists.
        (
            "StringEqualsIfExists, key absent: holds",
            cond("StringEqualsIfExists", "kms:ViaService", json!("ec2.us-east-1.amazonaws.com")),
            req("kms:Encrypt"),
            allow("C"),
        ),
        (
            "StringEqualsIfExists, key present, matches",
            cond("StringEqualsIfExists", "kms:ViaService", json!("ec2.us-east-1.amazonaws.com")),
            {
                let mut r = req("kms:Encrypt");
                r.via_service = Some("ec2.us-east-1.amazonaws.com".into());
                r
            },
            allow("C"),
        ),
        (
            "StringEqualsIfExists, key present, differs",
            cond("StringEqualsIfExists", "kms:ViaService", json!("ec2.us-east-1.amazonaws.com")),
            {
                let mut r = req("kms:Encrypt");
                r.via_service = Some("s3.us-east-1.amazonaws.com".into());
                r
            },
            IMPLICIT,
        ),
        (
            "NumericLessThanIfExists, key absent: holds",
            cond("NumericLessThanIfExists", "kms:RotationPeriodInDays", json!(400)),
            req("kms:EnableKeyRotation"),
            allow("C"),
        ),
        // Numeric operators.
        (
            "NumericEquals +",
            cond("NumericEquals", "kms:RotationPeriodInDays", json!("365")),
            with_key(req("kms:EnableKeyRotation"), "kms:RotationPeriodInDays", &["365"]),
            allow("C"),
        ),
        (
            "NumericEquals -",
            cond("NumericEquals", "kms:RotationPeriodInDays", json!(365)),
            with_key(req("kms:EnableKeyRotation"), "kms:RotationPeriodInDays", &["90"]),
            IMPLICIT,
        ),
        (
            "NumericNotEquals +",
            cond("NumericNotEquals", "kms:RotationPeriodInDays", json!(365)),
            with_key(req("kms:EnableKeyRotation"), "kms:RotationPeriodInDays", &["90"]),
            allow("C"),
        ),
        (
            "NumericNotEquals -",
            cond("NumericNotEquals", "kms:RotationPeriodInDays", json!(365)),
            with_key(req("kms:EnableKeyRotation"), "kms:RotationPeriodInDays", &["365"]),
            IMPLICIT,
        ),
        (
            "NumericLessThan +",
            cond("NumericLessThan", "kms:RotationPeriodInDays", json!(180)),
            with_key(req("kms:EnableKeyRotation"), "kms:RotationPeriodInDays", &["90"]),
            allow("C"),
        ),
        (
            "NumericLessThan - (equal)",
            cond("NumericLessThan", "kms:RotationPeriodInDays", json!(180)),
            with_key(req("kms:EnableKeyRotation"), "kms:RotationPeriodInDays", &["180"]),
            IMPLICIT,
        ),
        (
            "NumericLessThanEquals + (equal)",
            cond("NumericLessThanEquals", "kms:RotationPeriodInDays", json!(180)),
            with_key(req("kms:EnableKeyRotation"), "kms:RotationPeriodInDays", &["180"]),
            allow("C"),
        ),
        (
            "NumericLessThanEquals -",
            cond("NumericLessThanEquals", "kms:RotationPeriodInDays", json!(180)),
            with_key(req("kms:EnableKeyRotation"), "kms:RotationPeriodInDays", &["181"]),
            IMPLICIT,
        ),
        (
            "NumericGreaterThan +",
            cond("NumericGreaterThan", "kms:ScheduleKeyDeletionPendingWindowInDays", json!(14)),
            with_key(req("kms:ScheduleKeyDeletion"), "kms:ScheduleKeyDeletionPendingWindowInDays", &["30"]),
            allow("C"),
        ),
        (
            "NumericGreaterThan -",
            cond("NumericGreaterThan", "kms:ScheduleKeyDeletionPendingWindowInDays", json!(14)),
            with_key(req("kms:ScheduleKeyDeletion"), "kms:ScheduleKeyDeletionPendingWindowInDays", &["14"]),
            IMPLICIT,
        ),
        (
            "NumericGreaterThanEquals +",
            cond("NumericGreaterThanEquals", "kms:ScheduleKeyDeletionPendingWindowInDays", json!(14)),
            with_key(req("kms:ScheduleKeyDeletion"), "kms:ScheduleKeyDeletionPendingWindowInDays", &["14"]),
            allow("C"),
        ),
        (
            "NumericGreaterThanEquals -",
            cond("NumericGreaterThanEquals", "kms:ScheduleKeyDeletionPendingWindowInDays", json!(14)),
            with_key(req("kms:ScheduleKeyDeletion"), "kms:ScheduleKeyDeletionPendingWindowInDays", &["7"]),
            IMPLICIT,
        ),
        (
            "Numeric on a non-number request value fails",
            cond("NumericLessThan", "kms:RotationPeriodInDays", json!(180)),
            with_key(req("kms:EnableKeyRotation"), "kms:RotationPeriodInDays", &["soon"]),
            IMPLICIT,
        ),
        // Date operators against the request's time.
        (
            "DateLessThan + (before the cut-off)",
            cond("DateLessThan", "aws:CurrentTime", json!("2027-01-01T00:00:00Z")),
            req("kms:Encrypt"),
            allow("C"),
        ),
        (
            "DateLessThan - (after the cut-off)",
            cond("DateLessThan", "aws:CurrentTime", json!("2026-11-30T02:15:11Z")),
            req("kms:Encrypt"),
            IMPLICIT,
        ),
        (
            "DateLessThanEquals + (same instant)",
            cond("DateLessThanEquals", "aws:CurrentTime", json!("2026-11-30T02:15:12Z")),
            req("kms:Encrypt"),
            allow("C"),
        ),
        (
            "DateLessThanEquals -",
            cond("DateLessThanEquals", "aws:CurrentTime", json!("2026-11-29")),
            req("kms:Encrypt"),
            IMPLICIT,
        ),
        (
            "DateGreaterThan + (epoch seconds)",
            cond("DateGreaterThan", "aws:CurrentTime", json!("1796004911")),
            req("kms:Encrypt"),
            allow("C"),
        ),
        (
            "DateGreaterThan -",
            cond("DateGreaterThan", "aws:CurrentTime", json!("2026-11-30T03:15:12+01:00")),
            req("kms:Encrypt"),
            IMPLICIT,
        ),
        (
            "DateGreaterThanEquals + (offset form)",
            cond("DateGreaterThanEquals", "aws:CurrentTime", json!("2026-11-30T03:15:12+01:00")),
            req("kms:Encrypt"),
            allow("C"),
        ),
        (
            "DateGreaterThanEquals -",
            cond("DateGreaterThanEquals", "aws:CurrentTime", json!("2026-12-01")),
            req("kms:Encrypt"),
            IMPLICIT,
        ),
        (
            "DateEquals +",
            cond("DateEquals", "aws:CurrentTime", json!("2026-11-30T02:15:12.000Z")),
            req("kms:Encrypt"),
            allow("C"),
        ),
        ("DateEquals -", cond("DateEquals", "aws:CurrentTime", json!("2026-11-30")), req("kms:Encrypt"), IMPLICIT),
        (
            "DateNotEquals +",
            cond("DateNotEquals", "aws:CurrentTime", json!("2026-11-30")),
            req("kms:Encrypt"),
            allow("C"),
        ),
        (
            "DateNotEquals -",
            cond("DateNotEquals", "aws:CurrentTime", json!("2026-11-30T02:15:12Z")),
            req("kms:Encrypt"),
            IMPLICIT,
        ),
        (
            "Date on a context key (kms:ValidTo)",
            cond("DateLessThan", "kms:ValidTo", json!("2027-01-01T00:00:00Z")),
            with_key(req("kms:ImportKeyMaterial"), "kms:ValidTo", &["2026-12-31T00:00:00Z"]),
            allow("C"),
        ),
        // Bool.
        (
            "Bool +",
            cond("Bool", "aws:SecureTransport", json!("true")),
            {
                let mut r = req("kms:Encrypt");
                r.secure_transport = Some(true);
                r
            },
            allow("C"),
        ),
        (
            "Bool -",
            cond("Bool", "aws:SecureTransport", json!(true)),
            {
                let mut r = req("kms:Encrypt");
                r.secure_transport = Some(false);
                r
            },
            IMPLICIT,
        ),
        ("Bool, key absent: fails", cond("Bool", "aws:SecureTransport", json!("true")), req("kms:Encrypt"), IMPLICIT),
        // Null.
        (
            "Null true, key absent",
            cond("Null", "kms:EncryptionContext:Dept", json!("true")),
            req("kms:Encrypt"),
            allow("C"),
        ),
        (
            "Null true, key present",
            cond("Null", "kms:EncryptionContext:Dept", json!("true")),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR")]),
            IMPLICIT,
        ),
        (
            "Null false, key present",
            cond("Null", "kms:EncryptionContextKeys", json!("false")),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR")]),
            allow("C"),
        ),
        (
            "Null false, key absent (empty EC)",
            cond("Null", "kms:EncryptionContextKeys", json!("false")),
            req("kms:Encrypt"),
            IMPLICIT,
        ),
        // Set qualifiers on multi-valued keys.
        (
            "ForAnyValue: one key listed",
            ec_keys_any.clone(),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR"), ("Other", "x")]),
            allow("C"),
        ),
        ("ForAnyValue: none listed", ec_keys_any.clone(), with_ec(req("kms:Encrypt"), &[("Other", "x")]), IMPLICIT),
        ("ForAnyValue: key absent fails", ec_keys_any.clone(), req("kms:Encrypt"), IMPLICIT),
        (
            "ForAllValues: all listed",
            ec_keys_all.clone(),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR"), ("Project", "x")]),
            allow("C"),
        ),
        (
            "ForAllValues: one not listed",
            ec_keys_all.clone(),
            with_ec(req("kms:Encrypt"), &[("Dept", "HR"), ("Other", "x")]),
            IMPLICIT,
        ),
        ("ForAllValues: key absent holds", ec_keys_all.clone(), req("kms:Encrypt"), allow("C")),
        (
            "ForAllValues: EC keys compare case-sensitively",
            ec_keys_all.clone(),
            with_ec(req("kms:Encrypt"), &[("dept", "HR")]),
            IMPLICIT,
        ),
        (
            "ForAllValues on GrantOperations: subset",
            grant_ops_all.clone(),
            {
                let mut r = req("kms:CreateGrant");
                r.grant_operations = vec!["Decrypt".into()];
                r
            },
            allow("C"),
        ),
        (
            "ForAllValues on GrantOperations: extra op",
            grant_ops_all.clone(),
            {
                let mut r = req("kms:CreateGrant");
                r.grant_operations = vec!["Decrypt".into(), "RetireGrant".into()];
                r
            },
            IMPLICIT,
        ),
        (
            "ForAnyValue:StringNotEquals: some op outside",
            grant_ops_any_not.clone(),
            {
                let mut r = req("kms:CreateGrant");
                r.grant_operations = vec!["Decrypt".into(), "Sign".into()];
                r
            },
            allow("C"),
        ),
        (
            "ForAnyValue:StringNotEquals: all inside",
            grant_ops_any_not.clone(),
            {
                let mut r = req("kms:CreateGrant");
                r.grant_operations = vec!["Decrypt".into()];
                r
            },
            IMPLICIT,
        ),
        // Several conditions are ANDed, values ORed.
        (
            "all conditions hold",
            two_conditions.clone(),
            {
                let mut r = with_ec(req("kms:Decrypt"), &[("Dept", "IT")]);
                r.secure_transport = Some(true);
                r
            },
            allow("Both"),
        ),
        (
            "one condition fails",
            two_conditions.clone(),
            {
                let mut r = with_ec(req("kms:Decrypt"), &[("Dept", "IT")]);
                r.secure_transport = Some(false);
                r
            },
            IMPLICIT,
        ),
        (
            "Arn operator on aws:PrincipalArn",
            cond("ArnLike", "aws:PrincipalArn", json!("arn:aws:iam::111122223333:user/a*")),
            req("kms:Encrypt"),
            allow("C"),
        ),
        (
            "generic key from the context map",
            cond("StringEquals", "aws:PrincipalOrgID", json!("o-abc")),
            with_key(req("kms:Encrypt"), "AWS:PrincipalOrgId", &["o-abc"]),
            allow("C"),
        ),
    ];

    let mut failures = Vec::new();
    for (name, text, ctx, expected) in &rows {
        let policy = KeyPolicy::parse(text).unwrap_or_else(|e| panic!("{name}: policy should parse: {e}"));
        let got = policy.evaluate(ctx);
        if got != *expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), rows.len(), failures.join("\n"));
}

#[test]
fn malformed_documents_are_refused_with_a_useful_message() {
    let ok_statement = json!({"Sid": "S", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"});
    let with = |member: &str, v: Value| {
        let mut s = ok_statement.clone();
        s[member] = v;
        doc(json!([s]))
    };
    let without = |member: &str| {
        let mut s = ok_statement.clone();
        s.as_object_mut().unwrap().remove(member);
        doc(json!([s]))
    };
    let cases: Vec<(&str, String, ErrorKind, &str)> = vec![
        ("bad JSON", "{\"Version\": ".to_owned(), ErrorKind::MalformedPolicyDocument, "The policy is not valid JSON: "),
        ("not an object", "[]".to_owned(), ErrorKind::MalformedPolicyDocument, "The policy must be a JSON object."),
        ("missing Effect", without("Effect"), ErrorKind::MalformedPolicyDocument, "statement 'S': Effect is missing."),
        (
            "invalid Effect",
            with("Effect", json!("Permit")),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': Effect 'Permit' is not valid; use \"Allow\" or \"Deny\".",
        ),
        (
            "unknown operator",
            with("Condition", json!({"StringSortOf": {"kms:CallerAccount": "1"}})),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': Condition operator 'StringSortOf' is not supported.",
        ),
        (
            "Null cannot take IfExists",
            with("Condition", json!({"NullIfExists": {"kms:CallerAccount": "true"}})),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': Condition operator 'NullIfExists' is not supported.",
        ),
        (
            "wrong Version",
            json!({"Version": "2012-10-18", "Statement": [ok_statement.clone()]}).to_string(),
            ErrorKind::MalformedPolicyDocument,
            "The policy Version '2012-10-18' is not supported; use \"2012-10-17\".",
        ),
        (
            "unknown top-level member",
            json!({"Version": "2012-10-17", "Statement": [ok_statement.clone()], "Statment": []}).to_string(),
            ErrorKind::MalformedPolicyDocument,
            "The policy has an unknown member 'Statment'.",
        ),
        ("no statements", doc(json!([])), ErrorKind::MalformedPolicyDocument, "The policy Statement list is empty."),
        (
            "missing Statement",
            json!({"Version": "2012-10-17"}).to_string(),
            ErrorKind::MalformedPolicyDocument,
            "The policy has no Statement.",
        ),
        (
            "statement named by index",
            doc(json!([ok_statement.clone(), {"Effect": "Allow", "Principal": "*", "Resource": "*"}])),
            ErrorKind::MalformedPolicyDocument,
            "statement #1: Action is missing; a statement without one has no effect.",
        ),
        (
            "unknown statement member",
            with("Actions", json!("kms:*")),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': unknown member 'Actions'.",
        ),
        (
            "missing principal",
            without("Principal"),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': Principal is missing; every statement needs one.",
        ),
        (
            "invalid principal",
            with("Principal", json!({"AWS": "arn:aws:iam::1234:user/x"})),
            ErrorKind::MalformedPolicyDocument,
            "Policy contains a statement with one or more invalid principals.",
        ),
        (
            "wildcard in a principal ARN",
            with("Principal", json!({"AWS": "arn:aws:iam::111122223333:user/*"})),
            ErrorKind::MalformedPolicyDocument,
            "Policy contains a statement with one or more invalid principals.",
        ),
        (
            "NotPrincipal with Allow",
            {
                let mut s = ok_statement.clone();
                s.as_object_mut().unwrap().remove("Principal");
                s["NotPrincipal"] = json!({"AWS": ALICE});
                doc(json!([s]))
            },
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': NotPrincipal may be used only with \"Effect\": \"Deny\".",
        ),
        (
            "Action and NotAction",
            with("NotAction", json!("kms:Decrypt")),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': has both Action and NotAction.",
        ),
        (
            "bad action",
            with("Action", json!("Encrypt")),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': Action 'Encrypt' is not of the form \"kms:<Operation>\" (wildcards * and ? allowed).",
        ),
        (
            "bad resource",
            with("Resource", json!("my-key")),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': Resource 'my-key' must be \"*\" or an ARN.",
        ),
        (
            "wrong member type",
            with("Action", json!(7)),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': Action must be a string or a non-empty list of strings.",
        ),
        (
            "non-numeric Numeric value",
            with("Condition", json!({"NumericLessThan": {"kms:RotationPeriodInDays": "a year"}})),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': Condition NumericLessThan/kms:RotationPeriodInDays: 'a year' is not a number.",
        ),
        (
            "bad date",
            with("Condition", json!({"DateLessThan": {"aws:CurrentTime": "next week"}})),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': Condition DateLessThan/aws:CurrentTime: 'next week' is not an ISO 8601 date or epoch time.",
        ),
        (
            "ForAllValues on an EC pair",
            with("Condition", json!({"ForAllValues:StringEquals": {"kms:EncryptionContext:Dept": "HR"}})),
            ErrorKind::MalformedPolicyDocument,
            "statement 'S': Condition ForAllValues:StringEquals/kms:EncryptionContext:Dept: OverlyPermissiveCondition",
        ),
        (
            "duplicate Sid",
            doc(json!([ok_statement.clone(), ok_statement.clone()])),
            ErrorKind::MalformedPolicyDocument,
            "The policy has more than one statement 'S'.",
        ),
        ("over-size", doc(json!([with_padding(&ok_statement)])), ErrorKind::LimitExceeded, "The key policy is "),
        (
            "character outside Latin-1",
            with("Sid", json!("snow ☃")),
            ErrorKind::Validation,
            "1 validation error detected: Value at 'policy' failed to satisfy constraint",
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, kind, prefix) in &cases {
        match KeyPolicy::parse(text) {
            Ok(_) => failures.push(format!("{name}: parsed")),
            Err(e) if e.kind != *kind || !e.message.starts_with(prefix) => {
                failures.push(format!("{name}: expected {kind} starting {prefix:?}, got {e}"))
            }
            Err(e) => assert!(e.message.len() < 600, "{name}: message too long: {}", e.message.len()),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// The statement with a Sid long enough to push the document over 32 KB.
fn with_padding(statement: &Value) -> Value {
    let mut s = statement.clone();
    s["Sid"] = json!("x".repeat(MAX_POLICY_BYTES));
    s
}

#[test]
fn size_limit_is_exactly_32_kib_and_long_values_are_not_echoed() {
    let base = doc(json!([{"Sid": "", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}]));
    let pad = MAX_POLICY_BYTES - base.len();
    let exact = format!("{base}{}", " ".repeat(pad));
    assert_eq!(exact.len(), MAX_POLICY_BYTES);
    KeyPolicy::parse(&exact).expect("a 32768-byte policy is accepted");
    let over = format!("{exact} ");
    assert_eq!(KeyPolicy::parse(&over).unwrap_err().kind, ErrorKind::LimitExceeded);

    let long_action =
        doc(json!([{"Effect": "Allow", "Principal": "*", "Action": "x".repeat(20_000), "Resource": "*"}]));
    let e = KeyPolicy::parse(&long_action).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MalformedPolicyDocument);
    assert!(e.message.len() < 400, "{}", e.message.len());
}

#[test]
fn default_key_policy_gives_the_account_everything() {
    let text = default_key_policy(&Realm::default(), ACCOUNT);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v,
        json!({"Version": "2012-10-17", "Id": "key-default-1", "Statement": [{
            "Sid": "Enable IAM User Permissions", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}]})
    );
    let policy = KeyPolicy::parse(&text).unwrap();
    assert_eq!(policy.id.as_deref(), Some("key-default-1"));
    for action in ["kms:Encrypt", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"] {
        assert_eq!(policy.evaluate(&req(action)), allow("Enable IAM User Permissions"), "{action}");
    }
    let outsider = RequestContext::new(CAROL_ELSEWHERE, OTHER_ACCOUNT, "kms:Decrypt", KEY_ARN, NOW_MS);
    assert_eq!(policy.evaluate(&outsider), IMPLICIT);
    let cn = Realm { partition: "aws-cn".into(), region: "cn-north-1".into() };
    assert!(default_key_policy(&cn, ACCOUNT).contains("arn:aws-cn:iam::111122223333:root"));
}

#[test]
fn lockout_check_requires_the_caller_to_keep_put_key_policy() {
    let request = req("kms:PutKeyPolicy");
    let keeps = KeyPolicy::parse(&doc(json!([st("Admin", "Allow", aws(ALICE), json!("kms:Put*"), None)]))).unwrap();
    assert_eq!(lockout_check(&keeps, &request, false), Ok(()));

    let loses = KeyPolicy::parse(&doc(json!([st("Use", "Allow", aws(ALICE), json!("kms:Encrypt"), None)]))).unwrap();
    let e = lockout_check(&loses, &request, false).unwrap_err();
    assert_eq!(e.kind, ErrorKind::MalformedPolicyDocument);
    assert_eq!(e.message, "The new key policy will not allow you to update the key policy in the future.");
    assert_eq!(e.kind.aws_name(), "MalformedPolicyDocumentException");
    assert_eq!(e.kind.http_status(), 400);
    assert_eq!(lockout_check(&loses, &request, true), Ok(()), "BypassPolicyLockoutSafetyCheck skips the check");

    let denied = KeyPolicy::parse(&doc(json!([
        st("All", "Allow", everyone(), json!("kms:*"), None),
        st("NoPolicyChanges", "Deny", aws(ALICE), json!("kms:PutKeyPolicy"), None),
    ])))
    .unwrap();
    assert!(lockout_check(&denied, &request, false).is_err());

    // The check evaluates the PutKeyPolicy action whatever the request context said.
    let from_create_key = req("kms:CreateKey");
    assert_eq!(lockout_check(&keeps, &from_create_key, false), Ok(()));
}
