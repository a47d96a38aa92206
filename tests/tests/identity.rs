//! Identity is what the NATS server stamps, never what the caller claims.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use keyledger_events::names;
use keyledger_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_request_info_header_is_replaced_by_the_server() {
    let h = Harness::start().await;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Request-Info", r#"{"acc":"KEYLEDGER","user":"admin"}"#);
    let reply = h
        .client
        .nats()
        .request_with_headers(names::api_subject("CreateKey"), headers, "{}".into())
        .await
        .expect("reply");
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    let key = body["KeyMetadata"]["KeyId"].as_str().expect("created").to_owned();
    assert_eq!(body["KeyMetadata"]["AWSAccountId"], ACCOUNT, "the key belongs to the real caller's account");

    // The event records the stamped caller, not the forged one.
    let nats = h.service_nats().await;
    let log = keyledger_log::ControlLog::open(keyledger_log::jetstream(nats), 1).await.unwrap();
    let head = log
        .subject_head(&names::control_subject(ACCOUNT, keyledger_events::AggregateKind::Key, &key))
        .await
        .unwrap()
        .unwrap();
    let event = keyledger_events::decode(&head.payload).unwrap();
    assert_eq!(event.record.principal.nats_account, "DEV");
    assert_eq!(event.record.principal.user, "dev");
    assert_eq!(event.record.principal.arn, format!("arn:aws:iam::{ACCOUNT}:user/dev"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_did_not_cross_the_import_is_refused() {
    let h = Harness::start().await;
    // The service user sits inside the KEYLEDGER account: its requests carry no stamped
    // identity, and a header it writes itself must not be believed.
    let nats = h.service_nats().await;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Request-Info", r#"{"acc":"DEV","user":"dev"}"#);
    let reply = nats.request_with_headers(names::api_subject("CreateKey"), headers, "{}".into()).await;
    match reply {
        Ok(msg) => {
            let body: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
            assert_eq!(body["__type"], "AccessDeniedException", "{body}");
        }
        // The deployment may also simply not let the service user publish requests.
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let keys = h.ok("ListKeys", json!({})).await;
    assert_eq!(keys["Keys"].as_array().unwrap().len(), 0, "nothing was created");
}

/// A policy that lets the dev user administer the key (grants included) but not use it.
fn admin_only_policy() -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "KeyAdministration",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/dev")},
            "Action": ["kms:Describe*", "kms:Put*", "kms:Get*", "kms:List*", "kms:CreateGrant", "kms:RevokeGrant",
                       "kms:RetireGrant", "kms:ScheduleKeyDeletion"],
            "Resource": "*"
        }]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_token_works_at_once_on_a_lagging_worker_and_revocation_is_never_stale() {
    let h = Harness::start().await;
    let key = h.ok("CreateKey", json!({"Policy": admin_only_policy()})).await["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied = h.err("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")})).await;
    assert_eq!(denied.0, "AccessDeniedException", "the policy does not allow Encrypt: {denied:?}");

    // A second cryptod whose projection applies each record 250 ms late: requests that land
    // on it right after CreateGrant would not see the grant yet.
    let env = h.env();
    let root = keyledger_crypto::RootKey::load(&env.data_dir.join("root.key")).unwrap();
    let config = keyledger::roles::RoleConfig {
        accounts: [("DEV".to_owned(), ACCOUNT.to_owned())].into_iter().collect(),
        clock: h.clock.clone(),
        test_follower_delay: Duration::from_millis(250),
        ..keyledger::roles::RoleConfig::default()
    };
    let lagging =
        keyledger::roles::start(&[keyledger::roles::Role::Cryptod], &env.service_profile, Arc::new(root), config)
            .await
            .unwrap();
    let lagging_follower = lagging.ctx.follower.clone();
    let head = h.env().roles.as_ref().unwrap().ctx.follower.applied_seq();
    assert!(eventually(Duration::from_secs(20), || async { lagging_follower.applied_seq() >= head }).await);

    // Without the token, a client that never read the grant's log position (a fresh client)
    // is refused by the lagging worker at least once; with it, never.
    let mut refused_without_token = 0;
    for i in 0..12 {
        let name = format!("g{i}");
        let grant = h
            .ok(
                "CreateGrant",
                json!({"KeyId": key, "GranteePrincipal": format!("arn:aws:iam::{ACCOUNT}:user/dev"),
                       "Operations": ["Encrypt", "Decrypt"], "Name": name}),
            )
            .await;
        let token = grant["GrantToken"].as_str().unwrap().to_owned();
        assert!(token.starts_with("KLGT1"), "{token}");
        let fresh = h.new_client().await;
        let with_token = fresh
            .call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(b"hi"), "GrantTokens": [token]}))
            .await
            .unwrap_or_else(|e| panic!("Encrypt with the grant token failed: {e}"));
        assert_eq!(with_token.body["KeyId"], format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{key}"));
        h.ok("RevokeGrant", json!({"KeyId": key, "GrantId": grant["GrantId"]})).await;
        // The same client (which holds the revocation's position) is never answered from a
        // state before it: refused, or told to retry while the worker catches up.
        let after = h.err("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"hi")})).await;
        assert!(
            after.0 == "AccessDeniedException" || after.0 == "DependencyTimeoutException",
            "revoked grant still used: {after:?}"
        );

        let grant = h
            .ok(
                "CreateGrant",
                json!({"KeyId": key, "GranteePrincipal": format!("arn:aws:iam::{ACCOUNT}:user/dev"),
                       "Operations": ["Encrypt"], "Name": format!("n{i}")}),
            )
            .await;
        let fresh = h.new_client().await;
        if fresh.call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(b"hi")})).await.is_err() {
            refused_without_token += 1;
        }
        h.ok("RevokeGrant", json!({"KeyId": key, "GrantId": grant["GrantId"]})).await;
        // Let the lagging worker catch up between rounds so its lag stays one round deep.
        let head = h.env().roles.as_ref().unwrap().ctx.follower.applied_seq();
        assert!(eventually(Duration::from_secs(20), || async { lagging_follower.applied_seq() >= head }).await);
    }
    assert!(refused_without_token > 0, "the lagging worker never answered: the test proves nothing");

    // A forged or altered token is refused; a valid token for a revoked grant authorizes
    // nothing.
    let (name, _) = h.err("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x"), "GrantTokens": ["KLGT1AAAA"]})).await;
    assert_eq!(name, "InvalidGrantTokenException");

    // RetireGrant by token, and the audit records name the grant that authorized each use.
    let grant = h
        .ok(
            "CreateGrant",
            json!({"KeyId": key, "GranteePrincipal": format!("arn:aws:iam::{ACCOUNT}:user/dev"),
                   "Operations": ["Encrypt", "RetireGrant"]}),
        )
        .await;
    let token = grant["GrantToken"].as_str().unwrap();
    h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"audited"), "GrantTokens": [token]})).await;
    h.ok("RetireGrant", json!({"GrantToken": token})).await;
    assert_eq!(h.err("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")})).await.0, "AccessDeniedException");
    let records = h.audit_records().await;
    let grant_id = grant["GrantId"].as_str().unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.record.operation == "Encrypt" && r.record.authorized_by == format!("grant:{grant_id}")),
        "no Encrypt record names the grant"
    );
    assert!(records.iter().any(|r| r.record.operation == "Encrypt"
        && r.record.outcome == keyledger_events::codes::outcome::DENIED
        && r.record.authorized_by == "no-allow"));
    let text = format!("{:?}", records.iter().map(|r| &r.record).collect::<Vec<_>>());
    assert!(!text.contains(token), "a grant token reached the audit log");
    lagging.stop().await;
}

/// `deploy/nats/keyledger.conf`, run by a real nats-server, makes identity hold: the server
/// stamps who asks (a forged header is overwritten), the service account cannot make requests,
/// users cannot read each other's replies, and the roles serve a tenant through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_nats_configuration_stamps_identity_and_scopes_every_user() {
    let dir = tempfile::tempdir().unwrap();
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats");
    for file in ["tls.conf", "accounts.conf"] {
        std::fs::copy(deploy.join(file), dir.path().join(file)).unwrap();
    }
    // The shipped file, with only its JetStream directory moved into the test's.
    let conf = std::fs::read_to_string(deploy.join("keyledger.conf")).unwrap();
    let store = format!("store_dir: {:?}", dir.path().join("js"));
    assert!(conf.contains("store_dir: \"/var/lib/keyledger/nats\""));
    std::fs::write(dir.path().join("keyledger.conf"), conf.replace("store_dir: \"/var/lib/keyledger/nats\"", &store))
        .unwrap();
    let binary = keyledger_nats_server::find_or_install().unwrap();
    let port = keyledger_nats_server::free_port().unwrap();
    let passwords = [
        ("KEYLEDGER_SERVICE_PASSWORD", "svc-pw-1"),
        ("KEYLEDGER_GATEWAY_PASSWORD", "gw-pw-2"),
        ("KEYLEDGER_TENANT_A_PASSWORD", "app-pw-3"),
        ("KEYLEDGER_KEYD_PASSWORD", "keyd-pw-4"),
        ("KEYLEDGER_CHECKPOINTER_PASSWORD", "ckpt-pw-5"),
        ("KEYLEDGER_CRYPTOD_1_PASSWORD", "c1-pw-6"),
        ("KEYLEDGER_CRYPTOD_2_PASSWORD", "c2-pw-7"),
        ("KEYLEDGER_CRYPTOD_3_PASSWORD", "c3-pw-8"),
        ("KEYLEDGER_AUDITD_PASSWORD", "auditd-pw-9"),
    ];
    let mut server = std::process::Command::new(binary)
        .arg("-c")
        .arg(dir.path().join("keyledger.conf"))
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .envs(passwords)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    assert!(
        eventually(Duration::from_secs(10), || async { std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() })
            .await,
        "nats-server with deploy/nats/keyledger.conf did not start"
    );

    let profile = keyledger_nats_server::ServiceProfile {
        url: url.clone(),
        nats_account: "KEYLEDGER".into(),
        user: "keyledger".into(),
        password: keyledger_nats_server::Password::new("svc-pw-1"),
        inbox_prefix: "_INBOX.keyledger".into(),
        ca_file: None,
    };
    let root = Arc::new(keyledger_crypto::RootKey::generate());
    let config = keyledger::roles::RoleConfig {
        accounts: [("TENANT_A".to_owned(), ACCOUNT.to_owned()), ("GATEWAY".to_owned(), "000000000000".to_owned())]
            .into_iter()
            .collect(),
        ..keyledger::roles::RoleConfig::default()
    };
    let roles = keyledger::roles::start(
        &[keyledger::roles::Role::Keyd, keyledger::roles::Role::Cryptod],
        &profile,
        root,
        config,
    )
    .await
    .unwrap();

    let connect = |user: &'static str, password: &'static str| {
        let url = url.clone();
        async move {
            async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
                .custom_inbox_prefix(format!("_INBOX.{user}"))
                .connect(url)
                .await
                .unwrap()
        }
    };
    // A tenant forging the stamped header gets its own identity anyway.
    let app = connect("app", "app-pw-3").await;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Request-Info", r#"{"acc":"KEYLEDGER","user":"keyledger"}"#);
    let reply = app.request_with_headers(names::api_subject("CreateKey"), headers, "{}".into()).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        body["KeyMetadata"]["Arn"].as_str().unwrap().split(':').nth(4),
        Some(ACCOUNT),
        "created in the tenant's mapped account: {body}"
    );
    let key = body["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let client = keyledger::protocol::KmsClient::new(app.clone(), Duration::from_secs(10));
    let enc = client.call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(b"deployed")})).await.unwrap();
    assert_eq!(enc.body["KeyId"].as_str().unwrap().split(':').nth(4), Some(ACCOUNT));

    // The service user may not make API requests: the roles subscribe to kms.v1.> in its own
    // account, so without the deny its request would be answered (refused for lack of a
    // stamped identity, but answered); with it, the request never leaves the client's server.
    let service = connect("keyledger", "svc-pw-1").await;
    let attempt =
        tokio::time::timeout(Duration::from_secs(2), service.request(names::api_subject("CreateKey"), "{}".into()))
            .await;
    assert!(!matches!(attempt, Ok(Ok(_))), "the service account's user cannot publish request subjects");
    let keys = client.call("ListKeys", &json!({})).await.unwrap();
    assert_eq!(keys.body["Keys"].as_array().unwrap().len(), 1, "nothing else was created");

    roles.stop().await;
    let _ = server.kill();
    let _ = server.wait();
}
