//! Key policies and grants as the rulebook enforces them (aws-kms-api.md §2.5, §2.6, §6, §7):
//! CreateKey with Policy, PutKeyPolicy / GetKeyPolicy / ListKeyPolicies, the lockout check,
//! explicit deny, cross-account use by ARN, grants with constraints, retire and revoke,
//! idempotent CreateGrant by Name, grant chaining, quotas.

mod common;

use common::*;
use keyledger_kms::{
    default_key_policy, resolve_for_crypto, Access, Caller, ErrorKind, KeyPolicy, Operation, RequestContext,
};
use serde_json::json;

fn user(account: &str, name: &str) -> Caller {
    let mut c = caller(account);
    c.principal.arn = format!("arn:aws:iam::{account}:user/{name}");
    c.principal.user = name.to_owned();
    c
}

fn arn(id: &keyledger_kms::KeyId) -> String {
    format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{id}")
}

/// Encrypt's access decision for the world's caller, with `ec`, on key reference `key`.
fn encrypt_as(w: &World, key: &str, ec: &[(&str, &str)]) -> Result<String, (ErrorKind, String)> {
    let ec: keyledger_kms::EncryptionContext = ec.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let access = Access::new(&w.caller, "Encrypt", w.now).with_context(Some(&ec));
    resolve_for_crypto(&w.p, &w.realm, &access, key, Operation::Encrypt, w.now)
        .map(|k| k.authorized_by)
        .map_err(|e| (e.kind, e.message))
}

fn policy(statements: serde_json::Value) -> String {
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn admin_statement() -> serde_json::Value {
    json!({"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/dev")},
           "Action": "kms:*", "Resource": "*"})
}

fn create_key_with(w: &mut World, doc: &str) -> keyledger_kms::KeyId {
    let body = json!({ "Policy": doc }).to_string();
    let v = w.ok(Operation::CreateKey, &body);
    v["KeyMetadata"]["KeyId"].as_str().unwrap().parse().unwrap()
}

#[test]
fn the_default_key_policy_fast_path_agrees_with_the_parsed_document() {
    let w = World::new();
    let parsed = KeyPolicy::parse(&default_key_policy(&w.realm, ACCOUNT)).unwrap();
    let key_arn = format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab");
    for (principal_account, action) in [
        (ACCOUNT, "kms:Encrypt"),
        (ACCOUNT, "kms:PutKeyPolicy"),
        (OTHER_ACCOUNT, "kms:Encrypt"),
        (OTHER_ACCOUNT, "kms:DescribeKey"),
    ] {
        let ctx = RequestContext::new(
            format!("arn:aws:iam::{principal_account}:user/x"),
            principal_account,
            action,
            &key_arn,
            T0,
        );
        assert_eq!(
            keyledger_kms::access::default_policy_allows(ACCOUNT, &ctx),
            parsed.evaluate(&ctx),
            "{principal_account} {action}"
        );
    }
}

#[test]
fn create_key_installs_the_default_policy_or_the_given_one_and_get_key_policy_returns_it() {
    let mut w = World::new();
    let plain = w.create_key();
    let v = w.ok(Operation::GetKeyPolicy, &json!({"KeyId": plain.to_string()}).to_string());
    assert_eq!(v["PolicyName"], "default");
    assert_eq!(v["Policy"].as_str().unwrap(), default_key_policy(&w.realm, ACCOUNT));
    let doc = policy(json!([admin_statement()]));
    let custom = create_key_with(&mut w, &doc);
    let v = w.ok(Operation::GetKeyPolicy, &json!({"KeyId": custom.to_string(), "PolicyName": "default"}).to_string());
    assert_eq!(v["Policy"].as_str().unwrap(), doc, "returned exactly as given");
    let v = w.ok(Operation::ListKeyPolicies, &json!({"KeyId": custom.to_string()}).to_string());
    assert_eq!(v, json!({"PolicyNames": ["default"], "Truncated": false}));
    assert_eq!(
        w.err(Operation::GetKeyPolicy, &json!({"KeyId": custom.to_string(), "PolicyName": "other"}).to_string()).0,
        ErrorKind::NotFound
    );
    // Replay rebuilds the same state, policies included.
    assert_eq!(w.replay().state_digest(), w.p.state_digest());
}

#[test]
fn malformed_policies_and_the_lockout_check_refuse_and_change_nothing() {
    let mut w = World::new();
    let (kind, message) = w.err(Operation::CreateKey, r#"{"Policy":"{\"Version\":\"2012-10-17\"}"}"#);
    assert_eq!(kind, ErrorKind::MalformedPolicyDocument, "{message}");
    // A policy that does not let the caller put a policy again: the lockout check refuses it…
    let others_only =
        policy(json!([{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/other")},
                                       "Action": "kms:*", "Resource": "*"}]));
    let body = json!({"Policy": others_only}).to_string();
    assert_eq!(
        w.err(Operation::CreateKey, &body),
        (ErrorKind::MalformedPolicyDocument, keyledger_kms::policy::LOCKOUT_MESSAGE.to_owned())
    );
    assert_eq!(w.p.live_key_count(ACCOUNT), 0, "nothing was created");
    // …unless the caller bypasses it.
    let body = json!({"Policy": others_only, "BypassPolicyLockoutSafetyCheck": true}).to_string();
    let v = w.ok(Operation::CreateKey, &body);
    let id = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    // Now the caller is locked out of its own key: every operation is denied.
    let (kind, message) = w.err(Operation::DescribeKey, &json!({"KeyId": id}).to_string());
    assert_eq!(kind, ErrorKind::AccessDenied);
    assert!(message.starts_with(&format!("User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform: kms:DescribeKey on resource: arn:aws:kms:us-east-1:{ACCOUNT}:key/{id}")), "{message}");
    assert_eq!(
        w.err(Operation::PutKeyPolicy, &json!({"KeyId": id, "Policy": policy(json!([admin_statement()]))}).to_string())
            .0,
        ErrorKind::AccessDenied
    );
    // A 32 KB+ policy is LimitExceeded.
    let big = policy(
        json!([{"Sid": "x".repeat(33_000), "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}]),
    );
    assert_eq!(w.err(Operation::CreateKey, &json!({"Policy": big}).to_string()).0, ErrorKind::LimitExceeded);
}

#[test]
fn an_explicit_deny_wins_and_names_its_statement_in_the_audit_field() {
    let mut w = World::new();
    let doc = policy(json!([
        admin_statement(),
        {"Sid": "NoEncryptForTenantB", "Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "b"}}}
    ]));
    let id = create_key_with(&mut w, &doc);
    assert_eq!(encrypt_as(&w, &id.to_string(), &[("tenant", "a")]), Ok("key-policy:Admin".to_owned()));
    let (kind, message) = encrypt_as(&w, &id.to_string(), &[("Tenant", "b")]).unwrap_err();
    assert_eq!(kind, ErrorKind::AccessDenied);
    assert!(message.ends_with("with an explicit deny in a resource-based policy"), "{message}");
    let ec: keyledger_kms::EncryptionContext = [("tenant".to_owned(), "b".to_owned())].into();
    let access = Access::new(&w.caller, "Encrypt", w.now).with_context(Some(&ec));
    let e = resolve_for_crypto(&w.p, &w.realm, &access, &id.to_string(), Operation::Encrypt, w.now).unwrap_err();
    assert_eq!(e.decided_by.as_deref(), Some("deny:key-policy:NoEncryptForTenantB"));
    // PutKeyPolicy replaces it; the deny is gone.
    w.ok(
        Operation::PutKeyPolicy,
        &json!({"KeyId": id.to_string(), "Policy": policy(json!([admin_statement()]))}).to_string(),
    );
    assert!(encrypt_as(&w, &id.to_string(), &[("tenant", "b")]).is_ok());
}

#[test]
fn another_account_uses_a_key_by_arn_only_when_the_policy_names_it_and_learns_nothing_otherwise() {
    let mut w = World::new();
    let shared_doc = policy(json!([
        admin_statement(),
        {"Sid": "OtherUses", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OTHER_ACCOUNT}:root")},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}
    ]));
    let shared = create_key_with(&mut w, &shared_doc);
    let private = w.create_key();
    w.ok(Operation::CreateAlias, &json!({"AliasName": "alias/shared", "TargetKeyId": shared.to_string()}).to_string());
    w.caller = user(OTHER_ACCOUNT, "app");
    assert_eq!(encrypt_as(&w, &arn(&shared), &[]), Ok("key-policy:OtherUses".to_owned()));
    let v = w.ok(Operation::DescribeKey, &json!({"KeyId": arn(&shared)}).to_string());
    assert_eq!(v["KeyMetadata"]["Arn"], arn(&shared));
    // A bare key id or alias name resolves in the caller's own account.
    assert_eq!(encrypt_as(&w, &shared.to_string(), &[]).unwrap_err().0, ErrorKind::NotFound);
    assert_eq!(encrypt_as(&w, "alias/shared", &[]).unwrap_err().0, ErrorKind::NotFound);
    // Not allowed: the private key, an operation the policy does not list, a management
    // operation, and a key that does not exist — all the same AccessDenied shape.
    let denied = |w: &mut World, op: Operation, key: &str| {
        let (kind, message) = w.err(op, &json!({"KeyId": key}).to_string());
        assert_eq!(kind, ErrorKind::AccessDenied, "{op} {key}: {message}");
        assert_eq!(
            message,
            format!("User: arn:aws:iam::{OTHER_ACCOUNT}:user/app is not authorized to perform: kms:{op} on resource: {key} because no resource-based policy allows the kms:{op} action")
        );
    };
    denied(&mut w, Operation::DescribeKey, &arn(&private));
    denied(&mut w, Operation::GetKeyRotationStatus, &arn(&shared));
    denied(&mut w, Operation::DisableKey, &arn(&shared));
    denied(&mut w, Operation::GetKeyPolicy, &arn(&shared));
    let ghost = w.fresh_key_id();
    denied(&mut w, Operation::DescribeKey, &arn(&ghost));
    // Listing never shows the other account's keys or aliases.
    assert_eq!(w.ok(Operation::ListKeys, "{}")["Keys"], json!([]));
    assert_eq!(w.ok(Operation::ListAliases, "{}")["Aliases"], json!([]));
}

fn grant_body(
    key: &str,
    grantee: &str,
    ops: &[&str],
    constraint: Option<serde_json::Value>,
    name: Option<&str>,
) -> String {
    let mut b = json!({"KeyId": key, "GranteePrincipal": grantee, "Operations": ops});
    if let Some(c) = constraint {
        b["Constraints"] = c;
    }
    if let Some(n) = name {
        b["Name"] = json!(n);
    }
    b.to_string()
}

#[test]
fn a_grant_allows_its_grantee_its_operations_under_its_constraint_until_retired_or_revoked() {
    let mut w = World::new();
    let id = w.create_key();
    let app = format!("arn:aws:iam::{OTHER_ACCOUNT}:user/app");
    // Subset: the request's context must contain the pair; keys compare case-insensitively,
    // values case-sensitively.
    let v = w.ok(
        Operation::CreateGrant,
        &grant_body(
            &arn(&id),
            &app,
            &["Encrypt", "RetireGrant"],
            Some(json!({"EncryptionContextSubset": {"Tenant": "a"}})),
            None,
        ),
    );
    let grant_id = v["GrantId"].as_str().unwrap().to_owned();
    assert_eq!(grant_id.len(), 64);
    w.caller = user(OTHER_ACCOUNT, "app");
    assert_eq!(encrypt_as(&w, &arn(&id), &[("tenant", "a"), ("extra", "x")]), Ok(format!("grant:{grant_id}")));
    assert_eq!(encrypt_as(&w, &arn(&id), &[("TENANT", "a")]), Ok(format!("grant:{grant_id}")));
    assert_eq!(encrypt_as(&w, &arn(&id), &[("tenant", "A")]).unwrap_err().0, ErrorKind::AccessDenied);
    assert_eq!(encrypt_as(&w, &arn(&id), &[]).unwrap_err().0, ErrorKind::AccessDenied);
    // Another principal of the grantee's account is not the grantee.
    w.caller = user(OTHER_ACCOUNT, "intruder");
    assert_eq!(encrypt_as(&w, &arn(&id), &[("tenant", "a")]).unwrap_err().0, ErrorKind::AccessDenied);
    // The grant does not list Decrypt.
    w.caller = user(OTHER_ACCOUNT, "app");
    let ec: keyledger_kms::EncryptionContext = [("tenant".to_owned(), "a".to_owned())].into();
    let access = Access::new(&w.caller, "Decrypt", w.now).with_context(Some(&ec));
    assert_eq!(
        keyledger_kms::resolve_for_decrypt(&w.p, &w.realm, &access, *id.as_bytes(), 1, None, w.now).unwrap_err().kind,
        ErrorKind::AccessDenied
    );
    // The grantee retires it (RetireGrant is among its operations): then denied.
    w.ok(Operation::RetireGrant, &json!({"KeyId": arn(&id), "GrantId": grant_id}).to_string());
    assert_eq!(encrypt_as(&w, &arn(&id), &[("tenant", "a")]).unwrap_err().0, ErrorKind::AccessDenied);
    // Retired: for the grantee's (other) account, as indistinguishable as a grant it never had.
    assert_eq!(
        w.err(Operation::RetireGrant, &json!({"KeyId": arn(&id), "GrantId": grant_id}).to_string()).0,
        ErrorKind::AccessDenied
    );

    // Equals: exactly these pairs, no extra ones. Revoked by the key's owner.
    w.caller = caller(ACCOUNT);
    let v = w.ok(
        Operation::CreateGrant,
        &grant_body(
            &id.to_string(),
            &app,
            &["Encrypt"],
            Some(json!({"EncryptionContextEquals": {"tenant": "a"}})),
            None,
        ),
    );
    let equals_id = v["GrantId"].as_str().unwrap().to_owned();
    w.caller = user(OTHER_ACCOUNT, "app");
    assert!(encrypt_as(&w, &arn(&id), &[("Tenant", "a")]).is_ok());
    assert_eq!(encrypt_as(&w, &arn(&id), &[("tenant", "a"), ("extra", "x")]).unwrap_err().0, ErrorKind::AccessDenied);
    // The grantee may not revoke (no key policy permission) nor retire (no RetireGrant op).
    assert_eq!(
        w.err(Operation::RevokeGrant, &json!({"KeyId": arn(&id), "GrantId": equals_id}).to_string()).0,
        ErrorKind::AccessDenied
    );
    assert_eq!(
        w.err(Operation::RetireGrant, &json!({"KeyId": arn(&id), "GrantId": equals_id}).to_string()).0,
        ErrorKind::AccessDenied
    );
    w.caller = caller(ACCOUNT);
    let listed = w.ok(Operation::ListGrants, &json!({"KeyId": id.to_string()}).to_string());
    assert_eq!(listed["Grants"].as_array().unwrap().len(), 1);
    assert_eq!(listed["Grants"][0]["Constraints"], json!({"EncryptionContextEquals": {"tenant": "a"}}));
    assert_eq!(listed["Grants"][0]["IssuingAccount"], format!("arn:aws:iam::{ACCOUNT}:root"));
    assert!(listed["Grants"][0].get("GrantToken").is_none());
    w.ok(Operation::RevokeGrant, &json!({"KeyId": id.to_string(), "GrantId": equals_id}).to_string());
    w.caller = user(OTHER_ACCOUNT, "app");
    assert_eq!(encrypt_as(&w, &arn(&id), &[("tenant", "a")]).unwrap_err().0, ErrorKind::AccessDenied);
    assert_eq!(w.replay().state_digest(), w.p.state_digest());
}

#[test]
fn create_grant_by_name_is_idempotent_and_checks_operations_state_and_quota() {
    let mut w = World::new();
    let id = w.create_key();
    let app = format!("arn:aws:iam::{ACCOUNT}:user/app");
    let body = grant_body(&id.to_string(), &app, &["Decrypt", "Encrypt"], None, Some("orders"));
    let first = w.ok(Operation::CreateGrant, &body);
    let again = w.ok(Operation::CreateGrant, &body);
    assert_eq!(first["GrantId"], again["GrantId"], "same Name and parameters: the same grant");
    let log_len = w.log.len();
    w.ok(Operation::CreateGrant, &body);
    assert_eq!(w.log.len(), log_len, "an idempotent retry appends nothing");
    // Same name, other operations: a new grant.
    let other = w.ok(Operation::CreateGrant, &grant_body(&id.to_string(), &app, &["Decrypt"], None, Some("orders")));
    assert_ne!(first["GrantId"], other["GrantId"]);
    // Operations a symmetric key does not support.
    assert_eq!(
        w.err(Operation::CreateGrant, &grant_body(&id.to_string(), &app, &["Sign"], None, None)).0,
        ErrorKind::Validation
    );
    assert_eq!(
        w.err(Operation::CreateGrant, &grant_body(&id.to_string(), &app, &["Fly"], None, None)).0,
        ErrorKind::Validation
    );
    // Disabled key → DisabledException.
    w.ok(Operation::DisableKey, &json!({"KeyId": id.to_string()}).to_string());
    assert_eq!(
        w.err(Operation::CreateGrant, &grant_body(&id.to_string(), &app, &["Encrypt"], None, None)).0,
        ErrorKind::Disabled
    );
    w.ok(Operation::EnableKey, &json!({"KeyId": id.to_string()}).to_string());
    // Quota.
    w.limits.max_grants_per_key = 2;
    assert_eq!(
        w.err(Operation::CreateGrant, &grant_body(&id.to_string(), &app, &["Encrypt"], None, None)).0,
        ErrorKind::LimitExceeded
    );
}

#[test]
fn a_grant_made_through_a_grant_cannot_be_looser_than_its_parent() {
    let mut w = World::new();
    let id = w.create_key();
    let app = format!("arn:aws:iam::{OTHER_ACCOUNT}:user/app");
    w.ok(
        Operation::CreateGrant,
        &grant_body(
            &arn(&id),
            &app,
            &["Encrypt", "CreateGrant"],
            Some(json!({"EncryptionContextSubset": {"t": "1"}})),
            None,
        ),
    );
    w.caller = user(OTHER_ACCOUNT, "app");
    let child = format!("arn:aws:iam::{OTHER_ACCOUNT}:user/child");
    // Looser: no constraint, or an operation the parent lacks.
    assert_eq!(
        w.err(Operation::CreateGrant, &grant_body(&arn(&id), &child, &["Encrypt"], None, None)).0,
        ErrorKind::AccessDenied
    );
    assert_eq!(
        w.err(
            Operation::CreateGrant,
            &grant_body(&arn(&id), &child, &["Decrypt"], Some(json!({"EncryptionContextSubset": {"t": "1"}})), None)
        )
        .0,
        ErrorKind::AccessDenied
    );
    // As strict or stricter: allowed.
    w.ok(
        Operation::CreateGrant,
        &grant_body(
            &arn(&id),
            &child,
            &["Encrypt"],
            Some(json!({"EncryptionContextEquals": {"T": "1", "u": "2"}})),
            None,
        ),
    );
    w.caller = user(OTHER_ACCOUNT, "child");
    assert!(encrypt_as(&w, &arn(&id), &[("t", "1"), ("u", "2")]).is_ok());
    assert!(encrypt_as(&w, &arn(&id), &[("t", "1")]).is_err());
}

#[test]
fn aliases_are_per_account_and_the_alias_quota_is_per_account() {
    let mut w = World::new();
    let mine = w.create_key();
    w.ok(Operation::CreateAlias, &json!({"AliasName": "alias/app", "TargetKeyId": mine.to_string()}).to_string());
    w.caller = caller(OTHER_ACCOUNT);
    let theirs = w.create_key();
    // The same alias name in another account is another alias.
    w.ok(Operation::CreateAlias, &json!({"AliasName": "alias/app", "TargetKeyId": theirs.to_string()}).to_string());
    let v = w.ok(Operation::DescribeKey, r#"{"KeyId":"alias/app"}"#);
    assert_eq!(v["KeyMetadata"]["KeyId"], theirs.to_string());
    let listed = w.ok(Operation::ListAliases, "{}");
    assert_eq!(listed["Aliases"].as_array().unwrap().len(), 1);
    assert_eq!(listed["Aliases"][0]["TargetKeyId"], theirs.to_string());
    assert_eq!(w.ok(Operation::ListKeys, "{}")["Keys"].as_array().unwrap().len(), 1);
    w.limits.max_aliases_per_account = 1;
    assert_eq!(
        w.err(
            Operation::CreateAlias,
            &json!({"AliasName": "alias/second", "TargetKeyId": theirs.to_string()}).to_string()
        )
        .0,
        ErrorKind::LimitExceeded
    );
}

#[test]
fn review_findings_stay_fixed() {
    let mut w = World::new();
    // A Deny on the bypass flag stops PutKeyPolicy with BypassPolicyLockoutSafetyCheck.
    let guarded = policy(json!([
        admin_statement(),
        {"Sid": "NoBypass", "Effect": "Deny", "Principal": "*", "Action": "kms:PutKeyPolicy", "Resource": "*",
         "Condition": {"Bool": {"kms:BypassPolicyLockoutSafetyCheck": "true"}}}
    ]));
    let id = create_key_with(&mut w, &guarded);
    let body = json!({"KeyId": id.to_string(), "Policy": policy(json!([admin_statement()])), "BypassPolicyLockoutSafetyCheck": true});
    let (kind, message) = w.err(Operation::PutKeyPolicy, &body.to_string());
    assert_eq!(kind, ErrorKind::AccessDenied, "{message}");
    let body = json!({"KeyId": id.to_string(), "Policy": guarded});
    w.ok(Operation::PutKeyPolicy, &body.to_string());

    // A condition on a key Keyledger never sets would never match: refused, not ignored.
    for key in ["aws:SecureTransport", "kms:ViaService", "aws:SourceIp", "kms:Foo"] {
        let doc = policy(json!([admin_statement(),
            {"Sid": "Never", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
             "Condition": {"StringEquals": {key: "x"}}}]));
        let (kind, message) = w.err(Operation::CreateKey, &json!({"Policy": doc}).to_string());
        assert_eq!(kind, ErrorKind::MalformedPolicyDocument, "{key}: {message}");
        assert!(message.contains(key), "{message}");
        let (kind, _) = w.err(Operation::PutKeyPolicy, &json!({"KeyId": id.to_string(), "Policy": doc}).to_string());
        assert_eq!(kind, ErrorKind::MalformedPolicyDocument);
    }

    // Constraint keys that differ only in case are ambiguous: refused.
    let app = format!("arn:aws:iam::{OTHER_ACCOUNT}:user/app");
    let (kind, _) = w.err(
        Operation::CreateGrant,
        &grant_body(
            &id.to_string(),
            &app,
            &["Encrypt"],
            Some(json!({"EncryptionContextEquals": {"tenant": "a", "TENANT": "a"}})),
            None,
        ),
    );
    assert_eq!(kind, ErrorKind::Validation);

    // Another account learns nothing from RetireGrant or alias ARNs.
    let shared = w.create_key();
    w.ok(Operation::CreateAlias, &json!({"AliasName": "alias/secret", "TargetKeyId": shared.to_string()}).to_string());
    w.caller = user(OTHER_ACCOUNT, "app");
    let ghost = w.fresh_key_id();
    for key in [arn(&shared), arn(&ghost)] {
        let (kind, message) =
            w.err(Operation::RetireGrant, &json!({"KeyId": key, "GrantId": "0".repeat(64)}).to_string());
        assert_eq!(kind, ErrorKind::AccessDenied, "{key}: {message}");
        assert!(message.contains(&key));
    }
    for alias in ["alias/secret", "alias/none"] {
        let alias_arn = format!("arn:aws:kms:us-east-1:{ACCOUNT}:{alias}");
        let (kind, message) = encrypt_as(&w, &alias_arn, &[]).unwrap_err();
        assert_eq!(kind, ErrorKind::AccessDenied);
        assert!(message.contains(&alias_arn) && !message.contains(&shared.to_string()), "{message}");
    }
    // In the caller's own account a missing grant is still NotFound.
    w.caller = caller(ACCOUNT);
    let (kind, _) =
        w.err(Operation::RetireGrant, &json!({"KeyId": arn(&shared), "GrantId": "0".repeat(64)}).to_string());
    assert_eq!(kind, ErrorKind::NotFound);
}
