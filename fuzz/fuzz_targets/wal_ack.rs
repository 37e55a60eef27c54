//! Arbitrary bytes as the acknowledgement watermark of a valid segment directory:
//! decoding must never panic, a slot that decodes re-encodes to itself, and the
//! scan keeps at most the records written.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    calybris_wal::fuzzing::watermark(data);
});
