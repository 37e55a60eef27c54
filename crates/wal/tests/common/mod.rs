//! Helpers shared by the integration tests: a seeded RNG, temporary directories,
//! a test record type, and the storage backends every recovery test runs on.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use calybris_wal::WalError;
use calybris_wal::storage::{FileStorage, MemDisk, Storage};
use serde::{Deserialize, Serialize};

/// The workspace's seeded generator (SplitMix64, from `calybris-workload`: these tests
/// run from the published package too, so not from the unpublished testkit).
#[allow(unused_imports)]
pub use calybris_workload::SplitMix64 as Rng;

/// The seed for a randomised test: `CALYBRIS_SEED` if set (decimal or 0x-hex),
/// otherwise `default`.
pub fn seed(default: u64) -> u64 {
    calybris_workload::seed_from_env(default)
}

/// A directory under the system temp dir, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "calybris-wal-test-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The record type most tests log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rec {
    pub id: u64,
    pub name: String,
    pub data: Vec<u8>,
}

/// Waits until the watermark (written off the acknowledgement path, at most once per
/// `watermark_interval`) has caught up with everything acknowledged: only with a
/// short interval, a long one never catches up before the close. Panics after about
/// four seconds.
pub fn watermark_caught_up<D: calybris_wal::storage::Directory>(
    wal: &calybris_wal::DurableWal<Rec, D>,
) {
    for _ in 0..20_000 {
        if wal.watermarked_anchor() == wal.durable_anchor() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    panic!(
        "the watermark stays at {:?}, durable {:?}",
        wal.watermarked_anchor(),
        wal.durable_anchor()
    );
}

pub fn rec(id: u64) -> Rec {
    Rec {
        id,
        name: format!("record-{id}"),
        data: (0..(id % 7) as u8).collect(),
    }
}

/// A place one log lives, on a real file or in memory. Every recovery test is
/// written once against this trait and run on both.
pub trait Backend {
    type S: Storage;
    fn new(tag: &str) -> Self;
    /// A new, locked, empty storage.
    fn create(&self) -> Result<Self::S, WalError>;
    /// The existing storage, locked for writing.
    fn open(&self) -> Result<Self::S, WalError>;
    /// The existing storage, for reading.
    fn reader(&self) -> Self::S;
    fn bytes(&self) -> Vec<u8>;
    fn set_bytes(&self, bytes: Vec<u8>);
}

pub struct FileBackend {
    _dir: TempDir,
    path: PathBuf,
}

impl Backend for FileBackend {
    type S = FileStorage;

    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let path = dir.path().join("log.cwal");
        Self { _dir: dir, path }
    }

    fn create(&self) -> Result<FileStorage, WalError> {
        FileStorage::create_locked(&self.path)
    }

    fn open(&self) -> Result<FileStorage, WalError> {
        FileStorage::open_locked(&self.path)
    }

    fn reader(&self) -> FileStorage {
        FileStorage::open_read(&self.path).expect("open log for reading")
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).expect("read log")
    }

    fn set_bytes(&self, bytes: Vec<u8>) {
        std::fs::write(&self.path, bytes).expect("write log");
    }
}

pub struct MemBackend {
    disk: MemDisk,
}

impl Backend for MemBackend {
    type S = calybris_wal::storage::MemStorage;

    fn new(_tag: &str) -> Self {
        Self {
            disk: MemDisk::new(),
        }
    }

    fn create(&self) -> Result<Self::S, WalError> {
        self.disk.lock()
    }

    fn open(&self) -> Result<Self::S, WalError> {
        self.disk.lock()
    }

    fn reader(&self) -> Self::S {
        self.disk.reader()
    }

    fn bytes(&self) -> Vec<u8> {
        self.disk.bytes()
    }

    fn set_bytes(&self, bytes: Vec<u8>) {
        self.disk.set_bytes(bytes);
    }
}

/// Generates `mod NAME { fn file(); fn mem() }` running `NAME::<Backend>()` on both.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn file() {
                    super::$name::<super::common::FileBackend>();
                }
                #[test]
                fn mem() {
                    super::$name::<super::common::MemBackend>();
                }
            }
        )*
    };
}

/// Generates `mod NAME { fn file(); fn mem() }` running `NAME::<FsBackend>()` and
/// `NAME::<MemBackend>()` for the directory backends a test file defines.
#[macro_export]
macro_rules! on_both_backends_dir {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn file() {
                    super::$name::<super::FsBackend>();
                }
                #[test]
                fn mem() {
                    super::$name::<super::MemBackend>();
                }
            }
        )*
    };
}
