//! `kagi verify` for Sigstore bundles made by kagi: the same checks a Sigstore client makes,
//! against kagi's root CA certificate and log key, on the client. The expected identity and
//! issuer are required (`--cert-identity` or `--cert-identity-regexp`, `--cert-oidc-issuer`), as
//! cosign and sigstore-python require them. The certificate chains to the
//! root (intermediates from the service's trusted root are only candidates), allows code
//! signing, names the expected identity and issuer, and carries an SCT that verifies with the
//! trusted root's CT key; the signature covers the file's SHA-256; the log entry is the
//! hashedrekord of exactly this signature, certificate and digest, is included in a checkpoint
//! signed by the log key, and its signed entry timestamp verifies; the chain was valid when the
//! entry was integrated, and its intermediates are not revoked (see [`crate::revocation`]).
//!
//! The CT key comes from the trusted root (`--trust-root FILE`, else fetched from the service:
//! keep the file to pin that key, as `--ca-file` and `--log-key` pin the others).

use anyhow::{bail, Context, Result};
use base64::Engine;
use der::{Decode, Encode};
use kagi_crypto::{DigestAlg, RsaPadding};
use kagi_tlog::{HashedRekord, PromiseBody};
use serde_json::Value;
use x509_cert::certificate::Certificate;
use x509_cert::ext::pkix::name::GeneralName;

use crate::args::VerifyArgs;
use crate::trust::{allows_code_signing, chain_to_root, check_issued_by, key_alg, log_key};
use crate::{say, Service};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const ID_FULCIO_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
const ID_FULCIO_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";

/// A bundle is JSON whose mediaType names the Sigstore bundle format.
pub fn looks_like_bundle(sig: &[u8]) -> bool {
    serde_json::from_slice::<Value>(sig)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(is_bundle_type))
        .unwrap_or(false)
}

fn is_bundle_type(t: &str) -> bool {
    t.starts_with("application/vnd.dev.sigstore.bundle")
}

fn b64(v: &Value, what: &str) -> Result<Vec<u8>> {
    B64.decode(
        v.as_str()
            .with_context(|| format!("the bundle has no {what}"))?,
    )
    .with_context(|| format!("the bundle's {what} is not base64"))
}

fn int(v: &Value, what: &str) -> Result<u64> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
        .with_context(|| format!("the bundle's {what} is not an integer"))
}

/// Whom the bundle must be from. Required, as cosign and sigstore-python require it: a bundle
/// that verifies says only that *someone* kagi certified signed the file.
struct Expected {
    identity: Identity,
    issuer: String,
}

enum Identity {
    Exact(String),
    Matches(regex::Regex),
}

impl Expected {
    fn from_args(args: &VerifyArgs) -> Result<Expected> {
        let identity = match (&args.cert_identity, &args.cert_identity_regexp) {
            (Some(id), _) => Identity::Exact(id.clone()),
            (None, Some(re)) => {
                Identity::Matches(regex::Regex::new(&format!("^(?:{re})$")).with_context(|| {
                    format!("--cert-identity-regexp '{re}' is not a valid regular expression")
                })?)
            }
            (None, None) => bail!(
                "a Sigstore bundle is verified against the identity that signed it: pass \
                 --cert-identity URI (the identity 'kagi sign --format sigstore' printed, e.g. \
                 <public URL>/identities/<partition>/<name>) or --cert-identity-regexp, and \
                 --cert-oidc-issuer URL (kagi's public URL), as cosign and sigstore-python require"
            ),
        };
        let issuer = args.cert_oidc_issuer.clone().context(
            "a Sigstore bundle is verified against its certificate's issuer too: pass \
             --cert-oidc-issuer URL (kagi's public URL, which 'kagi sign --format sigstore' prints)",
        )?;
        Ok(Expected { identity, issuer })
    }

    fn check(&self, sans: &[String], issuer: Option<&str>) -> Result<()> {
        match &self.identity {
            Identity::Exact(want) if !sans.iter().any(|s| s == want) => {
                bail!("the certificate names {sans:?}, not '{want}' (--cert-identity)")
            }
            Identity::Matches(re) if !sans.iter().any(|s| re.is_match(s)) => bail!(
                "the certificate names {sans:?}, none matching '{}' (--cert-identity-regexp)",
                re.as_str()
            ),
            _ => {}
        }
        if issuer != Some(self.issuer.as_str()) {
            bail!(
                "the certificate's issuer is {}, not '{}' (--cert-oidc-issuer)",
                issuer.unwrap_or("(none)"),
                self.issuer
            );
        }
        Ok(())
    }
}

/// The certificate's URI subjectAltNames and its Fulcio issuer.
fn identity(cert: &Certificate) -> Result<(Vec<String>, Option<String>)> {
    let sans = cert
        .tbs_certificate()
        .get_extension::<x509_cert::ext::pkix::SubjectAltName>()?
        .map(|(_, san)| {
            san.0
                .iter()
                .filter_map(|n| match n {
                    GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let exts = cert.tbs_certificate().extensions().map(|e| e.as_slice());
    let ext = |oid: &str| {
        exts.unwrap_or(&[])
            .iter()
            .find(|e| e.extn_id.to_string() == oid)
            .map(|e| e.extn_value.as_bytes().to_vec())
    };
    let issuer = match ext(ID_FULCIO_ISSUER_V2) {
        Some(v) => Some(
            der::asn1::Utf8StringRef::from_der(&v)
                .context("the issuer extension is not a UTF8String")?
                .to_string(),
        ),
        None => ext(ID_FULCIO_ISSUER_V1).map(|v| String::from_utf8_lossy(&v).into_owned()),
    };
    Ok((sans, issuer))
}

/// The certificate's embedded SCT verifies with a CT key of the trusted root, over the
/// precertificate rebuilt from the certificate and its issuer's key.
fn check_sct(
    cert: &Certificate,
    cert_der: &[u8],
    candidates: &[Certificate],
    root: &Certificate,
    trusted_root: &Value,
) -> Result<()> {
    let issuer = candidates
        .iter()
        .chain(std::iter::once(root))
        .find(|c| check_issued_by(cert, c).unwrap_or(false))
        .context("the certificate's issuer is not in the trusted root")?;
    let issuer_spki = issuer
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()?;
    let precert = kagi_x509::sct::precert_tbs(cert_der).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ct_keys: Vec<(Vec<u8>, Vec<u8>)> = trusted_root["ctlogs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some((
                B64.decode(l["logId"]["keyId"].as_str()?).ok()?,
                B64.decode(l["publicKey"]["rawBytes"].as_str()?).ok()?,
            ))
        })
        .collect();
    let scts = kagi_x509::sct::embedded_scts(cert_der).map_err(|e| anyhow::anyhow!("{e}"))?;
    if scts.is_empty() {
        bail!("the bundle's certificate carries no SCT");
    }
    for sct in &scts {
        let Some((_, spki)) = ct_keys.iter().find(|(id, _)| id[..] == sct.log_id[..]) else {
            continue;
        };
        // sha256(4) with ecdsa(3): what kagi's CT signer makes and Sigstore clients accept.
        if (sct.hash, sct.sig_alg) != (4, 3) {
            continue;
        }
        let data = kagi_x509::sct::precert_signed_data_with(
            &issuer_spki,
            &precert,
            sct.timestamp_ms,
            &sct.extensions,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        if kagi_crypto::verify_digest(
            key_alg(spki)?,
            spki,
            DigestAlg::Sha256,
            &DigestAlg::Sha256.hash(&data),
            RsaPadding::Pkcs1v15,
            &sct.signature,
        )? {
            return Ok(());
        }
    }
    bail!("no SCT in the bundle's certificate verifies with a CT key of the trusted root")
}

/// Verify a Sigstore bundle (`sig`, JSON) for `args.file`.
pub fn verify(client: &dyn Service, args: &VerifyArgs, sig: &[u8]) -> Result<()> {
    let want = Expected::from_args(args)?;
    let bundle: Value = serde_json::from_slice(sig).context("the bundle is not JSON")?;
    let media = bundle["mediaType"].as_str().unwrap_or("");
    if !is_bundle_type(media) {
        bail!("not a Sigstore bundle (mediaType '{media}')");
    }
    let vm = &bundle["verificationMaterial"];
    let cert_der = b64(&vm["certificate"]["rawBytes"], "certificate")?;
    let cert =
        Certificate::from_der(&cert_der).context("the bundle's certificate does not parse")?;
    let spki = cert.tbs_certificate().subject_public_key_info().to_der()?;
    let ms = &bundle["messageSignature"];
    let signature = b64(&ms["signature"], "messageSignature.signature")?;

    // 1. The file: its SHA-256 is what was signed.
    let digest = crate::digest_file::digest_file(&args.file, DigestAlg::Sha256)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if !ms["messageDigest"].is_null()
        && b64(&ms["messageDigest"]["digest"], "messageDigest")? != digest
    {
        bail!(
            "{} does NOT match the bundle (its SHA-256 differs from the bundle's messageDigest)",
            args.file.display()
        );
    }
    let alg = key_alg(&spki)?;
    if !kagi_crypto::verify_digest(
        alg,
        &spki,
        DigestAlg::Sha256,
        &digest,
        RsaPadding::Pkcs1v15,
        &signature,
    )? {
        bail!(
            "the signature does NOT verify for {} with the bundle's certificate",
            args.file.display()
        );
    }

    // 2. The certificate: chains to kagi's root, allows code signing, names whom we expect.
    let trusted_root: Value = match &args.trust_root {
        Some(p) => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{} is not JSON", p.display()))?,
        None => client.get_json("/api/v1/sigstore/trusted_root.json")?,
    };
    // A client trust config holds the trusted root one level down.
    let trusted_root = match trusted_root.get("trustedRoot") {
        Some(t) => t.clone(),
        None => trusted_root,
    };
    let candidates: Vec<Certificate> = trusted_root["certificateAuthorities"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|ca| {
            ca["certChain"]["certificates"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| {
            let der = B64.decode(c["rawBytes"].as_str()?).ok()?;
            Certificate::from_der(&der).ok()
        })
        .collect();
    // Chained at the log's integration time, checked below against the signed entry
    // timestamp: the certificate lives minutes, and that time is when the signature was made.
    let integrated = int(&vm["tlogEntries"][0]["integratedTime"], "integratedTime")?;
    let integrated_at =
        i64::try_from(integrated).context("the bundle's integratedTime is too large")?;
    let path = chain_to_root(
        args,
        &cert,
        &candidates,
        integrated_at,
        "when the transparency log integrated the entry",
    )?;
    let root = path.last().context("an empty certificate path")?.clone();
    if !allows_code_signing(&cert)? {
        bail!("the bundle's certificate does not allow code signing (no codeSigning EKU)");
    }
    check_sct(&cert, &cert_der, &candidates, &root, &trusted_root)?;
    let (sans, issuer) = identity(&cert)?;
    want.check(&sans, issuer.as_deref())?;

    // 3. The log entry: this signature's hashedrekord, in a checkpoint signed by the log key.
    let entries = vm["tlogEntries"]
        .as_array()
        .context("the bundle has no tlogEntries")?;
    let [e] = entries.as_slice() else {
        bail!(
            "the bundle has {} log entries; kagi makes exactly one",
            entries.len()
        );
    };
    let body = b64(&e["canonicalizedBody"], "canonicalizedBody")?;
    let rekord = HashedRekord::parse(&body)?;
    let (_, entry_cert) = der::pem::decode_vec(rekord.certificate_pem.as_bytes())
        .map_err(|_| anyhow::anyhow!("the log entry's certificate is not PEM"))?;
    if rekord.digest_sha256 != digest || rekord.signature != signature || entry_cert != cert_der {
        bail!("the log entry is for another signature (its digest, signature or certificate differs from the bundle's)");
    }
    let (name, key) = log_key(client, args)?;
    let proof = &e["inclusionProof"];
    let note = proof["checkpoint"]["envelope"]
        .as_str()
        .context("the bundle has no checkpoint")?;
    let (_, size, root_hash) = kagi_tlog::open_checkpoint(note, &name, &key)
        .context("the log checkpoint's signature does not verify")?;
    crate::trust::check_witnesses(note, &args.witnesses, "the bundle's checkpoint", true)?;
    let index = int(&proof["logIndex"], "inclusionProof.logIndex")?;
    if int(&e["logIndex"], "logIndex")? != index || int(&proof["treeSize"], "treeSize")? != size {
        bail!("the log entry's index or tree size disagrees with its proof or checkpoint");
    }
    let hashes: Vec<[u8; 32]> = proof["hashes"]
        .as_array()
        .context("the bundle has no proof hashes")?
        .iter()
        .map(|h| {
            b64(h, "proof hash")?
                .try_into()
                .map_err(|_| anyhow::anyhow!("a proof hash is not 32 bytes"))
        })
        .collect::<Result<_>>()?;
    if !kagi_tlog::verify_inclusion(
        &kagi_tlog::entry_hash(&body),
        index,
        size,
        &hashes,
        &root_hash,
    ) {
        bail!("the log entry is NOT included in the signed checkpoint");
    }

    // 4. The signed entry timestamp: the time the chain was checked at is the log's word.
    let integrated = int(&e["integratedTime"], "integratedTime")?;
    let log_id = b64(&e["logId"]["keyId"], "logId")?;
    let set = b64(
        &e["inclusionPromise"]["signedEntryTimestamp"],
        "signedEntryTimestamp",
    )?;
    let promised = PromiseBody {
        body: &body,
        integrated_time: i64::try_from(integrated)
            .context("the bundle's integratedTime is too large")?,
        log_id: &log_id,
        log_index: i64::try_from(index).context("the bundle's logIndex is too large")?,
    };
    if !promised.verify(&key, &set) {
        bail!("the signed entry timestamp does NOT verify with the log key");
    }
    say!(
        "signature OK (Sigstore bundle, {alg}, sha256), identity {}, issuer {}, SCT OK, chain to root '{}'",
        sans.join(", "),
        issuer.as_deref().unwrap_or("(none)"),
        root.tbs_certificate().subject()
    );
    say!(
        "transparency log OK: entry {index} is in the signed checkpoint of {size} entries, integrated at {integrated}"
    );
    // 5. The intermediates are not revoked (the leaf lives minutes and, like Fulcio's, names
    // no OCSP responder or CRL); the log's signed time is when the signature was made.
    crate::revocation::check_path(args, &path, Some(integrated_at), "the bundle's chain", true)?;
    Ok(())
}
