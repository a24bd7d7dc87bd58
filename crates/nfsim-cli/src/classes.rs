//! `nfsim classes` and `nfsim diff`: every packet at once, as classes with one fate each.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use nfsim::classes::region::{Input, num_addr};
use nfsim::classes::{Change, Class, DiffPlan, Scope, classes, describe_fate, describe_region, outcomes};
use nfsim::host::Host;
use nfsim::ruleset::{Family, ParseOptions, Ruleset, parse_with};
use nfsim::simulate::{Branch, simulate};
use nfsim::traverse::Options;
use serde_json::{Value, json};

use crate::trace::{build_host, fmt_addr_port as addr_port, options};
use crate::{HostArgs, SimArgs};

/// Reads and parses a rule file; errors stop here (with their located diagnostics on stderr).
pub(crate) fn read_rules(path: &FsPath) -> anyhow::Result<Ruleset> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed = parse_with(&text, &ParseOptions::default());
    if parsed.has_errors() {
        for d in parsed.errors() {
            eprint!("{}", d.render(&path.display().to_string(), &text));
        }
        bail!("{} has errors; fix them or check them with `nfsim check`", path.display());
    }
    Ok(parsed.ruleset)
}

fn family_of(rs: &Ruleset) -> Family {
    if rs.tables.iter().any(|t| t.family == Family::V4) || rs.tables.is_empty() { Family::V4 } else { Family::V6 }
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "ipv6-icmp".into(),
        n => n.to_string(),
    }
}

/// The `nfsim trace` arguments that reproduce an example packet.
fn trace_args(scope: &Scope, i: &Input) -> String {
    let p = scope.packet(i);
    let from = match &scope.from {
        None => format!("--from local --uid {} --gid {}", i.uid, i.gid),
        Some(f) => format!("--from {f}"),
    };
    let mut s = format!("{from} --proto {} --src {} --dst {}", proto_name(p.proto), addr_port(p.src, p.sport), addr_port(p.dst, p.dport));
    if p.mark != 0 {
        s.push_str(&format!(" --mark {:#x}", p.mark));
    }
    s
}

fn example_json(scope: &Scope, i: &Input) -> Value {
    let p = scope.packet(i);
    let mut v = json!({
        "proto": p.proto,
        "src": addr_port(p.src, p.sport),
        "dst": addr_port(p.dst, p.dport),
        "mark": p.mark,
        "state": format!("{:?}", p.ct_state).to_uppercase(),
        "from": scope.from.clone().unwrap_or_else(|| "local".into()),
    });
    if scope.from.is_none() {
        v["uid"] = json!(i.uid);
        v["gid"] = json!(i.gid);
    }
    v
}

/// The trace contract's `verdict` and `delivered` of the example packet (and every branch when
/// the outcome forks).
fn outcome_json(rules: &Ruleset, host: &Host, scope: &Scope, i: &Input, opts: &Options) -> Value {
    let sim = simulate(rules, host, scope.packet(i), &scope.origin(i), opts);
    let one = |b: &Branch| {
        json!({
            "verdict": b.verdict,
            "delivered": crate::trace::DeliveredOut::of(&b.delivered),
            "by": b.by.as_ref().map(ToString::to_string),
            "reason": b.reason,
            "original_dst": b.original_dst.map(|(a, p)| addr_port(a, p)),
            "probability": b.probability,
        })
    };
    let mut top = sim.branches.first().map(one).unwrap_or(Value::Null);
    if sim.branches.len() > 1 {
        top["branches"] = Value::Array(sim.branches.iter().map(one).collect());
    }
    top
}

/// The scopes to analyse: `--from` as given, or locally generated packets plus every interface.
fn scopes(host: &Host, family: Family, from: Option<&str>) -> Vec<Scope> {
    match from {
        Some("local") => vec![Scope::all(host, family, None)],
        Some(i) => vec![Scope::all(host, family, Some(i))],
        None => {
            let mut v = vec![Scope::all(host, family, None)];
            for i in host.interfaces.iter().filter(|i| i.name != "lo") {
                v.push(Scope::all(host, family, Some(&i.name)));
            }
            v
        }
    }
}

fn from_text(scope: &Scope) -> String {
    match &scope.from {
        None => "sent by a local process".into(),
        Some(i) => format!("arriving on {i}"),
    }
}

fn class_fates(c: &Class, family: Family) -> String {
    c.fates.iter().map(|f| describe_fate(f, family)).collect::<Vec<_>>().join("\n       or ")
}

/// `nfsim classes`.
pub(crate) fn run_classes(rules: &FsPath, host_args: &HostArgs, from: &str, sim: &SimArgs, json: bool, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let rs = read_rules(rules)?;
    let host = build_host(host_args)?;
    let opts = options(sim)?;
    let family = family_of(&rs);
    let scope = scopes(&host, family, Some(from)).remove(0);
    if let Some(i) = &scope.from
        && host.interface(i).is_none()
    {
        bail!("the host has no interface `{i}` (give it with --iface or --host)");
    }
    let cs = classes(&rs, &host, &scope, &opts);
    if json {
        let items: Vec<Value> = cs
            .classes
            .iter()
            .map(|c| {
                json!({
                    "description": describe_region(&c.region, &scope, usize::MAX),
                    "outcome": c.fates.iter().map(|f| describe_fate(f, family)).collect::<Vec<_>>(),
                    "example": example_json(&scope, &c.example),
                    "result": outcome_json(&rs, &host, &scope, &c.example, &opts),
                })
            })
            .collect();
        let v = json!({"from": scope.from.clone().unwrap_or_else(|| "local".into()), "count": items.len(), "truncated": cs.truncated, "classes": items});
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(out, "{} classes of packets {} (new connections; TCP SYN, ICMP echo request):", cs.classes.len(), from_text(&scope))?;
        for (n, c) in cs.classes.iter().enumerate() {
            writeln!(out, "{:>3}. {}", n + 1, describe_region(&c.region, &scope, 4))?;
            writeln!(out, "     -> {}", class_fates(c, family))?;
            writeln!(out, "     example: nfsim trace --rules {} {}", rules.display(), trace_args(&scope, &c.example))?;
        }
    }
    if cs.truncated {
        eprintln!(
            "nfsim: warning: some packets fork more than {} ways (`statistic`, undecidable rules); the analysis stopped following them, so some classes are incomplete",
            opts.max_branches
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A change whose example really differs (fates can differ in form and agree on some packets):
/// the first packet of the change, or of one of its cubes, where the outcomes differ.
fn real_example(ch: &Change, family: Family) -> Option<Input> {
    let meaning = |f: &[nfsim::classes::Fate], i: &Input| -> Vec<nfsim::classes::Outcome> {
        let mut v: Vec<_> = outcomes(f, i, family).iter().map(nfsim::classes::Outcome::meaning).collect();
        v.sort();
        v
    };
    let differs = |i: &Input| meaning(&ch.old, i) != meaning(&ch.new, i);
    std::iter::once(ch.example).chain(ch.region.iter().filter_map(|c| c.example())).chain(ch.region.iter().filter_map(|c| c.min())).find(differs)
}

pub(crate) struct Diffed {
    pub(crate) scope: Scope,
    pub(crate) changes: Vec<(Change, Input)>,
    /// The fork cap cut the analysis of this scope on one side or both.
    pub(crate) truncated: bool,
}

/// The changes between two rule sets on one host, for every scope (scopes in parallel).
pub(crate) fn diff_rules(old: &Ruleset, new: &Ruleset, host: &Host, from: Option<&str>, opts: &Options) -> Vec<Diffed> {
    let family = family_of(old);
    let all = scopes(host, family, from);
    let plan = DiffPlan::new(old, new, family);
    let plan = &plan;
    std::thread::scope(|t| {
        let jobs: Vec<_> = all
            .into_iter()
            .map(|scope| {
                t.spawn(move || {
                    let (changes, truncated) = plan.diff_and_cut(old, new, host, &scope, opts);
                    let changes = changes.into_iter().filter_map(|c| real_example(&c, family).map(|e| (c, e))).collect();
                    Diffed { scope, changes, truncated }
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().expect("a diff thread panicked")).collect()
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn print_changes(
    diffs: &[Diffed],
    old: &Ruleset,
    new: &Ruleset,
    host: &Host,
    opts: &Options,
    json: bool,
    label: &str,
    out: &mut impl Write,
) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    for d in diffs.iter().filter(|d| d.truncated) {
        eprintln!(
            "nfsim: warning: {label}some packets {} fork more than {} ways (`statistic`, undecidable rules); the analysis stopped following them, so changes among them may be missing",
            from_text(&d.scope),
            opts.max_branches
        );
    }
    let total: usize = diffs.iter().map(|d| d.changes.len()).sum();
    if !json {
        if total == 0 {
            writeln!(out, "{label}no packet's fate changes")?;
        } else {
            writeln!(out, "{label}{total} class{} of packets change{}:", if total == 1 { "" } else { "es" }, if total == 1 { "s" } else { "" })?;
        }
    }
    let mut n = 0;
    for d in diffs {
        let family = d.scope.family;
        for (ch, example) in &d.changes {
            n += 1;
            let description = describe_region(&ch.region, &d.scope, if json { usize::MAX } else { 4 });
            if json {
                items.push(json!({
                    "description": format!("{}: {description}", from_text(&d.scope)),
                    "example": example_json(&d.scope, example),
                    "old": outcome_json(old, host, &d.scope, example, opts),
                    "new": outcome_json(new, host, &d.scope, example, opts),
                    "old_outcome": ch.old.iter().map(|f| describe_fate(f, family)).collect::<Vec<_>>(),
                    "new_outcome": ch.new.iter().map(|f| describe_fate(f, family)).collect::<Vec<_>>(),
                }));
            } else {
                writeln!(out, "{n:>3}. {}: {description}", from_text(&d.scope))?;
                let only = |a: &[nfsim::classes::Fate], b: &[nfsim::classes::Fate]| -> Vec<String> {
                    a.iter().filter(|f| !b.contains(f)).map(|f| describe_fate(f, family)).collect()
                };
                let common = ch.old.iter().filter(|f| ch.new.contains(f)).count();
                if common == 0 {
                    writeln!(out, "     old: {}", only(&ch.old, &ch.new).join("\n       or "))?;
                    writeln!(out, "     new: {}", only(&ch.new, &ch.old).join("\n       or "))?;
                } else {
                    writeln!(out, "     {common} outcome{} the same on both sides; besides:", if common == 1 { "" } else { "s" })?;
                    writeln!(out, "     old: {}", only(&ch.old, &ch.new).join("\n       or "))?;
                    writeln!(out, "     new: {}", only(&ch.new, &ch.old).join("\n       or "))?;
                }
                writeln!(out, "     example: {}", trace_args(&d.scope, example))?;
            }
        }
    }
    Ok(items)
}

/// `nfsim diff OLD NEW`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_diff(
    old: &FsPath,
    new: &FsPath,
    host_args: &HostArgs,
    from: Option<&str>,
    sim: &SimArgs,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    // The two files are read in parallel (large dumps take most of the time parsing).
    let (a, b) = std::thread::scope(|t| {
        let a = t.spawn(|| read_rules(old));
        let b = read_rules(new);
        (a.join().expect("a parse thread panicked"), b)
    });
    let (a, b) = (a?, b?);
    if family_of(&a) != family_of(&b) {
        bail!("{} and {} are rule sets of different address families", old.display(), new.display());
    }
    let host = build_host(host_args)?;
    let opts = options(sim)?;
    let diffs = diff_rules(&a, &b, &host, from, &opts);
    let items = print_changes(&diffs, &a, &b, &host, &opts, json, "", out)?;
    if json {
        let truncated = diffs.iter().any(|d| d.truncated);
        writeln!(out, "{}", serde_json::to_string_pretty(&json!({"changes": items, "truncated": truncated}))?)?;
    }
    let changed = diffs.iter().any(|d| !d.changes.is_empty());
    out.flush()?;
    // Large rule sets take a while to free; the process ends now anyway.
    std::mem::forget((a, b, diffs));
    Ok(if changed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `--rules-new HOST=FILE`.
pub(crate) fn parse_rules_new(specs: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    specs
        .iter()
        .map(|s| {
            let (h, f) = s.split_once('=').with_context(|| format!("--rules-new expects HOST=FILE, got `{s}`"))?;
            Ok((h.to_string(), PathBuf::from(f)))
        })
        .collect()
}

fn region_text(r: &nfsim::classes::region::Region, scope: &Scope) -> String {
    describe_region(r, scope, 4)
}

/// `nfsim verify`: no loop for any connection of any process (exit 0), loops with witnesses
/// (exit 3), or classes that could not be decided (exit 4).
pub(crate) fn run_verify(file: Option<&FsPath>, example: Option<&str>, json: bool, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let scenario = crate::path::load(file, example)?;
    let v = nfsim::verify::verify(&scenario).map_err(anyhow::Error::msg)?;
    if json {
        let loops: Vec<Value> = v
            .loops
            .iter()
            .map(|l| {
                json!({
                    "host": l.host,
                    "process": l.process,
                    "description": region_text(&l.region, &l.scope),
                    "cycle": l.cycle,
                    "also": l.also,
                    "example": example_json(&l.scope, &l.example),
                    "witness": l.witness,
                })
            })
            .collect();
        let unknown: Vec<Value> = v
            .unknown
            .iter()
            .map(|u| json!({"host": u.host, "process": u.process, "description": region_text(&u.region, &u.scope), "reason": u.reason}))
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&json!({"scenario": scenario.name, "starts": v.starts, "loops": loops, "undecided": unknown}))?)?;
    } else {
        if v.loops.is_empty() && v.unknown.is_empty() {
            writeln!(
                out,
                "no loop for any packet: every TCP connection of the {} processes in `{}`, to every destination and port, was followed",
                v.starts, scenario.name
            )?;
        }
        for l in &v.loops {
            let who = match l.region.first() {
                Some(c) => format!("uid {}, gid {}", c.uid.min().unwrap_or(0), c.gid.min().unwrap_or(0)),
                None => String::new(),
            };
            writeln!(
                out,
                "LOOP: connections of {}/{} ({who}; {}) go round {} forever",
                l.host,
                l.process,
                region_text(&l.region, &l.scope),
                l.cycle.join(" -> ")
            )?;
            if !l.also.is_empty() {
                writeln!(out, "  also entered by connections of: {}", l.also.join(", "))?;
            }
            writeln!(out, "  witness: {}/{} calling {}:{}", l.host, l.process, num_addr(l.example.dst, Family::V4), l.example.dport)?;
            crate::path::report(&l.witness, out)?;
        }
        for u in &v.unknown {
            writeln!(out, "UNDECIDED: connections of {}/{} ({}): {}", u.host, u.process, region_text(&u.region, &u.scope), u.reason)?;
        }
    }
    Ok(ExitCode::from(if !v.loops.is_empty() {
        3
    } else if !v.unknown.is_empty() {
        4
    } else {
        0
    }))
}

fn path_summary(p: &nfsim::path::Path) -> String {
    let hops: Vec<String> = p.hops.iter().map(|h| format!("{}/{}->{}", h.host, h.process, h.accepted_by.as_deref().unwrap_or("-"))).collect();
    format!("{} [{}]", serde_json::to_string(&p.outcome).unwrap_or_default(), hops.join(", "))
}

/// `nfsim diff --scenario S --rules-new HOST=FILE`: flows, loops and every packet of the changed hosts.
pub(crate) fn run_scenario_diff(s: &str, rules_new: &[(String, PathBuf)], json: bool, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if rules_new.is_empty() {
        bail!("give the changed hosts' rules with --rules-new HOST=FILE");
    }
    let file = FsPath::new(s);
    let old = if file.exists() { crate::path::load(Some(file), None)? } else { crate::path::load(None, Some(s))? };
    let mut new = old.clone();
    for (h, f) in rules_new {
        let spec = new.hosts.iter_mut().find(|x| &x.name == h).with_context(|| format!("the scenario has no host `{h}`"))?;
        spec.rules = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        spec.rules_file = None;
        read_rules(f)?;
    }
    let (old_hosts, new_hosts) = (old.load().map_err(anyhow::Error::msg)?, new.load().map_err(anyhow::Error::msg)?);
    let mut changed = false;
    // Every packet of each changed host.
    let opts = Options::default();
    let mut items = Vec::new();
    let mut truncated = false;
    for (h, _) in rules_new {
        let (a, b) = (old_hosts.iter().find(|x| &x.host.name == h), new_hosts.iter().find(|x| &x.host.name == h));
        let (Some(a), Some(b)) = (a, b) else { continue };
        let diffs = diff_rules(&a.ruleset, &b.ruleset, &a.host, None, &opts);
        changed |= diffs.iter().any(|d| !d.changes.is_empty());
        truncated |= diffs.iter().any(|d| d.truncated);
        let mut found = print_changes(&diffs, &a.ruleset, &b.ruleset, &a.host, &opts, json, &format!("host {h}: "), out)?;
        for f in &mut found {
            f["host"] = json!(h);
        }
        items.extend(found);
    }
    // Flows.
    let (pa, pb) = (nfsim::path::simulate_flows(&old).map_err(anyhow::Error::msg)?, nfsim::path::simulate_flows(&new).map_err(anyhow::Error::msg)?);
    let mut flows = Vec::new();
    for (a, b) in pa.iter().zip(&pb) {
        let (sa, sb) = (path_summary(a), path_summary(b));
        if sa != sb {
            changed = true;
            if !json {
                writeln!(out, "flow {}: was {sa}\n  now {sb}", a.flow)?;
            }
            flows.push(json!({"flow": a.flow, "old": a, "new": b}));
        }
    }
    // Loops over every packet.
    let (va, vb) = (nfsim::verify::verify(&old).map_err(anyhow::Error::msg)?, nfsim::verify::verify(&new).map_err(anyhow::Error::msg)?);
    let loops = |v: &nfsim::verify::Verification| -> Vec<String> {
        v.loops.iter().map(|l| format!("{}/{} ({}) loops via {}", l.host, l.process, region_text(&l.region, &l.scope), l.cycle.join(" -> "))).collect()
    };
    let (la, lb) = (loops(&va), loops(&vb));
    let added: Vec<&String> = lb.iter().filter(|l| !la.contains(l)).collect();
    let removed: Vec<&String> = la.iter().filter(|l| !lb.contains(l)).collect();
    if !added.is_empty() || !removed.is_empty() {
        changed = true;
    }
    if json {
        let v = json!({"changes": items, "truncated": truncated, "flows": flows, "loops": {"old": la, "new": lb, "added": added, "removed": removed}});
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for l in &added {
            writeln!(out, "new LOOP: {l}")?;
        }
        for l in &removed {
            writeln!(out, "loop gone: {l}")?;
        }
        if lb.is_empty() {
            writeln!(out, "no loop for any packet with the new rules")?;
        }
    }
    Ok(if changed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
