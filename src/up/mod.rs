//! `ward up`: a whole ward in one process, for a first look and for demos.
//!
//! One tokio runtime runs the CA's HTTPS API, the gateway, the agent that
//! keeps the gateway's (and the demo client's) certificates fresh, and a
//! demo upstream. Everything lives under one state directory, so a second
//! `ward up` on the same directory resumes with the same CA, keys and
//! certificates instead of starting over:
//!
//! ```text
//! <dir>/
//!   hsm-pin                  user PIN of the SoftHSM2 token (0600)
//!   softhsm/                 softhsm2.conf, tokens/, so-pin (0600)
//!   ca/ca.toml ca.db         the CA (keys in the token, or ca/keys/*.pem)
//!   ca/root.pem log-key.pem  trust anchor and transparency-log key
//!   gateway/                 gateway.toml, decisions.jsonl, ca.crl
//!   gateway/identity/        the gateway's certificate (agent-managed)
//!   client/                  the demo client's certificate (agent-managed)
//!   agent.toml               both identities, renewed in-process
//!   policies/                demo.json, groups.json (written once; edit freely)
//! ```

mod hsm;
mod upstream;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Trust domain of the demo.
pub const TRUST_DOMAIN: &str = "corp.example";
/// The demo client's identity (allowed on `/`, denied on `/admin`).
pub const CLIENT_ID: &str = "spiffe://corp.example/ns/demo/sa/client";
/// The gateway's own identity.
pub const GATEWAY_ID: &str = "spiffe://corp.example/ns/ward/sa/gateway";
/// The host name clients use for the gateway (in its certificate).
pub const HOST: &str = "localhost";

/// The TCP route's server name (`ward connect --sni`), also in the
/// gateway's certificate.
pub const TCP_HOST: &str = "tcp.localhost";

/// What `ward up` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// State directory.
    pub dir: PathBuf,
    /// Gateway mTLS port on 127.0.0.1.
    pub gateway_port: u16,
    /// CA API port on 127.0.0.1.
    pub ca_port: u16,
    /// Gateway admin (metrics) port on 127.0.0.1.
    pub admin_port: u16,
    /// Use PEM key files even when SoftHSM2 is installed.
    pub file_keys: bool,
    /// Lifetime of the gateway's and the client's certificates (`1h`;
    /// `1m` shows a renewal within a minute: the agent renews at two thirds).
    pub cert_ttl: String,
}

/// Runs until SIGINT/SIGTERM; exit 0 after a clean shutdown.
pub fn run(opts: Options) -> anyhow::Result<ExitCode> {
    let dir = opts.dir.clone();
    ward_ca::settings::parse_duration(&opts.cert_ttl).context("--cert-ttl")?;
    // Every port is checked before anything is created, so a busy one
    // fails at once with the option that moves it.
    let ports = Ports {
        ca: bind_std(opts.ca_port, "CA API", "--ca-port")?,
        gateway: bind_std(opts.gateway_port, "gateway", "--gateway-port")?,
        admin: bind_std(opts.admin_port, "gateway admin listener", "--admin-port")?,
    };
    hsm::create_private_dir(&dir)?;
    let use_softhsm = choose_softhsm(&dir, opts.file_keys)?;
    // SoftHSM2 reads SOFTHSM2_CONF when the module is first initialised, and
    // only from the environment: point it at our own token directory
    // before any PKCS#11 call and before the runtime starts any thread.
    let abs_dir = std::path::absolute(&dir).context("resolving the state directory")?;
    if use_softhsm {
        hsm::write_softhsm_conf(&abs_dir)?;
        set_softhsm_conf(&hsm::softhsm_conf(&abs_dir));
    } else {
        let why = if opts.file_keys {
            "--file-keys was given"
        } else {
            "SoftHSM2 is not installed (apt-get install softhsm2)"
        };
        eprintln!(
            "WARNING: {why}: the CA keys are PEM FILES in {}, NOT protected by an HSM. Fine for a demo, never for real use.",
            abs_dir.join("ca/keys").display()
        );
    }
    let keys = hsm::prepare(&abs_dir, use_softhsm)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(opts, abs_dir, keys, ports))
}

/// Whether the CA keys are (or will be) in SoftHSM2. A directory keeps the
/// backend it was created with: switching would leave a CA whose keys are
/// elsewhere.
fn choose_softhsm(dir: &Path, file_keys: bool) -> anyhow::Result<bool> {
    let installed = Path::new(hsm::SOFTHSM_MODULE).exists();
    if dir.join("ca/keys/root.pem").exists() {
        return Ok(false);
    }
    if dir.join("hsm-pin").exists() {
        if file_keys {
            bail!(
                "{} holds a CA whose keys are in SoftHSM2; --file-keys applies only to a new directory",
                dir.display()
            );
        }
        if !installed {
            bail!(
                "{} holds a CA whose keys are in SoftHSM2, but {} is gone; install softhsm2 again",
                dir.display(),
                hsm::SOFTHSM_MODULE
            );
        }
        return Ok(true);
    }
    Ok(!file_keys && installed)
}

#[allow(
    unsafe_code,
    reason = "SoftHSM2 takes its token directory only from the environment"
)]
fn set_softhsm_conf(conf: &Path) {
    // SAFETY: called from `run` before the tokio runtime (or any other
    // thread of this process) exists, so nothing reads the environment
    // concurrently.
    unsafe { std::env::set_var("SOFTHSM2_CONF", conf) };
}

/// The paths of one state directory (absolute).
struct Layout {
    ca_dir: PathBuf,
    ca_toml: PathBuf,
    root_pem: PathBuf,
    log_key_pem: PathBuf,
    gw_dir: PathBuf,
    gw_toml: PathBuf,
    gw_identity: PathBuf,
    client: PathBuf,
    agent_toml: PathBuf,
    policies: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Self {
        let ca_dir = dir.join("ca");
        let gw_dir = dir.join("gateway");
        Self {
            ca_toml: ca_dir.join("ca.toml"),
            root_pem: ca_dir.join("root.pem"),
            log_key_pem: ca_dir.join("log-key.pem"),
            gw_toml: gw_dir.join("gateway.toml"),
            gw_identity: gw_dir.join("identity"),
            client: dir.join("client"),
            agent_toml: dir.join("agent.toml"),
            policies: dir.join("policies"),
            ca_dir,
            gw_dir,
        }
    }
}

/// The three loopback ports, bound before anything starts. The CA's is
/// used as is; the gateway's two are released just before the gateway
/// binds them itself (its API takes addresses, not sockets).
struct Ports {
    ca: std::net::TcpListener,
    gateway: std::net::TcpListener,
    admin: std::net::TcpListener,
}

/// Binds a loopback port now, or says which option moves it.
fn bind_std(port: u16, what: &str, option: &str) -> anyhow::Result<std::net::TcpListener> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpListener::bind(addr).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} for the {what}: {e}; is another `ward up` (or something else) using it? Pick another port with {option} <PORT>"
        )
    })
}

async fn run_async(
    opts: Options,
    dir: PathBuf,
    keys: hsm::Keys,
    ports: Ports,
) -> anyhow::Result<ExitCode> {
    ward_ca::server::install_crypto_provider();
    // Listen for signals before anything else starts: a Ctrl-C that comes
    // early must still mean a clean stop, not a lost signal.
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // Setup can take a while (key generation, enrolment); a Ctrl-C during
    // it stops there instead of waiting for the banner.
    let started = tokio::select! {
        r = start(&opts, &dir, &keys, ports) => r?,
        _ = int.recv() => {
            eprintln!("ward up: interrupted while starting");
            return Ok(ExitCode::SUCCESS);
        }
        _ = term.recv() => {
            eprintln!("ward up: terminated while starting");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let Running {
        mut gw_task,
        mut agent_task,
        mut ca_task,
        up_task,
        ca_stop,
        root_fp,
        up_addr,
        fresh,
    } = started;

    print_banner(&opts, &root_fp, &keys, up_addr, fresh)?;

    // A handle that completed inside the select must not be polled again.
    let (mut gw_done, mut ca_done, mut agent_done) = (false, false, false);
    let failure = tokio::select! {
        _ = int.recv() => None,
        _ = term.recv() => None,
        // The gateway and the agent return Ok only after a signal of their
        // own (the same Ctrl-C), so Ok is a clean stop.
        r = &mut gw_task => {
            gw_done = true;
            match r {
                Ok(Ok(())) => None,
                r => Some(format!("the gateway stopped: {}", join_msg(r))),
            }
        }
        r = &mut agent_task => {
            agent_done = true;
            match r {
                Ok(Ok(())) => None,
                r => Some(format!("the agent stopped: {}", join_msg(r))),
            }
        }
        r = &mut ca_task => {
            ca_done = true;
            Some(format!("the CA stopped: {}", join_msg(r)))
        }
    };
    eprintln!("ward up: shutting down");
    if failure.is_some() {
        gw_task.abort();
        agent_task.abort();
    }
    // The gateway drains by itself (it saw the signal); bounded, then the
    // agent, the CA and the upstream stop.
    if !gw_done {
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut gw_task).await;
        gw_task.abort();
    }
    if !agent_done {
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut agent_task).await;
        agent_task.abort();
    }
    let _ = ca_stop.send(());
    if !ca_done {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut ca_task).await;
        ca_task.abort();
    }
    up_task.abort();
    match failure {
        Some(msg) => bail!("{msg}"),
        None => {
            eprintln!(
                "ward up: stopped; `ward up --dir {}` resumes",
                opts.dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What [`start`] leaves running.
struct Running {
    gw_task: tokio::task::JoinHandle<Result<(), ward_gateway::Error>>,
    agent_task: tokio::task::JoinHandle<Result<(), ward_agent::Error>>,
    ca_task: tokio::task::JoinHandle<Result<(), ward_ca::Error>>,
    up_task: tokio::task::JoinHandle<()>,
    ca_stop: tokio::sync::oneshot::Sender<()>,
    root_fp: String,
    up_addr: SocketAddr,
    fresh: bool,
}

/// Creates or reopens the CA and starts everything; returns once the
/// gateway is ready.
async fn start(
    opts: &Options,
    dir: &Path,
    keys: &hsm::Keys,
    ports: Ports,
) -> anyhow::Result<Running> {
    let l = Layout::new(dir);
    hsm::create_private_dir(&l.ca_dir)?;
    hsm::create_private_dir(&l.gw_dir)?;

    let Ports {
        ca: ca_listener,
        gateway: gw_probe,
        admin: admin_probe,
    } = ports;

    // The CA: created once, reopened on every later start.
    let ca_text = format!(
        "# written by `ward up` at every start\ntrust_domain = \"{TRUST_DOMAIN}\"\ndatabase = \"ca.db\"\norganization = \"ward up\"\n\n{}\n[server]\nlisten = \"127.0.0.1:{}\"\ndns_names = [\"{HOST}\"]\n\n[profiles]\nworkload_ttl = \"{}\"\n",
        keys.toml(),
        opts.ca_port,
        opts.cert_ttl
    );
    std::fs::write(&l.ca_toml, ca_text)
        .with_context(|| format!("writing {}", l.ca_toml.display()))?;
    let cfg = ward_ca::settings::CaConfig::load(&l.ca_toml)?;
    let existing = ward_ca::store::SqliteStore::open(&cfg.database)?;
    let fresh = {
        use ward_ca::store::Store as _;
        existing.authority()?.is_none()
    };
    drop(existing);
    if fresh {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || ward_ca::authority::init(&cfg))
            .await
            .context("CA init task")?
            .context("creating the CA (keys in the token, root and intermediate)")?;
    }
    let ca = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || ward_ca::Ca::open(cfg))
            .await
            .context("CA open task")??
    };
    let ca = Arc::new(ca);
    let root_fp = ward_ca::authority::fingerprint(ca.root_der());
    std::fs::write(&l.root_pem, ward_ca::authority::cert_pem(ca.root_der()))
        .with_context(|| format!("writing {}", l.root_pem.display()))?;
    {
        let auth = ca
            .store()
            .authority()?
            .context("the CA database lost its authority row")?;
        let pem = ward_ca::translog::LogPublicKey::from_spki_der(&auth.log_spki)?.to_pem();
        std::fs::write(&l.log_key_pem, pem)
            .with_context(|| format!("writing {}", l.log_key_pem.display()))?;
    }

    ca_listener.set_nonblocking(true)?;
    let ca_listener = tokio::net::TcpListener::from_std(ca_listener)?;
    let (ca_stop, ca_stopped) = tokio::sync::oneshot::channel::<()>();
    let ca_task = tokio::spawn(ward_ca::server::serve(
        Arc::clone(&ca),
        ca_listener,
        async {
            let _ = ca_stopped.await;
        },
    ));
    let ca_url = format!("https://{HOST}:{}", opts.ca_port);

    // Identities: enrolled once with a one-time token; renewed by the
    // agent below; enrolled again only if one expired while ward was down.
    let gw_dns = vec![HOST.to_string(), TCP_HOST.to_string()];
    ensure_identity(
        &ca,
        &cfg,
        &ca_url,
        &root_fp,
        &l.gw_identity,
        GATEWAY_ID,
        &gw_dns,
    )
    .await?;
    ensure_identity(&ca, &cfg, &ca_url, &root_fp, &l.client, CLIENT_ID, &[]).await?;

    write_policies(&l.policies)?;
    let agent_text = format!(
        "# written by `ward up` at every start: the in-process agent renews both\n[identity.gateway]\nca = \"{ca_url}\"\ndir = {:?}\nfingerprint = \"{root_fp}\"\nretry_max_secs = 30\n\n[identity.client]\nca = \"{ca_url}\"\ndir = {:?}\nfingerprint = \"{root_fp}\"\nretry_max_secs = 30\n",
        l.gw_identity.display().to_string(),
        l.client.display().to_string()
    );
    std::fs::write(&l.agent_toml, agent_text)
        .with_context(|| format!("writing {}", l.agent_toml.display()))?;

    let up_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo upstream")?;
    let up_addr = up_listener.local_addr()?;
    let up_task = tokio::spawn(upstream::serve(up_listener));

    let gw_text = format!(
        r#"# written by `ward up` at every start
listen = "127.0.0.1:{gw}"
admin_listen = "127.0.0.1:{admin}"
trust_domain = "{TRUST_DOMAIN}"
trust_bundle = "../ca/root.pem"
cert = "identity/cert.pem"
key = "identity/key.pem"
policy_dir = "../policies"
decision_log = "decisions.jsonl"
reload_poll_secs = 2

[crl_fetch]
url = "{ca_url}"
root_pin = "{root_fp}"
interval_secs = 30
file = "ca.crl"

[limits]
shutdown_grace_secs = 3

# Everything a client may be allowed to reach.
[[http_routes]]
name = "demo"
host = "{HOST}"
path_prefix = "/"
upstream = "http://{up_addr}"

# Same upstream; policy lets only the group `admins` in.
[[http_routes]]
name = "admin"
host = "{HOST}"
path_prefix = "/admin"
upstream = "http://{up_addr}"

# A TCP route (matched by SNI) for `ward connect`; here to the same
# demo service, so `curl http://127.0.0.1:<local port>/` shows it works.
[[tcp_routes]]
name = "demo-tcp"
sni = "{TCP_HOST}"
upstream = "{up_addr}"
"#,
        gw = opts.gateway_port,
        admin = opts.admin_port,
    );
    std::fs::write(&l.gw_toml, gw_text)
        .with_context(|| format!("writing {}", l.gw_toml.display()))?;

    let agent_task = tokio::spawn({
        let p = l.agent_toml.clone();
        async move { ward_agent::run::run(&p).await }
    });
    drop((gw_probe, admin_probe));
    let mut gw_task = tokio::spawn({
        let p = l.gw_toml.clone();
        async move { ward_gateway::run(&p).await }
    });

    let ready = wait_ready(opts.admin_port, &mut gw_task).await;
    if let Err(e) = ready {
        let _ = ca_stop.send(());
        agent_task.abort();
        up_task.abort();
        return Err(e);
    }
    Ok(Running {
        gw_task,
        agent_task,
        ca_task,
        up_task,
        ca_stop,
        root_fp,
        up_addr,
        fresh,
    })
}

fn join_msg<E: std::fmt::Display>(r: Result<Result<(), E>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => "exited".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Polls the gateway's `/readyz` until it answers 200 (30 s at most).
async fn wait_ready(
    admin_port: u16,
    gw: &mut tokio::task::JoinHandle<Result<(), ward_gateway::Error>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if gw.is_finished() {
            let r = gw.await;
            bail!("the gateway did not start: {}", join_msg(r));
        }
        if let Ok(Ok(code)) =
            tokio::time::timeout(Duration::from_secs(2), http_status(admin_port, "/readyz")).await
            && code == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the gateway did not become ready within 30 s (admin port {admin_port})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn http_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// Makes sure `out` holds a certificate for `identity` that is valid for at
/// least two more minutes; enrols with a fresh one-time token otherwise.
async fn ensure_identity(
    ca: &Arc<ward_ca::Ca>,
    cfg: &ward_ca::settings::CaConfig,
    ca_url: &str,
    root_fp: &str,
    out: &Path,
    identity: &str,
    dns: &[String],
) -> anyhow::Result<()> {
    if let Ok(pair) = ward_agent::sink::read_current(out)
        && pair.info.identity == identity
        && pair.info.seconds_to_expiry(SystemTime::now()) > 120.0
    {
        return Ok(());
    }
    let spec = ward_ca::authority::TokenSpec {
        identity: identity.to_string(),
        ttl: Duration::from_secs(300),
        profile: ward_ca::profile::Profile::Workload,
        dns_names: dns.to_vec(),
        email: None,
    };
    let token = ward_ca::authority::create_token(cfg, &**ca.store(), &spec)?;
    // The agent takes tokens from files only (never argv); this one lives
    // for the moment of the enrolment.
    let parent = out.parent().unwrap_or(Path::new("."));
    hsm::create_private_dir(parent)?;
    let token_file = parent.join(".enrol-token");
    hsm::write_secret(&token_file, &token.secret)?;
    let token_read = ward_agent::enroll::Token::from_file(&token_file);
    let _ = std::fs::remove_file(&token_file);
    let e = ward_agent::enroll::Enrollment {
        ca: ca_url.to_string(),
        fingerprint: root_fp.to_string(),
        token: token_read?,
        out: out.to_path_buf(),
        identity: Some(identity.to_string()),
    };
    let info = ward_agent::enroll::enroll(&e)
        .await
        .with_context(|| format!("enrolling {identity}"))?;
    tracing::info!(identity, serial = %info.serial, "enrolled");
    Ok(())
}

/// The demo policy: written once, so that edits survive restarts (the
/// gateway reloads them within two seconds).
fn write_policies(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let policy = format!(
        r#"{{
  "Version": "2026-11-01",
  "Id": "ward up demo",
  "Statement": [
    {{
      "Sid": "DemoClientUsesDemo",
      "Effect": "Allow",
      "Principal": {{"Spiffe": "{CLIENT_ID}"}},
      "Action": ["http:GET", "http:HEAD", "http:POST"],
      "Resource": "route/demo/*"
    }},
    {{
      "Sid": "DemoClientTunnels",
      "Effect": "Allow",
      "Principal": {{"Spiffe": "{CLIENT_ID}"}},
      "Action": "tcp:Connect",
      "Resource": "route/demo-tcp"
    }},
    {{
      "Sid": "AdminsUseAdmin",
      "Effect": "Allow",
      "Principal": {{"Group": "admins"}},
      "Action": "http:*",
      "Resource": "route/admin/*"
    }}
  ]
}}
"#
    );
    let groups = r#"{
  "Groups": {
    "admins": ["spiffe://corp.example/user/admin"]
  }
}
"#;
    std::fs::write(dir.join("demo.json"), policy)?;
    std::fs::write(dir.join("groups.json"), groups)?;
    Ok(())
}

/// Quotes a path for a POSIX shell only when it needs it.
fn sh(p: &Path) -> String {
    let s = p.display().to_string();
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@%,".contains(&b))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// How to run this very binary from the current directory: `ward` when
/// that is what PATH finds, else its path.
fn ward_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "ward".into();
    };
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if std::fs::canonicalize(d.join("ward")).ok().as_deref() == Some(me.as_path()) {
                return "ward".into();
            }
        }
    }
    if let Ok(cwd) = std::env::current_dir()
        && let Ok(rel) = me.strip_prefix(&cwd)
    {
        return sh(&Path::new(".").join(rel));
    }
    sh(&me)
}

fn print_banner(
    opts: &Options,
    root_fp: &str,
    keys: &hsm::Keys,
    up_addr: SocketAddr,
    fresh: bool,
) -> anyhow::Result<()> {
    // Paths as the user gave the directory, so the commands work when
    // pasted into the same shell.
    let d = &opts.dir;
    let root = sh(&d.join("ca/root.pem"));
    let cert = sh(&d.join("client/cert.pem"));
    let key = sh(&d.join("client/key.pem"));
    let db = sh(&d.join("ca/ca.db"));
    let log_key = sh(&d.join("ca/log-key.pem"));
    let gw = format!("https://{HOST}:{}", opts.gateway_port);
    let ward = ward_command();
    let state = if fresh { "created" } else { "resumed" };
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "ward is up ({state} {}; Ctrl-C stops it, running it again resumes)",
        d.display()
    )?;
    writeln!(o)?;
    writeln!(
        o,
        "  CA        https://{HOST}:{}  keys: {}",
        opts.ca_port,
        keys.describe()
    )?;
    writeln!(o, "            root {root_fp}")?;
    writeln!(o, "  gateway   {gw}  as {GATEWAY_ID}")?;
    writeln!(
        o,
        "  upstream  http://{up_addr}  (demo service: echoes X-Ward-Identity)"
    )?;
    writeln!(
        o,
        "  client    {CLIENT_ID}  in {}",
        d.join("client").display()
    )?;
    writeln!(
        o,
        "  policies  {}  decisions {}",
        d.join("policies").display(),
        d.join("gateway/decisions.jsonl").display()
    )?;
    writeln!(o)?;
    writeln!(
        o,
        "Allowed by policy (200; the upstream shows the identity the gateway vouched for):"
    )?;
    writeln!(
        o,
        "  curl --cacert {root} --cert {cert} --key {key} {gw}/hello"
    )?;
    writeln!(o)?;
    writeln!(o, "Denied by policy (403 with a decision id):")?;
    writeln!(
        o,
        "  curl --cacert {root} --cert {cert} --key {key} {gw}/admin/users"
    )?;
    writeln!(o)?;
    writeln!(o, "No client certificate (refused in the TLS handshake):")?;
    writeln!(o, "  curl --cacert {root} {gw}/hello")?;
    writeln!(o)?;
    writeln!(o, "Certificates the CA issued (transparency log):")?;
    writeln!(o, "  {ward} audit search --db {db}")?;
    writeln!(o)?;
    writeln!(o, "Verify the transparency log:")?;
    writeln!(o, "  {ward} audit verify --db {db} --log-key {log_key}")?;
    writeln!(o)?;
    writeln!(o, "Metrics:")?;
    writeln!(o, "  curl http://127.0.0.1:{}/metrics", opts.admin_port)?;
    writeln!(o)?;
    o.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_only_when_a_shell_needs_it() {
        assert_eq!(
            sh(Path::new("./ward-data/ca/root.pem")),
            "./ward-data/ca/root.pem"
        );
        assert_eq!(sh(Path::new("my data/x")), "'my data/x'");
        assert_eq!(sh(Path::new("it's")), r"'it'\''s'");
    }

    #[test]
    fn a_directory_keeps_its_key_backend() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("ca/keys")).unwrap();
        std::fs::write(d.path().join("ca/keys/root.pem"), "x").unwrap();
        assert!(!choose_softhsm(d.path(), false).unwrap());
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("hsm-pin"), "x").unwrap();
        assert!(choose_softhsm(d.path(), true).is_err());
        let d = tempfile::tempdir().unwrap();
        assert!(!choose_softhsm(d.path(), true).unwrap());
    }
}
