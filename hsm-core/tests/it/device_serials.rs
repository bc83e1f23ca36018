//! The store's rule behind the device profile's one live certificate per serial number, on
//! both backends, below the CA's pre-signing check: claims made in one transaction batch (16
//! threads released at once) still leave one holder, the same key renews, and a revocation
//! frees the serial.

use kagi_testkit::store as common;

use common::*;
use kagi_hsm_core::records::ca::{NewCertificate, SerialClaim};
use kagi_hsm_core::*;
use std::sync::Barrier;

fn claim(sn: &str) -> SerialClaim {
    SerialClaim {
        serial_number: sn.to_string(),
        override_in_use: false,
    }
}

/// Store a made-up certificate (the bytes are not X.509; hsm-core does not read them) for the
/// key `key` under CA `devices`, claiming `sn`.
fn store(i: &Instance, serial: &str, key: u8, sn: &SerialClaim) -> Result<()> {
    let mut build = |sig: &[u8]| -> Result<NewCertificate> {
        Ok(NewCertificate {
            serial: serial.to_string(),
            ca_name: "devices".into(),
            profile: "device".into(),
            subject: format!("serialNumber={}", sn.serial_number),
            not_before: 0,
            not_after: i64::MAX / 2,
            der: sig.to_vec(),
            spki_sha256: [key; 32],
        })
    };
    let req = SignRequest {
        digest_alg: None,
        digest: vec![key; 32],
        padding: RsaPadding::Pkcs1v15,
    };
    i.hsm
        .sign_and_store_certificate(
            &i.admin,
            "ca.devices",
            &req,
            &[],
            serde_json::json!({}),
            Some(sn),
            &mut build,
        )
        .map(|_| ())
}

#[test]
fn one_live_certificate_per_device_serial_under_concurrency() {
    for backend in BACKENDS {
        let store_ = TestStore::new(backend);
        let i = init(&store_);
        i.hsm
            .create_ca_key(&i.admin, "devices", Algorithm::EcP256)
            .unwrap();
        let start = Barrier::new(16);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..16u8)
                .map(|t| {
                    let (i, start) = (&i, &start);
                    s.spawn(move || {
                        start.wait();
                        store(i, &format!("{:02x}", t + 1), t + 1, &claim("SN-1"))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "{backend:?}: {results:?}");
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| e.code() == "serial_in_use"),
            "{backend:?}: {results:?}"
        );
        assert_eq!(
            i.hsm.count_certificates("devices").unwrap(),
            1,
            "{backend:?}"
        );
        let holder = i
            .hsm
            .device_serial_holder("devices", "SN-1")
            .unwrap()
            .unwrap();
        let key = u8::from_str_radix(&holder.cert_serial, 16).unwrap();

        // The holder's key renews; another key is refused; a revocation frees the serial.
        store(&i, "a1", key, &claim("SN-1")).unwrap();
        let other = if key == 1 { 2 } else { 1 };
        let e = store(&i, "a2", other, &claim("SN-1")).unwrap_err();
        assert_eq!(e.code(), "serial_in_use");
        i.hsm.revoke_certificate(&i.admin, "a1", 1).unwrap();
        let e = store(&i, "a3", other, &claim("SN-1")).unwrap_err();
        assert_eq!(
            e.code(),
            "serial_in_use",
            "the renewed-from certificate is live"
        );
        i.hsm
            .revoke_certificate(&i.admin, &holder.cert_serial, 1)
            .unwrap();
        assert!(i
            .hsm
            .device_serial_holder("devices", "SN-1")
            .unwrap()
            .is_none());
        store(&i, "a4", other, &claim("SN-1")).unwrap();
        i.hsm.audit_verify(&i.admin).unwrap();
    }
}
