//! `-m string`: searches the packet for a byte pattern with a kernel text-search algorithm
//! (`xt_string.c` revision 1, `libxt_string.c`, both families).

use serde::Serialize;

use super::tos::xt_uint;
use crate::classes::cond::{Cond, Fields};
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, save_invert};

/// Longest pattern (`XT_STRING_MAX_PATTERN_SIZE`).
pub const MAX_PATTERN: usize = 128;

/// The kernel text-search algorithm (`--algo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// Boyer-Moore (`ts_bm`).
    Bm,
    /// Knuth-Morris-Pratt (`ts_kmp`).
    Kmp,
}

impl Algo {
    /// The name as given to `--algo`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algo::Bm => "bm",
            Algo::Kmp => "kmp",
        }
    }
}

/// The string match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StringMatch {
    /// The bytes searched for (1..=128 of them); required (`--string` or `--hex-string`).
    pub pattern: Option<Box<[u8]>>,
    /// `--algo` (required).
    pub algo: Option<Algo>,
    /// `--from`: first offset searched (default 0).
    pub from: u16,
    /// `--to`: last offset searched (default 65535).
    pub to: u16,
    /// `!`: match when the pattern is absent.
    pub invert: bool,
    /// `--icase`: ASCII letters compare case-insensitively.
    pub icase: bool,
    /// Options given (bit per option, for the once-only checks); parsing state only.
    #[serde(skip)]
    seen: u8,
}

impl Default for StringMatch {
    fn default() -> Self {
        StringMatch { pattern: None, algo: None, from: 0, to: u16::MAX, invert: false, icase: false, seen: 0 }
    }
}

/// Decodes a `--hex-string` argument the way libxt_string does: `|41 42|` blocks of hex byte
/// pairs (one space allowed after each pair, spaces skipped after an opening `|`), `\c` for a
/// literal character outside blocks, anything else copied as is.
pub fn parse_hex_string(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let n = b.len();
    if n == 0 {
        return Err("`--hex-string` needs at least one character".into());
    }
    let too_long = || format!("pattern `{s}` is too long (at most {MAX_PATTERN} bytes)");
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_hex = false;
    while i < n {
        if out.len() >= MAX_PATTERN {
            return Err(too_long());
        }
        let mut literal = false;
        if b[i] == b'\\' {
            if in_hex {
                return Err(format!("`--hex-string {s}`: a `\\` escape cannot stand inside a |hex| block"));
            }
            literal = true;
        } else if b[i] == b'|' {
            in_hex = !in_hex;
            if in_hex {
                while i + 1 < n && b[i + 1] == b' ' {
                    i += 1;
                }
            }
            if i + 1 >= n {
                break;
            }
            // The character after a `|` is taken as data without being examined again.
            i += 1;
        }
        if literal {
            if i + 1 >= n {
                return Err(format!("`--hex-string {s}`: a `\\` cannot end the string"));
            }
            out.push(b[i + 1]);
            i += 2;
        } else if in_hex {
            if i + 1 >= n {
                return Err(format!("`--hex-string {s}`: odd number of hex digits in a |hex| block"));
            }
            if i + 2 >= n {
                return Err(format!("`--hex-string {s}`: unterminated |hex| block"));
            }
            let hex = |c: u8| (c as char).to_digit(16).ok_or_else(|| format!("`--hex-string {s}`: invalid hex digit `{}` in a |hex| block", c as char));
            out.push((hex(b[i])? * 16 + hex(b[i + 1])?) as u8);
            i += if b[i + 2] == b' ' { 3 } else { 2 };
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// True when iptables prints `pattern` as `--hex-string`: it holds a byte outside printable
/// ASCII, or ends with a backslash.
pub fn prints_as_hex(pattern: &[u8]) -> bool {
    pattern.iter().any(|&c| !(0x20..=0x7e).contains(&c)) || pattern.last() == Some(&b'\\')
}

impl StringMatch {
    const FROM: u8 = 1;
    const TO: u8 = 2;
    const ALGO: u8 = 4;
    const ICASE: u8 = 8;
}

impl Extension for StringMatch {
    const OPTIONS: &'static [&'static str] = &["from", "to", "algo", "string", "hex-string", "icase"];

    fn new(_ctx: &Ctx) -> Self {
        StringMatch::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        let bit = match opt {
            "from" => Self::FROM,
            "to" => Self::TO,
            "algo" => Self::ALGO,
            "icase" => Self::ICASE,
            _ => 0,
        };
        if bit != 0 {
            no_invert(invert, opt)?;
            if self.seen & bit != 0 {
                return Err(format!("option `--{opt}` may be given only once"));
            }
            self.seen |= bit;
        }
        match opt {
            "from" => self.from = xt_uint(args.value()?, opt, u16::MAX.into())? as u16,
            "to" => self.to = xt_uint(args.value()?, opt, u16::MAX.into())? as u16,
            "algo" => {
                let v = args.value()?;
                self.algo = Some(match v {
                    "bm" => Algo::Bm,
                    "kmp" => Algo::Kmp,
                    _ => {
                        return Err(format!("unknown string search algorithm `{v}` (expected bm or kmp)"));
                    }
                });
            }
            "icase" => self.icase = true,
            "string" | "hex-string" => {
                if self.pattern.is_some() {
                    return Err("only one of `--string` and `--hex-string` may be given, and only once".into());
                }
                let v = args.value()?;
                let pattern = if opt == "string" {
                    if v.len() > MAX_PATTERN {
                        return Err(format!("string `{v}` is too long ({} bytes, at most {MAX_PATTERN})", v.len()));
                    }
                    v.as_bytes().to_vec()
                } else {
                    parse_hex_string(v)?
                };
                if pattern.is_empty() {
                    // The kernel refuses an empty pattern.
                    return Err(format!("`--{opt} {v}` gives an empty pattern"));
                }
                self.pattern = Some(pattern.into_boxed_slice());
                self.invert = invert;
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.pattern.is_none() {
            return Err("the string match requires `--string` or `--hex-string`".into());
        }
        if self.algo.is_none() {
            return Err("the string match requires `--algo bm|kmp`".into());
        }
        if self.from > self.to {
            return Err(format!("`--from {}` is beyond `--to {}` (the kernel rejects it)", self.from, self.to));
        }
        self.seen = 0;
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        use std::fmt::Write as _;
        if let Some(p) = &self.pattern {
            save_invert(out, self.invert);
            if prints_as_hex(p) {
                out.push_str(" --hex-string \"|");
                for c in p.iter() {
                    let _ = write!(out, "{c:02x}");
                }
                out.push_str("|\"");
            } else {
                out.push_str(" --string \"");
                for &c in p.iter() {
                    if c == b'"' || c == b'\\' {
                        out.push('\\');
                    }
                    out.push(c as char);
                }
                out.push('"');
            }
        }
        if let Some(a) = self.algo {
            out.push_str(" --algo ");
            out.push_str(a.as_str());
        }
        if self.from != 0 {
            let _ = write!(out, " --from {}", self.from);
        }
        if self.to != u16::MAX {
            let _ = write!(out, " --to {}", self.to);
        }
        if self.icase {
            out.push_str(" --icase");
        }
    }
}

impl crate::matches::Evaluate for StringMatch {
    /// `string_mt` searches the packet from the network header on (`skb_find_text` from
    /// `--from`, limited to `--to` and to the packet's length) and accepts an occurrence only
    /// when all of it lies before `--to`. The simulator has no payload, so the answer is
    /// Unknown, except when the pattern cannot fit: longer than `--to` minus `--from`, or
    /// running past the end of the packet (`pkt.len`) from `--from`. Then it never matches
    /// (`!` turns that into a match).
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let Some(pattern) = self.pattern.as_deref() else {
            return Eval::Unknown("`-m string` has no pattern".to_string());
        };
        let patlen = pattern.len() as u32;
        let (from, to) = (u32::from(self.from), u32::from(self.to));
        let fits_window = from <= to && patlen <= to - from;
        let fits_packet = from + patlen <= u32::from(pkt.len);
        if !fits_window || !fits_packet {
            return Eval::NoMatch.invert(self.invert);
        }
        Eval::Unknown("`-m string` depends on the packet's contents, which the simulator does not model".to_string())
    }
}

impl Cond for StringMatch {
    /// It reads the length (fixed in every class) and a payload the packet does not have.
    const READS: Fields = Fields::NONE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<StringMatch>(ctx, line)
    }

    #[test]
    fn libxt_string_t() {
        assert_eq!(check("--algo bm --string \"test\"").unwrap(), " --string \"test\" --algo bm");
        for same in [r#"--string "test" --algo kmp"#, r#"! --string "test" --algo kmp"#, r#"--hex-string "|0a0a0a0a|" --algo bm"#] {
            assert_eq!(check(same).unwrap(), format!(" {same}"));
        }
        let x128 = "x".repeat(128);
        let line = format!("--string \"{x128}\" --algo bm");
        assert_eq!(check(&line).unwrap(), format!(" {line}"));
        assert!(check(&format!("--string \"{x128}x\" --algo bm")).is_err());
        assert_eq!(check("--algo bm --from 0 --to 65535 --string \"test\"").unwrap(), " --string \"test\" --algo bm");
        assert!(check("--algo wrong").is_err());
        assert!(check("--algo bm").is_err());
        assert!(check("").is_err());
    }

    /// Expected forms printed by the real iptables-restore / iptables-save 1.8.9 (nf_tables).
    #[test]
    fn patterns_as_the_real_tool_prints_them() {
        let ok = [
            ("--string test --algo kmp --from 10 --to 20 --icase", r#" --string "test" --algo kmp --from 10 --to 20 --icase"#),
            ("--string test --algo bm --to 0", r#" --string "test" --algo bm --to 0"#),
            ("--string test --algo kmp --from 20 --to 20", r#" --string "test" --algo kmp --from 20 --to 20"#),
            ("--string test --algo bm --from 0x10", r#" --string "test" --algo bm --from 16"#),
            (r#"--string "a b" --algo bm --icase --to 100 --from 2"#, r#" --string "a b" --algo bm --from 2 --to 100 --icase"#),
            (r#"--string "a\"b'c\\d" --algo bm"#, r#" --string "a\"b'c\\d" --algo bm"#),
            (r#"--string "a\\" --algo bm"#, r#" --hex-string "|615c|" --algo bm"#),
            ("--string \"tab\tx\" --algo bm", r#" --hex-string "|7461620978|" --algo bm"#),
            (r#"--string "é" --algo bm"#, r#" --hex-string "|c3a9|" --algo bm"#),
            (r#"--string "~" --algo bm"#, r#" --string "~" --algo bm"#),
            (r#"--string "a#b" --algo bm"#, r#" --string "a#b" --algo bm"#),
            (r#"--string a --algo bm --to " 5""#, r#" --string "a" --algo bm --to 5"#),
            (r#"--hex-string "|41 42|" --algo bm"#, r#" --string "AB" --algo bm"#),
            (r#"--hex-string "ab|41 42|cd" --algo bm"#, r#" --string "abABcd" --algo bm"#),
            (r#"--hex-string "|41|" --algo bm"#, r#" --string "A" --algo bm"#),
            (r#"--hex-string "a\\|b" --algo bm"#, r#" --string "a|b" --algo bm"#),
            (r#"--hex-string "|  41 42 |" --algo bm"#, r#" --string "AB" --algo bm"#),
            (r#"--hex-string "|22|" --algo bm"#, r#" --string "\"" --algo bm"#),
            (r#"--hex-string "|5c|" --algo bm"#, r#" --hex-string "|5c|" --algo bm"#),
            (r#"--hex-string "|5c41|" --algo bm"#, r#" --string "\\A" --algo bm"#),
            (r#"--hex-string "|00|" --algo bm"#, r#" --hex-string "|00|" --algo bm"#),
            (r#"--hex-string "|ff|" --algo bm"#, r#" --hex-string "|ff|" --algo bm"#),
            (r#"--hex-string "|7f|" --algo bm"#, r#" --hex-string "|7f|" --algo bm"#),
            (r#"! --hex-string "|ff|" --algo bm"#, r#" ! --hex-string "|ff|" --algo bm"#),
            (r#"--hex-string "a|" --algo bm"#, r#" --string "a" --algo bm"#),
            (r#"--hex-string "|41||42|" --algo bm"#, r#" --string "A|42" --algo bm"#),
            (r#"--hex-string "|41|\\" --algo bm"#, r#" --hex-string "|415c|" --algo bm"#),
            (r#"--hex-string "\\\\" --algo bm"#, r#" --hex-string "|5c|" --algo bm"#),
            (r#"--hex-string "|41 |" --algo bm"#, r#" --string "A" --algo bm"#),
            (r#"--hex-string "|4142 |x" --algo bm"#, r#" --string "ABx" --algo bm"#),
        ];
        for (input, want) in ok {
            assert_eq!(check(input).as_deref(), Ok(want), "{input}");
        }
        let bad = [
            "--string test --algo kmp --from 30 --to 20",
            "--string test --algo fsm",
            "--string test --algo BM",
            "--string test --algo bmxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "--string test --algo bm --from 65536",
            "--string a --algo bm --from -1",
            r#"--hex-string "|" --algo bm"#,
            r#"--hex-string "||" --algo bm"#,
            r#"--hex-string "|4|" --algo bm"#,
            r#"--hex-string "|4g|" --algo bm"#,
            r#"--hex-string "|41" --algo bm"#,
            r#"--hex-string "|41\\42|" --algo bm"#,
            r#"--hex-string "|41  42|" --algo bm"#,
            r#"--hex-string "| |" --algo bm"#,
            r#"--string a --hex-string "|41|" --algo bm"#,
            "--string a --string b --algo bm",
            "--string a --algo bm --algo kmp",
            "--string a --algo bm --icase --icase",
            "--string a --algo bm ! --from 3",
            "--string a ! --algo bm",
            "--string a --algo bm --from 5 --from 6",
            "--string a --algo kmp ! --icase",
            "--algo kmp",
            "--string a",
        ];
        for input in bad {
            assert!(check(input).is_err(), "{input}");
        }
    }

    #[test]
    fn hex_patterns_up_to_the_limit() {
        // As in the real tool: the length check runs before the closing `|` is read, so 128
        // bytes in one block fail, while 127 in a block and one more after it pass.
        let hex128 = format!("|{}|", "41".repeat(128));
        assert!(parse_hex_string(&hex128).is_err());
        let hex127 = format!("|{}|A", "41".repeat(127));
        assert_eq!(parse_hex_string(&hex127).unwrap().len(), 128);
        assert!(std::mem::size_of::<StringMatch>() <= 40);
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::{Eval, EvalCtx, Evaluate};
        use crate::packet::Packet;
        use crate::xt::{Family, Hook, TableName};

        /// Parses `line` as the rule parser would and evaluates the match on a packet of `len`
        /// bytes.
        fn run(line: &str, len: u16) -> Eval {
            let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
            let mut toks = Vec::new();
            crate::xt::token::tokenize(line, 0, &mut toks);
            let mut m = StringMatch::new(&ctx);
            let (mut pos, mut invert) = (0, false);
            while pos < toks.len() {
                let t = toks[pos].as_str();
                pos += 1;
                if t == "!" {
                    invert = true;
                    continue;
                }
                let opt = crate::xt::ext::resolve_option(StringMatch::OPTIONS, t.strip_prefix("--").unwrap()).unwrap();
                let mut args = Args::new(&toks, pos, ctx);
                m.parse(opt, invert, &mut args).unwrap();
                pos = args.pos();
                invert = false;
            }
            m.finish(&ctx).unwrap();
            let host = Host::new("h");
            let mut pkt = Packet::new(6, "10.0.0.1".parse().unwrap(), 40000, "10.0.0.2".parse().unwrap(), 80);
            pkt.len = len;
            let cx = EvalCtx { host: &host, hook: Hook::Forward, table: TableName::Filter, family: Family::V4, conn: None };
            m.eval(&pkt, &cx)
        }

        fn is_unknown(e: &Eval) -> bool {
            matches!(e, Eval::Unknown(why) if why.contains("contents"))
        }

        #[test]
        fn payload_is_unknown() {
            assert!(is_unknown(&run("--string GET --algo bm", 60)));
            assert!(is_unknown(&run("! --string GET --algo kmp --icase", 1500)));
            assert!(is_unknown(&run(r#"--hex-string "|0a0b|" --algo bm --from 40 --to 100"#, 60)));
        }

        #[test]
        fn window_too_small() {
            // The whole occurrence must lie before `--to`: 4 bytes need to - from >= 4.
            assert_eq!(run("--string test --algo bm --to 0", 1500), Eval::NoMatch);
            assert_eq!(run("! --string test --algo bm --to 0", 1500), Eval::Match);
            assert_eq!(run("--string test --algo kmp --from 20 --to 20", 1500), Eval::NoMatch);
            assert_eq!(run("--string test --algo kmp --from 10 --to 13", 1500), Eval::NoMatch);
            assert!(is_unknown(&run("--string test --algo kmp --from 10 --to 14", 1500)));
            assert!(is_unknown(&run("--string test --algo bm --to 4", 1500)));
            assert_eq!(run("--string test --algo bm --to 3", 1500), Eval::NoMatch);
        }

        #[test]
        fn past_the_end_of_the_packet() {
            // 60-byte packet: a 4-byte pattern can start at offset 56 at the latest.
            assert!(is_unknown(&run("--string test --algo bm --from 56", 60)));
            assert_eq!(run("--string test --algo bm --from 57", 60), Eval::NoMatch);
            assert_eq!(run("! --string test --algo bm --from 57", 60), Eval::Match);
            assert_eq!(run("--string test --algo bm --from 1000", 60), Eval::NoMatch);
            // A pattern longer than the whole packet.
            let long = "x".repeat(100);
            assert_eq!(run(&format!("--string {long} --algo bm"), 60), Eval::NoMatch);
            assert!(is_unknown(&run(&format!("--string {long} --algo bm"), 100)));
        }
    }
}
