//! Acceptance 7 of issue 13, the part a test can prove without timing: a search by CKA_LABEL or
//! CKA_ID asks the service for that one key (`GET /api/v1/keys?name=` / `?id=`), so a key
//! another client created after a first search shows up in the next one, and a key destroyed
//! since is gone from it. How long such a search takes at 10,000 keys is the bench's
//! (`cargo bench -p kagi-benches --bench pkcs11_find`).

mod common;

use common::*;
use cryptoki_sys::*;
use kagi_testkit::server::Server;

#[test]
fn a_search_by_label_or_id_sees_keys_other_clients_made_and_destroyed_since() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    let token = server.token();
    let http = server.http();
    for name in ["first", "second"] {
        let r = http.request(
            "POST",
            "/api/v1/keys",
            Some(&token),
            Some(format!(r#"{{"name":"{name}","alg":"ec-p256"}}"#).as_bytes()),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }

    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let s = p11.open(0, false);
    let private = |label: &[u8]| {
        vec![
            (CKA_CLASS, ul(CKO_PRIVATE_KEY)),
            (CKA_LABEL, label.to_vec()),
        ]
    };
    assert_eq!(p11.find(s, &private(b"later")), Ok(vec![]));
    let first = p11.find(s, &private(b"first")).unwrap();
    assert_eq!(first.len(), 1);

    // Another client (plain HTTP, another connection) makes a key after that search.
    let r = http.request(
        "POST",
        "/api/v1/keys",
        Some(&token),
        Some(br#"{"name":"later","alg":"ec-p256"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();

    let by_label = p11.find(s, &private(b"later")).unwrap();
    assert_eq!(by_label.len(), 1);
    assert_eq!(
        p11.attribute(s, by_label[0], CKA_ID),
        Ok(id.as_bytes().to_vec())
    );
    assert_eq!(
        p11.attribute(s, by_label[0], CKA_LABEL),
        Ok(b"later".to_vec())
    );
    // By id: its private and public key, the private one under the handle the label gave.
    let by_id = p11.find(s, &[(CKA_ID, id.as_bytes().to_vec())]).unwrap();
    assert_eq!(by_id.len(), 2, "{by_id:?}");
    assert!(by_id.contains(&by_label[0]));
    let classes: Vec<CK_ULONG> = by_id
        .iter()
        .map(|&o| p11.ulong_attribute(s, o, CKA_CLASS).unwrap())
        .collect();
    assert!(classes.contains(&CKO_PRIVATE_KEY) && classes.contains(&CKO_PUBLIC_KEY));
    // Label and id together must both hold.
    assert_eq!(
        p11.find(
            s,
            &[
                (CKA_LABEL, b"first".to_vec()),
                (CKA_ID, id.as_bytes().to_vec())
            ]
        ),
        Ok(vec![])
    );
    // ... and does not make the handles of the key of that id go stale.
    assert_eq!(
        p11.attribute(s, by_label[0], CKA_LABEL),
        Ok(b"later".to_vec())
    );
    // Other attributes of the template still narrow the one key found.
    assert_eq!(
        p11.find(
            s,
            &[
                (CKA_CLASS, ul(CKO_SECRET_KEY)),
                (CKA_LABEL, b"later".to_vec())
            ]
        ),
        Ok(vec![])
    );
    // No kagi label or id is other than UTF-8: such bytes find nothing, and ask nothing.
    assert_eq!(p11.find(s, &[(CKA_ID, vec![0xff, 0xfe])]), Ok(vec![]));
    // A search without label or id still lists the whole partition (with the instance's own
    // keys beside these three).
    let labels: Vec<Vec<u8>> = p11
        .find(s, &[(CKA_CLASS, ul(CKO_PRIVATE_KEY))])
        .unwrap()
        .into_iter()
        .map(|o| p11.attribute(s, o, CKA_LABEL).unwrap())
        .collect();
    for name in ["first", "second", "later"] {
        assert!(labels.contains(&name.as_bytes().to_vec()), "{name}");
    }

    // The service's side of it: one key, none, or a refusal that says what was wrong.
    let list = |query: &str| {
        let r = http.request("GET", &format!("/api/v1/keys?{query}"), Some(&token), None);
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                k["name"]
                    .as_str()
                    .or(k["label"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(list("name=later"), ["later"]);
    assert_eq!(list(&format!("id={id}")), ["later"]);
    assert_eq!(list(&format!("name=later&id={id}")), ["later"]);
    assert!(list(&format!("name=first&id={id}")).is_empty());
    assert!(list("name=nothing-here").is_empty());
    assert!(list("id=nothing-here").is_empty());
    let r = http.request("GET", "/api/v1/keys?label=later", Some(&token), None);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_code(), "bad_query");

    // Destroyed by another client: the next search by id no longer finds it, and its handles
    // go invalid.
    let r = http.request("DELETE", "/api/v1/keys/later", Some(&token), None);
    assert!(r.status == 200 || r.status == 204, "{}", r.body);
    assert_eq!(p11.find(s, &[(CKA_ID, id.as_bytes().to_vec())]), Ok(vec![]));
    assert_eq!(
        p11.attribute(s, by_label[0], CKA_LABEL),
        Err(CKR_OBJECT_HANDLE_INVALID)
    );
    assert_eq!(p11.find(s, &private(b"later")), Ok(vec![]));
    assert_eq!(p11.find(s, &private(b"first")), Ok(first));
    assert_eq!(p11.close(s), CKR_OK);
    assert_eq!(p11.finalize(), CKR_OK);
}

/// A search without a label or id lists the partition, which the service answers a page at a
/// time: the module follows the pages (500 keys each) and finds every key once.
#[test]
fn a_search_of_the_whole_partition_reads_every_page() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    let token = server.token();
    let http = server.http();
    let made = 520;
    for i in 0..made {
        let r = http.request(
            "POST",
            "/api/v1/keys",
            Some(&token),
            Some(format!(r#"{{"name":"bulk-{i:04}","alg":"ec-p256"}}"#).as_bytes()),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let s = p11.open(0, false);
    let found = p11.find(s, &[(CKA_CLASS, ul(CKO_PRIVATE_KEY))]).unwrap();
    let mut labels: Vec<Vec<u8>> = found
        .iter()
        .map(|&o| p11.attribute(s, o, CKA_LABEL).unwrap())
        .collect();
    labels.sort();
    labels.dedup();
    assert_eq!(found.len(), labels.len(), "a key found twice");
    for i in 0..made {
        let want = format!("bulk-{i:04}").into_bytes();
        assert!(
            labels.contains(&want),
            "{} not found",
            String::from_utf8_lossy(&want)
        );
    }
}
