//! A relying party's witness quorum (`note::check_cosignature_quorum`), tried the way a
//! rolled-back or forked log would try to get past it.

use super::*;
use base64::Engine;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Witness {
    name: &'static str,
    key: Ed25519KeyPair,
}

impl Witness {
    fn new(name: &'static str) -> Witness {
        Witness { name, key: key() }
    }

    fn vkey(&self) -> String {
        note::cosignature_verifier_key(self.name, &public(&self.key))
    }

    /// This witness's cosignature line over checkpoint `text` at `time`.
    fn cosign(&self, text: &str, time: u64) -> String {
        cosign(text, self.name, time, &self.key).unwrap()
    }
}

/// A checkpoint of `size` entries signed by `log`: (its text, the signed note).
fn checkpoint(log: &Ed25519KeyPair, size: u64) -> (String, String) {
    let text = checkpoint_body(ORIGIN, size, &entry_hash(&size.to_be_bytes()));
    let note = sign_note(&text, ORIGIN, log).unwrap();
    (text, note)
}

fn names(c: &[note::Cosigned]) -> Vec<&str> {
    c.iter().map(|c| c.name.as_str()).collect()
}

fn quorum_err(note: &str, vkeys: &[String], k: usize) -> String {
    note::check_cosignature_quorum(note, vkeys, k)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_quorum_of_given_witnesses_is_met_and_reported() {
    let log = key();
    let (a, b, c) = (
        Witness::new("witness.example/a"),
        Witness::new("witness.example/b"),
        Witness::new("witness.example/c"),
    );
    let (text, note) = checkpoint(&log, 10);
    let cosigned = format!("{note}{}{}", a.cosign(&text, 100), b.cosign(&text, 101));
    // The log's own signature still opens the note with the witnesses' lines on it.
    assert_eq!(
        open_checkpoint(&cosigned, ORIGIN, &public(&log)).unwrap().1,
        10
    );

    let both = [a.vkey(), b.vkey()];
    let got = note::check_cosignature_quorum(&cosigned, &both, 2).unwrap();
    assert_eq!(names(&got), ["witness.example/a", "witness.example/b"]);
    assert_eq!(got[1].timestamp, 101);
    // Quorum 1 of the two: both still reported.
    assert_eq!(
        note::check_cosignature_quorum(&cosigned, &both, 1)
            .unwrap()
            .len(),
        2
    );
    // 2 of 3 with the third silent: met; its absence is not an error.
    let three = [a.vkey(), b.vkey(), c.vkey()];
    let got = note::check_cosignature_quorum(&cosigned, &three, 2).unwrap();
    assert_eq!(names(&got), ["witness.example/a", "witness.example/b"]);
    // Lines by witnesses nobody asked about are ignored, in any position.
    let stranger = Witness::new("witness.example/stranger");
    let crowded = format!(
        "{note}{}{}{}",
        stranger.cosign(&text, 5),
        a.cosign(&text, 6),
        b.cosign(&text, 7)
    );
    assert_eq!(
        names(&note::check_cosignature_quorum(&crowded, &both, 2).unwrap()),
        ["witness.example/a", "witness.example/b"]
    );
}

#[test]
fn a_missing_quorum_names_who_signed_and_who_did_not() {
    let log = key();
    let (a, b, c) = (
        Witness::new("witness.example/a"),
        Witness::new("witness.example/b"),
        Witness::new("witness.example/c"),
    );
    let (text, note) = checkpoint(&log, 10);
    let cosigned = format!("{note}{}{}", a.cosign(&text, 100), b.cosign(&text, 101));

    // A third witness the checkpoint does not carry, with quorum 2: a alone is short.
    let e = quorum_err(&cosigned, &[a.vkey(), c.vkey()], 2);
    assert!(
        e.contains("cosigned by 1 of the 2 given witnesses, but 2 are needed"),
        "{e}"
    );
    assert!(
        e.contains("cosigned: witness.example/a; missing: witness.example/c"),
        "{e}"
    );
    let e = quorum_err(&cosigned, &[c.vkey()], 1);
    assert!(
        e.contains("cosigned: none; missing: witness.example/c"),
        "{e}"
    );
    // All three with quorum 3.
    let e = quorum_err(&cosigned, &[a.vkey(), b.vkey(), c.vkey()], 3);
    assert!(
        e.contains("2 of the 3 given witnesses, but 3 are needed"),
        "{e}"
    );
    // A checkpoint with no cosignature at all.
    let e = quorum_err(&note, &[a.vkey()], 1);
    assert!(e.contains("missing: witness.example/a"), "{e}");
    // The same witness's line twice counts once.
    let twice = format!("{note}{}{}", a.cosign(&text, 100), a.cosign(&text, 102));
    let e = quorum_err(&twice, &[a.vkey(), b.vkey()], 2);
    assert!(e.contains("cosigned by 1 of the 2"), "{e}");
}

#[test]
fn cosignatures_over_another_checkpoint_or_tampered_are_refused() {
    let log = key();
    let (a, b) = (
        Witness::new("witness.example/a"),
        Witness::new("witness.example/b"),
    );
    let both = [a.vkey(), b.vkey()];
    let (text, note) = checkpoint(&log, 10);
    let (other_text, _) = checkpoint(&log, 11);

    // b's cosignature was made over another checkpoint (what a witness said about the real
    // log, pasted onto a rolled-back one's checkpoint).
    let pasted = format!(
        "{note}{}{}",
        a.cosign(&text, 100),
        b.cosign(&other_text, 101)
    );
    let e = quorum_err(&pasted, &both, 2);
    assert!(
        e.contains("cosignature by witness 'witness.example/b' does not verify"),
        "{e}"
    );
    // Even with quorum 1 (a alone would do): a bad line by a known witness refuses the note.
    let e = quorum_err(&pasted, &both, 1);
    assert!(e.contains("does not verify"), "{e}");

    // A flipped bit of the signature, of the time, and a truncated blob.
    let line = b.cosign(&text, 101);
    let (head, b64) = line.trim_end().rsplit_once(' ').unwrap();
    let blob = B64.decode(b64).unwrap();
    for (what, at) in [("signature", 40), ("time", 11)] {
        let mut bad = blob.clone();
        bad[at] ^= 1;
        let tampered = format!("{note}{}{head} {}\n", a.cosign(&text, 100), B64.encode(bad));
        let e = quorum_err(&tampered, &both, 2);
        assert!(e.contains("does not verify"), "{what}: {e}");
    }
    let short = format!("{note}{head} {}\n", B64.encode(&blob[..70]));
    let e = quorum_err(&short, &both, 1);
    assert!(e.contains("not the 4 + 8 + 64"), "{e}");
    // The checkpoint's text changed under valid cosignatures.
    let cosigned = format!("{note}{}{}", a.cosign(&text, 100), b.cosign(&text, 101));
    let e = quorum_err(&cosigned.replacen("\n10\n", "\n9\n", 1), &both, 1);
    assert!(e.contains("does not verify"), "{e}");

    // a's cosignature relabelled as b's (b's name and key hash): checked with b's key, it
    // does not verify, so one witness cannot count as two.
    let mut forged = B64
        .decode(a.cosign(&text, 100).trim_end().rsplit_once(' ').unwrap().1)
        .unwrap();
    let b_hash = hex::decode(b.vkey().split('+').nth(1).unwrap()).unwrap();
    forged[..4].copy_from_slice(&b_hash);
    let relabelled = format!(
        "{note}{}\u{2014} witness.example/b {}\n",
        a.cosign(&text, 100),
        B64.encode(forged)
    );
    let e = quorum_err(&relabelled, &both, 2);
    assert!(e.contains("does not verify"), "{e}");
}

#[test]
fn bad_witness_lists_and_quorums_are_refused() {
    let log = key();
    let a = Witness::new("witness.example/a");
    let (text, note) = checkpoint(&log, 10);
    let cosigned = format!("{note}{}", a.cosign(&text, 100));
    let e = quorum_err(&cosigned, &[a.vkey()], 0);
    assert!(e.contains("between 1 and the number of witnesses"), "{e}");
    let e = quorum_err(&cosigned, &[a.vkey()], 2);
    assert!(e.contains("quorum of 2 cannot be met with 1"), "{e}");
    // One key twice, or under two names: one witness.
    let e = quorum_err(&cosigned, &[a.vkey(), a.vkey()], 2);
    assert!(e.contains("same public key"), "{e}");
    let alias = note::cosignature_verifier_key("witness.example/alias", &public(&a.key));
    let e = quorum_err(&cosigned, &[a.vkey(), alias], 2);
    assert!(e.contains("same public key"), "{e}");
    // The log's note key is not a cosignature key.
    let e = quorum_err(&cosigned, &[verifier_key(ORIGIN, &public(&log))], 1);
    assert!(e.contains("not a cosignature/v1 verifier key"), "{e}");
    // A malformed note.
    assert!(note::check_cosignature_quorum(&text, &[a.vkey()], 1).is_err());
}
