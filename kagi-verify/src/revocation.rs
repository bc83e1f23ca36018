//! Revocation of the certificates a signature chains through: the signer's and the
//! intermediates', each asked of its CA's OCSP responder (the authorityInfoAccess URL), else its
//! CA's CRL (the cRLDistributionPoints URL), or read from CRL files the caller brings (`--crl`).
//! Nothing is taken on the service's word: an OCSP response must be signed by the issuing CA or
//! by a responder certificate that CA issued for OCSP signing, answer for exactly this
//! certificate and be current; a CRL must be signed by the issuing CA and be current.
//!
//! Fail closed: a status that cannot be learned (responder down, no CRL, an answer that does
//! not verify, "unknown") refuses the signature, with a message naming `--crl FILE` and
//! `--offline`. `--offline` skips the check and the report says so.
//!
//! Which revocations a signature survives: a certificate revoked for keyCompromise,
//! cACompromise or aACompromise, or for no stated reason, never signs validly again, whenever
//! the signature was made: the revocation time is when the CA learned of it, not when the key
//! leaked. For the other reasons (superseded, cessationOfOperation, affiliationChanged,
//! privilegeWithdrawn) a signature stays valid if a verified time (an RFC 3161 timestamp, or
//! the transparency log's signed integration time) shows it was made before the revocation; the
//! signer's own signingTime is its word and proves nothing. certificateHold refuses.

use anyhow::{anyhow, bail, Context, Result};
use const_oid::db::{rfc5280, rfc5912, rfc6960};
use der::asn1::{Int, OctetString};
use der::{Decode, Encode};
use kagi_x509::ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest, Version,
};
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityInfoAccessSyntax, CrlDistributionPoints, CrlReason, ExtendedKeyUsage,
};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use crate::args::VerifyArgs;
use crate::say;
use crate::trust::{check_issued_by, now, signed_by, subject, time_text, unix, valid_at};

/// Clocks differ: a response dated this far in the future is still taken.
const SKEW_SECS: i64 = 300;
/// OCSP answers and CRLs are a few KiB; a CRL of a busy CA may be some MiB.
const MAX_BODY: u64 = 16 * 1024 * 1024;
const ID_AD_OCSP: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");

/// What a CA says about one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Good,
    Revoked { at: i64, reason: Option<CrlReason> },
}

/// How the status was learned, for the report.
struct Answer {
    status: Status,
    source: String,
}

/// Where statuses come from.
enum Source {
    /// The CA's OCSP responder, else its CRL, over HTTP.
    Online(ureq::Agent),
    /// CRL files the caller brought.
    Files(Vec<(String, CertificateList)>),
}

/// Check that no certificate of `path` (leaf first, the trusted root last) is revoked in a
/// way the signature cannot survive. `signed_at` is a verified time the signature was made at
/// (a timestamp's, the log's), if there is one. `what` names the chain in the report. A leaf
/// that names no revocation source is skipped when `short_lived_leaf` (a Sigstore certificate
/// lives minutes and, like Fulcio's, carries no OCSP or CRL URL); otherwise it is refused.
pub(crate) fn check_path(
    args: &VerifyArgs,
    path: &[Certificate],
    signed_at: Option<i64>,
    what: &str,
    short_lived_leaf: bool,
) -> Result<()> {
    if args.offline {
        eprintln!(
            "warning: revocation was NOT checked (--offline): {what} would verify even if revoked"
        );
        say!("revocation NOT checked for {what} (--offline)");
        return Ok(());
    }
    let source = if args.crls.is_empty() {
        Source::Online(crate::client::agent(Vec::new(), None))
    } else {
        Source::Files(read_crls(&args.crls)?)
    };
    let mut report = Vec::new();
    // Every certificate but the root, which is trusted as pinned.
    for (i, pair) in path.windows(2).enumerate() {
        let (cert, issuer) = (&pair[0], &pair[1]);
        if i == 0 && short_lived_leaf && !names_a_source(cert)? {
            report.push(format!(
                "'{}': short-lived, no revocation source",
                subject(cert)
            ));
            continue;
        }
        let answer = match &source {
            Source::Online(agent) => online_status(agent, cert, issuer)?,
            Source::Files(crls) => file_status(crls, cert, issuer)?,
        };
        if let Status::Revoked { at, reason } = answer.status {
            let serial = hex::encode(cert.tbs_certificate().serial_number().as_bytes());
            judge(
                &format!("the certificate '{}' (serial {serial})", subject(cert)),
                at,
                reason,
                signed_at,
            )?;
        }
        report.push(format!(
            "'{}': {} ({})",
            subject(cert),
            match answer.status {
                Status::Good => "good".to_string(),
                Status::Revoked { at, reason } => format!(
                    "revoked at {} ({}), after the timestamped signing time",
                    time_text(at),
                    reason_name(reason)
                ),
            },
            answer.source
        ));
    }
    say!("revocation OK for {what}: {}", report.join("; "));
    Ok(())
}

/// Whether a signature made at `signed_at` survives the revocation of `cert` (named so) at `at`
/// for `reason` (see the module's documentation for the rule).
fn judge(cert: &str, at: i64, reason: Option<CrlReason>, signed_at: Option<i64>) -> Result<()> {
    let base = format!(
        "{cert} was REVOKED at {} (reason: {})",
        time_text(at),
        reason_name(reason)
    );
    let survivable = matches!(
        reason,
        Some(
            CrlReason::Superseded
                | CrlReason::CessationOfOperation
                | CrlReason::AffiliationChanged
                | CrlReason::PrivilegeWithdrawn
        )
    );
    if !survivable {
        bail!("{base}: no signature it made is trusted, whenever it was made");
    }
    match signed_at {
        Some(t) if t < at => Ok(()),
        Some(t) => bail!(
            "{base}, and the signature's verified time {} is not before that",
            time_text(t)
        ),
        None => bail!(
            "{base}, and the signature carries no verified time (an RFC 3161 timestamp: \
             'kagi sign --timestamp') to show it was made before"
        ),
    }
}

fn reason_name(reason: Option<CrlReason>) -> &'static str {
    match reason {
        None | Some(CrlReason::Unspecified) => "unspecified",
        Some(CrlReason::KeyCompromise) => "keyCompromise",
        Some(CrlReason::CaCompromise) => "cACompromise",
        Some(CrlReason::AffiliationChanged) => "affiliationChanged",
        Some(CrlReason::Superseded) => "superseded",
        Some(CrlReason::CessationOfOperation) => "cessationOfOperation",
        Some(CrlReason::CertificateHold) => "certificateHold",
        Some(CrlReason::RemoveFromCRL) => "removeFromCRL",
        Some(CrlReason::PrivilegeWithdrawn) => "privilegeWithdrawn",
        Some(CrlReason::AaCompromise) => "aACompromise",
    }
}

/// The certificate's OCSP URLs (authorityInfoAccess id-ad-ocsp) and CRL URLs
/// (cRLDistributionPoints).
fn urls(cert: &Certificate) -> Result<(Vec<String>, Vec<String>)> {
    let tbs = cert.tbs_certificate();
    let uri = |n: &GeneralName| match n {
        GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
        _ => None,
    };
    let ocsp = tbs
        .get_extension::<AuthorityInfoAccessSyntax>()?
        .map(|(_, aia)| {
            aia.0
                .iter()
                .filter(|a| a.access_method == ID_AD_OCSP)
                .filter_map(|a| uri(&a.access_location))
                .collect()
        })
        .unwrap_or_default();
    let crl = tbs
        .get_extension::<CrlDistributionPoints>()?
        .map(|(_, cdp)| {
            cdp.0
                .iter()
                .filter_map(|dp| match &dp.distribution_point {
                    Some(DistributionPointName::FullName(names)) => Some(names.iter()),
                    _ => None,
                })
                .flatten()
                .filter_map(uri)
                .collect()
        })
        .unwrap_or_default();
    Ok((ocsp, crl))
}

fn names_a_source(cert: &Certificate) -> Result<bool> {
    let (ocsp, crl) = urls(cert)?;
    Ok(!ocsp.is_empty() || !crl.is_empty())
}

/// Ask the CA: OCSP first, the CRL if OCSP gives no verified answer; refuse when neither does.
fn online_status(agent: &ureq::Agent, cert: &Certificate, issuer: &Certificate) -> Result<Answer> {
    let (ocsp_urls, crl_urls) = urls(cert)?;
    let mut failures = Vec::new();
    for url in &ocsp_urls {
        match ocsp_status(agent, url, cert, issuer) {
            Ok(status) => {
                return Ok(Answer {
                    status,
                    source: format!("OCSP {url}"),
                })
            }
            Err(e) => failures.push(format!("OCSP at {url}: {e:#}")),
        }
    }
    for url in &crl_urls {
        let crl = fetch(agent, url, None).and_then(|der| parse_crl(&der));
        match crl.and_then(|crl| crl_status(&crl, cert, issuer)) {
            Ok(status) => {
                return Ok(Answer {
                    status,
                    source: format!("CRL {url}"),
                })
            }
            Err(e) => failures.push(format!("CRL at {url}: {e:#}")),
        }
    }
    if failures.is_empty() {
        failures.push("it names no OCSP responder and no CRL".into());
    }
    bail!(
        "cannot learn whether the certificate '{}' is revoked, so the signature is not trusted \
         ({}). Retry when the CA's public listener answers, pass its CRL with --crl FILE, or \
         skip the check with --offline",
        subject(cert),
        failures.join("; ")
    )
}

fn fetch(agent: &ureq::Agent, url: &str, ocsp_request: Option<&[u8]>) -> Result<Vec<u8>> {
    if !url.starts_with("http://") && !url.starts_with("https://") {
        bail!("'{url}' is not an http URL");
    }
    let resp = match ocsp_request {
        Some(body) => agent
            .post(url)
            .header("Content-Type", "application/ocsp-request")
            .send(body),
        None => agent.get(url).call(),
    };
    let mut resp = resp.map_err(|e| anyhow!("{e}"))?;
    let status = resp.status().as_u16();
    if status != 200 {
        bail!("HTTP {status}");
    }
    resp.body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| anyhow!("cannot read the answer: {e}"))
}

/// The CertID of `cert` (SHA-256 of the issuer's name and key, the serial).
fn cert_id(cert: &Certificate, issuer: &Certificate) -> Result<CertId> {
    let sha256 = kagi_crypto::DigestAlg::Sha256;
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: rfc5912::ID_SHA_256,
            parameters: None,
        },
        issuer_name_hash: OctetString::new(
            sha256.hash(&cert.tbs_certificate().issuer().to_der()?),
        )?,
        issuer_key_hash: OctetString::new(
            sha256.hash(
                issuer
                    .tbs_certificate()
                    .subject_public_key_info()
                    .subject_public_key
                    .raw_bytes(),
            ),
        )?,
        serial_number: Int::new(cert.tbs_certificate().serial_number().as_bytes())?,
    })
}

fn ocsp_status(
    agent: &ureq::Agent,
    url: &str,
    cert: &Certificate,
    issuer: &Certificate,
) -> Result<Status> {
    let id = cert_id(cert, issuer)?;
    let request = OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: id.clone(),
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    }
    .to_der()?;
    let der = fetch(agent, url, Some(&request))?;
    read_ocsp(&der, &id, issuer, now())
}

/// Read and check an OCSP response about `id`, from `issuer` or its delegated responder.
fn read_ocsp(der: &[u8], id: &CertId, issuer: &Certificate, now: i64) -> Result<Status> {
    let resp = OcspResponse::from_der(der).context("the answer is not an OCSP response")?;
    if resp.response_status != OcspResponseStatus::Successful {
        bail!("the responder answered {:?}", resp.response_status);
    }
    let bytes = resp
        .response_bytes
        .context("a successful OCSP response without a response")?;
    if bytes.response_type != rfc6960::ID_PKIX_OCSP_BASIC {
        bail!(
            "the response type is {}, not a basic OCSP response",
            bytes.response_type
        );
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .context("the basic OCSP response does not parse")?;
    let tbs = basic.tbs_response_data.to_der()?;
    let sig = basic
        .signature
        .as_bytes()
        .context("the OCSP signature is not whole bytes")?;
    let alg = &basic.signature_algorithm.oid;
    // The issuing CA itself, or a responder it certified for exactly this (RFC 6960 §4.2.2.2).
    let by_issuer = signed_by(issuer, alg, &tbs, sig).unwrap_or(false);
    let by_delegate = !by_issuer
        && basic.certs.iter().flatten().any(|r| {
            check_issued_by(r, issuer).unwrap_or(false)
                && is_ocsp_signer(r)
                && valid_at(r, now)
                && signed_by(r, alg, &tbs, sig).unwrap_or(false)
        });
    if !by_issuer && !by_delegate {
        bail!(
            "the OCSP response is signed neither by '{}' nor by an OCSP responder it certified",
            subject(issuer)
        );
    }
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| {
            r.cert_id.hash_algorithm.oid == id.hash_algorithm.oid
                && r.cert_id.issuer_name_hash == id.issuer_name_hash
                && r.cert_id.issuer_key_hash == id.issuer_key_hash
                && r.cert_id.serial_number == id.serial_number
        })
        .context("the OCSP response does not answer for this certificate")?;
    let this_update = gen_unix(&single.this_update);
    if this_update > now + SKEW_SECS {
        bail!(
            "the OCSP response's thisUpdate {} is in the future",
            time_text(this_update)
        );
    }
    let next = single
        .next_update
        .as_ref()
        .map(gen_unix)
        .context("the OCSP response has no nextUpdate, so its freshness cannot be judged")?;
    if next < now {
        bail!(
            "the OCSP response is stale (nextUpdate {})",
            time_text(next)
        );
    }
    match &single.cert_status {
        CertStatus::Good(_) => Ok(Status::Good),
        CertStatus::Revoked(info) => Ok(Status::Revoked {
            at: gen_unix(&info.revocation_time),
            reason: info.revocation_reason,
        }),
        CertStatus::Unknown(_) => bail!("the responder does not know this certificate"),
    }
}

fn gen_unix(t: &der::asn1::GeneralizedTime) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

fn is_ocsp_signer(cert: &Certificate) -> bool {
    cert.tbs_certificate()
        .get_extension::<ExtendedKeyUsage>()
        .ok()
        .flatten()
        .is_some_and(|(_, eku)| eku.0.contains(&rfc5912::ID_KP_OCSP_SIGNING))
}

fn parse_crl(bytes: &[u8]) -> Result<CertificateList> {
    if let Ok(crl) = CertificateList::from_der(bytes) {
        return Ok(crl);
    }
    let (label, der) =
        der::pem::decode_vec(bytes).map_err(|_| anyhow!("not a CRL (neither DER nor PEM)"))?;
    if label != "X509 CRL" {
        bail!("a PEM '{label}', not an 'X509 CRL'");
    }
    CertificateList::from_der(&der).context("the PEM CRL does not parse")
}

fn read_crls(paths: &[std::path::PathBuf]) -> Result<Vec<(String, CertificateList)>> {
    paths
        .iter()
        .map(|p| {
            let bytes =
                std::fs::read(p).with_context(|| format!("cannot read the CRL {}", p.display()))?;
            let crl = parse_crl(&bytes).with_context(|| format!("{} (--crl)", p.display()))?;
            Ok((p.display().to_string(), crl))
        })
        .collect()
}

/// The status of `cert` from the `--crl` file its issuer signed.
fn file_status(
    crls: &[(String, CertificateList)],
    cert: &Certificate,
    issuer: &Certificate,
) -> Result<Answer> {
    let issuer_name = issuer.tbs_certificate().subject();
    let mut failures = Vec::new();
    for (path, crl) in crls
        .iter()
        .filter(|(_, c)| c.tbs_cert_list.issuer == *issuer_name)
    {
        match crl_status(crl, cert, issuer) {
            Ok(status) => {
                return Ok(Answer {
                    status,
                    source: format!("CRL {path}"),
                })
            }
            Err(e) => failures.push(format!("{path}: {e:#}")),
        }
    }
    let (_, crl_urls) = urls(cert)?;
    let from = if crl_urls.is_empty() {
        String::new()
    } else {
        format!(" (it is at {})", crl_urls.join(", "))
    };
    if failures.is_empty() {
        bail!(
            "none of the --crl files is from '{}', which issued '{}': add its current CRL{from}, \
             or skip the check with --offline",
            subject(issuer),
            subject(cert)
        );
    }
    bail!(
        "no usable CRL from '{}' for '{}' ({}): add its current CRL{from}, or skip the check \
         with --offline",
        subject(issuer),
        subject(cert),
        failures.join("; ")
    )
}

/// Check `crl` (signed by `issuer`, current) and look `cert` up in it.
fn crl_status(crl: &CertificateList, cert: &Certificate, issuer: &Certificate) -> Result<Status> {
    let tbs = &crl.tbs_cert_list;
    if tbs.issuer != *issuer.tbs_certificate().subject() {
        bail!(
            "the CRL is from '{}', not from '{}'",
            tbs.issuer,
            subject(issuer)
        );
    }
    let sig = crl
        .signature
        .as_bytes()
        .context("the CRL signature is not whole bytes")?;
    if !signed_by(issuer, &crl.signature_algorithm.oid, &tbs.to_der()?, sig)? {
        bail!(
            "the CRL's signature does not verify with '{}'",
            subject(issuer)
        );
    }
    let now = now();
    let this_update = unix(&tbs.this_update);
    if this_update > now + SKEW_SECS {
        bail!(
            "the CRL's thisUpdate {} is in the future",
            time_text(this_update)
        );
    }
    let next = tbs
        .next_update
        .as_ref()
        .map(unix)
        .context("the CRL has no nextUpdate, so its freshness cannot be judged")?;
    if next < now {
        bail!(
            "the CRL expired at {} (nextUpdate): fetch a current one",
            time_text(next)
        );
    }
    let serial = cert.tbs_certificate().serial_number();
    let Some(entry) = tbs
        .revoked_certificates
        .iter()
        .flatten()
        .find(|r| r.serial_number == *serial)
    else {
        return Ok(Status::Good);
    };
    let reason = entry
        .crl_entry_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == rfc5280::ID_CE_CRL_REASONS)
        .map(|e| CrlReason::from_der(e.extn_value.as_bytes()))
        .transpose()
        .context("a CRL entry's reason does not parse")?;
    Ok(Status::Revoked {
        at: unix(&entry.revocation_date),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVOKED_AT: i64 = 1_800_000_000;

    #[test]
    fn a_compromise_or_no_reason_voids_even_earlier_signatures() {
        for reason in [
            None,
            Some(CrlReason::Unspecified),
            Some(CrlReason::KeyCompromise),
            Some(CrlReason::CaCompromise),
            Some(CrlReason::AaCompromise),
            Some(CrlReason::CertificateHold),
            Some(CrlReason::RemoveFromCRL),
        ] {
            for signed_at in [None, Some(REVOKED_AT - 86_400), Some(REVOKED_AT + 1)] {
                let err = judge("c", REVOKED_AT, reason, signed_at).unwrap_err();
                assert!(
                    err.to_string().contains("REVOKED"),
                    "{reason:?} {signed_at:?}"
                );
            }
        }
    }

    #[test]
    fn other_reasons_spare_only_signatures_with_a_verified_earlier_time() {
        for reason in [
            CrlReason::Superseded,
            CrlReason::CessationOfOperation,
            CrlReason::AffiliationChanged,
            CrlReason::PrivilegeWithdrawn,
        ] {
            assert!(judge("c", REVOKED_AT, Some(reason), Some(REVOKED_AT - 1)).is_ok());
            assert!(judge("c", REVOKED_AT, Some(reason), Some(REVOKED_AT)).is_err());
            let err = judge("c", REVOKED_AT, Some(reason), None).unwrap_err();
            assert!(err.to_string().contains("no verified time"), "{err}");
        }
    }
}
