//! The RFC 3161 timestamp a CMS signature may carry (`kagi sign --timestamp`: the unsigned
//! attribute id-aa-timeStampToken). Checked in full before its time is used: the token
//! timestamps this signature's value, its TSTInfo is what its TSA signed, the TSA certificate
//! is the one the token names (signingCertificateV2), allows time-stamping only, chains to the
//! same root as the signer and is not revoked. Only then is genTime the time the signature was
//! made at, for the signer certificate's validity and for revocations that do not void earlier
//! signatures.

use anyhow::{bail, Context, Result};
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::db::rfc5912;
use der::asn1::{GeneralizedTime, OctetString};
use der::{Any, Decode, Encode};
use kagi_crypto::{DigestAlg, RsaPadding};
use kagi_x509::rfc3161::{SigningCertificateV2, TstInfoImprint};
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::Certificate;

use crate::args::VerifyArgs;
use crate::say;
use crate::trust::{chain_to_root, key_alg, spki_der, subject, time_text};

const ID_AA_TIME_STAMP_TOKEN: &str = "1.2.840.113549.1.9.16.2.14";
const ID_AA_SIGNING_CERTIFICATE_V2: &str = "1.2.840.113549.1.9.16.2.47";
const ID_CT_TST_INFO: &str = "1.2.840.113549.1.9.16.1.4";
const ID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const ID_CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
const ID_MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";

/// A verified timestamp.
pub(crate) struct Timestamp {
    /// genTime, unix seconds.
    pub time: i64,
}

/// The one value of attribute `oid` in `attrs`, refusing repeats (a second value could say
/// something else to another verifier).
fn single_value(attrs: &x509_cert::attr::Attributes, oid: &str, what: &str) -> Result<Option<Any>> {
    let mut found = attrs.iter().filter(|a| a.oid.to_string() == oid);
    let Some(attr) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() || attr.values.len() != 1 {
        bail!("{what} must appear once, with one value");
    }
    Ok(attr.values.iter().next().cloned())
}

fn digest_alg(oid: &const_oid::ObjectIdentifier, what: &str) -> Result<DigestAlg> {
    kagi_x509::algorithms::digest_from_oid(oid)
        .with_context(|| format!("{what} uses digest {oid}, not SHA-256/384/512"))
}

/// Verify the timestamp token of `si` (the signature's SignerInfo), if it has one. `outer` are
/// the certificates of the signature, candidates for the TSA's chain.
pub(crate) fn verify(
    args: &VerifyArgs,
    si: &SignerInfo,
    outer: &[Certificate],
) -> Result<Option<Timestamp>> {
    let Some(attrs) = &si.unsigned_attrs else {
        return Ok(None);
    };
    let Some(token) = single_value(attrs, ID_AA_TIME_STAMP_TOKEN, "the timestamp token")? else {
        return Ok(None);
    };
    let t = check_token(args, si, outer, &token)
        .context("the signature's RFC 3161 timestamp does NOT verify")?;
    Ok(Some(t))
}

fn check_token(
    args: &VerifyArgs,
    si: &SignerInfo,
    outer: &[Certificate],
    token: &Any,
) -> Result<Timestamp> {
    let ci: cms::content_info::ContentInfo = token
        .decode_as()
        .context("the token is not a CMS ContentInfo")?;
    if ci.content_type.to_string() != ID_SIGNED_DATA {
        bail!("the token is a {}, not a SignedData", ci.content_type);
    }
    let sd: SignedData = ci
        .content
        .decode_as()
        .context("the token's SignedData does not parse")?;
    if sd.encap_content_info.econtent_type.to_string() != ID_CT_TST_INFO {
        bail!(
            "the token encapsulates {}, not a TSTInfo",
            sd.encap_content_info.econtent_type
        );
    }
    let tst_der = sd
        .encap_content_info
        .econtent
        .as_ref()
        .context("the token carries no TSTInfo")?
        .decode_as::<OctetString>()
        .context("the token's content is not an OCTET STRING")?;
    let tst = TstInfoImprint::from_der(tst_der.as_bytes()).context("the TSTInfo does not parse")?;

    // 1. It timestamps this signature.
    let imprint = &tst.message_imprint;
    let imprint_alg = digest_alg(&imprint.hash_algorithm.oid, "the timestamp's imprint")?;
    if imprint.hashed_message.as_bytes() != imprint_alg.hash(si.signature.as_bytes()).as_slice() {
        bail!("the token timestamps another signature (its messageImprint is not the hash of this signature's value)");
    }
    let gen_time = tst
        .gen_time
        .decode_as::<GeneralizedTime>()
        .context("the TSTInfo's genTime is not a whole-second GeneralizedTime")?;
    let time = gen_time.to_unix_duration().as_secs() as i64;

    // 2. The TSA signed this TSTInfo.
    let tsi = sd
        .signer_infos
        .0
        .iter()
        .next()
        .context("the token has no signer")?;
    if sd.signer_infos.0.len() != 1 {
        bail!(
            "the token has {} signers; a TSA signs alone",
            sd.signer_infos.0.len()
        );
    }
    let token_certs: Vec<Certificate> = sd
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            cms::cert::CertificateChoices::Certificate(c) => Some(c.clone()),
            _ => None,
        })
        .chain(outer.iter().cloned())
        .collect();
    let SignerIdentifier::IssuerAndSerialNumber(isn) = &tsi.sid else {
        bail!(
            "the token names its TSA by key identifier; kagi's TSA names it by issuer and serial"
        );
    };
    let tsa = token_certs
        .iter()
        .find(|c| {
            c.tbs_certificate().serial_number() == &isn.serial_number
                && c.tbs_certificate().issuer() == &isn.issuer
        })
        .context("the TSA's certificate is in neither the token nor the signature")?
        .clone();
    let signed = tsi
        .signed_attrs
        .as_ref()
        .context("the token's signer has no signed attributes")?;
    let content_type = single_value(signed, ID_CONTENT_TYPE, "the token's contentType")?
        .context("the token's signer has no contentType attribute")?
        .decode_as::<const_oid::ObjectIdentifier>()
        .context("the token's contentType is not an OID")?;
    if content_type.to_string() != ID_CT_TST_INFO {
        bail!("the token's signed contentType is {content_type}, not TSTInfo");
    }
    let d = digest_alg(&tsi.digest_alg.oid, "the token's signer")?;
    let md = single_value(signed, ID_MESSAGE_DIGEST, "the token's messageDigest")?
        .context("the token's signer has no messageDigest attribute")?
        .decode_as::<OctetString>()
        .context("the token's messageDigest is not an OCTET STRING")?;
    if md.as_bytes() != d.hash(tst_der.as_bytes()).as_slice() {
        bail!("the TSTInfo is not what the TSA signed (its digest differs from the token's messageDigest): the token was altered");
    }
    let spki = spki_der(&tsa)?;
    if !kagi_crypto::verify_digest(
        key_alg(&spki)?,
        &spki,
        d,
        &d.hash(&signed.to_der()?),
        RsaPadding::Pkcs1v15,
        tsi.signature.as_bytes(),
    )? {
        bail!(
            "the token's signature does not verify with the TSA certificate '{}'",
            subject(&tsa)
        );
    }

    // 3. The certificate is the one the TSA bound into its signature (RFC 5816), and a TSA's.
    let scv2 = single_value(signed, ID_AA_SIGNING_CERTIFICATE_V2, "signingCertificateV2")?
        .context("the token's signer has no signingCertificateV2 attribute")?
        .decode_as::<SigningCertificateV2>()
        .context("the token's signingCertificateV2 does not parse")?;
    let first = scv2
        .certs
        .first()
        .context("the token's signingCertificateV2 names no certificate")?;
    let cert_hash_alg = match &first.hash_algorithm {
        None => DigestAlg::Sha256,
        Some(a) => digest_alg(&a.oid, "the token's signingCertificateV2")?,
    };
    if first.cert_hash.as_bytes() != cert_hash_alg.hash(&tsa.to_der()?).as_slice() {
        bail!("the token's signingCertificateV2 names another certificate than the one that signed it");
    }
    let eku = tsa
        .tbs_certificate()
        .get_extension::<ExtendedKeyUsage>()?
        .map(|(critical, e)| (critical, e.0));
    if !matches!(&eku, Some((true, u)) if u.as_slice() == [rfc5912::ID_KP_TIME_STAMPING]) {
        bail!(
            "'{}' is not a time-stamping certificate (RFC 3161 §2.3: a critical extendedKeyUsage of exactly timeStamping)",
            subject(&tsa)
        );
    }

    // 4. The TSA chains to the root, was valid then and is not revoked. A TSA revoked for a
    // reason other than a compromise still had an honest key, so its own time counts.
    let path = chain_to_root(args, &tsa, &token_certs, time, "the timestamp's time")?;
    crate::revocation::check_path(args, &path, Some(time), "the timestamp's TSA", false)?;
    say!(
        "timestamp OK: RFC 3161 token from '{}' at {}",
        subject(&tsa),
        time_text(time)
    );
    Ok(Timestamp { time })
}
