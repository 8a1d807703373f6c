//! The stores against real backends: the metadata store on SQLite and on a fresh PostgreSQL
//! database (same scenario, same expectations), and the qdrant-edge vector store on disk.

use enclave_storage::{
    Bm25Encoder, ChunkPoint, ChunkRecord, EdgeVectorStore, MetaStore, NewVersion, PageRecord,
    PayloadUpdate, PointPayload, VectorFilter, VectorQuery, VectorStore, VersionState,
    chunk_point_id,
};
use sqlx::Connection;

/// Admin URL of the test PostgreSQL server (trust auth on 127.0.0.1).
fn pg_admin_url() -> String {
    std::env::var("ENCLAVE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A fresh PostgreSQL database for one test; dropped at the end of the test.
struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> Self {
        let name = format!("enclave_test_{}", uuid::Uuid::new_v4().simple());
        let admin = pg_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL must be running for the tests (scripts/test starts it)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    async fn drop_now(self) {
        let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

fn new_version(collection_id: &str, uri: &str, sha: &str) -> NewVersion {
    NewVersion {
        collection_id: collection_id.into(),
        source_uri: uri.into(),
        external_id: Some("ext-1".into()),
        parent_id: None,
        title: "memo.txt".into(),
        mime_type: Some("text/plain".into()),
        sha256: sha.into(),
        byte_size: 42,
        metadata: serde_json::json!({"from": "a@example.org"}),
        tags: vec!["legal".into()],
        access: vec!["public".into()],
    }
}

fn chunks_for(doc: &str, version: i64, texts: &[&str]) -> (Vec<PageRecord>, Vec<ChunkRecord>) {
    let page = texts.join("\n\n");
    let pages = vec![PageRecord {
        page_number: 1,
        char_start: 0,
        text: page,
    }];
    let mut at = 0;
    let chunks = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let len = t.chars().count() as i64;
            let c = ChunkRecord {
                id: chunk_point_id(doc, version, i as i64),
                document_id: doc.into(),
                version,
                ordinal: i as i64,
                text: (*t).into(),
                page_start: 1,
                page_end: 1,
                char_start: at,
                char_end: at + len,
                token_count: 3,
                section: None,
                disabled: false,
            };
            at += len + 2;
            c
        })
        .collect();
    (pages, chunks)
}

/// The metadata scenario both backends must pass identically.
async fn metadata_lifecycle(store: &MetaStore) {
    let c = store.ensure_collection("legal").await.unwrap();
    assert_eq!(store.ensure_collection("legal").await.unwrap(), c);
    assert_eq!(store.collections().await.unwrap(), vec![c.clone()]);

    // Version 1 becomes active.
    let (doc, v1) = store
        .begin_version(&new_version(&c.id, "file:///memo.txt", "sha-1"))
        .await
        .unwrap();
    assert_eq!(v1, 1);
    let d = store.document(&doc).await.unwrap().unwrap();
    assert_eq!((d.status.as_str(), d.version), ("indexing", 0));
    assert!(!d.is_settled());
    let (pages, chunks) = chunks_for(&doc, v1, &["alpha one", "beta two"]);
    store.store_chunks(&doc, v1, &pages, &chunks).await.unwrap();
    // Not visible before activation.
    assert!(
        store
            .visible_chunks(&[chunks[0].id.clone()])
            .await
            .unwrap()
            .is_empty()
    );
    let prev = store
        .activate_version(&doc, v1, "Memo", &serde_json::json!({"k": 1}), 1, 2)
        .await
        .unwrap();
    assert_eq!(prev, None);
    let d = store.document(&doc).await.unwrap().unwrap();
    assert_eq!(
        (d.status.as_str(), d.version, d.title.as_str()),
        ("ready", 1, "Memo")
    );
    assert_eq!(d.metadata, serde_json::json!({"k": 1}));
    assert_eq!(d.tags, vec!["legal".to_string()]);
    assert_eq!(d.external_id.as_deref(), Some("ext-1"));
    assert!(d.is_settled());
    assert_eq!(store.active_chunks(&doc).await.unwrap(), chunks);
    assert_eq!(store.active_pages(&doc).await.unwrap(), pages);

    // Version 2 replaces it; version 1 is superseded until purged.
    let (doc_again, v2) = store
        .begin_version(&new_version(&c.id, "file:///memo.txt", "sha-2"))
        .await
        .unwrap();
    assert_eq!((doc_again.as_str(), v2), (doc.as_str(), 2));
    let (pages2, chunks2) = chunks_for(&doc, v2, &["gamma three"]);
    store
        .store_chunks(&doc, v2, &pages2, &chunks2)
        .await
        .unwrap();
    // Readers still see version 1 only.
    let ids: Vec<String> = chunks
        .iter()
        .chain(&chunks2)
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(store.visible_chunks(&ids).await.unwrap(), chunks);
    let prev = store
        .activate_version(&doc, v2, "Memo", &serde_json::json!({}), 1, 1)
        .await
        .unwrap();
    assert_eq!(prev, Some(1));
    assert_eq!(store.visible_chunks(&ids).await.unwrap(), chunks2);
    let purges = store.pending_purges(false).await.unwrap();
    assert_eq!(purges.len(), 1);
    assert_eq!(
        (purges[0].version, purges[0].state),
        (1, VersionState::Superseded)
    );
    store.finish_purge(&purges[0]).await.unwrap();
    assert!(store.pending_purges(true).await.unwrap().is_empty());
    assert_eq!(store.chunk_row_count().await.unwrap(), 1);
    assert_eq!(
        store.versions(&doc).await.unwrap(),
        vec![(1, VersionState::Purged), (2, VersionState::Active)]
    );

    // An interrupted version 3 is abandoned by recovery, the document back on version 2.
    let (_, v3) = store
        .begin_version(&new_version(&c.id, "file:///memo.txt", "sha-3"))
        .await
        .unwrap();
    let (pages3, chunks3) = chunks_for(&doc, v3, &["delta four"]);
    store
        .store_chunks(&doc, v3, &pages3, &chunks3)
        .await
        .unwrap();
    assert!(store.pending_purges(false).await.unwrap().is_empty());
    let purges = store.pending_purges(true).await.unwrap();
    assert_eq!((purges.len(), purges[0].state), (1, VersionState::Indexing));
    store.finish_purge(&purges[0]).await.unwrap();
    let d = store.document(&doc).await.unwrap().unwrap();
    assert_eq!(
        (d.status.as_str(), d.version, d.sha256.as_str()),
        ("ready", 2, "sha-2")
    );
    assert_eq!(store.chunk_row_count().await.unwrap(), 1);

    // A failed version keeps the active one visible and shows the reason.
    let (_, v4) = store
        .begin_version(&new_version(&c.id, "file:///memo.txt", "sha-4"))
        .await
        .unwrap();
    store
        .fail_version(&doc, v4, "failed", "malformed PDF: bad xref")
        .await
        .unwrap();
    let d = store.document(&doc).await.unwrap().unwrap();
    assert_eq!((d.status.as_str(), d.version), ("failed", 2));
    assert!(d.is_settled());
    assert_eq!(store.active_chunks(&doc).await.unwrap(), chunks2);
    let failures = store.failures().await.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].error, "malformed PDF: bad xref");

    // A failure before any content (unreadable file) on a new source.
    let bad = store
        .record_failure(
            &c.id,
            "file:///locked.pdf",
            "locked.pdf",
            "cannot read: Permission denied",
        )
        .await
        .unwrap();
    let again = store
        .record_failure(
            &c.id,
            "file:///locked.pdf",
            "locked.pdf",
            "cannot read: again",
        )
        .await
        .unwrap();
    assert_eq!(bad, again);
    let stats = store.collection_stats().await.unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].ready, stats[0].failed), (0, 2));
    assert_eq!(stats[0].chunks, 1);

    // Deletion: marked, then removed with everything it owns.
    store.mark_deleting(&doc).await.unwrap();
    assert_eq!(store.deleting_documents().await.unwrap(), vec![doc.clone()]);
    assert!(store.visible_chunks(&ids).await.unwrap().is_empty());
    store.delete_document_row(&doc).await.unwrap();
    assert!(store.document(&doc).await.unwrap().is_none());
    assert_eq!(store.chunk_row_count().await.unwrap(), 0);
    assert_eq!(store.documents(Some(&c.id)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn metadata_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/sub/enclave.db?mode=rwc", dir.path().display());
    let store = MetaStore::connect(&url, 4).await.unwrap();
    assert!(!store.is_postgres());
    metadata_lifecycle(&store).await;
    store.close().await;
    // Reopening applies no migration twice and keeps the data.
    let store = MetaStore::connect(&url, 4).await.unwrap();
    assert_eq!(store.collections().await.unwrap().len(), 1);
}

#[tokio::test]
async fn metadata_on_postgres() {
    let db = PgDatabase::create().await;
    let store = MetaStore::connect(&db.url, 4).await.unwrap();
    assert!(store.is_postgres());
    metadata_lifecycle(&store).await;
    store.close().await;
    let store = MetaStore::connect(&db.url, 4).await.unwrap();
    assert_eq!(store.collections().await.unwrap().len(), 1);
    store.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn unsupported_database_url_is_named() {
    let err = MetaStore::connect("mysql://localhost/x", 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mysql://localhost/x"), "{err}");
}

fn point(
    doc: &str,
    version: i64,
    ordinal: i64,
    collection: &str,
    dense: Vec<f32>,
    text: &str,
) -> ChunkPoint {
    let bm25 = Bm25Encoder::new().unwrap();
    ChunkPoint {
        id: chunk_point_id(doc, version, ordinal),
        dense,
        sparse: bm25.document(text),
        payload: PointPayload {
            collection_id: collection.into(),
            document_id: doc.into(),
            version,
            ordinal,
            access: vec!["public".into()],
            tags: vec![],
            mime_type: "text/plain".into(),
            date: None,
            authors: vec![],
            disabled: false,
        },
    }
}

#[tokio::test]
async fn edge_vector_store_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors");
    let bm25 = Bm25Encoder::new().unwrap();
    {
        let store = EdgeVectorStore::open(&path, 3).unwrap();
        store
            .upsert(vec![
                point("d1", 1, 0, "c1", vec![1.0, 0.0, 0.0], "the quick brown fox"),
                point(
                    "d1",
                    1,
                    1,
                    "c1",
                    vec![0.0, 1.0, 0.0],
                    "lazy dogs sleep all day",
                ),
                point(
                    "d2",
                    1,
                    0,
                    "c2",
                    vec![0.9, 0.1, 0.0],
                    "foxes are quick animals",
                ),
            ])
            .await
            .unwrap();
        // Same id again: replaced, not added.
        store
            .upsert(vec![point(
                "d1",
                1,
                1,
                "c1",
                vec![0.0, 1.0, 0.0],
                "lazy dogs sleep all day",
            )])
            .await
            .unwrap();
        assert_eq!(store.count(&VectorFilter::default()).await.unwrap(), 3);
        store.flush().await.unwrap();
    }
    // Reopened from disk; optimizing (index, merge, vacuum) keeps every point searchable.
    let store = EdgeVectorStore::open(&path, 3).unwrap();
    assert_eq!(store.point_ids().await.unwrap().len(), 3);
    store.optimize().await.unwrap();
    assert_eq!(store.point_ids().await.unwrap().len(), 3);

    let hits = store
        .search(
            VectorQuery::Dense(vec![1.0, 0.0, 0.0]),
            &VectorFilter::default(),
            2,
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id, chunk_point_id("d1", 1, 0));
    assert!(hits[0].score > hits[1].score);

    // Filters run inside the search.
    let only_c2 = VectorFilter {
        collection_ids: vec!["c2".into()],
        ..Default::default()
    };
    let hits = store
        .search(VectorQuery::Dense(vec![1.0, 0.0, 0.0]), &only_c2, 10)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].payload.document_id, "d2");
    let nobody = VectorFilter {
        access_any: vec!["secret".into()],
        ..Default::default()
    };
    assert_eq!(store.count(&nobody).await.unwrap(), 0);

    // BM25 finds the lexical match.
    let (i, v) = bm25.query("sleeping dog");
    let hits = store
        .search(VectorQuery::Bm25(i, v), &VectorFilter::default(), 3)
        .await
        .unwrap();
    assert_eq!(hits[0].id, chunk_point_id("d1", 1, 1), "{hits:?}");

    // Deleting a version or a document removes exactly its points.
    store
        .upsert(vec![point(
            "d1",
            2,
            0,
            "c1",
            vec![0.0, 0.0, 1.0],
            "new text",
        )])
        .await
        .unwrap();
    store.delete_version("d1", 1).await.unwrap();
    let d1 = VectorFilter {
        document_ids: vec!["d1".into()],
        ..Default::default()
    };
    assert_eq!(store.count(&d1).await.unwrap(), 1);
    store.delete_document("d1").await.unwrap();
    assert_eq!(store.count(&d1).await.unwrap(), 0);
    assert_eq!(
        store.point_ids().await.unwrap(),
        vec![chunk_point_id("d2", 1, 0)]
    );

    // Wrong dimensions are refused with both numbers.
    let err = store
        .upsert(vec![point("d3", 1, 0, "c1", vec![1.0, 0.0], "x")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dimension 2"), "{err}");
    drop(store);
    let err = EdgeVectorStore::open(&path, 384).unwrap_err();
    assert!(err.to_string().contains("384"), "{err}");
}

#[tokio::test]
async fn a_vector_store_in_use_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors");
    let _first = EdgeVectorStore::open(&path, 3).unwrap();
    let err = EdgeVectorStore::open(&path, 3).unwrap_err().to_string();
    assert!(err.contains("in use by another Enclave process"), "{err}");
    assert!(err.contains(path.to_str().unwrap()), "{err}");
}

#[tokio::test]
async fn payload_updates_move_tag_and_disable_points_for_searches() {
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeVectorStore::open(&dir.path().join("vectors"), 3).unwrap();
    store
        .upsert(vec![
            point("d1", 1, 0, "c1", vec![1.0, 0.0, 0.0], "alpha"),
            point("d1", 1, 1, "c1", vec![0.9, 0.1, 0.0], "beta"),
            point("d2", 1, 0, "c1", vec![0.8, 0.2, 0.0], "gamma"),
        ])
        .await
        .unwrap();
    let query = || VectorQuery::Dense(vec![1.0, 0.0, 0.0]);
    let ids = |hits: Vec<enclave_storage::VectorHit>| -> Vec<String> {
        hits.into_iter().map(|h| h.id).collect()
    };
    let first = chunk_point_id("d1", 1, 0);
    // One point disabled: gone from searches and counts, unless asked for.
    let off = PayloadUpdate {
        disabled: Some(true),
        ..Default::default()
    };
    store
        .update_payload("d1", Some(std::slice::from_ref(&first)), &off)
        .await
        .unwrap();
    let hits = ids(store
        .search(query(), &VectorFilter::default(), 10)
        .await
        .unwrap());
    assert_eq!(hits.len(), 2);
    assert!(!hits.contains(&first));
    let all = VectorFilter {
        include_disabled: true,
        ..Default::default()
    };
    assert_eq!(store.count(&all).await.unwrap(), 3);
    // A whole document moved and tagged: every one of its points.
    let moved = PayloadUpdate {
        collection_id: Some("c2".into()),
        tags: Some(vec!["contracts".into()]),
        ..Default::default()
    };
    store.update_payload("d1", None, &moved).await.unwrap();
    let in_c2 = VectorFilter {
        collection_ids: vec!["c2".into()],
        tags_any: vec!["contracts".into()],
        include_disabled: true,
        ..Default::default()
    };
    assert_eq!(store.count(&in_c2).await.unwrap(), 2);
    let hits = store.search(query(), &in_c2, 10).await.unwrap();
    assert!(hits.iter().all(|h| h.payload.tags == ["contracts"]));
    assert!(hits.iter().any(|h| h.id == first && h.payload.disabled));
    // Enabled again.
    let on = PayloadUpdate {
        disabled: Some(false),
        ..Default::default()
    };
    store.update_payload("d1", None, &on).await.unwrap();
    let hits = ids(store
        .search(query(), &VectorFilter::default(), 10)
        .await
        .unwrap());
    assert_eq!(hits[0], first);
}
