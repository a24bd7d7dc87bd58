//! Packet classes: the whole packet space pushed through one host's rules at once, split at every
//! rule, route and socket lookup, so that each class is the exact set of packets that share one
//! fate (or, with `statistic` and undecidable rules, one set of fates). Also `diff` of two rule
//! sets over every packet.
//!
//! Fields that vary: protocol, source (unbound or any local address for local senders), destination,
//! ports, socket uid and gid, mark, conntrack state. Everything else is fixed at the concrete
//! engine's defaults (TCP SYN, ICMP echo request, length 60, TOS 0, TTL 64, conntrack mark 0, no
//! supplementary groups), so every class's example packet reproduces with `nfsim trace`.
//!
//! ```
//! use nfsim::classes::{Scope, classes, describe_fate, describe_region, diff_rulesets};
//! use nfsim::host::Host;
//! use nfsim::ruleset::{Family, parse};
//! use nfsim::traverse::Options;
//!
//! let host = Host::new("pod").iface("eth0", &["10.0.0.5/24"]).gateway("10.0.0.1").listen(6, "0.0.0.0", 15001, "envoy", 1337, 1337);
//! let old = parse("*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15001\nCOMMIT\n").ruleset;
//! let new = parse("*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n").ruleset;
//! let scope = Scope::all(&host, Family::V4, None);
//! let cs = classes(&old, &host, &scope, &Options::default());
//! assert!(cs.classes.iter().any(|c| describe_fate(&c.fates[0], Family::V4).contains("dst rewritten to 127.0.0.1:15001")));
//! // Dropping the owner match redirects Envoy's own connections too: exactly uid 1337's TCP packets change.
//! let changes = diff_rulesets(&old, &new, &host, &scope, &Options::default());
//! assert!(!changes.is_empty());
//! assert!(changes.iter().all(|c| c.region.iter().all(|q| q.uid.single() == Some(1337))));
//! assert!(describe_region(&changes[0].region, &scope, 4).contains("uid 1337"));
//! ```

pub mod cond;
mod describe;
mod engine;
mod focus;
pub mod region;
pub mod set;

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::host::Host;
use crate::packet::{CtState, Owner, Packet};
use crate::reason::Reason;
use crate::ruleset::{Family, Ruleset};
use crate::simulate::{Branch, Origin};
use crate::trace::{Delivered, RuleRef, Verdict};
use crate::traverse::Options;

pub use describe::{describe_fate, describe_region};
use engine::{Engine, Leaf, Start};
pub use engine::{Fate, FateMeaning, NOT_ANALYSED, Place, pick, port_protos};
use region::{AVal, Cube, Input, Region, Val, num_addr, state_bit};
use set::{Bits, Ranges};

/// Which packets are analysed.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Address family.
    pub family: Family,
    /// `None`: sent by local processes; `Some(iface)`: arriving on that interface.
    pub from: Option<String>,
    /// The input packets.
    pub region: Region,
}

impl Scope {
    /// Every packet a local process can send (any protocol, destination, port, uid, gid and
    /// socket mark; unbound or bound to a local address; a new connection), or, `from` an
    /// interface, every new connection's packet arriving there (mark 0, no socket).
    pub fn all(host: &Host, family: Family, from: Option<&str>) -> Scope {
        let space = Ranges::addr_space(region::addr_bits(family));
        let mut cube = engine::full_cube(family);
        cube.state = state_bit(CtState::New);
        match from {
            None => {
                if !host.sysctls.ip_nonlocal_bind {
                    cube.src = local_set(host, family).union(&Ranges::point(0));
                }
            }
            Some(_) => {
                cube.src = space.clone();
                cube.uid = Ranges::point(0);
                cube.gid = Ranges::point(0);
                cube.mark = Bits::point(0);
            }
        }
        let mut with_ports = cube.clone();
        with_ports.proto = port_protos();
        let mut without = cube;
        without.proto = port_protos().complement();
        without.sport = Ranges::point(0);
        without.dport = Ranges::point(0);
        Scope { family, from: from.map(str::to_string), region: vec![with_ports, without] }
    }

    /// Narrows the scope to packets satisfying `f` on the input cube.
    pub fn restrict(mut self, f: impl Fn(&mut Cube)) -> Scope {
        for c in &mut self.region {
            f(c);
        }
        self.region.retain(|c| !c.is_empty());
        self
    }

    /// The origin of the example packets for the concrete engine.
    pub fn origin(&self, input: &Input) -> Origin {
        match &self.from {
            None => Origin::Local(Some(Owner { uid: input.uid, gid: input.gid, groups: Vec::new() })),
            Some(i) => Origin::Iface(i.clone()),
        }
    }

    /// The example packet of an input, as `nfsim trace` takes it.
    pub fn packet(&self, input: &Input) -> Packet {
        input.packet(self.family)
    }
}

/// The host's local addresses of `family`.
pub fn local_set(host: &Host, family: Family) -> Ranges<u128> {
    let mut s = if family == Family::V4 { Ranges::from_prefix(0x7f00_0000, 8, 32) } else { Ranges::empty() };
    for i in host.ifaces() {
        for a in &i.addrs {
            if a.addr().is_ipv4() == (family == Family::V4) {
                s = s.union(&Ranges::point(region::addr_num(a.addr())));
            }
        }
    }
    s
}

/// A set of packets with the same fates.
#[derive(Clone, Debug)]
pub struct Class {
    /// The packets (disjoint cubes).
    pub region: Region,
    /// Their fates, in a canonical order (one unless forked by chance or undecidable rules).
    pub fates: Vec<Fate>,
    /// The smallest packet of the class.
    pub example: Input,
}

/// All classes of a scope.
#[derive(Clone, Debug)]
pub struct Classes {
    /// The scope.
    pub scope: Scope,
    /// The classes, ordered by example packet.
    pub classes: Vec<Class>,
    /// True when some packet had more branches than `Options::max_branches`: the rest were cut.
    pub truncated: bool,
}

/// Computes the classes of `scope` for `ruleset` on `host`.
pub fn classes(ruleset: &Ruleset, host: &Host, scope: &Scope, opts: &Options) -> Classes {
    let engine = Engine::new(ruleset, host, opts, scope.family, scope.from.is_none());
    let (leaves, truncated) = engine.run(Start { region: scope.region.clone(), in_iface: scope.from.clone() });
    let classes = assemble(leaves);
    Classes { scope: scope.clone(), classes, truncated }
}

fn sort_fates(f: &mut [Fate]) {
    f.sort();
}

/// Leaves → classes: leaves without a fork are classes of their own; leaves under one fork root
/// are overlaid (each packet collects the fate of every leaf containing it); then classes with
/// the same fates are merged.
fn assemble(leaves: Vec<Leaf>) -> Vec<Class> {
    let mut pieces: Vec<(Region, Vec<Fate>)> = Vec::new();
    let mut rooted: BTreeMap<u32, Vec<Leaf>> = BTreeMap::new();
    for l in leaves {
        match l.root {
            None => pieces.push((l.region, vec![l.fate])),
            Some(r) => rooted.entry(r).or_default().push(l),
        }
    }
    for (_, group) in rooted {
        let mut over: Vec<(Region, Vec<Fate>)> = Vec::new();
        for l in group {
            if let Some(same) = over.iter_mut().find(|(r, _)| *r == l.region) {
                same.1.push(l.fate);
                continue;
            }
            let mut rest = l.region.clone();
            let mut next = Vec::new();
            for (r, fates) in over {
                let both = region::intersect(&r, &rest);
                if both.is_empty() {
                    next.push((r, fates));
                    continue;
                }
                let only = region::minus(&r, &rest);
                rest = region::minus(&rest, &r);
                if !only.is_empty() {
                    next.push((only, fates.clone()));
                }
                let mut f = fates;
                f.push(l.fate.clone());
                next.push((both, f));
            }
            if !rest.is_empty() {
                next.push((rest, vec![l.fate.clone()]));
            }
            over = next;
        }
        pieces.extend(over);
    }
    // Merge by fates.
    let mut by_fates: std::collections::HashMap<Vec<Fate>, Region> = std::collections::HashMap::new();
    for (r, mut f) in pieces {
        sort_fates(&mut f);
        by_fates.entry(f).or_default().extend(r);
    }
    let mut out: Vec<Class> = by_fates
        .into_iter()
        .filter_map(|(fates, region)| {
            let example = region.iter().filter_map(Cube::example).min_by(|a, b| input_key(a).cmp(&input_key(b)))?;
            Some(Class { region, fates, example })
        })
        .collect();
    out.sort_by_key(|c| input_key(&c.example));
    out
}

fn input_key(i: &Input) -> (u8, u128, u16, u128, u16, u32, u32, u32, u8) {
    (i.proto, i.dst, i.dport, i.src, i.sport, i.uid, i.gid, i.mark, state_bit(i.state))
}

/// A fate made concrete for one input packet, comparable with a concrete branch: the same typed
/// outcome from both engines.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Outcome {
    /// Verdict.
    pub verdict: Verdict,
    /// Delivery, in the trace contract's terms.
    pub delivered: Option<Delivered>,
    /// Destination after NAT, when rewritten.
    pub dnat: Option<(IpAddr, u16)>,
    /// Source after NAT, when rewritten.
    pub snat: Option<(IpAddr, u16)>,
    /// The deciding rule.
    pub by: Option<RuleRef>,
    /// Why not delivered.
    pub reason: Option<Reason>,
    /// Probability (rounded to 1e-9).
    pub probability: u64,
    /// Assumptions: rule (`None` in a meaning, which leaves rule positions aside) and whether it
    /// matched.
    pub assumptions: Vec<(Option<RuleRef>, bool)>,
}

impl Outcome {
    /// The outcome of a concrete branch.
    pub fn of_branch(b: &Branch) -> Outcome {
        Outcome {
            verdict: b.verdict,
            delivered: b.delivered.clone(),
            dnat: b.original_dst.map(|_| (b.packet.dst, b.packet.dport)),
            snat: b.original_src.map(|_| (b.packet.src, b.packet.sport)),
            by: b.by.clone(),
            reason: b.reason.clone(),
            probability: (b.probability * 1e9).round() as u64,
            assumptions: b.assumptions.iter().map(|a| (Some(a.rule.clone()), a.matched)).collect(),
        }
    }

    /// The outcome without rule positions (what `diff` compares).
    pub fn meaning(&self) -> Outcome {
        let mut o = self.clone();
        if o.by.take().is_some() {
            o.reason = None;
        }
        for a in &mut o.assumptions {
            a.0 = None;
        }
        o
    }

    /// The outcome of a fate for input `i`.
    pub fn of_fate(f: &Fate, i: &Input, family: Family) -> Outcome {
        let dst = num_addr(f.dst.0.at(i), family);
        let dport = pick(f.dst.1, i.dport);
        let delivered = f.place.as_ref().map(|p| match p {
            Place::Local { process } => {
                let port = if port_protos().contains(i.proto) { dport } else { 0 };
                Delivered::Local { addr: dst, port, process: process.clone() }
            }
            Place::Egress { iface, gateway } => Delivered::Egress { iface: iface.clone(), next_hop: gateway.unwrap_or(dst) },
        });
        Outcome {
            verdict: f.verdict,
            delivered,
            dnat: f.dnat.map(|_| (dst, dport)),
            snat: f.snat.map(|_| (num_addr(f.src.0.at(i), family), pick(f.src.1, i.sport))),
            by: f.by.clone(),
            reason: f.reason.clone(),
            probability: (f.probability() * 1e9).round() as u64,
            assumptions: f.assumptions.iter().map(|(r, m, _)| (Some(r.clone()), *m)).collect(),
        }
    }
}

/// The fates of `class` for input `i`, sorted, as comparable outcomes.
pub fn outcomes(fates: &[Fate], i: &Input, family: Family) -> Vec<Outcome> {
    let mut v: Vec<Outcome> = fates.iter().map(|f| Outcome::of_fate(f, i, family)).collect();
    v.sort();
    v
}

/// A set of packets whose fates differ between two rule sets.
#[derive(Clone, Debug)]
pub struct Change {
    /// The packets.
    pub region: Region,
    /// Fates with the old rules.
    pub old: Vec<Fate>,
    /// Fates with the new rules.
    pub new: Vec<Fate>,
    /// The smallest packet of the change.
    pub example: Input,
}

/// What a fate means for its packets, without the positions of the rules involved (inserting a
/// rule above a DROP renumbers it, but the packets are dropped all the same).
type Meaning = (engine::FateMeaning, Option<Reason>);

fn meanings(fates: &[Fate]) -> Vec<Meaning> {
    let mut v: Vec<Meaning> = fates.iter().map(|f| (f.meaning(), if f.by.is_some() { None } else { f.reason.clone() })).collect();
    v.sort();
    v
}

/// True when two lists of fates mean the same for every packet (rule positions aside).
pub fn same_meaning(a: &[Fate], b: &[Fate]) -> bool {
    meanings(a) == meanings(b)
}

/// `f` with each input field that is one value over `region` written as that value.
fn pinned(f: &Fate, region: &Region) -> Fate {
    fn one<T: PartialEq + Copy>(region: &Region, get: impl Fn(&Cube) -> Option<T>) -> Option<T> {
        let first = get(region.first()?)?;
        region.iter().all(|c| get(c) == Some(first)).then_some(first)
    }
    let (src, dst) = (one(region, |c| c.src.single()), one(region, |c| c.dst.single()));
    let (sport, dport) = (one(region, |c| c.sport.single()), one(region, |c| c.dport.single()));
    let addr = |v: AVal| match v {
        AVal::Src => src.map_or(v, AVal::Const),
        AVal::Dst => dst.map_or(v, AVal::Const),
        AVal::Const(_) => v,
    };
    let port = |v: Val<u16>, input: Option<u16>| match v {
        Val::In => input.map_or(v, Val::Const),
        Val::Const(_) => v,
    };
    let mut f = f.clone();
    f.dnat = f.dnat.map(|(a, p)| (addr(a), port(p, dport)));
    f.dst = (addr(f.dst.0), port(f.dst.1, dport));
    f.snat = f.snat.map(|(a, p)| (addr(a), port(p, sport)));
    f.src = (addr(f.src.0), port(f.src.1, sport));
    f.listener_port = f.listener_port.map(|p| port(p, dport));
    f
}

/// Every set of packets whose fates differ between `old` and `new` (class by class).
pub fn diff(old: &Classes, new: &Classes) -> Vec<Change> {
    // Classes present identically on both sides cannot hold a change.
    fn key(c: &Class) -> (&[Fate], &[Cube]) {
        (&c.fates, &c.region)
    }
    let new_keys: std::collections::HashSet<(&[Fate], &[Cube])> = new.classes.iter().map(key).collect();
    let old_keys: std::collections::HashSet<(&[Fate], &[Cube])> = old.classes.iter().map(key).collect();
    let olds: Vec<&Class> = old.classes.iter().filter(|c| !new_keys.contains(&key(c))).collect();
    let news: Vec<&Class> = new.classes.iter().filter(|c| !old_keys.contains(&key(c))).collect();
    let mut out = Vec::new();
    for o in &olds {
        for n in &news {
            if same_meaning(&o.fates, &n.fates) {
                continue;
            }
            let both = region::intersect(&o.region, &n.region);
            if both.is_empty() {
                continue;
            }
            // Fates that name the same value in different forms (the input's destination on one
            // side, the constant the packets hold on the other) are the same fates.
            let pin = |fates: &[Fate]| fates.iter().map(|f| pinned(f, &both)).collect::<Vec<_>>();
            if same_meaning(&pin(&o.fates), &pin(&n.fates)) {
                continue;
            }
            let Some(example) = both.iter().filter_map(Cube::example).min_by(|a, b| input_key(a).cmp(&input_key(b))) else { continue };
            // Fates equal up to input-dependent values can still be equal for every packet.
            out.push(Change { region: both, old: o.fates.clone(), new: n.fates.clone(), example });
        }
    }
    out.sort_by_key(|c| input_key(&c.example));
    out
}

/// Every set of packets of `scope` whose fates differ between `old` and `new`. Only packets that
/// can enter a chain that differs are analysed (the others take the same decisions on both
/// sides); when the difference is not confined to chains (a table added or removed, conntrack
/// switched on by one side), every packet is.
pub fn diff_rulesets(old: &Ruleset, new: &Ruleset, host: &Host, scope: &Scope, opts: &Options) -> Vec<Change> {
    DiffPlan::new(old, new, scope.family).diff(old, new, host, scope, opts)
}

/// What two rule sets share, computed once for diffs over several scopes (see
/// [`diff_rulesets`]).
#[derive(Debug)]
pub struct DiffPlan {
    focus: Option<(focus::Focus, focus::Focus)>,
}

impl DiffPlan {
    /// Compares the chains of `old` and `new` for `family`.
    pub fn new(old: &Ruleset, new: &Ruleset, family: Family) -> DiffPlan {
        DiffPlan { focus: focus::Focus::pair(old, new, family) }
    }

    /// The changes for the packets of `scope` (`old` and `new` as given to [`DiffPlan::new`]).
    pub fn diff(&self, old: &Ruleset, new: &Ruleset, host: &Host, scope: &Scope, opts: &Options) -> Vec<Change> {
        self.diff_and_cut(old, new, host, scope, opts).0
    }

    /// The changes, and whether the fork cap cut either side's analysis (then changes among
    /// the packets it stopped following may be missing; see [`Classes::truncated`]).
    pub fn diff_and_cut(&self, old: &Ruleset, new: &Ruleset, host: &Host, scope: &Scope, opts: &Options) -> (Vec<Change>, bool) {
        let Some((fo, fn_)) = &self.focus else {
            let (a, b) = (classes(old, host, scope, opts), classes(new, host, scope, opts));
            return (diff(&a, &b), a.truncated || b.truncated);
        };
        // Both sides keep the packets that entered a differing chain (with every fate of their
        // fork family): the same packets on both sides, since they decide alike until they
        // enter one.
        let side = |rules: &Ruleset, f: &focus::Focus| -> Classes {
            let start = Start { region: scope.region.clone(), in_iface: scope.from.clone() };
            let (leaves, truncated) = Engine::new(rules, host, opts, scope.family, scope.from.is_none()).with_focus(f).run(start);
            let hot_roots: std::collections::HashSet<u32> = leaves.iter().filter(|l| l.dirty).filter_map(|l| l.root).collect();
            let kept: Vec<Leaf> = leaves.into_iter().filter(|l| l.dirty || l.root.is_some_and(|r| hot_roots.contains(&r))).collect();
            Classes { scope: scope.clone(), classes: assemble(kept), truncated }
        };
        let (a, b) = (side(old, fo), side(new, fn_));
        (diff(&a, &b), a.truncated || b.truncated)
    }
}

/// The address of `v` for input `i`.
pub fn addr_at(v: AVal, i: &Input, family: Family) -> IpAddr {
    num_addr(v.at(i), family)
}
