//! `-j CT`: sets up the conntrack entry of a connection before it is tracked: no tracking, a
//! helper, a timeout policy, event masks, a zone (`xt_CT.c`, `libxt_CT.c` revision 2).
//!
//! iptables-save prints the options in the order `--notrack --helper --timeout --ctevents
//! --expevents --zone`, event lists in table order (`--ctevents mark,new` prints
//! `--ctevents new,mark`), zone 0 not at all, and the zone direction only when exactly one of
//! `--zone-orig` / `--zone-reply` was given. The zone options combine as libxtables combines
//! them: the last number wins, `mark` sticks once given, and giving both directions means both.
//!
//! Like libxtables, a helper name longer than 15 bytes and a timeout policy name longer than 31
//! are cut silently. Whether the helper or policy exists is the kernel's business and not
//! checked. Kernels without the fix "netfilter: xt_CT: fix timeout policy name copied to
//! userspace" (6.18.44 still lacks it) hand only the first 4 bytes of the policy name back, so
//! iptables-save prints `--timeout mypolicy` as `--timeout mypo`; the rule itself uses the whole
//! name, and so does this model, which prints it whole. The kernel accepts the target in the raw table only; `-j NOTRACK` is
//! [`Notrack`](super::notrack::Notrack), a distinct target that saves as itself.

use serde::Serialize;

use super::effect::{Applied, Cx, Effect, go};
use super::mark::{Given, save_word};
use crate::stack::Domain;
use crate::xt::ext::{Args, Ctx, Extension, OptResult};
use crate::xt::value::parse_c_number;

/// The conntrack events `--ctevents` names, with their `IPCT_*` bit, in the order iptables
/// prints them.
pub const CT_EVENTS: [(&str, u8); 10] =
    [("new", 0), ("related", 1), ("destroy", 2), ("reply", 3), ("assured", 4), ("protoinfo", 5), ("helper", 6), ("mark", 7), ("natseqinfo", 8), ("secmark", 9)];

/// The expectation events `--expevents` names, with their `IPEXP_*` bit.
pub const EXP_EVENTS: [(&str, u8); 1] = [("new", 0)];

/// Longest helper name kept (`sizeof(xt_ct_target_info_v1.helper) - 1`).
const HELPER_MAX: usize = 15;
/// Longest timeout policy name kept (`sizeof(xt_ct_target_info_v1.timeout) - 1`).
const TIMEOUT_MAX: usize = 31;

/// The conntrack zone of `--zone`, `--zone-orig` or `--zone-reply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CtZone {
    /// The zone.
    pub id: ZoneId,
    /// Which direction's tuple is looked up in the zone.
    pub dir: ZoneDir,
}

/// A zone number, or the packet's nfmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneId {
    /// A fixed zone (never 0 in a finished target: zone 0 is the default and is dropped).
    Id(u16),
    /// `mark`: the zone is the packet's nfmark (`XT_CT_ZONE_MARK`).
    Mark,
}

/// Direction a zone applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneDir {
    /// `--zone`: both directions.
    Both,
    /// `--zone-orig`: the original direction only (`XT_CT_ZONE_DIR_ORIG`).
    Orig,
    /// `--zone-reply`: the reply direction only (`XT_CT_ZONE_DIR_REPL`).
    Reply,
}

/// The CT target (`struct xt_ct_target_info_v1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ct {
    /// `--notrack`: the connection is not tracked (`XT_CT_NOTRACK`).
    pub notrack: bool,
    /// `--helper NAME`: the conntrack helper assigned to the connection.
    pub helper: Option<Box<str>>,
    /// `--timeout NAME`: the timeout policy (made with `nfct timeout add`).
    pub timeout: Option<Box<str>>,
    /// `--ctevents`: conntrack events generated, bit `IPCT_*` per event (see [`CT_EVENTS`]).
    pub ct_events: u32,
    /// `--expevents`: expectation events generated (see [`EXP_EVENTS`]).
    pub exp_events: u32,
    /// The zone, when not the default zone 0.
    pub zone: Option<CtZone>,
    #[serde(skip)]
    given: Given,
}

fn parse_events(table: &[(&str, u8)], list: &str) -> Result<u32, String> {
    let mut mask = 0;
    for name in list.split(',') {
        let bit = table.iter().find(|(n, _)| *n == name).map(|&(_, b)| b).ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            format!("unknown event type `{name}` (expected a comma-separated list of {})", names.join(", "))
        })?;
        mask |= 1 << bit;
    }
    Ok(mask)
}

fn save_events(out: &mut String, opt: &str, table: &[(&str, u8)], mask: u32) {
    out.push_str(" --");
    out.push_str(opt);
    let mut sep = ' ';
    for (name, bit) in table {
        if mask & (1 << bit) != 0 {
            out.push(sep);
            out.push_str(name);
            sep = ',';
        }
    }
}

/// `s` cut to at most `max` bytes, as `strncpy` into a fixed buffer cuts it (never inside a
/// UTF-8 character).
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A zone number as `ct_parse_zone_id` reads it (`strtoul` base 0, leading blanks allowed).
fn parse_zone_id(s: &str) -> Result<u16, String> {
    parse_c_number(s.trim_start_matches([' ', '\t', '\n']))
        .filter(|v| *v <= u16::MAX.into())
        .map(|v| v as u16)
        .ok_or_else(|| format!("cannot parse `{s}` as a zone ID (expected 0..=65535 or `mark`)"))
}

impl Extension for Ct {
    const OPTIONS: &'static [&'static str] = &["notrack", "helper", "timeout", "ctevents", "expevents", "zone-orig", "zone-reply", "zone"];

    fn new(_ctx: &Ctx) -> Self {
        Ct::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        self.given.record(Self::OPTIONS, opt, invert, &[])?;
        match opt {
            "notrack" => self.notrack = true,
            "helper" => {
                let name = truncate(args.value()?, HELPER_MAX);
                self.helper = (!name.is_empty()).then(|| name.into());
            }
            "timeout" => {
                let name = truncate(args.value()?, TIMEOUT_MAX);
                self.timeout = (!name.is_empty()).then(|| name.into());
            }
            "ctevents" => self.ct_events = parse_events(&CT_EVENTS, args.value()?)?,
            "expevents" => self.exp_events = parse_events(&EXP_EVENTS, args.value()?)?,
            "zone" | "zone-orig" | "zone-reply" => {
                let arg = args.value()?;
                let mark = arg.eq_ignore_ascii_case("mark");
                let number = if mark { 0 } else { parse_zone_id(arg)? };
                // The mark flag, once set, stays; the number is replaced each time.
                let id = match self.zone {
                    Some(CtZone { id: ZoneId::Mark, .. }) => ZoneId::Mark,
                    _ if mark => ZoneId::Mark,
                    _ => ZoneId::Id(number),
                };
                // The direction flags add up; both of them mean both directions.
                let orig = self.given.has(Self::OPTIONS, "zone-orig");
                let reply = self.given.has(Self::OPTIONS, "zone-reply");
                let dir = match (orig, reply) {
                    (true, false) => ZoneDir::Orig,
                    (false, true) => ZoneDir::Reply,
                    _ => ZoneDir::Both,
                };
                self.zone = Some(CtZone { id, dir });
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        // Zone 0 is the default zone, whatever the direction; iptables-save does not print it.
        if let Some(CtZone { id: ZoneId::Id(0), .. }) = self.zone {
            self.zone = None;
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if self.notrack {
            out.push_str(" --notrack");
        }
        if let Some(h) = &self.helper {
            out.push_str(" --helper");
            save_word(out, h);
        }
        if let Some(t) = &self.timeout {
            out.push_str(" --timeout");
            save_word(out, t);
        }
        if self.ct_events != 0 {
            save_events(out, "ctevents", &CT_EVENTS, self.ct_events);
        }
        if self.exp_events != 0 {
            save_events(out, "expevents", &EXP_EVENTS, self.exp_events);
        }
        if let Some(zone) = self.zone {
            out.push_str(match zone.dir {
                ZoneDir::Both => " --zone",
                ZoneDir::Orig => " --zone-orig",
                ZoneDir::Reply => " --zone-reply",
            });
            match zone.id {
                ZoneId::Id(n) => out.push_str(&format!(" {n}")),
                ZoneId::Mark => out.push_str(" mark"),
            }
        }
    }
}

/// `xt_ct_target`: `--notrack` makes a packet without a conntrack entry (INVALID in raw)
/// untracked; one looped back on lo keeps the entry it got on the way out
/// (`if (skb->_nfct != 0) return XT_CONTINUE`). Zones, helpers and timeouts change nothing the
/// model sees.
impl Effect for Box<Ct> {
    fn effect<'a, D: Domain<'a>>(&self, d: &mut D, st: D::State, _: &Cx<'_, 'a, D>) -> Applied<D::State> {
        if !self.notrack {
            return go(st);
        }
        super::effect::untrack(d, st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Raw, proto: None };
        check_alone::<Ct>(ctx, line)
    }

    // Expected forms are what iptables-save v1.8.9 (nf_tables) printed for the same rules.
    #[test]
    fn save_forms() {
        for same in [
            "",
            " --notrack",
            " --notrack --zone 3",
            " --zone 65535",
            " --zone mark",
            " --zone-orig 5",
            " --zone-reply 5",
            " --zone-orig mark",
            " --ctevents new,related,destroy,reply,assured,protoinfo,helper,mark",
            " --ctevents natseqinfo,secmark",
            " --expevents new",
            " --notrack --helper ftp --ctevents new --expevents new --zone 4",
            " --notrack --helper Q.931",
        ] {
            assert_eq!(check(same).unwrap(), same);
        }
        assert_eq!(check("--helper ftp --notrack").unwrap(), " --notrack --helper ftp");
        assert_eq!(check("--zone 0").unwrap(), "");
        assert_eq!(check("--zone-reply 0").unwrap(), "");
        assert_eq!(check("--zone 0x10").unwrap(), " --zone 16");
        assert_eq!(check("--zone MARK").unwrap(), " --zone mark");
        assert_eq!(check("--ctevents mark,new").unwrap(), " --ctevents new,mark");
        assert_eq!(check("--ctevents new,new").unwrap(), " --ctevents new");
        assert_eq!(check("--timeout x --helper y").unwrap(), " --helper y --timeout x");
    }

    #[test]
    fn zone_options_combine() {
        assert_eq!(check("--zone-orig 1 --zone-reply 2").unwrap(), " --zone 2");
        assert_eq!(check("--zone-orig 1 --zone 2").unwrap(), " --zone-orig 2");
        assert_eq!(check("--zone mark --zone-orig 3").unwrap(), " --zone-orig mark");
        assert_eq!(check("--zone-reply mark --zone 0").unwrap(), " --zone-reply mark");
        assert_eq!(check("--zone-orig 5 --zone-reply mark").unwrap(), " --zone mark");
        assert_eq!(check("--zone 5 --zone-orig 0 --zone-reply 7").unwrap(), " --zone 7");
        assert_eq!(check("--zone 5 --zone-orig 0").unwrap(), "");
    }

    #[test]
    fn names_are_cut_like_strncpy() {
        assert_eq!(check("--notrack --helper 0123456789abcdef").unwrap(), " --notrack --helper 0123456789abcde");
        assert_eq!(check("--timeout 0123456789abcdef0123456789abcdef").unwrap(), " --timeout 0123456789abcdef0123456789abcde");
        assert_eq!(check(r#"--helper "a b""#).unwrap(), r#" --helper "a b""#);
    }

    #[test]
    fn refuses_what_iptables_refuses() {
        for bad in [
            "--zone 2 --zone 3",
            "--zone -1",
            "--zone 65536",
            "--zone 5x",
            "--ctevents NEW",
            "--ctevents new,",
            "--expevents related",
            "--notrack --notrack",
            "! --notrack",
            "--helper",
        ] {
            assert!(check(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
