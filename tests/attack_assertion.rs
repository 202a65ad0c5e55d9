//! The `X-Ward-Assertion` a real gateway sends upstream, checked with the
//! published verifier (`ward_gateway::assertion::verify`, issue 10): it
//! verifies for its own route, and fails when replayed to another route,
//! tampered with, re-signed with `alg: none`, checked after expiry or
//! against another gateway's keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::hardening::*;
use ward_gateway::assertion::verify;

#[test]
fn a_real_assertion_verifies_only_for_its_route_and_untampered() {
    let gw = Gateway::start("");
    assert_eq!(gw.status(Some("client"), "app.test", "/v1/jwt"), 200);
    let head = gw.app.heads().pop().unwrap();
    let token = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-ward-assertion")
                .then(|| v.trim().to_string())
        })
        .expect("assertion header reached the upstream");
    let (status, body) = gw.admin_get("/.well-known/jwks.json");
    assert_eq!(status, 200);
    let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    let claims = verify(&jwks, &token, "app", now).unwrap();
    assert_eq!(claims["sub"], CLIENT);

    let mut refused = vec![];
    refused.push((
        "replayed to another route",
        verify(&jwks, &token, "secret", now),
    ));
    refused.push(("after expiry", verify(&jwks, &token, "app", now + 301)));
    let parts: Vec<&str> = token.split('.').collect();
    let mut c: serde_json::Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    c["route"] = "secret".into();
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(c.to_string()), parts[2]);
    refused.push(("claims edited", verify(&jwks, &tampered, "secret", now)));
    let mut c2: serde_json::Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    c2["sub"] = "spiffe://corp.example/ns/prod/sa/root".into();
    let tampered_sub = format!("{}.{}.{}", parts[0], B64.encode(c2.to_string()), parts[2]);
    refused.push(("subject edited", verify(&jwks, &tampered_sub, "app", now)));
    let none = B64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    refused.push((
        "alg none, no signature",
        verify(&jwks, &format!("{none}.{}.", parts[1]), "app", now),
    ));
    refused.push((
        "alg none, old signature",
        verify(
            &jwks,
            &format!("{none}.{}.{}", parts[1], parts[2]),
            "app",
            now,
        ),
    ));
    let hs = B64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    refused.push((
        "alg HS256",
        verify(
            &jwks,
            &format!("{hs}.{}.{}", parts[1], parts[2]),
            "app",
            now,
        ),
    ));
    let mut sig = B64.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    refused.push((
        "signature bit flipped",
        verify(
            &jwks,
            &format!("{}.{}.{}", parts[0], parts[1], B64.encode(&sig)),
            "app",
            now,
        ),
    ));
    refused.push((
        "truncated",
        verify(&jwks, &format!("{}.{}", parts[0], parts[1]), "app", now),
    ));
    let other = ward_gateway::assertion::Signer::generate().unwrap();
    refused.push((
        "another gateway's JWKS",
        verify(&other.jwks(), &token, "app", now),
    ));
    for (what, r) in &refused {
        assert!(r.is_err(), "{what} verified: {r:?}");
    }
    eprintln!("assertion: 1 accepted, {} refused", refused.len());
}
