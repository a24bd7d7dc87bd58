//! `-m hl`: compares the IPv6 hop limit (`ip6t_hl.c`, `libip6t_hl.c`; IPv6 only, `-m ttl` is the
//! IPv4 counterpart).

use serde::Serialize;

use super::ttl::{Cmp, parse_cmp, save_cmp};
use crate::classes::cond::{Cond, Fields};
use crate::xt::Family;
use crate::xt::ext::{Args, Ctx, Extension, OptResult};

/// The hl match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Hl {
    /// The comparison and the hop-limit value; required.
    pub hl: Option<(Cmp, u8)>,
}

impl Extension for Hl {
    const OPTIONS: &'static [&'static str] = &["hl-eq", "hl-lt", "hl-gt", "hl"];

    fn new(_ctx: &Ctx) -> Self {
        Hl::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        parse_cmp(&mut self.hl, "hl", opt, invert, args)
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if ctx.family != Family::V6 {
            return Err("the hl match is IPv6 only (iptables has `-m ttl`)".into());
        }
        if self.hl.is_none() {
            return Err("the hl match requires one of `--hl-eq`, `--hl-lt`, `--hl-gt`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(c) = self.hl {
            save_cmp(out, "hl", c);
        }
    }
}

impl crate::matches::Evaluate for Hl {
    /// `hl_mt6` (`ip6t_hl.c`): the packet's hop limit (`pkt.ttl`) compared with the value: equal, not
    /// equal (`! --hl-eq`), strictly less or strictly greater.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        // A comparison is required; a zeroed match info is mode EQ with value 0.
        let (cmp, value) = self.hl.unwrap_or((Cmp::Eq, 0));
        crate::matches::Eval::from_bool(cmp.test(pkt.ttl, value))
    }
}

impl Cond for Hl {
    /// It reads the hop limit, which the walk keeps per state (HL target): the example packet
    /// answers for the whole class.
    const READS: Fields = Fields::NONE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::TableName;
    use crate::xt::ext::check_alone;

    fn check_in(family: Family, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Filter, proto: None };
        check_alone::<Hl>(ctx, line)
    }

    fn check(line: &str) -> Result<String, String> {
        check_in(Family::V6, line)
    }

    #[test]
    fn libip6t_hl_t() {
        assert!(check("").is_err());
        for same in ["--hl-eq 42", "! --hl-eq 42", "--hl-lt 42", "--hl-gt 42"] {
            assert_eq!(check(same).unwrap(), format!(" {same}"));
        }
        assert!(check("--hl-gt 42 --hl-eq 42").is_err());
        assert!(check("--hl-gt").is_err());
    }

    /// Expected forms printed by the real ip6tables 1.8.9 (nf_tables).
    #[test]
    fn values_as_the_real_tool_reads_them() {
        assert!(check("! --hl-lt 42").is_err());
        assert!(check("--hl-lt 42 --hl-gt 42").is_err());
        assert!(check("--hl-lt 256").is_err());
        assert_eq!(check("--hl-lt 0x10").unwrap(), " --hl-lt 16");
        assert_eq!(check("--hl-lt 0").unwrap(), " --hl-lt 0");
        assert_eq!(check("--hl-gt 255").unwrap(), " --hl-gt 255");
        assert_eq!(check("--hl 4").unwrap(), " --hl-eq 4");
        assert_eq!(check("! --hl 5").unwrap(), " ! --hl-eq 5");
        assert_eq!(check("--hl-e 5").unwrap(), " --hl-eq 5");
        assert!(check("--hl-eq 4 --hl-eq 5").is_err());
        assert!(check("--hl 5 --hl-eq 6").is_err());
        assert!(check_in(Family::V4, "--hl-eq 3").is_err());
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::{Eval, EvalCtx, Evaluate};
        use crate::packet::Packet;
        use crate::xt::{Hook, TableName};

        fn run(cmp: Cmp, value: u8, field: u8) -> Eval {
            let host = Host::new("h");
            let mut pkt = Packet::new(6, "2001:db8::1".parse().unwrap(), 1234, "2001:db8::2".parse().unwrap(), 22);
            pkt.ttl = field;
            let cx = EvalCtx { host: &host, hook: Hook::Prerouting, table: TableName::Mangle, family: Family::V6, conn: None };
            Hl { hl: Some((cmp, value)) }.eval(&pkt, &cx)
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
            // `! --hl-eq 5` is parsed as the not-equal mode.
            let mut m = Hl::default();
            let ctx = Ctx { family: Family::V6, table: TableName::Filter, proto: None };
            let toks = {
                let mut t = Vec::new();
                crate::xt::token::tokenize("5", 0, &mut t);
                t
            };
            let mut args = Args::new(&toks, 0, ctx);
            m.parse("hl-eq", true, &mut args).unwrap();
            let host = Host::new("h");
            let mut pkt = Packet::new(6, "2001:db8::1".parse().unwrap(), 1234, "2001:db8::2".parse().unwrap(), 22);
            let cx = EvalCtx { host: &host, hook: Hook::Input, table: TableName::Filter, family: Family::V6, conn: None };
            pkt.ttl = 5;
            assert_eq!(m.eval(&pkt, &cx), Eval::NoMatch);
            pkt.ttl = 6;
            assert_eq!(m.eval(&pkt, &cx), Eval::Match);
        }
    }
}
