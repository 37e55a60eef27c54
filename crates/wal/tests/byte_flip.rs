//! Flip every byte of a small log, one at a time: verification must fail every
//! time, name the record (or the header) that holds the byte, and never panic.

mod common;

use calybris_wal::format::HEADER_LEN_BYTES;
use calybris_wal::storage::MemDisk;
use calybris_wal::{FrameReader, Recovery, WalKey, WalWriter, scan};
use common::{Rec, rec};

fn small_log(key: Option<WalKey>) -> (Vec<u8>, Vec<u64>) {
    let disk = MemDisk::new();
    let mut writer =
        WalWriter::<Rec, _>::create_in(disk.lock().expect("lock"), key.clone()).expect("create");
    for id in 0..4 {
        writer.append(&rec(id)).expect("append");
    }
    writer.sync().expect("sync");
    drop(writer);
    let mut reader = FrameReader::new(disk.reader(), key.as_ref()).expect("header");
    let mut offsets = Vec::new();
    while let Some(frame) = reader.next_frame().expect("clean") {
        offsets.push(frame.offset_bytes);
    }
    (disk.bytes(), offsets)
}

/// The record whose frame holds byte `index`, or `None` for the header.
fn owner(offsets: &[u64], index: u64) -> Option<u64> {
    if index < HEADER_LEN_BYTES as u64 {
        return None;
    }
    offsets
        .iter()
        .rposition(|start| *start <= index)
        .map(|k| k as u64)
}

fn flip_every_byte(key: Option<WalKey>) {
    let (bytes, offsets) = small_log(key.clone());
    assert!(
        scan::<Rec, _>(
            MemDisk::with_bytes(bytes.clone()).reader(),
            key.as_ref(),
            None
        )
        .expect("scan")
        .is_clean()
    );
    for index in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut damaged = bytes.clone();
            damaged[index] ^= mask;
            let outcome = scan::<Rec, _>(MemDisk::with_bytes(damaged).reader(), key.as_ref(), None)
                .expect("in-memory scan never fails with I/O");
            let owner = owner(&offsets, index as u64);
            match (&outcome, owner) {
                (Recovery::Clean { .. }, _) => {
                    panic!("flip {mask:#04x} of byte {index} went unnoticed")
                }
                (
                    Recovery::Corrupt {
                        sequence: None,
                        offset_bytes: 0,
                        ..
                    }
                    | Recovery::UnknownVersion { .. },
                    None,
                ) => {}
                (
                    Recovery::Corrupt {
                        sequence: Some(seq),
                        offset_bytes,
                        ..
                    },
                    Some(k),
                ) => {
                    assert_eq!(*seq, k, "byte {index}: {outcome}");
                    assert_eq!(*offset_bytes, offsets[k as usize], "byte {index}");
                }
                (
                    Recovery::TornTail {
                        valid_len_bytes, ..
                    },
                    Some(k),
                ) => {
                    assert_eq!(outcome.named_sequence(), Some(k), "byte {index}: {outcome}");
                    assert_eq!(*valid_len_bytes, offsets[k as usize], "byte {index}");
                    assert_eq!(k, 3, "only the final frame may look torn (byte {index})");
                }
                _ => panic!("byte {index} (record {owner:?}) gave {outcome:?}"),
            }
        }
    }
}

#[test]
fn every_byte_flip_of_an_unkeyed_log_is_detected_and_named() {
    flip_every_byte(None);
}

#[test]
fn every_byte_flip_of_a_keyed_log_is_detected_and_named() {
    flip_every_byte(Some(WalKey::new(&[0x5A; 32]).expect("key")));
}
