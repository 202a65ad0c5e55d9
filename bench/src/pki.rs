//! The benchmark's certificates: one root, one issuing intermediate, a
//! server certificate for `localhost` / 127.0.0.1 (used by the upstream's
//! TLS listener, by ward and by nginx alike) and one client certificate
//! with a SPIFFE ID. Every target sees exactly the same chain.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

/// The client's SPIFFE ID (the bench policy allows exactly this one).
pub const CLIENT_ID: &str = "spiffe://corp.example/ns/bench/sa/client";

fn serial() -> anyhow::Result<SerialNumber> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    b[0] = (b[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&b))
}

fn validity(p: &mut CertificateParams, days: u64) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::from_secs(3600);
    p.not_after = now + Duration::from_secs(days * 86400);
}

fn ca(cn: &str, path_len: Option<u8>) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.serial_number = Some(serial()?);
    validity(&mut p, 30);
    Ok(p)
}

fn leaf(
    cn: &str,
    sans: Vec<SanType>,
    eku: Vec<ExtendedKeyUsagePurpose>,
) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = eku;
    p.subject_alt_names = sans;
    p.serial_number = Some(serial()?);
    validity(&mut p, 7);
    Ok(p)
}

fn uri(s: &str) -> anyhow::Result<SanType> {
    Ok(SanType::URI(s.try_into()?))
}

/// Writes `root.pem`, `inter.pem`, `server.pem` (leaf + intermediate),
/// `server.key`, `client.pem` (leaf + intermediate) and `client.key`.
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let root = CertifiedIssuer::self_signed(ca("ward bench root", None)?, KeyPair::generate()?)?;
    let inter = CertifiedIssuer::signed_by(
        ca("ward bench issuing", Some(0))?,
        KeyPair::generate()?,
        &root,
    )?;
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("root.pem", root.pem())?;
    write("inter.pem", inter.pem())?;

    let server_key = KeyPair::generate()?;
    let server = leaf(
        "localhost",
        vec![
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress([127, 0, 0, 1].into()),
            uri("spiffe://corp.example/bench/server")?,
        ],
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )?
    .signed_by(&server_key, &inter)?;
    write("server.pem", format!("{}{}", server.pem(), inter.pem()))?;
    write("server.key", server_key.serialize_pem())?;

    let client_key = KeyPair::generate()?;
    let client = leaf(
        "bench client",
        vec![uri(CLIENT_ID)?],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    )?
    .signed_by(&client_key, &inter)?;
    write("client.pem", format!("{}{}", client.pem(), inter.pem()))?;
    write("client.key", client_key.serialize_pem())?;
    Ok(())
}
