//! Diagrams of the built-in scenarios: golden DOT files (`NFSIM_UPDATE_GOLDENS=1` rewrites them),
//! the real Graphviz accepting every generated DOT without a warning, and the pure-Rust SVG.

use std::path::Path;

use nfsim::path::simulate_flows;
use nfsim::topology::{BUILTINS, Scenario};
use nfsim_graph::{Diagram, svg_with_graphviz, svg_with_layout_rs};

fn diagrams() -> Vec<(String, Diagram)> {
    let mut out = Vec::new();
    for (name, text) in BUILTINS {
        let s = Scenario::from_text(text).unwrap();
        for p in simulate_flows(&s).unwrap() {
            out.push((format!("{name}.{}", p.flow), Diagram::of_path(&p)));
        }
        let host = &s.load().unwrap()[1];
        out.push((format!("{name}.rules"), Diagram::of_ruleset(&host.ruleset)));
    }
    out
}

#[test]
fn dot_matches_goldens() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var("NFSIM_UPDATE_GOLDENS").is_ok_and(|v| v == "1");
    let mut mismatches = Vec::new();
    for (name, d) in diagrams() {
        let dot = d.to_dot();
        assert_eq!(dot, d.to_dot(), "deterministic");
        let file = dir.join(format!("{name}.dot"));
        if update {
            std::fs::write(&file, &dot).unwrap();
        } else if std::fs::read_to_string(&file).unwrap_or_default() != dot {
            mismatches.push(format!("{name}:\n{dot}"));
        }
    }
    assert!(mismatches.is_empty(), "DOT differs from the goldens (NFSIM_UPDATE_GOLDENS=1 rewrites them; review the diff):\n{}", mismatches.join("\n"));
}

#[test]
fn the_loop_is_drawn_in_red() {
    let (_, d) = diagrams().into_iter().find(|(n, _)| n == "istio-fortio-loop.seed").unwrap();
    let dot = d.to_dot();
    let red: Vec<&str> = dot.lines().filter(|l| l.contains("color=red")).collect();
    assert_eq!(red.len(), 4, "two looping hops, each process -> netfilter -> Envoy:\n{dot}");
    assert!(red.iter().all(|l| l.contains("client__envoy") || l.contains("client__netfilter")));
}

#[test]
fn graphviz_accepts_every_diagram_without_warnings() {
    let has_dot = std::process::Command::new("dot").arg("-V").output().is_ok();
    if !has_dot {
        if std::env::var("NFSIM_REQUIRE_KERNEL").is_ok_and(|v| v == "1") {
            panic!("Graphviz `dot` is required here (CI installs graphviz)");
        }
        eprintln!("\n*** SKIPPED Graphviz validation: `dot` is not installed ***\n");
        return;
    }
    for (name, d) in diagrams() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("dot -Tsvg >/dev/null")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(d.to_dot().as_bytes())?;
                c.wait_with_output()
            });
        let out = out.unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "{name}: dot says {}", String::from_utf8_lossy(&out.stderr));
        assert!(svg_with_graphviz(&d.to_dot()).unwrap().unwrap().contains("<svg"));
    }
}

#[test]
fn svg_without_graphviz() {
    let (_, d) = diagrams().into_iter().find(|(n, _)| n == "istio-fortio.seed").unwrap();
    let svg = svg_with_layout_rs(&d).unwrap();
    assert!(svg.contains("<svg") && svg.contains("fortio-server-l2: kernel netfilter"), "host names go into labels");
    assert!(svg_with_layout_rs(&Diagram::default()).is_err(), "an empty graph is refused, not a panic");
}
