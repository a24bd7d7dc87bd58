//! Dispatch runs of a chain: consecutive rules whose destinations are disjoint (or equal)
//! prefixes, kube-proxy's KUBE-SERVICES. `ipt_do_table` tests such rules one by one; a packet
//! whose destination lies in one prefix can only match that prefix's rules, and a packet in none
//! of them matches none of the run. Both engines use this index to skip what the destination
//! rules out (nftables builds the same thing as a verdict map); it never changes what matches.

use super::{ChainId, Family, Rule, Ruleset};
use crate::xt::addr::AddrMask;

/// Runs shorter than this are walked rule by rule.
pub(crate) const MIN_RUN: usize = 8;

/// The dispatch runs of one chain.
#[derive(Clone, Debug, Default)]
pub(crate) struct Runs {
    /// The runs, in chain order.
    pub(crate) runs: Vec<Run>,
    /// The run each rule is in (`u32::MAX`: none); empty when the chain has no run.
    run_at: Vec<u32>,
}

/// One run of rules.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    /// One past the run's last rule.
    pub(crate) end: usize,
    /// Groups sorted by address: the prefix as an interval, and its rules in order.
    pub(crate) groups: Vec<Group>,
}

/// The rules of a run that share one destination prefix.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    /// The prefix's first address.
    pub(crate) lo: u128,
    /// The prefix's last address.
    pub(crate) hi: u128,
    /// Its rules' indexes in the chain, in order.
    pub(crate) rules: Vec<usize>,
}

impl Runs {
    /// The runs of `rules`, a chain of a `family` table.
    pub(crate) fn of(rules: &[Rule], family: Family) -> Runs {
        let n = rules.len();
        let mut out = Runs::default();
        // Most chains have no MIN_RUN consecutive destination rules: find that out cheaply.
        let mut streak = 0;
        if !rules.iter().any(|r| {
            streak = if dst_interval(r, family).is_some() { streak + 1 } else { 0 };
            streak >= MIN_RUN
        }) {
            return out;
        }
        let mut i = 0;
        while i < n {
            // Grow a run from rule i while the prefixes stay equal or disjoint.
            let mut groups: std::collections::BTreeMap<u128, (u128, Vec<usize>)> = std::collections::BTreeMap::new();
            let mut j = i;
            while j < n {
                let Some((lo, hi)) = dst_interval(&rules[j], family) else { break };
                let fits = match groups.range(..=hi).next_back() {
                    Some((&glo, (ghi, _))) if glo == lo && *ghi == hi => true,
                    Some((_, (ghi, _))) => *ghi < lo,
                    None => true,
                };
                if !fits {
                    break;
                }
                groups.entry(lo).or_insert_with(|| (hi, Vec::new())).1.push(j);
                j += 1;
            }
            if j - i >= MIN_RUN {
                if out.run_at.is_empty() {
                    out.run_at = vec![u32::MAX; n];
                }
                for slot in &mut out.run_at[i..j] {
                    *slot = out.runs.len() as u32;
                }
                let groups = groups.into_iter().map(|(lo, (hi, rules))| Group { lo, hi, rules }).collect();
                out.runs.push(Run { end: j, groups });
                i = j;
            } else {
                i += 1;
            }
        }
        out
    }

    /// True when the chain has no run.
    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The run rule `idx` is in, with its number.
    #[inline]
    pub(crate) fn run_at(&self, idx: usize) -> Option<(u32, &Run)> {
        let id = *self.run_at.get(idx)?;
        (id != u32::MAX).then(|| (id, &self.runs[id as usize]))
    }
}

/// The runs of every chain of a rule set that has one, built once when the rules are loaded.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Per table of the rule set, per chain (empty for a table without runs).
    tables: Vec<Vec<Option<Box<Runs>>>>,
}

impl Index {
    /// The runs of every chain of `ruleset`.
    pub(crate) fn of(ruleset: &Ruleset) -> Index {
        let tables = ruleset
            .tables
            .iter()
            .map(|t| {
                // Allocates nothing for a table without runs (a one-packet `simulate` builds this).
                let mut runs: Vec<Option<Box<Runs>>> = Vec::new();
                for (i, c) in t.chains().iter().enumerate() {
                    let r = Runs::of(&c.rules, t.family);
                    if !r.is_empty() {
                        runs.resize_with(t.chains().len(), || None);
                        runs[i] = Some(Box::new(r));
                    }
                }
                runs
            })
            .collect();
        Index { tables }
    }

    /// The runs of `chain` of table number `table` of the rule set, if it has any.
    #[inline]
    pub(crate) fn runs(&self, table: usize, chain: ChainId) -> Option<&Runs> {
        self.tables.get(table)?.get(chain.0 as usize)?.as_deref()
    }
}

impl Run {
    /// The group whose prefix holds `addr`, if any.
    #[inline]
    pub(crate) fn group_of(&self, addr: u128) -> Option<usize> {
        let g = self.groups.partition_point(|g| g.hi < addr);
        (g < self.groups.len() && self.groups[g].lo <= addr).then_some(g)
    }

    /// The first rule at or after `idx` that group `g` has, if any.
    #[inline]
    pub(crate) fn next_in(&self, g: usize, idx: usize) -> Option<usize> {
        let rules = &self.groups[g].rules;
        rules.get(rules.partition_point(|&r| r < idx)).copied()
    }

    /// Where a packet to `addr` at rule `idx` of the run goes on: its group's next rule, or the
    /// end of the run.
    #[inline]
    pub(crate) fn next_for(&self, idx: usize, addr: u128) -> usize {
        self.group_of(addr).and_then(|g| self.next_in(g, idx)).unwrap_or(self.end)
    }
}

/// The destinations a rule's `-d` admits, when they are one interval (a contiguous prefix, or
/// the complement of one that touches either end of the address space).
fn dst_interval(rule: &Rule, family: Family) -> Option<(u128, u128)> {
    let d = rule.dst.as_ref()?;
    let (addr, mask, bits) = match &d.value {
        AddrMask::V4 { addr, mask } => (u128::from(u32::from(*addr)), u128::from(u32::from(*mask)), 32u32),
        AddrMask::V6(v) => (u128::from(v.addr), u128::from(v.mask), 128u32),
    };
    if bits != addr_bits(family) {
        return None;
    }
    let len = mask.count_ones();
    let full = if bits == 32 { u128::from(u32::MAX) } else { u128::MAX };
    let host = if len == bits { 0 } else { full >> len };
    if mask != full & !host {
        return None; // not a contiguous prefix
    }
    let (lo, hi) = (addr & mask, (addr & mask) | host);
    if !d.negated {
        return Some((lo, hi));
    }
    match (lo == 0, hi == full) {
        (true, false) => Some((hi + 1, full)),
        (false, true) => Some((0, lo - 1)),
        _ => None,
    }
}

/// An address as the number the intervals use.
#[inline]
pub(crate) fn addr_key(a: std::net::IpAddr) -> u128 {
    match a {
        std::net::IpAddr::V4(v) => u128::from(u32::from(v)),
        std::net::IpAddr::V6(v) => u128::from(v),
    }
}

fn addr_bits(family: Family) -> u32 {
    match family {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(lines: &[&str]) -> Vec<Rule> {
        let mut text = String::from("*filter\n:INPUT ACCEPT [0:0]\n");
        for l in lines {
            text.push_str(&format!("-A INPUT {l}\n"));
        }
        text.push_str("COMMIT\n");
        let parsed = crate::ruleset::parse(&text);
        assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
        parsed.ruleset.tables[0].chains()[0].rules.clone()
    }

    #[test]
    fn a_run_groups_equal_prefixes_and_ends_at_an_overlap() {
        let mut lines: Vec<String> = (1..=9).map(|i| format!("-d 10.0.0.{i}/32 -j ACCEPT")).collect();
        lines.insert(3, "-d 10.0.0.1/32 -p udp -j DROP".into());
        lines.push("-d 10.0.0.0/24 -j DROP".into()); // overlaps: ends the run
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let runs = Runs::of(&chain(&refs), Family::V4);
        assert_eq!(runs.runs.len(), 1);
        let run = &runs.runs[0];
        assert_eq!(run.end, 10);
        assert_eq!(run.groups[0].rules, vec![0, 3]);
        let a = addr_key("10.0.0.1".parse().unwrap());
        assert_eq!((run.next_for(0, a), run.next_for(1, a), run.next_for(4, a)), (0, 3, 10));
        assert_eq!(run.next_for(0, addr_key("10.0.1.1".parse().unwrap())), 10);
        assert!(runs.run_at(10).is_none());
    }

    #[test]
    fn short_chains_and_non_prefix_masks_have_no_run() {
        let short: Vec<String> = (1..MIN_RUN).map(|i| format!("-d 10.0.0.{i} -j ACCEPT")).collect();
        assert!(Runs::of(&chain(&short.iter().map(String::as_str).collect::<Vec<_>>()), Family::V4).is_empty());
        let odd: Vec<String> = (1..=9).map(|i| format!("-d 10.0.0.{i}/255.0.255.255 -j ACCEPT")).collect();
        assert!(Runs::of(&chain(&odd.iter().map(String::as_str).collect::<Vec<_>>()), Family::V4).is_empty());
    }

    #[test]
    fn a_negated_prefix_at_an_end_of_the_space_is_an_interval() {
        let lines: Vec<String> =
            std::iter::once("! -d 128.0.0.0/1 -j ACCEPT".to_string()).chain((1..=8).map(|i| format!("-d 200.0.0.{i} -j ACCEPT"))).collect();
        let runs = Runs::of(&chain(&lines.iter().map(String::as_str).collect::<Vec<_>>()), Family::V4);
        let run = &runs.runs[0];
        assert_eq!((run.groups[0].lo, run.groups[0].hi), (0, (1 << 31) - 1));
        assert_eq!(run.next_for(0, addr_key("10.1.2.3".parse().unwrap())), 0);
        assert_eq!(run.next_for(1, addr_key("10.1.2.3".parse().unwrap())), 9);
    }
}

/// The dispatch runs change nothing: random chains of destination rules (equal, nested,
/// disjoint and negated prefixes; jumps, returns, chances, marks, DNAT) give the same
/// simulation with the index as with a walk of every rule.
#[cfg(test)]
mod equal_to_the_linear_walk {
    use proptest::prelude::*;

    use crate::host::Host;
    use crate::packet::{Owner, Packet};
    use crate::simulate::{Origin, Simulator};
    use crate::traverse::Options;

    /// A rule of a run: mostly one address, sometimes a wider or negated prefix.
    fn rule() -> impl Strategy<Value = String> {
        let len = prop_oneof![12 => Just(32u8), 1 => Just(31), 1 => Just(30), 1 => Just(29), 1 => Just(24)];
        let dst = (any::<bool>(), 0u8..12, len).prop_map(|(neg, a, len)| format!("{}-d 10.0.0.{a}/{len}", if neg && len < 30 { "! " } else { "" }));
        let port = prop_oneof![Just(String::new()), (0u8..3).prop_map(|p| format!(" -p tcp --dport {}", 80 + u16::from(p)))];
        let target = prop_oneof![
            Just(" -j ACCEPT"),
            Just(" -j DROP"),
            Just(" -j RETURN"),
            Just(" -j SUB"),
            Just(""),
            Just(" -m statistic --mode random --probability 0.5 -j SUB"),
            Just(" -m mark --mark 0x1/0x1 -j DROP"),
        ];
        (dst, port, target).prop_map(|(d, p, t)| format!("{d}{p}{t}"))
    }

    /// Runs of destination rules, each followed by a rule without `-d` or not.
    fn chain() -> impl Strategy<Value = Vec<String>> {
        let segment = (proptest::collection::vec(rule(), 4..20), any::<bool>());
        proptest::collection::vec(segment, 0..4).prop_map(|segs| {
            segs.into_iter()
                .flat_map(|(mut rules, breaker)| {
                    if breaker {
                        rules.push("-p udp -j RETURN".into());
                    }
                    rules
                })
                .collect()
        })
    }

    fn rules_text(filter: &[String], nat: &[String]) -> String {
        let mut t = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:RUN - [0:0]\n:SUB - [0:0]\n");
        t.push_str("-A INPUT -j RUN\n-A OUTPUT -j RUN\n-A SUB -j MARK --set-xmark 0x1/0x1\n-A SUB -j RETURN\n");
        for r in filter {
            t.push_str(&format!("-A RUN {r}\n"));
        }
        t.push_str(
            "COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:RUN - [0:0]\n:SUB - [0:0]\n",
        );
        t.push_str("-A PREROUTING -j RUN\n-A OUTPUT -j RUN\n-A SUB -d 10.0.0.3 -p tcp -j DNAT --to-destination 10.0.0.9:80\n");
        for r in nat {
            t.push_str(&format!("-A RUN {}\n", r.replace("-j DROP", "-j DNAT --to-destination 10.0.0.7")));
        }
        t.push_str("COMMIT\n");
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]
        #[test]
        fn dispatch_equals_the_linear_walk(
            filter in chain(),
            nat in chain(),
            packets in proptest::collection::vec((0u8..16, prop_oneof![Just(6u8), Just(17)], 79u16..83, any::<bool>(), 0u32..2), 1..8),
        ) {
            let text = rules_text(&filter, &nat);
            let parsed = crate::ruleset::parse(&text);
            prop_assert!(!parsed.has_errors(), "{text}\n{:?}", parsed.diagnostics);
            let host = Host::new("h").iface("eth0", &["10.0.0.5/24"]).gateway("10.0.0.1").listen(6, "0.0.0.0", 80, "app", 0, 0);
            let fast = Simulator::new(&parsed.ruleset, &host, Options::default());
            let slow = Simulator::linear(&parsed.ruleset, &host, Options::default());
            for (a, proto, dport, local, mark) in packets {
                let mut pkt = Packet::new(proto, "10.0.0.200".parse().unwrap(), 40000, format!("10.0.0.{a}").parse().unwrap(), dport);
                pkt.mark = mark;
                let origin = if local { Origin::Local(Some(Owner::default())) } else { Origin::Iface("eth0".into()) };
                prop_assert_eq!(fast.run(pkt.clone(), &origin), slow.run(pkt, &origin), "{}", text);
            }
        }
    }
}
