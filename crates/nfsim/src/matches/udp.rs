//! `-m udp`: source and destination port ranges of UDP datagrams (`xt_tcpudp.c`, `libxt_udp.c`).

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, ports};
use crate::matches::tcp::PortRange;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};
use crate::xt::services;
use crate::xt::value::fmt_port_range;

/// The udp match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Udp {
    /// `--sport`.
    pub sport: Option<PortRange>,
    /// `--dport`.
    pub dport: Option<PortRange>,
}

/// Resolves one port the way libxtables' `xtables_getportbyname` does for `XTTYPE_PORTRC`
/// options: `getaddrinfo(NULL, s, NULL)`. A decimal number (`strtoul` base 10, so `010` is 10 and
/// `0x10` is not a number) is taken modulo 65536 (`65536` is port 0, as iptables 1.8.9 accepts);
/// one that does not fit a positive C `int` falls through to the name lookup and fails. Names are
/// looked up for tcp first, then udp, dccp, udplite and sctp (glibc's order).
fn port_by_name(s: &str) -> Result<u16, String> {
    if let Some(value) = strtoul_decimal(s) {
        // getaddrinfo stores the value in an int and rejects it when negative.
        let as_int = value as u32 as i32;
        if as_int >= 0 {
            return Ok(as_int as u16);
        }
    } else {
        for proto in ["tcp", "udp", "dccp", "udplite", "sctp"] {
            if let Some(port) = services::service_port(s, proto) {
                return Ok(port);
            }
        }
    }
    Err(format!("port `{s}` does not resolve to anything (expected a number or a service name)"))
}

/// `strtoul(s, &end, 10)` when it consumes the whole string: optional sign, decimal digits; a
/// `-` negates modulo 2^64 and overflow saturates, as C does.
fn strtoul_decimal(s: &str) -> Option<u64> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = digits.parse::<u64>().unwrap_or(u64::MAX);
    Some(if negative && value != u64::MAX { value.wrapping_neg() } else { value })
}

/// Parses an `XTTYPE_PORTRC` value (`PORT`, `FIRST:LAST`, `:LAST`, `FIRST:`, `:`), as libxtables'
/// `xtopt_parse_mport` does: at most two components, each optional, and no check that the range
/// is ascending (iptables 1.8.9 accepts `4:3`, a range that never matches).
pub(crate) fn parse_portrc(s: &str) -> Result<(u16, u16), String> {
    let mut parts = s.split(':');
    let first = parts.next().unwrap_or("");
    let second = parts.next();
    if parts.next().is_some() {
        return Err(format!("too many components in port range `{s}` (expected PORT or FIRST:LAST)"));
    }
    let lo = if first.is_empty() { 0 } else { port_by_name(first)? };
    let hi = match second {
        None => lo,
        Some("") => u16::MAX,
        Some(p) => port_by_name(p)?,
    };
    Ok((lo, hi))
}

impl Extension for Udp {
    const OPTIONS: &'static [&'static str] = &["source-port", "sport", "destination-port", "dport"];

    fn new(_ctx: &Ctx) -> Self {
        Udp::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        let slot = match opt {
            "source-port" | "sport" => {
                once(&self.sport, "source-port")?;
                &mut self.sport
            }
            "destination-port" | "dport" => {
                once(&self.dport, "destination-port")?;
                &mut self.dport
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        };
        let (lo, hi) = parse_portrc(args.value()?)?;
        *slot = Some(PortRange { lo, hi, invert });
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if ctx.proto() != Some(17) {
            return Err("the udp match requires `-p udp`".to_string());
        }
        // `--sport :` (the full range, not inverted) is the same as no option at all.
        for slot in [&mut self.sport, &mut self.dport] {
            if matches!(slot, Some(PortRange { lo: 0, hi: 65535, invert: false })) {
                *slot = None;
            }
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(p) = self.sport {
            save_invert(out, p.invert);
            out.push_str(" --sport ");
            fmt_port_range(out, (p.lo, p.hi));
        }
        if let Some(p) = self.dport {
            save_invert(out, p.invert);
            out.push_str(" --dport ");
            fmt_port_range(out, (p.lo, p.hi));
        }
    }
}

impl crate::matches::Evaluate for Udp {
    /// `udp_mt` (`xt_tcpudp.c`): the source and destination ports within their ranges, each
    /// with its own `!`. A packet of another protocol does not match (the kernel only runs the
    /// match after `-p udp`); the packet model has no non-first fragments.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        crate::matches::Eval::from_bool(pkt.proto == 17 && crate::matches::tcp::ports_match(&self.sport, &self.dport, pkt))
    }
}

impl Cond for Udp {
    const READS: Fields = Fields::PROTO.or(Fields::SPORT).or(Fields::DPORT);

    /// `udp_mt`: protocol 17 with the port ranges.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        ports(cx, 17, self.sport, self.dport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, Neg, Proto, TableName};

    fn ctx(proto: Option<Neg<Proto>>) -> Ctx {
        Ctx { family: Family::V4, table: TableName::Filter, proto }
    }

    fn check(line: &str) -> Result<String, String> {
        check_alone::<Udp>(ctx(Some(Neg::new(Proto::UDP, false))), line)
    }

    /// Every line of iptables' `extensions/libxt_udp.t`.
    #[test]
    fn libxt_udp_t() {
        for (line, saved) in [
            ("--sport 1", " --sport 1"),
            ("--sport 65535", " --sport 65535"),
            ("--dport 1", " --dport 1"),
            ("--dport 65535", " --dport 65535"),
            ("--sport 1:1023", " --sport 1:1023"),
            ("--sport 1024:65535", " --sport 1024:65535"),
            ("--sport 1024:", " --sport 1024:65535"),
            ("--sport :", ""),
            ("! --sport :", " ! --sport 0:65535"),
            ("--sport :4", " --sport 0:4"),
            ("--sport 4:", " --sport 4:65535"),
            ("--sport 4:4", " --sport 4"),
            ("--dport :", ""),
            ("! --dport :", " ! --dport 0:65535"),
            ("--dport :4", " --dport 0:4"),
            ("--dport 4:", " --dport 4:65535"),
            ("--dport 4:4", " --dport 4"),
            ("! --sport 1", " ! --sport 1"),
            ("! --sport 65535", " ! --sport 65535"),
            ("! --dport 1", " ! --dport 1"),
            ("! --dport 65535", " ! --dport 65535"),
            ("--sport 1 --dport 65535", " --sport 1 --dport 65535"),
            ("--sport 65535 --dport 1", " --sport 65535 --dport 1"),
            ("! --sport 1 --dport 65535", " ! --sport 1 --dport 65535"),
            ("! --sport 65535 --dport 1", " ! --sport 65535 --dport 1"),
            ("", ""),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        assert!(check("--sport -1").is_err());
        assert!(check("--dport -1").is_err());
        // `-m udp --dport 1` without `-p udp` fails; `-p 17` is the same protocol as `-p udp`.
        assert!(check_alone::<Udp>(ctx(None), "--dport 1").is_err());
        assert_eq!(check_alone::<Udp>(ctx(Some(Neg::new(Proto(17), false))), "--dport 1").as_deref(), Ok(" --dport 1"));
        // The spec's `--sport 4:3;;FAIL` lines are iptables 1.8.11; 1.8.9 (this machine) accepts
        // a reversed range and saves it as written.
        assert_eq!(check("--sport 4:3").as_deref(), Ok(" --sport 4:3"));
        assert_eq!(check("--dport 4:3").as_deref(), Ok(" --dport 4:3"));
    }

    /// Values as the real `iptables` 1.8.9 read and printed them.
    #[test]
    fn ports_resolve_like_getaddrinfo() {
        for (line, saved) in [
            ("--dport ssh", " --dport 22"),
            ("--dport domain", " --dport 53"),
            ("--dport 010", " --dport 10"),
            ("--dport +5", " --dport 5"),
            ("--dport -0", " --dport 0"),
            ("--sport 65536", " --sport 0"),
            ("--sport 65537:65540", " --sport 1:4"),
            ("--dport 4294967296", " --dport 0"),
            ("--dport 70000:", " --dport 4464:65535"),
            ("--dp 53", " --dport 53"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        for line in [
            "--dport 0x10",
            "--dport 4294967295",
            "--dport 99999999999999999999",
            "--dport 1:2:3",
            "--dport nosuchservice",
            "--sport 5 --sport 6",
            "--sport 5 --source-port 6",
        ] {
            assert!(check(line).is_err(), "{line}");
        }
        assert!(check_alone::<Udp>(ctx(Some(Neg::new(Proto::UDP, true))), "--dport 1").is_err());
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::tcp::test_util::{cx, parse};
        use crate::matches::{Eval, Evaluate};
        use crate::packet::Packet;
        use crate::xt::{Family, Hook};

        fn run(line: &str, proto: u8, sport: u16, dport: u16) -> Eval {
            let host = Host::new("h");
            let pkt = Packet::new(proto, "2001:db8::1".parse().unwrap(), sport, "2001:db8::2".parse().unwrap(), dport);
            parse::<Udp>(Family::V6, 17, line).eval(&pkt, &cx(&host, Hook::Output, true))
        }

        #[test]
        fn ports_and_inversion() {
            assert_eq!(run("", 17, 5353, 53), Eval::Match);
            assert_eq!(run("--dport 53", 17, 5353, 53), Eval::Match);
            assert_eq!(run("--dport domain --sport 1024:", 17, 5353, 53), Eval::Match);
            assert_eq!(run("--dport domain --sport 1024:", 17, 1023, 53), Eval::NoMatch);
            assert_eq!(run("! --dport 53", 17, 5353, 53), Eval::NoMatch);
            assert_eq!(run("! --dport 53", 17, 5353, 54), Eval::Match);
            assert_eq!(run("! --sport 1:1023 ! --dport 1:1023", 17, 0, 0), Eval::Match);
            // A reversed range contains nothing; inverted it contains everything.
            assert_eq!(run("--dport 4:3", 17, 1, 3), Eval::NoMatch);
            assert_eq!(run("--dport 4:3", 17, 1, 4), Eval::NoMatch);
            assert_eq!(run("! --dport 4:3", 17, 1, 4), Eval::Match);
            assert_eq!(run("--sport 65535", 17, 65535, 1), Eval::Match);
        }

        #[test]
        fn other_protocols_do_not_match() {
            assert_eq!(run("", 6, 1, 53), Eval::NoMatch);
            assert_eq!(run("! --dport 80", 136, 1, 53), Eval::NoMatch);
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::prelude::*;

    use super::Udp;
    use crate::classes::cond::test_util::{port_range, run};
    use crate::matches::Match;

    #[test]
    fn udp_agrees() {
        run("udp", 300, 300, |_| (port_range(), port_range()).prop_map(|(sport, dport)| Match::Udp(Udp { sport, dport })).boxed());
    }
}
