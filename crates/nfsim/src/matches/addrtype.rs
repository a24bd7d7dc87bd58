//! `-m addrtype`: the routing type of the source or destination address, as the FIB sees it
//! (`xt_addrtype.c` revision 1, `libxt_addrtype.c`).

use serde::Serialize;

use crate::ruleset::ext::{Args, Ctx, Extension, OptResult, no_invert, once, save_invert};
use crate::ruleset::{Family, Hook, HookMask};

/// Route types in bit order (`RTN_*` of `<linux/rtnetlink.h>`): bit `i` of a mask is
/// `ADDR_TYPES[i]`.
pub const ADDR_TYPES: [&str; 12] =
    ["UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE"];

/// A set of route types (bit `i` = [`ADDR_TYPES`]`[i]`) and its inversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AddrTypes {
    /// The types, as the kernel's bit mask.
    pub mask: u16,
    /// `!`.
    pub invert: bool,
}

/// `--limit-iface-in` / `--limit-iface-out`: look the address up only for the packet's own
/// interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitIface {
    /// `--limit-iface-in`: the incoming interface.
    In,
    /// `--limit-iface-out`: the outgoing interface.
    Out,
}

/// The addrtype match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Addrtype {
    /// `--src-type`.
    pub src: Option<AddrTypes>,
    /// `--dst-type`.
    pub dst: Option<AddrTypes>,
    /// `--limit-iface-in` / `--limit-iface-out`.
    pub limit_iface: Option<LimitIface>,
}

impl Addrtype {
    /// The hooks the kernel accepts this match in: `--limit-iface-in` not in OUTPUT and
    /// POSTROUTING, `--limit-iface-out` not in PREROUTING and INPUT.
    pub fn valid_hooks(&self) -> HookMask {
        match self.limit_iface {
            None => HookMask::ALL,
            Some(LimitIface::In) => HookMask::of(&[Hook::Prerouting, Hook::Input, Hook::Forward]),
            Some(LimitIface::Out) => HookMask::of(&[Hook::Forward, Hook::Output, Hook::Postrouting]),
        }
    }
}

/// Parses `TYPE[,TYPE]...`; each type is a case-insensitive prefix of a route type name, the
/// first in [`ADDR_TYPES`] order winning (`U` is UNSPEC).
fn parse_types(s: &str) -> Result<u16, String> {
    let mut mask = 0;
    for item in s.split(',') {
        let bit = ADDR_TYPES
            .iter()
            .position(|name| !item.is_empty() && item.len() <= name.len() && name.as_bytes()[..item.len()].eq_ignore_ascii_case(item.as_bytes()))
            .ok_or_else(|| format!("bad address type `{item}` (expected {})", ADDR_TYPES.join(", ")))?;
        mask |= 1 << bit;
    }
    Ok(mask)
}

fn save_types(out: &mut String, mask: u16) {
    let mut sep = ' ';
    for (i, name) in ADDR_TYPES.iter().enumerate() {
        if mask & (1 << i) != 0 {
            out.push(sep);
            out.push_str(name);
            sep = ',';
        }
    }
}

impl Extension for Addrtype {
    const OPTIONS: &'static [&'static str] = &["src-type", "dst-type", "limit-iface-in", "limit-iface-out"];

    fn new(_ctx: &Ctx) -> Self {
        Addrtype::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "src-type" | "dst-type" => {
                let slot = if opt == "src-type" { &mut self.src } else { &mut self.dst };
                once(slot, opt)?;
                let mask = parse_types(args.value()?)?;
                *slot = Some(AddrTypes { mask, invert });
            }
            "limit-iface-in" | "limit-iface-out" => {
                no_invert(invert, opt)?;
                let limit = if opt == "limit-iface-in" { LimitIface::In } else { LimitIface::Out };
                match self.limit_iface {
                    None => self.limit_iface = Some(limit),
                    Some(l) if l == limit => {
                        return Err(format!("option `--{opt}` may be given only once"));
                    }
                    Some(_) => {
                        return Err("`--limit-iface-in` cannot be used together with `--limit-iface-out`".into());
                    }
                }
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if self.src.is_none() && self.dst.is_none() {
            return Err("the addrtype match requires `--src-type` or `--dst-type`".into());
        }
        if ctx.family == Family::V6 {
            let used = self.src.map_or(0, |t| t.mask) | self.dst.map_or(0, |t| t.mask);
            if used & (1 << 6) != 0 {
                return Err("ip6tables' addrtype cannot match BLACKHOLE".into());
            }
            if used >= 1 << 8 {
                return Err("ip6tables' addrtype cannot match PROHIBIT, THROW, NAT or XRESOLVE".into());
            }
            if used & (1 << 3) != 0 {
                return Err("ip6tables' addrtype cannot match BROADCAST".into());
            }
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        for (name, slot) in [("src-type", self.src), ("dst-type", self.dst)] {
            if let Some(t) = slot {
                save_invert(out, t.invert);
                out.push_str(" --");
                out.push_str(name);
                save_types(out, t.mask);
            }
        }
        match self.limit_iface {
            Some(LimitIface::In) => out.push_str(" --limit-iface-in"),
            Some(LimitIface::Out) => out.push_str(" --limit-iface-out"),
            None => {}
        }
    }
}

impl crate::matches::Evaluate for Addrtype {
    fn eval(&self, _pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        crate::matches::Eval::Unknown("`-m addrtype` is not evaluated yet".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::TableName;
    use crate::ruleset::ext::check_alone;

    fn ctx(family: Family) -> Ctx {
        Ctx { family, table: TableName::Filter, proto: None }
    }

    fn check(line: &str) -> Result<String, String> {
        check_alone::<Addrtype>(ctx(Family::V4), line)
    }

    fn parsed(line: &str) -> Addrtype {
        let c = ctx(Family::V4);
        let mut toks = Vec::new();
        crate::ruleset::token::tokenize(line, 0, &mut toks);
        let mut m = Addrtype::new(&c);
        let mut pos = 0;
        while pos < toks.len() {
            let opt = toks[pos].as_str().trim_start_matches('-').to_string();
            let mut args = crate::ruleset::ext::Args::new(&toks, pos + 1, c);
            m.parse(&opt, false, &mut args).unwrap();
            pos = args.pos();
        }
        m
    }

    /// Every line of iptables' `extensions/libxt_addrtype.t`.
    #[test]
    fn libxt_addrtype_t() {
        assert!(check("").is_err());
        assert!(check("--src-type wrong").is_err());
        for line in ["--src-type UNSPEC", "--dst-type UNSPEC", "--src-type LOCAL --dst-type LOCAL"] {
            assert_eq!(check(line), Ok(format!(" {line}")), "{line}");
        }
        for line in ["--limit-iface-in", "--limit-iface-out", "--limit-iface-in --limit-iface-out", "--src-type LOCAL --limit-iface-in --limit-iface-out"] {
            assert!(check(line).is_err(), "{line}");
        }
        // The `:INPUT` / `:OUTPUT` lines: accepted by the extension, their hooks checked by
        // `valid_hooks` (OUTPUT refuses `--limit-iface-in`, INPUT `--limit-iface-out`).
        for line in [
            "--src-type LOCAL --limit-iface-in",
            "--dst-type LOCAL --limit-iface-in",
            "--src-type LOCAL --limit-iface-out",
            "--dst-type LOCAL --limit-iface-out",
        ] {
            assert_eq!(check(line), Ok(format!(" {line}")), "{line}");
        }
        let input_only = parsed("--src-type LOCAL --limit-iface-in").valid_hooks();
        assert!(input_only.contains(Hook::Input) && !input_only.contains(Hook::Output));
        let output_only = parsed("--dst-type LOCAL --limit-iface-out").valid_hooks();
        assert!(output_only.contains(Hook::Output) && !output_only.contains(Hook::Input));
    }

    /// Values as the real `iptables` / `ip6tables` 1.8.9 read and printed them.
    #[test]
    fn types_like_iptables_1_8_9() {
        for (line, saved) in [
            ("--src-type local,unicast", " --src-type UNICAST,LOCAL"),
            ("--src-type U", " --src-type UNSPEC"),
            ("--src-type UNI,LOC", " --src-type UNICAST,LOCAL"),
            ("! --src-type LOCAL ! --dst-type BROADCAST,MULTICAST", " ! --src-type LOCAL ! --dst-type BROADCAST,MULTICAST"),
            ("--dst-type XRESOLVE,NAT,THROW,PROHIBIT,UNREACHABLE,BLACKHOLE", " --dst-type BLACKHOLE,UNREACHABLE,PROHIBIT,THROW,NAT,XRESOLVE"),
            ("--limit-iface-out --dst-type LOCAL", " --dst-type LOCAL --limit-iface-out"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        for line in [
            "--src-type LOCAL,",
            "--src-type ,LOCAL",
            "--dst-type LOCALX",
            "--src-type LOCAL --src-type UNICAST",
            "--dst-type LOCAL --limit-iface-in --limit-iface-in",
            "--dst-type LOCAL ! --limit-iface-in",
        ] {
            assert!(check(line).is_err(), "{line}");
        }
        let v6 = |line| check_alone::<Addrtype>(ctx(Family::V6), line);
        assert_eq!(v6("--src-type LOCAL").as_deref(), Ok(" --src-type LOCAL"));
        assert!(v6("--src-type UNREACHABLE,MULTICAST,ANYCAST,UNICAST,UNSPEC").is_ok());
        for line in ["--src-type BROADCAST", "--src-type BLACKHOLE", "--src-type PROHIBIT", "--dst-type XRESOLVE"] {
            assert!(v6(line).is_err(), "{line}");
        }
    }
}
