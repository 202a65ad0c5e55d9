//! The CA against a real SoftHSM2 token: init, issuance, external
//! verifiers (OpenSSL, pkilint, Go, rustls-webpki), HSM failure modes and
//! session recovery.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use ward_ca::Ca;
use ward_ca::authority::{self, TokenSpec, cert_pem};
use ward_ca::profile::Profile;
use ward_ca::store::{CertFilter, SqliteStore, Store};
use x509_parser::prelude::*;

fn token(ca: &Ca, identity: &str, dns: &[&str]) -> String {
    authority::create_token(
        ca.config(),
        ca.store().as_ref(),
        &TokenSpec {
            identity: identity.into(),
            ttl: Duration::from_secs(600),
            profile: Profile::Workload,
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            email: None,
        },
    )
    .unwrap()
    .secret
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// pkilint findings other than the known spiffe:// false positive.
fn pkilint_findings(text: &str) -> Vec<String> {
    // Each finding is a "Validator @ path" line then a "code (SEVERITY)" line.
    text.lines()
        .map(str::trim)
        .filter(|l| {
            ["(FATAL)", "(ERROR)", "(WARNING)", "(NOTICE)", "(INFO)"]
                .iter()
                .any(|s| l.ends_with(s))
        })
        .filter(|l| !l.starts_with("pkix.invalid_uri_syntax "))
        .map(str::to_string)
        .collect()
}

fn go_verify(dir: &Path, root: &Path, inter: &Path, leaf: &Path) -> (bool, String) {
    let prog = r#"package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

func load(p string) *x509.Certificate {
	b, err := os.ReadFile(p)
	if err != nil { panic(err) }
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil { panic(err) }
	return c
}

func main() {
	roots := x509.NewCertPool()
	roots.AddCert(load(os.Args[1]))
	inters := x509.NewCertPool()
	inters.AddCert(load(os.Args[2]))
	leaf := load(os.Args[3])
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil { fmt.Println("FAIL", err); os.Exit(1) }
	if len(leaf.URIs) != 1 { fmt.Println("FAIL uris", leaf.URIs); os.Exit(1) }
	fmt.Println("OK", leaf.URIs[0])
}
"#;
    let gdir = dir.join("gocheck");
    std::fs::create_dir_all(&gdir).unwrap();
    std::fs::write(gdir.join("main.go"), prog).unwrap();
    std::fs::write(gdir.join("go.mod"), "module gocheck\n\ngo 1.19\n").unwrap();
    run(Command::new("go")
        .arg("run")
        .arg(".")
        .args([root, inter, leaf])
        .current_dir(&gdir)
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local"))
}

#[test]
fn init_then_issue_passes_openssl_pkilint_go_and_webpki() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let report = authority::init(&cfg).unwrap();
    // A second init refuses: the CA exists.
    let again = authority::init(&cfg).unwrap_err();
    assert_eq!(again.code(), "ca_exists", "{again}");

    let ca = Ca::open(cfg).unwrap();
    let tok = token(&ca, "spiffe://corp.example/ns/prod/sa/billing", &[]);
    let (csr, _key) = csr(None);
    let issued = ca.enroll(&tok, &csr).unwrap();
    assert_eq!(issued.identity, "spiffe://corp.example/ns/prod/sa/billing");

    let ders = pem_to_ders(&issued.chain_pem);
    assert_eq!(ders.len(), 2);
    let (_, leaf) = parse_x509_certificate(&ders[0]).unwrap();
    // 128-bit serial, positive.
    assert!(leaf.raw_serial().len() >= 16 && leaf.raw_serial().len() <= 17);
    let nb = leaf.validity().not_before.timestamp();
    let na = leaf.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(now - nb <= 62 && now - nb >= 58, "backdated about a minute");
    assert!((na - now - 3600).abs() <= 2, "workload lifetime 1 h");
    let san = leaf.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(san.general_names.len(), 1);
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    assert!(!leaf.is_ca());
    let (_, inter) = parse_x509_certificate(&report.issuing_der).unwrap();
    let bc = inter.basic_constraints().unwrap().unwrap().value;
    assert_eq!(bc.path_len_constraint, Some(0));
    assert!(
        inter.name_constraints().unwrap().is_none(),
        "no URI name constraints by default"
    );

    let root = write(
        dir.path(),
        "root.pem",
        cert_pem(&report.root_der).as_bytes(),
    );
    let interp = write(
        dir.path(),
        "inter.pem",
        cert_pem(&report.issuing_der).as_bytes(),
    );
    let leafp = write(dir.path(), "leaf.pem", cert_pem(&ders[0]).as_bytes());

    let (ok, out) = run(Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&interp)
        .arg(&leafp));
    assert!(ok, "openssl verify: {out}");

    // Also a leaf with DNS names (serverAuth) and a user leaf (e-mail),
    // from an RSA-2048 CSR made by OpenSSL.
    let dns_tok = token(
        &ca,
        "spiffe://corp.example/ns/prod/sa/api",
        &["api.corp.example"],
    );
    let dns_leaf = ca.enroll(&dns_tok, &common::csr(None).0).unwrap();
    let dns_leafp = write(
        dir.path(),
        "dns.pem",
        cert_pem(&pem_to_ders(&dns_leaf.chain_pem)[0]).as_bytes(),
    );
    let user_tok = authority::create_token(
        ca.config(),
        ca.store().as_ref(),
        &TokenSpec {
            identity: "spiffe://corp.example/user/alice".into(),
            ttl: Duration::from_secs(600),
            profile: Profile::User,
            dns_names: vec![],
            email: Some("alice@corp.example".into()),
        },
    )
    .unwrap()
    .secret;
    let (ok, out) = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=alice",
            "-keyout",
        ])
        .arg(dir.path().join("rsa.key"))
        .arg("-out")
        .arg(dir.path().join("rsa.csr")));
    assert!(ok, "{out}");
    let rsa_csr = std::fs::read_to_string(dir.path().join("rsa.csr")).unwrap();
    let user_leaf = ca.enroll(&user_tok, &rsa_csr).unwrap();
    let user_leafp = write(
        dir.path(),
        "user.pem",
        cert_pem(&pem_to_ders(&user_leaf.chain_pem)[0]).as_bytes(),
    );
    for leaf in [&dns_leafp, &user_leafp] {
        let (ok, out) = run(Command::new("openssl")
            .args(["verify", "-purpose", "sslclient", "-CAfile"])
            .arg(&root)
            .arg("-untrusted")
            .arg(&interp)
            .arg(leaf));
        assert!(ok, "openssl verify {}: {out}", leaf.display());
    }

    for cert in [&root, &interp, &leafp, &dns_leafp, &user_leafp] {
        let (_, out) = run(Command::new("lint_pkix_cert")
            .args(["lint", "-s", "NOTICE"])
            .arg(cert));
        let findings = pkilint_findings(&out);
        assert!(
            findings.is_empty(),
            "pkilint {}: {findings:#?}",
            cert.display()
        );
    }
    for (issuer, subject) in [
        (&root, &interp),
        (&interp, &leafp),
        (&interp, &dns_leafp),
        (&interp, &user_leafp),
        (&root, &root),
    ] {
        let (_, out) = run(Command::new("lint_pkix_signer_signee_cert_chain")
            .args(["lint", "-s", "NOTICE"])
            .arg(issuer)
            .arg(subject));
        let findings = pkilint_findings(&out);
        assert!(
            findings.is_empty(),
            "chain lint {} -> {}: {findings:#?}",
            issuer.display(),
            subject.display()
        );
    }

    let (ok, out) = go_verify(dir.path(), &root, &interp, &leafp);
    assert!(ok, "go crypto/x509: {out}");

    // rustls-webpki, as the gateway will verify clients.
    ward_ca::server::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(report.root_der.clone().into()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(roots.into())
        .build()
        .unwrap();
    verifier
        .verify_client_cert(
            &ders[0].clone().into(),
            &[ders[1].clone().into()],
            rustls::pki_types::UnixTime::now(),
        )
        .unwrap();
}

#[test]
fn hsm_problems_are_named_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let base = config(dir.path(), "");
    let cases = [
        (
            "missing PIN",
            format!(
                "pkcs11:token={TOKEN};object=x-nopin?module-path={MODULE}&pin-source=env:WARD_TEST_UNSET_PIN"
            ),
            "WARD_TEST_UNSET_PIN is not set",
        ),
        (
            "missing module",
            format!(
                "pkcs11:token={TOKEN};object=x?module-path=/nonexistent/libpkcs11.so&pin-source=env:{PIN_ENV}"
            ),
            "does not exist",
        ),
        (
            "token not found",
            format!(
                "pkcs11:token=no-such-token;object=x?module-path={MODULE}&pin-source=env:{PIN_ENV}"
            ),
            "no token labelled `no-such-token`",
        ),
    ];
    for (what, uri, expect) in cases {
        let mut cfg = base.clone();
        cfg.database = dir.path().join(format!("{}.db", what.replace(' ', "-")));
        cfg.keys.root = uri;
        let e = authority::init(&cfg).unwrap_err();
        assert_eq!(e.status(), 503, "{what}: {e}");
        assert!(e.to_string().contains(expect), "{what}: {e}");
        let store = SqliteStore::open(&cfg.database).unwrap();
        assert!(
            store.authority().unwrap().is_none(),
            "{what}: a CA was stored"
        );
    }
}

#[test]
fn enrolment_refusals_write_nothing_and_keep_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    authority::init(&cfg).unwrap();
    let ca = Ca::open(cfg).unwrap();
    let tok = token(
        &ca,
        "spiffe://corp.example/ns/prod/*",
        &["api.corp.example"],
    );
    let count = || ca.store().list_certs(&CertFilter::default()).unwrap().len();
    let before = count();

    let p521 = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://corp.example/ns/prod/x".try_into().unwrap(),
        )];
        p.serialize_request(&key).unwrap().pem().unwrap()
    };
    let with_ku = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://corp.example/ns/prod/x".try_into().unwrap(),
        )];
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.serialize_request(&key).unwrap().pem().unwrap()
    };
    let with_dns = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        p.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://corp.example/ns/prod/x".try_into().unwrap(),
        ));
        p.serialize_request(&key).unwrap().pem().unwrap()
    };
    let cases: Vec<(&str, String, &str, u16)> = vec![
        (
            "no identity for a pattern",
            csr(None).0,
            "csr_missing_identity",
            400,
        ),
        (
            "outside the grant",
            csr(Some("spiffe://corp.example/ns/dev/x")).0,
            "identity_not_granted",
            403,
        ),
        (
            "outside the trust domain",
            csr(Some("spiffe://evil.example/ns/prod/x")).0,
            "identity_outside_trust_domain",
            403,
        ),
        ("weak curve", p521, "csr_weak_key", 400),
        ("CA extension", with_ku, "csr_unexpected_extension", 400),
        ("DNS not granted", with_dns, "dns_not_granted", 403),
        (
            "not a CSR",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".into(),
            "csr_malformed",
            400,
        ),
    ];
    for (what, csr_pem, code, status) in cases {
        let e = ca.enroll(&tok, &csr_pem).unwrap_err();
        assert_eq!((e.code(), e.status()), (code, status), "{what}: {e}");
        assert_eq!(count(), before, "{what}: something was stored");
    }
    // The token survived every refusal and still works, once.
    let ok = ca
        .enroll(&tok, &csr(Some("spiffe://corp.example/ns/prod/sa/x")).0)
        .unwrap();
    let ders = pem_to_ders(&ok.chain_pem);
    let (_, leaf) = parse_x509_certificate(&ders[0]).unwrap();
    assert!(
        leaf.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .server_auth,
        "DNS grant adds serverAuth"
    );
    let e = ca
        .enroll(&tok, &csr(Some("spiffe://corp.example/ns/prod/sa/y")).0)
        .unwrap_err();
    assert_eq!((e.code(), e.status()), ("token_used", 409));
    let e = ca
        .enroll("ward1.0000000000000000.nope", &csr(None).0)
        .unwrap_err();
    assert_eq!((e.code(), e.status()), ("token_unknown", 401));
    assert_eq!(count(), before + 1);
}

#[test]
fn keys_are_generated_sensitive_non_extractable_token_objects() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    authority::init(&cfg).unwrap();
    let ca = Ca::open(cfg.clone()).unwrap();
    let token = ca.keys().tokens()[0].clone();
    for key in [
        cfg.root_key().unwrap(),
        cfg.issuing_key().unwrap(),
        cfg.log_key().unwrap(),
    ] {
        let ward_ca::keys::KeyRef::Pkcs11(uri) = key else {
            panic!("pkcs11 expected")
        };
        let (sensitive, extractable, on_token, never_extractable) =
            token.key_protection(&uri.object).unwrap();
        assert!(
            sensitive && !extractable && on_token && never_extractable,
            "{}",
            uri.object
        );
    }
}

#[test]
fn racing_enrolments_with_one_token_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    authority::init(&cfg).unwrap();
    let ca = std::sync::Arc::new(Ca::open(cfg).unwrap());
    let tok = token(&ca, "spiffe://corp.example/race", &[]);
    let before = ca.store().list_certs(&CertFilter::default()).unwrap().len();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (ca, tok, barrier) = (ca.clone(), tok.clone(), barrier.clone());
            let (c, _) = csr(None);
            std::thread::spawn(move || {
                barrier.wait();
                ca.enroll(&tok, &c)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!((r.code(), r.status()), ("token_used", 409), "{r}");
    }
    assert_eq!(
        ca.store().list_certs(&CertFilter::default()).unwrap().len(),
        before + 1
    );
}

#[test]
fn user_tokens_add_the_email_and_last_12_hours() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    authority::init(&cfg).unwrap();
    let ca = Ca::open(cfg).unwrap();
    let t = authority::create_token(
        ca.config(),
        ca.store().as_ref(),
        &TokenSpec {
            identity: "spiffe://corp.example/user/alice".into(),
            ttl: Duration::from_secs(60),
            profile: Profile::User,
            dns_names: vec![],
            email: Some("alice@corp.example".into()),
        },
    )
    .unwrap();
    let issued = ca.enroll(&t.secret, &csr(None).0).unwrap();
    let ders = pem_to_ders(&issued.chain_pem);
    let (_, leaf) = parse_x509_certificate(&ders[0]).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.iter().any(|n| n.contains("alice@corp.example")),
        "{names:?}"
    );
    let life = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert_eq!(life, 12 * 3600 + 60);
    // A token cannot grant another trust domain.
    let e = authority::create_token(
        ca.config(),
        ca.store().as_ref(),
        &TokenSpec {
            identity: "spiffe://evil.example/x".into(),
            ttl: Duration::from_secs(60),
            profile: Profile::Workload,
            dns_names: vec![],
            email: None,
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "identity_outside_trust_domain");
    // A user token must name the e-mail the certificate will carry.
    let e = authority::create_token(
        ca.config(),
        ca.store().as_ref(),
        &TokenSpec {
            identity: "spiffe://corp.example/user/bob".into(),
            ttl: Duration::from_secs(60),
            profile: Profile::User,
            dns_names: vec![],
            email: None,
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "email_required");
}

#[test]
fn file_keys_work_and_say_they_are_not_hsm_protected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.toml");
    let d = dir.path().display();
    std::fs::write(
        &path,
        format!("trust_domain = \"corp.example\"\ndatabase = \"ca.db\"\n[keys]\nroot = \"file:{d}/root.pem\"\nissuing = \"file:{d}/issuing.pem\"\n"),
    )
    .unwrap();
    let cfg = ward_ca::settings::CaConfig::load(&path).unwrap();
    authority::init(&cfg).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in ["root.pem", "issuing.pem", "log.pem"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert!(ward_ca::keys::backend_name(&cfg.issuing_key().unwrap()).contains("NOT HSM-protected"));
    let ca = Ca::open(cfg).unwrap();
    let t = token(&ca, "spiffe://corp.example/demo", &[]);
    ca.enroll(&t, &csr(None).0).unwrap();
}

#[test]
fn optional_uri_name_constraint_is_on_the_intermediate_and_webpki_rejects_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "uri_name_constraints = true");
    let report = authority::init(&cfg).unwrap();
    let (_, inter) = parse_x509_certificate(&report.issuing_der).unwrap();
    let nc = inter.name_constraints().unwrap().unwrap();
    assert!(nc.critical);
    let ca = Ca::open(cfg).unwrap();
    let t = token(&ca, "spiffe://corp.example/nc", &[]);
    let issued = ca.enroll(&t, &csr(None).0).unwrap();
    let ders = pem_to_ders(&issued.chain_pem);
    // OpenSSL honours the constraint and accepts the chain...
    let root = write(
        dir.path(),
        "root.pem",
        cert_pem(&report.root_der).as_bytes(),
    );
    let interp = write(
        dir.path(),
        "inter.pem",
        cert_pem(&report.issuing_der).as_bytes(),
    );
    let leafp = write(dir.path(), "leaf.pem", cert_pem(&ders[0]).as_bytes());
    let (ok, out) = run(Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&interp)
        .arg(&leafp));
    assert!(ok, "{out}");
    // ...while rustls-webpki refuses it (RUSTSEC-2026-0098): why it is off
    // by default.
    ward_ca::server::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(report.root_der.clone().into()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(roots.into())
        .build()
        .unwrap();
    let r = verifier.verify_client_cert(
        &ders[0].clone().into(),
        &[ders[1].clone().into()],
        rustls::pki_types::UnixTime::now(),
    );
    assert!(r.is_err(), "webpki accepted a URI name-constrained chain");
}
