//! Cursors through the real service: every key and every certificate is seen once, in order,
//! when a client follows the pages; a cursor that names nothing is refused with what to pass.

use crate::ca::device_csr;
use crate::common;

use common::Server;
use serde_json::Value;

#[test]
fn keys_and_certificates_page_by_cursor_each_once_in_order() {
    let server = Server::start();
    let http = server.http();
    let token = server.token();
    let mut made: Vec<String> = (0..7).map(|i| format!("page-{i}")).collect();
    for name in &made {
        server.kagi_ok(&["key", "create", "--name", name, "--alg", "ec-p256"]);
    }
    // Keys: follow Link rel="next" from ?limit=3.
    let mut seen: Vec<String> = Vec::new();
    let mut next = Some("/api/v1/keys?limit=3".to_string());
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        assert!(pages < 20, "the pages do not end");
        let resp = http
            .get(&path)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        next = resp
            .headers()
            .get("Link")
            .and_then(|v| v.to_str().ok())
            .map(|l| {
                assert!(l.ends_with("; rel=\"next\""), "{l}");
                l.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string()
            });
        let page: Value =
            serde_json::from_str(&resp.into_body().read_to_string().unwrap()).unwrap();
        let page = page.as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(
            page.iter()
                .map(|k| k["label"].as_str().unwrap().to_string()),
        );
    }
    let all: Value =
        serde_json::from_str(&http.request("GET", "/api/v1/keys", Some(&token), None).body)
            .unwrap();
    let all: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, all, "paging gives the whole list, in order, once");
    made.retain(|m| !seen.contains(m));
    assert!(made.is_empty(), "keys never listed: {made:?}");
    let r = http.request(
        "GET",
        "/api/v1/keys?limit=3&name=page-1",
        Some(&token),
        None,
    );
    assert_eq!(r.status, 400, "{}", r.body);

    // Certificates: follow "next" from ?limit=2, newest first.
    for i in 0..5 {
        let r = http.post_raw(
            "/api/v1/ca/devices/profiles/device/issue",
            &token,
            "application/pkcs10",
            &device_csr(&format!("SN-PAGE-{i}")),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let first: Value = serde_json::from_str(
        &http
            .request(
                "GET",
                "/api/v1/ca/devices/certificates?limit=1000",
                Some(&token),
                None,
            )
            .body,
    )
    .unwrap();
    let want: Vec<String> = first["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["serial"].as_str().unwrap().to_string())
        .collect();
    assert!(want.len() >= 5);
    let mut got: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/api/v1/ca/devices/certificates?limit=2".to_string(),
            Some(c) => format!("/api/v1/ca/devices/certificates?limit=2&before={c}"),
        };
        let v: Value =
            serde_json::from_str(&http.request("GET", &path, Some(&token), None).body).unwrap();
        got.extend(
            v["certificates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["serial"].as_str().unwrap().to_string()),
        );
        match v["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
        assert!(got.len() <= want.len() + 2, "the pages do not end");
    }
    assert_eq!(got, want, "paging gives the newest-first list, once each");
    let out = server.kagi_ok(&["ca", "certs", "devices", "--limit", "2"]);
    assert!(
        out.contains("next page: kagi ca certs devices --limit 2 --before "),
        "{out}"
    );
    let r = http.request(
        "GET",
        "/api/v1/ca/devices/certificates?before=00ff",
        Some(&token),
        None,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("previous page"), "{}", r.body);
    let bad = server.kagi(&["ca", "certs", "devices", "--before", "x&limit=1"]);
    assert!(!bad.status.success());
    assert!(common::stderr(&bad).contains("--before takes a certificate serial"));
}

/// `GET /api/v1/keys` without a cursor answers its first page (100 keys) with the `Link` to
/// the next, never the whole partition at once; `kagi key list`, text and JSON, follows the
/// pages and shows every key once.
#[test]
fn the_key_list_pages_by_default_and_the_cli_reads_every_page() {
    let server = Server::start();
    let http = server.http();
    let token = server.token();
    let made: Vec<String> = (0..130).map(|i| format!("many-{i:03}")).collect();
    for name in &made {
        let body = format!(r#"{{"name":"{name}","alg":"ec-p256"}}"#);
        let r = http.request("POST", "/api/v1/keys", Some(&token), Some(body.as_bytes()));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let resp = http
        .get("/api/v1/keys")
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    let link = resp
        .headers()
        .get("Link")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let page: Value = serde_json::from_str(&resp.into_body().read_to_string().unwrap()).unwrap();
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 100, "the default page holds 100 keys");
    let last = page[99]["label"].as_str().unwrap().to_string();
    assert_eq!(
        link.as_deref(),
        Some(format!("</api/v1/keys?limit=100&after={last}>; rel=\"next\"").as_str()),
        "a full default page names the next one"
    );

    let json: Value =
        serde_json::from_str(&server.kagi_ok(&["--output", "json", "key", "list"])).unwrap();
    let listed: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["label"].as_str().unwrap())
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, listed, "every key once, in label order");
    for name in &made {
        assert!(
            listed.contains(&name.as_str()),
            "{name} is missing from kagi key list"
        );
    }
    let text = server.kagi_ok(&["key", "list"]);
    for name in &made {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} is missing from the text listing:\n{text}"
        );
    }
}
