//! What every match and target extension provides: the userspace half of `struct xtables_match`
//! / `struct xtables_target` (option parsing, final check, save), plus the argument cursor
//! extensions read their values from.

use super::token::Token;
use super::{Family, Neg, Proto, TableName};

/// What an extension may look at while it parses: the rule's family, table and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// IPv4 or IPv6.
    pub family: Family,
    /// The table the rule goes into.
    pub table: TableName,
    /// The rule's `-p`, when given.
    pub proto: Option<Neg<Proto>>,
}

impl Ctx {
    /// The rule's protocol number when `-p` is given and not negated.
    pub fn proto(&self) -> Option<u8> {
        self.proto.filter(|p| !p.negated).map(|p| p.value.0)
    }

    /// The protocol name used to resolve service names (`tcp`, `udp`, ...), defaulting to `tcp`.
    pub fn service_proto(&self) -> &'static str {
        self.proto().and_then(super::value::service_proto).unwrap_or("tcp")
    }
}

/// The arguments after an option, consumed by the extension that owns the option.
#[derive(Debug)]
pub struct Args<'s, 'a> {
    toks: &'s [Token<'a>],
    pos: usize,
    ctx: Ctx,
}

impl<'s, 'a> Args<'s, 'a> {
    pub(crate) fn new(toks: &'s [Token<'a>], pos: usize, ctx: Ctx) -> Self {
        Args { toks, pos, ctx }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The rule's family, table and protocol.
    pub fn ctx(&self) -> Ctx {
        self.ctx
    }

    /// The option's (next) required argument, whatever it looks like (getopt takes the next word).
    pub fn value(&mut self) -> Result<&'s str, String> {
        match self.toks.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t.as_str())
            }
            None => Err("option requires an argument".to_string()),
        }
    }

    /// An optional argument: the next word unless it starts with `-` or is `!` (`xs_has_arg`).
    pub fn optional(&mut self) -> Option<&'s str> {
        let t = self.toks.get(self.pos)?;
        let s = t.as_str();
        if s.starts_with('-') || s.starts_with('!') {
            return None;
        }
        self.pos += 1;
        Some(s)
    }
}

/// Result of an extension's option handler: `Err` carries a message naming what was expected.
pub type OptResult = Result<(), String>;

/// A match or target extension.
pub trait Extension: Sized {
    /// Long option names the extension accepts, without the leading `--`.
    const OPTIONS: &'static [&'static str];

    /// The extension as loaded by `-m NAME` / `-j NAME`, before any option.
    fn new(ctx: &Ctx) -> Self;

    /// Handles option `--opt` (its canonical long name), `invert` when preceded by `!`.
    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult;

    /// Checks the complete option set (`final_check` / `x6_fcheck`), with the rule's final context.
    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        Ok(())
    }

    /// Appends the options as `iptables-save` prints them, each preceded by a space.
    fn save(&self, ctx: &Ctx, out: &mut String);
}

/// A boxed extension (large ones are boxed to keep [`Rule`](crate::ruleset::Rule) small) behaves as the
/// extension itself.
impl<T: Extension> Extension for Box<T> {
    const OPTIONS: &'static [&'static str] = T::OPTIONS;

    fn new(ctx: &Ctx) -> Self {
        Box::new(T::new(ctx))
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        (**self).parse(opt, invert, args)
    }

    fn finish(&mut self, ctx: &Ctx) -> OptResult {
        (**self).finish(ctx)
    }

    fn save(&self, ctx: &Ctx, out: &mut String) {
        (**self).save(ctx, out)
    }
}

/// Rejects `!` on an option that cannot be inverted.
pub fn no_invert(invert: bool, opt: &str) -> OptResult {
    if invert { Err(format!("unexpected `!` before `--{opt}` (it cannot be inverted)")) } else { Ok(()) }
}

/// Rejects a second use of an option that may appear once.
pub fn once<T>(slot: &Option<T>, opt: &str) -> OptResult {
    if slot.is_some() { Err(format!("option `--{opt}` may be given only once")) } else { Ok(()) }
}

/// Appends ` !` when `invert`.
pub fn save_invert(out: &mut String, invert: bool) {
    if invert {
        out.push_str(" !");
    }
}

/// An extension the model does not type: its name and arguments are kept verbatim so nothing is
/// lost, and the simulator treats it as undecidable.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Opaque {
    /// The extension's name as written after `-m` / `-j`.
    pub name: Box<str>,
    /// Its arguments, verbatim (after quote removal).
    pub args: Vec<Box<str>>,
}

impl Opaque {
    /// Appends the arguments, re-quoting those that need it.
    pub fn save(&self, out: &mut String) {
        for a in &self.args {
            if a.is_empty() || a.contains([' ', '\t', '"', '\'', '\\']) {
                super::value::save_string(out, a);
            } else {
                out.push(' ');
                out.push_str(a);
            }
        }
    }
}

/// Declares an enum over extension types and its dispatching methods. Each entry is
/// `Variant(Type) = "save-name" [| "alias" ...]`. Clauses after the enum,
/// `dispatch Trait { fn method(&self, arg: Type, ...) -> Ret; Opaque(pat) => answer }`, each add a
/// method `method` that calls `Trait::method` on the typed extension and gives `answer` for an
/// opaque one.
macro_rules! extension_enum {
    (@dispatch $name:ident [$($variant:ident($ty:ty))*]) => {};
    (@dispatch $name:ident [$($variant:ident($ty:ty))*] dispatch $tr:path {
        $(#[$fmeta:meta])* fn $m:ident(&self $(, $arg:ident: $argty:ty)*) -> $ret:ty;
        Opaque($o:pat) => $opaque:expr $(,)?
    } $($rest:tt)*) => {
        $crate::xt::ext::extension_enum!(@method $name [$($variant)*] $tr, [$(#[$fmeta])*] $m($($arg: $argty),*) ($($arg),*) -> $ret, $o => $opaque);
        $crate::xt::ext::extension_enum!(@dispatch $name [$($variant($ty))*] $($rest)*);
    };
    // The call's arguments come as one token tree, `$call`, so that they can be repeated per variant.
    (@method $name:ident [$($variant:ident)*] $tr:path, [$(#[$fmeta:meta])*] $m:ident($($arg:ident: $argty:ty),*) $call:tt -> $ret:ty, $o:pat => $opaque:expr) => {
        impl $name {
            $(#[$fmeta])*
            pub fn $m(&self $(, $arg: $argty)*) -> $ret {
                use $tr as _;
                match self {
                    $($name::$variant(x) => x.$m $call,)*
                    $name::Opaque($o) => $opaque,
                }
            }
        }
    };
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident($ty:ty) = $save:literal $(| $alias:literal)*,)* } $($dispatch:tt)*) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, serde::Serialize)]
        #[serde(tag = "name", content = "options", rename_all = "lowercase")]
        $vis enum $name {
            $(
                #[doc = concat!("`", $save, "`")]
                $variant($ty),
            )*
            /// An extension the model does not type (kept verbatim, undecidable in simulation);
            /// boxed, as it is rare and larger than the typed ones.
            Opaque(Box<$crate::xt::ext::Opaque>),
        }

        impl $name {
            /// Loads the extension called `name`, if the model types it.
            pub fn load(name: &str, ctx: &$crate::xt::ext::Ctx) -> Option<$name> {
                match name {
                    $($save $(| $alias)* => Some($name::$variant(<$ty as $crate::xt::ext::Extension>::new(ctx))),)*
                    _ => None,
                }
            }

            /// The name `iptables-save` prints after `-m` / `-j`.
            pub fn name(&self) -> &str {
                match self {
                    $($name::$variant(_) => $save,)*
                    $name::Opaque(o) => &o.name,
                }
            }

            /// The long options this extension takes (none for an opaque one).
            pub fn options(&self) -> &'static [&'static str] {
                match self {
                    $($name::$variant(_) => <$ty as $crate::xt::ext::Extension>::OPTIONS,)*
                    $name::Opaque(_) => &[],
                }
            }

            pub(crate) fn parse_option(&mut self, opt: &str, invert: bool, args: &mut $crate::xt::ext::Args<'_, '_>) -> $crate::xt::ext::OptResult {
                use $crate::xt::ext::Extension as _;
                match self {
                    $($name::$variant(x) => x.parse(opt, invert, args),)*
                    $name::Opaque(_) => Err(format!("unknown option `--{opt}`")),
                }
            }

            pub(crate) fn finish(&mut self, ctx: &$crate::xt::ext::Ctx) -> $crate::xt::ext::OptResult {
                use $crate::xt::ext::Extension as _;
                match self {
                    $($name::$variant(x) => x.finish(ctx),)*
                    $name::Opaque(_) => Ok(()),
                }
            }

            /// Appends the options the way `iptables-save` prints them.
            pub fn save(&self, ctx: &$crate::xt::ext::Ctx, out: &mut String) {
                use $crate::xt::ext::Extension as _;
                match self {
                    $($name::$variant(x) => x.save(ctx, out),)*
                    $name::Opaque(o) => o.save(out),
                }
            }

            /// True for an extension kept verbatim.
            pub fn is_opaque(&self) -> bool {
                matches!(self, $name::Opaque(_))
            }
        }

        $crate::xt::ext::extension_enum!(@dispatch $name [$($variant($ty))*] $($dispatch)*);
    };
}
pub(crate) use extension_enum;

/// Parses `line` (options only, e.g. `--dport 22 ! --syn`) with extension `E` alone, the way the
/// rule parser would. For the extensions' own unit tests.
#[cfg(test)]
pub(crate) fn try_parse_alone<E: Extension>(ctx: Ctx, line: &str) -> Result<E, String> {
    let mut toks = Vec::new();
    super::token::tokenize(line, 0, &mut toks);
    let mut ext = E::new(&ctx);
    let mut pos = 0;
    let mut invert = false;
    while pos < toks.len() {
        let t = toks[pos].as_str();
        pos += 1;
        if t == "!" {
            if invert {
                return Err("multiple `!` flags not allowed".into());
            }
            invert = true;
            continue;
        }
        let Some(opt) = t.strip_prefix("--") else {
            return Err(format!("Bad argument `{t}`"));
        };
        let name = resolve_option(E::OPTIONS, opt).ok_or_else(|| format!("unknown option `{t}`"))?;
        let mut args = Args::new(&toks, pos, ctx);
        ext.parse(name, invert, &mut args)?;
        pos = args.pos();
        invert = false;
    }
    ext.finish(&ctx)?;
    Ok(ext)
}

/// [`try_parse_alone`], then what `save` prints.
#[cfg(test)]
pub(crate) fn check_alone<E: Extension>(ctx: Ctx, line: &str) -> Result<String, String> {
    let ext = try_parse_alone::<E>(ctx, line)?;
    let mut out = String::new();
    ext.save(&ctx, &mut out);
    Ok(out)
}

/// [`try_parse_alone`] for lines that must parse (the evaluation tests).
#[cfg(test)]
pub(crate) fn parse_alone<E: Extension>(ctx: Ctx, line: &str) -> E {
    try_parse_alone(ctx, line).unwrap_or_else(|e| panic!("`{line}`: {e}"))
}

/// Resolves `opt` (without `--`) against `options` as getopt_long does: an exact name, or an
/// unambiguous prefix of one.
pub fn resolve_option(options: &'static [&'static str], opt: &str) -> Option<&'static str> {
    if let Some(o) = options.iter().find(|o| **o == opt) {
        return Some(o);
    }
    let mut found = options.iter().filter(|o| o.starts_with(opt) && !opt.is_empty());
    let first = found.next()?;
    found.next().is_none().then_some(*first)
}
