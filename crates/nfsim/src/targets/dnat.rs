//! `-j DNAT`: rewrites the destination of a connection (`xt_nat.c`, `libxt_NAT.c` revision 2,
//! the one iptables 1.8.9 loads for both families on a current kernel).
//!
//! This file also holds what the NAT targets share: the `[ADDR[-ADDR]][:PORT[-PORT[/BASE]]]`
//! range of `--to-destination` / `--to-source`, the `PORT[-PORT]` of `--to-ports`, and the few
//! libc / libxtables parsers they need (`strtoul`, `inet_pton`, `inet_aton`).
//!
//! Ports need `-p tcp`, `udp`, `sctp`, `dccp` or `icmp` before the target (iptables looks at the
//! protocol given so far and ignores a `!` before `-p`). iptables 1.8.9 takes one
//! `--to-destination` per rule and refuses a second one (old releases accepted several ranges;
//! current kernels take a single one).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::effect::{Applied, Cx, Effect, go};
use crate::stack::{Domain, Flow};
use crate::traverse::End;
use crate::xt::Family;
use crate::xt::addr::fmt_ip;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once};
use crate::xt::services;

/// The DNAT target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Dnat {
    /// `--to-destination` (required: `None` only while the rule is being read).
    pub to: Option<Box<NatRange>>,
    /// `--random`: randomize the port chosen in the range (`NF_NAT_RANGE_PROTO_RANDOM`).
    pub random: bool,
    /// `--persistent`: the same client always gets the same address (`NF_NAT_RANGE_PERSISTENT`).
    pub persistent: bool,
}

impl Extension for Dnat {
    const OPTIONS: &'static [&'static str] = &["to-destination", "random", "persistent"];

    fn new(_ctx: &Ctx) -> Self {
        Dnat::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        no_invert(invert, opt)?;
        match opt {
            "to-destination" => {
                once(&self.to, opt)?;
                let ctx = args.ctx();
                let range = parse_to(args.value()?, ports_allowed(&ctx), ctx.family)?;
                self.to = Some(Box::new(range));
            }
            "random" => set_flag(&mut self.random, opt)?,
            "persistent" => set_flag(&mut self.persistent, opt)?,
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.to.is_none() {
            return Err("the DNAT target requires `--to-destination`".into());
        }
        Ok(())
    }

    fn save(&self, ctx: &Ctx, out: &mut String) {
        if let Some(to) = &self.to {
            save_range(out, "--to-destination", to, ctx.family, false);
        }
        save_flags(out, self.random, false, self.persistent);
    }
}

/// The address and port range of a NAT target (`struct nf_nat_range2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NatRange {
    /// The addresses to map to (`NF_NAT_RANGE_MAP_IPS`); `None` keeps the address.
    pub addrs: Option<AddrRange>,
    /// The ports to map to (`NF_NAT_RANGE_PROTO_SPECIFIED`); `None` keeps the port when it can.
    pub ports: Option<NatPorts>,
}

/// An inclusive address range, as written (iptables does not check that `first <= last`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AddrRange {
    /// First address.
    pub first: IpAddr,
    /// Last address (equal to `first` for a single address).
    pub last: IpAddr,
}

/// An inclusive port range of a NAT target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NatPorts {
    /// First port.
    pub lo: u16,
    /// Last port (`lo <= hi`).
    pub hi: u16,
    /// `/BASE`, a shifted port map (`NF_NAT_RANGE_PROTO_OFFSET`): original port `p` maps to
    /// `lo + (p - base) mod (hi - lo + 1)`. SNAT and MASQUERADE accept the syntax but their
    /// kernel structures have no room for the base, so theirs is always `Some(0)`.
    pub base: Option<u16>,
}

/// True when the rule's protocol so far lets a NAT target take ports: tcp, udp, sctp, dccp, or
/// (for either family) protocol 1, icmp. iptables ignores a `!` before `-p` here.
pub(crate) fn ports_allowed(ctx: &Ctx) -> bool {
    matches!(ctx.proto.map(|p| p.value.0), Some(6 | 17 | 132 | 33 | 1))
}

/// Records a flag option (`--random`, ...), refusing a second use as libxtables does.
pub(crate) fn set_flag(slot: &mut bool, opt: &str) -> OptResult {
    if *slot {
        return Err(format!("option `--{opt}` may be given only once"));
    }
    *slot = true;
    Ok(())
}

/// Parses `PORT[-PORT[/BASE]]` as libxt_NAT's `parse_ports` does: the first port and the base
/// may be service names (of any protocol), the last port must be a number.
pub(crate) fn parse_ports(arg: &str, portok: bool) -> Result<NatPorts, String> {
    if !portok {
        return Err("a port mapping needs `-p tcp`, `-p udp`, `-p sctp` or `-p dccp` before the target".into());
    }
    let bad_port = |s: &str| format!("invalid port `{s}` (expected a number 0-65535 or a service name)");
    let (lo, rest) = match xt_strtoul_end(arg, 0, 65535) {
        Some((v, rest)) => (v as u16, rest),
        None => (service_any_proto(arg).ok_or_else(|| bad_port(arg))?, ""),
    };
    let Some(rest) = rest.strip_prefix('-') else {
        return match rest.chars().next() {
            None => Ok(NatPorts { lo, hi: lo, base: None }),
            Some(':') => Err(format!("invalid port range `{arg}` (write FIRST-LAST, with a dash)")),
            Some(_) => Err(format!("garbage `{rest}` after the port in `{arg}`")),
        };
    };
    let (hi, rest) = xt_strtoul_end(rest, 0, 65535).ok_or_else(|| format!("invalid port `{rest}` (the last port of a range must be a number 0-65535)"))?;
    let hi = hi as u16;
    if hi < lo {
        return Err(format!("invalid port range `{arg}` (the last port is below the first)"));
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return match rest {
            "" => Ok(NatPorts { lo, hi, base: None }),
            _ => Err(format!("garbage `{rest}` after the port range in `{arg}`")),
        };
    };
    // Anything after a numeric base is ignored, as iptables ignores it.
    let base = match xt_strtoul_end(rest, 1, 65535) {
        Some((v, _)) => v as u16,
        None => service_any_proto(rest).ok_or_else(|| format!("invalid base port `{rest}` (expected a number 1-65535 or a service name)"))?,
    };
    Ok(NatPorts { lo, hi, base: Some(base) })
}

/// Parses `[ADDR[-ADDR]][:PORT[-PORT[/BASE]]]` (IPv6 addresses in brackets when ports follow)
/// as libxt_NAT's `parse_to` does, quirks included: without brackets a second `:` makes the whole
/// text an address, text between `]` and `:` is ignored, and a colon at offset 2 (`10:80`,
/// `[]:80`) means "no address".
pub(crate) fn parse_to(arg: &str, portok: bool, family: Family) -> Result<NatRange, String> {
    let (addr_text, colon): (&str, Option<usize>) = match arg.find('[') {
        None => {
            let colon = arg.find(':').filter(|&c| !arg[c + 1..].contains(':'));
            (colon.map_or(arg, |c| &arg[..c]), colon)
        }
        Some(open) => {
            let start = open + 1;
            let close = arg[start..].find(']').map(|c| start + c);
            let close = match (close, family) {
                (Some(c), Family::V6) => c,
                _ => {
                    return Err(format!("invalid address `{arg}` (only IPv6 addresses go in brackets, as `[ADDR]:PORT`)"));
                }
            };
            let colon = arg[close + 1..].find(':').map(|c| close + 1 + c);
            (&arg[start..close], colon)
        }
    };
    let mut range = NatRange { addrs: None, ports: None };
    if let Some(c) = colon {
        range.ports = Some(parse_ports(&arg[c + 1..], portok)?);
        if c == 0 || c == 2 {
            return Ok(range);
        }
    }
    let (first, last) = match addr_text.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (addr_text, None),
    };
    let first = pton(first, family)?;
    let last = match last {
        Some(b) => pton(b, family)?,
        None => first,
    };
    range.addrs = Some(AddrRange { first, last });
    Ok(range)
}

fn pton(s: &str, family: Family) -> Result<IpAddr, String> {
    let parsed = match family {
        Family::V4 => parse_v4_strict(s).map(IpAddr::V4),
        Family::V6 => s.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
    };
    parsed.ok_or_else(|| match family {
        Family::V4 => format!("bad IP address `{s}` (expected a dotted IPv4 address)"),
        Family::V6 => format!("bad IP address `{s}` (expected an IPv6 address)"),
    })
}

/// `inet_pton(AF_INET)`: exactly four decimal parts of 0-255, no leading zeros.
fn parse_v4_strict(s: &str) -> Option<Ipv4Addr> {
    let mut out = [0u8; 4];
    let mut n = 0;
    for part in s.split('.') {
        if n == 4 || part.is_empty() || part.len() > 3 || (part.len() > 1 && part.starts_with('0')) || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        out[n] = part.parse::<u16>().ok().filter(|v| *v <= 255)? as u8;
        n += 1;
    }
    (n == 4).then(|| Ipv4Addr::from(out))
}

/// Appends ` OPT RANGE` when the range prints as anything, as libxt_NAT's `__NAT_print` does;
/// `skip_colon` drops the `:` before ports (`--to-ports`).
pub(crate) fn save_range(out: &mut String, opt: &str, range: &NatRange, family: Family, skip_colon: bool) {
    let brackets = family == Family::V6 && range.ports.is_some();
    let mut text = String::new();
    if let Some(a) = range.addrs {
        if brackets {
            text.push('[');
        }
        fmt_ip(&mut text, a.first);
        if a.last != a.first {
            text.push('-');
            fmt_ip(&mut text, a.last);
        }
        if brackets {
            text.push(']');
        }
    }
    if let Some(p) = range.ports {
        let _ = write!(text, ":{}", p.lo);
        if p.hi != p.lo {
            let _ = write!(text, "-{}", p.hi);
        }
        if let Some(b) = p.base {
            let _ = write!(text, "/{b}");
        }
    }
    let text = match text.strip_prefix(':') {
        Some(t) if skip_colon => t,
        _ => &text,
    };
    if !text.is_empty() {
        out.push(' ');
        out.push_str(opt);
        out.push(' ');
        out.push_str(text);
    }
}

/// Appends the NAT flags in the order iptables-save prints them.
pub(crate) fn save_flags(out: &mut String, random: bool, random_fully: bool, persistent: bool) {
    if random {
        out.push_str(" --random");
    }
    if random_fully {
        out.push_str(" --random-fully");
    }
    if persistent {
        out.push_str(" --persistent");
    }
}

// What libc and libxtables provide to the target parsers of this directory.

/// `strtoumax(s, &end, 0)` for a string `xtables_strtoul` lets through: leading blanks, an
/// optional `+`, then `0x` hex, `0` octal or decimal digits. `None` when a `-` leads or there is
/// no digit; otherwise the value (`None` on overflow) and the unread rest.
fn strtoumax0(s: &str) -> Option<(Option<u64>, &str)> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    if t.starts_with('-') {
        return None;
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let b = t.as_bytes();
    let (radix, skip) = if b.len() > 2 && b[0] == b'0' && b[1] | 0x20 == b'x' && b[2].is_ascii_hexdigit() {
        (16, 2)
    } else if b.first() == Some(&b'0') {
        (8, 0)
    } else {
        (10, 0)
    };
    let digits = &t[skip..];
    let n = digits.bytes().take_while(|c| char::from(*c).is_digit(radix)).count();
    if n == 0 {
        return None;
    }
    Some((u64::from_str_radix(&digits[..n], radix).ok(), &digits[n..]))
}

/// `xtables_strtoul(s, NULL, ..)`: the whole text is a number in `min..=max`.
pub(crate) fn xt_strtoul(s: &str, min: u64, max: u64) -> Option<u64> {
    match strtoumax0(s)? {
        (Some(v), "") if (min..=max).contains(&v) => Some(v),
        _ => None,
    }
}

/// `xtables_strtoul(s, &end, ..)`: a leading number in `min..=max`, and the rest of the text.
pub(crate) fn xt_strtoul_end(s: &str, min: u64, max: u64) -> Option<(u64, &str)> {
    match strtoumax0(s)? {
        (Some(v), rest) if (min..=max).contains(&v) => Some((v, rest)),
        _ => None,
    }
}

/// `getservbyname(name, NULL)`: the port of a service of any protocol.
pub(crate) fn service_any_proto(name: &str) -> Option<u16> {
    ["tcp", "udp", "sctp", "dccp"].into_iter().find_map(|p| services::service_port(name, p))
}

/// A numeric host as `getaddrinfo` reads it for `family`: for IPv4 `inet_aton`'s forms (one to
/// four parts, each decimal, `0x` hex or `0` octal, the last filling the remaining bytes:
/// `10.1` is 10.0.0.1), for IPv6 the usual text form. Host names are not resolved.
pub(crate) fn parse_host(s: &str, family: Family) -> Result<IpAddr, String> {
    let parsed = match family {
        Family::V4 => parse_v4_aton(s).map(IpAddr::V4),
        Family::V6 => s.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
    };
    parsed.ok_or_else(|| {
        if s.is_empty() { "missing address".to_string() } else { format!("host `{s}` not found (expected a numeric address; host names are not resolved)") }
    })
}

fn parse_v4_aton(s: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u64; 4];
    let mut n = 0;
    let mut rest = s;
    loop {
        if n == 4 || !rest.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let (v, r) = strtoumax0(rest)?;
        parts[n] = v.filter(|v| *v <= 0xffff_ffff)?;
        n += 1;
        match r.strip_prefix('.') {
            Some(r) => rest = r,
            None if r.is_empty() => break,
            None => return None,
        }
    }
    // The last part fills the bytes the others left: 32 bits alone, 24 after one part, ...
    let bits = 8 * (5 - n as u32);
    let last = parts[n - 1];
    if parts[..n - 1].iter().any(|p| *p > 0xff) || last >> bits != 0 {
        return None;
    }
    let mut addr = 0u64;
    for p in &parts[..n - 1] {
        addr = addr << 8 | p;
    }
    addr = addr << bits | last;
    Some(Ipv4Addr::from(addr as u32))
}

/// `xt_dnat_target_v2`: the destination becomes the range's first address and port (the kernel
/// picks within the range; the branch notes it); the verdict is ACCEPT.
impl Effect for Dnat {
    fn effect<'a, D: Domain<'a>>(&self, d: &mut D, mut st: D::State, _: &Cx<'_, 'a, D>) -> Applied<D::State> {
        let Some(to) = self.to.as_deref() else { return go(st) };
        let addr = to.addrs.map_or(st.dst(), |a| d.lift(a.first));
        let port = to.ports.map_or(st.dport(), |p| d.lift_port(p.lo));
        if to.addrs.is_some_and(|a| a.first != a.last) || to.ports.is_some_and(|p| p.lo != p.hi) {
            st.note_range();
        }
        st.dnat(addr, port);
        Applied::One(st, Some(End::Accept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Neg, Proto, TableName};

    fn ctx(family: Family, proto: Option<u8>) -> Ctx {
        Ctx { family, table: TableName::Nat, proto: proto.map(|p| Neg::new(Proto(p), false)) }
    }

    fn v4(line: &str) -> Result<String, String> {
        check_alone::<Dnat>(ctx(Family::V4, None), line)
    }

    fn v4_tcp(line: &str) -> Result<String, String> {
        check_alone::<Dnat>(ctx(Family::V4, Some(6)), line)
    }

    fn v6(line: &str) -> Result<String, String> {
        check_alone::<Dnat>(ctx(Family::V6, None), line)
    }

    fn v6_tcp(line: &str) -> Result<String, String> {
        check_alone::<Dnat>(ctx(Family::V6, Some(6)), line)
    }

    /// Every line of libipt_DNAT.t.
    #[test]
    fn libipt_dnat_t() {
        let same = |l: &str, f: fn(&str) -> Result<String, String>| {
            assert_eq!(f(l).as_deref(), Ok(&*format!(" {l}")), "{l}");
        };
        same("--to-destination 1.1.1.1", v4);
        same("--to-destination 1.1.1.1-1.1.1.10", v4);
        assert!(v4("--to-destination 1.1.1.1:1025-65535").is_err());
        assert!(v4("--to-destination 1.1.1.1 --to-destination 2.2.2.2").is_err());
        same("--to-destination 1.1.1.1:1025-65535", v4_tcp);
        same("--to-destination 1.1.1.1-1.1.1.10:1025-65535", v4_tcp);
        assert!(v4_tcp("--to-destination 1.1.1.1-1.1.1.10:1025-65536").is_err());
        assert!(v4_tcp("--to-destination 1.1.1.1-1.1.1.10:1025-65535 --to-destination 2.2.2.2-2.2.2.20:1025-65535").is_err());
        same("--to-destination 1.1.1.1:1000-2000/1000", v4_tcp);
        same("--to-destination 1.1.1.1:1000-2000/3000", v4_tcp);
        same("--to-destination 1.1.1.1:1000-2000/65535", v4_tcp);
        assert!(v4_tcp("--to-destination 1.1.1.1:1000-2000/0").is_err());
        assert!(v4_tcp("--to-destination 1.1.1.1:1000-2000/65536").is_err());
        assert_eq!(v4_tcp("--to-destination 1.1.1.1:ssh").unwrap(), " --to-destination 1.1.1.1:22");
        assert_eq!(v4_tcp("--to-destination 1.1.1.1:ftp-data").unwrap(), " --to-destination 1.1.1.1:20");
        assert!(v4_tcp("--to-destination 1.1.1.1:echo-ssh").is_err());
        assert_eq!(v4_tcp("--to-destination 1.1.1.1:10-20/ftp").unwrap(), " --to-destination 1.1.1.1:10-20/21");
        assert!(v4("").is_err());
    }

    /// Every line of libip6t_DNAT.t.
    #[test]
    fn libip6t_dnat_t() {
        let same = |l: &str, f: fn(&str) -> Result<String, String>| {
            assert_eq!(f(l).as_deref(), Ok(&*format!(" {l}")), "{l}");
        };
        same("--to-destination dead::beef", v6);
        same("--to-destination dead::beef-dead::fee7", v6);
        assert!(v6("--to-destination [dead::beef]:1025-65535").is_err());
        assert!(v6("--to-destination [dead::beef] --to-destination [dead::fee7]").is_err());
        same("--to-destination [dead::beef]:1025-65535", v6_tcp);
        same("--to-destination [dead::beef-dead::fee7]:1025-65535", v6_tcp);
        assert!(v6_tcp("--to-destination [dead::beef-dead::fee7]:1025-65536").is_err());
        assert!(v6_tcp("--to-destination [dead::beef-dead::fee7]:1025-65535 --to-destination [dead::beef-dead::fee8]:1025-65535").is_err());
        same("--to-destination [dead::beef-dead::fee7]:1000-2000/1000", v6_tcp);
        same("--to-destination [dead::beef-dead::fee7]:1000-2000/3000", v6_tcp);
        same("--to-destination [dead::beef-dead::fee7]:1000-2000/65535", v6_tcp);
        assert!(v6_tcp("--to-destination [dead::beef-dead::fee7]:1000-2000/0").is_err());
        assert!(v6_tcp("--to-destination [dead::beef-dead::fee7]:1000-2000/65536").is_err());
        assert_eq!(v6_tcp("--to-destination [dead::beef]:ssh").unwrap(), " --to-destination [dead::beef]:22");
        assert_eq!(v6_tcp("--to-destination [dead::beef]:ftp-data").unwrap(), " --to-destination [dead::beef]:20");
        assert!(v6_tcp("--to-destination [dead::beef]:echo-ssh").is_err());
        assert_eq!(v6_tcp("--to-destination [dead::beef]:10-20/ftp").unwrap(), " --to-destination [dead::beef]:10-20/21");
        assert!(v6("").is_err());
    }

    /// Forms checked against iptables-nft-restore / iptables-save 1.8.9 on this machine.
    #[test]
    fn quirks_match_iptables_1_8_9() {
        let ok = |f: fn(&str) -> Result<String, String>, l: &str, want: &str| {
            assert_eq!(f(l).as_deref(), Ok(want), "{l}");
        };
        ok(v4, "--to-destination 1.1.1.10-1.1.1.1", " --to-destination 1.1.1.10-1.1.1.1");
        ok(v4, "--to 1.1.1.1 --random --persistent", " --to-destination 1.1.1.1 --random --persistent");
        ok(v4, "--persistent --random --to-destination 0.0.0.0", " --to-destination 0.0.0.0 --random --persistent");
        ok(v4_tcp, "--to-destination 10:80", " --to-destination :80");
        ok(v4_tcp, "--to-destination 1.1.1.1:0x50", " --to-destination 1.1.1.1:80");
        ok(v4_tcp, "--to-destination 1.1.1.1:http", " --to-destination 1.1.1.1:80");
        ok(v4_tcp, "--to-destination 1.1.1.1:1000-2000/30x", " --to-destination 1.1.1.1:1000-2000/30");
        ok(v4_tcp, "--to-destination 1.1.1.1-2.2.2.2:1-2/3", " --to-destination 1.1.1.1-2.2.2.2:1-2/3");
        let udp = ctx(Family::V4, Some(17));
        assert_eq!(check_alone::<Dnat>(udp, "--to-destination 1.1.1.1:bootpc").unwrap(), " --to-destination 1.1.1.1:68");
        assert_eq!(check_alone::<Dnat>(udp, "--to-destination 1.1.1.1:ssh").unwrap(), " --to-destination 1.1.1.1:22");
        for p in [1, 17, 33, 132] {
            assert!(check_alone::<Dnat>(ctx(Family::V4, Some(p)), "--to-destination :80-90").is_ok());
        }
        // UDP-Lite is not among the protocols libxt_NAT takes ports for.
        assert!(check_alone::<Dnat>(ctx(Family::V4, Some(136)), "--to-destination :80").is_err());
        // `! -p tcp` still counts as tcp.
        let not_tcp = Ctx { proto: Some(Neg::new(Proto::TCP, true)), ..ctx(Family::V4, None) };
        assert!(check_alone::<Dnat>(not_tcp, "--to-destination 1.1.1.1:80").is_ok());
        for bad in [
            "--to-destination 1.1.1.1:90-80",
            "--to-destination 1.1.1.1:80:90",
            "--to-destination 1.1.1.1:80-http",
            "--to-destination 1.1.1.1:1000/30",
            "--to-destination 1.1.1.1:1000-2000x",
            "--to-destination 1.1.1.1:80x",
            "--to-destination 1.1.1.1:",
            "--to-destination :",
            "--to-destination 1.1.1.1:-5",
            "--to-destination 10.1",
            "--to-destination 01.1.1.1",
            "--to-destination 1.1.1.1-",
            "--to-destination [1.1.1.1]",
            "--to-destination localhost",
            "--to-destination 1.1.1.1 --random --random",
            "--to-destination 1.1.1.1 --random-fully",
            "! --to-destination 1.1.1.1",
        ] {
            assert!(v4_tcp(bad).is_err(), "{bad}");
        }
        ok(v6, "--to-destination [dead::beef]", " --to-destination dead::beef");
        ok(v6, "--to-destination [dead::beef]xyz", " --to-destination dead::beef");
        ok(v6_tcp, "--to-destination []:80", " --to-destination :80");
        ok(v6_tcp, "--to-destination :80", " --to-destination :80");
        ok(v6_tcp, "--to-destination dead::beef:80", " --to-destination dead::beef:80");
        let icmp6 = ctx(Family::V6, Some(1));
        assert!(check_alone::<Dnat>(icmp6, "--to-destination [dead::beef]:80").is_ok());
        assert!(check_alone::<Dnat>(ctx(Family::V6, Some(58)), "--to-destination [dead::beef]:80").is_err());
        ok(v6, "--to-destination ::1.2.3.4", " --to-destination ::1.2.3.4");
        ok(v6, "--to-destination ::0102:0304", " --to-destination ::1.2.3.4");
        ok(v6, "--to-destination ::1:2", " --to-destination ::0.1.0.2");
        ok(v6, "--to-destination ::ffff:1.2.3.4", " --to-destination ::ffff:1.2.3.4");
        ok(v6, "--to-destination ::ffff:0:0", " --to-destination ::ffff:0.0.0.0");
        ok(v6, "--to-destination 1:0:0:0:0:0:0:0", " --to-destination 1::");
        ok(v6, "--to-destination 0:0:0:0:1::", " --to-destination ::1:0:0:0");
        ok(v6, "--to-destination ::1:0:0:0:1", " --to-destination ::1:0:0:0:1");
        assert!(v6("--to-destination 1.2.3.4").is_err());
        assert!(v6("--to-destination [dead::beef").is_err());
    }

    #[test]
    fn numbers_and_hosts_follow_libc() {
        assert_eq!(xt_strtoul(" 3", 0, 7), Some(3));
        assert_eq!(xt_strtoul("+0x10", 0, 99), Some(16));
        assert_eq!(xt_strtoul("010", 0, 99), Some(8));
        assert_eq!(xt_strtoul("08", 0, 99), None);
        assert_eq!(xt_strtoul("-0", 0, 99), None);
        assert_eq!(xt_strtoul("5x", 0, 99), None);
        assert_eq!(xt_strtoul("99999999999999999999999", 0, u64::MAX), None);
        assert_eq!(xt_strtoul_end("0x", 0, 9), Some((0, "x")));
        let host = |s| parse_host(s, Family::V4).map(|a| a.to_string());
        assert_eq!(host("10.1").unwrap(), "10.0.0.1");
        assert_eq!(host("0x7f.1").unwrap(), "127.0.0.1");
        assert_eq!(host("017.1.2.3").unwrap(), "15.1.2.3");
        assert_eq!(host("4294967295").unwrap(), "255.255.255.255");
        assert_eq!(host("1.2.65535").unwrap(), "1.2.255.255");
        assert!(host("1.2.65536").is_err());
        assert!(host("256.1").is_err());
        assert!(host("1.2.3.4x").is_err());
        assert!(host("1.2.3.4.5").is_err());
        assert!(host("").is_err());
        assert!(host("localhost").is_err());
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Dnat>() <= 40);
    }
}
