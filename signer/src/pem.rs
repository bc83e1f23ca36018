//! PEM text for public keys, and reading PKCS#8 private keys for import.

use rustls::pki_types::pem::{PemObject, SectionKind};
use thiserror::Error;
use zeroize::Zeroizing;

#[derive(Debug, Error)]
pub enum PemError {
    #[error("the file holds a {0} private key; kagi imports PKCS#8 only: convert it with 'openssl pkcs8 -topk8 -nocrypt -in KEY -outform DER -out key.p8'")]
    NotPkcs8(&'static str),
    #[error("the file is neither DER nor PEM PKCS#8 (\"-----BEGIN PRIVATE KEY-----\"); encrypted keys must be decrypted first")]
    Unrecognized,
}

/// `-----BEGIN PUBLIC KEY-----` text of a SubjectPublicKeyInfo, lines of 64 characters, by the
/// one PEM encoder kagi uses (`kagi_ca::x509::pem`). Encoding cannot fail for this label and a
/// DER body; an empty string would be refused by every reader.
pub fn public_key_pem(spki_der: &[u8]) -> String {
    kagi_ca::x509::pem("PUBLIC KEY", spki_der).unwrap_or_default()
}

/// PKCS#8 DER from a file's bytes, which may be DER or PEM.
pub fn pkcs8_der(file: &[u8]) -> Result<Zeroizing<Vec<u8>>, PemError> {
    // DER PKCS#8 is a SEQUENCE; PEM text starts with '-' (possibly after whitespace).
    if file.first() == Some(&0x30) {
        return Ok(Zeroizing::new(file.to_vec()));
    }
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(file) {
        let (kind, der) = match item {
            Ok(v) => v,
            Err(_) => return Err(PemError::Unrecognized),
        };
        let der = Zeroizing::new(der);
        match kind {
            SectionKind::PrivateKey => return Ok(der),
            SectionKind::RsaPrivateKey => return Err(PemError::NotPkcs8("PKCS#1 RSA")),
            SectionKind::EcPrivateKey => return Err(PemError::NotPkcs8("SEC1 EC")),
            _ => {}
        }
    }
    Err(PemError::Unrecognized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_pem_wraps_at_64() {
        let pem = public_key_pem(&[7u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN PUBLIC KEY-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(*lines.last().unwrap(), "-----END PUBLIC KEY-----");
    }

    #[test]
    fn pkcs8_pem_and_der_are_read_and_pkcs1_is_refused() {
        let der = [0x30u8, 0x03, 0x02, 0x01, 0x00];
        assert_eq!(pkcs8_der(&der).unwrap().as_slice(), &der);
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        assert_eq!(pkcs8_der(pem.as_bytes()).unwrap().as_slice(), &der);
        let rsa = pem.replace("PRIVATE KEY", "RSA PRIVATE KEY");
        assert!(matches!(
            pkcs8_der(rsa.as_bytes()),
            Err(PemError::NotPkcs8(_))
        ));
        assert!(matches!(pkcs8_der(b"hello"), Err(PemError::Unrecognized)));
    }
}
