//! Data-driven tests of the one-packet engine (`nfsim::simulate`): every `NAME.yaml` in
//! `tests/fixtures/engine/` holds a rule set (iptables-save text), a host (the format
//! `nfsim trace --host FILE` reads) and packets; each packet is simulated and its branches are
//! printed in the kernel's TRACE vocabulary, followed by the verdict, the packet's final fields,
//! where it went, the deciding rule, the reason, the probability and the assumptions. The result
//! is compared with `NAME.expected`; `NFSIM_UPDATE_GOLDENS=1` rewrites the `.expected` files
//! (review the diff before committing them).
//!
//! A fixture:
//!
//! ```yaml
//! description: What the fixture shows.
//! rules: |
//!   *filter
//!   :OUTPUT ACCEPT [0:0]
//!   -A OUTPUT -p tcp -m tcp --dport 22 -j DROP
//!   COMMIT
//! host:                       # nfsim::host::Host
//!   name: pod
//!   interfaces: [{name: eth0, addrs: [10.0.0.5/24]}]
//!   gateway: 10.0.0.1
//! options: {backend: nft}     # optional: backend (nft, legacy), assume (match, nomatch), max_branches
//! packets:
//!   - name: ssh from a local process
//!     from: local             # `local`, or the interface the packet arrives on
//!     uid: 1000               # local only: the socket's owner (none given: no owner known)
//!     proto: tcp              # tcp, udp, icmp, ipv6-icmp, sctp or a number
//!     src: 0.0.0.0:40000      # optional, ADDR[:PORT] or [ADDR]:PORT; default unspecified, port 40000
//!     dst: 10.0.0.9:22
//! ```
//!
//! Packets may also give `gid`, `groups`, `mark`, `ct_mark`, `state` (NEW, ESTABLISHED,
//! RELATED, INVALID, UNTRACKED), `ttl`, `tos`, `len`, `flags` (`SYN,ACK`), `icmp_type`,
//! `icmp_code`, `src_mac` and `options` (overriding the fixture's). Unknown keys are errors,
//! in the host too.

use std::fmt::{Display, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use nfsim::hook::Backend;
use nfsim::host::Host;
use nfsim::packet::{CtState, Owner, Packet, tcp_flags};
use nfsim::simulate::{Branch, Origin, Simulation, simulate};
use nfsim::trace::{Delivered, Step};
use nfsim::traverse::Options;
use serde::Deserialize;
use serde_json::Value;

/// One fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    /// What the fixture shows (copied to the top of the `.expected` file).
    description: String,
    /// iptables-save (or ip6tables-save) text.
    rules: String,
    /// The host.
    host: Host,
    /// Options for every packet.
    #[serde(default)]
    options: OptionSpec,
    /// The packets, simulated one by one.
    packets: Vec<PacketSpec>,
}

/// Simulation options; unset ones keep `Options::default()` (or the fixture's, for a packet).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionSpec {
    backend: Option<Backend>,
    assume: Option<Assume>,
    max_branches: Option<usize>,
}

/// `--assume match|nomatch`: what to take for a rule whose outcome cannot be known.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Assume {
    Match,
    Nomatch,
}

impl OptionSpec {
    /// `self` with the options `over` sets replaced.
    fn merged(&self, over: &OptionSpec) -> OptionSpec {
        OptionSpec { backend: over.backend.or(self.backend), assume: over.assume.or(self.assume), max_branches: over.max_branches.or(self.max_branches) }
    }

    /// The simulation options (field by field, so that options added later keep their defaults).
    fn options(&self) -> Options {
        let mut o = Options::default();
        if let Some(b) = self.backend {
            o.backend = b;
        }
        if let Some(a) = self.assume {
            o.assume = Some(matches!(a, Assume::Match));
        }
        if let Some(m) = self.max_branches {
            o.max_branches = m;
        }
        o
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.backend {
            parts.push(format!("backend {}", if b == Backend::Legacy { "legacy" } else { "nft" }));
        }
        if let Some(a) = self.assume {
            parts.push(format!("assume {}", if matches!(a, Assume::Match) { "match" } else { "nomatch" }));
        }
        if let Some(m) = self.max_branches {
            parts.push(format!("max {m} branches"));
        }
        parts.join(", ")
    }
}

/// One packet to simulate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PacketSpec {
    name: String,
    /// `local`, or the name of the interface it arrives on.
    from: String,
    proto: String,
    #[serde(default)]
    src: Option<String>,
    dst: String,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
    #[serde(default)]
    groups: Vec<u32>,
    #[serde(default)]
    mark: u32,
    #[serde(default)]
    ct_mark: u32,
    #[serde(default)]
    state: Option<CtState>,
    #[serde(default)]
    ttl: Option<u8>,
    #[serde(default)]
    tos: Option<u8>,
    #[serde(default)]
    len: Option<u16>,
    #[serde(default)]
    flags: Option<String>,
    #[serde(default)]
    icmp_type: Option<u8>,
    #[serde(default)]
    icmp_code: Option<u8>,
    #[serde(default)]
    src_mac: Option<String>,
    #[serde(default)]
    options: OptionSpec,
}

fn proto_number(s: &str) -> Result<u8, String> {
    Ok(match s {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "ipv6-icmp" | "icmpv6" => 58,
        "sctp" => 132,
        "udplite" => 136,
        "dccp" => 33,
        "gre" => 47,
        n => n.parse().map_err(|_| format!("unknown protocol `{n}`"))?,
    })
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        33 => "dccp".into(),
        n => format!("proto {n}"),
    }
}

/// `ADDR`, `ADDR:PORT` or `[ADDR]:PORT`.
fn addr_port(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    let bad_port = |p: &str| format!("bad port `{p}` in `{s}`");
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once(']').ok_or_else(|| format!("missing `]` in `{s}`"))?;
        let port = p.strip_prefix(':').map(|p| p.parse().map_err(|_| bad_port(p))).transpose()?;
        return Ok((a.parse().map_err(|_| format!("bad address `{a}`"))?, port));
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok((a, None));
    }
    let (a, p) = s.rsplit_once(':').ok_or_else(|| format!("expected ADDR[:PORT], got `{s}`"))?;
    Ok((a.parse().map_err(|_| format!("bad address `{a}` in `{s}`"))?, Some(p.parse().map_err(|_| bad_port(p))?)))
}

fn parse_flags(s: &str) -> Result<u8, String> {
    let mut bits = 0;
    for f in s.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        bits |= match f.to_ascii_uppercase().as_str() {
            "FIN" => tcp_flags::FIN,
            "SYN" => tcp_flags::SYN,
            "RST" => tcp_flags::RST,
            "PSH" => tcp_flags::PSH,
            "ACK" => tcp_flags::ACK,
            "URG" => tcp_flags::URG,
            "NONE" => 0,
            other => return Err(format!("unknown TCP flag `{other}`")),
        };
    }
    Ok(bits)
}

fn flags_name(bits: u8) -> String {
    let names =
        [(tcp_flags::FIN, "FIN"), (tcp_flags::SYN, "SYN"), (tcp_flags::RST, "RST"), (tcp_flags::PSH, "PSH"), (tcp_flags::ACK, "ACK"), (tcp_flags::URG, "URG")];
    let set: Vec<&str> = names.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect();
    if set.is_empty() { "NONE".into() } else { set.join(",") }
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bytes: Vec<u8> = s.split(':').map(|b| u8::from_str_radix(b, 16)).collect::<Result<_, _>>().map_err(|_| format!("bad MAC address `{s}`"))?;
    bytes.try_into().map_err(|_| format!("bad MAC address `{s}`"))
}

impl PacketSpec {
    /// The packet and where it comes from.
    fn build(&self) -> Result<(Packet, Origin), String> {
        let proto = proto_number(&self.proto)?;
        let (dst, dport) = addr_port(&self.dst)?;
        let unspecified = if dst.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
        let (src, sport) = match &self.src {
            Some(s) => addr_port(s)?,
            None => (unspecified, None),
        };
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(format!("packet `{}`: source and destination are of different families", self.name));
        }
        let mut pkt = Packet::new(proto, src, sport.unwrap_or(40000), dst, dport.unwrap_or(0));
        pkt.mark = self.mark;
        pkt.ct_mark = self.ct_mark;
        pkt.ct_state = self.state.unwrap_or_default();
        if let Some(t) = self.ttl {
            pkt.ttl = t;
        }
        if let Some(t) = self.tos {
            pkt.tos = t;
        }
        if let Some(l) = self.len {
            pkt.len = l;
        }
        if let Some(f) = &self.flags {
            pkt.tcp_flags = parse_flags(f)?;
        }
        if let Some(t) = self.icmp_type {
            pkt.icmp_type = t;
        }
        if let Some(c) = self.icmp_code {
            pkt.icmp_code = c;
        }
        pkt.src_mac = self.src_mac.as_deref().map(parse_mac).transpose()?;
        let origin = if self.from == "local" {
            let owner = (self.uid.is_some() || self.gid.is_some()).then(|| {
                let uid = self.uid.unwrap_or(0);
                Owner { uid, gid: self.gid.unwrap_or(uid), groups: self.groups.clone() }
            });
            Origin::Local(owner)
        } else {
            if self.uid.is_some() || self.gid.is_some() || !self.groups.is_empty() {
                return Err(format!("packet `{}`: uid, gid and groups apply to packets `from: local` only", self.name));
            }
            Origin::Iface(self.from.clone())
        };
        Ok((pkt, origin))
    }
}

/// `-` for `None`, the value's `Display` otherwise (reasons, rules, ...).
fn show<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn addr_port_text(a: IpAddr, p: u16) -> String {
    match a {
        IpAddr::V6(a) => format!("[{a}]:{p}"),
        IpAddr::V4(a) => format!("{a}:{p}"),
    }
}

/// The packet's fields, on one line.
fn packet_text(p: &Packet) -> String {
    let mut s = proto_name(p.proto);
    if p.has_ports() {
        write!(s, " {} -> {}", addr_port_text(p.src, p.sport), addr_port_text(p.dst, p.dport)).unwrap();
    } else {
        write!(s, " {} -> {}", p.src, p.dst).unwrap();
    }
    if p.proto == 6 {
        write!(s, " flags {}", flags_name(p.tcp_flags)).unwrap();
    }
    if matches!(p.proto, 1 | 58) {
        write!(s, " type {} code {}", p.icmp_type, p.icmp_code).unwrap();
    }
    let state = serde_json::to_value(p.ct_state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{:?}", p.ct_state));
    write!(s, " len {} ttl {} tos {:#04x} mark {:#x} ct {state} ctmark {:#x}", p.len, p.ttl, p.tos, p.mark, p.ct_mark).unwrap();
    write!(s, " in {} out {}", p.in_iface.as_deref().unwrap_or("-"), p.out_iface.as_deref().unwrap_or("-")).unwrap();
    if let Some(m) = p.src_mac {
        let m: Vec<String> = m.iter().map(|b| format!("{b:02x}")).collect();
        write!(s, " mac {}", m.join(":")).unwrap();
    }
    s
}

fn origin_text(o: &Origin) -> String {
    match o {
        Origin::Local(Some(w)) => {
            let mut s = format!("from local process uid {} gid {}", w.uid, w.gid);
            if !w.groups.is_empty() {
                let g: Vec<String> = w.groups.iter().map(u32::to_string).collect();
                write!(s, " groups {}", g.join(",")).unwrap();
            }
            s
        }
        Origin::Local(None) => "from local, owner unknown".into(),
        Origin::Iface(i) => format!("arriving on {i}"),
    }
}

/// A TRACE line; a user chain also names the hook it was reached from.
fn step_text(s: &Step) -> String {
    if *s.chain == *s.hook.chain_name() { s.to_string() } else { format!("{s} (from {})", s.hook.chain_name()) }
}

/// Where the packet went; `ports`: whether its protocol has ports (ICMP is answered by the kernel).
fn delivered_text(d: Option<&Delivered>, listener_port: Option<u16>, ports: bool) -> String {
    match d {
        Some(Delivered::Local { addr, port, process }) => {
            let mut s = if ports { format!("local {}", addr_port_text(*addr, *port)) } else { format!("local {addr}") };
            if let Some(p) = process {
                write!(s, " process {p}").unwrap();
            }
            if let Some(l) = listener_port.filter(|l| l != port) {
                write!(s, " (listener port {l})").unwrap();
            }
            s
        }
        Some(Delivered::Egress { iface, next_hop }) => format!("out {iface} next hop {next_hop}"),
        None => "-".into(),
    }
}

fn branch_text(out: &mut String, b: &Branch) {
    for s in &b.trace {
        writeln!(out, "{}", step_text(s)).unwrap();
    }
    let verdict = serde_json::to_value(b.verdict).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{:?}", b.verdict));
    writeln!(out, "verdict: {verdict}").unwrap();
    writeln!(out, "packet: {}", packet_text(&b.packet)).unwrap();
    writeln!(out, "delivered: {}", delivered_text(b.delivered.as_ref(), b.listener_port, b.packet.has_ports())).unwrap();
    writeln!(out, "original dst: {}", show(b.original_dst.map(|(a, p)| addr_port_text(a, p)))).unwrap();
    writeln!(out, "by: {}", show(b.by.as_ref())).unwrap();
    writeln!(out, "reason: {}", show(b.reason.as_ref())).unwrap();
    writeln!(out, "probability: {:.6}{}", b.probability, if b.undecidable { " (undecidable)" } else { "" }).unwrap();
    if b.assumptions.is_empty() {
        writeln!(out, "assumptions: -").unwrap();
    }
    for a in &b.assumptions {
        writeln!(out, "assumption: {} {}: {}", a.rule, if a.matched { "matches" } else { "does not match" }, a.reason).unwrap();
    }
}

fn simulation_text(out: &mut String, sim: &Simulation) {
    let n = sim.branches.len();
    if sim.truncated {
        writeln!(out, "(more branches than max_branches: the rest were cut)").unwrap();
    }
    for (i, b) in sim.branches.iter().enumerate() {
        writeln!(out, "-- branch {} of {n}", i + 1).unwrap();
        branch_text(out, b);
    }
}

/// Every key of `given` (read without a schema) that `known` (the value serde read, written
/// back) does not have: the keys a struct without `deny_unknown_fields` ignored.
fn unknown_keys(given: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => {
            for (key, v) in g {
                let here = format!("{path}.{key}");
                match k.get(key) {
                    Some(kv) => unknown_keys(v, kv, &here, out),
                    None => out.push(here),
                }
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, (g, k)) in g.iter().zip(k).enumerate() {
                unknown_keys(g, k, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Reads a fixture: unknown keys anywhere (also in the host, whose type ignores them) are errors.
fn read_fixture(text: &str) -> Result<Fixture, String> {
    let fixture: Fixture = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let given: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let known = serde_json::to_value(&fixture.host).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    unknown_keys(given.get("host").unwrap_or(&Value::Null), &known, "host", &mut unknown);
    if !unknown.is_empty() {
        return Err(format!("unknown keys: {}", unknown.join(", ")));
    }
    Ok(fixture)
}

/// The `.expected` text of a fixture.
fn run_fixture(name: &str, text: &str) -> Result<String, String> {
    let fixture = read_fixture(text)?;
    let parsed = nfsim::ruleset::parse(&fixture.rules);
    if let Some(e) = parsed.errors().next() {
        return Err(format!("rules line {}: {}", e.line, e.message));
    }
    if fixture.packets.is_empty() {
        return Err("no packets".into());
    }
    let mut out = String::new();
    writeln!(out, "# {name}: {}", fixture.description.trim()).unwrap();
    writeln!(out, "# Generated by tests/engine.rs; NFSIM_UPDATE_GOLDENS=1 rewrites it. Review every change.").unwrap();
    for (i, spec) in fixture.packets.iter().enumerate() {
        let (pkt, origin) = spec.build()?;
        let opts = fixture.options.merged(&spec.options);
        writeln!(out, "\n== packet {}: {}", i + 1, spec.name).unwrap();
        writeln!(out, "sent: {}, {}", packet_text(&pkt), origin_text(&origin)).unwrap();
        let described = opts.describe();
        if !described.is_empty() {
            writeln!(out, "options: {described}").unwrap();
        }
        let sim = simulate(&parsed.ruleset, &fixture.host, pkt, &origin, &opts.options());
        simulation_text(&mut out, &sim);
    }
    Ok(out)
}

/// A line diff of `want` against `got`: `-` lines only expected, `+` lines only produced, with
/// their line numbers in each file and two lines of context around each change.
fn line_diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    // lcs[i][j]: the length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    // (op, line in want, line in got, text)
    let mut ops: Vec<(char, Option<usize>, Option<usize>, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', Some(i + 1), Some(j + 1), a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', Some(i + 1), None, a[i]));
            i += 1;
        } else {
            ops.push(('+', None, Some(j + 1), b[j]));
            j += 1;
        }
    }
    let near = |k: usize| ops[k.saturating_sub(2)..(k + 3).min(ops.len())].iter().any(|o| o.0 != ' ');
    let num = |n: Option<usize>| n.map_or_else(|| "    ".to_string(), |n| format!("{n:>4}"));
    let mut out = String::from("  want  got\n");
    let mut skipped = false;
    for (k, (op, w, g, text)) in ops.iter().enumerate() {
        if !near(k) {
            skipped = true;
            continue;
        }
        if skipped {
            out.push_str("  ...\n");
            skipped = false;
        }
        writeln!(out, "{op} {} {} | {text}", num(*w), num(*g)).unwrap();
    }
    if skipped {
        out.push_str("  ...\n");
    }
    out
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/engine")
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixture directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

#[test]
fn engine_fixtures_match_expected() {
    let dir = fixture_dir();
    let update = std::env::var("NFSIM_UPDATE_GOLDENS").is_ok_and(|v| v == "1");
    let fixtures = files_with(&dir, "yaml");
    assert!(!fixtures.is_empty(), "no fixtures in {}", dir.display());
    let mut failures = Vec::new();
    for path in &fixtures {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).expect("read fixture");
        let got = match run_fixture(&name, &text) {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let expected = path.with_extension("expected");
        if update {
            std::fs::write(&expected, &got).expect("write expected");
            continue;
        }
        match std::fs::read_to_string(&expected) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!("{name}: output differs from {}:\n{}", expected.display(), line_diff(&want, &got))),
            Err(e) => failures.push(format!("{name}: cannot read {}: {e}", expected.display())),
        }
    }
    for orphan in files_with(&dir, "expected") {
        if !orphan.with_extension("yaml").exists() {
            failures.push(format!("{}: no fixture beside it", orphan.display()));
        }
    }
    assert!(failures.is_empty(), "{}\nrerun with NFSIM_UPDATE_GOLDENS=1 to update, then review the diff", failures.join("\n"));
}

const MINIMAL: &str = "description: d\nrules: ''\nhost: {name: h, interfaces: [{name: eth0, addrs: [10.0.0.5/24]}]}\npackets:\n  - {name: p, from: eth0, proto: udp, dst: 10.0.0.5:53}\n";

#[test]
fn a_minimal_fixture_runs() {
    let out = run_fixture("minimal.yaml", MINIMAL).expect("minimal fixture");
    assert!(out.contains("== packet 1: p\n"), "{out}");
    assert!(out.contains("verdict: ACCEPT\n"), "{out}");
}

#[test]
fn unknown_keys_are_errors() {
    let cases = [
        ("top level", MINIMAL.replace("description:", "descripton: x\ndescription:")),
        ("options", MINIMAL.replace("packets:", "options: {backend: nft, asume: match}\npackets:")),
        ("packet", MINIMAL.replace("proto: udp", "proto: udp, dport: 53")),
        ("host", MINIMAL.replace("host: {name: h,", "host: {name: h, gatway: 10.0.0.1,")),
        ("interface", MINIMAL.replace("{name: eth0, addrs", "{name: eth0, mtu: 1500, addrs")),
        ("sysctls", MINIMAL.replace("host: {name: h,", "host: {name: h, sysctls: {ip_forwarding: true},")),
    ];
    for (what, text) in cases {
        assert!(text != MINIMAL, "{what}: the replacement did not apply");
        let err = run_fixture("bad.yaml", &text).expect_err(what);
        assert!(err.contains("unknown") || err.contains("asume"), "{what}: {err}");
    }
}

#[test]
fn the_line_diff_shows_changed_lines() {
    let d = line_diff("a\nb\nc\nd\ne\nf\ng\nh\n", "a\nb\nc\nD\ne\nf\ng\nh\n");
    assert!(d.contains("-    4      | d\n+         4 | D\n"), "{d}");
    assert!(d.contains("     3    3 | c\n"), "{d}");
    assert!(!d.contains("| a"), "{d}");
    let d = line_diff("a\nb\n", "a\nb\nc\n");
    assert!(d.contains("+         3 | c"), "{d}");
}
