//! What a verifier trusts and how it walks to it: kagi's root certificate (`--ca-file`), the
//! log's key (`--log-key`), and the public-key checks between a certificate and its issuer.
//! Shared by the raw/CMS and the Sigstore checks.

use anyhow::{bail, Context, Result};
use der::{Decode, Encode};
use kagi_crypto::{Algorithm, DigestAlg, RsaPadding};
use std::path::PathBuf;
use x509_cert::certificate::Certificate;

use crate::args::VerifyArgs;
use crate::Service;

const EKU_CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";

pub(crate) fn key_alg(spki_der: &[u8]) -> Result<Algorithm> {
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(spki_der)
        .context("the public key does not parse")?;
    kagi_x509::key_type(&spki).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The digest algorithm a certificate signature algorithm names.
fn sig_digest(oid: &const_oid::ObjectIdentifier) -> Result<DigestAlg> {
    kagi_x509::algorithms::scheme(oid)
        .map(|(_, d)| d)
        .with_context(|| format!("signature algorithm {oid} is not one kagi issues with"))
}

pub(crate) fn spki_der(cert: &Certificate) -> Result<Vec<u8>> {
    Ok(cert.tbs_certificate().subject_public_key_info().to_der()?)
}

/// `issuer` signed `cert`.
pub(crate) fn check_issued_by(cert: &Certificate, issuer: &Certificate) -> Result<bool> {
    if cert.tbs_certificate().issuer().to_der()? != issuer.tbs_certificate().subject().to_der()? {
        return Ok(false);
    }
    let d = sig_digest(&cert.signature_algorithm().oid)?;
    let tbs = cert.tbs_certificate().to_der()?;
    let issuer_spki = spki_der(issuer)?;
    let sig = cert
        .signature()
        .as_bytes()
        .context("a certificate signature is not whole bytes")?;
    Ok(kagi_crypto::verify_digest(
        key_alg(&issuer_spki)?,
        &issuer_spki,
        d,
        &d.hash(&tbs),
        RsaPadding::Pkcs1v15,
        sig,
    )?)
}

/// The transparency log's key: pinned with `--log-key`, else fetched from the service (and
/// the user told how to pin it).
pub(crate) fn log_key(client: &dyn Service, args: &VerifyArgs) -> Result<(String, [u8; 32])> {
    let vkey = match &args.log_key {
        Some(k) => k.clone(),
        None => {
            let k = client.get_text("/log/key")?.trim().to_string();
            eprintln!("log key fetched from the service (pin it with --log-key '{k}')");
            k
        }
    };
    Ok(kagi_tlog::parse_verifier_key(&vkey)?)
}

/// The certificate's extendedKeyUsage includes codeSigning.
pub(crate) fn allows_code_signing(cert: &Certificate) -> Result<bool> {
    Ok(cert
        .tbs_certificate()
        .get_extension::<x509_cert::ext::pkix::ExtendedKeyUsage>()?
        .map(|(_, e)| e.0.iter().any(|o| o.to_string() == EKU_CODE_SIGNING))
        .unwrap_or(false))
}

pub(crate) fn unix(t: &x509_cert::time::Time) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

/// Walk from `leaf` through `certs` (untrusted) to kagi's root (`--ca-file`, default
/// ./kagi-data/tls-ca.pem), checking each signature; the root is the only trust anchor.
pub(crate) fn chain_to_root(
    args: &VerifyArgs,
    leaf: &Certificate,
    certs: &[Certificate],
) -> Result<Certificate> {
    let root_path = args
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("kagi-data/tls-ca.pem"));
    let root_pem = std::fs::read(&root_path).with_context(|| {
        format!(
            "cannot read the root certificate {} (--ca-file)",
            root_path.display()
        )
    })?;
    let root = Certificate::load_pem_chain(&root_pem)
        .ok()
        .and_then(|v| v.into_iter().next())
        .context("the root file holds no PEM certificate")?;
    let mut cur = leaf.clone();
    let mut depth = 0;
    loop {
        if check_issued_by(&cur, &root)? {
            return Ok(root);
        }
        let issuer = certs
            .iter()
            .find(|c| check_issued_by(&cur, c).unwrap_or(false))
            .with_context(|| {
                format!(
                    "no certificate in the signature chains '{}' to the root",
                    cur.tbs_certificate().subject()
                )
            })?;
        cur = issuer.clone();
        depth += 1;
        if depth > 4 {
            bail!("the certificate chain is too long");
        }
    }
}
