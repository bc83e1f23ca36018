//! Signing mechanisms. The service signs a digest: this module turns each PKCS#11 mechanism's
//! input into a digest, its algorithm and the RSA padding (hashing locally for the
//! hash-and-sign mechanisms), and the service's answer into PKCS#11's format (ECDSA: r || s).
#![forbid(unsafe_code)]

use aws_lc_rs::digest;
use cryptoki_sys::*;
use std::sync::Arc;
use zeroize::Zeroizing;

use crate::client::SignRequest;
use crate::der;
use crate::error::{Error, Result};
use crate::object::{Alg, Key};

/// What C_SignUpdate may buffer for a single-shot mechanism before refusing.
const MAX_BUFFERED: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn of_mechanism(m: CK_MECHANISM_TYPE) -> Option<Hash> {
        match m {
            CKM_SHA256 => Some(Hash::Sha256),
            CKM_SHA384 => Some(Hash::Sha384),
            CKM_SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn of_oid(oid: &[u8]) -> Option<Hash> {
        match oid {
            der::OID_SHA256 => Some(Hash::Sha256),
            der::OID_SHA384 => Some(Hash::Sha384),
            der::OID_SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn of_len(len: usize) -> Option<Hash> {
        match len {
            32 => Some(Hash::Sha256),
            48 => Some(Hash::Sha384),
            64 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn mgf(self) -> CK_RSA_PKCS_MGF_TYPE {
        match self {
            Hash::Sha256 => CKG_MGF1_SHA256,
            Hash::Sha384 => CKG_MGF1_SHA384,
            Hash::Sha512 => CKG_MGF1_SHA512,
        }
    }

    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
        }
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        }
    }
}

/// A mechanism's parameter, as the FFI layer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    None,
    Pss {
        hash: CK_MECHANISM_TYPE,
        mgf: CK_RSA_PKCS_MGF_TYPE,
        salt_len: CK_ULONG,
    },
    Eddsa {
        prehash: bool,
        context_len: usize,
    },
    /// A parameter this mechanism does not take, or one of the wrong size.
    Unexpected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mechanism {
    /// A DigestInfo in.
    RsaPkcs,
    RsaPkcsWith(Hash),
    /// A digest in.
    RsaPss(Hash),
    RsaPssWith(Hash),
    /// A digest of any length in.
    Ecdsa,
    EcdsaWith(Hash),
    /// The message in; kagi signs 32, 48 or 64 bytes.
    Eddsa,
}

/// The signing mechanisms, per key family.
pub const RSA_MECHANISMS: [CK_MECHANISM_TYPE; 8] = [
    CKM_RSA_PKCS,
    CKM_SHA256_RSA_PKCS,
    CKM_SHA384_RSA_PKCS,
    CKM_SHA512_RSA_PKCS,
    CKM_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS_PSS,
];
pub const EC_MECHANISMS: [CK_MECHANISM_TYPE; 4] = [
    CKM_ECDSA,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512,
];
pub const EDDSA_MECHANISMS: [CK_MECHANISM_TYPE; 1] = [CKM_EDDSA];

pub fn mechanisms_for(alg: Alg) -> &'static [CK_MECHANISM_TYPE] {
    match alg {
        Alg::Rsa(_) => &RSA_MECHANISMS,
        Alg::EcP256 | Alg::EcP384 => &EC_MECHANISMS,
        Alg::Ed25519 => &EDDSA_MECHANISMS,
    }
}

fn param_invalid(why: &str) -> Error {
    Error::new(CKR_MECHANISM_PARAM_INVALID, why)
}

fn pss_hash(param: &Param, want: Option<Hash>) -> Result<Hash> {
    let Param::Pss {
        hash,
        mgf,
        salt_len,
    } = param
    else {
        return Err(param_invalid("RSA-PSS needs CK_RSA_PKCS_PSS_PARAMS"));
    };
    let h = Hash::of_mechanism(*hash)
        .ok_or_else(|| param_invalid("kagi's RSA-PSS hashes with SHA-256, SHA-384 or SHA-512"))?;
    if want.is_some_and(|w| w != h) {
        return Err(param_invalid(
            "the PSS parameters name another hash than the mechanism",
        ));
    }
    if *mgf != h.mgf() || *salt_len as usize != h.output_len() {
        return Err(param_invalid(
            "kagi's RSA-PSS uses MGF1 with the same hash and a salt as long as the hash",
        ));
    }
    Ok(h)
}

impl Mechanism {
    fn new(m: CK_MECHANISM_TYPE, param: &Param, alg: Alg) -> Result<Mechanism> {
        let mech = match m {
            CKM_RSA_PKCS => Mechanism::RsaPkcs,
            CKM_SHA256_RSA_PKCS => Mechanism::RsaPkcsWith(Hash::Sha256),
            CKM_SHA384_RSA_PKCS => Mechanism::RsaPkcsWith(Hash::Sha384),
            CKM_SHA512_RSA_PKCS => Mechanism::RsaPkcsWith(Hash::Sha512),
            CKM_RSA_PKCS_PSS => Mechanism::RsaPss(pss_hash(param, None)?),
            CKM_SHA256_RSA_PKCS_PSS => Mechanism::RsaPssWith(pss_hash(param, Some(Hash::Sha256))?),
            CKM_SHA384_RSA_PKCS_PSS => Mechanism::RsaPssWith(pss_hash(param, Some(Hash::Sha384))?),
            CKM_SHA512_RSA_PKCS_PSS => Mechanism::RsaPssWith(pss_hash(param, Some(Hash::Sha512))?),
            CKM_ECDSA => Mechanism::Ecdsa,
            CKM_ECDSA_SHA256 => Mechanism::EcdsaWith(Hash::Sha256),
            CKM_ECDSA_SHA384 => Mechanism::EcdsaWith(Hash::Sha384),
            CKM_ECDSA_SHA512 => Mechanism::EcdsaWith(Hash::Sha512),
            CKM_EDDSA => {
                match param {
                    Param::None
                    | Param::Eddsa {
                        prehash: false,
                        context_len: 0,
                    } => {}
                    _ => {
                        return Err(param_invalid(
                            "kagi signs pure Ed25519: no prehash, no context",
                        ))
                    }
                }
                Mechanism::Eddsa
            }
            _ => return Err(Error::rv(CKR_MECHANISM_INVALID)),
        };
        let pss = matches!(mech, Mechanism::RsaPss(_) | Mechanism::RsaPssWith(_));
        if !pss && !matches!(mech, Mechanism::Eddsa) && *param != Param::None {
            return Err(param_invalid("this mechanism takes no parameter"));
        }
        if !mechanisms_for(alg).contains(&m) {
            return Err(Error::rv(CKR_KEY_TYPE_INCONSISTENT));
        }
        Ok(mech)
    }
}

enum Input {
    Hashing(digest::Context),
    Buffer(Vec<u8>),
}

/// An active C_SignInit.
pub struct SignOp {
    pub key: Arc<Key>,
    mech: Mechanism,
    input: Input,
    /// C_SignUpdate was called: only C_SignFinal may finish.
    pub multipart: bool,
    /// The key's own password, given by C_Login(CKU_CONTEXT_SPECIFIC) after C_SignInit: kept
    /// for this one operation only (PKCS#11's CKA_ALWAYS_AUTHENTICATE).
    pub context_pin: Option<Zeroizing<String>>,
}

/// A sign request prepared for the service.
pub struct Prepared {
    digest: Vec<u8>,
    hash: Hash,
    padding: Option<&'static str>,
}

impl Prepared {
    pub fn request<'a>(
        &self,
        label: &'a str,
        key_id: &'a str,
        key_password: Option<&'a str>,
    ) -> SignRequest<'a> {
        SignRequest {
            key: label,
            key_id,
            digest: hex::encode(&self.digest),
            digest_alg: self.hash.name(),
            padding: self.padding,
            format: "raw",
            key_password,
        }
    }
}

impl SignOp {
    pub fn new(key: Arc<Key>, mechanism: CK_MECHANISM_TYPE, param: &Param) -> Result<SignOp> {
        let mech = Mechanism::new(mechanism, param, key.alg)?;
        if !key.can_sign() {
            return Err(Error::new(
                CKR_KEY_FUNCTION_NOT_PERMITTED,
                format!(
                    "kagi key '{}' may not sign digests (its operations, or its state: a deactivated or compromised key signs nothing)",
                    key.info.label
                ),
            ));
        }
        let input = match mech {
            Mechanism::RsaPkcsWith(h) | Mechanism::RsaPssWith(h) | Mechanism::EcdsaWith(h) => {
                Input::Hashing(digest::Context::new(h.algorithm()))
            }
            _ => Input::Buffer(Vec::new()),
        };
        Ok(SignOp {
            key,
            mech,
            input,
            multipart: false,
            context_pin: None,
        })
    }

    pub fn signature_len(&self) -> usize {
        self.key.alg.signature_len()
    }

    pub fn update(&mut self, data: &[u8]) -> Result<()> {
        self.multipart = true;
        match &mut self.input {
            Input::Hashing(ctx) => ctx.update(data),
            Input::Buffer(buf) => {
                if buf.len() + data.len() > MAX_BUFFERED {
                    return Err(Error::rv(CKR_DATA_LEN_RANGE));
                }
                buf.extend_from_slice(data);
            }
        }
        Ok(())
    }

    /// The digest to send: `data` is C_Sign's input, or None after C_SignUpdate.
    pub fn prepare(self, data: Option<&[u8]>) -> Result<Prepared> {
        let input: Vec<u8> = match (self.input, data) {
            (Input::Hashing(mut ctx), data) => {
                if let Some(d) = data {
                    ctx.update(d);
                }
                ctx.finish().as_ref().to_vec()
            }
            (Input::Buffer(mut buf), data) => {
                if let Some(d) = data {
                    buf.extend_from_slice(d);
                }
                buf
            }
        };
        let key = &self.key;
        let (digest, hash, padding) = match self.mech {
            Mechanism::RsaPkcsWith(h) => (input, h, Some("pkcs1")),
            Mechanism::RsaPssWith(h) => (input, h, Some("pss")),
            Mechanism::EcdsaWith(h) => (input, h, None),
            Mechanism::RsaPkcs => {
                if input.len() + 11 > key.alg.signature_len() {
                    return Err(Error::rv(CKR_DATA_LEN_RANGE));
                }
                let (oid, digest) = der::parse_digest_info(&input)
                    .ok_or_else(|| Error::new(CKR_DATA_INVALID, "CKM_RSA_PKCS input must be a DigestInfo: kagi signs SHA-256, SHA-384 or SHA-512 digests"))?;
                let h = Hash::of_oid(oid)
                    .filter(|h| h.output_len() == digest.len())
                    .ok_or_else(|| {
                        Error::new(
                            CKR_DATA_INVALID,
                            "kagi signs SHA-256, SHA-384 or SHA-512 DigestInfo only",
                        )
                    })?;
                (digest.to_vec(), h, Some("pkcs1"))
            }
            Mechanism::RsaPss(h) => {
                if input.len() != h.output_len() {
                    return Err(Error::rv(CKR_DATA_LEN_RANGE));
                }
                (input, h, Some("pss"))
            }
            Mechanism::Ecdsa => {
                if input.is_empty() {
                    return Err(Error::rv(CKR_DATA_LEN_RANGE));
                }
                // ECDSA uses the leftmost bits of the digest, as many as the curve has; any
                // shorter digest is the same integer left-padded with zeros. So a digest of any
                // length becomes one of the curve's size without changing the signature.
                let q = key.alg.field_len();
                let mut z = vec![0u8; q];
                if input.len() >= q {
                    z.copy_from_slice(&input[..q]);
                } else {
                    z[q - input.len()..].copy_from_slice(&input);
                }
                let h = if q == 48 { Hash::Sha384 } else { Hash::Sha256 };
                (z, h, None)
            }
            Mechanism::Eddsa => {
                let h = Hash::of_len(input.len()).ok_or_else(|| {
                    Error::new(
                        CKR_DATA_LEN_RANGE,
                        "kagi signs Ed25519 messages of 32, 48 or 64 bytes (a digest): hash the data first",
                    )
                })?;
                (input, h, None)
            }
        };
        Ok(Prepared {
            digest,
            hash,
            padding,
        })
    }

    /// PKCS#11's form of the service's raw signature.
    pub fn finish(key: &Key, signature: Vec<u8>) -> Result<Vec<u8>> {
        match key.alg {
            Alg::EcP256 | Alg::EcP384 => der::ecdsa_der_to_raw(&signature, key.alg.field_len())
                .ok_or_else(|| {
                    Error::device("kagi's ECDSA signature is not a DER Ecdsa-Sig-Value")
                }),
            _ if signature.len() == key.alg.signature_len() => Ok(signature),
            _ => Err(Error::device("kagi's signature has an unexpected length")),
        }
    }
}

impl crate::module::Module {
    pub fn sign_init(
        &self,
        h: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        param: &Param,
        key: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        let session = self.session(h)?;
        if crate::module::lock(&session).sign.is_some() {
            return Err(Error::rv(CKR_OPERATION_ACTIVE));
        }
        let (slot, object) = self.visible_object(h, key).map_err(|e| {
            if e.code() == CKR_OBJECT_HANDLE_INVALID {
                Error::rv(CKR_KEY_HANDLE_INVALID)
            } else {
                e
            }
        })?;
        self.credential(slot)?;
        if object.kind != crate::object::Kind::PrivateKey {
            return Err(Error::rv(CKR_KEY_FUNCTION_NOT_PERMITTED));
        }
        let op = SignOp::new(object.key, mechanism, param)?;
        let mut s = crate::module::lock(&session);
        if s.sign.is_some() {
            return Err(Error::rv(CKR_OPERATION_ACTIVE));
        }
        s.sign = Some(op);
        Ok(())
    }

    /// The length C_Sign or C_SignFinal will return, without ending the operation.
    pub fn signature_len(&self, h: CK_SESSION_HANDLE) -> Result<usize> {
        let session = self.session(h)?;
        let s = crate::module::lock(&session);
        s.sign
            .as_ref()
            .map(SignOp::signature_len)
            .ok_or_else(|| Error::rv(CKR_OPERATION_NOT_INITIALIZED))
    }

    /// C_Login(CKU_CONTEXT_SPECIFIC): the key password for the session's signing operation
    /// (PKCS#11 3.1, 5.6: it follows C_SignInit for a key with CKA_ALWAYS_AUTHENTICATE). kagi
    /// checks the password when C_Sign sends it, where a wrong one is CKR_PIN_INCORRECT.
    pub fn context_login(&self, h: CK_SESSION_HANDLE, pin: &[u8]) -> Result<()> {
        let session = self.session(h)?;
        let mut s = crate::module::lock(&session);
        let op = s
            .sign
            .as_mut()
            .ok_or_else(|| Error::rv(CKR_OPERATION_NOT_INITIALIZED))?;
        let text = std::str::from_utf8(pin).map_err(|_| Error::rv(CKR_PIN_INCORRECT))?;
        if text.is_empty() {
            return Err(Error::rv(CKR_PIN_INCORRECT));
        }
        op.context_pin = Some(Zeroizing::new(text.to_string()));
        Ok(())
    }

    /// End the session's signing operation (a C_Sign that failed on its arguments).
    pub fn sign_abort(&self, h: CK_SESSION_HANDLE) {
        if let Ok(session) = self.session(h) {
            crate::module::lock(&session).sign = None;
        }
    }

    pub fn sign_update(&self, h: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
        let session = self.session(h)?;
        let mut s = crate::module::lock(&session);
        let op = s
            .sign
            .as_mut()
            .ok_or_else(|| Error::rv(CKR_OPERATION_NOT_INITIALIZED))?;
        if let Err(e) = op.update(data) {
            s.sign = None;
            return Err(e);
        }
        Ok(())
    }

    /// C_Sign (`data` Some) or C_SignFinal (None): one call to the service, which checks the
    /// policy, the quotas and the key's usage limit, and audits the signature.
    pub fn sign(&self, h: CK_SESSION_HANDLE, data: Option<&[u8]>) -> Result<Vec<u8>> {
        let session = self.session(h)?;
        let (slot, op) = {
            let mut s = crate::module::lock(&session);
            let op = s
                .sign
                .take()
                .ok_or_else(|| Error::rv(CKR_OPERATION_NOT_INITIALIZED))?;
            (s.slot, op)
        };
        if data.is_some() && op.multipart {
            return Err(Error::rv(CKR_OPERATION_ACTIVE));
        }
        let token = self.credential(slot)?;
        let key = op.key.clone();
        // PKCS#11: a key with CKA_ALWAYS_AUTHENTICATE signs only after a context-specific
        // login for this operation.
        if key.info.key_auth && op.context_pin.is_none() {
            return Err(Error::new(
                CKR_USER_NOT_LOGGED_IN,
                format!(
                    "kagi key '{}' has its own password (CKA_ALWAYS_AUTHENTICATE): call C_Login with CKU_CONTEXT_SPECIFIC and the key's password after C_SignInit",
                    key.info.label
                ),
            ));
        }
        let pin = op.context_pin.clone();
        let prepared = op.prepare(data)?;
        let raw = self
            .client
            .sign(
                token.as_ref(),
                &prepared.request(
                    &key.info.label,
                    &key.info.id,
                    pin.as_deref().map(|p| p.as_str()),
                ),
            )
            .inspect_err(|e| {
                // kagi answered key_not_found: the key was destroyed since the handle was
                // given out, and its handles go invalid.
                if e.code() == CKR_KEY_HANDLE_INVALID {
                    self.forget(slot, &key.info.id);
                }
            })?;
        SignOp::finish(&key, raw)
    }
}
