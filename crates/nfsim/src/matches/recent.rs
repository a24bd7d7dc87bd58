//! `-m recent`: per-name lists of recently seen addresses, checked or updated by each rule
//! (`xt_recent.c`, `libxt_recent.c` revision 1).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::conntrack::{fmt_addr, parse_host};
use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, stateless};
use crate::xt::Family;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once};

/// `XT_RECENT_NAME_LEN`: list names are cut to 199 bytes.
const NAME_MAX: usize = 199;
/// `XT_RECENT_MAX_NSTAMPS`: the kernel refuses a `--hitcount` of this or more.
const MAX_HITCOUNT: u32 = 65536;

/// What the rule does with the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecentCommand {
    /// `--set`: add (or refresh) the address; always matches.
    Set,
    /// `--rcheck`: match if the address is in the list.
    Rcheck,
    /// `--update`: like `--rcheck`, and refresh the last-seen time.
    Update,
    /// `--remove`: match if present, and remove it.
    Remove,
}

impl RecentCommand {
    fn option(self) -> &'static str {
        match self {
            RecentCommand::Set => "set",
            RecentCommand::Rcheck => "rcheck",
            RecentCommand::Update => "update",
            RecentCommand::Remove => "remove",
        }
    }
}

/// Which address of the packet is recorded / looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecentSide {
    /// `--rsource` (default).
    Source,
    /// `--rdest`.
    Dest,
}

/// The options of a recent match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecentInfo {
    /// `--set` / `--rcheck` / `--update` / `--remove` (exactly one is required).
    pub command: Option<RecentCommand>,
    /// `!` (on the command): the match result is inverted.
    pub invert: bool,
    /// `--seconds`: only entries seen within this many seconds count.
    pub seconds: Option<u32>,
    /// `--reap`: purge entries older than `--seconds`.
    pub reap: bool,
    /// `--hitcount`: at least this many hits are needed (0 = not given).
    pub hitcount: u32,
    /// `--rttl`: the TTL must equal the one recorded.
    pub rttl: bool,
    /// `--name` (default `DEFAULT`).
    pub name: Box<str>,
    /// `--rsource` / `--rdest` (the last one given wins).
    pub side: RecentSide,
    /// `--mask`: applied to the address before it is recorded or looked up.
    pub mask: IpAddr,
    #[serde(skip)]
    seen: u8,
}

const SEEN_NAME: u8 = 1;
const SEEN_RSOURCE: u8 = 2;
const SEEN_RDEST: u8 = 4;
const SEEN_MASK: u8 = 8;

/// The recent match (boxed: it is large).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Recent {
    /// The options.
    pub info: Box<RecentInfo>,
}

impl Recent {
    /// The list the rule uses.
    pub fn name(&self) -> &str {
        &self.info.name
    }
}

fn flag(slot: &mut bool, opt: &str) -> OptResult {
    if *slot {
        return Err(format!("option `--{opt}` may be given only once"));
    }
    *slot = true;
    Ok(())
}

fn seen_once(seen: &mut u8, bit: u8, opt: &str) -> OptResult {
    if *seen & bit != 0 {
        return Err(format!("option `--{opt}` may be given only once"));
    }
    *seen |= bit;
    Ok(())
}

impl Extension for Recent {
    const OPTIONS: &'static [&'static str] = &["set", "rcheck", "update", "remove", "seconds", "reap", "hitcount", "rttl", "name", "rsource", "rdest", "mask"];

    fn new(ctx: &Ctx) -> Self {
        Recent {
            info: Box::new(RecentInfo {
                command: None,
                invert: false,
                seconds: None,
                reap: false,
                hitcount: 0,
                rttl: false,
                name: "DEFAULT".into(),
                side: RecentSide::Source,
                mask: match ctx.family {
                    Family::V4 => IpAddr::V4(Ipv4Addr::BROADCAST),
                    Family::V6 => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
                },
                seen: 0,
            }),
        }
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        let family = args.ctx().family;
        let i = &mut *self.info;
        match opt {
            "set" | "rcheck" | "update" | "remove" => {
                let cmd = match opt {
                    "set" => RecentCommand::Set,
                    "rcheck" => RecentCommand::Rcheck,
                    "update" => RecentCommand::Update,
                    _ => RecentCommand::Remove,
                };
                if let Some(prev) = i.command {
                    return Err(format!("option `--{opt}` cannot be used together with `--{}`", prev.option()));
                }
                i.command = Some(cmd);
                i.invert = invert;
            }
            "seconds" => {
                no_invert(invert, opt)?;
                once(&i.seconds, opt)?;
                let s = args.value()?;
                i.seconds = Some(crate::xt::value::parse_uint(s, 1, u64::from(u32::MAX))? as u32);
            }
            "reap" => {
                no_invert(invert, opt)?;
                flag(&mut i.reap, opt)?;
            }
            "hitcount" => {
                no_invert(invert, opt)?;
                if i.hitcount != 0 {
                    return Err("option `--hitcount` may be given only once".to_string());
                }
                i.hitcount = crate::xt::value::parse_uint(args.value()?, 0, u64::from(u32::MAX))? as u32;
            }
            "rttl" => {
                no_invert(invert, opt)?;
                flag(&mut i.rttl, opt)?;
            }
            "name" => {
                no_invert(invert, opt)?;
                seen_once(&mut i.seen, SEEN_NAME, opt)?;
                let mut name = args.value()?;
                if name.len() > NAME_MAX {
                    let mut end = NAME_MAX;
                    while !name.is_char_boundary(end) {
                        end -= 1;
                    }
                    name = &name[..end];
                }
                if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                    return Err(format!("recent list name `{name}` is refused by the kernel (it must be non-empty, not `.` or `..`, and without `/`)"));
                }
                i.name = name.into();
            }
            "rsource" | "rdest" => {
                no_invert(invert, opt)?;
                let (bit, side) = if opt == "rsource" { (SEEN_RSOURCE, RecentSide::Source) } else { (SEEN_RDEST, RecentSide::Dest) };
                seen_once(&mut i.seen, bit, opt)?;
                i.side = side;
            }
            "mask" => {
                no_invert(invert, opt)?;
                seen_once(&mut i.seen, SEEN_MASK, opt)?;
                i.mask = parse_host(args.value()?, family)?;
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        let i = &*self.info;
        let Some(cmd) = i.command else {
            return Err("the recent match needs one of `--set`, `--rcheck`, `--update` or `--remove`".to_string());
        };
        if i.reap && i.seconds.is_none() {
            return Err("option `--reap` also requires `--seconds`".to_string());
        }
        let setlike = matches!(cmd, RecentCommand::Set | RecentCommand::Remove);
        if setlike && i.rttl {
            return Err(format!("option `--rttl` cannot be used together with `--{}`", cmd.option()));
        }
        // The kernel's checkentry refuses these (EINVAL).
        if setlike && (i.seconds.is_some() || i.hitcount != 0 || i.reap) {
            return Err(format!("`--seconds`, `--hitcount` and `--reap` cannot be used with `--{}` (the kernel refuses the rule)", cmd.option()));
        }
        if i.hitcount >= MAX_HITCOUNT {
            return Err(format!("`--hitcount {}` is refused by the kernel (at most {})", i.hitcount, MAX_HITCOUNT - 1));
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        let i = &*self.info;
        if i.invert {
            out.push_str(" !");
        }
        if let Some(cmd) = i.command {
            let _ = write!(out, " --{}", cmd.option());
        }
        if let Some(s) = i.seconds {
            // iptables 1.8.9 prints the seconds with `%d`.
            let _ = write!(out, " --seconds {}", s as i32);
        }
        if i.reap {
            out.push_str(" --reap");
        }
        if i.hitcount != 0 {
            let _ = write!(out, " --hitcount {}", i.hitcount);
        }
        if i.rttl {
            out.push_str(" --rttl");
        }
        // Printed as is, without quoting (as iptables does).
        out.push_str(" --name ");
        out.push_str(&i.name);
        out.push_str(" --mask ");
        fmt_addr(out, i.mask);
        out.push_str(match i.side {
            RecentSide::Source => " --rsource",
            RecentSide::Dest => " --rdest",
        });
    }
}

impl crate::matches::Evaluate for Recent {
    /// `recent_mt`. `--set` records the address and always matches (`! --set` never does).
    /// `--rcheck`, `--update` and `--remove` depend on the list's contents, built by earlier
    /// packets (and on their times for `--seconds` / `--hitcount`): unknown.
    fn eval(&self, _pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let i = &*self.info;
        match i.command {
            Some(RecentCommand::Set) => Eval::Match.invert(i.invert),
            Some(c) => {
                let side = match i.side {
                    RecentSide::Source => "source",
                    RecentSide::Dest => "destination",
                };
                Eval::Unknown(format!("`-m recent --{} --name {}` depends on whether earlier packets put this {side} address on the list", c.option(), i.name))
            }
            None => Eval::Unknown("`-m recent` without a command".to_string()),
        }
    }
}

impl Cond for Recent {
    const READS: Fields = Fields::NONE;

    /// The model answers from the command alone (`--set` matches, the others are unknown).
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        stateless(self, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::TableName;
    use crate::xt::ext::check_alone;

    fn check_in(family: Family, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Filter, proto: None };
        check_alone::<Recent>(ctx, line)
    }

    fn check(line: &str) -> Result<String, String> {
        check_in(Family::V4, line)
    }

    #[test]
    fn size() {
        assert!(std::mem::size_of::<Recent>() <= 40);
    }

    #[test]
    fn libipt_and_libip6t_recent_t() {
        for (family, mask) in [(Family::V4, "255.255.255.255"), (Family::V6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")] {
            let c = |l: &str| check_in(family, l);
            assert_eq!(c("--set").unwrap(), format!(" --set --name DEFAULT --mask {mask} --rsource"));
            for n in [8, 12] {
                let l = format!("--rcheck --hitcount {n} --name foo --mask {mask} --rsource");
                assert_eq!(c(&l).unwrap(), format!(" {l}"));
            }
            assert_eq!(c("--update --rttl").unwrap(), format!(" --update --rttl --name DEFAULT --mask {mask} --rsource"));
            assert!(c(&format!("--rcheck --hitcount 65536 --name foo --mask {mask} --rsource")).is_err());
            // The "nonsensical" lines are two recent matches in one rule; each one alone:
            for n in [3, 4, 8, 12] {
                let l = format!("--rcheck --hitcount {n} --name foo --mask {mask} --rsource");
                assert_eq!(c(&l).unwrap(), format!(" {l}"));
            }
        }
    }

    #[test]
    fn libxt_recent_t() {
        assert!(check("--set --rttl").is_err());
    }

    /// Save forms printed by the real iptables 1.8.9 (nf_tables).
    #[test]
    fn iptables_1_8_9_behaviour() {
        let tail = " --name DEFAULT --mask 255.255.255.255 --rsource";
        let ok = [
            ("--rcheck", " --rcheck"),
            ("--update", " --update"),
            ("--remove", " --remove"),
            ("! --set", " ! --set"),
            ("! --rcheck --seconds 60 --hitcount 5", " ! --rcheck --seconds 60 --hitcount 5"),
            ("--update --seconds 60 --reap", " --update --seconds 60 --reap"),
            ("--rcheck --seconds 4294967295", " --rcheck --seconds -1"),
            ("--rcheck --seconds 2147483648", " --rcheck --seconds -2147483648"),
            ("--rcheck --hitcount 0", " --rcheck"),
            ("--rcheck --hitcount 255", " --rcheck --hitcount 255"),
            ("--rcheck --hitcount 65535", " --rcheck --hitcount 65535"),
            ("--rcheck --rttl", " --rcheck --rttl"),
            ("--rcheck --seconds 0x10 --hitcount 010", " --rcheck --seconds 16 --hitcount 8"),
        ];
        for (i, e) in ok {
            assert_eq!(check(i).unwrap(), format!("{e}{tail}"), "{i}");
        }
        let ok = [
            ("--set --name foo --rdest", " --set --name foo --mask 255.255.255.255 --rdest"),
            ("--set --rdest --rsource", " --set --name DEFAULT --mask 255.255.255.255 --rsource"),
            ("--set --rsource --rdest", " --set --name DEFAULT --mask 255.255.255.255 --rdest"),
            ("--set --name \"a b\"", " --set --name a b --mask 255.255.255.255 --rsource"),
            (r#"--set --name "a\"b""#, r#" --set --name a"b --mask 255.255.255.255 --rsource"#),
            ("--set --name a,b", " --set --name a,b --mask 255.255.255.255 --rsource"),
            ("--set --mask 255.255.0.0", " --set --name DEFAULT --mask 255.255.0.0 --rsource"),
            ("--set --mask 255.0.255.0", " --set --name DEFAULT --mask 255.0.255.0 --rsource"),
            ("--set --mask 16", " --set --name DEFAULT --mask 0.0.0.16 --rsource"),
            ("--set --mask 0x10", " --set --name DEFAULT --mask 0.0.0.16 --rsource"),
            ("--set --mask 1.2", " --set --name DEFAULT --mask 1.0.0.2 --rsource"),
            (
                "! --update --seconds 10 --reap --hitcount 2 --rttl --name x --rdest --mask 255.255.255.0",
                " ! --update --seconds 10 --reap --hitcount 2 --rttl --name x --mask 255.255.255.0 --rdest",
            ),
        ];
        for (i, e) in ok {
            assert_eq!(check(i).unwrap(), e, "{i}");
        }
        let long = "a".repeat(250);
        assert_eq!(check(&format!("--set --name {long}")).unwrap(), format!(" --set --name {} --mask 255.255.255.255 --rsource", "a".repeat(199)));
        for i in [
            "",
            "--set --rcheck",
            "--rcheck --reap",
            "--rcheck --seconds 0",
            "--set --seconds 5",
            "--set --hitcount 5",
            "--remove --seconds 5",
            "--set --rttl",
            "--rttl --set",
            "--remove --rttl",
            "--set --name foo --name bar",
            "--set --name .",
            "--set --name ..",
            "--set --name a/b",
            "--set --mask 0/0",
            "--set --mask 1.2.3.4/8",
            "--rcheck --seconds 5 --seconds 6",
            "--rcheck ! --seconds 5",
            "--rcheck --hitcount 65536",
            "--set --rsource --rsource",
            "--set --reap",
            "--rcheck --reap --reap --seconds 3",
            "--rcheck --rttl --rttl",
        ] {
            assert!(check(i).is_err(), "{i}");
        }
        let c6 = |l: &str| check_in(Family::V6, l);
        assert_eq!(c6("--set --mask ffff::").unwrap(), " --set --name DEFAULT --mask ffff:: --rsource");
        assert_eq!(c6("--set --mask ::ffff:1.2.3.4").unwrap(), " --set --name DEFAULT --mask ::ffff:1.2.3.4 --rsource");
        assert_eq!(c6("--set --mask ::1.2.3.4").unwrap(), " --set --name DEFAULT --mask ::1.2.3.4 --rsource");
        assert!(c6("--set --mask 64").is_err());
    }
}

#[cfg(test)]
mod eval_tests {
    use super::*;
    use crate::host::Host;
    use crate::matches::{Eval, EvalCtx, Evaluate};
    use crate::packet::Packet;
    use crate::xt::ext::parse_alone;
    use crate::xt::{Hook, TableName};

    fn eval(line: &str) -> Eval {
        let m: Recent = parse_alone(Ctx { family: Family::V4, table: TableName::Filter, proto: None }, line);
        let host = Host::new("h");
        let cx = EvalCtx { host: &host, hook: Hook::Input, table: TableName::Filter, family: Family::V4, conn: None };
        m.eval(&Packet::new(6, "10.0.0.1".parse().unwrap(), 40000, "10.0.0.2".parse().unwrap(), 22), &cx)
    }

    #[test]
    fn set_always_matches() {
        assert_eq!(eval("--set"), Eval::Match);
        assert_eq!(eval("--set --name ssh --rdest"), Eval::Match);
        assert_eq!(eval("! --set"), Eval::NoMatch);
    }

    #[test]
    fn checks_depend_on_the_list() {
        for line in ["--rcheck", "! --rcheck --name ssh", "--update --seconds 60 --hitcount 4 --name ssh", "--remove --rdest", "--rcheck --rttl"] {
            assert!(matches!(eval(line), Eval::Unknown(_)), "{line}");
        }
        assert!(matches!(eval("--update --seconds 60 --name ssh"), Eval::Unknown(r) if r.contains("--update") && r.contains("ssh") && r.contains("source")));
    }
}
