//! `-j SNAT`: rewrites the source of a connection (`xt_nat.c`, `libxt_NAT.c`: revision 0 for
//! IPv4, 1 for IPv6).
//!
//! `--to-source` takes the same `[ADDR[-ADDR]][:PORT[-PORT[/BASE]]]` as DNAT's
//! `--to-destination` (see [`super::dnat`]), once per rule. The kernel structures of these
//! revisions have no field for a shifted port map's base: iptables keeps the flag and loses the
//! number, so `:1000-2000/30` is loaded and saved as `:1000-2000/0` (which iptables-restore then
//! refuses to read back).

use serde::Serialize;

use super::dnat::{NatRange, parse_to, ports_allowed, save_flags, save_range, set_flag};
use super::effect::{Applied, Cx, Effect, go};
use crate::stack::{Domain, Flow};
use crate::xt::ext::{Args, Ctx, Extension, OptResult, no_invert, once};

/// The SNAT target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Snat {
    /// `--to-source` (required: `None` only while the rule is being read).
    pub to: Option<Box<NatRange>>,
    /// `--random`: randomize the source port (`NF_NAT_RANGE_PROTO_RANDOM`).
    pub random: bool,
    /// `--random-fully`: fully randomize the source port (`NF_NAT_RANGE_PROTO_RANDOM_FULLY`).
    pub random_fully: bool,
    /// `--persistent`: the same client always gets the same address (`NF_NAT_RANGE_PERSISTENT`).
    pub persistent: bool,
}

impl Extension for Snat {
    const OPTIONS: &'static [&'static str] = &["to-source", "random", "random-fully", "persistent"];

    fn new(_ctx: &Ctx) -> Self {
        Snat::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        no_invert(invert, opt)?;
        match opt {
            "to-source" => {
                once(&self.to, opt)?;
                let ctx = args.ctx();
                let mut range = parse_to(args.value()?, ports_allowed(&ctx), ctx.family)?;
                if let Some(p) = &mut range.ports {
                    p.base = p.base.map(|_| 0);
                }
                self.to = Some(Box::new(range));
            }
            "random" => set_flag(&mut self.random, opt)?,
            "random-fully" => set_flag(&mut self.random_fully, opt)?,
            "persistent" => set_flag(&mut self.persistent, opt)?,
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.to.is_none() {
            return Err("the SNAT target requires `--to-source`".into());
        }
        Ok(())
    }

    fn save(&self, ctx: &Ctx, out: &mut String) {
        if let Some(to) = &self.to {
            save_range(out, "--to-source", to, ctx.family, false);
        }
        save_flags(out, self.random, self.random_fully, self.persistent);
    }
}

/// `xt_snat_target_v2`: the source becomes the range's first address, the port kept when inside
/// the port range (`nf_nat_used_tuple` aside).
impl Effect for Snat {
    fn effect<'a, D: Domain<'a>>(&self, d: &mut D, st: D::State, _: &Cx<'_, 'a, D>) -> Applied<D::State> {
        let Some(to) = self.to.as_deref() else { return go(st) };
        let addr = to.addrs.map_or(st.src(), |a| d.lift(a.first));
        super::effect::snat_ports(d, st, addr, to.ports.map(|p| (p.lo, p.hi)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, Neg, Proto, TableName};

    fn check(family: Family, proto: Option<Proto>, line: &str) -> Result<String, String> {
        let ctx = Ctx { family, table: TableName::Nat, proto: proto.map(|p| Neg::new(p, false)) };
        check_alone::<Snat>(ctx, line)
    }

    /// Every line of libipt_SNAT.t and libip6t_SNAT.t.
    #[test]
    fn upstream_specs() {
        for (family, a, b, c) in [(Family::V4, "1.1.1.1", "1.1.1.1-1.1.1.10", "2.2.2.2"), (Family::V6, "dead::beef", "dead::beef-dead::fee7", "dead::fee7")] {
            let br = |s: &str| {
                if family == Family::V6 { format!("[{s}]") } else { s.to_string() }
            };
            let same = |proto, l: String| {
                assert_eq!(check(family, proto, &l).as_deref(), Ok(&*format!(" {l}")), "{l}");
            };
            let fail = |proto, l: String| assert!(check(family, proto, &l).is_err(), "{l}");
            let tcp = Some(Proto::TCP);
            same(None, format!("--to-source {a}"));
            same(None, format!("--to-source {b}"));
            fail(None, format!("--to-source {}:1025-65535", br(a)));
            fail(None, format!("--to-source {} --to-source {}", br(a), br(c)));
            for flags in
                ["--random", "--random-fully", "--persistent", "--random --persistent", "--random --random-fully", "--random --random-fully --persistent"]
            {
                same(None, format!("--to-source {a} {flags}"));
            }
            same(tcp, format!("--to-source {}:1025-65535", br(a)));
            same(tcp, format!("--to-source {}:1025-65535", br(b)));
            fail(tcp, format!("--to-source {}:1025-65536", br(b)));
            fail(tcp, format!("--to-source {}:1025-65535 --to-source {}:1025-65535", br(b), br(c)));
            fail(None, String::new());
        }
    }

    /// Forms checked against iptables-nft-restore / iptables-save 1.8.9 on this machine.
    #[test]
    fn observed_forms() {
        let tcp = Some(Proto::TCP);
        assert_eq!(
            check(Family::V4, None, "--persistent --random-fully --random --to-source 1.1.1.1").unwrap(),
            " --to-source 1.1.1.1 --random --random-fully --persistent"
        );
        assert_eq!(check(Family::V4, tcp, "--to-source 1.1.1.1:1000-2000/30").unwrap(), " --to-source 1.1.1.1:1000-2000/0");
        assert_eq!(check(Family::V6, tcp, "--to-source [dead::beef]:1000-2000/30").unwrap(), " --to-source [dead::beef]:1000-2000/0");
        assert_eq!(check(Family::V4, tcp, "--to-source :1000").unwrap(), " --to-source :1000");
        assert!(check(Family::V4, None, "--to-source 1.1.1.1 ! --random").is_err());
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Snat>() <= 40);
    }
}
