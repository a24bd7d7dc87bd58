//! `-j ULOG`: the IPv4-only netlink logger that NFLOG replaced (`ipt_ULOG.c`, `libipt_ULOG.c`).
//!
//! iptables 1.8.9 still ships `libipt_ULOG` and `iptables-restore --test` accepts the target
//! (with a warning that the kernel lacks it), but Linux removed `ipt_ULOG` in 3.17: loading such a
//! rule fails with ENOENT on both backends. The options are read and printed as iptables would;
//! ip6tables has no ULOG. The prefix is cut to 31 bytes, and `--ulog-cprange` prints as a 32-bit
//! number (iptables casts it), so a range of 2^32 or more does not print back as written.

use serde::Serialize;

use super::dnat::xt_strtoul;
use super::effect::Effect;
use super::log::parse_prefix;
use crate::xt::Family;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once};
use crate::xt::value::save_string;

/// False: no kernel since Linux 3.17 has the ULOG target.
pub const KERNEL_SUPPORTED: bool = false;

/// The ULOG target (`struct ipt_ulog_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ulog {
    /// `--ulog-prefix` (1 to 31 bytes, no newline).
    pub prefix: Option<Box<str>>,
    /// `--ulog-nlgroup`, 1-32; `None` is group 1.
    pub nlgroup: Option<u8>,
    /// `--ulog-qthreshold`, 1-50 packets; `None` is 1.
    pub qthreshold: Option<u8>,
    /// `--ulog-cprange`: bytes of each packet copied; `None` (or 0) copies the whole packet.
    pub cprange: Option<u64>,
}

impl Extension for Ulog {
    const OPTIONS: &'static [&'static str] = &["ulog-nlgroup", "ulog-prefix", "ulog-cprange", "ulog-qthreshold"];

    fn new(_ctx: &Ctx) -> Self {
        Ulog::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        let number = |s: &str, min: u64, max: u64| xt_strtoul(s, min, max).ok_or_else(|| format!("invalid `--{opt}` value `{s}` (expected {min}-{max})"));
        match opt {
            "ulog-nlgroup" => {
                once(&self.nlgroup, opt)?;
                no_invert(invert, opt)?;
                self.nlgroup = Some(number(args.value()?, 1, 32)? as u8);
            }
            "ulog-prefix" => {
                once(&self.prefix, opt)?;
                no_invert(invert, opt)?;
                self.prefix = Some(parse_prefix(args.value()?, opt, 31)?);
            }
            "ulog-cprange" => {
                once(&self.cprange, opt)?;
                no_invert(invert, opt)?;
                self.cprange = Some(number(args.value()?, 0, u64::MAX)?);
            }
            "ulog-qthreshold" => {
                once(&self.qthreshold, opt)?;
                no_invert(invert, opt)?;
                self.qthreshold = Some(number(args.value()?, 1, 50)? as u8);
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if ctx.family == Family::V6 {
            return Err("ULOG is IPv4 only (ip6tables has no ULOG target; use NFLOG)".into());
        }
        if self.nlgroup == Some(1) {
            self.nlgroup = None;
        }
        if self.qthreshold == Some(1) {
            self.qthreshold = None;
        }
        if self.cprange == Some(0) {
            self.cprange = None;
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(p) = &self.prefix {
            out.push_str(" --ulog-prefix");
            save_string(out, p);
        }
        if let Some(g) = self.nlgroup.filter(|g| *g != 1) {
            out.push_str(&format!(" --ulog-nlgroup {g}"));
        }
        if let Some(r) = self.cprange.filter(|r| *r != 0) {
            out.push_str(&format!(" --ulog-cprange {}", r as u32));
        }
        if let Some(q) = self.qthreshold.filter(|q| *q != 1) {
            out.push_str(&format!(" --ulog-qthreshold {q}"));
        }
    }
}

/// The target logs through ULOG and continues.
impl Effect for Box<Ulog> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::TableName;
    use crate::xt::ext::check_alone;

    fn check(family: Family, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Filter, proto: None };
        check_alone::<Ulog>(ctx, line)
    }

    /// There is no upstream .t spec for ULOG. Ranges as iptables-nft-restore --test 1.8.9 checks
    /// them here; the save form follows libipt_ULOG (the kernel cannot load the target to save it).
    #[test]
    fn options() {
        let c = |l: &str| check(Family::V4, l);
        assert_eq!(c("").unwrap(), "");
        assert_eq!(c("--ulog-nlgroup 1 --ulog-qthreshold 1 --ulog-cprange 0").unwrap(), "");
        assert_eq!(
            c("--ulog-qthreshold 50 --ulog-cprange 100 --ulog-prefix \"a b\" --ulog-nlgroup 32").unwrap(),
            " --ulog-prefix \"a b\" --ulog-nlgroup 32 --ulog-cprange 100 --ulog-qthreshold 50"
        );
        assert_eq!(c(&format!("--ulog-prefix {}", "y".repeat(40))).unwrap(), format!(" --ulog-prefix {}", "y".repeat(31)));
        assert_eq!(c("--ulog-cprange 4294967297").unwrap(), " --ulog-cprange 1");
        for bad in [
            "--ulog-nlgroup 33",
            "--ulog-nlgroup 0",
            "--ulog-qthreshold 51",
            "--ulog-qthreshold 0",
            "--ulog-cprange -1",
            "--ulog-cprange 18446744073709551616",
            "--ulog-nlgroup 2 --ulog-nlgroup 3",
            "! --ulog-nlgroup 2",
        ] {
            assert!(c(bad).is_err(), "{bad}");
        }
        assert!(check(Family::V6, "").is_err());
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Ulog>() <= 40);
    }
}
