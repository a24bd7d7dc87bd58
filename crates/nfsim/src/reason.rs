//! Why a packet did not arrive: the typed reasons both engines give (a policy, a rule, or a check
//! of the stack such as the route lookup of `ip_route_input_slow` or the SYN-ACK route of
//! `inet_csk_route_req`); `Display` gives the sentence users read.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::ruleset::{Family, Hook, TableName};
use crate::trace::RuleRef;

/// Why a packet did not arrive where it was sent, or how a rule ended its way.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// A locally generated packet has no route (`ENETUNREACH`).
    NoRoute,
    /// The source address is not local and `ip_nonlocal_bind` is off (`EADDRNOTAVAIL`).
    SourceNotLocal,
    /// An IPv4 loopback source on a route that leaves the host (`__mkroute_output`: `EINVAL`).
    LoopbackSourceLeaves,
    /// The route lookup after an OUTPUT table changed the packet fails.
    RerouteFails {
        /// The OUTPUT table after which the packet is routed again.
        after: TableName,
        /// Why the new lookup fails.
        cause: RerouteCause,
    },
    /// IPv6's `::1` arriving on a non-loopback interface (`ip6_rcv_core`).
    LoopbackV6Arriving,
    /// A loopback destination arriving on another interface (the input route lookup).
    MartianLoopback(Family),
    /// The input route lookup finds no route.
    NoInputRoute,
    /// Not for this host, and forwarding is off.
    ForwardingOff,
    /// The reverse-path filter drops the packet (`fib_validate_source`).
    ReversePath {
        /// `rp_filter`: 1 strict, 2 loose.
        mode: u8,
        /// The input interface.
        iface: String,
    },
    /// The TTL (hop limit) expires in forwarding.
    TtlExceeded {
        /// The family, for the field's name and the ICMP message.
        family: Family,
        /// The TTL the packet arrived with.
        ttl: u8,
    },
    /// A TCP connection to a non-local address reached a listener that cannot answer from it.
    NotTransparent,
    /// A TCP connection to a loopback address from a non-local source: no SYN-ACK route.
    LoopbackCannotAnswer,
    /// No socket listens at the destination.
    NoListener {
        /// TCP (answered with a reset) or another protocol (ICMP port unreachable).
        tcp: bool,
    },
    /// A built-in chain's DROP policy.
    Policy {
        /// The table.
        table: TableName,
        /// The hook (names the chain).
        hook: Hook,
    },
    /// Dropped by a rule.
    Dropped(RuleRef),
    /// Rejected by a rule.
    Rejected(RuleRef),
    /// Queued to userspace by a rule.
    Queued(RuleRef),
    /// A rule whose effect cannot be known (an unmodelled target, an unreadable rule, a limit of
    /// the analysis).
    Undecidable {
        /// The rule.
        by: RuleRef,
        /// Why.
        why: String,
    },
}

/// Why a re-route after an OUTPUT table fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RerouteCause {
    /// No route to the new destination.
    NoRoute,
    /// A loopback source on a route that leaves the host.
    LoopbackSource,
}

/// The words every result the class analysis cannot compute (where the concrete engine can)
/// carries, so that users and tests can tell it from what the kernel itself leaves open.
pub const NOT_ANALYSED: &str = "is not analysed";

impl Reason {
    /// True for an undecidable rule.
    pub fn is_undecidable(&self) -> bool {
        matches!(self, Reason::Undecidable { .. })
    }

    /// True when the reason is a limit of the class analysis rather than of what can be known.
    pub fn not_analysed(&self) -> bool {
        matches!(self, Reason::Undecidable { why, .. } if why.contains(NOT_ANALYSED))
    }
}

/// How a locally generated packet dropped in OUTPUT with error `errno` shows to the sender:
/// `sendto` returns the error; TCP ignores it and retransmits the SYN until `connect` times out
/// (netfilter-facts §8).
fn send_error(f: &mut fmt::Formatter<'_>, errno: &str) -> fmt::Result {
    write!(f, "sendto returns {errno}; a TCP connect times out instead")
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoRoute => f.write_str("no route to host (the send fails with ENETUNREACH)"),
            Reason::SourceNotLocal => f.write_str("the source address is not local: bind() fails with EADDRNOTAVAIL (net.ipv4.ip_nonlocal_bind=0)"),
            Reason::LoopbackSourceLeaves => f.write_str("a loopback source cannot leave the host: the send fails with EINVAL"),
            Reason::RerouteFails { after, cause } => {
                write!(f, "re-routing after {after} OUTPUT fails: ")?;
                let errno = match cause {
                    RerouteCause::NoRoute => {
                        f.write_str("no route to host (")?;
                        "ENETUNREACH"
                    }
                    RerouteCause::LoopbackSource => {
                        f.write_str("a loopback source cannot leave the host (")?;
                        "EINVAL"
                    }
                };
                send_error(f, errno)?;
                f.write_str(")")
            }
            Reason::LoopbackV6Arriving => f.write_str("the loopback address ::1 arriving on a non-loopback interface is dropped (ip6_rcv_core)"),
            Reason::MartianLoopback(Family::V4) => {
                f.write_str("martian destination: loopback address arriving on a non-loopback interface (net.ipv4.conf.all.route_localnet=0)")
            }
            // IPv6 has no such drop: ::1 is looked up on the input device only (`Host::route_strict`).
            Reason::MartianLoopback(Family::V6) => f.write_str("martian destination: no input route to ::1 on the input interface"),
            Reason::NoInputRoute => f.write_str("no route for the arriving packet"),
            Reason::ForwardingOff => f.write_str("not for this host and forwarding is off (net.ipv4.ip_forward=0)"),
            Reason::ReversePath { mode, iface } => {
                write!(f, "reverse-path filter (rp_filter={mode}) drops the packet arriving on {iface}: its source is not routed back that way")
            }
            Reason::TtlExceeded { family, ttl } => {
                let (field, icmp) = match family {
                    Family::V4 => ("TTL", "ICMP time exceeded"),
                    Family::V6 => ("hop limit", "ICMPv6 time exceeded"),
                };
                write!(f, "{field} {ttl} expires in forwarding: dropped before FORWARD, the router answers with {icmp}")
            }
            Reason::NotTransparent => f.write_str(
                "the listener is not transparent and cannot answer from the non-local destination address: the SYN is dropped (no IP_TRANSPARENT, no TPROXY)",
            ),
            Reason::LoopbackCannotAnswer => {
                f.write_str("the listener cannot route its SYN-ACK back (a loopback address cannot answer a non-local source): the SYN is dropped")
            }
            Reason::NoListener { tcp: true } => f.write_str("no socket listens there: the kernel answers with a TCP reset"),
            Reason::NoListener { tcp: false } => f.write_str("no socket listens there: the kernel answers with ICMP port unreachable"),
            Reason::Policy { table, hook } => write!(f, "{table} {} policy DROP", hook.chain_name()),
            Reason::Dropped(r) => write!(f, "dropped by {r}"),
            Reason::Rejected(r) => write!(f, "rejected by {r}"),
            Reason::Queued(r) => write!(f, "queued by {r}"),
            Reason::Undecidable { by, why } => write!(f, "undecidable: {why} ({by})"),
        }
    }
}

/// Serialized as the sentence, as the JSON outputs have always carried it.
impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences() {
        let r = RuleRef { table: TableName::Filter, chain: "INPUT".into(), rule: 3 };
        assert_eq!(Reason::Dropped(r.clone()).to_string(), "dropped by filter:INPUT:3");
        assert_eq!(Reason::Policy { table: TableName::Filter, hook: Hook::Forward }.to_string(), "filter FORWARD policy DROP");
        assert_eq!(
            Reason::RerouteFails { after: TableName::Mangle, cause: RerouteCause::NoRoute }.to_string(),
            "re-routing after mangle OUTPUT fails: no route to host (sendto returns ENETUNREACH; a TCP connect times out instead)"
        );
        assert_eq!(Reason::TtlExceeded { family: Family::V6, ttl: 1 }.to_string().split(':').next(), Some("hop limit 1 expires in forwarding"));
        let u = Reason::Undecidable { by: r, why: format!("NETMAP over a range of addresses {NOT_ANALYSED}") };
        assert!(u.not_analysed() && u.is_undecidable());
        assert_eq!(serde_json::to_string(&Reason::NoInputRoute).unwrap(), "\"no route for the arriving packet\"");
    }
}
