//! `ward ca …` end to end as real processes against a real SoftHSM2 token:
//! init, token create, serve, enrol/renew/revoke through the HTTPS API,
//! CRL, offline issue, list, status, `ward ca revoke --ca` against a
//! running CA (admin, non-admin, offline refused while serving), and HSM
//! failures.
//!
//! Each child gets SOFTHSM2_CONF and the PIN through its own environment,
//! never through arguments, so tests do not fight over process-wide state.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::Proc;
use common::hsm::SOFTHSM_MODULE;
use ward_ca::client::{CaClient, RootPin};

const PIN: &str = "11223344";

struct Env {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

fn setup(label: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let conf = common::hsm::init_token(dir.path(), label, PIN);
    Env { dir, conf }
}

fn write_config(env: &Env, name: &str, label: &str, module: &str) -> PathBuf {
    let uri = |o: &str| common::hsm::key_uri_in(module, label, o, "WARD_HSM_PIN");
    let path = env.dir.path().join(name);
    std::fs::write(
        &path,
        format!(
            "trust_domain = \"corp.example\"\ndatabase = \"{name}.db\"\n[keys]\nroot = \"{}\"\nissuing = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
            uri("root"),
            uri("issuing")
        ),
    )
    .unwrap();
    path
}

fn ward(env: &Env, pin: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .env("SOFTHSM2_CONF", &env.conf)
        .env("WARD_HSM_PIN", pin)
        .env("WARD_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `ward ca serve`, killed when dropped; its stderr goes to `serve.log`.
fn serve(env: &Env, config: &Path) -> (Proc, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ward"));
    cmd.args(["ca", "serve", "--config"])
        .arg(config)
        .env("SOFTHSM2_CONF", &env.conf)
        .env("WARD_HSM_PIN", PIN)
        .env("WARD_LOG", "warn");
    let server = Proc::spawn_lines("ward ca serve", cmd, &env.dir.path().join("serve.log"));
    let line = server
        .line(std::time::Duration::from_secs(60))
        .expect("ward ca serve printed no address within 60 s");
    // "serving https://127.0.0.1:PORT root sha256:…"
    let mut parts = line.split_whitespace();
    assert_eq!(parts.next(), Some("serving"), "{line}");
    let addr = parts.next().unwrap().to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    assert_eq!(parts.next(), Some("root"));
    let fp = parts.next().unwrap().to_string();
    (server, format!("https://localhost:{port}"), fp)
}

fn csr() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    (csr, key.serialize_pem())
}

#[test]
fn init_serve_enrol_renew_revoke_crl_issue_list_status() {
    let env = setup("ward-cli");
    let config = write_config(&env, "ca.toml", "ward-cli", SOFTHSM_MODULE);
    let root_pem = env.dir.path().join("root.pem");
    let out = ok(&ward(
        &env,
        PIN,
        &[
            "ca",
            "init",
            "--config",
            config.to_str().unwrap(),
            "--root-out",
            root_pem.to_str().unwrap(),
        ],
    ));
    let root_fp = out
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(root_fp.starts_with("sha256:"), "{out}");
    // A second init refuses and changes nothing.
    let again = ward(
        &env,
        PIN,
        &["ca", "init", "--config", config.to_str().unwrap()],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already"),
        "{again:?}"
    );

    // Token: printed once on stdout, never listed.
    let created = ward(
        &env,
        PIN,
        &[
            "ca",
            "token",
            "create",
            "--config",
            config.to_str().unwrap(),
            "--identity",
            "spiffe://corp.example/ns/prod/sa/web",
            "--ttl",
            "10m",
        ],
    );
    let token = ok(&created).trim().to_string();
    assert!(token.starts_with("ward1."), "{token}");
    assert!(!String::from_utf8_lossy(&created.stderr).contains(&token));
    let list = ok(&ward(
        &env,
        PIN,
        &["ca", "token", "list", "--config", config.to_str().unwrap()],
    ));
    assert!(
        list.contains("usable") && !list.contains(token.rsplit('.').next().unwrap()),
        "{list}"
    );

    // A second token, revoked before use.
    let spare = ok(&ward(
        &env,
        PIN,
        &[
            "ca",
            "token",
            "create",
            "--config",
            config.to_str().unwrap(),
            "--identity",
            "spiffe://corp.example/ns/prod/*",
        ],
    ))
    .trim()
    .to_string();
    let spare_id = spare.split('.').nth(1).unwrap().to_string();
    ok(&ward(
        &env,
        PIN,
        &[
            "ca",
            "token",
            "revoke",
            "--config",
            config.to_str().unwrap(),
            &spare_id,
        ],
    ));
    let list = ok(&ward(
        &env,
        PIN,
        &["ca", "token", "list", "--config", config.to_str().unwrap()],
    ));
    assert!(
        list.lines()
            .any(|l| l.starts_with(&spare_id) && l.contains("revoked")),
        "{list}"
    );

    let (mut server, url, served_fp) = serve(&env, &config);
    assert_eq!(served_fp, root_fp);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (first, second) = rt.block_on(async {
        let client = CaClient::new(&url, RootPin::Fingerprint(root_fp.clone())).unwrap();
        let e = client.enroll(&spare, &csr().0).await.unwrap_err();
        assert!(
            matches!(&e, ward_ca::Error::Remote { status: 401, code, .. } if code == "token_revoked"),
            "{e}"
        );
        let (c1, k1) = csr();
        let first = client.enroll(&token, &c1).await.unwrap();
        assert_eq!(first.identity, "spiffe://corp.example/ns/prod/sa/web");
        let mtls = client.with_client_cert(&first.chain_pem, &k1).unwrap();
        let (c2, _k2) = csr();
        let second = mtls.renew(&c2).await.unwrap();
        assert_eq!(second.identity, first.identity);
        mtls.revoke(&first.serial, Some("superseded"))
            .await
            .unwrap();
        let crl = client.crl().await.unwrap();
        let (_, parsed) = x509_parser_crl(&crl);
        assert!(
            parsed.contains(&first.serial),
            "CRL {parsed:?} lacks {}",
            first.serial
        );
        (first, second)
    });

    // The issued chain verifies with OpenSSL against the root from init.
    let chain = env.dir.path().join("chain.pem");
    std::fs::write(&chain, &second.chain_pem).unwrap();
    let leaf_only = second
        .chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap()
        .to_string();
    let leaf = env.dir.path().join("leaf.pem");
    std::fs::write(&leaf, leaf_only).unwrap();
    let v = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&root_pem)
        .arg("-untrusted")
        .arg(&chain)
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));

    // A CSR for a gateway certificate.
    let (gcsr, _gkey) = csr();
    let csr_path = env.dir.path().join("gw.csr");
    std::fs::write(&csr_path, gcsr).unwrap();

    // While the server runs, a second CA process is refused: it would fork
    // the transparency log.
    let busy = ward(
        &env,
        PIN,
        &[
            "ca",
            "issue",
            "--config",
            config.to_str().unwrap(),
            "--csr",
            csr_path.to_str().unwrap(),
            "--identity",
            "spiffe://corp.example/ward/gateway",
        ],
    );
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("another ward CA process"),
        "{busy:?}"
    );

    // SIGTERM stops the server cleanly.
    server.signal("TERM");
    let exit = server.wait(std::time::Duration::from_secs(30));
    assert!(exit.success(), "ward ca serve exited with {exit}");

    // Offline issue (the server is stopped), with a DNS name.
    let chain_out = ok(&ward(
        &env,
        PIN,
        &[
            "ca",
            "issue",
            "--config",
            config.to_str().unwrap(),
            "--csr",
            csr_path.to_str().unwrap(),
            "--identity",
            "spiffe://corp.example/ward/gateway",
            "--dns",
            "gw.corp.example",
        ],
    ));
    assert_eq!(
        chain_out.matches("BEGIN CERTIFICATE").count(),
        2,
        "{chain_out}"
    );

    // CLI revoke, list, status.
    ok(&ward(
        &env,
        PIN,
        &[
            "ca",
            "revoke",
            "--config",
            config.to_str().unwrap(),
            "--serial",
            &second.serial,
            "--reason",
            "keyCompromise",
        ],
    ));
    let listed = ok(&ward(
        &env,
        PIN,
        &[
            "ca",
            "list",
            "--config",
            config.to_str().unwrap(),
            "--identity",
            "spiffe://corp.example/ns/prod/sa/web",
        ],
    ));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.lines().all(|l| l.contains("revoked")), "{listed}");
    assert!(
        listed.contains(&format!("renew:{}", first.serial)),
        "{listed}"
    );
    let since = ok(&ward(
        &env,
        PIN,
        &[
            "ca",
            "list",
            "--config",
            config.to_str().unwrap(),
            "--since",
            "2999-01-01",
        ],
    ));
    assert!(since.trim().is_empty(), "{since}");
    let status = ok(&ward(
        &env,
        PIN,
        &["ca", "status", "--config", config.to_str().unwrap()],
    ));
    assert!(status.contains(&root_fp), "{status}");
    assert!(
        status.contains("token `ward-cli`") && status.contains("reachable"),
        "{status}"
    );
    assert!(status.contains("2 revoked"), "{status}");
}

fn x509_parser_crl(der: &[u8]) -> ((), Vec<String>) {
    // Parse with openssl to stay independent of the CA's own parser.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("crl.der");
    std::fs::write(&p, der).unwrap();
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let serials = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| s.trim().trim_start_matches("00").to_ascii_lowercase())
        .collect();
    ((), serials)
}

#[test]
fn hsm_failures_exit_nonzero_with_the_reason_and_store_nothing() {
    let env = setup("ward-bad");
    let good = write_config(&env, "good.toml", "ward-bad", SOFTHSM_MODULE);
    let cases = [
        (
            "wrong PIN",
            good.clone(),
            "99999999",
            "wrong PIN for token `ward-bad`",
        ),
        ("missing PIN", good.clone(), "", "WARD_HSM_PIN is not set"),
        (
            "token not found",
            write_config(&env, "nolabel.toml", "no-such-token", SOFTHSM_MODULE),
            PIN,
            "no token labelled `no-such-token`",
        ),
        (
            "missing module",
            write_config(&env, "nomod.toml", "ward-bad", "/nonexistent/pkcs11.so"),
            PIN,
            "/nonexistent/pkcs11.so does not exist",
        ),
    ];
    for (what, config, pin, expect) in cases {
        let out = ward(
            &env,
            pin,
            &["ca", "init", "--config", config.to_str().unwrap()],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: succeeded");
        assert!(err.contains(expect), "{what}: {err}");
        assert!(
            pin.is_empty() || pin == PIN || !err.contains(pin),
            "{what}: PIN echoed"
        );
        let st = ward(
            &env,
            PIN,
            &["ca", "status", "--config", config.to_str().unwrap()],
        );
        assert!(
            String::from_utf8_lossy(&st.stderr).contains("holds no CA"),
            "{what}: a CA was stored"
        );
    }
}

/// Offline issue of one certificate: writes `<name>.pem` (chain) and
/// `<name>.key` (0600) and returns (serial, chain path, key path).
fn issue_files(
    env: &Env,
    config: &Path,
    name: &str,
    identity: &str,
    extra: &[&str],
) -> (String, PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let (csr_pem, key_pem) = csr();
    let csr_path = env.dir.path().join(format!("{name}.csr"));
    std::fs::write(&csr_path, csr_pem).unwrap();
    let key = env.dir.path().join(format!("{name}.key"));
    std::fs::write(&key, key_pem).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let chain = env.dir.path().join(format!("{name}.pem"));
    let mut args = vec![
        "ca",
        "issue",
        "--config",
        config.to_str().unwrap(),
        "--csr",
        csr_path.to_str().unwrap(),
        "--identity",
        identity,
        "--out",
        chain.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = ward(env, PIN, &args);
    ok(&out);
    // stderr: "issued <serial> for <identity> (until …)"
    let err = String::from_utf8_lossy(&out.stderr);
    let serial = err
        .lines()
        .find_map(|l| l.strip_prefix("issued "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no serial in {err}"))
        .to_string();
    (serial, chain, key)
}

fn list_json(env: &Env, config: &Path) -> Vec<serde_json::Value> {
    ok(&ward(
        env,
        PIN,
        &["ca", "list", "--config", config.to_str().unwrap(), "--json"],
    ))
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

fn state_of<'a>(certs: &'a [serde_json::Value], serial: &str) -> &'a serde_json::Value {
    certs
        .iter()
        .find(|c| c["serial"] == serial)
        .unwrap_or_else(|| panic!("{serial} not listed in {certs:?}"))
}

#[test]
fn revoke_online_through_a_running_ca_as_admin_and_refused_otherwise() {
    let env = setup("ward-online");
    let config = write_config(&env, "ca.toml", "ward-online", SOFTHSM_MODULE);
    // `[server]` is the config's last table: the admin goes into it.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("admins = [\"spiffe://corp.example/user/alice\"]\n");
    std::fs::write(&config, text).unwrap();
    let cfg = config.to_str().unwrap();
    let out = ok(&ward(&env, PIN, &["ca", "init", "--config", cfg]));
    let root_fp = out
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .unwrap()
        .trim()
        .to_string();

    let (alice, alice_pem, alice_key) = issue_files(
        &env,
        &config,
        "alice",
        "spiffe://corp.example/user/alice",
        &["--profile", "user", "--email", "alice@corp.example"],
    );
    let (web, _, _) = issue_files(
        &env,
        &config,
        "web",
        "spiffe://corp.example/ns/prod/sa/web",
        &[],
    );
    let (mallory, mallory_pem, mallory_key) = issue_files(
        &env,
        &config,
        "mallory",
        "spiffe://corp.example/ns/dev/sa/mallory",
        &[],
    );

    let (mut server, url, served_fp) = serve(&env, &config);
    assert_eq!(served_fp, root_fp);
    let online = |pem: &Path, key: &Path, serial: &str, reason: &str| {
        ward(
            &env,
            PIN,
            &[
                "ca",
                "revoke",
                "--ca",
                &url,
                "--fingerprint",
                &root_fp,
                "--cert",
                pem.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--serial",
                serial,
                "--reason",
                reason,
            ],
        )
    };
    let key_secrets: Vec<String> = [&alice_key, &mallory_key]
        .iter()
        .map(|k| {
            std::fs::read_to_string(k)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect()
        })
        .collect();
    let no_secret = |out: &Output| {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("PRIVATE KEY"), "{all}");
        for k in &key_secrets {
            assert!(!all.contains(&k[..40]), "key material printed: {all}");
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let crl_serials = || {
        rt.block_on(async {
            let client = CaClient::new(&url, RootPin::Fingerprint(root_fp.clone())).unwrap();
            x509_parser_crl(&client.crl().await.unwrap()).1
        })
    };

    // A non-admin may not revoke someone else's certificate: 403 with the
    // CA's reason, and nothing changes.
    let refused = online(&mallory_pem, &mallory_key, &web, "keyCompromise");
    no_secret(&refused);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(
        err.contains("403")
            && err.contains("not_authorized")
            && err.contains("may revoke only its own certificate"),
        "{err}"
    );
    assert!(err.contains(&web), "the error names the serial: {err}");
    assert!(
        !crl_serials().contains(&web),
        "refused revocation took effect"
    );

    // An admin: an unknown serial is a 404 …
    let unknown = online(&alice_pem, &alice_key, "0badc0de", "keyCompromise");
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success(), "{err}");
    assert!(err.contains("404") && err.contains("not_found"), "{err}");

    // … and another client's certificate is revoked while the CA runs.
    let done = online(&alice_pem, &alice_key, &web, "keyCompromise");
    no_secret(&done);
    let said = ok(&done);
    assert!(said.starts_with(&format!("revoked {web} at ")), "{said}");
    let crl = crl_serials();
    assert!(crl.contains(&web), "CRL {crl:?} lacks {web}");
    assert!(!crl.contains(&mallory) && !crl.contains(&alice), "{crl:?}");

    // Twice is a conflict, reported as such.
    let again = online(&alice_pem, &alice_key, &web, "keyCompromise");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        err.contains("409") && err.contains("already_revoked"),
        "{err}"
    );

    // Offline while serving is refused and points at the online mode,
    // filled in with this CA's root fingerprint.
    let busy = ward(
        &env,
        PIN,
        &["ca", "revoke", "--config", cfg, "--serial", &mallory],
    );
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(!busy.status.success(), "{err}");
    assert!(
        err.contains("another ward CA process")
            && err.contains("ward ca revoke --ca https://")
            && err.contains(&root_fp)
            && err.contains(&format!("--serial {mallory}")),
        "{err}"
    );

    // The modes do not mix, and --ca needs the whole identity.
    for args in [
        vec![
            "--config",
            cfg,
            "--ca",
            url.as_str(),
            "--serial",
            mallory.as_str(),
        ],
        vec![
            "--ca",
            url.as_str(),
            "--fingerprint",
            root_fp.as_str(),
            "--serial",
            mallory.as_str(),
        ],
        vec![
            "--fingerprint",
            root_fp.as_str(),
            "--serial",
            mallory.as_str(),
        ],
    ] {
        let mut full = vec!["ca", "revoke"];
        full.extend(args.iter().copied());
        let out = ward(&env, PIN, &full);
        assert_eq!(out.status.code(), Some(2), "{full:?}: {out:?}");
    }

    // After a clean stop the database agrees: web revoked by alice's
    // certificate for keyCompromise; mallory and alice untouched.
    server.signal("TERM");
    let exit = server.wait(std::time::Duration::from_secs(30));
    assert!(exit.success(), "ward ca serve exited with {exit}");
    let certs = list_json(&env, &config);
    let w = state_of(&certs, &web);
    assert_eq!(w["state"], "revoked", "{w}");
    assert_eq!(w["reason"], "keyCompromise", "{w}");
    assert_eq!(w["revoked_by"], format!("cert:{alice}"), "{w}");
    assert_eq!(state_of(&certs, &mallory)["state"], "valid");
    assert_eq!(state_of(&certs, &alice)["state"], "valid");
}
