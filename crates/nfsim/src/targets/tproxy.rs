//! `-j TPROXY`: hands the packet to a local socket without changing it, for transparent proxies
//! (`xt_TPROXY.c`, `libxt_TPROXY.c` revision 1).
//!
//! `--on-port` is read as `getaddrinfo` reads a service: a decimal number taken modulo 65536
//! (`70000` is 4464, an empty text is 0) or a service name of any protocol. `--on-ip` is a numeric
//! host (IPv4 in `inet_aton`'s forms; names are not resolved here), `--tproxy-mark VALUE[/MASK]`
//! two 32-bit numbers. iptables-save prints all three, defaults included. The kernel requires
//! `-p tcp` or `-p udp` (not negated).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::dnat::{parse_host, service_any_proto, xt_strtoul_end};
use super::effect::{Applied, Cx, Effect};
use crate::stack::{Domain, Flow};
use crate::traverse::End;
use crate::xt::Family;
use crate::xt::addr::fmt_ip;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once};

/// The TPROXY target (`struct xt_tproxy_target_info_v1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tproxy {
    /// `--on-port` (required: `None` only while the rule is being read); 0 keeps the
    /// destination port.
    pub port: Option<u16>,
    /// `--on-ip`; `None` (or the unspecified address) keeps the destination address.
    pub addr: Option<IpAddr>,
    /// `--tproxy-mark VALUE/MASK`: bits of `MASK` in the packet mark are set to `VALUE`;
    /// `None` is `0x0/0x0`, no change.
    pub mark: Option<(u32, u32)>,
}

impl Extension for Tproxy {
    const OPTIONS: &'static [&'static str] = &["on-port", "on-ip", "tproxy-mark"];

    fn new(_ctx: &Ctx) -> Self {
        Tproxy::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "on-port" => {
                once(&self.port, opt)?;
                no_invert(invert, opt)?;
                let s = args.value()?;
                let port = parse_service(s).ok_or_else(|| format!("invalid port `{s}` (expected a number or a service name)"))?;
                self.port = Some(port);
            }
            "on-ip" => {
                once(&self.addr, opt)?;
                no_invert(invert, opt)?;
                self.addr = Some(parse_host(args.value()?, args.ctx().family)?);
            }
            "tproxy-mark" => {
                once(&self.mark, opt)?;
                no_invert(invert, opt)?;
                self.mark = Some(parse_mark_mask(args.value()?)?);
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if self.port.is_none() {
            return Err("the TPROXY target requires `--on-port`".into());
        }
        if !matches!(ctx.proto(), Some(6 | 17)) {
            return Err("TPROXY needs `-p tcp` or `-p udp` (the kernel refuses it otherwise)".into());
        }
        if self.addr.is_some_and(|a| a.is_unspecified()) {
            self.addr = None;
        }
        if self.mark == Some((0, 0)) {
            self.mark = None;
        }
        Ok(())
    }

    fn save(&self, ctx: &Ctx, out: &mut String) {
        let (mark, mask) = self.mark.unwrap_or((0, 0));
        let addr = self.addr.unwrap_or(match ctx.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        out.push_str(&format!(" --on-port {} --on-ip ", self.port.unwrap_or(0)));
        fmt_ip(out, addr);
        out.push_str(&format!(" --tproxy-mark 0x{mark:x}/0x{mask:x}"));
    }
}

/// A service as `getaddrinfo(NULL, s, NULL, ..)` reads it: a whole decimal `strtoul` number
/// (cut to an `int`, then to 16 bits; negative ones fall back to a name lookup), else a service
/// name of any protocol.
fn parse_service(s: &str) -> Option<u16> {
    if s.is_empty() {
        return Some(0);
    }
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let v = t.parse::<u64>().unwrap_or(u64::MAX);
        let v = if negative && v != u64::MAX { v.wrapping_neg() } else { v };
        let n = v as u32 as i32;
        if n >= 0 {
            return Some(n as u16);
        }
    }
    service_any_proto(s)
}

/// `VALUE[/MASK]`, both 32-bit `strtoul` numbers; the mask defaults to all ones.
fn parse_mark_mask(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("invalid `--tproxy-mark` value `{s}` (expected VALUE[/MASK], 32-bit numbers)");
    let max = u32::MAX.into();
    let (value, rest) = xt_strtoul_end(s, 0, max).ok_or_else(bad)?;
    if rest.is_empty() {
        return Ok((value as u32, u32::MAX));
    }
    let rest = rest.strip_prefix('/').ok_or_else(bad)?;
    match xt_strtoul_end(rest, 0, max) {
        Some((mask, "")) => Ok((value as u32, mask as u32)),
        _ => Err(bad()),
    }
}

/// `tproxy_tg4`/`6`: the listener on `--on-ip` (by default the input interface's primary address,
/// `nf_tproxy_laddr4`, else the destination) and `--on-port` (by default the destination port);
/// only a transparent socket is assigned (`nf_tproxy_sk_is_transparent`), with the mark set and
/// the verdict ACCEPT; without one the packet is dropped.
impl Effect for Box<Tproxy> {
    fn effect<'a, D: Domain<'a>>(&self, d: &mut D, st: D::State, cx: &Cx<'_, 'a, D>) -> Applied<D::State> {
        let addr = self.addr.filter(|a| !a.is_unspecified()).map_or(cx.nat.redirect_to.unwrap_or(st.dst()), |a| d.lift(a));
        let port = self.port.filter(|p| *p != 0).map_or(st.dport(), |p| d.lift_port(p));
        let mut parts = Vec::new();
        for (mut s, sock) in d.socket(st, (addr, port)) {
            if !sock.is_some_and(|i| d.host().sockets[i].transparent) {
                parts.push((s, Some(End::Drop(Some(cx.here.clone())))));
                continue;
            }
            if let Some((v, m)) = self.mark
                && let Err(why) = d.map_mark(&mut s, |x| (x & !m) ^ v)
            {
                parts.push((s, Some(End::Undecidable(cx.here.clone(), why))));
                continue;
            }
            s.set_tproxy((addr, port));
            parts.push((s, Some(End::Accept)));
        }
        super::effect::many(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Neg, Proto, TableName};

    fn check(family: Family, proto: Option<Neg<Proto>>, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Mangle, proto };
        check_alone::<Tproxy>(ctx, line)
    }

    const TCP: Option<Neg<Proto>> = Some(Neg { value: Proto::TCP, negated: false });
    const UDP: Option<Neg<Proto>> = Some(Neg { value: Proto::UDP, negated: false });

    /// Every line of libipt_TPROXY.t and libip6t_TPROXY.t.
    #[test]
    fn upstream_specs() {
        for (f, ip) in [(Family::V4, "10.0.0.1"), (Family::V6, "2001:db8::1")] {
            let l = format!("--on-port 12345 --on-ip {ip} --tproxy-mark 0x23/0xff");
            assert!(check(f, None, &l).is_err());
            assert_eq!(check(f, UDP, &l).unwrap(), format!(" {l}"));
            assert_eq!(check(f, TCP, &l).unwrap(), format!(" {l}"));
        }
    }

    /// Forms checked against iptables-nft-restore / iptables-save 1.8.9 on this machine.
    #[test]
    fn observed_forms() {
        let v4 = |l: &str| check(Family::V4, TCP, l);
        let full = |p: &str, ip: &str, m: &str| format!(" --on-port {p} --on-ip {ip} --tproxy-mark {m}");
        assert_eq!(v4("--on-port 12345").unwrap(), full("12345", "0.0.0.0", "0x0/0x0"));
        assert_eq!(v4("--on-port 0").unwrap(), full("0", "0.0.0.0", "0x0/0x0"));
        assert_eq!(v4("--on-port ssh --tproxy-mark 5").unwrap(), full("22", "0.0.0.0", "0x5/0xffffffff"));
        assert_eq!(v4("--on-port bootpc").unwrap(), full("68", "0.0.0.0", "0x0/0x0"));
        assert_eq!(v4("--on-port 65536").unwrap(), full("0", "0.0.0.0", "0x0/0x0"));
        assert_eq!(v4("--on-port 70000").unwrap(), full("4464", "0.0.0.0", "0x0/0x0"));
        assert_eq!(v4("--on-port \" 80\"").unwrap(), full("80", "0.0.0.0", "0x0/0x0"));
        assert_eq!(v4("--on-port +80").unwrap(), full("80", "0.0.0.0", "0x0/0x0"));
        assert_eq!(v4("--on-port 0080").unwrap(), full("80", "0.0.0.0", "0x0/0x0"));
        assert_eq!(v4("--on-port 1 --on-ip 0x7f.1").unwrap(), full("1", "127.0.0.1", "0x0/0x0"));
        assert_eq!(v4("--on-port 1 --on-ip 017.1.2.3").unwrap(), full("1", "15.1.2.3", "0x0/0x0"));
        assert_eq!(v4("--on-port 1 --on-ip 4294967295").unwrap(), full("1", "255.255.255.255", "0x0/0x0"));
        assert_eq!(v4("--on-port 1 --on-ip 10.1").unwrap(), full("1", "10.0.0.1", "0x0/0x0"));
        assert_eq!(v4("--on-port 1 --tproxy-mark 0x1/0").unwrap(), full("1", "0.0.0.0", "0x1/0x0"));
        assert_eq!(v4("--on-port 1 --tproxy-mark 010").unwrap(), full("1", "0.0.0.0", "0x8/0xffffffff"));
        assert_eq!(parse_service(""), Some(0));
        for bad in [
            "--on-ip 1.2.3.4",
            "--on-port 0x10",
            "--on-port -1",
            "--on-port 99999999999999999999",
            "--on-port 1 --on-ip 1.2.3.4x",
            "--on-port 1 --on-ip \"\"",
            "--on-port 1 --on-ip localhost",
            "--on-port 1 --tproxy-mark 0x1/",
            "--on-port 1 --tproxy-mark /5",
            "--on-port 1 --tproxy-mark 4294967296",
            "--on-port 1 --on-port 2",
            "! --on-port 1",
        ] {
            assert!(v4(bad).is_err(), "{bad}");
        }
        let not_tcp = Some(Neg::new(Proto::TCP, true));
        assert!(check(Family::V4, not_tcp, "--on-port 1").is_err());
        assert!(check(Family::V4, Some(Neg::new(Proto::SCTP, false)), "--on-port 1").is_err());
        let v6 = |l: &str| check(Family::V6, TCP, l);
        assert_eq!(v6("--on-port 15006 --tproxy-mark 0x539/0xffffffff").unwrap(), full("15006", "::", "0x539/0xffffffff"));
        assert_eq!(v6("--on-port 1 --on-ip ::1.2.3.4").unwrap(), full("1", "::1.2.3.4", "0x0/0x0"));
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Tproxy>() <= 40);
    }
}
