//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/corpus` beside the repository (or `$NFSIM_CORPUS`), when it exists.
pub(crate) fn corpus_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("NFSIM_CORPUS") {
        return Some(PathBuf::from(d));
    }
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    d.join("INDEX.tsv").exists().then_some(d)
}

use std::process::Command;

/// Whether the kernel tests can run here: root, `ip` and `iptables-restore` present. When they
/// cannot, a test prints a loud skip message, or fails when `NFSIM_REQUIRE_KERNEL=1` (CI).
pub(crate) fn kernel_available(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
    let have = |bin: &str, flag: &str| Command::new(bin).arg(flag).output().is_ok_and(|o| o.status.success());
    let ok = root
        && have("ip", "-V")
        && ["iptables-nft-restore", "iptables-legacy-restore", "ip6tables-nft-restore", "ip6tables-legacy-restore"].iter().all(|b| have(b, "--version"));
    if !ok {
        let why = if root { "`ip` or `iptables-restore` is missing" } else { "not running as root" };
        if std::env::var("NFSIM_REQUIRE_KERNEL").is_ok_and(|v| v == "1") {
            panic!("{test}: the kernel test must run here (NFSIM_REQUIRE_KERNEL=1) but {why}");
        }
        eprintln!("\n*** SKIPPED {test}: {why}; the real-kernel checks did not run ***\n");
    }
    ok
}

/// A network namespace created for a test and deleted when dropped (also on panic).
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    /// Creates `nfsim-<tag>-<pid>-<n>`.
    pub(crate) fn new(tag: &str) -> Netns {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("nfsim-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let st = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(st.success(), "ip netns add {name} failed");
        Netns { name }
    }

    /// Runs `cmd args...` inside the namespace with `input` on stdin; returns (success, stdout, stderr).
    pub(crate) fn run(&self, cmd: &str, args: &[&str], input: &str) -> (bool, String, String) {
        use std::io::Write as _;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, cmd])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn ip netns exec");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_string();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = child.wait_with_output().expect("wait");
        let _ = writer.join();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// `iptables-save` output without its `#` lines.
pub(crate) fn strip_comments(s: &str) -> String {
    s.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect()
}

/// A small deterministic generator (xorshift64*) for generated test cases.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() >> 33) as usize % n
    }

    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    pub(crate) fn chance(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}
