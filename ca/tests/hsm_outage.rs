//! Disruptive HSM events, in their own binary (login state and the module
//! are process-wide, so they would disturb concurrently running tests):
//! every session logged out (an HSM restart), and the token disappearing
//! while the CA runs (its store moved away, as when a network HSM goes
//! down): requests get 503 naming the HSM, nothing is stored, and service
//! resumes by itself when the token is back. One test, run in sequence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ward_ca::Ca;
use ward_ca::authority::{self, TokenSpec};
use ward_ca::profile::Profile;
use ward_ca::store::CertFilter;

#[test]
fn token_outage_is_503_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    authority::init(&cfg).unwrap();
    let ca = Ca::open(cfg).unwrap();
    let spec = TokenSpec {
        identity: "spiffe://corp.example/a".into(),
        ttl: std::time::Duration::from_secs(600),
        profile: Profile::Workload,
        dns_names: vec![],
        email: None,
    };
    let t = authority::create_token(ca.config(), ca.store().as_ref(), &spec).unwrap();
    ca.enroll(&t.secret, &csr(None).0).unwrap();

    // Every session logged out, as after an HSM restart: the pool reopens
    // and logs in again, for certificates and the CRL alike.
    ca.keys().tokens()[0].logout_all_for_test().unwrap();
    let t1 = authority::create_token(ca.config(), ca.store().as_ref(), &spec).unwrap();
    ca.enroll(&t1.secret, &csr(None).0).unwrap();
    ca.keys().tokens()[0].logout_all_for_test().unwrap();
    assert!(!ca.refresh_crl().unwrap().is_empty());

    let before = ca.store().list_certs(&CertFilter::default()).unwrap().len();

    let tokens = hsm().dir.path().join("tokens");
    let away = hsm().dir.path().join("tokens-away");
    std::fs::rename(&tokens, &away).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    ca.keys().tokens()[0].logout_all_for_test().ok();
    let t2 = authority::create_token(ca.config(), ca.store().as_ref(), &spec).unwrap();
    let e = ca.enroll(&t2.secret, &csr(None).0).unwrap_err();
    assert_eq!(e.status(), 503, "{e}");
    assert_eq!(
        ca.store().list_certs(&CertFilter::default()).unwrap().len(),
        before
    );

    assert!(
        e.to_string().contains("no token labelled `ward-test`"),
        "{e}"
    );

    // The token comes back; after the module re-initialisation back-off
    // (5 s) the same token enrols without restarting the CA.
    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&away, &tokens).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5200));
    let issued = ca.enroll(&t2.secret, &csr(None).0).unwrap();
    assert_eq!(issued.identity, "spiffe://corp.example/a");
}
