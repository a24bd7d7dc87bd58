//! `-j REDIRECT`: DNAT to the host itself, on the primary address of the incoming interface
//! (or 127.0.0.1 / ::1 for locally generated packets), keeping the port unless `--to-ports` is
//! given (`xt_REDIRECT.c`, `libxt_NAT.c`).
//!
//! `--to-ports` takes `PORT[-PORT]` (see `dnat::parse_ports`) and needs a port protocol
//! before the target; a shifted port map (`/BASE`) is refused.

use serde::Serialize;

use super::dnat::{NatPorts, NatRange, parse_ports, ports_allowed, save_flags, save_range, set_flag};
use super::effect::{Applied, Cx, Effect};
use crate::stack::{Domain, Flow};
use crate::traverse::End;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once};

/// The REDIRECT target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Redirect {
    /// `--to-ports`: the destination ports; `None` keeps the original port.
    pub ports: Option<NatPorts>,
    /// `--random`: randomize the port chosen in the range (`NF_NAT_RANGE_PROTO_RANDOM`).
    pub random: bool,
}

impl Extension for Redirect {
    const OPTIONS: &'static [&'static str] = &["to-ports", "random"];

    fn new(_ctx: &Ctx) -> Self {
        Redirect::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        no_invert(invert, opt)?;
        match opt {
            "to-ports" => {
                once(&self.ports, opt)?;
                let portok = ports_allowed(&args.ctx());
                self.ports = Some(parse_ports(args.value()?, portok)?);
            }
            "random" => set_flag(&mut self.random, opt)?,
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.ports.is_some_and(|p| p.base.is_some()) {
            return Err("REDIRECT does not take a shifted port map (`--to-ports FIRST-LAST/BASE`)".into());
        }
        Ok(())
    }

    fn save(&self, ctx: &Ctx, out: &mut String) {
        let range = NatRange { addrs: None, ports: self.ports };
        save_range(out, "--to-ports", &range, ctx.family, true);
        save_flags(out, self.random, false, false);
    }
}

/// `redirect_tg4`/`6`: DNAT to the hook's own address (loopback in OUTPUT, the input
/// interface's primary address in PREROUTING); without one the packet is dropped.
impl Effect for Redirect {
    fn effect<'a, D: Domain<'a>>(&self, d: &mut D, mut st: D::State, cx: &Cx<'_, 'a, D>) -> Applied<D::State> {
        let Some(addr) = cx.nat.redirect_to else { return Applied::One(st, Some(End::Drop(Some(cx.here.clone())))) };
        let port = self.ports.map_or(st.dport(), |p| d.lift_port(p.lo));
        st.dnat(addr, port);
        Applied::One(st, Some(End::Accept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, Neg, Proto, TableName};

    fn check(family: Family, proto: Option<Proto>, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Nat, proto: proto.map(|p| Neg::new(p, false)) };
        check_alone::<Redirect>(ctx, line)
    }

    /// Every line of libxt_REDIRECT.t, for both families.
    #[test]
    fn libxt_redirect_t() {
        let (tcp, udp) = (Some(Proto::TCP), Some(Proto::UDP));
        for f in [Family::V4, Family::V6] {
            let is = |proto, l: &str, want: &str| {
                assert_eq!(check(f, proto, l).as_deref(), Ok(want), "{l}");
            };
            let same = |proto, l: &str| is(proto, l, &format!(" {l}"));
            let fail = |proto, l: &str| assert!(check(f, proto, l).is_err(), "{l}");
            same(tcp, "--to-ports 42");
            same(tcp, "--to-ports 0");
            same(tcp, "--to-ports 65535");
            fail(tcp, "--to-ports 65536");
            is(udp, "--to-ports 0-0", " --to-ports 0");
            is(udp, "--to-ports 512-512", " --to-ports 512");
            same(udp, "--to-ports 42-1234");
            same(tcp, "--to-ports 42-1234 --random");
            fail(tcp, "--to-ports 42-1234/567");
            is(tcp, "--to-ports ssh", " --to-ports 22");
            is(tcp, "--to-ports ftp-data", " --to-ports 20");
            fail(tcp, "--to-ports ftp-ssh");
            fail(tcp, "--to-ports 10-ssh");
            fail(None, "--to-ports 42");
            same(None, "--random");
        }
    }

    /// Forms checked against iptables-nft-restore / iptables-save 1.8.9 on this machine.
    #[test]
    fn observed_forms() {
        assert_eq!(check(Family::V4, None, "").unwrap(), "");
        assert_eq!(check(Family::V6, Some(Proto::TCP), "--random --to-ports 15001").unwrap(), " --to-ports 15001 --random");
        assert!(check(Family::V4, None, "--random-fully").is_err());
        assert!(check(Family::V4, None, "! --random").is_err());
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Redirect>() <= 40);
    }
}
