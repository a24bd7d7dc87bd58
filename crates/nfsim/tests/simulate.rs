//! The single-host engine against what `../shared/reference/netfilter-facts.md` records the real
//! kernel doing: table order per hook, loopback skipping nat on the way in, REDIRECT addresses,
//! nat only with conntrack and only for new connections, chain return and goto semantics.

use std::net::IpAddr;

use nfsim::hook::Backend;
use nfsim::host::Host;
use nfsim::packet::{CtState, Owner, Packet};
use nfsim::ruleset::parse;
use nfsim::simulate::{Branch, Origin, simulate};
use nfsim::trace::{Delivered, Verdict};
use nfsim::traverse::Options;

fn pod() -> Host {
    Host::new("pod")
        .iface("eth0", &["10.0.0.5/24", "10.0.0.6/24"])
        .iface("eth1", &["10.1.0.5/24"])
        .gateway("10.0.0.1")
        .listen(6, "0.0.0.0", 8080, "app", 1000, 1000)
        .listen(6, "0.0.0.0", 15001, "envoy", 1337, 1337)
        .listen(6, "0.0.0.0", 15006, "envoy", 1337, 1337)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Simulates one TCP SYN and returns its only branch.
fn run(rules: &str, origin: Origin, src: &str, dst: &str, dport: u16, backend: Backend) -> Branch {
    let parsed = parse(rules);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    let pkt = Packet::new(6, ip(src), 40000, ip(dst), dport);
    let opts = Options { backend, ..Options::default() };
    let sim = simulate(&parsed.ruleset, &pod(), pkt, &origin, &opts);
    assert_eq!(sim.branches.len(), 1, "{sim:#?}");
    sim.branches.into_iter().next().unwrap()
}

fn local(uid: u32) -> Origin {
    Origin::Local(Some(Owner { uid, gid: uid, groups: Vec::new() }))
}

/// A counting rule in every built-in chain of every table, plus one line that switches conntrack on.
fn counters() -> String {
    let mut s = String::new();
    for (t, chains) in [
        ("raw", &["PREROUTING", "OUTPUT"][..]),
        ("mangle", &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]),
        ("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]),
        ("filter", &["INPUT", "FORWARD", "OUTPUT"]),
        ("security", &["INPUT", "FORWARD", "OUTPUT"]),
    ] {
        s.push_str(&format!("*{t}\n"));
        for c in chains {
            s.push_str(&format!(":{c} ACCEPT [0:0]\n"));
        }
        for c in chains {
            s.push_str(&format!("-A {c} -p tcp\n"));
        }
        if t == "filter" {
            s.push_str("-A FORWARD -m conntrack --ctstate INVALID\n");
        }
        s.push_str("COMMIT\n");
    }
    s
}

fn chains(b: &Branch) -> Vec<String> {
    b.trace.iter().filter(|s| s.kind == nfsim::trace::StepKind::Rule).map(|s| format!("{}/{}", s.table, s.chain)).collect()
}

#[test]
fn table_order_for_local_out_loopback_and_inbound() {
    let rules = counters();
    let b = run(&rules, local(1000), "0.0.0.0", "10.0.0.9", 8080, Backend::Nft);
    assert_eq!(chains(&b), ["raw/OUTPUT", "mangle/OUTPUT", "nat/OUTPUT", "filter/OUTPUT", "security/OUTPUT", "mangle/POSTROUTING", "nat/POSTROUTING"]);
    assert_eq!(b.delivered, Some(Delivered::Egress { iface: "eth0".into(), next_hop: ip("10.0.0.9") }));
    assert_eq!(b.packet.src, ip("10.0.0.5"), "source chosen by the route");

    // To the pod's own address: out on lo and back in, nat PREROUTING and INPUT skipped.
    let b = run(&rules, local(1000), "0.0.0.0", "10.0.0.5", 8080, Backend::Nft);
    assert_eq!(chains(&b)[7..], ["raw/PREROUTING", "mangle/PREROUTING", "mangle/INPUT", "filter/INPUT", "security/INPUT"]);
    assert!(matches!(b.delivered, Some(Delivered::Local { port: 8080, .. })));

    // Inbound: nat INPUT before security INPUT with nft, after it with legacy.
    let b = run(&rules, Origin::Iface("eth0".into()), "10.0.0.1", "10.0.0.5", 8080, Backend::Nft);
    assert_eq!(chains(&b), ["raw/PREROUTING", "mangle/PREROUTING", "nat/PREROUTING", "mangle/INPUT", "filter/INPUT", "nat/INPUT", "security/INPUT"]);
    let b = run(&rules, Origin::Iface("eth0".into()), "10.0.0.1", "10.0.0.5", 8080, Backend::Legacy);
    assert_eq!(chains(&b)[4..], ["filter/INPUT", "security/INPUT", "nat/INPUT"]);
}

#[test]
fn nat_runs_only_with_conntrack_and_for_new_connections() {
    let rules = "*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp\nCOMMIT\n*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp\nCOMMIT\n";
    let b = run(rules, local(1000), "0.0.0.0", "10.0.0.9", 8080, Backend::Nft);
    assert_eq!(chains(&b), ["filter/OUTPUT"], "no rule needs conntrack: nat is never traversed");

    let rules = "*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp --dport 8080 -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let parsed = parse(rules);
    let mut pkt = Packet::new(6, ip("10.0.0.5"), 40000, ip("10.0.0.9"), 8080);
    pkt.ct_state = CtState::Established;
    let sim = simulate(&parsed.ruleset, &pod(), pkt, &local(1000), &Options::default());
    assert!(sim.branches[0].trace.is_empty(), "later packets reuse the binding without nat rules");
}

#[test]
fn redirect_goes_to_loopback_when_local_and_to_the_input_address_when_arriving() {
    let rules = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p tcp --dport 8080 -j REDIRECT --to-ports 15006\n-A OUTPUT -p tcp --dport 8080 -j REDIRECT --to-ports 15001\n-A OUTPUT -p tcp --dport 9090 -j REDIRECT\nCOMMIT\n";
    let b = run(rules, local(1000), "0.0.0.0", "10.0.0.9", 8080, Backend::Nft);
    assert_eq!(b.delivered, Some(Delivered::Local { addr: ip("127.0.0.1"), port: 15001, process: Some("envoy".into()) }));
    assert_eq!(b.packet.src, ip("10.0.0.5"), "the source stays what the original route chose");
    assert_eq!(b.original_dst, Some((ip("10.0.0.9"), 8080)));

    let b = run(rules, Origin::Iface("eth0".into()), "10.0.0.1", "10.0.0.6", 8080, Backend::Nft);
    assert_eq!(b.delivered, Some(Delivered::Local { addr: ip("10.0.0.5"), port: 15006, process: Some("envoy".into()) }), "primary address of eth0");
    let b = run(rules, Origin::Iface("eth1".into()), "10.1.0.1", "10.1.0.5", 8080, Backend::Nft);
    assert!(matches!(b.delivered, Some(Delivered::Local { addr, port: 15006, .. }) if addr == ip("10.1.0.5")));

    // Without --to-ports the port is kept.
    let parsed = parse(rules);
    let mut host = pod();
    host = host.listen(6, "0.0.0.0", 9090, "metrics", 0, 0);
    let sim = simulate(&parsed.ruleset, &host, Packet::new(6, ip("0.0.0.0"), 40000, ip("10.0.0.9"), 9090), &local(1000), &Options::default());
    assert!(matches!(sim.branches[0].delivered, Some(Delivered::Local { port: 9090, .. })));
}

#[test]
fn chains_return_and_goto_like_ipt_do_table() {
    // netfilter-facts §6: filter OUTPUT policy DROP; each probe port exercises one construct.
    let rules = "*filter
:OUTPUT DROP [0:0]
:USER - [0:0]
:VIA_J - [0:0]
:GOTO_T - [0:0]
:RET - [0:0]
-A OUTPUT -p tcp --dport 1001 -j USER
-A OUTPUT -p tcp --dport 1001 -j ACCEPT
-A OUTPUT -p tcp --dport 1002 -j RETURN
-A OUTPUT -p tcp --dport 1002 -j ACCEPT
-A OUTPUT -p tcp --dport 1003 -g USER
-A OUTPUT -p tcp --dport 1003 -j ACCEPT
-A OUTPUT -p tcp --dport 1004 -j VIA_J
-A OUTPUT -p tcp --dport 1004 -j ACCEPT
-A OUTPUT -p tcp --dport 1005 -j RET
-A OUTPUT -p tcp --dport 1005 -j ACCEPT
-A VIA_J -g GOTO_T
-A VIA_J -j DROP
-A RET -j RETURN
-A RET -j DROP
COMMIT
";
    let verdict = |port| run(rules, local(1000), "0.0.0.0", "10.0.0.9", port, Backend::Nft);
    let b = verdict(1001);
    assert_eq!(b.verdict, Verdict::Accept, "falling off a user chain returns to the rule after the jump");
    assert_eq!(
        b.trace.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ["TRACE: filter:OUTPUT:rule:1", "TRACE: filter:USER:return:1", "TRACE: filter:OUTPUT:rule:2"]
    );
    let b = verdict(1002);
    assert_eq!(
        (b.verdict, b.trace.last().unwrap().to_string()),
        (Verdict::Drop, "TRACE: filter:OUTPUT:policy:11".to_string()),
        "RETURN in a built-in chain applies its policy"
    );
    assert_eq!(verdict(1003).verdict, Verdict::Drop, "goto from a built-in chain, then the end: policy");
    let b = verdict(1004);
    assert_eq!(b.verdict, Verdict::Accept, "goto does not push: back to OUTPUT after the -j VIA_J");
    assert!(!b.trace.iter().any(|s| &*s.chain == "VIA_J" && s.rule == 2));
    assert_eq!(verdict(1005).verdict, Verdict::Accept, "RETURN in a user chain goes back to the caller");
}

#[test]
fn filter_output_sees_the_original_out_interface_after_a_redirect() {
    // netfilter-facts §9.7: after nat OUTPUT REDIRECT, filter OUTPUT sees -d 127.0.0.1 but still -o eth0.
    let rules = "*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -d 127.0.0.1/32 -o eth0\n-A OUTPUT -o lo\nCOMMIT\n";
    let b = run(rules, local(1000), "0.0.0.0", "10.0.0.9", 8080, Backend::Nft);
    let filter: Vec<u32> =
        b.trace.iter().filter(|s| &*s.chain == "OUTPUT" && s.table.as_str() == "filter" && s.kind == nfsim::trace::StepKind::Rule).map(|s| s.rule).collect();
    assert_eq!(filter, [1]);
}

#[test]
fn forwarding_is_off_by_default() {
    let rules = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp\nCOMMIT\n";
    let b = run(rules, Origin::Iface("eth0".into()), "10.0.0.1", "10.1.0.9", 8080, Backend::Nft);
    assert_eq!(b.verdict, Verdict::Drop);
    assert!(b.trace.is_empty());
}

#[test]
fn sysctls_change_the_path() {
    let rules = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp\nCOMMIT\n";
    let parsed = parse(rules);
    // netfilter-facts §8: bound to 127.0.0.6, a connection to a non-local address fails with EINVAL.
    let sim = simulate(&parsed.ruleset, &pod(), Packet::new(6, ip("127.0.0.6"), 40000, ip("10.0.0.9"), 8080), &local(1000), &Options::default());
    assert!(sim.branches[0].reason.as_ref().map(ToString::to_string).as_deref().unwrap().contains("EINVAL"));
    // Binding a non-local source needs ip_nonlocal_bind.
    let sim = simulate(&parsed.ruleset, &pod(), Packet::new(6, ip("10.0.0.77"), 40000, ip("10.0.0.9"), 8080), &local(1000), &Options::default());
    assert_eq!(sim.branches[0].verdict, Verdict::Drop);
    let mut host = pod();
    host.sysctls.ip_nonlocal_bind = true;
    let sim = simulate(&parsed.ruleset, &host, Packet::new(6, ip("10.0.0.77"), 40000, ip("10.0.0.9"), 8080), &local(1000), &Options::default());
    assert_eq!(sim.branches[0].verdict, Verdict::Accept);
    // Strict reverse-path filtering drops a source routed back through another interface.
    let mut host = pod();
    host.sysctls.rp_filter = 1;
    let from_eth0 = |src: &str| {
        simulate(&parsed.ruleset, &host, Packet::new(6, ip(src), 40000, ip("10.0.0.5"), 8080), &Origin::Iface("eth0".into()), &Options::default())
            .branches
            .remove(0)
    };
    assert_eq!(from_eth0("10.1.0.9").verdict, Verdict::Drop, "10.1.0.0/24 is routed via eth1");
    assert_eq!(from_eth0("10.0.0.1").verdict, Verdict::Accept);
    assert_eq!(from_eth0("8.8.8.8").verdict, Verdict::Accept, "the default route points back through eth0");
    host.sysctls.rp_filter = 2;
    let b = simulate(&parsed.ruleset, &host, Packet::new(6, ip("10.1.0.9"), 40000, ip("10.0.0.5"), 8080), &Origin::Iface("eth0".into()), &Options::default())
        .branches
        .remove(0);
    assert_eq!(b.verdict, Verdict::Accept, "loose mode: any route back will do");
}

#[test]
fn tproxy_delivers_to_the_proxy_without_rewriting() {
    // Istio's TPROXY mode: mangle PREROUTING marks and diverts; `ip rule fwmark 1 lookup 133`
    // with `local 0.0.0.0/0 dev lo` in table 133 delivers locally.
    let rules =
        "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp --dport 8080 -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x1/0x1\nCOMMIT\n";
    let parsed = parse(rules);
    let mut host = pod();
    host.tables.insert(133, vec![nfsim::host::Route { dst: "0.0.0.0/0".parse().unwrap(), via: None, dev: "lo".into(), local: true }]);
    host.policy.push(nfsim::host::PolicyRule { fwmark: 1, mask: 1, table: 133 });
    let arrive = |host: &nfsim::host::Host| {
        simulate(&parsed.ruleset, host, Packet::new(6, ip("10.0.0.1"), 40000, ip("10.0.0.99"), 8080), &Origin::Iface("eth0".into()), &Options::default())
    };
    // TPROXY assigns only a transparent socket (Envoy sets IP_TRANSPARENT): without it, it drops.
    let b = arrive(&host).branches.remove(0);
    assert_eq!((b.verdict, b.by.map(|r| r.rule)), (Verdict::Drop, Some(1)));
    host.sockets.iter_mut().filter(|s| s.port == 15006).for_each(|s| s.transparent = true);
    let sim = arrive(&host);
    let b = &sim.branches[0];
    // The proxy's socket on 15006 accepts a connection whose local address is the original one.
    assert_eq!(b.delivered, Some(Delivered::Local { addr: ip("10.0.0.99"), port: 8080, process: Some("envoy".into()) }));
    assert_eq!((b.packet.dst, b.packet.dport, b.packet.mark), (ip("10.0.0.99"), 8080, 1), "the packet itself is not rewritten");
    assert_eq!(b.original_dst, None);
    // Without a listener on the port, TPROXY drops.
    let rules2 = rules.replace("15006", "15999");
    let sim = simulate(
        &parse(&rules2).ruleset,
        &host,
        Packet::new(6, ip("10.0.0.1"), 40000, ip("10.0.0.99"), 8080),
        &Origin::Iface("eth0".into()),
        &Options::default(),
    );
    assert_eq!(sim.branches[0].verdict, Verdict::Drop);
}

/// Simulates one UDP datagram and returns its only branch.
fn run_udp(rules: &str, origin: Origin, src: &str, dst: &str, dport: u16) -> Branch {
    let parsed = parse(rules);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    let host = pod().listen(17, "0.0.0.0", 53, "dns", 0, 0);
    let sim = simulate(&parsed.ruleset, &host, Packet::new(17, ip(src), 40000, ip(dst), dport), &origin, &Options::default());
    assert_eq!(sim.branches.len(), 1, "{sim:#?}");
    sim.branches.into_iter().next().unwrap()
}

/// Every rule that matched, as `table/CHAIN#n`, in order.
fn rules_hit(b: &Branch) -> Vec<String> {
    b.trace.iter().filter(|s| s.kind == nfsim::trace::StepKind::Rule).map(|s| format!("{}/{}#{}", s.table, s.chain, s.rule)).collect()
}

#[test]
fn raw_runs_before_conntrack() {
    // netfilter-facts §9.1: in raw a datagram has no conntrack entry yet: `--ctstate NEW` does not
    // match, `--ctstate INVALID` and `! --ctstate NEW` do; filter OUTPUT sees NEW.
    let rules = "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m conntrack --ctstate NEW
-A PREROUTING -p udp -m conntrack --ctstate INVALID
-A OUTPUT -p udp -m conntrack --ctstate NEW
-A OUTPUT -p udp -m conntrack --ctstate INVALID
-A OUTPUT -p udp -m conntrack ! --ctstate NEW
-A OUTPUT -p udp -m conntrack --ctdir ORIGINAL
COMMIT
*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p udp -m conntrack --ctstate NEW
-A OUTPUT -p udp -m conntrack --ctstate NEW
-A OUTPUT -p udp -m conntrack --ctstate INVALID
COMMIT
";
    let b = run_udp(rules, local(1000), "0.0.0.0", "10.0.0.9", 53);
    assert_eq!(rules_hit(&b), ["raw/OUTPUT#2", "raw/OUTPUT#3", "filter/OUTPUT#1"]);
    assert_eq!(b.delivered, Some(Delivered::Egress { iface: "eth0".into(), next_hop: ip("10.0.0.9") }));
    assert_eq!(b.packet.ct_state, CtState::New);

    // Arriving on eth0: INVALID in raw PREROUTING, NEW in filter INPUT.
    let b = run_udp(rules, Origin::Iface("eth0".into()), "10.0.0.1", "10.0.0.5", 53);
    assert_eq!(rules_hit(&b), ["raw/PREROUTING#2", "filter/INPUT#1"]);

    // Looped back to the pod's own address: raw PREROUTING sees the entry made on the way out.
    let b = run_udp(rules, local(1000), "0.0.0.0", "10.0.0.5", 53);
    assert_eq!(rules_hit(&b), ["raw/OUTPUT#2", "raw/OUTPUT#3", "filter/OUTPUT#1", "raw/PREROUTING#1", "filter/INPUT#1"]);
    assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })));
}

#[test]
fn notrack_in_raw_leaves_the_packet_untracked() {
    let rules = "*raw
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p udp -j CT --notrack
-A OUTPUT -p udp -m conntrack --ctstate UNTRACKED
-A OUTPUT -p udp -m conntrack --ctstate INVALID
COMMIT
*filter
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p udp -m conntrack --ctstate NEW
-A OUTPUT -p udp -m state --state UNTRACKED
COMMIT
";
    let b = run_udp(rules, local(1000), "0.0.0.0", "10.0.0.9", 53);
    assert_eq!(rules_hit(&b), ["raw/OUTPUT#1", "raw/OUTPUT#2", "filter/OUTPUT#2"]);
    assert_eq!(b.packet.ct_state, CtState::Untracked);
}

#[test]
fn a_loopback_source_dnated_off_the_host_fails_inside_output() {
    // netfilter-facts §9.3: 127.0.0.1 -> 127.0.0.1 DNATed in nat OUTPUT to 10.0.0.9: only mangle and
    // nat OUTPUT counters move; sendto returns EINVAL; filter OUTPUT and POSTROUTING are not traversed.
    let rules = "*mangle
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -p udp
-A POSTROUTING -p udp
COMMIT
*nat
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -p udp -j DNAT --to-destination 10.0.0.9
-A POSTROUTING -p udp
COMMIT
*filter
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p udp
COMMIT
";
    let b = run_udp(rules, local(1000), "127.0.0.1", "127.0.0.1", 53);
    assert_eq!(rules_hit(&b), ["mangle/OUTPUT#1", "nat/OUTPUT#1"]);
    assert_eq!((b.verdict, b.by.as_ref(), b.delivered.as_ref()), (Verdict::Drop, None, None));
    assert_eq!(
        b.reason.as_ref().map(ToString::to_string).as_deref(),
        Some("re-routing after nat OUTPUT fails: a loopback source cannot leave the host (sendto returns EINVAL; a TCP connect times out instead)")
    );
    // From the pod's own address the same DNAT goes out eth0.
    let b = run_udp(rules, local(1000), "0.0.0.0", "10.0.0.5", 53);
    assert_eq!(rules_hit(&b), ["mangle/OUTPUT#1", "nat/OUTPUT#1", "filter/OUTPUT#1", "mangle/POSTROUTING#1", "nat/POSTROUTING#1"]);
    assert_eq!(b.delivered, Some(Delivered::Egress { iface: "eth0".into(), next_hop: ip("10.0.0.9") }));
}

#[test]
fn the_re_route_after_nat_output_sets_the_postrouting_device() {
    // netfilter-facts §2 probe 4 and §9.7: REDIRECT in nat OUTPUT re-routes to lo; filter OUTPUT
    // still sees `-o eth0`, mangle and nat POSTROUTING see `-o lo`, and the packet comes back in on lo.
    let rules = "*mangle
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -o eth0 -p tcp
-A OUTPUT -o lo -p tcp
-A POSTROUTING -o eth0 -p tcp
-A POSTROUTING -o lo -p tcp
COMMIT
*nat
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -p tcp --dport 9090 -j REDIRECT --to-ports 15001
-A POSTROUTING -o eth0 -p tcp
-A POSTROUTING -o lo -p tcp
COMMIT
*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -p tcp
-A OUTPUT -o eth0 -p tcp
-A OUTPUT -o lo -p tcp
COMMIT
";
    let b = run(rules, local(1000), "0.0.0.0", "10.0.0.9", 9090, Backend::Nft);
    assert_eq!(rules_hit(&b), ["mangle/OUTPUT#1", "nat/OUTPUT#1", "filter/OUTPUT#1", "mangle/POSTROUTING#2", "nat/POSTROUTING#2", "filter/INPUT#1"]);
    assert_eq!(b.delivered, Some(Delivered::Local { addr: ip("127.0.0.1"), port: 15001, process: Some("envoy".into()) }));
}

/// Simulates `pkt` arriving on eth0 of `host` and returns its only branch.
fn arriving(rules: &str, host: &Host, pkt: Packet) -> Branch {
    let parsed = parse(rules);
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    let sim = simulate(&parsed.ruleset, host, pkt, &Origin::Iface("eth0".into()), &Options::default());
    assert_eq!(sim.branches.len(), 1, "{sim:#?}");
    sim.branches.into_iter().next().unwrap()
}

#[test]
fn forward_and_postrouting_see_the_decremented_ttl() {
    // Kernel differential: `ip_forward` decrements the TTL before NF_HOOK(FORWARD), so
    // `--ttl-eq 64` in mangle FORWARD misses a packet that arrived with TTL 64 and `--ttl-eq 63`
    // matches; a TTL of 1 is dropped (ICMP time exceeded) after PREROUTING, before FORWARD.
    let rules = "*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -m ttl --ttl-eq 64
-A PREROUTING -p tcp
-A FORWARD -m ttl --ttl-eq 64
-A FORWARD -m ttl --ttl-eq 63
-A POSTROUTING -m ttl --ttl-eq 63
COMMIT
*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -m ttl --ttl-eq 63
COMMIT
";
    let mut host = pod();
    host.sysctls.ip_forward = true;
    let b = arriving(rules, &host, Packet::new(6, ip("10.0.0.1"), 40000, ip("10.1.0.9"), 8080));
    assert_eq!(rules_hit(&b), ["mangle/PREROUTING#1", "mangle/PREROUTING#2", "mangle/FORWARD#2", "filter/FORWARD#1", "mangle/POSTROUTING#1"]);
    assert_eq!(b.packet.ttl, 63);
    assert_eq!(b.delivered, Some(Delivered::Egress { iface: "eth1".into(), next_hop: ip("10.1.0.9") }));

    let mut pkt = Packet::new(6, ip("10.0.0.1"), 40000, ip("10.1.0.9"), 8080);
    pkt.ttl = 1;
    let b = arriving(rules, &host, pkt);
    assert_eq!(rules_hit(&b), ["mangle/PREROUTING#2"], "only PREROUTING sees it");
    assert_eq!((b.verdict, b.by.as_ref(), b.delivered.as_ref()), (Verdict::Drop, None, None));
    assert!(
        b.reason.as_ref().map(ToString::to_string).as_deref().is_some_and(|r| r.starts_with("TTL 1 expires in forwarding") && r.contains("ICMP time exceeded")),
        "{b:#?}"
    );
}

#[test]
fn a_syn_to_a_non_local_address_needs_a_transparent_listener() {
    // Kernel differential: `ip rule fwmark 0x100/0x100 lookup 100` with `local 0.0.0.0/0 dev lo
    // table 100` delivers a peer's SYN to 10.0.0.99 locally, but the listener bound to 0.0.0.0
    // cannot answer from 10.0.0.99 (no IP_TRANSPARENT): the SYN is dropped. A datagram is received.
    let rules = "*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j MARK --set-xmark 0x100/0x100\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT\nCOMMIT\n";
    let mut host = pod().listen(17, "0.0.0.0", 8080, "udp-app", 0, 0);
    host.policy.push(nfsim::host::PolicyRule { fwmark: 0x100, mask: 0x100, table: 100 });
    host.tables.insert(100, vec![nfsim::host::Route { dst: "0.0.0.0/0".parse().unwrap(), via: None, dev: "lo".into(), local: true }]);
    let b = arriving(rules, &host, Packet::new(6, ip("10.0.0.1"), 40000, ip("10.0.0.99"), 8080));
    assert_eq!(rules_hit(&b), ["mangle/PREROUTING#1", "filter/INPUT#1"], "through INPUT");
    assert_eq!((b.verdict, b.delivered.as_ref(), b.by.as_ref()), (Verdict::Accept, None, None));
    assert!(
        b.reason
            .as_ref()
            .map(ToString::to_string)
            .as_deref()
            .is_some_and(|r| r.starts_with("the listener is not transparent") && r.contains("the SYN is dropped")),
        "{b:#?}"
    );

    let b = arriving(rules, &host, Packet::new(17, ip("10.0.0.1"), 40000, ip("10.0.0.99"), 8080));
    assert_eq!(b.delivered, Some(Delivered::Local { addr: ip("10.0.0.99"), port: 8080, process: Some("udp-app".into()) }));

    let b = arriving(rules, &host, Packet::new(6, ip("10.0.0.1"), 40000, ip("10.0.0.6"), 8080));
    assert!(matches!(b.delivered, Some(Delivered::Local { port: 8080, .. })), "a local address: {b:#?}");

    host.sockets.iter_mut().filter(|s| s.port == 8080 && s.proto == 6).for_each(|s| s.transparent = true);
    let b = arriving(rules, &host, Packet::new(6, ip("10.0.0.1"), 40000, ip("10.0.0.99"), 8080));
    assert_eq!(b.delivered, Some(Delivered::Local { addr: ip("10.0.0.99"), port: 8080, process: Some("app".into()) }));
}

#[test]
fn a_destination_dnated_to_loopback_in_prerouting_is_martian() {
    // Kernel differential: peer UDP -> 10.0.0.5:8080 DNATed to 127.0.0.1 in nat PREROUTING: only
    // the nat PREROUTING counter moves; the input route lookup drops the martian destination.
    let rules = "*mangle
:INPUT ACCEPT [0:0]
-A INPUT -p udp
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
-A PREROUTING -p udp -j DNAT --to-destination 127.0.0.1
-A INPUT -p udp
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p udp
COMMIT
";
    let mut host = pod().listen(17, "0.0.0.0", 8080, "udp-app", 0, 0);
    let b = arriving(rules, &host, Packet::new(17, ip("10.0.0.1"), 40000, ip("10.0.0.5"), 8080));
    assert_eq!(rules_hit(&b), ["nat/PREROUTING#1"]);
    assert_eq!((b.verdict, b.by.as_ref(), b.delivered.as_ref()), (Verdict::Drop, None, None));
    assert!(b.reason.as_ref().map(ToString::to_string).as_deref().is_some_and(|r| r.starts_with("martian destination")), "{b:#?}");

    host.sysctls.route_localnet = true;
    let b = arriving(rules, &host, Packet::new(17, ip("10.0.0.1"), 40000, ip("10.0.0.5"), 8080));
    assert_eq!(rules_hit(&b), ["nat/PREROUTING#1", "mangle/INPUT#1", "filter/INPUT#1", "nat/INPUT#1"]);
    assert_eq!(b.delivered, Some(Delivered::Local { addr: ip("127.0.0.1"), port: 8080, process: Some("udp-app".into()) }));
}

#[test]
fn rp_filter_drops_after_the_prerouting_chains() {
    // Kernel differential: the peer sends UDP from the spoofed source 10.1.0.9 (routed via eth1)
    // to the pod's eth0 with net.ipv4.conf.all.rp_filter=1: raw PREROUTING's counter moves, then
    // the input route lookup's source validation drops it.
    let rules = "*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p udp
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p udp
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p udp --dport 54 -j DNAT --to-destination 127.0.0.1:53
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p udp
COMMIT
";
    let mut host = pod().listen(17, "0.0.0.0", 53, "dns", 0, 0);
    host.sysctls.rp_filter = 1;
    let b = arriving(rules, &host, Packet::new(17, ip("10.1.0.9"), 40000, ip("10.0.0.5"), 53));
    assert_eq!(rules_hit(&b), ["raw/PREROUTING#1", "mangle/PREROUTING#1"]);
    assert_eq!((b.verdict, b.by.as_ref(), b.delivered.as_ref()), (Verdict::Drop, None, None));
    assert_eq!(
        b.reason.as_ref().map(ToString::to_string).as_deref(),
        Some("reverse-path filter (rp_filter=1) drops the packet arriving on eth0: its source is not routed back that way")
    );
    // The PREROUTING DNAT comes first, and the martian check on its new destination before the source.
    let b = arriving(rules, &host, Packet::new(17, ip("10.1.0.9"), 40000, ip("10.0.0.5"), 54));
    assert_eq!(rules_hit(&b), ["raw/PREROUTING#1", "mangle/PREROUTING#1", "nat/PREROUTING#1"]);
    assert!(b.reason.as_ref().map(ToString::to_string).as_deref().is_some_and(|r| r.starts_with("martian destination")), "{b:#?}");
    // A source routed back through eth0 is received.
    let b = arriving(rules, &host, Packet::new(17, ip("10.0.0.1"), 40000, ip("10.0.0.5"), 53));
    assert_eq!(rules_hit(&b), ["raw/PREROUTING#1", "mangle/PREROUTING#1", "filter/INPUT#1"]);
    assert!(matches!(b.delivered, Some(Delivered::Local { port: 53, .. })));
}

#[test]
fn a_loopback_listener_cannot_answer_a_snated_source() {
    // Kernel differential: the SYN reaches INPUT (its counter moves), but the SYN-ACK from a
    // loopback address to a non-local source cannot be routed: no connection is accepted.
    let reason = "the listener cannot route its SYN-ACK back (a loopback address cannot answer a non-local source): the SYN is dropped";
    let rules = "*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -p tcp -s 127.0.0.1 -j SNAT --to-source 10.0.0.77
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp
COMMIT
";
    let b = run(rules, local(1000), "127.0.0.1", "127.0.0.1", 8080, Backend::Nft);
    assert_eq!(rules_hit(&b), ["nat/POSTROUTING#1", "filter/INPUT#1"]);
    assert_eq!((b.verdict, b.delivered.as_ref(), b.reason.as_ref().map(ToString::to_string).as_deref()), (Verdict::Accept, None, Some(reason)));
    // DNATed to 127.0.0.1 in nat OUTPUT, SNATed to 10.0.0.9: the same.
    let rules = "*nat
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -p tcp -j DNAT --to-destination 127.0.0.1
-A POSTROUTING -p tcp -j SNAT --to-source 10.0.0.9
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp
COMMIT
";
    let b = run(rules, local(1000), "0.0.0.0", "10.0.0.77", 8080, Backend::Nft);
    assert_eq!(rules_hit(&b), ["nat/OUTPUT#1", "nat/POSTROUTING#1", "filter/INPUT#1"]);
    assert_eq!((b.verdict, b.delivered.as_ref(), b.reason.as_ref().map(ToString::to_string).as_deref()), (Verdict::Accept, None, Some(reason)));
    // SNATed to one of the pod's own addresses it connects.
    let b = run(&rules.replace("10.0.0.9", "10.0.0.6"), local(1000), "0.0.0.0", "10.0.0.77", 8080, Backend::Nft);
    assert_eq!(b.delivered, Some(Delivered::Local { addr: ip("127.0.0.1"), port: 8080, process: Some("app".into()) }));
}

#[test]
fn a_packet_looped_back_on_lo_is_delivered_by_its_output_route() {
    // Kernel differential: mangle OUTPUT's MARK 0x100 routes a connection to 10.0.0.1 over lo
    // (`ip rule fwmark 0x100/0x100 lookup 100`, `local 0.0.0.0/0 dev lo table 100`); mangle
    // PREROUTING clears the mark, but the looped-back packet keeps its route: INPUT, not FORWARD.
    let rules = "*mangle
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i lo -j MARK --set-mark 0x0
-A OUTPUT -p tcp -j MARK --set-mark 0x100
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
-A INPUT -p tcp
-A FORWARD -p tcp
COMMIT
";
    let parsed = parse(rules);
    let mut host = pod();
    host.sysctls.ip_forward = true;
    host.policy.push(nfsim::host::PolicyRule { fwmark: 0x100, mask: 0x100, table: 100 });
    host.tables.insert(100, vec![nfsim::host::Route { dst: "0.0.0.0/0".parse().unwrap(), via: None, dev: "lo".into(), local: true }]);
    host.sockets.iter_mut().for_each(|s| s.transparent = true);
    let sim = simulate(&parsed.ruleset, &host, Packet::new(6, ip("0.0.0.0"), 40000, ip("10.0.0.1"), 8080), &local(1000), &Options::default());
    let b = &sim.branches[0];
    assert_eq!(rules_hit(b), ["mangle/OUTPUT#1", "mangle/PREROUTING#1", "filter/INPUT#1"]);
    assert_eq!(b.delivered, Some(Delivered::Local { addr: ip("10.0.0.1"), port: 8080, process: Some("app".into()) }));
    // A listener that is not transparent cannot answer from 10.0.0.1.
    host.sockets.iter_mut().for_each(|s| s.transparent = false);
    let sim = simulate(&parsed.ruleset, &host, Packet::new(6, ip("0.0.0.0"), 40000, ip("10.0.0.1"), 8080), &local(1000), &Options::default());
    assert_eq!(rules_hit(&sim.branches[0]), ["mangle/OUTPUT#1", "mangle/PREROUTING#1", "filter/INPUT#1"]);
    assert!(sim.branches[0].reason.as_ref().map(ToString::to_string).as_deref().is_some_and(|r| r.starts_with("the listener is not transparent")), "{sim:#?}");
}

#[test]
fn a_looped_back_packet_carries_a_confirmed_entry() {
    // Kernel referee: the entry is confirmed at the end of POSTROUTING, so a packet looped back on
    // lo matches `--ctstatus CONFIRMED` in PREROUTING and INPUT; on the way out and for an
    // arriving packet it is not confirmed yet.
    let rules = "*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m conntrack --ctstatus CONFIRMED
-A INPUT -p udp -m conntrack --ctstatus CONFIRMED
-A OUTPUT -p udp -m conntrack --ctstatus CONFIRMED
COMMIT
";
    assert_eq!(rules_hit(&run_udp(rules, local(1000), "0.0.0.0", "10.0.0.5", 8080)), ["mangle/PREROUTING#1", "mangle/INPUT#1"]);
    assert!(rules_hit(&run_udp(rules, Origin::Iface("eth0".into()), "10.0.0.1", "10.0.0.5", 8080)).is_empty());
}
