//! Parsing the 10k x 10 kube-proxy dump, timed as the best of several rounds (for profiling and
//! for comparing two builds on a noisy machine). `SERVICES=N` changes the size.
fn main() {
    let services = std::env::var("SERVICES").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let text = nfsim_benches::kube_proxy_dump(services, 10, 1);
    let mut best = std::time::Duration::MAX;
    for _ in 0..10 {
        let t = std::time::Instant::now();
        let parsed = nfsim::ruleset::parse(&text);
        assert!(!parsed.has_errors());
        best = best.min(t.elapsed());
        drop(parsed);
    }
    let mb = text.len() as f64 / 1e6;
    eprintln!(
        "{services} services, {mb:.1} MB: best of 10 {best:?} = {:.0} MB/s, {:.2} ns/byte",
        mb / best.as_secs_f64(),
        best.as_nanos() as f64 / text.len() as f64
    );
}
