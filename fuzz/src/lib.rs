//! Fuzz target bodies for issue 10, shared by the libFuzzer binaries in
//! `fuzz_targets/` and by the seed-corpus replay test in the workspace
//! (`tests/fuzz_corpus.rs` includes this file by path), so CI exercises the
//! same code on stable without building a fuzzer.
//!
//! Each function takes arbitrary bytes and must never panic: every parser
//! on the outside of ward answers bad input with an error value.

use std::path::Path;

/// CSR parsing and validation (DER and PEM), as the CA does on enrol/renew.
pub fn csr(data: &[u8]) {
    let _ = ward_ca::csr::parse_der(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ward_ca::csr::parse_pem(text);
    }
}

/// Certificate identity extraction, as the gateway does per connection,
/// and the SPIFFE ID / trust-domain parsers behind it.
pub fn cert_identity(data: &[u8]) {
    if let Ok(td) = ward_ca::identity::TrustDomain::new("corp.example") {
        let _ = ward_gateway::identity::Identity::from_leaf(data, &td);
    }
    let text = String::from_utf8_lossy(data);
    let _ = ward_ca::identity::SpiffeId::parse(&text);
    let _ = ward_ca::identity::TrustDomain::new(&text);
    let _ = ward_ca::identity::IdentityPattern::parse(&text);
}

/// Policy parsing, compilation and evaluation. The input is a policy
/// document, optionally followed by a 0xFF byte and a JSON request.
pub fn policy(data: &[u8]) {
    let (doc, req) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let text = String::from_utf8_lossy(doc).to_string();
    let sources = [ward_policy::Source::new("fuzz.json", text)];
    let Ok((set, _warnings)) =
        ward_policy::PolicySet::compile(&sources, &ward_policy::Schema::gateway())
    else {
        return;
    };
    let mut requests = vec![ward_policy::Request {
        principal: ward_policy::Principal::spiffe("spiffe://corp.example/ns/a/sa/b"),
        action: "http:GET".into(),
        resource: "route/app/v1/x".into(),
        context: ward_policy::Context::new(),
    }];
    if let Some(r) = req.and_then(|r| serde_json::from_slice::<ward_policy::Request>(r).ok()) {
        requests.push(r);
    }
    for r in &requests {
        let _ = set.evaluate(r);
    }
}

/// TOML configuration files of the gateway, the CA and the agent.
pub fn toml_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new("fuzz.toml");
    let _ = ward_ca::config::parse::<ward_gateway::Config>(text, origin);
    let _ = ward_ca::config::parse::<ward_ca::settings::CaConfig>(text, origin);
    let _ = ward_ca::config::parse::<ward_agent::config::AgentConfig>(text, origin);
}

/// CA API JSON bodies (and the log's proof documents) as the server and the
/// clients deserialise them.
pub fn ca_json(data: &[u8]) {
    use ward_ca::server::routes::{EnrollRequest, RenewRequest, RevokeRequest};
    let _ = serde_json::from_slice::<EnrollRequest>(data);
    let _ = serde_json::from_slice::<RenewRequest>(data);
    let _ = serde_json::from_slice::<RevokeRequest>(data);
    let _ = serde_json::from_slice::<ward_ca::translog::InclusionProofJson>(data);
    let _ = serde_json::from_slice::<ward_ca::translog::ConsistencyProofJson>(data);
    let _ = serde_json::from_slice::<ward_ca::translog::SthJson>(data);
}

fn u64_at(d: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        *x = d.get(at + i).copied().unwrap_or(0);
    }
    // Keep sizes small enough that interesting (valid-looking) shapes occur.
    u64::from_le_bytes(b) % 4096
}

fn hash_at(d: &[u8], at: usize) -> [u8; 32] {
    let mut h = [0u8; 32];
    for (i, x) in h.iter_mut().enumerate() {
        *x = d.get(at + i).copied().unwrap_or(0);
    }
    h
}

/// Merkle inclusion and consistency proof verification (RFC 9162), with
/// arbitrary indices, sizes, roots and proof paths.
pub fn merkle(data: &[u8]) {
    use ward_ca::translog::merkle::{verify_consistency, verify_inclusion};
    let a = u64_at(data, 0);
    let b = u64_at(data, 8);
    let h1 = hash_at(data, 16);
    let h2 = hash_at(data, 48);
    let path: Vec<[u8; 32]> = data
        .get(80..)
        .unwrap_or(&[])
        .chunks(32)
        .take(64)
        .map(|c| hash_at(c, 0))
        .collect();
    let _ = verify_inclusion(a, b, &h1, &path, &h2);
    let _ = verify_consistency(a, b, &h1, &h2, &path);
}

/// A target body.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay and the runner.
pub const TARGETS: &[(&str, Target)] = &[
    ("csr", csr),
    ("cert_identity", cert_identity),
    ("policy", policy),
    ("toml_config", toml_config),
    ("ca_json", ca_json),
    ("merkle", merkle),
];
