//! The stores against real backends: the metadata store on SQLite and on a fresh PostgreSQL
//! database (same scenario, same expectations), and the vector store on qdrant-edge (on disk)
//! and on a real Qdrant server started from `shared/qdrant` (same scenarios, same
//! expectations).

use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave_storage::local_qdrant::QdrantProcess;
use enclave_storage::{
    Bm25Encoder, ChunkPoint, ChunkRecord, EdgeVectorStore, MetaStore, NewVersion, PageRecord,
    PayloadUpdate, PointPayload, PurgeTask, QdrantServerConfig, QdrantServerStore, StorageError,
    VectorFilter, VectorQuery, VectorStore, VersionState, WriteOrdering, chunk_point_id,
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
    let stats = store.collection_stats(&[]).await.unwrap();
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

    // Shared stores: a version being written is interrupted only once its writer has been
    // silent since the cutoff, and a version given up can never become active.
    let (live, v) = store
        .begin_version(&new_version(&c.id, "file:///live.txt", "sha-live"))
        .await
        .unwrap();
    let orphaned = |cutoff: &'static str| {
        let store = store.clone();
        let live = live.clone();
        async move {
            store
                .orphaned_purges(&cutoff.to_string())
                .await
                .unwrap()
                .iter()
                .any(|t| t.document_id == live)
        }
    };
    assert!(
        !orphaned("2000-01-01T00:00:00.000Z").await,
        "its writer spoke after 2000"
    );
    assert!(orphaned("9000-01-01T00:00:00.000Z").await);
    store.keep_version_alive(&live, v).await.unwrap();
    let task = PurgeTask {
        document_id: live.clone(),
        version: v,
        state: VersionState::Indexing,
    };
    store.finish_purge(&task).await.unwrap();
    let err = store
        .activate_version(&live, v, "Live", &serde_json::json!({}), 1, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Conflict(ref m) if m.contains("no longer being indexed")),
        "{err}"
    );
    assert_eq!(store.document(&live).await.unwrap().unwrap().version, 0);
    // Every table can be counted (what `enclave migrate` verifies).
    let counts = store.table_counts().await.unwrap();
    assert_eq!(counts.len(), enclave_storage::TABLES.len());
    assert!(
        counts.iter().any(|(t, n)| *t == "documents" && *n == 2),
        "{counts:?}"
    );
}

/// Copies a store into a fresh PostgreSQL database twice (the second copy changes nothing),
/// and the copy holds the same rows.
async fn copies_into(source: &MetaStore) {
    let db = PgDatabase::create().await;
    let target = MetaStore::connect(&db.url, 4).await.unwrap();
    for _ in 0..2 {
        source.copy_into(&target, &|_, _| {}).await.unwrap();
        assert_eq!(
            source.table_counts().await.unwrap(),
            target.table_counts().await.unwrap()
        );
    }
    let docs = |s: &MetaStore| {
        let s = s.clone();
        async move {
            let mut d = s.documents(None).await.unwrap();
            d.sort_by(|a, b| a.id.cmp(&b.id));
            d
        }
    };
    assert_eq!(docs(source).await, docs(&target).await);
    target.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn metadata_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/sub/enclave.db?mode=rwc", dir.path().display());
    let store = MetaStore::connect(&url, 4).await.unwrap();
    assert!(!store.is_postgres());
    metadata_lifecycle(&store).await;
    copies_into(&store).await;
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

/// A vector store backend under test: its data, and how to open a store on it.
enum Backend {
    Edge(tempfile::TempDir),
    Server {
        node: QdrantProcess,
        /// The node's data, removed after the node is stopped.
        _data: tempfile::TempDir,
        collection: String,
    },
}

impl Backend {
    fn edge() -> Self {
        Self::Edge(tempfile::tempdir().unwrap())
    }

    fn server() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = QdrantProcess::standalone(&dir.path().join("qdrant"))
            .expect("the Qdrant server from shared/qdrant (ENCLAVE_QDRANT_DIR) must start");
        let collection = format!("test_{}", uuid::Uuid::new_v4().simple());
        Self::Server {
            node,
            _data: dir,
            collection,
        }
    }

    /// Both backends, for scenarios that must behave the same on each.
    fn both() -> [Self; 2] {
        [Self::edge(), Self::server()]
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Edge(_) => "edge",
            Self::Server { .. } => "qdrant server",
        }
    }

    fn server_config(
        node: &QdrantProcess,
        collection: &str,
        dimension: usize,
    ) -> QdrantServerConfig {
        QdrantServerConfig {
            url: node.grpc_url(),
            api_key: None,
            collection: collection.into(),
            dimension,
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            write_ordering: WriteOrdering::Medium,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// Opens (or reopens) a store of `dimension`-sized vectors on this backend.
    fn open(&self, dimension: usize) -> enclave_storage::Result<Arc<dyn VectorStore>> {
        Ok(match self {
            Self::Edge(dir) => Arc::new(EdgeVectorStore::open(
                &dir.path().join("vectors"),
                dimension,
            )?),
            Self::Server {
                node, collection, ..
            } => Arc::new(QdrantServerStore::new(Self::server_config(
                node, collection, dimension,
            ))?),
        })
    }
}

async fn round_trip(backend: &Backend) {
    let name = backend.name();
    let bm25 = Bm25Encoder::new().unwrap();
    {
        let store = backend.open(3).unwrap();
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
        assert_eq!(
            store.count(&VectorFilter::default()).await.unwrap(),
            3,
            "{name}"
        );
        store.flush().await.unwrap();
    }
    // Reopened; optimizing (index, merge, vacuum) keeps every point searchable.
    let store = backend.open(3).unwrap();
    assert!(store.check().await.unwrap().contains(if name == "edge" {
        "qdrant-edge"
    } else {
        "Qdrant 1.18"
    }));
    assert_eq!(store.point_ids().await.unwrap().len(), 3, "{name}");
    store.optimize().await.unwrap();
    assert_eq!(store.point_ids().await.unwrap().len(), 3, "{name}");

    let hits = store
        .search(
            VectorQuery::Dense(vec![1.0, 0.0, 0.0]),
            &VectorFilter::default(),
            2,
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 2, "{name}");
    assert_eq!(hits[0].id, chunk_point_id("d1", 1, 0), "{name}");
    assert!(hits[0].score > hits[1].score, "{name}");
    assert!(
        (hits[0].score - 1.0).abs() < 1e-4,
        "{name}: cosine of equal vectors"
    );
    assert_eq!(
        hits[0].payload,
        point("d1", 1, 0, "c1", vec![], "").payload,
        "{name}"
    );

    // Filters run inside the search.
    let only_c2 = VectorFilter {
        collection_ids: vec!["c2".into()],
        ..Default::default()
    };
    let hits = store
        .search(VectorQuery::Dense(vec![1.0, 0.0, 0.0]), &only_c2, 10)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1, "{name}");
    assert_eq!(hits[0].payload.document_id, "d2", "{name}");
    let nobody = VectorFilter {
        access_any: vec!["secret".into()],
        ..Default::default()
    };
    assert_eq!(store.count(&nobody).await.unwrap(), 0, "{name}");

    // BM25 finds the lexical match.
    let (i, v) = bm25.query("sleeping dog");
    let hits = store
        .search(VectorQuery::Bm25(i, v), &VectorFilter::default(), 3)
        .await
        .unwrap();
    assert_eq!(hits[0].id, chunk_point_id("d1", 1, 1), "{name}: {hits:?}");

    // Points read back whole: both vectors and the payload, for copying a store.
    let (page, next) = store.points_page(None, 2).await.unwrap();
    assert_eq!(page.len(), 2, "{name}");
    let (rest, end) = store.points_page(next.clone(), 2).await.unwrap();
    assert!(next.is_some() && end.is_none(), "{name}");
    assert_eq!(rest.len(), 1, "{name}");
    let fox = store
        .get_points(&[chunk_point_id("d2", 1, 0)])
        .await
        .unwrap();
    assert_eq!(fox.len(), 1, "{name}");
    let expected = point(
        "d2",
        1,
        0,
        "c2",
        vec![0.9, 0.1, 0.0],
        "foxes are quick animals",
    );
    let norm = (0.9f32 * 0.9 + 0.1 * 0.1).sqrt();
    assert!(
        (fox[0].dense[0] - 0.9 / norm).abs() < 1e-4,
        "{name}: {:?}",
        fox[0].dense
    );
    let sorted = |s: &(Vec<u32>, Vec<f32>)| {
        let mut pairs: Vec<(u32, f32)> = s.0.iter().copied().zip(s.1.iter().copied()).collect();
        pairs.sort_by_key(|p| p.0);
        pairs
    };
    assert_eq!(sorted(&fox[0].sparse), sorted(&expected.sparse), "{name}");
    assert_eq!(fox[0].payload, expected.payload, "{name}");

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
    assert_eq!(store.count(&d1).await.unwrap(), 1, "{name}");
    store.delete_document("d1").await.unwrap();
    assert_eq!(store.count(&d1).await.unwrap(), 0, "{name}");
    assert_eq!(
        store.point_ids().await.unwrap(),
        vec![chunk_point_id("d2", 1, 0)],
        "{name}"
    );

    // Wrong dimensions are refused with both numbers.
    let err = store
        .upsert(vec![point("d3", 1, 0, "c1", vec![1.0, 0.0], "x")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dimension 2"), "{name}: {err}");
    drop(store);
    let err = match backend.open(384) {
        Err(e) => e,
        Ok(s) => s.count(&VectorFilter::default()).await.unwrap_err(),
    };
    assert!(err.to_string().contains("384"), "{name}: {err}");
}

#[tokio::test]
async fn vector_store_round_trip_on_both_backends() {
    for backend in Backend::both() {
        round_trip(&backend).await;
    }
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

async fn payload_updates(backend: &Backend) {
    let name = backend.name();
    let store = backend.open(3).unwrap();
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
    assert_eq!(hits.len(), 2, "{name}");
    assert!(!hits.contains(&first), "{name}");
    let all = VectorFilter {
        include_disabled: true,
        ..Default::default()
    };
    assert_eq!(store.count(&all).await.unwrap(), 3, "{name}");
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
    assert_eq!(store.count(&in_c2).await.unwrap(), 2, "{name}");
    let hits = store.search(query(), &in_c2, 10).await.unwrap();
    assert!(
        hits.iter().all(|h| h.payload.tags == ["contracts"]),
        "{name}"
    );
    assert!(
        hits.iter().any(|h| h.id == first && h.payload.disabled),
        "{name}"
    );
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
    assert_eq!(hits[0], first, "{name}");
}

#[tokio::test]
async fn payload_updates_move_tag_and_disable_points_on_both_backends() {
    for backend in Backend::both() {
        payload_updates(&backend).await;
    }
}

async fn dates_authors_and_access(backend: &Backend) {
    let name = backend.name();
    let store = backend.open(3).unwrap();
    let dated = |doc: &str, date: Option<i64>, author: &str, access: &str| {
        let mut p = point(doc, 1, 0, "c1", vec![1.0, 0.0, 0.0], "memo");
        p.payload.date = date;
        p.payload.authors = vec![author.into()];
        p.payload.access = vec![access.into()];
        p.payload.mime_type = "message/rfc822".into();
        p
    };
    store
        .upsert(vec![
            dated("jan", Some(1_704_067_200), "alice@example.org", "legal"),
            dated("jun", Some(1_717_200_000), "bob@example.org", "public"),
            dated("undated", None, "alice@example.org", "public"),
        ])
        .await
        .unwrap();
    let found = |f: VectorFilter| {
        let store = store.clone();
        async move {
            let mut docs: Vec<String> = store
                .search(VectorQuery::Dense(vec![1.0, 0.0, 0.0]), &f, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|h| h.payload.document_id)
                .collect();
            docs.sort();
            docs
        }
    };
    let since_feb = VectorFilter {
        date_from: Some(1_706_745_600),
        ..Default::default()
    };
    assert_eq!(found(since_feb).await, ["jun"], "{name}");
    let until_feb = VectorFilter {
        date_to: Some(1_706_745_600),
        ..Default::default()
    };
    assert_eq!(found(until_feb).await, ["jan"], "{name}");
    let alice = VectorFilter {
        authors_any: vec![" Alice@Example.org ".into()],
        ..Default::default()
    };
    assert_eq!(found(alice).await, ["jan", "undated"], "{name}");
    let public_mail = VectorFilter {
        access_any: vec!["public".into()],
        mime_types: vec!["message/rfc822".into()],
        ..Default::default()
    };
    assert_eq!(found(public_mail).await, ["jun", "undated"], "{name}");
}

#[tokio::test]
async fn date_author_and_access_filters_on_both_backends() {
    for backend in Backend::both() {
        dates_authors_and_access(&backend).await;
    }
}

#[tokio::test]
async fn the_server_backend_indexes_every_filtered_field() {
    let backend = Backend::server();
    let store = backend.open(3).unwrap();
    store.check().await.unwrap();
    let Backend::Server {
        node, collection, ..
    } = &backend
    else {
        unreachable!()
    };
    let client = qdrant_client::Qdrant::from_url(&node.grpc_url())
        .skip_compatibility_check()
        .build()
        .unwrap();
    let info = client
        .collection_info(collection)
        .await
        .unwrap()
        .result
        .unwrap();
    let mut indexed: Vec<&String> = info.payload_schema.keys().collect();
    indexed.sort();
    assert_eq!(
        indexed,
        [
            "access",
            "authors",
            "collection_id",
            "date",
            "disabled",
            "document_id",
            "mime_type",
            "tags",
            "version"
        ]
    );
    // A second process opening the same collection finds it ready and changes nothing.
    let again = backend.open(3).unwrap();
    assert_eq!(again.count(&VectorFilter::default()).await.unwrap(), 0);
}

#[tokio::test]
async fn a_server_that_goes_away_is_unavailable_then_recovers_by_itself() {
    let mut backend = Backend::server();
    let store = backend.open(3).unwrap();
    store
        .upsert(vec![point("d1", 1, 0, "c1", vec![1.0, 0.0, 0.0], "alpha")])
        .await
        .unwrap();
    let Backend::Server { node, .. } = &mut backend else {
        unreachable!()
    };
    node.kill();
    let started = Instant::now();
    let err = store
        .search(
            VectorQuery::Dense(vec![1.0, 0.0, 0.0]),
            &VectorFilter::default(),
            5,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Unavailable {
                store: "vector store",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("vector store unavailable"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let err = store.check().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // Back on the same data: the same client works again without being reopened.
    node.restart().unwrap();
    let mut hits = Vec::new();
    for _ in 0..50 {
        match store
            .search(
                VectorQuery::Dense(vec![1.0, 0.0, 0.0]),
                &VectorFilter::default(),
                5,
            )
            .await
        {
            Ok(h) if !h.is_empty() => {
                hits = h;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, chunk_point_id("d1", 1, 0));
}
