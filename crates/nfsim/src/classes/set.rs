//! Exact sets of packet field values for the class analysis: interval sets over integers and ternary (value/care-mask) sets of 32-bit marks.
//!
//! - [`Ranges`] holds a set of integers as sorted, disjoint, non-adjacent inclusive intervals; it
//!   is canonical, so two equal sets are equal values.
//! - [`Bits`] holds a set of 32-bit marks as pairwise-disjoint ternary cubes `(value, care)`; its
//!   representation is normalised but not always unique, so compare sets with [`Bits::same_set`].

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// An unsigned integer type that a [`Ranges`] can hold: a bounded, totally ordered domain.
pub trait Int: Copy + Ord + Eq + Hash + Debug {
    /// The smallest value of the type.
    const MIN: Self;
    /// The largest value of the type.
    const MAX: Self;
    /// The next value; saturates at [`Int::MAX`].
    fn succ(self) -> Self;
    /// The previous value; saturates at [`Int::MIN`].
    fn pred(self) -> Self;
    /// The number of values in `[lo, hi]` (0 when `lo > hi`), saturating at `u128::MAX`.
    fn width(lo: Self, hi: Self) -> u128;
}

macro_rules! impl_small_int {
    ($($t:ty),*) => {$(
        impl Int for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
            fn succ(self) -> Self {
                self.saturating_add(1)
            }
            fn pred(self) -> Self {
                self.saturating_sub(1)
            }
            fn width(lo: Self, hi: Self) -> u128 {
                if lo > hi { 0 } else { u128::from(hi - lo) + 1 }
            }
        }
    )*};
}

impl_small_int!(u8, u16, u32);

impl Int for u128 {
    const MIN: Self = u128::MIN;
    const MAX: Self = u128::MAX;
    fn succ(self) -> Self {
        self.saturating_add(1)
    }
    fn pred(self) -> Self {
        self.saturating_sub(1)
    }
    fn width(lo: Self, hi: Self) -> u128 {
        if lo > hi { 0 } else { (hi - lo).saturating_add(1) }
    }
}

/// A set of integers as sorted, disjoint, non-adjacent inclusive intervals.
///
/// The form is canonical (adjacent and overlapping intervals are always merged), so the derived
/// equality is set equality.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ranges<T: Int> {
    iv: Iv<T>,
}

/// The intervals of a set: up to two inline (most sets are one interval or one hole), more on
/// the heap. Reads go through the slice.
#[derive(Clone)]
enum Iv<T: Int> {
    Inline(u8, [(T, T); 2]),
    Heap(Vec<(T, T)>),
}

impl<T: Int> Iv<T> {
    fn new() -> Self {
        Iv::Inline(0, [(T::MIN, T::MIN); 2])
    }

    fn one(lo: T, hi: T) -> Self {
        Iv::Inline(1, [(lo, hi), (T::MIN, T::MIN)])
    }

    fn with_capacity(n: usize) -> Self {
        if n <= 2 { Self::new() } else { Iv::Heap(Vec::with_capacity(n)) }
    }

    fn push(&mut self, x: (T, T)) {
        match self {
            Iv::Inline(n, a) if (*n as usize) < 2 => {
                a[*n as usize] = x;
                *n += 1;
            }
            Iv::Inline(n, a) => {
                let mut v = Vec::with_capacity(4);
                v.extend_from_slice(&a[..*n as usize]);
                v.push(x);
                *self = Iv::Heap(v);
            }
            Iv::Heap(v) => v.push(x),
        }
    }
}

impl<T: Int> std::ops::Deref for Iv<T> {
    type Target = [(T, T)];
    fn deref(&self) -> &[(T, T)] {
        match self {
            Iv::Inline(n, a) => &a[..*n as usize],
            Iv::Heap(v) => v,
        }
    }
}

impl<T: Int> std::ops::DerefMut for Iv<T> {
    fn deref_mut(&mut self) -> &mut [(T, T)] {
        match self {
            Iv::Inline(n, a) => &mut a[..*n as usize],
            Iv::Heap(v) => v,
        }
    }
}

impl<T: Int> PartialEq for Iv<T> {
    fn eq(&self, o: &Self) -> bool {
        **self == **o
    }
}

impl<T: Int> Eq for Iv<T> {}

impl<'a, T: Int> IntoIterator for &'a Iv<T> {
    type Item = &'a (T, T);
    type IntoIter = std::slice::Iter<'a, (T, T)>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Int> std::hash::Hash for Iv<T> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (**self).hash(h);
    }
}

impl<T: Int> std::fmt::Debug for Iv<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// Appends `[lo, hi]` to a canonical list whose last interval starts at or before `lo`, merging
/// it into the last interval when they overlap or touch.
fn push_merge<T: Int>(out: &mut Iv<T>, lo: T, hi: T) {
    if let Some(last) = out.last_mut()
        && (last.1 == T::MAX || lo <= last.1.succ())
    {
        if hi > last.1 {
            last.1 = hi;
        }
        return;
    }
    out.push((lo, hi));
}

/// True when walking `small` with a binary search into `large` per interval beats a linear merge.
fn sparse(small: usize, large: usize) -> bool {
    let log = large.checked_ilog2().unwrap_or(0) as usize + 1;
    small.saturating_mul(log) < large
}

impl<T: Int> Ranges<T> {
    /// The empty set.
    pub fn empty() -> Self {
        Self { iv: Iv::new() }
    }

    /// The set of every value of `T`.
    pub fn full() -> Self {
        Self { iv: Iv::one(T::MIN, T::MAX) }
    }

    /// The set holding only `v`.
    pub fn point(v: T) -> Self {
        Self { iv: Iv::one(v, v) }
    }

    /// The values in `[lo, hi]`; empty when `lo > hi`.
    pub fn range(lo: T, hi: T) -> Self {
        if lo > hi { Self::empty() } else { Self { iv: Iv::one(lo, hi) } }
    }

    /// The union of inclusive intervals given in any order, possibly overlapping; pairs with
    /// `lo > hi` are ignored.
    pub fn from_intervals(intervals: impl IntoIterator<Item = (T, T)>) -> Self {
        let mut all: Vec<(T, T)> = intervals.into_iter().filter(|&(lo, hi)| lo <= hi).collect();
        all.sort_unstable();
        let mut iv = Iv::with_capacity(all.len());
        for (lo, hi) in all {
            push_merge(&mut iv, lo, hi);
        }
        Self { iv }
    }

    /// True when the set has no value.
    pub fn is_empty(&self) -> bool {
        self.iv.is_empty()
    }

    /// True when the set holds every value of `T`.
    pub fn is_full(&self) -> bool {
        self.iv.len() == 1 && self.iv[0] == (T::MIN, T::MAX)
    }

    /// True when `v` is in the set (binary search).
    pub fn contains(&self, v: T) -> bool {
        let k = self.iv.partition_point(|&(_, hi)| hi < v);
        k < self.iv.len() && self.iv[k].0 <= v
    }

    /// The smallest value of the set.
    pub fn min(&self) -> Option<T> {
        self.iv.first().map(|&(lo, _)| lo)
    }

    /// The canonical intervals, ascending.
    pub fn intervals(&self) -> &[(T, T)] {
        &self.iv
    }

    /// The number of values in the set, saturating at `u128::MAX`.
    pub fn len(&self) -> u128 {
        self.iv.iter().fold(0u128, |acc, &(lo, hi)| acc.saturating_add(T::width(lo, hi)))
    }

    /// The only value of the set when it has exactly one.
    pub fn single(&self) -> Option<T> {
        match &*self.iv {
            [(lo, hi)] if lo == hi => Some(*lo),
            _ => None,
        }
    }

    /// The values in either set (linear merge).
    pub fn union(&self, other: &Self) -> Self {
        let (a, b) = (&self.iv, &other.iv);
        if a.is_empty() {
            return other.clone();
        }
        if b.is_empty() {
            return self.clone();
        }
        let mut out = Iv::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let next = if j >= b.len() || (i < a.len() && a[i].0 <= b[j].0) {
                i += 1;
                a[i - 1]
            } else {
                j += 1;
                b[j - 1]
            };
            push_merge(&mut out, next.0, next.1);
        }
        Self { iv: out }
    }

    /// The values in both sets: a linear merge, or a binary search per interval of the smaller
    /// side when it is much smaller than the other (`O(k log n + output)`).
    pub fn intersect(&self, other: &Self) -> Self {
        let (small, large) = if self.iv.len() <= other.iv.len() { (&self.iv, &other.iv) } else { (&other.iv, &self.iv) };
        if small.is_empty() {
            return Self::empty();
        }
        let mut out = Iv::new();
        if sparse(small.len(), large.len()) {
            let mut start = 0;
            for &(lo, hi) in small {
                start += large[start..].partition_point(|&(_, h)| h < lo);
                let mut k = start;
                while k < large.len() && large[k].0 <= hi {
                    out.push((lo.max(large[k].0), hi.min(large[k].1)));
                    k += 1;
                }
            }
            return Self { iv: out };
        }
        let (mut i, mut j) = (0, 0);
        while i < small.len() && j < large.len() {
            let lo = small[i].0.max(large[j].0);
            let hi = small[i].1.min(large[j].1);
            if lo <= hi {
                out.push((lo, hi));
            }
            if small[i].1 < large[j].1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Self { iv: out }
    }

    /// The values in `self` but not in `other` (linear merge).
    pub fn minus(&self, other: &Self) -> Self {
        let (a, b) = (&self.iv, &other.iv);
        if a.is_empty() || b.is_empty() {
            return self.clone();
        }
        let mut out = Iv::with_capacity(a.len() + 1);
        let mut j = 0;
        for &(lo, hi) in a {
            let mut cur = lo;
            while j < b.len() && b[j].1 < cur {
                j += 1;
            }
            let mut covered = false;
            while j < b.len() && b[j].0 <= hi {
                let (bl, bh) = b[j];
                if bl > cur {
                    out.push((cur, bl.pred()));
                }
                if bh >= hi {
                    covered = true;
                    break;
                }
                cur = bh.succ();
                j += 1;
            }
            if !covered {
                out.push((cur, hi));
            }
        }
        Self { iv: out }
    }

    /// The values of `T` not in the set.
    pub fn complement(&self) -> Self {
        let mut out = Iv::with_capacity(self.iv.len() + 1);
        let mut next = Some(T::MIN);
        for &(lo, hi) in self.iv.iter() {
            if let Some(n) = next
                && n < lo
            {
                out.push((n, lo.pred()));
            }
            next = if hi == T::MAX { None } else { Some(hi.succ()) };
        }
        if let Some(n) = next {
            out.push((n, T::MAX));
        }
        Self { iv: out }
    }

    /// True when the sets share no value (no allocation).
    pub fn is_disjoint(&self, other: &Self) -> bool {
        let (small, large) = if self.iv.len() <= other.iv.len() { (&self.iv, &other.iv) } else { (&other.iv, &self.iv) };
        if sparse(small.len(), large.len()) {
            return small.iter().all(|&(lo, hi)| {
                let k = large.partition_point(|&(_, h)| h < lo);
                k >= large.len() || large[k].0 > hi
            });
        }
        let (mut i, mut j) = (0, 0);
        while i < small.len() && j < large.len() {
            if small[i].1 < large[j].0 {
                i += 1;
            } else if large[j].1 < small[i].0 {
                j += 1;
            } else {
                return false;
            }
        }
        true
    }

    /// True when every value of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        let b = &other.iv;
        let mut j = 0;
        for &(lo, hi) in self.iv.iter() {
            // `other` is canonical, so a contiguous interval inside it lies in one of its intervals.
            j += b[j..].partition_point(|&(_, h)| h < lo);
            if j >= b.len() || b[j].0 > lo || b[j].1 < hi {
                return false;
            }
        }
        true
    }

    /// The intersection of many sets (the full set when there is none).
    ///
    /// Starts from the set with the fewest intervals and removes the gaps that each other set has
    /// within its span, found by binary search, sorted and merged once: `O(N log N)` in the number
    /// of relevant intervals, never quadratic in the number of sets.
    pub fn intersect_all<'a>(sets: impl IntoIterator<Item = &'a Ranges<T>>) -> Ranges<T>
    where
        T: 'a,
    {
        let sets: Vec<&Ranges<T>> = sets.into_iter().collect();
        let Some((base_idx, base)) = sets.iter().enumerate().min_by_key(|(_, s)| s.iv.len()) else {
            return Self::full();
        };
        let (Some(&(elo, _)), Some(&(_, ehi))) = (base.iv.first(), base.iv.last()) else {
            return Self::empty();
        };
        let mut gaps = Vec::new();
        for (idx, set) in sets.iter().enumerate() {
            if idx == base_idx {
                continue;
            }
            let iv = &set.iv;
            let start = iv.partition_point(|&(_, h)| h < elo);
            let end = iv.partition_point(|&(l, _)| l <= ehi);
            let rel = &iv[start..end.max(start)];
            let (Some(&(first_lo, _)), Some(&(_, last_hi))) = (rel.first(), rel.last()) else {
                return Self::empty();
            };
            if first_lo > elo {
                gaps.push((elo, first_lo.pred()));
            }
            for w in rel.windows(2) {
                gaps.push((w[0].1.succ(), w[1].0.pred()));
            }
            if last_hi < ehi {
                gaps.push((last_hi.succ(), ehi));
            }
        }
        if gaps.is_empty() {
            return (*base).clone();
        }
        base.minus(&Self::from_intervals(gaps))
    }
}

/// The largest address of a `bits`-bit address space stored in a `u128`.
fn space_max(bits: u8) -> u128 {
    if bits >= 128 { u128::MAX } else { (1u128 << bits) - 1 }
}

impl Ranges<u128> {
    /// Every address of a `bits`-bit address space: `[0, 2^32 - 1]` for IPv4 (32), everything
    /// for IPv6 (128).
    pub fn addr_space(bits: u8) -> Self {
        Self::range(0, space_max(bits))
    }

    /// The CIDR block `addr/len` of a `bits`-bit address space (32 for IPv4 in the low 32 bits,
    /// 128 for IPv6); `len` is clamped to `0..=bits` and host bits of `addr` are ignored.
    pub fn from_prefix(addr: u128, len: u8, bits: u8) -> Self {
        let bits = bits.min(128);
        let len = len.min(bits);
        let host = u32::from(bits - len);
        let addr = addr & space_max(bits);
        if host >= 128 {
            return Self::full();
        }
        let host_mask = (1u128 << host) - 1;
        let lo = addr & !host_mask;
        Self::range(lo, lo | host_mask)
    }

    /// The minimal list of CIDR blocks `(address, prefix length)` covering the set (clipped to a
    /// `bits`-bit address space), ascending: each interval is split into the largest aligned
    /// power-of-two blocks.
    pub fn as_prefixes(&self, bits: u8) -> Vec<(u128, u8)> {
        let bits = bits.min(128);
        let max = space_max(bits);
        let mut out = Vec::new();
        for &(lo, hi) in self.iv.iter() {
            if lo > max {
                break;
            }
            let hi = hi.min(max);
            let mut cur = lo;
            loop {
                let align = if cur == 0 { 128 } else { cur.trailing_zeros() };
                let rem = hi - cur;
                let fit = if rem == u128::MAX { 128 } else { 127 - (rem + 1).leading_zeros() };
                let k = align.min(fit).min(u32::from(bits));
                out.push((cur, bits - k as u8));
                let last = if k >= 128 { u128::MAX } else { cur + ((1u128 << k) - 1) };
                if last >= hi {
                    break;
                }
                cur = last + 1;
            }
        }
        out
    }
}

/// A set of 32-bit values (marks) as pairwise-disjoint ternary cubes `(value, care)`: `x` is in
/// cube `(v, c)` when `x & c == v`, with `v & !c == 0`.
///
/// Cubes are sorted and halves of larger cubes merged after each operation, but two equal sets
/// may still be represented differently: compare with [`Bits::same_set`], not `==`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bits {
    cubes: Vec<(u32, u32)>,
}

/// True when the cubes share a value.
fn cubes_meet((va, ca): (u32, u32), (vb, cb): (u32, u32)) -> bool {
    (va ^ vb) & ca & cb == 0
}

/// Pushes pairwise-disjoint cubes covering `a \ b`.
fn cube_minus(a: (u32, u32), b: (u32, u32), out: &mut Vec<(u32, u32)>) {
    if !cubes_meet(a, b) {
        out.push(a);
        return;
    }
    let (mut v, mut c) = a;
    let vb = b.0;
    let mut free = b.1 & !c;
    while free != 0 {
        let bit = free & free.wrapping_neg();
        out.push((v | (!vb & bit), c | bit));
        v |= vb & bit;
        c |= bit;
        free &= !bit;
    }
}

impl Bits {
    /// Builds a set from pairwise-disjoint normalised cubes: merges halves until none is left, then
    /// sorts.
    fn canon(mut cubes: Vec<(u32, u32)>) -> Self {
        loop {
            cubes.sort_unstable();
            cubes.dedup();
            if cubes.len() < 2 {
                break;
            }
            let present: HashSet<(u32, u32)> = cubes.iter().copied().collect();
            let mut used: HashSet<(u32, u32)> = HashSet::new();
            let mut out = Vec::with_capacity(cubes.len());
            let mut merged = false;
            for &(v, c) in &cubes {
                if used.contains(&(v, c)) {
                    continue;
                }
                used.insert((v, c));
                let mut rest = c;
                let mut joined = None;
                while rest != 0 {
                    let bit = rest & rest.wrapping_neg();
                    rest &= !bit;
                    let partner = (v ^ bit, c);
                    if present.contains(&partner) && !used.contains(&partner) {
                        used.insert(partner);
                        joined = Some((v & !bit, c & !bit));
                        break;
                    }
                }
                match joined {
                    Some(cube) => {
                        out.push(cube);
                        merged = true;
                    }
                    None => out.push((v, c)),
                }
            }
            cubes = out;
            if !merged {
                break;
            }
        }
        Self { cubes }
    }

    /// The empty set.
    pub fn empty() -> Self {
        Self { cubes: Vec::new() }
    }

    /// Every 32-bit value: the one cube `(0, 0)`.
    pub fn full() -> Self {
        Self { cubes: vec![(0, 0)] }
    }

    /// The set holding only `v`.
    pub fn point(v: u32) -> Self {
        Self { cubes: vec![(v, u32::MAX)] }
    }

    /// The values `x` with `x & care == value & care`.
    pub fn pattern(value: u32, care: u32) -> Self {
        Self { cubes: vec![(value & care, care)] }
    }

    /// True when the set has no value.
    pub fn is_empty(&self) -> bool {
        self.cubes.is_empty()
    }

    /// True when the set holds every 32-bit value.
    pub fn is_full(&self) -> bool {
        self.len() == 1u64 << 32
    }

    /// True when `x` is in the set.
    pub fn contains(&self, x: u32) -> bool {
        self.cubes.iter().any(|&(v, c)| x & c == v)
    }

    /// The smallest value of the set.
    pub fn min(&self) -> Option<u32> {
        self.cubes.iter().map(|&(v, _)| v).min()
    }

    /// The cubes `(value, care)`, pairwise disjoint.
    pub fn cubes(&self) -> &[(u32, u32)] {
        &self.cubes
    }

    /// The number of values in the set.
    pub fn len(&self) -> u64 {
        self.cubes.iter().map(|&(_, c)| 1u64 << (32 - c.count_ones())).sum()
    }

    /// The values in both sets.
    pub fn intersect(&self, other: &Self) -> Self {
        let mut out = Vec::new();
        for &a in &self.cubes {
            for &b in &other.cubes {
                if cubes_meet(a, b) {
                    out.push((a.0 | b.0, a.1 | b.1));
                }
            }
        }
        Self::canon(out)
    }

    /// The values in `self` but not in `other`.
    pub fn minus(&self, other: &Self) -> Self {
        if other.is_empty() {
            return self.clone();
        }
        let mut out = Vec::new();
        for &a in &self.cubes {
            let mut pieces = vec![a];
            for &b in &other.cubes {
                if pieces.is_empty() {
                    break;
                }
                let mut next = Vec::with_capacity(pieces.len());
                for p in pieces {
                    cube_minus(p, b, &mut next);
                }
                pieces = next;
            }
            out.extend(pieces);
        }
        Self::canon(out)
    }

    /// The 32-bit values not in the set.
    pub fn complement(&self) -> Self {
        Self::full().minus(self)
    }

    /// The values in either set: `self ∪ (other \ self)`.
    pub fn union(&self, other: &Self) -> Self {
        if self.is_empty() {
            return other.clone();
        }
        let mut cubes = self.cubes.clone();
        cubes.extend(other.minus(self).cubes);
        Self::canon(cubes)
    }

    /// True when the sets share no value.
    pub fn is_disjoint(&self, other: &Self) -> bool {
        self.cubes.iter().all(|&a| other.cubes.iter().all(|&b| !cubes_meet(a, b)))
    }

    /// True when every value of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        self.minus(other).is_empty()
    }

    /// True when both sets hold the same values (whatever their cubes).
    pub fn same_set(&self, other: &Self) -> bool {
        self.is_subset(other) && other.is_subset(self)
    }

    /// The image `{ (x & keep) ^ xor : x in self }` of a MARK-style rewrite.
    pub fn image(&self, keep: u32, xor: u32) -> Bits {
        self.cubes.iter().fold(Self::empty(), |acc, &(v, c)| {
            let care = c | !keep;
            acc.union(&Self::pattern(((v & keep) ^ xor) & care, care))
        })
    }

    /// The preimage `{ x : (x & keep) ^ xor in self }` of a MARK-style rewrite.
    pub fn preimage(&self, keep: u32, xor: u32) -> Bits {
        // Preimages of disjoint cubes are disjoint, so the contributions need no union.
        let cubes = self.cubes.iter().filter(|&&(v, c)| (xor ^ v) & c & !keep == 0).map(|&(v, c)| ((v ^ xor) & c & keep, c & keep)).collect();
        Self::canon(cubes)
    }

    /// A short iptables-like text: `none`, `any`, `0x539`, `0x4000/0x4000`, `!0x539` (when the
    /// complement is one cube) or cubes joined by `,`; lowercase hex.
    pub fn describe(&self) -> String {
        fn cube((v, c): (u32, u32)) -> String {
            match c {
                0 => "any".to_string(),
                u32::MAX => format!("{v:#x}"),
                _ => format!("{v:#x}/{c:#x}"),
            }
        }
        if self.is_empty() {
            return "none".to_string();
        }
        if self.is_full() {
            return "any".to_string();
        }
        if let [one] = self.cubes.as_slice() {
            return cube(*one);
        }
        let complement = self.complement();
        if let [one] = complement.cubes.as_slice() {
            return format!("!{}", cube(*one));
        }
        self.cubes.iter().map(|&c| cube(c)).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    // ---- Ranges<u8> against a 256-entry bitmap ----

    type Map = [bool; 256];

    fn map_of(r: &Ranges<u8>) -> Map {
        let mut m = [false; 256];
        for &(lo, hi) in r.intervals() {
            for v in lo..=hi {
                m[usize::from(v)] = true;
            }
        }
        m
    }

    fn from_map(m: &Map) -> Ranges<u8> {
        Ranges::from_intervals((0..=255u8).filter(|&v| m[usize::from(v)]).map(|v| (v, v)))
    }

    fn check(r: &Ranges<u8>, m: &Map) {
        for &(lo, hi) in r.intervals() {
            assert!(lo <= hi, "{r:?}");
        }
        for w in r.intervals().windows(2) {
            assert!(u16::from(w[0].1) + 1 < u16::from(w[1].0), "not canonical: {r:?}");
        }
        assert_eq!(&map_of(r), m, "{r:?}");
        for v in 0..=255u8 {
            assert_eq!(r.contains(v), m[usize::from(v)], "{r:?} contains {v}");
        }
        let count = m.iter().filter(|&&b| b).count();
        assert_eq!(r.len(), count as u128);
        assert_eq!(r.is_empty(), count == 0);
        assert_eq!(r.is_full(), count == 256);
        let first = (0..=255u8).find(|&v| m[usize::from(v)]);
        assert_eq!(r.min(), first);
        assert_eq!(r.single(), if count == 1 { first } else { None });
        assert_eq!(&from_map(m), r);
    }

    fn map2(a: &Map, b: &Map, f: impl Fn(bool, bool) -> bool) -> Map {
        std::array::from_fn(|i| f(a[i], b[i]))
    }

    fn ranges8() -> impl Strategy<Value = Ranges<u8>> {
        prop_oneof![
            prop::collection::vec((any::<u8>(), 0u8..24), 0..8).prop_map(|v| Ranges::from_intervals(v.into_iter().map(|(lo, w)| (lo, lo.saturating_add(w))))),
            prop::collection::vec((any::<u8>(), 0u8..3), 0..60).prop_map(|v| Ranges::from_intervals(v.into_iter().map(|(lo, w)| (lo, lo.saturating_add(w))))),
            prop::collection::vec((any::<u8>(), any::<u8>()), 0..4).prop_map(Ranges::from_intervals),
            any::<u8>().prop_map(Ranges::point),
            Just(Ranges::full()),
            Just(Ranges::empty()),
        ]
    }

    proptest! {
        #[test]
        fn ranges_from_intervals(pairs in prop::collection::vec((any::<u8>(), any::<u8>()), 0..10)) {
            let mut m = [false; 256];
            for &(lo, hi) in &pairs {
                for v in lo..=hi {
                    m[usize::from(v)] = true;
                }
            }
            check(&Ranges::from_intervals(pairs), &m);
        }

        #[test]
        fn ranges_constructors(lo in any::<u8>(), hi in any::<u8>()) {
            check(&Ranges::range(lo, hi), &std::array::from_fn(|i| (usize::from(lo)..=usize::from(hi)).contains(&i)));
            check(&Ranges::point(lo), &std::array::from_fn(|i| i == usize::from(lo)));
            check(&Ranges::<u8>::full(), &[true; 256]);
            check(&Ranges::<u8>::empty(), &[false; 256]);
        }

        #[test]
        fn ranges_ops(a in ranges8(), b in ranges8()) {
            let (ma, mb) = (map_of(&a), map_of(&b));
            check(&a, &ma);
            check(&a.union(&b), &map2(&ma, &mb, |x, y| x || y));
            check(&a.intersect(&b), &map2(&ma, &mb, |x, y| x && y));
            check(&b.intersect(&a), &map2(&ma, &mb, |x, y| x && y));
            check(&a.minus(&b), &map2(&ma, &mb, |x, y| x && !y));
            check(&a.complement(), &std::array::from_fn(|i| !ma[i]));
            prop_assert_eq!(a.is_disjoint(&b), (0..256).all(|i| !(ma[i] && mb[i])));
            prop_assert_eq!(b.is_disjoint(&a), (0..256).all(|i| !(ma[i] && mb[i])));
            prop_assert_eq!(a.is_subset(&b), (0..256).all(|i| !ma[i] || mb[i]));
            prop_assert_eq!(b.is_subset(&a), (0..256).all(|i| !mb[i] || ma[i]));
        }

        #[test]
        fn ranges_point_against_large(p in any::<u8>(), lo in any::<u8>(), w in 0u8..3, b in ranges8()) {
            let mb = map_of(&b);
            let small = Ranges::point(p).union(&Ranges::range(lo, lo.saturating_add(w)));
            let ms = map_of(&small);
            check(&small.intersect(&b), &map2(&ms, &mb, |x, y| x && y));
            check(&b.intersect(&small), &map2(&ms, &mb, |x, y| x && y));
            prop_assert_eq!(small.is_disjoint(&b), (0..256).all(|i| !(ms[i] && mb[i])));
        }

        #[test]
        fn ranges_intersect_all(sets in prop::collection::vec(ranges8(), 0..6)) {
            let mut m = [true; 256];
            for s in &sets {
                m = map2(&m, &map_of(s), |x, y| x && y);
            }
            check(&Ranges::intersect_all(&sets), &m);
        }

        #[test]
        fn prefixes_round_trip(pairs in prop::collection::vec((any::<u32>(), any::<u32>()), 0..6)) {
            let set = Ranges::from_intervals(pairs.into_iter().map(|(a, b)| (u128::from(a), u128::from(b))));
            let blocks = set.as_prefixes(32);
            let mut rebuilt = Ranges::empty();
            for w in blocks.windows(2) {
                prop_assert!(w[0].0 < w[1].0);
                // No two buddies that should have been one block.
                let (a, la) = w[0];
                let (b, lb) = w[1];
                if la == lb && la > 0 {
                    let size = 1u128 << (32 - la);
                    prop_assert!(!(a + size == b && a % (2 * size) == 0), "{:?}", blocks);
                }
            }
            for &(addr, len) in &blocks {
                prop_assert!(len <= 32);
                prop_assert_eq!(addr & ((1u128 << (32 - len)) - 1), 0);
                rebuilt = rebuilt.union(&Ranges::from_prefix(addr, len, 32));
            }
            prop_assert_eq!(rebuilt, set);
        }
    }

    #[test]
    fn int_width() {
        assert_eq!(u128::width(0, u128::MAX), u128::MAX);
        assert_eq!(u128::width(1, u128::MAX), u128::MAX);
        assert_eq!(u128::width(5, 4), 0);
        assert_eq!(u32::width(0, u32::MAX), 1u128 << 32);
        assert_eq!(u8::width(3, 3), 1);
        assert_eq!(Ranges::<u128>::full().len(), u128::MAX);
        assert_eq!(u8::MAX.succ(), u8::MAX);
        assert_eq!(0u16.pred(), 0);
    }

    fn v4(a: [u8; 4]) -> u128 {
        u128::from(u32::from(Ipv4Addr::from(a)))
    }

    fn show(blocks: &[(u128, u8)]) -> Vec<String> {
        blocks.iter().map(|&(a, l)| format!("{}/{l}", Ipv4Addr::from(u32::try_from(a).unwrap()))).collect()
    }

    #[test]
    fn prefixes_ipv4() {
        let ten = Ranges::from_prefix(v4([10, 7, 7, 7]), 8, 32);
        assert_eq!(ten, Ranges::range(v4([10, 0, 0, 0]), v4([10, 255, 255, 255])));
        assert_eq!(show(&ten.as_prefixes(32)), ["10.0.0.0/8"]);
        let holed = ten.minus(&Ranges::point(v4([10, 1, 2, 3])));
        let expected = [
            "10.0.0.0/16",
            "10.1.0.0/23",
            "10.1.2.0/31",
            "10.1.2.2/32",
            "10.1.2.4/30",
            "10.1.2.8/29",
            "10.1.2.16/28",
            "10.1.2.32/27",
            "10.1.2.64/26",
            "10.1.2.128/25",
            "10.1.3.0/24",
            "10.1.4.0/22",
            "10.1.8.0/21",
            "10.1.16.0/20",
            "10.1.32.0/19",
            "10.1.64.0/18",
            "10.1.128.0/17",
            "10.2.0.0/15",
            "10.4.0.0/14",
            "10.8.0.0/13",
            "10.16.0.0/12",
            "10.32.0.0/11",
            "10.64.0.0/10",
            "10.128.0.0/9",
        ];
        assert_eq!(show(&holed.as_prefixes(32)), expected);
        let mut rebuilt = Ranges::empty();
        for (a, l) in holed.as_prefixes(32) {
            rebuilt = rebuilt.union(&Ranges::from_prefix(a, l, 32));
        }
        assert_eq!(rebuilt, holed);

        let space = Ranges::addr_space(32);
        assert_eq!(space, Ranges::range(0, u128::from(u32::MAX)));
        assert_eq!(Ranges::from_prefix(v4([1, 2, 3, 4]), 0, 32), space);
        assert_eq!(show(&space.as_prefixes(32)), ["0.0.0.0/0"]);
        assert_eq!(show(&Ranges::full().as_prefixes(32)), ["0.0.0.0/0"]);
        assert_eq!(show(&Ranges::from_prefix(v4([192, 168, 1, 1]), 32, 32).as_prefixes(32)), ["192.168.1.1/32"]);
        assert_eq!(show(&Ranges::from_prefix(v4([192, 168, 1, 1]), 40, 32).as_prefixes(32)), ["192.168.1.1/32"]);
        let not_lo = space.minus(&Ranges::from_prefix(v4([127, 0, 0, 0]), 8, 32));
        assert_eq!(not_lo.as_prefixes(32).len(), 8);
    }

    #[test]
    fn prefixes_ipv6() {
        assert!(Ranges::from_prefix(0, 0, 128).is_full());
        assert!(Ranges::addr_space(128).is_full());
        assert_eq!(Ranges::full().as_prefixes(128), [(0, 0)]);
        let a = 0x2001_0db8_u128 << 96;
        let block = Ranges::from_prefix(a | 0xffff, 32, 128);
        assert_eq!(block, Ranges::range(a, a | ((1u128 << 96) - 1)));
        assert_eq!(block.as_prefixes(128), [(a, 32)]);
        assert_eq!(Ranges::point(u128::MAX).as_prefixes(128), [(u128::MAX, 128)]);
        assert_eq!(Ranges::full().minus(&Ranges::point(0)).as_prefixes(128).len(), 128);
    }

    #[test]
    fn intersect_all_many_holes() {
        let sets: Vec<Ranges<u32>> = (0..10_000u32).map(|i| Ranges::full().minus(&Ranges::point(i * 7 + 1))).collect();
        let all = Ranges::intersect_all(&sets);
        assert_eq!(all.intervals().len(), 10_001);
        assert_eq!(all.len(), (1u128 << 32) - 10_000);
        assert!(!all.contains(7 * 9_999 + 1));
        assert!(all.contains(7 * 9_999 + 2));
        // With duplicates and a hole at 0, adjacent holes merge.
        let mut sets: Vec<Ranges<u32>> = (0..10_000u32).map(|i| Ranges::full().minus(&Ranges::point(i / 2))).collect();
        sets.push(Ranges::full());
        let all = Ranges::intersect_all(&sets);
        assert_eq!(all.intervals(), [(5_000, u32::MAX)]);
    }

    #[test]
    fn intersect_all_point_against_large_sets() {
        let big = Ranges::from_intervals((0..20_000u32).map(|i| (i * 4, i * 4 + 1)));
        let sets: Vec<Ranges<u32>> = std::iter::once(Ranges::point(4_001)).chain(std::iter::repeat_n(big.clone(), 1_000)).collect();
        assert_eq!(Ranges::intersect_all(&sets), Ranges::point(4_001));
        let sets: Vec<Ranges<u32>> = std::iter::once(Ranges::point(4_002)).chain(std::iter::repeat_n(big.clone(), 1_000)).collect();
        assert!(Ranges::intersect_all(&sets).is_empty());
        assert_eq!(Ranges::point(4_001).intersect(&big), Ranges::point(4_001));
        assert_eq!(big.intersect(&Ranges::range(7, 13)), Ranges::from_intervals([(8, 9), (12, 13)]));
        assert!(Ranges::<u32>::intersect_all([]).is_full());
        assert!(Ranges::intersect_all([&big, &Ranges::empty()]).is_empty());
    }

    // ---- Bits against a model over the 8 bits in MASK ----

    const MASK: u32 = 0x3f | 0xc000_0000;
    const OTHERS: [u32; 3] = [0, 0x0001_2300, 0x3fff_ffc0];

    fn idx(x: u32) -> usize {
        ((x & 0x3f) | ((x >> 30) << 6)) as usize
    }

    fn embed(i: usize) -> u32 {
        let i = i as u32;
        (i & 0x3f) | ((i >> 6) << 30)
    }

    type BMap = [bool; 256];

    fn bmap(b: &Bits) -> BMap {
        std::array::from_fn(|i| b.cubes().iter().any(|&(v, c)| embed(i) & c == v))
    }

    fn check_bits(b: &Bits, m: &BMap) {
        for &(v, c) in b.cubes() {
            assert_eq!(v & !c, 0, "{b:?}");
            assert_eq!(c & !MASK, 0, "{b:?}");
        }
        for (i, &x) in b.cubes().iter().enumerate() {
            for &y in &b.cubes()[i + 1..] {
                assert!(!cubes_meet(x, y), "overlap in {b:?}");
            }
        }
        assert_eq!(&bmap(b), m, "{b:?}");
        for (i, &want) in m.iter().enumerate() {
            for o in OTHERS {
                assert_eq!(b.contains(embed(i) | o), want, "{b:?} contains {:#x}", embed(i) | o);
            }
        }
        let count = m.iter().filter(|&&x| x).count() as u64;
        assert_eq!(b.len(), count << 24);
        assert_eq!(b.is_empty(), count == 0);
        assert_eq!(b.is_full(), count == 256);
        assert_eq!(b.min(), (0..256).filter(|&i| m[i]).map(embed).min());
    }

    fn cube8() -> impl Strategy<Value = (u32, u32)> {
        (any::<u32>(), any::<u32>()).prop_map(|(v, c)| (v & c & MASK, c & MASK))
    }

    fn bits8() -> impl Strategy<Value = Bits> {
        (prop::collection::vec(cube8(), 0..5), any::<bool>()).prop_map(|(cubes, neg)| {
            let b = cubes.into_iter().fold(Bits::empty(), |acc, (v, c)| acc.union(&Bits::pattern(v, c)));
            if neg { b.complement() } else { b }
        })
    }

    fn bmap2(a: &BMap, b: &BMap, f: impl Fn(bool, bool) -> bool) -> BMap {
        std::array::from_fn(|i| f(a[i], b[i]))
    }

    proptest! {
        #[test]
        fn bits_constructors((v, c) in cube8(), raw in any::<u32>()) {
            check_bits(&Bits::pattern(v | (raw & !c), c), &std::array::from_fn(|i| embed(i) & c == v));
            let p = Bits::point(raw);
            prop_assert!(p.contains(raw));
            prop_assert_eq!(p.len(), 1);
            prop_assert_eq!(p.min(), Some(raw));
            check_bits(&Bits::full(), &[true; 256]);
            check_bits(&Bits::empty(), &[false; 256]);
        }

        #[test]
        fn bits_ops(a in bits8(), b in bits8()) {
            let (ma, mb) = (bmap(&a), bmap(&b));
            check_bits(&a, &ma);
            check_bits(&a.intersect(&b), &bmap2(&ma, &mb, |x, y| x && y));
            check_bits(&a.minus(&b), &bmap2(&ma, &mb, |x, y| x && !y));
            check_bits(&a.union(&b), &bmap2(&ma, &mb, |x, y| x || y));
            check_bits(&a.complement(), &std::array::from_fn(|i| !ma[i]));
            prop_assert_eq!(a.is_disjoint(&b), (0..256).all(|i| !(ma[i] && mb[i])));
            prop_assert_eq!(a.is_subset(&b), (0..256).all(|i| !ma[i] || mb[i]));
            prop_assert_eq!(a.same_set(&b), ma == mb);
            prop_assert!(a.union(&b).same_set(&b.union(&a)));
            prop_assert!(a.complement().complement().same_set(&a));
        }

        #[test]
        fn bits_image(a in bits8(), keep in any::<u32>(), xor in any::<u32>(), keep_m in any::<u32>(), xor_m in any::<u32>(), narrow in any::<bool>()) {
            // Either arbitrary rewrites, or ones that only touch MASK bits (so the image stays in the model).
            let (keep, xor) = if narrow { ((keep_m & MASK) | !MASK, xor_m & MASK) } else { (keep, xor) };
            let m = bmap(&a);
            let img = a.image(keep, xor);
            for (i, x) in img.cubes().iter().enumerate() {
                prop_assert_eq!(x.0 & !x.1, 0);
                for &y in &img.cubes()[i + 1..] {
                    prop_assert!(!cubes_meet(*x, y));
                }
            }
            let member = |y: u32| (y ^ xor) & !keep == 0 && (0..256).any(|i| m[i] && (embed(i) ^ y ^ xor) & keep & MASK == 0);
            let mut candidates = vec![keep, xor, !keep, 0, u32::MAX];
            for i in 0..256 {
                for o in OTHERS {
                    candidates.push(embed(i) | o);
                    candidates.push(((embed(i) | o) & keep) ^ xor);
                }
            }
            for y in candidates {
                prop_assert_eq!(img.contains(y), member(y), "image of {:?} by ({:#x}, {:#x}) at {:#x}: {:?}", a, keep, xor, y, img);
            }
            if narrow {
                let expected: BMap = std::array::from_fn(|j| member(embed(j)));
                check_bits(&img, &expected);
            }
        }

        #[test]
        fn bits_preimage(a in bits8(), keep in any::<u32>(), xor in any::<u32>(), extra in prop::collection::vec(any::<u32>(), 16)) {
            let m = bmap(&a);
            let pre = a.preimage(keep, xor);
            for (i, x) in pre.cubes().iter().enumerate() {
                prop_assert_eq!(x.0 & !x.1, 0);
                for &y in &pre.cubes()[i + 1..] {
                    prop_assert!(!cubes_meet(*x, y));
                }
            }
            let mut candidates = extra;
            for i in 0..256 {
                for o in OTHERS {
                    candidates.push(embed(i) | o);
                    candidates.push(((embed(i) | o) & keep) ^ xor);
                }
            }
            for x in candidates {
                prop_assert_eq!(pre.contains(x), m[idx((x & keep) ^ xor)], "preimage at {:#x}", x);
            }
            // The image of the preimage lies in the set.
            prop_assert!(pre.image(keep, xor).is_subset(&a));
        }
    }

    #[test]
    fn bits_describe() {
        assert_eq!(Bits::empty().describe(), "none");
        assert_eq!(Bits::full().describe(), "any");
        assert_eq!(Bits::point(0x539).describe(), "0x539");
        assert_eq!(Bits::point(0).describe(), "0x0");
        assert_eq!(Bits::pattern(0x4000, 0x4000).describe(), "0x4000/0x4000");
        assert_eq!(Bits::pattern(0xc000, 0x4000).describe(), "0x4000/0x4000");
        assert_eq!(Bits::point(0x539).complement().describe(), "!0x539");
        assert_eq!(Bits::pattern(0x539, 0xffff).complement().describe(), "!0x539/0xffff");
        assert_eq!(Bits::pattern(0x4000, 0x4000).complement().describe(), "0x0/0x4000");
        assert_eq!(Bits::point(1).union(&Bits::point(3)).describe(), "0x1/0xfffffffd");
        assert_eq!(Bits::point(1).union(&Bits::point(4)).describe(), "0x1,0x4");
        assert_eq!(Bits::point(1).union(&Bits::point(0)).complement().union(&Bits::point(1)).describe(), "!0x0");
    }

    #[test]
    fn bits_merge_and_rewrites() {
        // The four values of the low two bits merge back into one cube.
        let quad = (0..4).fold(Bits::empty(), |acc, v| acc.union(&Bits::pattern(v, 0x3)));
        assert_eq!(quad.cubes(), [(0, 0)]);
        assert!(quad.is_full());
        // MARK --set-xmark 0x10/0xff on any mark: the low byte becomes 0x10.
        let marked = Bits::full().image(!0xff, 0x10);
        assert_eq!(marked.describe(), "0x10/0xff");
        assert!(marked.same_set(&Bits::pattern(0x10, 0xff)));
        // Packets that end with mark 0x539 after `--set-mark 0x539`: every packet.
        assert!(Bits::point(0x539).preimage(0, 0x539).is_full());
        assert!(Bits::point(0x538).preimage(0, 0x539).is_empty());
        // `--or-mark 0x4000`: keep !0x4000, xor 0x4000.
        let or = Bits::point(0x1).image(!0x4000, 0x4000);
        assert!(or.same_set(&Bits::point(0x4001)));
        assert!(Bits::point(0x4001).preimage(!0x4000, 0x4000).same_set(&Bits::point(0x1).union(&Bits::point(0x4001))));
        assert_eq!(Bits::pattern(0x4000, 0x4000).min(), Some(0x4000));
        assert_eq!(Bits::pattern(0x4000, 0x4000).len(), 1 << 31);
    }
}
