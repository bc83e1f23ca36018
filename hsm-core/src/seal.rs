//! Master key, key derivation and the AES-256-GCM seal of key material at rest.
//!
//! Derived keys: HKDF-SHA256 over the 256-bit master key, one info string per purpose, so a
//! partition's sealing key, the audit MAC key and the master-key check are independent.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{HsmError, Result};

pub(crate) const MASTER_KEY_LEN: usize = 32;
const HKDF_SALT: &[u8] = b"kagi hsm-core v1";

/// The 256-bit master key. Lives only in memory, zeroized on drop.
pub(crate) struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl MasterKey {
    pub(crate) fn generate() -> Result<Self> {
        let mut k = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        SystemRandom::new().fill(&mut k[..])?;
        Ok(MasterKey(k))
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Result<Self> {
        let arr: [u8; MASTER_KEY_LEN] = b.try_into().map_err(|_| {
            HsmError::BadShare("the shares combine to a value of the wrong length".into())
        })?;
        Ok(MasterKey(Zeroizing::new(arr)))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0[..]
    }

    /// Derive a 32-byte key for one purpose.
    pub(crate) fn derive(&self, info: &str) -> Result<Zeroizing<[u8; 32]>> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(&self.0[..]);
        let info_parts = [info.as_bytes()];
        let okm = prk.expand(&info_parts, hkdf::HKDF_SHA256)?;
        let mut out = Zeroizing::new([0u8; 32]);
        okm.fill(&mut out[..])?;
        Ok(out)
    }

    pub(crate) fn sealer(&self, info: &str) -> Result<Sealer> {
        Sealer::new(&self.derive(info)?[..])
    }
}

/// An AES-256-GCM key with random 96-bit nonces. Blob layout: nonce || ciphertext || tag.
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// A sealer under a key that does not come from the master key (a key password's).
    pub(crate) fn from_key(key: &[u8]) -> Result<Self> {
        Self::new(key)
    }

    fn new(key: &[u8]) -> Result<Self> {
        Ok(Sealer {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key)?),
        })
    }

    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce)?;
        let mut buf = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        buf.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )?;
        buf.extend_from_slice(&body);
        zeroize::Zeroize::zeroize(&mut body);
        Ok(buf)
    }

    /// Returns `None` when the blob or the associated data was changed.
    pub(crate) fn open(&self, blob: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if blob.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf[..])
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

pub(crate) fn partition_info(partition: &str) -> String {
    format!("kagi/partition-seal/v1/{partition}")
}

pub(crate) const CHECK_INFO: &str = "kagi/master-check/v1";
pub(crate) const CHECK_PLAINTEXT: &[u8] = b"kagi master key check";
pub(crate) const AUDIT_MAC_INFO: &str = "kagi/audit-mac/v1";
/// Seed of the transparency log's Ed25519 key.
pub(crate) const TLOG_KEY_INFO: &str = "kagi/tlog-key/v1";
/// MACs over stored policy documents and approval requests.
pub(crate) const RECORD_MAC_INFO: &str = "kagi/record-mac/v1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_roundtrip_and_aad_binding() {
        let mk = MasterKey::generate().unwrap();
        let s = mk.sealer("p").unwrap();
        let blob = s.seal(b"secret", b"attrs").unwrap();
        assert_eq!(&s.open(&blob, b"attrs").unwrap()[..], b"secret");
        assert!(s.open(&blob, b"attrz").is_none());
        let other = mk.sealer("q").unwrap();
        assert!(other.open(&blob, b"attrs").is_none());
        let mut bad = blob.clone();
        bad[14] ^= 1;
        assert!(s.open(&bad, b"attrs").is_none());
    }
}
