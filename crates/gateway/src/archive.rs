//! The request-body archive: an optional directory beside the gate log where the
//! gateway keeps every request body it decides on, content-addressed by the SHA-256
//! that the request's [`ExecutionRecord`](calybris_gate::ExecutionRecord) logs.
//!
//! The gate log holds only a request's hash, never its body (which may hold anything
//! a caller sent). To re-execute a logged request, `calybris replay` needs the body:
//! the archive is its *input pointer*. A body is stored as `<64 lowercase hex>.json`,
//! written to a temporary name, synced, then renamed, before the request is decided;
//! a body already stored under its hash is not written again. Reading back checks the
//! hash of what was read, so an archive file that was altered is detected, never used.
//!
//! Growth: one file per distinct body that reached the gate (after authentication,
//! parsing and the rate limits), each at most the configured `max_body_bytes`; the
//! operator prunes it with the same retention as the log. Nothing in the archive is
//! needed to verify the log.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{hex, sha256};

/// The largest archived body read back, in bytes.
pub const MAX_ARCHIVED_BODY_BYTES: u64 = 64 << 20;

/// A request-body archive directory.
#[derive(Debug)]
pub struct RequestArchive {
    dir: PathBuf,
    temp: AtomicU64,
}

/// Why an archived body cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// No body is stored under the hash.
    #[error("no archived body {path}")]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file is there but cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_ARCHIVED_BODY_BYTES`].
    #[error("{path} is {len_bytes} bytes, over the {MAX_ARCHIVED_BODY_BYTES}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len_bytes: u64,
    },
    /// What was read does not hash to its name.
    #[error("{path} holds a body whose SHA-256 is {actual}, not its name's")]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The SHA-256 of what it holds, hex.
        actual: String,
    },
}

impl RequestArchive {
    /// An archive in `dir` (created when missing, with its parents).
    ///
    /// # Errors
    /// The I/O error of creating it.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self::at(dir))
    }

    /// An archive in `dir`, for reading: nothing is created.
    #[must_use]
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            temp: AtomicU64::new(0),
        }
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the body of SHA-256 `hash` is stored.
    #[must_use]
    pub fn path_of(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.json", hex(hash)))
    }

    /// Stores `body` under its SHA-256 (`hash`), durably (the file is synced before it
    /// is renamed into place). A body already stored is left as it is.
    ///
    /// # Errors
    /// The I/O error of writing.
    pub fn store(&self, hash: &[u8; 32], body: &[u8]) -> std::io::Result<()> {
        debug_assert_eq!(&sha256(body), hash, "the archive is content-addressed");
        let path = self.path_of(hash);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == body.len() as u64) {
            // Another request may have renamed this body into place a moment
            // ago without its directory entry being durable yet: sync the
            // directory before this request's decision is logged too.
            return self.sync_dir();
        }
        let temp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            hex(&hash[..8]),
            std::process::id(),
            self.temp.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(body)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)?;
            // The rename is durable only once the directory is synced: without
            // this a crash could keep the logged decision and lose its body.
            self.sync_dir()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }

    /// Makes the archive directory's entries durable.
    fn sync_dir(&self) -> std::io::Result<()> {
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Reads back the body of SHA-256 `hash`, checking that it hashes to it.
    ///
    /// # Errors
    /// [`ArchiveError`].
    pub fn load(&self, hash: &[u8; 32]) -> Result<Vec<u8>, ArchiveError> {
        let path = self.path_of(hash);
        let read = |source| ArchiveError::Read {
            path: path.clone(),
            source,
        };
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArchiveError::Missing { path });
            }
            Err(error) => return Err(read(error)),
        };
        if metadata.len() > MAX_ARCHIVED_BODY_BYTES {
            return Err(ArchiveError::TooLarge {
                path,
                len_bytes: metadata.len(),
            });
        }
        let body = std::fs::read(&path).map_err(read)?;
        let actual = sha256(&body);
        if &actual != hash {
            return Err(ArchiveError::HashMismatch {
                path,
                actual: hex(&actual),
            });
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_round_trips_and_an_altered_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("calybris-archive-{}", std::process::id()));
        let archive = RequestArchive::open(&dir).expect("open");
        let body = br#"{"model":"auto"}"#;
        let hash = sha256(body);
        assert!(matches!(
            archive.load(&hash),
            Err(ArchiveError::Missing { .. })
        ));
        archive.store(&hash, body).expect("store");
        archive.store(&hash, body).expect("store again");
        assert_eq!(archive.load(&hash).expect("load"), body);
        std::fs::write(archive.path_of(&hash), br#"{"model":"autp"}"#).expect("alter");
        assert!(matches!(
            archive.load(&hash),
            Err(ArchiveError::HashMismatch { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
