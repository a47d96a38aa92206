//! `keyledger bench` as a user runs it: a short run at low concurrency produces a report whose
//! fields make sense. Nothing here asserts a speed — only that every request was answered, the
//! quantiles are ordered and the ratios are there.

use std::process::Command;

use serde_json::Value;

const CLI: &str = env!("CARGO_BIN_EXE_kl-cli");

fn run_bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = Command::new(CLI)
        .arg("bench")
        .args(args)
        .arg("--quiet")
        .arg("--json")
        .arg(&json)
        .output()
        .expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keyledger bench {args:?} failed:\n{stdout}\n{stderr}");
    serde_json::from_slice(&std::fs::read(&json).expect("the report is written")).expect("the report is JSON")
}

fn measurement<'a>(report: &'a Value, target: &str, transport: &str, operation: &str, mode: &str) -> &'a Value {
    report["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["target"] == target && m["transport"] == transport && m["operation"] == operation && m["mode"] == mode
        })
        .unwrap_or_else(|| panic!("no {target} {transport} {operation} {mode} in {report:#}"))
}

fn assert_sane(m: &Value, concurrency: u64) {
    let requests = m["requests"].as_u64().unwrap();
    assert!(requests > 0, "no request was answered: {m:#}");
    assert_eq!(m["errors"], 0, "{m:#}");
    assert_eq!(m["concurrency"], concurrency, "{m:#}");
    let throughput = m["throughput_per_sec"].as_f64().unwrap();
    let seconds = m["duration_secs"].as_f64().unwrap();
    assert!((throughput * seconds - requests as f64).abs() < 1.0, "throughput is requests ÷ window: {m:#}");
    let (p50, p99, p999, max) = (
        m["p50_us"].as_u64().unwrap(),
        m["p99_us"].as_u64().unwrap(),
        m["p999_us"].as_u64().unwrap(),
        m["max_us"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max, "quantiles out of order: {m:#}");
}

#[test]
fn a_short_bench_reports_every_operation_the_echo_and_their_ratios() {
    let report = run_bench(&[
        "--concurrency",
        "2",
        "--duration-secs",
        "1",
        "--warmup-secs",
        "0.2",
        "--payload-bytes",
        "64",
        "--transports",
        "nats,http",
        "--latency-at-fraction-of-peak",
        "0.5",
    ]);
    assert_eq!(report["payload_bytes"], 64);
    assert_eq!(report["auditd"], true);
    assert_sane(measurement(&report, "echo", "nats", "Echo", "closed"), 2);
    for transport in ["nats", "http"] {
        for op in ["Encrypt", "Decrypt", "GenerateDataKey"] {
            assert_sane(measurement(&report, "keyledger", transport, op, "closed"), 2);
        }
    }
    // The open-loop pair runs at half the closed-loop Encrypt throughput.
    let peak = measurement(&report, "keyledger", "nats", "Encrypt", "closed")["throughput_per_sec"].as_f64().unwrap();
    for (target, op) in [("echo", "Echo"), ("keyledger", "Encrypt")] {
        let m = measurement(&report, target, "nats", op, "open");
        assert_sane(m, 2);
        assert!((m["offered_rate_per_sec"].as_f64().unwrap() - peak / 2.0).abs() < 1.0, "{m:#}");
    }
    let ratios: Vec<&str> = report["ratios"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for op in ["Encrypt", "Decrypt", "GenerateDataKey"] {
        assert!(ratios.contains(&format!("{op}/nats ÷ echo, throughput (closed loop)").as_str()), "{ratios:?}");
    }
    assert!(ratios.iter().any(|r| r.starts_with("Encrypt/nats ÷ echo, p99 at")), "{ratios:?}");
    for r in report["ratios"].as_array().unwrap() {
        assert!(r["value"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn the_memory_bench_measures_a_cryptod_process_before_and_after_creating_keys() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("memory.json");
    let out = Command::new(CLI)
        .args(["bench", "memory", "--keys", "20", "--concurrency", "4", "--quiet", "--json"])
        .arg(&json)
        .output()
        .expect("the CLI runs");
    assert!(
        out.status.success(),
        "keyledger bench memory failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["keys"], 20, "{report:#}");
    assert_eq!(report["create_errors"], 0, "{report:#}");
    assert!(report["rss_empty_bytes"].as_u64().unwrap() > 1 << 20, "a process takes more than 1 MiB: {report:#}");
    assert!(report["rss_loaded_bytes"].as_u64().unwrap() > 1 << 20, "{report:#}");
    assert!(report["bytes_per_key"].is_number(), "{report:#}");
}

#[test]
fn the_replay_bench_times_a_raw_read_and_a_replay_of_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("replay.json");
    let out = Command::new(CLI).args(["bench", "replay", "--events", "3000", "--json"]).arg(&json).output().unwrap();
    assert!(
        out.status.success(),
        "keyledger bench replay failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["events"], 3000, "{report:#}");
    assert!(report["payload_bytes"].as_u64().unwrap() > 3000 * 100, "{report:#}");
    assert!(report["raw_read_secs"].as_f64().unwrap() > 0.0 && report["replay_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(report["state_digest"].as_str().unwrap().len(), 64);
    assert!(String::from_utf8_lossy(&out.stdout).contains("replay ÷ raw"));
}
