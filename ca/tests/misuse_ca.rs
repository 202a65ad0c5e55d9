//! CA misuse (issue 10), in-process against a SoftHSM-backed CA: one token
//! raced by many enrolments at once, CSRs asking for wildcards or another
//! identity, and CSRs carrying extensions the CA must not copy. Renewal
//! with a revoked or foreign certificate is covered in `api.rs`
//! (`renewal_and_revocation_refusals`); a wrong HSM PIN in `hsm_pin.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ward_ca::Ca;
use ward_ca::authority::{self, TokenSpec};
use ward_ca::profile::Profile;
use ward_ca::store::CertFilter;

fn open() -> (Arc<Ca>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    authority::init(&cfg).unwrap();
    (Arc::new(Ca::open(cfg).unwrap()), dir)
}

fn token(ca: &Ca, identity: &str) -> String {
    authority::create_token(
        ca.config(),
        ca.store().as_ref(),
        &TokenSpec {
            identity: identity.into(),
            ttl: Duration::from_secs(60),
            profile: Profile::Workload,
            dns_names: vec![],
            email: None,
        },
    )
    .unwrap()
    .secret
}

fn count(ca: &Ca) -> usize {
    ca.store().list_certs(&CertFilter::default()).unwrap().len()
}

/// 16 threads enrol with the same one-time token at the same moment:
/// exactly one certificate is issued.
#[test]
fn one_token_raced_by_sixteen_enrolments_issues_exactly_once() {
    let (ca, _dir) = open();
    for round in 0..3 {
        let t = token(&ca, &format!("spiffe://corp.example/ns/race/sa/r{round}"));
        let before = count(&ca);
        let barrier = Arc::new(std::sync::Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (ca, t, barrier) = (ca.clone(), t.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let (pem, _) = csr(None);
                    barrier.wait();
                    ca.enroll(&t, &pem).is_ok()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(wins, 1, "round {round}: {wins} enrolments won one token");
        assert_eq!(count(&ca), before + 1);
    }
}

/// Wildcards and other identities in the CSR are refused and store nothing.
#[test]
fn csrs_asking_for_wildcards_or_another_identity_are_refused() {
    let (ca, _dir) = open();
    let asks: &[&[rcgen::SanType]] = &[
        &[rcgen::SanType::URI(
            "spiffe://corp.example/*".try_into().unwrap(),
        )],
        &[rcgen::SanType::URI(
            "spiffe://corp.example/ns/a/*".try_into().unwrap(),
        )],
        &[rcgen::SanType::URI(
            "spiffe://corp.example/ns/b".try_into().unwrap(),
        )],
        &[rcgen::SanType::URI(
            "spiffe://corp.example/ns/a/../b".try_into().unwrap(),
        )],
        &[rcgen::SanType::URI(
            "spiffe://CORP.example/ns/a".try_into().unwrap(),
        )],
        &[rcgen::SanType::URI(
            "spiffe://corp.example.evil.example/ns/a"
                .try_into()
                .unwrap(),
        )],
        &[
            rcgen::SanType::URI("spiffe://corp.example/ns/a".try_into().unwrap()),
            rcgen::SanType::URI("spiffe://corp.example/ns/b".try_into().unwrap()),
        ],
        &[
            rcgen::SanType::URI("spiffe://corp.example/ns/a".try_into().unwrap()),
            rcgen::SanType::DnsName("*.corp.example".try_into().unwrap()),
        ],
        &[
            rcgen::SanType::URI("spiffe://corp.example/ns/a".try_into().unwrap()),
            rcgen::SanType::Rfc822Name("ceo@corp.example".try_into().unwrap()),
        ],
    ];
    let before = count(&ca);
    for sans in asks {
        let t = token(&ca, "spiffe://corp.example/ns/a");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = sans.to_vec();
        let pem = p.serialize_request(&key).unwrap().pem().unwrap();
        let r = ca.enroll(&t, &pem);
        assert!(r.is_err(), "{sans:?} was issued");
    }
    assert_eq!(count(&ca), before, "a refused CSR stored a certificate");
}

/// A CSR asking to be a CA, to sign certificates, for any EKU, with name
/// constraints or an unknown critical extension: refused, or issued as a
/// plain leaf that carries none of it.
#[test]
fn csr_extensions_are_never_copied_into_the_certificate() {
    let (ca, dir) = open();
    // rcgen refuses to put most of these in a CSR; OpenSSL does not.
    let key = dir.path().join("x.key");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=x",
            "-keyout",
        ])
        .arg(&key)
        .args([
            "-addext",
            "subjectAltName=URI:spiffe://corp.example/ns/x",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "extendedKeyUsage=anyExtendedKeyUsage,codeSigning",
            "-addext",
            "nameConstraints=permitted;DNS:evil.example",
            "-addext",
            "1.3.6.1.4.1.99999.1=critical,DER:0500",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8(out.stdout).unwrap();
    let t = token(&ca, "spiffe://corp.example/ns/x");
    match ca.enroll(&t, &pem) {
        Err(e) => eprintln!("refused: {e}"),
        Ok(issued) => {
            let ders = pem_to_ders(&issued.chain_pem);
            let (_, cert) = x509_parser::parse_x509_certificate(&ders[0]).unwrap();
            let bc = cert.basic_constraints().unwrap().map(|b| b.value.ca);
            assert_ne!(bc, Some(true), "issued a CA certificate");
            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(
                !ku.key_cert_sign() && !ku.crl_sign(),
                "issued a signing key usage"
            );
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(!eku.any && !eku.code_signing, "copied the CSR's EKUs");
            assert!(cert.name_constraints().unwrap().is_none());
            assert!(
                !cert
                    .extensions()
                    .iter()
                    .any(|e| e.oid.to_id_string() == "1.3.6.1.4.1.99999.1"),
                "copied an unknown extension"
            );
        }
    }
}
