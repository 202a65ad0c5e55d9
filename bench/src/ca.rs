//! CA figures, in one process against one SoftHSM2 token:
//!
//! - `hsm-sign-1s` / `hsm-sign-2s`: raw ECDSA P-256 signatures per second
//!   through ward's own PKCS#11 signer (SHA-256 in software, CKM_ECDSA,
//!   DER encoding), on 1 and 2 threads (= sessions). The floor.
//! - `issue-log-off` / `issue-log-on`: certificates per second through the
//!   real HTTPS API (`POST /v1/enroll` with a fresh one-time token and CSR
//!   each, a new TLS connection per request as `CaClient` does), from a
//!   CA with its built-in transparency log (`issue-log-on`, what `ward ca
//!   serve` runs: the entry is committed before the answer) and from a
//!   second CA whose log sink records nothing (`issue-log-off`).
//!
//! The caller must have set `SOFTHSM2_CONF` to a config whose token
//! `--token` exists, and the PIN in the environment variable `--pin-env`.
//! Each round measures every figure once, so drift hits all of them. Prints rows of
//! the harness's results format.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ward_ca::authority::{self, NoLog, TokenSpec, fingerprint};
use ward_ca::client::{CaClient, RootPin};
use ward_ca::profile::Profile;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Options of `ward-bench ca`.
pub struct Opts<'a> {
    pub dir: &'a Path,
    pub token: &'a str,
    pub pin_env: &'a str,
    pub rounds: usize,
    pub sign_secs: f64,
    pub issue_count: usize,
    pub concurrency: usize,
}

fn row(target: &str, figure: &str, round: usize, value: f64) {
    println!("ca\t{target}\t{figure}\tper s\thigher\t{round}\t{value:.1}");
}

fn sign_rate(key: &ward_ca::keys::CaKey, threads: usize, secs: f64) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let counts = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let key = Arc::clone(key);
                s.spawn(move || -> anyhow::Result<u64> {
                    let mut n = 0u64;
                    let mut msg = [0u8; 256];
                    msg[0] = u8::try_from(i % 256).unwrap_or(0);
                    while Instant::now() < deadline {
                        msg[1..9].copy_from_slice(&n.to_le_bytes());
                        key.sign(&msg)
                            .map_err(|e| anyhow::anyhow!("HSM sign: {e}"))?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("sign thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<u64>>>()
    })?;
    #[allow(clippy::cast_precision_loss)]
    Ok(counts.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64())
}

async fn issue_rate(
    ca: &Arc<ward_ca::Ca>,
    url: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    // Tokens and CSRs are made before the clock starts: the figure is the
    // API's issuance, not the client's key generation.
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
    let work = Arc::new(tokio::sync::Mutex::new(work));
    let client = CaClient::new(url, RootPin::Fingerprint(fingerprint(ca.root_der())))?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let work = Arc::clone(&work);
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Some((token, csr)) = work.lock().await.pop() else {
                    return Ok::<_, anyhow::Error>(());
                };
                client.enroll(&token, &csr).await.context("enrol")?;
            }
        }));
    }
    for t in tasks {
        t.await.context("enrol task panicked")??;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

struct Running {
    ca: Arc<ward_ca::Ca>,
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), ward_ca::Error>>,
}

/// Initialises a CA named `name` (own keys in the token, own database) and
/// serves its API on a free loopback port.
async fn start(o: &Opts<'_>, name: &str) -> anyhow::Result<Running> {
    let dir = o.dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let uri = |object: &str| {
        format!(
            "pkcs11:token={};object={name}-{object}?module-path={MODULE}&pin-source=env:{}",
            o.token, o.pin_env
        )
    };
    let cfg_path = dir.join("ca.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "trust_domain = \"corp.example\"\ndatabase = \"ca.db\"\n[server]\nlisten = \"127.0.0.1:0\"\n[keys]\nroot = \"{}\"\nissuing = \"{}\"\nlog = \"{}\"\n",
            uri("root"),
            uri("issuing"),
            uri("log")
        ),
    )?;
    let cfg = ward_ca::settings::CaConfig::load(&cfg_path)?;
    authority::init(&cfg).context("ward ca init")?;
    let ca = Arc::new(ward_ca::Ca::open(cfg)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://localhost:{}", listener.local_addr()?.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_ca = Arc::clone(&ca);
    let server = tokio::spawn(async move {
        ward_ca::server::serve(server_ca, listener, async {
            let _ = stopped.await;
        })
        .await
    });
    Ok(Running {
        ca,
        url,
        stop,
        server,
    })
}

/// Runs the CA figures and prints result rows.
pub async fn run(o: Opts<'_>) -> anyhow::Result<()> {
    std::fs::create_dir_all(o.dir)?;
    ward_ca::server::install_crypto_provider();
    // Two CAs in the same token: one with its built-in transparency log
    // (what `ward ca serve` runs), one with the log replaced by a sink that
    // records nothing. Same code path otherwise.
    let on = start(&o, "logon").await?;
    let off = start(&o, "logoff").await?;
    off.ca.set_log(Arc::new(NoLog));
    let key = on.ca.issuing_key();
    // Warm-up: first sessions, first SQLite pages, first handshakes.
    sign_rate(&key, 1, 0.2)?;
    issue_rate(&on.ca, &on.url, 5, 1).await?;
    issue_rate(&off.ca, &off.url, 5, 1).await?;
    for round in 1..=o.rounds {
        let k = Arc::clone(&key);
        let secs = o.sign_secs;
        let one = tokio::task::spawn_blocking(move || sign_rate(&k, 1, secs)).await??;
        row("hsm-sign-1s", "signatures/s", round, one);
        let k = Arc::clone(&key);
        let two = tokio::task::spawn_blocking(move || sign_rate(&k, 2, secs)).await??;
        row("hsm-sign-2s", "signatures/s", round, two);
        let v = issue_rate(&off.ca, &off.url, o.issue_count, o.concurrency).await?;
        row("issue-log-off", "certificates/s", round, v);
        let v = issue_rate(&on.ca, &on.url, o.issue_count, o.concurrency).await?;
        row("issue-log-on", "certificates/s", round, v);
    }
    for r in [on, off] {
        let _ = r.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), r.server).await;
    }
    Ok(())
}
