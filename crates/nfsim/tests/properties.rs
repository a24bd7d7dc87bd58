//! Property tests over whole paths (feature `proptest`, on in the workspace's test build): with the
//! seed's sidecar rules no generated connection loops; with the uid/gid 1337 RETURN rules removed,
//! proptest finds a loop and shrinks it to a minimal case.
#![cfg(feature = "proptest")]

use nfsim::path::{Outcome, simulate_call};
use nfsim::strategies;
use nfsim::topology::{Process, Role, Scenario, builtin};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

fn scenario(name: &str) -> Scenario {
    Scenario::from_text(builtin(name).unwrap()).unwrap()
}

/// Adds a process with `uid` to the client pod and follows its call to `dst:port`.
fn call(s: &Scenario, uid: u32, dst: &str, port: u16) -> Outcome {
    let mut s = s.clone();
    s.hosts[0].processes.push(Process { name: "caller".into(), uid, gid: uid, listen: Vec::new(), role: Role::App });
    simulate_call(&s, "client", "caller", &format!("{dst}:{port}")).unwrap().outcome
}

/// Destinations: the services, the pods, and an address outside the mesh.
fn destination() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec!["fortio-server", "fortio-server-l2", "10.244.2.10", "10.244.3.10", "10.244.1.10", "10.250.0.1"])
}

/// Application ports (Envoy's own 150xx ports are not application traffic).
fn app_port() -> impl Strategy<Value = u16> {
    strategies::port().prop_filter("application port", |p| !(15000..=15100).contains(p))
}

proptest! {
    #![proptest_config(Config { cases: 200, ..Config::default() })]

    #[test]
    fn seed_rules_never_loop(owner in strategies::owner(), dst in destination(), port in app_port()) {
        let s = scenario("istio-fortio");
        let outcome = call(&s, owner.uid, dst, port);
        prop_assert!(!matches!(outcome, Outcome::Loop { .. } | Outcome::HopBudget), "{owner:?} -> {dst}:{port}: {outcome:?}");
    }
}

#[test]
fn removing_the_envoy_return_rules_loops_and_shrinks() {
    let broken = scenario("istio-fortio-loop");
    let mut runner = TestRunner::new(Config { cases: 200, failure_persistence: None, ..Config::default() });
    let result = runner.run(&(strategies::owner(), destination(), app_port()), |(owner, dst, port)| match call(&broken, owner.uid, dst, port) {
        Outcome::Loop { .. } | Outcome::HopBudget => Err(TestCaseError::fail("loop")),
        _ => Ok(()),
    });
    let Err(TestError::Fail(_, (owner, dst, port))) = result else { panic!("proptest found no loop: {result:?}") };
    // Shrunk to a minimal case that still loops.
    assert!(matches!(call(&broken, owner.uid, dst, port), Outcome::Loop { .. }), "{owner:?} {dst}:{port}");
    assert_eq!(owner.uid, 0, "the uid shrinks to the simplest one that loops: any non-Envoy caller does");
}
