//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT).
//!
//! A client on HTTP/2 opens a WebSocket with `CONNECT` and
//! `:protocol: websocket` on one stream. Upstreams speak the HTTP/1.1
//! upgrade, so the request is rewritten into exactly what an HTTP/1.1
//! client would have sent (`GET` with `Upgrade: websocket`) before anything
//! decides on it: the policy sees `http:GET` either way, so one statement
//! covers both, and the proxy's upgrade path (tunnel, re-check, kill on a
//! policy change) is the same code for both.
//!
//! On the way back the upstream's `101` becomes the `200` RFC 8441 §5 asks
//! for, without the HTTP/1.1 handshake headers; hyper then hands the h2
//! stream to the tunnel as the client's upgraded connection. The client
//! cannot check `Sec-WebSocket-Accept` itself (it never sent a key), so the
//! gateway checks it for the key it made up, and refuses the tunnel when
//! the upstream did not really switch to WebSocket.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::proxy::{Body, RequestBody, text};

/// RFC 6455 §1.3: appended to the key before hashing.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Key` the gateway sent upstream for one translated
/// request, to check the upstream's answer against.
#[derive(Debug, Clone)]
pub struct Key(String);

/// What [`translate`] made of a request.
#[derive(Debug)]
pub enum Translated {
    /// Not an extended CONNECT: proxied as it is.
    Plain(Request<RequestBody>),
    /// An extended CONNECT for `websocket`, now an HTTP/1.1-style upgrade
    /// request; pass the answer through [`finish`] with the key.
    WebSocket(Request<RequestBody>, Key),
    /// An extended CONNECT the gateway cannot serve, answered at once.
    Refused(Response<Body>),
}

/// Rewrites an HTTP/2 extended CONNECT for `websocket` into a `GET` with
/// `Upgrade: websocket`; other requests are returned unchanged. hyper has
/// already put the stream's upgrade handle in the request's extensions,
/// which the rewrite keeps, so the proxy's `hyper::upgrade::on` finds it.
pub fn translate(req: Request<RequestBody>) -> Translated {
    if req.method() != Method::CONNECT {
        return Translated::Plain(req);
    }
    let Some(protocol) = req.extensions().get::<hyper::ext::Protocol>() else {
        // A classic CONNECT (a proxy tunnel): not this module's business.
        return Translated::Plain(req);
    };
    if !protocol.as_str().eq_ignore_ascii_case("websocket") {
        let protocol = protocol.as_str().to_string();
        return Translated::Refused(text(
            StatusCode::NOT_IMPLEMENTED,
            json!({
                "error": "extended CONNECT protocol is not supported (only websocket is)",
                "protocol": protocol,
            }),
        ));
    }
    let Some(key) = new_key() else {
        return Translated::Refused(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "gateway cannot make a WebSocket key"}),
        ));
    };
    let (mut parts, body) = req.into_parts();
    parts.method = Method::GET;
    parts.extensions.remove::<hyper::ext::Protocol>();
    let headers = &mut parts.headers;
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    // Only a key the gateway made can be checked against the answer.
    headers.remove(header::SEC_WEBSOCKET_ACCEPT);
    match HeaderValue::from_str(&key.0) {
        Ok(v) => {
            headers.insert(header::SEC_WEBSOCKET_KEY, v);
        }
        Err(_) => {
            return Translated::Refused(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "gateway cannot make a WebSocket key"}),
            ));
        }
    }
    Translated::WebSocket(Request::from_parts(parts, body), key)
}

/// A fresh random `Sec-WebSocket-Key` (16 random bytes, base64).
fn new_key() -> Option<Key> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).ok()?;
    Some(Key(B64.encode(b)))
}

/// The `Sec-WebSocket-Accept` an upstream must answer `key` with.
fn accept_for(key: &Key) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{}{WEBSOCKET_GUID}", key.0).as_bytes(),
    );
    B64.encode(digest.as_ref())
}

/// Turns the answer to a translated request back into RFC 8441 terms: the
/// upstream's `101` (with the right `Sec-WebSocket-Accept`) becomes `200`
/// and the tunnel opens; a `2xx` that is not a switch would look like an
/// open tunnel to the client and becomes `502`; anything else (a denial,
/// an upstream's 404) is passed on as it is.
pub fn finish(resp: Response<Body>, key: &Key) -> Response<Body> {
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let accepted = resp
            .headers()
            .get(header::SEC_WEBSOCKET_ACCEPT)
            .is_some_and(|v| v.as_bytes() == accept_for(key).as_bytes());
        if !accepted {
            return refuse(
                &resp,
                "the upstream's Sec-WebSocket-Accept does not match the key sent",
            );
        }
        let mut resp = resp;
        *resp.status_mut() = StatusCode::OK;
        let headers = resp.headers_mut();
        for h in [
            header::SEC_WEBSOCKET_ACCEPT,
            header::UPGRADE,
            header::CONNECTION,
            header::CONTENT_LENGTH,
        ] {
            headers.remove(h);
        }
        return resp;
    }
    if status.is_success() {
        return refuse(
            &resp,
            &format!("the upstream answered {status} instead of switching to WebSocket"),
        );
    }
    resp
}

/// A 502 in place of an upstream answer that cannot open the tunnel. The
/// upstream response (and with it any half-open upgrade) is dropped, so
/// the proxy's tunnel task ends without ever copying a byte.
fn refuse(upstream: &Response<Body>, detail: &str) -> Response<Body> {
    let id = upstream.headers().get("x-ward-decision-id").cloned();
    let decision_id = id.as_ref().and_then(|v| v.to_str().ok());
    tracing::warn!(detail, "WebSocket over HTTP/2 refused");
    let mut resp = text(
        StatusCode::BAD_GATEWAY,
        json!({"error": "bad gateway", "detail": detail, "decision_id": decision_id}),
    );
    if let Some(id) = id {
        resp.headers_mut().insert("x-ward-decision-id", id);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn connect(protocol: Option<&'static str>) -> Request<RequestBody> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri("https://app.test/ws")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "chat")
            .body(
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap();
        if let Some(p) = protocol {
            req.extensions_mut()
                .insert(hyper::ext::Protocol::from_static(p));
        }
        req
    }

    #[test]
    fn rfc6455_sample_key_gives_the_sample_accept() {
        let key = Key("dGhlIHNhbXBsZSBub25jZQ==".into());
        assert_eq!(accept_for(&key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn websocket_connect_becomes_an_upgrade_get_with_a_fresh_key() {
        let Translated::WebSocket(req, key) = translate(connect(Some("websocket"))) else {
            panic!("not translated");
        };
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/ws");
        let h = req.headers();
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-version"], "13");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert_eq!(h["sec-websocket-key"], key.0.as_str());
        assert_eq!(B64.decode(&key.0).unwrap().len(), 16);
        assert!(req.extensions().get::<hyper::ext::Protocol>().is_none());
        let Translated::WebSocket(_, other) = translate(connect(Some("websocket"))) else {
            panic!("not translated");
        };
        assert_ne!(key.0, other.0, "every request gets its own key");
    }

    #[test]
    fn other_requests_pass_and_other_protocols_are_refused() {
        assert!(matches!(translate(connect(None)), Translated::Plain(_)));
        let Translated::Refused(resp) = translate(connect(Some("connect-udp"))) else {
            panic!("not refused");
        };
        assert_eq!(resp.status(), StatusCode::NOT_IMPLEMENTED);
    }

    fn answer(status: u16, accept: Option<&str>) -> Response<Body> {
        let mut b = Response::builder()
            .status(status)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-protocol", "chat")
            .header("x-ward-decision-id", "d1");
        if let Some(a) = accept {
            b = b.header("sec-websocket-accept", a);
        }
        b.body(crate::proxy::empty()).unwrap()
    }

    #[test]
    fn the_upstream_switch_becomes_200_only_with_the_right_accept() {
        let key = Key("dGhlIHNhbXBsZSBub25jZQ==".into());
        let ok = finish(answer(101, Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")), &key);
        assert_eq!(ok.status(), StatusCode::OK);
        let h = ok.headers();
        assert!(h.get("sec-websocket-accept").is_none());
        assert!(h.get("upgrade").is_none() && h.get("connection").is_none());
        assert_eq!(h["sec-websocket-protocol"], "chat");

        let wrong = finish(answer(101, Some("AAAA")), &key);
        assert_eq!(wrong.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(wrong.headers()["x-ward-decision-id"], "d1");
        assert_eq!(
            finish(answer(101, None), &key).status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            finish(answer(200, None), &key).status(),
            StatusCode::BAD_GATEWAY,
            "a 200 that is no switch must not look like an open tunnel"
        );
        assert_eq!(finish(answer(403, None), &key).status(), 403);
        assert_eq!(finish(answer(404, None), &key).status(), 404);
    }
}
