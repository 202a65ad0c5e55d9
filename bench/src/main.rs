//! `ward-bench`: the Rust half of `bench/run`. The shell script starts and
//! stops the processes, pins CPUs and alternates targets; this binary
//! makes the certificates, is the upstream, measures what no off-the-shelf
//! tool does for us (idle-connection memory, CA and policy figures), and
//! writes the report. It never asserts a timing: it measures and reports.

mod ca;
mod idle;
mod load;
mod pki;
mod policy;
mod report;
mod tls;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "ward's benchmark helper (driven by bench/run)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write root, intermediate, server and client certificates into DIR.
    Pki { dir: PathBuf },
    /// Serve the bench bodies on a plain and an mTLS listener until killed.
    Upstream {
        /// Directory of `pki` output.
        #[arg(long)]
        pki: PathBuf,
        #[arg(long, default_value = "127.0.0.1:0")]
        plain: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:0")]
        tls: SocketAddr,
    },
    /// Built-in mTLS HTTP/1.1 load generator (oha-shaped JSON on stdout).
    Load {
        #[arg(long)]
        pki: PathBuf,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long, default_value = "localhost")]
        host: String,
        #[arg(short = 'c', long, default_value_t = 16)]
        connections: usize,
        /// Seconds.
        #[arg(short = 'z', long, default_value_t = 2.0)]
        duration: f64,
        /// A new connection (full mTLS handshake) for every request.
        #[arg(long)]
        new_conn: bool,
    },
    /// Print `req/s p50 p99 success` from an oha / load JSON file.
    Extract { file: PathBuf },
    /// Memory per idle mTLS connection of the processes PIDS.
    Idle {
        #[arg(long)]
        pki: PathBuf,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Comma-separated pids whose RSS is summed.
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
    },
    /// Raw HSM sign rate vs issuance through the API, log off and on.
    Ca {
        /// Working directory (CA config and database).
        #[arg(long)]
        dir: PathBuf,
        /// SoftHSM token label (SOFTHSM2_CONF must point at its config).
        #[arg(long)]
        token: String,
        /// Environment variable holding the user PIN.
        #[arg(long, default_value = "WARD_BENCH_HSM_PIN")]
        pin_env: String,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds per raw-sign measurement.
        #[arg(long, default_value_t = 2.0)]
        sign_secs: f64,
        /// Certificates per issuance measurement.
        #[arg(long, default_value_t = 300)]
        issue_count: usize,
        /// Concurrent API clients.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// ward-policy evaluation timings at the given statement counts.
    Policy {
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 30)]
        samples: usize,
        /// Also write the generated documents here (for the Cedar project).
        #[arg(long)]
        write_docs: Option<PathBuf>,
    },
    /// Write latest.md and the SVG charts from the raw rows.
    Report {
        #[arg(long)]
        raw: PathBuf,
        #[arg(long)]
        meta: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    tls::install_provider();
    match Cli::parse().command {
        Cmd::Pki { dir } => pki::generate(&dir),
        Cmd::Upstream { pki, plain, tls } => runtime()?.block_on(upstream::run(&pki, plain, tls)),
        Cmd::Load {
            pki,
            addr,
            path,
            host,
            connections,
            duration,
            new_conn,
        } => runtime()?.block_on(load::run(
            &pki,
            addr,
            &host,
            &path,
            connections,
            Duration::from_secs_f64(duration),
            new_conn,
        )),
        Cmd::Extract { file } => load::extract(&file),
        Cmd::Idle { pki, addr, n, pids } => runtime()?.block_on(idle::run(&pki, addr, n, &pids)),
        Cmd::Ca {
            dir,
            token,
            pin_env,
            rounds,
            sign_secs,
            issue_count,
            concurrency,
        } => runtime()?.block_on(ca::run(ca::Opts {
            dir: &dir,
            token: &token,
            pin_env: &pin_env,
            rounds,
            sign_secs,
            issue_count,
            concurrency,
        })),
        Cmd::Policy {
            sizes,
            samples,
            write_docs,
        } => {
            if let Some(d) = write_docs {
                policy::write_docs(&d, &sizes)?;
            }
            policy::run(&sizes, samples)
        }
        Cmd::Report { raw, meta, out } => report::run(&raw, &meta, &out),
    }
}
