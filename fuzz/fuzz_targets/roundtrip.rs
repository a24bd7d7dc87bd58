//! Parse, print, parse again: the printed form reads back to the same model.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nfsim::fuzz_roundtrip(data));
