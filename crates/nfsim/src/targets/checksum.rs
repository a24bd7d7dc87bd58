//! `-j CHECKSUM --checksum-fill`: computes a missing checksum in the packet (`xt_CHECKSUM.c`,
//! `libxt_CHECKSUM.c`).
//!
//! `--checksum-fill` is required and is the only option. The kernel accepts the target in the
//! mangle table only.

use serde::Serialize;

use super::effect::Effect;
use super::mark::Given;
use crate::xt::ext::{Args, Ctx, Extension, OptResult};

/// The CHECKSUM target (`struct xt_CHECKSUM_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Checksum {
    /// `--checksum-fill` (`XT_CHECKSUM_OP_FILL`).
    pub fill: bool,
    #[serde(skip)]
    given: Given,
}

impl Extension for Checksum {
    const OPTIONS: &'static [&'static str] = &["checksum-fill"];

    fn new(_ctx: &Ctx) -> Self {
        Checksum::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, _args: &mut Args<'_, '_>) -> OptResult {
        self.given.record(Self::OPTIONS, opt, invert, &[])?;
        self.fill = true;
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if !self.fill {
            return Err("the CHECKSUM target requires `--checksum-fill`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if self.fill {
            out.push_str(" --checksum-fill");
        }
    }
}

/// The target fills in a checksum the model does not carry, and continues.
impl Effect for Checksum {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Mangle, proto: None };
        check_alone::<Checksum>(ctx, line)
    }

    #[test]
    fn checksum_fill_is_required_once() {
        assert_eq!(check("--checksum-fill").unwrap(), " --checksum-fill");
        assert!(check("").is_err());
        assert!(check("--checksum-fill --checksum-fill").is_err());
        assert!(check("! --checksum-fill").is_err());
    }
}
