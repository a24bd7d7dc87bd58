//! What two rule sets share, so that a diff analyses only the packets that can tell them apart:
//! the chains that differ, and, per chain and position, whether a differing chain can still be
//! reached from there.

use crate::ruleset::{Chain, ChainId, Family, Hook, Rule, Ruleset, Table, TableName, Target};

/// The chains of one table that differ, and where they can be reached from.
#[derive(Clone, Debug)]
pub(crate) struct TableFocus {
    /// Per chain of the old table: true when it differs (rules, policy, or absent in the new).
    pub(crate) differs: Vec<bool>,
    /// Per chain and rule index (one more for the end): a differing chain is reachable from
    /// that rule onwards (through jumps and gotos; the chain itself counts when it differs).
    pub(crate) reach: Vec<Vec<bool>>,
}

/// Differences between an old and a new rule set, for one family.
#[derive(Clone, Debug)]
pub(crate) struct Focus {
    pub(crate) tables: Vec<(TableName, TableFocus)>,
}

/// True when two rules do the same (source position and counters aside; jumps compared by
/// chain name).
fn same_rule(a: &Rule, at: &Table, b: &Rule, bt: &Table) -> bool {
    let target = match (&a.target, &b.target) {
        (Target::Jump(x), Target::Jump(y)) | (Target::Goto(x), Target::Goto(y)) => at[*x].name == bt[*y].name,
        (x, y) => x == y,
    };
    target && a.proto == b.proto && a.src == b.src && a.dst == b.dst && a.ifaces == b.ifaces && a.fragment == b.fragment && a.matches == b.matches
}

fn same_chain(a: &Chain, at: &Table, b: &Chain, bt: &Table) -> bool {
    a.policy == b.policy && a.rules.len() == b.rules.len() && a.rules.iter().zip(&b.rules).all(|(x, y)| same_rule(x, at, y, bt))
}

impl Focus {
    /// The focus of `old` against `new`; `None` when the difference is not local to chains
    /// (tables present on one side only, conntrack switched on by one side only).
    pub(crate) fn of(old: &Ruleset, new: &Ruleset, family: Family) -> Option<Focus> {
        let names = |r: &Ruleset| {
            let mut v: Vec<TableName> = r.tables.iter().filter(|t| t.family == family).map(|t| t.name).collect();
            v.sort();
            v
        };
        if names(old) != names(new) || crate::conntrack::conntrack_on(old) != crate::conntrack::conntrack_on(new) {
            return None;
        }
        let mut tables = Vec::new();
        for t in old.tables.iter().filter(|t| t.family == family) {
            let n = new.table(family, t.name)?;
            let mut differs: Vec<bool> = t.chains().iter().map(|c| n.chain_id(&c.name).is_none_or(|id| !same_chain(c, t, &n[id], n))).collect();
            // A chain only the new table has is reached by a rule that differs, so its caller
            // is marked already; builtin chains exist on both sides.
            for c in n.chains() {
                if t.chain_id(&c.name).is_none() && c.hook.is_some() {
                    differs.iter_mut().for_each(|d| *d = true);
                }
            }
            // Reachability of a differing chain, to a fixed point over jumps and gotos.
            let mut reaches: Vec<bool> = differs.clone();
            loop {
                let mut changed = false;
                for (i, c) in t.chains().iter().enumerate() {
                    if reaches[i] {
                        continue;
                    }
                    if c.rules.iter().any(|r| matches!(r.target, Target::Jump(j) | Target::Goto(j) if reaches[j.0 as usize])) {
                        reaches[i] = true;
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
            let reach = t
                .chains()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut v = vec![differs[i]; c.rules.len() + 1];
                    let mut acc = differs[i];
                    for k in (0..c.rules.len()).rev() {
                        if let Target::Jump(j) | Target::Goto(j) = c.rules[k].target {
                            acc |= reaches[j.0 as usize];
                        }
                        v[k] = acc;
                    }
                    v
                })
                .collect();
            tables.push((t.name, TableFocus { differs, reach }));
        }
        Some(Focus { tables })
    }

    fn table(&self, name: TableName) -> Option<&TableFocus> {
        self.tables.iter().find(|(n, _)| *n == name).map(|(_, f)| f)
    }

    /// True when chain `c` of table `t` differs.
    pub(crate) fn differs(&self, t: TableName, c: ChainId) -> bool {
        self.table(t).is_some_and(|f| f.differs[c.0 as usize])
    }

    /// True when a differing chain can be reached from rule `idx` of chain `c` on.
    pub(crate) fn reaches(&self, t: TableName, c: ChainId, idx: usize) -> bool {
        self.table(t).is_some_and(|f| f.reach[c.0 as usize].get(idx).copied().unwrap_or(false))
    }

    /// True when walking table `t`'s built-in chain at `hook` may reach a differing chain.
    pub(crate) fn hot(&self, old: &Ruleset, family: Family, t: TableName, hook: Hook) -> bool {
        old.table(family, t).and_then(|tb| tb.builtin(hook)).is_some_and(|c| self.reaches(t, c, 0))
    }
}
