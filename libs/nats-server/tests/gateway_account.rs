//! The gateway account on a real nats-server: its requests cross the import with `share: true`
//! (so the server stamps `acc: GATEWAY`), it may publish only the API and read only its own
//! inbox, and a tenant cannot pass itself off as the gateway.

use std::time::Duration;

use async_nats::{ConnectOptions, Event, HeaderMap};
use futures::StreamExt;
use keyledger_nats_server::{start_loopback, DevTopology, ServiceProfile, GATEWAY_ACCOUNT};
use tokio::sync::mpsc;

async fn connect(p: &ServiceProfile) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = ConnectOptions::with_user_and_password(p.user.clone(), p.password.expose().to_owned())
        .custom_inbox_prefix(p.inbox_prefix.clone())
        .name("gateway-test")
        .request_timeout(Some(Duration::from_secs(2)))
        .event_callback(move |e: Event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e.to_string());
            }
        })
        .connect(p.url.as_str())
        .await
        .unwrap();
    (client, rx)
}

/// A responder (service user) on `kms.v1.Ping` that answers with the stamped request info and
/// the forwarded-principal header it received.
async fn spawn_echo(client: async_nats::Client) {
    let mut sub = client.subscribe("kms.v1.Ping").await.unwrap();
    client.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let header = |name: &str| {
                msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned()).unwrap_or_default()
            };
            let body = serde_json::json!({
                "info": header("Nats-Request-Info"),
                "forwarded": header("Keyledger-Forwarded-Principal"),
            });
            if let Some(reply) = msg.reply.clone() {
                client.publish(reply, body.to_string().into()).await.unwrap();
            }
        }
    });
}

async fn expect_violation(events: &mut mpsc::UnboundedReceiver<String>, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no permissions violation mentioning {needle}"))
            .unwrap();
        if e.to_lowercase().contains("permissions violation") && e.contains(needle) {
            return;
        }
    }
}

#[tokio::test]
async fn gateway_requests_are_stamped_with_the_gateway_account_and_keep_the_forwarded_header() {
    let dir = tempfile::tempdir().unwrap();
    let topology = DevTopology::dev();
    let server = start_loopback(topology.clone(), dir.path()).unwrap();
    spawn_echo(connect(&server.service_profile()).await.0).await;
    let (gateway, _events) = connect(&topology.gateway_profile(&server.url()).unwrap()).await;

    let mut headers = HeaderMap::new();
    headers.insert("Keyledger-Forwarded-Principal", r#"{"account":"111122223333"}"#);
    headers.insert("Nats-Request-Info", r#"{"acc":"DEV","user":"dev"}"#);
    let reply = gateway.request_with_headers("kms.v1.Ping", headers, "x".into()).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    let info: serde_json::Value = serde_json::from_str(body["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["acc"], GATEWAY_ACCOUNT, "the server replaced the forged header");
    assert_eq!(info["user"], "gateway");
    assert_eq!(info["name"], "gateway-test");
    assert_eq!(body["forwarded"], r#"{"account":"111122223333"}"#);
}

#[tokio::test]
async fn a_tenant_forwarding_a_principal_is_still_stamped_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_loopback(DevTopology::dev(), dir.path()).unwrap();
    spawn_echo(connect(&server.service_profile()).await.0).await;
    let tenant = server.client_profile("DEV").unwrap();
    let tenant = ServiceProfile {
        url: tenant.url,
        nats_account: "DEV".into(),
        user: tenant.user,
        password: tenant.password,
        inbox_prefix: tenant.inbox_prefix,
        ca_file: None,
    };
    let (client, _events) = connect(&tenant).await;
    let mut headers = HeaderMap::new();
    headers.insert("Keyledger-Forwarded-Principal", r#"{"account":"444455556666"}"#);
    headers.insert("Nats-Request-Info", r#"{"acc":"GATEWAY","user":"gateway"}"#);
    let reply = client.request_with_headers("kms.v1.Ping", headers, "x".into()).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    let info: serde_json::Value = serde_json::from_str(body["info"].as_str().unwrap()).unwrap();
    // The roles see acc DEV next to the forged header, and refuse it (services/keyledger identity).
    assert_eq!(info["acc"], "DEV");
}

#[tokio::test]
async fn the_gateway_may_not_publish_outside_the_api_or_read_other_inboxes() {
    let dir = tempfile::tempdir().unwrap();
    let topology = DevTopology::dev();
    let server = start_loopback(topology.clone(), dir.path()).unwrap();
    let (gateway, mut events) = connect(&topology.gateway_profile(&server.url()).unwrap()).await;
    gateway.publish("kl.v1.ctl.111122223333.key.x", "forged".into()).await.unwrap();
    gateway.flush().await.unwrap();
    expect_violation(&mut events, "kl.v1.ctl.111122223333.key.x").await;
    let _sub = gateway.subscribe("_INBOX.dev.>").await.unwrap();
    gateway.flush().await.unwrap();
    expect_violation(&mut events, "_INBOX.dev.>").await;
}
