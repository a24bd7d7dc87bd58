//! Regions of the packet space: a cube is a product of per-field sets of the *input* packet
//! (what the sender chose), a region a union of disjoint cubes; tests are conditions on the
//! *current* packet, translated back to the input through what the walk rewrote so far (`Cur`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::{CtState, Packet};
use crate::xt::Family;

use super::set::{Bits, Ranges};

/// The connection-tracking states as a bit set (bit `i` = `STATES[i]`).
pub const STATES: [CtState; 5] = [CtState::New, CtState::Established, CtState::Related, CtState::Invalid, CtState::Untracked];

/// The bit of one state in a state set.
pub fn state_bit(s: CtState) -> u8 {
    1 << STATES.iter().position(|x| *x == s).unwrap_or(0)
}

/// All states.
pub const ALL_STATES: u8 = 0b1_1111;

/// An address as a number: IPv4 in the low 32 bits.
pub fn addr_num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

/// The address of a number in `family`.
pub fn num_addr(n: u128, family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// Address width in bits.
pub fn addr_bits(family: Family) -> u8 {
    match family {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

/// A product of sets of input-packet fields. Every field is always restricted to its domain, so
/// a cube is empty exactly when one of its fields is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cube {
    /// Protocol numbers.
    pub proto: Ranges<u8>,
    /// Source addresses (`0.0.0.0`/`::` = the socket is not bound: the kernel picks).
    pub src: Ranges<u128>,
    /// Destination addresses.
    pub dst: Ranges<u128>,
    /// Source ports.
    pub sport: Ranges<u16>,
    /// Destination ports.
    pub dport: Ranges<u16>,
    /// Socket owner uid.
    pub uid: Ranges<u32>,
    /// Socket owner gid.
    pub gid: Ranges<u32>,
    /// Packet mark.
    pub mark: Bits,
    /// Conntrack states (bit set over [`STATES`]).
    pub state: u8,
}

impl Cube {
    /// True when no packet is in the cube.
    pub fn is_empty(&self) -> bool {
        self.state == 0
            || self.proto.is_empty()
            || self.src.is_empty()
            || self.dst.is_empty()
            || self.sport.is_empty()
            || self.dport.is_empty()
            || self.uid.is_empty()
            || self.gid.is_empty()
            || self.mark.is_empty()
    }

    /// The intersection, `None` when empty.
    pub fn intersect(&self, o: &Cube) -> Option<Cube> {
        if self.is_disjoint(o) {
            return None;
        }
        let c = Cube {
            proto: self.proto.intersect(&o.proto),
            src: self.src.intersect(&o.src),
            dst: self.dst.intersect(&o.dst),
            sport: self.sport.intersect(&o.sport),
            dport: self.dport.intersect(&o.dport),
            uid: self.uid.intersect(&o.uid),
            gid: self.gid.intersect(&o.gid),
            mark: self.mark.intersect(&o.mark),
            state: self.state & o.state,
        };
        (!c.is_empty()).then_some(c)
    }

    /// True when the cubes share no packet (checked field by field, cheapest first).
    pub fn is_disjoint(&self, o: &Cube) -> bool {
        self.state & o.state == 0
            || self.proto.is_disjoint(&o.proto)
            || self.dst.is_disjoint(&o.dst)
            || self.dport.is_disjoint(&o.dport)
            || self.src.is_disjoint(&o.src)
            || self.sport.is_disjoint(&o.sport)
            || self.uid.is_disjoint(&o.uid)
            || self.gid.is_disjoint(&o.gid)
            || self.mark.is_disjoint(&o.mark)
    }

    /// `self \ o` as disjoint cubes: for each field in turn, the part that agrees with `o` on
    /// the fields before it and not on this one.
    pub fn minus(&self, o: &Cube) -> Vec<Cube> {
        if self.is_disjoint(o) {
            return vec![self.clone()];
        }
        let mut out = Vec::new();
        let mut rest = self.clone();
        macro_rules! field {
            ($f:ident) => {
                let outside = rest.$f.minus(&o.$f);
                if !outside.is_empty() {
                    let mut piece = rest.clone();
                    piece.$f = outside;
                    out.push(piece);
                    rest.$f = rest.$f.intersect(&o.$f);
                }
            };
        }
        if rest.state & !o.state != 0 {
            let mut piece = rest.clone();
            piece.state &= !o.state;
            out.push(piece);
            rest.state &= o.state;
        }
        field!(proto);
        field!(dst);
        field!(dport);
        field!(src);
        field!(sport);
        field!(uid);
        field!(gid);
        field!(mark);
        out
    }

    /// True when `ip`'s packet fields lie in the cube.
    pub fn contains(&self, p: &Input) -> bool {
        self.state & state_bit(p.state) != 0
            && self.proto.contains(p.proto)
            && self.src.contains(p.src)
            && self.dst.contains(p.dst)
            && self.sport.contains(p.sport)
            && self.dport.contains(p.dport)
            && self.uid.contains(p.uid)
            && self.gid.contains(p.gid)
            && self.mark.contains(p.mark)
    }

    /// A readable packet of the cube, `None` when empty: common protocols first, source port
    /// 40000 (what `nfsim trace` uses), a bound source only when the cube has no unbound one,
    /// otherwise the smallest value (non-zero where possible) of each field.
    pub fn example(&self) -> Option<Input> {
        let mut i = self.min()?;
        if let Some(p) = [6u8, 17, 1, 58, 132].into_iter().find(|p| self.proto.contains(*p)) {
            i.proto = p;
        }
        let nonzero = |s: &Ranges<u128>| s.minus(&Ranges::point(0)).min();
        if !self.dst.contains(0) || self.dst.single().is_none() {
            // Outside 0.0.0.0/8 ("this network") where possible.
            i.dst = self.dst.minus(&Ranges::range(0, 0x00ff_ffff)).min().or_else(|| nonzero(&self.dst)).unwrap_or(i.dst);
        }
        // Sources other than "unbound" (an arriving packet): an address outside 0.0.0.0/8 reads
        // better than 0.0.0.0.
        if self.src.intervals().first().is_some_and(|&(lo, hi)| lo == 0 && hi > 0) {
            i.src = self.src.minus(&Ranges::range(0, 0x00ff_ffff)).min().unwrap_or(i.src);
        }
        if self.sport.contains(40000) {
            i.sport = 40000;
        } else if let Some(p) = self.sport.minus(&Ranges::point(0)).min() {
            i.sport = p;
        }
        if let Some(p) = self.dport.minus(&Ranges::point(0)).min().filter(|_| !self.dport.contains(0) || self.dport.single().is_none()) {
            i.dport = p;
        }
        Some(i)
    }

    /// The smallest packet of the cube (field by field), `None` when empty.
    pub fn min(&self) -> Option<Input> {
        if self.is_empty() {
            return None;
        }
        Some(Input {
            proto: self.proto.min()?,
            src: self.src.min()?,
            dst: self.dst.min()?,
            sport: self.sport.min()?,
            dport: self.dport.min()?,
            uid: self.uid.min()?,
            gid: self.gid.min()?,
            mark: self.mark.min()?,
            state: STATES[self.state.trailing_zeros() as usize],
        })
    }
}

/// One input packet, as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    /// Protocol.
    pub proto: u8,
    /// Source address (0 = unbound).
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Mark.
    pub mark: u32,
    /// Conntrack state.
    pub state: CtState,
}

impl Input {
    /// The concrete packet (ports 0 for protocols without ports).
    pub fn packet(&self, family: Family) -> Packet {
        let mut p = Packet::new(self.proto, num_addr(self.src, family), self.sport, num_addr(self.dst, family), self.dport);
        p.mark = self.mark;
        p.ct_state = self.state;
        p
    }

    /// The input fields of a concrete packet.
    pub fn of(p: &Packet) -> Input {
        let (uid, gid) = p.owner.as_ref().map_or((0, 0), |o| (o.uid, o.gid));
        Input { proto: p.proto, src: addr_num(p.src), dst: addr_num(p.dst), sport: p.sport, dport: p.dport, uid, gid, mark: p.mark, state: p.ct_state }
    }
}

/// A union of pairwise-disjoint cubes.
pub type Region = Vec<Cube>;

/// The same set with fewer cubes: two cubes that differ in one field only become one (for
/// descriptions; regions of more than 400 cubes are left as they are).
pub fn simplify(region: &[Cube]) -> Region {
    let mut r: Region = region.to_vec();
    if r.len() > 400 {
        return r;
    }
    'again: loop {
        for i in 0..r.len() {
            for j in i + 1..r.len() {
                if let Some(m) = merge(&r[i], &r[j]) {
                    r[i] = m;
                    r.swap_remove(j);
                    continue 'again;
                }
            }
        }
        return r;
    }
}

/// The union of two cubes when it is a cube (they differ in at most one field).
fn merge(a: &Cube, b: &Cube) -> Option<Cube> {
    let diffs = [
        a.proto != b.proto,
        a.src != b.src,
        a.dst != b.dst,
        a.sport != b.sport,
        a.dport != b.dport,
        a.uid != b.uid,
        a.gid != b.gid,
        !a.mark.same_set(&b.mark),
        a.state != b.state,
    ];
    if diffs.iter().filter(|d| **d).count() > 1 {
        return None;
    }
    let mut m = a.clone();
    m.proto = a.proto.union(&b.proto);
    m.src = a.src.union(&b.src);
    m.dst = a.dst.union(&b.dst);
    m.sport = a.sport.union(&b.sport);
    m.dport = a.dport.union(&b.dport);
    m.uid = a.uid.union(&b.uid);
    m.gid = a.gid.union(&b.gid);
    m.mark = a.mark.union(&b.mark);
    m.state = a.state | b.state;
    Some(m)
}

/// `region ∩ cubes` (cubes pairwise disjoint).
pub fn intersect(region: &[Cube], cubes: &[Cube]) -> Region {
    let mut out = Vec::new();
    for a in region {
        for b in cubes {
            if let Some(c) = a.intersect(b) {
                out.push(c);
            }
        }
    }
    out
}

/// `region \ cubes`.
pub fn minus(region: &[Cube], cubes: &[Cube]) -> Region {
    minus_owned(region.to_vec(), cubes)
}

/// `region \ cubes`, reusing `region`'s cubes that `cubes` do not touch.
pub fn minus_owned(region: Region, cubes: &[Cube]) -> Region {
    let mut cur = region;
    for b in cubes {
        if cur.iter().all(|a| a.is_disjoint(b)) {
            continue;
        }
        let mut next = Vec::with_capacity(cur.len() + 4);
        for a in cur {
            if a.is_disjoint(b) {
                next.push(a);
            } else {
                next.extend(a.minus(b));
            }
        }
        cur = next;
    }
    cur
}

/// A field of the current packet: still the input's value, or a constant the walk set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Val<T> {
    /// The input packet's value.
    In,
    /// A constant.
    Const(T),
}

/// A 32-bit value derived from the input mark by bitwise rewrites: `(mark_in & keep) ^ xor`
/// (every MARK, CONNMARK and TPROXY rewrite is bitwise and keeps bit positions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lin {
    /// Bits copied from the input mark.
    pub keep: u32,
    /// Constant bits xor-ed in.
    pub xor: u32,
}

impl Lin {
    /// The input mark itself.
    pub const IDENTITY: Lin = Lin { keep: u32::MAX, xor: 0 };

    /// A constant.
    pub fn constant(v: u32) -> Lin {
        Lin { keep: 0, xor: v }
    }

    /// The value for input mark `m`.
    pub fn at(self, m: u32) -> u32 {
        (m & self.keep) ^ self.xor
    }
}

/// An address of the current packet: the input's source, the input's destination (a locally
/// generated packet to a local address gets that address as its source), or a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AVal {
    /// The input packet's source address.
    Src,
    /// The input packet's destination address.
    Dst,
    /// A constant.
    Const(u128),
}

impl AVal {
    /// The value for input `i`.
    pub fn at(self, i: &Input) -> u128 {
        match self {
            AVal::Src => i.src,
            AVal::Dst => i.dst,
            AVal::Const(c) => c,
        }
    }
}

/// What the current packet is in terms of the input packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cur {
    /// Source address.
    pub src: AVal,
    /// Destination address.
    pub dst: AVal,
    /// Source port.
    pub sport: Val<u16>,
    /// Destination port.
    pub dport: Val<u16>,
    /// Mark.
    pub mark: Lin,
    /// Conntrack mark.
    pub ctmark: Lin,
    /// Conntrack state.
    pub state: Val<CtState>,
}

impl Cur {
    /// The input packet unchanged (conntrack mark 0).
    pub const INPUT: Cur =
        Cur { src: AVal::Src, dst: AVal::Dst, sport: Val::In, dport: Val::In, mark: Lin::IDENTITY, ctmark: Lin { keep: 0, xor: 0 }, state: Val::In };
}

/// The field's value for an input whose field is `input`.
pub fn pick<T: Copy>(v: Val<T>, input: T) -> T {
    match v {
        Val::In => input,
        Val::Const(c) => c,
    }
}

impl Cur {
    /// The current packet's fields for input `i`.
    pub fn at(&self, i: &Input) -> Input {
        Input {
            src: self.src.at(i),
            dst: self.dst.at(i),
            sport: pick(self.sport, i.sport),
            dport: pick(self.dport, i.dport),
            mark: self.mark.at(i.mark),
            state: pick(self.state, i.state),
            ..*i
        }
    }
}

/// A condition on the current packet: each field present must lie in its set (a conjunction).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Test {
    /// Protocol.
    pub proto: Option<Ranges<u8>>,
    /// Source address.
    pub src: Option<Ranges<u128>>,
    /// Destination address.
    pub dst: Option<Ranges<u128>>,
    /// Source port.
    pub sport: Option<Ranges<u16>>,
    /// Destination port.
    pub dport: Option<Ranges<u16>>,
    /// Owner uid.
    pub uid: Option<Ranges<u32>>,
    /// Owner gid.
    pub gid: Option<Ranges<u32>>,
    /// Mark.
    pub mark: Option<Bits>,
    /// Conntrack mark.
    pub ctmark: Option<Bits>,
    /// Conntrack states.
    pub state: Option<u8>,
}

impl Test {
    /// The same condition on the input packet, as a cube within `domain`; `None` when no input
    /// packet satisfies it.
    pub fn to_input(&self, cur: &Cur, domain: &Cube) -> Option<Cube> {
        let mut c = domain.clone();
        if let Some(s) = &self.proto {
            c.proto = c.proto.intersect(s);
        }
        macro_rules! val_field {
            ($f:ident) => {
                if let Some(s) = &self.$f {
                    match cur.$f {
                        Val::In => c.$f = c.$f.intersect(s),
                        Val::Const(v) => {
                            if !s.contains(v) {
                                return None;
                            }
                        }
                    }
                }
            };
        }
        for (v, s) in [(cur.src, &self.src), (cur.dst, &self.dst)] {
            if let Some(s) = s {
                match v {
                    AVal::Src => c.src = c.src.intersect(s),
                    AVal::Dst => c.dst = c.dst.intersect(s),
                    AVal::Const(v) => {
                        if !s.contains(v) {
                            return None;
                        }
                    }
                }
            }
        }
        val_field!(sport);
        val_field!(dport);
        if let Some(s) = &self.uid {
            c.uid = c.uid.intersect(s);
        }
        if let Some(s) = &self.gid {
            c.gid = c.gid.intersect(s);
        }
        if let Some(s) = &self.mark {
            c.mark = c.mark.intersect(&s.preimage(cur.mark.keep, cur.mark.xor));
        }
        if let Some(s) = &self.ctmark {
            c.mark = c.mark.intersect(&s.preimage(cur.ctmark.keep, cur.ctmark.xor));
        }
        if let Some(s) = self.state {
            match cur.state {
                Val::In => c.state &= s,
                Val::Const(v) => {
                    if s & state_bit(v) == 0 {
                        return None;
                    }
                }
            }
        }
        (!c.is_empty()).then_some(c)
    }

    /// True when the current packet `p` satisfies the test (for checking; the walk never needs it).
    pub fn holds(&self, p: &Input, ctmark: u32) -> bool {
        self.proto.as_ref().is_none_or(|s| s.contains(p.proto))
            && self.src.as_ref().is_none_or(|s| s.contains(p.src))
            && self.dst.as_ref().is_none_or(|s| s.contains(p.dst))
            && self.sport.as_ref().is_none_or(|s| s.contains(p.sport))
            && self.dport.as_ref().is_none_or(|s| s.contains(p.dport))
            && self.uid.as_ref().is_none_or(|s| s.contains(p.uid))
            && self.gid.as_ref().is_none_or(|s| s.contains(p.gid))
            && self.mark.as_ref().is_none_or(|s| s.contains(p.mark))
            && self.ctmark.as_ref().is_none_or(|s| s.contains(ctmark))
            && self.state.is_none_or(|s| s & state_bit(p.state) != 0)
    }

    /// The conjunction of two tests.
    pub fn and(mut self, o: &Test) -> Test {
        fn meet<T: Clone>(a: &mut Option<T>, b: &Option<T>, f: impl Fn(&T, &T) -> T) {
            if let Some(b) = b {
                *a = Some(match a {
                    Some(a) => f(a, b),
                    None => b.clone(),
                });
            }
        }
        meet(&mut self.proto, &o.proto, |a, b| a.intersect(b));
        meet(&mut self.src, &o.src, |a, b| a.intersect(b));
        meet(&mut self.dst, &o.dst, |a, b| a.intersect(b));
        meet(&mut self.sport, &o.sport, |a, b| a.intersect(b));
        meet(&mut self.dport, &o.dport, |a, b| a.intersect(b));
        meet(&mut self.uid, &o.uid, |a, b| a.intersect(b));
        meet(&mut self.gid, &o.gid, |a, b| a.intersect(b));
        meet(&mut self.mark, &o.mark, |a, b| a.intersect(b));
        meet(&mut self.ctmark, &o.ctmark, |a, b| a.intersect(b));
        meet(&mut self.state, &o.state, |a, b| a & b);
        self
    }
}
