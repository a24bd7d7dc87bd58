//! `-m dscp`: the 6-bit DSCP field of the IPv4 TOS byte / IPv6 traffic class (`xt_dscp.c`
//! `dscp_mt`, `libxt_dscp.c`, both families).

use serde::Serialize;

use super::tos::xt_uint;
use crate::classes::cond::{Cond, Fields};
use crate::xt::ext::{Args, Ctx, Extension, OptResult, save_invert};

/// Largest DSCP value (`XT_DSCP_MAX`).
pub const DSCP_MAX: u8 = 0x3f;

/// The `--dscp-class` names and their DSCP values, in the order libxtables tries them.
pub const DSCP_CLASSES: [(&str, u8); 22] = [
    ("CS0", 0x00),
    ("CS1", 0x08),
    ("CS2", 0x10),
    ("CS3", 0x18),
    ("CS4", 0x20),
    ("CS5", 0x28),
    ("CS6", 0x30),
    ("CS7", 0x38),
    ("BE", 0x00),
    ("AF11", 0x0a),
    ("AF12", 0x0c),
    ("AF13", 0x0e),
    ("AF21", 0x12),
    ("AF22", 0x14),
    ("AF23", 0x16),
    ("AF31", 0x1a),
    ("AF32", 0x1c),
    ("AF33", 0x1e),
    ("AF41", 0x22),
    ("AF42", 0x24),
    ("AF43", 0x26),
    ("EF", 0x2e),
];

/// Resolves a DSCP class name as iptables does: case-insensitively, and the argument only has
/// to start with the class name (`CS0x` is `CS0`).
pub fn class_to_dscp(name: &str) -> Option<u8> {
    DSCP_CLASSES.iter().find(|(c, _)| name.len() >= c.len() && name.as_bytes()[..c.len()].eq_ignore_ascii_case(c.as_bytes())).map(|&(_, v)| v)
}

/// The dscp match: `--dscp N` or `--dscp-class NAME` (stored as the number; saved as `--dscp`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Dscp {
    /// The DSCP value compared (0..=63); required.
    pub dscp: Option<u8>,
    /// `!`: match when the DSCP differs.
    pub invert: bool,
}

impl Extension for Dscp {
    const OPTIONS: &'static [&'static str] = &["dscp", "dscp-class"];

    fn new(_ctx: &Ctx) -> Self {
        Dscp::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        if self.dscp.is_some() {
            return Err("only one of `--dscp` and `--dscp-class` may be given, and only once".into());
        }
        let v = args.value()?;
        let value = match opt {
            "dscp" => xt_uint(v, opt, DSCP_MAX.into())? as u8,
            _ => class_to_dscp(v).ok_or_else(|| {
                format!(
                    "invalid DSCP class `{v}` (expected CS0..CS7, BE, AF11..AF13, AF21..AF23, \
                     AF31..AF33, AF41..AF43 or EF)"
                )
            })?,
        };
        self.dscp = Some(value);
        self.invert = invert;
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.dscp.is_none() {
            return Err("the dscp match requires `--dscp N` or `--dscp-class CLASS`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(d) = self.dscp {
            save_invert(out, self.invert);
            out.push_str(&format!(" --dscp 0x{d:02x}"));
        }
    }
}

impl crate::matches::Evaluate for Dscp {
    /// `dscp_mt` / `dscp_mt6`: the top six bits of the IPv4 TOS byte or the IPv6 traffic class
    /// (`pkt.tos >> 2`; the ECN bits are ignored) equal the value, then `!`.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        // `--dscp` is required; a zeroed `xt_dscp_info` compares with DSCP 0.
        let want = self.dscp.unwrap_or(0);
        crate::matches::Eval::from_bool(pkt.tos >> 2 == want).invert(self.invert)
    }
}

impl Cond for Dscp {
    /// It reads the TOS byte, which the walk keeps per state (TOS and DSCP targets): the example
    /// packet answers for the whole class.
    const READS: Fields = Fields::NONE;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check_in(family: Family, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Filter, proto: None };
        check_alone::<Dscp>(ctx, line)
    }

    fn check(line: &str) -> Result<String, String> {
        check_in(Family::V4, line)
    }

    #[test]
    fn libxt_dscp_t() {
        assert_eq!(check("--dscp 0x00").unwrap(), " --dscp 0x00");
        assert_eq!(check("--dscp 0x3f").unwrap(), " --dscp 0x3f");
        assert!(check("--dscp -1").is_err());
        assert!(check("--dscp 0x40").is_err());
        assert!(check("--dscp 0x3f --dscp-class CS0").is_err());
        assert_eq!(check("--dscp-class CS0").unwrap(), " --dscp 0x00");
        assert_eq!(check("--dscp-class BE").unwrap(), " --dscp 0x00");
        assert_eq!(check("--dscp-class EF").unwrap(), " --dscp 0x2e");
        assert!(check("").is_err());
    }

    /// Expected forms printed by the real iptables 1.8.9 (nf_tables).
    #[test]
    fn values_as_the_real_tool_reads_them() {
        assert_eq!(check("--dscp 63").unwrap(), " --dscp 0x3f");
        assert_eq!(check("--dscp 077").unwrap(), " --dscp 0x3f");
        assert_eq!(check("--dscp +5").unwrap(), " --dscp 0x05");
        assert_eq!(check("--dscp \" 5\"").unwrap(), " --dscp 0x05");
        for bad in ["64", "5x", "0x"] {
            assert!(check(&format!("--dscp {bad}")).is_err(), "{bad}");
        }
        assert_eq!(check("--dscp-class cs1").unwrap(), " --dscp 0x08");
        assert_eq!(check("--dscp-class CS7").unwrap(), " --dscp 0x38");
        assert_eq!(check("--dscp-class be").unwrap(), " --dscp 0x00");
        assert_eq!(check("--dscp-class ef").unwrap(), " --dscp 0x2e");
        assert_eq!(check("--dscp-class AF11").unwrap(), " --dscp 0x0a");
        assert_eq!(check("--dscp-class af43").unwrap(), " --dscp 0x26");
        assert_eq!(check("--dscp-class CS0x").unwrap(), " --dscp 0x00");
        assert_eq!(check("--dscp-class EFG").unwrap(), " --dscp 0x2e");
        for bad in ["AF44", "CS8", "CS", "\" EF\""] {
            assert!(check(&format!("--dscp-class {bad}")).is_err(), "{bad}");
        }
        assert_eq!(check("! --dscp-class EF").unwrap(), " ! --dscp 0x2e");
        assert!(check("--dscp-class CS0 --dscp 1").is_err());
        assert!(check("--dscp 1 --dscp 2").is_err());
        assert!(check("--dscp-class EF --dscp-class AF11").is_err());
        assert_eq!(check("--dscp-c EF").unwrap(), " --dscp 0x2e");
        assert_eq!(check_in(Family::V6, "! --dscp 3").unwrap(), " ! --dscp 0x03");
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::{Eval, EvalCtx, Evaluate};
        use crate::packet::Packet;
        use crate::xt::{Family, Hook, TableName};

        fn run(dscp: u8, invert: bool, tos: u8, family: Family) -> Eval {
            let host = Host::new("h");
            let (src, dst) = match family {
                Family::V4 => ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()),
                Family::V6 => ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap()),
            };
            let mut pkt = Packet::new(17, src, 5000, dst, 53);
            pkt.tos = tos;
            let cx = EvalCtx { host: &host, hook: Hook::Forward, table: TableName::Filter, family, conn: None };
            Dscp { dscp: Some(dscp), invert }.eval(&pkt, &cx)
        }

        #[test]
        fn dscp_is_the_top_six_bits() {
            // EF = 0x2e, i.e. TOS byte 0xb8.
            assert_eq!(run(0x2e, false, 0xb8, Family::V4), Eval::Match);
            // The ECN bits do not count.
            assert_eq!(run(0x2e, false, 0xb9, Family::V4), Eval::Match);
            assert_eq!(run(0x2e, false, 0xbb, Family::V4), Eval::Match);
            // A TOS byte equal to the DSCP value is not the DSCP.
            assert_eq!(run(0x2e, false, 0x2e, Family::V4), Eval::NoMatch);
            assert_eq!(run(0x2e, false, 0xbc, Family::V4), Eval::NoMatch);
            // CS0 / BE: DSCP 0, whatever the ECN bits.
            assert_eq!(run(0, false, 0x03, Family::V4), Eval::Match);
            assert_eq!(run(0, false, 0x04, Family::V4), Eval::NoMatch);
            assert_eq!(run(0x3f, false, 0xff, Family::V4), Eval::Match);
        }

        #[test]
        fn inversion() {
            assert_eq!(run(0x2e, true, 0xb8, Family::V4), Eval::NoMatch);
            assert_eq!(run(0x2e, true, 0x00, Family::V4), Eval::Match);
        }

        #[test]
        fn ipv6_traffic_class() {
            assert_eq!(run(0x0a, false, 0x28, Family::V6), Eval::Match);
            assert_eq!(run(0x0a, false, 0x29, Family::V6), Eval::Match);
            assert_eq!(run(0x0a, false, 0x30, Family::V6), Eval::NoMatch);
            assert_eq!(run(0x0a, true, 0x30, Family::V6), Eval::Match);
        }
    }
}
