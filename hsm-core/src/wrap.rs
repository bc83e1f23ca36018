//! Key wrapping for import and export: RSA-OAEP (SHA-256) of a fresh AES-256 key, followed by
//! the key material wrapped with that AES key by AES-KWP (RFC 5649), the layout of PKCS#11
//! CKM_RSA_AES_KEY_WRAP and of AWS KMS's RSA_AES_KEY_WRAP_SHA_256 import.

use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded, AES_256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
    OAEP_SHA256_MGF1SHA256,
};
use zeroize::Zeroizing;

use crate::error::{HsmError, Result};

/// Name of the mechanism, as reported to clients.
pub const WRAP_MECHANISM: &str = "RSA-OAEP-SHA256+AES-256-KWP";

/// Wrap `pkcs8` for the holder of the RSA private key whose SPKI is `wrapping_spki`.
/// Used by clients importing a key, and by the HSM exporting one to a trusted key.
pub fn wrap_for_import(wrapping_spki: &[u8], pkcs8: &[u8]) -> Result<Vec<u8>> {
    let public = PublicEncryptingKey::from_der(wrapping_spki).map_err(|_| {
        HsmError::BadInput("the wrapping key is not an RSA public key (SPKI DER)".into())
    })?;
    let oaep = OaepPublicEncryptingKey::new(public)?;
    let mut aes = Zeroizing::new([0u8; 32]);
    SystemRandom::new().fill(&mut aes[..])?;
    let mut head = vec![0u8; oaep.ciphertext_size()];
    let head_len = oaep
        .encrypt(&OAEP_SHA256_MGF1SHA256, &aes[..], &mut head, None)?
        .len();
    head.truncate(head_len);
    let kek = AesKek::new(&AES_256, &aes[..])?;
    let mut body = vec![0u8; pkcs8.len() + 16];
    let body_len = kek.wrap_with_padding(pkcs8, &mut body)?.len();
    body.truncate(body_len);
    head.extend_from_slice(&body);
    Ok(head)
}

/// Reverse of [`wrap_for_import`] with the RSA private key (PKCS#8) of the wrapping key.
pub(crate) fn unwrap(wrapping_pkcs8: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let private = PrivateDecryptingKey::from_pkcs8(wrapping_pkcs8)
        .map_err(|_| HsmError::Crypto("the import key is not an RSA key"))?;
    let oaep = OaepPrivateDecryptingKey::new(private)?;
    let n = oaep.key_size_bytes();
    if wrapped.len() <= n + 8 {
        return Err(HsmError::UnwrapFailed);
    }
    let (head, body) = wrapped.split_at(n);
    let mut aes = Zeroizing::new(vec![0u8; n]);
    let aes_len = oaep
        .decrypt(&OAEP_SHA256_MGF1SHA256, head, &mut aes[..], None)
        .map_err(|_| HsmError::UnwrapFailed)?
        .len();
    if aes_len != 32 {
        return Err(HsmError::UnwrapFailed);
    }
    let kek = AesKek::new(&AES_256, &aes[..32]).map_err(|_| HsmError::UnwrapFailed)?;
    let mut out = Zeroizing::new(vec![0u8; body.len()]);
    let len = kek
        .unwrap_with_padding(body, &mut out[..])
        .map_err(|_| HsmError::UnwrapFailed)?
        .len();
    out.truncate(len);
    Ok(out)
}
