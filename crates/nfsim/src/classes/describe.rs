//! Classes and fates in iptables' words: `tcp, uid 1337, dst !127.0.0.1/32, dport 8080`.

use std::fmt::Write as _;

use crate::ruleset::Family;
use crate::ruleset::services::protocol_name;
use crate::trace::Verdict;

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

fn addr_field(name: &str, set: &Ranges<u128>, domain: &Ranges<u128>, family: Family, out: &mut Vec<String>) {
    if set == domain {
        return;
    }
    let bits = region::addr_bits(family);
    let text = |s: &Ranges<u128>| -> String {
        let p = s.as_prefixes(bits);
        let shown: Vec<String> = p
            .iter()
            .take(4)
            .map(|&(a, l)| {
                if a == 0 && l == bits && s.contains(0) {
                    "unbound".into()
                } else if l == bits {
                    num_addr(a, family).to_string()
                } else {
                    format!("{}/{l}", num_addr(a, family))
                }
            })
            .collect();
        let more = if p.len() > 4 { format!(",… ({} blocks)", p.len()) } else { String::new() };
        format!("{}{more}", shown.join(","))
    };
    let rest = domain.minus(set);
    let (np, pp) = (rest.as_prefixes(bits).len(), set.as_prefixes(bits).len());
    // The smallest block holding the set, less what it lacks ("10.0.0.0/24 except 10.0.0.5").
    let except = set.min().zip(set.intervals().last().map(|i| i.1)).and_then(|(lo, hi)| {
        let len = if bits == 32 { ((lo ^ hi) as u32).leading_zeros() as u8 } else { (lo ^ hi).leading_zeros() as u8 };
        let block = Ranges::from_prefix(lo, len, bits).intersect(domain);
        let holes = block.minus(set);
        let n = holes.as_prefixes(bits).len();
        (len < bits && n > 0 && n + 1 < pp.min(np)).then(|| format!("{name} {} except {}", text(&block), text(&holes)))
    });
    if let Some(e) = except {
        out.push(e);
    } else if np < pp {
        out.push(format!("{name} !{}", text(&rest)));
    } else {
        out.push(format!("{name} {}", text(set)));
    }
}

fn cube_text(c: &Cube, scope: &Scope) -> String {
    let family = scope.family;
    let domain = scope.region.iter().find(|d| !d.is_disjoint(c)).unwrap_or(&scope.region[0]);
    let mut out = Vec::new();
    let pp = port_protos();
    if c.proto != domain.proto {
        if let Some(p) = c.proto.single() {
            out.push(proto_text(p));
        } else if let Some(p) = Ranges::full().minus(&c.proto).single() {
            out.push(format!("!{}", proto_text(p)));
        } else if c.proto == pp {
            out.push("tcp/udp/sctp/udplite/dccp".into());
        } else {
            field("proto ", &c.proto, &domain.proto, &|p| proto_text(p), &mut out);
        }
    }
    addr_field("src", &c.src, &domain.src, family, &mut out);
    addr_field("dst", &c.dst, &domain.dst, family, &mut out);
    field("sport ", &c.sport, &domain.sport, &|p| p.to_string(), &mut out);
    field("dport ", &c.dport, &domain.dport, &|p| p.to_string(), &mut out);
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
        && let Some(r) = f.reason.as_ref().filter(|r| r.starts_with("undecidable"))
    {
        let _ = write!(s, " ({r})");
    }
    for (rule, matched, why) in &f.assumptions {
        if why.starts_with("matches with probability") {
            continue;
        }
        let _ = write!(s, " [if {rule} {}: {why}]", if *matched { "matches" } else { "does not match" });
    }
    s
}
