//! The walk through one table's chains at one hook, as `ipt_do_table` does it: rules in order,
//! a jump pushes a return address, `-g` does not, RETURN (or the end of a user chain) pops,
//! RETURN or the end of a built-in chain applies its policy. Matches that depend on chance or on
//! what cannot be known fork the walk: every branch is followed.
//!
//! The walk is written once over a domain (`stack::Domain`): for one packet every rule either matches or not;
//! for a region of packets a rule splits the region into the packets it matches and the others.

use serde::Serialize;

use crate::matches::Eval;
use crate::ruleset::{ChainId, Hook, Policy, Rule, Table, Target};
use crate::stack::{Domain, Few, Flow, NatCtx};
use crate::targets::effect::Applied;
use crate::trace::{RuleRef, StepKind};

/// An assumption made about a rule whose outcome could not be known.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assumption {
    /// The rule.
    pub rule: RuleRef,
    /// Whether it was taken to match.
    pub matched: bool,
    /// Why it could not be known (or the probability, for `statistic`).
    pub reason: Why,
}

/// Why a rule's outcome was assumed.
#[derive(Clone, Debug, PartialEq)]
pub enum Why {
    /// `-m statistic`: the rule matches with this probability (a chance, not an unknown).
    Chance(f64),
    /// The model cannot know (an opaque extension, state outside the packet, ...).
    Unknown(String),
}

impl Why {
    /// True for a chance (`statistic`), false for an undecidable rule.
    pub fn is_chance(&self) -> bool {
        matches!(self, Why::Chance(_))
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Chance(p) => match six_places(*p) {
                Some((whole, millionths)) => write!(f, "{CHANCE} {whole}.{millionths:06}"),
                None => write!(f, "{CHANCE} {p:.6}"),
            },
            Why::Unknown(why) => f.write_str(why),
        }
    }
}

/// `p` rounded to six decimal places as `{:.6}` rounds it, as (whole, millionths), when that
/// can be told from `p * 1e6` alone: `p` in [0, 1] and not within 1e-3 of a tie. (`{:.6}` takes
/// the exact, slow path of float formatting; a batch of traces prints this for every statistic
/// rule of every branch.) The product is off by at most 2e-10, so away from a tie it rounds the
/// same way as the exact value.
fn six_places(p: f64) -> Option<(u64, u64)> {
    if !(0.0..=1.0).contains(&p) {
        return None;
    }
    let x = p * 1e6;
    if (x - x.floor() - 0.5).abs() < 1e-3 {
        return None;
    }
    let n = x.round() as u64;
    Some((n / 1_000_000, n % 1_000_000))
}

/// Serialized as the sentence [`Display`](std::fmt::Display) prints.
impl Serialize for Why {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The words of a `statistic` assumption (a chance, not an undecidable rule).
pub(crate) const CHANCE: &str = "matches with probability";

/// Options of a simulation.
#[derive(Clone, Debug, Serialize)]
pub struct Options {
    /// The backend, for the order of tables at INPUT.
    pub backend: crate::hook::Backend,
    /// For a rule whose outcome cannot be known: assume it matches (`Some(true)`), does not
    /// (`Some(false)`), or follow both (`None`).
    pub assume: Option<bool>,
    /// At most this many branches are followed per packet.
    pub max_branches: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options { backend: crate::hook::Backend::Nft, assume: None, max_branches: 256 }
    }
}

/// How a table's traversal ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum End {
    /// Accepted: on to the next table or stage.
    Accept,
    /// Dropped by a rule or a policy (`None` for a policy).
    Drop(Option<RuleRef>),
    /// Rejected by a rule.
    Reject(RuleRef),
    /// Queued to userspace by a rule.
    Queue(RuleRef),
    /// A target the model cannot execute.
    Undecidable(RuleRef, String),
}

/// Where the walk is: the chain, the rule, the return stack, and the domain's own mark (the
/// dispatch lane of a run of rules, for regions).
#[derive(Clone, Debug)]
pub(crate) struct Cursor<L> {
    /// The chain.
    pub chain: ChainId,
    /// The rule's index (past the end: the chain's end).
    pub rule: usize,
    /// Return addresses.
    pub stack: Returns,
    /// The domain's mark.
    pub lane: L,
}

impl<L: Copy> Cursor<L> {
    fn at(&self, rule: usize, lane: L) -> Cursor<L> {
        Cursor { chain: self.chain, rule, stack: self.stack.clone(), lane }
    }
}

/// A walk's return addresses: a few deep, on the stack.
pub(crate) type Returns = smallvec::SmallVec<[(ChainId, usize); 4]>;

/// Where a state goes before a rule is tested (the domain's shortcuts).
pub(crate) enum Enter<S, L> {
    /// On (the state as the domain left it), at this rule and lane.
    At(usize, L),
    /// Split: each part at its rule and lane (the state itself is done with).
    Split(Vec<(S, usize, L)>),
    /// Nothing more to learn about these packets (a diff's packets that can no longer meet a
    /// difference).
    Gone,
}

/// What testing a rule on a state gives.
pub(crate) enum Tested<S> {
    /// The rule does not match (the state as the domain left it).
    Miss,
    /// The state may match, with what the rest of the rule answers.
    Hit(Eval),
    /// The state (as the domain left it) may match as `Hit`; these other packets do not.
    Both(S, Eval),
    /// Nothing is left of the state.
    Gone,
}

/// The rule positions as `RuleRef`s.
pub(crate) fn rule_ref<'a, D: Domain<'a>>(d: &D, table: &'a Table, chain: ChainId, rule: usize) -> RuleRef {
    RuleRef { table: table.name, chain: d.chain_name(table, chain), rule: rule.saturating_add(1) as u32 }
}

type Addr<'a, D> = <<D as Domain<'a>>::State as Flow>::Addr;

/// Walks `table`'s built-in chain of `hook` for `st`; returns each branch's state and end.
pub(crate) fn walk<'a, D: Domain<'a>>(d: &mut D, table: &'a Table, hook: Hook, nat: &NatCtx<Addr<'a, D>>, st: D::State) -> Few<(D::State, End)> {
    let Some(start) = table.builtin(hook) else { return smallvec::smallvec![(st, End::Accept)] };
    // The states still to walk: the first outside the list, so that a walk without forks
    // allocates none.
    let mut first = Some((st, Cursor { chain: start, rule: 0, stack: Returns::new(), lane: D::Lane::default() }));
    let mut work = Vec::new();
    let mut done = Few::new();
    let mut budget = d.step_budget();
    'work: while let Some((mut st, mut cur)) = first.take().or_else(|| work.pop()) {
        let end = loop {
            if budget == 0 {
                break End::Undecidable(rule_ref(d, table, cur.chain, cur.rule), "step budget exhausted".into());
            }
            budget -= 1;
            match d.enter(table, hook, &cur, &mut st) {
                Enter::At(rule, lane) => {
                    cur.rule = rule;
                    cur.lane = lane;
                }
                Enter::Split(parts) => {
                    for (s, rule, lane) in parts {
                        work.push((s, cur.at(rule, lane)));
                    }
                    continue 'work;
                }
                Enter::Gone => continue 'work,
            }
            let chain = &table[cur.chain];
            let Some(rule) = chain.rules.get(cur.rule) else {
                // End of chain: return to the caller, or the built-in policy.
                let n = chain.rules.len() as u32 + 1;
                match cur.stack.pop() {
                    Some((c, r)) if chain.hook.is_none() => {
                        d.record(&mut st, table, hook, cur.chain, StepKind::Return, n);
                        cur.chain = c;
                        cur.rule = r;
                        continue;
                    }
                    _ => {
                        if chain.hook.is_none() {
                            d.record(&mut st, table, hook, cur.chain, StepKind::Return, n);
                        }
                        let builtin = table.builtin(hook).unwrap_or(cur.chain);
                        d.record(&mut st, table, hook, builtin, StepKind::Policy, table[builtin].rules.len() as u32 + 1);
                        break match table[builtin].policy {
                            Policy::Accept => End::Accept,
                            Policy::Drop => End::Drop(None),
                        };
                    }
                }
            };
            let verdict = match d.test_rule(table, hook, &cur, rule, &mut st) {
                Tested::Miss => {
                    cur.rule += 1;
                    continue;
                }
                Tested::Hit(v) => v,
                Tested::Both(miss, v) => {
                    work.push((miss, cur.at(cur.rule + 1, cur.lane)));
                    v
                }
                Tested::Gone => continue 'work,
            };
            let matched = match verdict {
                Eval::Match => true,
                Eval::NoMatch => false,
                Eval::Chance(p) => {
                    let here = rule_ref(d, table, cur.chain, cur.rule);
                    if d.fork(&mut st) {
                        let mut other = st.clone();
                        other.scale(1.0 - p);
                        other.assume(Assumption { rule: here.clone(), matched: false, reason: Why::Chance(p) });
                        work.push((other, cur.at(cur.rule + 1, cur.lane)));
                    }
                    st.scale(p);
                    st.assume(Assumption { rule: here, matched: true, reason: Why::Chance(p) });
                    true
                }
                Eval::Unknown(reason) => {
                    let here = rule_ref(d, table, cur.chain, cur.rule);
                    match d.opts().assume {
                        Some(m) => {
                            st.assume(Assumption { rule: here, matched: m, reason: Why::Unknown(reason) });
                            m
                        }
                        None => {
                            if d.fork(&mut st) {
                                let mut other = st.clone();
                                other.assume(Assumption { rule: here.clone(), matched: false, reason: Why::Unknown(reason.clone()) });
                                work.push((other, cur.at(cur.rule + 1, cur.lane)));
                            }
                            st.assume(Assumption { rule: here, matched: true, reason: Why::Unknown(reason) });
                            true
                        }
                    }
                }
            };
            if !matched {
                cur.rule += 1;
                continue;
            }
            d.record(&mut st, table, hook, cur.chain, StepKind::Rule, cur.rule as u32 + 1);
            match &rule.target {
                Target::None => cur.rule += 1,
                Target::Accept => break End::Accept,
                Target::Drop => break End::Drop(Some(rule_ref(d, table, cur.chain, cur.rule))),
                Target::Queue => break End::Queue(rule_ref(d, table, cur.chain, cur.rule)),
                Target::Return => match cur.stack.pop() {
                    Some((c, r)) if table[cur.chain].hook.is_none() => {
                        cur.chain = c;
                        cur.rule = r;
                    }
                    _ => {
                        // RETURN with nothing to return to: the built-in chain's policy.
                        cur.rule = usize::MAX;
                        cur.chain = table.builtin(hook).unwrap_or(cur.chain);
                        cur.stack.clear();
                    }
                },
                Target::Jump(c) => {
                    cur.stack.push((cur.chain, cur.rule + 1));
                    cur.chain = *c;
                    cur.rule = 0;
                }
                Target::Goto(c) => {
                    cur.chain = *c;
                    cur.rule = 0;
                }
                Target::Unreadable(u) => break End::Undecidable(rule_ref(d, table, cur.chain, cur.rule), format!("unreadable rule: {}", u.reason)),
                Target::Ext(t) => {
                    let here = rule_ref(d, table, cur.chain, cur.rule);
                    match crate::targets::effect::apply(d, t, st, hook, nat, &here) {
                        Applied::One(s, None) => {
                            st = s;
                            cur.rule += 1;
                        }
                        Applied::One(s, Some(end)) => {
                            st = s;
                            break end;
                        }
                        Applied::Many(mut parts) => {
                            // The first part continues here; the others are queued.
                            if parts.is_empty() {
                                continue 'work;
                            }
                            let (first, effect) = parts.remove(0);
                            for (s, e) in parts {
                                match e {
                                    None => work.push((s, cur.at(cur.rule + 1, cur.lane))),
                                    Some(end) => done.push((s, end)),
                                }
                            }
                            st = first;
                            match effect {
                                None => cur.rule += 1,
                                Some(end) => break end,
                            }
                        }
                    }
                }
            }
        };
        done.push((st, end));
    }
    done.reverse();
    done
}

/// True when the rule's base match (`ip_packet_match`) fails for a packet; every test there is
/// certain.
#[inline]
pub(crate) fn base_fails(rule: &Rule, pkt: &crate::packet::Packet) -> bool {
    let fails = |cond: bool, negated: bool| cond == negated;
    rule.dst.as_ref().is_some_and(|a| fails(a.value.contains(pkt.dst), a.negated))
        || rule.src.as_ref().is_some_and(|a| fails(a.value.contains(pkt.src), a.negated))
        || rule.proto.is_some_and(|p| fails(pkt.proto == p.value.0, p.negated))
        || rule.in_iface().is_some_and(|i| fails(i.value.matches(pkt.in_iface.as_deref().unwrap_or("")), i.negated))
        || rule.out_iface().is_some_and(|i| fails(i.value.matches(pkt.out_iface.as_deref().unwrap_or("")), i.negated))
        // Simulated packets are never fragments.
        || rule.fragment.is_some_and(|inv| fails(false, inv))
}

/// Evaluates a rule's base match and its matches, in order, for one packet.
pub fn rule_eval(rule: &Rule, pkt: &crate::packet::Packet, cx: &crate::matches::EvalCtx<'_>) -> Eval {
    if base_fails(rule, pkt) {
        return Eval::NoMatch;
    }
    let mut acc = Eval::Match;
    for m in &rule.matches {
        acc = acc.and(m.eval(pkt, cx));
        if acc == Eval::NoMatch {
            return acc;
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::Why;

    /// The short way of printing a chance prints what `{:.6}` prints: for the probabilities
    /// kube-proxy writes (1/n), for ties and near-ties, and for random values.
    #[test]
    fn a_chance_prints_as_six_places_do() {
        let mut values: Vec<f64> = (1..=2000).map(|n| 1.0 / n as f64).collect();
        values.extend([0.0, 1.0, 0.5, 0.0000005, 0.0000015, 0.1234565, 0.9999995, 0.99999949999, 0.12345650000001, f64::MIN_POSITIVE]);
        values.extend((1..=100_000u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64));
        values.extend((0..=20_000u64).map(|i| (i as f64 + 0.5) / 1e6));
        for p in values {
            assert_eq!(Why::Chance(p).to_string(), format!("matches with probability {p:.6}"), "{p:e}");
        }
    }
}
