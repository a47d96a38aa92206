//! The RFC 6962 Merkle tree (SHA-256): hashing, an append-only in-memory tree that produces
//! inclusion and consistency proofs, and the RFC 9162 §2.1.3.2 / §2.1.4.2 verifiers.
//!
//! Hashing (RFC 6962 §2.1, RFC 9162 §2.1.1):
//! - empty tree: `SHA-256("")`;
//! - leaf: `SHA-256(0x00 ‖ entry)`; in Keyledger an entry is the 32-byte BLAKE3 event hash of one
//!   log record (`audit-integrity.md` §2.3);
//! - node: `SHA-256(0x01 ‖ left ‖ right)`, where the left subtree holds the largest power of two
//!   of leaves strictly smaller than the whole.

use sha2::{Digest, Sha256};

use crate::ProofError;

/// A SHA-256 tree hash: 32 raw bytes (a leaf hash, a node hash or a root).
pub type Hash = [u8; 32];

/// Size of a [`Hash`](type@Hash) in bytes.
pub const HASH_BYTES: usize = 32;

/// Most hashes an inclusion or consistency proof can hold for a tree of at most `u64::MAX`
/// leaves (its height is at most 64). Decoders refuse longer proofs before hashing anything.
pub const MAX_PROOF_HASHES: usize = 64;

/// The root of the empty tree, `SHA-256("")` (RFC 6962 §2.1: `MTH({}) = SHA-256()`).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The leaf hash of one entry: `SHA-256(0x00 ‖ entry)` (RFC 6962 §2.1). In Keyledger `entry` is
/// the 32-byte event hash; any byte string is accepted so the RFC test vectors can be checked.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// The interior node hash `SHA-256(0x01 ‖ left ‖ right)` (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Errors of [`MerkleTree`]'s queries (asking for something the tree cannot answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// A tree size beyond the number of leaves appended so far.
    #[error("tree size {requested} is beyond the {tree_size} leaves of the tree")]
    SizeBeyondTree {
        /// The size asked for.
        requested: u64,
        /// Leaves in the tree.
        tree_size: u64,
    },
    /// A leaf index that is not below the tree size it is asked for.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size asked for.
        size: u64,
    },
    /// A consistency proof from a larger tree to a smaller one.
    #[error("consistency proof asked from size {old_size} to the smaller size {new_size}")]
    OldSizeGreater {
        /// The first (old) size.
        old_size: u64,
        /// The second (new) size.
        new_size: u64,
    },
}

/// An append-only in-memory RFC 6962 Merkle tree.
///
/// It keeps, for every level `k`, the hashes of the complete subtrees of `2^k` leaves that exist
/// so far (level 0 holds the leaf hashes): about `2 × 32` bytes per leaf, 64 MB for a million
/// leaves. Appending is amortised O(1) hashes. [`root_at`](Self::root_at),
/// [`inclusion_proof`](Self::inclusion_proof) and
/// [`consistency_proof`](Self::consistency_proof) for any earlier size cost O(log n) hashes:
/// every subtree of the RFC 6962 decomposition of a size-`n` tree is either a complete aligned
/// subtree (looked up) or a subtree ending at `n` on its right edge (at most 64 of them,
/// computed once per query).
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

/// Converts a tree position to a `usize` index. The tree is in memory, so every position of it
/// fits.
fn ix(x: u64) -> usize {
    usize::try_from(x).expect("a position inside an in-memory tree fits in usize")
}

/// The largest power of two strictly smaller than `n` (`n ≥ 2`): RFC 6962's split point `k`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends one Keyledger entry, the 32-byte event hash of a record, as the next leaf
    /// (hashed as [`leaf_hash`]). Returns the new leaf's index.
    pub fn append(&mut self, event_hash: &[u8; 32]) -> u64 {
        self.append_leaf_hash(leaf_hash(event_hash))
    }

    /// Appends an already computed leaf hash (`SHA-256(0x00 ‖ entry)`). Returns its index.
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> u64 {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let index = self.levels[0].len() as u64;
        self.levels[0].push(leaf);
        // Complete every subtree this leaf closes.
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let len = self.levels[level].len();
            let parent = node_hash(&self.levels[level][len - 2], &self.levels[level][len - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
        index
    }

    /// The leaf hash at `index`, if the tree has that many leaves.
    pub fn leaf_hash_at(&self, index: u64) -> Option<Hash> {
        self.levels.first()?.get(usize::try_from(index).ok()?).copied()
    }

    /// The root of the tree made of the first `size` leaves (RFC 6962 `MTH(D[0:size])`);
    /// [`empty_root`] for size 0.
    ///
    /// # Errors
    /// [`TreeError::SizeBeyondTree`] if `size > self.size()`.
    pub fn root_at(&self, size: u64) -> Result<Hash, TreeError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(View::new(self, size).hash(0, size))
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.size()).expect("the current size is within the tree")
    }

    /// The inclusion proof (audit path) of leaf `index` in the tree of the first `size` leaves:
    /// RFC 6962 §2.1.1 `PATH(index, D[0:size])`, sibling of the leaf first, child of the root
    /// last; at most [`MAX_PROOF_HASHES`] hashes (empty for a one-leaf tree).
    ///
    /// # Errors
    /// [`TreeError::SizeBeyondTree`] if `size > self.size()`; [`TreeError::IndexOutOfRange`] if
    /// `index ≥ size` (so always for size 0).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        self.check_size(size)?;
        if index >= size {
            return Err(TreeError::IndexOutOfRange { index, size });
        }
        let view = View::new(self, size);
        let mut path = Vec::new();
        view.path(index, 0, size, &mut path);
        Ok(path)
    }

    /// The consistency proof from the tree of the first `old_size` leaves to that of the first
    /// `new_size`: RFC 6962 §2.1.2 `PROOF(old_size, D[0:new_size])`, at most
    /// [`MAX_PROOF_HASHES`] hashes. Empty when `old_size` is 0 (the form tlog-witness wants for
    /// `old 0`) or equal to `new_size`.
    ///
    /// # Errors
    /// [`TreeError::SizeBeyondTree`] if `new_size > self.size()`;
    /// [`TreeError::OldSizeGreater`] if `old_size > new_size`.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, TreeError> {
        self.check_size(new_size)?;
        if old_size > new_size {
            return Err(TreeError::OldSizeGreater { old_size, new_size });
        }
        if old_size == 0 || old_size == new_size {
            return Ok(Vec::new());
        }
        let view = View::new(self, new_size);
        let mut proof = Vec::new();
        view.subproof(old_size, 0, new_size, true, &mut proof);
        Ok(proof)
    }

    fn check_size(&self, size: u64) -> Result<(), TreeError> {
        if size > self.size() {
            return Err(TreeError::SizeBeyondTree { requested: size, tree_size: self.size() });
        }
        Ok(())
    }

    /// Hash of the complete, aligned subtree of `len` (a power of two) leaves starting at `lo`.
    fn complete(&self, lo: u64, len: u64) -> Hash {
        debug_assert!(len.is_power_of_two() && lo.is_multiple_of(len));
        let level = len.trailing_zeros() as usize;
        self.levels[level][ix(lo >> level)]
    }
}

/// The tree seen at one size `n`, with the hashes of its right-edge subtrees `[p, n)` computed
/// once.
struct View<'a> {
    tree: &'a MerkleTree,
    n: u64,
    /// `(p, MTH(D[p:n]))` for every start `p` of a right-edge subtree, in increasing `p`.
    edge: Vec<(u64, Hash)>,
}

impl<'a> View<'a> {
    fn new(tree: &'a MerkleTree, n: u64) -> Self {
        debug_assert!(n >= 1 && n <= tree.size());
        // n = 2^a1 + 2^a2 + … (a1 > a2 > …): the right edge starts at the prefix sums.
        let mut starts = Vec::new();
        let mut p = 0u64;
        let mut rest = n;
        while rest > 0 {
            starts.push(p);
            let top = 1u64 << (63 - rest.leading_zeros());
            p += top;
            rest -= top;
        }
        let mut edge = vec![(0u64, [0u8; 32]); starts.len()];
        let mut acc: Option<Hash> = None;
        for (i, &start) in starts.iter().enumerate().rev() {
            let end = starts.get(i + 1).copied().unwrap_or(n);
            let block = tree.complete(start, end - start);
            let h = match acc {
                None => block,
                Some(right) => node_hash(&block, &right),
            };
            edge[i] = (start, h);
            acc = Some(h);
        }
        Self { tree, n, edge }
    }

    /// `MTH(D[lo:hi])` for a subtree of the RFC 6962 decomposition of this size.
    fn hash(&self, lo: u64, hi: u64) -> Hash {
        let len = hi - lo;
        if len.is_power_of_two() && lo.is_multiple_of(len) {
            return self.tree.complete(lo, len);
        }
        if hi == self.n {
            if let Ok(i) = self.edge.binary_search_by_key(&lo, |e| e.0) {
                return self.edge[i].1;
            }
        }
        // Not reached for the subtrees RFC 6962's recursion visits; kept correct anyway.
        let k = split_point(len);
        node_hash(&self.hash(lo, lo + k), &self.hash(lo + k, hi))
    }

    /// RFC 6962 `PATH(m, D[lo:hi])`, appended to `out` leaf side first.
    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) {
        if hi - lo == 1 {
            return;
        }
        let k = split_point(hi - lo);
        if m < lo + k {
            self.path(m, lo, lo + k, out);
            out.push(self.hash(lo + k, hi));
        } else {
            self.path(m, lo + k, hi, out);
            out.push(self.hash(lo, lo + k));
        }
    }

    /// RFC 6962 `SUBPROOF(m - lo, D[lo:hi], complete)`, appended to `out`.
    fn subproof(&self, m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<Hash>) {
        if m == hi {
            if !complete {
                out.push(self.hash(lo, hi));
            }
            return;
        }
        let k = split_point(hi - lo);
        if m - lo <= k {
            self.subproof(m, lo, lo + k, complete, out);
            out.push(self.hash(lo + k, hi));
        } else {
            self.subproof(m, lo + k, hi, false, out);
            out.push(self.hash(lo, lo + k));
        }
    }
}

/// Verifies that `leaf` (a [`leaf_hash`]) is at `index` in the tree of `size` leaves whose root
/// is `root`, with the RFC 9162 §2.1.3.2 algorithm. `path` is the audit path, leaf's sibling
/// first (RFC 6962 §2.1.1).
///
/// # Errors
/// - [`ProofError::EmptyTree`] if `size` is 0 (no leaf is in the empty tree);
/// - [`ProofError::IndexOutOfRange`] if `index ≥ size`;
/// - [`ProofError::PathTooLong`] if the path has more hashes than the tree is high at `index`
///   (not fully consumed);
/// - [`ProofError::PathTooShort`] if it has fewer;
/// - [`ProofError::RootMismatch`] if the path of the right length leads to another root.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> Result<(), ProofError> {
    let computed = root_from_inclusion(leaf, index, size, path)?;
    if &computed != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The root that an inclusion path leads to (RFC 9162 §2.1.3.2 steps 1–5 without the final
/// comparison). Errors as [`verify_inclusion`] except `RootMismatch`.
pub fn root_from_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash]) -> Result<Hash, ProofError> {
    if size == 0 {
        return Err(ProofError::EmptyTree);
    }
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return Err(ProofError::PathTooLong);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::PathTooShort);
    }
    Ok(r)
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`, with the RFC 9162 §2.1.4.2 algorithm. `path` is the
/// RFC 6962 §2.1.2 consistency proof.
///
/// Equal sizes are consistent only with an empty path and equal roots. An old size of 0 is
/// refused: RFC 9162 §2.1.4 defines proofs for `0 < old_size`, and the empty tree is a prefix
/// of every tree, so a caller that accepts it (as a tlog-witness does for `old 0`) decides that
/// itself (see [`crate::witness`]).
///
/// # Errors
/// - [`ProofError::OldSizeZero`] if `old_size` is 0;
/// - [`ProofError::OldSizeGreater`] if `old_size > new_size`;
/// - [`ProofError::SameSizeNonEmptyPath`], [`ProofError::SameSizeRootsDiffer`] for equal sizes;
/// - [`ProofError::PathTooShort`] (including an empty path for different sizes) or
///   [`ProofError::PathTooLong`] (the second size not fully consumed when the path ends, or
///   hashes left over);
/// - [`ProofError::OldRootMismatch`] / [`ProofError::NewRootMismatch`] if the path leads to
///   other roots.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    path: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if old_size == 0 {
        return Err(ProofError::OldSizeZero);
    }
    if old_size > new_size {
        return Err(ProofError::OldSizeGreater { old_size, new_size });
    }
    if old_size == new_size {
        if !path.is_empty() {
            return Err(ProofError::SameSizeNonEmptyPath);
        }
        if old_root != new_root {
            return Err(ProofError::SameSizeRootsDiffer);
        }
        return Ok(());
    }
    if path.is_empty() {
        return Err(ProofError::PathTooShort);
    }
    // Step 2: an old tree that is a complete subtree is its own first proof node.
    let (first, rest): (&Hash, &[Hash]) =
        if old_size.is_power_of_two() { (old_root, path) } else { (&path[0], &path[1..]) };
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = *first;
    let mut sr = *first;
    for c in rest {
        if sn == 0 {
            return Err(ProofError::PathTooLong);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::PathTooShort);
    }
    if &fr != old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if &sr != new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        hex32(s)
    }

    pub(crate) fn hex32(s: &str) -> Hash {
        let v = unhex(s);
        v.try_into().expect("32 bytes")
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    // The RFC 6962 test data shared by certificate-transparency implementations: eight leaves,
    // the roots of the trees of sizes 1..8, and audit/consistency paths. Copied as data from
    // transparency-dev/merkle `proof/verify_test.go` (the vectors of the certificate-transparency
    // C++ `merkle_tree_test.cc`).
    const LEAVES: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    /// (leaf index, tree size, path).
    const INCLUSION: [(u64, u64, &[&str]); 5] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (0, 1, &[]),
    ];
    /// (old size, new size, proof).
    const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn reference_tree() -> MerkleTree {
        let mut t = MerkleTree::new();
        for l in LEAVES {
            t.append_leaf_hash(leaf_hash(&unhex(l)));
        }
        t
    }

    fn hashes(v: &[&str]) -> Vec<Hash> {
        v.iter().map(|s| h(s)).collect()
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(empty_root(), h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        assert_eq!(MerkleTree::new().root(), empty_root());
    }

    #[test]
    fn roots_of_sizes_1_to_8_match_rfc6962_vectors() {
        let t = reference_tree();
        for (i, want) in ROOTS.iter().enumerate() {
            assert_eq!(t.root_at(i as u64 + 1).unwrap(), h(want), "size {}", i + 1);
        }
        assert_eq!(t.root_at(9), Err(TreeError::SizeBeyondTree { requested: 9, tree_size: 8 }));
    }

    #[test]
    fn inclusion_paths_match_and_verify_rfc6962_vectors() {
        let t = reference_tree();
        for (index, size, path) in INCLUSION {
            let want = hashes(path);
            assert_eq!(t.inclusion_proof(index, size).unwrap(), want, "({index}, {size})");
            let leaf = t.leaf_hash_at(index).unwrap();
            verify_inclusion(&leaf, index, size, &want, &h(ROOTS[size as usize - 1])).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_and_verify_rfc6962_vectors() {
        let t = reference_tree();
        for (m, n, proof) in CONSISTENCY {
            let want = hashes(proof);
            assert_eq!(t.consistency_proof(m, n).unwrap(), want, "({m}, {n})");
            verify_consistency(m, n, &want, &h(ROOTS[m as usize - 1]), &h(ROOTS[n as usize - 1])).unwrap();
        }
    }

    #[test]
    fn inclusion_edge_cases_are_refused_with_their_error() {
        let t = reference_tree();
        let root = t.root();
        let leaf = t.leaf_hash_at(0).unwrap();
        let path = t.inclusion_proof(0, 8).unwrap();
        assert_eq!(verify_inclusion(&leaf, 0, 0, &[], &empty_root()), Err(ProofError::EmptyTree));
        assert_eq!(verify_inclusion(&leaf, 8, 8, &path, &root), Err(ProofError::IndexOutOfRange { index: 8, size: 8 }));
        assert_eq!(verify_inclusion(&leaf, 0, 8, &[], &root), Err(ProofError::PathTooShort));
        assert_eq!(verify_inclusion(&leaf, 0, 8, &path[..2], &root), Err(ProofError::PathTooShort));
        let mut long = path.clone();
        long.push(root);
        assert_eq!(verify_inclusion(&leaf, 0, 8, &long, &root), Err(ProofError::PathTooLong));
        assert_eq!(verify_inclusion(&leaf, 0, 1, &path, &leaf), Err(ProofError::PathTooLong));
        assert_eq!(verify_inclusion(&leaf, 1, 8, &path, &root), Err(ProofError::RootMismatch));
        assert_eq!(t.inclusion_proof(0, 0), Err(TreeError::IndexOutOfRange { index: 0, size: 0 }));
        assert_eq!(t.inclusion_proof(8, 8), Err(TreeError::IndexOutOfRange { index: 8, size: 8 }));
        // A one-leaf tree: the root is the leaf hash and the path is empty.
        verify_inclusion(&leaf, 0, 1, &[], &leaf).unwrap();
    }

    #[test]
    fn consistency_edge_cases_are_refused_with_their_error() {
        let t = reference_tree();
        let (r3, r8) = (t.root_at(3).unwrap(), t.root_at(8).unwrap());
        let p = t.consistency_proof(3, 8).unwrap();
        assert_eq!(verify_consistency(0, 8, &[], &empty_root(), &r8), Err(ProofError::OldSizeZero));
        assert_eq!(verify_consistency(0, 0, &[], &empty_root(), &empty_root()), Err(ProofError::OldSizeZero));
        assert_eq!(
            verify_consistency(8, 3, &p, &r8, &r3),
            Err(ProofError::OldSizeGreater { old_size: 8, new_size: 3 })
        );
        assert_eq!(verify_consistency(3, 3, &p, &r3, &r3), Err(ProofError::SameSizeNonEmptyPath));
        assert_eq!(verify_consistency(3, 3, &[], &r3, &r8), Err(ProofError::SameSizeRootsDiffer));
        verify_consistency(3, 3, &[], &r3, &r3).unwrap();
        assert_eq!(verify_consistency(3, 8, &[], &r3, &r8), Err(ProofError::PathTooShort));
        assert_eq!(verify_consistency(3, 8, &p[..p.len() - 1], &r3, &r8), Err(ProofError::PathTooShort));
        let mut long = p.clone();
        long.push(r8);
        assert_eq!(verify_consistency(3, 8, &long, &r3, &r8), Err(ProofError::PathTooLong));
        assert_eq!(verify_consistency(3, 8, &p, &r8, &r8), Err(ProofError::OldRootMismatch));
        assert_eq!(verify_consistency(3, 8, &p, &r3, &r3), Err(ProofError::NewRootMismatch));
        assert_eq!(verify_consistency(3, 8, &p, &r8, &r3), Err(ProofError::OldRootMismatch));
        assert_eq!(t.consistency_proof(4, 3), Err(TreeError::OldSizeGreater { old_size: 4, new_size: 3 }));
        assert_eq!(t.consistency_proof(0, 8).unwrap(), Vec::<Hash>::new());
        assert_eq!(t.consistency_proof(8, 8).unwrap(), Vec::<Hash>::new());
    }

    /// The recursive definition of RFC 6962 §2.1, straight from the text, as a second
    /// implementation to compare the stored-levels tree with.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn path_ref(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        if leaves.len() <= 1 {
            return Vec::new();
        }
        let k = split_point(leaves.len() as u64) as usize;
        if m < k {
            let mut p = path_ref(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path_ref(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    fn subproof_ref(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if complete { Vec::new() } else { vec![mth(leaves)] };
        }
        let k = split_point(n as u64) as usize;
        if m <= k {
            let mut p = subproof_ref(m, &leaves[..k], complete);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = subproof_ref(m - k, &leaves[k..], false);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    #[test]
    fn stored_levels_agree_with_the_recursive_definition_up_to_70_leaves() {
        let mut t = MerkleTree::new();
        let mut leaves = Vec::new();
        for i in 0..70u8 {
            t.append(&[i; 32]);
            leaves.push(leaf_hash(&[i; 32]));
        }
        for n in 1..=70usize {
            assert_eq!(t.root_at(n as u64).unwrap(), mth(&leaves[..n]));
            for m in 0..n {
                assert_eq!(t.inclusion_proof(m as u64, n as u64).unwrap(), path_ref(m, &leaves[..n]));
            }
            for m in 1..n {
                assert_eq!(t.consistency_proof(m as u64, n as u64).unwrap(), subproof_ref(m, &leaves[..n], true));
            }
        }
    }

    #[test]
    fn a_million_leaves_answer_proofs_quickly() {
        let mut t = MerkleTree::new();
        for i in 0..1_000_000u32 {
            let mut e = [0u8; 32];
            e[..4].copy_from_slice(&i.to_be_bytes());
            t.append(&e);
        }
        let n = t.size();
        let root = t.root();
        for &(i, m) in &[(0u64, 1u64), (123_456, 999_999), (999_999, 524_288), (777_777, 3)] {
            let p = t.inclusion_proof(i, n).unwrap();
            assert!(p.len() <= 20);
            verify_inclusion(&t.leaf_hash_at(i).unwrap(), i, n, &p, &root).unwrap();
            let c = t.consistency_proof(m, n).unwrap();
            verify_consistency(m, n, &c, &t.root_at(m).unwrap(), &root).unwrap();
        }
    }
}
