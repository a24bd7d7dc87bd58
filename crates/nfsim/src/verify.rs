//! Loop-freedom for every packet: `path::follow` over classes instead of single packets. From every
//! process on every host, all TCP connections (every destination and port) are pushed hop by hop
//! through the hosts' rules and the proxies ([`crate::mesh`]'s step, as in `path`), splitting
//! wherever the fate differs, and every class that comes back to a state it was in (same host,
//! process, original and current destination) is a loop; each loop class gets a concrete witness
//! path.

use std::net::IpAddr;

use crate::classes::region::{AVal, Cube, Input, Region, num_addr, state_bit};
use crate::classes::set::{Bits, Int, Ranges};
use crate::classes::{Fate, Place, Scope, classes, region};
use crate::mesh::{self, Accepted, Conn, Domain, Next};
use crate::packet::CtState;
use crate::path::{Path, simulate_call};
use crate::ruleset::Family;
use crate::topology::{LoadedHost, Process, Scenario};
use crate::trace::Verdict;
use crate::traverse::Options;

/// A value in terms of the starting connection's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rel<T> {
    /// The starting connection's own value (its destination address, or port).
    Root,
    /// A fixed value.
    C(T),
}

/// A destination address in terms of the starting connection's destination.
type TA = Rel<u128>;

/// A port in terms of the starting connection's destination port.
type TP = Rel<u16>;

type Map = (TA, TP);

/// The mesh step's domain here: addresses and ports in root terms, sets of root connections.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sym;

impl Domain for Sym {
    type Addr = TA;
    type Port = TP;
    type Set = Region;

    fn addr(&self, a: IpAddr) -> TA {
        TA::C(region::addr_num(a))
    }

    fn port(&self, p: u16) -> TP {
        TP::C(p)
    }

    fn is_empty(&self, s: &Region) -> bool {
        s.is_empty()
    }

    fn addr_eq(&self, r: &Region, a: TA, b: TA) -> Region {
        agree(r, a, b, |c| &mut c.dst)
    }

    fn port_eq(&self, r: &Region, a: TP, b: TP) -> Region {
        agree(r, a, b, |c| &mut c.dport)
    }

    fn minus(&self, s: &Region, t: &Region) -> Region {
        region::minus(s, t)
    }
}

/// The states the connections were accepted in on the way (`path`'s loop keys).
type Trail = mesh::Trail<Sym>;

/// A class of connections that loops.
#[derive(Clone, Debug)]
pub struct LoopClass {
    /// The host of the process that starts the connections.
    pub host: String,
    /// The process.
    pub process: String,
    /// The connections (TCP, from the process, to these destinations and ports).
    pub region: Region,
    /// The scope the region lies in (for descriptions).
    pub scope: Scope,
    /// The smallest connection of the class.
    pub example: Input,
    /// The concrete path of the example (its outcome is a loop).
    pub witness: Path,
    /// The processes (`host/process`) on the cycle.
    pub cycle: Vec<String>,
    /// Other processes (`host/process`) some of whose connections end in the same cycle.
    pub also: Vec<String>,
}

/// A class of connections whose fate could not be decided (chance or undecidable rules, the
/// hop budget).
#[derive(Clone, Debug)]
pub struct Unknown {
    /// The host of the process that starts the connections.
    pub host: String,
    /// The process.
    pub process: String,
    /// The connections.
    pub region: Region,
    /// The scope the region lies in.
    pub scope: Scope,
    /// Why.
    pub reason: String,
}

/// The result of [`verify`].
#[derive(Clone, Debug, Default)]
pub struct Verification {
    /// Processes whose connections were followed.
    pub starts: usize,
    /// Single-host class computations made.
    pub steps: usize,
    /// Classes that loop, with witnesses.
    pub loops: Vec<LoopClass>,
    /// Classes whose fate could not be decided.
    pub unknown: Vec<Unknown>,
    /// For every process whose connections loop: (host, process, the looping connections).
    pub looping: Vec<(String, String, Region)>,
}

struct Ctx<'a> {
    scenario: &'a Scenario,
    hosts: Vec<LoadedHost>,
    opts: Options,
    result: Verification,
}

/// Why a scenario cannot be verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// A host cannot be built.
    Load(crate::topology::LoadError),
    /// A process's step cannot be taken.
    Mesh(crate::mesh::MeshError),
    /// No host of that name.
    NoHost(String),
    /// The concrete witness of a loop cannot be followed.
    Witness(crate::path::PathError),
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::Load(e) => write!(f, "{e}"),
            VerifyError::Mesh(e) => write!(f, "{e}"),
            VerifyError::NoHost(h) => write!(f, "no host `{h}`"),
            VerifyError::Witness(e) => write!(f, "following a loop's witness: {e}"),
        }
    }
}

impl std::error::Error for VerifyError {}

impl From<crate::topology::LoadError> for VerifyError {
    fn from(e: crate::topology::LoadError) -> VerifyError {
        VerifyError::Load(e)
    }
}

impl From<crate::mesh::MeshError> for VerifyError {
    fn from(e: crate::mesh::MeshError) -> VerifyError {
        VerifyError::Mesh(e)
    }
}

impl From<crate::path::PathError> for VerifyError {
    fn from(e: crate::path::PathError) -> VerifyError {
        VerifyError::Witness(e)
    }
}

/// Follows every TCP connection of every process of `scenario`.
pub fn verify(scenario: &Scenario) -> Result<Verification, VerifyError> {
    let hosts = scenario.load()?;
    let mut cx = Ctx { scenario, hosts, opts: Options::default(), result: Verification::default() };
    let starts: Vec<Conn<Sym>> = cx.hosts.iter().flat_map(|h| h.processes.iter().map(|p| Conn::new(&h.host.name, p, (TA::Root, TP::Root)))).collect();
    for conn in starts {
        cx.result.starts += 1;
        let scope = root_scope(conn.uid, conn.gid);
        let (host, process) = (conn.host.clone(), conn.process.clone());
        cx.follow(&scope, &host, &process, scope.region.clone(), conn, &mut Trail::new())?;
    }
    Ok(cx.result)
}

/// Every TCP connection a process with `uid`/`gid` can open from an unbound socket.
fn root_scope(uid: u32, gid: u32) -> Scope {
    let cube = Cube {
        proto: Ranges::point(6),
        src: Ranges::point(0),
        dst: Ranges::addr_space(32),
        sport: Ranges::point(40000),
        dport: Ranges::full(),
        uid: Ranges::point(uid),
        gid: Ranges::point(gid),
        mark: Bits::point(0),
        state: state_bit(CtState::New),
    };
    Scope { family: Family::V4, from: None, region: vec![cube] }
}

/// The part of root region `r` where two values agree; `field` is the root connection's field
/// they are in terms of.
fn agree<T: Int>(r: &Region, a: Rel<T>, b: Rel<T>, field: fn(&mut Cube) -> &mut Ranges<T>) -> Region {
    match (a, b) {
        (Rel::Root, Rel::Root) => r.clone(),
        (Rel::C(x), Rel::C(y)) => {
            if x == y {
                r.clone()
            } else {
                Vec::new()
            }
        }
        (Rel::Root, Rel::C(x)) | (Rel::C(x), Rel::Root) => r
            .iter()
            .filter_map(|c| {
                let mut c = c.clone();
                let f = field(&mut c);
                *f = f.intersect(&Ranges::point(x));
                (!c.is_empty()).then_some(c)
            })
            .collect(),
    }
}

/// Fixed fields of a connection's packets on one host.
#[derive(Clone, Copy)]
struct Fixed {
    src: u128,
    sport: u16,
    uid: u32,
    gid: u32,
}

/// The packets of the connections `root` maps to (disjoint cubes).
fn image(root: &Region, m: Map, f: Fixed) -> Region {
    let mut out: Region = Vec::new();
    for c in root {
        let cube = Cube {
            proto: c.proto.clone(),
            src: Ranges::point(f.src),
            dst: match m.0 {
                TA::Root => c.dst.clone(),
                TA::C(a) => Ranges::point(a),
            },
            sport: Ranges::point(f.sport),
            dport: match m.1 {
                TP::Root => c.dport.clone(),
                TP::C(p) => Ranges::point(p),
            },
            uid: Ranges::point(f.uid),
            gid: Ranges::point(f.gid),
            mark: Bits::point(0),
            state: state_bit(CtState::New),
        };
        let mut pieces = vec![cube];
        for o in &out {
            pieces = pieces.iter().flat_map(|p| p.minus(o)).collect();
        }
        out.extend(pieces);
    }
    out
}

/// The part of `root` whose image lies in `classes_region`.
fn pull(root: &Region, m: Map, classes_region: &Region) -> Region {
    let mut out = Vec::new();
    for c in root {
        for k in classes_region {
            let mut p = c.clone();
            p.proto = p.proto.intersect(&k.proto);
            match m.0 {
                TA::Root => p.dst = p.dst.intersect(&k.dst),
                TA::C(a) => {
                    if !k.dst.contains(a) {
                        continue;
                    }
                }
            }
            match m.1 {
                TP::Root => p.dport = p.dport.intersect(&k.dport),
                TP::C(x) => {
                    if !k.dport.contains(x) {
                        continue;
                    }
                }
            }
            if !p.is_empty() {
                out.push(p);
            }
        }
    }
    out
}

fn fate_addr(v: AVal, input: Map, src: u128) -> Option<TA> {
    match v {
        AVal::Dst => Some(input.0),
        AVal::Const(a) => Some(TA::C(a)),
        AVal::Src => Some(TA::C(src)),
    }
}

fn fate_port(v: crate::classes::region::Val<u16>, input: TP) -> TP {
    match v {
        crate::classes::region::Val::In => input,
        crate::classes::region::Val::Const(p) => TP::C(p),
    }
}

impl Ctx<'_> {
    fn host(&self, name: &str) -> Result<&LoadedHost, VerifyError> {
        self.hosts.iter().find(|h| h.host.name == name).ok_or_else(|| VerifyError::NoHost(name.into()))
    }

    fn unknown(&mut self, scope: &Scope, start: (&str, &str), region: Region, reason: String) {
        if region.is_empty() {
            return;
        }
        self.result.unknown.push(Unknown { host: start.0.into(), process: start.1.into(), region, scope: scope.clone(), reason });
    }

    /// Follows `conn` for the root connections `root`; `stack` holds the states seen on the way.
    fn follow(&mut self, scope: &Scope, start_host: &str, start_proc: &str, root: Region, conn: Conn<Sym>, stack: &mut Trail) -> Result<(), VerifyError> {
        if root.is_empty() {
            return Ok(());
        }
        if let Err(spent) = stack.budget() {
            self.unknown(scope, (start_host, start_proc), root, spent.to_string());
            return Ok(());
        }
        let lh = self.host(&conn.host)?.clone();
        let src = conn.src.map_or(0, region::addr_num);
        let fixed = Fixed { src, sport: 40000, uid: conn.uid, gid: conn.gid };
        let local = Scope { family: Family::V4, from: None, region: image(&root, conn.target, fixed) };
        let cs = classes(&lh.ruleset, &lh.host, &local, &self.opts);
        self.result.steps += 1;
        for class in cs.classes {
            let piece = pull(&root, conn.target, &class.region);
            if piece.is_empty() {
                continue;
            }
            let [fate] = class.fates.as_slice() else {
                self.unknown(scope, (start_host, start_proc), piece, format!("{} forks on {}", conn.host, fork_reason(&class.fates)));
                continue;
            };
            if fate.verdict != Verdict::Accept {
                continue;
            }
            let current = (fate_addr(fate.dst.0, conn.target, src).unwrap_or(TA::Root), fate_port(fate.dst.1, conn.target.1));
            match &fate.place {
                None => {}
                Some(Place::Local { .. }) => {
                    let listener = fate.listener_port.map_or(current.1, |v| fate_port(v, conn.target.1));
                    self.accepted(scope, (start_host, start_proc), piece, &conn.host, conn.target, current, listener, stack)?;
                }
                Some(Place::Egress { .. }) => {
                    let Some(sender_src) = (match fate.src.0 {
                        AVal::Const(a) => Some(a),
                        AVal::Src => Some(src),
                        AVal::Dst => None,
                    }) else {
                        self.unknown(scope, (start_host, start_proc), piece, "a source taken from the destination leaves the host".into());
                        continue;
                    };
                    let sport = match fate.src.1 {
                        crate::classes::region::Val::In => 40000,
                        crate::classes::region::Val::Const(p) => p,
                    };
                    self.arrive(scope, (start_host, start_proc), piece, current, conn.target, (sender_src, sport), stack)?;
                }
            }
        }
        Ok(())
    }

    /// The packet leaves for the host owning its destination.
    #[allow(clippy::too_many_arguments)]
    fn arrive(
        &mut self,
        scope: &Scope,
        start: (&str, &str),
        piece: Region,
        dst: Map,
        original: Map,
        src: (u128, u16),
        stack: &mut Trail,
    ) -> Result<(), VerifyError> {
        // Which host owns the destination.
        let owners: Vec<(String, String, u128)> = self
            .hosts
            .iter()
            .flat_map(|h| {
                h.host.interfaces.iter().flat_map(move |i| {
                    i.addrs.iter().filter(|a| a.addr().is_ipv4()).map(move |a| (h.host.name.clone(), i.name.clone(), region::addr_num(a.addr())))
                })
            })
            .collect();
        for (peer, iface, addr) in owners {
            let part = Sym.addr_eq(&piece, dst.0, TA::C(addr));
            if part.is_empty() {
                continue;
            }
            let lh = self.host(&peer)?.clone();
            let cube_map = (TA::C(addr), dst.1);
            let fixed = Fixed { src: src.0, sport: src.1, uid: 0, gid: 0 };
            let arriving = Scope { family: Family::V4, from: Some(iface.clone()), region: image(&part, cube_map, fixed) };
            let cs = classes(&lh.ruleset, &lh.host, &arriving, &self.opts);
            self.result.steps += 1;
            for class in cs.classes {
                let sub = pull(&part, cube_map, &class.region);
                if sub.is_empty() {
                    continue;
                }
                let [fate] = class.fates.as_slice() else {
                    self.unknown(scope, start, sub, format!("{peer} forks on {}", fork_reason(&class.fates)));
                    continue;
                };
                if fate.verdict != Verdict::Accept {
                    continue;
                }
                match &fate.place {
                    Some(Place::Local { .. }) => {
                        let current = (fate_addr(fate.dst.0, cube_map, src.0).unwrap_or(TA::Root), fate_port(fate.dst.1, dst.1));
                        let listener = fate.listener_port.map_or(current.1, |v| fate_port(v, dst.1));
                        let original = if fate.dnat.is_some() { cube_map } else { original };
                        self.accepted(scope, start, sub, &peer, original, current, listener, stack)?;
                    }
                    // Forwarded onwards: multi-router paths are not modelled (as in `path`).
                    Some(Place::Egress { .. }) | None => {}
                }
            }
        }
        Ok(())
    }

    /// A process on `host` accepted the connections `piece` on port `listener`.
    #[allow(clippy::too_many_arguments)]
    fn accepted(
        &mut self,
        scope: &Scope,
        start: (&str, &str),
        piece: Region,
        host: &str,
        original: Map,
        current: Map,
        listener: TP,
        stack: &mut Trail,
    ) -> Result<(), VerifyError> {
        let lh = self.host(host)?.clone();
        let (parts, _no_listener) = mesh::listeners(&Sym, &lh.processes, listener, piece);
        for l in parts {
            self.dispatch(scope, start, l.set, host, l.process, l.port, original, current, stack)?;
        }
        Ok(())
    }

    /// Process `p` on `host` accepted the connections `part` on port `port`: the mesh step, then
    /// onwards.
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        scope: &Scope,
        start: (&str, &str),
        part: Region,
        host: &str,
        p: &Process,
        port: u16,
        original: Map,
        current: Map,
        stack: &mut Trail,
    ) -> Result<(), VerifyError> {
        let accepted = Accepted { host, process: p, listener: port, original, current };
        let mut next = Vec::new();
        for (r, n) in mesh::accept(&Sym, self.scenario, stack, &accepted, part)? {
            match n {
                Next::Loop { cycle_start } => {
                    let mut cycle: Vec<String> = stack.keys()[cycle_start..].iter().map(|s| format!("{}/{}", s.host, s.process)).collect();
                    cycle.push(format!("{host}/{}", p.name));
                    self.record_loop(scope, start, r, cycle)?;
                }
                Next::Connect(conn) => next.push((r, conn)),
                Next::Refuse(_) | Next::End => {}
            }
        }
        stack.push(accepted.key());
        for (r, conn) in next {
            self.follow(scope, start.0, start.1, r, conn, stack)?;
        }
        stack.pop();
        Ok(())
    }

    fn record_loop(&mut self, scope: &Scope, start: (&str, &str), region: Region, cycle: Vec<String>) -> Result<(), VerifyError> {
        let Some(example) = region.iter().filter_map(Cube::example).next() else { return Ok(()) };
        let dst = num_addr(example.dst, Family::V4);
        let witness = simulate_call(self.scenario, start.0, start.1, &format!("{dst}:{}", example.dport))?;
        // One entry per cycle, told from the cycle's own process when it starts connections
        // itself; other processes whose connections fall into the cycle are listed with it.
        match self.result.looping.iter_mut().find(|(h, p, _)| h == start.0 && p == start.1) {
            Some(l) => l.2.extend(region.iter().cloned()),
            None => self.result.looping.push((start.0.into(), start.1.into(), region.clone())),
        }
        let me = format!("{}/{}", start.0, start.1);
        if let Some(l) = self.result.loops.iter_mut().find(|l| l.cycle == cycle) {
            let theirs = format!("{}/{}", l.host, l.process);
            if theirs == me {
                l.region.extend(region);
            } else if cycle.first() == Some(&me) {
                l.also.retain(|a| *a != me);
                l.also.push(theirs);
                l.host = start.0.into();
                l.process = start.1.into();
                l.region = region;
                l.scope = scope.clone();
                l.example = example;
                l.witness = witness;
            } else if !l.also.contains(&me) {
                l.also.push(me);
            }
            return Ok(());
        }
        self.result.loops.push(LoopClass {
            host: start.0.into(),
            process: start.1.into(),
            region,
            scope: scope.clone(),
            example,
            witness,
            cycle,
            also: Vec::new(),
        });
        Ok(())
    }
}

fn fork_reason(fates: &[Fate]) -> String {
    fates.iter().flat_map(|f| &f.assumptions).map(|(r, _, why)| format!("{r} ({why})")).next().unwrap_or_else(|| "several fates".into())
}
