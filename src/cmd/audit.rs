//! `ward audit …`: search and verify the certificate transparency log.
//!
//! Every command reads the log from a source: the CA's SQLite file
//! (`--db`, read-only, offline) or the CA's API (`--ca URL --fingerprint
//! sha256:…`, the root pinned as everywhere else). Both feed the same
//! streaming audit through [`LogSource`]. Verification trusts only the log
//! key given with `--log-key` (from the trust bundle), never the key in the
//! database nor the one the CA serves.
//!
//! Online, the CA serves only its newest signed tree head (`/v1/log/sth`),
//! not every head it ever signed. So `verify --ca` downloads that head, then
//! every entry up to it, rebuilds the tree and compares the root; a CA that
//! serves entries other than the ones it signed is caught there. To name
//! the first bad entry without the intermediate heads, it then bisects with
//! consistency proofs from the CA, each checked locally against the
//! downloaded prefix and the signed head (a proof the CA cannot make for a
//! prefix is evidence against that prefix). `--from-sth` is checked twice:
//! against the rebuilt prefix, and with the CA's consistency proof to its
//! newest head, verified locally.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use ward_ca::client::{CaClient, RootPin};
use ward_ca::translog::merkle::{self, Frontier, Hash};
use ward_ca::translog::store::StoredEntry;
use ward_ca::translog::{
    CertJson, CertQuery, EntryJson, LogItem, LogPublicKey, LogReader, LogSource, Problem,
    ProofJson, Report, Requester, SignedTreeHead, SthJson, Tamper, audit, verify_consistency_json,
    verify_inclusion_json, verify_sth_json,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Where the log is read from: the CA's database file, or the CA's API
/// (one of `--db` and `--ca` is required).
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = true)]
struct Origin {
    /// The CA's database file (read-only, offline).
    #[arg(long, conflicts_with = "ca")]
    db: Option<PathBuf>,
    /// The CA's URL (`https://host:port`): read the log through its API.
    #[arg(long, requires = "fingerprint")]
    ca: Option<String>,
    /// The CA root's fingerprint (`sha256:<hex>`, printed by `ward ca
    /// init`), pinned for `--ca`.
    #[arg(long, requires = "ca")]
    fingerprint: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List certificates of an identity (or serial) valid in a time window.
    ///
    /// Prints a table on a terminal and JSON lines otherwise, unless
    /// `--json` or `--csv` says which.
    Search {
        #[command(flatten)]
        from: Origin,
        /// SPIFFE ID to search for.
        #[arg(long)]
        identity: Option<String>,
        /// Serial number (hex, colons allowed).
        #[arg(long)]
        serial: Option<String>,
        /// Certificates still valid at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Certificates already valid at or before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// One JSON object per line.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV with a header line.
        #[arg(long)]
        csv: bool,
        /// With `--ca`: client certificate chain (PEM) of an identity the
        /// CA lets read the log (`ca:ReadLog`: `server.admins` or the admin
        /// policy).
        #[arg(long, requires = "ca", requires = "key")]
        cert: Option<PathBuf>,
        /// With `--ca`: the private key (PEM) of `--cert`.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
    },
    /// Rebuild the Merkle tree from every entry and check every signature.
    ///
    /// Exits non-zero naming the first bad entry if anything was edited,
    /// removed, reordered or inserted.
    Verify {
        #[command(flatten)]
        from: Origin,
        /// The log's public key (SPKI PEM, from the trust bundle). Always
        /// required, online too: the key the CA serves is the CA's own word,
        /// and the audit must not trust the server it audits.
        #[arg(long)]
        log_key: PathBuf,
        /// A signed tree head saved earlier (`ward audit sth`); the log must
        /// still contain exactly what it covered.
        #[arg(long)]
        from_sth: Option<PathBuf>,
    },
    /// Print the newest signed tree head as JSON (save it for `--from-sth`).
    Sth {
        #[command(flatten)]
        from: Origin,
        /// Check its signature with this key (SPKI PEM) before printing.
        #[arg(long)]
        log_key: Option<PathBuf>,
    },
    /// Print and check the inclusion proof of one certificate.
    Prove {
        #[command(flatten)]
        from: Origin,
        /// Serial number (hex, colons allowed).
        #[arg(long)]
        serial: String,
        /// The log's public key (SPKI PEM); without it the signature is
        /// checked with the key recorded in the database (or, with `--ca`,
        /// served in the CA's bundle), which proves nothing against the CA,
        /// and says so.
        #[arg(long)]
        log_key: Option<PathBuf>,
    },
    /// Verify an inclusion or consistency proof (or a signed tree head)
    /// from a JSON file, offline.
    CheckProof {
        /// The proof, as the API returns it (`-` for standard input).
        file: PathBuf,
        /// The log's public key (SPKI PEM, from the trust bundle).
        #[arg(long)]
        log_key: PathBuf,
    },
    /// Follow new log entries as JSON lines (for a SIEM).
    Watch {
        #[command(flatten)]
        from: Origin,
        /// Resume after this entry index (default: from the first entry).
        #[arg(long)]
        since_index: Option<u64>,
        /// Print what is there now and exit instead of following.
        #[arg(long)]
        once: bool,
        /// How often to look for new entries, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Search {
            from,
            identity,
            serial,
            since,
            until,
            json,
            csv,
            cert,
            key,
        } => search(
            &from,
            cert.as_deref().zip(key.as_deref()),
            &CertQuery {
                identity,
                serial,
                since,
                until,
            },
            Format::pick(json, csv),
        ),
        Command::Verify {
            from,
            log_key,
            from_sth,
        } => verify(&from, &log_key, from_sth.as_deref()),
        Command::Sth { from, log_key } => sth(&from, log_key.as_deref()),
        Command::Prove {
            from,
            serial,
            log_key,
        } => prove(&from, &serial, log_key.as_deref()),
        Command::CheckProof { file, log_key } => check_proof(&file, &log_key),
        Command::Watch {
            from,
            since_index,
            once,
            interval_ms,
        } => watch(&from, since_index, once, Duration::from_millis(interval_ms)),
    }
}

/// The log opened from the database or the API.
enum Opened {
    Db(LogReader),
    Api(Api),
}

fn open(from: &Origin) -> anyhow::Result<Opened> {
    match (&from.db, &from.ca, &from.fingerprint) {
        (Some(db), None, _) => Ok(Opened::Db(open_reader(db)?)),
        (None, Some(url), Some(fp)) => Ok(Opened::Api(Api::connect(url, fp)?)),
        (None, Some(_), None) => {
            anyhow::bail!("--ca needs --fingerprint sha256:<hex> of the CA root")
        }
        _ => anyhow::bail!(
            "say where the log is: --db PATH (the CA's database, offline) or --ca URL --fingerprint sha256:<hex>"
        ),
    }
}

/// Where `verify` reads the log from: the store, or the API.
fn open_source(opened: &Opened) -> Box<dyn LogSource + '_> {
    match opened {
        Opened::Db(reader) => Box::new(DbSource(reader)),
        Opened::Api(api) => Box::new(ApiSource::new(api)),
    }
}

struct DbSource<'a>(&'a LogReader);

impl LogSource for DbSource<'_> {
    fn read(
        &mut self,
        visit: &mut dyn FnMut(LogItem) -> Result<(), ward_ca::Error>,
    ) -> Result<(), ward_ca::Error> {
        self.0.read_all(visit)
    }
}

/// Longest wait for one API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The CA's API, with a runtime to call it from these synchronous commands.
struct Api {
    client: CaClient,
    rt: tokio::runtime::Runtime,
    url: String,
}

impl Api {
    fn connect(url: &str, fingerprint: &str) -> anyhow::Result<Self> {
        let client = CaClient::new(url, RootPin::Fingerprint(fingerprint.to_owned()))
            .with_context(|| format!("the CA at {url}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(Self {
            client,
            rt,
            url: url.to_owned(),
        })
    }

    /// One call, bounded by [`CALL_TIMEOUT`].
    fn run<T>(
        &self,
        call: impl Future<Output = Result<T, ward_ca::Error>>,
    ) -> Result<T, ward_ca::Error> {
        self.rt.block_on(async {
            tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .map_err(|_| {
                    ward_ca::Error::Transport(format!(
                        "{} did not answer within {} s",
                        self.url,
                        CALL_TIMEOUT.as_secs()
                    ))
                })?
        })
    }

    fn latest(&self) -> Result<SignedTreeHead, ward_ca::Error> {
        SignedTreeHead::try_from(&self.run(self.client.log_sth())?)
    }
}

/// Entries per `/v1/log/entries` call (the CA's page limit).
const PAGE: u64 = ward_ca::translog::api::MAX_PAGE;

/// The log as the CA's API serves it: its newest signed head, then every
/// entry up to that head, paged. Keeps the recomputed leaf hashes (32 bytes
/// an entry) to locate a bad entry afterwards.
struct ApiSource<'a> {
    api: &'a Api,
    head: Option<SignedTreeHead>,
    leaves: Vec<Hash>,
    /// The first entry the CA failed to serve, and why.
    unreadable: Option<(u64, String)>,
    /// The first position whose entry carries another index, and that index.
    gap: Option<(u64, u64)>,
}

impl<'a> ApiSource<'a> {
    fn new(api: &'a Api) -> Self {
        Self {
            api,
            head: None,
            leaves: Vec::new(),
            unreadable: None,
            gap: None,
        }
    }

    /// Entries `start..=end`; when the page fails, one by one up to the
    /// first that fails (recorded in `unreadable`).
    fn page(&mut self, start: u64, end: u64) -> Result<Vec<StoredEntry>, ward_ca::Error> {
        match self.api.run(self.api.client.log_entries_raw(start, end)) {
            Ok(page) => Ok(page),
            Err(e) if is_bad_range(&e) => Ok(Vec::new()),
            Err(_) => {
                let mut out = Vec::new();
                for i in start..=end {
                    match self.api.run(self.api.client.log_entries_raw(i, i)) {
                        Ok(one) => out.extend(one),
                        Err(e) => {
                            self.unreadable = Some((i, e.to_string()));
                            break;
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

fn is_bad_range(e: &ward_ca::Error) -> bool {
    matches!(e, ward_ca::Error::Remote { code, .. } if code == "bad_range")
}

impl LogSource for ApiSource<'_> {
    fn read(
        &mut self,
        visit: &mut dyn FnMut(LogItem) -> Result<(), ward_ca::Error>,
    ) -> Result<(), ward_ca::Error> {
        let head = self.api.latest()?;
        let size = head.head.tree_size;
        self.head = Some(head.clone());
        visit(LogItem::Heads(vec![head]))?;
        let mut next = 0u64;
        while next < size && self.unreadable.is_none() {
            let end = size.min(next.saturating_add(PAGE)) - 1;
            let page = self.page(next, end)?;
            let Some(last) = page.last().map(|e| e.index) else {
                break; // the CA holds fewer entries than it signed
            };
            for e in page {
                let pos = self.leaves.len() as u64;
                if self.gap.is_none() && e.index != pos {
                    self.gap = Some((pos, e.index));
                }
                self.leaves.push(merkle::leaf_hash(&e.bytes));
                visit(LogItem::Entry(e))?;
            }
            if last < next {
                break; // not moving forward: the audit names what was read
            }
            next = last.saturating_add(1);
        }
        Ok(())
    }
}

/// The first entry of `leaves` not proven to be in `head`: the largest `k`
/// whose prefix `0..k` is proven to be a prefix of the signed tree, by the
/// root itself at the head's size, by the log's signed head of size `k` when
/// the CA holds one (it comes with the consistency proof; only its signature
/// is trusted), or else by the CA's consistency proof checked here against
/// the rebuilt prefix. `None` when every entry read up to the head's size is
/// proven. The log's signed heads seen on the way are kept in `seen` by
/// size, for [`moved_to`].
fn locate(
    api: &Api,
    key: &LogPublicKey,
    leaves: &[Hash],
    head: &SignedTreeHead,
    seen: &mut HashMap<u64, SignedTreeHead>,
) -> Option<u64> {
    let size = head.head.tree_size;
    let n = size.min(leaves.len() as u64);
    let mut proven = |k: u64| -> bool {
        if k == 0 {
            return true;
        }
        let mut f = Frontier::new();
        for l in leaves.iter().take(usize::try_from(k).unwrap_or(usize::MAX)) {
            f.push(*l);
        }
        if k == size {
            return f.root() == head.head.root_hash;
        }
        let Ok(p) = api.run(api.client.consistency_proof(k, size)) else {
            return false;
        };
        if let Some(signed) = p
            .first_sth
            .as_ref()
            .and_then(|j| verify_sth_json(j, key).ok())
            && signed.head.tree_size == k
        {
            let root = signed.head.root_hash;
            seen.insert(k, signed);
            return f.root() == root;
        }
        let path: Result<Vec<Hash>, _> = p
            .consistency_path
            .iter()
            .map(|h| ward_ca::translog::sth::decode_hash(h, "consistency_path"))
            .collect();
        path.is_ok_and(|path| {
            merkle::verify_consistency(k, size, &f.root(), &head.head.root_hash, &path).is_ok()
        })
    };
    if proven(n) {
        return None;
    }
    let (mut good, mut bad) = (0, n);
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if proven(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Some(good)
}

/// Where the entry the log signed at `k` went, when the CA holds a signed
/// head of size `k + 1` and some other position of `leaves` completes the
/// (proven) first `k` entries to that head's root. `seen`: the heads
/// [`locate`] already fetched (it tried size `k + 1` on its way to `k`).
fn moved_to(
    api: &Api,
    key: &LogPublicKey,
    leaves: &[Hash],
    k: u64,
    head: &SignedTreeHead,
    seen: &HashMap<u64, SignedTreeHead>,
) -> Option<u64> {
    let next = k.checked_add(1)?;
    let signed = if next == head.head.tree_size {
        head.clone()
    } else if let Some(signed) = seen.get(&next) {
        signed.clone()
    } else if next < head.head.tree_size {
        let p = api
            .run(api.client.consistency_proof(next, head.head.tree_size))
            .ok()?;
        verify_sth_json(p.first_sth.as_ref()?, key).ok()?
    } else {
        return None;
    };
    if signed.head.tree_size != next {
        return None;
    }
    let mut prefix = Frontier::new();
    for l in leaves.iter().take(usize::try_from(k).ok()?) {
        prefix.push(*l);
    }
    let j = leaves.iter().position(|l| {
        let mut f = prefix.clone();
        f.push(*l);
        f.root() == signed.head.root_hash
    })? as u64;
    (j != k).then_some(j)
}

/// The audit through the API, then what only the API path needs: the
/// first entry the CA could not serve, the bad entry located by
/// consistency proofs, and the saved head's consistency proof.
fn audit_online(
    api: &Api,
    key: &LogPublicKey,
    saved: Option<&SignedTreeHead>,
) -> anyhow::Result<Report> {
    let mut source = ApiSource::new(api);
    let mut report = audit(&mut source, key, saved)
        .with_context(|| format!("reading the log from {}", api.url))?;
    if let Some((index, why)) = source.unreadable.take() {
        let earlier =
            matches!(&report.problem, Some(Problem::Entry { index: i, .. }) if *i < index);
        if !earlier {
            report.problem = Some(Problem::Entry {
                index,
                what: Tamper::Edited,
                detail: format!("the CA cannot serve it: {why}"),
            });
        }
        return Ok(report);
    }
    let Some(head) = source.head.clone() else {
        return Ok(report);
    };
    if let Some(Problem::Entry {
        index,
        what,
        detail,
    }) = &mut report.problem
        && detail.contains("signed together")
    {
        let served = source.leaves.len() as u64;
        let mut seen = HashMap::new();
        let located = locate(api, key, &source.leaves, &head, &mut seen);
        if located.is_none() && served < head.head.tree_size {
            *index = served;
            *what = Tamper::Missing;
            *detail = format!(
                "the CA serves {served} entries, all proven to be in its signed tree head, but \
                 that head covers {}",
                head.head.tree_size
            );
        }
        let Some(k) = located else {
            return Ok(report);
        };
        *index = k;
        match source.gap {
            Some((pos, found)) if pos == k => {
                *what = if found > pos {
                    Tamper::Missing
                } else {
                    Tamper::Inserted
                };
                *detail = format!(
                    "expected the entry with index {pos}, the CA served index {found}; the first \
                     {k} entries are proven to be a prefix of its signed tree head of size {}",
                    head.head.tree_size
                );
            }
            _ if let Some(j) = moved_to(api, key, &source.leaves, k, &head, &seen) => {
                *what = Tamper::Reordered;
                *detail = format!(
                    "the entry the log signed at index {k} (its signed tree head of size {}) is \
                     now at index {j}",
                    k + 1
                );
            }
            _ => {
                if *what == Tamper::Missing && k < source.leaves.len() as u64 {
                    *what = Tamper::Edited;
                }
                *detail = format!(
                    "it is not what the CA signed: the first {k} entries are proven to be a \
                     prefix of its signed tree head of size {} (by signed heads or consistency \
                     proofs from the CA, checked here), and nothing proves the log with entry {k}",
                    head.head.tree_size
                );
            }
        }
    }
    if report.problem.is_none()
        && let Some(s) = saved
        && s.head.tree_size > 0
        && s.head.tree_size < head.head.tree_size
    {
        let checked = api
            .run(
                api.client
                    .consistency_proof(s.head.tree_size, head.head.tree_size),
            )
            .and_then(|p| {
                let path = p
                    .consistency_path
                    .iter()
                    .map(|h| ward_ca::translog::sth::decode_hash(h, "consistency_path"))
                    .collect::<Result<Vec<Hash>, _>>()?;
                merkle::verify_consistency(
                    s.head.tree_size,
                    head.head.tree_size,
                    &s.head.root_hash,
                    &head.head.root_hash,
                    &path,
                )
            });
        if let Err(e) = checked {
            report.problem = Some(Problem::NotConsistentWithSaved {
                tree_size: s.head.tree_size,
                detail: format!(
                    "the CA's consistency proof to its head of size {} does not verify: {e}",
                    head.head.tree_size
                ),
            });
        }
    }
    Ok(report)
}

fn open_reader(db: &Path) -> anyhow::Result<LogReader> {
    LogReader::open(db).with_context(|| format!("opening the log in {}", db.display()))
}

fn read_key(path: &Path) -> anyhow::Result<LogPublicKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading the log key {}", path.display()))?;
    LogPublicKey::from_pem(&pem).with_context(|| format!("in {}", path.display()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not the expected JSON", path.display()))
}

fn verify(from: &Origin, key_path: &Path, from_sth: Option<&Path>) -> anyhow::Result<ExitCode> {
    let opened = open(from)?;
    let key = read_key(key_path)?;
    let saved = from_sth
        .map(|p| -> anyhow::Result<SignedTreeHead> {
            let json: SthJson = read_json(p)?;
            Ok(SignedTreeHead::try_from(&json)?)
        })
        .transpose()?;
    let report = match &opened {
        Opened::Db(_) => audit(open_source(&opened).as_mut(), &key, saved.as_ref())
            .context("reading the log entries and signed tree heads")?,
        Opened::Api(api) => audit_online(api, &key, saved.as_ref())?,
    };
    match &report.problem {
        None => {
            let latest = report
                .latest
                .as_ref()
                .map(|s| {
                    format!(
                        "; newest head: size {}, root {}",
                        s.head.tree_size,
                        hex_short(&s.head.root_hash)
                    )
                })
                .unwrap_or_default();
            let saved = saved
                .map(|s| {
                    format!(
                        "; consistent with the saved head of size {}",
                        s.head.tree_size
                    )
                })
                .unwrap_or_default();
            let online = match &opened {
                Opened::Api(api) => format!(
                    " (online from {}: the API serves only the newest signed head)",
                    api.url
                ),
                Opened::Db(_) => String::new(),
            };
            println!(
                "ok: {} entries and {} signed tree heads verified{latest}{saved}{online}",
                report.entries, report.heads
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(problem) => {
            println!("FAILED: {problem}");
            eprintln!("error: the transparency log does not verify: {problem}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn hex_short(h: &[u8]) -> String {
    h.iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "…"
}

fn sth(from: &Origin, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let sth = match open(from)? {
        Opened::Db(reader) => reader.sth()?,
        Opened::Api(api) => api
            .run(api.client.log_sth())
            .with_context(|| format!("GET /v1/log/sth from {}", api.url))?,
    };
    if let Some(key) = key {
        verify_sth_json(&sth, &read_key(key)?)?;
    }
    println!("{}", serde_json::to_string(&sth)?);
    Ok(ExitCode::SUCCESS)
}

fn prove(from: &Origin, serial: &str, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let opened = open(from)?;
    let proof = match &opened {
        Opened::Db(reader) => reader.inclusion_proof_by_serial(serial)?,
        Opened::Api(api) => api
            .run(api.client.inclusion_proof(serial))
            .with_context(|| format!("the inclusion proof of {serial} from {}", api.url))?,
    };
    println!("{}", serde_json::to_string_pretty(&proof)?);
    let key = match (key, &opened) {
        (Some(k), _) => read_key(k)?,
        (None, Opened::Db(reader)) => {
            eprintln!(
                "warning: no --log-key given: checking with the key recorded in the database, \
                 which proves nothing against its owner"
            );
            reader
                .stored_public_key()
                .cloned()
                .context("the database records no log key; pass --log-key")?
        }
        (None, Opened::Api(api)) => {
            eprintln!(
                "warning: no --log-key given: checking with the log key the CA serves in its \
                 bundle, which proves nothing against the CA; pass the key from the trust bundle"
            );
            api.run(api.client.bundle_log_key())?
        }
    };
    match verify_inclusion_json(&proof, &key) {
        Ok(v) => {
            eprintln!(
                "ok: certificate {serial} is entry {} of the signed tree of size {}",
                v.leaf_index, v.sth.head.tree_size
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: the inclusion proof does not verify: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn check_proof(file: &Path, key: &Path) -> anyhow::Result<ExitCode> {
    let key = read_key(key)?;
    let proof: ProofJson = read_json(file)?;
    let result = match &proof {
        ProofJson::Inclusion(p) => verify_inclusion_json(p, &key).map(|v| {
            let what = match &v.entry {
                Some(ward_ca::translog::Entry::Issued(i)) => {
                    match ward_ca::translog::entry::CertFields::parse(&i.certificate) {
                        Ok(c) => format!(
                            " (certificate {} for {})",
                            c.serial,
                            c.identity.as_deref().unwrap_or("no SPIFFE ID")
                        ),
                        Err(_) => String::new(),
                    }
                }
                Some(ward_ca::translog::Entry::Revoked(r)) => format!(
                    " (revocation of {})",
                    ward_ca::translog::entry::serial_hex(&r.serial)
                ),
                None => String::new(),
            };
            format!(
                "inclusion of entry {}{what} in the signed tree of size {}",
                v.leaf_index, v.sth.head.tree_size
            )
        }),
        ProofJson::Sth(s) => verify_sth_json(s, &key).map(|s| {
            format!(
                "signed tree head of size {} (timestamp {} ms)",
                s.head.tree_size, s.head.timestamp_ms
            )
        }),
        ProofJson::Consistency(p) => verify_consistency_json(p, &key).map(|(a, b)| {
            format!(
                "the signed tree of size {} is a prefix of the signed tree of size {}",
                a.head.tree_size, b.head.tree_size
            )
        }),
    };
    match result {
        Ok(what) => {
            println!("ok: {what}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAILED: {e}");
            eprintln!("error: the proof does not verify: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn watch(
    from: &Origin,
    since_index: Option<u64>,
    once: bool,
    interval: Duration,
) -> anyhow::Result<ExitCode> {
    let opened = open(from)?;
    let mut last = since_index;
    let stdout = std::io::stdout();
    loop {
        let batch = match &opened {
            Opened::Db(reader) => reader.entries_after(last, PAGE)?,
            Opened::Api(api) => entries_after_online(api, last)?,
        };
        let mut out = stdout.lock();
        for e in &batch {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
            last = Some(e.index);
        }
        out.flush()?;
        drop(out);
        if batch.len() as u64 == PAGE {
            continue;
        }
        if once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(interval);
    }
}

/// Entries after `last` (at most a page) up to the CA's newest signed
/// head, in order; refuses a page that does not continue where the last
/// one stopped, so a SIEM never gets a gap or a repeat.
fn entries_after_online(api: &Api, last: Option<u64>) -> anyhow::Result<Vec<EntryJson>> {
    let size = api
        .latest()
        .with_context(|| format!("GET /v1/log/sth from {}", api.url))?
        .head
        .tree_size;
    let start = last.map_or(0, |l| l.saturating_add(1));
    if start >= size {
        return Ok(Vec::new());
    }
    let end = size.min(start.saturating_add(PAGE)) - 1;
    let page = api
        .run(api.client.log_entries(start, end))
        .with_context(|| {
            format!(
                "GET /v1/log/entries?start={start}&end={end} from {}",
                api.url
            )
        })?
        .entries;
    for (i, e) in page.iter().enumerate() {
        let want = start + i as u64;
        anyhow::ensure!(
            e.index == want,
            "the CA answered entry {} where entry {want} belongs",
            e.index
        );
    }
    Ok(page)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Csv,
}

impl Format {
    fn pick(json: bool, csv: bool) -> Self {
        if json {
            Self::Json
        } else if csv {
            Self::Csv
        } else if std::io::stdout().is_terminal() {
            Self::Table
        } else {
            Self::Json
        }
    }
}

fn requester(r: Option<&Requester>) -> String {
    match r {
        Some(Requester::Token(id)) => format!("token:{id}"),
        Some(Requester::Renewal(s)) => {
            format!("renew:{}", ward_ca::translog::entry::serial_hex(s))
        }
        Some(Requester::Other(o)) => o.clone(),
        None => String::new(),
    }
}

fn columns(c: &CertJson) -> [String; 9] {
    [
        c.index.to_string(),
        c.serial.clone(),
        c.identity.clone().unwrap_or_default(),
        c.not_before.clone().unwrap_or_default(),
        c.not_after.clone().unwrap_or_default(),
        requester(c.requester.as_ref()),
        c.profile.clone().unwrap_or_default(),
        c.revoked_at.clone().unwrap_or_default(),
        c.revocation_reason
            .and_then(|r| serde_json::to_value(r).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    ]
}

const HEADERS: [&str; 9] = [
    "index",
    "serial",
    "identity",
    "not_before",
    "not_after",
    "requester",
    "profile",
    "revoked_at",
    "revocation_reason",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn search(
    from: &Origin,
    mtls: Option<(&Path, &Path)>,
    q: &CertQuery,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let certs = match open(from)? {
        Opened::Db(reader) => reader.certs(q)?.certs,
        Opened::Api(api) => {
            let client = match mtls {
                Some((cert, key)) => {
                    let read = |p: &Path| {
                        std::fs::read_to_string(p)
                            .with_context(|| format!("reading {}", p.display()))
                    };
                    api.client.with_client_cert(&read(cert)?, &read(key)?)?
                }
                None => anyhow::bail!(
                    "searching through the API needs --cert and --key of an identity allowed \
                     ca:ReadLog"
                ),
            };
            api.run(client.certs(q))
                .with_context(|| format!("GET /v1/certs from {}", api.url))?
                .certs
        }
    };
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            for c in &certs {
                serde_json::to_writer(&mut out, c)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Csv => {
            writeln!(out, "{}", HEADERS.join(","))?;
            for c in &certs {
                let row: Vec<String> = columns(c).iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", row.join(","))?;
            }
        }
        Format::Table => {
            let rows: Vec<[String; 9]> = certs.iter().map(columns).collect();
            let mut widths = HEADERS.map(str::len);
            for row in &rows {
                for (w, f) in widths.iter_mut().zip(row) {
                    *w = (*w).max(f.chars().count());
                }
            }
            let line = |fields: &[String]| {
                fields
                    .iter()
                    .zip(widths)
                    .map(|(f, w)| format!("{f:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            let header: Vec<String> = HEADERS.iter().map(|h| h.to_uppercase()).collect();
            writeln!(out, "{}", line(&header))?;
            for row in &rows {
                writeln!(out, "{}", line(row))?;
            }
            writeln!(out, "({} certificates)", rows.len())?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
