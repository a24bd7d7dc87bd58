//! A host as netfilter's surroundings see it: interfaces and addresses, routing tables and
//! policy-routing rules (`fib_lookup`), listening sockets with their owners, the sysctls that
//! change the packet path, and the ipsets rules may name.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::packet::Owner;

/// The loopback interface every host has.
static LO: std::sync::LazyLock<Interface> = std::sync::LazyLock::new(|| Interface {
    name: "lo".into(),
    addrs: vec![IpNet::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8).expect("lo v4"), IpNet::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128).expect("lo v6")],
});

/// A network interface with its addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Name (`eth0`, `lo`).
    pub name: String,
    /// Addresses with their prefix lengths, the first being the primary one.
    #[serde(default)]
    pub addrs: Vec<IpNet>,
}

/// A route in a routing table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination prefix (`0.0.0.0/0` for a default route).
    pub dst: IpNet,
    /// Gateway, if not directly connected.
    #[serde(default)]
    pub via: Option<IpAddr>,
    /// Output device.
    pub dev: String,
    /// `local` routes deliver to this host (as TPROXY setups use: `local 0.0.0.0/0 dev lo table 100`).
    #[serde(default)]
    pub local: bool,
}

/// A policy-routing rule: packets whose mark matches use `table` (`ip rule add fwmark M/MASK lookup T`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    /// Mark value.
    pub fwmark: u32,
    /// Mask applied to the packet's mark before comparing.
    #[serde(default = "all_ones")]
    pub mask: u32,
    /// Routing table number.
    pub table: u32,
}

fn all_ones() -> u32 {
    u32::MAX
}

/// A listening socket and the process behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Socket {
    /// Protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// Bound address (`0.0.0.0` / `::` for any).
    pub addr: IpAddr,
    /// Bound port.
    pub port: u16,
    /// The owning process's name.
    #[serde(default)]
    pub process: String,
    /// The process's uid and gid.
    #[serde(default)]
    pub owner: Owner,
    /// `IP_TRANSPARENT`: accepts connections to non-local addresses (TPROXY).
    #[serde(default)]
    pub transparent: bool,
}

/// The sysctls that change the path, with a fresh network namespace's defaults (all off).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctls {
    /// `net.ipv4.ip_forward` (and IPv6 forwarding).
    #[serde(default)]
    pub ip_forward: bool,
    /// `net.ipv4.conf.all.route_localnet`.
    #[serde(default)]
    pub route_localnet: bool,
    /// `net.ipv4.conf.all.rp_filter` (0 off, 1 strict, 2 loose).
    #[serde(default)]
    pub rp_filter: u8,
    /// `net.ipv4.ip_nonlocal_bind`.
    #[serde(default)]
    pub ip_nonlocal_bind: bool,
    /// `net.ipv4.conf.all.src_valid_mark`: the reverse-path lookup uses the packet's mark
    /// (off: mark 0).
    #[serde(default)]
    pub src_valid_mark: bool,
}

/// A host. `lo` with 127.0.0.1/8 and ::1/128 is always present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Name used in traces.
    #[serde(default)]
    pub name: String,
    /// Interfaces other than `lo` (which is added automatically).
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Default gateway of the main table.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Routes of the main table besides the connected ones and the default route.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Further routing tables by number.
    #[serde(default)]
    pub tables: BTreeMap<u32, Vec<Route>>,
    /// Policy-routing rules, in priority order, consulted before the main table.
    #[serde(default)]
    pub policy: Vec<PolicyRule>,
    /// Listening sockets.
    #[serde(default)]
    pub sockets: Vec<Socket>,
    /// Path-changing sysctls.
    #[serde(default)]
    pub sysctls: Sysctls,
    /// ipsets by name, with their members.
    #[serde(default)]
    pub ipsets: BTreeMap<String, Vec<IpNet>>,
}

/// Where the routing decision sends a packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteResult<'h> {
    /// Delivered to this host.
    pub local: bool,
    /// Output device (`lo` for local delivery of locally generated packets).
    pub dev: &'h str,
    /// Next hop (the gateway, or the destination itself when directly connected).
    pub next_hop: IpAddr,
    /// The preferred source address for this route.
    pub src: Option<IpAddr>,
}

/// Address types as the addrtype match sees them (`RTN_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum AddrType {
    /// `RTN_UNSPEC`: the unspecified address.
    Unspec,
    /// `RTN_UNICAST`.
    Unicast,
    /// `RTN_LOCAL`: an address of this host.
    Local,
    /// `RTN_BROADCAST`.
    Broadcast,
    /// `RTN_MULTICAST`.
    Multicast,
}

/// A YAML or JSON text that does not describe what it should, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextError {
    /// The problem, with its line and column.
    pub message: String,
}

impl TextError {
    /// Reads `T` from JSON (text starting with `{`) or YAML.
    pub(crate) fn read<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, TextError> {
        if text.trim_start().starts_with('{') {
            return serde_json::from_str(text).map_err(|e| TextError { message: format!("line {}, column {}: {e}", e.line(), e.column()) });
        }
        serde_saphyr::from_str(text).map_err(|e| TextError { message: e.to_string() })
    }
}

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TextError {}

impl Host {
    /// Reads a host description from JSON or YAML text (YAML is a superset of JSON); the error
    /// names the line and column.
    pub fn from_text(text: &str) -> Result<Host, TextError> {
        TextError::read(text)
    }

    /// A host called `name` with no interface but `lo`.
    pub fn new(name: &str) -> Host {
        Host { name: name.to_string(), ..Host::default() }
    }

    /// Adds interface `name` with `addrs` (builder style).
    pub fn iface(mut self, name: &str, addrs: &[&str]) -> Host {
        let addrs = addrs.iter().map(|a| a.parse().unwrap_or_else(|_| panic!("bad address {a}"))).collect();
        self.interfaces.push(Interface { name: name.to_string(), addrs });
        self
    }

    /// Sets the default gateway (builder style).
    pub fn gateway(mut self, gw: &str) -> Host {
        self.gateway = Some(gw.parse().unwrap_or_else(|_| panic!("bad gateway {gw}")));
        self
    }

    /// Adds a listening socket (builder style).
    pub fn listen(mut self, proto: u8, addr: &str, port: u16, process: &str, uid: u32, gid: u32) -> Host {
        let addr = addr.parse().unwrap_or_else(|_| panic!("bad address {addr}"));
        self.sockets.push(Socket { proto, addr, port, process: process.to_string(), owner: Owner { uid, gid, groups: Vec::new() }, transparent: false });
        self
    }

    /// All interfaces, `lo` first.
    pub fn ifaces(&self) -> impl Iterator<Item = &Interface> {
        std::iter::once(&*LO).chain(self.interfaces.iter().filter(|i| i.name != "lo"))
    }

    /// All interfaces, `lo` first (owned copies).
    pub fn all_interfaces(&self) -> Vec<Interface> {
        self.ifaces().cloned().collect()
    }

    /// The interface called `name`.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.ifaces().find(|i| i.name == name)
    }

    /// The first address of `family` (IPv4 when `v4`) on interface `name`: where REDIRECT sends
    /// packets arriving there.
    pub fn primary_addr(&self, name: &str, v4: bool) -> Option<IpAddr> {
        self.interface(name).and_then(|i| i.addrs.iter().find(|a| a.addr().is_ipv4() == v4).map(|a| a.addr()))
    }

    /// The first address of `family` on an interface other than `lo`: what MASQUERADE picks for
    /// a packet leaving through `lo`, whose addresses are host-scoped (`inet_select_addr`).
    pub fn universe_addr(&self, v4: bool) -> Option<IpAddr> {
        self.interfaces.iter().filter(|i| i.name != "lo").flat_map(|i| &i.addrs).map(|a| a.addr()).find(|a| a.is_ipv4() == v4)
    }

    /// True if `ip` is one of this host's addresses (or in 127.0.0.0/8).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) if v4.is_loopback() => true,
            _ => self.ifaces().any(|i| i.addrs.iter().any(|a| a.addr() == ip)),
        }
    }

    /// The address type of `ip` on this host.
    pub fn addr_type(&self, ip: IpAddr) -> AddrType {
        if ip.is_unspecified() {
            return AddrType::Unspec;
        }
        if self.is_local(ip) {
            return AddrType::Local;
        }
        match ip {
            IpAddr::V4(v4) => {
                if v4.is_multicast() {
                    AddrType::Multicast
                } else if v4 == Ipv4Addr::BROADCAST
                    || self
                        .all_interfaces()
                        .iter()
                        .flat_map(|i| i.addrs.clone())
                        .any(|n| matches!(n, IpNet::V4(n) if n.prefix_len() < 31 && n.broadcast() == v4))
                {
                    AddrType::Broadcast
                } else {
                    AddrType::Unicast
                }
            }
            IpAddr::V6(v6) => {
                if v6.is_multicast() {
                    AddrType::Multicast
                } else {
                    AddrType::Unicast
                }
            }
        }
    }

    /// The routing decision for a packet to `dst` with mark `mark` (`fib_lookup`): policy rules,
    /// then the local table, then the main table (connected routes, explicit routes, default).
    pub fn route(&self, dst: IpAddr, mark: u32) -> Option<RouteResult<'_>> {
        for rule in &self.policy {
            if mark & rule.mask == rule.fwmark
                && let Some(r) = self.tables.get(&rule.table).and_then(|t| self.lookup(t, dst))
            {
                return Some(r);
            }
        }
        if self.is_local(dst) {
            return Some(RouteResult { local: true, dev: "lo", next_hop: dst, src: Some(self.local_src(dst)) });
        }
        // The main table: connected routes, explicit routes, the default route.
        let connected = self.ifaces().flat_map(|i| i.addrs.iter().map(move |a| (a.trunc(), None, i.name.as_str(), false)));
        let explicit = self.routes.iter().map(|r| (r.dst, r.via, r.dev.as_str(), r.local));
        let default = self.gateway.and_then(|gw| {
            let dev = self.ifaces().find(|i| i.addrs.iter().any(|a| a.contains(&gw)))?;
            let any = if gw.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
            Some((IpNet::new(any, 0).ok()?, Some(gw), dev.name.as_str(), false))
        });
        let best = connected.chain(explicit).chain(default).filter(|r| r.0.contains(&dst)).max_by_key(|r| r.0.prefix_len())?;
        Some(self.result(best.1, best.2, best.3, dst))
    }

    fn result<'h>(&self, via: Option<IpAddr>, dev: &'h str, local: bool, dst: IpAddr) -> RouteResult<'h> {
        let src = self.primary_addr(dev, dst.is_ipv4());
        RouteResult { local, dev, next_hop: via.unwrap_or(dst), src }
    }

    /// The preferred source of the local route to `dst`, an address of this host: 127.0.0.1 for
    /// 127.0.0.0/8 (`local 127.0.0.0/8 dev lo src 127.0.0.1`); for an interface address, the
    /// primary address of its subnet on that interface (`fib_add_ifaddr` gives a secondary
    /// address's local route the primary as its source; netfilter-facts §3); for IPv6 the
    /// address itself (no preferred source: source selection picks the destination).
    pub fn local_src(&self, dst: IpAddr) -> IpAddr {
        match dst {
            IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(_) => self
                .ifaces()
                .find_map(|i| {
                    let own = i.addrs.iter().find(|a| a.addr() == dst)?;
                    i.addrs.iter().find(|a| a.addr().is_ipv4() && a.trunc() == own.trunc()).map(IpNet::addr)
                })
                .unwrap_or(dst),
            IpAddr::V6(_) => dst,
        }
    }

    /// The main-table route for `dst` out of `dev` only, as IPv6 looks up an arriving packet to a
    /// loopback, link-local or multicast address (`rt6_need_strict`: `RT6_LOOKUP_F_IFACE`): the
    /// local `::1 dev lo` does not match a packet that came in on another device.
    pub fn route_strict(&self, dst: IpAddr, dev: &str) -> Option<RouteResult<'_>> {
        let connected = self.ifaces().filter(|i| i.name == dev).flat_map(|i| i.addrs.iter().map(move |a| (a.trunc(), None, i.name.as_str(), false)));
        let explicit = self.routes.iter().filter(|r| r.dev == dev && !r.local).map(|r| (r.dst, r.via, r.dev.as_str(), r.local));
        let default = self.gateway.and_then(|gw| {
            let iface = self.ifaces().find(|i| i.name == dev && i.addrs.iter().any(|a| a.contains(&gw)))?;
            let any = if gw.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
            Some((IpNet::new(any, 0).ok()?, Some(gw), iface.name.as_str(), false))
        });
        let best = connected.chain(explicit).chain(default).filter(|r| r.0.contains(&dst)).max_by_key(|r| r.0.prefix_len())?;
        Some(self.result(best.1, best.2, best.3, dst))
    }

    /// Longest-prefix match in one table.
    fn lookup<'h>(&'h self, table: &'h [Route], dst: IpAddr) -> Option<RouteResult<'h>> {
        let best = table.iter().filter(|r| r.dst.contains(&dst)).max_by_key(|r| r.dst.prefix_len())?;
        Some(self.result(best.via, &best.dev, best.local, dst))
    }

    /// The socket that accepts a packet of `proto` to `addr:port`: an exact bind first, then a
    /// wildcard bind.
    pub fn socket_for(&self, proto: u8, addr: IpAddr, port: u16) -> Option<&Socket> {
        let same_family = |s: &&Socket| s.addr.is_ipv4() == addr.is_ipv4() || (s.addr.is_unspecified() && s.addr.is_ipv6());
        self.sockets
            .iter()
            .filter(|s| s.proto == proto && s.port == port)
            .filter(same_family)
            .find(|s| s.addr == addr)
            .or_else(|| self.sockets.iter().filter(|s| s.proto == proto && s.port == port && s.addr.is_unspecified()).find(same_family))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Host {
        Host::new("pod").iface("eth0", &["10.0.0.5/24"]).gateway("10.0.0.1")
    }

    #[test]
    fn a_local_route_prefers_its_subnets_primary_address() {
        // netfilter-facts §3: a local connect to the secondary 10.0.0.6 leaves from 10.0.0.5.
        let h = Host::new("pod").iface("eth0", &["10.0.0.5/24", "10.0.0.6/24", "10.2.0.5/16"]).iface("eth1", &["fd00::5/64"]);
        let src = |a: &str| h.route(a.parse().unwrap(), 0).and_then(|r| r.src).map(|s| s.to_string());
        assert_eq!(src("10.0.0.6").as_deref(), Some("10.0.0.5"));
        assert_eq!(src("10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(src("10.2.0.5").as_deref(), Some("10.2.0.5"), "the primary of its own subnet");
        assert_eq!(src("127.0.0.6").as_deref(), Some("127.0.0.1"));
        assert_eq!(src("fd00::5").as_deref(), Some("fd00::5"));
    }

    #[test]
    fn routes_local_connected_and_default() {
        let h = pod();
        let r = h.route("10.0.0.5".parse().unwrap(), 0).unwrap();
        assert!(r.local && r.dev == "lo");
        let r = h.route("10.0.0.9".parse().unwrap(), 0).unwrap();
        assert!(!r.local && r.dev == "eth0" && r.next_hop == "10.0.0.9".parse::<IpAddr>().unwrap());
        let r = h.route("8.8.8.8".parse().unwrap(), 0).unwrap();
        assert_eq!((r.dev, r.next_hop), ("eth0", "10.0.0.1".parse().unwrap()));
        assert_eq!(r.src, Some("10.0.0.5".parse().unwrap()));
        assert!(Host::new("bare").route("8.8.8.8".parse().unwrap(), 0).is_none());
    }

    #[test]
    fn policy_routing_by_mark() {
        let mut h = pod();
        h.tables.insert(100, vec![Route { dst: "0.0.0.0/0".parse().unwrap(), via: None, dev: "lo".into(), local: true }]);
        h.policy.push(PolicyRule { fwmark: 1, mask: 1, table: 100 });
        assert!(h.route("1.2.3.4".parse().unwrap(), 1).unwrap().local);
        assert!(!h.route("1.2.3.4".parse().unwrap(), 0).unwrap().local);
    }

    #[test]
    fn reads_yaml_and_json() {
        let yaml = "name: pod\ninterfaces:\n  - name: eth0\n    addrs: [10.0.0.5/24]\ngateway: 10.0.0.1\nsockets:\n  - {proto: 6, addr: 0.0.0.0, port: 15001, process: envoy, owner: {uid: 1337, gid: 1337}}\nsysctls: {ip_forward: true}\n";
        let h = Host::from_text(yaml).unwrap();
        assert_eq!(h.interfaces[0].addrs[0], "10.0.0.5/24".parse::<IpNet>().unwrap());
        assert!(h.sysctls.ip_forward);
        assert_eq!(h.sockets[0].owner.uid, 1337);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(Host::from_text(&json).unwrap(), h);
        let err = Host::from_text("name: pod\ninterfaces: 7\n").unwrap_err();
        assert!(err.message.contains('2'), "{err}");
    }

    #[test]
    fn address_types() {
        let h = pod();
        assert_eq!(h.addr_type("10.0.0.5".parse().unwrap()), AddrType::Local);
        assert_eq!(h.addr_type("127.0.0.6".parse().unwrap()), AddrType::Local);
        assert_eq!(h.addr_type("10.0.0.255".parse().unwrap()), AddrType::Broadcast);
        assert_eq!(h.addr_type("224.0.0.1".parse().unwrap()), AddrType::Multicast);
        assert_eq!(h.addr_type("10.0.0.7".parse().unwrap()), AddrType::Unicast);
    }
}
