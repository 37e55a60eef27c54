//! Where the bytes go: a small [`Storage`] trait for one segment, a [`Directory`]
//! trait for a set of segments, real-file implementations, and in-memory ones that
//! inject torn writes, short writes, failed syncs and bit flips.
//!
//! The in-memory store models a disk with a page cache: writes land in `data`,
//! `sync_data` copies `data` to `durable`, and [`MemDisk::crash`] throws away what
//! was not synced (or keeps a torn part of it). Tests written once against these
//! traits run on both.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::WalError;

/// Makes a segment's written bytes durable from a thread other than the one
/// writing it, so that [`DurableWal`](crate::DurableWal) can overlap a batch's
/// sync with the next batch's (see [`Storage::sync_handle`]).
pub trait SyncHandle: Send + Sync + std::fmt::Debug + 'static {
    /// Makes every byte written to the segment before this call durable
    /// (fdatasync of the same file).
    ///
    /// # Errors
    /// The storage's own failure; nothing is then known to be durable.
    fn sync_data(&self) -> io::Result<()>;
}

/// One segment's bytes: append-only writes, positional reads, sync and truncate.
pub trait Storage: Send + std::fmt::Debug + 'static {
    /// A handle that syncs this storage from another thread: a sync through it
    /// covers every byte appended before the sync began, like
    /// [`Storage::sync_data`]. `None` (the default) when the storage has none;
    /// the group-commit writer then syncs inline, one sync at a time.
    ///
    /// # Errors
    /// The storage's own failure to make one.
    fn sync_handle(&self) -> io::Result<Option<Arc<dyn SyncHandle>>> {
        Ok(None)
    }

    /// Current length, in bytes.
    ///
    /// # Errors
    /// The storage's own failure.
    fn len_bytes(&mut self) -> io::Result<u64>;

    /// Reads up to `buf.len()` bytes at `offset_bytes`; returns how many were
    /// read (0 at the end).
    ///
    /// # Errors
    /// The storage's own failure.
    fn read_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Appends all of `bytes` at the end, or fails having written a prefix.
    ///
    /// # Errors
    /// The storage's own failure (after which an unknown prefix may be written).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Makes everything appended so far durable (fdatasync).
    ///
    /// # Errors
    /// The storage's own failure; nothing is then known to be durable.
    fn sync_data(&mut self) -> io::Result<()>;

    /// Cuts the storage to `len_bytes`.
    ///
    /// # Errors
    /// The storage's own failure.
    fn truncate(&mut self, len_bytes: u64) -> io::Result<()>;

    /// Overwrites (or extends) the bytes at `offset_bytes` with `bytes`. Only the
    /// acknowledgement watermark is written in place; segments are append-only.
    ///
    /// # Errors
    /// The storage's own failure (after which an unknown part may be written).
    fn write_at(&mut self, offset_bytes: u64, bytes: &[u8]) -> io::Result<()>;
}

/// A set of segments named by their first sequence number, with one writer lock.
pub trait Directory: Send + Sync + std::fmt::Debug + 'static {
    /// The storage of one segment.
    type Storage: Storage;
    /// Holds the writer lock until dropped.
    type Guard: Send + 'static;

    /// Takes the exclusive writer lock.
    ///
    /// # Errors
    /// [`WalError::Locked`] when another writer holds it.
    fn lock(&self) -> Result<Self::Guard, WalError>;

    /// First sequence numbers of the segments present, ascending.
    ///
    /// # Errors
    /// The storage's own failure.
    fn list_segments(&self) -> io::Result<Vec<u64>>;

    /// Creates segment `first_sequence` holding exactly `header`, durably and
    /// atomically (it is either absent or complete after a crash).
    ///
    /// # Errors
    /// The storage's own failure, or the segment exists.
    fn create_segment(&self, first_sequence: u64, header: &[u8]) -> io::Result<Self::Storage>;

    /// Opens an existing segment.
    ///
    /// # Errors
    /// The storage's own failure, or the segment does not exist.
    fn open_segment(&self, first_sequence: u64) -> io::Result<Self::Storage>;

    /// Removes segment `first_sequence`; durable after [`Directory::sync`].
    ///
    /// # Errors
    /// The storage's own failure, or the segment does not exist.
    fn remove_segment(&self, first_sequence: u64) -> io::Result<()>;

    /// Makes created and removed entries durable (syncs the directory).
    ///
    /// # Errors
    /// The storage's own failure.
    fn sync(&self) -> io::Result<()>;

    /// Opens the acknowledgement watermark file; `None` when there is none.
    ///
    /// # Errors
    /// The storage's own failure.
    fn open_ack(&self) -> io::Result<Option<Self::Storage>>;

    /// Creates the acknowledgement watermark file holding exactly `bytes`,
    /// durably and atomically, replacing any existing one.
    ///
    /// # Errors
    /// The storage's own failure.
    fn create_ack(&self, bytes: &[u8]) -> io::Result<Self::Storage>;
}

/// The path of a single log file's acknowledgement watermark: `<file>.ack`.
#[must_use]
pub fn ack_path(log_path: &Path) -> PathBuf {
    let mut name = log_path.as_os_str().to_owned();
    name.push(".");
    name.push(ACK_EXTENSION);
    PathBuf::from(name)
}

/// Extension of a single log file's watermark sidecar.
pub const ACK_EXTENSION: &str = "ack";

/// Name of the acknowledgement watermark file in a segment directory.
pub const ACK_FILE_NAME: &str = "ACK";

/// Writes `bytes` under a temporary name, syncs, renames to `final_path` and
/// syncs the directory: a crash leaves the old file (or none) or the whole new one.
fn create_atomically(final_path: &Path, bytes: &[u8]) -> io::Result<FileStorage> {
    let mut temp_name = final_path.as_os_str().to_owned();
    temp_name.push(".tmp");
    let temp_path = PathBuf::from(temp_name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp_path)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    std::fs::rename(&temp_path, final_path)?;
    sync_parent_dir(final_path)?;
    Ok(FileStorage {
        file,
        path: final_path.to_path_buf(),
    })
}

impl FileStorage {
    /// Creates (or replaces) the watermark sidecar of the log file at `log_path`
    /// holding exactly `bytes`, atomically and durably.
    ///
    /// # Errors
    /// An I/O error.
    pub fn create_ack_for(log_path: &Path, bytes: &[u8]) -> io::Result<Self> {
        create_atomically(&ack_path(log_path), bytes)
    }

    /// Opens the watermark sidecar of the log file at `log_path`; `None` when
    /// there is none.
    ///
    /// # Errors
    /// An I/O error other than "not found".
    pub fn open_ack_for(log_path: &Path) -> io::Result<Option<Self>> {
        let path = ack_path(log_path);
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => Ok(Some(Self { file, path })),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// A segment in a real file.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
}

impl FileStorage {
    /// Creates a new file (failing if it exists), takes its writer lock and makes
    /// its directory entry durable.
    ///
    /// # Errors
    /// [`WalError::AlreadyExists`], [`WalError::Locked`] or an I/O error.
    pub fn create_locked(path: &Path) -> Result<Self, WalError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|error| match error.kind() {
                io::ErrorKind::AlreadyExists => WalError::AlreadyExists {
                    path: path.to_path_buf(),
                },
                _ => WalError::Io(error),
            })?;
        lock_file(&file, path)?;
        sync_parent_dir(path)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing file for writing and takes its writer lock.
    ///
    /// # Errors
    /// [`WalError::NotFound`], [`WalError::Locked`] or an I/O error.
    pub fn open_locked(path: &Path) -> Result<Self, WalError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|error| not_found_or_io(error, path))?;
        lock_file(&file, path)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing file read-only, without a lock.
    ///
    /// # Errors
    /// [`WalError::NotFound`] or an I/O error.
    pub fn open_read(path: &Path) -> Result<Self, WalError> {
        let file = File::open(path).map_err(|error| not_found_or_io(error, path))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn not_found_or_io(error: io::Error, path: &Path) -> WalError {
    match error.kind() {
        io::ErrorKind::NotFound => WalError::NotFound {
            path: path.to_path_buf(),
        },
        _ => WalError::Io(error),
    }
}

fn lock_file(file: &File, path: &Path) -> Result<(), WalError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked {
            path: path.to_path_buf(),
        }),
        Err(TryLockError::Error(error)) => Err(WalError::Io(error)),
    }
}

/// Makes a newly created or renamed directory entry durable.
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    sync_dir(parent)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Opening a directory read-only and syncing it is how POSIX makes an entry
    // durable; other platforms do not allow it and do not need it.
    if cfg!(unix) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Syncs a [`FileStorage`]'s file through a second descriptor of it.
#[derive(Debug)]
struct FileSyncHandle(File);

impl SyncHandle for FileSyncHandle {
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for FileStorage {
    fn sync_handle(&self) -> io::Result<Option<Arc<dyn SyncHandle>>> {
        Ok(Some(Arc::new(FileSyncHandle(self.file.try_clone()?))))
    }

    fn len_bytes(&mut self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.file.seek(SeekFrom::Start(offset_bytes))?;
        loop {
            match self.file.read(buf) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.seek(SeekFrom::End(0))?;
        self.file.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len_bytes: u64) -> io::Result<()> {
        self.file.set_len(len_bytes)
    }

    fn write_at(&mut self, offset_bytes: u64, bytes: &[u8]) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(offset_bytes))?;
        self.file.write_all(bytes)
    }
}

/// A directory of segment files `<first sequence, 20 digits>.cwal`, locked through
/// a `LOCK` file.
#[derive(Debug, Clone)]
pub struct FsDirectory {
    path: PathBuf,
}

/// Extension of segment files.
pub const SEGMENT_EXTENSION: &str = "cwal";
/// Name of the lock file in a segment directory.
pub const LOCK_FILE_NAME: &str = "LOCK";
const SEGMENT_NAME_DIGITS: usize = 20;

impl FsDirectory {
    /// Uses `path` (created if missing) as a segment directory.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(path: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// The path of segment `first_sequence`.
    #[must_use]
    pub fn segment_path(&self, first_sequence: u64) -> PathBuf {
        self.path
            .join(format!("{first_sequence:020}.{SEGMENT_EXTENSION}"))
    }
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_EXTENSION)?.strip_suffix('.')?;
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

impl Directory for FsDirectory {
    type Storage = FileStorage;
    type Guard = File;

    fn lock(&self) -> Result<File, WalError> {
        let path = self.path.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        lock_file(&file, &self.path)?;
        Ok(file)
    }

    fn list_segments(&self) -> io::Result<Vec<u64>> {
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            if let Some(first) = entry.file_name().to_str().and_then(parse_segment_name) {
                segments.push(first);
            }
        }
        segments.sort_unstable();
        Ok(segments)
    }

    fn create_segment(&self, first_sequence: u64, header: &[u8]) -> io::Result<FileStorage> {
        let final_path = self.segment_path(first_sequence);
        if final_path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("segment {} exists", final_path.display()),
            ));
        }
        // Write the header under a temporary name, sync, then rename: a crash
        // leaves either no segment or a complete header, never half of one.
        create_atomically(&final_path, header)
    }

    fn open_segment(&self, first_sequence: u64) -> io::Result<FileStorage> {
        let path = self.segment_path(first_sequence);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok(FileStorage { file, path })
    }

    fn remove_segment(&self, first_sequence: u64) -> io::Result<()> {
        std::fs::remove_file(self.segment_path(first_sequence))
    }

    fn sync(&self) -> io::Result<()> {
        sync_dir(&self.path)
    }

    fn open_ack(&self) -> io::Result<Option<FileStorage>> {
        let path = self.path.join(ACK_FILE_NAME);
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => Ok(Some(FileStorage { file, path })),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn create_ack(&self, bytes: &[u8]) -> io::Result<FileStorage> {
        create_atomically(&self.path.join(ACK_FILE_NAME), bytes)
    }
}

/// How much of the unsynced data survives a simulated crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Everything written since the last successful sync is lost.
    DropUnsynced,
    /// The first `n` unsynced bytes survive (a torn write).
    KeepUnsyncedPrefix(u64),
    /// The file grows by up to `n` of the unsynced bytes, but they read as zeros
    /// (a file system that extended the file before the data landed).
    ZeroFillUnsynced(u64),
}

#[derive(Debug, Default)]
struct MemState {
    data: Vec<u8>,
    durable: Vec<u8>,
    locked: bool,
    failing_syncs: u32,
    failing_writes: u32,
    short_write_bytes: Option<usize>,
    holding_syncs: bool,
    panicking_syncs: u32,
}

/// An in-memory disk holding one segment, with fault injection. Clones share the
/// same bytes.
#[derive(Debug, Clone, Default)]
pub struct MemDisk {
    state: Arc<Mutex<MemState>>,
}

impl MemDisk {
    /// An empty disk.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A disk holding `bytes`, all durable.
    #[must_use]
    pub fn with_bytes(bytes: Vec<u8>) -> Self {
        let disk = Self::new();
        disk.set_bytes(bytes);
        disk
    }

    /// Takes the writer lock and returns a storage handle that holds it.
    ///
    /// # Errors
    /// [`WalError::Locked`] while another handle holds the lock.
    pub fn lock(&self) -> Result<MemStorage, WalError> {
        let mut state = self.state.lock();
        if state.locked {
            return Err(WalError::Locked {
                path: PathBuf::from("<memory>"),
            });
        }
        state.locked = true;
        Ok(MemStorage {
            disk: self.clone(),
            holds_lock: true,
        })
    }

    /// A storage handle without the lock, for readers.
    #[must_use]
    pub fn reader(&self) -> MemStorage {
        MemStorage {
            disk: self.clone(),
            holds_lock: false,
        }
    }

    /// The current bytes (as a reader would see them now).
    #[must_use]
    pub fn bytes(&self) -> Vec<u8> {
        self.state.lock().data.clone()
    }

    /// Replaces the content; the new content is durable.
    pub fn set_bytes(&self, bytes: Vec<u8>) {
        let mut state = self.state.lock();
        state.durable.clone_from(&bytes);
        state.data = bytes;
    }

    /// Flips bit `bit` (0..8) of the byte at `offset_bytes`, in the current and the
    /// durable content. Out-of-range offsets are ignored.
    pub fn flip_bit(&self, offset_bytes: u64, bit: u8) {
        let mut state = self.state.lock();
        let mask = 1u8 << (bit % 8);
        let Ok(index) = usize::try_from(offset_bytes) else {
            return;
        };
        if let Some(byte) = state.data.get_mut(index) {
            *byte ^= mask;
        }
        if let Some(byte) = state.durable.get_mut(index) {
            *byte ^= mask;
        }
    }

    /// The next `count` syncs fail (and make nothing durable).
    pub fn fail_next_syncs(&self, count: u32) {
        self.state.lock().failing_syncs = count;
    }

    /// While `hold` is true, every sync waits (a slow device; tests use it to keep a
    /// record's durability pending); `false` lets the waiting syncs go on.
    pub fn hold_syncs(&self, hold: bool) {
        self.state.lock().holding_syncs = hold;
    }

    /// The next `count` syncs panic (and make nothing durable): a bug in a storage
    /// layer or in the thread calling it, so a test can check that a
    /// [`DurableWal`](crate::DurableWal) whose background thread panics poisons
    /// itself ([`WalError::ThreadPanicked`]) instead of leaving its appenders
    /// waiting. Counted after [`MemDisk::hold_syncs`] lets a sync go on, before
    /// [`MemDisk::fail_next_syncs`].
    pub fn panic_next_syncs(&self, count: u32) {
        self.state.lock().panicking_syncs = count;
    }

    /// The next `count` appends fail without writing anything.
    pub fn fail_next_writes(&self, count: u32) {
        self.state.lock().failing_writes = count;
    }

    /// The next append writes only its first `len_bytes` bytes, then fails.
    pub fn short_write_next(&self, len_bytes: usize) {
        self.state.lock().short_write_bytes = Some(len_bytes);
    }

    /// Simulates power loss: the content becomes what was durable, plus what
    /// `mode` keeps of the unsynced bytes. The lock is released, as a dead
    /// process's would be.
    pub fn crash(&self, mode: CrashMode) {
        let mut state = self.state.lock();
        let durable_len = state.durable.len();
        let unsynced: Vec<u8> = if state.data.starts_with(&state.durable) {
            state.data.get(durable_len..).unwrap_or_default().to_vec()
        } else {
            Vec::new()
        };
        let mut next = state.durable.clone();
        match mode {
            CrashMode::DropUnsynced => {}
            CrashMode::KeepUnsyncedPrefix(n) => {
                let keep = usize::try_from(n).unwrap_or(usize::MAX).min(unsynced.len());
                next.extend_from_slice(unsynced.get(..keep).unwrap_or_default());
            }
            CrashMode::ZeroFillUnsynced(n) => {
                let zeros = usize::try_from(n).unwrap_or(usize::MAX).min(unsynced.len());
                next.resize(durable_len + zeros, 0);
            }
        }
        state.data.clone_from(&next);
        state.durable = next;
        state.locked = false;
    }

    /// Bytes written but not yet synced.
    #[must_use]
    pub fn unsynced_len_bytes(&self) -> u64 {
        let state = self.state.lock();
        state.data.len().saturating_sub(state.durable.len()) as u64
    }
}

/// A handle on a [`MemDisk`].
#[derive(Debug)]
pub struct MemStorage {
    disk: MemDisk,
    holds_lock: bool,
}

impl Drop for MemStorage {
    fn drop(&mut self) {
        if self.holds_lock {
            self.disk.state.lock().locked = false;
        }
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

impl SyncHandle for MemDisk {
    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        while state.holding_syncs {
            drop(state);
            std::thread::sleep(std::time::Duration::from_millis(1));
            state = self.state.lock();
        }
        if state.panicking_syncs > 0 {
            state.panicking_syncs -= 1;
            // Released first: the disk stays usable by whoever reads it next.
            drop(state);
            panic!("injected sync panic");
        }
        if state.failing_syncs > 0 {
            state.failing_syncs -= 1;
            return Err(injected("sync"));
        }
        state.durable = state.data.clone();
        Ok(())
    }
}

impl Storage for MemStorage {
    fn sync_handle(&self) -> io::Result<Option<Arc<dyn SyncHandle>>> {
        Ok(Some(Arc::new(self.disk.clone())))
    }

    fn len_bytes(&mut self) -> io::Result<u64> {
        Ok(self.disk.state.lock().data.len() as u64)
    }

    fn read_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        let state = self.disk.state.lock();
        let start = usize::try_from(offset_bytes).unwrap_or(usize::MAX);
        let available = state.data.get(start..).unwrap_or_default();
        let n = available.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(available.get(..n).unwrap_or_default());
        Ok(n)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.disk.state.lock();
        if state.failing_writes > 0 {
            state.failing_writes -= 1;
            return Err(injected("write"));
        }
        if let Some(limit) = state.short_write_bytes.take() {
            let n = limit.min(bytes.len());
            state
                .data
                .extend_from_slice(bytes.get(..n).unwrap_or_default());
            return Err(injected("short write"));
        }
        state.data.extend_from_slice(bytes);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        SyncHandle::sync_data(&self.disk)
    }

    fn truncate(&mut self, len_bytes: u64) -> io::Result<()> {
        let mut state = self.disk.state.lock();
        let len = usize::try_from(len_bytes).unwrap_or(usize::MAX);
        state.data.truncate(len);
        Ok(())
    }

    fn write_at(&mut self, offset_bytes: u64, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.disk.state.lock();
        if state.failing_writes > 0 {
            state.failing_writes -= 1;
            return Err(injected("write"));
        }
        let start = usize::try_from(offset_bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let end = start.saturating_add(bytes.len());
        if state.data.len() < end {
            state.data.resize(end, 0);
        }
        if let Some(target) = state.data.get_mut(start..end) {
            target.copy_from_slice(bytes);
        }
        Ok(())
    }
}

/// An in-memory segment directory of [`MemDisk`]s, for tests and simulations.
#[derive(Debug, Clone, Default)]
pub struct MemDirectory {
    inner: Arc<Mutex<MemDirState>>,
}

#[derive(Debug, Default)]
struct MemDirState {
    segments: BTreeMap<u64, MemDisk>,
    ack: Option<MemDisk>,
    locked: bool,
}

/// Holds a [`MemDirectory`]'s writer lock until dropped.
#[derive(Debug)]
pub struct MemDirGuard {
    inner: Arc<Mutex<MemDirState>>,
}

impl Drop for MemDirGuard {
    fn drop(&mut self) {
        self.inner.lock().locked = false;
    }
}

impl MemDirectory {
    /// An empty directory.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The disk of segment `first_sequence`, if present.
    #[must_use]
    pub fn segment(&self, first_sequence: u64) -> Option<MemDisk> {
        self.inner.lock().segments.get(&first_sequence).cloned()
    }

    /// Every segment's disk, by first sequence.
    #[must_use]
    pub fn segments(&self) -> Vec<(u64, MemDisk)> {
        self.inner
            .lock()
            .segments
            .iter()
            .map(|(first, disk)| (*first, disk.clone()))
            .collect()
    }

    /// The disk of the acknowledgement watermark file, if present.
    #[must_use]
    pub fn ack(&self) -> Option<MemDisk> {
        self.inner.lock().ack.clone()
    }

    /// Replaces (or, with `None`, removes) the watermark file.
    pub fn set_ack(&self, ack: Option<MemDisk>) {
        self.inner.lock().ack = ack;
    }

    /// Simulates power loss on every segment and the watermark, and releases the
    /// writer lock.
    pub fn crash(&self, mode: CrashMode) {
        let mut inner = self.inner.lock();
        for disk in inner.segments.values() {
            disk.crash(mode);
        }
        if let Some(ack) = &inner.ack {
            // The watermark is written in place: a crash keeps its synced bytes.
            ack.crash(CrashMode::DropUnsynced);
        }
        inner.locked = false;
    }
}

impl Directory for MemDirectory {
    type Storage = MemStorage;
    type Guard = MemDirGuard;

    fn lock(&self) -> Result<MemDirGuard, WalError> {
        let mut inner = self.inner.lock();
        if inner.locked {
            return Err(WalError::Locked {
                path: PathBuf::from("<memory directory>"),
            });
        }
        inner.locked = true;
        Ok(MemDirGuard {
            inner: Arc::clone(&self.inner),
        })
    }

    fn list_segments(&self) -> io::Result<Vec<u64>> {
        Ok(self.inner.lock().segments.keys().copied().collect())
    }

    fn create_segment(&self, first_sequence: u64, header: &[u8]) -> io::Result<MemStorage> {
        let mut inner = self.inner.lock();
        if inner.segments.contains_key(&first_sequence) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "segment exists",
            ));
        }
        let disk = MemDisk::with_bytes(header.to_vec());
        inner.segments.insert(first_sequence, disk.clone());
        Ok(disk.reader())
    }

    fn open_segment(&self, first_sequence: u64) -> io::Result<MemStorage> {
        self.inner
            .lock()
            .segments
            .get(&first_sequence)
            .map(MemDisk::reader)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such segment"))
    }

    fn remove_segment(&self, first_sequence: u64) -> io::Result<()> {
        self.inner
            .lock()
            .segments
            .remove(&first_sequence)
            .map(|_| ())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such segment"))
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn open_ack(&self) -> io::Result<Option<MemStorage>> {
        Ok(self.inner.lock().ack.as_ref().map(MemDisk::reader))
    }

    fn create_ack(&self, bytes: &[u8]) -> io::Result<MemStorage> {
        let disk = MemDisk::with_bytes(bytes.to_vec());
        self.inner.lock().ack = Some(disk.clone());
        Ok(disk.reader())
    }
}
