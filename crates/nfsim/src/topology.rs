//! A scenario: several hosts on a routed L3 network, the processes on them and what they do with
//! a connection (applications, Envoy-style sidecar proxies), services with virtual IPs, and the
//! request chains (flows) to follow hop by hop.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::host::{Host, Interface, PolicyRule, Route, Socket, Sysctls, TextError};
use crate::packet::Owner;
use crate::ruleset::{Ruleset, parse};

/// What a process does with an accepted connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "role")]
pub enum Role {
    /// An application: the end of a call; in a flow it makes the next call.
    App,
    /// An Envoy-style sidecar. On `outbound_port` it reads the original destination and
    /// connects there itself (to a service's first endpoint for a virtual IP); on `inbound_port`
    /// it connects from `127.0.0.6` to the original destination port on the pod's address.
    Sidecar {
        /// The outbound listener (Istio: 15001).
        outbound_port: u16,
        /// The inbound listener (Istio: 15006).
        inbound_port: u16,
    },
}

/// A process on a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Name (`envoy`, `fortio`).
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// TCP ports it listens on (any address).
    #[serde(default)]
    pub listen: Vec<u16>,
    /// What it does with a connection.
    #[serde(flatten)]
    pub role: Role,
}

/// A host of the scenario.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpec {
    /// Name (`client`, `fortio-server`).
    pub name: String,
    /// Interfaces other than `lo`.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Default gateway.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Extra routes of the main table.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Further routing tables.
    #[serde(default)]
    pub tables: std::collections::BTreeMap<u32, Vec<Route>>,
    /// Policy-routing rules.
    #[serde(default)]
    pub policy: Vec<PolicyRule>,
    /// Sysctls.
    #[serde(default)]
    pub sysctls: Sysctls,
    /// The rule set, as iptables-save text.
    #[serde(default)]
    pub rules: String,
    /// Or a file holding it, relative to the scenario file (read by [`Scenario::read_rule_files`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<String>,
    /// Processes.
    #[serde(default)]
    pub processes: Vec<Process>,
}

/// A service: a virtual IP and ports in front of endpoint hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Name, used in flows (`fortio-server`).
    pub name: String,
    /// The virtual IP.
    pub vip: IpAddr,
    /// Ports.
    pub ports: Vec<u16>,
    /// The hosts behind it.
    pub endpoints: Vec<String>,
}

/// A request chain: `from` calls `calls[0]`, whose application calls `calls[1]`, and so on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Name.
    pub name: String,
    /// The originating host.
    pub host: String,
    /// The originating process.
    pub process: String,
    /// Calls, each `SERVICE:PORT` (or `ADDR:PORT`).
    pub calls: Vec<String>,
}

/// A scenario.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// Hosts.
    pub hosts: Vec<HostSpec>,
    /// Services.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Flows.
    #[serde(default)]
    pub flows: Vec<Flow>,
}

/// A host ready for simulation.
#[derive(Clone, Debug)]
pub struct LoadedHost {
    /// The host (interfaces, routes, sockets).
    pub host: Host,
    /// Its rules.
    pub ruleset: Ruleset,
    /// Its processes.
    pub processes: Vec<Process>,
}

impl Scenario {
    /// Reads a scenario from YAML or JSON text; errors name the line and column.
    pub fn from_text(text: &str) -> Result<Scenario, TextError> {
        TextError::read(text)
    }

    /// Fills in the rules of hosts that name a `rules_file`, through `read` (which resolves the
    /// name relative to the scenario file; the core does no I/O itself).
    pub fn read_rule_files(&mut self, read: impl Fn(&str) -> Result<String, String>) -> Result<(), LoadError> {
        for h in &mut self.hosts {
            if let Some(f) = &h.rules_file {
                if !h.rules.is_empty() {
                    return Err(LoadError::RulesTwice { host: h.name.clone() });
                }
                h.rules = read(f).map_err(|why| LoadError::RulesFile { host: h.name.clone(), file: f.clone(), why })?;
            }
        }
        Ok(())
    }

    /// Builds every host, parsing its rules; an error names the host and the first rule problem.
    pub fn load(&self) -> Result<Vec<LoadedHost>, LoadError> {
        self.hosts
            .iter()
            .map(|h| {
                let parsed = parse(&h.rules);
                if let Some(e) = parsed.errors().next() {
                    return Err(LoadError::Rules { host: h.name.clone(), line: e.line, message: e.message.clone() });
                }
                let sockets = h
                    .processes
                    .iter()
                    .flat_map(|p| {
                        p.listen.iter().flat_map(move |&port| {
                            let owner = Owner { uid: p.uid, gid: p.gid, groups: Vec::new() };
                            [IpAddr::from([0, 0, 0, 0]), IpAddr::from([0u16; 8])].map(|addr| Socket {
                                proto: 6,
                                addr,
                                port,
                                process: p.name.clone(),
                                owner: owner.clone(),
                                transparent: matches!(p.role, Role::Sidecar { .. }),
                            })
                        })
                    })
                    .collect();
                let host = Host {
                    name: h.name.clone(),
                    interfaces: h.interfaces.clone(),
                    gateway: h.gateway,
                    routes: h.routes.clone(),
                    tables: h.tables.clone(),
                    policy: h.policy.clone(),
                    sockets,
                    sysctls: h.sysctls.clone(),
                    ipsets: Default::default(),
                };
                Ok(LoadedHost { host, ruleset: parsed.ruleset, processes: h.processes.clone() })
            })
            .collect()
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The service whose virtual IP is `vip`.
    pub fn service_by_vip(&self, vip: IpAddr) -> Option<&Service> {
        self.services.iter().find(|s| s.vip == vip)
    }

    /// The primary address of host `name`.
    pub fn host_addr(&self, name: &str) -> Option<IpAddr> {
        self.hosts.iter().find(|h| h.name == name)?.interfaces.iter().flat_map(|i| &i.addrs).map(IpNet::addr).next()
    }
}

/// Why a scenario's hosts cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// A host has both `rules` and `rules_file`.
    RulesTwice {
        /// The host.
        host: String,
    },
    /// A host's `rules_file` cannot be read.
    RulesFile {
        /// The host.
        host: String,
        /// The file as named.
        file: String,
        /// Why.
        why: String,
    },
    /// A host's rules have an error.
    Rules {
        /// The host.
        host: String,
        /// The line of the first error.
        line: u32,
        /// The error.
        message: String,
    },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::RulesTwice { host } => write!(f, "host `{host}` has both `rules` and `rules_file`"),
            LoadError::RulesFile { host, file, why } => write!(f, "host `{host}`: {file}: {why}"),
            LoadError::Rules { host, line, message } => write!(f, "host `{host}`: rules line {line}: {message}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<LoadError> for String {
    fn from(e: LoadError) -> String {
        e.to_string()
    }
}

/// The scenarios built into nfsim: `(name, YAML text)`.
pub const BUILTINS: &[(&str, &str)] = &[
    ("istio-fortio", include_str!("../scenarios/istio-fortio.yaml")),
    ("istio-fortio-loop", include_str!("../scenarios/istio-fortio-loop.yaml")),
    ("istio-fortio-tproxy", include_str!("../scenarios/istio-fortio-tproxy.yaml")),
];

/// The built-in scenario called `name`, as YAML text.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
