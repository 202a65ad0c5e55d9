//! The one throwaway PKI of the integration tests, made with rcgen: a root,
//! an issuing intermediate (path length 0), leaves signed by it (or by an
//! unrelated "foreign" root), and a CRL from the intermediate. Every file is
//! written atomically (a reloading gateway must never read half a file).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::OffsetDateTime;

pub const TD: &str = "corp.example";
pub const CLIENT: &str = "spiffe://corp.example/ns/test/sa/client";
pub const OTHER: &str = "spiffe://corp.example/ns/test/sa/other";

pub fn serial() -> SerialNumber {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b[0] = (b[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&b)
}

fn ca_params(cn: &str, path_len: Option<u8>) -> CertificateParams {
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
    p.serial_number = Some(serial());
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::from_secs(3600);
    p.not_after = now + Duration::from_secs(86400);
    p
}

pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

pub fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

pub fn localhost_ip() -> SanType {
    SanType::IpAddress(IpAddr::from([127, 0, 0, 1]))
}

/// The SANs of a gateway's own certificate in the tests: each of `hosts`,
/// 127.0.0.1, and the gateway's SPIFFE ID (it presents the same certificate
/// to upstreams that want mTLS).
pub fn gateway_sans(hosts: &[&str]) -> Vec<SanType> {
    let mut sans: Vec<SanType> = hosts.iter().map(|h| dns(h)).collect();
    sans.push(localhost_ip());
    sans.push(uri("spiffe://corp.example/gateway"));
    sans
}

/// How a leaf differs from a good client certificate.
#[derive(Clone)]
pub struct Leaf {
    pub sans: Vec<SanType>,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Leaf {
    /// A good client certificate for `id`, valid for an hour.
    pub fn client(id: &str) -> Leaf {
        let now = OffsetDateTime::now_utc();
        Leaf {
            sans: vec![uri(id)],
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(3600),
        }
    }

    /// A leaf valid for a day with these SANs and EKUs.
    pub fn day(sans: Vec<SanType>, eku: Vec<ExtendedKeyUsagePurpose>) -> Leaf {
        let now = OffsetDateTime::now_utc();
        Leaf {
            sans,
            eku,
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(86400),
        }
    }
}

pub struct Pki {
    pub dir: PathBuf,
    pub inter: CertifiedIssuer<'static, KeyPair>,
    pub other_root: CertifiedIssuer<'static, KeyPair>,
    pub revoked: Vec<SerialNumber>,
    /// The SANs of the gateway's own certificate.
    pub server_sans: Vec<SanType>,
}

impl Pki {
    /// Writes `root.pem`, the gateway's `server.pem`/`.key` (with
    /// `server_sans`) and an empty `inter.crl` into `dir`.
    pub fn new(dir: &Path, root_cn: &str, inter_cn: &str, server_sans: Vec<SanType>) -> Pki {
        Pki::new_with_root(dir, root_cn, inter_cn, server_sans).0
    }

    /// (Re)issues the gateway's own certificate (`server.pem`/`.key`).
    pub fn issue_server(&self) -> SerialNumber {
        self.issue_server_as("server")
    }

    /// The gateway's certificate under another name: serverAuth for
    /// clients, clientAuth for mTLS to upstreams; valid for a day.
    pub fn issue_server_as(&self, name: &str) -> SerialNumber {
        let eku = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(name, &Leaf::day(self.server_sans.clone(), eku), false)
    }

    /// A client certificate for `id`, valid for a day.
    pub fn issue_client(&self, name: &str, id: &str) -> SerialNumber {
        let leaf = Leaf::day(vec![uri(id)], vec![ExtendedKeyUsagePurpose::ClientAuth]);
        self.issue(name, &leaf, false)
    }

    /// Writes `<name>.pem` (leaf + intermediate) and `<name>.key`; returns
    /// the serial.
    pub fn issue(&self, name: &str, leaf: &Leaf, foreign: bool) -> SerialNumber {
        self.issue_der(name, leaf, foreign).0
    }

    /// As [`Pki::issue`], also returning the leaf's DER.
    pub fn issue_der(&self, name: &str, leaf: &Leaf, foreign: bool) -> (SerialNumber, Vec<u8>) {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.use_authority_key_identifier_extension = true;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = leaf.eku.clone();
        p.subject_alt_names = leaf.sans.clone();
        p.not_before = leaf.not_before;
        p.not_after = leaf.not_after;
        let s = serial();
        p.serial_number = Some(s.clone());
        let key = KeyPair::generate().unwrap();
        let (cert, chain) = if foreign {
            (p.signed_by(&key, &self.other_root).unwrap(), String::new())
        } else {
            (p.signed_by(&key, &self.inter).unwrap(), self.inter.pem())
        };
        atomic_write(
            &self.dir.join(format!("{name}.pem")),
            format!("{}{}", cert.pem(), chain).as_bytes(),
        );
        atomic_write(
            &self.dir.join(format!("{name}.key")),
            key.serialize_pem().as_bytes(),
        );
        (s, cert.der().to_vec())
    }

    pub fn write_crl(&self) {
        let now = OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - Duration::from_secs(60),
            next_update: now + Duration::from_secs(3600),
            crl_number: serial(),
            issuing_distribution_point: None,
            revoked_certs: self
                .revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: s.clone(),
                    revocation_time: now - Duration::from_secs(30),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.inter)
        .unwrap();
        atomic_write(&self.dir.join("inter.crl"), crl.pem().unwrap().as_bytes());
    }

    /// Adds `s` to the intermediate's CRL and rewrites it.
    pub fn revoke(&mut self, s: SerialNumber) {
        self.revoked.push(s);
        self.write_crl();
    }
}

/// Writes `path` through a temporary file and a rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

impl Pki {
    /// As [`Pki::new`], also handing back the root and the intermediate's
    /// serial, which `new` drops: a test that revokes the intermediate needs
    /// the root to sign that CRL ([`crl_pem`]).
    pub fn new_with_root(
        dir: &Path,
        root_cn: &str,
        inter_cn: &str,
        server_sans: Vec<SanType>,
    ) -> (Pki, CertifiedIssuer<'static, KeyPair>, SerialNumber) {
        let root =
            CertifiedIssuer::self_signed(ca_params(root_cn, None), KeyPair::generate().unwrap())
                .unwrap();
        let inter_params = ca_params(inter_cn, Some(0));
        let inter_serial = inter_params.serial_number.clone().unwrap();
        let inter =
            CertifiedIssuer::signed_by(inter_params, KeyPair::generate().unwrap(), &root).unwrap();
        let other_root = CertifiedIssuer::self_signed(
            ca_params("someone else's root", None),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("root.pem"), root.pem()).unwrap();
        let pki = Pki {
            dir: dir.to_path_buf(),
            inter,
            other_root,
            revoked: Vec::new(),
            server_sans,
        };
        pki.issue_server();
        pki.write_crl();
        (pki, root, inter_serial)
    }
}

/// A PEM CRL signed by any `issuer` (a root revoking an intermediate, say),
/// revoking `revoked`, valid for an hour.
pub fn crl_pem(issuer: &rcgen::Issuer<'_, KeyPair>, revoked: &[SerialNumber]) -> String {
    let now = OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now - Duration::from_secs(60),
        next_update: now + Duration::from_secs(3600),
        crl_number: serial(),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: s.clone(),
                revocation_time: now - Duration::from_secs(30),
                reason_code: Some(RevocationReason::CaCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .pem()
    .unwrap()
}
