//! The transparency log through its public API: group commit under
//! concurrency, receipts, the query functions and their offline checks,
//! reopening, and the whole-log audit on an untouched log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, SanType,
    SerialNumber,
};
use ward_ca::translog::{
    CertQuery, Entry, Issued, Log, LogOptions, LogPublicKey, LogReader, LogSigner, Requester,
    RevocationReason, Revoked, merkle, verify_consistency_json, verify_inclusion_json, verify_log,
};

struct TestCa {
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        Self {
            issuer: Issuer::new(params, key),
        }
    }

    /// A real leaf certificate for `identity` with a unique serial.
    fn leaf(&self, identity: &str, serial: u64) -> Vec<u8> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(identity.try_into().unwrap())];
        let bytes: Vec<u8> = serial
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        params.serial_number = Some(SerialNumber::from(bytes));
        params.not_before = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(1_800_003_600).unwrap();
        params.signed_by(&key, &self.issuer).unwrap().der().to_vec()
    }

    fn issued(&self, identity: &str, serial: u64) -> Entry {
        Entry::Issued(Issued {
            certificate: self.leaf(identity, serial),
            requester: Requester::Token(format!("tok-{serial}")),
            profile: "workload".into(),
            time_ms: 1_800_000_000_000 + serial,
        })
    }
}

fn log_key() -> (LogSigner, LogPublicKey) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let public = LogPublicKey::from_signing_key(&key).unwrap();
    (Arc::new(key), public)
}

fn open(path: &Path, key: &LogSigner) -> Log {
    Log::open(path, Arc::clone(key), LogOptions::default()).unwrap()
}

#[test]
fn concurrent_appends_are_group_committed_and_every_receipt_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.db");
    let (key, public) = log_key();
    let log = Arc::new(open(&path, &key));
    let ca = Arc::new(TestCa::new());
    // Certificates are made first so that the threads only append.
    let threads = 8u64;
    let per_thread = 40u64;
    let entries: Vec<Vec<Entry>> = (0..threads)
        .map(|t| {
            (0..per_thread)
                .map(|i| {
                    let serial = t * 1000 + i + 1;
                    ca.issued(&format!("spiffe://corp.example/ns/t{t}/sa/s{i}"), serial)
                })
                .collect()
        })
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(threads as usize));
    let handles: Vec<_> = entries
        .into_iter()
        .map(|mine| {
            let log = Arc::clone(&log);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                mine.iter()
                    .map(|e| (e.clone(), log.append_blocking(e).unwrap()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let receipts: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let total = threads * per_thread;
    assert_eq!(receipts.len() as u64, total);
    let mut indices: Vec<u64> = receipts.iter().map(|(_, r)| r.leaf_index).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..total).collect::<Vec<_>>());
    for (entry, r) in &receipts {
        assert_eq!(r.entry, entry.encode());
        assert_eq!(r.leaf_hash, merkle::leaf_hash(&entry.encode()));
        r.verify_root().unwrap();
        public.verify(&r.sth).unwrap();
        // The JSON the CA hands back checks fully offline.
        let v = verify_inclusion_json(&r.to_json(), &public).unwrap();
        assert_eq!(v.entry.as_ref(), Some(entry));
    }
    let stats = log.stats();
    assert_eq!(stats.entries(), total);
    assert!(
        stats.batches() < total,
        "{} batches for {total} entries: appends were not grouped",
        stats.batches()
    );
    // Every batch's head is stored and the whole log audits clean.
    let reader = LogReader::open(&path).unwrap();
    let report = verify_log(
        &reader.raw_entries().unwrap(),
        &reader.all_sths().unwrap(),
        &public,
        None,
    );
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.entries, total);
    assert_eq!(report.heads as u64, stats.batches() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_appends_return_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.db");
    let (key, public) = log_key();
    let log = Arc::new(open(&path, &key));
    let ca = TestCa::new();
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let log = Arc::clone(&log);
        let entry = ca.issued("spiffe://corp.example/ns/a/sa/b", i + 1);
        tasks.push(tokio::spawn(async move { log.append(&entry).await }));
    }
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        verify_inclusion_json(&r.to_json(), &public).unwrap();
    }
    assert_eq!(log.stats().entries(), 20);
}

#[test]
fn query_api_answers_and_its_proofs_check_offline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.db");
    let (key, public) = log_key();
    let log = open(&path, &key);
    let ca = TestCa::new();
    let mut receipts = Vec::new();
    for i in 0..10u64 {
        let who = if i % 2 == 0 { "alice" } else { "bob" };
        let e = ca.issued(&format!("spiffe://corp.example/user/{who}"), 0x100 + i);
        receipts.push(log.append_blocking(&e).unwrap());
    }
    log.append_blocking(&Entry::Revoked(Revoked {
        serial: vec![0x01, 0x02],
        reason: RevocationReason::KeyCompromise,
        revoked_by: "cli".into(),
        time_ms: 1_800_000_100_000,
    }))
    .unwrap();
    let reader = log.reader();

    let sth = reader.sth().unwrap();
    assert_eq!(sth.tree_size, 11);
    ward_ca::translog::verify_sth_json(&sth, &public).unwrap();
    let json = serde_json::to_value(&sth).unwrap();
    assert!(json["tree_size"].is_u64() && json["root_hash"].is_string());

    let page = reader.entries(2, 4).unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(page.entries[0].kind, "issued");
    assert_eq!(
        page.entries[0].identity.as_deref(),
        Some("spiffe://corp.example/user/alice")
    );
    assert!(reader.entries(11, 20).is_err());
    assert!(reader.entries(5, 1).is_err());
    let big = reader.entries(0, u64::MAX).unwrap();
    assert_eq!(big.entries.len(), 11);

    // Inclusion of every leaf in every signed size that contains it.
    for (i, r) in receipts.iter().enumerate() {
        for size in (i as u64 + 1)..=11 {
            let p = reader.inclusion_proof(&r.leaf_hash, size).unwrap();
            assert_eq!(p.leaf_index, i as u64);
            verify_inclusion_json(&p, &public).unwrap();
        }
        assert!(reader.inclusion_proof(&r.leaf_hash, i as u64).is_err());
    }
    assert!(reader.inclusion_proof(&[9u8; 32], 11).is_err());
    let by_serial = reader.inclusion_proof_by_serial("0x0103").unwrap();
    assert_eq!(by_serial.leaf_index, 3);
    verify_inclusion_json(&by_serial, &public).unwrap();

    // Consistency between every pair of sizes, and tampering is caught.
    for first in 1..=11u64 {
        for second in first..=11u64 {
            let p = reader.consistency_proof(first, second).unwrap();
            verify_consistency_json(&p, &public).unwrap();
        }
    }
    let mut bad = reader.consistency_proof(3, 9).unwrap();
    bad.first = 4;
    assert!(verify_consistency_json(&bad, &public).is_err());
    assert!(reader.consistency_proof(0, 3).is_err());
    assert!(reader.consistency_proof(3, 12).is_err());

    // Search by identity, serial and validity window; revocations joined.
    let alice = reader
        .certs(&CertQuery {
            identity: Some("spiffe://corp.example/user/alice".into()),
            ..CertQuery::default()
        })
        .unwrap();
    assert_eq!(alice.certs.len(), 5);
    assert!(alice.certs.iter().all(|c| c.index % 2 == 0));
    let one = reader
        .certs(&CertQuery {
            serial: Some("01:02".into()),
            ..CertQuery::default()
        })
        .unwrap();
    assert_eq!(one.certs.len(), 1);
    assert_eq!(
        one.certs[0].revocation_reason,
        Some(RevocationReason::KeyCompromise)
    );
    assert_eq!(one.certs[0].revoked_by.as_deref(), Some("cli"));
    let none = reader
        .certs(&CertQuery {
            since: Some("2027-01-16T00:00:00Z".into()),
            ..CertQuery::default()
        })
        .unwrap();
    assert!(none.certs.is_empty(), "certificates end 2027-01-15");
    let all = reader
        .certs(&CertQuery {
            since: Some("2027-01-15T08:30:00Z".into()),
            until: Some("2027-01-15T08:40:00Z".into()),
            ..CertQuery::default()
        })
        .unwrap();
    assert_eq!(all.certs.len(), 10);
    assert!(
        reader
            .certs(&CertQuery {
                since: Some("yesterday".into()),
                ..CertQuery::default()
            })
            .is_err()
    );
}

#[test]
fn reopening_continues_the_same_tree_and_refuses_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.db");
    let (key, public) = log_key();
    let ca = TestCa::new();
    let first_head = {
        let log = open(&path, &key);
        for i in 0..5 {
            log.append_blocking(&ca.issued("spiffe://corp.example/x", i + 1))
                .unwrap();
        }
        log.reader().sth().unwrap()
    };
    let (other, _) = log_key();
    assert!(matches!(
        Log::open(&path, other, LogOptions::default()),
        Err(ward_ca::Error::LogKey(_))
    ));
    let log = open(&path, &key);
    assert_eq!(log.reader().sth().unwrap().tree_size, 5);
    for i in 5..12 {
        let r = log
            .append_blocking(&ca.issued("spiffe://corp.example/x", i + 1))
            .unwrap();
        assert_eq!(r.leaf_index, i);
        verify_inclusion_json(&r.to_json(), &public).unwrap();
    }
    let p = log.reader().consistency_proof(5, 12).unwrap();
    assert_eq!(p.first_sth.as_ref(), Some(&first_head));
    verify_consistency_json(&p, &public).unwrap();
    let saved = ward_ca::translog::SignedTreeHead::try_from(&first_head).unwrap();
    let reader = log.reader();
    let report = verify_log(
        &reader.raw_entries().unwrap(),
        &reader.all_sths().unwrap(),
        &public,
        Some(&saved),
    );
    assert!(report.ok(), "{:?}", report.problem);
}

#[test]
fn entries_that_are_not_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = log_key();
    let log = open(&dir.path().join("ca.db"), &key);
    let bad = Entry::Issued(Issued {
        certificate: b"not a certificate".to_vec(),
        requester: Requester::Other("cli".into()),
        profile: "workload".into(),
        time_ms: 1,
    });
    assert!(matches!(
        log.append_blocking(&bad),
        Err(ward_ca::Error::LogEntry(_))
    ));
    assert_eq!(log.reader().sth().unwrap().tree_size, 0);
}

#[test]
fn auditing_a_log_that_is_being_appended_to_sees_a_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.db");
    let (key, public) = log_key();
    let log = Arc::new(open(&path, &key));
    let ca = TestCa::new();
    let work: Vec<Entry> = (0..150u64)
        .map(|i| ca.issued("spiffe://corp.example/ns/live/sa/x", i + 1))
        .collect();
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for e in &work {
                log.append_blocking(e).unwrap();
            }
        })
    };
    let mut reader = LogReader::open(&path).unwrap();
    let mut audits = 0;
    while !writer.is_finished() || audits == 0 {
        let report = ward_ca::translog::audit(&mut reader, &public, None).unwrap();
        assert!(report.ok(), "{:?}", report.problem);
        audits += 1;
    }
    writer.join().unwrap();
    let report = ward_ca::translog::audit(&mut reader, &public, None).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.entries, 150);
}

#[test]
fn signing_every_size_pins_an_edit_inside_a_concurrent_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.db");
    let (key, public) = log_key();
    let options = LogOptions {
        sign_every_size: true,
        ..LogOptions::default()
    };
    let log = Arc::new(Log::open(&path, Arc::clone(&key), options).unwrap());
    let ca = TestCa::new();
    let work: Vec<Entry> = (0..64u64)
        .map(|i| ca.issued("spiffe://corp.example/ns/b/sa/x", i + 1))
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = work
        .chunks(8)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let log = Arc::clone(&log);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for e in &chunk {
                    log.append_blocking(e).unwrap().verify_root().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(log.stats().batches() < 64);
    drop(log);
    let mut reader = LogReader::open(&path).unwrap();
    assert_eq!(reader.all_sths().unwrap().len(), 65, "one head per size");
    assert!(
        ward_ca::translog::audit(&mut reader, &public, None)
            .unwrap()
            .ok()
    );

    // Edit entry 37 and store its recomputed leaf hash.
    let c = rusqlite::Connection::open(&path).unwrap();
    let bytes: Vec<u8> = c
        .query_row(
            "SELECT entry FROM translog_entries WHERE idx = 37",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let Entry::Issued(mut issued) = Entry::decode(&bytes).unwrap() else {
        unreachable!()
    };
    issued.profile = "admin".into();
    let new = Entry::Issued(issued).encode();
    c.execute(
        "UPDATE translog_entries SET entry = ?1, leaf_hash = ?2 WHERE idx = 37",
        rusqlite::params![new, &merkle::leaf_hash(&new)[..]],
    )
    .unwrap();
    let report = ward_ca::translog::audit(&mut reader, &public, None).unwrap();
    assert!(
        matches!(
            report.problem,
            Some(ward_ca::translog::Problem::Entry {
                index: 37,
                what: ward_ca::translog::Tamper::Edited,
                ..
            })
        ),
        "{:?}",
        report.problem
    );
}
