//! Acceptance 5 of issue 13: a key with a usage limit of 10, used through the module by 8
//! threads at once, makes exactly 10 good signatures; every other attempt gets
//! CKR_KEY_NOT_ACTIVE. The limit is the service's: the module only passes its answer on.

mod common;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use common::*;
use cryptoki_sys::*;
use kagi_pkcs11::{CKA_USAGE_COUNT, CKA_USAGE_LIMIT, CKR_KEY_NOT_ACTIVE};
use kagi_testkit::server::Server;

const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

#[test]
fn eight_threads_get_exactly_the_ten_signatures_the_limit_allows() {
    let _turn = turn();
    let server = Server::start();
    configure(&server, true);
    let p11 = P11::new();
    assert_eq!(p11.initialize(), CKR_OK);
    let s = p11.open(0, true);
    let (public, private) = p11
        .generate(
            s,
            CKM_EC_KEY_PAIR_GEN,
            &[
                (CKA_EC_PARAMS, P256.to_vec()),
                (CKA_LABEL, b"limited".to_vec()),
            ],
            &[
                (CKA_LABEL, b"limited".to_vec()),
                (CKA_SIGN, vec![1]),
                (CKA_USAGE_LIMIT, ul(10)),
            ],
        )
        .unwrap();
    assert_eq!(p11.ulong_attribute(s, private, CKA_USAGE_LIMIT), Ok(10));
    assert_eq!(p11.ulong_attribute(s, private, CKA_USAGE_COUNT), Ok(0));
    let point = ec_point(&p11.attribute(s, public, CKA_EC_POINT).unwrap());

    let message = b"signed through PKCS#11 by many threads".to_vec();
    let results: Vec<Result<Vec<u8>, CK_RV>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let p11 = &p11;
                let message = &message;
                scope.spawn(move || {
                    let s = p11.open(0, false);
                    let mut got = Vec::new();
                    for _ in 0..3 {
                        assert_eq!(p11.sign_init(s, CKM_ECDSA_SHA256, private), CKR_OK);
                        got.push(p11.sign(s, message));
                    }
                    assert_eq!(p11.close(s), CKR_OK);
                    got
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });

    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
    let good: Vec<&Vec<u8>> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(good.len(), 10, "results: {results:?}");
    for sig in &good {
        key.verify(&message, sig)
            .expect("a good signature verifies");
    }
    for r in &results {
        if let Err(rv) = r {
            assert_eq!(*rv, CKR_KEY_NOT_ACTIVE, "results: {results:?}");
        }
    }
    assert_eq!(p11.ulong_attribute(s, private, CKA_USAGE_COUNT), Ok(10));
    assert_eq!(
        service_keys(&server)
            .into_iter()
            .find(|(l, _)| l == "limited")
            .map(|(_, n)| n),
        Some(10)
    );
    assert_eq!(p11.finalize(), CKR_OK);
}
