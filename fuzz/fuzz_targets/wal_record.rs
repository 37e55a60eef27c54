//! Arbitrary bytes as a record payload: the record decoder must never panic, and
//! whatever decodes must survive an encode/decode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    calybris_wal::fuzzing::record(data);
});
