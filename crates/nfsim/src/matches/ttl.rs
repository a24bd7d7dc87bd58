//! `-m ttl`: compares the IPv4 time-to-live (`ipt_ttl.c`, `libipt_ttl.c`; IPv4 only, `-m hl` is
//! the IPv6 counterpart).

use serde::Serialize;

use super::tos::xt_uint;
use crate::classes::cond::{Cond, Fields};
use crate::xt::Family;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert};

/// How the field is compared (`IPT_TTL_*` / `IP6T_HL_*`, same numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cmp {
    /// `--ttl-eq N`: equal.
    Eq,
    /// `! --ttl-eq N`: not equal.
    Ne,
    /// `--ttl-lt N`: strictly less.
    Lt,
    /// `--ttl-gt N`: strictly greater.
    Gt,
}

impl Cmp {
    /// True when `field` satisfies the comparison with `value`.
    pub fn test(self, field: u8, value: u8) -> bool {
        match self {
            Cmp::Eq => field == value,
            Cmp::Ne => field != value,
            Cmp::Lt => field < value,
            Cmp::Gt => field > value,
        }
    }
}

/// Parses one of `--P-eq`, `--P` (a hidden alias of `--P-eq`), `--P-lt`, `--P-gt` for prefix
/// `P` (`ttl` or `hl`) into `slot`; only the equality can be inverted and only one comparison
/// may be given.
pub(crate) fn parse_cmp(slot: &mut Option<(Cmp, u8)>, prefix: &str, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
    let cmp = match opt.strip_prefix(prefix) {
        Some("-eq" | "") => {
            if invert {
                Cmp::Ne
            } else {
                Cmp::Eq
            }
        }
        Some("-lt") => Cmp::Lt,
        Some("-gt") => Cmp::Gt,
        _ => return Err(format!("unknown option `--{opt}`")),
    };
    if matches!(cmp, Cmp::Lt | Cmp::Gt) {
        no_invert(invert, opt)?;
    }
    if slot.is_some() {
        return Err(format!("only one of `--{prefix}-eq`, `--{prefix}-lt`, `--{prefix}-gt` may be given, once"));
    }
    let v = xt_uint(args.value()?, opt, 255)? as u8;
    *slot = Some((cmp, v));
    Ok(())
}

/// Appends the comparison as libipt_ttl / libip6t_hl save it.
pub(crate) fn save_cmp(out: &mut String, prefix: &str, (cmp, v): (Cmp, u8)) {
    let (inv, name) = match cmp {
        Cmp::Eq => ("", "eq"),
        Cmp::Ne => (" !", "eq"),
        Cmp::Lt => ("", "lt"),
        Cmp::Gt => ("", "gt"),
    };
    out.push_str(&format!("{inv} --{prefix}-{name} {v}"));
}

/// The ttl match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ttl {
    /// The comparison and the TTL value; required.
    pub ttl: Option<(Cmp, u8)>,
}

impl Extension for Ttl {
    const OPTIONS: &'static [&'static str] = &["ttl-eq", "ttl-lt", "ttl-gt", "ttl"];

    fn new(_ctx: &Ctx) -> Self {
        Ttl::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        parse_cmp(&mut self.ttl, "ttl", opt, invert, args)
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if ctx.family != Family::V4 {
            return Err("the ttl match is IPv4 only (ip6tables has `-m hl`)".into());
        }
        if self.ttl.is_none() {
            return Err("the ttl match requires one of `--ttl-eq`, `--ttl-lt`, `--ttl-gt`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(c) = self.ttl {
            save_cmp(out, "ttl", c);
        }
    }
}

impl crate::matches::Evaluate for Ttl {
    /// `ttl_mt` (`ipt_ttl.c`): the packet's TTL (`pkt.ttl`) compared with the value: equal, not
    /// equal (`! --ttl-eq`), strictly less or strictly greater.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        // A comparison is required; a zeroed match info is mode EQ with value 0.
        let (cmp, value) = self.ttl.unwrap_or((Cmp::Eq, 0));
        crate::matches::Eval::from_bool(cmp.test(pkt.ttl, value))
    }
}

impl Cond for Ttl {
    /// It reads the TTL, which the walk keeps per state (TTL target): the example packet answers
    /// for the whole class.
    const READS: Fields = Fields::NONE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::TableName;
    use crate::xt::ext::check_alone;

    fn check_in(family: Family, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Filter, proto: None };
        check_alone::<Ttl>(ctx, line)
    }

    fn check(line: &str) -> Result<String, String> {
        check_in(Family::V4, line)
    }

    #[test]
    fn libipt_ttl_t() {
        for same in ["--ttl-eq 0", "--ttl-eq 255", "! --ttl-eq 0", "! --ttl-eq 255", "--ttl-gt 0"] {
            assert_eq!(check(same).unwrap(), format!(" {same}"));
        }
        // The spec's commented-out lines: the real tool accepts both.
        assert_eq!(check("--ttl-gt 255").unwrap(), " --ttl-gt 255");
        assert_eq!(check("--ttl-lt 0").unwrap(), " --ttl-lt 0");
        assert!(check("--ttl-eq 256").is_err());
        assert!(check("--ttl-eq -1").is_err());
        assert!(check("").is_err());
    }

    /// Expected forms printed by the real iptables 1.8.9 (nf_tables).
    #[test]
    fn values_as_the_real_tool_reads_them() {
        assert_eq!(check("--ttl-eq 0x10").unwrap(), " --ttl-eq 16");
        assert_eq!(check("--ttl-eq 010").unwrap(), " --ttl-eq 8");
        assert_eq!(check("--ttl-eq +3").unwrap(), " --ttl-eq 3");
        assert_eq!(check("--ttl-eq \" 3\"").unwrap(), " --ttl-eq 3");
        assert!(check("--ttl-eq 3x").is_err());
        assert!(check("! --ttl-lt 5").is_err());
        assert!(check("! --ttl-gt 5").is_err());
        assert!(check("--ttl-gt 5 --ttl-lt 9").is_err());
        assert!(check("--ttl-eq 5 --ttl-eq 9").is_err());
        assert!(check("--ttl-eq 5 --ttl-lt 9").is_err());
        assert!(check("--ttl-gt 5 --ttl-eq 9").is_err());
        // `--ttl` is an alias of `--ttl-eq` (not an ambiguous abbreviation).
        assert_eq!(check("--ttl 5").unwrap(), " --ttl-eq 5");
        assert_eq!(check("! --ttl 5").unwrap(), " ! --ttl-eq 5");
        assert!(check("--ttl 5 --ttl-eq 5").is_err());
        assert_eq!(check("--ttl-l 5").unwrap(), " --ttl-lt 5");
        assert!(check("--ttl- 5").is_err());
        assert!(check_in(Family::V6, "--ttl-eq 3").is_err());
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::{Eval, EvalCtx, Evaluate};
        use crate::packet::Packet;
        use crate::xt::{Hook, TableName};

        fn run(cmp: Cmp, value: u8, field: u8) -> Eval {
            let host = Host::new("h");
            let mut pkt = Packet::new(6, "10.0.0.1".parse().unwrap(), 1234, "10.0.0.2".parse().unwrap(), 22);
            pkt.ttl = field;
            let cx = EvalCtx { host: &host, hook: Hook::Prerouting, table: TableName::Mangle, family: Family::V4, conn: None };
            Ttl { ttl: Some((cmp, value)) }.eval(&pkt, &cx)
        }

        #[test]
        fn comparisons() {
            assert_eq!(run(Cmp::Eq, 64, 64), Eval::Match);
            assert_eq!(run(Cmp::Eq, 64, 63), Eval::NoMatch);
            assert_eq!(run(Cmp::Ne, 64, 64), Eval::NoMatch);
            assert_eq!(run(Cmp::Ne, 64, 65), Eval::Match);
            // Strict comparisons.
            assert_eq!(run(Cmp::Lt, 64, 63), Eval::Match);
            assert_eq!(run(Cmp::Lt, 64, 64), Eval::NoMatch);
            assert_eq!(run(Cmp::Gt, 64, 65), Eval::Match);
            assert_eq!(run(Cmp::Gt, 64, 64), Eval::NoMatch);
        }

        #[test]
        fn bounds() {
            // `-lt 0` and `-gt 255` can never match; `-eq 0` matches a zero field.
            for f in [0, 1, 128, 255] {
                assert_eq!(run(Cmp::Lt, 0, f), Eval::NoMatch, "{f}");
                assert_eq!(run(Cmp::Gt, 255, f), Eval::NoMatch, "{f}");
            }
            assert_eq!(run(Cmp::Eq, 0, 0), Eval::Match);
            assert_eq!(run(Cmp::Gt, 0, 1), Eval::Match);
            assert_eq!(run(Cmp::Lt, 255, 254), Eval::Match);
            assert_eq!(run(Cmp::Eq, 255, 255), Eval::Match);
        }

        #[test]
        fn parsed_inversion() {
            // `! --ttl-eq 5` is parsed as the not-equal mode.
            let mut m = Ttl::default();
            let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
            let toks = {
                let mut t = Vec::new();
                crate::xt::token::tokenize("5", 0, &mut t);
                t
            };
            let mut args = Args::new(&toks, 0, ctx);
            m.parse("ttl-eq", true, &mut args).unwrap();
            let host = Host::new("h");
            let mut pkt = Packet::new(6, "10.0.0.1".parse().unwrap(), 1234, "10.0.0.2".parse().unwrap(), 22);
            let cx = EvalCtx { host: &host, hook: Hook::Input, table: TableName::Filter, family: Family::V4, conn: None };
            pkt.ttl = 5;
            assert_eq!(m.eval(&pkt, &cx), Eval::NoMatch);
            pkt.ttl = 6;
            assert_eq!(m.eval(&pkt, &cx), Eval::Match);
        }
    }
}
