//! Whole-log audit: rebuild the tree from every entry and hold it against
//! every signed tree head.
//!
//! Anyone with database access can rewrite entry rows *and* recompute the
//! stored leaf hashes and subtrees; what they cannot do without the log key
//! is sign a new head. So the verifier trusts nothing stored but the
//! signatures: it recomputes every leaf from the entry bytes, rebuilds the
//! tree in one pass and compares the root at each signed size.
//!
//! The first bad entry is found by the first signed head that does not
//! match. The CA signs a head per committed batch (one per entry when
//! appends are not concurrent), so that head pins the damage to its batch;
//! inside a batch the stored leaf hashes are used when they themselves
//! reproduce the signed root. What is wrong is then told apart:
//! a gap in the indices is a *missing* entry; the signed leaf found at
//! another position is a *reordered* entry; fewer entries than signed is a
//! *missing* (removed, later ones moved up) entry; more is an *inserted* one;
//! anything else is an *edited* one.

use std::fmt;

use super::entry::Entry;
use super::merkle::{Frontier, Hash, leaf_hash};
use super::sth::{LogPublicKey, SignedTreeHead};
use super::store::StoredEntry;
use crate::Error;

/// Where the entries and heads come from: the store (offline), or the API
/// (online, wired by the API client). `verify_log` sees only this.
pub trait LogSource {
    /// Every entry (in index order, exactly as the source holds it) and
    /// every signed head, read from one consistent state of the log: a CA
    /// appending meanwhile must not make heads cover entries not read. An
    /// online source fetches the head first, then the entries up to it.
    fn snapshot(&mut self) -> Result<LogSnapshot, Error>;
}

/// A consistent read of a whole log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSnapshot {
    /// Entries in index order, as stored.
    pub entries: Vec<StoredEntry>,
    /// Signed heads, any order.
    pub sths: Vec<SignedTreeHead>,
}

impl LogSource for super::reader::LogReader {
    fn snapshot(&mut self) -> Result<LogSnapshot, Error> {
        self.read_snapshot()
    }
}

/// What is wrong with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Its bytes differ from what the log signed.
    Edited,
    /// It was removed.
    Missing,
    /// It is at another position than the one the log signed.
    Reordered,
    /// It was added without the log key.
    Inserted,
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Edited => "edited",
            Self::Missing => "missing",
            Self::Reordered => "reordered",
            Self::Inserted => "inserted",
        })
    }
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An entry was tampered with.
    Entry {
        /// The first bad index.
        index: u64,
        /// How.
        what: Tamper,
        /// Evidence, for the auditor.
        detail: String,
    },
    /// A signed head's signature is not the log key's (forged or edited).
    BadSignature {
        /// The head's claimed size.
        tree_size: u64,
        /// `true` for the saved earlier head, `false` for one in the log.
        saved: bool,
    },
    /// The log is not an extension of the saved earlier head: it was
    /// rewritten (with the log key) or truncated.
    NotConsistentWithSaved {
        /// The saved head's size.
        tree_size: u64,
        /// Evidence.
        detail: String,
    },
    /// The log has no signed head at all.
    NoHeads,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Entry {
                index,
                what,
                detail,
            } => write!(f, "entry {index}: {what}: {detail}"),
            Self::BadSignature { tree_size, saved } => write!(
                f,
                "the {}signed tree head of size {tree_size} does not carry a valid log signature",
                if *saved { "saved " } else { "" }
            ),
            Self::NotConsistentWithSaved { tree_size, detail } => write!(
                f,
                "the log is not consistent with the saved tree head of size {tree_size}: {detail}"
            ),
            Self::NoHeads => f.write_str("the log has no signed tree head"),
        }
    }
}

/// The outcome of an audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries read.
    pub entries: u64,
    /// Signed heads checked.
    pub heads: usize,
    /// The newest signed head (to save for the next `--from-sth`).
    pub latest: Option<SignedTreeHead>,
    /// The first problem; `None` when the log verified.
    pub problem: Option<Problem>,
}

impl Report {
    /// Did the log verify?
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Rebuild the tree from `entries` and check it against every signed head
/// in `sths` (signatures with `key`), and against `saved`, a head the
/// auditor kept from an earlier audit.
pub fn verify_log(
    entries: &[StoredEntry],
    sths: &[SignedTreeHead],
    key: &LogPublicKey,
    saved: Option<&SignedTreeHead>,
) -> Report {
    let mut heads: Vec<&SignedTreeHead> = sths.iter().collect();
    heads.sort_by_key(|s| s.head.tree_size);
    let report = |problem| Report {
        entries: entries.len() as u64,
        heads: heads.len(),
        latest: heads.last().map(|s| (*s).clone()),
        problem,
    };
    // Signatures first: everything below leans on them.
    if let Some(bad) = heads.iter().find(|s| key.verify(s).is_err()) {
        return report(Some(Problem::BadSignature {
            tree_size: bad.head.tree_size,
            saved: false,
        }));
    }
    if let Some(s) = saved
        && key.verify(s).is_err()
    {
        return report(Some(Problem::BadSignature {
            tree_size: s.head.tree_size,
            saved: true,
        }));
    }
    let Some(max_signed) = heads.last().map(|s| s.head.tree_size) else {
        return report(Some(Problem::NoHeads));
    };

    // Recompute every leaf; note the first gap, stored-hash mismatch and
    // undecodable entry on the way.
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(&e.bytes)).collect();
    let n = leaves.len() as u64;
    let mut found: Vec<(u64, u8, Tamper, String)> = Vec::new();
    if let Some((pos, e)) = entries
        .iter()
        .enumerate()
        .find(|(pos, e)| e.index != *pos as u64)
    {
        let pos = pos as u64;
        let what = if e.index > pos {
            Tamper::Missing
        } else {
            Tamper::Inserted
        };
        found.push((
            pos,
            0,
            what,
            format!(
                "expected the entry with index {pos}, found index {}",
                e.index
            ),
        ));
    }
    if let Some(pos) = entries
        .iter()
        .zip(&leaves)
        .position(|(e, l)| e.leaf_hash.as_slice() != l.as_slice())
    {
        found.push((
            pos as u64,
            3,
            Tamper::Edited,
            "its stored leaf hash does not match its bytes".into(),
        ));
    }
    if let Some((pos, err)) = entries
        .iter()
        .enumerate()
        .find_map(|(pos, e)| Entry::decode(&e.bytes).err().map(|err| (pos, err)))
    {
        found.push((
            pos as u64,
            4,
            Tamper::Edited,
            format!("not a valid entry: {err}"),
        ));
    }

    // One pass over the leaves, checking the root at every signed size.
    let mut frontier = Frontier::new();
    let mut good_prefix = Frontier::new();
    let mut next_leaf = 0usize;
    let mut first_bad: Option<(&SignedTreeHead, Frontier)> = None;
    for sth in &heads {
        let size = sth.head.tree_size;
        while frontier.size() < size.min(n) {
            if let Some(l) = leaves.get(next_leaf) {
                frontier.push(*l);
            }
            next_leaf += 1;
        }
        if size > n || frontier.root() != sth.head.root_hash {
            first_bad = Some((sth, good_prefix.clone()));
            break;
        }
        good_prefix = frontier.clone();
    }
    if let Some((sth, prefix)) = first_bad {
        let (index, what, detail) = localise(entries, &leaves, sth, &prefix, max_signed);
        found.push((index, 1, what, detail));
    } else if n > max_signed {
        found.push((
            max_signed,
            2,
            Tamper::Inserted,
            format!(
                "{} entries follow the newest signed tree head (size {max_signed}) unsigned",
                n - max_signed
            ),
        ));
    }
    if let Some((index, _, what, detail)) = found.into_iter().min_by_key(|f| (f.0, f.1)) {
        return report(Some(Problem::Entry {
            index,
            what,
            detail,
        }));
    }

    // The log as stored is sound; does it extend what the auditor saw before?
    if let Some(s) = saved {
        let size = s.head.tree_size;
        let detail = if size > n {
            Some(format!(
                "the saved head covers {size} entries but the log now has {n}: it was truncated"
            ))
        } else {
            let mut f = Frontier::new();
            for l in leaves
                .iter()
                .take(usize::try_from(size).unwrap_or(usize::MAX))
            {
                f.push(*l);
            }
            (f.root() != s.head.root_hash).then(|| {
                "the first entries no longer hash to the saved root: the log was rewritten".into()
            })
        };
        if let Some(detail) = detail {
            return report(Some(Problem::NotConsistentWithSaved {
                tree_size: size,
                detail,
            }));
        }
    }
    report(None)
}

/// Pin down the first bad entry under the first head that does not match.
/// `prefix` is the rebuilt tree at the last head that did match.
fn localise(
    entries: &[StoredEntry],
    leaves: &[Hash],
    sth: &SignedTreeHead,
    prefix: &Frontier,
    max_signed: u64,
) -> (u64, Tamper, String) {
    let n = leaves.len() as u64;
    let size = sth.head.tree_size;
    let start = prefix.size();
    if size > n && start >= n {
        return (
            n,
            Tamper::Missing,
            format!("the log has {n} entries but a signed tree head covers {size}"),
        );
    }
    // The signed leaf at `start`, when it can be known: either the head
    // signs exactly one more leaf than the good prefix (try every leaf of
    // the log there), or the stored leaf hashes reproduce the signed root.
    let mut at = start;
    let mut signed_leaf: Option<Hash> = None;
    if size == start + 1 {
        signed_leaf = leaves
            .iter()
            .find(|l| {
                let mut f = prefix.clone();
                f.push(**l);
                f.root() == sth.head.root_hash
            })
            .copied();
    } else if let Some(stored) = stored_leaves(entries, size) {
        let mut f = Frontier::new();
        for l in &stored {
            f.push(*l);
        }
        if f.root() == sth.head.root_hash {
            let lo = usize::try_from(start).unwrap_or(usize::MAX);
            if let Some(off) = stored.iter().zip(leaves).skip(lo).position(|(s, l)| s != l) {
                at = start + off as u64;
                signed_leaf = stored.get(lo + off).copied();
            }
        }
    }
    let batch = if size > start + 1 && signed_leaf.is_none() {
        format!(
            " (entries {start}..{} were signed together; this is the first of them)",
            size - 1
        )
    } else {
        String::new()
    };
    if let Some(signed) = signed_leaf
        && let Some(j) = leaves.iter().position(|l| *l == signed)
        && j as u64 != at
    {
        let j = j as u64;
        let what = if n > max_signed && j > at {
            Tamper::Inserted
        } else if n < max_signed && j < at {
            Tamper::Missing
        } else {
            Tamper::Reordered
        };
        return (
            at,
            what,
            format!(
                "the entry the log signed at index {at} is now at index {j} \
                 (the log has {n} entries, its newest signed head covers {max_signed})"
            ),
        );
    }
    let found = if size > n {
        ""
    } else {
        " and is not in the log"
    };
    if n < max_signed {
        (
            at,
            Tamper::Missing,
            format!(
                "the entry signed at this index (head of size {size}) is gone{found}; \
                 the log has {n} entries but signed {max_signed}{batch}"
            ),
        )
    } else if n > max_signed {
        (
            at,
            Tamper::Inserted,
            format!(
                "the log has {n} entries but signed only {max_signed}; \
                 this one does not match the head of size {size}{batch}"
            ),
        )
    } else {
        (
            at,
            Tamper::Edited,
            format!("its bytes do not match what the log signed in the head of size {size}{batch}"),
        )
    }
}

fn stored_leaves(entries: &[StoredEntry], size: u64) -> Option<Vec<Hash>> {
    let size = usize::try_from(size).ok()?;
    entries
        .iter()
        .take(size)
        .map(|e| Hash::try_from(e.leaf_hash.as_slice()).ok())
        .collect::<Option<Vec<_>>>()
        .filter(|v| v.len() == size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translog::entry::{Issued, Requester};
    use crate::translog::merkle::MemoryTree;
    use crate::translog::sth::TreeHead;

    fn entry(i: u64) -> Vec<u8> {
        Entry::Issued(Issued {
            certificate: vec![0x30, 0x01, i as u8],
            requester: Requester::Token(format!("t{i}")),
            profile: "workload".into(),
            time_ms: i,
        })
        .encode()
    }

    /// `bytes` committed in batches ending at sizes 3, 6 and 10.
    fn build(key: &rcgen::KeyPair, bytes: Vec<Vec<u8>>) -> (Vec<StoredEntry>, Vec<SignedTreeHead>) {
        let mut tree = MemoryTree::new();
        let mut entries = Vec::new();
        let mut heads = Vec::new();
        for (i, bytes) in bytes.into_iter().enumerate() {
            let i = i as u64;
            let leaf = leaf_hash(&bytes);
            tree.push(leaf);
            entries.push(StoredEntry {
                index: i,
                bytes,
                leaf_hash: leaf.to_vec(),
            });
            if [3, 6, 10].contains(&(i + 1)) {
                heads.push(
                    TreeHead {
                        tree_size: i + 1,
                        timestamp_ms: i,
                        root_hash: tree.root(),
                    }
                    .sign(key)
                    .unwrap(),
                );
            }
        }
        (entries, heads)
    }

    fn key() -> rcgen::KeyPair {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
    }

    fn log() -> (Vec<StoredEntry>, Vec<SignedTreeHead>, LogPublicKey) {
        let key = key();
        let (entries, heads) = build(&key, (0..10).map(entry).collect());
        (
            entries,
            heads,
            LogPublicKey::from_signing_key(&key).unwrap(),
        )
    }

    fn problem(entries: &[StoredEntry], heads: &[SignedTreeHead], key: &LogPublicKey) -> Problem {
        verify_log(entries, heads, key, None).problem.unwrap()
    }

    #[test]
    fn clean_log_verifies() {
        let (entries, heads, key) = log();
        let r = verify_log(&entries, &heads, &key, None);
        assert!(r.ok(), "{:?}", r.problem);
        assert_eq!((r.entries, r.heads), (10, 3));
    }

    #[test]
    fn edit_inside_a_batch_is_pinned_by_authentic_stored_leaves() {
        let (mut entries, heads, key) = log();
        entries[4].bytes = entry(44);
        let Problem::Entry { index, what, .. } = problem(&entries, &heads, &key) else {
            panic!()
        };
        assert_eq!((index, what), (4, Tamper::Edited));
    }

    #[test]
    fn edit_with_recomputed_leaf_hash_is_pinned_to_its_batch() {
        let (mut entries, heads, key) = log();
        entries[4].bytes = entry(44);
        entries[4].leaf_hash = leaf_hash(&entries[4].bytes).to_vec();
        let p = problem(&entries, &heads, &key);
        let Problem::Entry {
            index,
            what,
            detail,
        } = &p
        else {
            panic!("{p}")
        };
        assert_eq!((*index, *what), (3, Tamper::Edited));
        assert!(
            detail.contains("entries 3..5 were signed together"),
            "{detail}"
        );
    }

    #[test]
    fn reorder_across_batches_with_authentic_leaves_names_both_positions() {
        let (mut entries, heads, key) = log();
        // Swap the contents (not the stored hashes) of entries 4 and 8.
        let b4 = entries[4].bytes.clone();
        entries[4].bytes = entries[8].bytes.clone();
        entries[8].bytes = b4;
        let p = problem(&entries, &heads, &key);
        assert!(
            matches!(&p, Problem::Entry { index: 4, what: Tamper::Reordered, detail } if detail.contains("now at index 8")),
            "{p}"
        );
    }

    #[test]
    fn bad_signature_and_no_heads_are_reported() {
        let (entries, mut heads, key) = log();
        heads[1].signature[10] ^= 1;
        assert!(matches!(
            problem(&entries, &heads, &key),
            Problem::BadSignature {
                tree_size: 6,
                saved: false
            }
        ));
        assert_eq!(problem(&entries, &[], &key), Problem::NoHeads);
    }

    #[test]
    fn saved_head_must_be_a_prefix() {
        let key = key();
        let public = LogPublicKey::from_signing_key(&key).unwrap();
        let (entries, heads) = build(&key, (0..10).map(entry).collect());
        let saved = heads[0].clone();
        assert!(verify_log(&entries, &heads, &public, Some(&saved)).ok());
        // Rewritten from scratch and re-signed with the log key: sound on
        // its own, not an extension of what the auditor saw.
        let (other, other_heads) = build(&key, (0..10).map(|i| entry(i + 1)).collect());
        assert!(verify_log(&other, &other_heads, &public, None).ok());
        let p = verify_log(&other, &other_heads, &public, Some(&saved));
        assert!(
            matches!(&p.problem, Some(Problem::NotConsistentWithSaved { tree_size: 3, detail }) if detail.contains("rewritten")),
            "{:?}",
            p.problem
        );
        // Truncated below the saved head (and its heads dropped).
        let later = heads[1].clone();
        let p = verify_log(&entries[..3], &heads[..1], &public, Some(&later));
        assert!(
            matches!(&p.problem, Some(Problem::NotConsistentWithSaved { tree_size: 6, detail }) if detail.contains("truncated")),
            "{:?}",
            p.problem
        );
    }
}
