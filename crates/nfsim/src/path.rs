//! Following a request hop by hop across a scenario: every connection from its process through
//! its host's netfilter, across the network, through the receiving host, to the accepting process,
//! whose behaviour (application or sidecar proxy, [`crate::mesh`]'s step) opens the next
//! connection. Redirect loops are found as a repeated state and reported with the hops that form
//! the cycle.
//!
//! Unit-testing a rule change reads like this:
//!
//! ```
//! use nfsim::path::{Outcome, simulate_flow};
//! use nfsim::topology::{Scenario, builtin};
//!
//! let mut scenario = Scenario::from_text(builtin("istio-fortio").unwrap()).unwrap();
//! let path = simulate_flow(&scenario, "seed").unwrap();
//! assert_eq!(path.outcome, Outcome::Delivered);
//! assert_eq!(path.hops[0].after.dport, 15001, "the app's call goes through Envoy");
//!
//! // Drop the rule that lets Envoy's own traffic out: its connection now loops back to 15001.
//! for host in &mut scenario.hosts {
//!     host.rules = host.rules.replace("-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN\n", "");
//!     host.rules = host.rules.replace("-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN\n", "");
//! }
//! let path = simulate_flow(&scenario, "seed").unwrap();
//! assert!(matches!(path.outcome, Outcome::Loop { .. }));
//! ```

use std::net::IpAddr;

use serde::Serialize;

use crate::mesh::{self, Accepted, Concrete, Conn, Next, Trail};
use crate::packet::{Owner, Packet};
use crate::reason::Reason;
use crate::simulate::{Branch, Origin, Simulator};
use crate::topology::{LoadError, LoadedHost, Process, Scenario};
use crate::trace::{Delivered, RuleRef, Step, Verdict};
use crate::traverse::Options;

/// A connection's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub dport: u16,
}

/// One connection: opened by `process` on `host`, accepted by `accepted_by` on `accepted_host`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hop {
    /// The host of the process that opened the connection.
    pub host: String,
    /// The process that opened it.
    pub process: String,
    /// The connection as opened.
    pub before: Tuple,
    /// The connection as accepted (after NAT).
    pub after: Tuple,
    /// What `SO_ORIGINAL_DST` returns to the accepting socket.
    pub original_dst: (IpAddr, u16),
    /// The host that accepted it.
    pub accepted_host: Option<String>,
    /// The process that accepted it.
    pub accepted_by: Option<String>,
    /// The port the accepting socket listens on.
    pub listener_port: u16,
    /// Every netfilter step on every host the connection crossed.
    pub trace: Vec<Step>,
}

/// How a path ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// Every call of the flow reached its application.
    Delivered,
    /// Dropped, by a rule or otherwise.
    Dropped {
        /// Where.
        host: String,
        /// Why.
        reason: DropReason,
    },
    /// Rejected by a rule.
    Rejected {
        /// Where.
        host: String,
        /// The rule.
        by: Option<RuleRef>,
    },
    /// No host owns the destination.
    NoRoute {
        /// The unreachable address.
        dst: IpAddr,
    },
    /// Nothing listens where the connection arrived.
    NoListener {
        /// Where.
        host: String,
        /// The address and port.
        at: (IpAddr, u16),
    },
    /// A rule's outcome could not be known.
    Undecidable {
        /// Where.
        host: String,
        /// What is unknown.
        reason: String,
    },
    /// The same state came back: the hops from `cycle_start` on repeat forever.
    Loop {
        /// Index of the first hop of the cycle.
        cycle_start: usize,
        /// The repeating hops' indices.
        cycle: Vec<usize>,
    },
    /// More hops than the budget allows.
    HopBudget,
}

/// The result of following one flow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Path {
    /// The flow's name.
    pub flow: String,
    /// The connections, in order.
    pub hops: Vec<Hop>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Why a path's connection was dropped.
#[derive(Clone, Debug, PartialEq)]
pub enum DropReason {
    /// What the host's netfilter or network stack did (a rule, a policy, a route, ...).
    Stack(Reason),
    /// The accepting process refuses to go on.
    Refused {
        /// The process.
        process: String,
        /// Why.
        why: mesh::RefuseReason,
    },
    /// Accepted by no process.
    NotAccepted,
    /// Neither delivered nor stopped by a rule.
    NotDelivered,
    /// Forwarded on by the next host: paths over several routers are not modelled.
    ForwardedOnwards,
    /// The simulation gave no branch.
    NoOutcome,
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::Stack(r) => write!(f, "{r}"),
            DropReason::Refused { process, why } => write!(f, "{process} {why}"),
            DropReason::NotAccepted => f.write_str("not accepted"),
            DropReason::NotDelivered => f.write_str("not delivered"),
            DropReason::ForwardedOnwards => f.write_str("forwarded onwards: multi-router paths are not modelled"),
            DropReason::NoOutcome => f.write_str("no outcome"),
        }
    }
}

/// Serialized as the sentence.
impl Serialize for DropReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The most hops a path may take (kept here for compatibility; [`crate::mesh`] owns it).
pub use crate::mesh::HOP_BUDGET;

struct World<'a> {
    scenario: &'a Scenario,
    hosts: Vec<LoadedHost>,
    opts: Options,
}

/// Why a path cannot be followed: the scenario does not hold what the flow names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// A host cannot be built.
    Load(LoadError),
    /// A process's step cannot be taken.
    Mesh(mesh::MeshError),
    /// No flow of that name.
    NoFlow {
        /// The name asked for.
        name: String,
        /// The flows the scenario has.
        known: Vec<String>,
    },
    /// No host of that name.
    NoHost(String),
    /// No process of that name on the host.
    NoProcess {
        /// The host.
        host: String,
        /// The process.
        process: String,
    },
    /// A call that is not `NAME:PORT`, has a bad port, or names nothing known.
    BadCall {
        /// The call as written.
        call: String,
        /// What is wrong with it.
        problem: CallProblem,
    },
}

/// What is wrong with a flow's call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallProblem {
    /// Not `NAME:PORT`.
    Form,
    /// The port is not a number from 0 to 65535.
    Port,
    /// No service or host has this name.
    Unknown(String),
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathError::Load(e) => write!(f, "{e}"),
            PathError::Mesh(e) => write!(f, "{e}"),
            PathError::NoFlow { name, known } if known.is_empty() => write!(f, "no flow `{name}` (the scenario has no flows)"),
            PathError::NoFlow { name, known } => write!(f, "no flow `{name}` (flows: {})", known.join(", ")),
            PathError::NoHost(h) => write!(f, "no host `{h}`"),
            PathError::NoProcess { host, process } => write!(f, "no process `{process}` on `{host}`"),
            PathError::BadCall { call, problem: CallProblem::Form } => write!(f, "call `{call}` is not NAME:PORT"),
            PathError::BadCall { call, problem: CallProblem::Port } => write!(f, "bad port in call `{call}`"),
            PathError::BadCall { call, problem: CallProblem::Unknown(name) } => write!(f, "call `{call}`: no service or host `{name}`"),
        }
    }
}

impl std::error::Error for PathError {}

impl From<LoadError> for PathError {
    fn from(e: LoadError) -> PathError {
        PathError::Load(e)
    }
}

impl From<mesh::MeshError> for PathError {
    fn from(e: mesh::MeshError) -> PathError {
        PathError::Mesh(e)
    }
}

/// Follows every flow of `scenario`.
pub fn simulate_flows(scenario: &Scenario) -> Result<Vec<Path>, PathError> {
    let world = World { scenario, hosts: scenario.load()?, opts: Options::default() };
    scenario.flows.iter().map(|f| world.follow(&f.name)).collect()
}

/// Follows one call: `process` on `host` connects to `call` (`SERVICE:PORT` or `ADDR:PORT`).
pub fn simulate_call(scenario: &Scenario, host: &str, process: &str, call: &str) -> Result<Path, PathError> {
    let mut s = scenario.clone();
    s.flows = vec![crate::topology::Flow { name: "call".into(), host: host.into(), process: process.into(), calls: vec![call.into()] }];
    simulate_flow(&s, "call")
}

/// Follows the flow called `name`.
pub fn simulate_flow(scenario: &Scenario, name: &str) -> Result<Path, PathError> {
    let world = World { scenario, hosts: scenario.load()?, opts: Options::default() };
    world.follow(name)
}

impl World<'_> {
    fn host(&self, name: &str) -> Option<&LoadedHost> {
        self.hosts.iter().find(|h| h.host.name == name)
    }

    fn resolve(&self, call: &str) -> Result<(IpAddr, u16), PathError> {
        let bad = |problem| PathError::BadCall { call: call.into(), problem };
        let (name, port) = call.rsplit_once(':').ok_or_else(|| bad(CallProblem::Form))?;
        let port: u16 = port.parse().map_err(|_| bad(CallProblem::Port))?;
        if let Some(s) = self.scenario.service(name) {
            return Ok((s.vip, port));
        }
        if let Ok(a) = name.parse() {
            return Ok((a, port));
        }
        self.scenario.host_addr(name).map(|a| (a, port)).ok_or_else(|| bad(CallProblem::Unknown(name.into())))
    }

    fn process(&self, host: &str, process: &str) -> Result<&Process, PathError> {
        let lh = self.host(host).ok_or_else(|| PathError::NoHost(host.into()))?;
        lh.processes.iter().find(|p| p.name == process).ok_or_else(|| PathError::NoProcess { host: host.into(), process: process.into() })
    }

    fn follow(&self, flow_name: &str) -> Result<Path, PathError> {
        let flow = self
            .scenario
            .flows
            .iter()
            .find(|f| f.name == flow_name)
            .ok_or_else(|| PathError::NoFlow { name: flow_name.into(), known: self.scenario.flows.iter().map(|f| f.name.clone()).collect() })?;
        let mut path = Path { flow: flow.name.clone(), hops: Vec::new(), outcome: Outcome::Delivered };
        let mut calls = flow.calls.iter();
        let Some(first) = calls.next() else { return Ok(path) };
        let target = self.resolve(first)?;
        let mut conn = Conn::new(&flow.host, self.process(&flow.host, &flow.process)?, target);
        let mut trail: Trail<Concrete> = Trail::new();
        loop {
            if trail.budget().is_err() {
                path.outcome = Outcome::HopBudget;
                return Ok(path);
            }
            let (hop, end) = self.connect(&conn)?;
            path.hops.push(hop);
            let hop = path.hops.last().expect("just pushed");
            if let Some(o) = end {
                path.outcome = o;
                return Ok(path);
            }
            let (Some(next_host), Some(next_proc)) = (hop.accepted_host.clone(), hop.accepted_by.clone()) else {
                path.outcome = Outcome::Dropped { host: conn.host.clone(), reason: DropReason::NotAccepted };
                return Ok(path);
            };
            let lh = self.host(&next_host).ok_or_else(|| PathError::NoHost(next_host.clone()))?;
            let proc = lh
                .processes
                .iter()
                .find(|p| p.name == next_proc)
                .ok_or_else(|| PathError::NoProcess { host: next_host.clone(), process: next_proc.clone() })?;
            let accepted = Accepted {
                host: &next_host,
                process: proc,
                listener: hop.listener_port,
                original: hop.original_dst,
                current: (hop.after.dst, hop.after.dport),
            };
            match mesh::accept_one(self.scenario, &trail, &accepted)? {
                Next::Loop { cycle_start } => {
                    path.outcome = Outcome::Loop { cycle_start, cycle: (cycle_start..path.hops.len()).collect() };
                    return Ok(path);
                }
                Next::Refuse(why) => {
                    path.outcome = Outcome::Dropped { host: next_host.clone(), reason: DropReason::Refused { process: next_proc.clone(), why } };
                    return Ok(path);
                }
                Next::Connect(next) => conn = next,
                // An application: this call is done; it makes the next one, if any.
                Next::End => match calls.next() {
                    None => return Ok(path),
                    Some(c) => conn = Conn::new(&next_host, proc, self.resolve(c)?),
                },
            }
            trail.push(accepted.key());
        }
    }

    /// One connection: local out, across the network, arriving, accepted.
    fn connect(&self, conn: &Conn<Concrete>) -> Result<(Hop, Option<Outcome>), PathError> {
        let (host, process, src, target) = (conn.host.as_str(), conn.process.as_str(), conn.src, conn.target);
        let lh = self.host(host).ok_or_else(|| PathError::NoHost(host.into()))?;
        let owner = Owner { uid: conn.uid, gid: conn.gid, groups: Vec::new() };
        let unspecified = if target.0.is_ipv4() { IpAddr::from([0, 0, 0, 0]) } else { IpAddr::from([0u16; 8]) };
        let pkt = Packet::new(6, src.unwrap_or(unspecified), 40000, target.0, target.1);
        let sim = Simulator::new(&lh.ruleset, &lh.host, self.opts.clone());
        let out = sim.run(pkt, &Origin::Local(Some(owner)));
        let mut hop = Hop {
            host: host.into(),
            process: process.into(),
            before: Tuple { src: src.unwrap_or(unspecified), sport: 40000, dst: target.0, dport: target.1 },
            after: Tuple { src: unspecified, sport: 40000, dst: target.0, dport: target.1 },
            original_dst: target,
            accepted_host: None,
            accepted_by: None,
            listener_port: 0,
            trace: Vec::new(),
        };
        let b = match single(&out.branches, host) {
            Ok(b) => b,
            Err(o) => return Ok((hop, Some(o))),
        };
        hop.trace.extend(b.trace.iter().cloned());
        hop.before.src = b.packet.src;
        hop.after = Tuple { src: b.packet.src, sport: b.packet.sport, dst: b.packet.dst, dport: b.packet.dport };
        if let Some(od) = b.original_dst {
            hop.original_dst = od;
        }
        match &b.delivered {
            Some(Delivered::Local { .. }) => {
                hop.listener_port = b.listener_port.unwrap_or(b.packet.dport);
                let proc = socket_process(lh, hop.listener_port);
                hop.accepted_host = Some(host.into());
                hop.accepted_by = proc.clone();
                if proc.is_none() {
                    return Ok((hop, Some(Outcome::NoListener { host: host.into(), at: (b.packet.dst, b.packet.dport) })));
                }
                Ok((hop, None))
            }
            Some(Delivered::Egress { .. }) => {
                // The routed network: the host owning the destination receives it on the
                // interface that holds that address.
                let dst = b.packet.dst;
                let Some(peer) = self.hosts.iter().find(|h| h.host.interfaces.iter().any(|i| i.addrs.iter().any(|a| a.addr() == dst))) else {
                    return Ok((hop, Some(Outcome::NoRoute { dst })));
                };
                let iface = peer.host.interfaces.iter().find(|i| i.addrs.iter().any(|a| a.addr() == dst)).map(|i| i.name.clone()).unwrap_or_default();
                let mut pkt = b.packet.clone();
                pkt.mark = 0;
                pkt.out_iface = None;
                let sim = Simulator::new(&peer.ruleset, &peer.host, self.opts.clone());
                let out = sim.run(pkt, &Origin::Iface(iface));
                let b2 = match single(&out.branches, &peer.host.name) {
                    Ok(b) => b,
                    Err(o) => return Ok((hop, Some(o))),
                };
                hop.trace.extend(b2.trace.iter().cloned());
                hop.after = Tuple { src: b2.packet.src, sport: b2.packet.sport, dst: b2.packet.dst, dport: b2.packet.dport };
                if let Some(od) = b2.original_dst {
                    hop.original_dst = od;
                }
                match &b2.delivered {
                    Some(Delivered::Local { .. }) => {
                        hop.listener_port = b2.listener_port.unwrap_or(b2.packet.dport);
                        let proc = socket_process(peer, hop.listener_port);
                        hop.accepted_host = Some(peer.host.name.clone());
                        hop.accepted_by = proc.clone();
                        if proc.is_none() {
                            return Ok((hop, Some(Outcome::NoListener { host: peer.host.name.clone(), at: (b2.packet.dst, b2.packet.dport) })));
                        }
                        Ok((hop, None))
                    }
                    // Accepted by the stack but by no socket (nothing listens, or a listener that
                    // cannot answer from a non-local address).
                    None => {
                        let reason = b2.reason.clone().map_or(DropReason::NotDelivered, DropReason::Stack);
                        Ok((hop, Some(Outcome::Dropped { host: peer.host.name.clone(), reason })))
                    }
                    Some(Delivered::Egress { .. }) => Ok((hop, Some(Outcome::Dropped { host: peer.host.name.clone(), reason: DropReason::ForwardedOnwards }))),
                }
            }
            None => Ok((hop, Some(Outcome::Dropped { host: host.into(), reason: b.reason.clone().map_or(DropReason::NotDelivered, DropReason::Stack) }))),
        }
    }
}

/// The process listening on `port` on a host.
fn socket_process(h: &LoadedHost, port: u16) -> Option<String> {
    mesh::listener(&h.processes, port).map(|p| p.name.clone())
}

/// The one branch of a simulation, or the outcome that stops the path.
fn single<'b>(branches: &'b [Branch], host: &str) -> Result<&'b Branch, Outcome> {
    match branches {
        [b] => match b.verdict {
            Verdict::Accept if b.delivered.is_some() => Ok(b),
            Verdict::Accept => Err(Outcome::NoListener { host: host.into(), at: (b.packet.dst, b.packet.dport) }),
            Verdict::Reject => Err(Outcome::Rejected { host: host.into(), by: b.by.clone() }),
            Verdict::Drop | Verdict::Queue => {
                Err(Outcome::Dropped { host: host.into(), reason: b.reason.clone().map_or(DropReason::NotDelivered, DropReason::Stack) })
            }
        },
        [] => Err(Outcome::Dropped { host: host.into(), reason: DropReason::NoOutcome }),
        many => Err(Outcome::Undecidable {
            host: host.into(),
            reason: many.iter().flat_map(|b| &b.assumptions).map(|a| format!("{}: {}", a.rule, a.reason)).next().unwrap_or_default(),
        }),
    }
}
