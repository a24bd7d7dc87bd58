//! `-j MASQUERADE`: SNAT to the address of the outgoing interface, forgotten when the interface
//! goes down (`xt_MASQUERADE.c`, `libxt_NAT.c`).
//!
//! `--to-ports` takes `PORT[-PORT]` (see `dnat::parse_ports`) and needs a port protocol
//! before the target. A `/BASE` is accepted, but the kernel structure has no field for it: the
//! rule is loaded and saved with `/0`.

use serde::Serialize;

use super::dnat::{NatPorts, NatRange, parse_ports, ports_allowed, save_flags, save_range, set_flag};
use super::effect::{Applied, Cx, Effect};
use crate::stack::Domain;
use crate::traverse::End;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once};

/// The MASQUERADE target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Masquerade {
    /// `--to-ports`: the source ports to use; `None` keeps the port when it can.
    pub ports: Option<NatPorts>,
    /// `--random`: randomize the source port (`NF_NAT_RANGE_PROTO_RANDOM`).
    pub random: bool,
    /// `--random-fully`: fully randomize the source port (`NF_NAT_RANGE_PROTO_RANDOM_FULLY`).
    pub random_fully: bool,
}

impl Extension for Masquerade {
    const OPTIONS: &'static [&'static str] = &["to-ports", "random", "random-fully"];

    fn new(_ctx: &Ctx) -> Self {
        Masquerade::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        no_invert(invert, opt)?;
        match opt {
            "to-ports" => {
                once(&self.ports, opt)?;
                let portok = ports_allowed(&args.ctx());
                let mut ports = parse_ports(args.value()?, portok)?;
                ports.base = ports.base.map(|_| 0);
                self.ports = Some(ports);
            }
            "random" => set_flag(&mut self.random, opt)?,
            "random-fully" => set_flag(&mut self.random_fully, opt)?,
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn save(&self, ctx: &Ctx, out: &mut String) {
        let range = NatRange { addrs: None, ports: self.ports };
        save_range(out, "--to-ports", &range, ctx.family, true);
        save_flags(out, self.random, self.random_fully, false);
    }
}

/// `masquerade_tg`: SNAT to the output route's preferred source; without one the packet is
/// dropped.
impl Effect for Masquerade {
    fn effect<'a, D: Domain<'a>>(&self, d: &mut D, st: D::State, cx: &Cx<'_, 'a, D>) -> Applied<D::State> {
        let Some(addr) = cx.nat.masquerade_src else { return Applied::One(st, Some(End::Drop(Some(cx.here.clone())))) };
        super::effect::snat_ports(d, st, addr, self.ports.map(|p| (p.lo, p.hi)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, Neg, Proto, TableName};

    fn check(family: Family, proto: Option<Proto>, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Nat, proto: proto.map(|p| Neg::new(p, false)) };
        check_alone::<Masquerade>(ctx, line)
    }

    /// Every line of libipt_MASQUERADE.t and libip6t_MASQUERADE.t (they are the same).
    #[test]
    fn upstream_specs() {
        for family in [Family::V4, Family::V6] {
            let same = |proto, l: &str| {
                assert_eq!(check(family, proto, l).as_deref(), Ok(&*format!("{}{l}", if l.is_empty() { "" } else { " " })), "{l}");
            };
            same(None, "");
            same(None, "--random");
            same(None, "--random-fully");
            same(Some(Proto::TCP), "--to-ports 1024");
            same(Some(Proto::UDP), "--to-ports 1024-65535");
            assert!(check(family, Some(Proto::UDP), "--to-ports 1024-65536").is_err());
            assert!(check(family, Some(Proto::UDP), "--to-ports -1").is_err());
        }
    }

    /// Forms checked against iptables-nft-restore / iptables-save 1.8.9 on this machine.
    #[test]
    fn observed_forms() {
        let tcp = Some(Proto::TCP);
        for family in [Family::V4, Family::V6] {
            assert_eq!(check(family, tcp, "--to-ports 1024-2048/5").unwrap(), " --to-ports 1024-2048/0");
        }
        assert_eq!(check(Family::V4, tcp, "--to-ports ssh").unwrap(), " --to-ports 22");
        assert_eq!(check(Family::V4, tcp, "--random-fully --random --to-ports 1024-1024").unwrap(), " --to-ports 1024 --random --random-fully");
        assert!(check(Family::V4, tcp, "--to-ports :1024").is_err());
        assert!(check(Family::V4, None, "--to-ports 1024").is_err());
        assert!(check(Family::V4, None, "--persistent").is_err());
        assert!(check(Family::V4, None, "--random --random").is_err());
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Masquerade>() <= 40);
    }
}
