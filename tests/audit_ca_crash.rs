//! The "log before issue" promise under a crash: the real `ward ca serve`
//! on a SoftHSM2 token gets a burst of concurrent enrolments (tokens made
//! beforehand with `ward ca token create`, CSRs made with rcgen) and is
//! SIGKILLed in the middle of it, then restarted on the same database.
//! Every certificate any client received, with the inclusion proof it came
//! with, must be in the log afterwards: provably included in the new head,
//! that head consistent with every head a client saw, and the whole log
//! verifying online and offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::agent::World;
use ward_ca::client::{CaClient, Issued, RootPin};
use ward_ca::translog::sth::decode_hash;
use ward_ca::translog::{Entry, SignedTreeHead, SthJson, merkle, verify_inclusion_json};

/// Enrolments in the burst.
const BURST: usize = 64;
/// The CA is killed once this many clients hold a certificate.
const KILL_AFTER: usize = 8;

fn csr(identity: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.subject_alt_names = vec![rcgen::SanType::URI(identity.try_into().unwrap())];
    p.serialize_request(&key).unwrap().pem().unwrap()
}

fn leaf_der(chain_pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

fn client(w: &World) -> CaClient {
    CaClient::new(&w.ca_url(), RootPin::Fingerprint(w.fingerprint.clone())).unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn certificates_received_before_a_sigkill_stay_in_the_log() {
    let mut w = World::new("audit-crash", "1h");
    w.start_ca();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let key = rt.block_on(client(&w).bundle_log_key()).unwrap();
    let key_path = w.path("log.pub.pem");
    std::fs::write(&key_path, key.to_pem()).unwrap();

    // Tokens first, so the burst is only enrolments.
    let jobs: Vec<(String, String, String)> = (0..BURST)
        .map(|i| {
            let identity = format!("spiffe://corp.example/ns/burst/sa/w{i}");
            let token = std::fs::read_to_string(w.token_file(&identity, &format!("t{i}")))
                .unwrap()
                .trim()
                .to_string();
            let csr = csr(&identity);
            (identity, token, csr)
        })
        .collect();

    // The burst: half of the enrolments at once (concurrent issuances,
    // committed in groups), the other half arriving every few milliseconds
    // so that the kill surely lands while requests keep coming; the CA is
    // SIGKILLed from inside the burst once KILL_AFTER clients hold a
    // certificate.
    let ca = Arc::new(Mutex::new(w.ca.take()));
    let received: Arc<Mutex<Vec<Issued>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for (i, (identity, token, csr)) in jobs.into_iter().enumerate() {
            let c = client(&w);
            let received = Arc::clone(&received);
            let failed = Arc::clone(&failed);
            let killed = Arc::clone(&killed);
            let ca = Arc::clone(&ca);
            tasks.push(tokio::spawn(async move {
                let delay = if i % 2 == 0 { 0 } else { 3 * i as u64 };
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let answer =
                    tokio::time::timeout(Duration::from_secs(30), c.enroll(&token, &csr)).await;
                match answer {
                    Ok(Ok(issued)) => {
                        assert_eq!(issued.identity, identity);
                        let mut r = received.lock().unwrap();
                        r.push(issued);
                        if r.len() >= KILL_AFTER && !killed.swap(true, Ordering::SeqCst) {
                            // SIGKILL, not reaped yet (the restart reaps it).
                            let mut ca = ca.lock().unwrap();
                            ca.as_mut().unwrap().child.kill().unwrap();
                        }
                    }
                    Ok(Err(_)) | Err(_) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let received = std::mem::take(&mut *received.lock().unwrap());
    let failed = failed.load(Ordering::SeqCst);
    assert!(killed.load(Ordering::SeqCst), "the CA was never killed");
    assert!(
        failed > 0,
        "the kill came after the burst ({} received)",
        received.len()
    );
    assert!(received.len() >= KILL_AFTER);
    eprintln!(
        "burst of {BURST}: {} certificates received, {failed} requests cut by the kill",
        received.len()
    );

    // Every receipt verifies offline with the log key, and its entry is the
    // certificate the client got.
    let mut seen_heads: Vec<SignedTreeHead> = Vec::new();
    for issued in &received {
        let receipt = issued
            .log_proof
            .as_ref()
            .unwrap_or_else(|| panic!("{} came without a log proof", issued.serial));
        let v = verify_inclusion_json(receipt, &key).unwrap();
        let Some(Entry::Issued(entry)) = v.entry else {
            panic!("receipt of {} carries no issuance entry", issued.serial)
        };
        assert_eq!(entry.certificate, leaf_der(&issued.chain_pem));
        seen_heads.push(v.sth);
    }

    // Restart on the same database (reap the killed process first).
    drop(ca.lock().unwrap().take());
    w.start_ca();
    let c = client(&w);
    let head_json: SthJson = rt.block_on(c.log_sth()).unwrap();
    let head = ward_ca::translog::verify_sth_json(&head_json, &key).unwrap();

    // Every received certificate is in the new head, with a proof that
    // verifies against the trusted key, and every head a client was shown
    // is a prefix of it.
    for (issued, seen) in received.iter().zip(&seen_heads) {
        let receipt = issued.log_proof.as_ref().unwrap();
        let leaf = decode_hash(&receipt.leaf_hash, "leaf_hash").unwrap();
        let proof = rt
            .block_on(c.log_inclusion(&leaf, head.head.tree_size))
            .unwrap_or_else(|e| panic!("{} is not in the log after the crash: {e}", issued.serial));
        let v = verify_inclusion_json(&proof, &key).unwrap();
        assert_eq!(v.leaf_index, receipt.leaf_index, "{}", issued.serial);
        assert_eq!(v.sth.head, head.head);
        let Some(Entry::Issued(entry)) = v.entry else {
            panic!("{}: not an issuance", issued.serial)
        };
        assert_eq!(entry.certificate, leaf_der(&issued.chain_pem));
        // The same through the CLI, by serial.
        let url = w.ca_url();
        let out = w.ward(&[
            "audit",
            "prove",
            "--ca",
            &url,
            "--fingerprint",
            &w.fingerprint,
            "--serial",
            &issued.serial,
            "--log-key",
            key_path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));

        assert!(seen.head.tree_size <= head.head.tree_size);
        if seen.head.tree_size < head.head.tree_size {
            let p = rt
                .block_on(c.consistency_proof(seen.head.tree_size, head.head.tree_size))
                .unwrap();
            let path: Vec<_> = p
                .consistency_path
                .iter()
                .map(|h| decode_hash(h, "consistency_path").unwrap())
                .collect();
            merkle::verify_consistency(
                seen.head.tree_size,
                head.head.tree_size,
                &seen.head.root_hash,
                &head.head.root_hash,
                &path,
            )
            .unwrap_or_else(|e| {
                panic!(
                    "the head of size {} a client saw is not a prefix after the crash: {e}",
                    seen.head.tree_size
                )
            });
        } else {
            assert_eq!(seen.head.root_hash, head.head.root_hash);
        }
    }

    // The CA issues again after the crash, and the whole log verifies,
    // online and offline, extending the newest head any client saw.
    let (identity, token) = {
        let identity = "spiffe://corp.example/ns/burst/sa/after";
        let t = std::fs::read_to_string(w.token_file(identity, "after"))
            .unwrap()
            .trim()
            .to_string();
        (identity, t)
    };
    let after = rt.block_on(c.enroll(&token, &csr(identity))).unwrap();
    verify_inclusion_json(after.log_proof.as_ref().unwrap(), &key).unwrap();
    let newest_seen = seen_heads.iter().max_by_key(|s| s.head.tree_size).unwrap();
    let saved = w.path("newest-seen.json");
    std::fs::write(
        &saved,
        serde_json::to_string(&SthJson::from(newest_seen)).unwrap(),
    )
    .unwrap();
    let url = w.ca_url();
    let key_arg = key_path.to_str().unwrap();
    let online = w.ward(&[
        "audit",
        "verify",
        "--ca",
        &url,
        "--fingerprint",
        &w.fingerprint,
        "--log-key",
        key_arg,
        "--from-sth",
        saved.to_str().unwrap(),
    ]);
    assert!(online.status.success(), "online: {}", text(&online));
    assert!(
        String::from_utf8_lossy(&online.stdout).starts_with("ok: "),
        "{}",
        text(&online)
    );
    let db = w.path("ca.db");
    let offline = w.ward(&[
        "audit",
        "verify",
        "--db",
        db.to_str().unwrap(),
        "--log-key",
        key_arg,
        "--from-sth",
        saved.to_str().unwrap(),
    ]);
    assert!(offline.status.success(), "offline: {}", text(&offline));
    // Both read the same log: the same number of entries.
    let count = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .map(str::to_owned)
    };
    assert_eq!(count(&online), count(&offline), "{}", text(&offline));
}
