//! Audit first: every request is recorded before it is answered, failures and denials too;
//! when the log cannot take records nothing is released; no stale yes after a DisableKey.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use keyledger::roles::{Role, RoleConfig};
use keyledger_events::codes::outcome;
use keyledger_tests::*;
use serde_json::json;

fn request_id(reply: &keyledger::protocol::Reply) -> [u8; 16] {
    *uuid::Uuid::parse_str(reply.request_id.as_deref().expect("request id header")).unwrap().as_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_exactly_one_record_with_the_right_fields() {
    let h = Harness::start().await;
    let key = h.create_key().await; // 1 (event)
    let arn = format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{key}");
    let enc = h
        .call("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": {"b": "2", "a": "1"}}))
        .await
        .unwrap(); // 2
    let blob = unb64(&enc.body["CiphertextBlob"]);
    h.ok("Decrypt", json!({"CiphertextBlob": b64(&blob), "EncryptionContext": {"a": "1", "b": "2"}})).await; // 3
    h.err("Decrypt", json!({"CiphertextBlob": b64(&blob)})).await; // 4 InvalidCiphertext
    h.err("DescribeKey", json!({"KeyId": "alias/nope"})).await; // 5 NotFound
    h.err("GenerateRandom", json!({"NumberOfBytes": 0})).await; // 6 Validation
                                                                // 7: an ARN in an account the caller has no key in (a denial needs a key that exists in
                                                                // another account; the dev topology has one tenant, so that case waits for key policies).
    h.err("DescribeKey", json!({"KeyId": format!("arn:aws:kms:us-east-1:999988887777:key/{key}")})).await;
    h.ok("DescribeKey", json!({"KeyId": key})).await; // 8
    h.ok("EnableKey", json!({"KeyId": key})).await; // 9 no-op: a usage record, no event
    h.ok("DisableKey", json!({"KeyId": key})).await; // 10 event
    h.err("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")})).await; // 11 Disabled
    h.err("CancelKeyDeletion", json!({"KeyId": key})).await; // 12 management failure
    h.client.call_raw("NoSuchOperation", "{}".into()).await.unwrap_err(); // 13 unknown operation
    h.ok("GenerateRandom", json!({"NumberOfBytes": 8})).await; // 14
                                                               // 15: a denial — a tenant claiming a gateway-forwarded SigV4 identity.
    let mut forged = async_nats::HeaderMap::new();
    forged.insert(keyledger::identity::FORWARDED_PRINCIPAL_HEADER, r#"{"account":"111122223333","principal_arn":"arn:aws:iam::111122223333:user/boss","access_key_id":"AKIAFORGED","source_addr":"1.2.3.4:5","user_agent":"x"}"#);
    let denied = h
        .client
        .nats()
        .request_with_headers(keyledger_events::names::api_subject("ListKeys"), forged, "{}".into())
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&denied.payload).unwrap();
    assert_eq!(body["__type"], "AccessDeniedException");
    const N: usize = 15;

    let records = h.audit_records().await;
    assert_eq!(
        records.len(),
        N,
        "exactly one record per request: {:#?}",
        records.iter().map(|r| (&r.record.operation, r.record.outcome, &r.record.error_name)).collect::<Vec<_>>()
    );
    let mut ids: Vec<_> = records.iter().map(|r| r.record.request_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "no request recorded twice");

    let by_id: HashMap<_, _> = records.iter().map(|r| (r.record.request_id, r)).collect();
    let e = &by_id[&request_id(&enc)].record;
    assert_eq!(e.operation, "Encrypt");
    assert_eq!(e.outcome, outcome::OK);
    assert_eq!(e.key_arn, arn);
    assert_eq!(e.key_id_supplied, key);
    assert_eq!(e.material_version, 1);
    assert_eq!(e.encryption_context, vec![("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
    assert_eq!(e.ciphertext_digest, Some(*blake3::hash(&blob).as_bytes()), "pairs the Encrypt with its Decrypts");
    assert_eq!(e.principal.nats_account, "DEV");
    assert_eq!(e.principal.user, "dev");
    assert_eq!(e.source.transport, keyledger_events::codes::transport::NATS);
    assert_eq!(e.source.client_name, "keyledger-cli");
    assert!(e.decided_at_seq >= 1);

    let refused = records.iter().find(|r| r.record.outcome == outcome::DENIED).expect("the denial is recorded");
    assert_eq!(
        (refused.record.principal.nats_account.as_str(), refused.record.principal.user.as_str()),
        ("DEV", "dev"),
        "attributed to who really sent it"
    );
    let outcomes: Vec<(&str, u16, &str)> =
        records.iter().map(|r| (r.record.operation.as_str(), r.record.outcome, r.record.error_name.as_str())).collect();
    for expected in [
        ("Decrypt", outcome::OK, ""),
        ("Decrypt", outcome::ERROR, "InvalidCiphertextException"),
        ("DescribeKey", outcome::ERROR, "NotFoundException"),
        ("GenerateRandom", outcome::ERROR, "ValidationException"),
        ("EnableKey", outcome::OK, ""),
        ("KeyDisabled", outcome::OK, ""),
        ("Encrypt", outcome::ERROR, "DisabledException"),
        ("CancelKeyDeletion", outcome::ERROR, "KMSInvalidStateException"),
        ("NoSuchOperation", outcome::ERROR, "UnknownOperationException"),
        ("ListKeys", outcome::DENIED, "AccessDeniedException"),
        ("KeyCreated", outcome::OK, ""),
    ] {
        assert!(outcomes.contains(&expected), "missing {expected:?} in {outcomes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_usage_stream_is_full_requests_fail_retryably_and_release_nothing() {
    let config = RoleConfig {
        audit: keyledger::audit::AuditConfig { usage_stream_max_bytes: Some(16 * 1024), ..Default::default() },
        ..Default::default()
    };
    let h = Harness::start_with_config(config).await;
    let health = keyledger::health::serve(h.env().roles.as_ref().unwrap().ctx.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(http_get(health.addr, "/healthz").await.0, 200);
    let key = h.create_key().await;
    let mut released = Vec::new();
    let mut first_failure = None;
    for i in 0..200 {
        match h.call("Encrypt", json!({"KeyId": key, "Plaintext": b64(format!("secret {i}").as_bytes())})).await {
            Ok(r) => {
                assert!(first_failure.is_none(), "a result was released after the log refused records");
                released.push(request_id(&r));
            }
            Err(e) => {
                let name = e.aws_name().unwrap_or_default().to_owned();
                assert!(
                    name == "KMSInternalException" || name == "DependencyTimeoutException",
                    "a retryable error, got {e}"
                );
                first_failure.get_or_insert(i);
                if i > first_failure.unwrap() + 5 {
                    break;
                }
            }
        }
    }
    assert!(first_failure.is_some(), "16 KiB of usage stream fills up");
    assert!(!released.is_empty());
    let stored: Vec<_> = h.audit_records().await.into_iter().map(|r| r.record.request_id).collect();
    for id in &released {
        assert!(stored.contains(id), "every released result has its record");
    }
    let state = h.env().roles.as_ref().unwrap().ctx.audit.health();
    assert!(matches!(state, keyledger::audit::AuditHealth::Failing(_)), "{state:?}");
    let (status, body) = http_get(health.addr, "/healthz").await;
    assert_eq!(status, 503, "the health endpoint says the service fails closed: {body}");
    assert!(body.contains("\"audit\"") && body.contains("failing"), "{body}");
    let (_, metrics) = http_get(health.addr, "/metrics").await;
    assert!(metrics.contains("keyledger_audit_writing{lane=") && metrics.contains("} 0"), "{metrics}");

    // Space returns: the next period's stream (the clock moves into the next month). The lane
    // re-opens on it and the service recovers by itself.
    h.clock.advance_ms(32 * 86_400_000);
    let recovered = eventually(Duration::from_secs(10), || async {
        h.call("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"after")})).await.is_ok()
    })
    .await;
    assert!(recovered, "requests succeed again once the log takes records");
    assert_eq!(h.env().roles.as_ref().unwrap().ctx.audit.health(), keyledger::audit::AuditHealth::Writing);
    assert_eq!(http_get(health.addr, "/healthz").await.0, 200);
    health.stop();
}

/// A minimal HTTP GET: (status, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_encrypt_stored_after_a_disable_key_is_answered_with_a_ciphertext() {
    let h = Harness::start().await;
    // A second cryptod on the same log: Encrypts are spread over both workers.
    let env = h.env();
    let root = keyledger_crypto::RootKey::load(&env.data_dir.join("root.key")).unwrap();
    let config = RoleConfig {
        accounts: [("DEV".to_owned(), ACCOUNT.to_owned())].into_iter().collect(),
        ..RoleConfig::default()
    };
    let second = keyledger::roles::start(&[Role::Cryptod], &env.service_profile, Arc::new(root), config).await.unwrap();

    for round in 0..3 {
        let key = h.create_key().await;
        let clients: Vec<_> = futures::future::join_all((0..8).map(|_| h.new_client())).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for c in clients {
            let (key, stop) = (key.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = c.call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(b"in flight")})).await;
                    out.push(r.map(|r| request_id(&r)).map_err(|e| e.aws_name().map(str::to_owned)));
                }
                out
            }));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let disable = h.call("DisableKey", json!({"KeyId": key})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let results: Vec<_> = futures::future::join_all(tasks).await.into_iter().flat_map(|r| r.unwrap()).collect();
        let released: Vec<[u8; 16]> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        let refused = results.iter().filter(|r| r.is_err()).count();
        assert!(!released.is_empty() && refused > 0, "round {round}: the load straddled the DisableKey");

        let records = h.audit_records().await;
        let disabled_at = records
            .iter()
            .find(|r| r.is_event && r.record.request_id == request_id(&disable))
            .expect("the DisableKey event")
            .server_time_ms;
        let by_id: HashMap<_, _> = records.iter().map(|r| (r.record.request_id, r)).collect();
        let mut withheld = 0;
        for id in &released {
            let r = by_id.get(id).expect("released results are recorded");
            assert_eq!(r.record.outcome, outcome::OK);
            assert!(
                r.server_time_ms <= disabled_at,
                "round {round}: an Encrypt stored after the DisableKey event was answered with a ciphertext"
            );
        }
        for r in records.iter().filter(|r| r.record.operation == "Encrypt" && r.record.key_arn.ends_with(&key)) {
            if r.record.outcome == outcome::WITHHELD {
                withheld += 1;
                assert_eq!(r.record.error_name, "DisabledException");
            }
        }
        eprintln!("round {round}: {} released, {refused} refused, {withheld} withheld", released.len());
    }
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_against_a_key_pending_deletion_raises_the_alarm() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let enc = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")})).await;
    h.ok("ScheduleKeyDeletion", json!({"KeyId": key, "PendingWindowInDays": 7})).await;
    let nats = h.service_nats().await;
    // The service user may not subscribe to alarms in the dev topology; an operator would.
    // Read the alarm through the record instead, and through a subscription when allowed.
    let mut alarms = nats.subscribe(keyledger_events::names::pending_deletion_alarm_subject(ACCOUNT)).await.ok();
    nats.flush().await.unwrap();
    let failing = h.call("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})).await.unwrap_err();
    assert_eq!(failing.aws_name(), Some("KMSInvalidStateException"));
    let records = h.audit_records().await;
    let alarm = records
        .iter()
        .find(|r| r.record.operation == "Decrypt" && r.record.pending_deletion_alarm)
        .expect("an alarm record");
    assert!(alarm.record.key_arn.ends_with(&key));
    if let Some(sub) = alarms.as_mut() {
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
            let body: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
            assert_eq!(body["operation"], "Decrypt");
            assert!(body["key_arn"].as_str().unwrap().ends_with(&key));
        }
    }
}

/// The requests counted in SuppressedRequests summaries, over every usage stream.
async fn suppressed_total(h: &Harness) -> u64 {
    let js = keyledger_log::jetstream(h.service_nats().await);
    let names: Vec<String> = js.stream_names().filter_map(|n| async move { n.ok() }).collect().await;
    let mut total = 0;
    for name in names.into_iter().filter(|n| n.starts_with(keyledger_events::names::USAGE_STREAM_PREFIX)) {
        let mut stream = js.get_stream(&name).await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        for seq in 1..=last {
            if let Ok(msg) = stream.direct_get(seq).await {
                if let keyledger_events::Body::UsageBlock(b) = keyledger_events::decode(&msg.payload).unwrap().body {
                    total += b.suppressed.iter().map(|s| s.count).sum::<u64>();
                }
            }
        }
    }
    total
}

/// Load shedding (issue 9): at its in-flight limit a role answers ThrottlingException at once
/// instead of queueing; every request gets an answer (served or throttled, none times out), and
/// every shed request is counted in a summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_in_flight_limit_a_role_sheds_with_throttling_and_counts_what_it_shed() {
    let config = RoleConfig { max_in_flight: 1, ..Default::default() };
    let h = Harness::start_with_config(config).await;
    let key = h.create_key().await;
    let mut calls = Vec::new();
    for i in 0..40 {
        let client = h.new_client().await;
        let key = key.clone();
        calls.push(tokio::spawn(async move {
            client.call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(format!("{i}").as_bytes())})).await
        }));
    }
    let (mut served, mut shed) = (0u64, 0u64);
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => served += 1,
            Err(e) => {
                assert_eq!(e.aws_name(), Some("ThrottlingException"), "only throttling, never a timeout: {e:?}");
                shed += 1;
            }
        }
    }
    assert_eq!(served + shed, 40);
    assert!(served >= 1 && shed >= 1, "served {served}, shed {shed}");
    let counted = eventually(Duration::from_secs(15), || async { suppressed_total(&h).await == shed }).await;
    assert!(counted, "every shed request is counted in a summary");
}

/// Per-account quotas (issue 9): past its burst an account is throttled whatever client it uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_quota_throttles_the_account_past_its_burst() {
    let config = RoleConfig {
        rate_limit_per_account: Some(keyledger::audit::Quota { per_sec: 0.5, burst: 4.0 }),
        ..Default::default()
    };
    let h = Harness::start_with_config(config).await;
    let other = h.new_client().await;
    let mut results = Vec::new();
    for i in 0..10 {
        let client = if i % 2 == 0 { &h.client } else { &other };
        results.push(client.call("GenerateRandom", &json!({"NumberOfBytes": 4})).await);
    }
    let throttled =
        results.iter().filter(|r| r.as_ref().err().and_then(|e| e.aws_name()) == Some("ThrottlingException")).count();
    assert!((3..=6).contains(&throttled), "a burst of 4 (and a refill of 0.5/s) for the account: {throttled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_throttled_before_any_work_and_counted_not_lost() {
    let config = RoleConfig { rate_limit_per_principal_per_sec: 1.0, rate_limit_burst: 5.0, ..Default::default() };
    let h = Harness::start_with_config(config).await;
    let mut throttled = 0;
    for _ in 0..20 {
        if let Err(e) = h.call("GenerateRandom", json!({"NumberOfBytes": 4})).await {
            assert_eq!(e.aws_name(), Some("ThrottlingException"));
            throttled += 1;
        }
    }
    assert!(throttled >= 14, "{throttled}");
    // The dropped requests appear as a SuppressedRequests summary within the flush period.
    let counted = eventually(Duration::from_secs(15), || async { suppressed_total(&h).await == throttled }).await;
    assert!(counted, "every dropped request is counted in a summary");
}
