//! Append throughput of the transparency log with group commit, for bench/.
//!
//! `cargo run --release -p ward-ca --example translog_throughput -- [THREADS] [PER_THREAD] [DB]`
//! prints entries per second, batches (fsyncs) and the mean batch size.
//! Certificates are made before the clock starts, so only logging is timed.

use std::sync::Arc;
use std::time::Instant;

use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, SanType,
};
use ward_ca::translog::{Entry, Issued, Log, LogOptions, Requester};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let threads: u64 = args.next().map_or(Ok(8), |a| a.parse())?;
    let per_thread: u64 = args.next().map_or(Ok(500), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let db = args
        .next()
        .map_or_else(|| dir.path().join("ca.db"), std::path::PathBuf::from);

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let issuer = Issuer::new(params, ca_key);
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut work: Vec<Vec<Entry>> = Vec::new();
    for t in 0..threads {
        let mut mine = Vec::new();
        for i in 0..per_thread {
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.subject_alt_names = vec![SanType::URI(
                format!("spiffe://corp.example/ns/bench/sa/t{t}-{i}").try_into()?,
            )];
            mine.push(Entry::Issued(Issued {
                certificate: p.signed_by(&leaf_key, &issuer)?.der().to_vec(),
                requester: Requester::Token(format!("t{t}-{i}")),
                profile: "workload".into(),
                time_ms: 0,
            }));
        }
        work.push(mine);
    }

    let log = Arc::new(Log::open(
        &db,
        Arc::new(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?),
        LogOptions::default(),
    )?);
    let start = Instant::now();
    let handles: Vec<_> = work
        .into_iter()
        .map(|mine| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || -> Result<(), ward_ca::Error> {
                for e in &mine {
                    log.append_blocking(e)?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "append thread panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = log.stats();
    println!(
        "{} entries from {threads} threads in {secs:.3} s: {:.0} entries/s, {} batches (fsyncs), {:.1} entries per batch",
        stats.entries(),
        stats.entries() as f64 / secs,
        stats.batches(),
        stats.entries() as f64 / stats.batches().max(1) as f64
    );
    Ok(())
}
