//! The metadata store: one sqlx code path over SQLite and PostgreSQL (the `Any` driver), with
//! a migration set per backend in `migrations/` that keeps the same tables and meanings.

use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::{Result, StorageError};

/// Timestamps are stored as RFC 3339 UTC strings (sortable, identical on both backends).
pub type Timestamp = String;

/// Now, as stored.
pub fn now() -> Timestamp {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Lifecycle of one version of a document's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Being parsed, embedded and stored. Found at start-up, it was interrupted.
    Indexing,
    /// The version readers see.
    Active,
    /// Replaced by a newer version; its vectors and chunks are to be purged.
    Superseded,
    /// Replaced, and its vectors and chunks are gone.
    Purged,
    /// Could not be ingested (see its error); holds no chunks.
    Failed,
    /// Interrupted part-way; its vectors and chunks are gone.
    Abandoned,
}

impl VersionState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Indexing => "indexing",
            Self::Active => "active",
            Self::Superseded => "superseded",
            Self::Purged => "purged",
            Self::Failed => "failed",
            Self::Abandoned => "abandoned",
        }
    }
}

impl FromStr for VersionState {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "indexing" => Self::Indexing,
            "active" => Self::Active,
            "superseded" => Self::Superseded,
            "purged" => Self::Purged,
            "failed" => Self::Failed,
            "abandoned" => Self::Abandoned,
            other => return Err(StorageError::Corrupt(format!("version state '{other}'"))),
        })
    }
}

/// A named set of documents searched together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Collection {
    pub id: String,
    pub name: String,
    /// Per-collection settings (JSON object), for example `{"mode": "bm25"}`; their meaning
    /// belongs to the crates that read them.
    pub settings: serde_json::Value,
    pub created_at: Timestamp,
}

/// A document as stored. `version` is the active version (0: none yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Document {
    pub id: String,
    pub collection_id: String,
    pub source_uri: String,
    pub external_id: Option<String>,
    pub parent_id: Option<String>,
    pub title: String,
    pub mime_type: Option<String>,
    /// sha256 of the content last seen for this document (ingested or failed).
    pub sha256: String,
    pub version: i64,
    /// `indexing`, `ready`, `failed`, `no_text`, `interrupted` or `deleting`.
    pub status: String,
    pub error: Option<String>,
    pub metadata: serde_json::Value,
    pub tags: Vec<String>,
    pub access: Vec<String>,
    pub byte_size: i64,
    pub page_count: i64,
    pub chunk_count: i64,
    /// Left out of retrieval by a curator (its chunks stay stored).
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Document {
    /// Whether processing of the last seen content ended (successfully or not), so that the
    /// same content need not be processed again.
    pub fn is_settled(&self) -> bool {
        matches!(self.status.as_str(), "ready" | "failed" | "no_text")
    }
}

/// What is known of a document before its content is processed.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub collection_id: String,
    pub source_uri: String,
    pub external_id: Option<String>,
    pub parent_id: Option<String>,
    pub title: String,
    pub mime_type: Option<String>,
    pub sha256: String,
    pub byte_size: i64,
    pub metadata: serde_json::Value,
    pub tags: Vec<String>,
    pub access: Vec<String>,
}

/// The text of one page of one version.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRecord {
    /// 1-based.
    pub page_number: i64,
    /// Char offset of the page's first character in the document text (pages joined by a
    /// blank line).
    pub char_start: i64,
    pub text: String,
}

/// One chunk of one version. `char_start..char_end` are char offsets into the document text
/// (pages joined by a blank line) and give back `text` exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Also the id of the chunk's point in the vector store.
    pub id: String,
    pub document_id: String,
    pub version: i64,
    pub ordinal: i64,
    pub text: String,
    pub page_start: i64,
    pub page_end: i64,
    pub char_start: i64,
    pub char_end: i64,
    pub token_count: i64,
    pub section: Option<String>,
    /// Left out of retrieval by a curator.
    pub disabled: bool,
}

/// A version whose vectors (and rows) must be removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeTask {
    pub document_id: String,
    pub version: i64,
    pub state: VersionState,
}

/// Documents of one collection by status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionStats {
    pub collection: String,
    pub ready: i64,
    pub failed: i64,
    pub no_text: i64,
    pub other: i64,
    pub pages: i64,
    pub chunks: i64,
}

/// Documents of one format (MIME type; `None`: not recognised), across collections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FormatStats {
    pub mime_type: Option<String>,
    pub documents: i64,
    pub ready: i64,
    pub failed: i64,
    pub no_text: i64,
    pub pages: i64,
    pub chunks: i64,
}

/// A document that could not be ingested, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentFailure {
    pub collection: String,
    pub document_id: String,
    pub source_uri: String,
    pub status: String,
    pub error: String,
    pub updated_at: Timestamp,
}

/// Counters of an ingest run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    pub files: i64,
    pub ingested: i64,
    pub unchanged: i64,
    pub failed: i64,
    pub pages: i64,
    pub chunks: i64,
}

/// One version of a document, as listed to curators and integrators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionRecord {
    pub version: i64,
    pub state: VersionState,
    pub sha256: String,
    pub error: Option<String>,
    pub page_count: i64,
    pub chunk_count: i64,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// Which documents a listing returns (every field narrows; `None`: any).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocumentFilter {
    pub collection_id: Option<String>,
    pub status: Option<String>,
    pub mime_type: Option<String>,
    pub tag: Option<String>,
    /// Leave out attachments (documents with a parent).
    pub top_level_only: bool,
    /// Words that must occur (case-insensitively) in the title, the source or the external id.
    pub query: Option<String>,
    /// Only documents left out of retrieval (`Some(true)`) or only those searched (`Some(false)`).
    pub disabled: Option<bool>,
    /// Only documents of these collections (`Some(empty)`: none at all).
    pub collection_ids: Option<Vec<String>>,
    /// Only documents whose access list holds one of these tokens (empty: no restriction).
    pub access_any: Vec<String>,
    /// Disabled documents only in these collections (`None`: wherever they are).
    pub disabled_only_in: Option<Vec<String>>,
}

/// SQL that holds when the JSON list in `column` contains one of `tokens` (always, when there
/// are none), with its parameters numbered from `$first`. Access tokens are Enclave's own
/// (`public`, `user:ID`, `group:ID`, `key:ID`), so a quoted token is matched literally.
pub(crate) fn access_condition(
    column: &str,
    first: usize,
    tokens: &[String],
) -> (String, Vec<String>) {
    if tokens.is_empty() {
        return ("1 = 1".into(), Vec::new());
    }
    let parts: Vec<String> = (0..tokens.len())
        .map(|i| format!("{column} LIKE ${} ESCAPE '\\'", first + i))
        .collect();
    let binds = tokens
        .iter()
        .map(|t| format!("%{}%", like_escape(&json_text(t))))
        .collect();
    (format!("({})", parts.join(" OR ")), binds)
}

/// The order of a document listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DocumentSort {
    /// Most recently changed first (the default).
    #[default]
    Updated,
    Created,
    Title,
    Status,
    Pages,
    Chunks,
    Size,
}

impl DocumentSort {
    /// Parses `updated`, `created`, `title`, `status`, `pages`, `chunks` or `size`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "updated" => Self::Updated,
            "created" => Self::Created,
            "title" => Self::Title,
            "status" => Self::Status,
            "pages" => Self::Pages,
            "chunks" => Self::Chunks,
            "size" => Self::Size,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Created => "created",
            Self::Title => "title",
            Self::Status => "status",
            Self::Pages => "pages",
            Self::Chunks => "chunks",
            Self::Size => "size",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Self::Updated => "updated_at",
            Self::Created => "created_at",
            Self::Title => "LOWER(title)",
            Self::Status => "status",
            Self::Pages => "page_count",
            Self::Chunks => "chunk_count",
            Self::Size => "byte_size",
        }
    }
}

/// One page of a document listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentPage {
    pub documents: Vec<Document>,
    /// Documents matching the filter, all pages together.
    pub total: i64,
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds `$1..$7` of [`MetaStore::list_documents`]'s condition.
fn bind_filter<'q>(
    q: AnyQuery<'q>,
    filter: &DocumentFilter,
    tag: &str,
    words: &str,
) -> AnyQuery<'q> {
    q.bind(filter.collection_id.clone().unwrap_or_default())
        .bind(filter.status.clone().unwrap_or_default())
        .bind(filter.mime_type.clone().unwrap_or_default())
        .bind(tag.to_string())
        .bind(i64::from(filter.top_level_only))
        .bind(words.to_string())
        .bind(filter.disabled.map_or(-1, i64::from))
}

/// Metadata store over a pooled SQLite or PostgreSQL connection.
#[derive(Debug, Clone)]
pub struct MetaStore {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    /// The events recorded in the webhook outbox (see `webhooks`); none by default.
    pub(crate) webhook_events: std::sync::Arc<Vec<String>>,
}

const DOCUMENT_COLUMNS: &str = "id, collection_id, source_uri, external_id, parent_id, title, \
     mime_type, sha256, version, status, error, metadata, tags, access, byte_size, page_count, \
     chunk_count, disabled, created_at, updated_at";

fn json_column<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T> {
    let raw: String = row.try_get(column)?;
    serde_json::from_str(&raw).map_err(|e| StorageError::Corrupt(format!("{column}: {e}")))
}

fn document_from_row(row: &AnyRow) -> Result<Document> {
    Ok(Document {
        id: row.try_get("id")?,
        collection_id: row.try_get("collection_id")?,
        source_uri: row.try_get("source_uri")?,
        external_id: row.try_get("external_id")?,
        parent_id: row.try_get("parent_id")?,
        title: row.try_get("title")?,
        mime_type: row.try_get("mime_type")?,
        sha256: row.try_get("sha256")?,
        version: row.try_get("version")?,
        status: row.try_get("status")?,
        error: row.try_get("error")?,
        metadata: json_column(row, "metadata")?,
        tags: json_column(row, "tags")?,
        access: json_column(row, "access")?,
        byte_size: row.try_get("byte_size")?,
        page_count: row.try_get("page_count")?,
        chunk_count: row.try_get("chunk_count")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn chunk_from_row(row: &AnyRow) -> Result<ChunkRecord> {
    Ok(ChunkRecord {
        id: row.try_get("id")?,
        document_id: row.try_get("document_id")?,
        version: row.try_get("version")?,
        ordinal: row.try_get("ordinal")?,
        text: row.try_get("text")?,
        page_start: row.try_get("page_start")?,
        page_end: row.try_get("page_end")?,
        char_start: row.try_get("char_start")?,
        char_end: row.try_get("char_end")?,
        token_count: row.try_get("token_count")?,
        section: row.try_get("section")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
    })
}

fn page_from_row(row: &AnyRow) -> Result<PageRecord> {
    Ok(PageRecord {
        page_number: row.try_get("page_number")?,
        char_start: row.try_get("char_start")?,
        text: row.try_get("text")?,
    })
}

fn collection_from_row(row: &AnyRow) -> Result<Collection> {
    let settings: String = row.try_get("settings")?;
    Ok(Collection {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        settings: serde_json::from_str(&settings)
            .map_err(|e| StorageError::Corrupt(format!("collection settings: {e}")))?,
        created_at: row.try_get("created_at")?,
    })
}

pub(crate) fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// How [`MetaStore::connect_with`] connects.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Largest number of pooled connections (PostgreSQL; SQLite uses one).
    pub max_connections: u32,
    /// How long an operation waits for a connection before it fails as unavailable.
    pub acquire_timeout: std::time::Duration,
    /// PostgreSQL's `statement_timeout` for every connection (`None`: no limit).
    pub statement_timeout: Option<std::time::Duration>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: std::time::Duration::from_secs(5),
            statement_timeout: Some(std::time::Duration::from_secs(30)),
        }
    }
}

impl MetaStore {
    /// Connects to `url` (`sqlite://PATH[?mode=rwc]` or `postgres://...`), creating the SQLite
    /// file's directory if needed, and applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with(
            url,
            &ConnectOptions {
                max_connections,
                ..ConnectOptions::default()
            },
        )
        .await
    }

    /// [`MetaStore::connect`] with time-outs: an operation that cannot get a connection
    /// within `acquire_timeout` (PostgreSQL down) fails as
    /// [`StorageError::Unavailable`], and PostgreSQL cancels a statement running longer than
    /// `statement_timeout`.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StorageError::UnsupportedDatabase(url.to_string()));
        };
        if backend == Backend::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or_default();
            if let Some(dir) = Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
        }
        // SQLite has one writer at a time, and a deferred transaction that reads before it
        // writes fails at once ("database is locked") when another connection writes: one
        // connection serialises the embedded store's work instead.
        let max_connections = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => options.max_connections.max(1),
        };
        let statement_timeout_ms = options.statement_timeout.map(|t| t.as_millis() as u64);
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    } else if let Some(ms) = statement_timeout_ms {
                        conn.execute(format!("SET statement_timeout = {ms}").as_str())
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Self {
            pool,
            backend,
            webhook_events: Default::default(),
        })
    }

    /// Checks that the database answers; returns what answered (engine and version).
    pub async fn check(&self) -> Result<String> {
        let (engine, query) = match self.backend {
            Backend::Postgres => (
                "PostgreSQL",
                "SELECT current_setting('server_version') AS v",
            ),
            Backend::Sqlite => ("SQLite", "SELECT sqlite_version() AS v"),
        };
        let version: String = sqlx::query(query)
            .fetch_one(&self.pool)
            .await?
            .try_get("v")?;
        Ok(format!("{engine} {version}"))
    }

    /// Whether this store is PostgreSQL (else SQLite).
    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The collection named `name`, created if it does not exist.
    pub async fn ensure_collection(&self, name: &str) -> Result<Collection> {
        if let Some(c) = self.collection_by_name(name).await? {
            return Ok(c);
        }
        let id = uuid::Uuid::new_v4().to_string();
        let created_at = now();
        sqlx::query(
            "INSERT INTO collections (id, name, settings, created_at) VALUES ($1, $2, '{}', $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&id)
        .bind(name)
        .bind(&created_at)
        .execute(&self.pool)
        .await?;
        self.collection_by_name(name)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("collection '{name}'")))
    }

    /// Creates the collection `name`; [`StorageError::Conflict`] if it exists.
    pub async fn create_collection(&self, name: &str) -> Result<Collection> {
        let id = uuid::Uuid::new_v4().to_string();
        let done = sqlx::query(
            "INSERT INTO collections (id, name, settings, created_at) VALUES ($1, $2, '{}', $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&id)
        .bind(name)
        .bind(now())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::Conflict(format!("collection '{name}'")));
        }
        self.collection_by_name(name)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("collection '{name}'")))
    }

    /// Replaces a collection's settings (a JSON object).
    pub async fn set_collection_settings(
        &self,
        id: &str,
        settings: &serde_json::Value,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE collections SET settings = $1 WHERE id = $2")
            .bind(settings.to_string())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(format!("collection {id}")));
        }
        Ok(())
    }

    /// Removes a collection row and its ingest runs (its documents must be deleted first).
    pub async fn delete_collection_row(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM documents WHERE collection_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if left > 0 {
            return Err(StorageError::Conflict(format!(
                "{left} documents still in collection {id}"
            )));
        }
        sqlx::query("DELETE FROM ingest_runs WHERE collection_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM collections WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Documents matching `filter`, in `sort` order (`descending`), `limit` from `offset`.
    pub async fn list_documents(
        &self,
        filter: &DocumentFilter,
        sort: DocumentSort,
        descending: bool,
        limit: i64,
        offset: i64,
    ) -> Result<DocumentPage> {
        let tag = filter
            .tag
            .as_ref()
            .map(|t| {
                format!(
                    "%{}%",
                    like_escape(&serde_json::to_string(t).unwrap_or_default())
                )
            })
            .unwrap_or_default();
        let words = filter
            .query
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(|q| format!("%{}%", like_escape(&q.to_lowercase())))
            .unwrap_or_default();
        let mut condition = "($1 = '' OR collection_id = $1) AND ($2 = '' OR status = $2) \
             AND ($3 = '' OR mime_type = $3) AND ($4 = '' OR tags LIKE $4 ESCAPE '\\') \
             AND ($5 = 0 OR parent_id IS NULL) \
             AND ($6 = '' OR LOWER(title) LIKE $6 ESCAPE '\\' \
                  OR LOWER(source_uri) LIKE $6 ESCAPE '\\' \
                  OR LOWER(COALESCE(external_id, '')) LIKE $6 ESCAPE '\\') \
             AND ($7 < 0 OR disabled = $7)"
            .to_string();
        let mut extra: Vec<String> = Vec::new();
        if let Some(ids) = &filter.collection_ids {
            if ids.is_empty() {
                condition.push_str(" AND 1 = 0");
            } else {
                let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", 8 + i)).collect();
                condition.push_str(&format!(" AND collection_id IN ({})", marks.join(", ")));
                extra.extend(ids.iter().cloned());
            }
        }
        let (access, binds) = access_condition("access", 8 + extra.len(), &filter.access_any);
        condition.push_str(&format!(" AND {access}"));
        extra.extend(binds);
        if let Some(ids) = &filter.disabled_only_in {
            if ids.is_empty() {
                condition.push_str(" AND disabled = 0");
            } else {
                let marks: Vec<String> = (0..ids.len())
                    .map(|i| format!("${}", 8 + extra.len() + i))
                    .collect();
                condition.push_str(&format!(
                    " AND (disabled = 0 OR collection_id IN ({}))",
                    marks.join(", ")
                ));
                extra.extend(ids.iter().cloned());
            }
        }
        let count_sql = format!("SELECT COUNT(*) AS n FROM documents WHERE {condition}");
        let mut count = bind_filter(sqlx::query(&count_sql), filter, &tag, &words);
        for v in &extra {
            count = count.bind(v.clone());
        }
        let total: i64 = count.fetch_one(&self.pool).await?.try_get("n")?;
        let direction = if descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE {condition} \
             ORDER BY {} {direction}, id LIMIT ${} OFFSET ${}",
            sort.column(),
            8 + extra.len(),
            9 + extra.len()
        );
        let mut list = bind_filter(sqlx::query(&sql), filter, &tag, &words);
        for v in &extra {
            list = list.bind(v.clone());
        }
        let rows = list.bind(limit).bind(offset).fetch_all(&self.pool).await?;
        Ok(DocumentPage {
            documents: rows.iter().map(document_from_row).collect::<Result<_>>()?,
            total,
        })
    }

    /// Documents carrying this external id (one per collection at most).
    pub async fn documents_by_external_id(&self, external_id: &str) -> Result<Vec<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE external_id = $1 ORDER BY collection_id"
        );
        let rows = sqlx::query(&sql)
            .bind(external_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(document_from_row).collect()
    }

    /// Records content waiting for the ingest worker: the document (created if new) shows
    /// `queued`; its active version, if any, stays visible. Returns the document id.
    pub async fn queue_document(&self, new: &NewVersion) -> Result<String> {
        let ts = now();
        sqlx::query(
            "INSERT INTO documents (id, collection_id, source_uri, external_id, parent_id, title, \
             mime_type, sha256, version, status, metadata, tags, access, byte_size, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, 0, 'queued', $8, $9, $10, $11, \
             $12, $12) ON CONFLICT (collection_id, source_uri) DO UPDATE SET status = 'queued', \
             error = NULL, sha256 = excluded.sha256, mime_type = excluded.mime_type, \
             byte_size = excluded.byte_size, tags = excluded.tags, access = excluded.access, \
             updated_at = excluded.updated_at",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&new.collection_id)
        .bind(&new.source_uri)
        .bind(&new.external_id)
        .bind(&new.title)
        .bind(&new.mime_type)
        .bind(&new.sha256)
        .bind(json_text(&new.metadata))
        .bind(json_text(&new.tags))
        .bind(json_text(&new.access))
        .bind(new.byte_size)
        .bind(&ts)
        .execute(&self.pool)
        .await?;
        self.document_id_by_source(&new.collection_id, &new.source_uri)
            .await
    }

    /// Documents waiting for the ingest worker, oldest first.
    pub async fn queued_documents(&self) -> Result<Vec<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE status = 'queued' ORDER BY updated_at"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(document_from_row).collect()
    }

    /// Whether any document whose source URI starts with `uri_prefix` still needs the content
    /// with this hash (as its latest content or as a version that is not yet purged).
    pub async fn content_in_use(&self, sha256: &str, uri_prefix: &str) -> Result<bool> {
        let pattern = format!("{}%", like_escape(uri_prefix));
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM documents d WHERE d.source_uri LIKE $2 ESCAPE '\\' AND \
             (d.sha256 = $1 OR EXISTS (SELECT 1 FROM document_versions v WHERE \
              v.document_id = d.id AND v.sha256 = $1 AND v.state IN ('indexing', 'active')))",
        )
        .bind(sha256)
        .bind(pattern)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n > 0)
    }

    /// Every version of a document, oldest first.
    pub async fn version_records(&self, document_id: &str) -> Result<Vec<VersionRecord>> {
        let rows = sqlx::query(
            "SELECT version, state, sha256, error, page_count, chunk_count, created_at, \
             finished_at FROM document_versions WHERE document_id = $1 ORDER BY version",
        )
        .bind(document_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(VersionRecord {
                    version: r.try_get("version")?,
                    state: state.parse()?,
                    sha256: r.try_get("sha256")?,
                    error: r.try_get("error")?,
                    page_count: r.try_get("page_count")?,
                    chunk_count: r.try_get("chunk_count")?,
                    created_at: r.try_get("created_at")?,
                    finished_at: r.try_get("finished_at")?,
                })
            })
            .collect()
    }

    /// The collection named `name`.
    pub async fn collection_by_name(&self, name: &str) -> Result<Option<Collection>> {
        let row =
            sqlx::query("SELECT id, name, settings, created_at FROM collections WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(collection_from_row).transpose()
    }

    /// The collection with this id.
    pub async fn collection(&self, id: &str) -> Result<Option<Collection>> {
        let row =
            sqlx::query("SELECT id, name, settings, created_at FROM collections WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(collection_from_row).transpose()
    }

    /// All collections, by name.
    pub async fn collections(&self) -> Result<Vec<Collection>> {
        let rows =
            sqlx::query("SELECT id, name, settings, created_at FROM collections ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(collection_from_row).collect()
    }

    /// The document of `collection_id` with this source URI.
    pub async fn document_by_source(
        &self,
        collection_id: &str,
        source_uri: &str,
    ) -> Result<Option<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE collection_id = $1 AND source_uri = $2"
        );
        let row = sqlx::query(&sql)
            .bind(collection_id)
            .bind(source_uri)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(document_from_row).transpose()
    }

    /// The document with this id.
    pub async fn document(&self, id: &str) -> Result<Option<Document>> {
        let sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(document_from_row).transpose()
    }

    /// Documents of a collection (all collections when `None`), by source URI.
    pub async fn documents(&self, collection_id: Option<&str>) -> Result<Vec<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents \
             WHERE ($1 = '' OR collection_id = $1) ORDER BY source_uri"
        );
        let rows = sqlx::query(&sql)
            .bind(collection_id.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(document_from_row).collect()
    }

    /// Child documents of `parent_id` (email attachments).
    pub async fn children(&self, parent_id: &str) -> Result<Vec<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE parent_id = $1 ORDER BY source_uri"
        );
        let rows = sqlx::query(&sql)
            .bind(parent_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(document_from_row).collect()
    }

    /// Starts a new version of the document identified by `(collection, source_uri)`, creating
    /// the document if needed. The document's status becomes `indexing`; its active version (if
    /// any) stays visible until [`MetaStore::activate_version`]. Returns `(document id, version)`.
    pub async fn begin_version(&self, new: &NewVersion) -> Result<(String, i64)> {
        let mut tx = self.pool.begin().await?;
        let ts = now();
        let existing =
            sqlx::query("SELECT id FROM documents WHERE collection_id = $1 AND source_uri = $2")
                .bind(&new.collection_id)
                .bind(&new.source_uri)
                .fetch_optional(&mut *tx)
                .await?;
        let id = match existing {
            Some(row) => {
                let id: String = row.try_get("id")?;
                sqlx::query(
                    "UPDATE documents SET sha256 = $2, status = 'indexing', error = NULL, \
                     byte_size = $3, mime_type = $4, updated_at = $5, \
                     external_id = COALESCE($6, external_id), \
                     parent_id = COALESCE($7, parent_id), tags = $8, access = $9 WHERE id = $1",
                )
                .bind(&id)
                .bind(&new.sha256)
                .bind(new.byte_size)
                .bind(&new.mime_type)
                .bind(&ts)
                .bind(&new.external_id)
                .bind(&new.parent_id)
                .bind(json_text(&new.tags))
                .bind(json_text(&new.access))
                .execute(&mut *tx)
                .await?;
                id
            }
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                sqlx::query(
                    "INSERT INTO documents (id, collection_id, source_uri, external_id, parent_id, \
                     title, mime_type, sha256, version, status, metadata, tags, access, byte_size, \
                     created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 'indexing', $9, $10, $11, $12, $13, $13)",
                )
                .bind(&id)
                .bind(&new.collection_id)
                .bind(&new.source_uri)
                .bind(&new.external_id)
                .bind(&new.parent_id)
                .bind(&new.title)
                .bind(&new.mime_type)
                .bind(&new.sha256)
                .bind(json_text(&new.metadata))
                .bind(json_text(&new.tags))
                .bind(json_text(&new.access))
                .bind(new.byte_size)
                .bind(&ts)
                .execute(&mut *tx)
                .await?;
                id
            }
        };
        let next: i64 = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) + 1 AS next FROM document_versions WHERE document_id = $1",
        )
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("next")?;
        sqlx::query(
            "INSERT INTO document_versions (document_id, version, sha256, state, created_at, \
             alive_at) VALUES ($1, $2, $3, 'indexing', $4, $4)",
        )
        .bind(&id)
        .bind(next)
        .bind(&new.sha256)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((id, next))
    }

    /// Stores the pages and chunks of a version being indexed, in one transaction.
    pub async fn store_chunks(
        &self,
        document_id: &str,
        version: i64,
        pages: &[PageRecord],
        chunks: &[ChunkRecord],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for p in pages {
            sqlx::query(
                "INSERT INTO pages (document_id, version, page_number, char_start, text) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(document_id)
            .bind(version)
            .bind(p.page_number)
            .bind(p.char_start)
            .bind(&p.text)
            .execute(&mut *tx)
            .await?;
        }
        for c in chunks {
            sqlx::query(
                "INSERT INTO chunks (id, document_id, version, ordinal, text, page_start, page_end, \
                 char_start, char_end, token_count, section) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&c.id)
            .bind(document_id)
            .bind(version)
            .bind(c.ordinal)
            .bind(&c.text)
            .bind(c.page_start)
            .bind(c.page_end)
            .bind(c.char_start)
            .bind(c.char_end)
            .bind(c.token_count)
            .bind(&c.section)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes `version` the one readers see, atomically: the previous active version becomes
    /// `superseded` (its vectors are purged afterwards). Title and metadata come from the parsed
    /// content, except what a curator set by hand. Returns the superseded version, if any.
    pub async fn activate_version(
        &self,
        document_id: &str,
        version: i64,
        title: &str,
        metadata: &serde_json::Value,
        page_count: i64,
        chunk_count: i64,
    ) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let ts = now();
        let row = sqlx::query("SELECT version, curated FROM documents WHERE id = $1")
            .bind(document_id)
            .fetch_one(&mut *tx)
            .await?;
        let previous: i64 = row.try_get("version")?;
        // A repair may have given this version up for interrupted (its writer silent for
        // longer than the lease): it must not become visible.
        let state: Option<String> = sqlx::query(
            "SELECT state FROM document_versions WHERE document_id = $1 AND version = $2",
        )
        .bind(document_id)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("state"))
        .transpose()?;
        if state.as_deref() != Some("indexing") {
            return Err(StorageError::Conflict(format!(
                "version {version} of document {document_id} is no longer being indexed ({}): \
                 a repair gave it up as interrupted",
                state.as_deref().unwrap_or("gone")
            )));
        }
        // What a curator set by hand wins over what was read from the content.
        let curated: serde_json::Value = json_column(&row, "curated")?;
        let title = curated
            .get("title")
            .and_then(|t| t.as_str())
            .unwrap_or(title);
        let mut metadata = metadata.clone();
        if let (Some(m), Some(c)) = (
            metadata.as_object_mut(),
            curated.get("metadata").and_then(|c| c.as_object()),
        ) {
            m.extend(c.clone());
        }
        sqlx::query(
            "UPDATE document_versions SET state = 'superseded' \
             WHERE document_id = $1 AND state = 'active'",
        )
        .bind(document_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE document_versions SET state = 'active', page_count = $3, chunk_count = $4, \
             finished_at = $5 WHERE document_id = $1 AND version = $2",
        )
        .bind(document_id)
        .bind(version)
        .bind(page_count)
        .bind(chunk_count)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE documents SET version = $2, status = 'ready', error = NULL, title = $3, \
             metadata = $4, page_count = $5, chunk_count = $6, updated_at = $7, \
             sha256 = (SELECT sha256 FROM document_versions WHERE document_id = $1 AND version = $2) \
             WHERE id = $1",
        )
        .bind(document_id)
        .bind(version)
        .bind(title)
        .bind(json_text(&metadata))
        .bind(page_count)
        .bind(chunk_count)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((previous > 0 && previous != version).then_some(previous))
    }

    /// Records that `version` could not be ingested. `status` is `failed` or `no_text`. A
    /// previously active version stays visible; the document shows the failure.
    pub async fn fail_version(
        &self,
        document_id: &str,
        version: i64,
        status: &str,
        error: &str,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let ts = now();
        sqlx::query(
            "UPDATE document_versions SET state = 'failed', error = $3, finished_at = $4 \
             WHERE document_id = $1 AND version = $2",
        )
        .bind(document_id)
        .bind(version)
        .bind(error)
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE documents SET status = $2, error = $3, updated_at = $4 WHERE id = $1")
            .bind(document_id)
            .bind(status)
            .bind(error)
            .bind(&ts)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a failure that happened before any content could be read (an unreadable file, a
    /// symlink loop, a file over the size limit): the document shows `failed` with `error`; an
    /// active version, if any, stays visible. Returns the document id.
    pub async fn record_failure(
        &self,
        collection_id: &str,
        source_uri: &str,
        title: &str,
        error: &str,
    ) -> Result<String> {
        let ts = now();
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO documents (id, collection_id, source_uri, title, sha256, version, status, \
             error, created_at, updated_at) VALUES ($1, $2, $3, $4, '', 0, 'failed', $5, $6, $6) \
             ON CONFLICT (collection_id, source_uri) DO UPDATE SET status = 'failed', \
             error = excluded.error, sha256 = '', updated_at = excluded.updated_at",
        )
        .bind(&id)
        .bind(collection_id)
        .bind(source_uri)
        .bind(title)
        .bind(error)
        .bind(&ts)
        .execute(&self.pool)
        .await?;
        self.document_id_by_source(collection_id, source_uri).await
    }

    /// The id of the document of `collection_id` with this source URI (which must exist).
    async fn document_id_by_source(&self, collection_id: &str, source_uri: &str) -> Result<String> {
        let row =
            sqlx::query("SELECT id FROM documents WHERE collection_id = $1 AND source_uri = $2")
                .bind(collection_id)
                .bind(source_uri)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("id")?)
    }

    /// Versions whose vectors and rows must be removed: interrupted ones (`indexing`, when no
    /// ingest is running), superseded ones, and failed ones (which may hold partial rows).
    pub async fn pending_purges(&self, include_indexing: bool) -> Result<Vec<PurgeTask>> {
        // Every stored timestamp sorts before the first and after the second.
        let cutoff = if include_indexing {
            "9999-12-31T23:59:59.999Z"
        } else {
            ""
        };
        self.purges_silent_since(cutoff).await
    }

    /// [`MetaStore::pending_purges`] for stores other processes write to at the same time:
    /// an `indexing` version counts as interrupted only when its writer has not shown signs
    /// of life ([`MetaStore::keep_version_alive`]) since `cutoff`.
    pub async fn orphaned_purges(&self, cutoff: &Timestamp) -> Result<Vec<PurgeTask>> {
        self.purges_silent_since(cutoff).await
    }

    async fn purges_silent_since(&self, cutoff: &str) -> Result<Vec<PurgeTask>> {
        // A failed version is purged once: after its purge it holds no rows any more.
        let rows = sqlx::query(
            "SELECT v.document_id, v.version, v.state FROM document_versions v \
             WHERE v.state = 'superseded' \
             OR (v.state = 'indexing' AND COALESCE(v.alive_at, v.created_at) < $1) \
             OR (v.state = 'failed' AND (\
                 EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = v.document_id AND c.version = v.version) \
                 OR EXISTS (SELECT 1 FROM pages p WHERE p.document_id = v.document_id AND p.version = v.version))) \
             ORDER BY v.document_id, v.version",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(PurgeTask {
                    document_id: r.try_get("document_id")?,
                    version: r.try_get("version")?,
                    state: state.parse()?,
                })
            })
            .collect()
    }

    /// Records that the writer of a version being indexed is alive (see
    /// [`MetaStore::orphaned_purges`]).
    pub async fn keep_version_alive(&self, document_id: &str, version: i64) -> Result<()> {
        sqlx::query(
            "UPDATE document_versions SET alive_at = $3 \
             WHERE document_id = $1 AND version = $2 AND state = 'indexing'",
        )
        .bind(document_id)
        .bind(version)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Completes a purge after the version's vectors were deleted: removes its chunk and page
    /// rows and moves it to its final state (`purged`, `abandoned`; `failed` stays `failed`).
    /// An interrupted version also returns its document to a state that makes the next ingest
    /// process the content again.
    pub async fn finish_purge(&self, task: &PurgeTask) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM chunks WHERE document_id = $1 AND version = $2")
            .bind(&task.document_id)
            .bind(task.version)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM pages WHERE document_id = $1 AND version = $2")
            .bind(&task.document_id)
            .bind(task.version)
            .execute(&mut *tx)
            .await?;
        let final_state = match task.state {
            VersionState::Superseded => VersionState::Purged,
            VersionState::Indexing => VersionState::Abandoned,
            other => other,
        };
        sqlx::query(
            "UPDATE document_versions SET state = $3, \
             error = CASE WHEN $3 = 'abandoned' THEN 'interrupted before it finished' ELSE error END \
             WHERE document_id = $1 AND version = $2",
        )
        .bind(&task.document_id)
        .bind(task.version)
        .bind(final_state.as_str())
        .execute(&mut *tx)
        .await?;
        if task.state == VersionState::Indexing {
            // Back to the active version's content hash (so that the file is seen as changed)
            // or to 'interrupted' when there is none.
            sqlx::query(
                "UPDATE documents SET \
                 status = CASE WHEN version > 0 THEN 'ready' ELSE 'interrupted' END, \
                 error = CASE WHEN version > 0 THEN NULL \
                         ELSE 'ingest was interrupted; it is retried by the next ingest' END, \
                 sha256 = COALESCE((SELECT v.sha256 FROM document_versions v \
                          WHERE v.document_id = documents.id AND v.version = documents.version), sha256) \
                 WHERE id = $1 AND status = 'indexing'",
            )
            .bind(&task.document_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks a document for deletion (its vectors are removed next, then the row).
    pub async fn mark_deleting(&self, document_id: &str) -> Result<()> {
        self.mark_deleting_with_event(document_id, None).await
    }

    /// Marks a document for deletion and, in the same transaction, records `event` in the
    /// webhook outbox: from here on the deletion is finished even after a crash.
    pub async fn mark_deleting_with_event(
        &self,
        document_id: &str,
        event: Option<&crate::NewEvent>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE documents SET status = 'deleting', updated_at = $2 WHERE id = $1 OR parent_id = $1",
        )
        .bind(document_id)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        if let Some(event) = event {
            crate::webhooks::insert_event(&mut *tx, event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Documents marked for deletion.
    pub async fn deleting_documents(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM documents WHERE status = 'deleting'")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(Into::into))
            .collect()
    }

    /// Removes a document row with its versions, pages and chunks (after its vectors are gone).
    pub async fn delete_document_row(&self, document_id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for table in ["chunks", "pages", "document_versions"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE document_id = $1"))
                .bind(document_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM documents WHERE id = $1")
            .bind(document_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Chunks of the active version of a document, in order.
    pub async fn active_chunks(&self, document_id: &str) -> Result<Vec<ChunkRecord>> {
        let rows = sqlx::query(
            "SELECT c.* FROM chunks c JOIN documents d ON d.id = c.document_id \
             AND d.version = c.version WHERE c.document_id = $1 ORDER BY c.ordinal",
        )
        .bind(document_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(chunk_from_row).collect()
    }

    /// Chunks with these ids that belong to their document's active version (others are
    /// dropped: that is how readers never see a version that is not, or no longer, active).
    pub async fn visible_chunks(&self, ids: &[String]) -> Result<Vec<ChunkRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "SELECT c.* FROM chunks c JOIN documents d ON d.id = c.document_id \
                 AND d.version = c.version WHERE c.id = $1 AND d.status <> 'deleting' \
                 AND c.disabled = 0 AND d.disabled = 0",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = row {
                out.push(chunk_from_row(&r)?);
            }
        }
        Ok(out)
    }

    /// Chunks of one version with ordinals in `first..=last`, in order.
    pub async fn chunk_range(
        &self,
        document_id: &str,
        version: i64,
        first: i64,
        last: i64,
    ) -> Result<Vec<ChunkRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM chunks WHERE document_id = $1 AND version = $2 \
             AND ordinal >= $3 AND ordinal <= $4 ORDER BY ordinal",
        )
        .bind(document_id)
        .bind(version)
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(chunk_from_row).collect()
    }

    /// Pages `first..=last` of one version, in order.
    pub async fn page_range(
        &self,
        document_id: &str,
        version: i64,
        first: i64,
        last: i64,
    ) -> Result<Vec<PageRecord>> {
        let rows = sqlx::query(
            "SELECT page_number, char_start, text FROM pages WHERE document_id = $1 \
             AND version = $2 AND page_number >= $3 AND page_number <= $4 ORDER BY page_number",
        )
        .bind(document_id)
        .bind(version)
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(page_from_row).collect()
    }

    /// Pages of the active version of a document, in order.
    pub async fn active_pages(&self, document_id: &str) -> Result<Vec<PageRecord>> {
        let rows = sqlx::query(
            "SELECT p.page_number, p.char_start, p.text FROM pages p JOIN documents d \
             ON d.id = p.document_id AND d.version = p.version \
             WHERE p.document_id = $1 ORDER BY p.page_number",
        )
        .bind(document_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(page_from_row).collect()
    }

    /// `(version, state)` of every version of a document, oldest first.
    pub async fn versions(&self, document_id: &str) -> Result<Vec<(i64, VersionState)>> {
        let rows = sqlx::query(
            "SELECT version, state FROM document_versions WHERE document_id = $1 ORDER BY version",
        )
        .bind(document_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok((r.try_get("version")?, state.parse()?))
            })
            .collect()
    }

    /// Number of chunk rows, all versions (for consistency checks).
    pub async fn chunk_row_count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM chunks")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Ids of all chunk rows (for consistency checks against the vector store).
    pub async fn chunk_ids(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM chunks ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(Into::into))
            .collect()
    }

    /// Documents per collection by status, with page and chunk totals of ready documents;
    /// with `access_any`, only of documents whose access list holds one of those tokens.
    /// Document counts per format (MIME type), every collection together, most documents first.
    pub async fn format_stats(&self) -> Result<Vec<FormatStats>> {
        let rows = sqlx::query(
            "SELECT mime_type, CAST(COUNT(*) AS BIGINT) AS documents, \
             CAST(COALESCE(SUM(CASE WHEN status = 'ready' THEN 1 ELSE 0 END), 0) AS BIGINT) AS ready, \
             CAST(COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed, \
             CAST(COALESCE(SUM(CASE WHEN status = 'no_text' THEN 1 ELSE 0 END), 0) AS BIGINT) AS no_text, \
             CAST(COALESCE(SUM(CASE WHEN version > 0 THEN page_count ELSE 0 END), 0) AS BIGINT) AS pages, \
             CAST(COALESCE(SUM(CASE WHEN version > 0 THEN chunk_count ELSE 0 END), 0) AS BIGINT) AS chunks \
             FROM documents GROUP BY mime_type ORDER BY documents DESC, mime_type",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FormatStats {
                    mime_type: r.try_get("mime_type")?,
                    documents: r.try_get("documents")?,
                    ready: r.try_get("ready")?,
                    failed: r.try_get("failed")?,
                    no_text: r.try_get("no_text")?,
                    pages: r.try_get("pages")?,
                    chunks: r.try_get("chunks")?,
                })
            })
            .collect()
    }

    pub async fn collection_stats(&self, access_any: &[String]) -> Result<Vec<CollectionStats>> {
        let (access, binds) = access_condition("d.access", 1, access_any);
        let sql = format!(
            "SELECT c.name AS collection, \
             CAST(COALESCE(SUM(CASE WHEN d.status = 'ready' THEN 1 ELSE 0 END), 0) AS BIGINT) AS ready, \
             CAST(COALESCE(SUM(CASE WHEN d.status = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed, \
             CAST(COALESCE(SUM(CASE WHEN d.status = 'no_text' THEN 1 ELSE 0 END), 0) AS BIGINT) AS no_text, \
             CAST(COALESCE(SUM(CASE WHEN d.status NOT IN ('ready', 'failed', 'no_text') THEN 1 ELSE 0 END), 0) AS BIGINT) AS other, \
             CAST(COALESCE(SUM(CASE WHEN d.version > 0 THEN d.page_count ELSE 0 END), 0) AS BIGINT) AS pages, \
             CAST(COALESCE(SUM(CASE WHEN d.version > 0 THEN d.chunk_count ELSE 0 END), 0) AS BIGINT) AS chunks \
             FROM collections c LEFT JOIN documents d ON d.collection_id = c.id AND {access} \
             GROUP BY c.name ORDER BY c.name"
        );
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(CollectionStats {
                    collection: r.try_get("collection")?,
                    ready: r.try_get("ready")?,
                    failed: r.try_get("failed")?,
                    no_text: r.try_get("no_text")?,
                    other: r.try_get("other")?,
                    pages: r.try_get("pages")?,
                    chunks: r.try_get("chunks")?,
                })
            })
            .collect()
    }

    /// Every document whose last content could not be ingested, with its reason.
    pub async fn failures(&self) -> Result<Vec<DocumentFailure>> {
        let rows = sqlx::query(
            "SELECT c.name AS collection, d.id, d.source_uri, d.status, d.error, d.updated_at \
             FROM documents d JOIN collections c ON c.id = d.collection_id \
             WHERE d.status IN ('failed', 'no_text', 'interrupted') ORDER BY c.name, d.source_uri",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DocumentFailure {
                    collection: r.try_get("collection")?,
                    document_id: r.try_get("id")?,
                    source_uri: r.try_get("source_uri")?,
                    status: r.try_get("status")?,
                    error: r.try_get::<Option<String>, _>("error")?.unwrap_or_default(),
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Opens an ingest run record; returns its id.
    pub async fn start_run(&self, collection_id: &str) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO ingest_runs (id, collection_id, started_at, status) VALUES ($1, $2, $3, 'running')",
        )
        .bind(&id)
        .bind(collection_id)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Closes an ingest run record with its counters.
    pub async fn finish_run(&self, run_id: &str, counts: &RunCounts) -> Result<()> {
        sqlx::query(
            "UPDATE ingest_runs SET finished_at = $2, status = 'finished', files = $3, ingested = $4, \
             unchanged = $5, failed = $6, pages = $7, chunks = $8 WHERE id = $1",
        )
        .bind(run_id)
        .bind(now())
        .bind(counts.files)
        .bind(counts.ingested)
        .bind(counts.unchanged)
        .bind(counts.failed)
        .bind(counts.pages)
        .bind(counts.chunks)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
