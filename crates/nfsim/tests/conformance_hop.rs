//! Conformance of ONE HOP ACROSS TWO NAMESPACES, both running the Istio sidecar rules
//! (examples/istio-sidecar.rules), on iptables-nft and iptables-legacy.
//!
//! The oracle's peer namespace (10.0.0.1) is the CLIENT pod, its pod namespace (10.0.0.5) the SERVER
//! pod; both get the sidecar rules ([`Lab::new_pair`]). Listeners: the client's Envoy (uid 1337) on
//! 15001; the server's Envoy (uid 1337) on 15006 and the server's app (uid 1000) on 8080. Probes are
//! TCP connections from the client to 10.0.0.5:8080:
//! - by the client's app (uid 1000): the client's OUTPUT redirects it to its own Envoy on 15001,
//!   so it never reaches the server;
//! - by the client's Envoy (uid 1337): it leaves the client untouched, and the server's PREROUTING
//!   redirects it to the server's Envoy on 15006.
//!
//! The simulator runs the same hop in two steps: the client host with `Origin::Local` (the probe's
//! owner), then, when that branch leaves on eth0, the server host with `Origin::Iface("eth0")` and
//! the packet as it left (mark and conntrack state reset: neither crosses the veth into another
//! namespace). Compared per namespace: the nat-table rules whose counters moved (TCP: only nat,
//! where only the SYN counts, as in conformance.rs) against the simulator's rule steps on that host;
//! then where the connection was accepted (namespace, local address and port), the sender's address
//! as the listener saw it, and `SO_ORIGINAL_DST`.
//!
//! Needs root, `ip`, `iptables` and python3; skipped loudly elsewhere (fails under
//! `NFSIM_REQUIRE_KERNEL=1`).

mod common;
mod oracle;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use nfsim::hook::Backend as SimBackend;
use nfsim::host::Host;
use nfsim::packet::{CtState, Owner, Packet};
use nfsim::simulate::{Branch, Origin, simulate};
use nfsim::trace::{Delivered, StepKind};
use nfsim::traverse::Options;
use oracle::{Backend, Lab, Observed, Probe, Proto, Side};

const ISTIO: &str = include_str!("../../../examples/istio-sidecar.rules");
const TCP: u8 = 6;
const CLIENT: &str = "client";
const SERVER: &str = "server";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A rule: table, chain, 1-based position.
type RuleAt = (String, String, u32);

/// The simulator's view of the oracle's peer namespace, the client pod.
fn client_host() -> Host {
    Host::new(CLIENT).iface("eth0", &["10.0.0.1/24", "10.0.0.9/24"]).gateway("10.0.0.5").listen(TCP, "0.0.0.0", 15001, "client-envoy", 1337, 1337)
}

/// The simulator's view of the oracle's pod namespace, the server pod.
fn server_host() -> Host {
    Host::new(SERVER).iface("eth0", &["10.0.0.5/24"]).gateway("10.0.0.1").listen(TCP, "0.0.0.0", 15006, "server-envoy", 1337, 1337).listen(
        TCP,
        "0.0.0.0",
        8080,
        "server-app",
        1000,
        1000,
    )
}

/// What one side of the comparison says about a probe.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// nat rules whose counters moved in the client (the oracle's peer).
    client_nat: BTreeSet<RuleAt>,
    /// nat rules whose counters moved in the server (the oracle's pod).
    server_nat: BTreeSet<RuleAt>,
    /// Where the connection was accepted: namespace, local address, local port.
    arrived: Option<(Side, IpAddr, u16)>,
    /// The sender as the accepting socket saw it.
    sender: Option<SocketAddr>,
    /// `SO_ORIGINAL_DST` of the accepted connection.
    orig_dst: Option<SocketAddr>,
}

fn nat_only(rules: &BTreeSet<RuleAt>) -> BTreeSet<RuleAt> {
    rules.iter().filter(|r| r.0 == "nat").cloned().collect()
}

fn kernel_outcome(o: &Observed) -> Outcome {
    let r = o.received.first();
    Outcome {
        client_nat: nat_only(&o.moved_peer),
        server_nat: nat_only(&o.moved),
        arrived: r.map(|r| (r.side, r.local_addr, r.local_port)),
        sender: r.map(|r| r.peer),
        orig_dst: r.and_then(|r| r.orig_dst),
    }
}

/// The nat rule steps of `b` that happened on `host`.
fn nat_steps(b: &Branch, host: &str) -> BTreeSet<RuleAt> {
    b.trace
        .iter()
        .filter(|s| *s.host == *host && s.kind == StepKind::Rule && s.table.to_string() == "nat")
        .map(|s| (s.table.to_string(), s.chain.to_string(), s.rule))
        .collect()
}

fn only_branch<'a>(host: &str, branches: &'a [Branch]) -> Result<&'a Branch, String> {
    match branches {
        [b] => Ok(b),
        _ => Err(format!("the simulator gives {} branches on the {host}: {:?}", branches.len(), branches.iter().map(|b| &b.assumptions).collect::<Vec<_>>())),
    }
}

/// Where a connection was accepted (side, address, port), the sender seen, and `SO_ORIGINAL_DST`.
type Accepted = ((Side, IpAddr, u16), SocketAddr, Option<SocketAddr>);

/// Accepted at `side`: the outcome fields that come from the accepting branch.
fn accepted(side: Side, b: &Branch) -> Option<Accepted> {
    match &b.delivered {
        Some(Delivered::Local { addr, port, .. }) => {
            Some(((side, *addr, *port), SocketAddr::new(b.packet.src, b.packet.sport), b.original_dst.map(|(a, p)| SocketAddr::new(a, p))))
        }
        _ => None,
    }
}

/// What the simulator predicts for a TCP connection from the client by `uid`/`gid`, from source port `sport` to `dst`.
fn predict(ruleset: &nfsim::ruleset::Ruleset, uid: u32, gid: u32, sport: u16, dst: SocketAddr, backend: SimBackend) -> Result<(Outcome, String), String> {
    let opts = Options { backend, ..Options::default() };
    let (client, server) = (client_host(), server_host());
    let owner = Owner { uid, gid, groups: Vec::new() };
    let pkt = Packet::new(TCP, ip("0.0.0.0"), sport, dst.ip(), dst.port());
    let sim = simulate(ruleset, &client, pkt, &Origin::Local(Some(owner)), &opts);
    let cb = only_branch(CLIENT, &sim.branches)?;
    if let Some(s) = cb.trace.iter().find(|s| *s.host != *CLIENT) {
        return Err(format!("a step of the client's walk names another host: {s:?}"));
    }
    let mut out = Outcome { client_nat: nat_steps(cb, CLIENT), server_nat: BTreeSet::new(), arrived: None, sender: None, orig_dst: None };
    let mut story = format!("client: {:?} {:?} {:?}", cb.verdict, cb.delivered, cb.reason);
    let mut fill = |acc: Option<Accepted>| {
        if let Some((at, sender, orig)) = acc {
            (out.arrived, out.sender, out.orig_dst) = (Some(at), Some(sender), orig);
        }
    };
    match &cb.delivered {
        Some(Delivered::Egress { iface, .. }) if iface == "eth0" => {
            // The veth's other end is the server's eth0; skb->mark and conntrack stay behind.
            let mut pkt = cb.packet.clone();
            pkt.mark = 0;
            pkt.ct_state = CtState::New;
            pkt.ct_mark = 0;
            let sim = simulate(ruleset, &server, pkt, &Origin::Iface("eth0".into()), &opts);
            let sb = only_branch(SERVER, &sim.branches)?;
            if let Some(s) = sb.trace.iter().find(|s| *s.host != *SERVER) {
                return Err(format!("a step of the server's walk names another host: {s:?}"));
            }
            out.server_nat = nat_steps(sb, SERVER);
            story.push_str(&format!("; server: {:?} {:?} {:?}", sb.verdict, sb.delivered, sb.reason));
            fill(accepted(Side::Pod, sb));
        }
        _ => fill(accepted(Side::Peer, cb)),
    }
    Ok((out, story))
}

/// One probe: client uid/gid, destination, and what the kernel must do (a sanity check, so that
/// agreement can never be agreement on nothing).
struct Case {
    name: &'static str,
    uid: u32,
    dst: SocketAddr,
    expect_arrival: (Side, IpAddr, u16),
}

fn cases() -> Vec<Case> {
    vec![
        Case { name: "client app 1000 -> 10.0.0.5:8080", uid: 1000, dst: sa("10.0.0.5:8080"), expect_arrival: (Side::Peer, ip("127.0.0.1"), 15001) },
        Case { name: "client envoy 1337 -> 10.0.0.5:8080", uid: 1337, dst: sa("10.0.0.5:8080"), expect_arrival: (Side::Pod, ip("10.0.0.5"), 15006) },
    ]
}

fn run(backend: Backend) -> Vec<String> {
    let parsed = nfsim::ruleset::parse(ISTIO);
    if parsed.has_errors() {
        return vec![format!("nfsim refuses the rules: {:?}", parsed.errors().map(|d| d.to_string()).collect::<Vec<_>>())];
    }
    let mut lab = match Lab::new_pair(backend, ISTIO, ISTIO) {
        Ok(l) => l,
        Err(e) => return vec![format!("{backend:?}: the kernel refuses the rules: {e}")],
    };
    lab.tcp_timeout = std::time::Duration::from_millis(1000);
    let any = ip("0.0.0.0");
    lab.listen(Side::Peer, Proto::Tcp, any, 15001, 1337).expect("client envoy");
    lab.listen(Side::Pod, Proto::Tcp, any, 15006, 1337).expect("server envoy");
    lab.listen(Side::Pod, Proto::Tcp, any, 8080, 1000).expect("server app");
    let sim_backend = match backend {
        Backend::Nft => SimBackend::Nft,
        Backend::Legacy => SimBackend::Legacy,
    };
    let mut failures = Vec::new();
    for c in cases() {
        let seen = match lab.probe(&Probe::peer_as(c.uid, c.uid, Proto::Tcp, c.dst)) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{backend:?} {}: the probe failed to run: {e}", c.name));
                continue;
            }
        };
        let kernel = kernel_outcome(&seen);
        eprintln!(
            "[{backend:?}] {}: error={:?} client(peer) nat={:?} server(pod) nat={:?} received={:?}",
            c.name, seen.error, seen.packets_peer, seen.packets, seen.received
        );
        if seen.error.is_some() || seen.received.len() != 1 || kernel.arrived != Some(c.expect_arrival) {
            failures.push(format!(
                "{backend:?} {}: the kernel did not do what the scenario needs (accepted at {:?}): error {:?}, received {:?}",
                c.name, c.expect_arrival, seen.error, seen.received
            ));
        }
        match predict(&parsed.ruleset, c.uid, c.uid, seen.sport, c.dst, sim_backend) {
            Err(e) => failures.push(format!("{backend:?} {}: {e}", c.name)),
            Ok((sim, story)) => {
                eprintln!("[{backend:?}] {}: nfsim {story}", c.name);
                if sim != kernel {
                    failures.push(format!("{backend:?} {}\n  kernel: {kernel:?}\n  nfsim:  {sim:?}\n  ({story})", c.name));
                }
            }
        }
    }
    failures
}

#[test]
fn sidecar_to_sidecar_hop_agrees_with_the_kernel() {
    if !common::kernel_available("conformance (one hop between two Istio sidecars)") {
        return;
    }
    let mut failures = Vec::new();
    for backend in [Backend::Nft, Backend::Legacy] {
        failures.extend(run(backend));
    }
    eprintln!("conformance_hop: {} cases on both backends, {} divergences", cases().len(), failures.len());
    assert!(failures.is_empty(), "{} divergences:\n{}", failures.len(), failures.join("\n"));
}
