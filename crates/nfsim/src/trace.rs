//! The record of a simulation, in the vocabulary of the kernel's TRACE target
//! (`nf_log_trace`: `TRACE: table:chain:rule|return|policy:N`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::xt::{Hook, TableName};

/// What kind of entry a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// A rule matched.
    Rule,
    /// The end of a user chain was reached: back to the caller.
    Return,
    /// The end of a built-in chain (or a RETURN in it): its policy applies.
    Policy,
}

/// One traced step.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Step {
    /// The host the step happened on (shared: a trace names the same few hosts and chains over
    /// and over).
    #[serde(skip_serializing_if = "no_name")]
    pub host: Arc<str>,
    /// The hook.
    pub hook: Hook,
    /// The table.
    pub table: TableName,
    /// The chain.
    pub chain: Arc<str>,
    /// Rule, return or policy.
    pub kind: StepKind,
    /// 1-based position in the chain (for return/policy: the number of rules plus one).
    pub rule: u32,
}

fn no_name(name: &Arc<str>) -> bool {
    name.is_empty()
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            StepKind::Rule => "rule",
            StepKind::Return => "return",
            StepKind::Policy => "policy",
        };
        write!(f, "TRACE: {}:{}:{}:{}", self.table, self.chain, kind, self.rule)
    }
}

/// A rule, located.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RuleRef {
    /// The table.
    pub table: TableName,
    /// The chain.
    pub chain: Arc<str>,
    /// 1-based position in the chain.
    pub rule: u32,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.table, self.chain, self.rule)
    }
}

/// The final verdict on the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// The packet made it through (delivered locally or sent out).
    Accept,
    /// Dropped (by a rule, a policy, or the stack).
    Drop,
    /// Rejected by a REJECT rule.
    Reject,
    /// Handed to a userspace queue (`QUEUE`, `NFQUEUE`).
    Queue,
}

/// Where the packet ended up.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivered {
    /// Received by a local socket.
    Local {
        /// The local address it was received on.
        addr: IpAddr,
        /// The local port.
        port: u16,
        /// The receiving process, if a socket was found.
        #[serde(skip_serializing_if = "Option::is_none")]
        process: Option<String>,
    },
    /// Sent out of an interface.
    Egress {
        /// The interface.
        iface: String,
        /// The next hop.
        next_hop: IpAddr,
    },
}
