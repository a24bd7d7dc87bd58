//! Simulation speed: ns per packet on the Istio sidecar rules (one `simulate` call, and one
//! `Simulator` for many packets), and packets per second on a kube-proxy dump of 10,000
//! services x 10 endpoints (KUBE-SERVICES dispatched by destination; each packet forks into one
//! branch per endpoint through `-m statistic`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nfsim::host::Host;
use nfsim::packet::{Owner, Packet};
use nfsim::simulate::{Origin, Simulator, simulate};
use nfsim::traverse::Options;
use nfsim_benches::kube_proxy_dump;

fn istio(c: &mut Criterion) {
    let rules = include_str!("../examples/istio-sidecar.rules");
    let parsed = nfsim::ruleset::parse(rules);
    let host = nfsim_benches::istio_pod();
    let pkt = Packet::new(6, "0.0.0.0".parse().unwrap(), 40000, "10.0.0.9".parse().unwrap(), 8080);
    let origin = Origin::Local(Some(Owner { uid: 1000, gid: 1000, groups: Vec::new() }));
    let opts = Options::default();
    let mut group = c.benchmark_group("simulate");
    group.throughput(Throughput::Elements(1));
    group.bench_function("istio outbound redirect", |b| b.iter(|| simulate(&parsed.ruleset, &host, pkt.clone(), &origin, &opts).branches.len()));
    // As for many packets: the simulator (dispatch index, shared names) prepared once.
    let sim = Simulator::new(&parsed.ruleset, &host, opts.clone());
    group.bench_function("istio outbound redirect, one Simulator", |b| b.iter(|| sim.run(pkt.clone(), &origin).branches.len()));
    group.finish();
}

fn kube(c: &mut Criterion) {
    let text = kube_proxy_dump(10_000, 10, 1);
    let parsed = nfsim::ruleset::parse(&text);
    let host = Host::new("node").iface("eth0", &["10.0.0.5/24"]).gateway("10.0.0.1");
    let origin = Origin::Local(Some(Owner::default()));
    let opts = Options::default();
    let packets = nfsim_benches::kube_packets(&text, 1000, 7);
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(packets.len() as u64));
    let sim = Simulator::new(&parsed.ruleset, &host, opts);
    group.bench_function("kube-proxy 10k x10, 1000 uniform VIPs", |b| {
        b.iter(|| packets.iter().map(|p| sim.run(p.clone(), &origin).branches.len()).sum::<usize>())
    });
    group.finish();
}

criterion_group!(benches, istio, kube);
criterion_main!(benches);
