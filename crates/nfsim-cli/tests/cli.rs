//! The `nfsim` command's contract: exit codes, JSON diagnostics, `fmt` output.

use std::io::Write as _;
use std::process::{Command, Stdio};

fn nfsim(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_nfsim")).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run nfsim");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("wait");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn example(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_exit_codes() {
    let (code, out, _) = nfsim(&["check", &example("istio-sidecar.rules")], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 0 errors"), "{out}");
    let (code, out, _) = nfsim(&["check", &example("seed-garbled.rules")], "");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("did you mean `istio_inbound`?"), "{out}");
    let (code, _, err) = nfsim(&["check", "/nonexistent/file"], "");
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = nfsim(&["check", "--no-such-flag", "x"], "");
    assert_eq!(code, 2);
}

#[test]
fn check_reads_stdin_and_prints_json() {
    let input = "*filter\n:INPUT accpt [0:0]\nCOMMIT\n";
    let (code, out, _) = nfsim(&["check", "--json", "-"], input);
    assert_eq!(code, 1);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    let d = &lines[0];
    assert_eq!(d["file"], "<stdin>");
    assert_eq!(d["line"], 2);
    assert_eq!(d["column"], 8);
    assert_eq!(d["severity"], "error");
    assert!(d["message"].as_str().expect("message").contains("unknown policy `accpt` (expected ACCEPT or DROP)"));
}

#[test]
fn warnings_alone_exit_zero() {
    let input = "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0] :B - [0:0\nCOMMIT\n";
    let (code, out, _) = nfsim(&["check", "-"], input);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning: `:B - [0:0` after the declaration of `A` is ignored by iptables-restore, so `B` is not declared"), "{out}");
}

#[test]
fn fmt_prints_the_canonical_form() {
    let input = "*nat\n:OUTPUT ACCEPT [5:6]\n-A OUTPUT -p tcp --dport 80 -d 10.0.0.1 -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let (code, out, err) = nfsim(&["fmt", "-"], input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A OUTPUT -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 15001\nCOMMIT\n"
    );
    let (_, out, _) = nfsim(&["fmt", "--counters", "-"], input);
    assert!(out.contains(":OUTPUT ACCEPT [5:6]"), "{out}");
}
