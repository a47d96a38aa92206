//! What audit-first costs: Encrypt throughput and latency over NATS with every request
//! recorded before it is answered, and with recording switched off (a switch that exists only
//! for this benchmark), at a fixed concurrency, closed loop.
//!
//! ```sh
//! cargo run --release -p keyledger-tests --example audit_bench -- [concurrency] [seconds] [payload bytes]
//! ```
//! Defaults: 64 requests in flight, 10 s per mode, 256-byte plaintexts. With
//! `AUDIT_BENCH_TRACE=1` every auditd lag sample is printed to stderr. Each mode gets its own
//! fresh server (sync_interval: always, as shipped) and roles, started by the test harness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger::roles::RoleConfig;
use keyledger_tests::*;
use serde_json::json;

struct Figures {
    max_lag_messages: Option<u64>,
    max_lag_seconds: Option<f64>,
    drain_ms: Option<u128>,
    requests: usize,
    errors: usize,
    per_sec: f64,
    p50_us: u128,
    p99_us: u128,
    p999_us: u128,
    bytes_per_record: Option<f64>,
}

async fn run(skip_audit: bool, concurrency: usize, seconds: u64, payload: usize) -> Figures {
    // One load generator is one principal: lift the per-principal rate limit out of the way.
    let config = RoleConfig {
        benchmark_only_skip_audit: skip_audit,
        rate_limit_per_principal_per_sec: 1e9,
        rate_limit_burst: 1e9,
        ..RoleConfig::default()
    };
    let h = Harness::start_with_config(config).await;
    // auditd indexing at the same time, as `keyledger dev` runs it.
    let auditd = keyledger::auditd::start_dev(
        &h.env().service_profile,
        &h.env().data_dir,
        "127.0.0.1:0".parse().unwrap(),
        ACCOUNT,
    )
    .await
    .expect("auditd starts");
    let health_addr = auditd.addr;
    let key = h.create_key().await;
    let clients: Vec<_> = futures::future::join_all((0..concurrency.div_ceil(16)).map(|_| h.new_client())).await;
    let plaintext = b64(&vec![0x5a; payload]);
    // Warm up (material cache, connections).
    for c in &clients {
        c.call("Encrypt", &json!({"KeyId": key, "Plaintext": plaintext})).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let c = clients[i % clients.len()].clone();
        let (stop, key, plaintext) = (stop.clone(), key.clone(), plaintext.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let req = json!({"KeyId": key, "Plaintext": plaintext});
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match c.call("Encrypt", &req).await {
                    Ok(_) => lat.push(t.elapsed().as_micros()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut max_lag = 0u64;
    let mut max_lag_seconds = 0f64;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (messages, seconds) = lag(health_addr).await;
        if std::env::var_os("AUDIT_BENCH_TRACE").is_some() {
            eprintln!("t={:.1}s lag {messages} msgs {seconds:.2} s", started.elapsed().as_secs_f64());
        }
        max_lag = max_lag.max(messages);
        max_lag_seconds = max_lag_seconds.max(seconds);
    }
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let drain_started = Instant::now();
    while lag(health_addr).await.0 > 0 && drain_started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_ms = drain_started.elapsed().as_millis();
    all.sort_unstable();
    let q = |p: f64| all.get(((all.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0);
    let bytes_per_record = if skip_audit {
        None
    } else {
        let js = keyledger_log::jetstream(h.service_nats().await);
        use futures::StreamExt;
        let names: Vec<String> = js.stream_names().filter_map(|n| async move { n.ok() }).collect().await;
        let mut bytes = 0u64;
        for n in names.iter().filter(|n| n.starts_with(keyledger_events::names::USAGE_STREAM_PREFIX)) {
            bytes += js.get_stream(n).await.unwrap().info().await.unwrap().state.bytes;
        }
        Some(bytes as f64 / (all.len() + errors + clients.len()) as f64)
    };
    auditd.stop().await;
    Figures {
        max_lag_messages: Some(max_lag),
        max_lag_seconds: Some(max_lag_seconds),
        drain_ms: Some(drain_ms),
        requests: all.len(),
        errors,
        per_sec: all.len() as f64 / elapsed,
        p50_us: q(0.50),
        p99_us: q(0.99),
        p999_us: q(0.999),
        bytes_per_record,
    }
}

/// auditd's lag from its /healthz: messages behind the stream heads, and the age in seconds of
/// the oldest stored message not yet searchable (both refreshed by auditd once a second).
async fn lag(addr: std::net::SocketAddr) -> (u64, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return (u64::MAX, f64::INFINITY) };
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("{}");
    let v = serde_json::from_str::<serde_json::Value>(body).unwrap_or_default();
    (v["lag"].as_u64().unwrap_or(u64::MAX), v["lag_seconds"].as_f64().unwrap_or(f64::INFINITY))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let concurrency = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let seconds = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let payload = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(256);
    println!("Encrypt over NATS, concurrency {concurrency}, {seconds} s per mode, {payload}-byte plaintexts");
    println!("| mode | requests | errors | req/s | p50 µs | p99 µs | p99.9 µs | usage bytes/record | auditd max lag (msgs) | auditd max lag (s) | drain after load (ms) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, skip) in [("audit-first (shipped)", false), ("audit off (benchmark only)", true)] {
        let f = run(skip, concurrency, seconds, payload).await;
        println!(
            "| {name} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            f.requests,
            f.errors,
            f.per_sec,
            f.p50_us,
            f.p99_us,
            f.p999_us,
            f.bytes_per_record.map(|b| format!("{b:.0}")).unwrap_or_else(|| "-".into()),
            f.max_lag_messages.map(|v| v.to_string()).unwrap_or_default(),
            f.max_lag_seconds.map(|v| format!("{v:.2}")).unwrap_or_default(),
            f.drain_ms.map(|v| v.to_string()).unwrap_or_default(),
        );
    }
}
