//! The log handle: appends with group commit, and receipts.
//!
//! "Log before issue": the CA appends the certificate and hands it out only
//! once [`Log::append`] (or [`Log::append_blocking`]) returned its
//! [`Receipt`], i.e. once the entry is committed with `synchronous=FULL`.
//!
//! One fsync per certificate would cap issuance at the disk's fsync rate, so
//! a single writer thread owns the write connection: callers send their
//! entry over a channel and wait; the writer takes everything queued (up to
//! `max_batch`), writes the entries, their subtrees and one signed tree head
//! in one transaction, then answers every caller with its leaf index,
//! inclusion proof and that signed head. While one batch is being synced the
//! next one queues up, so the batch size grows with the load by itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::api::InclusionProofJson;
use super::entry::{Entry, IndexFields};
use super::merkle::{self, Frontier, Hash, NewNode, NodeSource};
use super::reader::LogReader;
use super::sth::{LogPublicKey, SignedTreeHead, TreeHead, encode_hash};
use super::store::{self, DbNodes};
use crate::Error;
use crate::store::CertRecord;

/// The key that signs tree heads: a file key or a PKCS#11 key.
pub type LogSigner = Arc<dyn rcgen::SigningKey + Send + Sync>;

/// Tuning; the defaults are safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Most entries committed in one transaction.
    pub max_batch: usize,
    /// Also sign a head for every intermediate size of a batch, not only
    /// its last. Costs one log-key signature per entry (cheap for a file
    /// key or a local HSM, not for a remote one), and buys an exact answer
    /// from `ward audit verify` even when an attacker recomputed the stored
    /// leaf hashes: with one head per batch, damage inside a batch is only
    /// pinned to the batch.
    pub sign_every_size: bool,
    /// Longest the writer holds a group open for callers announced with
    /// [`Log::arriving`] (still signing their certificate). Only spent
    /// while such callers exist, so a lone caller never waits; under load
    /// it turns "half the callers per fsync" into "all of them".
    pub max_wait: std::time::Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            sign_every_size: false,
            max_wait: std::time::Duration::from_millis(1),
        }
    }
}

/// Proof that an entry is in the log: what the CA returns with a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Position of the entry.
    pub leaf_index: u64,
    /// `SHA-256(0x00 || entry)`.
    pub leaf_hash: Hash,
    /// Audit path from the leaf to `sth`'s root.
    pub audit_path: Vec<Hash>,
    /// The signed head of the batch that committed the entry.
    pub sth: SignedTreeHead,
    /// The entry's canonical bytes.
    pub entry: Vec<u8>,
}

impl Receipt {
    /// Check the proof against the head (not the head's signature).
    pub fn verify_root(&self) -> Result<(), Error> {
        merkle::verify_inclusion(
            self.leaf_index,
            self.sth.head.tree_size,
            &self.leaf_hash,
            &self.audit_path,
            &self.sth.head.root_hash,
        )
    }

    /// The API's JSON shape (an inclusion proof with its head and entry).
    pub fn to_json(&self) -> InclusionProofJson {
        InclusionProofJson {
            leaf_index: self.leaf_index,
            tree_size: self.sth.head.tree_size,
            leaf_hash: encode_hash(&self.leaf_hash),
            audit_path: self.audit_path.iter().map(encode_hash).collect(),
            sth: Some((&self.sth).into()),
            entry: Some(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &self.entry,
            )),
        }
    }
}

/// Counters for tests, metrics and the benchmark.
#[derive(Debug, Default)]
pub struct LogStats {
    batches: AtomicU64,
    entries: AtomicU64,
}

impl LogStats {
    /// Transactions committed (one fsync each).
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Entries committed.
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }
}

enum Reply {
    Blocking(mpsc::SyncSender<Result<Receipt, Error>>),
    Async(tokio::sync::oneshot::Sender<Result<Receipt, Error>>),
}

impl Reply {
    fn send(self, r: Result<Receipt, Error>) {
        // The caller may have given up waiting (task cancelled); the entry
        // is logged either way, which is the safe direction.
        match self {
            Self::Blocking(tx) => {
                let _ = tx.send(r);
            }
            Self::Async(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

struct Job {
    bytes: Vec<u8>,
    leaf: Hash,
    fields: IndexFields,
    /// The CA store's rows for this issuance, written in the log's
    /// transaction (see [`Log::append_issue_blocking`]).
    store: Option<StoreWrite>,
    reply: Reply,
    /// The caller's announcement, withdrawn when the writer takes the job
    /// (see [`Grouping::collect`]): withdrawn at the send instead, the
    /// writer could see the count before the caller dropped it and wait a
    /// slice for a caller whose job it already holds.
    arrival: Option<Arrival>,
}

/// An issuance for the CA store (`ca_certificates`, and the token claim),
/// committed by the log writer together with the log entry.
struct StoreWrite {
    cert: CertRecord,
    claim: Option<(String, i64)>,
}

/// A caller announced to the writer (see [`Log::arriving`]); dropping it
/// withdraws the announcement.
#[derive(Debug)]
pub struct Arrival(Arc<AtomicUsize>);

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The transparency log, open for appending. Share it as `Arc<Log>`.
pub struct Log {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    /// Callers that will append soon (between [`Log::arriving`] and their
    /// submission): the writer waits for them, up to `max_wait`.
    arriving: Arc<AtomicUsize>,
    writer: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<LogStats>,
    reader: LogReader,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("stats", &self.stats).finish()
    }
}

impl Log {
    /// Open (creating if needed) the log in the CA's database file, signing
    /// with `key`. Refuses a key other than the one the log was created
    /// with. A new log gets a signed head for the empty tree at once.
    pub fn open(path: &Path, key: LogSigner, options: LogOptions) -> Result<Self, Error> {
        let public = LogPublicKey::from_signing_key(key.as_ref())?;
        let mut conn = store::open(path)?;
        store::init(&conn)?;
        match store::stored_key(&conn)? {
            Some(spki) if spki != public.spki_der() => {
                return Err(Error::LogKey(format!(
                    "{} was created with another log key; open it with that key \
                     (a log must keep one key for its whole life)",
                    path.display()
                )));
            }
            Some(_) => {}
            None => store::set_key(&conn, public.spki_der())?,
        }
        let size = store::tree_size(&conn)?;
        let frontier = Frontier::load(&DbNodes(&conn), size)?;
        if store::latest_sth(&conn)?.is_none() {
            let sth = TreeHead {
                tree_size: 0,
                timestamp_ms: now_ms(),
                root_hash: frontier.root(),
            }
            .sign(key.as_ref())?;
            store::insert_sth(&conn, &sth)?;
        }
        let last_ts = store::latest_sth(&conn)?.map_or(0, |s| s.head.timestamp_ms);
        // Anything past the newest signed head cannot be there (batches are
        // atomic); refuse to extend a store someone has added rows to.
        let extra: i64 = conn.query_row(
            "SELECT COUNT(*) FROM translog_entries WHERE idx >= ?1",
            [i64::try_from(size).unwrap_or(i64::MAX)],
            |r| r.get(0),
        )?;
        if extra > 0 {
            return Err(Error::LogVerify(format!(
                "{} has {extra} log entries past its newest signed head (size {size}); \
                 run `ward audit verify` before appending",
                path.display()
            )));
        }
        // The writer's connection is moved into its thread.
        let reader = LogReader::open_rw(path, Some(public))?;
        let stats = Arc::new(LogStats::default());
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_stats = Arc::clone(&stats);
        let max_batch = options.max_batch.max(1);
        let sign_every_size = options.sign_every_size;
        let arriving = Arc::new(AtomicUsize::new(0));
        let grouping = Grouping {
            max_batch,
            max_wait: options.max_wait,
            arriving: Arc::clone(&arriving),
        };
        let handle = std::thread::Builder::new()
            .name("ward-translog-writer".into())
            .spawn(move || {
                let mut w = Writer {
                    conn: &mut conn,
                    key,
                    frontier,
                    last_ts,
                    stats: writer_stats,
                    sign_every_size,
                };
                w.run(&rx, &grouping);
            })
            .map_err(|e| Error::Store(format!("cannot start the log writer thread: {e}")))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            arriving,
            writer: Mutex::new(Some(handle)),
            stats,
            reader,
        })
    }

    /// Read side: the query functions the API serves.
    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// Batch and entry counters.
    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    fn submit(&self, entry: &Entry, reply: Reply) -> Result<(), Error> {
        self.submit_with(entry, None, reply, None)
    }

    fn submit_with(
        &self,
        entry: &Entry,
        store: Option<StoreWrite>,
        reply: Reply,
        arrival: Option<Arrival>,
    ) -> Result<(), Error> {
        let bytes = entry.encode();
        let fields = entry.index_fields()?;
        let leaf = merkle::leaf_hash(&bytes);
        let guard = self.tx.lock().map_err(|_| Error::LogClosed)?;
        let tx = guard.as_ref().ok_or(Error::LogClosed)?;
        tx.send(Job {
            bytes,
            leaf,
            fields,
            store,
            reply,
            arrival,
        })
        .map_err(|_| Error::LogClosed)
    }

    /// Announces an append that will come once the caller has done its
    /// slow part (checking the CSR, signing the certificate): while it is
    /// held, the writer keeps its next group open (up to `max_wait`) so
    /// that concurrent issuances share one fsync. Drop it when the append
    /// is submitted or abandoned.
    pub fn arriving(&self) -> Arrival {
        self.arriving.fetch_add(1, Ordering::AcqRel);
        Arrival(Arc::clone(&self.arriving))
    }

    /// Records an issuance in the CA store (certificate row, and the token
    /// claim with `claim = Some((token id, now))`) and appends its log
    /// entry in ONE transaction on the writer's connection: one fsync per
    /// group for both, instead of the store's group commit and then the
    /// log's, each waiting for the other's SQLite write lock. Both or
    /// neither: a token already used, revoked or expired fails this call
    /// with the store's error and appends nothing, without failing the
    /// rest of the group. The CA store's tables must be in the same
    /// database file (they are: `Ca::open` opens both on it).
    pub fn append_issue_blocking(
        &self,
        entry: &Entry,
        cert: CertRecord,
        claim: Option<(String, i64)>,
        arrival: Option<Arrival>,
    ) -> Result<Receipt, Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit_with(
            entry,
            Some(StoreWrite { cert, claim }),
            Reply::Blocking(tx),
            arrival,
        )?;
        rx.recv().map_err(|_| Error::LogClosed)?
    }

    /// Append and wait (blocking the thread) until the entry is durable.
    /// Do not call from inside an async task; use [`Log::append`] there.
    pub fn append_blocking(&self, entry: &Entry) -> Result<Receipt, Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(entry, Reply::Blocking(tx))?;
        rx.recv().map_err(|_| Error::LogClosed)?
    }

    /// Append and wait (asynchronously) until the entry is durable.
    pub async fn append(&self, entry: &Entry) -> Result<Receipt, Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(entry, Reply::Async(tx))?;
        rx.await.map_err(|_| Error::LogClosed)?
    }

    /// Stop the writer after it has answered everything already queued.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Ok(mut h) = self.writer.lock()
            && let Some(h) = h.take()
        {
            let _ = h.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Writer<'c> {
    conn: &'c mut Connection,
    key: LogSigner,
    frontier: Frontier,
    last_ts: u64,
    stats: Arc<LogStats>,
    sign_every_size: bool,
}

/// Subtrees completed by the current batch, in front of the store (they are
/// what most proofs of the batch need).
struct Overlay<'a> {
    fresh: &'a HashMap<(u32, u64), Hash>,
    db: DbNodes<'a>,
}

impl NodeSource for Overlay<'_> {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Error> {
        match self.fresh.get(&(level, index)) {
            Some(h) => Ok(*h),
            None => self.db.perfect(level, index),
        }
    }
}

/// How the writer forms groups.
struct Grouping {
    max_batch: usize,
    max_wait: std::time::Duration,
    arriving: Arc<AtomicUsize>,
}

impl Grouping {
    /// Everything queued, then (while announced callers are still on
    /// their way and `max_wait` has not passed) whatever they submit.
    fn collect(&self, rx: &mpsc::Receiver<Job>, first: Job) -> Vec<Job> {
        // A job in hand is no longer on its way.
        let taken = |mut job: Job| {
            job.arrival = None;
            job
        };
        let mut batch = vec![taken(first)];
        let deadline = std::time::Instant::now() + self.max_wait;
        while batch.len() < self.max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    batch.push(taken(job));
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let now = std::time::Instant::now();
            if self.arriving.load(Ordering::Acquire) == 0 || now >= deadline {
                break;
            }
            // Short slices: an announced caller may give up (bad CSR)
            // without ever submitting.
            let slice = (deadline - now).min(std::time::Duration::from_micros(100));
            match rx.recv_timeout(slice) {
                Ok(job) => batch.push(taken(job)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        batch
    }
}

impl Writer<'_> {
    fn run(&mut self, rx: &mpsc::Receiver<Job>, grouping: &Grouping) {
        while let Ok(first) = rx.recv() {
            let batch = grouping.collect(rx, first);
            self.commit_and_answer(batch);
        }
    }

    fn commit_and_answer(&mut self, batch: Vec<Job>) {
        let before = self.frontier.clone();
        let first_index = before.size();
        let mut fresh = HashMap::new();
        match self.commit(&batch, &mut fresh) {
            Ok((sth, rejected)) => {
                let appended = self.frontier.size() - first_index;
                if appended > 0 {
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    self.stats.entries.fetch_add(appended, Ordering::Relaxed);
                }
                let src = Overlay {
                    fresh: &fresh,
                    db: DbNodes(self.conn),
                };
                let mut leaf_index = first_index;
                for (job, rejected) in batch.into_iter().zip(rejected) {
                    if let Some(e) = rejected {
                        job.reply.send(Err(e));
                        continue;
                    }
                    let Some(sth) = &sth else {
                        // Unreachable: an accepted job means a new head.
                        job.reply.send(Err(Error::LogClosed));
                        continue;
                    };
                    let index = leaf_index;
                    leaf_index += 1;
                    let result = merkle::inclusion_proof(&src, index, sth.head.tree_size).map(
                        |audit_path| Receipt {
                            leaf_index: index,
                            leaf_hash: job.leaf,
                            audit_path,
                            sth: sth.clone(),
                            entry: job.bytes,
                        },
                    );
                    job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, entries = batch.len(), "transparency log commit failed");
                self.frontier = before;
                let msg = e.to_string();
                for job in batch {
                    job.reply.send(Err(Error::Store(format!(
                        "the transparency log could not commit: {msg}"
                    ))));
                }
            }
        }
    }

    /// Writes the batch in one transaction. Returns the new signed head
    /// (`None` if every job was rejected: nothing to commit) and, per job,
    /// the error that rejected it alone (its store rows failed, e.g. a
    /// token already used); any other failure fails the whole batch.
    #[allow(clippy::type_complexity)]
    fn commit(
        &mut self,
        batch: &[Job],
        fresh: &mut HashMap<(u32, u64), Hash>,
    ) -> Result<(Option<SignedTreeHead>, Vec<Option<Error>>), Error> {
        // IMMEDIATE: take the write lock up front (waiting out the CA's own
        // writes via the busy timeout) instead of failing on an upgrade.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut made: Vec<NewNode> = Vec::new();
        let mut rejected = Vec::with_capacity(batch.len());
        let mut heads: Vec<TreeHead> = Vec::new();
        let timestamp_ms = now_ms().max(self.last_ts);
        for job in batch {
            if let Some(w) = &job.store {
                let claim = w.claim.as_ref().map(|(id, now)| (id.as_str(), *now));
                if let Err(e) = crate::store::write_issue_alone(&tx, &w.cert, claim)? {
                    rejected.push(Some(e));
                    continue;
                }
            }
            rejected.push(None);
            let index = self.frontier.size();
            let nodes = self.frontier.push(job.leaf);
            store::insert_entry(&tx, index, &job.bytes, &job.leaf, &job.fields)?;
            store::insert_nodes(&tx, &nodes)?;
            made.extend(nodes);
            if self.sign_every_size {
                heads.push(TreeHead {
                    tree_size: self.frontier.size(),
                    timestamp_ms,
                    root_hash: self.frontier.root(),
                });
            }
        }
        if rejected.iter().all(Option::is_some) {
            // Nothing appended: no new head; the transaction rolls back.
            return Ok((None, rejected));
        }
        // The last size gets its head below.
        heads.pop();
        for head in heads {
            store::insert_sth(&tx, &head.sign(self.key.as_ref())?)?;
        }
        let head = TreeHead {
            tree_size: self.frontier.size(),
            timestamp_ms,
            root_hash: self.frontier.root(),
        };
        let sth = head.sign(self.key.as_ref())?;
        store::insert_sth(&tx, &sth)?;
        tx.commit()?;
        self.last_ts = head.timestamp_ms;
        for n in made {
            fresh.insert((n.level, n.index), n.hash);
        }
        Ok((Some(sth), rejected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translog::entry::{RevocationReason, Revoked};

    fn revoked(i: u8) -> Entry {
        Entry::Revoked(Revoked {
            serial: vec![i],
            reason: RevocationReason::Superseded,
            revoked_by: "cli".into(),
            time_ms: u64::from(i),
        })
    }

    #[test]
    fn a_failed_commit_fails_its_callers_and_leaves_the_tree_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.db");
        let key: LogSigner =
            Arc::new(rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap());
        let log = Log::open(&path, key, LogOptions::default()).unwrap();
        for i in 0..3 {
            assert_eq!(
                log.append_blocking(&revoked(i)).unwrap().leaf_index,
                u64::from(i)
            );
        }
        // Break the store under the writer: its commit must fail, not
        // half-happen, and the callers must hear about it.
        let other = store::open(&path).unwrap();
        other
            .execute_batch("ALTER TABLE translog_sths RENAME TO hidden")
            .unwrap();
        assert!(matches!(
            log.append_blocking(&revoked(9)),
            Err(Error::Store(_))
        ));
        other
            .execute_batch("ALTER TABLE hidden RENAME TO translog_sths")
            .unwrap();
        // The failed entry left no trace; the next one takes its index.
        let r = log.append_blocking(&revoked(3)).unwrap();
        assert_eq!(r.leaf_index, 3);
        r.verify_root().unwrap();
        assert_eq!(log.stats().entries(), 4);
        let reader = log.reader();
        let report = crate::translog::verify_log(
            &reader.raw_entries().unwrap(),
            &reader.all_sths().unwrap(),
            reader.stored_public_key().unwrap(),
            None,
        );
        assert!(report.ok(), "{:?}", report.problem);
    }

    use crate::store::sample_cert as cert;

    #[test]
    fn a_token_claimed_in_the_log_transaction_is_single_use_under_a_race() {
        use crate::store::{SqliteStore, Store, TokenRecord};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.db");
        let store = SqliteStore::open(&path).unwrap();
        store
            .insert_token(&TokenRecord {
                id: "t".into(),
                secret_sha256: vec![1; 32],
                identity: "spiffe://corp.example/a".into(),
                profile: "workload".into(),
                dns_names: vec![],
                email: None,
                created_at: 0,
                expires_at: 1000,
                used_at: None,
                revoked_at: None,
            })
            .unwrap();
        let key: LogSigner =
            Arc::new(rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap());
        let log = Arc::new(Log::open(&path, key, LogOptions::default()).unwrap());
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let results: Vec<_> = (0..8u8)
            .map(|i| {
                let (log, barrier) = (Arc::clone(&log), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let arrival = log.arriving();
                    barrier.wait();
                    log.append_issue_blocking(
                        &revoked(i),
                        cert(&format!("{i:02x}")),
                        Some(("t".into(), 10)),
                        Some(arrival),
                    )
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "exactly one racing claim wins");
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(e.code(), "token_used", "{e}");
        }
        // The losers left neither a certificate row nor a log entry.
        assert_eq!(won[0].leaf_index, 0);
        won[0].verify_root().unwrap();
        assert_eq!(log.stats().entries(), 1);
        assert_eq!(store.counts(0).unwrap().issued, 1);
        assert!(store.token("t").unwrap().unwrap().used_at.is_some());
        let reader = log.reader();
        assert_eq!(reader.raw_entries().unwrap().len(), 1);
        // A later append still gets the next index.
        let r = log.append_blocking(&revoked(9)).unwrap();
        assert_eq!(r.leaf_index, 1);
        r.verify_root().unwrap();
    }

    #[test]
    fn opening_refuses_rows_past_the_newest_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.db");
        let key: LogSigner =
            Arc::new(rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap());
        {
            let log = Log::open(&path, Arc::clone(&key), LogOptions::default()).unwrap();
            log.append_blocking(&revoked(1)).unwrap();
        }
        store::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO translog_entries (idx, entry, leaf_hash, kind, serial, time_ms)
                 SELECT 1, entry, leaf_hash, kind, serial, time_ms FROM translog_entries
                 WHERE idx = 0",
                [],
            )
            .unwrap();
        assert!(matches!(
            Log::open(&path, key, LogOptions::default()),
            Err(Error::LogVerify(m)) if m.contains("past its newest signed head")
        ));
    }

    #[test]
    fn closing_stops_appends() {
        let dir = tempfile::tempdir().unwrap();
        let key: LogSigner =
            Arc::new(rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap());
        let log = Log::open(&dir.path().join("ca.db"), key, LogOptions::default()).unwrap();
        log.close();
        assert!(matches!(
            log.append_blocking(&revoked(1)),
            Err(Error::LogClosed)
        ));
    }
}
