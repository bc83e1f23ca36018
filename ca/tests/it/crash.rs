//! Invariant 1 for certificates: a certificate exists if and only if the CA key use that
//! signed it was counted. Issuance runs in child processes that are SIGKILLed mid-stream, on
//! SQLite and PostgreSQL; afterwards every delivered certificate is stored byte for byte,
//! every stored certificate has its audited use, and every audited issuance has its
//! certificate.

use kagi_testkit::store as common;

use common::{init, TestStore, BACKENDS};
use kagi_ca::hierarchy::{create_intermediate, create_root};
use kagi_ca::{Authority, CaSpec, IssueOptions, Profiles, PublicUrls};
use kagi_hsm_core::{Algorithm, Gated};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};

/// Device `i` of this worker process: each round's worker makes new keys, so its devices have
/// serial numbers of their own (one serial number, one key).
fn csr(i: usize) -> Vec<u8> {
    let i = format!("{}-{i}", std::process::id());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
        rcgen::DnValue::PrintableString(format!("SN-{i}").try_into().unwrap()),
    );
    p.serialize_request(&key).unwrap().der().to_vec()
}

/// Child process: issue from 8 threads until killed, appending "serial der-hex" lines.
fn worker() {
    let (hsm, s) = common::worker_login();
    let out = std::env::var("KAGI_OUT").unwrap();
    let ca = Authority::load(&hsm, &s, "devices").unwrap();
    let profiles = Profiles::builtin().unwrap();
    let device = profiles.get("device").unwrap();
    let urls = PublicUrls::new("http://127.0.0.1:8080");
    let csrs: Vec<Vec<u8>> = (0..64).map(csr).collect();
    let file = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .unwrap(),
    );
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (ca, s, csrs, file, urls) = (&ca, &s, &csrs, &file, &urls);
            scope.spawn(move || {
                for n in 0..400 {
                    let issued = kagi_ca::issue::issue(
                        ca,
                        s,
                        device,
                        &csrs[(t * 8 + n) % csrs.len()],
                        &IssueOptions::default(),
                        urls,
                        &[],
                        serde_json::json!({}),
                    )
                    .unwrap();
                    let mut f = file.lock().unwrap();
                    writeln!(f, "{} {}", issued.record.serial, hex::encode(&issued.der)).unwrap();
                }
            });
        }
    });
}

#[test]
fn worker_entry() {
    if std::env::var("KAGI_WORKER").is_ok() {
        worker();
    }
}

fn delivered(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| {
            let (s, d) = l.split_once(' ')?;
            // A line cut short by SIGKILL is not a certificate anyone received.
            Some((s.to_string(), hex::decode(d).ok()?))
        })
        .collect()
}

#[test]
fn sigkill_during_issuance_leaves_certificates_and_counted_uses_in_step() {
    let urls = PublicUrls::new("http://127.0.0.1:8080");
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let spec = |n: &str| CaSpec {
            name: n.into(),
            subject: format!("CN={n}"),
            alg: Algorithm::EcP256,
            validity_days: 100,
        };
        assert!(matches!(
            create_root(&i.hsm, &i.admin, &spec("root"), None).unwrap(),
            Gated::Done(_)
        ));
        assert!(matches!(
            create_intermediate(&i.hsm, &i.admin, &spec("devices"), "root", &urls, None).unwrap(),
            Gated::Done(_)
        ));
        let all: BTreeMap<String, Vec<u8>> =
            common::sigkill_rounds(&store, &i, "crash::worker_entry", 5, delivered)
                .into_iter()
                .collect();
        let (hsm, s) = common::reopen(&store, &i.share, &i.token);
        // Every certificate a client received is stored, byte for byte.
        for (serial, der) in &all {
            let stored = hsm
                .certificate(serial)
                .unwrap()
                .unwrap_or_else(|| panic!("{serial} delivered but not stored"));
            assert_eq!(&stored.der, der);
        }
        // Stored certificates and audited issuances are the same set.
        let stored: BTreeSet<String> = hsm
            .list_certificates("devices", 10_000)
            .unwrap()
            .into_iter()
            .map(|c| c.serial)
            .collect();
        let mut audited = BTreeSet::new();
        let mut from = 0;
        loop {
            let page = hsm.audit_records(&s, from, 1000).unwrap();
            if page.is_empty() {
                break;
            }
            for e in &page {
                let d: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
                if e.action == "key.use"
                    && e.outcome == "ok"
                    && d["purpose"] == "issue_certificate"
                    && d["ca"] == "devices"
                {
                    audited.insert(d["serial"].as_str().unwrap().to_string());
                }
            }
            from = page.last().unwrap().seq + 1;
        }
        assert_eq!(stored, audited, "{backend:?}");
        assert!(stored.len() >= all.len());
        let key = hsm.key_info(&s, "ca.devices").unwrap();
        eprintln!(
            "{backend:?}: {} delivered, {} stored = {} audited issuances; CA key usage count {}",
            all.len(),
            stored.len(),
            audited.len(),
            key.usage_count
        );
        hsm.audit_verify(&s).unwrap();
    }
}
