//! `nfsim check` output for the fixtures in `tests/fixtures/check/`: each `NAME.rules` is parsed
//! (with `--lenient` when NAME starts with `lenient`) and its diagnostics, rendered with carets,
//! are compared with `NAME.rules.out`. `NFSIM_UPDATE_GOLDENS=1` rewrites the goldens.

use std::path::Path;

use nfsim::ruleset::{ParseOptions, parse_with};

#[test]
fn diagnostics_match_goldens() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check");
    let update = std::env::var("NFSIM_UPDATE_GOLDENS").is_ok_and(|v| v == "1");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("fixtures").filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "rules")).collect();
    files.sort();
    assert!(!files.is_empty());
    let mut mismatches = Vec::new();
    for path in files {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned();
        let opts = ParseOptions { lenient: name.starts_with("lenient"), ..Default::default() };
        let parsed = parse_with(&text, &opts);
        let mut got = String::new();
        for d in &parsed.diagnostics {
            got.push_str(&d.render(&name, &text));
            got.push('\n');
        }
        got.push_str(&nfsim::ruleset::render::render(&parsed.ruleset, &Default::default()));
        let golden = path.with_extension("rules.out");
        if update {
            std::fs::write(&golden, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if want != got {
            mismatches.push(format!("{name}: output differs from {}:\n{got}", golden.display()));
        }
    }
    assert!(mismatches.is_empty(), "{}\nrerun with NFSIM_UPDATE_GOLDENS=1 to update, then review the diff", mismatches.join("\n"));
}
