//! `nfsim path` and `nfsim example`: multi-hop paths through a scenario.

use std::io::Write;
use std::path::Path as FsPath;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use nfsim::path::{Outcome, Path, simulate_flow};
use nfsim::topology::{BUILTINS, Scenario, builtin};

pub(crate) fn example(name: Option<&str>, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match name {
        None => {
            for (n, text) in BUILTINS {
                let desc = Scenario::from_text(text).map(|s| s.description).unwrap_or_default();
                writeln!(out, "{n}\t{desc}")?;
            }
        }
        Some(n) => match builtin(n) {
            Some(t) => out.write_all(t.as_bytes())?,
            None => bail!("no built-in scenario `{n}` (see `nfsim example`)"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// The scenario of a file (rule files read relative to it) or of a built-in (`istio-fortio` by default).
pub(crate) fn load(file: Option<&FsPath>, example: Option<&str>) -> anyhow::Result<Scenario> {
    let text = match (file, example) {
        (Some(_), Some(_)) => bail!("give a scenario file or --example, not both"),
        (Some(f), None) => std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        (None, e) => {
            let name = e.unwrap_or("istio-fortio");
            builtin(name).with_context(|| format!("no built-in scenario `{name}` (see `nfsim example`)"))?.to_string()
        }
    };
    let mut scenario = Scenario::from_text(&text).map_err(|e| anyhow::anyhow!("scenario: {e}"))?;
    let base = file.and_then(FsPath::parent).map(FsPath::to_path_buf).unwrap_or_default();
    scenario.read_rule_files(|f| std::fs::read_to_string(base.join(f)).map_err(|e| e.to_string())).map_err(anyhow::Error::msg)?;
    Ok(scenario)
}

pub(crate) fn run(file: Option<&FsPath>, example: Option<&str>, flow: Option<&str>, json: bool, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let scenario = load(file, example)?;
    let names: Vec<String> = match flow {
        Some(f) => vec![f.to_string()],
        None => scenario.flows.iter().map(|f| f.name.clone()).collect(),
    };
    let mut paths: Vec<Path> = Vec::new();
    for n in &names {
        paths.push(simulate_flow(&scenario, n).map_err(anyhow::Error::msg)?);
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&paths)?)?;
    } else {
        for p in &paths {
            report(p, out)?;
        }
    }
    let code = if paths.iter().all(|p| p.outcome == Outcome::Delivered) {
        0
    } else if paths.iter().any(|p| matches!(p.outcome, Outcome::Loop { .. })) {
        3
    } else {
        4
    };
    Ok(ExitCode::from(code))
}

pub(crate) fn report(p: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "flow {}:", p.flow)?;
    for (i, h) in p.hops.iter().enumerate() {
        writeln!(
            out,
            "  hop {}: {}/{} {}:{} -> {}:{} (original {}:{}) accepted by {}/{} on port {}",
            i + 1,
            h.host,
            h.process,
            h.before.src,
            h.before.sport,
            h.before.dst,
            h.before.dport,
            h.original_dst.0,
            h.original_dst.1,
            h.accepted_host.as_deref().unwrap_or("-"),
            h.accepted_by.as_deref().unwrap_or("-"),
            h.listener_port
        )?;
        let fired: Vec<String> =
            h.trace.iter().filter(|s| s.kind == nfsim::trace::StepKind::Rule).map(|s| format!("{}:{}/{}:{}", s.host, s.table, s.chain, s.rule)).collect();
        if !fired.is_empty() {
            writeln!(out, "         rules: {}", fired.join(", "))?;
        }
        if (h.after.dst, h.after.dport) != (h.before.dst, h.before.dport) {
            writeln!(out, "         NAT: {}:{} -> {}:{}", h.before.dst, h.before.dport, h.after.dst, h.after.dport)?;
        }
    }
    let outcome = match &p.outcome {
        Outcome::Delivered => "delivered".to_string(),
        Outcome::Loop { cycle, .. } => format!("LOOP: hops {} repeat forever", cycle.iter().map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(", ")),
        o => serde_json::to_string(o)?,
    };
    writeln!(out, "  outcome: {outcome}")?;
    Ok(())
}
