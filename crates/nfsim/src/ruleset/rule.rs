//! One rule's arguments, read as iptables' `do_parse` reads them: the base match (`-p -s -d -i -o
//! -f`), `-m` matches with their options, and the `-j`/`-g` target with its options.
//!
//! Options go to the most recently loaded extension that knows them (as getopt does with
//! iptables' merged option table), an unknown option after `-p tcp` loads the protocol's match
//! implicitly, and `-s`/`-d` lists expand into one rule per address pair.

use super::{ChainId, Counters, Family, Neg, Proto, Rule, TableName, Target};
use crate::diag::{Diagnostic, Span};
use crate::matches::{self, Match};
use crate::targets::{self, TargetExt};
use crate::xt::addr::{AddrMask, Iface};
use crate::xt::ext::{Args, Ctx, Opaque, resolve_option};
use crate::xt::token::Token;
use crate::xt::value::{parse_c_number, parse_proto};

/// Base options iptables itself takes (long name, short letter, takes a value).
const BASE: &[(&str, char, bool)] = &[
    ("protocol", 'p', true),
    ("source", 's', true),
    ("src", 's', true),
    ("destination", 'd', true),
    ("dst", 'd', true),
    ("in-interface", 'i', true),
    ("out-interface", 'o', true),
    ("fragment", 'f', false),
    ("jump", 'j', true),
    ("goto", 'g', true),
    ("match", 'm', true),
    ("set-counters", 'c', true),
    ("ipv4", '4', false),
    ("ipv6", '6', false),
    ("wait", 'w', false),
    ("wait-interval", 'W', true),
    ("verbose", 'v', false),
    ("numeric", 'n', false),
    ("exact", 'x', false),
];

/// The rule parsed, expanded into one rule per address pair.
pub(crate) struct Spec {
    /// The rules (one unless `-s` or `-d` lists several addresses); the vector comes from the
    /// [`SpecBuf`] and may be given back to it.
    pub(crate) rules: Vec<Rule>,
    /// False when `-4`/`-6` says the rule is for the other family (iptables skips it silently).
    pub(crate) family_matches: bool,
    pub(crate) warnings: Vec<Diagnostic>,
}

/// Buffers the rule parser reuses from one rule to the next, so that reading a rule allocates
/// only what the model keeps.
#[derive(Default)]
pub(crate) struct SpecBuf {
    matches: Vec<(Match, Span)>,
    load_order: Vec<Owner>,
    /// Room for [`Spec::rules`].
    pub(crate) rules: Vec<Rule>,
}

/// The addresses of `-s` or `-d`: a single one (the usual case) needs no allocation.
#[derive(Default)]
enum Addrs {
    #[default]
    None,
    One(AddrMask),
    Many(Vec<AddrMask>),
}

impl Addrs {
    fn push(self, a: AddrMask) -> Addrs {
        match self {
            Addrs::None => Addrs::One(a),
            Addrs::One(first) => Addrs::Many(vec![first, a]),
            Addrs::Many(mut v) => {
                v.push(a);
                Addrs::Many(v)
            }
        }
    }

    fn as_slice(&self) -> &[AddrMask] {
        match self {
            Addrs::None => &[],
            Addrs::One(a) => std::slice::from_ref(a),
            Addrs::Many(v) => v,
        }
    }
}

/// A base option as written: its letter, whether it takes a value, and the value attached to it
/// (`-sADDR`).
type BaseOption<'t> = (char, bool, Option<&'t str>);

/// Which loaded extension an option may belong to.
#[derive(Clone, Copy)]
enum Owner {
    Match(usize),
    Target,
}

/// Parses the rule specification `toks` (everything after the command and its chain).
/// `chain_of` resolves a user-chain name of the table.
pub(crate) fn parse_spec(
    toks: &[Token<'_>],
    family: Family,
    table: TableName,
    span: Span,
    chain_of: &dyn Fn(&str) -> Option<(ChainId, bool)>,
    chain_names: &dyn Fn() -> Vec<String>,
    buf: &mut SpecBuf,
) -> Result<Spec, Diagnostic> {
    // getopt's `--option=value` is the same as `--option value`.
    let split;
    let toks = if toks.iter().any(|t| t.as_str().starts_with("--") && t.as_str().contains('=')) {
        split = toks
            .iter()
            .flat_map(|t| match t.as_str().split_once('=').filter(|_| t.as_str().starts_with("--")) {
                Some((name, value)) => {
                    let cut = t.span.start as usize + name.len();
                    vec![
                        Token { text: name.to_string().into(), span: Span::new(t.span.start as usize, cut), quoted: false },
                        Token { text: value.to_string().into(), span: Span::new(cut + 1, t.span.end as usize), quoted: t.quoted },
                    ]
                }
                None => vec![t.clone()],
            })
            .collect::<Vec<_>>();
        &split[..]
    } else {
        toks
    };
    let mut p = SpecParser {
        toks,
        family,
        table,
        proto: None,
        srcs: Addrs::None,
        dsts: Addrs::None,
        src_neg: false,
        dst_neg: false,
        in_iface: None,
        out_iface: None,
        fragment: None,
        matches: std::mem::take(&mut buf.matches),
        target: None,
        target_span: None,
        load_order: std::mem::take(&mut buf.load_order),
        counters: None,
        family_matches: true,
        warnings: Vec::new(),
    };
    let mut rules = std::mem::take(&mut buf.rules);
    rules.clear();
    let result = p.build(span, chain_of, chain_names, &mut rules);
    // Give the buffers back, empty, for the next rule.
    p.matches.clear();
    p.load_order.clear();
    buf.matches = p.matches;
    buf.load_order = p.load_order;
    result?;
    Ok(Spec { rules, family_matches: p.family_matches, warnings: p.warnings })
}

fn addr_options(list: &[AddrMask], neg: bool) -> Vec<Option<Neg<AddrMask>>> {
    if list.is_empty() {
        return vec![None];
    }
    list.iter().map(|a| addr_option(a, neg)).collect()
}

/// What the rule keeps of one `-s`/`-d` address: nothing for `0.0.0.0/0` (unless negated).
fn addr_option(a: &AddrMask, neg: bool) -> Option<Neg<AddrMask>> {
    if a.is_any() && !neg { None } else { Some(Neg::new(a.clone(), neg)) }
}

struct SpecParser<'s, 'a> {
    toks: &'s [Token<'a>],
    family: Family,
    table: TableName,
    proto: Option<Neg<Proto>>,
    srcs: Addrs,
    dsts: Addrs,
    src_neg: bool,
    dst_neg: bool,
    in_iface: Option<Neg<Iface>>,
    out_iface: Option<Neg<Iface>>,
    fragment: Option<bool>,
    matches: Vec<(Match, Span)>,
    target: Option<Target>,
    target_span: Option<Span>,
    load_order: Vec<Owner>,
    counters: Option<Counters>,
    family_matches: bool,
    warnings: Vec<Diagnostic>,
}

impl SpecParser<'_, '_> {
    fn ctx(&self) -> Ctx {
        Ctx { family: self.family, table: self.table, proto: self.proto }
    }

    /// Reads the options, checks the extensions, and appends the rule (one per address pair) to `rules`.
    fn build(
        &mut self,
        span: Span,
        chain_of: &dyn Fn(&str) -> Option<(ChainId, bool)>,
        chain_names: &dyn Fn() -> Vec<String>,
        rules: &mut Vec<Rule>,
    ) -> Result<(), Diagnostic> {
        self.run(chain_of, chain_names)?;
        let ctx = self.ctx();
        for (m, sp) in &mut self.matches {
            m.finish(&ctx).map_err(|e| Diagnostic::error(*sp, format!("{}: {e}", m.name())))?;
        }
        let target = match self.target.take() {
            Some(Target::Ext(mut t)) => {
                let sp = self.target_span.unwrap_or(span);
                t.finish(&ctx).map_err(|e| Diagnostic::error(sp, format!("{}: {e}", t.name())))?;
                Target::Ext(t)
            }
            Some(t) => t,
            None => Target::None,
        };
        let mut base = Rule::new(span);
        base.counters = self.counters.map(Box::new);
        base.proto = self.proto.filter(|pr| pr.value.0 != 0 || pr.negated);
        if self.in_iface.is_some() || self.out_iface.is_some() {
            base.ifaces = Some(Box::new(super::Ifaces { input: self.in_iface.take(), output: self.out_iface.take() }));
        }
        base.fragment = self.fragment;
        base.matches = self.matches.drain(..).map(|(m, _)| m).collect();
        base.target = target;
        let (srcs, dsts) = (self.srcs.as_slice(), self.dsts.as_slice());
        if srcs.len() <= 1 && dsts.len() <= 1 {
            base.src = srcs.first().and_then(|a| addr_option(a, self.src_neg));
            base.dst = dsts.first().and_then(|a| addr_option(a, self.dst_neg));
            rules.push(base);
            return Ok(());
        }
        let srcs = addr_options(srcs, self.src_neg);
        let dsts = addr_options(dsts, self.dst_neg);
        rules.reserve(srcs.len() * dsts.len());
        for s in &srcs {
            for d in &dsts {
                let mut r = base.clone();
                r.src = s.clone();
                r.dst = d.clone();
                rules.push(r);
            }
        }
        Ok(())
    }

    fn run(&mut self, chain_of: &dyn Fn(&str) -> Option<(ChainId, bool)>, chain_names: &dyn Fn() -> Vec<String>) -> Result<(), Diagnostic> {
        let toks = self.toks;
        let mut i = 0;
        let mut invert: Option<Span> = None;
        // Base options given so far, one bit per option letter.
        let mut seen_base: u32 = 0;
        while i < toks.len() {
            let tok = &toks[i];
            let t = tok.as_str();
            if t == "!" && !tok.quoted {
                if invert.is_some() {
                    return Err(Diagnostic::error(tok.span, "multiple `!` flags not allowed"));
                }
                invert = Some(tok.span);
                i += 1;
                continue;
            }
            if !t.starts_with('-') || t == "-" {
                return Err(Diagnostic::error(tok.span, format!("Bad argument `{t}` (expected an option such as `-j`, `-m` or `--dport`)")));
            }
            // Which option is this?
            let base = self.base_option(t, tok.span)?;
            if let Some((letter, takes_value, attached)) = base {
                let value_tok = if takes_value {
                    match attached {
                        Some(v) => Some((v, tok.span)),
                        None => {
                            let v = toks.get(i + 1).ok_or_else(|| Diagnostic::error(tok.span, format!("option `{t}` requires an argument")))?;
                            i += 1;
                            Some((v.as_str(), v.span))
                        }
                    }
                } else {
                    None
                };
                i += 1;
                let inv = invert.take().is_some();
                let opt_span = value_tok.as_ref().map_or(tok.span, |(_, s)| tok.span.to(*s));
                if matches!(letter, 'p' | 's' | 'd' | 'i' | 'o' | 'f' | 'j' | 'g') {
                    let bit = 1u32 << (letter as u32 - 'a' as u32);
                    if seen_base & bit != 0 {
                        return Err(Diagnostic::error(opt_span, format!("multiple -{letter} flags not allowed")));
                    }
                    seen_base |= bit;
                }
                let (value, vspan) = value_tok.unwrap_or_default();
                match letter {
                    'p' => {
                        let n = parse_proto(value).map_err(|e| Diagnostic::error(vspan, e))?;
                        if n == 0 && inv {
                            return Err(Diagnostic::error(opt_span, "`! -p all` would never match (protocol 0 stands for every protocol)"));
                        }
                        self.proto = Some(Neg::new(Proto(n), inv));
                    }
                    's' | 'd' => {
                        let mut list = Addrs::None;
                        for part in value.split(',') {
                            list = list.push(AddrMask::parse(part, self.family).map_err(|e| Diagnostic::error(vspan, e))?);
                        }
                        if letter == 's' {
                            self.srcs = list;
                            self.src_neg = inv;
                        } else {
                            self.dsts = list;
                            self.dst_neg = inv;
                        }
                    }
                    'i' | 'o' => {
                        let iface = Iface::parse(value).map_err(|e| Diagnostic::error(vspan, e))?;
                        let slot = if letter == 'i' { &mut self.in_iface } else { &mut self.out_iface };
                        // A bare `+` matches every interface: iptables drops it.
                        *slot = (value != "+" || inv).then_some(Neg::new(iface, inv));
                    }
                    'f' => {
                        if self.family == Family::V6 {
                            return Err(Diagnostic::error(tok.span, "`-f` (fragment) exists only in iptables, not ip6tables"));
                        }
                        self.fragment = Some(inv);
                    }
                    'm' => {
                        if inv {
                            return Err(Diagnostic::error(opt_span, "unexpected `!` before `-m` (negate the match's options instead)"));
                        }
                        i = self.load_match(value, vspan, i)?;
                    }
                    'j' | 'g' => {
                        if inv {
                            return Err(Diagnostic::error(opt_span, format!("cannot invert `-{letter}`")));
                        }
                        if self.target.is_some() {
                            return Err(Diagnostic::error(opt_span, "multiple -j flags not allowed"));
                        }
                        i = self.load_target(value, vspan, letter == 'g', i, chain_of, chain_names)?;
                    }
                    'c' => {
                        // `-c PACKETS BYTES` or `-c PACKETS,BYTES`.
                        let (pk, by, sp) = match value.split_once(',') {
                            Some((p, b)) => (p, b, vspan),
                            None => {
                                let by = toks.get(i).ok_or_else(|| Diagnostic::error(opt_span, "`-c` requires packet and byte counts"))?;
                                i += 1;
                                (value, by.as_str(), vspan.to(by.span))
                            }
                        };
                        let (Some(packets), Some(bytes)) = (parse_c_number(pk), parse_c_number(by)) else {
                            return Err(Diagnostic::error(sp, "counters must be numbers (`-c PACKETS BYTES`)"));
                        };
                        self.counters = Some(Counters { packets, bytes });
                    }
                    '4' => self.family_matches &= self.family == Family::V4,
                    '6' => self.family_matches &= self.family == Family::V6,
                    'w'
                        // `--wait [SECONDS]`: the lock wait of the iptables command; no effect on the rule.
                        if toks.get(i).is_some_and(|n| n.as_str().bytes().all(|b| b.is_ascii_digit())) => {
                            i += 1;
                        }
                    _ => {}
                }
                continue;
            }
            // An extension's option.
            let inv = invert.take().is_some();
            i = self.extension_option(t, tok.span, inv, i)?;
        }
        if let Some(sp) = invert {
            return Err(Diagnostic::error(sp, "`!` at the end of the rule has nothing to negate"));
        }
        Ok(())
    }

    /// Recognizes a base option: `(letter, takes_value, attached value)`, or `None` for an
    /// extension option. A long option is resolved as getopt_long resolves it against iptables'
    /// merged option table: an exact name wins, otherwise an unambiguous prefix.
    fn base_option<'t>(&self, t: &'t str, span: Span) -> Result<Option<BaseOption<'t>>, Diagnostic> {
        if let Some(long) = t.strip_prefix("--") {
            if let Some(&(_, c, v)) = BASE.iter().find(|(n, _, _)| *n == long) {
                return Ok(Some((c, v, None)));
            }
            if long.len() >= 2 && long.starts_with('t') && "table".starts_with(long) {
                return Err(Diagnostic::error(span, "the table option `--table` cannot be used here (the table is given by the `*table` line)"));
            }
            if long.is_empty() || self.loaded_options().any(|o| o == long) {
                return Ok(None);
            }
            let mut base: Vec<&(&str, char, bool)> = BASE.iter().filter(|(n, _, _)| n.starts_with(long)).collect();
            base.dedup_by_key(|b| b.1);
            let ext: Vec<&str> = self.loaded_options().filter(|o| o.starts_with(long)).collect();
            return match (base.len(), ext.len()) {
                (1, 0) => Ok(Some((base[0].1, base[0].2, None))),
                (0, _) => Ok(None),
                _ => {
                    let names: Vec<String> = base.iter().map(|b| b.0).chain(ext.iter().copied()).map(|n| format!("`--{n}`")).collect();
                    Err(Diagnostic::error(span, format!("option `{t}` is ambiguous ({})", names.join(", "))))
                }
            };
        }
        let rest = &t[1..];
        let Some(c) = rest.chars().next() else {
            return Ok(None);
        };
        let attached = &rest[c.len_utf8()..];
        match BASE.iter().find(|(_, l, _)| *l == c) {
            Some(&(_, l, takes)) => {
                if !takes && !attached.is_empty() {
                    return Err(Diagnostic::error(span, format!("unknown option `{t}`")));
                }
                Ok(Some((l, takes, (!attached.is_empty()).then_some(attached))))
            }
            None if c == 't' => Err(Diagnostic::error(span, "the table option `-t` cannot be used here (the table is given by the `*table` line)")),
            None => Err(Diagnostic::error(span, format!("unknown option `{t}`"))),
        }
    }

    fn loaded_options(&self) -> impl Iterator<Item = &'static str> + '_ {
        let t = match &self.target {
            Some(Target::Ext(t)) => t.options(),
            _ => &[],
        };
        self.matches.iter().flat_map(|(m, _)| m.options().iter().copied()).chain(t.iter().copied())
    }

    fn load_match(&mut self, name: &str, span: Span, i: usize) -> Result<usize, Diagnostic> {
        let ctx = self.ctx();
        if let Some(m) = Match::load(name, &ctx) {
            self.matches.push((m, span));
            self.load_order.push(Owner::Match(self.matches.len() - 1));
            return Ok(i);
        }
        if matches::KNOWN.contains(&name) {
            let (args, next) = self.opaque_args(i);
            self.matches.push((Match::Opaque(Box::new(Opaque { name: name.into(), args })), span));
            return Ok(next);
        }
        let mut d = Diagnostic::error(span, format!("unknown match extension `{name}` (iptables: Couldn't load match `{name}`)"));
        if let Some(s) = suggest(name, matches::KNOWN.iter().copied()) {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        Err(d)
    }

    #[allow(clippy::too_many_arguments)]
    fn load_target(
        &mut self,
        name: &str,
        span: Span,
        goto: bool,
        i: usize,
        chain_of: &dyn Fn(&str) -> Option<(ChainId, bool)>,
        chain_names: &dyn Fn() -> Vec<String>,
    ) -> Result<usize, Diagnostic> {
        self.target_span = Some(span);
        if !goto {
            let std = match name {
                "ACCEPT" => Some(Target::Accept),
                "DROP" => Some(Target::Drop),
                "RETURN" => Some(Target::Return),
                "QUEUE" => Some(Target::Queue),
                _ => None,
            };
            if let Some(t) = std {
                self.target = Some(t);
                return Ok(i);
            }
            let ctx = self.ctx();
            if let Some(t) = TargetExt::load(name, &ctx) {
                self.target = Some(Target::Ext(t));
                self.load_order.push(Owner::Target);
                return Ok(i);
            }
            if targets::KNOWN.contains(&name) {
                let (args, next) = self.opaque_args(i);
                self.target = Some(Target::Ext(TargetExt::Opaque(Box::new(Opaque { name: name.into(), args }))));
                return Ok(next);
            }
        }
        match chain_of(name) {
            Some((id, false)) => {
                self.target = Some(if goto { Target::Goto(id) } else { Target::Jump(id) });
                Ok(i)
            }
            Some((_, true)) => Err(Diagnostic::error(span, format!("cannot jump to built-in chain `{name}`"))),
            None => {
                let what = if goto { "chain" } else { "chain or target" };
                let mut d = Diagnostic::error(span, format!("{what} `{name}` is not declared"));
                let names = chain_names();
                let std = ["ACCEPT", "DROP", "RETURN", "QUEUE"];
                let cands = names
                    .iter()
                    .map(String::as_str)
                    .chain(if goto { &[][..] } else { &std[..] }.iter().copied())
                    .chain(if goto { &[][..] } else { targets::KNOWN }.iter().copied());
                if let Some(s) = suggest(name, cands) {
                    d.message.push_str(&format!("; did you mean `{s}`?"));
                }
                Err(d)
            }
        }
    }

    /// The most recently loaded extension kept verbatim, if any.
    fn last_opaque(&mut self) -> Option<&mut Opaque> {
        if let Some(Target::Ext(TargetExt::Opaque(o))) = &mut self.target {
            return Some(o);
        }
        self.matches.iter_mut().rev().find_map(|(m, _)| match m {
            Match::Opaque(o) => Some(&mut **o),
            _ => None,
        })
    }

    /// Arguments of an extension the model keeps verbatim: everything up to the next base
    /// option (or `!` before one).
    fn opaque_args(&self, mut i: usize) -> (Vec<Box<str>>, usize) {
        let mut args = Vec::new();
        while i < self.toks.len() {
            let t = self.toks[i].as_str();
            let next_is_base = |s: &str| is_base_option(s);
            if next_is_base(t) || (t == "!" && self.toks.get(i + 1).is_some_and(|n| next_is_base(n.as_str()))) {
                break;
            }
            args.push(t.into());
            i += 1;
        }
        (args, i)
    }

    fn extension_option(&mut self, t: &str, span: Span, invert: bool, i: usize) -> Result<usize, Diagnostic> {
        let Some(long) = t.strip_prefix("--") else {
            return Err(Diagnostic::error(span, format!("unknown option `{t}`")));
        };
        if let Some((owner, name)) = self.find_owner(long, span)? {
            return self.call(owner, name, invert, span, i + 1);
        }
        // Load the protocol's match implicitly, as iptables does for `-p tcp --dport 22`.
        if let Some(pr) = self.proto.filter(|p| !p.negated) {
            let pname = implicit_match_name(pr.value.0, self.family);
            let already = self.matches.iter().any(|(m, _)| Some(m.name()) == pname);
            if let (Some(pname), false) = (pname, already) {
                let ctx = self.ctx();
                match Match::load(pname, &ctx) {
                    Some(m) => {
                        if let Some(name) = resolve_option(m.options(), long) {
                            self.matches.push((m, span));
                            let idx = self.matches.len() - 1;
                            self.load_order.push(Owner::Match(idx));
                            return self.call(Owner::Match(idx), name, invert, span, i + 1);
                        }
                    }
                    None => {
                        // A protocol match the model keeps verbatim (dccp, esp, ah, mh, ...):
                        // it takes this option and what follows, up to the next base option.
                        let at = if invert { i - 1 } else { i };
                        let (args, next) = self.opaque_args(at);
                        self.matches.push((Match::Opaque(Box::new(Opaque { name: pname.into(), args })), span));
                        return Ok(next);
                    }
                }
            }
        }
        // getopt would hand the option to whichever extension knows it; an extension kept
        // verbatim may be the one, so it takes the option and what follows.
        let at = if invert { i - 1 } else { i };
        if self.last_opaque().is_some() {
            let (args, next) = self.opaque_args(at);
            if let Some(o) = self.last_opaque() {
                o.args.extend(args);
            }
            return Ok(next);
        }
        let mut d = Diagnostic::error(span, format!("unknown option `{t}`"));
        let mut known: Vec<&str> = self.loaded_options().collect();
        if let Some(m) = self.proto.and_then(|p| implicit_match_name(p.value.0, self.family)).and_then(|n| Match::load(n, &self.ctx())) {
            known.extend(m.options().iter().copied());
        }
        if let Some(s) = suggest(long, known.iter().copied()) {
            d = d.with_help(format!("did you mean `--{s}`?"));
        } else if self.matches.is_empty() && !matches!(self.target, Some(Target::Ext(_))) {
            d = d.with_help("options like this belong to an extension: load it first with `-m NAME` (or `-p tcp`/`-p udp` for ports)");
        }
        Err(d)
    }

    /// The newest loaded extension that takes `--long` (exact name first, then a unique prefix).
    fn find_owner(&self, long: &str, span: Span) -> Result<Option<(Owner, &'static str)>, Diagnostic> {
        for &o in self.load_order.iter().rev() {
            let opts = self.options_of(o);
            if let Some(n) = opts.iter().find(|n| **n == long) {
                return Ok(Some((o, n)));
            }
        }
        let mut found: Option<(Owner, &'static str)> = None;
        for &o in self.load_order.iter().rev() {
            for n in self.options_of(o).iter().filter(|n| n.starts_with(long)) {
                match found {
                    Some((_, prev)) if prev != *n => {
                        return Err(Diagnostic::error(span, format!("option `--{long}` is ambiguous (`--{prev}` or `--{n}`?)")));
                    }
                    Some(_) => {}
                    None => found = Some((o, n)),
                }
            }
        }
        Ok(found)
    }

    fn options_of(&self, o: Owner) -> &'static [&'static str] {
        match o {
            Owner::Match(i) => self.matches[i].0.options(),
            Owner::Target => match &self.target {
                Some(Target::Ext(t)) => t.options(),
                _ => &[],
            },
        }
    }

    fn call(&mut self, owner: Owner, name: &'static str, invert: bool, span: Span, at: usize) -> Result<usize, Diagnostic> {
        let ctx = self.ctx();
        let mut args = Args::new(self.toks, at, ctx);
        let res = match owner {
            Owner::Match(i) => self.matches[i].0.parse_option(name, invert, &mut args),
            Owner::Target => match &mut self.target {
                Some(Target::Ext(t)) => t.parse_option(name, invert, &mut args),
                _ => Ok(()),
            },
        };
        let end = args.pos();
        res.map_err(|e| {
            let last = if end > at { self.toks[end - 1].span } else { span };
            let ext = match owner {
                Owner::Match(i) => self.matches[i].0.name().to_string(),
                Owner::Target => match &self.target {
                    Some(Target::Ext(t)) => t.name().to_string(),
                    _ => String::new(),
                },
            };
            Diagnostic::error(if end > at { last } else { span }, format!("{ext} --{name}: {e}"))
        })?;
        Ok(end)
    }
}

fn is_base_option(s: &str) -> bool {
    if let Some(long) = s.strip_prefix("--") {
        return BASE.iter().any(|(n, _, _)| *n == long);
    }
    let mut c = s.chars();
    c.next() == Some('-') && c.next().is_some_and(|l| BASE.iter().any(|(_, b, _)| *b == l)) && s.len() == 2
}

/// The match iptables loads implicitly for protocol `n`.
fn implicit_match_name(n: u8, family: Family) -> Option<&'static str> {
    match n {
        6 => Some("tcp"),
        17 => Some("udp"),
        1 if family == Family::V4 => Some("icmp"),
        58 if family == Family::V6 => Some("icmp6"),
        132 => Some("sctp"),
        33 => Some("dccp"),
        50 => Some("esp"),
        51 => Some("ah"),
        135 if family == Family::V6 => Some("mh"),
        136 => Some("udplite"),
        _ => None,
    }
}

pub(crate) use crate::diag::suggest;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("ISTIO_INBOUND", ["istio_inbound", "ISTIO_OUTPUT"].into_iter()), Some("istio_inbound"));
        assert_eq!(suggest("postprocessing", ["POSTROUTING", "PREROUTING"].into_iter()), None);
        assert_eq!(suggest("accpt", ["ACCEPT", "DROP"].into_iter()), Some("ACCEPT"));
        assert_eq!(suggest("xyz", ["ACCEPT", "DROP"].into_iter()), None);
        assert_eq!(suggest("dprot", ["sport", "dport", "syn"].into_iter()), Some("dport"));
    }
}
