//! The walk through one table's chains at one hook, as `ipt_do_table` does it: rules in order,
//! a jump pushes a return address, `-g` does not, RETURN (or the end of a user chain) pops,
//! RETURN or the end of a built-in chain applies its policy. Matches that depend on chance or on
//! what cannot be known fork the walk: every branch is followed.

use std::net::IpAddr;

use serde::Serialize;

use crate::conntrack::{NatBinding, Original, conn_of};
use crate::host::Host;
use crate::matches::{Eval, EvalCtx};
use crate::packet::{CtState, Packet};
use crate::ruleset::{ChainId, Hook, Policy, Rule, Table, Target};
use crate::targets::TargetExt;
use crate::trace::{RuleRef, Step, StepKind};

/// An assumption made about a rule whose outcome could not be known.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assumption {
    /// The rule.
    pub rule: RuleRef,
    /// Whether it was taken to match.
    pub matched: bool,
    /// Why it could not be known (or the probability, for `statistic`).
    pub reason: String,
}

/// One line of evolution of a packet: what it looks like now and what happened to it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct State {
    /// The packet as it is now.
    pub pkt: Packet,
    /// The packet as first seen.
    pub orig: Original,
    /// Steps so far.
    pub steps: Vec<Step>,
    /// NAT set up for the connection.
    pub nat: NatBinding,
    /// Probability of this branch (product of `statistic` chances taken).
    pub probability: f64,
    /// Rules whose outcome was assumed.
    pub assumptions: Vec<Assumption>,
    /// Socket assigned by TPROXY (address, port).
    pub tproxy: Option<(IpAddr, u16)>,
}

impl State {
    /// The starting state of `pkt`.
    pub fn new(pkt: Packet) -> State {
        State { orig: Original::of(&pkt), pkt, steps: Vec::new(), nat: NatBinding::default(), probability: 1.0, assumptions: Vec::new(), tproxy: None }
    }
}

/// How a table's traversal ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum TableEnd {
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

/// Options of a simulation.
#[derive(Clone, Debug, Serialize)]
pub struct Options {
    /// The backend, for the order of tables at INPUT.
    pub backend: crate::hook::Backend,
    /// For a rule whose outcome cannot be known: assume it matches (`Some(true)`), does not
    /// (`Some(false)`), or follow both (`None`).
    pub assume: Option<bool>,
    /// At most this many branches are followed.
    pub max_branches: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options { backend: crate::hook::Backend::Nft, assume: None, max_branches: 256 }
    }
}

/// What NAT targets need to know about where the packet is.
#[derive(Clone, Copy, Debug, Default)]
pub struct NatCtx {
    /// Where REDIRECT sends the packet: the loopback address for locally generated packets, the
    /// primary address of the input interface for arriving ones.
    pub redirect_to: Option<IpAddr>,
    /// The source MASQUERADE uses: the output route's preferred source.
    pub masquerade_src: Option<IpAddr>,
}

/// The whole environment of a walk.
#[derive(Clone, Copy, Debug)]
pub struct Env<'a> {
    /// The host.
    pub host: &'a Host,
    /// The hook.
    pub hook: Hook,
    /// NAT context.
    pub nat: NatCtx,
    /// Whether conntrack is on.
    pub conntrack: bool,
    /// Options.
    pub opts: &'a Options,
}

struct Cursor {
    chain: ChainId,
    rule: usize,
    stack: Vec<(ChainId, usize)>,
}

/// Walks `table`'s built-in chain of `env.hook` for `state`; returns each branch's state and end.
pub fn walk(table: &Table, env: &Env<'_>, state: State) -> Vec<(State, TableEnd)> {
    let Some(start) = table.builtin(env.hook) else { return vec![(state, TableEnd::Accept)] };
    let mut work = Vec::with_capacity(4);
    work.push((state, Cursor { chain: start, rule: 0, stack: Vec::new() }));
    let mut done = Vec::with_capacity(4);
    let mut budget = 1_000_000usize;
    while let Some((mut st, mut cur)) = work.pop() {
        // The conntrack entry the matches see; it changes only when a target rewrites the packet.
        let mut conn = None;
        let mut conn_stale = true;
        let end = loop {
            if budget == 0 {
                break TableEnd::Undecidable(rule_ref(table, cur.chain, cur.rule), "step budget exhausted".into());
            }
            budget -= 1;
            let chain = &table[cur.chain];
            // Fast path: skip the rules whose base match fails, the bulk of a long chain.
            while chain.rules.get(cur.rule).is_some_and(|r| base_fails(r, &st.pkt)) {
                cur.rule += 1;
            }
            let Some(rule) = chain.rules.get(cur.rule) else {
                // End of chain: return to the caller, or the built-in policy.
                let n = chain.rules.len() as u32 + 1;
                match cur.stack.pop() {
                    Some((c, r)) if chain.hook.is_none() => {
                        st.steps.push(step(table, env, cur.chain, StepKind::Return, n));
                        cur.chain = c;
                        cur.rule = r;
                        continue;
                    }
                    _ => {
                        if chain.hook.is_none() {
                            st.steps.push(step(table, env, cur.chain, StepKind::Return, n));
                        }
                        let builtin = table.builtin(env.hook).unwrap_or(cur.chain);
                        let n = table[builtin].rules.len() as u32 + 1;
                        st.steps.push(step(table, env, builtin, StepKind::Policy, n));
                        break match table[builtin].policy {
                            Policy::Accept => TableEnd::Accept,
                            Policy::Drop => TableEnd::Drop(None),
                        };
                    }
                }
            };
            if conn_stale {
                conn = (env.conntrack && !matches!(st.pkt.ct_state, CtState::Untracked | CtState::Invalid)).then(|| conn_of(&st.orig, &st.pkt, &st.nat));
                conn_stale = false;
            }
            let cx = EvalCtx { host: env.host, hook: env.hook, table: table.name, family: table.family, conn: conn.as_ref() };
            let verdict = rule_eval(rule, &st.pkt, &cx);
            if verdict == Eval::NoMatch {
                cur.rule += 1;
                continue;
            }
            let here = rule_ref(table, cur.chain, cur.rule);
            let matched = match verdict {
                Eval::Match => true,
                Eval::NoMatch => false,
                Eval::Chance(p) => {
                    if work.len() + done.len() < env.opts.max_branches {
                        let mut other = st.clone();
                        other.probability *= 1.0 - p;
                        other.assumptions.push(Assumption { rule: here.clone(), matched: false, reason: format!("matches with probability {p:.6}") });
                        work.push((other, Cursor { chain: cur.chain, rule: cur.rule + 1, stack: cur.stack.clone() }));
                    }
                    st.probability *= p;
                    st.assumptions.push(Assumption { rule: here.clone(), matched: true, reason: format!("matches with probability {p:.6}") });
                    true
                }
                Eval::Unknown(reason) => match env.opts.assume {
                    Some(m) => {
                        st.assumptions.push(Assumption { rule: here.clone(), matched: m, reason });
                        m
                    }
                    None => {
                        if work.len() + done.len() < env.opts.max_branches {
                            let mut other = st.clone();
                            other.assumptions.push(Assumption { rule: here.clone(), matched: false, reason: reason.clone() });
                            work.push((other, Cursor { chain: cur.chain, rule: cur.rule + 1, stack: cur.stack.clone() }));
                        }
                        st.assumptions.push(Assumption { rule: here.clone(), matched: true, reason });
                        true
                    }
                },
            };
            if !matched {
                cur.rule += 1;
                continue;
            }
            st.steps.push(step(table, env, cur.chain, StepKind::Rule, cur.rule as u32 + 1));
            match &rule.target {
                Target::None => cur.rule += 1,
                Target::Accept => break TableEnd::Accept,
                Target::Drop => break TableEnd::Drop(Some(here)),
                Target::Queue => break TableEnd::Queue(here),
                Target::Return => match cur.stack.pop() {
                    Some((c, r)) if table[cur.chain].hook.is_none() => {
                        cur.chain = c;
                        cur.rule = r;
                    }
                    _ => {
                        // RETURN with nothing to return to: the built-in chain's policy.
                        cur.rule = usize::MAX;
                        cur.chain = table.builtin(env.hook).unwrap_or(cur.chain);
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
                Target::Unreadable(u) => break TableEnd::Undecidable(here, format!("unreadable rule: {}", u.reason)),
                Target::Ext(t) => match apply_target(t, &mut st, env) {
                    Effect::Continue => {
                        conn_stale = true;
                        cur.rule += 1;
                    }
                    Effect::End(e) => break e.unwrap_or_else(|| TableEnd::Undecidable(here.clone(), "target".into())).with_rule(here),
                },
            }
        };
        done.push((st, end));
    }
    done.reverse();
    done
}

impl TableEnd {
    fn with_rule(self, r: RuleRef) -> TableEnd {
        match self {
            TableEnd::Reject(_) => TableEnd::Reject(r),
            TableEnd::Queue(_) => TableEnd::Queue(r),
            TableEnd::Drop(_) => TableEnd::Drop(Some(r)),
            TableEnd::Undecidable(_, why) => TableEnd::Undecidable(r, why),
            TableEnd::Accept => TableEnd::Accept,
        }
    }
}

fn step(table: &Table, env: &Env<'_>, chain: ChainId, kind: StepKind, rule: u32) -> Step {
    Step { host: env.host.name.clone(), hook: env.hook, table: table.name, chain: table[chain].name.to_string(), kind, rule }
}

fn rule_ref(table: &Table, chain: ChainId, rule: usize) -> RuleRef {
    RuleRef { table: table.name, chain: table[chain].name.to_string(), rule: rule.saturating_add(1) as u32 }
}

/// True when the rule's base match (`ip_packet_match`) fails; every test there is certain.
#[inline]
fn base_fails(rule: &Rule, pkt: &Packet) -> bool {
    let fails = |cond: bool, negated: bool| cond == negated;
    rule.dst.as_ref().is_some_and(|a| fails(a.value.contains(pkt.dst), a.negated))
        || rule.src.as_ref().is_some_and(|a| fails(a.value.contains(pkt.src), a.negated))
        || rule.proto.is_some_and(|p| fails(pkt.proto == p.value.0, p.negated))
        || rule.in_iface().is_some_and(|i| fails(i.value.matches(pkt.in_iface.as_deref().unwrap_or("")), i.negated))
        || rule.out_iface().is_some_and(|i| fails(i.value.matches(pkt.out_iface.as_deref().unwrap_or("")), i.negated))
        // Simulated packets are never fragments.
        || rule.fragment.is_some_and(|inv| fails(false, inv))
}

/// Evaluates a rule's base match and its matches, in order.
pub fn rule_eval(rule: &Rule, pkt: &Packet, cx: &EvalCtx<'_>) -> Eval {
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

enum Effect {
    Continue,
    End(Option<TableEnd>),
}

/// Applies a target extension to the packet (`xt_target.target`): a verdict or `XT_CONTINUE`.
fn apply_target(t: &TargetExt, st: &mut State, env: &Env<'_>) -> Effect {
    let pkt = &mut st.pkt;
    match t {
        TargetExt::Mark(m) => {
            pkt.mark = m.apply(pkt.mark);
            Effect::Continue
        }
        TargetExt::Connmark(c) => {
            // `connmark_tg_shift`: without a conntrack entry (INVALID, UNTRACKED, or any packet
            // in raw, which runs before conntrack) the target does nothing.
            if crate::matches::conntrack::state_bit(pkt.ct_state).1 {
                let (nf, ct) = c.apply(pkt.mark, pkt.ct_mark);
                pkt.mark = nf;
                pkt.ct_mark = ct;
            }
            Effect::Continue
        }
        TargetExt::Tos(x) => {
            pkt.tos = x.apply(pkt.tos);
            Effect::Continue
        }
        TargetExt::Dscp(x) => {
            pkt.tos = x.apply(pkt.tos);
            Effect::Continue
        }
        TargetExt::Ttl(x) => {
            if let Some(a) = x.action {
                pkt.ttl = a.apply(pkt.ttl);
            }
            Effect::Continue
        }
        TargetExt::Hl(x) => {
            if let Some(a) = x.action {
                pkt.ttl = a.apply(pkt.ttl);
            }
            Effect::Continue
        }
        // Only a packet without a conntrack entry (INVALID in raw) becomes untracked; one looped
        // back on lo keeps the entry it got on the way out (`if (skb->_nfct != 0) return XT_CONTINUE`).
        TargetExt::Ct(c) => {
            if c.notrack && pkt.ct_state == CtState::Invalid {
                pkt.ct_state = CtState::Untracked;
            }
            Effect::Continue
        }
        TargetExt::Notrack(_) => {
            if pkt.ct_state == CtState::Invalid {
                pkt.ct_state = CtState::Untracked;
            }
            Effect::Continue
        }
        TargetExt::Log(_)
        | TargetExt::Nflog(_)
        | TargetExt::Ulog(_)
        | TargetExt::Trace(_)
        | TargetExt::Audit(_)
        | TargetExt::Checksum(_)
        | TargetExt::Tcpmss(_)
        | TargetExt::Set(_) => Effect::Continue,
        TargetExt::Reject(_) => Effect::End(Some(TableEnd::Reject(placeholder()))),
        TargetExt::Dnat(d) => {
            let Some(to) = d.to.as_deref() else { return Effect::Continue };
            let addr = to.addrs.map_or(pkt.dst, |a| a.first);
            let port = to.ports.map_or(pkt.dport, |p| p.lo);
            if to.addrs.is_some_and(|a| a.first != a.last) || to.ports.is_some_and(|p| p.lo != p.hi) {
                st.nat.note = Some("the kernel picks the address and port within the DNAT range; the first is shown".into());
            }
            set_dnat(st, addr, port);
            Effect::End(Some(TableEnd::Accept))
        }
        TargetExt::Redirect(r) => {
            let Some(addr) = env.nat.redirect_to else {
                return Effect::End(Some(TableEnd::Drop(None)));
            };
            let port = r.ports.map_or(pkt.dport, |p| p.lo);
            set_dnat(st, addr, port);
            Effect::End(Some(TableEnd::Accept))
        }
        TargetExt::Snat(s) => {
            let Some(to) = s.to.as_deref() else { return Effect::Continue };
            let addr = to.addrs.map_or(pkt.src, |a| a.first);
            let port = to.ports.map_or(pkt.sport, |p| if (p.lo..=p.hi).contains(&pkt.sport) { pkt.sport } else { p.lo });
            set_snat(st, addr, port);
            Effect::End(Some(TableEnd::Accept))
        }
        TargetExt::Masquerade(m) => {
            let Some(addr) = env.nat.masquerade_src else { return Effect::End(Some(TableEnd::Drop(None))) };
            let port = m.ports.map_or(pkt.sport, |p| if (p.lo..=p.hi).contains(&pkt.sport) { pkt.sport } else { p.lo });
            set_snat(st, addr, port);
            Effect::End(Some(TableEnd::Accept))
        }
        TargetExt::Netmap(n) => {
            let Some(to) = n.to else { return Effect::Continue };
            let map = |a: IpAddr| -> IpAddr {
                match (a, to) {
                    (IpAddr::V4(a), ipnet::IpNet::V4(to)) => {
                        let m = u32::from(to.netmask());
                        IpAddr::V4(((u32::from(a) & !m) | (u32::from(to.network()) & m)).into())
                    }
                    (IpAddr::V6(a), ipnet::IpNet::V6(to)) => {
                        let m = u128::from(to.netmask());
                        IpAddr::V6(((u128::from(a) & !m) | (u128::from(to.network()) & m)).into())
                    }
                    (a, _) => a,
                }
            };
            if matches!(env.hook, Hook::Prerouting | Hook::Output) {
                let (d, p) = (map(pkt.dst), pkt.dport);
                set_dnat(st, d, p);
            } else {
                let (s, p) = (map(pkt.src), pkt.sport);
                set_snat(st, s, p);
            }
            Effect::End(Some(TableEnd::Accept))
        }
        TargetExt::Tproxy(t) => {
            let addr = t.addr.filter(|a| !a.is_unspecified()).unwrap_or(pkt.dst);
            let port = t.port.filter(|p| *p != 0).unwrap_or(pkt.dport);
            match env.host.socket_for(pkt.proto, addr, port) {
                Some(_) => {
                    if let Some((v, m)) = t.mark {
                        pkt.mark = (pkt.mark & !m) ^ v;
                    }
                    st.tproxy = Some((addr, port));
                    Effect::End(Some(TableEnd::Accept))
                }
                None => Effect::End(Some(TableEnd::Drop(None))),
            }
        }
        TargetExt::Opaque(o) => Effect::End(Some(TableEnd::Undecidable(placeholder(), format!("target `{}` is not modelled", o.name)))),
    }
}

fn placeholder() -> RuleRef {
    RuleRef { table: crate::ruleset::TableName::Filter, chain: String::new(), rule: 0 }
}

fn set_dnat(st: &mut State, addr: IpAddr, port: u16) {
    st.nat.dnat = Some((addr, port));
    st.pkt.dst = addr;
    st.pkt.dport = port;
}

fn set_snat(st: &mut State, addr: IpAddr, port: u16) {
    st.nat.snat = Some((addr, port));
    st.pkt.src = addr;
    st.pkt.sport = port;
}
