//! A JetStream cluster of nats-servers on loopback, for local use and for the fault tests.

use std::path::{Path, PathBuf};

use crate::config::{ClusterSettings, DevTopology, ServerSettings};
use crate::profile::{ClientProfile, ServiceProfile};
use crate::server::{free_port, NatsServer};
use crate::Error;

/// The cluster name every member carries.
pub const CLUSTER_NAME: &str = "keyledger";

/// `size` nats-servers on 127.0.0.1, each with its own client port, route port and JetStream
/// store (`<data_dir>/n<i>/`), all with the same accounts and users, routed to each other.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts a new cluster in `data_dir` on free ports (retried on other ports, from an empty
    /// directory, when one was taken meanwhile). The members are all spawned first, then each
    /// awaited: JetStream in a cluster is ready only once a quorum runs. `sync_always` as [`ServerSettings::sync_always`]; with
    /// `tls`, clients must connect with TLS and routes are mutually authenticated TLS.
    ///
    /// # Errors
    /// As [`NatsServer::start`]; a member that is not ready in time stops the others.
    pub fn start(
        binary: &Path,
        topology: DevTopology,
        data_dir: &Path,
        size: usize,
        sync_always: bool,
        tls: Option<&crate::TlsFiles>,
    ) -> Result<Self, Error> {
        // Free ports are only free when picked: another process may take one before a member
        // binds it. Try again with new ports then, like NatsServer::start does.
        let mut attempt = 1;
        loop {
            match Self::start_on(binary, topology.clone(), data_dir, &Self::free_ports(size)?, sync_always, tls) {
                Err(e) if attempt < 5 && e.is_port_taken() => {
                    attempt += 1;
                    // A new cluster on new ports: nothing of the failed start is kept.
                    for i in 0..size {
                        let _ = std::fs::remove_dir_all(Self::node_dir(data_dir, i));
                    }
                }
                other => return other,
            }
        }
    }

    /// `size` pairs of free loopback ports (client, route).
    ///
    /// # Errors
    /// No free port.
    pub fn free_ports(size: usize) -> Result<Vec<(u16, u16)>, Error> {
        let mut seen = std::collections::HashSet::new();
        let mut pick = || -> Result<u16, Error> {
            loop {
                let p = free_port()?;
                if seen.insert(p) {
                    return Ok(p);
                }
            }
        };
        (0..size).map(|_| Ok((pick()?, pick()?))).collect()
    }

    /// As [`NatsCluster::start`] on given (client, route) ports, one pair per member (a restart
    /// reuses them, so profiles stay valid).
    ///
    /// # Errors
    /// As [`NatsCluster::start`].
    pub fn start_on(
        binary: &Path,
        topology: DevTopology,
        data_dir: &Path,
        ports: &[(u16, u16)],
        sync_always: bool,
        tls: Option<&crate::TlsFiles>,
    ) -> Result<Self, Error> {
        let size = ports.len();
        let mut nodes = Vec::with_capacity(size);
        for (i, (client, route)) in ports.iter().enumerate() {
            let dir = Self::node_dir(data_dir, i);
            let mut settings = ServerSettings::loopback(dir.join("jetstream"), topology.clone());
            settings.port = *client;
            settings.sync_always = sync_always;
            settings.tls = tls.cloned();
            settings.cluster = Some(ClusterSettings {
                name: CLUSTER_NAME.to_owned(),
                server_name: format!("n{}", i + 1),
                port: *route,
                routes: ports.iter().filter(|(c, _)| c != client).map(|(_, r)| *r).collect(),
            });
            nodes.push(NatsServer::spawn(binary, settings, &dir)?);
        }
        let mut cluster = Self { nodes };
        for i in 0..size {
            if let Err(e) = cluster.nodes[i].wait_until_ready() {
                cluster.stop();
                return Err(e);
            }
        }
        Ok(cluster)
    }

    fn node_dir(data_dir: &Path, i: usize) -> PathBuf {
        data_dir.join(format!("n{}", i + 1))
    }

    /// Every member's client URL, comma-separated (what clients and roles connect with: they
    /// move to another member when theirs goes away).
    pub fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// The members.
    pub fn nodes(&mut self) -> &mut [NatsServer] {
        &mut self.nodes
    }

    /// The members, owned (the caller stops them).
    pub fn into_nodes(mut self) -> Vec<NatsServer> {
        std::mem::take(&mut self.nodes)
    }

    /// The directory of member `i` (0-based) under `data_dir`: `n<i+1>/`.
    pub fn member_dir(data_dir: &Path, i: usize) -> PathBuf {
        Self::node_dir(data_dir, i)
    }

    /// The service user's profile with every member's URL.
    pub fn service_profile(&self) -> ServiceProfile {
        ServiceProfile { url: self.urls(), ..self.nodes[0].service_profile() }
    }

    /// A role user's profile with every member's URL.
    pub fn role_profile(&self, user: &str) -> Option<ServiceProfile> {
        Some(ServiceProfile { url: self.urls(), ..self.nodes[0].role_profile(user)? })
    }

    /// A tenant's profile with every member's URL.
    pub fn client_profile(&self, tenant: &str) -> Option<ClientProfile> {
        Some(ClientProfile { url: self.urls(), ..self.nodes[0].client_profile(tenant)? })
    }

    /// Stops every member (gracefully).
    pub fn stop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.stop();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
