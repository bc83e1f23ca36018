//! The audit feed audit forwarding reads (`Hsm::audit_feed`) and its durable cursor: two
//! processes on one database never both hold a collector's cursor, the cursor only moves
//! forward and only for its holder, and a database writer's edits reach the collector as what
//! they are (a record marked with a bad MAC, a gap), never as kagi's records.

use kagi_testkit::store as common;

use common::*;
use kagi_hsm_core::*;

#[test]
fn one_holder_at_a_time_moves_the_cursor_forward_only() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (other, _) = reopen(&store, &i.share, &i.token);
        let url = "tls://logs.example:6514";
        // The first claim starts at the beginning of the log.
        assert_eq!(i.hsm.feed_cursor_claim(url, "a", 60_000).unwrap(), Some(0));
        // Another process sharing the database waits while the lease runs.
        assert_eq!(other.feed_cursor_claim(url, "b", 60_000).unwrap(), None);
        assert!(!other.feed_cursor_advance(url, "b", 5).unwrap());
        assert!(i.hsm.feed_cursor_advance(url, "a", 5).unwrap());
        // Never backward.
        assert!(!i.hsm.feed_cursor_advance(url, "a", 3).unwrap());
        assert_eq!(i.hsm.feed_cursor(url).unwrap(), Some(5));
        // Renewing keeps it; another collector has its own cursor.
        assert_eq!(i.hsm.feed_cursor_claim(url, "a", 1).unwrap(), Some(5));
        assert_eq!(
            other
                .feed_cursor_claim("tls://siem.example:6514", "b", 60_000)
                .unwrap(),
            Some(0)
        );
        // Once the lease lapses, the other process takes over where the first left off, and
        // the first can no longer move the cursor.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(other.feed_cursor_claim(url, "b", 60_000).unwrap(), Some(5));
        assert!(!i.hsm.feed_cursor_advance(url, "a", 9).unwrap());
        assert_eq!(i.hsm.feed_cursor_claim(url, "a", 60_000).unwrap(), None);
    }
}

#[test]
fn the_feed_marks_a_changed_record_and_reports_a_deleted_one() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        for n in 0..4 {
            i.hsm
                .create_key(&i.admin, &KeySpec::new(&format!("k{n}"), Algorithm::EcP256))
                .unwrap();
        }
        let feed = i.hsm.audit_feed(0, 1000).unwrap();
        assert!(feed.missing.is_empty());
        assert_eq!(feed.records.len() as i64, feed.head);
        assert!(feed.records.iter().all(|(_, ok)| *ok));
        let seqs: Vec<i64> = feed.records.iter().map(|(e, _)| e.seq).collect();
        assert_eq!(seqs, (0..feed.head).collect::<Vec<_>>());
        // A page starts where asked and stops at the limit.
        let page = i.hsm.audit_feed(2, 2).unwrap();
        let seqs: Vec<i64> = page.records.iter().map(|(e, _)| e.seq).collect();
        assert_eq!(seqs, [2, 3]);

        let last = feed.head - 1;
        store.exec(&format!(
            "UPDATE audit_records SET outcome = 'ok-ish' WHERE seq = {}",
            last - 1
        ));
        store.exec(&format!(
            "DELETE FROM audit_records WHERE seq = {}",
            last - 2
        ));
        // A record stored beyond the head is not kagi's: it is never fed.
        store.exec(&format!(
            "INSERT INTO audit_records (seq, ts, actor, action, partition_name, key_id, use_hi, outcome, detail, mac) \
             SELECT {}, ts, actor, action, partition_name, key_id, use_hi, outcome, detail, mac FROM audit_records WHERE seq = {last}",
            feed.head
        ));
        let feed = i.hsm.audit_feed(0, 1000).unwrap();
        assert_eq!(feed.missing, [last - 2]);
        let marked: Vec<(i64, bool)> = feed
            .records
            .iter()
            .map(|(e, ok)| (e.seq, *ok))
            .filter(|(s, _)| *s >= last - 1)
            .collect();
        assert_eq!(marked, [(last - 1, false), (last, true)]);
    }
}
