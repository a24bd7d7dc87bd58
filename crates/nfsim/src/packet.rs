//! A synthetic packet as netfilter sees it (`struct sk_buff` plus the fields of its headers that
//! rules can test), and the socket that sent it.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::xt::Family;

/// TCP flag bits.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
}

/// The process owning the socket of a locally generated packet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// File-system uid of the socket's file.
    pub uid: u32,
    /// File-system gid.
    pub gid: u32,
    /// Supplementary groups.
    #[serde(default)]
    pub groups: Vec<u32>,
}

/// Connection-tracking state of the packet's connection (`enum ip_conntrack_info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CtState {
    /// The first packet of a connection.
    #[default]
    New,
    /// A packet of a connection that has seen traffic both ways.
    Established,
    /// A packet related to another connection (ICMP errors, FTP data).
    Related,
    /// A packet conntrack could not make sense of.
    Invalid,
    /// A packet exempted from tracking (`-j CT --notrack`).
    Untracked,
}

/// A packet. Ports are those of TCP, UDP, SCTP, DCCP and UDP-Lite; ICMP uses type and code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    /// Layer-4 protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    #[serde(default)]
    pub sport: u16,
    /// Destination port.
    #[serde(default)]
    pub dport: u16,
    /// TCP flags (SYN for a new connection by default).
    #[serde(default = "default_flags")]
    pub tcp_flags: u8,
    /// ICMP type.
    #[serde(default)]
    pub icmp_type: u8,
    /// ICMP code.
    #[serde(default)]
    pub icmp_code: u8,
    /// Length of the IP packet in bytes.
    #[serde(default = "default_len")]
    pub len: u16,
    /// The TOS / traffic-class byte.
    #[serde(default)]
    pub tos: u8,
    /// TTL / hop limit.
    #[serde(default = "default_ttl")]
    pub ttl: u8,
    /// The packet mark (`skb->mark`).
    #[serde(default)]
    pub mark: u32,
    /// Conntrack state of the packet.
    #[serde(default)]
    pub ct_state: CtState,
    /// The connection's mark (`ct->mark`).
    #[serde(default)]
    pub ct_mark: u32,
    /// Input interface (arriving packets, and the receive side of looped-back ones).
    #[serde(default)]
    pub in_iface: Option<String>,
    /// Output interface (after the routing decision).
    #[serde(default)]
    pub out_iface: Option<String>,
    /// Source MAC address of an arriving packet.
    #[serde(default)]
    pub src_mac: Option<[u8; 6]>,
    /// The sending socket's owner, for locally generated packets.
    #[serde(default)]
    pub owner: Option<Owner>,
}

fn default_flags() -> u8 {
    tcp_flags::SYN
}

fn default_len() -> u16 {
    60
}

fn default_ttl() -> u8 {
    64
}

impl Packet {
    /// A new-connection packet (`SYN` for TCP) from `src:sport` to `dst:dport`.
    pub fn new(proto: u8, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Packet {
        Packet {
            proto,
            src,
            dst,
            sport,
            dport,
            tcp_flags: default_flags(),
            icmp_type: if proto == 1 {
                8
            } else if proto == 58 {
                128
            } else {
                0
            },
            icmp_code: 0,
            len: default_len(),
            tos: 0,
            ttl: default_ttl(),
            mark: 0,
            ct_state: CtState::New,
            ct_mark: 0,
            in_iface: None,
            out_iface: None,
            src_mac: None,
            owner: None,
        }
    }

    /// The packet's family, from its destination address.
    pub fn family(&self) -> Family {
        if self.dst.is_ipv6() { Family::V6 } else { Family::V4 }
    }

    /// True for protocols with ports.
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, 6 | 17 | 132 | 33 | 136)
    }
}

impl Default for Packet {
    fn default() -> Packet {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Packet::new(6, any, 0, any, 0)
    }
}
