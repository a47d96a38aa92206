//! `keyledger dev`: a nats-server with JetStream plus every role, in one command.
//!
//! Layout of the data directory (default `.keyledger/`, mode 0700):
//!
//! | path | what |
//! |---|---|
//! | `root.key` | the root key, 64 hex characters, mode 0600 (created on first start) |
//! | `checkpoint.key` | the log's checkpoint signing key (Ed25519, note signer text), mode 0600 (created on first start; `keyledger checkpoint key` prints its public half) |
//! | `dev-state.json` | port and generated NATS passwords, mode 0600 (reused on restart) |
//! | `nats/` | the server's config (0600), log and JetStream store |
//! | `client.json` | tenant client profile for the CLI (`keyledger kms …`), mode 0600 |
//! | `service.json` | service profile for `keyledger serve` against this server, mode 0600 |
//! | `gateway-access-keys.json` | the AWS endpoint's access keys, secrets wrapped under the root key, mode 0600 |
//! | `gateway.json` | the gateway user's NATS profile (for `keyledger serve`'s `[gateway]`), mode 0600 |
//! | `aws-credentials` | the development credential in AWS shared-credentials format (profile `keyledger`), mode 0600 |
//! | `snapshots/` | projection snapshots (the newest two), used at start when the log commits to them |
//! | `audit-index/` | the audit index (tantivy), rebuilt from the log if deleted |
//! | `audit-tokens.json` | audit API URL and bearer tokens (`auditor`: all accounts; `dev`: account 111122223333), mode 0600 |
//!
//! The server listens on 127.0.0.1 only. It has a service account `KEYLEDGER` (JetStream,
//! the roles) and a tenant account `DEV` (user `dev`, Keyledger account 111122223333) that
//! imports `kms.v1.>` with `share: true`, so every request carries the server-stamped caller.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use keyledger_crypto::RootKey;
use keyledger_nats_server::{ClientProfile, DevTopology, NatsServer, Password, ServerSettings, ServiceProfile};

use crate::clock::Clock;
use crate::private_file::write_private;
use crate::roles::{Role, RoleConfig, RunningRoles};

/// The dev credential's profile name in `aws-credentials`.
pub const DEV_AWS_PROFILE: &str = "keyledger";
/// The dev credential's IAM-style user name.
pub const DEV_AWS_USER: &str = "dev";
/// File (in the data directory) of the AWS shared credentials for the dev endpoint.
pub const DEV_AWS_CREDENTIALS_FILE: &str = "aws-credentials";
/// File (in the data directory) of the gateway user's NATS profile (for `keyledger serve`'s
/// `[gateway]` against the dev server).
pub const DEV_GATEWAY_PROFILE_FILE: &str = "gateway.json";
/// Directory (in the data directory) of the projection snapshots.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// File (in the data directory) of the log's checkpoint signing key.
pub const CHECKPOINT_KEY_FILE: &str = "checkpoint.key";
/// File (in the data directory) of the dev endpoint's access keys.
pub const DEV_ACCESS_KEYS_FILE: &str = "gateway-access-keys.json";
/// What dev records about its first start (ports, NATS passwords), mode 0600, in the data
/// directory.
pub const DEV_STATE_FILE: &str = "dev-state.json";
/// The NATS port of a first `keyledger dev` start without `--nats-port` (NATS's own default).
pub const DEFAULT_NATS_PORT: u16 = 4222;

#[derive(serde::Serialize, serde::Deserialize)]
struct DevState {
    nats_port: u16,
    service_password: Password,
    tenant_password: Password,
    /// Added with the gateway: absent in older state files, generated then.
    #[serde(default)]
    gateway_password: Option<Password>,
    /// A cluster's members' (client, route) ports; absent for a single server.
    #[serde(default)]
    cluster: Option<Vec<(u16, u16)>>,
}

/// True if `nats_dir` holds JetStream data: a single server's `jetstream/`, or a cluster
/// member's `n<i>/jetstream/`.
fn holds_a_key_log(nats_dir: &Path) -> bool {
    if nats_dir.join("jetstream").exists() {
        return true;
    }
    std::fs::read_dir(nats_dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with('n') && e.path().join("jetstream").exists())
    })
}

/// How long `keyledger dev --nodes 3` leaves a member that exited down before restarting it
/// (long enough to watch the others take over).
pub const MEMBER_RESTART_DELAY: std::time::Duration = std::time::Duration::from_secs(3);

/// A running dev environment: server, roles and the profiles to reach them. Tests use the same
/// code path as `keyledger dev`.
pub struct DevEnvironment {
    /// The NATS server (the first member of a cluster).
    pub server: NatsServer,
    /// The other members of a cluster (`keyledger dev --nodes 3`); empty for one server.
    pub peers: Vec<NatsServer>,
    /// The running roles (keyd + cryptod).
    pub roles: Option<RunningRoles>,
    /// Profile of the tenant user `dev`.
    pub client_profile: ClientProfile,
    /// Profile of the service user.
    pub service_profile: ServiceProfile,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The AWS endpoint, once [`DevEnvironment::start_gateway`] ran.
    pub gateway: Option<crate::gateway::RunningGateway>,
    /// Exclusive lock on the data directory (held while running).
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Takes an exclusive, non-blocking lock on `<data_dir>/.lock`, so two `keyledger dev` never
/// run on one data directory. The OS releases it when the process ends, however it ends.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = data_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode_0600()
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(locked) => Ok(locked),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            anyhow::bail!("another `keyledger dev` is already running on {} (stop it first)", data_dir.display())
        }
        Err((_, e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
    }
}

/// The nats-server processes running with `<nats_dir>/nats.conf` as their configuration,
/// whatever spelling of the path started them (`kl`, `./kl/`, an absolute path): the `-c`
/// argument of each nats-server in `/proc` is resolved against that process's working
/// directory and compared canonically. Processes of other users, whose working directory
/// cannot be read, count only with an absolute path.
fn servers_using(nats_dir: &Path) -> Vec<i32> {
    let Ok(ours) = nats_dir.join(keyledger_nats_server::CONFIG_FILE).canonicalize() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_nats = args.first().is_some_and(|a0| {
            Path::new(std::ffi::OsStr::from_bytes(a0))
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains("nats-server"))
        });
        if !is_nats {
            continue;
        }
        let Some(config) = args
            .windows(2)
            .find(|w| w[0] == b"-c" || w[0] == b"--config")
            .map(|w| PathBuf::from(std::ffi::OsStr::from_bytes(w[1])))
        else {
            continue;
        };
        let config = if config.is_absolute() {
            config
        } else {
            match std::fs::read_link(entry.path().join("cwd")) {
                Ok(cwd) => cwd.join(config),
                Err(_) => continue,
            }
        };
        if config.canonicalize().is_ok_and(|c| c == ours) {
            pids.push(pid);
        }
    }
    pids
}

/// Stops any nats-server left running on this data directory by an earlier `keyledger dev`
/// that was killed (found by [`servers_using`], not by the pid file, which a failed start may
/// have overwritten), so the new one does not start on a store another server holds.
fn stop_orphaned_server(nats_dir: &Path) {
    for raw in servers_using(nats_dir) {
        eprintln!("stopping the nats-server (pid {raw}) left running by an earlier keyledger dev");
        let pid = nix::unistd::Pid::from_raw(raw);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let gone =
            || nix::sys::signal::kill(pid, None).is_err() || !Path::new(&format!("/proc/{raw}/cmdline")).exists();
        let mut stopped = false;
        for _ in 0..100 {
            if gone() {
                stopped = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if !stopped {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    Ok(())
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}
impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

impl DevEnvironment {
    /// Starts (or restarts, keeping everything) the dev environment in `data_dir`.
    /// `nats_port` 0 is any free port on the first start and the recorded port on later ones;
    /// another value is that port, recorded for later starts (one server; a cluster keeps the
    /// ports it was created with).
    pub async fn start(data_dir: &Path, nats_port: u16, clock: Clock) -> anyhow::Result<Self> {
        Self::start_with(data_dir, nats_port, RoleConfig { clock, ..RoleConfig::default() }).await
    }

    /// [`DevEnvironment::start`] with role settings (tests use it to shrink limits); the
    /// account map is filled in from the dev topology.
    pub async fn start_with(data_dir: &Path, nats_port: u16, config: RoleConfig) -> anyhow::Result<Self> {
        Self::start_nodes(data_dir, nats_port, config, 1).await
    }

    /// [`DevEnvironment::start_with`] on `nodes` nats-servers: 1, or a JetStream cluster of 3
    /// (or more) on loopback with every stream replicated on 3 (at most `nodes`) members. A data
    /// directory keeps the shape it was created with.
    pub async fn start_nodes(
        data_dir: &Path,
        nats_port: u16,
        config: RoleConfig,
        nodes: usize,
    ) -> anyhow::Result<Self> {
        Self::start_full(data_dir, nats_port, config, nodes, true).await
    }

    /// [`DevEnvironment::start_nodes`], choosing whether the servers fsync every write before
    /// acknowledging it (`sync_interval: always`, what Keyledger ships). `false` is only for
    /// measuring what that durability costs (`keyledger bench --lazy-fsync`).
    pub async fn start_full(
        data_dir: &Path,
        nats_port: u16,
        config: RoleConfig,
        nodes: usize,
        sync_always: bool,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(nodes == 1 || nodes >= 3, "--nodes is 1 or at least 3 (a quorum survives one loss)");
        ensure_private_dir(data_dir)?;
        let lock = lock_data_dir(data_dir)?;
        let root_path = data_dir.join("root.key");
        let root = if root_path.exists() {
            RootKey::load(&root_path)?
        } else if holds_a_key_log(&data_dir.join("nats")) {
            // A new root key could not open any existing key's material, and keys created with
            // it would be lost when the old one comes back.
            anyhow::bail!(
                "{} is missing but {} holds a key log; restore the root key file (a new one cannot open existing keys)",
                root_path.display(),
                data_dir.display()
            );
        } else {
            RootKey::create_file(&root_path)?
        };
        let state_path = data_dir.join(DEV_STATE_FILE);
        let mut state: DevState = if state_path.exists() {
            serde_json::from_slice(&std::fs::read(&state_path)?).context("dev-state.json is unreadable")?
        } else {
            let port = if nats_port == 0 { keyledger_nats_server::free_port()? } else { nats_port };
            let s = DevState {
                nats_port: port,
                service_password: Password::generate(),
                tenant_password: Password::generate(),
                gateway_password: Some(Password::generate()),
                cluster: if nodes > 1 { Some(keyledger_nats_server::NatsCluster::free_ports(nodes)?) } else { None },
            };
            write_private(&state_path, &serde_json::to_vec_pretty(&s)?)?;
            s
        };
        let mut topology = DevTopology::dev();
        topology.service.password = state.service_password.clone();
        topology.tenants[0].password = state.tenant_password.clone();
        if state.gateway_password.is_none() {
            state.gateway_password = Some(Password::generate());
            write_private(&state_path, &serde_json::to_vec_pretty(&state)?)?;
        }
        topology.gateway = state.gateway_password.clone().map(|password| keyledger_nats_server::UserCredentials {
            user: keyledger_nats_server::GATEWAY_USER.to_owned(),
            password,
        });
        if nats_port != 0 && nats_port != state.nats_port && state.cluster.is_none() {
            state.nats_port = nats_port;
            write_private(&state_path, &serde_json::to_vec_pretty(&state)?)?;
        }
        let recorded = state.cluster.as_ref().map_or(1, Vec::len);
        anyhow::ensure!(
            recorded == nodes,
            "{} holds the log of {recorded} nats-server(s); start it with --nodes {recorded}",
            data_dir.display()
        );
        let binary = keyledger_nats_server::find_or_install()?;
        let nats_dir = data_dir.join("nats");
        ensure_private_dir(&nats_dir)?;
        let (server, peers) = match &state.cluster {
            None => {
                let mut settings = ServerSettings::loopback(nats_dir.join("jetstream"), topology.clone());
                settings.port = state.nats_port;
                settings.sync_always = sync_always;
                stop_orphaned_server(&nats_dir);
                let server = NatsServer::start(&binary, settings, &nats_dir).with_context(|| {
                    format!("cannot start the NATS server on port {} (--nats-port chooses another)", state.nats_port)
                })?;
                if let Some(pid) = server.pid() {
                    write_private(&nats_dir.join("server.pid"), pid.to_string().as_bytes())?;
                }
                (server, Vec::new())
            }
            Some(ports) => {
                for i in 0..ports.len() {
                    stop_orphaned_server(&keyledger_nats_server::NatsCluster::member_dir(&nats_dir, i));
                }
                let cluster = keyledger_nats_server::NatsCluster::start_on(
                    &binary,
                    topology.clone(),
                    &nats_dir,
                    ports,
                    sync_always,
                    None,
                )?;
                let mut members = cluster.into_nodes();
                for (i, m) in members.iter().enumerate() {
                    if let Some(pid) = m.pid() {
                        let dir = keyledger_nats_server::NatsCluster::member_dir(&nats_dir, i);
                        write_private(&dir.join("server.pid"), pid.to_string().as_bytes())?;
                    }
                }
                let first = members.remove(0);
                (first, members)
            }
        };
        let urls = std::iter::once(&server).chain(&peers).map(NatsServer::url).collect::<Vec<_>>().join(",");
        let client_profile = keyledger_nats_server::ClientProfile {
            url: urls.clone(),
            ..server.client_profile(&topology.tenants[0].user).context("dev tenant missing")?
        };
        let service_profile = keyledger_nats_server::ServiceProfile { url: urls, ..server.service_profile() };
        client_profile.write_to(&data_dir.join("client.json"))?;
        service_profile.write_to(&data_dir.join("service.json"))?;
        let accounts: BTreeMap<String, String> =
            topology.tenants.iter().map(|t| (t.nats_account.clone(), t.keyledger_account.clone())).collect();
        let checkpoint = match config.checkpoint {
            Some(c) => c,
            None => crate::checkpointer::CheckpointConfig::new(Arc::new(crate::checkpointer::LogKey::load_or_create(
                &data_dir.join(CHECKPOINT_KEY_FILE),
            )?)),
        };
        let snapshot = crate::snapshot::SnapshotConfig {
            dir: config.snapshot.dir.clone().or_else(|| Some(data_dir.join(SNAPSHOT_DIR))),
            ..config.snapshot.clone()
        };
        let replicas = if nodes > 1 { 3.min(nodes) } else { config.replicas };
        let config = RoleConfig { accounts, checkpoint: Some(checkpoint), snapshot, replicas, ..config };
        let roles = crate::roles::start(
            &[Role::Keyd, Role::Cryptod, Role::Checkpointer],
            &service_profile,
            Arc::new(root),
            config,
        )
        .await?;
        Ok(Self {
            server,
            peers,
            roles: Some(roles),
            client_profile,
            service_profile,
            data_dir: data_dir.to_path_buf(),
            gateway: None,
            _lock: lock,
        })
    }

    /// Starts the AWS endpoint on `127.0.0.1:<port>` (0: a free port) with the development
    /// credential: created on the first call (access key for user `dev` in account
    /// 111122223333, kept in `gateway-access-keys.json` with its secret wrapped under the root
    /// key) and written in clear to `aws-credentials` (profile `keyledger`, mode 0600) for the
    /// developer's AWS tools.
    pub async fn start_gateway(&mut self, port: u16) -> anyhow::Result<&crate::gateway::RunningGateway> {
        use crate::gateway::credentials::{AccessKeyRecord, AccessKeysFile};
        let ctx = self.roles.as_ref().context("the roles are not running")?.ctx.clone();
        let keys_path = self.data_dir.join(DEV_ACCESS_KEYS_FILE);
        let mut file = if keys_path.exists() { AccessKeysFile::read(&keys_path)? } else { AccessKeysFile::default() };
        let account = keyledger_nats_server::DEV_KEYLEDGER_ACCOUNT;
        let dev_record = match file.access_keys.iter().find(|r| r.account == account && r.user == DEV_AWS_USER) {
            Some(r) => r.clone(),
            None => {
                let (record, _secret) = AccessKeyRecord::generate(&ctx.root, account, DEV_AWS_USER)?;
                file.access_keys.push(record.clone());
                file.write(&keys_path)?;
                record
            }
        };
        let access_keys = file.unwrap_all(&ctx.root)?;
        let dev_key = access_keys.get(&dev_record.access_key_id).context("the dev credential is missing")?;
        let credentials = zeroize::Zeroizing::new(format!(
            "# Written by `keyledger dev`: the development credential of its AWS KMS endpoint.\n[{DEV_AWS_PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            dev_key.access_key_id,
            dev_key.secret.expose()
        ));
        write_private(&self.aws_credentials_path(), credentials.as_bytes())?;
        let profile = self
            .server
            .settings()
            .topology
            .gateway_profile(&self.service_profile.url)
            .context("the dev topology has no gateway user")?;
        profile.write_to(&self.data_dir.join(DEV_GATEWAY_PROFILE_FILE))?;
        let config = crate::gateway::GatewayConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            tls: None,
            realm: ctx.config.realm.clone(),
            access_keys,
            clock: ctx.config.clock.clone(),
            limits: crate::gateway::GatewayLimits::default(),
            rejections: None,
        };
        let running = crate::gateway::start(config, &profile).await?;
        Ok(self.gateway.insert(running))
    }

    /// `<data dir>/aws-credentials`: the development credential (see
    /// [`DevEnvironment::start_gateway`]).
    pub fn aws_credentials_path(&self) -> PathBuf {
        self.data_dir.join(DEV_AWS_CREDENTIALS_FILE)
    }

    /// Stops the roles, then the server.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(g) = self.gateway.take() {
            g.stop().await;
        }
        if let Some(r) = self.roles.take() {
            r.stop().await;
        }
        self.server.stop()?;
        for p in &mut self.peers {
            p.stop()?;
        }
        Ok(())
    }
}

/// SIGINT and SIGTERM, caught from [`Signals::new`] on (the handlers are installed then, not at
/// the first poll as `tokio::signal::ctrl_c` does), so none is lost to the default action.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
        })
    }

    /// The next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }
}

/// Runs `keyledger dev` until Ctrl-C / SIGTERM.
pub async fn run(
    data_dir: &Path,
    nats_port: Option<u16>,
    gateway_port: u16,
    witness: Option<crate::checkpointer::WitnessTarget>,
    nodes: usize,
) -> anyhow::Result<()> {
    // Ctrl-C / SIGTERM are ours from the first moment: a signal during start-up (before this,
    // the default action killed dev and left its nats-server running in its own process group)
    // stops what has started once the start-up step in progress returns; a second one aborts
    // at once (the servers are killed).
    let mut signals = Signals::new()?;
    keyledger_crypto::harden_process().context("cannot harden the process")?;
    let mut config = RoleConfig { clock: Clock::system(), ..RoleConfig::default() };
    if let Some(w) = witness {
        ensure_private_dir(data_dir)?;
        let key = crate::checkpointer::LogKey::load_or_create(&data_dir.join(CHECKPOINT_KEY_FILE))?;
        config.checkpoint = Some(crate::checkpointer::CheckpointConfig {
            witness: Some(w),
            ..crate::checkpointer::CheckpointConfig::new(Arc::new(key))
        });
    }
    // 0: the recorded port on a restart.
    let nats_port = nats_port.unwrap_or(if data_dir.join(DEV_STATE_FILE).exists() { 0 } else { DEFAULT_NATS_PORT });
    let start = DevEnvironment::start_nodes(data_dir, nats_port, config, nodes);
    tokio::pin!(start);
    let mut interrupted = false;
    let mut env = loop {
        tokio::select! {
            env = &mut start => break env?,
            _ = signals.recv() => {
                if interrupted {
                    eprintln!("interrupted again: killing what has started");
                    anyhow::bail!("interrupted during start-up");
                }
                interrupted = true;
                eprintln!("interrupted during start-up: stopping once the step in progress ends (Ctrl-C again to kill)");
            }
        }
    };
    if interrupted {
        env.stop().await?;
        eprintln!("stopped");
        return Ok(());
    }
    // A busy port (another `keyledger dev`) costs the AWS endpoint, not the whole dev server.
    let endpoint = match env.start_gateway(gateway_port).await {
        Ok(gateway) => Some(gateway.url()),
        Err(e) => {
            eprintln!("warning: the AWS endpoint is not running: {e:#} (choose another port with --gateway-port)");
            None
        }
    };
    // auditd: the audit index and its HTTP API (crate::auditd). A busy address costs the
    // audit API only; KEYLEDGER_AUDIT_ADDR picks another.
    let audit_listen = crate::auditd::dev_listen()?;
    let account = env.client_profile.keyledger_account.clone();
    let auditd = match crate::auditd::start_dev(&env.service_profile, data_dir, audit_listen, &account).await {
        Ok(a) => Some(a),
        Err(e) => {
            eprintln!("warning: the audit API is not running: {e:#} (set KEYLEDGER_AUDIT_ADDR to another address)");
            None
        }
    };
    // The roles' health and metrics (fail-closed state of the audit log, projection state).
    let health_listen: std::net::SocketAddr = std::env::var("KEYLEDGER_HEALTH_ADDR")
        .unwrap_or_else(|_| crate::health::DEV_LISTEN.to_owned())
        .parse()
        .context("KEYLEDGER_HEALTH_ADDR is not an address like 127.0.0.1:4281")?;
    let health = match &env.roles {
        Some(r) => {
            match crate::health::serve(r.ctx.clone(), health_listen).await {
                Ok(h) => Some(h),
                Err(e) => {
                    eprintln!("warning: the health endpoint is not running: {e:#} (set KEYLEDGER_HEALTH_ADDR to another address)");
                    None
                }
            }
        }
        None => None,
    };
    let region = env.roles.as_ref().map(|r| r.ctx.config.realm.region.clone()).unwrap_or_default();
    let profile = data_dir.join("client.json");
    println!("Keyledger dev is running.");
    if let Some(h) = &health {
        println!("  health        http://{}/healthz  /metrics", h.addr);
    }
    println!("  NATS server   {} (log: {})", env.server.url(), env.server.log_path().display());
    for peer in &env.peers {
        println!("  NATS member   {} (log: {})", peer.url(), peer.log_path().display());
    }
    println!("  data dir      {}", data_dir.display());
    println!(
        "  client        {}  (tenant account DEV → Keyledger account {})",
        profile.display(),
        env.client_profile.keyledger_account
    );
    if let Some(a) = &auditd {
        println!(
            "  audit API     http://{}  (tokens: {})",
            a.addr,
            data_dir.join(crate::auditd::TOKENS_FILE).display()
        );
    }
    if let Some(endpoint) = &endpoint {
        println!(
            "  AWS endpoint  {endpoint}  (SigV4 credential: profile {DEV_AWS_PROFILE} in {})",
            env.aws_credentials_path().display()
        );
    }
    println!();
    println!("Try, in another terminal:");
    if data_dir != Path::new(".keyledger") {
        // The CLI looks for .keyledger/client.json unless told otherwise.
        let absolute = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        println!("  export KEYLEDGER_DATA_DIR={}", absolute.display());
    }
    println!("  keyledger kms create-key --description demo");
    println!("  keyledger kms encrypt --key-id <KeyId> --plaintext fileb://Cargo.toml   # at most 4096 bytes");
    if auditd.is_some() {
        println!("  keyledger audit search --limit 5");
    }
    if let Some(endpoint) = &endpoint {
        println!(
            "  AWS_SHARED_CREDENTIALS_FILE={} aws --profile {DEV_AWS_PROFILE} --region {region} --endpoint-url {endpoint} kms list-keys",
            env.aws_credentials_path().display()
        );
    }
    println!();
    println!("Ctrl-C stops everything; restarting keeps every key.");
    // Run until Ctrl-C / SIGTERM. One server: if it dies there is no service left to offer —
    // say so and exit non-zero rather than keep answering nothing. A cluster: a member that
    // exits (a crash, a kill -9) is restarted after a few seconds, while the others serve; dev
    // gives up only when a majority of members is down at once (no quorum, no writes).
    let mut watch = tokio::time::interval(std::time::Duration::from_millis(500));
    let shutdown = signals.recv();
    tokio::pin!(shutdown);
    let members = 1 + env.peers.len();
    let mut down_since: Vec<Option<std::time::Instant>> = vec![None; members];
    let server_died = loop {
        tokio::select! {
            _ = &mut shutdown => break false,
            _ = watch.tick() => {
                if members == 1 {
                    if env.server.has_exited() {
                        break true;
                    }
                    continue;
                }
                for (i, since) in down_since.iter_mut().enumerate() {
                    let member = if i == 0 { &mut env.server } else { &mut env.peers[i - 1] };
                    if !member.has_exited() {
                        *since = None;
                        continue;
                    }
                    let first_seen = *since.get_or_insert_with(|| {
                        eprintln!(
                            "warning: cluster member n{} exited (log: {}); restarting it in {} s",
                            i + 1,
                            member.log_path().display(),
                            MEMBER_RESTART_DELAY.as_secs()
                        );
                        std::time::Instant::now()
                    });
                    if first_seen.elapsed() >= MEMBER_RESTART_DELAY {
                        match tokio::task::block_in_place(|| member.restart()) {
                            Ok(()) => {
                                // The pid file names the running member (a later dev start
                                // stops an orphan by it; users kill members by it).
                                let dir = keyledger_nats_server::NatsCluster::member_dir(&env.data_dir.join("nats"), i);
                                if let Some(pid) = member.pid() {
                                    if let Err(e) = write_private(&dir.join("server.pid"), pid.to_string().as_bytes()) {
                                        eprintln!("warning: cannot write the pid file of n{}: {e}", i + 1);
                                    }
                                }
                                eprintln!("cluster member n{} restarted; it catches up from the others", i + 1);
                                *since = None;
                            }
                            Err(e) => eprintln!("warning: cannot restart cluster member n{}: {e}", i + 1),
                        }
                    }
                }
                if down_since.iter().filter(|d| d.is_some()).count() * 2 > members {
                    break true;
                }
            }
        }
    };
    if server_died {
        let log = env.server.log_path();
        let _ = env.stop().await;
        if members == 1 {
            anyhow::bail!("the NATS server exited unexpectedly (log: {}); stopped", log.display());
        }
        anyhow::bail!(
            "a majority of the cluster's members is down (no quorum; logs: {} and the other members'); stopped",
            log.display()
        );
    }
    println!("stopping…");
    if let Some(a) = auditd {
        a.stop().await;
    }
    env.stop().await
}
