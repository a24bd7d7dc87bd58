//! All-packet analysis speed: the classes of the Istio sidecar rules (target: under 10 ms), and
//! `nfsim diff` of two kube-proxy dumps of 10,000 services x 10 endpoints that differ in one
//! service (target: under 1 s; parsing is measured separately in `parse`).

use criterion::{Criterion, criterion_group, criterion_main};
use nfsim::classes::{Scope, classes, diff_rulesets};
use nfsim::host::Host;
use nfsim::ruleset::Family;
use nfsim::traverse::Options;
use nfsim_benches::kube_proxy_dump;

fn istio(c: &mut Criterion) {
    let parsed = nfsim::ruleset::parse(include_str!("../examples/istio-sidecar.rules"));
    let host = nfsim_benches::istio_pod();
    let opts = Options::default();
    let mut group = c.benchmark_group("classes");
    for from in [None, Some("eth0")] {
        let scope = Scope::all(&host, Family::V4, from);
        let name = format!("istio sidecar, from {}", from.unwrap_or("local"));
        group.bench_function(name, |b| b.iter(|| classes(&parsed.ruleset, &host, &scope, &opts).classes.len()));
    }
    group.finish();
}

/// The 10k dump and the same dump with one endpoint of one service moved.
fn kube_pair() -> (String, String) {
    let old = kube_proxy_dump(10_000, 10, 1);
    let at = old.find("-j DNAT --to-destination ").expect("a DNAT rule") + "-j DNAT --to-destination ".len();
    let end = at + old[at..].find(':').expect("a port");
    let new = format!("{}10.131.255.254{}", &old[..at], &old[end..]);
    (old, new)
}

fn kube(c: &mut Criterion) {
    let (old, new) = kube_pair();
    let (a, b) = (nfsim::ruleset::parse(&old), nfsim::ruleset::parse(&new));
    let host = Host::new("node").iface("eth0", &["10.0.0.5/24"]).gateway("10.0.0.1");
    let opts = Options::default();
    let mut group = c.benchmark_group("classes");
    group.sample_size(10);
    // What `nfsim diff` computes after parsing: locally generated packets and packets arriving
    // on eth0 (parsing the two 33 MB dumps is measured by the `parse` benchmark).
    group.bench_function("diff kube-proxy 10k x10, one endpoint changed (local + eth0)", |bench| {
        bench.iter(|| {
            let mut n = 0;
            for from in [None, Some("eth0")] {
                let scope = Scope::all(&host, Family::V4, from);
                n += diff_rulesets(&a.ruleset, &b.ruleset, &host, &scope, &opts).len();
            }
            assert_eq!(n, 2, "the changed endpoint shows from both origins");
            n
        })
    });
    group.finish();
}

criterion_group!(benches, istio, kube);
criterion_main!(benches);
