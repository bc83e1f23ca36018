//! Acceptance 8 of issue 13: callers that pass NULL pointers, short buffers, unknown or stale
//! handles, or try to get a private key out, get PKCS#11 errors and never a crash, and the
//! service's keys and usage counts are the same afterwards.

mod common;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use common::*;
use cryptoki_sys::*;
use kagi_testkit::server::Server;
use std::ptr::null_mut;

const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn bool_attr(b: bool) -> Vec<u8> {
    vec![b as u8]
}

#[test]
fn hostile_callers_get_errors_and_no_private_key_leaves() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    let p11 = P11::new();
    let f = p11.f;

    unsafe {
        // Before C_Initialize.
        let mut info = CK_INFO::default();
        assert_eq!(
            f.C_GetInfo.unwrap()(&mut info),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(p11.finalize(), CKR_CRYPTOKI_NOT_INITIALIZED);
        // C_Initialize with a reserved pointer set, then twice.
        let mut args = CK_C_INITIALIZE_ARGS {
            flags: CKF_OS_LOCKING_OK,
            pReserved: &mut info as *mut CK_INFO as *mut _,
            ..Default::default()
        };
        assert_eq!(
            f.C_Initialize.unwrap()(&mut args as *mut _ as *mut _),
            CKR_ARGUMENTS_BAD
        );
        args.pReserved = null_mut();
        assert_eq!(
            f.C_Initialize.unwrap()(&mut args as *mut _ as *mut _),
            CKR_OK
        );
        assert_eq!(p11.initialize(), CKR_CRYPTOKI_ALREADY_INITIALIZED);

        // NULL outputs and the two-call size query.
        assert_eq!(f.C_GetInfo.unwrap()(null_mut()), CKR_ARGUMENTS_BAD);
        assert_eq!(
            f.C_GetSlotList.unwrap()(0, null_mut(), null_mut()),
            CKR_ARGUMENTS_BAD
        );
        let mut count: CK_ULONG = 0;
        assert_eq!(f.C_GetSlotList.unwrap()(0, null_mut(), &mut count), CKR_OK);
        assert_eq!(count, 1);
        let mut slots = [0 as CK_SLOT_ID; 1];
        count = 0;
        assert_eq!(
            f.C_GetSlotList.unwrap()(0, slots.as_mut_ptr(), &mut count),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(count, 1);
        assert_eq!(
            f.C_GetSlotList.unwrap()(0, slots.as_mut_ptr(), &mut count),
            CKR_OK
        );
        let mut token = CK_TOKEN_INFO::default();
        assert_eq!(
            f.C_GetTokenInfo.unwrap()(7, &mut token),
            CKR_SLOT_ID_INVALID
        );
        assert_eq!(f.C_GetTokenInfo.unwrap()(0, null_mut()), CKR_ARGUMENTS_BAD);
        let mut h = 0;
        assert_eq!(
            f.C_OpenSession.unwrap()(0, 0, null_mut(), None, &mut h),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED
        );
        assert_eq!(
            f.C_OpenSession.unwrap()(0, CKF_SERIAL_SESSION, null_mut(), None, null_mut()),
            CKR_ARGUMENTS_BAD
        );
    }

    let s = p11.open(0, true);
    let label = b"hostile-target".to_vec();
    let (public, private) = p11
        .generate(
            s,
            CKM_EC_KEY_PAIR_GEN,
            &[(CKA_EC_PARAMS, P256.to_vec()), (CKA_LABEL, label.clone())],
            &[(CKA_LABEL, label.clone()), (CKA_SIGN, bool_attr(true))],
        )
        .unwrap();
    // Templates find by label and by CKA_ID, and a class narrows the match to one object.
    let by_label = p11
        .find(
            s,
            &[(CKA_LABEL, label.clone()), (CKA_CLASS, ul(CKO_PRIVATE_KEY))],
        )
        .unwrap();
    assert_eq!(by_label, vec![private]);
    let id = p11.attribute(s, private, CKA_ID).unwrap();
    let mut by_id = p11.find(s, &[(CKA_ID, id)]).unwrap();
    by_id.sort();
    let mut pair = vec![public, private];
    pair.sort();
    assert_eq!(by_id, pair);

    // One good signature through the size query and a short buffer.
    let point = ec_point(&p11.attribute(s, public, CKA_EC_POINT).unwrap());
    let mut message = b"a message".to_vec();
    assert_eq!(p11.sign_init(s, CKM_ECDSA_SHA256, private), CKR_OK);
    unsafe {
        let sign = f.C_Sign.unwrap();
        let mut len: CK_ULONG = 0;
        assert_eq!(
            sign(
                s,
                message.as_mut_ptr(),
                message.len() as CK_ULONG,
                null_mut(),
                &mut len
            ),
            CKR_OK
        );
        assert_eq!(len, 64);
        let mut sig = vec![0u8; 64];
        len = 10;
        assert_eq!(
            sign(
                s,
                message.as_mut_ptr(),
                message.len() as CK_ULONG,
                sig.as_mut_ptr(),
                &mut len
            ),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(len, 64);
        assert_eq!(
            sign(
                s,
                message.as_mut_ptr(),
                message.len() as CK_ULONG,
                sig.as_mut_ptr(),
                &mut len
            ),
            CKR_OK
        );
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(&message, &sig)
            .expect("the signature verifies");
        // The operation ended with the signature.
        assert_eq!(
            sign(
                s,
                message.as_mut_ptr(),
                message.len() as CK_ULONG,
                sig.as_mut_ptr(),
                &mut len
            ),
            CKR_OPERATION_NOT_INITIALIZED
        );
    }
    // The same signature in parts: C_SignUpdate twice, C_SignFinal with the size query. A
    // C_Sign after C_SignUpdate is refused and ends the operation.
    unsafe {
        assert_eq!(p11.sign_init(s, CKM_ECDSA_SHA256, private), CKR_OK);
        let (a, b) = message.split_at_mut(4);
        assert_eq!(
            f.C_SignUpdate.unwrap()(s, a.as_mut_ptr(), a.len() as CK_ULONG),
            CKR_OK
        );
        assert_eq!(
            f.C_SignUpdate.unwrap()(s, b.as_mut_ptr(), b.len() as CK_ULONG),
            CKR_OK
        );
        let mut len: CK_ULONG = 0;
        assert_eq!(f.C_SignFinal.unwrap()(s, null_mut(), &mut len), CKR_OK);
        let mut sig = vec![0u8; len as usize];
        assert_eq!(
            f.C_SignFinal.unwrap()(s, sig.as_mut_ptr(), &mut len),
            CKR_OK
        );
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(&message, &sig)
            .expect("the multi-part signature verifies");
        assert_eq!(p11.sign_init(s, CKM_ECDSA_SHA256, private), CKR_OK);
        assert_eq!(f.C_SignUpdate.unwrap()(s, message.as_mut_ptr(), 4), CKR_OK);
        assert_eq!(
            f.C_Sign.unwrap()(s, message.as_mut_ptr(), 4, sig.as_mut_ptr(), &mut len),
            CKR_OPERATION_ACTIVE
        );
        assert_eq!(
            f.C_SignFinal.unwrap()(s, sig.as_mut_ptr(), &mut len),
            CKR_OPERATION_NOT_INITIALIZED
        );
    }

    // An RSA key: its public half is readable, its private exponent and primes are not.
    let rsa_label = b"hostile-rsa".to_vec();
    let (_, rsa) = p11
        .generate(
            s,
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            &[(CKA_MODULUS_BITS, ul(2048)), (CKA_LABEL, rsa_label.clone())],
            &[(CKA_LABEL, rsa_label.clone())],
        )
        .unwrap();
    assert_eq!(p11.attribute(s, rsa, CKA_MODULUS).unwrap().len(), 256);
    assert_eq!(
        p11.attribute(s, rsa, CKA_PUBLIC_EXPONENT),
        Ok(vec![1, 0, 1])
    );
    let before = service_keys(&server);

    unsafe {
        // Unknown session and object handles.
        let mut a = CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: null_mut(),
            ulValueLen: 0,
        };
        assert_eq!(
            f.C_GetAttributeValue.unwrap()(0xdead, private, &mut a, 1),
            CKR_SESSION_HANDLE_INVALID
        );
        assert_eq!(
            f.C_GetAttributeValue.unwrap()(s, 0xdead, &mut a, 1),
            CKR_OBJECT_HANDLE_INVALID
        );
        assert_eq!(
            f.C_GetAttributeValue.unwrap()(s, private, null_mut(), 1),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(0xdead, null_mut(), 0),
            CKR_SESSION_HANDLE_INVALID
        );
        assert_eq!(
            f.C_FindObjectsInit.unwrap()(s, null_mut(), 2),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(p11.sign_init(s, CKM_ECDSA, 0xdead), CKR_KEY_HANDLE_INVALID);
        assert_eq!(
            p11.sign_init(0xdead, CKM_ECDSA, private),
            CKR_SESSION_HANDLE_INVALID
        );
        assert_eq!(
            f.C_SignInit.unwrap()(s, null_mut(), private),
            CKR_ARGUMENTS_BAD
        );
        let mut len: CK_ULONG = 0;
        assert_eq!(
            f.C_Sign.unwrap()(s, message.as_mut_ptr(), 9, null_mut(), &mut len),
            CKR_OPERATION_NOT_INITIALIZED
        );
        // The wrong key type or mechanism parameters, and a public key to sign with.
        assert_eq!(
            p11.sign_init(s, CKM_SHA256_RSA_PKCS, private),
            CKR_KEY_TYPE_INCONSISTENT
        );
        assert_eq!(
            p11.sign_init(s, CKM_ECDSA, public),
            CKR_KEY_FUNCTION_NOT_PERMITTED
        );
        let mut pss = CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            sLen: 32,
        };
        let mut mech = CK_MECHANISM {
            mechanism: CKM_ECDSA,
            pParameter: &mut pss as *mut _ as *mut _,
            ulParameterLen: 3,
        };
        assert_eq!(
            f.C_SignInit.unwrap()(s, &mut mech, private),
            CKR_MECHANISM_PARAM_INVALID
        );
        // C_Sign with a NULL length pointer ends the operation.
        assert_eq!(p11.sign_init(s, CKM_ECDSA_SHA256, private), CKR_OK);
        assert_eq!(
            f.C_Sign.unwrap()(s, message.as_mut_ptr(), 9, null_mut(), null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            f.C_Sign.unwrap()(s, message.as_mut_ptr(), 9, null_mut(), &mut len),
            CKR_OPERATION_NOT_INITIALIZED
        );
        // Data NULL with a length.
        assert_eq!(p11.sign_init(s, CKM_ECDSA_SHA256, private), CKR_OK);
        assert_eq!(
            f.C_Sign.unwrap()(s, null_mut(), 9, null_mut(), &mut len),
            CKR_ARGUMENTS_BAD
        );
        let mut find_count: CK_ULONG = 0;
        assert_eq!(
            f.C_FindObjects.unwrap()(s, null_mut(), 5, &mut find_count),
            CKR_ARGUMENTS_BAD
        );
    }

    // The label, with the size query and a buffer too small.
    unsafe {
        let mut buf = [0u8; 4];
        let mut a = CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: buf.as_mut_ptr() as *mut _,
            ulValueLen: buf.len() as CK_ULONG,
        };
        assert_eq!(
            f.C_GetAttributeValue.unwrap()(s, private, &mut a, 1),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
    }
    assert_eq!(p11.attribute(s, private, CKA_LABEL).unwrap(), label);

    // Nothing secret comes out, and nothing makes the key leave.
    for secret in [
        CKA_VALUE,
        CKA_PRIVATE_EXPONENT,
        CKA_PRIME_1,
        CKA_PRIME_2,
        CKA_EXPONENT_1,
        CKA_EXPONENT_2,
        CKA_COEFFICIENT,
    ] {
        assert_eq!(
            p11.attribute(s, rsa, secret),
            Err(CKR_ATTRIBUTE_SENSITIVE),
            "RSA attribute 0x{secret:x}"
        );
    }
    assert_eq!(
        p11.attribute(s, private, CKA_VALUE),
        Err(CKR_ATTRIBUTE_SENSITIVE)
    );
    // Several attributes at once: each is answered, the call reports the failure.
    unsafe {
        let mut label_buf = [0u8; 64];
        let mut attrs = [
            CK_ATTRIBUTE {
                type_: CKA_PRIVATE_EXPONENT,
                pValue: null_mut(),
                ulValueLen: 0,
            },
            CK_ATTRIBUTE {
                type_: CKA_LABEL,
                pValue: label_buf.as_mut_ptr() as *mut _,
                ulValueLen: 64,
            },
        ];
        assert_eq!(
            f.C_GetAttributeValue.unwrap()(s, rsa, attrs.as_mut_ptr(), 2),
            CKR_ATTRIBUTE_SENSITIVE
        );
        assert_eq!(attrs[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(&label_buf[..attrs[1].ulValueLen as usize], &rsa_label[..]);
        // A PSS parameter of the wrong size or salt, and values of the wrong length in templates.
        let mut pss = CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            sLen: 32,
        };
        let mut mech = CK_MECHANISM {
            mechanism: CKM_SHA256_RSA_PKCS_PSS,
            pParameter: &mut pss as *mut _ as *mut _,
            ulParameterLen: 8,
        };
        assert_eq!(
            f.C_SignInit.unwrap()(s, &mut mech, rsa),
            CKR_MECHANISM_PARAM_INVALID
        );
        pss.sLen = 20;
        mech.pParameter = &mut pss as *mut _ as *mut _;
        mech.ulParameterLen = std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>() as CK_ULONG;
        assert_eq!(
            f.C_SignInit.unwrap()(s, &mut mech, rsa),
            CKR_MECHANISM_PARAM_INVALID
        );
    }
    assert_eq!(p11.find(s, &[(CKA_CLASS, vec![3, 0, 0, 0])]), Ok(vec![]));
    assert_eq!(
        p11.generate(
            s,
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            &[(CKA_MODULUS_BITS, vec![0, 8, 0])],
            &[(CKA_LABEL, b"odd".to_vec())],
        ),
        Err(CKR_ATTRIBUTE_VALUE_INVALID)
    );
    unsafe {
        for (ty, value) in [
            (CKA_SENSITIVE, false),
            (CKA_EXTRACTABLE, true),
            (CKA_PRIVATE, false),
        ] {
            let mut v = bool_attr(value);
            let mut a = CK_ATTRIBUTE {
                type_: ty,
                pValue: v.as_mut_ptr() as *mut _,
                ulValueLen: 1,
            };
            assert_eq!(
                f.C_SetAttributeValue.unwrap()(s, private, &mut a, 1),
                CKR_ATTRIBUTE_READ_ONLY
            );
        }
        let mut mech = CK_MECHANISM {
            mechanism: CKM_RSA_PKCS,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let mut out = [0u8; 512];
        let mut len = out.len() as CK_ULONG;
        assert_eq!(
            f.C_WrapKey.unwrap()(s, &mut mech, public, private, out.as_mut_ptr(), &mut len),
            CKR_FUNCTION_NOT_SUPPORTED
        );
        assert_eq!(
            f.C_DestroyObject.unwrap()(s, private),
            CKR_ACTION_PROHIBITED
        );
        let mut copy = 0;
        assert_eq!(
            f.C_CopyObject.unwrap()(s, private, null_mut(), 0, &mut copy),
            CKR_ACTION_PROHIBITED
        );
    }
    assert_eq!(
        p11.attribute(s, private, CKA_SENSITIVE),
        Ok(bool_attr(true))
    );
    assert_eq!(
        p11.attribute(s, private, CKA_EXTRACTABLE),
        Ok(bool_attr(false))
    );
    assert_eq!(
        p11.attribute(s, private, CKA_NEVER_EXTRACTABLE),
        Ok(bool_attr(true))
    );
    assert_eq!(
        p11.attribute(s, private, CKA_ALWAYS_SENSITIVE),
        Ok(bool_attr(true))
    );
    // Key generation that asks for an extractable or non-sensitive key is refused.
    for bad in [(CKA_EXTRACTABLE, true), (CKA_SENSITIVE, false)] {
        assert_eq!(
            p11.generate(
                s,
                CKM_EC_KEY_PAIR_GEN,
                &[(CKA_EC_PARAMS, P256.to_vec())],
                &[(CKA_LABEL, b"leaky".to_vec()), (bad.0, bool_attr(bad.1))],
            ),
            Err(CKR_ATTRIBUTE_VALUE_INVALID)
        );
    }

    // Logins: already in (the configured token), out, a wrong PIN, the right one.
    assert_eq!(p11.login(s, "whatever"), CKR_USER_ALREADY_LOGGED_IN);
    assert_eq!(p11.logout(s), CKR_OK);
    assert_eq!(p11.logout(s), CKR_USER_NOT_LOGGED_IN);
    assert_eq!(p11.find(s, &[]), Ok(vec![]));
    assert_eq!(
        p11.attribute(s, private, CKA_LABEL),
        Err(CKR_OBJECT_HANDLE_INVALID)
    );
    assert_eq!(p11.sign_init(s, CKM_ECDSA, private), CKR_KEY_HANDLE_INVALID);
    assert_eq!(p11.login(s, "not-a-kagi-token"), CKR_PIN_INCORRECT);
    assert_eq!(p11.login(s, &server.token()), CKR_OK);
    assert_eq!(
        p11.find(
            s,
            &[(CKA_LABEL, label.clone()), (CKA_CLASS, ul(CKO_PRIVATE_KEY))]
        ),
        Ok(vec![private])
    );

    // A closed session, then a finalized module.
    let other = p11.open(0, false);
    assert_eq!(p11.close(other), CKR_OK);
    assert_eq!(p11.close(other), CKR_SESSION_HANDLE_INVALID);
    assert_eq!(
        p11.sign_init(other, CKM_ECDSA, private),
        CKR_SESSION_HANDLE_INVALID
    );
    unsafe {
        assert_eq!(
            f.C_Finalize.unwrap()(&mut 1u8 as *mut u8 as *mut _),
            CKR_ARGUMENTS_BAD
        );
    }
    assert_eq!(p11.finalize(), CKR_OK);
    assert_eq!(
        p11.sign_init(s, CKM_ECDSA, private),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );
    assert_eq!(p11.finalize(), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_eq!(p11.initialize(), CKR_OK);
    assert_eq!(
        p11.sign_init(s, CKM_ECDSA, private),
        CKR_SESSION_HANDLE_INVALID
    );
    assert_eq!(p11.finalize(), CKR_OK);

    // None of it changed the service's keys or counted a use.
    assert_eq!(service_keys(&server), before);
}

#[test]
fn without_a_configured_token_the_pin_is_the_partition_token() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, false);
    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let mut token = CK_TOKEN_INFO::default();
    unsafe {
        assert_eq!(p11.f.C_GetTokenInfo.unwrap()(0, &mut token), CKR_OK);
    }
    assert_ne!(token.flags & CKF_LOGIN_REQUIRED, 0);
    let s = p11.open(0, false);
    assert_eq!(p11.find(s, &[]), Ok(vec![]));
    assert_eq!(p11.login(s, ""), CKR_PIN_INCORRECT);
    assert_eq!(p11.login(s, "not-a-kagi-token"), CKR_PIN_INCORRECT);
    assert_eq!(p11.login(s, &server.token()), CKR_OK);
    let keys = p11.find(s, &[(CKA_CLASS, ul(CKO_PRIVATE_KEY))]).unwrap();
    assert_eq!(keys.len(), service_keys(&server).len());
    // The login ends with the last session.
    assert_eq!(p11.close(s), CKR_OK);
    let s = p11.open(0, false);
    assert_eq!(p11.find(s, &[]), Ok(vec![]));
    assert_eq!(p11.finalize(), CKR_OK);
}

#[test]
fn the_interfaces_are_pkcs11_3_0_and_2_40() {
    let _turn = turn();
    unsafe {
        let mut count: CK_ULONG = 0;
        assert_eq!(
            kagi_pkcs11::ffi::C_GetInterfaceList(null_mut(), &mut count),
            CKR_OK
        );
        assert_eq!(count, 2);
        let mut list = [CK_INTERFACE::default(); 2];
        count = 1;
        assert_eq!(
            kagi_pkcs11::ffi::C_GetInterfaceList(list.as_mut_ptr(), &mut count),
            CKR_BUFFER_TOO_SMALL
        );
        count = 2;
        assert_eq!(
            kagi_pkcs11::ffi::C_GetInterfaceList(list.as_mut_ptr(), &mut count),
            CKR_OK
        );
        for i in list {
            let name = std::ffi::CStr::from_ptr(i.pInterfaceName as *const std::ffi::c_char);
            assert_eq!(name.to_bytes(), b"PKCS 11");
        }
        let v3 = &*(list[0].pFunctionList as *const CK_FUNCTION_LIST_3_0);
        assert_eq!((v3.version.major, v3.version.minor), (3, 0));
        assert!(v3.C_SignMessage.is_some() && v3.C_LoginUser.is_some());
        let v2 = &*(list[1].pFunctionList as *const CK_FUNCTION_LIST);
        assert_eq!((v2.version.major, v2.version.minor), (2, 40));

        let mut found: *mut CK_INTERFACE = null_mut();
        assert_eq!(
            kagi_pkcs11::ffi::C_GetInterface(null_mut(), null_mut(), &mut found, 0),
            CKR_OK
        );
        assert_eq!((*found).pFunctionList, list[0].pFunctionList);
        let mut want = CK_VERSION {
            major: 2,
            minor: 40,
        };
        let mut name = *b"PKCS 11\0";
        assert_eq!(
            kagi_pkcs11::ffi::C_GetInterface(name.as_mut_ptr(), &mut want, &mut found, 0),
            CKR_OK
        );
        assert_eq!((*found).pFunctionList, list[1].pFunctionList);
        want.minor = 20;
        assert_eq!(
            kagi_pkcs11::ffi::C_GetInterface(name.as_mut_ptr(), &mut want, &mut found, 0),
            CKR_ARGUMENTS_BAD
        );
        let mut other = *b"Vendor\0";
        assert_eq!(
            kagi_pkcs11::ffi::C_GetInterface(other.as_mut_ptr(), null_mut(), &mut found, 0),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            kagi_pkcs11::ffi::C_GetInterface(null_mut(), null_mut(), null_mut(), 0),
            CKR_ARGUMENTS_BAD
        );
        // The 3.0-only functions are there and say they are not supported.
        assert_eq!(
            v3.C_SignMessageBegin.unwrap()(1, null_mut(), 0),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
    }
}
