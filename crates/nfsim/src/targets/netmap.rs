//! `-j NETMAP`: maps a whole network onto another one, keeping the host part (`xt_NETMAP.c`,
//! `libipt_NETMAP.c` / `libip6t_NETMAP.c`).
//!
//! `--to ADDR[/MASK]` reads the address as `getaddrinfo` does (for IPv4 `inet_aton`'s forms:
//! `10.1` is 10.0.0.1; host names are not resolved here) and the mask as a prefix length (a
//! `strtoul` number) or a numeric mask. A mask that is not contiguous is taken as a full one
//! (`/255.0.255.0` is `/32`), as iptables does. The address is stored masked, and saved as
//! `ADDR/LEN`.

use ipnet::IpNet;
use serde::Serialize;

use super::dnat::{parse_host, xt_strtoul};
use super::effect::{Applied, Cx, Effect, go};
use crate::stack::{Domain, Flow};
use crate::traverse::End;
use crate::xt::Family;
use crate::xt::addr::fmt_ip;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once};

/// The NETMAP target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Netmap {
    /// `--to` (required: `None` only while the rule is being read): the network mapped to.
    pub to: Option<IpNet>,
}

impl Extension for Netmap {
    const OPTIONS: &'static [&'static str] = &["to"];

    fn new(_ctx: &Ctx) -> Self {
        Netmap::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        if opt != "to" {
            return Err(format!("unknown option `--{opt}`"));
        }
        once(&self.to, opt)?;
        no_invert(invert, opt)?;
        self.to = Some(parse_net(args.value()?, args.ctx().family)?);
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.to.is_none() {
            return Err("the NETMAP target requires `--to ADDR[/MASK]`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(net) = self.to {
            out.push_str(" --to ");
            fmt_ip(out, net.addr());
            out.push_str(&format!("/{}", net.prefix_len()));
        }
    }
}

/// Parses `ADDR[/MASK]` as `XTTYPE_HOSTMASK` does.
fn parse_net(s: &str, family: Family) -> Result<IpNet, String> {
    let max: u8 = match family {
        Family::V4 => 32,
        Family::V6 => 128,
    };
    let (host, mask) = match s.split_once('/') {
        Some((h, m)) => (h, Some(m)),
        None => (s, None),
    };
    let addr = parse_host(host, family)?;
    let len = match mask {
        None => max,
        Some(m) => match xt_strtoul(m, 0, max.into()) {
            Some(n) => n as u8,
            None => {
                let mask = parse_host(m, family).map_err(|_| format!("invalid mask `{m}` (expected a prefix length 0-{max} or a network mask)"))?;
                let bits = match mask {
                    std::net::IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
                    std::net::IpAddr::V6(a) => u128::from(a),
                };
                let ones = bits.leading_ones();
                if bits.checked_shl(ones).unwrap_or(0) == 0 { ones as u8 } else { max }
            }
        },
    };
    let net = IpNet::new(addr, len).map_err(|e| e.to_string())?;
    Ok(net.trunc())
}

/// `netmap_tg4`: the network part of the destination (PREROUTING, OUTPUT) or of the source
/// (POSTROUTING, INPUT) from `--to`, the host part kept.
impl Effect for Netmap {
    fn effect<'a, D: Domain<'a>>(&self, d: &mut D, mut st: D::State, cx: &Cx<'_, 'a, D>) -> Applied<D::State> {
        let Some(to) = self.to else { return go(st) };
        let dst_side = matches!(cx.hook, crate::xt::Hook::Prerouting | crate::xt::Hook::Output);
        let Some(a) = d.one_addr(&st, dst_side) else {
            return cx.undecidable(st, format!("NETMAP over a range of addresses {}", crate::reason::NOT_ANALYSED));
        };
        let mapped = d.lift(netmap(a, to));
        if dst_side {
            let port = st.dport();
            st.dnat(mapped, port);
        } else {
            let port = st.sport();
            st.snat(mapped, port);
        }
        Applied::One(st, Some(End::Accept))
    }
}

/// NETMAP's address: the network part from `to`, the host part kept.
fn netmap(a: std::net::IpAddr, to: IpNet) -> std::net::IpAddr {
    use std::net::IpAddr;
    match (a, to) {
        (IpAddr::V4(a), IpNet::V4(to)) => {
            let m = u32::from(to.netmask());
            IpAddr::V4(((u32::from(a) & !m) | (u32::from(to.network()) & m)).into())
        }
        (IpAddr::V6(a), IpNet::V6(to)) => {
            let m = u128::from(to.netmask());
            IpAddr::V6(((u128::from(a) & !m) | (u128::from(to.network()) & m)).into())
        }
        (a, _) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::TableName;
    use crate::xt::ext::check_alone;

    fn check(family: Family, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Nat, proto: None };
        check_alone::<Netmap>(ctx, line)
    }

    /// Every line of libipt_NETMAP.t and libip6t_NETMAP.t.
    #[test]
    fn upstream_specs() {
        assert_eq!(check(Family::V4, "--to 1.2.3.0/24").unwrap(), " --to 1.2.3.0/24");
        assert_eq!(check(Family::V4, "--to 1.2.3.4").unwrap(), " --to 1.2.3.4/32");
        assert_eq!(check(Family::V6, "--to dead::/64").unwrap(), " --to dead::/64");
        assert_eq!(check(Family::V6, "--to dead::beef").unwrap(), " --to dead::beef/128");
    }

    /// Forms checked against iptables-nft-restore / iptables-save 1.8.9 on this machine.
    #[test]
    fn observed_forms() {
        let v4 = |l: &str| check(Family::V4, l);
        let v6 = |l: &str| check(Family::V6, l);
        assert_eq!(v4("--to 1.2.3.4/24").unwrap(), " --to 1.2.3.0/24");
        assert_eq!(v4("--to 1.2.3.4/255.0.255.0").unwrap(), " --to 1.2.3.4/32");
        assert_eq!(v4("--to 1.2.3.0/255.255.255.0").unwrap(), " --to 1.2.3.0/24");
        assert_eq!(v4("--to 10.1/16").unwrap(), " --to 10.0.0.0/16");
        assert_eq!(v4("--to 10.1.2.3/0x10").unwrap(), " --to 10.1.0.0/16");
        assert_eq!(v4("--to 10.1.2.3/33").unwrap(), " --to 10.1.2.3/32");
        assert_eq!(v4("--to 1.2.3.0/0").unwrap(), " --to 0.0.0.0/0");
        assert_eq!(v4("--to 1.2.3.0/0xffffff00").unwrap(), " --to 1.2.3.0/24");
        assert_eq!(v4("--to 1.2.3.0/255.255.0.255").unwrap(), " --to 1.2.3.0/32");
        for bad in ["", "--to 1.2.3.0/", "--to /24", "--to 1.2.3.0/-1", "--to a.b", "--to 1.2.3.4/24 --to 1.2.3.4/24"] {
            assert!(v4(bad).is_err(), "{bad}");
        }
        assert_eq!(v6("--to ::1.2.3.4/127").unwrap(), " --to ::1.2.3.4/127");
        assert_eq!(v6("--to dead::beef/ffff::ffff").unwrap(), " --to dead::beef/128");
        assert_eq!(v6("--to dead::/ffff:ffff::").unwrap(), " --to dead::/32");
        assert!(v6("--to dead::/129").is_err());
        assert!(v6("--to 1.2.3.4").is_err());
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Netmap>() <= 40);
    }
}
