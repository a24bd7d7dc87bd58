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

#[test]
fn trace_json_follows_the_contract() {
    let rules = example("istio-sidecar.rules");
    let args = [
        "trace",
        "--rules",
        &rules,
        "--iface",
        "eth0=10.0.0.5/24",
        "--gateway",
        "10.0.0.1",
        "--listen",
        "tcp:15001/envoy@1337",
        "--listen",
        "tcp:15006/envoy@1337",
        "--listen",
        "tcp:8080/app@1000",
        "--from",
        "local",
        "--uid",
        "1000",
        "--proto",
        "tcp",
        "--dst",
        "10.0.0.9:8080",
        "--json",
    ];
    let (code, out, err) = nfsim(&args, "");
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["verdict"], "ACCEPT");
    let steps: Vec<String> = v["trace"]
        .as_array()
        .expect("trace")
        .iter()
        .map(|s| {
            format!(
                "{}:{}:{}:{}:{}",
                s["hook"].as_str().unwrap(),
                s["table"].as_str().unwrap(),
                s["chain"].as_str().unwrap(),
                s["kind"].as_str().unwrap(),
                s["rule"]
            )
        })
        .collect();
    // What the kernel's counters show for this probe (tests/oracle_selftest.rs, netfilter-facts §7).
    assert_eq!(
        steps,
        ["OUTPUT:nat:OUTPUT:rule:1", "OUTPUT:nat:ISTIO_OUTPUT:rule:9", "OUTPUT:nat:ISTIO_REDIRECT:rule:1", "POSTROUTING:nat:POSTROUTING:policy:1"]
    );
    assert_eq!(v["packet"]["dst"], "127.0.0.1:15001");
    assert_eq!(v["packet"]["src"], "10.0.0.5:40000");
    assert_eq!(v["delivered"]["local"]["addr"], "127.0.0.1");
    assert_eq!(v["delivered"]["local"]["port"], 15001);
    assert_eq!(v["original_dst"], "10.0.0.9:8080");

    // Human output: TRACE lines, then the verdict.
    let (code, out, _) = nfsim(&args[..args.len() - 1], "");
    assert_eq!(code, 0);
    assert!(out.starts_with("TRACE: nat:OUTPUT:rule:1\nTRACE: nat:ISTIO_OUTPUT:rule:9\n"), "{out}");
    assert!(out.contains("verdict: ACCEPT, delivered to 127.0.0.1:15001 (envoy), original destination 10.0.0.9:8080"), "{out}");

    // Envoy's own connection (uid 1337) leaves the pod unchanged.
    let mut envoy = args.to_vec();
    let at = envoy.iter().position(|a| *a == "1000").unwrap();
    envoy[at] = "1337";
    let (_, out, _) = nfsim(&envoy, "");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["delivered"]["egress"]["iface"], "eth0");
    assert_eq!(v["delivered"]["egress"]["next_hop"], "10.0.0.9");
}

#[test]
fn path_reports_delivery_loops_and_built_ins() {
    let (code, out, err) = nfsim(&["path"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hop 6: fortio-server-l2/envoy 127.0.0.6:40000 -> 10.244.3.10:8080"), "{out}");
    assert!(out.ends_with("outcome: delivered\n"), "{out}");
    let (code, out, _) = nfsim(&["path", "--example", "istio-fortio-loop"], "");
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("LOOP: hops 2, 3 repeat forever"), "{out}");
    let (code, out, _) = nfsim(&["path", "--example", "istio-fortio-tproxy", "--json"], "");
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v[0]["outcome"]["kind"], "delivered");
    assert_eq!(v[0]["hops"].as_array().unwrap().len(), 6);
    let (code, out, _) = nfsim(&["example"], "");
    assert_eq!(code, 0);
    assert_eq!(out.lines().map(|l| l.split('\t').next().unwrap()).collect::<Vec<_>>(), ["istio-fortio", "istio-fortio-loop", "istio-fortio-tproxy"]);
    let (_, out, _) = nfsim(&["example", "istio-fortio"], "");
    assert!(out.starts_with("# The seed document's call chain"), "{out}");
    let (code, _, err) = nfsim(&["path", "--example", "nope"], "");
    assert_eq!(code, 2, "{err}");
}

#[test]
fn path_reads_a_scenario_file_with_rule_files() {
    let dir = std::env::temp_dir().join(format!("nfsim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(example("istio-sidecar.rules"), dir.join("sidecar.rules")).unwrap();
    let yaml = "hosts:\n  - name: a\n    interfaces: [{name: eth0, addrs: [10.0.0.5/24]}]\n    rules_file: sidecar.rules\n    processes:\n      - {name: app, uid: 1000, gid: 1000, role: app, listen: []}\n  - name: b\n    interfaces: [{name: eth0, addrs: [10.0.0.6/24]}]\n    processes:\n      - {name: web, uid: 33, gid: 33, role: app, listen: [80]}\nflows:\n  - {name: f, host: a, process: app, calls: [\"b:80\"]}\n";
    std::fs::write(dir.join("s.yaml"), yaml).unwrap();
    // a's sidecar rules redirect app's call to 15001, where nothing listens in this scenario.
    let (code, out, err) = nfsim(&["path", dir.join("s.yaml").to_str().unwrap()], "");
    assert_eq!(code, 4, "{out}{err}");
    assert!(out.contains("no_listener"), "{out}");
    std::fs::write(dir.join("bad.yaml"), "hosts: 7\n").unwrap();
    let (code, _, err) = nfsim(&["path", dir.join("bad.yaml").to_str().unwrap()], "");
    assert_eq!(code, 2);
    assert!(err.contains("line 1"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diagram_writes_dot_and_svg() {
    let (code, out, err) = nfsim(&["diagram"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("digraph nfsim {"), "{out}");
    assert!(out.contains("subgraph cluster_fortio_server_l2 {"), "{out}");
    let (code, out, _) = nfsim(&["diagram", "--example", "istio-fortio-loop"], "");
    assert_eq!(code, 0);
    assert!(out.contains("color=red"), "{out}");
    let (code, out, _) = nfsim(&["diagram", "--format", "svg"], "");
    assert_eq!(code, 0);
    assert!(out.contains("<svg"), "{out}");
    let rules = example("istio-sidecar.rules");
    let (code, out, _) = nfsim(&["diagram", "--rules", &rules], "");
    assert_eq!(code, 0);
    assert!(out.contains("ISTIO_OUTPUT") && out.contains("label=\"rule 9\""), "{out}");
}

const POD: &[&str] = &[
    "--iface",
    "eth0=10.0.0.5/24",
    "--gateway",
    "10.0.0.1",
    "--listen",
    "tcp:15001/envoy@1337",
    "--listen",
    "tcp:15006/envoy@1337",
    "--listen",
    "tcp:8080/app@1000",
];

/// `nfsim trace` of a JSON example packet (as `classes` and `diff` print them) on `rules`.
fn trace_example(rules: &str, ex: &serde_json::Value) -> serde_json::Value {
    let mut args: Vec<String> = ["trace", "--rules", rules, "--json"].iter().map(|s| s.to_string()).collect();
    args.extend(POD.iter().map(|s| s.to_string()));
    args.extend(["--from".into(), ex["from"].as_str().expect("from").to_string()]);
    if ex["from"] == "local" {
        args.extend(["--uid".into(), ex["uid"].to_string(), "--gid".into(), ex["gid"].to_string()]);
    }
    args.extend([
        "--proto".into(),
        ex["proto"].to_string(),
        "--src".into(),
        ex["src"].as_str().expect("src").into(),
        "--dst".into(),
        ex["dst"].as_str().expect("dst").into(),
    ]);
    args.extend(["--mark".into(), ex["mark"].to_string(), "--state".into(), ex["state"].as_str().expect("state").into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out, err) = nfsim(&refs, "");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("trace output: {e}\n{out}\n{err}"))
}

#[test]
fn classes_cover_the_istio_rules_and_their_examples_reproduce() {
    let rules = example("istio-sidecar.rules");
    let mut args = vec!["classes", "--rules", &rules];
    args.extend(POD);
    let (code, out, err) = nfsim(&args, "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("uid 1337"), "{out}");
    assert!(out.contains("dst rewritten to 127.0.0.1:15001"), "{out}");
    assert!(out.contains("example: nfsim trace --rules"), "{out}");
    for from in ["local", "eth0"] {
        let mut args = vec!["classes", "--json", "--rules", &rules, "--from", from];
        args.extend(POD);
        let (code, out, err) = nfsim(&args, "");
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let classes = v["classes"].as_array().expect("classes");
        assert_eq!(v["count"], classes.len());
        assert!(classes.len() >= 5, "{out}");
        for c in classes {
            assert!(!c["description"].as_str().expect("description").is_empty());
            let t = trace_example(&rules, &c["example"]);
            assert_eq!(t["verdict"], c["result"]["verdict"], "{c}");
            assert_eq!(t["delivered"], c["result"]["delivered"], "{c}");
        }
    }
}

#[test]
fn diff_reports_every_changed_class_and_gates_with_its_exit_code() {
    let old = example("istio-sidecar.rules");
    let (code, out, err) = nfsim(&["diff", &old, &old, "--iface", "eth0=10.0.0.5/24"], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no packet's fate changes"), "{out}");
    // Envoy's own connections are no longer exempted from the redirect.
    let text = std::fs::read_to_string(&old).expect("rules");
    // As in the built-in `istio-fortio-loop`: the uid and gid 1337 RETURN rules are gone.
    let broken: String = text
        .lines()
        .filter(|l| !l.ends_with("-m owner --uid-owner 1337 -j RETURN") && !l.ends_with("-m owner --gid-owner 1337 -j RETURN") || l.contains('!'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(broken.lines().count() + 2, text.lines().count());
    let dir = std::env::temp_dir().join(format!("nfsim-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let new = dir.join("broken.rules");
    std::fs::write(&new, broken).expect("write");
    let new = new.to_string_lossy().into_owned();
    let mut args = vec!["diff", "--json", &old, &new];
    args.extend(POD);
    let (code, out, err) = nfsim(&args, "");
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let changes = v["changes"].as_array().expect("changes");
    assert!(!changes.is_empty());
    let mut envoy = false;
    for c in changes {
        let d = c["description"].as_str().expect("description");
        envoy |= d.contains("uid 1337");
        let (a, b) = (trace_example(&old, &c["example"]), trace_example(&new, &c["example"]));
        assert_eq!((&a["verdict"], &a["delivered"]), (&c["old"]["verdict"], &c["old"]["delivered"]), "{c}");
        assert_eq!((&b["verdict"], &b["delivered"]), (&c["new"]["verdict"], &c["new"]["delivered"]), "{c}");
        assert_ne!((&a["verdict"], &a["delivered"]), (&b["verdict"], &b["delivered"]), "the example shows the change: {c}");
    }
    assert!(envoy, "the change is about uid 1337: {out}");
    // The same change in the seed scenario: flows and loops.
    let (code, out, err) = nfsim(&["diff", "--scenario", "istio-fortio", "--rules-new", &format!("client={new}")], "");
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("new LOOP: client/envoy"), "{out}");
    assert!(out.contains("flow "), "{out}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn verify_proves_the_seed_and_finds_the_broken_variants_loop() {
    let (code, out, err) = nfsim(&["verify"], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("no loop for any packet"), "{out}");
    let (code, out, _) = nfsim(&["verify", "--example", "istio-fortio-loop"], "");
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("LOOP: connections of client/envoy (uid 1337"), "{out}");
    assert!(out.contains("outcome: LOOP"), "the witness path is printed: {out}");
    let (code, out, _) = nfsim(&["verify", "--json", "--example", "istio-fortio-loop"], "");
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let loops = v["loops"].as_array().expect("loops");
    assert_eq!(loops.len(), 3);
    assert!(loops.iter().all(|l| l["process"] == "envoy" && l["example"]["uid"] == 1337), "{out}");
    assert!(loops.iter().all(|l| l["witness"]["outcome"]["kind"] == "loop"), "{out}");
}

#[test]
fn classes_diff_and_verify_print_the_same_bytes_every_time() {
    let rules = example("istio-sidecar.rules");
    let mut args = vec!["classes", "--json", "--rules", &rules];
    args.extend(POD);
    let first = nfsim(&args, "").1;
    assert_eq!(first, nfsim(&args, "").1);
    let mut args = vec!["classes", "--rules", &rules, "--from", "eth0"];
    args.extend(POD);
    assert_eq!(nfsim(&args, "").1, nfsim(&args, "").1);
    let args = ["verify", "--json", "--example", "istio-fortio-loop"];
    assert_eq!(nfsim(&args, "").1, nfsim(&args, "").1);
}

#[test]
fn diff_sees_a_source_nat_change_alone() {
    // MASQUERADE (the route's source 10.0.0.5) against SNAT to 10.0.0.77: the same verdicts and
    // places, another source address.
    let dir = std::env::temp_dir().join(format!("nfsim-snat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (old, new) = (dir.join("old.rules"), dir.join("new.rules"));
    std::fs::write(&old, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n").unwrap();
    std::fs::write(&new, "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -j SNAT --to-source 10.0.0.77\nCOMMIT\n").unwrap();
    let (code, out, err) = nfsim(&["diff", old.to_str().unwrap(), new.to_str().unwrap(), "--iface", "eth0=10.0.0.5/24", "--gateway", "10.0.0.1"], "");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("no packet's fate changes"), "{out}");
    assert!(out.contains("src rewritten to 10.0.0.77"), "{out}");
}

/// A kube-proxy-shaped nat table: `services` ClusterIPs with `endpoints` endpoints each.
fn kube_dump(services: usize, endpoints: usize) -> String {
    let mut t = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n",
    );
    for s in 0..services {
        t.push_str(&format!(":KUBE-SVC-{s} - [0:0]\n"));
        for e in 0..endpoints {
            t.push_str(&format!(":KUBE-SEP-{s}-{e} - [0:0]\n"));
        }
    }
    t.push_str("-A OUTPUT -j KUBE-SERVICES\n-A PREROUTING -j KUBE-SERVICES\n-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n");
    for s in 0..services {
        t.push_str(&format!("-A KUBE-SERVICES -d 10.96.{}.{}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-{s}\n", s / 250, s % 250 + 1));
        t.push_str(&format!("-A KUBE-SVC-{s} ! -s 10.244.0.0/16 -d 10.96.{}.{}/32 -p tcp -j KUBE-MARK-MASQ\n", s / 250, s % 250 + 1));
        for e in 0..endpoints {
            let p = 1.0 / (endpoints - e) as f64;
            let stat = if e + 1 < endpoints { format!("-m statistic --mode random --probability {p:.11} ") } else { String::new() };
            t.push_str(&format!("-A KUBE-SVC-{s} {stat}-j KUBE-SEP-{s}-{e}\n"));
            t.push_str(&format!("-A KUBE-SEP-{s}-{e} -p tcp -j DNAT --to-destination 10.244.{}.{}:8080\n", e, s % 250 + 1));
        }
    }
    t.push_str("COMMIT\n");
    t
}

#[test]
fn trace_packets_equals_one_trace_per_packet() {
    let dir = std::env::temp_dir().join(format!("nfsim-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rules = dir.join("kube.rules");
    std::fs::write(&rules, kube_dump(300, 3)).expect("write rules");
    let rules = rules.to_str().expect("utf-8 path");
    let host = ["--iface", "eth0=10.0.0.5/24", "--gateway", "10.0.0.1", "--listen", "tcp:8080/app@1000"];
    // Packets to VIPs (forking three ways), to other addresses, from local (with owners) and
    // from eth0, with marks and states; and lines that are not packets.
    let mut lines = Vec::new();
    for i in 0..60u32 {
        let dst = if i % 3 == 0 { format!("10.0.0.{}:{}", i % 7, 8080 + i % 2) } else { format!("10.96.{}.{}:80", i % 2, i % 250 + 1) };
        let line = match i % 4 {
            0 => format!(r#"{{"proto":"tcp","dst":"{dst}","from":"local","uid":{},"gid":7}}"#, 1000 + i),
            1 => format!(r#"{{"proto":6,"src":"10.0.0.9:{}","dst":"{dst}","from":"eth0","mark":"0x4000"}}"#, 30000 + i),
            2 => format!(r#"{{"proto":"udp","dst":"{dst}","from":"local","state":"established"}}"#),
            _ => format!(r#"{{"proto":"tcp","dst":"{dst}","from":"eth0","src":"10.0.0.{}:5555","mark":{}}}"#, i % 9 + 1, i),
        };
        lines.push(line);
    }
    lines.insert(5, r#"{"proto":"tcp","dts":"10.96.0.1:80","from":"local"}"#.into());
    lines.insert(9, r#"{"proto":"tcp","dst":"10.96.0.1:8o","from":"local"}"#.into());
    lines.insert(12, String::new()); // blank lines are skipped
    let input = lines.join("\n") + "\n";
    let mut args = vec!["trace", "--rules", rules];
    args.extend(host);
    args.extend(["--packets", "-"]);
    let (code, out, err) = nfsim(&args, &input);
    assert_eq!(code, 1, "two lines are not packets: {err}");
    assert!(err.contains("unknown key `dts`") && err.contains("did you mean `dst`?"), "{err}");
    assert!(err.contains("<stdin>:10:22") && err.contains("bad port `8o`"), "the bad line is located: {err}");
    let results: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("one JSON result a line")).collect();
    let packets: Vec<&String> = lines.iter().filter(|l| !l.is_empty()).collect();
    assert_eq!(results.len(), packets.len(), "one result per packet line, in order");
    let mut forked = 0;
    for (line, result) in packets.iter().zip(&results) {
        let p: serde_json::Value = serde_json::from_str(line).expect("test line");
        if p.get("dts").is_some() || p["dst"].as_str().is_some_and(|d| d.ends_with("8o")) {
            assert!(result["error"]["message"].is_string(), "{result}");
            continue;
        }
        let mut one = vec!["trace".to_string(), "--rules".into(), rules.into()];
        one.extend(host.iter().map(|s| s.to_string()));
        for key in ["proto", "src", "dst", "from", "uid", "gid", "mark", "state"] {
            if let Some(v) = p.get(key) {
                one.push(format!("--{key}"));
                one.push(v.as_str().map_or_else(|| v.to_string(), str::to_string));
            }
        }
        one.push("--json".into());
        let (_, single, err) = nfsim(&one.iter().map(String::as_str).collect::<Vec<_>>(), "");
        let single: serde_json::Value = serde_json::from_str(&single).unwrap_or_else(|e| panic!("{one:?}: {e}: {err}"));
        assert_eq!(result, &single, "{line}");
        forked += usize::from(result["branches"].as_array().is_some_and(|b| b.len() == 3));
    }
    assert!(forked >= 20, "the sample reaches the services' endpoints ({forked} forked)");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn classes_and_diff_say_when_the_fork_cap_cut_them() {
    let dir = std::env::temp_dir().join(format!("nfsim-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rules = dir.join("forks.rules");
    // Nine coin flips for one kind of packet: 512 branches each, past the cap of 256.
    let flips = (0..9)
        .map(|i| {
            format!("-A OUTPUT -p udp -d 10.0.0.9/32 --dport 7 -m statistic --mode random --probability 0.5 -j MARK --set-xmark {:#x}/{:#x}\n", 1 << i, 1 << i)
        })
        .collect::<String>();
    std::fs::write(&rules, format!("*mangle\n:OUTPUT ACCEPT [0:0]\n{flips}COMMIT\n")).expect("write rules");
    let rules = rules.to_str().expect("utf-8 path");
    let (code, out, err) = nfsim(&["classes", "--rules", rules, "--iface", "eth0=10.0.0.5/24", "--from", "local", "--json"], "");
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["truncated"], true, "{out}");
    assert!(err.contains("more than 256 ways") && err.contains("incomplete"), "{err}");
    // A diff of such rules (the last flip sets another bit) says that it may miss changes.
    let changed = dir.join("changed.rules");
    std::fs::write(&changed, format!("*mangle\n:OUTPUT ACCEPT [0:0]\n{}COMMIT\n", flips.replace("0x100/0x100", "0x200/0x200"))).expect("write rules");
    let changed = changed.to_str().expect("utf-8 path");
    let (_, _, err) = nfsim(&["diff", rules, changed, "--iface", "eth0=10.0.0.5/24", "--from", "local"], "");
    assert!(err.contains("sent by a local process fork more than 256 ways") && err.contains("may be missing"), "{err}");
    let (_, out, _) = nfsim(&["diff", rules, changed, "--iface", "eth0=10.0.0.5/24", "--from", "local", "--json"], "");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).expect("json")["truncated"], true, "{out}");
    // One such packet: the trace says it followed only the first 256 branches, in text and JSON.
    let packet = ["trace", "--rules", rules, "--iface", "eth0=10.0.0.5/24", "--from", "local", "--proto", "udp", "--dst", "10.0.0.9:7"];
    let (_, out, _) = nfsim(&packet, "");
    assert!(out.contains("truncated: the packet forks more than 256 ways"), "{out}");
    let (_, out, _) = nfsim(&[&packet[..], &["--json"]].concat(), "");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((v["truncated"].clone(), v["branches"].as_array().map(Vec::len)), (serde_json::json!(true), Some(256)), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn trace_packets_reports_every_kind_of_bad_line_without_stopping() {
    let mut input: Vec<u8> = b"{\"proto\":\"tcp\",\"dst\":\"10.0.0.9:80\",\"from\":\"\xe2\x84\x93ocal\xff\n".to_vec();
    input.extend("{\"ünï\":\"ç\",\"prötö\":1}\n{\"proto\":\"tcp\",\"dst\":\"é:80\",\"from\":\"local\"}\n".as_bytes());
    input.extend(format!("{{\"proto\":\"tcp\",\"dst\":\"10.0.0.9:80\",\"from\":\"local\",\"x\":{}{}}}\n", "[".repeat(300), "]".repeat(300)).as_bytes());
    input.extend(b"{\"proto\":\"tcp\",\"dst\":\"10.0.0.9:8080\",\"from\":\"local\",\"uid\":1000}\n");
    let dir = std::env::temp_dir().join(format!("nfsim-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let packets = dir.join("bad.jsonl");
    std::fs::write(&packets, &input).expect("write packets");
    let (code, out, err) =
        nfsim(&["trace", "--rules", &example("istio-sidecar.rules"), "--iface", "eth0=10.0.0.5/24", "--packets", packets.to_str().expect("utf-8 path")], "");
    assert_eq!(code, 1, "{err}");
    let results: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(results.len(), 5, "{out}");
    for (n, r) in results.iter().take(4).enumerate() {
        assert_eq!(r["error"]["line"], n + 1, "{r}");
    }
    assert_eq!(results[4]["verdict"], "ACCEPT", "the good line after them still runs");
    assert!(err.contains("did you mean `proto`?") && err.contains("4 of 5 lines"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
