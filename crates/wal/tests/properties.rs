//! Property tests: any sequence of records round-trips; any truncation point is a
//! torn tail, a clean prefix at a frame boundary, or refused, and never a
//! different history. Proptest prints the failing case and its seed; set
//! `PROPTEST_CASES` to run more cases.

mod common;

use calybris_wal::format::{FRAME_OVERHEAD_BYTES, HEADER_LEN_BYTES};
use calybris_wal::storage::MemDisk;
use calybris_wal::{CorruptReason, FrameReader, Recovery, WalKey, WalReader, WalWriter, scan};
use common::Rec;
use proptest::prelude::*;

fn any_rec() -> impl Strategy<Value = Rec> {
    (
        any::<u64>(),
        ".{0,12}",
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(id, name, data)| Rec { id, name, data })
}

fn write(
    records: &[Rec],
    key: Option<WalKey>,
    flush_every: usize,
) -> (MemDisk, calybris_wal::WalAnchor) {
    let disk = MemDisk::new();
    let mut writer =
        WalWriter::<Rec, _>::create_in(disk.lock().expect("lock"), key).expect("create");
    for (i, record) in records.iter().enumerate() {
        writer.append(record).expect("append");
        if (i + 1) % flush_every.max(1) == 0 {
            writer.flush().expect("flush");
        }
    }
    let anchor = writer.sync().expect("sync");
    (disk, anchor)
}

fn read(bytes: Vec<u8>, key: Option<&WalKey>) -> (Vec<Rec>, Option<Recovery>) {
    let disk = MemDisk::with_bytes(bytes);
    match WalReader::<Rec, _>::from_storage(disk.reader(), key) {
        Ok(mut reader) => {
            let records = reader
                .by_ref()
                .map_while(Result::ok)
                .map(|entry| entry.record)
                .collect();
            (records, reader.outcome().cloned())
        }
        Err(error) => (Vec::new(), error.recovery().cloned()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_sequence_of_records_round_trips(
        records in proptest::collection::vec(any_rec(), 0..30),
        keyed in any::<bool>(),
        flush_every in 1usize..8,
    ) {
        let key = keyed.then(|| WalKey::new(&[0xA5; 32]).expect("key"));
        let (disk, anchor) = write(&records, key.clone(), flush_every);
        prop_assert_eq!(anchor.next_sequence, records.len() as u64);
        let (found, outcome) = read(disk.bytes(), key.as_ref());
        prop_assert_eq!(found, records);
        prop_assert_eq!(outcome.and_then(|o| o.anchor()), Some(anchor));
    }

    #[test]
    fn any_truncation_is_torn_a_boundary_prefix_or_refused(
        records in proptest::collection::vec(any_rec(), 1..12),
        cut_fraction in 0.0f64..=1.0,
    ) {
        let (disk, full_anchor) = write(&records, None, 3);
        let bytes = disk.bytes();
        let mut boundaries = vec![HEADER_LEN_BYTES as u64];
        let mut reader = FrameReader::new(disk.reader(), None).expect("header");
        while let Some(frame) = reader.next_frame().expect("clean") {
            boundaries.push(frame.offset_bytes + (frame.payload.len() + FRAME_OVERHEAD_BYTES) as u64);
        }
        let cut = ((bytes.len() as f64) * cut_fraction).floor() as usize;
        let cut = cut.min(bytes.len());
        let truncated = bytes[..cut].to_vec();
        let (found, outcome) = read(truncated.clone(), None);
        prop_assert!(records.starts_with(&found), "a truncation never reads another history");
        match outcome {
            Some(Recovery::Clean { anchor, .. }) => {
                prop_assert!(boundaries.contains(&(cut as u64)));
                prop_assert_eq!(anchor.next_sequence, found.len() as u64);
            }
            Some(Recovery::TornTail { anchor, valid_len_bytes, cut_bytes, .. }) => {
                prop_assert!(!boundaries.contains(&(cut as u64)));
                prop_assert_eq!(anchor.next_sequence, found.len() as u64);
                prop_assert_eq!(valid_len_bytes, boundaries[found.len()]);
                prop_assert_eq!(valid_len_bytes + cut_bytes, cut as u64);
            }
            Some(Recovery::Corrupt { reason: CorruptReason::BadMagic, sequence: None, .. }) => {
                prop_assert!(cut < HEADER_LEN_BYTES);
            }
            other => prop_assert!(false, "unexpected outcome {:?}", other),
        }
        // With the trusted anchor of the full log, only the full log is accepted.
        let anchored = scan::<Rec, _>(MemDisk::with_bytes(truncated).reader(), None, Some(full_anchor))
            .expect("scan");
        if cut == bytes.len() {
            prop_assert!(anchored.is_clean());
        } else {
            prop_assert!(!anchored.is_recoverable(), "cut {} accepted: {:?}", cut, anchored);
        }
    }
}
