//! `-j LOG`: logs the packet to the kernel log and continues with the next rule (`xt_LOG.c` /
//! `nf_log_syslog.c`, `libxt_LOG.c`).
//!
//! `--log-level` takes a number 0-7 (as `strtoul` reads it: `0x7`, `07`) or one of the syslog
//! names `emerg`, `alert`, `crit`, `error`, `warning`, `notice`, `info`, `debug`, `panic` (exact
//! case; `err` is refused); iptables-save prints the number, and nothing for the default, 4.
//! `--log-prefix` must not be empty or hold a newline, and is cut to 29 bytes. The kernel
//! accepts the target in every table and hook.

use serde::Serialize;

use super::dnat::{set_flag, xt_strtoul};
use super::effect::Effect;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once};
use crate::xt::value::save_string;

/// The level iptables uses when `--log-level` is not given (`LOG_WARNING`).
pub const DEFAULT_LEVEL: u8 = 4;

/// The syslog level names `--log-level` accepts, with their numbers.
const LEVEL_NAMES: &[(&str, u8)] =
    &[("alert", 1), ("crit", 2), ("debug", 7), ("emerg", 0), ("error", 3), ("info", 6), ("notice", 5), ("panic", 0), ("warning", 4)];

/// The LOG target (`struct xt_log_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Log {
    /// `--log-level`, 0-7; `None` is the default, [`DEFAULT_LEVEL`].
    pub level: Option<u8>,
    /// `--log-prefix` (1 to 29 bytes, no newline).
    pub prefix: Option<Box<str>>,
    /// `--log-tcp-sequence` (`XT_LOG_TCPSEQ`).
    pub tcp_sequence: bool,
    /// `--log-tcp-options` (`XT_LOG_TCPOPT`).
    pub tcp_options: bool,
    /// `--log-ip-options` (`XT_LOG_IPOPT`).
    pub ip_options: bool,
    /// `--log-uid` (`XT_LOG_UID`).
    pub uid: bool,
    /// `--log-macdecode` (`XT_LOG_MACDECODE`).
    pub macdecode: bool,
}

impl Log {
    /// The syslog level messages are logged at.
    pub fn level(&self) -> u8 {
        self.level.unwrap_or(DEFAULT_LEVEL)
    }
}

impl Extension for Log {
    const OPTIONS: &'static [&'static str] = &["log-level", "log-prefix", "log-tcp-sequence", "log-tcp-options", "log-ip-options", "log-uid", "log-macdecode"];

    fn new(_ctx: &Ctx) -> Self {
        Log::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "log-level" => {
                once(&self.level, opt)?;
                no_invert(invert, opt)?;
                self.level = Some(parse_level(args.value()?)?);
            }
            "log-prefix" => {
                once(&self.prefix, opt)?;
                no_invert(invert, opt)?;
                self.prefix = Some(parse_prefix(args.value()?, opt, 29)?);
            }
            _ => {
                let slot = match opt {
                    "log-tcp-sequence" => &mut self.tcp_sequence,
                    "log-tcp-options" => &mut self.tcp_options,
                    "log-ip-options" => &mut self.ip_options,
                    "log-uid" => &mut self.uid,
                    "log-macdecode" => &mut self.macdecode,
                    _ => return Err(format!("unknown option `--{opt}`")),
                };
                set_flag(slot, opt)?;
                no_invert(invert, opt)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.level == Some(DEFAULT_LEVEL) {
            self.level = None;
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(p) = &self.prefix {
            out.push_str(" --log-prefix");
            save_string(out, p);
        }
        if self.level() != DEFAULT_LEVEL {
            out.push_str(&format!(" --log-level {}", self.level()));
        }
        for (on, opt) in [
            (self.tcp_sequence, " --log-tcp-sequence"),
            (self.tcp_options, " --log-tcp-options"),
            (self.ip_options, " --log-ip-options"),
            (self.uid, " --log-uid"),
            (self.macdecode, " --log-macdecode"),
        ] {
            if on {
                out.push_str(opt);
            }
        }
    }
}

/// A syslog level as `XTTYPE_SYSLOGLEVEL` reads it.
fn parse_level(s: &str) -> Result<u8, String> {
    if let Some(n) = xt_strtoul(s, 0, 7) {
        return Ok(n as u8);
    }
    LEVEL_NAMES
        .iter()
        .find(|(name, _)| *name == s)
        .map(|&(_, n)| n)
        .ok_or_else(|| format!("unknown log level `{s}` (expected 0-7 or emerg, alert, crit, error, warning, notice, info, debug)"))
}

/// A log prefix as the LOG-like targets take it: not empty, no newline, cut to `max` bytes (at
/// a character boundary; iptables cuts bytes).
pub(crate) fn parse_prefix(s: &str, opt: &str, max: usize) -> Result<Box<str>, String> {
    if s.is_empty() {
        return Err(format!("`--{opt}` must not be empty"));
    }
    if s.contains('\n') {
        return Err(format!("newlines are not allowed in `--{opt}`"));
    }
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Ok(s[..end].into())
}

/// The target logs and continues.
impl Effect for Log {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(family: Family, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Filter, proto: None };
        check_alone::<Log>(ctx, line)
    }

    /// Every line of libipt_LOG.t and libip6t_LOG.t (they are the same).
    #[test]
    fn upstream_specs() {
        for f in [Family::V4, Family::V6] {
            let same = |l: &str| {
                let want = if l.is_empty() { String::new() } else { format!(" {l}") };
                assert_eq!(check(f, l), Ok(want), "{l}");
            };
            same("");
            same("--log-prefix \"test: \"");
            same("--log-prefix \"test: \" --log-level 1");
            assert_eq!(check(f, "--log-prefix \"test: \" --log-level alert").unwrap(), " --log-prefix \"test: \" --log-level 1");
            same("--log-prefix \"test: \" --log-tcp-sequence");
            same("--log-prefix \"test: \" --log-tcp-options");
            same("--log-prefix \"test: \" --log-ip-options");
            same("--log-prefix \"test: \" --log-uid");
            assert!(check(f, "--log-prefix \"test: \" --log-level bad").is_err());
            assert!(check(f, "--log-prefix").is_err());
        }
    }

    /// Forms checked against iptables-nft-restore / iptables-save 1.8.9 on this machine.
    #[test]
    fn observed_forms() {
        let c = |l: &str| check(Family::V4, l);
        assert_eq!(c("--log-level 4").unwrap(), "");
        assert_eq!(c("--log-level warning").unwrap(), "");
        assert_eq!(c("--log-level error").unwrap(), " --log-level 3");
        assert_eq!(c("--log-level panic").unwrap(), " --log-level 0");
        assert_eq!(c("--log-level 0x7").unwrap(), " --log-level 7");
        assert_eq!(c("--log-level 07").unwrap(), " --log-level 7");
        assert_eq!(c("--log-level \" 3\"").unwrap(), " --log-level 3");
        for bad in ["err", "8", "ALERT", "-1"] {
            assert!(c(&format!("--log-level {bad}")).is_err(), "{bad}");
        }
        assert_eq!(c("--log-prefix abcdefghijklmnopqrstuvwxyz0123456789").unwrap(), " --log-prefix abcdefghijklmnopqrstuvwxyz012");
        assert_eq!(c(r#"--log-prefix "it's \"q\"""#).unwrap(), r#" --log-prefix "it\'s \"q\"""#);
        assert_eq!(
            c("--log-macdecode --log-uid --log-ip-options --log-tcp-options --log-tcp-sequence --log-level 7 --log-prefix x").unwrap(),
            " --log-prefix x --log-level 7 --log-tcp-sequence --log-tcp-options --log-ip-options --log-uid --log-macdecode"
        );
        assert_eq!(c("--log-tcp-seq --log-p foo").unwrap(), " --log-prefix foo --log-tcp-sequence");
        assert!(c("--log-uid --log-uid").is_err());
        assert!(c("! --log-uid").is_err());
        assert!(c("--log-level 1 --log-level 2").is_err());
        assert!(parse_prefix("", "log-prefix", 29).is_err());
        assert!(parse_prefix("a\nb", "log-prefix", 29).is_err());
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Log>() <= 40);
    }
}
