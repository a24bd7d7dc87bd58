//! The kernel conformance suite: the same rules and probes on the real kernel (in network
//! namespaces, through `tests/oracle`) and in the simulator; the rules whose counters moved and
//! where the packet arrived must agree. Fixed Istio cases, one probe per packet class of the Istio
//! rules, and hand-written regression cases (one per divergence the random referee in
//! `tests/referee.rs` found), on iptables-nft and iptables-legacy.
//!
//! Needs root, `ip`, `iptables` and python3; skipped loudly elsewhere, and failing under
//! `NFSIM_REQUIRE_KERNEL=1`.

mod common;
mod oracle;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use nfsim::hook::Backend as SimBackend;
use nfsim::host::Host;
use nfsim::packet::{Owner, Packet};
use nfsim::simulate::{Origin, simulate};
use nfsim::trace::{Delivered, StepKind};
use nfsim::traverse::Options;
use oracle::{Backend, From as Src, Lab, Observed, Probe, Proto, Side};

const POD_PORTS: [u16; 4] = [8080, 9000, 15001, 15006];
const PEER_PORTS: [u16; 3] = [8080, 9000, 15001];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The simulator's view of the oracle's pod namespace.
fn pod_host(proto: u8, uid_of_port: impl Fn(u16) -> u32) -> Host {
    let mut h = Host::new("pod").iface("eth0", &["10.0.0.5/24"]).gateway("10.0.0.1");
    for p in POD_PORTS {
        h = h.listen(proto, "0.0.0.0", p, "listener", uid_of_port(p), uid_of_port(p));
    }
    h
}

/// A rule: table, chain, 1-based position.
type RuleAt = (String, String, u32);
/// Where a packet arrived: side, local address, local port.
type Arrival = (Side, IpAddr, u16);

/// What the simulator predicts for `probe`: matched rules, and where it arrives.
fn predict(rules: &str, probe: &Probe, sport: u16, backend: SimBackend) -> Result<(BTreeSet<RuleAt>, Option<Arrival>), String> {
    let parsed = nfsim::ruleset::parse(rules);
    if parsed.has_errors() {
        return Err(format!("nfsim refuses the rules: {:?}", parsed.errors().map(|d| d.to_string()).collect::<Vec<_>>()));
    }
    let proto = match probe.proto {
        Proto::Udp => 17,
        Proto::Tcp => 6,
        Proto::Icmp => 1,
        Proto::Sctp => 132,
    };
    let host = pod_host(proto, |p| if p >= 15000 { 1337 } else { 1000 });
    let (src, origin) = match &probe.from {
        Src::Local { uid, gid } => (probe.src.unwrap_or(ip("0.0.0.0")), Origin::Local(Some(Owner { uid: *uid, gid: *gid, groups: Vec::new() }))),
        Src::Peer => (ip("10.0.0.1"), Origin::Iface("eth0".into())),
        Src::Far => return Err("the conformance cases have no far namespace".into()),
    };
    let pkt = Packet::new(proto, src, sport, probe.dst.ip(), probe.dst.port());
    let sim = simulate(&parsed.ruleset, &host, pkt, &origin, &Options { backend, ..Options::default() });
    let [b] = sim.branches.as_slice() else {
        return Err(format!("the simulator gives {} branches: {:?}", sim.branches.len(), sim.branches.iter().map(|b| &b.assumptions).collect::<Vec<_>>()));
    };
    let moved = b.trace.iter().filter(|s| s.kind == StepKind::Rule).map(|s| (s.table.to_string(), s.chain.to_string(), s.rule)).collect();
    let arrived = match &b.delivered {
        Some(Delivered::Local { addr, port, .. }) => Some((Side::Pod, *addr, *port)),
        Some(Delivered::Egress { .. }) if b.packet.dst == ip("10.0.0.9") || b.packet.dst == ip("10.0.0.1") => Some((Side::Peer, b.packet.dst, b.packet.dport)),
        _ => None,
    };
    Ok((moved, arrived))
}

fn observed_arrival(o: &Observed) -> Option<(Side, IpAddr, u16)> {
    o.received.first().map(|r| (r.side, r.local_addr, r.local_port))
}

/// How much the probes exercised: probes run, with rules matched, delivered, redirected.
#[derive(Default, Debug)]
struct Stats {
    probes: usize,
    matched_rules: usize,
    delivered: usize,
    nat: usize,
}

static STATS: std::sync::Mutex<Stats> = std::sync::Mutex::new(Stats { probes: 0, matched_rules: 0, delivered: 0, nat: 0 });

/// Runs `probes` against `rules` on both; returns the divergences.
fn compare(backend: Backend, rules: &str, probes: &[Probe], proto: Proto) -> Vec<String> {
    let mut lab = match Lab::new(backend, rules) {
        Ok(l) => l,
        Err(e) => return vec![format!("the kernel refuses the rules ({e}):\n{rules}")],
    };
    // Generous waits: a delivered probe ends as soon as its listener reports it, so only dropped
    // probes pay them, and a slow CI machine cannot turn a late report into a divergence.
    lab.udp_wait = std::time::Duration::from_millis(400);
    lab.tcp_timeout = std::time::Duration::from_millis(1000);
    for p in POD_PORTS {
        lab.listen(Side::Pod, proto, ip("0.0.0.0"), p, if p >= 15000 { 1337 } else { 1000 }).expect("pod listener");
    }
    for p in PEER_PORTS {
        lab.listen(Side::Peer, proto, ip("0.0.0.0"), p, 0).expect("peer listener");
    }
    let sim_backend = match backend {
        Backend::Nft => SimBackend::Nft,
        Backend::Legacy => SimBackend::Legacy,
    };
    let mut out = Vec::new();
    for probe in probes {
        let seen = match lab.probe(probe) {
            Ok(o) => o,
            Err(e) => {
                out.push(format!("probe {probe:?} failed to run: {e}"));
                continue;
            }
        };
        let predicted = predict(rules, probe, seen.sport, sim_backend);
        let (moved, arrived) = match predicted {
            Ok(p) => p,
            Err(e) => {
                out.push(format!("{backend:?} {probe:?}: {e}\n{rules}"));
                continue;
            }
        };
        let kernel_moved: BTreeSet<(String, String, u32)> = match proto {
            Proto::Udp | Proto::Icmp | Proto::Sctp => seen.moved.clone(),
            // TCP: the handshake's later packets also count; compare the nat table (first packet only).
            Proto::Tcp => seen.moved.iter().filter(|r| r.0 == "nat").cloned().collect(),
        };
        let sim_moved: BTreeSet<(String, String, u32)> = match proto {
            Proto::Udp | Proto::Icmp | Proto::Sctp => moved,
            Proto::Tcp => moved.into_iter().filter(|r| r.0 == "nat").collect(),
        };
        let kernel_arrived = observed_arrival(&seen);
        if let Ok(mut st) = STATS.lock() {
            st.probes += 1;
            st.matched_rules += usize::from(!kernel_moved.is_empty());
            st.delivered += usize::from(kernel_arrived.is_some());
            st.nat += usize::from(kernel_arrived.is_some_and(|(_, a, p)| a != probe.dst.ip() || p != probe.dst.port()));
        }
        if kernel_moved != sim_moved || kernel_arrived != arrived {
            out.push(format!(
                "{backend:?} {probe:?}\n  kernel: moved {kernel_moved:?}, arrived {kernel_arrived:?}, error {:?}\n  nfsim:  moved {sim_moved:?}, arrived {arrived:?}\n{rules}",
                seen.error
            ));
        }
    }
    out
}

fn istio_probes() -> Vec<Probe> {
    let d = |s: &str| -> SocketAddr { s.parse().unwrap() };
    vec![
        Probe::local(1000, 1000, Proto::Tcp, d("10.0.0.9:8080")),
        Probe::local(1337, 1337, Proto::Tcp, d("10.0.0.9:8080")),
        Probe::local(1337, 1337, Proto::Tcp, d("10.0.0.5:8080")),
        Probe::local(1000, 1000, Proto::Tcp, d("10.0.0.5:8080")),
        Probe::peer(Proto::Tcp, d("10.0.0.5:8080")),
        Probe::peer(Proto::Tcp, d("10.0.0.5:9000")),
        Probe::local(1000, 1000, Proto::Tcp, d("127.0.0.1:9000")),
    ]
}

#[test]
fn istio_sidecar_agrees_with_the_kernel() {
    if !common::kernel_available("conformance (Istio)") {
        return;
    }
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/istio-sidecar.rules")).unwrap();
    let mut failures = Vec::new();
    for backend in [Backend::Nft, Backend::Legacy] {
        failures.extend(compare(backend, &rules, &istio_probes(), Proto::Tcp));
    }
    assert!(failures.is_empty(), "{} divergences:\n{}", failures.len(), failures.join("\n"));
}

/// Hand-written cases for the path rules: chain semantics, REDIRECT and DNAT on the way in,
/// loopback skipping nat, marks across tables, MASQUERADE on lo, the raw table's notrack.
fn handwritten() -> Vec<(&'static str, Vec<Probe>)> {
    let d = |s: &str| -> SocketAddr { s.parse().unwrap() };
    let local = |dst: &str| Probe::local(1000, 1000, Proto::Udp, d(dst));
    let peer = |dst: &str| Probe::peer(Proto::Udp, d(dst));
    vec![
        (
            // netfilter-facts §6: jumps, RETURN, goto and policies.
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT DROP [0:0]\n:USER - [0:0]\n:VIA_J - [0:0]\n:GOTO_T - [0:0]\n-A OUTPUT -p udp --dport 8080 -j USER\n-A OUTPUT -p udp --dport 8080 -j ACCEPT\n-A OUTPUT -p udp --dport 9000 -j VIA_J\n-A OUTPUT -p udp --dport 9000 -j ACCEPT\n-A OUTPUT -p udp -d 127.0.0.1 -j RETURN\n-A VIA_J -p udp -g GOTO_T\n-A VIA_J -p udp -j DROP\n-A GOTO_T -p udp\nCOMMIT\n",
            vec![local("10.0.0.9:8080"), local("10.0.0.9:9000"), local("127.0.0.1:8080"), local("127.0.0.1:9000"), peer("10.0.0.5:8080")],
        ),
        (
            // REDIRECT and DNAT in PREROUTING; REDIRECT in OUTPUT; loopback skips nat on the way in.
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -p udp --dport 8080 -j REDIRECT --to-ports 15006\n-A PREROUTING -p udp --dport 9000 -j DNAT --to-destination 10.0.0.9:8080\n-A INPUT -p udp\n-A OUTPUT -p udp -d 10.0.0.9 --dport 8080 -j REDIRECT --to-ports 15001\n-A OUTPUT -p udp\n-A POSTROUTING -p udp\nCOMMIT\n",
            vec![peer("10.0.0.5:8080"), peer("10.0.0.5:9000"), local("10.0.0.9:8080"), local("10.0.0.5:8080"), local("127.0.0.1:9000")],
        ),
        (
            // Marks set in one table are seen by the next; MASQUERADE of lo traffic.
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A OUTPUT -p udp --dport 8080 -j MARK --set-mark 0x7\n-A PREROUTING -p udp -m mark --mark 0x7\n-A INPUT -p udp -s 10.0.0.5\n-A INPUT -p udp -s 127.0.0.1\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -p udp -o lo -m mark --mark 0x7 -j MASQUERADE\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p udp -m mark --mark 0x7 -o lo\n-A OUTPUT -p udp -m mark --mark 0x7 -o eth0\nCOMMIT\n",
            vec![local("127.0.0.1:8080"), local("10.0.0.9:8080"), local("10.0.0.5:9000")],
        ),
        (
            // raw: untracked packets skip nat; conntrack matches see the state.
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p udp --dport 9000 -j CT --notrack\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A OUTPUT -p udp -j REDIRECT --to-ports 15001\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p udp -m conntrack --ctstate UNTRACKED\n-A OUTPUT -p udp -m state --state NEW\n-A OUTPUT -p udp -m conntrack --ctstate DNAT\nCOMMIT\n",
            vec![local("10.0.0.9:9000"), local("10.0.0.9:8080")],
        ),
        (
            // Referee root cause 1: raw runs before conntrack, so its conntrack and state matches
            // see INVALID (no entry yet), except for a packet looped back on lo, which carries the
            // entry made on its way out; filter sees NEW.
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p udp -m conntrack --ctstate NEW\n-A PREROUTING -p udp -m conntrack --ctstate INVALID\n-A PREROUTING -p udp -m state ! --state NEW\n-A OUTPUT -p udp -m conntrack --ctstate NEW\n-A OUTPUT -p udp -m conntrack --ctstate INVALID\n-A OUTPUT -p udp -m state --state INVALID\n-A OUTPUT -p udp -m conntrack --ctstate INVALID --ctproto udp\n-A OUTPUT -p udp -m connmark --mark 0x0\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p udp -m conntrack --ctstate NEW\n-A INPUT -p udp -m conntrack --ctstate NEW\nCOMMIT\n",
            vec![local("10.0.0.9:8080"), local("10.0.0.5:8080"), peer("10.0.0.5:8080")],
        ),
        (
            // Referee root cause 2: the re-route right after nat OUTPUT fails for a loopback source
            // sent off the host (sendto: EINVAL); filter OUTPUT and POSTROUTING never see it.
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A OUTPUT -p udp\n-A POSTROUTING -p udp\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A OUTPUT -p udp -d 127.0.0.1 --dport 9000 -j DNAT --to-destination 10.0.0.9\n-A OUTPUT -p udp -d 10.0.0.5 --dport 9000 -j DNAT --to-destination 10.0.0.9\n-A POSTROUTING -p udp\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p udp\nCOMMIT\n",
            vec![local("127.0.0.1:9000"), local("10.0.0.5:9000"), local("127.0.0.1:8080")],
        ),
        (
            // Referee: NOTRACK and CT --notrack leave a packet that already has an entry (looped
            // back on lo) tracked; an arriving one becomes untracked.
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p udp --dport 8080 -j NOTRACK\n-A PREROUTING -p udp --dport 9000 -j CT --notrack\n-A PREROUTING -p udp -m state --state UNTRACKED\n-A PREROUTING -p udp -m state --state NEW\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p udp -m state --state NEW\n-A INPUT -p udp -m state --state UNTRACKED\nCOMMIT\n",
            vec![local("10.0.0.5:8080"), local("127.0.0.1:9000"), peer("10.0.0.5:8080"), peer("10.0.0.5:9000")],
        ),
        (
            // Referee: a packet looped back on lo carries the entry confirmed at the end of
            // POSTROUTING; an arriving one is not confirmed before INPUT ends.
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -m conntrack --ctstatus CONFIRMED\n-A INPUT -p udp -m conntrack --ctstatus CONFIRMED\n-A OUTPUT -p udp -m conntrack --ctstatus CONFIRMED\nCOMMIT\n",
            vec![local("10.0.0.5:8080"), local("127.0.0.1:9000"), peer("10.0.0.5:8080")],
        ),
    ]
}

#[test]
fn handwritten_cases_agree_with_the_kernel() {
    if !common::kernel_available("conformance (hand-written)") {
        return;
    }
    let mut failures = Vec::new();
    for (rules, probes) in handwritten() {
        for backend in [Backend::Nft, Backend::Legacy] {
            failures.extend(compare(backend, rules, &probes, Proto::Udp));
        }
    }
    assert!(failures.is_empty(), "{} divergences:\n{}", failures.len(), failures.join("\n"));
}

/// One kernel probe per class of the Istio sidecar rules: each class (for locally generated
/// packets and for packets from the peer) that has a TCP packet inside the lab (destinations
/// 10.0.0.5, 10.0.0.9, 10.0.0.1 or 127.0.0.1 and the lab's listening ports) is probed with such
/// a packet (from the peer: to the pod's address), and the kernel and nfsim must agree on it as
/// on every other probe.
#[test]
fn istio_class_examples_agree_with_the_kernel() {
    use nfsim::classes::region::addr_num;
    use nfsim::classes::set::Ranges;
    use nfsim::classes::{Scope, classes};
    if !common::kernel_available("conformance (Istio classes)") {
        return;
    }
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/istio-sidecar.rules")).unwrap();
    let parsed = nfsim::ruleset::parse(&rules);
    let host = pod_host(6, |p| if p >= 15000 { 1337 } else { 1000 });
    let lab_dsts = Ranges::from_intervals(["10.0.0.5", "10.0.0.9", "10.0.0.1", "127.0.0.1"].map(|a| (addr_num(ip(a)), addr_num(ip(a)))));
    let lab_ports = Ranges::from_intervals(POD_PORTS.iter().chain(&PEER_PORTS).map(|p| (*p, *p)));
    let mut probes = Vec::new();
    let mut classes_seen = 0;
    for from in [None, Some("eth0")] {
        let scope = Scope::all(&host, nfsim::ruleset::Family::V4, from);
        let cs = classes(&parsed.ruleset, &host, &scope, &Options::default());
        classes_seen += cs.classes.len();
        for c in &cs.classes {
            let inside = c.region.iter().find_map(|cube| {
                let mut q = cube.clone();
                q.proto = q.proto.intersect(&Ranges::point(6));
                q.dst = q.dst.intersect(&lab_dsts);
                q.dport = q.dport.intersect(&lab_ports);
                q.sport = q.sport.intersect(&Ranges::range(40000, 50000));
                if from.is_some() {
                    // From the peer, only the pod's address leaves the peer's namespace.
                    q.src = q.src.intersect(&Ranges::point(addr_num(ip("10.0.0.1"))));
                    q.dst = q.dst.intersect(&Ranges::point(addr_num(ip("10.0.0.5"))));
                }
                q.example()
            });
            let Some(i) = inside else { continue };
            let dst = SocketAddr::new(nfsim::classes::region::num_addr(i.dst, nfsim::ruleset::Family::V4), i.dport);
            probes.push(match from {
                None if i.src == 0 => Probe::local(i.uid, i.gid, Proto::Tcp, dst),
                None => Probe::local(i.uid, i.gid, Proto::Tcp, dst).with_src(nfsim::classes::region::num_addr(i.src, nfsim::ruleset::Family::V4)),
                Some(_) => Probe::peer(Proto::Tcp, dst),
            });
        }
    }
    assert!(probes.len() >= 8, "only {} of {classes_seen} classes have a packet in the lab", probes.len());
    eprintln!("Istio classes: {classes_seen} classes, {} probed in the kernel", probes.len());
    let mut failures = Vec::new();
    for backend in [Backend::Nft, Backend::Legacy] {
        failures.extend(compare(backend, &rules, &probes, Proto::Tcp));
    }
    assert!(failures.is_empty(), "{} divergences:\n{}", failures.len(), failures.join("\n"));
}
