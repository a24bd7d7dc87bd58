//! proptest strategies (feature `proptest`): packets, socket owners, and rule-set mutations, so
//! users can state properties such as "no packet from any uid to any destination loops".

use std::net::IpAddr;

use proptest::prelude::*;

use crate::packet::{Owner, Packet};
use crate::ruleset::{Neg, Ruleset, Target};

/// Socket owners, favouring the uids that matter to sidecar rules.
pub fn owner() -> impl Strategy<Value = Owner> {
    prop_oneof![Just(0u32), Just(1000u32), Just(1337u32), 1u32..70000].prop_map(|uid| Owner { uid, gid: uid, groups: Vec::new() })
}

/// Application processes with an owner from [`owner`] and up to two listening ports.
pub fn process() -> impl Strategy<Value = crate::topology::Process> {
    (owner(), proptest::collection::vec(port(), 0..=2)).prop_map(|(o, listen)| crate::topology::Process {
        name: format!("proc{}", o.uid),
        uid: o.uid,
        gid: o.gid,
        listen,
        role: crate::topology::Role::App,
    })
}

/// Hosts with one interface in 10.0.N.0/24 (and its `.1` as gateway), optionally forwarding.
pub fn host() -> impl Strategy<Value = crate::host::Host> {
    (1u8..=254, any::<bool>()).prop_map(|(n, forward)| {
        let mut h = crate::host::Host::new(&format!("host{n}")).iface("eth0", &[&format!("10.0.{n}.10/24")]).gateway(&format!("10.0.{n}.1"));
        h.sysctls.ip_forward = forward;
        h
    })
}

/// Ports, favouring well-known and proxy ports.
pub fn port() -> impl Strategy<Value = u16> {
    prop_oneof![Just(8080u16), Just(15001), Just(15006), Just(15008), Just(15090), Just(22), Just(53), Just(80), 1u16..=65535]
}

/// TCP or UDP packets between the given addresses.
pub fn packet(addrs: Vec<IpAddr>) -> impl Strategy<Value = Packet> {
    let pick = proptest::sample::select(addrs);
    (prop_oneof![Just(6u8), Just(17u8)], pick.clone(), pick, 1024u16..65535, port())
        .prop_map(|(proto, src, dst, sport, dport)| Packet::new(proto, src, sport, dst, dport))
}

/// A change to a rule set, for mutation testing of rule changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Remove one rule.
    DropRule {
        /// Table index.
        table: usize,
        /// Chain index.
        chain: usize,
        /// Rule index.
        rule: usize,
    },
    /// Exchange two neighbouring rules.
    SwapRules {
        /// Table index.
        table: usize,
        /// Chain index.
        chain: usize,
        /// The first of the two rules.
        rule: usize,
    },
    /// Flip the `!` of the rule's source, destination, interface or protocol test.
    NegateMatch {
        /// Table index.
        table: usize,
        /// Chain index.
        chain: usize,
        /// Rule index.
        rule: usize,
    },
}

/// Mutations that apply to `ruleset` (rules that exist).
pub fn mutation(ruleset: &Ruleset) -> impl Strategy<Value = Mutation> {
    let spots: Vec<(usize, usize, usize)> = ruleset
        .tables
        .iter()
        .enumerate()
        .flat_map(|(t, table)| table.chains().iter().enumerate().flat_map(move |(c, chain)| (0..chain.rules.len()).map(move |r| (t, c, r))))
        .collect();
    let spots = if spots.is_empty() { vec![(0, 0, 0)] } else { spots };
    (proptest::sample::select(spots), 0u8..3).prop_map(|((table, chain, rule), kind)| match kind {
        0 => Mutation::DropRule { table, chain, rule },
        1 => Mutation::SwapRules { table, chain, rule },
        _ => Mutation::NegateMatch { table, chain, rule },
    })
}

/// `ruleset` with `m` applied (unchanged where `m` does not fit).
pub fn apply(ruleset: &Ruleset, m: &Mutation) -> Ruleset {
    let mut out = ruleset.clone();
    let (t, c, r) = match *m {
        Mutation::DropRule { table, chain, rule } | Mutation::SwapRules { table, chain, rule } | Mutation::NegateMatch { table, chain, rule } => {
            (table, chain, rule)
        }
    };
    let Some(table) = out.tables.get_mut(t) else { return out };
    let Some(chain) = table.chains_mut().nth(c) else { return out };
    if r >= chain.rules.len() {
        return out;
    }
    match m {
        Mutation::DropRule { .. } => {
            chain.rules.remove(r);
        }
        Mutation::SwapRules { .. } => {
            if r + 1 < chain.rules.len() {
                chain.rules.swap(r, r + 1);
            }
        }
        Mutation::NegateMatch { .. } => {
            let rule = &mut chain.rules[r];
            let flip = |n: &mut Option<Neg<_>>| n.as_mut().map(|v: &mut Neg<_>| v.negated = !v.negated).is_some();
            let _ = flip(&mut rule.src)
                || flip(&mut rule.dst)
                || rule.proto.as_mut().map(|p| p.negated = !p.negated).is_some()
                || matches!(rule.target, Target::None);
        }
    }
    out
}
