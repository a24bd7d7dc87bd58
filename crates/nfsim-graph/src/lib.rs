//! Diagrams drawn from the simulation itself, so they cannot drift from the rules: a multi-hop
//! [`Path`] as hosts (clusters) holding their processes and their kernel
//! netfilter, with one edge per step of each connection; or a rule set's chains and jumps.
//!
//! [`Diagram`] is a petgraph graph of [`Node`]s and [`Edge`]s; [`Diagram::to_dot`] writes DOT with
//! clusters, escaped labels and stable identifiers (same input, same bytes); [`svg`] renders it
//! with Graphviz's `dot` when installed, otherwise with the pure-Rust layout-rs (which has no
//! clusters: host names go into the labels, and graphs beyond [`LAYOUT_RS_MAX_NODES`] are refused).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use nfsim::path::{Outcome, Path};
use nfsim::ruleset::{Ruleset, Target};
use nfsim::trace::StepKind;
use petgraph::graph::{DiGraph, NodeIndex};

/// A node: a process, a host's netfilter, a chain, or the place a packet was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Stable identifier derived from names (`client__envoy`).
    pub id: String,
    /// The text shown.
    pub label: String,
    /// The cluster (host or table) it belongs to.
    pub cluster: Option<String>,
    /// Graphviz shape.
    pub shape: &'static str,
    /// Fill colour.
    pub fill: &'static str,
}

/// An edge: one step of a connection, or a jump between chains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The text shown.
    pub label: String,
    /// Colour (`red` for the edges of a loop).
    pub color: &'static str,
    /// `solid`, `dashed` (goto), `bold` (loop).
    pub style: &'static str,
}

/// A diagram.
#[derive(Debug, Default)]
pub struct Diagram {
    /// Title.
    pub title: String,
    /// The graph.
    pub graph: DiGraph<Node, Edge>,
    /// Cluster labels by cluster id, in a stable order.
    pub clusters: BTreeMap<String, String>,
    ids: BTreeMap<String, NodeIndex>,
}

impl Diagram {
    fn node(&mut self, id: &str, label: &str, cluster: Option<&str>, shape: &'static str, fill: &'static str) -> NodeIndex {
        if let Some(&i) = self.ids.get(id) {
            return i;
        }
        let i = self.graph.add_node(Node { id: id.to_string(), label: label.to_string(), cluster: cluster.map(str::to_string), shape, fill });
        self.ids.insert(id.to_string(), i);
        i
    }

    fn edge(&mut self, a: NodeIndex, b: NodeIndex, label: String, color: &'static str, style: &'static str) {
        self.graph.add_edge(a, b, Edge { label, color, style });
    }

    /// The diagram of one path: hosts as clusters, processes and each host's netfilter as nodes,
    /// an edge per step (loop edges red and bold, a drop ends at a DROP node).
    pub fn of_path(p: &Path) -> Diagram {
        let mut d = Diagram { title: format!("flow {}", p.flow), ..Diagram::default() };
        let cycle: Vec<usize> = match &p.outcome {
            Outcome::Loop { cycle, .. } => cycle.clone(),
            _ => Vec::new(),
        };
        for (i, h) in p.hops.iter().enumerate() {
            let in_loop = cycle.contains(&i);
            let (color, style) = if in_loop { ("red", "bold") } else { ("black", "solid") };
            d.clusters.insert(ident(&h.host), h.host.clone());
            let from = d.node(&ident(&format!("{}__{}", h.host, h.process)), &h.process, Some(&ident(&h.host)), "box", "lightyellow");
            let nf = d.node(&ident(&format!("{}__netfilter", h.host)), "kernel netfilter", Some(&ident(&h.host)), "ellipse", "lightblue");
            d.edge(from, nf, format!("{}. connect {}:{}", i + 1, h.before.dst, h.before.dport), color, style);
            // The steps on each host, as chains that fired and the NAT done.
            let mut by_host: Vec<(String, Vec<String>)> = Vec::new();
            for s in h.trace.iter().filter(|s| s.kind == StepKind::Rule) {
                let name = format!("{}/{}", s.table, s.chain);
                match by_host.last_mut() {
                    Some((host, chains)) if **host == *s.host => {
                        if chains.last() != Some(&name) {
                            chains.push(name);
                        }
                    }
                    _ => by_host.push((s.host.to_string(), vec![name])),
                }
            }
            let nat = if (h.after.dst, h.after.dport) != (h.before.dst, h.before.dport) {
                format!("\nNAT -> {}:{}", h.after.dst, h.after.dport)
            } else {
                String::new()
            };
            let first_chains = by_host.first().map(|(_, c)| c.join(" -> ")).unwrap_or_default();
            match (&h.accepted_host, &h.accepted_by) {
                (Some(ah), Some(ap)) => {
                    d.clusters.insert(ident(ah), ah.clone());
                    let to = d.node(&ident(&format!("{ah}__{ap}")), ap, Some(&ident(ah)), "box", "lightyellow");
                    if *ah == h.host {
                        d.edge(nf, to, format!("{first_chains}{nat}\n:{}", h.listener_port), color, style);
                    } else {
                        let nf2 = d.node(&ident(&format!("{ah}__netfilter")), "kernel netfilter", Some(&ident(ah)), "ellipse", "lightblue");
                        d.edge(nf, nf2, format!("{first_chains}\n{}:{}", h.before.dst, h.before.dport), color, style);
                        let second = by_host.get(1).map(|(_, c)| c.join(" -> ")).unwrap_or_default();
                        d.edge(nf2, to, format!("{second}{nat}\n:{}", h.listener_port), color, style);
                    }
                }
                _ => {
                    let why = match &p.outcome {
                        Outcome::Dropped { reason, .. } => format!("DROP\n{reason}"),
                        Outcome::Rejected { by, .. } => format!("REJECT\n{}", by.as_ref().map(ToString::to_string).unwrap_or_default()),
                        other => format!("{other:?}"),
                    };
                    let end = d.node(&ident(&format!("{}__end{i}", h.host)), &why, Some(&ident(&h.host)), "octagon", "salmon");
                    d.edge(nf, end, first_chains, "red", "solid");
                }
            }
        }
        // Show each process's listening ports that the path used (Envoy's 15001 and 15006).
        let mut ports: BTreeMap<String, std::collections::BTreeSet<u16>> = BTreeMap::new();
        for h in &p.hops {
            if let (Some(ah), Some(ap)) = (&h.accepted_host, &h.accepted_by) {
                ports.entry(ident(&format!("{ah}__{ap}"))).or_default().insert(h.listener_port);
            }
        }
        for n in d.graph.node_weights_mut() {
            if let Some(ps) = ports.get(&n.id) {
                let list: Vec<String> = ps.iter().map(|p| format!(":{p}")).collect();
                n.label = format!("{}\n{}", n.label, list.join(" "));
            }
        }
        d
    }

    /// The chains of a rule set: a cluster per table, a node per chain (built-in chains are the
    /// entry points), an edge per jump (`-g` dashed) labelled with the rule numbers.
    pub fn of_ruleset(r: &Ruleset) -> Diagram {
        let mut d = Diagram { title: "chains".into(), ..Diagram::default() };
        for t in &r.tables {
            let cl = ident(&format!("{:?}_{}", t.family, t.name));
            d.clusters.insert(cl.clone(), format!("{} ({:?})", t.name, t.family));
            let ids: Vec<NodeIndex> = t
                .chains()
                .iter()
                .map(|c| {
                    let (shape, fill) = if c.hook.is_some() { ("box", "lightblue") } else { ("ellipse", "white") };
                    let label = match c.hook {
                        Some(_) => format!("{}\n{} rules, policy {}", c.name, c.rules.len(), c.policy.as_str()),
                        None => format!("{}\n{} rules", c.name, c.rules.len()),
                    };
                    d.node(&ident(&format!("{cl}__{}", c.name)), &label, Some(&cl), shape, fill)
                })
                .collect();
            for (ci, c) in t.chains().iter().enumerate() {
                let mut jumps: BTreeMap<(u32, bool), Vec<usize>> = BTreeMap::new();
                for (ri, rule) in c.rules.iter().enumerate() {
                    match rule.target {
                        Target::Jump(to) => jumps.entry((to.0, false)).or_default().push(ri + 1),
                        Target::Goto(to) => jumps.entry((to.0, true)).or_default().push(ri + 1),
                        _ => {}
                    }
                }
                for ((to, goto), rules) in jumps {
                    let label =
                        format!("{} {}", if rules.len() == 1 { "rule" } else { "rules" }, rules.iter().map(usize::to_string).collect::<Vec<_>>().join(","));
                    d.edge(ids[ci], ids[to as usize], label, "black", if goto { "dashed" } else { "solid" });
                }
            }
        }
        d
    }

    /// DOT text: clusters, escaped labels, node ids derived from names; deterministic.
    pub fn to_dot(&self) -> String {
        self.write_dot(true)
    }

    /// DOT without clusters, the host or table named in each label instead (for layout-rs).
    pub fn to_flat_dot(&self) -> String {
        self.write_dot(false)
    }

    fn write_dot(&self, clusters: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "digraph nfsim {{");
        let _ = writeln!(out, "  label={};\n  labelloc=t;\n  rankdir=LR;\n  fontname=\"Helvetica\";", q(&self.title));
        let _ = writeln!(out, "  node [fontname=\"Helvetica\", fontsize=10, style=filled];\n  edge [fontname=\"Helvetica\", fontsize=9];");
        let mut nodes: Vec<&Node> = self.graph.node_weights().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let node_line = |n: &Node, label: &str| format!("{} [label={}, shape={}, fillcolor={}];", n.id, q(label), n.shape, n.fill);
        if clusters {
            for (cid, clabel) in &self.clusters {
                let _ = writeln!(out, "  subgraph cluster_{cid} {{\n    label={};\n    style=rounded;", q(clabel));
                for n in nodes.iter().filter(|n| n.cluster.as_deref() == Some(cid)) {
                    let _ = writeln!(out, "    {}", node_line(n, &n.label));
                }
                let _ = writeln!(out, "  }}");
            }
            for n in nodes.iter().filter(|n| n.cluster.as_ref().is_none_or(|c| !self.clusters.contains_key(c))) {
                let _ = writeln!(out, "  {}", node_line(n, &n.label));
            }
        } else {
            for n in &nodes {
                let label = match n.cluster.as_ref().and_then(|c| self.clusters.get(c)) {
                    Some(host) => format!("{host}: {}", n.label),
                    None => n.label.clone(),
                };
                let _ = writeln!(out, "  {}", node_line(n, &label));
            }
        }
        for e in self.graph.edge_indices() {
            let (a, b) = self.graph.edge_endpoints(e).expect("edge");
            let w = &self.graph[e];
            let _ = writeln!(out, "  {} -> {} [label={}, color={}, style={}];", self.graph[a].id, self.graph[b].id, q(&w.label), w.color, w.style);
        }
        out.push_str("}\n");
        out
    }
}

/// A DOT identifier from a name: letters, digits and `_` kept, anything else `_`.
pub fn ident(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) { format!("n{s}") } else { s }
}

/// A quoted DOT string: `"` and `\` escaped, newlines as `\n`.
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// layout-rs becomes very slow on larger cyclic graphs; bigger diagrams need Graphviz.
pub const LAYOUT_RS_MAX_NODES: usize = 120;

/// How an SVG was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renderer {
    /// Graphviz's `dot -Tsvg`.
    Graphviz,
    /// The pure-Rust layout-rs (no clusters).
    LayoutRs,
}

/// Renders the diagram as SVG: with `dot` when it is on the PATH, otherwise with layout-rs.
pub fn svg(d: &Diagram) -> Result<(String, Renderer), String> {
    if let Some(s) = svg_with_graphviz(&d.to_dot())? {
        return Ok((s, Renderer::Graphviz));
    }
    svg_with_layout_rs(d).map(|s| (s, Renderer::LayoutRs))
}

/// `dot -Tsvg`, or `None` when Graphviz is not installed.
pub fn svg_with_graphviz(dot: &str) -> Result<Option<String>, String> {
    use std::io::Write as _;
    let child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else { return Ok(None) };
    child.stdin.take().ok_or("dot stdin")?.write_all(dot.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("dot failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// layout-rs on the flattened DOT (host names in labels); refuses empty and large graphs.
pub fn svg_with_layout_rs(d: &Diagram) -> Result<String, String> {
    let n = d.graph.node_count();
    if n == 0 {
        return Err("the diagram is empty".into());
    }
    if n > LAYOUT_RS_MAX_NODES {
        return Err(format!("{n} nodes is too many for the built-in layout (at most {LAYOUT_RS_MAX_NODES}); install Graphviz (`dot`) for large diagrams"));
    }
    let dot = d.to_flat_dot();
    let mut parser = layout::gv::DotParser::new(&dot);
    let tree = parser.process().map_err(|e| format!("layout-rs could not read the DOT: {e}"))?;
    let mut builder = layout::gv::GraphBuilder::new();
    builder.visit_graph(&tree);
    let mut vg = builder.get();
    let mut svg = layout::backends::svg::SVGWriter::new();
    vg.do_it(false, false, false, &mut svg);
    Ok(svg.finalize())
}
