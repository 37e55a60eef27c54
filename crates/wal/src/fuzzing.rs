//! Entry points for the cargo-fuzz targets under `fuzz/`. Not a stable API.
//!
//! Each function must never panic on any input; it asserts the invariants that
//! must hold whatever the bytes are, so a fuzzer finds both crashes and lies.

use serde::{Deserialize, Serialize};

use crate::format::{HEADER_LEN_BYTES, WalKey};
use crate::reader::{FrameReader, decode_record, scan};
use crate::recovery::Recovery;
use crate::storage::MemDisk;

/// The key the fuzz targets try besides the unkeyed mode.
const FUZZ_KEY: [u8; 32] = [0x42; 32];

/// A record shape with the serde features logs use: integers, strings, bytes,
/// options, enums and sequences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FuzzRecord {
    /// A plain struct-like variant.
    Plain {
        /// An integer.
        id: u64,
        /// A string.
        name: String,
        /// Bytes.
        data: Vec<u8>,
    },
    /// Nested options and sequences.
    Nested(Option<Box<FuzzRecord>>, Vec<i32>),
    /// A unit variant.
    Empty,
}

/// Reads `bytes` as a log segment, unkeyed and keyed, and checks the outcome is
/// consistent with what the reader returned.
pub fn frames(bytes: &[u8]) {
    let key = WalKey::new(&FUZZ_KEY).ok();
    for key in [None, key.as_ref()] {
        let disk = MemDisk::with_bytes(bytes.to_vec());
        let Ok(mut reader) = FrameReader::new(disk.reader(), key) else {
            continue;
        };
        let mut frames = 0u64;
        let mut end = HEADER_LEN_BYTES as u64;
        while let Ok(Some(frame)) = reader.next_frame() {
            assert!(frame.offset_bytes == end, "frames are contiguous");
            end = frame.offset_bytes + frame.payload.len() as u64 + 40;
            frames += 1;
        }
        let len = bytes.len() as u64;
        match reader.outcome() {
            Some(Recovery::Clean { anchor, len_bytes }) => {
                assert!(*len_bytes == len && end == len);
                assert!(anchor.next_sequence - reader.header().first_sequence == frames);
            }
            Some(Recovery::TornTail {
                valid_len_bytes,
                cut_bytes,
                ..
            }) => assert!(*valid_len_bytes == end && valid_len_bytes + cut_bytes == len),
            Some(Recovery::Corrupt { .. }) => {}
            other => panic!("reader stopped without a closing outcome: {other:?}"),
        }
        let _ = scan::<FuzzRecord, _>(disk.reader(), key, None);
    }
}

/// Decodes `bytes` as record payloads; whatever decodes must re-encode to a
/// payload that decodes to the same value.
pub fn record(bytes: &[u8]) {
    if let Ok(record) = decode_record::<FuzzRecord>(bytes) {
        let again = postcard::to_allocvec(&record).ok();
        let decoded = again.as_deref().map(decode_record::<FuzzRecord>);
        assert!(matches!(decoded, Some(Ok(ref r)) if *r == record));
    }
    #[cfg(feature = "audit")]
    crate::audit::fuzz_decode(bytes);
}
