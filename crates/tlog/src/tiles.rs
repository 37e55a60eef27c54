//! The tree on disk as C2SP tlog-tiles: a tile of level `L` holds up to 256
//! consecutive hashes of tree level `8 * L`; full tiles live at
//! `tile/<L>/<N>`, the partial right-edge tile of a tree size at
//! `tile/<L>/<N>.p/<W>`. A tile file is written once and never rewritten: a
//! writer that finds one already there checks that it holds the same bytes.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::merkle::{
    HASH_LEN_BYTES, Hash, HashSource, MAX_TREE_SIZE, ProofError, RightEdge, leaf_hash_32,
    leaves_into, parents_into, range_hash, subtree_of_256,
};

/// Tree levels covered by one tile level (C2SP tlog-tiles).
pub const TILE_HEIGHT: u8 = 8;

/// Hashes in a full tile: 2^[`TILE_HEIGHT`].
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// Bytes of a full tile.
pub const FULL_TILE_BYTES: usize = TILE_WIDTH as usize * HASH_LEN_BYTES;

/// Tiles kept in a [`TileStore`]'s cache before it is emptied: 4,096 tiles of
/// at most 8 KiB (32 MiB) bound the memory a long series of proofs takes.
pub const TILE_CACHE_MAX: usize = 4096;

/// The folder under a tile root that holds the hash tiles.
pub const TILE_DIR: &str = "tile";

/// Why tiles cannot be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TileError {
    /// The file system failed.
    #[error("tile {path}: {source}")]
    Io {
        /// The tile file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A tile already on disk holds other bytes than the tree gives: tiles are
    /// never rewritten, so this is refused.
    #[error("tile {path} exists with other contents")]
    Conflict {
        /// The tile file.
        path: PathBuf,
    },
    /// A tile file has a length that is not its width times 32 bytes.
    #[error("tile {path} holds {len_bytes} bytes, expected {expected_bytes}")]
    BadLength {
        /// The tile file.
        path: PathBuf,
        /// Its length.
        len_bytes: u64,
        /// The length its path implies.
        expected_bytes: u64,
    },
    /// The tree could not grow.
    #[error(transparent)]
    Tree(#[from] ProofError),
}

/// The path of a tile below the tile root, with `width` hashes (256 for a full
/// tile): `tile/<level>/<index>[.p/<width>]`, the index as 3-digit groups with
/// an `x` before each group but the last.
#[must_use]
pub fn tile_path(level: u8, index: u64, width: u64) -> String {
    debug_assert!((1..=TILE_WIDTH).contains(&width));
    let mut path = format!("{TILE_DIR}/{level}/{}", index_path(index));
    if width < TILE_WIDTH {
        path.push_str(&format!(".p/{width}"));
    }
    path
}

/// `1234067` as `x001/x234/067`, `5` as `005`.
fn index_path(index: u64) -> String {
    let mut groups = Vec::with_capacity(7);
    let mut rest = index;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, group)| {
            if i == last {
                format!("{group:03}")
            } else {
                format!("x{group:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Where tile bytes are kept: a directory, or memory for tests and benchmarks.
pub trait TileStorage {
    /// Writes a tile that must not exist yet with other bytes.
    ///
    /// # Errors
    /// [`TileError::Conflict`] or [`TileError::Io`].
    fn write_once(&self, path: &str, bytes: &[u8]) -> Result<(), TileError>;
    /// Reads a tile.
    ///
    /// # Errors
    /// [`TileError::Io`] (including a missing tile).
    fn read(&self, path: &str) -> Result<Vec<u8>, TileError>;
}

impl<T: TileStorage + ?Sized> TileStorage for &T {
    fn write_once(&self, path: &str, bytes: &[u8]) -> Result<(), TileError> {
        (**self).write_once(path, bytes)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, TileError> {
        (**self).read(path)
    }
}

/// Tiles in a directory (the tile root; tiles go under `tile/`).
#[derive(Clone, Debug)]
pub struct FsTiles {
    root: PathBuf,
}

impl FsTiles {
    /// Tiles below `root`; nothing is created until a tile is written.
    #[must_use]
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The tile root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl TileStorage for FsTiles {
    fn write_once(&self, path: &str, bytes: &[u8]) -> Result<(), TileError> {
        let full = self.root.join(path);
        let io = |source| TileError::Io {
            path: full.clone(),
            source,
        };
        if let Ok(existing) = std::fs::read(&full) {
            return if existing == bytes {
                Ok(())
            } else {
                Err(TileError::Conflict { path: full })
            };
        }
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        // Written to a temporary name and renamed, so a reader never sees half
        // a tile; the rename does not replace an existing file's contents with
        // other bytes because the check above ran first and tiles of one tree
        // are deterministic.
        let tmp = full.with_extension("tmp");
        {
            let mut file = std::fs::File::create(&tmp).map_err(io)?;
            file.write_all(bytes).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        std::fs::rename(&tmp, &full).map_err(io)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, TileError> {
        let full = self.root.join(path);
        std::fs::read(&full).map_err(|source| TileError::Io { path: full, source })
    }
}

/// Tiles in memory.
#[derive(Debug, Default)]
pub struct MemTiles {
    tiles: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemTiles {
    /// No tiles.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of tiles held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tiles.lock().map_or(0, |tiles| tiles.len())
    }

    /// Whether no tile is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TileStorage for MemTiles {
    fn write_once(&self, path: &str, bytes: &[u8]) -> Result<(), TileError> {
        let mut tiles = self.tiles.lock().map_err(|_| TileError::Io {
            path: PathBuf::from(path),
            source: std::io::Error::other("poisoned"),
        })?;
        match tiles.get(path) {
            Some(existing) if existing == bytes => Ok(()),
            Some(_) => Err(TileError::Conflict {
                path: PathBuf::from(path),
            }),
            None => {
                tiles.insert(path.to_owned(), bytes.to_vec());
                Ok(())
            }
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, TileError> {
        let tiles = self.tiles.lock().map_err(|_| TileError::Io {
            path: PathBuf::from(path),
            source: std::io::Error::other("poisoned"),
        })?;
        tiles.get(path).cloned().ok_or_else(|| TileError::Io {
            path: PathBuf::from(path),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }
}

/// Grows the tree leaf by leaf and writes each full tile as soon as it is
/// complete; [`TileWriter::checkpoint`] writes the partial tiles of the current
/// size. Memory: the right edge plus at most 255 pending hashes per tile level.
#[derive(Debug)]
pub struct TileWriter<S: TileStorage> {
    storage: S,
    edge: RightEdge,
    /// `pending[L]`: the hashes of tree level `8 L` after the last full tile.
    pending: Vec<Vec<Hash>>,
    error: Option<TileError>,
    /// Reused by [`TileWriter::append_entry_hashes`]: the leaf hashes and the
    /// roots of the full level-0 tiles of one batch.
    scratch_leaves: Vec<Hash>,
    scratch_roots: Vec<Hash>,
}

/// Keeps a hash the tree hands over if its level is a tile base (0, 8, 16,
/// ...), and writes the tile it completes.
fn keep_tile_hash<S: TileStorage>(
    pending: &mut Vec<Vec<Hash>>,
    storage: &S,
    level: u8,
    index: u64,
    hash: &Hash,
) -> Result<(), TileError> {
    if !level.is_multiple_of(TILE_HEIGHT) {
        return Ok(());
    }
    let tile_level = usize::from(level / TILE_HEIGHT);
    while pending.len() <= tile_level {
        pending.push(Vec::with_capacity(TILE_WIDTH as usize));
    }
    let row = &mut pending[tile_level];
    debug_assert_eq!(index % TILE_WIDTH, row.len() as u64);
    row.push(*hash);
    if row.len() as u64 == TILE_WIDTH {
        let path = tile_path(level / TILE_HEIGHT, index / TILE_WIDTH, TILE_WIDTH);
        let written = storage.write_once(&path, row.as_flattened());
        row.clear();
        written?;
    }
    Ok(())
}

/// The leaf hashes of `entries` (whole level-0 tiles of 256) into `leaves`
/// and each tile's root (the level-8 subtree hash) into `roots`.
fn hash_full_tiles(entries: &[Hash], leaves: &mut [Hash], roots: &mut [Hash]) {
    debug_assert_eq!(entries.len(), leaves.len());
    debug_assert_eq!(entries.len(), roots.len() * TILE_WIDTH as usize);
    let width = TILE_WIDTH as usize;
    for ((entries, leaves), root) in entries
        .chunks_exact(width)
        .zip(leaves.chunks_exact_mut(width))
        .zip(roots.iter_mut())
    {
        leaves_into(entries, leaves);
        *root = subtree_of_256(leaves);
    }
}

impl<S: TileStorage> TileWriter<S> {
    /// An empty tree writing into `storage`.
    pub fn new(storage: S) -> Self {
        Self {
            storage,
            edge: RightEdge::new(),
            pending: Vec::new(),
            error: None,
            scratch_leaves: Vec::new(),
            scratch_roots: Vec::new(),
        }
    }

    /// Resumes the tree of `size` leaves whose tiles (full ones, and the
    /// partial ones of exactly this size, as [`TileWriter::checkpoint`] wrote
    /// them) are in `storage`: the right edge and the pending hashes are read
    /// back from the tiles, nothing is rehashed but the edge's own root.
    ///
    /// # Errors
    /// [`TileError::Tree`] when a tile is missing or has the wrong length, or
    /// `size` is out of range.
    pub fn resume(storage: S, size: u64) -> Result<Self, TileError> {
        let (edge, pending) = {
            let store = TileStore::with_cache_capacity(&storage, size, 64)?;
            let mut edge = Vec::with_capacity(size.count_ones() as usize);
            let mut start = 0u64;
            for level in (0..64u8).rev() {
                if size & (1 << level) != 0 {
                    edge.push(store.subtree(level, start >> level)?);
                    start += 1 << level;
                }
            }
            let mut pending = Vec::new();
            let mut tile_level = 0u8;
            loop {
                let shift = u32::from(tile_level) * u32::from(TILE_HEIGHT);
                let count = if shift >= 64 { 0 } else { size >> shift };
                if count == 0 {
                    break;
                }
                let width = count % TILE_WIDTH;
                let mut row = Vec::with_capacity(TILE_WIDTH as usize);
                if width > 0 {
                    let tile = store.tile(tile_level, count / TILE_WIDTH)?;
                    let width = usize::try_from(width).unwrap_or(usize::MAX);
                    for i in 0..width {
                        row.push(*tile.get(0, i).ok_or(ProofError::HashUnavailable {
                            level: tile_level.saturating_mul(TILE_HEIGHT),
                            index: count,
                            detail: "the partial tile is too short".to_owned(),
                        })?);
                    }
                }
                pending.push(row);
                tile_level += 1;
            }
            (RightEdge::from_parts(size, edge)?, pending)
        };
        let writer = Self {
            storage,
            edge,
            pending,
            error: None,
            scratch_leaves: Vec::new(),
            scratch_roots: Vec::new(),
        };
        debug_assert_eq!(writer.size(), size);
        Ok(writer)
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

    /// The leaf hashes `[from, size)` of level 0 in tile order, read back from
    /// the tiles this writer wrote (for checking a log's earlier records
    /// against them): tile `tile_index` of level 0, full or (the last one)
    /// partial.
    ///
    /// # Errors
    /// [`TileError::Tree`] when a tile is missing or malformed.
    pub fn stored_leaves(&self, tile_index: u64) -> Result<Vec<Hash>, TileError> {
        let size = self.edge.size();
        let full = size / TILE_WIDTH;
        if tile_index < full {
            let bytes = self.storage.read(&tile_path(0, tile_index, TILE_WIDTH))?;
            if bytes.len() != FULL_TILE_BYTES {
                return Err(TileError::BadLength {
                    path: PathBuf::from(tile_path(0, tile_index, TILE_WIDTH)),
                    len_bytes: bytes.len() as u64,
                    expected_bytes: FULL_TILE_BYTES as u64,
                });
            }
            return Ok(bytes
                .chunks_exact(HASH_LEN_BYTES)
                .map(|c| {
                    let mut h = [0u8; HASH_LEN_BYTES];
                    h.copy_from_slice(c);
                    h
                })
                .collect());
        }
        if tile_index == full {
            return Ok(self.pending.first().cloned().unwrap_or_default());
        }
        Err(TileError::Tree(ProofError::IndexOutOfRange {
            index: tile_index * TILE_WIDTH,
            size,
        }))
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Appends one leaf hash, writing every tile it completes.
    ///
    /// # Errors
    /// A tile write failure or a full tree.
    pub fn append(&mut self, leaf: Hash) -> Result<(), TileError> {
        let pending = &mut self.pending;
        let storage = &self.storage;
        let error = &mut self.error;
        self.edge.append_visiting(leaf, |level, index, hash| {
            if error.is_none()
                && let Err(e) = keep_tile_hash(pending, storage, level, index, hash)
            {
                *error = Some(e);
            }
        })?;
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Appends one leaf per 32-byte leaf input in `entries` (the entry hashes
    /// of a log's records), as [`TileWriter::append`] of each
    /// [`leaf_hash`](crate::leaf_hash) would, but with the hashing inside every
    /// full level-0 tile (256 leaf hashes and 255 node hashes) shared out over
    /// up to `threads` threads; the level-0 tile is written straight from the
    /// batch and only its root climbs the tree. The leaves before the first
    /// tile boundary and after the last are appended one by one. Memory: the
    /// batch's leaf hashes, reused across calls.
    ///
    /// # Errors
    /// A tile write failure or a full tree; the leaves before the failing
    /// tile are in the tree.
    pub fn append_entry_hashes(
        &mut self,
        entries: &[Hash],
        threads: usize,
    ) -> Result<(), TileError> {
        let width = TILE_WIDTH as usize;
        let before = self.size();
        let head = usize::try_from((TILE_WIDTH - before % TILE_WIDTH) % TILE_WIDTH)
            .unwrap_or(usize::MAX)
            .min(entries.len());
        let (head, rest) = entries.split_at(head);
        for entry in head {
            self.append(leaf_hash_32(entry))?;
        }
        let tiles = rest.len() / width;
        let (body, tail) = rest.split_at(tiles * width);
        if tiles > 0 {
            debug_assert_eq!(self.size() % TILE_WIDTH, 0);
            let mut leaves = std::mem::take(&mut self.scratch_leaves);
            let mut roots = std::mem::take(&mut self.scratch_roots);
            leaves.resize(body.len(), [0; HASH_LEN_BYTES]);
            roots.resize(tiles, [0; HASH_LEN_BYTES]);
            let threads = threads.clamp(1, tiles);
            if threads == 1 {
                hash_full_tiles(body, &mut leaves, &mut roots);
            } else {
                let per = tiles.div_ceil(threads);
                std::thread::scope(|scope| {
                    for ((entries, leaves), roots) in body
                        .chunks(per * width)
                        .zip(leaves.chunks_mut(per * width))
                        .zip(roots.chunks_mut(per))
                    {
                        scope.spawn(move || hash_full_tiles(entries, leaves, roots));
                    }
                });
            }
            let written = self.append_hashed_tiles(&leaves, &roots);
            self.scratch_leaves = leaves;
            self.scratch_roots = roots;
            written?;
        }
        for entry in tail {
            self.append(leaf_hash_32(entry))?;
        }
        debug_assert_eq!(self.size(), before + entries.len() as u64);
        Ok(())
    }

    /// Writes whole level-0 tiles whose leaf hashes and roots are computed,
    /// and climbs the tree with each root.
    fn append_hashed_tiles(&mut self, leaves: &[Hash], roots: &[Hash]) -> Result<(), TileError> {
        for (tile, root) in leaves.chunks_exact(TILE_WIDTH as usize).zip(roots) {
            debug_assert!(self.pending.first().is_none_or(Vec::is_empty));
            let index = self.size() / TILE_WIDTH;
            self.storage
                .write_once(&tile_path(0, index, TILE_WIDTH), tile.as_flattened())?;
            let pending = &mut self.pending;
            let storage = &self.storage;
            let error = &mut self.error;
            self.edge
                .append_subtree_visiting(TILE_HEIGHT, *root, |level, index, hash| {
                    // The level-0 tile was written above; its root is the
                    // first hash of tile level 1.
                    if error.is_none()
                        && let Err(e) = keep_tile_hash(pending, storage, level, index, hash)
                    {
                        *error = Some(e);
                    }
                })?;
            if let Some(e) = self.error.take() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes the partial tiles of the current size (the full ones are already
    /// written) and returns the size and root.
    ///
    /// # Errors
    /// A tile write failure.
    pub fn checkpoint(&self) -> Result<(u64, Hash), TileError> {
        let size = self.edge.size();
        for (tile_level, row) in self.pending.iter().enumerate() {
            if row.is_empty() {
                continue;
            }
            let level = u8::try_from(tile_level).unwrap_or(u8::MAX);
            let count = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
            debug_assert_eq!(count % TILE_WIDTH, row.len() as u64);
            let path = tile_path(level, count / TILE_WIDTH, row.len() as u64);
            self.storage.write_once(&path, row.as_flattened())?;
        }
        Ok((size, self.edge.root()))
    }
}

/// Hash slots of an expanded tile: the 256 hashes of its base level, then the
/// 128 of the level above, and so on up to its one root: 511.
const EXPANDED_SLOTS: usize = 2 * TILE_WIDTH as usize - 1;

/// Where the hashes of height `h` (0..=8) above a tile's base start in an
/// expanded tile.
const fn expanded_offset(height: u8) -> usize {
    // 256 + 128 + ... over the heights below `height`.
    (2 * TILE_WIDTH as usize) - ((2 * TILE_WIDTH as usize) >> height)
}

/// A tile with every complete subtree inside it hashed once when it is read:
/// `hashes[expanded_offset(h) + i]` is the `i`-th subtree of height `h`, for
/// the `width >> h` complete ones. A proof then reads each hash it needs and
/// recomputes none.
#[derive(Debug)]
struct ExpandedTile {
    width: usize,
    hashes: Box<[Hash]>,
}

impl ExpandedTile {
    fn new(base: &[u8]) -> Self {
        debug_assert_eq!(base.len() % HASH_LEN_BYTES, 0);
        let width = base.len() / HASH_LEN_BYTES;
        debug_assert!((1..=TILE_WIDTH as usize).contains(&width));
        let mut hashes = vec![[0u8; HASH_LEN_BYTES]; EXPANDED_SLOTS].into_boxed_slice();
        for (slot, chunk) in hashes.iter_mut().zip(base.chunks_exact(HASH_LEN_BYTES)) {
            slot.copy_from_slice(chunk);
        }
        for height in 1..=TILE_HEIGHT {
            let below = expanded_offset(height - 1);
            let here = expanded_offset(height);
            let count = width >> height;
            let (lower, upper) = hashes.split_at_mut(here);
            parents_into(&lower[below..below + 2 * count], &mut upper[..count]);
        }
        Self { width, hashes }
    }

    /// The `i`-th complete subtree of `height` in the tile, if it is complete.
    fn get(&self, height: u8, i: usize) -> Option<&Hash> {
        debug_assert!(height <= TILE_HEIGHT);
        if i >= self.width >> height {
            return None;
        }
        self.hashes.get(expanded_offset(height) + i)
    }
}

/// Reads the complete subtree hashes of a tree of a given size from its tiles,
/// for proof generation. Each tile read is expanded once (every complete
/// subtree inside it hashed) and kept, shared, in a bounded cache, so a proof
/// from cached tiles only looks hashes up.
#[derive(Debug)]
pub struct TileStore<S: TileStorage> {
    storage: S,
    size: u64,
    capacity: usize,
    cache: Mutex<HashMap<(u8, u64), Arc<ExpandedTile>, KeyHasher>>,
    /// Hashes of the ranges `[lo, size)` that are not complete subtrees: the
    /// right edge, the same for every proof of this size (at most 63).
    edge: Mutex<Vec<(u64, Hash)>>,
}

/// A multiply-shift hasher for the cache's tile coordinates, cheaper than the
/// default SipHash. Keys a caller picks to collide cost at most a scan of the
/// bounded cache ([`TILE_CACHE_MAX`] entries by default).
#[derive(Clone, Copy, Debug, Default)]
struct KeyHasher;

impl std::hash::BuildHasher for KeyHasher {
    type Hasher = MulHasher;
    fn build_hasher(&self) -> MulHasher {
        MulHasher(0)
    }
}

/// The hasher of [`KeyHasher`].
#[derive(Debug)]
struct MulHasher(u64);

impl std::hash::Hasher for MulHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u8(&mut self, value: u8) {
        self.write_u64(u64::from(value));
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl<S: TileStorage> TileStore<S> {
    /// The tree of `size` leaves stored in `storage`, with a cache of
    /// [`TILE_CACHE_MAX`] tiles.
    ///
    /// # Errors
    /// [`ProofError::SizeOutOfRange`] above [`MAX_TREE_SIZE`].
    pub fn new(storage: S, size: u64) -> Result<Self, ProofError> {
        Self::with_cache_capacity(storage, size, TILE_CACHE_MAX)
    }

    /// As [`TileStore::new`], keeping at most `capacity` tiles (at least one)
    /// in memory, each 511 hashes (16 KiB) once expanded.
    ///
    /// # Errors
    /// [`ProofError::SizeOutOfRange`] above [`MAX_TREE_SIZE`].
    pub fn with_cache_capacity(storage: S, size: u64, capacity: usize) -> Result<Self, ProofError> {
        if size > MAX_TREE_SIZE {
            return Err(ProofError::SizeOutOfRange {
                detail: format!("{size} exceeds {MAX_TREE_SIZE}"),
            });
        }
        Ok(Self {
            storage,
            size,
            capacity: capacity.max(1),
            cache: Mutex::new(HashMap::with_hasher(KeyHasher)),
            edge: Mutex::new(Vec::new()),
        })
    }

    /// The tree size the store reads.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Tile (`tile_level`, `index`) as of this tree size, expanded.
    fn tile(&self, tile_level: u8, index: u64) -> Result<Arc<ExpandedTile>, ProofError> {
        let unavailable = |detail: String| ProofError::HashUnavailable {
            level: tile_level.saturating_mul(TILE_HEIGHT),
            index,
            detail,
        };
        if let Ok(cache) = self.cache.lock()
            && let Some(tile) = cache.get(&(tile_level, index))
        {
            return Ok(Arc::clone(tile));
        }
        let shift = u32::from(tile_level) * u32::from(TILE_HEIGHT);
        let count = if shift >= 64 { 0 } else { self.size >> shift };
        let full_tiles = count / TILE_WIDTH;
        let width = if index < full_tiles {
            TILE_WIDTH
        } else if index == full_tiles && count % TILE_WIDTH != 0 {
            count % TILE_WIDTH
        } else {
            return Err(unavailable(format!(
                "beyond the tree of size {}",
                self.size
            )));
        };
        let path = tile_path(tile_level, index, width);
        let bytes = self
            .storage
            .read(&path)
            .map_err(|e| unavailable(e.to_string()))?;
        let expected = width as usize * HASH_LEN_BYTES;
        if bytes.len() != expected {
            return Err(unavailable(format!(
                "{path} holds {} bytes, expected {expected}",
                bytes.len()
            )));
        }
        let tile = Arc::new(ExpandedTile::new(&bytes));
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= self.capacity {
                cache.clear();
            }
            cache.insert((tile_level, index), Arc::clone(&tile));
        }
        Ok(tile)
    }
}

impl<S: TileStorage> HashSource for TileStore<S> {
    fn range(&self, lo: u64, hi: u64) -> Result<Hash, ProofError> {
        if hi != self.size || (hi - lo).is_power_of_two() {
            return range_hash(self, lo, hi);
        }
        if let Ok(edge) = self.edge.lock()
            && let Some((_, hash)) = edge.iter().find(|(start, _)| *start == lo)
        {
            return Ok(*hash);
        }
        let hash = range_hash(self, lo, hi)?;
        if let Ok(mut edge) = self.edge.lock() {
            // One entry per split along the right edge: at most 63; the bound
            // is a guard, not a policy.
            if edge.len() < 64 {
                edge.push((lo, hash));
            }
        }
        Ok(hash)
    }

    fn subtree(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        let place = self.locate(level, index)?;
        // A cached tile is read under the lock: one lookup, no reference count
        // taken and dropped.
        if let Ok(cache) = self.cache.lock()
            && let Some(tile) = cache.get(&place.tile)
        {
            return place.read(tile);
        }
        let tile = self.tile(place.tile.0, place.tile.1)?;
        place.read(&tile)
    }
}

/// Where a complete subtree's hash lies in the tiles.
struct Place {
    level: u8,
    index: u64,
    /// (tile level, tile index).
    tile: (u8, u64),
    /// The subtree's height inside its tile, 0 to 7.
    height: u8,
    /// Its position among the tile's hashes of that height.
    position: usize,
}

impl Place {
    fn read(&self, tile: &ExpandedTile) -> Result<Hash, ProofError> {
        tile.get(self.height, self.position)
            .copied()
            .ok_or_else(|| ProofError::HashUnavailable {
                level: self.level,
                index: self.index,
                detail: "the tile is too short".to_owned(),
            })
    }
}

impl<S: TileStorage> TileStore<S> {
    /// The tile and slot of subtree `(level, index)`, which must be complete
    /// in this store's tree.
    fn locate(&self, level: u8, index: u64) -> Result<Place, ProofError> {
        let end = index
            .checked_add(1)
            .and_then(|i| i.checked_shl(u32::from(level)))
            .filter(|end| end >> level == index + 1);
        if end.is_none_or(|end| end > self.size) {
            return Err(ProofError::HashUnavailable {
                level,
                index,
                detail: format!("not complete in the tree of size {}", self.size),
            });
        }
        // The subtree is the `index mod (256 >> height)`-th one of its height
        // inside tile `index >> (8 - height)` of its tile level.
        let height = level % TILE_HEIGHT;
        let per_tile = TILE_WIDTH >> height;
        Ok(Place {
            level,
            index,
            tile: (level / TILE_HEIGHT, index / per_tile),
            height,
            position: usize::try_from(index % per_tile).unwrap_or(usize::MAX),
        })
    }
}
