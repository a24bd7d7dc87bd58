//! `-m pkttype`: the link-layer class of the packet, unicast, broadcast, multicast or to another
//! host (`xt_pkttype.c`, `libxt_pkttype.c`).

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, points, space, tests};
use crate::classes::region::Test;
use crate::classes::set::Ranges;
use crate::matches::Eval;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};
use crate::xt::{Family, Hook};
use ipnet::IpNet;

/// A link-layer packet class (`PACKET_*` of `<linux/if_packet.h>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PktType {
    /// `unicast` (alias `host`): `PACKET_HOST`, addressed to this host.
    Unicast = 0,
    /// `broadcast` (alias `bcast`): `PACKET_BROADCAST`.
    Broadcast = 1,
    /// `multicast` (alias `mcast`): `PACKET_MULTICAST`.
    Multicast = 2,
    /// `otherhost`: `PACKET_OTHERHOST`, addressed to another host (promiscuous mode).
    OtherHost = 3,
}

/// Names iptables accepts (case-insensitively), the first of each class being the one it saves.
const NAMES: &[(&str, PktType)] = &[
    ("unicast", PktType::Unicast),
    ("broadcast", PktType::Broadcast),
    ("multicast", PktType::Multicast),
    ("otherhost", PktType::OtherHost),
    ("bcast", PktType::Broadcast),
    ("mcast", PktType::Multicast),
    ("host", PktType::Unicast),
];

impl PktType {
    /// The name iptables-save prints.
    pub fn as_str(self) -> &'static str {
        NAMES.iter().find(|(_, t)| *t == self).map_or("unicast", |(n, _)| n)
    }
}

/// The pkttype match. For a looped-back packet the kernel uses multicast when the IPv4
/// destination is a multicast address (always for IPv6), else broadcast.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pkttype {
    /// `--pkt-type` (required).
    pub pkt_type: Option<PktType>,
    /// `!`.
    pub invert: bool,
}

impl Extension for Pkttype {
    const OPTIONS: &'static [&'static str] = &["pkt-type"];

    fn new(_ctx: &Ctx) -> Self {
        Pkttype::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        if opt != "pkt-type" {
            return Err(format!("unknown option `--{opt}`"));
        }
        once(&self.pkt_type, "pkt-type")?;
        let v = args.value()?;
        let t = NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(v))
            .map(|&(_, t)| t)
            .ok_or_else(|| format!("bad packet type `{v}` (expected unicast, broadcast, multicast or otherhost)"))?;
        self.pkt_type = Some(t);
        self.invert = invert;
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.pkt_type.is_none() {
            return Err("the pkttype match requires `--pkt-type`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        let Some(t) = self.pkt_type else { return };
        save_invert(out, self.invert);
        out.push_str(" --pkt-type ");
        out.push_str(t.as_str());
    }
}

/// The class `pkttype_mt` (`xt_pkttype.c`) sees for `pkt` at `cx.hook`.
///
/// `skb->pkt_type` is set on reception, from the destination MAC address; the packet model has
/// none, so an arriving packet's class is that of its destination address, as a sender on the
/// link would address the frame: multicast for a multicast address, broadcast for an address
/// this host knows as a broadcast one (limited broadcast, or the broadcast address of one of
/// its subnets), otherwise to this host. `PACKET_OTHERHOST` frames are dropped by `ip_rcv` /
/// `ipv6_rcv` before PREROUTING, so `otherhost` is never seen. The copy of a multicast or
/// broadcast packet this host loops back to itself is `PACKET_LOOPBACK`, which the match turns
/// into multicast (IPv4 multicast destination, or any IPv6) or broadcast: the same classes.
///
/// Locally generated packets keep the zeroed `pkt_type` of a fresh skb (`PACKET_HOST`) in
/// OUTPUT and POSTROUTING (the loopback copy is marked only after POSTROUTING, in
/// `dev_loopback_xmit`), and forwarded packets are `PACKET_HOST` by construction (`ip_forward`
/// and `ip6_forward` drop the others): unicast at those hooks, whatever the destination.
pub fn packet_class(pkt: &crate::packet::Packet, cx: &crate::matches::EvalCtx<'_>) -> PktType {
    use crate::xt::Hook;
    match cx.hook {
        Hook::Forward | Hook::Output | Hook::Postrouting => PktType::Unicast,
        Hook::Prerouting | Hook::Input => {
            if pkt.dst.is_multicast() {
                PktType::Multicast
            } else if pkt.dst.is_ipv4() && cx.host.addr_type(pkt.dst) == crate::host::AddrType::Broadcast {
                PktType::Broadcast
            } else {
                PktType::Unicast
            }
        }
    }
}

impl crate::matches::Evaluate for Pkttype {
    /// `pkttype_mt` (`xt_pkttype.c`): the packet's link-layer class ([`packet_class`]) equals
    /// the given one, flipped by `!`.
    fn eval(&self, pkt: &crate::packet::Packet, cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        let Some(want) = self.pkt_type else { return crate::matches::Eval::Unknown("`-m pkttype` without `--pkt-type`".into()) };
        crate::matches::Eval::from_bool((packet_class(pkt, cx) == want) != self.invert)
    }
}

impl Cond for Pkttype {
    const READS: Fields = Fields::DST;

    /// `pkttype_mt` with `packet_class`: unicast at FORWARD, OUTPUT and POSTROUTING; at PREROUTING
    /// and INPUT, from the destination: multicast, then (IPv4) broadcast as `Host::addr_type` sees
    /// it.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        let Some(want) = self.pkt_type else { return MatchCond::Concrete(Fields::NONE) };
        if matches!(cx.hook, Hook::Forward | Hook::Output | Hook::Postrouting) {
            return MatchCond::Eval(Eval::from_bool((want == PktType::Unicast) != self.invert));
        }
        let all = space(cx);
        let (mcast, bcast) = match cx.family {
            Family::V4 => {
                let mcast = Ranges::range(0xe000_0000, 0xefff_ffff);
                let mut cand = vec![u128::from(u32::MAX)];
                for i in cx.host.ifaces() {
                    for n in &i.addrs {
                        if let IpNet::V4(n) = n
                            && n.prefix_len() < 31
                        {
                            cand.push(u32::from(n.broadcast()).into());
                        }
                    }
                }
                // `addr_type`: the unspecified address and local addresses come first.
                let local = Ranges::range(0x7f00_0000, 0x7fff_ffff).union(&points(
                    cx.host.ifaces().flat_map(|i| i.addrs.iter()).filter_map(|n| if let IpNet::V4(n) = n { Some(u32::from(n.addr()).into()) } else { None }),
                ));
                (mcast.clone(), points(cand).minus(&local).minus(&mcast).minus(&Ranges::point(0)))
            }
            Family::V6 => (Ranges::from_prefix(0xff00 << 112, 8, 128), Ranges::empty()),
        };
        let class = match want {
            PktType::Multicast => mcast,
            PktType::Broadcast => bcast,
            PktType::Unicast => all.minus(&mcast.union(&bcast)),
            PktType::OtherHost => Ranges::empty(),
        };
        let hit = if self.invert { all.minus(&class) } else { class };
        tests(cx, vec![Test { dst: Some(hit), ..Test::default() }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<Pkttype>(ctx, line)
    }

    /// Every line of iptables' `extensions/libxt_pkttype.t`.
    #[test]
    fn libxt_pkttype_t() {
        for line in ["--pkt-type unicast", "--pkt-type broadcast", "--pkt-type multicast"] {
            assert_eq!(check(line), Ok(format!(" {line}")), "{line}");
        }
        assert!(check("--pkt-type wrong").is_err());
        assert!(check("").is_err());
    }

    /// Values as the real `iptables` 1.8.9 read and printed them.
    #[test]
    fn names_like_iptables_1_8_9() {
        for (line, saved) in [
            ("--pkt-type BCAST", " --pkt-type broadcast"),
            ("--pkt-type mcast", " --pkt-type multicast"),
            ("--pkt-type host", " --pkt-type unicast"),
            ("--pkt-type otherhost", " --pkt-type otherhost"),
            ("! --pkt-type broadcast", " ! --pkt-type broadcast"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        // Names are not abbreviated.
        assert!(check("--pkt-type uni").is_err());
        assert!(check("--pkt-type host --pkt-type host").is_err());
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::tcp::test_util::{cx, parse};
        use crate::matches::{Eval, Evaluate};
        use crate::packet::Packet;
        use crate::xt::{Family, Hook};

        fn run(line: &str, hook: Hook, dst: &str) -> Eval {
            let host = Host::new("h").iface("eth0", &["10.0.0.5/24", "2001:db8::5/64"]);
            let v6 = dst.contains(':');
            let src = if v6 { "2001:db8::9" } else { "10.0.0.9" };
            let pkt = Packet::new(17, src.parse().unwrap(), 1, dst.parse().unwrap(), 2);
            let family = if v6 { Family::V6 } else { Family::V4 };
            parse::<Pkttype>(family, 0, line).eval(&pkt, &cx(&host, hook, v6))
        }

        #[test]
        fn arriving_packets_by_destination() {
            for hook in [Hook::Prerouting, Hook::Input] {
                assert_eq!(run("--pkt-type unicast", hook, "10.0.0.5"), Eval::Match);
                assert_eq!(run("--pkt-type broadcast", hook, "10.0.0.255"), Eval::Match);
                assert_eq!(run("--pkt-type broadcast", hook, "255.255.255.255"), Eval::Match);
                assert_eq!(run("--pkt-type unicast", hook, "10.0.0.255"), Eval::NoMatch);
                assert_eq!(run("--pkt-type multicast", hook, "224.0.0.251"), Eval::Match);
                assert_eq!(run("--pkt-type multicast", hook, "ff02::1"), Eval::Match);
                assert_eq!(run("--pkt-type unicast", hook, "2001:db8::5"), Eval::Match);
                assert_eq!(run("! --pkt-type broadcast", hook, "10.0.0.5"), Eval::Match);
                assert_eq!(run("! --pkt-type multicast", hook, "224.0.0.1"), Eval::NoMatch);
            }
            // A packet to be forwarded arrives in a frame to this host.
            assert_eq!(run("--pkt-type unicast", Hook::Prerouting, "8.8.8.8"), Eval::Match);
            // A directed broadcast of a foreign subnet is unicast on this link.
            assert_eq!(run("--pkt-type broadcast", Hook::Prerouting, "192.168.1.255"), Eval::NoMatch);
        }

        #[test]
        fn otherhost_is_never_seen() {
            for dst in ["10.0.0.5", "8.8.8.8", "10.0.0.255", "ff02::1"] {
                assert_eq!(run("--pkt-type otherhost", Hook::Prerouting, dst), Eval::NoMatch);
                assert_eq!(run("! --pkt-type otherhost", Hook::Prerouting, dst), Eval::Match);
            }
        }

        #[test]
        fn sent_and_forwarded_packets_are_unicast() {
            for hook in [Hook::Output, Hook::Postrouting, Hook::Forward] {
                assert_eq!(run("--pkt-type unicast", hook, "10.0.0.255"), Eval::Match);
                assert_eq!(run("--pkt-type broadcast", hook, "255.255.255.255"), Eval::NoMatch);
                assert_eq!(run("--pkt-type multicast", hook, "224.0.0.251"), Eval::NoMatch);
                assert_eq!(run("! --pkt-type multicast", hook, "ff02::fb"), Eval::Match);
            }
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::{PktType, Pkttype};
    use crate::classes::cond::test_util::run;
    use crate::matches::Match;

    #[test]
    fn pkttype_agrees() {
        run("pkttype", 400, 350, |_| {
            let t = proptest::option::weighted(0.95, select(vec![PktType::Unicast, PktType::Broadcast, PktType::Multicast, PktType::OtherHost]));
            (t, any::<bool>()).prop_map(|(pkt_type, invert)| Match::Pkttype(Pkttype { pkt_type, invert })).boxed()
        });
    }
}
