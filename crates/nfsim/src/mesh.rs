//! The mesh step: what a process of a scenario does with a connection it accepted (an application
//! ends the call; an Envoy-style sidecar proxies it onwards, or refuses it), when a connection has
//! come back to a state it was in (a loop), and how many hops a request may take.
//!
//! The step is written once, over a [`Domain`] of connection addresses: [`Concrete`] addresses
//! and ports for `path`, which follows one connection, and the symbolic values `verify` follows
//! whole classes of connections with. A step splits a set of connections into pieces, each with
//! its [`Next`]; for one concrete connection there is exactly one piece.
//!
//! ```
//! use nfsim::mesh::{Accepted, Next, Trail, accept_one};
//! use nfsim::topology::{Scenario, builtin};
//!
//! let scenario = Scenario::from_text(builtin("istio-fortio").unwrap()).unwrap();
//! let envoy = scenario.hosts[0].processes.iter().find(|p| p.name == "envoy").unwrap();
//! // The application's call to the service, redirected to Envoy's outbound port 15001.
//! let vip = "10.96.0.10".parse().unwrap();
//! let accepted = Accepted { host: "client", process: envoy, listener: 15001, original: (vip, 8080), current: ("127.0.0.1".parse().unwrap(), 15001) };
//! let Next::Connect(next) = accept_one(&scenario, &Trail::new(), &accepted).unwrap() else { panic!() };
//! // Envoy connects, from its own uid, to the service's first endpoint.
//! assert_eq!((next.process.as_str(), next.uid, next.target), ("envoy", 1337, ("10.244.2.10".parse().unwrap(), 8080)));
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::topology::{Process, Role, Scenario, Service};

/// The address a sidecar's inbound connections come from (Istio's `127.0.0.6`, which lets the
/// rules tell them from the application's own loopback traffic).
pub const INBOUND_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6));

/// The most hops a request may take.
pub const HOP_BUDGET: usize = 64;

/// The values a connection's destination is described with, and the sets of connections a step
/// splits: one connection ([`Concrete`]), or a class of them.
pub trait Domain {
    /// A destination address.
    type Addr: Copy + PartialEq + fmt::Debug;
    /// A port.
    type Port: Copy + PartialEq + fmt::Debug;
    /// A set of connections.
    type Set: Clone + fmt::Debug;

    /// A fixed address.
    fn addr(&self, a: IpAddr) -> Self::Addr;
    /// A fixed port.
    fn port(&self, p: u16) -> Self::Port;
    /// True when `s` holds no connection.
    fn is_empty(&self, s: &Self::Set) -> bool;
    /// The connections of `s` for which `a` and `b` are the same address.
    fn addr_eq(&self, s: &Self::Set, a: Self::Addr, b: Self::Addr) -> Self::Set;
    /// The connections of `s` for which `a` and `b` are the same port.
    fn port_eq(&self, s: &Self::Set, a: Self::Port, b: Self::Port) -> Self::Set;
    /// The connections of `s` that are not in `t`.
    fn minus(&self, s: &Self::Set, t: &Self::Set) -> Self::Set;
}

/// An address and a port of domain `D`.
pub type Dest<D> = (<D as Domain>::Addr, <D as Domain>::Port);

/// One connection with concrete addresses; a set is whether that connection is in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Concrete;

impl Domain for Concrete {
    type Addr = IpAddr;
    type Port = u16;
    type Set = bool;

    fn addr(&self, a: IpAddr) -> IpAddr {
        a
    }

    fn port(&self, p: u16) -> u16 {
        p
    }

    fn is_empty(&self, s: &bool) -> bool {
        !*s
    }

    fn addr_eq(&self, s: &bool, a: IpAddr, b: IpAddr) -> bool {
        *s && a == b
    }

    fn port_eq(&self, s: &bool, a: u16, b: u16) -> bool {
        *s && a == b
    }

    fn minus(&self, s: &bool, t: &bool) -> bool {
        *s && !*t
    }
}

/// A connection a process opens.
#[derive(Clone, Debug, PartialEq)]
pub struct Conn<D: Domain> {
    /// The process's host.
    pub host: String,
    /// The process.
    pub process: String,
    /// The uid it connects with.
    pub uid: u32,
    /// The gid it connects with.
    pub gid: u32,
    /// The address its socket is bound to (`None`: unbound, the kernel picks).
    pub src: Option<IpAddr>,
    /// Where it connects to.
    pub target: Dest<D>,
}

impl<D: Domain> Conn<D> {
    /// A connection `process` on `host` opens from an unbound socket to `target`.
    pub fn new(host: &str, process: &Process, target: Dest<D>) -> Conn<D> {
        Conn { host: host.into(), process: process.name.clone(), uid: process.uid, gid: process.gid, src: None, target }
    }
}

/// Connections a process accepted.
#[derive(Clone, Copy, Debug)]
pub struct Accepted<'a, D: Domain> {
    /// The process's host.
    pub host: &'a str,
    /// The process.
    pub process: &'a Process,
    /// The port of the listening socket that accepted them.
    pub listener: u16,
    /// What `SO_ORIGINAL_DST` returns on them.
    pub original: Dest<D>,
    /// Their destination as accepted (after NAT).
    pub current: Dest<D>,
}

impl<D: Domain> Accepted<'_, D> {
    /// The state that makes a hop repeat.
    pub fn key(&self) -> LoopKey<D> {
        LoopKey { host: self.host.into(), process: self.process.name.clone(), original: self.original, current: self.current }
    }
}

/// What makes a hop repeat: the same process on the same host holds a connection with the same
/// original and current destination as before.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopKey<D: Domain> {
    /// The accepting host.
    pub host: String,
    /// The accepting process.
    pub process: String,
    /// The original destination.
    pub original: Dest<D>,
    /// The current destination.
    pub current: Dest<D>,
}

/// The hops a request has taken so far, as the states their connections were accepted in.
#[derive(Clone, Debug)]
pub struct Trail<D: Domain> {
    keys: Vec<LoopKey<D>>,
}

impl<D: Domain> Default for Trail<D> {
    fn default() -> Self {
        Trail { keys: Vec::new() }
    }
}

impl<D: Domain> Trail<D> {
    /// No hop yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The states, a hop each, in order.
    pub fn keys(&self) -> &[LoopKey<D>] {
        &self.keys
    }

    /// Adds a hop.
    pub fn push(&mut self, key: LoopKey<D>) {
        self.keys.push(key);
    }

    /// Takes back the last hop.
    pub fn pop(&mut self) -> Option<LoopKey<D>> {
        self.keys.pop()
    }

    /// Whether another connection may be made: not once [`HOP_BUDGET`] hops were taken.
    pub fn budget(&self) -> Result<(), HopBudget> {
        if self.keys.len() >= HOP_BUDGET { Err(HopBudget) } else { Ok(()) }
    }
}

/// The hop budget is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HopBudget;

impl fmt::Display for HopBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {HOP_BUDGET} hops")
    }
}

/// What happens next to connections a process accepted.
#[derive(Clone, Debug, PartialEq)]
pub enum Next<D: Domain> {
    /// They are back in the state of hop `cycle_start` of the trail: the hops from there on repeat
    /// forever.
    Loop {
        /// Index of the first hop of the cycle.
        cycle_start: usize,
    },
    /// The process refuses them.
    Refuse(RefuseReason),
    /// The process opens a connection of its own for each.
    Connect(Conn<D>),
    /// An application has them: the call ends here (in a flow, the application goes on with its
    /// next call).
    End,
}

/// Why a process refuses a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// A sidecar does not proxy a connection addressed to one of its own listening ports (Istio's
    /// listeners send those to a black hole rather than proxying them back to themselves).
    OwnPort(u16),
    /// A sidecar has no endpoint address to proxy a service's connection to.
    NoEndpoint {
        /// The service.
        service: String,
    },
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefuseReason::OwnPort(p) => write!(f, "refuses to proxy a connection addressed to its own port {p}"),
            RefuseReason::NoEndpoint { service } => write!(f, "has no endpoint address to proxy service `{service}` to"),
        }
    }
}

/// A scenario that cannot be followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeshError {
    /// A sidecar proxies inbound connections to its pod's address, and the pod has none.
    NoPodAddress {
        /// The pod.
        host: String,
    },
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeshError::NoPodAddress { host } => write!(f, "pod `{host}` without an address"),
        }
    }
}

impl std::error::Error for MeshError {}

impl From<MeshError> for String {
    fn from(e: MeshError) -> String {
        e.to_string()
    }
}

/// The pieces of a set of connections, each with what happens next to it; the pieces are disjoint
/// and none is empty.
pub type Step<D> = Vec<(<D as Domain>::Set, Next<D>)>;

/// What the process does with the connections `set` it accepted as `a`, after the hops of `trail`.
///
/// In order: connections back in a state of the trail loop; a sidecar refuses those addressed to
/// one of its own ports; on its outbound port it connects, from its own uid and gid, to their
/// original destination (for a service's virtual IP, the service's first endpoint); on its
/// inbound port it connects from [`INBOUND_SOURCE`] to their original port on the pod's own
/// address. Anything else (an application, another port of a sidecar) ends the call.
pub fn accept<D: Domain>(d: &D, scenario: &Scenario, trail: &Trail<D>, a: &Accepted<D>, set: D::Set) -> Result<Step<D>, MeshError> {
    let mut step = Vec::new();
    let mut rest = set;
    for (i, k) in trail.keys.iter().enumerate() {
        if k.host != a.host || k.process != a.process.name {
            continue;
        }
        let same = d.addr_eq(&rest, k.original.0, a.original.0);
        let same = d.port_eq(&same, k.original.1, a.original.1);
        let same = d.addr_eq(&same, k.current.0, a.current.0);
        let same = d.port_eq(&same, k.current.1, a.current.1);
        split(d, &mut rest, same, Next::Loop { cycle_start: i }, &mut step);
    }
    let Role::Sidecar { outbound_port, inbound_port } = a.process.role else {
        finish(d, rest, Next::End, &mut step);
        return Ok(step);
    };
    for &port in &a.process.listen {
        let own = d.port_eq(&rest, a.original.1, d.port(port));
        split(d, &mut rest, own, Next::Refuse(RefuseReason::OwnPort(port)), &mut step);
    }
    if d.is_empty(&rest) {
        return Ok(step);
    }
    let connect = |src: Option<IpAddr>, target: Dest<D>| Next::Connect(Conn { src, ..Conn::new(a.host, a.process, target) });
    if a.listener == outbound_port {
        for svc in &scenario.services {
            let to_vip = d.addr_eq(&rest, a.original.0, d.addr(svc.vip));
            let next = match first_endpoint(scenario, svc) {
                Some(ep) => connect(None, (d.addr(ep), a.original.1)),
                None => Next::Refuse(RefuseReason::NoEndpoint { service: svc.name.clone() }),
            };
            split(d, &mut rest, to_vip, next, &mut step);
        }
        finish(d, rest, connect(None, a.original), &mut step);
    } else if a.listener == inbound_port {
        let pod = scenario.host_addr(a.host).ok_or_else(|| MeshError::NoPodAddress { host: a.host.into() })?;
        finish(d, rest, connect(Some(INBOUND_SOURCE), (d.addr(pod), a.original.1)), &mut step);
    } else {
        finish(d, rest, Next::End, &mut step);
    }
    Ok(step)
}

/// [`accept`] for one concrete connection.
pub fn accept_one(scenario: &Scenario, trail: &Trail<Concrete>, a: &Accepted<Concrete>) -> Result<Next<Concrete>, MeshError> {
    let step = accept(&Concrete, scenario, trail, a, true)?;
    let [(_, next)] = <[_; 1]>::try_from(step).expect("one connection has one fate");
    Ok(next)
}

/// The address a sidecar proxies a connection to service `svc`'s virtual IP to: its first
/// endpoint's.
pub fn first_endpoint(scenario: &Scenario, svc: &Service) -> Option<IpAddr> {
    svc.endpoints.first().and_then(|e| scenario.host_addr(e))
}

/// Connections a listening process accepts.
#[derive(Clone, Debug)]
pub struct Listening<'p, D: Domain> {
    /// The connections.
    pub set: D::Set,
    /// The process.
    pub process: &'p Process,
    /// The port it listens on.
    pub port: u16,
}

/// The processes that accept the connections of `set` arriving at port `listener` (the first
/// process listening there), each with its piece; and the connections for which no process
/// listens.
pub fn listeners<'p, D: Domain>(d: &D, processes: &'p [Process], listener: D::Port, set: D::Set) -> (Vec<Listening<'p, D>>, D::Set) {
    let mut out = Vec::new();
    let mut rest = set;
    for p in processes {
        for &port in &p.listen {
            let part = d.port_eq(&rest, listener, d.port(port));
            if d.is_empty(&part) {
                continue;
            }
            rest = d.minus(&rest, &part);
            out.push(Listening { set: part, process: p, port });
        }
    }
    (out, rest)
}

/// The process that accepts a connection arriving at port `listener`.
pub fn listener(processes: &[Process], listener: u16) -> Option<&Process> {
    listeners(&Concrete, processes, listener, true).0.into_iter().next().map(|l| l.process)
}

/// Moves `part` (if not empty) out of `rest` into `step`, with `next`.
fn split<D: Domain>(d: &D, rest: &mut D::Set, part: D::Set, next: Next<D>, step: &mut Step<D>) {
    if d.is_empty(&part) {
        return;
    }
    *rest = d.minus(rest, &part);
    step.push((part, next));
}

/// Adds what is left, if anything, to `step`, with `next`.
fn finish<D: Domain>(d: &D, rest: D::Set, next: Next<D>, step: &mut Step<D>) {
    if !d.is_empty(&rest) {
        step.push((rest, next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::builtin;

    fn scenario() -> Scenario {
        Scenario::from_text(builtin("istio-fortio").unwrap()).unwrap()
    }

    fn process<'s>(s: &'s Scenario, host: &str, name: &str) -> &'s Process {
        s.hosts.iter().find(|h| h.name == host).unwrap().processes.iter().find(|p| p.name == name).unwrap()
    }

    fn ip(a: &str) -> IpAddr {
        a.parse().unwrap()
    }

    /// What `process` on `host` does with a connection accepted on `listener`, to `original`.
    fn one(s: &Scenario, trail: &Trail<Concrete>, host: &str, name: &str, listener: u16, original: (&str, u16)) -> Next<Concrete> {
        let a = Accepted { host, process: process(s, host, name), listener, original: (ip(original.0), original.1), current: (ip("127.0.0.1"), listener) };
        accept_one(s, trail, &a).unwrap()
    }

    fn connect(next: Next<Concrete>) -> Conn<Concrete> {
        match next {
            Next::Connect(c) => c,
            other => panic!("expected a connection, got {other:?}"),
        }
    }

    #[test]
    fn a_sidecar_refuses_connections_to_its_own_ports() {
        let s = scenario();
        for port in [15001, 15006, 15000, 15090, 15021, 15020] {
            for listener in [15001, 15006] {
                assert_eq!(one(&s, &Trail::new(), "client", "envoy", listener, ("10.244.2.10", port)), Next::Refuse(RefuseReason::OwnPort(port)));
            }
        }
        assert_eq!(RefuseReason::OwnPort(15001).to_string(), "refuses to proxy a connection addressed to its own port 15001");
        // An application has no such rule: it just has the call.
        assert_eq!(one(&s, &Trail::new(), "fortio-server", "fortio", 8080, ("10.244.2.10", 15001)), Next::End);
    }

    #[test]
    fn outbound_keeps_the_original_destination_and_the_sidecars_own_owner() {
        let s = scenario();
        let c = connect(one(&s, &Trail::new(), "client", "envoy", 15001, ("8.8.8.8", 443)));
        assert_eq!(c, Conn { host: "client".into(), process: "envoy".into(), uid: 1337, gid: 1337, src: None, target: (ip("8.8.8.8"), 443) });
    }

    #[test]
    fn outbound_to_a_virtual_ip_goes_to_the_services_first_endpoint() {
        let mut s = scenario();
        let c = connect(one(&s, &Trail::new(), "client", "envoy", 15001, ("10.96.0.11", 8080)));
        assert_eq!(c.target, (ip("10.244.3.10"), 8080));
        s.services[1].endpoints.insert(0, "fortio-server".into());
        let c = connect(one(&s, &Trail::new(), "client", "envoy", 15001, ("10.96.0.11", 8080)));
        assert_eq!(c.target, (ip("10.244.2.10"), 8080), "the first endpoint");
        s.services[1].endpoints.clear();
        let n = one(&s, &Trail::new(), "client", "envoy", 15001, ("10.96.0.11", 8080));
        assert_eq!(n, Next::Refuse(RefuseReason::NoEndpoint { service: "fortio-server-l2".into() }));
    }

    #[test]
    fn inbound_connects_from_127_0_0_6_to_the_original_port_on_the_pods_address() {
        let mut s = scenario();
        let c = connect(one(&s, &Trail::new(), "fortio-server", "envoy", 15006, ("10.244.2.10", 8080)));
        assert_eq!(c.src, Some(ip("127.0.0.6")));
        assert_eq!(c.target, (ip("10.244.2.10"), 8080));
        assert_eq!((c.host.as_str(), c.process.as_str(), c.uid), ("fortio-server", "envoy", 1337));
        // Whatever address the connection came to: the pod's own one.
        let c = connect(one(&s, &Trail::new(), "fortio-server", "envoy", 15006, ("10.96.0.10", 9090)));
        assert_eq!(c.target, (ip("10.244.2.10"), 9090));
        s.hosts[1].interfaces.clear();
        let a = Accepted {
            host: "fortio-server",
            process: process(&s, "fortio-server", "envoy"),
            listener: 15006,
            original: (ip("10.244.2.10"), 8080),
            current: (ip("10.244.2.10"), 15006),
        };
        assert_eq!(accept_one(&s, &Trail::new(), &a), Err(MeshError::NoPodAddress { host: "fortio-server".into() }));
    }

    #[test]
    fn other_ports_of_a_sidecar_and_applications_end_the_call() {
        let s = scenario();
        assert_eq!(one(&s, &Trail::new(), "client", "envoy", 15000, ("10.244.1.10", 8080)), Next::End);
        assert_eq!(one(&s, &Trail::new(), "fortio-server", "fortio", 8080, ("10.96.0.10", 8080)), Next::End);
    }

    #[test]
    fn a_repeated_state_is_a_loop_before_anything_else() {
        let s = scenario();
        let envoy = process(&s, "client", "envoy");
        let a = Accepted::<Concrete> { host: "client", process: envoy, listener: 15001, original: (ip("10.96.0.10"), 8080), current: (ip("127.0.0.1"), 15001) };
        let mut trail = Trail::new();
        trail.push(LoopKey { host: "other".into(), ..a.key() });
        trail.push(a.key());
        trail.push(LoopKey { current: (ip("127.0.0.1"), 15006), ..a.key() });
        assert_eq!(accept_one(&s, &trail, &a).unwrap(), Next::Loop { cycle_start: 1 });
        // Another process, another original or another current destination: no loop.
        for other in [(ip("127.0.0.1"), 15006), (ip("127.0.0.2"), 15001)] {
            let mut t = Trail::new();
            t.push(LoopKey { current: other, ..a.key() });
            assert!(matches!(accept_one(&s, &t, &a).unwrap(), Next::Connect(_)), "{other:?}");
        }
        for other in [(ip("10.96.0.10"), 8081), (ip("10.96.0.12"), 8080)] {
            let mut t = Trail::new();
            t.push(LoopKey { original: other, ..a.key() });
            assert!(matches!(accept_one(&s, &t, &a).unwrap(), Next::Connect(_)), "{other:?}");
        }
        let fortio = process(&s, "client", "netshoot");
        assert_eq!(accept_one(&s, &trail, &Accepted { process: fortio, ..a }).unwrap(), Next::End);
        assert!(matches!(accept_one(&s, &trail, &Accepted { original: (ip("10.96.0.11"), 8080), ..a }).unwrap(), Next::Connect(_)));
        // A loop even where the sidecar would refuse.
        let own = Accepted { original: (ip("10.96.0.10"), 15001), ..a };
        assert_eq!(accept_one(&s, &trail, &own).unwrap(), Next::Refuse(RefuseReason::OwnPort(15001)));
        trail.push(own.key());
        assert_eq!(accept_one(&s, &trail, &own).unwrap(), Next::Loop { cycle_start: 3 });
    }

    #[test]
    fn the_hop_budget_stops_at_its_size() {
        let s = scenario();
        let a = Accepted::<Concrete> {
            host: "client",
            process: process(&s, "client", "envoy"),
            listener: 15001,
            original: (ip("8.8.8.8"), 1),
            current: (ip("8.8.8.8"), 1),
        };
        let mut trail = Trail::new();
        for i in 0..HOP_BUDGET {
            assert_eq!(trail.budget(), Ok(()), "after {i} hops");
            trail.push(LoopKey { current: (ip("8.8.8.8"), i as u16 + 2), ..a.key() });
        }
        assert_eq!(trail.budget(), Err(HopBudget));
        assert_eq!(HopBudget.to_string(), "more than 64 hops");
        trail.pop();
        assert_eq!(trail.budget(), Ok(()));
    }

    #[test]
    fn the_first_process_listening_on_a_port_accepts() {
        let s = scenario();
        let procs = &s.hosts[1].processes;
        assert_eq!(listener(procs, 15006).map(|p| p.name.as_str()), Some("envoy"));
        assert_eq!(listener(procs, 8080).map(|p| p.name.as_str()), Some("fortio"));
        assert_eq!(listener(procs, 9), None);
    }

    /// A finite set of connections, their values in terms of each connection's own destination
    /// (as `verify` describes classes): the step splits a set by what happens to each.
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Finite;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum V<T> {
        Root,
        C(T),
    }

    type Root = (IpAddr, u16);

    fn at<T: Copy>(v: V<T>, root: T) -> T {
        match v {
            V::Root => root,
            V::C(c) => c,
        }
    }

    impl Domain for Finite {
        type Addr = V<IpAddr>;
        type Port = V<u16>;
        type Set = Vec<Root>;

        fn addr(&self, a: IpAddr) -> V<IpAddr> {
            V::C(a)
        }

        fn port(&self, p: u16) -> V<u16> {
            V::C(p)
        }

        fn is_empty(&self, s: &Vec<Root>) -> bool {
            s.is_empty()
        }

        fn addr_eq(&self, s: &Vec<Root>, a: V<IpAddr>, b: V<IpAddr>) -> Vec<Root> {
            s.iter().copied().filter(|r| at(a, r.0) == at(b, r.0)).collect()
        }

        fn port_eq(&self, s: &Vec<Root>, a: V<u16>, b: V<u16>) -> Vec<Root> {
            s.iter().copied().filter(|r| at(a, r.1) == at(b, r.1)).collect()
        }

        fn minus(&self, s: &Vec<Root>, t: &Vec<Root>) -> Vec<Root> {
            s.iter().copied().filter(|r| !t.contains(r)).collect()
        }
    }

    #[test]
    fn a_class_splits_by_fate_as_each_connection_would() {
        let s = scenario();
        let envoy = process(&s, "client", "envoy");
        let roots: Vec<Root> =
            [("10.96.0.10", 8080), ("10.96.0.11", 15006), ("8.8.8.8", 80), ("10.96.0.11", 8080), ("1.2.3.4", 15001)].iter().map(|(a, p)| (ip(a), *p)).collect();
        for listener in [15001, 15006, 15000] {
            let a =
                Accepted::<Finite> { host: "client", process: envoy, listener, original: (V::Root, V::Root), current: (V::C(ip("127.0.0.1")), V::C(listener)) };
            let step = accept(&Finite, &s, &Trail::new(), &a, roots.clone()).unwrap();
            let mut covered: Vec<Root> = step.iter().flat_map(|(r, _)| r.iter().copied()).collect();
            covered.sort();
            let mut all = roots.clone();
            all.sort();
            assert_eq!(covered, all, "the pieces partition the class");
            for (piece, next) in &step {
                assert!(!piece.is_empty());
                for root in piece {
                    // Each connection on its own, concretely.
                    let c = Accepted::<Concrete> { host: "client", process: envoy, listener, original: *root, current: (ip("127.0.0.1"), listener) };
                    let concrete = accept_one(&s, &Trail::new(), &c).unwrap();
                    let same = match (next, &concrete) {
                        (Next::Connect(f), Next::Connect(k)) => (at(f.target.0, root.0), at(f.target.1, root.1), f.src) == (k.target.0, k.target.1, k.src),
                        (f, k) => format!("{f:?}") == format!("{k:?}"),
                    };
                    assert!(same, "{listener} {root:?}: {next:?} vs {concrete:?}");
                }
            }
        }
        let a =
            Accepted::<Finite> { host: "client", process: envoy, listener: 15001, original: (V::Root, V::Root), current: (V::C(ip("127.0.0.1")), V::C(15001)) };
        let step = accept(&Finite, &s, &Trail::new(), &a, roots).unwrap();
        assert_eq!(step.len(), 5, "two own ports, two virtual IPs, the rest: {step:#?}");
    }
}
