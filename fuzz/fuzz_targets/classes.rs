//! Arbitrary rule set: its classes partition the packet space, never panic, and diff empty against themselves.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nfsim::fuzz_classes(data));
