//! Arbitrary bytes as a rule file: parsing and printing never panic and always end.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nfsim::fuzz_parse(data));
