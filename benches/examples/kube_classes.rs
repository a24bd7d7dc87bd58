//! Times the class analysis and diff on kube-proxy dumps: `cargo run --release -p nfsim-benches --example kube_classes [SERVICES]`.

use std::time::Instant;

use nfsim::classes::{Scope, classes, diff, diff_rulesets};
use nfsim::host::Host;
use nfsim::ruleset::Family;
use nfsim::traverse::Options;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let old = nfsim_benches::kube_proxy_dump(n, 10, 1);
    let at = old.find("-j DNAT --to-destination ").expect("a DNAT rule") + "-j DNAT --to-destination ".len();
    let end = at + old[at..].find(':').expect("a port");
    let new = format!("{}10.131.255.254{}", &old[..at], &old[end..]);
    let t = Instant::now();
    let (a, b) = (nfsim::ruleset::parse(&old), nfsim::ruleset::parse(&new));
    println!("parse both: {:?}", t.elapsed());
    let host = Host::new("node").iface("eth0", &["10.0.0.5/24"]).gateway("10.0.0.1");
    let opts = Options::default();
    let only: Option<String> = std::env::args().nth(2);
    for from in [None, Some("eth0")] {
        if only.as_deref().is_some_and(|o| o != from.unwrap_or("local")) {
            continue;
        }
        let scope = Scope::all(&host, Family::V4, from);
        if std::env::args().nth(3).as_deref() == Some("focused") {
            let t = Instant::now();
            let d = diff_rulesets(&a.ruleset, &b.ruleset, &host, &scope, &opts);
            println!("diff_rulesets (focused) from {from:?}: {} changes in {:?}", d.len(), t.elapsed());
            continue;
        }
        let t = Instant::now();
        let x = classes(&a.ruleset, &host, &scope, &opts);
        println!("classes old from {from:?}: {} in {:?}", x.classes.len(), t.elapsed());
        let t = Instant::now();
        let y = classes(&b.ruleset, &host, &scope, &opts);
        println!("classes new: {} in {:?}", y.classes.len(), t.elapsed());
        let t = Instant::now();
        let d = diff(&x, &y);
        println!("diff of the classes: {} changes in {:?}", d.len(), t.elapsed());
        let t = Instant::now();
        let d = diff_rulesets(&a.ruleset, &b.ruleset, &host, &scope, &opts);
        println!("diff_rulesets (focused): {} changes in {:?}", d.len(), t.elapsed());
    }
}
