//! Kernel oracle for conformance tests: loads an iptables rule set into real network namespaces,
//! sends one real probe packet (UDP datagram or TCP connection) and reports what the kernel did.
//!
//! Topology of a [`Lab`] (two fresh namespaces joined by a veth pair, nothing else):
//!
//! ```text
//!   pod  (rules loaded here)                     peer (rules only with Lab::new_pair)
//!   lo 127.0.0.1/8 up                            lo up
//!   eth0 10.0.0.5/24  <------ veth ------>       eth0 10.0.0.1/24 + 10.0.0.9/24
//!   default via 10.0.0.1                         default via 10.0.0.5
//! ```
//!
//! Both namespaces get `ip_unprivileged_port_start=0` (so listeners of any uid can take port 22),
//! `icmp_ratelimit=0` (every ICMP error is sent, so counters do not depend on timing) and
//! `tcp_synack_retries=0` (a SYN-ACK whose answer was dropped is never retransmitted into a later
//! probe). Forwarding stays off. Because the peer's default route points at the pod, a peer probe to
//! an address outside 10.0.0.0/24 arrives on the pod's eth0 (and, with forwarding off, is dropped there).
//! No address outside these namespaces is configured or used; bind addresses are checked by the kernel.
//!
//! What one probe is on the wire:
//! - UDP: one datagram from a connected socket. The sender then waits up to [`Lab::udp_wait`] for an
//!   ICMP error (reported as `ECONNREFUSED`), but the probe ends as soon as a listener recorded the
//!   datagram. A listener never answers, so a delivered datagram moves each counter on its path by
//!   exactly one packet.
//! - TCP: connect with timeout [`Lab::tcp_timeout`]. Our listener accepts, records, and closes with
//!   `SO_LINGER {1, 0}`, so the exchange is exactly SYN → SYN-ACK → ACK → RST (from the listener), with
//!   no FIN and no TIME_WAIT that could leak into a later probe. A SYN dropped on the way gives
//!   `"timeout"` (TCP ignores the local EPERM), a kernel RST gives `"ECONNREFUSED"`.
//! - Each probe binds an explicit source port (rolling through 40000..50000 unless [`Probe::sport`] is
//!   set), so a UDP probe never hits the conntrack entry of an earlier one (UDP entries live 30 s).
//!
//! Counters: before the probe every table that exists in the pod is zeroed (`iptables -Z -t T`, only
//! for tables that exist: with the legacy backend `-Z -t nat` would *create* the nat table and switch
//! conntrack on), afterwards `iptables-save -c` is parsed.
//!
//! Two-sided labs: [`Lab::new_pair`] also loads a rule set into the peer (same backend). Then the
//! peer's tables are zeroed and read around each probe too, and [`Observed::moved_peer`],
//! [`Observed::packets_peer`] and [`Observed::policy_peer`] hold the peer's counters (they stay
//! empty, and nothing extra runs, in a lab made by [`Lab::new`]). A peer probe normally runs as
//! root; [`Probe::with_user`] runs it under another uid/gid, so the peer's `-m owner` rules can match.
//! (The uid is a field of [`Probe`] rather than a new [`From`] variant so that existing exhaustive
//! matches on [`From`] keep compiling.)
//!
//! Processes: listeners are `ip netns exec NS setpriv --reuid U --regid U --clear-groups python3 ...`
//! (`ip netns exec` and `setpriv` exec, so the child's PID is python's PID). They report on their
//! stdout (one JSON line per datagram/connection, read by a thread) instead of a file, so no file
//! permissions matter; they exit when their stdin reaches EOF, i.e. also when the test process dies
//! without running destructors. [`Lab`]'s `Drop` kills each one by PID, waits for it, then deletes both
//! namespaces; this also happens on panic. [`Lab::new`] first deletes namespaces named
//! `nfsim-oracle-<pid>-...` whose `<pid>` no longer runs (left by a killed run of this oracle).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which iptables user space loads and reads the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Nft,
    Legacy,
}

impl Backend {
    fn tool(self, what: &str) -> String {
        match self {
            Backend::Nft => format!("iptables-nft{what}"),
            Backend::Legacy => format!("iptables-legacy{what}"),
        }
    }
}

/// One of the two namespaces of a [`Lab`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Side {
    /// The namespace holding the rules: eth0 10.0.0.5/24.
    Pod,
    /// The other end of the veth: 10.0.0.1/24 and 10.0.0.9/24, no rules unless made by [`Lab::new_pair`].
    Peer,
    /// With [`LabConfig::far`]: a third namespace behind the pod's eth1 (10.1.0.9/24, default
    /// route via the pod's 10.1.0.5), reached from the peer only through the pod's FORWARD.
    Far,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Proto {
    Udp,
    Tcp,
    /// An ICMP echo request from a ping socket (no reply is waited for); delivery is seen by a raw
    /// ICMP socket in each namespace ([`LabConfig::icmp`]).
    Icmp,
    /// An SCTP INIT from a raw socket (so sent as root); delivery is seen by a raw SCTP socket in
    /// each namespace (this kernel has no SCTP stack, so nothing answers).
    Sctp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Icmp => "icmp",
            Proto::Sctp => "sctp",
        }
    }
}

/// Where a probe starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum From {
    /// A socket created in the pod by a process with this uid and gid (no supplementary groups).
    Local { uid: u32, gid: u32 },
    /// A socket in the peer namespace (as root, or as [`Probe::peer_owner`]), so the packet arrives
    /// on the pod's eth0 (unless the peer's own rules send it elsewhere).
    Peer,
    /// A socket in the far namespace (as root), arriving on the pod's eth1 ([`LabConfig::far`]).
    Far,
}

/// One probe: a single UDP datagram or a single TCP connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    pub(crate) from: From,
    pub(crate) proto: Proto,
    /// Address to bind the sending socket to (e.g. 127.0.0.6); `None`: chosen by the route.
    pub(crate) src: Option<IpAddr>,
    /// Source port; `None`: the lab's next port from 40000..50000.
    pub(crate) sport: Option<u16>,
    pub(crate) dst: SocketAddr,
    /// [`From::Peer`] only: uid and gid (no supplementary groups) of the sending process in the
    /// peer; `None`: root. Ignored for [`From::Local`], which carries its own.
    pub(crate) peer_owner: Option<(u32, u32)>,
    /// `IP_TOS` of the sending socket (DSCP bits only for TCP: the kernel keeps the ECN bits).
    pub(crate) tos: Option<u8>,
    /// `IP_TTL` of the sending socket.
    pub(crate) ttl: Option<u8>,
    /// Bind with `IP_FREEBIND` and `IP_TRANSPARENT` (root only), so that `src` may be an address
    /// the sender does not have.
    pub(crate) freebind: bool,
}

impl Probe {
    pub(crate) fn local(uid: u32, gid: u32, proto: Proto, dst: SocketAddr) -> Probe {
        Probe { from: From::Local { uid, gid }, proto, src: None, sport: None, dst, peer_owner: None, tos: None, ttl: None, freebind: false }
    }
    pub(crate) fn peer(proto: Proto, dst: SocketAddr) -> Probe {
        Probe { from: From::Peer, proto, src: None, sport: None, dst, peer_owner: None, tos: None, ttl: None, freebind: false }
    }
    /// A probe sent from the far namespace ([`LabConfig::far`]), as root.
    pub(crate) fn far(proto: Proto, dst: SocketAddr) -> Probe {
        Probe { from: From::Far, proto, src: None, sport: None, dst, peer_owner: None, tos: None, ttl: None, freebind: false }
    }
    /// A probe sent from the peer by a process with this uid and gid.
    pub(crate) fn peer_as(uid: u32, gid: u32, proto: Proto, dst: SocketAddr) -> Probe {
        Probe::peer(proto, dst).with_user(uid, gid)
    }
    /// Runs a peer probe as `uid`/`gid` instead of root (no effect on a [`From::Local`] probe).
    pub(crate) fn with_user(mut self, uid: u32, gid: u32) -> Probe {
        self.peer_owner = Some((uid, gid));
        self
    }
    pub(crate) fn with_src(mut self, src: IpAddr) -> Probe {
        self.src = Some(src);
        self
    }
}

/// `(table, chain, rule number)`; the number is 1-based within the chain, in iptables-save order.
pub(crate) type RuleId = (String, String, u32);

/// A datagram or connection one of our listeners got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) side: Side,
    /// The port the listener was started on.
    pub(crate) port_listened: u16,
    /// Destination address and port of the packet as it arrived (after any NAT). For TCP this is
    /// the accepted socket's own address.
    pub(crate) local_addr: IpAddr,
    pub(crate) local_port: u16,
    /// The sender's address and port as the listener saw it (after any SNAT).
    pub(crate) peer: SocketAddr,
    /// TCP only: `SO_ORIGINAL_DST`, the destination before NAT; `None` when the connection has no
    /// conntrack entry (no rule switched conntrack on, or the peer namespace) and always for UDP.
    pub(crate) orig_dst: Option<SocketAddr>,
}

/// What the kernel did with one probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    /// Rules whose packet counter is non-zero after the probe.
    pub(crate) moved: BTreeSet<RuleId>,
    /// Built-in chains whose policy counter is non-zero after the probe.
    pub(crate) policy: BTreeSet<(String, String)>,
    /// Packet counts of the rules in `moved`.
    pub(crate) packets: BTreeMap<RuleId, u64>,
    /// Packet counts of the chains in `policy`.
    pub(crate) policy_packets: BTreeMap<(String, String), u64>,
    /// Like `moved`, `packets` and `policy`, for the peer's rules; empty unless the lab was made by
    /// [`Lab::new_pair`].
    pub(crate) moved_peer: BTreeSet<RuleId>,
    pub(crate) packets_peer: BTreeMap<RuleId, u64>,
    pub(crate) policy_peer: BTreeSet<(String, String)>,
    /// What our listeners got during the probe.
    pub(crate) received: Vec<Received>,
    /// Error seen by the sender: an errno name (`EPERM`, `EINVAL`, `ECONNREFUSED`, ...),
    /// `"timeout"` (TCP connect timed out) or `"timeout after connect"` (connected, but the
    /// listener's RST never came back).
    pub(crate) error: Option<String>,
    /// Source port the probe was sent from.
    pub(crate) sport: u16,
    /// Wall time of the whole probe (zeroing, sending, reading counters).
    pub(crate) elapsed: Duration,
}

/// What a lab has besides the two namespaces; [`Lab::new`] uses the default (nothing more).
#[derive(Clone, Debug, Default)]
pub(crate) struct LabConfig {
    /// `net.ipv4.ip_forward` in the pod.
    pub(crate) forward: bool,
    /// `net.ipv4.conf.{all,eth0,eth1}.rp_filter` in the pod (0 off, 1 strict, 2 loose).
    pub(crate) rp_filter: u8,
    /// A third namespace `far` behind the pod's eth1 (pod 10.1.0.5/24, far 10.1.0.9/24).
    pub(crate) far: bool,
    /// Raw ICMP sockets in every namespace that record the echo requests delivered there.
    pub(crate) icmp: bool,
    /// The peer's eth0 MAC address (for `-m mac`).
    pub(crate) peer_mac: Option<String>,
    /// ipsets created in the pod before the rules are loaded: name, type, members.
    pub(crate) ipsets: Vec<(String, String, Vec<String>)>,
    /// Fixed MAC addresses on every veth end and permanent neighbour entries for the lab's
    /// addresses, so that no probe's ARP (one with a source a NAT rule made martian, say) can
    /// leave a failed neighbour entry behind for the next probes.
    pub(crate) static_neighbours: bool,
    /// IPv6 as well: pod eth0 fd00::5/64 (peer fd00::1, fd00::9), pod eth1 fd01::5/64 (far
    /// fd01::9), default routes as for IPv4, `forwarding` as `forward`; this rule set is loaded
    /// with ip6tables-restore, and an IPv6 probe reads the IPv6 counters.
    pub(crate) rules_v6: Option<String>,
    /// Policy routing in the pod: `ip rule add fwmark MARK/MASK lookup TABLE` and
    /// `ip route add local 0.0.0.0/0 dev lo table TABLE` (what TPROXY needs).
    pub(crate) tproxy_route: Option<(u32, u32, u32)>,
}

/// MACs with [`LabConfig::static_neighbours`]: pod eth0, peer eth0 (unless `peer_mac`), pod eth1, far eth0.
const NEIGH_MACS: [&str; 4] = ["02:00:00:00:00:05", "02:00:00:00:00:01", "02:00:00:00:01:05", "02:00:00:00:01:09"];

const POD_ADDR: &str = "10.0.0.5/24";
const POD_ADDR_FAR: &str = "10.1.0.5/24";
const FAR_ADDR: &str = "10.1.0.9/24";
const PEER_ADDRS: [&str; 2] = ["10.0.0.1/24", "10.0.0.9/24"];
const SPORT_FIRST: u16 = 40000;
const SPORT_END: u16 = 50000;

fn python() -> &'static str {
    // /usr/bin/python3 is readable by every uid; a python under /root (pyenv) is not.
    if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// Runs `cmd` with `input` on stdin; Ok(stdout) on success, Err(command and stderr) otherwise.
fn run(cmd: &[&str], input: &str) -> Result<String, String> {
    let mut child = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    let _ = writer.join();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`{}` failed ({}): {}", cmd.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A namespace deleted on drop.
struct NsGuard(String);

impl NsGuard {
    fn new(name: String) -> Result<NsGuard, String> {
        run(&["ip", "netns", "add", &name], "")?;
        Ok(NsGuard(name))
    }
    fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = vec!["ip", "-n", &self.0];
        cmd.extend_from_slice(args);
        run(&cmd, "")
    }
    fn exec(&self, args: &[&str], input: &str) -> Result<String, String> {
        let mut cmd = vec!["ip", "netns", "exec", &self.0];
        cmd.extend_from_slice(args);
        run(&cmd, input)
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Deletes `nfsim-oracle-<pid>-*` namespaces whose creating process no longer exists.
fn delete_stale_namespaces() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else { return };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("nfsim-oracle-") else { continue };
        let mut parts = rest.split('-');
        let (Some(pid), Some(n), Some(side), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else { continue };
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !numeric(pid) || !numeric(n) || !(side == "pod" || side == "peer" || side == "far") {
            continue;
        }
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

const LISTENER_PY: &str = r#"
import os, sys, socket, struct, json, threading
def watch():
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)
threading.Thread(target=watch, daemon=True).start()
proto, addr, port, uid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
transparent = sys.argv[5] == "1"
v6 = ":" in addr
fam = socket.AF_INET6 if v6 else socket.AF_INET
SOL = socket.IPPROTO_IPV6 if v6 else socket.SOL_IP
def drop():
    if uid:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
def out(d):
    sys.stdout.write(json.dumps(d) + "\n")
    sys.stdout.flush()
def sa(a, p):
    return ("[%s]:%d" if ":" in a else "%s:%d") % (a, p)
def sockaddr(d):
    # struct sockaddr_in / sockaddr_in6 -> "addr:port"
    if v6:
        return sa(socket.inet_ntop(socket.AF_INET6, d[8:24]), struct.unpack("!H", d[2:4])[0])
    return sa(socket.inet_ntoa(d[4:8]), struct.unpack("!H", d[2:4])[0])
def opts(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if transparent:
        s.setsockopt(SOL, 75 if v6 else 19, 1)  # IPV6_TRANSPARENT / IP_TRANSPARENT
if proto == "icmp" and v6:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, 49, 1)  # IPV6_RECVPKTINFO
    drop()
    out("READY")
    while True:
        data, anc, flags, peer = s.recvmsg(65535, 256)
        if len(data) < 8 or data[0] != 128:
            continue
        dst = "::"
        for lvl, typ, d in anc:
            if lvl == socket.IPPROTO_IPV6 and typ == 50:  # IPV6_PKTINFO
                dst = socket.inet_ntop(socket.AF_INET6, d[:16])
        ident = struct.unpack("!H", data[4:6])[0]
        out({"local": sa(dst, 0), "peer": sa(peer[0], ident), "orig": None})
elif proto == "sctp":
    s = socket.socket(fam, socket.SOCK_RAW, 132)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, 49, 1)  # IPV6_RECVPKTINFO
    drop()
    out("READY")
    while True:
        data, anc, flags, peer = s.recvmsg(65535, 256)
        if v6:
            dst, off = "::", 0
            for lvl, typ, d in anc:
                if lvl == socket.IPPROTO_IPV6 and typ == 50:
                    dst = socket.inet_ntop(socket.AF_INET6, d[:16])
            src = peer[0]
        else:
            off = (data[0] & 15) * 4
            src, dst = socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20])
        if len(data) < off + 16 or data[off + 12] != 1:  # an INIT chunk
            continue
        sport, dport = struct.unpack("!HH", data[off:off + 4])
        out({"local": sa(dst, dport), "peer": sa(src, sport), "orig": None})
elif proto == "icmp":
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    drop()
    out("READY")
    while True:
        data, peer = s.recvfrom(65535)
        ihl = (data[0] & 15) * 4
        if len(data) < ihl + 8 or data[ihl] != 8:
            continue
        src, dst = socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20])
        ident = struct.unpack("!H", data[ihl + 4:ihl + 6])[0]
        out({"local": sa(dst, 0), "peer": sa(src, ident), "orig": None})
elif proto == "tcp":
    s = socket.socket(fam, socket.SOCK_STREAM)
    opts(s)
    s.bind((addr, port))
    drop()
    s.listen(64)
    out("READY")
    while True:
        c, peer = s.accept()
        la = c.getsockname()
        try:
            orig = sockaddr(c.getsockopt(SOL, 80, 28 if v6 else 16))  # SO_ORIGINAL_DST
        except OSError:
            orig = None
        out({"local": sa(la[0], la[1]), "peer": sa(peer[0], peer[1]), "orig": orig})
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
else:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    opts(s)
    s.setsockopt(SOL, 74 if v6 else 20, 1)  # IPV6_RECVORIGDSTADDR / IP_RECVORIGDSTADDR
    s.bind((addr, port))
    drop()
    out("READY")
    while True:
        data, anc, flags, peer = s.recvmsg(65535, 256)
        ln = s.getsockname()
        local = sa(ln[0], ln[1])
        for lvl, typ, d in anc:
            if lvl == SOL and typ == (74 if v6 else 20):
                local = sockaddr(d)
        out({"local": local, "peer": sa(peer[0], peer[1]), "orig": None})
"#;

const SENDER_PY: &str = r#"
import sys, socket, struct, json, errno
proto, src, sport, dst, dport, tmo = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
tos, ttl, freebind = int(sys.argv[7]), int(sys.argv[8]), sys.argv[9] == "1"
res = {"connected": False, "error": None}
tcp = proto == "tcp"
v6 = ":" in dst
fam = socket.AF_INET6 if v6 else socket.AF_INET
SOL = socket.IPPROTO_IPV6 if v6 else socket.SOL_IP
if proto == "icmp":
    s = socket.socket(fam, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
elif proto == "sctp":
    s = socket.socket(fam, socket.SOCK_RAW, 132)
else:
    s = socket.socket(fam, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
try:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if tos >= 0:
        s.setsockopt(SOL, 67 if v6 else socket.IP_TOS, tos)  # IPV6_TCLASS / IP_TOS
    if ttl >= 0:
        s.setsockopt(SOL, 16 if v6 else socket.IP_TTL, ttl)  # IPV6_UNICAST_HOPS / IP_TTL
    if freebind:
        s.setsockopt(SOL, 78 if v6 else 15, 1)  # IPV6_FREEBIND / IP_FREEBIND
        s.setsockopt(SOL, 75 if v6 else 19, 1)  # IPV6_TRANSPARENT / IP_TRANSPARENT: route with a source we do not have
    s.bind((src, 0 if proto == "sctp" else sport))
    s.settimeout(tmo)
    if proto == "sctp":
        # INIT with a Supported Address Types parameter: 40 bytes of SCTP, 60 of IPv4, 80 of IPv6.
        def crc32c(b):
            c = 0xFFFFFFFF
            for x in b:
                c ^= x
                for _ in range(8):
                    c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
            return c ^ 0xFFFFFFFF
        init = struct.pack("!BBHIIHHI", 1, 0, 28, 0x4e465349, 65535, 1, 1, 1) + struct.pack("!HHHH", 12, 6, 5, 0)
        pkt = struct.pack("!HHII", sport, dport, 0, 0) + init
        pkt = pkt[:8] + struct.pack("<I", crc32c(pkt)) + pkt[12:]
        s.sendto(pkt, (dst, 0))
        try:
            s.recv(64)
        except TimeoutError:
            pass
    elif proto == "icmp":
        # Echo request with 32 bytes of data, as the UDP probe (60 bytes in IPv4, 80 in IPv6): the
        # kernel sets the id (our port) and checksum.
        s.sendto(struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, 0, 1) + b"nfsim-probe-" + b"x" * 20, (dst, 0))
        try:
            s.recv(64)
            res["connected"] = True  # the echo reply came: the request was delivered somewhere
        except TimeoutError:
            pass
    elif tcp:
        try:
            s.connect((dst, dport))
        except TimeoutError:
            res["error"] = "timeout"
        except ConnectionResetError:
            # Established, then our listener's RST came before connect() returned.
            res["connected"] = True
        else:
            res["connected"] = True
            try:
                s.recv(1)
            except TimeoutError:
                res["error"] = "timeout after connect"
            except ConnectionResetError:
                pass
    else:
        s.connect((dst, dport))
        s.send(b"nfsim-probe-" + b"x" * 20)
        try:
            s.recv(64)
        except TimeoutError:
            pass
except OSError as e:
    res["error"] = errno.errorcode.get(e.errno, str(e)) if e.errno else str(e)
finally:
    if tcp:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
print(json.dumps(res), flush=True)
"#;

struct Listener {
    side: Side,
    port: u16,
    child: Child,
    records: Arc<Mutex<Vec<Received>>>,
    stderr: Arc<Mutex<String>>,
    threads: Vec<JoinHandle<()>>,
}

impl Listener {
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Two namespaces with a rule set loaded into the pod (and with [`Lab::new_pair`] one into the
/// peer); see the module docs.
pub(crate) struct Lab {
    backend: Backend,
    listeners: Vec<Listener>,
    tables: Vec<String>,
    /// Tables present in the peer (empty unless made by [`Lab::new_pair`]).
    peer_tables: Vec<String>,
    /// IPv6 tables present in the pod ([`LabConfig::rules_v6`]).
    tables6: Vec<String>,
    next_sport: u16,
    /// Source ports of the probes sent so far.
    used_sports: BTreeSet<u16>,
    /// How long a UDP sender waits for an ICMP error when no listener records the datagram.
    pub(crate) udp_wait: Duration,
    /// TCP connect timeout (and the wait for the listener's RST after connecting).
    pub(crate) tcp_timeout: Duration,
    // Dropped after `Drop::drop` killed the listeners.
    pod: NsGuard,
    peer: NsGuard,
    far: Option<NsGuard>,
}

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Creates the namespaces and loads `rules_v4` (iptables-save format) into the pod.
    pub(crate) fn new(backend: Backend, rules_v4: &str) -> Result<Lab, String> {
        Lab::build(backend, rules_v4, None)
    }

    /// Like [`Lab::new`], and also loads `rules_peer` (iptables-save format, same backend) into the
    /// peer, whose counters are then reported in [`Observed::moved_peer`] and its siblings.
    pub(crate) fn new_pair(backend: Backend, rules_pod: &str, rules_peer: &str) -> Result<Lab, String> {
        Lab::build(backend, rules_pod, Some(rules_peer))
    }

    /// A lab with the extras of `cfg` (forwarding, the far namespace, ICMP receivers, ...).
    pub(crate) fn with_config(backend: Backend, rules_v4: &str, cfg: &LabConfig) -> Result<Lab, String> {
        Lab::build_with(backend, rules_v4, None, cfg)
    }

    fn build(backend: Backend, rules_v4: &str, rules_peer: Option<&str>) -> Result<Lab, String> {
        Lab::build_with(backend, rules_v4, rules_peer, &LabConfig::default())
    }

    fn build_with(backend: Backend, rules_v4: &str, rules_peer: Option<&str>, cfg: &LabConfig) -> Result<Lab, String> {
        static STALE: std::sync::Once = std::sync::Once::new();
        STALE.call_once(delete_stale_namespaces);
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("nfsim-oracle-{}-{n}", std::process::id());
        let pod = NsGuard::new(format!("{base}-pod"))?;
        let peer = NsGuard::new(format!("{base}-peer"))?;
        let far = if cfg.far { Some(NsGuard::new(format!("{base}-far"))?) } else { None };
        pod.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &peer.0])?;
        if let Some(mac) = &cfg.peer_mac {
            peer.ip(&["link", "set", "eth0", "address", mac])?;
        }
        let sysctls =
            ["net.ipv4.ip_unprivileged_port_start=0", "net.ipv4.icmp_ratelimit=0", "net.ipv4.tcp_synack_retries=0", "net.ipv4.ping_group_range=0 2147483647"];
        let mut namespaces = vec![&pod, &peer];
        namespaces.extend(far.as_ref());
        for ns in namespaces {
            let mut cmd = vec!["sysctl", "-q", "-w"];
            cmd.extend_from_slice(&sysctls);
            ns.exec(&cmd, "")?;
            ns.ip(&["link", "set", "lo", "up"])?;
        }
        pod.ip(&["addr", "add", POD_ADDR, "dev", "eth0"])?;
        for a in PEER_ADDRS {
            peer.ip(&["addr", "add", a, "dev", "eth0"])?;
        }
        // No duplicate address detection: a link-local address still tentative delays the first
        // IPv6 packets of a fresh lab past a probe's wait.
        let no_dad = |ns: &NsGuard, dev: &str| ns.exec(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.{dev}.accept_dad=0")], "").map(|_| ());
        for ns in [&pod, &peer] {
            no_dad(ns, "eth0")?;
            ns.ip(&["link", "set", "eth0", "up"])?;
        }
        if let Some(far) = &far {
            pod.ip(&["link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", &far.0])?;
            pod.ip(&["addr", "add", POD_ADDR_FAR, "dev", "eth1"])?;
            far.ip(&["addr", "add", FAR_ADDR, "dev", "eth0"])?;
            no_dad(&pod, "eth1")?;
            no_dad(far, "eth0")?;
            pod.ip(&["link", "set", "eth1", "up"])?;
            far.ip(&["link", "set", "eth0", "up"])?;
            far.ip(&["route", "add", "default", "via", "10.1.0.5", "dev", "eth0"])?;
        }
        pod.ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"])?;
        peer.ip(&["route", "add", "default", "via", "10.0.0.5", "dev", "eth0"])?;
        if cfg.rules_v6.is_some() {
            let v6 = |ns: &NsGuard, addr: &str, dev: &str| ns.ip(&["-6", "addr", "add", addr, "dev", dev, "nodad"]);
            v6(&pod, "fd00::5/64", "eth0")?;
            v6(&peer, "fd00::1/64", "eth0")?;
            v6(&peer, "fd00::9/64", "eth0")?;
            pod.ip(&["-6", "route", "add", "default", "via", "fd00::1", "dev", "eth0"])?;
            peer.ip(&["-6", "route", "add", "default", "via", "fd00::5", "dev", "eth0"])?;
            if let Some(far) = &far {
                v6(&pod, "fd01::5/64", "eth1")?;
                v6(far, "fd01::9/64", "eth0")?;
                far.ip(&["-6", "route", "add", "default", "via", "fd01::5", "dev", "eth0"])?;
            }
            pod.exec(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.all.forwarding={}", u8::from(cfg.forward))], "")?;
            if let Some((mark, mask, table)) = cfg.tproxy_route {
                let (fw, t) = (format!("{mark:#x}/{mask:#x}"), table.to_string());
                pod.ip(&["-6", "rule", "add", "fwmark", &fw, "lookup", &t])?;
                pod.ip(&["-6", "route", "add", "local", "::/0", "dev", "lo", "table", &t])?;
            }
        }
        if cfg.static_neighbours {
            let peer_mac = cfg.peer_mac.as_deref().unwrap_or(NEIGH_MACS[1]);
            pod.ip(&["link", "set", "eth0", "address", NEIGH_MACS[0]])?;
            peer.ip(&["link", "set", "eth0", "address", peer_mac])?;
            for a in ["10.0.0.1", "10.0.0.9"] {
                pod.ip(&["neigh", "replace", a, "lladdr", peer_mac, "dev", "eth0", "nud", "permanent"])?;
            }
            peer.ip(&["neigh", "replace", "10.0.0.5", "lladdr", NEIGH_MACS[0], "dev", "eth0", "nud", "permanent"])?;
            if cfg.rules_v6.is_some() {
                for a in ["fd00::1", "fd00::9"] {
                    pod.ip(&["-6", "neigh", "replace", a, "lladdr", peer_mac, "dev", "eth0", "nud", "permanent"])?;
                }
                peer.ip(&["-6", "neigh", "replace", "fd00::5", "lladdr", NEIGH_MACS[0], "dev", "eth0", "nud", "permanent"])?;
                if let Some(far) = &far {
                    pod.ip(&["-6", "neigh", "replace", "fd01::9", "lladdr", NEIGH_MACS[3], "dev", "eth1", "nud", "permanent"])?;
                    far.ip(&["-6", "neigh", "replace", "fd01::5", "lladdr", NEIGH_MACS[2], "dev", "eth0", "nud", "permanent"])?;
                }
            }
            if let Some(far) = &far {
                pod.ip(&["link", "set", "eth1", "address", NEIGH_MACS[2]])?;
                far.ip(&["link", "set", "eth0", "address", NEIGH_MACS[3]])?;
                pod.ip(&["neigh", "replace", "10.1.0.9", "lladdr", NEIGH_MACS[3], "dev", "eth1", "nud", "permanent"])?;
                far.ip(&["neigh", "replace", "10.1.0.5", "lladdr", NEIGH_MACS[2], "dev", "eth0", "nud", "permanent"])?;
            }
        }
        {
            let mut cmd = vec!["sysctl".to_string(), "-q".into(), "-w".into(), format!("net.ipv4.ip_forward={}", u8::from(cfg.forward))];
            let ifaces = if cfg.far { vec!["all", "eth0", "eth1"] } else { vec!["all", "eth0"] };
            cmd.extend(ifaces.iter().map(|i| format!("net.ipv4.conf.{i}.rp_filter={}", cfg.rp_filter)));
            pod.exec(&cmd.iter().map(String::as_str).collect::<Vec<_>>(), "")?;
        }
        if let Some((mark, mask, table)) = cfg.tproxy_route {
            let (fw, t) = (format!("{mark:#x}/{mask:#x}"), table.to_string());
            pod.ip(&["rule", "add", "fwmark", &fw, "lookup", &t])?;
            pod.ip(&["route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", &t])?;
        }
        for (name, kind, members) in &cfg.ipsets {
            let mut cmd = vec!["ipset", "create", name.as_str()];
            cmd.extend(kind.split_whitespace());
            pod.exec(&cmd, "")?;
            for m in members {
                pod.exec(&["ipset", "add", name, m], "")?;
            }
        }
        let load = |ns: &NsGuard, rules: &str| -> Result<Vec<String>, String> {
            ns.exec(&[&backend.tool("-restore"), "--wait=10"], rules)?;
            let saved = ns.exec(&[&backend.tool("-save")], "")?;
            Ok(saved.lines().filter_map(|l| l.strip_prefix('*')).map(|t| t.trim().to_string()).collect())
        };
        let tables = load(&pod, rules_v4)?;
        let tables6 = match &cfg.rules_v6 {
            Some(rules) => {
                let tool = match backend {
                    Backend::Nft => "ip6tables-nft",
                    Backend::Legacy => "ip6tables-legacy",
                };
                pod.exec(&[&format!("{tool}-restore"), "--wait=10"], rules)?;
                let saved = pod.exec(&[&format!("{tool}-save")], "")?;
                saved.lines().filter_map(|l| l.strip_prefix('*')).map(|t| t.trim().to_string()).collect()
            }
            None => Vec::new(),
        };
        let peer_tables = match rules_peer {
            Some(rules) => load(&peer, rules)?,
            None => Vec::new(),
        };
        Ok(Lab {
            backend,
            listeners: Vec::new(),
            tables,
            peer_tables,
            tables6,
            next_sport: SPORT_FIRST,
            used_sports: BTreeSet::new(),
            udp_wait: Duration::from_millis(100),
            tcp_timeout: Duration::from_millis(250),
            pod,
            peer,
            far,
        })
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Name of the namespace of `side`.
    pub(crate) fn ns_name(&self, side: Side) -> &str {
        match side {
            Side::Pod => &self.pod.0,
            Side::Peer => &self.peer.0,
            Side::Far => self.far.as_ref().map_or("", |f| f.0.as_str()),
        }
    }

    /// PIDs of the listener processes (for checking cleanup).
    pub(crate) fn listener_pids(&self) -> Vec<u32> {
        self.listeners.iter().map(|l| l.child.id()).collect()
    }

    /// Tables present in the pod after loading (these are zeroed before each probe).
    pub(crate) fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Tables present in the peer after loading (empty unless made by [`Lab::new_pair`]).
    pub(crate) fn peer_tables(&self) -> &[String] {
        &self.peer_tables
    }

    /// `iptables-save -c` of the pod.
    pub(crate) fn save(&self) -> Result<String, String> {
        self.save_side(Side::Pod)
    }

    /// `iptables-save -c` of `side`.
    pub(crate) fn save_side(&self, side: Side) -> Result<String, String> {
        let ns = match side {
            Side::Pod => &self.pod,
            Side::Peer | Side::Far => &self.peer,
        };
        ns.exec(&[&self.backend.tool("-save"), "-c"], "")
    }

    /// Starts a listener on `addr:port` in `side`, running as `uid`/gid `uid`. Returns when it is bound.
    pub(crate) fn listen(&mut self, side: Side, proto: Proto, addr: IpAddr, port: u16, uid: u32) -> Result<(), String> {
        self.listen_with(side, proto, addr, port, uid, false)
    }

    /// Like [`Lab::listen`]; with `transparent` the socket has `IP_TRANSPARENT` (what TPROXY
    /// needs), so it is created as root and runs as `uid` only after binding. An ICMP listener
    /// (a raw socket recording the echo requests delivered to `side`) ignores `addr` and `port`.
    pub(crate) fn listen_with(&mut self, side: Side, proto: Proto, addr: IpAddr, port: u16, uid: u32, transparent: bool) -> Result<(), String> {
        let ns = self.ns_name(side).to_string();
        let (reuid, regid) = (format!("--reuid={uid}"), format!("--regid={uid}"));
        let root = transparent || proto == Proto::Icmp;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns]);
        if !root {
            cmd.args(["setpriv", &reuid, &regid, "--clear-groups"]);
        }
        let drop_to = if root { uid.to_string() } else { "0".to_string() };
        let mut child = cmd
            .args([python(), "-I", "-S", "-c", LISTENER_PY])
            .args([proto.name(), &addr.to_string(), &port.to_string(), &drop_to, if transparent { "1" } else { "0" }])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning listener: {e}"))?;
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let records = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let recs = Arc::clone(&records);
        let out_thread = std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "\"READY\"" {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                match parse_record(&line, side, port) {
                    Ok(r) => recs.lock().unwrap().push(r),
                    Err(e) => eprintln!("oracle listener: {e}"),
                }
            }
        });
        let err = Arc::clone(&stderr);
        let err_thread = std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut e = err.lock().unwrap();
                e.push_str(&line);
                e.push('\n');
            }
        });
        let mut l = Listener { side, port, child, records, stderr, threads: vec![out_thread, err_thread] };
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(()) => {
                self.listeners.push(l);
                Ok(())
            }
            Err(_) => {
                l.stop();
                let e = l.stderr.lock().unwrap().clone();
                Err(format!("listener {side:?} {} {addr}:{port} uid {uid} did not start: {}", proto.name(), e.trim()))
            }
        }
    }

    fn zero_counters(&self) -> Result<(), String> {
        let tool = self.backend.tool("");
        for (ns, tables) in [(&self.pod, &self.tables), (&self.peer, &self.peer_tables)] {
            if tables.is_empty() {
                continue;
            }
            let script: Vec<String> = tables.iter().map(|t| format!("{tool} -w 10 -t {t} -Z")).collect();
            ns.exec(&["sh", "-ec", &script.join("\n")], "")?;
        }
        Ok(())
    }

    fn zero_counters6(&self) -> Result<(), String> {
        if self.tables6.is_empty() {
            return Ok(());
        }
        let tool = self.ip6tables("");
        let script: Vec<String> = self.tables6.iter().map(|t| format!("{tool} -w 10 -t {t} -Z")).collect();
        self.pod.exec(&["sh", "-ec", &script.join("\n")], "")?;
        Ok(())
    }

    fn ip6tables(&self, what: &str) -> String {
        match self.backend {
            Backend::Nft => format!("ip6tables-nft{what}"),
            Backend::Legacy => format!("ip6tables-legacy{what}"),
        }
    }

    /// `ip6tables-save -c` of the pod (empty without [`LabConfig::rules_v6`]).
    pub(crate) fn save6(&self) -> Result<String, String> {
        if self.tables6.is_empty() {
            return Ok(String::new());
        }
        self.pod.exec(&[&self.ip6tables("-save"), "-c"], "")
    }

    /// Zeroes the counters, sends the probe, and reports counters and what the listeners got.
    pub(crate) fn probe(&mut self, p: &Probe) -> Result<Observed, String> {
        let start = Instant::now();
        let dst = p.dst;
        let v6 = dst.is_ipv6();
        let src = match p.src {
            None if v6 => "::".to_string(),
            None => "0.0.0.0".to_string(),
            Some(a) => a.to_string(),
        };
        let sport = p.sport.unwrap_or_else(|| {
            let s = self.next_sport;
            self.next_sport = if s + 1 >= SPORT_END { SPORT_FIRST } else { s + 1 };
            s
        });
        let (ns, uid, gid) = match p.from {
            From::Local { uid, gid } => (self.pod.0.clone(), uid, gid),
            From::Peer => {
                let (uid, gid) = p.peer_owner.unwrap_or((0, 0));
                (self.peer.0.clone(), uid, gid)
            }
            From::Far => match &self.far {
                Some(f) => (f.0.clone(), 0, 0),
                None => return Err("a probe from the far namespace needs LabConfig::far".into()),
            },
        };
        if v6 {
            self.zero_counters6()?
        } else {
            self.zero_counters()?
        };
        let before: Vec<usize> = self.listeners.iter().map(|l| l.records.lock().unwrap().len()).collect();
        let new_records = |ls: &[Listener]| ls.iter().zip(&before).map(|(l, &b)| l.records.lock().unwrap().len() - b).sum::<usize>();

        let wait = match p.proto {
            Proto::Udp | Proto::Icmp | Proto::Sctp => self.udp_wait,
            Proto::Tcp => self.tcp_timeout,
        };
        let (reuid, regid) = (format!("--reuid={uid}"), format!("--regid={gid}"));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "setpriv", &reuid, &regid, "--clear-groups", python(), "-I", "-S", "-c", SENDER_PY])
            .args([p.proto.name(), &src, &sport.to_string(), &dst.ip().to_string(), &dst.port().to_string(), &format!("{:.3}", wait.as_secs_f64())])
            .args([p.tos.map_or(-1, i32::from).to_string(), p.ttl.map_or(-1, i32::from).to_string(), if p.freebind { "1" } else { "0" }.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning sender: {e}"))?;
        // A UDP datagram that reached a listener is done; don't wait for an ICMP error that can't come.
        let hard_deadline = Instant::now() + 2 * wait + Duration::from_secs(2);
        let mut killed_early = false;
        loop {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                break;
            }
            if p.proto != Proto::Tcp && new_records(&self.listeners) > 0 {
                let _ = child.kill();
                killed_early = true;
                break;
            }
            if Instant::now() > hard_deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("oracle sender did not finish".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let (connected, error) = if killed_early {
            (false, None)
        } else {
            let text = String::from_utf8_lossy(&out.stdout);
            let v: serde_json::Value =
                serde_json::from_str(text.trim()).map_err(|e| format!("sender output {text:?} ({e}); stderr: {}", String::from_utf8_lossy(&out.stderr)))?;
            (v["connected"].as_bool().unwrap_or(false), v["error"].as_str().map(str::to_string))
        };
        // A connected TCP probe was accepted by a listener before its RST came back; give the reader
        // thread a moment to pass the record on.
        if connected {
            let until = Instant::now() + Duration::from_millis(200);
            while new_records(&self.listeners) == 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let saved = if v6 { self.save6()? } else { self.save()? };
        let mut obs = parse_counters(&saved)?;
        if !self.peer_tables.is_empty() {
            let peer = parse_counters(&self.save_side(Side::Peer)?)?;
            (obs.moved_peer, obs.packets_peer, obs.policy_peer) = (peer.moved, peer.packets, peer.policy);
        }
        for (l, &b) in self.listeners.iter().zip(&before) {
            obs.received.extend(l.records.lock().unwrap()[b..].iter().cloned());
        }
        // A record from an earlier probe that arrived late (its source port is that probe's) is
        // not this probe's; NAT keeps the source port unless it clashes.
        obs.received.retain(|r| r.peer.port() == sport || !self.used_sports.contains(&r.peer.port()));
        self.used_sports.insert(sport);
        obs.error = error;
        obs.sport = sport;
        obs.elapsed = start.elapsed();
        Ok(obs)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for l in &mut self.listeners {
            l.stop();
        }
        // The namespaces are deleted when `pod` and `peer` drop, right after this.
    }
}

fn parse_sockaddr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| format!("bad socket address {s:?}: {e}"))
}

fn parse_record(line: &str, side: Side, port: u16) -> Result<Received, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("bad record {line:?}: {e}"))?;
    let local = parse_sockaddr(v["local"].as_str().ok_or("record without local")?)?;
    let peer = parse_sockaddr(v["peer"].as_str().ok_or("record without peer")?)?;
    let orig_dst = v["orig"].as_str().map(parse_sockaddr).transpose()?;
    Ok(Received { side, port_listened: port, local_addr: local.ip(), local_port: local.port(), peer, orig_dst })
}

/// Reads rule and policy counters from `iptables-save -c` output; only non-zero ones are kept.
pub(crate) fn parse_counters(saved: &str) -> Result<Observed, String> {
    let mut obs = Observed::default();
    let mut table = String::new();
    let mut index: BTreeMap<String, u32> = BTreeMap::new();
    let counter = |s: &str| -> Result<u64, String> {
        let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
        let (p, _) = inner.split_once(':').ok_or_else(|| format!("bad counter {s:?}"))?;
        p.parse().map_err(|e| format!("bad counter {s:?}: {e}"))
    };
    for line in saved.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim().to_string();
            index.clear();
        } else if let Some(rest) = line.strip_prefix(':') {
            // :CHAIN POLICY [p:b]
            let mut f = rest.split_whitespace();
            let (Some(chain), Some(policy), Some(c)) = (f.next(), f.next(), f.next()) else { continue };
            if policy != "-" {
                let n = counter(c)?;
                if n > 0 {
                    obs.policy.insert((table.clone(), chain.to_string()));
                    obs.policy_packets.insert((table.clone(), chain.to_string()), n);
                }
            }
        } else if line.starts_with('[') {
            // [p:b] -A CHAIN ...
            let (c, rule) = line.split_once(' ').ok_or_else(|| format!("bad rule line {line:?}"))?;
            let chain = rule.strip_prefix("-A ").and_then(|r| r.split_whitespace().next()).ok_or_else(|| format!("bad rule line {line:?}"))?;
            let i = index.entry(chain.to_string()).or_insert(0);
            *i += 1;
            let n = counter(c)?;
            if n > 0 {
                let id = (table.clone(), chain.to_string(), *i);
                obs.moved.insert(id.clone());
                obs.packets.insert(id, n);
            }
        }
    }
    Ok(obs)
}
