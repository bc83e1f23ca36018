//! What a CSR may ask for, judged against profiles, with requests made by openssl: each refusal
//! names its reason, and nothing is stored for a refused request.

use kagi_ca::hierarchy::{create_intermediate, create_root};
use kagi_ca::{Authority, CaError, CaSpec, IssueOptions, Profiles, PublicUrls};
use kagi_hsm_core::{Algorithm, Gated, Hsm, HsmConfig, Session, StoreConfig};
use std::path::Path;
use std::process::Command;

fn csr(dir: &Path, name: &str, subj: &str, addext: &[&str]) -> Vec<u8> {
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
    for a in addext {
        args.push("-addext");
        args.push(a);
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

struct Ca {
    hsm: Hsm,
    admin: Session,
    authority: Authority,
    profiles: Profiles,
    urls: PublicUrls,
}

fn ca(dir: &Path) -> Ca {
    let hsm = Hsm::open(HsmConfig::new(StoreConfig::sqlite_in(dir))).unwrap();
    let out = hsm.init(1, 1).unwrap();
    let admin = hsm.login(&out.admin_token).unwrap();
    let urls = PublicUrls::new("http://127.0.0.1:8080");
    let spec = |n: &str| CaSpec {
        name: n.into(),
        subject: format!("CN={n}"),
        alg: Algorithm::EcP256,
        validity_days: 400,
    };
    assert!(matches!(
        create_root(&hsm, &admin, &spec("root"), None).unwrap(),
        Gated::Done(_)
    ));
    assert!(matches!(
        create_intermediate(&hsm, &admin, &spec("ica"), "root", &urls, None).unwrap(),
        Gated::Done(_)
    ));
    let authority = Authority::load(&hsm, &admin, "ica").unwrap();
    Ca {
        hsm,
        admin,
        authority,
        profiles: Profiles::builtin().unwrap(),
        urls,
    }
}

impl Ca {
    fn issue(&self, profile: &str, csr: &[u8]) -> Result<kagi_ca::Issued, CaError> {
        kagi_ca::issue::issue(
            &self.authority,
            &self.admin,
            self.profiles.get(profile).unwrap(),
            csr,
            &IssueOptions::default(),
            &self.urls,
            &[],
            serde_json::json!({}),
        )
    }
}

#[test]
fn requests_beyond_the_profile_are_refused_with_their_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let c = ca(dir);
    let cases: Vec<(&str, &str, Vec<&str>, &str, &str)> = vec![
        (
            "code-signing",
            "/CN=Signer",
            vec!["extendedKeyUsage=DER:30:00"],
            "bad_csr",
            "extendedKeyUsage is empty",
        ),
        (
            "device",
            "/serialNumber=SN-1",
            vec!["basicConstraints=critical,CA:TRUE"],
            "not_allowed_by_profile",
            "asks to be a CA",
        ),
        (
            "device",
            "/serialNumber=SN-1",
            vec!["extendedKeyUsage=serverAuth"],
            "not_allowed_by_profile",
            "extended key usage",
        ),
        (
            "device",
            "/serialNumber=SN-1",
            vec!["keyUsage=critical,keyCertSign"],
            "not_allowed_by_profile",
            "key usages",
        ),
        (
            "device",
            "/serialNumber=SN-1",
            vec!["nsComment=hello"],
            "not_allowed_by_profile",
            "no profile grants",
        ),
        (
            "device",
            "/serialNumber=SN-1",
            vec!["subjectAltName=DNS:evil.example.com"],
            "san_not_allowed",
            "subjectAltName",
        ),
        (
            "device",
            "/CN=no serial",
            vec![],
            "not_allowed_by_profile",
            "requires serialNumber",
        ),
        (
            "device",
            "/serialNumber=SN 1 with spaces",
            vec![],
            "not_allowed_by_profile",
            "must match",
        ),
        (
            "device",
            "/serialNumber=SN-1/L=Berlin",
            vec![],
            "not_allowed_by_profile",
            "attribute L",
        ),
        (
            "tls-server",
            "/CN=kagi.example.com",
            vec![],
            "not_allowed_by_profile",
            "at least one subjectAltName",
        ),
        (
            "tls-server",
            "/CN=x",
            vec!["subjectAltName=DNS:bad_name!"],
            "san_not_allowed",
            "subjectAltName",
        ),
    ];
    let before = c.hsm.count_certificates("ica").unwrap();
    for (i, (profile, subj, ext, code, says)) in cases.iter().enumerate() {
        let req = csr(dir, &format!("c{i}.csr"), subj, ext);
        let e = c.issue(profile, &req).unwrap_err();
        assert_eq!(e.code(), *code, "{profile} {subj} {ext:?}: {e}");
        assert!(
            e.to_string().contains(says),
            "{profile} {subj} {ext:?}: {e}"
        );
    }
    assert_eq!(c.hsm.count_certificates("ica").unwrap(), before);

    // What a CSR may narrow: a repeated purpose is granted once, a subset of usages as asked.
    let req = csr(
        dir,
        "ok1.csr",
        "/CN=Signer",
        &["extendedKeyUsage=codeSigning,codeSigning"],
    );
    let issued = c.issue("code-signing", &req).unwrap();
    std::fs::write(
        dir.join("ok1.pem"),
        kagi_ca::x509::pem("CERTIFICATE", &issued.der).unwrap(),
    )
    .unwrap();
    let text = Command::new("openssl")
        .args([
            "x509",
            "-in",
            "ok1.pem",
            "-noout",
            "-ext",
            "extendedKeyUsage",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.matches("Code Signing").count(), 1, "{text}");

    // Serials may be given as openssl prints them.
    let colon = issued
        .record
        .serial
        .as_bytes()
        .chunks(2)
        .map(|p| std::str::from_utf8(p).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    c.hsm.revoke_certificate(&c.admin, &colon, 4).unwrap();
    assert_eq!(
        c.hsm
            .certificate(&colon)
            .unwrap()
            .unwrap()
            .revocation_reason,
        Some(4)
    );
    assert_eq!(
        c.hsm
            .revoke_certificate(&c.admin, &issued.record.serial, 6)
            .unwrap_err()
            .code(),
        "bad_request"
    );
}
