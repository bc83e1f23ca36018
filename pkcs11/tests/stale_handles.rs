//! Handles of keys another client destroyed: whatever search gave them out (by label too),
//! C_Sign and C_GetAttributeValue on them fail with CKR_KEY_HANDLE_INVALID /
//! CKR_OBJECT_HANDLE_INVALID rather than answering for a key that is gone, and a search
//! never returns them. And a search by CKA_ID alone gets the key's certificate in the same
//! answer as the key (`GET /api/v1/keys?id=…&certificate=true`).

mod common;

use common::*;
use cryptoki_sys::*;
use kagi_testkit::server::{Http, Server};

fn create(http: &Http, token: &str, name: &str) -> String {
    let r = http.request(
        "POST",
        "/api/v1/keys",
        Some(token),
        Some(format!(r#"{{"name":"{name}","alg":"ec-p256"}}"#).as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["id"].as_str().unwrap().to_string()
}

fn destroy(http: &Http, token: &str, name: &str) {
    let r = http.request("DELETE", &format!("/api/v1/keys/{name}"), Some(token), None);
    assert!(r.status == 200 || r.status == 204, "{}", r.body);
}

fn private(label: &[u8]) -> Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)> {
    vec![
        (CKA_CLASS, ul(CKO_PRIVATE_KEY)),
        (CKA_LABEL, label.to_vec()),
    ]
}

const DIGEST: [u8; 32] = [7; 32];

#[test]
fn a_destroyed_key_found_by_label_cannot_sign_nor_be_read_and_is_not_found() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    let (http, token) = (server.http(), server.token());
    create(&http, &token, "doomed");
    create(&http, &token, "kept");

    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let s = p11.open(0, false);
    let found = p11.find(s, &private(b"doomed")).unwrap();
    assert_eq!(found.len(), 1);
    let doomed = found[0];
    // Without a class the search also shows the public key (and asks for a certificate).
    let all_doomed = p11.find(s, &[(CKA_LABEL, b"doomed".to_vec())]).unwrap();
    assert_eq!(all_doomed.len(), 2, "{all_doomed:?}");
    let kept = p11.find(s, &private(b"kept")).unwrap()[0];
    assert_eq!(p11.sign_init(s, CKM_ECDSA, doomed), CKR_OK);
    assert_eq!(p11.sign(s, &DIGEST).map(|sig| sig.len()), Ok(64));

    // Another client destroys it. The module's cached handle still starts an operation, but
    // the signature is the service's: it answers that the key is gone.
    destroy(&http, &token, "doomed");
    assert_eq!(p11.sign_init(s, CKM_ECDSA, doomed), CKR_OK);
    assert_eq!(p11.sign(s, &DIGEST), Err(CKR_KEY_HANDLE_INVALID));
    // From then on every handle of that key is invalid, without waiting for a search.
    for &h in &all_doomed {
        assert_eq!(
            p11.attribute(s, h, CKA_LABEL),
            Err(CKR_OBJECT_HANDLE_INVALID)
        );
    }
    assert_eq!(p11.sign_init(s, CKM_ECDSA, doomed), CKR_KEY_HANDLE_INVALID);
    assert_eq!(p11.find(s, &private(b"doomed")), Ok(vec![]));
    assert_eq!(p11.find(s, &[(CKA_LABEL, b"doomed".to_vec())]), Ok(vec![]));
    // The other key is untouched.
    assert_eq!(p11.attribute(s, kept, CKA_LABEL), Ok(b"kept".to_vec()));
    assert_eq!(p11.sign_init(s, CKM_ECDSA, kept), CKR_OK);
    assert_eq!(p11.sign(s, &DIGEST).map(|sig| sig.len()), Ok(64));
    assert_eq!(p11.close(s), CKR_OK);
    assert_eq!(p11.finalize(), CKR_OK);
}

/// After `kagi key rotate`, a handle found before names the old version, which is
/// deactivated: signing with it is refused (the service signs with the key id the handle was
/// found with, never with whatever the label means now), and a new search by label finds the
/// new version, which signs. The old version is still found by its CKA_ID, verify only.
#[test]
fn a_handle_found_before_a_rotation_does_not_sign_with_the_new_version() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    let (http, token) = (server.http(), server.token());
    let old_id = create(&http, &token, "rotating");

    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let s = p11.open(0, false);
    let old = p11.find(s, &private(b"rotating")).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(p11.sign_init(s, CKM_ECDSA, old[0]), CKR_OK);
    assert_eq!(p11.sign(s, &DIGEST).map(|sig| sig.len()), Ok(64));

    let r = http.request(
        "POST",
        "/api/v1/keys/rotating/rotate",
        Some(&token),
        Some(b"{}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let new_id = r.json()["key"]["id"].as_str().unwrap().to_string();
    assert_ne!(old_id, new_id);

    if p11.sign_init(s, CKM_ECDSA, old[0]) == CKR_OK {
        assert!(p11.sign(s, &DIGEST).is_err(), "the old handle signed");
    }
    let new = p11.find(s, &private(b"rotating")).unwrap();
    assert_eq!(new.len(), 1);
    assert_ne!(new, old);
    assert_eq!(p11.attribute(s, new[0], CKA_ID), Ok(new_id.into_bytes()));
    assert_eq!(p11.sign_init(s, CKM_ECDSA, new[0]), CKR_OK);
    assert_eq!(p11.sign(s, &DIGEST).map(|sig| sig.len()), Ok(64));
    // The old version by its id: there, and it does not sign.
    let by_id = p11
        .find(
            s,
            &[
                (CKA_CLASS, ul(CKO_PRIVATE_KEY)),
                (CKA_ID, old_id.into_bytes()),
            ],
        )
        .unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(p11.attribute(s, by_id[0], CKA_SIGN), Ok(vec![0]));
    assert_ne!(p11.sign_init(s, CKM_ECDSA, by_id[0]), CKR_OK);
    assert_eq!(p11.close(s), CKR_OK);
    assert_eq!(p11.finalize(), CKR_OK);
}

#[test]
fn a_search_by_label_drops_the_handles_of_the_key_that_label_named_before() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    let (http, token) = (server.http(), server.token());
    let old_id = create(&http, &token, "reused");
    create(&http, &token, "vanishing");

    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let s = p11.open(0, false);
    let old = p11.find(s, &private(b"reused")).unwrap();
    assert_eq!(old.len(), 1);
    let vanishing = p11.find(s, &private(b"vanishing")).unwrap();
    assert_eq!(vanishing.len(), 1);

    // Destroyed, and a new key takes the label: the next search by label finds the new key
    // under a new handle, and the old handle no longer answers (for the old key or the new).
    destroy(&http, &token, "reused");
    let new_id = create(&http, &token, "reused");
    assert_ne!(old_id, new_id);
    let new = p11.find(s, &private(b"reused")).unwrap();
    assert_eq!(new.len(), 1);
    assert_ne!(new, old);
    assert_eq!(p11.attribute(s, new[0], CKA_ID), Ok(new_id.into_bytes()));
    assert_eq!(
        p11.attribute(s, old[0], CKA_ID),
        Err(CKR_OBJECT_HANDLE_INVALID)
    );
    assert_eq!(p11.sign_init(s, CKM_ECDSA, old[0]), CKR_KEY_HANDLE_INVALID);
    // Its old id finds nothing.
    assert_eq!(p11.find(s, &[(CKA_ID, old_id.into_bytes())]), Ok(vec![]));

    // Destroyed with no successor: a search by its label finds nothing and drops the handle.
    destroy(&http, &token, "vanishing");
    assert_eq!(p11.find(s, &private(b"vanishing")), Ok(vec![]));
    assert_eq!(
        p11.attribute(s, vanishing[0], CKA_LABEL),
        Err(CKR_OBJECT_HANDLE_INVALID)
    );
    assert_eq!(p11.close(s), CKR_OK);
    assert_eq!(p11.finalize(), CKR_OK);
}

#[test]
fn attributes_of_a_key_destroyed_since_are_not_served_from_the_module_s_memory() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    let (http, token) = (server.http(), server.token());
    create(&http, &token, "short-lived");

    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let s = p11.open(0, false);
    let h = p11.find(s, &private(b"short-lived")).unwrap()[0];
    assert_eq!(p11.attribute(s, h, CKA_LABEL), Ok(b"short-lived".to_vec()));
    destroy(&http, &token, "short-lived");
    // No search, no signature: once what the module read is older than kagi_pkcs11::FRESH,
    // reading an attribute asks the service again, which shows the key gone. (A wait, not a
    // timed assertion: after it the module must ask, however slow the machine.)
    std::thread::sleep(kagi_pkcs11::FRESH + std::time::Duration::from_millis(100));
    assert_eq!(
        p11.attribute(s, h, CKA_LABEL),
        Err(CKR_OBJECT_HANDLE_INVALID)
    );
    assert_eq!(p11.sign_init(s, CKM_ECDSA, h), CKR_KEY_HANDLE_INVALID);
    assert_eq!(p11.close(s), CKR_OK);
    assert_eq!(p11.finalize(), CKR_OK);
}

#[test]
fn a_search_by_id_alone_gets_the_certificate_with_the_key() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    let (http, token) = (server.http(), server.token());
    let id = create(&http, &token, "certified");
    let bare = create(&http, &token, "uncertified");
    let r = http.request(
        "POST",
        "/api/v1/keys/certified/certificate",
        Some(&token),
        Some(b"{}"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let pem = r.json()["certificate"].as_str().unwrap().to_string();

    // The service: certificate=true adds the PEM (null without one), and only with name/id.
    let list = |query: &str| {
        let r = http.request("GET", &format!("/api/v1/keys?{query}"), Some(&token), None);
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        r.json().as_array().unwrap().clone()
    };
    let by_id = list(&format!("id={id}&certificate=true"));
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0]["certificate"].as_str(), Some(pem.as_str()));
    let by_name = list("name=certified&certificate=true");
    assert_eq!(by_name[0]["certificate"].as_str(), Some(pem.as_str()));
    let without = list(&format!("id={bare}&certificate=true"));
    assert_eq!(without.len(), 1);
    assert!(without[0]["certificate"].is_null(), "{without:?}");
    assert!(list(&format!("id={id}"))[0].get("certificate").is_none());
    let r = http.request("GET", "/api/v1/keys?certificate=true", Some(&token), None);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_code(), "bad_query");

    // The module: CKA_ID alone finds private key, public key and certificate.
    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let s = p11.open(0, false);
    let found = p11.find(s, &[(CKA_ID, id.as_bytes().to_vec())]).unwrap();
    assert_eq!(found.len(), 3, "{found:?}");
    let cert = found
        .iter()
        .copied()
        .find(|&o| p11.ulong_attribute(s, o, CKA_CLASS) == Ok(CKO_CERTIFICATE))
        .expect("a certificate object");
    let der = p11.attribute(s, cert, CKA_VALUE).unwrap();
    let expected = kagi_pkcs11::client::first_certificate_der(&pem).unwrap();
    assert_eq!(der, expected);
    assert_eq!(p11.attribute(s, cert, CKA_ID), Ok(id.as_bytes().to_vec()));
    // A key without a certificate: its two key objects only.
    assert_eq!(
        p11.find(s, &[(CKA_ID, bare.as_bytes().to_vec())])
            .unwrap()
            .len(),
        2
    );
    assert_eq!(p11.close(s), CKR_OK);
    assert_eq!(p11.finalize(), CKR_OK);
}

/// A handle kept across a destroy and a re-create under the same label, with no search in
/// between: the module still names the key by label, and the service would find the new key
/// under it. The request carries the id the handle was found with, so the service refuses
/// instead of signing with a key the caller never chose.
#[test]
fn a_kept_handle_never_signs_with_a_new_key_that_took_its_label() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    let (http, token) = (server.http(), server.token());
    let old_id = create(&http, &token, "swapped");

    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let s = p11.open(0, false);
    let old = p11.find(s, &private(b"swapped")).unwrap()[0];
    assert_eq!(p11.sign_init(s, CKM_ECDSA, old), CKR_OK);
    assert_eq!(p11.sign(s, &DIGEST).map(|sig| sig.len()), Ok(64));

    destroy(&http, &token, "swapped");
    let new_id = create(&http, &token, "swapped");
    assert_ne!(old_id, new_id);
    // The module has not looked again: its handle still starts an operation.
    assert_eq!(p11.sign_init(s, CKM_ECDSA, old), CKR_OK);
    assert_eq!(p11.sign(s, &DIGEST), Err(CKR_KEY_HANDLE_INVALID));
    // The new key, found anew, signs.
    let new = p11.find(s, &private(b"swapped")).unwrap()[0];
    assert_eq!(p11.sign_init(s, CKM_ECDSA, new), CKR_OK);
    assert_eq!(p11.sign(s, &DIGEST).map(|sig| sig.len()), Ok(64));
    // Over HTTP the same pin: the old id with the label answers 404.
    let r = http.request(
        "POST",
        "/api/v1/sign",
        Some(&token),
        Some(
            format!(
                r#"{{"key":"swapped","key_id":"{old_id}","digest":"{}"}}"#,
                "ab".repeat(32)
            )
            .as_bytes(),
        ),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.error_code(), "key_not_found", "{}", r.body);
    assert_eq!(p11.close(s), CKR_OK);
    assert_eq!(p11.finalize(), CKR_OK);
}
