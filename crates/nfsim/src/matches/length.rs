//! `-m length`: the packet's length at layer 3, within a range (`xt_length.c`, `libxt_length.c`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::classes::cond::{Cond, Fields};
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};
use crate::xt::value::parse_c_number;

/// `--length FIRST[:LAST]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LengthRange {
    /// Shortest length matched.
    pub min: u16,
    /// Longest length matched (a range with `min > max` never matches).
    pub max: u16,
    /// `!`.
    pub invert: bool,
}

/// The length match: the IPv4 total length, or for IPv6 the payload length plus the 40-byte
/// header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Length {
    /// `--length` (required).
    pub range: Option<LengthRange>,
}

/// Parses a `XTTYPE_UINT16RC` value as libxtables' `xtopt_parse_mint` does: one or two
/// `:`-separated C numbers (`0x` hex and `0` octal too), an empty first part meaning 0 and an
/// empty second part 65535. iptables 1.8.9 does not check that the range ascends.
fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("bad length `{s}` (expected LENGTH or FIRST:LAST, each 0-65535)");
    let mut parts = s.split(':');
    let first = parts.next().unwrap_or("");
    let second = parts.next();
    if parts.next().is_some() {
        return Err(bad());
    }
    let number = |p: &str, default: u16| -> Result<u16, String> {
        if p.is_empty() {
            return Ok(default);
        }
        parse_c_number(p).and_then(|v| u16::try_from(v).ok()).ok_or_else(bad)
    };
    let min = number(first, 0)?;
    let max = match second {
        Some(p) => number(p, u16::MAX)?,
        None => min,
    };
    Ok((min, max))
}

impl Extension for Length {
    const OPTIONS: &'static [&'static str] = &["length"];

    fn new(_ctx: &Ctx) -> Self {
        Length::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        if opt != "length" {
            return Err(format!("unknown option `--{opt}`"));
        }
        once(&self.range, "length")?;
        let (min, max) = parse_range(args.value()?)?;
        self.range = Some(LengthRange { min, max, invert });
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.range.is_none() {
            return Err("the length match requires `--length`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        let Some(r) = self.range else { return };
        save_invert(out, r.invert);
        if r.min == r.max {
            let _ = write!(out, " --length {}", r.min);
        } else {
            let _ = write!(out, " --length {}:{}", r.min, r.max);
        }
    }
}

impl crate::matches::Evaluate for Length {
    /// `length_mt` / `length_mt6` (`xt_length.c`): the IPv4 total length, or the IPv6 payload
    /// length plus the 40-byte header (both are `pkt.len`, the length of the whole IP packet),
    /// within `min..=max`, flipped by `!`.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        let Some(r) = self.range else { return crate::matches::Eval::Unknown("`-m length` without `--length`".into()) };
        crate::matches::Eval::from_bool((r.min <= pkt.len && pkt.len <= r.max) != r.invert)
    }
}

impl Cond for Length {
    /// It reads the length, fixed in every class.
    const READS: Fields = Fields::NONE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<Length>(ctx, line)
    }

    /// Every line of iptables' `extensions/libxt_length.t`.
    #[test]
    fn libxt_length_t() {
        for (line, saved) in [
            ("--length 1", " --length 1"),
            ("--length :2", " --length 0:2"),
            ("--length 0:3", " --length 0:3"),
            ("--length 4:", " --length 4:65535"),
            ("--length :", " --length 0:65535"),
            ("--length 0:65535", " --length 0:65535"),
            ("! --length 0:65535", " ! --length 0:65535"),
            ("--length 4:4", " --length 4"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        assert!(check("--length 0:65536").is_err());
        assert!(check("--length -1:65535").is_err());
        assert!(check("").is_err());
        // The spec's `--length 4:3;;FAIL` is iptables 1.8.11; 1.8.9 (this machine) accepts a
        // reversed range and saves it as written.
        assert_eq!(check("--length 4:3").as_deref(), Ok(" --length 4:3"));
    }

    /// Values as the real `iptables` 1.8.9 read and printed them.
    #[test]
    fn numbers_like_iptables_1_8_9() {
        assert_eq!(check("--length 0x10:010").as_deref(), Ok(" --length 16:8"));
        assert_eq!(check("--length +5").as_deref(), Ok(" --length 5"));
        for line in ["--length 1:2:3", "--length 5x", "--length 1 --length 2"] {
            assert!(check(line).is_err(), "{line}");
        }
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::tcp::test_util::{cx, parse};
        use crate::matches::{Eval, Evaluate};
        use crate::packet::Packet;
        use crate::xt::{Family, Hook};

        fn run(line: &str, len: u16) -> Eval {
            let host = Host::new("h");
            let mut pkt = Packet::new(17, "10.0.0.1".parse().unwrap(), 1, "10.0.0.2".parse().unwrap(), 2);
            pkt.len = len;
            parse::<Length>(Family::V4, 0, line).eval(&pkt, &cx(&host, Hook::Input, false))
        }

        #[test]
        fn ranges_and_inversion() {
            assert_eq!(run("--length 60", 60), Eval::Match);
            assert_eq!(run("--length 60", 61), Eval::NoMatch);
            assert_eq!(run("--length 0:1000", 1000), Eval::Match);
            assert_eq!(run("--length 0:1000", 1001), Eval::NoMatch);
            assert_eq!(run("--length 1001:", 65535), Eval::Match);
            assert_eq!(run("! --length 0:1000", 1001), Eval::Match);
            assert_eq!(run("! --length 0:1000", 20), Eval::NoMatch);
            // A reversed range never matches, inverted it always does.
            assert_eq!(run("--length 4:3", 3), Eval::NoMatch);
            assert_eq!(run("! --length 4:3", 4), Eval::Match);
            assert_eq!(run("! --length :", 1500), Eval::NoMatch);
        }
    }
}
