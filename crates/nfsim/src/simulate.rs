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

fn loopback(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

impl Sim<'_> {
    /// Runs every table of `hook` in order; returns the branches that got through.
    fn run_hook(&mut self, st: State, hook: Hook, nat: NatCtx, skip_nat: bool) -> Vec<State> {
        let mut alive = vec![st];
        for &tname in tables_at(hook, self.opts.backend) {
            if tname == TableName::Nat && (skip_nat || !self.conntrack) {
                continue;
            }
            let Some(table) = self.ruleset.table(self.family, tname) else { continue };
            let env = Env { host: self.host, hook, nat, conntrack: self.conntrack, opts: self.opts };
            let mut next = Vec::new();
            for st in alive {
                if tname == TableName::Nat && st.pkt.ct_state != CtState::New {
                    next.push(st);
                    continue;
                }
                for (st, end) in walk(table, &env, st) {
                    match end {
                        TableEnd::Accept => next.push(st),
                        TableEnd::Drop(by) => self.finish(
                            st,
                            Verdict::Drop,
                            None,
                            by.clone(),
                            Some(by.map_or_else(|| format!("{tname} {} policy DROP", hook.chain_name()), |r| format!("dropped by {r}"))),
                        ),
                        TableEnd::Reject(by) => self.finish(st, Verdict::Reject, None, Some(by.clone()), Some(format!("rejected by {by}"))),
                        TableEnd::Queue(by) => self.finish(st, Verdict::Queue, None, Some(by.clone()), Some(format!("queued by {by}"))),
                        TableEnd::Undecidable(by, why) => {
                            let mut st = st;
                            st.assumptions.push(Assumption { rule: by.clone(), matched: true, reason: why.clone() });
                            self.finish(st, Verdict::Drop, None, Some(by.clone()), Some(format!("undecidable: {why} ({by})")));
                        }
                    }
                }
            }
            if next.len() > self.opts.max_branches {
                next.truncate(self.opts.max_branches);
                self.truncated = true;
            }
            alive = next;
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
        for mut st in self.run_hook(st, Hook::Output, nat, false) {
            // ip_route_me_harder: a changed destination or mark routes the packet again.
            let Some(route) = self.host.route(st.pkt.dst, st.pkt.mark) else {
                self.finish(st, Verdict::Drop, None, None, Some("no route after OUTPUT rewrote the packet".into()));
                continue;
            };
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
