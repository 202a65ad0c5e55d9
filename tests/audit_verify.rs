//! `ward audit` on a real log: the log is built through the library with
//! real certificates, then tampered with directly in SQLite the way an
//! admin with database access could (recomputing the stored leaf hashes
//! too), and the real binary must name the first bad entry every time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, SanType,
    SerialNumber,
};
use rusqlite::{Connection, params};
use ward_ca::translog::{
    Entry, Issued, Log, LogOptions, LogPublicKey, LogReader, LogSigner, Requester, merkle,
};

struct Fixture {
    dir: tempfile::TempDir,
    key: LogSigner,
    key_pem: PathBuf,
    entries: Vec<Entry>,
}

fn leaf(issuer: &Issuer<'static, KeyPair>, identity: &str, serial: u64) -> Vec<u8> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::URI(identity.try_into().unwrap())];
    params.serial_number = Some(SerialNumber::from(vec![0x40, serial as u8]));
    params.not_before = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(1_800_043_200).unwrap();
    params.signed_by(&key, issuer).unwrap().der().to_vec()
}

fn entries(count: u64, tag: &str) -> Vec<Entry> {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let issuer = Issuer::new(params, ca_key);
    (0..count)
        .map(|i| {
            let who = if i % 2 == 0 { "alice" } else { "bob" };
            Entry::Issued(Issued {
                certificate: leaf(&issuer, &format!("spiffe://corp.example/user/{who}"), i),
                requester: Requester::Token(format!("{tag}-{i}")),
                profile: "user".into(),
                time_ms: 1_800_000_000_000 + i * 1000,
            })
        })
        .collect()
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let key_pem = dir.path().join("log.pub.pem");
        std::fs::write(
            &key_pem,
            LogPublicKey::from_signing_key(&key).unwrap().to_pem(),
        )
        .unwrap();
        Self {
            dir,
            key: Arc::new(key),
            key_pem,
            entries: entries(8, "tok"),
        }
    }

    /// A fresh log holding `entries`, appended one by one.
    fn log_with(&self, name: &str, entries: &[Entry]) -> PathBuf {
        let path = self.dir.path().join(name);
        let log = Log::open(&path, Arc::clone(&self.key), LogOptions::default()).unwrap();
        for e in entries {
            log.append_blocking(e).unwrap();
        }
        path
    }

    fn log(&self, name: &str) -> PathBuf {
        self.log_with(name, &self.entries)
    }
}

fn ward(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify(f: &Fixture, db: &Path, from_sth: Option<&Path>) -> (bool, String) {
    let mut args = vec![
        "audit",
        "verify",
        "--db",
        db.to_str().unwrap(),
        "--log-key",
        f.key_pem.to_str().unwrap(),
    ];
    if let Some(s) = from_sth {
        args.extend(["--from-sth", s.to_str().unwrap()]);
    }
    let (ok, stdout, stderr) = ward(&args);
    (ok, format!("{stdout}{stderr}"))
}

fn assert_fails_at(f: &Fixture, db: &Path, expected: &str) {
    let (ok, out) = verify(f, db, None);
    assert!(!ok, "tampered log verified: {out}");
    assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
}

/// Rewrite one entry's bytes the way an attacker would: keep it a valid
/// entry, and store the matching leaf hash too.
fn edit_entry(db: &Path, index: i64, recompute_leaf_hash: bool) {
    let c = Connection::open(db).unwrap();
    let bytes: Vec<u8> = c
        .query_row(
            "SELECT entry FROM translog_entries WHERE idx = ?1",
            [index],
            |r| r.get(0),
        )
        .unwrap();
    let Entry::Issued(mut issued) = Entry::decode(&bytes).unwrap() else {
        panic!("not an issued entry")
    };
    issued.requester = Requester::Token("someone-else".into());
    issued.time_ms -= 86_400_000; // back-dated by a day
    let new = Entry::Issued(issued).encode();
    c.execute(
        "UPDATE translog_entries SET entry = ?1 WHERE idx = ?2",
        params![new, index],
    )
    .unwrap();
    if recompute_leaf_hash {
        c.execute(
            "UPDATE translog_entries SET leaf_hash = ?1 WHERE idx = ?2",
            params![&merkle::leaf_hash(&new)[..], index],
        )
        .unwrap();
    }
}

fn sql(db: &Path, statements: &str) {
    Connection::open(db)
        .unwrap()
        .execute_batch(statements)
        .unwrap();
}

#[test]
fn untouched_log_verifies() {
    let f = Fixture::new();
    let db = f.log("clean.db");
    let (ok, out) = verify(&f, &db, None);
    assert!(ok, "{out}");
    assert!(
        out.contains("ok: 8 entries and 9 signed tree heads verified"),
        "{out}"
    );
}

#[test]
fn edited_entry_is_named_even_with_recomputed_leaf_hash() {
    let f = Fixture::new();
    let db = f.log("edited.db");
    edit_entry(&db, 3, true);
    assert_fails_at(&f, &db, "entry 3: edited");

    let db = f.log("edited-raw.db");
    edit_entry(&db, 5, false);
    assert_fails_at(&f, &db, "entry 5: edited");
}

#[test]
fn deleted_entries_are_named() {
    let f = Fixture::new();
    // A row removed, leaving a gap.
    let db = f.log("gap.db");
    sql(&db, "DELETE FROM translog_entries WHERE idx = 4");
    assert_fails_at(&f, &db, "entry 4: missing");
    // A row removed and the later ones renumbered to hide the gap.
    let db = f.log("renumbered.db");
    sql(
        &db,
        "DELETE FROM translog_entries WHERE idx = 4;
         UPDATE translog_entries SET idx = -(idx - 1) WHERE idx > 4;
         UPDATE translog_entries SET idx = -idx WHERE idx < 0;",
    );
    assert_fails_at(&f, &db, "entry 4: missing");
    // The newest row removed.
    let db = f.log("tail.db");
    sql(&db, "DELETE FROM translog_entries WHERE idx = 7");
    assert_fails_at(&f, &db, "entry 7: missing");
    // Rows and the heads that covered them removed: only a saved head tells.
    let db = f.log("truncated.db");
    let saved = f.dir.path().join("truncated.sth.json");
    std::fs::write(&saved, sth_json(&db)).unwrap();
    sql(
        &db,
        "DELETE FROM translog_entries WHERE idx >= 6;
         DELETE FROM translog_sths WHERE tree_size >= 7;",
    );
    let (ok, out) = verify(&f, &db, None);
    assert!(
        ok,
        "a consistently truncated log is sound on its own: {out}"
    );
    let (ok, out) = verify(&f, &db, Some(&saved));
    assert!(!ok, "{out}");
    assert!(out.contains("truncated"), "{out}");
}

#[test]
fn reordered_entries_are_named() {
    let f = Fixture::new();
    let db = f.log("swapped.db");
    sql(
        &db,
        "UPDATE translog_entries SET idx = -1 WHERE idx = 2;
         UPDATE translog_entries SET idx = 2 WHERE idx = 6;
         UPDATE translog_entries SET idx = 6 WHERE idx = -1;",
    );
    assert_fails_at(&f, &db, "entry 2: reordered");
}

#[test]
fn inserted_entries_are_named() {
    let f = Fixture::new();
    let extra = entries(1, "forged").remove(0).encode();
    let hash = merkle::leaf_hash(&extra);
    let insert = |db: &Path, idx: i64| {
        Connection::open(db)
            .unwrap()
            .execute(
                "INSERT INTO translog_entries (idx, entry, leaf_hash, kind, serial, time_ms)
                 VALUES (?1, ?2, ?3, 'issued', '4000', 0)",
                params![idx, extra, &hash[..]],
            )
            .unwrap();
    };
    // Appended past the newest signed head.
    let db = f.log("appended.db");
    insert(&db, 8);
    assert_fails_at(&f, &db, "entry 8: inserted");
    // Slipped into the middle, later rows renumbered.
    let db = f.log("slipped.db");
    sql(
        &db,
        "UPDATE translog_entries SET idx = -(idx + 1) WHERE idx >= 3;
         UPDATE translog_entries SET idx = -idx WHERE idx < 0;",
    );
    insert(&db, 3);
    assert_fails_at(&f, &db, "entry 3: inserted");
}

#[test]
fn forged_tree_head_is_refused() {
    let f = Fixture::new();
    let db = f.log("forged.db");
    sql(
        &db,
        "UPDATE translog_sths SET root_hash = zeroblob(32) WHERE tree_size = 5",
    );
    assert_fails_at(
        &f,
        &db,
        "signed tree head of size 5 does not carry a valid log signature",
    );
}

fn sth_json(db: &Path) -> String {
    let (ok, out, err) = ward(&["audit", "sth", "--db", db.to_str().unwrap()]);
    assert!(ok, "{err}");
    out
}

#[test]
fn saved_head_accepts_an_extended_log_and_rejects_a_rewritten_one() {
    let f = Fixture::new();
    let db = f.log_with("grows.db", &f.entries[..4]);
    let saved = f.dir.path().join("saved.json");
    std::fs::write(&saved, sth_json(&db)).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(json["tree_size"], 4);
    // The CA goes on appending.
    {
        let log = Log::open(&db, Arc::clone(&f.key), LogOptions::default()).unwrap();
        for e in &f.entries[4..] {
            log.append_blocking(e).unwrap();
        }
    }
    let (ok, out) = verify(&f, &db, Some(&saved));
    assert!(ok, "{out}");
    assert!(
        out.contains("consistent with the saved head of size 4"),
        "{out}"
    );

    // Someone with the log key builds a different history: it is sound on
    // its own, but not what the auditor saw before.
    let mut other = entries(2, "rewritten");
    other.extend_from_slice(&f.entries[2..]);
    let rewritten = f.log_with("rewritten.db", &other);
    let (ok, out) = verify(&f, &rewritten, None);
    assert!(ok, "{out}");
    let (ok, out) = verify(&f, &rewritten, Some(&saved));
    assert!(!ok, "{out}");
    assert!(out.contains("rewritten"), "{out}");

    // A head signed by another key is refused outright.
    let stranger = Fixture::new();
    let theirs = stranger.log_with("theirs.db", &f.entries[..2]);
    let foreign = f.dir.path().join("foreign.json");
    std::fs::write(&foreign, sth_json(&theirs)).unwrap();
    let (ok, out) = verify(&f, &db, Some(&foreign));
    assert!(!ok && out.contains("saved signed tree head"), "{out}");
}

#[test]
fn proofs_print_and_check_offline() {
    let f = Fixture::new();
    let db = f.log("proofs.db");
    let key = f.key_pem.to_str().unwrap();
    let (ok, proof, err) = ward(&[
        "audit",
        "prove",
        "--db",
        db.to_str().unwrap(),
        "--serial",
        "40:03",
        "--log-key",
        key,
    ]);
    assert!(ok, "{err}");
    let file = f.dir.path().join("inclusion.json");
    std::fs::write(&file, &proof).unwrap();
    let (ok, out, err) = ward(&[
        "audit",
        "check-proof",
        file.to_str().unwrap(),
        "--log-key",
        key,
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("inclusion of entry 3"), "{out}");
    assert!(out.contains("spiffe://corp.example/user/bob"), "{out}");

    // One byte of one hash changed: refused.
    let mut json: serde_json::Value = serde_json::from_str(&proof).unwrap();
    let first = json["audit_path"][0].as_str().unwrap().to_owned();
    let mut bytes = base64_decode(&first);
    bytes[0] ^= 1;
    json["audit_path"][0] = base64_encode(&bytes).into();
    std::fs::write(&file, json.to_string()).unwrap();
    let (ok, out, _) = ward(&[
        "audit",
        "check-proof",
        file.to_str().unwrap(),
        "--log-key",
        key,
    ]);
    assert!(!ok, "{out}");

    // A consistency proof in the API's shape.
    let reader = LogReader::open(&db).unwrap();
    let consistency = reader.consistency_proof(3, 8).unwrap();
    std::fs::write(&file, serde_json::to_string(&consistency).unwrap()).unwrap();
    let (ok, out, err) = ward(&[
        "audit",
        "check-proof",
        file.to_str().unwrap(),
        "--log-key",
        key,
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("size 3 is a prefix of the signed tree of size 8"),
        "{out}"
    );
    let mut bad = consistency.clone();
    bad.second_sth = reader.consistency_proof(3, 7).unwrap().second_sth;
    std::fs::write(&file, serde_json::to_string(&bad).unwrap()).unwrap();
    let (ok, _, _) = ward(&[
        "audit",
        "check-proof",
        file.to_str().unwrap(),
        "--log-key",
        key,
    ]);
    assert!(!ok);

    // A bare signed head, from standard input.
    let head = serde_json::to_string(&reader.sth().unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["audit", "check-proof", "-", "--log-key", key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), head.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("signed tree head of size 8"));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn search_and_watch_print_what_the_log_holds() {
    let f = Fixture::new();
    let db = f.log("search.db");
    let db_arg = db.to_str().unwrap();
    let (ok, out, err) = ward(&[
        "audit",
        "search",
        "--db",
        db_arg,
        "--identity",
        "spiffe://corp.example/user/alice",
        "--since",
        "2027-01-15T00:00:00Z",
        "--until",
        "2027-01-16T00:00:00Z",
        "--json",
    ]);
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows.iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 2, 4, 6]
    );
    assert_eq!(rows[1]["requester"]["token"], "tok-2");

    let (ok, out, _) = ward(&[
        "audit",
        "search",
        "--db",
        db_arg,
        "--identity",
        "spiffe://corp.example/user/bob",
        "--csv",
    ]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("index,serial,identity,"), "{out}");
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[1].starts_with("1,4001,spiffe://corp.example/user/bob,"),
        "{out}"
    );

    let (ok, out, _) = ward(&[
        "audit",
        "search",
        "--db",
        db_arg,
        "--since",
        "2028-01-01T00:00:00Z",
        "--json",
    ]);
    assert!(ok && out.is_empty(), "{out}");

    let (ok, out, err) = ward(&[
        "audit",
        "watch",
        "--db",
        db_arg,
        "--since-index",
        "5",
        "--once",
    ]);
    assert!(ok, "{err}");
    let seen: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seen, vec![6, 7]);
    let (ok, out, _) = ward(&["audit", "watch", "--db", db_arg, "--once"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 8);
}
