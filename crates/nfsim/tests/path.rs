//! Multi-hop paths through the built-in Istio scenarios: the seed's call chain hop by hop, the
//! broken rules' redirect loop with its cycle, and the TPROXY variant.

use nfsim::path::{Outcome, simulate_flow};
use nfsim::topology::{Scenario, builtin};

fn scenario(name: &str) -> Scenario {
    Scenario::from_text(builtin(name).expect("built-in")).expect("scenario parses")
}

fn hops(p: &nfsim::path::Path) -> Vec<String> {
    p.hops
        .iter()
        .map(|h| {
            format!(
                "{}/{} -> {}:{} => {}/{}",
                h.host,
                h.process,
                h.original_dst.0,
                h.original_dst.1,
                h.accepted_host.as_deref().unwrap_or("-"),
                h.accepted_by.as_deref().unwrap_or("-")
            )
        })
        .collect()
}

#[test]
fn seed_chain_is_delivered_hop_by_hop() {
    let p = simulate_flow(&scenario("istio-fortio"), "seed").unwrap();
    assert_eq!(p.outcome, Outcome::Delivered, "{p:#?}");
    assert_eq!(
        hops(&p),
        [
            "client/netshoot -> 10.96.0.10:8080 => client/envoy",
            "client/envoy -> 10.244.2.10:8080 => fortio-server/envoy",
            "fortio-server/envoy -> 10.244.2.10:8080 => fortio-server/fortio",
            "fortio-server/fortio -> 10.96.0.11:8080 => fortio-server/envoy",
            "fortio-server/envoy -> 10.244.3.10:8080 => fortio-server-l2/envoy",
            "fortio-server-l2/envoy -> 10.244.3.10:8080 => fortio-server-l2/fortio",
        ]
    );
    // The outbound redirect to 15001 and the inbound redirect to 15006, as netfilter did them.
    assert_eq!((p.hops[0].after.dst.to_string(), p.hops[0].after.dport), ("127.0.0.1".to_string(), 15001));
    assert_eq!((p.hops[1].after.dst.to_string(), p.hops[1].after.dport), ("10.244.2.10".to_string(), 15006));
    assert_eq!(p.hops[2].before.src.to_string(), "127.0.0.6");
    assert!(p.hops[1].trace.iter().any(|s| &*s.host == "fortio-server" && &*s.chain == "ISTIO_IN_REDIRECT"));
}

#[test]
fn broken_rules_loop_through_envoy() {
    let p = simulate_flow(&scenario("istio-fortio-loop"), "seed").unwrap();
    let Outcome::Loop { cycle_start, cycle } = &p.outcome else { panic!("expected a loop: {p:#?}") };
    assert_eq!((*cycle_start, cycle.clone()), (1, vec![1, 2]));
    for i in cycle {
        let h = &p.hops[*i];
        assert_eq!((h.host.as_str(), h.process.as_str(), h.accepted_by.as_deref()), ("client", "envoy", Some("envoy")));
        assert_eq!(h.after.dport, 15001, "Envoy's own connection is redirected back to its outbound port");
    }
}

#[test]
fn tproxy_variant_is_delivered() {
    let p = simulate_flow(&scenario("istio-fortio-tproxy"), "seed").unwrap();
    assert_eq!(p.outcome, Outcome::Delivered, "{p:#?}");
    // Inbound: TPROXY hands the connection to Envoy's 15006 without rewriting its destination.
    assert_eq!(p.hops[1].accepted_by.as_deref(), Some("envoy"));
    assert_eq!(p.hops[1].listener_port, 15006);
    assert_eq!((p.hops[1].after.dst.to_string(), p.hops[1].after.dport), ("10.244.2.10".to_string(), 8080));
    assert!(p.hops[1].trace.iter().any(|s| &*s.chain == "ISTIO_TPROXY"));
}

#[test]
fn a_service_without_endpoints_is_refused_by_the_calling_sidecar() {
    let mut s = scenario("istio-fortio");
    s.services.iter_mut().find(|x| x.name == "fortio-server-l2").unwrap().endpoints.clear();
    let p = simulate_flow(&s, "seed").unwrap();
    assert_eq!(p.hops.len(), 4, "{p:#?}");
    assert_eq!(
        p.outcome,
        Outcome::Dropped {
            host: "fortio-server".into(),
            reason: nfsim::path::DropReason::Refused {
                process: "envoy".into(),
                why: nfsim::mesh::RefuseReason::NoEndpoint { service: "fortio-server-l2".into() }
            }
        }
    );
    let Outcome::Dropped { reason, .. } = &p.outcome else { unreachable!() };
    assert_eq!(reason.to_string(), "envoy has no endpoint address to proxy service `fortio-server-l2` to");
    // `verify` follows the same step: no loop, nothing undecided.
    let v = nfsim::verify::verify(&s).unwrap();
    assert!(v.loops.is_empty() && v.unknown.is_empty());
}
