//! What a target extension does to the packets it is applied to (`xt_target.target`): rewrite
//! fields and continue (`XT_CONTINUE`), or end the table with a verdict. Written once over the
//! stack's [`Domain`], for one packet and for regions of packets.

use std::net::IpAddr;

use crate::stack::{Domain, Flow, NatCtx, Pred};
use crate::trace::RuleRef;
use crate::traverse::{Applied, End};
use crate::xt::Hook;

use super::TargetExt;

type Addr<'a, D> = <<D as Domain<'a>>::State as Flow>::Addr;

/// Applies target `t` (of rule `here`, at `hook`) to `st`.
pub(crate) fn apply<'a, D: Domain<'a>>(d: &mut D, t: &TargetExt, mut st: D::State, hook: Hook, nat: &NatCtx<Addr<'a, D>>, here: &RuleRef) -> Applied<D::State> {
    let undecidable = |st, why: String| Applied::One(st, Some(End::Undecidable(here.clone(), why)));
    let go = |st| Applied::One(st, None);
    match t {
        TargetExt::Mark(m) => match d.map_mark(&mut st, |x| m.apply(x)) {
            Ok(()) => go(st),
            Err(why) => undecidable(st, why),
        },
        TargetExt::Connmark(c) => {
            // `connmark_tg_shift`: without a conntrack entry (INVALID, UNTRACKED, or any packet in
            // raw, which runs before conntrack) the target does nothing.
            let (tracked, untracked) = d.split(st, Pred::Tracked);
            let tracked = tracked.map(|mut st| match d.map_marks(&mut st, |a, b| c.apply(a, b)) {
                Ok(()) => (st, None),
                Err(why) => (st, Some(End::Undecidable(here.clone(), why))),
            });
            both(tracked, untracked.map(|s| (s, None)))
        }
        TargetExt::Tos(x) => {
            let tos = st.tos_mut();
            *tos = x.apply(*tos);
            go(st)
        }
        TargetExt::Dscp(x) => {
            let tos = st.tos_mut();
            *tos = x.apply(*tos);
            go(st)
        }
        TargetExt::Ttl(x) => {
            if let Some(a) = x.action {
                let ttl = st.ttl_mut();
                *ttl = a.apply(*ttl);
            }
            go(st)
        }
        TargetExt::Hl(x) => {
            if let Some(a) = x.action {
                let ttl = st.ttl_mut();
                *ttl = a.apply(*ttl);
            }
            go(st)
        }
        TargetExt::Ct(c) if !c.notrack => go(st),
        // Only a packet without a conntrack entry (INVALID in raw) becomes untracked; one looped
        // back on lo keeps the entry it got on the way out (`if (skb->_nfct != 0) return XT_CONTINUE`).
        TargetExt::Ct(_) | TargetExt::Notrack(_) => {
            let (none, has) = d.split(st, Pred::NoEntry);
            let none = none.map(|mut s| {
                s.untrack();
                (s, None)
            });
            both(none, has.map(|s| (s, None)))
        }
        TargetExt::Log(_)
        | TargetExt::Nflog(_)
        | TargetExt::Ulog(_)
        | TargetExt::Trace(_)
        | TargetExt::Audit(_)
        | TargetExt::Checksum(_)
        | TargetExt::Tcpmss(_)
        | TargetExt::Set(_) => go(st),
        TargetExt::Reject(_) => Applied::One(st, Some(End::Reject(here.clone()))),
        TargetExt::Dnat(x) => {
            let Some(to) = x.to.as_deref() else { return go(st) };
            let addr = to.addrs.map_or(st.dst(), |a| d.lift(a.first));
            let port = to.ports.map_or(st.dport(), |p| d.lift_port(p.lo));
            if to.addrs.is_some_and(|a| a.first != a.last) || to.ports.is_some_and(|p| p.lo != p.hi) {
                st.note_range();
            }
            st.dnat(addr, port);
            Applied::One(st, Some(End::Accept))
        }
        TargetExt::Redirect(r) => {
            let Some(addr) = nat.redirect_to else { return Applied::One(st, Some(End::Drop(Some(here.clone())))) };
            let port = r.ports.map_or(st.dport(), |p| d.lift_port(p.lo));
            st.dnat(addr, port);
            Applied::One(st, Some(End::Accept))
        }
        TargetExt::Snat(s) => {
            let Some(to) = s.to.as_deref() else { return go(st) };
            let addr = to.addrs.map_or(st.src(), |a| d.lift(a.first));
            snat_ports(d, st, addr, to.ports.map(|p| (p.lo, p.hi)))
        }
        TargetExt::Masquerade(m) => {
            let Some(addr) = nat.masquerade_src else { return Applied::One(st, Some(End::Drop(Some(here.clone())))) };
            snat_ports(d, st, addr, m.ports.map(|p| (p.lo, p.hi)))
        }
        TargetExt::Netmap(n) => {
            let Some(to) = n.to else { return go(st) };
            let dst_side = matches!(hook, Hook::Prerouting | Hook::Output);
            let Some(a) = d.one_addr(&st, dst_side) else {
                return undecidable(st, format!("NETMAP over a range of addresses {}", crate::reason::NOT_ANALYSED));
            };
            let mapped = d.lift(netmap(a, to));
            if dst_side {
                let port = st.dport();
                st.dnat(mapped, port);
            } else {
                let port = st.sport();
                st.snat(mapped, port);
            }
            Applied::One(st, Some(End::Accept))
        }
        TargetExt::Tproxy(tp) => {
            // `nf_tproxy_laddr4`/`6`: without `--on-ip`, the primary address of the input
            // interface (what REDIRECT would pick), else the packet's destination.
            let addr = tp.addr.filter(|a| !a.is_unspecified()).map_or(nat.redirect_to.unwrap_or(st.dst()), |a| d.lift(a));
            let port = tp.port.filter(|p| *p != 0).map_or(st.dport(), |p| d.lift_port(p));
            let mut parts: Vec<(D::State, Option<End>)> = Vec::new();
            for (mut s, sock) in d.socket(st, (addr, port)) {
                // `tproxy_tg4`: only a transparent socket is assigned (`nf_tproxy_sk_is_transparent`);
                // without one the packet is dropped.
                if !sock.is_some_and(|i| d.host().sockets[i].transparent) {
                    parts.push((s, Some(End::Drop(Some(here.clone())))));
                    continue;
                }
                if let Some((v, m)) = tp.mark
                    && let Err(why) = d.map_mark(&mut s, |x| (x & !m) ^ v)
                {
                    parts.push((s, Some(End::Undecidable(here.clone(), why))));
                    continue;
                }
                s.set_tproxy((addr, port));
                parts.push((s, Some(End::Accept)));
            }
            many(parts)
        }
        TargetExt::Opaque(o) => undecidable(st, format!("target `{}` is not modelled", o.name)),
    }
}

/// NETMAP's address: the network part from `to`, the host part kept.
fn netmap(a: IpAddr, to: ipnet::IpNet) -> IpAddr {
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
}

/// SNAT/MASQUERADE's port choice: the source port is kept when inside the range, else the
/// range's first port.
fn snat_ports<'a, D: Domain<'a>>(d: &mut D, st: D::State, addr: Addr<'a, D>, range: Option<(u16, u16)>) -> Applied<D::State> {
    let Some((lo, hi)) = range else {
        let mut st = st;
        let port = st.sport();
        st.snat(addr, port);
        return Applied::One(st, Some(End::Accept));
    };
    let (keep, change) = d.split(st, crate::stack::Pred::SportIn(lo, hi));
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

fn both<S>(a: Option<(S, Option<End>)>, b: Option<(S, Option<End>)>) -> Applied<S> {
    match (a, b) {
        (Some((s, e)), None) | (None, Some((s, e))) => Applied::One(s, e),
        (Some(a), Some(b)) => Applied::Many(vec![a, b]),
        (None, None) => Applied::Many(Vec::new()),
    }
}

fn many<S>(mut parts: Vec<(S, Option<End>)>) -> Applied<S> {
    if parts.len() == 1 {
        let (s, e) = parts.pop().expect("one part");
        return Applied::One(s, e);
    }
    Applied::Many(parts)
}
