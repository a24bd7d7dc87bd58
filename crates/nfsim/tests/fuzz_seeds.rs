//! Replays the fuzz seeds (`fuzz/seeds/<target>/*`) through the fuzz targets' bodies, so a plain
//! `cargo test` on stable covers every input the fuzzers were started from or found.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(target);
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let data = std::fs::read(&path).expect("seed");
        run(&data);
        n += 1;
    }
    n
}

#[test]
fn parse_seeds_never_panic() {
    let n = replay("parse", nfsim::fuzz_parse);
    assert!(n >= 10, "expected the committed parse seeds, found {n}");
}

#[test]
fn roundtrip_seeds_read_back() {
    let n = replay("roundtrip", nfsim::fuzz_roundtrip);
    assert!(n >= 10, "expected the committed roundtrip seeds, found {n}");
}

#[test]
fn simulate_seeds_end() {
    let n = replay("simulate", nfsim::fuzz_simulate);
    assert!(n >= 10, "expected the committed simulate seeds, found {n}");
}

#[test]
fn classes_seeds_partition_the_packets() {
    let n = replay("classes", nfsim::fuzz_classes);
    assert!(n >= 10, "expected the committed classes seeds, found {n}");
}
