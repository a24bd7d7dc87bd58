//! The x_tables layer under both the rule model (`ruleset`) and the extensions (`matches`,
//! `targets`): the family, table and hook names a rule is placed by, `!` inversion, protocol
//! numbers, and what the extensions are built from: the [`ext::Extension`] trait and its argument
//! cursor, the tokenizer, option values, addresses and interfaces, protocol and service names.

pub mod addr;
pub mod ext;
pub mod services;
pub mod token;
pub mod value;

use std::fmt;

use serde::Serialize;

/// IPv4 (`iptables`) or IPv6 (`ip6tables`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Family {
    /// `iptables`, `AF_INET`.
    V4,
    /// `ip6tables`, `AF_INET6`.
    V6,
}

impl Family {
    /// The save command of this family (`iptables-save` / `ip6tables-save`).
    pub fn save_command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }
}

/// The five x_tables tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableName {
    /// `raw`: before connection tracking.
    Raw,
    /// `mangle`: packet alteration.
    Mangle,
    /// `nat`: first packet of a connection only.
    Nat,
    /// `filter`: the default table.
    Filter,
    /// `security`: SELinux marks.
    Security,
}

impl TableName {
    /// All tables, in the order `iptables-nft-save` prints them.
    pub const ALL: [TableName; 5] = [TableName::Raw, TableName::Mangle, TableName::Nat, TableName::Filter, TableName::Security];

    /// Parses a table name exactly as the kernel spells it.
    pub fn from_name(name: &str) -> Option<TableName> {
        Some(match name {
            "raw" => TableName::Raw,
            "mangle" => TableName::Mangle,
            "nat" => TableName::Nat,
            "filter" => TableName::Filter,
            "security" => TableName::Security,
            _ => return None,
        })
    }

    /// The table's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TableName::Raw => "raw",
            TableName::Mangle => "mangle",
            TableName::Nat => "nat",
            TableName::Filter => "filter",
            TableName::Security => "security",
        }
    }

    /// The hooks this table registers, i.e. its built-in chains, in the order iptables-save prints them.
    pub fn hooks(self) -> &'static [Hook] {
        use Hook::*;
        match self {
            TableName::Raw => &[Prerouting, Output],
            TableName::Mangle => &[Prerouting, Input, Forward, Output, Postrouting],
            TableName::Nat => &[Prerouting, Input, Output, Postrouting],
            TableName::Filter | TableName::Security => &[Input, Forward, Output],
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The netfilter hooks (`enum nf_inet_hooks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Hook {
    /// `NF_INET_PRE_ROUTING`.
    Prerouting,
    /// `NF_INET_LOCAL_IN`.
    Input,
    /// `NF_INET_FORWARD`.
    Forward,
    /// `NF_INET_LOCAL_OUT`.
    Output,
    /// `NF_INET_POST_ROUTING`.
    Postrouting,
}

impl Hook {
    /// All hooks in kernel order.
    pub const ALL: [Hook; 5] = [Hook::Prerouting, Hook::Input, Hook::Forward, Hook::Output, Hook::Postrouting];

    /// The built-in chain name of this hook.
    pub fn chain_name(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }

    /// The hook whose built-in chain is called `name`.
    pub fn from_chain_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.chain_name() == name)
    }

    /// This hook as a one-bit mask.
    pub fn bit(self) -> HookMask {
        HookMask(1 << self as u8)
    }
}

/// A set of hooks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HookMask(pub u8);

impl HookMask {
    /// Every hook.
    pub const ALL: HookMask = HookMask(0b11111);

    /// The mask holding exactly `hooks`.
    pub fn of(hooks: &[Hook]) -> HookMask {
        HookMask(hooks.iter().fold(0, |m, h| m | h.bit().0))
    }

    /// True if `hook` is in the set.
    pub fn contains(self, hook: Hook) -> bool {
        self.0 & hook.bit().0 != 0
    }

    /// The hooks in the set, in kernel order.
    pub fn iter(self) -> impl Iterator<Item = Hook> {
        Hook::ALL.into_iter().filter(move |h| self.contains(*h))
    }
}

/// A value with the `!` of iptables' inversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Neg<T> {
    /// The value.
    pub value: T,
    /// True when written `! -x value`.
    pub negated: bool,
}

impl<T> Neg<T> {
    /// A value, negated or not.
    pub fn new(value: T, negated: bool) -> Neg<T> {
        Neg { value, negated }
    }
}

/// A layer-4 protocol number as `-p` takes it (`0` is `all` and never stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Proto(pub u8);

impl Proto {
    /// TCP.
    pub const TCP: Proto = Proto(6);
    /// UDP.
    pub const UDP: Proto = Proto(17);
    /// ICMP.
    pub const ICMP: Proto = Proto(1);
    /// ICMPv6.
    pub const ICMPV6: Proto = Proto(58);
    /// SCTP.
    pub const SCTP: Proto = Proto(132);
    /// DCCP.
    pub const DCCP: Proto = Proto(33);
}
