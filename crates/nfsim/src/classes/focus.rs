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

impl TableFocus {
    /// Where the differing chains of `t` can be reached from: the chains that reach one (a
    /// backwards search over jumps and gotos) and, for those, from which rule on.
    fn of(t: &Table, differs: Vec<bool>) -> TableFocus {
        let n = t.chains().len();
        let mut callers: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, c) in t.chains().iter().enumerate() {
            for r in &c.rules {
                if let Target::Jump(j) | Target::Goto(j) = r.target {
                    callers[j.0 as usize].push(i);
                }
            }
        }
        let mut reaching = differs.clone();
        let mut queue: Vec<usize> = (0..n).filter(|&i| differs[i]).collect();
        while let Some(c) = queue.pop() {
            for &p in &callers[c] {
                if !reaching[p] {
                    reaching[p] = true;
                    queue.push(p);
                }
            }
        }
        let reach = t
            .chains()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if !reaching[i] {
                    return Vec::new();
                }
                let mut v = vec![differs[i]; c.rules.len() + 1];
                let mut acc = differs[i];
                for k in (0..c.rules.len()).rev() {
                    if let Target::Jump(j) | Target::Goto(j) = c.rules[k].target {
                        acc |= reaching[j.0 as usize];
                    }
                    v[k] = acc;
                }
                v
            })
            .collect();
        TableFocus { differs, reach }
    }
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
    /// The focus of `old` against `new` and of `new` against `old`; `None` when the difference
    /// is not local to chains (tables present on one side only, conntrack switched on by one
    /// side only).
    pub(crate) fn pair(old: &Ruleset, new: &Ruleset, family: Family) -> Option<(Focus, Focus)> {
        let names = |r: &Ruleset| {
            let mut v: Vec<TableName> = r.tables.iter().filter(|t| t.family == family).map(|t| t.name).collect();
            v.sort();
            v
        };
        if names(old) != names(new) || crate::conntrack::conntrack_on(old) != crate::conntrack::conntrack_on(new) {
            return None;
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for t in old.tables.iter().filter(|t| t.family == family) {
            let n = new.table(family, t.name)?;
            let theirs: std::collections::HashMap<&str, usize> = n.chains().iter().enumerate().map(|(i, c)| (&*c.name, i)).collect();
            let mut differs_old = vec![true; t.chains().len()];
            let mut differs_new = vec![true; n.chains().len()];
            for (i, c) in t.chains().iter().enumerate() {
                if let Some(&j) = theirs.get(&*c.name) {
                    let d = !same_chain(c, t, &n.chains()[j], n);
                    differs_old[i] = d;
                    differs_new[j] = d;
                }
            }
            // A built-in chain on one side only changes every walk at its hook: no focus.
            fn builtins(tb: &Table) -> Vec<&str> {
                let mut v: Vec<&str> = tb.chains().iter().filter(|c| c.hook.is_some()).map(|c| &*c.name).collect();
                v.sort_unstable();
                v
            }
            if builtins(t) != builtins(n) {
                return None;
            }
            a.push((t.name, TableFocus::of(t, differs_old)));
            b.push((t.name, TableFocus::of(n, differs_new)));
        }
        Some((Focus { tables: a }, Focus { tables: b }))
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
