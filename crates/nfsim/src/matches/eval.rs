//! What a match decides about a packet: the runtime half of `struct xt_match` (its `match`
//! function), with room for what a simulator cannot know.

use std::net::IpAddr;

use serde::Serialize;

use crate::host::Host;
use crate::packet::Packet;
use crate::xt::{Family, Hook, TableName};

/// A match's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Eval {
    /// The packet matches.
    Match,
    /// The packet does not match.
    NoMatch,
    /// The packet matches with this probability (`-m statistic --mode random`): both outcomes
    /// are followed.
    Chance(f64),
    /// The outcome cannot be known from the packet and host (rate limits, recent lists, payload,
    /// clock, an unmodelled extension): never guessed, both outcomes are reported.
    Unknown(String),
}

impl Eval {
    /// `Match` when `cond` holds, `NoMatch` otherwise.
    pub fn from_bool(cond: bool) -> Eval {
        if cond { Eval::Match } else { Eval::NoMatch }
    }

    /// A match with probability `p`; certain when `p` is 0 or 1 (`--probability 1` always matches).
    pub fn chance(p: f64) -> Eval {
        if p <= 0.0 {
            Eval::NoMatch
        } else if p >= 1.0 {
            Eval::Match
        } else {
            Eval::Chance(p)
        }
    }

    /// Applies a `!`: swaps match and no-match (a chance `p` becomes `1 - p`). Each option's `!`
    /// is applied before options are combined with [`Eval::and`].
    pub fn invert(self, invert: bool) -> Eval {
        if !invert {
            return self;
        }
        match self {
            Eval::Match => Eval::NoMatch,
            Eval::NoMatch => Eval::Match,
            Eval::Chance(p) => Eval::chance(1.0 - p),
            u @ Eval::Unknown(_) => u,
        }
    }

    /// Combines two conditions that must both hold (the options of one match, or the matches of
    /// one rule). A certain no-match wins over anything unknown; independent chances multiply
    /// (each `statistic` match draws its own number); unknown reasons are kept together.
    pub fn and(self, other: Eval) -> Eval {
        match (self, other) {
            (Eval::NoMatch, _) | (_, Eval::NoMatch) => Eval::NoMatch,
            (Eval::Match, o) | (o, Eval::Match) => o,
            (Eval::Chance(a), Eval::Chance(b)) => Eval::chance(a * b),
            (Eval::Unknown(a), Eval::Unknown(b)) if a != b => Eval::Unknown(format!("{a}; {b}")),
            (u @ Eval::Unknown(_), _) | (_, u @ Eval::Unknown(_)) => u,
        }
    }
}

/// The connection-tracking entry of the packet's connection, as the conntrack match sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CtTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// Conntrack status bits (`enum ip_conntrack_status`).
pub mod ct_status {
    /// `IPS_EXPECTED`.
    pub const EXPECTED: u32 = 1 << 0;
    /// `IPS_SEEN_REPLY`.
    pub const SEEN_REPLY: u32 = 1 << 1;
    /// `IPS_ASSURED`.
    pub const ASSURED: u32 = 1 << 2;
    /// `IPS_CONFIRMED`.
    pub const CONFIRMED: u32 = 1 << 3;
    /// `IPS_SRC_NAT`.
    pub const SRC_NAT: u32 = 1 << 4;
    /// `IPS_DST_NAT`.
    pub const DST_NAT: u32 = 1 << 5;
}

/// The packet's connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conn {
    /// The original direction's tuple (as the first packet was seen).
    pub orig: CtTuple,
    /// The reply direction's tuple (after NAT).
    pub reply: CtTuple,
    /// Status bits ([`ct_status`]).
    pub status: u32,
    /// True when the packet travels in the original direction.
    pub original_dir: bool,
}

/// Everything besides the packet that a match may consult.
#[derive(Clone, Copy, Debug)]
pub struct EvalCtx<'a> {
    /// The host whose netfilter runs (addresses for addrtype, ipsets for set).
    pub host: &'a Host,
    /// The hook being traversed.
    pub hook: Hook,
    /// The table being traversed.
    pub table: TableName,
    /// IPv4 or IPv6.
    pub family: Family,
    /// The packet's connection, when conntrack is on; `None` for untracked packets.
    pub conn: Option<&'a Conn>,
}

/// What a match extension implements to be evaluated.
pub trait Evaluate {
    /// Decides whether `pkt` matches, in context `cx`.
    fn eval(&self, pkt: &Packet, cx: &EvalCtx<'_>) -> Eval;
}
