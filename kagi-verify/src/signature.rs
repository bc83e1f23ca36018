//! `kagi verify` for raw and CMS signatures (Sigstore bundles: [`crate::sigstore`]), against
//! kagi's trust root (the root CA certificate) and the transparency log, without trusting the
//! service's word: the signature, the certificate chain, the log checkpoint's signature and the
//! inclusion proof are all checked here.

use anyhow::{bail, Context, Result};
use base64::Engine;
use der::{Decode, Encode};
use kagi_crypto::{DigestAlg, RsaPadding};
use kagi_tlog::SignatureEntry;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use x509_cert::certificate::Certificate;

use crate::args::VerifyArgs;
use crate::trust::{allows_code_signing, chain_to_root, key_alg, log_key, now, spki_der};
use crate::{say, Service};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const ID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const ID_MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";

/// Where `kagi sign` keeps a signature's log proof: beside it, `<signature>.tlog.json`.
pub fn sidecar(signature: &Path) -> PathBuf {
    let mut s = signature.as_os_str().to_owned();
    s.push(".tlog.json");
    PathBuf::from(s)
}

/// The entry, a checkpoint that includes it, and the inclusion proof, as JSON.
pub fn fetch_log_proof(client: &dyn Service, index: i64) -> Result<String> {
    let entry = client.get_json(&format!("/log/entries/{index}"))?;
    let note = client.get_text("/log/checkpoint")?;
    let (_, size, _) = kagi_tlog::unverified_text(&note)
        .and_then(kagi_tlog::parse_checkpoint_body)
        .context("the service's checkpoint does not parse")?;
    let proof = client.get_json(&format!("/log/proof/inclusion?index={index}&size={size}"))?;
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

/// `kagi verify`: check `args.signature` for `args.file`, printing what was checked.
pub fn run(client: &dyn Service, args: &VerifyArgs) -> Result<()> {
    let sig = std::fs::read(&args.signature)
        .with_context(|| format!("cannot read {}", args.signature.display()))?;
    let format = match args.format.as_deref() {
        Some(f) => f.to_string(),
        None if looks_like_cms(&sig) => "cms".into(),
        None if crate::sigstore::looks_like_bundle(&sig) => "sigstore".into(),
        None => "raw".into(),
    };
    if format == "sigstore" {
        // A bundle carries its own log proof.
        crate::sigstore::verify(client, args, &sig)?;
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
        verify_log(client, args, &proof_path, &signed_digest, &spki)?;
    } else if args.require_log || !args.witnesses.witness.is_empty() {
        bail!(
            "no transparency-log proof beside the signature ({} is missing){}",
            proof_path.display(),
            if args.require_log {
                ""
            } else {
                ": --witness needs the proof's checkpoint to check its cosignatures"
            }
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
    if !kagi_crypto::verify_digest(alg, &spki, digest_alg, &digest, padding, sig)? {
        bail!(
            "the signature does NOT verify for {} with this key",
            args.file.display()
        );
    }
    say!("signature OK ({alg}, {})", digest_alg.as_str());
    Ok((digest, spki))
}

fn digest_alg_of(oid: &const_oid::ObjectIdentifier) -> Result<DigestAlg> {
    kagi_x509::algorithms::digest_from_oid(oid)
        .with_context(|| format!("digest algorithm {oid} is not one kagi uses (SHA-256/384/512)"))
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
    if !kagi_crypto::verify_digest(
        alg,
        &signer_spki,
        digest_alg,
        &attrs_digest,
        RsaPadding::Pkcs1v15,
        si.signature.as_bytes(),
    )? {
        bail!("the CMS signature does NOT verify with its signer certificate");
    }

    // 3. The timestamp, if any: the only time the signature provably existed at. Without
    // one, the signer's certificate must be valid now (its signingTime is its own word).
    let timestamp = crate::timestamp::verify(args, si, &certs)?;
    let at = timestamp.as_ref().map_or_else(now, |t| t.time);

    // 4. The chain, up to kagi's root, valid at that time.
    let at_what = if timestamp.is_some() {
        "the time of the signature's RFC 3161 timestamp"
    } else {
        "now: the signature carries no RFC 3161 timestamp to show when it was made; sign with \
         'kagi sign --timestamp' for signatures that outlive their certificates"
    };
    let path = chain_to_root(args, signer, &certs, at, at_what)?;
    let root = path.last().context("an empty certificate path")?;

    // 5. The signer certificate allows code signing.
    if !allows_code_signing(signer)? {
        bail!("the signer certificate does not allow code signing (no codeSigning EKU)");
    }
    say!(
        "signature OK (CMS, {alg}, {}), signer '{}', chain to root '{}'",
        digest_alg.as_str(),
        signer.tbs_certificate().subject(),
        root.tbs_certificate().subject()
    );

    // 6. Neither the signer's certificate nor an intermediate is revoked.
    crate::revocation::check_path(
        args,
        &path,
        timestamp.as_ref().map(|t| t.time),
        "the signer's chain",
        false,
    )?;
    Ok((attrs_digest, signer_spki))
}

fn verify_log(
    client: &dyn Service,
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
    let (_, size, root) = kagi_tlog::open_checkpoint(note, &name, &key)
        .context("the log checkpoint's signature does not verify")?;
    crate::trust::check_witnesses(
        note,
        &args.witnesses,
        &format!("the checkpoint in {}", path.display()),
        true,
    )?;
    if !kagi_tlog::verify_inclusion(
        &kagi_tlog::entry_hash(entry.as_bytes()),
        index,
        size,
        &hashes,
        &root,
    ) {
        bail!("the log entry is NOT included in the signed checkpoint");
    }
    let e = SignatureEntry::parse(entry.as_bytes())?;
    if e.digest != signed_digest || e.public_key_sha256 != SignatureEntry::public_key_hash(spki) {
        bail!("the log entry is for another signature (its digest or key differs)");
    }
    say!("transparency log OK: entry {index} is in the signed checkpoint of {size} entries");
    Ok(())
}
