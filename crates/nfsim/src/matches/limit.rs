//! `-m limit`: a token bucket that matches at most an average rate with bursts (`xt_limit.c`,
//! `libxt_limit.c`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, stateless};
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert};
use crate::xt::value::parse_uint;

/// `XT_LIMIT_SCALE`: periods are in 1/10000 s.
pub const SCALE: u32 = 10000;
/// The default `--limit 3/hour` as a period.
pub const DEFAULT_AVG: u32 = SCALE * 3600 / 3;
/// The default `--limit-burst`.
pub const DEFAULT_BURST: u32 = 5;

/// The limit match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// The average period between matches, in 1/10000 s (`XT_LIMIT_SCALE * unit / rate`).
    pub avg: u32,
    /// Bucket size in packets.
    pub burst: u32,
    #[serde(skip)]
    seen_limit: bool,
    #[serde(skip)]
    seen_burst: bool,
}

impl Default for Limit {
    fn default() -> Self {
        Limit { avg: DEFAULT_AVG, burst: DEFAULT_BURST, seen_limit: false, seen_burst: false }
    }
}

/// C `atoi`: leading white space, a sign, then digits up to the first other character;
/// the `long` result is truncated to `int`.
fn atoi(s: &str) -> i32 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in body.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    (if neg { v.wrapping_neg() } else { v }) as i32
}

/// Parses `N[/second|/minute|/hour|/day]` (units abbreviable, any case) into a period.
fn parse_rate(s: &str) -> Result<u32, String> {
    let bad = || format!("bad rate `{s}` (expected N/sec, N/min, N/hour or N/day, N > 0)");
    let mult: u32 = match s.split_once('/') {
        None => 1,
        Some((_, unit)) => {
            let abbr = |w: &str| !unit.is_empty() && unit.len() <= w.len() && w.as_bytes()[..unit.len()].eq_ignore_ascii_case(unit.as_bytes());
            if abbr("second") {
                1
            } else if abbr("minute") {
                60
            } else if abbr("hour") {
                3600
            } else if abbr("day") {
                86400
            } else {
                return Err(bad());
            }
        }
    };
    let r = atoi(s) as u32;
    if r == 0 {
        return Err(bad());
    }
    let avg = SCALE * mult / r;
    if avg == 0 {
        return Err(format!("rate `{s}` is too fast (at most 10000/sec)"));
    }
    Ok(avg)
}

/// Appends a period as the largest unit that still prints it without losing too much
/// (`print_rate`).
fn fmt_rate(out: &mut String, period: u32) {
    const RATES: [(&str, u32); 4] = [("day", SCALE * 86400), ("hour", SCALE * 3600), ("min", SCALE * 60), ("sec", SCALE)];
    if period == 0 {
        out.push_str("inf");
        return;
    }
    let mut i = 1;
    while i < RATES.len() {
        let m = RATES[i].1;
        if period > m || m / period < m % period {
            break;
        }
        i += 1;
    }
    let (name, m) = RATES[i - 1];
    let _ = write!(out, "{}/{name}", m / period);
}

impl Extension for Limit {
    const OPTIONS: &'static [&'static str] = &["limit", "limit-burst"];

    fn new(_ctx: &Ctx) -> Self {
        Limit::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "limit" => {
                if self.seen_limit {
                    return Err("option `--limit` may be given only once".to_string());
                }
                no_invert(invert, opt)?;
                self.avg = parse_rate(args.value()?)?;
                self.seen_limit = true;
            }
            "limit-burst" => {
                if self.seen_burst {
                    return Err("option `--limit-burst` may be given only once".to_string());
                }
                no_invert(invert, opt)?;
                self.burst = parse_uint(args.value()?, 0, 10000)? as u32;
                self.seen_burst = true;
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        // iptables-nft 1.8.9 loads the match as an nf_tables `limit` expression, whose kernel
        // side replaces a zero burst with its default of 5 (saved without `--limit-burst`).
        if self.burst == 0 {
            self.burst = DEFAULT_BURST;
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        out.push_str(" --limit ");
        fmt_rate(out, self.avg);
        if self.burst != DEFAULT_BURST {
            let _ = write!(out, " --limit-burst {}", self.burst);
        }
    }
}

impl crate::matches::Evaluate for Limit {
    /// `limit_mt` is a token bucket refilled with time: the answer depends on the rate and timing
    /// of earlier packets, which the simulator does not know.
    fn eval(&self, _pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        let mut rate = String::new();
        fmt_rate(&mut rate, self.avg);
        crate::matches::Eval::Unknown(format!(
            "`-m limit --limit {rate} --limit-burst {}` depends on the packet rate (matches while the rate stays under the limit)",
            self.burst
        ))
    }
}

impl Cond for Limit {
    const READS: Fields = Fields::NONE;

    /// The answer depends on the packet rate, not the packet: unknown everywhere.
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
        check_alone::<Limit>(ctx, line)
    }

    #[test]
    fn size() {
        assert!(std::mem::size_of::<Limit>() <= 40);
    }

    #[test]
    fn libxt_limit_t() {
        for l in ["--limit 1/sec", "--limit 1/min", "--limit 1000/hour", "--limit 1000/day", "--limit 1/sec --limit-burst 1"] {
            assert_eq!(check(l).unwrap(), format!(" {l}"));
        }
    }

    /// Save forms printed by the real iptables 1.8.9 (nf_tables).
    #[test]
    fn iptables_1_8_9_behaviour() {
        let ok = [
            ("", " --limit 3/hour"),
            ("--limit 1/s", " --limit 1/sec"),
            ("--limit 1/second", " --limit 1/sec"),
            ("--limit 1/m", " --limit 1/min"),
            ("--limit 1/h", " --limit 1/hour"),
            ("--limit 1/d", " --limit 1/day"),
            ("--limit 5", " --limit 5/sec"),
            ("--limit 10000/sec", " --limit 10000/sec"),
            ("--limit 1/minute", " --limit 1/min"),
            ("--limit 1/mi", " --limit 1/min"),
            ("--limit 86400/day", " --limit 1/sec"),
            ("--limit 86401/day", " --limit 1/sec"),
            ("--limit 3600/hour", " --limit 1/sec"),
            ("--limit 7200/hour", " --limit 2/sec"),
            ("--limit 60/min", " --limit 1/sec"),
            ("--limit 61/min", " --limit 61/min"),
            ("--limit 1/SEC", " --limit 1/sec"),
            ("--limit 010/sec", " --limit 10/sec"),
            ("--limit-burst 5", " --limit 3/hour"),
            ("--limit-burst 10", " --limit 3/hour --limit-burst 10"),
            ("--limit-burst 0", " --limit 3/hour"),
            ("--limit-burst 10000", " --limit 3/hour --limit-burst 10000"),
            ("--limit-burst 3 --limit 1/min", " --limit 1/min --limit-burst 3"),
            ("--limit 3/hour --limit-burst 0x10", " --limit 3/hour --limit-burst 16"),
            ("--limit 1/day --limit-burst 5", " --limit 1/day"),
            // A sample of the 172 rates compared with the real tool.
            ("--limit 7/min", " --limit 7/min"),
            ("--limit 9999/day", " --limit 9999/day"),
            ("--limit 43200/hour", " --limit 12/sec"),
            ("--limit 101/sec", " --limit 101/sec"),
            ("--limit 863999999/day", " --limit 10000/sec"),
        ];
        for (i, e) in ok {
            assert_eq!(check(i).as_deref(), Ok(e), "{i}");
        }
        for i in [
            "--limit 10001/sec",
            "--limit 0/sec",
            "--limit 1/week",
            "--limit 1/secs",
            "--limit 0x10/sec",
            "--limit -1/sec",
            "--limit-burst 10001",
            "--limit-burst 4294967295",
            "! --limit 1/sec",
            "--limit 1/sec --limit 2/sec",
            "--limit-burst 3 --limit-burst 3",
            "--limit 4294967295/sec",
            "--limit 1/",
            "--limit /sec",
            "--limit 864000001/day",
        ] {
            assert!(check(i).is_err(), "{i}");
        }
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

    #[test]
    fn depends_on_the_rate() {
        let host = Host::new("h");
        let cx = EvalCtx { host: &host, hook: Hook::Input, table: TableName::Filter, family: Family::V4, conn: None };
        for line in ["", "--limit 5/min --limit-burst 10", "--limit 10000/sec"] {
            let m: Limit = parse_alone(Ctx { family: Family::V4, table: TableName::Filter, proto: None }, line);
            assert!(matches!(m.eval(&Packet::default(), &cx), Eval::Unknown(r) if r.contains("rate")), "{line}");
        }
        let m: Limit = parse_alone(Ctx { family: Family::V4, table: TableName::Filter, proto: None }, "--limit 5/min --limit-burst 10");
        assert!(matches!(m.eval(&Packet::default(), &cx), Eval::Unknown(r) if r.contains("5/min") && r.contains("10")));
    }
}
