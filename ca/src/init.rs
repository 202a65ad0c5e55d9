//! `ward ca init`: keys generated in the token, root (10 y) and issuing
//! intermediate (1 y, pathLen 0) certificates, stored once.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyUsagePurpose,
};

use crate::Error;
use crate::authority::SharedKey;
use crate::certutil::{BACKDATE, key_id, random_serial};
use crate::keys::KeyOpener;
use crate::settings::CaConfig;
use crate::store::{Authority, SqliteStore, Store};

/// What `ward ca init` created.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// Root certificate, DER.
    pub root_der: Vec<u8>,
    /// Intermediate, DER.
    pub issuing_der: Vec<u8>,
    /// Log key SubjectPublicKeyInfo, DER.
    pub log_spki: Vec<u8>,
}

fn dn(org: &str, cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, org);
    d.push(DnType::CommonName, cn);
    d
}

/// DER of a critical nameConstraints extension permitting one URI host.
fn uri_name_constraint(host: &str) -> Option<CustomExtension> {
    let h = host.as_bytes();
    let l3 = u8::try_from(h.len()).ok().filter(|&l| l < 124)?;
    let mut v = vec![0x30, l3 + 6, 0xa0, l3 + 4, 0x30, l3 + 2, 0x86, l3];
    // SEQUENCE { [0] { SEQUENCE { [6] host } } }
    v.extend_from_slice(h);
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 30], v);
    ext.set_criticality(true);
    Some(ext)
}

/// Generates the keys in the token and creates root and intermediate.
pub fn init(config: &CaConfig) -> Result<InitReport, Error> {
    let store = SqliteStore::open(&config.database)?;
    if store.authority()?.is_some() {
        return Err(Error::conflict(
            "ca_exists",
            format!(
                "{} already holds a CA; refusing to initialise another",
                config.database.display()
            ),
        ));
    }
    let mut keys = KeyOpener::new();
    let refs = [config.root_key()?, config.issuing_key()?, config.log_key()?];
    for r in &refs {
        if keys.exists(r)? {
            return Err(Error::conflict(
                "key_exists",
                format!(
                    "key {r} already exists; refusing to generate another (remove it or pick another object label)"
                ),
            ));
        }
    }
    let [root_ref, issuing_ref, log_ref] = refs;
    let root_key = keys.generate(&root_ref)?;
    let issuing_key = keys.generate(&issuing_ref)?;
    let log_key = keys.generate(&log_ref)?;

    let t = time::OffsetDateTime::now_utc();
    let mut root = CertificateParams::default();
    root.distinguished_name = dn(
        &config.organization,
        &format!("{} root CA", config.organization),
    );
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root.not_before = t - BACKDATE;
    root.not_after = t + Duration::from_secs(3652 * 86400);
    root.serial_number = Some(random_serial().0);
    // AKI on the self-signed root too: pkilint's chain lint wants it and
    // RFC 5280 allows it (it equals the SKI).
    root.use_authority_key_identifier_extension = true;
    root.key_identifier_method = key_id(&SharedKey(root_key.clone()));
    let root_cert = root.self_signed(&SharedKey(root_key.clone()))?;

    let mut inter = CertificateParams::default();
    inter.distinguished_name = dn(
        &config.organization,
        &format!("{} issuing CA", config.organization),
    );
    inter.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    inter.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    inter.not_before = t - BACKDATE;
    inter.not_after = t + Duration::from_secs(365 * 86400);
    inter.serial_number = Some(random_serial().0);
    inter.use_authority_key_identifier_extension = true;
    inter.key_identifier_method = key_id(&SharedKey(issuing_key.clone()));
    if config.uri_name_constraints {
        tracing::warn!(
            "issuing CA gets a URI name constraint: rustls-webpki >= 0.103.12 rejects such chains (RUSTSEC-2026-0098)"
        );
        let ext = uri_name_constraint(config.trust_domain.as_str())
            .ok_or_else(|| Error::Setup("trust domain too long for a name constraint".into()))?;
        inter.custom_extensions.push(ext);
    }
    // Same key-identifier method (RFC 7093 #1) as the root certificate itself,
    // so the intermediate's AKI equals the root's SKI.
    let root_issuer = Issuer::new(root, SharedKey(root_key));
    let inter_cert = inter.signed_by(&SharedKey(issuing_key), &root_issuer)?;

    let report = InitReport {
        root_der: root_cert.der().to_vec(),
        issuing_der: inter_cert.der().to_vec(),
        log_spki: log_key.subject_public_key_info(),
    };
    store.init_authority(&Authority {
        root_der: report.root_der.clone(),
        issuing_der: report.issuing_der.clone(),
        log_spki: report.log_spki.clone(),
        created_at: t.unix_timestamp(),
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_constraint_der_parses() {
        let ext = uri_name_constraint("corp.example").unwrap();
        let content = ext.content();
        assert_eq!(content[0], 0x30);
        assert_eq!(content[1] as usize, content.len() - 2);
        assert_eq!(content[3] as usize, content.len() - 4);
        assert_eq!(content[5] as usize, content.len() - 6);
        assert_eq!(content[7] as usize, "corp.example".len());
    }
}
