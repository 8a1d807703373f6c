//! The vector store seam and its in-process qdrant-edge backend.
//!
//! Every chunk is one point: a dense vector (`dense`, cosine), a BM25 sparse vector (`bm25`,
//! IDF applied by the store at query time) and a payload with the fields filters run on
//! (`collection_id`, `document_id`, `version`, `access`, `tags`, `mime_type`, and for documents
//! that carry them, `date` and `authors`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use qdrant_edge::{
    CreateIndex, Distance, EdgeConfigBuilder, EdgeShard, EdgeSparseVectorParamsBuilder,
    EdgeVectorParamsBuilder, FieldCondition, FieldIndexOperations, Filter, JsonPath, Match,
    Modifier, NamedQuery, Payload, PayloadFieldSchema, PayloadOps, PayloadSchemaType, PointId,
    PointOperations, PointStruct, Range, ScoringQuery, ScrollRequest, SetPayloadOp, SparseVector,
    UpdateOperation, ValueVariants, VectorInternal, Vectors, WithPayloadInterface, WithVector,
};
use serde::{Deserialize, Serialize};

use crate::{Result, StorageError};

const DENSE: &str = "dense";
const BM25: &str = "bm25";

/// Namespace of chunk point ids (UUID v5 of `document/version/ordinal`).
const CHUNK_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x3c1e_a7c2_58f4_4b0e_9d51_6a2f_0e7b_d413);

/// The deterministic id of a chunk (and of its point): re-running an interrupted ingest
/// overwrites the same points instead of adding new ones.
pub fn chunk_point_id(document_id: &str, version: i64, ordinal: i64) -> String {
    uuid::Uuid::new_v5(
        &CHUNK_NAMESPACE,
        format!("{document_id}/{version}/{ordinal}").as_bytes(),
    )
    .to_string()
}

/// Payload stored with every point; the fields filters run on inside the search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointPayload {
    pub collection_id: String,
    pub document_id: String,
    pub version: i64,
    pub ordinal: i64,
    pub access: Vec<String>,
    pub tags: Vec<String>,
    pub mime_type: String,
    /// The document's date (an email's `Date`, a PDF's creation date), Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<i64>,
    /// Who wrote or sent the document, lower case: for an email each sender as written, its
    /// address and its display name; for a PDF its author.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<String>,
    /// Left out of retrieval by a curator (the document, or this chunk alone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// Payload fields changed on stored points without re-embedding them (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PayloadUpdate {
    pub collection_id: Option<String>,
    pub tags: Option<Vec<String>>,
    pub disabled: Option<bool>,
    /// The document's access tokens (who may read it).
    pub access: Option<Vec<String>>,
}

impl PayloadUpdate {
    pub(crate) fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if let Some(c) = &self.collection_id {
            m.insert("collection_id".into(), c.clone().into());
        }
        if let Some(t) = &self.tags {
            m.insert("tags".into(), t.clone().into());
        }
        if let Some(d) = self.disabled {
            m.insert("disabled".into(), d.into());
        }
        if let Some(a) = &self.access {
            m.insert("access".into(), a.clone().into());
        }
        m
    }
}

/// One chunk's point: id (UUID string), dense vector, BM25 sparse vector (indices, values).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkPoint {
    pub id: String,
    pub dense: Vec<f32>,
    pub sparse: (Vec<u32>, Vec<f32>),
    pub payload: PointPayload,
}

/// Filters applied inside the vector search. Empty lists mean "no restriction".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VectorFilter {
    pub collection_ids: Vec<String>,
    pub document_ids: Vec<String>,
    /// Points must carry at least one of these access tags.
    pub access_any: Vec<String>,
    pub mime_types: Vec<String>,
    pub tags_any: Vec<String>,
    /// Documents dated at or after this instant (Unix seconds); undated documents are excluded
    /// whenever a bound is set.
    pub date_from: Option<i64>,
    /// Documents dated at or before this instant (Unix seconds).
    pub date_to: Option<i64>,
    /// Points must name one of these authors or senders (compared in lower case).
    pub authors_any: Vec<String>,
    /// Also match points a curator disabled (left out otherwise).
    pub include_disabled: bool,
}

/// The query of a search: a dense vector or a BM25 sparse vector.
#[derive(Debug, Clone, PartialEq)]
pub enum VectorQuery {
    Dense(Vec<f32>),
    Bm25(Vec<u32>, Vec<f32>),
}

/// One search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    pub id: String,
    pub score: f32,
    pub payload: PointPayload,
}

/// The seam between Enclave and a vector database. Implementations are safe to share between
/// tasks; blocking backends run their work off the async runtime.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Inserts or replaces points (same id: replaced).
    async fn upsert(&self, points: Vec<ChunkPoint>) -> Result<()>;
    /// Deletes every point of one version of a document.
    async fn delete_version(&self, document_id: &str, version: i64) -> Result<()>;
    /// Deletes every point of a document, all versions.
    async fn delete_document(&self, document_id: &str) -> Result<()>;
    /// Changes payload fields of a document's points (all versions), or of the listed points
    /// of that document only.
    async fn update_payload(
        &self,
        document_id: &str,
        points: Option<&[String]>,
        update: &PayloadUpdate,
    ) -> Result<()>;
    /// Counts points matching a filter.
    async fn count(&self, filter: &VectorFilter) -> Result<usize>;
    /// Ids of all points (for consistency checks), sorted.
    async fn point_ids(&self) -> Result<Vec<String>>;
    /// The `limit` best points for a query, best first.
    async fn search(
        &self,
        query: VectorQuery,
        filter: &VectorFilter,
        limit: usize,
    ) -> Result<Vec<VectorHit>>;
    /// Up to `limit` points with their vectors and payloads, in id order, starting at
    /// `offset` (a point id); and the offset of the next page, if any. For copying a store.
    async fn points_page(
        &self,
        offset: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ChunkPoint>, Option<String>)>;
    /// The listed points that exist, with their vectors and payloads.
    async fn get_points(&self, ids: &[String]) -> Result<Vec<ChunkPoint>>;
    /// Checks that the store answers; returns what answered (backend, version, place).
    async fn check(&self) -> Result<String>;
    /// Where the store is, for people (a directory, or a server and collection).
    fn describe(&self) -> String;
    /// Makes every acknowledged write durable.
    async fn flush(&self) -> Result<()>;
    /// Builds the search index (HNSW) over vectors written since the last call, merges small
    /// segments and reclaims deleted points. Until then new points are searched exhaustively.
    /// Slow on large stores and it holds up writes meanwhile: call it when a batch of writes is
    /// done. Returns whether anything changed.
    async fn optimize(&self) -> Result<bool>;
}

/// In-process qdrant-edge shard in a local directory.
#[derive(Clone)]
pub struct EdgeVectorStore {
    shard: Arc<EdgeShard>,
    /// Serialises writes and flushes: the shard's flush gives up (panics) when it finds its
    /// write-ahead log locked by a concurrent update.
    writes: Arc<std::sync::Mutex<()>>,
    dimension: usize,
    path: PathBuf,
}

impl std::fmt::Debug for EdgeVectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeVectorStore")
            .field("path", &self.path)
            .field("dimension", &self.dimension)
            .finish()
    }
}

fn edge_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Vector(e.to_string())
}

fn keyword(key: &str, value: &str) -> qdrant_edge::Condition {
    qdrant_edge::Condition::Field(FieldCondition::new_match(
        key.try_into()
            .expect("static payload key is a valid JSON path"),
        Match::new_value(ValueVariants::String(value.to_string())),
    ))
}

fn integer(key: &str, value: i64) -> qdrant_edge::Condition {
    qdrant_edge::Condition::Field(FieldCondition::new_match(
        key.try_into()
            .expect("static payload key is a valid JSON path"),
        Match::new_value(ValueVariants::Integer(value)),
    ))
}

/// `key` equals one of `values`: a nested `should` filter.
fn any_of(key: &str, values: &[String]) -> qdrant_edge::Condition {
    qdrant_edge::Condition::Filter(Filter {
        should: Some(values.iter().map(|v| keyword(key, v)).collect()),
        ..Default::default()
    })
}

/// One condition of a [`VectorFilter`], independent of the backend's filter types, so that
/// every backend runs the same filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Condition {
    /// The keyword field holds one of the values (for a list field: any element does).
    AnyOf(&'static str, Vec<String>),
    /// The integer field lies within the bounds (inclusive).
    Between(&'static str, Option<i64>, Option<i64>),
}

impl VectorFilter {
    /// What a point must match (`must`), and whether points a curator disabled are left out.
    pub(crate) fn conditions(&self) -> (Vec<Condition>, bool) {
        let mut must = Vec::new();
        for (key, values) in [
            ("collection_id", &self.collection_ids),
            ("document_id", &self.document_ids),
            ("access", &self.access_any),
            ("mime_type", &self.mime_types),
            ("tags", &self.tags_any),
        ] {
            if !values.is_empty() {
                must.push(Condition::AnyOf(key, values.clone()));
            }
        }
        if !self.authors_any.is_empty() {
            let authors = self
                .authors_any
                .iter()
                .map(|a| a.trim().to_lowercase())
                .collect();
            must.push(Condition::AnyOf("authors", authors));
        }
        if self.date_from.is_some() || self.date_to.is_some() {
            must.push(Condition::Between("date", self.date_from, self.date_to));
        }
        (must, !self.include_disabled)
    }
}

fn to_filter(f: &VectorFilter) -> Option<Filter> {
    let (conditions, exclude_disabled) = f.conditions();
    let must: Vec<qdrant_edge::Condition> = conditions
        .iter()
        .map(|c| match c {
            Condition::AnyOf(key, values) => any_of(key, values),
            Condition::Between(key, from, to) => {
                qdrant_edge::Condition::Field(FieldCondition::new_range(
                    (*key)
                        .try_into()
                        .expect("static payload key is a valid JSON path"),
                    Range {
                        gte: from.map(|t| (t as f64).into()),
                        lte: to.map(|t| (t as f64).into()),
                        lt: None,
                        gt: None,
                    },
                ))
            }
        })
        .collect();
    let must_not = exclude_disabled.then(|| {
        vec![qdrant_edge::Condition::Field(FieldCondition::new_match(
            "disabled"
                .try_into()
                .expect("static payload key is a valid JSON path"),
            Match::new_value(ValueVariants::Bool(true)),
        ))]
    });
    (!must.is_empty() || must_not.is_some()).then(|| Filter {
        must: (!must.is_empty()).then_some(must),
        must_not,
        ..Default::default()
    })
}

fn point_id(id: &str) -> Result<PointId> {
    uuid::Uuid::parse_str(id)
        .map(PointId::Uuid)
        .map_err(|e| StorageError::Vector(format!("point id '{id}' is not a UUID: {e}")))
}

fn id_string(id: &PointId) -> String {
    match id {
        PointId::Uuid(u) => u.to_string(),
        PointId::NumId(n) => n.to_string(),
    }
}

/// A stored payload read back.
pub(crate) fn decode_payload(value: serde_json::Value) -> Result<PointPayload> {
    serde_json::from_value(value).map_err(|e| StorageError::Corrupt(format!("point payload: {e}")))
}

/// A point read back from the shard, with its two vectors.
fn edge_point(record: qdrant_edge::Record) -> Result<ChunkPoint> {
    let id = id_string(&record.id);
    let payload = decode_payload(
        record
            .payload
            .map(|pl| serde_json::Value::Object(pl.0.into_iter().collect()))
            .unwrap_or_default(),
    )?;
    let mut dense = None;
    let mut sparse = None;
    if let Some(qdrant_edge::VectorStructInternal::Named(named)) = record.vector {
        for (name, v) in named {
            match (name.as_str(), v) {
                (DENSE, VectorInternal::Dense(d)) => dense = Some(d),
                (BM25, VectorInternal::Sparse(s)) => sparse = Some((s.indices, s.values)),
                _ => {}
            }
        }
    }
    let corrupt = |what: &str| StorageError::Corrupt(format!("point {id} has no {what} vector"));
    Ok(ChunkPoint {
        dense: dense.ok_or_else(|| corrupt(DENSE))?,
        // A text without any BM25 term has an empty sparse vector, which may not be stored.
        sparse: sparse.unwrap_or_default(),
        payload,
        id,
    })
}

/// Payload fields the embedded store indexes: those searches filter on most (the Qdrant
/// server backend indexes every filtered field).
const EDGE_INDEXED: [(&str, PayloadSchemaType); 4] = [
    ("collection_id", PayloadSchemaType::Keyword),
    ("document_id", PayloadSchemaType::Keyword),
    ("access", PayloadSchemaType::Keyword),
    ("disabled", PayloadSchemaType::Bool),
];

impl EdgeVectorStore {
    /// Opens the shard at `path`, creating it (for `dimension`-sized dense vectors) when the
    /// directory holds none. Opening a shard made for another dimension is an error.
    pub fn open(path: &Path, dimension: usize) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|source| StorageError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let config = EdgeConfigBuilder::new()
            .vector(
                DENSE,
                EdgeVectorParamsBuilder::new(dimension, Distance::Cosine)
                    .on_disk(true)
                    .build(),
            )
            .sparse_vector(
                BM25,
                EdgeSparseVectorParamsBuilder::new()
                    .modifier(Modifier::Idf)
                    .build(),
            )
            .on_disk_payload(true)
            .build();
        let exists = path.join("edge_config.json").is_file();
        let opened = if exists {
            EdgeShard::load(path, None)
        } else {
            EdgeShard::new(path, config)
        };
        let shard = opened.map_err(|e| {
            let message = e.to_string();
            if message.contains("WouldBlock") {
                StorageError::Vector(format!(
                    "{} is in use by another Enclave process (the embedded vector store serves \
                     one process at a time)",
                    path.display()
                ))
            } else {
                edge_err(message)
            }
        })?;
        let stored = shard
            .config()
            .vectors
            .get(DENSE)
            .map(|p| p.size)
            .ok_or_else(|| {
                StorageError::Vector(format!("{}: no '{DENSE}' vector", path.display()))
            })?;
        if stored != dimension {
            return Err(StorageError::Dimension {
                got: dimension,
                want: stored,
            });
        }
        // Payload indexes on the fields searches filter on, so that a filter (a collection, an
        // access list) selects its points from an index instead of reading every payload.
        let indexed = shard.info().payload_schema;
        for (field, kind) in EDGE_INDEXED {
            let path: JsonPath = field
                .parse()
                .map_err(|_| StorageError::Vector(format!("payload path '{field}'")))?;
            if indexed.contains_key(&path) {
                continue;
            }
            shard
                .update(UpdateOperation::FieldIndexOperation(
                    FieldIndexOperations::CreateIndex(CreateIndex {
                        field_name: path,
                        field_schema: Some(PayloadFieldSchema::FieldType(kind)),
                    }),
                ))
                .map_err(edge_err)?;
        }
        Ok(Self {
            shard: Arc::new(shard),
            writes: Arc::default(),
            dimension,
            path: path.to_path_buf(),
        })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&EdgeShard) -> Result<T> + Send + 'static,
    {
        let shard = Arc::clone(&self.shard);
        tokio::task::spawn_blocking(move || f(&shard))
            .await
            .map_err(|e| StorageError::Vector(format!("vector store task failed: {e}")))?
    }

    /// Runs one write (or flush) on the shard, off the async runtime, one at a time.
    async fn write<F>(&self, f: F) -> Result<()>
    where
        F: FnOnce(&EdgeShard) -> Result<()> + Send + 'static,
    {
        let writes = Arc::clone(&self.writes);
        self.blocking(move |shard| {
            let _guard = writes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(shard)
        })
        .await
    }

    async fn update(&self, op: PointOperations) -> Result<()> {
        self.write(move |shard| {
            shard
                .update(UpdateOperation::PointOperation(op))
                .map_err(edge_err)
        })
        .await
    }
}

#[async_trait]
impl VectorStore for EdgeVectorStore {
    async fn upsert(&self, points: Vec<ChunkPoint>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let mut persisted = Vec::with_capacity(points.len());
        for p in points {
            if p.dense.len() != self.dimension {
                return Err(StorageError::Dimension {
                    got: p.dense.len(),
                    want: self.dimension,
                });
            }
            let sparse = SparseVector::new(p.sparse.0, p.sparse.1).map_err(edge_err)?;
            let vectors = Vectors::new_named([
                (DENSE, VectorInternal::Dense(p.dense)),
                (BM25, VectorInternal::Sparse(sparse)),
            ]);
            let payload = serde_json::to_value(&p.payload).map_err(edge_err)?;
            persisted.push(PointStruct::new(point_id(&p.id)?, vectors, payload).into());
        }
        self.update(PointOperations::UpsertPoints(
            qdrant_edge::PointInsertOperations::PointsList(persisted),
        ))
        .await
    }

    async fn delete_version(&self, document_id: &str, version: i64) -> Result<()> {
        let filter = Filter {
            must: Some(vec![
                keyword("document_id", document_id),
                integer("version", version),
            ]),
            ..Default::default()
        };
        self.update(PointOperations::DeletePointsByFilter(filter))
            .await
    }

    async fn delete_document(&self, document_id: &str) -> Result<()> {
        let filter = Filter::new_must(keyword("document_id", document_id));
        self.update(PointOperations::DeletePointsByFilter(filter))
            .await
    }

    async fn update_payload(
        &self,
        document_id: &str,
        points: Option<&[String]>,
        update: &PayloadUpdate,
    ) -> Result<()> {
        let payload = update.to_json();
        if payload.is_empty() {
            return Ok(());
        }
        let points = points
            .map(|ids| {
                ids.iter()
                    .map(|id| point_id(id))
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        if points.as_ref().is_some_and(Vec::is_empty) {
            return Ok(());
        }
        // Listed points are taken as given (the caller read them from the document's chunks);
        // otherwise every point of the document.
        let filter = points
            .is_none()
            .then(|| Filter::new_must(keyword("document_id", document_id)));
        let op = SetPayloadOp {
            payload: Payload(payload),
            points,
            filter,
            key: None,
        };
        self.write(move |shard| {
            shard
                .update(UpdateOperation::PayloadOperation(PayloadOps::SetPayload(
                    op,
                )))
                .map_err(edge_err)
        })
        .await
    }

    async fn count(&self, filter: &VectorFilter) -> Result<usize> {
        let filter = to_filter(filter);
        self.blocking(move |shard| {
            shard
                .count(qdrant_edge::CountRequest {
                    filter,
                    exact: true,
                })
                .map_err(edge_err)
        })
        .await
    }

    async fn point_ids(&self) -> Result<Vec<String>> {
        self.blocking(|shard| {
            let mut ids = Vec::new();
            let mut offset = None;
            loop {
                let (records, next) = shard
                    .scroll(ScrollRequest {
                        offset,
                        limit: Some(1000),
                        filter: None,
                        with_payload: Some(WithPayloadInterface::Bool(false)),
                        with_vector: WithVector::Bool(false),
                        order_by: None,
                    })
                    .map_err(edge_err)?;
                ids.extend(records.iter().map(|r| id_string(&r.id)));
                match next {
                    Some(n) => offset = Some(n),
                    None => break,
                }
            }
            ids.sort();
            Ok(ids)
        })
        .await
    }

    async fn search(
        &self,
        query: VectorQuery,
        filter: &VectorFilter,
        limit: usize,
    ) -> Result<Vec<VectorHit>> {
        let (using, vector) = match query {
            VectorQuery::Dense(v) => {
                if v.len() != self.dimension {
                    return Err(StorageError::Dimension {
                        got: v.len(),
                        want: self.dimension,
                    });
                }
                (DENSE, VectorInternal::Dense(v))
            }
            VectorQuery::Bm25(i, v) => (
                BM25,
                VectorInternal::Sparse(SparseVector::new(i, v).map_err(edge_err)?),
            ),
        };
        let request = qdrant_edge::QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(qdrant_edge::QueryEnum::Nearest(
                NamedQuery {
                    query: vector,
                    using: Some(using.into()),
                },
            ))),
            filter: to_filter(filter),
            score_threshold: None,
            limit,
            offset: 0,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        let points = self
            .blocking(move |shard| shard.query(request).map_err(edge_err))
            .await?;
        points
            .into_iter()
            .map(|p| {
                let payload = p
                    .payload
                    .map(|pl| serde_json::Value::Object(pl.0.into_iter().collect()))
                    .unwrap_or_default();
                let payload = decode_payload(payload)?;
                Ok(VectorHit {
                    id: id_string(&p.id),
                    score: p.score,
                    payload,
                })
            })
            .collect()
    }

    async fn points_page(
        &self,
        offset: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ChunkPoint>, Option<String>)> {
        let offset = offset.as_deref().map(point_id).transpose()?;
        self.blocking(move |shard| {
            let (records, next) = shard
                .scroll(ScrollRequest {
                    offset,
                    limit: Some(limit.max(1)),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: WithVector::Bool(true),
                    order_by: None,
                })
                .map_err(edge_err)?;
            let points = records
                .into_iter()
                .map(edge_point)
                .collect::<Result<Vec<_>>>()?;
            Ok((points, next.as_ref().map(id_string)))
        })
        .await
    }

    async fn get_points(&self, ids: &[String]) -> Result<Vec<ChunkPoint>> {
        let ids = ids
            .iter()
            .map(|i| point_id(i))
            .collect::<Result<Vec<_>>>()?;
        self.blocking(move |shard| {
            shard
                .retrieve(
                    &ids,
                    Some(WithPayloadInterface::Bool(true)),
                    Some(WithVector::Bool(true)),
                )
                .map_err(edge_err)?
                .into_iter()
                .map(edge_point)
                .collect()
        })
        .await
    }

    async fn check(&self) -> Result<String> {
        Ok(self.describe())
    }

    fn describe(&self) -> String {
        format!("qdrant-edge at {}", self.path.display())
    }

    async fn flush(&self) -> Result<()> {
        self.write(|shard| {
            shard.flush();
            Ok(())
        })
        .await
    }

    async fn optimize(&self) -> Result<bool> {
        let writes = Arc::clone(&self.writes);
        self.blocking(move |shard| {
            let _guard = writes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = shard.optimize().map_err(edge_err)?;
            shard.flush();
            Ok(changed)
        })
        .await
    }
}

/// Copies every point of `from` into `to`, `page` points at a time, and flushes `to`. Points
/// keep their ids, so a second copy overwrites instead of adding. Returns the points copied.
pub async fn copy_points(
    from: &dyn VectorStore,
    to: &dyn VectorStore,
    page: usize,
) -> Result<usize> {
    let (mut offset, mut copied) = (None, 0);
    loop {
        let (points, next) = from.points_page(offset, page).await?;
        copied += points.len();
        to.upsert(points).await?;
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    to.flush().await?;
    Ok(copied)
}

/// BM25 sparse encoder (qdrant's tokenizer pipeline: English stop words and stemming). The
/// store applies IDF at query time, so documents and queries are encoded independently.
#[derive(Debug, Clone)]
pub struct Bm25Encoder {
    inner: Arc<qdrant_edge::bm25_embed::EdgeBm25>,
}

impl Bm25Encoder {
    /// The default English BM25 (k1 = 1.2, b = 0.75).
    pub fn new() -> Result<Self> {
        let inner = qdrant_edge::bm25_embed::EdgeBm25::new(
            qdrant_edge::bm25_embed::EdgeBm25Config::default(),
        )
        .map_err(edge_err)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Sparse vector of a document's text: (term ids, weights).
    pub fn document(&self, text: &str) -> (Vec<u32>, Vec<f32>) {
        let v = self.inner.embed_document(text);
        (v.indices, v.values)
    }

    /// Sparse vector of a query.
    pub fn query(&self, text: &str) -> (Vec<u32>, Vec<f32>) {
        let v = self.inner.embed_query(text);
        (v.indices, v.values)
    }
}
