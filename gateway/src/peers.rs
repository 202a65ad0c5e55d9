//! One parsed copy of each client chain that has connections open.
//!
//! The connections of one client present the same chain: a service's
//! connection pool, an agent's tunnels, a browser's parallel connections.
//! Each connection keeps its chain for the re-checks that follow a reload,
//! and its identity for every decision; interned, they cost their
//! ~1 KB once per client instead of once per connection, and the leaf is
//! parsed once per client instead of once per handshake.
//!
//! Only byte-identical chains share: a hit compares the whole chain, not
//! just its hash, so sharing can never hand one client another's identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::identity::{Identity, TrustDomain};

/// A client chain as presented (leaf first) and the identity of its leaf.
/// A connection keeps both (`ConnInfo`); the table keeps neither alive.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The verified identity of the leaf.
    pub identity: Arc<Identity>,
    /// The chain, kept for re-checks.
    pub chain: Arc<Vec<CertificateDer<'static>>>,
}

/// The chains of open connections, by hash; an entry lives as long as a
/// connection holds its chain.
#[derive(Debug, Default)]
pub struct Peers {
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    map: HashMap<[u8; 32], Entry>,
    /// Dead entries are swept when the table reaches this size.
    sweep_at: usize,
}

#[derive(Debug)]
struct Entry {
    identity: Weak<Identity>,
    chain: Weak<Vec<CertificateDer<'static>>>,
}

impl Entry {
    fn upgrade(&self) -> Option<Peer> {
        Some(Peer {
            identity: self.identity.upgrade()?,
            chain: self.chain.upgrade()?,
        })
    }
}

fn key(chain: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut h = Sha256::new();
    for cert in chain {
        // Length-prefixed, so that no two different chains hash the same
        // bytes.
        h.update((cert.len() as u64).to_be_bytes());
        h.update(cert.as_ref());
    }
    h.finalize().into()
}

impl Peers {
    /// The peer for `chain`, shared with the open connections that
    /// presented the same bytes; parsed (and its identity checked against
    /// `trust_domain`) when none is open.
    pub fn get(
        &self,
        chain: &[CertificateDer<'_>],
        trust_domain: &TrustDomain,
    ) -> Result<Peer, Error> {
        let key = key(chain);
        if let Ok(table) = self.inner.lock()
            && let Some(peer) = table.map.get(&key).and_then(Entry::upgrade)
            && peer.chain.as_slice() == chain
        {
            return Ok(peer);
        }
        let leaf = chain
            .first()
            .ok_or_else(|| Error::Identity("no client certificate".into()))?;
        let peer = Peer {
            identity: Arc::new(Identity::from_leaf(leaf, trust_domain)?),
            chain: Arc::new(chain.iter().map(|c| c.clone().into_owned()).collect()),
        };
        if let Ok(mut table) = self.inner.lock() {
            if table.map.len() >= table.sweep_at {
                table.map.retain(|_, e| e.chain.strong_count() > 0);
                // Amortised: the next sweep after as many inserts again.
                table.sweep_at = (table.map.len() * 2).max(64);
            }
            let entry = Entry {
                identity: Arc::downgrade(&peer.identity),
                chain: Arc::downgrade(&peer.chain),
            };
            table.map.insert(key, entry);
        }
        Ok(peer)
    }

    /// Chains with an entry (open or not yet swept), for tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|t| t.map.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn leaf(uri: &str) -> CertificateDer<'static> {
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        p.self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .clone()
    }

    fn td() -> TrustDomain {
        TrustDomain::new("corp.example").unwrap()
    }

    #[test]
    fn connections_of_one_client_share_one_copy() {
        let peers = Peers::default();
        let a = leaf("spiffe://corp.example/ns/a/sa/x");
        let b = leaf("spiffe://corp.example/ns/b/sa/y");
        let one = peers.get(std::slice::from_ref(&a), &td()).unwrap();
        let two = peers.get(std::slice::from_ref(&a), &td()).unwrap();
        assert!(Arc::ptr_eq(&one.chain, &two.chain));
        assert!(Arc::ptr_eq(&one.identity, &two.identity));
        let other = peers.get(std::slice::from_ref(&b), &td()).unwrap();
        assert!(!Arc::ptr_eq(&one.chain, &other.chain));
        assert_eq!(other.identity.uri, "spiffe://corp.example/ns/b/sa/y");
        // A chain with one more certificate is another chain.
        let longer = peers.get(&[a.clone(), b.clone()], &td()).unwrap();
        assert!(!Arc::ptr_eq(&one.chain, &longer.chain));
        assert_eq!(longer.chain.len(), 2);
    }

    #[test]
    fn a_closed_client_is_parsed_again_and_swept() {
        let peers = Peers::default();
        let a = leaf("spiffe://corp.example/ns/a/sa/x");
        let first = peers.get(std::slice::from_ref(&a), &td()).unwrap();
        let weak = Arc::downgrade(&first.chain);
        drop(first);
        let again = peers.get(std::slice::from_ref(&a), &td()).unwrap();
        assert!(weak.upgrade().is_none());
        assert_eq!(again.identity.uri, "spiffe://corp.example/ns/a/sa/x");
        for i in 0..200 {
            drop(peers.get(
                &[leaf(&format!("spiffe://corp.example/ns/n/sa/{i}"))],
                &td(),
            ));
        }
        assert!(
            peers.len() <= 128,
            "dead entries are swept: {}",
            peers.len()
        );
    }

    #[test]
    fn a_leaf_outside_the_trust_domain_is_refused_every_time() {
        let peers = Peers::default();
        let a = leaf("spiffe://elsewhere.example/ns/a/sa/x");
        assert!(peers.get(std::slice::from_ref(&a), &td()).is_err());
        assert!(peers.get(std::slice::from_ref(&a), &td()).is_err());
        assert!(peers.get(&[], &td()).is_err());
    }
}
