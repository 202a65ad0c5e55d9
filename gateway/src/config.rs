//! `gateway.toml`: what the gateway listens on, whom it trusts and where it
//! sends traffic.
//!
//! Every struct denies unknown keys (a misspelt `tls13_onyl` must not
//! silently leave TLS 1.2 on), every option has a safe default, and
//! relative paths are resolved against the config file's directory so that
//! a config works the same from any working directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;
use crate::identity::TrustDomain;

/// The whole gateway config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the mTLS listener (TCP; HTTP/3 shares it on UDP).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin listener (`/metrics`, `/healthz`,
    /// `/readyz`, JWKS). Loopback by default: it is not authenticated.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// The SPIFFE trust domain every client identity must belong to.
    pub trust_domain: TrustDomain,
    /// PEM file with the CA certificates client chains must lead to.
    pub trust_bundle: PathBuf,
    /// The gateway's own certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// The gateway's own private key (PEM, PKCS#8 / SEC1 / PKCS#1).
    pub key: PathBuf,
    /// CA certificates (PEM) that HTTPS upstreams' certificates must chain
    /// to; the trust bundle when unset.
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// CRL files (PEM or DER). A certificate listed in any of them is
    /// refused at the handshake.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// Fetch the CRL from the CA on an interval (optional).
    #[serde(default)]
    pub crl_fetch: Option<CrlFetch>,
    /// Directory of policy documents (and `groups.json`).
    pub policy_dir: PathBuf,
    /// Where every decision is appended as one JSON line.
    #[serde(default = "default_decision_log")]
    pub decision_log: PathBuf,
    /// Refuse TLS 1.2 and offer only TLS 1.3.
    #[serde(default)]
    pub tls13_only: bool,
    /// How often watched files are polled for changes (seconds; 0 = only on
    /// SIGHUP).
    #[serde(default = "default_reload_poll")]
    pub reload_poll_secs: u64,
    /// Resource limits and timeouts.
    #[serde(default)]
    pub limits: Limits,
    /// HTTP/3 (QUIC) on the same address over UDP.
    #[serde(default)]
    pub http3: Http3,
    /// HTTP routes, matched by host and longest path prefix.
    #[serde(default)]
    pub http_routes: Vec<HttpRoute>,
    /// TCP routes, matched by the TLS server name (SNI).
    #[serde(default)]
    pub tcp_routes: Vec<TcpRoute>,
}

/// Where and how often to fetch the CRL from the CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlFetch {
    /// The CA's API, `https://host:port`.
    pub url: String,
    /// `sha256:<hex>` of the CA root; the first certificate of the trust
    /// bundle when unset.
    #[serde(default)]
    pub root_pin: Option<String>,
    /// Seconds between fetches.
    #[serde(default = "default_crl_interval")]
    pub interval_secs: u64,
    /// Seconds one fetch may take.
    #[serde(default = "default_crl_timeout")]
    pub timeout_secs: u64,
    /// Where the fetched CRL is written; added to `crls` if not listed.
    pub file: PathBuf,
}

fn default_crl_interval() -> u64 {
    60
}
fn default_crl_timeout() -> u64 {
    10
}

/// Limits and timeouts; the defaults are meant to be safe on the internet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most client connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Most connections one identity (SPIFFE ID) may hold open at once.
    pub max_connections_per_identity: usize,
    /// Seconds a client has to complete the TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds a client connection may carry no bytes at all before it is
    /// closed (0 = never).
    pub idle_timeout_secs: u64,
    /// Seconds an HTTP/1.1 client has to send the request headers.
    pub header_read_timeout_secs: u64,
    /// Largest HTTP/1.1 header block in bytes (and HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most request headers (HTTP/1.1).
    pub max_headers: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Seconds to connect to an upstream before answering 502.
    pub upstream_connect_timeout_secs: u64,
    /// Seconds to wait for the upstream's response headers before 504.
    pub upstream_timeout_secs: u64,
    /// Seconds an idle pooled upstream connection is kept.
    pub upstream_idle_secs: u64,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Lifetime of an `X-Ward-Assertion` JWT (at most 300).
    pub assertion_ttl_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_identity: 512,
            handshake_timeout_secs: 10,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 300,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_concurrent_streams: 200,
            upstream_connect_timeout_secs: 5,
            upstream_timeout_secs: 60,
            upstream_idle_secs: 90,
            shutdown_grace_secs: 30,
            assertion_ttl_secs: 300,
        }
    }
}

/// HTTP/3 over QUIC, served on `listen` over UDP with the same client
/// verifier, routes, policy and decision log as TCP (see `quic.rs`).
///
/// The handshake timeout and idle timeout are the ones of `[limits]`
/// (`handshake_timeout_secs`, `idle_timeout_secs`), as are the connection
/// limits, so both transports are bounded alike. 0-RTT is always off and has
/// no option: a replayed early request must never be proxied as a new one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http3 {
    /// Serve HTTP/3 and advertise it with `Alt-Svc` on TCP responses.
    pub enabled: bool,
    /// Most concurrent request streams one QUIC connection may open
    /// (QUIC `initial_max_streams_bidi`; the HTTP/2 limit's counterpart).
    pub max_concurrent_streams: u32,
    /// `ma` of the `Alt-Svc: h3=":PORT"` header (seconds).
    pub alt_svc_max_age_secs: u64,
}

impl Default for Http3 {
    fn default() -> Self {
        Http3 {
            enabled: true,
            max_concurrent_streams: 100,
            alt_svc_max_age_secs: 86_400,
        }
    }
}

/// Whether a route enforces the policy or also tries a candidate one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Decide with the policy directory.
    #[default]
    Enforce,
    /// Decide with the policy directory, and also evaluate the route's
    /// candidate policy and log where it differs (never enforced).
    Shadow,
}

/// An HTTP route: requests whose host and path match go to `upstream`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    /// Route name, used in the resource `route/<name><path>`.
    pub name: String,
    /// Host (from `Host` or `:authority`, without port), case-insensitive.
    pub host: String,
    /// Path prefix, segment-aware: `/api` matches `/api` and `/api/x`, not
    /// `/apix`.
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    /// Upstream base URL, `http://host:port` or `https://host:port` (TLS
    /// verified against `upstream_ca`, presenting the gateway's own
    /// certificate if the upstream asks: mTLS).
    pub upstream: String,
    /// Speak HTTP/2 to the upstream (prior knowledge on `http://`, ALPN on
    /// `https://`), e.g. for gRPC. HTTP/1.1 otherwise.
    #[serde(default)]
    pub http2: bool,
    /// `enforce` (default) or `shadow`.
    #[serde(default)]
    pub mode: Mode,
    /// Candidate policy directory for `shadow` mode.
    #[serde(default)]
    pub candidate_policy_dir: Option<PathBuf>,
    /// Also send the client's leaf certificate in the RFC 9440
    /// `Client-Cert` header (a client-supplied one is always removed).
    #[serde(default)]
    pub forward_client_cert: bool,
}

/// A TCP route: connections whose SNI matches are tunnelled to `upstream`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpRoute {
    /// Route name, used in the resource `route/<name>`.
    pub name: String,
    /// TLS server name the client asks for.
    pub sni: String,
    /// Upstream `host:port`.
    pub upstream: String,
    /// `enforce` (default) or `shadow`.
    #[serde(default)]
    pub mode: Mode,
    /// Candidate policy directory for `shadow` mode.
    #[serde(default)]
    pub candidate_policy_dir: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9443))
}
fn default_decision_log() -> PathBuf {
    PathBuf::from("decisions.jsonl")
}
fn default_reload_poll() -> u64 {
    5
}
fn default_prefix() -> String {
    "/".to_string()
}

impl Config {
    /// Reads, parses, resolves relative paths and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let mut config: Config = ward_ca::config::load(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve(base);
        config.validate(path)?;
        Ok(config)
    }

    /// Makes every relative path relative to `base` (the config's folder).
    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.trust_bundle);
        fix(&mut self.cert);
        fix(&mut self.key);
        fix(&mut self.policy_dir);
        fix(&mut self.decision_log);
        if let Some(p) = self.upstream_ca.as_mut() {
            fix(p);
        }
        if let Some(f) = self.crl_fetch.as_mut() {
            fix(&mut f.file);
            if !self.crls.contains(&f.file) {
                self.crls.push(f.file.clone());
            }
        }
        self.crls.iter_mut().for_each(fix);
        for r in &mut self.http_routes {
            if let Some(p) = r.candidate_policy_dir.as_mut() {
                fix(p);
            }
        }
        for r in &mut self.tcp_routes {
            if let Some(p) = r.candidate_policy_dir.as_mut() {
                fix(p);
            }
        }
    }

    /// Checks what serde cannot: names, URLs, modes and limits.
    pub fn validate(&mut self, path: &Path) -> Result<(), Error> {
        let bad = |message: String| Error::ConfigInvalid {
            path: path.to_path_buf(),
            message,
        };
        if self.http3.enabled && self.http3.max_concurrent_streams == 0 {
            return Err(bad(
                "http3.max_concurrent_streams must be at least 1 (or set http3.enabled = false)"
                    .to_string(),
            ));
        }
        if self.limits.assertion_ttl_secs == 0 || self.limits.assertion_ttl_secs > 300 {
            return Err(bad(
                "limits.assertion_ttl_secs must be between 1 and 300".to_string()
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.http_routes.iter_mut().enumerate() {
            let at = format!("http_routes[{i}]");
            if !valid_route_name(&r.name) || !names.insert(r.name.clone()) {
                return Err(bad(format!(
                    "{at}.name {:?} must be unique and use only letters, digits, '.', '-', '_'",
                    r.name
                )));
            }
            r.host = r.host.to_ascii_lowercase();
            if r.host.is_empty() {
                return Err(bad(format!("{at}.host must not be empty")));
            }
            if !r.path_prefix.starts_with('/') {
                return Err(bad(format!("{at}.path_prefix must start with '/'")));
            }
            parse_upstream_url(&r.upstream)
                .map_err(|m| bad(format!("{at}.upstream {:?}: {m}", r.upstream)))?;
            check_mode(r.mode, r.candidate_policy_dir.is_some())
                .map_err(|m| bad(format!("{at}: {m}")))?;
        }
        let mut snis = std::collections::HashSet::new();
        for (i, r) in self.tcp_routes.iter_mut().enumerate() {
            let at = format!("tcp_routes[{i}]");
            if !valid_route_name(&r.name) || !names.insert(r.name.clone()) {
                return Err(bad(format!(
                    "{at}.name {:?} must be unique and use only letters, digits, '.', '-', '_'",
                    r.name
                )));
            }
            r.sni = r.sni.to_ascii_lowercase();
            if !snis.insert(r.sni.clone()) {
                return Err(bad(format!("{at}.sni {:?} is used twice", r.sni)));
            }
            if r.upstream.rsplit_once(':').is_none() {
                return Err(bad(format!("{at}.upstream must be host:port")));
            }
            check_mode(r.mode, r.candidate_policy_dir.is_some())
                .map_err(|m| bad(format!("{at}: {m}")))?;
        }
        Ok(())
    }
}

fn check_mode(mode: Mode, has_candidate: bool) -> Result<(), String> {
    match (mode, has_candidate) {
        (Mode::Shadow, false) => Err("mode = \"shadow\" needs candidate_policy_dir".into()),
        (Mode::Enforce, true) => {
            Err("candidate_policy_dir is only used with mode = \"shadow\"".into())
        }
        _ => Ok(()),
    }
}

/// An upstream URL is `http(s)://authority` with an optional `/` path; we
/// keep scheme and authority and forward the client's own path and query.
pub fn parse_upstream_url(url: &str) -> Result<(http::uri::Scheme, http::uri::Authority), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must be http:// or https://".into());
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err("must not have a path; the client's path is forwarded as is".into());
    }
    if uri.query().is_some() {
        return Err("must not have a query".into());
    }
    let scheme = uri.scheme().cloned().ok_or("has no scheme")?;
    let authority = uri.authority().cloned().ok_or("has no host")?;
    Ok((scheme, authority))
}

fn valid_route_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
trust_domain = "corp.example"
trust_bundle = "bundle.pem"
cert = "gw.pem"
key = "gw.key"
policy_dir = "policies"
"#;

    fn parse(text: &str) -> Result<Config, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn minimal_config_has_safe_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert!(c.admin_listen.ip().is_loopback());
        assert!(!c.tls13_only);
        assert_eq!(c.limits.assertion_ttl_secs, 300);
        assert!(c.trust_bundle.is_absolute());
        assert!(c.decision_log.ends_with("decisions.jsonl"));
    }

    #[test]
    fn unknown_key_is_refused_with_its_line() {
        let e = parse(&format!("{MINIMAL}tls13_onyl = true\n")).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("tls13_onyl"), "{shown}");
        assert!(shown.contains(":7"), "{shown}");
    }

    #[test]
    fn routes_are_validated() {
        let good = format!(
            "{MINIMAL}[[http_routes]]\nname = \"ledger\"\nhost = \"Ledger.Corp.Example\"\nupstream = \"http://127.0.0.1:8080\"\n[[tcp_routes]]\nname = \"db\"\nsni = \"db.corp.example\"\nupstream = \"127.0.0.1:5432\"\n"
        );
        let c = parse(&good).unwrap();
        assert_eq!(c.http_routes[0].host, "ledger.corp.example");
        assert_eq!(c.http_routes[0].path_prefix, "/");

        let dup = format!(
            "{MINIMAL}[[http_routes]]\nname = \"a\"\nhost = \"x\"\nupstream = \"http://h:1\"\n[[tcp_routes]]\nname = \"a\"\nsni = \"y\"\nupstream = \"h:2\"\n"
        );
        assert!(parse(&dup).unwrap_err().to_string().contains("unique"));

        let ftp = format!(
            "{MINIMAL}[[http_routes]]\nname = \"a\"\nhost = \"x\"\nupstream = \"ftp://h:1\"\n"
        );
        assert!(parse(&ftp).unwrap_err().to_string().contains("http://"));

        let shadow = format!(
            "{MINIMAL}[[http_routes]]\nname = \"a\"\nhost = \"x\"\nupstream = \"http://h:1\"\nmode = \"shadow\"\n"
        );
        assert!(
            parse(&shadow)
                .unwrap_err()
                .to_string()
                .contains("candidate_policy_dir")
        );
    }

    #[test]
    fn bad_trust_domain_and_ttl_are_refused() {
        let e = parse(&MINIMAL.replace("corp.example", "Corp Example")).unwrap_err();
        assert!(e.to_string().contains("trust_domain"));
        let e = parse(&format!("{MINIMAL}[limits]\nassertion_ttl_secs = 3600\n")).unwrap_err();
        assert!(e.to_string().contains("assertion_ttl_secs"));
    }

    #[test]
    fn http3_is_on_by_default_and_its_limits_are_checked() {
        let c = parse(MINIMAL).unwrap();
        assert!(c.http3.enabled);
        assert_eq!(c.http3.max_concurrent_streams, 100);
        let e = parse(&format!("{MINIMAL}[http3]\nmax_concurrent_streams = 0\n")).unwrap_err();
        assert!(
            e.to_string().contains("http3.max_concurrent_streams"),
            "{e}"
        );
        let off = parse(&format!("{MINIMAL}[http3]\nenabled = false\n")).unwrap();
        assert!(!off.http3.enabled);
        let e = parse(&format!("{MINIMAL}[http3]\nzero_rtt = true\n")).unwrap_err();
        assert!(e.to_string().contains("zero_rtt"), "{e}");
    }
}
