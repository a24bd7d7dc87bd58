//! `-m tcp`: ports, flags and options of TCP segments (`xt_tcpudp.c`, `libxt_tcp.c`).

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, ports};
use crate::matches::Eval;
use crate::packet::tcp_flags;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once, save_invert};
use crate::xt::value::{fmt_port_range, parse_port_range, parse_uint};

/// TCP flag bits in the order iptables names them.
pub const FLAG_NAMES: [(&str, u8); 6] = [("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20)];

/// A port range with its inversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (inclusive).
    pub hi: u16,
    /// `!`.
    pub invert: bool,
}

/// `--tcp-flags MASK COMP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TcpFlags {
    /// Flags examined.
    pub mask: u8,
    /// Flags that must be set among `mask`.
    pub comp: u8,
    /// `!`.
    pub invert: bool,
}

/// The tcp match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tcp {
    /// `--sport`.
    pub sport: Option<PortRange>,
    /// `--dport`.
    pub dport: Option<PortRange>,
    /// `--tcp-flags` / `--syn`.
    pub flags: Option<TcpFlags>,
    /// `--tcp-option N`.
    pub option: Option<(u8, bool)>,
}

fn parse_flags(s: &str) -> Result<u8, String> {
    let mut bits = 0;
    for name in s.split(',') {
        bits |= match name.to_ascii_uppercase().as_str() {
            "ALL" => 0x3f,
            "NONE" => 0,
            n => FLAG_NAMES
                .iter()
                .find(|(f, _)| *f == n)
                .map(|&(_, b)| b)
                .ok_or_else(|| format!("unknown TCP flag `{name}` (expected FIN, SYN, RST, PSH, ACK, URG, ALL or NONE)"))?,
        };
    }
    Ok(bits)
}

fn fmt_flags(out: &mut String, bits: u8) {
    if bits == 0 {
        out.push_str("NONE");
        return;
    }
    let mut first = true;
    for (name, b) in FLAG_NAMES {
        if bits & b != 0 {
            if !first {
                out.push(',');
            }
            out.push_str(name);
            first = false;
        }
    }
}

impl Extension for Tcp {
    const OPTIONS: &'static [&'static str] = &["source-port", "sport", "destination-port", "dport", "syn", "tcp-flags", "tcp-option"];

    fn new(_ctx: &Ctx) -> Self {
        Tcp::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "source-port" | "sport" | "destination-port" | "dport" => {
                let dst = opt.starts_with('d');
                let slot = if dst { &mut self.dport } else { &mut self.sport };
                if slot.is_some() {
                    return Err(format!("only one `--{}` allowed", if dst { "destination-port" } else { "source-port" }));
                }
                let (lo, hi) = parse_port_range(args.value()?, "tcp")?;
                *slot = Some(PortRange { lo, hi, invert });
            }
            "syn" => {
                once(&self.flags, "tcp-flags")?;
                self.flags = Some(TcpFlags { mask: 0x17, comp: 0x02, invert });
            }
            "tcp-flags" => {
                once(&self.flags, "tcp-flags")?;
                let mask = parse_flags(args.value()?)?;
                let comp = parse_flags(args.value()?)?;
                self.flags = Some(TcpFlags { mask, comp, invert });
            }
            "tcp-option" => {
                once(&self.option, "tcp-option")?;
                let n = parse_uint(args.value()?, 0, 255)? as u8;
                self.option = Some((n, invert));
            }
            _ => return no_invert(true, opt),
        }
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if ctx.proto() != Some(6) {
            return Err("the tcp match requires `-p tcp`".to_string());
        }
        // `--sport :` (the full range, not inverted) is the same as no option at all.
        for slot in [&mut self.sport, &mut self.dport] {
            if matches!(slot, Some(PortRange { lo: 0, hi: 65535, invert: false })) {
                *slot = None;
            }
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(p) = self.sport {
            save_invert(out, p.invert);
            out.push_str(" --sport ");
            fmt_port_range(out, (p.lo, p.hi));
        }
        if let Some(p) = self.dport {
            save_invert(out, p.invert);
            out.push_str(" --dport ");
            fmt_port_range(out, (p.lo, p.hi));
        }
        if let Some((n, inv)) = self.option {
            save_invert(out, inv);
            out.push_str(&format!(" --tcp-option {n}"));
        }
        if let Some(f) = self.flags {
            save_invert(out, f.invert);
            out.push_str(" --tcp-flags ");
            fmt_flags(out, f.mask);
            out.push(' ');
            fmt_flags(out, f.comp);
        }
    }
}

impl PortRange {
    /// `port_match` of `xt_tcpudp.c`: the port lies in `lo..=hi`, the answer flipped by `!` (a
    /// reversed range never contains a port, so `! --sport 4:3` matches every port).
    pub fn matches(&self, port: u16) -> bool {
        (self.lo <= port && port <= self.hi) != self.invert
    }
}

/// The port ranges of tcp, udp and sctp: each given range must accept its port.
pub(crate) fn ports_match(sport: &Option<PortRange>, dport: &Option<PortRange>, pkt: &crate::packet::Packet) -> bool {
    sport.is_none_or(|r| r.matches(pkt.sport)) && dport.is_none_or(|r| r.matches(pkt.dport))
}

impl crate::matches::Evaluate for Tcp {
    /// `tcp_mt` (`xt_tcpudp.c`): source port, destination port, then the flags byte masked
    /// with `mask` must equal `comp` (each with its own `!`), then `--tcp-option`. A packet of
    /// another protocol does not match (the kernel only runs the match after `-p tcp`). The
    /// packet model has no fragments: every packet is a first fragment with a full header.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        if pkt.proto != 6 {
            return Eval::NoMatch;
        }
        if !ports_match(&self.sport, &self.dport, pkt) {
            return Eval::NoMatch;
        }
        if let Some(f) = self.flags
            && (pkt.tcp_flags & f.mask == f.comp) == f.invert
        {
            return Eval::NoMatch;
        }
        match self.option {
            None => Eval::Match,
            Some((n, inv)) => Eval::Unknown(format!(
                "`-m tcp {}--tcp-option {n}` depends on the TCP options the segment carries, which the packet does not describe",
                if inv { "! " } else { "" }
            )),
        }
    }
}

impl Cond for Tcp {
    const READS: Fields = Fields::PROTO.or(Fields::SPORT).or(Fields::DPORT);

    /// `tcp_mt`: the flags are those of the fixed SYN; `--tcp-option` is unknown wherever the rest
    /// matches.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        if let Some(f) = self.flags
            && (tcp_flags::SYN & f.mask == f.comp) == f.invert
        {
            return MatchCond::Eval(Eval::NoMatch);
        }
        let c = ports(cx, 6, self.sport, self.dport);
        if self.option.is_some() && c != MatchCond::Eval(Eval::NoMatch) {
            return MatchCond::Concrete(Self::READS);
        }
        c
    }
}

/// Test helpers shared by the eval tests of the matches of this module's group.
#[cfg(test)]
pub(crate) mod test_util {
    use crate::host::Host;
    use crate::matches::EvalCtx;
    use crate::xt::ext::{Args, Ctx, Extension, resolve_option};
    use crate::xt::{Family, Hook, Neg, Proto, TableName};

    /// Parses `line` as the options of extension `E` under `-p proto` (0: no `-p`), as
    /// `check_alone` does, and returns the parsed match.
    pub(crate) fn parse<E: Extension>(family: Family, proto: u8, line: &str) -> E {
        let ctx = Ctx { family, table: TableName::Filter, proto: (proto != 0).then(|| Neg::new(Proto(proto), false)) };
        let mut toks = Vec::new();
        crate::xt::token::tokenize(line, 0, &mut toks);
        let mut ext = E::new(&ctx);
        let (mut pos, mut invert) = (0, false);
        while pos < toks.len() {
            let t = toks[pos].as_str();
            pos += 1;
            if t == "!" {
                invert = true;
                continue;
            }
            let opt = t.strip_prefix("--").unwrap_or_else(|| panic!("bad token {t}"));
            let name = resolve_option(E::OPTIONS, opt).unwrap_or_else(|| panic!("unknown option {t}"));
            let mut args = Args::new(&toks, pos, ctx);
            ext.parse(name, invert, &mut args).unwrap_or_else(|e| panic!("{line}: {e}"));
            pos = args.pos();
            invert = false;
        }
        ext.finish(&ctx).unwrap_or_else(|e| panic!("{line}: {e}"));
        ext
    }

    /// An evaluation context on `host` at `hook` (filter table, family from `v6`).
    pub(crate) fn cx(host: &Host, hook: Hook, v6: bool) -> EvalCtx<'_> {
        EvalCtx { host, hook, table: TableName::Filter, family: if v6 { Family::V6 } else { Family::V4 }, conn: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, Neg, Proto, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: Some(Neg::new(Proto::TCP, false)) };
        check_alone::<Tcp>(ctx, line)
    }

    #[test]
    fn save_forms_match_libxt_tcp_t() {
        assert_eq!(check("--sport 1024:").unwrap(), " --sport 1024:65535");
        assert_eq!(check("--sport :").unwrap(), "");
        assert_eq!(check("! --dport :").unwrap(), " ! --dport 0:65535");
        assert_eq!(check("--dport 4:4").unwrap(), " --dport 4");
        assert_eq!(check("--syn").unwrap(), " --tcp-flags FIN,SYN,RST,ACK SYN");
        assert_eq!(check("! --sport 65535 --dport 1").unwrap(), " ! --sport 65535 --dport 1");
        assert_eq!(check("--dp 22").unwrap(), " --dport 22");
        assert!(check("--sport 4:3").is_err());
        assert!(check("--sport -1").is_err());
        assert!(check("--dport 1 --dport 3").is_err());
    }

    mod eval {
        use super::super::test_util::{cx, parse};
        use super::super::*;
        use crate::host::Host;
        use crate::matches::{Eval, Evaluate};
        use crate::packet::{Packet, tcp_flags};
        use crate::xt::{Family, Hook};

        fn run(line: &str, pkt: &Packet) -> Eval {
            let host = Host::new("h");
            parse::<Tcp>(Family::V4, 6, line).eval(pkt, &cx(&host, Hook::Input, false))
        }

        fn seg(sport: u16, dport: u16, flags: u8) -> Packet {
            let mut p = Packet::new(6, "10.0.0.1".parse().unwrap(), sport, "10.0.0.2".parse().unwrap(), dport);
            p.tcp_flags = flags;
            p
        }

        #[test]
        fn ports_and_inversion() {
            let p = seg(40000, 22, tcp_flags::SYN);
            assert_eq!(run("", &p), Eval::Match);
            assert_eq!(run("--dport 22", &p), Eval::Match);
            assert_eq!(run("--dport 23", &p), Eval::NoMatch);
            assert_eq!(run("! --dport 22", &p), Eval::NoMatch);
            assert_eq!(run("! --dport 23", &p), Eval::Match);
            assert_eq!(run("--sport 1024:", &p), Eval::Match);
            assert_eq!(run("--sport 1024: --dport 80", &p), Eval::NoMatch);
            assert_eq!(run("! --sport 0:1023 --dport 20:22", &p), Eval::Match);
            // Bounds are inclusive.
            assert_eq!(run("--sport 40000:40000", &p), Eval::Match);
            assert_eq!(run("--dport 23:65535", &p), Eval::NoMatch);
            // `! --dport 0:65535` (kept by the parser) never matches.
            assert_eq!(run("! --dport :", &p), Eval::NoMatch);
        }

        #[test]
        fn flags() {
            let syn = seg(1, 2, tcp_flags::SYN);
            let synack = seg(1, 2, tcp_flags::SYN | tcp_flags::ACK);
            let ack_psh = seg(1, 2, tcp_flags::ACK | tcp_flags::PSH);
            assert_eq!(run("--syn", &syn), Eval::Match);
            assert_eq!(run("--syn", &synack), Eval::NoMatch);
            assert_eq!(run("! --syn", &synack), Eval::Match);
            assert_eq!(run("! --syn", &syn), Eval::NoMatch);
            // PSH is outside `--syn`'s mask FIN,SYN,RST,ACK.
            let syn_psh = seg(1, 2, tcp_flags::SYN | tcp_flags::PSH);
            assert_eq!(run("--syn", &syn_psh), Eval::Match);
            assert_eq!(run("--tcp-flags ALL NONE", &seg(1, 2, 0)), Eval::Match);
            assert_eq!(run("--tcp-flags ALL NONE", &syn), Eval::NoMatch);
            assert_eq!(run("--tcp-flags SYN,ACK SYN,ACK", &synack), Eval::Match);
            assert_eq!(run("--tcp-flags ACK,PSH PSH", &ack_psh), Eval::NoMatch);
            // An empty mask compares nothing: `--tcp-flags NONE NONE` always matches.
            assert_eq!(run("--tcp-flags NONE NONE", &ack_psh), Eval::Match);
            // Flags in COMP outside MASK can never be equal.
            assert_eq!(run("--tcp-flags SYN SYN,ACK", &synack), Eval::NoMatch);
            // A port mismatch decides before the flags.
            assert_eq!(run("--dport 3 ! --syn", &synack), Eval::NoMatch);
        }

        #[test]
        fn options_are_unknown_unless_ports_or_flags_fail() {
            let p = seg(1, 22, tcp_flags::SYN);
            assert!(matches!(run("--tcp-option 2", &p), Eval::Unknown(_)));
            assert!(matches!(run("! --tcp-option 2", &p), Eval::Unknown(_)));
            assert_eq!(run("--dport 80 --tcp-option 2", &p), Eval::NoMatch);
            assert_eq!(run("--tcp-flags SYN NONE --tcp-option 2", &p), Eval::NoMatch);
        }

        #[test]
        fn other_protocols_do_not_match() {
            let mut p = seg(1, 22, tcp_flags::SYN);
            p.proto = 17;
            assert_eq!(run("! --dport 80", &p), Eval::NoMatch);
            assert_eq!(run("", &p), Eval::NoMatch);
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::prelude::*;

    use super::{Tcp, TcpFlags};
    use crate::classes::cond::test_util::{port_range, run};
    use crate::matches::Match;

    #[test]
    fn tcp_agrees() {
        run("tcp", 400, 150, |_| {
            let flags = proptest::option::weighted(0.4, (0u8..64, 0u8..64, any::<bool>()).prop_map(|(mask, comp, invert)| TcpFlags { mask, comp, invert }));
            let syn = Just(Some(TcpFlags { mask: 0x17, comp: 0x02, invert: false }));
            let option = proptest::option::weighted(0.1, (any::<u8>(), any::<bool>()));
            (port_range(), port_range(), prop_oneof![flags, syn], option)
                .prop_map(|(sport, dport, flags, option)| Match::Tcp(Tcp { sport, dport, flags, option }))
                .boxed()
        });
    }
}
