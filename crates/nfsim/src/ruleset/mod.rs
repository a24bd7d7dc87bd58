//! The rule set as the kernel's x_tables hold it: per address family, tables of chains of rules
//! (`struct ipt_entry`), read from `iptables-save` / `iptables-restore` text or command lists.
//!
//! [`parse()`] reads text into a [`Ruleset`] plus every [`Diagnostic`](crate::diag::Diagnostic);
//! [`render`] prints it back in canonical `iptables-save` form; [`check`] runs the kernel's
//! load-time checks.

//!
//! The names a rule is placed by ([`Family`], [`TableName`], [`Hook`]), `!` ([`Neg`]), addresses
//! and what the extensions are built from live one layer down, in [`crate::xt`]; they are
//! re-exported here where the model uses them.

pub mod check;
pub(crate) mod dispatch;
pub mod parse;
pub mod render;
mod rule;

use std::hash::Hasher;

use hashbrown::HashTable;
use serde::Serialize;

pub use crate::xt::addr::{self, AddrMask, Iface};
pub use crate::xt::{Family, Hook, HookMask, Neg, Proto, TableName};
pub use parse::{Format, ParseOptions, Parsed, parse, parse_with};

use crate::diag::Span;
use crate::matches::Match;
use crate::targets::TargetExt;

/// Index of a chain within its [`Table`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ChainId(pub u32);

/// Index of a table within its [`Ruleset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TableId(pub u32);

/// A built-in chain's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Policy {
    /// `ACCEPT`.
    Accept,
    /// `DROP`.
    Drop,
}

impl Policy {
    /// The policy's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }
}

/// Packet and byte counters (`[pkts:bytes]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Counters {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// All tables read from one input, for both families.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ruleset {
    /// Tables in the order they first appear in the input.
    pub tables: Vec<Table>,
}

impl Ruleset {
    /// The table `name` of `family`, if the input has it.
    pub fn table(&self, family: Family, name: TableName) -> Option<&Table> {
        self.tables.iter().find(|t| t.family == family && t.name == name)
    }

    /// The table's id, creating an empty table with its built-in chains if needed.
    pub fn table_id_or_insert(&mut self, family: Family, name: TableName) -> TableId {
        if let Some(i) = self.tables.iter().position(|t| t.family == family && t.name == name) {
            return TableId(i as u32);
        }
        self.tables.push(Table::new(family, name));
        TableId(self.tables.len() as u32 - 1)
    }

    /// Total number of rules.
    pub fn rule_count(&self) -> usize {
        self.tables.iter().flat_map(|t| &t.chains).map(|c| c.rules.len()).sum()
    }
}

impl std::ops::Index<TableId> for Ruleset {
    type Output = Table;
    fn index(&self, id: TableId) -> &Table {
        &self.tables[id.0 as usize]
    }
}

impl std::ops::IndexMut<TableId> for Ruleset {
    fn index_mut(&mut self, id: TableId) -> &mut Table {
        &mut self.tables[id.0 as usize]
    }
}

/// One table of one family: its built-in chains first (in hook order), then user chains in
/// the order they were created. Chains are found by name through an index, so add, remove and
/// rename them with the methods here.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    /// IPv4 or IPv6.
    pub family: Family,
    /// Which table.
    pub name: TableName,
    /// Built-in chains first, then user chains.
    chains: Vec<Chain>,
    /// The chains' ids, hashed by name (4 bytes a chain, so that the index of a large table
    /// stays in cache); a lookup compares the names themselves, so equal hashes need no care.
    #[serde(skip)]
    index: HashTable<ChainId>,
}

/// Tables are equal when their chains are (the index follows from them).
impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        self.family == other.family && self.name == other.name && self.chains == other.chains
    }
}

fn name_hash(name: &str) -> u64 {
    let mut h = NameHasher::default();
    h.write(name.as_bytes());
    // Mix the high bits down: the table indexes by the low ones (and tags by the top seven).
    let x = h.finish();
    x ^ (x >> 29) ^ (x >> 47)
}

/// A fast non-cryptographic hasher for chain names (the FxHash scheme): 8 bytes at a time.
#[derive(Clone, Copy, Debug, Default)]
pub struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Table {
    /// An empty table with its built-in chains, policy ACCEPT.
    pub fn new(family: Family, name: TableName) -> Table {
        let mut table = Table { family, name, chains: Vec::new(), index: HashTable::new() };
        for &h in name.hooks() {
            table.push_chain(Chain::builtin(h));
        }
        table
    }

    /// The chains, built-in first; a chain's position is its [`ChainId`].
    pub fn chains(&self) -> &[Chain] {
        &self.chains
    }

    /// Mutable access to the chains' rules, policies and counters (not their names).
    pub fn chains_mut(&mut self) -> impl Iterator<Item = &mut Chain> {
        self.chains.iter_mut()
    }

    /// The chain called `name`.
    pub fn chain_id(&self, name: &str) -> Option<ChainId> {
        self.index.find(name_hash(name), |id| &*self.chains[id.0 as usize].name == name).copied()
    }

    fn push_chain(&mut self, chain: Chain) -> ChainId {
        let id = ChainId(self.chains.len() as u32);
        self.chains.push(chain);
        self.insert_index(id);
        id
    }

    fn insert_index(&mut self, id: ChainId) {
        let chains = &self.chains;
        self.index.insert_unique(name_hash(&chains[id.0 as usize].name), id, |id| name_hash(&chains[id.0 as usize].name));
    }

    fn rebuild_index(&mut self) {
        self.index.clear();
        for i in 0..self.chains.len() {
            self.insert_index(ChainId(i as u32));
        }
    }

    /// The built-in chain of `hook`, if this table has one.
    pub fn builtin(&self, hook: Hook) -> Option<ChainId> {
        self.chains.iter().position(|c| c.hook == Some(hook)).map(|i| ChainId(i as u32))
    }

    /// User chains' ids, in creation order.
    pub fn user_chains(&self) -> impl Iterator<Item = ChainId> + '_ {
        self.chains.iter().enumerate().filter(|(_, c)| c.hook.is_none()).map(|(i, _)| ChainId(i as u32))
    }

    /// Adds an empty user chain (the caller checks that the name is free).
    pub fn add_user_chain(&mut self, name: &str, decl: Option<Span>) -> ChainId {
        self.push_chain(Chain::user(name, decl))
    }

    /// Renames a user chain (the caller checks that the new name is free).
    pub fn rename_chain(&mut self, id: ChainId, new: &str) {
        self.chains[id.0 as usize].name = new.into();
        self.rebuild_index();
    }

    /// Removes a chain nothing jumps to; later chains' ids (and jumps to them) shift down by one.
    pub fn remove_chain(&mut self, id: ChainId) {
        self.chains.remove(id.0 as usize);
        for c in &mut self.chains {
            for r in &mut c.rules {
                if let Target::Jump(t) | Target::Goto(t) = &mut r.target
                    && t.0 > id.0
                {
                    t.0 -= 1;
                }
            }
        }
        self.rebuild_index();
    }
}

impl std::ops::Index<ChainId> for Table {
    type Output = Chain;
    fn index(&self, id: ChainId) -> &Chain {
        &self.chains[id.0 as usize]
    }
}

impl std::ops::IndexMut<ChainId> for Table {
    fn index_mut(&mut self, id: ChainId) -> &mut Chain {
        &mut self.chains[id.0 as usize]
    }
}

/// A chain: built-in (with a policy) or user-defined.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chain {
    /// The chain's name.
    pub name: Box<str>,
    /// The hook of a built-in chain; `None` for a user chain.
    pub hook: Option<Hook>,
    /// Policy of a built-in chain.
    pub policy: Policy,
    /// Policy counters of a built-in chain.
    pub counters: Counters,
    /// The rules, in order.
    pub rules: Vec<Rule>,
    /// Where the chain was declared (`:NAME ...` or `-N NAME`), if it was.
    pub decl: Option<Span>,
}

impl Chain {
    /// A built-in chain with policy ACCEPT and no rules.
    pub fn builtin(hook: Hook) -> Chain {
        Chain { name: hook.chain_name().into(), hook: Some(hook), policy: Policy::Accept, counters: Counters::default(), rules: Vec::new(), decl: None }
    }

    /// An empty user chain.
    pub fn user(name: &str, decl: Option<Span>) -> Chain {
        Chain { name: name.into(), hook: None, policy: Policy::Accept, counters: Counters::default(), rules: Vec::new(), decl }
    }
}

/// One rule (`struct ipt_entry`): the base match, extension matches, and a target.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    /// Where the rule's text is (the whole line without its line ending).
    pub span: Span,
    /// Counters given with `[pkts:bytes]` or `-c`.
    pub counters: Option<Box<Counters>>,
    /// `-p`.
    pub proto: Option<Neg<Proto>>,
    /// `-s`.
    pub src: Option<Neg<AddrMask>>,
    /// `-d`.
    pub dst: Option<Neg<AddrMask>>,
    /// `-i` and `-o`, boxed because most rules have neither.
    pub ifaces: Option<Box<Ifaces>>,
    /// `-f` (`Some(false)`) or `! -f` (`Some(true)`); IPv4 only.
    pub fragment: Option<bool>,
    /// `-m` matches, in order (implicit protocol matches included where iptables loads them).
    pub matches: Box<[Match]>,
    /// `-j` / `-g`.
    pub target: Target,
}

impl Rule {
    /// A rule that matches everything and has no target.
    pub fn new(span: Span) -> Rule {
        Rule { span, counters: None, proto: None, src: None, dst: None, ifaces: None, fragment: None, matches: Box::default(), target: Target::None }
    }

    /// `-i`, if given.
    pub fn in_iface(&self) -> Option<&Neg<Iface>> {
        self.ifaces.as_ref().and_then(|i| i.input.as_ref())
    }

    /// `-o`, if given.
    pub fn out_iface(&self) -> Option<&Neg<Iface>> {
        self.ifaces.as_ref().and_then(|i| i.output.as_ref())
    }
}

/// A rule's interface matches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ifaces {
    /// `-i`.
    pub input: Option<Neg<Iface>>,
    /// `-o`.
    pub output: Option<Neg<Iface>>,
}

/// What a rule does when it matches.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Target {
    /// No `-j`: the rule only counts.
    None,
    /// `-j ACCEPT`.
    Accept,
    /// `-j DROP`.
    Drop,
    /// `-j RETURN`.
    Return,
    /// `-j QUEUE`.
    Queue,
    /// `-j CHAIN`: push and enter a user chain.
    Jump(ChainId),
    /// `-g CHAIN`: enter a user chain without pushing.
    Goto(ChainId),
    /// A target extension (`REDIRECT`, `MARK`, ...).
    Ext(TargetExt),
    /// A rule that could not be read (only with `--lenient`): the simulator treats it as undecidable.
    Unreadable(Box<Unreadable>),
}

/// The text of a rule that could not be read, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// The rule's arguments as written (after the chain name).
    pub text: Box<str>,
    /// The first problem found.
    pub reason: Box<str>,
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    /// Rules are the bulk of a large dump's memory (320,000 of them at kube-proxy scale): rare
    /// or large parts are boxed so that a rule stays small.
    #[test]
    fn rules_stay_small() {
        assert!(size_of::<super::Rule>() <= 120, "Rule is {} bytes", size_of::<super::Rule>());
        assert!(size_of::<crate::matches::Match>() <= 32, "Match is {} bytes", size_of::<crate::matches::Match>());
        assert!(size_of::<super::Target>() <= 24, "Target is {} bytes", size_of::<super::Target>());
    }

    #[test]
    fn chain_index_follows_adds_renames_and_removals() {
        use super::{ChainId, Family, Rule, Table, TableName, Target};
        let mut t = Table::new(Family::V4, TableName::Filter);
        assert_eq!(t.chain_id("FORWARD"), Some(ChainId(1)));
        let a = t.add_user_chain("A", None);
        let b = t.add_user_chain("B", None);
        let c = t.add_user_chain("C", None);
        let mut r = Rule::new(crate::diag::Span::default());
        r.target = Target::Jump(c);
        t[a].rules.push(r);
        t.remove_chain(b);
        assert_eq!(t.chain_id("B"), None);
        assert_eq!(t.chain_id("C"), Some(ChainId(4)));
        assert_eq!(t[a].rules[0].target, Target::Jump(ChainId(4)));
        t.rename_chain(ChainId(4), "D");
        assert_eq!((t.chain_id("C"), t.chain_id("D")), (None, Some(ChainId(4))));
        assert_eq!(t.chain_id("INPUT"), Some(ChainId(0)));
    }

    #[test]
    fn known_targets_are_sorted_for_binary_search() {
        assert!(crate::targets::KNOWN.windows(2).all(|w| w[0] < w[1]));
    }
}
