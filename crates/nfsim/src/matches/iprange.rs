//! `-m iprange`: source and destination addresses within inclusive ranges (`xt_iprange.c`
//! revision 1, `libxt_iprange.c`), for IPv4 and IPv6.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, space, tests};
use crate::classes::region::{Test, addr_num};
use crate::classes::set::Ranges;
use crate::xt::Family;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};
use crate::xt::value::parse_c_number;

/// `FIRST-LAST`, inclusive, with its inversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AddrRange {
    /// First address.
    pub lo: IpAddr,
    /// Last address (a range with `lo > hi` never matches; iptables only warns).
    pub hi: IpAddr,
    /// `!`.
    pub invert: bool,
}

/// The iprange match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Iprange {
    /// `--src-range`.
    pub src: Option<Box<AddrRange>>,
    /// `--dst-range`.
    pub dst: Option<Box<AddrRange>>,
}

/// Parses a numeric IPv4 address as libxtables' `xtables_numeric_to_ipaddr` does: one to four
/// `.`-separated C numbers of 0-255 (`010` is 8, `0x0a` is 10), missing trailing parts zero;
/// only the first 19 characters are read.
fn parse_v4(s: &str) -> Option<Ipv4Addr> {
    let s = s.get(..s.len().min(19))?;
    let mut out = [0u8; 4];
    let mut parts = s.splitn(4, '.');
    for byte in &mut out {
        let Some(part) = parts.next() else { break };
        *byte = parse_c_number(part).and_then(|v| u8::try_from(v).ok())?;
    }
    Some(Ipv4Addr::from(out))
}

fn fmt_addr(out: &mut String, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            let _ = write!(out, "{a}");
        }
        IpAddr::V6(a) => crate::xt::addr::fmt_ipv6(out, a),
    }
}

/// Parses `ADDR` (a one-address range) or `FIRST-LAST` of `family`.
fn parse_range(s: &str, family: Family, opt: &str, invert: bool) -> Result<AddrRange, String> {
    let (first, last) = s.split_once('-').unwrap_or((s, s));
    let parse = |a: &str| -> Result<IpAddr, String> {
        let addr = match family {
            Family::V4 => parse_v4(a).map(IpAddr::V4),
            Family::V6 => a.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        };
        addr.ok_or_else(|| {
            let fam = match family {
                Family::V4 => "IPv4",
                Family::V6 => "IPv6",
            };
            format!("bad value `{a}` for `--{opt}` (expected a numeric {fam} address, or FIRST-LAST)")
        })
    };
    Ok(AddrRange { lo: parse(first)?, hi: parse(last)?, invert })
}

impl Extension for Iprange {
    const OPTIONS: &'static [&'static str] = &["src-range", "dst-range"];

    fn new(_ctx: &Ctx) -> Self {
        Iprange::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        let family = args.ctx().family;
        let slot = match opt {
            "src-range" => &mut self.src,
            "dst-range" => &mut self.dst,
            _ => return Err(format!("unknown option `--{opt}`")),
        };
        once(slot, opt)?;
        *slot = Some(Box::new(parse_range(args.value()?, family, opt, invert)?));
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.src.is_none() && self.dst.is_none() {
            return Err("the iprange match requires `--src-range` or `--dst-range`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        for (name, slot) in [("src-range", &self.src), ("dst-range", &self.dst)] {
            if let Some(r) = slot {
                save_invert(out, r.invert);
                let _ = write!(out, " --{name} ");
                fmt_addr(out, r.lo);
                out.push('-');
                fmt_addr(out, r.hi);
            }
        }
    }
}

/// An address as the kernel compares them (host byte order), with its family.
fn ordinal(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(v4) => (false, u32::from(v4).into()),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

impl AddrRange {
    /// The address lies in `lo..=hi` (numerically), flipped by `!`. An address of the other
    /// family is never inside (the kernel never compares across families).
    fn matches(&self, addr: IpAddr) -> bool {
        let (fam, a) = ordinal(addr);
        let ((flo, lo), (fhi, hi)) = (ordinal(self.lo), ordinal(self.hi));
        let inside = fam == flo && fam == fhi && lo <= a && a <= hi;
        inside != self.invert
    }
}

impl crate::matches::Evaluate for Iprange {
    /// `iprange_mt4` / `iprange_mt6` (`xt_iprange.c` revision 1): the source address within
    /// `--src-range`, then the destination address within `--dst-range`, each flipped by its
    /// own `!`. A reversed range contains no address.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        let src = self.src.as_ref().is_none_or(|r| r.matches(pkt.src));
        let dst = self.dst.as_ref().is_none_or(|r| r.matches(pkt.dst));
        crate::matches::Eval::from_bool(src && dst)
    }
}

/// The addresses of the context's family a range accepts (none when its bounds are of the other
/// family or reversed), or the others with `!`.
fn addr_range(r: &AddrRange, cx: &CondCtx<'_>) -> Ranges<u128> {
    let fam = |a: IpAddr| if a.is_ipv4() { Family::V4 } else { Family::V6 };
    let inside = if fam(r.lo) == cx.family && fam(r.hi) == cx.family { Ranges::range(addr_num(r.lo), addr_num(r.hi)) } else { Ranges::empty() };
    if r.invert { space(cx).minus(&inside) } else { inside }
}

impl Cond for Iprange {
    const READS: Fields = Fields::SRC.or(Fields::DST);

    /// `iprange_mt4` / `iprange_mt6`: each given side's address within its range.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        let side = |r: &Option<Box<AddrRange>>| r.as_deref().map(|r| addr_range(r, cx));
        tests(cx, vec![Test { src: side(&self.src), dst: side(&self.dst), ..Test::default() }])
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
        check_alone::<Iprange>(ctx(Family::V4), line)
    }

    fn check6(line: &str) -> Result<String, String> {
        check_alone::<Iprange>(ctx(Family::V6), line)
    }

    /// Every line of iptables' `extensions/libxt_iprange.t`, `libipt_iprange.t` and
    /// `libip6t_iprange.t`.
    #[test]
    fn libxt_iprange_t() {
        assert!(check("").is_err());
        for line in ["--src-range 1.1.1.1-1.1.1.10", "! --src-range 1.1.1.1-1.1.1.10", "--dst-range 1.1.1.1-1.1.1.10", "! --dst-range 1.1.1.1-1.1.1.10"] {
            assert_eq!(check(line), Ok(format!(" {line}")), "{line}");
        }
        for line in [
            "--src-range 2001:db8::1-2001:db8::10",
            "! --src-range 2001:db8::1-2001:db8::10",
            "--dst-range 2001:db8::1-2001:db8::10",
            "! --dst-range 2001:db8::1-2001:db8::10",
        ] {
            assert_eq!(check6(line), Ok(format!(" {line}")), "{line}");
        }
        // Commented out in the specs ("should fail"): iptables accepts one address.
        assert_eq!(check("--src-range 1.1.1.1").as_deref(), Ok(" --src-range 1.1.1.1-1.1.1.1"));
        assert_eq!(check6("--dst-range 2001:db8::1").as_deref(), Ok(" --dst-range 2001:db8::1-2001:db8::1"));
    }

    /// Values as the real `iptables` / `ip6tables` 1.8.9 read and printed them.
    #[test]
    fn addresses_like_iptables_1_8_9() {
        for (line, saved) in [
            ("--src-range 1.1.1.10-1.1.1.1", " --src-range 1.1.1.10-1.1.1.1"),
            ("--src-range 10.1-10.2", " --src-range 10.1.0.0-10.2.0.0"),
            ("--src-range 01.1.1.1-1.1.1.2", " --src-range 1.1.1.1-1.1.1.2"),
            ("--src-range 0x1.1.1.1-010.0.0.1", " --src-range 1.1.1.1-8.0.0.1"),
            ("--dst-range 1.1.1.1-1.1.1.2 --src-range 2.2.2.2-2.2.2.3", " --src-range 2.2.2.2-2.2.2.3 --dst-range 1.1.1.1-1.1.1.2"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        for line in [
            "--src-range 1.1.1.1-",
            "--src-range 1.1.1.1/24",
            "--src-range 2001:db8::1-2001:db8::2",
            "--src-range 1.1.1.1-1.1.1.2 --src-range 2.2.2.2-2.2.2.3",
            "--src-range 1.1.1.1-1.1.1.2-1.1.1.3",
            "--src-range 1.1.1.256-1.1.1.2",
        ] {
            assert!(check(line).is_err(), "{line}");
        }
        for (line, saved) in [
            ("--src-range ::ffff:1.2.3.4-::ffff:1.2.3.5", " --src-range ::ffff:1.2.3.4-::ffff:1.2.3.5"),
            ("--src-range ::1.2.3.4-::1.2.3.5", " --src-range ::1.2.3.4-::1.2.3.5"),
            ("--src-range 2001:DB8:0:0:0:0:0:1-2001:db8::1:0:0:1", " --src-range 2001:db8::1-2001:db8::1:0:0:1"),
            ("--src-range ::-::1", " --src-range ::-::1"),
            ("--src-range 1:0:0:2:0:0:0:3-1:0:2:0:3:4:5:0", " --src-range 1:0:0:2::3-1:0:2:0:3:4:5:0"),
            ("--src-range fe80::-::2:0", " --src-range fe80::-::0.2.0.0"),
            ("--src-range ::0.0.0.1-::ffff:0:1", " --src-range ::1-::ffff:0.0.0.1"),
            ("--src-range 0:0:0:0:0:1:0:0-1::", " --src-range ::1:0:0-1::"),
            ("--src-range 1:0:0:1:0:0:1:1-0:0:1:0:0:1:0:0", " --src-range 1::1:0:0:1:1-::1:0:0:1:0:0"),
        ] {
            assert_eq!(check6(line).as_deref(), Ok(saved), "{line}");
        }
        for line in ["--src-range 1.1.1.1-1.1.1.2", "--src-range 2001:db8::1-2001:db8::10/64"] {
            assert!(check6(line).is_err(), "{line}");
        }
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::tcp::test_util::{cx, parse};
        use crate::matches::{Eval, Evaluate};
        use crate::packet::Packet;
        use crate::xt::Hook;

        fn run(family: Family, line: &str, src: &str, dst: &str) -> Eval {
            let host = Host::new("h");
            let pkt = Packet::new(6, src.parse().unwrap(), 1, dst.parse().unwrap(), 22);
            parse::<Iprange>(family, 0, line).eval(&pkt, &cx(&host, Hook::Forward, family == Family::V6))
        }

        #[test]
        fn ipv4_ranges_and_inversion() {
            let v4 = |line, s, d| run(Family::V4, line, s, d);
            assert_eq!(v4("--src-range 1.1.1.1-1.1.1.10", "1.1.1.1", "9.9.9.9"), Eval::Match);
            assert_eq!(v4("--src-range 1.1.1.1-1.1.1.10", "1.1.1.10", "9.9.9.9"), Eval::Match);
            assert_eq!(v4("--src-range 1.1.1.1-1.1.1.10", "1.1.1.11", "9.9.9.9"), Eval::NoMatch);
            assert_eq!(v4("--src-range 1.1.1.1-1.1.1.10", "1.1.1.0", "9.9.9.9"), Eval::NoMatch);
            assert_eq!(v4("! --src-range 1.1.1.1-1.1.1.10", "1.1.1.0", "9.9.9.9"), Eval::Match);
            assert_eq!(v4("! --src-range 1.1.1.1-1.1.1.10", "1.1.1.5", "9.9.9.9"), Eval::NoMatch);
            // Ranges cross octet boundaries numerically.
            assert_eq!(v4("--dst-range 10.0.0.200-10.0.1.20", "1.1.1.1", "10.0.0.255"), Eval::Match);
            assert_eq!(v4("--dst-range 10.0.0.200-10.0.1.20", "1.1.1.1", "10.0.1.21"), Eval::NoMatch);
            // Both given: both must hold.
            assert_eq!(v4("--src-range 1.1.1.1-1.1.1.2 --dst-range 2.2.2.2-2.2.2.3", "1.1.1.2", "2.2.2.3"), Eval::Match);
            assert_eq!(v4("--src-range 1.1.1.1-1.1.1.2 --dst-range 2.2.2.2-2.2.2.3", "1.1.1.2", "2.2.2.4"), Eval::NoMatch);
            assert_eq!(v4("--src-range 1.1.1.1-1.1.1.2 ! --dst-range 2.2.2.2-2.2.2.3", "1.1.1.2", "2.2.2.4"), Eval::Match);
            // A reversed range contains nothing.
            assert_eq!(v4("--src-range 1.1.1.10-1.1.1.1", "1.1.1.5", "9.9.9.9"), Eval::NoMatch);
            assert_eq!(v4("! --src-range 1.1.1.10-1.1.1.1", "1.1.1.5", "9.9.9.9"), Eval::Match);
        }

        #[test]
        fn ipv6_ranges() {
            let v6 = |line, s, d| run(Family::V6, line, s, d);
            assert_eq!(v6("--src-range 2001:db8::1-2001:db8::10", "2001:db8::10", "::1"), Eval::Match);
            assert_eq!(v6("--src-range 2001:db8::1-2001:db8::10", "2001:db8::11", "::1"), Eval::NoMatch);
            assert_eq!(v6("--src-range 2001:db8::1-2001:db8::1:0:0:1", "2001:db8::ffff:ffff", "::1"), Eval::Match);
            assert_eq!(v6("! --dst-range ::-::1", "2001:db8::1", "::2"), Eval::Match);
            assert_eq!(v6("! --dst-range ::-::1", "2001:db8::1", "::"), Eval::NoMatch);
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::prelude::*;

    use super::{AddrRange, Iprange};
    use crate::classes::cond::test_util::{addr, run};
    use crate::matches::Match;
    use crate::xt::Family;

    #[test]
    fn iprange_agrees() {
        run("iprange", 400, 400, |e| {
            let other = if e.family == Family::V4 { Family::V6 } else { Family::V4 };
            let a = prop_oneof![6 => addr(e.family), 1 => addr(other)];
            let range = proptest::option::weighted(
                0.7,
                (a.clone(), a, any::<bool>()).prop_map(|(lo, hi, invert)| Box::new(AddrRange { lo: lo.min(hi), hi: lo.max(hi), invert })),
            );
            let reversed = proptest::option::weighted(
                0.1,
                (addr(e.family), addr(e.family), any::<bool>()).prop_map(|(lo, hi, invert)| Box::new(AddrRange { lo, hi, invert })),
            );
            (prop_oneof![range.clone(), reversed], range).prop_map(|(src, dst)| Match::Iprange(Iprange { src, dst })).boxed()
        });
    }
}
