//! Shared by the gateway tests: the Python clients' virtualenv (boto3, the aws CLI, the AWS
//! Encryption SDK, installed from PyPI on demand), a dev environment with the AWS endpoint, a
//! runner for the scripts in `tests/python/`, a raw HTTP/1.1 client and a SigV4 signer for
//! hand-built requests.
#![allow(dead_code)] // each test binary uses a different part

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use keyledger::cli::dev::DEV_ACCESS_KEYS_FILE;
use keyledger::gateway::sigv4;
use keyledger_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The pinned client versions (tests/python/requirements.txt).
pub const REQUIREMENTS: &str = include_str!("../../python/requirements.txt");
/// Account of the second credential.
pub const OTHER_ACCOUNT: &str = "444455556666";

/// `tests/python`.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

static VENV: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The virtualenv `<tools>/py` with the pinned clients, created on first use.
///
/// `<tools>` is `keyledger_nats_server::tools_dir()` (`.tools/` in the workspace, or
/// `$KEYLEDGER_TOOLS_DIR`). Installs are serialized across processes by an exclusive lock on
/// `<tools>/py.lock`; a file `<venv>/.keyledger-requirements` holding the requirements text
/// marks a complete install (a changed pin reinstalls).
pub fn python_venv() -> PathBuf {
    let mut cached = VENV.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = cached.as_ref() {
        return v.clone();
    }
    let tools = keyledger_nats_server::tools_dir();
    let venv = tools.join("py");
    let marker = venv.join(".keyledger-requirements");
    let ready = || fs::read_to_string(&marker).ok().as_deref() == Some(REQUIREMENTS);
    if !ready() {
        fs::create_dir_all(&tools).expect("create the tools dir");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(tools.join("py.lock"))
            .expect("open py.lock");
        lock.lock().expect("lock py.lock");
        if !ready() {
            if venv.exists() {
                fs::remove_dir_all(&venv).expect("remove a partial virtualenv");
            }
            eprintln!("installing the AWS clients from PyPI into {} (once)", venv.display());
            run_checked(std::process::Command::new("python3").arg("-m").arg("venv").arg(&venv));
            run_checked(
                std::process::Command::new(venv.join("bin").join("pip"))
                    .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                    .arg(scripts_dir().join("requirements.txt")),
            );
            fs::write(&marker, REQUIREMENTS).expect("write the install marker");
        }
        drop(lock);
    }
    *cached = Some(venv.clone());
    venv
}

fn run_checked(cmd: &mut std::process::Command) {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A dev environment with the AWS endpoint and two credentials: the dev one (account
/// 111122223333, in `aws-credentials`) and a second one in [`OTHER_ACCOUNT`].
pub struct GatewayEnv {
    /// Server, roles and the NATS client.
    pub h: Harness,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The endpoint's socket address.
    pub addr: SocketAddr,
    /// The second credential: (access key id, secret).
    pub other: (String, String),
    /// The dev credential: (access key id, secret), read back from `aws-credentials`.
    pub dev: (String, String),
}

impl GatewayEnv {
    /// Starts everything with a movable clock.
    pub async fn start() -> Self {
        let mut h = Harness::start_with_clock(Clock::shifted(0)).await;
        let env = h.env.as_mut().expect("environment");
        let root = env.roles.as_ref().expect("roles").ctx.root.clone();
        let (record, secret) = keyledger::gateway::create_access_key(
            &root,
            &env.data_dir.join(DEV_ACCESS_KEYS_FILE),
            OTHER_ACCOUNT,
            "other",
        )
        .expect("second credential");
        let other = (record.access_key_id, secret.expose().to_owned());
        let gateway = env.start_gateway(0).await.expect("the gateway starts");
        let endpoint = gateway.url();
        let addr = gateway.local_addr();
        let text = fs::read_to_string(env.aws_credentials_path()).expect("aws-credentials written");
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim_start_matches([' ', '=']).trim().to_owned()))
                .expect("credential field")
        };
        let dev = (field("aws_access_key_id"), field("aws_secret_access_key"));
        Self { h, endpoint, addr, other, dev }
    }

    /// The dev environment.
    pub fn env(&self) -> &keyledger::cli::dev::DevEnvironment {
        self.h.env()
    }

    /// The environment a client script runs in (see tests/python/common.py).
    pub fn client_env(&self) -> Vec<(String, String)> {
        let venv = python_venv();
        let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let no_config = self.h.dir.path().join("no-aws-config");
        vec![
            ("PATH".into(), path),
            ("KEYLEDGER_ENDPOINT".into(), self.endpoint.clone()),
            ("KEYLEDGER_ACCOUNT".into(), ACCOUNT.into()),
            ("KEYLEDGER_OTHER_KEY_ID".into(), self.other.0.clone()),
            ("KEYLEDGER_OTHER_SECRET".into(), self.other.1.clone()),
            ("KEYLEDGER_OTHER_ACCOUNT".into(), OTHER_ACCOUNT.into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), self.env().aws_credentials_path().display().to_string()),
            ("AWS_CONFIG_FILE".into(), no_config.display().to_string()),
            ("AWS_PROFILE".into(), keyledger::cli::dev::DEV_AWS_PROFILE.into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("PYTHONPATH".into(), scripts_dir().display().to_string()),
        ]
    }

    /// Runs `tests/python/<script>` with the venv's Python and [`GatewayEnv::client_env`]
    /// plus `extra`, bounded to 10 minutes.
    pub async fn python(&self, script: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let venv = python_venv();
        let mut cmd = tokio::process::Command::new(venv.join("bin").join("python"));
        cmd.arg(scripts_dir().join(script)).args(args).current_dir(self.h.dir.path()).kill_on_drop(true);
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_CA_BUNDLE",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(self.client_env());
        cmd.envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        tokio::time::timeout(Duration::from_secs(600), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{script} did not finish in 10 minutes"))
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"))
    }

    /// Runs a script that must pass; returns its stdout. Fails the test with both outputs
    /// otherwise, or when it printed fewer than `min_checks` "ok:" lines.
    pub async fn python_passes(
        &self,
        script: &str,
        args: &[&str],
        extra: &[(&str, &str)],
        min_checks: usize,
    ) -> String {
        let out = self.python(script, args, extra).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}", out.status);
        assert!(stdout.contains("all checks passed"), "{script} did not finish:\n{stdout}\n{stderr}");
        // Shown with --nocapture (or when the test fails later).
        println!("--- {script}\n{stdout}");
        let checks = stdout.lines().filter(|l| l.starts_with("ok: ")).count();
        assert!(checks >= min_checks, "{script} ran {checks} checks, expected at least {min_checks}:\n{stdout}");
        stdout
    }
}

/// An HTTP response read by [`send_raw`].
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header of that (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one HTTP/1.1 request (exactly these headers, plus `Content-Length` when absent and
/// `Connection: close`) and reads the whole response.
pub async fn send_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> RawResponse {
    send_raw_from(None, addr, method, path, headers, body).await
}

/// [`send_raw`] from the local address `from` (e.g. `127.0.0.2`: another client network on
/// loopback), or any when None.
pub async fn send_raw_from(
    from: Option<std::net::IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut stream = match from {
        None => tokio::net::TcpStream::connect(addr).await.expect("connect to the gateway"),
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
            socket.bind(SocketAddr::new(ip, 0)).expect("bind the client address");
            socket.connect(addr).await.expect("connect to the gateway")
        }
    };
    // The server may answer (413) and close before reading the whole body: a failed write is
    // not the end, the answer is still there to read.
    let _ = stream.write_all(req.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await.expect("response in time") {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse { status, headers, body: raw[split + 4..].to_vec() }
}

/// Headers of a `POST /` KMS request signed with SigV4 (region us-east-1, now per `clock`):
/// Host, Content-Type, X-Amz-Target, X-Amz-Date, Authorization.
pub fn signed_headers(
    addr: SocketAddr,
    key: &(String, String),
    operation: &str,
    body: &[u8],
    now_unix_s: i64,
) -> Vec<(String, String)> {
    let headers = vec![
        ("content-type".to_owned(), "application/x-amz-json-1.1".to_owned()),
        ("x-amz-target".to_owned(), format!("TrentService.{operation}")),
    ];
    signed_request(addr, key, "POST", headers, body, now_unix_s)
}

/// `headers` (lowercase names; a repeated name is signed as AWS joins it) plus Host and
/// X-Amz-Date, every one of them signed for `method /`, and the Authorization header.
pub fn signed_request(
    addr: SocketAddr,
    key: &(String, String),
    method: &str,
    extra: Vec<(String, String)>,
    body: &[u8],
    now_unix_s: i64,
) -> Vec<(String, String)> {
    let amz_date = sigv4::format_amz_date(now_unix_s);
    let mut headers = vec![("host".to_owned(), addr.to_string())];
    headers.extend(extra);
    headers.push(("x-amz-date".to_owned(), amz_date.clone()));
    let raw: Vec<(String, Vec<u8>)> = headers.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect();
    let parts = sigv4::RequestParts { method, path: "/", query: "", headers: &raw, body };
    let names: Vec<String> =
        headers.iter().map(|(k, _)| k.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let canonical = sigv4::canonical_request(&parts, &names);
    let scope = format!("{}/us-east-1/kms/aws4_request", &amz_date[..8]);
    let to_sign = sigv4::string_to_sign(&amz_date, &scope, &canonical);
    let signing_key = sigv4::signing_key(key.1.as_bytes(), &amz_date[..8], "us-east-1", "kms");
    let signature = hex::encode(sigv4::signature(&signing_key, &to_sign));
    headers.push((
        "authorization".to_owned(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
            key.0,
            names.join(";")
        ),
    ));
    headers
}
