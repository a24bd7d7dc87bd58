//! The real-world corpus in `../shared/corpus` (when present): every file the kernel's
//! `iptables-restore --test` accepts parses without error, every file it rejects is rejected at
//! the same first line, and command lists parse.

mod common;

use common::corpus_dir;

#[test]
fn kernel_verdicts_agree() {
    let Some(dir) = corpus_dir() else {
        eprintln!("SKIPPED: ../shared/corpus not found (set NFSIM_CORPUS); the corpus test did not run");
        return;
    };
    let index = std::fs::read_to_string(dir.join("INDEX.tsv")).expect("INDEX.tsv");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut commands = 0;
    let mut command_errors = 0;
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [path, format, _family, verdict, err_line] = cols[..] else {
            continue;
        };
        let bytes = std::fs::read(dir.join(path)).expect(path);
        let text = String::from_utf8_lossy(&bytes);
        let is_commands = format.starts_with("iptables commands")
            || format.starts_with("dry-run")
            || format.starts_with("iptables -S")
            || format.starts_with("iptables-restore input (-N");
        if verdict != "accept" && verdict != "reject" && !is_commands {
            continue;
        }
        let parsed = nfsim::ruleset::parse(&text);
        let first_error = parsed.diagnostics.iter().filter(|d| d.is_error() && d.stage == nfsim::diag::Stage::Parse).map(|d| d.line).min();
        let show = |d: &nfsim::diag::Diagnostic| format!("{}:{}: {}", path, d.line, d.message);
        match verdict {
            "accept" => {
                checked += 1;
                if first_error.is_some() {
                    let errs: Vec<String> = parsed.errors().take(3).map(show).collect();
                    failures.push(format!("kernel accepts, nfsim rejects: {}", errs.join(" | ")));
                }
            }
            "reject" => {
                checked += 1;
                let want: u32 = err_line.parse().expect("error line");
                if first_error != Some(want) {
                    let errs: Vec<String> = parsed.errors().take(3).map(show).collect();
                    failures.push(format!("kernel rejects {path} at line {want}, nfsim first error at {first_error:?}: {}", errs.join(" | ")));
                }
            }
            _ => {
                // Command lists hold commands real iptables refuses too (cleanup scripts deleting
                // what is not there, xtables-addons modules); `kernel_roundtrip.rs` compares them
                // line by line with the real iptables. Here they only have to be read.
                commands += 1;
                command_errors += parsed.errors().count();
            }
        }
    }
    eprintln!("corpus: {checked} files with a kernel verdict, {} disagreements; {commands} command lists read ({command_errors} errors)", failures.len());
    for f in &failures {
        eprintln!("  {f}");
    }
    assert!(failures.is_empty(), "{} corpus files disagree with the kernel", failures.len());
}
