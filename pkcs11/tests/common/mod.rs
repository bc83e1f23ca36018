//! Calls into the module through its C ABI, as a PKCS#11 application would: the function
//! list from C_GetFunctionList, then its function pointers. Calling C functions is unsafe by
//! nature; the helpers here keep the pointers they pass valid, so the tests read as plain calls.
//! Tests that want hostile arguments call the function pointers themselves.
#![allow(dead_code)]

use cryptoki_sys::*;
use kagi_testkit::server::Server;
use std::ptr::null_mut;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The module is one per process: tests in a binary take turns.
static TURN: Mutex<()> = Mutex::new(());

pub fn turn() -> MutexGuard<'static, ()> {
    let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    // A test that failed before its C_Finalize leaves the module initialized.
    P11::new().finalize();
    turn
}

pub fn functions() -> &'static CK_FUNCTION_LIST {
    let mut list: *mut CK_FUNCTION_LIST = null_mut();
    let rv = unsafe { kagi_pkcs11::ffi::C_GetFunctionList(&mut list) };
    assert_eq!(rv, CKR_OK);
    unsafe { &*list }
}

/// Point the module at `server` the way the `kagi` CLI finds it: KAGI_URL, KAGI_CA, and
/// KAGI_TOKEN when `token` says so.
pub fn configure(server: &Server, token: bool) {
    std::env::remove_var("KAGI_PKCS11_CONF");
    std::env::set_var("KAGI_URL", &server.url);
    std::env::set_var("KAGI_CA", server.data().join("tls-ca.pem"));
    if token {
        std::env::set_var("KAGI_TOKEN", server.token());
    } else {
        std::env::remove_var("KAGI_TOKEN");
    }
}

pub struct P11 {
    pub f: &'static CK_FUNCTION_LIST,
}

pub fn ul(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

impl P11 {
    pub fn new() -> P11 {
        P11 { f: functions() }
    }

    pub fn initialize(&self) -> CK_RV {
        unsafe { self.f.C_Initialize.unwrap()(null_mut()) }
    }

    pub fn finalize(&self) -> CK_RV {
        unsafe { self.f.C_Finalize.unwrap()(null_mut()) }
    }

    pub fn open(&self, slot: CK_SLOT_ID, rw: bool) -> CK_SESSION_HANDLE {
        let mut h = 0;
        let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
        let rv = unsafe { self.f.C_OpenSession.unwrap()(slot, flags, null_mut(), None, &mut h) };
        assert_eq!(rv, CKR_OK);
        h
    }

    pub fn close(&self, h: CK_SESSION_HANDLE) -> CK_RV {
        unsafe { self.f.C_CloseSession.unwrap()(h) }
    }

    pub fn login(&self, h: CK_SESSION_HANDLE, pin: &str) -> CK_RV {
        let mut pin = pin.as_bytes().to_vec();
        unsafe { self.f.C_Login.unwrap()(h, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG) }
    }

    /// C_Login as `user_type` (CKU_CONTEXT_SPECIFIC for a key's own password).
    pub fn login_as(&self, h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, pin: &str) -> CK_RV {
        let mut pin = pin.as_bytes().to_vec();
        unsafe { self.f.C_Login.unwrap()(h, user_type, pin.as_mut_ptr(), pin.len() as CK_ULONG) }
    }

    pub fn logout(&self, h: CK_SESSION_HANDLE) -> CK_RV {
        unsafe { self.f.C_Logout.unwrap()(h) }
    }

    /// The handles a template finds (or the failing CK_RV of the init).
    pub fn find(
        &self,
        h: CK_SESSION_HANDLE,
        template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ) -> Result<Vec<CK_OBJECT_HANDLE>, CK_RV> {
        let mut values: Vec<Vec<u8>> = template.iter().map(|(_, v)| v.clone()).collect();
        let mut attrs: Vec<CK_ATTRIBUTE> = template
            .iter()
            .zip(values.iter_mut())
            .map(|((t, _), v)| CK_ATTRIBUTE {
                type_: *t,
                pValue: v.as_mut_ptr() as *mut _,
                ulValueLen: v.len() as CK_ULONG,
            })
            .collect();
        let rv = unsafe {
            self.f.C_FindObjectsInit.unwrap()(h, attrs.as_mut_ptr(), attrs.len() as CK_ULONG)
        };
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut out = Vec::new();
        loop {
            let mut batch = [0 as CK_OBJECT_HANDLE; 3];
            let mut n = 0;
            let rv = unsafe { self.f.C_FindObjects.unwrap()(h, batch.as_mut_ptr(), 3, &mut n) };
            assert_eq!(rv, CKR_OK);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&batch[..n as usize]);
        }
        assert_eq!(unsafe { self.f.C_FindObjectsFinal.unwrap()(h) }, CKR_OK);
        Ok(out)
    }

    /// One attribute, with the two-call size query.
    pub fn attribute(
        &self,
        h: CK_SESSION_HANDLE,
        o: CK_OBJECT_HANDLE,
        ty: CK_ATTRIBUTE_TYPE,
    ) -> Result<Vec<u8>, CK_RV> {
        let mut a = CK_ATTRIBUTE {
            type_: ty,
            pValue: null_mut(),
            ulValueLen: 0,
        };
        let rv = unsafe { self.f.C_GetAttributeValue.unwrap()(h, o, &mut a, 1) };
        if rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID {
            assert_eq!(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
        }
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut buf = vec![0u8; a.ulValueLen as usize];
        a.pValue = buf.as_mut_ptr() as *mut _;
        let rv = unsafe { self.f.C_GetAttributeValue.unwrap()(h, o, &mut a, 1) };
        assert_eq!(rv, CKR_OK);
        buf.truncate(a.ulValueLen as usize);
        Ok(buf)
    }

    pub fn ulong_attribute(
        &self,
        h: CK_SESSION_HANDLE,
        o: CK_OBJECT_HANDLE,
        ty: CK_ATTRIBUTE_TYPE,
    ) -> Result<CK_ULONG, CK_RV> {
        let v = self.attribute(h, o, ty)?;
        Ok(CK_ULONG::from_ne_bytes(v.try_into().unwrap()))
    }

    pub fn generate(
        &self,
        h: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        public: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
        private: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), CK_RV> {
        let mut pv: Vec<Vec<u8>> = public.iter().map(|(_, v)| v.clone()).collect();
        let mut sv: Vec<Vec<u8>> = private.iter().map(|(_, v)| v.clone()).collect();
        let attrs =
            |t: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)], vs: &mut Vec<Vec<u8>>| -> Vec<CK_ATTRIBUTE> {
                t.iter()
                    .zip(vs.iter_mut())
                    .map(|((ty, _), v)| CK_ATTRIBUTE {
                        type_: *ty,
                        pValue: v.as_mut_ptr() as *mut _,
                        ulValueLen: v.len() as CK_ULONG,
                    })
                    .collect()
            };
        let mut pa = attrs(public, &mut pv);
        let mut sa = attrs(private, &mut sv);
        let mut mech = CK_MECHANISM {
            mechanism,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let (mut ph, mut sh) = (0, 0);
        let rv = unsafe {
            self.f.C_GenerateKeyPair.unwrap()(
                h,
                &mut mech,
                pa.as_mut_ptr(),
                pa.len() as CK_ULONG,
                sa.as_mut_ptr(),
                sa.len() as CK_ULONG,
                &mut ph,
                &mut sh,
            )
        };
        if rv != CKR_OK {
            return Err(rv);
        }
        Ok((ph, sh))
    }

    pub fn sign_init(
        &self,
        h: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        key: CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let mut mech = CK_MECHANISM {
            mechanism,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        unsafe { self.f.C_SignInit.unwrap()(h, &mut mech, key) }
    }

    /// C_Sign with the size query first.
    pub fn sign(&self, h: CK_SESSION_HANDLE, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
        let mut data = data.to_vec();
        let mut len = 0;
        let rv = unsafe {
            self.f.C_Sign.unwrap()(
                h,
                data.as_mut_ptr(),
                data.len() as CK_ULONG,
                null_mut(),
                &mut len,
            )
        };
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut sig = vec![0u8; len as usize];
        let rv = unsafe {
            self.f.C_Sign.unwrap()(
                h,
                data.as_mut_ptr(),
                data.len() as CK_ULONG,
                sig.as_mut_ptr(),
                &mut len,
            )
        };
        if rv != CKR_OK {
            return Err(rv);
        }
        sig.truncate(len as usize);
        Ok(sig)
    }
}

/// The service's view of the partition's keys: (label, usage count), sorted.
pub fn service_keys(server: &Server) -> Vec<(String, i64)> {
    let reply = server
        .http()
        .request("GET", "/api/v1/keys", Some(&server.token()), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut keys: Vec<(String, i64)> = reply
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["label"].as_str().unwrap().to_string(),
                k["usage_count"].as_i64().unwrap(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// An uncompressed P-256 point from CKA_EC_POINT (DER OCTET STRING).
pub fn ec_point(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x04);
    der[2..].to_vec()
}
