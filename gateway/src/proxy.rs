//! HTTP routes: match, decide, and proxy to an HTTP/1.1 upstream.
//!
//! Bodies are streamed both ways (hyper `Incoming` straight into the
//! upstream request and back), never buffered whole. Client-supplied
//! `X-Ward-*` headers are removed before anything else looks at the request,
//! so neither the policy context nor the upstream can see a spoofed one.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::upstream::{Connector, SharedClientConfig};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::json;
use time::OffsetDateTime;

use crate::config::{Config, HttpRoute, Limits};
use crate::decide::{ConnInfo, Question, add_http_context};
use crate::extended_connect::Translated;
use crate::recheck::{BoxError, Guarded, OpenStreams, Standing};
use crate::server::Shared;

/// The response body type of every HTTP response the gateway sends.
pub type Body = BoxBody<Bytes, BoxError>;

/// The pooled client to upstreams.
pub type UpstreamClient = Client<Connector, RequestBody>;

/// Request bodies sent upstream: whatever the client transport gives
/// (HTTP/1.1 and HTTP/2 `Incoming` now, HTTP/3 streams later), streamed.
pub type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Builds the pooled client of one route: its connector always dials the
/// route's upstream, whatever the request URI says. The URI keeps the
/// client's own authority, so HTTP/2 upstreams get the right `:authority`,
/// and each route has its own pool, so two routes on one host never share
/// a connection to the wrong upstream.
pub fn client(
    limits: &Limits,
    route: &HttpRoute,
    scheme: Scheme,
    upstream: Authority,
    tls: SharedClientConfig,
) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(
        limits.upstream_connect_timeout_secs,
    )));
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = Connector::new(http, tls, scheme, upstream);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(limits.upstream_idle_secs))
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .set_host(false)
        .http2_only(route.http2);
    builder.build(connector)
}

/// An HTTP route with its upstream parsed once.
#[derive(Debug, Clone)]
pub struct Route {
    /// The configured route.
    pub config: HttpRoute,
    /// Upstream scheme (`http` or `https`).
    pub scheme: Scheme,
    /// Upstream authority (`host:port`).
    pub upstream: Authority,
    /// This route's pooled upstream client.
    pub client: UpstreamClient,
}

/// Parses the configured routes (already validated by the config) and
/// builds their clients.
pub fn routes(config: &Config, tls: &SharedClientConfig) -> Vec<Route> {
    config
        .http_routes
        .iter()
        .filter_map(|r| {
            let (scheme, upstream) = crate::config::parse_upstream_url(&r.upstream).ok()?;
            Some(Route {
                client: client(
                    &config.limits,
                    r,
                    scheme.clone(),
                    upstream.clone(),
                    tls.clone(),
                ),
                config: r.clone(),
                scheme,
                upstream,
            })
        })
        .collect()
}

/// Longest segment-aware path prefix among the routes of `host`.
pub fn match_route<'a>(routes: &'a [Route], host: &str, path: &str) -> Option<&'a Route> {
    routes
        .iter()
        .filter(|r| r.config.host == host && prefix_matches(&r.config.path_prefix, path))
        .max_by_key(|r| r.config.path_prefix.len())
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix)
    } else {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Paths that could mean something else to the upstream than to the policy
/// (dot segments, encoded slashes or dots, backslashes) are refused.
///
/// Also refused, because common upstreams read them as another path than the
/// policy does (issue 10's attack matrix): empty segments (`//admin`, merged
/// into `/admin` by many servers), dot segments with `;` parameters
/// (`/..;/admin`, resolved by Java servers), and percent-escapes of
/// unreserved characters, NUL or overlong UTF-8 lead bytes (`/%61dmin`,
/// `%00`, `%c0%ae`), which a decoding upstream turns into a different path.
pub fn ambiguous_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\') {
        return true;
    }
    if lower.contains("//") {
        return true;
    }
    let bytes = lower.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'%' {
            continue;
        }
        let decoded = lower
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match decoded {
            Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                return true;
            }
            Some(0 | 0xc0 | 0xc1) => return true,
            _ => {}
        }
    }
    lower.split('/').any(|seg| {
        let seg = seg.split(';').next().unwrap_or(seg);
        seg == "." || seg == ".."
    })
}

/// The request's authority (`:authority`, absolute-form or `Host`). Both
/// present and naming different hosts is refused (RFC 9113 §8.3.1): the
/// policy and the upstream must not be able to see different hosts.
fn request_authority<B>(req: &Request<B>) -> Result<Authority, &'static str> {
    // Two Host headers: the policy would see the first and an upstream may
    // use the last (RFC 9112 §3.2 requires a 400).
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return Err("more than one Host header");
    }
    let from_header = match req.headers().get(header::HOST) {
        Some(h) => Some(
            h.to_str()
                .ok()
                .and_then(|h| h.parse::<Authority>().ok())
                .ok_or("unparsable Host header")?,
        ),
        None => None,
    };
    match (req.uri().authority(), from_header) {
        (Some(a), Some(h)) if !a.host().eq_ignore_ascii_case(h.host()) => {
            Err("Host header and request authority differ")
        }
        (Some(a), _) => Ok(a.clone()),
        (None, Some(h)) => Ok(h),
        (None, None) => Err("request has no host"),
    }
}

/// A host, lowercase and without trailing dot.
fn normal_host(a: &Authority) -> String {
    a.host().trim_end_matches('.').to_ascii_lowercase()
}

/// Marks a response the gateway made itself, never an upstream's, with
/// the reason in words: a client that cannot read the JSON body (gRPC) is
/// told the reason another way ([`crate::grpc::convert`]).
#[derive(Debug, Clone)]
pub struct GatewayMade {
    /// The error, its detail and route, e.g. `denied by policy on route app`.
    pub reason: String,
    /// The decision id, when a decision was made.
    pub decision_id: Option<String>,
}

impl GatewayMade {
    fn from_json(body: &serde_json::Value) -> GatewayMade {
        let field = |k: &str| body.get(k).and_then(|v| v.as_str());
        let mut reason = field("error").unwrap_or("gateway error").to_string();
        if let Some(detail) = field("detail") {
            reason.push_str(": ");
            reason.push_str(detail);
        }
        if let Some(route) = field("route") {
            reason.push_str(" on route ");
            reason.push_str(route);
        }
        GatewayMade {
            reason,
            decision_id: field("decision_id").map(str::to_string),
        }
    }
}

/// A small JSON response made by the gateway itself, marked [`GatewayMade`].
pub(crate) fn text(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let made = GatewayMade::from_json(&body);
    let mut resp = Response::new(
        Full::new(Bytes::from(format!("{body}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.extensions_mut().insert(made);
    resp
}

const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP) {
        headers.remove(n);
    }
    headers.remove("keep-alive");
}

/// Removes every header whose name starts with `x-ward-`, and the RFC 9440
/// `Client-Cert`/`Client-Cert-Chain` headers: only the gateway may set them.
pub fn strip_ward_headers(headers: &mut http::HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            let n = n.as_str();
            n.starts_with("x-ward-") || n == "client-cert" || n == "client-cert-chain"
        })
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Serves one HTTP request from a verified connection. Generic over the
/// request body so that every transport (HTTP/3 included) goes through this
/// one function: same routing, decision, headers and proxying.
pub async fn handle<B>(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    streams: Arc<OpenStreams>,
    req: Request<B>,
) -> Result<Response<Body>, Infallible>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let started = Instant::now();
    let req = req.map(|b| b.map_err(Into::into).boxed_unsync());
    let grpc = crate::grpc::content_type(&req);
    // hyper bounds the number of header fields for HTTP/1.1 only; its
    // HTTP/2 server (like h3) bounds just their bytes, so 200 tiny headers
    // would reach the upstream. Counted here for every transport, as the
    // client sent them (before an HTTP/2 WebSocket gains its upgrade
    // headers) and before anything reads them.
    let (resp, route) = if req.headers().len() > shared.config.limits.max_headers {
        shared.metrics.limited.with_label_values(&["headers"]).inc();
        drain_unforwarded(req.into_body()).await;
        (
            text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                json!({"error": "too many header fields", "limit": shared.config.limits.max_headers}),
            ),
            None,
        )
    } else {
        match crate::extended_connect::translate(req) {
            Translated::Plain(req) => handle_inner(&shared, &conn, &streams, req).await,
            Translated::WebSocket(req, key) => {
                let (resp, route) = handle_inner(&shared, &conn, &streams, req).await;
                (crate::extended_connect::finish(resp, &key), route)
            }
            Translated::Refused(resp) => (resp, None),
        }
    };
    // The status label is the HTTP status before the gRPC re-encoding
    // below: a denied gRPC call counts as 403 like any other denial,
    // though the client receives 200 with grpc-status 7. An HTTP/2
    // WebSocket counts as the 200 it receives (RFC 8441).
    let status = resp.status();
    let resp = match grpc {
        Some(content_type) => crate::grpc::convert(resp, content_type),
        None => resp,
    };
    if let Some((route, decision)) = route {
        shared
            .metrics
            .requests
            .with_label_values(&[route.as_str(), decision, status.as_str()])
            .inc();
        shared
            .metrics
            .latency
            .with_label_values(&[route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    } else {
        shared
            .metrics
            .requests
            .with_label_values(&["", "none", status.as_str()])
            .inc();
    }
    Ok(resp)
}

/// Reads and discards what the client sends of a request body that will
/// not be forwarded (denied, no route), bounded in bytes and time.
///
/// Why: answering an HTTP/2 request before its body has been read makes the
/// server end the stream with RST_STREAM (NO_ERROR, as RFC 9113 §8.1
/// allows), and curl 7.88 then sometimes reports "stream error in the
/// HTTP/2 framing layer" (exit 92) instead of the 403 it was sent. A small
/// body that is already on its way is drained so the client sees a clean
/// answer; a large or slow one is not waited for, since a prompt refusal
/// matters more and nothing of it reaches an upstream either way.
async fn drain_unforwarded(mut body: RequestBody) {
    const MAX_BYTES: usize = 64 * 1024;
    const MAX_WAIT: Duration = Duration::from_millis(500);
    let mut seen = 0usize;
    let _ = tokio::time::timeout(MAX_WAIT, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len());
                if seen > MAX_BYTES {
                    break;
                }
            }
        }
    })
    .await;
}

// Header names set on proxied requests, parsed once here instead of from a
// string at each insert.
const X_WARD_IDENTITY: HeaderName = HeaderName::from_static("x-ward-identity");
const X_WARD_ASSERTION: HeaderName = HeaderName::from_static("x-ward-assertion");
const X_WARD_DECISION_ID: HeaderName = HeaderName::from_static("x-ward-decision-id");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The policy action of an HTTP method, without an allocation for the
/// standard methods.
fn http_action(method: &http::Method) -> std::borrow::Cow<'static, str> {
    use http::Method;
    let known = match *method {
        Method::GET => "http:GET",
        Method::HEAD => "http:HEAD",
        Method::POST => "http:POST",
        Method::PUT => "http:PUT",
        Method::DELETE => "http:DELETE",
        Method::PATCH => "http:PATCH",
        Method::OPTIONS => "http:OPTIONS",
        Method::CONNECT => "http:CONNECT",
        Method::TRACE => "http:TRACE",
        _ => return format!("http:{method}").into(),
    };
    known.into()
}

async fn handle_inner(
    shared: &Shared,
    conn: &Arc<ConnInfo>,
    streams: &Arc<OpenStreams>,
    mut req: Request<RequestBody>,
) -> (Response<Body>, Option<(String, &'static str)>) {
    strip_ward_headers(req.headers_mut());
    let authority = match request_authority(&req) {
        Ok(a) => a,
        Err(e) => return (text(StatusCode::BAD_REQUEST, json!({"error": e})), None),
    };
    let host = normal_host(&authority);
    let path = req.uri().path().to_string();
    let state = shared.current();
    let Some(route) = match_route(&state.routes, &host, &path) else {
        drain_unforwarded(req.into_body()).await;
        return (
            text(
                StatusCode::NOT_FOUND,
                json!({"error": "no route for this host and path", "host": host, "path": path}),
            ),
            None,
        );
    };
    let name = route.config.name.clone();
    if ambiguous_path(&path) {
        return (
            text(
                StatusCode::BAD_REQUEST,
                json!({"error": "path has dot segments or encoded separators", "path": path}),
            ),
            Some((name, "none")),
        );
    }

    let now = OffsetDateTime::now_utc();
    let (groups, mut context) = streams.base_context(conn, &state.policy, state.generation, now);
    add_http_context(
        &mut context,
        req.method().as_str(),
        &host,
        &path,
        req.headers(),
    );
    let standing = Standing {
        route: name.clone(),
        action: http_action(req.method()),
        resource: format!("route/{name}{path}"),
        context,
    };
    let outcome = shared.decider.decide(
        conn,
        &state.policy,
        state.candidates.get(&name).map(|p| p.as_ref()),
        Question {
            route: &name,
            action: standing.action.as_ref(),
            resource: standing.resource.as_str(),
            context: &standing.context,
            kind: "request",
        },
    );
    let decision_id = HeaderValue::from_str(&outcome.id).ok();
    if !outcome.allowed {
        drain_unforwarded(req.into_body()).await;
        let mut resp = text(
            StatusCode::FORBIDDEN,
            json!({"error": "denied by policy", "decision_id": outcome.id, "route": name}),
        );
        if let Some(id) = decision_id {
            resp.headers_mut().insert(X_WARD_DECISION_ID, id);
        }
        return (resp, Some((name, "deny")));
    }

    let ttl = shared.config.limits.assertion_ttl_secs;
    let signed = streams.assertion(&name, state.generation, now.unix_timestamp(), ttl, || {
        shared
            .signer
            .assert_header(&conn.identity, &groups, &name, now.unix_timestamp(), ttl)
    });
    let assertion = match signed {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign an assertion");
            return (
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "gateway cannot sign the identity assertion", "decision_id": outcome.id}),
                ),
                Some((name, "allow")),
            );
        }
    };

    // Rewrite for the upstream: origin's authority, client's path and
    // query, HTTP/1.1, original Host.
    let path_and_query = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    // The connector dials the route's upstream; the URI keeps the client's
    // authority for HTTP/2's `:authority`.
    let uri = Uri::builder()
        .scheme(route.scheme.clone())
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build();
    let Ok(uri) = uri else {
        return (
            text(
                StatusCode::BAD_REQUEST,
                json!({"error": "unusable request target"}),
            ),
            Some((name, "allow")),
        );
    };
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    let upgrade = upgrade_protocol(&req);
    let wants_trailers = req
        .headers()
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    if let Some(proto) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, proto);
    }
    if wants_trailers {
        // gRPC needs `te: trailers` end to end.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Ok(h) = HeaderValue::from_str(authority.as_str()) {
        headers.insert(header::HOST, h);
    }
    let own = streams.conn_headers(conn);
    if let Some(v) = own.identity.clone() {
        headers.insert(X_WARD_IDENTITY, v);
    }
    headers.insert(X_WARD_ASSERTION, assertion);
    if let Some(id) = decision_id.clone() {
        headers.insert(X_WARD_DECISION_ID, id);
    }
    // Forwarding headers from the client are not trusted: the gateway is
    // the client's first hop, so it states the address itself.
    for h in [FORWARDED, X_REAL_IP, X_FORWARDED_HOST] {
        headers.remove(h);
    }
    if let Some(v) = own.forwarded_for.clone() {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    if route.config.forward_client_cert
        && let Some(leaf) = conn.chain.first()
    {
        let value = format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(leaf.as_ref())
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert("client-cert", v);
        }
        // RFC 9440: the rest of the chain as a list of byte sequences.
        let rest: Vec<String> = conn
            .chain
            .iter()
            .skip(1)
            .map(|c| {
                format!(
                    ":{}:",
                    base64::engine::general_purpose::STANDARD.encode(c.as_ref())
                )
            })
            .collect();
        if !rest.is_empty()
            && let Ok(v) = HeaderValue::from_str(&rest.join(", "))
        {
            headers.insert("client-cert-chain", v);
        }
    }

    let timeout = Duration::from_secs(shared.config.limits.upstream_timeout_secs);
    match tokio::time::timeout(timeout, route.client.request(req)).await {
        Ok(Ok(mut resp)) => {
            let (guard, kill) = streams.register(standing);
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                && let Some(client_upgrade) = client_upgrade
            {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(tunnel_upgrade(
                    client_upgrade,
                    upstream_upgrade,
                    kill,
                    guard,
                    name.clone(),
                ));
                let mut resp = resp.map(|_| empty());
                if let Some(id) = decision_id {
                    resp.headers_mut().insert(X_WARD_DECISION_ID, id);
                }
                return (resp, Some((name, "allow")));
            }
            let mut resp = resp.map(|b| Guarded::new(b, kill, guard).boxed());
            strip_hop_by_hop(resp.headers_mut());
            if let Some(id) = decision_id {
                resp.headers_mut().insert(X_WARD_DECISION_ID, id);
            }
            (resp, Some((name, "allow")))
        }
        Ok(Err(e)) => {
            tracing::warn!(route = %name, upstream = %route.upstream, error = %e, "upstream failed");
            let detail = if e.is_connect() {
                "cannot connect to the upstream"
            } else {
                "the upstream closed or broke the connection"
            };
            (
                text(
                    StatusCode::BAD_GATEWAY,
                    json!({"error": "bad gateway", "detail": detail, "route": name, "decision_id": outcome.id}),
                ),
                Some((name, "allow")),
            )
        }
        Err(_) => (
            text(
                StatusCode::GATEWAY_TIMEOUT,
                json!({"error": "upstream timed out", "route": name, "decision_id": outcome.id, "timeout_secs": timeout.as_secs()}),
            ),
            Some((name, "allow")),
        ),
    }
}

pub(crate) fn empty() -> Body {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// The protocol of an HTTP/1.1 upgrade request (WebSocket), if it is one.
fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    let wants = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !wants {
        return None;
    }
    req.headers().get(header::UPGRADE).cloned()
}

/// Copies bytes between an upgraded client connection and the upgraded
/// upstream connection until either ends or a re-check kills the stream.
async fn tunnel_upgrade(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    kill: tokio::sync::oneshot::Receiver<String>,
    guard: crate::recheck::StreamGuard,
    route: String,
) {
    let _guard = guard;
    let (client, upstream) = match tokio::join!(client, upstream) {
        (Ok(c), Ok(u)) => (c, u),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(%route, error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    tokio::select! {
        res = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = res {
                tracing::debug!(%route, error = %e, "upgraded stream ended with an error");
            }
        }
        reason = kill => {
            if let Ok(reason) = reason {
                tracing::info!(%route, %reason, "upgraded stream closed by re-check");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: &str, prefix: &str) -> Route {
        let config = HttpRoute {
            name: name.into(),
            host: host.into(),
            path_prefix: prefix.into(),
            upstream: "http://127.0.0.1:1".into(),
            mode: crate::config::Mode::Enforce,
            candidate_policy_dir: None,
            forward_client_cert: false,
            http2: false,
        };
        let upstream: Authority = "127.0.0.1:1".parse().unwrap();
        let tls = Arc::new(std::sync::RwLock::new(tls_config()));
        Route {
            client: client(
                &Limits::default(),
                &config,
                Scheme::HTTP,
                upstream.clone(),
                tls,
            ),
            config,
            scheme: Scheme::HTTP,
            upstream,
        }
    }

    fn tls_config() -> Arc<rustls::ClientConfig> {
        Arc::new(
            rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
    }

    #[test]
    fn host_and_authority_must_agree() {
        let req = |uri: &str, host: Option<&str>| {
            let mut b = Request::builder().uri(uri);
            if let Some(h) = host {
                b = b.header("host", h);
            }
            b.body(()).unwrap()
        };
        let a = |uri, host| request_authority(&req(uri, host)).map(|a| normal_host(&a));
        assert_eq!(a("/x", Some("App.Test:8443")).unwrap(), "app.test");
        assert_eq!(a("https://app.test/x", None).unwrap(), "app.test");
        assert_eq!(
            a("https://app.test/x", Some("app.test:443")).unwrap(),
            "app.test"
        );
        assert!(a("https://app.test/x", Some("admin.test")).is_err());
        assert!(a("/x", None).is_err());
        let mut two = req("/x", Some("app.test"));
        two.headers_mut()
            .append("host", http::HeaderValue::from_static("admin.test"));
        assert!(request_authority(&two).is_err());
    }

    #[test]
    fn longest_segment_prefix_wins() {
        let rs = vec![
            route("root", "a.example", "/"),
            route("api", "a.example", "/api"),
            route("other", "b.example", "/"),
        ];
        let m = |h, p| match_route(&rs, h, p).map(|r| r.config.name.as_str());
        assert_eq!(m("a.example", "/api/x"), Some("api"));
        assert_eq!(m("a.example", "/api"), Some("api"));
        assert_eq!(m("a.example", "/apix"), Some("root"));
        assert_eq!(m("b.example", "/api"), Some("other"));
        assert_eq!(m("c.example", "/"), None);
    }

    #[test]
    fn ambiguous_paths_are_caught() {
        for p in [
            "/a/../b",
            "/a/%2e%2e/b",
            "/a/%2E/b",
            "/a%2Fb",
            "/a\\b",
            "/..",
            "//admin",
            "/v1//x",
            "/v1/..;/admin",
            "/%61dmin",
            "/a/%00/b",
            "/a/%c0%ae/b",
        ] {
            assert!(ambiguous_path(p), "{p}");
        }
        for p in [
            "/",
            "/a/b.c",
            "/a/..b",
            "/v1/ledger",
            "/a%20b",
            "/a;x=1/b",
            "/caf%c3%a9",
        ] {
            assert!(!ambiguous_path(p), "{p}");
        }
    }

    #[test]
    fn actions_are_the_method_with_its_service() {
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
            "PROPFIND",
        ] {
            let method = http::Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(http_action(&method), format!("http:{m}"));
        }
    }

    #[test]
    fn ward_and_hop_headers_are_stripped() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-ward-identity",
            HeaderValue::from_static("spiffe://evil/x"),
        );
        h.insert("X-Ward-Assertion", HeaderValue::from_static("forged"));
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.insert("client-cert", HeaderValue::from_static(":Zm9v:"));
        strip_ward_headers(&mut h);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }
}
