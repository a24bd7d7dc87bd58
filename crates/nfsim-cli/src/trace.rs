//! `nfsim trace`: one packet through one host, printed as TRACE lines or as JSON.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use nfsim::host::{Host, Interface, Socket};
use nfsim::packet::{CtState, Owner, Packet};
use nfsim::ruleset::{ParseOptions, parse_with};
use nfsim::simulate::{Branch, Origin, simulate};
use nfsim::trace::Delivered;
use nfsim::traverse::Options;
use nfsim::xt::value::parse_proto;
use serde_json::{Value, json};

use crate::{HostArgs, SimArgs, TraceArgs};

/// Parses `ADDR[:PORT]` or `[ADDR]:PORT`.
fn addr_port(s: &str) -> anyhow::Result<(IpAddr, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once(']').context("missing `]`")?;
        let port = p.strip_prefix(':').map(str::parse).transpose().context("bad port")?.unwrap_or(0);
        return Ok((a.parse().context("bad IPv6 address")?, port));
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok((a, 0));
    }
    let (a, p) = s.rsplit_once(':').with_context(|| format!("expected ADDR[:PORT], got `{s}`"))?;
    Ok((a.parse().with_context(|| format!("bad address `{a}`"))?, p.parse().with_context(|| format!("bad port `{p}`"))?))
}

fn fmt_addr_port(a: IpAddr, p: u16) -> String {
    match a {
        IpAddr::V6(a) => format!("[{a}]:{p}"),
        IpAddr::V4(a) => format!("{a}:{p}"),
    }
}

pub(crate) fn build_host(args: &HostArgs) -> anyhow::Result<Host> {
    let mut host = match &args.host {
        Some(p) => Host::from_text(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
            .map_err(|e| anyhow::anyhow!("host description {}: {e}", p.display()))?,
        None => Host::new("host"),
    };
    for spec in &args.ifaces {
        let (name, addrs) = spec.split_once('=').with_context(|| format!("--iface expects NAME=ADDR/PLEN, got `{spec}`"))?;
        let addrs = addrs.split(',').map(|a| a.parse().with_context(|| format!("bad address `{a}` in --iface"))).collect::<anyhow::Result<Vec<_>>>()?;
        host.interfaces.push(Interface { name: name.to_string(), addrs });
    }
    if let Some(gw) = args.gateway {
        host.gateway = Some(gw);
    }
    for kv in &args.sysctls {
        let (k, v) = kv.split_once('=').with_context(|| format!("--sysctl expects KEY=VALUE, got `{kv}`"))?;
        let on = v.trim() != "0";
        match k {
            "net.ipv4.ip_forward" | "net.ipv6.conf.all.forwarding" => host.sysctls.ip_forward = on,
            "net.ipv4.conf.all.route_localnet" | "route_localnet" => host.sysctls.route_localnet = on,
            "net.ipv4.conf.all.rp_filter" | "rp_filter" => host.sysctls.rp_filter = v.trim().parse().context("rp_filter is 0, 1 or 2")?,
            "net.ipv4.ip_nonlocal_bind" | "ip_nonlocal_bind" => host.sysctls.ip_nonlocal_bind = on,
            "net.ipv4.conf.all.src_valid_mark" | "src_valid_mark" => host.sysctls.src_valid_mark = on,
            _ => bail!(
                "unknown sysctl `{k}` (expected net.ipv4.ip_forward, net.ipv4.conf.all.route_localnet, net.ipv4.conf.all.rp_filter, net.ipv4.ip_nonlocal_bind or net.ipv4.conf.all.src_valid_mark)"
            ),
        }
    }
    for l in &args.listens {
        let (l, uid) = match l.split_once('@') {
            Some((l, u)) => (l, u.parse().context("bad uid in --listen")?),
            None => (l.as_str(), 0),
        };
        let (l, process) = match l.split_once('/') {
            Some((l, p)) => (l, p.to_string()),
            None => (l, String::new()),
        };
        let (proto, rest) = l.split_once(':').with_context(|| format!("--listen expects PROTO:[ADDR:]PORT, got `{l}`"))?;
        let proto = parse_proto(proto).map_err(anyhow::Error::msg)?;
        let (addr, port) = match rest.parse::<u16>() {
            Ok(p) => (IpAddr::from([0, 0, 0, 0]), p),
            Err(_) => addr_port(rest)?,
        };
        host.sockets.push(Socket { proto, addr, port, process, owner: Owner { uid, gid: uid, groups: Vec::new() }, transparent: false });
        if addr.is_unspecified() && addr.is_ipv4() {
            host.sockets.push(Socket {
                proto,
                addr: IpAddr::from([0u16; 8]),
                port,
                process: host.sockets.last().map(|s| s.process.clone()).unwrap_or_default(),
                owner: Owner { uid, gid: uid, groups: Vec::new() },
                transparent: false,
            });
        }
    }
    Ok(host)
}

fn delivered_json(d: &Option<Delivered>) -> Value {
    match d {
        Some(Delivered::Local { addr, port, process }) => json!({"local": {"addr": addr.to_string(), "port": port, "process": process}}),
        Some(Delivered::Egress { iface, next_hop }) => json!({"egress": {"iface": iface, "next_hop": next_hop.to_string()}}),
        None => Value::Null,
    }
}

fn branch_json(b: &Branch) -> Value {
    let trace: Vec<Value> = b.trace.iter().map(|s| json!({"hook": s.hook, "table": s.table, "chain": s.chain, "kind": s.kind, "rule": s.rule})).collect();
    json!({
        "verdict": b.verdict,
        "trace": trace,
        "packet": {"proto": b.packet.proto, "src": fmt_addr_port(b.packet.src, b.packet.sport), "dst": fmt_addr_port(b.packet.dst, b.packet.dport), "mark": b.packet.mark},
        "delivered": delivered_json(&b.delivered),
        "by": b.by.as_ref().map(|r| r.to_string()),
        "reason": b.reason,
        "original_dst": b.original_dst.map(|(a, p)| fmt_addr_port(a, p)),
        "probability": b.probability,
        "undecidable": b.undecidable,
        "assumptions": b.assumptions.iter().map(|a| json!({"rule": a.rule.to_string(), "matched": a.matched, "reason": a.reason})).collect::<Vec<_>>(),
    })
}

/// Simulation options from `--backend` and `--assume`.
pub(crate) fn options(sim: &SimArgs) -> anyhow::Result<Options> {
    Ok(Options {
        backend: match sim.backend.as_str() {
            "nft" => nfsim::hook::Backend::Nft,
            "legacy" => nfsim::hook::Backend::Legacy,
            b => bail!("unknown backend `{b}` (expected nft or legacy)"),
        },
        assume: match sim.assume.as_deref() {
            None => None,
            Some("match") => Some(true),
            Some("nomatch") => Some(false),
            Some(a) => bail!("--assume takes `match` or `nomatch`, not `{a}`"),
        },
        ..Options::default()
    })
}

pub(crate) fn run(args: &TraceArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.rules).with_context(|| format!("reading {}", args.rules.display()))?;
    let parsed = parse_with(&text, &ParseOptions::default());
    if parsed.has_errors() {
        for d in parsed.errors() {
            eprint!("{}", d.render(&args.rules.display().to_string(), &text));
        }
        bail!("{} has errors; fix them or check them with `nfsim check`", args.rules.display());
    }
    let host = build_host(&args.host)?;
    let proto = parse_proto(&args.proto).map_err(anyhow::Error::msg)?;
    let (dst, dport) = addr_port(&args.dst)?;
    let unspecified = if dst.is_ipv4() { IpAddr::from([0, 0, 0, 0]) } else { IpAddr::from([0u16; 8]) };
    let (src, sport) = match &args.src {
        Some(s) => addr_port(s)?,
        None => (unspecified, 40000),
    };
    let mut pkt = Packet::new(proto, src, if sport == 0 { 40000 } else { sport }, dst, dport);
    pkt.mark = args.mark;
    pkt.ct_state = match args.state.to_ascii_uppercase().as_str() {
        "NEW" => CtState::New,
        "ESTABLISHED" => CtState::Established,
        "RELATED" => CtState::Related,
        "INVALID" => CtState::Invalid,
        "UNTRACKED" => CtState::Untracked,
        s => bail!("unknown state `{s}` (expected NEW, ESTABLISHED, RELATED, INVALID or UNTRACKED)"),
    };
    let origin = if args.from == "local" {
        let uid = args.uid.unwrap_or(0);
        Origin::Local(Some(Owner { uid, gid: args.gid.unwrap_or(uid), groups: Vec::new() }))
    } else {
        if args.uid.is_some() || args.gid.is_some() {
            bail!("--uid and --gid apply to --from local only");
        }
        Origin::Iface(args.from.clone())
    };
    let opts = options(&args.sim)?;
    let sim = simulate(&parsed.ruleset, &host, pkt, &origin, &opts);
    if args.json {
        let mut top = sim.branches.first().map(branch_json).unwrap_or(Value::Null);
        if sim.branches.len() > 1 {
            top["branches"] = Value::Array(sim.branches.iter().map(branch_json).collect());
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&top)?)?;
    } else {
        for (i, b) in sim.branches.iter().enumerate() {
            if sim.branches.len() > 1 {
                writeln!(out, "branch {} (probability {:.6}{}):", i + 1, b.probability, if b.undecidable { ", undecidable" } else { "" })?;
                for a in &b.assumptions {
                    writeln!(out, "  assuming {} {}: {}", a.rule, if a.matched { "matches" } else { "does not match" }, a.reason)?;
                }
            }
            for s in &b.trace {
                writeln!(out, "{s}")?;
            }
            let verdict = serde_json::to_value(b.verdict)?;
            let mut line = format!("verdict: {}", verdict.as_str().unwrap_or("?"));
            match &b.delivered {
                Some(Delivered::Local { addr, port, process }) => {
                    line.push_str(&format!(", delivered to {}{}", fmt_addr_port(*addr, *port), process.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()))
                }
                Some(Delivered::Egress { iface, next_hop }) => line.push_str(&format!(", out {iface} to {next_hop}")),
                None => {}
            }
            if let Some(r) = &b.reason {
                line.push_str(&format!(" ({r})"));
            }
            if let Some((a, p)) = b.original_dst {
                line.push_str(&format!(", original destination {}", fmt_addr_port(a, p)));
            }
            writeln!(out, "{line}")?;
        }
    }
    Ok(if sim.branches.iter().all(|b| b.delivered.is_some()) { ExitCode::SUCCESS } else { ExitCode::from(4) })
}
