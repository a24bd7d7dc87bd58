//! Runs the Istio outbound redirect many times, for a profiler: once through `simulate` (a
//! simulator per packet) and once through one `Simulator` (as for many packets).
use nfsim::packet::{Owner, Packet};
use nfsim::simulate::{Origin, Simulator, simulate};
use nfsim::traverse::Options;
fn main() {
    let rules = include_str!("../../examples/istio-sidecar.rules");
    let parsed = nfsim::ruleset::parse(rules);
    let host = nfsim_benches::istio_pod();
    let pkt = Packet::new(6, "0.0.0.0".parse().unwrap(), 40000, "10.0.0.9".parse().unwrap(), 8080);
    let origin = Origin::Local(Some(Owner { uid: 1000, gid: 1000, groups: Vec::new() }));
    let opts = Options::default();
    let rounds: u32 = std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let mut n = 0;
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        n += simulate(&parsed.ruleset, &host, pkt.clone(), &origin, &opts).branches.len();
    }
    eprintln!("simulate: {:?} a packet", t.elapsed() / rounds);
    let sim = Simulator::new(&parsed.ruleset, &host, opts.clone());
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        n += sim.run(pkt.clone(), &origin).branches.len();
    }
    eprintln!("Simulator::run: {:?} a packet", t.elapsed() / rounds);
    assert_eq!(n, 2 * rounds as usize);
}
