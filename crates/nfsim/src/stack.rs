//! The host's network stack, written once for one packet and for regions of packets: local
//! output (`ip_output`: the route, OUTPUT with the re-routes of `ip_route_me_harder`,
//! POSTROUTING, out or back in on lo), arrival (`ip_rcv`: PREROUTING, the input route lookup of
//! `ip_route_input_slow` with its martian and reverse-path checks, `ip_forward`) and delivery
//! to a socket (`ip_local_deliver`, the SYN-ACK route of `inet_csk_route_req`).
//!
//! The stack asks its [`Domain`] every question about the packet (is the source local? which
//! route? which socket?). One packet has one answer to each; a region of packets splits into the
//! parts that answer each way. The walk of a table's chains is [`crate::traverse::walk`], driven
//! through the same domain; a second rule language would bring its own table walk and keep this
//! stack.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::hook::tables_at;
use crate::host::Host;
use crate::reason::{Reason, RerouteCause};
use crate::ruleset::{ChainId, Family, Hook, Rule, Ruleset, Table, TableName};
use crate::trace::{RuleRef, StepKind, Verdict};
use crate::traverse::{Assumption, Cursor, End, Enter, Options, Tested, Why, walk};

/// A question the stack asks about the current packet; the domain answers it by splitting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pred {
    /// The source is the unspecified address (an unbound socket).
    SrcUnspecified,
    /// The source is one of the host's addresses or unspecified.
    SrcLocalOrUnspecified,
    /// The source is a loopback address (127.0.0.0/8, ::1).
    SrcLoopback,
    /// The destination is a loopback address.
    DstLoopback,
    /// The source or the destination is a loopback address.
    EitherLoopback,
    /// The protocol has ports (`Packet::has_ports`).
    HasPorts,
    /// TCP.
    Tcp,
    /// TCP to an address that is not the host's.
    TcpToNonLocal,
    /// TCP to a loopback address from a source that is not the host's.
    TcpLoopbackFromNonLocal,
    /// The connection is new (what nat sees).
    New,
    /// The packet has a conntrack entry (not INVALID or UNTRACKED).
    Tracked,
    /// The packet has no conntrack entry yet (INVALID, in raw).
    NoEntry,
    /// The source port lies in the range.
    SportIn(u16, u16),
}

/// Which route lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteQ<'q> {
    /// `Host::route` of the destination with the packet's mark.
    Dst,
    /// The reverse-path lookup: the source as a destination, with the packet's mark only under
    /// `src_valid_mark`.
    Back,
    /// IPv6's lookup of `::1` on the input device only (`Host::route_strict`).
    LoopbackOn(&'q str),
}

/// A route as the stack reads it, in a domain's addresses (`A`) and next hops (`H`: the next
/// hop of one packet, or the gateway of a region's route).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Route<'h, A, H> {
    /// Delivered to this host.
    pub local: bool,
    /// The output device (a name of the host's).
    pub dev: &'h str,
    /// The preferred source.
    pub src: Option<A>,
    /// Where the packet goes next.
    pub hop: H,
}

/// The states a stage passes on: nearly always one, and then on the stack, not the heap.
pub(crate) type Few<T> = smallvec::SmallVec<[T; 2]>;

/// What NAT targets need to know about where the packet is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NatCtx<A> {
    /// Where REDIRECT sends the packet: the loopback address for locally generated packets, the
    /// primary address of the input interface for arriving ones.
    pub redirect_to: Option<A>,
    /// The source MASQUERADE uses: the output route's preferred source.
    pub masquerade_src: Option<A>,
}

impl<A> NatCtx<A> {
    pub(crate) fn none() -> NatCtx<A> {
        NatCtx { redirect_to: None, masquerade_src: None }
    }
}

/// How a packet's way through the stack ends.
#[derive(Clone, Debug)]
pub(crate) enum Fin<R> {
    /// Received locally: by socket `sock` of the host, or without ports (`None`).
    Local(Option<usize>),
    /// Sent out along the route.
    Egress(R),
    /// Stopped with a verdict: by a rule, a policy or the stack.
    Stop(Verdict, Option<RuleRef>, Reason),
}

/// A rule set loaded on a host, for packets of one family: what every domain runs on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Loaded<'a> {
    /// The rule set.
    pub ruleset: &'a Ruleset,
    /// The host.
    pub host: &'a Host,
    /// The options.
    pub opts: &'a Options,
    /// The family of the packets.
    pub family: Family,
    /// Whether conntrack is on (`conntrack_on`, computed once).
    pub conntrack: bool,
}

/// What a branch has gathered on its way, in any domain: the socket TPROXY assigned, its
/// probability, and the assumptions it rests on.
#[derive(Clone, Debug)]
pub(crate) struct Ledger<A, P> {
    /// The socket TPROXY assigned (address, port).
    pub tproxy: Option<(A, P)>,
    /// The product of the `statistic` chances taken.
    pub probability: f64,
    /// Rules whose outcome was assumed.
    pub assumptions: Vec<Assumption>,
}

impl<A, P> Default for Ledger<A, P> {
    fn default() -> Self {
        Ledger { tproxy: None, probability: 1.0, assumptions: Vec::new() }
    }
}

/// The per-branch state of the packets the stack carries.
pub(crate) trait Flow: Clone {
    /// An address: the packet's own, or in terms of the input packets.
    type Addr: Copy + PartialEq + std::fmt::Debug;
    /// A port, likewise.
    type Port: Copy + PartialEq + std::fmt::Debug;
    /// The conntrack state as raw hides it.
    type Ct: Copy;

    /// The input interface.
    fn in_iface(&self) -> Option<&str>;
    /// Sets the output interface.
    fn set_out_iface(&mut self, dev: Option<&str>);
    /// The packet leaves on lo and comes back in: input lo, no output, the entry confirmed.
    fn loop_back(&mut self);
    /// The TTL (hop limit).
    fn ttl(&self) -> u8;
    /// The TTL, to change.
    fn ttl_mut(&mut self) -> &mut u8;
    /// The TOS byte (traffic class), to change.
    fn tos_mut(&mut self) -> &mut u8;
    /// The current source.
    fn src(&self) -> Self::Addr;
    /// The current source port.
    fn sport(&self) -> Self::Port;
    /// The current destination.
    fn dst(&self) -> Self::Addr;
    /// The current destination port.
    fn dport(&self) -> Self::Port;
    /// An unbound socket's source is chosen: the packet's source and the original one.
    fn bind_src(&mut self, a: Self::Addr);
    /// What the branch has gathered.
    fn ledger(&self) -> &Ledger<Self::Addr, Self::Port>;
    /// What the branch has gathered, to add to.
    fn ledger_mut(&mut self) -> &mut Ledger<Self::Addr, Self::Port>;
    /// The socket TPROXY assigned.
    fn tproxy(&self) -> Option<(Self::Addr, Self::Port)> {
        self.ledger().tproxy
    }
    /// TPROXY assigns a socket.
    fn set_tproxy(&mut self, at: (Self::Addr, Self::Port)) {
        self.ledger_mut().tproxy = Some(at);
    }
    /// DNAT: the destination becomes `(addr, port)`.
    fn dnat(&mut self, addr: Self::Addr, port: Self::Port);
    /// SNAT: the source becomes `(addr, port)`.
    fn snat(&mut self, addr: Self::Addr, port: Self::Port);
    /// Raw runs before conntrack: the state becomes INVALID; returns the real one.
    fn hide_ct(&mut self) -> Self::Ct;
    /// After raw: the real state is back, unless the packet became UNTRACKED.
    fn restore_ct(&mut self, real: Self::Ct);
    /// The packet becomes UNTRACKED (`CT --notrack`).
    fn untrack(&mut self);
    /// Multiplies the branch's probability.
    fn scale(&mut self, p: f64) {
        self.ledger_mut().probability *= p;
    }
    /// Records an assumed outcome.
    fn assume(&mut self, a: Assumption) {
        self.ledger_mut().assumptions.push(a);
    }
    /// The kernel picks the NAT address or port within a range; the first is taken.
    fn note_range(&mut self) {}
}

/// The parts of a state, each with its answer: one for one packet, any number for a region.
pub(crate) enum Parts<T> {
    /// One part.
    One(Option<T>),
    /// Several.
    Many(std::vec::IntoIter<T>),
}

impl<T> Iterator for Parts<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match self {
            Parts::One(t) => t.take(),
            Parts::Many(it) => it.next(),
        }
    }
}

impl<T> From<Vec<T>> for Parts<T> {
    fn from(v: Vec<T>) -> Parts<T> {
        Parts::Many(v.into_iter())
    }
}

/// The parts of a state with their route (`None`: no route).
pub(crate) type Routed<'h, S, H> = Parts<(S, Option<Route<'h, <S as Flow>::Addr, H>>)>;

/// What the stack runs on: one packet, or a region of packets. Every question splits the state
/// into the parts answering each way (one part for one packet).
pub(crate) trait Domain<'a> {
    /// The state of a branch.
    type State: Flow;
    /// The domain's mark on a walk's cursor.
    type Lane: Copy + Default + std::fmt::Debug;
    /// A route.
    type Hop: Clone;
    /// What mangle OUTPUT compares to decide on a re-route.
    type Key;

    /// The rule set and host the domain runs on.
    fn loaded(&self) -> &Loaded<'a>;
    /// The rule set.
    fn ruleset(&self) -> &'a Ruleset {
        self.loaded().ruleset
    }
    /// The host.
    fn host(&self) -> &'a Host {
        self.loaded().host
    }
    /// The options.
    fn opts(&self) -> &'a Options {
        self.loaded().opts
    }
    /// The family of the packets.
    fn family(&self) -> Family {
        self.loaded().family
    }
    /// Whether conntrack is on.
    fn conntrack(&self) -> bool {
        self.loaded().conntrack
    }
    /// An address as the domain holds it.
    fn lift(&self, a: IpAddr) -> <Self::State as Flow>::Addr;

    /// Splits `st` by `p`: (the packets for which it holds, the others).
    fn split(&mut self, st: Self::State, p: Pred) -> (Option<Self::State>, Option<Self::State>);
    /// The route lookup `q`, per part of `st`.
    fn route(&mut self, st: Self::State, q: RouteQ<'_>) -> Routed<'a, Self::State, Self::Hop>;
    /// The socket lookup (`Host::socket_for`) at `at`, per part of `st`: the socket's index.
    fn socket(&mut self, st: Self::State, at: (<Self::State as Flow>::Addr, <Self::State as Flow>::Port)) -> Parts<(Self::State, Option<usize>)>;
    /// What mangle OUTPUT compares, before the table.
    fn route_key(&self, st: &Self::State) -> Self::Key;
    /// After OUTPUT table `after`: (the packets routed again, those that keep their route).
    fn rerouted(&mut self, st: Self::State, after: TableName, before: &Self::Key) -> (Option<Self::State>, Option<Self::State>);
    /// The end of a branch.
    fn finish(&mut self, st: Self::State, fin: Fin<Route<'a, <Self::State as Flow>::Addr, Self::Hop>>);

    // ----- the chain walk (`traverse::walk`) -----

    /// The most steps one table's walk takes.
    fn step_budget(&self) -> usize;
    /// Before the rule at `cur`: where the state goes (the domain's shortcuts over rules that
    /// cannot match).
    fn enter(&mut self, table: &'a Table, hook: Hook, cur: &Cursor<Self::Lane>, st: &mut Self::State) -> Enter<Self::State, Self::Lane>;
    /// Tests `rule` (at `cur`) on `st`, leaving in `st` the packets it may match.
    fn test_rule(&mut self, table: &'a Table, hook: Hook, cur: &Cursor<Self::Lane>, rule: &'a Rule, st: &mut Self::State) -> Tested<Self::State>;
    /// Whether `st` may fork once more (the branch cap, per packet); registers the fork.
    fn fork(&mut self, st: &mut Self::State) -> bool;
    /// Records a step of the walk (the trace of one packet).
    fn record(&self, st: &mut Self::State, table: &Table, hook: Hook, chain: ChainId, kind: StepKind, rule: u32);
    /// The name of `chain` of `table` for a trace or a rule reference (a domain may share one
    /// copy among all its references).
    fn chain_name(&self, table: &'a Table, chain: ChainId) -> std::sync::Arc<str> {
        table[chain].name.as_ref().into()
    }

    // ----- what targets ask (`targets::effect`) -----

    /// A port as the domain holds it.
    fn lift_port(&self, p: u16) -> <Self::State as Flow>::Port;
    /// The mark becomes `f(mark)`; `Err(why)` when the domain cannot follow `f`.
    fn map_mark(&self, st: &mut Self::State, f: impl Fn(u32) -> u32) -> Result<(), String>;
    /// (mark, ctmark) become `f(mark, ctmark)`; `Err(why)` when the domain cannot follow `f`.
    fn map_marks(&self, st: &mut Self::State, f: impl Fn(u32, u32) -> (u32, u32)) -> Result<(), String>;
    /// The current destination (`dst`) or source as one address, when it is one.
    fn one_addr(&self, st: &Self::State, dst: bool) -> Option<IpAddr>;
}

type Addr<'a, D> = <<D as Domain<'a>>::State as Flow>::Addr;
type RouteOf<'a, D> = Route<'a, Addr<'a, D>, <D as Domain<'a>>::Hop>;

fn loopback(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// Finishes a branch the stack stops.
fn stop<'a, D: Domain<'a>>(d: &mut D, st: D::State, verdict: Verdict, reason: Reason) {
    d.finish(st, Fin::Stop(verdict, None, reason));
}

/// Keeps the parts of `st` for which `p` does not hold; stops the others with `reason`.
fn refuse<'a, D: Domain<'a>>(d: &mut D, st: D::State, p: Pred, verdict: Verdict, reason: Reason) -> Option<D::State> {
    let (bad, fine) = d.split(st, p);
    if let Some(bad) = bad {
        stop(d, bad, verdict, reason);
    }
    fine
}

/// Every table of `hook` in order; returns the branches that got through. `looped`: the packet
/// came back in on `lo` after local output (it carries the conntrack entry made on its way out,
/// so nat is skipped and raw sees its real state).
fn run_hook<'a, D: Domain<'a>>(d: &mut D, st: D::State, hook: Hook, nat: NatCtx<Addr<'a, D>>, looped: bool) -> Few<D::State> {
    let mut alive: Few<D::State> = smallvec::smallvec![st];
    let mut next = Few::new();
    for &tname in tables_at(hook, d.opts().backend) {
        for st in alive.drain(..) {
            run_table(d, st, hook, tname, nat, looped, &mut next);
        }
        std::mem::swap(&mut alive, &mut next);
    }
    alive
}

/// Table `tname` at `hook`; finishes the branches it drops, rejects or queues and adds those it
/// accepts to `alive`.
#[allow(clippy::too_many_arguments)]
fn run_table<'a, D: Domain<'a>>(d: &mut D, st: D::State, hook: Hook, tname: TableName, nat: NatCtx<Addr<'a, D>>, looped: bool, alive: &mut Few<D::State>) {
    let Some(table) = d.ruleset().table(d.family(), tname) else { return alive.push(st) };
    let mut st = st;
    if tname == TableName::Nat {
        // nat sees only the first packet of a connection (and none without conntrack, and none
        // looped back on lo, whose binding exists).
        if looped || !d.conntrack() {
            return alive.push(st);
        }
        let (new, other) = d.split(st, Pred::New);
        alive.extend(other);
        let Some(new) = new else { return };
        st = new;
    }
    // raw (priority -300) runs before conntrack (-200): the packet has no entry yet, so the
    // state matches see INVALID (UNTRACKED once `CT --notrack` ran) and connmark and CONNMARK
    // find no connection. A looped-back packet already carries its entry.
    let before_conntrack = tname == TableName::Raw && !looped;
    let real = before_conntrack.then(|| st.hide_ct());
    for (mut st, end) in walk(d, table, hook, &nat, st) {
        if let Some(real) = real {
            st.restore_ct(real);
        }
        match end {
            End::Accept => alive.push(st),
            End::Drop(by) => {
                let why = by.clone().map_or(Reason::Policy { table: tname, hook }, Reason::Dropped);
                d.finish(st, Fin::Stop(Verdict::Drop, by, why));
            }
            End::Reject(by) => d.finish(st, Fin::Stop(Verdict::Reject, Some(by.clone()), Reason::Rejected(by))),
            End::Queue(by) => d.finish(st, Fin::Stop(Verdict::Queue, Some(by.clone()), Reason::Queued(by))),
            End::Undecidable(by, why) => {
                st.assume(Assumption { rule: by.clone(), matched: true, reason: Why::Unknown(why.clone()) });
                d.finish(st, Fin::Stop(Verdict::Drop, Some(by.clone()), Reason::Undecidable { by, why }));
            }
        }
    }
}

/// The source MASQUERADE picks (`inet_select_addr` with universe scope): the route's source, or
/// for `lo` in IPv4, whose addresses are host-scoped, the first address of another interface.
/// IPv6 (`ipv6_dev_get_saddr`) keeps the route's source, `::1` on lo.
fn masquerade_src<'a, D: Domain<'a>>(d: &D, route: &RouteOf<'a, D>) -> Option<Addr<'a, D>> {
    if route.dev != "lo" || d.family() == Family::V6 {
        return route.src;
    }
    d.host().universe_addr(d.family() == Family::V4).map(|a| d.lift(a))
}

/// A locally generated packet: route, OUTPUT, re-route, POSTROUTING, then out or back in on `lo`.
pub(crate) fn local_out<'a, D: Domain<'a>>(d: &mut D, st: D::State) {
    for (st, route) in d.route(st, RouteQ::Dst) {
        match route {
            None => stop(d, st, Verdict::Drop, Reason::NoRoute),
            Some(route) => local_out_routed(d, st, route),
        }
    }
}

fn local_out_routed<'a, D: Domain<'a>>(d: &mut D, st: D::State, route: RouteOf<'a, D>) {
    let mut st = st;
    if !d.host().sysctls.ip_nonlocal_bind {
        let (fine, bad) = d.split(st, Pred::SrcLocalOrUnspecified);
        if let Some(bad) = bad {
            stop(d, bad, Verdict::Drop, Reason::SourceNotLocal);
        }
        let Some(fine) = fine else { return };
        st = fine;
    }
    // IPv4 refuses a loopback source on a non-loopback route (`__mkroute_output`); IPv6 has no
    // such check: the packet leaves, and the receiver drops it (`ip6_rcv_core`).
    if d.family() == Family::V4 && !route.local {
        let Some(fine) = refuse(d, st, Pred::SrcLoopback, Verdict::Drop, Reason::LoopbackSourceLeaves) else { return };
        st = fine;
    }
    let (unbound, bound) = d.split(st, Pred::SrcUnspecified);
    for (mut st, is_unbound) in unbound.map(|s| (s, true)).into_iter().chain(bound.map(|s| (s, false))) {
        if is_unbound {
            // The route's preferred source; a local route without one gives the destination.
            let chosen = if route.local { route.src.or(Some(st.dst())) } else { route.src };
            if let Some(c) = chosen {
                st.bind_src(c);
            }
        }
        st.set_out_iface(Some(route.dev));
        let nat = NatCtx { redirect_to: Some(d.lift(loopback(d.family()))), masquerade_src: route.src };
        // Every OUTPUT table sees the out device of the first route (the hook's `state->out`); a
        // re-route after mangle or nat OUTPUT changes the route POSTROUTING and delivery use.
        let mut alive: Few<_> = smallvec::smallvec![(st, route.clone())];
        let (mut next, mut passed) = (Few::new(), Few::new());
        for &tname in tables_at(Hook::Output, d.opts().backend) {
            for (st, route) in alive.drain(..) {
                let before = d.route_key(&st);
                run_table(d, st, Hook::Output, tname, nat, false, &mut passed);
                for st in passed.drain(..) {
                    let (again, keep) = d.rerouted(st, tname, &before);
                    next.extend(keep.map(|s| (s, route.clone())));
                    if let Some(st) = again {
                        next.extend(reroute(d, st, tname));
                    }
                }
            }
            std::mem::swap(&mut alive, &mut next);
        }
        for (mut st, route) in alive {
            st.set_out_iface(Some(route.dev));
            let nat = NatCtx { redirect_to: None, masquerade_src: masquerade_src(d, &route) };
            for mut st in run_hook(d, st, Hook::Postrouting, nat, false) {
                if route.local {
                    // Out on lo and back in: the receive side skips nat (the binding exists).
                    st.loop_back();
                    arrive(d, st, true);
                } else {
                    d.finish(st, Fin::Egress(route.clone()));
                }
            }
        }
    }
}

/// The new route of packets re-routed after OUTPUT table `after`; those whose re-route fails
/// are dropped there (no later table sees them).
fn reroute<'a, D: Domain<'a>>(d: &mut D, st: D::State, after: TableName) -> Few<(D::State, RouteOf<'a, D>)> {
    let mut out = Few::new();
    for (st, route) in d.route(st, RouteQ::Dst) {
        let Some(route) = route else {
            stop(d, st, Verdict::Drop, Reason::RerouteFails { after, cause: RerouteCause::NoRoute });
            continue;
        };
        let st = if d.family() == Family::V4 && !route.local {
            let why = Reason::RerouteFails { after, cause: RerouteCause::LoopbackSource };
            let Some(fine) = refuse(d, st, Pred::SrcLoopback, Verdict::Drop, why) else { continue };
            fine
        } else {
            st
        };
        out.push((st, route));
    }
    out
}

/// An arriving packet (or one looped back on `lo` when `looped`).
pub(crate) fn arrive<'a, D: Domain<'a>>(d: &mut D, st: D::State, looped: bool) {
    // The host's own name for the interface, when it has one (no copy per packet).
    let name = st.in_iface().unwrap_or_default();
    let in_iface: std::borrow::Cow<'a, str> = match d.host().interface(name) {
        Some(i) => std::borrow::Cow::Borrowed(i.name.as_str()),
        None => std::borrow::Cow::Owned(name.to_string()),
    };
    let from_outside = !looped && in_iface != "lo";
    let mut st = st;
    if from_outside && d.family() == Family::V6 {
        // `ip6_rcv_core`, before PREROUTING: ::1 never arrives on another interface.
        let Some(fine) = refuse(d, st, Pred::EitherLoopback, Verdict::Drop, Reason::LoopbackV6Arriving) else { return };
        st = fine;
    }
    let nat = NatCtx { redirect_to: d.host().primary_addr(&in_iface, d.family() == Family::V4).map(|a| d.lift(a)), masquerade_src: None };
    for st in run_hook(d, st, Hook::Prerouting, nat, looped) {
        if looped {
            // `ip_rcv_finish`: a packet looped back on lo keeps the (local) route chosen on its
            // way out; no input route lookup, so no martian or reverse-path check, and it is
            // delivered locally whatever its destination.
            local_in(d, st, true);
        } else {
            route_input(d, st, &in_iface, from_outside);
        }
    }
}

/// The input route lookup (`ip_route_input_slow`) of a packet PREROUTING accepted, and where it
/// sends the packet: the martian check on the destination PREROUTING left, the route (with the
/// mark PREROUTING left), the reverse-path check for a local or forwarded packet
/// (`fib_validate_source`), then INPUT, or FORWARD and POSTROUTING.
fn route_input<'a, D: Domain<'a>>(d: &mut D, st: D::State, in_iface: &str, from_outside: bool) {
    let mut routed = Vec::new();
    let mut st = Some(st);
    if from_outside && d.family() == Family::V4 && !d.host().sysctls.route_localnet {
        st = st.and_then(|st| refuse(d, st, Pred::DstLoopback, Verdict::Drop, Reason::MartianLoopback(Family::V4)));
    }
    if from_outside && d.family() == Family::V6 {
        // IPv6 looks ::1 up on the input device only (the kernel referee saw a PREROUTING DNAT to
        // ::1 forwarded back out of eth0).
        if let Some(s) = st.take() {
            let (lo, other) = d.split(s, Pred::DstLoopback);
            if let Some(lo) = lo {
                routed.extend(d.route(lo, RouteQ::LoopbackOn(in_iface)));
            }
            st = other;
        }
    }
    if let Some(st) = st {
        routed.extend(d.route(st, RouteQ::Dst));
    }
    for (st, route) in routed {
        let Some(r) = route else {
            stop(d, st, Verdict::Drop, Reason::NoInputRoute);
            continue;
        };
        let local = r.local || st.tproxy().is_some();
        if !local && !d.host().sysctls.ip_forward {
            // Checked before the source (`ip_route_input_slow`: EHOSTUNREACH).
            stop(d, st, Verdict::Drop, Reason::ForwardingOff);
            continue;
        }
        for st in reverse_path(d, st, in_iface) {
            if local {
                local_in(d, st, false);
                continue;
            }
            forward(d, st, &r);
        }
    }
}

/// `ip_forward`/`ip6_forward`: a packet that would leave with TTL 0 dies here, before FORWARD;
/// the others go on with the TTL decremented, through FORWARD and POSTROUTING.
fn forward<'a, D: Domain<'a>>(d: &mut D, mut st: D::State, r: &RouteOf<'a, D>) {
    let ttl = st.ttl();
    if ttl <= 1 {
        return stop(d, st, Verdict::Drop, Reason::TtlExceeded { family: d.family(), ttl });
    }
    *st.ttl_mut() -= 1;
    st.set_out_iface(Some(r.dev));
    for st in run_hook(d, st, Hook::Forward, NatCtx::none(), false) {
        let nat = NatCtx { redirect_to: None, masquerade_src: r.src };
        for st in run_hook(d, st, Hook::Postrouting, nat, false) {
            d.finish(st, Fin::Egress(r.clone()));
        }
    }
}

/// The reverse-path filter (`fib_validate_source`, IPv4 only): the source is looked up as a
/// destination; returns the packets it lets through and finishes the others.
fn reverse_path<'a, D: Domain<'a>>(d: &mut D, st: D::State, in_iface: &str) -> Vec<D::State> {
    let mode = d.host().sysctls.rp_filter;
    if mode == 0 || d.family() != Family::V4 {
        return vec![st];
    }
    let mut ok = Vec::new();
    for (st, back) in d.route(st, RouteQ::Back) {
        if reverse_path_ok(mode, back.as_ref().map(|r| r.dev), in_iface) {
            ok.push(st);
        } else {
            stop(d, st, Verdict::Drop, Reason::ReversePath { mode, iface: in_iface.to_string() });
        }
    }
    ok
}

/// Whether the reverse-path filter in `mode` (1 strict, 2 loose) passes a packet arriving on
/// `in_iface` whose source routes back through `back_dev` (`None`: no route back).
fn reverse_path_ok(mode: u8, back_dev: Option<&str>, in_iface: &str) -> bool {
    match (mode, back_dev) {
        (0, _) => true,
        (1, Some(dev)) => dev == in_iface,
        (_, Some(_)) => true,
        (_, None) => false,
    }
}

/// INPUT and delivery to a local socket.
fn local_in<'a, D: Domain<'a>>(d: &mut D, st: D::State, looped: bool) {
    for st in run_hook(d, st, Hook::Input, NatCtx::none(), looped) {
        let (with_ports, without) = d.split(st, Pred::HasPorts);
        if let Some(st) = without {
            d.finish(st, Fin::Local(None));
        }
        let Some(st) = with_ports else { continue };
        let at = st.tproxy().unwrap_or((st.dst(), st.dport()));
        for (st, sock) in d.socket(st, at) {
            match sock {
                Some(i) => {
                    let transparent = st.tproxy().is_some() || d.host().sockets[i].transparent;
                    if let Some(st) = synack_route(d, st, transparent) {
                        d.finish(st, Fin::Local(Some(i)));
                    }
                }
                None => {
                    let (tcp, other) = d.split(st, Pred::Tcp);
                    if let Some(t) = tcp {
                        stop(d, t, Verdict::Accept, Reason::NoListener { tcp: true });
                    }
                    if let Some(o) = other {
                        stop(d, o, Verdict::Accept, Reason::NoListener { tcp: false });
                    }
                }
            }
        }
    }
}

/// The TCP connections a listener cannot accept because its SYN-ACK has no route back (IPv4;
/// IPv6's output route lookup checks neither): the SYN-ACK goes from the packet's destination
/// to its source (both after NAT), and that lookup (`inet_csk_route_req` →
/// `ip_route_output_flow`) fails when the destination is not an address of this host and the
/// listener is neither transparent nor assigned by TPROXY (no `FLOWI_FLAG_ANYSRC`), and when
/// the destination is a loopback address but the source is not local (`__mkroute_output`:
/// EINVAL, unless `route_localnet`). Finishes those; returns the others.
fn synack_route<'a, D: Domain<'a>>(d: &mut D, st: D::State, transparent: bool) -> Option<D::State> {
    if d.family() != Family::V4 {
        return Some(st);
    }
    let mut st = st;
    if !transparent {
        st = refuse(d, st, Pred::TcpToNonLocal, Verdict::Accept, Reason::NotTransparent)?;
    }
    if d.host().sysctls.route_localnet {
        return Some(st);
    }
    refuse(d, st, Pred::TcpLoopbackFromNonLocal, Verdict::Accept, Reason::LoopbackCannotAnswer)
}
