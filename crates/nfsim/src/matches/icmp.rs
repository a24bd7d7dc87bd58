//! `-m icmp`: ICMP type and code of IPv4 packets (`ip_tables.c` `icmp_match`, `libipt_icmp.c`).
//!
//! Also holds the type-name tables and the `TYPE[/CODE]` parser shared with [`icmp6`](super::icmp6)
//! (libxtables' `libxt_icmp.h`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, tests, unspecified};
use crate::classes::region::Test;
use crate::classes::set::Ranges;
use crate::matches::Eval;
use crate::packet::Packet;
use crate::xt::Family;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};
use crate::xt::value::parse_c_number;

/// A type with an inclusive range of codes, and its inversion (`struct ipt_icmp` /
/// `struct ip6t_icmp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IcmpSpec {
    /// The type. For IPv4, 255 stands for every type, whatever the codes (`--icmp-type any`).
    pub icmp_type: u8,
    /// Lowest code matched.
    pub code_min: u8,
    /// Highest code matched (a range with `code_min > code_max` never matches).
    pub code_max: u8,
    /// `!`.
    pub invert: bool,
}

/// The icmp match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Icmp {
    /// `--icmp-type` (required).
    pub spec: Option<IcmpSpec>,
}

/// `(name, type, lowest code, highest code)`, in libxtables' order (which decides what an
/// ambiguous abbreviation reports).
pub(crate) type IcmpName = (&'static str, u8, u8, u8);

/// The ICMP names iptables knows.
pub(crate) const ICMP_NAMES: &[IcmpName] = &[
    ("any", 255, 0, 255),
    ("echo-reply", 0, 0, 255),
    ("pong", 0, 0, 255),
    ("destination-unreachable", 3, 0, 255),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 255),
    ("redirect", 5, 0, 255),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 255),
    ("ping", 8, 0, 255),
    ("router-advertisement", 9, 0, 255),
    ("router-solicitation", 10, 0, 255),
    ("time-exceeded", 11, 0, 255),
    ("ttl-exceeded", 11, 0, 255),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 255),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 255),
    ("timestamp-reply", 14, 0, 255),
    ("address-mask-request", 17, 0, 255),
    ("address-mask-reply", 18, 0, 255),
];

/// The ICMPv6 names iptables knows (the `mld-*` names are iptables 1.8.10's additions; no
/// name known to 1.8.9 starts with `m`, so they make no 1.8.9 abbreviation ambiguous).
pub(crate) const ICMPV6_NAMES: &[IcmpName] = &[
    ("destination-unreachable", 1, 0, 255),
    ("no-route", 1, 0, 0),
    ("communication-prohibited", 1, 1, 1),
    ("beyond-scope", 1, 2, 2),
    ("address-unreachable", 1, 3, 3),
    ("port-unreachable", 1, 4, 4),
    ("failed-policy", 1, 5, 5),
    ("reject-route", 1, 6, 6),
    ("packet-too-big", 2, 0, 255),
    ("time-exceeded", 3, 0, 255),
    ("ttl-exceeded", 3, 0, 255),
    ("ttl-zero-during-transit", 3, 0, 0),
    ("ttl-zero-during-reassembly", 3, 1, 1),
    ("parameter-problem", 4, 0, 255),
    ("bad-header", 4, 0, 0),
    ("unknown-header-type", 4, 1, 1),
    ("unknown-option", 4, 2, 2),
    ("echo-request", 128, 0, 255),
    ("ping", 128, 0, 255),
    ("echo-reply", 129, 0, 255),
    ("pong", 129, 0, 255),
    ("mld-listener-query", 130, 0, 255),
    ("mld-listener-report", 131, 0, 255),
    ("mld-listener-done", 132, 0, 255),
    ("mld-listener-reduction", 132, 0, 255),
    ("router-solicitation", 133, 0, 255),
    ("router-advertisement", 134, 0, 255),
    ("neighbour-solicitation", 135, 0, 255),
    ("neighbor-solicitation", 135, 0, 255),
    ("neighbour-advertisement", 136, 0, 255),
    ("neighbor-advertisement", 136, 0, 255),
    ("redirect", 137, 0, 255),
];

/// Reads a leading C number as `strtoumax(s, &end, 0)` does (decimal, `0x` hex, `0` octal; no
/// sign), requiring it to be at most 255. Returns the value and the unread rest.
fn leading_u8(s: &str) -> Option<(u8, &str)> {
    let b = s.as_bytes();
    let start = usize::from(b.first() == Some(&b'+'));
    let (radix, digits_at) = if b.len() > start + 2 && b[start] == b'0' && matches!(b[start + 1], b'x' | b'X') && b[start + 2].is_ascii_hexdigit() {
        (16, start + 2)
    } else if b.get(start) == Some(&b'0') {
        (8, start)
    } else {
        (10, start)
    };
    let len = b[digits_at..].iter().take_while(|c| (**c as char).is_digit(radix)).count();
    if len == 0 {
        return None;
    }
    let end = digits_at + len;
    let value = parse_c_number(&s[..end])?;
    (value <= 255).then(|| (value as u8, &s[end..]))
}

/// `N` or `N:M` at the start of `s`, and the rest.
fn leading_range(s: &str) -> Option<((u8, u8), &str)> {
    let (lo, rest) = leading_u8(s)?;
    match rest.strip_prefix(':') {
        Some(r) => {
            let (hi, rest) = leading_u8(r)?;
            Some(((lo, hi), rest))
        }
        None => Some(((lo, lo), rest)),
    }
}

/// Parses an `--icmp-type` / `--icmpv6-type` value as libxtables' `ipt_parse_icmp` does: a
/// (case-insensitive, possibly abbreviated) name from `names`, or `TYPE[/CODE[:CODE]]` with C
/// numbers. `what` is `ICMP` or `ICMPv6`. Returns the type and the code range.
pub(crate) fn parse_icmp_type(names: &[IcmpName], what: &str, s: &str) -> Result<(u8, u8, u8), String> {
    let mut found: Option<&IcmpName> = None;
    for entry in names {
        let name = entry.0.as_bytes();
        if name.len() >= s.len() && name[..s.len()].eq_ignore_ascii_case(s.as_bytes()) {
            if let Some(first) = found {
                return Err(format!("ambiguous {what} type `{s}`: `{}` or `{}`?", first.0, entry.0));
            }
            found = Some(entry);
        }
    }
    if let Some(&(_, t, lo, hi)) = found {
        return Ok((t, lo, hi));
    }
    let expected = format!("expected a {what} type name, a number 0-255 or TYPE/CODE");
    let ((t0, t1), rest) = leading_range(s).ok_or_else(|| format!("unknown {what} type `{s}` ({expected})"))?;
    let (lo, hi) = if rest.is_empty() {
        (0, 255)
    } else if let Some(code) = rest.strip_prefix('/') {
        let ((lo, hi), rest) = leading_range(code).ok_or_else(|| format!("unknown {what} code `{s}` (expected TYPE/CODE, 0-255)"))?;
        if let Some(c) = rest.chars().next() {
            return Err(format!("unknown character `{c}` in {what} type `{s}`"));
        }
        (lo, hi)
    } else {
        let c = rest.chars().next().unwrap_or(' ');
        return Err(format!("unknown character `{c}` in {what} type `{s}`"));
    };
    if t0 != t1 {
        return Err(format!("{what} type range not supported (expected one type, or TYPE/CODE)"));
    }
    Ok((t0, lo, hi))
}

impl Extension for Icmp {
    const OPTIONS: &'static [&'static str] = &["icmp-type"];

    fn new(_ctx: &Ctx) -> Self {
        Icmp::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        if opt != "icmp-type" {
            return Err(format!("unknown option `--{opt}`"));
        }
        once(&self.spec, "icmp-type")?;
        let (icmp_type, code_min, code_max) = parse_icmp_type(ICMP_NAMES, "ICMP", args.value()?)?;
        self.spec = Some(IcmpSpec { icmp_type, code_min, code_max, invert });
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if self.spec.is_none() {
            return Err("the icmp match requires `--icmp-type`".into());
        }
        if ctx.family != Family::V4 {
            return Err("the icmp match is IPv4 only (ip6tables has `-m icmp6`)".into());
        }
        if ctx.proto() != Some(1) {
            return Err("the icmp match requires `-p icmp`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        let Some(s) = self.spec else { return };
        save_invert(out, s.invert);
        // iptables 1.8.9 prints `any` for type 255 whatever the codes (the kernel ignores them).
        if s.icmp_type == 255 {
            out.push_str(" --icmp-type any");
            return;
        }
        let _ = write!(out, " --icmp-type {}", s.icmp_type);
        // Only the lowest code is printed: `3/1:4` is saved as `3/1`.
        if (s.code_min, s.code_max) != (0, 255) {
            let _ = write!(out, "/{}", s.code_min);
        }
    }
}

impl crate::matches::Evaluate for Icmp {
    /// `icmp_match` (`ip_tables.c`): type 255 (`any`) matches every ICMP message whatever the
    /// codes; otherwise the type must be equal and the code within `code_min..=code_max`; `!`
    /// flips the answer. A packet of another protocol does not match (the kernel only runs the
    /// match after `-p icmp`); the packet model has no non-first fragments.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let Some(s) = self.spec else { return Eval::Unknown("`-m icmp` without `--icmp-type`".into()) };
        if pkt.proto != 1 {
            return Eval::NoMatch;
        }
        let hit = s.icmp_type == 0xff || (pkt.icmp_type == s.icmp_type && s.code_min <= pkt.icmp_code && pkt.icmp_code <= s.code_max);
        Eval::from_bool(hit != s.invert)
    }
}

/// `icmp_match` / `icmp6_match` on the fixed echo request of `proto` (type 8 or 128, code 0): the
/// protocol test alone, or nothing.
pub(crate) fn spec_cond(spec: Option<IcmpSpec>, proto: u8, any: bool, cx: &CondCtx<'_>) -> MatchCond {
    let Some(s) = spec else { return MatchCond::Concrete(Fields::NONE) };
    let any_addr = unspecified(cx.family);
    let pkt = Packet::new(proto, any_addr, 0, any_addr, 0);
    let hit = (any && s.icmp_type == 0xff) || (pkt.icmp_type == s.icmp_type && s.code_min <= pkt.icmp_code && pkt.icmp_code <= s.code_max);
    if hit != s.invert { tests(cx, vec![Test { proto: Some(Ranges::point(proto)), ..Test::default() }]) } else { MatchCond::Eval(Eval::NoMatch) }
}

impl Cond for Icmp {
    const READS: Fields = Fields::PROTO;

    /// `icmp_match` on the fixed echo request.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        spec_cond(self.spec, 1, true, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Neg, Proto, TableName};

    fn ctx(family: Family, proto: Option<Neg<Proto>>) -> Ctx {
        Ctx { family, table: TableName::Filter, proto }
    }

    fn check(line: &str) -> Result<String, String> {
        check_alone::<Icmp>(ctx(Family::V4, Some(Neg::new(Proto::ICMP, false))), line)
    }

    /// Every line of iptables' `extensions/libipt_icmp.t`.
    #[test]
    fn libipt_icmp_t() {
        assert_eq!(check("--icmp-type any").as_deref(), Ok(" --icmp-type any"));
        assert_eq!(check("--icmp-type echo-reply").as_deref(), Ok(" --icmp-type 0"));
        assert_eq!(check("--icmp-type destination-unreachable").as_deref(), Ok(" --icmp-type 3"));
        // `-m icmp` without `-p icmp`, and without `--icmp-type`.
        assert!(check_alone::<Icmp>(ctx(Family::V4, None), "--icmp-type 8").is_err());
        assert!(check("").is_err());
        // The spec (1.8.11) expects `255/255` to be saved as written; iptables 1.8.9 (this
        // machine) saves every type-255 rule as `any`, which is what the kernel matches.
        assert_eq!(check("--icmp-type 255/255").as_deref(), Ok(" --icmp-type any"));
        assert_eq!(check("--icmp-type 255/0:255").as_deref(), Ok(" --icmp-type any"));
        // Commented out in the spec: iptables refuses a name with a code name.
        assert!(check("--icmp-type destination-unreachable/network-unreachable").is_err());
    }

    /// Values as the real `iptables` 1.8.9 read and printed them.
    #[test]
    fn types_and_codes_like_iptables_1_8_9() {
        for (line, saved) in [
            ("--icmp-type ECHO-REQ", " --icmp-type 8"),
            ("--icmp-type ping", " --icmp-type 8"),
            ("--icmp-type 255", " --icmp-type any"),
            ("--icmp-type 255/3", " --icmp-type any"),
            ("--icmp-type 3/1:4", " --icmp-type 3/1"),
            ("--icmp-type 3/4:1", " --icmp-type 3/4"),
            ("--icmp-type 0x3/0x1", " --icmp-type 3/1"),
            ("--icmp-type port-unreachable", " --icmp-type 3/3"),
            ("--icmp-type network-unreachable", " --icmp-type 3/0"),
            ("--icmp-type 3/0", " --icmp-type 3/0"),
            ("--icmp-type 3/0:255", " --icmp-type 3"),
            ("! --icmp-type 8", " ! --icmp-type 8"),
            ("--icmp 8", " --icmp-type 8"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        for (line, message) in [
            ("--icmp-type echo", "ambiguous ICMP type `echo`: `echo-reply` or `echo-request`?"),
            ("--icmp-type p", "ambiguous ICMP type `p`: `pong` or `protocol-unreachable`?"),
            ("--icmp-type 3:4", "ICMP type range not supported"),
            ("--icmp-type 3/", "unknown ICMP code `3/`"),
            ("--icmp-type 3x", "unknown character `x`"),
            ("--icmp-type 3/1/2", "unknown character `/`"),
            ("--icmp-type 256", "unknown ICMP type `256`"),
            ("--icmp-type 08", "unknown character `8`"),
            ("--icmp-type 8 --icmp-type 0", "only once"),
        ] {
            let err = check(line).unwrap_err();
            assert!(err.contains(message), "{line}: {err}");
        }
        assert!(check_alone::<Icmp>(ctx(Family::V6, Some(Neg::new(Proto::ICMP, false))), "--icmp-type 8").is_err());
        assert!(check_alone::<Icmp>(ctx(Family::V4, Some(Neg::new(Proto::ICMP, true))), "--icmp-type 8").is_err());
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::tcp::test_util::{cx, parse};
        use crate::matches::{Eval, Evaluate};
        use crate::packet::Packet;
        use crate::xt::Hook;

        fn run(line: &str, proto: u8, ty: u8, code: u8) -> Eval {
            let host = Host::new("h");
            let mut pkt = Packet::new(proto, "10.0.0.1".parse().unwrap(), 0, "10.0.0.2".parse().unwrap(), 0);
            pkt.icmp_type = ty;
            pkt.icmp_code = code;
            parse::<Icmp>(Family::V4, 1, line).eval(&pkt, &cx(&host, Hook::Input, false))
        }

        #[test]
        fn types_codes_and_inversion() {
            assert_eq!(run("--icmp-type echo-request", 1, 8, 0), Eval::Match);
            assert_eq!(run("--icmp-type echo-request", 1, 8, 200), Eval::Match);
            assert_eq!(run("--icmp-type echo-request", 1, 0, 0), Eval::NoMatch);
            assert_eq!(run("! --icmp-type echo-request", 1, 0, 0), Eval::Match);
            assert_eq!(run("! --icmp-type echo-request", 1, 8, 0), Eval::NoMatch);
            assert_eq!(run("--icmp-type port-unreachable", 1, 3, 3), Eval::Match);
            assert_eq!(run("--icmp-type port-unreachable", 1, 3, 1), Eval::NoMatch);
            assert_eq!(run("--icmp-type 3/1:4", 1, 3, 4), Eval::Match);
            assert_eq!(run("--icmp-type 3/1:4", 1, 3, 5), Eval::NoMatch);
            // A reversed code range matches no code.
            assert_eq!(run("--icmp-type 3/4:1", 1, 3, 2), Eval::NoMatch);
        }

        #[test]
        fn any_ignores_type_and_codes() {
            assert_eq!(run("--icmp-type any", 1, 13, 9), Eval::Match);
            assert_eq!(run("--icmp-type 255/3", 1, 0, 0), Eval::Match);
            assert_eq!(run("! --icmp-type any", 1, 8, 0), Eval::NoMatch);
        }

        #[test]
        fn other_protocols_do_not_match() {
            assert_eq!(run("! --icmp-type 8", 6, 0, 0), Eval::NoMatch);
            assert_eq!(run("--icmp-type any", 58, 128, 0), Eval::NoMatch);
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::{Icmp, IcmpSpec};
    use crate::classes::cond::test_util::run;
    use crate::matches::Match;

    #[test]
    fn icmp_agrees() {
        run("icmp", 400, 350, |_| {
            let spec = proptest::option::weighted(
                0.95,
                (select(vec![0u8, 3, 8, 128, 129, 255]), select(vec![0u8, 1, 255]), select(vec![0u8, 1, 255]), any::<bool>())
                    .prop_map(|(icmp_type, code_min, code_max, invert)| IcmpSpec { icmp_type, code_min, code_max, invert }),
            );
            (spec, any::<bool>())
                .prop_map(|(spec, v6)| if v6 { Match::Icmp6(crate::matches::icmp6::Icmp6 { spec }) } else { Match::Icmp(Icmp { spec }) })
                .boxed()
        });
    }
}
