//! Classes and fates in iptables' words: `tcp, uid 1337, dst !127.0.0.1/32, dport 8080`.

use std::fmt::Write as _;

use crate::ruleset::Family;
use crate::trace::Verdict;
use crate::xt::services::protocol_name;

use super::engine::{Fate, Place};
use super::region::{self, AVal, Cube, STATES, Val, num_addr};
use super::set::{Int, Ranges};
use super::{Scope, port_protos};

fn proto_text(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "ipv6-icmp".into(),
        _ => protocol_name(p).map_or_else(|| p.to_string(), str::to_string),
    }
}

fn ranges_text<T: Int + std::fmt::Display>(s: &Ranges<T>, one: impl Fn(T) -> String) -> String {
    let items: Vec<String> = s.intervals().iter().map(|&(a, b)| if a == b { one(a) } else { format!("{}-{}", one(a), one(b)) }).collect();
    items.join(",")
}

/// `set` described against the `domain` it lies in: omitted when equal, negated when shorter.
fn field<T: Int + std::fmt::Display>(name: &str, set: &Ranges<T>, domain: &Ranges<T>, one: &dyn Fn(T) -> String, out: &mut Vec<String>) {
    if set == domain {
        return;
    }
    let pos = ranges_text(set, one);
    let rest = domain.minus(set);
    let neg = ranges_text(&rest, one);
    if rest.intervals().len() < set.intervals().len() {
        out.push(format!("{name}!{neg}"));
    } else {
        out.push(format!("{name}{pos}"));
    }
}

/// A set of addresses in CIDR words: clusters of nearby addresses as their block, less the few
/// addresses it lacks (`127.0.0.0/8 except 127.0.0.1`); long lists are cut after six items.
fn addrs_text(s: &Ranges<u128>, family: Family, unbound: bool) -> String {
    let bits = region::addr_bits(family);
    let one = |a: u128, l: u8| -> String {
        if a == 0 && l == bits && unbound {
            "unbound".into()
        } else if l == bits {
            num_addr(a, family).to_string()
        } else {
            format!("{}/{l}", num_addr(a, family))
        }
    };
    let ivs = s.intervals();
    let mut items: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ivs.len() {
        // A cluster: intervals separated by small gaps.
        let (lo, mut hi) = ivs[i];
        let mut j = i + 1;
        while j < ivs.len() && ivs[j].0 - hi <= 16 && j - i < 8 {
            hi = ivs[j].1;
            j += 1;
        }
        let hull = Ranges::range(lo, hi);
        let holes = hull.minus(s);
        let blocks = hull.as_prefixes(bits);
        let plain = Ranges::from_intervals(ivs[i..j].iter().copied()).as_prefixes(bits);
        if !holes.is_empty() && blocks.len() + holes.as_prefixes(bits).len() < plain.len() {
            let b: Vec<String> = blocks.iter().map(|&(a, l)| one(a, l)).collect();
            let h: Vec<String> = holes.as_prefixes(bits).iter().map(|&(a, l)| one(a, l)).collect();
            items.push(format!("{} except {}", b.join(","), h.join(",")));
        } else {
            items.extend(plain.iter().map(|&(a, l)| one(a, l)));
        }
        i = j;
    }
    let n = items.len();
    if n > 6 {
        items.truncate(6);
        items.push(format!("… ({} more)", n - 6));
    }
    items.join(",")
}

fn addr_field(name: &str, set: &Ranges<u128>, domain: &Ranges<u128>, family: Family, out: &mut Vec<String>) {
    if set == domain {
        return;
    }
    let unbound = domain.contains(0) && !domain.contains(1);
    let pos = addrs_text(set, family, unbound);
    let neg = addrs_text(&domain.minus(set), family, unbound);
    if neg.len() < pos.len() {
        out.push(format!("{name} !{neg}"));
    } else {
        out.push(format!("{name} {pos}"));
    }
}

fn cube_text(c: &Cube, scope: &Scope) -> String {
    let family = scope.family;
    let domain = scope.region.iter().find(|d| !d.is_disjoint(c)).unwrap_or(&scope.region[0]);
    let mut out = Vec::new();
    let pp = port_protos();
    let full = Ranges::<u8>::full();
    // Protocols are told against every protocol, whatever scope cube the class lies in.
    if c.proto != full {
        if let Some(p) = c.proto.single() {
            out.push(proto_text(p));
        } else if let Some(p) = full.minus(&c.proto).single() {
            out.push(format!("!{}", proto_text(p)));
        } else if c.proto == pp {
            out.push("tcp/udp/sctp/udplite/dccp".into());
        } else if c.proto == pp.complement() {
            out.push("protocols without ports".into());
        } else if pp.complement().is_subset(&c.proto) {
            let missing: Vec<String> = pp.minus(&c.proto).intervals().iter().map(|&(a, _)| proto_text(a)).collect();
            out.push(format!("not {}", missing.join("/")));
        } else {
            field("proto ", &c.proto, &full, &|p| proto_text(p), &mut out);
        }
    }
    addr_field("src", &c.src, &domain.src, family, &mut out);
    addr_field("dst", &c.dst, &domain.dst, family, &mut out);
    if !c.proto.is_disjoint(&pp) {
        field("sport ", &c.sport, &Ranges::full(), &|p| p.to_string(), &mut out);
        field("dport ", &c.dport, &Ranges::full(), &|p| p.to_string(), &mut out);
    }
    field("uid ", &c.uid, &domain.uid, &|p| p.to_string(), &mut out);
    field("gid ", &c.gid, &domain.gid, &|p| p.to_string(), &mut out);
    if !c.mark.same_set(&domain.mark) {
        out.push(format!("mark {}", c.mark.describe()));
    }
    if c.state != domain.state {
        let names: Vec<String> = STATES.iter().enumerate().filter(|(i, _)| c.state & (1 << i) != 0).map(|(_, s)| format!("{s:?}").to_uppercase()).collect();
        out.push(format!("state {}", names.join(",")));
    }
    if out.is_empty() { "any packet".into() } else { out.join(", ") }
}

/// A region in iptables' words, one alternative per cube (at most `max` shown).
pub fn describe_region(r: &[Cube], scope: &Scope, max: usize) -> String {
    let mut parts: Vec<String> = region::simplify(r).iter().map(|c| cube_text(c, scope)).collect();
    parts.dedup();
    let n = parts.len();
    if n > max {
        parts.truncate(max);
        parts.push(format!("… {} more", n - max));
    }
    parts.join(" | ")
}

fn addr_text(v: AVal, family: Family, same: &str) -> String {
    match v {
        AVal::Const(c) => num_addr(c, family).to_string(),
        AVal::Src => "the source".into(),
        AVal::Dst => same.into(),
    }
}

fn port_text(v: Val<u16>) -> String {
    match v {
        Val::Const(c) => c.to_string(),
        Val::In => "port".into(),
    }
}

/// A fate in a few words: `ACCEPT: local envoy, DNAT to 127.0.0.1:15001`.
pub fn describe_fate(f: &Fate, family: Family) -> String {
    let mut s = String::new();
    if f.probability() < 1.0 {
        let _ = write!(s, "p={:.4} ", f.probability());
    }
    let verdict = match f.verdict {
        Verdict::Accept => "ACCEPT",
        Verdict::Drop => "DROP",
        Verdict::Reject => "REJECT",
        Verdict::Queue => "QUEUE",
    };
    s.push_str(verdict);
    match &f.place {
        Some(Place::Local { process }) => {
            let _ = write!(s, ": delivered locally to {}", process.as_deref().unwrap_or("the host (no port)"));
        }
        Some(Place::Egress { iface, gateway }) => {
            let _ = write!(s, ": out {iface}");
            if let Some(g) = gateway {
                let _ = write!(s, " via {g}");
            }
        }
        None => {}
    }
    if let Some((a, p)) = f.dnat {
        let _ = write!(s, ", dst rewritten to {}:{}", addr_text(a, family, "dst"), port_text(p));
    }
    if let Some((a, p)) = f.snat {
        let sp = match p {
            Val::In => "sport".into(),
            Val::Const(c) => c.to_string(),
        };
        let _ = write!(s, ", src rewritten to {}:{sp}", addr_text(a, family, "dst"));
    }
    if let Some(by) = &f.by {
        if f.place.is_none() && !matches!(f.verdict, Verdict::Accept) {
            let _ = write!(s, " by {by}");
        }
    } else if let Some(r) = &f.reason {
        let _ = write!(s, " ({r})");
    }
    if f.by.is_some()
        && let Some(r) = f.reason.as_ref().filter(|r| r.is_undecidable())
    {
        let _ = write!(s, " ({r})");
    }
    for (rule, matched, why) in &f.assumptions {
        if why.starts_with(crate::traverse::CHANCE) {
            continue;
        }
        let _ = write!(s, " [if {rule} {}: {why}]", if *matched { "matches" } else { "does not match" });
    }
    s
}
