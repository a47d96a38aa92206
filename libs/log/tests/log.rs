//! Integration tests against a real nats-server (one per test, free loopback port).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, context::Context, stream};
use futures::StreamExt;
use keyledger_events::{names, AggregateKind, MAX_RECORD_BYTES};
use keyledger_log::{
    connect, control_stream_config, ensure_control_stream, ensure_material_stream, material_stream_config,
    verify_config, AppendError, ControlLog, LogError, MaterialStore, RetryPolicy, StreamSetupError,
};
use keyledger_nats_server::{start_loopback, DevTopology, NatsServer, ServiceProfile};

struct Env {
    server: NatsServer,
    dir: tempfile::TempDir,
}

fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let server = start_loopback(DevTopology::dev().with_admin(), dir.path()).unwrap();
    Env { server, dir }
}

async fn js_for(p: &ServiceProfile) -> Context {
    let client = connect(&p.url, &p.user, p.password.expose(), &p.inbox_prefix, "log-test").await.unwrap();
    keyledger_log::jetstream(client)
}

impl Env {
    /// JetStream as the (restricted) dev service user: what the roles use.
    async fn service_js(&self) -> Context {
        js_for(&self.server.service_profile()).await
    }
    /// JetStream as the unrestricted admin user, to try what the server itself must refuse.
    async fn admin_js(&self) -> Context {
        js_for(&self.server.admin_profile().unwrap()).await
    }
}

fn subject(n: u32) -> String {
    names::control_subject("111122223333", AggregateKind::Key, &format!("key-{n}"))
}

fn id(n: u8) -> [u8; 16] {
    [n; 16]
}

fn record(tag: &str) -> Vec<u8> {
    format!("record {tag}").into_bytes()
}

#[tokio::test]
async fn control_stream_is_created_with_the_required_protections() {
    let env = start();
    let log = ControlLog::open(env.service_js().await, 1).await.unwrap();
    let info = env.admin_js().await.get_stream(names::CONTROL_STREAM).await.unwrap().get_info().await.unwrap();
    let c = &info.config;
    assert_eq!(c.subjects, vec![names::CONTROL_SUBJECTS.to_owned()]);
    assert_eq!(c.storage, stream::StorageType::File);
    assert!(c.deny_delete && c.deny_purge && !c.allow_rollup && c.allow_direct);
    assert_eq!(c.discard, stream::DiscardPolicy::New);
    assert!(c.max_age.is_zero());
    assert_eq!((c.max_messages, c.max_bytes, c.max_messages_per_subject), (-1, -1, -1));
    assert_eq!(c.duplicate_window, Duration::from_secs(120));
    assert!(c.max_message_size as usize >= MAX_RECORD_BYTES);
    verify_config(&control_stream_config(1), c).unwrap();
    // Opening again verifies the existing stream and succeeds.
    ControlLog::open(env.service_js().await, 1).await.unwrap();
    assert_eq!(log.head_seq().await.unwrap(), 0);
}

#[tokio::test]
async fn material_stream_is_created_erasable_but_not_purgeable() {
    let env = start();
    ensure_material_stream(&env.service_js().await, 1).await.unwrap();
    let info = env.admin_js().await.get_stream(names::MATERIAL_STREAM).await.unwrap().get_info().await.unwrap();
    let c = &info.config;
    assert!(!c.deny_delete && c.deny_purge && !c.allow_rollup && c.allow_direct);
    assert_eq!(c.max_messages_per_subject, 1);
    assert!(c.discard_new_per_subject);
    assert!(c.max_age.is_zero());
    verify_config(&material_stream_config(1), c).unwrap();
}

#[tokio::test]
async fn server_refuses_message_delete_and_purge_on_the_control_stream() {
    let env = start();
    let log = ControlLog::open(env.service_js().await, 1).await.unwrap();
    let seq = log.append(&subject(1), 0, id(1), record("a")).await.unwrap();

    let admin = env.admin_js().await;
    let s = admin.get_stream(names::CONTROL_STREAM).await.unwrap();
    let delete = s.delete_message(seq).await;
    assert!(delete.as_ref().is_err_and(|e| e.to_string().contains("not permitted")), "{delete:?}");
    let purge = s.purge().await;
    assert!(purge.as_ref().is_err_and(|e| e.to_string().contains("not permitted")), "{purge:?}");
    assert_eq!(log.get(seq).await.unwrap().unwrap().payload, record("a"));
    assert_eq!(log.head_seq().await.unwrap(), 1);
}

#[tokio::test]
async fn weaker_existing_control_stream_is_refused_and_left_unchanged() {
    let env = start();
    let admin = env.admin_js().await;
    let mut weak = control_stream_config(1);
    weak.deny_delete = false;
    admin.create_stream(weak).await.unwrap();
    let before = admin.get_stream(names::CONTROL_STREAM).await.unwrap().get_info().await.unwrap().config;

    let err = ensure_control_stream(&env.service_js().await, 1).await.unwrap_err();
    match &err {
        StreamSetupError::Weaker { field, stream, .. } => {
            assert_eq!(*field, "deny_delete");
            assert_eq!(stream, names::CONTROL_STREAM);
        }
        other => panic!("expected Weaker, got {other:?}"),
    }
    assert!(err.to_string().contains("deny_delete"));

    let after = admin.get_stream(names::CONTROL_STREAM).await.unwrap().get_info().await.unwrap().config;
    assert!(!after.deny_delete);
    assert_eq!(before, after);
}

#[tokio::test]
async fn existing_stream_with_fewer_replicas_than_required_is_refused() {
    let env = start();
    ensure_control_stream(&env.service_js().await, 1).await.unwrap();
    let err = ensure_control_stream(&env.service_js().await, 3).await.unwrap_err();
    assert!(matches!(err, StreamSetupError::Weaker { field: "num_replicas", .. }), "{err:?}");
}

#[tokio::test]
async fn weaker_existing_material_stream_is_refused() {
    let env = start();
    let admin = env.admin_js().await;
    let mut weak = material_stream_config(1);
    weak.max_messages_per_subject = -1;
    weak.discard_new_per_subject = false;
    admin.create_stream(weak).await.unwrap();
    let err = MaterialStore::open(env.service_js().await, 1).await.unwrap_err();
    assert!(matches!(err, StreamSetupError::Weaker { field: "max_msgs_per_subject", .. }), "{err:?}");
}

#[tokio::test]
async fn concurrent_appends_with_the_same_expected_seq_have_exactly_one_winner() {
    let env = start();
    let log = ControlLog::open(env.service_js().await, 1).await.unwrap();
    let other = ControlLog::open(env.service_js().await, 1).await.unwrap();
    for round in 0..5u32 {
        let subj = subject(round);
        let (a, b) = tokio::join!(
            log.append(&subj, 0, id(2 * round as u8 + 1), record(&format!("a{round}"))),
            other.append(&subj, 0, id(2 * round as u8 + 2), record(&format!("b{round}"))),
        );
        let (winner, loser) = match (a, b) {
            (Ok(s), Err(e)) | (Err(e), Ok(s)) => (s, e),
            (a, b) => panic!("expected exactly one winner, got {a:?} and {b:?}"),
        };
        match loser {
            AppendError::Conflict { current_last_seq } => {
                assert_eq!(current_last_seq, Some(winner))
            }
            other => panic!("expected Conflict, got {other:?}"),
        }
        assert_eq!(log.subject_head(&subj).await.unwrap().unwrap().stream_seq, winner);
    }
    assert_eq!(log.head_seq().await.unwrap(), 5);
}

#[tokio::test]
async fn reappending_the_same_event_returns_its_original_sequence() {
    let env = start();
    let log = ControlLog::open(env.service_js().await, 1).await.unwrap();
    let s = subject(7);
    let first = log.append(&s, 0, id(1), record("one")).await.unwrap();
    // A retry of a stored event (same bytes, id and expected seq) gets the original sequence.
    assert_eq!(log.append(&s, 0, id(1), record("one")).await.unwrap(), first);
    let second = log.append(&s, first, id(2), record("two")).await.unwrap();
    assert_eq!(second, first + 1);
    // Even after the subject moved on, the retry finds the original sequence.
    assert_eq!(log.append(&s, 0, id(1), record("one")).await.unwrap(), first);
    // Payload equality decides, not the duplicate window (here: a different message id).
    assert_eq!(log.append(&s, first, id(9), record("two")).await.unwrap(), second);
    // A different event with the stale expectation is a real conflict.
    match log.append(&s, first, id(3), record("three")).await {
        Err(AppendError::Conflict { current_last_seq }) => {
            assert_eq!(current_last_seq, Some(second))
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(log.head_seq().await.unwrap(), 2);
}

#[tokio::test]
async fn conflicts_report_the_current_head_of_the_subject() {
    let env = start();
    let log = ControlLog::open(env.service_js().await, 1).await.unwrap();
    let s = subject(3);
    match log.append(&s, 5, id(1), record("x")).await {
        Err(AppendError::Conflict { current_last_seq: None }) => {}
        other => panic!("expected Conflict on an empty subject, got {other:?}"),
    }
    let seq = log.append(&s, 0, id(2), record("y")).await.unwrap();
    match log.append(&s, 0, id(3), record("z")).await {
        Err(AppendError::Conflict { current_last_seq }) => assert_eq!(current_last_seq, Some(seq)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    // Sequences are per stream: a second subject's first event expects 0.
    let other = log.append(&subject(4), 0, id(4), record("w")).await.unwrap();
    assert_eq!(other, seq + 1);
}

#[tokio::test]
async fn records_up_to_the_size_limit_are_accepted() {
    let env = start();
    let log = ControlLog::open(env.service_js().await, 1).await.unwrap();
    let max = vec![0xA5u8; MAX_RECORD_BYTES];
    let seq = log.append(&subject(1), 0, id(1), max.clone()).await.unwrap();
    assert_eq!(log.get(seq).await.unwrap().unwrap().payload, max);
    let too_big = vec![0u8; MAX_RECORD_BYTES + 1];
    assert!(matches!(log.append(&subject(2), 0, id(2), too_big).await, Err(AppendError::TooLarge { .. })));
}

#[tokio::test]
async fn reads_return_stored_records_with_server_time() {
    let env = start();
    let log = ControlLog::open(env.service_js().await, 1).await.unwrap();
    assert!(log.get(1).await.unwrap().is_none());
    assert!(log.subject_head(&subject(1)).await.unwrap().is_none());
    let s1 = log.append(&subject(1), 0, id(1), record("a")).await.unwrap();
    let s2 = log.append(&subject(1), s1, id(2), record("b")).await.unwrap();
    let head = log.subject_head(&subject(1)).await.unwrap().unwrap();
    assert_eq!((head.stream_seq, head.payload.as_ref()), (s2, &record("b")[..]));
    assert_eq!(head.subject, subject(1));
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(head.server_time_unix_ms.abs_diff(now_ms) < 60_000, "{head:?}");
    let first = log.get(s1).await.unwrap().unwrap();
    assert_eq!(first.payload, record("a"));
    assert!(log.get(s2 + 1).await.unwrap().is_none());
    assert_eq!(log.head_seq().await.unwrap(), s2);
}

#[tokio::test]
async fn follow_yields_every_record_in_order_from_any_start() {
    let env = start();
    let log = ControlLog::open(env.service_js().await, 1).await.unwrap();
    let mut heads = [0u64; 3];
    for n in 0..10u32 {
        let k = (n % 3) as usize;
        heads[k] = log.append(&subject(k as u32), heads[k], id(n as u8 + 1), record(&n.to_string())).await.unwrap();
    }
    for from in [0u64, 1, 4, 10] {
        let got: Vec<_> = log.follow(from).take(10 - from.max(1) as usize + 1).map(|r| r.unwrap()).collect().await;
        let seqs: Vec<u64> = got.iter().map(|r| r.stream_seq).collect();
        assert_eq!(seqs, (from.max(1)..=10).collect::<Vec<_>>());
        for r in &got {
            let n = r.stream_seq as u32 - 1;
            assert_eq!(r.payload, record(&n.to_string()));
            assert_eq!(r.subject, subject(n % 3));
        }
    }
    // A follower waiting past the head receives new appends.
    let mut live = Box::pin(log.follow(11));
    let appended = log.append(&subject(9), 0, id(200), record("live")).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), live.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((next.stream_seq, next.payload.as_ref()), (appended, &record("live")[..]));
}

#[tokio::test]
async fn read_range_ends_at_the_requested_or_current_head() {
    let env = start();
    let log = ControlLog::open(env.service_js().await, 1).await.unwrap();
    assert_eq!(log.read_range(1, 100).await.unwrap().count().await, 0);
    let mut prev = 0;
    for n in 0..8u8 {
        prev = log.append(&subject(1), prev, id(n + 1), record(&n.to_string())).await.unwrap();
    }
    let seqs = |v: Vec<Result<keyledger_log::StoredRecord, LogError>>| {
        v.into_iter().map(|r| r.unwrap().stream_seq).collect::<Vec<_>>()
    };
    let mid = log.read_range(3, 6).await.unwrap().collect().await;
    assert_eq!(seqs(mid), vec![3, 4, 5, 6]);
    let tail = log.read_range(6, 1000).await.unwrap().collect().await;
    assert_eq!(seqs(tail), vec![6, 7, 8]);
    assert_eq!(log.read_range(9, 20).await.unwrap().count().await, 0);
}

#[tokio::test]
async fn material_put_get_and_erase() {
    let env = start();
    let store = MaterialStore::open(env.service_js().await, 1).await.unwrap();
    let acct = "111122223333";
    let (m1, m2, m3) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    // Distinctive bytes, so we can also look for them in the store files.
    let wrapped1: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5C).collect();
    let wrapped2: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(91) ^ 0xC3).collect();

    let s1 = store.put(acct, "key-a", 1, &m1, &wrapped1).await.unwrap();
    let s2 = store.put(acct, "key-a", 2, &m2, &wrapped2).await.unwrap();
    let other = store.put(acct, "key-b", 1, &m3, b"other key").await.unwrap();
    assert!(s1 < s2 && s2 < other);
    // Writing the same bytes again is idempotent; different bytes conflict.
    assert_eq!(store.put(acct, "key-a", 1, &m1, &wrapped1).await.unwrap(), s1);
    assert!(matches!(
        store.put(acct, "key-a", 1, &m1, b"different").await,
        Err(LogError::MaterialConflict { seq, .. }) if seq == s1
    ));
    assert_eq!(store.get(acct, "key-a", 1, &m1).await.unwrap().unwrap(), wrapped1);
    assert_eq!(store.get(acct, "key-a", 2, &m2).await.unwrap().unwrap(), wrapped2);
    assert!(store.get(acct, "key-a", 3, &m1).await.unwrap().is_none());

    assert_eq!(store.erase_key(acct, "key-a").await.unwrap(), 2);
    assert!(store.get(acct, "key-a", 1, &m1).await.unwrap().is_none());
    assert!(store.get(acct, "key-a", 2, &m2).await.unwrap().is_none());
    assert_eq!(store.erase_key(acct, "key-a").await.unwrap(), 0);
    assert_eq!(store.get(acct, "key-b", 1, &m3).await.unwrap().unwrap(), b"other key");

    // Not retrievable by sequence either, and the bytes are gone from the store files.
    let admin = env.admin_js().await;
    let s = admin.get_stream(names::MATERIAL_STREAM).await.unwrap();
    assert!(s.get_raw_message(s1).await.is_err());
    assert!(s.get_raw_message(s2).await.is_err());
    for needle in [&wrapped1, &wrapped2] {
        assert!(!dir_contains(env.dir.path(), needle), "erased material still present in the store files");
    }
    assert!(dir_contains(env.dir.path(), b"other key"), "sanity: live material is on disk");
}

fn dir_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            dir_contains(&path, needle)
        } else {
            std::fs::read(&path).map(|bytes| bytes.windows(needle.len()).any(|w| w == needle)).unwrap_or(false)
        }
    })
}

#[tokio::test]
async fn material_tokens_are_validated() {
    let env = start();
    let store = MaterialStore::open(env.service_js().await, 1).await.unwrap();
    assert!(matches!(store.put("1111.2222", "k", 1, &[0; 32], b"x").await, Err(LogError::InvalidToken(_))));
    assert!(matches!(store.erase_key("111122223333", "*").await, Err(LogError::InvalidToken(_))));
}

#[tokio::test]
async fn append_during_an_outage_is_unavailable_and_a_later_retry_reconciles() {
    let mut env = start();
    let client = {
        let p = env.server.service_profile();
        connect(&p.url, &p.user, p.password.expose(), &p.inbox_prefix, "outage-test").await.unwrap()
    };
    let js = jetstream::ContextBuilder::new().timeout(Duration::from_millis(500)).build(client.clone());
    let log = ControlLog::open(js, 1).await.unwrap().with_retry(RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(50),
    });
    let s = subject(1);
    env.server.kill().unwrap();
    match log.append(&s, 0, id(1), record("during outage")).await {
        Err(AppendError::Unavailable { attempts, .. }) => assert_eq!(attempts, 2),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    env.server.restart().unwrap();
    // The client reconnects in the background; retry the same event until it lands.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let seq = loop {
        match log.append(&s, 0, id(1), record("during outage")).await {
            Ok(seq) => break seq,
            Err(AppendError::Unavailable { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("expected the event to be stored once, got {other:?}"),
        }
    };
    assert_eq!(seq, 1);
    assert_eq!(log.head_seq().await.unwrap(), 1, "stored exactly once");
}
