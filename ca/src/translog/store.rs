//! The log's tables in the CA's SQLite file.
//!
//! The log lives next to the CA's certificates and tokens but in its own
//! tables (all prefixed `translog_`) and on its own connections:
//!
//! - `translog_entries(idx, entry, leaf_hash, kind, identity, serial,
//!   not_before, not_after, time_ms)`: one row per leaf, `entry` is the
//!   canonical encoding, the rest is derived from it for searching.
//! - `translog_nodes(level, idx, hash)`: every *perfect* subtree of height
//!   `level >= 1` (leaves are `translog_entries.leaf_hash`). A root or proof
//!   reads O(log n) of these instead of rebuilding the tree.
//! - `translog_sths(tree_size, timestamp_ms, root_hash, signature)`: one
//!   signed head per committed batch.
//! - `translog_meta(key, value)`: the log key's SPKI, so that the log is
//!   never continued with another key by mistake.
//!
//! A batch's entries, nodes and signed head are written in one transaction,
//! so the latest head's size is always the number of entries.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::entry::IndexFields;
use super::merkle::{Hash, NewNode, NodeSource};
use super::sth::{SignedTreeHead, TreeHead};
use crate::Error;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS translog_meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS translog_entries (
    idx        INTEGER PRIMARY KEY,
    entry      BLOB    NOT NULL,
    leaf_hash  BLOB    NOT NULL,
    kind       TEXT    NOT NULL,
    identity   TEXT,
    serial     TEXT    NOT NULL,
    not_before INTEGER,
    not_after  INTEGER,
    time_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS translog_entries_leaf_hash ON translog_entries(leaf_hash);
CREATE INDEX IF NOT EXISTS translog_entries_identity ON translog_entries(identity, not_after);
CREATE INDEX IF NOT EXISTS translog_entries_serial ON translog_entries(serial);
CREATE TABLE IF NOT EXISTS translog_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS translog_sths (
    tree_size    INTEGER PRIMARY KEY,
    timestamp_ms INTEGER NOT NULL,
    root_hash    BLOB    NOT NULL,
    signature    BLOB    NOT NULL
);
";

/// Open a connection on the CA's database file with the settings the log
/// needs: WAL (readers never block the writer), `synchronous=FULL` (a
/// committed batch survives power loss), and a busy timeout because the
/// CA's own store writes to the same file.
pub fn open(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path)
        .map_err(|e| Error::Store(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Open an existing log read-only (auditors), failing if it has no log.
pub fn open_read_only(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Store(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let has: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='translog_sths'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if has.is_none() {
        return Err(Error::Store(format!(
            "{} holds no transparency log (no translog_sths table)",
            path.display()
        )));
    }
    Ok(conn)
}

/// Create the tables if they are missing.
pub fn init(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// The log key SPKI recorded at creation, if any.
pub fn stored_key(conn: &Connection) -> Result<Option<Vec<u8>>, Error> {
    Ok(conn
        .query_row(
            "SELECT value FROM translog_meta WHERE key = 'log_spki'",
            [],
            |r| r.get(0),
        )
        .optional()?)
}

/// Record the log key SPKI.
pub fn set_key(conn: &Connection, spki: &[u8]) -> Result<(), Error> {
    conn.execute(
        "INSERT OR REPLACE INTO translog_meta(key, value) VALUES ('log_spki', ?1)",
        params![spki],
    )?;
    Ok(())
}

fn to_i64(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::Store(format!("{v} does not fit SQLite's integer")))
}

fn to_u64(v: i64) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| Error::Store(format!("negative value {v} in the log tables")))
}

fn to_hash(v: Vec<u8>, what: &str) -> Result<Hash, Error> {
    Hash::try_from(v.as_slice())
        .map_err(|_| Error::Store(format!("{what} is {} bytes, not 32", v.len())))
}

/// Insert one entry row.
pub fn insert_entry(
    conn: &Connection,
    index: u64,
    bytes: &[u8],
    leaf: &Hash,
    f: &IndexFields,
) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO translog_entries
             (idx, entry, leaf_hash, kind, identity, serial, not_before, not_after, time_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        to_i64(index)?,
        bytes,
        &leaf[..],
        f.kind,
        f.identity,
        f.serial,
        f.not_before,
        f.not_after,
        to_i64(f.time_ms)?,
    ])?;
    Ok(())
}

/// Insert the perfect subtrees of height >= 1 an append completed.
pub fn insert_nodes(conn: &Connection, nodes: &[NewNode]) -> Result<(), Error> {
    let mut stmt =
        conn.prepare_cached("INSERT INTO translog_nodes(level, idx, hash) VALUES (?1, ?2, ?3)")?;
    for n in nodes.iter().filter(|n| n.level > 0) {
        stmt.execute(params![n.level, to_i64(n.index)?, &n.hash[..]])?;
    }
    Ok(())
}

/// Insert one signed head.
pub fn insert_sth(conn: &Connection, sth: &SignedTreeHead) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO translog_sths(tree_size, timestamp_ms, root_hash, signature)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        to_i64(sth.head.tree_size)?,
        to_i64(sth.head.timestamp_ms)?,
        &sth.head.root_hash[..],
        sth.signature,
    ])?;
    Ok(())
}

fn row_sth(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, i64, Vec<u8>, Vec<u8>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn make_sth(row: (i64, i64, Vec<u8>, Vec<u8>)) -> Result<SignedTreeHead, Error> {
    Ok(SignedTreeHead {
        head: TreeHead {
            tree_size: to_u64(row.0)?,
            timestamp_ms: to_u64(row.1)?,
            root_hash: to_hash(row.2, "a signed head's root hash")?,
        },
        signature: row.3,
    })
}

/// The newest signed head (largest tree), if any.
pub fn latest_sth(conn: &Connection) -> Result<Option<SignedTreeHead>, Error> {
    conn.prepare_cached(
        "SELECT tree_size, timestamp_ms, root_hash, signature FROM translog_sths
         ORDER BY tree_size DESC LIMIT 1",
    )?
    .query_row([], row_sth)
    .optional()?
    .map(make_sth)
    .transpose()
}

/// The signed head for exactly `size` leaves, if one was issued.
pub fn sth_at(conn: &Connection, size: u64) -> Result<Option<SignedTreeHead>, Error> {
    conn.prepare_cached(
        "SELECT tree_size, timestamp_ms, root_hash, signature FROM translog_sths
         WHERE tree_size = ?1",
    )?
    .query_row(params![to_i64(size)?], row_sth)
    .optional()?
    .map(make_sth)
    .transpose()
}

/// Every signed head, smallest tree first.
pub fn all_sths(conn: &Connection) -> Result<Vec<SignedTreeHead>, Error> {
    let mut stmt = conn.prepare(
        "SELECT tree_size, timestamp_ms, root_hash, signature FROM translog_sths
         ORDER BY tree_size",
    )?;
    let rows = stmt.query_map([], row_sth)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(make_sth(r?)?);
    }
    Ok(out)
}

/// Number of leaves: the size of the newest signed head.
pub fn tree_size(conn: &Connection) -> Result<u64, Error> {
    Ok(latest_sth(conn)?.map_or(0, |s| s.head.tree_size))
}

/// One stored entry row, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Leaf index.
    pub index: u64,
    /// Canonical entry bytes.
    pub bytes: Vec<u8>,
    /// Leaf hash as stored (not recomputed: auditors compare it).
    pub leaf_hash: Vec<u8>,
}

/// Entries with `start <= idx <= end`, in index order.
pub fn entries(conn: &Connection, start: u64, end: u64) -> Result<Vec<StoredEntry>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT idx, entry, leaf_hash FROM translog_entries
         WHERE idx >= ?1 AND idx <= ?2 ORDER BY idx",
    )?;
    stored_entries(&mut stmt, params![to_i64(start)?, to_i64(end)?])
}

/// Index of the leaf with this hash, if present.
pub fn index_of_leaf(conn: &Connection, leaf: &Hash) -> Result<Option<u64>, Error> {
    conn.prepare_cached(
        "SELECT idx FROM translog_entries WHERE leaf_hash = ?1 ORDER BY idx LIMIT 1",
    )?
    .query_row(params![&leaf[..]], |r| r.get::<_, i64>(0))
    .optional()?
    .map(to_u64)
    .transpose()
}

/// Index of the issued entry of the certificate with this serial (normalised hex).
pub fn index_of_issued_serial(conn: &Connection, serial: &str) -> Result<Option<u64>, Error> {
    conn.prepare_cached(
        "SELECT idx FROM translog_entries WHERE serial = ?1 AND kind = 'issued'
         ORDER BY idx LIMIT 1",
    )?
    .query_row(params![serial], |r| r.get::<_, i64>(0))
    .optional()?
    .map(to_u64)
    .transpose()
}

/// Search filter; every field optional, all given ones must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Exact SPIFFE ID.
    pub identity: Option<String>,
    /// Normalised serial hex.
    pub serial: Option<String>,
    /// Certificates still valid at or after this time (seconds since the epoch).
    pub since: Option<i64>,
    /// Certificates already valid at or before this time (seconds since the epoch).
    pub until: Option<i64>,
    /// At most this many rows.
    pub limit: u32,
}

/// Issued entries matching `f`, by index; also every revocation of them.
pub fn search_issued(conn: &Connection, f: &Filter) -> Result<Vec<StoredEntry>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT idx, entry, leaf_hash FROM translog_entries
         WHERE kind = 'issued'
           AND (?1 IS NULL OR identity = ?1)
           AND (?2 IS NULL OR serial = ?2)
           AND (?3 IS NULL OR not_after >= ?3)
           AND (?4 IS NULL OR not_before <= ?4)
         ORDER BY idx LIMIT ?5",
    )?;
    stored_entries(
        &mut stmt,
        params![f.identity, f.serial, f.since, f.until, f.limit],
    )
}

/// Revocation entries of a serial, by index.
pub fn revocations_of(conn: &Connection, serial: &str) -> Result<Vec<StoredEntry>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT idx, entry, leaf_hash FROM translog_entries
         WHERE kind = 'revoked' AND serial = ?1 ORDER BY idx",
    )?;
    stored_entries(&mut stmt, params![serial])
}

/// Runs a `SELECT idx, entry, leaf_hash …` statement into entries.
fn stored_entries(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredEntry>, Error> {
    let rows = stmt.query_map(params, |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))?;
    let mut out = Vec::new();
    for r in rows {
        let (index, bytes, leaf_hash) = r?;
        out.push(StoredEntry {
            index: to_u64(index)?,
            bytes,
            leaf_hash,
        });
    }
    Ok(out)
}

/// Perfect subtrees read from the tables.
pub struct DbNodes<'c>(pub &'c Connection);

impl NodeSource for DbNodes<'_> {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Error> {
        let found: Option<Vec<u8>> = if level == 0 {
            self.0
                .prepare_cached("SELECT leaf_hash FROM translog_entries WHERE idx = ?1")?
                .query_row(params![to_i64(index)?], |r| r.get(0))
                .optional()?
        } else {
            self.0
                .prepare_cached("SELECT hash FROM translog_nodes WHERE level = ?1 AND idx = ?2")?
                .query_row(params![level, to_i64(index)?], |r| r.get(0))
                .optional()?
        };
        let found = found.ok_or_else(|| {
            Error::Store(format!(
                "the log store lacks the subtree at level {level} index {index}"
            ))
        })?;
        to_hash(found, "a stored subtree hash")
    }
}
