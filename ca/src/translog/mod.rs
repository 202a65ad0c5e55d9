//! The certificate transparency log (issue 11): an RFC 9162 Merkle tree over
//! every certificate ward issues or revokes, so that auditors can list every
//! certificate of an identity and prove nobody edited, dropped, reordered or
//! back-dated one — not even an admin with database access.
//!
//! - [`merkle`]: RFC 9162 hashing, proofs, verification, from stored perfect
//!   subtrees (O(log n) reads per root or proof).
//! - [`entry`]: the canonical entry encoding (documented there).
//! - [`sth`]: signed tree heads and the log's public key.
//! - [`store`]: the `translog_*` tables in the CA's SQLite file.
//! - [`log`]: [`Log`], the append handle with group commit and receipts.
//! - [`reader`]: [`LogReader`], the query functions behind the API.
//! - [`api`]: the JSON shapes and their offline verification.
//! - [`verify`]: the whole-log audit behind `ward audit verify`.
//!
//! The CA opens the log on its database file with its log key:
//!
//! ```no_run
//! # fn demo(path: &std::path::Path, key: ward_ca::translog::LogSigner,
//! #         entry: ward_ca::translog::Entry) -> Result<(), ward_ca::Error> {
//! use ward_ca::translog::{Log, LogOptions};
//! let log = Log::open(path, key, LogOptions::default())?;
//! let receipt = log.append_blocking(&entry)?; // durable once this returns
//! let json = receipt.to_json();                // goes back with the certificate
//! let sth = log.reader().sth()?;               // GET /v1/log/sth
//! # let _ = (json, sth); Ok(()) }
//! ```

pub mod api;
pub mod entry;
pub mod log;
pub mod merkle;
pub mod reader;
pub mod sink;
pub mod sth;
pub mod store;
pub mod verify;

pub use api::{
    CertJson, CertQuery, CertsJson, ConsistencyProofJson, EntriesJson, EntryJson,
    InclusionProofJson, ProofJson, parse_leaf_hash_param, verify_consistency_json,
    verify_inclusion_json, verify_sth_json,
};
pub use entry::{Entry, Issued, Requester, RevocationReason, Revoked};
pub use log::{Arrival, Log, LogOptions, LogSigner, LogStats, Receipt};
pub use reader::LogReader;
pub use sth::{LogPublicKey, SignedTreeHead, SthJson, TreeHead};
pub use verify::{Auditor, LogItem, LogSource, Problem, Report, Tamper, audit, verify_log};
