//! Arbitrary rule set and packet: the simulation never panics and always ends.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nfsim::fuzz_simulate(data));
