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
    not_identical: Vec<String>,
}

fn roundtrip(files: &[(PathBuf, Option<Family>)], backend: &str) -> Outcome {
    let mut o = Outcome { equivalent: 0, identical: 0, skipped: Vec::new(), failures: Vec::new(), not_identical: Vec::new() };
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
                } else if let Some((a, b)) = printed.lines().zip(original.lines()).find(|(a, b)| a != b) {
                    o.not_identical.push(format!("{name}:\n      nfsim: {a}\n     kernel: {b}"));
                }
            }
            Ok(s) => o.failures.push(format!(
                "{name}: loading the printed form gives a different ruleset:\n--- kernel from original\n{original}--- kernel from nfsim fmt\n{s}"
            )),
            Err(e) => o.failures.push(format!("{name}: the kernel refuses the printed form: {e}\n{printed}")),
        }
    }
    o
}

/// The backends a fixture is for: all, unless its first line says `# backends: legacy` (or nft).
fn fixture_backends(path: &Path) -> Vec<&'static str> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match text.lines().next().and_then(|l| l.strip_prefix("# backends: ")) {
        Some(b) if b.starts_with("legacy") => vec!["legacy"],
        Some(b) if b.starts_with("nft") => vec!["nft"],
        _ => vec!["nft", "legacy"],
    }
}

fn fixture_files() -> Vec<(PathBuf, Option<Family>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roundtrip");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .map(|p| (p, None))
        .collect();
    v.sort();
    v
}

fn corpus_files() -> Vec<(PathBuf, Option<Family>)> {
    let Some(dir) = corpus_dir() else {
        return Vec::new();
    };
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
    eprintln!(
        "{what}: {} equivalent after a kernel round trip ({} byte-identical to iptables-save), {} skipped, {} failed",
        o.equivalent,
        o.identical,
        o.skipped.len(),
        o.failures.len()
    );
    for s in &o.skipped {
        eprintln!("  skipped {s}");
    }
    for f in &o.failures {
        eprintln!("  FAILED {f}");
    }
    for f in &o.not_identical {
        eprintln!("  same rules, other text: {f}");
    }
}

#[test]
fn fixtures_round_trip_through_the_kernel() {
    if !kernel_available("kernel round trip (fixtures)") {
        return;
    }
    for backend in ["nft", "legacy"] {
        let files: Vec<_> = fixture_files().into_iter().filter(|(p, _)| fixture_backends(p).contains(&backend)).collect();
        let o = roundtrip(&files, backend);
        report(&format!("fixtures ({backend})"), &o);
        assert!(o.failures.is_empty() && o.skipped.is_empty(), "fixture round trip failed ({backend})");
        if backend == "nft" {
            // iptables-legacy-save prints the tables in another order; nfsim follows iptables-nft.
            assert_eq!(o.identical, o.equivalent, "every fixture prints byte-identically to iptables-save ({backend})");
        }
        assert_eq!(o.equivalent, files.len());
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

/// Command lists from the corpus, run command by command with the real iptables in a fresh
/// namespace: nfsim reports an error on exactly the lines where iptables fails.
#[test]
fn command_lists_fail_where_iptables_fails() {
    if !kernel_available("command lists against iptables") {
        return;
    }
    let Some(dir) = corpus_dir() else {
        eprintln!("SKIPPED command lists: ../shared/corpus not found");
        return;
    };
    let index = std::fs::read_to_string(dir.join("INDEX.tsv")).expect("INDEX.tsv");
    let (mut files, mut lines_run, mut failures, mut skipped_opaque) = (0, 0, Vec::new(), 0);
    for l in index.lines().skip(1) {
        let c: Vec<&str> = l.split('\t').collect();
        if c.len() < 2 || !c[1].starts_with("iptables commands") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(dir.join(c[0])).expect("read")).into_owned();
        let ns = Netns::new("cmd");
        let mut kernel_fails: std::collections::BTreeSet<u32> = std::collections::BTreeSet::new();
        for (n, line) in text.lines().enumerate() {
            let mut toks = Vec::new();
            nfsim::xt::token::tokenize_shell(line, 0, &mut toks);
            let words: Vec<String> = toks.iter().map(|t| t.as_str().to_string()).collect();
            let bin = match words.first().map(String::as_str) {
                Some("iptables") => "iptables-nft",
                Some("ip6tables") => "ip6tables-nft",
                _ => continue,
            };
            let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
            lines_run += 1;
            if !ns.run(bin, &args, "").0 {
                kernel_fails.insert(n as u32 + 1);
            }
        }
        drop(ns);
        files += 1;
        let parsed = nfsim::ruleset::parse(&text);
        // Each command is committed on its own, so the kernel's load-time checks count too. Lines
        // using an extension the model keeps verbatim are left out: whether the kernel takes them
        // depends on kernel modules nfsim does not model.
        let opaque: std::collections::BTreeSet<u32> = parsed
            .ruleset
            .tables
            .iter()
            .flat_map(|t| t.chains())
            .flat_map(|c| &c.rules)
            .filter(|r| r.matches.iter().any(|m| m.is_opaque()) || matches!(&r.target, nfsim::ruleset::Target::Ext(t) if t.is_opaque()))
            .map(|r| line_of(&text, r.span.start))
            .collect();
        skipped_opaque += opaque.len();
        kernel_fails.retain(|l| !opaque.contains(l));
        let ours: std::collections::BTreeSet<u32> =
            parsed.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.line).filter(|l| !opaque.contains(l)).collect();
        if ours != kernel_fails {
            let detail: Vec<String> = parsed.errors().map(|d| format!("{}: {}", d.line, d.message)).collect();
            failures.push(format!("{}: iptables fails on lines {kernel_fails:?}, nfsim reports errors on {ours:?}\n    {}", c[0], detail.join("\n    ")));
        }
    }
    eprintln!(
        "command lists: {files} files, {lines_run} commands run with iptables-nft ({skipped_opaque} lines with unmodelled extensions not compared), {} files disagree",
        failures.len()
    );
    for f in &failures {
        eprintln!("  {f}");
    }
    assert!(failures.is_empty(), "{} command lists disagree with iptables", failures.len());
}

fn line_of(text: &str, offset: u32) -> u32 {
    text[..offset as usize].bytes().filter(|&b| b == b'\n').count() as u32 + 1
}
