//! `-m comment`: a note attached to a rule; always matches (`xt_comment.c`).

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond};
use crate::matches::Eval;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once};
use crate::xt::value::save_string;

/// Longest comment kept (`XT_MAX_COMMENT_LEN` less the NUL).
pub const MAX_COMMENT: usize = 255;

/// The comment match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// The text (at most 255 bytes: longer ones are cut, as iptables cuts them); required.
    pub text: Option<Box<str>>,
}

impl Extension for Comment {
    const OPTIONS: &'static [&'static str] = &["comment"];

    fn new(_ctx: &Ctx) -> Self {
        Comment::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        no_invert(invert, opt)?;
        once(&self.text, opt)?;
        let mut v = args.value()?;
        if v.len() > MAX_COMMENT {
            // iptables keeps the first 255 bytes silently (the kernel's buffer is 256 bytes with
            // the NUL). It may cut a UTF-8 character in two; the model keeps whole characters.
            let mut end = MAX_COMMENT;
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v = &v[..end];
        }
        self.text = Some(v.into());
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.text.is_none() {
            return Err("the comment match requires `--comment TEXT`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(t) = &self.text {
            out.push_str(" --comment");
            save_string(out, t);
        }
    }
}

impl crate::matches::Evaluate for Comment {
    /// `comment_mt` (`xt_comment.c`): always matches.
    fn eval(&self, _pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        crate::matches::Eval::Match
    }
}

impl Cond for Comment {
    const READS: Fields = Fields::NONE;

    /// `comment_mt` matches every packet.
    fn cond(&self, _cx: &CondCtx<'_>) -> MatchCond {
        MatchCond::Eval(Eval::Match)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<Comment>(ctx, line)
    }

    #[test]
    fn libxt_comment_t() {
        assert!(check("").is_err());
        assert!(check("--comment").is_err());
        // `-p tcp -m tcp --dport 22 -m comment --comment foo` and the reverse order: the
        // comment's own part (the position among matches is kept by the rule parser).
        assert_eq!(check("--comment foo").unwrap(), " --comment foo");
        let x255 = "x".repeat(255);
        assert_eq!(check(&format!("--comment {x255}")).unwrap(), format!(" --comment {x255}"));
    }

    /// Expected forms printed by the real iptables-restore / iptables-save 1.8.9 (nf_tables).
    #[test]
    fn as_the_real_tool_saves() {
        // The spec's commented-out "should fail" line: the real tool keeps 255 bytes instead.
        let x255 = "x".repeat(255);
        for n in [256, 300] {
            assert_eq!(check(&format!("--comment {}", "x".repeat(n))).unwrap(), format!(" --comment {x255}"));
        }
        let ok = [
            (r#"--comment "a b""#, r#" --comment "a b""#),
            (r#"--comment "it's \"q\" \\ b""#, r#" --comment "it\'s \"q\" \\ b""#),
            ("--comment ns/svc:port", r#" --comment "ns/svc:port""#),
            (r#"--comment "é""#, r#" --comment "é""#),
            (r#"--comment "a#b""#, r#" --comment "a#b""#),
            (r#"--comment "$x""#, r#" --comment "$x""#),
            ("--comment \"a\tb\"", " --comment \"a\tb\""),
            ("--comm foo", " --comment foo"),
        ];
        for (input, want) in ok {
            assert_eq!(check(input).as_deref(), Ok(want), "{input}");
        }
        assert!(check("! --comment foo").is_err());
        assert!(check("--comment foo --comment bar").is_err());
        // 128 two-byte characters: iptables cuts the last one in half; the model drops it.
        let e128 = "é".repeat(128);
        assert_eq!(check(&format!("--comment \"{e128}\"")).unwrap(), format!(" --comment \"{}\"", "é".repeat(127)));
    }

    #[test]
    fn always_matches() {
        use crate::host::Host;
        use crate::matches::tcp::test_util::{cx, parse};
        use crate::matches::{Eval, Evaluate};
        use crate::packet::Packet;
        use crate::xt::Hook;
        let host = Host::new("h");
        let m = parse::<Comment>(Family::V4, 0, "--comment \"allow ssh\"");
        for proto in [1, 6, 17, 47] {
            let pkt = Packet::new(proto, "10.0.0.1".parse().unwrap(), 1, "8.8.8.8".parse().unwrap(), 2);
            assert_eq!(m.eval(&pkt, &cx(&host, Hook::Forward, false)), Eval::Match);
        }
    }
}
