//! `-j NOTRACK`: the packet is not tracked (`xt_CT.c`, `libxt_CT.c`: an alias of
//! `CT --notrack` that the kernel marks `XT_CT_NOTRACK_ALIAS`).
//!
//! It takes no option. iptables-save prints it as written, `-j NOTRACK`, with both the nft and
//! the legacy backend of iptables 1.8.9; it does not turn into `-j CT --notrack`, which stays a
//! distinct [`Ct`](super::ct::Ct) target. The kernel accepts it in the raw table only.

use serde::Serialize;

use super::effect::{Applied, Cx, Effect};
use crate::stack::Domain;
use crate::xt::ext::{Args, Ctx, Extension, OptResult};

/// The NOTRACK target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Notrack {}

impl Extension for Notrack {
    const OPTIONS: &'static [&'static str] = &[];

    fn new(_ctx: &Ctx) -> Self {
        Notrack {}
    }

    fn parse(&mut self, opt: &str, _invert: bool, _args: &mut Args<'_, '_>) -> OptResult {
        Err(format!("unknown option `--{opt}` (NOTRACK takes no option)"))
    }

    fn save(&self, _ctx: &Ctx, _out: &mut String) {}
}

/// `notrack_tg`: as `CT --notrack`.
impl Effect for Notrack {
    fn effect<'a, D: Domain<'a>>(&self, d: &mut D, st: D::State, _: &Cx<'_, 'a, D>) -> Applied<D::State> {
        super::effect::untrack(d, st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    #[test]
    fn takes_no_option() {
        let ctx = Ctx { family: Family::V6, table: TableName::Raw, proto: None };
        assert_eq!(check_alone::<Notrack>(ctx, "").unwrap(), "");
        assert!(check_alone::<Notrack>(ctx, "--notrack").is_err());
    }
}
