//! Acceptance 7 of issue 13: with 10,000 keys in the partition, how long a PKCS#11 search by
//! CKA_LABEL or by CKA_ID takes through `libkagi_pkcs11` (C_FindObjectsInit + C_FindObjects +
//! C_FindObjectsFinal, called through the module's C function list) against a real `kagi serve`
//! over TLS. Beside it, in the same run: one HTTPS `GET /api/v1/keys?name=` from a plain client
//! (the round trip a search cannot avoid), and a search that names neither label nor id, which
//! still lists the whole partition. Then another client creates a key and the next search finds
//! it (asserted; the timings are only reported, the machines are noisy).
//!
//! Run: `cargo bench -p kagi-benches --bench pkcs11_find`. It builds and runs
//! `target/release/kagi` (`cargo build --release -p signer`), or KAGI_BIN;
//! KAGI_BENCH_KEYS=N keys (default 10000), KAGI_BENCH_SEARCHES=M timed searches per row
//! (default 2000).

use cryptoki_sys::*;
use kagi_benches::percentile;
use kagi_benches::serve::{agent, start};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

fn create_key(http: &ureq::Agent, url: &str, token: &str, name: &str) -> String {
    let body = format!(r#"{{"name":"{name}","alg":"ec-p256"}}"#);
    let resp = http
        .post(format!("{url}/api/v1/keys"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .expect("POST /api/v1/keys");
    assert_eq!(resp.status(), 201, "creating key {name}");
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().read_to_vec().expect("body")).expect("JSON");
    v["id"].as_str().expect("id").to_string()
}

/// The module through its C ABI, as a PKCS#11 application sees it.
struct P11 {
    f: &'static CK_FUNCTION_LIST,
}

impl P11 {
    fn load() -> P11 {
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: the out pointer is valid; the module hands back a static function list.
        let rv = unsafe { kagi_pkcs11::ffi::C_GetFunctionList(&mut list) };
        assert_eq!(rv, CKR_OK);
        // SAFETY: C_GetFunctionList returned CKR_OK, so `list` points at the static list.
        P11 {
            f: unsafe { &*list },
        }
    }

    fn call(&self, what: &str, rv: CK_RV) {
        assert_eq!(rv, CKR_OK, "{what}");
    }

    /// C_FindObjectsInit + C_FindObjects (until empty) + C_FindObjectsFinal.
    fn find(
        &self,
        s: CK_SESSION_HANDLE,
        template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ) -> Vec<CK_OBJECT_HANDLE> {
        let mut values: Vec<Vec<u8>> = template.iter().map(|(_, v)| v.clone()).collect();
        let mut attrs: Vec<CK_ATTRIBUTE> = template
            .iter()
            .zip(values.iter_mut())
            .map(|((t, _), v)| CK_ATTRIBUTE {
                type_: *t,
                pValue: v.as_mut_ptr() as *mut _,
                ulValueLen: v.len() as CK_ULONG,
            })
            .collect();
        let f = self.f;
        // SAFETY (all three calls): the template and the output buffer live across the call
        // and their lengths are the ones passed.
        self.call("C_FindObjectsInit", unsafe {
            f.C_FindObjectsInit.expect("C_FindObjectsInit")(
                s,
                attrs.as_mut_ptr(),
                attrs.len() as CK_ULONG,
            )
        });
        let mut out = Vec::new();
        loop {
            let mut batch = [0 as CK_OBJECT_HANDLE; 16];
            let mut n: CK_ULONG = 0;
            self.call("C_FindObjects", unsafe {
                f.C_FindObjects.expect("C_FindObjects")(s, batch.as_mut_ptr(), 16, &mut n)
            });
            if n == 0 {
                break;
            }
            out.extend_from_slice(&batch[..n as usize]);
        }
        self.call("C_FindObjectsFinal", unsafe {
            f.C_FindObjectsFinal.expect("C_FindObjectsFinal")(s)
        });
        out
    }
}

fn ul(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

/// Times `op` `n` times; prints p50/p99/max in milliseconds and returns the p50.
fn time(name: &str, n: usize, mut op: impl FnMut(usize)) -> f64 {
    let mut ms: Vec<f64> = (0..n)
        .map(|i| {
            let t = Instant::now();
            op(i);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let p50 = percentile(&ms, 0.5);
    println!(
        "{name:<72} p50 {p50:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms",
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
    p50
}

fn main() {
    let keys = kagi_benches::env("KAGI_BENCH_KEYS", 10_000usize).max(2);
    let searches = kagi_benches::env("KAGI_BENCH_SEARCHES", 2000usize).max(1);
    let cores = kagi_benches::cores();
    println!(
        "kagi PKCS#11 search benchmark: {cores} cores, {keys} keys, {searches} searches per row\n"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let ca = dir.path().join("kagi-data/tls-ca.pem");
    let http = agent(&ca);
    let token = std::fs::read_to_string(dir.path().join("kagi-data/admin.token"))
        .expect("admin token")
        .trim()
        .to_string();

    // The keys, through the API as any client makes them (8 clients at once).
    let t = Instant::now();
    let next = AtomicUsize::new(0);
    let mut made: Vec<(usize, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (http, url, token, next) = (&http, &server.url, &token, &next);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= keys {
                            break mine;
                        }
                        mine.push((i, create_key(http, url, token, &format!("find-{i:05}"))));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("creating keys"))
            .collect()
    });
    made.sort();
    let ids: Vec<String> = made.into_iter().map(|(_, id)| id).collect();
    println!(
        "created {keys} ec-p256 keys through POST /api/v1/keys in {:.1} s\n",
        t.elapsed().as_secs_f64()
    );

    std::env::remove_var("KAGI_PKCS11_CONF");
    std::env::set_var("KAGI_URL", &server.url);
    std::env::set_var("KAGI_CA", &ca);
    std::env::set_var("KAGI_TOKEN", &token);
    let p11 = P11::load();
    let f = p11.f;
    // SAFETY: NULL init args are allowed (no custom locking).
    p11.call("C_Initialize", unsafe {
        f.C_Initialize.expect("C_Initialize")(std::ptr::null_mut())
    });
    let mut s: CK_SESSION_HANDLE = 0;
    // SAFETY: the out pointer is valid; no notify callback.
    p11.call("C_OpenSession", unsafe {
        f.C_OpenSession.expect("C_OpenSession")(
            0,
            CKF_SERIAL_SESSION,
            std::ptr::null_mut(),
            None,
            &mut s,
        )
    });

    // Spread over the whole partition, the same sequence every run.
    let pick = |i: usize| (i.wrapping_mul(7919)) % keys;
    let by_label = |i: usize| {
        vec![
            (CKA_CLASS, ul(CKO_PRIVATE_KEY)),
            (CKA_LABEL, format!("find-{:05}", pick(i)).into_bytes()),
        ]
    };
    let by_id = |i: usize| vec![(CKA_ID, ids[pick(i)].as_bytes().to_vec())];
    // Warm the pooled connection and the module's tables.
    for i in 0..20 {
        assert_eq!(p11.find(s, &by_label(i)).len(), 1);
    }

    let http_p50 = time(
        "HTTPS GET /api/v1/keys?name= (plain client, the round trip)",
        searches,
        |i| {
            let resp = http
                .get(format!(
                    "{}/api/v1/keys?name=find-{:05}",
                    server.url,
                    pick(i)
                ))
                .header("Authorization", &format!("Bearer {token}"))
                .call()
                .expect("GET");
            assert_eq!(resp.status(), 200);
            let _ = resp.into_body().read_to_vec();
        },
    );
    let label_p50 = time(
        "C_FindObjects* by CKA_CLASS + CKA_LABEL (1 object)",
        searches,
        |i| assert_eq!(p11.find(s, &by_label(i)).len(), 1),
    );
    let by_class_id = |i: usize| {
        vec![
            (CKA_CLASS, ul(CKO_PRIVATE_KEY)),
            (CKA_ID, ids[pick(i)].as_bytes().to_vec()),
        ]
    };
    time(
        "C_FindObjects* by CKA_CLASS + CKA_ID (1 object)",
        searches,
        |i| assert_eq!(p11.find(s, &by_class_id(i)).len(), 1),
    );
    // Without a class the search may want the key's certificate: one more call to the service.
    let id_p50 = time(
        "C_FindObjects* by CKA_ID only (private + public key, certificate asked)",
        searches,
        |i| assert_eq!(p11.find(s, &by_id(i)).len(), 2),
    );
    let all_p50 = time(
        "C_FindObjects* by CKA_CLASS only (lists the whole partition)",
        5,
        |_| assert!(p11.find(s, &[(CKA_CLASS, ul(CKO_PRIVATE_KEY))]).len() >= keys),
    );
    println!(
        "\nat p50: by label {:.2}x, by id {:.2}x the bare HTTPS round trip; the whole-partition \
         search is {:.0}x a search by label",
        label_p50 / http_p50,
        id_p50 / http_p50,
        all_p50 / label_p50
    );

    // Another client makes a key; the very next search through the module finds it.
    let late_id = create_key(&http, &server.url, &token, "made-after-the-searches");
    assert_eq!(
        p11.find(
            s,
            &[
                (CKA_CLASS, ul(CKO_PRIVATE_KEY)),
                (CKA_LABEL, b"made-after-the-searches".to_vec())
            ]
        )
        .len(),
        1
    );
    assert_eq!(p11.find(s, &[(CKA_ID, late_id.into_bytes())]).len(), 2);
    println!("a key another client created after these searches: found by the next search");

    // SAFETY: a session this process opened; then the module is finalized once.
    p11.call("C_CloseSession", unsafe {
        f.C_CloseSession.expect("C_CloseSession")(s)
    });
    p11.call("C_Finalize", unsafe {
        f.C_Finalize.expect("C_Finalize")(std::ptr::null_mut())
    });
    drop(server);
}
