//! Identity is what the NATS server stamps, never what the caller claims.

use async_nats::HeaderMap;
use keyledger_events::names;
use keyledger_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_request_info_header_is_replaced_by_the_server() {
    let h = Harness::start().await;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Request-Info", r#"{"acc":"KEYLEDGER","user":"admin"}"#);
    let reply = h
        .client
        .nats()
        .request_with_headers(names::api_subject("CreateKey"), headers, "{}".into())
        .await
        .expect("reply");
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    let key = body["KeyMetadata"]["KeyId"].as_str().expect("created").to_owned();
    assert_eq!(body["KeyMetadata"]["AWSAccountId"], ACCOUNT, "the key belongs to the real caller's account");

    // The event records the stamped caller, not the forged one.
    let nats = h.service_nats().await;
    let log = keyledger_log::ControlLog::open(keyledger_log::jetstream(nats), 1).await.unwrap();
    let head = log
        .subject_head(&names::control_subject(ACCOUNT, keyledger_events::AggregateKind::Key, &key))
        .await
        .unwrap()
        .unwrap();
    let event = keyledger_events::decode(&head.payload).unwrap();
    assert_eq!(event.record.principal.nats_account, "DEV");
    assert_eq!(event.record.principal.user, "dev");
    assert_eq!(event.record.principal.arn, format!("arn:aws:iam::{ACCOUNT}:user/dev"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_did_not_cross_the_import_is_refused() {
    let h = Harness::start().await;
    // The service user sits inside the KEYLEDGER account: its requests carry no stamped
    // identity, and a header it writes itself must not be believed.
    let nats = h.service_nats().await;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Request-Info", r#"{"acc":"DEV","user":"dev"}"#);
    let reply = nats.request_with_headers(names::api_subject("CreateKey"), headers, "{}".into()).await;
    match reply {
        Ok(msg) => {
            let body: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
            assert_eq!(body["__type"], "AccessDeniedException", "{body}");
        }
        // The deployment may also simply not let the service user publish requests.
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let keys = h.ok("ListKeys", json!({})).await;
    assert_eq!(keys["Keys"].as_array().unwrap().len(), 0, "nothing was created");
}
