//! The upstream iptables test specs (`extensions/*.t` in `../shared/corpus/iptables-upstream`):
//! for every module the model types, each `rule;save-form;OK` line must parse and print as the
//! save form, and each `FAIL` line must be refused.

mod common;

use common::corpus_dir;
use nfsim::matches::Match;
use nfsim::ruleset::{Family, TableName};
use nfsim::targets::TargetExt;
use nfsim::xt::ext::Ctx;

/// The module a spec file tests, and whether the model types it.
fn typed_module(file: &str) -> Option<(Family, bool)> {
    let stem = file.strip_suffix(".t")?;
    let (family, name) = if let Some(n) = stem.strip_prefix("libxt_") {
        (None, n)
    } else if let Some(n) = stem.strip_prefix("libipt_") {
        (Some(Family::V4), n)
    } else if let Some(n) = stem.strip_prefix("libip6t_") {
        (Some(Family::V6), n)
    } else if stem == "iptables" {
        return Some((Family::V4, true));
    } else {
        return None;
    };
    let family = family.unwrap_or(Family::V4);
    let ctx = Ctx { family, table: TableName::Filter, proto: None };
    if name == "standard" {
        return Some((family, true));
    }
    let typed = Match::load(name, &ctx).is_some() || TargetExt::load(name, &ctx).is_some();
    Some((family, typed))
}

/// Spec lines (the specs are from iptables 1.8.11) where the installed iptables 1.8.9 differs;
/// each was checked against `iptables-restore` on the CI machine. The model follows 1.8.9.
const VERSION_DIFFERENCES: &[(&str, &str)] = &[
    ("libxt_conntrack.t", "-m conntrack --ctexpire 4:3"),
    ("libxt_conntrack.t", "-m conntrack --ctproto 0"),
    ("libxt_conntrack.t", "-m conntrack ! --ctproto 0"),
    ("libxt_conntrack.t", "-m conntrack --ctorigsrcport 4:3"),
    ("libxt_conntrack.t", "-m conntrack --ctreplsrcport 4:3"),
    ("libxt_conntrack.t", "-m conntrack --ctorigdstport 4:3"),
    ("libxt_conntrack.t", "-m conntrack --ctrepldstport 4:3"),
    ("libxt_udp.t", "-p udp -m udp --sport 4:3"),
    ("libxt_udp.t", "-p udp -m udp --dport 4:3"),
    ("libxt_length.t", "-m length --length 4:3"),
    ("libipt_icmp.t", "-p icmp -m icmp --icmp-type 255/255"),
];

#[test]
fn extension_specs_agree() {
    let Some(dir) = corpus_dir() else {
        eprintln!("SKIPPED: ../shared/corpus not found; the upstream spec test did not run");
        return;
    };
    let ext = dir.join("iptables-upstream/extensions");
    let mut files: Vec<_> =
        std::fs::read_dir(&ext).expect("extensions dir").filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let (mut ok, mut failures, mut modules) = (0, Vec::new(), 0);
    for file in files {
        let Some((family, true)) = typed_module(&file) else {
            continue;
        };
        modules += 1;
        let text = std::fs::read_to_string(ext.join(&file)).expect("spec");
        let mut chains: Vec<String> = vec!["INPUT".into()];
        let mut table = "filter".to_string();
        for line in text.lines() {
            if let Some(c) = line.strip_prefix(':') {
                chains = c.split(',').map(str::to_string).collect();
                continue;
            }
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
                continue;
            }
            let cols: Vec<&str> = line.split(';').collect();
            if cols.len() < 3 || line.starts_with('#') {
                continue;
            }
            if cols.get(3).is_some_and(|b| *b == "LEGACY") {
                continue;
            }
            let (rule, want, verdict) = (cols[0], cols[1], cols[2]);
            if VERSION_DIFFERENCES.contains(&(file.as_str(), rule)) {
                continue;
            }
            // Every chain of the header must give the same answer; the first is enough for
            // parsing, a later one matters only for hook checks.
            let results: Vec<(String, Result<String, String>)> = chains
                .iter()
                .map(|chain| {
                    // The specs are run as `iptables` commands, not through iptables-restore.
                    let bin = if family == Family::V6 { "ip6tables" } else { "iptables" };
                    let input = format!("{bin} -t {table} -A {chain} {rule}\n");
                    let opts = nfsim::ruleset::ParseOptions { family: Some(family), ..Default::default() };
                    let parsed = nfsim::ruleset::parse_with(&input, &opts);
                    let res = match parsed.errors().next() {
                        Some(e) => Err(e.message.clone()),
                        None => {
                            let out = nfsim::ruleset::render::render(&parsed.ruleset, &Default::default());
                            let prefix = format!("-A {chain} ");
                            Ok(out.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or("").to_string())
                        }
                    };
                    (chain.clone(), res)
                })
                .collect();
            let expected = if want == "=" { rule } else { want };
            for (chain, res) in results {
                match (verdict, res) {
                    ("OK", Ok(got)) if got == expected => ok += 1,
                    ("OK", Ok(got)) => failures.push(format!("{file} [{chain}] `{rule}`: printed `{got}`, expected `{expected}`")),
                    ("OK", Err(e)) => failures.push(format!("{file} [{chain}] `{rule}`: refused ({e}), expected OK")),
                    ("FAIL", Err(_)) => ok += 1,
                    ("FAIL", Ok(got)) => failures.push(format!("{file} [{chain}] `{rule}`: accepted as `{got}`, expected FAIL")),
                    _ => {}
                }
            }
        }
    }
    eprintln!("upstream specs: {modules} typed modules, {ok} (rule, chain) cases agree, {} disagree", failures.len());
    for f in &failures {
        eprintln!("  {f}");
    }
    assert!(failures.is_empty(), "{} upstream spec cases disagree", failures.len());
}
