//! Connection tracking as far as rules see it: whether it is on at all (`nf_ct_netns_get` is
//! called by the extensions that need it), the NAT binding a new connection gets in the nat
//! chains (`nf_nat_setup_info`), and the conntrack entry the conntrack match inspects.

use std::net::IpAddr;

use serde::Serialize;

use crate::matches::Match;
use crate::matches::eval::{Conn, CtTuple, ct_status};
use crate::packet::Packet;
use crate::ruleset::{Ruleset, Target};
use crate::targets::TargetExt;

/// True when some loaded rule switches connection tracking on: a NAT target, a conntrack-based
/// match or target. Without it the nat chains are never traversed (the kernel registers the
/// nat hooks only with conntrack).
pub(crate) fn conntrack_on(ruleset: &Ruleset) -> bool {
    ruleset.tables.iter().flat_map(|t| t.chains()).flat_map(|c| &c.rules).any(|r| {
        r.matches.iter().any(|m| {
            matches!(m, Match::Conntrack(_) | Match::State(_) | Match::Connmark(_))
                || (m.is_opaque() && matches!(m.name(), "helper" | "connbytes" | "connlabel" | "connlimit" | "cluster"))
        }) || matches!(
            &r.target,
            Target::Ext(
                TargetExt::Dnat(_)
                    | TargetExt::Snat(_)
                    | TargetExt::Masquerade(_)
                    | TargetExt::Redirect(_)
                    | TargetExt::Netmap(_)
                    | TargetExt::Connmark(_)
                    | TargetExt::Ct(_)
                    | TargetExt::Notrack(_)
            )
        )
    })
}

/// The NAT a new connection got: new destination and source (address, port).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct NatBinding {
    /// Destination after DNAT / REDIRECT.
    pub dnat: Option<(IpAddr, u16)>,
    /// Source after SNAT / MASQUERADE.
    pub snat: Option<(IpAddr, u16)>,
    /// A note on choices the kernel makes at random (port or address ranges).
    pub note: Option<String>,
    /// The entry is confirmed (`IPS_CONFIRMED`): the packet left POSTROUTING and came back in on
    /// lo, carrying the entry `ipv4_confirm` inserted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub confirmed: bool,
}

/// The packet as it was first seen, for SO_ORIGINAL_DST and the conntrack match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Original {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

impl Original {
    /// The tuple of `pkt`.
    pub(crate) fn of(pkt: &Packet) -> Original {
        Original { src: pkt.src, dst: pkt.dst, sport: pkt.sport, dport: pkt.dport }
    }
}

/// The conntrack entry of a packet: original tuple, reply tuple after NAT, status.
pub(crate) fn conn_of(orig: &Original, pkt: &Packet, nat: &NatBinding) -> Conn {
    let mut status = 0;
    if nat.dnat.is_some() {
        status |= ct_status::DST_NAT;
    }
    if nat.snat.is_some() {
        status |= ct_status::SRC_NAT;
    }
    if nat.confirmed {
        status |= ct_status::CONFIRMED;
    }
    match pkt.ct_state {
        crate::packet::CtState::Established => status |= ct_status::CONFIRMED | ct_status::SEEN_REPLY | ct_status::ASSURED,
        crate::packet::CtState::Related => status |= ct_status::CONFIRMED | ct_status::EXPECTED,
        _ => {}
    }
    let (rdst, rdport) = nat.snat.unwrap_or((orig.src, orig.sport));
    let (rsrc, rsport) = nat.dnat.unwrap_or((orig.dst, orig.dport));
    Conn {
        orig: CtTuple { src: orig.src, dst: orig.dst, sport: orig.sport, dport: orig.dport },
        reply: CtTuple { src: rsrc, dst: rdst, sport: rsport, dport: rdport },
        status,
        original_dir: true,
    }
}
