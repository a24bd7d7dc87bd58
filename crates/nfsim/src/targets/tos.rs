//! `-j TOS`: changes the IPv4 TOS byte or the IPv6 traffic class (`xt_DSCP.c` `tos_tg`,
//! `libxt_TOS.c` revision 1).
//!
//! Every form loads as a `(value, mask)` pair, "clear the bits of `mask`, then XOR in `value`",
//! and saves as `--set-tos 0xVV/0xMM` (two hex digits each):
//! - `--set-tos V[/M]` takes numbers (`strtoul` base 0, at most 0xff; the mask defaults to 0xff)
//!   or one of the symbolic names `Minimize-Delay` (0x10), `Maximize-Throughput` (0x08),
//!   `Maximize-Reliability` (0x04), `Minimize-Cost` (0x02) and `Normal-Service` (0x00), matched
//!   case-insensitively, whose mask is 0x3f (the precedence bits are zeroed, the ECN bits kept);
//! - `--and-tos B` is `0x00/~B`, `--or-tos B` is `B/B`, `--xor-tos B` is `B/0x00`.
//!
//! The kernel accepts the target in the mangle table only.

use serde::Serialize;

use super::effect::{Applied, Cx, Effect, go};
use super::mark::Given;
use crate::stack::{Domain, Flow};
use crate::xt::ext::{Args, Ctx, Extension, OptResult};
use crate::xt::value::parse_uint;

/// The TOS names `--set-tos` accepts, with their value (`tos_values.c`).
pub const TOS_NAMES: [(&str, u8); 5] =
    [("Minimize-Delay", 0x10), ("Maximize-Throughput", 0x08), ("Maximize-Reliability", 0x04), ("Minimize-Cost", 0x02), ("Normal-Service", 0x00)];

/// The TOS target (`struct xt_tos_target_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tos {
    /// Bits XORed into the TOS byte after `mask` was cleared.
    pub value: u8,
    /// Bits of the TOS byte cleared first.
    pub mask: u8,
    #[serde(skip)]
    given: Given,
}

impl Tos {
    /// The TOS byte (traffic class) after the target ran on a packet whose TOS byte was `tos`.
    pub fn apply(&self, tos: u8) -> u8 {
        (tos & !self.mask) ^ self.value
    }
}

/// Reads the longest number at the start of `s` as `strtoumax(s, &end, 0)` does, refusing a
/// minus sign as `xtables_strtoul` does; returns the number and what follows it, or `None`
/// when there is no number or it is above `max`.
pub(crate) fn strtoul_prefix(s: &str, max: u64) -> Option<(u64, &str)> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let t = t.strip_prefix('+').unwrap_or(t);
    let (radix, digits) = match t.as_bytes() {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16, &t[2..]),
        [b'0', ..] => (8, t),
        _ => (10, t),
    };
    let len = digits.find(|c: char| !c.is_digit(radix)).unwrap_or(digits.len());
    if len == 0 {
        return None;
    }
    let v = u64::from_str_radix(&digits[..len], radix).ok()?;
    (v <= max).then_some((v, &digits[len..]))
}

/// `--set-tos` as `xtopt_parse_tosmask` reads it.
fn parse_tosmask(s: &str) -> Result<(u8, u8), String> {
    if let Some((value, rest)) = strtoul_prefix(s, 0xff) {
        let (mask, rest) = match rest.strip_prefix('/') {
            Some(m) => strtoul_prefix(m, 0xff).ok_or_else(|| format!("bad TOS mask `{m}`"))?,
            None => (0xff, rest),
        };
        if !rest.is_empty() {
            return Err(format!("bad TOS value `{s}` (expected VALUE[/MASK], each 0..=0xff)"));
        }
        return Ok((value as u8, mask as u8));
    }
    TOS_NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|&(_, v)| (v, 0x3f))
        .ok_or_else(|| format!("unknown TOS name `{s}` (expected a number 0..=0xff or one of {})", TOS_NAMES.map(|(n, _)| n).join(", ")))
}

impl Extension for Tos {
    const OPTIONS: &'static [&'static str] = &["set-tos", "and-tos", "or-tos", "xor-tos"];

    fn new(_ctx: &Ctx) -> Self {
        Tos::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        self.given.record(Self::OPTIONS, opt, invert, Self::OPTIONS)?;
        let arg = args.value()?;
        (self.value, self.mask) = match opt {
            "set-tos" => parse_tosmask(arg)?,
            _ => {
                let bits = parse_uint(arg, 0, 0xff)? as u8;
                match opt {
                    "and-tos" => (0, !bits),
                    "or-tos" => (bits, bits),
                    _ => (bits, 0),
                }
            }
        };
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if !self.given.any() {
            return Err("the TOS target requires `--set-tos`, `--and-tos`, `--or-tos` or `--xor-tos`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        out.push_str(&format!(" --set-tos 0x{:02x}/0x{:02x}", self.value, self.mask));
    }
}

/// `tos_tg`: the TOS byte rewritten.
impl Effect for Tos {
    fn effect<'a, D: Domain<'a>>(&self, _: &mut D, mut st: D::State, _: &Cx<'_, 'a, D>) -> Applied<D::State> {
        let tos = st.tos_mut();
        *tos = self.apply(*tos);
        go(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Mangle, proto: None };
        check_alone::<Tos>(ctx, line)
    }

    // Expected forms are what iptables-save v1.8.9 (nf_tables) printed for the same rules.
    #[test]
    fn save_forms() {
        for (input, saved) in [
            ("--set-tos 0x1f", "0x1f/0xff"),
            ("--set-tos 0x1f/0x1f", "0x1f/0x1f"),
            ("--set-tos 0xff", "0xff/0xff"),
            ("--set-tos 0x01/0x0", "0x01/0x00"),
            ("--set-tos +1/+2", "0x01/0x02"),
            ("--set-tos 0x1F/0XFF", "0x1f/0xff"),
            ("--set-tos Minimize-Delay", "0x10/0x3f"),
            ("--set-tos minimize-delay", "0x10/0x3f"),
            ("--set-tos Maximize-Throughput", "0x08/0x3f"),
            ("--set-tos Maximize-Reliability", "0x04/0x3f"),
            ("--set-tos Minimize-Cost", "0x02/0x3f"),
            ("--set-tos Normal-Service", "0x00/0x3f"),
            ("--and-tos 0x12", "0x00/0xed"),
            ("--or-tos 0x12", "0x12/0x12"),
            ("--xor-tos 0x12", "0x12/0x00"),
        ] {
            assert_eq!(check(input).unwrap(), format!(" --set-tos {saved}"), "{input}");
        }
    }

    #[test]
    fn refuses_what_iptables_refuses() {
        for bad in [
            "",
            "--set-tos 0x100",
            "--set-tos 0x1/0x100",
            "--set-tos 1/",
            "--set-tos 1x",
            "--set-tos 08",
            "--set-tos -1",
            "--set-tos Normal-Service/0xff",
            "--set-tos Minimize-Delayx",
            "--xor-tos 0x100",
            "--xor-tos Minimize-Cost",
            "--and-tos 1 --or-tos 2",
            "--set-tos 1 --set-tos 2",
            "! --set-tos 1",
        ] {
            assert!(check(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn numbers_read_like_strtoul() {
        assert_eq!(strtoul_prefix("0x1fzz", 255), Some((0x1f, "zz")));
        assert_eq!(strtoul_prefix("0x", 255), Some((0, "x")));
        assert_eq!(strtoul_prefix("017/", 255), Some((15, "/")));
        assert_eq!(strtoul_prefix(" 7", 255), Some((7, "")));
        assert_eq!(strtoul_prefix("256", 255), None);
        assert_eq!(strtoul_prefix("-1", 255), None);
        assert_eq!(strtoul_prefix("x", 255), None);
    }
}
