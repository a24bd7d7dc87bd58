//! `-m tos`: the IPv4 TOS byte / IPv6 traffic class under a mask (`xt_dscp.c` `tos_mt`,
//! `libxt_tos.c` revision 1, both families).

use serde::Serialize;

use crate::classes::cond::{Cond, Fields};
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};

/// The symbolic `--tos` names (matched case-insensitively) and their values; they imply the
/// mask 0x3f (the two top precedence bits are not compared; the ECN bits are).
pub const TOS_NAMES: [(&str, u8); 5] =
    [("Minimize-Delay", 0x10), ("Maximize-Throughput", 0x08), ("Maximize-Reliability", 0x04), ("Minimize-Cost", 0x02), ("Normal-Service", 0x00)];

/// `--tos VALUE[/MASK]`: matches when `(tos & mask) == value`, or differs with `!`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TosSpec {
    /// Value compared with the masked TOS byte (not masked itself, as in the kernel).
    pub value: u8,
    /// Bits of the TOS byte compared.
    pub mask: u8,
    /// `!`.
    pub invert: bool,
}

/// The tos match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tos {
    /// `--tos` (required).
    pub tos: Option<TosSpec>,
}

/// What C's `strtoul`/`strtoumax` reads from the start of `s` in `base` (0 = C prefixes, or 10,
/// 16, 8): leading white space and one `+`/`-` sign are skipped, a `-` negates modulo 2^64.
/// Returns `(value, end, overflow)` where `end` is the byte offset where parsing stopped (0 when
/// no digit was read, as `strtoul` then leaves `endptr` at the very start) and `overflow` is
/// `ERANGE` (the value is then `u64::MAX`).
pub(crate) fn c_strtoul(b: &[u8], base: u32) -> (u64, usize, bool) {
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let hex_prefix = |i: usize| b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'X')) && b.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit());
    let radix = match base {
        0 if hex_prefix(i) => {
            i += 2;
            16
        }
        0 if b.get(i) == Some(&b'0') => 8,
        0 => 10,
        16 => {
            if hex_prefix(i) {
                i += 2;
            }
            16
        }
        r => r,
    };
    let start = i;
    let mut v: u64 = 0;
    let mut overflow = false;
    while let Some(d) = b.get(i).and_then(|&c| (c as char).to_digit(radix)) {
        match v.checked_mul(radix as u64).and_then(|x| x.checked_add(d as u64)) {
            Some(x) => v = x,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start {
        return (0, 0, false);
    }
    if overflow {
        return (u64::MAX, i, true);
    }
    let v = if neg { v.wrapping_neg() } else { v };
    (v, i, false)
}

/// `xtables_strtoul_base(s, &end, .., 0, max, 0)`: a C number (decimal, `0x` hex, `0` octal)
/// at the start of `s`, in `0..=max`; no minus sign. Returns the value and where it ended.
pub(crate) fn xt_strtoul_prefix(s: &str, max: u64) -> Option<(u64, usize)> {
    let lead = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    if lead.starts_with('-') {
        return None;
    }
    let (v, end, overflow) = c_strtoul(s.as_bytes(), 0);
    if end == 0 || overflow || v > max {
        return None;
    }
    Some((v, end))
}

/// An option value of libxtables type `XTTYPE_UINT8`/`UINT16`/`UINT32`: the whole string is a
/// C number in `0..=max`.
pub(crate) fn xt_uint(s: &str, opt: &str, max: u64) -> Result<u64, String> {
    match xt_strtoul_prefix(s, max) {
        Some((v, end)) if end == s.len() => Ok(v),
        _ => Err(format!("bad value `{s}` for `--{opt}` (expected a number in 0..={max})")),
    }
}

/// Parses a `--tos` argument as libxt_tos does: `VALUE[/MASK]` (C numbers up to 255, the mask
/// defaulting to 0xff) or a symbolic name (mask 0x3f).
pub(crate) fn parse_tos(s: &str) -> Result<(u8, u8), String> {
    let illegal = || format!("illegal TOS value `{s}` (expected VALUE[/MASK], numbers 0..=255, or a name)");
    if let Some((value, end)) = xt_strtoul_prefix(s, 0xff) {
        let mut mask = 0xff;
        let mut rest = &s[end..];
        if let Some(m) = rest.strip_prefix('/') {
            let (v, e) = xt_strtoul_prefix(m, 0xff).ok_or_else(illegal)?;
            mask = v;
            rest = &m[e..];
        }
        if !rest.is_empty() {
            return Err(illegal());
        }
        return Ok((value as u8, mask as u8));
    }
    TOS_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)).map(|&(_, v)| (v, 0x3f)).ok_or_else(|| {
        format!(
            "unknown TOS name `{s}` (expected a number or Minimize-Delay, \
                 Maximize-Throughput, Maximize-Reliability, Minimize-Cost, Normal-Service)"
        )
    })
}

impl Extension for Tos {
    const OPTIONS: &'static [&'static str] = &["tos"];

    fn new(_ctx: &Ctx) -> Self {
        Tos::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        once(&self.tos, opt)?;
        let (value, mask) = parse_tos(args.value()?)?;
        self.tos = Some(TosSpec { value, mask, invert });
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.tos.is_none() {
            return Err("the tos match requires `--tos VALUE[/MASK]`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(t) = self.tos {
            save_invert(out, t.invert);
            out.push_str(&format!(" --tos 0x{:02x}/0x{:02x}", t.value, t.mask));
        }
    }
}

impl crate::matches::Evaluate for Tos {
    /// `tos_mt`: the IPv4 TOS byte or the IPv6 traffic class (both are `pkt.tos`) under the
    /// mask, compared with the unmasked value, then `!`. A value with bits outside the mask never
    /// matches, as in the kernel.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        // `--tos` is required; a zeroed `xt_tos_match_info` (value 0, mask 0) matches everything.
        let t = self.tos.unwrap_or(TosSpec { value: 0, mask: 0, invert: false });
        crate::matches::Eval::from_bool(pkt.tos & t.mask == t.value).invert(t.invert)
    }
}

impl Cond for Tos {
    /// It reads the TOS byte, which the walk keeps per state (TOS and DSCP targets): the example
    /// packet answers for the whole class.
    const READS: Fields = Fields::NONE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn ctx(family: Family) -> Ctx {
        Ctx { family, table: TableName::Filter, proto: None }
    }

    fn check(line: &str) -> Result<String, String> {
        check_alone::<Tos>(ctx(Family::V4), line)
    }

    #[test]
    fn libxt_tos_t() {
        assert_eq!(check("--tos Minimize-Delay").unwrap(), " --tos 0x10/0x3f");
        assert_eq!(check("--tos Maximize-Throughput").unwrap(), " --tos 0x08/0x3f");
        assert_eq!(check("--tos Maximize-Reliability").unwrap(), " --tos 0x04/0x3f");
        assert_eq!(check("--tos Minimize-Cost").unwrap(), " --tos 0x02/0x3f");
        assert_eq!(check("--tos Normal-Service").unwrap(), " --tos 0x00/0x3f");
        assert_eq!(check("--tos 0xff").unwrap(), " --tos 0xff/0xff");
        assert_eq!(check("! --tos 0xff").unwrap(), " ! --tos 0xff/0xff");
        assert_eq!(check("--tos 0x00").unwrap(), " --tos 0x00/0xff");
        assert_eq!(check("--tos 0x0f").unwrap(), " --tos 0x0f/0xff");
        assert_eq!(check("--tos 0x0f/0x0f").unwrap(), " --tos 0x0f/0x0f");
        assert!(check("--tos wrong").is_err());
        assert!(check("").is_err());
    }

    /// Expected forms printed by the real iptables 1.8.9 (nf_tables).
    #[test]
    fn values_as_the_real_tool_reads_them() {
        assert_eq!(check("--tos minimize-delay").unwrap(), " --tos 0x10/0x3f");
        assert_eq!(check("--tos MINIMIZE-COST").unwrap(), " --tos 0x02/0x3f");
        assert_eq!(check("--tos 255").unwrap(), " --tos 0xff/0xff");
        assert_eq!(check("--tos +16").unwrap(), " --tos 0x10/0xff");
        assert_eq!(check("--tos 020").unwrap(), " --tos 0x10/0xff");
        assert_eq!(check("--tos 0x10/255").unwrap(), " --tos 0x10/0xff");
        assert_eq!(check("--tos 0x08/0x0").unwrap(), " --tos 0x08/0x00");
        for bad in ["0x10/0x1ff", "0x1ff", "256", "0x10/", "/0x3f", "0x10/0x3f/1", "Minimize-Delay/0x3f", "0x10/-1", "-1", "0x", "08"] {
            assert!(check(&format!("--tos {bad}")).is_err(), "{bad}");
        }
        assert!(check("--tos 1 --tos 2").is_err());
        assert!(check("! --tos 1 ! --tos 2").is_err());
        // ip6tables takes the same match (traffic class).
        assert_eq!(check_alone::<Tos>(ctx(Family::V6), "--tos Minimize-Delay").unwrap(), " --tos 0x10/0x3f");
        assert_eq!(check_alone::<Tos>(ctx(Family::V6), "--tos 0x10").unwrap(), " --tos 0x10/0xff");
    }

    #[test]
    fn c_numbers() {
        assert_eq!(c_strtoul(b"0x", 0), (0, 1, false));
        assert_eq!(c_strtoul(b"08", 0), (0, 1, false));
        assert_eq!(c_strtoul(b" +12:", 10), (12, 4, false));
        assert_eq!(c_strtoul(b":30", 10), (0, 0, false));
        assert_eq!(c_strtoul(b"-1", 10), (u64::MAX, 2, false));
        assert!(c_strtoul(b"99999999999999999999", 10).2);
        assert_eq!(xt_uint(" 5", "x", 63), Ok(5));
        assert!(xt_uint("-0", "x", 63).is_err());
        assert!(xt_uint("", "x", 63).is_err());
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::{Eval, EvalCtx, Evaluate};
        use crate::packet::Packet;
        use crate::xt::{Family, Hook, TableName};

        fn run(value: u8, mask: u8, invert: bool, tos: u8, family: Family) -> Eval {
            let host = Host::new("h");
            let (src, dst) = match family {
                Family::V4 => ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()),
                Family::V6 => ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap()),
            };
            let mut pkt = Packet::new(6, src, 1234, dst, 80);
            pkt.tos = tos;
            let cx = EvalCtx { host: &host, hook: Hook::Input, table: TableName::Mangle, family, conn: None };
            Tos { tos: Some(TosSpec { value, mask, invert }) }.eval(&pkt, &cx)
        }

        #[test]
        fn masked_compare() {
            // --tos Minimize-Delay = 0x10/0x3f: the precedence bits 0xc0 are ignored.
            assert_eq!(run(0x10, 0x3f, false, 0x10, Family::V4), Eval::Match);
            assert_eq!(run(0x10, 0x3f, false, 0xd0, Family::V4), Eval::Match);
            // ... but the ECN bits are inside the mask.
            assert_eq!(run(0x10, 0x3f, false, 0x12, Family::V4), Eval::NoMatch);
            assert_eq!(run(0x10, 0x3f, false, 0x08, Family::V4), Eval::NoMatch);
            // Plain number: mask 0xff, exact byte.
            assert_eq!(run(0x10, 0xff, false, 0x10, Family::V4), Eval::Match);
            assert_eq!(run(0x10, 0xff, false, 0x90, Family::V4), Eval::NoMatch);
        }

        #[test]
        fn inversion() {
            assert_eq!(run(0x10, 0x3f, true, 0x10, Family::V4), Eval::NoMatch);
            assert_eq!(run(0x10, 0x3f, true, 0x08, Family::V4), Eval::Match);
        }

        #[test]
        fn value_outside_mask_and_empty_mask() {
            // The kernel does not mask the value: 0x10/0x0f can never match.
            for tos in [0x00, 0x10, 0x1f, 0xff] {
                assert_eq!(run(0x10, 0x0f, false, tos, Family::V4), Eval::NoMatch, "{tos:#x}");
                assert_eq!(run(0x10, 0x0f, true, tos, Family::V4), Eval::Match, "{tos:#x}");
            }
            // Mask 0 with value 0 matches every packet.
            assert_eq!(run(0x00, 0x00, false, 0xff, Family::V4), Eval::Match);
            assert_eq!(run(0x08, 0x00, false, 0x08, Family::V4), Eval::NoMatch);
        }

        #[test]
        fn ipv6_traffic_class() {
            assert_eq!(run(0xb8, 0xfc, false, 0xb9, Family::V6), Eval::Match);
            assert_eq!(run(0xb8, 0xff, false, 0xb9, Family::V6), Eval::NoMatch);
            assert_eq!(run(0xb8, 0xff, true, 0xb9, Family::V6), Eval::Match);
        }
    }
}
