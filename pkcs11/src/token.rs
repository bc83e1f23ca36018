//! Slots, tokens and mechanisms: one slot per configured partition, its token always present.
#![forbid(unsafe_code)]

use cryptoki_sys::*;

use crate::error::{Error, Result};
use crate::module::Module;
use crate::sign::{EC_MECHANISMS, EDDSA_MECHANISMS, RSA_MECHANISMS};

pub const MANUFACTURER: &str = "kagi";

pub struct SlotInfo {
    pub description: String,
}

pub struct TokenInfo {
    pub label: String,
    pub serial: String,
    pub flags: CK_FLAGS,
    pub sessions: usize,
    pub rw_sessions: usize,
}

pub struct MechanismInfo {
    pub min_key_size: CK_ULONG,
    pub max_key_size: CK_ULONG,
    pub flags: CK_FLAGS,
}

const KEY_PAIR_GEN: [CK_MECHANISM_TYPE; 3] = [
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKM_EC_KEY_PAIR_GEN,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
];

const EC_FLAGS: CK_FLAGS = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;

impl Module {
    pub fn slot_ids(&self) -> Vec<CK_SLOT_ID> {
        (0..self.slots.len() as CK_SLOT_ID).collect()
    }

    pub fn slot_info(&self, id: CK_SLOT_ID) -> Result<SlotInfo> {
        let slot = self.slot(id)?;
        Ok(SlotInfo {
            description: format!("kagi partition {} at {}", slot.config.label, self.url),
        })
    }

    pub fn token_info(&self, id: CK_SLOT_ID) -> Result<TokenInfo> {
        let slot = self.slot(id)?;
        let mut flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED;
        // A slot the configuration gives a credential is usable without C_Login, like the
        // `kagi` CLI beside a dev instance; otherwise the PIN is the partition's token.
        if slot.config.token.is_none() && !slot.config.certificate_login {
            flags |= CKF_LOGIN_REQUIRED;
        }
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("{}\n{}", self.url, slot.config.label).as_bytes(),
        );
        let (sessions, rw_sessions) = self.session_count(id);
        Ok(TokenInfo {
            label: slot.config.label.clone(),
            serial: hex::encode(&digest.as_ref()[..8]),
            flags,
            sessions,
            rw_sessions,
        })
    }

    pub fn mechanisms(&self, id: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>> {
        self.slot(id)?;
        let mut all = Vec::new();
        all.extend_from_slice(&KEY_PAIR_GEN);
        all.extend_from_slice(&RSA_MECHANISMS);
        all.extend_from_slice(&EC_MECHANISMS);
        all.extend_from_slice(&EDDSA_MECHANISMS);
        Ok(all)
    }

    pub fn mechanism_info(&self, id: CK_SLOT_ID, m: CK_MECHANISM_TYPE) -> Result<MechanismInfo> {
        self.slot(id)?;
        let info = |min, max, flags| MechanismInfo {
            min_key_size: min,
            max_key_size: max,
            flags,
        };
        Ok(match m {
            CKM_RSA_PKCS_KEY_PAIR_GEN => info(2048, 4096, CKF_GENERATE_KEY_PAIR),
            CKM_EC_KEY_PAIR_GEN => info(256, 384, CKF_GENERATE_KEY_PAIR | EC_FLAGS),
            CKM_EC_EDWARDS_KEY_PAIR_GEN => info(255, 255, CKF_GENERATE_KEY_PAIR),
            m if RSA_MECHANISMS.contains(&m) => info(2048, 4096, CKF_SIGN),
            m if EC_MECHANISMS.contains(&m) => info(256, 384, CKF_SIGN | EC_FLAGS),
            CKM_EDDSA => info(255, 255, CKF_SIGN),
            _ => return Err(Error::rv(CKR_MECHANISM_INVALID)),
        })
    }
}
