//! `-m tcp`: ports, flags and options of TCP segments (`xt_tcpudp.c`, `libxt_tcp.c`).

use serde::Serialize;

use crate::ruleset::ext::{Args, Ctx, Extension, OptResult, no_invert, once, save_invert};
use crate::ruleset::value::{fmt_port_range, parse_port_range, parse_uint};

/// TCP flag bits in the order iptables names them.
pub const FLAG_NAMES: [(&str, u8); 6] = [("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20)];

/// A port range with its inversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (inclusive).
    pub hi: u16,
    /// `!`.
    pub invert: bool,
}

/// `--tcp-flags MASK COMP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TcpFlags {
    /// Flags examined.
    pub mask: u8,
    /// Flags that must be set among `mask`.
    pub comp: u8,
    /// `!`.
    pub invert: bool,
}

/// The tcp match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tcp {
    /// `--sport`.
    pub sport: Option<PortRange>,
    /// `--dport`.
    pub dport: Option<PortRange>,
    /// `--tcp-flags` / `--syn`.
    pub flags: Option<TcpFlags>,
    /// `--tcp-option N`.
    pub option: Option<(u8, bool)>,
}

fn parse_flags(s: &str) -> Result<u8, String> {
    let mut bits = 0;
    for name in s.split(',') {
        bits |= match name.to_ascii_uppercase().as_str() {
            "ALL" => 0x3f,
            "NONE" => 0,
            n => FLAG_NAMES
                .iter()
                .find(|(f, _)| *f == n)
                .map(|&(_, b)| b)
                .ok_or_else(|| format!("unknown TCP flag `{name}` (expected FIN, SYN, RST, PSH, ACK, URG, ALL or NONE)"))?,
        };
    }
    Ok(bits)
}

fn fmt_flags(out: &mut String, bits: u8) {
    if bits == 0 {
        out.push_str("NONE");
        return;
    }
    let mut first = true;
    for (name, b) in FLAG_NAMES {
        if bits & b != 0 {
            if !first {
                out.push(',');
            }
            out.push_str(name);
            first = false;
        }
    }
}

impl Extension for Tcp {
    const OPTIONS: &'static [&'static str] = &["source-port", "sport", "destination-port", "dport", "syn", "tcp-flags", "tcp-option"];

    fn new(_ctx: &Ctx) -> Self {
        Tcp::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "source-port" | "sport" | "destination-port" | "dport" => {
                let dst = opt.starts_with('d');
                let slot = if dst { &mut self.dport } else { &mut self.sport };
                if slot.is_some() {
                    return Err(format!("only one `--{}` allowed", if dst { "destination-port" } else { "source-port" }));
                }
                let (lo, hi) = parse_port_range(args.value()?, "tcp")?;
                *slot = Some(PortRange { lo, hi, invert });
            }
            "syn" => {
                once(&self.flags, "tcp-flags")?;
                self.flags = Some(TcpFlags { mask: 0x17, comp: 0x02, invert });
            }
            "tcp-flags" => {
                once(&self.flags, "tcp-flags")?;
                let mask = parse_flags(args.value()?)?;
                let comp = parse_flags(args.value()?)?;
                self.flags = Some(TcpFlags { mask, comp, invert });
            }
            "tcp-option" => {
                once(&self.option, "tcp-option")?;
                let n = parse_uint(args.value()?, 0, 255)? as u8;
                self.option = Some((n, invert));
            }
            _ => return no_invert(true, opt),
        }
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        if ctx.proto() != Some(6) {
            return Err("the tcp match requires `-p tcp`".to_string());
        }
        // `--sport :` (the full range, not inverted) is the same as no option at all.
        for slot in [&mut self.sport, &mut self.dport] {
            if matches!(slot, Some(PortRange { lo: 0, hi: 65535, invert: false })) {
                *slot = None;
            }
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(p) = self.sport {
            save_invert(out, p.invert);
            out.push_str(" --sport ");
            fmt_port_range(out, (p.lo, p.hi));
        }
        if let Some(p) = self.dport {
            save_invert(out, p.invert);
            out.push_str(" --dport ");
            fmt_port_range(out, (p.lo, p.hi));
        }
        if let Some((n, inv)) = self.option {
            save_invert(out, inv);
            out.push_str(&format!(" --tcp-option {n}"));
        }
        if let Some(f) = self.flags {
            save_invert(out, f.invert);
            out.push_str(" --tcp-flags ");
            fmt_flags(out, f.mask);
            out.push(' ');
            fmt_flags(out, f.comp);
        }
    }
}

impl crate::matches::Evaluate for Tcp {
    fn eval(&self, _pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        crate::matches::Eval::Unknown("`-m tcp` is not evaluated yet".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::ext::check_alone;
    use crate::ruleset::{Family, Neg, Proto, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: Some(Neg::new(Proto::TCP, false)) };
        check_alone::<Tcp>(ctx, line)
    }

    #[test]
    fn save_forms_match_libxt_tcp_t() {
        assert_eq!(check("--sport 1024:").unwrap(), " --sport 1024:65535");
        assert_eq!(check("--sport :").unwrap(), "");
        assert_eq!(check("! --dport :").unwrap(), " ! --dport 0:65535");
        assert_eq!(check("--dport 4:4").unwrap(), " --dport 4");
        assert_eq!(check("--syn").unwrap(), " --tcp-flags FIN,SYN,RST,ACK SYN");
        assert_eq!(check("! --sport 65535 --dport 1").unwrap(), " ! --sport 65535 --dport 1");
        assert_eq!(check("--dp 22").unwrap(), " --dport 22");
        assert!(check("--sport 4:3").is_err());
        assert!(check("--sport -1").is_err());
        assert!(check("--dport 1 --dport 3").is_err());
    }
}
