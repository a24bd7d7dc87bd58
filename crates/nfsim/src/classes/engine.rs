//! The all-packet domain of the stack (`crate::stack`) and of the `ipt_do_table` walk
//! (`crate::traverse`): a state is a region of input packets, and every question the stack, a
//! rule or a target asks splits the region into the packets that answer each way. Its own hooks
//! into the walk: dispatching runs of rules keyed on disjoint destinations by address
//! (kube-proxy's KUBE-SERVICES) and, for a diff, leaving packets that can no longer meet a
//! differing chain.

use std::net::IpAddr;

use crate::conntrack::{NatBinding, Original, conn_of};
use crate::hook::tables_at;
use crate::host::{Host, Socket};
use crate::matches::{Eval, EvalCtx};
use crate::packet::{CtState, Owner, Packet};
pub use crate::reason::NOT_ANALYSED;
use crate::reason::Reason;
use crate::ruleset::dispatch::Runs;
use crate::ruleset::{ChainId, Family, Hook, Rule, Ruleset, Table, TableName, Target};
use crate::stack::{self, Domain, Fin, Flow, Ledger, Loaded, Parts, Pred, Route, RouteQ, Routed};
use crate::trace::{RuleRef, StepKind, Verdict};
use crate::traverse::{Cursor, Enter, Options, Tested};

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
    pub reason: Option<Reason>,
    /// Probability, as the bits of an `f64` (exact equality of products of the same chances).
    pub probability: u64,
    /// Assumed outcomes of rules (chance or undecidable): rule and whether it matched.
    pub assumptions: Vec<(RuleRef, bool, String)>,
    /// The accepting socket's bound port, when it differs from the destination (TPROXY).
    pub listener_port: Option<Val<u16>>,
}

/// A fate without rule positions: verdict, place, DNAT, destination, SNAT, listener,
/// probability, whether a rule decided it, and which way each assumption went.
pub type FateMeaning = (Verdict, Option<Place>, Option<(AVal, Val<u16>)>, (AVal, Val<u16>), Option<(AVal, Val<u16>)>, Option<Val<u16>>, u64, bool, Vec<bool>);

impl Fate {
    /// What the fate means for its packets, rule positions aside.
    pub fn meaning(&self) -> FateMeaning {
        (
            self.verdict,
            self.place.clone(),
            self.dnat,
            self.dst,
            self.snat,
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
        self.reason.as_ref().is_some_and(Reason::not_analysed) || self.assumptions.iter().any(|(_, _, why)| why.contains(NOT_ANALYSED))
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
pub(crate) struct St {
    region: Region,
    cur: Cur,
    orig_src: AVal,
    in_iface: Option<String>,
    out_iface: Option<String>,
    dnat: Option<(AVal, Val<u16>)>,
    snat: Option<(AVal, Val<u16>)>,

    tos: u8,
    ttl: u8,
    /// The conntrack entry is confirmed (looped back on lo, as `NatBinding::confirmed`).
    confirmed: bool,
    /// TPROXY's socket, probability, assumptions.
    ledger: Ledger<AVal, Val<u16>>,
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

/// A route as the symbolic engine sees it: the preferred source is constant, or the
/// destination itself (local routes of the main lookup); the hop is the gateway (`None` on the link).
pub(crate) type RouteSym<'a> = Route<'a, AVal, Option<IpAddr>>;

/// What mangle OUTPUT compares to decide on a re-route (`simulate::RouteKey`), symbolically.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteKey {
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
pub(crate) struct Lane {
    chain: ChainId,
    run: u32,
    /// `u32::MAX`: the run is walked rule by rule.
    group: u32,
}

/// The engine: one rule set on one host, for one family.
pub(crate) struct Engine<'a> {
    ld: Loaded<'a>,
    owned: bool,
    space: Cube,
    leaves: Vec<Leaf>,
    forks: u32,
    /// Base-match tests and dispatch runs of every chain, per table (by chain id).
    base: Vec<(TableName, Vec<std::cell::OnceCell<ChainIndex>>)>,
    /// The routing partitions on the destination and on the source.
    routes: [Vec<(Test, Option<RouteSym<'a>>)>; 2],
    /// The socket partition of the input packets' own destinations.
    sockets: Vec<(Cube, Option<usize>)>,
    /// Branches per fork family (the packets of one family are the branches of the same input
    /// packets), capped as the concrete engine caps one packet's.
    branches: std::collections::HashMap<u32, usize>,
    /// True when a fork was refused by the cap.
    truncated: bool,
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
    runs: Runs,
    /// Each run's groups' addresses together.
    unions: Vec<Ranges<u128>>,
}

fn index_chain(rules: &[Rule], family: Family) -> ChainIndex {
    let runs = Runs::of(rules, family);
    let unions = runs.runs.iter().map(|r| Ranges::from_intervals(r.groups.iter().map(|g| (g.lo, g.hi)))).collect();
    ChainIndex { tests: rules.iter().map(|r| base_test(r, family)).collect(), runs, unions }
}

#[derive(Clone, Debug)]
struct BaseTest {
    /// `None` when the base match cannot be expressed (non-contiguous mask): concrete fallback.
    test: Option<Vec<Test>>,
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("host", &self.ld.host.name).field("family", &self.ld.family).finish()
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
            ld: Loaded { ruleset, host, opts, family, conntrack: crate::conntrack::conntrack_on(ruleset) },
            owned,
            space: full_cube(family),
            leaves: Vec::new(),
            forks: 0,
            base,
            routes: [Vec::new(), Vec::new()],
            sockets: Vec::new(),
            branches: std::collections::HashMap::new(),
            truncated: false,
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
            for &t in tables_at(hook, self.ld.opts.backend) {
                // The walks that may follow this one: later tables at this hook, then the hooks
                // the packet can still pass (a local packet comes back in on lo with nat skipped).
                let later_here = tables_at(hook, self.ld.opts.backend).iter().skip_while(|x| **x != t).skip(1).map(|x| (hook, *x, true));
                let later_hooks: Vec<(Hook, bool)> = match (local, hook) {
                    (true, Hook::Output) => vec![(Hook::Postrouting, true), (Hook::Prerouting, false), (Hook::Input, false)],
                    (true, Hook::Postrouting) => vec![(Hook::Prerouting, false), (Hook::Input, false)],
                    (true, Hook::Prerouting) => vec![(Hook::Input, false)],
                    (false, Hook::Prerouting) => vec![(Hook::Input, true), (Hook::Forward, true), (Hook::Postrouting, true)],
                    (false, Hook::Forward) => vec![(Hook::Postrouting, true)],
                    _ => Vec::new(),
                };
                let later = later_hooks.into_iter().flat_map(|(h, with_nat)| tables_at(h, self.ld.opts.backend).iter().map(move |x| (h, *x, with_nat)));
                let hot = later_here
                    .chain(later)
                    .filter(|(_, x, with_nat)| *with_nat || *x != TableName::Nat)
                    .any(|(h, x, _)| focus.hot(self.ld.ruleset, self.ld.family, x, h));
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
                let run = &ci.runs.runs[l.run as usize];
                let rules = &run.groups[l.group as usize].rules;
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

    fn route_parts(&self, dst: bool) -> Vec<(Test, Option<RouteSym<'a>>)> {
        self.routes[usize::from(!dst)].clone()
    }

    fn socket_parts(&self, addr: AVal, port: Val<u16>) -> Vec<(Cube, Option<usize>)> {
        if addr == AVal::Dst && port == Val::In { self.sockets.clone() } else { self.compute_socket_parts(addr, port) }
    }

    /// Pushes `start` through the stack; returns every leaf, and whether the branch cap cut some.
    pub(crate) fn run(mut self, start: Start) -> (Vec<Leaf>, bool) {
        let st = St {
            region: start.region,
            cur: Cur::INPUT,
            orig_src: AVal::Src,
            in_iface: start.in_iface.clone(),
            out_iface: None,
            dnat: None,
            snat: None,

            tos: 0,
            ttl: 64,
            confirmed: false,
            ledger: Ledger::default(),
            root: None,
            dirty: false,
        };
        if start.in_iface.is_some() {
            stack::arrive(&mut self, st, false)
        } else {
            stack::local_out(&mut self, st)
        }
        (self.leaves, self.truncated)
    }

    // ----- splitting -----

    /// Splits `st` by the union of disjoint `tests` on the current packet: (inside, outside).
    fn split_by(&self, st: St, tests: &[Test]) -> (Option<St>, Option<St>) {
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
            let (inside, outside) = self.split_by(s, std::slice::from_ref(t));
            if let Some(i) = inside {
                out.push((i, k.clone()));
            }
            rest = outside;
        }
        out
    }

    /// Splits `st` by a partition of the input packet space: one state per non-empty part.
    fn partition_input<K: Clone>(&self, st: St, parts: &[(Cube, K)]) -> Vec<(St, K)> {
        let mut out = Vec::new();
        let mut rest = Some(st);
        for (c, k) in parts {
            let Some(s) = rest.take() else { break };
            let (inside, outside) = self.split_input(s, std::slice::from_ref(c));
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
        let mut p = c.packet(self.ld.family);
        p.ct_state = c.state;
        p.ct_mark = st.cur.ctmark.at(i.mark);
        p.tos = st.tos;
        p.ttl = st.ttl;
        p.in_iface = st.in_iface.clone();
        p.out_iface = st.out_iface.clone();
        p.owner = self.owned.then(|| Owner { uid: i.uid, gid: i.gid, groups: Vec::new() });
        let orig = Original { src: num_addr(st.orig_src.at(&i), self.ld.family), dst: num_addr(i.dst, self.ld.family), sport: i.sport, dport: i.dport };
        let conc = |v: Option<(AVal, Val<u16>)>, port_in: u16| v.map(|(a, p)| (num_addr(a.at(&i), self.ld.family), pick(p, port_in)));
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

    /// After OUTPUT table `tname` (as `Domain::rerouted`): splits `st`, just out of OUTPUT table `tname`, into the packets the
    /// kernel routes again and those that keep their route.
    fn reroutes(&self, st: St, tname: TableName, before: &RouteKey) -> (Option<St>, Option<St>) {
        match tname {
            TableName::Mangle => {
                let now = RouteKey::of(&st, self.ld.family);
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

    // ----- routing and sockets as partitions -----

    /// The host's local addresses (`Host::is_local`).
    fn local_set(&self) -> Ranges<u128> {
        super::local_set(self.ld.host, self.ld.family)
    }

    /// Longest-prefix match over `routes` (ties: the later route, as `max_by_key`): the set of
    /// addresses each route wins.
    fn lpm(&self, routes: Vec<(ipnet::IpNet, RouteSym<'a>)>) -> Vec<(Ranges<u128>, RouteSym<'a>)> {
        let bits = addr_bits(self.ld.family);
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(routes[i].0.prefix_len()), std::cmp::Reverse(i)));
        let mut taken = Ranges::empty();
        let mut out = Vec::new();
        for i in order {
            let (net, r) = &routes[i];
            if net.addr().is_ipv4() != (self.ld.family == Family::V4) {
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

    fn route_of(&self, via: Option<IpAddr>, dev: &'a str, local: bool) -> RouteSym<'a> {
        let src = self.ld.host.primary_addr(dev, self.ld.family == Family::V4);
        RouteSym { local, dev, hop: via, src: src.map(|a| AVal::Const(addr_num(a))) }
    }

    /// The reverse-path lookup's partition of the source space: `Host::route` on the source, with
    /// the packet's mark under `src_valid_mark` and with mark 0 otherwise (`fib_validate_source`).
    fn compute_back_parts(&self) -> Vec<(Test, Option<RouteSym<'a>>)> {
        let parts = self.compute_route_parts(false);
        if self.ld.host.sysctls.src_valid_mark {
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
    fn compute_route_parts(&self, dst: bool) -> Vec<(Test, Option<RouteSym<'a>>)> {
        let mk = |addrs: Ranges<u128>, mark: Option<Bits>| {
            let mut t = Test { mark, ..Test::default() };
            if dst {
                t.dst = Some(addrs);
            } else {
                t.src = Some(addrs);
            }
            t
        };
        let space = Ranges::addr_space(addr_bits(self.ld.family));
        let mut parts = Vec::new();
        // Packets not yet decided: a union of (addresses, marks) pairs.
        let mut rest: Vec<(Ranges<u128>, Bits)> = vec![(space.clone(), Bits::full())];
        for rule in &self.ld.host.policy {
            // As `Host::route`: `mark & mask == fwmark`, never true with bits of the fwmark
            // outside the mask.
            let Some(table) = self.ld.host.tables.get(&rule.table).filter(|_| rule.fwmark & !rule.mask == 0) else { continue };
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
        let mut main: Vec<(ipnet::IpNet, RouteSym<'a>)> = Vec::new();
        for i in self.ld.host.ifaces() {
            for a in &i.addrs {
                main.push((a.trunc(), self.route_of(None, &i.name, false)));
            }
        }
        for r in &self.ld.host.routes {
            main.push((r.dst, self.route_of(r.via, &r.dev, r.local)));
        }
        if let Some(gw) = self.ld.host.gateway
            && let Some(dev) = self.ld.host.ifaces().find(|i| i.addrs.iter().any(|a| a.contains(&gw)))
        {
            let any = if gw.is_ipv4() { IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) };
            if let Ok(net) = ipnet::IpNet::new(any, 0) {
                main.push((net, self.route_of(Some(gw), &dev.name, false)));
            }
        }
        let wins = self.lpm(main);
        // The local routes' preferred sources (`Host::local_src`): the destination itself, except
        // in IPv4 for 127.0.0.0/8 (127.0.0.1) and secondary addresses (their subnet's primary).
        let local_route = |src: AVal| RouteSym { local: true, dev: "lo", hop: None, src: Some(src) };
        let mut locals: Vec<(Ranges<u128>, RouteSym<'a>)> = Vec::new();
        let mut plain = local.clone();
        if dst && self.ld.family == Family::V4 {
            let lo = loopback_set(self.ld.family);
            plain = plain.minus(&lo);
            locals.push((lo, local_route(self.lift(std::net::Ipv4Addr::LOCALHOST.into()))));
            for a in self.ld.host.ifaces().flat_map(|i| &i.addrs).map(ipnet::IpNet::addr).filter(IpAddr::is_ipv4) {
                let s = self.ld.host.local_src(a);
                if s != a && plain.contains(addr_num(a)) {
                    plain = plain.minus(&Ranges::point(addr_num(a)));
                    locals.push((Ranges::point(addr_num(a)), local_route(self.lift(s))));
                }
            }
        }
        locals.push((plain, local_route(if dst { AVal::Dst } else { AVal::Src })));
        for (a, m) in rest {
            for (set, route) in &locals {
                let l = a.intersect(set);
                if !l.is_empty() {
                    parts.push((mk(l, Some(m.clone())), Some(route.clone())));
                }
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

    /// `Host::socket_for` as a partition of the input packets' (protocol, address, port) space;
    /// `addr`/`port` say which address and port are looked up, in terms of the input packet (the
    /// current destination, or the one TPROXY saw before a later DNAT).
    fn compute_socket_parts(&self, addr: AVal, port: Val<u16>) -> Vec<(Cube, Option<usize>)> {
        let socks: &[Socket] = &self.ld.host.sockets;
        let space = Ranges::addr_space(addr_bits(self.ld.family));
        let mut protos: Vec<u8> = socks.iter().map(|s| s.proto).collect();
        protos.sort_unstable();
        protos.dedup();
        let mut ports: Vec<u16> = socks.iter().map(|s| s.port).collect();
        ports.sort_unstable();
        ports.dedup();
        let mut addrs: Vec<u128> = socks.iter().filter(|s| s.addr.is_ipv4() == (self.ld.family == Family::V4)).map(|s| addr_num(s.addr)).collect();
        addrs.sort_unstable();
        addrs.dedup();
        // Atoms: each listed value, and "any other" (represented by a value outside the list).
        let proto_atoms: Vec<(Ranges<u8>, u8)> = atoms(&protos, Ranges::full());
        let port_atoms: Vec<(Ranges<u16>, u16)> = atoms(&ports, Ranges::full());
        let addr_atoms: Vec<(Ranges<u128>, u128)> = atoms(&addrs, space);
        let mut parts: Vec<(Cube, Option<usize>)> = Vec::new();
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
                    let found = self.ld.host.socket_for(*p, num_addr(a, self.ld.family), q).and_then(|s| socks.iter().position(|x| std::ptr::eq(x, s)));
                    let mut c = Cube { proto: pset.clone(), ..self.space.clone() };
                    if port == Val::In {
                        c.dport = qset.clone();
                    }
                    match addr {
                        AVal::Const(_) => {}
                        AVal::Src => c.src = aset.clone(),
                        AVal::Dst => c.dst = aset.clone(),
                    }
                    parts.push((c, found));
                }
            }
        }
        parts
    }

    // ----- the walk (traverse.rs) -----

    /// The chain's base tests and dispatch runs, computed on its first visit.
    fn chain_index(&self, table: &Table, chain: ChainId) -> &ChainIndex {
        let t = self.base.iter().find(|(n, _)| *n == table.name).map(|(_, v)| v).expect("tables are indexed at creation");
        t[chain.0 as usize].get_or_init(|| index_chain(&table[chain].rules, self.ld.family))
    }

    fn base_tests(&self, table: &Table, chain: ChainId, idx: usize) -> &BaseTest {
        &self.chain_index(table, chain).tests[idx]
    }

    /// At rule `idx` of a dispatch run: the states to continue with, each at its next rule and
    /// group (the group's next rule, or the end of the run for packets in no group).
    fn dispatch(&self, table: &Table, chain: ChainId, idx: usize, lane: Option<Lane>, mut st: St) -> Vec<(St, usize, Option<Lane>)> {
        let ci = self.chain_index(table, chain);
        let (run_id, run) = ci.runs.run_at(idx).expect("dispatch is called inside a run");
        let next_in = |g: usize| -> (usize, Option<Lane>) {
            match run.next_in(g, idx) {
                Some(r) => (r, Some(Lane { chain, run: run_id, group: g as u32 })),
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
        let find = |a: u128| run.groups.partition_point(|g| g.hi < a);
        match st.cur.dst {
            AVal::Const(a) => match run.group_of(a) {
                Some(g) => {
                    let (i, lane) = next_in(g);
                    vec![(st, i, lane)]
                }
                None => vec![(st, run.end, None)],
            },
            AVal::Src => vec![(st, idx, Some(Lane { chain, run: run_id, group: u32::MAX }))],
            AVal::Dst => {
                let region = std::mem::take(&mut st.region);
                let mut pieces: std::collections::BTreeMap<usize, Region> = std::collections::BTreeMap::new();
                let mut rest: Region = Vec::new();
                for c in region {
                    for &(lo, hi) in c.dst.intervals() {
                        let mut g = find(lo);
                        while g < run.groups.len() && run.groups[g].lo <= hi {
                            let mut p = c.clone();
                            p.dst = c.dst.intersect(&Ranges::range(run.groups[g].lo, run.groups[g].hi));
                            pieces.entry(g).or_default().push(p);
                            g += 1;
                        }
                    }
                    let mut r = c;
                    r.dst = r.dst.minus(&ci.unions[run_id as usize]);
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
            host: self.ld.host,
            hook,
            table: table.name,
            family: self.ld.family,
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
                        let conn = (self.ld.conntrack && !matches!(p.ct_state, CtState::Untracked | CtState::Invalid)).then(|| conn_of(&orig, &p, &nat));
                        let ecx = EvalCtx { host: self.ld.host, hook, table: table.name, family: self.ld.family, conn: conn.as_ref() };
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

    /// Gives `st` a fork family of its own if it has none yet.
    fn new_root(&mut self, st: &mut St) {
        if st.root.is_none() {
            self.forks += 1;
            st.root = Some(self.forks);
        }
    }

    /// The end of a branch: its leaf.
    fn leaf(&mut self, st: St, verdict: Verdict, place: Option<Place>, by: Option<RuleRef>, reason: Option<Reason>) {
        let listener_port = match (&place, st.ledger.tproxy) {
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
            probability: st.ledger.probability.to_bits(),
            assumptions: st.ledger.assumptions.iter().map(|a| (a.rule.clone(), a.matched, a.reason.to_string())).collect(),
            listener_port,
        };
        self.leaves.push(Leaf { region: st.region, fate, root: st.root, dirty: st.dirty });
    }

    /// The test of a question the stack asks, on the current packet (disjoint tests, united).
    fn pred_tests(&self, p: Pred) -> Vec<Test> {
        let lo = || loopback_set(self.ld.family);
        let nonlocal = || Ranges::addr_space(addr_bits(self.ld.family)).minus(&self.local_set());
        let tcp = || Some(Ranges::point(6));
        let one = |t: Test| vec![t];
        match p {
            Pred::SrcUnspecified => one(Test { src: Some(Ranges::point(0)), ..Test::default() }),
            Pred::SrcLocalOrUnspecified => one(Test { src: Some(self.local_set().union(&Ranges::point(0))), ..Test::default() }),
            Pred::SrcLoopback => one(Test { src: Some(lo()), ..Test::default() }),
            Pred::DstLoopback => one(Test { dst: Some(lo()), ..Test::default() }),
            Pred::EitherLoopback => {
                let other = Ranges::addr_space(addr_bits(self.ld.family)).minus(&lo());
                vec![Test { dst: Some(lo()), ..Test::default() }, Test { src: Some(lo()), dst: Some(other), ..Test::default() }]
            }
            Pred::HasPorts => one(Test { proto: Some(port_protos()), ..Test::default() }),
            Pred::Tcp => one(Test { proto: tcp(), ..Test::default() }),
            Pred::TcpToNonLocal => one(Test { proto: tcp(), dst: Some(nonlocal()), ..Test::default() }),
            Pred::TcpLoopbackFromNonLocal => one(Test { proto: tcp(), dst: Some(lo()), src: Some(nonlocal()), ..Test::default() }),
            Pred::New => one(Test { state: Some(state_bit(CtState::New)), ..Test::default() }),
            Pred::Tracked => one(Test { state: Some(tracked()), ..Test::default() }),
            Pred::NoEntry => one(Test { state: Some(state_bit(CtState::Invalid)), ..Test::default() }),
            Pred::SportIn(lo, hi) => one(Test { sport: Some(Ranges::range(lo, hi)), ..Test::default() }),
        }
    }
}

impl St {
    /// Takes the state out of `st`, leaving an empty one (a state about no packets) in its place.
    fn take(st: &mut St) -> St {
        let hollow = St {
            region: Vec::new(),
            cur: Cur::INPUT,
            orig_src: AVal::Src,
            in_iface: None,
            out_iface: None,
            dnat: None,
            snat: None,
            tos: 0,
            ttl: 0,
            confirmed: false,
            ledger: Ledger::default(),
            root: None,
            dirty: false,
        };
        std::mem::replace(st, hollow)
    }
}

impl Flow for St {
    type Addr = AVal;
    type Port = Val<u16>;
    type Ct = Val<CtState>;

    fn in_iface(&self) -> Option<&str> {
        self.in_iface.as_deref()
    }
    fn set_out_iface(&mut self, dev: Option<&str>) {
        self.out_iface = dev.map(str::to_string);
    }
    fn loop_back(&mut self) {
        self.in_iface = Some("lo".into());
        self.out_iface = None;
        self.confirmed = true;
    }
    fn ttl(&self) -> u8 {
        self.ttl
    }
    fn ttl_mut(&mut self) -> &mut u8 {
        &mut self.ttl
    }
    fn tos_mut(&mut self) -> &mut u8 {
        &mut self.tos
    }
    fn src(&self) -> AVal {
        self.cur.src
    }
    fn sport(&self) -> Val<u16> {
        self.cur.sport
    }
    fn dst(&self) -> AVal {
        self.cur.dst
    }
    fn dport(&self) -> Val<u16> {
        self.cur.dport
    }
    fn bind_src(&mut self, a: AVal) {
        self.cur.src = a;
        self.orig_src = a;
    }
    fn ledger(&self) -> &Ledger<AVal, Val<u16>> {
        &self.ledger
    }
    fn ledger_mut(&mut self) -> &mut Ledger<AVal, Val<u16>> {
        &mut self.ledger
    }
    fn dnat(&mut self, addr: AVal, port: Val<u16>) {
        self.dnat = Some((addr, port));
        self.cur.dst = addr;
        self.cur.dport = port;
    }
    fn snat(&mut self, addr: AVal, port: Val<u16>) {
        self.snat = Some((addr, port));
        self.cur.src = addr;
        self.cur.sport = port;
    }
    fn hide_ct(&mut self) -> Val<CtState> {
        std::mem::replace(&mut self.cur.state, Val::Const(CtState::Invalid))
    }
    fn restore_ct(&mut self, real: Val<CtState>) {
        if self.cur.state != Val::Const(CtState::Untracked) {
            self.cur.state = real;
        }
    }
    fn untrack(&mut self) {
        self.cur.state = Val::Const(CtState::Untracked);
    }
}

impl<'a> Domain<'a> for Engine<'a> {
    type State = St;
    type Lane = Option<Lane>;
    type Hop = Option<IpAddr>;
    type Key = RouteKey;

    fn loaded(&self) -> &Loaded<'a> {
        &self.ld
    }
    fn lift(&self, a: IpAddr) -> AVal {
        AVal::Const(addr_num(a))
    }

    fn split(&mut self, st: St, p: Pred) -> (Option<St>, Option<St>) {
        let tests = self.pred_tests(p);
        self.split_by(st, &tests)
    }

    fn route(&mut self, st: St, q: RouteQ<'_>) -> Routed<'a, St, Option<IpAddr>> {
        match q {
            RouteQ::Dst => {
                let parts = self.route_parts(true);
                self.partition(st, &parts).into()
            }
            RouteQ::Back => {
                let parts = self.route_parts(false);
                self.partition(st, &parts).into()
            }
            RouteQ::LoopbackOn(dev) => {
                // The packets here have the destination ::1 (`Pred::DstLoopback` for IPv6).
                let r = self.ld.host.route_strict(std::net::Ipv6Addr::LOCALHOST.into(), dev);
                Parts::One(Some((st, r.map(|r| self.route_of(Some(r.next_hop).filter(|h| !h.is_loopback()), r.dev, r.local)))))
            }
        }
    }

    fn socket(&mut self, st: St, (addr, port): (AVal, Val<u16>)) -> Parts<(St, Option<usize>)> {
        let parts = self.socket_parts(addr, port);
        self.partition_input(st, &parts).into()
    }

    fn route_key(&self, st: &St) -> RouteKey {
        RouteKey::of(st, self.ld.family)
    }

    fn rerouted(&mut self, st: St, after: TableName, before: &RouteKey) -> (Option<St>, Option<St>) {
        self.reroutes(st, after, before)
    }

    fn finish(&mut self, st: St, fin: Fin<RouteSym<'a>>) {
        match fin {
            Fin::Local(sock) => {
                let process = sock.and_then(|i| Some(self.ld.host.sockets[i].process.clone()).filter(|p| !p.is_empty()));
                self.leaf(st, Verdict::Accept, Some(Place::Local { process }), None, None);
            }
            Fin::Egress(r) => {
                let iface = st.out_iface.clone().unwrap_or_default();
                self.leaf(st, Verdict::Accept, Some(Place::Egress { iface, gateway: r.hop }), None, None);
            }
            Fin::Stop(verdict, by, reason) => self.leaf(st, verdict, None, by, Some(reason)),
        }
    }

    fn step_budget(&self) -> usize {
        10_000_000
    }

    /// A diff's shortcut at a chain's start (packets that can no longer meet a difference are
    /// left), and the dispatch of runs of rules keyed on disjoint destinations.
    fn enter(&mut self, table: &'a Table, hook: Hook, cur: &Cursor<Option<Lane>>, st: &mut St) -> Enter<St, Option<Lane>> {
        let chain = cur.chain;
        if cur.rule == 0 && self.focus.is_some() {
            if self.focus.as_ref().is_some_and(|(f, _)| f.differs(table.name, chain)) {
                st.dirty = true;
            } else if self.clean_for_good(table, hook, chain, &cur.stack, st) {
                return Enter::Gone;
            }
        }
        let (mut idx, mut lane) = (cur.rule, cur.lane.filter(|l| l.chain == chain));
        loop {
            if self.chain_index(table, chain).runs.run_at(idx).is_none() {
                return Enter::At(idx, lane);
            }
            let mut next = self.dispatch(table, chain, idx, lane, St::take(st));
            if self.focus.is_some() {
                next.retain(|(s, i, l)| !self.clean_in_run(table, hook, chain, *i, *l, &cur.stack, s));
            }
            if next.len() != 1 {
                return if next.is_empty() { Enter::Gone } else { Enter::Split(next) };
            }
            let Some((s, i, l)) = next.pop() else { return Enter::Gone };
            *st = s;
            if i == idx {
                return Enter::At(i, l);
            }
            (idx, lane) = (i, l);
        }
    }

    fn test_rule(&mut self, table: &'a Table, hook: Hook, cur: &Cursor<Option<Lane>>, rule: &'a Rule, st: &mut St) -> Tested<St> {
        let (tests, extra) = self.rule_cond(table, cur.chain, cur.rule, rule, hook, st);
        if extra == Eval::NoMatch || tests.is_empty() {
            return Tested::Miss;
        }
        match self.split_by(St::take(st), &tests) {
            (Some(inside), outside) => {
                *st = inside;
                match outside {
                    None => Tested::Hit(extra),
                    Some(o) => Tested::Both(o, extra),
                }
            }
            (None, Some(outside)) => {
                *st = outside;
                Tested::Miss
            }
            (None, None) => Tested::Gone,
        }
    }

    fn fork(&mut self, st: &mut St) -> bool {
        self.new_root(st);
        let n = self.branches.entry(st.root.expect("a root was just given")).or_insert(1);
        if *n >= self.ld.opts.max_branches {
            self.truncated = true;
            return false;
        }
        *n += 1;
        true
    }

    fn record(&self, _: &mut St, _: &Table, _: Hook, _: ChainId, _: StepKind, _: u32) {}

    fn lift_port(&self, p: u16) -> Val<u16> {
        Val::Const(p)
    }
    fn map_mark(&self, st: &mut St, f: impl Fn(u32) -> u32) -> Result<(), String> {
        let (k, x) = affine1(f).ok_or_else(|| format!("a MARK that is not bitwise {NOT_ANALYSED} over a range of marks"))?;
        st.cur.mark = compose(st.cur.mark, k, x);
        Ok(())
    }
    fn map_marks(&self, st: &mut St, f: impl Fn(u32, u32) -> (u32, u32)) -> Result<(), String> {
        let ((ka, kb, xa), (la, lb, ya)) = affine2(f).ok_or_else(|| format!("CONNMARK with a shift {NOT_ANALYSED} over a range of marks"))?;
        let (m, ct) = (st.cur.mark, st.cur.ctmark);
        st.cur.mark = Lin { keep: (m.keep & ka) ^ (ct.keep & kb), xor: (m.xor & ka) ^ (ct.xor & kb) ^ xa };
        st.cur.ctmark = Lin { keep: (m.keep & la) ^ (ct.keep & lb), xor: (m.xor & la) ^ (ct.xor & lb) ^ ya };
        Ok(())
    }
    fn one_addr(&self, st: &St, dst: bool) -> Option<IpAddr> {
        if !self.constant(st, if dst { Fields::DST } else { Fields::SRC }) {
            return None;
        }
        let (p, _, _) = self.current_packet(st);
        Some(if dst { p.dst } else { p.src })
    }
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
