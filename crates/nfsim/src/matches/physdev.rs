//! `-m physdev`: the bridge ports a bridged packet came in on / goes out of (`xt_physdev.c`,
//! `libxt_physdev.c`).

use std::fmt;

use serde::{Serialize, Serializer};

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, stateless};
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};

/// A bridge port name as `--physdev-in`/`--physdev-out` take it (`xtables_parse_interface`):
/// at most 15 bytes; a trailing `+` matches any name starting with the rest; the empty name
/// matches any port.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortName {
    len: u8,
    name: [u8; 15],
}

impl PortName {
    /// Parses a port name.
    pub fn parse(s: &str) -> Result<PortName, String> {
        if s.len() > 15 {
            return Err(format!("interface name `{s}` must be shorter than IFNAMSIZ (15)"));
        }
        let mut name = [0u8; 15];
        name[..s.len()].copy_from_slice(s.as_bytes());
        Ok(PortName { len: s.len() as u8, name })
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.name[..usize::from(self.len)]).unwrap_or("")
    }

    /// True if the port called `ifname` matches (the kernel's masked name comparison).
    pub fn matches(&self, ifname: &str) -> bool {
        let s = self.as_str();
        match s.strip_suffix('+') {
            Some(prefix) => ifname.starts_with(prefix),
            None if s.is_empty() => true,
            None => ifname == s,
        }
    }
}

impl fmt::Debug for PortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortName({:?})", self.as_str())
    }
}

impl Serialize for PortName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The physdev match; each `bool` of a pair and each `Option<bool>` is the option's `!`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Physdev {
    /// `--physdev-in`: the bridge port the packet entered on.
    pub physdev_in: Option<(PortName, bool)>,
    /// `--physdev-out`: the bridge port the packet leaves by.
    pub physdev_out: Option<(PortName, bool)>,
    /// `--physdev-is-in`: the packet entered through a bridge port.
    pub is_in: Option<bool>,
    /// `--physdev-is-out`: the packet leaves through a bridge port.
    pub is_out: Option<bool>,
    /// `--physdev-is-bridged`: the packet is bridged (not routed).
    pub is_bridged: Option<bool>,
}

impl Physdev {
    /// True when the kernel refuses this match in a chain reachable from the OUTPUT hook: it
    /// tests the output port (`--physdev-out` / `--physdev-is-out`) without requiring a
    /// bridged packet (`--physdev-is-bridged` absent or inverted). EINVAL at load time.
    pub fn refused_from_output_hook(&self) -> bool {
        (self.physdev_out.is_some() || self.is_out.is_some()) && self.is_bridged != Some(false)
    }
}

fn save_port(out: &mut String, opt: &str, slot: Option<(PortName, bool)>) {
    if let Some((p, inv)) = slot {
        save_invert(out, inv);
        out.push_str(" --");
        out.push_str(opt);
        out.push(' ');
        // Printed as is, without quoting (as iptables does).
        out.push_str(p.as_str());
    }
}

fn save_flag(out: &mut String, opt: &str, slot: Option<bool>) {
    if let Some(inv) = slot {
        save_invert(out, inv);
        out.push_str(" --");
        out.push_str(opt);
    }
}

impl Extension for Physdev {
    const OPTIONS: &'static [&'static str] = &["physdev-in", "physdev-out", "physdev-is-in", "physdev-is-out", "physdev-is-bridged"];

    fn new(_ctx: &Ctx) -> Self {
        Physdev::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "physdev-in" => {
                once(&self.physdev_in, opt)?;
                self.physdev_in = Some((PortName::parse(args.value()?)?, invert));
            }
            "physdev-out" => {
                once(&self.physdev_out, opt)?;
                self.physdev_out = Some((PortName::parse(args.value()?)?, invert));
            }
            "physdev-is-in" | "physdev-is-out" | "physdev-is-bridged" => {
                let slot = match opt {
                    "physdev-is-in" => &mut self.is_in,
                    "physdev-is-out" => &mut self.is_out,
                    _ => &mut self.is_bridged,
                };
                once(slot, opt)?;
                *slot = Some(invert);
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if *self == Physdev::default() {
            return Err("the physdev match needs at least one option".to_string());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        save_flag(out, "physdev-is-in", self.is_in);
        save_port(out, "physdev-in", self.physdev_in);
        save_flag(out, "physdev-is-out", self.is_out);
        save_port(out, "physdev-out", self.physdev_out);
        save_flag(out, "physdev-is-bridged", self.is_bridged);
    }
}

impl crate::matches::Evaluate for Physdev {
    /// `physdev_mt`. The simulated host has no bridges, so no packet carries bridge information
    /// (`nf_bridge_info_exists` is false): the match then holds exactly when every option given
    /// is negated (`! --physdev-is-bridged`, `! --physdev-in eth0`, ...).
    fn eval(&self, _pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        let all_inverted = self.is_bridged.is_none_or(|inv| inv)
            && self.is_in.is_none_or(|inv| inv)
            && self.is_out.is_none_or(|inv| inv)
            && self.physdev_in.is_none_or(|(_, inv)| inv)
            && self.physdev_out.is_none_or(|(_, inv)| inv);
        crate::matches::Eval::from_bool(all_inverted)
    }
}

impl Cond for Physdev {
    const READS: Fields = Fields::NONE;

    /// No packet carries bridge information: the answer depends on the options alone.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        stateless(self, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<Physdev>(ctx, line)
    }

    #[test]
    fn size() {
        assert!(std::mem::size_of::<Physdev>() <= 40);
    }

    #[test]
    fn libxt_physdev_t() {
        for l in ["--physdev-in lo", "--physdev-is-in --physdev-in lo", "--physdev-in lo --physdev-is-bridged", "--physdev-out lo --physdev-is-bridged"] {
            assert_eq!(check(l).unwrap(), format!(" {l}"));
        }
        // The commented-out OUTPUT lines of the spec are a hook restriction, checked at load
        // time (see `refused_from_output_hook`).
    }

    /// Save forms printed by the real iptables 1.8.9 (nf_tables) in FORWARD.
    #[test]
    fn iptables_1_8_9_behaviour() {
        let ok = [
            ("--physdev-out eth0", " --physdev-out eth0"),
            (
                "! --physdev-in eth+ ! --physdev-out br0 ! --physdev-is-in ! --physdev-is-out ! --physdev-is-bridged",
                " ! --physdev-is-in ! --physdev-in eth+ ! --physdev-is-out ! --physdev-out br0 ! --physdev-is-bridged",
            ),
            (
                "--physdev-is-bridged --physdev-is-out --physdev-is-in --physdev-out b --physdev-in a",
                " --physdev-is-in --physdev-in a --physdev-is-out --physdev-out b --physdev-is-bridged",
            ),
            ("--physdev-in abcdefghijklmno", " --physdev-in abcdefghijklmno"),
            ("--physdev-in +", " --physdev-in +"),
            ("--physdev-in \"a b\"", " --physdev-in a b"),
            ("--physdev-in a!b", " --physdev-in a!b"),
            ("--physdev-is-in", " --physdev-is-in"),
        ];
        for (i, e) in ok {
            assert_eq!(check(i).as_deref(), Ok(e), "{i}");
        }
        for i in ["", "--physdev-in abcdefghijklmnop", "--physdev-in lo --physdev-in lo", "--physdev-is-in --physdev-is-in"] {
            assert!(check(i).is_err(), "{i}");
        }
        let p = |l: &str| {
            let mut m = Physdev::default();
            let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
            let mut toks = Vec::new();
            crate::xt::token::tokenize(l, 0, &mut toks);
            let mut args = Args::new(&toks, 1, ctx);
            let opt = toks[0].as_str().trim_start_matches('-');
            m.parse(opt, false, &mut args).unwrap();
            m
        };
        // Refused in OUTPUT by the kernel / accepted, as the real tool showed.
        assert!(p("--physdev-out eth0").refused_from_output_hook());
        assert!(p("--physdev-is-out").refused_from_output_hook());
        let mut m = p("--physdev-out eth0");
        m.is_bridged = Some(false);
        assert!(!m.refused_from_output_hook());
        m.is_bridged = Some(true);
        assert!(m.refused_from_output_hook());
        assert!(PortName::parse("").unwrap().matches("eth0"));
        assert!(PortName::parse("eth+").unwrap().matches("eth0"));
        assert!(!PortName::parse("eth").unwrap().matches("eth0"));
    }
}

#[cfg(test)]
mod eval_tests {
    use super::*;
    use crate::host::Host;
    use crate::matches::{Eval, EvalCtx, Evaluate};
    use crate::packet::Packet;
    use crate::xt::ext::parse_alone;
    use crate::xt::{Family, Hook, TableName};

    #[test]
    fn unbridged_packets_match_only_fully_negated_options() {
        let host = Host::new("h");
        let cx = EvalCtx { host: &host, hook: Hook::Forward, table: TableName::Filter, family: Family::V4, conn: None };
        let mut pkt = Packet::new(6, "10.0.0.1".parse().unwrap(), 40000, "10.0.0.2".parse().unwrap(), 80);
        pkt.in_iface = Some("br0".into());
        pkt.out_iface = Some("br0".into());
        for (line, expected) in [
            ("--physdev-is-bridged", Eval::NoMatch),
            ("! --physdev-is-bridged", Eval::Match),
            ("--physdev-in eth0", Eval::NoMatch),
            ("! --physdev-in eth0", Eval::Match),
            ("--physdev-in +", Eval::NoMatch),
            ("--physdev-is-in", Eval::NoMatch),
            ("! --physdev-is-in ! --physdev-is-out", Eval::Match),
            ("! --physdev-out eth1 --physdev-is-bridged", Eval::NoMatch),
            ("! --physdev-out eth1 ! --physdev-is-bridged", Eval::Match),
            ("! --physdev-in eth+ ! --physdev-out br0 ! --physdev-is-in ! --physdev-is-out ! --physdev-is-bridged", Eval::Match),
            ("! --physdev-in eth+ ! --physdev-out br0 ! --physdev-is-in --physdev-is-out ! --physdev-is-bridged", Eval::NoMatch),
        ] {
            let m: Physdev = parse_alone(Ctx { family: Family::V4, table: TableName::Filter, proto: None }, line);
            assert_eq!(m.eval(&pkt, &cx), expected, "{line}");
        }
    }
}
