//! `keyledger dev`: a nats-server with JetStream plus every role, in one command.
//!
//! Layout of the data directory (default `.keyledger/`, mode 0700):
//!
//! | path | what |
//! |---|---|
//! | `root.key` | the root key, 64 hex characters, mode 0600 (created on first start) |
//! | `dev-state.json` | port and generated NATS passwords, mode 0600 (reused on restart) |
//! | `nats/` | the server's config (0600), log and JetStream store |
//! | `client.json` | tenant client profile for the CLI (`keyledger kms …`), mode 0600 |
//! | `service.json` | service profile for `keyledger serve` against this server, mode 0600 |
//!
//! The server listens on 127.0.0.1 only. It has a service account `KEYLEDGER` (JetStream,
//! the roles) and a tenant account `DEV` (user `dev`, Keyledger account 111122223333) that
//! imports `kms.v1.>` with `share: true`, so every request carries the server-stamped caller.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use keyledger_crypto::RootKey;
use keyledger_nats_server::{ClientProfile, DevTopology, NatsServer, Password, ServerSettings, ServiceProfile};

use crate::clock::Clock;
use crate::roles::{Role, RoleConfig, RunningRoles};

#[derive(serde::Serialize, serde::Deserialize)]
struct DevState {
    nats_port: u16,
    service_password: Password,
    tenant_password: Password,
}

/// A running dev environment: server, roles and the profiles to reach them. Tests use the same
/// code path as `keyledger dev`.
pub struct DevEnvironment {
    /// The NATS server.
    pub server: NatsServer,
    /// The running roles (keyd + cryptod).
    pub roles: Option<RunningRoles>,
    /// Profile of the tenant user `dev`.
    pub client_profile: ClientProfile,
    /// Profile of the service user.
    pub service_profile: ServiceProfile,
    /// The data directory.
    pub data_dir: PathBuf,
}

fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_0600()
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
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
    /// `nats_port` is used on the first start (0 = any free port) and recorded.
    pub async fn start(data_dir: &Path, nats_port: u16, clock: Clock) -> anyhow::Result<Self> {
        ensure_private_dir(data_dir)?;
        let root_path = data_dir.join("root.key");
        let root = if root_path.exists() {
            RootKey::load(&root_path)?
        } else {
            RootKey::create_file(&root_path)?
        };
        let state_path = data_dir.join("dev-state.json");
        let state: DevState = if state_path.exists() {
            serde_json::from_slice(&std::fs::read(&state_path)?).context("dev-state.json is unreadable")?
        } else {
            let port = if nats_port == 0 { keyledger_nats_server::free_port()? } else { nats_port };
            let s = DevState { nats_port: port, service_password: Password::generate(), tenant_password: Password::generate() };
            write_private(&state_path, &serde_json::to_vec_pretty(&s)?)?;
            s
        };
        let mut topology = DevTopology::dev();
        topology.service.password = state.service_password.clone();
        topology.tenants[0].password = state.tenant_password.clone();
        let binary = keyledger_nats_server::find_or_install()?;
        let nats_dir = data_dir.join("nats");
        ensure_private_dir(&nats_dir)?;
        let mut settings = ServerSettings::loopback(nats_dir.join("jetstream"), topology.clone());
        settings.port = state.nats_port;
        let server = NatsServer::start(&binary, settings, &nats_dir)?;
        let client_profile = server.client_profile(&topology.tenants[0].user).context("dev tenant missing")?;
        let service_profile = server.service_profile();
        client_profile.write_to(&data_dir.join("client.json"))?;
        service_profile.write_to(&data_dir.join("service.json"))?;
        let accounts: BTreeMap<String, String> =
            topology.tenants.iter().map(|t| (t.nats_account.clone(), t.keyledger_account.clone())).collect();
        let config = RoleConfig { accounts, clock, ..RoleConfig::default() };
        let roles = crate::roles::start(&[Role::Keyd, Role::Cryptod], &service_profile, Arc::new(root), config).await?;
        Ok(Self { server, roles: Some(roles), client_profile, service_profile, data_dir: data_dir.to_path_buf() })
    }

    /// Stops the roles, then the server.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(r) = self.roles.take() {
            r.stop().await;
        }
        self.server.stop()?;
        Ok(())
    }
}

/// Runs `keyledger dev` until Ctrl-C / SIGTERM.
pub async fn run(data_dir: &Path, nats_port: u16) -> anyhow::Result<()> {
    keyledger_crypto::harden_process().context("cannot harden the process")?;
    let env = DevEnvironment::start(data_dir, nats_port, Clock::system()).await?;
    let profile = data_dir.join("client.json");
    println!("Keyledger dev is running.");
    println!("  NATS server   {} (log: {})", env.server.url(), env.server.log_path().display());
    println!("  data dir      {}", data_dir.display());
    println!("  client        {}  (tenant account DEV → Keyledger account {})", profile.display(), env.client_profile.keyledger_account);
    println!();
    println!("Try, in another terminal:");
    println!("  keyledger kms create-key --description demo");
    println!("  keyledger kms encrypt --key-id <KeyId> --plaintext fileb://README.md");
    println!();
    println!("Ctrl-C stops everything; restarting keeps every key.");
    super::shutdown_signal().await;
    println!("stopping…");
    env.stop().await
}
