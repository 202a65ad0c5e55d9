//! The HTTPS API end to end against a SoftHSM-backed CA: enrol with a
//! token, renew over mTLS, revoke, fetch the CRL; and every refusal with
//! its status, message and no stored change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ward_ca::authority::{self, TokenSpec, fingerprint};
use ward_ca::client::{CaClient, RootPin};
use ward_ca::profile::Profile;
use ward_ca::store::CertFilter;
use ward_ca::{Ca, Error};

struct Running {
    ca: Arc<Ca>,
    url: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Running {
    start_with("").await
}

async fn start_with(server_extra: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/ca.json"),
        r#"{"Version": "2026-11-01", "Statement": [{
            "Sid": "SecOpsRevokes", "Effect": "Allow",
            "Principal": {"Spiffe": "spiffe://corp.example/ns/secops/sa/responder"},
            "Action": "ca:Revoke", "Resource": "ca/certs/*"}]}"#,
    )
    .unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_request_bytes = 4096\nadmins = [\"spiffe://corp.example/user/admin\"]\n{server_extra}"
        ),
    );
    authority::init(&cfg).unwrap();
    let ca = Arc::new(Ca::open(cfg).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server_ca = Arc::clone(&ca);
    tokio::spawn(async move {
        ward_ca::server::serve(server_ca, listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    let r = Running {
        ca,
        url: format!("https://localhost:{port}"),
        _dir: dir,
        _stop: tx,
    };
    // Ready once it answers (its own server certificate is then stored).
    r.client().bundle().await.unwrap();
    r
}

impl Running {
    fn client(&self) -> CaClient {
        CaClient::new(
            &self.url,
            RootPin::Fingerprint(fingerprint(self.ca.root_der())),
        )
        .unwrap()
    }

    fn token(&self, identity: &str, ttl: Duration) -> String {
        authority::create_token(
            self.ca.config(),
            self.ca.store().as_ref(),
            &TokenSpec {
                identity: identity.into(),
                ttl,
                profile: Profile::Workload,
                dns_names: vec![],
                email: None,
            },
        )
        .unwrap()
        .secret
    }

    fn count(&self) -> usize {
        self.ca
            .store()
            .list_certs(&CertFilter::default())
            .unwrap()
            .len()
    }

    async fn enrolled(&self, id: &str) -> (CaClient, ward_ca::Issued, rcgen::KeyPair) {
        let (csr_pem, key) = csr(None);
        let issued = self
            .client()
            .enroll(&self.token(id, Duration::from_secs(60)), &csr_pem)
            .await
            .unwrap();
        let c = self
            .client()
            .with_client_cert(&issued.chain_pem, &key.serialize_pem())
            .unwrap();
        (c, issued, key)
    }
}

fn remote(e: Error) -> (u16, String, String) {
    match e {
        Error::Remote {
            status,
            code,
            message,
        } => (status, code, message),
        other => panic!("expected an HTTP error, got {other}"),
    }
}

fn crl_serials(der: &[u8]) -> Vec<String> {
    let (_, crl) = x509_parser::parse_x509_crl(der).unwrap();
    crl.iter_revoked_certificates()
        .map(|r| ward_ca::authority::serial_hex(r.raw_serial()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_renew_revoke_and_the_crl_lists_the_serial() {
    let ca = start().await;
    let client = ca.client();
    let bundle = client.bundle().await.unwrap();
    assert_eq!(bundle.root_fingerprint, fingerprint(ca.ca.root_der()));
    assert_eq!(
        client.root_der().unwrap(),
        ca.ca.root_der(),
        "root learned by pin"
    );

    let (mtls, first, _key) = ca
        .enrolled("spiffe://corp.example/ns/prod/sa/billing")
        .await;
    assert_eq!(first.identity, "spiffe://corp.example/ns/prod/sa/billing");

    // Renew with a new key over mTLS: same identity, new serial, recorded
    // with the previous serial as requester.
    let (csr2, key2) = csr(None);
    let second = mtls.renew(&csr2).await.unwrap();
    assert_eq!(second.identity, first.identity);
    assert_ne!(second.serial, first.serial);
    let rec = ca.ca.store().cert(&second.serial).unwrap().unwrap();
    assert_eq!(rec.requester, format!("renew:{}", first.serial));

    // Revoke the new certificate with itself; the CRL lists it.
    let mtls2 = client
        .with_client_cert(&second.chain_pem, &key2.serialize_pem())
        .unwrap();
    let r = mtls2
        .revoke(&second.serial, Some("keyCompromise"))
        .await
        .unwrap();
    assert_eq!(r.serial, second.serial);
    let crl = client.crl().await.unwrap();
    assert!(
        crl_serials(&crl).contains(&second.serial),
        "CRL lacks {}",
        second.serial
    );
    let (_, parsed) = x509_parser::parse_x509_crl(&crl).unwrap();
    let next = parsed.next_update().unwrap().timestamp() - parsed.last_update().timestamp();
    assert!(next <= 11 * 60, "nextUpdate is short: {next}s");

    // Every issued certificate (server, first, second) and the revocation
    // went to the transparency log before the caller saw them.
    let sth = ca.ca.translog().reader().sth().unwrap();
    assert_eq!(sth.tree_size, ca.count() as u64 + 1, "{sth:?}");

    // The log proves the first certificate's issuance offline, with the
    // key from the bundle; an admin may search it, others may not.
    let key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&bundle.log_public_key)
            .unwrap()
    };
    let key = ward_ca::translog::LogPublicKey::from_spki_der(&key).unwrap();
    // The proof came back with the certificate, too.
    let receipt = first
        .log_proof
        .as_ref()
        .expect("log proof with the certificate");
    ward_ca::translog::verify_inclusion_json(receipt, &key).unwrap();
    let proof = client.inclusion_proof(&first.serial).await.unwrap();
    let verified = ward_ca::translog::verify_inclusion_json(&proof, &key).unwrap();
    assert!(verified.entry.is_some());
    let head = client.log_sth().await.unwrap();
    ward_ca::translog::verify_sth_json(&head, &key).unwrap();
    let cons = client.consistency_proof(1, head.tree_size).await.unwrap();
    ward_ca::translog::verify_consistency_json(&cons, &key).unwrap();
    let query = ward_ca::translog::CertQuery {
        identity: Some(first.identity.clone()),
        ..Default::default()
    };
    let e = remote(mtls.certs(&query).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (403, "not_authorized"), "{}", e.2);
    assert!(e.2.contains("ca:ReadLog"), "{}", e.2);
    let (admin, _, _) = ca.enrolled("spiffe://corp.example/user/admin").await;
    let found = admin.certs(&query).await.unwrap();
    let text = serde_json::to_string(&found).unwrap();
    assert!(
        text.contains(&first.serial) && text.contains(&second.serial),
        "{text}"
    );

    // A revoked certificate can neither renew nor revoke.
    let e = remote(mtls2.renew(&csr(None).0).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (403, "client_cert_revoked"), "{}", e.2);

    let metrics = client.post_raw("/metrics", vec![]).await.unwrap();
    assert_eq!(metrics.0, 400, "POST /metrics is refused");
    let text = client.metrics().await.unwrap();
    assert!(
        text.contains("ward_ca_issued_total{profile=\"workload\"}"),
        "{text}"
    );
    assert!(text.contains("ward_ca_renewals_total 1"), "{text}");
    assert!(text.contains("ward_ca_hsm_sign_seconds_bucket"), "{text}");
    assert!(text.contains("ward_ca_crl_age_seconds "), "{text}");
    assert!(
        text.contains("ward_ca_rejections_total{reason=\"client_cert_revoked\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_say_why_and_store_nothing() {
    let ca = start().await;
    let client = ca.client();
    let before = ca.count();
    let log_before = ca.ca.translog().reader().sth().unwrap().tree_size;

    // A client pinned to another root refuses the server before sending
    // anything.
    let wrong = CaClient::new(
        &ca.url,
        RootPin::Fingerprint(format!("sha256:{}", "00".repeat(32))),
    )
    .unwrap();
    match wrong
        .enroll("ward1.00.nope", &csr(None).0)
        .await
        .unwrap_err()
    {
        Error::Transport(m) => assert!(m.contains("pinned root"), "{m}"),
        other => panic!("expected a pinning failure, got {other}"),
    }

    // Unknown token.
    let e = remote(
        client
            .enroll("ward1.00.nope", &csr(None).0)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.0, e.1.as_str()), (401, "token_unknown"));
    assert!(e.2.contains("unknown enrolment token"), "{}", e.2);

    // Expired token.
    let t = ca.token("spiffe://corp.example/a", Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = remote(client.enroll(&t, &csr(None).0).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (401, "token_expired"), "{}", e.2);

    // Bad CSR signature.
    let t = ca.token("spiffe://corp.example/a", Duration::from_secs(60));
    let (good, _) = csr(Some("spiffe://corp.example/a"));
    let der = ward_ca_pem_decode(&good);
    let mut bad = der.clone();
    let pos = bad.windows(4).position(|w| w == b"corp").unwrap();
    bad[pos] = b'k';
    let bad_pem = pem("CERTIFICATE REQUEST", &bad);
    let e = remote(client.enroll(&t, &bad_pem).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (400, "csr_bad_signature"), "{}", e.2);

    // Weak RSA key (OpenSSL-made, 1024 bits).
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-new", "-newkey", "rsa:1024", "-nodes", "-subj", "/CN=x", "-keyout",
        ])
        .arg(dir.path().join("k.pem"))
        .arg("-out")
        .arg(dir.path().join("r.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let weak = std::fs::read_to_string(dir.path().join("r.pem")).unwrap();
    let e = remote(client.enroll(&t, &weak).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (400, "csr_weak_key"), "{}", e.2);
    assert!(e.2.contains("1024 bits"), "{}", e.2);

    // Identity outside the grant / trust domain.
    let e = remote(
        client
            .enroll(&t, &csr(Some("spiffe://corp.example/b")).0)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.0, e.1.as_str()),
        (403, "identity_not_granted"),
        "{}",
        e.2
    );
    let e = remote(
        client
            .enroll(&t, &csr(Some("spiffe://evil.example/a")).0)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.0, e.1.as_str()),
        (403, "identity_outside_trust_domain"),
        "{}",
        e.2
    );

    // Oversized request.
    let big = vec![b'x'; 10_000];
    let (status, body) = client.post_raw("/v1/enroll", big).await.unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("request_too_large") && body.contains("4096"),
        "{body}"
    );

    // Malformed JSON.
    let (status, body) = client
        .post_raw("/v1/enroll", b"{\"token\":1}".to_vec())
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_json"), "{body}");

    // Unknown route.
    let (status, body) = client.post_raw("/v1/nope", vec![]).await.unwrap();
    assert_eq!(status, 404, "{body}");

    assert_eq!(ca.count(), before, "a refused request stored a certificate");
    let log_after = ca.ca.translog().reader().sth().unwrap().tree_size;
    assert_eq!(log_after, log_before, "a refused request reached the log");
    // The token survived all of that; using it twice: one wins.
    client.enroll(&t, &csr(None).0).await.unwrap();
    let e = remote(client.enroll(&t, &csr(None).0).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (409, "token_used"), "{}", e.2);
    assert_eq!(ca.count(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_and_revocation_refusals() {
    let ca = start().await;
    let client = ca.client();
    let (mtls, issued, key) = ca.enrolled("spiffe://corp.example/ns/a").await;
    let (other_mtls, other, _) = ca.enrolled("spiffe://corp.example/ns/b").await;
    let before = ca.count();

    // No client certificate.
    let e = remote(client.renew(&csr(None).0).await.unwrap_err());
    assert_eq!(
        (e.0, e.1.as_str()),
        (401, "client_cert_required"),
        "{}",
        e.2
    );

    // Foreign certificate (self-signed, same identity).
    let fkey = rcgen::KeyPair::generate().unwrap();
    let mut fp = rcgen::CertificateParams::default();
    fp.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://corp.example/ns/a".try_into().unwrap(),
    )];
    let foreign = fp.self_signed(&fkey).unwrap();
    let fclient = client
        .with_client_cert(&foreign.pem(), &fkey.serialize_pem())
        .unwrap();
    let e = remote(fclient.renew(&csr(None).0).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (401, "client_cert_foreign"), "{}", e.2);

    // Same key again.
    let same = {
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = vec![];
        p.serialize_request(&key).unwrap().pem().unwrap()
    };
    let e = remote(mtls.renew(&same).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (400, "renew_same_key"), "{}", e.2);

    // Another identity in the renewal CSR.
    let e = remote(
        mtls.renew(&csr(Some("spiffe://corp.example/ns/b")).0)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.0, e.1.as_str()),
        (403, "identity_not_granted"),
        "{}",
        e.2
    );

    // Revoking someone else's certificate without ca:Revoke.
    let e = remote(mtls.revoke(&other.serial, None).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (403, "not_authorized"), "{}", e.2);
    assert!(e.2.contains("ca:Revoke"), "{}", e.2);
    assert!(
        ca.ca
            .store()
            .cert(&other.serial)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    // Expired certificate (issued offline with a 1 s lifetime).
    let (ecsr, ekey) = csr(None);
    let short = ca
        .ca
        .issue_offline(
            &ecsr,
            "spiffe://corp.example/ns/c",
            Profile::Workload,
            &[],
            None,
            Some(Duration::from_secs(1)),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let eclient = client
        .with_client_cert(&short.chain_pem, &ekey.serialize_pem())
        .unwrap();
    let e = remote(eclient.renew(&csr(None).0).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (401, "client_cert_expired"), "{}", e.2);

    assert_eq!(
        ca.count(),
        before + 1,
        "only the offline certificate was stored"
    );

    // An admin may revoke others.
    let (admin, _, _) = ca.enrolled("spiffe://corp.example/user/admin").await;
    admin
        .revoke(&other.serial, Some("privilegeWithdrawn"))
        .await
        .unwrap();
    let rec = ca.ca.store().cert(&other.serial).unwrap().unwrap();
    assert!(rec.revoked_by.unwrap().starts_with("cert:"));
    let e = remote(other_mtls.renew(&csr(None).0).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (403, "client_cert_revoked"), "{}", e.2);
    let _ = issued;
}

fn ward_ca_pem_decode(pem_text: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).unwrap();
    p.contents
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for c in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(c).unwrap());
        s.push('\n');
    }
    s + &format!("-----END {label}-----\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_policy_decides_who_may_revoke_others() {
    let ca = start_with("policy_dir = \"policies\"\n").await;
    let (victim_mtls, victim, _) = ca.enrolled("spiffe://corp.example/ns/a").await;
    let (bystander, _, _) = ca.enrolled("spiffe://corp.example/ns/b").await;
    let (secops, _, _) = ca
        .enrolled("spiffe://corp.example/ns/secops/sa/responder")
        .await;

    let e = remote(bystander.revoke(&victim.serial, None).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (403, "not_authorized"), "{}", e.2);
    assert!(e.2.contains("ca:Revoke"), "{}", e.2);
    assert!(
        ca.ca
            .store()
            .cert(&victim.serial)
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    secops
        .revoke(&victim.serial, Some("keyCompromise"))
        .await
        .unwrap();
    let e = remote(victim_mtls.renew(&csr(None).0).await.unwrap_err());
    assert_eq!((e.0, e.1.as_str()), (403, "client_cert_revoked"), "{}", e.2);
}
