//! `-m comment`: a note attached to a rule; always matches (`xt_comment.c`).

use serde::Serialize;

use crate::ruleset::ext::{Args, Ctx, Extension, OptResult, no_invert};
use crate::ruleset::value::save_string;

/// The comment match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// The text (at most 255 bytes).
    pub text: Option<Box<str>>,
}

impl Extension for Comment {
    const OPTIONS: &'static [&'static str] = &["comment"];

    fn new(_ctx: &Ctx) -> Self {
        Comment::default()
    }

    fn parse(&mut self, opt: &str, invert: bool, args: &mut Args<'_, '_>) -> OptResult {
        no_invert(invert, opt)?;
        let v = args.value()?;
        if v.len() > 255 {
            return Err(format!(
                "comment is too long ({} bytes, at most 255)",
                v.len()
            ));
        }
        self.text = Some(v.into());
        Ok(())
    }

    fn finish(&mut self, _ctx: &Ctx) -> OptResult {
        if self.text.is_none() {
            return Err("the comment match requires `--comment TEXT`".into());
        }
        Ok(())
    }

    fn save(&self, _ctx: &Ctx, out: &mut String) {
        if let Some(t) = &self.text {
            out.push_str(" --comment");
            save_string(out, t);
        }
    }
}
