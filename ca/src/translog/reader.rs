//! The read side: the query functions behind the log API and the auditor's
//! commands, on a connection of their own (WAL lets them run while the
//! writer commits). Each call reads inside one transaction, so a proof and
//! the head it is for always come from the same snapshot.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

use super::api::{
    CertJson, CertQuery, CertsJson, ConsistencyProofJson, EntriesJson, EntryJson,
    InclusionProofJson, MAX_PAGE, parse_rfc3339, rfc3339_ms, rfc3339_s,
};
use super::entry::{Entry, normalize_serial};
use super::merkle::{self, Hash};
use super::sth::{LogPublicKey, SignedTreeHead, SthJson, encode_hash};
use super::store::{self, DbNodes, Filter, StoredEntry};
use crate::Error;

/// Most certificates one `certs` call returns.
pub const MAX_CERTS: u32 = 1000;

/// Read access to a log.
pub struct LogReader {
    conn: Mutex<Connection>,
    public_key: Option<LogPublicKey>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader").finish_non_exhaustive()
    }
}

impl LogReader {
    /// Open an existing log read-only (for auditors and `ward audit`).
    pub fn open(path: &Path) -> Result<Self, Error> {
        let conn = store::open_read_only(path)?;
        let public_key = store::stored_key(&conn)?
            .map(|spki| LogPublicKey::from_spki_der(&spki))
            .transpose()?;
        Ok(Self {
            conn: Mutex::new(conn),
            public_key,
        })
    }

    pub(crate) fn open_rw(path: &Path, public_key: Option<LogPublicKey>) -> Result<Self, Error> {
        Ok(Self {
            conn: Mutex::new(store::open(path)?),
            public_key,
        })
    }

    /// The log key recorded in the store. Auditors must not trust it: they
    /// verify with the key from the trust bundle instead.
    pub fn stored_public_key(&self) -> Option<&LogPublicKey> {
        self.public_key.as_ref()
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| Error::Store("log reader connection poisoned".into()))?;
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.finish()?;
        Ok(out)
    }

    /// `GET /v1/log/sth`: the newest signed tree head.
    pub fn sth(&self) -> Result<SthJson, Error> {
        Ok((&self.latest_sth()?).into())
    }

    /// The newest signed head, parsed.
    pub fn latest_sth(&self) -> Result<SignedTreeHead, Error> {
        self.with(|c| {
            store::latest_sth(c)?.ok_or_else(|| Error::NotFound {
                what: "signed tree head".into(),
            })
        })
    }

    /// `GET /v1/log/entries?start=&end=`: entries `start..=end`, at most
    /// [`MAX_PAGE`] of them (fewer when `end` is past the tree; clients page).
    pub fn entries(&self, start: u64, end: u64) -> Result<EntriesJson, Error> {
        if end < start {
            return Err(Error::bad(
                "bad_range",
                format!("end {end} is before start {start}"),
            ));
        }
        let end = end.min(start.saturating_add(MAX_PAGE - 1));
        self.with(|c| {
            let size = store::tree_size(c)?;
            if start >= size {
                return Err(Error::bad(
                    "bad_range",
                    format!("start {start} is not below the tree size {size}"),
                ));
            }
            let rows = store::entries(c, start, end.min(size - 1))?;
            let entries = rows
                .iter()
                .map(|r| EntryJson::from_bytes(r.index, &r.bytes))
                .collect::<Result<_, _>>()?;
            Ok(EntriesJson { entries })
        })
    }

    /// `GET /v1/log/proof/inclusion?leaf_hash=&tree_size=`.
    pub fn inclusion_proof(
        &self,
        leaf_hash: &Hash,
        tree_size: u64,
    ) -> Result<InclusionProofJson, Error> {
        self.with(|c| {
            let index = store::index_of_leaf(c, leaf_hash)?.ok_or_else(|| Error::NotFound {
                what: format!("log leaf {}", encode_hash(leaf_hash)),
            })?;
            inclusion_at(c, index, tree_size)
        })
    }

    /// Inclusion proof of the `issued` entry of a serial, in the newest head.
    pub fn inclusion_proof_by_serial(&self, serial: &str) -> Result<InclusionProofJson, Error> {
        let serial = normalize_serial(serial)?;
        self.with(|c| {
            let index =
                store::index_of_issued_serial(c, &serial)?.ok_or_else(|| Error::NotFound {
                    what: format!("certificate {serial} in the log"),
                })?;
            inclusion_at(c, index, store::tree_size(c)?)
        })
    }

    /// `GET /v1/log/proof/consistency?first=&second=`.
    pub fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProofJson, Error> {
        self.with(|c| {
            let size = store::tree_size(c)?;
            if second > size {
                return Err(Error::bad(
                    "bad_range",
                    format!("second {second} is past the tree size {size}"),
                ));
            }
            if first == 0 || first > second {
                return Err(Error::bad(
                    "bad_range",
                    format!("need 0 < first <= second, got first {first}, second {second}"),
                ));
            }
            let path = merkle::consistency_proof(&DbNodes(c), first, second)?;
            Ok(ConsistencyProofJson {
                first,
                second,
                consistency_path: path.iter().map(encode_hash).collect(),
                first_sth: store::sth_at(c, first)?.as_ref().map(Into::into),
                second_sth: store::sth_at(c, second)?.as_ref().map(Into::into),
            })
        })
    }

    /// `GET /v1/certs?identity=&serial=&since=&until=`: issued certificates
    /// for an identity and/or serial that were valid at some point in
    /// `[since, until]`, with their revocations, at most [`MAX_CERTS`].
    pub fn certs(&self, q: &CertQuery) -> Result<CertsJson, Error> {
        let filter = Filter {
            identity: q.identity.clone(),
            serial: q.serial.as_deref().map(normalize_serial).transpose()?,
            since: q.since.as_deref().map(parse_rfc3339).transpose()?,
            until: q.until.as_deref().map(parse_rfc3339).transpose()?,
            limit: MAX_CERTS,
        };
        self.with(|c| {
            let rows = store::search_issued(c, &filter)?;
            let mut certs = Vec::with_capacity(rows.len());
            for row in rows {
                certs.push(cert_json(c, &row)?);
            }
            Ok(CertsJson { certs })
        })
    }

    /// Entries with index `> after`, at most `limit` (for `watch`).
    pub fn entries_after(&self, after: Option<u64>, limit: u64) -> Result<Vec<EntryJson>, Error> {
        self.with(|c| {
            let size = store::tree_size(c)?;
            let start = after.map_or(0, |a| a.saturating_add(1));
            if start >= size || limit == 0 {
                return Ok(Vec::new());
            }
            let end = (size - 1).min(start.saturating_add(limit - 1));
            store::entries(c, start, end)?
                .iter()
                .map(|r| EntryJson::from_bytes(r.index, &r.bytes))
                .collect()
        })
    }

    /// Every signed head, then every entry row as stored, from one read
    /// transaction (for the audit while the CA keeps appending). Rows are
    /// streamed, not collected.
    pub fn read_all(
        &self,
        visit: &mut dyn FnMut(super::verify::LogItem) -> Result<(), Error>,
    ) -> Result<(), Error> {
        use super::verify::LogItem;
        self.with(|c| {
            visit(LogItem::Heads(store::all_sths(c)?))?;
            let mut stmt =
                c.prepare("SELECT idx, entry, leaf_hash FROM translog_entries ORDER BY idx")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let index: i64 = r.get(0)?;
                visit(LogItem::Entry(StoredEntry {
                    index: u64::try_from(index).map_err(|_| {
                        Error::Store(format!("negative log index {index} in the store"))
                    })?,
                    bytes: r.get(1)?,
                    leaf_hash: r.get(2)?,
                }))?;
            }
            Ok(())
        })
    }

    /// Every entry row exactly as stored (for `verify`, which must see gaps
    /// and bad rows rather than have them filtered out).
    pub fn raw_entries(&self) -> Result<Vec<StoredEntry>, Error> {
        self.with(|c| store::entries(c, 0, i64::MAX as u64))
    }

    /// Every signed head, smallest first.
    pub fn all_sths(&self) -> Result<Vec<SignedTreeHead>, Error> {
        self.with(store::all_sths)
    }
}

fn inclusion_at(c: &Connection, index: u64, tree_size: u64) -> Result<InclusionProofJson, Error> {
    let size = store::tree_size(c)?;
    if tree_size > size {
        return Err(Error::bad(
            "bad_range",
            format!("tree_size {tree_size} is past the tree size {size}"),
        ));
    }
    if index >= tree_size {
        return Err(Error::bad(
            "bad_range",
            format!("leaf {index} was appended after the tree of size {tree_size}"),
        ));
    }
    let src = DbNodes(c);
    let path = merkle::inclusion_proof(&src, index, tree_size)?;
    let rows = store::entries(c, index, index)?;
    let row = rows.first().ok_or_else(|| Error::NotFound {
        what: format!("log entry {index}"),
    })?;
    Ok(InclusionProofJson {
        leaf_index: index,
        tree_size,
        leaf_hash: encode_hash(&merkle::leaf_hash(&row.bytes)),
        audit_path: path.iter().map(encode_hash).collect(),
        sth: store::sth_at(c, tree_size)?.as_ref().map(Into::into),
        entry: Some(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &row.bytes,
        )),
    })
}

fn cert_json(c: &Connection, row: &StoredEntry) -> Result<CertJson, Error> {
    let Entry::Issued(issued) = Entry::decode(&row.bytes)? else {
        return Err(Error::Store(format!(
            "log entry {} is indexed as issued but is not",
            row.index
        )));
    };
    let fields = Entry::Issued(issued.clone()).index_fields()?;
    let mut out = CertJson {
        index: row.index,
        serial: fields.serial.clone(),
        identity: fields.identity,
        not_before: fields.not_before.map(rfc3339_s),
        not_after: fields.not_after.map(rfc3339_s),
        issued_at: rfc3339_ms(issued.time_ms),
        requester: Some(issued.requester),
        profile: Some(issued.profile),
        revoked_at: None,
        revocation_reason: None,
        revoked_by: None,
        leaf_hash: encode_hash(&merkle::leaf_hash(&row.bytes)),
        certificate: base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &issued.certificate,
        ),
    };
    if let Some(rev) = store::revocations_of(c, &fields.serial)?.first()
        && let Entry::Revoked(r) = Entry::decode(&rev.bytes)?
    {
        out.revoked_at = Some(rfc3339_ms(r.time_ms));
        out.revocation_reason = Some(r.reason);
        out.revoked_by = Some(r.revoked_by);
    }
    Ok(out)
}
