//! Running nats-server as a child process.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::config::{inbox_prefix, render_config, ServerSettings, SERVICE_ACCOUNT};
use crate::profile::{write_private_file, ClientProfile, ServiceProfile};
use crate::Error;

/// How long [`NatsServer::start`] waits for the server to accept clients with JetStream ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`NatsServer::stop`] waits after SIGTERM before sending SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Name of the rendered config file inside the data dir (mode 0600).
pub const CONFIG_FILE: &str = "nats.conf";
/// Name of the server log file (stdout + stderr, appended across restarts) inside the data dir.
pub const LOG_FILE: &str = "nats.log";
/// Attempts at a fresh port when a port picked by [`free_port`] turns out to be taken.
const PORT_ATTEMPTS: u32 = 3;

/// A free TCP port on 127.0.0.1: binds port 0 and returns what the OS chose (the listener is
/// closed again, so another process could take it before use; [`NatsServer::start`] retries).
///
/// # Errors
/// [`Error::Io`] if binding fails.
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|source| Error::Io { context: "binding 127.0.0.1:0".into(), source })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| Error::Io { context: "reading the bound port".into(), source })
}

/// A nats-server child process with a rendered config, killed (SIGKILL) when dropped.
///
/// The server runs in its own process group; signals go to the group so wrapper scripts (for
/// example a pyenv shim) cannot leave the real server behind.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    settings: ServerSettings,
    data_dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts `binary` with `settings` and waits until it is ready.
    ///
    /// Creates `data_dir` (mode 0700) and `settings.store_dir`, picks a free port for port 0
    /// (and a monitor port of 0), writes `data_dir/nats.conf` (mode 0600), spawns
    /// `<binary> -c nats.conf` with stdout and stderr appended to `data_dir/nats.log`, then waits
    /// at most [`READY_TIMEOUT`] for the server to accept a connection of the service user and
    /// answer a JetStream account-info request (`$JS.API.INFO`).
    ///
    /// Blocking: it sleeps and does socket I/O on the calling thread (typically well under a
    /// second). From async code, call it where blocking briefly is acceptable.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid topology, [`Error::Io`] for file errors,
    /// [`Error::Start`] (with the log tail) if the server exits or is not ready in time.
    pub fn start(binary: &Path, settings: ServerSettings, data_dir: &Path) -> Result<Self, Error> {
        prepare(&settings, data_dir)?;
        let pick_port = settings.port == 0;
        let pick_monitor = settings.monitor_port == Some(0);
        let mut server = Self { binary: binary.to_path_buf(), settings, data_dir: data_dir.to_path_buf(), child: None };
        let mut attempt = 1;
        loop {
            if pick_port {
                server.settings.port = free_port()?;
            }
            if pick_monitor {
                server.settings.monitor_port = Some(free_port()?);
            }
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(ref e) if (pick_port || pick_monitor) && attempt < PORT_ATTEMPTS && e.is_port_taken() => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Like [`NatsServer::start`] with fixed ports, but returns once the process is spawned,
    /// without waiting for readiness: the members of a cluster must all run before any of them
    /// is ready (JetStream needs a quorum). Call [`NatsServer::wait_until_ready`] next.
    ///
    /// # Errors
    /// As [`NatsServer::start`] (no readiness errors).
    pub fn spawn(binary: &Path, settings: ServerSettings, data_dir: &Path) -> Result<Self, Error> {
        prepare(&settings, data_dir)?;
        let mut server = Self { binary: binary.to_path_buf(), settings, data_dir: data_dir.to_path_buf(), child: None };
        server.spawn_child()?;
        Ok(server)
    }

    /// Waits (at most [`READY_TIMEOUT`]) until a spawned server accepts the service user and
    /// answers a JetStream request.
    ///
    /// # Errors
    /// [`Error::Start`] with the log tail.
    pub fn wait_until_ready(&mut self) -> Result<(), Error> {
        self.wait_ready().map_err(|message| Error::Start { message, log_tail: self.log_tail_since(0) })
    }

    /// Refuses to spawn when another process listens on one of the server's ports: the
    /// readiness probe would otherwise reach that process (another nats-server takes the
    /// streams), while ours exits with "address already in use".
    fn check_ports_free(&self) -> Result<(), Error> {
        let cluster = self.settings.cluster.as_ref().map(|c| c.port);
        for (what, port) in
            [("client", Some(self.settings.port)), ("monitoring", self.settings.monitor_port), ("cluster", cluster)]
        {
            let Some(port) = port.filter(|p| *p != 0) else { continue };
            // std's bind sets SO_REUSEADDR, as nats-server does: only a live listener refuses.
            if let Err(e) = std::net::TcpListener::bind((self.settings.host.as_str(), port)) {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    return Err(Error::Start {
                        message: format!(
                            "the {what} port {}:{port} is in use by another process (address already in use); \
                             stop it or choose another port",
                            self.settings.host
                        ),
                        log_tail: String::new(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes the config and spawns the child (no readiness wait).
    fn spawn_child(&mut self) -> Result<u64, Error> {
        self.check_ports_free()?;
        let config_path = self.config_path();
        write_private_file(&config_path, render_config(&self.settings).as_bytes())?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|source| Error::Io { context: format!("opening {}", self.log_path().display()), source })?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err =
            log.try_clone().map_err(|source| Error::Io { context: "duplicating the log handle".into(), source })?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Start {
                message: format!("cannot spawn {}: {e}", self.binary.display()),
                log_tail: String::new(),
            })?;
        self.child = Some(child);
        Ok(log_start)
    }

    /// Writes the config, spawns the child and waits for readiness (used by start and restart).
    fn launch(&mut self) -> Result<(), Error> {
        let log_start = self.spawn_child()?;
        match self.wait_ready() {
            Ok(()) => Ok(()),
            Err(message) => {
                self.signal_and_reap(Signal::SIGKILL, Duration::from_secs(5));
                Err(Error::Start { message, log_tail: self.log_tail_since(log_start) })
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.socket_addr()?;
        let mut last = String::from("no attempt made");
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("nats-server exited during startup ({status})"));
                }
            }
            match probe_jetstream(&addr, &self.settings, deadline) {
                Ok(()) => {
                    // The probe may have reached another process that took the port after the
                    // pre-check; ours then exits at once on "address already in use".
                    sleep(Duration::from_millis(50));
                    if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                        return Err(format!("nats-server exited during startup ({status})"));
                    }
                    return Ok(());
                }
                Err(Probe::Fatal(msg)) => return Err(msg),
                Err(Probe::Retry(msg)) => last = msg,
            }
            sleep(Duration::from_millis(50));
        }
        Err(format!("nats-server not ready after {} s (last: {last})", READY_TIMEOUT.as_secs()))
    }

    fn socket_addr(&self) -> Result<SocketAddr, String> {
        (self.settings.host.as_str(), self.settings.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.settings.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.settings.host))
    }

    /// Client URL, `nats://<host>:<port>` (`tls://` when the server requires TLS).
    pub fn url(&self) -> String {
        let scheme = if self.settings.tls.is_some() { "tls" } else { "nats" };
        format!("{scheme}://{}:{}", self.settings.host, self.settings.port)
    }

    /// The CA file clients verify this server with, when it requires TLS.
    fn ca_file(&self) -> Option<PathBuf> {
        self.settings.tls.as_ref().map(|t| t.ca_file.clone())
    }

    /// The client port (resolved if 0 was requested).
    pub fn port(&self) -> u16 {
        self.settings.port
    }

    /// `http://<host>:<port>` of the monitoring endpoint, if enabled.
    pub fn monitor_url(&self) -> Option<String> {
        self.settings.monitor_port.map(|p| format!("http://{}:{p}", self.settings.host))
    }

    /// The settings in effect (with resolved ports).
    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// Path of the rendered config (mode 0600).
    pub fn config_path(&self) -> PathBuf {
        self.data_dir.join(CONFIG_FILE)
    }

    /// Path of the server log.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    /// Profile of the tenant whose NATS account *or* user name is `tenant`.
    pub fn client_profile(&self, tenant: &str) -> Option<ClientProfile> {
        let t = self.settings.topology.tenant(tenant)?;
        Some(ClientProfile {
            url: self.url(),
            user: t.user.clone(),
            password: t.password.clone(),
            inbox_prefix: inbox_prefix(&t.user),
            keyledger_account: t.keyledger_account.clone(),
            ca_file: self.ca_file(),
        })
    }

    /// Profile of the (dev, all-roles) service user.
    pub fn service_profile(&self) -> ServiceProfile {
        let s = &self.settings.topology.service;
        ServiceProfile {
            url: self.url(),
            nats_account: SERVICE_ACCOUNT.to_owned(),
            user: s.user.clone(),
            password: s.password.clone(),
            inbox_prefix: inbox_prefix(&s.user),
            ca_file: self.ca_file(),
        }
    }

    /// Profile of a role user of the service account ([`crate::RoleUser`]), by name.
    pub fn role_profile(&self, user: &str) -> Option<ServiceProfile> {
        let r = self.settings.topology.role_users.iter().find(|r| r.credentials.user == user)?;
        Some(ServiceProfile {
            url: self.url(),
            nats_account: SERVICE_ACCOUNT.to_owned(),
            user: r.credentials.user.clone(),
            password: r.credentials.password.clone(),
            inbox_prefix: inbox_prefix(&r.credentials.user),
            ca_file: self.ca_file(),
        })
    }

    /// Profile of the unrestricted admin user of the service account, if the topology has one.
    pub fn admin_profile(&self) -> Option<ServiceProfile> {
        let a = self.settings.topology.admin.as_ref()?;
        Some(ServiceProfile {
            url: self.url(),
            nats_account: SERVICE_ACCOUNT.to_owned(),
            user: a.user.clone(),
            password: a.password.clone(),
            inbox_prefix: inbox_prefix(&a.user),
            ca_file: self.ca_file(),
        })
    }

    /// True once the server process has exited (crashed, killed, or stopped).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(child) => !matches!(child.try_wait(), Ok(None)),
        }
    }

    /// OS process id of the running server, None once stopped or killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Graceful stop: SIGTERM to the server's process group, wait up to [`STOP_TIMEOUT`], then
    /// SIGKILL. No-op when not running.
    ///
    /// # Errors
    /// Never in practice; the `Result` leaves room for reporting.
    pub fn stop(&mut self) -> Result<(), Error> {
        if self.child.is_some() && !self.signal_and_reap(Signal::SIGTERM, STOP_TIMEOUT) {
            self.signal_and_reap(Signal::SIGKILL, Duration::from_secs(5));
        }
        Ok(())
    }

    /// SIGKILL (a crash, for crash tests): no chance to flush anything. No-op when not running.
    ///
    /// # Errors
    /// Never in practice; the `Result` leaves room for reporting.
    pub fn kill(&mut self) -> Result<(), Error> {
        if self.child.is_some() {
            self.signal_and_reap(Signal::SIGKILL, Duration::from_secs(5));
        }
        Ok(())
    }

    /// Stops the server if running (gracefully), then starts it again with the same config,
    /// store dir and port, and waits for readiness as [`NatsServer::start`] does.
    ///
    /// # Errors
    /// As [`NatsServer::start`].
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop()?;
        self.launch()
    }

    /// Sends `signal` to the process group and waits up to `bound` for the child to exit.
    /// Returns true once the child is reaped (then `self.child` is None).
    fn signal_and_reap(&mut self, signal: Signal, bound: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        if let Ok(None) = child.try_wait() {
            if let Ok(raw) = i32::try_from(child.id()) {
                // The child leads its own process group (process_group(0)).
                let _ = killpg(Pid::from_raw(raw), signal);
            }
        }
        let deadline = Instant::now() + bound;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => {
                    self.child = None;
                    return true;
                }
                Ok(None) if Instant::now() >= deadline => return false,
                Ok(None) => sleep(Duration::from_millis(10)),
            }
        }
    }

    fn log_tail_since(&self, start: u64) -> String {
        const MAX_TAIL: u64 = 4096;
        let Ok(mut f) = File::open(self.log_path()) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let from = start.max(len.saturating_sub(MAX_TAIL));
        if f.seek(SeekFrom::Start(from)).is_err() {
            return String::new();
        }
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal_and_reap(Signal::SIGKILL, Duration::from_secs(5));
        }
    }
}

enum Probe {
    Retry(String),
    Fatal(String),
}

/// One readiness probe over the plain NATS protocol: connect as the service user, subscribe to
/// an inbox, request `$JS.API.INFO` and expect an account-info reply without an error.
fn probe_jetstream(addr: &SocketAddr, settings: &ServerSettings, deadline: Instant) -> Result<(), Probe> {
    fn retry(what: &'static str) -> impl Fn(std::io::Error) -> Probe {
        move |e| Probe::Retry(format!("{what}: {e}"))
    }
    let remaining =
        deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(2)).max(Duration::from_millis(100));
    let stream = TcpStream::connect_timeout(addr, remaining).map_err(retry("connect"))?;
    stream.set_read_timeout(Some(remaining)).map_err(retry("socket"))?;
    stream.set_write_timeout(Some(remaining)).map_err(retry("socket"))?;
    // The INFO line comes in clear; a server that requires TLS then waits for the handshake,
    // so nothing else is buffered here.
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).map_err(retry("reading INFO"))?;
    if !line.starts_with("INFO ") {
        return Err(Probe::Retry(format!("unexpected greeting {:?}", line.trim())));
    }
    let tls_required = serde_json::from_str::<serde_json::Value>(line.trim_start_matches("INFO ").trim())
        .ok()
        .and_then(|info| info.get("tls_required").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    let conn: Box<dyn ReadWrite> = match (&settings.tls, tls_required) {
        (_, false) => Box::new(stream),
        (Some(tls), true) => Box::new(tls_stream(stream, &tls.ca_file, &settings.host)?),
        (None, true) => return Err(Probe::Fatal("the server requires TLS but no CA is configured".into())),
    };
    let mut reader = BufReader::new(conn);
    let service = &settings.topology.service;
    let connect = serde_json::json!({
        "verbose": false,
        "pedantic": false,
        "user": service.user,
        "pass": service.password.expose(),
        "name": "keyledger-readiness-probe",
        "lang": "rust",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": 1,
        "headers": true,
        "no_responders": true,
    });
    let inbox = format!("{}.ready", inbox_prefix(&service.user));
    let mut out = Vec::new();
    out.extend_from_slice(b"CONNECT ");
    out.extend_from_slice(connect.to_string().as_bytes());
    out.extend_from_slice(format!("\r\nSUB {inbox} 1\r\nPUB $JS.API.INFO {inbox} 0\r\n\r\nPING\r\n").as_bytes());
    reader.get_mut().write_all(&out).map_err(retry("writing CONNECT"))?;

    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(retry("reading reply"))?;
        if n == 0 {
            return Err(Probe::Retry("server closed the connection".into()));
        }
        let l = line.trim_end();
        if let Some(err) = l.strip_prefix("-ERR") {
            let err = err.trim();
            if err.contains("Authorization Violation") || err.contains("Permissions Violation") {
                return Err(Probe::Fatal(format!("readiness probe refused: {err}")));
            }
            return Err(Probe::Retry(format!("server error {err}")));
        } else if l == "PING" {
            reader.get_mut().write_all(b"PONG\r\n").map_err(retry("writing PONG"))?;
        } else if l.starts_with("MSG ") || l.starts_with("HMSG ") {
            let size: usize = l
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Probe::Retry(format!("bad message line {l:?}")))?;
            let mut payload = vec![0u8; size + 2];
            reader.read_exact(&mut payload).map_err(retry("reading payload"))?;
            if l.starts_with("HMSG ") {
                // A status message (503 no responders): JetStream is not up yet.
                return Err(Probe::Retry("JetStream not available yet".into()));
            }
            payload.truncate(size);
            let reply: serde_json::Value =
                serde_json::from_slice(&payload).map_err(|e| Probe::Retry(format!("bad $JS.API.INFO reply: {e}")))?;
            if let Some(error) = reply.get("error") {
                return Err(Probe::Retry(format!("$JS.API.INFO error: {error}")));
            }
            return Ok(());
        }
        // +OK, PONG, INFO updates: keep reading.
    }
}

/// Validates the topology and creates `data_dir` (0700) and the JetStream store directory.
fn prepare(settings: &ServerSettings, data_dir: &Path) -> Result<(), Error> {
    settings.topology.validate()?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|source| Error::Io { context: format!("creating {}", data_dir.display()), source })?;
    fs::create_dir_all(&settings.store_dir)
        .map_err(|source| Error::Io { context: format!("creating {}", settings.store_dir.display()), source })
}

/// A readable and writable connection (plain TCP or TLS) for the readiness probe.
trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

/// A blocking TLS client connection to `host` verified against the PEM CA in `ca_file`.
fn tls_stream(
    stream: TcpStream,
    ca_file: &Path,
    host: &str,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, Probe> {
    use rustls_pki_types::pem::PemObject as _;
    let fatal = |what: &str| Probe::Fatal(format!("TLS probe: {what}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca_file).map_err(|e| fatal(&e.to_string()))? {
        roots.add(cert.map_err(|e| fatal(&e.to_string()))?).map_err(|e| fatal(&e.to_string()))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fatal(&e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|e| fatal(&e.to_string()))?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).map_err(|e| fatal(&e.to_string()))?;
    Ok(rustls::StreamOwned::new(conn, stream))
}
