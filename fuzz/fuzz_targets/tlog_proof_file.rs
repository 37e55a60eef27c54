//! Arbitrary bytes through the JSON proof-file parsers the `calybris` command
//! line reads (`calybris_tlog::proof_file`): never a panic, and the
//! invariants of `calybris_tlog::fuzzing::proof_file` hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    calybris_tlog::fuzzing::proof_file(data);
});
