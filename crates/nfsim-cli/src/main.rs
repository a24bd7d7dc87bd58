//! The `nfsim` command: check and format iptables rule sets (simulation commands follow).

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

mod batch;

/// mimalloc: a large dump is hundreds of thousands of small allocations, which glibc's
/// allocator makes and frees markedly slower.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod classes;
mod path;
mod trace;
use nfsim::diag::Severity;
use nfsim::ruleset::render::{RenderOptions, render};
use nfsim::ruleset::{Family, Format, ParseOptions, Parsed, parse_with};

#[derive(Parser, Debug)]
#[command(name = "nfsim", version, about = "What Linux netfilter (iptables) does with a packet")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone)]
struct ReadArgs {
    /// Input format (detected when not given).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Address family (detected when not given).
    #[arg(long, value_enum)]
    family: Option<FamilyArg>,
    /// Keep rules that cannot be read as "unreadable" (undecidable) rules and report them as warnings.
    #[arg(long)]
    lenient: bool,
    /// An ipset that exists on the host (repeatable); `-m set` naming any other set is an error.
    #[arg(long = "ipset", value_name = "NAME")]
    ipsets: Vec<String>,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum FormatArg {
    /// iptables-save output / iptables-restore input.
    Save,
    /// One iptables/ip6tables command per line (or `iptables -S` output).
    Commands,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum DiagramFormat {
    /// Graphviz DOT.
    Dot,
    /// SVG.
    Svg,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum FamilyArg {
    /// IPv4 (iptables).
    Ipv4,
    /// IPv6 (ip6tables).
    Ipv6,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Report every problem in rule files, as iptables-restore and the kernel would find them.
    Check {
        /// Files to check (`-` for standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print diagnostics as JSON objects, one per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Simulate one packet through a host's netfilter and print every step, as the kernel's TRACE would.
    Trace(Box<TraceArgs>),
    /// Follow a request hop by hop through every host and proxy of a scenario (the built-in
    /// `istio-fortio` without arguments). Exit status: 0 delivered, 3 loop, 4 otherwise.
    Path {
        /// A scenario file (YAML or JSON).
        scenario: Option<PathBuf>,
        /// Use a built-in scenario (`nfsim example` lists them).
        #[arg(long)]
        example: Option<String>,
        /// Only this flow.
        #[arg(long)]
        flow: Option<String>,
        /// Print the paths as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Draw a scenario's paths (the built-in `istio-fortio` without arguments), or with `--rules`
    /// a rule set's chains, as DOT or SVG (Graphviz when installed, a built-in layout otherwise).
    Diagram {
        /// A scenario file (YAML or JSON).
        scenario: Option<PathBuf>,
        /// Use a built-in scenario.
        #[arg(long)]
        example: Option<String>,
        /// Only this flow (default: the first).
        #[arg(long)]
        flow: Option<String>,
        /// Draw this rule file's chains and jumps instead.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "dot")]
        format: DiagramFormat,
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Every class of packets a host's rules treat alike: what each class is (in iptables terms),
    /// what happens to it, and an example packet for `nfsim trace`.
    Classes {
        /// The rule set.
        #[arg(long)]
        rules: PathBuf,
        #[command(flatten)]
        host: HostArgs,
        /// Packets sent by local processes (`local`, the default) or arriving on an interface.
        #[arg(long, default_value = "local")]
        from: String,
        #[command(flatten)]
        sim: SimArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every class of packets whose fate differs between two rule sets (exit 1 when one does, 0
    /// when none does); with `--scenario`, also compare the scenario's flows and loops.
    Diff {
        /// The old rule set (not with --scenario).
        old: Option<PathBuf>,
        /// The new rule set (not with --scenario).
        new: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
        /// Only packets sent by local processes (`local`) or arriving on this interface (default: all).
        #[arg(long)]
        from: Option<String>,
        /// Compare a scenario with some hosts' rules replaced (a file, or a built-in name).
        #[arg(long)]
        scenario: Option<String>,
        /// A host's new rules in the scenario: `HOST=FILE` (repeatable).
        #[arg(long = "rules-new", value_name = "HOST=FILE")]
        rules_new: Vec<String>,
        #[command(flatten)]
        sim: SimArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prove that no connection loops: every TCP connection of every process on every host of a
    /// scenario (the built-in `istio-fortio` without arguments), to every destination and port,
    /// followed through the rules and proxies. Exit 0: no loop; 3: loops (with witness paths);
    /// 4: some classes could not be decided.
    Verify {
        /// A scenario file (YAML or JSON).
        scenario: Option<PathBuf>,
        /// Use a built-in scenario.
        #[arg(long)]
        example: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the built-in scenarios, or print one for editing.
    Example {
        /// The scenario to print.
        name: Option<String>,
    },
    /// Print a rule file in canonical iptables-save form.
    Fmt {
        /// The file (`-` for standard input).
        file: PathBuf,
        /// Print counters (as `iptables-save -c`).
        #[arg(long)]
        counters: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// How undecidable rules and the table order are handled.
#[derive(clap::Args, Debug, Clone)]
struct SimArgs {
    /// iptables backend (orders security and nat INPUT): nft (default) or legacy.
    #[arg(long, default_value = "nft")]
    backend: String,
    /// For rules whose outcome cannot be known: assume they `match` or `nomatch` (default: both).
    #[arg(long)]
    assume: Option<String>,
}

/// The host the rules run on (as for `nfsim trace`).
#[derive(clap::Args, Debug, Clone)]
struct HostArgs {
    /// A full host description (YAML or JSON): interfaces, routes, policy rules, sockets, sysctls, ipsets.
    #[arg(long)]
    host: Option<PathBuf>,
    /// An interface and its addresses: `eth0=10.0.0.5/24[,ADDR/PLEN...]` (repeatable).
    #[arg(long = "iface", value_name = "NAME=ADDR/PLEN,...")]
    ifaces: Vec<String>,
    /// The default gateway.
    #[arg(long)]
    gateway: Option<std::net::IpAddr>,
    /// A sysctl: `net.ipv4.ip_forward=1`, `net.ipv4.conf.all.route_localnet=1`, ... (repeatable).
    #[arg(long = "sysctl", value_name = "KEY=VALUE")]
    sysctls: Vec<String>,
    /// A listening socket: `tcp:15001`, `udp:10.0.0.5:53`, optionally `/PROCESS` and `@UID` (repeatable).
    #[arg(long = "listen", value_name = "PROTO:[ADDR:]PORT[/PROCESS][@UID]")]
    listens: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct TraceArgs {
    /// The rule set (iptables-save output or another supported format).
    #[arg(long)]
    rules: PathBuf,
    #[command(flatten)]
    host: HostArgs,
    /// Where the packet comes from: `local` (a process on the host) or the name of the input interface.
    #[arg(long, required_unless_present = "packets")]
    from: Option<String>,
    /// The sending process's uid (with `--from local`).
    #[arg(long)]
    uid: Option<u32>,
    /// The sending process's gid (with `--from local`; defaults to the uid).
    #[arg(long)]
    gid: Option<u32>,
    /// tcp, udp, icmp (or a protocol number).
    #[arg(long, required_unless_present = "packets")]
    proto: Option<String>,
    /// Source `ADDR[:PORT]` (`[ADDR]:PORT` for IPv6); a local packet may leave the address to routing with `0.0.0.0`.
    #[arg(long)]
    src: Option<String>,
    /// Destination `ADDR[:PORT]`.
    #[arg(long, required_unless_present = "packets")]
    dst: Option<String>,
    /// The packet mark (decimal, or `0x` hexadecimal as `nfsim classes` prints it).
    #[arg(long, default_value = "0", value_parser = trace::parse_mark)]
    mark: u32,
    /// Conntrack state of the packet: NEW (default), ESTABLISHED, RELATED, INVALID, UNTRACKED.
    #[arg(long, default_value = "NEW")]
    state: String,
    #[command(flatten)]
    sim: SimArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Many packets, one JSON object a line (`-`: standard input), with the fields of the
    /// `example` that `nfsim classes --json` prints: `proto`, `dst`, `from` and optionally `src`,
    /// `uid`, `gid`, `mark`, `state`. Prints one trace-contract JSON result a line, in input order.
    #[arg(long, conflicts_with_all = ["from", "proto", "src", "dst", "uid", "gid", "json"])]
    packets: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nfsim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read_input(path: &PathBuf) -> anyhow::Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut s = Vec::new();
        std::io::stdin().read_to_end(&mut s).context("reading standard input")?;
        return Ok(("<stdin>".to_string(), String::from_utf8_lossy(&s).into_owned()));
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok((path.display().to_string(), text))
}

fn parse_options(read: &ReadArgs) -> ParseOptions {
    ParseOptions {
        format: read.format.map(|f| match f {
            FormatArg::Save => Format::Restore,
            FormatArg::Commands => Format::Commands,
        }),
        family: read.family.map(|f| match f {
            FamilyArg::Ipv4 => Family::V4,
            FamilyArg::Ipv6 => Family::V6,
        }),
        lenient: read.lenient,
        ipsets: read.ipsets.clone(),
        ..ParseOptions::default()
    }
}

#[derive(serde::Serialize)]
struct JsonDiag<'a> {
    file: &'a str,
    line: u32,
    column: u32,
    severity: Severity,
    stage: nfsim::diag::Stage,
    message: String,
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        Command::Check { files, json, read } => {
            let opts = parse_options(&read);
            let mut errors = 0;
            let mut warnings = 0;
            for path in &files {
                let (name, text) = read_input(path)?;
                let parsed: Parsed = parse_with(&text, &opts);
                let index = if json && !parsed.diagnostics.is_empty() { Some(nfsim::diag::LineIndex::new(&text)) } else { None };
                for d in &parsed.diagnostics {
                    match d.severity {
                        Severity::Error => errors += 1,
                        Severity::Warning => warnings += 1,
                    }
                    if json {
                        let mut message = d.message.clone();
                        if let Some(h) = &d.help {
                            message.push_str(&format!(" (help: {h})"));
                        }
                        let j = JsonDiag {
                            file: &name,
                            line: d.line,
                            column: index.as_ref().map_or(1, |i| i.column(&text, d.span.start)),
                            severity: d.severity,
                            stage: d.stage,
                            message,
                        };
                        writeln!(out, "{}", serde_json::to_string(&j)?)?;
                    } else {
                        writeln!(out, "{}", d.render(&name, &text))?;
                    }
                }
            }
            if !json {
                let rules = if errors == 0 { "ok" } else { "failed" };
                writeln!(out, "{rules}: {errors} error{}, {warnings} warning{}", if errors == 1 { "" } else { "s" }, if warnings == 1 { "" } else { "s" })?;
            }
            Ok(if errors > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Trace(args) => trace::run(&args, &mut out),
        Command::Path { scenario, example, flow, json } => path::run(scenario.as_deref(), example.as_deref(), flow.as_deref(), json, &mut out),
        Command::Classes { rules, host, from, sim, json } => classes::run_classes(&rules, &host, &from, &sim, json, &mut out),
        Command::Diff { old, new, host, from, scenario, rules_new, sim, json } => match (scenario, old, new) {
            (None, Some(old), Some(new)) => classes::run_diff(&old, &new, &host, from.as_deref(), &sim, json, &mut out),
            (Some(s), None, None) => classes::run_scenario_diff(&s, &classes::parse_rules_new(&rules_new)?, json, &mut out),
            (Some(_), _, _) => anyhow::bail!("with --scenario, give the new rules with --rules-new HOST=FILE instead of OLD NEW"),
            _ => anyhow::bail!("give OLD and NEW rule files, or --scenario S --rules-new HOST=FILE"),
        },
        Command::Verify { scenario, example, json } => classes::run_verify(scenario.as_deref(), example.as_deref(), json, &mut out),
        Command::Example { name } => path::example(name.as_deref(), &mut out),
        Command::Diagram { scenario, example, flow, rules, format, output } => {
            let d = match rules {
                Some(r) => {
                    let (name, text) = read_input(&r)?;
                    let parsed = parse_with(&text, &ParseOptions::default());
                    if parsed.has_errors() {
                        anyhow::bail!("{name} has errors; see `nfsim check {name}`");
                    }
                    nfsim_graph::Diagram::of_ruleset(&parsed.ruleset)
                }
                None => {
                    let scenario = path::load(scenario.as_deref(), example.as_deref())?;
                    let name = flow.or_else(|| scenario.flows.first().map(|f| f.name.clone())).context("the scenario has no flow")?;
                    nfsim_graph::Diagram::of_path(&nfsim::path::simulate_flow(&scenario, &name).map_err(anyhow::Error::msg)?)
                }
            };
            let text = match format {
                DiagramFormat::Dot => d.to_dot(),
                DiagramFormat::Svg => {
                    let (svg, how) = nfsim_graph::svg(&d).map_err(anyhow::Error::msg)?;
                    if how == nfsim_graph::Renderer::LayoutRs {
                        eprintln!("nfsim: Graphviz `dot` not found; drawn with the built-in layout (no host boxes)");
                    }
                    svg
                }
            };
            match output {
                Some(f) => std::fs::write(&f, text).with_context(|| format!("writing {}", f.display()))?,
                None => out.write_all(text.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Fmt { file, counters, read } => {
            let opts = parse_options(&read);
            let (name, text) = read_input(&file)?;
            let parsed = parse_with(&text, &opts);
            let mut errors = 0;
            for d in &parsed.diagnostics {
                if d.is_error() {
                    errors += 1;
                }
                eprint!("{}", d.render(&name, &text));
            }
            out.write_all(render(&parsed.ruleset, &RenderOptions { counters, family: None }).as_bytes())?;
            Ok(if errors > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
    }
}
