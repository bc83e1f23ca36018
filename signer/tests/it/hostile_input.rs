//! Invariant 4 against the whole HTTP front end: hundreds of hostile bodies (random bytes,
//! mutated JSON, deep nesting, huge numbers, wrong types, odd Unicode) sent to every POST route,
//! authenticated and not. Every answer must be a client error in the one error shape, never a
//! 5xx; the service must stay up; the key's usage count must not move; the audit log must verify.

use crate::common;

use common::Server;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

fn hostile_value(r: &mut Rng, depth: u32) -> String {
    let leaves = [
        "null".to_string(),
        "true".into(),
        "-1".into(),
        "0".into(),
        "1e400".into(),
        "-9223372036854775809".into(),
        "18446744073709551616".into(),
        "\"\"".into(),
        "\"../../etc/passwd\"".into(),
        "\"ec-p256\"".into(),
        "\"rsa-1024\"".into(),
        "\"\\u0000\\ud800\"".into(),
        "\"名前🔑\"".into(),
        format!("\"{}\"", "A".repeat(5000)),
        format!("\"{}\"", "ff".repeat(33)),
        "\"kagi-share-v1:2:00\"".into(),
        "\"2030-13-45T99:99:99Z\"".into(),
        "[]".into(),
        "{}".into(),
    ];
    if depth > 2 || r.next().is_multiple_of(3) {
        return r.pick(&leaves).clone();
    }
    match r.next() % 2 {
        0 => format!(
            "[{}, {}]",
            hostile_value(r, depth + 1),
            hostile_value(r, depth + 1)
        ),
        _ => format!("{{\"x\": {}}}", hostile_value(r, depth + 1)),
    }
}

fn hostile_body(r: &mut Rng) -> Vec<u8> {
    let fields = [
        "key",
        "digest",
        "digest_alg",
        "padding",
        "format",
        "name",
        "alg",
        "usage_limit",
        "not_before",
        "not_after",
        "operations",
        "exportable_under_wrap",
        "trusted",
        "wrapped",
        "wrapped_key",
        "wrapping_key",
        "roles",
        "partition",
        "kind",
        "expires_at",
        "share",
        "client_cert_sha256",
    ];
    match r.next() % 6 {
        0 => (0..(r.next() % 300)).map(|_| r.next() as u8).collect(),
        1 => format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes(),
        2 => b"{\"key\":\"k\",\"key\":\"k\",\"digest\":\"00\"}".to_vec(),
        _ => {
            let n = 1 + r.next() % 5;
            let parts: Vec<String> = (0..n)
                .map(|_| format!("\"{}\": {}", r.pick(&fields), hostile_value(r, 0)))
                .collect();
            format!("{{{}}}", parts.join(", ")).into_bytes()
        }
    }
}

#[test]
fn hostile_bodies_on_every_route_change_nothing() {
    let server = Server::start();
    let http = server.http();
    let token = server.token();
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "k",
        "--alg",
        "ec-p256",
        "--usage-limit",
        "5",
    ]);
    std::fs::write(server.path("a.bin"), b"x").unwrap();
    server.kagi_ok(&["sign", "--key", "k", "a.bin", "-o", "a.sig"]);
    let keys_before = server.kagi_ok(&["key", "list"]);
    let cas_before = server.kagi_ok(&["ca", "list"]);
    let certs_before = server.kagi_ok(&["ca", "certs", "devices"]);

    let routes = [
        "/api/v1/sign",
        "/api/v1/keys",
        "/api/v1/keys/import",
        "/api/v1/keys/k/export-wrapped",
        "/api/v1/credentials",
        "/api/v1/identities",
        "/api/v1/partitions",
        "/api/v1/policies",
        "/api/v1/policies/1/activate",
        "/api/v1/sys/unseal",
        "/api/v1/approvals/nope/approve",
        "/api/v1/identities/nope/revoke",
        "/api/v1/audit/verify",
        "/api/v1/ca",
        "/api/v1/ca/nope/revoke",
        "/api/v1/ca/devices/profiles/device/issue",
        "/api/v1/ca/devices/profiles/device/issue-batch",
        "/api/v1/certificates/00ff/revoke",
        "/ocsp",
        "/tsa",
        "/api/v1/log/verify",
        "/api/v1/keys/k/certificate",
        "/.well-known/est/simpleenroll",
    ];
    let seed = 0x5eed_1234_abcd_0001u64;
    let mut r = Rng(seed);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..600u32 {
        let route = *r.pick(&routes);
        let body = hostile_body(&mut r);
        let auth = if i.is_multiple_of(5) {
            None
        } else {
            Some(token.as_str())
        };
        let reply = http.request("POST", route, auth, Some(&body));
        *statuses.entry(reply.status).or_insert(0) += 1;
        assert!(
            reply.status < 500,
            "seed {seed:x}, request {i}: {route} answered {} to {:?}: {}",
            reply.status,
            String::from_utf8_lossy(&body[..body.len().min(200)]),
            reply.body
        );
        if reply.status >= 400 {
            // The one error shape, with a code and a message.
            reply.error_code();
        }
    }
    eprintln!("statuses seen: {statuses:?}");
    assert!(statuses.keys().all(|s| *s < 500));
    assert_eq!(
        server.kagi_ok(&["key", "list"]),
        keys_before,
        "hostile input changed the keys"
    );
    assert_eq!(
        server.kagi_ok(&["ca", "list"]),
        cas_before,
        "hostile input changed the CAs"
    );
    assert_eq!(
        server.kagi_ok(&["ca", "certs", "devices"]),
        certs_before,
        "hostile input issued a certificate"
    );
    let show = server.kagi_ok(&["key", "show", "k"]);
    assert!(show.contains("usage count:           1"), "{show}");
    assert!(server
        .kagi_ok(&["audit", "verify"])
        .starts_with("audit log OK"));
}
