//! `-m pkttype`: the link-layer class of the packet, unicast, broadcast, multicast or to another
//! host (`xt_pkttype.c`, `libxt_pkttype.c`).

use serde::Serialize;

use crate::ruleset::ext::{Args, Ctx, Extension, OptResult, once, save_invert};

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

impl crate::matches::Evaluate for Pkttype {
    fn eval(&self, _pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        crate::matches::Eval::Unknown("`-m pkttype` is not evaluated yet".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::ext::check_alone;
    use crate::ruleset::{Family, TableName};

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
}
