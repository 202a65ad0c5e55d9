//! `ward ca …`: initialise, serve and administer the certificate authority.
//!
//! Secrets: the HSM PIN comes from the key URI's `pin-source` (env or file),
//! never from arguments; a new enrolment token is printed once on stdout
//! and never logged.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Subcommand;
use ward_ca::authority::{self, Revoker, TokenSpec, fingerprint};
use ward_ca::client::{CaClient, RootPin};
use ward_ca::keys::{KeyOpener, backend_name};
use ward_ca::profile::Profile;
use ward_ca::settings::{CaConfig, parse_duration, parse_time};
use ward_ca::store::{CertFilter, SqliteStore, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate the root, issuing and log keys in the HSM and create the CA.
    Init {
        /// CA config file (key URIs, trust domain, database path).
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
        /// Also write the root certificate (PEM) here, for pinning.
        #[arg(long)]
        root_out: Option<PathBuf>,
    },
    /// Serve the CA's HTTPS API until interrupted.
    Serve {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
    },
    /// Create, list and revoke one-time enrolment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Issue a certificate offline from a CSR (bootstrapping a gateway).
    /// Prints the chain (leaf, intermediate) as PEM.
    Issue {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
        /// PEM certificate signing request.
        #[arg(long)]
        csr: PathBuf,
        /// SPIFFE ID the certificate is for.
        #[arg(long)]
        identity: String,
        /// Certificate profile: `workload`, `user` or `server`.
        #[arg(long, default_value = "workload")]
        profile: String,
        /// DNS names (or IP addresses) to add; adds serverAuth.
        #[arg(long)]
        dns: Vec<String>,
        /// rfc822Name for user certificates.
        #[arg(long)]
        email: Option<String>,
        /// Lifetime, e.g. `24h` (default: the profile's; at most 7d).
        #[arg(long)]
        ttl: Option<String>,
        /// Write the chain here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a certificate by serial: online through a running CA's API
    /// (`--ca URL --fingerprint --cert --key`, as an admin or the holder),
    /// or offline in the database (`--config`, only while no `ward ca serve`
    /// holds it). The CRL picks it up at once.
    Revoke {
        /// CA config file: revoke offline, directly in the database
        /// (default `ca.toml` when `--ca` is not given).
        #[arg(long, conflicts_with_all = ["ca", "fingerprint", "cert", "key"])]
        config: Option<PathBuf>,
        /// URL of a running CA (`https://host:port`): revoke through its API.
        #[arg(long, value_name = "URL", requires_all = ["fingerprint", "cert", "key"])]
        ca: Option<String>,
        /// SHA-256 fingerprint of the CA root (`sha256:<hex>`), pinned for `--ca`.
        #[arg(long, requires = "ca")]
        fingerprint: Option<String>,
        /// Client certificate chain (PEM, leaf first) for `--ca`: an
        /// identity in `server.admins` or allowed `ca:Revoke` by the admin
        /// policy, or the certificate being revoked itself.
        #[arg(long, value_name = "PEM", requires = "ca")]
        cert: Option<PathBuf>,
        /// Private key of `--cert` (PEM); read, never printed.
        #[arg(long, value_name = "PEM", requires = "ca")]
        key: Option<PathBuf>,
        /// Serial number (hex).
        #[arg(long)]
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, affiliationChanged,
        /// superseded, cessationOfOperation, privilegeWithdrawn.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// List issued certificates, newest first.
    List {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
        /// Only this SPIFFE ID.
        #[arg(long)]
        identity: Option<String>,
        /// Only certificates issued at or after this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show key backend, token, root/intermediate fingerprints and expiry, counts.
    Status {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new one-time enrolment token bound to an identity.
    Create {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
        /// SPIFFE ID, or a pattern ending in `/*`, the token may enrol.
        #[arg(long)]
        identity: String,
        /// How long the token stays valid, e.g. `15m`.
        #[arg(long, default_value = "15m")]
        ttl: String,
        /// Certificate profile: `workload` or `user`.
        #[arg(long, default_value = "workload")]
        profile: String,
        /// DNS names the certificate will carry (adds serverAuth).
        #[arg(long)]
        dns: Vec<String>,
        /// E-mail address for `user` certificates (rfc822Name SAN).
        #[arg(long)]
        email: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
    },
    /// Revoke an unused token.
    Revoke {
        /// CA config file.
        #[arg(long, default_value = "ca.toml")]
        config: PathBuf,
        /// Token id as printed by `token list`.
        id: String,
    },
}

fn load(config: &Path) -> anyhow::Result<CaConfig> {
    Ok(CaConfig::load(config)?)
}

fn store(cfg: &CaConfig) -> anyhow::Result<SqliteStore> {
    Ok(SqliteStore::open(&cfg.database)?)
}

fn when(unix: i64) -> String {
    ward_ca::settings::format_time(unix)
}

fn now() -> i64 {
    ward_ca::settings::unix_now()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Init { config, root_out } => init(&config, root_out.as_deref()),
        Command::Serve { config } => serve(&config),
        Command::Token { command } => token(command),
        Command::Issue {
            config,
            csr,
            identity,
            profile,
            dns,
            email,
            ttl,
            out,
        } => {
            let cfg = load(&config)?;
            let csr_pem = std::fs::read_to_string(&csr)
                .with_context(|| format!("reading CSR {}", csr.display()))?;
            let profile: Profile = profile.parse()?;
            let ttl = ttl.as_deref().map(parse_duration).transpose()?;
            let ca = ward_ca::Ca::open(cfg)?;
            let issued =
                ca.issue_offline(&csr_pem, &identity, profile, &dns, email.as_deref(), ttl)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &issued.chain_pem)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "issued {} for {} (until {})",
                        issued.serial, issued.identity, issued.not_after
                    );
                }
                None => print!("{}", issued.chain_pem),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Revoke {
            config,
            ca,
            fingerprint,
            cert,
            key,
            serial,
            reason,
        } => match (ca, fingerprint, cert, key) {
            (Some(url), Some(fingerprint), Some(cert), Some(key)) => {
                let online = Online {
                    url: &url,
                    fingerprint: &fingerprint,
                    cert: &cert,
                    key: &key,
                };
                revoke_online(&online, &serial, &reason)
            }
            (None, None, None, None) => {
                let config = config.unwrap_or_else(|| PathBuf::from("ca.toml"));
                revoke_offline(&config, &serial, &reason)
            }
            // clap's `requires` makes this unreachable; say so anyway.
            _ => anyhow::bail!(
                "--ca needs --fingerprint sha256:<hex>, --cert PEM and --key PEM together"
            ),
        },
        Command::List {
            config,
            identity,
            since,
            json,
        } => {
            let cfg = load(&config)?;
            let filter = CertFilter {
                identity,
                since: since.as_deref().map(parse_time).transpose()?,
                until: None,
            };
            let certs = store(&cfg)?.list_certs(&filter)?;
            let mut out = std::io::stdout().lock();
            for c in certs {
                let state = match c.revoked_at {
                    Some(_) => "revoked",
                    None if c.not_after <= now() => "expired",
                    None => "valid",
                };
                if json {
                    let v = serde_json::json!({
                        "serial": c.serial, "identity": c.identity, "profile": c.profile,
                        "not_before": when(c.not_before), "not_after": when(c.not_after),
                        "requester": c.requester, "created_at": when(c.created_at),
                        "state": state, "revoked_by": c.revoked_by, "reason": c.reason,
                    });
                    writeln!(out, "{v}")?;
                } else {
                    writeln!(
                        out,
                        "{}  {:<8} {:<8} {}  {}  {}",
                        c.serial,
                        state,
                        c.profile,
                        when(c.not_after),
                        c.requester,
                        c.identity
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config } => status(&config),
    }
}

/// Where and as whom `ward ca revoke --ca` talks to a running CA.
struct Online<'a> {
    url: &'a str,
    fingerprint: &'a str,
    cert: &'a Path,
    key: &'a Path,
}

/// `POST /v1/revoke` as the identity in `--cert`. A refusal (403 not an
/// admin, 404 unknown serial, 409 already revoked, …) is an error naming
/// the CA's status, code and message. The key is read here and handed to
/// rustls only; it never reaches a message.
fn revoke_online(online: &Online<'_>, serial: &str, reason: &str) -> anyhow::Result<ExitCode> {
    let chain_pem = std::fs::read_to_string(online.cert)
        .with_context(|| format!("reading the client certificate {}", online.cert.display()))?;
    let key_pem = std::fs::read_to_string(online.key)
        .with_context(|| format!("reading the client key {}", online.key.display()))?;
    let client = CaClient::new(
        online.url,
        RootPin::Fingerprint(online.fingerprint.to_owned()),
    )
    .with_context(|| format!("the CA at {}", online.url))?
    .with_client_cert(&chain_pem, &key_pem)
    .with_context(|| {
        format!(
            "using {} and {} as the client identity",
            online.cert.display(),
            online.key.display()
        )
    })?;
    drop(key_pem);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Bounded: the client gives up after `client::REQUEST_TIMEOUT`.
    let answer = rt
        .block_on(client.revoke(serial, Some(reason)))
        .with_context(|| format!("revoking {serial} through {}", online.url))?;
    println!(
        "revoked {} at {} reason {reason} (answered by {})",
        answer.serial,
        when(answer.revoked_at),
        online.url
    );
    Ok(ExitCode::SUCCESS)
}

/// Revokes directly in the database. While `ward ca serve` holds it, the
/// error says how to revoke through the running CA instead.
fn revoke_offline(config: &Path, serial: &str, reason: &str) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    let ca = match ward_ca::Ca::open(cfg.clone()) {
        Ok(ca) => ca,
        Err(e) if e.code() == "ca_running" => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot revoke offline while the CA serves this database; revoke through it: {}",
                online_hint(&cfg, serial)
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let rec = ca.revoke(serial, reason, &Revoker::Operator)?;
    println!("revoked {} ({}) reason {reason}", rec.serial, rec.identity);
    Ok(ExitCode::SUCCESS)
}

/// The `ward ca revoke --ca …` command for this CA, filled in as far as the
/// config and the database tell (address, root fingerprint, serial).
fn online_hint(cfg: &CaConfig, serial: &str) -> String {
    let host = cfg
        .server
        .dns_names
        .first()
        .cloned()
        .unwrap_or_else(|| cfg.server.listen.ip().to_string());
    let url = match cfg.server.listen.port() {
        0 => format!("https://{host}:PORT"),
        port => format!("https://{host}:{port}"),
    };
    let fp = store(cfg)
        .ok()
        .and_then(|st| st.authority().ok().flatten())
        .map(|a| fingerprint(&a.root_der))
        .unwrap_or_else(|| "sha256:<root fingerprint>".into());
    format!(
        "ward ca revoke --ca {url} --fingerprint {fp} --cert admin-cert.pem --key admin-key.pem --serial {serial}"
    )
}

fn init(config: &Path, root_out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    let report = authority::init(&cfg)?;
    if let Some(path) = root_out {
        std::fs::write(path, authority::cert_pem(&report.root_der))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("root:         {}", fingerprint(&report.root_der));
    println!("intermediate: {}", fingerprint(&report.issuing_der));
    println!(
        "log key:      {} (SubjectPublicKeyInfo)",
        fingerprint(&report.log_spki)
    );
    println!("keys:         {}", backend_name(&cfg.issuing_key()?));
    println!("database:     {}", cfg.database.display());
    Ok(ExitCode::SUCCESS)
}

fn serve(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    let listen = cfg.server.listen;
    let ca = Arc::new(ward_ca::Ca::open(cfg)?);
    ward_ca::server::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        // One line on stdout so scripts (and tests) learn the port.
        println!("serving https://{addr} root {}", fingerprint(ca.root_der()));
        std::io::stdout().flush()?;
        tracing::info!(%addr, "ward ca serving");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        ward_ca::server::serve(ca, listener, async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("ward ca: shutting down");
        })
        .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            config,
            identity,
            ttl,
            profile,
            dns,
            email,
        } => {
            let cfg = load(&config)?;
            let spec = TokenSpec {
                identity,
                ttl: parse_duration(&ttl)?,
                profile: profile.parse()?,
                dns_names: dns,
                email,
            };
            let t = authority::create_token(&cfg, &store(&cfg)?, &spec)?;
            eprintln!(
                "token {} for {} ({}) expires {}; shown once:",
                t.record.id,
                t.record.identity,
                t.record.profile,
                when(t.record.expires_at)
            );
            println!("{}", t.secret);
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { config } => {
            let cfg = load(&config)?;
            let n = now();
            for t in store(&cfg)?.list_tokens()? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.used_at.is_some() {
                    "used"
                } else if t.expires_at <= n {
                    "expired"
                } else {
                    "usable"
                };
                println!(
                    "{}  {:<7} {:<8} {}  {}{}",
                    t.id,
                    state,
                    t.profile,
                    when(t.expires_at),
                    t.identity,
                    if t.dns_names.is_empty() {
                        String::new()
                    } else {
                        format!("  dns={}", t.dns_names.join(","))
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { config, id } => {
            let cfg = load(&config)?;
            store(&cfg)?.revoke_token(&id, now())?;
            println!("token {id} revoked");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn status(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    let st = store(&cfg)?;
    let Some(auth) = st.authority()? else {
        anyhow::bail!("{} holds no CA; run `ward ca init`", cfg.database.display());
    };
    println!("trust domain: {}", cfg.trust_domain);
    println!("root key:     {}", backend_name(&cfg.root_key()?));
    println!("issuing key:  {}", backend_name(&cfg.issuing_key()?));
    println!("log key:      {}", backend_name(&cfg.log_key()?));
    for (name, der) in [
        ("root", &auth.root_der),
        ("intermediate", &auth.issuing_der),
    ] {
        let expiry = x509_not_after(der).map(when).unwrap_or_else(|| "?".into());
        println!("{name:<13} {}  expires {expiry}", fingerprint(der));
    }
    let hsm = match KeyOpener::new().open(&cfg.issuing_key()?) {
        Ok(_) => "reachable, issuing key present".to_string(),
        Err(e) => format!("NOT usable: {e}"),
    };
    println!("hsm:          {hsm}");
    let c = st.counts(now())?;
    println!(
        "certificates: {} issued, {} active, {} revoked; {} usable tokens",
        c.issued, c.active, c.revoked, c.usable_tokens
    );
    println!("crl validity: {} s", authority::CRL_VALIDITY.as_secs());
    Ok(ExitCode::SUCCESS)
}

fn x509_not_after(der: &[u8]) -> Option<i64> {
    ward_ca::authority::not_after(der)
}
