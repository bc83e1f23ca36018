//! Issue 17: a key that will never sign again (deactivated or compromised in kagi) shows
//! CKA_SIGN false through the module and C_SignInit refuses it, while an active key of the same
//! token still signs.

mod common;

use common::*;
use cryptoki_sys::*;
use kagi_testkit::server::Server;

#[test]
fn a_deactivated_or_compromised_key_shows_cka_sign_false() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    for name in ["old", "leaked", "live"] {
        server.kagi_ok(&["key", "create", "--name", name, "--alg", "ec-p256"]);
    }
    server.kagi_ok(&["key", "deactivate", "old"]);
    server.kagi_ok(&["key", "compromise", "leaked", "--reason", "key file leaked"]);

    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let s = p11.open(0, false);
    for (label, signs) in [("old", false), ("leaked", false), ("live", true)] {
        let found = p11
            .find(
                s,
                &[
                    (CKA_LABEL, label.as_bytes().to_vec()),
                    (CKA_CLASS, ul(CKO_PRIVATE_KEY)),
                ],
            )
            .unwrap();
        assert_eq!(found.len(), 1, "{label}");
        assert_eq!(
            p11.attribute(s, found[0], CKA_SIGN).unwrap(),
            vec![u8::from(signs)],
            "{label}"
        );
        let rv = p11.sign_init(s, CKM_ECDSA_SHA256, found[0]);
        if signs {
            assert_eq!(rv, CKR_OK, "{label}");
            assert!(p11.sign(s, b"still signs").is_ok());
        } else {
            assert_eq!(rv, CKR_KEY_FUNCTION_NOT_PERMITTED, "{label}");
        }
    }
    assert_eq!(p11.close(s), CKR_OK);
    assert_eq!(p11.finalize(), CKR_OK);
}

/// Issue 17, acceptance 1: a key with its own password shows CKA_ALWAYS_AUTHENTICATE, and
/// signs only after C_Login(CKU_CONTEXT_SPECIFIC) with that password, for one operation.
#[test]
fn a_key_with_its_own_password_signs_after_a_context_specific_login_only() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    std::fs::write(server.path("pw.txt"), "correct horse battery\n").unwrap();
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "owned",
        "--alg",
        "ec-p256",
        "--key-auth",
        "--key-auth-file",
        "pw.txt",
    ]);
    server.kagi_ok(&["key", "create", "--name", "plain", "--alg", "ec-p256"]);

    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let s = p11.open(0, false);
    let key = |label: &str| {
        let found = p11
            .find(
                s,
                &[
                    (CKA_LABEL, label.as_bytes().to_vec()),
                    (CKA_CLASS, ul(CKO_PRIVATE_KEY)),
                ],
            )
            .unwrap();
        assert_eq!(found.len(), 1, "{label}");
        found[0]
    };
    let (owned, plain) = (key("owned"), key("plain"));
    assert_eq!(
        p11.attribute(s, owned, CKA_ALWAYS_AUTHENTICATE).unwrap(),
        vec![1]
    );
    assert_eq!(
        p11.attribute(s, plain, CKA_ALWAYS_AUTHENTICATE).unwrap(),
        vec![0]
    );

    // No operation to authenticate for.
    assert_eq!(
        p11.login_as(s, CKU_CONTEXT_SPECIFIC, "correct horse battery"),
        CKR_OPERATION_NOT_INITIALIZED
    );
    // Without the context-specific login: refused.
    assert_eq!(p11.sign_init(s, CKM_ECDSA_SHA256, owned), CKR_OK);
    assert_eq!(p11.sign(s, b"data"), Err(CKR_USER_NOT_LOGGED_IN));
    // With a wrong password: the PIN is incorrect.
    assert_eq!(p11.sign_init(s, CKM_ECDSA_SHA256, owned), CKR_OK);
    assert_eq!(
        p11.login_as(s, CKU_CONTEXT_SPECIFIC, "not it at all"),
        CKR_OK
    );
    assert_eq!(p11.sign(s, b"data"), Err(CKR_PIN_INCORRECT));
    // With the right one: a signature.
    assert_eq!(p11.sign_init(s, CKM_ECDSA_SHA256, owned), CKR_OK);
    assert_eq!(
        p11.login_as(s, CKU_CONTEXT_SPECIFIC, "correct horse battery"),
        CKR_OK
    );
    assert_eq!(p11.sign(s, b"data").unwrap().len(), 64);
    // The login lasted for that one operation.
    assert_eq!(p11.sign_init(s, CKM_ECDSA_SHA256, owned), CKR_OK);
    assert_eq!(p11.sign(s, b"data"), Err(CKR_USER_NOT_LOGGED_IN));
    // An ordinary key needs none.
    assert_eq!(p11.sign_init(s, CKM_ECDSA_SHA256, plain), CKR_OK);
    assert!(p11.sign(s, b"data").is_ok());
    assert_eq!(p11.close(s), CKR_OK);
    assert_eq!(p11.finalize(), CKR_OK);
}
