//! `-j SET`: adds the packet's addresses or ports to an ipset, deletes them from one, or sets
//! the packet's mark, priority or queue from a `skbinfo` set (`xt_set.c`, `libxt_SET.c`
//! revision 3).
//!
//! `--add-set NAME FLAGS`, `--del-set NAME FLAGS` and `--map-set NAME FLAGS` each take a set name
//! (at most 31 bytes) and a comma-separated list of 1 to 6 `src` / `dst` (each entry only has to
//! start with `src` or `dst`). `--exist` and `--timeout N` (0 to 4294967294) go with `--add-set`,
//! `--map-mark`, `--map-prio` and `--map-queue` with `--map-set`, which needs at least one of
//! them. iptables-save prints `--add-set ... --exist --timeout N --del-set ... --map-set ...
//! --map-mark --map-prio --map-queue`, whatever the order given.
//!
//! This is an old-style extension: `!` before its options is ignored, `--exist`, `--timeout` and
//! the `--map-*` flags may be repeated (the last `--timeout` wins). iptables also asks the kernel
//! whether each set exists and is of the rule's family; this model cannot. The kernel accepts
//! `--map-set` only in the mangle table, and `--map-prio` / `--map-queue` only in FORWARD,
//! OUTPUT and POSTROUTING.

use serde::Serialize;

use super::effect::Effect;
use super::mark::{Given, save_word};
use crate::xt::ext::{Args, Ctx, Extension, OptResult};
use crate::xt::value::parse_uint;

/// Longest set name (`IPSET_MAXNAMELEN - 1`).
pub const SET_NAME_MAX: usize = 31;

/// Most dimensions a set lookup may name (`IPSET_DIM_MAX`).
pub const SET_DIM_MAX: usize = 6;

/// Which address or port of the packet a dimension of the set is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetDir {
    /// `src`: the source.
    Src,
    /// `dst`: the destination.
    Dst,
}

/// A set and the packet fields it is looked up with (`struct xt_set_info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetRef {
    /// The set's name.
    pub name: Box<str>,
    /// One direction per dimension, 1 to [`SET_DIM_MAX`] of them.
    pub dirs: Vec<SetDir>,
}

/// The SET target (`struct xt_set_info_target_v3`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Set {
    /// `--add-set NAME FLAGS`.
    pub add_set: Option<SetRef>,
    /// `--del-set NAME FLAGS`.
    pub del_set: Option<SetRef>,
    /// `--map-set NAME FLAGS`.
    pub map_set: Option<SetRef>,
    /// `--exist`: re-adding an entry refreshes its timeout (`IPSET_FLAG_EXIST`).
    pub exist: bool,
    /// `--timeout N`: the timeout of added entries, in seconds (`None`: the set's default).
    pub timeout: Option<u32>,
    /// `--map-mark`: sets the packet's mark from the entry (`IPSET_FLAG_MAP_SKBMARK`).
    pub map_mark: bool,
    /// `--map-prio`: sets the packet's priority (`IPSET_FLAG_MAP_SKBPRIO`).
    pub map_prio: bool,
    /// `--map-queue`: sets the packet's hardware queue (`IPSET_FLAG_MAP_SKBQUEUE`).
    pub map_queue: bool,
    #[serde(skip)]
    given: Given,
}

/// Reads `NAME FLAGS` after `--{opt}`, as `parse_target` and `parse_dirs` do.
fn parse_set_ref(opt: &str, args: &mut Args<'_, '_>) -> Result<SetRef, String> {
    let name = args.value()?;
    let flags = args.optional().ok_or_else(|| format!("`--{opt}` requires two arguments: a set name and src/dst flags"))?;
    if name.len() > SET_NAME_MAX {
        return Err(format!("set name `{name}` is too long ({} bytes, at most {SET_NAME_MAX})", name.len()));
    }
    let mut dirs = Vec::new();
    for flag in flags.split(',') {
        if dirs.len() == SET_DIM_MAX {
            return Err(format!("at most {SET_DIM_MAX} src/dst flags can be given"));
        }
        dirs.push(if flag.starts_with("src") {
            SetDir::Src
        } else if flag.starts_with("dst") {
            SetDir::Dst
        } else {
            return Err(format!("bad set flag `{flag}` (expected a comma-separated list of `src` and `dst`)"));
        });
    }
    Ok(SetRef { name: name.into(), dirs })
}

fn save_set_ref(out: &mut String, opt: &str, set: &Option<SetRef>) {
    let Some(set) = set else { return };
    out.push_str(" --");
    out.push_str(opt);
    save_word(out, &set.name);
    let mut sep = ' ';
    for dir in &set.dirs {
        out.push(sep);
        out.push_str(match dir {
            SetDir::Src => "src",
            SetDir::Dst => "dst",
        });
        sep = ',';
    }
}

impl Extension for Set {
    const OPTIONS: &'static [&'static str] = &["add-set", "del-set", "exist", "timeout", "map-set", "map-mark", "map-prio", "map-queue"];

    fn new(_ctx: &Ctx) -> Self {
        Set::default()
    }

    fn parse(&mut self, opt: &str, _invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "add-set" | "del-set" | "map-set" => {
                let slot = match opt {
                    "add-set" => &mut self.add_set,
                    "del-set" => &mut self.del_set,
                    _ => &mut self.map_set,
                };
                if slot.is_some() {
                    return Err(format!("option `--{opt}` may be given only once"));
                }
                *slot = Some(parse_set_ref(opt, args)?);
            }
            "exist" => self.exist = true,
            "timeout" => {
                let v = parse_uint(args.value()?, 0, u64::from(u32::MAX) - 1)?;
                self.timeout = Some(v as u32);
            }
            "map-mark" => self.map_mark = true,
            "map-prio" => self.map_prio = true,
            "map-queue" => self.map_queue = true,
            _ => return Err(format!("unknown option `--{opt}`")),
        }
        // Old-style parsing: repeats are allowed (the set options refuse theirs above).
        self.given.set(Self::OPTIONS, opt);
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        let has = |o| self.given.has(Self::OPTIONS, o);
        if self.add_set.is_none() && self.del_set.is_none() && self.map_set.is_none() {
            return Err("the SET target requires `--add-set`, `--del-set` or `--map-set`".into());
        }
        if self.add_set.is_none() {
            for o in ["exist", "timeout"] {
                if has(o) {
                    return Err(format!("`--{o}` can be used with `--add-set` only"));
                }
            }
        }
        if self.map_set.is_none() {
            for o in ["map-mark", "map-prio", "map-queue"] {
                if has(o) {
                    return Err(format!("`--{o}` can be used with `--map-set` only"));
                }
            }
        } else if !(self.map_mark || self.map_prio || self.map_queue) {
            return Err("`--map-set` requires `--map-mark`, `--map-prio` or `--map-queue`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        save_set_ref(out, "add-set", &self.add_set);
        if self.exist {
            out.push_str(" --exist");
        }
        if let Some(t) = self.timeout {
            out.push_str(&format!(" --timeout {t}"));
        }
        save_set_ref(out, "del-set", &self.del_set);
        save_set_ref(out, "map-set", &self.map_set);
        for (on, flag) in [(self.map_mark, " --map-mark"), (self.map_prio, " --map-prio"), (self.map_queue, " --map-queue")] {
            if on {
                out.push_str(flag);
            }
        }
    }
}

/// The target adds to or deletes from an ipset (not modelled: the sets are the host's as given) and continues.
impl Effect for Box<Set> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Mangle, proto: None };
        check_alone::<Set>(ctx, line)
    }

    // Expected forms are what iptables-save v1.8.9 (nf_tables) printed for the same rules
    // (with the sets created beforehand).
    #[test]
    fn save_forms() {
        for same in [
            " --add-set foo src",
            " --add-set foo dst",
            " --add-set bar src,dst",
            " --add-set foo src,dst,src,dst,src,dst",
            " --add-set foo src --exist",
            " --add-set foo src --timeout 10",
            " --add-set foo src --timeout 4294967294",
            " --del-set foo src",
            " --map-set m src --map-mark",
            " --map-set m src --map-mark --map-prio --map-queue",
        ] {
            assert_eq!(check(same).unwrap(), same);
        }
        for (input, saved) in [
            ("--add-set foo srcx", " --add-set foo src"),
            ("! --add-set foo src", " --add-set foo src"),
            ("--add-set foo src --exist --exist", " --add-set foo src --exist"),
            ("--add-set foo src --timeout 10 --timeout 20", " --add-set foo src --timeout 20"),
            ("--add-set foo src --timeout 0x10", " --add-set foo src --timeout 16"),
            ("--timeout 10 --exist --add-set foo src", " --add-set foo src --exist --timeout 10"),
            ("--del-set foo src --add-set bar dst,src", " --add-set bar dst,src --del-set foo src"),
            (
                "--map-set m src --map-mark --add-set foo src --del-set foo dst --exist --timeout 3",
                " --add-set foo src --exist --timeout 3 --del-set foo dst --map-set m src --map-mark",
            ),
        ] {
            assert_eq!(check(input).unwrap(), saved, "{input}");
        }
    }

    #[test]
    fn refuses_what_iptables_refuses() {
        for bad in [
            "",
            "--add-set foo",
            "--add-set foo --exist",
            "--add-set foo ! src",
            "--add-set foo src,dst,src,dst,src,dst,src",
            "--add-set foo sr",
            "--add-set foo src,",
            "--add-set foo src --add-set bar dst",
            "--add-set foo src --timeout 4294967295",
            "--add-set abcdefghijklmnopqrstuvwxyz012345 src",
            "--del-set foo src --exist",
            "--del-set foo src --timeout 3",
            "--map-set m src",
            "--map-mark",
            "--add-set foo src --map-mark",
        ] {
            assert!(check(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
