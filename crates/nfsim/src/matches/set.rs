//! `-m set`: membership of the packet's addresses/ports in an ipset (`xt_set.c`,
//! `libxt_set.c` revision 4). Whether the set exists (and has the rule's family) is checked
//! elsewhere; [`Set::set_name`] exposes the name for that.

use std::fmt::Write as _;

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, net_set, space, tests};
use crate::classes::region::Test;
use crate::classes::set::Ranges;
use crate::matches::Eval;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert};
use crate::xt::value::parse_c_number;

/// `IPSET_MAXNAMELEN - 1`.
const NAME_MAX: usize = 31;
/// `IPSET_DIM_MAX`.
const DIM_MAX: u8 = 6;

/// A counter comparison (`--packets-*` / `--bytes-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CounterOp {
    /// `--X-eq N`.
    Eq,
    /// `! --X-eq N`.
    Ne,
    /// `--X-lt N`.
    Lt,
    /// `--X-gt N`.
    Gt,
}

/// A counter test of the matching set element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CounterMatch {
    /// The comparison.
    pub op: CounterOp,
    /// The value compared with.
    pub value: u64,
}

/// Packet and byte counter tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SetCounters {
    /// `--packets-eq|lt|gt`.
    pub packets: Option<CounterMatch>,
    /// `--bytes-eq|lt|gt`.
    pub bytes: Option<CounterMatch>,
}

/// The set match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Set {
    /// `--match-set NAME` (required).
    pub name: Option<Box<str>>,
    /// Number of `src`/`dst` words (1..=6): the dimensions of the element looked up.
    pub dim: u8,
    /// Bit `i` (1-based) set when dimension `i` is taken from the source (`src`), clear for
    /// the destination (`dst`).
    pub src_bits: u8,
    /// `!` before `--match-set`.
    pub invert: bool,
    /// `--return-nomatch`: an element stored with `nomatch` makes the match succeed.
    pub return_nomatch: bool,
    /// `! --update-counters`: do not update the element's counters.
    pub skip_counter_update: bool,
    /// `! --update-subcounters`: do not update counters of member sets of a list:set.
    pub skip_subcounter_update: bool,
    /// Counter tests (boxed: rarely used).
    pub counters: Option<Box<SetCounters>>,
}

impl Set {
    /// The name of the ipset the rule refers to (empty before `--match-set` was parsed).
    pub fn set_name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// The direction words, as `iptables-save` prints them (`src,dst`).
    pub fn dirs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.dim {
            if i > 1 {
                out.push(',');
            }
            out.push_str(if self.src_bits & (1 << i) != 0 { "src" } else { "dst" });
        }
        out
    }
}

fn parse_dirs(s: &str) -> Result<(u8, u8), String> {
    let words: Vec<&str> = s.split(',').collect();
    if words.len() > usize::from(DIM_MAX) {
        return Err(format!("too many `src`/`dst` words in `{s}` (at most {DIM_MAX})"));
    }
    let mut bits = 0u8;
    for (i, w) in words.iter().enumerate() {
        // iptables compares the first three characters only.
        if w.starts_with("src") {
            bits |= 1 << (i + 1);
        } else if !w.starts_with("dst") {
            return Err(format!("bad direction `{w}` in `{s}` (expected a comma-separated list of src and dst)"));
        }
    }
    Ok((words.len() as u8, bits))
}

fn parse_counter(s: &str) -> Result<u64, String> {
    parse_c_number(s).ok_or_else(|| format!("bad counter value `{s}` (expected a number 0..=18446744073709551615)"))
}

fn save_counter(out: &mut String, c: Option<CounterMatch>, what: &str) {
    let Some(c) = c else { return };
    let _ = match c.op {
        CounterOp::Eq => write!(out, " --{what}-eq {}", c.value),
        CounterOp::Ne => write!(out, " ! --{what}-eq {}", c.value),
        CounterOp::Lt => write!(out, " --{what}-lt {}", c.value),
        CounterOp::Gt => write!(out, " --{what}-gt {}", c.value),
    };
}

impl Extension for Set {
    const OPTIONS: &'static [&'static str] = &[
        "match-set",
        "set",
        "return-nomatch",
        "update-counters",
        "packets-eq",
        "packets-lt",
        "packets-gt",
        "bytes-eq",
        "bytes-lt",
        "bytes-gt",
        "update-subcounters",
    ];

    fn new(_ctx: &Ctx) -> Self {
        Set::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            // `--set` is the deprecated spelling of `--match-set`.
            "match-set" | "set" => {
                if self.name.is_some() {
                    return Err("`--match-set` may be given only once".to_string());
                }
                let name = args.value()?;
                let dirs = args.optional().ok_or_else(|| "`--match-set` requires two arguments: the set name and src/dst flags".to_string())?;
                if name.len() > NAME_MAX {
                    return Err(format!("set name `{name}` is too long (at most {NAME_MAX} characters)"));
                }
                let (dim, bits) = parse_dirs(dirs)?;
                self.name = Some(name.into());
                self.dim = dim;
                self.src_bits = bits;
                self.invert = invert;
            }
            "return-nomatch" => {
                no_invert(invert, opt)?;
                self.return_nomatch = true;
            }
            // Without `!` these options change nothing.
            "update-counters" => self.skip_counter_update |= invert,
            "update-subcounters" => self.skip_subcounter_update |= invert,
            "packets-eq" | "packets-lt" | "packets-gt" | "bytes-eq" | "bytes-lt" | "bytes-gt" => {
                let (what, op) = opt.split_once('-').unwrap_or((opt, ""));
                let op = match (op, invert) {
                    ("eq", false) => CounterOp::Eq,
                    ("eq", true) => CounterOp::Ne,
                    ("lt", false) => CounterOp::Lt,
                    ("gt", false) => CounterOp::Gt,
                    _ => return no_invert(true, opt),
                };
                let counters = self.counters.get_or_insert_with(Default::default);
                let slot = if what == "packets" { &mut counters.packets } else { &mut counters.bytes };
                if slot.is_some() {
                    return Err(format!("only one of `--{what}-eq`, `--{what}-lt` and `--{what}-gt` is allowed"));
                }
                *slot = Some(CounterMatch { op, value: parse_counter(args.value()?)? });
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.name.is_none() {
            return Err("the set match requires `--match-set NAME src|dst[,...]`".to_string());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if self.invert {
            out.push_str(" !");
        }
        // The name is printed as is (iptables does not quote it).
        let _ = write!(out, " --match-set {} {}", self.set_name(), self.dirs());
        if self.return_nomatch {
            out.push_str(" --return-nomatch");
        }
        if self.skip_counter_update {
            out.push_str(" ! --update-counters");
        }
        if self.skip_subcounter_update {
            out.push_str(" ! --update-subcounters");
        }
        if let Some(c) = &self.counters {
            save_counter(out, c.packets, "packets");
            save_counter(out, c.bytes, "bytes");
        }
    }
}

impl crate::matches::Evaluate for Set {
    /// `set_match_v4` / `match_set`: the host's sets are one-dimensional (`hash:ip` /
    /// `hash:net`), so the first `src`/`dst` flag picks the address tested (further flags are
    /// ignored); the element is a member when one of the set's prefixes contains it (a set of
    /// the other family contains nothing). `!` negates. A set the host does not define is
    /// unknown. With counter tests (`--packets-eq` ...) a member matches only if its counters
    /// pass, which the simulator does not know; a non-member gives a certain answer.
    fn eval(&self, pkt: &crate::packet::Packet, cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let name = self.set_name();
        let Some(members) = cx.host.ipsets.get(name) else {
            return Eval::Unknown(format!("ipset `{name}` is not defined on the host"));
        };
        if self.dim == 0 {
            return Eval::NoMatch.invert(self.invert);
        }
        let addr = if self.src_bits & (1 << 1) != 0 { pkt.src } else { pkt.dst };
        if !members.iter().any(|n| n.contains(&addr)) {
            return Eval::NoMatch.invert(self.invert);
        }
        if self.counters.as_ref().is_some_and(|c| c.packets.is_some() || c.bytes.is_some()) {
            return Eval::Unknown(format!("`--match-set {name}` counter tests depend on the traffic the set element has already counted"));
        }
        Eval::Match.invert(self.invert)
    }
}

impl Cond for Set {
    const READS: Fields = Fields::SRC.or(Fields::DST);

    /// `set_match_v4` on the host's one-dimensional sets: the first direction word picks the
    /// address, a member lies in one of the set's prefixes. An undefined set is unknown; counter
    /// tests are unknown for members.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        let Some(members) = cx.host.ipsets.get(self.set_name()) else { return MatchCond::Concrete(Fields::NONE) };
        if self.dim == 0 {
            return MatchCond::Eval(Eval::NoMatch.invert(self.invert));
        }
        let src = self.src_bits & (1 << 1) != 0;
        let inside = members.iter().fold(Ranges::empty(), |acc, n| acc.union(&net_set(n, cx.family)));
        if self.counters.as_ref().is_some_and(|c| c.packets.is_some() || c.bytes.is_some()) && !inside.is_empty() {
            return MatchCond::Concrete(if src { Fields::SRC } else { Fields::DST });
        }
        let hit = if self.invert { space(cx).minus(&inside) } else { inside };
        let t = if src { Test { src: Some(hit), ..Test::default() } } else { Test { dst: Some(hit), ..Test::default() } };
        tests(cx, vec![t])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<Set>(ctx, line)
    }

    #[test]
    fn size() {
        assert!(std::mem::size_of::<Set>() <= 40);
    }

    #[test]
    fn libxt_set_t() {
        assert!(check("--match-set foo").is_err());
        // `--match-set foo src,dst;;FAIL` fails because set foo does not exist: that check is
        // made elsewhere; the options themselves parse.
        assert_eq!(check("--match-set foo src,dst").unwrap(), " --match-set foo src,dst");
    }

    /// Save forms printed by the real iptables 1.8.9 (nf_tables) with sets created by ipset in
    /// a scratch namespace.
    #[test]
    fn iptables_1_8_9_behaviour() {
        let ok = [
            ("--match-set foo src", " --match-set foo src"),
            ("--match-set foo dst", " --match-set foo dst"),
            ("! --match-set foo src", " ! --match-set foo src"),
            ("--set foo src", " --match-set foo src"),
            ("--match-set foo src --return-nomatch", " --match-set foo src --return-nomatch"),
            ("--match-set foo src ! --update-counters", " --match-set foo src ! --update-counters"),
            ("--match-set foo src ! --update-subcounters", " --match-set foo src ! --update-subcounters"),
            ("--match-set foo src --packets-eq 5", " --match-set foo src --packets-eq 5"),
            ("--match-set foo src ! --packets-eq 5", " --match-set foo src ! --packets-eq 5"),
            ("--match-set foo src --packets-lt 5", " --match-set foo src --packets-lt 5"),
            ("--match-set foo src --packets-gt 5", " --match-set foo src --packets-gt 5"),
            ("--match-set foo src --bytes-eq 5", " --match-set foo src --bytes-eq 5"),
            ("--match-set foo src --bytes-lt 5", " --match-set foo src --bytes-lt 5"),
            (
                "--match-set foo src --bytes-lt 5 --packets-gt 2 ! --update-counters ! --update-subcounters --return-nomatch",
                " --match-set foo src --return-nomatch ! --update-counters ! --update-subcounters --packets-gt 2 --bytes-lt 5",
            ),
            ("--match-set foo src --update-counters", " --match-set foo src"),
            ("--match-set foo src --update-subcounters", " --match-set foo src"),
            ("--match-set foo src,dst,src,dst,src,dst", " --match-set foo src,dst,src,dst,src,dst"),
            ("--match-set foo src --packets-eq 0x10", " --match-set foo src --packets-eq 16"),
            ("--match-set foo src --packets-eq 18446744073709551615", " --match-set foo src --packets-eq 18446744073709551615"),
            ("--match-set foo srcx,dstfoo", " --match-set foo src,dst"),
            ("--match-set abcdefghijabcdefghijabcdefghij1 src", " --match-set abcdefghijabcdefghijabcdefghij1 src"),
            ("--match-set foo src --return-nomatch --return-nomatch", " --match-set foo src --return-nomatch"),
            ("--match-set foo src ! --update-counters ! --update-counters", " --match-set foo src ! --update-counters"),
            ("--packets-eq 5 --match-set foo src", " --match-set foo src --packets-eq 5"),
            ("--match-set foo src --packets-eq 5 --bytes-eq 6", " --match-set foo src --packets-eq 5 --bytes-eq 6"),
            ("--match-set foo src ! --bytes-eq 6 ! --packets-eq 7", " --match-set foo src ! --packets-eq 7 ! --bytes-eq 6"),
        ];
        for (i, e) in ok {
            assert_eq!(check(i).as_deref(), Ok(e), "{i}");
        }
        for i in [
            "--match-set foo",
            "--match-set foo ! src",
            "--match-set foo --return-nomatch",
            "--match-set foo src ! --packets-lt 5",
            "--match-set foo src ! --bytes-gt 5",
            "--match-set foo src --packets-eq 5 --packets-lt 3",
            "--match-set foo src --match-set foo dst",
            "--match-set foo src,dst,src,dst,src,dst,src",
            "--match-set foo SRC",
            "--match-set foo src,",
            "--match-set foo ,src",
            "--match-set foo src --packets-eq 18446744073709551616",
            "--match-set foo src --bytes-eq -1",
            "--match-set abcdefghijabcdefghijabcdefghij12 src",
            "--match-set foo src ! --return-nomatch",
            "--return-nomatch",
            "",
        ] {
            assert!(check(i).is_err(), "{i}");
        }
        let s = Set::new(&Ctx { family: Family::V4, table: TableName::Filter, proto: None });
        assert_eq!(s.set_name(), "");
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

    fn host() -> Host {
        let mut h = Host::new("h");
        h.ipsets.insert("allow".into(), vec!["10.0.0.0/8".parse().unwrap(), "192.168.1.5/32".parse().unwrap()]);
        h.ipsets.insert("empty".into(), vec![]);
        h.ipsets.insert("six".into(), vec!["2001:db8::/32".parse().unwrap()]);
        h
    }

    fn eval(line: &str, src: &str, dst: &str) -> Eval {
        let family = if dst.contains(':') { Family::V6 } else { Family::V4 };
        let m: Set = parse_alone(Ctx { family, table: TableName::Filter, proto: None }, line);
        let h = host();
        let cx = EvalCtx { host: &h, hook: Hook::Input, table: TableName::Filter, family, conn: None };
        m.eval(&Packet::new(6, src.parse().unwrap(), 40000, dst.parse().unwrap(), 22), &cx)
    }

    #[test]
    fn membership_of_the_chosen_address() {
        for (line, src, dst, expected) in [
            ("--match-set allow src", "10.1.2.3", "8.8.8.8", Eval::Match),
            ("--match-set allow src", "8.8.8.8", "10.1.2.3", Eval::NoMatch),
            ("--match-set allow dst", "8.8.8.8", "10.1.2.3", Eval::Match),
            ("--match-set allow dst", "8.8.8.8", "192.168.1.6", Eval::NoMatch),
            ("--match-set allow dst", "8.8.8.8", "192.168.1.5", Eval::Match),
            ("! --match-set allow src", "10.1.2.3", "8.8.8.8", Eval::NoMatch),
            ("! --match-set allow src", "8.8.8.8", "10.1.2.3", Eval::Match),
            // A one-dimensional set uses the first flag only.
            ("--match-set allow dst,src", "10.1.2.3", "8.8.8.8", Eval::NoMatch),
            ("--match-set allow src,dst", "10.1.2.3", "8.8.8.8", Eval::Match),
            ("--match-set empty src", "10.1.2.3", "8.8.8.8", Eval::NoMatch),
            ("! --match-set empty src", "10.1.2.3", "8.8.8.8", Eval::Match),
            ("--return-nomatch --match-set allow src", "10.1.2.3", "8.8.8.8", Eval::Match),
            // Sets of the other family contain nothing.
            ("--match-set allow src", "2001:db8::1", "2001:db8::2", Eval::NoMatch),
            ("--match-set six src", "2001:db8::1", "2001:db8::2", Eval::Match),
            ("--match-set six src", "10.1.2.3", "8.8.8.8", Eval::NoMatch),
        ] {
            assert_eq!(eval(line, src, dst), expected, "{line} {src} -> {dst}");
        }
    }

    #[test]
    fn unknown_sets_and_counters() {
        assert!(matches!(eval("--match-set nope src", "10.1.2.3", "8.8.8.8"), Eval::Unknown(r) if r.contains("nope")));
        assert!(matches!(eval("! --match-set nope src", "10.1.2.3", "8.8.8.8"), Eval::Unknown(_)));
        assert!(matches!(eval("--match-set allow src --packets-gt 5", "10.1.2.3", "8.8.8.8"), Eval::Unknown(_)));
        assert!(matches!(eval("! --match-set allow src --bytes-lt 5", "10.1.2.3", "8.8.8.8"), Eval::Unknown(_)));
        // Not a member: the counters are never looked at.
        assert_eq!(eval("--match-set allow src --packets-gt 5", "8.8.8.8", "10.1.2.3"), Eval::NoMatch);
        assert_eq!(eval("! --match-set allow src ! --packets-eq 5", "8.8.8.8", "10.1.2.3"), Eval::Match);
        // `! --update-counters` changes nothing for the answer.
        assert_eq!(eval("--match-set allow src ! --update-counters", "10.1.2.3", "8.8.8.8"), Eval::Match);
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::{CounterMatch, CounterOp, Set, SetCounters};
    use crate::classes::cond::test_util::run;
    use crate::matches::Match;

    #[test]
    fn set_agrees() {
        run("set", 400, 250, |_| {
            let counters = proptest::option::weighted(
                0.1,
                (any::<u64>(), select(vec![CounterOp::Eq, CounterOp::Ne, CounterOp::Lt, CounterOp::Gt]))
                    .prop_map(|(value, op)| Box::new(SetCounters { packets: Some(CounterMatch { op, value }), bytes: None })),
            );
            (select(vec!["s4", "s6", "mixed", "empty", "nosuch"]), 0u8..4, any::<u8>(), any::<bool>(), counters)
                .prop_map(|(name, dim, src_bits, invert, counters)| {
                    Match::Set(Box::new(Set { name: Some(name.into()), dim, src_bits, invert, counters, ..Default::default() }))
                })
                .boxed()
        });
    }
}
