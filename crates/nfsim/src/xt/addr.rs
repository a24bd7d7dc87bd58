//! Addresses with masks (`-s`, `-d`) and interface names (`-i`, `-o`), parsed and printed as
//! iptables does (`xtables_ipparse_multiple`, `xtables_parse_interface`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use super::Family;

/// An address and a (possibly non-contiguous) mask, the address already masked. IPv6 is boxed
/// to keep rules small.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AddrMask {
    /// IPv4 address and mask.
    V4 {
        /// Network address (already masked).
        addr: Ipv4Addr,
        /// Mask.
        mask: Ipv4Addr,
    },
    /// IPv6 address and mask.
    V6(Box<V6Mask>),
}

/// An IPv6 address and mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct V6Mask {
    /// Network address (already masked).
    pub addr: Ipv6Addr,
    /// Mask.
    pub mask: Ipv6Addr,
}

impl AddrMask {
    /// The prefix this address stands for, when the mask is contiguous.
    pub fn to_net(&self) -> Option<IpNet> {
        match self {
            AddrMask::V4 { addr, mask } => {
                let m = u32::from(*mask);
                let len = m.leading_ones();
                (m.checked_shl(len).unwrap_or(0) == 0).then(|| IpNet::new(IpAddr::V4(*addr), len as u8).ok()).flatten()
            }
            AddrMask::V6(v) => {
                let m = u128::from(v.mask);
                let len = m.leading_ones();
                (m.checked_shl(len).unwrap_or(0) == 0).then(|| IpNet::new(IpAddr::V6(v.addr), len as u8).ok()).flatten()
            }
        }
    }

    /// An address/prefix pair, masked.
    pub fn from_net(net: IpNet) -> AddrMask {
        match net.trunc() {
            IpNet::V4(n) => AddrMask::V4 { addr: n.network(), mask: n.netmask() },
            IpNet::V6(n) => AddrMask::V6(Box::new(V6Mask { addr: n.network(), mask: n.netmask() })),
        }
    }

    /// True if `ip` falls inside (`(ip & mask) == addr`).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (AddrMask::V4 { addr, mask }, IpAddr::V4(ip)) => u32::from(ip) & u32::from(*mask) == u32::from(*addr),
            (AddrMask::V6(v), IpAddr::V6(ip)) => u128::from(ip) & u128::from(v.mask) == u128::from(v.addr),
            _ => false,
        }
    }

    /// True for `0.0.0.0/0` or `::/0`, which iptables drops from the rule.
    pub fn is_any(&self) -> bool {
        match self {
            AddrMask::V4 { mask, .. } => mask.is_unspecified(),
            AddrMask::V6(v) => v.mask.is_unspecified(),
        }
    }

    /// Parses one `ADDR[/MASK]` (no commas) for `family`. Host names are refused: the simulator
    /// does not resolve names (neither can iptables-restore in an isolated network namespace).
    pub fn parse(s: &str, family: Family) -> Result<AddrMask, String> {
        let (a, m) = match s.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (s, None),
        };
        match family {
            Family::V4 => {
                // The one name every /etc/hosts resolves the same way.
                let a = if a == "localhost" { "127.0.0.1" } else { a };
                let addr = parse_v4_numeric(a).ok_or_else(|| host_error(a))?;
                let mask = match m {
                    None => u32::MAX,
                    Some(m) => parse_v4_mask(m).ok_or_else(|| format!("invalid mask `{m}` specified"))?,
                };
                Ok(AddrMask::V4 { addr: Ipv4Addr::from(u32::from(addr) & mask), mask: Ipv4Addr::from(mask) })
            }
            Family::V6 => {
                let addr: Ipv6Addr = a.parse().map_err(|_| host_error(a))?;
                let mask = match m {
                    None => u128::MAX,
                    Some(m) => parse_v6_mask(m).ok_or_else(|| format!("invalid mask `{m}` specified"))?,
                };
                Ok(AddrMask::V6(Box::new(V6Mask { addr: Ipv6Addr::from(u128::from(addr) & mask), mask: Ipv6Addr::from(mask) })))
            }
        }
    }
}

fn host_error(a: &str) -> String {
    if a.is_empty() { "missing address".to_string() } else { format!("host/network `{a}` not found (expected a numeric address; host names are not resolved)") }
}

/// Parses a dotted IPv4 address the way `xtables_numeric_to_ipaddr` does: one to four parts of
/// 0..=255 (decimal, `0x` hex or `0` octal), missing trailing parts are zero (`10.1` is `10.1.0.0`).
pub fn parse_v4_numeric(s: &str) -> Option<Ipv4Addr> {
    let mut out = [0u8; 4];
    for (n, part) in s.split('.').enumerate() {
        if n == 4 || part.is_empty() {
            return None;
        }
        out[n] = super::value::parse_c_number(part).filter(|&v| v <= 255)? as u8;
    }
    Some(Ipv4Addr::from(out))
}

fn parse_v4_mask(m: &str) -> Option<u32> {
    if m.contains('.') {
        return parse_v4_numeric(m).map(u32::from);
    }
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) || m.len() > 3 {
        return None;
    }
    let len: u32 = m.parse().ok()?;
    (len <= 32).then(|| u32::MAX.checked_shl(32 - len).unwrap_or(0))
}

fn parse_v6_mask(m: &str) -> Option<u128> {
    if m.contains(':') {
        return m.parse::<Ipv6Addr>().ok().map(u128::from);
    }
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) || m.len() > 3 {
        return None;
    }
    let len: u32 = m.parse().ok()?;
    (len <= 128).then(|| u128::MAX.checked_shl(128 - len).unwrap_or(0))
}

impl fmt::Display for AddrMask {
    /// `ADDR/PLEN` when the mask is contiguous, else `ADDR/MASK`, as iptables-save prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        match (self.to_net(), self) {
            (Some(net), _) => {
                fmt_ip(&mut s, net.addr());
                s.push_str(&format!("/{}", net.prefix_len()));
            }
            (None, AddrMask::V4 { addr, mask }) => s.push_str(&format!("{addr}/{mask}")),
            (None, AddrMask::V6(v)) => {
                fmt_ipv6(&mut s, v.addr);
                s.push('/');
                fmt_ipv6(&mut s, v.mask);
            }
        }
        f.write_str(&s)
    }
}

/// Appends an address as iptables prints it (IPv6 through [`fmt_ipv6`]).
pub fn fmt_ip(out: &mut String, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => out.push_str(&a.to_string()),
        IpAddr::V6(a) => fmt_ipv6(out, a),
    }
}

/// Appends an IPv6 address exactly as glibc's `inet_ntop` writes it: the first longest run of
/// two or more zero groups becomes `::`, and the last 32 bits are a dotted quad for
/// IPv4-compatible (`::a.b.c.d` with a non-zero seventh group) and IPv4-mapped
/// (`::ffff:a.b.c.d`) addresses (checked against iptables-save on this machine).
pub fn fmt_ipv6(out: &mut String, addr: Ipv6Addr) {
    use std::fmt::Write as _;
    let w = addr.segments();
    let (mut best, mut best_len) = (0, 0);
    let mut i = 0;
    while i < 8 {
        let run = w[i..].iter().take_while(|&&x| x == 0).count();
        if run > best_len {
            (best, best_len) = (i, run);
        }
        i += run.max(1);
    }
    if best_len < 2 {
        best_len = 0;
    }
    if best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)) {
        let o = addr.octets();
        let prefix = if best_len == 5 { "::ffff:" } else { "::" };
        let _ = write!(out, "{prefix}{}.{}.{}.{}", o[12], o[13], o[14], o[15]);
        return;
    }
    let hex = |g: &[u16]| g.iter().map(|x| format!("{x:x}")).collect::<Vec<_>>().join(":");
    if best_len == 0 {
        out.push_str(&hex(&w));
    } else {
        let _ = write!(out, "{}::{}", hex(&w[..best]), hex(&w[best + best_len..]));
    }
}

impl Serialize for AddrMask {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An interface name as `-i`/`-o` take it: at most 15 bytes; a trailing `+` matches any
/// interface whose name starts with the rest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Iface {
    len: u8,
    name: [u8; 15],
}

impl Iface {
    /// Parses an interface name (`xtables_parse_interface`).
    pub fn parse(s: &str) -> Result<Iface, String> {
        if s.is_empty() {
            return Err("empty interface name".to_string());
        }
        if s.len() > 15 {
            return Err(format!("interface name `{s}` must be shorter than IFNAMSIZ (15)"));
        }
        let mut name = [0u8; 15];
        name[..s.len()].copy_from_slice(s.as_bytes());
        Ok(Iface { len: s.len() as u8, name })
    }

    /// The name as written (with its `+`).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.name[..self.len as usize]).unwrap_or("")
    }

    /// True for a `+` wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.as_str().ends_with('+')
    }

    /// True if the interface called `ifname` matches (the kernel's `ifname_compare`).
    pub fn matches(&self, ifname: &str) -> bool {
        let s = self.as_str();
        match s.strip_suffix('+') {
            Some(prefix) => ifname.starts_with(prefix),
            None => ifname == s,
        }
    }
}

impl fmt::Debug for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Iface({:?})", self.as_str())
    }
}

impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Iface {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_print_like_iptables_save() {
        let p = |s, f| AddrMask::parse(s, f).map(|a| a.to_string());
        assert_eq!(p("10.0.0.0/255.255.0.0", Family::V4).unwrap(), "10.0.0.0/16");
        assert_eq!(p("10.1.2.3/255.0.255.0", Family::V4).unwrap(), "10.0.2.0/255.0.255.0");
        assert_eq!(p("1.2.3.4", Family::V4).unwrap(), "1.2.3.4/32");
        assert_eq!(p("10.1", Family::V4).unwrap(), "10.1.0.0/32");
        assert_eq!(p("1.2.3.4/24", Family::V4).unwrap(), "1.2.3.0/24");
        assert!(p("1.2.3.4/33", Family::V4).unwrap_err().contains("invalid mask `33`"));
        assert!(p("<private_ip>", Family::V4).is_err());
        assert!(p("ntp.example.net", Family::V4).is_err());
        assert_eq!(p("2001:db8::1/64", Family::V6).unwrap(), "2001:db8::/64");
        assert_eq!(p("::1", Family::V6).unwrap(), "::1/128");
        assert!(AddrMask::parse("0/0", Family::V4).unwrap().is_any());
        assert_eq!(p("010.0x0a.1.1", Family::V4).unwrap(), "8.10.1.1/32");
    }

    #[test]
    fn ipv6_prints_like_inet_ntop() {
        let f = |s: &str| {
            let mut o = String::new();
            fmt_ipv6(&mut o, s.parse().unwrap());
            o
        };
        assert_eq!(f("::1"), "::1");
        assert_eq!(f("::2"), "::2");
        assert_eq!(f("::102"), "::102");
        assert_eq!(f("::1.2.3.4"), "::1.2.3.4");
        assert_eq!(f("::2:0"), "::0.2.0.0");
        assert_eq!(f("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(f("2001:db8::1"), "2001:db8::1");
        assert_eq!(f("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
        assert_eq!(f("1:0:0:2:0:0:0:3"), "1:0:0:2::3");
        assert_eq!(f("::"), "::");
        assert_eq!(f("1::"), "1::");
    }

    #[test]
    fn interface_wildcards() {
        let i = Iface::parse("eth+").unwrap();
        assert!(i.matches("eth0") && !i.matches("lo"));
        assert!(Iface::parse("a-very-long-name0").is_err());
    }
}
