//! `X-Ward-Assertion`: a short-lived ES256 JWT telling the upstream who the
//! client is, bound to the client certificate (`cnf.x5t#S256`, RFC 8705).
//!
//! The signing key is generated at start and never leaves memory; upstreams
//! fetch the public half from the admin listener's JWKS. A restart rotates
//! the key, which is fine for tokens that live at most five minutes.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::identity::Identity;

/// Signs identity assertions with an in-memory P-256 key.
pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
    jwk: serde_json::Value,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

impl Signer {
    /// Generates a fresh key; the kid is its RFC 7638 thumbprint.
    pub fn generate() -> Result<Signer, Error> {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| Error::Crypto("cannot generate the assertion key"))?;
        let point = key.public_key().as_ref();
        // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
        let (x, y) = match (point.get(1..33), point.get(33..65)) {
            (Some(x), Some(y)) if point.len() == 65 => (B64.encode(x), B64.encode(y)),
            _ => return Err(Error::Crypto("unexpected public key encoding")),
        };
        let thumb_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64.encode(Sha256::digest(thumb_input.as_bytes()));
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"});
        Ok(Signer {
            key,
            kid,
            rng: SystemRandom::new(),
            jwk,
        })
    }

    /// The key id in every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS document served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        json!({ "keys": [self.jwk] })
    }

    /// [`Signer::assert`] as the `x-ward-assertion` header value, made once
    /// per signature and then shared by every request that reuses it.
    pub fn assert_header(
        &self,
        identity: &Identity,
        groups: &[String],
        route: &str,
        now: i64,
        ttl_secs: u64,
    ) -> Result<http::HeaderValue, Error> {
        let token = self.assert(identity, groups, route, now, ttl_secs)?;
        http::HeaderValue::try_from(token)
            .map_err(|_| Error::Crypto("a signed assertion is not a valid header value"))
    }

    /// Signs an assertion for `identity` on `route`, valid `ttl_secs` from
    /// `now` (Unix seconds).
    pub fn assert(
        &self,
        identity: &Identity,
        groups: &[String],
        route: &str,
        now: i64,
        ttl_secs: u64,
    ) -> Result<String, Error> {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let ttl = i64::try_from(ttl_secs.min(300)).unwrap_or(300);
        // Never outlive the certificate the token is bound to.
        let exp = (now + ttl).min(identity.not_after).max(now);
        let claims = json!({
            "iss": "ward-gateway",
            "sub": identity.principal(),
            "groups": groups,
            "route": route,
            "cnf": {"x5t#S256": B64.encode(identity.fingerprint)},
            "iat": now,
            "exp": exp,
        });
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| Error::Crypto("cannot sign the assertion"))?;
        Ok(format!("{signing_input}.{}", B64.encode(sig.as_ref())))
    }
}

/// Why an assertion was refused by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identity assertion refused: {0}")]
pub struct VerifyError(pub &'static str);

/// The verifier for upstreams (and tests): checks an `X-Ward-Assertion`
/// against the gateway's JWKS and returns its claims. Only ES256 with a kid
/// from `jwks` is accepted (`alg: none` and anything else are refused), the
/// signature must verify, `iss` must be `ward-gateway`, `route` must be the
/// route the caller serves (a token replayed to another route fails), and
/// `now` (Unix seconds) must lie in `[iat - 60, exp)`.
pub fn verify(
    jwks: &serde_json::Value,
    token: &str,
    route: &str,
    now: i64,
) -> Result<serde_json::Value, VerifyError> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError("not three dot-separated parts"));
    };
    let json = |p: &str| -> Result<serde_json::Value, VerifyError> {
        let bytes = B64.decode(p).map_err(|_| VerifyError("bad base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| VerifyError("bad JSON"))
    };
    let header = json(h)?;
    if header["alg"] != "ES256" {
        return Err(VerifyError("alg is not ES256"));
    }
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == header["kid"]))
        .ok_or(VerifyError("kid not in the JWKS"))?;
    let coord = |name: &str| {
        key[name]
            .as_str()
            .and_then(|v| B64.decode(v).ok())
            .filter(|v| v.len() == 32)
            .ok_or(VerifyError("bad JWK coordinates"))
    };
    let mut point = vec![4u8];
    point.extend(coord("x")?);
    point.extend(coord("y")?);
    let sig = B64.decode(sig).map_err(|_| VerifyError("bad base64url"))?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| VerifyError("bad signature"))?;
    let claims = json(c)?;
    if claims["iss"] != "ward-gateway" {
        return Err(VerifyError("wrong issuer"));
    }
    if claims["route"] != route {
        return Err(VerifyError("issued for another route"));
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err(VerifyError("no iat/exp"));
    };
    if now >= exp || now < iat.saturating_sub(60) {
        return Err(VerifyError("expired or not yet valid"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    fn identity() -> Identity {
        Identity {
            spiffe_id: crate::identity::SpiffeId::parse("spiffe://corp.example/ns/a/sa/b").unwrap(),
            uri: "spiffe://corp.example/ns/a/sa/b".into(),
            email: None,
            serial_hex: "01".into(),
            fingerprint: [7; 32],
            not_after: 2_000_000_000,
        }
    }

    #[test]
    fn verify_refuses_other_routes_tampering_alg_none_and_expiry() {
        let s = Signer::generate().unwrap();
        let jwks = s.jwks();
        let tok = s.assert(&identity(), &[], "ledger", 1_000, 300).unwrap();
        assert_eq!(
            verify(&jwks, &tok, "ledger", 1_000).unwrap()["route"],
            "ledger"
        );
        assert!(verify(&jwks, &tok, "billing", 1_000).is_err());
        assert!(verify(&jwks, &tok, "ledger", 1_300).is_err());
        let parts: Vec<&str> = tok.split('.').collect();
        let forged =
            B64.encode(r#"{"iss":"ward-gateway","route":"billing","iat":1000,"exp":1300}"#);
        assert!(
            verify(
                &jwks,
                &format!("{}.{forged}.{}", parts[0], parts[2]),
                "billing",
                1_000
            )
            .is_err()
        );
        let none = B64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert!(verify(&jwks, &format!("{none}.{}.", parts[1]), "ledger", 1_000).is_err());
        let other = Signer::generate().unwrap();
        assert!(verify(&other.jwks(), &tok, "ledger", 1_000).is_err());
    }

    #[test]
    fn token_verifies_against_the_jwks() {
        let s = Signer::generate().unwrap();
        let tok = s
            .assert(&identity(), &["ops".into()], "ledger", 1_000, 300)
            .unwrap();
        let parts: Vec<&str> = tok.split('.').collect();
        assert_eq!(parts.len(), 3);
        let jwk = &s.jwks()["keys"][0];
        let mut point = vec![4u8];
        point.extend(B64.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(B64.decode(jwk["y"].as_str().unwrap()).unwrap());
        let sig = B64.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "spiffe://corp.example/ns/a/sa/b");
        assert_eq!(claims["exp"], 1_300);
        assert_eq!(claims["groups"][0], "ops");
        assert_eq!(claims["cnf"]["x5t#S256"], B64.encode([7u8; 32]));
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], s.kid());
    }

    #[test]
    fn token_never_outlives_the_certificate() {
        let s = Signer::generate().unwrap();
        let mut id = identity();
        id.not_after = 1_100;
        let tok = s.assert(&id, &[], "r", 1_000, 300).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(tok.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["exp"], 1_100);
    }
}
