//! A packet's path through one host's network stack (`ip_output`, `ip_rcv`, `ip_forward`,
//! `ip_local_deliver`): the hooks in order, routing decisions between them, NAT applied as
//! conntrack applies it, and where the packet ends up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::conntrack::conntrack_on;
use crate::hook::tables_at;
use crate::host::Host;
use crate::packet::{CtState, Owner, Packet};
use crate::ruleset::{Family, Hook, Ruleset, TableName};
use crate::trace::{Delivered, RuleRef, Step, Verdict};
use crate::traverse::{Assumption, Env, NatCtx, Options, State, TableEnd, walk};

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
    pub reason: Option<String>,
    /// The destination before NAT (what `SO_ORIGINAL_DST` returns to the accepting socket).
    pub original_dst: Option<(IpAddr, u16)>,
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

struct Sim<'a> {
    ruleset: &'a Ruleset,
    host: &'a Host,
    opts: &'a Options,
    family: Family,
    conntrack: bool,
    out: Vec<Branch>,
    truncated: bool,
}

/// A rule set loaded on a host, ready to simulate packets (what is derived from the rules once,
/// such as whether conntrack is on, is computed here and not per packet).
#[derive(Debug)]
pub struct Simulator<'a> {
    ruleset: &'a Ruleset,
    host: &'a Host,
    opts: Options,
    conntrack: bool,
}

impl<'a> Simulator<'a> {
    /// Loads `ruleset` on `host`.
    pub fn new(ruleset: &'a Ruleset, host: &'a Host, opts: Options) -> Simulator<'a> {
        Simulator { ruleset, host, opts, conntrack: conntrack_on(ruleset) }
    }

    /// Simulates `pkt` coming from `origin`.
    pub fn run(&self, mut pkt: Packet, origin: &Origin) -> Simulation {
        let family = pkt.family();
        let mut sim = Sim { ruleset: self.ruleset, host: self.host, opts: &self.opts, family, conntrack: self.conntrack, out: Vec::new(), truncated: false };
        match origin {
            Origin::Local(owner) => {
                pkt.owner = owner.clone();
                pkt.in_iface = None;
                sim.local_out(State::new(pkt));
            }
            Origin::Iface(iface) => {
                pkt.owner = None;
                pkt.in_iface = Some(iface.clone());
                pkt.out_iface = None;
                sim.arrive(State::new(pkt), false);
            }
        }
        Simulation { branches: sim.out, truncated: sim.truncated }
    }
}

/// Simulates `pkt` from `origin` on `host` with `ruleset` (see [`Simulator`] for many packets).
pub fn simulate(ruleset: &Ruleset, host: &Host, pkt: Packet, origin: &Origin, opts: &Options) -> Simulation {
    Simulator::new(ruleset, host, opts.clone()).run(pkt, origin)
}

/// What mangle OUTPUT compares to decide whether to route the packet again (`ipt_mangle_out`,
/// `ip6t_mangle_out`): addresses, mark, TOS (the traffic class, within IPv6's first word) and,
/// for IPv6 only, the hop limit.
#[derive(Debug, PartialEq, Eq)]
struct RouteKey {
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

/// How a locally generated packet dropped in OUTPUT with error `errno` shows to the sender:
/// `sendto` returns the error; TCP ignores it and retransmits the SYN until `connect` times out
/// (netfilter-facts §8).
pub(crate) fn send_error(errno: &str) -> String {
    format!("sendto returns {errno}; a TCP connect times out instead")
}

fn loopback(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

impl Sim<'_> {
    /// Runs every table of `hook` in order; returns the branches that got through. `looped`: the
    /// packet came back in on `lo` after local output (it carries the conntrack entry made on its
    /// way out, so nat is skipped and raw sees its real state).
    fn run_hook(&mut self, st: State, hook: Hook, nat: NatCtx, looped: bool) -> Vec<State> {
        let mut alive = vec![st];
        for &tname in tables_at(hook, self.opts.backend) {
            let mut next = Vec::new();
            for st in alive {
                next.extend(self.run_table(st, hook, tname, nat, looped));
            }
            self.cap(&mut next);
            alive = next;
        }
        alive
    }

    /// Keeps at most `Options::max_branches` branches.
    fn cap<T>(&mut self, branches: &mut Vec<T>) {
        if branches.len() > self.opts.max_branches {
            branches.truncate(self.opts.max_branches);
            self.truncated = true;
        }
    }

    /// Runs table `tname` at `hook`; finishes the branches it drops, rejects or queues and
    /// returns those it accepts.
    fn run_table(&mut self, mut st: State, hook: Hook, tname: TableName, nat: NatCtx, looped: bool) -> Vec<State> {
        if tname == TableName::Nat && (looped || !self.conntrack || st.pkt.ct_state != CtState::New) {
            // nat sees only the first packet of a connection (and none without conntrack).
            return vec![st];
        }
        let Some(table) = self.ruleset.table(self.family, tname) else { return vec![st] };
        let env = Env { host: self.host, hook, nat, conntrack: self.conntrack, opts: self.opts };
        // raw (priority -300) runs before conntrack (-200): the packet has no entry yet, so the
        // state matches see INVALID (UNTRACKED once `CT --notrack` ran) and connmark and
        // CONNMARK find no connection. A looped-back packet already carries its entry.
        let real = st.pkt.ct_state;
        let before_conntrack = tname == TableName::Raw && !looped;
        if before_conntrack {
            st.pkt.ct_state = CtState::Invalid;
        }
        let mut alive = Vec::new();
        for (mut st, end) in walk(table, &env, st) {
            if before_conntrack && st.pkt.ct_state != CtState::Untracked {
                st.pkt.ct_state = real;
            }
            match end {
                TableEnd::Accept => alive.push(st),
                TableEnd::Drop(by) => {
                    let why = by.as_ref().map_or_else(|| format!("{tname} {} policy DROP", hook.chain_name()), |r| format!("dropped by {r}"));
                    self.finish(st, Verdict::Drop, None, by, Some(why));
                }
                TableEnd::Reject(by) => self.finish(st, Verdict::Reject, None, Some(by.clone()), Some(format!("rejected by {by}"))),
                TableEnd::Queue(by) => self.finish(st, Verdict::Queue, None, Some(by.clone()), Some(format!("queued by {by}"))),
                TableEnd::Undecidable(by, why) => {
                    st.assumptions.push(Assumption { rule: by.clone(), matched: true, reason: why.clone() });
                    self.finish(st, Verdict::Drop, None, Some(by.clone()), Some(format!("undecidable: {why} ({by})")));
                }
            }
        }
        alive
    }

    fn finish(&mut self, st: State, verdict: Verdict, delivered: Option<Delivered>, by: Option<RuleRef>, reason: Option<String>) {
        let original_dst = st.nat.dnat.map(|_| (st.orig.dst, st.orig.dport));
        let undecidable =
            st.assumptions.iter().any(|a| !a.reason.starts_with("matches with probability")) || reason.as_deref().is_some_and(|r| r.starts_with("undecidable"));
        let listener_port = match &delivered {
            Some(Delivered::Local { .. }) => Some(st.tproxy.map_or(st.pkt.dport, |(_, p)| p)),
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
            probability: st.probability,
            assumptions: st.assumptions,
            undecidable,
        });
    }

    /// The source MASQUERADE picks (`inet_select_addr` with universe scope): the route's source,
    /// or for `lo`, whose addresses are host-scoped, the first address of another interface.
    fn masquerade_src(&self, route: &crate::host::RouteResult) -> Option<IpAddr> {
        if route.dev != "lo" {
            return route.src;
        }
        self.host.universe_addr(self.family == Family::V4)
    }

    /// A locally generated packet: route, OUTPUT, re-route, POSTROUTING, then out or back in on `lo`.
    fn local_out(&mut self, mut st: State) {
        let Some(route) = self.host.route(st.pkt.dst, st.pkt.mark) else {
            return self.finish(st, Verdict::Drop, None, None, Some("no route to host (the send fails with ENETUNREACH)".into()));
        };
        if !st.pkt.src.is_unspecified() && !self.host.is_local(st.pkt.src) && !self.host.sysctls.ip_nonlocal_bind {
            return self.finish(
                st,
                Verdict::Drop,
                None,
                None,
                Some("the source address is not local: bind() fails with EADDRNOTAVAIL (net.ipv4.ip_nonlocal_bind=0)".into()),
            );
        }
        if st.pkt.src.is_loopback() && !route.local {
            return self.finish(st, Verdict::Drop, None, None, Some("a loopback source cannot leave the host: the send fails with EINVAL".into()));
        }
        if st.pkt.src.is_unspecified() {
            // To a local address the source is that address; otherwise the route's preferred source.
            st.pkt.src = if route.local { st.pkt.dst } else { route.src.unwrap_or(st.pkt.src) };
            st.orig.src = st.pkt.src;
        }
        st.pkt.out_iface = Some(route.dev.clone());
        let nat = NatCtx { redirect_to: Some(loopback(self.family)), masquerade_src: route.src };
        // Every OUTPUT table sees the out device of the first route (the hook's `state->out`);
        // a re-route after mangle or nat OUTPUT changes the route POSTROUTING and delivery use.
        let mut alive = vec![(st, route)];
        for &tname in tables_at(Hook::Output, self.opts.backend) {
            let mut next = Vec::new();
            for (st, route) in alive {
                let before = RouteKey::of(&st.pkt);
                for st in self.run_table(st, Hook::Output, tname, nat, false) {
                    if !self.reroutes(&st, tname, &before) {
                        next.push((st, route.clone()));
                        continue;
                    }
                    match self.reroute(&st, tname) {
                        Ok(route) => next.push((st, route)),
                        Err(why) => self.finish(st, Verdict::Drop, None, None, Some(why)),
                    }
                }
            }
            self.cap(&mut next);
            alive = next;
        }
        for (mut st, route) in alive {
            st.pkt.out_iface = Some(route.dev.clone());
            let nat = NatCtx { redirect_to: None, masquerade_src: self.masquerade_src(&route) };
            for mut st in self.run_hook(st, Hook::Postrouting, nat, false) {
                if route.local {
                    // Out on lo and back in: the receive side skips nat (the binding exists).
                    st.pkt.in_iface = Some("lo".into());
                    st.pkt.out_iface = None;
                    self.arrive(st, true);
                } else {
                    let iface = st.pkt.out_iface.clone().unwrap_or_default();
                    self.finish(st, Verdict::Accept, Some(Delivered::Egress { iface, next_hop: route.next_hop }), None, None);
                }
            }
        }
    }

    /// True when the kernel routes the packet again (`ip_route_me_harder`) after OUTPUT table
    /// `tname`: after mangle when the mark, TOS, source or destination changed in it (and for
    /// IPv6 the hop limit; `ipt_mangle_out`, the iptables-nft `type route` chain), after nat
    /// when the connection's destination address was rewritten (`nf_nat_ipv4_local_fn`).
    fn reroutes(&self, st: &State, tname: TableName, before: &RouteKey) -> bool {
        match tname {
            TableName::Mangle => RouteKey::of(&st.pkt) != *before,
            TableName::Nat => st.nat.dnat.is_some_and(|(addr, _)| addr != st.orig.dst),
            _ => false,
        }
    }

    /// The new route of a packet re-routed after OUTPUT table `after`, or why the re-route
    /// fails (the packet is dropped there: no later table sees it).
    fn reroute(&self, st: &State, after: TableName) -> Result<crate::host::RouteResult, String> {
        let Some(route) = self.host.route(st.pkt.dst, st.pkt.mark) else {
            return Err(format!("re-routing after {after} OUTPUT fails: no route to host ({})", send_error("ENETUNREACH")));
        };
        if st.pkt.src.is_loopback() && !route.local {
            return Err(format!("re-routing after {after} OUTPUT fails: a loopback source cannot leave the host ({})", send_error("EINVAL")));
        }
        Ok(route)
    }

    /// An arriving packet (or one looped back on `lo` when `looped`).
    fn arrive(&mut self, st: State, looped: bool) {
        let in_iface = st.pkt.in_iface.clone().unwrap_or_default();
        if !looped && in_iface != "lo" && st.pkt.dst.is_loopback() && !self.host.sysctls.route_localnet {
            return self.finish(st, Verdict::Drop, None, None, Some("martian destination: loopback address arriving on a non-loopback interface".into()));
        }
        if !looped && self.host.sysctls.rp_filter != 0 {
            // Reverse-path filter: the source must be reachable back through the input interface
            // (strict, 1) or through any interface (loose, 2).
            let back = self.host.route(st.pkt.src, st.pkt.mark);
            let ok = match (self.host.sysctls.rp_filter, back) {
                (1, Some(r)) => r.dev == in_iface,
                (_, Some(_)) => true,
                (_, None) => false,
            };
            if !ok {
                let why = format!(
                    "reverse-path filter (rp_filter={}) drops the packet arriving on {in_iface}: its source is not routed back that way",
                    self.host.sysctls.rp_filter
                );
                return self.finish(st, Verdict::Drop, None, None, Some(why));
            }
        }
        let nat = NatCtx { redirect_to: self.host.primary_addr(&in_iface, self.family == Family::V4), masquerade_src: None };
        for st in self.run_hook(st, Hook::Prerouting, nat, looped) {
            let route = self.host.route(st.pkt.dst, st.pkt.mark);
            match route {
                Some(r) if r.local || st.tproxy.is_some() => self.local_in(st, looped),
                Some(r) => {
                    if !self.host.sysctls.ip_forward {
                        self.finish(st, Verdict::Drop, None, None, Some("not for this host and forwarding is off (net.ipv4.ip_forward=0)".into()));
                        continue;
                    }
                    let mut st = st;
                    st.pkt.out_iface = Some(r.dev.clone());
                    for st in self.run_hook(st, Hook::Forward, NatCtx::default(), false) {
                        let nat = NatCtx { redirect_to: None, masquerade_src: r.src };
                        for st in self.run_hook(st, Hook::Postrouting, nat, false) {
                            let iface = st.pkt.out_iface.clone().unwrap_or_default();
                            self.finish(st, Verdict::Accept, Some(Delivered::Egress { iface, next_hop: r.next_hop }), None, None);
                        }
                    }
                }
                None => self.finish(st, Verdict::Drop, None, None, Some("no route for the arriving packet".into())),
            }
        }
    }

    /// INPUT and delivery to a local socket.
    fn local_in(&mut self, st: State, looped: bool) {
        for st in self.run_hook(st, Hook::Input, NatCtx { redirect_to: None, masquerade_src: None }, looped) {
            let (addr, port) = st.tproxy.unwrap_or((st.pkt.dst, st.pkt.dport));
            if !st.pkt.has_ports() {
                self.finish(st, Verdict::Accept, Some(Delivered::Local { addr, port: 0, process: None }), None, None);
                continue;
            }
            match self.host.socket_for(st.pkt.proto, addr, port) {
                Some(sock) => {
                    let process = Some(sock.process.clone()).filter(|p| !p.is_empty());
                    // The accepted socket's local address is the packet's destination, also when
                    // TPROXY handed it to a socket bound elsewhere.
                    let at = Delivered::Local { addr: st.pkt.dst, port: st.pkt.dport, process };
                    self.finish(st, Verdict::Accept, Some(at), None, None);
                }
                None => {
                    let why = if st.pkt.proto == 6 {
                        "no socket listens there: the kernel answers with a TCP reset"
                    } else {
                        "no socket listens there: the kernel answers with ICMP port unreachable"
                    };
                    self.finish(st, Verdict::Accept, None, None, Some(why.into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            b.reason.as_deref(),
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
            b.reason.as_deref(),
            Some("re-routing after nat OUTPUT fails: a loopback source cannot leave the host (sendto returns EINVAL; a TCP connect times out instead)")
        );
        // A DNAT that keeps the address (only the port) does not route again.
        let rules = out_counters("", "-A OUTPUT -p udp -j DNAT --to-destination :54\n", "", "");
        let b = one(&rules, &pod().listen(17, "0.0.0.0", 54, "dns2", 0, 0), udp("127.0.0.1", "127.0.0.1", 53), &owner());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 54, .. })), "{b:#?}");
    }

    #[test]
    fn ipv6_loopback_source_dnated_away_fails_after_nat_output() {
        let rules = "# Generated by ip6tables-save\n*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p udp -j DNAT --to-destination [fd00::9]\nCOMMIT\n*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p udp\nCOMMIT\n";
        let host = Host::new("pod").iface("eth0", &["fd00::5/64"]);
        let b = one(rules, &host, udp("::1", "::1", 53), &owner());
        assert_eq!(hits(&b), ["nat/OUTPUT#1"]);
        assert!(
            b.reason.as_deref().unwrap().starts_with("re-routing after nat OUTPUT fails: a loopback source cannot leave the host (sendto returns EINVAL"),
            "{b:#?}"
        );
    }
}
