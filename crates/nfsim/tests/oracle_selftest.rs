//! Checks the kernel oracle (`tests/oracle`) against facts in shared/reference/netfilter-facts.md,
//! on both iptables backends. Needs root; skips loudly otherwise (fails with NFSIM_REQUIRE_KERNEL=1).

mod common;
mod oracle;

use oracle::{Backend, Lab, Observed, Probe, Proto, Side};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const ISTIO: &str = include_str!("../../../examples/istio-sidecar.rules");

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn rule_set(ids: &[(&str, &str, u32)]) -> BTreeSet<(String, String, u32)> {
    ids.iter().map(|&(t, c, n)| (t.to_string(), c.to_string(), n)).collect()
}
fn chains(ids: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    ids.iter().map(|&(t, c)| (t.to_string(), c.to_string())).collect()
}

/// Runs a probe, prints it, and returns what was observed.
fn probe(lab: &mut Lab, name: &str, p: Probe, slowest: &mut Duration) -> Observed {
    let o = lab.probe(&p).unwrap_or_else(|e| panic!("{:?} {name}: {e}", lab.backend()));
    eprintln!(
        "[{:?}] {name}: {:?}ms error={:?} moved={:?} policy={:?} received={:?}",
        lab.backend(),
        o.elapsed.as_millis(),
        o.error,
        o.packets,
        o.policy_packets,
        o.received
    );
    *slowest = (*slowest).max(o.elapsed);
    o
}

fn istio_checks(backend: Backend) {
    let t0 = Instant::now();
    let mut lab = Lab::new(backend, ISTIO).expect("lab");
    eprintln!("[{backend:?}] lab up in {:?}, tables {:?}", t0.elapsed(), lab.tables());
    let any = ip("0.0.0.0");
    lab.listen(Side::Pod, Proto::Tcp, any, 15001, 1337).unwrap();
    lab.listen(Side::Pod, Proto::Tcp, any, 15006, 1337).unwrap();
    lab.listen(Side::Pod, Proto::Tcp, any, 8080, 1000).unwrap();
    lab.listen(Side::Pod, Proto::Tcp, any, 22, 0).unwrap();
    lab.listen(Side::Peer, Proto::Tcp, any, 8080, 0).unwrap();
    lab.listen(Side::Peer, Proto::Udp, any, 8080, 0).unwrap();
    let mut slowest = Duration::ZERO;
    let s = &mut slowest;

    // Section 7: the app's outbound connection is redirected to Envoy on 15001.
    let o = probe(&mut lab, "app 1000 -> 10.0.0.9:8080", Probe::local(1000, 1000, Proto::Tcp, sa("10.0.0.9:8080")), s);
    assert_eq!(o.error, None);
    assert_eq!(o.moved, rule_set(&[("nat", "OUTPUT", 1), ("nat", "ISTIO_OUTPUT", 9), ("nat", "ISTIO_REDIRECT", 1)]));
    assert_eq!(o.policy, chains(&[("nat", "POSTROUTING")]));
    assert!(o.packets.values().all(|&n| n == 1), "nat sees only the SYN: {:?}", o.packets);
    assert_eq!(o.received.len(), 1, "{:?}", o.received);
    let r = &o.received[0];
    assert_eq!((r.side, r.port_listened, r.local_addr, r.local_port), (Side::Pod, 15001, ip("127.0.0.1"), 15001));
    assert_eq!(r.orig_dst, Some(sa("10.0.0.9:8080")));
    assert_eq!(r.peer, SocketAddr::new(ip("10.0.0.5"), o.sport));

    // Envoy's own connection is not redirected and reaches the peer (no conntrack there: orig_dst None).
    let o = probe(&mut lab, "envoy 1337 -> 10.0.0.9:8080", Probe::local(1337, 1337, Proto::Tcp, sa("10.0.0.9:8080")), s);
    assert_eq!(o.error, None);
    assert_eq!(o.moved, rule_set(&[("nat", "OUTPUT", 1), ("nat", "ISTIO_OUTPUT", 4)]));
    assert_eq!(o.policy, chains(&[("nat", "OUTPUT"), ("nat", "POSTROUTING")]));
    assert_eq!(o.received.len(), 1, "{:?}", o.received);
    let r = &o.received[0];
    assert_eq!((r.side, r.local_addr, r.local_port, r.orig_dst), (Side::Peer, ip("10.0.0.9"), 8080, None));

    // Envoy to the pod's own IP goes out lo and is sent to 15006.
    let o = probe(&mut lab, "envoy 1337 -> 10.0.0.5:8080", Probe::local(1337, 1337, Proto::Tcp, sa("10.0.0.5:8080")), s);
    assert_eq!(o.moved, rule_set(&[("nat", "OUTPUT", 1), ("nat", "ISTIO_OUTPUT", 2), ("nat", "ISTIO_IN_REDIRECT", 1)]));
    assert_eq!(o.received.len(), 1, "{:?}", o.received);
    assert_eq!((o.received[0].port_listened, o.received[0].local_addr), (15006, ip("127.0.0.1")));

    // Inbound from the peer: PREROUTING redirects to 15006, keeping the pod address.
    let o = probe(&mut lab, "inbound -> 10.0.0.5:8080", Probe::peer(Proto::Tcp, sa("10.0.0.5:8080")), s);
    assert_eq!(o.error, None);
    assert_eq!(o.moved, rule_set(&[("nat", "PREROUTING", 1), ("nat", "ISTIO_INBOUND", 6), ("nat", "ISTIO_IN_REDIRECT", 1)]));
    assert_eq!(o.policy, chains(&[("nat", "INPUT")]));
    assert_eq!(o.received.len(), 1, "{:?}", o.received);
    let r = &o.received[0];
    assert_eq!((r.side, r.port_listened, r.local_addr, r.local_port), (Side::Pod, 15006, ip("10.0.0.5"), 15006));
    assert_eq!(r.orig_dst, Some(sa("10.0.0.5:8080")));
    assert_eq!(r.peer.ip(), ip("10.0.0.1"));

    // Inbound to 22 RETURNs.
    let o = probe(&mut lab, "inbound -> 10.0.0.5:22", Probe::peer(Proto::Tcp, sa("10.0.0.5:22")), s);
    assert_eq!(o.moved, rule_set(&[("nat", "PREROUTING", 1), ("nat", "ISTIO_INBOUND", 2)]));
    assert_eq!(o.received.len(), 1);
    assert_eq!((o.received[0].port_listened, o.received[0].orig_dst), (22, Some(sa("10.0.0.5:22"))));

    // Inbound from the peer's second address.
    let o = probe(&mut lab, "inbound from 10.0.0.9 -> :15008 (closed)", Probe::peer(Proto::Tcp, sa("10.0.0.5:15008")).with_src(ip("10.0.0.9")), s);
    assert_eq!(o.error.as_deref(), Some("ECONNREFUSED"));
    assert_eq!(o.moved, rule_set(&[("nat", "PREROUTING", 1), ("nat", "ISTIO_INBOUND", 1)]));
    assert!(o.received.is_empty());

    // Envoy bound to 127.0.0.6 connecting to the pod IP: ISTIO_OUTPUT#1 RETURNs, 8080 gets it.
    let p = Probe::local(1337, 1337, Proto::Tcp, sa("10.0.0.5:8080")).with_src(ip("127.0.0.6"));
    let o = probe(&mut lab, "envoy from 127.0.0.6 -> 10.0.0.5:8080", p, s);
    assert_eq!(o.moved, rule_set(&[("nat", "OUTPUT", 1), ("nat", "ISTIO_OUTPUT", 1)]));
    assert_eq!(o.received.len(), 1);
    assert_eq!((o.received[0].port_listened, o.received[0].local_addr, o.received[0].peer.ip()), (8080, ip("10.0.0.5"), ip("127.0.0.6")));

    // Section 8: bound to 127.0.0.6 and connecting off-pod fails with EINVAL before netfilter.
    let p = Probe::local(1337, 1337, Proto::Tcp, sa("10.0.0.9:8080")).with_src(ip("127.0.0.6"));
    let o = probe(&mut lab, "127.0.0.6 -> 10.0.0.9:8080", p, s);
    assert_eq!(o.error.as_deref(), Some("EINVAL"));
    assert!(o.moved.is_empty() && o.policy.is_empty() && o.received.is_empty());

    // The rules are TCP-only: a UDP datagram only moves the nat policy counters, exactly once each.
    let o = probe(&mut lab, "app udp -> 10.0.0.9:8080", Probe::local(1000, 1000, Proto::Udp, sa("10.0.0.9:8080")), s);
    assert_eq!(o.error, None);
    assert!(o.moved.is_empty(), "{:?}", o.moved);
    assert_eq!(o.policy, chains(&[("nat", "OUTPUT"), ("nat", "POSTROUTING")]));
    assert!(o.policy_packets.values().all(|&n| n == 1), "{:?}", o.policy_packets);
    assert_eq!(o.received.len(), 1);
    assert_eq!((o.received[0].side, o.received[0].local_addr, o.received[0].local_port), (Side::Peer, ip("10.0.0.9"), 8080));

    // The same probe repeated gives the same answer (fresh conntrack entry each time).
    for i in 0..5 {
        let again = probe(&mut lab, &format!("app 1000 -> 10.0.0.9:8080 #{i}"), Probe::local(1000, 1000, Proto::Tcp, sa("10.0.0.9:8080")), s);
        assert_eq!(again.moved, rule_set(&[("nat", "OUTPUT", 1), ("nat", "ISTIO_OUTPUT", 9), ("nat", "ISTIO_REDIRECT", 1)]));
        assert_eq!(again.received.len(), 1);
        assert_eq!(again.received[0].port_listened, 15001);
    }
    eprintln!("[{backend:?}] istio: slowest probe {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "a probe took {slowest:?}");

    // Cleanup: listeners killed by PID, namespaces gone.
    let pids = lab.listener_pids();
    let names = [lab.ns_name(Side::Pod).to_string(), lab.ns_name(Side::Peer).to_string()];
    drop(lab);
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "listener {pid} still runs");
    }
    let list = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for n in names {
        assert!(!list.lines().any(|l| l.split_whitespace().next() == Some(n.as_str())), "{n} was not deleted");
    }
}

const COUNTING: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -p udp -m udp --dport 7000 -j REDIRECT --to-ports 7001
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p udp
-A INPUT -p icmp
-A OUTPUT -p udp
-A OUTPUT -p udp -m udp --dport 7002 -j DROP
-A OUTPUT -p tcp -m tcp --dport 7003 -j DROP
-A OUTPUT -p tcp
COMMIT
";

fn counting_checks(backend: Backend) {
    let mut lab = Lab::new(backend, COUNTING).expect("lab");
    let any = ip("0.0.0.0");
    lab.listen(Side::Peer, Proto::Udp, any, 9999, 0).unwrap();
    lab.listen(Side::Pod, Proto::Udp, any, 7001, 1000).unwrap();
    let mut slowest = Duration::ZERO;
    let s = &mut slowest;
    let f = |c: &str, n: u32| ("filter".to_string(), c.to_string(), n);

    // One datagram out eth0: each counter on its path moves by exactly 1.
    let o = probe(&mut lab, "udp -> 10.0.0.9:9999", Probe::local(1000, 1000, Proto::Udp, sa("10.0.0.9:9999")), s);
    assert_eq!(o.error, None);
    assert_eq!(o.packets, [(f("OUTPUT", 1), 1)].into_iter().collect());
    assert_eq!(
        o.policy_packets,
        [(("nat".into(), "OUTPUT".into()), 1), (("nat".into(), "POSTROUTING".into()), 1), (("filter".into(), "OUTPUT".into()), 1)].into_iter().collect()
    );
    assert_eq!(o.received.len(), 1);

    // REDIRECTed to 127.0.0.1:7001: out lo and back in, once each.
    let o = probe(&mut lab, "udp -> 10.0.0.9:7000 (REDIRECT 7001)", Probe::local(1000, 1000, Proto::Udp, sa("10.0.0.9:7000")), s);
    assert_eq!(o.error, None);
    let nat_redirect = ("nat".to_string(), "OUTPUT".to_string(), 1);
    assert_eq!(o.packets, [(nat_redirect, 1), (f("INPUT", 1), 1), (f("OUTPUT", 1), 1)].into_iter().collect());
    assert_eq!(o.received.len(), 1);
    let r = &o.received[0];
    assert_eq!((r.side, r.local_addr, r.local_port, r.peer), (Side::Pod, ip("127.0.0.1"), 7001, SocketAddr::new(ip("10.0.0.5"), o.sport)));

    // Section 8: a UDP send dropped in OUTPUT fails with EPERM at once.
    let o = probe(&mut lab, "udp -> :7002 dropped in OUTPUT", Probe::local(1000, 1000, Proto::Udp, sa("10.0.0.9:7002")), s);
    assert_eq!(o.error.as_deref(), Some("EPERM"));
    assert_eq!(o.packets, [(f("OUTPUT", 1), 1), (f("OUTPUT", 2), 1)].into_iter().collect());
    assert!(o.received.is_empty());

    // ... while a dropped SYN is a timeout.
    let o = probe(&mut lab, "tcp -> :7003 dropped in OUTPUT", Probe::local(1000, 1000, Proto::Tcp, sa("10.0.0.9:7003")), s);
    assert_eq!(o.error.as_deref(), Some("timeout"));
    assert_eq!(o.packets, [(f("OUTPUT", 3), 1)].into_iter().collect());

    // A datagram to a closed port comes back as ICMP port unreachable: ECONNREFUSED, counted in INPUT.
    let o = probe(&mut lab, "udp -> 10.0.0.9:9998 (closed)", Probe::local(1000, 1000, Proto::Udp, sa("10.0.0.9:9998")), s);
    assert_eq!(o.error.as_deref(), Some("ECONNREFUSED"));
    assert_eq!(o.packets, [(f("INPUT", 2), 1), (f("OUTPUT", 1), 1)].into_iter().collect());

    // Inbound datagram to a closed pod port: the pod's ICMP error passes filter OUTPUT (policy).
    let o = probe(&mut lab, "udp peer -> 10.0.0.5:9998 (closed)", Probe::peer(Proto::Udp, sa("10.0.0.5:9998")), s);
    assert_eq!(o.error.as_deref(), Some("ECONNREFUSED"));
    assert!(o.moved.contains(&f("INPUT", 1)), "{:?}", o.moved);

    // A TCP connection to the peer that nobody listens on: RST, ECONNREFUSED, quickly.
    let o = probe(&mut lab, "tcp -> 10.0.0.9:9997 (closed)", Probe::local(1000, 1000, Proto::Tcp, sa("10.0.0.9:9997")), s);
    assert_eq!(o.error.as_deref(), Some("ECONNREFUSED"));
    assert_eq!(o.packets.get(&f("OUTPUT", 4)), Some(&1));
    eprintln!("[{backend:?}] counting: slowest probe {slowest:?}");
}

/// Section 0: without a rule that needs conntrack, no nat chain runs.
fn no_conntrack_checks(backend: Backend) {
    let rules = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A OUTPUT -p tcp\n-A POSTROUTING -p tcp\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp\n-A OUTPUT -p tcp\nCOMMIT\n";
    let mut lab = Lab::new(backend, rules).expect("lab");
    lab.listen(Side::Peer, Proto::Tcp, ip("10.0.0.9"), 8080, 0).unwrap();
    let mut slowest = Duration::ZERO;
    let o = probe(&mut lab, "no conntrack: tcp -> 10.0.0.9:8080", Probe::local(1000, 1000, Proto::Tcp, sa("10.0.0.9:8080")), &mut slowest);
    assert_eq!(o.error, None);
    assert_eq!(o.moved, rule_set(&[("filter", "INPUT", 1), ("filter", "OUTPUT", 1)]));
    assert!(o.policy.iter().all(|(t, _)| t == "filter"), "{:?}", o.policy);
    // SYN, ACK, (the RST comes from the peer) out; SYN-ACK, RST in.
    eprintln!("[{backend:?}] no-conntrack packets {:?}", o.packets);
    assert_eq!(o.received.len(), 1);
    assert_eq!(o.received[0].orig_dst, None);
}

/// Section 1b: inbound, legacy runs security INPUT (priority 50) before nat INPUT (100); nft runs
/// security at 150, after nat. Each chain marks the SYN according to the mark it finds.
fn security_vs_nat_input(backend: Backend) {
    let rules = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A INPUT -p tcp --syn -m mark --mark 0x0 -j MARK --set-mark 0x1
-A INPUT -p tcp --syn -m mark --mark 0x2 -j MARK --set-mark 0x3
COMMIT
*security
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp --syn -m mark --mark 0x0 -j MARK --set-mark 0x2
-A INPUT -p tcp --syn -m mark --mark 0x1 -j MARK --set-mark 0x4
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate INVALID
COMMIT
";
    let mut lab = Lab::new(backend, rules).expect("lab");
    lab.listen(Side::Pod, Proto::Tcp, ip("0.0.0.0"), 8080, 0).unwrap();
    let mut slowest = Duration::ZERO;
    let o = probe(&mut lab, "inbound SYN: security vs nat INPUT", Probe::peer(Proto::Tcp, sa("10.0.0.5:8080")), &mut slowest);
    assert_eq!(o.error, None);
    let expected = match backend {
        Backend::Nft => rule_set(&[("nat", "INPUT", 1), ("security", "INPUT", 2)]),
        Backend::Legacy => rule_set(&[("security", "INPUT", 1), ("nat", "INPUT", 2)]),
    };
    assert_eq!(o.moved, expected);
}

#[test]
fn oracle_selftest_nft() {
    if !common::kernel_available("oracle_selftest_nft") {
        return;
    }
    istio_checks(Backend::Nft);
    counting_checks(Backend::Nft);
    no_conntrack_checks(Backend::Nft);
    security_vs_nat_input(Backend::Nft);
}

#[test]
fn oracle_selftest_legacy() {
    if !common::kernel_available("oracle_selftest_legacy") {
        return;
    }
    istio_checks(Backend::Legacy);
    counting_checks(Backend::Legacy);
    no_conntrack_checks(Backend::Legacy);
    security_vs_nat_input(Backend::Legacy);
}

#[test]
fn oracle_rejects_rules_the_kernel_rejects() {
    if !common::kernel_available("oracle_rejects_rules_the_kernel_rejects") {
        return;
    }
    // Section 4c: owner match reachable from PREROUTING fails at the real load.
    let bad = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -m owner --uid-owner 1 -j RETURN\nCOMMIT\n";
    for b in [Backend::Nft, Backend::Legacy] {
        let e = Lab::new(b, bad).err().expect("owner in PREROUTING must not load");
        eprintln!("[{b:?}] load error: {e}");
    }
}
