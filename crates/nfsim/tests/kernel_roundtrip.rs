//! The printer against the real kernel: loading `nfsim fmt FILE` gives exactly what loading FILE
//! gives (compared through `iptables-save`), for the project's fixtures and every corpus dump the
//! kernel accepts. Also counts how often the printed text is byte-identical to `iptables-save`.
//!
//! Needs root, `ip` and `iptables`; skipped loudly elsewhere (fails under `NFSIM_REQUIRE_KERNEL=1`).

mod common;

use std::path::{Path, PathBuf};

use common::{Netns, corpus_dir, kernel_available, strip_comments};
use nfsim::ruleset::render::{RenderOptions, render};
use nfsim::ruleset::{Family, ParseOptions, parse_with};

/// Loads `text` into a fresh namespace with `backend` (`nft` or `legacy`) and returns what
/// iptables-save prints, or the loader's error.
fn load_and_save(text: &str, family: Family, backend: &str) -> Result<String, String> {
    let ns = Netns::new("rt");
    let v = if family == Family::V6 { "ip6tables" } else { "iptables" };
    let (ok, _, err) = ns.run(&format!("{v}-{backend}-restore"), &[], text);
    if !ok {
        return Err(err.trim().to_string());
    }
    let (ok, out, err) = ns.run(&format!("{v}-{backend}-save"), &[], "");
    if !ok {
        return Err(err);
    }
    Ok(strip_comments(&out))
}

struct Outcome {
    equivalent: usize,
    identical: usize,
    skipped: Vec<String>,
    failures: Vec<String>,
}

fn roundtrip(files: &[(PathBuf, Option<Family>)], backend: &str) -> Outcome {
    let mut o = Outcome { equivalent: 0, identical: 0, skipped: Vec::new(), failures: Vec::new() };
    for (path, family) in files {
        let bytes = std::fs::read(path).expect("read");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let parsed = parse_with(&text, &ParseOptions { family: *family, ..Default::default() });
        let name = path.display().to_string();
        if parsed.has_errors() {
            o.skipped.push(format!("{name}: nfsim reports errors"));
            continue;
        }
        let families: Vec<Family> = parsed.ruleset.tables.iter().map(|t| t.family).collect();
        let fam = families.first().copied().unwrap_or(Family::V4);
        if families.iter().any(|f| *f != fam) {
            o.skipped.push(format!("{name}: both families in one file"));
            continue;
        }
        let original = match load_and_save(&text, fam, backend) {
            Ok(s) => s,
            Err(e) => {
                o.skipped.push(format!("{name}: the kernel does not load it: {e}"));
                continue;
            }
        };
        let printed = render(&parsed.ruleset, &RenderOptions::default());
        match load_and_save(&printed, fam, backend) {
            Ok(s) if s == original => {
                o.equivalent += 1;
                if printed == original {
                    o.identical += 1;
                }
            }
            Ok(s) => o.failures.push(format!("{name}: loading the printed form gives a different ruleset:\n--- kernel from original\n{original}--- kernel from nfsim fmt\n{s}")),
            Err(e) => o.failures.push(format!("{name}: the kernel refuses the printed form: {e}\n{printed}")),
        }
    }
    o
}

fn fixture_files() -> Vec<(PathBuf, Option<Family>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roundtrip");
    let mut v: Vec<_> = std::fs::read_dir(&dir).expect("fixtures").filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "rules")).map(|p| (p, None)).collect();
    v.sort();
    v
}

fn corpus_files() -> Vec<(PathBuf, Option<Family>)> {
    let Some(dir) = corpus_dir() else { return Vec::new() };
    let index = std::fs::read_to_string(dir.join("INDEX.tsv")).expect("INDEX.tsv");
    index
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c.len() >= 4 && c[3] == "accept" && (c[1].starts_with("iptables-save") || c[1].starts_with("iptables-restore input"))).then(|| {
                let fam = match c[2] {
                    "IPv6" => Some(Family::V6),
                    "IPv4" => Some(Family::V4),
                    _ => None,
                };
                (dir.join(c[0]), fam)
            })
        })
        .collect()
}

fn report(what: &str, o: &Outcome) {
    eprintln!("{what}: {} equivalent after a kernel round trip ({} byte-identical to iptables-save), {} skipped, {} failed", o.equivalent, o.identical, o.skipped.len(), o.failures.len());
    for s in &o.skipped {
        eprintln!("  skipped {s}");
    }
    for f in &o.failures {
        eprintln!("  FAILED {f}");
    }
}

#[test]
fn fixtures_round_trip_through_the_kernel() {
    if !kernel_available("kernel round trip (fixtures)") {
        return;
    }
    for backend in ["nft", "legacy"] {
        let o = roundtrip(&fixture_files(), backend);
        report(&format!("fixtures ({backend})"), &o);
        assert!(o.failures.is_empty() && o.skipped.is_empty(), "fixture round trip failed ({backend})");
        assert_eq!(o.identical, o.equivalent, "every fixture prints byte-identically to iptables-save ({backend})");
    }
}

#[test]
fn corpus_round_trips_through_the_kernel() {
    if !kernel_available("kernel round trip (corpus)") {
        return;
    }
    let files = corpus_files();
    if files.is_empty() {
        eprintln!("SKIPPED corpus round trip: ../shared/corpus not found");
        return;
    }
    let o = roundtrip(&files, "nft");
    report("corpus (nft)", &o);
    assert!(o.failures.is_empty(), "{} corpus files change meaning through nfsim fmt", o.failures.len());
}
