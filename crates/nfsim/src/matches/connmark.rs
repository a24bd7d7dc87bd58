//! `-m connmark`: the mark of the packet's conntrack entry under a mask (`xt_connmark.c`,
//! `libxt_connmark.c`).

use serde::Serialize;

use super::mark::MarkValue;
use crate::ruleset::ext::{Args, Ctx, Extension, OptResult, once, save_invert};
use crate::ruleset::value::{fmt_mark, parse_mark};

/// The connmark match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Connmark {
    /// `--mark` (required), compared with the connection mark.
    pub mark: Option<MarkValue>,
}

impl Extension for Connmark {
    const OPTIONS: &'static [&'static str] = &["mark"];

    fn new(_ctx: &Ctx) -> Self {
        Connmark::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "mark" => {
                once(&self.mark, opt)?;
                let (value, mask) = parse_mark(args.value()?)?;
                self.mark = Some(MarkValue { value, mask, invert });
                Ok(())
            }
            _ => Err(format!("unknown option `--{opt}`")),
        }
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.mark.is_none() {
            return Err("the connmark match requires `--mark`".to_string());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(m) = self.mark {
            save_invert(out, m.invert);
            out.push_str(" --mark ");
            fmt_mark(out, m.value, m.mask);
        }
    }
}

impl crate::matches::Evaluate for Connmark {
    fn eval(&self, _pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        crate::matches::Eval::Unknown("`-m connmark` is not evaluated yet".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::ext::check_alone;
    use crate::ruleset::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Mangle, proto: None };
        check_alone::<Connmark>(ctx, line)
    }

    #[test]
    fn libxt_connmark_t() {
        assert_eq!(check("--mark 0xffffffff").unwrap(), " --mark 0xffffffff");
        assert_eq!(check("--mark 0xffffffff/0xffffffff").unwrap(), " --mark 0xffffffff");
        assert_eq!(check("--mark 0xffffffff/0x0").unwrap(), " --mark 0xffffffff/0x0");
        assert_eq!(check("--mark 0/0xffffffff").unwrap(), " --mark 0x0");
        assert!(check("--mark -1").is_err());
        assert!(check("--mark 0xfffffffff").is_err());
        assert!(check("").is_err());
    }

    /// Save forms printed by the real iptables 1.8.9 (nf_tables).
    #[test]
    fn iptables_1_8_9_behaviour() {
        assert_eq!(check("! --mark 0/0xffffffff").unwrap(), " ! --mark 0x0");
        assert_eq!(check("--mark 0xff/0xf").unwrap(), " --mark 0xff/0xf");
        assert!(check("--mark 1 --mark 2").is_err());
    }
}
