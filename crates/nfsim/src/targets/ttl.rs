//! `-j TTL`: sets, increments or decrements the IPv4 TTL (`xt_HL.c` `ttl_tg`, `libipt_TTL.c`).
//!
//! `--ttl-set N` (0 to 255), `--ttl-inc N` or `--ttl-dec N` (1 to 255), exactly one of them;
//! saved as given, in decimal. The target exists for IPv4 only (ip6tables has
//! [`HL`](super::hl::Hl)); the kernel accepts it in the mangle table only.

use serde::Serialize;

use super::effect::{Applied, Cx, Effect, go};
use super::mark::Given;
use crate::stack::{Domain, Flow};
use crate::xt::Family;
use crate::xt::ext::{Args, Ctx, Extension, OptResult};
use crate::xt::value::parse_uint;

/// What the TTL and HL targets do with the TTL / hop limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TtlAction {
    /// Set it to this value.
    Set(u8),
    /// Decrement it by this much, stopping at 0.
    Dec(u8),
    /// Increment it by this much, stopping at 255.
    Inc(u8),
}

impl TtlAction {
    /// The TTL / hop limit after the action on a packet whose TTL was `ttl`.
    pub fn apply(self, ttl: u8) -> u8 {
        match self {
            TtlAction::Set(v) => v,
            TtlAction::Dec(v) => ttl.saturating_sub(v),
            TtlAction::Inc(v) => ttl.saturating_add(v),
        }
    }

    /// Parses option `--{prefix}-set|dec|inc` (its name without `--`) with value `arg`.
    pub(crate) fn parse(opt: &str, arg: &str) -> Result<TtlAction, String> {
        let op = opt.rsplit('-').next().unwrap_or(opt);
        let min = if op == "set" { 0 } else { 1 };
        let v = parse_uint(arg, min, 255)? as u8;
        Ok(match op {
            "set" => TtlAction::Set(v),
            "dec" => TtlAction::Dec(v),
            _ => TtlAction::Inc(v),
        })
    }

    /// Appends ` --{prefix}-set N` (or `-dec`, `-inc`).
    pub(crate) fn save(self, prefix: &str, out: &mut String) {
        let (op, v) = match self {
            TtlAction::Set(v) => ("set", v),
            TtlAction::Dec(v) => ("dec", v),
            TtlAction::Inc(v) => ("inc", v),
        };
        out.push_str(&format!(" --{prefix}-{op} {v}"));
    }
}

/// The TTL target (`struct ipt_TTL_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ttl {
    /// The action (always set in a finished target).
    pub action: Option<TtlAction>,
    #[serde(skip)]
    given: Given,
}

impl Extension for Ttl {
    const OPTIONS: &'static [&'static str] = &["ttl-set", "ttl-dec", "ttl-inc"];

    fn new(_ctx: &Ctx) -> Self {
        Ttl::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        self.given.record(Self::OPTIONS, opt, invert, Self::OPTIONS)?;
        self.action = Some(TtlAction::parse(opt, args.value()?)?);
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if ctx.family != Family::V4 {
            return Err("the TTL target exists for IPv4 only (ip6tables has HL)".into());
        }
        if self.action.is_none() {
            return Err("the TTL target requires `--ttl-set`, `--ttl-dec` or `--ttl-inc`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(a) = self.action {
            a.save("ttl", out);
        }
    }
}

/// `ttl_tg`: the TTL set, increased or decreased.
impl Effect for Ttl {
    fn effect<'a, D: Domain<'a>>(&self, _: &mut D, mut st: D::State, _: &Cx<'_, 'a, D>) -> Applied<D::State> {
        if let Some(a) = self.action {
            let ttl = st.ttl_mut();
            *ttl = a.apply(*ttl);
        }
        go(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::TableName;
    use crate::xt::ext::check_alone;

    fn check(family: Family, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Mangle, proto: None };
        check_alone::<Ttl>(ctx, line)
    }

    // Expected forms are what iptables-save v1.8.9 (nf_tables) printed for the same rules.
    #[test]
    fn save_forms() {
        let v4 = |l| check(Family::V4, l);
        for same in [" --ttl-set 42", " --ttl-inc 1", " --ttl-dec 1", " --ttl-set 0", " --ttl-inc 255"] {
            assert_eq!(v4(same).unwrap(), same);
        }
        assert_eq!(v4("--ttl-set 0x10").unwrap(), " --ttl-set 16");
    }

    #[test]
    fn refuses_what_iptables_refuses() {
        for bad in
            ["", "--ttl-set 256", "--ttl-inc 0", "--ttl-dec 0", "--ttl-dec 1 --ttl-inc 1", "--ttl-set 1 --ttl-set 2", "--ttl-set --ttl-inc 1", "! --ttl-set 1"]
        {
            assert!(check(Family::V4, bad).is_err(), "{bad:?} should be refused");
        }
        assert!(check(Family::V6, "--ttl-set 4").is_err());
    }

    #[test]
    fn saturates_like_ttl_tg() {
        assert_eq!(TtlAction::Dec(5).apply(3), 0);
        assert_eq!(TtlAction::Inc(5).apply(254), 255);
        assert_eq!(TtlAction::Set(7).apply(64), 7);
    }
}
