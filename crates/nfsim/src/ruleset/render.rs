//! Placeholder.
use super::Ruleset;
/// Options.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {}
/// Renders.
pub fn render(_r: &Ruleset, _o: &RenderOptions) -> String {
    String::new()
}
