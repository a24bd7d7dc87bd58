//! `-m connmark`: the mark of the packet's conntrack entry under a mask (`xt_connmark.c`,
//! `libxt_connmark.c`).

use serde::Serialize;

use super::mark::MarkValue;
use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, mark_set, tests, tracked};
use crate::classes::region::Test;
use crate::matches::Eval;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};
use crate::xt::value::{fmt_mark, parse_mark};

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
    /// `connmark_mt`: without a conntrack entry (INVALID and UNTRACKED packets) the match fails,
    /// `!` or not; otherwise `(ctmark & mask) == value`, `!` negating. The value is not masked:
    /// `--mark 0x3/0x1` never matches.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let Some(m) = self.mark else { return Eval::Match };
        let (_, has_ct) = super::conntrack::state_bit(pkt.ct_state);
        if !has_ct {
            return Eval::NoMatch;
        }
        Eval::from_bool(pkt.ct_mark & m.mask == m.value).invert(m.invert)
    }
}

impl Cond for Connmark {
    const READS: Fields = Fields::CTMARK.or(Fields::STATE);

    /// `connmark_mt`: the conntrack marks with `ctmark & mask == value`, flipped by `!`. Without a
    /// conntrack entry (INVALID, UNTRACKED) the match fails, `!` or not.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        match self.mark {
            None => MatchCond::Eval(Eval::Match),
            Some(v) => tests(cx, vec![Test { state: Some(tracked()), ctmark: Some(mark_set(v)), ..Test::default() }]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

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

#[cfg(test)]
mod eval_tests {
    use super::*;
    use crate::host::Host;
    use crate::matches::{Eval, EvalCtx, Evaluate};
    use crate::packet::{CtState, Packet};
    use crate::xt::ext::parse_alone;
    use crate::xt::{Family, Hook, TableName};

    fn eval(line: &str, state: CtState, ct_mark: u32) -> Eval {
        let m: Connmark = parse_alone(Ctx { family: Family::V4, table: TableName::Mangle, proto: None }, line);
        let host = Host::new("h");
        let cx = EvalCtx { host: &host, hook: Hook::Prerouting, table: TableName::Mangle, family: Family::V4, conn: None };
        let mut pkt = Packet::new(6, "10.0.0.1".parse().unwrap(), 40000, "10.0.0.2".parse().unwrap(), 80);
        pkt.ct_state = state;
        pkt.ct_mark = ct_mark;
        m.eval(&pkt, &cx)
    }

    #[test]
    fn masked_comparison_of_the_connection_mark() {
        for (line, ct_mark, expected) in [
            ("--mark 1", 1, Eval::Match),
            ("--mark 1", 0, Eval::NoMatch),
            ("! --mark 1", 0, Eval::Match),
            ("--mark 0x10/0xf0", 0x1f, Eval::Match),
            ("--mark 0xff/0xf", 0xff, Eval::NoMatch),
            ("! --mark 0xff/0xf", 0xff, Eval::Match),
        ] {
            assert_eq!(eval(line, CtState::Established, ct_mark), expected, "{line} ctmark {ct_mark:#x}");
            assert_eq!(eval(line, CtState::New, ct_mark), expected, "{line} ctmark {ct_mark:#x}");
        }
    }

    #[test]
    fn no_conntrack_entry_never_matches() {
        for state in [CtState::Invalid, CtState::Untracked] {
            assert_eq!(eval("--mark 0", state, 0), Eval::NoMatch);
            assert_eq!(eval("! --mark 1", state, 0), Eval::NoMatch);
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::prelude::*;

    use super::Connmark;
    use crate::classes::cond::test_util::{mark_value, run};
    use crate::matches::Match;

    #[test]
    fn connmark_agrees() {
        run("connmark", 300, 300, |_| mark_value().prop_map(|mark| Match::Connmark(Connmark { mark })).boxed());
    }
}
