//! The RFC 6962 / RFC 9162 Merkle tree: domain-separated hashing, the right edge
//! kept while appending, proof generation from stored subtree hashes, and proof
//! verification that needs only the proof, the leaf hash, the sizes and the roots.

use sha2::{Digest as _, Sha256};

use crate::sha256x2::{self, Block};

/// A SHA-256 hash: a leaf hash, an interior node hash or a root.
pub type Hash = [u8; HASH_LEN_BYTES];

/// Length of every hash in the tree.
pub const HASH_LEN_BYTES: usize = 32;

/// Prefix of a leaf hash input (RFC 6962, section 2.1).
pub const LEAF_PREFIX: u8 = 0x00;

/// Prefix of an interior node hash input (RFC 6962, section 2.1).
pub const NODE_PREFIX: u8 = 0x01;

/// The largest tree this crate handles: sizes are `u64` on the wire, and keeping
/// them below 2^63 keeps every `index + 1` and `2 * size` free of overflow and
/// matches the signed 64-bit sizes of other implementations.
pub const MAX_TREE_SIZE: u64 = (1 << 63) - 1;

/// Hashes in the longest inclusion proof: one per level of a tree of
/// [`MAX_TREE_SIZE`] leaves.
pub const MAX_INCLUSION_HASHES: usize = 63;

/// Hashes in the longest consistency proof: at most two per level.
pub const MAX_CONSISTENCY_HASHES: usize = 2 * MAX_INCLUSION_HASHES;

/// Why a proof does not verify, or cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// A leaf index at or beyond the tree size.
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A tree size above [`MAX_TREE_SIZE`], or an old size above the new one.
    #[error("tree size out of range: {detail}")]
    SizeOutOfRange {
        /// Which size, and why.
        detail: String,
    },
    /// A proof with more hashes than the sizes allow, or fewer than they need.
    #[error("proof has the wrong length ({hashes} hashes)")]
    WrongLength {
        /// The number of hashes in the proof.
        hashes: usize,
    },
    /// The proof leads to another root than the one given.
    #[error("the proof does not lead to the given root")]
    RootMismatch,
    /// A stored subtree hash that the proof needs is not available.
    #[error("stored hash missing at level {level}, index {index}: {detail}")]
    HashUnavailable {
        /// Level of the subtree (0 for a leaf).
        level: u8,
        /// Index of the subtree within its level.
        index: u64,
        /// What went wrong.
        detail: String,
    },
}

// SHA-256's initial state (FIPS 180-4, section 5.3.3).
use calybris_wal::format::SHA256_INITIAL_STATE as SHA256_IV;
// Constant-time comparison: roots are public, but a verifier that leaks where
// two hashes first differ costs nothing to avoid.
use calybris_wal::format::hashes_equal;

/// The digest bytes of a final SHA-256 state.
fn state_bytes(state: &[u32; 8]) -> Hash {
    let mut out = [0u8; HASH_LEN_BYTES];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The leaf hash of `data`: SHA-256(0x00 || data).
///
/// A 32-byte leaf input (an entry hash) is one padded SHA-256 block hashed
/// with the compression function directly, without a hasher's buffering.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    if let Ok(entry) = <&[u8; HASH_LEN_BYTES]>::try_from(data) {
        return leaf_hash_32(entry);
    }
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The leaf hash of a 32-byte leaf input: SHA-256(0x00 || data), one block.
#[must_use]
pub fn leaf_hash_32(data: &Hash) -> Hash {
    let block = leaf_block(data);
    let mut state = SHA256_IV;
    sha2::block_api::compress256(&mut state, std::slice::from_ref(&block));
    state_bytes(&state)
}

/// The one padded block of a leaf over 32 bytes: 0x00 || data || 0x80 ||
/// zeros || the bit length 33 * 8 = 264.
fn leaf_block(data: &Hash) -> Block {
    let mut block = [0u8; 64];
    block[0] = LEAF_PREFIX;
    block[1..=HASH_LEN_BYTES].copy_from_slice(data);
    block[1 + HASH_LEN_BYTES] = 0x80;
    block[56..].copy_from_slice(&(33u64 * 8).to_be_bytes());
    block
}

/// The interior node hash: SHA-256(0x01 || left || right).
///
/// The 65-byte input is laid out as its two padded SHA-256 blocks on the
/// stack and compressed in one call: no hasher state, no buffering, no
/// allocation.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let blocks = node_blocks(left, right);
    let mut state = SHA256_IV;
    sha2::block_api::compress256(&mut state, &blocks);
    state_bytes(&state)
}

/// The two padded blocks of a node: 0x01 || left || right[..31], then
/// right[31] || 0x80 || zeros || the bit length 65 * 8 = 520.
fn node_blocks(left: &Hash, right: &Hash) -> [Block; 2] {
    let mut blocks = [[0u8; 64]; 2];
    blocks[0][0] = NODE_PREFIX;
    blocks[0][1..=HASH_LEN_BYTES].copy_from_slice(left);
    blocks[0][1 + HASH_LEN_BYTES..].copy_from_slice(&right[..HASH_LEN_BYTES - 1]);
    blocks[1][0] = right[HASH_LEN_BYTES - 1];
    blocks[1][1] = 0x80;
    blocks[1][56..].copy_from_slice(&(65u64 * 8).to_be_bytes());
    blocks
}

/// Two leaf hashes over 32 bytes at once: `[leaf_hash_32(a), leaf_hash_32(b)]`,
/// the two compressions interleaved where the CPU allows it (`sha256x2`).
#[must_use]
pub(crate) fn leaf_hash_32_pair(a: &Hash, b: &Hash) -> [Hash; 2] {
    let (block_a, block_b) = (leaf_block(a), leaf_block(b));
    let (mut state_a, mut state_b) = (SHA256_IV, SHA256_IV);
    sha256x2::compress_pair(
        &mut state_a,
        std::slice::from_ref(&block_a),
        &mut state_b,
        std::slice::from_ref(&block_b),
    );
    [state_bytes(&state_a), state_bytes(&state_b)]
}

/// Two node hashes at once: `[node_hash(a.0, a.1), node_hash(b.0, b.1)]`.
#[must_use]
pub(crate) fn node_hash_pair(a: (&Hash, &Hash), b: (&Hash, &Hash)) -> [Hash; 2] {
    let (blocks_a, blocks_b) = (node_blocks(a.0, a.1), node_blocks(b.0, b.1));
    let (mut state_a, mut state_b) = (SHA256_IV, SHA256_IV);
    sha256x2::compress_pair(&mut state_a, &blocks_a, &mut state_b, &blocks_b);
    [state_bytes(&state_a), state_bytes(&state_b)]
}

/// Fills `out[i]` with the parent of `children[2i]` and `children[2i + 1]`,
/// two parents at a time. `children` holds exactly `2 * out.len()` hashes.
pub(crate) fn parents_into(children: &[Hash], out: &mut [Hash]) {
    debug_assert_eq!(children.len(), 2 * out.len());
    let mut pairs = out.chunks_exact_mut(2);
    let mut quads = children.chunks_exact(4);
    for (pair, quad) in (&mut pairs).zip(&mut quads) {
        let [left, right] = node_hash_pair((&quad[0], &quad[1]), (&quad[2], &quad[3]));
        pair[0] = left;
        pair[1] = right;
    }
    if let ([last], [l, r]) = (pairs.into_remainder(), quads.remainder()) {
        *last = node_hash(l, r);
    }
}

/// The root of 256 consecutive leaves (a level-8 subtree, one full tile),
/// each level from the one below, two parents at a time.
pub(crate) fn subtree_of_256(leaves: &[Hash]) -> Hash {
    debug_assert_eq!(leaves.len(), 256);
    let mut below = [[0u8; HASH_LEN_BYTES]; 128];
    let mut above = [[0u8; HASH_LEN_BYTES]; 128];
    parents_into(leaves, &mut below);
    let mut count = below.len();
    while count > 1 {
        parents_into(&below[..count], &mut above[..count / 2]);
        std::mem::swap(&mut below, &mut above);
        count /= 2;
    }
    below[0]
}

/// Fills `out[i]` with the leaf hash of `entries[i]`, two at a time.
pub(crate) fn leaves_into(entries: &[Hash], out: &mut [Hash]) {
    debug_assert_eq!(entries.len(), out.len());
    let mut pairs = out.chunks_exact_mut(2);
    let mut inputs = entries.chunks_exact(2);
    for (pair, input) in (&mut pairs).zip(&mut inputs) {
        let [a, b] = leaf_hash_32_pair(&input[0], &input[1]);
        pair[0] = a;
        pair[1] = b;
    }
    if let ([last], [entry]) = (pairs.into_remainder(), inputs.remainder()) {
        *last = leaf_hash_32(entry);
    }
}

/// The root of the empty tree: SHA-256 of the empty string (RFC 6962).
#[must_use]
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n`; `n` must be at least 2.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The reference tree hash of a list of leaf hashes, by the recursive definition
/// of RFC 6962 (MTH). Linear in the leaves; for tests and small trees.
#[must_use]
pub fn tree_hash(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = usize::try_from(split_point(n as u64)).unwrap_or(usize::MAX);
            node_hash(&tree_hash(&leaves[..k]), &tree_hash(&leaves[k..]))
        }
    }
}

/// The right edge of a growing tree: the hashes of its complete subtrees, one
/// per set bit of the size, largest first. This is all that appending and the
/// root need, so memory is O(log n).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RightEdge {
    size: u64,
    edge: Vec<Hash>,
}

impl RightEdge {
    /// The empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the edge of a tree of `size` leaves from its complete subtrees,
    /// largest first (as [`RightEdge::edge`] returns them).
    ///
    /// # Errors
    /// [`ProofError::WrongLength`] when `edge` does not hold one hash per set bit
    /// of `size`; [`ProofError::SizeOutOfRange`] above [`MAX_TREE_SIZE`].
    pub fn from_parts(size: u64, edge: Vec<Hash>) -> Result<Self, ProofError> {
        if size > MAX_TREE_SIZE {
            return Err(ProofError::SizeOutOfRange {
                detail: format!("{size} exceeds {MAX_TREE_SIZE}"),
            });
        }
        if edge.len() != size.count_ones() as usize {
            return Err(ProofError::WrongLength { hashes: edge.len() });
        }
        Ok(Self { size, edge })
    }

    /// Leaves appended so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The complete subtree hashes, largest first.
    #[must_use]
    pub fn edge(&self) -> &[Hash] {
        &self.edge
    }

    /// Appends one leaf hash.
    ///
    /// # Errors
    /// [`ProofError::SizeOutOfRange`] when the tree already holds
    /// [`MAX_TREE_SIZE`] leaves.
    pub fn append(&mut self, leaf: Hash) -> Result<(), ProofError> {
        self.append_visiting(leaf, |_, _, _| {})
    }

    /// Appends one leaf hash and hands every subtree it completes to `visit` as
    /// `(level, index, hash)`, the leaf itself first (level 0). A tile writer
    /// keeps the levels it stores.
    ///
    /// # Errors
    /// [`ProofError::SizeOutOfRange`] when the tree already holds
    /// [`MAX_TREE_SIZE`] leaves.
    pub fn append_visiting(
        &mut self,
        leaf: Hash,
        visit: impl FnMut(u8, u64, &Hash),
    ) -> Result<(), ProofError> {
        self.append_subtree_visiting(0, leaf, visit)
    }

    /// Appends the leaves of `entries` (32-byte leaf inputs, each leaf
    /// `leaf_hash_32(entry)`), exactly as appending them one by one would,
    /// and pushes their leaf hashes onto `leaves`. The leaf hashes are
    /// computed two at a time, and each run of 256 leaves that starts on a
    /// multiple of 256 joins the edge as one level-8 subtree built two
    /// parents at a time.
    ///
    /// # Errors
    /// [`ProofError::SizeOutOfRange`] when the tree would pass
    /// [`MAX_TREE_SIZE`]; the edge then holds the leaves before the run that
    /// did not fit.
    pub fn append_entry_hashes(
        &mut self,
        entries: &[Hash],
        leaves: &mut Vec<Hash>,
    ) -> Result<(), ProofError> {
        let before = self.size;
        let start = leaves.len();
        leaves.resize(start + entries.len(), [0; HASH_LEN_BYTES]);
        leaves_into(entries, &mut leaves[start..]);
        let mut rest = &leaves[start..];
        while !rest.is_empty() {
            if self.size.is_multiple_of(256) && rest.len() >= 256 {
                let (tile, after) = rest.split_at(256);
                self.append_subtree_visiting(8, subtree_of_256(tile), |_, _, _| {})?;
                rest = after;
            } else {
                self.append(rest[0])?;
                rest = &rest[1..];
            }
        }
        debug_assert_eq!(self.size, before + entries.len() as u64);
        Ok(())
    }

    /// Appends a complete subtree of `2^height` leaves whose hash is `hash`
    /// (its leaves hashed elsewhere, for instance in parallel) and hands every
    /// subtree it completes to `visit` as `(level, index, hash)`, the appended
    /// subtree itself first (level `height`). The size must be a multiple of
    /// `2^height`, as it is after appending whole subtrees of that height.
    ///
    /// # Errors
    /// [`ProofError::SizeOutOfRange`] when the tree would pass
    /// [`MAX_TREE_SIZE`] leaves or the size is not aligned to the subtree.
    pub fn append_subtree_visiting(
        &mut self,
        height: u8,
        hash: Hash,
        mut visit: impl FnMut(u8, u64, &Hash),
    ) -> Result<(), ProofError> {
        let width = 1u64.checked_shl(u32::from(height)).unwrap_or(u64::MAX);
        if height >= 63 || self.size > MAX_TREE_SIZE - width {
            return Err(ProofError::SizeOutOfRange {
                detail: format!("the tree is full at {MAX_TREE_SIZE} leaves"),
            });
        }
        if !self.size.is_multiple_of(width) {
            return Err(ProofError::SizeOutOfRange {
                detail: format!(
                    "a subtree of {width} leaves cannot start at leaf {}",
                    self.size
                ),
            });
        }
        let index = self.size >> height;
        visit(height, index, &hash);
        let mut hash = hash;
        let mut level = height;
        // Each trailing one bit of the old size (above `height`) is a complete
        // subtree of the same height as `hash`, immediately to its left:
        // merge them.
        while (index >> (level - height)) & 1 == 1 {
            let left = self
                .edge
                .pop()
                .ok_or(ProofError::WrongLength { hashes: 0 })?;
            hash = node_hash(&left, &hash);
            level += 1;
            visit(level, self.size >> level, &hash);
        }
        self.edge.push(hash);
        self.size += width;
        debug_assert_eq!(self.edge.len(), self.size.count_ones() as usize);
        Ok(())
    }

    /// The root hash of the tree so far.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut hashes = self.edge.iter().rev();
        let Some(last) = hashes.next() else {
            return empty_root();
        };
        hashes.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// Where proof generation reads the hashes of complete subtrees.
pub trait HashSource {
    /// The hash of the complete subtree of `2^level` leaves starting at leaf
    /// `index << level`.
    ///
    /// # Errors
    /// [`ProofError::HashUnavailable`] when it is not stored.
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, ProofError>;

    /// The hash of leaves `[lo, hi)` (see the free function [`range_hash`]); a
    /// source may keep the ones it is asked for again and again (the right
    /// edge of its tree).
    ///
    /// # Errors
    /// The source's error.
    fn range(&self, lo: u64, hi: u64) -> Result<Hash, ProofError> {
        range_hash(self, lo, hi)
    }
}

/// The hash of leaves `[lo, hi)` of a tree, where `lo` is aligned the way RFC
/// 6962 splits are: built from at most one stored hash per level.
///
/// # Errors
/// The source's error.
pub fn range_hash<S: HashSource + ?Sized>(
    source: &S,
    lo: u64,
    hi: u64,
) -> Result<Hash, ProofError> {
    debug_assert!(lo < hi);
    let width = hi - lo;
    if width.is_power_of_two() {
        let level = width.trailing_zeros() as u8;
        debug_assert_eq!(lo % width, 0, "a complete subtree starts aligned");
        return source.subtree(level, lo >> level);
    }
    let k = split_point(width);
    let left = range_hash(source, lo, lo + k)?;
    let right = range_hash(source, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

fn check_size(size: u64) -> Result<(), ProofError> {
    if size > MAX_TREE_SIZE {
        return Err(ProofError::SizeOutOfRange {
            detail: format!("{size} exceeds {MAX_TREE_SIZE}"),
        });
    }
    Ok(())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162
/// PATH), bottom first.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`], [`ProofError::SizeOutOfRange`], or the
/// source's error.
pub fn inclusion_proof(
    source: &impl HashSource,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    check_size(size)?;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut lo, mut hi) = (0, size);
    let mut path = Vec::with_capacity(64);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            path.push(source.range(lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(source.range(lo, lo + k)?);
            lo += k;
        }
    }
    path.reverse();
    debug_assert!(path.len() <= MAX_INCLUSION_HASHES);
    Ok(path)
}

/// The consistency proof from the tree of `old_size` leaves to the tree of
/// `new_size` leaves (RFC 9162 SUBPROOF), bottom first. Empty when the sizes
/// are equal or the old tree is empty.
///
/// # Errors
/// [`ProofError::SizeOutOfRange`] when `old_size > new_size` or either is too
/// large; the source's error.
pub fn consistency_proof(
    source: &impl HashSource,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError> {
    check_size(new_size)?;
    if old_size > new_size {
        return Err(ProofError::SizeOutOfRange {
            detail: format!("old size {old_size} exceeds new size {new_size}"),
        });
    }
    let mut path = Vec::with_capacity(64);
    if old_size == 0 || old_size == new_size {
        return Ok(path);
    }
    let (mut lo, mut hi, mut m) = (0u64, new_size, old_size);
    let mut whole_old_tree = true;
    loop {
        let n = hi - lo;
        if m == n {
            if !whole_old_tree {
                path.push(source.range(lo, hi)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            path.push(source.range(lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(source.range(lo, lo + k)?);
            lo += k;
            m -= k;
            whole_old_tree = false;
        }
    }
    path.reverse();
    debug_assert!(path.len() <= MAX_CONSISTENCY_HASHES);
    Ok(path)
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves whose root
/// is `root` (RFC 9162, section 2.1.3.2).
///
/// # Errors
/// [`ProofError::IndexOutOfRange`], [`ProofError::SizeOutOfRange`],
/// [`ProofError::WrongLength`] or [`ProofError::RootMismatch`].
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    check_size(size)?;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    if proof.len() > MAX_INCLUSION_HASHES {
        return Err(ProofError::WrongLength {
            hashes: proof.len(),
        });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength {
                hashes: proof.len(),
            });
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
        return Err(ProofError::WrongLength {
            hashes: proof.len(),
        });
    }
    if !hashes_equal(&r, root) {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the
/// tree of `old_size` leaves with root `old_root` (RFC 9162, section 2.1.4.2).
/// Any tree extends the empty one, whose root must then be [`empty_root`].
///
/// # Errors
/// [`ProofError::SizeOutOfRange`], [`ProofError::WrongLength`] or
/// [`ProofError::RootMismatch`].
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    check_size(new_size)?;
    if old_size > new_size {
        return Err(ProofError::SizeOutOfRange {
            detail: format!("old size {old_size} exceeds new size {new_size}"),
        });
    }
    if proof.len() > MAX_CONSISTENCY_HASHES {
        return Err(ProofError::WrongLength {
            hashes: proof.len(),
        });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                hashes: proof.len(),
            });
        }
        let expected = if old_size == 0 {
            empty_root()
        } else {
            *new_root
        };
        if !hashes_equal(old_root, &expected) {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(ProofError::WrongLength { hashes: 0 });
    };
    // When the old tree is a complete subtree, its root is the implied first
    // element of the path.
    let (start, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (*first, rest)
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (start, start);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength {
                hashes: proof.len(),
            });
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
    if s != 0 {
        return Err(ProofError::WrongLength {
            hashes: proof.len(),
        });
    }
    if !hashes_equal(&fr, old_root) || !hashes_equal(&sr, new_root) {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Every complete subtree hash of a tree held in memory: level 0 holds the
/// leaf hashes. For tests, benchmarks and small trees; 64 bytes per leaf.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    edge: RightEdge,
}

impl MemoryTree {
    /// The empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one leaf hash.
    ///
    /// # Errors
    /// [`ProofError::SizeOutOfRange`] when the tree is full.
    pub fn append(&mut self, leaf: Hash) -> Result<(), ProofError> {
        let levels = &mut self.levels;
        self.edge.append_visiting(leaf, |level, index, hash| {
            let level = usize::from(level);
            if levels.len() <= level {
                levels.push(Vec::new());
            }
            debug_assert_eq!(levels[level].len() as u64, index);
            levels[level].push(*hash);
        })
    }

    /// Leaves so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.edge.size()
    }

    /// The current root.
    #[must_use]
    pub fn root(&self) -> Hash {
        self.edge.root()
    }
}

impl HashSource for MemoryTree {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(level))?.get(i))
            .copied()
            .ok_or_else(|| ProofError::HashUnavailable {
                level,
                index,
                detail: "not in the tree".to_owned(),
            })
    }
}
