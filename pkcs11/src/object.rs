//! The objects a partition shows: for every key a private key and a public key, and a
//! certificate when the key has one. Attribute values are computed from the key as the
//! service lists it; nothing secret ever reaches the module, so the private-key attributes
//! that would hold secrets answer CKR_ATTRIBUTE_SENSITIVE.
#![forbid(unsafe_code)]

use base64::Engine;
use cryptoki_sys::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::KeyInfo;
use crate::der::{self, PublicKey};
use crate::error::{Error, Result};

/// Luna's vendor attributes for usage limits, which kagi enforces on the service.
pub const CKA_USAGE_LIMIT: CK_ATTRIBUTE_TYPE = 0x8000_0200;
pub const CKA_USAGE_COUNT: CK_ATTRIBUTE_TYPE = 0x8000_0101;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    PrivateKey,
    PublicKey,
    Certificate,
}

impl Kind {
    pub fn class(self) -> CK_OBJECT_CLASS {
        match self {
            Kind::PrivateKey => CKO_PRIVATE_KEY,
            Kind::PublicKey => CKO_PUBLIC_KEY,
            Kind::Certificate => CKO_CERTIFICATE,
        }
    }
}

/// kagi's key algorithms, as PKCS#11 sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EcP256,
    EcP384,
    Rsa(usize),
    Ed25519,
}

impl Alg {
    pub fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "ec-p256" => Alg::EcP256,
            "ec-p384" => Alg::EcP384,
            "rsa-2048" => Alg::Rsa(2048),
            "rsa-3072" => Alg::Rsa(3072),
            "rsa-4096" => Alg::Rsa(4096),
            "ed25519" => Alg::Ed25519,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::EcP256 => "ec-p256",
            Alg::EcP384 => "ec-p384",
            Alg::Rsa(3072) => "rsa-3072",
            Alg::Rsa(4096) => "rsa-4096",
            Alg::Rsa(_) => "rsa-2048",
            Alg::Ed25519 => "ed25519",
        }
    }

    pub fn key_type(self) -> CK_KEY_TYPE {
        match self {
            Alg::EcP256 | Alg::EcP384 => CKK_EC,
            Alg::Rsa(_) => CKK_RSA,
            Alg::Ed25519 => CKK_EC_EDWARDS,
        }
    }

    pub fn key_gen_mechanism(self) -> CK_MECHANISM_TYPE {
        match self {
            Alg::EcP256 | Alg::EcP384 => CKM_EC_KEY_PAIR_GEN,
            Alg::Rsa(_) => CKM_RSA_PKCS_KEY_PAIR_GEN,
            Alg::Ed25519 => CKM_EC_EDWARDS_KEY_PAIR_GEN,
        }
    }

    /// Bytes of one ECDSA coordinate (r or s), for EC keys.
    pub fn field_len(self) -> usize {
        match self {
            Alg::EcP384 => 48,
            _ => 32,
        }
    }

    pub fn signature_len(self) -> usize {
        match self {
            Alg::EcP256 => 64,
            Alg::EcP384 => 96,
            Alg::Rsa(bits) => bits / 8,
            Alg::Ed25519 => 64,
        }
    }
}

/// A key of the partition, with its public half decoded.
#[derive(Debug)]
pub struct Key {
    pub info: KeyInfo,
    pub alg: Alg,
    pub spki: Vec<u8>,
    pub public: PublicKey,
    /// When the service last showed this key alive: C_GetAttributeValue asks again past
    /// [`FRESH`], so a key destroyed since goes invalid.
    pub seen: Instant,
}

/// How long attributes read from the service answer C_GetAttributeValue without asking it
/// again: long enough that reading an object's attributes right after a search costs no call,
/// short enough that a handle kept by a long-running program sees a destroyed key soon.
pub const FRESH: Duration = Duration::from_secs(1);

impl Key {
    pub fn new(info: KeyInfo) -> Result<Key> {
        let bad = || {
            Error::device(format!(
                "kagi listed key '{}' with an algorithm or public key this module does not know",
                info.label
            ))
        };
        let alg = Alg::from_name(&info.algorithm).ok_or_else(bad)?;
        let spki = base64::engine::general_purpose::STANDARD
            .decode(&info.public_key_der)
            .map_err(|_| bad())?;
        let public = der::parse_spki(&spki).ok_or_else(bad)?;
        Ok(Key {
            info,
            alg,
            spki,
            public,
            seen: Instant::now(),
        })
    }

    /// CKA_ID: the bytes of kagi's key id, stable for the key's life and the same on its
    /// private key, public key and certificate.
    pub fn ckid(&self) -> &[u8] {
        self.info.id.as_bytes()
    }

    /// CKA_SIGN: false for a key that will never sign again (deactivated or compromised),
    /// so applications pick another; a suspended key keeps it, since it signs again once
    /// resumed. A key past its signing period reads `deactivated` too.
    pub fn can_sign(&self) -> bool {
        let retired = matches!(
            self.info.lifecycle.as_deref(),
            Some("deactivated" | "compromised")
        );
        !retired && self.info.operations.iter().any(|o| o == "sign")
    }

    /// A trusted wrapping key (kagi wraps exports with it; this module does not).
    pub fn can_wrap(&self) -> bool {
        self.info.trusted && self.info.operations.iter().any(|o| o == "wrap")
    }
}

/// One object: its kind, its key, and the certificate DER for certificates.
#[derive(Debug, Clone)]
pub struct Object {
    pub kind: Kind,
    pub key: Arc<Key>,
    pub certificate: Option<Arc<Vec<u8>>>,
}

/// An attribute's value, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bytes(Vec<u8>),
    Sensitive,
    Invalid,
}

pub fn ulong(v: CK_ULONG) -> Value {
    Value::Bytes(v.to_ne_bytes().to_vec())
}

pub fn bool_value(b: bool) -> Value {
    Value::Bytes(vec![if b { CK_TRUE } else { CK_FALSE }])
}

fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

impl Object {
    pub fn attribute(&self, ty: CK_ATTRIBUTE_TYPE) -> Value {
        let key = &self.key;
        // Common to every object.
        match ty {
            CKA_CLASS => return ulong(self.kind.class()),
            CKA_TOKEN => return bool_value(true),
            CKA_PRIVATE => return bool_value(self.kind == Kind::PrivateKey),
            CKA_MODIFIABLE | CKA_COPYABLE | CKA_DESTROYABLE => return bool_value(false),
            CKA_LABEL => return bytes(key.info.label.as_bytes()),
            CKA_ID => return bytes(key.ckid()),
            _ => {}
        }
        match self.kind {
            Kind::Certificate => self.certificate_attribute(ty),
            Kind::PrivateKey | Kind::PublicKey => self.key_attribute(ty),
        }
    }

    fn certificate_attribute(&self, ty: CK_ATTRIBUTE_TYPE) -> Value {
        let Some(cert) = &self.certificate else {
            return Value::Invalid;
        };
        let names = der::certificate_names(cert);
        match ty {
            CKA_CERTIFICATE_TYPE => ulong(CKC_X_509),
            CKA_TRUSTED => bool_value(false),
            CKA_CERTIFICATE_CATEGORY => ulong(CK_CERTIFICATE_CATEGORY_UNSPECIFIED),
            CKA_VALUE => bytes(cert),
            CKA_SUBJECT => names.map_or(Value::Invalid, |n| Value::Bytes(n.subject)),
            CKA_ISSUER => names.map_or(Value::Invalid, |n| Value::Bytes(n.issuer)),
            CKA_SERIAL_NUMBER => names.map_or(Value::Invalid, |n| Value::Bytes(n.serial)),
            CKA_PUBLIC_KEY_INFO => bytes(&self.key.spki),
            _ => Value::Invalid,
        }
    }

    fn key_attribute(&self, ty: CK_ATTRIBUTE_TYPE) -> Value {
        let key = &self.key;
        let private = self.kind == Kind::PrivateKey;
        let public_only = |v: Value| if private { Value::Invalid } else { v };
        let private_only = |v: Value| if private { v } else { Value::Invalid };
        match ty {
            CKA_KEY_TYPE => ulong(key.alg.key_type()),
            CKA_LOCAL => bool_value(key.info.local),
            CKA_KEY_GEN_MECHANISM => ulong(if key.info.local {
                key.alg.key_gen_mechanism()
            } else {
                CK_UNAVAILABLE_INFORMATION
            }),
            CKA_DERIVE => bool_value(false),
            CKA_START_DATE | CKA_END_DATE | CKA_SUBJECT => Value::Bytes(Vec::new()),
            CKA_ALLOWED_MECHANISMS => {
                let mut out = Vec::new();
                for m in crate::sign::mechanisms_for(key.alg) {
                    out.extend_from_slice(&m.to_ne_bytes());
                }
                Value::Bytes(out)
            }
            CKA_PUBLIC_KEY_INFO => bytes(&key.spki),
            CKA_USAGE_LIMIT => match key.info.usage_limit {
                Some(limit) => ulong(limit.max(0) as CK_ULONG),
                None => Value::Invalid,
            },
            CKA_USAGE_COUNT => ulong(key.info.usage_count.max(0) as CK_ULONG),
            // A private key's secrets never leave kagi.
            CKA_VALUE | CKA_PRIVATE_EXPONENT | CKA_PRIME_1 | CKA_PRIME_2 | CKA_EXPONENT_1
            | CKA_EXPONENT_2 | CKA_COEFFICIENT
                if private =>
            {
                Value::Sensitive
            }
            // The mapping ARCHITECTURE.md gives ("Key attributes and PKCS#11"): what kagi
            // sealed with the key, told as it is. Extractable means "exportable wrapped to a
            // trusted key" through kagi's API; this module wraps nothing.
            CKA_SENSITIVE => private_only(bool_value(true)),
            CKA_ALWAYS_SENSITIVE => private_only(bool_value(key.info.local)),
            CKA_EXTRACTABLE | CKA_WRAP_WITH_TRUSTED => {
                private_only(bool_value(key.info.exportable_under_wrap))
            }
            CKA_NEVER_EXTRACTABLE => private_only(bool_value(key.info.never_extractable)),
            CKA_SIGN => private_only(bool_value(key.can_sign())),
            CKA_UNWRAP => private_only(bool_value(key.can_wrap())),
            CKA_ALWAYS_AUTHENTICATE => private_only(bool_value(key.info.key_auth)),
            CKA_DECRYPT | CKA_SIGN_RECOVER => private_only(bool_value(false)),
            CKA_VERIFY => public_only(bool_value(true)),
            CKA_WRAP | CKA_TRUSTED => public_only(bool_value(key.can_wrap())),
            CKA_ENCRYPT | CKA_VERIFY_RECOVER => public_only(bool_value(false)),
            CKA_MODULUS | CKA_PUBLIC_EXPONENT | CKA_MODULUS_BITS => match &key.public {
                PublicKey::Rsa { modulus, exponent } => match ty {
                    CKA_MODULUS => bytes(modulus),
                    CKA_PUBLIC_EXPONENT => bytes(exponent),
                    _ => ulong((modulus.len() * 8) as CK_ULONG),
                },
                _ => Value::Invalid,
            },
            CKA_EC_PARAMS => match &key.public {
                PublicKey::Ec { params, .. } => bytes(params),
                PublicKey::Ed25519 { .. } => Value::Bytes(der::encode(der::OID, der::OID_ED25519)),
                PublicKey::Rsa { .. } => Value::Invalid,
            },
            CKA_EC_POINT => match &key.public {
                PublicKey::Ec { point, .. } => {
                    public_only(Value::Bytes(der::encode(der::OCTET_STRING, point)))
                }
                PublicKey::Ed25519 { key } => {
                    public_only(Value::Bytes(der::encode(der::OCTET_STRING, key)))
                }
                PublicKey::Rsa { .. } => Value::Invalid,
            },
            _ => Value::Invalid,
        }
    }

    /// Whether the object has every attribute of a C_FindObjectsInit template, byte for byte.
    pub fn matches(&self, template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> bool {
        template
            .iter()
            .all(|(ty, want)| matches!(self.attribute(*ty), Value::Bytes(have) if &have == want))
    }
}
