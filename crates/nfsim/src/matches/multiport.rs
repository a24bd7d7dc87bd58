//! `-m multiport`: up to 15 ports or port ranges, matched against the source port, the
//! destination port or either (`xt_multiport.c` revision 1, `libxt_multiport.c`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, tests};
use crate::classes::port_protos;
use crate::classes::region::Test;
use crate::classes::set::Ranges;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, save_invert};
use crate::xt::value::{parse_port, service_proto};

/// Slots in the kernel's port array (`XT_MULTI_PORTS`); a range takes two.
pub const MAX_PORT_SLOTS: usize = 15;

/// Which port of the packet is compared (`XT_MULTIPORT_SOURCE` / `_DESTINATION` / `_EITHER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortSide {
    /// `--sports` (`--source-ports`).
    Source,
    /// `--dports` (`--destination-ports`).
    Destination,
    /// `--ports`: the source or the destination port.
    Either,
}

impl PortSide {
    /// The option name iptables-save prints.
    pub fn save_name(self) -> &'static str {
        match self {
            PortSide::Source => "sports",
            PortSide::Destination => "dports",
            PortSide::Either => "ports",
        }
    }
}

/// The multiport match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Multiport {
    /// Which port is compared; `None` until an option is given (one is required).
    pub side: Option<PortSide>,
    /// Ports and ranges (inclusive; a single port is `(p, p)`), in the order written.
    pub ports: Vec<(u16, u16)>,
    /// `!`: the port must be in none of them.
    pub invert: bool,
}

/// Checks the rule's `-p` as libxt_multiport does, returning the protocol name to resolve
/// service names with.
fn check_proto(ctx: &Ctx) -> Result<&'static str, String> {
    match ctx.proto {
        None => Err("the multiport match requires `-p tcp`, `-p udp`, `-p udplite`, `-p sctp` or `-p dccp`".into()),
        Some(p) => match service_proto(p.value.0) {
            Some(name) if !p.negated => Ok(name),
            _ => Err("the multiport match works only with TCP, UDP, UDPLITE, SCTP and DCCP (without `!` before `-p`)".into()),
        },
    }
}

/// Parses `PORT[,PORT|,FIRST:LAST]...` as libxt_multiport's revision-1 parser does: ports or
/// services of `proto`, ranges strictly ascending, at most 15 slots with a range taking two.
fn parse_ports(s: &str, proto: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut ports = Vec::new();
    let mut slots = 0;
    for item in s.split(',') {
        if slots == MAX_PORT_SLOTS {
            return Err(format!("too many ports in `{s}` (at most {MAX_PORT_SLOTS}, a range counts as two)"));
        }
        match item.split_once(':') {
            None => {
                let p = parse_port(item, proto)?;
                ports.push((p, p));
                slots += 1;
            }
            Some((lo, hi)) => {
                if slots == MAX_PORT_SLOTS - 1 {
                    return Err(format!("too many ports in `{s}` (at most {MAX_PORT_SLOTS}, a range counts as two)"));
                }
                let lo = parse_port(lo, proto)?;
                let hi = parse_port(hi, proto)?;
                if lo >= hi {
                    return Err(format!("invalid port range `{item}` (expected FIRST:LAST with FIRST < LAST)"));
                }
                ports.push((lo, hi));
                slots += 2;
            }
        }
    }
    Ok(ports)
}

impl Extension for Multiport {
    const OPTIONS: &'static [&'static str] = &["source-ports", "sports", "destination-ports", "dports", "ports"];

    fn new(_ctx: &Ctx) -> Self {
        Multiport::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        let side = match opt {
            "source-ports" | "sports" => PortSide::Source,
            "destination-ports" | "dports" => PortSide::Destination,
            "ports" => PortSide::Either,
            _ => return Err(format!("unknown option `--{opt}`")),
        };
        if let Some(given) = self.side {
            return Err(if given == side {
                format!("option `--{}` may be given only once", side.save_name())
            } else {
                format!("option `--{}` cannot be used together with `--{}`", side.save_name(), given.save_name())
            });
        }
        let proto = check_proto(&args.ctx())?;
        self.ports = parse_ports(args.value()?, proto)?;
        self.side = Some(side);
        self.invert = invert;
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if self.side.is_none() {
            return Err("the multiport match requires `--sports`, `--dports` or `--ports`".into());
        }
        check_proto(ctx).map(|_| ())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        let Some(side) = self.side else { return };
        save_invert(out, self.invert);
        let _ = write!(out, " --{} ", side.save_name());
        for (i, &(lo, hi)) in self.ports.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if lo == hi {
                let _ = write!(out, "{lo}");
            } else {
                let _ = write!(out, "{lo}:{hi}");
            }
        }
    }
}

impl crate::matches::Evaluate for Multiport {
    /// `ports_match_v1` (`xt_multiport.c`): the first listed port or range that contains the
    /// compared port (source, destination, or either) decides `true`, flipped by `!`; when none
    /// does, the answer is `!`. A packet without ports does not match (the kernel only runs the
    /// match after a `-p` with ports); the packet model has no non-first fragments.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let Some(side) = self.side else { return Eval::Unknown("`-m multiport` without a port option".into()) };
        if !pkt.has_ports() {
            return Eval::NoMatch;
        }
        let inside = |p: u16| self.ports.iter().any(|&(lo, hi)| lo <= p && p <= hi);
        let hit = match side {
            PortSide::Source => inside(pkt.sport),
            PortSide::Destination => inside(pkt.dport),
            PortSide::Either => inside(pkt.sport) || inside(pkt.dport),
        };
        Eval::from_bool(hit != self.invert)
    }
}

impl Cond for Multiport {
    const READS: Fields = Fields::PROTO.or(Fields::SPORT).or(Fields::DPORT);

    /// `ports_match_v1`: a packet without ports never matches; `--ports` is split into "source
    /// listed" and "source not listed, destination listed" to keep the tests disjoint.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        let Some(side) = self.side else { return MatchCond::Concrete(Fields::NONE) };
        let listed = Ranges::from_intervals(self.ports.iter().copied());
        let unlisted = listed.complement();
        let t = |sport: Option<&Ranges<u16>>, dport: Option<&Ranges<u16>>| Test {
            proto: Some(port_protos()),
            sport: sport.cloned(),
            dport: dport.cloned(),
            ..Test::default()
        };
        let hit = if self.invert { &unlisted } else { &listed };
        let v = match (side, self.invert) {
            (PortSide::Source, _) => vec![t(Some(hit), None)],
            (PortSide::Destination, _) => vec![t(None, Some(hit))],
            (PortSide::Either, false) => vec![t(Some(&listed), None), t(Some(&unlisted), Some(&listed))],
            (PortSide::Either, true) => vec![t(Some(&unlisted), Some(&unlisted))],
        };
        tests(cx, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, Neg, Proto, TableName};

    fn ctx(proto: Option<Neg<Proto>>) -> Ctx {
        Ctx { family: Family::V4, table: TableName::Filter, proto }
    }

    fn with(proto: u8, line: &str) -> Result<String, String> {
        check_alone::<Multiport>(ctx(Some(Neg::new(Proto(proto), false))), line)
    }

    fn check(line: &str) -> Result<String, String> {
        with(6, line)
    }

    /// Every line of iptables' `extensions/libxt_multiport.t`.
    #[test]
    fn libxt_multiport_t() {
        for (proto, line) in [
            (6, "--sports 53,1024:65535"),
            (6, "--dports 53,1024:65535"),
            (17, "--sports 53,1024:65535"),
            (17, "--dports 53,1024:65535"),
            (17, "--ports 53,1024:65535"),
            (132, "--sports 53,1024:65535"),
            (132, "--dports 53,1024:65535"),
            (33, "--sports 53,1024:65535"),
            (33, "--dports 53,1024:65535"),
            (136, "--sports 53,1024:65535"),
            (136, "--dports 53,1024:65535"),
            (6, "--ports 1,2,3,4,6,7,8,9,10,11,12,13,14,15"),
        ] {
            assert_eq!(with(proto, line), Ok(format!(" {line}")), "{line}");
        }
        for (proto, line) in [(6, "--sports 1024:65536"), (17, "--sports 1024:65536"), (6, "--ports 1024:65536"), (17, "--ports 1024:65536")] {
            assert!(with(proto, line).is_err(), "{line}");
        }
        // `-p tcp --multiport` is a rule-parser error; `-m multiport` alone fails here.
        assert!(check_alone::<Multiport>(ctx(None), "").is_err());
        assert!(check("").is_err());
    }

    /// Values as the real `iptables` 1.8.9 read and printed them.
    #[test]
    fn ports_like_iptables_1_8_9() {
        for (line, saved) in [
            ("! --dports 53,80:90", " ! --dports 53,80:90"),
            ("--dports ssh,http", " --dports 22,80"),
            ("--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", " --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15"),
            ("--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14:15", " --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14:15"),
            ("--dports 0x50,010", " --dports 80,8"),
            ("--destination-ports 5,6", " --dports 5,6"),
            ("--source-ports 5", " --sports 5"),
            ("--dports 80,80", " --dports 80,80"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        for line in [
            "--dports 80:80",
            "--dports 90:80",
            "--dports 80:",
            "--dports 80,",
            "--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16",
            "--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15:16",
            "--sports 1 --dports 2",
            "--dports 1 --dports 2",
        ] {
            assert!(check(line).is_err(), "{line}");
        }
        // Service names resolve for the rule's protocol: netbase lists ssh for tcp only.
        assert!(with(17, "--dports ssh").is_err());
        // Wrong, negated or missing protocol.
        assert!(with(1, "--dports 1").is_err());
        assert!(check_alone::<Multiport>(ctx(Some(Neg::new(Proto::TCP, true))), "--dports 1").is_err());
        assert!(check_alone::<Multiport>(ctx(None), "--dports 1").is_err());
    }

    mod eval {
        use super::super::*;
        use crate::host::Host;
        use crate::matches::tcp::test_util::{cx, parse};
        use crate::matches::{Eval, Evaluate};
        use crate::packet::Packet;
        use crate::xt::{Family, Hook};

        fn run(line: &str, proto: u8, sport: u16, dport: u16) -> Eval {
            let host = Host::new("h");
            let pkt = Packet::new(proto, "10.0.0.1".parse().unwrap(), sport, "10.0.0.2".parse().unwrap(), dport);
            let rule_proto = if pkt.has_ports() { proto } else { 6 };
            parse::<Multiport>(Family::V4, rule_proto, line).eval(&pkt, &cx(&host, Hook::Forward, false))
        }

        #[test]
        fn sides_ranges_and_inversion() {
            assert_eq!(run("--dports 22,80,443", 6, 40000, 80), Eval::Match);
            assert_eq!(run("--dports 22,80,443", 6, 80, 8080), Eval::NoMatch);
            assert_eq!(run("--sports 22,80,443", 6, 80, 8080), Eval::Match);
            assert_eq!(run("--dports 53,1024:65535", 17, 1, 1024), Eval::Match);
            assert_eq!(run("--dports 53,1024:65535", 17, 1, 1023), Eval::NoMatch);
            assert_eq!(run("--ports 53", 17, 53, 9), Eval::Match);
            assert_eq!(run("--ports 53", 17, 9, 53), Eval::Match);
            assert_eq!(run("--ports 53", 17, 9, 9), Eval::NoMatch);
            assert_eq!(run("! --dports 22,80", 6, 1, 80), Eval::NoMatch);
            assert_eq!(run("! --dports 22,80", 6, 1, 81), Eval::Match);
            assert_eq!(run("! --ports 22", 6, 22, 1), Eval::NoMatch);
            assert_eq!(run("! --ports 22", 6, 2, 1), Eval::Match);
            assert_eq!(run("--dports 8000:8080", 132, 1, 8080), Eval::Match);
            assert_eq!(run("--dports 8000:8080", 33, 1, 7999), Eval::NoMatch);
        }

        #[test]
        fn packets_without_ports_do_not_match() {
            assert_eq!(run("! --dports 22", 1, 0, 0), Eval::NoMatch);
            assert_eq!(run("--dports 0", 47, 0, 0), Eval::NoMatch);
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::{Multiport, PortSide};
    use crate::classes::cond::test_util::{port, run};
    use crate::matches::Match;

    #[test]
    fn multiport_agrees() {
        run("multiport", 400, 350, |_| {
            let side = proptest::option::weighted(0.95, select(vec![PortSide::Source, PortSide::Destination, PortSide::Either]));
            let range = prop_oneof![port().prop_map(|p| (p, p)), (port(), port())];
            (side, vec(range, 1..6), any::<bool>()).prop_map(|(side, ports, invert)| Match::Multiport(Box::new(Multiport { side, ports, invert }))).boxed()
        });
    }
}
