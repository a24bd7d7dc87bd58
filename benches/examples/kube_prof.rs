//! The kube-proxy simulation of `benches/simulate.rs`, timed as the best of several rounds (for
//! comparing two builds on a noisy machine).
use nfsim::host::Host;
use nfsim::packet::Owner;
use nfsim::simulate::{Origin, Simulator};
use nfsim::traverse::Options;
use nfsim_benches::kube_proxy_dump;

fn main() {
    let text = kube_proxy_dump(10_000, 10, 1);
    let parsed = nfsim::ruleset::parse(&text);
    let host = Host::new("node").iface("eth0", &["10.0.0.5/24"]).gateway("10.0.0.1");
    let origin = Origin::Local(Some(Owner::default()));
    let packets = nfsim_benches::kube_packets(&text, 1000, 7);
    let sim = Simulator::new(&parsed.ruleset, &host, Options::default());
    let mut best = std::time::Duration::MAX;
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        let n: usize = packets.iter().map(|p| sim.run(p.clone(), &origin).branches.len()).sum();
        best = best.min(t.elapsed());
        assert_eq!(n, 10_000);
    }
    eprintln!("best of {rounds}: {best:?} per 1000 packets");
}
