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
