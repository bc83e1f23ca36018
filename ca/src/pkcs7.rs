//! Degenerate "certs-only" PKCS#7 / CMS SignedData (RFC 5652 §5), the
//! format EST (RFC 7030 §4.1.3, §4.2.3) uses to return certificates from
//! /cacerts and /simpleenroll.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use const_oid::db::rfc5911;
use der::asn1::SetOfVec;
use der::{Any, Decode, Encode};
use x509_cert::Certificate;

/// Why a certs-only message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs7Error {
    #[error(
        "certificate #{index} is not a valid DER X.509 certificate ({source}); \
         pass DER, not PEM, and check the stored certificate"
    )]
    BadCert { index: usize, source: der::Error },
    #[error(
        "certificate #{index} does not re-encode to the same bytes, so its signature would \
         break inside the PKCS#7; reissue it in canonical DER"
    )]
    NotCanonical { index: usize },
    #[error(
        "certificate #{index} is the same as certificate #{first}; a SET OF cannot hold \
         duplicates, pass each certificate once"
    )]
    Duplicate { index: usize, first: usize },
    #[error("encoding the PKCS#7 SignedData failed ({0}); this is a bug")]
    Encode(#[from] der::Error),
}

/// Build a DER ContentInfo holding a certs-only SignedData: version 1, no
/// digestAlgorithms, id-data eContentType with no content, the given
/// certificates, no CRLs and no signerInfos.
///
/// `certificates` is a SET OF, so DER sorts it: the output order is not the
/// input order. EST clients pick certificates by subject/key, not position.
/// With no certificates the optional field is left out entirely.
pub fn certs_only(certs_der: &[Vec<u8>]) -> Result<Vec<u8>, Pkcs7Error> {
    let mut choices = Vec::with_capacity(certs_der.len());
    for (index, der) in certs_der.iter().enumerate() {
        if let Some(first) = certs_der[..index].iter().position(|c| c == der) {
            return Err(Pkcs7Error::Duplicate { index, first });
        }
        let cert =
            Certificate::from_der(der).map_err(|source| Pkcs7Error::BadCert { index, source })?;
        if cert.to_der()? != *der {
            return Err(Pkcs7Error::NotCanonical { index });
        }
        choices.push(CertificateChoices::Certificate(cert));
    }

    let certificates = if choices.is_empty() {
        None
    } else {
        Some(CertificateSet::try_from(choices)?)
    };

    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
            econtent: None,
        },
        certificates,
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };

    let content_info = ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data)?,
    };
    Ok(content_info.to_der()?)
}

/// Base64 of `der` in lines of 64 characters, each ending in "\n", as the
/// body of an EST response sent with `Content-Transfer-Encoding: base64`.
pub fn base64_64(der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 64 + 1);
    // Base64 output is ASCII, so splitting the bytes never cuts a character.
    for line in encoded.as_bytes().chunks(64) {
        out.extend(line.iter().map(|&b| char::from(b)));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// Runs `openssl` with a whitespace-separated command line and returns
    /// stdout+stderr, failing the test if it fails.
    fn openssl(dir: &Path, cmd: &str) -> String {
        let out = Command::new("openssl")
            .args(cmd.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("the openssl CLI must be installed to run these tests");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "openssl {cmd} failed:\n{text}");
        text
    }

    const NAMES: [&str; 3] = ["Alpha", "Bravo", "Charlie"];

    /// Three self-signed certificates made by openssl, as DER.
    fn certs(dir: &Path) -> Vec<Vec<u8>> {
        NAMES
            .iter()
            .map(|cn| {
                openssl(
                    dir,
                    &format!(
                        "req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                         -keyout {cn}.key -out {cn}.der -outform DER -subj /CN=Kagi-{cn} -days 1"
                    ),
                );
                std::fs::read(dir.join(format!("{cn}.der"))).unwrap()
            })
            .collect()
    }

    const PRINT_CERTS: &str = "pkcs7 -inform DER -print_certs -in";

    #[test]
    fn openssl_lists_the_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let certs = certs(d);
        let p7 = certs_only(&certs).unwrap();
        std::fs::write(d.join("certs.p7"), &p7).unwrap();
        let out = openssl(d, &format!("{PRINT_CERTS} certs.p7"));
        for cn in NAMES {
            assert!(out.contains(&format!("subject=CN = Kagi-{cn}")), "{out}");
        }
        assert_eq!(out.matches("BEGIN CERTIFICATE").count(), 3, "{out}");

        // The certificates come back byte for byte.
        let flat: String = out.lines().filter(|l| !l.contains(' ')).collect();
        for cert in &certs {
            assert!(flat.contains(&STANDARD.encode(cert)), "{out}");
        }

        // The EST body form decodes back to the same DER.
        std::fs::write(d.join("certs.b64"), base64_64(&p7)).unwrap();
        openssl(d, "base64 -d -in certs.b64 -out decoded.p7");
        assert_eq!(std::fs::read(d.join("decoded.p7")).unwrap(), p7);
        let out = openssl(d, &format!("{PRINT_CERTS} decoded.p7"));
        assert_eq!(out.matches("BEGIN CERTIFICATE").count(), 3, "{out}");
    }

    #[test]
    fn structure_is_degenerate_signed_data() {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(dir.path());
        let p7 = certs_only(&certs[..1]).unwrap();
        let info = ContentInfo::from_der(&p7).unwrap();
        assert_eq!(info.content_type, rfc5911::ID_SIGNED_DATA);
        let sd: SignedData = info.content.decode_as().unwrap();
        assert_eq!(sd.version, CmsVersion::V1);
        assert!(sd.digest_algorithms.is_empty());
        assert_eq!(sd.encap_content_info.econtent_type, rfc5911::ID_DATA);
        assert!(sd.encap_content_info.econtent.is_none());
        assert!(sd.crls.is_none());
        assert!(sd.signer_infos.0.is_empty());
        let set = sd.certificates.unwrap();
        assert_eq!(set.0.len(), 1);
        let CertificateChoices::Certificate(cert) = &set.0.as_slice()[0] else {
            panic!("expected a plain certificate");
        };
        assert_eq!(cert.to_der().unwrap(), certs[0]);
    }

    #[test]
    fn zero_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let p7 = certs_only(&[]).unwrap();
        let sd: SignedData = ContentInfo::from_der(&p7)
            .unwrap()
            .content
            .decode_as()
            .unwrap();
        assert!(sd.certificates.is_none());
        std::fs::write(d.join("empty.p7"), &p7).unwrap();
        let out = openssl(d, &format!("{PRINT_CERTS} empty.p7"));
        assert!(!out.contains("BEGIN CERTIFICATE"), "{out}");
        std::fs::write(d.join("empty.b64"), base64_64(&p7)).unwrap();
        openssl(d, "base64 -d -in empty.b64 -out empty2.p7");
        assert_eq!(std::fs::read(d.join("empty2.p7")).unwrap(), p7);
    }

    #[test]
    fn bad_input_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(dir.path());
        assert!(matches!(
            certs_only(&[certs[0].clone(), b"-----BEGIN CERTIFICATE-----".to_vec()]),
            Err(Pkcs7Error::BadCert { index: 1, .. })
        ));
        assert!(matches!(
            certs_only(&[certs[0][..certs[0].len() - 1].to_vec()]),
            Err(Pkcs7Error::BadCert { index: 0, .. })
        ));
        assert!(matches!(
            certs_only(&[certs[1].clone(), certs[0].clone(), certs[1].clone()]),
            Err(Pkcs7Error::Duplicate { index: 2, first: 0 })
        ));
        assert!(matches!(
            certs_only(&[Vec::new()]),
            Err(Pkcs7Error::BadCert { index: 0, .. })
        ));
    }

    #[test]
    fn base64_lines_are_64_wide() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = base64_64(&data);
        assert!(text.ends_with('\n'));
        assert!(!text.contains('\r'));
        let lines: Vec<&str> = text.lines().collect();
        let (last, full) = lines.split_last().unwrap();
        assert!(full.iter().all(|l| l.len() == 64));
        assert!(!last.is_empty() && last.len() <= 64);
        assert_eq!(STANDARD.decode(lines.concat()).unwrap(), data);

        // Exactly one full line: no trailing blank line.
        assert_eq!(base64_64(&[0; 48]), format!("{}\n", "A".repeat(64)));
        assert_eq!(base64_64(&[]), "");
    }
}
