//! The transparency-log reads of [`CaClient`] that `ward audit` needs
//! online and that [`client`](crate::client) does not already have
//! (`log_sth`, `inclusion_proof` by serial, `consistency_proof` and `certs`
//! live there). Nothing the CA answers here is trusted: callers check every
//! head's signature with the log key they hold and rebuild the tree
//! themselves.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::Method;

use crate::Error;
use crate::client::CaClient;
use crate::translog::merkle::Hash;
use crate::translog::store::StoredEntry;
use crate::translog::{EntriesJson, InclusionProofJson, LogPublicKey};

impl CaClient {
    /// `GET /v1/log/entries?start=&end=`: entries `start..=end` (the CA
    /// returns at most [`MAX_PAGE`](crate::translog::api::MAX_PAGE) per
    /// call, fewer near the end; page on from the last index returned).
    pub async fn log_entries(&self, start: u64, end: u64) -> Result<EntriesJson, Error> {
        let path = format!("/v1/log/entries?start={start}&end={end}");
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/log/proof/inclusion?leaf_hash=&tree_size=`: the inclusion
    /// proof of a leaf in the tree of `tree_size` leaves (the leaf hash goes
    /// as hex, which needs no escaping).
    pub async fn log_inclusion(
        &self,
        leaf_hash: &Hash,
        tree_size: u64,
    ) -> Result<InclusionProofJson, Error> {
        let path = format!(
            "/v1/log/proof/inclusion?leaf_hash={}&tree_size={tree_size}",
            hex::encode(leaf_hash)
        );
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// [`log_entries`](Self::log_entries) as the audit reads entries: the
    /// canonical bytes and the leaf hash the CA sent, nothing decoded
    /// trusted. A field that is not base64 is kept as its raw text, so the
    /// audit sees (and names) the bad entry instead of stopping.
    pub async fn log_entries_raw(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, Error> {
        let page = self.log_entries(start, end).await?;
        Ok(page
            .entries
            .into_iter()
            .map(|e| StoredEntry {
                index: e.index,
                bytes: B64
                    .decode(&e.entry)
                    .unwrap_or_else(|_| e.entry.clone().into_bytes()),
                leaf_hash: B64.decode(&e.leaf_hash).unwrap_or_default(),
            })
            .collect())
    }

    /// The log key from `GET /v1/bundle`. This is the CA's own word (over
    /// the root-pinned connection): an auditor who must not trust the CA
    /// keeps the key from the trust bundle instead.
    pub async fn bundle_log_key(&self) -> Result<LogPublicKey, Error> {
        let bundle = self.bundle().await?;
        if bundle.log_public_key.is_empty() {
            return Err(Error::LogKey(
                "the CA's bundle carries no log key; pass the log key from the trust bundle".into(),
            ));
        }
        let der = B64.decode(&bundle.log_public_key).map_err(|e| {
            Error::LogKey(format!("the bundle's log_public_key is not base64: {e}"))
        })?;
        LogPublicKey::from_spki_der(&der)
    }
}
