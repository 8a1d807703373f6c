//! Idempotence, new versions replacing old chunks, and deletion reaching the vectors.

use enclave_storage::{VectorFilter, VersionState};

use crate::common::{TestEnv, assert_consistent, corpus_file};

#[tokio::test]
async fn unchanged_changed_and_deleted_documents() {
    let env = TestEnv::embedded();
    let docs = env.docs();
    std::fs::copy(corpus_file("simh__hpiop.pdf"), docs.join("hpiop.pdf")).unwrap();
    let memo = docs.join("memo.txt");
    std::fs::write(
        &memo,
        "The quarterly audit starts on Monday. Bring the ledgers.\n",
    )
    .unwrap();

    let first = env.ingest(&[&docs]);
    assert_eq!(
        (first["ingested"].as_i64(), first["failed"].as_i64()),
        (Some(2), Some(0)),
        "{first}"
    );
    assert!(first["pages"].as_i64().unwrap() >= 3);

    // Same content: nothing to do.
    let second = env.ingest(&[&docs]);
    assert_eq!(second["unchanged"], 2, "{second}");
    assert_eq!(
        (second["ingested"].as_i64(), second["chunks"].as_i64()),
        (Some(0), Some(0))
    );

    let meta = env.meta().await;
    let doc = meta
        .documents(None)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.source_uri.ends_with("memo.txt"))
        .unwrap();
    assert_eq!(doc.version, 1);
    let old_chunks = meta.active_chunks(&doc.id).await.unwrap();
    meta.close().await;

    // Changed content: version 2 replaces version 1's chunks and vectors.
    std::fs::write(
        &memo,
        "The quarterly audit moved to Wednesday.\n\nBring the ledgers and the bank statements.\n",
    )
    .unwrap();
    let third = env.ingest(&[&docs]);
    assert_eq!(
        (third["ingested"].as_i64(), third["unchanged"].as_i64()),
        (Some(1), Some(1)),
        "{third}"
    );
    let meta = env.meta().await;
    let doc = meta.document(&doc.id).await.unwrap().unwrap();
    assert_eq!(doc.version, 2);
    assert_eq!(
        meta.versions(&doc.id).await.unwrap(),
        vec![(1, VersionState::Purged), (2, VersionState::Active)]
    );
    let new_chunks = meta.active_chunks(&doc.id).await.unwrap();
    assert!(new_chunks.iter().all(|c| c.version == 2));
    assert!(new_chunks.iter().any(|c| c.text.contains("Wednesday")));
    let old_ids: Vec<String> = old_chunks.iter().map(|c| c.id.clone()).collect();
    assert!(meta.visible_chunks(&old_ids).await.unwrap().is_empty());
    meta.close().await;
    assert_consistent(&env).await;
    {
        let vectors = env.vectors();
        let filter = VectorFilter {
            document_ids: vec![doc.id.clone()],
            ..Default::default()
        };
        assert_eq!(vectors.count(&filter).await.unwrap(), new_chunks.len());
    }

    // Delete by path: rows and vectors are gone, the other document stays.
    let out = env.run(&["delete", memo.to_str().unwrap()]);
    assert!(out.contains("deleted"), "{out}");
    let meta = env.meta().await;
    assert!(meta.document(&doc.id).await.unwrap().is_none());
    assert_eq!(meta.documents(None).await.unwrap().len(), 1);
    meta.close().await;
    {
        let vectors = env.vectors();
        let filter = VectorFilter {
            document_ids: vec![doc.id.clone()],
            ..Default::default()
        };
        assert_eq!(vectors.count(&filter).await.unwrap(), 0);
    }
    assert_consistent(&env).await;
    // Deleting what is not there says so.
    let out = env
        .command()
        .args(["delete", "no-such-document"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found: no-such-document"));
}
