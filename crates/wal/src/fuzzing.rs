//! Entry points for the cargo-fuzz targets under `fuzz/`. Not a stable API.
//!
//! Each function must never panic on any input; it asserts the invariants that
//! must hold whatever the bytes are, so a fuzzer finds both crashes and lies.

use serde::{Deserialize, Serialize};

use crate::format::{
    FRAME_OVERHEAD_BYTES, GENESIS_HASH, HEADER_LEN_BYTES, SegmentHeader, WalKey, encode_frame,
};
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

/// Fuzz entry for the frame decoder. The first byte picks a mode: odd builds a
/// valid log from the input, damages it as the input says, and checks the reader
/// returns only a prefix of the original records; even reads the rest of the
/// input as a raw segment.
pub fn frames(bytes: &[u8]) {
    match bytes.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => damaged_log(*mode, rest),
        Some((_, rest)) => raw_segment(rest),
        None => raw_segment(bytes),
    }
}

/// Most frames one damaged-log case builds.
const MAX_FUZZ_FRAMES: usize = 8;

/// Builds a valid log of up to eight payloads cut from `bytes`, flips or cuts it
/// where `bytes` says, and checks what the reader returns is a prefix of what
/// was written: damage may end the log early, never change it.
fn damaged_log(mode: u8, bytes: &[u8]) {
    let [count, at_lo, at_hi, kind, mask, rest @ ..] = bytes else {
        return;
    };
    let key = (mode & 2 != 0)
        .then(|| WalKey::new(&FUZZ_KEY).ok())
        .flatten();
    let count = usize::from(*count) % MAX_FUZZ_FRAMES + 1;
    let chunk = rest.len().div_ceil(count).max(1);
    let payloads: Vec<&[u8]> = rest.chunks(chunk).collect();
    let mut log = SegmentHeader::new(key.as_ref(), 0, GENESIS_HASH)
        .encode()
        .to_vec();
    let mut prev = GENESIS_HASH;
    for (sequence, payload) in payloads.iter().enumerate() {
        match encode_frame(&mut log, key.as_ref(), &prev, sequence as u64, payload) {
            Ok(hash) => prev = hash,
            Err(_) => return,
        }
    }
    let at = usize::from(u16::from_le_bytes([*at_lo, *at_hi])) % log.len().max(1);
    let damaged = match kind % 3 {
        0 => false,
        1 => {
            if let Some(byte) = log.get_mut(at) {
                *byte ^= mask | 1;
            }
            true
        }
        _ => {
            log.truncate(at);
            true
        }
    };
    let disk = MemDisk::with_bytes(log);
    let Ok(mut reader) = FrameReader::new(disk.reader(), key.as_ref()) else {
        assert!(
            damaged && at < HEADER_LEN_BYTES,
            "an undamaged header must decode"
        );
        return;
    };
    let mut index = 0usize;
    while let Ok(Some(frame)) = reader.next_frame() {
        assert!(
            payloads.get(index) == Some(&frame.payload),
            "record {index} differs from what was written"
        );
        index += 1;
    }
    if !damaged {
        assert!(index == payloads.len() && reader.outcome().is_some_and(Recovery::is_clean));
    }
}

/// Reads `bytes` as a log segment, unkeyed and keyed, and checks the outcome is
/// consistent with what the reader returned.
fn raw_segment(bytes: &[u8]) {
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
            end = frame.offset_bytes + (frame.payload.len() + FRAME_OVERHEAD_BYTES) as u64;
            frames += 1;
        }
        let len = bytes.len() as u64;
        match reader.outcome() {
            Some(Recovery::Clean {
                anchor, len_bytes, ..
            }) => {
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

/// Fuzz entry for the acknowledgement watermark: `bytes` is taken as the `ACK`
/// file of a valid three-record segment directory. Decoding must never panic, a
/// slot that decodes must re-encode to itself, and the scan must end in a closed
/// outcome that keeps at most the records that were written.
pub fn watermark(bytes: &[u8]) {
    use crate::format::{ACK_SLOT_LEN_BYTES, AckSlot};
    use crate::storage::{Directory, MemDirectory};

    let key = WalKey::new(&FUZZ_KEY).ok();
    for key in [None, key.as_ref()] {
        let (slot, damaged) = AckSlot::decode_file(bytes, key);
        assert!(usize::from(damaged) <= 2);
        if let Some(slot) = slot {
            let again = slot.encode(key);
            assert!(again.len() == ACK_SLOT_LEN_BYTES);
            assert!(AckSlot::decode(&again, key) == Some(slot));
        }
    }
    let dir = MemDirectory::new();
    let header = SegmentHeader::new(None, 0, GENESIS_HASH).encode();
    let Ok(mut segment) = dir.create_segment(0, &header) else {
        return;
    };
    let mut frames = Vec::new();
    let mut prev = GENESIS_HASH;
    for sequence in 0..3u64 {
        let Ok(payload) = postcard::to_allocvec(&FuzzRecord::Plain {
            id: sequence,
            name: "fuzz".to_owned(),
            data: vec![sequence as u8; 3],
        }) else {
            return;
        };
        match encode_frame(&mut frames, None, &prev, sequence, &payload) {
            Ok(hash) => prev = hash,
            Err(_) => return,
        }
    }
    if crate::storage::Storage::append(&mut segment, &frames).is_err() {
        return;
    }
    dir.set_ack(Some(MemDisk::with_bytes(bytes.to_vec())));
    match crate::segmented::scan_dir::<FuzzRecord, _>(dir, None, None) {
        Ok(outcome) => {
            if let Some(anchor) = outcome.anchor() {
                assert!(anchor.next_sequence <= 3);
            }
        }
        Err(error) => panic!("in-memory scan failed with I/O: {error}"),
    }
}
