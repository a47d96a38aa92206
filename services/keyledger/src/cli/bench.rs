//! `keyledger bench`: a load generator for Keyledger, with the transport's own limit and
//! (optionally) OpenBao's transit engine measured in the same run.
//!
//! Every run starts its own environment in a temporary directory (or `--data-dir`), exactly
//! as `keyledger dev` runs it: a nats-server with `sync_interval: always`, keyd + cryptod with
//! audit first, auditd indexing both streams, and the AWS endpoint. The only setting that
//! differs from `dev` is the per-principal rate limit, which is lifted: one load generator is
//! one principal, and the limit (10,000 req/s, AWS's quota) would otherwise be what is
//! measured.
//!
//! Each measurement drives one operation at a fixed number of requests in flight
//! (`--concurrency`), either **closed loop** (each in-flight slot sends its next request as
//! soon as the previous answer arrives) or **open loop** (`--rate`: requests are scheduled at a
//! fixed rate; a request's latency counts from its scheduled time whenever the slot that sends
//! it was still busy, so a slow service cannot hide its queueing — no coordinated omission).
//! After a warm-up, requests *started* within the measured window are counted; throughput is
//! successful requests ÷ window. Latency quantiles come from an HDR histogram (µs, 3
//! significant digits).
//!
//! The **echo** is a trivial responder on `kms.v1.bench.echo` in the service account: the
//! request crosses the same account import (`share: true`) as every Keyledger request and the
//! reply goes back to the same tenant inbox, with the Encrypt request's body as payload. Its
//! figures are what the transport gives on this machine; `Keyledger ÷ echo` is the share of it
//! that Keyledger keeps.
//!
//! `keyledger bench memory` measures the resident memory a cryptod process needs per key.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::cli::dev::DevEnvironment;
use crate::clock::Clock;
use crate::roles::RoleConfig;

/// The subject of the echo responder (inside the API's export, outside `kms.v1.*`, so no
/// Keyledger responder sees it).
pub const ECHO_SUBJECT: &str = "kms.v1.bench.echo";
/// Name of the OpenBao transit key the bench creates and uses.
pub const OPENBAO_KEY: &str = "keyledger-bench";
/// Largest latency the histograms hold (µs); slower answers are clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;
/// How long one call may take before it counts as an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests in flight per tenant NATS connection.
const IN_FLIGHT_PER_CONNECTION: usize = 16;
/// Most distinct error texts kept per measurement.
const MAX_ERROR_KINDS: usize = 8;

/// `keyledger bench` arguments: the load run by default, or a subcommand.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchCommand {
    #[command(subcommand)]
    action: Option<BenchAction>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(clap::Subcommand, Debug)]
enum BenchAction {
    /// Resident memory of a cryptod process per key: starts cryptod (`keyledger serve`) on an
    /// empty log and on one holding --keys keys, and reports the difference ÷ keys.
    Memory(MemoryArgs),
    /// Replay speed: writes --events control events to a log of its own, then times a raw
    /// ordered-consumer read of them and `keyledger replay`'s fold (target: replay ≥ 0.5× raw).
    Replay(crate::cli::replay::ReplayBenchArgs),
}

/// An operation the bench drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum BenchOp {
    /// Encrypt `--payload-bytes` of plaintext.
    Encrypt,
    /// Decrypt a blob of `--payload-bytes` of plaintext.
    Decrypt,
    /// GenerateDataKey with KeySpec AES_256.
    GenerateDataKey,
}

impl BenchOp {
    /// The AWS operation name.
    pub fn aws_name(self) -> &'static str {
        match self {
            BenchOp::Encrypt => "Encrypt",
            BenchOp::Decrypt => "Decrypt",
            BenchOp::GenerateDataKey => "GenerateDataKey",
        }
    }
}

/// A transport to Keyledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// NATS request-reply on `kms.v1.<Operation>` as the dev tenant.
    Nats,
    /// The AWS KMS JSON 1.1 endpoint, SigV4-signed with the dev credential.
    Http,
}

/// Load settings. Units are in the names.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Operations to drive, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "encrypt,decrypt,generate-data-key")]
    pub operations: Vec<BenchOp>,
    /// Transports to Keyledger, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "nats")]
    pub transports: Vec<Transport>,
    /// Requests in flight (closed loop), or the most in flight (open loop).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Plaintext size of Encrypt and Decrypt, bytes (1-4096); the echo carries the Encrypt request.
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Measured time of each measurement, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Warm-up before each measurement (not counted), seconds.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,
    /// Open loop: requests per second scheduled at a fixed rate (default: closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// After the closed-loop runs, run the first Keyledger operation over NATS and the echo
    /// open loop at this fraction of that operation's measured throughput (e.g. 0.5), and
    /// compare their p99.
    #[arg(long)]
    pub latency_at_fraction_of_peak: Option<f64>,
    /// Skip the echo measurement.
    #[arg(long)]
    pub no_echo: bool,
    /// Run the server with nats-server's default lazy fsync instead of `sync_interval: always`:
    /// only to measure what durability against a power cut costs. Keyledger never ships it.
    #[arg(long)]
    pub lazy_fsync: bool,
    /// Do not run auditd (the audit index) during the run.
    #[arg(long)]
    pub no_auditd: bool,
    /// Also measure OpenBao's transit engine at this address (e.g. http://127.0.0.1:8200),
    /// over HTTP with the same load. Its token is read from --openbao-token-file or $BAO_TOKEN.
    #[arg(long)]
    pub openbao_addr: Option<String>,
    /// File holding the OpenBao token.
    #[arg(long)]
    pub openbao_token_file: Option<PathBuf>,
    /// Environment directory (default: a temporary directory, removed afterwards). Must not be
    /// a running `keyledger dev`'s directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `keyledger bench memory` settings.
#[derive(clap::Args, Debug, Clone)]
pub struct MemoryArgs {
    /// Keys to create.
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// CreateKey requests in flight while creating them.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Environment directory (default: a temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `keyledger bench`.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command.action {
        Some(BenchAction::Memory(args)) => memory(args).await,
        Some(BenchAction::Replay(args)) => crate::cli::replay::bench(args).await,
        None => load(command.load).await,
    }
}

// ------------------------------------------------------------------------------------------
// Report

/// One measurement: one target, transport and operation at one load.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// `keyledger`, `echo` or `openbao`.
    pub target: String,
    /// `nats` or `http`.
    pub transport: String,
    /// AWS operation name (`Echo` for the echo, the transit call for OpenBao).
    pub operation: String,
    /// `closed` or `open`.
    pub mode: String,
    /// Requests in flight (closed loop) or most in flight (open loop).
    pub concurrency: usize,
    /// Scheduled requests per second (open loop only).
    pub offered_rate_per_sec: Option<f64>,
    /// Measured window, seconds.
    pub duration_secs: f64,
    /// Successful requests started in the window.
    pub requests: u64,
    /// Failed requests started in the window.
    pub errors: u64,
    /// Distinct error texts and their counts (at most 8).
    pub error_kinds: BTreeMap<String, u64>,
    /// Successful requests per second.
    pub throughput_per_sec: f64,
    /// Latency quantiles and maximum of successful requests, microseconds.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest, µs.
    pub max_us: u64,
    /// Mean, µs.
    pub mean_us: f64,
}

/// A ratio between two measurements of the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// What is compared, e.g. `Encrypt/nats ÷ echo, throughput`.
    pub name: String,
    /// The ratio.
    pub value: f64,
}

/// The whole report of `keyledger bench`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run started, seconds since the Unix epoch.
    pub started_unix_s: u64,
    /// The command line.
    pub command: String,
    /// Cores the machine reports.
    pub cores: usize,
    /// Plaintext size, bytes.
    pub payload_bytes: usize,
    /// Whether auditd indexed during the run.
    pub auditd: bool,
    /// OpenBao's audit devices as it lists them (type per path), when measured.
    pub openbao_audit_devices: Option<BTreeMap<String, String>>,
    /// Every measurement, in the order run.
    pub measurements: Vec<Measurement>,
    /// Ratios between measurements.
    pub ratios: Vec<Ratio>,
}

fn print_report(report: &Report) {
    println!();
    println!(
        "keyledger bench: {} cores, {}-byte plaintexts, auditd {}",
        report.cores,
        report.payload_bytes,
        if report.auditd { "indexing" } else { "off" }
    );
    if let Some(devices) = &report.openbao_audit_devices {
        let list: Vec<String> = devices.iter().map(|(p, t)| format!("{p} ({t})")).collect();
        println!("OpenBao audit devices: {}", if list.is_empty() { "none".to_owned() } else { list.join(", ") });
    }
    println!();
    println!(
        "| target | transport | operation | mode | in flight | requests | errors | req/s | p50 | p99 | p99.9 | max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for m in &report.measurements {
        let mode = match m.offered_rate_per_sec {
            Some(r) => format!("open {r:.0}/s"),
            None => m.mode.clone(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            m.target,
            m.transport,
            m.operation,
            mode,
            m.concurrency,
            m.requests,
            m.errors,
            m.throughput_per_sec,
            show_us(m.p50_us),
            show_us(m.p99_us),
            show_us(m.p999_us),
            show_us(m.max_us)
        );
    }
    for m in report.measurements.iter().filter(|m| m.errors > 0) {
        for (text, n) in &m.error_kinds {
            println!("  {} {} {}: {n} × {text}", m.target, m.transport, m.operation);
        }
    }
    if !report.ratios.is_empty() {
        println!();
        for r in &report.ratios {
            println!("{:<60} {:.3}", r.name, r.value);
        }
    }
}

/// `1234` µs → `1.23 ms`, `456` → `456 µs`.
fn show_us(us: u64) -> String {
    if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

// ------------------------------------------------------------------------------------------
// The load generator

type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One in-flight slot's way to send a request and wait for its answer.
trait Caller: Send + 'static {
    fn call(&mut self) -> CallFuture<'_>;
}

/// What to measure and how.
struct Plan {
    target: &'static str,
    transport: Transport,
    operation: String,
    warmup: Duration,
    duration: Duration,
    rate_per_sec: Option<f64>,
}

struct SlotResult {
    histogram: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    error_count: u64,
}

/// Drives `callers` (one per in-flight slot) as `plan` says and measures them.
async fn drive(callers: Vec<Box<dyn Caller>>, plan: Plan, quiet: bool) -> anyhow::Result<Measurement> {
    let concurrency = callers.len();
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let next_ticket = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let interval = plan.rate_per_sec.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-3)));
    let mut tasks = Vec::with_capacity(concurrency);
    for mut caller in callers {
        let (next_ticket, completed) = (next_ticket.clone(), completed.clone());
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds");
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut error_count = 0u64;
            loop {
                let sent = match interval {
                    None => {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        now
                    }
                    Some(interval) => {
                        let ticket = next_ticket.fetch_add(1, Ordering::Relaxed);
                        let Some(scheduled) = u32::try_from(ticket).ok().map(|t| start + interval * t) else { break };
                        if scheduled >= end {
                            break;
                        }
                        if Instant::now() < scheduled {
                            // Idle until the scheduled time: count from when the request is
                            // really sent (the timer's lateness is the generator's, not the
                            // service's).
                            tokio::time::sleep_until(scheduled.into()).await;
                            Instant::now()
                        } else {
                            // This slot was busy past the scheduled time: the wait counts.
                            scheduled
                        }
                    }
                };
                let outcome = match tokio::time::timeout(CALL_TIMEOUT, caller.call()).await {
                    Ok(r) => r,
                    Err(_) => Err("timed out".to_owned()),
                };
                let done = Instant::now();
                completed.fetch_add(1, Ordering::Relaxed);
                if sent < measure_from {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        let us = (done - sent).as_micros().clamp(1, MAX_LATENCY_US as u128) as u64;
                        histogram.saturating_record(us);
                    }
                    Err(text) => {
                        error_count += 1;
                        if errors.len() < MAX_ERROR_KINDS || errors.contains_key(&text) {
                            *errors.entry(text).or_default() += 1;
                        }
                    }
                }
            }
            SlotResult { histogram, errors, error_count }
        }));
    }
    let label = format!("{} {:?} {}", plan.target, plan.transport, plan.operation).to_lowercase();
    let bar =
        if quiet { ProgressBar::hidden() } else { ProgressBar::new((plan.warmup + plan.duration).as_millis() as u64) };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label);
    let mut last = (Instant::now(), 0u64);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = Instant::now();
        let done = completed.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64();
        last = (now, done);
        bar.set_position((now - start).as_millis() as u64);
        let phase = if now < measure_from { "warm-up" } else { "measuring" };
        bar.set_message(format!("{phase}, {done} requests, {rate:.0}/s"));
    }
    bar.set_message("waiting for the last answers");
    let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds");
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut error_count = 0;
    for t in tasks {
        let slot = t.await.context("a load task panicked")?;
        histogram.add(&slot.histogram).context("histograms have the same bounds")?;
        error_count += slot.error_count;
        for (k, v) in slot.errors {
            if errors.len() < MAX_ERROR_KINDS || errors.contains_key(&k) {
                *errors.entry(k).or_default() += v;
            }
        }
    }
    bar.finish_and_clear();
    let seconds = plan.duration.as_secs_f64();
    let requests = histogram.len();
    Ok(Measurement {
        target: plan.target.to_owned(),
        transport: format!("{:?}", plan.transport).to_lowercase(),
        operation: plan.operation,
        mode: if plan.rate_per_sec.is_some() { "open" } else { "closed" }.to_owned(),
        concurrency,
        offered_rate_per_sec: plan.rate_per_sec,
        duration_secs: seconds,
        requests,
        errors: error_count,
        error_kinds: errors,
        throughput_per_sec: requests as f64 / seconds,
        p50_us: histogram.value_at_quantile(0.50),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
        mean_us: histogram.mean(),
    })
}

// ------------------------------------------------------------------------------------------
// NATS callers

/// A NATS request with a fixed body; success is a reply without the micro error header.
struct NatsCaller {
    client: async_nats::Client,
    subject: String,
    body: Bytes,
}

impl Caller for NatsCaller {
    fn call(&mut self) -> CallFuture<'_> {
        Box::pin(async move {
            let reply =
                self.client.request(self.subject.clone(), self.body.clone()).await.map_err(|e| e.kind().to_string())?;
            if let Some(name) =
                reply.headers.as_ref().and_then(|h| h.get(crate::protocol::SERVICE_ERROR_HEADER)).map(|v| v.to_string())
            {
                return Err(name);
            }
            if reply.payload.is_empty() {
                return Err("empty reply".to_owned());
            }
            Ok(())
        })
    }
}

/// The echo responder: answers every request on [`ECHO_SUBJECT`] with its own payload.
async fn echo_responder(client: async_nats::Client) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut sub = client
        .queue_subscribe(ECHO_SUBJECT, "keyledger-bench-echo".to_owned())
        .await
        .context("cannot subscribe the echo responder")?;
    client.flush().await.context("cannot flush the echo responder's subscription")?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = client.publish(reply, msg.payload).await;
            }
        }
    }))
}

// ------------------------------------------------------------------------------------------
// HTTP callers

/// One keep-alive HTTP/1.1 connection, reopened after a failure.
struct HttpConnection {
    addr: std::net::SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl HttpConnection {
    fn new(addr: std::net::SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    /// Sends a request; returns the status and the body.
    async fn send(&mut self, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes), String> {
        if self.sender.is_none() {
            let stream = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected above");
        let result = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        }
        .await;
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                self.sender = None;
                Err(format!("http: {e}"))
            }
        }
    }
}

/// A client-side SigV4 signer (header form) built on the gateway's own canonicalisation.
struct SigV4Signer {
    access_key_id: String,
    secret: Zeroizing<String>,
    region: String,
}

impl SigV4Signer {
    /// Reads the `keyledger` profile of an AWS shared-credentials file written by `dev`.
    fn from_credentials_file(path: &Path, region: &str) -> anyhow::Result<Self> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?);
        let value = |name: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_owned())
        };
        Ok(Self {
            access_key_id: value("aws_access_key_id").context("no aws_access_key_id in the credentials file")?,
            secret: Zeroizing::new(value("aws_secret_access_key").context("no aws_secret_access_key")?),
            region: region.to_owned(),
        })
    }

    /// The headers of a signed `POST /` with `X-Amz-Target: TrentService.<operation>`.
    fn signed_request(&self, host: &str, operation: &str, body: &Bytes) -> hyper::Request<Full<Bytes>> {
        use crate::gateway::sigv4;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let amz_date = sigv4::format_amz_date(now);
        let date = &amz_date[..8];
        let target = format!("{}{operation}", crate::gateway::TARGET_PREFIX);
        let headers: Vec<(String, Vec<u8>)> = vec![
            ("content-type".into(), crate::gateway::CONTENT_TYPE.as_bytes().to_vec()),
            ("host".into(), host.as_bytes().to_vec()),
            ("x-amz-date".into(), amz_date.as_bytes().to_vec()),
            ("x-amz-target".into(), target.as_bytes().to_vec()),
        ];
        let signed: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
        let parts = sigv4::RequestParts { method: "POST", path: "/", query: "", headers: &headers, body };
        let canonical = sigv4::canonical_request(&parts, &signed);
        let scope = format!("{date}/{}/{}/{}", self.region, crate::gateway::SIGNING_NAME, sigv4::TERMINATOR);
        let to_sign = sigv4::string_to_sign(&amz_date, &scope, &canonical);
        let key = sigv4::signing_key(self.secret.as_bytes(), date, &self.region, crate::gateway::SIGNING_NAME);
        let signature = hex::encode(sigv4::signature(&key, &to_sign));
        let authorization = format!(
            "{} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
            sigv4::ALGORITHM,
            self.access_key_id,
            signed.join(";")
        );
        let mut builder = hyper::Request::post("/");
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_slice());
        }
        builder.header("authorization", authorization).body(Full::new(body.clone())).expect("valid request parts")
    }
}

/// Keyledger's AWS endpoint: one SigV4-signed request per call.
struct GatewayCaller {
    connection: HttpConnection,
    host: String,
    signer: Arc<SigV4Signer>,
    operation: &'static str,
    body: Bytes,
}

impl Caller for GatewayCaller {
    fn call(&mut self) -> CallFuture<'_> {
        Box::pin(async move {
            let request = self.signer.signed_request(&self.host, self.operation, &self.body);
            let (status, body) = self.connection.send(request).await?;
            if status != 200 {
                let name = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["__type"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                return Err(format!("HTTP {status} {name}"));
            }
            Ok(())
        })
    }
}

/// OpenBao's HTTP API with a token.
struct OpenBaoCaller {
    connection: HttpConnection,
    host: String,
    token: Arc<Zeroizing<String>>,
    path: String,
    body: Bytes,
}

impl OpenBaoCaller {
    fn request(&self, method: &str, path: &str, body: Bytes) -> hyper::Request<Full<Bytes>> {
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.host.as_str())
            .header("content-type", "application/json")
            .header("x-vault-token", self.token.as_str())
            .body(Full::new(body))
            .expect("valid request parts")
    }

    /// One call outside the measurement (setup); returns the JSON answer.
    async fn once(
        &mut self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let body = if body.is_null() { Bytes::new() } else { Bytes::from(serde_json::to_vec(&body)?) };
        let request = self.request(method, path, body);
        let (status, body) = self.connection.send(request).await.map_err(|e| anyhow::anyhow!("OpenBao: {e}"))?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
    }
}

impl Caller for OpenBaoCaller {
    fn call(&mut self) -> CallFuture<'_> {
        Box::pin(async move {
            let request = self.request("POST", &self.path, self.body.clone());
            let (status, _) = self.connection.send(request).await?;
            if status != 200 {
                return Err(format!("HTTP {status}"));
            }
            Ok(())
        })
    }
}

fn url_host_port(url: &str) -> anyhow::Result<(String, std::net::SocketAddr)> {
    let rest = url.strip_prefix("http://").context("only http:// addresses are supported (loopback benchmarks)")?;
    let host = rest.trim_end_matches('/').to_owned();
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} resolves to nothing"))?;
    Ok((host, addr))
}

// ------------------------------------------------------------------------------------------
// The environment

/// A running benchmark environment: server, roles, gateway, auditd, echo.
struct Environment {
    env: DevEnvironment,
    auditd: Option<crate::auditd::RunningAuditd>,
    echo: Option<tokio::task::JoinHandle<()>>,
    _temp: Option<tempfile::TempDir>,
}

impl Environment {
    async fn start(
        data_dir: Option<&Path>,
        config: RoleConfig,
        auditd: bool,
        gateway: bool,
        sync_always: bool,
    ) -> anyhow::Result<Self> {
        let (dir, temp) = match data_dir {
            Some(d) => (d.to_path_buf(), None),
            None => {
                let t =
                    tempfile::Builder::new().prefix("keyledger-bench-").tempdir().context("cannot make a temp dir")?;
                (t.path().join("kl"), Some(t))
            }
        };
        let mut env = DevEnvironment::start_full(&dir, 0, config, 1, sync_always).await?;
        if gateway {
            env.start_gateway(0).await?;
        }
        let auditd = if auditd {
            let account = env.client_profile.keyledger_account.clone();
            Some(
                crate::auditd::start_dev(&env.service_profile, &dir, "127.0.0.1:0".parse().expect("address"), &account)
                    .await?,
            )
        } else {
            None
        };
        Ok(Self { env, auditd, echo: None, _temp: temp })
    }

    async fn stop(self) -> anyhow::Result<()> {
        if let Some(e) = self.echo {
            e.abort();
        }
        if let Some(a) = self.auditd {
            a.stop().await;
        }
        self.env.stop().await
    }
}

/// Role settings of a benchmark: as shipped, except the per-principal rate limit (lifted:
/// the generator is one principal) and, for the memory run, the per-account key quota.
fn bench_role_config() -> RoleConfig {
    RoleConfig {
        clock: Clock::system(),
        rate_limit_per_principal_per_sec: 1e9,
        rate_limit_burst: 1e9,
        ..RoleConfig::default()
    }
}

async fn tenant_connections(
    profile: &keyledger_nats_server::ClientProfile,
    n: usize,
) -> anyhow::Result<Vec<async_nats::Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let client = async_nats::ConnectOptions::with_user_and_password(
            profile.user.clone(),
            profile.password.expose().to_owned(),
        )
        .custom_inbox_prefix(profile.inbox_prefix.clone())
        .name("keyledger-bench")
        .request_timeout(Some(CALL_TIMEOUT))
        .connect(keyledger_log::server_list(profile.url.as_str()))
        .await
        .with_context(|| format!("cannot connect to {}", profile.url))?;
        out.push(client);
    }
    Ok(out)
}

/// The request bodies of each operation, made once (the key and one blob to decrypt).
struct Bodies {
    encrypt: Bytes,
    decrypt: Bytes,
    generate_data_key: Bytes,
}

impl Bodies {
    fn of(&self, op: BenchOp) -> Bytes {
        match op {
            BenchOp::Encrypt => self.encrypt.clone(),
            BenchOp::Decrypt => self.decrypt.clone(),
            BenchOp::GenerateDataKey => self.generate_data_key.clone(),
        }
    }
}

async fn prepare_bodies(client: &async_nats::Client, payload_bytes: usize) -> anyhow::Result<Bodies> {
    let kms = crate::protocol::KmsClient::new(client.clone(), CALL_TIMEOUT);
    let created = kms.call("CreateKey", &json!({"Description": "keyledger bench"})).await?;
    let key_arn = created.body["KeyMetadata"]["Arn"].as_str().context("CreateKey answered no Arn")?.to_owned();
    let b64 = base64::engine::general_purpose::STANDARD;
    // Deterministic, non-secret filler.
    let plaintext: Vec<u8> = (0..payload_bytes).map(|i| (i % 251) as u8).collect();
    let encrypt = json!({"KeyId": key_arn, "Plaintext": b64.encode(&plaintext)});
    let blob = kms.call("Encrypt", &encrypt).await?;
    let blob = blob.body["CiphertextBlob"].as_str().context("Encrypt answered no CiphertextBlob")?.to_owned();
    let decrypt = json!({"CiphertextBlob": blob});
    let back = kms.call("Decrypt", &decrypt).await?;
    anyhow::ensure!(
        back.body["Plaintext"].as_str().map(|p| b64.decode(p).ok()) == Some(Some(plaintext)),
        "Decrypt did not return the plaintext Encrypt was given"
    );
    let generate_data_key = json!({"KeyId": key_arn, "KeySpec": "AES_256"});
    Ok(Bodies {
        encrypt: serde_json::to_vec(&encrypt)?.into(),
        decrypt: serde_json::to_vec(&decrypt)?.into(),
        generate_data_key: serde_json::to_vec(&generate_data_key)?.into(),
    })
}

fn nats_callers(
    clients: &[async_nats::Client],
    concurrency: usize,
    subject: &str,
    body: &Bytes,
) -> Vec<Box<dyn Caller>> {
    (0..concurrency)
        .map(|i| {
            Box::new(NatsCaller {
                client: clients[i % clients.len()].clone(),
                subject: subject.to_owned(),
                body: body.clone(),
            }) as Box<dyn Caller>
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// `keyledger bench`

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!((1..=4096).contains(&args.payload_bytes), "--payload-bytes must be 1-4096 (AWS's Encrypt limit)");
    anyhow::ensure!(args.duration_secs > 0.0 && args.warmup_secs >= 0.0, "durations must be positive");
    if let Some(r) = args.rate {
        anyhow::ensure!(r > 0.0, "--rate must be positive");
    }
    if let Some(f) = args.latency_at_fraction_of_peak {
        anyhow::ensure!(f > 0.0 && f <= 1.0, "--latency-at-fraction-of-peak must be in (0, 1]");
    }
    let openbao_token = match (&args.openbao_addr, &args.openbao_token_file) {
        (None, _) => None,
        (Some(_), Some(file)) => Some(Zeroizing::new(
            std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?.trim().to_owned(),
        )),
        (Some(_), None) => Some(Zeroizing::new(
            std::env::var("BAO_TOKEN").context("--openbao-addr needs --openbao-token-file or $BAO_TOKEN")?,
        )),
    };
    let started_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let use_http = args.transports.contains(&Transport::Http);
    eprintln!(
        "starting nats-server, keyd, cryptod{}{}…",
        if args.no_auditd { "" } else { ", auditd" },
        if use_http { ", gateway" } else { "" }
    );
    let mut environment =
        Environment::start(args.data_dir.as_deref(), bench_role_config(), !args.no_auditd, use_http, !args.lazy_fsync)
            .await?;
    let result = measure_all(&args, &mut environment, openbao_token, started_unix_s).await;
    let stopped = environment.stop().await;
    let report = result?;
    stopped?;
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn measure_all(
    args: &LoadArgs,
    environment: &mut Environment,
    openbao_token: Option<Zeroizing<String>>,
    started_unix_s: u64,
) -> anyhow::Result<Report> {
    let env = &environment.env;
    let clients = tenant_connections(&env.client_profile, args.concurrency.div_ceil(IN_FLIGHT_PER_CONNECTION)).await?;
    let bodies = prepare_bodies(&clients[0], args.payload_bytes).await?;
    if !args.no_echo {
        let service = crate::cli::connect_service(&env.service_profile).await?;
        environment.echo = Some(echo_responder(service).await?);
    }
    let plan = |target: &'static str, transport: Transport, operation: &str, rate: Option<f64>| Plan {
        target,
        transport,
        operation: operation.to_owned(),
        warmup: Duration::from_secs_f64(args.warmup_secs),
        duration: Duration::from_secs_f64(args.duration_secs),
        rate_per_sec: rate,
    };
    let mut measurements = Vec::new();
    if !args.no_echo {
        let callers = nats_callers(&clients, args.concurrency, ECHO_SUBJECT, &bodies.encrypt);
        measurements.push(drive(callers, plan("echo", Transport::Nats, "Echo", args.rate), args.quiet).await?);
    }
    for transport in &args.transports {
        for op in &args.operations {
            let callers: Vec<Box<dyn Caller>> = match transport {
                Transport::Nats => nats_callers(
                    &clients,
                    args.concurrency,
                    &keyledger_events::names::api_subject(op.aws_name()),
                    &bodies.of(*op),
                ),
                Transport::Http => {
                    let gateway = env.gateway.as_ref().context("the gateway is not running")?;
                    let addr = gateway.local_addr();
                    let region = env.roles.as_ref().map(|r| r.ctx.config.realm.region.clone()).unwrap_or_default();
                    let signer = Arc::new(SigV4Signer::from_credentials_file(&env.aws_credentials_path(), &region)?);
                    (0..args.concurrency)
                        .map(|_| {
                            Box::new(GatewayCaller {
                                connection: HttpConnection::new(addr),
                                host: addr.to_string(),
                                signer: signer.clone(),
                                operation: op.aws_name(),
                                body: bodies.of(*op),
                            }) as Box<dyn Caller>
                        })
                        .collect()
                }
            };
            measurements
                .push(drive(callers, plan("keyledger", *transport, op.aws_name(), args.rate), args.quiet).await?);
        }
    }
    let mut openbao_audit_devices = None;
    if let (Some(addr), Some(token)) = (&args.openbao_addr, openbao_token) {
        let (host, socket) = url_host_port(addr)?;
        let token = Arc::new(token);
        let caller = |path: String, body: Bytes| OpenBaoCaller {
            connection: HttpConnection::new(socket),
            host: host.clone(),
            token: token.clone(),
            path,
            body,
        };
        let mut setup = caller(String::new(), Bytes::new());
        openbao_audit_devices = Some(openbao_setup(&mut setup).await?);
        let b64 = base64::engine::general_purpose::STANDARD;
        let plaintext: Vec<u8> = (0..args.payload_bytes).map(|i| (i % 251) as u8).collect();
        let (status, encrypted) = setup
            .once("POST", &format!("/v1/transit/encrypt/{OPENBAO_KEY}"), json!({"plaintext": b64.encode(&plaintext)}))
            .await?;
        let ciphertext = encrypted["data"]["ciphertext"].as_str().filter(|_| status == 200);
        let ciphertext =
            ciphertext.with_context(|| format!("OpenBao transit encrypt failed (HTTP {status})"))?.to_owned();
        for op in &args.operations {
            let (path, body) = match op {
                BenchOp::Encrypt => {
                    (format!("/v1/transit/encrypt/{OPENBAO_KEY}"), json!({"plaintext": b64.encode(&plaintext)}))
                }
                BenchOp::Decrypt => (format!("/v1/transit/decrypt/{OPENBAO_KEY}"), json!({"ciphertext": ciphertext})),
                BenchOp::GenerateDataKey => {
                    (format!("/v1/transit/datakey/plaintext/{OPENBAO_KEY}"), json!({"bits": 256}))
                }
            };
            let body = Bytes::from(serde_json::to_vec(&body)?);
            let callers: Vec<Box<dyn Caller>> = (0..args.concurrency)
                .map(|_| Box::new(caller(path.clone(), body.clone())) as Box<dyn Caller>)
                .collect();
            measurements
                .push(drive(callers, plan("openbao", Transport::Http, op.aws_name(), args.rate), args.quiet).await?);
        }
    }
    if let (Some(fraction), Some(first)) = (args.latency_at_fraction_of_peak, args.operations.first()) {
        let peak = measurements
            .iter()
            .find(|m| m.target == "keyledger" && m.transport == "nats" && m.operation == first.aws_name())
            .map(|m| m.throughput_per_sec)
            .context("--latency-at-fraction-of-peak needs the nats transport")?;
        let rate = (peak * fraction).max(1.0);
        if !args.no_echo {
            let callers = nats_callers(&clients, args.concurrency, ECHO_SUBJECT, &bodies.encrypt);
            measurements.push(drive(callers, plan("echo", Transport::Nats, "Echo", Some(rate)), args.quiet).await?);
        }
        let subject = keyledger_events::names::api_subject(first.aws_name());
        let callers = nats_callers(&clients, args.concurrency, &subject, &bodies.of(*first));
        measurements
            .push(drive(callers, plan("keyledger", Transport::Nats, first.aws_name(), Some(rate)), args.quiet).await?);
    }
    let ratios = ratios(&measurements);
    Ok(Report {
        started_unix_s,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        payload_bytes: args.payload_bytes,
        auditd: !args.no_auditd,
        openbao_audit_devices,
        measurements,
        ratios,
    })
}

/// Mounts transit (if needed), creates the bench key (if needed), and lists the audit devices.
async fn openbao_setup(setup: &mut OpenBaoCaller) -> anyhow::Result<BTreeMap<String, String>> {
    let (status, mounts) = setup.once("GET", "/v1/sys/mounts", serde_json::Value::Null).await?;
    anyhow::ensure!(status == 200, "OpenBao refused to list its mounts (HTTP {status}); is the token right?");
    let has_transit = mounts["data"].get("transit/").is_some() || mounts.get("transit/").is_some();
    if !has_transit {
        let (status, _) = setup.once("POST", "/v1/sys/mounts/transit", json!({"type": "transit"})).await?;
        anyhow::ensure!(status == 204 || status == 200, "cannot mount transit (HTTP {status})");
    }
    let (status, _) =
        setup.once("POST", &format!("/v1/transit/keys/{OPENBAO_KEY}"), json!({"type": "aes256-gcm96"})).await?;
    anyhow::ensure!(status == 204 || status == 200, "cannot create the transit key (HTTP {status})");
    let (status, audit) = setup.once("GET", "/v1/sys/audit", serde_json::Value::Null).await?;
    anyhow::ensure!(status == 200, "cannot list OpenBao's audit devices (HTTP {status})");
    let devices = audit["data"].as_object().or(audit.as_object()).cloned().unwrap_or_default();
    Ok(devices.iter().filter_map(|(path, d)| d["type"].as_str().map(|t| (path.clone(), t.to_owned()))).collect())
}

/// Keyledger ÷ echo (throughput, same mode), Keyledger HTTP ÷ OpenBao, Keyledger NATS ÷
/// OpenBao, and p99 ratios of the open-loop runs.
fn ratios(measurements: &[Measurement]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let find = |target: &str, transport: &str, op: &str, mode: &str| {
        measurements
            .iter()
            .find(|m| m.target == target && m.transport == transport && m.operation == op && m.mode == mode)
    };
    for m in measurements.iter().filter(|m| m.target == "keyledger") {
        if m.transport == "nats" {
            if let Some(echo) = find("echo", "nats", "Echo", &m.mode) {
                if m.mode == "closed" && echo.throughput_per_sec > 0.0 {
                    out.push(Ratio {
                        name: format!("{}/nats ÷ echo, throughput (closed loop)", m.operation),
                        value: m.throughput_per_sec / echo.throughput_per_sec,
                    });
                }
                if m.mode == "open" && echo.p99_us > 0 {
                    out.push(Ratio {
                        name: format!(
                            "{}/nats ÷ echo, p99 at {:.0} req/s (open loop)",
                            m.operation,
                            m.offered_rate_per_sec.unwrap_or_default()
                        ),
                        value: m.p99_us as f64 / echo.p99_us as f64,
                    });
                }
            }
        }
        if let Some(bao) = find("openbao", "http", &m.operation, &m.mode) {
            if m.mode == "closed" && bao.throughput_per_sec > 0.0 {
                out.push(Ratio {
                    name: format!("{}/{} ÷ OpenBao transit/http, throughput", m.operation, m.transport),
                    value: m.throughput_per_sec / bao.throughput_per_sec,
                });
            }
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// `keyledger bench memory`

/// What `keyledger bench memory` reports.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// Keys in the log when the second cryptod started.
    pub keys: usize,
    /// CreateKey requests that failed.
    pub create_errors: u64,
    /// Seconds it took to create the keys.
    pub create_secs: f64,
    /// Resident memory of cryptod on the empty log, bytes.
    pub rss_empty_bytes: u64,
    /// Resident memory of cryptod with every key in its projection, bytes.
    pub rss_loaded_bytes: u64,
    /// (loaded − empty) ÷ keys, bytes.
    pub bytes_per_key: f64,
    /// Time from starting cryptod on the full log until it served (replay included), seconds.
    pub loaded_start_secs: f64,
}

async fn memory(args: MemoryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.keys >= 1 && args.concurrency >= 1, "--keys and --concurrency must be at least 1");
    let mut config = bench_role_config();
    config.limits.max_keys_per_account = config.limits.max_keys_per_account.max(args.keys + 16);
    eprintln!("starting nats-server, keyd, cryptod…");
    let environment = Environment::start(args.data_dir.as_deref(), config, false, false, true).await?;
    let result = memory_in(&args, &environment).await;
    let stopped = environment.stop().await;
    let report = result?;
    stopped?;
    println!();
    println!("cryptod resident memory, {} keys (default key settings: the default key policy, no grants)", report.keys);
    println!("  empty log      {:>8.1} MiB", report.rss_empty_bytes as f64 / 1048576.0);
    println!(
        "  with the keys  {:>8.1} MiB (served {:.1} s after start, replay included)",
        report.rss_loaded_bytes as f64 / 1048576.0,
        report.loaded_start_secs
    );
    println!("  per key        {:>8.0} bytes", report.bytes_per_key);
    println!("  created in     {:>8.1} s ({} errors)", report.create_secs, report.create_errors);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn memory_in(args: &MemoryArgs, environment: &Environment) -> anyhow::Result<MemoryReport> {
    let env = &environment.env;
    let config_path = env.data_dir.join("bench-cryptod.toml");
    let accounts = env.roles.as_ref().map(|r| r.ctx.config.accounts.clone()).unwrap_or_default();
    let mut toml = String::from("roles = [\"cryptod\"]\n");
    toml.push_str(&format!("service_profile = {:?}\n", env.data_dir.join("service.json")));
    toml.push_str(&format!("root_key_file = {:?}\n", env.data_dir.join("root.key")));
    toml.push_str("[accounts]\n");
    for (nats_account, account) in &accounts {
        toml.push_str(&format!("{nats_account:?} = {account:?}\n"));
    }
    crate::private_file::write_private(&config_path, toml.as_bytes())?;

    let (rss_empty_bytes, _) = cryptod_rss(&config_path).await?;

    let clients = tenant_connections(&env.client_profile, args.concurrency.div_ceil(IN_FLIGHT_PER_CONNECTION)).await?;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(args.keys as u64) };
    bar.set_style(
        ProgressStyle::with_template("creating keys [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.concurrency {
        let kms = crate::protocol::KmsClient::new(clients[i % clients.len()].clone(), CALL_TIMEOUT);
        let (next, errors, bar, keys) = (next.clone(), errors.clone(), bar.clone(), args.keys as u64);
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < keys {
                if kms.call("CreateKey", &json!({})).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                bar.inc(1);
            }
        }));
    }
    for t in tasks {
        t.await.context("a CreateKey task panicked")?;
    }
    bar.finish_and_clear();
    let create_secs = started.elapsed().as_secs_f64();
    let create_errors = errors.load(Ordering::Relaxed);
    let keys = args.keys - create_errors as usize;

    let (rss_loaded_bytes, loaded_start_secs) = cryptod_rss(&config_path).await?;
    Ok(MemoryReport {
        keys,
        create_errors,
        create_secs,
        rss_empty_bytes,
        rss_loaded_bytes,
        bytes_per_key: (rss_loaded_bytes as f64 - rss_empty_bytes as f64) / keys.max(1) as f64,
        loaded_start_secs,
    })
}

/// Starts `keyledger serve` with the cryptod config, waits until it serves (it replays the
/// whole control log first), lets it settle, reads its resident memory, stops it. Returns
/// (resident bytes, seconds until it served).
async fn cryptod_rss(config: &Path) -> anyhow::Result<(u64, f64)> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("KEYLEDGER_LOG", "warn,keyledger=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start cryptod")?;
    let pid = child.id().context("cryptod has no pid")?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().context("no stderr")?).lines();
    let serving = tokio::time::timeout(Duration::from_secs(600), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("keyledger serving") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    anyhow::ensure!(serving, "cryptod did not start serving");
    let served_after = started.elapsed().as_secs_f64();
    // Drain its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("cannot read cryptod's status")?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
    if tokio::time::timeout(Duration::from_secs(20), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    Ok((rss_kib * 1024, served_after))
}
