//! Request routing, body limits, JSON in and out.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use serde::{Deserialize, Serialize};

use crate::authority::{Revoker, cert_pem, fingerprint};
use crate::{Ca, Error};

type Resp = Response<Full<Bytes>>;

/// `POST /v1/enroll` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The one-time token.
    pub token: String,
    /// PEM CSR.
    pub csr: String,
}

/// `POST /v1/renew` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// PEM CSR with a new key.
    pub csr: String,
}

/// `POST /v1/revoke` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Serial (hex) to revoke.
    pub serial: String,
    /// RFC 5280 reason name.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/revoke` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct RevokeResponse {
    /// The revoked serial.
    pub serial: String,
    /// Unix seconds.
    pub revoked_at: i64,
}

/// `GET /v1/bundle` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct BundleResponse {
    /// Root certificate, PEM.
    pub root_pem: String,
    /// Intermediate, PEM.
    pub intermediate_pem: String,
    /// `sha256:<hex>` of the root.
    pub root_fingerprint: String,
    /// The trust domain.
    pub trust_domain: String,
    /// The transparency log's public key (base64 DER SubjectPublicKeyInfo),
    /// to verify signed tree heads and proofs offline.
    #[serde(default)]
    pub log_public_key: String,
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(e: &Error) -> Resp {
    crate::metrics::reject(e.code());
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(error = %e, "request failed");
    } else {
        tracing::info!(error = %e, code = e.code(), "request refused");
    }
    json(
        status,
        &serde_json::json!({"error": e.to_string(), "code": e.code()}),
    )
}

fn raw(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, Error> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(Error::TooLarge { limit });
    }
    let body = http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Error::TooLarge { limit }
            } else {
                Error::bad("bad_body", format!("reading the request body failed: {e}"))
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        Error::bad(
            "bad_json",
            format!("the request body is not the expected JSON: {e}"),
        )
    })
}

/// `?a=b&c=d` with %-escapes decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Result<Self, Error> {
        let mut out = Vec::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = crate::keys::uri::pct_decode(&v.replace('+', " "))
                .map_err(|e| Error::bad("bad_query", format!("query parameter `{k}`: {e}")))?;
            out.push((k.to_string(), v));
        }
        Ok(Self(out))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::bad("bad_query", format!("query parameter `{key}` is required")))
    }

    fn u64(&self, key: &str) -> Result<u64, Error> {
        self.required(key)?.parse().map_err(|_| {
            Error::bad(
                "bad_query",
                format!("query parameter `{key}` must be a non-negative integer"),
            )
        })
    }
}

/// Runs blocking CA work (HSM signing, SQLite) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Cert(format!("worker failed: {e}")))?
}

pub async fn handle(
    ca: Arc<Ca>,
    client_cert: Option<Arc<Vec<u8>>>,
    peer_ip: std::net::IpAddr,
    req: Request<Incoming>,
    max_body: usize,
) -> Resp {
    let result = route(ca, client_cert, peer_ip, req, max_body).await;
    result.unwrap_or_else(|e| error(&e))
}

async fn route(
    ca: Arc<Ca>,
    client_cert: Option<Arc<Vec<u8>>>,
    peer_ip: std::net::IpAddr,
    req: Request<Incoming>,
    max_body: usize,
) -> Result<Resp, Error> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/v1/bundle") => Ok(json(
            StatusCode::OK,
            &BundleResponse {
                root_pem: cert_pem(ca.root_der()),
                intermediate_pem: cert_pem(ca.issuing_der()),
                root_fingerprint: fingerprint(ca.root_der()),
                trust_domain: ca.config().trust_domain.to_string(),
                log_public_key: {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .encode(ca.log_key().subject_public_key_info())
                },
            },
        )),
        (Method::GET, "/v1/crl") => {
            let der = blocking(move || ca.crl()).await?;
            Ok(raw(StatusCode::OK, "application/pkix-crl", der))
        }
        (Method::GET, "/metrics") => {
            ca.crl_age();
            Ok(raw(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                crate::metrics::render().into_bytes(),
            ))
        }
        (Method::GET, "/v1/log/sth") => {
            let sth = blocking(move || ca.translog().reader().sth()).await?;
            Ok(json(StatusCode::OK, &sth))
        }
        (Method::GET, "/v1/log/entries") => {
            let q = Query::parse(req.uri().query())?;
            let (start, end) = (q.u64("start")?, q.u64("end")?);
            let entries = blocking(move || ca.translog().reader().entries(start, end)).await?;
            Ok(json(StatusCode::OK, &entries))
        }
        (Method::GET, "/v1/log/proof/inclusion") => {
            let q = Query::parse(req.uri().query())?;
            let proof = match q.get("serial") {
                Some(serial) => {
                    let serial = serial.to_string();
                    blocking(move || ca.translog().reader().inclusion_proof_by_serial(&serial))
                        .await?
                }
                None => {
                    let hash =
                        crate::translog::api::parse_leaf_hash_param(q.required("leaf_hash")?)?;
                    let size = q.u64("tree_size")?;
                    blocking(move || ca.translog().reader().inclusion_proof(&hash, size)).await?
                }
            };
            Ok(json(StatusCode::OK, &proof))
        }
        (Method::GET, "/v1/log/proof/consistency") => {
            let q = Query::parse(req.uri().query())?;
            let (first, second) = (q.u64("first")?, q.u64("second")?);
            let proof =
                blocking(move || ca.translog().reader().consistency_proof(first, second)).await?;
            Ok(json(StatusCode::OK, &proof))
        }
        (Method::GET, "/v1/certs") => {
            let q = Query::parse(req.uri().query())?;
            let query = crate::translog::CertQuery {
                identity: q.get("identity").map(str::to_string),
                serial: q.get("serial").map(str::to_string),
                since: q.get("since").map(str::to_string),
                until: q.get("until").map(str::to_string),
            };
            let certs = blocking(move || {
                let me = ca.authenticate(client_cert.as_deref().map(Vec::as_slice))?;
                ca.authorize(
                    &me,
                    peer_ip,
                    "ca:ReadLog",
                    "ca/certs",
                    None,
                    query.identity.as_deref(),
                )?;
                ca.translog().reader().certs(&query)
            })
            .await?;
            Ok(json(StatusCode::OK, &certs))
        }
        (Method::POST, "/v1/enroll") => {
            let body: EnrollRequest = read_json(req, max_body).await?;
            let issued = blocking(move || ca.enroll(&body.token, &body.csr)).await?;
            Ok(json(StatusCode::OK, &issued))
        }
        (Method::POST, "/v1/renew") => {
            let body: RenewRequest = read_json(req, max_body).await?;
            let issued = blocking(move || {
                let me = ca.authenticate(client_cert.as_deref().map(Vec::as_slice))?;
                ca.renew(&me, &body.csr)
            })
            .await?;
            Ok(json(StatusCode::OK, &issued))
        }
        (Method::POST, "/v1/revoke") => {
            let body: RevokeRequest = read_json(req, max_body).await?;
            let rec = blocking(move || {
                let me = ca.authenticate(client_cert.as_deref().map(Vec::as_slice))?;
                ca.revoke(
                    &body.serial,
                    body.reason.as_deref().unwrap_or("unspecified"),
                    &Revoker::Cert(Box::new(me), peer_ip),
                )
            })
            .await?;
            Ok(json(
                StatusCode::OK,
                &RevokeResponse {
                    serial: rec.serial,
                    revoked_at: rec.revoked_at.unwrap_or_default(),
                },
            ))
        }
        (
            _,
            "/v1/bundle"
            | "/v1/crl"
            | "/metrics"
            | "/v1/enroll"
            | "/v1/renew"
            | "/v1/revoke"
            | "/v1/log/sth"
            | "/v1/log/entries"
            | "/v1/log/proof/inclusion"
            | "/v1/log/proof/consistency"
            | "/v1/certs",
        ) => Err(Error::bad(
            "method_not_allowed",
            format!("{} is not allowed on {path}", req.method()),
        )),
        _ => Err(Error::NotFound {
            what: format!("route {path}"),
        }),
    }
}
