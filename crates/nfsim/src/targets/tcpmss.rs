//! `-j TCPMSS`: rewrites the MSS option of TCP SYN segments (`xt_TCPMSS.c`, `libxt_TCPMSS.c`).
//!
//! `--set-mss N` (at most 65515 for IPv4, 65495 for IPv6: 65535 less the IP header) or
//! `--clamp-mss-to-pmtu` (stored as MSS 0xffff). The two do not exclude each other: the last one
//! given wins, as in libxtables.
//!
//! Kernel constraints (`tcpmss_tg4_check`): the rule must have `-p tcp` (not negated); with
//! `--clamp-mss-to-pmtu` it is only accepted in FORWARD, OUTPUT and POSTROUTING. The legacy
//! backend also demands a `--tcp-flags` match on SYN; the nft backend does not.

use serde::Serialize;

use super::effect::Effect;
use super::mark::Given;
use crate::xt::Family;
use crate::xt::ext::{Args, Ctx, Extension, OptResult};
use crate::xt::value::parse_uint;

/// What the target writes into the MSS option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TcpmssAction {
    /// `--set-mss N`: this value, when the segment's MSS is larger.
    SetMss(u16),
    /// `--clamp-mss-to-pmtu`: the path MTU less the IP and TCP headers.
    ClampMssToPmtu,
}

/// The TCPMSS target (`struct xt_tcpmss_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tcpmss {
    /// The action (always set in a finished target).
    pub action: Option<TcpmssAction>,
    #[serde(skip)]
    given: Given,
}

impl Extension for Tcpmss {
    const OPTIONS: &'static [&'static str] = &["set-mss", "clamp-mss-to-pmtu"];

    fn new(_ctx: &Ctx) -> Self {
        Tcpmss::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        self.given.record(Self::OPTIONS, opt, invert, &[])?;
        self.action = Some(match opt {
            "set-mss" => {
                // 65535 less `sizeof(struct iphdr)` or `sizeof(struct ip6_hdr)`.
                let max = match args.ctx().family {
                    Family::V4 => 65535 - 20,
                    Family::V6 => 65535 - 40,
                };
                TcpmssAction::SetMss(parse_uint(args.value()?, 0, max)? as u16)
            }
            _ => TcpmssAction::ClampMssToPmtu,
        });
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.action.is_none() {
            return Err("the TCPMSS target requires `--set-mss VALUE` or `--clamp-mss-to-pmtu`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        match self.action {
            Some(TcpmssAction::SetMss(n)) => out.push_str(&format!(" --set-mss {n}")),
            Some(TcpmssAction::ClampMssToPmtu) => out.push_str(" --clamp-mss-to-pmtu"),
            None => {}
        }
    }
}

/// The target clamps the MSS option, which the model does not carry, and continues.
impl Effect for Tcpmss {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Neg, Proto, TableName};

    fn check(family: Family, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Mangle, proto: Some(Neg::new(Proto::TCP, false)) };
        check_alone::<Tcpmss>(ctx, line)
    }

    // Expected forms are what iptables-save v1.8.9 (nf_tables) printed for the same rules.
    #[test]
    fn save_forms() {
        let v4 = |l| check(Family::V4, l);
        assert_eq!(v4("--set-mss 42").unwrap(), " --set-mss 42");
        assert_eq!(v4("--set-mss 0").unwrap(), " --set-mss 0");
        assert_eq!(v4("--clamp-mss-to-pmtu").unwrap(), " --clamp-mss-to-pmtu");
        assert_eq!(v4("--clamp-mss-to-pmtu --set-mss 42").unwrap(), " --set-mss 42");
        assert_eq!(v4("--set-mss 42 --clamp-mss-to-pmtu").unwrap(), " --clamp-mss-to-pmtu");
        assert_eq!(v4("--set-mss 65515").unwrap(), " --set-mss 65515");
        assert_eq!(check(Family::V6, "--set-mss 65495").unwrap(), " --set-mss 65495");
    }

    #[test]
    fn refuses_what_iptables_refuses() {
        assert!(check(Family::V4, "").is_err());
        assert!(check(Family::V4, "--set-mss 65516").is_err());
        assert!(check(Family::V6, "--set-mss 65496").is_err());
        assert!(check(Family::V4, "--set-mss 42 --set-mss 43").is_err());
        assert!(check(Family::V4, "! --set-mss 42").is_err());
    }
}
