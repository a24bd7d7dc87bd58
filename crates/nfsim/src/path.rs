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
use crate::simulate::{Branch, Origin, Simulator};
use crate::topology::{LoadedHost, Process, Scenario};
use crate::trace::{Delivered, Step, Verdict};
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
        reason: String,
    },
    /// Rejected by a rule.
    Rejected {
        /// Where.
        host: String,
        /// The rule.
        by: String,
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

/// The most hops a path may take (kept here for compatibility; [`crate::mesh`] owns it).
pub use crate::mesh::HOP_BUDGET;

struct World<'a> {
    scenario: &'a Scenario,
    hosts: Vec<LoadedHost>,
    opts: Options,
}

/// Follows every flow of `scenario`.
pub fn simulate_flows(scenario: &Scenario) -> Result<Vec<Path>, String> {
    let world = World { scenario, hosts: scenario.load()?, opts: Options::default() };
    scenario.flows.iter().map(|f| world.follow(&f.name)).collect()
}

/// Follows one call: `process` on `host` connects to `call` (`SERVICE:PORT` or `ADDR:PORT`).
pub fn simulate_call(scenario: &Scenario, host: &str, process: &str, call: &str) -> Result<Path, String> {
    let mut s = scenario.clone();
    s.flows = vec![crate::topology::Flow { name: "call".into(), host: host.into(), process: process.into(), calls: vec![call.into()] }];
    simulate_flow(&s, "call")
}

/// Follows the flow called `name`.
pub fn simulate_flow(scenario: &Scenario, name: &str) -> Result<Path, String> {
    let world = World { scenario, hosts: scenario.load()?, opts: Options::default() };
    world.follow(name)
}

impl World<'_> {
    fn host(&self, name: &str) -> Option<&LoadedHost> {
        self.hosts.iter().find(|h| h.host.name == name)
    }

    fn resolve(&self, call: &str) -> Result<(IpAddr, u16), String> {
        let (name, port) = call.rsplit_once(':').ok_or_else(|| format!("call `{call}` is not NAME:PORT"))?;
        let port: u16 = port.parse().map_err(|_| format!("bad port in call `{call}`"))?;
        if let Some(s) = self.scenario.service(name) {
            return Ok((s.vip, port));
        }
        if let Ok(a) = name.parse() {
            return Ok((a, port));
        }
        self.scenario.host_addr(name).map(|a| (a, port)).ok_or_else(|| format!("call `{call}`: no service or host `{name}`"))
    }

    fn process(&self, host: &str, process: &str) -> Result<&Process, String> {
        let lh = self.host(host).ok_or_else(|| format!("no host `{host}`"))?;
        lh.processes.iter().find(|p| p.name == process).ok_or_else(|| format!("no process `{process}` on `{host}`"))
    }

    fn follow(&self, flow_name: &str) -> Result<Path, String> {
        let flow = self.scenario.flows.iter().find(|f| f.name == flow_name).ok_or_else(|| format!("no flow `{flow_name}`"))?;
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
                path.outcome = Outcome::Dropped { host: conn.host.clone(), reason: "not accepted".into() };
                return Ok(path);
            };
            let lh = self.host(&next_host).ok_or("accepting host vanished")?;
            let proc = lh.processes.iter().find(|p| p.name == next_proc).ok_or("accepting process vanished")?;
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
                    path.outcome = Outcome::Dropped { host: next_host.clone(), reason: format!("{next_proc} {why}") };
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
    fn connect(&self, conn: &Conn<Concrete>) -> Result<(Hop, Option<Outcome>), String> {
        let (host, process, src, target) = (conn.host.as_str(), conn.process.as_str(), conn.src, conn.target);
        let lh = self.host(host).ok_or_else(|| format!("no host `{host}`"))?;
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
                        let reason = b2.reason.as_ref().map_or_else(|| "not delivered".into(), ToString::to_string);
                        Ok((hop, Some(Outcome::Dropped { host: peer.host.name.clone(), reason })))
                    }
                    Some(Delivered::Egress { .. }) => Ok((
                        hop,
                        Some(Outcome::Dropped { host: peer.host.name.clone(), reason: "forwarded onwards: multi-router paths are not modelled".into() }),
                    )),
                }
            }
            None => {
                Ok((hop, Some(Outcome::Dropped { host: host.into(), reason: b.reason.as_ref().map_or_else(|| "not delivered".into(), ToString::to_string) })))
            }
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
            Verdict::Reject => Err(Outcome::Rejected { host: host.into(), by: b.by.as_ref().map(|r| r.to_string()).unwrap_or_default() }),
            Verdict::Drop | Verdict::Queue => {
                Err(Outcome::Dropped { host: host.into(), reason: b.reason.as_ref().map(ToString::to_string).unwrap_or_default() })
            }
        },
        [] => Err(Outcome::Dropped { host: host.into(), reason: "no outcome".into() }),
        many => Err(Outcome::Undecidable {
            host: host.into(),
            reason: many.iter().flat_map(|b| &b.assumptions).map(|a| format!("{}: {}", a.rule, a.reason)).next().unwrap_or_default(),
        }),
    }
}
