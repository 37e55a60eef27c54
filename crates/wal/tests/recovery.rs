//! The recovery table, one test per row, each run on real files and in memory.

mod common;

use calybris_wal::format::HEADER_LEN_BYTES;
use calybris_wal::{
    Acknowledged, CorruptReason, FrameReader, KeyMismatch, Recovery, TornReason, WalAnchor,
    WalError, WalKey, WalReader, WalWriter, scan,
};
use common::{Backend, Rec, rec};

fn key(byte: u8) -> WalKey {
    WalKey::new(&[byte; 32]).expect("32-byte key")
}

/// Writes records `0..count` and syncs; returns the anchor after them.
fn write_log<B: Backend>(backend: &B, key: Option<WalKey>, count: u64) -> WalAnchor {
    let mut writer =
        WalWriter::<Rec, _>::create_in(backend.create().expect("create"), key).expect("create log");
    for id in 0..count {
        assert_eq!(writer.append(&rec(id)).expect("append"), id);
    }
    writer.sync().expect("sync")
}

/// Byte offsets of every frame, from a clean log.
fn frame_offsets<B: Backend>(backend: &B, key: Option<&WalKey>) -> Vec<u64> {
    let mut reader = FrameReader::new(backend.reader(), key).expect("header");
    let mut offsets = Vec::new();
    while let Some(frame) = reader.next_frame().expect("clean log") {
        offsets.push(frame.offset_bytes);
    }
    offsets
}

fn read_all<B: Backend>(backend: &B, key: Option<&WalKey>) -> Vec<Rec> {
    WalReader::<Rec, _>::from_storage(backend.reader(), key)
        .expect("header")
        .map(|entry| entry.expect("verified").record)
        .collect()
}

fn reopen<B: Backend>(backend: &B, key: Option<WalKey>) -> Result<WalWriter<Rec, B::S>, WalError> {
    WalWriter::<Rec, _>::open_in(backend.open()?, key, None)
}

fn clean<B: Backend>() {
    let backend = B::new("clean");
    let anchor = write_log(&backend, None, 5);
    let mut writer = reopen(&backend, None).expect("reopen");
    assert!(writer.recovery().is_clean());
    assert_eq!(writer.recovery().anchor(), Some(anchor));
    for id in 5..8 {
        assert_eq!(writer.append(&rec(id)).expect("append"), id);
    }
    writer.sync().expect("sync");
    drop(writer);
    assert_eq!(
        read_all(&backend, None),
        (0..8).map(rec).collect::<Vec<_>>()
    );
}

/// Cuts or damages the bytes after frame 5 of a 6-record log, reopens, and checks
/// the torn tail is reported, cut, and the log continues after record 4.
fn torn_case<B: Backend>(tag: &str, damage: impl Fn(&mut Vec<u8>, usize), expected: TornReason) {
    let backend = B::new(tag);
    write_log(&backend, None, 6);
    let offsets = frame_offsets(&backend, None);
    let last = usize::try_from(offsets[5]).expect("offset fits");
    let mut bytes = backend.bytes();
    damage(&mut bytes, last);
    let damaged_len = bytes.len() as u64;
    backend.set_bytes(bytes);

    let outcome = scan::<Rec, _>(backend.reader(), None, None).expect("scan");
    let Recovery::TornTail {
        anchor,
        valid_len_bytes,
        cut_bytes,
        reason,
        acknowledged,
    } = outcome
    else {
        panic!("{tag}: expected a torn tail, got {outcome:?}");
    };
    assert_eq!(reason, expected, "{tag}");
    assert_eq!(acknowledged, Acknowledged::Unknown, "{tag}: no watermark");
    assert_eq!(anchor.next_sequence, 5, "{tag}");
    assert_eq!(valid_len_bytes, offsets[5], "{tag}");
    assert_eq!(cut_bytes, damaged_len - offsets[5], "{tag}");

    let mut writer = reopen(&backend, None).expect("reopen cuts the tail");
    assert_eq!(writer.recovery(), &outcome);
    assert_eq!(backend.bytes().len() as u64, offsets[5], "{tag}: tail cut");
    assert_eq!(writer.append(&rec(100)).expect("append"), 5);
    writer.sync().expect("sync");
    drop(writer);
    let mut expected_records: Vec<Rec> = (0..5).map(rec).collect();
    expected_records.push(rec(100));
    assert_eq!(read_all(&backend, None), expected_records, "{tag}");
}

fn torn_incomplete_header<B: Backend>() {
    torn_case::<B>(
        "torn-header",
        |bytes, last| bytes.truncate(last + 3),
        TornReason::IncompleteHeader,
    );
}

fn torn_incomplete_frame<B: Backend>() {
    torn_case::<B>(
        "torn-frame",
        |bytes, last| bytes.truncate(last + 20),
        TornReason::IncompleteFrame,
    );
}

fn torn_zero_filled<B: Backend>() {
    torn_case::<B>(
        "torn-zero",
        |bytes, last| bytes[last..].iter_mut().for_each(|b| *b = 0),
        TornReason::ZeroFilled,
    );
}

fn torn_bad_final_frame<B: Backend>() {
    torn_case::<B>(
        "torn-bad-final",
        |bytes, last| bytes[last + 9] ^= 0x40,
        TornReason::BadFinalFrame,
    );
}

/// Damages frame 2 of 6 and checks the log is refused, untouched, naming record 2.
fn corrupt_case<B: Backend>(tag: &str, delta_in_frame: usize, expected: CorruptReason) {
    let backend = B::new(tag);
    write_log(&backend, None, 6);
    let offsets = frame_offsets(&backend, None);
    let mut bytes = backend.bytes();
    bytes[usize::try_from(offsets[2]).expect("fits") + delta_in_frame] ^= 0x01;
    backend.set_bytes(bytes.clone());
    let refusal = Recovery::Corrupt {
        sequence: Some(2),
        offset_bytes: offsets[2],
        reason: expected,
    };
    assert_eq!(
        scan::<Rec, _>(backend.reader(), None, None).expect("scan"),
        refusal
    );
    match reopen(&backend, None) {
        Err(WalError::Refused(found)) => assert_eq!(found, refusal),
        other => panic!("{tag}: expected refusal, got {other:?}"),
    }
    assert_eq!(
        backend.bytes(),
        bytes,
        "{tag}: a refused log is not modified"
    );
}

fn corrupt_payload_before_tail<B: Backend>() {
    corrupt_case::<B>("corrupt-payload", 9, CorruptReason::HashMismatch);
}

fn corrupt_length_before_tail<B: Backend>() {
    corrupt_case::<B>("corrupt-length", 0, CorruptReason::BadLength);
}

fn corrupt_hash_before_tail<B: Backend>() {
    let backend = B::new("corrupt-hash-probe");
    write_log(&backend, None, 6);
    let offsets = frame_offsets(&backend, None);
    // The last byte of frame 2 is the last byte of its entry hash.
    let delta = usize::try_from(offsets[3] - offsets[2] - 1).expect("fits");
    corrupt_case::<B>("corrupt-hash", delta, CorruptReason::HashMismatch);
}

fn wrong_key<B: Backend>() {
    let backend = B::new("wrong-key");
    write_log(&backend, Some(key(1)), 3);
    let cases = [
        (Some(key(2)), KeyMismatch::DifferentKey),
        (None, KeyMismatch::KeyRequired),
    ];
    for (offered, reason) in cases {
        let expected = Recovery::WrongKey { reason };
        assert_eq!(
            scan::<Rec, _>(backend.reader(), offered.as_ref(), None).expect("scan"),
            expected
        );
        match reopen(&backend, offered) {
            Err(WalError::Refused(found)) => assert_eq!(found, expected),
            other => panic!("expected wrong key, got {other:?}"),
        }
    }
    assert_eq!(
        read_all(&backend, Some(&key(1))),
        (0..3).map(rec).collect::<Vec<_>>()
    );

    let unkeyed = B::new("not-keyed");
    write_log(&unkeyed, None, 1);
    assert_eq!(
        scan::<Rec, _>(unkeyed.reader(), Some(&key(1)), None).expect("scan"),
        Recovery::WrongKey {
            reason: KeyMismatch::LogNotKeyed
        }
    );
}

fn unknown_version<B: Backend>() {
    let backend = B::new("version");
    write_log(&backend, None, 2);
    let mut bytes = backend.bytes();
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    backend.set_bytes(bytes);
    let expected = Recovery::UnknownVersion { found: 2 };
    assert_eq!(
        scan::<Rec, _>(backend.reader(), None, None).expect("scan"),
        expected
    );
    assert!(matches!(reopen(&backend, None), Err(WalError::Refused(found)) if found == expected));
}

fn not_a_log<B: Backend>() {
    let backend = B::new("not-a-log");
    backend.set_bytes(b"this is not a calybris log at all, just some text".to_vec());
    assert_eq!(
        scan::<Rec, _>(backend.reader(), None, None).expect("scan"),
        Recovery::Corrupt {
            sequence: None,
            offset_bytes: 0,
            reason: CorruptReason::BadMagic
        }
    );
}

fn anchor_detects_clean_suffix_cut<B: Backend>() {
    let backend = B::new("anchor-cut");
    let mut writer =
        WalWriter::<Rec, _>::create_in(backend.create().expect("create"), None).expect("create");
    for id in 0..4 {
        writer.append(&rec(id)).expect("append");
    }
    let anchor4 = writer.sync().expect("sync");
    for id in 4..6 {
        writer.append(&rec(id)).expect("append");
    }
    let anchor6 = writer.sync().expect("sync");
    drop(writer);
    let offsets = frame_offsets(&backend, None);
    let mut bytes = backend.bytes();
    bytes.truncate(usize::try_from(offsets[4]).expect("fits"));
    backend.set_bytes(bytes);

    // The chain alone sees a clean log of four records...
    assert_eq!(
        scan::<Rec, _>(backend.reader(), None, None).expect("scan"),
        Recovery::Clean {
            anchor: anchor4,
            len_bytes: offsets[4],
            acknowledged: Acknowledged::Unknown,
        }
    );
    assert_eq!(
        scan::<Rec, _>(backend.reader(), None, Some(anchor4)).expect("scan"),
        Recovery::Clean {
            anchor: anchor4,
            len_bytes: offsets[4],
            acknowledged: Acknowledged::Unknown,
        }
    );
    // ...the anchor knows six were written.
    let expected = Recovery::Corrupt {
        sequence: Some(4),
        offset_bytes: offsets[4],
        reason: CorruptReason::SuffixMissing {
            anchored_records: 6,
            found_records: 4,
        },
    };
    assert_eq!(
        scan::<Rec, _>(backend.reader(), None, Some(anchor6)).expect("scan"),
        expected
    );
    let refused = WalWriter::<Rec, _>::open_in(backend.open().expect("open"), None, Some(anchor6));
    assert!(matches!(refused, Err(WalError::Refused(found)) if found == expected));
}

fn anchor_detects_other_history<B: Backend>() {
    let first = B::new("anchor-a");
    let anchor = write_log(&first, None, 4);
    let second = B::new("anchor-b");
    let mut writer =
        WalWriter::<Rec, _>::create_in(second.create().expect("create"), None).expect("create");
    for id in 10..14 {
        writer.append(&rec(id)).expect("append");
    }
    writer.sync().expect("sync");
    drop(writer);
    let outcome = scan::<Rec, _>(second.reader(), None, Some(anchor)).expect("scan");
    assert!(
        matches!(
            outcome,
            Recovery::Corrupt {
                sequence: Some(3),
                reason: CorruptReason::AnchorMismatch,
                ..
            }
        ),
        "{outcome:?}"
    );
}

fn second_writer_is_refused<B: Backend>() {
    let backend = B::new("lock");
    let writer =
        WalWriter::<Rec, _>::create_in(backend.create().expect("create"), None).expect("create");
    assert!(matches!(backend.open(), Err(WalError::Locked { .. })));
    drop(writer);
    let again = reopen(&backend, None);
    assert!(
        again.is_ok(),
        "the lock is released with the writer: {again:?}"
    );
}

fn header_only_log_is_clean_and_empty<B: Backend>() {
    let backend = B::new("empty");
    let anchor = write_log(&backend, None, 0);
    assert_eq!(anchor, WalAnchor::GENESIS);
    assert_eq!(
        scan::<Rec, _>(backend.reader(), None, None).expect("scan"),
        Recovery::Clean {
            anchor: WalAnchor::GENESIS,
            len_bytes: HEADER_LEN_BYTES as u64,
            acknowledged: Acknowledged::Unknown,
        }
    );
}

on_both_backends!(
    clean,
    torn_incomplete_header,
    torn_incomplete_frame,
    torn_zero_filled,
    torn_bad_final_frame,
    corrupt_payload_before_tail,
    corrupt_length_before_tail,
    corrupt_hash_before_tail,
    wrong_key,
    unknown_version,
    not_a_log,
    anchor_detects_clean_suffix_cut,
    anchor_detects_other_history,
    second_writer_is_refused,
    header_only_log_is_clean_and_empty,
);

#[test]
fn create_refuses_an_existing_file() {
    let dir = common::TempDir::new("exists");
    let path = dir.path().join("log.cwal");
    let writer = WalWriter::<Rec>::create(&path, None).expect("create");
    drop(writer);
    assert!(matches!(
        WalWriter::<Rec>::create(&path, None),
        Err(WalError::AlreadyExists { .. })
    ));
    assert!(matches!(
        WalWriter::<Rec>::open(&dir.path().join("missing.cwal"), None),
        Err(WalError::NotFound { .. })
    ));
}
