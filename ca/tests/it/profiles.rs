//! Profiles as data (issue 12): allow-lists match names as literal text, officers add profiles
//! that live in the verified audit log, and a database writer who widens a stored profile gains
//! nothing: the widened name is still refused, and a restarted kagi fails closed.

use kagi_ca::csr::San;
use kagi_ca::hierarchy::{create_intermediate, create_root};
use kagi_ca::profile::ProfileSpec;
use kagi_ca::service::Pki;
use kagi_ca::{CaSpec, IssueOptions, Profile, Profiles};
use kagi_hsm_core::{Algorithm, Gated, Hsm, Session};
use kagi_testkit::store::{self, Backend, TestStore};
use std::path::Path;
use std::process::Command;

const LAB_TLS: &str = r#"
name = "lab-tls"
description = "lab servers only"
key_types = ["ec-p256"]
key_usage = ["digitalSignature"]
ekus = ["serverAuth"]
default_validity_days = 30
max_validity_days = 90
san_required = true
san_dns = ["[a-z0-9-]+\\.lab\\.example\\.com"]
san_ip = ["10.0.0.0/8", "2001:db8::/32"]
subject = [{ attr = "CN", pattern = "[a-z0-9.-]{1,64}" }]
"#;

fn lab_tls() -> Profile {
    Profile::compile(Profile::parse_spec(LAB_TLS).unwrap()).unwrap()
}

fn dns(s: &str) -> San {
    San::Dns(s.into())
}

fn ip(s: &str) -> San {
    San::Ip(s.parse().unwrap())
}

#[test]
fn allow_lists_match_names_as_literal_text() {
    let p = lab_tls();
    assert_eq!(p.san_refusal(&dns("a.lab.example.com")), None);
    for refused in [
        "*.google.com",
        "*.lab.example.com",
        "lab.example.com.evil.net",
        "a.lab.example.com.evil.net",
        "a.lab.example.com\nx",
        "A.LAB.EXAMPLE.COM",
    ] {
        let why = p
            .san_refusal(&dns(refused))
            .unwrap_or_else(|| panic!("{refused:?} passed"));
        let shown = refused.escape_default().to_string();
        assert!(why.contains(&format!("DNS name '{shown}'")), "{why}");
        assert!(why.contains("profile 'lab-tls'"), "{why}");
        assert!(why.contains("[a-z0-9-]+\\.lab\\.example\\.com"), "{why}");
    }
    // A wildcard passes only a pattern that admits the '*' itself.
    let wild = Profile::compile(
        Profile::parse_spec(&LAB_TLS.replace(
            r#"san_dns = ["[a-z0-9-]+\\.lab\\.example\\.com"]"#,
            r#"san_dns = ["\\*\\.lab\\.example\\.com", "[a-z0-9-]+\\.lab\\.example\\.com"]"#,
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(wild.san_refusal(&dns("*.lab.example.com")), None);
    assert!(wild.san_refusal(&dns("*.google.com")).is_some());

    assert_eq!(p.san_refusal(&ip("10.1.2.3")), None);
    assert_eq!(p.san_refusal(&ip("2001:db8::7")), None);
    for refused in ["11.0.0.1", "::1", "2001:db9::1", "127.0.0.1"] {
        let why = p.san_refusal(&ip(refused)).unwrap();
        assert!(why.contains(&format!("IP address '{refused}'")), "{why}");
        assert!(why.contains("10.0.0.0/8"), "{why}");
    }
    let e = p
        .san_refusal(&San::Email("a@lab.example.com".into()))
        .unwrap();
    assert!(
        e.contains("allowed subjectAltName email addresses: none"),
        "{e}"
    );
}

#[test]
fn the_builtin_tls_server_profile_still_takes_what_kagi_serve_asks_for() {
    let builtin = Profiles::builtin().unwrap();
    let tls = builtin.get("tls-server").unwrap();
    for name in [
        "localhost",
        "kagi.internal.example",
        "a-b.c",
        "*.example.com",
    ] {
        assert_eq!(tls.san_refusal(&dns(name)), None, "{name}");
    }
    for addr in ["127.0.0.1", "::1", "192.0.2.10"] {
        assert_eq!(tls.san_refusal(&ip(addr)), None, "{addr}");
    }
    // The single-regex fields of the built-in file still read, and a list reads too.
    let client = builtin.get("device-client").unwrap();
    assert_eq!(client.spec.ekus, ["clientAuth"]);
    assert_eq!(client.spec.key_usage, ["digitalSignature"]);
    assert!(client.san_refusal(&dns("a.example.com")).is_some());
}

#[test]
fn specs_read_as_toml_or_json_and_print_back() {
    let top = Profile::parse_spec(LAB_TLS).unwrap();
    let table = Profile::parse_spec(&format!("[[profile]]{LAB_TLS}")).unwrap();
    let json = Profile::parse_spec(&serde_json::to_string(&top).unwrap()).unwrap();
    let printed = Profile::parse_spec(&top.to_toml().unwrap()).unwrap();
    let as_json = |s: &ProfileSpec| serde_json::to_value(s).unwrap();
    for other in [&table, &json, &printed] {
        assert_eq!(as_json(other), as_json(&top));
    }
    for (bad, says) in [
        (LAB_TLS.replace("lab-tls", "lab/tls"), "profile name"),
        (LAB_TLS.replace("10.0.0.0/8", "10.0.0.0/33"), "CIDR"),
        (LAB_TLS.replace("[a-z0-9.-]{1,64}", "[a-z"), "invalid regex"),
        (
            LAB_TLS.replace("default_validity_days = 30", "default_validity_days = 91"),
            "default_validity_days",
        ),
        (
            LAB_TLS.replace("serverAuth", "serverAuthx"),
            "extended key usage",
        ),
        (format!("{LAB_TLS}\nsurprise = 1"), "surprise"),
    ] {
        let e = Profile::parse_spec(&bad)
            .and_then(Profile::compile)
            .unwrap_err();
        assert!(e.to_string().contains(says), "{says}: {e}");
    }
    let two = format!("[[profile]]{LAB_TLS}\n[[profile]]{LAB_TLS}");
    let e = Profile::parse_spec(&two).unwrap_err();
    assert!(e.to_string().contains("one profile per file"), "{e}");
}

fn csr(dir: &Path, name: &str, subj: &str, san: Option<&str>) -> Vec<u8> {
    let mut args = vec![
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "k.pem",
        "-subj",
        subj,
        "-out",
        name,
    ];
    let ext;
    if let Some(s) = san {
        ext = format!("subjectAltName={s}");
        args.extend(["-addext", &ext]);
    }
    let out = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.join(name)).unwrap()
}

fn hierarchy(hsm: &Hsm, admin: &Session, pki: &Pki) {
    let spec = |n: &str| CaSpec {
        name: n.into(),
        subject: format!("CN={n}"),
        alg: Algorithm::EcP256,
        validity_days: 400,
    };
    assert!(matches!(
        create_root(hsm, admin, &spec("root"), None).unwrap(),
        Gated::Done(_)
    ));
    assert!(matches!(
        create_intermediate(hsm, admin, &spec("services"), "root", &pki.urls, None).unwrap(),
        Gated::Done(_)
    ));
}

fn issue(
    pki: &Pki,
    hsm: &Hsm,
    s: &Session,
    csr: &[u8],
) -> Result<kagi_ca::Issued, kagi_ca::CaError> {
    pki.issue(
        hsm,
        s,
        "services",
        "lab-tls",
        csr,
        &IssueOptions::default(),
        &[],
        serde_json::json!({}),
    )
}

/// The whole life of a custom profile on one backend, ending with a database writer widening
/// it behind kagi's back.
fn custom_profile_lives_in_the_audit_log(backend: Backend) {
    let ts = TestStore::new(backend);
    let inst = store::init(&ts);
    let (hsm, admin) = (&inst.hsm, &inst.admin);
    let dir = ts.dir.path();
    let pki = Pki::new("http://127.0.0.1:8080").unwrap();
    hierarchy(hsm, admin, &pki);

    // Before it exists, it is unknown; a built-in name cannot be taken.
    let good = csr(
        dir,
        "good.csr",
        "/CN=a.lab.example.com",
        Some("DNS:a.lab.example.com"),
    );
    assert_eq!(
        issue(&pki, hsm, admin, &good).unwrap_err().code(),
        "unknown_profile"
    );
    let mut builtin_name = Profile::parse_spec(LAB_TLS).unwrap();
    builtin_name.name = "tls-server".into();
    let e = pki.set_profile(hsm, admin, builtin_name, None).unwrap_err();
    assert_eq!(e.code(), "conflict", "{e}");

    let spec = Profile::parse_spec(LAB_TLS).unwrap();
    let set = match pki.set_profile(hsm, admin, spec.clone(), None).unwrap() {
        Gated::Done(s) => s,
        Gated::Pending(_) => panic!("no quorum, no approval"),
    };
    assert!(!set.replaced);
    assert!(!set.entry.builtin);
    let listed = pki.list_profiles(hsm, admin.partition()).unwrap();
    assert!(listed
        .iter()
        .any(|p| p.spec.name == "lab-tls" && !p.builtin));
    assert!(listed
        .iter()
        .any(|p| p.spec.name == "device-client" && p.builtin));

    issue(&pki, hsm, admin, &good).unwrap();
    let before = hsm.count_certificates("services").unwrap();
    for (i, name) in ["*.google.com", "lab.example.com.evil.net"]
        .iter()
        .enumerate()
    {
        let bad = csr(
            dir,
            &format!("bad{i}.csr"),
            "/CN=x",
            Some(&format!("DNS:{name}")),
        );
        let e = issue(&pki, hsm, admin, &bad).unwrap_err();
        assert_eq!(e.code(), "san_not_allowed", "{e}");
        assert!(e.to_string().contains(&format!("DNS name '{name}'")), "{e}");
    }
    assert_eq!(hsm.count_certificates("services").unwrap(), before);

    // Replacing it: the newest record is the profile.
    let mut narrower = spec.clone();
    narrower.san_dns = Some(kagi_ca::profile::Patterns::One(
        "b\\.lab\\.example\\.com".into(),
    ));
    match pki.set_profile(hsm, admin, narrower, None).unwrap() {
        Gated::Done(s) => assert!(s.replaced),
        Gated::Pending(_) => panic!("no quorum"),
    }
    let e = issue(&pki, hsm, admin, &good).unwrap_err();
    assert_eq!(e.code(), "san_not_allowed", "{e}");
    match pki.set_profile(hsm, admin, spec, None).unwrap() {
        Gated::Done(s) => assert!(s.replaced),
        Gated::Pending(_) => panic!("no quorum"),
    }

    // The database writer: every stored copy of the profile is widened to any DNS name.
    let widened = ts.exec(
        r"UPDATE audit_records SET detail = replace(detail, '[a-z0-9-]+\\.lab\\.example\\.com', '.*')
          WHERE action = 'ca.profile_set'",
    );
    assert!(widened >= 1);
    let wide = csr(dir, "wide.csr", "/CN=x", Some("DNS:*.google.com"));
    let before = hsm.count_certificates("services").unwrap();
    // This process verified the records when they were written: the edit changes nothing here
    // (or its sweep already found it and kagi failed closed).
    let e = issue(&pki, hsm, admin, &wide).unwrap_err();
    assert!(
        matches!(e.code(), "san_not_allowed" | "integrity_failure"),
        "{e}"
    );
    assert_eq!(hsm.count_certificates("services").unwrap(), before);

    // A restarted kagi verifies the whole log: it fails closed instead of reading the edit.
    drop(pki);
    let (hsm2, admin2) = store::reopen(&ts, &inst.share, &inst.token);
    let pki2 = Pki::new("http://127.0.0.1:8080").unwrap();
    let e = issue(&pki2, &hsm2, &admin2, &wide).unwrap_err();
    assert_eq!(e.code(), "integrity_failure", "{e}");
    let e = pki2.list_profiles(&hsm2, admin2.partition()).unwrap_err();
    assert_eq!(e.code(), "integrity_failure", "{e}");
    assert_eq!(hsm2.count_certificates("services").unwrap(), before);
}

#[test]
fn a_widened_profile_row_is_never_used_sqlite() {
    custom_profile_lives_in_the_audit_log(Backend::Sqlite);
}

#[test]
fn a_widened_profile_row_is_never_used_postgres() {
    custom_profile_lives_in_the_audit_log(Backend::Postgres);
}
