//! `-j HL`: sets, increments or decrements the IPv6 hop limit (`xt_HL.c` `hl_tg6`,
//! `libip6t_HL.c`).
//!
//! `--hl-set N` (0 to 255), `--hl-inc N` or `--hl-dec N` (1 to 255), exactly one of them; saved
//! as given, in decimal. The target exists for IPv6 only (iptables has [`TTL`](super::ttl::Ttl));
//! the kernel accepts it in the mangle table only.

use serde::Serialize;

use super::effect::{Applied, Cx, Effect, go};
use super::mark::Given;
pub use super::ttl::TtlAction as HlAction;
use crate::stack::{Domain, Flow};
use crate::xt::Family;
use crate::xt::ext::{Args, Ctx, Extension, OptResult};

/// The HL target (`struct ip6t_HL_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Hl {
    /// The action (always set in a finished target).
    pub action: Option<HlAction>,
    #[serde(skip)]
    given: Given,
}

impl Extension for Hl {
    const OPTIONS: &'static [&'static str] = &["hl-set", "hl-dec", "hl-inc"];

    fn new(_ctx: &Ctx) -> Self {
        Hl::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        self.given.record(Self::OPTIONS, opt, invert, Self::OPTIONS)?;
        self.action = Some(HlAction::parse(opt, args.value()?)?);
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if ctx.family != Family::V6 {
            return Err("the HL target exists for IPv6 only (iptables has TTL)".into());
        }
        if self.action.is_none() {
            return Err("the HL target requires `--hl-set`, `--hl-dec` or `--hl-inc`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(a) = self.action {
            a.save("hl", out);
        }
    }
}

/// `hl_tg6`: the hop limit set, increased or decreased.
impl Effect for Hl {
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
        check_alone::<Hl>(ctx, line)
    }

    // Expected forms are what ip6tables-save v1.8.9 (nf_tables) printed for the same rules.
    #[test]
    fn save_forms() {
        for same in [" --hl-set 42", " --hl-inc 1", " --hl-dec 1", " --hl-set 0"] {
            assert_eq!(check(Family::V6, same).unwrap(), same);
        }
    }

    #[test]
    fn refuses_what_ip6tables_refuses() {
        for bad in ["", "--hl-set 256", "--hl-inc 0", "--hl-dec 0", "--hl-dec 1 --hl-inc 1", "--hl-set --hl-inc 1", "! --hl-set 1"] {
            assert!(check(Family::V6, bad).is_err(), "{bad:?} should be refused");
        }
        assert!(check(Family::V4, "--hl-set 4").is_err());
    }
}
