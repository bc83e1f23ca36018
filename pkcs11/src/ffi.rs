//! The C ABI: the only place in the crate with `unsafe`. Each exported function checks every
//! pointer and length it is given, copies what comes in into Rust values, calls the safe code,
//! and writes the answer back. A panic (there should be none) becomes CKR_GENERAL_ERROR
//! instead of unwinding into the caller.
//!
//! Safety contract of every exported function (PKCS#11's own): a non-NULL pointer points to
//! memory of the length the caller passes with it. NULL pointers and impossible lengths are
//! refused with CKR_ARGUMENTS_BAD; the module cannot check more than that.
#![allow(non_snake_case)]
// The function list fixes these signatures; the safety contract above documents them all.
#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use cryptoki_sys::*;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, Result};
use crate::module::{self, module};
use crate::object::Value;
use crate::sign::Param;
use crate::token::MANUFACTURER;

/// Longest data a single call may pass (C_Sign's message, a C_SignUpdate chunk).
const MAX_DATA: usize = 1 << 30;
/// Longest attribute value and most attributes a template may carry.
const MAX_ATTRIBUTE: usize = 1 << 20;
const MAX_TEMPLATE: usize = 1024;

fn run(f: impl FnOnce() -> Result<()>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => {
            if !e.message().is_empty() {
                eprintln!("kagi-pkcs11: {}", e.message());
            }
            e.code()
        }
        Err(_) => CKR_GENERAL_ERROR,
    }
}

fn bad() -> Error {
    Error::rv(CKR_ARGUMENTS_BAD)
}

/// `len` elements at `p`; NULL only with a zero length.
unsafe fn slice<'a, T>(p: *const T, len: CK_ULONG, max: usize) -> Result<&'a [T]> {
    let len = usize::try_from(len).map_err(|_| bad())?;
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() || !p.is_aligned() {
        return Err(bad());
    }
    if len > max || len.saturating_mul(std::mem::size_of::<T>()) > isize::MAX as usize {
        return Err(Error::rv(CKR_DATA_LEN_RANGE));
    }
    Ok(std::slice::from_raw_parts(p, len))
}

/// The place an output pointer names.
unsafe fn out<'a, T>(p: *mut T) -> Result<&'a mut T> {
    if p.is_null() || !p.is_aligned() {
        return Err(bad());
    }
    Ok(&mut *p)
}

fn to_ulong(n: usize) -> CK_ULONG {
    n as CK_ULONG
}

/// A C_FindObjectsInit or C_GenerateKeyPair template, copied.
unsafe fn template(
    p: *const CK_ATTRIBUTE,
    n: CK_ULONG,
) -> Result<Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>> {
    let attrs = slice(p, n, MAX_TEMPLATE).map_err(|_| bad())?;
    let mut out = Vec::with_capacity(attrs.len());
    for a in attrs {
        let value = slice(a.pValue as *const u8, a.ulValueLen, MAX_ATTRIBUTE)
            .map_err(|_| Error::rv(CKR_ATTRIBUTE_VALUE_INVALID))?;
        out.push((a.type_, value.to_vec()));
    }
    Ok(out)
}

/// The PKCS#11 two-call size query: with `p` NULL report the length, else copy if it fits.
unsafe fn write_bytes(data: &[u8], p: *mut u8, len: *mut CK_ULONG) -> Result<()> {
    let len = out(len)?;
    if p.is_null() {
        *len = to_ulong(data.len());
        return Ok(());
    }
    let room = usize::try_from(*len).map_err(|_| bad())?;
    *len = to_ulong(data.len());
    if room < data.len() {
        return Err(Error::rv(CKR_BUFFER_TOO_SMALL));
    }
    std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len());
    Ok(())
}

unsafe fn write_list<T: Copy>(items: &[T], p: *mut T, count: *mut CK_ULONG) -> Result<()> {
    let count = out(count)?;
    if p.is_null() {
        *count = to_ulong(items.len());
        return Ok(());
    }
    if !p.is_aligned() {
        return Err(bad());
    }
    let room = usize::try_from(*count).map_err(|_| bad())?;
    *count = to_ulong(items.len());
    if room < items.len() {
        return Err(Error::rv(CKR_BUFFER_TOO_SMALL));
    }
    std::ptr::copy_nonoverlapping(items.as_ptr(), p, items.len());
    Ok(())
}

/// A blank-padded, unterminated PKCS#11 string field.
fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut field = [b' '; N];
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    field[..end].copy_from_slice(&s.as_bytes()[..end]);
    field
}

const LIBRARY_VERSION: CK_VERSION = CK_VERSION { major: 0, minor: 1 };
const VERSION_3_0: CK_VERSION = CK_VERSION { major: 3, minor: 0 };
const VERSION_2_40: CK_VERSION = CK_VERSION {
    major: 2,
    minor: 40,
};

// ------------------------------------------------------------------ general

#[no_mangle]
pub unsafe extern "C" fn C_Initialize(pInitArgs: *mut c_void) -> CK_RV {
    run(|| {
        if !pInitArgs.is_null() {
            let args = out(pInitArgs as *mut CK_C_INITIALIZE_ARGS)?;
            if !args.pReserved.is_null() {
                return Err(bad());
            }
            let given = [
                args.CreateMutex.is_some(),
                args.DestroyMutex.is_some(),
                args.LockMutex.is_some(),
                args.UnlockMutex.is_some(),
            ];
            if given.iter().any(|g| *g) && !given.iter().all(|g| *g) {
                return Err(bad());
            }
            // The module locks with the OS's primitives; it cannot use the caller's instead.
            if given[0] && args.flags & CKF_OS_LOCKING_OK == 0 {
                return Err(Error::new(
                    CKR_CANT_LOCK,
                    "kagi-pkcs11 locks with the OS's primitives: set CKF_OS_LOCKING_OK",
                ));
            }
        }
        module::initialize()
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_Finalize(pReserved: *mut c_void) -> CK_RV {
    run(|| {
        if !pReserved.is_null() {
            return Err(bad());
        }
        module::finalize()
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetInfo(pInfo: *mut CK_INFO) -> CK_RV {
    run(|| {
        module()?;
        let info = out(pInfo)?;
        *info = CK_INFO {
            cryptokiVersion: VERSION_3_0,
            manufacturerID: padded(MANUFACTURER),
            flags: 0,
            libraryDescription: padded("kagi PKCS#11 module"),
            libraryVersion: LIBRARY_VERSION,
        };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(ppFunctionList: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    run(|| {
        let list = out(ppFunctionList)?;
        *list = &FUNCTIONS_2_40 as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST;
        Ok(())
    })
}

/// CK_INTERFACE holds raw pointers, which are not Sync; these point at statics only.
struct Interfaces([CK_INTERFACE; 2]);
unsafe impl Sync for Interfaces {}

const INTERFACE_NAME: &[u8] = b"PKCS 11\0";

static INTERFACES: Interfaces = Interfaces([
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: &FUNCTIONS_3_0 as *const CK_FUNCTION_LIST_3_0 as *mut c_void,
        flags: 0,
    },
    CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: &FUNCTIONS_2_40 as *const CK_FUNCTION_LIST as *mut c_void,
        flags: 0,
    },
]);

#[no_mangle]
pub unsafe extern "C" fn C_GetInterfaceList(
    pInterfacesList: *mut CK_INTERFACE,
    pulCount: *mut CK_ULONG,
) -> CK_RV {
    run(|| write_list(&INTERFACES.0, pInterfacesList, pulCount))
}

#[no_mangle]
pub unsafe extern "C" fn C_GetInterface(
    pInterfaceName: *mut CK_UTF8CHAR,
    pVersion: *mut CK_VERSION,
    ppInterface: *mut *mut CK_INTERFACE,
    flags: CK_FLAGS,
) -> CK_RV {
    run(|| {
        let result = out(ppInterface)?;
        if !pInterfaceName.is_null() {
            let name = std::ffi::CStr::from_ptr(pInterfaceName as *const std::ffi::c_char);
            if name.to_bytes_with_nul() != INTERFACE_NAME {
                return Err(bad());
            }
        }
        // Neither interface has any flag (such as CKF_INTERFACE_FORK_SAFE) to offer.
        if flags != 0 {
            return Err(bad());
        }
        let index = if pVersion.is_null() {
            0
        } else {
            let v = *out(pVersion)?;
            match (v.major, v.minor) {
                (3, 0) => 0,
                (2, 40) => 1,
                _ => return Err(bad()),
            }
        };
        *result = &INTERFACES.0[index] as *const CK_INTERFACE as *mut CK_INTERFACE;
        Ok(())
    })
}

// ------------------------------------------------------------------ slots and tokens

#[no_mangle]
pub unsafe extern "C" fn C_GetSlotList(
    _tokenPresent: CK_BBOOL,
    pSlotList: *mut CK_SLOT_ID,
    pulCount: *mut CK_ULONG,
) -> CK_RV {
    run(|| write_list(&module()?.slot_ids(), pSlotList, pulCount))
}

#[no_mangle]
pub unsafe extern "C" fn C_GetSlotInfo(slotID: CK_SLOT_ID, pInfo: *mut CK_SLOT_INFO) -> CK_RV {
    run(|| {
        let info = module()?.slot_info(slotID)?;
        *out(pInfo)? = CK_SLOT_INFO {
            slotDescription: padded(&info.description),
            manufacturerID: padded(MANUFACTURER),
            flags: CKF_TOKEN_PRESENT,
            hardwareVersion: LIBRARY_VERSION,
            firmwareVersion: LIBRARY_VERSION,
        };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetTokenInfo(slotID: CK_SLOT_ID, pInfo: *mut CK_TOKEN_INFO) -> CK_RV {
    run(|| {
        let info = module()?.token_info(slotID)?;
        *out(pInfo)? = CK_TOKEN_INFO {
            label: padded(&info.label),
            manufacturerID: padded(MANUFACTURER),
            model: padded("kagi partition"),
            serialNumber: padded(&info.serial),
            flags: info.flags,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: to_ulong(info.sessions),
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: to_ulong(info.rw_sessions),
            ulMaxPinLen: 4096,
            ulMinPinLen: 1,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: LIBRARY_VERSION,
            firmwareVersion: LIBRARY_VERSION,
            utcTime: [b' '; 16],
        };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismList(
    slotID: CK_SLOT_ID,
    pMechanismList: *mut CK_MECHANISM_TYPE,
    pulCount: *mut CK_ULONG,
) -> CK_RV {
    run(|| write_list(&module()?.mechanisms(slotID)?, pMechanismList, pulCount))
}

#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slotID: CK_SLOT_ID,
    type_: CK_MECHANISM_TYPE,
    pInfo: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    run(|| {
        let info = module()?.mechanism_info(slotID, type_)?;
        *out(pInfo)? = CK_MECHANISM_INFO {
            ulMinKeySize: info.min_key_size,
            ulMaxKeySize: info.max_key_size,
            flags: info.flags,
        };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_WaitForSlotEvent(
    _flags: CK_FLAGS,
    _pSlot: *mut CK_SLOT_ID,
    _pReserved: *mut c_void,
) -> CK_RV {
    run(|| {
        module()?;
        Err(Error::rv(CKR_FUNCTION_NOT_SUPPORTED))
    })
}

// ------------------------------------------------------------------ sessions

#[no_mangle]
pub unsafe extern "C" fn C_OpenSession(
    slotID: CK_SLOT_ID,
    flags: CK_FLAGS,
    _pApplication: *mut c_void,
    _Notify: CK_NOTIFY,
    phSession: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    run(|| {
        let m = module()?;
        let result = out(phSession)?;
        *result = m.open_session(slotID, flags)?;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_CloseSession(hSession: CK_SESSION_HANDLE) -> CK_RV {
    run(|| module()?.close_session(hSession))
}

#[no_mangle]
pub unsafe extern "C" fn C_CloseAllSessions(slotID: CK_SLOT_ID) -> CK_RV {
    run(|| module()?.close_all_sessions(slotID))
}

#[no_mangle]
pub unsafe extern "C" fn C_GetSessionInfo(
    hSession: CK_SESSION_HANDLE,
    pInfo: *mut CK_SESSION_INFO,
) -> CK_RV {
    run(|| {
        let info = module()?.session_info(hSession)?;
        *out(pInfo)? = CK_SESSION_INFO {
            slotID: info.slot,
            state: info.state,
            flags: info.flags,
            ulDeviceError: 0,
        };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_Login(
    hSession: CK_SESSION_HANDLE,
    userType: CK_USER_TYPE,
    pPin: *mut CK_UTF8CHAR,
    ulPinLen: CK_ULONG,
) -> CK_RV {
    run(|| {
        let m = module()?;
        let pin = slice(pPin as *const u8, ulPinLen, 4096).map_err(|_| bad())?;
        m.login(hSession, userType, pin)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_Logout(hSession: CK_SESSION_HANDLE) -> CK_RV {
    run(|| module()?.logout(hSession))
}

// ------------------------------------------------------------------ objects

#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsInit(
    hSession: CK_SESSION_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
) -> CK_RV {
    run(|| {
        let m = module()?;
        m.session(hSession)?;
        let t = template(pTemplate, ulCount)?;
        m.find_init(hSession, &t)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_FindObjects(
    hSession: CK_SESSION_HANDLE,
    phObject: *mut CK_OBJECT_HANDLE,
    ulMaxObjectCount: CK_ULONG,
    pulObjectCount: *mut CK_ULONG,
) -> CK_RV {
    run(|| {
        let m = module()?;
        let count = out(pulObjectCount)?;
        let max = usize::try_from(ulMaxObjectCount).map_err(|_| bad())?;
        if max > 0 && (phObject.is_null() || !phObject.is_aligned()) {
            return Err(bad());
        }
        let found = m.find(hSession, max)?;
        if !found.is_empty() {
            std::ptr::copy_nonoverlapping(found.as_ptr(), phObject, found.len());
        }
        *count = to_ulong(found.len());
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsFinal(hSession: CK_SESSION_HANDLE) -> CK_RV {
    run(|| module()?.find_final(hSession))
}

/// Every attribute is answered, even after one fails; the call returns the last failure.
#[no_mangle]
pub unsafe extern "C" fn C_GetAttributeValue(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
) -> CK_RV {
    run(|| {
        let m = module()?;
        m.session(hSession)?;
        if ulCount > 0 && (pTemplate.is_null() || !pTemplate.is_aligned()) {
            return Err(bad());
        }
        let n = usize::try_from(ulCount).map_err(|_| bad())?;
        if n > MAX_TEMPLATE {
            return Err(bad());
        }
        let attrs = if n == 0 {
            &mut [][..]
        } else {
            std::slice::from_raw_parts_mut(pTemplate, n)
        };
        let types: Vec<CK_ATTRIBUTE_TYPE> = attrs.iter().map(|a| a.type_).collect();
        let values = m.attributes(hSession, hObject, &types)?;
        let mut rv = CKR_OK;
        for (a, v) in attrs.iter_mut().zip(values) {
            let failed = match v {
                Value::Bytes(b) => match write_bytes(&b, a.pValue as *mut u8, &mut a.ulValueLen) {
                    Ok(()) => None,
                    Err(e) => Some(e.code()),
                },
                Value::Sensitive => Some(CKR_ATTRIBUTE_SENSITIVE),
                Value::Invalid => Some(CKR_ATTRIBUTE_TYPE_INVALID),
            };
            if let Some(code) = failed {
                a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                rv = code;
            }
        }
        if rv == CKR_OK {
            Ok(())
        } else {
            Err(Error::rv(rv))
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SetAttributeValue(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
) -> CK_RV {
    run(|| {
        let m = module()?;
        m.session(hSession)?;
        let t = template(pTemplate, ulCount)?;
        m.set_attributes(hSession, hObject, &t)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetObjectSize(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    pulSize: *mut CK_ULONG,
) -> CK_RV {
    run(|| {
        let m = module()?;
        m.visible_object(hSession, hObject)?;
        *out(pulSize)? = CK_UNAVAILABLE_INFORMATION;
        Ok(())
    })
}

/// kagi's keys are made and destroyed by the service's officers, not through this module.
#[no_mangle]
pub unsafe extern "C" fn C_DestroyObject(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|| {
        let m = module()?;
        m.visible_object(hSession, hObject)?;
        Err(Error::rv(CKR_ACTION_PROHIBITED))
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_CopyObject(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    _pTemplate: *mut CK_ATTRIBUTE,
    _ulCount: CK_ULONG,
    _phNewObject: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|| {
        let m = module()?;
        m.visible_object(hSession, hObject)?;
        Err(Error::rv(CKR_ACTION_PROHIBITED))
    })
}

// ------------------------------------------------------------------ keys

#[no_mangle]
pub unsafe extern "C" fn C_GenerateKeyPair(
    hSession: CK_SESSION_HANDLE,
    pMechanism: *mut CK_MECHANISM,
    pPublicKeyTemplate: *mut CK_ATTRIBUTE,
    ulPublicKeyAttributeCount: CK_ULONG,
    pPrivateKeyTemplate: *mut CK_ATTRIBUTE,
    ulPrivateKeyAttributeCount: CK_ULONG,
    phPublicKey: *mut CK_OBJECT_HANDLE,
    phPrivateKey: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|| {
        let m = module()?;
        m.session(hSession)?;
        let mech = *out(pMechanism)?;
        if mech.ulParameterLen != 0 {
            return Err(Error::rv(CKR_MECHANISM_PARAM_INVALID));
        }
        let public = template(pPublicKeyTemplate, ulPublicKeyAttributeCount)?;
        let private = template(pPrivateKeyTemplate, ulPrivateKeyAttributeCount)?;
        let public_out = out(phPublicKey)?;
        let private_out = out(phPrivateKey)?;
        let (pub_h, priv_h) = m.generate_key_pair(hSession, mech.mechanism, &public, &private)?;
        *public_out = pub_h;
        *private_out = priv_h;
        Ok(())
    })
}

// ------------------------------------------------------------------ signing

/// A mechanism's parameter, read as the structure its type takes.
unsafe fn param(mech: &CK_MECHANISM) -> Result<Param> {
    if mech.pParameter.is_null() {
        return if mech.ulParameterLen == 0 {
            Ok(Param::None)
        } else {
            Err(Error::rv(CKR_MECHANISM_PARAM_INVALID))
        };
    }
    let len = usize::try_from(mech.ulParameterLen).map_err(|_| bad())?;
    match mech.mechanism {
        CKM_RSA_PKCS_PSS
        | CKM_SHA256_RSA_PKCS_PSS
        | CKM_SHA384_RSA_PKCS_PSS
        | CKM_SHA512_RSA_PKCS_PSS => {
            if len != std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>() {
                return Err(Error::rv(CKR_MECHANISM_PARAM_INVALID));
            }
            let p = std::ptr::read_unaligned(mech.pParameter as *const CK_RSA_PKCS_PSS_PARAMS);
            Ok(Param::Pss {
                hash: p.hashAlg,
                mgf: p.mgf,
                salt_len: p.sLen,
            })
        }
        CKM_EDDSA => {
            if len != std::mem::size_of::<CK_EDDSA_PARAMS>() {
                return Err(Error::rv(CKR_MECHANISM_PARAM_INVALID));
            }
            let p = std::ptr::read_unaligned(mech.pParameter as *const CK_EDDSA_PARAMS);
            Ok(Param::Eddsa {
                prehash: p.phFlag != 0,
                context_len: usize::try_from(p.ulContextDataLen).map_err(|_| bad())?,
            })
        }
        _ => Ok(Param::Unexpected),
    }
}

#[no_mangle]
pub unsafe extern "C" fn C_SignInit(
    hSession: CK_SESSION_HANDLE,
    pMechanism: *mut CK_MECHANISM,
    hKey: CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|| {
        let m = module()?;
        m.session(hSession)?;
        let mech = *out(pMechanism)?;
        let p = param(&mech)?;
        m.sign_init(hSession, mech.mechanism, &p, hKey)
    })
}

/// C_Sign and C_SignFinal: the size query and CKR_BUFFER_TOO_SMALL keep the operation;
/// anything else ends it.
unsafe fn finish_signature(
    h: CK_SESSION_HANDLE,
    data: Option<&[u8]>,
    pSignature: *mut CK_BYTE,
    pulSignatureLen: *mut CK_ULONG,
) -> Result<()> {
    let m = module()?;
    let len = m.signature_len(h)?;
    let Ok(room) = out(pulSignatureLen) else {
        m.sign_abort(h);
        return Err(bad());
    };
    if pSignature.is_null() {
        *room = to_ulong(len);
        return Ok(());
    }
    if usize::try_from(*room).map_or(true, |r| r < len) {
        *room = to_ulong(len);
        return Err(Error::rv(CKR_BUFFER_TOO_SMALL));
    }
    let sig = m.sign(h, data)?;
    std::ptr::copy_nonoverlapping(sig.as_ptr(), pSignature, sig.len());
    *room = to_ulong(sig.len());
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn C_Sign(
    hSession: CK_SESSION_HANDLE,
    pData: *mut CK_BYTE,
    ulDataLen: CK_ULONG,
    pSignature: *mut CK_BYTE,
    pulSignatureLen: *mut CK_ULONG,
) -> CK_RV {
    run(|| {
        let m = module()?;
        m.session(hSession)?;
        let data = match slice(pData as *const u8, ulDataLen, MAX_DATA) {
            Ok(d) => d,
            Err(e) => {
                m.sign_abort(hSession);
                return Err(e);
            }
        };
        finish_signature(hSession, Some(data), pSignature, pulSignatureLen)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SignUpdate(
    hSession: CK_SESSION_HANDLE,
    pPart: *mut CK_BYTE,
    ulPartLen: CK_ULONG,
) -> CK_RV {
    run(|| {
        let m = module()?;
        m.session(hSession)?;
        let part = match slice(pPart as *const u8, ulPartLen, MAX_DATA) {
            Ok(d) => d,
            Err(e) => {
                m.sign_abort(hSession);
                return Err(e);
            }
        };
        m.sign_update(hSession, part)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SignFinal(
    hSession: CK_SESSION_HANDLE,
    pSignature: *mut CK_BYTE,
    pulSignatureLen: *mut CK_ULONG,
) -> CK_RV {
    run(|| {
        module()?.session(hSession)?;
        finish_signature(hSession, None, pSignature, pulSignatureLen)
    })
}

// ------------------------------------------------------------------ the rest: not offered

/// Functions kagi's module does not offer: CKR_FUNCTION_NOT_SUPPORTED once initialized.
macro_rules! unsupported {
    ($($name:ident($($ty:ty),*);)*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name($(_: $ty),*) -> CK_RV {
            run(|| {
                module()?;
                Err(Error::rv(CKR_FUNCTION_NOT_SUPPORTED))
            })
        }
    )*};
}

type Bytes = *mut CK_BYTE;
type Len = *mut CK_ULONG;
type Attrs = *mut CK_ATTRIBUTE;
type Mech = *mut CK_MECHANISM;
type Obj = CK_OBJECT_HANDLE;
type Sess = CK_SESSION_HANDLE;
type Void = *mut c_void;

unsupported! {
    C_InitToken(CK_SLOT_ID, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR);
    C_InitPIN(Sess, *mut CK_UTF8CHAR, CK_ULONG);
    C_SetPIN(Sess, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR, CK_ULONG);
    C_GetOperationState(Sess, Bytes, Len);
    C_SetOperationState(Sess, Bytes, CK_ULONG, Obj, Obj);
    C_CreateObject(Sess, Attrs, CK_ULONG, *mut Obj);
    C_EncryptInit(Sess, Mech, Obj);
    C_Encrypt(Sess, Bytes, CK_ULONG, Bytes, Len);
    C_EncryptUpdate(Sess, Bytes, CK_ULONG, Bytes, Len);
    C_EncryptFinal(Sess, Bytes, Len);
    C_DecryptInit(Sess, Mech, Obj);
    C_Decrypt(Sess, Bytes, CK_ULONG, Bytes, Len);
    C_DecryptUpdate(Sess, Bytes, CK_ULONG, Bytes, Len);
    C_DecryptFinal(Sess, Bytes, Len);
    C_DigestInit(Sess, Mech);
    C_Digest(Sess, Bytes, CK_ULONG, Bytes, Len);
    C_DigestUpdate(Sess, Bytes, CK_ULONG);
    C_DigestKey(Sess, Obj);
    C_DigestFinal(Sess, Bytes, Len);
    C_SignRecoverInit(Sess, Mech, Obj);
    C_SignRecover(Sess, Bytes, CK_ULONG, Bytes, Len);
    C_VerifyInit(Sess, Mech, Obj);
    C_Verify(Sess, Bytes, CK_ULONG, Bytes, CK_ULONG);
    C_VerifyUpdate(Sess, Bytes, CK_ULONG);
    C_VerifyFinal(Sess, Bytes, CK_ULONG);
    C_VerifyRecoverInit(Sess, Mech, Obj);
    C_VerifyRecover(Sess, Bytes, CK_ULONG, Bytes, Len);
    C_DigestEncryptUpdate(Sess, Bytes, CK_ULONG, Bytes, Len);
    C_DecryptDigestUpdate(Sess, Bytes, CK_ULONG, Bytes, Len);
    C_SignEncryptUpdate(Sess, Bytes, CK_ULONG, Bytes, Len);
    C_DecryptVerifyUpdate(Sess, Bytes, CK_ULONG, Bytes, Len);
    C_GenerateKey(Sess, Mech, Attrs, CK_ULONG, *mut Obj);
    C_WrapKey(Sess, Mech, Obj, Obj, Bytes, Len);
    C_UnwrapKey(Sess, Mech, Obj, Bytes, CK_ULONG, Attrs, CK_ULONG, *mut Obj);
    C_DeriveKey(Sess, Mech, Obj, Attrs, CK_ULONG, *mut Obj);
    C_SeedRandom(Sess, Bytes, CK_ULONG);
    C_GenerateRandom(Sess, Bytes, CK_ULONG);
    C_GetFunctionStatus(Sess);
    C_CancelFunction(Sess);
    C_LoginUser(Sess, CK_USER_TYPE, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR, CK_ULONG);
    C_SessionCancel(Sess, CK_FLAGS);
    C_MessageEncryptInit(Sess, Mech, Obj);
    C_EncryptMessage(Sess, Void, CK_ULONG, Bytes, CK_ULONG, Bytes, CK_ULONG, Bytes, Len);
    C_EncryptMessageBegin(Sess, Void, CK_ULONG, Bytes, CK_ULONG);
    C_EncryptMessageNext(Sess, Void, CK_ULONG, Bytes, CK_ULONG, Bytes, Len, CK_FLAGS);
    C_MessageEncryptFinal(Sess);
    C_MessageDecryptInit(Sess, Mech, Obj);
    C_DecryptMessage(Sess, Void, CK_ULONG, Bytes, CK_ULONG, Bytes, CK_ULONG, Bytes, Len);
    C_DecryptMessageBegin(Sess, Void, CK_ULONG, Bytes, CK_ULONG);
    C_DecryptMessageNext(Sess, Void, CK_ULONG, Bytes, CK_ULONG, Bytes, Len, CK_FLAGS);
    C_MessageDecryptFinal(Sess);
    C_MessageSignInit(Sess, Mech, Obj);
    C_SignMessage(Sess, Void, CK_ULONG, Bytes, CK_ULONG, Bytes, Len);
    C_SignMessageBegin(Sess, Void, CK_ULONG);
    C_SignMessageNext(Sess, Void, CK_ULONG, Bytes, CK_ULONG, Bytes, Len);
    C_MessageSignFinal(Sess);
    C_MessageVerifyInit(Sess, Mech, Obj);
    C_VerifyMessage(Sess, Void, CK_ULONG, Bytes, CK_ULONG, Bytes, CK_ULONG);
    C_VerifyMessageBegin(Sess, Void, CK_ULONG);
    C_VerifyMessageNext(Sess, Void, CK_ULONG, Bytes, CK_ULONG, Bytes, CK_ULONG);
    C_MessageVerifyFinal(Sess);
}

macro_rules! function_list {
    ($ty:ident, $version:expr, { $($extra:ident),* }) => {
        $ty {
            version: $version,
            C_Initialize: Some(C_Initialize),
            C_Finalize: Some(C_Finalize),
            C_GetInfo: Some(C_GetInfo),
            C_GetFunctionList: Some(C_GetFunctionList),
            C_GetSlotList: Some(C_GetSlotList),
            C_GetSlotInfo: Some(C_GetSlotInfo),
            C_GetTokenInfo: Some(C_GetTokenInfo),
            C_GetMechanismList: Some(C_GetMechanismList),
            C_GetMechanismInfo: Some(C_GetMechanismInfo),
            C_InitToken: Some(C_InitToken),
            C_InitPIN: Some(C_InitPIN),
            C_SetPIN: Some(C_SetPIN),
            C_OpenSession: Some(C_OpenSession),
            C_CloseSession: Some(C_CloseSession),
            C_CloseAllSessions: Some(C_CloseAllSessions),
            C_GetSessionInfo: Some(C_GetSessionInfo),
            C_GetOperationState: Some(C_GetOperationState),
            C_SetOperationState: Some(C_SetOperationState),
            C_Login: Some(C_Login),
            C_Logout: Some(C_Logout),
            C_CreateObject: Some(C_CreateObject),
            C_CopyObject: Some(C_CopyObject),
            C_DestroyObject: Some(C_DestroyObject),
            C_GetObjectSize: Some(C_GetObjectSize),
            C_GetAttributeValue: Some(C_GetAttributeValue),
            C_SetAttributeValue: Some(C_SetAttributeValue),
            C_FindObjectsInit: Some(C_FindObjectsInit),
            C_FindObjects: Some(C_FindObjects),
            C_FindObjectsFinal: Some(C_FindObjectsFinal),
            C_EncryptInit: Some(C_EncryptInit),
            C_Encrypt: Some(C_Encrypt),
            C_EncryptUpdate: Some(C_EncryptUpdate),
            C_EncryptFinal: Some(C_EncryptFinal),
            C_DecryptInit: Some(C_DecryptInit),
            C_Decrypt: Some(C_Decrypt),
            C_DecryptUpdate: Some(C_DecryptUpdate),
            C_DecryptFinal: Some(C_DecryptFinal),
            C_DigestInit: Some(C_DigestInit),
            C_Digest: Some(C_Digest),
            C_DigestUpdate: Some(C_DigestUpdate),
            C_DigestKey: Some(C_DigestKey),
            C_DigestFinal: Some(C_DigestFinal),
            C_SignInit: Some(C_SignInit),
            C_Sign: Some(C_Sign),
            C_SignUpdate: Some(C_SignUpdate),
            C_SignFinal: Some(C_SignFinal),
            C_SignRecoverInit: Some(C_SignRecoverInit),
            C_SignRecover: Some(C_SignRecover),
            C_VerifyInit: Some(C_VerifyInit),
            C_Verify: Some(C_Verify),
            C_VerifyUpdate: Some(C_VerifyUpdate),
            C_VerifyFinal: Some(C_VerifyFinal),
            C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
            C_VerifyRecover: Some(C_VerifyRecover),
            C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
            C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
            C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
            C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
            C_GenerateKey: Some(C_GenerateKey),
            C_GenerateKeyPair: Some(C_GenerateKeyPair),
            C_WrapKey: Some(C_WrapKey),
            C_UnwrapKey: Some(C_UnwrapKey),
            C_DeriveKey: Some(C_DeriveKey),
            C_SeedRandom: Some(C_SeedRandom),
            C_GenerateRandom: Some(C_GenerateRandom),
            C_GetFunctionStatus: Some(C_GetFunctionStatus),
            C_CancelFunction: Some(C_CancelFunction),
            C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
            $($extra: Some($extra),)*
        }
    };
}

pub static FUNCTIONS_2_40: CK_FUNCTION_LIST = function_list!(CK_FUNCTION_LIST, VERSION_2_40, {});

pub static FUNCTIONS_3_0: CK_FUNCTION_LIST_3_0 = function_list!(CK_FUNCTION_LIST_3_0, VERSION_3_0, {
    C_GetInterfaceList, C_GetInterface, C_LoginUser, C_SessionCancel,
    C_MessageEncryptInit, C_EncryptMessage, C_EncryptMessageBegin, C_EncryptMessageNext,
    C_MessageEncryptFinal, C_MessageDecryptInit, C_DecryptMessage, C_DecryptMessageBegin,
    C_DecryptMessageNext, C_MessageDecryptFinal, C_MessageSignInit, C_SignMessage,
    C_SignMessageBegin, C_SignMessageNext, C_MessageSignFinal, C_MessageVerifyInit,
    C_VerifyMessage, C_VerifyMessageBegin, C_VerifyMessageNext, C_MessageVerifyFinal
});
