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
    /// or for `lo` in IPv4, whose addresses are host-scoped, the first address of another
    /// interface. IPv6 (`ipv6_dev_get_saddr`) keeps the route's source, `::1` on lo.
    fn masquerade_src(&self, route: &crate::host::RouteResult) -> Option<IpAddr> {
        if route.dev != "lo" || self.family == Family::V6 {
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
        // IPv4 refuses a loopback source on a non-loopback route (`__mkroute_output`); IPv6 has no
        // such check: the packet leaves, and the receiver drops it (`ip6_rcv_core`).
        if self.family == Family::V4 && st.pkt.src.is_loopback() && !route.local {
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
                    st.nat.confirmed = true;
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
        if self.family == Family::V4 && st.pkt.src.is_loopback() && !route.local {
            return Err(format!("re-routing after {after} OUTPUT fails: a loopback source cannot leave the host ({})", send_error("EINVAL")));
        }
        Ok(route)
    }

    /// An arriving packet (or one looped back on `lo` when `looped`).
    fn arrive(&mut self, st: State, looped: bool) {
        let in_iface = st.pkt.in_iface.clone().unwrap_or_default();
        let from_outside = !looped && in_iface != "lo";
        if from_outside && self.family == Family::V6 && (st.pkt.dst.is_loopback() || st.pkt.src.is_loopback()) {
            // `ip6_rcv_core`, before PREROUTING: ::1 never arrives on another interface.
            return self.finish(st, Verdict::Drop, None, None, Some(LOOPBACK_V6_ARRIVING.into()));
        }
        let nat = NatCtx { redirect_to: self.host.primary_addr(&in_iface, self.family == Family::V4), masquerade_src: None };
        for st in self.run_hook(st, Hook::Prerouting, nat, looped) {
            if looped {
                // `ip_rcv_finish`: a packet looped back on lo keeps the (local) route chosen on
                // its way out; no input route lookup, so no martian or reverse-path check, and
                // it is delivered locally whatever its destination.
                self.local_in(st, true);
            } else {
                self.route_input(st, &in_iface, from_outside);
            }
        }
    }

    /// The input route lookup (`ip_route_input_slow`) of a packet PREROUTING accepted, and where
    /// it sends the packet: the martian check on the destination PREROUTING left, the route
    /// (with the mark PREROUTING left), the reverse-path check for a local or forwarded packet
    /// (`fib_validate_source`), then INPUT, or FORWARD and POSTROUTING.
    fn route_input(&mut self, mut st: State, in_iface: &str, from_outside: bool) {
        if from_outside && st.pkt.dst.is_loopback() && self.family == Family::V4 && !self.host.sysctls.route_localnet {
            return self.finish(st, Verdict::Drop, None, None, Some(martian_loopback(self.family).into()));
        }
        // IPv6 looks ::1 up on the input device only (the kernel referee saw a PREROUTING DNAT to
        // ::1 forwarded back out of eth0).
        let strict = from_outside && st.pkt.dst.is_loopback() && self.family == Family::V6;
        let route = if strict { self.host.route_strict(st.pkt.dst, in_iface) } else { self.host.route(st.pkt.dst, st.pkt.mark) };
        let Some(r) = route else {
            return self.finish(st, Verdict::Drop, None, None, Some("no route for the arriving packet".into()));
        };
        let local = r.local || st.tproxy.is_some();
        if !local && !self.host.sysctls.ip_forward {
            // Checked before the source (`ip_route_input_slow`: EHOSTUNREACH).
            return self.finish(st, Verdict::Drop, None, None, Some("not for this host and forwarding is off (net.ipv4.ip_forward=0)".into()));
        }
        if let Some(why) = self.reverse_path_fails(&st, in_iface) {
            return self.finish(st, Verdict::Drop, None, None, Some(why));
        }
        if local {
            return self.local_in(st, false);
        }
        // `ip_forward`/`ip6_forward`: a packet that would leave with TTL 0 dies here, before
        // FORWARD; the others go on with the TTL decremented.
        if st.pkt.ttl <= 1 {
            let why = ttl_exceeded(self.family, st.pkt.ttl);
            return self.finish(st, Verdict::Drop, None, None, Some(why));
        }
        st.pkt.ttl -= 1;
        st.pkt.out_iface = Some(r.dev.clone());
        for st in self.run_hook(st, Hook::Forward, NatCtx::default(), false) {
            let nat = NatCtx { redirect_to: None, masquerade_src: r.src };
            for st in self.run_hook(st, Hook::Postrouting, nat, false) {
                let iface = st.pkt.out_iface.clone().unwrap_or_default();
                self.finish(st, Verdict::Accept, Some(Delivered::Egress { iface, next_hop: r.next_hop }), None, None);
            }
        }
    }

    /// Why the reverse-path filter drops `st` arriving on `in_iface`, if it does
    /// (`fib_validate_source`, IPv4 only): the source is looked up as a destination, with the
    /// packet's mark only under `src_valid_mark` (mark 0 otherwise).
    fn reverse_path_fails(&self, st: &State, in_iface: &str) -> Option<String> {
        let mode = self.host.sysctls.rp_filter;
        if mode == 0 || self.family != Family::V4 {
            return None;
        }
        let mark = if self.host.sysctls.src_valid_mark { st.pkt.mark } else { 0 };
        let back = self.host.route(st.pkt.src, mark);
        (!reverse_path_ok(mode, back.as_ref().map(|r| r.dev.as_str()), in_iface)).then(|| reverse_path_drop(mode, in_iface))
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
                    if let Some(why) = self.synack_route_fails(&st, sock) {
                        self.finish(st, Verdict::Accept, None, None, Some(why.into()));
                        continue;
                    }
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

    /// Why `sock` cannot accept the TCP connection `st` opens, if it cannot: the listener's
    /// SYN-ACK goes from the packet's destination to its source (both after NAT), and when that
    /// route lookup (`inet_csk_route_req` → `ip_route_output_flow`) fails the SYN is dropped.
    /// It fails when the destination is not an address of this host (policy routing delivered
    /// it locally) and the listener is neither transparent nor assigned by TPROXY (no
    /// `FLOWI_FLAG_ANYSRC`), and when the destination is a loopback address but the source is
    /// not local, so that the reply would leave through another device than lo
    /// (`__mkroute_output`: EINVAL, unless `route_localnet`). IPv4 only: IPv6's output route
    /// lookup checks neither.
    fn synack_route_fails(&self, st: &State, sock: &crate::host::Socket) -> Option<&'static str> {
        if st.pkt.proto != 6 || self.family != Family::V4 {
            return None;
        }
        if st.tproxy.is_none() && !sock.transparent && !self.host.is_local(st.pkt.dst) {
            return Some(NOT_TRANSPARENT);
        }
        if st.pkt.dst.is_loopback() && !self.host.is_local(st.pkt.src) && !self.host.sysctls.route_localnet {
            return Some(LOOPBACK_CANNOT_ANSWER);
        }
        None
    }
}

/// Why IPv6 drops a packet arriving with the loopback address on another interface.
pub(crate) const LOOPBACK_V6_ARRIVING: &str = "the loopback address ::1 arriving on a non-loopback interface is dropped (ip6_rcv_core)";

/// Why the input route lookup drops a packet whose destination is (or PREROUTING made it) a
/// loopback address arriving on another interface.
pub(crate) fn martian_loopback(family: Family) -> &'static str {
    match family {
        Family::V4 => "martian destination: loopback address arriving on a non-loopback interface (net.ipv4.conf.all.route_localnet=0)",
        // IPv6 has no such drop: ::1 is looked up on the input device only (`Host::route_strict`).
        Family::V6 => "martian destination: no input route to ::1 on the input interface",
    }
}

/// Why forwarding drops a packet with TTL (hop limit) `ttl` <= 1.
pub(crate) fn ttl_exceeded(family: Family, ttl: u8) -> String {
    let (field, icmp) = match family {
        Family::V4 => ("TTL", "ICMP time exceeded"),
        Family::V6 => ("hop limit", "ICMPv6 time exceeded"),
    };
    format!("{field} {ttl} expires in forwarding: dropped before FORWARD, the router answers with {icmp}")
}

/// Why a TCP connection to a non-local address delivered to a non-transparent listener fails.
pub(crate) const NOT_TRANSPARENT: &str =
    "the listener is not transparent and cannot answer from the non-local destination address: the SYN is dropped (no IP_TRANSPARENT, no TPROXY)";

/// Why a TCP connection to a loopback address from a non-local source fails: the SYN-ACK would
/// leave the host with a loopback source.
pub(crate) const LOOPBACK_CANNOT_ANSWER: &str =
    "the listener cannot route its SYN-ACK back (a loopback address cannot answer a non-local source): the SYN is dropped";

/// Whether the reverse-path filter in `mode` (1 strict, 2 loose) passes a packet arriving on
/// `in_iface` whose source routes back through `back_dev` (`None`: no route back).
pub(crate) fn reverse_path_ok(mode: u8, back_dev: Option<&str>, in_iface: &str) -> bool {
    match (mode, back_dev) {
        (0, _) => true,
        (1, Some(dev)) => dev == in_iface,
        (_, Some(_)) => true,
        (_, None) => false,
    }
}

/// Why the reverse-path filter in `mode` drops a packet arriving on `in_iface`.
pub(crate) fn reverse_path_drop(mode: u8, in_iface: &str) -> String {
    format!("reverse-path filter (rp_filter={mode}) drops the packet arriving on {in_iface}: its source is not routed back that way")
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
            assert_eq!(b.reason, Some(ttl_exceeded(Family::V4, ttl)));
            assert!(b.reason.as_deref().unwrap().contains("ICMP time exceeded"));
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
        assert_eq!(b.reason, Some(ttl_exceeded(Family::V4, 1)));
        let b = one(rules, &router(), udp("10.0.0.1", "10.0.0.5", 53), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })), "{b:#?}");
        // Forwarding off: the route lookup fails first.
        let mut pkt = udp("10.0.0.1", "10.1.0.9", 53);
        pkt.ttl = 1;
        let b = one(TTL_COUNTERS, &pod().iface("eth1", &["10.1.0.5/24"]), pkt, &peer());
        assert!(b.reason.as_deref().unwrap().contains("forwarding is off"), "{b:#?}");
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
        assert_eq!(b.reason, Some(ttl_exceeded(Family::V6, 1)));
        assert!(b.reason.as_deref().unwrap().starts_with("hop limit 1"));
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
        assert_eq!(b.reason.as_deref(), Some(NOT_TRANSPARENT));
        // The same from a local process, looped back on lo.
        let mut pkt = tcp("0.0.0.0", "10.0.0.99", 8080);
        pkt.mark = 0x100;
        let b = one(rules, &host, pkt, &owner());
        assert_eq!(b.reason.as_deref(), Some(NOT_TRANSPARENT), "{b:#?}");
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
        // TPROXY assigns the socket: the connection is accepted.
        let tproxy = "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j TPROXY --on-port 8080 --tproxy-mark 0x100/0x100\nCOMMIT\n";
        let b = one(tproxy, &host, tcp("10.0.0.1", "10.0.0.99", 80), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 80, .. })), "{b:#?}");
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
        assert_eq!(b.reason.as_deref(), Some(martian_loopback(Family::V4)));
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
        assert_eq!(b.reason.as_deref(), Some(martian_loopback(Family::V4)));
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
            assert_eq!(b.reason.as_deref(), Some(LOOPBACK_V6_ARRIVING));
        }
        // DNAT to ::1 in PREROUTING: ::1 is looked up on the input device only (kernel referee):
        // no route there, or, with a default route out of eth0 and forwarding, back out of eth0.
        let dnat = "# Generated by ip6tables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -j DNAT --to-destination [::1]\nCOMMIT\n*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p udp -o eth0\nCOMMIT\n";
        for h in [&host, &h] {
            let b = one(dnat, h, udp("fd00::1", "fd00::5", 53), &peer());
            assert_eq!((hits(&b), b.verdict), (vec!["nat/PREROUTING#1".to_string()], Verdict::Drop));
            assert_eq!(b.reason.as_deref(), Some("no route for the arriving packet"));
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
        assert_eq!(b.reason, Some(reverse_path_drop(1, "eth0")));
        // Forwarded: checked before the TTL expires and before FORWARD.
        let mut pkt = udp("10.1.0.9", "10.1.0.7", 53);
        pkt.ttl = 1;
        let b = one(PRE_COUNTERS, &host, pkt, &peer());
        assert_eq!((hits(&b).len(), b.reason.clone()), (3, Some(reverse_path_drop(1, "eth0"))));
        // The routes checked first win: forwarding off, a martian destination, no route.
        host.sysctls.ip_forward = false;
        let b = one(PRE_COUNTERS, &host, udp("10.1.0.9", "10.1.0.7", 53), &peer());
        assert!(b.reason.as_deref().unwrap().contains("forwarding is off"), "{b:#?}");
        let b = one(PRE_COUNTERS, &host, udp("10.1.0.9", "127.0.0.1", 53), &peer());
        assert_eq!(b.reason.as_deref(), Some(martian_loopback(Family::V4)));
        // A PREROUTING DNAT happens first: its new destination is what the lookup routes.
        let dnat = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -j DNAT --to-destination 127.0.0.1\nCOMMIT\n";
        let b = one(dnat, &host, udp("10.1.0.9", "10.0.0.5", 53), &peer());
        assert_eq!((hits(&b), b.reason.as_deref()), (vec!["nat/PREROUTING#1".to_string()], Some(martian_loopback(Family::V4))));
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
        assert_eq!(b.reason, Some(reverse_path_drop(1, "eth0")), "looked up with mark 0");
        host.sysctls.src_valid_mark = true;
        let b = one(rules, &host, udp("10.1.0.9", "10.0.0.5", 53), &peer());
        assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })), "with the mark PREROUTING set: {b:#?}");
        // An arriving packet's own mark is not used either without src_valid_mark.
        host.sysctls.src_valid_mark = false;
        let mut pkt = udp("10.1.0.9", "10.0.0.5", 53);
        pkt.mark = 0x2;
        assert_eq!(one("", &host, pkt, &peer()).reason, Some(reverse_path_drop(1, "eth0")));
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
        assert_eq!(b.reason.as_deref(), Some(LOOPBACK_CANNOT_ANSWER));
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
        assert_eq!((b.reason.as_deref(), b.original_dst), (Some(LOOPBACK_CANNOT_ANSWER), Some(("10.0.0.77".parse().unwrap(), 8080))));
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
