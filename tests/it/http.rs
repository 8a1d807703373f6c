//! The HTTP server as its users meet it: the real `enclave serve` process, real PostgreSQL or
//! the embedded stores, the real models; every endpoint and every error status; the official
//! `openai` Python client; a real browser on the web UI.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::common::{PgDatabase, TestEnv, corpus_file, models_dir};

const QUESTION: &str = "What does the IOP instruction set do on the HP 2100?";
const OFF_CORPUS: &str = "What is the recipe for a chocolate souffle with raspberries?";
/// Follow-ups to [`QUESTION`] that do not stand alone.
const FOLLOW_UPS: [&str; 2] = ["Which registers does it use?", "And how is it enabled?"];

pub(crate) fn small_model() -> PathBuf {
    models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A client for the server under test. Pooled connections are dropped after 2 s idle, before
/// the server's 5 s keep-alive closes them: reusing one the server is closing at that moment
/// fails the request mid-way (IncompleteMessage) while a test waits between requests.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(2))
}

/// A running `enclave serve`, stopped (SIGTERM) when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    pub(crate) client: reqwest::Client,
}

impl Server {
    pub(crate) fn start(env: &TestEnv, extra: &[(&str, &str)]) -> Self {
        let mut cmd = env.command();
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env("ENCLAVE_GENERATION__MODEL", small_model())
            .env("ENCLAVE_GENERATION__THREADS", "1")
            .env("ENCLAVE_GENERATION__MAX_TOKENS", "48")
            .env("ENCLAVE_GENERATION__PASSAGES", "3")
            .env("ENCLAVE_GENERATION__CONTEXT_SIZE", "2048")
            .env("ENCLAVE_GENERATION__MAX_CHARS_BETWEEN_CITATIONS", "120")
            .env("ENCLAVE_SERVER__WORKERS", "2")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("Enclave is listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Self {
            child,
            url,
            client: client_builder()
                .timeout(Duration::from_secs(300))
                .build()
                .unwrap(),
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub(crate) fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Waits for `/readyz`; returns its last response.
    pub(crate) async fn ready(&self) -> (StatusCode, Value) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let r = self.client.get(self.url("/readyz")).send().await.unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            let loading = body["message"]
                .as_str()
                .is_some_and(|m| m.contains("still loading"));
            if status == StatusCode::OK || !loading || Instant::now() > deadline {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) fn get(&self, key: &str, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(key)
    }

    /// `GET path` with a key; the JSON body (whatever the status).
    pub(crate) async fn get_json(&self, key: &str, path: &str) -> Value {
        self.get(key, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub(crate) fn post(&self, key: &str, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(key)
    }

    /// Waits until the document's processing ended; returns it.
    pub(crate) async fn settled(&self, key: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let d: Value = self
                .get(key, &format!("/api/v1/documents/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let status = d["status"].as_str().unwrap_or_default().to_string();
            if !matches!(status.as_str(), "queued" | "indexing") {
                return d;
            }
            assert!(Instant::now() < deadline, "document {id} still {status}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) async fn upload(&self, key: &str, form: Form) -> (StatusCode, Value) {
        let r = self
            .post(key, "/api/v1/documents")
            .multipart(form)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn api_key(env: &TestEnv, role: &str) -> String {
    env.run(&["keys", "create", &format!("{role}-key"), "--role", role])
        .trim()
        .to_string()
}

pub(crate) fn file_part(name: &str, bytes: Vec<u8>) -> Part {
    Part::bytes(bytes).file_name(name.to_string())
}

fn pdf_form(collection: &str) -> Form {
    Form::new().text("collection", collection.to_string()).part(
        "file",
        file_part(
            "hpiop.pdf",
            std::fs::read(corpus_file("simh__hpiop.pdf")).unwrap(),
        ),
    )
}

pub(crate) async fn expect_error(
    r: reqwest::Response,
    status: StatusCode,
    code: &str,
    words: &str,
) {
    let got = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(words),
        "message {message:?} should mention {words:?}"
    );
}

/// Server-Sent Events of a response: `(event, data)` in order, and how many network chunks
/// carried tokens.
async fn sse(r: reqwest::Response) -> (Vec<(String, Value)>, usize) {
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut text = String::new();
    let mut token_chunks = 0;
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = String::from_utf8(chunk.unwrap().to_vec()).unwrap();
        if chunk.contains("event: token") {
            token_chunks += 1;
        }
        text.push_str(&chunk);
    }
    let events = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, serde_json::from_str(&data).unwrap())
        })
        .collect();
    (events, token_chunks)
}

fn check_answer(answer: &Value) {
    let passages = answer["passages"].as_array().unwrap();
    let text = answer["text"].as_str().unwrap();
    assert!(!answer["refused"].as_bool().unwrap(), "{answer}");
    let citations = answer["citations"].as_array().unwrap();
    assert!(!citations.is_empty(), "no citation in {text:?}");
    for c in citations {
        let n = c["number"].as_u64().unwrap() as usize;
        assert!(
            (1..=passages.len()).contains(&n),
            "citation {n} names no given passage"
        );
        let p = &passages[n - 1];
        assert_eq!(c["document_id"], p["document_id"]);
        assert_eq!(c["quote"], p["text"]);
        assert_eq!(c["char_start"], p["char_start"]);
        assert!(c["url"].as_str().unwrap().starts_with("/documents/"));
    }
    for m in text.match_indices('[') {
        let rest = &text[m.0 + 1..];
        let n: usize = rest[..rest.find(']').unwrap()].parse().unwrap();
        assert!(
            citations.iter().any(|c| c["number"] == n),
            "marker [{n}] left in the text without a citation"
        );
    }
}

#[tokio::test]
async fn rest_api_on_postgres() {
    let db = PgDatabase::create().await;
    let env = TestEnv::postgres(&db);
    let admin = api_key(&env, "admin");
    let reader = api_key(&env, "reader");
    let server = Server::start(&env, &[("ENCLAVE_SERVER__MAX_UPLOAD_BYTES", "200000")]);
    let s = &server;

    // Health, readiness, the OpenAPI document.
    let r = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"));
    let (status, ready) = s.ready().await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["engine"], "llama.cpp");
    assert_eq!(ready["model"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    let doc: Value = s
        .client
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/ask"]["post"].is_object());

    // 401, 403, 404, 405-as-404.
    let r = s
        .client
        .get(s.url("/api/v1/collections"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("www-authenticate"));
    expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized", "API key").await;
    let r = s
        .get("enc_wrong", "/api/v1/collections")
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "unknown or revoked",
    )
    .await;
    let r = s
        .post(&reader, "/api/v1/collections")
        .json(&json!({"name": "legal"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "forbidden", "admin").await;
    let r = s
        .get(&admin, "/api/v1/collections/nope")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "not_found", "'nope'").await;
    let r = s.get(&admin, "/api/v1/no/such/route").send().await.unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "not_found", "no route").await;

    // Collections: 201, 409, 422, 400, 415.
    let r = s
        .post(&admin, "/api/v1/collections")
        .json(&json!({"name": "legal"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .post(&admin, "/api/v1/collections")
        .json(&json!({"name": "legal"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::CONFLICT, "conflict", "already exists").await;
    let r = s
        .post(&admin, "/api/v1/collections")
        .json(&json!({"name": "no spaces/here"}))
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "collection name",
    )
    .await;
    let r = s
        .post(&admin, "/api/v1/collections")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request", "JSON").await;
    let r = s
        .post(&admin, "/api/v1/collections")
        .header("content-type", "text/plain")
        .body("legal")
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "JSON",
    )
    .await;
    let list: Value = s
        .get(&reader, "/api/v1/collections")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["collections"][0]["name"], "legal");

    // Uploads: 202 then ready; 415, 413, 400, 404, 403.
    let (status, up) = s.upload(&admin, pdf_form("legal")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    assert_eq!(up["status"], "queued");
    let pdf_id = up["id"].as_str().unwrap().to_string();
    let pdf = s.settled(&admin, &pdf_id).await;
    assert_eq!(pdf["status"], "ready", "{pdf}");
    assert_eq!(pdf["page_count"], 2);
    // The upload was a job of the durable queue: done, with its progress, listed; readers may
    // not see the queue, and only dead jobs are retried.
    let job_id = up["job_id"].as_str().expect("an upload names its job");
    let job: Value = s
        .get(&admin, &format!("/api/v1/jobs/{job_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["document_id"].as_str(), Some(pdf_id.as_str()));
    assert_eq!(
        (
            job["progress_done"].as_i64(),
            job["progress_total"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let jobs: Value = s
        .get(&admin, &format!("/api/v1/jobs?document={pdf_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "{jobs}");
    assert!(jobs["done"].as_i64().unwrap() >= 1);
    let r = s.get(&reader, "/api/v1/jobs").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The audit log names who created the collection and uploaded the document.
    let log: Value = s
        .get(&admin, "/api/v1/audit")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = log["entries"].as_array().unwrap();
    let upload = entries
        .iter()
        .find(|e| e["action"] == "upload" && e["document_id"] == pdf_id.as_str())
        .unwrap_or_else(|| panic!("no upload entry: {log}"));
    assert!(
        upload["actor"].as_str().unwrap().starts_with("API key '"),
        "{upload}"
    );
    assert_eq!(upload["collection"], "legal");
    assert!(
        upload["detail"]["sha256"].as_str().unwrap().len() == 64,
        "{upload}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "create_collection" && e["collection"] == "legal"),
        "{log}"
    );
    let r = s.get(&reader, "/api/v1/audit").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .post(&admin, &format!("/api/v1/jobs/{job_id}/retry"))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::CONFLICT, "conflict", "only dead").await;
    let r = s
        .get(&admin, "/api/v1/jobs?status=stuck")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid", "stuck").await;
    assert_eq!(pdf["title"], "HP’s IOP Implementations: 2100 vs 21MX");
    let (status, body) = s
        .upload(
            &admin,
            Form::new()
                .text("collection", "legal")
                .part("file", file_part("model.xyz", b"binary".to_vec())),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(body["message"].as_str().unwrap().contains("model.xyz"));
    let (status, body) = s
        .upload(
            &admin,
            Form::new()
                .text("collection", "legal")
                .part("file", file_part("big.txt", vec![b'a'; 300_000])),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["message"].as_str().unwrap().contains("200000"));
    let (status, body) = s
        .upload(&admin, Form::new().text("collection", "legal"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (status, body) = s.upload(&admin, pdf_form("nowhere")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = s.upload(&reader, pdf_form("legal")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = s
        .post(&admin, "/api/v1/documents")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "bad_request", "multipart").await;

    // Create-or-replace by external id: new (202), same (200, unchanged), new content (202).
    let put = |text: &'static str| {
        Form::new()
            .text("collection", "legal")
            .text("tags", "policy, records")
            .part("file", file_part("retention.txt", text.as_bytes().to_vec()))
    };
    let v1 = "Records retention policy.\n\nClient files are kept for seven years after the \
              matter closes, then shredded by an approved contractor.\n";
    let v2 = "Records retention policy.\n\nClient files are kept for twelve years after the \
              matter closes, then archived in the vault at Leeds.\n";
    let r = s
        .client
        .put(s.url("/api/v1/documents/memo-42"))
        .bearer_auth(&admin)
        .multipart(put(v1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let memo_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.settled(&admin, "memo-42").await["version"], 1);
    let r = s
        .client
        .put(s.url("/api/v1/documents/memo-42"))
        .bearer_auth(&admin)
        .multipart(put(v1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let same: Value = r.json().await.unwrap();
    assert_eq!(
        (same["unchanged"].as_bool(), same["id"].as_str()),
        (Some(true), Some(memo_id.as_str()))
    );
    let r = s
        .client
        .put(s.url("/api/v1/documents/memo-42"))
        .bearer_auth(&admin)
        .multipart(put(v2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let memo = s.settled(&admin, &memo_id).await;
    assert_eq!(
        (memo["status"].as_str(), memo["version"].as_i64()),
        (Some("ready"), Some(2)),
        "{memo}"
    );
    assert_eq!(memo["external_id"], "memo-42");
    assert_eq!(memo["tags"], json!(["policy", "records"]));
    // The document is ready as soon as version 2 is active; the same job then purges version 1.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let memo: Value = s
            .get(&admin, &format!("/api/v1/documents/{memo_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let states: Vec<_> = memo["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["state"].clone())
            .collect();
        if states == vec![json!("purged"), json!("active")] {
            break;
        }
        assert_eq!(states, vec![json!("superseded"), json!("active")], "{memo}");
        assert!(Instant::now() < deadline, "version 1 never purged: {memo}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let chunks: Value = s
        .get(&reader, "/api/v1/documents/memo-42/chunks")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all: String = chunks["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert!(
        all.contains("twelve years") && !all.contains("seven years"),
        "{all}"
    );

    // Listing with filters and paging.
    let list: Value = s
        .get(
            &reader,
            "/api/v1/documents?collection=legal&type=application/pdf",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["documents"][0]["id"], pdf_id.as_str());
    let list: Value = s
        .get(&reader, "/api/v1/documents?tag=records&limit=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            list["total"].as_i64(),
            list["documents"].as_array().unwrap().len()
        ),
        (Some(1), 1)
    );
    let r = s
        .get(&reader, "/api/v1/documents?limit=0")
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid", "limit").await;

    // Pages, chunks and the original file.
    let pages: Value = s
        .get(&reader, &format!("/api/v1/documents/{pdf_id}/pages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pages["pages"].as_array().unwrap().len(), 2);
    assert!(
        pages["pages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("IOP instruction set")
    );
    let r = s
        .get(&reader, &format!("/api/v1/documents/{pdf_id}/file"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(r.headers()["content-security-policy"], "sandbox");
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        std::fs::read(corpus_file("simh__hpiop.pdf")).unwrap()
    );

    // Search: the passage on its page, with scores; 422 and 404.
    let found: Value = s
        .post(&reader, "/api/v1/search")
        .json(&json!({"query": "IOP instruction set microcode assists", "collections": ["legal"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(found["relevant"].as_bool().unwrap(), "{found}");
    let top = &found["passages"][0];
    assert_eq!(
        (top["document_id"].as_str(), top["page_start"].as_i64()),
        (Some(pdf_id.as_str()), Some(1))
    );
    assert!(top["scores"]["dense"].as_f64().unwrap() > 0.3);
    // A collection's default mode: searches that name none use it.
    let patch = |key: &str, body: Value| {
        s.client
            .patch(s.url("/api/v1/collections/legal"))
            .bearer_auth(key)
            .json(&body)
    };
    let c: Value = patch(&admin, json!({"mode": "bm25"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["mode"], "bm25", "{c}");
    let bm25: Value = s
        .post(&reader, "/api/v1/search")
        .json(&json!({"query": "IOP microcode", "collections": ["legal"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bm25["mode"], "bm25", "{bm25}");
    let r = patch(&admin, json!({"mode": "fuzzy"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid", "fuzzy").await;
    let r = patch(&reader, json!({"mode": "dense"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let c: Value = patch(&admin, json!({"mode": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(c["mode"].is_null(), "{c}");

    // Date and author filters run inside the search; a date that does not parse is named.
    for scope in [
        json!({"date_to": "1970-01-02"}),
        json!({"authors": ["nobody@example.org"]}),
    ] {
        let mut body = json!({"query": "IOP instruction set microcode assists"});
        body.as_object_mut()
            .unwrap()
            .extend(scope.as_object().unwrap().clone());
        let none: Value = s
            .post(&reader, "/api/v1/search")
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            none["passages"].as_array().unwrap().len(),
            0,
            "{scope}: {none}"
        );
    }
    let r = s
        .post(&reader, "/api/v1/search")
        .json(&json!({"query": "x", "date_from": "yesterday"}))
        .send()
        .await
        .unwrap();
    expect_error(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "'yesterday'",
    )
    .await;
    let r = s
        .post(&reader, "/api/v1/search")
        .json(&json!({"query": "x", "limit": 0}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid", "limit").await;
    let r = s
        .post(&reader, "/api/v1/search")
        .json(&json!({"query": "x", "mode": "fuzzy"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid", "fuzzy").await;
    let r = s
        .post(&reader, "/api/v1/search")
        .json(&json!({"query": "x", "collections": ["hr"]}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "not_found", "'hr'").await;
    let r = s
        .post(&reader, "/api/v1/search")
        .json(&json!({"limit": 3}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid", "query").await;

    // Ask: JSON, streamed, refused, invalid.
    let answer: Value = s
        .post(&reader, "/api/v1/ask")
        .json(&json!({"question": QUESTION}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check_answer(&answer);
    assert!(answer["timings"]["generated_tokens"].as_u64().unwrap() > 0);
    let r = s
        .post(&reader, "/api/v1/ask")
        .json(&json!({"question": QUESTION, "collections": ["legal"], "stream": true}))
        .send()
        .await
        .unwrap();
    let (events, token_chunks) = sse(r).await;
    assert_eq!(events.first().unwrap().0, "sources");
    assert_eq!(events.last().unwrap().0, "done");
    assert!(
        token_chunks >= 2,
        "tokens arrived in {token_chunks} network chunk(s)"
    );
    let streamed: String = events
        .iter()
        .filter(|(e, _)| e == "token")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    let done = &events.last().unwrap().1;
    check_answer(done);
    assert!(streamed.starts_with(done["text"].as_str().unwrap().split('[').next().unwrap()));
    let refused: Value = s
        .post(&reader, "/api/v1/ask")
        .json(&json!({"question": OFF_CORPUS}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused["refused"], true, "{refused}");
    assert_eq!(refused["citations"], json!([]));
    let r = s
        .post(&reader, "/api/v1/ask")
        .json(&json!({"question": "  "}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid", "empty").await;

    // Re-index makes a new version from the original; delete removes it from search.
    let r = s
        .post(&admin, &format!("/api/v1/documents/{pdf_id}/reindex"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let pdf = s.settled(&admin, &pdf_id).await;
    assert_eq!(
        (pdf["status"].as_str(), pdf["version"].as_i64()),
        (Some("ready"), Some(2)),
        "{pdf}"
    );
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/documents/{pdf_id}")))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .client
        .delete(s.url(&format!("/api/v1/documents/{pdf_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s
        .get(&admin, &format!("/api/v1/documents/{pdf_id}"))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "not_found", &pdf_id).await;
    let found: Value = s
        .post(&reader, "/api/v1/search")
        .json(&json!({"query": "IOP instruction set microcode assists"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        found["passages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["document_id"] != pdf_id.as_str())
    );

    // Metrics count what happened.
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "enclave_http_requests_total{method=\"POST\",route=\"/api/v1/ask\",status=\"200\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("enclave_answers_total{outcome=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("enclave_ingest_documents_total{outcome=\"ingested\"}"));

    // Deleting the collection removes what is left.
    let r = s
        .client
        .delete(s.url("/api/v1/collections/legal"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s
        .get(&admin, "/api/v1/collections/legal")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    drop(server);
    crate::common::assert_consistent(&env).await;
    db.drop_now().await;
}

#[tokio::test]
async fn busy_queue_and_missing_model() {
    let env = TestEnv::embedded();
    let docs = env.docs();
    std::fs::copy(corpus_file("simh__hpiop.pdf"), docs.join("hpiop.pdf")).unwrap();
    env.run(&["ingest", docs.to_str().unwrap()]);
    let key = api_key(&env, "reader");
    {
        // One slot, one waiting place: a burst of questions gets some "busy" answers.
        let server = Server::start(
            &env,
            &[
                ("ENCLAVE_GENERATION__SLOTS", "1"),
                ("ENCLAVE_GENERATION__QUEUE_CAPACITY", "1"),
                ("ENCLAVE_GENERATION__MAX_TOKENS", "96"),
            ],
        );
        assert_eq!(server.ready().await.0, StatusCode::OK);
        let asks = (0..6).map(|_| {
            server
                .post(&key, "/api/v1/ask")
                .json(&json!({"question": QUESTION, "stream": true}))
                .send()
        });
        let responses = futures::future::join_all(asks).await;
        let mut busy = 0;
        let mut served = 0;
        for r in responses {
            let r = r.unwrap();
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(r.headers()["retry-after"], "5");
                expect_error(r, StatusCode::TOO_MANY_REQUESTS, "busy", "retry later").await;
                busy += 1;
            } else {
                let (events, _) = sse(r).await;
                assert_eq!(events.last().unwrap().0, "done");
                served += 1;
            }
        }
        assert!(busy >= 1 && served >= 2, "busy {busy}, served {served}");
    }
    {
        // Without its generation model the server searches but does not answer, and says why.
        let server = Server::start(
            &env,
            &[("ENCLAVE_GENERATION__MODEL", "/nonexistent/model.gguf")],
        );
        let (status, body) = server.ready().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["code"], "not_ready");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("/nonexistent/model.gguf"),
            "{body}"
        );
        let r = server
            .post(&key, "/api/v1/search")
            .json(&json!({"query": "IOP instruction set"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = server
            .post(&key, "/api/v1/ask")
            .json(&json!({"question": QUESTION}))
            .send()
            .await
            .unwrap();
        expect_error(
            r,
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "could not be loaded",
        )
        .await;
    }
}

/// The password `enclave users add` prints for the user it created.
pub(crate) fn created_password(out: &str) -> String {
    out.trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A session cookie for a user, through the sign-in form.
pub(crate) async fn sign_in(s: &Server, name: &str, password: &str) -> String {
    let client = client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(s.url("/login"))
        .form(&[("username", name), ("password", password), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signing in {name}");
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

pub(crate) fn tool(path: PathBuf, setup: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{} missing: {setup} (scripts/test does it)",
        path.display()
    );
    path
}

pub(crate) fn run_tool(mut cmd: std::process::Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{what}:\n{stdout}");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn openai_client_openapi_document_and_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = tool(
        crate::common::cache_dir().join("venv/bin/python"),
        "python3 -m venv ~/.cache/enclave/venv && pip install -r tests/python/requirements.txt",
    );
    tool(
        root.join("tests/browser/node_modules/playwright-core"),
        "cd tests/browser && npm ci",
    );
    tool(
        PathBuf::from("/usr/bin/chromium"),
        "apt-get install chromium",
    );

    let env = TestEnv::embedded();
    let key = api_key(&env, "editor");
    env.run(&["users", "add", "alice", "--role", "reader"]);
    let server = Server::start(&env, &[("ENCLAVE_GENERATION__MAX_TOKENS", "64")]);
    assert_eq!(server.ready().await.0, StatusCode::OK);
    let admin = api_key(&env, "admin");
    let r = server
        .post(&admin, "/api/v1/collections")
        .json(&json!({"name": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, pdf) = server.upload(&key, pdf_form("ops")).await;
    let hostile = "Incident report about the lobby door.\n\nThe visitor typed \
        <script>window.__enclaveXss=1;alert(1)</script> into the kiosk, and the lobby door \
        stayed locked all night.\n";
    let (_, note) = server
        .upload(
            &key,
            Form::new().text("collection", "ops").part(
                "file",
                file_part("incident.txt", hostile.as_bytes().to_vec()),
            ),
        )
        .await;
    for d in [&pdf, &note] {
        let d = server.settled(&key, d["id"].as_str().unwrap()).await;
        assert_eq!(d["status"], "ready", "{d}");
    }

    let mut check = std::process::Command::new(&python);
    check
        .arg(root.join("tests/python/check_openapi.py"))
        .env("ENCLAVE_URL", &server.url);
    run_tool(check, "OpenAPI document check");

    let mut client = std::process::Command::new(&python);
    client
        .arg(root.join("tests/python/openai_client.py"))
        .env("ENCLAVE_URL", &server.url)
        .env("ENCLAVE_API_KEY", &key)
        .env("ENCLAVE_COLLECTION", "ops")
        .env("ENCLAVE_QUESTION", QUESTION)
        .env("ENCLAVE_OFF_CORPUS_QUESTION", OFF_CORPUS)
        .env("ENCLAVE_FOLLOW_UPS", FOLLOW_UPS.join("|"));
    run_tool(client, "the openai Python client");

    let password = "correct horse battery";
    let mut set = env.command();
    set.args(["users", "password", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = set.spawn().unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        format!("{password}\n").as_bytes(),
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut browser = std::process::Command::new("node");
    browser
        .arg(root.join("tests/browser/ui.mjs"))
        .env("ENCLAVE_URL", &server.url)
        .env("ENCLAVE_USER", "alice")
        .env("ENCLAVE_PASSWORD", password)
        .env("ENCLAVE_QUESTION", QUESTION)
        .env("ENCLAVE_FOLLOW_UPS", FOLLOW_UPS.join("|"))
        .env("ENCLAVE_XSS_QUERY", "lobby door kiosk incident")
        .env("SCREENSHOT_DIR", &shots);
    run_tool(browser, "the web UI in Chromium");

    // The verdict given in the browser reaches the curators with what the answer was made of
    // and the settings it was made under; their page makes it a case of ops' own evaluation
    // set (the reader's pick is the expected source), and the command line's eval counts it.
    let poor = server
        .get_json(&admin, "/api/v1/feedback?unhelpful=true")
        .await;
    assert_eq!(poor.as_array().map(Vec::len), Some(1), "{poor}");
    let verdict = &poor[0];
    assert_eq!(verdict["comment"], "names no register", "{verdict}");
    // The pick is the first passage given to the model, of either document.
    assert!(
        [&pdf["id"], &note["id"]].contains(&&verdict["right_document_id"]),
        "{verdict}"
    );
    assert!(
        verdict["right_page"].as_i64().is_some_and(|p| p >= 1),
        "{verdict}"
    );
    assert_eq!(verdict["settings"]["mode"], "hybrid", "{verdict}");
    assert_eq!(verdict["settings"]["max_tokens"], 64, "{verdict}");
    assert_eq!(verdict["settings"]["reading_order"], false, "{verdict}");
    let id = verdict["id"].as_str().unwrap();
    let curator = created_password(&env.run(&["users", "add", "curie", "--role", "admin"]));
    let cookie = sign_in(&server, "curie", &curator).await;
    let no_redirects = client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(server.url("/admin/feedback"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    for shown in [
        "names no register",
        FOLLOW_UPS[0],
        &format!("/admin/feedback/{id}/eval-case"),
        "reading order off, model refusal off, expansion off",
    ] {
        assert!(
            html.contains(shown),
            "the curators' page to show {shown:?}:\n{html}"
        );
    }
    let r = no_redirects
        .post(server.url(&format!("/admin/feedback/{id}/eval-case")))
        .header("Cookie", &cookie)
        .header("Sec-Fetch-Site", "same-origin")
        .form(&[("collection", "ops"), ("expected", "source")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cases = server
        .get_json(&admin, "/api/v1/collections/ops/eval/cases")
        .await;
    assert_eq!(cases.as_array().map(Vec::len), Some(1), "{cases}");
    assert_eq!(cases[0]["feedback_id"], id, "{cases}");
    assert_eq!(
        cases[0]["document_id"], verdict["right_document_id"],
        "{cases}"
    );
    assert_eq!(cases[0]["pages"], json!([verdict["right_page"]]), "{cases}");
    drop(server);
    // With the server's small model and limits.
    let mut eval = env.command();
    eval.args(["eval", "--collection", "ops", "--answers", "1"])
        .env("ENCLAVE_GENERATION__MODEL", small_model())
        .env("ENCLAVE_GENERATION__THREADS", "1")
        .env("ENCLAVE_GENERATION__MAX_TOKENS", "64")
        .env("ENCLAVE_GENERATION__PASSAGES", "3")
        .env("ENCLAVE_GENERATION__CONTEXT_SIZE", "2048");
    let out = eval.output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("collection 'ops': 1 answerable, 0 unanswerable questions"),
        "{printed}"
    );
    // The run is kept with its answers' figures, which the collection's page shows.
    let server = Server::start(&env, &[]);
    assert_eq!(server.ready().await.0, StatusCode::OK);
    let runs = server
        .get_json(&admin, "/api/v1/collections/ops/eval/runs")
        .await;
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs[0]["answers"]["answerable"], 1, "{runs}");
    assert_eq!(runs[0]["answers"]["unanswerable"], 0, "{runs}");
    let model = runs[0]["answers"]["model"].as_str().unwrap_or_default();
    assert!(!model.is_empty(), "{runs}");
    let html = no_redirects
        .get(server.url("/admin/collections/ops"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&format!("{model}: cites an expected page ")),
        "the run's answers on the collection's page:\n{html}"
    );
}
