//! The tree on disk as C2SP tlog-tiles: a tile of level `L` holds up to 256
//! consecutive hashes of tree level `8 * L`; full tiles live at
//! `tile/<L>/<N>`, the partial right-edge tile of a tree size at
//! `tile/<L>/<N>.p/<W>`. A tile file is written once and never rewritten: a
//! writer that finds one already there checks that it holds the same bytes.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::merkle::{
    HASH_LEN_BYTES, Hash, HashSource, MAX_TREE_SIZE, ProofError, RightEdge, node_hash,
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
}

impl<S: TileStorage> TileWriter<S> {
    /// An empty tree writing into `storage`.
    pub fn new(storage: S) -> Self {
        Self {
            storage,
            edge: RightEdge::new(),
            pending: Vec::new(),
            error: None,
        }
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
            if level % TILE_HEIGHT != 0 || error.is_some() {
                return;
            }
            let tile_level = usize::from(level / TILE_HEIGHT);
            if pending.len() <= tile_level {
                pending.push(Vec::with_capacity(TILE_WIDTH as usize));
            }
            let row = &mut pending[tile_level];
            debug_assert_eq!(index % TILE_WIDTH, row.len() as u64);
            row.push(*hash);
            if row.len() as u64 == TILE_WIDTH {
                let path = tile_path(level / TILE_HEIGHT, index / TILE_WIDTH, TILE_WIDTH);
                if let Err(e) = storage.write_once(&path, &row.concat()) {
                    *error = Some(e);
                }
                row.clear();
            }
        })?;
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
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
            self.storage.write_once(&path, &row.concat())?;
        }
        Ok((size, self.edge.root()))
    }
}

/// Reads the complete subtree hashes of a tree of a given size from its tiles,
/// for proof generation.
#[derive(Debug)]
pub struct TileStore<S: TileStorage> {
    storage: S,
    size: u64,
    cache: Mutex<HashMap<(u8, u64), Vec<Hash>>>,
}

impl<S: TileStorage> TileStore<S> {
    /// The tree of `size` leaves stored in `storage`.
    ///
    /// # Errors
    /// [`ProofError::SizeOutOfRange`] above [`MAX_TREE_SIZE`].
    pub fn new(storage: S, size: u64) -> Result<Self, ProofError> {
        if size > MAX_TREE_SIZE {
            return Err(ProofError::SizeOutOfRange {
                detail: format!("{size} exceeds {MAX_TREE_SIZE}"),
            });
        }
        Ok(Self {
            storage,
            size,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The tree size the store reads.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The hashes of tile (`tile_level`, `index`) as of this tree size.
    fn tile(&self, tile_level: u8, index: u64) -> Result<Vec<Hash>, ProofError> {
        let unavailable = |detail: String| ProofError::HashUnavailable {
            level: tile_level.saturating_mul(TILE_HEIGHT),
            index,
            detail,
        };
        if let Ok(cache) = self.cache.lock()
            && let Some(tile) = cache.get(&(tile_level, index))
        {
            return Ok(tile.clone());
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
        let hashes: Vec<Hash> = bytes
            .chunks_exact(HASH_LEN_BYTES)
            .map(|chunk| {
                let mut hash = [0u8; HASH_LEN_BYTES];
                hash.copy_from_slice(chunk);
                hash
            })
            .collect();
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= TILE_CACHE_MAX {
                cache.clear();
            }
            cache.insert((tile_level, index), hashes.clone());
        }
        Ok(hashes)
    }
}

impl<S: TileStorage> HashSource for TileStore<S> {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        let tile_level = level / TILE_HEIGHT;
        let height = level % TILE_HEIGHT;
        // The subtree spans 2^height consecutive hashes of the tile's base level,
        // all in one tile because tiles are aligned to 2^8.
        let first = index << height;
        let span = 1u64 << height;
        if (index.checked_add(1).map(|i| i << level)).is_none_or(|end| end > self.size) {
            return Err(ProofError::HashUnavailable {
                level,
                index,
                detail: format!("not complete in the tree of size {}", self.size),
            });
        }
        let tile = self.tile(tile_level, first / TILE_WIDTH)?;
        let start = usize::try_from(first % TILE_WIDTH).unwrap_or(usize::MAX);
        let end = start + usize::try_from(span).unwrap_or(usize::MAX);
        let Some(base) = tile.get(start..end) else {
            return Err(ProofError::HashUnavailable {
                level,
                index,
                detail: "the tile is too short".to_owned(),
            });
        };
        let mut row = base.to_vec();
        while row.len() > 1 {
            row = row
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
        }
        Ok(row[0])
    }
}
