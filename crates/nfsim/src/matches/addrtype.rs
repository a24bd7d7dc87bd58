//! `-m addrtype`: the routing type of the source or destination address, as the FIB sees it
//! (`xt_addrtype.c` revision 1, `libxt_addrtype.c`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, net_set, points, space, tests};
use crate::classes::region::Test;
use crate::classes::set::Ranges;
use crate::host::Host;
use crate::matches::Eval;

use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once, save_invert};
use crate::xt::{Family, Hook, HookMask};

/// Route types in bit order (`RTN_*` of `<linux/rtnetlink.h>`): bit `i` of a mask is
/// `ADDR_TYPES[i]`.
pub const ADDR_TYPES: [&str; 12] =
    ["UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE"];

/// A set of route types (bit `i` = [`ADDR_TYPES`]`[i]`) and its inversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AddrTypes {
    /// The types, as the kernel's bit mask.
    pub mask: u16,
    /// `!`.
    pub invert: bool,
}

/// `--limit-iface-in` / `--limit-iface-out`: look the address up only for the packet's own
/// interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitIface {
    /// `--limit-iface-in`: the incoming interface.
    In,
    /// `--limit-iface-out`: the outgoing interface.
    Out,
}

/// The addrtype match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Addrtype {
    /// `--src-type`.
    pub src: Option<AddrTypes>,
    /// `--dst-type`.
    pub dst: Option<AddrTypes>,
    /// `--limit-iface-in` / `--limit-iface-out`.
    pub limit_iface: Option<LimitIface>,
}

impl Addrtype {
    /// The hooks the kernel accepts this match in: `--limit-iface-in` not in OUTPUT and
    /// POSTROUTING, `--limit-iface-out` not in PREROUTING and INPUT.
    pub fn valid_hooks(&self) -> HookMask {
        match self.limit_iface {
            None => HookMask::ALL,
            Some(LimitIface::In) => HookMask::of(&[Hook::Prerouting, Hook::Input, Hook::Forward]),
            Some(LimitIface::Out) => HookMask::of(&[Hook::Forward, Hook::Output, Hook::Postrouting]),
        }
    }
}

/// Parses `TYPE[,TYPE]...`; each type is a case-insensitive prefix of a route type name, the
/// first in [`ADDR_TYPES`] order winning (`U` is UNSPEC).
fn parse_types(s: &str) -> Result<u16, String> {
    let mut mask = 0;
    for item in s.split(',') {
        let bit = ADDR_TYPES
            .iter()
            .position(|name| !item.is_empty() && item.len() <= name.len() && name.as_bytes()[..item.len()].eq_ignore_ascii_case(item.as_bytes()))
            .ok_or_else(|| format!("bad address type `{item}` (expected {})", ADDR_TYPES.join(", ")))?;
        mask |= 1 << bit;
    }
    Ok(mask)
}

fn save_types(out: &mut String, mask: u16) {
    let mut sep = ' ';
    for (i, name) in ADDR_TYPES.iter().enumerate() {
        if mask & (1 << i) != 0 {
            out.push(sep);
            out.push_str(name);
            sep = ',';
        }
    }
}

impl Extension for Addrtype {
    const OPTIONS: &'static [&'static str] = &["src-type", "dst-type", "limit-iface-in", "limit-iface-out"];

    fn new(_ctx: &Ctx) -> Self {
        Addrtype::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "src-type" | "dst-type" => {
                let slot = if opt == "src-type" { &mut self.src } else { &mut self.dst };
                once(slot, opt)?;
                let mask = parse_types(args.value()?)?;
                *slot = Some(AddrTypes { mask, invert });
            }
            "limit-iface-in" | "limit-iface-out" => {
                no_invert(invert, opt)?;
                let limit = if opt == "limit-iface-in" { LimitIface::In } else { LimitIface::Out };
                match self.limit_iface {
                    None => self.limit_iface = Some(limit),
                    Some(l) if l == limit => {
                        return Err(format!("option `--{opt}` may be given only once"));
                    }
                    Some(_) => {
                        return Err("`--limit-iface-in` cannot be used together with `--limit-iface-out`".into());
                    }
                }
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if self.src.is_none() && self.dst.is_none() {
            return Err("the addrtype match requires `--src-type` or `--dst-type`".into());
        }
        if ctx.family == Family::V6 {
            let used = self.src.map_or(0, |t| t.mask) | self.dst.map_or(0, |t| t.mask);
            if used & (1 << 6) != 0 {
                return Err("ip6tables' addrtype cannot match BLACKHOLE".into());
            }
            if used >= 1 << 8 {
                return Err("ip6tables' addrtype cannot match PROHIBIT, THROW, NAT or XRESOLVE".into());
            }
            if used & (1 << 3) != 0 {
                return Err("ip6tables' addrtype cannot match BROADCAST".into());
            }
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        for (name, slot) in [("src-type", self.src), ("dst-type", self.dst)] {
            if let Some(t) = slot {
                save_invert(out, t.invert);
                out.push_str(" --");
                out.push_str(name);
                save_types(out, t.mask);
            }
        }
        match self.limit_iface {
            Some(LimitIface::In) => out.push_str(" --limit-iface-in"),
            Some(LimitIface::Out) => out.push_str(" --limit-iface-out"),
            None => {}
        }
    }
}

/// Bit of [`ADDR_TYPES`] for each `RTN_*` the model produces.
pub(crate) const UNSPEC: u16 = 1 << 0;
pub(crate) const UNICAST: u16 = 1 << 1;
pub(crate) const LOCAL: u16 = 1 << 2;
pub(crate) const BROADCAST: u16 = 1 << 3;
pub(crate) const ANYCAST: u16 = 1 << 4;
pub(crate) const MULTICAST: u16 = 1 << 5;
pub(crate) const UNREACHABLE: u16 = 1 << 7;

/// The interface whose subnet broadcast address `ip` is (`broadcast` routes of the local
/// table: one per primary address with a prefix shorter than 31, `lo`'s 127.255.255.255
/// included), the first in interface order.
fn broadcast_dev(host: &Host, ip: Ipv4Addr) -> Option<String> {
    host.all_interfaces().into_iter().find(|i| i.addrs.iter().any(|n| matches!(n, IpNet::V4(n) if n.prefix_len() < 31 && n.broadcast() == ip))).map(|i| i.name)
}

/// The interface of the `local` route for `ip`: the one holding the address, or `lo` for the
/// rest of 127.0.0.0/8.
fn local_dev(host: &Host, ip: IpAddr) -> Option<String> {
    match host.all_interfaces().into_iter().find(|i| i.addrs.iter().any(|n| n.addr() == ip)) {
        Some(i) => Some(i.name),
        None if host.is_local(ip) => Some("lo".to_string()),
        None => None,
    }
}

/// `inet_dev_addr_type`: the route type (as an [`ADDR_TYPES`] bit) of `ip` in the local table,
/// the zero network and the limited broadcast address being `BROADCAST` and multicast
/// addresses `MULTICAST` before any lookup (so IPv4 never yields `UNSPEC`). With `dev`, a
/// local-table route through another interface counts as `UNICAST`, like no route.
fn type4(host: &Host, ip: Ipv4Addr, dev: Option<&str>) -> u16 {
    if ip.octets()[0] == 0 || ip == Ipv4Addr::BROADCAST {
        return BROADCAST;
    }
    if ip.is_multicast() {
        return MULTICAST;
    }
    // Longest prefix first: a broadcast /32 beats `local 127.0.0.0/8`.
    let (bit, route_dev) = if let Some(d) = broadcast_dev(host, ip) {
        (BROADCAST, d)
    } else if let Some(d) = local_dev(host, IpAddr::V4(ip)) {
        (LOCAL, d)
    } else {
        return UNICAST;
    };
    if dev.is_none_or(|d| d == route_dev) { bit } else { UNICAST }
}

/// True when `ip` has a route on `host` (the IPv6 part of `nf_ip6_route`): a local address, a
/// connected or explicit route, or, on a host with an interface besides `lo`, the multicast
/// (`ff00::/8`) and link-local (`fe80::/64`) routes the kernel gives every IPv6 interface.
fn routable6(host: &Host, ip: Ipv6Addr) -> bool {
    let auto = ip.is_multicast() || ip.segments()[..4] == [0xfe80, 0, 0, 0];
    host.is_local(IpAddr::V6(ip)) || host.route(IpAddr::V6(ip), 0).is_some() || (auto && host.all_interfaces().iter().any(|i| i.name != "lo"))
}

/// `ipv6_anycast_destination` for `ip`: it is the subnet-router anycast address (the prefix
/// itself) of a connected prefix shorter than /127.
fn anycast6(host: &Host, ip: Ipv6Addr) -> bool {
    host.all_interfaces().iter().flat_map(|i| i.addrs.iter()).any(|n| matches!(n, IpNet::V6(n) if n.prefix_len() < 127 && n.network() == ip))
}

/// `match_type6`: for IPv6 the listed types are all required. `MULTICAST`, `UNICAST` and
/// `UNSPEC` test the address's class (`ipv6_addr_type`); `LOCAL`, `ANYCAST` and
/// `UNREACHABLE` are then looked up in the routes, and at least one of those listed must hold.
fn match6(host: &Host, ip: Ipv6Addr, dev: Option<&str>, mask: u16) -> Result<bool, String> {
    let multicast = ip.is_multicast();
    let mapped = ip.segments()[..6] == [0, 0, 0, 0, 0, 0xffff];
    let unicast = !multicast && !ip.is_unspecified() && !mapped;
    if (mask & MULTICAST != 0 && !multicast) || (mask & UNICAST != 0 && !unicast) || (mask & UNSPEC != 0 && !ip.is_unspecified()) {
        return Ok(false);
    }
    if mask & (LOCAL | ANYCAST | UNREACHABLE) == 0 {
        return Ok(true);
    }
    let found = match dev {
        // With an interface, LOCAL means the address is configured on it
        // (`ipv6_chk_addr(.., dev, strict)`), whose local route the lookup then finds.
        Some(d) if mask & (ANYCAST | UNREACHABLE) == 0 => {
            if host.interface(d).is_some_and(|i| i.addrs.iter().any(|n| n.addr() == IpAddr::V6(ip))) {
                LOCAL
            } else {
                0
            }
        }
        Some(d) => {
            return Err(format!(
                "`-m addrtype` with ANYCAST or UNREACHABLE and an interface limit depends on an IPv6 route lookup restricted to `{d}`, which is not modelled"
            ));
        }
        None if !routable6(host, ip) => UNREACHABLE,
        None => {
            let local = if host.is_local(IpAddr::V6(ip)) { LOCAL } else { 0 };
            let anycast = if anycast6(host, ip) { ANYCAST } else { 0 };
            local | anycast
        }
    };
    Ok(mask & found != 0)
}

impl crate::matches::Evaluate for Addrtype {
    /// `addrtype_mt_v1` (`xt_addrtype.c`): the source type test, then the destination one,
    /// each flipped by its own `!`. IPv4 asks the local routing table for the address's type,
    /// which must be one of those listed (`type4`); IPv6 requires every listed class
    /// (`match6`). `--limit-iface-in` / `--limit-iface-out` restrict the lookup to the
    /// packet's input / output interface.
    fn eval(&self, pkt: &crate::packet::Packet, cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let dev = match self.limit_iface {
            None => None,
            Some(LimitIface::In) => match &pkt.in_iface {
                Some(i) => Some(i.as_str()),
                None => return Eval::Unknown("`-m addrtype --limit-iface-in` needs the packet's input interface, which is not known".into()),
            },
            Some(LimitIface::Out) => match &pkt.out_iface {
                Some(i) => Some(i.as_str()),
                None => return Eval::Unknown("`-m addrtype --limit-iface-out` needs the packet's output interface, which is not known".into()),
            },
        };
        let test = |types: Option<AddrTypes>, ip: IpAddr| -> Eval {
            let Some(t) = types else { return Eval::Match };
            let hit = match ip {
                IpAddr::V4(v4) => Ok(t.mask & type4(cx.host, v4, dev) != 0),
                IpAddr::V6(v6) => match6(cx.host, v6, dev, t.mask),
            };
            match hit {
                Ok(b) => Eval::from_bool(b != t.invert),
                Err(why) => Eval::Unknown(why),
            }
        };
        test(self.src, pkt.src).and(test(self.dst, pkt.dst))
    }
}

/// `type4` for an address the host names (one of its addresses or subnet broadcasts): the broadcast
/// route first, then the local one, each through its interface.
fn type4_named(host: &Host, ip: Ipv4Addr, dev: Option<&str>) -> u16 {
    let bcast = host.ifaces().find(|i| i.addrs.iter().any(|n| matches!(n, IpNet::V4(n) if n.prefix_len() < 31 && n.broadcast() == ip)));
    let (bit, route_dev) = if let Some(i) = bcast {
        (BROADCAST, i.name.as_str())
    } else if let Some(i) = host.ifaces().find(|i| i.addrs.iter().any(|n| n.addr() == IpAddr::V4(ip))) {
        (LOCAL, i.name.as_str())
    } else if ip.is_loopback() {
        (LOCAL, "lo")
    } else {
        return UNICAST;
    };
    if dev.is_none_or(|d| d == route_dev) { bit } else { UNICAST }
}

/// The IPv4 addresses whose type (`type4`) is in `mask`: the zero network and the limited broadcast
/// are BROADCAST, 224.0.0.0/4 MULTICAST, the host's addresses and subnet broadcasts as their routes
/// say, the rest of 127.0.0.0/8 LOCAL through `lo`, anything else UNICAST.
fn types4(host: &Host, dev: Option<&str>, mask: u16) -> Ranges<u128> {
    let all = Ranges::addr_space(32);
    let zero_bcast = Ranges::range(0, 0x00ff_ffff).union(&Ranges::point(0xffff_ffff));
    let mcast = Ranges::range(0xe000_0000, 0xefff_ffff);
    let loopback = Ranges::range(0x7f00_0000, 0x7fff_ffff);
    let mut named: Vec<Ipv4Addr> = Vec::new();
    for i in host.ifaces() {
        for n in &i.addrs {
            if let IpNet::V4(n) = n {
                named.push(n.addr());
                if n.prefix_len() < 31 {
                    named.push(n.broadcast());
                }
            }
        }
    }
    named.retain(|a| !zero_bcast.contains(u32::from(*a).into()) && !mcast.contains(u32::from(*a).into()));
    named.sort_unstable();
    named.dedup();
    let named_set = points(named.iter().map(|&a| u128::from(u32::from(a))));
    let mut hit = Ranges::empty();
    if mask & BROADCAST != 0 {
        hit = hit.union(&zero_bcast);
    }
    if mask & MULTICAST != 0 {
        hit = hit.union(&mcast);
    }
    hit = hit.union(&points(named.iter().filter(|&&a| mask & type4_named(host, a, dev) != 0).map(|&a| u128::from(u32::from(a)))));
    let lo_type = if dev.is_none_or(|d| d == "lo") { LOCAL } else { UNICAST };
    if mask & lo_type != 0 {
        hit = hit.union(&loopback.minus(&named_set));
    }
    if mask & UNICAST != 0 {
        hit = hit.union(&all.minus(&zero_bcast.union(&mcast).union(&named_set).union(&loopback)));
    }
    hit
}

/// The IPv6 addresses `match6` accepts for `mask`; `None` where it would answer unknown (ANYCAST /
/// UNREACHABLE with an interface limit, for addresses of the listed classes).
fn types6(host: &Host, dev: Option<&str>, mask: u16) -> Option<Ranges<u128>> {
    let all = Ranges::<u128>::full();
    let mcast = Ranges::from_prefix(0xff00 << 112, 8, 128);
    let mapped = Ranges::from_prefix(0xffff << 32, 96, 128);
    let unspec = Ranges::point(0);
    let mut class = all.clone();
    if mask & MULTICAST != 0 {
        class = class.intersect(&mcast);
    }
    if mask & UNICAST != 0 {
        class = class.minus(&mcast.union(&mapped).union(&unspec));
    }
    if mask & UNSPEC != 0 {
        class = class.intersect(&unspec);
    }
    if mask & (LOCAL | ANYCAST | UNREACHABLE) == 0 {
        return Some(class);
    }
    let v6 = |i: &crate::host::Interface| i.addrs.iter().filter_map(|n| if let IpNet::V6(n) = n { Some(*n) } else { None }).collect::<Vec<_>>();
    match dev {
        Some(d) if mask & (ANYCAST | UNREACHABLE) == 0 => {
            let on_dev = host.interface(d).map_or_else(Ranges::empty, |i| points(v6(i).iter().map(|n| u128::from(n.addr()))));
            Some(class.intersect(&on_dev))
        }
        Some(_) => class.is_empty().then(Ranges::empty),
        None => {
            let nets: Vec<_> = host.ifaces().flat_map(v6).collect();
            let local = points(nets.iter().map(|n| u128::from(n.addr())));
            let anycast = points(nets.iter().filter(|n| n.prefix_len() < 127).map(|n| u128::from(n.network())));
            let found = |bit: u16, s: &Ranges<u128>| if mask & bit != 0 { s.clone() } else { Ranges::empty() };
            let unrouted = all.minus(&routable6_set(host));
            Some(class.intersect(&found(UNREACHABLE, &unrouted).union(&found(LOCAL, &local)).union(&found(ANYCAST, &anycast))))
        }
    }
}

/// The IPv6 destinations `Host::route` (mark 0) finds a route for, plus the multicast and
/// link-local routes of a host with an interface besides `lo` (`routable6`).
fn routable6_set(host: &Host) -> Ranges<u128> {
    let mut nets: Vec<IpNet> = Vec::new();
    for rule in &host.policy {
        if rule.fwmark == 0
            && let Some(t) = host.tables.get(&rule.table)
        {
            nets.extend(t.iter().map(|r| r.dst));
        }
    }
    nets.extend(host.ifaces().flat_map(|i| i.addrs.iter().map(IpNet::trunc)));
    nets.extend(host.routes.iter().map(|r| r.dst));
    let mut s = nets.iter().fold(Ranges::empty(), |acc, n| acc.union(&net_set(n, Family::V6)));
    if let Some(gw @ IpAddr::V6(_)) = host.gateway
        && host.ifaces().any(|i| i.addrs.iter().any(|a| a.contains(&gw)))
    {
        s = Ranges::full();
    }
    if host.ifaces().any(|i| i.name != "lo") {
        s = s.union(&Ranges::from_prefix(0xff00 << 112, 8, 128)).union(&Ranges::from_prefix(0xfe80 << 112, 64, 128));
    }
    s
}

impl Cond for Addrtype {
    const READS: Fields = Fields::SRC.or(Fields::DST);

    /// `addrtype_mt_v1`: each side's address must have a listed type (flipped by its `!`). With an
    /// interface limit and no interface, the eval is unknown; an IPv6 route lookup restricted to an
    /// interface (ANYCAST / UNREACHABLE with a limit) is left to the eval.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        let dev = match self.limit_iface {
            None => None,
            Some(LimitIface::In) => match cx.in_iface {
                Some(i) => Some(i),
                None => return MatchCond::Concrete(Fields::NONE),
            },
            Some(LimitIface::Out) => match cx.out_iface {
                Some(i) => Some(i),
                None => return MatchCond::Concrete(Fields::NONE),
            },
        };
        let side = |t: Option<AddrTypes>| -> Option<Option<Ranges<u128>>> {
            let Some(t) = t else { return Some(None) };
            let hit = match cx.family {
                Family::V4 => types4(cx.host, dev, t.mask),
                Family::V6 => types6(cx.host, dev, t.mask)?,
            };
            Some(Some(if t.invert { space(cx).minus(&hit) } else { hit }))
        };
        match (side(self.src), side(self.dst)) {
            (Some(src), Some(dst)) => tests(cx, vec![Test { src, dst, ..Test::default() }]),
            // One side is unknown for some addresses: a certain no-match on the other side still wins.
            (Some(Some(s)), None) | (None, Some(Some(s))) if s.intersect(&space(cx)).is_empty() => MatchCond::Eval(Eval::NoMatch),
            _ => {
                let src = if self.src.is_some() { Fields::SRC } else { Fields::NONE };
                let dst = if self.dst.is_some() { Fields::DST } else { Fields::NONE };
                MatchCond::Concrete(src.or(dst))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::TableName;
    use crate::xt::ext::check_alone;

    fn ctx(family: Family) -> Ctx {
        Ctx { family, table: TableName::Filter, proto: None }
    }

    fn check(line: &str) -> Result<String, String> {
        check_alone::<Addrtype>(ctx(Family::V4), line)
    }

    fn parsed(line: &str) -> Addrtype {
        let c = ctx(Family::V4);
        let mut toks = Vec::new();
        crate::xt::token::tokenize(line, 0, &mut toks);
        let mut m = Addrtype::new(&c);
        let mut pos = 0;
        while pos < toks.len() {
            let opt = toks[pos].as_str().trim_start_matches('-').to_string();
            let mut args = crate::xt::ext::Args::new(&toks, pos + 1, c);
            m.parse(&opt, false, &mut args).unwrap();
            pos = args.pos();
        }
        m
    }

    /// Every line of iptables' `extensions/libxt_addrtype.t`.
    #[test]
    fn libxt_addrtype_t() {
        assert!(check("").is_err());
        assert!(check("--src-type wrong").is_err());
        for line in ["--src-type UNSPEC", "--dst-type UNSPEC", "--src-type LOCAL --dst-type LOCAL"] {
            assert_eq!(check(line), Ok(format!(" {line}")), "{line}");
        }
        for line in ["--limit-iface-in", "--limit-iface-out", "--limit-iface-in --limit-iface-out", "--src-type LOCAL --limit-iface-in --limit-iface-out"] {
            assert!(check(line).is_err(), "{line}");
        }
        // The `:INPUT` / `:OUTPUT` lines: accepted by the extension, their hooks checked by
        // `valid_hooks` (OUTPUT refuses `--limit-iface-in`, INPUT `--limit-iface-out`).
        for line in [
            "--src-type LOCAL --limit-iface-in",
            "--dst-type LOCAL --limit-iface-in",
            "--src-type LOCAL --limit-iface-out",
            "--dst-type LOCAL --limit-iface-out",
        ] {
            assert_eq!(check(line), Ok(format!(" {line}")), "{line}");
        }
        let input_only = parsed("--src-type LOCAL --limit-iface-in").valid_hooks();
        assert!(input_only.contains(Hook::Input) && !input_only.contains(Hook::Output));
        let output_only = parsed("--dst-type LOCAL --limit-iface-out").valid_hooks();
        assert!(output_only.contains(Hook::Output) && !output_only.contains(Hook::Input));
    }

    /// Values as the real `iptables` / `ip6tables` 1.8.9 read and printed them.
    #[test]
    fn types_like_iptables_1_8_9() {
        for (line, saved) in [
            ("--src-type local,unicast", " --src-type UNICAST,LOCAL"),
            ("--src-type U", " --src-type UNSPEC"),
            ("--src-type UNI,LOC", " --src-type UNICAST,LOCAL"),
            ("! --src-type LOCAL ! --dst-type BROADCAST,MULTICAST", " ! --src-type LOCAL ! --dst-type BROADCAST,MULTICAST"),
            ("--dst-type XRESOLVE,NAT,THROW,PROHIBIT,UNREACHABLE,BLACKHOLE", " --dst-type BLACKHOLE,UNREACHABLE,PROHIBIT,THROW,NAT,XRESOLVE"),
            ("--limit-iface-out --dst-type LOCAL", " --dst-type LOCAL --limit-iface-out"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        for line in [
            "--src-type LOCAL,",
            "--src-type ,LOCAL",
            "--dst-type LOCALX",
            "--src-type LOCAL --src-type UNICAST",
            "--dst-type LOCAL --limit-iface-in --limit-iface-in",
            "--dst-type LOCAL ! --limit-iface-in",
        ] {
            assert!(check(line).is_err(), "{line}");
        }
        let v6 = |line| check_alone::<Addrtype>(ctx(Family::V6), line);
        assert_eq!(v6("--src-type LOCAL").as_deref(), Ok(" --src-type LOCAL"));
        assert!(v6("--src-type UNREACHABLE,MULTICAST,ANYCAST,UNICAST,UNSPEC").is_ok());
        for line in ["--src-type BROADCAST", "--src-type BLACKHOLE", "--src-type PROHIBIT", "--dst-type XRESOLVE"] {
            assert!(v6(line).is_err(), "{line}");
        }
    }

    mod eval {
        use super::super::*;
        use crate::matches::tcp::test_util::{cx, parse};
        use crate::matches::{Eval, Evaluate};
        use crate::packet::Packet;

        fn host() -> Host {
            Host::new("h").iface("eth0", &["10.0.0.5/24", "2001:db8::5/64"]).iface("eth1", &["192.168.1.1/24"]).gateway("10.0.0.1")
        }

        fn run_on(host: &Host, family: Family, line: &str, src: &str, dst: &str, iin: Option<&str>, iout: Option<&str>) -> Eval {
            let mut pkt = Packet::new(6, src.parse().unwrap(), 1, dst.parse().unwrap(), 2);
            pkt.in_iface = iin.map(str::to_string);
            pkt.out_iface = iout.map(str::to_string);
            parse::<Addrtype>(family, 0, line).eval(&pkt, &cx(host, Hook::Prerouting, family == Family::V6))
        }

        fn v4(line: &str, src: &str, dst: &str) -> Eval {
            run_on(&host(), Family::V4, line, src, dst, Some("eth0"), None)
        }

        fn v6(line: &str, src: &str, dst: &str) -> Eval {
            run_on(&host(), Family::V6, line, src, dst, Some("eth0"), None)
        }

        #[test]
        fn ipv4_types() {
            assert_eq!(v4("--dst-type LOCAL", "8.8.8.8", "10.0.0.5"), Eval::Match);
            assert_eq!(v4("--dst-type LOCAL", "8.8.8.8", "192.168.1.1"), Eval::Match);
            assert_eq!(v4("--dst-type LOCAL", "8.8.8.8", "127.0.0.53"), Eval::Match);
            assert_eq!(v4("--dst-type LOCAL", "8.8.8.8", "10.0.0.6"), Eval::NoMatch);
            assert_eq!(v4("--dst-type UNICAST", "8.8.8.8", "10.0.0.6"), Eval::Match);
            assert_eq!(v4("--dst-type UNICAST", "8.8.8.8", "10.0.0.5"), Eval::NoMatch);
            assert_eq!(v4("--dst-type BROADCAST", "8.8.8.8", "10.0.0.255"), Eval::Match);
            assert_eq!(v4("--dst-type BROADCAST", "8.8.8.8", "255.255.255.255"), Eval::Match);
            assert_eq!(v4("--dst-type BROADCAST", "8.8.8.8", "127.255.255.255"), Eval::Match);
            assert_eq!(v4("--dst-type MULTICAST", "8.8.8.8", "239.1.2.3"), Eval::Match);
            assert_eq!(v4("--dst-type BROADCAST,MULTICAST", "8.8.8.8", "239.1.2.3"), Eval::Match);
            // The zero network is BROADCAST to inet_addr_type, never UNSPEC.
            assert_eq!(v4("--src-type UNSPEC", "0.0.0.0", "10.0.0.5"), Eval::NoMatch);
            assert_eq!(v4("--src-type BROADCAST", "0.0.0.0", "10.0.0.5"), Eval::Match);
            assert_eq!(v4("--src-type BROADCAST", "0.1.2.3", "10.0.0.5"), Eval::Match);
            // Types found only in other tables are never produced by the local table.
            assert_eq!(v4("--dst-type BLACKHOLE,UNREACHABLE,PROHIBIT", "8.8.8.8", "1.1.1.1"), Eval::NoMatch);
        }

        #[test]
        fn ipv4_inversion_and_both_sides() {
            assert_eq!(v4("! --dst-type LOCAL", "8.8.8.8", "10.0.0.5"), Eval::NoMatch);
            assert_eq!(v4("! --dst-type LOCAL", "8.8.8.8", "1.1.1.1"), Eval::Match);
            assert_eq!(v4("--src-type LOCAL --dst-type UNICAST", "10.0.0.5", "1.1.1.1"), Eval::Match);
            assert_eq!(v4("--src-type LOCAL --dst-type UNICAST", "10.0.0.6", "1.1.1.1"), Eval::NoMatch);
            assert_eq!(v4("! --src-type LOCAL ! --dst-type LOCAL", "10.0.0.6", "1.1.1.1"), Eval::Match);
            assert_eq!(v4("! --src-type LOCAL ! --dst-type LOCAL", "10.0.0.6", "10.0.0.5"), Eval::NoMatch);
        }

        #[test]
        fn ipv4_interface_limit() {
            let h = host();
            let run = |line, dst, iin, iout| run_on(&h, Family::V4, line, "8.8.8.8", dst, iin, iout);
            // The address of eth1 is local to the host, but not to eth0.
            assert_eq!(run("--dst-type LOCAL --limit-iface-in", "10.0.0.5", Some("eth0"), None), Eval::Match);
            assert_eq!(run("--dst-type LOCAL --limit-iface-in", "192.168.1.1", Some("eth0"), None), Eval::NoMatch);
            assert_eq!(run("--dst-type UNICAST --limit-iface-in", "192.168.1.1", Some("eth0"), None), Eval::Match);
            assert_eq!(run("--dst-type LOCAL --limit-iface-in", "192.168.1.1", Some("eth1"), None), Eval::Match);
            assert_eq!(run("--dst-type LOCAL --limit-iface-in", "127.0.0.1", Some("eth0"), None), Eval::NoMatch);
            assert_eq!(run("--dst-type LOCAL --limit-iface-in", "127.0.0.1", Some("lo"), None), Eval::Match);
            assert_eq!(run("--dst-type BROADCAST --limit-iface-out", "192.168.1.255", None, Some("eth1")), Eval::Match);
            assert_eq!(run("--dst-type BROADCAST --limit-iface-out", "192.168.1.255", None, Some("eth0")), Eval::NoMatch);
            // The limited broadcast and multicast are decided before the lookup.
            assert_eq!(run("--dst-type BROADCAST --limit-iface-in", "255.255.255.255", Some("eth1"), None), Eval::Match);
            assert_eq!(run("--dst-type MULTICAST --limit-iface-in", "224.0.0.1", Some("eth1"), None), Eval::Match);
            assert!(matches!(run("--dst-type LOCAL --limit-iface-in", "10.0.0.5", None, None), Eval::Unknown(_)));
            assert!(matches!(run("--dst-type LOCAL --limit-iface-out", "10.0.0.5", Some("eth0"), None), Eval::Unknown(_)));
        }

        #[test]
        fn ipv6_classes_are_all_required() {
            assert_eq!(v6("--dst-type MULTICAST", "2001:db8::9", "ff02::1"), Eval::Match);
            assert_eq!(v6("--dst-type MULTICAST", "2001:db8::9", "2001:db8::5"), Eval::NoMatch);
            assert_eq!(v6("--dst-type UNICAST", "2001:db8::9", "2001:db8::5"), Eval::Match);
            assert_eq!(v6("--dst-type UNICAST", "2001:db8::9", "fe80::1"), Eval::Match);
            assert_eq!(v6("--dst-type UNICAST", "2001:db8::9", "::1"), Eval::Match);
            assert_eq!(v6("--dst-type UNICAST", "2001:db8::9", "::ffff:10.0.0.1"), Eval::NoMatch);
            assert_eq!(v6("--dst-type UNICAST", "2001:db8::9", "::"), Eval::NoMatch);
            assert_eq!(v6("--src-type UNSPEC", "::", "2001:db8::5"), Eval::Match);
            assert_eq!(v6("--src-type UNSPEC", "::1", "2001:db8::5"), Eval::NoMatch);
            // Several classes: all must hold, unlike IPv4.
            assert_eq!(v6("--dst-type UNICAST,MULTICAST", "2001:db8::9", "ff02::1"), Eval::NoMatch);
            assert_eq!(v6("--dst-type UNICAST,MULTICAST", "2001:db8::9", "2001:db8::5"), Eval::NoMatch);
            assert_eq!(v6("! --dst-type UNICAST,MULTICAST", "2001:db8::9", "2001:db8::5"), Eval::Match);
        }

        #[test]
        fn ipv6_route_types() {
            assert_eq!(v6("--dst-type LOCAL", "2001:db8::9", "2001:db8::5"), Eval::Match);
            assert_eq!(v6("--dst-type LOCAL", "2001:db8::9", "::1"), Eval::Match);
            assert_eq!(v6("--dst-type LOCAL", "2001:db8::9", "2001:db8::6"), Eval::NoMatch);
            assert_eq!(v6("--dst-type UNICAST,LOCAL", "2001:db8::9", "2001:db8::5"), Eval::Match);
            assert_eq!(v6("--dst-type MULTICAST,LOCAL", "2001:db8::9", "ff02::1"), Eval::NoMatch);
            // The subnet-router anycast address of a connected prefix.
            assert_eq!(v6("--dst-type ANYCAST", "2001:db8::9", "2001:db8::"), Eval::Match);
            assert_eq!(v6("--dst-type ANYCAST", "2001:db8::9", "2001:db8::6"), Eval::NoMatch);
            // No IPv6 default route: other global addresses are unreachable.
            assert_eq!(v6("--dst-type UNREACHABLE", "2001:db8::9", "2001:db9::1"), Eval::Match);
            assert_eq!(v6("--dst-type UNREACHABLE", "2001:db8::9", "2001:db8::6"), Eval::NoMatch);
            assert_eq!(v6("--dst-type UNREACHABLE", "2001:db8::9", "ff02::1"), Eval::NoMatch);
            assert_eq!(v6("--dst-type UNREACHABLE", "2001:db8::9", "fe80::1"), Eval::NoMatch);
            assert_eq!(v6("--dst-type LOCAL,UNREACHABLE", "2001:db8::9", "2001:db9::1"), Eval::Match);
            assert_eq!(v6("! --dst-type LOCAL", "2001:db8::9", "2001:db9::1"), Eval::Match);
        }

        #[test]
        fn ipv6_interface_limit() {
            let h = host();
            let run = |line, dst, iin| run_on(&h, Family::V6, line, "2001:db8::9", dst, iin, None);
            assert_eq!(run("--dst-type LOCAL --limit-iface-in", "2001:db8::5", Some("eth0")), Eval::Match);
            assert_eq!(run("--dst-type LOCAL --limit-iface-in", "2001:db8::5", Some("eth1")), Eval::NoMatch);
            assert_eq!(run("--dst-type LOCAL --limit-iface-in", "::1", Some("eth0")), Eval::NoMatch);
            assert_eq!(run("! --dst-type LOCAL --limit-iface-in", "::1", Some("lo")), Eval::NoMatch);
            assert!(matches!(run("--dst-type ANYCAST --limit-iface-in", "2001:db8::", Some("eth0")), Eval::Unknown(_)));
            // A class test that fails decides without the lookup.
            assert_eq!(run("--dst-type MULTICAST,UNREACHABLE --limit-iface-in", "2001:db8::5", Some("eth0")), Eval::NoMatch);
            // The source test failing decides before an unknown destination test.
            assert_eq!(
                run_on(&h, Family::V6, "--src-type MULTICAST --dst-type ANYCAST --limit-iface-in", "2001:db8::9", "2001:db8::", Some("eth0"), None),
                Eval::NoMatch
            );
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::{ADDR_TYPES, AddrTypes, Addrtype, LimitIface};
    use crate::classes::cond::test_util::run;
    use crate::matches::Match;

    #[test]
    fn addrtype_agrees() {
        run("addrtype", 1500, 1000, |_| {
            let bit = select((0..ADDR_TYPES.len()).map(|i| 1u16 << i).collect::<Vec<_>>());
            let mask = prop_oneof![3 => bit.clone(), 2 => vec(bit, 1..4).prop_map(|v| v.into_iter().fold(0, |a, b| a | b)), 1 => 0u16..0x1000];
            let types = proptest::option::weighted(0.7, (mask, any::<bool>()).prop_map(|(mask, invert)| AddrTypes { mask, invert }));
            let limit = proptest::option::weighted(0.3, select(vec![LimitIface::In, LimitIface::Out]));
            (types.clone(), types, limit).prop_map(|(src, dst, limit_iface)| Match::Addrtype(Addrtype { src, dst, limit_iface })).boxed()
        });
    }
}
