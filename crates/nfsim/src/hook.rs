//! The netfilter hooks and which tables run at each, in priority order (`nf_hook_ops`
//! priorities: raw -300, conntrack -200, mangle -150, DNAT -100, filter 0, security 50 (legacy)
//! or 150 (nft), SNAT 100).

use serde::{Deserialize, Serialize};

use crate::xt::{Hook, TableName};

/// Which iptables backend loaded the rules; they order security and nat INPUT differently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// iptables-nft (nf_tables): security at priority 150, after nat INPUT.
    #[default]
    Nft,
    /// iptables-legacy (x_tables): security at priority 50, before nat INPUT.
    Legacy,
}

/// The tables traversed at `hook`, in order.
pub fn tables_at(hook: Hook, backend: Backend) -> &'static [TableName] {
    use TableName::*;
    match (hook, backend) {
        (Hook::Prerouting, _) => &[Raw, Mangle, Nat],
        (Hook::Input, Backend::Nft) => &[Mangle, Filter, Nat, Security],
        (Hook::Input, Backend::Legacy) => &[Mangle, Filter, Security, Nat],
        (Hook::Forward, _) => &[Mangle, Filter, Security],
        (Hook::Output, _) => &[Raw, Mangle, Nat, Filter, Security],
        (Hook::Postrouting, _) => &[Mangle, Nat],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_and_nat_input_swap_between_backends() {
        assert_eq!(tables_at(Hook::Input, Backend::Nft), [TableName::Mangle, TableName::Filter, TableName::Nat, TableName::Security]);
        assert_eq!(tables_at(Hook::Input, Backend::Legacy), [TableName::Mangle, TableName::Filter, TableName::Security, TableName::Nat]);
    }
}
