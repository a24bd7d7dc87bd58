//! `-m owner`: the user, group or existence of the local socket that sent a packet
//! (`xt_owner.c`, `libxt_owner.c` revision 1).

use std::fmt::Write as _;

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, tests};
use crate::classes::region::Test;
use crate::classes::set::Ranges;
use crate::matches::Eval;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once, save_invert};
use crate::xt::value::parse_c_number;

/// An inclusive range of user or group ids with its `!`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IdRange {
    /// First id.
    pub min: u32,
    /// Last id (inclusive).
    pub max: u32,
    /// `!`.
    pub invert: bool,
}

/// The owner match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// `--uid-owner`: the socket file's owner uid (fsuid of the creating process).
    pub uid: Option<IdRange>,
    /// `--gid-owner`: the socket file's group.
    pub gid: Option<IdRange>,
    /// `--socket-exists`, with its `!`.
    pub socket_exists: Option<bool>,
    /// `--suppl-groups`: `--gid-owner` also matches the supplementary groups of the socket's
    /// credentials.
    pub suppl_groups: bool,
}

/// The id a user or group name stands for. iptables looks names up in `/etc/passwd` /
/// `/etc/group` of the machine; the simulator knows only `root` (0), present on every system.
fn resolve_name(s: &str) -> Option<u32> {
    (s == "root").then_some(0)
}

/// One id of a range, as `xtables_strtoui(.., 0, UINT32_MAX - 1)` reads it (`-1` is reserved),
/// returning the value and the rest of the string.
fn parse_id(s: &str) -> Option<(u32, &str)> {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if s.starts_with('-') {
        return None;
    }
    // Longest prefix that strtoul(.., 0) consumes.
    let body = s.strip_prefix('+').unwrap_or(s);
    let len = if body.len() > 2 && (body.starts_with("0x") || body.starts_with("0X")) && body.as_bytes()[2].is_ascii_hexdigit() {
        2 + body[2..].bytes().take_while(u8::is_ascii_hexdigit).count()
    } else if body.starts_with('0') {
        body.bytes().take_while(|b| (b'0'..=b'7').contains(b)).count()
    } else {
        body.bytes().take_while(u8::is_ascii_digit).count()
    };
    if len == 0 {
        return None;
    }
    let v = parse_c_number(&body[..len])?;
    (v <= u64::from(u32::MAX - 1)).then_some((v as u32, &body[len..]))
}

/// Parses `NAME`, `ID` or `ID-ID` / `ID:ID` for `--{opt}`.
fn parse_owner(s: &str, opt: &str, invert: bool) -> Result<IdRange, String> {
    let kind = if opt == "uid-owner" { "user" } else { "group" };
    if let Some(id) = resolve_name(s) {
        return Ok(IdRange { min: id, max: id, invert });
    }
    let bad = || {
        if s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            format!("unknown {kind} `{s}` for `--{opt}` (expected a number, a range FIRST-LAST, or `root`)")
        } else {
            format!("bad value `{s}` for `--{opt}` (expected an id 0..=4294967294 or a range FIRST-LAST)")
        }
    };
    let (min, rest) = parse_id(s).ok_or_else(bad)?;
    let (max, rest) = match rest.strip_prefix(['-', ':']) {
        Some(r) => parse_id(r).ok_or_else(bad)?,
        None => (min, rest),
    };
    if !rest.is_empty() {
        return Err(bad());
    }
    if max < min {
        // Userspace accepts it; the kernel's check refuses the rule (EINVAL).
        return Err(format!("reversed range `{s}` for `--{opt}` (the kernel refuses a first id above the last)"));
    }
    Ok(IdRange { min, max, invert })
}

fn save_range(out: &mut String, opt: &str, r: IdRange) {
    save_invert(out, r.invert);
    if r.min != r.max {
        let _ = write!(out, " --{opt} {}-{}", r.min, r.max);
    } else {
        let _ = write!(out, " --{opt} {}", r.min);
    }
}

impl Extension for Owner {
    const OPTIONS: &'static [&'static str] = &["uid-owner", "gid-owner", "socket-exists", "suppl-groups"];

    fn new(_ctx: &Ctx) -> Self {
        Owner::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "uid-owner" => {
                once(&self.uid, opt)?;
                self.uid = Some(parse_owner(args.value()?, opt, invert)?);
            }
            "gid-owner" => {
                once(&self.gid, opt)?;
                self.gid = Some(parse_owner(args.value()?, opt, invert)?);
            }
            "socket-exists" => {
                once(&self.socket_exists, opt)?;
                self.socket_exists = Some(invert);
            }
            "suppl-groups" => {
                if self.suppl_groups {
                    return Err("option `--suppl-groups` may be given only once".to_string());
                }
                no_invert(invert, opt)?;
                if self.gid.is_none() {
                    return Err("`--suppl-groups` must come after `--gid-owner`".to_string());
                }
                self.suppl_groups = true;
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.uid.is_none() && self.gid.is_none() && self.socket_exists.is_none() {
            return Err("the owner match needs `--uid-owner`, `--gid-owner` or `--socket-exists`".to_string());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(inv) = self.socket_exists {
            save_invert(out, inv);
            out.push_str(" --socket-exists");
        }
        if let Some(r) = self.uid {
            save_range(out, "uid-owner", r);
        }
        if let Some(r) = self.gid {
            save_range(out, "gid-owner", r);
        }
        if self.suppl_groups {
            out.push_str(" --suppl-groups");
        }
    }
}

impl IdRange {
    fn contains(&self, id: u32) -> bool {
        self.min <= id && id <= self.max
    }
}

impl crate::matches::Evaluate for Owner {
    /// `owner_mt` (revision 1). Without a socket (`pkt.owner` is `None`: forwarded packets,
    /// packets the kernel sends itself) the match holds exactly when every option given is
    /// negated; `--suppl-groups` cannot be negated, so with it a socket-less packet never
    /// matches. With a socket, `! --socket-exists` fails, then the uid and gid ranges are
    /// tested (inclusive), the gid also against the supplementary groups with `--suppl-groups`.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let Some(owner) = &pkt.owner else {
            // `(info->match ^ info->invert) == 0`: each flag given must be inverted.
            let all_inverted =
                self.uid.is_none_or(|r| r.invert) && self.gid.is_none_or(|r| r.invert) && self.socket_exists.is_none_or(|inv| inv) && !self.suppl_groups;
            return Eval::from_bool(all_inverted);
        };
        if self.socket_exists == Some(true) {
            return Eval::NoMatch;
        }
        if let Some(r) = self.uid
            && r.contains(owner.uid) == r.invert
        {
            return Eval::NoMatch;
        }
        if let Some(r) = self.gid {
            let found = r.contains(owner.gid) || (self.suppl_groups && owner.groups.iter().any(|&g| r.contains(g)));
            if found == r.invert {
                return Eval::NoMatch;
            }
        }
        Eval::Match
    }
}

impl Cond for Owner {
    const READS: Fields = Fields::UID.or(Fields::GID);

    /// `owner_mt`: without a socket, every option given must be negated; with one, `!
    /// --socket-exists` fails and the uid / gid ranges are tested (the supplementary groups are
    /// empty in every class, so `--suppl-groups` adds nothing).
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        if !cx.has_owner {
            let all_inverted =
                self.uid.is_none_or(|r| r.invert) && self.gid.is_none_or(|r| r.invert) && self.socket_exists.is_none_or(|inv| inv) && !self.suppl_groups;
            return MatchCond::Eval(Eval::from_bool(all_inverted));
        }
        if self.socket_exists == Some(true) {
            return MatchCond::Eval(Eval::NoMatch);
        }
        let ids = |r: Option<IdRange>| {
            r.map(|r| {
                let inside = Ranges::range(r.min, r.max);
                if r.invert { inside.complement() } else { inside }
            })
        };
        tests(cx, vec![Test { uid: ids(self.uid), gid: ids(self.gid), ..Test::default() }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Mangle, proto: None };
        check_alone::<Owner>(ctx, line)
    }

    #[test]
    fn size() {
        assert!(std::mem::size_of::<Owner>() <= 40);
    }

    #[test]
    fn libxt_owner_t() {
        let ok = [
            ("--uid-owner root", " --uid-owner 0"),
            ("--uid-owner 0-10", " --uid-owner 0-10"),
            ("--gid-owner root", " --gid-owner 0"),
            ("--gid-owner 0-10", " --gid-owner 0-10"),
            ("--uid-owner root --gid-owner root", " --uid-owner 0 --gid-owner 0"),
            ("--uid-owner 0-10 --gid-owner 0-10", " --uid-owner 0-10 --gid-owner 0-10"),
            ("! --uid-owner root", " ! --uid-owner 0"),
            ("--socket-exists", " --socket-exists"),
            ("--gid-owner 0-10 --suppl-groups", " --gid-owner 0-10 --suppl-groups"),
        ];
        for (i, e) in ok {
            assert_eq!(check(i).as_deref(), Ok(e), "{i}");
        }
        for i in ["--suppl-groups --gid-owner 0-10", "--gid-owner 0-10 ! --suppl-groups", "--suppl-groups"] {
            assert!(check(i).is_err(), "{i}");
        }
        // `:INPUT -m owner --uid-owner root;;FAIL`: a hook restriction, checked at load time.
    }

    /// Save forms printed by the real iptables 1.8.9 (nf_tables) in mangle OUTPUT.
    #[test]
    fn iptables_1_8_9_behaviour() {
        let ok = [
            ("--uid-owner 5-5", " --uid-owner 5"),
            ("--uid-owner 0x10", " --uid-owner 16"),
            ("--uid-owner 010", " --uid-owner 8"),
            ("--uid-owner 4294967294", " --uid-owner 4294967294"),
            ("--uid-owner 1:3", " --uid-owner 1-3"),
            ("! --gid-owner 5 ! --uid-owner 3 ! --socket-exists", " ! --socket-exists ! --uid-owner 3 ! --gid-owner 5"),
            ("! --gid-owner 0-10 --suppl-groups", " ! --gid-owner 0-10 --suppl-groups"),
            ("--uid 5", " --uid-owner 5"),
        ];
        for (i, e) in ok {
            assert_eq!(check(i).as_deref(), Ok(e), "{i}");
        }
        for i in [
            "--uid-owner 10-0",
            "--uid-owner 4294967295",
            "--uid-owner 4294967296",
            "--uid-owner -1",
            "--uid-owner 1-",
            "--uid-owner daemon-root",
            "--uid-owner 1 --uid-owner 2",
            "--socket-exists --socket-exists",
            "",
            "--gid-owner 1 --gid-owner 1",
            "--gid-owner 1 --suppl-groups --suppl-groups",
        ] {
            assert!(check(i).is_err(), "{i}");
        }
        assert!(check("--uid-owner nobody").unwrap_err().contains("unknown user"));
        // The real tool resolved `staff` through this machine's /etc/group (gid 50); the
        // simulator knows only `root`, so the name is refused rather than guessed.
        assert!(check("--gid-owner staff").unwrap_err().contains("unknown group"));
    }
}

#[cfg(test)]
mod eval_tests {
    use super::*;
    use crate::host::Host;
    use crate::matches::{Eval, EvalCtx, Evaluate};
    use crate::packet::{Owner as SockOwner, Packet};
    use crate::xt::ext::parse_alone;
    use crate::xt::{Family, Hook, TableName};

    fn eval(line: &str, owner: Option<SockOwner>) -> Eval {
        let m: Owner = parse_alone(Ctx { family: Family::V4, table: TableName::Mangle, proto: None }, line);
        let host = Host::new("h");
        let cx = EvalCtx { host: &host, hook: Hook::Output, table: TableName::Mangle, family: Family::V4, conn: None };
        let mut pkt = Packet::new(6, "10.0.0.1".parse().unwrap(), 40000, "10.0.0.2".parse().unwrap(), 80);
        pkt.owner = owner;
        m.eval(&pkt, &cx)
    }

    #[test]
    fn without_socket_only_fully_negated_matches() {
        for (line, expected) in [
            ("--uid-owner 0", Eval::NoMatch),
            ("! --uid-owner 0", Eval::Match),
            ("--socket-exists", Eval::NoMatch),
            ("! --socket-exists", Eval::Match),
            ("! --uid-owner 0 --gid-owner 5", Eval::NoMatch),
            ("! --uid-owner 0 ! --gid-owner 5", Eval::Match),
            ("! --uid-owner 0 ! --gid-owner 5 ! --socket-exists", Eval::Match),
            // `--suppl-groups` is a match flag that cannot be inverted.
            ("! --gid-owner 5 --suppl-groups", Eval::NoMatch),
        ] {
            assert_eq!(eval(line, None), expected, "{line}");
        }
    }

    #[test]
    fn with_socket() {
        let o = || Some(SockOwner { uid: 1000, gid: 1000, groups: vec![27, 100] });
        for (line, expected) in [
            ("--uid-owner 1000", Eval::Match),
            ("--uid-owner 1000-2000", Eval::Match),
            ("--uid-owner 0-999", Eval::NoMatch),
            ("! --uid-owner 0-999", Eval::Match),
            ("! --uid-owner 1000", Eval::NoMatch),
            ("--socket-exists", Eval::Match),
            ("! --socket-exists", Eval::NoMatch),
            ("! --socket-exists ! --uid-owner 0", Eval::NoMatch),
            ("--gid-owner 1000", Eval::Match),
            ("--gid-owner 27", Eval::NoMatch),
            ("! --gid-owner 27", Eval::Match),
            ("--gid-owner 27 --suppl-groups", Eval::Match),
            ("--gid-owner 20-30 --suppl-groups", Eval::Match),
            ("--gid-owner 28-99 --suppl-groups", Eval::NoMatch),
            ("! --gid-owner 27 --suppl-groups", Eval::NoMatch),
            ("--uid-owner 1000 --gid-owner 5", Eval::NoMatch),
            ("--uid-owner 1000 --gid-owner 1000 --socket-exists", Eval::Match),
        ] {
            assert_eq!(eval(line, o()), expected, "{line}");
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::prelude::*;

    use super::{IdRange, Owner};
    use crate::classes::cond::test_util::{id, run};
    use crate::matches::Match;

    #[test]
    fn owner_agrees() {
        run("owner", 400, 400, |_| {
            let ids = || proptest::option::weighted(0.6, (id(), id(), any::<bool>()).prop_map(|(min, max, invert)| IdRange { min, max, invert }));
            (ids(), ids(), proptest::option::weighted(0.3, any::<bool>()), any::<bool>())
                .prop_map(|(uid, gid, socket_exists, suppl_groups)| Match::Owner(Owner { uid, gid, socket_exists, suppl_groups }))
                .boxed()
        });
    }
}
