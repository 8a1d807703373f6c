//! Shared test harness: a fresh data directory (embedded SQLite + qdrant-edge) or a fresh
//! PostgreSQL database per test, the real `enclave` binary, the real models and corpus.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::sync::Arc;

use enclave_storage::local_qdrant::QdrantProcess;
use enclave_storage::{
    Document, EdgeVectorStore, MetaStore, QdrantServerConfig, QdrantServerStore, VectorStore,
    WriteOrdering,
};
use sqlx::Connection;

pub fn cache_dir() -> PathBuf {
    std::env::var_os("ENCLAVE_CACHE").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/enclave"),
        PathBuf::from,
    )
}

pub fn models_dir() -> PathBuf {
    std::env::var_os("ENCLAVE_MODELS_DIR").map_or_else(|| cache_dir().join("models"), PathBuf::from)
}

/// The Debian documentation corpus (scripts/test fetches it).
pub fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("ENCLAVE_CORPUS_DIR")
        .map_or_else(|| cache_dir().join("corpus"), PathBuf::from);
    assert!(
        dir.join("debian-faq__FAQ__debian-faq.en.pdf").is_file(),
        "the Debian corpus is missing in {}: run scripts/test (or scripts/fetch-corpus)",
        dir.display()
    );
    dir
}

/// The document whose source URI ends in `suffix`; panics with the whole list when none does.
pub fn document_ending(all: &[Document], suffix: &str) -> Document {
    all.iter()
        .find(|d| d.source_uri.ends_with(suffix))
        .unwrap_or_else(|| panic!("no document ending in {suffix}: {all:#?}"))
        .clone()
}

pub fn corpus_file(name: &str) -> PathBuf {
    let p = corpus_dir().join(name);
    assert!(p.is_file(), "{} missing from the corpus", p.display());
    p
}

/// A PostgreSQL database created for one test.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

fn pg_admin_url() -> String {
    std::env::var("ENCLAVE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

impl PgDatabase {
    pub async fn create() -> Self {
        let name = format!("enclave_it_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&pg_admin_url())
            .await
            .expect("PostgreSQL must be running (scripts/test starts it)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = pg_admin_url().rsplit_once('/').unwrap().0.to_string();
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    pub async fn drop_now(&self) {
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

/// Where a test environment keeps its vectors.
pub enum Vectors {
    /// The embedded qdrant-edge directory in the data directory.
    Edge,
    /// A collection of its own on a Qdrant server (the node is kept when the test started it).
    Server {
        url: String,
        collection: String,
        _node: Option<Arc<(QdrantProcess, tempfile::TempDir)>>,
    },
}

/// The vector backend the suite runs on: `ENCLAVE_TEST_VECTORS=qdrant` runs the same tests on
/// a Qdrant server (`ENCLAVE_TEST_QDRANT_URL`, which scripts/test starts from shared/qdrant;
/// else a node started for the test), anything else on the embedded store.
pub fn suite_vectors() -> Vectors {
    match std::env::var("ENCLAVE_TEST_VECTORS").as_deref() {
        Ok("qdrant") => Vectors::any_server(),
        _ => Vectors::Edge,
    }
}

impl Vectors {
    fn server(url: String, node: Option<Arc<(QdrantProcess, tempfile::TempDir)>>) -> Self {
        Self::Server {
            url,
            collection: format!("it_{}", uuid::Uuid::new_v4().simple()),
            _node: node,
        }
    }

    /// A Qdrant server started for one test (stopped when the environment is dropped).
    pub fn own_server() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = QdrantProcess::standalone(&dir.path().join("qdrant")).expect("starting Qdrant");
        Self::server(node.grpc_url(), Some(Arc::new((node, dir))))
    }

    /// A collection of its own on a Qdrant server: the suite's (`ENCLAVE_TEST_QDRANT_URL`)
    /// when there is one, else a node started for the test.
    pub fn any_server() -> Self {
        match std::env::var("ENCLAVE_TEST_QDRANT_URL") {
            Ok(url) => Self::server(url, None),
            Err(_) => Self::own_server(),
        }
    }

    /// A collection of its own on the Qdrant server at `url`.
    pub fn on(url: &str) -> Self {
        Self::server(url.to_string(), None)
    }
}

/// One Enclave installation: its data directory, optionally a PostgreSQL database, and its
/// vector store (embedded, or a Qdrant server).
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
    pub vectors: Vectors,
    pub extra_env: Vec<(String, String)>,
}

impl TestEnv {
    /// The embedded mode (SQLite), with the suite's vector backend.
    pub fn embedded() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            database_url: None,
            vectors: suite_vectors(),
            extra_env: Vec::new(),
        }
    }

    /// PostgreSQL, with the suite's vector backend.
    pub fn postgres(db: &PgDatabase) -> Self {
        Self {
            database_url: Some(db.url.clone()),
            ..Self::embedded()
        }
    }

    /// PostgreSQL and a Qdrant server: the scale-out mode.
    pub fn scale_out(db: &PgDatabase, vectors: Vectors) -> Self {
        Self {
            database_url: Some(db.url.clone()),
            vectors,
            ..Self::embedded()
        }
    }

    /// Whether the vectors are on a Qdrant server.
    pub fn on_server(&self) -> bool {
        matches!(self.vectors, Vectors::Server { .. })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A folder for input documents inside this environment.
    pub fn docs(&self) -> PathBuf {
        let d = self.dir.path().join("docs");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub fn db_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}/enclave.db?mode=rwc", self.data_dir().display())
        })
    }

    /// The real `enclave` binary, configured for this environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_enclave"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("ENCLAVE_DATA_DIR", self.data_dir())
            .env("ENCLAVE_MODELS_DIR", models_dir())
            .env("HF_HUB_OFFLINE", "1")
            .current_dir(self.dir.path());
        if let Some(url) = &self.database_url {
            cmd.env("ENCLAVE_DATABASE__URL", url);
        }
        if let Vectors::Server {
            url, collection, ..
        } = &self.vectors
        {
            cmd.env("ENCLAVE_VECTORS__BACKEND", "qdrant")
                .env("ENCLAVE_VECTORS__URL", url)
                .env("ENCLAVE_VECTORS__COLLECTION", collection);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `enclave ARGS`, asserting success; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap();
        assert_success(&out, args);
        String::from_utf8(out.stdout).unwrap()
    }

    /// `enclave ingest --json PATHS`: the parsed summary.
    pub fn ingest(&self, paths: &[&Path]) -> serde_json::Value {
        let mut args = vec!["ingest".to_string(), "--json".to_string()];
        args.extend(paths.iter().map(|p| p.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    pub async fn meta(&self) -> MetaStore {
        MetaStore::connect(&self.db_url(), 2).await.unwrap()
    }

    /// Opens the vector store (the embedded one only while no `enclave` process uses it).
    pub fn vectors(&self) -> Arc<dyn VectorStore> {
        match &self.vectors {
            Vectors::Edge => {
                Arc::new(EdgeVectorStore::open(&self.data_dir().join("vectors"), 384).unwrap())
            }
            Vectors::Server {
                url, collection, ..
            } => Arc::new(
                QdrantServerStore::new(QdrantServerConfig {
                    url: url.clone(),
                    api_key: None,
                    collection: collection.clone(),
                    dimension: 384,
                    shard_number: 1,
                    replication_factor: 1,
                    write_consistency_factor: 1,
                    write_ordering: WriteOrdering::Medium,
                    timeout: std::time::Duration::from_secs(10),
                    connect_timeout: std::time::Duration::from_secs(3),
                })
                .unwrap(),
            ),
        }
    }
}

pub fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "enclave {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The two stores agree: every chunk row has exactly one point and every point a chunk row,
/// only active versions hold chunks, no operation is left half-done.
pub async fn assert_consistent(env: &TestEnv) {
    let meta = env.meta().await;
    let vectors = env.vectors();
    assert!(
        meta.pending_purges(true).await.unwrap().is_empty(),
        "versions left to purge: {:?}",
        meta.pending_purges(true).await.unwrap()
    );
    assert!(meta.deleting_documents().await.unwrap().is_empty());
    let rows = meta.chunk_ids().await.unwrap();
    let points = vectors.point_ids().await.unwrap();
    assert_eq!(rows.len(), points.len(), "chunk rows vs vector points");
    assert_eq!(rows, points, "chunk rows and vector points differ");
    let mut active = 0;
    for d in meta.documents(None).await.unwrap() {
        let chunks = meta.active_chunks(&d.id).await.unwrap();
        if d.version > 0 {
            assert_eq!(chunks.len() as i64, d.chunk_count, "{}", d.source_uri);
        }
        active += chunks.len();
    }
    assert_eq!(active, rows.len(), "chunk rows outside active versions");
    meta.close().await;
}

/// The document text: pages joined the way chunk offsets count them.
pub fn document_text(pages: &[enclave_storage::PageRecord]) -> String {
    pages
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join(enclave_ingest::parse::PAGE_SEPARATOR)
}

/// The real embedding model, as the binary loads it.
pub async fn embedder() -> enclave_embed::OnnxEmbedder {
    enclave_embed::OnnxEmbedder::start(enclave_embed::OnnxEmbedderConfig {
        model_dir: models_dir().join("all-minilm-l6-v2"),
        onnxruntime: models_dir().join("onnxruntime/libonnxruntime.so"),
        max_input_tokens: 256,
        batch_size: 8,
        threads: None,
    })
    .await
    .unwrap()
}
