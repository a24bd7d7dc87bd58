//! The host stack and the `ipt_do_table` walk over regions instead of packets: the same stages,
//! hooks, routing decisions, conntrack conditions and target effects as `simulate` and
//! `traverse`, with every decision splitting the region into the packets that go each way.

use std::net::IpAddr;

use crate::conntrack::{NatBinding, Original, conn_of};
use crate::hook::tables_at;
use crate::host::{Host, Socket};
use crate::matches::{Eval, EvalCtx};
use crate::packet::{CtState, Owner, Packet};
use crate::ruleset::{ChainId, Family, Hook, Policy, Rule, Ruleset, Table, TableName, Target};
use crate::simulate::{
    LOOPBACK_CANNOT_ANSWER, LOOPBACK_V6_ARRIVING, NOT_TRANSPARENT, martian_loopback, reverse_path_drop, reverse_path_ok, send_error, ttl_exceeded,
};
use crate::targets::TargetExt;
use crate::trace::{RuleRef, Verdict};
use crate::traverse::{Assumption, Options};

use super::cond::{CondCtx, Fields, MatchCond, match_cond, tracked};
use super::region::{self, AVal, Cube, Cur, Input, Lin, Region, Test, Val, addr_bits, addr_num, num_addr, state_bit};
use super::set::{Bits, Ranges};

/// Where a class's packets end up, with rewritten fields in terms of the input packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// Accepted by a local socket (or delivered locally without ports).
    Local {
        /// The accepting process (`None` without ports or for an unnamed socket).
        process: Option<String>,
    },
    /// Sent out of an interface.
    Egress {
        /// The interface.
        iface: String,
        /// The gateway; `None` when the destination is on the link.
        gateway: Option<IpAddr>,
    },
}

/// One fate of a class's packets (several when `statistic` or undecidable rules fork).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fate {
    /// The verdict.
    pub verdict: Verdict,
    /// Where the packets went.
    pub place: Option<Place>,
    /// The destination after NAT, when NAT rewrote it.
    pub dnat: Option<(AVal, Val<u16>)>,
    /// The source after NAT, when NAT rewrote it.
    pub snat: Option<(AVal, Val<u16>)>,
    /// The current destination at the end.
    pub dst: (AVal, Val<u16>),
    /// The current source at the end.
    pub src: (AVal, Val<u16>),
    /// The rule that dropped, rejected or queued the packets.
    pub by: Option<RuleRef>,
    /// Why the packets did not arrive, when not by a rule.
    pub reason: Option<String>,
    /// Probability, as the bits of an `f64` (exact equality of products of the same chances).
    pub probability: u64,
    /// Assumed outcomes of rules (chance or undecidable): rule and whether it matched.
    pub assumptions: Vec<(RuleRef, bool, String)>,
    /// The accepting socket's bound port, when it differs from the destination (TPROXY).
    pub listener_port: Option<Val<u16>>,
}

/// The words every result the class analysis cannot compute (where the concrete engine can)
/// carries, so that users and tests can tell it from what the kernel itself leaves open.
pub const NOT_ANALYSED: &str = "is not analysed";

/// A fate without rule positions: verdict, place, NAT, destination, listener, probability,
/// whether a rule decided it, and which way each assumption went.
pub type FateMeaning = (Verdict, Option<Place>, Option<(AVal, Val<u16>)>, (AVal, Val<u16>), Option<Val<u16>>, u64, bool, Vec<bool>);

impl Fate {
    /// What the fate means for its packets, rule positions aside.
    pub fn meaning(&self) -> FateMeaning {
        (
            self.verdict,
            self.place.clone(),
            self.dnat,
            self.dst,
            self.listener_port,
            self.probability,
            self.by.is_some(),
            self.assumptions.iter().map(|a| a.1).collect(),
        )
    }

    /// True when this fate rests on a limit of the class analysis (a match over a range of
    /// packets it does not express, NETMAP over an address range, a CONNMARK shift): packets of
    /// the class may then get a definite outcome from the concrete engine.
    pub fn analysis_limit(&self) -> bool {
        self.reason.as_deref().is_some_and(|r| r.contains(NOT_ANALYSED)) || self.assumptions.iter().any(|(_, _, why)| why.contains(NOT_ANALYSED))
    }

    /// The probability.
    pub fn probability(&self) -> f64 {
        f64::from_bits(self.probability)
    }
}

/// A part of the region with one fate, as the engine produces them.
#[derive(Clone, Debug)]
pub(crate) struct Leaf {
    /// The input packets.
    pub region: Region,
    /// Their fate.
    pub fate: Fate,
    /// The first fork (chance or undecidable rule) on the way, if any: leaves with different
    /// roots, or without one, never share a packet.
    pub root: Option<u32>,
    /// True when the packets entered a chain that differs from the other rule set.
    pub dirty: bool,
}

/// The symbolic state of a set of packets.
#[derive(Clone, Debug)]
struct St {
    region: Region,
    cur: Cur,
    orig_src: AVal,
    in_iface: Option<String>,
    out_iface: Option<String>,
    dnat: Option<(AVal, Val<u16>)>,
    snat: Option<(AVal, Val<u16>)>,
    tproxy: Option<(AVal, Val<u16>)>,
    tos: u8,
    ttl: u8,
    /// The conntrack entry is confirmed (looped back on lo, as `NatBinding::confirmed`).
    confirmed: bool,
    probability: f64,
    assumptions: Vec<Assumption>,
    root: Option<u32>,
    /// True once the packets entered a chain that differs from the other rule set (diffs only).
    dirty: bool,
}

/// What the symbolic engine needs to know about the input packets.
#[derive(Clone, Debug)]
pub(crate) struct Start {
    /// The input packets.
    pub region: Region,
    /// Input interface (`None` for locally generated packets).
    pub in_iface: Option<String>,
}

/// A route as the symbolic engine sees it.
#[derive(Clone, Debug, PartialEq)]
struct RouteSym {
    local: bool,
    dev: String,
    gateway: Option<IpAddr>,
    /// Preferred source: constant, or the destination itself (local routes of the main lookup).
    src: Option<AVal>,
}

/// What mangle OUTPUT compares to decide on a re-route (`simulate::RouteKey`), symbolically.
#[derive(Clone, Copy, Debug)]
struct RouteKey {
    src: AVal,
    dst: AVal,
    mark: Lin,
    tos: u8,
    hop_limit: Option<u8>,
}

impl RouteKey {
    fn of(st: &St, family: Family) -> RouteKey {
        RouteKey { src: st.cur.src, dst: st.cur.dst, mark: st.cur.mark, tos: st.tos, hop_limit: (family == Family::V6).then_some(st.ttl) }
    }
}

/// Inside a dispatch run: only this group's rules can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lane {
    chain: ChainId,
    run: u32,
    /// `u32::MAX`: the run is walked rule by rule.
    group: u32,
}

#[derive(Clone, Debug)]
enum End {
    Accept,
    Drop(Option<RuleRef>),
    Reject(RuleRef),
    Queue(RuleRef),
    Undecidable(RuleRef, String),
}

#[derive(Clone, Copy, Debug, Default)]
struct NatCtx {
    redirect_to: Option<u128>,
    masquerade_src: Option<AVal>,
}

/// The engine: one rule set on one host, for one family.
pub(crate) struct Engine<'a> {
    ruleset: &'a Ruleset,
    host: &'a Host,
    opts: &'a Options,
    family: Family,
    conntrack: bool,
    owned: bool,
    space: Cube,
    leaves: Vec<Leaf>,
    forks: u32,
    /// Base-match tests and dispatch runs of every chain, per table (by chain id).
    base: Vec<(TableName, Vec<std::cell::OnceCell<ChainIndex>>)>,
    /// The routing partitions on the destination and on the source.
    routes: [Vec<(Test, Option<RouteSym>)>; 2],
    /// The socket partition for the packet's own destination.
    sockets: Vec<(Test, Option<usize>)>,
    /// For a diff: the chains that differ, and per (hook, table) whether a later walk of the
    /// same packet may still reach one.
    focus: Option<(&'a super::focus::Focus, FutureHot)>,
}

/// Per (hook, table): whether a later walk of the same packet may reach a differing chain.
type FutureHot = Vec<((Hook, TableName), bool)>;

/// What the walk precomputes about a chain.
#[derive(Clone, Debug)]
struct ChainIndex {
    /// Base-match tests, per rule.
    tests: Vec<BaseTest>,
    /// Runs of rules whose destinations are disjoint prefixes (kube-proxy's KUBE-SERVICES).
    runs: Vec<Run>,
    /// The run each rule is in (`u32::MAX`: none).
    run_at: Vec<u32>,
}

/// Consecutive rules that each require the destination to lie in one prefix, the prefixes of
/// different groups being disjoint: a packet in one group's prefix can only match that group's
/// rules, and a packet in none of them matches none of the run's rules.
#[derive(Clone, Debug)]
struct Run {
    end: usize,
    /// Groups sorted by address: the prefix as an interval, and its rules in order.
    groups: Vec<(u128, u128, Vec<usize>)>,
    /// All the groups' addresses.
    union: Ranges<u128>,
}

/// Runs shorter than this are walked rule by rule.
const MIN_RUN: usize = 8;

fn index_chain(tests: Vec<BaseTest>) -> ChainIndex {
    let n = tests.len();
    let mut runs = Vec::new();
    let mut run_at = vec![u32::MAX; n];
    let prefix = |t: &BaseTest| -> Option<(u128, u128)> {
        let t = t.test.as_ref()?;
        let [one] = t.as_slice() else { return None };
        match one.dst.as_ref()?.intervals() {
            [(lo, hi)] => Some((*lo, *hi)),
            _ => None,
        }
    };
    let mut i = 0;
    while i < n {
        // Grow a run from rule i while the prefixes stay equal or disjoint.
        let mut groups: std::collections::BTreeMap<u128, (u128, Vec<usize>)> = std::collections::BTreeMap::new();
        let mut j = i;
        while j < n {
            let Some((lo, hi)) = prefix(&tests[j]) else { break };
            let fits = match groups.range(..=hi).next_back() {
                Some((&glo, (ghi, _))) if glo == lo && *ghi == hi => true,
                Some((_, (ghi, _))) => *ghi < lo,
                None => true,
            };
            if !fits {
                break;
            }
            groups.entry(lo).or_insert_with(|| (hi, Vec::new())).1.push(j);
            j += 1;
        }
        if j - i >= MIN_RUN {
            let groups: Vec<(u128, u128, Vec<usize>)> = groups.into_iter().map(|(lo, (hi, r))| (lo, hi, r)).collect();
            let union = Ranges::from_intervals(groups.iter().map(|g| (g.0, g.1)));
            for slot in &mut run_at[i..j] {
                *slot = runs.len() as u32;
            }
            runs.push(Run { end: j, groups, union });
            i = j;
        } else {
            i += 1;
        }
    }
    ChainIndex { tests, runs, run_at }
}

#[derive(Clone, Debug)]
struct BaseTest {
    /// `None` when the base match cannot be expressed (non-contiguous mask): concrete fallback.
    test: Option<Vec<Test>>,
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("host", &self.host.name).field("family", &self.family).finish()
    }
}

/// The whole packet space of `family` (every field full).
pub(crate) fn full_cube(family: Family) -> Cube {
    Cube {
        proto: Ranges::full(),
        src: Ranges::addr_space(addr_bits(family)),
        dst: Ranges::addr_space(addr_bits(family)),
        sport: Ranges::full(),
        dport: Ranges::full(),
        uid: Ranges::full(),
        gid: Ranges::full(),
        mark: Bits::full(),
        state: region::ALL_STATES,
    }
}

fn addr_set(a: &crate::ruleset::addr::AddrMask, family: Family) -> Option<Ranges<u128>> {
    use crate::ruleset::addr::AddrMask;
    let (addr, mask, bits) = match a {
        AddrMask::V4 { addr, mask } => (u128::from(u32::from(*addr)), u128::from(u32::from(*mask)), 32u8),
        AddrMask::V6(v) => (u128::from(v.addr), u128::from(v.mask), 128u8),
    };
    if bits != addr_bits(family) {
        return Some(Ranges::empty());
    }
    let len = mask.count_ones() as u8;
    let contiguous = if bits == 32 { (mask as u32).leading_ones() == u32::from(len) } else { mask.leading_ones() == u32::from(len) };
    contiguous.then(|| Ranges::from_prefix(addr, len, bits))
}

fn base_test(rule: &Rule, family: Family) -> BaseTest {
    let mut t = Test::default();
    if let Some(p) = &rule.proto {
        let s = Ranges::point(p.value.0);
        t.proto = Some(if p.negated { s.complement() } else { s });
    }
    let space = Ranges::addr_space(addr_bits(family));
    for (a, slot) in [(&rule.src, &mut t.src), (&rule.dst, &mut t.dst)] {
        if let Some(a) = a {
            let Some(s) = addr_set(&a.value, family) else { return BaseTest { test: None } };
            *slot = Some(if a.negated { space.minus(&s) } else { s });
        }
    }
    BaseTest { test: Some(vec![t]) }
}

fn loopback_num(family: Family) -> u128 {
    match family {
        Family::V4 => 0x7f00_0001,
        Family::V6 => 1,
    }
}

fn loopback_set(family: Family) -> Ranges<u128> {
    match family {
        Family::V4 => Ranges::from_prefix(0x7f00_0000, 8, 32),
        Family::V6 => Ranges::point(1),
    }
}

const PORT_PROTOS: [u8; 5] = [6, 17, 33, 132, 136];

/// Protocols with ports (`Packet::has_ports`).
pub fn port_protos() -> Ranges<u8> {
    Ranges::from_intervals(PORT_PROTOS.iter().map(|p| (*p, *p)))
}

impl<'a> Engine<'a> {
    pub(crate) fn new(ruleset: &'a Ruleset, host: &'a Host, opts: &'a Options, family: Family, owned: bool) -> Engine<'a> {
        let base =
            ruleset.tables.iter().filter(|t| t.family == family).map(|t| (t.name, t.chains().iter().map(|_| std::cell::OnceCell::new()).collect())).collect();
        Engine {
            ruleset,
            host,
            opts,
            family,
            conntrack: crate::conntrack::conntrack_on(ruleset),
            owned,
            space: full_cube(family),
            leaves: Vec::new(),
            forks: 0,
            base,
            routes: [Vec::new(), Vec::new()],
            sockets: Vec::new(),
            focus: None,
        }
        .with_partitions()
    }

    /// Analyses only packets that may enter a chain `focus` marks as different: the others are
    /// dropped as soon as no differing chain can be reached any more.
    pub(crate) fn with_focus(mut self, focus: &'a super::focus::Focus) -> Self {
        let local = self.owned;
        let mut future = Vec::new();
        for hook in Hook::ALL {
            for &t in tables_at(hook, self.opts.backend) {
                // The walks that may follow this one: later tables at this hook, then the hooks
                // the packet can still pass (a local packet comes back in on lo with nat skipped).
                let later_here = tables_at(hook, self.opts.backend).iter().skip_while(|x| **x != t).skip(1).map(|x| (hook, *x, true));
                let later_hooks: Vec<(Hook, bool)> = match (local, hook) {
                    (true, Hook::Output) => vec![(Hook::Postrouting, true), (Hook::Prerouting, false), (Hook::Input, false)],
                    (true, Hook::Postrouting) => vec![(Hook::Prerouting, false), (Hook::Input, false)],
                    (true, Hook::Prerouting) => vec![(Hook::Input, false)],
                    (false, Hook::Prerouting) => vec![(Hook::Input, true), (Hook::Forward, true), (Hook::Postrouting, true)],
                    (false, Hook::Forward) => vec![(Hook::Postrouting, true)],
                    _ => Vec::new(),
                };
                let later = later_hooks.into_iter().flat_map(|(h, with_nat)| tables_at(h, self.opts.backend).iter().map(move |x| (h, *x, with_nat)));
                let hot = later_here
                    .chain(later)
                    .filter(|(_, x, with_nat)| *with_nat || *x != TableName::Nat)
                    .any(|(h, x, _)| focus.hot(self.ruleset, self.family, x, h));
                future.push(((hook, t), hot));
            }
        }
        self.focus = Some((focus, future));
        self
    }

    /// In a diff: true when `st`, entering `chain`, can no longer meet a differing chain.
    fn clean_for_good(&self, table: &Table, hook: Hook, chain: ChainId, stack: &[(ChainId, usize)], st: &St) -> bool {
        let Some((f, future)) = &self.focus else { return false };
        // Forked packets are followed to the end: a class needs all its fates.
        !st.dirty
            && st.root.is_none()
            && !f.reaches(table.name, chain, 0)
            && stack.iter().all(|(c, r)| !f.reaches(table.name, *c, *r))
            && future.iter().any(|(k, hot)| *k == (hook, table.name) && !hot)
    }

    /// In a diff: true when `st`, at rule `idx` of a dispatch run in `lane`, can no longer meet a
    /// differing chain (only its group's rules, and those after the run, can still match it).
    #[allow(clippy::too_many_arguments)]
    fn clean_in_run(&self, table: &Table, hook: Hook, chain: ChainId, idx: usize, lane: Option<Lane>, stack: &[(ChainId, usize)], st: &St) -> bool {
        let Some((f, future)) = &self.focus else { return false };
        if st.dirty
            || st.root.is_some()
            || stack.iter().any(|(c, r)| f.reaches(table.name, *c, *r))
            || !future.iter().any(|(k, hot)| *k == (hook, table.name) && !hot)
        {
            return false;
        }
        let ci = self.chain_index(table, chain);
        match lane.filter(|l| l.group != u32::MAX) {
            Some(l) => {
                let run = &ci.runs[l.run as usize];
                let rules = &run.groups[l.group as usize].2;
                let jumps_hot = rules.iter().filter(|&&r| r >= idx).any(|&r| match table[chain].rules[r].target {
                    Target::Jump(j) | Target::Goto(j) => f.reaches(table.name, j, 0),
                    _ => false,
                });
                !jumps_hot && !f.reaches(table.name, chain, run.end)
            }
            None => !f.reaches(table.name, chain, idx),
        }
    }

    fn with_partitions(mut self) -> Self {
        self.routes = [self.compute_route_parts(true), self.compute_back_parts()];
        self.sockets = self.compute_socket_parts(AVal::Dst, Val::In);
        self
    }

    fn route_parts(&self, dst: bool) -> Vec<(Test, Option<RouteSym>)> {
        self.routes[usize::from(!dst)].clone()
    }

    fn socket_parts(&self, addr: AVal, port: Val<u16>) -> Vec<(Test, Option<usize>)> {
        if addr == AVal::Dst && port == Val::In { self.sockets.clone() } else { self.compute_socket_parts(addr, port) }
    }

    /// Pushes `start` through the stack; returns every leaf.
    pub(crate) fn run(mut self, start: Start) -> Vec<Leaf> {
        let st = St {
            region: start.region,
            cur: Cur::INPUT,
            orig_src: AVal::Src,
            in_iface: start.in_iface.clone(),
            out_iface: None,
            dnat: None,
            snat: None,
            tproxy: None,
            tos: 0,
            ttl: 64,
            confirmed: false,
            probability: 1.0,
            assumptions: Vec::new(),
            root: None,
            dirty: false,
        };
        if start.in_iface.is_some() {
            self.arrive(st, false)
        } else {
            self.local_out(st)
        }
        self.leaves
    }

    // ----- splitting -----

    /// Splits `st` by the union of disjoint `tests` on the current packet: (inside, outside).
    fn split(&self, st: St, tests: &[Test]) -> (Option<St>, Option<St>) {
        if tests.iter().all(|t| self.quick_miss(t, &st)) {
            return (None, Some(st));
        }
        let cubes: Vec<Cube> = tests.iter().filter_map(|t| t.to_input(&st.cur, &self.space)).collect();
        self.split_input(st, &cubes)
    }

    /// Splits `st` by the union of disjoint cubes of *input* packets: (inside, outside).
    fn split_input(&self, mut st: St, cubes: &[Cube]) -> (Option<St>, Option<St>) {
        let whole = std::mem::take(&mut st.region);
        let inside = region::intersect(&whole, cubes);
        if inside.is_empty() {
            st.region = whole;
            return (None, Some(st));
        }
        let outside = region::minus_owned(whole, cubes);
        if outside.is_empty() {
            st.region = inside;
            return (Some(st), None);
        }
        let mut b = st.clone();
        st.region = inside;
        b.region = outside;
        (Some(st), Some(b))
    }

    /// Splits `st` by a partition of the current packet space (tests pairwise disjoint, covering
    /// everything): one state per non-empty part, with its key.
    fn partition<K: Clone>(&self, st: St, parts: &[(Test, K)]) -> Vec<(St, K)> {
        let mut out = Vec::new();
        let mut rest = Some(st);
        for (t, k) in parts {
            let Some(s) = rest.take() else { break };
            let (inside, outside) = self.split(s, std::slice::from_ref(t));
            if let Some(i) = inside {
                out.push((i, k.clone()));
            }
            rest = outside;
        }
        out
    }

    /// True when no packet of `st` can satisfy `t` (a cheap check without allocation).
    fn quick_miss(&self, t: &Test, st: &St) -> bool {
        let all_disjoint = |f: &dyn Fn(&Cube) -> bool| st.region.iter().all(f);
        let addr = |v: AVal, s: &Ranges<u128>| match v {
            AVal::Const(c) => !s.contains(c),
            AVal::Src => all_disjoint(&|c| c.src.is_disjoint(s)),
            AVal::Dst => all_disjoint(&|c| c.dst.is_disjoint(s)),
        };
        let port = |v: Val<u16>, s: &Ranges<u16>, dst: bool| match v {
            Val::Const(c) => !s.contains(c),
            Val::In => all_disjoint(&|c| if dst { c.dport.is_disjoint(s) } else { c.sport.is_disjoint(s) }),
        };
        t.proto.as_ref().is_some_and(|s| all_disjoint(&|c| c.proto.is_disjoint(s)))
            || t.dst.as_ref().is_some_and(|s| addr(st.cur.dst, s))
            || t.dport.as_ref().is_some_and(|s| port(st.cur.dport, s, true))
            || t.src.as_ref().is_some_and(|s| addr(st.cur.src, s))
            || t.sport.as_ref().is_some_and(|s| port(st.cur.sport, s, false))
            || t.uid.as_ref().is_some_and(|s| all_disjoint(&|c| c.uid.is_disjoint(s)))
            || t.gid.as_ref().is_some_and(|s| all_disjoint(&|c| c.gid.is_disjoint(s)))
    }

    /// The example input of a state (its smallest packet).
    fn example(&self, st: &St) -> Input {
        st.region.iter().find_map(|c| c.min()).expect("states never have empty regions")
    }

    /// The current packet of the example input, as the concrete engine would hold it.
    fn current_packet(&self, st: &St) -> (Packet, Original, NatBinding) {
        let i = self.example(st);
        let c = st.cur.at(&i);
        let mut p = c.packet(self.family);
        p.ct_state = c.state;
        p.ct_mark = st.cur.ctmark.at(i.mark);
        p.tos = st.tos;
        p.ttl = st.ttl;
        p.in_iface = st.in_iface.clone();
        p.out_iface = st.out_iface.clone();
        p.owner = self.owned.then(|| Owner { uid: i.uid, gid: i.gid, groups: Vec::new() });
        let orig = Original { src: num_addr(st.orig_src.at(&i), self.family), dst: num_addr(i.dst, self.family), sport: i.sport, dport: i.dport };
        let conc = |v: Option<(AVal, Val<u16>)>, port_in: u16| v.map(|(a, p)| (num_addr(a.at(&i), self.family), pick(p, port_in)));
        let nat = NatBinding { dnat: conc(st.dnat, i.dport), snat: conc(st.snat, i.sport), note: None, confirmed: st.confirmed };
        (p, orig, nat)
    }

    /// True when `fields` have one value over the whole state.
    fn constant(&self, st: &St, fields: Fields) -> bool {
        let single = |f: &dyn Fn(&Cube) -> bool| st.region.len() == 1 && f(&st.region[0]);
        let addr = |v: AVal| match v {
            AVal::Const(_) => true,
            AVal::Src => single(&|c| c.src.single().is_some()),
            AVal::Dst => single(&|c| c.dst.single().is_some()),
        };
        let port = |v: Val<u16>, dst: bool| match v {
            Val::Const(_) => true,
            Val::In => single(&|c| if dst { c.dport.single().is_some() } else { c.sport.single().is_some() }),
        };
        let mark = |l: Lin| l.keep == 0 || single(&|c| c.mark.cubes().len() == 1 && c.mark.cubes()[0].1 | !l.keep == u32::MAX);
        (!fields.has(Fields::PROTO) || single(&|c| c.proto.single().is_some()))
            && (!fields.has(Fields::SRC) || addr(st.cur.src))
            && (!fields.has(Fields::DST) || addr(st.cur.dst))
            && (!fields.has(Fields::SPORT) || port(st.cur.sport, false))
            && (!fields.has(Fields::DPORT) || port(st.cur.dport, true))
            && (!fields.has(Fields::UID) || single(&|c| c.uid.single().is_some()))
            && (!fields.has(Fields::GID) || single(&|c| c.gid.single().is_some()))
            && (!fields.has(Fields::MARK) || mark(st.cur.mark))
            && (!fields.has(Fields::CTMARK) || mark(st.cur.ctmark))
            && (!fields.has(Fields::STATE) || matches!(st.cur.state, Val::Const(_)) || single(&|c| c.state.count_ones() == 1))
            && (!fields.has(Fields::CONN)
                || (addr(st.orig_src)
                    && single(&|c| c.dst.single().is_some() && c.sport.single().is_some() && c.dport.single().is_some() && c.src.single().is_some())))
    }

    // ----- the stack (simulate.rs) -----

    fn finish(&mut self, st: St, verdict: Verdict, place: Option<Place>, by: Option<RuleRef>, reason: Option<String>) {
        let listener_port = match (&place, st.tproxy) {
            (Some(Place::Local { .. }), Some((_, p))) if p != st.cur.dport => Some(p),
            _ => None,
        };
        let fate = Fate {
            verdict,
            place,
            dnat: st.dnat,
            snat: st.snat,
            dst: (st.cur.dst, st.cur.dport),
            src: (st.cur.src, st.cur.sport),
            by,
            reason,
            probability: st.probability.to_bits(),
            assumptions: st.assumptions.iter().map(|a| (a.rule.clone(), a.matched, a.reason.clone())).collect(),
            listener_port,
        };
        self.leaves.push(Leaf { region: st.region, fate, root: st.root, dirty: st.dirty });
    }

    /// `Sim::run_hook`: every table of `hook` in order; `looped` as there.
    fn run_hook(&mut self, st: St, hook: Hook, nat: NatCtx, looped: bool) -> Vec<St> {
        let mut alive = vec![st];
        for &tname in tables_at(hook, self.opts.backend) {
            let mut next = Vec::new();
            for st in alive {
                next.extend(self.run_table(st, hook, tname, nat, looped));
            }
            alive = next;
        }
        alive
    }

    /// `Sim::run_table`: one table at `hook`; finishes what it drops, returns what it accepts.
    fn run_table(&mut self, st: St, hook: Hook, tname: TableName, nat: NatCtx, looped: bool) -> Vec<St> {
        if tname == TableName::Nat && (looped || !self.conntrack) {
            return vec![st];
        }
        let Some(table) = self.ruleset.table(self.family, tname) else { return vec![st] };
        let mut next = Vec::new();
        let mut st = if tname == TableName::Nat {
            // nat sees only the first packet of a connection.
            let new = Test { state: Some(state_bit(CtState::New)), ..Test::default() };
            let (walk_it, pass) = self.split(st, &[new]);
            next.extend(pass);
            match walk_it {
                Some(s) => s,
                None => return next,
            }
        } else {
            st
        };
        // raw runs before conntrack: no entry yet (INVALID, or UNTRACKED after `CT --notrack`),
        // except for a packet looped back on lo.
        let real = st.cur.state;
        let before_conntrack = tname == TableName::Raw && !looped;
        if before_conntrack {
            st.cur.state = Val::Const(CtState::Invalid);
        }
        for (mut st, end) in self.walk(table, hook, nat, st) {
            if before_conntrack && st.cur.state != Val::Const(CtState::Untracked) {
                st.cur.state = real;
            }
            match end {
                End::Accept => next.push(st),
                End::Drop(by) => {
                    let why = by.as_ref().map_or_else(|| format!("{tname} {} policy DROP", hook.chain_name()), |r| format!("dropped by {r}"));
                    self.finish(st, Verdict::Drop, None, by, Some(why));
                }
                End::Reject(by) => {
                    let why = format!("rejected by {by}");
                    self.finish(st, Verdict::Reject, None, Some(by), Some(why));
                }
                End::Queue(by) => {
                    let why = format!("queued by {by}");
                    self.finish(st, Verdict::Queue, None, Some(by), Some(why));
                }
                End::Undecidable(by, why) => {
                    st.assumptions.push(Assumption { rule: by.clone(), matched: true, reason: why.clone() });
                    let reason = format!("undecidable: {why} ({by})");
                    self.finish(st, Verdict::Drop, None, Some(by), Some(reason));
                }
            }
        }
        next
    }

    fn masquerade_src(&self, r: &RouteSym) -> Option<AVal> {
        // IPv6 keeps the route's source on lo too (`Sim::masquerade_src`).
        if r.dev != "lo" || self.family == Family::V6 {
            return r.src;
        }
        self.host.universe_addr(self.family == Family::V4).map(|a| AVal::Const(addr_num(a)))
    }

    fn local_out(&mut self, st: St) {
        let parts = self.route_parts(true);
        for (st, route) in self.partition(st, &parts) {
            let Some(route) = route else {
                self.finish(st, Verdict::Drop, None, None, Some("no route to host (the send fails with ENETUNREACH)".into()));
                continue;
            };
            self.local_out_routed(st, route);
        }
    }

    fn local_out_routed(&mut self, st: St, route: RouteSym) {
        let unspec = Test { src: Some(Ranges::point(0)), ..Test::default() };
        let local = self.local_set();
        let mut st = st;
        if !self.host.sysctls.ip_nonlocal_bind {
            let ok = Test { src: Some(local.union(&Ranges::point(0))), ..Test::default() };
            let (fine, bad) = self.split(st, &[ok]);
            if let Some(bad) = bad {
                let why = "the source address is not local: bind() fails with EADDRNOTAVAIL (net.ipv4.ip_nonlocal_bind=0)";
                self.finish(bad, Verdict::Drop, None, None, Some(why.into()));
            }
            let Some(fine) = fine else { return };
            st = fine;
        }
        // IPv4 only, as in `Sim::local_out`.
        if !route.local && self.family == Family::V4 {
            let lo = Test { src: Some(loopback_set(self.family)), ..Test::default() };
            let (bad, fine) = self.split(st, &[lo]);
            if let Some(bad) = bad {
                self.finish(bad, Verdict::Drop, None, None, Some("a loopback source cannot leave the host: the send fails with EINVAL".into()));
            }
            let Some(fine) = fine else { return };
            st = fine;
        }
        let (unbound, bound) = self.split(st, &[unspec]);
        for (mut st, is_unbound) in unbound.map(|s| (s, true)).into_iter().chain(bound.map(|s| (s, false))) {
            if is_unbound {
                let chosen = if route.local { Some(st.cur.dst) } else { route.src };
                if let Some(c) = chosen {
                    st.cur.src = c;
                    st.orig_src = c;
                }
            }
            st.out_iface = Some(route.dev.clone());
            let nat = NatCtx { redirect_to: Some(loopback_num(self.family)), masquerade_src: route.src };
            // As `Sim::local_out`: OUTPUT tables see the first route's device; re-routes after
            // mangle and nat OUTPUT decide POSTROUTING's.
            let mut alive = vec![(st, route.clone())];
            for &tname in tables_at(Hook::Output, self.opts.backend) {
                let mut next = Vec::new();
                for (st, route) in alive {
                    let before = RouteKey::of(&st, self.family);
                    for st in self.run_table(st, Hook::Output, tname, nat, false) {
                        let (again, keep) = self.reroutes(st, tname, &before);
                        next.extend(keep.map(|s| (s, route.clone())));
                        if let Some(st) = again {
                            next.extend(self.reroute(st, tname));
                        }
                    }
                }
                alive = next;
            }
            for (mut st, route) in alive {
                st.out_iface = Some(route.dev.clone());
                let nat = NatCtx { redirect_to: None, masquerade_src: self.masquerade_src(&route) };
                for mut st in self.run_hook(st, Hook::Postrouting, nat, false) {
                    if route.local {
                        st.in_iface = Some("lo".into());
                        st.out_iface = None;
                        st.confirmed = true;
                        self.arrive(st, true);
                    } else {
                        let iface = st.out_iface.clone().unwrap_or_default();
                        self.finish(st, Verdict::Accept, Some(Place::Egress { iface, gateway: route.gateway }), None, None);
                    }
                }
            }
        }
    }

    /// `Sim::reroutes`: splits `st`, just out of OUTPUT table `tname`, into the packets the
    /// kernel routes again and those that keep their route.
    fn reroutes(&self, st: St, tname: TableName, before: &RouteKey) -> (Option<St>, Option<St>) {
        match tname {
            TableName::Mangle => {
                let now = RouteKey::of(&st, self.family);
                if (now.src, now.dst, now.tos, now.hop_limit) != (before.src, before.dst, before.tos, before.hop_limit) {
                    return (Some(st), None);
                }
                // The mark is unchanged for the input marks m with (m & k1) ^ x1 == (m & k2) ^ x2,
                // that is m & (k1 ^ k2) == x1 ^ x2.
                let (diff, flip) = (before.mark.keep ^ now.mark.keep, before.mark.xor ^ now.mark.xor);
                if diff == 0 && flip == 0 {
                    return (None, Some(st));
                }
                if flip & !diff != 0 {
                    return (Some(st), None);
                }
                let same = Cube { mark: Bits::pattern(flip, diff), ..self.space.clone() };
                let (keep, again) = self.split_input(st, &[same]);
                (again, keep)
            }
            TableName::Nat => match st.dnat.map(|(a, _)| a) {
                None | Some(AVal::Dst) => (None, Some(st)),
                Some(AVal::Const(c)) => {
                    let same = Cube { dst: Ranges::point(c), ..self.space.clone() };
                    let (keep, again) = self.split_input(st, &[same]);
                    (again, keep)
                }
                // Never: nat OUTPUT's new address is a constant or the packet's own destination.
                Some(AVal::Src) => (Some(st), None),
            },
            _ => (None, Some(st)),
        }
    }

    /// `Sim::reroute`: the packets of `st` with their new route; those whose re-route fails
    /// are finished.
    fn reroute(&mut self, st: St, after: TableName) -> Vec<(St, RouteSym)> {
        let parts = self.route_parts(true);
        let mut out = Vec::new();
        for (st, route) in self.partition(st, &parts) {
            let Some(route) = route else {
                let why = format!("re-routing after {after} OUTPUT fails: no route to host ({})", send_error("ENETUNREACH"));
                self.finish(st, Verdict::Drop, None, None, Some(why));
                continue;
            };
            let mut st = st;
            if !route.local && self.family == Family::V4 {
                let lo = Test { src: Some(loopback_set(self.family)), ..Test::default() };
                let (bad, fine) = self.split(st, &[lo]);
                if let Some(bad) = bad {
                    let why = format!("re-routing after {after} OUTPUT fails: a loopback source cannot leave the host ({})", send_error("EINVAL"));
                    self.finish(bad, Verdict::Drop, None, None, Some(why));
                }
                let Some(fine) = fine else { continue };
                st = fine;
            }
            out.push((st, route));
        }
        out
    }

    fn arrive(&mut self, st: St, looped: bool) {
        let in_iface = st.in_iface.clone().unwrap_or_default();
        let mut st = st;
        let from_outside = !looped && in_iface != "lo";
        if from_outside && self.family == Family::V6 {
            // As `Sim::arrive`: ::1 as source or destination never arrives on another interface.
            let lo = loopback_set(self.family);
            let other = Ranges::addr_space(addr_bits(self.family)).minus(&lo);
            let tests = [Test { dst: Some(lo.clone()), ..Test::default() }, Test { src: Some(lo), dst: Some(other), ..Test::default() }];
            let (bad, fine) = self.split(st, &tests);
            if let Some(bad) = bad {
                self.finish(bad, Verdict::Drop, None, None, Some(LOOPBACK_V6_ARRIVING.into()));
            }
            let Some(fine) = fine else { return };
            st = fine;
        }
        let nat = NatCtx { redirect_to: self.host.primary_addr(&in_iface, self.family == Family::V4).map(addr_num), masquerade_src: None };
        for st in self.run_hook(st, Hook::Prerouting, nat, looped) {
            if looped {
                // As `Sim::arrive`: a looped-back packet keeps its local route; no input lookup.
                self.local_in(st, true);
            } else {
                self.route_input(st, &in_iface, from_outside);
            }
        }
    }

    /// `Sim::route_input`: the martian check, the input route, the reverse-path check for local
    /// and forwarded packets, then INPUT, or FORWARD and POSTROUTING.
    fn route_input(&mut self, st: St, in_iface: &str, from_outside: bool) {
        let mut routed: Vec<(St, Option<RouteSym>)> = Vec::new();
        let st = if from_outside && (self.family == Family::V6 || !self.host.sysctls.route_localnet) {
            let lo = Test { dst: Some(loopback_set(self.family)), ..Test::default() };
            let (bad, fine) = self.split(st, &[lo]);
            if let Some(bad) = bad {
                if self.family == Family::V6 {
                    // As `Sim::route_input`: ::1 is looked up on the input device only.
                    let r = self.host.route_strict(std::net::Ipv6Addr::LOCALHOST.into(), in_iface);
                    routed.push((bad, r.map(|r| self.route_of(Some(r.next_hop).filter(|h| !h.is_loopback()), &r.dev, r.local))));
                } else {
                    self.finish(bad, Verdict::Drop, None, None, Some(martian_loopback(self.family).into()));
                }
            }
            let Some(fine) = fine else { return self.route_input_on(routed, in_iface) };
            fine
        } else {
            st
        };
        let parts = self.route_parts(true);
        routed.extend(self.partition(st, &parts));
        self.route_input_on(routed, in_iface);
    }

    /// `route_input` after the route lookup.
    fn route_input_on(&mut self, routed: Vec<(St, Option<RouteSym>)>, in_iface: &str) {
        for (st, route) in routed {
            let Some(r) = route else {
                self.finish(st, Verdict::Drop, None, None, Some("no route for the arriving packet".into()));
                continue;
            };
            let local = r.local || st.tproxy.is_some();
            if !local && !self.host.sysctls.ip_forward {
                self.finish(st, Verdict::Drop, None, None, Some("not for this host and forwarding is off (net.ipv4.ip_forward=0)".into()));
                continue;
            }
            for st in self.reverse_path(st, in_iface) {
                if local {
                    self.local_in(st, false);
                    continue;
                }
                let mut st = st;
                // As `Sim::route_input`: the TTL (a constant of the state) expires or is
                // decremented before FORWARD.
                if st.ttl <= 1 {
                    let why = ttl_exceeded(self.family, st.ttl);
                    self.finish(st, Verdict::Drop, None, None, Some(why));
                    continue;
                }
                st.ttl -= 1;
                st.out_iface = Some(r.dev.clone());
                for st in self.run_hook(st, Hook::Forward, NatCtx::default(), false) {
                    let nat = NatCtx { redirect_to: None, masquerade_src: r.src };
                    for st in self.run_hook(st, Hook::Postrouting, nat, false) {
                        let iface = st.out_iface.clone().unwrap_or_default();
                        self.finish(st, Verdict::Accept, Some(Place::Egress { iface, gateway: r.gateway }), None, None);
                    }
                }
            }
        }
    }

    /// `Sim::reverse_path_fails`: finishes the packets of `st` the reverse-path filter drops;
    /// returns the others.
    fn reverse_path(&mut self, st: St, in_iface: &str) -> Vec<St> {
        let mode = self.host.sysctls.rp_filter;
        if mode == 0 || self.family != Family::V4 {
            return vec![st];
        }
        let parts = self.route_parts(false);
        let mut ok = Vec::new();
        for (st, back) in self.partition(st, &parts) {
            if reverse_path_ok(mode, back.as_ref().map(|r| r.dev.as_str()), in_iface) {
                ok.push(st);
            } else {
                self.finish(st, Verdict::Drop, None, None, Some(reverse_path_drop(mode, in_iface)));
            }
        }
        ok
    }

    fn local_in(&mut self, st: St, looped: bool) {
        for st in self.run_hook(st, Hook::Input, NatCtx::default(), looped) {
            let ports = Test { proto: Some(port_protos()), ..Test::default() };
            let (with_ports, without) = self.split(st, &[ports]);
            if let Some(st) = without {
                self.finish(st, Verdict::Accept, Some(Place::Local { process: None }), None, None);
            }
            let Some(st) = with_ports else { continue };
            let (addr, port) = st.tproxy.unwrap_or((st.cur.dst, st.cur.dport));
            let parts = self.socket_parts(addr, port);
            for (st, sock) in self.partition(st, &parts) {
                match sock {
                    Some(i) => {
                        let sock = &self.host.sockets[i];
                        let process = Some(sock.process.clone()).filter(|p| !p.is_empty());
                        let transparent = st.tproxy.is_some() || sock.transparent;
                        let Some(st) = self.synack_route(st, transparent) else { continue };
                        self.finish(st, Verdict::Accept, Some(Place::Local { process }), None, None);
                    }
                    None => {
                        let tcp = Test { proto: Some(Ranges::point(6)), ..Test::default() };
                        let (t, other) = self.split(st, &[tcp]);
                        if let Some(t) = t {
                            self.finish(t, Verdict::Accept, None, None, Some("no socket listens there: the kernel answers with a TCP reset".into()));
                        }
                        if let Some(o) = other {
                            self.finish(o, Verdict::Accept, None, None, Some("no socket listens there: the kernel answers with ICMP port unreachable".into()));
                        }
                    }
                }
            }
        }
    }

    /// `Sim::synack_route_fails`: finishes the TCP packets of `st` whose listener cannot route
    /// its SYN-ACK back (IPv4): to a non-local destination unless `transparent` (a transparent
    /// listener or TPROXY's), or to a loopback destination from a non-local source (unless
    /// `route_localnet`). Returns the others.
    fn synack_route(&mut self, st: St, transparent: bool) -> Option<St> {
        if self.family != Family::V4 {
            return Some(st);
        }
        let tcp = Some(Ranges::point(6));
        let nonlocal = Ranges::addr_space(addr_bits(self.family)).minus(&self.local_set());
        let mut st = st;
        if !transparent {
            let stuck = Test { proto: tcp.clone(), dst: Some(nonlocal.clone()), ..Test::default() };
            let (bad, fine) = self.split(st, &[stuck]);
            if let Some(bad) = bad {
                self.finish(bad, Verdict::Accept, None, None, Some(NOT_TRANSPARENT.into()));
            }
            st = fine?;
        }
        if self.host.sysctls.route_localnet {
            return Some(st);
        }
        let stuck = Test { proto: tcp, dst: Some(loopback_set(self.family)), src: Some(nonlocal), ..Test::default() };
        let (bad, fine) = self.split(st, &[stuck]);
        if let Some(bad) = bad {
            self.finish(bad, Verdict::Accept, None, None, Some(LOOPBACK_CANNOT_ANSWER.into()));
        }
        fine
    }

    // ----- routing and sockets as partitions -----

    /// The host's local addresses (`Host::is_local`).
    fn local_set(&self) -> Ranges<u128> {
        super::local_set(self.host, self.family)
    }

    /// Longest-prefix match over `routes` (ties: the later route, as `max_by_key`): the set of
    /// addresses each route wins.
    fn lpm(&self, routes: Vec<(ipnet::IpNet, RouteSym)>) -> Vec<(Ranges<u128>, RouteSym)> {
        let bits = addr_bits(self.family);
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(routes[i].0.prefix_len()), std::cmp::Reverse(i)));
        let mut taken = Ranges::empty();
        let mut out = Vec::new();
        for i in order {
            let (net, r) = &routes[i];
            if net.addr().is_ipv4() != (self.family == Family::V4) {
                continue;
            }
            let set = Ranges::from_prefix(addr_num(net.network()), net.prefix_len(), bits).minus(&taken);
            if !set.is_empty() {
                taken = taken.union(&set);
                out.push((set, r.clone()));
            }
        }
        out
    }

    fn route_of(&self, via: Option<IpAddr>, dev: &str, local: bool) -> RouteSym {
        let src = self.host.primary_addr(dev, self.family == Family::V4);
        RouteSym { local, dev: dev.to_string(), gateway: via, src: src.map(|a| AVal::Const(addr_num(a))) }
    }

    /// The reverse-path lookup's partition of the source space: `Host::route` on the source, with
    /// the packet's mark under `src_valid_mark` and with mark 0 otherwise (`fib_validate_source`).
    fn compute_back_parts(&self) -> Vec<(Test, Option<RouteSym>)> {
        let parts = self.compute_route_parts(false);
        if self.host.sysctls.src_valid_mark {
            return parts;
        }
        // The parts holding mark 0, without their mark test, partition the source space.
        parts
            .into_iter()
            .filter(|(t, _)| t.mark.as_ref().is_none_or(|m| m.contains(0)))
            .map(|(mut t, r)| {
                t.mark = None;
                (t, r)
            })
            .collect()
    }

    /// `Host::route` as a partition of (address, mark) space, on the destination (`dst`) or, for
    /// the reverse-path check, the source.
    fn compute_route_parts(&self, dst: bool) -> Vec<(Test, Option<RouteSym>)> {
        let mk = |addrs: Ranges<u128>, mark: Option<Bits>| {
            let mut t = Test { mark, ..Test::default() };
            if dst {
                t.dst = Some(addrs);
            } else {
                t.src = Some(addrs);
            }
            t
        };
        let space = Ranges::addr_space(addr_bits(self.family));
        let mut parts = Vec::new();
        // Packets not yet decided: a union of (addresses, marks) pairs.
        let mut rest: Vec<(Ranges<u128>, Bits)> = vec![(space.clone(), Bits::full())];
        for rule in &self.host.policy {
            let Some(table) = self.host.tables.get(&rule.table) else { continue };
            let routes = table.iter().map(|r| (r.dst, self.route_of(r.via, &r.dev, r.local))).collect();
            let wins = self.lpm(routes);
            let covered = wins.iter().fold(Ranges::empty(), |a, (s, _)| a.union(s));
            let marks = Bits::pattern(rule.fwmark, rule.mask);
            let mut next = Vec::new();
            for (a, m) in rest {
                let mm = m.intersect(&marks);
                if !mm.is_empty() {
                    for (s, r) in &wins {
                        let aa = a.intersect(s);
                        if !aa.is_empty() {
                            parts.push((mk(aa, Some(mm.clone())), Some(r.clone())));
                        }
                    }
                    let uncovered = a.minus(&covered);
                    if !uncovered.is_empty() {
                        next.push((uncovered, mm));
                    }
                }
                let other = m.minus(&marks);
                if !other.is_empty() {
                    next.push((a, other));
                }
            }
            rest = next;
        }
        // The local table, then the main table.
        let local = self.local_set();
        let mut main: Vec<(ipnet::IpNet, RouteSym)> = Vec::new();
        for i in self.host.ifaces() {
            for a in &i.addrs {
                main.push((a.trunc(), self.route_of(None, &i.name, false)));
            }
        }
        for r in &self.host.routes {
            main.push((r.dst, self.route_of(r.via, &r.dev, r.local)));
        }
        if let Some(gw) = self.host.gateway
            && let Some(dev) = self.host.ifaces().find(|i| i.addrs.iter().any(|a| a.contains(&gw)))
        {
            let any = if gw.is_ipv4() { IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) };
            if let Ok(net) = ipnet::IpNet::new(any, 0) {
                main.push((net, self.route_of(Some(gw), &dev.name, false)));
            }
        }
        let wins = self.lpm(main);
        let local_route = RouteSym { local: true, dev: "lo".into(), gateway: None, src: Some(if dst { AVal::Dst } else { AVal::Src }) };
        for (a, m) in rest {
            let l = a.intersect(&local);
            if !l.is_empty() {
                parts.push((mk(l, Some(m.clone())), Some(local_route.clone())));
            }
            let a = a.minus(&local);
            let mut covered = Ranges::empty();
            for (s, r) in &wins {
                let aa = a.intersect(s);
                if !aa.is_empty() {
                    covered = covered.union(&aa);
                    parts.push((mk(aa, Some(m.clone())), Some(r.clone())));
                }
            }
            let none = a.minus(&covered);
            if !none.is_empty() {
                parts.push((mk(none, Some(m)), None));
            }
        }
        parts
    }

    /// `Host::socket_for` as a partition of (protocol, address, port) space; `addr`/`port` say
    /// which address and port are looked up (the destination, or TPROXY's).
    fn compute_socket_parts(&self, addr: AVal, port: Val<u16>) -> Vec<(Test, Option<usize>)> {
        let socks: &[Socket] = &self.host.sockets;
        let space = Ranges::addr_space(addr_bits(self.family));
        let mut protos: Vec<u8> = socks.iter().map(|s| s.proto).collect();
        protos.sort_unstable();
        protos.dedup();
        let mut ports: Vec<u16> = socks.iter().map(|s| s.port).collect();
        ports.sort_unstable();
        ports.dedup();
        let mut addrs: Vec<u128> = socks.iter().filter(|s| s.addr.is_ipv4() == (self.family == Family::V4)).map(|s| addr_num(s.addr)).collect();
        addrs.sort_unstable();
        addrs.dedup();
        // Atoms: each listed value, and "any other" (represented by a value outside the list).
        let proto_atoms: Vec<(Ranges<u8>, u8)> = atoms(&protos, Ranges::full());
        let port_atoms: Vec<(Ranges<u16>, u16)> = atoms(&ports, Ranges::full());
        let addr_atoms: Vec<(Ranges<u128>, u128)> = atoms(&addrs, space);
        let mut parts: Vec<(Test, Option<usize>)> = Vec::new();
        for (pset, p) in &proto_atoms {
            for (qset, q) in &port_atoms {
                for (aset, a) in &addr_atoms {
                    let q = match port {
                        Val::Const(c) => {
                            if !qset.contains(c) {
                                continue;
                            }
                            c
                        }
                        Val::In => *q,
                    };
                    let a = match addr {
                        AVal::Const(c) => {
                            if !aset.contains(c) {
                                continue;
                            }
                            c
                        }
                        _ => *a,
                    };
                    let found = self.host.socket_for(*p, num_addr(a, self.family), q).and_then(|s| socks.iter().position(|x| std::ptr::eq(x, s)));
                    let mut t = Test { proto: Some(pset.clone()), ..Test::default() };
                    if port == Val::In {
                        t.dport = Some(qset.clone());
                    }
                    match addr {
                        AVal::Const(_) => {}
                        AVal::Src => t.src = Some(aset.clone()),
                        AVal::Dst => t.dst = Some(aset.clone()),
                    }
                    parts.push((t, found));
                }
            }
        }
        parts
    }

    // ----- the walk (traverse.rs) -----

    /// The chain's base tests and dispatch runs, computed on its first visit.
    fn chain_index(&self, table: &Table, chain: ChainId) -> &ChainIndex {
        let t = self.base.iter().find(|(n, _)| *n == table.name).map(|(_, v)| v).expect("tables are indexed at creation");
        t[chain.0 as usize].get_or_init(|| index_chain(table[chain].rules.iter().map(|r| base_test(r, self.family)).collect()))
    }

    fn base_tests(&self, table: &Table, chain: ChainId, idx: usize) -> &BaseTest {
        &self.chain_index(table, chain).tests[idx]
    }

    /// At rule `idx` of a dispatch run: the states to continue with, each at its next rule and
    /// group (the group's next rule, or the end of the run for packets in no group).
    fn dispatch(&self, table: &Table, chain: ChainId, idx: usize, lane: Option<Lane>, mut st: St) -> Vec<(St, usize, Option<Lane>)> {
        let ci = self.chain_index(table, chain);
        let run_id = ci.run_at[idx];
        let run = &ci.runs[run_id as usize];
        let next_in = |g: usize| -> (usize, Option<Lane>) {
            let rules = &run.groups[g].2;
            match rules.iter().find(|&&r| r >= idx) {
                Some(&r) => (r, Some(Lane { chain, run: run_id, group: g as u32 })),
                None => (run.end, None),
            }
        };
        if let Some(l) = lane.filter(|l| l.chain == chain && l.run == run_id) {
            if l.group == u32::MAX {
                return vec![(st, idx, lane)];
            }
            let (i, lane) = next_in(l.group as usize);
            return vec![(st, i, lane)];
        }
        let find = |a: u128| run.groups.partition_point(|g| g.1 < a);
        match st.cur.dst {
            AVal::Const(a) => {
                let g = find(a);
                if g < run.groups.len() && run.groups[g].0 <= a {
                    let (i, lane) = next_in(g);
                    vec![(st, i, lane)]
                } else {
                    vec![(st, run.end, None)]
                }
            }
            AVal::Src => vec![(st, idx, Some(Lane { chain, run: run_id, group: u32::MAX }))],
            AVal::Dst => {
                let region = std::mem::take(&mut st.region);
                let mut pieces: std::collections::BTreeMap<usize, Region> = std::collections::BTreeMap::new();
                let mut rest: Region = Vec::new();
                for c in region {
                    for &(lo, hi) in c.dst.intervals() {
                        let mut g = find(lo);
                        while g < run.groups.len() && run.groups[g].0 <= hi {
                            let mut p = c.clone();
                            p.dst = c.dst.intersect(&Ranges::range(run.groups[g].0, run.groups[g].1));
                            pieces.entry(g).or_default().push(p);
                            g += 1;
                        }
                    }
                    let mut r = c;
                    r.dst = r.dst.minus(&run.union);
                    if !r.is_empty() {
                        rest.push(r);
                    }
                }
                let mut out = Vec::with_capacity(pieces.len() + 1);
                for (g, region) in pieces {
                    let mut s = st.clone();
                    s.region = region;
                    let (i, lane) = next_in(g);
                    out.push((s, i, lane));
                }
                if !rest.is_empty() {
                    st.region = rest;
                    out.push((st, run.end, None));
                }
                out
            }
        }
    }

    /// The rule's condition on `st`: the tests of its base match and typed matches, and what the
    /// rest of it (chance, undecidable, concrete fallbacks) answers.
    fn rule_cond(&self, table: &Table, chain: ChainId, idx: usize, rule: &Rule, hook: Hook, st: &St) -> (Vec<Test>, Eval) {
        let iface_ok = |r: Option<&crate::ruleset::Neg<crate::ruleset::addr::Iface>>, v: &Option<String>| {
            r.is_none_or(|i| i.value.matches(v.as_deref().unwrap_or("")) != i.negated)
        };
        if !iface_ok(rule.in_iface(), &st.in_iface) || !iface_ok(rule.out_iface(), &st.out_iface) || rule.fragment.is_some_and(|inv| !inv) {
            return (Vec::new(), Eval::NoMatch);
        }
        let mut acc = Eval::Match;
        let mut tests = match &self.base_tests(table, chain, idx).test {
            Some(t) => {
                if t.iter().all(|t| self.quick_miss(t, st)) {
                    return (Vec::new(), Eval::NoMatch);
                }
                t.clone()
            }
            None => {
                if self.constant(st, Fields::SRC.or(Fields::DST)) {
                    let (p, _, _) = self.current_packet(st);
                    let fails =
                        |a: &Option<crate::ruleset::Neg<crate::ruleset::addr::AddrMask>>, ip| a.as_ref().is_some_and(|a| a.value.contains(ip) == a.negated);
                    if fails(&rule.src, p.src) || fails(&rule.dst, p.dst) {
                        return (Vec::new(), Eval::NoMatch);
                    }
                } else {
                    acc = Eval::Unknown("a non-contiguous address mask is not analysed over a range of addresses".into());
                }
                let mut t = Test::default();
                if let Some(p) = &rule.proto {
                    let s = Ranges::point(p.value.0);
                    t.proto = Some(if p.negated { s.complement() } else { s });
                }
                vec![t]
            }
        };
        let cx = CondCtx {
            host: self.host,
            hook,
            table: table.name,
            family: self.family,
            in_iface: st.in_iface.as_deref(),
            out_iface: st.out_iface.as_deref(),
            has_owner: self.owned,
        };
        for m in &rule.matches {
            match match_cond(m, &cx) {
                MatchCond::Eval(e) => acc = acc.and(e),
                MatchCond::Tests(ts) => {
                    let mut next = Vec::with_capacity(tests.len() * ts.len());
                    for a in &tests {
                        for b in &ts {
                            next.push(a.clone().and(b));
                        }
                    }
                    tests = next;
                }
                MatchCond::Concrete(fields) => {
                    if self.constant(st, fields) {
                        let (p, orig, nat) = self.current_packet(st);
                        let conn = (self.conntrack && !matches!(p.ct_state, CtState::Untracked | CtState::Invalid)).then(|| conn_of(&orig, &p, &nat));
                        let ecx = EvalCtx { host: self.host, hook, table: table.name, family: self.family, conn: conn.as_ref() };
                        acc = acc.and(m.eval(&p, &ecx));
                    } else {
                        acc = acc.and(Eval::Unknown(format!("`-m {}` is not analysed over a range of packets", m.name())));
                    }
                }
            }
            if acc == Eval::NoMatch || tests.is_empty() {
                return (Vec::new(), Eval::NoMatch);
            }
        }
        (tests, acc)
    }

    fn walk(&mut self, table: &Table, hook: Hook, nat: NatCtx, st: St) -> Vec<(St, End)> {
        let Some(start) = table.builtin(hook) else { return vec![(st, End::Accept)] };
        let mut work = vec![(st, start, 0usize, Vec::<(ChainId, usize)>::new(), None::<Lane>)];
        let mut done = Vec::new();
        let mut budget = 10_000_000usize;
        // Branches per fork family in this walk, capped as the concrete walk caps a packet's.
        let mut forks: std::collections::HashMap<Option<u32>, usize> = std::collections::HashMap::new();
        'work: while let Some((mut st, mut chain_id, mut idx, mut stack, mut lane)) = work.pop() {
            let end = loop {
                if budget == 0 {
                    break End::Undecidable(rule_ref(table, chain_id, idx), "step budget exhausted".into());
                }
                budget -= 1;
                if idx == 0 && self.focus.is_some() {
                    if self.focus.as_ref().is_some_and(|(f, _)| f.differs(table.name, chain_id)) {
                        st.dirty = true;
                    } else if self.clean_for_good(table, hook, chain_id, &stack, &st) {
                        continue 'work;
                    }
                }
                if lane.is_some_and(|l| l.chain != chain_id) {
                    lane = None;
                }
                if self.chain_index(table, chain_id).run_at.get(idx).is_some_and(|r| *r != u32::MAX) {
                    let mut next = self.dispatch(table, chain_id, idx, lane, st);
                    if self.focus.is_some() {
                        next.retain(|(s, i, l)| !self.clean_in_run(table, hook, chain_id, *i, *l, &stack, s));
                    }
                    let Some((s, i, l)) = next.pop() else { continue 'work };
                    for (s2, i2, l2) in next {
                        work.push((s2, chain_id, i2, stack.clone(), l2));
                    }
                    st = s;
                    lane = l;
                    if i != idx {
                        idx = i;
                        continue;
                    }
                }
                let chain = &table[chain_id];
                let Some(rule) = chain.rules.get(idx) else {
                    match stack.pop() {
                        Some((c, r)) if chain.hook.is_none() => {
                            chain_id = c;
                            idx = r;
                            continue;
                        }
                        _ => {
                            let builtin = table.builtin(hook).unwrap_or(chain_id);
                            break match table[builtin].policy {
                                Policy::Accept => End::Accept,
                                Policy::Drop => End::Drop(None),
                            };
                        }
                    }
                };
                let (tests, extra) = self.rule_cond(table, chain_id, idx, rule, hook, &st);
                if extra == Eval::NoMatch || tests.is_empty() {
                    idx += 1;
                    continue;
                }
                let (inside, outside) = self.split(st, &tests);
                if let Some(o) = outside {
                    work.push((o, chain_id, idx + 1, stack.clone(), lane));
                }
                let Some(inside) = inside else {
                    // Nothing matches: the state moved on with `outside`.
                    continue 'work;
                };
                st = inside;
                let here = rule_ref(table, chain_id, idx);
                match extra {
                    Eval::Match => {}
                    Eval::NoMatch => unreachable!("handled above"),
                    Eval::Chance(p) => {
                        self.new_root(&mut st);
                        let n = forks.entry(st.root).or_insert(1);
                        if *n < self.opts.max_branches {
                            *n += 1;
                            let mut other = st.clone();
                            other.probability *= 1.0 - p;
                            other.assumptions.push(Assumption { rule: here.clone(), matched: false, reason: format!("matches with probability {p:.6}") });
                            other.root = st.root;
                            work.push((other, chain_id, idx + 1, stack.clone(), lane));
                        }
                        st.probability *= p;
                        st.assumptions.push(Assumption { rule: here.clone(), matched: true, reason: format!("matches with probability {p:.6}") });
                    }
                    Eval::Unknown(reason) => match self.opts.assume {
                        Some(m) => {
                            st.assumptions.push(Assumption { rule: here.clone(), matched: m, reason });
                            if !m {
                                idx += 1;
                                continue;
                            }
                        }
                        None => {
                            self.new_root(&mut st);
                            let n = forks.entry(st.root).or_insert(1);
                            if *n < self.opts.max_branches {
                                *n += 1;
                                let mut other = st.clone();
                                other.assumptions.push(Assumption { rule: here.clone(), matched: false, reason: reason.clone() });
                                other.root = st.root;
                                work.push((other, chain_id, idx + 1, stack.clone(), lane));
                            }
                            st.assumptions.push(Assumption { rule: here.clone(), matched: true, reason });
                        }
                    },
                }
                match &rule.target {
                    Target::None => idx += 1,
                    Target::Accept => break End::Accept,
                    Target::Drop => break End::Drop(Some(here)),
                    Target::Queue => break End::Queue(here),
                    Target::Return => match stack.pop() {
                        Some((c, r)) if table[chain_id].hook.is_none() => {
                            chain_id = c;
                            idx = r;
                        }
                        _ => {
                            idx = usize::MAX;
                            chain_id = table.builtin(hook).unwrap_or(chain_id);
                            stack.clear();
                        }
                    },
                    Target::Jump(c) => {
                        stack.push((chain_id, idx + 1));
                        chain_id = *c;
                        idx = 0;
                    }
                    Target::Goto(c) => {
                        chain_id = *c;
                        idx = 0;
                    }
                    Target::Unreadable(u) => break End::Undecidable(here, format!("unreadable rule: {}", u.reason)),
                    Target::Ext(t) => {
                        let mut results = self.apply_target(t, st, hook, nat, &here);
                        // The first result continues here; others (split by the target) are queued.
                        let (first, effect) = results.remove(0);
                        for (s, e) in results {
                            match e {
                                None => work.push((s, chain_id, idx + 1, stack.clone(), lane)),
                                Some(end) => done.push((s, end)),
                            }
                        }
                        st = first;
                        match effect {
                            None => idx += 1,
                            Some(end) => break end,
                        }
                    }
                }
            };
            done.push((st, end));
        }
        done.reverse();
        done
    }

    /// Gives `st` a fork family of its own if it has none yet.
    fn new_root(&mut self, st: &mut St) {
        if st.root.is_none() {
            self.forks += 1;
            st.root = Some(self.forks);
        }
    }

    /// A target's effect on `st`: `None` = continue with the next rule, `Some(end)` = verdict.
    /// Several results when the effect depends on the packet (SNAT port ranges).
    fn apply_target(&self, t: &TargetExt, mut st: St, hook: Hook, nat: NatCtx, here: &RuleRef) -> Vec<(St, Option<End>)> {
        let undecidable = |st: St, why: String| vec![(st, Some(End::Undecidable(here.clone(), why)))];
        match t {
            TargetExt::Mark(m) => match affine1(|x| m.apply(x)) {
                Some((k, x)) => {
                    st.cur.mark = compose(st.cur.mark, k, x);
                    vec![(st, None)]
                }
                None => undecidable(st, "a MARK that is not bitwise is not analysed over a range of marks".into()),
            },
            TargetExt::Connmark(c) => {
                // Without a conntrack entry (INVALID, UNTRACKED, in raw) the target does nothing.
                let with_entry = Test { state: Some(tracked()), ..Test::default() };
                let (tracked, untracked) = self.split(st, &[with_entry]);
                let mut out: Vec<(St, Option<End>)> = untracked.map(|s| (s, None)).into_iter().collect();
                if let Some(mut st) = tracked {
                    let first = match affine2(|a, b| c.apply(a, b)) {
                        Some(((ka, kb, xa), (la, lb, ya))) => {
                            let (m, ct) = (st.cur.mark, st.cur.ctmark);
                            st.cur.mark = Lin { keep: (m.keep & ka) ^ (ct.keep & kb), xor: (m.xor & ka) ^ (ct.xor & kb) ^ xa };
                            st.cur.ctmark = Lin { keep: (m.keep & la) ^ (ct.keep & lb), xor: (m.xor & la) ^ (ct.xor & lb) ^ ya };
                            (st, None)
                        }
                        None => (st, Some(End::Undecidable(here.clone(), "CONNMARK with a shift is not analysed over a range of marks".into()))),
                    };
                    out.insert(0, first);
                }
                out
            }
            TargetExt::Tos(x) => {
                st.tos = x.apply(st.tos);
                vec![(st, None)]
            }
            TargetExt::Dscp(x) => {
                st.tos = x.apply(st.tos);
                vec![(st, None)]
            }
            TargetExt::Ttl(x) => {
                if let Some(a) = x.action {
                    st.ttl = a.apply(st.ttl);
                }
                vec![(st, None)]
            }
            TargetExt::Hl(x) => {
                if let Some(a) = x.action {
                    st.ttl = a.apply(st.ttl);
                }
                vec![(st, None)]
            }
            TargetExt::Ct(c) if !c.notrack => vec![(st, None)],
            TargetExt::Ct(_) | TargetExt::Notrack(_) => {
                // Only a packet without an entry becomes untracked; one looped back on lo keeps the
                // entry it got on the way out (`if (skb->_nfct != 0) return XT_CONTINUE`).
                let no_entry = Test { state: Some(state_bit(CtState::Invalid)), ..Test::default() };
                let (none, has) = self.split(st, &[no_entry]);
                let mut out = Vec::new();
                if let Some(mut s) = none {
                    s.cur.state = Val::Const(CtState::Untracked);
                    out.push((s, None));
                }
                out.extend(has.map(|s| (s, None)));
                out
            }
            TargetExt::Log(_)
            | TargetExt::Nflog(_)
            | TargetExt::Ulog(_)
            | TargetExt::Trace(_)
            | TargetExt::Audit(_)
            | TargetExt::Checksum(_)
            | TargetExt::Tcpmss(_)
            | TargetExt::Set(_) => vec![(st, None)],
            TargetExt::Reject(_) => vec![(st, Some(End::Reject(here.clone())))],
            TargetExt::Dnat(d) => {
                let Some(to) = d.to.as_deref() else { return vec![(st, None)] };
                let addr = to.addrs.map_or(st.cur.dst, |a| AVal::Const(addr_num(a.first)));
                let port = to.ports.map_or(st.cur.dport, |p| Val::Const(p.lo));
                set_dnat(&mut st, addr, port);
                vec![(st, Some(End::Accept))]
            }
            TargetExt::Redirect(r) => {
                let Some(addr) = nat.redirect_to else { return vec![(st, Some(End::Drop(Some(here.clone()))))] };
                let port = r.ports.map_or(st.cur.dport, |p| Val::Const(p.lo));
                set_dnat(&mut st, AVal::Const(addr), port);
                vec![(st, Some(End::Accept))]
            }
            TargetExt::Snat(s) => {
                let Some(to) = s.to.as_deref() else { return vec![(st, None)] };
                let addr = to.addrs.map_or(st.cur.src, |a| AVal::Const(addr_num(a.first)));
                self.snat_ports(st, addr, to.ports.map(|p| (p.lo, p.hi)))
            }
            TargetExt::Masquerade(m) => {
                let Some(addr) = nat.masquerade_src else { return vec![(st, Some(End::Drop(Some(here.clone()))))] };
                self.snat_ports(st, addr, m.ports.map(|p| (p.lo, p.hi)))
            }
            TargetExt::Netmap(n) => {
                let Some(to) = n.to else { return vec![(st, None)] };
                let dst_side = matches!(hook, Hook::Prerouting | Hook::Output);
                let fields = if dst_side { Fields::DST } else { Fields::SRC };
                if !self.constant(&st, fields) {
                    return undecidable(st, "NETMAP over a range of addresses is not analysed".into());
                }
                let (p, _, _) = self.current_packet(&st);
                let (m, net) = (addr_num(to.netmask()), addr_num(to.network()));
                if dst_side {
                    let d = (addr_num(p.dst) & !m) | (net & m);
                    let port = st.cur.dport;
                    set_dnat(&mut st, AVal::Const(d), port);
                } else {
                    let s = (addr_num(p.src) & !m) | (net & m);
                    let port = st.cur.sport;
                    set_snat(&mut st, AVal::Const(s), port);
                }
                vec![(st, Some(End::Accept))]
            }
            TargetExt::Tproxy(tp) => {
                let addr = tp.addr.filter(|a| !a.is_unspecified()).map_or(st.cur.dst, |a| AVal::Const(addr_num(a)));
                let port = tp.port.filter(|p| *p != 0).map_or(st.cur.dport, Val::Const);
                let parts = self.socket_parts(addr, port);
                let mut out = Vec::new();
                for (mut s, sock) in self.partition(st, &parts) {
                    match sock {
                        Some(_) => {
                            if let Some((v, m)) = tp.mark {
                                s.cur.mark = compose(s.cur.mark, !m, v);
                            }
                            s.tproxy = Some((addr, port));
                            out.push((s, Some(End::Accept)));
                        }
                        None => out.push((s, Some(End::Drop(Some(here.clone()))))),
                    }
                }
                out
            }
            TargetExt::Opaque(o) => undecidable(st, format!("target `{}` is not modelled", o.name)),
        }
    }

    /// SNAT/MASQUERADE's port choice: the source port is kept when inside the range.
    fn snat_ports(&self, st: St, addr: AVal, range: Option<(u16, u16)>) -> Vec<(St, Option<End>)> {
        let Some((lo, hi)) = range else {
            let mut st = st;
            let port = st.cur.sport;
            set_snat(&mut st, addr, port);
            return vec![(st, Some(End::Accept))];
        };
        let inside = Test { sport: Some(Ranges::range(lo, hi)), ..Test::default() };
        let (keep, change) = self.split(st, &[inside]);
        let mut out = Vec::new();
        if let Some(mut s) = keep {
            let port = s.cur.sport;
            set_snat(&mut s, addr, port);
            out.push((s, Some(End::Accept)));
        }
        if let Some(mut s) = change {
            set_snat(&mut s, addr, Val::Const(lo));
            out.push((s, Some(End::Accept)));
        }
        out
    }
}

fn set_dnat(st: &mut St, addr: AVal, port: Val<u16>) {
    st.dnat = Some((addr, port));
    st.cur.dst = addr;
    st.cur.dport = port;
}

fn set_snat(st: &mut St, addr: AVal, port: Val<u16>) {
    st.snat = Some((addr, port));
    st.cur.src = addr;
    st.cur.sport = port;
}

/// A port: the input's (`port_in`) when kept, or the constant.
pub fn pick(v: Val<u16>, port_in: u16) -> u16 {
    region::pick(v, port_in)
}

/// `f` as `(x & k) ^ c`, when it is bitwise affine (checked on probes).
fn affine1(f: impl Fn(u32) -> u32) -> Option<(u32, u32)> {
    let c = f(0);
    let k = f(u32::MAX) ^ c;
    [0x5555_5555u32, 0xaaaa_aaaa, 0x0f0f_0f0f, 0x1234_5678].iter().all(|&p| f(p) == (p & k) ^ c).then_some((k, c))
}

type Affine2 = ((u32, u32, u32), (u32, u32, u32));

/// `f(a, b)` as `((a & ka) ^ (b & kb) ^ c, ...)` for both outputs, when bitwise affine.
fn affine2(f: impl Fn(u32, u32) -> (u32, u32)) -> Option<Affine2> {
    let (c0, c1) = f(0, 0);
    let (a0, a1) = f(u32::MAX, 0);
    let (b0, b1) = f(0, u32::MAX);
    let (ka0, kb0, ka1, kb1) = (a0 ^ c0, b0 ^ c0, a1 ^ c1, b1 ^ c1);
    let probes = [(0x5555_5555u32, 0xaaaa_aaaau32), (0xaaaa_aaaa, 0x5555_5555), (0x0f0f_0f0f, 0x3333_3333), (0x1234_5678, 0x9abc_def0), (u32::MAX, u32::MAX)];
    probes
        .iter()
        .all(|&(a, b)| {
            let (r0, r1) = f(a, b);
            r0 == (a & ka0) ^ (b & kb0) ^ c0 && r1 == (a & ka1) ^ (b & kb1) ^ c1
        })
        .then_some(((ka0, kb0, c0), (ka1, kb1, c1)))
}

/// `(v & k) ^ x` after `v = l`.
fn compose(l: Lin, k: u32, x: u32) -> Lin {
    Lin { keep: l.keep & k, xor: (l.xor & k) ^ x }
}

fn atoms<T: super::set::Int>(values: &[T], space: Ranges<T>) -> Vec<(Ranges<T>, T)> {
    let mut out: Vec<(Ranges<T>, T)> = values.iter().map(|v| (Ranges::point(*v), *v)).collect();
    let listed = Ranges::from_intervals(values.iter().map(|v| (*v, *v)));
    let other = space.minus(&listed);
    if let Some(m) = other.min() {
        out.push((other, m));
    }
    out
}

fn rule_ref(table: &Table, chain: ChainId, rule: usize) -> RuleRef {
    RuleRef { table: table.name, chain: table[chain].name.to_string(), rule: rule.saturating_add(1) as u32 }
}
