//! Prints a [`Ruleset`] in canonical `iptables-save` form: what the kernel's `iptables-save`
//! prints after loading the same rules (without its `#` comment lines and timestamps).

use std::fmt::Write as _;

use super::{Family, Neg, Rule, Ruleset, Table, Target};
use crate::xt::ext::Ctx;
use crate::xt::value::proto_name;

/// Printing options.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Print packet and byte counters (`iptables-save -c`); otherwise `[0:0]` as after a load
    /// without `-c`.
    pub counters: bool,
    /// Print only this family's tables.
    pub family: Option<Family>,
}

/// The whole rule set, IPv4 before IPv6, tables in iptables-nft-save's order.
pub fn render(ruleset: &Ruleset, opts: &RenderOptions) -> String {
    let mut out = String::with_capacity(ruleset.rule_count() * 96 + 256);
    let mut tables: Vec<&Table> = ruleset.tables.iter().filter(|t| opts.family.is_none_or(|f| f == t.family)).collect();
    tables.sort_by_key(|t| (t.family, save_order(t.name)));
    let mixed = tables.first().map(|t| t.family) != tables.last().map(|t| t.family);
    for table in tables {
        if mixed && table.family == Family::V6 && !out.contains("# ip6tables-save\n") {
            out.push_str("# ip6tables-save\n");
        }
        if !is_empty(table) {
            render_table(&mut out, table, opts);
        }
    }
    out
}

/// The order in which iptables-nft-save prints the tables.
fn save_order(name: super::TableName) -> u8 {
    use super::TableName::*;
    match name {
        Mangle => 0,
        Security => 1,
        Raw => 2,
        Filter => 3,
        Nat => 4,
    }
}

/// A table block that declared and added nothing (`*nat` then `COMMIT`): iptables-nft does not
/// create the table, so iptables-save does not print it.
pub fn is_empty(table: &Table) -> bool {
    table.chains.iter().all(|c| c.hook.is_some() && c.decl.is_none() && c.rules.is_empty() && c.policy == super::Policy::Accept)
}

/// Chains in iptables-save order: built-in chains in hook order, then user chains sorted by name.
pub fn chain_order(table: &Table) -> Vec<usize> {
    let mut builtin: Vec<usize> = (0..table.chains.len()).filter(|&i| table.chains[i].hook.is_some()).collect();
    builtin.sort_by_key(|&i| table.chains[i].hook);
    let mut user: Vec<usize> = (0..table.chains.len()).filter(|&i| table.chains[i].hook.is_none()).collect();
    user.sort_by(|&a, &b| table.chains[a].name.as_bytes().cmp(table.chains[b].name.as_bytes()));
    builtin.extend(user);
    builtin
}

/// One table: `*name`, chain headers, rules, `COMMIT`.
pub fn render_table(out: &mut String, table: &Table, opts: &RenderOptions) {
    let _ = writeln!(out, "*{}", table.name);
    let order = chain_order(table);
    for &i in &order {
        let c = &table.chains[i];
        let (p, b) = if opts.counters { (c.counters.packets, c.counters.bytes) } else { (0, 0) };
        match c.hook {
            Some(_) => {
                let _ = writeln!(out, ":{} {} [{p}:{b}]", c.name, c.policy.as_str());
            }
            None => {
                let _ = writeln!(out, ":{} - [0:0]", c.name);
            }
        }
    }
    for &i in &order {
        let c = &table.chains[i];
        for r in &c.rules {
            if opts.counters {
                let cn = r.counters.as_deref().copied().unwrap_or_default();
                let _ = write!(out, "[{}:{}] ", cn.packets, cn.bytes);
            }
            out.push_str("-A ");
            out.push_str(&c.name);
            render_rule(out, table, r);
            out.push('\n');
        }
    }
    out.push_str("COMMIT\n");
}

/// A rule's specification after `-A CHAIN`, each part preceded by a space.
pub fn render_rule(out: &mut String, table: &Table, r: &Rule) {
    if let Target::Unreadable(u) = &r.target {
        out.push(' ');
        out.push_str(&u.text);
        return;
    }
    fn neg<T>(out: &mut String, v: &Neg<T>) {
        if v.negated {
            out.push_str(" !");
        }
    }
    if let Some(s) = &r.src {
        neg(out, s);
        let _ = write!(out, " -s {}", s.value);
    }
    if let Some(d) = &r.dst {
        neg(out, d);
        let _ = write!(out, " -d {}", d.value);
    }
    if let Some(i) = r.in_iface() {
        neg(out, i);
        let _ = write!(out, " -i {}", i.value);
    }
    if let Some(o) = r.out_iface() {
        neg(out, o);
        let _ = write!(out, " -o {}", o.value);
    }
    if let Some(p) = &r.proto {
        neg(out, p);
        let _ = write!(out, " -p {}", proto_name(p.value.0));
    }
    if let Some(inv) = r.fragment {
        out.push_str(if inv { " ! -f" } else { " -f" });
    }
    let ctx = Ctx { family: table.family, table: table.name, proto: r.proto };
    for m in &r.matches {
        out.push_str(" -m ");
        out.push_str(m.name());
        m.save(&ctx, out);
    }
    match &r.target {
        Target::None | Target::Unreadable(_) => {}
        Target::Accept => out.push_str(" -j ACCEPT"),
        Target::Drop => out.push_str(" -j DROP"),
        Target::Return => out.push_str(" -j RETURN"),
        Target::Queue => out.push_str(" -j QUEUE"),
        Target::Jump(id) => {
            out.push_str(" -j ");
            out.push_str(&table[*id].name);
        }
        Target::Goto(id) => {
            out.push_str(" -g ");
            out.push_str(&table[*id].name);
        }
        Target::Ext(t) => {
            out.push_str(" -j ");
            out.push_str(t.name());
            t.save(&ctx, out);
        }
    }
}
