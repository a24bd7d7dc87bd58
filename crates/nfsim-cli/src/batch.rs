//! `nfsim trace --packets`: many packets through one host, one JSON line in and one trace-contract
//! JSON line out each, in input order, on every core.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use nfsim::diag::{Diagnostic, Span, suggest};
use nfsim::host::Host;
use nfsim::ruleset::Ruleset;
use nfsim::simulate::Simulator;
use nfsim::traverse::Options;
use serde::{Deserialize, Serialize};

use crate::trace::{BranchOut, PacketSpec, packet_of, parse_mark};

/// Lines a worker takes at a time.
const CHUNK: usize = 512;
/// Inputs at least this long get a progress bar (when standard error is a terminal and the
/// results go elsewhere).
const PROGRESS_FROM: usize = 20_000;
/// Bad lines rendered in full on standard error (every one is also in the output).
const SHOWN_ERRORS: usize = 20;

/// The keys a packet line may have.
const KEYS: &[&str] = &["proto", "src", "dst", "from", "uid", "gid", "mark", "state"];

/// One line of `--packets`: the `example` object of `nfsim classes --json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PacketLine {
    proto: NumOrName,
    #[serde(default)]
    src: Option<String>,
    dst: String,
    from: String,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
    #[serde(default)]
    mark: Option<NumOrName>,
    #[serde(default)]
    state: Option<String>,
}

/// A number, or a name or `0x` number as a string (`"tcp"`, `"0x4000"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrName {
    Num(u32),
    Name(String),
}

impl NumOrName {
    fn text(&self) -> String {
        match self {
            NumOrName::Num(n) => n.to_string(),
            NumOrName::Name(s) => s.clone(),
        }
    }
}

/// A line that is not a packet, as printed in its place in the output.
#[derive(Serialize)]
struct BadLine<'a> {
    error: BadLineError<'a>,
}

#[derive(Serialize)]
struct BadLineError<'a> {
    line: usize,
    column: usize,
    message: &'a str,
}

/// A bad line: where (byte offsets in the input) and what is wrong.
struct Problem {
    line: usize,
    span: Span,
    message: String,
    help: Option<String>,
}

/// Reads `line` (at byte `at` of the input, line number `no`) into a packet and its origin.
fn read_line(line: &str, at: usize, no: usize) -> Result<(nfsim::Packet, nfsim::Origin), Problem> {
    let problem = |col: usize, len: usize, message: String, help: Option<String>| {
        // Whatever column a parser names, the caret starts on a character of the line.
        let mut col = col.min(line.len());
        while !line.is_char_boundary(col) {
            col -= 1;
        }
        Problem { line: no, span: Span::new(at + col, at + col + len), message, help }
    };
    let p: PacketLine = match serde_json::from_str(line) {
        Ok(p) => p,
        Err(e) => {
            // An unknown key: name it, point at it and suggest the nearest known one.
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str()))
            {
                let col = line.find(&format!("\"{key}\"")).unwrap_or(0);
                let help = suggest(key, KEYS.iter().copied()).map(|s| format!("did you mean `{s}`?"));
                let expected = KEYS.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                return Err(problem(col, key.len() + 2, format!("unknown key `{key}` (expected {expected})"), help));
            }
            let col = e.column().saturating_sub(1).min(line.len());
            let what = e.to_string();
            let what = what.rfind(" at line ").map_or(&what[..], |i| &what[..i]);
            return Err(problem(col, 1, format!("not a packet: {what}"), None));
        }
    };
    let proto = p.proto.text();
    let mark = match &p.mark {
        None => 0,
        Some(NumOrName::Num(n)) => *n,
        Some(NumOrName::Name(s)) => parse_mark(s).map_err(|e| {
            let (col, len) = value_at(line, "mark");
            problem(col, len, format!("mark: {e}"), None)
        })?,
    };
    let spec = PacketSpec {
        proto: &proto,
        src: p.src.as_deref(),
        dst: &p.dst,
        from: &p.from,
        uid: p.uid,
        gid: p.gid,
        mark,
        state: p.state.as_deref().unwrap_or("NEW"),
    };
    packet_of(&spec).map_err(|e| {
        let (col, len) = value_at(line, e.field);
        problem(col, len, e.to_string(), None)
    })
}

/// Where the value of `key` stands in `line` (byte offset and length), for the caret.
fn value_at(line: &str, key: &str) -> (usize, usize) {
    let Some(k) = line.find(&format!("\"{key}\"")) else { return (0, line.len()) };
    let after = k + key.len() + 2;
    let rest = &line[after..];
    let start = after + rest.find(|c: char| c != ':' && !c.is_whitespace()).unwrap_or(0);
    let v = &line[start..];
    let len = if let Some(body) = v.strip_prefix('"') { body.find('"').map_or(v.len(), |i| i + 2) } else { v.find([',', '}']).unwrap_or(v.len()) };
    (start, len.max(1))
}

/// One worker's output for one chunk of lines.
struct Done {
    out: Vec<u8>,
    problems: Vec<Problem>,
}

/// `out`: an empty buffer to write into; `per_line`: the room to reserve for each line's result
/// (what the last chunk needed).
fn run_chunk(sim: &Simulator<'_>, text: &str, lines: &[(usize, usize, &str)], mut out: Vec<u8>, per_line: usize) -> Done {
    out.reserve(lines.len() * per_line);
    let mut problems = Vec::new();
    for &(no, at, line) in lines {
        match read_line(line, at, no) {
            Ok((pkt, origin)) => {
                let result = sim.run(pkt, &origin);
                serde_json::to_writer(&mut out, &BranchOut::simulation(&result)).expect("writing to memory");
            }
            Err(p) => {
                let column = text[at..p.span.start as usize].chars().count() + 1;
                serde_json::to_writer(&mut out, &BadLine { error: BadLineError { line: no, column, message: &p.message } }).expect("writing to memory");
                problems.push(p);
            }
        }
        out.push(b'\n');
    }
    Done { out, problems }
}

/// Runs every packet of `path` (`-`: standard input) and prints the results in input order.
/// Exit status: 0 when every line was a packet, 1 when some were not (each is reported on
/// standard error and stands as an `{"error": ...}` object in its place).
pub(crate) fn run(ruleset: &Ruleset, host: &Host, opts: &Options, path: &Path, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let (name, bytes) = if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b).context("reading packets from standard input")?;
        ("<stdin>".to_string(), b)
    } else {
        (path.display().to_string(), std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
    };
    // A line that is not UTF-8 is a bad line like any other (its bytes show as U+FFFD).
    let text = String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    // (line number, byte offset, text) of each non-blank line.
    let mut lines = Vec::new();
    let mut at = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        let body = l.trim_end_matches(['\n', '\r']);
        if !body.trim().is_empty() {
            lines.push((i + 1, at, body));
        }
        at += l.len();
    }
    let chunks: Vec<&[(usize, usize, &str)]> = lines.chunks(CHUNK).collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(chunks.len()).max(1);
    // Not when the results go to the same terminal: the bar would cut through them.
    let bar = (std::io::stderr().is_terminal() && !std::io::stdout().is_terminal() && lines.len() >= PROGRESS_FROM).then(|| {
        let bar = indicatif::ProgressBar::new(lines.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {human_pos}/{human_len} packets, {eta} left")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let next = AtomicUsize::new(0);
    let spare: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let mut problems: Vec<Problem> = Vec::new();
    let written: anyhow::Result<()> = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Done)>(workers * 4);
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, chunks, text, spare) = (&next, &chunks, &text, &spare);
            scope.spawn(move || {
                // One simulator per worker: the names its traces share stay on this core.
                let sim = Simulator::new(ruleset, host, opts.clone());
                let mut per_line = 2048;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(i) else { break };
                    // A buffer the writer is done with: its pages are already the process's
                    // (a fresh one of some megabytes is zeroed by the kernel page by page).
                    let buf = spare.lock().map(|mut s| s.pop()).ok().flatten().unwrap_or_default();
                    let done = run_chunk(&sim, text, chunk, buf, per_line);
                    // Results of one rule set are alike in size: the next chunk reserves what this
                    // one took (a forking packet's result is tens of kilobytes).
                    per_line = (done.out.len() / chunk.len()).clamp(256, 1 << 16) * 9 / 8;
                    if tx.send((i, done)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Write the chunks in input order as they complete.
        let mut pending: BTreeMap<usize, Done> = BTreeMap::new();
        let mut due = 0;
        for (i, done) in rx {
            pending.insert(i, done);
            while let Some(done) = pending.remove(&due) {
                if let Err(e) = out.write_all(&done.out) {
                    // Stop the workers: nothing more can be written.
                    next.store(usize::MAX / 2, Ordering::Relaxed);
                    return Err(anyhow::Error::new(e).context("writing the results"));
                }
                if let Some(bar) = &bar {
                    bar.inc(chunks[due].len() as u64);
                }
                problems.extend(done.problems);
                let mut buf = done.out;
                buf.clear();
                if let Ok(mut s) = spare.lock() {
                    s.push(buf);
                }
                due += 1;
            }
        }
        Ok(())
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    written?;
    out.flush()?;
    for p in problems.iter().take(SHOWN_ERRORS) {
        let mut d = Diagnostic::error(p.span, p.message.clone());
        d.line = p.line as u32;
        if let Some(h) = &p.help {
            d = d.with_help(h.clone());
        }
        eprint!("{}", d.render(&name, &text));
    }
    if problems.len() > SHOWN_ERRORS {
        eprintln!("... and {} more bad lines (each stands as an `error` object in the output)", problems.len() - SHOWN_ERRORS);
    }
    if problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("nfsim: {} of {} lines of {name} are not packets", problems.len(), lines.len());
    Ok(ExitCode::from(1))
}
