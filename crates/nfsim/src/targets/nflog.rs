//! `-j NFLOG`: passes the packet to a userspace logger over nfnetlink_log and continues with the
//! next rule (`xt_NFLOG.c`, `libxt_NFLOG.c`; iptables-nft loads it as nftables' own `log`
//! expression).
//!
//! As iptables-nft 1.8.9 stores and prints it: the prefix is cut to 127 bytes (iptables-legacy:
//! 63), and `--nflog-range`, which never had any effect, is read but dropped (legacy prints it
//! back). Group and threshold print only when not 0.

use serde::Serialize;

use super::dnat::xt_strtoul;
use super::effect::Effect;
use super::log::parse_prefix;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once};
use crate::xt::value::save_string;

/// The NFLOG target (`struct xt_nflog_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Nflog {
    /// `--nflog-prefix` (1 to 127 bytes, no newline).
    pub prefix: Option<Box<str>>,
    /// `--nflog-group`: the netlink group; `None` is group 0.
    pub group: Option<u16>,
    /// `--nflog-threshold`: packets queued in the kernel before sending; `None` is 0.
    pub threshold: Option<u16>,
    /// `--nflog-size`: bytes of each packet copied to userspace (`XT_NFLOG_F_COPY_LEN`).
    pub size: Option<u32>,
    /// `--nflog-range`: accepted for compatibility; it never had any effect and is not printed.
    pub range: Option<u32>,
}

impl Extension for Nflog {
    const OPTIONS: &'static [&'static str] = &["nflog-group", "nflog-prefix", "nflog-range", "nflog-size", "nflog-threshold"];

    fn new(_ctx: &Ctx) -> Self {
        Nflog::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        let number = |s: &str, max: u64| xt_strtoul(s, 0, max).ok_or_else(|| format!("invalid `--{opt}` value `{s}` (expected 0-{max})"));
        match opt {
            "nflog-group" => {
                once(&self.group, opt)?;
                no_invert(invert, opt)?;
                self.group = Some(number(args.value()?, u16::MAX.into())? as u16);
            }
            "nflog-prefix" => {
                once(&self.prefix, opt)?;
                no_invert(invert, opt)?;
                self.prefix = Some(parse_prefix(args.value()?, opt, 127)?);
            }
            "nflog-threshold" => {
                once(&self.threshold, opt)?;
                no_invert(invert, opt)?;
                self.threshold = Some(number(args.value()?, u16::MAX.into())? as u16);
            }
            "nflog-size" | "nflog-range" => {
                let (slot, other) = if opt == "nflog-size" { (&mut self.size, self.range) } else { (&mut self.range, self.size) };
                once(slot, opt)?;
                no_invert(invert, opt)?;
                *slot = Some(number(args.value()?, u32::MAX.into())? as u32);
                if other.is_some() {
                    return Err("`--nflog-size` and `--nflog-range` cannot be used together".into());
                }
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.group == Some(0) {
            self.group = None;
        }
        if self.threshold == Some(0) {
            self.threshold = None;
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(p) = &self.prefix {
            out.push_str(" --nflog-prefix");
            save_string(out, p);
        }
        if let Some(g) = self.group.filter(|g| *g != 0) {
            out.push_str(&format!(" --nflog-group {g}"));
        }
        if let Some(s) = self.size {
            out.push_str(&format!(" --nflog-size {s}"));
        }
        if let Some(t) = self.threshold.filter(|t| *t != 0) {
            out.push_str(&format!(" --nflog-threshold {t}"));
        }
    }
}

/// The target logs through nfnetlink and continues.
impl Effect for Box<Nflog> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<Nflog>(ctx, line)
    }

    /// Every line of libxt_NFLOG.t, with the iptables-nft expectations.
    #[test]
    fn libxt_nflog_t() {
        let same = |l: &str| {
            let want = if l.is_empty() { String::new() } else { format!(" {l}") };
            assert_eq!(check(l), Ok(want), "{l}");
        };
        let fail = |l: &str| assert!(check(l).is_err(), "{l}");
        same("--nflog-group 1");
        same("--nflog-group 65535");
        fail("--nflog-group 65536");
        assert_eq!(check("--nflog-group 0").unwrap(), "");
        // The spec expects these two back only from iptables-legacy (`LEGACY;NOMATCH`);
        // iptables-nft drops the range, as observed here.
        assert_eq!(check("--nflog-range 1").unwrap(), "");
        assert_eq!(check("--nflog-range 4294967295").unwrap(), "");
        fail("--nflog-range 4294967296");
        fail("--nflog-range -1");
        same("--nflog-size 0");
        same("--nflog-size 1");
        same("--nflog-size 4294967295");
        fail("--nflog-size 4294967296");
        fail("--nflog-size -1");
        let x63 = "x".repeat(63);
        same(&format!("--nflog-prefix {x63}"));
        // 64 bytes: legacy cuts to 63, iptables-nft keeps them (the spec's non-legacy `=`).
        let x64 = "x".repeat(64);
        same(&format!("--nflog-prefix {x64}"));
        same("--nflog-threshold 1");
        // The spec's commented-out line: `--nflog-threshold 0` should fail but is accepted.
        assert_eq!(check("--nflog-threshold 0").unwrap(), "");
        same("--nflog-threshold 65535");
        fail("--nflog-threshold 65536");
        same("");
    }

    /// Forms checked against iptables-nft-restore / iptables-save 1.8.9 on this machine.
    #[test]
    fn observed_forms() {
        assert_eq!(check("--nflog-group 0x10").unwrap(), " --nflog-group 16");
        assert_eq!(check("--nflog-group \" 5\"").unwrap(), " --nflog-group 5");
        assert!(check("--nflog-group 5x").is_err());
        assert!(check("--nflog-range 1 --nflog-size 2").is_err());
        assert!(check("--nflog-size 2 --nflog-range 1").is_err());
        assert!(check("--nflog-prefix \"a\nb\"").is_err());
        assert_eq!(
            check("--nflog-threshold 5 --nflog-size 100 --nflog-group 3 --nflog-prefix \"a b\"").unwrap(),
            " --nflog-prefix \"a b\" --nflog-group 3 --nflog-size 100 --nflog-threshold 5"
        );
        let long = "x".repeat(160);
        assert_eq!(check(&format!("--nflog-prefix {long}")).unwrap(), format!(" --nflog-prefix {}", "x".repeat(127)));
        assert!(check("--nflog-group 1 --nflog-group 2").is_err());
        assert!(check("! --nflog-group 1").is_err());
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Nflog>() <= 40);
    }
}
