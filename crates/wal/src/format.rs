//! The byte format: named constants, the segment header, the frame header and the
//! entry hash. Everything here is a pure function of its arguments; the reader and
//! the writers are the only callers that touch storage.
//!
//! The normative description lives in `docs/SPECIFICATION.md` ("The write-ahead
//! log"); golden files under `crates/wal/tests/data/` pin it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::WalError;
use crate::recovery::{ANCHOR_LEN_BYTES, WalAnchor};

/// The eight bytes every segment file starts with.
pub const MAGIC: [u8; 8] = *b"CALYWAL\0";

/// The only format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 1;

/// Size of the segment header, in bytes.
pub const HEADER_LEN_BYTES: usize = 96;

/// Header flag bit: the entry hashes are HMAC-SHA-256 tags under a secret key.
pub const FLAG_KEYED: u8 = 0x01;

/// Size of a frame header (payload length and its complement), in bytes.
pub const FRAME_HEADER_LEN_BYTES: usize = 8;

/// Size of an entry hash (SHA-256 digest or HMAC-SHA-256 tag), in bytes.
pub const ENTRY_HASH_LEN_BYTES: usize = 32;

/// Bytes a frame adds around its payload: the frame header and the entry hash.
pub const FRAME_OVERHEAD_BYTES: usize = FRAME_HEADER_LEN_BYTES + ENTRY_HASH_LEN_BYTES;

/// The largest payload a frame may carry, in bytes. The reader refuses any frame
/// header that claims more, so a corrupt length can never make it allocate more
/// than this (plus [`FRAME_OVERHEAD_BYTES`]).
pub const MAX_PAYLOAD_BYTES: u32 = 16 * 1024 * 1024;

/// The shortest HMAC key accepted, in bytes.
pub const MIN_KEY_LEN_BYTES: usize = 32;

/// The entry hash that the first record of a log chains on.
pub const GENESIS_HASH: [u8; ENTRY_HASH_LEN_BYTES] = [0; ENTRY_HASH_LEN_BYTES];

/// The message whose HMAC under the key is the key fingerprint in the header.
pub const KEY_FINGERPRINT_LABEL: &[u8] = b"calybris-wal/key-fingerprint/v1";

/// Bytes of the header that the header check covers.
const HEADER_CHECKED_LEN_BYTES: usize = 88;

/// Size of the header check (a SHA-256 prefix), in bytes.
const HEADER_CHECK_LEN_BYTES: usize = 8;

/// An entry hash: SHA-256 digest or HMAC-SHA-256 tag.
pub type EntryHash = [u8; ENTRY_HASH_LEN_BYTES];

/// A secret key for the keyed (HMAC-SHA-256) mode.
///
/// The key itself never reaches a file: the header stores only its fingerprint,
/// `HMAC-SHA-256(key, "calybris-wal/key-fingerprint/v1")`. `Debug` prints the
/// fingerprint's first bytes, never the key.
#[derive(Clone)]
pub struct WalKey {
    mac: Hmac<Sha256>,
    fingerprint: EntryHash,
}

impl WalKey {
    /// Builds a key from at least [`MIN_KEY_LEN_BYTES`] secret bytes.
    ///
    /// # Errors
    /// [`WalError::KeyTooShort`] when `secret` is shorter than 32 bytes.
    pub fn new(secret: &[u8]) -> Result<Self, WalError> {
        if secret.len() < MIN_KEY_LEN_BYTES {
            return Err(WalError::KeyTooShort {
                len_bytes: secret.len(),
            });
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| {
            WalError::KeyTooShort {
                len_bytes: secret.len(),
            }
        })?;
        let fingerprint = mac
            .clone()
            .chain_update(KEY_FINGERPRINT_LABEL)
            .finalize()
            .into_bytes()
            .into();
        Ok(Self { mac, fingerprint })
    }

    /// The fingerprint written into the header of every segment under this key.
    #[must_use]
    pub fn fingerprint(&self) -> EntryHash {
        self.fingerprint
    }
}

impl core::fmt::Debug for WalKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "WalKey {{ fingerprint: ")?;
        for byte in self.fingerprint.iter().take(8) {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "… }}")
    }
}

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Whether entry hashes are HMAC tags.
    pub keyed: bool,
    /// Sequence number of the first frame in this segment.
    pub first_sequence: u64,
    /// Entry hash the first frame chains on ([`GENESIS_HASH`] for a new log).
    pub prev_hash: EntryHash,
    /// Key fingerprint when keyed, all zeros otherwise.
    pub key_fingerprint: EntryHash,
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    /// The first eight bytes are not [`MAGIC`].
    BadMagic,
    /// The version field names a version this crate does not know.
    UnknownVersion(u16),
    /// The header check does not match, or a reserved bit or byte is set.
    Checksum,
}

impl SegmentHeader {
    /// A header for a segment starting at `first_sequence` under `key`.
    #[must_use]
    pub fn new(key: Option<&WalKey>, first_sequence: u64, prev_hash: EntryHash) -> Self {
        Self {
            keyed: key.is_some(),
            first_sequence,
            prev_hash,
            key_fingerprint: key.map_or([0; ENTRY_HASH_LEN_BYTES], WalKey::fingerprint),
        }
    }

    /// Encodes the header into its 96 bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_LEN_BYTES] {
        let mut out = [0u8; HEADER_LEN_BYTES];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[10] = if self.keyed { FLAG_KEYED } else { 0 };
        // Bytes 11..16 are reserved and stay zero.
        out[16..24].copy_from_slice(&self.first_sequence.to_le_bytes());
        out[24..56].copy_from_slice(&self.prev_hash);
        out[56..88].copy_from_slice(&self.key_fingerprint);
        let check = header_check(&out);
        out[88..96].copy_from_slice(&check);
        out
    }

    /// Decodes a header. Indexing below is on a fixed-size array with constant
    /// ranges, so it cannot panic whatever the bytes are.
    pub(crate) fn decode(bytes: &[u8; HEADER_LEN_BYTES]) -> Result<Self, HeaderProblem> {
        if bytes[0..8] != MAGIC {
            return Err(HeaderProblem::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::UnknownVersion(version));
        }
        let check = header_check(bytes);
        if !bool::from(check.ct_eq(&bytes[88..96])) {
            return Err(HeaderProblem::Checksum);
        }
        let flags = bytes[10];
        if flags & !FLAG_KEYED != 0 || bytes[11..16].iter().any(|b| *b != 0) {
            return Err(HeaderProblem::Checksum);
        }
        let mut first_sequence = [0u8; 8];
        first_sequence.copy_from_slice(&bytes[16..24]);
        let mut prev_hash = [0u8; ENTRY_HASH_LEN_BYTES];
        prev_hash.copy_from_slice(&bytes[24..56]);
        let mut key_fingerprint = [0u8; ENTRY_HASH_LEN_BYTES];
        key_fingerprint.copy_from_slice(&bytes[56..88]);
        Ok(Self {
            keyed: flags & FLAG_KEYED != 0,
            first_sequence: u64::from_le_bytes(first_sequence),
            prev_hash,
            key_fingerprint,
        })
    }
}

fn header_check(bytes: &[u8; HEADER_LEN_BYTES]) -> [u8; HEADER_CHECK_LEN_BYTES] {
    let digest = Sha256::digest(&bytes[..HEADER_CHECKED_LEN_BYTES]);
    let mut check = [0u8; HEADER_CHECK_LEN_BYTES];
    check.copy_from_slice(&digest[..HEADER_CHECK_LEN_BYTES]);
    check
}

/// Encodes a frame header: the payload length and its bitwise complement.
#[must_use]
pub fn encode_frame_header(payload_len_bytes: u32) -> [u8; FRAME_HEADER_LEN_BYTES] {
    let mut out = [0u8; FRAME_HEADER_LEN_BYTES];
    out[0..4].copy_from_slice(&payload_len_bytes.to_le_bytes());
    out[4..8].copy_from_slice(&(!payload_len_bytes).to_le_bytes());
    out
}

/// Decodes a frame header; `None` when the complement does not match or the length
/// exceeds [`MAX_PAYLOAD_BYTES`].
#[must_use]
pub fn decode_frame_header(bytes: &[u8; FRAME_HEADER_LEN_BYTES]) -> Option<u32> {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let check = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    (check == !len && len <= MAX_PAYLOAD_BYTES).then_some(len)
}

/// The entry hash of a frame: SHA-256, or HMAC-SHA-256 under `key`, over
/// `prev_hash || sequence (u64 LE) || payload length (u32 LE) || payload`.
#[must_use]
pub fn entry_hash(
    key: Option<&WalKey>,
    prev_hash: &EntryHash,
    sequence: u64,
    payload: &[u8],
) -> EntryHash {
    // The writer refuses payloads over MAX_PAYLOAD_BYTES, so the length fits.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    match key {
        Some(key) => {
            let mut mac = key.mac.clone();
            mac.update(prev_hash);
            mac.update(&sequence.to_le_bytes());
            mac.update(&len.to_le_bytes());
            mac.update(payload);
            mac.finalize().into_bytes().into()
        }
        None => {
            let sequence = sequence.to_le_bytes();
            let len = len.to_le_bytes();
            let parts: [&[u8]; 4] = [prev_hash, &sequence, &len, payload];
            if let Some(hash) = sha256_of_short(&parts) {
                return hash;
            }
            let mut hasher = Sha256::new();
            for part in parts {
                hasher.update(part);
            }
            hasher.finalize().into()
        }
    }
}

/// SHA-256's initial hash value (FIPS 180-4, section 5.3.3), for the hashes
/// the workspace computes straight through the compression function.
pub const SHA256_INITIAL_STATE: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The longest message [`sha256_of_short`] takes: what fits with its padding
/// (one `0x80` byte and the 8-byte bit length) in two 64-byte blocks.
pub const SHORT_MESSAGE_MAX_BYTES: usize = 2 * 64 - 9;

/// SHA-256 of the concatenation of `parts`, when it is at most
/// [`SHORT_MESSAGE_MAX_BYTES`] long (`None` otherwise): the message and its
/// padding laid out on the stack and compressed in one call, without a
/// hasher's buffering. A small record's entry hash is one or two blocks, and
/// this is most of what reading or writing it costs.
#[must_use]
pub fn sha256_of_short(parts: &[&[u8]]) -> Option<EntryHash> {
    let mut message = [0u8; 128];
    let mut len = 0usize;
    for part in parts {
        let end = len.checked_add(part.len())?;
        if end > SHORT_MESSAGE_MAX_BYTES {
            return None;
        }
        message[len..end].copy_from_slice(part);
        len = end;
    }
    message[len] = 0x80;
    let used_bytes = if len + 9 <= 64 { 64 } else { 128 };
    message[used_bytes - 8..used_bytes].copy_from_slice(&(len as u64 * 8).to_be_bytes());
    let (blocks, _) = message[..used_bytes].as_chunks::<64>();
    let mut state = SHA256_INITIAL_STATE;
    sha2::block_api::compress256(&mut state, blocks);
    let mut out = [0u8; ENTRY_HASH_LEN_BYTES];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    Some(out)
}

/// Compares two entry hashes in constant time.
#[must_use]
pub fn hashes_equal(a: &EntryHash, b: &EntryHash) -> bool {
    // Four 64-bit words XORed and ORed together (no branch on the data), then
    // one constant-time comparison of the result: `subtle`'s byte-wise
    // comparison puts an optimisation barrier on each of the 32 bytes, which
    // showed as several per cent of a verified read.
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let word = |bytes: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(bytes);
            u64::from_le_bytes(w)
        };
        diff |= word(x) ^ word(y);
    }
    bool::from(diff.ct_eq(&0))
}

/// Appends one whole frame for `payload` to `out` and returns its entry hash.
///
/// # Errors
/// [`WalError::RecordTooLarge`] when the payload exceeds [`MAX_PAYLOAD_BYTES`].
pub fn encode_frame(
    out: &mut Vec<u8>,
    key: Option<&WalKey>,
    prev_hash: &EntryHash,
    sequence: u64,
    payload: &[u8],
) -> Result<EntryHash, WalError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_PAYLOAD_BYTES)
        .ok_or(WalError::RecordTooLarge {
            len_bytes: payload.len() as u64,
            max_bytes: MAX_PAYLOAD_BYTES,
        })?;
    let hash = entry_hash(key, prev_hash, sequence, payload);
    out.reserve(payload.len() + FRAME_OVERHEAD_BYTES);
    out.extend_from_slice(&encode_frame_header(len));
    out.extend_from_slice(payload);
    out.extend_from_slice(&hash);
    Ok(hash)
}

/// The eight bytes every acknowledgement watermark slot starts with.
pub const ACK_MAGIC: [u8; 8] = *b"CALYACK\0";

/// The only watermark slot version this crate reads and writes.
pub const ACK_VERSION: u16 = 1;

/// Size of one watermark slot, in bytes.
pub const ACK_SLOT_LEN_BYTES: usize = 128;

/// How many slots a watermark file holds: written alternately, so a torn write of
/// one slot always leaves the other intact.
pub const ACK_SLOT_COUNT: usize = 2;

/// Size of a whole watermark file, in bytes.
pub const ACK_FILE_LEN_BYTES: usize = ACK_SLOT_LEN_BYTES * ACK_SLOT_COUNT;

/// The label the slot check starts with, separating it from every entry hash.
pub const ACK_CHECK_LABEL: &[u8] = b"calybris-wal/ack-slot/v1";

/// Bytes of a slot that its check covers.
const ACK_CHECKED_LEN_BYTES: usize = 96;

/// A position in a log that was acknowledged as durable: the records before
/// `anchor.next_sequence` end at byte `end_offset_bytes` of the segment whose
/// first sequence is `segment_first_sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckPoint {
    /// First sequence number of the segment the position is in (the header's
    /// first sequence for a single file).
    pub segment_first_sequence: u64,
    /// Where the acknowledged records end in that segment, in bytes (the header
    /// length when no record of it is acknowledged).
    pub end_offset_bytes: u64,
    /// The position after the last acknowledged record.
    pub anchor: WalAnchor,
}

/// One decoded watermark slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckSlot {
    /// Write counter: the valid slot with the larger one is the current watermark.
    pub generation: u64,
    /// The acknowledged position.
    pub point: AckPoint,
}

impl AckSlot {
    /// Index of the slot this generation is written to.
    #[must_use]
    pub fn slot_index(generation: u64) -> usize {
        usize::from(generation % ACK_SLOT_COUNT as u64 == 1)
    }

    /// Byte offset of this generation's slot in the watermark file.
    #[must_use]
    pub fn slot_offset_bytes(generation: u64) -> u64 {
        (Self::slot_index(generation) * ACK_SLOT_LEN_BYTES) as u64
    }

    /// Encodes the slot into its 128 bytes, checked (HMAC under `key`, SHA-256
    /// without one).
    #[must_use]
    pub fn encode(&self, key: Option<&WalKey>) -> [u8; ACK_SLOT_LEN_BYTES] {
        let mut out = [0u8; ACK_SLOT_LEN_BYTES];
        out[0..8].copy_from_slice(&ACK_MAGIC);
        out[8..10].copy_from_slice(&ACK_VERSION.to_le_bytes());
        out[10] = if key.is_some() { FLAG_KEYED } else { 0 };
        // Bytes 11..16 are reserved and stay zero.
        out[16..24].copy_from_slice(&self.generation.to_le_bytes());
        out[24..32].copy_from_slice(&self.point.segment_first_sequence.to_le_bytes());
        out[32..40].copy_from_slice(&self.point.end_offset_bytes.to_le_bytes());
        out[40..80].copy_from_slice(&self.point.anchor.to_bytes());
        // Bytes 80..96 are reserved and stay zero.
        let check = ack_check(key, &out);
        out[96..128].copy_from_slice(&check);
        debug_assert_eq!(Self::decode(&out, key), Some(*self));
        out
    }

    /// Decodes a slot; `None` when it is absent, torn, damaged, written under
    /// another key, or its fields are inconsistent. Indexing is on a fixed-size
    /// array with constant ranges, so it cannot panic whatever the bytes are.
    #[must_use]
    pub fn decode(bytes: &[u8; ACK_SLOT_LEN_BYTES], key: Option<&WalKey>) -> Option<Self> {
        if bytes[0..8] != ACK_MAGIC
            || u16::from_le_bytes([bytes[8], bytes[9]]) != ACK_VERSION
            || !hashes_equal(&ack_check(key, bytes), &slice_32(&bytes[96..128]))
        {
            return None;
        }
        let keyed = bytes[10] == FLAG_KEYED;
        if (bytes[10] & !FLAG_KEYED) != 0
            || keyed != key.is_some()
            || bytes[11..16].iter().chain(&bytes[80..96]).any(|b| *b != 0)
        {
            return None;
        }
        let mut anchor = [0u8; ANCHOR_LEN_BYTES];
        anchor.copy_from_slice(&bytes[40..80]);
        let point = AckPoint {
            segment_first_sequence: u64_at(bytes, 24),
            end_offset_bytes: u64_at(bytes, 32),
            anchor: WalAnchor::from_bytes(&anchor),
        };
        // A position before its own segment's header, or a segment that starts
        // after the records it vouches for, is not one this crate writes.
        if point.end_offset_bytes < HEADER_LEN_BYTES as u64
            || point.segment_first_sequence > point.anchor.next_sequence
        {
            return None;
        }
        Some(Self {
            generation: u64_at(bytes, 16),
            point,
        })
    }

    /// The current watermark of a whole watermark file: the valid slot with the
    /// larger generation, and how many slots were not valid. A file shorter than
    /// [`ACK_FILE_LEN_BYTES`] has its missing slots counted as not valid.
    #[must_use]
    pub fn decode_file(bytes: &[u8], key: Option<&WalKey>) -> (Option<Self>, u8) {
        let mut best: Option<Self> = None;
        let mut damaged = 0u8;
        for index in 0..ACK_SLOT_COUNT {
            let start = index * ACK_SLOT_LEN_BYTES;
            let slot = bytes
                .get(start..start + ACK_SLOT_LEN_BYTES)
                .and_then(|s| <&[u8; ACK_SLOT_LEN_BYTES]>::try_from(s).ok())
                .and_then(|s| Self::decode(s, key))
                .filter(|slot| Self::slot_index(slot.generation) == index);
            match slot {
                Some(slot) if best.is_none_or(|b| slot.generation > b.generation) => {
                    best = Some(slot);
                }
                Some(_) => {}
                None => damaged += 1,
            }
        }
        (best, damaged)
    }
}

fn u64_at(bytes: &[u8; ACK_SLOT_LEN_BYTES], at: usize) -> u64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(bytes.get(at..at + 8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(out)
}

fn slice_32(bytes: &[u8]) -> EntryHash {
    let mut out = [0u8; ENTRY_HASH_LEN_BYTES];
    if let Some(src) = bytes.get(..ENTRY_HASH_LEN_BYTES) {
        out.copy_from_slice(src);
    }
    out
}

/// The slot check: `H(ACK_CHECK_LABEL || bytes 0..96)`, HMAC-SHA-256 under the key
/// or SHA-256 without one.
fn ack_check(key: Option<&WalKey>, bytes: &[u8; ACK_SLOT_LEN_BYTES]) -> EntryHash {
    let checked = &bytes[..ACK_CHECKED_LEN_BYTES];
    match key {
        Some(key) => key
            .mac
            .clone()
            .chain_update(ACK_CHECK_LABEL)
            .chain_update(checked)
            .finalize()
            .into_bytes()
            .into(),
        None => {
            let mut hasher = Sha256::new();
            hasher.update(ACK_CHECK_LABEL);
            hasher.update(checked);
            hasher.finalize().into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short path equals the hasher at every length it takes (0 to 119
    /// bytes, split into parts at every point), and declines one byte more.
    /// Equal hashes compare equal, and a hash differing in any one bit of
    /// any byte does not.
    #[test]
    fn hashes_equal_sees_every_bit() {
        let a: EntryHash = core::array::from_fn(|i| (i as u8).wrapping_mul(29));
        assert!(hashes_equal(&a, &a));
        for byte in 0..ENTRY_HASH_LEN_BYTES {
            for bit in 0..8 {
                let mut b = a;
                b[byte] ^= 1 << bit;
                assert!(!hashes_equal(&a, &b), "byte {byte}, bit {bit}");
                assert!(!hashes_equal(&b, &a), "byte {byte}, bit {bit}");
            }
        }
    }

    #[test]
    fn short_sha256_equals_the_hasher_at_every_length() {
        let message: Vec<u8> = (0..=SHORT_MESSAGE_MAX_BYTES + 1)
            .map(|i| (i as u8).wrapping_mul(37) ^ 0x5a)
            .collect();
        for len in 0..=SHORT_MESSAGE_MAX_BYTES {
            let whole = &message[..len];
            let want: EntryHash = Sha256::digest(whole).into();
            for split in 0..=len {
                let (a, b) = whole.split_at(split);
                assert_eq!(
                    sha256_of_short(&[a, b]),
                    Some(want),
                    "length {len}, split {split}"
                );
            }
        }
        let long = &message[..=SHORT_MESSAGE_MAX_BYTES];
        assert_eq!(sha256_of_short(&[long]), None);
        assert_eq!(sha256_of_short(&[&long[..60], &long[60..]]), None);
    }

    #[test]
    fn header_round_trips_and_rejects_every_single_byte_flip() {
        let key = WalKey::new(&[7u8; 32]).ok();
        let header = SegmentHeader::new(key.as_ref(), 42, [9u8; 32]);
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for index in 0..HEADER_LEN_BYTES {
            let mut flipped = bytes;
            flipped[index] ^= 0x01;
            assert!(SegmentHeader::decode(&flipped).is_err(), "byte {index}");
        }
    }

    #[test]
    fn frame_header_rejects_zero_fill_and_oversize() {
        assert_eq!(decode_frame_header(&[0; 8]), None);
        assert_eq!(decode_frame_header(&encode_frame_header(5)), Some(5));
        assert_eq!(
            decode_frame_header(&encode_frame_header(MAX_PAYLOAD_BYTES + 1)),
            None
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(matches!(
            WalKey::new(&[1u8; 31]),
            Err(WalError::KeyTooShort { len_bytes: 31 })
        ));
        assert!(WalKey::new(&[1u8; 32]).is_ok());
    }

    #[test]
    fn keyed_and_unkeyed_hashes_differ() {
        let key = WalKey::new(&[3u8; 32]).ok();
        let a = entry_hash(None, &GENESIS_HASH, 0, b"x");
        let b = entry_hash(key.as_ref(), &GENESIS_HASH, 0, b"x");
        assert_ne!(a, b);
        assert!(!format!("{:?}", key).contains("03030303"));
    }

    #[test]
    fn ack_slots_round_trip_and_reject_every_single_byte_flip() {
        let key = WalKey::new(&[7u8; 32]).ok();
        let slot = AckSlot {
            generation: 5,
            point: AckPoint {
                segment_first_sequence: 3,
                end_offset_bytes: 400,
                anchor: WalAnchor {
                    next_sequence: 9,
                    head_hash: [4; 32],
                },
            },
        };
        for key in [None, key.as_ref()] {
            let bytes = slot.encode(key);
            assert_eq!(AckSlot::decode(&bytes, key), Some(slot));
            for index in 0..ACK_SLOT_LEN_BYTES {
                let mut flipped = bytes;
                flipped[index] ^= 0x10;
                assert_eq!(AckSlot::decode(&flipped, key), None, "byte {index}");
            }
        }
        let bytes = slot.encode(key.as_ref());
        assert_eq!(AckSlot::decode(&bytes, None), None);
        let mut file = vec![0u8; ACK_FILE_LEN_BYTES];
        let at = AckSlot::slot_offset_bytes(5) as usize;
        file[at..at + ACK_SLOT_LEN_BYTES].copy_from_slice(&bytes);
        assert_eq!(AckSlot::decode_file(&file, key.as_ref()), (Some(slot), 1));
    }
}
