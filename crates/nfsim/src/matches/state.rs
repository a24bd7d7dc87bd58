//! `-m state`: the connection-tracking state of a packet (`xt_state.c`; in iptables 1.8.9 an
//! alias of the conntrack match, `libxt_conntrack.c`).

use serde::Serialize;

use super::conntrack::{fmt_states, parse_states};
use crate::classes::cond::{Cond, CondCtx, Fields, MatchCond, states_of, tests};
use crate::classes::region::Test;
use crate::matches::Eval;
use crate::xt::ext::{Args, Ctx, Extension, OptResult, once, save_invert};

/// The state match: `[!] --state LIST`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct State {
    /// `--state`: bits of [`super::conntrack::state_bits`] (no `SNAT`/`DNAT`), with its `!`.
    pub states: Option<(u16, bool)>,
}

impl Extension for State {
    const OPTIONS: &'static [&'static str] = &["state"];

    fn new(_ctx: &Ctx) -> Self {
        State::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        match opt {
            "state" => {
                once(&self.states, opt)?;
                self.states = Some((parse_states(args.value()?, false, opt)?, invert));
                Ok(())
            }
            _ => Err(format!("unknown option `--{opt}`")),
        }
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.states.is_none() {
            return Err("the state match requires `--state`".to_string());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some((mask, inv)) = self.states {
            save_invert(out, inv);
            out.push_str(" --state ");
            fmt_states(out, mask);
        }
    }
}

impl crate::matches::Evaluate for State {
    /// `-m state` is loaded as the conntrack match with only `--ctstate` (and `state_mt` of
    /// revision 0 computes the same): the packet's state bit (INVALID without a conntrack entry,
    /// UNTRACKED for `-j NOTRACK` / `-j CT --notrack`) must be in the list, `!` negating.
    fn eval(&self, pkt: &crate::packet::Packet, _cx: &crate::matches::EvalCtx<'_>) -> crate::matches::Eval {
        use crate::matches::Eval;
        let Some((mask, inv)) = self.states else { return Eval::Match };
        let (bit, _) = super::conntrack::state_bit(pkt.ct_state);
        Eval::from_bool(mask & bit != 0).invert(inv)
    }
}

impl Cond for State {
    const READS: Fields = Fields::STATE;

    /// `state_mt`: the listed states, flipped by `!`.
    fn cond(&self, cx: &CondCtx<'_>) -> MatchCond {
        match self.states {
            None => MatchCond::Eval(Eval::Match),
            Some((mask, inv)) => tests(cx, vec![Test { state: Some(states_of(mask, inv)), ..Test::default() }]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xt::ext::check_alone;
    use crate::xt::{Family, TableName};

    fn check(line: &str) -> Result<String, String> {
        let ctx = Ctx { family: Family::V4, table: TableName::Filter, proto: None };
        check_alone::<State>(ctx, line)
    }

    #[test]
    fn libxt_state_t() {
        assert_eq!(check("--state INVALID").unwrap(), " --state INVALID");
        assert_eq!(check("--state NEW,RELATED").unwrap(), " --state NEW,RELATED");
        assert_eq!(check("--state UNTRACKED").unwrap(), " --state UNTRACKED");
        // `-m state wrong`: a bare word is no option.
        assert!(check("wrong").is_err());
        assert!(check("").is_err());
    }

    /// Save forms printed by the real iptables 1.8.9 (nf_tables).
    #[test]
    fn iptables_1_8_9_behaviour() {
        assert_eq!(check("--state NEW").unwrap(), " --state NEW");
        assert_eq!(check("--state NEW,ESTABLISHED,RELATED,INVALID,UNTRACKED").unwrap(), " --state INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED");
        assert_eq!(check("! --state NEW").unwrap(), " ! --state NEW");
        assert_eq!(check("--state new").unwrap(), " --state NEW");
        assert_eq!(check("--state N").unwrap(), " --state NEW");
        assert_eq!(check("--state e,r").unwrap(), " --state RELATED,ESTABLISHED");
        assert!(check("--state SNAT").is_err());
        assert!(check("--state NEW,").is_err());
        assert!(check("--state ,NEW").is_err());
        assert!(check("--state NEWX").is_err());
        assert!(check("--state NEW --state ESTABLISHED").is_err());
        assert_eq!(check("! --state INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED").unwrap(), " ! --state INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED");
    }
}

#[cfg(test)]
mod eval_tests {
    use super::*;
    use crate::host::Host;
    use crate::matches::{Eval, EvalCtx, Evaluate};
    use crate::packet::{CtState, Packet};
    use crate::xt::ext::parse_alone;
    use crate::xt::{Family, Hook, TableName};

    fn eval(line: &str, state: CtState) -> Eval {
        let m: State = parse_alone(Ctx { family: Family::V4, table: TableName::Filter, proto: None }, line);
        let host = Host::new("h");
        let cx = EvalCtx { host: &host, hook: Hook::Input, table: TableName::Filter, family: Family::V4, conn: None };
        let mut pkt = Packet::new(6, "10.0.0.1".parse().unwrap(), 40000, "10.0.0.2".parse().unwrap(), 80);
        pkt.ct_state = state;
        m.eval(&pkt, &cx)
    }

    #[test]
    fn state_bits() {
        use CtState::*;
        for (line, state, expected) in [
            ("--state NEW", New, Eval::Match),
            ("--state NEW", Established, Eval::NoMatch),
            ("--state ESTABLISHED,RELATED", Related, Eval::Match),
            ("--state ESTABLISHED,RELATED", Established, Eval::Match),
            ("--state ESTABLISHED,RELATED", New, Eval::NoMatch),
            ("--state ESTABLISHED,RELATED", Invalid, Eval::NoMatch),
            ("--state INVALID", Invalid, Eval::Match),
            ("--state INVALID", Untracked, Eval::NoMatch),
            ("--state UNTRACKED", Untracked, Eval::Match),
            ("--state NEW", Untracked, Eval::NoMatch),
            ("! --state NEW", Untracked, Eval::Match),
            ("! --state INVALID", Invalid, Eval::NoMatch),
            ("! --state INVALID", New, Eval::Match),
            ("! --state NEW,ESTABLISHED,RELATED,INVALID,UNTRACKED", Established, Eval::NoMatch),
        ] {
            assert_eq!(eval(line, state), expected, "{line} on {state:?}");
        }
    }
}

#[cfg(test)]
mod cond_tests {
    use proptest::prelude::*;

    use super::State;
    use crate::classes::cond::test_util::{run, state_mask};
    use crate::matches::Match;

    #[test]
    fn state_agrees() {
        run("state", 300, 300, |_| {
            proptest::option::weighted(0.95, (state_mask(false), any::<bool>())).prop_map(|states| Match::State(State { states })).boxed()
        });
    }
}
