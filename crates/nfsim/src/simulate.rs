//! A packet's path through one host's network stack (`ip_output`, `ip_rcv`, `ip_forward`,
//! `ip_local_deliver`) for one packet: the stack of `stack` and the walk of
//! `traverse` over the domain where every question has one answer and every step is
//! recorded in the kernel's TRACE vocabulary.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::conntrack::{NatBinding, Original, conn_of, conntrack_on};
use crate::host::Host;
use crate::matches::eval::Conn;
use crate::matches::{Eval, EvalCtx};
use crate::packet::{CtState, Owner, Packet};
use crate::reason::Reason;
use crate::ruleset::dispatch::{Index, MIN_RUN, addr_key};
use crate::ruleset::{ChainId, Hook, Rule, Ruleset, Table, TableName};
use crate::stack::{self, Domain, Fin, Flow, Ledger, Loaded, Parts, Pred, Route, RouteQ, Routed};
use crate::trace::{Delivered, RuleRef, Step, StepKind, Verdict};
use crate::traverse::{Assumption, Cursor, Enter, Options, Tested, base_fails};

/// Where the packet comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Sent by a local process (its socket's owner, if known).
    Local(Option<Owner>),
    /// Arriving on an interface.
    Iface(String),
}

/// One possible fate of the packet (several when `statistic` or undecidable rules fork the walk).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Branch {
    /// The final verdict.
    pub verdict: Verdict,
    /// Every traced step, in order.
    pub trace: Vec<Step>,
    /// The packet at the end.
    pub packet: Packet,
    /// Where it went (`None` when dropped or rejected).
    pub delivered: Option<Delivered>,
    /// The rule that dropped, rejected or queued it (`None` for a policy or the stack).
    pub by: Option<RuleRef>,
    /// Why the packet did not arrive, when not by a rule (policy, no route, no listener, ...).
    pub reason: Option<Reason>,
    /// The destination before NAT (what `SO_ORIGINAL_DST` returns to the accepting socket).
    pub original_dst: Option<(IpAddr, u16)>,
    /// The source before NAT, when SNAT, MASQUERADE or NETMAP rewrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_src: Option<(IpAddr, u16)>,
    /// Probability of this branch.
    pub probability: f64,
    /// Rules whose outcome was assumed (chance or undecidable).
    pub assumptions: Vec<Assumption>,
    /// True when this branch rests on an assumption about an undecidable rule.
    pub undecidable: bool,
    /// The accepting socket's bound port (differs from the packet's port after TPROXY).
    pub listener_port: Option<u16>,
}

/// The result of simulating one packet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Simulation {
    /// All branches, in a deterministic order.
    pub branches: Vec<Branch>,
    /// True when more branches existed than `Options::max_branches` allows; the rest were cut.
    pub truncated: bool,
}

impl Simulation {
    /// The only branch, when the outcome is certain.
    pub fn single(&self) -> Option<&Branch> {
        match self.branches.as_slice() {
            [b] => Some(b),
            _ => None,
        }
    }
}

/// A rule set loaded on a host, ready to simulate packets (what is derived from the rules once,
/// such as whether conntrack is on, is computed here and not per packet).
#[derive(Debug)]
pub struct Simulator<'a> {
    ruleset: &'a Ruleset,
    host: &'a Host,
    opts: Options,
    conntrack: bool,
    /// The chains' dispatch runs (`None`: walk every rule, for tests that compare the two).
    index: Option<Index>,
    /// The names traces and rule references share: the host's, and each chain's once used (per
    /// table of the rule set, per chain).
    host_name: Arc<str>,
    /// Each table's first slot in `chain_names`.
    name_base: Vec<usize>,
    chain_names: Vec<OnceLock<Arc<str>>>,
}

impl<'a> Simulator<'a> {
    /// Loads `ruleset` on `host`.
    pub fn new(ruleset: &'a Ruleset, host: &'a Host, opts: Options) -> Simulator<'a> {
        Simulator {
            ruleset,
            host,
            opts,
            conntrack: conntrack_on(ruleset),
            index: Some(Index::of(ruleset)),
            host_name: host.name.as_str().into(),
            name_base: ruleset.tables.iter().scan(0, |n, t| Some(std::mem::replace(n, *n + t.chains().len()))).collect(),
            chain_names: std::iter::repeat_with(OnceLock::new).take(ruleset.tables.iter().map(|t| t.chains().len()).sum()).collect(),
        }
    }

    /// Loads `ruleset` on `host` without dispatch runs: every rule is tested in turn.
    #[cfg(test)]
    pub(crate) fn linear(ruleset: &'a Ruleset, host: &'a Host, opts: Options) -> Simulator<'a> {
        Simulator { index: None, ..Simulator::new(ruleset, host, opts) }
    }

    /// Simulates `pkt` coming from `origin`.
    pub fn run(&self, mut pkt: Packet, origin: &Origin) -> Simulation {
        let family = pkt.family();
        let ld = Loaded { ruleset: self.ruleset, host: self.host, opts: &self.opts, family, conntrack: self.conntrack };
        let mut sim = Sim { ld, loaded: self, out: Vec::new(), truncated: false, branches: 1 };
        match origin {
            Origin::Local(owner) => {
                pkt.owner = owner.clone();
                pkt.in_iface = None;
                stack::local_out(&mut sim, Line::new(pkt));
            }
            Origin::Iface(iface) => {
                pkt.owner = None;
                pkt.in_iface = Some(iface.clone());
                pkt.out_iface = None;
                stack::arrive(&mut sim, Line::new(pkt), false);
            }
        }
        Simulation { branches: sim.out, truncated: sim.truncated }
    }
}

/// Simulates `pkt` from `origin` on `host` with `ruleset` (see [`Simulator`] for many packets).
pub fn simulate(ruleset: &Ruleset, host: &Host, pkt: Packet, origin: &Origin, opts: &Options) -> Simulation {
    Simulator::new(ruleset, host, opts.clone()).run(pkt, origin)
}

/// A branch of the simulation, boxed: the stack and the walk pass states by value, and a box
/// moves as a pointer.
pub(crate) type State = Box<Line>;

/// One line of evolution of a packet: what it looks like now and what happened to it.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    /// The packet as it is now.
    pkt: Packet,
    /// The packet as first seen.
    orig: Original,
    /// Steps so far.
    steps: Vec<Step>,
    /// NAT set up for the connection.
    nat: NatBinding,
    /// TPROXY's socket, probability, assumptions.
    ledger: Ledger<IpAddr, u16>,
    /// The conntrack entry the matches see, once computed (cleared when NAT or the state change).
    conn: Option<Conn>,
}

impl Line {
    fn new(pkt: Packet) -> State {
        // A trace through a host is some ten steps; room for them up front.
        Box::new(Line { orig: Original::of(&pkt), pkt, steps: Vec::with_capacity(16), nat: NatBinding::default(), ledger: Ledger::default(), conn: None })
    }
}

impl Flow for Box<Line> {
    type Addr = IpAddr;
    type Port = u16;
    type Ct = CtState;

    fn in_iface(&self) -> Option<&str> {
        self.pkt.in_iface.as_deref()
    }
    fn set_out_iface(&mut self, dev: Option<&str>) {
        match (&mut self.pkt.out_iface, dev) {
            (Some(old), Some(new)) if old == new => {}
            // The old name's buffer takes the new one.
            (Some(old), Some(new)) => new.clone_into(old),
            (slot, dev) => *slot = dev.map(str::to_string),
        }
    }
    fn loop_back(&mut self) {
        self.conn = None;
        // In on lo, out on nothing: the name's buffer is reused.
        let mut name = self.pkt.in_iface.take().or_else(|| self.pkt.out_iface.take()).unwrap_or_default();
        "lo".clone_into(&mut name);
        self.pkt.in_iface = Some(name);
        self.pkt.out_iface = None;
        self.nat.confirmed = true;
    }
    fn ttl(&self) -> u8 {
        self.pkt.ttl
    }
    fn ttl_mut(&mut self) -> &mut u8 {
        &mut self.pkt.ttl
    }
    fn tos_mut(&mut self) -> &mut u8 {
        &mut self.pkt.tos
    }
    fn src(&self) -> IpAddr {
        self.pkt.src
    }
    fn sport(&self) -> u16 {
        self.pkt.sport
    }
    fn dst(&self) -> IpAddr {
        self.pkt.dst
    }
    fn dport(&self) -> u16 {
        self.pkt.dport
    }
    fn bind_src(&mut self, a: IpAddr) {
        self.conn = None;
        self.pkt.src = a;
        self.orig.src = a;
    }
    fn ledger(&self) -> &Ledger<IpAddr, u16> {
        &self.ledger
    }
    fn ledger_mut(&mut self) -> &mut Ledger<IpAddr, u16> {
        &mut self.ledger
    }
    fn dnat(&mut self, addr: IpAddr, port: u16) {
        self.conn = None;
        self.nat.dnat = Some((addr, port));
        self.pkt.dst = addr;
        self.pkt.dport = port;
    }
    fn snat(&mut self, addr: IpAddr, port: u16) {
        self.conn = None;
        self.nat.snat = Some((addr, port));
        self.pkt.src = addr;
        self.pkt.sport = port;
    }
    fn hide_ct(&mut self) -> CtState {
        self.conn = None;
        std::mem::replace(&mut self.pkt.ct_state, CtState::Invalid)
    }
    fn restore_ct(&mut self, real: CtState) {
        self.conn = None;
        if self.pkt.ct_state != CtState::Untracked {
            self.pkt.ct_state = real;
        }
    }
    fn untrack(&mut self) {
        self.conn = None;
        self.pkt.ct_state = CtState::Untracked;
    }
    fn note_range(&mut self) {
        self.nat.note = Some("the kernel picks the address and port within the DNAT range; the first is shown".into());
    }
}

/// What mangle OUTPUT compares to decide whether to route the packet again (`ipt_mangle_out`,
/// `ip6t_mangle_out`): addresses, mark, TOS (the traffic class, within IPv6's first word) and,
/// for IPv6 only, the hop limit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RouteKey {
    src: IpAddr,
    dst: IpAddr,
    mark: u32,
    tos: u8,
    hop_limit: Option<u8>,
}

impl RouteKey {
    fn of(pkt: &Packet) -> RouteKey {
        RouteKey { src: pkt.src, dst: pkt.dst, mark: pkt.mark, tos: pkt.tos, hop_limit: pkt.dst.is_ipv6().then_some(pkt.ttl) }
    }
}

/// The one-packet domain: a simulation in progress.
struct Sim<'a> {
    ld: Loaded<'a>,
    /// What the simulator prepared once: dispatch runs and shared names.
    loaded: &'a Simulator<'a>,
    out: Vec<Branch>,
    truncated: bool,
    /// Branches of the packet so far (forks taken plus one).
    branches: usize,
}

impl Sim<'_> {
    /// The number of `table` in the rule set.
    fn table_number(&self, table: &Table) -> Option<usize> {
        self.ld.ruleset.tables.iter().position(|t| std::ptr::eq(t, table))
    }
}

impl<'a> Domain<'a> for Sim<'a> {
    type State = State;
    type Lane = ();
    type Hop = IpAddr;
    type Key = RouteKey;

    fn loaded(&self) -> &Loaded<'a> {
        &self.ld
    }
    fn lift(&self, a: IpAddr) -> IpAddr {
        a
    }

    fn split(&mut self, st: State, p: Pred) -> (Option<State>, Option<State>) {
        let pkt = &st.pkt;
        let yes = match p {
            Pred::SrcUnspecified => pkt.src.is_unspecified(),
            Pred::SrcLocalOrUnspecified => pkt.src.is_unspecified() || self.ld.host.is_local(pkt.src),
            Pred::SrcLoopback => pkt.src.is_loopback(),
            Pred::DstLoopback => pkt.dst.is_loopback(),
            Pred::EitherLoopback => pkt.src.is_loopback() || pkt.dst.is_loopback(),
            Pred::HasPorts => pkt.has_ports(),
            Pred::Tcp => pkt.proto == 6,
            Pred::TcpToNonLocal => pkt.proto == 6 && !self.ld.host.is_local(pkt.dst),
            Pred::TcpLoopbackFromNonLocal => pkt.proto == 6 && pkt.dst.is_loopback() && !self.ld.host.is_local(pkt.src),
            Pred::New => pkt.ct_state == CtState::New,
            Pred::Tracked => crate::matches::conntrack::state_bit(pkt.ct_state).1,
            Pred::NoEntry => pkt.ct_state == CtState::Invalid,
            Pred::SportIn(lo, hi) => (lo..=hi).contains(&pkt.sport),
        };
        if yes { (Some(st), None) } else { (None, Some(st)) }
    }

    fn route(&mut self, st: State, q: RouteQ<'_>) -> Routed<'a, State, IpAddr> {
        let r = match q {
            RouteQ::Dst => self.ld.host.route(st.pkt.dst, st.pkt.mark),
            // `fib_validate_source`: the packet's mark only under `src_valid_mark`.
            RouteQ::Back => self.ld.host.route(st.pkt.src, if self.ld.host.sysctls.src_valid_mark { st.pkt.mark } else { 0 }),
            RouteQ::LoopbackOn(dev) => self.ld.host.route_strict(st.pkt.dst, dev),
        };
        Parts::One(Some((st, r.map(|r| Route { local: r.local, dev: r.dev, src: r.src, hop: r.next_hop }))))
    }

    fn socket(&mut self, st: State, (addr, port): (IpAddr, u16)) -> Parts<(State, Option<usize>)> {
        let sock = self.ld.host.socket_for(st.pkt.proto, addr, port).and_then(|s| self.ld.host.sockets.iter().position(|x| std::ptr::eq(x, s)));
        Parts::One(Some((st, sock)))
    }

    fn route_key(&self, st: &State) -> RouteKey {
        RouteKey::of(&st.pkt)
    }

    /// After mangle when the mark, TOS, source or destination changed in it (and for IPv6 the
    /// hop limit; `ipt_mangle_out`, the iptables-nft `type route` chain), after nat when the
    /// connection's destination address was rewritten (`nf_nat_ipv4_local_fn`).
    fn rerouted(&mut self, st: State, after: TableName, before: &RouteKey) -> (Option<State>, Option<State>) {
        let again = match after {
            TableName::Mangle => RouteKey::of(&st.pkt) != *before,
            TableName::Nat => st.nat.dnat.is_some_and(|(addr, _)| addr != st.orig.dst),
            _ => false,
        };
        if again { (Some(st), None) } else { (None, Some(st)) }
    }

    fn finish(&mut self, st: State, fin: Fin<Route<'a, IpAddr, IpAddr>>) {
        let (verdict, delivered, by, reason) = match fin {
            Fin::Local(None) => {
                let addr = st.ledger.tproxy.map_or(st.pkt.dst, |(a, _)| a);
                (Verdict::Accept, Some(Delivered::Local { addr, port: 0, process: None }), None, None)
            }
            Fin::Local(Some(i)) => {
                let process = Some(self.ld.host.sockets[i].process.clone()).filter(|p| !p.is_empty());
                // The accepted socket's local address is the packet's destination, also when
                // TPROXY handed it to a socket bound elsewhere.
                (Verdict::Accept, Some(Delivered::Local { addr: st.pkt.dst, port: st.pkt.dport, process }), None, None)
            }
            Fin::Egress(r) => {
                let iface = st.pkt.out_iface.clone().unwrap_or_default();
                (Verdict::Accept, Some(Delivered::Egress { iface, next_hop: r.hop }), None, None)
            }
            Fin::Stop(verdict, by, reason) => (verdict, None, by, Some(reason)),
        };
        let original_dst = st.nat.dnat.map(|_| (st.orig.dst, st.orig.dport));
        let original_src = st.nat.snat.map(|_| (st.orig.src, st.orig.sport));
        let undecidable = st.ledger.assumptions.iter().any(|a| !a.reason.is_chance()) || reason.as_ref().is_some_and(Reason::is_undecidable);
        let listener_port = match &delivered {
            Some(Delivered::Local { .. }) => Some(st.ledger.tproxy.map_or(st.pkt.dport, |(_, p)| p)),
            _ => None,
        };
        self.out.push(Branch {
            listener_port,
            verdict,
            trace: st.steps,
            packet: st.pkt,
            delivered,
            by,
            reason,
            original_dst,
            original_src,
            probability: st.ledger.probability,
            assumptions: st.ledger.assumptions,
            undecidable,
        });
    }

    fn step_budget(&self) -> usize {
        1_000_000
    }

    /// Skips the rules whose base match fails, the bulk of a long chain, and in a dispatch run
    /// the rules for other destinations.
    #[inline]
    fn enter(&mut self, table: &'a Table, _: Hook, cur: &Cursor<()>, st: &mut State) -> Enter<State, ()> {
        let rules = &table[cur.chain].rules;
        let runs = match &self.loaded.index {
            Some(ix) if rules.len() >= MIN_RUN => self.table_number(table).and_then(|t| ix.runs(t, cur.chain)),
            _ => None,
        };
        let dst = addr_key(st.pkt.dst);
        let mut i = cur.rule;
        loop {
            if let Some((_, run)) = runs.and_then(|r| r.run_at(i)) {
                i = run.next_for(i, dst);
            }
            if !rules.get(i).is_some_and(|r| base_fails(r, &st.pkt)) {
                return Enter::At(i, ());
            }
            i += 1;
        }
    }

    /// The rule's matches in order (`enter` has passed its base match).
    fn test_rule(&mut self, table: &'a Table, hook: Hook, _: &Cursor<()>, rule: &'a Rule, st: &mut State) -> Tested<State> {
        if rule.matches.is_empty() {
            return Tested::Hit(Eval::Match);
        }
        // The conntrack entry the matches see, computed once while the packet keeps it.
        let tracked = self.ld.conntrack && !matches!(st.pkt.ct_state, CtState::Untracked | CtState::Invalid);
        if tracked && st.conn.is_none() {
            st.conn = Some(conn_of(&st.orig, &st.pkt, &st.nat));
        }
        let cx = EvalCtx { host: self.ld.host, hook, table: table.name, family: table.family, conn: st.conn.as_ref().filter(|_| tracked) };
        let mut acc = Eval::Match;
        for m in &rule.matches {
            acc = acc.and(m.eval(&st.pkt, &cx));
            if acc == Eval::NoMatch {
                return Tested::Miss;
            }
        }
        Tested::Hit(acc)
    }

    fn fork(&mut self, _: &mut State) -> bool {
        if self.branches >= self.ld.opts.max_branches {
            self.truncated = true;
            return false;
        }
        self.branches += 1;
        true
    }

    fn record(&self, st: &mut State, table: &Table, hook: Hook, chain: ChainId, kind: StepKind, rule: u32) {
        st.steps.push(Step { host: self.loaded.host_name.clone(), hook, table: table.name, chain: self.chain_name(table, chain), kind, rule });
    }

    fn chain_name(&self, table: &'a Table, chain: ChainId) -> Arc<str> {
        let name = || -> Arc<str> { table[chain].name.as_ref().into() };
        match self.table_number(table) {
            Some(t) => self.loaded.chain_names[self.loaded.name_base[t] + chain.0 as usize].get_or_init(name).clone(),
            None => name(),
        }
    }

    fn lift_port(&self, p: u16) -> u16 {
        p
    }
    fn map_mark(&self, st: &mut State, f: impl Fn(u32) -> u32) -> Result<(), String> {
        st.pkt.mark = f(st.pkt.mark);
        Ok(())
    }
    fn map_marks(&self, st: &mut State, f: impl Fn(u32, u32) -> (u32, u32)) -> Result<(), String> {
        (st.pkt.mark, st.pkt.ct_mark) = f(st.pkt.mark, st.pkt.ct_mark);
        Ok(())
    }
    fn one_addr(&self, st: &State, dst: bool) -> Option<IpAddr> {
        Some(if dst { st.pkt.dst } else { st.pkt.src })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;
    use crate::ruleset::Family;

    /// The reason's sentence.
    fn why(b: &Branch) -> Option<String> {
        b.reason.as_ref().map(|r| r.to_string())
    }
    use crate::ruleset::parse;
    use crate::trace::StepKind;

    fn pod() -> Host {
        Host::new("pod").iface("eth0", &["10.0.0.5/24"]).gateway("10.0.0.1").listen(17, "0.0.0.0", 53, "dns", 0, 0).listen(6, "0.0.0.0", 8080, "app", 0, 0)
    }

    fn owner() -> Origin {
        Origin::Local(Some(Owner { uid: 1000, gid: 1000, groups: Vec::new() }))
    }

    fn one(rules: &str, host: &Host, pkt: Packet, origin: &Origin) -> Branch {
        let parsed = parse(rules);
        assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
        let sim = simulate(&parsed.ruleset, host, pkt, origin, &Options::default());
        assert_eq!(sim.branches.len(), 1, "{sim:#?}");
        sim.branches.into_iter().next().unwrap()
    }

    /// The rules that matched, as `table/CHAIN#n`, in order.
    fn hits(b: &Branch) -> Vec<String> {
        b.trace.iter().filter(|s| s.kind == StepKind::Rule).map(|s| format!("{}/{}#{}", s.table, s.chain, s.rule)).collect()
    }

    fn udp(src: &str, dst: &str, dport: u16) -> Packet {
        Packet::new(17, src.parse().unwrap(), 40000, dst.parse().unwrap(), dport)
    }

    const RAW_STATES: &str = "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -m conntrack --ctstate NEW
-A PREROUTING -m conntrack --ctstate INVALID
-A OUTPUT -m conntrack --ctstate NEW
-A OUTPUT -m conntrack --ctstate INVALID
-A OUTPUT -m state ! --state NEW
-A OUTPUT -m conntrack --ctproto udp
-A OUTPUT -m conntrack --ctstate INVALID --ctproto tcp
-A OUTPUT -m connmark ! --mark 0x1
-A OUTPUT -j CONNMARK --set-mark 0x7
-A OUTPUT -j CONNMARK --restore-mark
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -m conntrack --ctstate NEW
-A OUTPUT -m conntrack --ctstate NEW
-A OUTPUT -m connmark --mark 0x0
COMMIT
";

    #[test]
    fn raw_output_sees_no_conntrack_entry() {
        // netfilter-facts §9.1: raw runs before conntrack. INVALID, `! --state NEW` and a state
        // option that passes match; `--ctproto` alone, connmark and CONNMARK find no entry.
        let b = one(RAW_STATES, &pod(), udp("0.0.0.0", "10.0.0.9", 53), &owner());
        assert_eq!(hits(&b), ["raw/OUTPUT#2", "raw/OUTPUT#3", "raw/OUTPUT#5", "raw/OUTPUT#7", "raw/OUTPUT#8", "mangle/OUTPUT#1", "mangle/OUTPUT#2"]);
        assert_eq!((b.packet.ct_state, b.packet.ct_mark, b.packet.mark), (CtState::New, 0, 0), "after raw: the real state, CONNMARK did nothing");
        assert!(matches!(b.delivered, Some(Delivered::Egress { .. })));
    }

    #[test]
    fn raw_prerouting_sees_invalid_unless_looped_back() {
        // Arriving: no entry in raw PREROUTING, NEW from mangle on.
        let b = one(RAW_STATES, &pod(), udp("10.0.0.1", "10.0.0.5", 53), &Origin::Iface("eth0".into()));
        assert_eq!(hits(&b), ["raw/PREROUTING#2", "mangle/PREROUTING#1"]);
        // Looped back on lo after local output: raw PREROUTING sees the entry made on the way out.
        let b = one(RAW_STATES, &pod(), udp("0.0.0.0", "10.0.0.5", 53), &owner());
        let pre: Vec<String> = hits(&b).into_iter().filter(|h| h.contains("PREROUTING")).collect();
        assert_eq!(pre, ["raw/PREROUTING#1", "mangle/PREROUTING#1"]);
        // A given state is also hidden in raw and back afterwards.
        let mut pkt = udp("10.0.0.1", "10.0.0.5", 53);
        pkt.ct_state = CtState::Established;
        let b = one(RAW_STATES, &pod(), pkt, &Origin::Iface("eth0".into()));
        assert_eq!(hits(&b), ["raw/PREROUTING#2"]);
        assert_eq!(b.packet.ct_state, CtState::Established);
    }

    #[test]
    fn notrack_in_raw_makes_the_packet_untracked_for_the_rest_of_the_walk() {
        let rules = "*raw
:OUTPUT ACCEPT [0:0]
-A OUTPUT -m conntrack --ctstate UNTRACKED
-A OUTPUT -p udp -j CT --notrack
-A OUTPUT -m conntrack --ctstate UNTRACKED
-A OUTPUT -m conntrack --ctstate INVALID
COMMIT
*mangle
:OUTPUT ACCEPT [0:0]
-A OUTPUT -j CONNMARK --restore-mark
COMMIT
*filter
:OUTPUT ACCEPT [0:0]
-A OUTPUT -m conntrack --ctstate NEW
-A OUTPUT -m state --state UNTRACKED
COMMIT
";
        let mut pkt = udp("0.0.0.0", "10.0.0.9", 53);
        pkt.ct_mark = 0x9;
        let b = one(rules, &pod(), pkt, &owner());
        assert_eq!(hits(&b), ["raw/OUTPUT#2", "raw/OUTPUT#3", "mangle/OUTPUT#1", "filter/OUTPUT#2"]);
        // The CONNMARK rule matches (its counter moves) but finds no entry to restore a mark from.
        assert_eq!((b.packet.ct_state, b.packet.mark), (CtState::Untracked, 0));
    }

    fn reroute_host() -> Host {
        let mut h = pod();
        // Mark 0x1 is delivered locally (Istio's TPROXY table), mark 0x2 routed by table 101 only.
        h.policy.push(crate::host::PolicyRule { fwmark: 0x1, mask: 0x1, table: 100 });
        h.tables.insert(100, vec![crate::host::Route { dst: "0.0.0.0/0".parse().unwrap(), via: None, dev: "lo".into(), local: true }]);
        // A transparent listener: it can accept connections to the non-local addresses mark 0x1
        // delivers here.
        for s in &mut h.sockets {
            s.transparent = true;
        }
        h
    }

    /// Counters in every OUTPUT and POSTROUTING chain, with `-o` shown by rule number: 1 = eth0, 2 = lo.
    fn out_counters(mangle: &str, nat: &str, raw: &str, filter: &str) -> String {
        let pair = "-A {c} -o eth0\n-A {c} -o lo\n";
        let block = |t: &str, chains: &[&str], extra: &str| {
            let mut s = format!("*{t}\n");
            for c in chains {
                s.push_str(&format!(":{c} ACCEPT [0:0]\n"));
            }
            for c in chains {
                s.push_str(&pair.replace("{c}", c));
            }
            s.push_str(extra);
            s.push_str("COMMIT\n");
            s
        };
        [
            block("raw", &["OUTPUT"], raw),
            block("mangle", &["OUTPUT", "POSTROUTING"], mangle),
            block("nat", &["OUTPUT", "POSTROUTING"], nat),
            block("filter", &["OUTPUT"], filter),
        ]
        .concat()
    }

    #[test]
    fn a_mark_set_in_mangle_output_routes_the_packet_again() {
        let rules = out_counters("-A OUTPUT -j MARK --set-mark 0x1\n", "-A OUTPUT -m conntrack --ctstate INVALID\n", "", "");
        let b = one(&rules, &reroute_host(), Packet::new(6, "0.0.0.0".parse().unwrap(), 40000, "10.0.0.9".parse().unwrap(), 8080), &owner());
        // Every OUTPUT table sees eth0 (the first route); POSTROUTING sees lo; delivered locally.
        let out: Vec<String> = hits(&b).into_iter().filter(|h| !h.contains("PREROUTING") && !h.contains("INPUT")).collect();
        assert_eq!(out, ["raw/OUTPUT#1", "mangle/OUTPUT#1", "mangle/OUTPUT#3", "nat/OUTPUT#1", "filter/OUTPUT#1", "mangle/POSTROUTING#2", "nat/POSTROUTING#2"]);
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 8080, .. })), "{b:#?}");
    }

    #[test]
    fn a_mark_set_in_raw_or_filter_output_does_not_route_again() {
        let host = reroute_host();
        let pkt = || Packet::new(6, "0.0.0.0".parse().unwrap(), 40000, "10.0.0.9".parse().unwrap(), 8080);
        for (raw, filter) in [("-A OUTPUT -j MARK --set-mark 0x1\n", ""), ("", "-A OUTPUT -j MARK --set-mark 0x1\n")] {
            let rules = out_counters("", "-A OUTPUT -m conntrack --ctstate INVALID\n", raw, filter);
            let b = one(&rules, &host, pkt(), &owner());
            assert_eq!(b.packet.mark, 1);
            assert!(hits(&b).contains(&"mangle/POSTROUTING#1".to_string()), "still out eth0: {:?}", hits(&b));
            assert!(matches!(&b.delivered, Some(Delivered::Egress { iface, .. }) if iface == "eth0"));
        }
        // A TOS change in mangle does re-route, with the mark raw set.
        let rules = out_counters("-A OUTPUT -j TOS --set-tos 0x10\n", "-A OUTPUT -m conntrack --ctstate INVALID\n", "-A OUTPUT -j MARK --set-mark 0x1\n", "");
        let b = one(&rules, &host, pkt(), &owner());
        assert!(hits(&b).contains(&"mangle/POSTROUTING#2".to_string()), "{:?}", hits(&b));
        assert!(matches!(b.delivered, Some(Delivered::Local { .. })));
    }

    #[test]
    fn a_failed_re_route_after_mangle_drops_the_packet_there() {
        // No default route: 203.0.113.0/24 is reachable only with mark 0x2 (table 101).
        let mut host = Host::new("pod").iface("eth0", &["10.0.0.5/24"]);
        host.policy.push(crate::host::PolicyRule { fwmark: 0x2, mask: 0x2, table: 101 });
        host.tables.insert(
            101,
            vec![crate::host::Route { dst: "203.0.113.0/24".parse().unwrap(), via: Some("10.0.0.1".parse().unwrap()), dev: "eth0".into(), local: false }],
        );
        let rules = out_counters("-A OUTPUT -j MARK --set-mark 0x0\n", "-A OUTPUT -m conntrack --ctstate INVALID\n", "", "");
        let mut pkt = udp("0.0.0.0", "203.0.113.9", 53);
        pkt.mark = 0x2;
        let b = one(&rules, &host, pkt, &owner());
        assert_eq!(hits(&b), ["raw/OUTPUT#1", "mangle/OUTPUT#1", "mangle/OUTPUT#3"], "nat, filter and POSTROUTING never see it");
        assert_eq!((b.verdict, b.by.as_ref(), b.delivered.as_ref()), (Verdict::Drop, None, None));
        assert_eq!(
            why(&b).as_deref(),
            Some("re-routing after mangle OUTPUT fails: no route to host (sendto returns ENETUNREACH; a TCP connect times out instead)")
        );
    }

    #[test]
    fn a_loopback_source_dnated_away_fails_after_nat_output() {
        // netfilter-facts §9.3: 127.0.0.1 -> 127.0.0.1 DNATed to 10.0.0.9: only mangle and nat
        // OUTPUT see it, sendto returns EINVAL.
        let rules = out_counters("", "-A OUTPUT -p udp -j DNAT --to-destination 10.0.0.9\n", "", "");
        let b = one(&rules, &pod(), udp("127.0.0.1", "127.0.0.1", 53), &owner());
        assert_eq!(hits(&b), ["raw/OUTPUT#2", "mangle/OUTPUT#2", "nat/OUTPUT#2", "nat/OUTPUT#3"]);
        assert_eq!(b.verdict, Verdict::Drop);
        assert_eq!(
            why(&b).as_deref(),
            Some("re-routing after nat OUTPUT fails: a loopback source cannot leave the host (sendto returns EINVAL; a TCP connect times out instead)")
        );
        // A DNAT that keeps the address (only the port) does not route again.
        let rules = out_counters("", "-A OUTPUT -p udp -j DNAT --to-destination :54\n", "", "");
        let b = one(&rules, &pod().listen(17, "0.0.0.0", 54, "dns2", 0, 0), udp("127.0.0.1", "127.0.0.1", 53), &owner());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 54, .. })), "{b:#?}");
    }

    #[test]
    fn an_ipv6_loopback_source_dnated_away_leaves_the_host() {
        // Observed by the kernel referee: unlike IPv4, IPv6 routes a ::1 source out of eth0 (the
        // receiver drops it as martian); the later OUTPUT tables and POSTROUTING see it.
        let rules = "# Generated by ip6tables-save\n*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p udp -j DNAT --to-destination [fd00::9]\nCOMMIT\n*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p udp\nCOMMIT\n";
        let host = Host::new("pod").iface("eth0", &["fd00::5/64"]);
        let b = one(rules, &host, udp("::1", "::1", 53), &owner());
        assert_eq!(hits(&b), ["nat/OUTPUT#1", "filter/OUTPUT#1"]);
        assert!(matches!(&b.delivered, Some(Delivered::Egress { iface, .. }) if iface == "eth0"), "{b:#?}");
    }

    #[test]
    fn ipv6_masquerade_on_lo_keeps_the_loopback_source() {
        // Observed by the kernel referee: `ipv6_dev_get_saddr` on lo picks ::1 (IPv4 takes an
        // address of another interface).
        let rules = "# Generated by ip6tables-save\n*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -p udp -j MASQUERADE\nCOMMIT\n";
        let host = Host::new("pod").iface("eth0", &["fd00::5/64"]).listen(17, "::", 53, "dns", 0, 0);
        let b = one(rules, &host, udp("::", "::1", 53), &owner());
        assert_eq!(b.packet.src, "::1".parse::<IpAddr>().unwrap(), "{b:#?}");
    }

    fn peer() -> Origin {
        Origin::Iface("eth0".into())
    }

    fn router() -> Host {
        let mut h = pod().iface("eth1", &["10.1.0.5/24"]);
        h.sysctls.ip_forward = true;
        h
    }

    /// TTL counters in mangle PREROUTING, FORWARD and POSTROUTING and filter FORWARD: rule 1
    /// matches TTL 64, rule 2 TTL 63.
    const TTL_COUNTERS: &str = "*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -m ttl --ttl-eq 64
-A PREROUTING -m ttl --ttl-eq 63
-A FORWARD -m ttl --ttl-eq 64
-A FORWARD -m ttl --ttl-eq 63
-A POSTROUTING -m ttl --ttl-eq 64
-A POSTROUTING -m ttl --ttl-eq 63
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
-A INPUT -m ttl --ttl-eq 64
-A FORWARD -m ttl --ttl-lt 2
-A FORWARD -m ttl --ttl-eq 63
COMMIT
";

    #[test]
    fn forwarding_decrements_the_ttl_before_forward() {
        // ip_forward: ip_decrease_ttl runs before NF_HOOK(FORWARD).
        let b = one(TTL_COUNTERS, &router(), udp("10.0.0.1", "10.1.0.9", 53), &peer());
        assert_eq!(hits(&b), ["mangle/PREROUTING#1", "mangle/FORWARD#2", "filter/FORWARD#2", "mangle/POSTROUTING#2"]);
        assert_eq!(b.packet.ttl, 63);
        assert_eq!(b.delivered, Some(Delivered::Egress { iface: "eth1".into(), next_hop: "10.1.0.9".parse().unwrap() }));
        // Delivered locally: no decrement.
        let b = one(TTL_COUNTERS, &router(), udp("10.0.0.1", "10.0.0.5", 53), &peer());
        assert_eq!(hits(&b), ["mangle/PREROUTING#1", "filter/INPUT#1"]);
        assert_eq!(b.packet.ttl, 64);
    }

    #[test]
    fn a_ttl_of_one_expires_before_forward() {
        for ttl in [1, 0] {
            let mut pkt = udp("10.0.0.1", "10.1.0.9", 53);
            pkt.ttl = ttl;
            let b = one(TTL_COUNTERS, &router(), pkt, &peer());
            assert!(hits(&b).is_empty(), "only PREROUTING sees it: {:?}", hits(&b));
            assert_eq!((b.verdict, b.by.as_ref(), b.delivered.as_ref()), (Verdict::Drop, None, None));
            assert_eq!(b.reason, Some(Reason::TtlExceeded { family: Family::V4, ttl }));
            assert!(why(&b).unwrap().contains("ICMP time exceeded"));
        }
        // TTL 2 leaves with 1.
        let mut pkt = udp("10.0.0.1", "10.1.0.9", 53);
        pkt.ttl = 2;
        let b = one(TTL_COUNTERS, &router(), pkt, &peer());
        assert_eq!(hits(&b), ["filter/FORWARD#1"]);
        assert_eq!((b.verdict, b.packet.ttl), (Verdict::Accept, 1));
        // A TTL set to 1 in mangle PREROUTING expires too; to a local address it is delivered.
        let rules = "*mangle\n:PREROUTING ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A PREROUTING -j TTL --ttl-set 1\n-A FORWARD\nCOMMIT\n";
        let b = one(rules, &router(), udp("10.0.0.1", "10.1.0.9", 53), &peer());
        assert_eq!((hits(&b), b.verdict), (vec!["mangle/PREROUTING#1".to_string()], Verdict::Drop));
        assert_eq!(b.reason, Some(Reason::TtlExceeded { family: Family::V4, ttl: 1 }));
        let b = one(rules, &router(), udp("10.0.0.1", "10.0.0.5", 53), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })), "{b:#?}");
        // Forwarding off: the route lookup fails first.
        let mut pkt = udp("10.0.0.1", "10.1.0.9", 53);
        pkt.ttl = 1;
        let b = one(TTL_COUNTERS, &pod().iface("eth1", &["10.1.0.5/24"]), pkt, &peer());
        assert!(why(&b).unwrap().contains("forwarding is off"), "{b:#?}");
    }

    #[test]
    fn forwarding_decrements_the_ipv6_hop_limit() {
        let rules = "# Generated by ip6tables-save
*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -m hl --hl-eq 64
-A FORWARD -m hl --hl-eq 64
-A FORWARD -m hl --hl-eq 63
-A POSTROUTING -m hl --hl-eq 63
COMMIT
";
        let mut host = Host::new("r").iface("eth0", &["fd00::5/64"]).iface("eth1", &["fd01::5/64"]);
        host.sysctls.ip_forward = true;
        let b = one(rules, &host, udp("fd00::1", "fd01::9", 53), &peer());
        assert_eq!(hits(&b), ["mangle/PREROUTING#1", "mangle/FORWARD#2", "mangle/POSTROUTING#1"]);
        assert_eq!(b.packet.ttl, 63);
        let mut pkt = udp("fd00::1", "fd01::9", 53);
        pkt.ttl = 1;
        let b = one(rules, &host, pkt, &peer());
        assert_eq!((hits(&b), b.verdict), (Vec::<String>::new(), Verdict::Drop));
        assert_eq!(b.reason, Some(Reason::TtlExceeded { family: Family::V6, ttl: 1 }));
        assert!(why(&b).unwrap().starts_with("hop limit 1"));
    }

    /// `ip rule fwmark 0x100/0x100 lookup 100` with `local 0.0.0.0/0 dev lo table 100`, and mangle
    /// PREROUTING marking TCP and UDP to port 8080 or 53.
    fn anyip() -> (Host, &'static str) {
        let mut h = pod().listen(17, "0.0.0.0", 8080, "udp-app", 0, 0);
        h.policy.push(crate::host::PolicyRule { fwmark: 0x100, mask: 0x100, table: 100 });
        h.tables.insert(100, vec![crate::host::Route { dst: "0.0.0.0/0".parse().unwrap(), via: None, dev: "lo".into(), local: true }]);
        let rules = "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j MARK --set-mark 0x100\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp\n-A INPUT -p udp\nCOMMIT\n";
        (h, rules)
    }

    fn tcp(src: &str, dst: &str, dport: u16) -> Packet {
        Packet::new(6, src.parse().unwrap(), 40000, dst.parse().unwrap(), dport)
    }

    #[test]
    fn a_syn_to_a_non_local_address_needs_a_transparent_listener() {
        let (host, rules) = anyip();
        // Through INPUT to the 0.0.0.0 listener, which cannot answer from 10.0.0.99.
        let b = one(rules, &host, tcp("10.0.0.1", "10.0.0.99", 8080), &peer());
        assert_eq!(hits(&b), ["mangle/PREROUTING#1", "filter/INPUT#1"]);
        assert_eq!((b.verdict, b.delivered.as_ref(), b.by.as_ref(), b.listener_port), (Verdict::Accept, None, None, None));
        assert_eq!(b.reason.clone(), Some(Reason::NotTransparent));
        // The same from a local process, looped back on lo.
        let mut pkt = tcp("0.0.0.0", "10.0.0.99", 8080);
        pkt.mark = 0x100;
        let b = one(rules, &host, pkt, &owner());
        assert_eq!(b.reason.clone(), Some(Reason::NotTransparent), "{b:#?}");
        // To the host's own address it connects.
        let b = one(rules, &host, tcp("10.0.0.1", "10.0.0.5", 8080), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 8080, .. })), "{b:#?}");
        // A transparent listener accepts it.
        let mut t = host.clone();
        t.sockets.iter_mut().for_each(|s| s.transparent = true);
        let b = one(rules, &t, tcp("10.0.0.1", "10.0.0.99", 8080), &peer());
        assert_eq!(b.delivered, Some(Delivered::Local { addr: "10.0.0.99".parse().unwrap(), port: 8080, process: Some("app".into()) }));
        // A UDP socket bound to 0.0.0.0 receives the datagram.
        let b = one(rules, &host, udp("10.0.0.1", "10.0.0.99", 8080), &peer());
        assert_eq!(b.delivered, Some(Delivered::Local { addr: "10.0.0.99".parse().unwrap(), port: 8080, process: Some("udp-app".into()) }));
        // TPROXY assigns only a transparent socket (`nf_tproxy_sk_is_transparent`); the
        // connection is then accepted. A non-transparent listener: TPROXY drops the packet.
        let tproxy = "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j TPROXY --on-port 8080 --tproxy-mark 0x100/0x100\nCOMMIT\n";
        let b = one(tproxy, &t, tcp("10.0.0.1", "10.0.0.99", 80), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 80, .. })), "{b:#?}");
        let b = one(tproxy, &host, tcp("10.0.0.1", "10.0.0.99", 80), &peer());
        assert_eq!((b.verdict, hits(&b), b.by.map(|r| r.rule)), (Verdict::Drop, vec!["mangle/PREROUTING#1".to_string()], Some(1)));
        // IPv6's output route lookup does not check the source: the connection is accepted.
        let mut h6 = Host::new("pod").iface("eth0", &["fd00::5/64"]).listen(6, "::", 8080, "app", 0, 0);
        h6.policy.push(crate::host::PolicyRule { fwmark: 0x100, mask: 0x100, table: 100 });
        h6.tables.insert(100, vec![crate::host::Route { dst: "::/0".parse().unwrap(), via: None, dev: "lo".into(), local: true }]);
        let rules6 = "# Generated by ip6tables-save\n*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j MARK --set-mark 0x100\nCOMMIT\n";
        let b = one(rules6, &h6, tcp("fd00::1", "fd00::99", 8080), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 8080, .. })), "{b:#?}");
    }

    #[test]
    fn a_destination_dnated_to_loopback_is_martian() {
        // Only the nat PREROUTING counter moves; the input route lookup drops the packet.
        let rules = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n-A PREROUTING -p udp -j DNAT --to-destination 127.0.0.1\n-A INPUT -p udp\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp\nCOMMIT\n";
        let host = pod().listen(17, "0.0.0.0", 8080, "udp-app", 0, 0);
        let b = one(rules, &host, udp("10.0.0.1", "10.0.0.5", 8080), &peer());
        assert_eq!(hits(&b), ["nat/PREROUTING#1"]);
        assert_eq!((b.verdict, b.by.as_ref(), b.delivered.as_ref()), (Verdict::Drop, None, None));
        assert_eq!(b.reason.clone(), Some(Reason::MartianLoopback(Family::V4)));
        assert_eq!(b.packet.dst, "127.0.0.1".parse::<IpAddr>().unwrap());
        // With route_localnet it is delivered to 127.0.0.1.
        let mut h = host.clone();
        h.sysctls.route_localnet = true;
        let b = one(rules, &h, udp("10.0.0.1", "10.0.0.5", 8080), &peer());
        assert_eq!(hits(&b), ["nat/PREROUTING#1", "filter/INPUT#1", "nat/INPUT#1"]);
        assert_eq!(b.delivered, Some(Delivered::Local { addr: "127.0.0.1".parse().unwrap(), port: 8080, process: Some("udp-app".into()) }));
        // Looped back on lo (a local sender to the host's own address) nat PREROUTING is skipped.
        let b = one(rules, &host, udp("0.0.0.0", "127.0.0.1", 8080), &owner());
        assert!(matches!(b.delivered, Some(Delivered::Local { .. })), "{b:#?}");
    }

    #[test]
    fn a_loopback_destination_arriving_passes_prerouting_first() {
        // IPv4 checks the loopback destination in the input route lookup, after PREROUTING: the
        // PREROUTING chains see the packet, and a DNAT there rescues it.
        let counters = "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp\nCOMMIT\n";
        let b = one(counters, &pod(), udp("10.0.0.1", "127.0.0.1", 53), &peer());
        assert_eq!((hits(&b), b.verdict), (vec!["raw/PREROUTING#1".to_string()], Verdict::Drop));
        assert_eq!(b.reason.clone(), Some(Reason::MartianLoopback(Family::V4)));
        let dnat = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -d 127.0.0.1 -j DNAT --to-destination 10.0.0.5\nCOMMIT\n";
        let b = one(dnat, &pod(), udp("10.0.0.1", "127.0.0.1", 53), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })), "{b:#?}");
    }

    #[test]
    fn ipv6_loopback_never_arrives_from_outside() {
        let host = Host::new("pod").iface("eth0", &["fd00::5/64"]).listen(17, "::", 53, "dns", 0, 0);
        let counters = "# Generated by ip6tables-save\n*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp\nCOMMIT\n";
        // Dropped in ip6_rcv_core, before PREROUTING, whatever route_localnet says: to ::1 or from ::1.
        let mut h = host.clone();
        h.sysctls.route_localnet = true;
        for (src, dst) in [("fd00::1", "::1"), ("::1", "fd00::5")] {
            let b = one(counters, &h, udp(src, dst, 53), &peer());
            assert_eq!((hits(&b), b.verdict), (Vec::<String>::new(), Verdict::Drop), "{src} -> {dst}");
            assert_eq!(b.reason.clone(), Some(Reason::LoopbackV6Arriving));
        }
        // DNAT to ::1 in PREROUTING: ::1 is looked up on the input device only (kernel referee):
        // no route there, or, with a default route out of eth0 and forwarding, back out of eth0.
        let dnat = "# Generated by ip6tables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -j DNAT --to-destination [::1]\nCOMMIT\n*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p udp -o eth0\nCOMMIT\n";
        for h in [&host, &h] {
            let b = one(dnat, h, udp("fd00::1", "fd00::5", 53), &peer());
            assert_eq!((hits(&b), b.verdict), (vec!["nat/PREROUTING#1".to_string()], Verdict::Drop));
            assert_eq!(b.reason.clone(), Some(Reason::NoInputRoute));
        }
        let mut router = host.clone();
        router.sysctls.ip_forward = true;
        router.routes.push(crate::host::Route { dst: "::/0".parse().unwrap(), via: Some("fd00::1".parse().unwrap()), dev: "eth0".into(), local: false });
        let b = one(dnat, &router, udp("fd00::1", "fd00::5", 53), &peer());
        assert_eq!(hits(&b), ["nat/PREROUTING#1", "filter/FORWARD#1"]);
        assert!(matches!(&b.delivered, Some(Delivered::Egress { iface, .. }) if iface == "eth0"), "{b:#?}");
    }

    /// A counting rule for UDP in raw, mangle and nat PREROUTING (with conntrack on) and filter
    /// INPUT and FORWARD.
    const PRE_COUNTERS: &str = "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp\nCOMMIT\n*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -m conntrack --ctstate NEW\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A INPUT -p udp\n-A FORWARD -p udp\nCOMMIT\n";

    #[test]
    fn rp_filter_runs_in_the_input_route_lookup_after_prerouting() {
        // Kernel differential: a spoofed source the pod routes via eth1 arriving on eth0 with
        // strict rp_filter: every PREROUTING chain sees it, then `fib_validate_source` drops it.
        let mut host = router();
        host.sysctls.rp_filter = 1;
        let b = one(PRE_COUNTERS, &host, udp("10.1.0.9", "10.0.0.5", 53), &peer());
        assert_eq!(hits(&b), ["raw/PREROUTING#1", "mangle/PREROUTING#1", "nat/PREROUTING#1"]);
        assert_eq!((b.verdict, b.by.as_ref(), b.delivered.as_ref()), (Verdict::Drop, None, None));
        assert_eq!(b.reason, Some(Reason::ReversePath { mode: 1, iface: "eth0".into() }));
        // Forwarded: checked before the TTL expires and before FORWARD.
        let mut pkt = udp("10.1.0.9", "10.1.0.7", 53);
        pkt.ttl = 1;
        let b = one(PRE_COUNTERS, &host, pkt, &peer());
        assert_eq!((hits(&b).len(), b.reason.clone()), (3, Some(Reason::ReversePath { mode: 1, iface: "eth0".into() })));
        // The routes checked first win: forwarding off, a martian destination, no route.
        host.sysctls.ip_forward = false;
        let b = one(PRE_COUNTERS, &host, udp("10.1.0.9", "10.1.0.7", 53), &peer());
        assert!(why(&b).unwrap().contains("forwarding is off"), "{b:#?}");
        let b = one(PRE_COUNTERS, &host, udp("10.1.0.9", "127.0.0.1", 53), &peer());
        assert_eq!(b.reason.clone(), Some(Reason::MartianLoopback(Family::V4)));
        // A PREROUTING DNAT happens first: its new destination is what the lookup routes.
        let dnat = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -j DNAT --to-destination 127.0.0.1\nCOMMIT\n";
        let b = one(dnat, &host, udp("10.1.0.9", "10.0.0.5", 53), &peer());
        assert_eq!((hits(&b), b.reason.clone()), (vec!["nat/PREROUTING#1".to_string()], Some(Reason::MartianLoopback(Family::V4))));
        // A source routed back through eth0 passes; loose mode takes any route back.
        let b = one(PRE_COUNTERS, &host, udp("10.0.0.1", "10.0.0.5", 53), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })), "{b:#?}");
        host.sysctls.rp_filter = 2;
        let b = one(PRE_COUNTERS, &host, udp("10.1.0.9", "10.0.0.5", 53), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })), "{b:#?}");
        // IPv6 has no rp_filter.
        let mut h6 = Host::new("pod").iface("eth0", &["fd00::5/64"]).iface("eth1", &["fd01::5/64"]).listen(17, "::", 53, "dns", 0, 0);
        h6.sysctls.rp_filter = 1;
        let b = one("", &h6, udp("fd01::9", "fd00::5", 53), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })), "{b:#?}");
    }

    #[test]
    fn the_reverse_path_lookup_uses_the_mark_only_with_src_valid_mark() {
        // Mark 0x2 routes 10.1.0.0/24 back through eth0 (table 102); mangle PREROUTING sets it.
        let mut host = router();
        host.sysctls.rp_filter = 1;
        host.policy.push(crate::host::PolicyRule { fwmark: 0x2, mask: 0x2, table: 102 });
        host.tables.insert(
            102,
            vec![crate::host::Route { dst: "10.1.0.0/24".parse().unwrap(), via: Some("10.0.0.1".parse().unwrap()), dev: "eth0".into(), local: false }],
        );
        let rules = "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j MARK --set-mark 0x2\nCOMMIT\n";
        let b = one(rules, &host, udp("10.1.0.9", "10.0.0.5", 53), &peer());
        assert_eq!(b.reason, Some(Reason::ReversePath { mode: 1, iface: "eth0".into() }), "looked up with mark 0");
        host.sysctls.src_valid_mark = true;
        let b = one(rules, &host, udp("10.1.0.9", "10.0.0.5", 53), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })), "with the mark PREROUTING set: {b:#?}");
        // An arriving packet's own mark is not used either without src_valid_mark.
        host.sysctls.src_valid_mark = false;
        let mut pkt = udp("10.1.0.9", "10.0.0.5", 53);
        pkt.mark = 0x2;
        assert_eq!(one("", &host, pkt, &peer()).reason, Some(Reason::ReversePath { mode: 1, iface: "eth0".into() }));
    }

    #[test]
    fn a_loopback_address_cannot_answer_a_non_local_source() {
        // Kernel differential: 127.0.0.1 -> 127.0.0.1 with its source SNATed to 10.0.0.77 in nat
        // POSTROUTING reaches INPUT, but the SYN-ACK's route lookup fails (a loopback source
        // leaving through eth0): no connection.
        let rules = "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -d 127.0.0.1 -j SNAT --to-source 10.0.0.77\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp\n-A INPUT -p udp\nCOMMIT\n";
        let b = one(rules, &pod(), tcp("127.0.0.1", "127.0.0.1", 8080), &owner());
        assert_eq!(hits(&b), ["nat/POSTROUTING#1", "filter/INPUT#1"]);
        assert_eq!((b.verdict, b.delivered.as_ref(), b.by.as_ref()), (Verdict::Accept, None, None));
        assert_eq!(b.reason.clone(), Some(Reason::LoopbackCannotAnswer));
        assert_eq!(b.packet.src, "10.0.0.77".parse::<IpAddr>().unwrap());
        // A datagram is received; without the SNAT the connection is accepted.
        let b = one(rules, &pod(), udp("127.0.0.1", "127.0.0.1", 53), &owner());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })), "{b:#?}");
        let b = one("", &pod(), tcp("127.0.0.1", "127.0.0.1", 8080), &owner());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 8080, .. })), "{b:#?}");
        // DNATed to 127.0.0.1 in nat OUTPUT and SNATed to 10.0.0.9: the same; SNATed to a local
        // address (or not at all) it connects; route_localnet lets the loopback source out.
        let dnat = |to: &str| {
            format!(
                "*nat\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A OUTPUT -p tcp -d 10.0.0.77 -j DNAT --to-destination 127.0.0.1\n-A POSTROUTING -p tcp -d 127.0.0.1 -j SNAT --to-source {to}\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp\nCOMMIT\n"
            )
        };
        let b = one(&dnat("10.0.0.9"), &pod(), tcp("0.0.0.0", "10.0.0.77", 8080), &owner());
        assert_eq!(hits(&b), ["nat/OUTPUT#1", "nat/POSTROUTING#1", "filter/INPUT#1"]);
        assert_eq!((b.reason.clone(), b.original_dst), (Some(Reason::LoopbackCannotAnswer), Some(("10.0.0.77".parse().unwrap(), 8080))));
        let b = one(&dnat("10.0.0.5"), &pod(), tcp("0.0.0.0", "10.0.0.77", 8080), &owner());
        assert_eq!(b.delivered, Some(Delivered::Local { addr: "127.0.0.1".parse().unwrap(), port: 8080, process: Some("app".into()) }));
        let mut h = pod();
        h.sysctls.route_localnet = true;
        let b = one(&dnat("10.0.0.9"), &h, tcp("0.0.0.0", "10.0.0.77", 8080), &owner());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 8080, .. })), "{b:#?}");
    }

    #[test]
    fn a_packet_looped_back_keeps_its_local_route() {
        // Kernel differential: mangle OUTPUT's mark 0x100 routes a connection to 10.0.0.1 over lo
        // (table 100); mangle POSTROUTING clears the mark (no re-route there). Back in on lo the
        // packet keeps its route: INPUT, not FORWARD, even with forwarding on.
        let mut host = router();
        for s in &mut host.sockets {
            s.transparent = true;
        }
        host.policy.push(crate::host::PolicyRule { fwmark: 0x100, mask: 0x100, table: 100 });
        host.tables.insert(100, vec![crate::host::Route { dst: "0.0.0.0/0".parse().unwrap(), via: None, dev: "lo".into(), local: true }]);
        let rules = "*mangle\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:PREROUTING ACCEPT [0:0]\n-A OUTPUT -j MARK --set-mark 0x100\n-A POSTROUTING -o lo -j MARK --set-mark 0x0\n-A PREROUTING -j MARK --set-mark 0x0\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A INPUT -i lo\n-A FORWARD\nCOMMIT\n";
        for pkt in [tcp("0.0.0.0", "10.0.0.1", 8080), udp("0.0.0.0", "10.0.0.1", 53)] {
            let b = one(rules, &host, pkt, &owner());
            assert_eq!(hits(&b), ["mangle/OUTPUT#1", "mangle/POSTROUTING#1", "mangle/PREROUTING#1", "filter/INPUT#1"]);
            assert_eq!(b.packet.mark, 0);
            assert!(matches!(&b.delivered, Some(Delivered::Local { addr, .. }) if *addr == "10.0.0.1".parse::<IpAddr>().unwrap()), "{b:#?}");
        }
        // No reverse-path check either: a non-local source the pod routes via eth1 is received.
        host.sysctls.rp_filter = 1;
        host.sysctls.ip_nonlocal_bind = true;
        let b = one(rules, &host, udp("10.1.0.9", "10.0.0.1", 53), &owner());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })), "{b:#?}");
    }
}
