//! Match extensions (`-m NAME`), one file per extension, named as the kernel's `xt_*.c` files.

pub mod addrtype;
pub mod comment;
pub mod connmark;
pub mod conntrack;
pub mod dscp;
pub mod eval;
pub mod hl;
pub mod icmp;
pub mod icmp6;
pub mod iprange;
pub mod length;
pub mod limit;
pub mod mac;
pub mod mark;
pub mod multiport;
pub mod owner;
pub mod physdev;
pub mod pkttype;
pub mod recent;
pub mod sctp;
pub mod set;
pub mod state;
pub mod statistic;
pub mod string;
pub mod tcp;
pub mod time;
pub mod tos;
pub mod ttl;
pub mod udp;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond};
use crate::xt::ext::extension_enum;

extension_enum! {
    /// One `-m` match of a rule.
    pub enum Match {
        Addrtype(addrtype::Addrtype) = "addrtype",
        Comment(comment::Comment) = "comment",
        Connmark(connmark::Connmark) = "connmark",
        Conntrack(conntrack::Conntrack) = "conntrack",
        Dscp(dscp::Dscp) = "dscp",
        Hl(hl::Hl) = "hl",
        Icmp(icmp::Icmp) = "icmp",
        Icmp6(icmp6::Icmp6) = "icmp6" | "icmpv6" | "ipv6-icmp",
        Iprange(iprange::Iprange) = "iprange",
        Length(length::Length) = "length",
        Limit(limit::Limit) = "limit",
        Mac(mac::Mac) = "mac",
        Mark(mark::Mark) = "mark",
        Multiport(Box<multiport::Multiport>) = "multiport",
        Owner(owner::Owner) = "owner",
        Physdev(Box<physdev::Physdev>) = "physdev",
        Pkttype(pkttype::Pkttype) = "pkttype",
        Recent(recent::Recent) = "recent",
        Sctp(sctp::Sctp) = "sctp",
        Set(Box<set::Set>) = "set",
        State(state::State) = "state",
        Statistic(statistic::Statistic) = "statistic",
        String(string::StringMatch) = "string",
        Tcp(tcp::Tcp) = "tcp",
        Time(time::Time) = "time",
        Tos(tos::Tos) = "tos",
        Ttl(ttl::Ttl) = "ttl",
        Udp(udp::Udp) = "udp",
    }
    dispatch Evaluate {
        /// Decides whether `pkt` matches (an opaque extension is always [`Eval::Unknown`]).
        fn eval(&self, pkt: &crate::packet::Packet, cx: &EvalCtx<'_>) -> Eval;
        Opaque(o) => Eval::Unknown(format!("`-m {}` is not modelled", o.name))
    }
    dispatch Cond {
        /// The packets the match accepts over the whole packet space
        /// ([`match_cond`](crate::classes::cond::match_cond)); an opaque extension is left to the
        /// concrete eval.
        fn cond(&self, cx: &CondCtx<'_>) -> MatchCond;
        Opaque(_) => MatchCond::Concrete(Fields::NONE)
    }
}

/// Every match extension iptables 1.8 ships (the typed ones and those kept verbatim).
pub const KNOWN: &[&str] = &[
    "addrtype",
    "ah",
    "bpf",
    "cgroup",
    "cluster",
    "comment",
    "connbytes",
    "connlabel",
    "connlimit",
    "connmark",
    "conntrack",
    "cpu",
    "dccp",
    "devgroup",
    "dscp",
    "dst",
    "ecn",
    "esp",
    "eui64",
    "frag",
    "hashlimit",
    "hbh",
    "helper",
    "hl",
    "icmp",
    "icmp6",
    "icmpv6",
    "ipv6-icmp",
    "iprange",
    "ipv6header",
    "ipvs",
    "length",
    "limit",
    "mac",
    "mark",
    "mh",
    "multiport",
    "nfacct",
    "osf",
    "owner",
    "physdev",
    "pkttype",
    "policy",
    "quota",
    "rateest",
    "realm",
    "recent",
    "rpfilter",
    "rt",
    "sctp",
    "set",
    "socket",
    "srh",
    "state",
    "statistic",
    "string",
    "tcp",
    "tcpmss",
    "time",
    "tos",
    "ttl",
    "u32",
    "udp",
    "udplite",
];

pub use eval::{Eval, EvalCtx, Evaluate};
