//! Crash safety of "log before issue": a child process appends from several
//! threads and prints every receipt it gets; it is SIGKILLed mid-burst.
//! After reopening, every receipt that was handed out must still be in the
//! log at its index with a valid inclusion proof, and the log must verify.
//!
//! The child is this test binary itself, re-run on the ignored test
//! `crash_child` with the paths in environment variables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, SanType,
    SerialNumber,
};
use ward_ca::translog::{
    Entry, InclusionProofJson, Issued, Log, LogOptions, LogPublicKey, LogReader, Requester,
    verify_consistency_json, verify_inclusion_json, verify_log,
};

const DB: &str = "WARD_TRANSLOG_CRASH_DB";
const KEY: &str = "WARD_TRANSLOG_CRASH_KEY";

#[test]
#[ignore = "run by sigkill_during_appends_loses_no_receipt as its child process"]
fn crash_child() {
    let (Ok(db), Ok(key)) = (std::env::var(DB), std::env::var(KEY)) else {
        return;
    };
    let key = KeyPair::from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    let log = Arc::new(Log::open(db.as_ref(), Arc::new(key), LogOptions::default()).unwrap());
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let issuer = Arc::new(Issuer::new(params, ca_key));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let log = Arc::clone(&log);
            let issuer = Arc::clone(&issuer);
            std::thread::spawn(move || {
                for i in 0u64.. {
                    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
                    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
                    p.subject_alt_names = vec![SanType::URI(
                        format!("spiffe://corp.example/ns/crash/sa/t{t}")
                            .try_into()
                            .unwrap(),
                    )];
                    let serial = (t << 32) | (i + 1);
                    let bytes: Vec<u8> = serial
                        .to_be_bytes()
                        .into_iter()
                        .skip_while(|b| *b == 0)
                        .collect();
                    p.serial_number = Some(SerialNumber::from(bytes));
                    let der = p.signed_by(&key, &issuer).unwrap().der().to_vec();
                    let receipt = log
                        .append_blocking(&Entry::Issued(Issued {
                            certificate: der,
                            requester: Requester::Token(format!("t{t}-{i}")),
                            profile: "workload".into(),
                            time_ms: 1_800_000_000_000,
                        }))
                        .unwrap();
                    // Only now does the "client" have its certificate.
                    let line = serde_json::to_string(&receipt.to_json()).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{line}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn sigkill_during_appends_loses_no_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ca.db");
    let key_path = dir.path().join("log.key.pem");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let public = LogPublicKey::from_signing_key(&key).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture"])
        .env(DB, &db)
        .env(KEY, &key_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut receipts: Vec<InclusionProofJson> = Vec::new();
    while receipts.len() < 200 {
        let line = lines.next().expect("child stopped early").unwrap();
        if let Ok(r) = serde_json::from_str(&line) {
            receipts.push(r);
        }
    }
    child.kill().unwrap(); // SIGKILL
    // Receipts printed before the kill landed are receipts clients got.
    for line in lines.map_while(Result::ok) {
        if let Ok(r) = serde_json::from_str(&line) {
            receipts.push(r);
        }
    }
    child.wait().unwrap();

    // Restart: the log opens, and every receipt holds.
    let log = Log::open(&db, Arc::new(key), LogOptions::default()).unwrap();
    let reader = log.reader();
    let now = reader.sth().unwrap();
    for r in &receipts {
        verify_inclusion_json(r, &public).unwrap();
        let leaf = ward_ca::translog::sth::decode_hash(&r.leaf_hash, "leaf_hash").unwrap();
        let p = reader.inclusion_proof(&leaf, now.tree_size).unwrap();
        assert_eq!(p.leaf_index, r.leaf_index);
        verify_inclusion_json(&p, &public).unwrap();
        let c = reader
            .consistency_proof(r.tree_size, now.tree_size)
            .unwrap();
        assert_eq!(c.first_sth.as_ref(), r.sth.as_ref());
        verify_consistency_json(&c, &public).unwrap();
    }
    let file_reader = LogReader::open(&db).unwrap();
    let report = verify_log(
        &file_reader.raw_entries().unwrap(),
        &file_reader.all_sths().unwrap(),
        &public,
        None,
    );
    assert!(report.ok(), "{:?}", report.problem);
    assert!(report.entries >= receipts.len() as u64);
}
