//! What a verifier trusts and how it walks to it: kagi's code-signing root certificate
//! (`--ca-file`), the log's key (`--log-key`), the witnesses whose cosignatures a checkpoint
//! must carry (`--witness`, `--witness-quorum`), and the public-key checks between a
//! certificate and its issuer.
//! Shared by the raw/CMS and the Sigstore checks.

use anyhow::{bail, Context, Result};
use der::{Decode, Encode};
use kagi_crypto::{Algorithm, DigestAlg, RsaPadding};
use std::path::{Path, PathBuf};
use x509_cert::certificate::Certificate;

use crate::args::{VerifyArgs, WitnessArgs};
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
    let sig = cert
        .signature()
        .as_bytes()
        .context("a certificate signature is not whole bytes")?;
    signed_by(
        issuer,
        &cert.signature_algorithm().oid,
        &cert.tbs_certificate().to_der()?,
        sig,
    )
}

/// `signer`'s key made `sig` over `tbs` with signature algorithm `alg` (a certificate's, a
/// CRL's, an OCSP response's).
pub(crate) fn signed_by(
    signer: &Certificate,
    alg: &const_oid::ObjectIdentifier,
    tbs: &[u8],
    sig: &[u8],
) -> Result<bool> {
    let d = sig_digest(alg)?;
    let spki = spki_der(signer)?;
    Ok(kagi_crypto::verify_digest(
        key_alg(&spki)?,
        &spki,
        d,
        &d.hash(tbs),
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

/// Check that checkpoint `note` (whose log signature the caller has verified) is cosigned by
/// a quorum of the `--witness` keys, and say so; `what` names the checkpoint in messages
/// ("the proof's checkpoint"). Without `--witness` nothing is checked; if the checkpoint
/// carries lines besides the log's signature, the user is told how to check them (on
/// stderr). `say`: print the result on stdout (not in `--output json` mode). Returns the
/// witnesses that cosigned.
pub(crate) fn check_witnesses(
    note: &str,
    w: &WitnessArgs,
    what: &str,
    say: bool,
) -> Result<Vec<String>> {
    if w.witness.is_empty() {
        // Lines by keys named otherwise than the log (its origin): witnesses, most likely.
        let others = note.rsplit_once("\n\n").map_or(0, |(text, sigs)| {
            let origin = text.lines().next().unwrap_or_default();
            sigs.lines()
                .filter(|l| l.split(' ').nth(1) != Some(origin))
                .count()
        });
        if others > 0 {
            eprintln!(
                "note: {what} carries {others} signature line(s) by keys other than the log's (witness cosignatures?), not checked: pass --witness VKEY for each witness you trust (and --witness-quorum K) to require them"
            );
        }
        return Ok(Vec::new());
    }
    let quorum = w.witness_quorum.unwrap_or(w.witness.len());
    let signed = kagi_tlog::check_cosignature_quorum(note, &w.witness, quorum)
        .with_context(|| format!("{what} is not witnessed as required"))?;
    let names: Vec<String> = signed.into_iter().map(|c| c.name).collect();
    if say {
        crate::say!(
            "witnesses OK: {what} is cosigned by {} ({} of {} given, {quorum} needed)",
            names.join(", "),
            names.len(),
            w.witness.len()
        );
    }
    Ok(names)
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

/// Where `kagi verify` looks for the code-signing root when `--ca-file` is not given: a
/// development `kagi serve` writes its signing CA's root there. Never the TLS CA (`tls-ca.pem`):
/// on an instance made with `kagi init` that is another, unrelated root.
pub(crate) const DEFAULT_ROOT: &str = "kagi-data/ca-root.pem";

/// kagi's code-signing root certificate: `--ca-file`, else [`DEFAULT_ROOT`] when it exists;
/// with neither, a refusal that says where to get one rather than a guess.
pub(crate) fn root_certificate(args: &VerifyArgs) -> Result<Certificate> {
    let path = match &args.ca_file {
        Some(p) => p.clone(),
        None if Path::new(DEFAULT_ROOT).is_file() => PathBuf::from(DEFAULT_ROOT),
        None => bail!(
            "no trust root: kagi verify does not guess which root to trust. Pass --ca-file with \
             kagi's code-signing root CA certificate: an operator writes it with 'kagi ca show \
             <root CA> -o root.pem' (the root of the CA that certifies signing keys; 'root' on a \
             development instance), or fetch <public URL>/ca/<root CA>.crt and check its SHA-256 \
             fingerprint with the operator. kagi-data/tls-ca.pem is the TLS CA, not this root"
        ),
    };
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read the root certificate {} (--ca-file): pass kagi's code-signing root CA \
             certificate ('kagi ca show <root CA> -o root.pem')",
            path.display()
        )
    })?;
    Certificate::load_pem_chain(&bytes)
        .ok()
        .and_then(|v| v.into_iter().next())
        .or_else(|| Certificate::from_der(&bytes).ok())
        .with_context(|| {
            format!(
                "{} holds no certificate (PEM or DER): pass kagi's root CA certificate (--ca-file)",
                path.display()
            )
        })
}

/// The certificate is a CA (basicConstraints cA), so it may issue the one below it.
fn is_ca(cert: &Certificate) -> Result<bool> {
    Ok(cert
        .tbs_certificate()
        .get_extension::<x509_cert::ext::pkix::BasicConstraints>()?
        .is_some_and(|(_, bc)| bc.ca))
}

/// `cert` was valid at `at` (unix seconds).
pub(crate) fn valid_at(cert: &Certificate, at: i64) -> bool {
    let v = cert.tbs_certificate().validity();
    at >= unix(&v.not_before) && at <= unix(&v.not_after)
}

pub(crate) fn subject(cert: &Certificate) -> String {
    cert.tbs_certificate().subject().to_string()
}

/// Walk from `leaf` through `certs` (untrusted) to kagi's root ([`root_certificate`]),
/// checking each signature, that each issuer is a CA, and that every certificate of the path
/// was valid at `at` (the time the signature was made, when a timestamp or the log vouches for
/// it; else now), which `at_what` names in the refusal. The root is the only trust anchor.
/// Returns the path, leaf first, root last.
pub(crate) fn chain_to_root(
    args: &VerifyArgs,
    leaf: &Certificate,
    certs: &[Certificate],
    at: i64,
    at_what: &str,
) -> Result<Vec<Certificate>> {
    let root = root_certificate(args)?;
    let mut path = vec![leaf.clone()];
    loop {
        let cur = path.last().context("an empty certificate path")?.clone();
        if check_issued_by(&cur, &root)? {
            path.push(root);
            break;
        }
        let issuer = certs
            .iter()
            .find(|c| check_issued_by(&cur, c).unwrap_or(false))
            .with_context(|| {
                format!(
                    "no certificate in the signature chains '{}' to the root '{}' (--ca-file): \
                     it was issued under another root, or --ca-file is not kagi's code-signing root",
                    subject(&cur),
                    subject(&root)
                )
            })?;
        path.push(issuer.clone());
        if path.len() > 5 {
            bail!("the certificate chain is too long");
        }
    }
    for (i, cert) in path.iter().enumerate() {
        if i > 0 && !is_ca(cert)? {
            bail!(
                "'{}' issued a certificate of the chain but is not a CA (no basicConstraints cA)",
                subject(cert)
            );
        }
        if i + 1 < path.len() && !valid_at(cert, at) {
            let v = cert.tbs_certificate().validity();
            bail!(
                "the certificate '{}' was not valid at {} ({at_what}; it is valid from {} to {})",
                subject(cert),
                time_text(at),
                v.not_before,
                v.not_after
            );
        }
    }
    Ok(path)
}

/// Unix seconds as RFC 3339 UTC, for messages.
pub(crate) fn time_text(unix: i64) -> String {
    u64::try_from(unix)
        .ok()
        .and_then(|s| {
            der::asn1::GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(s)).ok()
        })
        .map(|t| t.to_date_time().to_string())
        .unwrap_or_else(|| unix.to_string())
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
