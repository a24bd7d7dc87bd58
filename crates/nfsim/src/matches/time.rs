//! `-m time`: matches the packet's arrival time against a date range, a daily time window,
//! weekdays and days of the month (`xt_time.c`, `libxt_time.c`, both families).

use std::fmt::Write as _;

use serde::Serialize;

use super::tos::c_strtoul;
use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, stateless};
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert};

/// Every day of the month, 1..=31 (`XT_TIME_ALL_MONTHDAYS`; bit `d` is day `d`).
pub const ALL_MONTHDAYS: u32 = 0xffff_fffe;
/// Every weekday (`XT_TIME_ALL_WEEKDAYS`; bit 1 is Monday .. bit 7 is Sunday).
pub const ALL_WEEKDAYS: u8 = 0xfe;
/// Last second of the day (`XT_TIME_MAX_DAYTIME`).
pub const MAX_DAYTIME: u32 = 24 * 60 * 60 - 1;
/// The default `date_stop` (`INT_MAX`, 2038-01-19T03:14:07).
pub const DEFAULT_DATE_STOP: u32 = i32::MAX as u32;

const WEEKDAYS: [&str; 8] = ["", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The time match, as the kernel holds it (`struct xt_time_info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Time {
    /// `--datestart`: first matching second, Unix time (0 = no lower bound).
    pub date_start: u32,
    /// `--datestop`: last matching second, Unix time (default `INT_MAX`).
    pub date_stop: u32,
    /// `--timestart`: seconds since midnight (default 0).
    pub daytime_start: u32,
    /// `--timestop`: seconds since midnight (default 86399). When below `daytime_start` the
    /// window wraps past midnight.
    pub daytime_stop: u32,
    /// `--monthdays`: bit `d` for day `d` of the month (default [`ALL_MONTHDAYS`]).
    pub monthdays: u32,
    /// `--weekdays`: bit 1 (Monday) to bit 7 (Sunday) (default [`ALL_WEEKDAYS`]).
    pub weekdays: u8,
    /// `--kerneltz` / `--localtz`: use the kernel's time zone instead of UTC.
    pub kerneltz: bool,
    /// `--contiguous`: a wrapping daily window continues into the next day.
    pub contiguous: bool,
    /// Options given (bit per option, for the once-only and exclusion checks); parse state.
    #[serde(skip)]
    seen: u16,
}

impl Default for Time {
    fn default() -> Self {
        Time {
            date_start: 0,
            date_stop: DEFAULT_DATE_STOP,
            daytime_start: 0,
            daytime_stop: MAX_DAYTIME,
            monthdays: ALL_MONTHDAYS,
            weekdays: ALL_WEEKDAYS,
            kerneltz: false,
            contiguous: false,
            seen: 0,
        }
    }
}

/// `strtoul(s, &end, base)` truncated to C's `unsigned int`, with the end offset.
fn c_uint(s: &[u8], base: u32) -> (u32, usize) {
    let (v, end, _) = c_strtoul(s, base);
    (v as u32, end)
}

/// Days from 1970-01-01 to `y-m-d` in the proleptic Gregorian calendar (`m` in 1..=12).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The calendar date of day `z` since 1970-01-01: (year, month 1..=12, day 1..=31).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses `YYYY[-MM[-DD[Thh[:mm[:ss]]]]]` (UTC) as libxt_time does: each field a C decimal
/// (`strtoul`), the year in 1970..=2038, month 0..=12 and day 0..=31 normalised the way
/// `mktime` does (`2000-02-31` is March 2nd), and the result not before 1970.
pub fn parse_date(s: &str) -> Result<u32, String> {
    let bad = || format!("invalid date `{s}` (expected YYYY[-MM[-DD[Thh[:mm[:ss]]]]], years 1970..=2038)");
    // (separator after the field, upper bound)
    const FIELDS: [(u8, u32); 6] = [(b'-', 2038), (b'-', 12), (b'T', 31), (b':', 23), (b':', 59), (0, 59)];
    let mut vals = [0u32, 1, 1, 0, 0, 0];
    let mut rest = s.as_bytes();
    for (k, &(sep, max)) in FIELDS.iter().enumerate() {
        let (v, end) = c_uint(rest, 10);
        let next = rest.get(end).copied();
        if (next.is_some() && (sep == 0 || next != Some(sep))) || v > max || (k == 0 && v < 1970) {
            return Err(bad());
        }
        vals[k] = v;
        match next {
            None => break,
            Some(_) => rest = &rest[end + 1..],
        }
    }
    let [year, month, day, hour, minute, second] = vals.map(i64::from);
    // mktime's normalisation of month 0 and day 0 / day 31 in short months.
    let (y, m) = if month == 0 { (year - 1, 12) } else { (year, month) };
    let days = days_from_civil(y, m, 1) + day - 1;
    let t = days * 86_400 + hour * 3600 + minute * 60 + second;
    if t < 0 {
        return Err(bad());
    }
    Ok(t as u32)
}

/// Prints Unix time `t` as `YYYY-MM-DDThh:mm:ss` (UTC).
pub fn fmt_date(out: &mut String, t: u32) {
    let t = i64::from(t);
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
}

/// Parses a daytime `hh:mm[:ss]` into seconds since midnight, as libxt_time does.
pub fn parse_daytime(s: &str) -> Result<u32, String> {
    let bad = || format!("invalid time `{s}` (expected hh:mm[:ss] within 00:00:00..=23:59:59)");
    let b = s.as_bytes();
    let (hour, e) = c_uint(b, 10);
    if b.get(e) != Some(&b':') || hour > 23 {
        return Err(bad());
    }
    let b = &b[e + 1..];
    let (minute, e) = c_uint(b, 10);
    if !matches!(b.get(e), None | Some(b':')) || minute > 59 {
        return Err(bad());
    }
    let mut second = 0;
    if e < b.len() {
        let b = &b[e + 1..];
        let (v, e) = c_uint(b, 10);
        if e != b.len() || v > 59 {
            return Err(bad());
        }
        second = v;
    }
    Ok(hour * 3600 + minute * 60 + second)
}

/// The comma-separated items of a day list, each cut to its first `keep` bytes as libxt_time's
/// fixed buffers cut them; a trailing comma ends the list.
fn day_items(s: &str, keep: usize) -> impl Iterator<Item = &[u8]> {
    let b = s.as_bytes();
    let mut rest = Some(b);
    std::iter::from_fn(move || {
        let r = rest?;
        if r.is_empty() {
            return None;
        }
        let item = match r.iter().position(|&c| c == b',') {
            Some(p) => {
                rest = Some(&r[p + 1..]);
                &r[..p]
            }
            None => {
                rest = None;
                r
            }
        };
        Some(&item[..item.len().min(keep)])
    })
}

/// Parses `--monthdays` (`1,15,31`, C numbers 0..=31) into a bit mask.
pub fn parse_monthdays(s: &str) -> Result<u32, String> {
    let mut mask = 0u32;
    for item in day_items(s, 2) {
        let (i, end) = c_uint(item, 0);
        if end != item.len() || i > 31 {
            return Err(format!("`{}` is not a valid day for `--monthdays` (expected 1..=31)", String::from_utf8_lossy(item)));
        }
        mask |= 1 << i;
    }
    Ok(mask)
}

/// Parses `--weekdays` (`Mon,Tue` or `1,2`, 1 = Monday .. 7 = Sunday; names are recognised by
/// their first two letters, case-sensitively) into a bit mask. Out-of-range numbers behave as
/// in iptables on x86-64: the shift count wraps at 32 and the mask keeps 8 bits.
pub fn parse_weekdays(s: &str) -> Result<u8, String> {
    let mut mask = 0u32;
    for item in day_items(s, 3) {
        let (i, end) = c_uint(item, 0);
        if end == item.len() {
            if i == 0 {
                return Err("weekday 0 does not exist: the week begins with Monday (1)".into());
            }
            mask |= 1u32.wrapping_shl(i);
            continue;
        }
        match WEEKDAYS[1..].iter().position(|w| item.len() >= 2 && item[..2] == w.as_bytes()[..2]) {
            Some(p) => mask |= 1 << (p + 1),
            None => {
                return Err(format!("`{}` is not a valid weekday (expected Mon, Tue, Wed, Thu, Fri, Sat, Sun or 1..=7)", String::from_utf8_lossy(item)));
            }
        }
    }
    Ok(mask as u8)
}

fn fmt_daytime(out: &mut String, t: u32) {
    let _ = write!(out, "{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
}

impl Time {
    const DATESTART: u16 = 1 << 0;
    const DATESTOP: u16 = 1 << 1;
    const TIMESTART: u16 = 1 << 2;
    const TIMESTOP: u16 = 1 << 3;
    const CONTIGUOUS: u16 = 1 << 4;
    const MONTHDAYS: u16 = 1 << 5;
    const WEEKDAYS: u16 = 1 << 6;
    const LOCALTZ: u16 = 1 << 7;
    const UTC: u16 = 1 << 8;
    const KERNELTZ: u16 = 1 << 9;
}

impl Extension for Time {
    const OPTIONS: &'static [&'static str] =
        &["datestart", "datestop", "timestart", "timestop", "contiguous", "weekdays", "monthdays", "localtz", "utc", "kerneltz"];

    fn new(_ctx: &Ctx) -> Self {
        Time::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        let (bit, excl) = match opt {
            "datestart" => (Self::DATESTART, 0),
            "datestop" => (Self::DATESTOP, 0),
            "timestart" => (Self::TIMESTART, 0),
            "timestop" => (Self::TIMESTOP, 0),
            "contiguous" => (Self::CONTIGUOUS, 0),
            "weekdays" => (Self::WEEKDAYS, 0),
            "monthdays" => (Self::MONTHDAYS, 0),
            "localtz" => (Self::LOCALTZ, Self::UTC),
            "utc" => (Self::UTC, Self::LOCALTZ | Self::KERNELTZ),
            "kerneltz" => (Self::KERNELTZ, Self::UTC),
            _ => return Err(format!("unknown option `--{opt}`")),
        };
        if !matches!(opt, "weekdays" | "monthdays") {
            no_invert(invert, opt)?;
        }
        if self.seen & bit != 0 {
            return Err(format!("option `--{opt}` may be given only once"));
        }
        if self.seen & excl != 0 {
            return Err(format!("`--{opt}` cannot be combined with `--utc`/`--kerneltz`/`--localtz`"));
        }
        self.seen |= bit;
        match opt {
            "datestart" => self.date_start = parse_date(args.value()?)?,
            "datestop" => self.date_stop = parse_date(args.value()?)?,
            "timestart" => self.daytime_start = parse_daytime(args.value()?)?,
            "timestop" => self.daytime_stop = parse_daytime(args.value()?)?,
            "contiguous" => self.contiguous = true,
            "weekdays" => {
                let m = parse_weekdays(args.value()?)?;
                self.weekdays = if invert { m ^ ALL_WEEKDAYS } else { m };
            }
            "monthdays" => {
                let m = parse_monthdays(args.value()?)?;
                self.monthdays = if invert { m ^ ALL_MONTHDAYS } else { m };
            }
            "localtz" | "kerneltz" => self.kerneltz = true,
            _ => {} // --utc is the default
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.contiguous && self.daytime_start < self.daytime_stop {
            return Err("`--contiguous` needs a daily window that wraps past midnight (`--timestop` \
                 not after `--timestart`)"
                .into());
        }
        self.seen = 0;
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if self.daytime_start != 0 || self.daytime_stop != MAX_DAYTIME {
            out.push_str(" --timestart ");
            fmt_daytime(out, self.daytime_start);
            out.push_str(" --timestop ");
            fmt_daytime(out, self.daytime_stop);
        }
        if self.monthdays != ALL_MONTHDAYS {
            out.push_str(" --monthdays ");
            let mut sep = "";
            for d in 1..=31 {
                if self.monthdays & (1 << d) != 0 {
                    let _ = write!(out, "{sep}{d}");
                    sep = ",";
                }
            }
        }
        if self.weekdays != ALL_WEEKDAYS {
            out.push_str(" --weekdays ");
            let mut sep = "";
            for (d, name) in WEEKDAYS.iter().enumerate().skip(1) {
                if self.weekdays & (1 << d) != 0 {
                    out.push_str(sep);
                    out.push_str(name);
                    sep = ",";
                }
            }
        }
        // iptables 1.8.9 omits a date only when it is 0: the default `--datestop` (INT_MAX)
        // is always printed.
        if self.date_start != 0 {
            out.push_str(" --datestart ");
            fmt_date(out, self.date_start);
        }
        if self.date_stop != 0 {
            out.push_str(" --datestop ");
            fmt_date(out, self.date_stop);
        }
        if self.kerneltz {
            out.push_str(" --kerneltz");
        }
        if self.contiguous {
            out.push_str(" --contiguous");
        }
    }
}

impl Time {
    /// True when the daily window `daytime_start..=daytime_stop` lets every second of the day
    /// through (`time_mt`: a window with start below stop rejects the seconds outside it; any
    /// other window rejects only the seconds strictly between stop and start).
    fn whole_day(&self) -> bool {
        if self.daytime_start < self.daytime_stop {
            self.daytime_start == 0 && self.daytime_stop >= MAX_DAYTIME
        } else {
            self.daytime_start - self.daytime_stop <= 1
        }
    }
}

impl crate::matches::Evaluate for Time {
    /// `time_mt` tests the current wall-clock time (not the packet), and the core has no clock.
    /// Decided without one: a date range that ends before it starts, an empty weekday set or an
    /// empty day-of-month set never match; a match that restricts nothing (the defaults, with a
    /// date range from 0 to at least `INT_MAX`, i.e. a present before 2038-01-19) always
    /// matches. Anything else depends on the clock.
    fn eval(&self, _pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        // Conditions that fail at any time (`--contiguous` only moves the day the weekday and
        // month-day tests look at, so it cannot rescue an empty set).
        if self.date_start > self.date_stop {
            return Eval::NoMatch;
        }
        if self.weekdays & ALL_WEEKDAYS == 0 || self.monthdays & ALL_MONTHDAYS == 0 {
            return Eval::NoMatch;
        }
        let mut depends = Vec::new();
        if self.date_start != 0 || self.date_stop < DEFAULT_DATE_STOP {
            depends.push("the date");
        }
        if !self.whole_day() {
            depends.push("the time of day");
        }
        if self.weekdays & ALL_WEEKDAYS != ALL_WEEKDAYS {
            depends.push("the day of the week");
        }
        if self.monthdays & ALL_MONTHDAYS != ALL_MONTHDAYS {
            depends.push("the day of the month");
        }
        let Some((last, rest)) = depends.split_last() else {
            return Eval::Match;
        };
        let what = if rest.is_empty() { last.to_string() } else { format!("{} and {last}", rest.join(", ")) };
        Eval::Unknown(format!("`-m time` depends on {what} when the packet passes, and the simulator has no clock"))
    }
}

impl Cond for Time {
    const READS: Fields = Fields::NONE;

    /// The answer depends on the clock, not the packet: decided, or unknown everywhere.
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
        check_alone::<Time>(ctx, line)
    }

    const STOP: &str = " --datestop 2038-01-19T03:14:07";

    #[test]
    fn libxt_time_t() {
        for same in [
            "--timestart 01:02:03 --timestop 04:05:06 --monthdays 1,2,3,4,5 --weekdays Mon,Fri,Sun --datestart 2001-02-03T04:05:06 --datestop 2012-09-08T09:06:05 --kerneltz",
            "--timestart 01:02:03 --timestop 04:05:06 --monthdays 1,2,3,4,5 --weekdays Mon,Fri,Sun --datestart 2001-02-03T04:05:06 --datestop 2012-09-08T09:06:05",
            "--timestart 02:00:00 --timestop 03:00:00 --datestart 1970-01-01T02:00:00 --datestop 1970-01-01T03:00:00",
        ] {
            assert_eq!(check(same).unwrap(), format!(" {same}"));
        }
    }

    /// Expected forms printed by the real iptables-restore / iptables-save 1.8.9 (nf_tables).
    #[test]
    fn as_the_real_tool_saves() {
        let ok: &[(&str, &str)] = &[
            (
                "--kerneltz --contiguous --timestart 23:00 --timestop 01:00 --weekdays Sun,Mon --monthdays 31,1",
                " --timestart 23:00:00 --timestop 01:00:00 --monthdays 1,31 --weekdays Mon,Sun --datestop 2038-01-19T03:14:07 --kerneltz --contiguous",
            ),
            ("--timestart 11:00 --timestop 11:00 --contiguous", " --timestart 11:00:00 --timestop 11:00:00 --datestop 2038-01-19T03:14:07 --contiguous"),
            ("--timestart 11:00", " --timestart 11:00:00 --timestop 23:59:59 --datestop 2038-01-19T03:14:07"),
            ("--timestop 11:00", " --timestart 00:00:00 --timestop 11:00:00 --datestop 2038-01-19T03:14:07"),
            ("", STOP),
            ("--utc", STOP),
            ("--localtz", " --datestop 2038-01-19T03:14:07 --kerneltz"),
            ("--localtz --kerneltz", " --datestop 2038-01-19T03:14:07 --kerneltz"),
            ("--datestart 2038", " --datestart 2038-01-01T00:00:00 --datestop 2038-01-19T03:14:07"),
            ("--datestop 2038-12-31", " --datestop 2038-12-31T00:00:00"),
            ("--datestop 2038-01-19T03:14:07", " --datestop 2038-01-19T03:14:07"),
            ("--datestop 2038-01-19T03:14:06", " --datestop 2038-01-19T03:14:06"),
            ("--datestart 1970", STOP),
            ("--datestop 1970", ""),
            ("--datestart 1970-01-01T00:00:00 --datestop 1970-01-01T00:00:00", ""),
            ("--datestart 1970-01-01T00:00:01", " --datestart 1970-01-01T00:00:01 --datestop 2038-01-19T03:14:07"),
            ("--datestart 2000-02-31", " --datestart 2000-03-02T00:00:00 --datestop 2038-01-19T03:14:07"),
            ("--datestart 2000-00-00", " --datestart 1999-11-30T00:00:00 --datestop 2038-01-19T03:14:07"),
            ("--datestart 2000-1-2T3", " --datestart 2000-01-02T03:00:00 --datestop 2038-01-19T03:14:07"),
            ("--datestart 2000-", " --datestart 1999-12-01T00:00:00 --datestop 2038-01-19T03:14:07"),
            ("--datestart +2000-+1", " --datestart 2000-01-01T00:00:00 --datestop 2038-01-19T03:14:07"),
            ("--datestart \" 2000\"", " --datestart 2000-01-01T00:00:00 --datestop 2038-01-19T03:14:07"),
            ("--datestart 2038-12-31T23:59:59", " --datestart 2038-12-31T23:59:59 --datestop 2038-01-19T03:14:07"),
            ("--datestart 2000-01-01T1:2", " --datestart 2000-01-01T01:02:00 --datestop 2038-01-19T03:14:07"),
            ("--datestart 2000-01-01T:", " --datestart 2000-01-01T00:00:00 --datestop 2038-01-19T03:14:07"),
            ("--timestart :30", " --timestart 00:30:00 --timestop 23:59:59 --datestop 2038-01-19T03:14:07"),
            ("--timestart 1:2:3", " --timestart 01:02:03 --timestop 23:59:59 --datestop 2038-01-19T03:14:07"),
            ("--timestart 1:59:", " --timestart 01:59:00 --timestop 23:59:59 --datestop 2038-01-19T03:14:07"),
            ("--timestart 00:00:00 --timestop 23:59:59", STOP),
            ("--timestart 00:00:00 --timestop 23:59:58", " --timestart 00:00:00 --timestop 23:59:58 --datestop 2038-01-19T03:14:07"),
            ("--weekdays Mo,Tu,We,Th,Fr,Sa,Su", STOP),
            ("--weekdays 1,2,3,4,5,6,7", STOP),
            ("--weekdays 8", " --weekdays  --datestop 2038-01-19T03:14:07"),
            ("--weekdays Monday", " --weekdays Mon --datestop 2038-01-19T03:14:07"),
            ("--weekdays Moxx", " --weekdays Mon --datestop 2038-01-19T03:14:07"),
            ("--weekdays 1,2,", " --weekdays Mon,Tue --datestop 2038-01-19T03:14:07"),
            ("! --weekdays Mon", " --weekdays Tue,Wed,Thu,Fri,Sat,Sun --datestop 2038-01-19T03:14:07"),
            ("! --weekdays Mon,Tue,Wed,Thu,Fri,Sat,Sun", " --weekdays  --datestop 2038-01-19T03:14:07"),
            ("--weekdays 33", " --weekdays Mon --datestop 2038-01-19T03:14:07"),
            ("--weekdays 39", " --weekdays Sun --datestop 2038-01-19T03:14:07"),
            ("--weekdays 99", " --weekdays Wed --datestop 2038-01-19T03:14:07"),
            ("--weekdays 0x7", " --weekdays Sun --datestop 2038-01-19T03:14:07"),
            ("--weekdays 07", " --weekdays Sun --datestop 2038-01-19T03:14:07"),
            ("--weekdays -1", " --weekdays  --datestop 2038-01-19T03:14:07"),
            ("--weekdays 1234", " --weekdays  --datestop 2038-01-19T03:14:07"),
            ("--weekdays Sa,Su,Sun,Sunday", " --weekdays Sat,Sun --datestop 2038-01-19T03:14:07"),
            ("--weekdays \"Mon Tue\"", " --weekdays Mon --datestop 2038-01-19T03:14:07"),
            ("--weekdays Mo,", " --weekdays Mon --datestop 2038-01-19T03:14:07"),
            ("--monthdays 0", " --monthdays  --datestop 2038-01-19T03:14:07"),
            ("--monthdays 31,1,15", " --monthdays 1,15,31 --datestop 2038-01-19T03:14:07"),
            ("--monthdays 123", " --monthdays 12 --datestop 2038-01-19T03:14:07"),
            ("--monthdays 010", " --monthdays 1 --datestop 2038-01-19T03:14:07"),
            ("--monthdays 1,,2", " --monthdays 1,2 --datestop 2038-01-19T03:14:07"),
            (
                "! --monthdays 1",
                " --monthdays 2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31 --datestop 2038-01-19T03:14:07",
            ),
            ("--monthdays -0", " --monthdays  --datestop 2038-01-19T03:14:07"),
            ("--monthdays \" 1\"", " --monthdays 1 --datestop 2038-01-19T03:14:07"),
            ("--monthdays +1", " --monthdays 1 --datestop 2038-01-19T03:14:07"),
            (
                "! --monthdays 0",
                " --monthdays 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31 --datestop 2038-01-19T03:14:07",
            ),
        ];
        for (input, want) in ok {
            assert_eq!(check(input).as_deref(), Ok(*want), "{input}");
        }
        let bad = [
            "--timestart 10:00 --timestop 11:00 --contiguous",
            "--contiguous",
            "--utc --kerneltz",
            "--kerneltz --utc",
            "--localtz --utc",
            "--days Mon",
            "--datestart 2039",
            "--datestart 1969",
            "--datestart 1970-00-01",
            "--datestart 2000-13",
            "--datestart 2000-1-2T3:4:5x",
            "--datestart -",
            "--datestart 2000-01-01T24",
            "--datestart 2000-01-32",
            "--datestart 2000T",
            "--datestart 20000",
            "--timestart 24:00",
            "--timestart 1",
            "--timestart 1:60",
            "--timestart 1:59:60",
            "--timestart 01:02:03:04",
            "--weekdays 0",
            "--weekdays mon",
            "--weekdays Mzz",
            "--weekdays 1,,2",
            "--weekdays ,1",
            "--weekdays -0",
            "--weekdays 008",
            "--weekdays 1x",
            "--weekdays Mon --weekdays Tue",
            "--monthdays 32",
            "--monthdays 0x1",
            "--monthdays 1a",
            "--monthdays -1",
            "! --timestart 10:00",
            "--datestart 2000-01-01T00:00:00 --datestart 2001",
            "--timestart 1:2 --timestop 3:4 --timestart 5:6",
            "--utc --utc",
            "--kerneltz --kerneltz",
            "--contiguous --contiguous --timestart 5:00 --timestop 4:00",
        ];
        for input in bad {
            assert!(check(input).is_err(), "{input}");
        }
        assert!(std::mem::size_of::<Time>() <= 40);
    }

    #[test]
    fn calendar_round_trips() {
        for t in [0u32, 1, 86_399, 86_400, 951_782_400, i32::MAX as u32, 2_177_452_799] {
            let mut s = String::new();
            fmt_date(&mut s, t);
            assert_eq!(parse_date(&s), Ok(t), "{s}");
        }
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::{Eval, EvalCtx, Evaluate};
        use crate::packet::Packet;
        use crate::xt::{Family, Hook, TableName};

        /// Parses `line` as the rule parser would and evaluates the match on a TCP packet.
        fn run(line: &str) -> Eval {
            let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
            let mut toks = Vec::new();
            crate::xt::token::tokenize(line, 0, &mut toks);
            let mut m = Time::new(&ctx);
            let (mut pos, mut invert) = (0, false);
            while pos < toks.len() {
                let t = toks[pos].as_str();
                pos += 1;
                if t == "!" {
                    invert = true;
                    continue;
                }
                let opt = crate::xt::ext::resolve_option(Time::OPTIONS, t.strip_prefix("--").unwrap()).unwrap();
                let mut args = Args::new(&toks, pos, ctx);
                m.parse(opt, invert, &mut args).unwrap();
                pos = args.pos();
                invert = false;
            }
            m.finish(&ctx).unwrap();
            let host = Host::new("h");
            let pkt = Packet::new(6, "10.0.0.1".parse().unwrap(), 1234, "10.0.0.2".parse().unwrap(), 443);
            let cx = EvalCtx { host: &host, hook: Hook::Forward, table: TableName::Filter, family: Family::V4, conn: None };
            m.eval(&pkt, &cx)
        }

        fn unknown(line: &str) -> String {
            match run(line) {
                Eval::Unknown(why) => why,
                other => panic!("{line}: {other:?}"),
            }
        }

        #[test]
        fn no_restriction_matches() {
            for line in [
                "",
                "--utc",
                "--kerneltz",
                "--timestart 00:00 --timestop 23:59:59",
                "--weekdays Mon,Tue,Wed,Thu,Fri,Sat,Sun",
                "--monthdays 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
                // Bit 0 set as well: the kernel looks the day up, but every day is in the set.
                "! --monthdays 0",
                "--datestart 1970 --datestop 2038-01-19T03:14:07",
                "--datestop 2038-12-31",
                // A window from 11:00 to 11:00 (start not below stop) rejects the seconds
                // strictly between stop and start: none.
                "--timestart 11:00 --timestop 11:00",
                "--timestart 11:00 --timestop 11:00 --contiguous",
                "--timestart 11:00:01 --timestop 11:00:00",
            ] {
                assert_eq!(run(line), Eval::Match, "{line}");
            }
        }

        #[test]
        fn impossible_conditions_never_match() {
            for line in [
                "! --weekdays Mon,Tue,Wed,Thu,Fri,Sat,Sun",
                // 1 << 8 does not fit the 8-bit weekday mask.
                "--weekdays 8",
                "--monthdays 0",
                "! --monthdays 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
                "--datestart 2030 --datestop 2020",
                // Certain even next to conditions that depend on the clock.
                "--timestart 08:00 --timestop 17:00 --weekdays 8",
                "--weekdays Mon --monthdays 0",
                "--datestart 2030 --datestop 2020 --weekdays Sat,Sun",
            ] {
                assert_eq!(run(line), Eval::NoMatch, "{line}");
            }
        }

        #[test]
        fn restrictions_depend_on_the_clock() {
            assert_eq!(
                unknown("--timestart 08:00 --timestop 17:00"),
                "`-m time` depends on the time of day when the packet passes, and the simulator has no clock"
            );
            assert!(unknown("--timestart 23:00 --timestop 01:00").contains("the time of day"));
            assert!(unknown("--timestart 11:00:02 --timestop 11:00:00").contains("the time of day"));
            assert!(unknown("--timestart 00:00:01").contains("the time of day"));
            assert!(unknown("--timestop 23:59:58").contains("the time of day"));
            assert!(unknown("--weekdays Sat,Sun").contains("the day of the week"));
            assert!(unknown("! --weekdays Mon").contains("the day of the week"));
            assert!(unknown("--monthdays 1,15").contains("the day of the month"));
            assert!(unknown("--datestart 2020").contains("the date"));
            assert!(unknown("--datestop 2030").contains("the date"));
            // A single second in 1970 is still a date range.
            assert!(unknown("--datestop 1970").contains("the date"));
            assert_eq!(
                unknown("--kerneltz --contiguous --timestart 23:00 --timestop 01:00 --weekdays Sun,Mon --monthdays 31,1 --datestart 2020"),
                "`-m time` depends on the date, the time of day, the day of the week and the day of the month when the packet passes, \
                 and the simulator has no clock"
            );
        }
    }
}
