//! Issuance throughput against the raw HSM sign rate, side by side in one
//! run, for the issue-3 goal (issued/s ≥ 80 % of raw ECDSA-P256 signs/s).
//!
//! `cargo run --release -p ward-ca --example issue_throughput -- [THREADS] [COUNT] [SECS]`
//!
//! Creates a SoftHSM2 token in a temp dir (re-executing itself with
//! `SOFTHSM2_CONF` set, because the module reads it once at load), runs
//! `ward ca init`, then measures, alternating so drift hits every figure:
//! raw signatures/s through ward's PKCS#11 signer on 1 and THREADS threads,
//! and in-process enrolments/s (`Ca::enroll`: token check, CSR check, HSM
//! signature, store + transparency log commit with synchronous=FULL) on 1
//! and THREADS threads. Tokens and CSRs are made before the clock starts,
//! as in bench/: the figure is the CA's issuance, not the client's keygen.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ward_ca::Ca;
use ward_ca::authority::{self, TokenSpec};
use ward_ca::profile::Profile;
use ward_ca::settings::CaConfig;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN_ENV: &str = "WARD_BENCH_HSM_PIN";
const PIN: &str = "87654321";

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        return reexec_with_token(&args);
    }
    let threads: usize = args.first().map_or(Ok(8), |a| a.parse())?;
    let count: usize = args.get(1).map_or(Ok(2000), |a| a.parse())?;
    let secs: f64 = args.get(2).map_or(Ok(2.0), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path())?;
    authority::init(&cfg)?;
    let ca = Arc::new(Ca::open(cfg)?);
    // Warm-up: sessions, SQLite pages.
    sign_rate(&ca, 1, 0.2)?;
    issue_rate(&ca, 20, 1)?;
    let s1 = sign_rate(&ca, 1, secs)?;
    let i1 = issue_rate(&ca, count / 4, 1)?;
    let sn = sign_rate(&ca, threads, secs)?;
    let i_n = issue_rate(&ca, count, threads)?;
    let stats = ca.translog().stats();
    println!("raw sign   1 thread : {s1:>8.0} /s");
    println!(
        "issue      1 thread : {i1:>8.0} /s  ({:.0} % of raw)",
        100.0 * i1 / s1
    );
    println!("raw sign {threads:>2} threads: {sn:>8.0} /s");
    println!(
        "issue    {threads:>2} threads: {i_n:>8.0} /s  ({:.0} % of raw)",
        100.0 * i_n / sn
    );
    #[allow(clippy::cast_precision_loss)]
    let per = stats.entries() as f64 / stats.batches().max(1) as f64;
    println!(
        "log: {} entries in {} commits ({per:.1} per fsync)",
        stats.entries(),
        stats.batches()
    );
    Ok(())
}

/// Makes a throw-away token directory and runs this program again with
/// `SOFTHSM2_CONF` and the PIN in its environment.
fn reexec_with_token(args: &[String]) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens)?;
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "bench"])
        .args(["--so-pin", "12345678", "--pin", PIN])
        .env("SOFTHSM2_CONF", &conf)
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    let status = Command::new(std::env::current_exe()?)
        .args(args)
        .env("SOFTHSM2_CONF", &conf)
        .env(PIN_ENV, PIN)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("benchmark run failed: {status}").into())
    }
}

fn config(dir: &Path) -> Res<CaConfig> {
    let uri = |object: &str| {
        format!("pkcs11:token=bench;object={object}?module-path={MODULE}&pin-source=env:{PIN_ENV}")
    };
    let path = dir.join("ca.toml");
    std::fs::write(
        &path,
        format!(
            "trust_domain = \"corp.example\"\ndatabase = \"ca.db\"\n[keys]\nroot = \"{}\"\nissuing = \"{}\"\nlog = \"{}\"\n",
            uri("root"),
            uri("issuing"),
            uri("log")
        ),
    )?;
    Ok(CaConfig::load(&path)?)
}

/// Raw signatures per second through the issuing key (ward's PKCS#11
/// signer: SHA-256 in software, CKM_ECDSA, DER encoding).
fn sign_rate(ca: &Ca, threads: usize, secs: f64) -> Res<f64> {
    let key = ca.issuing_key();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let total = std::thread::scope(|s| -> Res<u64> {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let key = Arc::clone(&key);
                s.spawn(move || -> Res<u64> {
                    let mut msg = [0u8; 300];
                    msg[0] = u8::try_from(i % 256).unwrap_or(0);
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        msg[1..9].copy_from_slice(&n.to_le_bytes());
                        key.sign(&msg)?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h.join().map_err(|_| "sign thread panicked")??;
        }
        Ok(total)
    })?;
    #[allow(clippy::cast_precision_loss)]
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Enrolments per second, `count` of them spread over `threads` threads.
fn issue_rate(ca: &Arc<Ca>, count: usize, threads: usize) -> Res<f64> {
    let mut work = Vec::with_capacity(count);
    for i in 0..count {
        let t = authority::create_token(
            ca.config(),
            ca.store().as_ref(),
            &TokenSpec {
                identity: format!("spiffe://corp.example/ns/bench/sa/w{i}"),
                ttl: Duration::from_secs(600),
                profile: Profile::Workload,
                dns_names: vec![],
                email: None,
            },
        )?;
        let key = rcgen::KeyPair::generate()?;
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)?
            .pem()?;
        work.push((t.secret, csr));
    }
    let work = Mutex::new(work);
    let started = Instant::now();
    std::thread::scope(|s| -> Res<()> {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> Res<()> {
                    loop {
                        let next = work.lock().map_err(|_| "work lock poisoned")?.pop();
                        let Some((token, csr)) = next else {
                            return Ok(());
                        };
                        ca.enroll(&token, &csr)?;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "enrol thread panicked")??;
        }
        Ok(())
    })?;
    #[allow(clippy::cast_precision_loss)]
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
