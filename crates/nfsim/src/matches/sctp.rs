//! `-m sctp`: ports and chunk types of SCTP packets (`xt_sctp.c`, `libxt_sctp.c`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, ports};
use crate::matches::Eval;
use crate::matches::tcp::PortRange;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, save_invert};
use crate::xt::value::parse_port_range;

/// Chunk types with a name, in libxt_sctp's table order: `(name, chunk type, flag letters)`.
/// The letters name flag bits 7 down to 0; `-` marks a bit without a name.
///
/// The position in this table matters: iptables records a chunk's flag test under its position
/// here rather than its chunk type (the two agree for DATA, ABORT and SHUTDOWN_COMPLETE, the
/// chunks of types 0-14 that have flags; `I_DATA:U` is recorded for type 15).
pub const CHUNK_TYPES: &[(&str, u8, &str)] = &[
    ("DATA", 0, "----IUBE"),
    ("INIT", 1, "--------"),
    ("INIT_ACK", 2, "--------"),
    ("SACK", 3, "--------"),
    ("HEARTBEAT", 4, "--------"),
    ("HEARTBEAT_ACK", 5, "--------"),
    ("ABORT", 6, "-------T"),
    ("SHUTDOWN", 7, "--------"),
    ("SHUTDOWN_ACK", 8, "--------"),
    ("ERROR", 9, "--------"),
    ("COOKIE_ECHO", 10, "--------"),
    ("COOKIE_ACK", 11, "--------"),
    ("ECN_ECNE", 12, "--------"),
    ("ECN_CWR", 13, "--------"),
    ("SHUTDOWN_COMPLETE", 14, "-------T"),
    ("I_DATA", 64, "----IUBE"),
    ("RE_CONFIG", 130, "--------"),
    ("PAD", 132, "--------"),
    ("ASCONF", 193, "--------"),
    ("ASCONF_ACK", 128, "--------"),
    ("FORWARD_TSN", 192, "--------"),
    ("I_FORWARD_TSN", 194, "--------"),
];

/// Flag tests the kernel can hold (`XT_NUM_SCTP_FLAGS`).
pub const MAX_FLAG_TESTS: usize = 4;

/// How the listed chunk types are tested (`SCTP_CHUNK_MATCH_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkMatchType {
    /// `any`: at least one listed chunk is present.
    Any,
    /// `all`: every listed chunk is present.
    All,
    /// `only`: no chunk other than the listed ones is present.
    Only,
}

impl ChunkMatchType {
    fn as_str(self) -> &'static str {
        match self {
            ChunkMatchType::Any => "any",
            ChunkMatchType::All => "all",
            ChunkMatchType::Only => "only",
        }
    }
}

/// The chunk types of `--chunk-types`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkSet {
    /// `ALL`: every type 0-255.
    All,
    /// The listed types, ascending and without duplicates (empty for `NONE`).
    List(Vec<u8>),
}

/// A test of some flag bits of one chunk type (`struct xt_sctp_flag_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ChunkFlags {
    /// The chunk type the kernel applies the test to (see [`CHUNK_TYPES`] for the quirk).
    pub chunk_type: u8,
    /// Required values of the bits in `mask`.
    pub flags: u8,
    /// The bits tested.
    pub mask: u8,
}

/// `--chunk-types MATCHTYPE CHUNKS`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Chunks {
    /// `any`, `all` or `only`.
    pub match_type: ChunkMatchType,
    /// The chunk types.
    pub types: ChunkSet,
    /// Flag tests, at most [`MAX_FLAG_TESTS`], in the order first written.
    pub flags: Vec<ChunkFlags>,
    /// `!`.
    pub invert: bool,
}

/// The sctp match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sctp {
    /// `--sport`.
    pub sport: Option<PortRange>,
    /// `--dport`.
    pub dport: Option<PortRange>,
    /// `--chunk-types`.
    pub chunks: Option<Box<Chunks>>,
}

fn parse_match_type(s: &str) -> Result<ChunkMatchType, String> {
    match s.to_ascii_lowercase().as_str() {
        "any" => Ok(ChunkMatchType::Any),
        "all" => Ok(ChunkMatchType::All),
        "only" => Ok(ChunkMatchType::Only),
        _ => Err(format!("unknown chunk match type `{s}` (expected all, any or only)")),
    }
}

/// Records flag `bit` of the chunk at table position `position`, as libxt_sctp does.
fn add_flag(flags: &mut Vec<ChunkFlags>, position: u8, bit: u8, set: bool) -> OptResult {
    let i = match flags.iter().position(|f| f.chunk_type == position) {
        Some(i) => i,
        None => {
            if flags.len() == MAX_FLAG_TESTS {
                return Err(format!("too many chunk types with flags (at most {MAX_FLAG_TESTS})"));
            }
            flags.push(ChunkFlags { chunk_type: position, flags: 0, mask: 0 });
            flags.len() - 1
        }
    };
    flags[i].mask |= 1 << bit;
    if set {
        flags[i].flags |= 1 << bit;
    }
    Ok(())
}

/// Parses `ALL`, `NONE` or `NAME[:FLAGS][,NAME[:FLAGS]]...` (names case-insensitive; an upper-case
/// flag letter requires the bit set, a lower-case one requires it clear).
fn parse_chunks(s: &str) -> Result<(ChunkSet, Vec<ChunkFlags>), String> {
    if s.eq_ignore_ascii_case("ALL") {
        return Ok((ChunkSet::All, Vec::new()));
    }
    let mut types = Vec::new();
    let mut flags = Vec::new();
    if s.eq_ignore_ascii_case("NONE") {
        return Ok((ChunkSet::List(types), flags));
    }
    // strtok: empty items are skipped.
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let (name, letters) = match item.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (item, None),
        };
        let position = CHUNK_TYPES
            .iter()
            .position(|(n, _, _)| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("unknown sctp chunk `{name}` (expected a chunk name such as DATA or INIT, ALL or NONE)"))?;
        let (_, chunk_type, valid) = CHUNK_TYPES[position];
        types.push(chunk_type);
        for c in letters.unwrap_or("").bytes() {
            // As in iptables, `-` finds the first unnamed bit of the table row.
            let at = valid.bytes().position(|v| v == c.to_ascii_uppercase()).ok_or_else(|| {
                let named: String = valid.chars().filter(|&v| v != '-').collect();
                format!("invalid flag `{}` for chunk {name} (expected one of `{named}`, upper case for set, lower case for clear)", c as char)
            })?;
            add_flag(&mut flags, position as u8, 7 - at as u8, c.is_ascii_uppercase())?;
        }
    }
    types.sort_unstable();
    types.dedup();
    Ok((ChunkSet::List(types), flags))
}

impl Extension for Sctp {
    const OPTIONS: &'static [&'static str] = &["source-port", "sport", "destination-port", "dport", "chunk-types"];

    fn new(_ctx: &Ctx) -> Self {
        Sctp::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "source-port" | "sport" | "destination-port" | "dport" => {
                let dst = opt.starts_with('d');
                let (slot, name) = if dst { (&mut self.dport, "destination-port") } else { (&mut self.sport, "source-port") };
                if slot.is_some() {
                    return Err(format!("only one `--{name}` allowed"));
                }
                let (lo, hi) = parse_port_range(args.value()?, "sctp")?;
                *slot = Some(PortRange { lo, hi, invert });
            }
            "chunk-types" => {
                if self.chunks.is_some() {
                    return Err("only one `--chunk-types` allowed".into());
                }
                let match_type = args.value()?;
                let list = args.optional().ok_or("`--chunk-types` requires two arguments (all, any or only, then a list of chunk types)")?;
                let match_type = parse_match_type(match_type)?;
                let (types, flags) = parse_chunks(list)?;
                self.chunks = Some(Box::new(Chunks { match_type, types, flags, invert }));
            }
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if ctx.proto() != Some(132) {
            return Err("the sctp match requires `-p sctp`".to_string());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        // Unlike tcp and udp, a given port range is printed even when it is `0:65535`.
        for (name, slot) in [("sport", self.sport), ("dport", self.dport)] {
            if let Some(p) = slot {
                save_invert(out, p.invert);
                if p.lo == p.hi {
                    let _ = write!(out, " --{name} {}", p.lo);
                } else {
                    let _ = write!(out, " --{name} {}:{}", p.lo, p.hi);
                }
            }
        }
        let Some(c) = &self.chunks else { return };
        save_invert(out, c.invert);
        let _ = write!(out, " --chunk-types {}", c.match_type.as_str());
        let types = match &c.types {
            ChunkSet::All => {
                out.push_str(" ALL");
                return;
            }
            ChunkSet::List(t) if t.is_empty() => {
                out.push_str(" NONE");
                return;
            }
            ChunkSet::List(t) => t,
        };
        for (i, &t) in types.iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            if let Some((name, _, _)) = CHUNK_TYPES.iter().find(|(_, ct, _)| *ct == t) {
                out.push_str(name);
            }
            // iptables looks the flag test up by chunk type, and its letters by table position.
            let test = c.flags.iter().find(|f| f.chunk_type == t);
            if let (Some(f), Some((_, _, letters))) = (test, CHUNK_TYPES.get(t as usize)) {
                if f.mask != 0 {
                    out.push(':');
                }
                for bit in (0..8).rev() {
                    if f.mask & (1 << bit) != 0 {
                        let letter = letters.as_bytes()[7 - bit] as char;
                        out.push(if f.flags & (1 << bit) != 0 { letter } else { letter.to_ascii_lowercase() });
                    }
                }
            }
        }
    }
}

impl Chunks {
    /// `match_packet` (`xt_sctp.c`) where its answer does not depend on the chunks, given that
    /// an SCTP packet carries at least one chunk (the kernel drops one without any): `None`
    /// when the chunks decide.
    fn without_chunks(&self) -> Option<bool> {
        match (&self.types, self.match_type) {
            // Every chunk is listed: `any` succeeds at the first, `only` never fails, unless a
            // flag test applies to some chunk.
            (ChunkSet::All, ChunkMatchType::Any | ChunkMatchType::Only) if self.flags.is_empty() => Some(true),
            // Nothing is listed: no chunk is found (`any`), every chunk is foreign (`only`),
            // and nothing remains to be seen (`all`).
            (ChunkSet::List(t), ChunkMatchType::Any | ChunkMatchType::Only) if t.is_empty() => Some(false),
            (ChunkSet::List(t), ChunkMatchType::All) if t.is_empty() => Some(true),
            _ => None,
        }
    }
}

impl crate::matches::Evaluate for Sctp {
    /// `sctp_mt` (`xt_sctp.c`): the source port, the destination port, then the chunk test,
    /// each given test with its own `!`, the first failing one deciding. A packet of another
    /// protocol does not match (the kernel only runs the match after `-p sctp`). The chunk
    /// test reads the packet's chunks, which the packet model lacks: it is unknown unless the
    /// answer is the same for every chunk sequence (`any ALL`, `only ALL` without flag tests,
    /// `any NONE`, `all NONE`, `only NONE`).
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        if pkt.proto != 132 || !crate::matches::tcp::ports_match(&self.sport, &self.dport, pkt) {
            return Eval::NoMatch;
        }
        let Some(c) = &self.chunks else { return Eval::Match };
        match c.without_chunks() {
            Some(hit) => Eval::from_bool(hit != c.invert),
            None => Eval::Unknown("`-m sctp --chunk-types` depends on the SCTP chunks the packet carries, which the packet does not describe".into()),
        }
    }
}

impl Cond for Sctp {
    const READS: Fields = Fields::PROTO.or(Fields::SPORT).or(Fields::DPORT);

    /// `sctp_mt`: the chunk test is decided only when it is the same for every chunk sequence (as
    /// the eval's `without_chunks`); otherwise it is unknown wherever the ports match.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        let c = ports(cx, 132, self.sport, self.dport);
        let Some(ch) = &self.chunks else { return c };
        let decided = match (&ch.types, ch.match_type) {
            (ChunkSet::All, ChunkMatchType::Any | ChunkMatchType::Only) if ch.flags.is_empty() => Some(true),
            (ChunkSet::List(t), ChunkMatchType::Any | ChunkMatchType::Only) if t.is_empty() => Some(false),
            (ChunkSet::List(t), ChunkMatchType::All) if t.is_empty() => Some(true),
            _ => None,
        };
        match decided {
            Some(hit) if hit != ch.invert => c,
            Some(_) => MatchCond::Eval(Eval::NoMatch),
            None if c == MatchCond::Eval(Eval::NoMatch) => c,
            None => MatchCond::Concrete(Self::READS),
        }
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

    fn check(line: &str) -> Result<String, String> {
        check_alone::<Sctp>(ctx(Some(Neg::new(Proto::SCTP, false))), line)
    }

    /// Every line of iptables' `extensions/libxt_sctp.t`.
    #[test]
    fn libxt_sctp_t() {
        for line in ["--sport 1", "--sport 65535", "--sport 1:65535", "--dport 1", "--dport 1:65535", "--dport 65535"] {
            assert_eq!(check(line), Ok(format!(" {line}")), "{line}");
        }
        for line in ["--sport -1", "--sport 65536", "--dport -1", "--dport 65536"] {
            assert!(check(line).is_err(), "{line}");
        }
        for name in [
            "DATA",
            "INIT",
            "INIT_ACK",
            "SACK",
            "HEARTBEAT",
            "HEARTBEAT_ACK",
            "ABORT",
            "SHUTDOWN",
            "SHUTDOWN_ACK",
            "ERROR",
            "COOKIE_ECHO",
            "COOKIE_ACK",
            "ECN_ECNE",
            "ECN_CWR",
            "ASCONF",
            "ASCONF_ACK",
            "FORWARD_TSN",
            "SHUTDOWN_COMPLETE",
            "I_DATA",
            "RE_CONFIG",
            "PAD",
            "I_FORWARD_TSN",
        ] {
            let line = format!("--chunk-types all {name}");
            assert_eq!(check(&line), Ok(format!(" {line}")), "{line}");
        }
    }

    /// Values as the real `iptables` 1.8.9 read and printed them.
    #[test]
    fn chunks_like_iptables_1_8_9() {
        for (line, saved) in [
            ("--sport :", " --sport 0:65535"),
            ("! --sport :", " ! --sport 0:65535"),
            ("--sport 5:", " --sport 5:65535"),
            ("--dport 0x10", " --dport 16"),
            ("", ""),
            ("--chunk-types any DATA,INIT", " --chunk-types any DATA,INIT"),
            ("--chunk-types only INIT,DATA", " --chunk-types only DATA,INIT"),
            ("! --chunk-types any ALL", " ! --chunk-types any ALL"),
            ("--chunk-types any all", " --chunk-types any ALL"),
            ("--chunk-types any NONE", " --chunk-types any NONE"),
            ("--chunk-types any ,", " --chunk-types any NONE"),
            ("--chunk-types ANY data:IuB", " --chunk-types any DATA:IuB"),
            ("--chunk-types any data:iube", " --chunk-types any DATA:iube"),
            ("--chunk-types any DATA:I,DATA:e", " --chunk-types any DATA:Ie"),
            ("--chunk-types any ABORT:T,SHUTDOWN_COMPLETE:t", " --chunk-types any ABORT:T,SHUTDOWN_COMPLETE:t"),
            ("--chunk-types any INIT:-", " --chunk-types any INIT:-"),
            ("--chunk-types any DATA:I,ABORT:T,SHUTDOWN_COMPLETE:t,I_DATA:U", " --chunk-types any DATA:I,ABORT:T,SHUTDOWN_COMPLETE:t,I_DATA"),
            ("--chunk-types any DATA,DATA", " --chunk-types any DATA"),
            ("--chunk-types any RE_CONFIG,PAD,ASCONF,ASCONF_ACK,FORWARD_TSN", " --chunk-types any ASCONF_ACK,RE_CONFIG,PAD,FORWARD_TSN,ASCONF"),
            ("--dport 5 --sport 6 --chunk-types any INIT", " --sport 6 --dport 5 --chunk-types any INIT"),
        ] {
            assert_eq!(check(line).as_deref(), Ok(saved), "{line}");
        }
        for line in [
            "--sport 4:3",
            "--sport ssh",
            "--chunk-types any INIT:x",
            "--chunk-types any DATA:I,ABORT:T,SHUTDOWN_COMPLETE:t,I_DATA:U,INIT:-",
            "--chunk-types some DATA",
            "--chunk-types any",
            "--chunk-types any --sport 1",
            "--chunk-types any DATA,ALL",
            "--sport 1 --sport 2",
            "--chunk-types any DATA --chunk-types any INIT",
        ] {
            assert!(check(line).is_err(), "{line}");
        }
        // `I_DATA:U` is recorded for chunk type 15, iptables' table position of I_DATA.
        let mut m = Sctp::default();
        let c = ctx(Some(Neg::new(Proto::SCTP, false)));
        let mut toks = Vec::new();
        crate::xt::token::tokenize("any I_DATA:U", 0, &mut toks);
        m.parse("chunk-types", false, &mut Args::new(&toks, 0, c)).unwrap();
        let chunks = m.chunks.unwrap();
        assert_eq!(chunks.types, ChunkSet::List(vec![64]));
        assert_eq!(chunks.flags, [ChunkFlags { chunk_type: 15, flags: 0x04, mask: 0x04 }]);
        assert!(check_alone::<Sctp>(ctx(None), "--dport 5").is_err());
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
            parse::<Sctp>(Family::V4, 132, line).eval(&pkt, &cx(&host, Hook::Input, false))
        }

        #[test]
        fn ports_and_inversion() {
            assert_eq!(run("", 132, 1, 2), Eval::Match);
            assert_eq!(run("--dport 2905", 132, 1, 2905), Eval::Match);
            assert_eq!(run("--dport 2905", 132, 1, 2906), Eval::NoMatch);
            assert_eq!(run("! --dport 2905", 132, 1, 2906), Eval::Match);
            assert_eq!(run("--sport 1000:2000 ! --dport 5", 132, 2000, 6), Eval::Match);
            assert_eq!(run("--sport 1000:2000 ! --dport 5", 132, 2001, 6), Eval::NoMatch);
            // Unlike tcp, `--sport :` is kept; it matches every port, and inverted none.
            assert_eq!(run("--sport :", 132, 7, 6), Eval::Match);
            assert_eq!(run("! --sport :", 132, 7, 6), Eval::NoMatch);
            assert_eq!(run("! --dport 1", 6, 1, 2), Eval::NoMatch);
        }

        #[test]
        fn chunks() {
            for line in [
                "--chunk-types any INIT",
                "--chunk-types all INIT,DATA",
                "--chunk-types only DATA",
                "! --chunk-types any INIT",
                "--chunk-types any DATA ! --dport 1",
            ] {
                assert!(matches!(run(line, 132, 1, 2), Eval::Unknown(_)), "{line}");
            }
            // Flag tests and `all ALL` depend on the chunks too.
            assert!(matches!(run("--chunk-types any DATA:I", 132, 1, 2), Eval::Unknown(_)));
            assert!(matches!(run("--chunk-types all ALL", 132, 1, 2), Eval::Unknown(_)));
            // A port mismatch decides first.
            assert_eq!(run("--dport 80 --chunk-types any INIT", 132, 1, 2), Eval::NoMatch);
            // Answers the same for every packet with at least one chunk.
            assert_eq!(run("--chunk-types any ALL", 132, 1, 2), Eval::Match);
            assert_eq!(run("--chunk-types only ALL", 132, 1, 2), Eval::Match);
            assert_eq!(run("! --chunk-types only ALL", 132, 1, 2), Eval::NoMatch);
            assert_eq!(run("--chunk-types any NONE", 132, 1, 2), Eval::NoMatch);
            assert_eq!(run("! --chunk-types any NONE", 132, 1, 2), Eval::Match);
            assert_eq!(run("--chunk-types only NONE", 132, 1, 2), Eval::NoMatch);
            assert_eq!(run("--chunk-types all NONE", 132, 1, 2), Eval::Match);
            assert_eq!(run("! --chunk-types all NONE", 132, 1, 2), Eval::NoMatch);
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::{ChunkFlags, ChunkMatchType, ChunkSet, Chunks, Sctp};
    use crate::classes::cond::test_util::{port_range, run};
    use crate::matches::Match;

    #[test]
    fn sctp_agrees() {
        run("sctp", 400, 150, |_| {
            let types = prop_oneof![
                Just(ChunkSet::All),
                vec(0u8..16, 0..3).prop_map(|mut v| {
                    v.sort_unstable();
                    v.dedup();
                    ChunkSet::List(v)
                })
            ];
            let flags = vec((0u8..16, any::<u8>(), any::<u8>()).prop_map(|(chunk_type, flags, mask)| ChunkFlags { chunk_type, flags, mask }), 0..2);
            let chunks = proptest::option::weighted(
                0.6,
                (select(vec![ChunkMatchType::Any, ChunkMatchType::All, ChunkMatchType::Only]), types, flags, any::<bool>())
                    .prop_map(|(match_type, types, flags, invert)| Box::new(Chunks { match_type, types, flags, invert })),
            );
            (port_range(), port_range(), chunks).prop_map(|(sport, dport, chunks)| Match::Sctp(Sctp { sport, dport, chunks })).boxed()
        });
    }
}
