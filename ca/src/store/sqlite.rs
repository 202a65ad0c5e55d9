//! The SQLite store: WAL (readers never block the writer), synchronous=FULL
//! (a certificate we returned survives power loss), `BEGIN IMMEDIATE` for
//! writes so two CA processes never deadlock upgrading read locks, and
//! group commit for issuances (one fsync for every issuance that arrived
//! while the previous group was committing; each in its own savepoint).
//!
//! Tables are prefixed `ca_`; the transparency log keeps its own tables in
//! the same file.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Authority, CertFilter, CertRecord, Counts, Store, TokenRecord};
use crate::Error;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ca_authority (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    root_der BLOB NOT NULL,
    issuing_der BLOB NOT NULL,
    log_spki BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    crl_number INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ca_certificates (
    serial TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    profile TEXT NOT NULL,
    dns_names TEXT NOT NULL,
    email TEXT,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    der BLOB NOT NULL,
    requester TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    reason TEXT,
    revoked_by TEXT
);
CREATE INDEX IF NOT EXISTS ca_certificates_identity ON ca_certificates (identity, created_at);
CREATE INDEX IF NOT EXISTS ca_certificates_created ON ca_certificates (created_at);
CREATE TABLE IF NOT EXISTS ca_tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 BLOB NOT NULL,
    identity TEXT NOT NULL,
    profile TEXT NOT NULL,
    dns_names TEXT NOT NULL,
    email TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    revoked_at INTEGER
);
";

/// SQLite-backed [`Store`]. One connection behind a mutex per store; open
/// several stores on one file for parallelism (each is a connection).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Issuances go to one writer thread that commits them in groups: with
    /// synchronous=FULL every commit is an fsync (milliseconds), which
    /// would otherwise cap issuance far below the HSM's signing rate.
    issues: std::sync::mpsc::Sender<PendingIssue>,
}

/// One issuance waiting for the group commit.
struct PendingIssue {
    cert: CertRecord,
    claim: Option<(String, i64)>,
    reply: std::sync::mpsc::SyncSender<Result<(), Error>>,
}

/// Most issuances committed in one transaction.
const MAX_GROUP: usize = 256;

/// Claims the token (if any) and inserts the certificate. Run through
/// [`write_issue_alone`], by the store's group commit and by the
/// transparency log's writer, which runs it in the same transaction as the
/// log append so that an issuance costs one fsync, not two.
fn write_issue(
    conn: &Connection,
    cert: &CertRecord,
    claim: Option<(&str, i64)>,
) -> Result<(), Error> {
    if let Some((id, now)) = claim {
        // Cached statements: this runs once per issuance, in the group.
        let n = conn
            .prepare_cached(
                "UPDATE ca_tokens SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?2",
            )?
            .execute(params![id, now])?;
        if n != 1 {
            return Err(Error::conflict(
                "token_used",
                format!("enrolment token {id} was already used (tokens are single-use)"),
            ));
        }
    }
    conn.prepare_cached(&format!("INSERT INTO ca_certificates ({CERT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"))?
        .execute(params![
            cert.serial,
            cert.identity,
            cert.profile,
            names_to_text(&cert.dns_names),
            cert.email,
            cert.not_before,
            cert.not_after,
            cert.der,
            cert.requester,
            cert.created_at,
            cert.revoked_at,
            cert.reason,
            cert.revoked_by
        ])?;
    Ok(())
}

/// [`write_issue`] in its own savepoint, so that a refused issuance (a
/// token already used) undoes only its own rows: `Ok(Err(_))`. `Err(_)`
/// is the savepoint itself failing, which leaves the transaction unusable.
pub(crate) fn write_issue_alone(
    conn: &Connection,
    cert: &CertRecord,
    claim: Option<(&str, i64)>,
) -> Result<Result<(), Error>, Error> {
    conn.execute_batch("SAVEPOINT issue")?;
    match write_issue(conn, cert, claim) {
        Ok(()) => {
            conn.execute_batch("RELEASE issue")?;
            Ok(Ok(()))
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO issue; RELEASE issue")?;
            Ok(Err(e))
        }
    }
}

/// Commits one group: each issuance in its own savepoint (a reused token
/// undoes only its own rows), one COMMIT (one fsync) for all. Returns the
/// per-issuance results; if the COMMIT fails, every one of them failed.
fn commit_group(conn: &Connection, group: &[PendingIssue]) -> Vec<Result<(), Error>> {
    let fail_all = |e: &rusqlite::Error| {
        group
            .iter()
            .map(|_| Err(Error::Store(e.to_string())))
            .collect()
    };
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return fail_all(&e);
    }
    let mut results = Vec::with_capacity(group.len());
    for p in group {
        let claim = p.claim.as_ref().map(|(id, now)| (id.as_str(), *now));
        results.push(write_issue_alone(conn, &p.cert, claim).and_then(|r| r));
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return fail_all(&e);
    }
    results
}

fn run_committer(conn: Connection, rx: std::sync::mpsc::Receiver<PendingIssue>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let results = commit_group(&conn, &group);
        for (p, r) in group.into_iter().zip(results) {
            let _ = p.reply.send(r);
        }
    }
}

const CERT_COLS: &str = "serial, identity, profile, dns_names, email, not_before, not_after, der, requester, created_at, revoked_at, reason, revoked_by";
const TOKEN_COLS: &str = "id, secret_sha256, identity, profile, dns_names, email, created_at, expires_at, used_at, revoked_at";

fn names_to_text(names: &[String]) -> String {
    serde_json::to_string(names).unwrap_or_else(|_| "[]".into())
}

fn text_to_names(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn cert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CertRecord> {
    Ok(CertRecord {
        serial: r.get(0)?,
        identity: r.get(1)?,
        profile: r.get(2)?,
        dns_names: text_to_names(&r.get::<_, String>(3)?),
        email: r.get(4)?,
        not_before: r.get(5)?,
        not_after: r.get(6)?,
        der: r.get(7)?,
        requester: r.get(8)?,
        created_at: r.get(9)?,
        revoked_at: r.get(10)?,
        reason: r.get(11)?,
        revoked_by: r.get(12)?,
    })
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        secret_sha256: r.get(1)?,
        identity: r.get(2)?,
        profile: r.get(3)?,
        dns_names: text_to_names(&r.get::<_, String>(4)?),
        email: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        used_at: r.get(8)?,
        revoked_at: r.get(9)?,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Self::connect(path)?;
        conn.execute_batch(SCHEMA)?;
        let writer = Self::connect(path)?;
        let (issues, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("ward-ca-store".into())
            .spawn(move || run_committer(writer, rx))
            .map_err(|e| Error::Store(format!("starting the store writer: {e}")))?;
        Ok(Self {
            conn: Mutex::new(conn),
            issues,
        })
    }

    fn connect(path: &Path) -> Result<Connection, Error> {
        let conn =
            Connection::open(path).map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(conn)
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, Error> {
        self.conn
            .lock()
            .map_err(|_| Error::Store("connection mutex poisoned".into()))
    }
}

impl Store for SqliteStore {
    fn init_authority(&self, a: &Authority) -> Result<(), Error> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM ca_authority WHERE id = 1", [], |_| Ok(true))
            .optional()?
            .unwrap_or(false);
        if exists {
            return Err(Error::conflict(
                "ca_exists",
                "this database already holds a CA; refusing to initialise another",
            ));
        }
        tx.execute(
            "INSERT INTO ca_authority (id, root_der, issuing_der, log_spki, created_at) VALUES (1, ?1, ?2, ?3, ?4)",
            params![a.root_der, a.issuing_der, a.log_spki, a.created_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn authority(&self) -> Result<Option<Authority>, Error> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT root_der, issuing_der, log_spki, created_at FROM ca_authority WHERE id = 1",
                [],
                |r| {
                    Ok(Authority {
                        root_der: r.get(0)?,
                        issuing_der: r.get(1)?,
                        log_spki: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    fn next_crl_number(&self) -> Result<u64, Error> {
        let n: i64 = self.conn()?.query_row(
            "UPDATE ca_authority SET crl_number = crl_number + 1 WHERE id = 1 RETURNING crl_number",
            [],
            |r| r.get(0),
        )?;
        u64::try_from(n).map_err(|_| Error::Store("negative CRL number".into()))
    }

    fn insert_token(&self, t: &TokenRecord) -> Result<(), Error> {
        self.conn()?.execute(
            &format!("INSERT INTO ca_tokens ({TOKEN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                t.id,
                t.secret_sha256,
                t.identity,
                t.profile,
                names_to_text(&t.dns_names),
                t.email,
                t.created_at,
                t.expires_at,
                t.used_at,
                t.revoked_at
            ],
        )?;
        Ok(())
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, Error> {
        Ok(self
            .conn()?
            .query_row(
                &format!("SELECT {TOKEN_COLS} FROM ca_tokens WHERE id = ?1"),
                [id],
                token_row,
            )
            .optional()?)
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, Error> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {TOKEN_COLS} FROM ca_tokens ORDER BY created_at DESC, id"
        ))?;
        let rows = stmt.query_map([], token_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revoke_token(&self, id: &str, now: i64) -> Result<(), Error> {
        let conn = self.conn()?;
        let n = conn.execute(
            "UPDATE ca_tokens SET revoked_at = ?2 WHERE id = ?1 AND used_at IS NULL AND revoked_at IS NULL",
            params![id, now],
        )?;
        if n == 1 {
            return Ok(());
        }
        let exists: Option<i64> = conn
            .query_row("SELECT 1 FROM ca_tokens WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        match exists {
            None => Err(Error::NotFound {
                what: format!("token {id}"),
            }),
            Some(_) => Err(Error::conflict(
                "token_not_revocable",
                format!("token {id} was already used or revoked"),
            )),
        }
    }

    fn record_issue(&self, cert: &CertRecord, claim: Option<(&str, i64)>) -> Result<(), Error> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.issues
            .send(PendingIssue {
                cert: cert.clone(),
                claim: claim.map(|(id, now)| (id.to_string(), now)),
                reply,
            })
            .map_err(|_| Error::Store("the store writer has stopped".into()))?;
        answer
            .recv()
            .map_err(|_| Error::Store("the store writer has stopped".into()))?
    }

    fn cert(&self, serial: &str) -> Result<Option<CertRecord>, Error> {
        Ok(self
            .conn()?
            .query_row(
                &format!("SELECT {CERT_COLS} FROM ca_certificates WHERE serial = ?1"),
                [serial],
                cert_row,
            )
            .optional()?)
    }

    fn list_certs(&self, f: &CertFilter) -> Result<Vec<CertRecord>, Error> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {CERT_COLS} FROM ca_certificates
             WHERE (?1 IS NULL OR identity = ?1) AND (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3)
             ORDER BY created_at DESC, serial"
        ))?;
        let rows = stmt.query_map(params![f.identity, f.since, f.until], cert_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revoke_cert(
        &self,
        serial: &str,
        at: i64,
        reason: &str,
        by: &str,
    ) -> Result<CertRecord, Error> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = tx
            .query_row(
                &format!("SELECT {CERT_COLS} FROM ca_certificates WHERE serial = ?1"),
                [serial],
                cert_row,
            )
            .optional()?
            .ok_or_else(|| Error::NotFound {
                what: format!("certificate {serial}"),
            })?;
        if current.revoked_at.is_some() {
            return Err(Error::conflict(
                "already_revoked",
                format!("certificate {serial} is already revoked"),
            ));
        }
        tx.execute(
            "UPDATE ca_certificates SET revoked_at = ?2, reason = ?3, revoked_by = ?4 WHERE serial = ?1",
            params![serial, at, reason, by],
        )?;
        tx.commit()?;
        Ok(CertRecord {
            revoked_at: Some(at),
            reason: Some(reason.to_string()),
            revoked_by: Some(by.to_string()),
            ..current
        })
    }

    fn revoked_unexpired(&self, now: i64) -> Result<Vec<CertRecord>, Error> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {CERT_COLS} FROM ca_certificates WHERE revoked_at IS NOT NULL AND not_after > ?1 ORDER BY revoked_at"
        ))?;
        let rows = stmt.query_map([now], cert_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn counts(&self, now: i64) -> Result<Counts, Error> {
        let conn = self.conn()?;
        let one = |sql: &str| -> Result<u64, Error> {
            let n: i64 = conn.query_row(sql, [now], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(Counts {
            issued: one("SELECT count(*) FROM ca_certificates WHERE ?1 = ?1")?,
            active: one(
                "SELECT count(*) FROM ca_certificates WHERE revoked_at IS NULL AND not_after > ?1",
            )?,
            revoked: one(
                "SELECT count(*) FROM ca_certificates WHERE revoked_at IS NOT NULL AND ?1 = ?1",
            )?,
            usable_tokens: one(
                "SELECT count(*) FROM ca_tokens WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > ?1",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn token(id: &str, expires_at: i64) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            secret_sha256: vec![1; 32],
            identity: "spiffe://corp.example/a".into(),
            profile: "workload".into(),
            dns_names: vec!["a.example".into()],
            email: None,
            created_at: 0,
            expires_at,
            used_at: None,
            revoked_at: None,
        }
    }

    use crate::store::sample_cert as cert;

    #[test]
    fn pragmas_are_wal_and_full() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("ca.db")).unwrap();
        let c = s.conn().unwrap();
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "FULL");
    }

    #[test]
    fn racing_claims_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.db");
        SqliteStore::open(&path)
            .unwrap()
            .insert_token(&token("t", 1000))
            .unwrap();
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    // One connection per thread: real concurrency in SQLite.
                    let s = SqliteStore::open(&path).unwrap();
                    barrier.wait();
                    s.record_issue(&cert(&format!("{i:02x}")), Some(("t", 10)))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            assert_eq!(r.as_ref().unwrap_err().code(), "token_used");
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(
            s.list_certs(&CertFilter::default()).unwrap().len(),
            1,
            "losers wrote nothing"
        );
        assert_eq!(s.token("t").unwrap().unwrap().used_at, Some(10));
    }

    #[test]
    fn group_commit_keeps_each_issuance_separate() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(SqliteStore::open(&dir.path().join("ca.db")).unwrap());
        for t in 0..20 {
            s.insert_token(&token(&format!("t{t}"), 1000)).unwrap();
        }
        let barrier = Arc::new(Barrier::new(40));
        let handles: Vec<_> = (0..40)
            .map(|i| {
                let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    let id = format!("t{}", i % 20);
                    s.record_issue(&cert(&format!("{i:02x}")), Some((&id, 10)))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 20);
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| e.code() == "token_used")
        );
        assert_eq!(s.list_certs(&CertFilter::default()).unwrap().len(), 20);
    }

    #[test]
    fn expired_or_revoked_tokens_cannot_be_claimed_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("ca.db")).unwrap();
        s.insert_token(&token("old", 5)).unwrap();
        assert!(s.record_issue(&cert("01"), Some(("old", 10))).is_err());
        s.insert_token(&token("r", 1000)).unwrap();
        s.revoke_token("r", 3).unwrap();
        assert!(s.record_issue(&cert("02"), Some(("r", 10))).is_err());
        assert!(s.list_certs(&CertFilter::default()).unwrap().is_empty());
        assert_eq!(
            s.revoke_token("r", 4).unwrap_err().code(),
            "token_not_revocable"
        );
        assert_eq!(s.revoke_token("nope", 4).unwrap_err().status(), 404);
    }

    #[test]
    fn revocation_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("ca.db")).unwrap();
        s.record_issue(&cert("aa"), None).unwrap();
        s.record_issue(
            &CertRecord {
                created_at: 50,
                identity: "spiffe://corp.example/b".into(),
                ..cert("bb")
            },
            None,
        )
        .unwrap();
        let r = s.revoke_cert("aa", 7, "keyCompromise", "cli").unwrap();
        assert_eq!(r.revoked_at, Some(7));
        assert_eq!(
            s.revoke_cert("aa", 8, "x", "cli").unwrap_err().code(),
            "already_revoked"
        );
        assert_eq!(
            s.revoke_cert("cc", 8, "x", "cli").unwrap_err().status(),
            404
        );
        assert_eq!(s.revoked_unexpired(50).unwrap().len(), 1);
        assert_eq!(s.revoked_unexpired(100).unwrap().len(), 0);
        let f = CertFilter {
            identity: Some("spiffe://corp.example/b".into()),
            ..Default::default()
        };
        assert_eq!(s.list_certs(&f).unwrap().len(), 1);
        let f = CertFilter {
            since: Some(10),
            ..Default::default()
        };
        assert_eq!(s.list_certs(&f).unwrap()[0].serial, "bb");
        let c = s.counts(60).unwrap();
        assert_eq!((c.issued, c.active, c.revoked), (2, 1, 1));
    }
}
