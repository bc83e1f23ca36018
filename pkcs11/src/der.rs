//! The little DER this module reads and writes: SubjectPublicKeyInfo (modulus, exponent, curve,
//! point), DigestInfo (CKM_RSA_PKCS input), ECDSA-Sig-Value (the service's ECDSA output) and
//! the names and serial of an X.509 certificate. A hand-written reader keeps the module free
//! of a second ASN.1 stack; it accepts definite lengths only, as DER requires.
#![forbid(unsafe_code)]

pub const SEQUENCE: u8 = 0x30;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const PRINTABLE_STRING: u8 = 0x13;

/// OID contents (without tag and length).
pub const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
pub const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
pub const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
pub const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
pub const OID_SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

/// One element: its tag, its contents, and its whole encoding.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
    pub raw: &'a [u8],
}

/// Reads the elements of a DER string one after the other.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(der: &'a [u8]) -> Reader<'a> {
        Reader { rest: der }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn read(&mut self) -> Option<Tlv<'a>> {
        let input = self.rest;
        let tag = *input.first()?;
        let first = *input.get(1)? as usize;
        let (len, header) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return None;
            }
            let bytes = input.get(2..2 + n)?;
            let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        };
        let end = header.checked_add(len)?;
        let raw = input.get(..end)?;
        self.rest = &input[end..];
        Some(Tlv {
            tag,
            value: &raw[header..],
            raw,
        })
    }

    /// The next element, which must carry `tag`.
    pub fn expect(&mut self, tag: u8) -> Option<Tlv<'a>> {
        let t = self.read()?;
        (t.tag == tag).then_some(t)
    }
}

/// The contents of a lone element with `tag` spanning all of `der`.
pub fn single(der: &[u8], tag: u8) -> Option<&[u8]> {
    let mut r = Reader::new(der);
    let t = r.expect(tag)?;
    r.is_empty().then_some(t.value)
}

/// A length in DER.
fn length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// One element.
pub fn encode(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    length(value.len(), &mut out);
    out.extend_from_slice(value);
    out
}

/// An unsigned INTEGER's magnitude without the sign-padding zeros.
pub fn unsigned(int: &[u8]) -> &[u8] {
    let skip = int
        .iter()
        .take_while(|b| **b == 0)
        .count()
        .min(int.len().saturating_sub(1));
    &int[skip..]
}

/// What a SubjectPublicKeyInfo holds, in the forms PKCS#11 attributes take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
    /// `params`: the curve's OID, DER (CKA_EC_PARAMS); `point`: the uncompressed point.
    Ec {
        params: Vec<u8>,
        point: Vec<u8>,
    },
    Ed25519 {
        key: Vec<u8>,
    },
}

pub fn parse_spki(spki: &[u8]) -> Option<PublicKey> {
    let body = single(spki, SEQUENCE)?;
    let mut r = Reader::new(body);
    let alg = r.expect(SEQUENCE)?;
    let bits = r.expect(BIT_STRING)?;
    let (unused, key) = bits.value.split_first()?;
    if *unused != 0 {
        return None;
    }
    let mut a = Reader::new(alg.value);
    let oid = a.expect(OID)?;
    match oid.value {
        OID_RSA => {
            let seq = single(key, SEQUENCE)?;
            let mut k = Reader::new(seq);
            let n = k.expect(INTEGER)?;
            let e = k.expect(INTEGER)?;
            Some(PublicKey::Rsa {
                modulus: unsigned(n.value).to_vec(),
                exponent: unsigned(e.value).to_vec(),
            })
        }
        OID_EC_PUBLIC_KEY => {
            let curve = a.expect(OID)?;
            Some(PublicKey::Ec {
                params: curve.raw.to_vec(),
                point: key.to_vec(),
            })
        }
        OID_ED25519 => Some(PublicKey::Ed25519 { key: key.to_vec() }),
        _ => None,
    }
}

/// The hash a DigestInfo names (as its OID) and its digest. The parameters may be NULL or
/// absent, as both occur in the wild.
pub fn parse_digest_info(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let body = single(der, SEQUENCE)?;
    let mut r = Reader::new(body);
    let alg = r.expect(SEQUENCE)?;
    let digest = r.expect(OCTET_STRING)?;
    if !r.is_empty() {
        return None;
    }
    let mut a = Reader::new(alg.value);
    let oid = a.expect(OID)?;
    if let Some(param) = a.read() {
        if param.tag != NULL || !param.value.is_empty() || !a.is_empty() {
            return None;
        }
    }
    Some((oid.value, digest.value))
}

/// An ECDSA-Sig-Value turned into PKCS#11's r || s, each `size` bytes.
pub fn ecdsa_der_to_raw(der: &[u8], size: usize) -> Option<Vec<u8>> {
    let body = single(der, SEQUENCE)?;
    let mut r = Reader::new(body);
    let a = unsigned(r.expect(INTEGER)?.value);
    let b = unsigned(r.expect(INTEGER)?.value);
    if !r.is_empty() || a.len() > size || b.len() > size {
        return None;
    }
    let mut out = vec![0u8; 2 * size];
    out[size - a.len()..size].copy_from_slice(a);
    out[2 * size - b.len()..].copy_from_slice(b);
    Some(out)
}

/// Issuer, serial number and subject of an X.509 certificate, each as its full DER element.
pub struct CertificateNames {
    pub serial: Vec<u8>,
    pub issuer: Vec<u8>,
    pub subject: Vec<u8>,
}

pub fn certificate_names(cert: &[u8]) -> Option<CertificateNames> {
    let body = single(cert, SEQUENCE)?;
    let tbs = Reader::new(body).expect(SEQUENCE)?;
    let mut r = Reader::new(tbs.value);
    let mut first = r.read()?;
    if first.tag == 0xa0 {
        first = r.read()?;
    }
    if first.tag != INTEGER {
        return None;
    }
    let _signature = r.expect(SEQUENCE)?;
    let issuer = r.expect(SEQUENCE)?;
    let _validity = r.expect(SEQUENCE)?;
    let subject = r.expect(SEQUENCE)?;
    Some(CertificateNames {
        serial: first.raw.to_vec(),
        issuer: issuer.raw.to_vec(),
        subject: subject.raw.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_info_with_and_without_null_parameters() {
        let digest = [7u8; 32];
        let mut alg = encode(OID, OID_SHA256);
        alg.extend(encode(NULL, &[]));
        let mut body = encode(SEQUENCE, &alg);
        body.extend(encode(OCTET_STRING, &digest));
        let info = encode(SEQUENCE, &body);
        assert_eq!(parse_digest_info(&info), Some((OID_SHA256, &digest[..])));
        let mut body = encode(SEQUENCE, &encode(OID, OID_SHA384));
        body.extend(encode(OCTET_STRING, &[1u8; 48]));
        let info = encode(SEQUENCE, &body);
        assert_eq!(parse_digest_info(&info).map(|p| p.0), Some(OID_SHA384));
        // Trailing garbage or a truncated element is refused.
        let mut long = info.clone();
        long.push(0);
        assert!(parse_digest_info(&long).is_none());
        assert!(parse_digest_info(&info[..info.len() - 1]).is_none());
        assert!(parse_digest_info(&[]).is_none());
    }

    #[test]
    fn ecdsa_signature_becomes_fixed_size_r_and_s() {
        // r has a sign-padding zero, s is short: both come out 32 bytes, left-padded.
        let mut r = vec![0u8];
        r.extend([0x80u8; 32]);
        let s = vec![0x01u8; 31];
        let mut body = encode(INTEGER, &r);
        body.extend(encode(INTEGER, &s));
        let sig = encode(SEQUENCE, &body);
        let raw = ecdsa_der_to_raw(&sig, 32).unwrap();
        assert_eq!(raw.len(), 64);
        assert_eq!(&raw[..32], &[0x80u8; 32]);
        assert_eq!(raw[32], 0);
        assert_eq!(&raw[33..], &[0x01u8; 31]);
        // An integer longer than the curve is refused, not truncated.
        assert!(ecdsa_der_to_raw(&sig, 16).is_none());
    }

    #[test]
    fn long_lengths_round_trip() {
        let value = vec![0xabu8; 300];
        let enc = encode(OCTET_STRING, &value);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(single(&enc, OCTET_STRING), Some(&value[..]));
    }
}
