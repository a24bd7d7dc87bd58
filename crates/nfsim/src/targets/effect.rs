//! What a target extension does to the packets it is applied to (`xt_target.target`): rewrite
//! fields and continue (`XT_CONTINUE`), or end the table with a verdict. Each target says it in
//! its own file as an [`Effect`], written once over the stack's [`Domain`] for one packet and for
//! regions of packets; this file holds the trait, the helpers the targets share and the dispatch.

use crate::stack::{Domain, Flow, NatCtx, Pred};
use crate::trace::RuleRef;
use crate::traverse::End;
use crate::xt::Hook;

use super::TargetExt;

/// What a target does to the states it is applied to: continue (`None`) or end the table.
pub(crate) enum Applied<S> {
    /// One state.
    One(S, Option<End>),
    /// Several parts, treated differently.
    Many(Vec<(S, Option<End>)>),
}

/// An address of domain `D`.
pub(crate) type Addr<'a, D> = <<D as Domain<'a>>::State as Flow>::Addr;

/// Where a target runs: the hook, what NAT targets need to know, and the rule.
pub(crate) struct Cx<'r, 'a, D: Domain<'a>> {
    /// The hook.
    pub hook: Hook,
    /// REDIRECT's and MASQUERADE's addresses here.
    pub nat: &'r NatCtx<Addr<'a, D>>,
    /// The rule whose target this is.
    pub here: &'r RuleRef,
}

impl<'a, D: Domain<'a>> Cx<'_, 'a, D> {
    /// The rule's effect cannot be known (`why`): the state ends there as undecidable.
    pub(crate) fn undecidable(&self, st: D::State, why: String) -> Applied<D::State> {
        Applied::One(st, Some(End::Undecidable(self.here.clone(), why)))
    }
}

/// What a target does to the packets: by default nothing, and the walk continues (LOG and the
/// other targets whose effects the model does not carry).
pub(crate) trait Effect {
    /// Applies the target to `st`.
    fn effect<'a, D: Domain<'a>>(&self, _d: &mut D, st: D::State, _cx: &Cx<'_, 'a, D>) -> Applied<D::State> {
        go(st)
    }
}

/// Applies target `t` (of rule `here`, at `hook`) to `st`.
pub(crate) fn apply<'a, D: Domain<'a>>(d: &mut D, t: &TargetExt, st: D::State, hook: Hook, nat: &NatCtx<Addr<'a, D>>, here: &RuleRef) -> Applied<D::State> {
    let cx = Cx { hook, nat, here };
    match t {
        TargetExt::Audit(x) => x.effect(d, st, &cx),
        TargetExt::Checksum(x) => x.effect(d, st, &cx),
        TargetExt::Connmark(x) => x.effect(d, st, &cx),
        TargetExt::Ct(x) => x.effect(d, st, &cx),
        TargetExt::Dnat(x) => x.effect(d, st, &cx),
        TargetExt::Dscp(x) => x.effect(d, st, &cx),
        TargetExt::Hl(x) => x.effect(d, st, &cx),
        TargetExt::Log(x) => x.effect(d, st, &cx),
        TargetExt::Mark(x) => x.effect(d, st, &cx),
        TargetExt::Masquerade(x) => x.effect(d, st, &cx),
        TargetExt::Netmap(x) => x.effect(d, st, &cx),
        TargetExt::Nflog(x) => x.effect(d, st, &cx),
        TargetExt::Notrack(x) => x.effect(d, st, &cx),
        TargetExt::Redirect(x) => x.effect(d, st, &cx),
        TargetExt::Reject(x) => x.effect(d, st, &cx),
        TargetExt::Set(x) => x.effect(d, st, &cx),
        TargetExt::Snat(x) => x.effect(d, st, &cx),
        TargetExt::Tcpmss(x) => x.effect(d, st, &cx),
        TargetExt::Tos(x) => x.effect(d, st, &cx),
        TargetExt::Tproxy(x) => x.effect(d, st, &cx),
        TargetExt::Trace(x) => x.effect(d, st, &cx),
        TargetExt::Ttl(x) => x.effect(d, st, &cx),
        TargetExt::Ulog(x) => x.effect(d, st, &cx),
        TargetExt::Opaque(o) => cx.undecidable(st, format!("target `{}` is not modelled", o.name)),
    }
}

/// The walk continues with `st`.
pub(crate) fn go<S>(st: S) -> Applied<S> {
    Applied::One(st, None)
}

/// `CT --notrack`, `NOTRACK`: a packet without a conntrack entry (INVALID in raw) becomes
/// untracked; one looped back on lo keeps the entry it got on the way out.
pub(crate) fn untrack<'a, D: Domain<'a>>(d: &mut D, st: D::State) -> Applied<D::State> {
    let (none, has) = d.split(st, Pred::NoEntry);
    let none = none.map(|mut s| {
        s.untrack();
        (s, None)
    });
    both(none, has.map(|s| (s, None)))
}

/// SNAT/MASQUERADE's port choice: the source port is kept when inside the range, else the
/// range's first port.
pub(crate) fn snat_ports<'a, D: Domain<'a>>(d: &mut D, st: D::State, addr: Addr<'a, D>, range: Option<(u16, u16)>) -> Applied<D::State> {
    let Some((lo, hi)) = range else {
        let mut st = st;
        let port = st.sport();
        st.snat(addr, port);
        return Applied::One(st, Some(End::Accept));
    };
    let (keep, change) = d.split(st, Pred::SportIn(lo, hi));
    let keep = keep.map(|mut s| {
        let port = s.sport();
        s.snat(addr, port);
        (s, Some(End::Accept))
    });
    let change = change.map(|mut s| {
        s.snat(addr, d.lift_port(lo));
        (s, Some(End::Accept))
    });
    both(keep, change)
}

/// The parts a split gave, each with its end.
pub(crate) fn both<S>(a: Option<(S, Option<End>)>, b: Option<(S, Option<End>)>) -> Applied<S> {
    match (a, b) {
        (Some((s, e)), None) | (None, Some((s, e))) => Applied::One(s, e),
        (Some(a), Some(b)) => Applied::Many(vec![a, b]),
        (None, None) => Applied::Many(Vec::new()),
    }
}

/// Any number of parts.
pub(crate) fn many<S>(mut parts: Vec<(S, Option<End>)>) -> Applied<S> {
    if parts.len() == 1 {
        let (s, e) = parts.pop().expect("one part");
        return Applied::One(s, e);
    }
    Applied::Many(parts)
}
