//! `-j TRACE`: marks the packet so that every rule it meets is logged (`xt_TRACE.c`; the nft
//! backend turns it into `meta nftrace set 1`).
//!
//! It takes no option and saves as `-j TRACE`. With the nft backend it loads in every table;
//! the legacy kernel target is restricted to the raw table.

use serde::Serialize;

use super::effect::Effect;
use crate::xt::ext::{Args, Ctx, Extension, OptResult};

/// The TRACE target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Trace {}

impl Extension for Trace {
    const OPTIONS: &'static [&'static str] = &[];

    fn new(_ctx: &Ctx) -> Self {
        Trace {}
    }

    fn parse(&mut self, opt: &str, _invert: bool, _args: &mut Args<'_, '_>) -> OptResult {
        Err(format!("unknown option `--{opt}` (TRACE takes no option)"))
    }

    fn save(&self, _ctx: &Ctx, _out: &mut String) {}
}

/// The target marks the packet for tracing and continues.
impl Effect for Trace {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    #[test]
    fn takes_no_option() {
        let ctx = Ctx { family: Family::V4, table: TableName::Raw, proto: None };
        assert_eq!(check_alone::<Trace>(ctx, "").unwrap(), "");
        assert!(check_alone::<Trace>(ctx, "--foo").is_err());
    }
}
