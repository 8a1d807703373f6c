//! Crash consistency: `kill -9` the ingest part-way, several times, changing a file in
//! between; the next run converges with no document lost and no duplicate or orphan chunk.

use std::time::Duration;

use crate::common::{TestEnv, assert_consistent, corpus_file};

const PDFS: [&str; 8] = [
    "simh__hpiop.pdf",
    "simh__pdp11interrupts.pdf",
    "simh__massbusmystery.pdf",
    "simh__card_readers_18b.pdf",
    "simh__decsys.pdf",
    "simh__gri_doc.pdf",
    "simh__advmonsys.pdf",
    "simh__lgp_doc.pdf",
];

#[tokio::test]
async fn kill_9_part_way_then_rerun_converges() {
    let mut env = TestEnv::embedded();
    if env.on_server() {
        // Shared stores: a killed writer's version is repaired once the writer has been
        // silent for the lease, which this test shortens.
        env.extra_env
            .push(("ENCLAVE_WORKER__LEASE_SECS".into(), "1".into()));
    }
    let docs = env.docs();
    for p in PDFS {
        std::fs::copy(corpus_file(p), docs.join(p)).unwrap();
    }
    let memo = docs.join("memo.txt");
    std::fs::write(&memo, "Version one of the memo. ".repeat(200)).unwrap();

    // The database exists before the first run, so that progress can be watched.
    env.run(&["status"]);
    let meta = env.meta().await;
    let ready = || {
        let meta = meta.clone();
        async move {
            meta.documents(None)
                .await
                .unwrap()
                .iter()
                .filter(|d| d.status == "ready")
                .count()
        }
    };
    let mut killed_mid_way = 0;
    for round in 0..3 {
        // Each run is killed as soon as it has finished one more document than the last:
        // part-way, whatever the speed of the machine and of the vector store.
        let before = ready().await;
        let mut child = env
            .command()
            .args(["ingest", docs.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(300) {
            if ready().await > before {
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap(); // SIGKILL
                    killed_mid_way += 1;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.wait().unwrap();
        if round == 0 {
            // Content changes between crashes: the new version must win.
            std::fs::write(&memo, "Version two of the memo. ".repeat(300)).unwrap();
        }
    }
    assert!(
        killed_mid_way >= 2,
        "the ingest finished before it could be killed"
    );

    if env.on_server() {
        std::thread::sleep(Duration::from_millis(1500));
    }
    meta.close().await;
    let summary = env.ingest(&[&docs]);
    assert_eq!(summary["failed"], 0, "{summary:#}");
    assert_consistent(&env).await;

    let meta = env.meta().await;
    let documents = meta.documents(None).await.unwrap();
    assert_eq!(documents.len(), PDFS.len() + 1, "one document per file");
    for d in &documents {
        assert_eq!(d.status, "ready", "{d:#?}");
        assert!(d.chunk_count > 0, "{d:#?}");
    }
    let memo_doc = documents
        .iter()
        .find(|d| d.source_uri.ends_with("memo.txt"))
        .unwrap();
    let chunks = meta.active_chunks(&memo_doc.id).await.unwrap();
    assert!(
        chunks.iter().all(|c| c.text.contains("Version two")),
        "old text survived"
    );
    meta.close().await;

    // And a further run has nothing left to do.
    let again = env.ingest(&[&docs]);
    assert_eq!(
        again["unchanged"].as_i64(),
        Some(PDFS.len() as i64 + 1),
        "{again:#}"
    );
}
