//! `-j CONNMARK`: sets the connection's mark, or copies marks between packet and connection
//! (`xt_connmark.c` `connmark_tg_shift`, `libxt_CONNMARK.c` revision 2).
//!
//! As for [`MARK`](super::mark), the setting forms all load as one `(ctmark, ctmask)` pair and are
//! saved as `--set-xmark 0xMARK/0xMASK`. `--save-mark` and `--restore-mark` are saved with both
//! masks spelled out (`--save-mark --nfmask 0xffffffff --ctmask 0xffffffff`), and a shift, when
//! not zero, follows as `--left-shift-mark N` / `--right-shift-mark N`.
//!
//! Options apply in the order given: `--set-mark 1 --mask 0xf` sets the ctmask to 0xf, while
//! `--mask 0xf --set-mark 1` leaves it at 0xffffffff. The kernel accepts the target in every
//! table and hook; it refuses shifts over 31 bits, which is checked here.

use serde::Serialize;

use super::effect::{Applied, Cx, Effect, both};
use super::mark::{Given, parse_u32};
use crate::stack::{Domain, Pred};
use crate::traverse::End;
use crate::xt::ext::{Args, Ctx, Extension, OptResult};
use crate::xt::value::{parse_mark, parse_uint};

/// What the target does (`XT_CONNMARK_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnmarkMode {
    /// `--set-xmark` and the other setting forms: `ctmark = (ctmark & !ctmask) ^ value`.
    #[default]
    Set,
    /// `--save-mark`: copies the packet's nfmark (bits of `nfmask`) into the ctmark (bits of
    /// `ctmask`).
    Save,
    /// `--restore-mark`: copies the ctmark (bits of `ctmask`) into the packet's nfmark (bits of
    /// `nfmask`).
    Restore,
}

/// Direction of the shift applied to the copied or computed mark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShiftDir {
    /// `--left-shift-mark` (also the direction when there is no shift).
    #[default]
    Left,
    /// `--right-shift-mark`.
    Right,
}

/// The CONNMARK target (`struct xt_connmark_tginfo2`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connmark {
    /// The operation.
    pub mode: ConnmarkMode,
    /// Value XORed into the ctmark ([`ConnmarkMode::Set`] only, zero otherwise).
    pub ctmark: u32,
    /// Bits of the ctmark cleared ([`ConnmarkMode::Set`], [`ConnmarkMode::Save`]) or copied
    /// ([`ConnmarkMode::Restore`]).
    pub ctmask: u32,
    /// Bits of the nfmark copied ([`ConnmarkMode::Save`]) or cleared
    /// ([`ConnmarkMode::Restore`]); all ones for [`ConnmarkMode::Set`], which does not use it.
    pub nfmask: u32,
    /// Direction of the shift.
    pub shift_dir: ShiftDir,
    /// Number of bits shifted (0 to 31).
    pub shift_bits: u8,
    #[serde(skip)]
    given: Given,
}

/// The options that select the operation; any two of them exclude each other.
const OPS: &[&str] = &["set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark", "save-mark", "restore-mark"];

impl Connmark {
    /// The `(nfmark, ctmark)` pair after the target ran on a packet with nfmark `nfmark` whose
    /// connection has mark `ctmark`. (Without a conntrack entry the target does nothing.)
    pub fn apply(&self, nfmark: u32, ctmark: u32) -> (u32, u32) {
        let shift = |v: u32| match self.shift_dir {
            ShiftDir::Left => v.checked_shl(self.shift_bits.into()).unwrap_or(0),
            ShiftDir::Right => v.checked_shr(self.shift_bits.into()).unwrap_or(0),
        };
        match self.mode {
            ConnmarkMode::Set => (nfmark, shift((ctmark & !self.ctmask) ^ self.ctmark)),
            ConnmarkMode::Save => (nfmark, (ctmark & !self.ctmask) ^ shift(nfmark & self.nfmask)),
            ConnmarkMode::Restore => ((nfmark & !self.nfmask) ^ shift(ctmark & self.ctmask), ctmark),
        }
    }
}

impl Extension for Connmark {
    const OPTIONS: &'static [&'static str] = &[
        "set-xmark",
        "set-mark",
        "and-mark",
        "or-mark",
        "xor-mark",
        "save-mark",
        "restore-mark",
        "left-shift-mark",
        "right-shift-mark",
        "ctmask",
        "nfmask",
        "mask",
    ];

    fn new(_ctx: &Ctx) -> Self {
        Connmark { mode: ConnmarkMode::Set, ctmark: 0, ctmask: u32::MAX, nfmask: u32::MAX, shift_dir: ShiftDir::Left, shift_bits: 0, given: Given::default() }
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        let excl: &[&str] = match opt {
            "ctmask" | "nfmask" => &["mask"],
            "mask" => &["ctmask", "nfmask"],
            o if OPS.contains(&o) => OPS,
            _ => &[],
        };
        self.given.record(Self::OPTIONS, opt, invert, excl)?;
        match opt {
            "save-mark" => self.mode = ConnmarkMode::Save,
            "restore-mark" => self.mode = ConnmarkMode::Restore,
            "left-shift-mark" | "right-shift-mark" => {
                self.shift_bits = parse_uint(args.value()?, 0, 32)? as u8;
                self.shift_dir = if opt == "left-shift-mark" { ShiftDir::Left } else { ShiftDir::Right };
            }
            "ctmask" => self.ctmask = parse_u32(args.value()?)?,
            "nfmask" => self.nfmask = parse_u32(args.value()?)?,
            "mask" => {
                let v = parse_u32(args.value()?)?;
                (self.ctmask, self.nfmask) = (v, v);
            }
            _ => {
                let arg = args.value()?;
                (self.ctmark, self.ctmask) = match opt {
                    "set-xmark" => parse_mark(arg)?,
                    "set-mark" => parse_mark(arg).map(|(v, m)| (v, v | m))?,
                    "and-mark" => (0, !parse_u32(arg)?),
                    "or-mark" => {
                        let v = parse_u32(arg)?;
                        (v, v)
                    }
                    "xor-mark" => (parse_u32(arg)?, 0),
                    _ => return Err(format!("unknown option `--{opt}`")),
                };
                self.mode = ConnmarkMode::Set;
            }
        }
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if !OPS.iter().any(|o| self.given.has(Self::OPTIONS, o)) {
            return Err("the CONNMARK target requires an operation (`--set-xmark`, `--set-mark`, \
                 `--and-mark`, `--or-mark`, `--xor-mark`, `--save-mark` or `--restore-mark`)"
                .into());
        }
        if self.shift_bits > 31 {
            return Err(format!("the kernel refuses a CONNMARK shift of {} bits (at most 31)", self.shift_bits));
        }
        // Drop what the kernel ignores, so that equal behaviour compares equal.
        if self.mode == ConnmarkMode::Set {
            self.nfmask = u32::MAX;
        }
        if self.shift_bits == 0 {
            self.shift_dir = ShiftDir::Left;
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        let masks = |out: &mut String, op: &str| {
            out.push_str(&format!(" --{op} --nfmask 0x{:x} --ctmask 0x{:x}", self.nfmask, self.ctmask));
        };
        match self.mode {
            ConnmarkMode::Set => {
                out.push_str(&format!(" --set-xmark 0x{:x}/0x{:x}", self.ctmark, self.ctmask));
            }
            ConnmarkMode::Save => masks(out, "save-mark"),
            ConnmarkMode::Restore => masks(out, "restore-mark"),
        }
        if self.shift_bits != 0 {
            let dir = match self.shift_dir {
                ShiftDir::Left => "left",
                ShiftDir::Right => "right",
            };
            out.push_str(&format!(" --{dir}-shift-mark {}", self.shift_bits));
        }
    }
}

/// `connmark_tg_shift`: without a conntrack entry (INVALID, UNTRACKED, or any packet in raw,
/// which runs before conntrack) the target does nothing.
impl Effect for Connmark {
    fn effect<'a, D: Domain<'a>>(&self, d: &mut D, st: D::State, cx: &Cx<'_, 'a, D>) -> Applied<D::State> {
        let (tracked, untracked) = d.split(st, Pred::Tracked);
        let tracked = tracked.map(|mut st| match d.map_marks(&mut st, |a, b| self.apply(a, b)) {
            Ok(()) => (st, None),
            Err(why) => (st, Some(End::Undecidable(cx.here.clone(), why))),
        });
        both(tracked, untracked.map(|s| (s, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn ctx() -> Ctx {
        Ctx { family: Family::V4, table: TableName::Mangle, proto: None }
    }

    fn check(line: &str) -> Result<String, String> {
        check_alone::<Connmark>(ctx(), line)
    }

    // Expected forms are what iptables-save v1.8.9 (nf_tables) printed for the same rules.
    #[test]
    fn setting_forms_save_as_set_xmark() {
        assert_eq!(check("--set-mark 2").unwrap(), " --set-xmark 0x2/0xffffffff");
        assert_eq!(check("--set-mark 2/3").unwrap(), " --set-xmark 0x2/0x3");
        assert_eq!(check("--set-xmark 2/3").unwrap(), " --set-xmark 0x2/0x3");
        assert_eq!(check("--and-mark 2").unwrap(), " --set-xmark 0x0/0xfffffffd");
        assert_eq!(check("--or-mark 2").unwrap(), " --set-xmark 0x2/0x2");
        assert_eq!(check("--xor-mark 2").unwrap(), " --set-xmark 0x2/0x0");
    }

    #[test]
    fn save_and_restore_print_both_masks() {
        let all = "--nfmask 0xffffffff --ctmask 0xffffffff";
        assert_eq!(check("--save-mark").unwrap(), format!(" --save-mark {all}"));
        assert_eq!(check("--restore-mark").unwrap(), format!(" --restore-mark {all}"));
        assert_eq!(check("--save-mark --mask 0xff").unwrap(), " --save-mark --nfmask 0xff --ctmask 0xff");
        assert_eq!(check("--restore-mark --nfmask 0xff").unwrap(), " --restore-mark --nfmask 0xff --ctmask 0xffffffff");
        assert_eq!(check("--restore-mark --ctmask 0xff --nfmask 0xf").unwrap(), " --restore-mark --nfmask 0xf --ctmask 0xff");
        assert_eq!(check("--mask 0xf --restore-mark").unwrap(), " --restore-mark --nfmask 0xf --ctmask 0xf");
        assert_eq!(check("--save-mark --nfmask 0xfffffff --ctmask 0xffffffff").unwrap(), " --save-mark --nfmask 0xfffffff --ctmask 0xffffffff");
    }

    #[test]
    fn masks_apply_in_order() {
        assert_eq!(check("--set-mark 1 --mask 0xf").unwrap(), " --set-xmark 0x1/0xf");
        assert_eq!(check("--mask 0xf --set-mark 1").unwrap(), " --set-xmark 0x1/0xffffffff");
        assert_eq!(check("--set-mark 1 --ctmask 0xf").unwrap(), " --set-xmark 0x1/0xf");
        assert_eq!(check("--ctmask 0xf --set-mark 1").unwrap(), " --set-xmark 0x1/0xffffffff");
        assert_eq!(check("--set-mark 1 --nfmask 0xf").unwrap(), " --set-xmark 0x1/0xffffffff");
        assert_eq!(check("--set-xmark 1/2 --ctmask 0xf").unwrap(), " --set-xmark 0x1/0xf");
    }

    #[test]
    fn shifts() {
        let all = "--nfmask 0xffffffff --ctmask 0xffffffff";
        assert_eq!(check("--save-mark --left-shift-mark 3").unwrap(), format!(" --save-mark {all} --left-shift-mark 3"));
        assert_eq!(check("--restore-mark --right-shift-mark 3 --left-shift-mark 2").unwrap(), format!(" --restore-mark {all} --left-shift-mark 2"));
        assert_eq!(check("--restore-mark --right-shift-mark 0").unwrap(), format!(" --restore-mark {all}"));
        assert_eq!(check("--set-xmark 1/2 --right-shift-mark 3").unwrap(), " --set-xmark 0x1/0x2 --right-shift-mark 3");
    }

    #[test]
    fn refuses_what_iptables_or_the_kernel_refuses() {
        for bad in [
            "",
            "--mask 0xf",
            "--left-shift-mark 3",
            "--restore-mark --ctmask 0xff --mask 0xf",
            "--save-mark --restore-mark",
            "--save-mark --save-mark",
            "--set-mark 1 --set-mark 2",
            "--set-mark 1 --save-mark",
            "--save-mark --mask 1 --mask 2",
            "--save-mark --nfmask 1 --nfmask 2",
            "! --save-mark",
            "--save-mark ! --mask 1",
            "--save-mark --mask 0x1/0x2",
            "--save-mark --mask -1",
            "--restore-mark --right-shift-mark 33",
            "--restore-mark --right-shift-mark 32",
        ] {
            assert!(check(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn applies_like_connmark_tg_shift() {
        let load = |line: &str| {
            let mut toks = Vec::new();
            crate::xt::token::tokenize(line, 0, &mut toks);
            let mut c = Connmark::new(&ctx());
            let mut pos = 0;
            while pos < toks.len() {
                let opt = toks[pos].as_str().trim_start_matches("--").to_string();
                let mut args = Args::new(&toks, pos + 1, ctx());
                c.parse(&opt, false, &mut args).unwrap();
                pos = args.pos();
            }
            c.finish(&ctx()).unwrap();
            c
        };
        assert_eq!(load("--set-xmark 0x1/0xf").apply(7, 0xf3), (7, 0xf1));
        assert_eq!(load("--save-mark --mask 0xf").apply(0x35, 0xf0), (0x35, 0xf5));
        assert_eq!(load("--restore-mark --ctmask 0xf0").apply(0x1, 0x35), (0x30, 0x35));
        assert_eq!(load("--restore-mark --ctmask 0xf0 --nfmask 0xf --right-shift-mark 4").apply(0xf1, 0x35), (0xf3, 0x35));
        assert_eq!(load("--set-mark 1 --nfmask 0xf"), load("--set-xmark 1"));
    }
}
