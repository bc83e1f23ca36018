//! `kagi verify`: check a raw or CMS signature (Sigstore bundles: `verify_sigstore`) on the client, against kagi's trust root (the
//! root CA certificate) and the transparency log, without trusting the service's word: the
//! signature, the certificate chain, the log checkpoint's signature and the inclusion proof are
//! all checked here.

use anyhow::{bail, Context, Result};
use base64::Engine;
use der::{Decode, Encode};
use hsm_core::{tlog, Algorithm, DigestAlg, RsaPadding};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use x509_cert::certificate::Certificate;

use crate::cli::VerifyArgs;
use crate::client::Client;

macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const ID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const ID_MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
const ID_SIGNING_TIME: &str = "1.2.840.113549.1.9.5";
const EKU_CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";

/// Where `kagi sign` keeps a signature's log proof: beside it, `<signature>.tlog.json`.
pub fn sidecar(signature: &Path) -> PathBuf {
    let mut s = signature.as_os_str().to_owned();
    s.push(".tlog.json");
    PathBuf::from(s)
}

/// The entry, a checkpoint that includes it, and the inclusion proof, as JSON.
pub fn fetch_log_proof(client: &Client, index: i64) -> Result<String> {
    let entry: Value = client.get_json(&format!("/log/entries/{index}"))?;
    let note = client.get_text("/log/checkpoint")?;
    let (_, size, _) = tlog::unverified_text(&note)
        .and_then(tlog::parse_checkpoint_body)
        .context("the service's checkpoint does not parse")?;
    let proof: Value =
        client.get_json(&format!("/log/proof/inclusion?index={index}&size={size}"))?;
    Ok(serde_json::to_string_pretty(&json!({
        "index": index,
        "entry": entry.get("body"),
        "checkpoint": note,
        "proof": proof.get("hashes"),
    }))?)
}

fn digest_of(v: &[u8], alg: DigestAlg) -> Vec<u8> {
    alg.hash(v)
}

pub fn run(args: &VerifyArgs) -> Result<()> {
    let client = Client::from_env_without_token()?;
    let sig = std::fs::read(&args.signature)
        .with_context(|| format!("cannot read {}", args.signature.display()))?;
    let format = match args.format.as_deref() {
        Some(f) => f.to_string(),
        None if looks_like_cms(&sig) => "cms".into(),
        None if crate::verify_sigstore::looks_like_bundle(&sig) => "sigstore".into(),
        None => "raw".into(),
    };
    if format == "sigstore" {
        // A bundle carries its own log proof.
        crate::verify_sigstore::verify(&client, args, &sig)?;
        say!("Verified OK");
        return Ok(());
    }
    // (the digest the key signed, the signer's SPKI) for the log check.
    let (signed_digest, spki) = match format.as_str() {
        "cms" => verify_cms(args, &sig)?,
        "raw" => verify_raw(args, &sig)?,
        other => bail!("unknown format '{other}': use raw, cms or sigstore"),
    };
    let proof_path = sidecar(&args.signature);
    if proof_path.exists() {
        verify_log(&client, args, &proof_path, &signed_digest, &spki)?;
    } else if args.require_log {
        bail!(
            "no transparency-log proof beside the signature ({} is missing)",
            proof_path.display()
        );
    } else {
        eprintln!(
            "note: no {} beside the signature: the log inclusion was not checked",
            proof_path.display()
        );
    }
    say!("Verified OK");
    Ok(())
}

fn looks_like_cms(sig: &[u8]) -> bool {
    cms::content_info::ContentInfo::from_der(sig)
        .map(|ci| ci.content_type.to_string() == ID_SIGNED_DATA)
        .unwrap_or(false)
}

fn verify_raw(args: &VerifyArgs, sig: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let pem = std::fs::read_to_string(args.public_key.as_ref().context(
        "a raw signature needs the signer's public key: --public-key FILE (from 'kagi key public NAME')",
    )?)
    .context("cannot read the public key")?;
    let (label, spki) = der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|e| anyhow::anyhow!("the public key is not PEM: {e}"))?;
    if label != "PUBLIC KEY" {
        bail!("the public key file holds a '{label}', not a 'PUBLIC KEY'");
    }
    let alg = key_alg(&spki)?;
    let digest_alg = match &args.digest {
        Some(d) => DigestAlg::from_str(d)?,
        None => DigestAlg::Sha256,
    };
    let digest = crate::digest_file::digest_file(&args.file, digest_alg)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let padding = match &args.padding {
        Some(p) => RsaPadding::from_str(p)?,
        None => RsaPadding::Pkcs1v15,
    };
    if !hsm_core::verify_digest(alg, &spki, digest_alg, &digest, padding, sig)? {
        bail!(
            "the signature does NOT verify for {} with this key",
            args.file.display()
        );
    }
    say!("signature OK ({alg}, {})", digest_alg.as_str());
    Ok((digest, spki))
}

pub(crate) fn key_alg(spki_der: &[u8]) -> Result<Algorithm> {
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(spki_der)
        .context("the public key does not parse")?;
    ca::csr::key_type(&spki).map_err(|e| anyhow::anyhow!("{e}"))
}

fn digest_alg_of(oid: &const_oid::ObjectIdentifier) -> Result<DigestAlg> {
    ca::algorithms::digest_from_oid(oid)
        .with_context(|| format!("digest algorithm {oid} is not one kagi uses (SHA-256/384/512)"))
}

/// The digest algorithm a certificate signature algorithm names.
fn sig_digest(oid: &const_oid::ObjectIdentifier) -> Result<DigestAlg> {
    ca::algorithms::scheme(oid)
        .map(|(_, d)| d)
        .with_context(|| format!("signature algorithm {oid} is not one kagi issues with"))
}

fn spki_der(cert: &Certificate) -> Result<Vec<u8>> {
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
    Ok(hsm_core::verify_digest(
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
pub(crate) fn log_key(client: &Client, args: &VerifyArgs) -> Result<(String, [u8; 32])> {
    let vkey = match &args.log_key {
        Some(k) => k.clone(),
        None => {
            let k = client.get_text("/log/key")?.trim().to_string();
            eprintln!("log key fetched from the service (pin it with --log-key '{k}')");
            k
        }
    };
    Ok(tlog::parse_verifier_key(&vkey)?)
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

fn verify_cms(args: &VerifyArgs, sig: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    use cms::signed_data::{SignedData, SignerIdentifier};
    let ci = cms::content_info::ContentInfo::from_der(sig).context("not a DER CMS ContentInfo")?;
    let sd: SignedData = ci.content.decode_as().context("not a CMS SignedData")?;
    let si = sd
        .signer_infos
        .0
        .iter()
        .next()
        .context("the SignedData has no signer")?;
    let digest_alg = digest_alg_of(&si.digest_alg.oid)?;
    let certs: Vec<Certificate> = sd
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            cms::cert::CertificateChoices::Certificate(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let SignerIdentifier::IssuerAndSerialNumber(isn) = &si.sid else {
        bail!("the signer is named by key identifier; kagi names it by issuer and serial");
    };
    let signer = certs
        .iter()
        .find(|c| {
            c.tbs_certificate().serial_number() == &isn.serial_number
                && c.tbs_certificate().issuer() == &isn.issuer
        })
        .context("the signer's certificate is not in the SignedData")?;

    // 1. The content: its digest is the messageDigest attribute.
    let attrs = si
        .signed_attrs
        .as_ref()
        .context("the SignerInfo has no signed attributes")?;
    let attr_value = |oid: &str| {
        attrs
            .iter()
            .find(|a| a.oid.to_string() == oid)
            .and_then(|a| a.values.iter().next().cloned())
    };
    let md = attr_value(ID_MESSAGE_DIGEST)
        .context("no messageDigest attribute")?
        .decode_as::<der::asn1::OctetString>()
        .context("the messageDigest is not an OCTET STRING")?;
    let file_digest = crate::digest_file::digest_file(&args.file, digest_alg)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if md.as_bytes() != file_digest.as_slice() {
        bail!(
            "{} does NOT match the signature (its digest differs from the signed messageDigest)",
            args.file.display()
        );
    }

    // 2. The signature over the signed attributes, with the signer certificate's key.
    let attrs_der = attrs.to_der()?;
    let attrs_digest = digest_of(&attrs_der, digest_alg);
    let signer_spki = spki_der(signer)?;
    let alg = key_alg(&signer_spki)?;
    if !hsm_core::verify_digest(
        alg,
        &signer_spki,
        digest_alg,
        &attrs_digest,
        RsaPadding::Pkcs1v15,
        si.signature.as_bytes(),
    )? {
        bail!("the CMS signature does NOT verify with its signer certificate");
    }

    // 3. The chain, up to kagi's root.
    let root = chain_to_root(args, signer, &certs)?;

    // 4. The signer certificate allows code signing and was valid when it signed.
    if !allows_code_signing(signer)? {
        bail!("the signer certificate does not allow code signing (no codeSigning EKU)");
    }
    let v = signer.tbs_certificate().validity();
    let signed_at = attr_value(ID_SIGNING_TIME)
        .and_then(|a| a.decode_as::<x509_cert::time::Time>().ok())
        .map(|t| unix(&t))
        .context("no signingTime attribute")?;
    if signed_at < unix(&v.not_before) || signed_at > unix(&v.not_after) {
        bail!("the signer certificate was not valid at the signing time");
    }
    say!(
        "signature OK (CMS, {alg}, {}), signer '{}', chain to root '{}'",
        digest_alg.as_str(),
        signer.tbs_certificate().subject(),
        root.tbs_certificate().subject()
    );
    Ok((attrs_digest, signer_spki))
}

fn verify_log(
    client: &Client,
    args: &VerifyArgs,
    path: &Path,
    signed_digest: &[u8],
    spki: &[u8],
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let p: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let index = p["index"].as_u64().context("the log proof has no index")?;
    let entry = p["entry"].as_str().context("the log proof has no entry")?;
    let note = p["checkpoint"]
        .as_str()
        .context("the log proof has no checkpoint")?;
    let hashes: Vec<[u8; 32]> = p["proof"]
        .as_array()
        .context("the log proof has no proof")?
        .iter()
        .map(|h| {
            B64.decode(h.as_str().unwrap_or(""))
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("a proof hash is not 32 bytes of base64")
        })
        .collect::<Result<_>>()?;
    let (name, key) = log_key(client, args)?;
    let (_, size, root) = tlog::open_checkpoint(note, &name, &key)
        .context("the log checkpoint's signature does not verify")?;
    if !tlog::verify_inclusion(
        &tlog::entry_hash(entry.as_bytes()),
        index,
        size,
        &hashes,
        &root,
    ) {
        bail!("the log entry is NOT included in the signed checkpoint");
    }
    let e: Value = serde_json::from_str(entry).context("the log entry is not JSON")?;
    let spki_hash =
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki).as_ref());
    if e["digest"].as_str() != Some(hex::encode(signed_digest).as_str())
        || e["public_key_sha256"].as_str() != Some(spki_hash.as_str())
    {
        bail!("the log entry is for another signature (its digest or key differs)");
    }
    say!("transparency log OK: entry {index} is in the signed checkpoint of {size} entries");
    Ok(())
}
