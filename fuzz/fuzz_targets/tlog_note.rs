//! Arbitrary bytes through the note parser of calybris-tlog: never a panic,
//! and the invariants of `calybris_tlog::fuzzing::note` hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    calybris_tlog::fuzzing::note(data);
});
