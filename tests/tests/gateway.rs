//! The AWS-compatible HTTP endpoint, driven by the real AWS clients from PyPI (boto3, the aws
//! CLI, the AWS Encryption SDK; versions pinned in tests/python/requirements.txt), plus the
//! properties only a Rust test can set up: replays across a moved clock, forged forwarded
//! principals over NATS, rejections reaching the audit sink, an unreachable backend.

#[path = "gateway_support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use keyledger::gateway::audit::{Rejection, RejectionSink};
use keyledger::identity::{ForwardedPrincipal, FORWARDED_PRINCIPAL_HEADER};
use keyledger_events::names;
use keyledger_tests::*;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_covers_every_operation_family_and_the_common_errors() {
    let g = GatewayEnv::start().await;
    g.python_passes("boto3_operations.py", &[], &[], 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_openssl_import_key_material_as_aws_documents_it() {
    let g = GatewayEnv::start().await;
    g.python_passes("boto3_import.py", &[], &[], 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_key_policies_grants_cross_account_use_and_account_isolation() {
    let g = GatewayEnv::start().await;
    g.python_passes("boto3_policies_grants.py", &[], &[], 38).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_creates_aliases_encrypts_decrypts_with_fileb_and_paginates() {
    let g = GatewayEnv::start().await;
    g.python_passes("aws_cli.py", &[], &[], 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encryption_sdk_round_trips_a_12_mib_file_through_a_kms_keyring() {
    let g = GatewayEnv::start().await;
    g.python_passes("encryption_sdk.py", &[], &[], 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_built_requests_follow_the_json_1_1_wire_rules() {
    let g = GatewayEnv::start().await;
    g.python_passes("raw_wire.py", &[], &[], 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_unknown_keys_unsigned_requests_and_other_regions_are_refused() {
    let g = GatewayEnv::start().await;
    g.python_passes("sigv4_rejections.py", &[], &[], 7).await;
    let keys = g.h.ok("ListKeys", json!({})).await;
    assert_eq!(keys["Keys"].as_array().unwrap().len(), 0, "no refused request reached the roles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_replayed_after_five_minutes_is_refused() {
    let g = GatewayEnv::start().await;
    let out = g.python("sign_request.py", &["CreateKey", r#"{"Description": "replayed"}"#], &[]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let signed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let headers: Vec<(String, String)> = signed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().to_owned(), h[1].as_str().unwrap().to_owned()))
        .collect();
    let body = signed["body"].as_str().unwrap().as_bytes().to_vec();

    let first = send_raw(g.addr, "POST", "/", &headers, &body).await;
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    assert_eq!(first.json()["KeyMetadata"]["Description"], "replayed");

    // A replay within five minutes is the same request again (AWS accepts it too).
    g.h.clock.advance_ms(4 * 60 * 1000);
    assert_eq!(send_raw(g.addr, "POST", "/", &headers, &body).await.status, 200);

    // Past five minutes since its X-Amz-Date, the captured request is dead.
    g.h.clock.advance_ms(2 * 60 * 1000);
    let replay = send_raw(g.addr, "POST", "/", &headers, &body).await;
    assert_eq!(replay.status, 400);
    assert_eq!(replay.json()["__type"], "InvalidSignatureException");
    assert!(replay.json()["message"].as_str().unwrap().starts_with("Signature expired: "), "{}", replay.json());
    assert!(replay.header("x-amzn-requestid").is_some());
    let keys = g.h.ok("ListKeys", json!({})).await;
    assert_eq!(keys["Keys"].as_array().unwrap().len(), 2, "the expired replay created nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyledger_dev_prints_an_aws_command_line_that_works() {
    use std::io::{BufRead, BufReader};
    let venv = python_venv();
    let dir = tempfile::tempdir().unwrap();
    let port = keyledger_nats_server::free_port().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kl-cli"))
        .args(["dev", "--nats-port", "0", "--gateway-port", &port.to_string(), "--data-dir", ".keyledger"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let aws_line = loop {
        let line = rx.recv_timeout(Duration::from_secs(120)).expect("dev prints its banner");
        if line.trim_start().starts_with("AWS_SHARED_CREDENTIALS_FILE=") {
            break line.trim().to_owned();
        }
    };
    assert_eq!(
        aws_line,
        format!("AWS_SHARED_CREDENTIALS_FILE=.keyledger/aws-credentials aws --profile keyledger --region us-east-1 --endpoint-url http://127.0.0.1:{port} kms list-keys")
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join(".keyledger/aws-credentials")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the credential file is private");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&aws_line)
        .current_dir(dir.path())
        .env("PATH", format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default()))
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT);
    let _ = child.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed["Keys"].is_array(), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_serves_tls_with_the_configured_certificate() {
    let g = GatewayEnv::start().await;
    let cert = g.h.dir.path().join("cert.pem");
    let key = g.h.dir.path().join("key.pem");
    let made = g.python("make_cert.py", &[cert.to_str().unwrap(), key.to_str().unwrap()], &[]).await;
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let files = keyledger::gateway::TlsFiles { cert_chain: cert.clone(), private_key: key };
    let sink: Arc<dyn RejectionSink> = Arc::new(keyledger::gateway::audit::LogRejections);
    let tls = another_gateway(&g, Some(files), Default::default(), Some(sink)).await;
    assert!(tls.url().starts_with("https://127.0.0.1:"));
    let endpoint = tls.url();
    g.python_passes(
        "tls_client.py",
        &[],
        &[("KEYLEDGER_ENDPOINT", &endpoint), ("KEYLEDGER_CA_BUNDLE", cert.to_str().unwrap())],
        2,
    )
    .await;
    tls.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_over_http_records_the_sigv4_principal_and_the_credential_reads_its_writes() {
    let g = GatewayEnv::start().await;
    let now = (g.h.clock.now_unix_ms() / 1000) as i64;
    let body = br#"{"Description":"over http"}"#;
    let headers = signed_headers(g.addr, &g.dev, "CreateKey", body, now);
    let created = send_raw(g.addr, "POST", "/", &headers, body).await;
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    let key_id = created.json()["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let request_id = created.header("x-amzn-requestid").unwrap().to_owned();

    let nats = g.h.service_nats().await;
    let log = keyledger_log::ControlLog::open(keyledger_log::jetstream(nats.clone()), 1).await.unwrap();
    let head = log
        .subject_head(&names::control_subject(ACCOUNT, keyledger_events::AggregateKind::Key, &key_id))
        .await
        .unwrap()
        .unwrap();
    let event = keyledger_events::decode(&head.payload).unwrap();
    let p = &event.record.principal;
    assert_eq!(p.kind, keyledger_events::principal_kind::SIGV4);
    assert_eq!(p.account, ACCOUNT);
    assert_eq!(p.arn, format!("arn:aws:iam::{ACCOUNT}:user/dev"));
    assert_eq!(p.user, g.dev.0, "the access key id, never the secret");
    assert_eq!(p.nats_account, keyledger_nats_server::GATEWAY_ACCOUNT);
    assert_eq!(
        uuid::Uuid::from_bytes(event.record.request_id).to_string(),
        request_id,
        "x-amzn-RequestId is the recorded request id"
    );

    // The gateway forwards this credential's last log position from now on.
    let gateway = g.env().gateway.as_ref().unwrap();
    assert!(
        gateway.remembered_seq(&g.dev.0) >= head.stream_seq,
        "remembered {} < {}",
        gateway.remembered_seq(&g.dev.0),
        head.stream_seq
    );
    assert_eq!(gateway.remembered_seq(&g.other.0), 0, "other credentials are not held back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_forging_a_forwarded_principal_gains_nothing() {
    let g = GatewayEnv::start().await;
    let forged = ForwardedPrincipal {
        account: support::OTHER_ACCOUNT.into(),
        principal_arn: format!("arn:aws:iam::{}:user/other", support::OTHER_ACCOUNT),
        access_key_id: g.other.0.clone(),
        source_addr: "203.0.113.9:443".into(),
        user_agent: "forger".into(),
    };
    let mut headers = HeaderMap::new();
    headers.insert(FORWARDED_PRINCIPAL_HEADER, forged.to_header_value().as_str());
    headers.insert("Nats-Request-Info", r#"{"acc":"GATEWAY","user":"gateway"}"#);
    let reply =
        g.h.client.nats().request_with_headers(names::api_subject("CreateKey"), headers, "{}".into()).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(body["__type"], "AccessDeniedException", "{body}");

    // Nothing was created, neither in the forged account nor in the tenant's own.
    assert_eq!(g.h.ok("ListKeys", json!({})).await["Keys"].as_array().unwrap().len(), 0);
    let now = (g.h.clock.now_unix_ms() / 1000) as i64;
    let list = send_raw(g.addr, "POST", "/", &signed_headers(g.addr, &g.other, "ListKeys", b"{}", now), b"{}").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["Keys"].as_array().unwrap().len(), 0);
}

/// Collects rejections (what the audit write path will receive).
#[derive(Default)]
struct Collect(Mutex<Vec<Rejection>>);

impl RejectionSink for Collect {
    fn record_rejection(&self, r: Rejection) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move { self.0.lock().unwrap().push(r) })
    }
}

/// Collects refusals and suppressed-refusal summaries.
#[derive(Default)]
struct CollectAll {
    refused: Mutex<Vec<Rejection>>,
    suppressed: Mutex<Vec<keyledger_events::SuppressedRequestsV1>>,
}

impl RejectionSink for CollectAll {
    fn record_rejection(&self, r: Rejection) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move { self.refused.lock().unwrap().push(r) })
    }
    fn record_suppressed(
        &self,
        s: keyledger_events::SuppressedRequestsV1,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move { self.suppressed.lock().unwrap().push(s) })
    }
}

/// A second gateway on the environment's server and access keys, with `tls`, `limits` and
/// `sink` (None: reports to the roles, as dev and serve do).
async fn another_gateway(
    g: &GatewayEnv,
    tls: Option<keyledger::gateway::TlsFiles>,
    limits: keyledger::gateway::GatewayLimits,
    sink: Option<Arc<dyn RejectionSink>>,
) -> keyledger::gateway::RunningGateway {
    let env = g.env();
    let ctx = env.roles.as_ref().unwrap().ctx.clone();
    let access_keys = keyledger::gateway::credentials::AccessKeysFile::read(
        &env.data_dir.join(keyledger::cli::dev::DEV_ACCESS_KEYS_FILE),
    )
    .unwrap()
    .unwrap_all(&ctx.root)
    .unwrap();
    let config = keyledger::gateway::GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls,
        realm: ctx.config.realm.clone(),
        access_keys,
        clock: g.h.clock.clone(),
        limits,
        rejections: sink,
    };
    let profile = env.server.settings().topology.gateway_profile(&env.server.url()).unwrap();
    keyledger::gateway::start(config, &profile).await.unwrap()
}

/// Sends `head` (a request line and headers, without the blank line) and `body_part`, then
/// keeps the connection open without sending the rest; returns the stream.
async fn send_partial(
    addr: std::net::SocketAddr,
    headers: &[(String, String)],
    content_length: usize,
    body_part: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut req = "POST / HTTP/1.1\r\n".to_owned();
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {content_length}\r\n\r\n"));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(req.as_bytes()).await.unwrap();
    stream.write_all(body_part).await.unwrap();
    stream
}

/// Reads an HTTP response head from `stream` within `within` (None if none came).
async fn response_status(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_its_body_slowly_holds_no_slot_and_an_unauthenticated_body_is_never_read() {
    let g = GatewayEnv::start().await;
    // One request slot, and a body timeout longer than the test: with the slot taken before
    // the body is read (the old order), the second request below waits two minutes.
    let limits = keyledger::gateway::GatewayLimits {
        max_in_flight: 1,
        body_read_timeout: Duration::from_secs(120),
        ..Default::default()
    };
    let gw = another_gateway(&g, None, limits, Some(Arc::new(CollectAll::default()))).await;
    let addr = gw.local_addr();
    let now = (g.h.clock.now_unix_ms() / 1000) as i64;
    let body = br#"{"Limit": 10}"#;
    // A signed request whose body stops after 3 bytes.
    let stalled =
        send_partial(addr, &signed_headers(addr, &g.dev, "ListKeys", body, now), body.len(), &body[..3]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ok = tokio::time::timeout(
        Duration::from_secs(30),
        send_raw(addr, "POST", "/", &signed_headers(addr, &g.dev, "ListKeys", b"{}", now), b"{}"),
    )
    .await
    .expect("another client is served while one sends its body slowly");
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));

    // An unsigned request that announces a body and sends none is refused at once: its body
    // is never waited for.
    let unsigned =
        vec![("host".to_owned(), addr.to_string()), ("x-amz-target".to_owned(), "TrentService.ListKeys".to_owned())];
    let mut silent = send_partial(addr, &unsigned, 1000, b"").await;
    let head = response_status(&mut silent, Duration::from_secs(30)).await.expect("an answer before any body byte");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-amzn-errortype: missingauthenticationtokenexception"), "{head}");
    // Same for a signature naming an access key the gateway does not know.
    let unknown = ("KLAKNOTAKEYNOTAKEY22".to_owned(), g.dev.1.clone());
    let mut silent = send_partial(addr, &signed_headers(addr, &unknown, "ListKeys", body, now), body.len(), b"").await;
    let head = response_status(&mut silent, Duration::from_secs(30)).await.expect("an answer before any body byte");
    assert!(head.to_ascii_lowercase().contains("x-amzn-errortype: unrecognizedclientexception"), "{head}");
    drop(stalled);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_bodies_in_progress_fill_the_budget_a_request_is_throttled_and_reported() {
    let mut g = GatewayEnv::start().await;
    let limits = keyledger::gateway::GatewayLimits {
        max_buffered_body_bytes: 64,
        unbudgeted_body_bytes: 0,
        body_read_timeout: Duration::from_secs(2),
        nats_timeout: Duration::from_secs(15),
        ..Default::default()
    };
    let sink = Arc::new(CollectAll::default());
    let gw = another_gateway(&g, None, limits, Some(sink.clone())).await;
    let addr = gw.local_addr();
    // A responder that never answers stands in for a slow role: a request's body stays in
    // the budget until its answer is sent.
    g.h.env.as_mut().unwrap().roles.take().unwrap().stop().await;
    let service = g.h.service_nats().await;
    let _silent = service.subscribe(names::api_subject("ListKeys")).await.unwrap();
    service.flush().await.unwrap();
    let now = (g.h.clock.now_unix_ms() / 1000) as i64;
    let holder_body = format!(r#"{{"Limit":1,"Marker":"{}"}}"#, "x".repeat(60)); // over the 64-byte budget: takes all of it
    let holder_headers = signed_headers(addr, &g.dev, "ListKeys", holder_body.as_bytes(), now);
    let holder =
        tokio::spawn(async move { send_raw(addr, "POST", "/", &holder_headers, holder_body.as_bytes()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = send_raw(addr, "POST", "/", &signed_headers(addr, &g.dev, "ListKeys", b"{}", now), b"{}").await;
    assert_eq!(
        (r.status, r.json()["__type"].as_str()),
        (400, Some("ThrottlingException")),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let refused = sink.refused.lock().unwrap().clone();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!((refused[0].error_name.as_str(), refused[0].reason.as_str()), ("ThrottlingException", "busy"));
    assert_eq!(refused[0].request_id.to_string(), r.header("x-amzn-requestid").unwrap());
    assert_eq!(holder.await.unwrap().status, 503, "the holder times out waiting for its answer");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_network_cannot_hold_the_body_budget_by_announcing_bodies_it_never_sends() {
    let g = GatewayEnv::start().await;
    let limits = keyledger::gateway::GatewayLimits {
        max_buffered_body_bytes_per_client: 100,
        unbudgeted_body_bytes: 16,
        ..Default::default()
    };
    let sink = Arc::new(CollectAll::default());
    let gw = another_gateway(&g, None, limits, Some(sink.clone())).await;
    let addr = gw.local_addr();
    let now = (g.h.clock.now_unix_ms() / 1000) as i64;
    let body = format!(r#"{{"Limit":1{}}}"#, " ".repeat(88));
    // 99 announced bytes (JSON with spaces), none sent: 99 of this network's 100.
    let _stalled =
        send_partial(addr, &signed_headers(addr, &g.dev, "ListKeys", body.as_bytes(), now), body.len(), b"").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again =
        send_raw(addr, "POST", "/", &signed_headers(addr, &g.dev, "ListKeys", body.as_bytes(), now), body.as_bytes())
            .await;
    assert_eq!(
        (again.status, again.json()["__type"].as_str()),
        (400, Some("ThrottlingException")),
        "the same network is over its share: {}",
        String::from_utf8_lossy(&again.body)
    );
    // Small requests (every real KMS request is under the default 64 KiB) never wait.
    let small = send_raw(addr, "POST", "/", &signed_headers(addr, &g.dev, "ListKeys", b"{}", now), b"{}").await;
    assert_eq!(small.status, 200, "a small request is served: {}", String::from_utf8_lossy(&small.body));
    let other = "127.0.0.2".parse().unwrap();
    let ok = send_raw_from(
        Some(other),
        addr,
        "POST",
        "/",
        &signed_headers(addr, &g.dev, "ListKeys", body.as_bytes(), now),
        body.as_bytes(),
    )
    .await;
    assert_eq!(ok.status, 200, "another network is served: {}", String::from_utf8_lossy(&ok.body));
    let refused = sink.refused.lock().unwrap().clone();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!((refused[0].error_name.as_str(), refused[0].reason.as_str()), ("ThrottlingException", "busy"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refusals_is_recorded_up_to_the_rate_and_counted_past_it() {
    let g = GatewayEnv::start().await;
    let limits = keyledger::gateway::GatewayLimits {
        refusal_records_per_client: keyledger::audit::Quota { per_sec: 0.0, burst: 3.0 },
        ..Default::default()
    };
    let sink = Arc::new(CollectAll::default());
    let gw = another_gateway(&g, None, limits, Some(sink.clone())).await;
    let addr = gw.local_addr();
    let now = (g.h.clock.now_unix_ms() / 1000) as i64;
    let wrong = (g.dev.0.clone(), "W".repeat(40));
    for _ in 0..10 {
        let r = send_raw(addr, "POST", "/", &signed_headers(addr, &wrong, "ListKeys", b"{}", now), b"{}").await;
        assert_eq!(r.json()["__type"], "InvalidSignatureException", "every refusal is still answered");
    }
    let ok = send_raw(addr, "POST", "/", &signed_headers(addr, &g.dev, "ListKeys", b"{}", now), b"{}").await;
    assert_eq!(ok.status, 200, "the client's own good requests are not limited");
    gw.stop().await;
    assert_eq!(sink.refused.lock().unwrap().len(), 3, "the burst is recorded one by one");
    let suppressed = sink.suppressed.lock().unwrap().clone();
    assert_eq!(suppressed.len(), 1, "{suppressed:?}");
    assert_eq!(suppressed[0].count, 7, "the rest is counted, and reported on stop");
    assert_eq!(suppressed[0].principal.arn, "keyledger:http-client:127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_the_gateway_makes_itself_are_in_the_audit_log_under_the_request_id_the_client_got() {
    let g = GatewayEnv::start().await;
    let addr = g.addr;
    let now = (g.h.clock.now_unix_ms() / 1000) as i64;
    let mut expected = Vec::new();
    // Authenticated, but no operation: another method, a missing target, a repeated target.
    let target = |op: &str| ("x-amz-target".to_owned(), format!("TrentService.{op}"));
    let get = signed_request(addr, &g.dev, "GET", vec![target("ListKeys")], b"", now);
    let r = send_raw(addr, "GET", "/", &get, b"").await;
    assert_eq!(r.json()["__type"], "UnknownOperationException");
    expected.push((
        r.header("x-amzn-requestid").unwrap().to_owned(),
        "UnknownOperationException",
        "gateway:not_post_root",
        true,
    ));
    let none = signed_request(addr, &g.dev, "POST", vec![], b"{}", now);
    let r = send_raw(addr, "POST", "/", &none, b"{}").await;
    assert_eq!(r.json()["__type"], "UnknownOperationException");
    expected.push((
        r.header("x-amzn-requestid").unwrap().to_owned(),
        "UnknownOperationException",
        "gateway:no_target",
        true,
    ));
    // Two targets, both signed: neither is served (the first used to be).
    let twice = signed_request(addr, &g.dev, "POST", vec![target("ListKeys"), target("CreateKey")], b"{}", now);
    let r = send_raw(addr, "POST", "/", &twice, b"{}").await;
    assert_eq!(r.json()["__type"], "UnknownOperationException", "{}", String::from_utf8_lossy(&r.body));
    expected.push((
        r.header("x-amzn-requestid").unwrap().to_owned(),
        "UnknownOperationException",
        "gateway:no_target",
        true,
    ));
    // A bad signature.
    let wrong = (g.dev.0.clone(), "W".repeat(40));
    let r = send_raw(addr, "POST", "/", &signed_headers(addr, &wrong, "ListKeys", b"{}", now), b"{}").await;
    expected.push((
        r.header("x-amzn-requestid").unwrap().to_owned(),
        "InvalidSignatureException",
        "sigv4:bad_signature",
        false,
    ));
    // Unauthenticated body problems: too large.
    let big = vec![b' '; 1024 * 1024 + 1];
    let r = send_raw(addr, "POST", "/", &signed_headers(addr, &g.dev, "ListKeys", &big, now), &big).await;
    assert_eq!(r.status, 413);
    expected.push((
        r.header("x-amzn-requestid").unwrap().to_owned(),
        "RequestEntityTooLargeException",
        "gateway:body_too_large",
        false,
    ));
    // An operation no role serves is recorded by a role, under the id the client got.
    let r = send_raw(addr, "POST", "/", &signed_headers(addr, &g.dev, "NoSuchOperation", b"{}", now), b"{}").await;
    assert_eq!(r.json()["__type"], "UnknownOperationException");
    let unknown_id = r.header("x-amzn-requestid").unwrap().to_owned();
    // A tenant cannot forge a refusal report: from a tenant it is an unknown operation.
    let forged = keyledger::gateway::audit::RefusalReport::Refused(Rejection {
        request_id: uuid::Uuid::new_v4(),
        time_unix_ms: 1,
        error_name: "InvalidSignatureException".into(),
        reason: "bad_signature".into(),
        access_key_id: Some("KLAKFORGEDFORGED1234".into()),
        authenticated: None,
        operation: Some("Decrypt".into()),
        source_addr: "203.0.113.9:1".into(),
        user_agent: "forger".into(),
    });
    let reply =
        g.h.client
            .nats()
            .request(
                names::api_subject(keyledger::gateway::audit::REPORT_OPERATION),
                serde_json::to_vec(&forged).unwrap().into(),
            )
            .await
            .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(answer["__type"], "UnknownOperationException", "{answer}");

    let records = g.h.audit_records().await;
    let find = |id: &str| records.iter().find(|r| uuid::Uuid::from_bytes(r.record.request_id).to_string() == id);
    for (id, error, by, authenticated) in &expected {
        let r = &find(id).unwrap_or_else(|| panic!("no record for {error} ({id})")).record;
        assert_eq!((r.error_name.as_str(), r.authorized_by.as_str()), (*error, *by));
        assert_eq!(r.source.transport, keyledger_events::codes::transport::HTTP);
        assert!(r.source.client_addr.starts_with("127.0.0.1:"));
        assert_eq!(r.principal.user, g.dev.0, "the access key id, never the secret");
        assert_eq!(r.principal.nats_account, keyledger_nats_server::GATEWAY_ACCOUNT);
        if *authenticated {
            assert_eq!(r.principal.arn, format!("arn:aws:iam::{ACCOUNT}:user/dev"));
            assert_eq!(r.outcome, keyledger_events::codes::outcome::ERROR);
        }
    }
    let unknown = &find(&unknown_id).expect("the unknown operation's record").record;
    assert_eq!(
        (unknown.operation.as_str(), unknown.error_name.as_str()),
        ("NoSuchOperation", "UnknownOperationException")
    );
    assert_eq!(unknown.principal.arn, format!("arn:aws:iam::{ACCOUNT}:user/dev"));
    assert_eq!(unknown.source.transport, keyledger_events::codes::transport::HTTP);
    assert!(
        records.iter().all(|r| r.record.principal.user != "KLAKFORGEDFORGED1234"),
        "the forged report recorded nothing as the gateway's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sigv4_rejection_reaches_the_audit_sink_with_the_key_id_and_never_the_secret() {
    let g = GatewayEnv::start().await;
    let sink = Arc::new(Collect::default());
    let gw = another_gateway(&g, None, Default::default(), Some(sink.clone())).await;
    let addr = gw.local_addr();
    let now = (g.h.clock.now_unix_ms() / 1000) as i64;
    let body = b"{}";

    let wrong = (g.dev.0.clone(), "W".repeat(40));
    let r = send_raw(addr, "POST", "/", &signed_headers(addr, &wrong, "ListKeys", body, now), body).await;
    assert_eq!((r.status, r.json()["__type"].as_str().unwrap()), (400, "InvalidSignatureException"));
    let unknown = ("KLAKNOTAKEYNOTAKEY22".to_owned(), g.dev.1.clone());
    let r = send_raw(addr, "POST", "/", &signed_headers(addr, &unknown, "ListKeys", body, now), body).await;
    assert_eq!(r.json()["__type"], "UnrecognizedClientException");
    let stale = signed_headers(addr, &g.dev, "ListKeys", body, now - 301);
    let r = send_raw(addr, "POST", "/", &stale, body).await;
    assert_eq!(r.json()["__type"], "InvalidSignatureException");
    let unsigned =
        vec![("host".to_owned(), addr.to_string()), ("x-amz-target".to_owned(), "TrentService.ListKeys".to_owned())];
    let r = send_raw(addr, "POST", "/", &unsigned, body).await;
    assert_eq!(r.json()["__type"], "MissingAuthenticationTokenException");
    let ok = send_raw(addr, "POST", "/", &signed_headers(addr, &g.dev, "ListKeys", body, now), body).await;
    assert_eq!(ok.status, 200);

    let seen = sink.0.lock().unwrap().clone();
    let summary: Vec<(&str, &str, Option<&str>)> =
        seen.iter().map(|r| (r.error_name.as_str(), r.reason.as_str(), r.access_key_id.as_deref())).collect();
    assert_eq!(
        summary,
        vec![
            ("InvalidSignatureException", "bad_signature", Some(g.dev.0.as_str())),
            ("UnrecognizedClientException", "unknown_access_key", Some("KLAKNOTAKEYNOTAKEY22")),
            ("InvalidSignatureException", "clock_skew", Some(g.dev.0.as_str())),
            ("MissingAuthenticationTokenException", "missing", None),
        ],
        "one record per rejection, none for the accepted request"
    );
    for r in &seen {
        assert_eq!(r.operation.as_deref(), Some("ListKeys"));
        assert!(r.source_addr.starts_with("127.0.0.1:"));
        let shown = format!("{r:?}");
        assert!(!shown.contains(&g.dev.1) && !shown.contains(&wrong.1), "no secret in a rejection record");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_worker_the_endpoint_answers_503_and_oversized_bodies_413() {
    let mut g = GatewayEnv::start().await;
    let now = (g.h.clock.now_unix_ms() / 1000) as i64;
    let big = vec![b' '; 1024 * 1024 + 1];
    let r = send_raw(g.addr, "POST", "/", &signed_headers(g.addr, &g.dev, "ListKeys", &big, now), &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["__type"], "RequestEntityTooLargeException");

    // Stop the roles but keep the server and the gateway.
    let env = g.h.env.as_mut().unwrap();
    env.roles.take().unwrap().stop().await;
    let r = send_raw(g.addr, "POST", "/", &signed_headers(g.addr, &g.dev, "ListKeys", b"{}", now), b"{}").await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["__type"], "DependencyTimeoutException");
    assert!(r.header("x-amzn-requestid").is_some());
}

/// Writes `<test dir>/serve.toml`: a gateway-only `keyledger serve` (roles = []) of the
/// environment's server on a free port, with the access keys of `access_keys_file`.
fn gateway_only_serve_config(
    g: &GatewayEnv,
    access_keys_file: &std::path::Path,
) -> (std::path::PathBuf, std::net::SocketAddr) {
    let data = g.env().data_dir.clone();
    let port = keyledger_nats_server::free_port().unwrap();
    let config = g.h.dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "roles = []\nservice_profile = {:?}\nroot_key_file = {:?}\n[accounts]\nDEV = \"{ACCOUNT}\"\n[gateway]\nlisten = \"127.0.0.1:{port}\"\nnats_profile = {:?}\naccess_keys_file = {:?}\n",
            data.join("service.json"),
            data.join("root.key"),
            data.join(keyledger::cli::dev::DEV_GATEWAY_PROFILE_FILE),
            access_keys_file,
        ),
    )
    .unwrap();
    (config, format!("127.0.0.1:{port}").parse().unwrap())
}

/// Starts `keyledger serve --config <config>` (stderr into `<test dir>/serve.log`) and waits
/// (≤ 30 s) until its endpoint accepts connections; returns the child and whether it did.
async fn spawn_serve(
    g: &GatewayEnv,
    config: &std::path::Path,
    addr: std::net::SocketAddr,
) -> (std::process::Child, bool) {
    let serve = std::process::Command::new(env!("CARGO_BIN_EXE_kl-cli"))
        .args(["serve", "--config"])
        .arg(config)
        .env("KEYLEDGER_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(g.h.dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let up =
        eventually(Duration::from_secs(30), || async move { tokio::net::TcpStream::connect(addr).await.is_ok() }).await;
    (serve, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyledger_serve_runs_the_endpoint_from_its_gateway_section_with_a_created_access_key() {
    let g = GatewayEnv::start().await;
    let keys = g.h.dir.path().join("serve-access-keys.json");
    let (config, addr) = gateway_only_serve_config(&g, &keys);
    let cli = env!("CARGO_BIN_EXE_kl-cli");
    let created = std::process::Command::new(cli)
        .args(["gateway", "create-access-key", "--config"])
        .arg(&config)
        .args(["--account", ACCOUNT, "--user", "alice"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let text = String::from_utf8(created.stdout).unwrap();
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start_matches([' ', '=']).to_owned()).unwrap()
    };
    let alice = (field("aws_access_key_id"), field("aws_secret_access_key"));
    assert!(text.starts_with("[alice]\n"), "{text}");
    let stored = std::fs::read_to_string(&keys).unwrap();
    assert!(stored.contains(&alice.0) && !stored.contains(&alice.1), "the file keeps the id, not the secret");

    let (mut serve, up) = spawn_serve(&g, &config, addr).await;
    let now = (g.h.clock.now_unix_ms() / 1000) as i64;
    let body = br#"{"Description":"via serve"}"#;
    let (created, refused) = if up {
        let created = send_raw(addr, "POST", "/", &signed_headers(addr, &alice, "CreateKey", body, now), body).await;
        let wrong = (alice.0.clone(), "W".repeat(40));
        let refused = send_raw(addr, "POST", "/", &signed_headers(addr, &wrong, "ListKeys", b"{}", now), b"{}").await;
        (Some(created), Some(refused))
    } else {
        (None, None)
    };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(serve.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = serve.wait();
    assert!(up, "keyledger serve did not open the endpoint");
    let created = created.unwrap();
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    assert_eq!(created.json()["KeyMetadata"]["AWSAccountId"], ACCOUNT);
    let tenant_keys = g.h.ok("ListKeys", json!({})).await;
    assert_eq!(tenant_keys["Keys"].as_array().unwrap().len(), 1, "the key is in the tenant's account");
    // A gateway of its own process (roles = []) records its refusals through the roles.
    let refused = refused.unwrap();
    assert_eq!(refused.json()["__type"], "InvalidSignatureException");
    let id = refused.header("x-amzn-requestid").unwrap().to_owned();
    let records = g.h.audit_records().await;
    let record = records
        .iter()
        .find(|r| uuid::Uuid::from_bytes(r.record.request_id).to_string() == id)
        .expect("the refusal of a serve gateway is in the audit log");
    assert_eq!(record.record.outcome, keyledger_events::codes::outcome::DENIED);
    assert_eq!(record.record.principal.user, alice.0);

    // The operator lists and removes access keys.
    let gateway = |args: &[&str]| {
        std::process::Command::new(cli).arg("gateway").args(args).arg("--config").arg(&config).output().unwrap()
    };
    let listed = gateway(&["list-access-keys"]);
    assert!(listed.status.success());
    assert_eq!(String::from_utf8(listed.stdout).unwrap(), format!("{}\t{ACCOUNT}\talice\n", alice.0));
    assert!(gateway(&["delete-access-key", "--access-key-id", &alice.0]).status.success());
    let again = gateway(&["delete-access-key", "--access-key-id", &alice.0]);
    assert!(!again.status.success(), "a key that is not there cannot be removed");
    assert!(String::from_utf8_lossy(&again.stderr).contains("no access key"));
    assert!(!std::fs::read_to_string(&keys).unwrap().contains(&alice.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_signatures_are_in_the_audit_log_before_the_client_hears_of_them() {
    let g = GatewayEnv::start().await;
    let addr = g.addr;
    let body = b"{}";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let wrong = (g.dev.0.clone(), "not-the-secret-not-the-secret-not-the-se".to_owned());
    let r = send_raw(addr, "POST", "/", &signed_headers(addr, &wrong, "ListKeys", body, now), body).await;
    assert_eq!(r.json()["__type"], "InvalidSignatureException");
    let unsigned =
        vec![("host".to_owned(), addr.to_string()), ("x-amz-target".to_owned(), "TrentService.ListKeys".to_owned())];
    let r = send_raw(addr, "POST", "/", &unsigned, body).await;
    assert_eq!(r.json()["__type"], "MissingAuthenticationTokenException");
    let request_id = r.header("x-amzn-requestid").expect("request id").to_owned();

    let records = g.h.audit_records().await;
    let denied: Vec<_> = records
        .iter()
        .filter(|r| {
            r.record.source.transport == keyledger_events::codes::transport::HTTP
                && r.record.outcome == keyledger_events::codes::outcome::DENIED
        })
        .collect();
    assert_eq!(denied.len(), 2, "both refusals are recorded");
    let bad =
        denied.iter().find(|r| r.record.error_name == "InvalidSignatureException").expect("bad signature recorded");
    assert_eq!(bad.record.principal.user, g.dev.0, "the access key id it named, never the secret");
    assert_eq!(bad.record.operation, "ListKeys");
    let missing = denied.iter().find(|r| r.record.error_name == "MissingAuthenticationTokenException").unwrap();
    assert_eq!(uuid::Uuid::from_bytes(missing.record.request_id).to_string(), request_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyledger_serve_stops_on_sigint_while_nats_is_down() {
    let mut g = GatewayEnv::start().await;
    let keys = g.env().data_dir.join(keyledger::cli::dev::DEV_ACCESS_KEYS_FILE);
    let (config, addr) = gateway_only_serve_config(&g, &keys);
    let (mut serve, up) = spawn_serve(&g, &config, addr).await;
    // NATS goes away; a refusal now cannot be reported (it is logged instead), then SIGINT.
    g.h.env.as_mut().unwrap().server.stop().unwrap();
    if up {
        let now = (g.h.clock.now_unix_ms() / 1000) as i64;
        let wrong = (g.dev.0.clone(), "W".repeat(40));
        let r = send_raw(addr, "POST", "/", &signed_headers(addr, &wrong, "ListKeys", b"{}", now), b"{}").await;
        assert_eq!(r.json()["__type"], "InvalidSignatureException");
    }
    let pid = nix::unistd::Pid::from_raw(serve.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let exited = eventually(Duration::from_secs(30), || {
        let done = matches!(serve.try_wait(), Ok(Some(_)));
        async move { done }
    })
    .await;
    if !exited {
        let _ = serve.kill();
        let _ = serve.wait();
    }
    let log = std::fs::read_to_string(g.h.dir.path().join("serve.log")).unwrap_or_default();
    assert!(up, "keyledger serve did not open the endpoint: {log}");
    assert!(
        exited,
        "keyledger serve ignored SIGINT while NATS was down: {}",
        std::fs::read_to_string(g.h.dir.path().join("serve.log")).unwrap_or_default()
    );
}
