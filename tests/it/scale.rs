//! The scale-out mode: PostgreSQL and a real Qdrant server (or a three-node cluster) shared by
//! several `enclave serve` and `enclave worker` processes, with processes and stores killed
//! part-way; and moving an embedded deployment up with `enclave migrate`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use enclave_storage::JobStatus;
use enclave_storage::local_qdrant::QdrantProcess;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::common::{PgDatabase, TestEnv, Vectors, assert_consistent, corpus_file};
use crate::http::{Server, api_key, file_part};

/// Settings every process of these tests shares: short leases and retries, one thread per
/// model (several processes share 2 cores).
fn scale_env(db: &PgDatabase, vectors: Vectors) -> TestEnv {
    let mut env = TestEnv::scale_out(db, vectors);
    for (k, v) in [
        ("ENCLAVE_WORKER__LEASE_SECS", "4"),
        ("ENCLAVE_WORKER__POLL_MS", "100"),
        ("ENCLAVE_WORKER__RETRY_BASE_SECS", "1"),
        ("ENCLAVE_WORKER__MAX_ATTEMPTS", "6"),
        ("ENCLAVE_EMBEDDING__THREADS", "1"),
        ("ENCLAVE_VECTORS__TIMEOUT_SECS", "5"),
    ] {
        env.extra_env.push((k.into(), v.into()));
    }
    env
}

fn worker(env: &TestEnv) -> Child {
    env.command()
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn kill_9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// A text document whose one rare word finds it.
fn memo(i: usize) -> (String, Vec<u8>) {
    let word = format!("quokka{i:02}");
    let text = format!(
        "Memo {i}. The maintenance window for cluster {word} is moved to Thursday night. \
         Contact the operations desk before touching {word}.\n"
    )
    .repeat(3);
    (format!("memo-{i:02}.txt"), text.into_bytes())
}

fn upsert_form(name: &str, bytes: Vec<u8>) -> Form {
    Form::new()
        .text("collection", "scale")
        .part("file", file_part(name, bytes))
}

async fn create_collection(server: &Server, key: &str, name: &str) {
    let r = server
        .post(key, "/api/v1/collections")
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn put(server: &Server, key: &str, external_id: &str, form: Form) -> (StatusCode, Value) {
    let r = server
        .client
        .put(server.url(&format!("/api/v1/documents/{external_id}")))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or_default())
}

/// Waits until every document of the collection is processed (none queued or indexing,
/// no job waiting or running); returns the documents by external id.
async fn all_settled(
    env: &TestEnv,
    expected: usize,
) -> BTreeMap<String, enclave_storage::Document> {
    let meta = env.meta().await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let docs = meta.documents(None).await.unwrap();
        let counts = meta.job_counts(None).await.unwrap();
        let settled = docs.len() >= expected
            && docs
                .iter()
                .all(|d| !matches!(d.status.as_str(), "queued" | "indexing"))
            && counts.queued == 0
            && counts.running == 0;
        if settled {
            meta.close().await;
            return docs
                .into_iter()
                .map(|d| (d.external_id.clone().unwrap_or_default(), d))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {counts:?}, {:?}",
            docs.iter()
                .map(|d| (&d.external_id, &d.status))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn two_servers_and_two_workers_share_postgres_and_qdrant() {
    let db = PgDatabase::create().await;
    let env = scale_env(&db, Vectors::any_server());
    let key = api_key(&env, "admin");
    let stateless = [("ENCLAVE_WORKER__IN_SERVER", "false")];
    let a = Server::start(&env, &stateless);
    let mut b = Server::start(&env, &stateless);
    for s in [&a, &b] {
        let (status, body) = s.ready().await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body["vectors"].as_str().unwrap().contains("Qdrant 1.18"),
            "{body}"
        );
        assert!(
            body["database"].as_str().unwrap().contains("PostgreSQL"),
            "{body}"
        );
    }
    create_collection(&a, &key, "scale").await;
    // 20 documents: the long FAQ first (a worker is killed in it), three PDFs, 16 memos; sent
    // to the two servers in turn. Only the workers parse them.
    let pdfs = [
        "debian-faq__FAQ__debian-faq.en.pdf",
        "simh__hpiop.pdf",
        "simh__decsys.pdf",
        "simh__gri_doc.pdf",
    ];
    let mut uploads: Vec<(String, String, Vec<u8>)> = pdfs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                format!("doc-{i:02}"),
                p.to_string(),
                std::fs::read(corpus_file(p)).unwrap(),
            )
        })
        .collect();
    for i in 4..20 {
        let (name, bytes) = memo(i);
        uploads.push((format!("doc-{i:02}"), name, bytes));
    }
    // The last one goes to the server that is killed while receiving it.
    let (last_id, last_name, last_bytes) = uploads.pop().unwrap();

    // The first worker takes the FAQ; the second starts while it works on it.
    let mut w1 = worker(&env);
    let meta = env.meta().await;
    let (id, name, bytes) = &uploads[0];
    let (status, body) = put(&a, &key, id, upsert_form(name, bytes.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{id}: {body}");
    let killed_job = body["job_id"].as_str().unwrap().to_string();
    let victim = format!(":{}/", w1.id());
    let started = Instant::now();
    loop {
        let j = meta.job(&killed_job).await.unwrap().unwrap();
        let mine = j
            .lease_owner
            .as_deref()
            .is_some_and(|o| o.contains(&victim));
        if j.status == JobStatus::Running && mine && j.progress_total > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "worker 1 never got into the FAQ: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut w2 = worker(&env);
    for (i, (id, name, bytes)) in uploads.iter().enumerate().skip(1) {
        let server = if i % 2 == 0 { &a } else { &b };
        let (status, body) = put(server, &key, id, upsert_form(name, bytes.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{id}: {body}");
    }
    // kill -9 of the first worker in the middle of its job; a replacement starts.
    kill_9(&mut w1);
    let mut w3 = worker(&env);

    // kill -9 of a server in the middle of a request: an upload whose body is still coming.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let half = last_bytes.len() / 2;
    tx.unbounded_send(Ok(last_bytes[..half].to_vec())).unwrap();
    let slow = Form::new().text("collection", "scale").part(
        "file",
        Part::stream(reqwest::Body::wrap_stream(rx)).file_name(last_name.clone()),
    );
    let request = b
        .client
        .put(b.url(&format!("/api/v1/documents/{last_id}")))
        .bearer_auth(&key)
        .multipart(slow)
        .send();
    let request = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.kill_9();
    let answer = request.await.unwrap();
    assert!(answer.is_err(), "the killed server answered: {answer:?}");
    drop(tx);
    // The integrator retries on the other server, with the same external id.
    let (status, body) = put(
        &a,
        &key,
        &last_id,
        upsert_form(&last_name, last_bytes.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // A replacement server starts on the same stores, stateless.
    let b = Server::start(&env, &stateless);
    assert_eq!(b.ready().await.0, StatusCode::OK);

    let docs = all_settled(&env, 20).await;
    kill_9(&mut w2);
    kill_9(&mut w3);

    // Every upload is one document, ready, its content ingested once.
    let ids: BTreeSet<&String> = docs.keys().collect();
    let want: BTreeSet<String> = (0..20).map(|i| format!("doc-{i:02}")).collect();
    assert_eq!(ids, want.iter().collect(), "one document per external id");
    for (id, d) in &docs {
        assert_eq!(d.status, "ready", "{id}: {d:?}");
        assert!(d.chunk_count > 0, "{id}");
    }
    let job = meta.job(&killed_job).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert_eq!(job.attempts, 2, "killed once, then finished: {job:?}");
    let finished_by: BTreeSet<String> = meta
        .jobs(Some(JobStatus::Done), None, None, 100, 0)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|j| j.last_worker)
        .map(|w| w.split('/').next().unwrap_or_default().to_string())
        .collect();
    assert!(
        finished_by.len() >= 2,
        "the queue spread the jobs over the workers: {finished_by:?}"
    );
    meta.close().await;
    assert_consistent(&env).await;

    // Either server sees everything: the listing, and each memo by its rare word.
    for (n, server) in [&a, &b].into_iter().enumerate() {
        let list: Value = server
            .get(&key, "/api/v1/documents?collection=scale&limit=100")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["total"], 20, "server {n}: {list}");
    }
    for i in 4..20 {
        let server = if i % 2 == 0 { &a } else { &b };
        let found: Value = server
            .post(&key, "/api/v1/search")
            .json(&json!({"query": format!("quokka{i:02}"), "mode": "bm25", "limit": 3}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let top = &found["passages"][0];
        assert_eq!(
            top["document_id"].as_str(),
            Some(docs[&format!("doc-{i:02}")].id.as_str()),
            "memo {i}: {found}"
        );
    }
    db.drop_now().await;
}

/// A TCP relay in front of PostgreSQL that the test can cut: while cut, connections are
/// refused and those in use are closed, as when the database host goes away.
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    /// Starts relaying to `to` on a thread of its own (the test's runtime blocks while it
    /// runs `enclave` commands).
    fn start(to: u16) -> Self {
        use std::sync::atomic::Ordering;
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c, g) = (cut.clone(), generation.clone());
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if c.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let born = g.load(Ordering::SeqCst);
                    let g = g.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                        else {
                            return;
                        };
                        let relay = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                        let watch = async {
                            while g.load(Ordering::SeqCst) == born {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        };
                        tokio::select! { _ = relay => {}, () = watch => {} }
                    });
                }
            });
        });
        Self {
            port: port_rx.recv().unwrap(),
            cut,
            generation,
        }
    }

    fn set_cut(&self, cut: bool) {
        use std::sync::atomic::Ordering;
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn search(server: &Server, key: &str, query: &str) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let r = server
        .post(key, "/api/v1/search")
        .json(&json!({"query": query, "limit": 3}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap(), started.elapsed())
}

/// A search answers 503 `unavailable` naming the store that is down, without waiting long.
async fn search_unavailable(server: &Server, key: &str, named: &str) {
    let (status, body, took) = search(server, key, "What is Debian?").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "unavailable", "{body}");
    assert!(body["message"].as_str().unwrap().contains(named), "{body}");
    assert!(took < Duration::from_secs(12), "{took:?}");
}

#[tokio::test]
async fn stores_that_go_down_answer_503_and_nothing_is_lost() {
    let db = PgDatabase::create().await;
    // PostgreSQL through a relay the test can cut; a Qdrant node of the test's own to stop.
    let relay = Relay::start(5432);
    let through_relay = db
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port));
    let qdrant_dir = tempfile::tempdir().unwrap();
    let mut qdrant = QdrantProcess::standalone(&qdrant_dir.path().join("node")).unwrap();
    let mut env = scale_env(&db, Vectors::on(&qdrant.grpc_url()));
    env.database_url = Some(through_relay);
    env.extra_env
        .push(("ENCLAVE_DATABASE__CONNECT_TIMEOUT_SECS".into(), "2".into()));
    let key = api_key(&env, "admin");
    let server = Server::start(&env, &[]);
    assert_eq!(server.ready().await.0, StatusCode::OK);
    create_collection(&server, &key, "faults").await;

    // Qdrant stopped while a long document is being ingested.
    let (status, up) = server
        .upload(
            &key,
            Form::new().text("collection", "faults").part(
                "file",
                file_part(
                    "faq.pdf",
                    std::fs::read(corpus_file("debian-faq__FAQ__debian-faq.en.pdf")).unwrap(),
                ),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    let job_id = up["job_id"].as_str().unwrap().to_string();
    let doc_id = up["id"].as_str().unwrap().to_string();
    let meta = enclave_storage::MetaStore::connect(&db.url, 2)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let j = meta.job(&job_id).await.unwrap().unwrap();
        if j.status == JobStatus::Running && j.progress_total > 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "{j:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    qdrant.stop();
    // Searches fail fast with the store named; readiness says why.
    search_unavailable(&server, &key, "vector store unavailable").await;
    let (status, body) = server.ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("vector store"),
        "{body}"
    );
    let out = env.command().args(["status"]).output().unwrap();
    assert!(
        !out.status.success(),
        "status exits non-zero while a store is down"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Vectors:") && text.contains("UNAVAILABLE"),
        "{text}"
    );
    // The job's attempt fails and waits for its retry; the document is not half-visible.
    let started = Instant::now();
    let failed = loop {
        let j = meta.job(&job_id).await.unwrap().unwrap();
        if j.attempts >= 1 && j.status == JobStatus::Queued {
            break j;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{j:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("vector store"),
        "{failed:?}"
    );
    assert_eq!(meta.document(&doc_id).await.unwrap().unwrap().version, 0);
    // Qdrant back: the job completes by itself, searches and readiness come back.
    qdrant.restart().unwrap();
    let started = Instant::now();
    loop {
        let j = meta.job(&job_id).await.unwrap().unwrap();
        if j.status == JobStatus::Done {
            break;
        }
        assert!(j.status != JobStatus::Dead, "{j:?}");
        assert!(started.elapsed() < Duration::from_secs(300), "{j:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let doc = meta.document(&doc_id).await.unwrap().unwrap();
    assert_eq!(doc.status, "ready", "{doc:?}");
    let (status, body, _) = search(&server, &key, "What is Debian?").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["passages"][0]["document_id"],
        doc_id.as_str(),
        "{body}"
    );
    assert_eq!(server.ready().await.0, StatusCode::OK);

    // PostgreSQL unreachable: 503 naming the database, within the connection time-out.
    relay.set_cut(true);
    // The relay closes the connections in use within 50 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    search_unavailable(&server, &key, "metadata database unavailable").await;
    relay.set_cut(false);
    let started = Instant::now();
    loop {
        let (status, body, _) = search(&server, &key, "What is Debian?").await;
        if status == StatusCode::OK {
            assert_eq!(
                body["passages"][0]["document_id"],
                doc_id.as_str(),
                "{body}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
    meta.close().await;
    env.database_url = Some(db.url.clone());
    assert_consistent(&env).await;
    db.drop_now().await;
}

/// The states of a collection's shard replicas, as one node of the cluster sees them.
async fn shard_states(
    client: &reqwest::Client,
    node: &QdrantProcess,
    collection: &str,
) -> Vec<String> {
    let info: Value = client
        .get(format!(
            "{}/collections/{collection}/cluster",
            node.http_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ["local_shards", "remote_shards"]
        .iter()
        .flat_map(|k| info["result"][k].as_array().cloned().unwrap_or_default())
        .map(|s| s["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_three_node_qdrant_cluster_keeps_serving_while_a_node_is_down() {
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let first = QdrantProcess::cluster_first(&dir.path().join("n1")).unwrap();
    let second = QdrantProcess::cluster_join(&dir.path().join("n2"), &first).unwrap();
    let mut third = QdrantProcess::cluster_join(&dir.path().join("n3"), &first).unwrap();
    // Wait until the three peers know each other.
    // A fresh connection per request: a pooled one can be closed by the node while the ingest
    // below keeps the client idle, and reusing it fails the request mid-way (IncompleteMessage).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Instant::now();
    loop {
        let c: Value = client
            .get(format!("{}/cluster", first.http_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if c["result"]["peers"]
            .as_object()
            .is_some_and(|p| p.len() == 3)
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{c}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut env = scale_env(&db, Vectors::on(&first.grpc_url()));
    for (k, v) in [
        ("ENCLAVE_VECTORS__SHARD_NUMBER", "2"),
        ("ENCLAVE_VECTORS__REPLICATION_FACTOR", "2"),
    ] {
        env.extra_env.push((k.into(), v.into()));
    }
    let docs = env.docs();
    for p in ["simh__hpiop.pdf", "simh__decsys.pdf"] {
        std::fs::copy(corpus_file(p), docs.join(p)).unwrap();
    }
    let summary = env.ingest(&[&docs]);
    assert_eq!(summary["ingested"], 2, "{summary}");
    let collection = match &env.vectors {
        Vectors::Server { collection, .. } => collection.clone(),
        Vectors::Edge => unreachable!(),
    };
    let replicas = shard_states(&client, &first, &collection).await;
    assert_eq!(replicas.len(), 4, "2 shards x 2 replicas: {replicas:?}");

    // One node killed: searches and ingest go on.
    third.kill();
    let more = env.docs().join("more");
    std::fs::create_dir_all(&more).unwrap();
    for i in 0..4 {
        let (name, bytes) = memo(i);
        std::fs::write(more.join(name), bytes).unwrap();
    }
    let summary = env.ingest(&[&more]);
    assert_eq!(summary["ingested"], 4, "{summary}");
    let out = env.run(&["search", "--json", "--mode", "bm25", "quokka02"]);
    let found: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        found["passages"][0]["chunk"]["text"]
            .as_str()
            .unwrap()
            .contains("quokka02"),
        "{found}"
    );
    let out = env.run(&["search", "--json", "IOP instruction set microcode"]);
    assert!(out.contains("hpiop"), "{out}");
    assert_consistent(&env).await;

    // The node rejoins and catches up: every replica active again, the stores consistent.
    third.restart().unwrap();
    let started = Instant::now();
    loop {
        let states = shard_states(&client, &third, &collection).await;
        if states.len() == 4 && states.iter().all(|s| s == "Active") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{states:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_consistent(&env).await;
    drop(second);
    db.drop_now().await;
}

#[tokio::test]
async fn migrate_moves_an_embedded_deployment_to_postgres_and_qdrant() {
    let mut env = TestEnv::embedded();
    env.vectors = Vectors::Edge;
    let docs = env.docs();
    let faq = docs.join("debian-faq__FAQ__debian-faq.en.pdf");
    std::fs::copy(corpus_file("debian-faq__FAQ__debian-faq.en.pdf"), &faq).unwrap();
    let memo_path = docs.join("memo.txt");
    std::fs::write(&memo_path, memo(7).1).unwrap();
    let summary = env.ingest(&[&docs]);
    assert_eq!(summary["ingested"], 2, "{summary}");
    let key = api_key(&env, "reader");
    let queries = [
        "How do I install Debian?",
        "What is the Debian release cycle?",
        "quokka07 maintenance window",
    ];
    let search_all = |env: &TestEnv| {
        queries
            .iter()
            .map(|q| {
                let out = env.run(&["search", "--json", q]);
                let v: Value = serde_json::from_str(out.trim()).unwrap();
                v["passages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["chunk"]["id"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let before = search_all(&env);
    assert!(before.iter().all(|hits| !hits.is_empty()));

    let db = PgDatabase::create().await;
    let target = Vectors::any_server();
    let (url, collection) = match &target {
        Vectors::Server {
            url, collection, ..
        } => (url.clone(), collection.clone()),
        Vectors::Edge => unreachable!(),
    };
    let migrate = |env: &TestEnv| {
        let out = env
            .command()
            .args(["migrate", "--to-database", &db.url, "--to-vectors", &url])
            .env("ENCLAVE_VECTORS__COLLECTION", &collection)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "migrate failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = migrate(&env);
    assert!(out.contains("verified"), "{out}");
    // Safe to run again: nothing doubles.
    let again = migrate(&env);
    assert!(again.contains("verified"), "{again}");

    // The scale-out deployment answers the same searches with the same passages, and the
    // keys made before the move still work.
    let moved = TestEnv {
        dir: tempfile::tempdir().unwrap(),
        ..TestEnv::scale_out(&db, target)
    };
    assert_eq!(search_all(&moved), before);
    assert_consistent(&moved).await;
    // The FAQ evaluation gives the same quality on both backends.
    let set = concat!(env!("CARGO_MANIFEST_DIR"), "/eval/debian-faq.jsonl");
    let eval = |env: &TestEnv| -> Value {
        serde_json::from_str(env.run(&["eval", "--set", set, "--json"]).trim()).unwrap()
    };
    let (edge, server) = (eval(&env), eval(&moved));
    for (a, b) in edge["retrieval"]
        .as_array()
        .unwrap()
        .iter()
        .zip(server["retrieval"].as_array().unwrap())
    {
        assert_eq!(a["mode"], b["mode"]);
        for metric in ["recall_at_5", "ndcg_at_10"] {
            let (x, y) = (a[metric].as_f64().unwrap(), b[metric].as_f64().unwrap());
            assert!(
                (x - y).abs() <= 0.01,
                "{} {metric}: edge {x}, qdrant server {y}",
                a["mode"]
            );
        }
    }
    let server = Server::start(
        &moved,
        &[(
            "ENCLAVE_SERVER__UPLOADS_DIR",
            env.data_dir().join("uploads").to_str().unwrap(),
        )],
    );
    assert_eq!(server.ready().await.0, StatusCode::OK);
    let r = server.get(&key, "/api/v1/documents").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["total"], 2, "{list}");
    drop(server);

    // A target that is not PostgreSQL is refused by name.
    let out = env
        .command()
        .args([
            "migrate",
            "--to-database",
            "sqlite:///tmp/x.db",
            "--to-vectors",
            &url,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PostgreSQL URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    db.drop_now().await;
}

/// `docker-compose.yml` is the topology the tests run as processes (checked without images).
#[test]
fn the_compose_file_describes_the_scale_out_topology() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-compose");
    let out = std::process::Command::new(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
