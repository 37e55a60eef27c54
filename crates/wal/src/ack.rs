//! The acknowledgement watermark: a small file beside the segments with two
//! checksummed slots, written alternately, that say how far the log was
//! acknowledged as durable. The byte layout is [`AckSlot`] in `format.rs`; this
//! module reads and writes it through [`Storage`].
//!
//! It is a lower bound of what was acknowledged: writers update it only after the
//! data it names is synced, so it never runs ahead of durable data. The
//! single-file [`WalWriter`](crate::WalWriter) writes it before `sync` returns;
//! the group-commit [`DurableWal`](crate::DurableWal) completes tickets as soon as
//! their data is synced and writes the watermark afterwards, off the
//! acknowledgement path, so acknowledged records may follow it (by the batches
//! synced while one watermark write was in flight). Recovery refuses damage at or
//! before it, keeps every verified record after it, and cuts only a torn tail.

use std::io;

use crate::format::{ACK_FILE_LEN_BYTES, ACK_SLOT_COUNT, AckPoint, AckSlot, WalKey};
use crate::recovery::Acknowledged;
use crate::storage::Storage;

/// What reading a watermark file found.
#[derive(Debug)]
pub(crate) enum Watermark<S> {
    /// There is no watermark file.
    Absent,
    /// The file exists but neither slot is valid.
    Damaged,
    /// The current slot, how many slots were bad, and the file for rewriting.
    Valid {
        slot: AckSlot,
        damaged_slots: u8,
        storage: S,
    },
}

impl<S> Watermark<S> {
    /// What the scan reports for this watermark (`Unknown` when absent or
    /// damaged; a damaged one is refused before it matters).
    pub(crate) fn acknowledged(&self) -> Acknowledged {
        match self {
            Self::Valid {
                slot,
                damaged_slots,
                ..
            } => Acknowledged::known(slot.point, *damaged_slots),
            Self::Absent | Self::Damaged => Acknowledged::Unknown,
        }
    }

    /// The acknowledged position, when valid.
    pub(crate) fn point(&self) -> Option<AckPoint> {
        match self {
            Self::Valid { slot, .. } => Some(slot.point),
            Self::Absent | Self::Damaged => None,
        }
    }

    /// The file and the generation the next write follows, when valid.
    pub(crate) fn into_parts(self) -> Option<(S, u64)> {
        match self {
            Self::Valid { slot, storage, .. } => Some((storage, slot.generation)),
            Self::Absent | Self::Damaged => None,
        }
    }
}

/// Reads a watermark file: at most [`ACK_FILE_LEN_BYTES`], whatever its length.
///
/// # Errors
/// The storage's own failure.
pub(crate) fn read_watermark<S: Storage>(
    storage: Option<S>,
    key: Option<&WalKey>,
) -> io::Result<Watermark<S>> {
    let Some(mut storage) = storage else {
        return Ok(Watermark::Absent);
    };
    let mut bytes = [0u8; ACK_FILE_LEN_BYTES];
    let mut have = 0usize;
    while have < ACK_FILE_LEN_BYTES {
        let rest = bytes.get_mut(have..).unwrap_or_default();
        let n = storage.read_at(have as u64, rest)?;
        if n == 0 {
            break;
        }
        have += n;
    }
    debug_assert!(have <= ACK_FILE_LEN_BYTES);
    let (slot, damaged_slots) = AckSlot::decode_file(bytes.get(..have).unwrap_or_default(), key);
    debug_assert!(usize::from(damaged_slots) <= ACK_SLOT_COUNT);
    Ok(match slot {
        Some(slot) => Watermark::Valid {
            slot,
            damaged_slots,
            storage,
        },
        None => Watermark::Damaged,
    })
}

/// The bytes of a new watermark file: both slots hold `point` (generations 0
/// and 1), so a fresh file never has a bad slot.
pub(crate) fn initial_file(point: AckPoint, key: Option<&WalKey>) -> [u8; ACK_FILE_LEN_BYTES] {
    let mut out = [0u8; ACK_FILE_LEN_BYTES];
    for generation in 0..ACK_SLOT_COUNT as u64 {
        let at = usize::try_from(AckSlot::slot_offset_bytes(generation)).unwrap_or(0);
        let bytes = AckSlot { generation, point }.encode(key);
        if let Some(target) = out.get_mut(at..at + bytes.len()) {
            target.copy_from_slice(&bytes);
        }
    }
    debug_assert_eq!(AckSlot::decode_file(&out, key).1, 0);
    out
}

/// Writes successive watermarks into alternate slots, syncing each.
#[derive(Debug)]
pub(crate) struct AckWriter<S> {
    storage: S,
    key: Option<WalKey>,
    generation: u64,
    last: AckPoint,
}

impl<S: Storage> AckWriter<S> {
    /// Continues a watermark file whose current slot has `generation`.
    pub(crate) fn new(storage: S, key: Option<WalKey>, generation: u64, last: AckPoint) -> Self {
        Self {
            storage,
            key,
            generation,
            last,
        }
    }

    /// The last position written.
    pub(crate) fn last(&self) -> AckPoint {
        self.last
    }

    /// Writes `point` into the slot after the current one and syncs it. The
    /// acknowledged position never goes backwards.
    ///
    /// # Errors
    /// The storage's own failure; the caller then poisons the log.
    pub(crate) fn write(&mut self, point: AckPoint) -> io::Result<()> {
        debug_assert!(point.anchor.next_sequence >= self.last.anchor.next_sequence);
        debug_assert!(point.segment_first_sequence >= self.last.segment_first_sequence);
        let generation = self
            .generation
            .checked_add(1)
            .ok_or_else(|| io::Error::other("watermark generation exhausted"))?;
        let slot = AckSlot { generation, point };
        let bytes = slot.encode(self.key.as_ref());
        // Checked right before it is written: the slot decodes to what we mean.
        debug_assert_eq!(AckSlot::decode(&bytes, self.key.as_ref()), Some(slot));
        self.storage
            .write_at(AckSlot::slot_offset_bytes(generation), &bytes)?;
        self.storage.sync_data()?;
        self.generation = generation;
        self.last = point;
        Ok(())
    }
}
