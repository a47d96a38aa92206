//! TLS for the local cluster: files for a dev certificate authority and a loopback certificate
//! that every member uses for client connections and for routes (mutually authenticated).

use std::path::{Path, PathBuf};

use crate::Error;

/// The PEM files a TLS server (and a client that trusts it) needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM).
    pub cert_file: PathBuf,
    /// The private key (PEM, mode 0600).
    pub key_file: PathBuf,
    /// The CA certificate clients and route peers verify against (PEM).
    pub ca_file: PathBuf,
}

/// Generates a dev CA and a certificate for `localhost` / `127.0.0.1` signed by it (ECDSA P-256,
/// server and client authentication: members use it for routes too) into `dir`:
/// `ca.pem`, `cert.pem`, `key.pem` (0600). For loopback development and tests only: the CA key
/// is not kept.
///
/// # Errors
/// [`Error::Config`] if the certificates cannot be made, [`Error::Io`] if the files cannot be
/// written.
pub fn generate_dev_tls(dir: &Path) -> Result<TlsFiles, Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    let fail = |e: rcgen::Error| Error::Config(format!("cannot make a dev certificate: {e}"));
    let ca_key = KeyPair::generate().map_err(fail)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Keyledger local cluster CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let key = KeyPair::generate().map_err(fail)?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).map_err(fail)?;
    params.distinguished_name.push(DnType::CommonName, "keyledger local cluster member");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(fail)?;
    std::fs::create_dir_all(dir)
        .map_err(|source| Error::Io { context: format!("creating {}", dir.display()), source })?;
    let files =
        TlsFiles { cert_file: dir.join("cert.pem"), key_file: dir.join("key.pem"), ca_file: dir.join("ca.pem") };
    let write = |path: &Path, text: &str| crate::profile::write_private_file(path, text.as_bytes());
    write(&files.ca_file, &ca_cert.pem())?;
    write(&files.cert_file, &cert.pem())?;
    write(&files.key_file, &zeroize::Zeroizing::new(key.serialize_pem()))?;
    Ok(files)
}
