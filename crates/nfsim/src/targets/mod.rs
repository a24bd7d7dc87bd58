//! Target extensions (`-j NAME`), one file per target, named as the kernel's `xt_*.c` files.
//! The standard verdicts and chain jumps are [`Target`](crate::ruleset::Target) variants.

pub mod audit;
pub mod checksum;
pub mod connmark;
pub mod ct;
pub mod dnat;
pub mod dscp;
pub(crate) mod effect;
pub mod hl;
pub mod log;
pub mod mark;
pub mod masquerade;
pub mod netmap;
pub mod nflog;
pub mod notrack;
pub mod redirect;
pub mod reject;
pub mod set;
pub mod snat;
pub mod tcpmss;
pub mod tos;
pub mod tproxy;
pub mod trace;
pub mod ttl;
pub mod ulog;

use crate::xt::ext::extension_enum;

extension_enum! {
    /// A target extension of a rule.
    pub enum TargetExt {
        Audit(audit::Audit) = "AUDIT",
        Checksum(checksum::Checksum) = "CHECKSUM",
        Connmark(connmark::Connmark) = "CONNMARK",
        Ct(Box<ct::Ct>) = "CT",
        Dnat(dnat::Dnat) = "DNAT",
        Dscp(dscp::Dscp) = "DSCP",
        Hl(hl::Hl) = "HL",
        Log(log::Log) = "LOG",
        Mark(mark::Mark) = "MARK",
        Masquerade(masquerade::Masquerade) = "MASQUERADE",
        Netmap(netmap::Netmap) = "NETMAP",
        Nflog(Box<nflog::Nflog>) = "NFLOG",
        Notrack(notrack::Notrack) = "NOTRACK",
        Redirect(redirect::Redirect) = "REDIRECT",
        Reject(reject::Reject) = "REJECT",
        Set(Box<set::Set>) = "SET",
        Snat(snat::Snat) = "SNAT",
        Tcpmss(tcpmss::Tcpmss) = "TCPMSS",
        Tos(tos::Tos) = "TOS",
        Tproxy(Box<tproxy::Tproxy>) = "TPROXY",
        Trace(trace::Trace) = "TRACE",
        Ttl(ttl::Ttl) = "TTL",
        Ulog(Box<ulog::Ulog>) = "ULOG",
    }
}

/// Every target extension iptables 1.8 ships (the typed ones and those kept verbatim).
pub const KNOWN: &[&str] = &[
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CLUSTERIP",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DNAT",
    "DNPT",
    "DSCP",
    "ECN",
    "HL",
    "HMARK",
    "IDLETIMER",
    "LED",
    "LOG",
    "MARK",
    "MASQUERADE",
    "NETMAP",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "RATEEST",
    "REDIRECT",
    "REJECT",
    "SECMARK",
    "SET",
    "SNAT",
    "SNPT",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
];
