//! `ward audit` against the running CA's API (`--ca URL --fingerprint …`):
//! the real `ward ca serve` on a SoftHSM2 token, certificates enrolled with
//! `ward agent enroll`, a head saved with `ward audit sth --ca`, more
//! issued and one revoked, then online `verify --from-sth`, `search`,
//! `prove`, `sth` and `watch`; finally a row of the running CA's SQLite
//! file is rewritten the way an admin with database access could, and the
//! online audit must fail naming that entry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::agent::World;
use rusqlite::{Connection, params};
use ward_ca::client::{CaClient, RootPin};
use ward_ca::translog::{Entry, Requester, merkle};

const AUDITOR: &str = "spiffe://corp.example/ns/sec/sa/auditor";
const ALICE: &str = "spiffe://corp.example/ns/prod/sa/alice";
const BOB: &str = "spiffe://corp.example/ns/prod/sa/bob";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A CA whose `server.admins` holds the auditor (who may read the log and
/// revoke), started.
fn world(label: &str) -> World {
    let mut w = World::new(label, "1h");
    let cfg = std::fs::read_to_string(&w.ca_config).unwrap();
    let cfg = cfg.replacen(
        "[server]\n",
        &format!("[server]\nadmins = [\"{AUDITOR}\"]\n"),
        1,
    );
    std::fs::write(&w.ca_config, cfg).unwrap();
    w.start_ca();
    w
}

/// Enrols `identity` with a fresh token; returns the agent's directory.
fn enrol(w: &World, identity: &str, name: &str) -> PathBuf {
    let token = w.token_file(identity, &format!("{name}.token"));
    let dir = w.path(name);
    let out = w.enroll(&token, &dir, &w.fingerprint);
    assert!(
        out.status.success(),
        "enrol {identity}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.log("ca.log")
    );
    dir
}

/// The log key from the CA's bundle, saved as the auditor would keep it
/// with the trust bundle.
fn save_log_key(w: &World) -> PathBuf {
    let client = CaClient::new(&w.ca_url(), RootPin::Fingerprint(w.fingerprint.clone())).unwrap();
    let key = rt().block_on(client.bundle_log_key()).unwrap();
    let path = w.path("log.pub.pem");
    std::fs::write(&path, key.to_pem()).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `ward audit <cmd> --ca … --fingerprint … <rest>`.
fn online(w: &World, cmd: &str, rest: &[&str]) -> Output {
    let url = w.ca_url();
    let mut args = vec!["audit", cmd, "--ca", &url, "--fingerprint", &w.fingerprint];
    args.extend_from_slice(rest);
    w.ward(&args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(what: &str, out: &Output) -> String {
    assert!(out.status.success(), "{what} failed:\n{}", text(out));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The auditor's search for one identity, through the API.
fn search(w: &World, auditor: &Path, identity: &str) -> Vec<serde_json::Value> {
    let cert = auditor.join("cert.pem");
    let key = auditor.join("key.pem");
    let out = online(
        w,
        "search",
        &[
            "--identity",
            identity,
            "--json",
            "--cert",
            s(&cert),
            "--key",
            s(&key),
        ],
    );
    json_lines(&ok("audit search --ca", &out))
}

/// Rewrites the entry at `index` the way an admin with database access
/// would: a valid entry with another requester, back-dated by a day, and
/// the matching leaf hash stored too.
fn edit_entry(db: &Path, index: u64) {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let bytes: Vec<u8> = c
        .query_row(
            "SELECT entry FROM translog_entries WHERE idx = ?1",
            [index as i64],
            |r| r.get(0),
        )
        .unwrap();
    let Entry::Issued(mut issued) = Entry::decode(&bytes).unwrap() else {
        panic!("entry {index} is not an issuance")
    };
    issued.requester = Requester::Token("someone-else".into());
    issued.time_ms -= 86_400_000;
    let new = Entry::Issued(issued).encode();
    let n = c
        .execute(
            "UPDATE translog_entries SET entry = ?1, leaf_hash = ?2 WHERE idx = ?3",
            params![new, &merkle::leaf_hash(&new)[..], index as i64],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn online_audit_of_a_running_ca() {
    let w = world("audit-online");
    let key = save_log_key(&w);
    let auditor = enrol(&w, AUDITOR, "auditor");
    enrol(&w, ALICE, "alice1");
    enrol(&w, BOB, "bob1");

    // A head saved now, checked against the bundle's key.
    let saved_text = ok(
        "audit sth --ca",
        &online(&w, "sth", &["--log-key", s(&key)]),
    );
    let saved: serde_json::Value = serde_json::from_str(&saved_text).unwrap();
    let saved_size = saved["tree_size"].as_u64().unwrap();
    assert!(saved_size >= 3, "{saved_text}");
    let saved_path = w.path("saved-sth.json");
    std::fs::write(&saved_path, &saved_text).unwrap();

    // More certificates, and one revoked by the auditor through the API.
    enrol(&w, ALICE, "alice2");
    let bob2 = enrol(&w, BOB, "bob2");
    assert!(bob2.join("cert.pem").exists());
    let alice = search(&w, &auditor, ALICE);
    assert_eq!(alice.len(), 2, "{alice:?}");
    let first = alice[0]["serial"].as_str().unwrap().to_string();
    let second = alice[1]["serial"].as_str().unwrap().to_string();
    let chain = std::fs::read_to_string(auditor.join("cert.pem")).unwrap();
    let auditor_key = std::fs::read_to_string(auditor.join("key.pem")).unwrap();
    let admin = CaClient::new(&w.ca_url(), RootPin::Fingerprint(w.fingerprint.clone()))
        .unwrap()
        .with_client_cert(&chain, &auditor_key)
        .unwrap();
    rt().block_on(admin.revoke(&first, Some("keyCompromise")))
        .unwrap();

    // The whole log verifies online, and extends the saved head.
    let out = ok(
        "audit verify --ca --from-sth",
        &online(
            &w,
            "verify",
            &["--log-key", s(&key), "--from-sth", s(&saved_path)],
        ),
    );
    assert!(out.starts_with("ok: "), "{out}");
    assert!(
        out.contains(&format!(
            "consistent with the saved head of size {saved_size}"
        )),
        "{out}"
    );
    assert!(out.contains("online from"), "{out}");
    // Offline on the same (live) database too.
    let db = w.path("ca.db");
    let offline = w.ward(&[
        "audit",
        "verify",
        "--db",
        s(&db),
        "--log-key",
        s(&key),
        "--from-sth",
        s(&saved_path),
    ]);
    assert!(ok("audit verify --db", &offline).starts_with("ok: "));

    // Search lists both of Alice's certificates, the revoked one marked.
    let alice = search(&w, &auditor, ALICE);
    assert_eq!(alice.len(), 2, "{alice:?}");
    let revoked = alice
        .iter()
        .find(|c| c["serial"] == first.as_str())
        .unwrap();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_eq!(revoked["revocation_reason"], "keyCompromise", "{revoked}");
    let live = alice
        .iter()
        .find(|c| c["serial"] == second.as_str())
        .unwrap();
    assert!(live["revoked_at"].is_null(), "{live}");
    assert_eq!(search(&w, &auditor, BOB).len(), 2);
    // Reading the log's certificate index needs a client certificate.
    let refused = online(&w, "search", &["--identity", ALICE, "--json"]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("--cert"), "{}", text(&refused));

    // An inclusion proof, fetched and checked against the trusted key.
    let prove = online(&w, "prove", &["--serial", &second, "--log-key", s(&key)]);
    let proof = ok("audit prove --ca", &prove);
    assert!(proof.contains("\"audit_path\""), "{proof}");
    assert!(
        String::from_utf8_lossy(&prove.stderr).contains(&format!("ok: certificate {second}")),
        "{}",
        text(&prove)
    );
    // The proof as printed checks fully offline.
    let proof_path = w.path("proof.json");
    std::fs::write(&proof_path, &proof).unwrap();
    let check = w.ward(&["audit", "check-proof", s(&proof_path), "--log-key", s(&key)]);
    assert!(ok("audit check-proof", &check).starts_with("ok: inclusion"));

    // Watch: every entry once, in order; resumable.
    let head = ok("audit sth --ca", &online(&w, "sth", &[]));
    let size = serde_json::from_str::<serde_json::Value>(&head).unwrap()["tree_size"]
        .as_u64()
        .unwrap();
    let all = json_lines(&ok("audit watch --ca", &online(&w, "watch", &["--once"])));
    let indices: Vec<u64> = all.iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, (0..size).collect::<Vec<_>>());
    assert_eq!(all.last().unwrap()["kind"], "revoked");
    let rest = json_lines(&ok(
        "audit watch --ca --since-index",
        &online(&w, "watch", &["--once", "--since-index", "2"]),
    ));
    assert_eq!(rest.len() as u64, size - 3);
    assert_eq!(rest[0]["index"], 3);

    // Rewrite Bob's second certificate's entry in the running CA's
    // database: the CA now serves entries that are not what it signed.
    let bob = search(&w, &auditor, BOB);
    let target = bob[1]["index"].as_u64().unwrap();
    assert!(target > saved_size, "{bob:?}");
    edit_entry(&db, target);
    let out = online(&w, "verify", &["--log-key", s(&key)]);
    eprintln!("online verify of the tampered log:\n{}", text(&out));
    assert!(
        !out.status.success(),
        "tampered log verified:\n{}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!("entry {target}: edited")),
        "expected entry {target} named:\n{}",
        text(&out)
    );
    let out = online(
        &w,
        "verify",
        &["--log-key", s(&key), "--from-sth", s(&saved_path)],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("entry {target}")),
        "{}",
        text(&out)
    );
    // The offline audit, with every head the CA signed, agrees.
    let out = w.ward(&["audit", "verify", "--db", s(&db), "--log-key", s(&key)]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("entry {target}")),
        "{}",
        text(&out)
    );
}

#[test]
fn online_audit_refuses_a_wrong_pin_and_a_foreign_key() {
    let w = world("audit-pin");
    let key = save_log_key(&w);
    enrol(&w, ALICE, "alice");
    let url = w.ca_url();
    let wrong = format!("sha256:{}", "00".repeat(32));
    let out = w.ward(&[
        "audit",
        "verify",
        "--ca",
        &url,
        "--fingerprint",
        &wrong,
        "--log-key",
        s(&key),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pinned root"), "{}", text(&out));

    // A log key that is not the CA's: every head's signature is bad.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other_pem = w.path("other.pub.pem");
    std::fs::write(
        &other_pem,
        ward_ca::translog::LogPublicKey::from_signing_key(&other)
            .unwrap()
            .to_pem(),
    )
    .unwrap();
    let out = online(&w, "verify", &["--log-key", s(&other_pem)]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("does not carry a valid log signature"),
        "{}",
        text(&out)
    );
    assert!(ok("verify", &online(&w, "verify", &["--log-key", s(&key)])).starts_with("ok: "));
}

#[test]
fn online_audit_names_reordered_and_removed_entries() {
    let mut w = world("audit-removed");
    let key = save_log_key(&w);
    for i in 0..4 {
        enrol(&w, ALICE, &format!("alice{i}"));
    }
    assert!(ok("verify", &online(&w, "verify", &["--log-key", s(&key)])).starts_with("ok: "));
    let db = w.path("ca.db");

    // Rows 1 and 3 swapped (bytes and stored leaf hashes) in the running
    // CA's database, then swapped back.
    let swap = |a: i64, b: i64| {
        let c = Connection::open(&db).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             UPDATE translog_entries SET idx = -1 WHERE idx = {a};
             UPDATE translog_entries SET idx = {a} WHERE idx = {b};
             UPDATE translog_entries SET idx = {b} WHERE idx = -1;
             COMMIT;"
        ))
        .unwrap();
    };
    swap(1, 3);
    let out = online(&w, "verify", &["--log-key", s(&key)]);
    eprintln!(
        "online verify of the log with entries 1 and 3 swapped:\n{}",
        text(&out)
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("entry 1: reordered") && text(&out).contains("now at index 3"),
        "{}",
        text(&out)
    );
    swap(1, 3);
    assert!(ok("verify", &online(&w, "verify", &["--log-key", s(&key)])).starts_with("ok: "));

    // Stopped, one row deleted (later rows keep their indices), restarted.
    w.stop_ca();
    let c = Connection::open(&db).unwrap();
    assert_eq!(
        c.execute("DELETE FROM translog_entries WHERE idx = 2", [])
            .unwrap(),
        1
    );
    drop(c);
    w.start_ca();
    let out = online(&w, "verify", &["--log-key", s(&key)]);
    eprintln!("online verify of the log without entry 2:\n{}", text(&out));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("entry 2: missing"), "{}", text(&out));
    let out = w.ward(&["audit", "verify", "--db", s(&db), "--log-key", s(&key)]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("entry 2: missing"), "{}", text(&out));
}
