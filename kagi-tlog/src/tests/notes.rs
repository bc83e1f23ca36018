use super::*;
use base64::Engine;

// ---- signed notes ------------------------------------------------------------------------------

/// Published vectors: golang.org/x/mod/sumdb/note's PeterNeumann key and note (signing is
/// deterministic, so our note must be byte-identical), the C2SP signed-note spec's example, and
/// a real checkpoint of sum.golang.org (a C2SP checkpoint whose origin is
/// "go.sum database tree") under its published verifier key.
#[test]
fn signed_notes_match_published_vectors() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let text = "If you think cryptography is the answer to your problem,\n\
                then you don't know what your problem is.\n";
    let signed = format!(
        "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    );
    let seed = b64.decode(skey.splitn(5, '+').nth(4).unwrap()).unwrap();
    assert_eq!(seed[0], 0x01);
    let peter = Ed25519KeyPair::from_seed_unchecked(&seed[1..]).unwrap();
    let peter_pk = public(&peter);
    assert_eq!(verifier_key("PeterNeumann", &peter_pk), vkey);
    assert_eq!(
        parse_verifier_key(vkey).unwrap(),
        ("PeterNeumann".to_string(), peter_pk)
    );
    assert_eq!(sign_note(text, "PeterNeumann", &peter).unwrap(), signed);
    assert_eq!(open_note(&signed, "PeterNeumann", &peter_pk).unwrap(), text);

    let (name, pk) =
        parse_verifier_key("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
            .unwrap();
    let example = "This is an example message.\n\n\u{2014} example.com/foo \
                   Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    assert_eq!(
        open_note(example, &name, &pk).unwrap(),
        "This is an example message.\n"
    );

    let (name, pk) =
        parse_verifier_key("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8")
            .unwrap();
    let sumdb = "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n\
                 \u{2014} sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n";
    let (origin, size, root) = open_checkpoint(sumdb, &name, &pk).unwrap();
    assert_eq!(
        (origin.as_str(), size),
        ("go.sum database tree", 65_209_736)
    );
    assert_eq!(
        b64.encode(root),
        "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo="
    );
    let changed = sumdb.replace("65209736", "65209737");
    let e = open_checkpoint(&changed, &name, &pk)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not verify"), "{e}");
}

#[test]
fn signed_checkpoints_round_trip_and_fail_when_they_should() {
    let k = key();
    let pk = public(&k);
    let name = "kagi.example/log";
    let root = entry_hash(b"root");
    let body = checkpoint_body(name, 42, &root);
    assert_eq!(
        body,
        format!(
            "kagi.example/log\n42\n{}\n",
            base64::engine::general_purpose::STANDARD.encode(root)
        )
    );
    let note = sign_note(&body, name, &k).unwrap();
    assert!(note.starts_with(&format!("{body}\n\u{2014} {name} ")));
    assert!(note.ends_with('\n'));
    assert_eq!(
        open_checkpoint(&note, name, &pk).unwrap(),
        (name.to_string(), 42, root)
    );
    let vkey = verifier_key(name, &pk);
    assert_eq!(parse_verifier_key(&vkey).unwrap(), (name.to_string(), pk));
    // The key hash in the note is the verifier key's.
    let sig_b64 = note.rsplit(' ').next().unwrap().trim_end();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(sig_b64)
        .unwrap();
    assert_eq!(blob.len(), 68);
    assert_eq!(hex::encode(&blob[..4]), vkey.split('+').nth(1).unwrap());

    let fails = |n: &str, key_name: &str, key: &[u8], want: &str| {
        let e = open_checkpoint(n, key_name, key).unwrap_err();
        assert!(
            matches!(e, Error::Malformed(_) | Error::BadSignature(_)),
            "{e}"
        );
        assert!(e.to_string().contains(want), "'{e}' does not say '{want}'");
    };
    // A changed body: size, root, origin.
    fails(
        &note.replace("\n42\n", "\n43\n"),
        name,
        &pk,
        "does not verify",
    );
    let other_root = base64::engine::general_purpose::STANDARD.encode(entry_hash(b"other"));
    let moved = note.replace(
        &base64::engine::general_purpose::STANDARD.encode(root),
        &other_root,
    );
    fails(&moved, name, &pk, "does not verify");
    fails(
        &note.replacen("kagi.example/log\n", "kagi.example/log2\n", 1),
        name,
        &pk,
        "does not verify",
    );
    // A wrong key under the same name; the right key under another name.
    fails(&note, name, &public(&key()), "another key");
    fails(
        &note,
        "kagi.example/other",
        &pk,
        "no signature by 'kagi.example/other'",
    );
    // A signature by another key with our name and key hash (forged line): does not verify.
    let forged = sign_note(&body, name, &key()).unwrap();
    let forged_sig = base64::engine::general_purpose::STANDARD
        .decode(forged.rsplit(' ').next().unwrap().trim_end())
        .unwrap();
    let mut spliced = blob[..4].to_vec();
    spliced.extend_from_slice(&forged_sig[4..]);
    let spliced = format!(
        "{body}\n\u{2014} {name} {}\n",
        base64::engine::general_purpose::STANDARD.encode(spliced)
    );
    fails(&spliced, name, &pk, "does not verify");
    // Extra signatures by unknown keys are ignored, in any order.
    let cosigned = format!(
        "{note}{}",
        sign_note(&body, "witness.example", &key())
            .unwrap()
            .rsplit_once("\n\n")
            .unwrap()
            .1
    );
    assert_eq!(open_checkpoint(&cosigned, name, &pk).unwrap().1, 42);
    // Malformed notes and keys.
    fails(&body, name, &pk, "no blank line");
    fails(
        &note.replace('\u{2014}', "-"),
        name,
        &pk,
        "malformed signature line",
    );
    fails(note.trim_end(), name, &pk, "does not end with a newline");
    fails(&note, name, &pk[..31], "32 bytes");
    let not_a_checkpoint = sign_note("hello\n", name, &k).unwrap();
    fails(&not_a_checkpoint, name, &pk, "the size line is missing");
    let leading_zero = sign_note(&format!("{name}\n042\n{other_root}\n"), name, &k).unwrap();
    fails(&leading_zero, name, &pk, "not a plain decimal");
    let with_ext = sign_note(&format!("{body}extension line\n"), name, &k).unwrap();
    assert_eq!(open_checkpoint(&with_ext, name, &pk).unwrap().1, 42);
    assert!(sign_note("no newline", name, &k).is_err());
    assert!(sign_note("", name, &k).is_err());
    assert!(sign_note("a\u{7}b\n", name, &k).is_err());
    assert!(sign_note(&body, "has space", &k).is_err());
    assert!(sign_note(&body, "a+b", &k).is_err());
    let mut bad_vkey = vkey.clone().into_bytes();
    let at = name.len() + 1;
    bad_vkey[at] = if bad_vkey[at] == b'0' { b'1' } else { b'0' };
    assert!(parse_verifier_key(std::str::from_utf8(&bad_vkey).unwrap()).is_err());
    assert!(parse_verifier_key("nohash").is_err());
}

#[test]
fn witness_cosignatures_round_trip_and_fail_when_they_should() {
    let log = key();
    let witness = key();
    let wpk = public(&witness);
    let origin = "kagi.example/log";
    let body = checkpoint_body(origin, 7, &entry_hash(b"root"));
    let note = sign_note(&body, origin, &log).unwrap();
    let line = cosign(&body, "witness.example/w1", 1_700_000_000, &witness).unwrap();
    assert!(line.starts_with("\u{2014} witness.example/w1 "), "{line}");
    let cosigned = format!("{note}{line}");
    // The log's signature still opens, the witness's line is ignored by it, and vice versa.
    assert_eq!(
        open_checkpoint(&cosigned, origin, &public(&log)).unwrap().1,
        7
    );
    assert_eq!(
        open_cosignature(&cosigned, "witness.example/w1", &wpk).unwrap(),
        1_700_000_000
    );
    let blob = base64::engine::general_purpose::STANDARD
        .decode(line.trim_end().rsplit(' ').next().unwrap())
        .unwrap();
    assert_eq!(blob.len(), 4 + 8 + 64);
    assert_eq!(&blob[4..12], &1_700_000_000u64.to_be_bytes());
    // The key hash is the cosignature/v1 one (type 0x04), as its verifier key says.
    let vkey = note::cosignature_verifier_key("witness.example/w1", &wpk);
    assert_eq!(hex::encode(&blob[..4]), vkey.split('+').nth(1).unwrap());
    assert_eq!(
        note::parse_cosignature_verifier_key(&vkey).unwrap(),
        ("witness.example/w1".to_string(), wpk)
    );
    assert!(
        parse_verifier_key(&vkey).is_err(),
        "not an Ed25519 note key"
    );

    // A changed checkpoint, a changed time, another witness key, another name: refused.
    let e = open_cosignature(
        &cosigned.replace("\n7\n", "\n8\n"),
        "witness.example/w1",
        &wpk,
    )
    .unwrap_err();
    assert!(matches!(e, Error::BadSignature(_)), "{e}");
    let mut later = blob.clone();
    later[11] ^= 1;
    let retimed = format!(
        "{note}\u{2014} witness.example/w1 {}\n",
        base64::engine::general_purpose::STANDARD.encode(later)
    );
    let e = open_cosignature(&retimed, "witness.example/w1", &wpk).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    let e = open_cosignature(&cosigned, "witness.example/w1", &public(&key())).unwrap_err();
    assert!(e.to_string().contains("no cosignature"), "{e}");
    assert!(open_cosignature(&cosigned, "witness.example/w2", &wpk).is_err());
    assert!(open_cosignature(&note, "witness.example/w1", &wpk).is_err());
    // Only checkpoints are cosigned.
    assert!(cosign("hello\n", "witness.example/w1", 1, &witness).is_err());
}
