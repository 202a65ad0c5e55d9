//! `ward audit …`: search and verify the certificate transparency log.
//!
//! Every command reads the log from a source. Today that is the CA's
//! SQLite file (`--db`, read-only, offline); the API client will add an
//! online source behind the same [`LogSource`] trait, so `verify` does not
//! care where the entries came from. Verification trusts only the log key
//! given with `--log-key` (from the trust bundle), never the key in the
//! database.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use ward_ca::translog::{
    CertJson, CertQuery, LogPublicKey, LogReader, LogSource, ProofJson, Requester, SignedTreeHead,
    SthJson, audit, verify_consistency_json, verify_inclusion_json, verify_sth_json,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List certificates of an identity (or serial) valid in a time window.
    ///
    /// Prints a table on a terminal and JSON lines otherwise, unless
    /// `--json` or `--csv` says which.
    Search {
        /// The CA's database file.
        #[arg(long)]
        db: PathBuf,
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
    },
    /// Rebuild the Merkle tree from every entry and check every signature.
    ///
    /// Exits non-zero naming the first bad entry if anything was edited,
    /// removed, reordered or inserted.
    Verify {
        /// The CA's database file.
        #[arg(long)]
        db: PathBuf,
        /// The log's public key (SPKI PEM, from the trust bundle).
        #[arg(long)]
        log_key: PathBuf,
        /// A signed tree head saved earlier (`ward audit sth`); the log must
        /// still contain exactly what it covered.
        #[arg(long)]
        from_sth: Option<PathBuf>,
    },
    /// Print the newest signed tree head as JSON (save it for `--from-sth`).
    Sth {
        /// The CA's database file.
        #[arg(long)]
        db: PathBuf,
        /// Check its signature with this key (SPKI PEM) before printing.
        #[arg(long)]
        log_key: Option<PathBuf>,
    },
    /// Print and check the inclusion proof of one certificate.
    Prove {
        /// The CA's database file.
        #[arg(long)]
        db: PathBuf,
        /// Serial number (hex, colons allowed).
        #[arg(long)]
        serial: String,
        /// The log's public key (SPKI PEM); without it the signature is
        /// checked with the key recorded in the database, and says so.
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
        /// The CA's database file.
        #[arg(long)]
        db: PathBuf,
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
            db,
            identity,
            serial,
            since,
            until,
            json,
            csv,
        } => search(
            &db,
            &CertQuery {
                identity,
                serial,
                since,
                until,
            },
            Format::pick(json, csv),
        ),
        Command::Verify {
            db,
            log_key,
            from_sth,
        } => verify(&mut open_source(&db)?, &log_key, from_sth.as_deref()),
        Command::Sth { db, log_key } => sth(&db, log_key.as_deref()),
        Command::Prove {
            db,
            serial,
            log_key,
        } => prove(&db, &serial, log_key.as_deref()),
        Command::CheckProof { file, log_key } => check_proof(&file, &log_key),
        Command::Watch {
            db,
            since_index,
            once,
            interval_ms,
        } => watch(&db, since_index, once, Duration::from_millis(interval_ms)),
    }
}

/// Where `verify` reads the log from. Only the offline store exists so far;
/// an API-backed source plugs in here.
fn open_source(db: &Path) -> anyhow::Result<Box<dyn LogSource>> {
    Ok(Box::new(open_reader(db)?))
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

fn verify(
    source: &mut Box<dyn LogSource>,
    key_path: &Path,
    from_sth: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let key = read_key(key_path)?;
    let saved = from_sth
        .map(|p| -> anyhow::Result<SignedTreeHead> {
            let json: SthJson = read_json(p)?;
            Ok(SignedTreeHead::try_from(&json)?)
        })
        .transpose()?;
    let report = audit(source.as_mut(), &key, saved.as_ref())
        .context("reading the log entries and signed tree heads")?;
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
            println!(
                "ok: {} entries and {} signed tree heads verified{latest}{saved}",
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

fn sth(db: &Path, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let sth = open_reader(db)?.sth()?;
    if let Some(key) = key {
        verify_sth_json(&sth, &read_key(key)?)?;
    }
    println!("{}", serde_json::to_string(&sth)?);
    Ok(ExitCode::SUCCESS)
}

fn prove(db: &Path, serial: &str, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let reader = open_reader(db)?;
    let proof = reader.inclusion_proof_by_serial(serial)?;
    println!("{}", serde_json::to_string_pretty(&proof)?);
    let key = match key {
        Some(k) => read_key(k)?,
        None => {
            eprintln!(
                "warning: no --log-key given: checking with the key recorded in the database, \
                 which proves nothing against its owner"
            );
            reader
                .stored_public_key()
                .cloned()
                .context("the database records no log key; pass --log-key")?
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
    db: &Path,
    since_index: Option<u64>,
    once: bool,
    interval: Duration,
) -> anyhow::Result<ExitCode> {
    let reader = open_reader(db)?;
    let mut last = since_index;
    let stdout = std::io::stdout();
    loop {
        let batch = reader.entries_after(last, 256)?;
        let mut out = stdout.lock();
        for e in &batch {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
            last = Some(e.index);
        }
        out.flush()?;
        drop(out);
        if batch.len() == 256 {
            continue;
        }
        if once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(interval);
    }
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

fn search(db: &Path, q: &CertQuery, format: Format) -> anyhow::Result<ExitCode> {
    let certs = open_reader(db)?.certs(q)?.certs;
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
