//! Signed certificate timestamps (RFC 6962 §3.2-3.3) for precertificates, as a small
//! certificate-transparency signer makes them and a Sigstore verifier checks them: the
//! `digitally-signed` input, the SCT's TLS encoding, the embedded-SCT list extension, and the
//! precertificate TBS rebuilt from a certificate. Signing is the caller's (the CA signs with
//! its hsm-core key).

use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::Encode;
use x509_cert::ext::Extension;

use crate::Error;

type Result<T, E = Error> = std::result::Result<T, E>;

/// id-ce-embeddedSCT-list (RFC 6962 §3.3): the SignedCertificateTimestampList extension.
pub const ID_SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");

/// TLS HashAlgorithm sha256(4) and SignatureAlgorithm ecdsa(3) (RFC 5246 §7.4.1.4.1).
pub const HASH_SHA256: u8 = 4;
pub const SIG_ECDSA: u8 = 3;
/// LogEntryType precert_entry(1); SignatureType certificate_timestamp(0); Version v1(0).
const PRECERT_ENTRY: u16 = 1;
const CERTIFICATE_TIMESTAMP: u8 = 0;
const V1: u8 = 0;

/// An SCT's TLS encoding (v1, no extensions, ECDSA with SHA-256) around `signature`, the CT
/// key's signature over [`precert_signed_data`] at `timestamp_ms`.
pub fn encode_sct(log_id: &[u8; 32], timestamp_ms: u64, signature: &[u8]) -> Result<Vec<u8>> {
    let mut sct = Vec::with_capacity(48 + signature.len());
    sct.push(V1);
    sct.extend_from_slice(log_id);
    sct.extend_from_slice(&timestamp_ms.to_be_bytes());
    sct.extend_from_slice(&0u16.to_be_bytes()); // no CtExtensions
    sct.push(HASH_SHA256);
    sct.push(SIG_ECDSA);
    sct.extend_from_slice(&u16_len(signature.len())?.to_be_bytes());
    sct.extend_from_slice(signature);
    Ok(sct)
}

/// The `digitally-signed` input of an SCT over a precertificate entry (RFC 6962 §3.2), with no
/// SCT extensions (kagi writes none).
pub fn precert_signed_data(
    issuer_spki: &[u8],
    tbs_precert: &[u8],
    timestamp_ms: u64,
) -> Result<Vec<u8>> {
    precert_signed_data_with(issuer_spki, tbs_precert, timestamp_ms, &[])
}

/// [`precert_signed_data`] with the SCT's extensions, as a verifier rebuilds it.
pub fn precert_signed_data_with(
    issuer_spki: &[u8],
    tbs_precert: &[u8],
    timestamp_ms: u64,
    sct_extensions: &[u8],
) -> Result<Vec<u8>> {
    let issuer_key_hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, issuer_spki);
    let len = tbs_precert.len();
    if len == 0 || len >= 1 << 24 {
        return Err(Error::Encoding(
            "a TBSCertificate must be 1 byte to 16 MiB long".into(),
        ));
    }
    let mut d = Vec::with_capacity(len + 50);
    d.push(V1);
    d.push(CERTIFICATE_TIMESTAMP);
    d.extend_from_slice(&timestamp_ms.to_be_bytes());
    d.extend_from_slice(&PRECERT_ENTRY.to_be_bytes());
    d.extend_from_slice(issuer_key_hash.as_ref());
    d.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    d.extend_from_slice(tbs_precert);
    d.extend_from_slice(&u16_len(sct_extensions.len())?.to_be_bytes());
    d.extend_from_slice(sct_extensions);
    Ok(d)
}

/// An SCT read back from a certificate's embedded list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedSct {
    pub log_id: [u8; 32],
    pub timestamp_ms: u64,
    pub extensions: Vec<u8>,
    /// TLS HashAlgorithm and SignatureAlgorithm codes.
    pub hash: u8,
    pub sig_alg: u8,
    pub signature: Vec<u8>,
}

fn bad(what: &str) -> Error {
    Error::Malformed(format!("the embedded SCT list is malformed: {what}"))
}

/// A TLS opaque<0..2^16-1>: (its bytes, the rest).
fn take_u16_vec(d: &[u8]) -> Result<(&[u8], &[u8])> {
    let len = d
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| bad("a length is cut short"))?;
    let body = d
        .get(2..2 + len)
        .ok_or_else(|| bad("a field is cut short"))?;
    Ok((body, &d[2 + len..]))
}

/// The SCTs embedded in certificate `cert_der` (none if it has no SCT list extension).
pub fn embedded_scts(cert_der: &[u8]) -> Result<Vec<EmbeddedSct>> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(cert_der)?;
    let Some(ext) = cert
        .tbs_certificate()
        .extensions()
        .and_then(|e| e.iter().find(|e| e.extn_id == ID_SCT_LIST))
    else {
        return Ok(Vec::new());
    };
    let list = OctetString::from_der(ext.extn_value.as_bytes())?;
    let (mut items, rest) = take_u16_vec(list.as_bytes())?;
    if !rest.is_empty() {
        return Err(bad("bytes after the list"));
    }
    let mut out = Vec::new();
    while !items.is_empty() {
        let (sct, next) = take_u16_vec(items)?;
        items = next;
        if sct.first() != Some(&V1) || sct.len() < 43 {
            return Err(bad("an SCT is not version 1 or is too short"));
        }
        let log_id: [u8; 32] = sct[1..33].try_into().map_err(|_| bad("log id"))?;
        let timestamp_ms = u64::from_be_bytes(sct[33..41].try_into().map_err(|_| bad("time"))?);
        let (extensions, rest) = take_u16_vec(&sct[41..])?;
        let (hash, sig_alg) = match rest {
            [h, s, ..] => (*h, *s),
            _ => return Err(bad("the signature's algorithms are missing")),
        };
        let (signature, rest) = take_u16_vec(&rest[2..])?;
        if !rest.is_empty() {
            return Err(bad("bytes after an SCT's signature"));
        }
        out.push(EmbeddedSct {
            log_id,
            timestamp_ms,
            extensions: extensions.to_vec(),
            hash,
            sig_alg,
            signature: signature.to_vec(),
        });
    }
    Ok(out)
}

/// A DER TLV at the start of `d`: (tag, header length, content length).
fn tlv(d: &[u8]) -> Result<(u8, usize, usize)> {
    let cut = || Error::Malformed("the certificate's DER is cut short".into());
    let tag = *d.first().ok_or_else(cut)?;
    let first = *d.get(1).ok_or_else(cut)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return Err(Error::Malformed("a DER length is not 1 to 3 bytes".into()));
        }
        let bytes = d.get(2..2 + n).ok_or_else(cut)?;
        (
            2 + n,
            bytes.iter().fold(0usize, |l, b| l << 8 | usize::from(*b)),
        )
    };
    if d.len() < header + len {
        return Err(cut());
    }
    Ok((tag, header, len))
}

/// The whole TLVs that make up `content`.
fn children(mut content: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (_, h, l) = tlv(content)?;
        out.push(&content[..h + l]);
        content = &content[h + l..];
    }
    Ok(out)
}

fn content_of(d: &[u8]) -> Result<&[u8]> {
    let (_, h, l) = tlv(d)?;
    Ok(&d[h..h + l])
}

fn encode_tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// The precertificate TBS an SCT in `cert_der` was signed over: the certificate's
/// TBSCertificate without its SCT list extension (RFC 6962 §3.2, as verifiers rebuild it).
pub fn precert_tbs(cert_der: &[u8]) -> Result<Vec<u8>> {
    const EXTENSIONS: u8 = 0xa3;
    let sct_oid = ID_SCT_LIST
        .to_der()
        .map_err(|e| Error::Encoding(format!("DER: {e}")))?;
    let cert = children(content_of(cert_der)?)?;
    let tbs = cert
        .first()
        .ok_or_else(|| Error::Malformed("the certificate has no TBSCertificate".into()))?;
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for field in children(content_of(tbs)?)? {
        if field.first() != Some(&EXTENSIONS) {
            fields.push(field.to_vec());
            continue;
        }
        let list = content_of(content_of(field)?)?;
        let kept: Vec<&[u8]> = children(list)?
            .into_iter()
            .filter(|ext| {
                content_of(ext)
                    .map(|c| !c.starts_with(&sct_oid))
                    .unwrap_or(true)
            })
            .collect();
        if !kept.is_empty() {
            let seq = encode_tlv(0x30, &kept);
            fields.push(encode_tlv(EXTENSIONS, &[&seq]));
        }
    }
    let parts: Vec<&[u8]> = fields.iter().map(|f| f.as_slice()).collect();
    Ok(encode_tlv(0x30, &parts))
}

/// The embedded-SCT extension: an OCTET STRING holding the TLS SignedCertificateTimestampList.
pub fn sct_list_extension(scts: &[Vec<u8>]) -> Result<Extension> {
    let mut body = Vec::new();
    for sct in scts {
        body.extend_from_slice(&u16_len(sct.len())?.to_be_bytes());
        body.extend_from_slice(sct);
    }
    let mut list = u16_len(body.len())?.to_be_bytes().to_vec();
    list.extend_from_slice(&body);
    let encoding = |e: der::Error| Error::Encoding(format!("DER: {e}"));
    let inner = OctetString::new(list)
        .and_then(|o| o.to_der())
        .map_err(encoding)?;
    Ok(Extension {
        extn_id: ID_SCT_LIST,
        critical: false,
        extn_value: OctetString::new(inner).map_err(encoding)?,
    })
}

fn u16_len(n: usize) -> Result<u16> {
    u16::try_from(n).map_err(|_| Error::Encoding(format!("{n} bytes do not fit a TLS u16")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_data_layout_follows_rfc6962() {
        let d = precert_signed_data(b"issuer", &[0x30, 0x00], 0x0102_0304_0506_0708).unwrap();
        assert_eq!(&d[..2], &[0, 0]);
        assert_eq!(&d[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&d[10..12], &[0, 1]);
        assert_eq!(
            &d[12..44],
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"issuer").as_ref()
        );
        assert_eq!(&d[44..47], &[0, 0, 2]);
        assert_eq!(&d[47..49], &[0x30, 0x00]);
        assert_eq!(&d[49..], &[0, 0]);
        assert!(precert_signed_data(b"i", &[], 0).is_err());
    }

    #[test]
    fn an_encoded_sct_reads_back_from_its_list() {
        let sct = encode_sct(&[5u8; 32], 77, &[1, 2, 3]).unwrap();
        let ext = sct_list_extension(&[sct]).unwrap();
        // A certificate is not needed to read the list: parse the extension value as
        // embedded_scts does.
        let list = {
            use der::Decode;
            OctetString::from_der(ext.extn_value.as_bytes()).unwrap()
        };
        let (items, rest) = take_u16_vec(list.as_bytes()).unwrap();
        assert!(rest.is_empty());
        let (one, rest) = take_u16_vec(items).unwrap();
        assert!(rest.is_empty());
        assert_eq!(one[0], V1);
        assert_eq!(&one[1..33], &[5u8; 32]);
        assert_eq!(u64::from_be_bytes(one[33..41].try_into().unwrap()), 77);
        assert_eq!(&one[41..45], &[0, 0, HASH_SHA256, SIG_ECDSA]);
        assert_eq!(&one[45..], &[0, 3, 1, 2, 3]);
    }

    #[test]
    fn list_extension_nests_an_octet_string() {
        let e = sct_list_extension(&[vec![7u8; 3]]).unwrap();
        // OCTET STRING { 00 05 | 00 03 | 07 07 07 }
        assert_eq!(
            e.extn_value.as_bytes(),
            &[0x04, 0x07, 0x00, 0x05, 0x00, 0x03, 7, 7, 7]
        );
        assert!(!e.critical);
    }
}
