//! RFC 9162 §2.1 Merkle tree hashing, proofs and their verification.
//!
//! The tree is never held whole: every function here reads the hashes of
//! *perfect* subtrees (a complete, aligned block of 2^level leaves) through
//! [`NodeSource`], and the store keeps exactly those. In the RFC's recursion
//! `MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))` every left child is
//! such a perfect, aligned block, so any root, inclusion proof or consistency
//! proof needs O(log n) perfect nodes plus the hashing of the right spine.
//!
//! Verification follows the RFC's iterative algorithms (§2.1.3.2, §2.1.4.2)
//! literally and uses checked arithmetic only: a malformed proof is an
//! error, never a panic.

use sha2::{Digest, Sha256};

use crate::Error;

/// A SHA-256 hash: leaf hash, node hash or root.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || entry)`: the hash of one leaf.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// `SHA-256()`: the root of the empty tree (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Where the hashes of perfect subtrees come from: memory, or the store.
///
/// `perfect(level, index)` is the root of leaves
/// `[index << level, (index + 1) << level)`; level 0 is a leaf hash.
pub trait NodeSource {
    /// The hash of one perfect subtree; an error if it is not stored.
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Error>;
}

/// The largest power of two strictly smaller than `n` (`n >= 2`): the RFC's `k`.
fn split(n: u64) -> u64 {
    // n >= 2 here, so n - 1 >= 1 and ilog2 is defined.
    1u64 << (n - 1).ilog2()
}

/// `MTH(D[lo:hi])` for a non-empty range, from perfect subtrees.
pub fn subtree_root<S: NodeSource + ?Sized>(src: &S, lo: u64, hi: u64) -> Result<Hash, Error> {
    let n = hi
        .checked_sub(lo)
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::LogVerify(format!("empty or inverted range {lo}..{hi}")))?;
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        return src.perfect(n.ilog2(), lo >> n.ilog2());
    }
    let k = split(n);
    let left = subtree_root(src, lo, lo + k)?;
    let right = subtree_root(src, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// `MTH(D[0:size])`, including the empty tree.
pub fn root<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Hash, Error> {
    if size == 0 {
        Ok(empty_root())
    } else {
        subtree_root(src, 0, size)
    }
}

/// `PATH(index, D[0:size])` (RFC 9162 §2.1.3.1): the audit path of one leaf,
/// from the leaf's sibling up to the root's child.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, Error> {
    if index >= size {
        return Err(Error::LogVerify(format!(
            "leaf index {index} is not in a tree of size {size}"
        )));
    }
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<S: NodeSource + ?Sized>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), Error> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < lo + k {
        path(src, m, lo, lo + k, out)?;
        out.push(subtree_root(src, lo + k, hi)?);
    } else {
        path(src, m, lo + k, hi, out)?;
        out.push(subtree_root(src, lo, lo + k)?);
    }
    Ok(())
}

/// `PROOF(first, D[0:second])` (RFC 9162 §2.1.4.1). Empty when
/// `first == second`; `first` must be at least 1.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, Error> {
    if first == 0 || first > second {
        return Err(Error::LogVerify(format!(
            "no consistency proof from size {first} to size {second}: need 0 < first <= second"
        )));
    }
    let mut out = Vec::new();
    if first < second {
        subproof(src, first, 0, second, true, &mut out)?;
    }
    Ok(out)
}

fn subproof<S: NodeSource + ?Sized>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), Error> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(subtree_root(src, lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, lo, lo + k, whole, out)?;
        out.push(subtree_root(src, lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(subtree_root(src, lo, lo + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: does `path` prove leaf `leaf` at `index` in the tree
/// of `size` leaves whose root is `root`?
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    path: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    if index >= size {
        return Err(Error::LogVerify(format!(
            "leaf index {index} is not in a tree of size {size}"
        )));
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return Err(Error::LogVerify(
                "inclusion proof is longer than the tree is deep".into(),
            ));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(Error::LogVerify(
            "inclusion proof is shorter than the tree is deep".into(),
        ));
    }
    if &r != root {
        return Err(Error::LogVerify(format!(
            "inclusion proof of leaf {index} does not lead to the root of the tree of size {size}"
        )));
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `first` leaves with
/// root `first_root` is a prefix of the tree of `second` leaves with root
/// `second_root`? Equal sizes need an empty proof and equal roots.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    if first == 0 || first > second {
        return Err(Error::LogVerify(format!(
            "no consistency proof from size {first} to size {second}: need 0 < first <= second"
        )));
    }
    if first == second {
        if !proof.is_empty() {
            return Err(Error::LogVerify(
                "consistency proof between equal sizes must be empty".into(),
            ));
        }
        if first_root != second_root {
            return Err(Error::LogVerify(format!(
                "two different roots for the same tree size {first}"
            )));
        }
        return Ok(());
    }
    // Step 1: an empty path proves nothing.
    let (head, rest) = proof
        .split_first()
        .ok_or_else(|| Error::LogVerify("consistency proof is empty".into()))?;
    // Step 2: prepend first_root when `first` is a power of two.
    let (start, rest): (&Hash, &[Hash]) = if first.is_power_of_two() {
        (first_root, proof)
    } else {
        (head, rest)
    };
    // Steps 3-4.
    let mut f = first - 1;
    let mut s = second - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Step 5.
    let mut fr = *start;
    let mut sr = *start;
    // Step 6.
    for c in rest {
        if s == 0 {
            return Err(Error::LogVerify(
                "consistency proof is longer than the tree is deep".into(),
            ));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    if s != 0 {
        return Err(Error::LogVerify(
            "consistency proof is shorter than the tree is deep".into(),
        ));
    }
    if &fr != first_root {
        return Err(Error::LogVerify(format!(
            "consistency proof does not reproduce the root of size {first}"
        )));
    }
    if &sr != second_root {
        return Err(Error::LogVerify(format!(
            "consistency proof does not reproduce the root of size {second}"
        )));
    }
    Ok(())
}

/// The perfect subtrees covering `[0, size)` ("compact range"), left to
/// right, largest first. Appending a leaf merges equal neighbours; the root
/// folds them from the right. This is all the writer keeps in memory, and
/// what the auditor uses to rebuild a tree in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)` of each perfect subtree, levels strictly decreasing.
    nodes: Vec<(u32, Hash)>,
}

/// A perfect subtree completed by [`Frontier::push`], to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewNode {
    /// Height of the subtree (0 = leaf).
    pub level: u32,
    /// Position among the subtrees of that level.
    pub index: u64,
    /// Its root.
    pub hash: Hash,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Load the frontier of a tree of `size` leaves: one perfect subtree
    /// per set bit of `size`, O(log n) reads.
    pub fn load<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Self, Error> {
        let mut nodes = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                nodes.push((level, src.perfect(level, start >> level)?));
                start += 1u64 << level;
            }
        }
        Ok(Self { size, nodes })
    }

    /// Number of leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append one leaf; returns every perfect subtree it completes, leaf
    /// first (level 0, then 1, …).
    pub fn push(&mut self, leaf: Hash) -> Vec<NewNode> {
        let index = self.size;
        self.size += 1;
        let mut made = vec![NewNode {
            level: 0,
            index,
            hash: leaf,
        }];
        let mut cur = (0u32, leaf);
        while let Some(&(level, left)) = self.nodes.last() {
            if level != cur.0 {
                break;
            }
            self.nodes.pop();
            let hash = node_hash(&left, &cur.1);
            cur = (level + 1, hash);
            made.push(NewNode {
                level: level + 1,
                index: index >> (level + 1),
                hash,
            });
        }
        self.nodes.push(cur);
        made
    }

    /// `MTH` of the covered leaves.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// A whole tree in memory: every perfect subtree hash, by level. For
/// auditors rebuilding a downloaded log, and for tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        for node in self.frontier.push(leaf) {
            let level = node.level as usize;
            while self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            if let Some(row) = self.levels.get_mut(level) {
                row.push(node.hash);
            }
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Leaf hash at `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.perfect(0, index).ok()
    }
}

impl NodeSource for MemoryTree {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, Error> {
        self.levels
            .get(level as usize)
            .and_then(|row| usize::try_from(index).ok().and_then(|i| row.get(i)))
            .copied()
            .ok_or_else(|| Error::LogVerify(format!("no subtree at level {level} index {index}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::needless_range_loop)]
    use super::*;

    /// The RFC's definitions, recursively, over the leaf hashes: the
    /// reference the stored-subtree versions are checked against.
    mod reference {
        use super::super::{Hash, empty_root, node_hash};

        fn k(n: usize) -> usize {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            k
        }

        pub fn mth(d: &[Hash]) -> Hash {
            match d.len() {
                0 => empty_root(),
                1 => d[0],
                n => {
                    let k = k(n);
                    node_hash(&mth(&d[..k]), &mth(&d[k..]))
                }
            }
        }

        pub fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
            let n = d.len();
            if n == 1 {
                return vec![];
            }
            let k = k(n);
            if m < k {
                let mut p = path(m, &d[..k]);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = path(m - k, &d[k..]);
                p.push(mth(&d[..k]));
                p
            }
        }

        pub fn proof(m: usize, d: &[Hash]) -> Vec<Hash> {
            subproof(m, d, true)
        }

        fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
            let n = d.len();
            if m == n {
                return if b { vec![] } else { vec![mth(d)] };
            }
            let k = k(n);
            if m <= k {
                let mut p = subproof(m, &d[..k], b);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = subproof(m - k, &d[k..], false);
                p.push(mth(&d[..k]));
                p
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
            .collect()
    }

    fn tree(d: &[Hash]) -> MemoryTree {
        let mut t = MemoryTree::new();
        for l in d {
            t.push(*l);
        }
        t
    }

    fn flip(h: &Hash) -> Hash {
        let mut h = *h;
        h[7] ^= 0x01;
        h
    }

    #[test]
    fn hashes_have_rfc_domain_separation() {
        // SHA-256 of the empty string, and of the single byte 0x00.
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let mut manual = vec![0x01u8];
        manual.extend_from_slice(&[1u8; 32]);
        manual.extend_from_slice(&[2u8; 32]);
        assert_eq!(
            node_hash(&[1u8; 32], &[2u8; 32]),
            <[u8; 32]>::from(Sha256::digest(&manual))
        );
    }

    #[test]
    fn hand_computed_small_trees() {
        let d = leaves(7);
        let (a, b, c, dd, e, f, g) = (d[0], d[1], d[2], d[3], d[4], d[5], d[6]);
        let ab = node_hash(&a, &b);
        let cd = node_hash(&c, &dd);
        let abcd = node_hash(&ab, &cd);
        let ef = node_hash(&e, &f);
        // Sizes 1..=7 written out by hand from the RFC's recursion.
        assert_eq!(tree(&d[..1]).root(), a);
        assert_eq!(tree(&d[..2]).root(), ab);
        assert_eq!(tree(&d[..3]).root(), node_hash(&ab, &c));
        assert_eq!(tree(&d[..4]).root(), abcd);
        assert_eq!(tree(&d[..5]).root(), node_hash(&abcd, &e));
        assert_eq!(tree(&d[..6]).root(), node_hash(&abcd, &ef));
        assert_eq!(tree(&d[..7]).root(), node_hash(&abcd, &node_hash(&ef, &g)));
        let t = tree(&d);
        // The RFC's own examples (§2.1.5): path for d0 in size 7 is [b, h(c,d), h(e,f,g)].
        assert_eq!(
            inclusion_proof(&t, 0, 7).unwrap(),
            vec![b, cd, node_hash(&ef, &g)]
        );
        assert_eq!(
            inclusion_proof(&t, 3, 7).unwrap(),
            vec![c, ab, node_hash(&ef, &g)]
        );
        assert_eq!(inclusion_proof(&t, 4, 7).unwrap(), vec![f, g, abcd]);
        assert_eq!(inclusion_proof(&t, 6, 7).unwrap(), vec![ef, abcd]);
        // Consistency 3 -> 7 is [c, d, g, l] in the RFC: c, d, ab, h(e,f,g).
        assert_eq!(
            consistency_proof(&t, 3, 7).unwrap(),
            vec![c, dd, ab, node_hash(&ef, &g)]
        );
        // 4 -> 7 is [l]; 6 -> 7 is [i, j, k]: ef, g, abcd.
        assert_eq!(
            consistency_proof(&t, 4, 7).unwrap(),
            vec![node_hash(&ef, &g)]
        );
        assert_eq!(consistency_proof(&t, 6, 7).unwrap(), vec![ef, g, abcd]);
    }

    #[test]
    fn roots_match_reference_for_every_size() {
        let d = leaves(64);
        let mut t = MemoryTree::new();
        assert_eq!(t.root(), reference::mth(&[]));
        for n in 1..=64 {
            t.push(d[n - 1]);
            assert_eq!(t.root(), reference::mth(&d[..n]), "size {n}");
            assert_eq!(root(&t, n as u64).unwrap(), reference::mth(&d[..n]));
            // Loading the frontier from stored subtrees gives the same root.
            assert_eq!(Frontier::load(&t, n as u64).unwrap().root(), t.root());
        }
    }

    #[test]
    fn inclusion_every_size_and_index() {
        let d = leaves(64);
        let t = tree(&d);
        let roots: Vec<Hash> = (0..=64).map(|i| reference::mth(&d[..i])).collect();
        for n in 1..=64usize {
            let r = roots[n];
            for m in 0..n {
                let p = inclusion_proof(&t, m as u64, n as u64).unwrap();
                assert_eq!(p, reference::path(m, &d[..n]), "path {m} in {n}");
                verify_inclusion(m as u64, n as u64, &d[m], &p, &r).unwrap();
                // Wrong leaf, wrong index, wrong size, wrong root.
                assert!(verify_inclusion(m as u64, n as u64, &flip(&d[m]), &p, &r).is_err());
                if n > 1 {
                    let other = (m + 1) % n;
                    assert!(verify_inclusion(other as u64, n as u64, &d[m], &p, &r).is_err());
                }
                // Wrong size: the proof for size n must not pass as a proof
                // for any other size against that size's root. (Against the
                // same root a size is not checkable by the path alone: it is
                // the signed head that binds size and root together.)
                for other in (m + 1)..=64 {
                    if other != n {
                        let ro = roots[other];
                        assert!(
                            verify_inclusion(m as u64, other as u64, &d[m], &p, &ro).is_err(),
                            "proof of {m} in {n} accepted for size {other}"
                        );
                    }
                }
                assert!(verify_inclusion(m as u64, n as u64, &d[m], &p, &flip(&r)).is_err());
                // Every hash of the path altered in one byte.
                for i in 0..p.len() {
                    let mut bad = p.clone();
                    bad[i] = flip(&bad[i]);
                    assert!(verify_inclusion(m as u64, n as u64, &d[m], &bad, &r).is_err());
                }
                // Truncated and extended paths.
                if !p.is_empty() {
                    assert!(
                        verify_inclusion(m as u64, n as u64, &d[m], &p[..p.len() - 1], &r).is_err()
                    );
                }
                let mut longer = p.clone();
                longer.push(d[0]);
                assert!(verify_inclusion(m as u64, n as u64, &d[m], &longer, &r).is_err());
            }
            assert!(inclusion_proof(&t, n as u64, n as u64).is_err());
            assert!(verify_inclusion(n as u64, n as u64, &d[0], &[], &r).is_err());
        }
    }

    #[test]
    fn consistency_every_pair_of_sizes() {
        let d = leaves(64);
        let t = tree(&d);
        let roots: Vec<Hash> = (0..=64).map(|i| reference::mth(&d[..i])).collect();
        for n in 1..=64usize {
            let rn = roots[n];
            for m in 1..=n {
                let rm = roots[m];
                let p = consistency_proof(&t, m as u64, n as u64).unwrap();
                assert_eq!(p, reference::proof(m, &d[..n]), "proof {m} -> {n}");
                verify_consistency(m as u64, n as u64, &rm, &rn, &p).unwrap();
                assert!(verify_consistency(m as u64, n as u64, &flip(&rm), &rn, &p).is_err());
                assert!(verify_consistency(m as u64, n as u64, &rm, &flip(&rn), &p).is_err());
                for i in 0..p.len() {
                    let mut bad = p.clone();
                    bad[i] = flip(&bad[i]);
                    assert!(
                        verify_consistency(m as u64, n as u64, &rm, &rn, &bad).is_err(),
                        "altered hash {i} of {m} -> {n} accepted"
                    );
                }
                if m < n {
                    // Wrong sizes: claim the proof is for neighbouring sizes.
                    // Wrong sizes, each with the root of the size claimed.
                    for other in 1..=64usize {
                        let ro = roots[other];
                        if other != m && other < n {
                            assert!(
                                verify_consistency(other as u64, n as u64, &ro, &rn, &p).is_err(),
                                "proof {m} -> {n} accepted as {other} -> {n}"
                            );
                        }
                        if other != n && other > m {
                            assert!(
                                verify_consistency(m as u64, other as u64, &rm, &ro, &p).is_err(),
                                "proof {m} -> {n} accepted as {m} -> {other}"
                            );
                        }
                    }
                    let mut longer = p.clone();
                    longer.push(d[0]);
                    assert!(verify_consistency(m as u64, n as u64, &rm, &rn, &longer).is_err());
                    assert!(
                        verify_consistency(m as u64, n as u64, &rm, &rn, &p[..p.len() - 1])
                            .is_err()
                    );
                }
            }
            assert!(consistency_proof(&t, 0, n as u64).is_err());
            assert!(consistency_proof(&t, n as u64 + 1, n as u64).is_err());
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let h = leaf_hash(b"x");
        assert!(verify_inclusion(u64::MAX, u64::MAX, &h, &[h; 70], &h).is_err());
        assert!(verify_inclusion(0, 0, &h, &[], &h).is_err());
        assert!(verify_consistency(u64::MAX, u64::MAX, &h, &h, &[h; 70]).is_err());
        assert!(verify_consistency(7, 7, &h, &h, &[]).is_ok());
        assert!(verify_consistency(3, u64::MAX, &h, &h, &[h; 70]).is_err());
        assert!(verify_consistency(0, 5, &h, &h, &[h]).is_err());
        let t = MemoryTree::new();
        assert!(inclusion_proof(&t, 0, 5).is_err());
        assert!(subtree_root(&t, 5, 3).is_err());
    }
}
