//! The request-body archive: an optional directory beside the gate log where the
//! gateway keeps every request body it decides on, found again by the SHA-256 that
//! the request's [`ExecutionRecord`](calybris_gate::ExecutionRecord) logs.
//!
//! The gate log holds only a request's hash, never its body (which may hold anything
//! a caller sent). To re-execute a logged request, `calybris replay` needs the body:
//! the archive is its *input pointer*.
//!
//! # Layout
//!
//! Append-only **segment files** `<index, 20 digits>.carc` (the first is 1), each a
//! 32-byte header (the magic `CALYARC1`, the index as a little-endian `u64`, the
//! segment's 8-byte *tag*, drawn when the segment is created, then the first 8 bytes
//! of the SHA-256 of those 24 bytes) followed by entries.
//! One entry, defined by [`encode_entry_header`] and read back only through this
//! module:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | the segment's tag |
//! | 4 | the body's length `L`, little-endian `u32`, `1 ..= ` the body limit |
//! | 32 | the body's SHA-256 |
//! | `L` | the body, exactly as received |
//!
//! The tag marks where entries start. It is not a secret, but a caller cannot predict
//! it (it hashes the clock in nanoseconds, the process and the segment), so a body
//! cannot carry a forged entry that recovery would take for a real one.
//!
//! The body limit is the gateway's `[server] max_body_bytes` when writing and
//! [`MAX_ARCHIVED_BODY_BYTES`] when reading back (a gateway whose limit is larger
//! refuses to open with an archive). A segment whose length reaches the segment limit
//! ([`DEFAULT_SEGMENT_LIMIT_BYTES`] unless configured otherwise) is synced, and the
//! next one created (written under a temporary name, synced, renamed, the directory
//! synced) before anything is appended to it, so only the newest segment can hold
//! bytes that are not durable. Archives written before this layout hold one file per
//! body, `<64 lowercase hex>.json`; [`RequestArchive::load`] still reads them.
//!
//! # Durability: the log's group commit
//!
//! [`ArchiveWriter::append`] writes a body to the newest segment without syncing it,
//! before the request is decided. The gate log is opened through
//! [`ArchiveWriter::synced`], a [`Directory`] wrapper whose segment storages sync the
//! archive's newest segment (fdatasync) before the log segment, in every data sync the
//! log makes, inline or from its sync threads. A record is acknowledged only when a
//! data sync that began after it was written returns, and the body was written before
//! its record: so when a request's records are acknowledged, its body is durable. No
//! sync is made per request; the archive shares the log's one sync per batch.
//!
//! A decision record may still reach the disk without being acknowledged (the
//! operating system writes pages back on its own) while its body, in the same
//! unsynced window, does not: replay then reports the body missing. Nothing
//! acknowledged is in that case.
//!
//! # Recovery
//!
//! [`ArchiveWriter::open`] reads the newest segment whole and checks every entry. The
//! first entry that does not check (incomplete, a wrong magic or length, a body
//! running past the end, a body that does not hash to its recorded SHA-256) starts a
//! **torn tail** when no entry that checks begins anywhere after it: a crash leaves
//! exactly that of writes that were never synced, so nothing in it was acknowledged,
//! and it is cut. When an entry that checks does follow, the damage is in the middle
//! and opening fails with [`ArchiveError::Damaged`], naming the segment and the
//! offset; so does any damage in an older segment when it is read. (Damage to the
//! newest segment's last entry cannot be told apart from a torn write: it is cut. The
//! other way, a power loss that wrote an unsynced entry back whole but an earlier
//! unsynced one torn is refused as damage, not cut: the operator then cuts the
//! segment at the named byte, which loses nothing acknowledged.)
//!
//! # Lookups
//!
//! By a scan at replay time, not an index: [`RequestArchive::load`] reads the
//! segments oldest first, checking every entry on the way, until an entry with the
//! wanted SHA-256 whose body hashes to it. Time: linear in the archive before the
//! match; memory: one body. The gateway itself keeps nothing per entry.
//!
//! # Growth
//!
//! One entry per request that reached the gate (after authentication, parsing and
//! the rate limits), each at most the body limit plus 40 bytes; a repeated body is
//! stored again. With [`ArchiveOptions::keep_segments`] (`[server]
//! request_archive_keep_segments`) the writer deletes the segments beyond the newest
//! `keep` each time it starts a new one, so the archive's size is bounded whatever
//! the traffic; without it the operator prunes whole segments, oldest first, with the
//! same retention as the log (never the newest one, which the gateway appends to).
//! Nothing in the archive is needed to verify the log.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use calybris_wal::WalError;
use calybris_wal::storage::{Directory, Storage, SyncHandle};
use parking_lot::Mutex;

use crate::config::{hex, sha256};

/// The largest body an archive entry holds when read back, in bytes (and the largest
/// `max_body_bytes` a gateway with an archive accepts).
pub const MAX_ARCHIVED_BODY_BYTES: u64 = 64 << 20;

/// The segment size after which the archive starts a new segment, in bytes.
pub const DEFAULT_SEGMENT_LIMIT_BYTES: u64 = 64 << 20;

/// Extension of archive segment files.
pub const SEGMENT_EXTENSION: &str = "carc";

/// The length of a segment's header, in bytes.
pub const SEGMENT_HEADER_BYTES: u64 = 32;

/// The length of an entry's header (tag, length, SHA-256), in bytes.
pub const ENTRY_HEADER_BYTES: u64 = 44;

const SEGMENT_MAGIC: [u8; 8] = *b"CALYARC1";
const TAG_BYTES: usize = 8;
const SEGMENT_NAME_DIGITS: usize = 20;
const LOCK_FILE_NAME: &str = "LOCK";
/// How much of a segment is read at once when looking for an entry after damage.
const SEARCH_CHUNK_BYTES: usize = 64 << 10;

/// The header of an entry of a segment tagged `tag`, holding a body of `len_bytes`
/// bytes whose SHA-256 is `hash`: the one definition of the entry framing (see the
/// [module documentation](self)).
#[must_use]
pub fn encode_entry_header(tag: &[u8; 8], hash: &[u8; 32], len_bytes: u32) -> [u8; 44] {
    debug_assert!(len_bytes > 0 && u64::from(len_bytes) <= MAX_ARCHIVED_BODY_BYTES);
    let mut header = [0u8; 44];
    header[..TAG_BYTES].copy_from_slice(tag);
    header[TAG_BYTES..TAG_BYTES + 4].copy_from_slice(&len_bytes.to_le_bytes());
    header[TAG_BYTES + 4..].copy_from_slice(hash);
    header
}

/// An entry header read back: its length and SHA-256, `None` when its tag is not
/// `tag`.
fn decode_entry_header(tag: &[u8; 8], header: &[u8; 44]) -> Option<(u64, [u8; 32])> {
    if header[..TAG_BYTES] != tag[..] {
        return None;
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[TAG_BYTES..TAG_BYTES + 4]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&header[TAG_BYTES + 4..]);
    Some((u64::from(u32::from_le_bytes(len)), hash))
}

/// The header of segment `index` tagged `tag`: magic, index, tag, then the first 8
/// bytes of the SHA-256 of those 24 (a damaged tag must not pass for another).
fn segment_header(index: u64, tag: &[u8; 8]) -> [u8; 32] {
    let mut header = [0u8; 32];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..16].copy_from_slice(&index.to_le_bytes());
    header[16..24].copy_from_slice(tag);
    let check = sha256(&header[..24]);
    header[24..].copy_from_slice(&check[..8]);
    header
}

/// The tag of segment `index`, `None` when `header` is not its header.
fn decode_segment_header(index: u64, header: &[u8; 32]) -> Option<[u8; 8]> {
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&header[16..24]);
    (segment_header(index, &tag) == *header).then_some(tag)
}

/// A fresh, unpredictable tag for segment `index` of `dir`.
fn new_tag(dir: &Path, index: u64) -> [u8; 8] {
    use sha2::Digest as _;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"calybris request archive tag");
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(index.to_le_bytes());
    hasher.update(dir.as_os_str().as_encoded_bytes());
    let digest: [u8; 32] = hasher.finalize().into();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    tag
}

/// The file name of segment `index`.
#[must_use]
pub fn segment_file_name(index: u64) -> String {
    format!("{index:0SEGMENT_NAME_DIGITS$}.{SEGMENT_EXTENSION}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_EXTENSION)?.strip_suffix('.')?;
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// What is wrong with a damaged entry or segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// The segment's header is not the archive's, or names another segment.
    SegmentHeader,
    /// The segment ends inside an entry's header.
    IncompleteHeader,
    /// The entry does not start with the segment's tag.
    Tag,
    /// The entry's length is 0 or over the body limit.
    Length,
    /// The entry's body runs past the end of the segment.
    PastEnd,
    /// The entry's body does not hash to its recorded SHA-256.
    Hash,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SegmentHeader => "not the archive segment header of this segment",
            Self::IncompleteHeader => "the segment ends inside an entry header",
            Self::Tag => "no entry starts here (not the segment's tag)",
            Self::Length => "an entry length of 0 or over the body limit",
            Self::PastEnd => "an entry body running past the end of the segment",
            Self::Hash => "an entry body that does not hash to its recorded SHA-256",
        })
    }
}

/// Why the archive cannot store or give back a body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// No body is stored under the hash.
    #[error("no archived body {hash} in {dir}")]
    Missing {
        /// The archive directory.
        dir: PathBuf,
        /// The SHA-256 looked for, hex.
        hash: String,
    },
    /// A file of the archive cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A body over the limit (or empty): a file of the old layout when read back, or
    /// a body to append; or a writer's limit over [`MAX_ARCHIVED_BODY_BYTES`].
    #[error("{path}: a body of {len_bytes} bytes, not within 1 ..= {limit_bytes}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The body's length.
        len_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// The body stored under the wanted hash does not hash to it (a file of the old
    /// layout, or an entry recording the wanted SHA-256).
    #[error(
        "{path} at byte {offset_bytes} holds a body whose SHA-256 is {actual}, not the one it is stored under"
    )]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// Where the entry starts (0 for a file of the old layout).
        offset_bytes: u64,
        /// The SHA-256 of what it holds, hex.
        actual: String,
    },
    /// A segment is damaged before its end (or in its header): what follows cannot be
    /// trusted, and nothing is cut.
    #[error("archive segment {segment} is damaged at byte {offset_bytes}: {damage}")]
    Damaged {
        /// The segment file.
        segment: PathBuf,
        /// Where the damaged entry (or header) starts.
        offset_bytes: u64,
        /// What is wrong.
        damage: Damage,
    },
    /// Another process holds the archive's writer lock.
    #[error("the request archive {dir} is in use by another process")]
    Locked {
        /// The archive directory.
        dir: PathBuf,
    },
    /// An earlier append failed and could not be undone: the archive takes no more.
    #[error("the request archive {dir} failed earlier and takes no more bodies")]
    Poisoned {
        /// The archive directory.
        dir: PathBuf,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads up to `buf.len()` bytes at `offset`, as many as the file has.
fn read_at(mut file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    file.seek(SeekFrom::Start(offset))?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// An entry read at an offset.
enum Read {
    /// It checks; its body is in the buffer.
    Entry { hash: [u8; 32], len_bytes: u64 },
    /// It does not.
    Bad(Bad),
}

/// A damaged entry.
#[derive(Debug, Clone, Copy)]
struct Bad {
    damage: Damage,
    /// The SHA-256 it records, when its header could be read.
    recorded: Option<[u8; 32]>,
    /// The SHA-256 of its body, when the body could be read ([`Damage::Hash`]).
    actual: Option<[u8; 32]>,
}

impl Bad {
    const fn header(damage: Damage) -> Read {
        Read::Bad(Self {
            damage,
            recorded: None,
            actual: None,
        })
    }
}

/// One segment open for reading.
struct Segment<'a> {
    path: &'a Path,
    file: File,
    len_bytes: u64,
    tag: [u8; 8],
    /// The largest body accepted.
    limit: u64,
}

impl<'a> Segment<'a> {
    /// Opens segment `index` at `path` and checks its header.
    fn open(path: &'a Path, index: u64, limit: u64) -> Result<Self, ArchiveError> {
        let file = File::open(path).map_err(io_at(path))?;
        let len_bytes = file.metadata().map_err(io_at(path))?.len();
        let mut header = [0u8; 32];
        let tag = if read_at(&file, 0, &mut header).map_err(io_at(path))? == header.len() {
            decode_segment_header(index, &header)
        } else {
            None
        };
        let Some(tag) = tag else {
            return Err(ArchiveError::Damaged {
                segment: path.to_owned(),
                offset_bytes: 0,
                damage: Damage::SegmentHeader,
            });
        };
        Ok(Self {
            path,
            file,
            len_bytes,
            tag,
            limit,
        })
    }

    /// Reads and checks the entry at `offset`, its body into `body`.
    fn read_entry(&self, offset: u64, body: &mut Vec<u8>) -> io::Result<Read> {
        debug_assert!(offset <= self.len_bytes);
        let mut header = [0u8; 44];
        if read_at(&self.file, offset, &mut header)? < header.len() {
            return Ok(Bad::header(Damage::IncompleteHeader));
        }
        let Some((len_bytes, hash)) = decode_entry_header(&self.tag, &header) else {
            return Ok(Bad::header(Damage::Tag));
        };
        if len_bytes == 0 || len_bytes > self.limit {
            return Ok(Bad::header(Damage::Length));
        }
        let past_end = Read::Bad(Bad {
            damage: Damage::PastEnd,
            recorded: Some(hash),
            actual: None,
        });
        if offset + ENTRY_HEADER_BYTES + len_bytes > self.len_bytes {
            return Ok(past_end);
        }
        // At most `limit`, itself at most `MAX_ARCHIVED_BODY_BYTES`.
        let len = usize::try_from(len_bytes).unwrap_or(usize::MAX);
        body.clear();
        body.resize(len, 0);
        if read_at(&self.file, offset + ENTRY_HEADER_BYTES, body)? < len {
            // The file shrank since it was opened: torn here, as far as this read goes.
            return Ok(past_end);
        }
        let actual = sha256(body);
        if actual != hash {
            return Ok(Read::Bad(Bad {
                damage: Damage::Hash,
                recorded: Some(hash),
                actual: Some(actual),
            }));
        }
        Ok(Read::Entry { hash, len_bytes })
    }

    /// Whether an entry that checks starts anywhere in `from ..` (only where the
    /// segment's tag is).
    fn entry_after(&self, from: u64) -> io::Result<bool> {
        let mut chunk = vec![0u8; SEARCH_CHUNK_BYTES];
        let mut body = Vec::new();
        let mut at = from;
        while at + ENTRY_HEADER_BYTES <= self.len_bytes {
            let n = read_at(&self.file, at, &mut chunk)?;
            if n < TAG_BYTES {
                break;
            }
            for (i, candidate) in chunk[..n].windows(TAG_BYTES).enumerate() {
                if candidate == self.tag
                    && matches!(
                        self.read_entry(at + i as u64, &mut body)?,
                        Read::Entry { .. }
                    )
                {
                    return Ok(true);
                }
            }
            // The next window overlaps this one by the tag's length less one.
            at += (n - (TAG_BYTES - 1)) as u64;
        }
        Ok(false)
    }

    /// Scans every entry, calling `visit` with each that checks (offset, hash, body)
    /// until it returns `true`. In the newest segment (`newest`), damage after which
    /// no entry checks is a torn tail; any other damage is [`ArchiveError::Damaged`].
    /// `on_bad` sees a damaged entry first, and may make it another error.
    fn scan(
        &self,
        newest: bool,
        mut visit: impl FnMut(u64, &[u8; 32], &[u8]) -> bool,
        mut on_bad: impl FnMut(u64, &Bad) -> Option<ArchiveError>,
    ) -> Result<End, ArchiveError> {
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut body = Vec::new();
        while offset < self.len_bytes {
            match self
                .read_entry(offset, &mut body)
                .map_err(io_at(self.path))?
            {
                Read::Entry { hash, len_bytes } => {
                    if visit(offset, &hash, &body) {
                        return Ok(End::Stopped);
                    }
                    offset += ENTRY_HEADER_BYTES + len_bytes;
                }
                Read::Bad(bad) => {
                    if let Some(error) = on_bad(offset, &bad) {
                        return Err(error);
                    }
                    if newest && !self.entry_after(offset + 1).map_err(io_at(self.path))? {
                        return Ok(End::Torn { offset });
                    }
                    return Err(ArchiveError::Damaged {
                        segment: self.path.to_owned(),
                        offset_bytes: offset,
                        damage: bad.damage,
                    });
                }
            }
        }
        debug_assert_eq!(offset, self.len_bytes);
        Ok(End::Clean {
            len: self.len_bytes,
        })
    }
}

/// How a segment's scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// At the segment's end, `len` bytes.
    Clean { len: u64 },
    /// At a torn tail starting at `offset` (newest segment only).
    Torn { offset: u64 },
    /// The visitor stopped at an entry.
    Stopped,
}
/// The segments of the archive in `dir`, ascending by index (none when `dir` is
/// missing).
fn list_segments(dir: &Path) -> Result<Vec<u64>, ArchiveError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_at(dir)(error)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_at(dir))?;
        if let Some(index) = entry.file_name().to_str().and_then(parse_segment_name) {
            segments.push(index);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // How POSIX makes a directory entry durable; other platforms neither allow nor
    // need it.
    if cfg!(unix) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A request-body archive directory, for reading (`calybris replay`).
#[derive(Debug, Clone)]
pub struct RequestArchive {
    dir: PathBuf,
}

impl RequestArchive {
    /// The archive in `dir`, for reading: nothing is created or changed.
    #[must_use]
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the old layout (before segments) stored the body of SHA-256 `hash`.
    #[must_use]
    pub fn legacy_path_of(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.json", hex(hash)))
    }

    /// The path of segment `index`.
    #[must_use]
    pub fn segment_path(&self, index: u64) -> PathBuf {
        self.dir.join(segment_file_name(index))
    }

    /// Reads back the body of SHA-256 `hash`, checking that it hashes to it: the file
    /// of the old layout when there is one, else the first entry of the segments
    /// (oldest first) that records `hash` and checks. Every entry before it is
    /// checked on the way.
    ///
    /// # Errors
    /// [`ArchiveError::Missing`]; [`ArchiveError::HashMismatch`] when the body stored
    /// under `hash` is not it; [`ArchiveError::Damaged`] when a segment is damaged
    /// before the body is found; [`ArchiveError::TooLarge`] and
    /// [`ArchiveError::Io`].
    pub fn load(&self, hash: &[u8; 32]) -> Result<Vec<u8>, ArchiveError> {
        if let Some(body) = self.load_legacy(hash)? {
            return Ok(body);
        }
        let segments = list_segments(&self.dir)?;
        let newest = segments.last().copied();
        for index in segments {
            let path = self.segment_path(index);
            let mut found = None;
            let segment = Segment::open(&path, index, MAX_ARCHIVED_BODY_BYTES)?;
            let end = segment.scan(
                Some(index) == newest,
                |_, entry_hash, body| {
                    let matched = entry_hash == hash;
                    if matched {
                        found = Some(body.to_vec());
                    }
                    matched
                },
                |offset_bytes, bad| match (bad.recorded, bad.actual) {
                    (Some(recorded), Some(actual)) if &recorded == hash => {
                        Some(ArchiveError::HashMismatch {
                            path: path.clone(),
                            offset_bytes,
                            actual: hex(&actual),
                        })
                    }
                    _ => None,
                },
            )?;
            if let Some(body) = found {
                debug_assert_eq!(end, End::Stopped);
                debug_assert_eq!(&sha256(&body), hash);
                return Ok(body);
            }
        }
        Err(ArchiveError::Missing {
            dir: self.dir.clone(),
            hash: hex(hash),
        })
    }

    /// Visits every entry of the segments that checks, oldest first, with its SHA-256
    /// and body (not the old layout's files); returns how many there were. A torn
    /// tail of the newest segment (a writer crashed, or is appending) ends the scan.
    ///
    /// # Errors
    /// [`ArchiveError::Damaged`] at the first damage elsewhere; [`ArchiveError::Io`].
    pub fn scan(&self, mut visit: impl FnMut(&[u8; 32], &[u8])) -> Result<u64, ArchiveError> {
        let segments = list_segments(&self.dir)?;
        let newest = segments.last().copied();
        let mut entries = 0u64;
        for index in segments {
            let path = self.segment_path(index);
            Segment::open(&path, index, MAX_ARCHIVED_BODY_BYTES)?.scan(
                Some(index) == newest,
                |_, hash, body| {
                    entries += 1;
                    visit(hash, body);
                    false
                },
                |_, _| None,
            )?;
        }
        Ok(entries)
    }

    /// The body of `hash` in the old layout's file, if there is one.
    fn load_legacy(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, ArchiveError> {
        let path = self.legacy_path_of(hash);
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_at(&path)(error)),
        };
        if metadata.len() > MAX_ARCHIVED_BODY_BYTES {
            return Err(ArchiveError::TooLarge {
                path,
                len_bytes: metadata.len(),
                limit_bytes: MAX_ARCHIVED_BODY_BYTES,
            });
        }
        let mut body = Vec::new();
        File::open(&path)
            .and_then(|file| file.take(MAX_ARCHIVED_BODY_BYTES).read_to_end(&mut body))
            .map_err(io_at(&path))?;
        let actual = sha256(&body);
        if &actual != hash {
            return Err(ArchiveError::HashMismatch {
                path,
                offset_bytes: 0,
                actual: hex(&actual),
            });
        }
        Ok(Some(body))
    }
}

/// How to write an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveOptions {
    /// The largest body appended (the gateway's `max_body_bytes`); at most
    /// [`MAX_ARCHIVED_BODY_BYTES`].
    pub max_body_bytes: u64,
    /// A segment whose length reaches this is closed and a new one started.
    pub segment_limit_bytes: u64,
    /// How many segments to keep, the newest included (`None`: all; 0 is taken as
    /// 1). When a new
    /// segment starts, older ones beyond this many are deleted, oldest first; a
    /// request whose body went with them replays as `INPUT_POINTER_MISSING`. With a
    /// limit, the archive holds at most about `keep × segment_limit_bytes` (plus one
    /// body): a flood of requests cannot fill the disk through it.
    pub keep_segments: Option<u64>,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: MAX_ARCHIVED_BODY_BYTES,
            segment_limit_bytes: DEFAULT_SEGMENT_LIMIT_BYTES,
            keep_segments: None,
        }
    }
}

/// What [`ArchiveWriter::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRecovery {
    /// Segments present after opening.
    pub segments: u64,
    /// Entries that checked in the newest segment.
    pub newest_entries: u64,
    /// Where a torn tail was cut in the newest segment, if one was.
    pub cut_at_bytes: Option<u64>,
    /// How many bytes were cut.
    pub cut_bytes: u64,
}

/// The newest segment's file, shared with the log's syncs.
#[derive(Debug)]
struct Newest {
    file: Mutex<Arc<File>>,
    /// Syncs made through the log, counted for the tests.
    #[cfg(test)]
    syncs: std::sync::atomic::AtomicU64,
}

impl Newest {
    /// Makes every body appended before this call durable: older segments were synced
    /// before the newest replaced them, under the writer's lock.
    fn sync_data(&self) -> io::Result<()> {
        let file = Arc::clone(&self.file.lock());
        #[cfg(test)]
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        file.sync_data()
    }
}

#[derive(Debug)]
struct Writer {
    file: Arc<File>,
    index: u64,
    tag: [u8; 8],
    len_bytes: u64,
    buf: Vec<u8>,
    poisoned: bool,
}

/// The gateway's side of the archive: it appends bodies, and its
/// [`synced`](Self::synced) wrapper makes them durable in the gate log's syncs.
#[derive(Debug)]
pub struct ArchiveWriter {
    dir: PathBuf,
    options: ArchiveOptions,
    writer: Mutex<Writer>,
    newest: Arc<Newest>,
    recovery: ArchiveRecovery,
    _lock: File,
}

impl ArchiveWriter {
    /// Opens (or creates, with its parents) the archive in `dir` for appending: takes
    /// its writer lock, removes a segment left half-created by a crash, checks the
    /// newest segment and cuts its torn tail (see the [module documentation](self)).
    ///
    /// # Errors
    /// [`ArchiveError::Locked`]; [`ArchiveError::Damaged`];
    /// [`ArchiveError::TooLarge`] when `options.max_body_bytes` is over
    /// [`MAX_ARCHIVED_BODY_BYTES`]; [`ArchiveError::Io`].
    pub fn open(dir: &Path, options: ArchiveOptions) -> Result<Self, ArchiveError> {
        if options.max_body_bytes > MAX_ARCHIVED_BODY_BYTES {
            return Err(ArchiveError::TooLarge {
                path: dir.to_owned(),
                len_bytes: options.max_body_bytes,
                limit_bytes: MAX_ARCHIVED_BODY_BYTES,
            });
        }
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock_path = dir.join(LOCK_FILE_NAME);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ArchiveError::Locked {
                    dir: dir.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(io_at(&lock_path)(error)),
        }
        remove_temporaries(dir)?;
        let reader = RequestArchive::at(dir);
        let segments = list_segments(dir)?;
        let mut recovery = ArchiveRecovery {
            segments: segments.len() as u64,
            newest_entries: 0,
            cut_at_bytes: None,
            cut_bytes: 0,
        };
        let (index, file, len_bytes, tag) = if let Some(&index) = segments.last() {
            let path = reader.segment_path(index);
            let mut entries = 0u64;
            // Read back with the framing's own bound, not this writer's: entries
            // written under a larger `max_body_bytes` stay readable.
            let segment = Segment::open(&path, index, MAX_ARCHIVED_BODY_BYTES)?;
            let end = segment.scan(
                true,
                |_, _, _| {
                    entries += 1;
                    false
                },
                |_, _| None,
            )?;
            let tag = segment.tag;
            drop(segment);
            recovery.newest_entries = entries;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_at(&path))?;
            let len_bytes = match end {
                End::Torn { offset } => {
                    let was = file.metadata().map_err(io_at(&path))?.len();
                    file.set_len(offset).map_err(io_at(&path))?;
                    file.sync_data().map_err(io_at(&path))?;
                    recovery.cut_at_bytes = Some(offset);
                    recovery.cut_bytes = was.saturating_sub(offset);
                    offset
                }
                End::Clean { len } => len,
                // The visitor never stops the scan; the file's length stands.
                End::Stopped => file.metadata().map_err(io_at(&path))?.len(),
            };
            (index, file, len_bytes, tag)
        } else {
            let (file, tag) = create_segment(dir, 1)?;
            recovery.segments = 1;
            (1, file, SEGMENT_HEADER_BYTES, tag)
        };
        let file = Arc::new(file);
        Ok(Self {
            dir: dir.to_owned(),
            options,
            writer: Mutex::new(Writer {
                file: Arc::clone(&file),
                index,
                tag,
                len_bytes,
                buf: Vec::new(),
                poisoned: false,
            }),
            newest: Arc::new(Newest {
                file: Mutex::new(file),
                #[cfg(test)]
                syncs: std::sync::atomic::AtomicU64::new(0),
            }),
            recovery,
            _lock: lock,
        })
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What opening found.
    #[must_use]
    pub fn recovery(&self) -> &ArchiveRecovery {
        &self.recovery
    }

    /// Appends `body`, whose SHA-256 is `hash`, to the newest segment: written, not
    /// synced (the log's next data sync makes it durable, see [`synced`](Self::synced)).
    /// Starts a new segment when the newest reaches the segment limit. A failed write
    /// is cut off again; when even that fails the archive takes no more bodies.
    ///
    /// # Errors
    /// [`ArchiveError::TooLarge`] for an empty body or one over the limit;
    /// [`ArchiveError::Poisoned`]; [`ArchiveError::Io`].
    pub fn append(&self, hash: &[u8; 32], body: &[u8]) -> Result<(), ArchiveError> {
        debug_assert_eq!(&sha256(body), hash, "an entry records its body's SHA-256");
        let mut writer = self.writer.lock();
        let path = |index| self.dir.join(segment_file_name(index));
        if writer.poisoned {
            return Err(ArchiveError::Poisoned {
                dir: self.dir.clone(),
            });
        }
        let len = u32::try_from(body.len())
            .ok()
            .filter(|&len| len > 0 && u64::from(len) <= self.options.max_body_bytes)
            .ok_or_else(|| ArchiveError::TooLarge {
                path: path(writer.index),
                len_bytes: body.len() as u64,
                limit_bytes: self.options.max_body_bytes,
            })?;
        let Writer {
            file,
            index,
            tag,
            len_bytes,
            buf,
            ..
        } = &mut *writer;
        buf.clear();
        buf.extend_from_slice(&encode_entry_header(tag, hash, len));
        buf.extend_from_slice(body);
        let start = *len_bytes;
        let written = (|| {
            let mut file: &File = file;
            file.seek(SeekFrom::Start(start))?;
            file.write_all(buf)
        })();
        if let Err(error) = written {
            let failed = path(*index);
            if file.set_len(start).is_err() {
                writer.poisoned = true;
            }
            return Err(io_at(&failed)(error));
        }
        *len_bytes += buf.len() as u64;
        // The buffer holds one body at most; a large one is not kept.
        if buf.capacity() > 64 << 10 {
            *buf = Vec::new();
        }
        if writer.len_bytes >= self.options.segment_limit_bytes
            && let Err(error) = self.rotate(&mut writer)
        {
            writer.poisoned = true;
            return Err(error);
        }
        Ok(())
    }

    /// Syncs the newest segment, creates the next and makes it the newest.
    fn rotate(&self, writer: &mut Writer) -> Result<(), ArchiveError> {
        let path = self.dir.join(segment_file_name(writer.index));
        writer.file.sync_data().map_err(io_at(&path))?;
        let next = writer.index + 1;
        let (file, tag) = create_segment(&self.dir, next)?;
        let file = Arc::new(file);
        // Older bodies are durable now: a log sync from here on need only sync this.
        *self.newest.file.lock() = Arc::clone(&file);
        writer.file = file;
        writer.index = next;
        writer.tag = tag;
        writer.len_bytes = SEGMENT_HEADER_BYTES;
        if let Some(keep) = self.options.keep_segments {
            self.prune(next, keep.max(1));
        }
        Ok(())
    }

    /// Deletes the segments older than the newest `keep` (the newest is `newest`),
    /// oldest first, then syncs the directory. Best effort: a segment that cannot be
    /// listed or removed now is removed at a later rotation (every rotation lists
    /// the directory again), and the appends go on either way.
    fn prune(&self, newest: u64, keep: u64) {
        debug_assert!(keep >= 1, "the newest segment is always kept");
        let Some(last_old) = newest.checked_sub(keep) else {
            return;
        };
        let Ok(segments) = list_segments(&self.dir) else {
            return;
        };
        let mut removed = false;
        for index in segments.into_iter().filter(|&index| index <= last_old) {
            debug_assert!(index < newest);
            if std::fs::remove_file(self.dir.join(segment_file_name(index))).is_err() {
                break;
            }
            removed = true;
        }
        if removed {
            let _ = sync_dir(&self.dir);
        }
    }

    /// Wraps the gate log's segment directory `dir` so that each data sync of a log
    /// segment first syncs the archive's newest segment (the watermark file's syncs
    /// do not). Open the gate through it, with
    /// [`Gate::open_wrapping`](calybris_gate::Gate::open_wrapping).
    #[must_use]
    pub fn synced<D: Directory>(&self, dir: D) -> SyncedDirectory<D> {
        SyncedDirectory {
            inner: dir,
            newest: Arc::clone(&self.newest),
        }
    }
}

/// Creates segment `index` in `dir` holding its header: under a temporary name,
/// synced, renamed, the directory synced (absent or whole after a crash). Returns
/// the file and its tag.
fn create_segment(dir: &Path, index: u64) -> Result<(File, [u8; 8]), ArchiveError> {
    let tag = new_tag(dir, index);
    let path = dir.join(segment_file_name(index));
    let temp = dir.join(format!("{}.tmp", segment_file_name(index)));
    let io = io_at(&path);
    let created = (|| {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(&segment_header(index, &tag))?;
        file.sync_data()?;
        if path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the segment exists",
            ));
        }
        std::fs::rename(&temp, &path)?;
        sync_dir(dir)?;
        Ok(file)
    })();
    if created.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    created.map(|file| (file, tag)).map_err(io)
}

/// Removes segments a crash left half-created (`<segment>.tmp`).
fn remove_temporaries(dir: &Path) -> Result<(), ArchiveError> {
    for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        if name
            .to_str()
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(parse_segment_name)
            .is_some()
        {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io_at(&path))?;
        }
    }
    Ok(())
}

/// A log segment [`Directory`] whose segments' data syncs first sync the request
/// archive's newest segment (see [`ArchiveWriter::synced`]). Names, bytes and locks
/// are the wrapped directory's.
#[derive(Debug, Clone)]
pub struct SyncedDirectory<D> {
    inner: D,
    newest: Arc<Newest>,
}

/// A log segment of a [`SyncedDirectory`]; the watermark file's storage syncs only
/// itself.
#[derive(Debug)]
pub struct SyncedStorage<S> {
    inner: S,
    newest: Option<Arc<Newest>>,
}

impl<D: Directory> SyncedDirectory<D> {
    fn segment(&self, inner: D::Storage) -> SyncedStorage<D::Storage> {
        SyncedStorage {
            inner,
            newest: Some(Arc::clone(&self.newest)),
        }
    }

    fn plain(inner: D::Storage) -> SyncedStorage<D::Storage> {
        SyncedStorage {
            inner,
            newest: None,
        }
    }
}

impl<D: Directory> Directory for SyncedDirectory<D> {
    type Storage = SyncedStorage<D::Storage>;
    type Guard = D::Guard;

    fn lock(&self) -> Result<Self::Guard, WalError> {
        self.inner.lock()
    }

    fn list_segments(&self) -> io::Result<Vec<u64>> {
        self.inner.list_segments()
    }

    fn create_segment(&self, first_sequence: u64, header: &[u8]) -> io::Result<Self::Storage> {
        Ok(self.segment(self.inner.create_segment(first_sequence, header)?))
    }

    fn open_segment(&self, first_sequence: u64) -> io::Result<Self::Storage> {
        Ok(self.segment(self.inner.open_segment(first_sequence)?))
    }

    fn remove_segment(&self, first_sequence: u64) -> io::Result<()> {
        self.inner.remove_segment(first_sequence)
    }

    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }

    fn open_ack(&self) -> io::Result<Option<Self::Storage>> {
        Ok(self.inner.open_ack()?.map(Self::plain))
    }

    fn create_ack(&self, bytes: &[u8]) -> io::Result<Self::Storage> {
        Ok(Self::plain(self.inner.create_ack(bytes)?))
    }
}

/// A [`SyncedStorage`]'s sync from another thread: the archive's newest segment, then
/// the log segment.
#[derive(Debug)]
struct SyncedHandle {
    inner: Arc<dyn SyncHandle>,
    newest: Arc<Newest>,
}

impl SyncHandle for SyncedHandle {
    fn sync_data(&self) -> io::Result<()> {
        self.newest.sync_data()?;
        self.inner.sync_data()
    }
}

impl<S: Storage> Storage for SyncedStorage<S> {
    fn sync_handle(&self) -> io::Result<Option<Arc<dyn SyncHandle>>> {
        Ok(match (self.inner.sync_handle()?, &self.newest) {
            (Some(inner), Some(newest)) => Some(Arc::new(SyncedHandle {
                inner,
                newest: Arc::clone(newest),
            })),
            (handle, _) => handle,
        })
    }

    fn len_bytes(&mut self) -> io::Result<u64> {
        self.inner.len_bytes()
    }

    fn read_at(&mut self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset_bytes, buf)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.append(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if let Some(newest) = &self.newest {
            newest.sync_data()?;
        }
        self.inner.sync_data()
    }

    fn truncate(&mut self, len_bytes: u64) -> io::Result<()> {
        self.inner.truncate(len_bytes)
    }

    fn write_at(&mut self, offset_bytes: u64, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset_bytes, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(i: usize) -> Vec<u8> {
        format!(r#"{{"model":"auto","messages":[{{"role":"user","content":"request {i}"}}]}}"#)
            .into_bytes()
    }

    fn small() -> ArchiveOptions {
        ArchiveOptions {
            max_body_bytes: 1 << 20,
            segment_limit_bytes: 1 << 20,
            keep_segments: None,
        }
    }

    /// Writes `n` bodies into a new archive in `dir`; returns the newest segment's
    /// path and where each entry starts.
    fn write(dir: &Path, n: usize) -> (PathBuf, Vec<u64>) {
        let archive = ArchiveWriter::open(dir, small()).expect("open");
        let mut starts = Vec::new();
        for i in 0..n {
            starts.push(archive.writer.lock().len_bytes);
            let b = body(i);
            archive.append(&sha256(&b), &b).expect("append");
        }
        (RequestArchive::at(dir).segment_path(1), starts)
    }

    fn load(dir: &Path, i: usize) -> Result<Vec<u8>, ArchiveError> {
        RequestArchive::at(dir).load(&sha256(&body(i)))
    }

    #[test]
    fn bodies_round_trip_across_segments_and_reopening() {
        let dir = tempfile::tempdir().expect("temp");
        let options = ArchiveOptions {
            max_body_bytes: 1 << 20,
            segment_limit_bytes: 300,
            keep_segments: None,
        };
        {
            let archive = ArchiveWriter::open(dir.path(), options).expect("open");
            for i in 0..10 {
                let b = body(i);
                archive.append(&sha256(&b), &b).expect("append");
            }
        }
        let archive = ArchiveWriter::open(dir.path(), options).expect("reopen");
        assert!(archive.recovery().segments > 3, "{:?}", archive.recovery());
        assert_eq!(archive.recovery().cut_at_bytes, None);
        for i in 10..12 {
            let b = body(i);
            archive.append(&sha256(&b), &b).expect("append");
        }
        for i in 0..12 {
            assert_eq!(load(dir.path(), i).expect("load"), body(i), "body {i}");
        }
        assert!(matches!(
            load(dir.path(), 12),
            Err(ArchiveError::Missing { .. })
        ));
        // One writer at a time.
        assert!(matches!(
            ArchiveWriter::open(dir.path(), options),
            Err(ArchiveError::Locked { .. })
        ));
        // Bodies out of bounds are refused, nothing written.
        let huge = vec![b' '; 2 << 20];
        assert!(matches!(
            archive.append(&sha256(&huge), &huge),
            Err(ArchiveError::TooLarge { .. })
        ));
        assert!(matches!(
            archive.append(&sha256(b""), b""),
            Err(ArchiveError::TooLarge { .. })
        ));
        assert!(matches!(
            ArchiveWriter::open(
                &dir.path().join("other"),
                ArchiveOptions {
                    max_body_bytes: MAX_ARCHIVED_BODY_BYTES + 1,
                    ..options
                }
            ),
            Err(ArchiveError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_tail_cut_at_every_byte_of_the_last_entry_is_cut_at_open() {
        let dir = tempfile::tempdir().expect("temp");
        let (segment, starts) = write(dir.path(), 4);
        let whole = std::fs::read(&segment).expect("read");
        let last = usize::try_from(starts[3]).expect("small");
        for cut in last..whole.len() {
            std::fs::write(&segment, &whole[..cut]).expect("cut");
            {
                let archive = ArchiveWriter::open(dir.path(), small()).expect("a torn tail opens");
                let recovery = archive.recovery();
                assert_eq!(recovery.newest_entries, 3, "cut at {cut}");
                let expected_cut = (cut > last).then_some(starts[3]);
                assert_eq!(recovery.cut_at_bytes, expected_cut, "cut at {cut}");
                assert_eq!(recovery.cut_bytes, (cut - last) as u64, "cut at {cut}");
                // Appending goes on where the entries that check end.
                let b = body(9);
                archive.append(&sha256(&b), &b).expect("append");
            }
            for i in 0..3 {
                assert_eq!(load(dir.path(), i).expect("load"), body(i), "cut at {cut}");
            }
            assert!(
                matches!(load(dir.path(), 3), Err(ArchiveError::Missing { .. })),
                "cut at {cut}"
            );
            assert_eq!(load(dir.path(), 9).expect("load"), body(9), "cut at {cut}");
        }
    }

    #[test]
    fn a_zero_filled_tail_is_cut_at_open() {
        let dir = tempfile::tempdir().expect("temp");
        let (segment, starts) = write(dir.path(), 4);
        let whole = std::fs::read(&segment).expect("read");
        let last = usize::try_from(starts[3]).expect("small");
        // The last entry zeroed from each of its bytes on, and the file extended by
        // zeros past it.
        for from in last..whole.len() {
            let mut bytes = whole.clone();
            bytes[from..].fill(0);
            bytes.resize(whole.len() + 4096, 0);
            std::fs::write(&segment, &bytes).expect("zero");
            let archive = ArchiveWriter::open(dir.path(), small()).expect("opens");
            assert_eq!(
                archive.recovery().cut_at_bytes,
                Some(starts[3]),
                "from {from}"
            );
            drop(archive);
            assert_eq!(load(dir.path(), 2).expect("load"), body(2));
        }
        // Zeros after the last whole entry only.
        let mut bytes = whole.clone();
        bytes.resize(whole.len() + 100, 0);
        std::fs::write(&segment, &bytes).expect("zero");
        let archive = ArchiveWriter::open(dir.path(), small()).expect("opens");
        assert_eq!(archive.recovery().cut_at_bytes, Some(whole.len() as u64));
        assert_eq!(archive.recovery().newest_entries, 4);
    }

    #[test]
    fn a_flipped_byte_is_damage_in_the_middle_and_a_torn_tail_at_the_end() {
        let dir = tempfile::tempdir().expect("temp");
        let (segment, starts) = write(dir.path(), 4);
        let whole = std::fs::read(&segment).expect("read");
        let (second, third, last) = (
            usize::try_from(starts[1]).expect("small"),
            usize::try_from(starts[2]).expect("small"),
            usize::try_from(starts[3]).expect("small"),
        );
        // Every byte of a middle entry: opening fails naming the segment and the
        // entry; a body before it is still read, one after it is not.
        for at in second..third {
            let mut bytes = whole.clone();
            bytes[at] ^= 0x20;
            std::fs::write(&segment, &bytes).expect("flip");
            match ArchiveWriter::open(dir.path(), small()) {
                Err(ArchiveError::Damaged {
                    segment: named,
                    offset_bytes,
                    ..
                }) => {
                    assert_eq!(named, segment, "flip at {at}");
                    assert_eq!(offset_bytes, starts[1], "flip at {at}");
                }
                other => panic!("flip at {at}: {other:?}"),
            }
            assert_eq!(
                load(dir.path(), 0).expect("before"),
                body(0),
                "flip at {at}"
            );
            let after = load(dir.path(), 2);
            assert!(
                matches!(after, Err(ArchiveError::Damaged { offset_bytes, .. }) if offset_bytes == starts[1]),
                "flip at {at}: {after:?}"
            );
            // The damaged entry's own body: altered (a body byte) or not found.
            let own = load(dir.path(), 1);
            assert!(
                matches!(
                    own,
                    Err(ArchiveError::HashMismatch { offset_bytes, .. }) if offset_bytes == starts[1]
                ) || matches!(own, Err(ArchiveError::Damaged { .. })),
                "flip at {at}: {own:?}"
            );
            if at >= second + ENTRY_HEADER_BYTES as usize {
                assert!(
                    matches!(own, Err(ArchiveError::HashMismatch { .. })),
                    "flip at {at}: {own:?}"
                );
            }
        }
        // Every byte of the last entry: indistinguishable from a torn write, cut.
        for at in last..whole.len() {
            let mut bytes = whole.clone();
            bytes[at] ^= 0x20;
            std::fs::write(&segment, &bytes).expect("flip");
            let archive = ArchiveWriter::open(dir.path(), small()).expect("opens");
            assert_eq!(
                archive.recovery().cut_at_bytes,
                Some(starts[3]),
                "flip at {at}"
            );
        }
        // The segment's header.
        for at in 0..usize::try_from(SEGMENT_HEADER_BYTES).expect("small") {
            let mut bytes = whole.clone();
            bytes[at] ^= 0x01;
            std::fs::write(&segment, &bytes).expect("flip");
            assert!(
                matches!(
                    ArchiveWriter::open(dir.path(), small()),
                    Err(ArchiveError::Damaged {
                        offset_bytes: 0,
                        damage: Damage::SegmentHeader,
                        ..
                    })
                ),
                "flip at {at}"
            );
        }
    }

    #[test]
    fn a_kept_segment_count_bounds_the_archive_and_keeps_the_newest_bodies() {
        let dir = tempfile::tempdir().expect("temp");
        let options = ArchiveOptions {
            max_body_bytes: 1 << 20,
            segment_limit_bytes: 300,
            keep_segments: Some(3),
        };
        let mut most = 0;
        {
            let archive = ArchiveWriter::open(dir.path(), options).expect("open");
            for i in 0..60 {
                let b = body(i);
                archive.append(&sha256(&b), &b).expect("append");
                let segments = list_segments(dir.path()).expect("list");
                most = most.max(segments.len());
                // Always the newest ones, in a row.
                assert!(
                    segments.windows(2).all(|pair| pair[1] == pair[0] + 1),
                    "{segments:?}"
                );
            }
        }
        assert_eq!(most, 3, "never more than the kept count");
        // The newest bodies load; the oldest are gone (replay: the input is missing).
        assert_eq!(load(dir.path(), 59).expect("the newest body"), body(59));
        assert!(matches!(
            load(dir.path(), 0),
            Err(ArchiveError::Missing { .. })
        ));
        // It reopens and goes on after the gap in segment numbers.
        let archive = ArchiveWriter::open(dir.path(), options).expect("reopen");
        let b = body(60);
        archive
            .append(&sha256(&b), &b)
            .expect("append after reopening");
        assert_eq!(load(dir.path(), 60).expect("load"), b);
        assert!(list_segments(dir.path()).expect("list").len() <= 3);
    }

    #[test]
    fn damage_in_an_older_segment_is_named_when_read() {
        let dir = tempfile::tempdir().expect("temp");
        let options = ArchiveOptions {
            max_body_bytes: 1 << 20,
            segment_limit_bytes: 200,
            keep_segments: None,
        };
        {
            let archive = ArchiveWriter::open(dir.path(), options).expect("open");
            for i in 0..6 {
                let b = body(i);
                archive.append(&sha256(&b), &b).expect("append");
            }
        }
        let reader = RequestArchive::at(dir.path());
        let first = reader.segment_path(1);
        let mut bytes = std::fs::read(&first).expect("read");
        let end = bytes.len();
        // Its last entry: in an older segment, not a tail.
        bytes[end - 1] ^= 0x01;
        std::fs::write(&first, &bytes).expect("flip");
        let later = body(5);
        let result = reader.load(&sha256(&later));
        assert!(
            matches!(&result, Err(ArchiveError::Damaged { segment, .. }) if *segment == first),
            "{result:?}"
        );
        // The writer only reads the newest segment: it opens.
        ArchiveWriter::open(dir.path(), options).expect("opens");
    }

    #[test]
    fn the_old_one_file_per_body_layout_is_still_read() {
        let dir = tempfile::tempdir().expect("temp");
        let reader = RequestArchive::at(dir.path());
        let b = body(1);
        let hash = sha256(&b);
        std::fs::write(reader.legacy_path_of(&hash), &b).expect("write");
        assert_eq!(reader.load(&hash).expect("load"), b);
        std::fs::write(reader.legacy_path_of(&hash), body(2)).expect("alter");
        assert!(matches!(
            reader.load(&hash),
            Err(ArchiveError::HashMismatch {
                offset_bytes: 0,
                ..
            })
        ));
        // Both layouts in one directory: a gateway of this version appending to an
        // archive of the old one.
        let archive = ArchiveWriter::open(dir.path(), small()).expect("open");
        let new = body(3);
        archive.append(&sha256(&new), &new).expect("append");
        assert_eq!(reader.load(&sha256(&new)).expect("load"), new);
        assert!(reader.load(&hash).is_err());
    }

    #[test]
    fn the_logs_data_syncs_sync_the_archive_first() {
        use calybris_wal::storage::{MemDirectory, Storage as _};
        let dir = tempfile::tempdir().expect("temp");
        let archive = ArchiveWriter::open(dir.path(), small()).expect("open");
        let log = MemDirectory::new();
        let synced = archive.synced(log.clone());
        let mut segment = synced.create_segment(0, b"header").expect("segment");
        let before = archive
            .newest
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed);
        segment.sync_data().expect("inline sync");
        let handle = segment
            .sync_handle()
            .expect("handle")
            .expect("a memory disk has one");
        handle.sync_data().expect("threaded sync");
        let after = archive
            .newest
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(after, before + 2);
        // The watermark file's syncs are its own.
        let mut ack = synced.create_ack(b"ack").expect("ack");
        ack.sync_data().expect("sync");
        assert!(ack.sync_handle().expect("handle").is_some());
        assert_eq!(
            archive
                .newest
                .syncs
                .load(std::sync::atomic::Ordering::Relaxed),
            after
        );
        assert_eq!(synced.list_segments().expect("list"), vec![0]);
    }
}
