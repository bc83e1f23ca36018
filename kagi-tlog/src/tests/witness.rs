use super::*;
use crate::merkle::leaf_hash;
use crate::note::{cosign, open_cosignature};
use crate::witness::*;
use base64::Engine;

const LOG: &str = "example.com/witnessed-log";

/// A test log: `n` leaves in memory and its key.
struct TestLog {
    key: Ed25519KeyPair,
    leaves: Vec<Hash>,
}

impl TestLog {
    fn new(n: usize) -> TestLog {
        TestLog {
            key: key(),
            leaves: (0..n)
                .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
                .collect(),
        }
    }
    fn nodes(&self, size: u64) -> MemoryNodes {
        MemoryNodes::from_leaf_hashes(self.leaves[..size as usize].to_vec())
    }
    fn root(&self, size: u64) -> Hash {
        root_at(&mut self.nodes(size), size).unwrap()
    }
    fn note(&self, size: u64) -> String {
        sign_note(
            &checkpoint_body(LOG, size, &self.root(size)),
            LOG,
            &self.key,
        )
        .unwrap()
    }
    fn request(&self, old: u64, size: u64) -> AddCheckpoint {
        AddCheckpoint {
            old_size: old,
            proof: consistency_proof(&mut self.nodes(size), old, size).unwrap(),
            checkpoint: self.note(size),
        }
    }
    fn pk(&self) -> [u8; 32] {
        public(&self.key)
    }
}

fn malformed(body: &str) -> String {
    match AddCheckpoint::parse(body) {
        Err(Error::Malformed(m)) => m,
        other => panic!("{body:?} should be malformed, got {other:?}"),
    }
}

#[test]
fn add_checkpoint_body_matches_the_spec_example_and_round_trips() {
    // The request body of the C2SP tlog-witness spec's example, verbatim.
    let body = "old 20852014\n\
        PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
        jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
        5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
        /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
        \n\
        example.com/behind-the-sofa\n\
        20852163\n\
        CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
        \n\
        \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
        \u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";
    let req = AddCheckpoint::parse(body).unwrap();
    assert_eq!(req.old_size, 20852014);
    assert_eq!(req.proof.len(), 4);
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(req.proof[0]),
        "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw="
    );
    assert!(req
        .checkpoint
        .starts_with("example.com/behind-the-sofa\n20852163\n"));
    assert!(req.checkpoint.ends_with("qbSzm9Q=\n"));
    assert_eq!(req.to_body(), body);
    assert_eq!(
        checkpoint_origin(&req.checkpoint).unwrap(),
        "example.com/behind-the-sofa"
    );

    // Old size 0 and no proof: "old 0", then the empty line at once.
    let log = TestLog::new(5);
    let req = log.request(0, 5);
    assert!(req.proof.is_empty());
    let body = req.to_body();
    assert!(body.starts_with(&format!("old 0\n\n{LOG}\n5\n")));
    assert_eq!(AddCheckpoint::parse(&body).unwrap(), req);
    let req = log.request(3, 5);
    assert_eq!(AddCheckpoint::parse(&req.to_body()).unwrap(), req);
}

#[test]
fn malformed_add_checkpoint_bodies_are_refused_with_the_reason() {
    let log = TestLog::new(300);
    let note = log.note(5);
    let h = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);

    assert!(malformed("").contains("no old size line"));
    assert!(malformed("old 5").contains("no old size line"));
    assert!(malformed(&format!("new 5\n\n{note}")).contains("is not 'old <size>'"));
    assert!(malformed(&format!("old  5\n\n{note}")).contains("leading zeros"));
    assert!(malformed(&format!("old 05\n\n{note}")).contains("leading zeros"));
    assert!(malformed(&format!("old -1\n\n{note}")).contains("leading zeros"));
    assert!(malformed(&format!("old 5x\n\n{note}")).contains("leading zeros"));
    assert!(malformed(&format!("old 18446744073709551616\n\n{note}")).contains("leading zeros"));
    assert!(malformed(&format!("OLD 5\n\n{note}")).contains("is not 'old <size>'"));
    // Non-base64, wrong length, URL-safe alphabet, trailing space, CRLF.
    assert!(malformed(&format!("old 3\nnot base64!\n\n{note}")).contains("proof line 1"));
    assert!(malformed(&format!("old 3\n{h}\nAAAA\n\n{note}")).contains("proof line 2"));
    let url_safe = base64::engine::general_purpose::URL_SAFE.encode([0xfbu8; 32]);
    assert!(malformed(&format!("old 3\n{url_safe}\n\n{note}")).contains("proof line 1"));
    assert!(malformed(&format!("old 3\n{h} \n\n{note}")).contains("proof line 1"));
    assert!(malformed(&format!("old 3\r\n{h}\n\n{note}")).contains("leading zeros"));
    // No empty line, empty checkpoint.
    assert!(malformed(&format!("old 3\n{h}\n")).contains("no empty line"));
    assert!(malformed(&format!("old 3\n{h}")).contains("no empty line"));
    assert!(malformed(&format!("old 3\n{h}\n\n"))
        .contains("checkpoint after the empty line is missing"));
    // A proof from size 0.
    assert!(malformed(&format!("old 0\n{h}\n\n{note}")).contains("must be empty"));

    // 63 proof lines are allowed, 64 are not.
    let lines = |n: usize| format!("{h}\n").repeat(n);
    let ok = AddCheckpoint::parse(&format!("old 3\n{}\n{note}", lines(63))).unwrap();
    assert_eq!(ok.proof.len(), 63);
    assert!(malformed(&format!("old 3\n{}\n{note}", lines(64))).contains("more than 63"));
    assert!(malformed(&format!("old 3\n{}\n{note}", lines(10_000))).contains("more than 63"));
    // An AddCheckpoint built with too many proof hashes lays out a body the parser refuses.
    let too_long = AddCheckpoint {
        old_size: 3,
        proof: vec![[1u8; 32]; 64],
        checkpoint: note.clone(),
    };
    assert!(malformed(&too_long.to_body()).contains("more than 63"));

    // A checkpoint with no blank line has no origin to look up.
    assert!(checkpoint_origin("example.com/log\n5\n").is_err());
    assert!(checkpoint_origin("\n5\nAAAA\n\n\u{2014} x AAAAAAA=\n").is_err());
}

#[test]
fn witness_answers_are_read_from_status_and_body() {
    let line = "\u{2014} witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n";
    let two = format!("{line}{line}");
    assert_eq!(
        WitnessAnswer::from_response(200, line),
        WitnessAnswer::Cosigned(line.to_string())
    );
    assert_eq!(
        WitnessAnswer::from_response(200, &two),
        WitnessAnswer::Cosigned(two.clone())
    );
    for bad in ["", "ok\n", "\u{2014} \n", line.trim_end(), "\n"] {
        let WitnessAnswer::Refused {
            status: 200,
            message,
        } = WitnessAnswer::from_response(200, bad)
        else {
            panic!("{bad:?} is not a cosignature body");
        };
        assert!(message.contains("not cosignature lines"), "{message}");
    }
    assert_eq!(
        WitnessAnswer::from_response(409, "20852163\n"),
        WitnessAnswer::Conflict(20852163)
    );
    assert_eq!(
        WitnessAnswer::from_response(409, "0\n"),
        WitnessAnswer::Conflict(0)
    );
    for bad in ["", "12", "012\n", "twelve\n", "-1\n"] {
        assert!(
            matches!(
                WitnessAnswer::from_response(409, bad),
                WitnessAnswer::Refused { status: 409, .. }
            ),
            "{bad:?}"
        );
    }
    for status in [400, 403, 404, 422, 500, 503] {
        assert_eq!(
            WitnessAnswer::from_response(status, "why\n"),
            WitnessAnswer::Refused {
                status,
                message: "why\n".into()
            }
        );
    }
    // A huge body is cut (on a character boundary) in the message.
    let WitnessAnswer::Refused { message, .. } =
        WitnessAnswer::from_response(500, &"\u{2014}".repeat(2000))
    else {
        panic!()
    };
    assert!(message.len() <= 1000 && message.len() >= 997);

    // What a witness sends reads back as itself.
    for a in [
        WitnessAnswer::Cosigned(two),
        WitnessAnswer::Conflict(42),
        WitnessAnswer::Refused {
            status: 422,
            message: "bad proof\n".into(),
        },
    ] {
        assert_eq!(WitnessAnswer::from_response(a.status(), &a.body()), a);
    }
    assert_eq!(
        WitnessAnswer::Conflict(1).content_type(),
        CONFLICT_CONTENT_TYPE
    );
    assert_eq!(CONFLICT_CONTENT_TYPE, "text/x.tlog.size");
}

fn status_of(r: Result<Accepted, WitnessAnswer>) -> WitnessAnswer {
    match r {
        Ok(a) => panic!("accepted {a:?}, expected a refusal"),
        Err(a) => a,
    }
}

#[test]
fn the_witness_check_follows_the_spec_status_codes() {
    let log = TestLog::new(300);
    let pk = log.pk();
    let check = |req: &AddCheckpoint, latest| check_add_checkpoint(req, LOG, &pk, latest);

    // First contact: old 0, no proof, any size.
    let a = check(&log.request(0, 7), None).unwrap();
    assert_eq!((a.origin.as_str(), a.size, a.root), (LOG, 7, log.root(7)));
    assert_eq!(a.text, checkpoint_body(LOG, 7, &log.root(7)));
    let latest = Some((7, log.root(7)));

    // Growth with a valid proof, across sizes that are and are not powers of two.
    for (from, to) in [(7, 8), (7, 300), (7, 256), (8, 9), (256, 257), (1, 300)] {
        let at = Some((from, log.root(from)));
        let a = check(&log.request(from, to), at).unwrap();
        assert_eq!((a.size, a.root), (to, log.root(to)));
    }
    // The same checkpoint again: cosigned again.
    assert_eq!(check(&log.request(7, 7), latest).unwrap().size, 7);

    // Old size not the witness's: 409 with its size, whichever side.
    assert_eq!(
        status_of(check(&log.request(5, 9), latest)),
        WitnessAnswer::Conflict(7)
    );
    assert_eq!(
        status_of(check(&log.request(8, 9), latest)),
        WitnessAnswer::Conflict(7)
    );
    assert_eq!(
        status_of(check(&log.request(0, 9), latest)),
        WitnessAnswer::Conflict(7)
    );
    assert_eq!(
        status_of(check(&log.request(5, 9), None)),
        WitnessAnswer::Conflict(0)
    );
    // A smaller checkpoint than the witness's (a rolled-back log): its old size can only be
    // at most its own size, below the witness's, so 409.
    assert_eq!(
        status_of(check(&log.request(0, 5), latest)),
        WitnessAnswer::Conflict(7)
    );

    // A fork: the witness's size, another root, signed by the log's key. 409.
    let forked: Vec<Hash> = (0..300)
        .map(|i| leaf_hash(format!("forked {i}").as_bytes()))
        .collect();
    let fork_request = |old: u64, size: u64| {
        let mut nodes = MemoryNodes::from_leaf_hashes(forked[..size as usize].to_vec());
        let root = root_at(&mut nodes, size).unwrap();
        AddCheckpoint {
            old_size: old,
            proof: consistency_proof(&mut nodes, old, size).unwrap(),
            checkpoint: sign_note(&checkpoint_body(LOG, size, &root), LOG, &log.key).unwrap(),
        }
    };
    assert_eq!(
        status_of(check(&fork_request(7, 7), latest)),
        WitnessAnswer::Conflict(7)
    );
    // A fork that grew: its proof from its own 7 does not link to the witness's 7: 422.
    let WitnessAnswer::Refused {
        status: 422,
        message,
    } = status_of(check(&fork_request(7, 9), latest))
    else {
        panic!()
    };
    assert!(message.contains("does not verify"), "{message}");

    // A wrong proof: 422. An extra proof hash on an equal size: 422.
    let mut req = log.request(7, 9);
    req.proof[0] = flip(&req.proof[0], 3);
    assert!(matches!(
        status_of(check(&req, latest)),
        WitnessAnswer::Refused { status: 422, .. }
    ));
    let mut req = log.request(7, 9);
    req.proof.pop();
    assert!(matches!(
        status_of(check(&req, latest)),
        WitnessAnswer::Refused { status: 422, .. }
    ));
    let mut req = log.request(7, 7);
    req.proof.push([0u8; 32]);
    assert!(matches!(
        status_of(check(&req, latest)),
        WitnessAnswer::Refused { status: 422, .. }
    ));

    // Old size above the checkpoint's size: 400 (before the 409 check).
    let req = AddCheckpoint {
        old_size: 9,
        proof: vec![],
        checkpoint: log.note(7),
    };
    assert!(matches!(
        status_of(check(&req, Some((9, log.root(9))))),
        WitnessAnswer::Refused { status: 400, .. }
    ));

    // Another key under the same name: 403. No signature by the log at all: 403.
    let stranger = TestLog {
        key: key(),
        leaves: log.leaves.clone(),
    };
    let WitnessAnswer::Refused {
        status: 403,
        message,
    } = status_of(check(&stranger.request(7, 9), latest))
    else {
        panic!()
    };
    assert!(message.contains("not signed by the log key"), "{message}");
    let mut req = log.request(7, 9);
    req.checkpoint = sign_note(
        &checkpoint_body(LOG, 9, &log.root(9)),
        "someone-else",
        &log.key,
    )
    .unwrap();
    assert!(matches!(
        status_of(check(&req, latest)),
        WitnessAnswer::Refused { status: 403, .. }
    ));
    // A changed checkpoint under the log's signature: 403.
    let mut req = log.request(7, 9);
    req.checkpoint = req.checkpoint.replacen("\n9\n", "\n10\n", 1);
    assert!(matches!(
        status_of(check(&req, latest)),
        WitnessAnswer::Refused { status: 403, .. }
    ));
    // Not a checkpoint, though signed: 400.
    let mut req = log.request(7, 9);
    req.checkpoint = sign_note(&format!("{LOG}\nnine\n"), LOG, &log.key).unwrap();
    assert!(matches!(
        status_of(check(&req, latest)),
        WitnessAnswer::Refused { status: 400, .. }
    ));
    // Signed by the key, but the origin line is another log's: 404.
    let mut req = log.request(7, 9);
    req.checkpoint = sign_note(
        &checkpoint_body("other.example/log", 9, &log.root(9)),
        LOG,
        &log.key,
    )
    .unwrap();
    assert!(matches!(
        status_of(check(&req, latest)),
        WitnessAnswer::Refused { status: 404, .. }
    ));

    // A size-0 checkpoint must have the empty tree's root.
    let empty = sign_note(&checkpoint_body(LOG, 0, &empty_root()), LOG, &log.key).unwrap();
    let req = AddCheckpoint {
        old_size: 0,
        proof: vec![],
        checkpoint: empty,
    };
    assert_eq!(check(&req, None).unwrap().size, 0);
    let bogus = sign_note(&checkpoint_body(LOG, 0, &[9u8; 32]), LOG, &log.key).unwrap();
    let req = AddCheckpoint {
        old_size: 0,
        proof: vec![],
        checkpoint: bogus,
    };
    assert_eq!(status_of(check(&req, None)), WitnessAnswer::Conflict(0));
}

#[test]
fn an_accepted_checkpoint_cosigns_to_a_line_clients_verify() {
    let log = TestLog::new(20);
    let witness = key();
    let req = log.request(0, 20);
    let a = check_add_checkpoint(&req, LOG, &log.pk(), None).unwrap();
    let line = cosign(&a.text, "witness.example/w1", 1_700_000_000, &witness).unwrap();
    let answer = WitnessAnswer::from_response(200, &line);
    let WitnessAnswer::Cosigned(lines) = answer else {
        panic!()
    };
    // The client appends the lines to its note and verifies them with the witness's key.
    let cosigned = format!("{}{lines}", req.checkpoint);
    assert_eq!(
        open_cosignature(&cosigned, "witness.example/w1", &public(&witness)).unwrap(),
        1_700_000_000
    );
    assert_eq!(open_note(&cosigned, LOG, &log.pk()).unwrap(), a.text);
}
