//! `-j REJECT`: drops the packet and answers with an ICMP error or a TCP RST (`ipt_REJECT.c` /
//! `ip6t_REJECT.c`, `libipt_REJECT.c` / `libip6t_REJECT.c`).
//!
//! `--reject-with` takes a type name or its alias, case-insensitively, and any prefix of either:
//! the first entry of the family's table (in kernel order) that starts with the text wins, so
//! `icmp` is `icmp-net-unreachable` and `p` is `icmp-proto-unreachable` for IPv4. iptables-save
//! always prints the canonical name, the default included. `tcp-reset` needs `-p tcp` (not
//! negated): the kernel refuses it otherwise.

use serde::Serialize;

use super::effect::{Applied, Cx, Effect};
use crate::stack::Domain;
use crate::traverse::End;
use crate::xt::Family;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert};

/// What REJECT sends back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectWith {
    /// ICMP destination unreachable, network unreachable (3/0).
    IcmpNetUnreachable,
    /// ICMP destination unreachable, host unreachable (3/1).
    IcmpHostUnreachable,
    /// ICMP destination unreachable, protocol unreachable (3/2).
    IcmpProtoUnreachable,
    /// ICMP destination unreachable, port unreachable (3/3): the IPv4 default.
    IcmpPortUnreachable,
    /// ICMP destination unreachable, network prohibited (3/9).
    IcmpNetProhibited,
    /// ICMP destination unreachable, host prohibited (3/10).
    IcmpHostProhibited,
    /// ICMP destination unreachable, communication administratively prohibited (3/13).
    IcmpAdminProhibited,
    /// A TCP RST (both families).
    TcpReset,
    /// ICMPv6 destination unreachable, no route (1/0).
    Icmp6NoRoute,
    /// ICMPv6 destination unreachable, administratively prohibited (1/1).
    Icmp6AdmProhibited,
    /// ICMPv6 destination unreachable, address unreachable (1/3).
    Icmp6AddrUnreachable,
    /// ICMPv6 destination unreachable, port unreachable (1/4): the IPv6 default.
    Icmp6PortUnreachable,
    /// ICMPv6 destination unreachable, source address failed ingress/egress policy (1/5).
    Icmp6PolicyFail,
    /// ICMPv6 destination unreachable, reject route to destination (1/6).
    Icmp6RejectRoute,
}

/// Name, alias and type of the IPv4 reject types, in the kernel's `enum ipt_reject_with` order.
const V4_TYPES: &[(&str, &str, RejectWith)] = &[
    ("icmp-net-unreachable", "net-unreach", RejectWith::IcmpNetUnreachable),
    ("icmp-host-unreachable", "host-unreach", RejectWith::IcmpHostUnreachable),
    ("icmp-proto-unreachable", "proto-unreach", RejectWith::IcmpProtoUnreachable),
    ("icmp-port-unreachable", "port-unreach", RejectWith::IcmpPortUnreachable),
    ("icmp-net-prohibited", "net-prohib", RejectWith::IcmpNetProhibited),
    ("icmp-host-prohibited", "host-prohib", RejectWith::IcmpHostProhibited),
    ("tcp-reset", "tcp-rst", RejectWith::TcpReset),
    ("icmp-admin-prohibited", "admin-prohib", RejectWith::IcmpAdminProhibited),
];

/// Name, alias and type of the IPv6 reject types, in the kernel's `enum ip6t_reject_with` order.
const V6_TYPES: &[(&str, &str, RejectWith)] = &[
    ("icmp6-no-route", "no-route", RejectWith::Icmp6NoRoute),
    ("icmp6-adm-prohibited", "adm-prohibited", RejectWith::Icmp6AdmProhibited),
    ("icmp6-addr-unreachable", "addr-unreach", RejectWith::Icmp6AddrUnreachable),
    ("icmp6-port-unreachable", "port-unreach", RejectWith::Icmp6PortUnreachable),
    ("tcp-reset", "tcp-reset", RejectWith::TcpReset),
    ("icmp6-policy-fail", "policy-fail", RejectWith::Icmp6PolicyFail),
    ("icmp6-reject-route", "reject-route", RejectWith::Icmp6RejectRoute),
];

fn types(family: Family) -> &'static [(&'static str, &'static str, RejectWith)] {
    match family {
        Family::V4 => V4_TYPES,
        Family::V6 => V6_TYPES,
    }
}

impl RejectWith {
    /// The type `--reject-with TEXT` selects for `family`, as libipt/libip6t_REJECT resolve it.
    pub fn parse(text: &str, family: Family) -> Result<RejectWith, String> {
        types(family).iter().find(|(name, alias, _)| starts_ci(name, text) || starts_ci(alias, text)).map(|&(_, _, with)| with).ok_or_else(|| {
            let names: Vec<&str> = types(family).iter().map(|(n, _, _)| *n).collect();
            format!("unknown reject type `{text}` (expected {})", names.join(", "))
        })
    }

    /// The name iptables-save prints.
    pub fn name(self) -> &'static str {
        V4_TYPES.iter().chain(V6_TYPES).find(|(_, _, w)| *w == self).map_or("", |(n, _, _)| n)
    }

    /// The ICMP (IPv4) or ICMPv6 `(type, code)` sent back; `None` for a TCP RST.
    pub fn icmp(self) -> Option<(u8, u8)> {
        use RejectWith::*;
        Some(match self {
            IcmpNetUnreachable => (3, 0),
            IcmpHostUnreachable => (3, 1),
            IcmpProtoUnreachable => (3, 2),
            IcmpPortUnreachable => (3, 3),
            IcmpNetProhibited => (3, 9),
            IcmpHostProhibited => (3, 10),
            IcmpAdminProhibited => (3, 13),
            TcpReset => return None,
            Icmp6NoRoute => (1, 0),
            Icmp6AdmProhibited => (1, 1),
            Icmp6AddrUnreachable => (1, 3),
            Icmp6PortUnreachable => (1, 4),
            Icmp6PolicyFail => (1, 5),
            Icmp6RejectRoute => (1, 6),
        })
    }
}

/// The REJECT target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reject {
    /// `--reject-with`, or the family's default (port unreachable).
    pub with: RejectWith,
    #[serde(skip)]
    given: bool,
}

impl Extension for Reject {
    const OPTIONS: &'static [&'static str] = &["reject-with"];

    fn new(ctx: &Ctx) -> Self {
        let with = match ctx.family {
            Family::V4 => RejectWith::IcmpPortUnreachable,
            Family::V6 => RejectWith::Icmp6PortUnreachable,
        };
        Reject { with, given: false }
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        if opt != "reject-with" {
            return Err(format!("unknown option `--{opt}`"));
        }
        if self.given {
            return Err("option `--reject-with` may be given only once".into());
        }
        no_invert(invert, opt)?;
        let text = args.value()?;
        let family = args.ctx().family;
        self.with = RejectWith::parse(text, family).map_err(|e| {
            if family == Family::V4 && (starts_ci("echo-reply", text) || starts_ci("echoreply", text)) {
                format!("unknown reject type `{text}` (echo-reply is no longer supported)")
            } else {
                e
            }
        })?;
        self.given = true;
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        self.given = false;
        if self.with == RejectWith::TcpReset && ctx.proto() != Some(6) {
            return Err("`--reject-with tcp-reset` needs `-p tcp` (the kernel refuses it otherwise)".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        out.push_str(" --reject-with ");
        out.push_str(self.with.name());
    }
}

/// True when `text` is a case-insensitive prefix of `full` (`strncasecmp(full, text, strlen(text))`).
fn starts_ci(full: &str, text: &str) -> bool {
    full.len() >= text.len() && full.as_bytes()[..text.len()].eq_ignore_ascii_case(text.as_bytes())
}

/// `reject_tg`: the packet is refused (with the ICMP error or TCP reset chosen).
impl Effect for Reject {
    fn effect<'a, D: Domain<'a>>(&self, _: &mut D, st: D::State, cx: &Cx<'_, 'a, D>) -> Applied<D::State> {
        Applied::One(st, Some(End::Reject(cx.here.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Neg, Proto, TableName};

    fn check(family: Family, proto: Option<Neg<Proto>>, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Filter, proto };
        check_alone::<Reject>(ctx, line)
    }

    const TCP: Option<Neg<Proto>> = Some(Neg { value: Proto::TCP, negated: false });

    /// Every line of libipt_REJECT.t.
    #[test]
    fn libipt_reject_t() {
        let c = |l: &str| check(Family::V4, None, l);
        assert_eq!(c("").unwrap(), " --reject-with icmp-port-unreachable");
        for name in [
            "icmp-net-unreachable",
            "icmp-host-unreachable",
            "icmp-port-unreachable",
            "icmp-proto-unreachable",
            "icmp-net-prohibited",
            "icmp-host-prohibited",
            "icmp-admin-prohibited",
        ] {
            let l = format!("--reject-with {name}");
            assert_eq!(c(&l).unwrap(), format!(" {l}"));
        }
    }

    /// Every line of libip6t_REJECT.t.
    #[test]
    fn libip6t_reject_t() {
        let c = |l: &str| check(Family::V6, None, l);
        assert_eq!(c("").unwrap(), " --reject-with icmp6-port-unreachable");
        for name in ["icmp6-no-route", "icmp6-adm-prohibited", "icmp6-addr-unreachable", "icmp6-port-unreachable", "icmp6-policy-fail", "icmp6-reject-route"] {
            let l = format!("--reject-with {name}");
            assert_eq!(c(&l).unwrap(), format!(" {l}"));
        }
        assert_eq!(check(Family::V6, TCP, "--reject-with tcp-reset").unwrap(), " --reject-with tcp-reset");
        assert!(c("--reject-with tcp-reset").is_err());
    }

    /// Forms checked against iptables-nft-restore / iptables-save 1.8.9 on this machine.
    #[test]
    fn prefixes_and_aliases() {
        let v4 = |t| RejectWith::parse(t, Family::V4).map(RejectWith::name);
        let v6 = |t| RejectWith::parse(t, Family::V6).map(RejectWith::name);
        assert_eq!(v4("net-unreach"), Ok("icmp-net-unreachable"));
        assert_eq!(v4("ICMP-HOST"), Ok("icmp-host-unreachable"));
        assert_eq!(v4("icmp"), Ok("icmp-net-unreachable"));
        assert_eq!(v4(""), Ok("icmp-net-unreachable"));
        assert_eq!(v4("tcp"), Ok("tcp-reset"));
        assert_eq!(v4("tcp-rst"), Ok("tcp-reset"));
        assert_eq!(v4("admin"), Ok("icmp-admin-prohibited"));
        assert_eq!(v4("proto"), Ok("icmp-proto-unreachable"));
        assert_eq!(v4("p"), Ok("icmp-proto-unreachable"));
        assert!(v4("icmp6-no-route").is_err());
        assert_eq!(v6("no-route"), Ok("icmp6-no-route"));
        assert_eq!(v6("icmp6"), Ok("icmp6-no-route"));
        assert_eq!(v6(""), Ok("icmp6-no-route"));
        assert_eq!(v6("adm"), Ok("icmp6-adm-prohibited"));
        assert_eq!(v6("addr-unreach"), Ok("icmp6-addr-unreachable"));
        assert_eq!(v6("port-unreach"), Ok("icmp6-port-unreachable"));
        assert_eq!(v6("p"), Ok("icmp6-port-unreachable"));
        assert_eq!(v6("policy"), Ok("icmp6-policy-fail"));
        assert_eq!(v6("reject"), Ok("icmp6-reject-route"));
        assert!(v6("tcp-rst").is_err());
        assert!(v6("icmp-port-unreachable").is_err());

        let c = |p, l| check(Family::V4, p, l);
        assert_eq!(c(TCP, "--reject-with tcp-rst").unwrap(), " --reject-with tcp-reset");
        assert_eq!(c(None, "--reject-w host-prohib").unwrap(), " --reject-with icmp-host-prohibited");
        assert!(c(None, "--reject-with tcp-reset").is_err());
        let not_tcp = Some(Neg::new(Proto::TCP, true));
        assert!(c(not_tcp, "--reject-with tcp-reset").is_err());
        assert!(c(None, "--reject-with echo-reply").is_err());
        assert!(c(None, "--reject-with admin --reject-with net").is_err());
        assert!(c(None, "! --reject-with admin").is_err());
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Reject>() <= 40);
    }
}
