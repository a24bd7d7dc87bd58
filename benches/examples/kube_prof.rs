//! The kube-proxy simulation of `benches/simulate.rs`, timed as the best of several rounds (for
//! comparing two builds on a noisy machine).
use std::net::IpAddr;

use nfsim::host::Host;
use nfsim::packet::{Owner, Packet};
use nfsim::simulate::{Origin, Simulator};
use nfsim::traverse::Options;
use nfsim_benches::{Rng, kube_proxy_dump};

fn main() {
    let text = kube_proxy_dump(10_000, 10, 1);
    let parsed = nfsim::ruleset::parse(&text);
    let vips: Vec<(IpAddr, u16)> = text
        .lines()
        .filter(|l| l.starts_with("-A KUBE-SERVICES -d "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let vip = w.nth(3)?.trim_end_matches("/32").parse().ok()?;
            let port = l.split("--dport ").nth(1)?.split_whitespace().next()?.parse().ok()?;
            Some((vip, port))
        })
        .collect();
    let host = Host::new("node").iface("eth0", &["10.0.0.5/24"]).gateway("10.0.0.1");
    let origin = Origin::Local(Some(Owner::default()));
    let mut rng = Rng::new(7);
    let packets: Vec<Packet> = (0..1000)
        .map(|_| {
            let (vip, port) = vips[rng.below(vips.len() as u64) as usize];
            Packet::new(6, "0.0.0.0".parse().unwrap(), 40000, vip, port)
        })
        .collect();
    let sim = Simulator::new(&parsed.ruleset, &host, Options::default());
    let mut best = std::time::Duration::MAX;
    for _ in 0..15 {
        let t = std::time::Instant::now();
        let n: usize = packets.iter().map(|p| sim.run(p.clone(), &origin).branches.len()).sum();
        best = best.min(t.elapsed());
        assert_eq!(n, 10_000);
    }
    eprintln!("best of 15: {:?} per 1000 packets", best);
}
