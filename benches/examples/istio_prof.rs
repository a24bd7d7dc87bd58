//! Runs the Istio outbound redirect many times, for a profiler.
use nfsim::packet::{Owner, Packet};
use nfsim::simulate::{Origin, simulate};
use nfsim::traverse::Options;
fn main() {
    let rules = include_str!("../../examples/istio-sidecar.rules");
    let parsed = nfsim::ruleset::parse(rules);
    let host = nfsim_benches::istio_pod();
    let pkt = Packet::new(6, "0.0.0.0".parse().unwrap(), 40000, "10.0.0.9".parse().unwrap(), 8080);
    let origin = Origin::Local(Some(Owner { uid: 1000, gid: 1000, groups: Vec::new() }));
    let opts = Options::default();
    let mut n = 0;
    let t = std::time::Instant::now();
    for _ in 0..2_000_000 {
        n += simulate(&parsed.ruleset, &host, pkt.clone(), &origin, &opts).branches.len();
    }
    eprintln!("{n} {:?}", t.elapsed() / 2_000_000);
}
