//! nfsim: what Linux netfilter (iptables) does with a packet.
//!
//! This crate is the pure core: no I/O, no clock, no randomness. Its modules follow netfilter's
//! own map:
//!
//! - [`ruleset`]: tables, chains and rules, read from `iptables-save` text ([`ruleset::parse()`]),
//!   printed back canonically ([`ruleset::render::render`]) and checked as the kernel checks them
//!   on load ([`ruleset::check::check`]).
//! - [`xt`]: what the model and the extensions share: family, table and hook names, `!`, the
//!   extension trait, the tokenizer, option values and addresses.
//! - [`matches`](mod@matches): one file per match extension (`-m tcp`, `-m owner`, ...).
//! - [`targets`]: one file per target extension (`-j REDIRECT`, `-j MARK`, ...).
//! - [`simulate`](mod@simulate), [`path`], [`classes`](mod@classes), [`verify`](mod@verify): one packet through a host, a request
//!   through a scenario, every packet at once, and loop-freedom for every connection; [`mesh`]:
//!   what a scenario's processes do with the connections they accept, shared by `path` and
//!   `verify`.
//! - [`diag`]: located problems and their rendering.
//!
//! The front door re-exports what a user needs for each operation: [`parse()`] a rule set,
//! [`simulate()`] one packet on a [`Host`], follow a [`Scenario`]'s flows ([`simulate_flows`]),
//! compute [`classes()`] of packets, [`diff_rulesets`], and [`verify()`] that no connection loops.
//!
//! ```
//! let parsed = nfsim::ruleset::parse("*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n");
//! assert!(parsed.diagnostics.is_empty());
//! assert_eq!(parsed.ruleset.rule_count(), 1);
//! ```

pub mod classes;
pub(crate) mod conntrack;
pub mod diag;
pub mod hook;
pub mod host;
pub mod matches;
pub mod mesh;
pub mod packet;
pub mod path;
pub mod reason;
pub mod ruleset;
pub mod simulate;
pub(crate) mod stack;
#[cfg(feature = "proptest")]
pub mod strategies;
pub mod targets;
pub mod topology;
pub mod trace;
pub mod traverse;
pub mod verify;
pub mod xt;

pub use classes::{Classes, Scope, classes, diff_rulesets};
pub use host::Host;
pub use packet::{Owner, Packet};
pub use path::{Path, simulate_flow, simulate_flows};
pub use reason::Reason;
pub use ruleset::{Parsed, Ruleset, parse};
pub use simulate::{Branch, Origin, Simulation, Simulator, simulate};
pub use topology::Scenario;
pub use traverse::Options;
pub use verify::{Verification, verify};

/// Parses arbitrary bytes as a rule file and prints what was read, panicking on any internal
/// inconsistency; the shared body of the `parse` fuzz target and of the seed replay test.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = ruleset::parse(&text);
    let _ = ruleset::render::render(&parsed.ruleset, &ruleset::render::RenderOptions::default());
    for d in &parsed.diagnostics {
        let _ = d.render("fuzz", &text);
    }
}

/// Parses, prints, parses the printed text again and asserts both models print the same; the
/// shared body of the `roundtrip` fuzz target.
#[doc(hidden)]
pub fn fuzz_roundtrip(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let first = ruleset::parse(&text);
    if first.diagnostics.iter().any(|d| d.is_error()) {
        return;
    }
    if has_lossy_nat_base(&first.ruleset) {
        // iptables saves SNAT/MASQUERADE `/BASE` as `/0`, which it then refuses to read back;
        // nfsim prints what iptables-save prints, so these cannot round-trip.
        return;
    }
    let opts = ruleset::render::RenderOptions::default();
    let printed = ruleset::render::render(&first.ruleset, &opts);
    let second = ruleset::parse(&printed);
    let errors: Vec<_> = second.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.render("printed", &printed)).collect();
    assert!(errors.is_empty(), "printed form does not parse:\n{printed}\n{}", errors.join("\n"));
    let reprinted = ruleset::render::render(&second.ruleset, &opts);
    assert_eq!(printed, reprinted, "printing is not a fixed point");
}

/// True when a rule has an SNAT or MASQUERADE port range with a `/BASE` (see `fuzz_roundtrip`).
fn has_lossy_nat_base(ruleset: &ruleset::Ruleset) -> bool {
    use targets::TargetExt;
    ruleset.tables.iter().flat_map(|t| t.chains()).flat_map(|c| &c.rules).any(|r| match &r.target {
        ruleset::Target::Ext(TargetExt::Snat(s)) => s.to.as_ref().and_then(|t| t.ports.as_ref()).is_some_and(|p| p.base.is_some()),
        ruleset::Target::Ext(TargetExt::Masquerade(m)) => m.ports.as_ref().is_some_and(|p| p.base.is_some()),
        _ => false,
    })
}

/// Parses the input as a rule set and simulates packets derived from its first bytes through a
/// small host, from each origin; must never panic and always end. The shared body of the
/// `simulate` fuzz target.
#[doc(hidden)]
pub fn fuzz_simulate(data: &[u8]) {
    use std::net::{IpAddr, Ipv4Addr};
    let text = String::from_utf8_lossy(data);
    let parsed = ruleset::parse(&text);
    let b = |i: usize| data.get(i).copied().unwrap_or(0);
    let host = host::Host::new("fuzz")
        .iface("eth0", &["10.0.0.5/24"])
        .gateway("10.0.0.1")
        .listen(6, "0.0.0.0", 8080, "app", 1000, 1000)
        .listen(17, "0.0.0.0", 53, "dns", 0, 0);
    let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, [5, 9, 1, 127][usize::from(b(0) % 4)]));
    let proto = [6, 17, 1, 132][usize::from(b(1) % 4)];
    let mut pkt = packet::Packet::new(proto, IpAddr::V4(Ipv4Addr::new(10, 0, 0, b(2))), 40000, dst, u16::from_be_bytes([b(3), b(4)]));
    pkt.mark = u32::from(b(5));
    let opts = traverse::Options { max_branches: 32, ..traverse::Options::default() };
    for origin in [simulate::Origin::Local(Some(packet::Owner { uid: u32::from(b(6)), gid: 0, groups: Vec::new() })), simulate::Origin::Iface("eth0".into())] {
        let sim = simulate::simulate(&parsed.ruleset, &host, pkt.clone(), &origin, &opts);
        assert!(!sim.branches.is_empty(), "every packet has a fate");
    }
}

/// Computes the classes of arbitrary rules (both origins) and diffs them against themselves,
/// checking that the classes partition the packets and every example lies in its class; the
/// shared body of the `classes` fuzz target.
#[doc(hidden)]
pub fn fuzz_classes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = ruleset::parse(&text);
    let host = host::Host::new("fuzz")
        .iface("eth0", &["10.0.0.5/24", "fd00::5/64"])
        .gateway("10.0.0.1")
        .listen(6, "0.0.0.0", 8080, "app", 1000, 1000)
        .listen(17, "0.0.0.0", 53, "dns", 0, 0);
    let opts = traverse::Options { max_branches: 16, ..traverse::Options::default() };
    for family in [ruleset::Family::V4, ruleset::Family::V6] {
        for from in [None, Some("eth0")] {
            let scope = classes::Scope::all(&host, family, from);
            let cs = classes::classes(&parsed.ruleset, &host, &scope, &opts);
            assert!(!cs.classes.is_empty(), "every packet is in a class");
            for c in &cs.classes {
                assert!(!c.fates.is_empty(), "every class has a fate");
                let holders = cs.classes.iter().filter(|o| o.region.iter().any(|q| q.contains(&c.example))).count();
                assert_eq!(holders, 1, "the example of a class lies in that class only");
            }
            assert!(classes::diff_rulesets(&parsed.ruleset, &parsed.ruleset, &host, &scope, &opts).is_empty(), "a rule set equals itself");
        }
    }
}
