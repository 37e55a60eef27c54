//! Arbitrary bytes as a log segment: the frame decoder and verifying reader must
//! never panic and must report an outcome consistent with what they returned.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    calybris_wal::fuzzing::frames(data);
});
