//! `-m icmp6`: ICMPv6 type and code of IPv6 packets (`ip6_tables.c` `icmp6_match`,
//! `libip6t_icmp6.c`). Loaded as `icmp6`, `icmpv6` or `ipv6-icmp`; saved as `icmp6`.

use std::fmt::Write as _;

use serde::Serialize;

use super::icmp::spec_cond;
use super::icmp::{ICMPV6_NAMES, IcmpSpec, parse_icmp_type};
use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond};
use crate::xt::Family;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};

/// The icmp6 match. Unlike IPv4's, type 255 is an ordinary type (there is no `any`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Icmp6 {
    /// `--icmpv6-type` (required).
    pub spec: Option<IcmpSpec>,
}

impl Extension for Icmp6 {
    const OPTIONS: &'static [&'static str] = &["icmpv6-type"];

    fn new(_ctx: &Ctx) -> Self {
        Icmp6::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        if opt != "icmpv6-type" {
            return Err(format!("unknown option `--{opt}`"));
        }
        once(&self.spec, "icmpv6-type")?;
        let (icmp_type, code_min, code_max) = parse_icmp_type(ICMPV6_NAMES, "ICMPv6", args.value()?)?;
        self.spec = Some(IcmpSpec { icmp_type, code_min, code_max, invert });
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if self.spec.is_none() {
            return Err("the icmp6 match requires `--icmpv6-type`".into());
        }
        if ctx.family != Family::V6 {
            return Err("the icmp6 match is IPv6 only (iptables has `-m icmp`)".into());
        }
        if ctx.proto() != Some(58) {
            return Err("the icmp6 match requires `-p ipv6-icmp` (or `-p icmpv6`)".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        let Some(s) = self.spec else { return };
        save_invert(out, s.invert);
        let _ = write!(out, " --icmpv6-type {}", s.icmp_type);
        // Only the lowest code is printed: `1/2:4` is saved as `1/2`.
        if (s.code_min, s.code_max) != (0, 255) {
            let _ = write!(out, "/{}", s.code_min);
        }
    }
}

impl crate::matches::Evaluate for Icmp6 {
    /// `icmp6_match` (`ip6_tables.c`): the type must be equal and the code within
    /// `code_min..=code_max` (type 255 is an ordinary type here); `!` flips the answer. A
    /// packet of another protocol does not match (the kernel only runs the match after
    /// `-p ipv6-icmp`); the packet model has no non-first fragments.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let Some(s) = self.spec else { return Eval::Unknown("`-m icmp6` without `--icmpv6-type`".into()) };
        if pkt.proto != 58 {
            return Eval::NoMatch;
        }
        let hit = pkt.icmp_type == s.icmp_type && s.code_min <= pkt.icmp_code && pkt.icmp_code <= s.code_max;
        Eval::from_bool(hit != s.invert)
    }
}

impl Cond for Icmp6 {
    const READS: Fields = Fields::PROTO;

    /// `icmp6_match` on the fixed echo request.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        spec_cond(self.spec, 58, false, cx)
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
        check_alone::<Icmp6>(ctx(Family::V6, Some(Neg::new(Proto::ICMPV6, false))), line)
    }

    /// Every line of iptables' `extensions/libip6t_icmp6.t`.
    #[test]
    fn libip6t_icmp6_t() {
        // `-m icmpv6` alone.
        assert!(check_alone::<Icmp6>(ctx(Family::V6, None), "").is_err());
        for (line, saved) in [
            ("--icmpv6-type 1/0", " --icmpv6-type 1/0"),
            ("--icmpv6-type 2", " --icmpv6-type 2"),
            // The `mld-*` names come from the 1.8.11 spec (1.8.9 does not know them).
            ("--icmpv6-type mld-listener-query", " --icmpv6-type 130"),
            ("--icmpv6-type mld-listener-report", " --icmpv6-type 131"),
            ("--icmpv6-type mld-listener-done", " --icmpv6-type 132"),
            ("--icmpv6-type mld-listener-reduction", " --icmpv6-type 132"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        assert!(check("--icmpv6-type no-route --icmpv6-type packet-too-big").is_err());
    }

    /// Values as the real `ip6tables` 1.8.9 read and printed them.
    #[test]
    fn types_and_codes_like_ip6tables_1_8_9() {
        for (line, saved) in [
            ("--icmpv6-type 255", " --icmpv6-type 255"),
            ("--icmpv6-type 1/2:4", " --icmpv6-type 1/2"),
            ("--icmpv6-type 1/0:255", " --icmpv6-type 1"),
            ("! --icmpv6-type neighbour-solicitation", " ! --icmpv6-type 135"),
            ("--icmpv6-type neighbor-advertisement", " --icmpv6-type 136"),
            ("--icmpv6-type echo-request", " --icmpv6-type 128"),
            ("--icmpv6-type pong", " --icmpv6-type 129"),
            ("--icmpv6-type 0x80", " --icmpv6-type 128"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        for (line, message) in [
            ("--icmpv6-type any", "unknown ICMPv6 type `any`"),
            ("--icmpv6-type 1:2", "ICMPv6 type range not supported"),
            ("--icmpv6-type echo", "ambiguous ICMPv6 type `echo`"),
        ] {
            let err = check(line).unwrap_err();
            assert!(err.contains(message), "{line}: {err}");
        }
        // `ip6tables -m icmp6` needs `-p ipv6-icmp`; `iptables` has no icmp6 match.
        assert!(check_alone::<Icmp6>(ctx(Family::V6, None), "--icmpv6-type 1").is_err());
        let v4 = ctx(Family::V4, Some(Neg::new(Proto::ICMPV6, false)));
        assert!(check_alone::<Icmp6>(v4, "--icmpv6-type 1").is_err());
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
            let mut pkt = Packet::new(proto, "fe80::1".parse().unwrap(), 0, "ff02::1".parse().unwrap(), 0);
            pkt.icmp_type = ty;
            pkt.icmp_code = code;
            parse::<Icmp6>(Family::V6, 58, line).eval(&pkt, &cx(&host, Hook::Input, true))
        }

        #[test]
        fn types_codes_and_inversion() {
            assert_eq!(run("--icmpv6-type echo-request", 58, 128, 0), Eval::Match);
            assert_eq!(run("--icmpv6-type echo-request", 58, 129, 0), Eval::NoMatch);
            assert_eq!(run("! --icmpv6-type neighbour-solicitation", 58, 135, 0), Eval::NoMatch);
            assert_eq!(run("! --icmpv6-type neighbour-solicitation", 58, 136, 0), Eval::Match);
            assert_eq!(run("--icmpv6-type port-unreachable", 58, 1, 4), Eval::Match);
            assert_eq!(run("--icmpv6-type port-unreachable", 58, 1, 3), Eval::NoMatch);
            assert_eq!(run("--icmpv6-type 1/2:4", 58, 1, 2), Eval::Match);
            assert_eq!(run("--icmpv6-type 1/2:4", 58, 1, 5), Eval::NoMatch);
        }

        #[test]
        fn type_255_is_not_any() {
            assert_eq!(run("--icmpv6-type 255", 58, 128, 0), Eval::NoMatch);
            assert_eq!(run("--icmpv6-type 255", 58, 255, 7), Eval::Match);
        }

        #[test]
        fn other_protocols_do_not_match() {
            assert_eq!(run("! --icmpv6-type 128", 1, 8, 0), Eval::NoMatch);
        }
    }
}
