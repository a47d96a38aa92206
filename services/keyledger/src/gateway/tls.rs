//! Optional TLS for the endpoint (rustls with the ring provider, TLS 1.2 and 1.3).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate chain and private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_chain: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Read once at start; its bytes are not kept
    /// outside rustls.
    pub private_key: PathBuf,
}

/// A TLS acceptor for `files`, offering `http/1.1` by ALPN.
///
/// # Errors
/// If a file is unreadable, holds no certificate or key, or rustls refuses the pair.
pub(crate) fn acceptor(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_chain)
        .with_context(|| format!("cannot read the TLS certificate {}", files.cert_chain.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", files.cert_chain.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", files.cert_chain.display());
    let key = PrivateKeyDer::from_pem_file(&files.private_key)
        .with_context(|| format!("cannot read a PEM private key from {}", files.private_key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
