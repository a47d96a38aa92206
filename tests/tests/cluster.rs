//! A three-node JetStream cluster (issue 9), on loopback: the streams replicated ×3, the roles
//! and the clients connected to every member. Fault tests, bounded in count and time: after
//! each, every acknowledged request has its audit record, no event is lost or duplicated, the
//! log verifies, a replay of the control stream gives the live state, and clients saw only
//! retryable errors.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger::checkpointer::{CheckpointConfig, LogKey};
use keyledger::protocol::{CallError, KmsClient};
use keyledger::roles::{Role, RoleConfig, RunningRoles};
use keyledger_nats_server::{DevTopology, NatsCluster};
use keyledger_tests::*;
use serde_json::json;

const CLI: &str = env!("CARGO_BIN_EXE_kl-cli");

struct Env {
    dir: tempfile::TempDir,
    cluster: NatsCluster,
    roles: Option<RunningRoles>,
    client: KmsClient,
    vkey: String,
}

async fn start() -> Env {
    start_with(RoleConfig::default()).await
}

async fn start_with(base: RoleConfig) -> Env {
    if let Ok(filter) = std::env::var("KEYLEDGER_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).try_init();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut topology = DevTopology::dev();
    // A user per role process, each allowed only what its roles need (deploy/nats).
    for (user, roles, lane) in [
        ("keyd", vec!["keyd", "checkpointer"], Some("keyd-1")),
        ("cryptod-1", vec!["cryptod"], Some("cryptod-1")),
        ("auditd", vec!["auditd"], None),
    ] {
        topology.role_users.push(keyledger_nats_server::RoleUser {
            credentials: keyledger_nats_server::UserCredentials::generated(user),
            roles: roles.into_iter().map(str::to_owned).collect(),
            lane: lane.map(str::to_owned),
        });
    }
    let binary = keyledger_nats_server::find_or_install().unwrap();
    // TLS on every client connection and every route, with a dev CA.
    let tls = keyledger_nats_server::generate_dev_tls(&dir.path().join("tls")).unwrap();
    let cluster = NatsCluster::start(&binary, topology.clone(), &dir.path().join("nats"), 3, true, Some(&tls)).unwrap();
    let key_path = dir.path().join("log.key");
    let vkey = LogKey::create_file(&key_path, "keyledger.local/log-cluster").unwrap().verifier().to_string();
    let config = RoleConfig {
        replicas: 3,
        accounts: topology.tenants.iter().map(|t| (t.nats_account.clone(), t.keyledger_account.clone())).collect(),
        checkpoint: Some(CheckpointConfig::new(Arc::new(LogKey::load(&key_path).unwrap()))),
        ..base
    };
    let root = Arc::new(keyledger_crypto::RootKey::generate());
    let roles = keyledger::roles::start(
        &[Role::Keyd, Role::Cryptod, Role::Checkpointer],
        &cluster.service_profile(),
        root,
        config,
    )
    .await
    .unwrap();
    cluster.service_profile().write_to(&dir.path().join("service.json")).unwrap();
    for user in ["keyd", "cryptod-1", "auditd"] {
        cluster.role_profile(user).unwrap().write_to(&dir.path().join(format!("{user}.json"))).unwrap();
    }
    let profile = cluster.client_profile("dev").unwrap();
    let nats = keyledger::cli::tls_options(
        async_nats::ConnectOptions::with_user_and_password(profile.user.clone(), profile.password.expose().to_owned()),
        profile.ca_file.as_deref(),
    )
    .custom_inbox_prefix(profile.inbox_prefix.clone())
    .connect(keyledger_log::server_list(profile.url.as_str()))
    .await
    .unwrap();
    Env { dir, cluster, roles: Some(roles), client: KmsClient::new(nats, Duration::from_secs(5)), vkey }
}

/// What the load saw: acknowledged request ids and every error by name.
#[derive(Default)]
struct Seen {
    ok: Vec<String>,
    errors: Vec<String>,
    /// Longest time between two acknowledged requests (the outage as clients saw it).
    longest_gap: Duration,
}

/// Encrypt from 8 workers (and a CreateKey every tenth call) until `stop`.
async fn load(client: KmsClient, key: String, stop: Arc<AtomicBool>) -> Seen {
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, key, stop) = (client.clone(), key.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let result = if i.is_multiple_of(10) {
                    client.call("CreateKey", &json!({"Description": format!("w{w}-{i}")})).await
                } else {
                    client
                        .call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(format!("{w}-{i}").as_bytes())}))
                        .await
                };
                let outcome = match result {
                    Ok(reply) => Ok(reply.request_id.expect("a request id")),
                    Err(CallError::Service(e)) => Err(e.name),
                    Err(other) => Err(format!("transport: {other}")),
                };
                if outcome.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await; // a client's backoff
                }
                seen.push((Instant::now(), outcome));
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort_by_key(|(t, _)| *t);
    let mut seen = Seen::default();
    let mut last_ok: Option<Instant> = None;
    for (t, outcome) in all {
        match outcome {
            Ok(id) => {
                if let Some(prev) = last_ok {
                    seen.longest_gap = seen.longest_gap.max(t - prev);
                }
                last_ok = Some(t);
                seen.ok.push(id);
            }
            Err(name) => seen.errors.push(name),
        }
    }
    seen
}

/// Every request id the log records (usage records and control events), hyphenated.
async fn recorded_request_ids(profile: &keyledger_nats_server::ServiceProfile) -> HashSet<String> {
    let nats = keyledger_log::connect_verified(
        &profile.url,
        &profile.user,
        profile.password.expose(),
        &profile.inbox_prefix,
        "cluster-test",
        profile.ca_file.as_deref(),
    )
    .await
    .unwrap();
    let js = keyledger_log::jetstream(nats);
    // Right after a failover a read can time out while stream leaders settle: read again.
    let mut last_error = String::new();
    for _ in 0..5 {
        let mut ids = HashSet::new();
        let read = keyledger::export::read_streams(&js, |frame| {
            if let keyledger::export::Frame::Message(m) = frame {
                if keyledger::export::is_record_stream(&m.stream) {
                    let event = keyledger_events::decode(&m.payload).expect("every stored record decodes");
                    match event.body {
                        keyledger_events::Body::UsageBlock(b) => {
                            ids.extend(b.records.iter().map(|r| uuid::Uuid::from_bytes(r.request_id).to_string()));
                        }
                        _ => {
                            ids.insert(uuid::Uuid::from_bytes(event.record.request_id).to_string());
                        }
                    }
                }
            }
            Ok(())
        })
        .await;
        match read {
            Ok(()) => return ids,
            Err(e) => last_error = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("cannot read the log: {last_error}");
}

/// How the checks read the log: a service profile (and the file it was written to, for the
/// CLI) and the log's public key.
struct LogAccess {
    profile: keyledger_nats_server::ServiceProfile,
    profile_file: std::path::PathBuf,
    vkey: String,
}

impl Env {
    fn log_access(&self) -> LogAccess {
        LogAccess {
            profile: self.cluster.service_profile(),
            profile_file: self.dir.path().join("service.json"),
            vkey: self.vkey.clone(),
        }
    }
}

/// Waits until `keyledger verify` of the live log (with the log key) exits 0; (whether it
/// did, the last report).
async fn wait_verified(log: &LogAccess, limit: Duration) -> (bool, String) {
    let deadline = Instant::now() + limit;
    loop {
        let out = tokio::process::Command::new(CLI)
            .args(["verify", "--log-key", &log.vkey, "--service-profile"])
            .arg(&log.profile_file)
            .output()
            .await
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.code() == Some(0) || Instant::now() >= deadline {
            return (out.status.code() == Some(0), report);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Clients saw only retryable errors, every acknowledged request has its audit record, and the
/// log verifies within `limit` (no event lost or duplicated, chains and checkpoints intact).
async fn check_the_log(log: &LogAccess, seen: &Seen, what: &str, limit: Duration) {
    let retryable = ["DependencyTimeoutException", "KMSInternalException", "ThrottlingException"];
    for e in &seen.errors {
        assert!(retryable.contains(&e.as_str()) || e.starts_with("transport: "), "{what}: a non-retryable error: {e}");
    }
    let recorded = recorded_request_ids(&log.profile).await;
    let missing: Vec<&String> = seen.ok.iter().filter(|id| !recorded.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} acknowledged requests without a record: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let (verified, report) = wait_verified(log, limit).await;
    assert!(verified, "{what}: the log verifies:\n{report}");
}

/// A new KMS key's id.
async fn create_key(client: &KmsClient) -> String {
    client.call("CreateKey", &json!({})).await.unwrap().body["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

/// The checks every fault test ends with.
async fn after_the_fault(log: &LogAccess, roles: &RunningRoles, seen: &Seen, what: &str) {
    check_the_log(log, seen, what, Duration::from_secs(20)).await;
    // A replay of the control stream gives the live state.
    let head = roles.ctx.follower.catch_up(Duration::from_secs(10)).await.unwrap();
    let log = roles.ctx.follower.log();
    let mut replayed = keyledger_kms::Projection::default();
    let mut records = std::pin::pin!(log.read_range(1, head).await.unwrap());
    while let Some(r) = futures::StreamExt::next(&mut records).await {
        keyledger::follower::apply_record(&mut replayed, &r.unwrap()).unwrap();
    }
    assert_eq!(replayed.state_digest(), roles.ctx.follower.read().state_digest(), "{what}: replay = live");
    eprintln!(
        "{what}: {} requests acknowledged, {} errors ({:?}), longest gap without a success {:.2} s",
        seen.ok.len(),
        seen.errors.len(),
        {
            let mut kinds: Vec<&String> = seen.errors.iter().collect();
            kinds.sort();
            kinds.dedup();
            kinds
        },
        seen.longest_gap.as_secs_f64()
    );
}

/// kill -9 of one nats-server during a steady Encrypt + CreateKey load, then its restart:
/// the streams (R3) keep a quorum, roles and clients move to the other members.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_one_server_under_load_loses_nothing() {
    let mut env = start().await;
    let key = create_key(&env.client).await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(env.client.clone(), key, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.cluster.nodes()[0].kill().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| env.cluster.nodes()[0].restart()).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = running.await.unwrap();
    assert!(seen.ok.len() > 50, "the load ran: {} acknowledged", seen.ok.len());
    after_the_fault(&env.log_access(), env.roles.as_ref().unwrap(), &seen, "kill -9 of n1").await;
    env.roles.take().unwrap().stop().await;
}

/// A role process (`keyledger serve` or `keyledger audit serve`) that the test can kill -9.
struct Process {
    args: Vec<std::ffi::OsString>,
    log: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl Process {
    fn start(args: Vec<std::ffi::OsString>, log: std::path::PathBuf) -> Self {
        let mut p = Self { args, log, child: None };
        p.spawn();
        p
    }
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = std::process::Command::new(CLI)
            .args(&self.args)
            .env("KEYLEDGER_LOG", "warn,keyledger=info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }
    fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGKILL);
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_9();
    }
}

async fn http_get_text(addr: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header(hyper::header::HOST, addr);
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = sender.send_request(req.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap()).await.ok()?;
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.ok()?.to_bytes();
    driver.abort();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// kill -9 of keyd (with the checkpointer), of cryptod and of auditd, each in its own
/// `keyledger serve` / `keyledger audit serve` process, mid-load, then restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_keyd_cryptod_and_auditd_under_load_loses_nothing() {
    let mut env = start().await;
    // The in-process roles keep running as a second instance of every role; the processes
    // below are the ones killed.
    let dir = env.dir.path().to_path_buf();
    let root_path = dir.join("root.key");
    // The processes need the same root key as the in-process roles: take the roles' from the
    // test's environment by restarting them with a file-based key.
    env.roles.take().unwrap().stop().await;
    keyledger_crypto::RootKey::create_file(&root_path).unwrap();
    let port = || keyledger_nats_server::free_port().unwrap();
    let (keyd_health, cryptod_health, audit_port) = (port(), port(), port());
    let accounts = "[accounts]\nDEV = \"111122223333\"\n";
    // Each process connects as its own role user, writing only its own lane.
    let config = |roles: &str, user: &str, health: u16| {
        format!(
            "roles = [{roles}]\nservice_profile = {:?}\nroot_key_file = {:?}\nreplicas = 3\ncheckpoint_key_file = {:?}\nhealth_listen = \"127.0.0.1:{health}\"\nlane = \"{}\"\n{accounts}",
            dir.join(format!("{user}.json")),
            root_path,
            dir.join("log.key"),
            if user == "keyd" { "keyd-1" } else { user },
        )
    };
    std::fs::write(dir.join("keyd.toml"), config("\"keyd\", \"checkpointer\"", "keyd", keyd_health)).unwrap();
    std::fs::write(dir.join("cryptod.toml"), config("\"cryptod\"", "cryptod-1", cryptod_health)).unwrap();
    let tokens = keyledger::auditd::TokenFile::generate(&format!("http://127.0.0.1:{audit_port}"), &[("dev", ACCOUNT)]);
    tokens.write_to(&dir.join("tokens.json")).unwrap();
    let os = |v: Vec<&str>| v.into_iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
    let serve = |name: &str| {
        let mut a = os(vec!["serve", "--config"]);
        a.push(dir.join(format!("{name}.toml")).into());
        Process::start(a, dir.join(format!("{name}.log")))
    };
    let mut keyd = serve("keyd");
    let mut cryptod = serve("cryptod");
    let mut audit_args = os(vec!["audit", "serve", "--service-profile"]);
    audit_args.extend([dir.join("auditd.json").into(), "--index-dir".into(), dir.join("index").into()]);
    audit_args.extend(["--tokens".into(), dir.join("tokens.json").into(), "--listen".into()]);
    audit_args.push(format!("127.0.0.1:{audit_port}").into());
    let mut auditd = Process::start(audit_args, dir.join("auditd.log"));

    let ready = eventually(Duration::from_secs(30), || async {
        env.client.call("CreateKey", &json!({"Description": "ready"})).await.is_ok()
    })
    .await;
    assert!(ready, "the role processes serve");
    let key = create_key(&env.client).await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(env.client.clone(), key, stop.clone()));
    let pause = || tokio::time::sleep(Duration::from_millis(1500));
    pause().await;
    cryptod.kill_9();
    pause().await;
    cryptod.spawn();
    pause().await;
    keyd.kill_9();
    pause().await;
    keyd.spawn();
    pause().await;
    auditd.kill_9();
    pause().await;
    auditd.spawn();
    pause().await;
    stop.store(true, Ordering::Relaxed);
    let seen = running.await.unwrap();
    assert!(seen.ok.len() > 50, "the load ran: {} acknowledged", seen.ok.len());

    // The checks, with the keyd process's live state as the live digest.
    env.roles = None;
    check_the_log(&env.log_access(), &seen, "kill -9 of the role processes", Duration::from_secs(30)).await;
    let profile = dir.join("service.json");
    // Replay (keyledger replay, the CLI) equals the keyd process's live digest.
    let health = format!("127.0.0.1:{keyd_health}");
    let live = eventually(Duration::from_secs(10), || async {
        http_get_text(&health, "/digest", None).await.is_some_and(|(code, _)| code == 200)
    })
    .await;
    assert!(live, "the restarted keyd serves /digest");
    let (_, digest) = http_get_text(&health, "/digest", None).await.unwrap();
    let live: serde_json::Value = serde_json::from_str(&digest).unwrap();
    let replay_dir = dir.join("replay");
    let out = std::process::Command::new(CLI)
        .args(["replay", "--no-index", "--to"])
        .arg(&replay_dir)
        .args(["--to-seq", &live["control_seq"].to_string(), "--service-profile"])
        .arg(&profile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replayed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(replay_dir.join("replay.json")).unwrap()).unwrap();
    assert_eq!(replayed["state_digest"], live["state_digest"], "replay = live");
    // auditd, killed and restarted, indexes every acknowledged record (a sample).
    let token = tokens.token("auditor").unwrap().token.expose().to_owned();
    let audit = format!("127.0.0.1:{audit_port}");
    // The bound is generous: once, with the whole suite running on two cores, the restarted
    // auditd took over 20 s to catch up.
    for id in seen.ok.iter().step_by((seen.ok.len() / 20).max(1)) {
        let found = eventually(Duration::from_secs(60), || {
            let (audit, token, id) = (audit.clone(), token.clone(), id.clone());
            async move {
                http_get_text(&audit, &format!("/v1/audit/records/{id}"), Some(&token))
                    .await
                    .is_some_and(|(code, _)| code == 200)
            }
        })
        .await;
        assert!(
            found,
            "auditd indexed {id}; auditd.log: {}",
            std::fs::read_to_string(dir.join("auditd.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!(
        "kill -9 of cryptod, keyd+checkpointer, auditd: {} acknowledged, {} errors, longest gap without a success {:.2} s",
        seen.ok.len(),
        seen.errors.len(),
        seen.longest_gap.as_secs_f64()
    );
}

/// Role users (issue 9): each may publish only what its roles need; the tenant only requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_users_may_publish_only_what_their_roles_need() {
    let env = start().await;
    let denied = |user: &'static str, subject: &'static str| {
        let profile = if user == "dev" {
            let p = env.cluster.client_profile("dev").unwrap();
            keyledger_nats_server::ServiceProfile {
                url: p.url,
                nats_account: "DEV".into(),
                user: p.user,
                password: p.password,
                inbox_prefix: p.inbox_prefix,
                ca_file: p.ca_file,
            }
        } else {
            env.cluster.role_profile(user).unwrap()
        };
        async move { keyledger::roles::publish_is_denied(&profile, subject, Duration::from_secs(3)).await.unwrap() }
    };
    assert!(denied("cryptod-1", "kl.v1.ctl.111122223333.key.x").await, "cryptod writes no key events");
    assert!(denied("cryptod-1", "kl.v1.use.202612.keyd-1").await, "nor another lane");
    assert!(denied("cryptod-1", "kl.v1.ckpt.KL_CONTROL_V1").await, "nor checkpoints");
    assert!(denied("cryptod-1", "$JS.API.STREAM.MSG.DELETE.KL_MATERIAL_V1").await, "nor erase material");
    assert!(denied("keyd", "kl.v1.use.202612.cryptod-1").await, "keyd writes only its own lane");
    assert!(denied("keyd", "kms.v1.Encrypt").await, "no role is a caller");
    assert!(denied("auditd", "kl.v1.ctl.111122223333.key.x").await, "auditd only reads");
    assert!(denied("auditd", "$JS.API.STREAM.PURGE.KL_CONTROL_V1").await, "nobody purges");
    assert!(denied("dev", "kl.v1.ctl.111122223333.key.x").await, "a tenant only sends requests");
    assert!(!denied("cryptod-1", "kl.v1.alarm.111122223333.pending-deletion").await, "the negative control: allowed");

    // TLS everywhere: a client that does not trust the cluster's CA cannot connect, over
    // `tls://` or `nats://` (the server requires TLS either way).
    let p = env.cluster.client_profile("dev").unwrap();
    assert!(p.url.starts_with("tls://") && p.ca_file.is_some(), "{}", p.url);
    for url in [p.url.clone(), p.url.replace("tls://", "nats://")] {
        let refused =
            async_nats::ConnectOptions::with_user_and_password(p.user.clone(), p.password.expose().to_owned())
                .connection_timeout(Duration::from_secs(2))
                .connect(keyledger_log::server_list(&url))
                .await;
        assert!(refused.is_err(), "{url} without the CA must not connect");
    }
}

/// `keyledger dev --nodes 3` (the local three-node cluster): the streams are replicated ×3,
/// and a restart of every member keeps every key and ciphertext.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dev_cluster_keeps_everything_across_a_full_restart() {
    use keyledger::cli::dev::DevEnvironment;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kl");
    let env = DevEnvironment::start_nodes(&data, 0, RoleConfig::default(), 3).await.unwrap();
    assert_eq!(env.peers.len(), 2);
    let client = keyledger::cli::connect_profile(&env.client_profile).await.unwrap();
    let key =
        client.call("CreateKey", &json!({})).await.unwrap().body["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let ct = client.call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(b"kept")})).await.unwrap().body
        ["CiphertextBlob"]
        .clone();
    let js = keyledger_log::jetstream(env.roles.as_ref().unwrap().ctx.nats.clone());
    for stream in [keyledger_events::names::CONTROL_STREAM, keyledger_events::names::MATERIAL_STREAM] {
        let info = js.get_stream(stream).await.unwrap().info().await.unwrap().config.num_replicas;
        assert_eq!(info, 3, "{stream} is replicated on every member");
    }
    env.stop().await.unwrap();
    assert!(DevEnvironment::start_nodes(&data, 0, RoleConfig::default(), 1).await.is_err(), "the shape is kept");
    let env = DevEnvironment::start_nodes(&data, 0, RoleConfig::default(), 3).await.unwrap();
    let client = keyledger::cli::connect_profile(&env.client_profile).await.unwrap();
    // The roles serve only once the streams answer (the usage stream included: the roles wait
    // for their audit lane), so the first request after a full restart succeeds.
    let dec = client.call("Decrypt", &json!({"CiphertextBlob": ct})).await.unwrap();
    assert_eq!(unb64(&dec.body["Plaintext"]), b"kept");
    env.stop().await.unwrap();
    // Without its root key the cluster's log cannot be opened: dev refuses, and writes no new
    // key that the user would have to get rid of before restoring the old one.
    let root = data.join("root.key");
    std::fs::rename(&root, dir.path().join("root.key.saved")).unwrap();
    let refused = DevEnvironment::start_nodes(&data, 0, RoleConfig::default(), 3).await.err().map(|e| format!("{e:#}"));
    assert!(refused.as_deref().unwrap_or_default().contains("is missing"), "{refused:?}");
    assert!(!root.exists(), "no new root key was written");
}

/// A full usage stream on the cluster (issue 9): the service fails closed — retryable errors,
/// no result without its record — and recovers by itself when space returns (the next period's
/// stream); afterwards the log verifies and replay equals live.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_usage_stream_fails_closed_and_recovers_when_space_returns() {
    let clock = keyledger::clock::Clock::shifted(0);
    let base = RoleConfig {
        clock: clock.clone(),
        audit: keyledger::audit::AuditConfig { usage_stream_max_bytes: Some(16 * 1024), ..Default::default() },
        ..RoleConfig::default()
    };
    let env = start_with(base).await;
    let key = create_key(&env.client).await;
    let mut seen = Seen::default();
    let mut failures = 0;
    for i in 0..400 {
        match env.client.call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(format!("{i}").as_bytes())})).await {
            Ok(r) => {
                assert_eq!(failures, 0, "a result was released after the log refused records");
                seen.ok.push(r.request_id.unwrap());
            }
            Err(CallError::Service(e)) => {
                seen.errors.push(e.name);
                failures += 1;
                if failures > 5 {
                    break;
                }
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(failures > 0, "16 KiB of usage stream fills up");
    // Space returns: the next period's stream.
    clock.advance_ms(32 * 86_400_000);
    let recovered = eventually(Duration::from_secs(15), || async {
        env.client.call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(b"after")})).await.is_ok()
    })
    .await;
    assert!(recovered, "the service recovers once the log takes records");
    for i in 0..20 {
        let r = env
            .client
            .call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(format!("n{i}").as_bytes())}))
            .await
            .unwrap();
        seen.ok.push(r.request_id.unwrap());
    }
    after_the_fault(&env.log_access(), env.roles.as_ref().unwrap(), &seen, "full usage stream").await;
}

/// Runs deploy/nats/cluster/start-local.sh (the shipped node.conf and accounts.conf,
/// unchanged) with `args`; panics with its output when it fails.
fn start_local(dir: &std::path::Path, args: &[&str], ports: Option<&[(u16, u16)]>) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/cluster/start-local.sh");
    let mut cmd = std::process::Command::new(script);
    cmd.arg(dir).args(args).env("NATS_SERVER", keyledger_nats_server::find_or_install().unwrap());
    if let Some(ports) = ports {
        let list = |f: fn(&(u16, u16)) -> u16| ports.iter().map(f).map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
        cmd.env("KL_LOCAL_CLIENT_PORTS", list(|p| p.0)).env("KL_LOCAL_ROUTE_PORTS", list(|p| p.1));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "start-local.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipped three-node configuration (deploy/nats/cluster/node.conf with
/// deploy/nats/accounts.conf, started by deploy/nats/cluster/start-local.sh) runs keyd, the
/// checkpointer and a cryptod each as its own shipped role user; a tenant of the shipped
/// TENANT_A account uses it; kill -9 of one member under load loses nothing; each role user
/// is refused what its role may not do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shipped_cluster_configuration_runs_each_role_as_its_own_user_and_survives_a_node_kill() {
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("cluster");
    let ports = NatsCluster::free_ports(3).unwrap();
    tokio::task::block_in_place(|| start_local(&cluster_dir, &[], Some(&ports)));
    // The members run in sessions of their own: stop them even when an assertion fails.
    struct StopOnDrop(std::path::PathBuf);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/cluster/start-local.sh");
            let _ = std::process::Command::new(script).arg(&self.0).arg("stop").status();
        }
    }
    let _members = StopOnDrop(cluster_dir.clone());
    let profile = |user: &str| {
        keyledger_nats_server::ServiceProfile::read_from(&cluster_dir.join(format!("profiles/{user}.json"))).unwrap()
    };
    let key_path = dir.path().join("log.key");
    let vkey = LogKey::create_file(&key_path, "keyledger.local/log-shipped").unwrap().verifier().to_string();
    let root = Arc::new(keyledger_crypto::RootKey::generate());
    let config = |lane: Option<&str>| {
        let mut c = RoleConfig {
            replicas: 3,
            accounts: [("TENANT_A".to_owned(), ACCOUNT.to_owned())].into_iter().collect(),
            ..RoleConfig::default()
        };
        c.audit.lane = lane.map(str::to_owned);
        c
    };
    let keyd =
        keyledger::roles::start(&[Role::Keyd], &profile("keyd"), root.clone(), config(Some("keyd-1"))).await.unwrap();
    let checkpointer = keyledger::roles::start(
        &[Role::Checkpointer],
        &profile("checkpointer"),
        root.clone(),
        RoleConfig {
            checkpoint: Some(CheckpointConfig::new(Arc::new(LogKey::load(&key_path).unwrap()))),
            ..config(None)
        },
    )
    .await
    .unwrap();
    let cryptod =
        keyledger::roles::start(&[Role::Cryptod], &profile("cryptod-1"), root.clone(), config(Some("cryptod-1")))
            .await
            .unwrap();
    // A cryptod whose configuration names no lane (a random one) or another user's lane would
    // record nothing: it refuses to start, and says which lane.
    for lane in [None, Some("cryptod-1")] {
        let refused = keyledger::roles::start(&[Role::Cryptod], &profile("cryptod-2"), root.clone(), config(lane))
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            refused.contains("may not write the usage lane") && refused.contains("cryptod-N"),
            "{lane:?}: {refused}"
        );
    }

    // The tenant of the shipped TENANT_A account, over TLS to all three members.
    let app: keyledger_nats_server::ClientProfile =
        keyledger_nats_server::ClientProfile::read_from(&cluster_dir.join("profiles/app.json")).unwrap();
    assert_eq!(app.keyledger_account, ACCOUNT);
    let nats = keyledger::cli::tls_options(
        async_nats::ConnectOptions::with_user_and_password(app.user.clone(), app.password.expose().to_owned()),
        app.ca_file.as_deref(),
    )
    .custom_inbox_prefix(app.inbox_prefix.clone())
    .connect(keyledger_log::server_list(&app.url))
    .await
    .unwrap();
    let client = KmsClient::new(nats, Duration::from_secs(5));
    let key = create_key(&client).await;

    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(client.clone(), key.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| start_local(&cluster_dir, &["kill-9", "1"], None));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The same command restarts the member that is down (same ports, same store).
    tokio::task::block_in_place(|| start_local(&cluster_dir, &[], None));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = running.await.unwrap();
    assert!(seen.ok.len() > 50, "the load ran: {} acknowledged", seen.ok.len());
    // auditd's user reads the log to verify it: reading is all it may do.
    let log = LogAccess { profile: profile("auditd"), profile_file: cluster_dir.join("profiles/auditd.json"), vkey };
    after_the_fault(&log, &keyd, &seen, "kill -9 of a member of the shipped cluster").await;

    // Each shipped role user is refused what its role may not do (a permissions violation
    // from the server), and allowed what it does (the negative control).
    let denied = |user: &'static str, subject: &'static str| {
        let p = profile(user);
        async move { keyledger::roles::publish_is_denied(&p, subject, Duration::from_secs(3)).await.unwrap() }
    };
    assert!(denied("cryptod-1", "kl.v1.ctl.111122223333.key.x").await, "cryptod writes no key events");
    assert!(denied("cryptod-2", "kl.v1.use.202612.cryptod-1").await, "nor another cryptod's lane");
    assert!(denied("keyd", "kl.v1.ckpt.KL_CONTROL_V1").await, "keyd signs no checkpoints");
    assert!(denied("checkpointer", "kl.v1.ctl.111122223333.key.x").await, "the checkpointer writes no key events");
    assert!(denied("auditd", "$JS.API.STREAM.PURGE.KL_CONTROL_V1").await, "nobody purges");
    assert!(denied("keyledger", "kms.v1.Encrypt").await, "the service user makes no requests");
    assert!(!denied("cryptod-1", "kl.v1.alarm.111122223333.pending-deletion").await, "the negative control: allowed");
    // No role subscribed to what its user may not (a checkpointer alone takes no requests).
    for i in 1..=3 {
        let log = std::fs::read_to_string(cluster_dir.join(format!("n{i}.log"))).unwrap();
        let violations: Vec<&str> = log.lines().filter(|l| l.contains("Subscription Violation")).collect();
        assert!(violations.is_empty(), "n{i}: {violations:?}");
    }

    cryptod.stop().await;
    checkpointer.stop().await;
    keyd.stop().await;
}

/// start-local.sh refuses what it cannot run and never signals a process that is not one of
/// its members: a stale pid file, a port taken by another process, a DIR with whitespace.
#[test]
fn the_local_cluster_script_refuses_what_it_cannot_run_and_signals_only_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/cluster/start-local.sh");
    let run = |cluster: &std::path::Path, args: &[&str], ports: &[(u16, u16)]| {
        let list = |f: fn(&(u16, u16)) -> u16| ports.iter().map(f).map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
        std::process::Command::new(&script)
            .arg(cluster)
            .args(args)
            .env("NATS_SERVER", keyledger_nats_server::find_or_install().unwrap())
            .env("KL_LOCAL_CLIENT_PORTS", list(|p| p.0))
            .env("KL_LOCAL_ROUTE_PORTS", list(|p| p.1))
            .output()
            .unwrap()
    };
    let ports = NatsCluster::free_ports(3).unwrap();

    // A DIR with whitespace: refused before anything starts.
    let spaced = dir.path().join("with space");
    let out = run(&spaced, &[], &ports);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("whitespace"));

    // A port in use: refused, nothing left running, no ports kept for the DIR.
    let taken = std::net::TcpListener::bind(("127.0.0.1", ports[1].0)).unwrap();
    let clash = dir.path().join("clash");
    let out = run(&clash, &[], &ports);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("port {} (member n2) is in use", ports[1].0)));
    assert!(!clash.join("ports.env").exists(), "a failed first start keeps no ports");
    assert!(!clash.join("n1.pid").exists(), "the member that started was stopped again");
    drop(taken);

    // A stale pid file naming another process: `status` does not count it, `stop` leaves it.
    let stale = dir.path().join("stale");
    std::fs::create_dir_all(&stale).unwrap();
    let mut bystander = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(stale.join("n1.pid"), bystander.id().to_string()).unwrap();
    let status = run(&stale, &["status"], &ports);
    assert!(String::from_utf8_lossy(&status.stdout).contains("n1 stopped"));
    let _ = run(&stale, &["stop"], &ports);
    assert!(bystander.try_wait().unwrap().is_none(), "stop left the unrelated process alone");
    let _ = bystander.kill();
    let _ = bystander.wait();
}
