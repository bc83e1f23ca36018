//! Relying parties require witness cosignatures (`--witness VKEY`, `--witness-quorum K`) on
//! the checkpoint of every proof they rely on: the `.tlog.json` beside a raw or CMS
//! signature, and a Sigstore bundle's checkpoint. The proofs are real ones from a running
//! kagi; the cosignature lines are made with kagi-tlog's `cosign` and test witness keys, as a
//! C2SP witness would add them, then the checks are tried the way a rolled-back log (or
//! someone pasting cosignatures around) would try to get past them. Every `kagi verify` run is
//! repeated with the `kagi-verify` binary, which must agree.

use crate::common;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use common::{stderr, Server};
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Witness {
    name: &'static str,
    key: Ed25519KeyPair,
}

impl Witness {
    fn new(name: &'static str) -> Witness {
        Witness {
            name,
            key: Ed25519KeyPair::generate().unwrap(),
        }
    }

    fn vkey(&self) -> String {
        let pk: [u8; 32] = self.key.public_key().as_ref().try_into().unwrap();
        kagi_tlog::note::cosignature_verifier_key(self.name, &pk)
    }

    /// This witness's cosignature line over the checkpoint text `text`.
    fn line(&self, text: &str) -> String {
        kagi_tlog::cosign(text, self.name, 1_790_000_000, &self.key).unwrap()
    }
}

/// Where each kind of proof keeps its checkpoint note.
#[derive(Clone, Copy)]
enum Proof {
    /// `SIG.tlog.json`: `checkpoint`.
    Sidecar,
    /// A Sigstore bundle: the inclusion proof's checkpoint envelope.
    Bundle,
}

fn checkpoint_of(doc: &mut Value, kind: Proof) -> &mut Value {
    match kind {
        Proof::Sidecar => &mut doc["checkpoint"],
        Proof::Bundle => {
            &mut doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
                ["envelope"]
        }
    }
}

/// Writes `to` as `from` with its checkpoint note changed by `edit(note, text)`.
fn rewrite(
    server: &Server,
    from: &str,
    to: &str,
    kind: Proof,
    edit: impl Fn(&str, &str) -> String,
) {
    let mut doc: Value =
        serde_json::from_slice(&std::fs::read(server.path(from)).unwrap()).unwrap();
    let cp = checkpoint_of(&mut doc, kind);
    let note = cp.as_str().unwrap().to_string();
    let text = kagi_tlog::unverified_text(&note).unwrap().to_string();
    *cp = Value::from(edit(&note, &text));
    std::fs::write(server.path(to), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

/// `text` with its size line changed: another checkpoint of the same log.
fn other_checkpoint(text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[1] = (lines[1].parse::<u64>().unwrap() + 1).to_string();
    lines.join("\n") + "\n"
}

/// `line` with one bit of its signature flipped.
fn tampered(line: &str) -> String {
    let (head, b64) = line.trim_end().rsplit_once(' ').unwrap();
    let mut blob = B64.decode(b64).unwrap();
    blob[40] ^= 1;
    format!("{head} {}\n", B64.encode(blob))
}

/// One signature format's checks: `sig` is the signature (or bundle) file and `proof` the file
/// holding its checkpoint (the same file for a bundle); `base` the rest of `kagi verify`'s
/// arguments.
fn witness_checks(server: &Server, sig: &str, proof: &str, kind: Proof, base: &[&str]) {
    let (a, b, c) = (
        Witness::new("witness.example/a"),
        Witness::new("witness.example/b"),
        Witness::new("witness.example/c"),
    );
    let (va, vb, vc) = (a.vkey(), b.vkey(), c.vkey());
    // The signature and its proof are copied under `name`, with the checkpoint rewritten.
    let with = |name: &str, edit: &dyn Fn(&str, &str) -> String| -> String {
        let (to_sig, to_proof) = match kind {
            Proof::Sidecar => {
                std::fs::copy(server.path(sig), server.path(name)).unwrap();
                (name.to_string(), format!("{name}.tlog.json"))
            }
            Proof::Bundle => (name.to_string(), name.to_string()),
        };
        rewrite(server, proof, &to_proof, kind, edit);
        to_sig
    };
    // `kagi verify`, and the relying party's `kagi-verify` binary on the same arguments, which
    // must give the same verdict and report.
    let verifier = crate::log::kagi_verify_binary();
    let verify = |sig: &str, witnesses: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["-s", sig]);
        args.extend(witnesses);
        let ours = server.kagi(&args);
        let theirs = std::process::Command::new(&verifier)
            .args(&args)
            .current_dir(server.root())
            .env("KAGI_URL", &server.url)
            .env_remove("KAGI_CA")
            .env_remove("KAGI_TOKEN")
            .output()
            .unwrap();
        assert_eq!(
            theirs.status.success(),
            ours.status.success(),
            "kagi-verify {args:?}: {}",
            stderr(&theirs)
        );
        assert_eq!(theirs.stdout, ours.stdout, "{args:?}");
        assert_eq!(stderr(&theirs), stderr(&ours), "{args:?}");
        ours
    };
    let ok = |sig: &str, witnesses: &[&str]| {
        let out = verify(sig, witnesses);
        assert!(out.status.success(), "{witnesses:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = |sig: &str, witnesses: &[&str], why: &[&str]| {
        let out = verify(sig, witnesses);
        let err = stderr(&out);
        assert!(!out.status.success(), "accepted with {witnesses:?}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
            "{err}"
        );
        for w in why {
            assert!(err.contains(w), "{witnesses:?}: expected '{w}' in: {err}");
        }
    };

    // kagi's proof as it comes (no witness configured on this kagi): no cosignature, so a
    // relying party that requires one refuses it, and one that does not accepts it.
    ok(sig, &[]);
    refused(
        sig,
        &["--witness", &va],
        &[
            "cosigned by 0 of the 1 given witnesses, but 1 are needed",
            "missing: witness.example/a",
        ],
    );

    // Cosigned by a and b.
    let ab = with("ab", &|note, text| {
        format!("{note}{}{}", a.line(text), b.line(text))
    });
    let out = ok(&ab, &["--witness", &va, "--witness", &vb]);
    assert!(
        out.contains("cosigned by witness.example/a, witness.example/b (2 of 2 given, 2 needed)"),
        "{out}"
    );
    assert!(out.contains("Verified OK"), "{out}");
    // Without --witness the lines are ignored (extra signature lines are allowed), and the
    // user is told they were not checked.
    let out = verify(&ab, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("carries 2 signature line(s) by keys other than the log's"),
        "{}",
        stderr(&out)
    );
    // 2 of a, b, c: met with c silent.
    ok(
        &ab,
        &[
            "--witness",
            &va,
            "--witness",
            &vb,
            "--witness",
            &vc,
            "--witness-quorum",
            "2",
        ],
    );
    // A third, unknown witness with quorum 2: a alone is short.
    refused(
        &ab,
        &["--witness", &va, "--witness", &vc, "--witness-quorum", "2"],
        &[
            "cosigned by 1 of the 2 given witnesses, but 2 are needed",
            "cosigned: witness.example/a; missing: witness.example/c",
        ],
    );

    // b's cosignature is over another checkpoint (pasted from a newer, real log).
    let pasted = with("pasted", &|note, text| {
        format!("{note}{}{}", a.line(text), b.line(&other_checkpoint(text)))
    });
    refused(
        &pasted,
        &["--witness", &va, "--witness", &vb],
        &["cosignature by witness 'witness.example/b' does not verify"],
    );
    // A tampered cosignature.
    let bad = with("bad", &|note, text| {
        format!("{note}{}{}", a.line(text), tampered(&b.line(text)))
    });
    refused(
        &bad,
        &["--witness", &va, "--witness", &vb, "--witness-quorum", "1"],
        &["does not verify"],
    );
    // The checkpoint changed under valid cosignatures: the log's own signature fails first.
    let moved = with("moved", &|note, text| {
        let lines = format!("{}{}", a.line(text), b.line(text));
        format!("{}{lines}", note.replacen(text, &other_checkpoint(text), 1))
    });
    refused(
        &moved,
        &["--witness", &va, "--witness", &vb],
        &["does not verify"],
    );

    // Bad flags: a log key given as a witness key, a quorum above the witnesses given.
    refused(
        &ab,
        &["--witness", "kagi-tlog+01234567+AQ=="],
        &["not a cosignature/v1 verifier key"],
    );
    refused(
        &ab,
        &["--witness", &va, "--witness-quorum", "2"],
        &["quorum of 2 cannot be met with 1"],
    );
}

#[test]
fn raw_cms_and_sigstore_proofs_need_the_witness_quorum() {
    let server = Server::start();
    std::fs::write(server.path("app.bin"), b"firmware 4.0").unwrap();
    server.kagi_ok(&["key", "create", "--name", "rel", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "certify", "rel"]);
    let pem = server.kagi_ok(&["key", "public", "rel"]);
    std::fs::write(server.path("rel.pem"), pem).unwrap();
    server.kagi_ok(&[
        "sign", "--key", "rel", "--format", "raw", "app.bin", "-o", "app.sig",
    ]);
    server.kagi_ok(&[
        "sign", "--key", "rel", "--format", "cms", "app.bin", "-o", "app.p7s",
    ]);
    let out = server.kagi_ok(&[
        "sign", "--key", "rel", "--format", "sigstore", "app.bin", "-o", "app.json",
    ]);
    let after = |flag: &str| {
        out.split_whitespace()
            .skip_while(|w| *w != flag)
            .nth(1)
            .unwrap_or_else(|| panic!("no {flag} in: {out}"))
            .to_string()
    };
    let (identity, issuer) = (after("--cert-identity"), after("--cert-oidc-issuer"));

    witness_checks(
        &server,
        "app.sig",
        "app.sig.tlog.json",
        Proof::Sidecar,
        &[
            "verify",
            "app.bin",
            "--format",
            "raw",
            "--public-key",
            "rel.pem",
            "--require-log",
        ],
    );
    witness_checks(
        &server,
        "app.p7s",
        "app.p7s.tlog.json",
        Proof::Sidecar,
        &["verify", "app.bin", "--format", "cms", "--require-log"],
    );
    witness_checks(
        &server,
        "app.json",
        "app.json",
        Proof::Bundle,
        &[
            "verify",
            "app.bin",
            "--format",
            "sigstore",
            "--cert-identity",
            &identity,
            "--cert-oidc-issuer",
            &issuer,
        ],
    );

    // --witness with no proof beside the signature: refused, not skipped.
    std::fs::copy(server.path("app.sig"), server.path("bare.sig")).unwrap();
    let w = Witness::new("witness.example/a").vkey();
    let out = server.kagi(&[
        "verify",
        "app.bin",
        "-s",
        "bare.sig",
        "--public-key",
        "rel.pem",
        "--witness",
        &w,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--witness needs the proof's checkpoint"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn log_commands_need_the_witness_quorum() {
    let server = Server::start();
    let (a, b) = (
        Witness::new("witness.example/a"),
        Witness::new("witness.example/b"),
    );
    let (va, vb) = (a.vkey(), b.vkey());
    // This kagi has no witnesses: its checkpoint carries the log's signature only.
    let plain = server.kagi_ok(&["log", "verify"]);
    assert!(plain.contains("checkpoint signature OK"), "{plain}");
    for cmd in [
        vec!["log", "verify", "--witness", &va, "--witness", &vb],
        vec!["log", "checkpoint", "-o", "cp.txt", "--witness", &va],
        vec!["log", "entry", "0", "--witness", &va],
    ] {
        let out = server.kagi(&cmd);
        assert!(
            !out.status.success(),
            "{cmd:?} accepted an unwitnessed checkpoint"
        );
        assert!(
            stderr(&out).contains("the service's checkpoint is not witnessed as required"),
            "{cmd:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("missing: witness.example/a"),
            "{}",
            stderr(&out)
        );
    }
    // An unwitnessed checkpoint is not saved for later consistency checks.
    assert!(!server.path("cp.txt").exists());
    // --witness-quorum alone is a usage error.
    let out = server.kagi(&["log", "verify", "--witness-quorum", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // JSON mode says the witnesses were not checked when none is given.
    let out = server.kagi_ok(&["--output", "json", "log", "verify"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["witnesses"], "not checked (no --witness given)",
        "{out}"
    );
}
