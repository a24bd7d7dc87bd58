//! `-j MARK`: sets the packet's nfmark (`xt_mark.c` `mark_tg`, `libxt_MARK.c` revision 2).
//!
//! Every form is stored as the kernel holds it, a `(mark, mask)` pair meaning "clear the bits of
//! `mask`, then XOR in `mark`", and saved the one way iptables-save prints it:
//! `--set-xmark 0xMARK/0xMASK`, both numbers always present (`--set-mark 2` prints
//! `--set-xmark 0x2/0xffffffff`, `--or-mark 2` prints `--set-xmark 0x2/0x2`).
//!
//! The kernel accepts the target in every table and hook.

use serde::Serialize;

use super::effect::{Applied, Cx, Effect, go};
use crate::stack::Domain;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert};
use crate::xt::value::{parse_mark, parse_uint};

/// The MARK target (`struct xt_mark_tginfo2`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mark {
    /// Bits XORed into the nfmark after `mask` was cleared.
    pub mark: u32,
    /// Bits of the nfmark cleared first.
    pub mask: u32,
    #[serde(skip)]
    given: Given,
}

impl Mark {
    /// The nfmark after the target ran on a packet whose nfmark was `nfmark`.
    pub fn apply(&self, nfmark: u32) -> u32 {
        (nfmark & !self.mask) ^ self.mark
    }
}

impl Extension for Mark {
    const OPTIONS: &'static [&'static str] = &["set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark"];

    fn new(_ctx: &Ctx) -> Self {
        Mark::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        self.given.record(Self::OPTIONS, opt, invert, Self::OPTIONS)?;
        let arg = args.value()?;
        (self.mark, self.mask) = match opt {
            "set-xmark" => parse_mark(arg)?,
            // `--set-mark V/M` ORs V into the mask, so `--set-mark 2/1` clears bits 0 and 1.
            "set-mark" => parse_mark(arg).map(|(v, m)| (v, v | m))?,
            "and-mark" => (0, !parse_u32(arg)?),
            "or-mark" => {
                let v = parse_u32(arg)?;
                (v, v)
            }
            "xor-mark" => (parse_u32(arg)?, 0),
            _ => return Err(format!("unknown option `--{opt}`")),
        };
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if !self.given.any() {
            return Err("the MARK target requires one of `--set-xmark`, `--set-mark`, `--and-mark`, \
                 `--or-mark` or `--xor-mark`"
                .into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        out.push_str(&format!(" --set-xmark 0x{:x}/0x{:x}", self.mark, self.mask));
    }
}

/// A 32-bit number as `XTTYPE_UINT32` reads it.
pub(crate) fn parse_u32(s: &str) -> Result<u32, String> {
    parse_uint(s, 0, u32::MAX.into()).map(|v| v as u32)
}

/// Appends ` WORD` the way iptables-save prints a name with `%s`: bare, unless it would not
/// read back as one word (empty, or holding a blank or a `"`), in which case it is quoted as
/// `xtables_save_string` quotes.
pub(crate) fn save_word(out: &mut String, word: &str) {
    if word.is_empty() || word.contains([' ', '\t', '\n', '"']) {
        crate::xt::value::save_string(out, word);
    } else {
        out.push(' ');
        out.push_str(word);
    }
}

/// Which options of an extension were given so far: bit `i` stands for `OPTIONS[i]` (the
/// `xflags` of libxtables' option parser).
///
/// It is parsing state only. It is not serialized and compares equal to any other `Given`, so two
/// targets that load the same kernel data compare equal however they were written.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Given(u32);

impl PartialEq for Given {
    fn eq(&self, _other: &Given) -> bool {
        true
    }
}

impl Eq for Given {}

impl Given {
    fn bit(options: &[&str], opt: &str) -> u32 {
        options.iter().position(|o| *o == opt).map_or(0, |i| 1 << i)
    }

    /// True when `opt` (one of `options`) was given.
    pub(crate) fn has(self, options: &[&str], opt: &str) -> bool {
        self.0 & Self::bit(options, opt) != 0
    }

    /// Notes that `opt` (one of `options`) was given, allowing repeats (old-style extensions).
    pub(crate) fn set(&mut self, options: &[&str], opt: &str) {
        self.0 |= Self::bit(options, opt);
    }

    /// True when any option was given.
    pub(crate) fn any(self) -> bool {
        self.0 != 0
    }

    /// Records `opt` (one of `options`) as libxtables' `xtables_option_parse` does: a second use
    /// is refused, then `!` (no option of these targets can be inverted), then the use together
    /// with an option of `excl` given before (libxtables refuses that at the final check).
    pub(crate) fn record(&mut self, options: &[&str], opt: &str, invert: bool, excl: &[&str]) -> OptResult {
        let bit = Self::bit(options, opt);
        if self.0 & bit != 0 {
            return Err(format!("option `--{opt}` may be given only once"));
        }
        no_invert(invert, opt)?;
        if let Some(other) = excl.iter().find(|o| **o != opt && self.has(options, o)) {
            return Err(format!("options `--{other}` and `--{opt}` cannot be used together"));
        }
        self.0 |= bit;
        Ok(())
    }
}

/// `mark_tg`: the mark becomes `(mark & ~mask) ^ value`.
impl Effect for Mark {
    fn effect<'a, D: Domain<'a>>(&self, d: &mut D, mut st: D::State, cx: &Cx<'_, 'a, D>) -> Applied<D::State> {
        match d.map_mark(&mut st, |x| self.apply(x)) {
            Ok(()) => go(st),
            Err(why) => cx.undecidable(st, why),
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
        check_alone::<Mark>(ctx, line)
    }

    // Expected forms are what iptables-save v1.8.9 (nf_tables) printed for the same rules.
    #[test]
    fn every_form_saves_as_set_xmark() {
        assert_eq!(check("--set-mark 2").unwrap(), " --set-xmark 0x2/0xffffffff");
        assert_eq!(check("--set-mark 2/3").unwrap(), " --set-xmark 0x2/0x3");
        assert_eq!(check("--set-mark 0x10/0x1").unwrap(), " --set-xmark 0x10/0x11");
        assert_eq!(check("--set-xmark 2").unwrap(), " --set-xmark 0x2/0xffffffff");
        assert_eq!(check("--set-xmark 0/0").unwrap(), " --set-xmark 0x0/0x0");
        assert_eq!(check("--and-mark 2").unwrap(), " --set-xmark 0x0/0xfffffffd");
        assert_eq!(check("--and-mark 0xffffffff").unwrap(), " --set-xmark 0x0/0x0");
        assert_eq!(check("--or-mark 2").unwrap(), " --set-xmark 0x2/0x2");
        assert_eq!(check("--xor-mark 2").unwrap(), " --set-xmark 0x2/0x0");
        assert_eq!(check("--set-mark 010").unwrap(), " --set-xmark 0x8/0xffffffff");
        assert_eq!(check("--set-mark 0X1F").unwrap(), " --set-xmark 0x1f/0xffffffff");
        assert_eq!(check("--set-xmark 4294967295").unwrap(), " --set-xmark 0xffffffff/0xffffffff");
        assert_eq!(check("--set-xmark 0xfeedcafe/0xfeedcafe").unwrap(), " --set-xmark 0xfeedcafe/0xfeedcafe");
    }

    #[test]
    fn refuses_what_iptables_refuses() {
        for bad in [
            "",
            "--set-xmark 4294967296",
            "--set-xmark -1",
            "--set-mark 0x",
            "--set-mark 1/",
            "--set-mark 1/2/3",
            "--and-mark 1/2",
            "--set-mark 1 --set-mark 2",
            "--set-mark 1 --or-mark 2",
            "! --set-mark 1",
        ] {
            assert!(check(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn applies_like_mark_tg() {
        let mut toks = Vec::new();
        crate::xt::token::tokenize("1", 0, &mut toks);
        let ctx = Ctx { family: Family::V4, table: TableName::Mangle, proto: None };
        let load = |opt: &str| {
            let mut m = Mark::new(&ctx);
            m.parse(opt, false, &mut Args::new(&toks, 0, ctx)).unwrap();
            m
        };
        assert_eq!(load("set-mark").apply(0xf0), 0x1);
        assert_eq!(load("or-mark").apply(0xf0), 0xf1);
        assert_eq!(load("and-mark").apply(0xf1), 0x1);
        assert_eq!(load("xor-mark").apply(0xf1), 0xf0);
        assert_eq!(load("set-mark"), {
            let mut m = load("set-xmark");
            m.finish(&ctx).unwrap();
            m
        });
    }
}
