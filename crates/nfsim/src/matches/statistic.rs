//! `-m statistic`: random sampling or every n-th packet (`xt_statistic.c`, `libxt_statistic.c`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, stateless};
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once, save_invert};
use crate::xt::value::parse_uint;

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatisticMode {
    /// `random`: match with probability `--probability`.
    Random,
    /// `nth`: match one packet out of every `--every`.
    Nth,
}

/// The statistic match. After [`Extension::finish`], `Random` has `probability` and `Nth` has
/// `every` and `packet`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Statistic {
    /// `--mode` (required).
    pub mode: Option<StatisticMode>,
    /// `--probability P`, as the kernel holds it: `round(P * 2^31)` (a packet matches when a
    /// random 31-bit number is below it).
    pub probability: Option<u32>,
    /// `--every N` (at least 1).
    pub every: Option<u32>,
    /// `--packet P`: the initial counter, `0 <= P < N`.
    pub packet: Option<u32>,
    /// `!` (given before `--probability` or `--every`): the match result is inverted.
    pub invert: bool,
}

/// Parses a number the way `strtod` does (leading white space, sign, decimal or hexadecimal
/// digits with exponent, `inf`, `nan`), requiring the whole string to be consumed.
fn parse_strtod(s: &str) -> Option<f64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let v = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        parse_hex_float(hex)?
    } else {
        // Rust's grammar is strtod's for decimal numbers, `inf`, `infinity` and `nan`, except
        // that it refuses a leading sign here (handled above) and `nan(...)`.
        if body.starts_with(['+', '-']) {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// `H.HHHp±E` after `0x` (C99 hexadecimal floating constant).
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = match s.find(['p', 'P']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars() {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    if let Some(e) = exp {
        let e: i32 = e.parse().ok()?;
        v *= 2f64.powi(e);
    }
    Some(v)
}

impl Extension for Statistic {
    const OPTIONS: &'static [&'static str] = &["mode", "probability", "every", "packet"];

    fn new(_ctx: &Ctx) -> Self {
        Statistic::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "mode" => {
                once(&self.mode, opt)?;
                no_invert(invert, opt)?;
                self.mode = Some(match args.value()? {
                    "random" => StatisticMode::Random,
                    "nth" => StatisticMode::Nth,
                    m => return Err(format!("bad mode `{m}` (expected random or nth)")),
                });
            }
            "probability" => {
                once(&self.probability, opt)?;
                let s = args.value()?;
                let p = parse_strtod(s)
                    .filter(|p| !(*p < 0.0 || *p > 1.0))
                    .ok_or_else(|| format!("bad value `{s}` for `--probability` (expected a number 0..=1)"))?;
                // lround(); a NaN (which strtod accepts and the range check lets through)
                // becomes 0, as the C conversion does on x86-64.
                self.probability = Some((p * 2147483648.0).round() as u32);
                self.invert |= invert;
            }
            "every" => {
                once(&self.every, opt)?;
                self.every = Some(parse_uint(args.value()?, 1, u64::from(u32::MAX))? as u32);
                self.invert |= invert;
            }
            "packet" => {
                once(&self.packet, opt)?;
                no_invert(invert, opt)?;
                self.packet = Some(parse_uint(args.value()?, 0, u64::from(u32::MAX))? as u32);
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        let Some(mode) = self.mode else {
            return Err("the statistic match requires `--mode`".to_string());
        };
        let nth = self.every.is_some() || self.packet.is_some();
        match mode {
            StatisticMode::Random if self.probability.is_none() => {
                return Err("`--probability` must be given with `--mode random`".to_string());
            }
            StatisticMode::Nth if !nth => {
                return Err("`--every` and `--packet` must be given with `--mode nth`".to_string());
            }
            _ => {}
        }
        if self.probability.is_some() && nth {
            return Err("`--probability` cannot be used together with `--every` / `--packet`".to_string());
        }
        match (self.every, self.packet) {
            (Some(_), None) => return Err("`--every` also requires `--packet`".to_string()),
            (None, Some(_)) => return Err("`--packet` also requires `--every`".to_string()),
            (Some(n), Some(p)) if p > n - 1 => {
                return Err(format!("`--packet {p}` must be below `--every {n}` (0 <= p <= n-1)"));
            }
            _ => {}
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        match self.mode {
            Some(StatisticMode::Random) => {
                out.push_str(" --mode random");
                save_invert(out, self.invert);
                let p = f64::from(self.probability.unwrap_or(0)) / 2147483648.0;
                let _ = write!(out, " --probability {p:.11}");
            }
            Some(StatisticMode::Nth) => {
                out.push_str(" --mode nth");
                save_invert(out, self.invert);
                let _ = write!(out, " --every {} --packet {}", self.every.unwrap_or(1), self.packet.unwrap_or(0));
            }
            None => {}
        }
    }
}

impl crate::matches::Evaluate for Statistic {
    /// `statistic_mt`. Random mode matches when a random 31-bit number is below the stored
    /// probability (`lround(p * 2^31)`), so with chance `probability / 2^31`, `!` taking the
    /// complement; a chance of 0 or 1 is a certain answer. Nth mode counts packets across all
    /// packets that reach the rule: unknown.
    fn eval(&self, _pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        match self.mode {
            Some(StatisticMode::Random) => {
                let hit = f64::from(self.probability.unwrap_or(0)) / 2147483648.0;
                Eval::chance(hit).invert(self.invert)
            }
            Some(StatisticMode::Nth) => Eval::Unknown(format!(
                "`-m statistic --mode nth --every {} --packet {}` depends on how many packets reached the rule before",
                self.every.unwrap_or(1),
                self.packet.unwrap_or(0)
            )),
            None => Eval::Unknown("`-m statistic` without a mode".to_string()),
        }
    }
}

impl Cond for Statistic {
    const READS: Fields = Fields::NONE;

    /// The answer is a chance (random mode) or unknown (nth mode), the same for every packet.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        stateless(self, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<Statistic>(ctx, line)
    }

    fn run(cases: &[(&str, Option<&str>)]) {
        for (input, expected) in cases {
            match expected {
                Some(e) => assert_eq!(check(input).as_deref(), Ok(*e), "input `{input}`"),
                None => assert!(check(input).is_err(), "input `{input}` must fail"),
            }
        }
    }

    #[test]
    fn size() {
        assert!(std::mem::size_of::<Statistic>() <= 40);
    }

    #[test]
    fn libxt_statistic_t() {
        run(&[
            ("", None),
            ("--mode random ! --probability 0.50000000000", Some(" --mode random ! --probability 0.50000000000")),
            ("--mode random ! --probability 1.1", None),
            ("--probability 1", None),
            ("--mode nth ! --every 5 --packet 2", Some(" --mode nth ! --every 5 --packet 2")),
            ("--mode nth ! --every 5", None),
            ("--mode nth ! --every 5 --packet 5", None),
        ]);
    }

    /// Save forms printed by the real iptables 1.8.9 (nf_tables).
    #[test]
    fn iptables_1_8_9_behaviour() {
        let r = |p: &str, e: &str| {
            assert_eq!(check(&format!("--mode random --probability {p}")).unwrap(), format!(" --mode random --probability {e}"), "probability {p}");
        };
        r("0.5", "0.50000000000");
        r("0.25", "0.25000000000");
        r("0.33333", "0.33332999982");
        r("0.3333333333", "0.33333333349");
        r("0.1", "0.10000000009");
        r("0.01", "0.00999999978");
        r("0", "0.00000000000");
        r("1", "1.00000000000");
        r("1.0", "1.00000000000");
        r("0.0000000001", "0.00000000000");
        r("0.99999999999", "1.00000000000");
        r("1e-3", "0.00100000016");
        r(".5", "0.50000000000");
        r("0x0.8", "0.50000000000");
        r("0.20000", "0.20000000019");
        r("0.06250000000", "0.06250000000");
        r("0.14285714286", "0.14285714272");
        r("nan", "0.00000000000");
        r("+0.5", "0.50000000000");
        r("5e-1", "0.50000000000");
        r("0.000000000233", "0.00000000047");
        r("0.000000000232", "0.00000000000");
        r("0.000244140625", "0.00024414062");
        r("0.000732421875", "0.00073242188");
        run(&[
            ("--mode random --probability -0.1", None),
            ("--mode random --probability 0.5x", None),
            ("--mode random --probability inf", None),
            ("--mode random", None),
            ("--probability 0.5 --mode random", Some(" --mode random --probability 0.50000000000")),
            ("--mode nth --every 5 --packet 2", Some(" --mode nth --every 5 --packet 2")),
            ("--mode nth --every 5", None),
            ("--mode nth --every 1", None),
            ("--mode nth --every 0", None),
            ("--mode nth --every 5 --packet 0", Some(" --mode nth --every 5 --packet 0")),
            ("--mode nth --packet 2 --every 5", Some(" --mode nth --every 5 --packet 2")),
            ("--mode nth --every 5 ! --packet 2", None),
            ("--mode random --every 5", None),
            ("--mode nth --probability 0.5", None),
            ("--mode foo", None),
            ("--mode RANDOM --probability 0.5", None),
            ("! --mode random --probability 0.5", None),
            ("--mode random --mode random --probability 0.5", None),
            ("--mode nth --every 4294967295 --packet 4294967294", Some(" --mode nth --every 4294967295 --packet 4294967294")),
            ("--mode nth --every 4294967296", None),
            ("--mode nth --packet 3", None),
            ("--mode random --probability 0.5 ! --probability 0.5", None),
            ("--mode random --probability 0.5 --every 5 --packet 1", None),
            ("--mode nth --every 5 --packet 1 --probability 0.5", None),
            ("--mode nth --every 0x10 --packet 010", Some(" --mode nth --every 16 --packet 8")),
            ("--mode random ! --every 3 --packet 1", None),
        ]);
    }
}

#[cfg(test)]
mod eval_tests {
    use super::*;
    use crate::host::Host;
    use crate::matches::{Eval, EvalCtx, Evaluate};
    use crate::packet::Packet;
    use crate::xt::ext::parse_alone;
    use crate::xt::{Family, Hook, TableName};

    fn eval(line: &str) -> Eval {
        let m: Statistic = parse_alone(Ctx { family: Family::V4, table: TableName::Nat, proto: None }, line);
        let host = Host::new("h");
        let cx = EvalCtx { host: &host, hook: Hook::Prerouting, table: TableName::Nat, family: Family::V4, conn: None };
        m.eval(&Packet::default(), &cx)
    }

    #[test]
    fn random_is_a_chance() {
        assert_eq!(eval("--mode random --probability 0.5"), Eval::Chance(0.5));
        assert_eq!(eval("--mode random ! --probability 0.25"), Eval::Chance(0.75));
        // The probability is kept in 31 bits: 0.1 becomes lround(0.1 * 2^31) / 2^31.
        assert_eq!(eval("--mode random --probability 0.1"), Eval::Chance(214748365.0 / 2147483648.0));
        assert_eq!(eval("--mode random --probability 0.33333"), Eval::Chance(715820724.0 / 2147483648.0));
        // Certain answers at the ends: no 31-bit number is below 0, all are below 2^31.
        assert_eq!(eval("--mode random --probability 0"), Eval::NoMatch);
        assert_eq!(eval("--mode random ! --probability 0"), Eval::Match);
        assert_eq!(eval("--mode random --probability 1"), Eval::Match);
        assert_eq!(eval("--mode random ! --probability 1"), Eval::NoMatch);
        // Rounds to 0.
        assert_eq!(eval("--mode random --probability 0.0000000001"), Eval::NoMatch);
    }

    #[test]
    fn nth_is_unknown() {
        assert!(matches!(eval("--mode nth --every 3 --packet 0"), Eval::Unknown(r) if r.contains("--every 3")));
        assert!(matches!(eval("--mode nth ! --every 2 --packet 1"), Eval::Unknown(_)));
    }
}
