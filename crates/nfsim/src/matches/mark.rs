//! `-m mark`: the packet mark (`skb->mark`) under a mask (`xt_mark.c`, `libxt_mark.c`).

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, mark_set, tests};
use crate::classes::region::Test;
use crate::matches::Eval;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};
use crate::xt::value::{fmt_mark, parse_mark};

/// `[!] --mark VALUE[/MASK]`: matches when `(mark & mask) == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MarkValue {
    /// Value compared (not masked: iptables keeps it as written).
    pub value: u32,
    /// Mask applied to the packet mark (all ones when not given).
    pub mask: u32,
    /// `!`.
    pub invert: bool,
}

/// The mark match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mark {
    /// `--mark` (required).
    pub mark: Option<MarkValue>,
}

impl Extension for Mark {
    const OPTIONS: &'static [&'static str] = &["mark"];

    fn new(_ctx: &Ctx) -> Self {
        Mark::default()
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
            return Err("the mark match requires `--mark`".to_string());
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

impl crate::matches::Evaluate for Mark {
    /// `mark_mt`: `(skb->mark & mask) == value`, `!` negating. The value is not masked:
    /// `--mark 0x3/0x1` never matches.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let Some(m) = self.mark else { return Eval::Match };
        Eval::from_bool(pkt.mark & m.mask == m.value).invert(m.invert)
    }
}

impl Cond for Mark {
    const READS: Fields = Fields::MARK;

    /// `mark_mt`: the marks with `mark & mask == value`, flipped by `!`.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        match self.mark {
            None => MatchCond::Eval(Eval::Match),
            Some(v) => tests(cx, vec![Test { mark: Some(mark_set(v)), ..Test::default() }]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<Mark>(ctx, line)
    }

    #[test]
    fn libxt_mark_t() {
        assert_eq!(check("--mark 0xfeedcafe/0xfeedcafe").unwrap(), " --mark 0xfeedcafe/0xfeedcafe");
        assert_eq!(check("--mark 0x0").unwrap(), " --mark 0x0");
        assert_eq!(check("--mark 4294967295").unwrap(), " --mark 0xffffffff");
        assert!(check("--mark 4294967296").is_err());
        assert!(check("--mark -1").is_err());
        assert!(check("").is_err());
        assert_eq!(check("--mark 0x0/0xff0").unwrap(), " --mark 0x0/0xff0");
    }

    /// Save forms printed by the real iptables 1.8.9 (nf_tables).
    #[test]
    fn iptables_1_8_9_behaviour() {
        assert_eq!(check("! --mark 5/0xff").unwrap(), " ! --mark 0x5/0xff");
        assert_eq!(check("--mark 010").unwrap(), " --mark 0x8");
        assert_eq!(check("--mark 0xff/0xf").unwrap(), " --mark 0xff/0xf");
        assert_eq!(check("--mark 5/0xffffffff").unwrap(), " --mark 0x5");
        assert!(check("--mark 5/").is_err());
        assert!(check("--mark /5").is_err());
        assert!(check("--mark 1 --mark 2").is_err());
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

    fn eval(line: &str, mark: u32) -> Eval {
        let m: Mark = parse_alone(Ctx { family: Family::V4, table: TableName::Filter, proto: None }, line);
        let host = Host::new("h");
        let cx = EvalCtx { host: &host, hook: Hook::Input, table: TableName::Filter, family: Family::V4, conn: None };
        let mut pkt = Packet::new(17, "10.0.0.1".parse().unwrap(), 5000, "10.0.0.2".parse().unwrap(), 53);
        pkt.mark = mark;
        m.eval(&pkt, &cx)
    }

    #[test]
    fn masked_comparison() {
        for (line, mark, expected) in [
            ("--mark 5", 5, Eval::Match),
            ("--mark 5", 0x105, Eval::NoMatch),
            ("! --mark 5", 5, Eval::NoMatch),
            ("! --mark 5", 6, Eval::Match),
            ("--mark 0x1/0x1", 3, Eval::Match),
            ("--mark 0x100/0xff00", 0x1ff, Eval::Match),
            // The value is not masked: bits outside the mask never compare equal.
            ("--mark 0x3/0x1", 3, Eval::NoMatch),
            ("! --mark 0x3/0x1", 3, Eval::Match),
            ("--mark 0/0", 0xdead, Eval::Match),
            ("--mark 0", 0, Eval::Match),
        ] {
            assert_eq!(eval(line, mark), expected, "{line} mark {mark:#x}");
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::prelude::*;

    use super::Mark;
    use crate::classes::cond::test_util::{mark_value, run};
    use crate::matches::Match;

    #[test]
    fn mark_agrees() {
        run("mark", 300, 300, |_| mark_value().prop_map(|mark| Match::Mark(Mark { mark })).boxed());
    }
}
