//! `keyledger replay --to DIR`: rebuilds, from the log alone, the key-state projection and the
//! audit index into a fresh directory, and prints the state digest (issue #4).
//!
//! The projection is folded with [`crate::follower::apply_record`], the function every role
//! applies records with, over the control stream `KL_CONTROL_V1` from sequence 1 to the head
//! read when replay starts (or `--to-seq`). Its [`Projection::state_digest`] is what the
//! running roles report at `GET /digest` of their health endpoint (`keyledger dev`:
//! `http://127.0.0.1:4281/digest`): at the same control sequence the two are equal.
//!
//! The audit index is rebuilt by the same follower auditd runs, into `DIR/audit-index`, up to
//! every stream's head at the start; the report gives its record count and a digest of its
//! records (BLAKE3 over the sorted JSON of every record), which two replays of the same log
//! share. The index files themselves may differ (tantivy segment layout).
//!
//! Nothing is written outside `DIR`; the log is only read. No secret is read: the control
//! stream holds none and the material stream is not touched.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use keyledger_audit_index::{AuditIndex, Query, Scope, WriterOptions};
use keyledger_kms::{Projection, Realm};
use serde::Serialize;

/// What a replay found.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The last control stream sequence folded.
    pub control_seq: u64,
    /// [`Projection::state_digest`] after it, lowercase hex (64 characters).
    pub state_digest: String,
    /// Control events folded.
    pub events: u64,
    /// Seconds spent folding the control stream.
    pub fold_seconds: f64,
    /// Control events folded per second.
    pub events_per_second: f64,
    /// Live keys in the rebuilt projection (all accounts).
    pub keys: usize,
    /// Audit records in the rebuilt index (`None` with `--no-index`).
    pub index_records: Option<u64>,
    /// BLAKE3 over the sorted JSON of every rebuilt audit record, hex (`None` with
    /// `--no-index`).
    pub index_digest: Option<String>,
    /// Each stream indexed and the head it was indexed to.
    pub streams: Vec<(String, u64)>,
}

/// Folds the control stream from sequence 1 to `to_seq` (the head if `None`) into a fresh
/// projection, showing progress on stderr when `progress`.
///
/// Errors: the stream cannot be read, or a record does not decode, is misplaced or does not
/// apply (replay refuses to produce a state it cannot vouch for).
pub async fn fold_control(
    nats: &async_nats::Client,
    replicas: usize,
    to_seq: Option<u64>,
    progress: bool,
) -> anyhow::Result<(Projection, u64, f64)> {
    let js = keyledger_log::jetstream(nats.clone());
    let log = keyledger_log::ControlLog::open(js, replicas).await.context("cannot open the control stream")?;
    let head = log.head_seq().await?;
    let end = to_seq.map_or(head, |s| s.min(head));
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(end);
        bar.set_style(
            indicatif::ProgressStyle::with_template("replay {bar:40} {pos}/{len} events {per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = Instant::now();
    let mut projection = Projection::new();
    let mut records = log.read_range(1, end).await?;
    let mut count = 0u64;
    while let Some(record) = records.next().await {
        let record = record.context("cannot read the control stream")?;
        crate::follower::apply_record(&mut projection, &record).map_err(anyhow::Error::msg)?;
        count += 1;
        if let Some(b) = &bar {
            if count.is_multiple_of(1024) {
                b.set_position(count);
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if projection.last_applied_seq() != end {
        anyhow::bail!("the control stream ended at {} before {end}", projection.last_applied_seq());
    }
    Ok((projection, count, started.elapsed().as_secs_f64()))
}

/// Rebuilds the audit index into `dir` from every Keyledger stream up to its head at the start.
async fn rebuild_index(
    nats: &async_nats::Client,
    dir: &Path,
    realm: Realm,
    progress: bool,
) -> anyhow::Result<(u64, String, Vec<(String, u64)>)> {
    let js = keyledger_log::jetstream(nats.clone());
    let mut heads = Vec::new();
    for name in crate::export::list_streams(&js).await? {
        let mut stream = js.get_stream(&name).await.with_context(|| format!("cannot open {name}"))?;
        heads.push((name, stream.info().await?.state.last_sequence));
    }
    let index_dir = dir.join(crate::auditd::INDEX_DIR);
    let (index, writer) = {
        let index_dir = index_dir.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let index = AuditIndex::open(&index_dir)?;
            let writer = index.writer(WriterOptions::default())?;
            Ok((index, writer))
        })
        .await??
    };
    let writer = Arc::new(writer);
    let state = Arc::new(crate::auditd::runner::RunnerState::default());
    let task = tokio::spawn(crate::auditd::runner::run(
        js,
        writer.clone(),
        state.clone(),
        realm,
        crate::auditd::runner::RunnerTimings::default(),
    ));
    let mut shown = Instant::now();
    loop {
        let streams = state.streams();
        let done = heads
            .iter()
            .all(|(name, head)| *head == 0 || streams.iter().any(|s| s.stream == *name && s.indexed >= *head));
        if done {
            break;
        }
        if let Some(failed) = streams.iter().find(|s| s.error.is_some()) {
            task.abort();
            anyhow::bail!("indexing {} failed: {}", failed.stream, failed.error.clone().unwrap_or_default());
        }
        if progress && shown.elapsed() >= Duration::from_secs(1) {
            let indexed: u64 = streams.iter().map(|s| s.indexed).sum();
            let total: u64 = heads.iter().map(|(_, h)| h).sum();
            eprint!("\rindexing: {indexed}/{total} messages committed");
            shown = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    let _ = task.await;
    writer.close().await.context("the rebuilt index's final commit failed")?;
    if progress {
        eprintln!();
    }
    index.reload()?;
    let (count, digest) = index_digest(&index)?;
    Ok((count, digest, heads))
}

/// The number of records in `index` and BLAKE3 over their sorted JSON forms.
pub fn index_digest(index: &AuditIndex) -> anyhow::Result<(u64, String)> {
    let mut lines = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = index.search(&Scope::All, &Query::default(), keyledger_audit_index::MAX_LIMIT, cursor.as_deref())?;
        for r in &page.records {
            lines.push(serde_json::to_string(r)?);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    lines.sort();
    let mut h = blake3::Hasher::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    Ok((lines.len() as u64, h.finalize().to_hex().to_string()))
}

/// Runs a replay into `dir` (which must not exist or be empty) and writes `dir/replay.json`.
pub async fn replay(
    nats: &async_nats::Client,
    dir: &Path,
    realm: Realm,
    replicas: usize,
    to_seq: Option<u64>,
    with_index: bool,
    progress: bool,
) -> anyhow::Result<ReplayReport> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!("{} is not empty: replay rebuilds into a fresh directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (projection, events, fold_seconds) = fold_control(nats, replicas, to_seq, progress).await?;
    let keys = projection.all_live_keys().count();
    let (index_records, index_digest, streams) = if with_index {
        let (n, d, s) = rebuild_index(nats, dir, realm, progress).await?;
        (Some(n), Some(d), s)
    } else {
        (None, None, Vec::new())
    };
    let report = ReplayReport {
        control_seq: projection.last_applied_seq(),
        state_digest: hex::encode(projection.state_digest()),
        events,
        fold_seconds,
        events_per_second: if fold_seconds > 0.0 { events as f64 / fold_seconds } else { 0.0 },
        keys,
        index_records,
        index_digest,
        streams,
    };
    std::fs::write(dir.join("replay.json"), serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}

/// `keyledger replay` arguments.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Fresh directory to rebuild into (the audit index goes to DIR/audit-index, the report to
    /// DIR/replay.json).
    #[arg(long)]
    pub to: PathBuf,
    /// Data directory of `keyledger dev` (its service.json names the server and the reader).
    #[arg(long, default_value = ".keyledger", env = "KEYLEDGER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// A service profile to use instead of DATA_DIR/service.json.
    #[arg(long)]
    pub service_profile: Option<PathBuf>,
    /// Fold the control stream only up to this sequence (to compare with a digest a running
    /// service reported at that sequence).
    #[arg(long)]
    pub to_seq: Option<u64>,
    /// Rebuild the projection only, not the audit index.
    #[arg(long)]
    pub no_index: bool,
    /// Stream replicas the deployment uses (1 for `keyledger dev`).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// ARN partition of the deployment.
    #[arg(long, default_value = "aws")]
    pub partition: String,
    /// Region of the deployment.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
}

/// Runs `keyledger replay`: prints the report as JSON on stdout, progress on stderr.
pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let profile_path = args.service_profile.clone().unwrap_or_else(|| args.data_dir.join("service.json"));
    let profile = keyledger_nats_server::ServiceProfile::read_from(&profile_path)
        .with_context(|| format!("cannot read the service profile {}", profile_path.display()))?;
    let nats = super::connect_service(&profile).await?;
    let realm = Realm { partition: args.partition.clone(), region: args.region.clone() };
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = replay(&nats, &args.to, realm, args.replicas, args.to_seq, !args.no_index, progress).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

// ------------------------------------------------------------------------------------------
// `keyledger bench replay`: replay speed against a raw read of the same stream (issue #8).

/// `keyledger bench replay` settings.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayBenchArgs {
    /// Control events to write and replay (one key per 10 events).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Environment directory (default: a temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What `keyledger bench replay` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayBenchReport {
    /// Events in the control stream.
    pub events: u64,
    /// Bytes of their payloads.
    pub payload_bytes: u64,
    /// Seconds to write them (pipelined publishes; the bench's server does not fsync each).
    pub write_secs: f64,
    /// Seconds for a raw ordered-consumer read of every message (no decoding).
    pub raw_read_secs: f64,
    /// Seconds for the replay (ordered read, byte-exact decode, chain check, evolve).
    pub replay_secs: f64,
    /// raw_read_secs ÷ replay_secs: replay throughput as a fraction of the raw read's.
    pub replay_vs_raw: f64,
    /// The state digest after the replay, hex.
    pub state_digest: String,
}

/// The stored bytes of event `n` (0-based) of a synthetic log: key `n / 10`, its event
/// `n % 10` (KeyCreated, then tags, descriptions, disable/enable), chained.
fn synthetic_event(n: u64, prev: [u8; 32]) -> (String, Vec<u8>, [u8; 32]) {
    use keyledger_events::{codes, AggregateKind, Body};
    let account = "111122223333";
    let key = uuid::Uuid::from_u128(0x4000_8000_0000_0000_0000_0000_0000_0000 | u128::from(n / 10)).to_string();
    let seq = n % 10;
    let body = match seq {
        0 => Body::KeyCreatedV2(keyledger_events::KeyCreatedV2 {
            key_spec: codes::key_spec::SYMMETRIC_DEFAULT,
            key_usage: codes::key_usage::ENCRYPT_DECRYPT,
            origin: codes::origin::AWS_KMS,
            description: "replay bench".into(),
            tags: vec![],
            multi_region: false,
            material: Some(keyledger_events::MaterialRefV1 {
                version: 1,
                material_id: *blake3::hash(key.as_bytes()).as_bytes(),
                root_key_id: [7; 16],
                wrapped_digest: [9; 32],
            }),
            policy: None,
            bypass_policy_lockout_safety_check: false,
        }),
        1 | 3 | 5 | 7 => Body::KeyTagsAdded(keyledger_events::KeyTagsAddedV1 {
            tags: vec![keyledger_events::TagV1 { key: format!("t{seq}"), value: n.to_string() }],
        }),
        2 | 6 => Body::KeyDisabled(keyledger_events::KeyDisabledV1 {}),
        4 | 8 => Body::KeyEnabled(keyledger_events::KeyEnabledV1 { rotation_catch_up_due_unix_ms: None }),
        _ => Body::KeyDescriptionUpdated(keyledger_events::KeyDescriptionUpdatedV1 { description: format!("d{n}") }),
    };
    let prev = if seq == 0 { keyledger_events::genesis_hash(AggregateKind::Key, account, &key) } else { prev };
    let draft = keyledger_events::Draft {
        event_id: *uuid::Uuid::from_u128(u128::from(n) + 1).as_bytes(),
        account: account.to_owned(),
        aggregate_kind: AggregateKind::Key,
        aggregate_id: key.clone(),
        aggregate_seq: seq,
        time_unix_ms: 1_700_000_000_000 + n,
        principal: keyledger_events::PrincipalV1::service(),
        request_id: [0; 16],
        prev_hash: prev,
    };
    let (bytes, hash) = keyledger_events::encode(&draft, &body).expect("synthetic events encode");
    (keyledger_events::names::control_subject(account, AggregateKind::Key, &key), bytes, hash)
}

/// Runs `keyledger bench replay`: a nats-server of its own, `--events` synthetic control
/// events written directly to the control stream, then a raw ordered-consumer read of them
/// and a replay, each timed.
pub async fn bench(args: ReplayBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new().prefix("keyledger-replay-bench-").tempdir()?;
    let dir = args.data_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    // A synthetic log written for reading: without `sync_interval: always` (the setting the
    // service ships), so writing a million events takes seconds, not an fsync each. Reads do
    // not depend on it.
    let mut settings = keyledger_nats_server::ServerSettings::loopback(
        dir.join("jetstream"),
        keyledger_nats_server::DevTopology::dev(),
    );
    settings.sync_always = false;
    let mut server =
        keyledger_nats_server::NatsServer::start(&keyledger_nats_server::find_or_install()?, settings, &dir)?;
    let result = bench_in(&args, &server.service_profile()).await;
    let stopped = server.stop();
    let report = result?;
    stopped?;
    println!("replay of {} control events ({:.1} MB)", report.events, report.payload_bytes as f64 / 1e6);
    println!("  written in        {:>8.1} s", report.write_secs);
    println!(
        "  raw ordered read  {:>8.2} s  ({:.0} events/s)",
        report.raw_read_secs,
        report.events as f64 / report.raw_read_secs
    );
    println!(
        "  replay            {:>8.2} s  ({:.0} events/s)",
        report.replay_secs,
        report.events as f64 / report.replay_secs
    );
    println!("  replay ÷ raw      {:>8.2}x (throughput; target ≥ 0.5)", report.replay_vs_raw);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

async fn bench_in(
    args: &ReplayBenchArgs,
    profile: &keyledger_nats_server::ServiceProfile,
) -> anyhow::Result<ReplayBenchReport> {
    let nats = super::connect_service(profile).await?;
    let js = keyledger_log::jetstream(nats.clone());
    let log = keyledger_log::ControlLog::open(js.clone(), 1).await?;
    let bar = indicatif::ProgressBar::new(args.events);
    bar.set_style(
        indicatif::ProgressStyle::with_template("writing [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut prev = [0u8; 32];
    let mut payload_bytes = 0u64;
    let mut pending = futures::stream::FuturesOrdered::new();
    for n in 0..args.events {
        let (subject, bytes, hash) = synthetic_event(n, prev);
        prev = hash;
        payload_bytes += bytes.len() as u64;
        pending.push_back(std::future::IntoFuture::into_future(js.publish(subject, bytes.into()).await?));
        if pending.len() >= 4096 {
            while let Some(ack) = pending.next().await {
                ack?;
            }
            bar.set_position(n + 1);
        }
    }
    while let Some(ack) = pending.next().await {
        ack?;
    }
    bar.finish_and_clear();
    let write_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(log.head_seq().await? == args.events, "the control stream does not hold every event");

    // Raw: an ordered consumer over the same stream, counting bytes.
    let stream = js.get_stream(keyledger_events::names::CONTROL_STREAM).await?;
    let started = Instant::now();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let (mut seen, mut bytes) = (0u64, 0u64);
    while seen < args.events {
        let m = messages.next().await.context("the raw read ended early")??;
        bytes += m.payload.len() as u64;
        seen += 1;
    }
    drop(messages);
    let raw_read_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(bytes == payload_bytes, "the raw read saw other bytes than were written");

    let started = Instant::now();
    let (projection, events, _) = fold_control(&nats, 1, None, false).await?;
    let replay_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(events == args.events, "the replay folded {events} of {} events", args.events);
    Ok(ReplayBenchReport {
        events,
        payload_bytes,
        write_secs,
        raw_read_secs,
        replay_secs,
        replay_vs_raw: raw_read_secs / replay_secs,
        state_digest: hex::encode(projection.state_digest()),
    })
}
