//! `verify` (loop-freedom over every connection) against `path` (one connection at a time):
//! on the built-in scenarios, a connection loops in `path` exactly when `verify` puts it in a
//! looping class.

use std::net::IpAddr;

use nfsim::classes::region::{Input, addr_num};
use nfsim::path::{Outcome, simulate_call};
use nfsim::topology::{Scenario, builtin};
use nfsim::verify::verify;

fn scenario(name: &str) -> Scenario {
    Scenario::from_text(builtin(name).unwrap()).unwrap()
}

#[test]
fn the_seed_scenario_has_no_loop_for_any_connection() {
    for name in ["istio-fortio", "istio-fortio-tproxy"] {
        let v = verify(&scenario(name)).unwrap();
        assert_eq!(v.starts, 6);
        assert!(v.loops.is_empty(), "{name}: {:#?}", v.loops.iter().map(|l| (&l.host, &l.process, &l.cycle)).collect::<Vec<_>>());
        assert!(v.unknown.is_empty(), "{name}: {:?}", v.unknown.iter().map(|u| &u.reason).collect::<Vec<_>>());
    }
}

#[test]
fn the_broken_variant_loops_exactly_on_envoys_own_connections() {
    let s = scenario("istio-fortio-loop");
    let v = verify(&s).unwrap();
    assert_eq!(v.loops.len(), 3, "one loop per sidecar");
    for l in &v.loops {
        assert_eq!(l.process, "envoy");
        assert_eq!(l.cycle, vec![format!("{}/envoy", l.host), format!("{}/envoy", l.host)]);
        assert!(matches!(l.witness.outcome, Outcome::Loop { .. }), "witness {:?}", l.witness.outcome);
        // The class is Envoy's (uid 1337) connections.
        assert!(l.region.iter().all(|c| c.uid.single() == Some(1337)));
        assert!(!l.also.is_empty(), "the application's connections enter the loop through Envoy");
    }
}

/// Destinations worth trying: pods, services, loopback, outside, and neighbours of each.
fn targets(s: &Scenario) -> Vec<(IpAddr, u16)> {
    let mut addrs: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "127.0.0.6".parse().unwrap(), "8.8.8.8".parse().unwrap(), "10.244.9.9".parse().unwrap()];
    for h in &s.hosts {
        for i in &h.interfaces {
            for a in &i.addrs {
                addrs.push(a.addr());
                if let IpAddr::V4(v) = a.addr() {
                    addrs.push(IpAddr::V4((u32::from(v) + 1).into()));
                }
            }
        }
    }
    addrs.extend(s.services.iter().map(|x| x.vip));
    let ports = [1u16, 80, 8080, 8081, 15000, 15001, 15006, 15008, 15020, 15021, 15090, 65535];
    addrs.iter().flat_map(|a| ports.iter().map(move |p| (*a, *p))).collect()
}

#[test]
fn every_connection_loops_in_path_exactly_when_verify_says_so() {
    for name in ["istio-fortio", "istio-fortio-loop", "istio-fortio-tproxy"] {
        let s = scenario(name);
        let v = verify(&s).unwrap();
        let mut looped = 0;
        let mut checked = 0;
        for h in &s.hosts {
            for p in &h.processes {
                let region = v.looping.iter().find(|(x, y, _)| *x == h.name && *y == p.name).map(|l| l.2.clone()).unwrap_or_default();
                for (dst, port) in targets(&s) {
                    let path = simulate_call(&s, &h.name, &p.name, &format!("{dst}:{port}")).unwrap();
                    let input = Input {
                        proto: 6,
                        src: 0,
                        dst: addr_num(dst),
                        sport: 40000,
                        dport: port,
                        uid: p.uid,
                        gid: p.gid,
                        mark: 0,
                        state: nfsim::packet::CtState::New,
                    };
                    let says = region.iter().any(|c| c.contains(&input));
                    let loops = matches!(path.outcome, Outcome::Loop { .. });
                    assert_eq!(says, loops, "{name}: {}/{} -> {dst}:{port}: verify says loop={says}, path says {:?}", h.name, p.name, path.outcome);
                    looped += usize::from(loops);
                    checked += 1;
                }
            }
        }
        eprintln!("{name}: {checked} connections, {looped} loop");
        if name == "istio-fortio-loop" {
            assert!(looped > 100, "the broken variant loops often");
        }
    }
}
