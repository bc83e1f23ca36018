//! The log as C2SP tlog-tiles on a real server: with `--log-entries-public` anyone reads the
//! entry bundles, on both listeners, and their entries hash to the level-0 tile, whose hashes
//! give the checkpoint's root. (The private rule, auditors and identities, and a client
//! written from the spec over more than one full tile: `signer/tests/tiles_acceptance.sh`.)

use base64::Engine;
use kagi_tlog::merkle::leaf_hash;
use kagi_tlog::{root_at, Hash, MemoryNodes};

use super::common::*;

/// (status, Cache-Control, body bytes) of a GET without credentials.
fn get(http: &Http, path: &str) -> (u16, String, Vec<u8>) {
    let mut r = http.get(path).call().unwrap();
    let cache = r
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        r.status().as_u16(),
        cache,
        r.body_mut().read_to_vec().unwrap(),
    )
}

#[test]
fn public_entry_bundles_hash_to_the_tiles_and_the_checkpoint() {
    let server = Server::start_in(tempfile::tempdir().unwrap(), &["--log-entries-public"]);
    server.kagi_ok(&["key", "create", "--name", "rel", "--alg", "ec-p256"]);
    for i in 0..5 {
        let digest = format!("{:064x}", 1000 + i);
        let body = format!(r#"{{"key":"rel","digest":"{digest}"}}"#);
        let r = server.http().request(
            "POST",
            "/api/v1/sign",
            Some(&server.token()),
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let public = Http::new(&server.public_url, &server.data().join("tls-ca.pem"));
    for http in [&server.http(), &public] {
        let (status, _, note) = get(http, "/log/checkpoint");
        assert_eq!(status, 200);
        let note = String::from_utf8(note).unwrap();
        let mut lines = note.lines();
        lines.next();
        let size: u64 = lines.next().unwrap().parse().unwrap();
        let root = base64::engine::general_purpose::STANDARD
            .decode(lines.next().unwrap())
            .unwrap();
        assert!((5..256).contains(&size), "{size}");

        let (status, cache, tile) = get(http, &format!("/log/tile/0/000.p/{size}"));
        assert_eq!((status, cache.as_str()), (200, "no-cache"));
        assert_eq!(tile.len() as u64, 32 * size);
        let leaves: Vec<Hash> = tile.chunks(32).map(|h| h.try_into().unwrap()).collect();
        let mut nodes = MemoryNodes::from_leaf_hashes(leaves.clone());
        assert_eq!(root_at(&mut nodes, size).unwrap().to_vec(), root);

        let (status, cache, bundle) = get(http, &format!("/log/tile/entries/000.p/{size}"));
        assert_eq!((status, cache.as_str()), (200, "no-cache"));
        let mut at = 0;
        let mut n = 0;
        while at < bundle.len() {
            let len = u16::from_be_bytes([bundle[at], bundle[at + 1]]) as usize;
            let entry = &bundle[at + 2..at + 2 + len];
            assert_eq!(leaf_hash(entry), leaves[n], "entry {n}");
            at += 2 + len;
            n += 1;
        }
        assert_eq!(n as u64, size);
        assert!(String::from_utf8_lossy(&bundle).contains(r#""identity":"default:admin""#));

        // Not beyond the checkpoint; not a full tile the log does not have yet.
        for path in [
            format!("/log/tile/0/000.p/{}", size + 1),
            "/log/tile/0/000".to_string(),
            "/log/tile/1/000.p/1".to_string(),
            format!("/log/tile/entries/000.p/{}", size + 1),
        ] {
            let (status, _, body) = get(http, &path);
            assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
        }
    }
}
