//! The checks the kernel runs when a table is loaded (`translate_table`, `mark_source_chains`,
//! each extension's `checkentry` with its `.table` and `.hooks`): jump loops, and extensions
//! used in a table or reached from a hook where they are not allowed.
//!
//! `iptables-restore --test` does not run these; a real load fails at `COMMIT` (iptables-legacy
//! names the COMMIT line, iptables-nft the rule). Here each problem names the offending rule.

use super::{ChainId, Hook, HookMask, Rule, Ruleset, Table, TableName, Target};
use crate::diag::Diagnostic;
use crate::matches::Match;
use crate::targets::TargetExt;
use crate::xt::ext::Ctx;

/// Runs every load-time check on every table.
pub fn check(ruleset: &Ruleset) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for table in &ruleset.tables {
        let jumps = Jumps::of(table);
        let reach = jumps.reachability(table);
        jumps.loops(table, &mut out);
        for (ci, chain) in table.chains.iter().enumerate() {
            let hooks = reach.hooks[ci];
            // Only extensions are restricted; plain rules (most of a large dump) need no check.
            for rule in chain.rules.iter().filter(|r| !r.matches.is_empty() || matches!(r.target, Target::Ext(_))) {
                check_rule(table, rule, &chain.name, hooks, &reach, ChainId(ci as u32), &mut out);
            }
        }
    }
    out
}

/// For each chain, the hooks whose built-in chain reaches it, and one chain it is reached from.
#[derive(Debug)]
pub struct Reach {
    /// Hooks reaching each chain (indexed by chain id).
    pub hooks: Vec<HookMask>,
    /// The chain that first reached each chain (for messages).
    pub via: Vec<Option<ChainId>>,
}

/// Which hooks reach which chains through jumps and gotos.
pub fn reachability(table: &Table) -> Reach {
    Jumps::of(table).reachability(table)
}

/// The jump graph of a table in compressed form: the jumps and gotos of chain `c`, in rule
/// order, are `edges[starts[c]..starts[c + 1]]` (target chain, rule index). Built in one pass
/// over the rules, so that the graph walks below do not read the (large) rules again.
struct Jumps {
    starts: Vec<u32>,
    edges: Vec<(u32, u32)>,
}

impl Jumps {
    fn of(table: &Table) -> Jumps {
        let mut starts = Vec::with_capacity(table.chains.len() + 1);
        let mut edges = Vec::new();
        for c in &table.chains {
            starts.push(edges.len() as u32);
            for (ri, r) in c.rules.iter().enumerate() {
                if let Target::Jump(t) | Target::Goto(t) = r.target {
                    edges.push((t.0, ri as u32));
                }
            }
        }
        starts.push(edges.len() as u32);
        Jumps { starts, edges }
    }

    /// The jumps of chain `i`: (target chain, rule index).
    fn from(&self, i: usize) -> &[(u32, u32)] {
        &self.edges[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    fn reachability(&self, table: &Table) -> Reach {
        let n = table.chains.len();
        let mut hooks = vec![HookMask::default(); n];
        let mut via = vec![None; n];
        let mut stack = Vec::new();
        for (i, c) in table.chains.iter().enumerate() {
            if let Some(h) = c.hook {
                hooks[i] = h.bit();
                stack.push(i);
            }
        }
        while let Some(i) = stack.pop() {
            for &(t, _) in self.from(i) {
                let t = t as usize;
                let merged = HookMask(hooks[t].0 | hooks[i].0);
                if merged != hooks[t] {
                    hooks[t] = merged;
                    via[t].get_or_insert(ChainId(i as u32));
                    stack.push(t);
                }
            }
        }
        Reach { hooks, via }
    }

    /// The kernel refuses a table in which a chain reachable from a hook can reach itself.
    /// A depth-first walk from each built-in chain reports every jump that closes a circle.
    fn loops(&self, table: &Table, out: &mut Vec<Diagnostic>) {
        const UNVISITED: u8 = 0;
        const ON_PATH: u8 = 1;
        const DONE: u8 = 2;
        let n = table.chains.len();
        let mut color = vec![UNVISITED; n];
        // The chains on the current path, each with the position of its next jump to follow.
        let mut path: Vec<(usize, usize)> = Vec::new();
        for root in 0..n {
            if table.chains[root].hook.is_none() || color[root] != UNVISITED {
                continue;
            }
            color[root] = ON_PATH;
            path.push((root, 0));
            while let Some(&(i, next)) = path.last() {
                let Some(&(t, ri)) = self.from(i).get(next) else {
                    color[i] = DONE;
                    path.pop();
                    continue;
                };
                if let Some(top) = path.last_mut() {
                    top.1 += 1;
                }
                let t = t as usize;
                if color[t] == ON_PATH {
                    let start = path.iter().position(|&(p, _)| p == t).unwrap_or(0);
                    let mut names: Vec<&str> = path[start..].iter().map(|&(p, _)| &*table.chains[p].name).collect();
                    names.push(&table.chains[t].name);
                    let span = table.chains[i].rules[ri as usize].span;
                    out.push(
                        Diagnostic::error(span, format!("jump loop: {} (the kernel refuses a table whose chains can jump in a circle)", names.join(" -> ")))
                            .at_load(),
                    );
                } else if color[t] == UNVISITED {
                    color[t] = ON_PATH;
                    path.push((t, 0));
                }
            }
        }
    }
}

fn path_to(table: &Table, reach: &Reach, id: ChainId) -> String {
    let mut names = vec![table[id].name.to_string()];
    let mut cur = id;
    while let Some(p) = reach.via[cur.0 as usize] {
        if names.len() > 16 || names.contains(&table[p].name.to_string()) {
            break;
        }
        names.push(table[p].name.to_string());
        cur = p;
    }
    names.reverse();
    names.join(" -> ")
}

/// Where an extension may be used: its table (if restricted) and hooks.
struct Allowed {
    table: Option<TableName>,
    hooks: &'static [Hook],
}

fn target_allowed(t: &TargetExt) -> Option<Allowed> {
    use Hook::*;
    let (table, hooks): (Option<TableName>, &'static [Hook]) = match t {
        TargetExt::Redirect(_) | TargetExt::Dnat(_) => (Some(TableName::Nat), &[Prerouting, Output]),
        TargetExt::Snat(_) => (Some(TableName::Nat), &[Postrouting, Input]),
        TargetExt::Masquerade(_) => (Some(TableName::Nat), &[Postrouting]),
        TargetExt::Netmap(_) => (Some(TableName::Nat), &[Prerouting, Input, Output, Postrouting]),
        TargetExt::Tproxy(_) => (Some(TableName::Mangle), &[Prerouting]),
        TargetExt::Ct(_) | TargetExt::Notrack(_) => (Some(TableName::Raw), &[Prerouting, Output]),
        TargetExt::Reject(_) => (Some(TableName::Filter), &[Input, Forward, Output]),
        TargetExt::Tos(_) | TargetExt::Dscp(_) | TargetExt::Ttl(_) | TargetExt::Hl(_) | TargetExt::Checksum(_) => (Some(TableName::Mangle), &Hook::ALL),
        TargetExt::Tcpmss(m) if matches!(m.action, Some(crate::targets::tcpmss::TcpmssAction::ClampMssToPmtu)) => (None, &[Forward, Output, Postrouting]),
        TargetExt::Set(s) if s.map_set.is_some() => (Some(TableName::Mangle), &Hook::ALL),
        _ => return None,
    };
    Some(Allowed { table, hooks })
}

/// Refusals of iptables-legacy (x_tables) that iptables-nft, the default, does not make: reported
/// as warnings.
fn legacy_only(rule: &Rule, table: &Table) -> Option<&'static str> {
    match &rule.target {
        Target::Ext(TargetExt::Trace(_)) if table.name != TableName::Raw => {
            Some("iptables-legacy accepts `TRACE` only in the `raw` table (iptables-nft, the default, accepts it anywhere)")
        }
        Target::Ext(TargetExt::Tcpmss(_)) if !has_syn_match(rule) => {
            Some("iptables-legacy refuses `TCPMSS` without a SYN match (`-p tcp --tcp-flags SYN,RST SYN`); iptables-nft, the default, accepts it")
        }
        _ => None,
    }
}

fn match_allowed(m: &Match, ctx: &Ctx) -> Option<Allowed> {
    use Hook::*;
    let mut saved = String::new();
    match m {
        Match::Owner(_) => Some(Allowed { table: None, hooks: &[Output, Postrouting] }),
        Match::Mac(_) => Some(Allowed { table: None, hooks: &[Prerouting, Input, Forward] }),
        Match::Physdev(p) if p.refused_from_output_hook() => Some(Allowed { table: None, hooks: &[Prerouting, Input, Forward, Postrouting] }),
        Match::Addrtype(_) => {
            m.save(ctx, &mut saved);
            if saved.contains("--limit-iface-in") {
                Some(Allowed { table: None, hooks: &[Prerouting, Input, Forward] })
            } else if saved.contains("--limit-iface-out") {
                Some(Allowed { table: None, hooks: &[Output, Forward, Postrouting] })
            } else {
                None
            }
        }
        _ => None,
    }
}

fn hook_names(hooks: &[Hook]) -> String {
    hooks.iter().map(|h| h.chain_name()).collect::<Vec<_>>().join(", ")
}

#[allow(clippy::too_many_arguments)]
fn check_rule(table: &Table, rule: &Rule, chain: &str, hooks: HookMask, reach: &Reach, id: ChainId, out: &mut Vec<Diagnostic>) {
    let ctx = Ctx { family: table.family, table: table.name, proto: rule.proto };
    if let Some(w) = legacy_only(rule, table) {
        out.push(Diagnostic::warning(rule.span, w).at_load());
    }
    // `kind` and `name` name the extension (`target` `DNAT`); messages are built only on failure.
    let mut check = |kind: &str, name: &str, allowed: Allowed| {
        let what = || format!("{kind} `{name}`");
        if let Some(t) = allowed.table
            && t != table.name
        {
            out.push(Diagnostic::error(rule.span, format!("{} is only valid in the `{t}` table, not in `{}`", what(), table.name)).at_load());
            return;
        }
        if hooks.iter().any(|h| !allowed.hooks.contains(&h)) {
            let bad: Vec<Hook> = hooks.iter().filter(|h| !allowed.hooks.contains(h)).collect();
            let from = if table[id].hook.is_some() { String::new() } else { format!(" (chain `{chain}` is reached as {})", path_to(table, reach, id)) };
            out.push(
                Diagnostic::error(
                    rule.span,
                    format!("{} is only valid in {}, but this rule is reached from {}{from}", what(), hook_names(allowed.hooks), hook_names(&bad)),
                )
                .at_load(),
            );
        }
    };
    for m in &rule.matches {
        if let Some(a) = match_allowed(m, &ctx) {
            check("match", m.name(), a);
        }
    }
    if let Target::Ext(t) = &rule.target {
        if let Some(a) = target_allowed(t) {
            check("target", t.name(), a);
        }
        if matches!(t, TargetExt::Ulog(_)) && !crate::targets::ulog::KERNEL_SUPPORTED {
            out.push(
                Diagnostic::error(
                    rule.span,
                    "target `ULOG` is gone from the kernel since Linux 3.17: `iptables-restore --test` accepts it, loading fails (use `NFLOG`)",
                )
                .at_load(),
            );
        }
        if matches!(t, TargetExt::Tcpmss(_)) && ctx.proto() != Some(6) {
            out.push(Diagnostic::error(rule.span, "target `TCPMSS` needs `-p tcp`").at_load());
        }
        if let TargetExt::Set(s) = t
            && (s.map_prio || s.map_queue)
            && hooks.iter().any(|h| !matches!(h, Hook::Forward | Hook::Output | Hook::Postrouting))
        {
            out.push(Diagnostic::error(rule.span, "`SET --map-prio`/`--map-queue` is only valid in FORWARD, OUTPUT, POSTROUTING").at_load());
        }
    }
}

fn has_syn_match(rule: &Rule) -> bool {
    rule.matches.iter().any(|m| matches!(m, Match::Tcp(t) if t.flags.is_some_and(|f| f.comp & 0x02 != 0 && !f.invert)))
}

/// The ipsets a rule refers to (`-m set --match-set NAME`, `-j SET --add-set NAME`, ...).
pub fn ipset_names(rule: &Rule) -> Vec<String> {
    let ctx = Ctx { family: super::Family::V4, table: TableName::Filter, proto: rule.proto };
    let mut names = Vec::new();
    let mut saved = String::new();
    for m in &rule.matches {
        match m {
            Match::Set(s) => names.push(s.set_name().to_string()),
            Match::Opaque(o) if &*o.name == "set" => m.save(&ctx, &mut saved),
            _ => {}
        }
    }
    if let Target::Ext(t) = &rule.target
        && (matches!(t, TargetExt::Set(_)) || (t.is_opaque() && t.name() == "SET"))
    {
        t.save(&ctx, &mut saved);
    }
    let words: Vec<&str> = saved.split_whitespace().collect();
    for w in words.windows(2) {
        if matches!(w[0], "--match-set" | "--add-set" | "--del-set" | "--map-set") {
            names.push(w[1].trim_matches('"').to_string());
        }
    }
    names
}
