//! `-j AUDIT --type accept|drop|reject`: records the packet in the audit log (`xt_AUDIT.c`,
//! `libxt_AUDIT.c`).
//!
//! `--type` is required; its value is read case-insensitively and saved in lower case. The
//! kernel accepts the target in every table and hook.

use serde::Serialize;

use super::effect::Effect;
use super::mark::Given;
use crate::xt::ext::{Args, Ctx, Extension, OptResult};

/// The verdict named in the audit record (`XT_AUDIT_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditType {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `reject`.
    Reject,
}

impl AuditType {
    /// The name iptables prints.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditType::Accept => "accept",
            AuditType::Drop => "drop",
            AuditType::Reject => "reject",
        }
    }
}

/// The AUDIT target (`struct xt_audit_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// `--type` (always set in a finished target).
    pub kind: Option<AuditType>,
    #[serde(skip)]
    given: Given,
}

impl Extension for Audit {
    const OPTIONS: &'static [&'static str] = &["type"];

    fn new(_ctx: &Ctx) -> Self {
        Audit::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        self.given.record(Self::OPTIONS, opt, invert, &[])?;
        let v = args.value()?;
        let kind = [AuditType::Accept, AuditType::Drop, AuditType::Reject]
            .into_iter()
            .find(|k| v.eq_ignore_ascii_case(k.as_str()))
            .ok_or_else(|| format!("bad audit type `{v}` (expected `accept`, `drop` or `reject`)"))?;
        self.kind = Some(kind);
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.kind.is_none() {
            return Err("the AUDIT target requires `--type accept|drop|reject`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(k) = self.kind {
            out.push_str(" --type ");
            out.push_str(k.as_str());
        }
    }
}

/// The target writes an audit record and continues.
impl Effect for Audit {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<Audit>(ctx, line)
    }

    #[test]
    fn type_is_required_and_saved_in_lower_case() {
        assert_eq!(check("--type accept").unwrap(), " --type accept");
        assert_eq!(check("--type drop").unwrap(), " --type drop");
        assert_eq!(check("--type reject").unwrap(), " --type reject");
        assert_eq!(check("--type ACCEPT").unwrap(), " --type accept");
        for bad in ["", "--type wrong", "--type acc", "--type accept --type drop", "! --type drop"] {
            assert!(check(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
