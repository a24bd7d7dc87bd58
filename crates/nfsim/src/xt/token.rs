//! Splits one rule line into arguments the way iptables-restore's `add_param_to_argv` does.
//!
//! Only `"` quotes. Inside quotes a backslash takes the next character literally; outside quotes
//! backslashes, `'` and `#` are ordinary characters. Words are separated by space, tab or newline.
//! A quoted empty word (`""`) is an empty argument, as iptables 1.8.9 reads it.

use std::borrow::Cow;

use crate::diag::Span;

/// One argument of a rule line, with the byte range it came from in the source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    /// The argument after quote removal.
    pub text: Cow<'a, str>,
    /// Where the argument stands in the source (including its quotes).
    pub span: Span,
    /// True when any part of the word was quoted.
    pub quoted: bool,
}

impl Token<'_> {
    /// The argument text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Splits `line` (which starts at byte `offset` of the file) into tokens, appending to `out`.
///
/// Returns the span of an unterminated quote, if there is one (iptables-restore accepts it and
/// reads to the end of the line; callers may warn).
pub fn tokenize<'a>(line: &'a str, offset: usize, out: &mut Vec<Token<'a>>) -> Option<Span> {
    let bytes = line.as_bytes();
    let mut i = 0;
    let mut unterminated = None;
    while i < bytes.len() {
        // Skip separators.
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n') {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let start = i;
        // Fast path: a word with no quote at all borrows the source.
        let mut j = i;
        while j < bytes.len() && !matches!(bytes[j], b' ' | b'\t' | b'\n' | b'"') {
            j += 1;
        }
        if j >= bytes.len() || bytes[j] != b'"' {
            out.push(Token { text: Cow::Borrowed(&line[start..j]), span: Span::new(offset + start, offset + j), quoted: false });
            i = j;
            continue;
        }
        // Slow path: the word contains quotes.
        let mut buf = String::with_capacity(j - start + 8);
        buf.push_str(&line[start..j]);
        i = j;
        let mut quote_open = false;
        let mut quote_start = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if quote_open {
                if c == b'\\' && i + 1 < bytes.len() {
                    let ch = next_char(line, i + 1);
                    buf.push(ch);
                    i += 1 + ch.len_utf8();
                    continue;
                } else if c == b'\\' {
                    i += 1;
                    continue;
                } else if c == b'"' {
                    quote_open = false;
                    i += 1;
                    continue;
                }
                let ch = next_char(line, i);
                buf.push(ch);
                i += ch.len_utf8();
                continue;
            }
            match c {
                b'"' => {
                    quote_open = true;
                    quote_start = i;
                    i += 1;
                }
                b' ' | b'\t' | b'\n' => break,
                _ => {
                    let ch = next_char(line, i);
                    buf.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        if quote_open {
            unterminated = Some(Span::new(offset + quote_start, offset + i));
        }
        // The word had quotes, so even an empty one (`""`) is an argument for iptables 1.8.9.
        out.push(Token { text: Cow::Owned(buf), span: Span::new(offset + start, offset + i), quoted: true });
    }
    unterminated
}

fn next_char(s: &str, at: usize) -> char {
    s[at..].chars().next().unwrap_or('\u{fffd}')
}

/// Splits a shell command line (a line of a command list) into words the way `sh` does for a
/// simple command: `'...'` is literal, `"..."` keeps `\\` escapes of `$ ` " \\`, an unquoted
/// backslash escapes the next character, and an unquoted `#` at the start of a word starts a
/// comment. Variables are not expanded.
pub fn tokenize_shell<'a>(line: &'a str, offset: usize, out: &mut Vec<Token<'a>>) -> Option<Span> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b'#' {
            break;
        }
        let start = i;
        let mut buf = String::new();
        let mut quoted = false;
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t') {
            match bytes[i] {
                b'\'' => {
                    quoted = true;
                    let close = line[i + 1..].find('\'').map(|j| i + 1 + j);
                    match close {
                        Some(c) => {
                            buf.push_str(&line[i + 1..c]);
                            i = c + 1;
                        }
                        None => return Some(Span::new(offset + i, offset + line.len())),
                    }
                }
                b'"' => {
                    quoted = true;
                    let open = i;
                    i += 1;
                    loop {
                        if i >= bytes.len() {
                            return Some(Span::new(offset + open, offset + line.len()));
                        }
                        match bytes[i] {
                            b'"' => {
                                i += 1;
                                break;
                            }
                            b'\\' if i + 1 < bytes.len() && matches!(bytes[i + 1], b'$' | b'`' | b'"' | b'\\') => {
                                buf.push(bytes[i + 1] as char);
                                i += 2;
                            }
                            _ => {
                                let ch = next_char(line, i);
                                buf.push(ch);
                                i += ch.len_utf8();
                            }
                        }
                    }
                }
                b'\\' if i + 1 < bytes.len() => {
                    quoted = true;
                    let ch = next_char(line, i + 1);
                    buf.push(ch);
                    i += 1 + ch.len_utf8();
                }
                _ => {
                    let ch = next_char(line, i);
                    buf.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        let text = if quoted { Cow::Owned(buf) } else { Cow::Borrowed(&line[start..i]) };
        out.push(Token { text, span: Span::new(offset + start, offset + i), quoted });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        tokenize(line, 0, &mut out);
        out.into_iter().map(|t| t.text.into_owned()).collect()
    }

    #[test]
    fn splits_like_iptables_restore() {
        assert_eq!(words("-A  INPUT\t-j ACCEPT\n"), ["-A", "INPUT", "-j", "ACCEPT"]);
        assert_eq!(words(r#"--comment "it\'s a \"q\" \\ b""#), ["--comment", r#"it's a "q" \ b"#]);
        assert_eq!(words(r#"a"b c"d e"#), ["ab cd", "e"]);
        assert_eq!(words(r#"x '' y\z #w"#), ["x", "''", r"y\z", "#w"]);
        assert_eq!(words(r#"x "" y"#), ["x", "", "y"]);
        assert_eq!(words(r#"--log-prefix "open "#), ["--log-prefix", "open "]);
    }

    #[test]
    fn shell_words() {
        let mut out = Vec::new();
        tokenize_shell(r#"iptables -m comment --comment 'this is "funny"' -s a\ b "x\$y\z" # tail"#, 0, &mut out);
        let w: Vec<&str> = out.iter().map(|t| t.as_str()).collect();
        assert_eq!(w, ["iptables", "-m", "comment", "--comment", "this is \"funny\"", "-s", "a b", "x$y\\z"]);
    }

    #[test]
    fn spans_cover_quotes() {
        let mut out = Vec::new();
        tokenize(r#"-m comment --comment "a b" -j X"#, 10, &mut out);
        assert_eq!(out[3].span, Span::new(31, 36));
        assert!(out[3].quoted);
        assert_eq!(out[4].span, Span::new(37, 39));
    }
}
