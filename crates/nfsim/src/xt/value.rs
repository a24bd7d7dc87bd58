//! Option values shared by many extensions, parsed and printed as libxtables does: numbers
//! (`xtables_strtoui`), ports and services, port ranges, mark/mask pairs, quoted strings.

use super::services;

/// Parses an unsigned number the way `strtoul(s, _, 0)` reads it (decimal, `0x` hex, leading-`0`
/// octal), requiring the whole string to be consumed and the value to be in `min..=max`.
pub fn parse_uint(s: &str, min: u64, max: u64) -> Result<u64, String> {
    let v = parse_c_number(s).ok_or_else(|| format!("`{s}` is not a number"))?;
    if v < min || v > max {
        return Err(format!("`{s}` is out of range (expected {min}..={max})"));
    }
    Ok(v)
}

/// A C-style unsigned number (`0x1f`, `017`, `42`), or `None`.
pub fn parse_c_number(s: &str) -> Option<u64> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        return u64::from_str_radix(hex, 16).ok();
    }
    if s.len() > 1 && s.starts_with('0') {
        if !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return None;
        }
        return u64::from_str_radix(&s[1..], 8).ok();
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a port number or a service name of protocol `proto` (`tcp`, `udp`, ...), as
/// `xtables_parse_port` does. Service names come from netbase's `/etc/services`.
pub fn parse_port(s: &str, proto: &str) -> Result<u16, String> {
    if let Some(v) = parse_decimal(s) {
        if v <= 65535 {
            return Ok(v as u16);
        }
    } else if let Some(p) = services::service_port(s, proto) {
        return Ok(p);
    }
    Err(format!("invalid port/service `{s}` specified"))
}

fn parse_decimal(s: &str) -> Option<u64> {
    // xtables_strtoui with base 0: hex and octal are numbers too.
    parse_c_number(s)
}

/// Parses `PORT`, `FIRST:LAST`, `:LAST`, `FIRST:` or `:` into an inclusive range, as
/// `xtables_parse_port_range` does (a reversed range is an error).
pub fn parse_port_range(s: &str, proto: &str) -> Result<(u16, u16), String> {
    match s.split_once(':') {
        None => {
            let p = parse_port(s, proto)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let lo = if a.is_empty() { 0 } else { parse_port(a, proto)? };
            let hi = if b.is_empty() { 65535 } else { parse_port(b, proto)? };
            if lo > hi {
                return Err(format!("invalid port range `{s}` (first port is greater than last)"));
            }
            Ok((lo, hi))
        }
    }
}

/// Prints a port range the way the tcp/udp matches save it: `P` or `LO:HI`.
pub fn fmt_port_range(out: &mut String, (lo, hi): (u16, u16)) {
    use std::fmt::Write as _;
    if lo == hi {
        let _ = write!(out, "{lo}");
    } else {
        let _ = write!(out, "{lo}:{hi}");
    }
}

/// Parses `VALUE[/MASK]` (both 32-bit numbers; the mask defaults to all ones).
pub fn parse_mark(s: &str) -> Result<(u32, u32), String> {
    let (v, m) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let value = parse_uint(v, 0, u32::MAX as u64).map_err(|_| format!("bad mark value `{s}`"))? as u32;
    let mask = match m {
        Some(m) => parse_uint(m, 0, u32::MAX as u64).map_err(|_| format!("bad mark mask `{s}`"))? as u32,
        None => u32::MAX,
    };
    Ok((value, mask))
}

/// Prints ` 0xVALUE` or ` 0xVALUE/0xMASK` (the mask omitted when all ones), as the mark
/// match saves it.
pub fn fmt_mark(out: &mut String, value: u32, mask: u32) {
    use std::fmt::Write as _;
    if mask == u32::MAX {
        let _ = write!(out, "0x{value:x}");
    } else {
        let _ = write!(out, "0x{value:x}/0x{mask:x}");
    }
}

/// Appends ` VALUE` quoted the way `xtables_save_string` quotes it: bare when it consists only of
/// `[A-Za-z0-9_-]` (and is not empty), otherwise in double quotes with `"`, `\` and `'`
/// escaped by a backslash.
pub fn save_string(out: &mut String, value: &str) {
    out.push(' ');
    let bare = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The name of protocol `number` as iptables prints it: the `/etc/protocols` name first, then
/// iptables' own table, then the number.
pub fn proto_name(number: u8) -> std::borrow::Cow<'static, str> {
    if number == 0 {
        return "all".into();
    }
    if let Some(n) = services::protocol_name(number) {
        return n.into();
    }
    match number {
        0 => "all".into(),
        58 => "icmpv6".into(),
        135 => "mh".into(),
        136 => "udplite".into(),
        n => n.to_string().into(),
    }
}

/// Parses a `-p` value: `all`, a number, an `/etc/protocols` name or alias (case-insensitively
/// retried in lower case, as iptables does), or one of iptables' own names.
pub fn parse_proto(s: &str) -> Result<u8, String> {
    if let Some(n) = parse_c_number(s) {
        return u8::try_from(n).map_err(|_| format!("unknown protocol `{s}` specified"));
    }
    let lower = s.to_ascii_lowercase();
    if lower == "all" {
        return Ok(0);
    }
    if let Some(n) = services::protocol_by_name(s).or_else(|| services::protocol_by_name(&lower)) {
        return Ok(n);
    }
    match lower.as_str() {
        "icmpv6" => Ok(58),
        "mh" => Ok(135),
        "udplite" => Ok(136),
        _ => Err(format!("unknown protocol `{s}` specified")),
    }
}

/// The name service lookups use for protocol `number` (`tcp`, `udp`, `sctp`, `dccp`), if any.
pub fn service_proto(number: u8) -> Option<&'static str> {
    match number {
        6 => Some("tcp"),
        17 => Some("udp"),
        132 => Some("sctp"),
        33 => Some("dccp"),
        136 => Some("udplite"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_strtoul_base_0() {
        assert_eq!(parse_c_number("0x1f"), Some(31));
        assert_eq!(parse_c_number("017"), Some(15));
        assert_eq!(parse_c_number("0"), Some(0));
        assert_eq!(parse_c_number("08"), None);
        assert_eq!(parse_c_number("-1"), None);
    }

    #[test]
    fn ports_and_services() {
        assert_eq!(parse_port("ssh", "tcp"), Ok(22));
        assert!(parse_port("ssh", "udp").is_err(), "netbase 6.4 lists ssh for tcp only");
        assert!(parse_port("bootc", "udp").is_err());
        assert_eq!(parse_port("bootpc", "udp"), Ok(68));
        assert_eq!(parse_port_range("1024:", "tcp"), Ok((1024, 65535)));
        assert_eq!(parse_port_range(":", "tcp"), Ok((0, 65535)));
        assert!(parse_port_range("4:3", "tcp").is_err());
        assert!(parse_port_range("65536", "tcp").is_err());
    }

    #[test]
    fn strings_quote_like_xtables_save_string() {
        let q = |s| {
            let mut o = String::new();
            save_string(&mut o, s);
            o
        };
        assert_eq!(q("foo"), " foo");
        assert_eq!(q(""), " \"\"");
        assert_eq!(q("it's a \"q\" \\ b"), r#" "it\'s a \"q\" \\ b""#);
        assert_eq!(q("ns/svc:port"), " \"ns/svc:port\"");
    }

    #[test]
    fn protocols() {
        assert_eq!(parse_proto("TCP"), Ok(6));
        assert_eq!(parse_proto("all"), Ok(0));
        assert_eq!(parse_proto("47"), Ok(47));
        assert_eq!(proto_name(47), "gre");
        assert_eq!(proto_name(58), "ipv6-icmp");
    }
}
