//! `nfsim trace`: one packet through one host, printed as TRACE lines or as JSON.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use nfsim::host::{Host, Interface, Socket};
use nfsim::packet::{CtState, Owner, Packet};
use nfsim::simulate::{Branch, Origin, simulate};
use nfsim::trace::Delivered;
use nfsim::traverse::Options;
use nfsim::xt::value::parse_proto;
use serde::Serialize;

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

/// `ADDR:PORT`, or `[ADDR]:PORT` for IPv6.
pub(crate) fn fmt_addr_port(a: IpAddr, p: u16) -> String {
    AddrPort(a, p).to_string()
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

/// The trace contract: one branch as `nfsim trace --json` prints it (keys in alphabetical order,
/// as the contract has always printed them), and with `branches` on the first when it forks.
#[derive(Serialize)]
pub(crate) struct BranchOut<'a> {
    assumptions: Vec<AssumptionOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    branches: Option<Vec<BranchOut<'a>>>,
    #[serde(serialize_with = "display_opt")]
    by: Option<&'a nfsim::trace::RuleRef>,
    delivered: DeliveredOut<'a>,
    #[serde(serialize_with = "display_opt")]
    original_dst: Option<AddrPort>,
    packet: PacketOut,
    probability: f64,
    reason: &'a Option<nfsim::Reason>,
    trace: Vec<StepOut<'a>>,
    /// On the first branch: more branches existed than the cap allows, and these are the first.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    undecidable: bool,
    verdict: nfsim::trace::Verdict,
}

#[derive(Serialize)]
struct AssumptionOut<'a> {
    matched: bool,
    reason: &'a nfsim::traverse::Why,
    #[serde(serialize_with = "display")]
    rule: &'a nfsim::trace::RuleRef,
}

#[derive(Serialize)]
struct PacketOut {
    #[serde(serialize_with = "display")]
    dst: AddrPort,
    mark: u32,
    proto: u8,
    #[serde(serialize_with = "display")]
    src: AddrPort,
}

/// `ADDR:PORT` (`[ADDR]:PORT` for IPv6), written straight into the output.
struct AddrPort(IpAddr, u16);

impl std::fmt::Display for AddrPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
        }
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

#[allow(clippy::ref_option)] // the signature serde's `serialize_with` calls
fn display_opt<T: std::fmt::Display, S: serde::Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

#[derive(Serialize)]
struct StepOut<'a> {
    chain: &'a str,
    hook: nfsim::ruleset::Hook,
    kind: nfsim::trace::StepKind,
    rule: u32,
    table: nfsim::ruleset::TableName,
}

/// Where a branch went: `{"local": {...}}`, `{"egress": {...}}` or `null`.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeliveredOut<'a> {
    Local {
        #[serde(serialize_with = "display")]
        addr: IpAddr,
        port: u16,
        process: &'a Option<String>,
    },
    Egress {
        iface: &'a str,
        #[serde(serialize_with = "display")]
        next_hop: IpAddr,
    },
    #[serde(untagged)]
    None,
}

impl<'a> DeliveredOut<'a> {
    pub(crate) fn of(d: &'a Option<Delivered>) -> DeliveredOut<'a> {
        match d {
            Some(Delivered::Local { addr, port, process }) => DeliveredOut::Local { addr: *addr, port: *port, process },
            Some(Delivered::Egress { iface, next_hop }) => DeliveredOut::Egress { iface, next_hop: *next_hop },
            None => DeliveredOut::None,
        }
    }
}

impl<'a> BranchOut<'a> {
    fn of(b: &'a Branch) -> BranchOut<'a> {
        BranchOut {
            assumptions: b.assumptions.iter().map(|a| AssumptionOut { matched: a.matched, reason: &a.reason, rule: &a.rule }).collect(),
            branches: None,
            by: b.by.as_ref(),
            delivered: DeliveredOut::of(&b.delivered),
            original_dst: b.original_dst.map(|(a, p)| AddrPort(a, p)),
            packet: PacketOut {
                dst: AddrPort(b.packet.dst, b.packet.dport),
                mark: b.packet.mark,
                proto: b.packet.proto,
                src: AddrPort(b.packet.src, b.packet.sport),
            },
            probability: b.probability,
            reason: &b.reason,
            trace: b.trace.iter().map(|s| StepOut { chain: &s.chain, hook: s.hook, kind: s.kind, rule: s.rule, table: s.table }).collect(),
            truncated: false,
            undecidable: b.undecidable,
            verdict: b.verdict,
        }
    }

    /// A simulation in the contract: its first branch, with all of them under `branches` when
    /// there are several (`null` when there is none).
    pub(crate) fn simulation(sim: &'a nfsim::Simulation) -> Option<BranchOut<'a>> {
        let mut top = BranchOut::of(sim.branches.first()?);
        top.truncated = sim.truncated;
        if sim.branches.len() > 1 {
            top.branches = Some(sim.branches.iter().map(BranchOut::of).collect());
        }
        Some(top)
    }
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

/// One packet as `nfsim trace` takes it: from the command line, or from a line of `--packets`.
pub(crate) struct PacketSpec<'s> {
    pub(crate) proto: &'s str,
    pub(crate) src: Option<&'s str>,
    pub(crate) dst: &'s str,
    pub(crate) from: &'s str,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) mark: u32,
    pub(crate) state: &'s str,
}

/// A mark as iptables reads one (`strtoul` base 0: decimal, `0x` hexadecimal, `0` octal).
pub(crate) fn parse_mark(s: &str) -> Result<u32, String> {
    nfsim::xt::value::parse_c_number(s)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("`{s}` is not a 32-bit mark (expected a number such as 16384 or 0x4000)"))
}

/// A packet field that is wrong.
#[derive(Debug)]
pub(crate) struct FieldError {
    /// The field (`dst`, `proto`, ...).
    pub(crate) field: &'static str,
    pub(crate) message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// The packet and where it comes from.
pub(crate) fn packet_of(spec: &PacketSpec<'_>) -> Result<(Packet, Origin), FieldError> {
    let bad = |field: &'static str| move |e: anyhow::Error| FieldError { field, message: format!("{e:#}") };
    let proto = parse_proto(spec.proto).map_err(|message| FieldError { field: "proto", message })?;
    let (dst, dport) = addr_port(spec.dst).map_err(bad("dst"))?;
    let unspecified = if dst.is_ipv4() { IpAddr::from([0, 0, 0, 0]) } else { IpAddr::from([0u16; 8]) };
    let (src, sport) = match spec.src {
        Some(s) => addr_port(s).map_err(bad("src"))?,
        None => (unspecified, 40000),
    };
    if src.is_ipv4() != dst.is_ipv4() && !src.is_unspecified() {
        return Err(FieldError { field: "src", message: "the source and the destination are of different families".into() });
    }
    let mut pkt = Packet::new(proto, src, if sport == 0 { 40000 } else { sport }, dst, dport);
    pkt.mark = spec.mark;
    pkt.ct_state = match spec.state.to_ascii_uppercase().as_str() {
        "NEW" => CtState::New,
        "ESTABLISHED" => CtState::Established,
        "RELATED" => CtState::Related,
        "INVALID" => CtState::Invalid,
        "UNTRACKED" => CtState::Untracked,
        s => return Err(FieldError { field: "state", message: format!("unknown state `{s}` (expected NEW, ESTABLISHED, RELATED, INVALID or UNTRACKED)") }),
    };
    let origin = if spec.from == "local" {
        let uid = spec.uid.unwrap_or(0);
        Origin::Local(Some(Owner { uid, gid: spec.gid.unwrap_or(uid), groups: Vec::new() }))
    } else {
        if spec.uid.is_some() || spec.gid.is_some() {
            return Err(FieldError { field: if spec.uid.is_some() { "uid" } else { "gid" }, message: "uid and gid apply to packets from `local` only".into() });
        }
        Origin::Iface(spec.from.to_string())
    };
    Ok((pkt, origin))
}

pub(crate) fn run(args: &TraceArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let ruleset = crate::classes::read_rules(&args.rules)?;
    let host = build_host(&args.host)?;
    if let Some(packets) = &args.packets {
        return crate::batch::run(&ruleset, &host, &options(&args.sim)?, packets, out);
    }
    let need = |v: &Option<String>, name: &str| v.clone().with_context(|| format!("--{name} is required (or give --packets FILE)"));
    let (proto, dst, from) = (need(&args.proto, "proto")?, need(&args.dst, "dst")?, need(&args.from, "from")?);
    let spec =
        PacketSpec { proto: &proto, src: args.src.as_deref(), dst: &dst, from: &from, uid: args.uid, gid: args.gid, mark: args.mark, state: &args.state };
    let (pkt, origin) = packet_of(&spec)?;
    let opts = options(&args.sim)?;
    let sim = simulate(&ruleset, &host, pkt, &origin, &opts);
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&BranchOut::simulation(&sim))?)?;
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
        if sim.truncated {
            writeln!(out, "truncated: the packet forks more than {} ways; only these branches were followed", opts.max_branches)?;
        }
    }
    Ok(if sim.branches.iter().all(|b| b.delivered.is_some()) { ExitCode::SUCCESS } else { ExitCode::from(4) })
}
