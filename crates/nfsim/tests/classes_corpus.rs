//! Packet classes and diffs over the real-world corpus (`../shared/corpus`, when present): every
//! rule file the kernel accepts gets its classes for locally generated and arriving packets of
//! each family it holds, each class's example (and a second packet of the class) gets the class's
//! fates from the concrete engine, and a diff of each file against itself is empty.

mod common;

use common::corpus_dir;
use nfsim::classes::region::{Cube, Input};
use nfsim::classes::{Scope, classes, diff_rulesets, outcomes};
use nfsim::host::Host;
use nfsim::ruleset::Family;
use nfsim::simulate::simulate;
use nfsim::traverse::Options;

fn host() -> Host {
    Host::new("host")
        .iface("eth0", &["10.0.0.5/24", "fd00::5/64"])
        .gateway("10.0.0.1")
        .listen(6, "0.0.0.0", 22, "sshd", 0, 0)
        .listen(6, "::", 22, "sshd", 0, 0)
        .listen(6, "0.0.0.0", 8080, "app", 1000, 1000)
        .listen(17, "0.0.0.0", 53, "dns", 0, 0)
}

/// A packet of the cube other than its example: the largest value of each field.
fn other(c: &Cube) -> Option<Input> {
    let mut i = c.example()?;
    i.dst = c.dst.intervals().last()?.1;
    i.dport = c.dport.intervals().last()?.1;
    i.uid = c.uid.intervals().last()?.1;
    Some(i)
}

#[test]
fn classes_of_every_accepted_corpus_file_agree_with_the_concrete_engine() {
    let Some(dir) = corpus_dir() else {
        eprintln!("SKIPPED: ../shared/corpus not found (set NFSIM_CORPUS); the corpus classes test did not run");
        return;
    };
    let index = std::fs::read_to_string(dir.join("INDEX.tsv")).expect("INDEX.tsv");
    let host = host();
    let opts = Options::default();
    let (mut files, mut total_classes, mut compared, mut undecidable, mut limits) = (0, 0, 0, 0, 0);
    let start = std::time::Instant::now();
    let mut slowest = (std::time::Duration::ZERO, String::new());
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [path, _format, _family, verdict, _] = cols[..] else { continue };
        if verdict != "accept" {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(dir.join(path)).expect(path)).into_owned();
        let parsed = nfsim::ruleset::parse(&text);
        if parsed.has_errors() {
            continue;
        }
        files += 1;
        let t = std::time::Instant::now();
        for family in [Family::V4, Family::V6] {
            if !parsed.ruleset.tables.iter().any(|t| t.family == family) {
                continue;
            }
            for from in [None, Some("eth0")] {
                let scope = Scope::all(&host, family, from);
                let cs = classes(&parsed.ruleset, &host, &scope, &opts);
                total_classes += cs.classes.len();
                for c in &cs.classes {
                    undecidable += usize::from(c.fates.len() > 1);
                    if c.fates.iter().any(|f| f.analysis_limit()) {
                        limits += 1;
                        continue;
                    }
                    for i in std::iter::once(c.example).chain(c.region.first().and_then(other)) {
                        let sim = simulate(&parsed.ruleset, &host, scope.packet(&i), &scope.origin(&i), &opts);
                        if sim.truncated {
                            continue;
                        }
                        let mut conc: Vec<_> = sim.branches.iter().map(nfsim::classes::Outcome::of_branch).collect();
                        conc.sort();
                        assert_eq!(outcomes(&c.fates, &i, family), conc, "{path}: packet {i:?} from {from:?}");
                        compared += 1;
                    }
                }
                assert!(diff_rulesets(&parsed.ruleset, &parsed.ruleset, &host, &scope, &opts).is_empty(), "{path}: a rule set differs from itself");
            }
        }
        if t.elapsed() > slowest.0 {
            slowest = (t.elapsed(), path.to_string());
        }
    }
    eprintln!(
        "corpus classes: {files} files, {total_classes} classes ({undecidable} with several fates, {limits} at a limit of the analysis), {compared} packets agree with the concrete engine, {:?} in all, slowest {:?} ({})",
        start.elapsed(),
        slowest.0,
        slowest.1
    );
    assert!(files > 400, "only {files} corpus files");
}
