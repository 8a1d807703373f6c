//! Signed webhooks: the outbox's claims on PostgreSQL and SQLite (concurrent deliverers never
//! share a delivery, failures back off and give up, leases pass on, redelivery), and the real
//! `enclave serve` delivering to a receiver that fails the first attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclave_storage::{DeliveryStatus, MetaStore, NewEvent};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::multipart::Form;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{PgDatabase, TestEnv};
use crate::http::{Server, api_key, file_part};

const SECRET: &str = "webhook-test-secret";
const NO_WAIT: Duration = Duration::ZERO;
const LEASE: Duration = Duration::from_secs(30);

fn event(n: usize) -> NewEvent {
    NewEvent {
        event: "document.ingested".into(),
        document_id: Some(format!("doc-{n}")),
        collection: Some("hr".into()),
        document: json!({"id": format!("doc-{n}"), "title": format!("memo {n}")}),
    }
}

async fn outbox_semantics(url: &str) {
    let meta = MetaStore::connect(url, 8).await.unwrap();
    assert!(
        !meta.records_event("document.deleted"),
        "a store records no event unless told to"
    );
    let on = meta
        .clone()
        .with_webhook_events(&["document.deleted".to_string()]);
    assert!(on.records_event("document.deleted"));
    assert!(!on.records_event("document.ingested"));

    // The payload is the envelope of the event, named by the delivery's id.
    let id = meta.record_event(&event(0)).await.unwrap();
    let d = meta.delivery(&id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.attempts, 0);
    let payload: Value = serde_json::from_str(&d.payload).unwrap();
    assert_eq!(payload["id"], id.as_str());
    assert_eq!(payload["event"], "document.ingested");
    assert_eq!(payload["document"]["title"], "memo 0");
    assert!(payload["occurred_at"].as_str().unwrap().ends_with('Z'));

    // Four deliverers, each with its own pool as separate servers would have, drain 40
    // deliveries in batches: every delivery is claimed once and delivered.
    for n in 1..40 {
        meta.record_event(&event(n)).await.unwrap();
    }
    let mut claimers = Vec::new();
    for w in 0..4 {
        let url = url.to_string();
        claimers.push(tokio::spawn(async move {
            let meta = MetaStore::connect(&url, 2).await.unwrap();
            let me = format!("deliverer-{w}");
            let mut got = Vec::new();
            loop {
                let batch = meta.claim_deliveries(&me, LEASE, 5, 3).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                for d in batch {
                    assert_eq!(d.lease_owner.as_deref(), Some(me.as_str()));
                    assert_eq!(d.attempts, 1);
                    assert!(meta.delivery_succeeded(&d.id, &me, 204).await.unwrap());
                    got.push(d.id);
                }
            }
            got
        }));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_claimer = Vec::new();
    for c in claimers {
        let got = c.await.unwrap();
        per_claimer.push(got.len());
        for id in got {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 40, "every delivery claimed: {per_claimer:?}");
    assert!(
        seen.values().all(|&n| n == 1),
        "a delivery was claimed twice"
    );
    let c = meta.delivery_counts().await.unwrap();
    assert_eq!((c.pending, c.delivered, c.failed), (0, 40, 0));
    let d = meta.delivery(&id).await.unwrap().unwrap();
    assert_eq!(d.last_status_code, Some(204));
    assert!(d.delivered_at.is_some());

    // A failed attempt comes back after its backoff; the last allowed one gives up.
    let id = meta.record_event(&event(100)).await.unwrap();
    let d = meta.claim_deliveries("a", LEASE, 2, 10).await.unwrap();
    assert_eq!(d.len(), 1);
    let status = meta
        .delivery_failed(
            &d[0],
            "a",
            "the receiver answered 500",
            Some(500),
            2,
            NO_WAIT,
        )
        .await
        .unwrap();
    assert_eq!(status, Some(DeliveryStatus::Pending));
    let d = meta.claim_deliveries("b", LEASE, 2, 10).await.unwrap();
    assert_eq!((d.len(), d[0].attempts), (1, 2));
    // "a" no longer holds it.
    assert!(!meta.delivery_succeeded(&id, "a", 200).await.unwrap());
    let status = meta
        .delivery_failed(&d[0], "b", "connection refused", None, 2, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(status, Some(DeliveryStatus::Failed));
    let gone = meta.delivery(&id).await.unwrap().unwrap();
    assert_eq!(gone.status, DeliveryStatus::Failed);
    assert_eq!(gone.attempts, 2);
    assert_eq!(gone.last_error.as_deref(), Some("connection refused"));
    assert!(gone.lease_owner.is_none());
    assert!(
        meta.claim_deliveries("c", LEASE, 2, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        meta.deliveries(Some(DeliveryStatus::Failed), 10, 0)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        vec![id.as_str()]
    );

    // Redelivery puts it back, due now, with its attempts reset; a pending one is refused.
    assert!(meta.redeliver(&id).await.unwrap());
    assert!(!meta.redeliver(&id).await.unwrap());
    let back = meta.delivery(&id).await.unwrap().unwrap();
    assert_eq!((back.status, back.attempts), (DeliveryStatus::Pending, 0));

    // A backoff keeps it from the next claim.
    let d = meta.claim_deliveries("a", LEASE, 5, 10).await.unwrap();
    assert_eq!(d.len(), 1);
    meta.delivery_failed(&d[0], "a", "503", Some(503), 5, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        meta.claim_deliveries("a", LEASE, 5, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(meta.redeliver(&id).await.is_ok_and(|done| !done));

    // A lease that runs out passes the delivery on; its first holder can no longer record.
    let id = meta.record_event(&event(200)).await.unwrap();
    let d = meta.claim_deliveries("a", NO_WAIT, 5, 10).await.unwrap();
    assert_eq!(d.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let d2 = meta.claim_deliveries("b", LEASE, 5, 10).await.unwrap();
    assert_eq!(d2.len(), 1);
    assert_eq!((d2[0].id.as_str(), d2[0].attempts), (id.as_str(), 2));
    assert!(!meta.delivery_succeeded(&id, "a", 200).await.unwrap());
    assert_eq!(
        meta.delivery_failed(&d[0], "a", "late", None, 5, NO_WAIT)
            .await
            .unwrap(),
        None
    );
    assert!(meta.delivery_succeeded(&id, "b", 200).await.unwrap());
    meta.close().await;
}

#[tokio::test]
async fn webhook_outbox_on_postgres() {
    let db = PgDatabase::create().await;
    outbox_semantics(&db.url).await;
    db.drop_now().await;
}

#[tokio::test]
async fn webhook_outbox_on_sqlite() {
    let env = TestEnv::embedded();
    outbox_semantics(&env.db_url()).await;
}

/// What the test receiver got: headers (lower-case names), body, and the status it answered.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: String,
    answered: u16,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A small HTTP receiver on a free port: answers 500 to the first request it gets and 200 to
/// every later one. Returns its URL and what it received.
async fn receiver() -> (String, Inbox) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/enclave", listener.local_addr().unwrap());
    let inbox: Inbox = Arc::default();
    let got = Arc::clone(&inbox);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let got = Arc::clone(&got);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = find(&buf, b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.lines();
                let request_line = lines.next().unwrap_or_default().to_string();
                let mut headers: HashMap<String, String> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                headers.insert(":request".into(), request_line);
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
                let answered = {
                    let mut got = got.lock().unwrap();
                    let answered = if got.is_empty() { 500 } else { 200 };
                    got.push(Received {
                        headers,
                        body,
                        answered,
                    });
                    answered
                };
                let reason = if answered == 200 {
                    "OK"
                } else {
                    "Internal Server Error"
                };
                let text = if answered == 200 { "" } else { "try again" };
                let response = format!(
                    "HTTP/1.1 {answered} {reason}\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, inbox)
}

/// Checks `X-Enclave-Signature` the way a receiver would: `t=<secs>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>">`, recent.
fn assert_signed(r: &Received) {
    let header = r
        .headers
        .get("x-enclave-signature")
        .unwrap_or_else(|| panic!("no signature: {:?}", r.headers));
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("malformed signature {header:?}"));
    let t: u64 = t.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(t) < 300, "signature time {t} vs now {now}");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", r.body).as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    assert_eq!(v1, expected, "signature of {}", r.body);
    // Another secret does not verify.
    let mut other = Hmac::<Sha256>::new_from_slice(b"not-the-secret").unwrap();
    other.update(format!("{t}.{}", r.body).as_bytes());
    assert_ne!(v1, hex::encode(other.finalize().into_bytes()));
}

/// Waits until the receiver holds `n` requests for `event`; returns them in order.
async fn received(inbox: &Inbox, event: &str, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got: Vec<Received> = inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.headers.get("x-enclave-event").map(String::as_str) == Some(event))
            .cloned()
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "the receiver got {} {event} requests, expected {n}: {:?}",
            got.len(),
            inbox.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn signed_webhooks_are_retried_until_delivered() {
    let (url, inbox) = receiver().await;
    let env = TestEnv::embedded();
    let admin = api_key(&env, "admin");
    let editor = api_key(&env, "editor");
    let server = Server::start(
        &env,
        &[
            ("ENCLAVE_WEBHOOKS__URL", url.as_str()),
            ("ENCLAVE_WEBHOOKS__SECRET", SECRET),
            ("ENCLAVE_WEBHOOKS__RETRY_BASE_SECS", "1"),
            ("ENCLAVE_WEBHOOKS__TIMEOUT_SECS", "5"),
        ],
    );
    let s = &server;
    let r = s
        .post(&admin, "/api/v1/collections")
        .json(&json!({"name": "hooks"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let text = "Webhook notes.\n\nThe quarterly maintenance window for the archive servers \
                is the first Sunday of each quarter, from two to six in the morning.\n";
    let form = Form::new()
        .text("collection", "hooks")
        .text("external_id", "dms-4711")
        .part(
            "file",
            file_part("maintenance.txt", text.as_bytes().to_vec()),
        );
    let (status, up) = s.upload(&editor, form).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    let id = up["id"].as_str().unwrap().to_string();
    let doc = s.settled(&editor, &id).await;
    assert_eq!(doc["status"], "ready", "{doc}");

    // The first attempt got 500, the retry (about a second later) 200: the same delivery,
    // the same body, signed both times.
    let got = received(&inbox, "document.ingested", 2).await;
    let (first, second) = (&got[0], &got[1]);
    assert_eq!((first.answered, second.answered), (500, 200));
    for r in [first, second] {
        assert_signed(r);
        assert!(r.headers[":request"].starts_with("POST /hooks/enclave "));
        assert_eq!(r.headers["content-type"], "application/json");
    }
    assert_eq!(
        first.headers["x-enclave-delivery"],
        second.headers["x-enclave-delivery"]
    );
    assert_eq!(first.body, second.body);
    let delivery = second.headers["x-enclave-delivery"].clone();
    let payload: Value = serde_json::from_str(&second.body).unwrap();
    assert_eq!(payload["id"], delivery.as_str());
    assert_eq!(payload["event"], "document.ingested");
    assert!(payload["occurred_at"].is_string());
    let d = &payload["document"];
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["collection"], "hooks");
    assert_eq!(d["external_id"], "dms-4711");
    assert_eq!(d["status"], "ready");
    assert_eq!(d["version"], 1);
    assert!(d["chunk_count"].as_i64().unwrap() >= 1, "{d}");
    assert_eq!(d["page_count"], doc["page_count"]);

    // The delivery status shows it: delivered at the second attempt, after a 500.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let r = s
            .get(&admin, "/api/v1/webhooks/deliveries")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let list: Value = r.json().await.unwrap();
        let done = list["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == delivery.as_str())
            .filter(|x| x["status"] == "delivered")
            .cloned();
        if let Some(x) = done {
            assert_eq!(list["enabled"], true);
            assert_eq!(list["delivered"], 1, "{list}");
            break x;
        }
        assert!(Instant::now() < deadline, "not delivered: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listed["event"], "document.ingested");
    assert_eq!(listed["attempts"], 2, "{listed}");
    assert_eq!(listed["last_status_code"], 200, "{listed}");
    assert_eq!(listed["document_id"], id.as_str());
    assert!(listed["delivered_at"].is_string());
    let r = s
        .get(&admin, "/api/v1/webhooks/deliveries?status=failed")
        .send()
        .await
        .unwrap();
    let failed: Value = r.json().await.unwrap();
    assert_eq!(
        failed["deliveries"].as_array().unwrap().len(),
        0,
        "{failed}"
    );
    // Administrators only; a wrong status is named.
    let r = s
        .get(&editor, "/api/v1/webhooks/deliveries")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .get(&admin, "/api/v1/webhooks/deliveries?status=lost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Deleting the document sends document.deleted.
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/documents/{id}")))
        .bearer_auth(&editor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let got = received(&inbox, "document.deleted", 1).await;
    assert_eq!(got[0].answered, 200);
    assert_signed(&got[0]);
    let payload: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(payload["event"], "document.deleted");
    assert_eq!(payload["document"]["id"], id.as_str());
    assert_eq!(payload["document"]["status"], "deleted");
    assert_eq!(payload["document"]["title"], doc["title"]);

    // A delivered event can be sent again; a pending one cannot.
    let r = s
        .post(
            &admin,
            &format!("/api/v1/webhooks/deliveries/{delivery}/redeliver"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let again: Value = r.json().await.unwrap();
    assert_eq!(
        (again["status"].as_str(), again["attempts"].as_i64()),
        (Some("pending"), Some(0))
    );
    let got = received(&inbox, "document.ingested", 3).await;
    assert_eq!(got[2].headers["x-enclave-delivery"], delivery);
    assert_signed(&got[2]);
    let r = s
        .post(&admin, "/api/v1/webhooks/deliveries/nope/redeliver")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Both operations are in the OpenAPI document.
    let doc: Value = s
        .client
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/webhooks/deliveries"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/webhooks/deliveries/{id}/redeliver"]["post"].is_object());
}

#[tokio::test]
async fn the_command_line_records_deletions_only_when_webhooks_are_on() {
    let mut env = TestEnv::embedded();
    let docs = env.docs();
    for name in ["kept-quiet.txt", "announced.txt"] {
        std::fs::write(
            docs.join(name),
            format!("{name}: the archive servers are patched on the first Sunday of the month.\n"),
        )
        .unwrap();
    }
    let summary = env.ingest(&[&docs]);
    assert_eq!(summary["ingested"], 2, "{summary}");
    let meta = env.meta().await;
    let id_of = |docs: &[enclave_storage::Document], name: &str| {
        docs.iter()
            .find(|d| d.source_uri.ends_with(name))
            .unwrap()
            .id
            .clone()
    };
    let all = meta.documents(None).await.unwrap();
    let (quiet, announced) = (id_of(&all, "kept-quiet.txt"), id_of(&all, "announced.txt"));
    meta.close().await;

    // Webhooks off: nothing is recorded.
    env.run(&["delete", &quiet]);
    let meta = env.meta().await;
    assert!(meta.deliveries(None, 10, 0).await.unwrap().is_empty());
    meta.close().await;

    // On: `enclave delete` records the event for the server to deliver.
    env.extra_env = vec![
        (
            "ENCLAVE_WEBHOOKS__URL".into(),
            "http://127.0.0.1:9/hooks".into(),
        ),
        ("ENCLAVE_WEBHOOKS__SECRET".into(), SECRET.into()),
    ];
    env.run(&["delete", &announced]);
    let meta = env.meta().await;
    let recorded = meta.deliveries(None, 10, 0).await.unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let d = &recorded[0];
    assert_eq!(d.event, "document.deleted");
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.document_id.as_deref(), Some(announced.as_str()));
    assert_eq!(d.collection.as_deref(), Some("default"));
    let payload: Value = serde_json::from_str(&d.payload).unwrap();
    assert_eq!(payload["id"], d.id.as_str());
    assert_eq!(payload["document"]["status"], "deleted");
    assert_eq!(payload["document"]["collection"], "default");
    assert_eq!(payload["document"]["version"], 1);
    meta.close().await;
}
