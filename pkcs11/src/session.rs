//! Sessions and logins. A login belongs to the slot (the application is logged in or not, in
//! every session of the slot, as PKCS#11 says); the user PIN is the partition credential, a
//! kagi token, checked against the service on C_Login.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::module::{lock, new_handle, Login, Module};
use crate::sign::SignOp;

/// An active C_FindObjectsInit: the matching handles, and how many were handed out.
pub struct Find {
    pub handles: Vec<CK_OBJECT_HANDLE>,
    pub next: usize,
}

pub struct Session {
    pub slot: CK_SLOT_ID,
    pub read_write: bool,
    pub find: Option<Find>,
    pub sign: Option<SignOp>,
}

/// What C_GetSessionInfo reports.
pub struct SessionInfo {
    pub slot: CK_SLOT_ID,
    pub state: CK_STATE,
    pub flags: CK_FLAGS,
}

impl Module {
    pub fn open_session(&self, slot: CK_SLOT_ID, flags: CK_FLAGS) -> Result<CK_SESSION_HANDLE> {
        self.slot(slot)?;
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(Error::rv(CKR_SESSION_PARALLEL_NOT_SUPPORTED));
        }
        let h = new_handle();
        let session = Session {
            slot,
            read_write: flags & CKF_RW_SESSION != 0,
            find: None,
            sign: None,
        };
        lock(&self.sessions).insert(h, Arc::new(Mutex::new(session)));
        Ok(h)
    }

    pub fn close_session(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let slot = {
            let mut sessions = lock(&self.sessions);
            let s = sessions
                .remove(&h)
                .ok_or_else(|| Error::rv(CKR_SESSION_HANDLE_INVALID))?;
            let slot = lock(&s).slot;
            slot
        };
        self.after_close(slot);
        Ok(())
    }

    pub fn close_all_sessions(&self, slot: CK_SLOT_ID) -> Result<()> {
        self.slot(slot)?;
        lock(&self.sessions).retain(|_, s| lock(s).slot != slot);
        self.after_close(slot);
        Ok(())
    }

    /// The last session of a slot closed: its login goes back to where it started.
    fn after_close(&self, slot: CK_SLOT_ID) {
        let open = lock(&self.sessions).values().any(|s| lock(s).slot == slot);
        if !open {
            if let Ok(s) = self.slot(slot) {
                s.set_login(s.initial_login());
            }
        }
    }

    pub fn session_count(&self, slot: CK_SLOT_ID) -> (usize, usize) {
        let sessions = lock(&self.sessions);
        let mut all = 0;
        let mut rw = 0;
        for s in sessions.values() {
            let s = lock(s);
            if s.slot == slot {
                all += 1;
                if s.read_write {
                    rw += 1;
                }
            }
        }
        (all, rw)
    }

    pub fn session_info(&self, h: CK_SESSION_HANDLE) -> Result<SessionInfo> {
        let s = self.session(h)?;
        let (slot, rw) = {
            let s = lock(&s);
            (s.slot, s.read_write)
        };
        let user = matches!(self.slot(slot)?.login(), Login::User(_));
        let state = match (rw, user) {
            (false, false) => CKS_RO_PUBLIC_SESSION,
            (true, false) => CKS_RW_PUBLIC_SESSION,
            (false, true) => CKS_RO_USER_FUNCTIONS,
            (true, true) => CKS_RW_USER_FUNCTIONS,
        };
        let mut flags = CKF_SERIAL_SESSION;
        if rw {
            flags |= CKF_RW_SESSION;
        }
        Ok(SessionInfo { slot, state, flags })
    }

    /// C_Login as the user: the PIN is a kagi token for the partition. An empty PIN logs in
    /// with the credential the configuration gives the slot, if any.
    pub fn login(&self, h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, pin: &[u8]) -> Result<()> {
        let slot_id = self.session_slot(h)?;
        let slot = self.slot(slot_id)?;
        match user_type {
            CKU_USER => {}
            CKU_SO => return Err(Error::new(
                CKR_USER_TYPE_INVALID,
                "kagi partitions have no security officer login: use the user PIN (a kagi token)",
            )),
            CKU_CONTEXT_SPECIFIC => {
                // Only a logged-in user re-authenticates for one operation.
                if matches!(slot.login(), Login::Out) {
                    return Err(Error::rv(CKR_USER_NOT_LOGGED_IN));
                }
                return self.context_login(h, pin);
            }
            _ => return Err(Error::rv(CKR_USER_TYPE_INVALID)),
        }
        if matches!(slot.login(), Login::User(_)) {
            return Err(Error::rv(CKR_USER_ALREADY_LOGGED_IN));
        }
        let login = if pin.is_empty() {
            match slot.initial_login() {
                Login::Out => return Err(Error::rv(CKR_PIN_INCORRECT)),
                configured => configured,
            }
        } else {
            let text = std::str::from_utf8(pin).map_err(|_| Error::rv(CKR_PIN_INCORRECT))?;
            let token = Zeroizing::new(text.trim().to_string());
            // The service decides whether the token is good.
            self.client.check_login(&token)?;
            Login::User(Some(token))
        };
        slot.set_login(login);
        Ok(())
    }

    pub fn logout(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let slot_id = self.session_slot(h)?;
        let slot = self.slot(slot_id)?;
        if matches!(slot.login(), Login::Out) {
            return Err(Error::rv(CKR_USER_NOT_LOGGED_IN));
        }
        slot.set_login(Login::Out);
        // Operations on private keys end with the login.
        for s in lock(&self.sessions).values() {
            let mut s = lock(s);
            if s.slot == slot_id {
                s.sign = None;
                s.find = None;
            }
        }
        Ok(())
    }
}
