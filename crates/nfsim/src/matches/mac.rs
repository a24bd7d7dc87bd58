//! `-m mac`: the Ethernet source address of an arriving packet (`xt_mac.c`, `libxt_mac.c`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::classes::cond::{Cond, Fields};
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};
use crate::xt::{Hook, HookMask};

/// The mac match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mac {
    /// `--mac-source` (required).
    pub source: Option<[u8; 6]>,
    /// `!`.
    pub invert: bool,
}

impl Mac {
    /// The hooks the kernel accepts the match in (`xt_mac`'s `.hooks`): only where a packet has
    /// arrived from a link.
    pub fn valid_hooks(&self) -> HookMask {
        HookMask::of(&[Hook::Prerouting, Hook::Input, Hook::Forward])
    }
}

/// One byte of a MAC address as libxtables' `xtopt_parse_ethermac` reads it with
/// `strtoul(.., 16)`: empty (0), or at most two characters, hex digits possibly preceded by a
/// sign (`-1` is `ff`).
fn mac_byte(part: &str) -> Option<u8> {
    if part.is_empty() {
        return Some(0);
    }
    if part.len() > 2 {
        return None;
    }
    let (negative, digits) = match part.as_bytes()[0] {
        b'-' => (true, &part[1..]),
        b'+' | b' ' | b'\t' => (false, &part[1..]),
        _ => (false, part),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v = u8::from_str_radix(digits, 16).ok()?;
    Some(if negative { v.wrapping_neg() } else { v })
}

/// Parses `XX:XX:XX:XX:XX:XX` (hex, one or two digits per byte).
fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("invalid MAC address `{s}` (expected six hex bytes, XX:XX:XX:XX:XX:XX)");
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        *byte = parts.next().and_then(mac_byte).ok_or_else(bad)?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

impl Extension for Mac {
    const OPTIONS: &'static [&'static str] = &["mac-source"];

    fn new(_ctx: &Ctx) -> Self {
        Mac::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        if opt != "mac-source" {
            return Err(format!("unknown option `--{opt}`"));
        }
        once(&self.source, "mac-source")?;
        self.source = Some(parse_mac(args.value()?)?);
        self.invert = invert;
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.source.is_none() {
            return Err("the mac match requires `--mac-source`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        let Some(mac) = self.source else { return };
        save_invert(out, self.invert);
        // iptables 1.8.9 (both backends) prints lower-case hex.
        let _ = write!(out, " --mac-source {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    }
}

impl crate::matches::Evaluate for Mac {
    /// `mac_mt` (`xt_mac.c`): the Ethernet source address equals the given one, flipped by
    /// `!`. A packet received on a device that is not Ethernet (`lo`) has no Ethernet header and
    /// never matches, whatever the `!`. An arriving packet whose source MAC the packet does not
    /// give is unknown.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let Some(want) = self.source else { return Eval::Unknown("`-m mac` without `--mac-source`".into()) };
        if pkt.in_iface.as_deref() == Some("lo") {
            return Eval::NoMatch;
        }
        match pkt.src_mac {
            Some(mac) => Eval::from_bool((mac == want) != self.invert),
            None => Eval::Unknown("`-m mac --mac-source` depends on the source MAC address of the arriving frame, which the packet does not give".into()),
        }
    }
}

impl Cond for Mac {
    /// It reads the input interface (constant within a class) and a source MAC address the classes
    /// do not give (unknown).
    const READS: Fields = Fields::NONE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<Mac>(ctx, line)
    }

    /// Every line of iptables' `extensions/libxt_mac.t` (its `:INPUT,FORWARD` header is the
    /// hook restriction of [`Mac::valid_hooks`]).
    #[test]
    fn libxt_mac_t() {
        assert_eq!(check("--mac-source 42:01:02:03:04:05").as_deref(), Ok(" --mac-source 42:01:02:03:04:05"));
        assert!(check("--mac-source 42:01:02:03:04").is_err());
        assert!(check("--mac-source 42:01:02:03:04:05:06").is_err());
        assert!(check("").is_err());
    }

    /// Values as the real `iptables` 1.8.9 read and printed them.
    #[test]
    fn addresses_like_iptables_1_8_9() {
        for (line, saved) in [
            ("--mac-source aa:bb:cc:dd:ee:ff", " --mac-source aa:bb:cc:dd:ee:ff"),
            ("--mac-source AA:BB:CC:DD:EE:FF", " --mac-source aa:bb:cc:dd:ee:ff"),
            ("! --mac-source 1:2:3:4:5:6", " ! --mac-source 01:02:03:04:05:06"),
            ("--mac-source :::::", " --mac-source 00:00:00:00:00:00"),
            ("--mac-source +f:-1:0:0:0:0", " --mac-source 0f:ff:00:00:00:00"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        for line in [
            // Anonymised dumps (net-network corpus) write this; iptables rejects it.
            "--mac-source XX:XX:XX:XX:XX:XX",
            "--mac-source 001:2:3:4:5:6",
            "--mac-source 0x:2:3:4:5:6",
            "--mac-source 1:2:3:4:5:6 --mac-source 1:2:3:4:5:6",
        ] {
            assert!(check(line).is_err(), "{line}");
        }
        let mac = Mac::default();
        assert!(!mac.valid_hooks().contains(Hook::Output));
        assert!(mac.valid_hooks().contains(Hook::Forward));
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::tcp::test_util::{cx, parse};
        use crate::matches::{Eval, Evaluate};
        use crate::packet::Packet;
        use crate::xt::Family;

        fn run(line: &str, iface: &str, mac: Option<[u8; 6]>) -> Eval {
            let host = Host::new("h").iface("eth0", &["10.0.0.2/24"]);
            let mut pkt = Packet::new(6, "10.0.0.1".parse().unwrap(), 1, "10.0.0.2".parse().unwrap(), 22);
            pkt.in_iface = Some(iface.to_string());
            pkt.src_mac = mac;
            parse::<Mac>(Family::V4, 0, line).eval(&pkt, &cx(&host, Hook::Input, false))
        }

        #[test]
        fn source_address_and_inversion() {
            let mac = Some([0x42, 1, 2, 3, 4, 5]);
            assert_eq!(run("--mac-source 42:01:02:03:04:05", "eth0", mac), Eval::Match);
            assert_eq!(run("--mac-source 42:01:02:03:04:06", "eth0", mac), Eval::NoMatch);
            assert_eq!(run("! --mac-source 42:01:02:03:04:05", "eth0", mac), Eval::NoMatch);
            assert_eq!(run("! --mac-source 42:01:02:03:04:06", "eth0", mac), Eval::Match);
            // Case and short bytes do not matter once parsed.
            assert_eq!(run("--mac-source 42:1:2:3:4:5", "eth0", mac), Eval::Match);
        }

        #[test]
        fn missing_mac_and_loopback() {
            assert!(matches!(run("--mac-source 42:01:02:03:04:05", "eth0", None), Eval::Unknown(_)));
            assert!(matches!(run("! --mac-source 42:01:02:03:04:05", "eth0", None), Eval::Unknown(_)));
            // `lo` is not Ethernet: no match even with `!`.
            assert_eq!(run("--mac-source 00:00:00:00:00:00", "lo", None), Eval::NoMatch);
            assert_eq!(run("! --mac-source 42:01:02:03:04:05", "lo", Some([0; 6])), Eval::NoMatch);
        }
    }
}
