//! The durable ingest queue: concurrent claimers never share a job and lose none, leases run
//! out and pass the job on, failures back off and dead-letter, and a worker killed with
//! SIGKILL in the middle of a real ingest leaves a job that the next worker finishes.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use enclave_ingest::StoredContent;
use enclave_ingest::worker::{IngestJob, enqueue};
use enclave_storage::{JobStatus, MetaStore, NewJob, NewVersion};

use crate::common::{PgDatabase, TestEnv, assert_consistent, corpus_file};

fn job(n: usize, max_attempts: i64) -> NewJob {
    NewJob {
        kind: "test".into(),
        document_id: None,
        payload: serde_json::json!({ "n": n }),
        max_attempts,
    }
}

const NO_WAIT: Duration = Duration::ZERO;

async fn queue_semantics(url: &str) {
    let meta = MetaStore::connect(url, 8).await.unwrap();

    // Four claimers, each with its own connection pool as separate processes would have,
    // drain 60 jobs: every job is claimed once and finished.
    for n in 0..60 {
        meta.enqueue_job(&job(n, 3)).await.unwrap();
    }
    let mut claimers = Vec::new();
    for w in 0..4 {
        let url = url.to_string();
        claimers.push(tokio::spawn(async move {
            let meta = MetaStore::connect(&url, 2).await.unwrap();
            let me = format!("claimer-{w}");
            let mut got = Vec::new();
            while let Some(j) = meta.claim_job(&me, Duration::from_secs(30)).await.unwrap() {
                assert_eq!(j.lease_owner.as_deref(), Some(me.as_str()));
                assert!(meta.complete_job(&j.id, &me, None).await.unwrap());
                got.push(j.id);
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
    assert_eq!(seen.len(), 60, "every job claimed: {per_claimer:?}");
    assert!(seen.values().all(|&n| n == 1), "a job was claimed twice");
    let counts = meta.job_counts(None).await.unwrap();
    assert_eq!((counts.done, counts.queued, counts.running), (60, 0, 0));

    // A document's second job waits while its first one runs.
    let same = |n| NewJob {
        document_id: Some("doc-1".into()),
        ..job(n, 3)
    };
    let first = meta.enqueue_job(&same(50)).await.unwrap();
    let second = meta.enqueue_job(&same(51)).await.unwrap();
    // (Queued in the same millisecond, either may go first.)
    let ids = [first.id.clone(), second.id.clone()];
    let one = meta
        .claim_job("a", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(ids.contains(&one.id));
    assert!(
        meta.claim_job("b", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "the document's job is running"
    );
    assert!(meta.complete_job(&one.id, "a", None).await.unwrap());
    let other = meta
        .claim_job("b", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(ids.contains(&other.id) && other.id != one.id);
    assert!(meta.complete_job(&other.id, "b", None).await.unwrap());

    // A lease that runs out passes the job on; the first worker can no longer touch it.
    let j = meta.enqueue_job(&job(100, 3)).await.unwrap();
    let a = meta
        .claim_job("a", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.id.as_str(), a.attempts), (j.id.as_str(), 1));
    assert!(
        meta.claim_job("b", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "a held lease is not taken"
    );
    assert!(
        meta.heartbeat_job(&j.id, "a", Duration::from_millis(300))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let b = meta
        .claim_job("b", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the expired lease is claimed again");
    assert_eq!((b.id.as_str(), b.attempts), (j.id.as_str(), 2));
    assert!(
        !meta
            .heartbeat_job(&j.id, "a", Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert!(!meta.complete_job(&j.id, "a", None).await.unwrap());
    assert_eq!(
        meta.fail_job(&j.id, "a", "late", NO_WAIT).await.unwrap(),
        None
    );
    meta.job_progress(&j.id, "b", 3, 10).await.unwrap();
    assert_eq!(meta.job(&j.id).await.unwrap().unwrap().progress_done, 3);
    assert!(meta.complete_job(&j.id, "b", None).await.unwrap());
    let done = meta.job(&j.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Done);
    assert_eq!((done.progress_done, done.progress_total), (10, 10));

    // Failed attempts come back after the backoff, then the job is dead-lettered with its
    // error; a curator's retry starts it over.
    let j = meta.enqueue_job(&job(200, 2)).await.unwrap();
    let c = meta
        .claim_job("c", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.id, j.id);
    assert_eq!(
        meta.fail_job(&j.id, "c", "store unavailable", Duration::from_secs(60))
            .await
            .unwrap(),
        Some(JobStatus::Queued)
    );
    assert!(
        meta.claim_job("c", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "the backoff holds the job back"
    );
    let queued = meta.job(&j.id).await.unwrap().unwrap();
    assert_eq!(queued.status, JobStatus::Queued);
    assert!(queued.run_after > queued.created_at);
    let j2 = meta.enqueue_job(&job(201, 2)).await.unwrap();
    let c = meta
        .claim_job("c", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.id, j2.id, "the due job goes first");
    assert_eq!(
        meta.fail_job(&j2.id, "c", "first", NO_WAIT).await.unwrap(),
        Some(JobStatus::Queued)
    );
    let c = meta
        .claim_job("c", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.id.as_str(), c.attempts), (j2.id.as_str(), 2));
    assert_eq!(
        meta.fail_job(&j2.id, "c", "second: disk full", NO_WAIT)
            .await
            .unwrap(),
        Some(JobStatus::Dead)
    );
    let dead = meta.job(&j2.id).await.unwrap().unwrap();
    assert_eq!(dead.status, JobStatus::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("second: disk full"));
    assert!(dead.finished_at.is_some());
    assert_eq!(
        meta.jobs(Some(JobStatus::Dead), None, None, 10, 0)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(meta.retry_job(&j2.id).await.unwrap());
    assert!(
        !meta.retry_job(&j2.id).await.unwrap(),
        "only dead jobs are retried"
    );
    let again = meta
        .claim_job("c", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (j2.id.as_str(), 1));
    assert!(meta.complete_job(&j2.id, "c", None).await.unwrap());

    // A worker that dies on the last allowed attempt: dead-lettered when its lease runs out.
    let j3 = meta.enqueue_job(&job(300, 1)).await.unwrap();
    meta.claim_job("d", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let next = meta.claim_job("e", Duration::from_secs(30)).await.unwrap();
    assert!(
        next.as_ref().is_none_or(|n| n.id != j3.id),
        "a job out of attempts is not run again"
    );
    let dead = meta.job(&j3.id).await.unwrap().unwrap();
    assert_eq!(dead.status, JobStatus::Dead);
    assert!(dead.last_error.unwrap().contains("lease expired"));
    meta.close().await;
}

#[tokio::test]
async fn queue_semantics_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/enclave.db?mode=rwc", dir.path().display());
    queue_semantics(&url).await;
}

#[tokio::test]
async fn queue_semantics_on_postgres() {
    let db = PgDatabase::create().await;
    queue_semantics(&db.url).await;
    db.drop_now().await;
}

/// Queues an ingest of `path` as the server does: a queued document and its job.
async fn queue_file(meta: &MetaStore, path: &std::path::Path, name: &str) -> (String, String) {
    let collection = meta.ensure_collection("default").await.unwrap();
    let source_uri = format!("upload://default/{name}");
    let new = NewVersion {
        collection_id: collection.id.clone(),
        source_uri: source_uri.clone(),
        external_id: None,
        parent_id: None,
        title: name.into(),
        mime_type: Some("application/pdf".into()),
        sha256: String::new(),
        byte_size: 0,
        metadata: serde_json::json!({}),
        tags: Vec::new(),
        access: vec!["public".into()],
    };
    let doc = meta.queue_document(&new).await.unwrap();
    let job = enqueue(
        meta,
        &doc,
        &IngestJob {
            content: StoredContent {
                collection: "default".into(),
                path: path.to_path_buf(),
                file_name: name.into(),
                source_uri,
                external_id: None,
                title: None,
                tags: Vec::new(),
                access: vec!["public".into()],
                force: false,
            },
            previous_sha: None,
        },
        3,
    )
    .await
    .unwrap();
    (doc, job.id)
}

#[tokio::test]
async fn a_killed_worker_leaves_a_job_that_the_next_worker_finishes() {
    let db = PgDatabase::create().await;
    let mut env = TestEnv::postgres(&db);
    env.extra_env
        .push(("ENCLAVE_WORKER__LEASE_SECS".into(), "3".into()));
    env.extra_env
        .push(("ENCLAVE_WORKER__POLL_MS".into(), "100".into()));
    let docs = env.docs();
    // A large PDF (about 100 pages) keeps the worker busy for several seconds.
    let big = docs.join("faq.pdf");
    std::fs::copy(corpus_file("debian-faq__FAQ__debian-faq.en.pdf"), &big).unwrap();
    let small = docs.join("hpiop.pdf");
    std::fs::copy(corpus_file("simh__hpiop.pdf"), &small).unwrap();
    let meta = env.meta().await;
    let (big_doc, big_job) = queue_file(&meta, &big, "faq.pdf").await;
    let (small_doc, small_job) = queue_file(&meta, &small, "hpiop.pdf").await;

    // The first worker claims the big job (the oldest), gets into it, and is killed.
    let mut first = env
        .command()
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let j = meta.job(&big_job).await.unwrap().unwrap();
        if j.status == JobStatus::Running && j.progress_total > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the worker never got into the job: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let orphan = meta.job(&big_job).await.unwrap().unwrap();
    assert_eq!(orphan.status, JobStatus::Running, "{orphan:?}");
    assert_ne!(
        meta.document(&big_doc).await.unwrap().unwrap().status,
        "ready"
    );

    // The next worker waits out the lease, repairs the half-written version and finishes
    // both jobs.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let out = env.run(&["worker", "--drain"]);
    assert!(out.contains("2 jobs run"), "{out}");
    for (doc, job) in [(&big_doc, &big_job), (&small_doc, &small_job)] {
        let j = meta.job(job).await.unwrap().unwrap();
        assert_eq!(j.status, JobStatus::Done, "{j:?}");
        let d = meta.document(doc).await.unwrap().unwrap();
        assert_eq!(d.status, "ready", "{d:?}");
        assert_eq!(d.version, if doc == &big_doc { 2 } else { 1 });
    }
    assert_eq!(
        meta.job(&big_job).await.unwrap().unwrap().attempts,
        2,
        "the big job ran twice: killed, then finished"
    );
    meta.close().await;
    assert_consistent(&env).await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_job_that_keeps_failing_is_dead_lettered_with_its_error() {
    let mut env = TestEnv::embedded();
    env.extra_env
        .push(("ENCLAVE_WORKER__RETRY_BASE_SECS".into(), "0".into()));
    // Webhooks on: the worker records events (it does not send them).
    for (k, v) in [
        ("ENCLAVE_WEBHOOKS__URL", "http://127.0.0.1:9/hook"),
        ("ENCLAVE_WEBHOOKS__SECRET", "s3cret"),
    ] {
        env.extra_env.push((k.into(), v.into()));
    }
    let meta = env.meta().await;
    // A document whose job can never run: integrators hear once, when it gives up.
    let c = meta.ensure_collection("default").await.unwrap();
    let doc = meta
        .queue_document(&NewVersion {
            collection_id: c.id.clone(),
            source_uri: "upload://default/external/memo-7".into(),
            external_id: Some("memo-7".into()),
            parent_id: None,
            title: "Memo 7".into(),
            mime_type: Some("text/plain".into()),
            sha256: "0".repeat(64),
            byte_size: 10,
            metadata: serde_json::json!({}),
            tags: Vec::new(),
            access: vec!["public".into()],
        })
        .await
        .unwrap();
    let stuck = meta
        .enqueue_job(&NewJob {
            kind: "ingest".into(),
            document_id: Some(doc.clone()),
            payload: serde_json::json!({ "content": "not a stored file" }),
            max_attempts: 3,
        })
        .await
        .unwrap();
    // A payload no worker can read, and a document that was deleted while its job waited.
    let bad = meta
        .enqueue_job(&NewJob {
            kind: "ingest".into(),
            document_id: None,
            payload: serde_json::json!({ "content": "not a stored file" }),
            max_attempts: 3,
        })
        .await
        .unwrap();
    let gone = meta
        .enqueue_job(&NewJob {
            kind: "ingest".into(),
            document_id: Some("no-such-document".into()),
            payload: serde_json::json!({}),
            max_attempts: 3,
        })
        .await
        .unwrap();
    meta.close().await;
    let out = env.run(&["worker", "--drain"]);
    assert!(out.contains("7 jobs run"), "{out}");
    let meta = env.meta().await;
    let bad = meta.job(&bad.id).await.unwrap().unwrap();
    assert_eq!((bad.status, bad.attempts), (JobStatus::Dead, 3), "{bad:?}");
    assert!(
        bad.last_error
            .as_deref()
            .unwrap()
            .contains("unreadable job payload"),
        "{bad:?}"
    );
    let gone = meta.job(&gone.id).await.unwrap().unwrap();
    assert_eq!(gone.status, JobStatus::Done);
    assert_eq!(gone.last_error.as_deref(), Some("the document was deleted"));
    let stuck = meta.job(&stuck.id).await.unwrap().unwrap();
    assert_eq!((stuck.status, stuck.attempts), (JobStatus::Dead, 3));
    // One event, for the last attempt only, naming the document and the reason.
    let events = meta.deliveries(None, 10, 0).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, "document.failed");
    assert_eq!(events[0].document_id.as_deref(), Some(doc.as_str()));
    let payload: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
    assert_eq!(payload["document"]["external_id"], "memo-7", "{payload}");
    assert_eq!(payload["document"]["status"], "failed", "{payload}");
    assert!(
        payload["document"]["error"]
            .as_str()
            .unwrap()
            .contains("unreadable job payload"),
        "{payload}"
    );
    meta.close().await;
}
