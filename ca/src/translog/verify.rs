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
//! appends are not concurrent, or always with
//! [`LogOptions::sign_every_size`](super::log::LogOptions::sign_every_size)),
//! so that head pins the damage to its batch; inside a batch the stored leaf
//! hashes are used when they themselves reproduce the signed root, and
//! otherwise the first entry of the batch is named and the report says so. What is wrong is then told apart:
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
/// (online, wired by the API client). The audit sees only this.
pub trait LogSource {
    /// Call `visit` once with every signed head ([`LogItem::Heads`]), then
    /// once per entry in index order, exactly as the source holds them, all
    /// from one consistent state of the log: a CA appending meanwhile must
    /// not make heads cover entries not read. (An online source fetches the
    /// newest head first, then pages through the entries up to it.)
    fn read(&mut self, visit: &mut dyn FnMut(LogItem) -> Result<(), Error>) -> Result<(), Error>;
}

/// What a [`LogSource`] hands to the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogItem {
    /// Every signed head the source holds (first, once).
    Heads(Vec<SignedTreeHead>),
    /// The next entry.
    Entry(StoredEntry),
}

impl LogSource for super::reader::LogReader {
    fn read(&mut self, visit: &mut dyn FnMut(LogItem) -> Result<(), Error>) -> Result<(), Error> {
        self.read_all(visit)
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
    let mut auditor = Auditor::new(sths.to_vec(), key, saved);
    for e in entries {
        auditor.push(e);
    }
    auditor.finish()
}

/// [`verify_log`] over a [`LogSource`], streaming: the auditor keeps two
/// hashes per entry, not the entries.
pub fn audit(
    source: &mut dyn LogSource,
    key: &LogPublicKey,
    saved: Option<&SignedTreeHead>,
) -> Result<Report, Error> {
    let mut auditor: Option<Auditor<'_>> = None;
    source.read(&mut |item| {
        match item {
            LogItem::Heads(heads) => auditor = Some(Auditor::new(heads, key, saved)),
            LogItem::Entry(e) => auditor
                .get_or_insert_with(|| Auditor::new(Vec::new(), key, saved))
                .push(&e),
        }
        Ok(())
    })?;
    Ok(auditor
        .unwrap_or_else(|| Auditor::new(Vec::new(), key, saved))
        .finish())
}

/// The audit as a state machine: heads first, then entries one by one.
pub struct Auditor<'a> {
    key: &'a LogPublicKey,
    saved: Option<&'a SignedTreeHead>,
    /// Sorted by size.
    heads: Vec<SignedTreeHead>,
    /// First head not yet compared.
    next_head: usize,
    /// Recomputed leaf hashes, by position.
    leaves: Vec<Hash>,
    /// Stored leaf hashes, by position (`None`: not 32 bytes).
    stored: Vec<Option<Hash>>,
    frontier: Frontier,
    /// The tree at the last head that matched.
    good_prefix: Frontier,
    /// The first head that did not match, and `good_prefix` at that point.
    first_bad: Option<(usize, Frontier)>,
    /// First position whose index is not its position, and that index.
    gap: Option<(u64, u64)>,
    /// First position whose stored leaf hash is not its bytes' hash.
    stored_mismatch: Option<u64>,
    /// First position that is not a canonical entry, and why.
    undecodable: Option<(u64, String)>,
    /// Whether the rebuilt root at the saved head's size matched it.
    saved_matches: Option<bool>,
}

impl<'a> Auditor<'a> {
    /// Start an audit against these heads.
    pub fn new(
        mut heads: Vec<SignedTreeHead>,
        key: &'a LogPublicKey,
        saved: Option<&'a SignedTreeHead>,
    ) -> Self {
        heads.sort_by_key(|s| s.head.tree_size);
        let mut a = Self {
            key,
            saved,
            heads,
            next_head: 0,
            leaves: Vec::new(),
            stored: Vec::new(),
            frontier: Frontier::new(),
            good_prefix: Frontier::new(),
            first_bad: None,
            gap: None,
            stored_mismatch: None,
            undecodable: None,
            saved_matches: None,
        };
        a.check_heads();
        a
    }

    /// The next entry, in index order.
    pub fn push(&mut self, e: &StoredEntry) {
        let pos = self.leaves.len() as u64;
        if self.gap.is_none() && e.index != pos {
            self.gap = Some((pos, e.index));
        }
        let leaf = leaf_hash(&e.bytes);
        let stored = Hash::try_from(e.leaf_hash.as_slice()).ok();
        if self.stored_mismatch.is_none() && stored != Some(leaf) {
            self.stored_mismatch = Some(pos);
        }
        if self.undecodable.is_none()
            && let Err(err) = Entry::decode(&e.bytes)
        {
            self.undecodable = Some((pos, err.to_string()));
        }
        self.leaves.push(leaf);
        self.stored.push(stored);
        self.frontier.push(leaf);
        self.check_heads();
    }

    /// Compare the heads (and the saved head) of the current size.
    fn check_heads(&mut self) {
        let size = self.frontier.size();
        while let Some(h) = self.heads.get(self.next_head) {
            if h.head.tree_size > size {
                break;
            }
            if h.head.tree_size == size && self.first_bad.is_none() {
                if self.frontier.root() == h.head.root_hash {
                    self.good_prefix = self.frontier.clone();
                } else {
                    self.first_bad = Some((self.next_head, self.good_prefix.clone()));
                }
            }
            self.next_head += 1;
        }
        if let Some(s) = self.saved
            && s.head.tree_size == size
        {
            self.saved_matches = Some(self.frontier.root() == s.head.root_hash);
        }
    }

    /// The verdict.
    pub fn finish(mut self) -> Report {
        let report = |heads: &[SignedTreeHead], n: u64, problem| Report {
            entries: n,
            heads: heads.len(),
            latest: heads.last().cloned(),
            problem,
        };
        let n = self.leaves.len() as u64;
        // Signatures first: everything below leans on them.
        if let Some(bad) = self.heads.iter().find(|s| self.key.verify(s).is_err()) {
            let problem = Problem::BadSignature {
                tree_size: bad.head.tree_size,
                saved: false,
            };
            return report(&self.heads, n, Some(problem));
        }
        if let Some(s) = self.saved
            && self.key.verify(s).is_err()
        {
            let problem = Problem::BadSignature {
                tree_size: s.head.tree_size,
                saved: true,
            };
            return report(&self.heads, n, Some(problem));
        }
        let Some(max_signed) = self.heads.last().map(|s| s.head.tree_size) else {
            return report(&self.heads, n, Some(Problem::NoHeads));
        };
        // Heads past the last entry did not match anything.
        if self.first_bad.is_none() && self.next_head < self.heads.len() {
            self.first_bad = Some((self.next_head, self.good_prefix.clone()));
        }

        let mut found: Vec<(u64, u8, Tamper, String)> = Vec::new();
        if let Some((pos, index)) = self.gap {
            let what = if index > pos {
                Tamper::Missing
            } else {
                Tamper::Inserted
            };
            let detail = format!("expected the entry with index {pos}, found index {index}");
            found.push((pos, 0, what, detail));
        }
        if let Some((i, prefix)) = &self.first_bad
            && let Some(sth) = self.heads.get(*i)
        {
            let (index, what, detail) =
                localise(&self.leaves, &self.stored, sth, prefix, max_signed);
            found.push((index, 1, what, detail));
        } else if n > max_signed {
            let detail = format!(
                "{} entries follow the newest signed tree head (size {max_signed}) unsigned",
                n - max_signed
            );
            found.push((max_signed, 2, Tamper::Inserted, detail));
        }
        if let Some(pos) = self.stored_mismatch {
            let detail = "its stored leaf hash does not match its bytes".to_owned();
            found.push((pos, 3, Tamper::Edited, detail));
        }
        if let Some((pos, err)) = self.undecodable.take() {
            found.push((pos, 4, Tamper::Edited, format!("not a valid entry: {err}")));
        }
        if let Some((index, _, what, detail)) = found.into_iter().min_by_key(|f| (f.0, f.1)) {
            let problem = Problem::Entry {
                index,
                what,
                detail,
            };
            return report(&self.heads, n, Some(problem));
        }

        // The log as stored is sound; does it extend what the auditor saw before?
        if let Some(s) = self.saved {
            let size = s.head.tree_size;
            let detail = if size > n {
                Some(format!(
                    "the saved head covers {size} entries but the log now has {n}: it was truncated"
                ))
            } else if self.saved_matches == Some(false) {
                Some(
                    "the first entries no longer hash to the saved root: the log was rewritten"
                        .to_owned(),
                )
            } else {
                None
            };
            if let Some(detail) = detail {
                let problem = Problem::NotConsistentWithSaved {
                    tree_size: size,
                    detail,
                };
                return report(&self.heads, n, Some(problem));
            }
        }
        report(&self.heads, n, None)
    }
}

/// Pin down the first bad entry under the first head that does not match.
/// `prefix` is the rebuilt tree at the last head that did match.
fn localise(
    leaves: &[Hash],
    stored: &[Option<Hash>],
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
    } else if let Some(stored) = stored_leaves(stored, size) {
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

fn stored_leaves(stored: &[Option<Hash>], size: u64) -> Option<Vec<Hash>> {
    let size = usize::try_from(size).ok()?;
    stored
        .iter()
        .take(size)
        .copied()
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
