//! `-j DSCP`: sets the DSCP bits of the IPv4 TOS byte or IPv6 traffic class, keeping the ECN
//! bits (`xt_DSCP.c` `dscp_tg`, `libxt_DSCP.c`).
//!
//! `--set-dscp N` (0 to 0x3f) or `--set-dscp-class NAME`; either saves as `--set-dscp 0xNN`
//! (two hex digits). Class names are matched as `class_to_dscp` matches them: case-insensitively
//! and by prefix, so `CS1x` reads as `CS1`. The kernel accepts the target in the mangle table
//! only.

use serde::Serialize;

use super::effect::{Applied, Cx, Effect, go};
use super::mark::Given;
use crate::stack::{Domain, Flow};
use crate::xt::ext::{Args, Ctx, Extension, OptResult};
use crate::xt::value::parse_uint;

// The class names and their lookup are the dscp match's (`dscp_helper.c` serves both).
pub use crate::matches::dscp::{DSCP_CLASSES, class_to_dscp};

/// The DSCP target (`struct xt_DSCP_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Dscp {
    /// The DSCP value (0 to 0x3f).
    pub dscp: u8,
    #[serde(skip)]
    given: Given,
}

impl Dscp {
    /// The TOS byte (traffic class) after the target ran on a packet whose TOS byte was `tos`.
    pub fn apply(&self, tos: u8) -> u8 {
        (tos & 0x03) | (self.dscp << 2)
    }
}

impl Extension for Dscp {
    const OPTIONS: &'static [&'static str] = &["set-dscp", "set-dscp-class"];

    fn new(_ctx: &Ctx) -> Self {
        Dscp::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        self.given.record(Self::OPTIONS, opt, invert, Self::OPTIONS)?;
        let arg = args.value()?;
        self.dscp = if opt == "set-dscp" {
            parse_uint(arg, 0, 0x3f)? as u8
        } else {
            class_to_dscp(arg).ok_or_else(|| format!("unknown DSCP class `{arg}` (expected one of {})", DSCP_CLASSES.map(|(n, _)| n).join(", ")))?
        };
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if !self.given.any() {
            return Err("the DSCP target requires `--set-dscp` or `--set-dscp-class`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        out.push_str(&format!(" --set-dscp 0x{:02x}", self.dscp));
    }
}

/// `dscp_tg`: the DSCP bits of the TOS byte rewritten.
impl Effect for Dscp {
    fn effect<'a, D: Domain<'a>>(&self, _: &mut D, mut st: D::State, _: &Cx<'_, 'a, D>) -> Applied<D::State> {
        let tos = st.tos_mut();
        *tos = self.apply(*tos);
        go(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Mangle, proto: None };
        check_alone::<Dscp>(ctx, line)
    }

    // Expected forms are what iptables-save v1.8.9 (nf_tables) printed for the same rules.
    #[test]
    fn save_forms() {
        for (input, saved) in [
            ("--set-dscp 0x00", "0x00"),
            ("--set-dscp 0x3f", "0x3f"),
            ("--set-dscp 63", "0x3f"),
            ("--set-dscp 10", "0x0a"),
            ("--set-dscp-class CS0", "0x00"),
            ("--set-dscp-class cs1", "0x08"),
            ("--set-dscp-class CS7", "0x38"),
            ("--set-dscp-class BE", "0x00"),
            ("--set-dscp-class af43", "0x26"),
            ("--set-dscp-class EF", "0x2e"),
            ("--set-dscp-class CS1x", "0x08"),
            ("--set-dscp-class AF111", "0x0a"),
        ] {
            assert_eq!(check(input).unwrap(), format!(" --set-dscp {saved}"), "{input}");
        }
    }

    #[test]
    fn refuses_what_iptables_refuses() {
        for bad in [
            "",
            "--set-dscp -1",
            "--set-dscp 0x40",
            "--set-dscp 0x3f --set-dscp-class CS0",
            "--set-dscp-class CS0 --set-dscp-class CS1",
            "--set-dscp-class CS8",
            "--set-dscp-class 10",
            "--set-dscp-class C",
            "--set-dscp-class le",
            "! --set-dscp 1",
        ] {
            assert!(check(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
