//! C_GenerateKeyPair: which kagi key a mechanism and its two templates ask for. kagi makes
//! every key on the service, non-extractable and sensitive; a template that asks for anything
//! else is refused rather than quietly ignored.
#![forbid(unsafe_code)]

use cryptoki_sys::*;

use crate::der;
use crate::error::{Error, Result};
use crate::object::{Alg, CKA_USAGE_LIMIT};

pub type Template = [(CK_ATTRIBUTE_TYPE, Vec<u8>)];

/// What the service is asked to create.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyRequest {
    pub label: String,
    pub alg: Alg,
    pub usage_limit: Option<i64>,
    /// Usages the template asked for that kagi keys do not have.
    pub dropped: Vec<CK_ATTRIBUTE_TYPE>,
}

fn invalid(why: &str) -> Error {
    Error::new(CKR_ATTRIBUTE_VALUE_INVALID, why)
}

fn as_bool(v: &[u8]) -> Result<bool> {
    match v {
        [b] => Ok(*b != 0),
        _ => Err(Error::rv(CKR_ATTRIBUTE_VALUE_INVALID)),
    }
}

fn as_ulong(v: &[u8]) -> Result<CK_ULONG> {
    let bytes: [u8; std::mem::size_of::<CK_ULONG>()] = v
        .try_into()
        .map_err(|_| Error::rv(CKR_ATTRIBUTE_VALUE_INVALID))?;
    Ok(CK_ULONG::from_ne_bytes(bytes))
}

fn find(t: &Template, ty: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
    t.iter().find(|(k, _)| *k == ty).map(|(_, v)| v.as_slice())
}

/// Attributes any template may carry, with the values kagi's keys have.
fn check_common(t: &Template, private: bool, dropped: &mut Vec<CK_ATTRIBUTE_TYPE>) -> Result<()> {
    for (ty, v) in t {
        match *ty {
            CKA_TOKEN => {
                if !as_bool(v)? {
                    return Err(invalid(
                        "kagi keys live on the service: CKA_TOKEN must be TRUE",
                    ));
                }
            }
            CKA_SENSITIVE | CKA_PRIVATE if private => {
                if !as_bool(v)? {
                    return Err(invalid("kagi private keys are sensitive and private"));
                }
            }
            CKA_EXTRACTABLE if private => {
                if as_bool(v)? {
                    return Err(invalid("kagi private keys cannot be made extractable"));
                }
            }
            CKA_PRIVATE => {}
            CKA_SIGN | CKA_VERIFY => {}
            // Tools ask for these by default (pkcs11-tool: derive, encrypt; GnuTLS: encrypt,
            // decrypt). kagi keys only sign: the key is made, its objects say FALSE, and the
            // caller is told on stderr.
            CKA_DECRYPT | CKA_ENCRYPT | CKA_WRAP | CKA_UNWRAP | CKA_DERIVE | CKA_SIGN_RECOVER
            | CKA_VERIFY_RECOVER => {
                if as_bool(v)? {
                    dropped.push(*ty);
                }
            }
            CKA_MODIFIABLE | CKA_COPYABLE | CKA_DESTROYABLE => {}
            CKA_CLASS => {
                let want = if private {
                    CKO_PRIVATE_KEY
                } else {
                    CKO_PUBLIC_KEY
                };
                if as_ulong(v)? != want {
                    return Err(Error::rv(CKR_TEMPLATE_INCONSISTENT));
                }
            }
            CKA_KEY_TYPE | CKA_LABEL | CKA_MODULUS_BITS | CKA_PUBLIC_EXPONENT | CKA_EC_PARAMS => {}
            CKA_USAGE_LIMIT if private => {}
            // kagi names a key's objects by its own id; GnuTLS and others always send an ID of
            // their choosing, so it is taken and replaced (the caller is told on stderr).
            CKA_ID => {}
            _ => {
                return Err(Error::new(
                    CKR_ATTRIBUTE_TYPE_INVALID,
                    format!("kagi's key generation does not take attribute 0x{ty:x}"),
                ))
            }
        }
    }
    Ok(())
}

pub fn key_request(
    mechanism: CK_MECHANISM_TYPE,
    public: &Template,
    private: &Template,
) -> Result<KeyRequest> {
    let mut dropped = Vec::new();
    check_common(public, false, &mut dropped)?;
    check_common(private, true, &mut dropped)?;
    let either = |ty| find(private, ty).or_else(|| find(public, ty));
    let alg = match mechanism {
        CKM_RSA_PKCS_KEY_PAIR_GEN => {
            let bits = find(public, CKA_MODULUS_BITS)
                .ok_or_else(|| Error::new(CKR_TEMPLATE_INCOMPLETE, "RSA needs CKA_MODULUS_BITS"))?;
            if let Some(e) = find(public, CKA_PUBLIC_EXPONENT) {
                if der::unsigned(e) != [1, 0, 1] {
                    return Err(invalid("kagi's RSA keys have the public exponent 65537"));
                }
            }
            match as_ulong(bits)? {
                2048 => Alg::Rsa(2048),
                3072 => Alg::Rsa(3072),
                4096 => Alg::Rsa(4096),
                _ => return Err(invalid("kagi makes RSA keys of 2048, 3072 or 4096 bits")),
            }
        }
        CKM_EC_KEY_PAIR_GEN => {
            let params = find(public, CKA_EC_PARAMS)
                .ok_or_else(|| Error::new(CKR_TEMPLATE_INCOMPLETE, "EC needs CKA_EC_PARAMS"))?;
            match der::single(params, der::OID) {
                Some(der::OID_P256) => Alg::EcP256,
                Some(der::OID_P384) => Alg::EcP384,
                _ => return Err(invalid("kagi makes EC keys on P-256 or P-384")),
            }
        }
        CKM_EC_EDWARDS_KEY_PAIR_GEN => {
            if let Some(params) = find(public, CKA_EC_PARAMS) {
                let oid = der::single(params, der::OID) == Some(der::OID_ED25519);
                let name = der::single(params, der::PRINTABLE_STRING) == Some(b"edwards25519");
                if !oid && !name {
                    return Err(invalid("kagi makes Edwards keys on edwards25519 (Ed25519)"));
                }
            }
            Alg::Ed25519
        }
        _ => {
            return Err(Error::new(
                CKR_MECHANISM_INVALID,
                format!("kagi generates key pairs with the RSA, EC and Edwards key-pair mechanisms, not 0x{mechanism:x}"),
            ))
        }
    };
    if let Some(t) = either(CKA_KEY_TYPE) {
        if as_ulong(t)? != alg.key_type() {
            return Err(Error::rv(CKR_TEMPLATE_INCONSISTENT));
        }
    }
    let label = either(CKA_LABEL)
        .ok_or_else(|| Error::new(CKR_TEMPLATE_INCOMPLETE, "name the key with CKA_LABEL"))?;
    let label = std::str::from_utf8(label)
        .map_err(|_| invalid("CKA_LABEL must be UTF-8"))?
        .to_string();
    if let (Some(a), Some(b)) = (find(public, CKA_LABEL), find(private, CKA_LABEL)) {
        if a != b {
            return Err(Error::new(
                CKR_TEMPLATE_INCONSISTENT,
                "a kagi key has one label: give both templates the same CKA_LABEL",
            ));
        }
    }
    let usage_limit = match find(private, CKA_USAGE_LIMIT) {
        Some(v) => {
            Some(i64::try_from(as_ulong(v)?).map_err(|_| Error::rv(CKR_ATTRIBUTE_VALUE_INVALID))?)
        }
        None => None,
    };
    Ok(KeyRequest {
        label,
        alg,
        usage_limit,
        dropped,
    })
}

impl crate::module::Module {
    /// C_GenerateKeyPair: the service makes the key (an officer's credential may be needed);
    /// returns the (public, private) handles.
    pub fn generate_key_pair(
        &self,
        h: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        public: &Template,
        private: &Template,
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        let session = self.session(h)?;
        let (slot, rw) = {
            let s = crate::module::lock(&session);
            (s.slot, s.read_write)
        };
        let token = self.credential(slot)?;
        if !rw {
            return Err(Error::rv(CKR_SESSION_READ_ONLY));
        }
        let req = key_request(mechanism, public, private)?;
        let info =
            self.client
                .create_key(token.as_ref(), &req.label, req.alg.name(), req.usage_limit)?;
        if !req.dropped.is_empty() {
            let names: Vec<String> = req.dropped.iter().map(|t| format!("0x{t:x}")).collect();
            eprintln!(
                "kagi-pkcs11: key '{}' only signs and verifies; the template's usages {} are FALSE",
                info.label,
                names.join(", ")
            );
        }
        let asked_id = find(private, CKA_ID).or_else(|| find(public, CKA_ID));
        if asked_id.is_some_and(|id| id != info.id.as_bytes()) {
            eprintln!(
                "kagi-pkcs11: key '{}' has CKA_ID {} (kagi's key id), not the one the template asked for",
                info.label,
                hex::encode(info.id.as_bytes())
            );
        }
        let (private_h, public_h) = self.remember_key(slot, info)?;
        Ok((public_h, private_h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ul(v: CK_ULONG) -> Vec<u8> {
        v.to_ne_bytes().to_vec()
    }

    #[test]
    fn each_mechanism_maps_to_a_kagi_algorithm() {
        let label = (CKA_LABEL, b"k1".to_vec());
        let rsa = key_request(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            &[
                (CKA_MODULUS_BITS, ul(3072)),
                (CKA_PUBLIC_EXPONENT, vec![1, 0, 1]),
            ],
            &[label.clone(), (CKA_USAGE_LIMIT, ul(10))],
        )
        .unwrap();
        assert_eq!(rsa.alg, Alg::Rsa(3072));
        assert_eq!(rsa.usage_limit, Some(10));
        let p384 = der::encode(der::OID, der::OID_P384);
        let ec = key_request(
            CKM_EC_KEY_PAIR_GEN,
            &[(CKA_EC_PARAMS, p384), label.clone()],
            &[],
        )
        .unwrap();
        assert_eq!(ec.alg, Alg::EcP384);
        assert_eq!(ec.label, "k1");
        let name = der::encode(der::PRINTABLE_STRING, b"edwards25519");
        let ed = key_request(
            CKM_EC_EDWARDS_KEY_PAIR_GEN,
            &[(CKA_EC_PARAMS, name)],
            std::slice::from_ref(&label),
        )
        .unwrap();
        assert_eq!(ed.alg, Alg::Ed25519);
    }

    #[test]
    fn templates_asking_for_an_extractable_or_odd_key_are_refused() {
        let label = (CKA_LABEL, b"k1".to_vec());
        let bits = (CKA_MODULUS_BITS, ul(2048));
        let refused = |public: &Template, private: &Template| {
            key_request(CKM_RSA_PKCS_KEY_PAIR_GEN, public, private)
                .unwrap_err()
                .code()
        };
        assert_eq!(
            refused(
                std::slice::from_ref(&bits),
                &[label.clone(), (CKA_EXTRACTABLE, vec![1])]
            ),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert_eq!(
            refused(
                std::slice::from_ref(&bits),
                &[label.clone(), (CKA_SENSITIVE, vec![0])]
            ),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert_eq!(
            refused(
                &[(CKA_MODULUS_BITS, ul(1024))],
                std::slice::from_ref(&label)
            ),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert_eq!(
            refused(
                &[bits.clone(), (CKA_PUBLIC_EXPONENT, vec![3])],
                std::slice::from_ref(&label)
            ),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert_eq!(
            refused(std::slice::from_ref(&bits), &[]),
            CKR_TEMPLATE_INCOMPLETE
        );
        assert_eq!(
            refused(&[], std::slice::from_ref(&label)),
            CKR_TEMPLATE_INCOMPLETE
        );
        // A caller's CKA_ID is taken (and replaced by kagi's), and usages kagi keys lack are
        // noted, not granted.
        let r = key_request(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            std::slice::from_ref(&bits),
            &[label.clone(), (CKA_DECRYPT, vec![1]), (CKA_DERIVE, vec![0])],
        )
        .unwrap();
        assert_eq!(r.dropped, vec![CKA_DECRYPT]);
        assert!(key_request(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            &[bits],
            &[label, (CKA_ID, vec![1])]
        )
        .is_ok());
    }
}
