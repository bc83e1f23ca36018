//! The service's TLS identity: a local CA (ECDSA P-256) and a server certificate it signs, kept
//! in the data folder. Clients trust only `tls-ca.pem`, so no public CA is involved. The server
//! certificate names the loopback addresses and every `--hostname`; material naming other names
//! is replaced on start. An operator may instead bring a certificate and key (`--tls-cert`,
//! `--tls-key`): then nothing is made or written here.
//!
//! The CA private key is deliberately never written to disk: a CA key left lying around would let
//! anyone who reads it impersonate any host to clients that trust `tls-ca.pem`. The cost is that
//! if the server certificate or key goes missing, a new CA is made and clients must pick up the
//! new `tls-ca.pem`.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::config::OwnTls;
use crate::secret_files::{create_private_dir, write_new_private_file};

/// Names the server certificate is always valid for: the loopback addresses a local user types.
const LOOPBACK_NAMES: [&str; 3] = ["127.0.0.1", "localhost", "::1"];
const VALIDITY_DAYS: i64 = 3650;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot write TLS file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read TLS file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS file {path} is not valid PEM ({reason}): delete {dir} to have kagi make new TLS material")]
    BadPem {
        path: PathBuf,
        dir: PathBuf,
        reason: String,
    },
    #[error("cannot generate TLS certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("kagi's CA could not issue the TLS certificate: {0}")]
    Issue(String),
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot read {flag} {path}: {source}")]
    OwnRead {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {path} is not usable: {reason}")]
    OwnUnusable {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the key {key} does not belong to the certificate {cert}: the first certificate in --tls-cert must be the one the --tls-key key certifies")]
    OwnMismatch { cert: PathBuf, key: PathBuf },
}

/// The names the server certificate must carry: loopback first, then `hostnames` (DNS names or
/// IP addresses, as the config normalized them), each once.
pub fn server_names(hostnames: &[String]) -> Vec<String> {
    let mut names: Vec<String> = LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect();
    for h in hostnames {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    names
}

/// The subjectAltNames (DNS names lowercased, IP addresses as text) of the first certificate in
/// a PEM file; `None` when it cannot be read.
fn names_in_cert(path: &Path) -> Option<BTreeSet<String>> {
    use der::Decode;
    use x509_cert::ext::pkix::name::GeneralName;
    let pem = std::fs::read(path).ok()?;
    let leaf = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    let cert = x509_cert::certificate::Certificate::from_der(leaf.as_ref()).ok()?;
    let ext = cert
        .tbs_certificate()
        .extensions()?
        .iter()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)?;
    let san = x509_cert::ext::pkix::SubjectAltName::from_der(ext.extn_value.as_bytes()).ok()?;
    let mut names = BTreeSet::new();
    for gn in san.0 {
        match gn {
            GeneralName::DnsName(d) => {
                names.insert(d.as_str().to_ascii_lowercase());
            }
            GeneralName::IpAddress(ip) => {
                let ip = match ip.as_bytes().len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(ip.as_bytes()).ok()?),
                    16 => std::net::IpAddr::from(<[u8; 16]>::try_from(ip.as_bytes()).ok()?),
                    _ => return None,
                };
                names.insert(ip.to_string());
            }
            _ => {}
        }
    }
    Some(names)
}

/// Whether the server certificate in `files` names exactly `names`: a changed `--hostname`
/// gets a new certificate, and a removed one stops being claimed.
fn names_match(files: &TlsFiles, names: &[String]) -> bool {
    let wanted: BTreeSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    names_in_cert(&files.server_cert).is_some_and(|have| have == wanted)
}

/// Where the TLS material of a data folder lives.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub dir: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TlsFiles {
    pub fn in_data_dir(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        TlsFiles {
            ca_cert: data_dir.join("tls-ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            dir,
        }
    }

    fn complete(&self) -> bool {
        self.ca_cert.is_file() && self.server_cert.is_file() && self.server_key.is_file()
    }
}

/// Reuses the TLS material in `files` when it is all there and names `names`, otherwise makes a
/// fresh CA and server certificate (the CA key is not kept, so new names mean a new CA too).
/// Returns true when new material was made.
pub fn ensure_material(files: &TlsFiles, names: &[String]) -> Result<bool, TlsError> {
    if files.complete() && names_match(files, names) {
        return Ok(false);
    }
    create_private_dir(&files.dir).map_err(|source| TlsError::Write {
        path: files.dir.clone(),
        source,
    })?;
    // Leftovers of a partial set are replaced as a whole so the three files always match.
    remove_set(files)?;

    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::days(1);
    let not_after = now + time::Duration::days(VALIDITY_DAYS);

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = name("kagi local TLS CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = name("kagi service");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let server_cert = params.signed_by(&server_key, &ca_cert, &ca_key)?;

    write_new_private_file(&files.server_key, private_key_pem(&server_key)?.as_bytes()).map_err(
        |source| TlsError::Write {
            path: files.server_key.clone(),
            source,
        },
    )?;
    write_public_file(
        &files.server_cert,
        certificate_pem(server_cert.der())?.as_bytes(),
    )?;
    // The CA certificate goes last: its presence marks the set as complete.
    write_public_file(&files.ca_cert, certificate_pem(ca_cert.der())?.as_bytes())?;
    Ok(true)
}

/// Whether the TLS material in `files` was issued under `root_pem`, names `names` and stays
/// valid for a while; otherwise `issue_from_ca` replaces it.
pub fn issued_under(files: &TlsFiles, root_pem: &str, names: &[String]) -> bool {
    if !files.complete() || !names_match(files, names) {
        return false;
    }
    let Ok(current) = std::fs::read_to_string(&files.ca_cert) else {
        return false;
    };
    if current.trim() != root_pem.trim() {
        return false;
    }
    let Ok(pem) = std::fs::read(&files.server_cert) else {
        return false;
    };
    let Some(Ok(leaf)) = CertificateDer::pem_slice_iter(&pem).next() else {
        return false;
    };
    use der::Decode;
    let Ok(cert) = x509_cert::certificate::Certificate::from_der(leaf.as_ref()) else {
        return false;
    };
    let not_after = cert
        .tbs_certificate()
        .validity()
        .not_after
        .to_unix_duration()
        .as_secs() as i64;
    not_after - kagi_ca::x509::unix_now() > RENEW_BEFORE_SECS
}

/// Server certificates from kagi's own CA are renewed this long before they expire.
const RENEW_BEFORE_SECS: i64 = 30 * 86_400;

/// Make a new server key for `names` and have `issue` (kagi's own CA, profile tls-server)
/// certify it; write key, leaf + chain, and `root_pem` as the clients' trust anchor.
pub fn issue_from_ca(
    files: &TlsFiles,
    root_pem: &str,
    names: &[String],
    issue: impl FnOnce(&[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), String>,
) -> Result<(), TlsError> {
    create_private_dir(&files.dir).map_err(|source| TlsError::Write {
        path: files.dir.clone(),
        source,
    })?;
    let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    // Clients match the subjectAltNames; the CN is for people reading the certificate, and the
    // tls-server profile allows at most 64 characters there.
    let common_name = names
        .get(LOOPBACK_NAMES.len())
        .filter(|n| n.len() <= 64)
        .map_or("localhost", String::as_str);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&server_key)?;
    let (leaf, chain) = issue(csr.der()).map_err(TlsError::Issue)?;
    let mut pem = certificate_pem(&leaf)?;
    // The chain up to, not including, the root: clients hold the root.
    for c in chain.iter().take(chain.len().saturating_sub(1)) {
        pem.push_str(&certificate_pem(c)?);
    }
    remove_set(files)?;
    write_new_private_file(&files.server_key, private_key_pem(&server_key)?.as_bytes()).map_err(
        |source| TlsError::Write {
            path: files.server_key.clone(),
            source,
        },
    )?;
    write_public_file(&files.server_cert, pem.as_bytes())?;
    write_public_file(&files.ca_cert, root_pem.as_bytes())?;
    Ok(())
}

/// Remove the three files of a set, so a new set never mixes with leftovers of an old one.
fn remove_set(files: &TlsFiles) -> Result<(), TlsError> {
    for path in [&files.ca_cert, &files.server_cert, &files.server_key] {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TlsError::Write {
                    path: path.clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "kagi");
    dn
}

fn write_public_file(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    std::fs::write(path, contents).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// rustls server configuration with the aws-lc-rs provider chosen explicitly (another provider
/// may be compiled in through dependencies, and rustls refuses to guess).
pub fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let certs = read_certs(&files.server_cert, &files.dir)?;
    let key = {
        let bytes = read(&files.server_key)?;
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::BadPem {
            path: files.server_key.clone(),
            dir: files.dir.clone(),
            reason: e.to_string(),
        })?
    };
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(PinnedClientCerts::new(provider())))
        .with_single_cert(certs, key)?;
    Ok(config)
}

/// rustls server configuration from an operator's own certificate chain and key, checked so a
/// wrong file is named before anything starts.
pub fn own_server_config(own: &OwnTls) -> Result<rustls::ServerConfig, TlsError> {
    let cert_bytes = std::fs::read(&own.cert).map_err(|source| TlsError::OwnRead {
        flag: "--tls-cert",
        path: own.cert.clone(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::OwnUnusable {
            flag: "--tls-cert",
            path: own.cert.clone(),
            reason: format!("not PEM certificates ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::OwnUnusable {
            flag: "--tls-cert",
            path: own.cert.clone(),
            reason: "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    }
    let key_bytes =
        Zeroizing::new(std::fs::read(&own.key).map_err(|source| TlsError::OwnRead {
            flag: "--tls-key",
            path: own.key.clone(),
            source,
        })?);
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsError::OwnUnusable {
        flag: "--tls-key",
        path: own.key.clone(),
        reason: format!("no unencrypted PEM private key (PKCS#8, SEC1 or RSA) found ({e})"),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(PinnedClientCerts::new(provider())))
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::OwnMismatch {
                cert: own.cert.clone(),
                key: own.key.clone(),
            },
            other => TlsError::OwnUnusable {
                flag: "--tls-key",
                path: own.key.clone(),
                reason: other.to_string(),
            },
        })?;
    Ok(config)
}

/// The names in an operator's certificate that are missing for `hostnames` (exact names, or a
/// `*.` wildcard covering one label), so the start can warn before clients fail.
pub fn own_cert_missing_names(own: &OwnTls, hostnames: &[String]) -> Vec<String> {
    let Some(have) = names_in_cert(&own.cert) else {
        return hostnames.to_vec();
    };
    hostnames
        .iter()
        .filter(|h| {
            let h = h.to_ascii_lowercase();
            let wildcard = h.split_once('.').map(|(_, rest)| format!("*.{rest}"));
            !have.contains(&h) && !wildcard.is_some_and(|w| have.contains(&w))
        })
        .cloned()
        .collect()
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// All certificates in a PEM file.
pub fn read_certs(path: &Path, dir: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::BadPem {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::in_data_dir(dir.path());
        let names = server_names(&[]);
        assert!(ensure_material(&files, &names).unwrap());
        let first = std::fs::read(&files.ca_cert).unwrap();
        assert!(!ensure_material(&files, &names).unwrap());
        assert_eq!(first, std::fs::read(&files.ca_cert).unwrap());
        server_config(&files).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.server_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn other_names_make_new_material() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::in_data_dir(dir.path());
        let names = server_names(&["kagi.example.com".into(), "10.0.0.5".into()]);
        assert!(ensure_material(&files, &names).unwrap());
        let have = names_in_cert(&files.server_cert).unwrap();
        assert!(
            have.contains("kagi.example.com") && have.contains("10.0.0.5") && have.contains("::1")
        );
        assert!(!ensure_material(&files, &names).unwrap());
        let fewer = server_names(&["kagi.example.com".into()]);
        assert!(ensure_material(&files, &fewer).unwrap());
        assert!(!names_in_cert(&files.server_cert)
            .unwrap()
            .contains("10.0.0.5"));
    }
}

/// Optional TLS client authentication for identities bound to a certificate.
///
/// The certificate is not checked against a CA: kagi pins it. An identity stores the SHA-256 of
/// its certificate, and the handshake's signature proves the client holds the matching private
/// key; `Hsm::login_by_certificate` then maps the certificate to its identity. Clients without a
/// certificate are let through to token authentication.
#[derive(Debug)]
pub struct PinnedClientCerts {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinnedClientCerts {
    pub fn new(provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        PinnedClientCerts { provider }
    }
}

impl rustls::server::danger::ClientCertVerifier for PinnedClientCerts {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        // Which certificate is acceptable is decided per identity, after the handshake.
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// PEM text of a certificate, written by the one PEM encoder kagi uses (`kagi_ca::x509::pem`).
fn certificate_pem(der: &[u8]) -> Result<String, TlsError> {
    kagi_ca::x509::pem("CERTIFICATE", der).map_err(|e| TlsError::Issue(e.to_string()))
}

/// PKCS#8 PEM text of a freshly generated TLS key, zeroized when dropped.
fn private_key_pem(key: &KeyPair) -> Result<Zeroizing<String>, TlsError> {
    let der = Zeroizing::new(key.serialize_der());
    kagi_ca::x509::pem("PRIVATE KEY", &der)
        .map(Zeroizing::new)
        .map_err(|e| TlsError::Issue(e.to_string()))
}
