// HELPER: STOP AND READ /work/HELPERS-READ-FIRST.md BEFORE ANYTHING ELSE (your instructions: private copy, netns-only testing, what to deliver). Delete this line in your delivered file.
//! `-m mac` (placeholder).

use serde::Serialize;

use crate::ruleset::ext::{Args, Ctx, Extension, OptResult};

/// Placeholder until the extension is typed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mac {}

impl Extension for Mac {
    const OPTIONS: &'static [&'static str] = &[];

    fn new(_ctx: &Ctx) -> Self {
        Self::default()
    }

    fn parse(&mut self, opt: &str, _invert: bool, _args: &mut Args<'_, '_>) -> OptResult {
        Err(format!("unknown option `--{opt}`"))
    }

    fn save(&self, _ctx: &Ctx, _out: &mut String) {}
}
