//! Diagnostics: located problems found while reading or checking a rule set, and their rendering
//! with the source line and a caret, in the style of rustc.

use std::fmt::{self, Write as _};

use serde::Serialize;

/// A byte range in the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// A span from `start` to `end` (byte offsets; saturated to `u32`).
    pub fn new(start: usize, end: usize) -> Span {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Span { start: clamp(start), end: clamp(end.max(start)) }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// The byte range, for slicing.
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// iptables-restore (or the kernel, at load time) would refuse the input.
    Error,
    /// The input loads, but something in it is silently lost or suspicious.
    Warning,
}

/// When the problem would show up on a real system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// While `iptables-restore` reads the line (also with `--test`).
    Parse,
    /// When the kernel checks the table on commit (`iptables-restore --test` does not see it).
    Load,
}

/// One problem, located in the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Parse-time or load-time.
    pub stage: Stage,
    /// Where the problem is.
    pub span: Span,
    /// 1-based line of `span.start`.
    pub line: u32,
    /// What is wrong, naming what was expected.
    pub message: String,
    /// An extra hint (`did you mean ...?`).
    pub help: Option<String>,
}

impl Diagnostic {
    /// A parse-time error.
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Error, stage: Stage::Parse, span, line: 0, message: message.into(), help: None }
    }

    /// A warning.
    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(span, message) }
    }

    /// Marks the problem as one the kernel finds when the table is loaded.
    pub fn at_load(mut self) -> Diagnostic {
        self.stage = Stage::Load;
        self
    }

    /// Adds a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic with its source line and a caret under the span:
    ///
    /// ```text
    /// error: unknown policy `accpt` (expected ACCEPT or DROP)
    ///  --> rules.v4:3:9
    ///   |
    /// 3 | :INPUT accpt [0:0]
    ///   |        ^^^^^
    /// ```
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = String::new();
        let (line_no, col, line_text, caret_col, caret_len) = locate(source, self.span);
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{kind}: {}", self.message);
        let gutter = line_no.to_string().len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(out, "{pad}--> {file}:{line_no}:{col}");
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{line_no} | {line_text}");
        let _ = writeln!(out, "{pad} | {}{}", " ".repeat(caret_col), "^".repeat(caret_len.max(1)));
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} = help: {help}");
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The candidate closest to `name`: equal ignoring case, or within a small edit distance.
pub fn suggest<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let d = if c.eq_ignore_ascii_case(name) { 0 } else { edit_distance(&name.to_ascii_lowercase(), &c.to_ascii_lowercase()) + 1 };
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let limit = (name.len() / 3).max(1) + 1;
    best.filter(|(d, _)| *d <= limit).map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j - 1] + cost).min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Line (1-based), column (1-based, in characters), the line's text without its line ending,
/// the caret's offset in displayed characters and its width.
fn locate(source: &str, span: Span) -> (usize, usize, String, usize, usize) {
    let start = (span.start as usize).min(source.len());
    let start = floor_char_boundary(source, start);
    let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[start..].find('\n').map_or(source.len(), |i| start + i);
    let line_no = source[..line_start].bytes().filter(|&b| b == b'\n').count() + 1;
    let raw_line = &source[line_start..line_end];
    let line_text: String = raw_line.trim_end_matches('\r').chars().map(|c| if c == '\t' { ' ' } else { c }).collect();
    let caret_col = source[line_start..start].chars().count();
    let end = floor_char_boundary(source, (span.end as usize).clamp(start, line_end));
    let caret_len = source[start..end].trim_end_matches(['\r', '\n']).chars().count();
    (line_no, caret_col + 1, line_text, caret_col, caret_len)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Maps byte offsets to 1-based line numbers.
#[derive(Clone, Debug, Default)]
pub struct LineIndex {
    starts: Vec<u32>,
}

impl LineIndex {
    /// Indexes the line starts of `source`.
    pub fn new(source: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(source.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i as u32 + 1));
        LineIndex { starts }
    }

    /// The 1-based line holding byte `offset`.
    pub fn line(&self, offset: u32) -> u32 {
        self.starts.partition_point(|&s| s <= offset) as u32
    }

    /// The 1-based column (in characters) of byte `offset`.
    pub fn column(&self, source: &str, offset: u32) -> u32 {
        let line = self.line(offset) as usize;
        let start = self.starts[line - 1] as usize;
        let end = floor_char_boundary(source, (offset as usize).min(source.len()));
        source.get(start..end).map_or(1, |s| s.chars().count() as u32 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_span() {
        let src = "*filter\n:INPUT accpt [0:0]\n";
        let d = Diagnostic::error(Span::new(15, 20), "unknown policy `accpt` (expected ACCEPT or DROP)");
        assert_eq!(
            d.render("r.v4", src),
            "error: unknown policy `accpt` (expected ACCEPT or DROP)\n --> r.v4:2:8\n  |\n2 | :INPUT accpt [0:0]\n  |        ^^^^^\n"
        );
    }

    #[test]
    fn columns_count_characters() {
        let src = "é ✓ x\n";
        let idx = LineIndex::new(src);
        let at = src.find('x').unwrap() as u32;
        assert_eq!(idx.column(src, at), 5);
        assert_eq!(idx.line(at), 1);
        assert_eq!(idx.line(src.len() as u32), 2);
    }
}
