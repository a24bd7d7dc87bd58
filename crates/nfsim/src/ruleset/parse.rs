//! Placeholder.
use super::Ruleset;
use crate::diag::Diagnostic;

/// Input format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// iptables-save / iptables-restore text.
    Restore,
    /// One iptables command per line.
    Commands,
}

/// Options.
#[derive(Clone, Debug, Default)]
pub struct ParseOptions {
    /// Forced format.
    pub format: Option<Format>,
}

/// Result.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    /// Model.
    pub ruleset: Ruleset,
    /// Problems.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses.
pub fn parse(text: &str) -> Parsed {
    parse_with(text, &ParseOptions::default())
}

/// Parses with options.
pub fn parse_with(_text: &str, _opts: &ParseOptions) -> Parsed {
    Parsed::default()
}
