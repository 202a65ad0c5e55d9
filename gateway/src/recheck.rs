//! Standing decisions: an HTTP response that is still streaming (gRPC
//! server streams, server-sent events, downloads) or an upgraded WebSocket
//! was allowed once, but may no longer be when the policy, trust bundle or
//! CRL changes. Each connection keeps a registry of its open streams; on
//! every reload the connection re-decides each of them and kills the ones
//! that are no longer allowed (the log line says why).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::decide::{ConnInfo, Context, Question};
use crate::server::{Shared, close_for};

/// Errors carried by streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What was decided, kept to decide it again.
#[derive(Debug, Clone)]
pub struct Standing {
    /// Route name.
    pub route: String,
    /// `http:GET`, `tcp:Connect`, … (static for the standard methods).
    pub action: std::borrow::Cow<'static, str>,
    /// The resource.
    pub resource: String,
    /// The request's context (time and groups are refreshed on re-check).
    pub context: Context,
}

type Entry = (Arc<Standing>, oneshot::Sender<String>);

/// The open streams of one connection.
#[derive(Debug, Default)]
pub struct OpenStreams {
    next: AtomicU64,
    map: Mutex<HashMap<u64, Entry>>,
    /// Notified whenever the last open stream ends.
    pub emptied: tokio::sync::Notify,
    /// Per-connection assertion cache, see [`OpenStreams::assertion`].
    assertions: Mutex<HashMap<String, CachedAssertion>>,
    /// Per-connection base context, see [`OpenStreams::base_context`].
    /// Boxed, as the header values: every connection holds this struct,
    /// idle ones included, and most of its size would be these.
    base: Mutex<Option<Box<CachedBase>>>,
    /// Per-connection header values, see [`OpenStreams::conn_headers`].
    headers: std::sync::OnceLock<Box<ConnHeaders>>,
}

/// Header values the gateway adds to every request of one connection.
#[derive(Debug)]
pub struct ConnHeaders {
    /// `x-forwarded-for`: the client's address.
    pub forwarded_for: Option<http::HeaderValue>,
    /// `x-ward-identity`: the verified principal.
    pub identity: Option<http::HeaderValue>,
}

/// The connection-level context keys and groups under one policy
/// generation.
#[derive(Debug)]
struct CachedBase {
    generation: u64,
    groups: Arc<Vec<String>>,
    context: Context,
}

/// A signed assertion and what it was signed for. Kept as the header
/// value it is sent as: cloning one shares its bytes.
#[derive(Debug, Clone)]
struct CachedAssertion {
    generation: u64,
    issued_at: i64,
    token: http::HeaderValue,
}

/// Removes a stream from the registry when it ends.
#[derive(Debug)]
pub struct StreamGuard {
    streams: Arc<OpenStreams>,
    id: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.streams.map.lock() {
            m.remove(&self.id);
            if m.is_empty() {
                self.streams.emptied.notify_waiters();
            }
        }
    }
}

impl OpenStreams {
    /// Registers a stream; the receiver fires with a reason when the stream
    /// must be killed.
    pub fn register(
        self: &Arc<Self>,
        standing: Standing,
    ) -> (StreamGuard, oneshot::Receiver<String>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.map.lock() {
            m.insert(id, (Arc::new(standing), tx));
        }
        (
            StreamGuard {
                streams: self.clone(),
                id,
            },
            rx,
        )
    }

    /// The connection's assertion for `route`, signed by `sign` only when
    /// there is none yet, the policy generation changed (groups may have),
    /// or half its lifetime has passed. An ES256 signature costs more than
    /// the rest of a request's work, and the token is the same for every
    /// request of one connection on one route.
    pub fn assertion<E>(
        &self,
        route: &str,
        generation: u64,
        now: i64,
        ttl_secs: u64,
        sign: impl FnOnce() -> Result<http::HeaderValue, E>,
    ) -> Result<http::HeaderValue, E> {
        let half = i64::try_from(ttl_secs / 2).unwrap_or(0);
        if let Ok(cache) = self.assertions.lock()
            && let Some(c) = cache.get(route)
            && c.generation == generation
            && now >= c.issued_at
            && now < c.issued_at + half
        {
            return Ok(c.token.clone());
        }
        let token = sign()?;
        if let Ok(mut cache) = self.assertions.lock() {
            cache.insert(
                route.to_string(),
                CachedAssertion {
                    generation,
                    issued_at: now,
                    token: token.clone(),
                },
            );
        }
        Ok(token)
    }

    /// The connection's groups and its context keys for a request at
    /// `now`. Everything but `ward:CurrentTime` is the same for every
    /// request of a connection under one policy generation (peer, TLS
    /// version, certificate, groups), so it is built once per generation,
    /// ward-policy's form of it included, and shared by every request's
    /// context (no copy); the time is always fresh.
    pub fn base_context(
        &self,
        conn: &ConnInfo,
        policy: &crate::policy::Policy,
        generation: u64,
        now: OffsetDateTime,
    ) -> (Arc<Vec<String>>, Context) {
        let cached = self.base.lock().ok().and_then(|b| {
            b.as_ref()
                .filter(|b| b.generation == generation)
                .map(|b| (b.groups.clone(), b.context.layer()))
        });
        let (groups, mut context) = match cached {
            Some(hit) => hit,
            None => {
                let groups = Arc::new(policy.groups_of(&conn.identity));
                let base = crate::decide::base_context(conn, &groups, now);
                let context = base.layer();
                if let Ok(mut b) = self.base.lock() {
                    *b = Some(Box::new(CachedBase {
                        generation,
                        groups: groups.clone(),
                        context: base,
                    }));
                }
                (groups, context)
            }
        };
        crate::decide::set_current_time(&mut context, now);
        (groups, context)
    }

    /// The connection's own header values, made at its first request
    /// (formatting the address and checking the principal as a header
    /// value cost more than sharing the result).
    pub fn conn_headers(&self, conn: &ConnInfo) -> &ConnHeaders {
        self.headers.get_or_init(|| {
            Box::new(ConnHeaders {
                forwarded_for: http::HeaderValue::from_str(&conn.peer.ip().to_string()).ok(),
                identity: http::HeaderValue::from_str(conn.identity.principal()).ok(),
            })
        })
    }

    /// Drops the per-connection caches (base context, assertions) and the
    /// registry's spare room, for an idle connection: what they save is a
    /// policy lookup and a signature per request, worth nothing to a
    /// connection that carries none, and together they are a few KB.
    pub fn forget_caches(&self) {
        if let Ok(mut a) = self.assertions.lock() {
            *a = HashMap::new();
        }
        if let Ok(mut b) = self.base.lock() {
            *b = None;
        }
        if let Ok(mut m) = self.map.lock()
            && m.is_empty()
        {
            *m = HashMap::new();
        }
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.map.lock().map(|m| m.is_empty()).unwrap_or(true)
    }

    /// Kills every open stream (certificate revoked or expired).
    pub fn kill_all(&self, reason: &str) {
        let entries: Vec<Entry> = match self.map.lock() {
            Ok(mut m) => m.drain().map(|(_, e)| e).collect(),
            Err(_) => return,
        };
        for (_, tx) in entries {
            let _ = tx.send(reason.to_string());
        }
        self.emptied.notify_waiters();
    }

    /// Re-decides every open stream with the current state; kills those no
    /// longer allowed.
    pub fn recheck(&self, shared: &Shared, conn: &ConnInfo) {
        let open: Vec<(u64, Arc<Standing>)> = match self.map.lock() {
            Ok(m) => m.iter().map(|(id, (s, _))| (*id, s.clone())).collect(),
            Err(_) => return,
        };
        for (id, standing) in open {
            if decide_again(shared, conn, &standing) {
                continue;
            }
            let entry = self.map.lock().ok().and_then(|mut m| m.remove(&id));
            if let Some((_, tx)) = entry {
                let reason = format!("policy no longer allows {}", standing.action);
                close_for(shared, conn, &standing.route, "policy", &reason);
                let _ = tx.send(reason);
            }
        }
    }
}

/// Decides a standing decision again, with fresh time and groups.
pub fn decide_again(shared: &Shared, conn: &ConnInfo, s: &Standing) -> bool {
    let state = shared.current();
    let groups = state.policy.groups_of(&conn.identity);
    let mut context = crate::decide::base_context(conn, &groups, OffsetDateTime::now_utc());
    for (k, v) in s.context.iter() {
        if context.get(k).is_none() {
            context.insert(k, v.clone());
        }
    }
    shared
        .decider
        .decide(
            conn,
            &state.policy,
            state.candidates.get(&s.route).map(|p| p.as_ref()),
            Question {
                route: &s.route,
                action: s.action.as_ref(),
                resource: s.resource.as_str(),
                context: &context,
                kind: "recheck",
            },
        )
        .allowed
}

/// An upstream response body that ends with an error when its stream is
/// killed (HTTP/2: the stream is reset; HTTP/1.1: the connection closes).
#[derive(Debug)]
pub struct Guarded {
    inner: Incoming,
    kill: Option<oneshot::Receiver<String>>,
    _guard: StreamGuard,
}

impl Guarded {
    /// Wraps `inner`.
    pub fn new(inner: Incoming, kill: oneshot::Receiver<String>, guard: StreamGuard) -> Guarded {
        Guarded {
            inner,
            kill: Some(kill),
            _guard: guard,
        }
    }
}

/// The error a killed stream ends with.
#[derive(Debug, thiserror::Error)]
#[error("stream closed by ward: {0}")]
pub struct Killed(pub String);

impl Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(kill) = this.kill.as_mut()
            && let Poll::Ready(r) = Pin::new(kill).poll(cx)
        {
            this.kill = None;
            if let Ok(reason) = r {
                return Poll::Ready(Some(Err(Box::new(Killed(reason)))));
            }
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as BoxError)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing() -> Standing {
        Standing {
            route: "app".into(),
            action: "http:GET".into(),
            resource: "route/app/x".into(),
            context: Context::new(),
        }
    }

    #[tokio::test]
    async fn streams_register_end_and_are_killed() {
        let streams = Arc::new(OpenStreams::default());
        assert!(streams.is_empty());
        let (g1, _rx1) = streams.register(standing());
        let (g2, rx2) = streams.register(standing());
        assert!(!streams.is_empty());
        drop(g1);
        assert!(!streams.is_empty());
        let emptied = streams.emptied.notified();
        streams.kill_all("revoked");
        assert_eq!(rx2.await.unwrap(), "revoked");
        assert!(streams.is_empty());
        emptied.await;
        drop(g2);
        assert!(streams.is_empty());
    }

    #[test]
    fn the_cached_base_keeps_no_request_keys_and_a_fresh_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("groups.json"),
            r#"{"Groups": {"ops": ["spiffe://corp.example/user/alice"]}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("p.json"),
            r#"{"Version": "2026-11-01", "Statement": [{"Effect": "Allow",
                "Principal": "*", "Action": "http:GET", "Resource": "*"}]}"#,
        )
        .unwrap();
        let policy = crate::policy::Policy::load_dir(dir.path()).unwrap();
        let conn = crate::decide::tests::conn();
        let streams = OpenStreams::default();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let (groups, mut first) = streams.base_context(&conn, &policy, 1, t0);
        assert_eq!(*groups, ["ops"]);
        crate::decide::add_http_context(
            &mut first,
            "GET",
            "a.test",
            "/one",
            &http::HeaderMap::new(),
        );
        let t1 = t0 + time::Duration::seconds(5);
        let (_, second) = streams.base_context(&conn, &policy, 1, t1);
        assert_eq!(first["ward:Path"], "/one");
        assert_eq!(second["ward:Path"], serde_json::Value::Null);
        assert_eq!(second["ward:CurrentTime"], "1970-01-01T00:00:05Z");
        assert_eq!(first["ward:CurrentTime"], "1970-01-01T00:00:00Z");
        assert_eq!(second["ward:PrincipalGroups"], serde_json::json!(["ops"]));
        assert_eq!(
            second.to_policy().get("ward:currenttime").unwrap(),
            ["1970-01-01T00:00:05Z"]
        );
    }

    #[test]
    fn assertions_are_reused_until_half_their_life_or_a_reload() {
        let streams = OpenStreams::default();
        let signed = AtomicU64::new(0);
        let get = |route: &str, generation: u64, now: i64| {
            streams
                .assertion(route, generation, now, 300, || {
                    signed.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, ()>(
                        http::HeaderValue::try_from(format!("{route}-{generation}-{now}")).unwrap(),
                    )
                })
                .unwrap()
        };
        assert_eq!(get("a", 1, 1000), "a-1-1000");
        assert_eq!(get("a", 1, 1149), "a-1-1000");
        assert_eq!(get("a", 1, 1150), "a-1-1150", "half of the TTL passed");
        assert_eq!(get("b", 1, 1150), "b-1-1150", "per route");
        assert_eq!(get("a", 2, 1151), "a-2-1151", "policy reloaded");
        assert_eq!(get("a", 2, 900), "a-2-900", "clock went back");
        assert_eq!(signed.load(Ordering::Relaxed), 5);
        streams.forget_caches();
        assert_eq!(get("a", 2, 901), "a-2-901", "signed again once forgotten");
        assert_eq!(signed.load(Ordering::Relaxed), 6);
    }
}
