//! gRPC clients on HTTP routes.
//!
//! gRPC itself needs nothing special from the proxy: an `http2 = true`
//! route speaks HTTP/2 to the upstream, bodies stream frame by frame and
//! trailers (`grpc-status`, `grpc-message`) are forwarded as trailers.
//!
//! What a gRPC client cannot use is the gateway's own JSON error body: it
//! reads the status from `grpc-status` and treats anything else as a broken
//! transport ("Received http2 header with status: 403"), losing the reason
//! and the decision id. So when the request is gRPC and the gateway answers
//! by itself, the answer is re-encoded as a gRPC trailers-only response
//! (HTTP 200, `grpc-status`, `grpc-message`, no body). Upstream responses
//! are never touched: only responses marked [`GatewayMade`] are converted.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::proxy::{Body, GatewayMade};

/// The content type to answer a gRPC request with, or `None` when the
/// request is not gRPC. gRPC-Web variants keep their own content type so a
/// browser client parses the trailers-only answer as gRPC-Web.
pub fn content_type<B>(req: &Request<B>) -> Option<HeaderValue> {
    let ct = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let ct = ct.trim().to_ascii_lowercase();
    let media = ct.split([';', '+']).next().unwrap_or("").trim();
    match media {
        "application/grpc" => Some(HeaderValue::from_static("application/grpc")),
        "application/grpc-web" => Some(HeaderValue::from_static("application/grpc-web")),
        "application/grpc-web-text" => Some(HeaderValue::from_static("application/grpc-web-text")),
        _ => None,
    }
}

/// The gRPC status code (doc/statuscodes.md) for an error the gateway
/// answered with this HTTP status.
pub fn code_for(status: StatusCode) -> u8 {
    match status.as_u16() {
        // INVALID_ARGUMENT: the request itself is unusable (bad host, path).
        400 => 3,
        401 => 16,
        // PERMISSION_DENIED: denied by policy.
        403 => 7,
        // UNIMPLEMENTED: no route serves this method.
        404 | 501 => 12,
        // UNAVAILABLE: the client may retry (limits, upstream down).
        429 | 502 | 503 => 14,
        // DEADLINE_EXCEEDED: the upstream timed out.
        504 => 4,
        // INTERNAL.
        500 => 13,
        _ => 2,
    }
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 spec requires:
/// every byte outside printable ASCII, and `%` itself, as `%XX`.
pub fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Re-encodes a response the gateway made itself as a gRPC trailers-only
/// response (`content_type` from [`content_type`]); any other response is
/// returned unchanged. The `x-ward-decision-id` header is kept.
pub fn convert(resp: Response<Body>, content_type: HeaderValue) -> Response<Body> {
    let Some(made) = resp.extensions().get::<GatewayMade>().cloned() else {
        return resp;
    };
    let code = code_for(resp.status());
    let mut message = made.reason.clone();
    if let Some(id) = &made.decision_id {
        message.push_str(&format!(" (decision {id})"));
    }
    let mut out = Response::new(crate::proxy::empty());
    let headers = out.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(&message)) {
        headers.insert("grpc-message", v);
    }
    if let Some(id) = resp.headers().get("x-ward-decision-id") {
        headers.insert("x-ward-decision-id", id.clone());
    }
    out.extensions_mut().insert(made);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ct: &str) -> Request<()> {
        Request::builder()
            .header("content-type", ct)
            .body(())
            .unwrap()
    }

    #[test]
    fn grpc_requests_are_recognised_by_content_type() {
        let ct = |c| content_type(&req(c)).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(ct("application/grpc").as_deref(), Some("application/grpc"));
        assert_eq!(
            ct("application/grpc+proto").as_deref(),
            Some("application/grpc")
        );
        assert_eq!(
            ct("Application/GRPC; charset=x").as_deref(),
            Some("application/grpc")
        );
        assert_eq!(
            ct("application/grpc-web+proto").as_deref(),
            Some("application/grpc-web")
        );
        assert_eq!(ct("application/json"), None);
        assert_eq!(ct("application/grpcx"), None);
        assert_eq!(content_type(&Request::new(())), None);
    }

    #[test]
    fn messages_are_percent_encoded_as_the_spec_says() {
        assert_eq!(percent_encode("denied by policy"), "denied by policy");
        assert_eq!(percent_encode("100% sure"), "100%25 sure");
        assert_eq!(percent_encode("caf\u{e9}\n"), "caf%C3%A9%0A");
    }

    #[test]
    fn gateway_errors_become_trailers_only_and_upstream_answers_stay() {
        let mut made = crate::proxy::text(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "denied by policy", "decision_id": "abc", "route": "r"}),
        );
        made.headers_mut()
            .insert("x-ward-decision-id", HeaderValue::from_static("abc"));
        let out = convert(made, HeaderValue::from_static("application/grpc"));
        assert_eq!(out.status(), StatusCode::OK);
        let h = out.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "7");
        assert_eq!(
            h["grpc-message"],
            "denied by policy on route r (decision abc)"
        );
        assert_eq!(h["x-ward-decision-id"], "abc");
        assert!(hyper::body::Body::is_end_stream(out.body()));

        let mut upstream = Response::new(crate::proxy::empty());
        *upstream.status_mut() = StatusCode::FORBIDDEN;
        let out = convert(upstream, HeaderValue::from_static("application/grpc"));
        assert_eq!(out.status(), StatusCode::FORBIDDEN, "upstream answer kept");
        assert!(out.headers().get("grpc-status").is_none());
    }

    #[test]
    fn statuses_map_to_grpc_codes() {
        let c = |s: u16| code_for(StatusCode::from_u16(s).unwrap());
        assert_eq!(
            [c(403), c(404), c(400), c(502), c(504), c(500)],
            [7, 12, 3, 14, 4, 13]
        );
    }
}
