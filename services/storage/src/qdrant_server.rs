//! The Qdrant server backend of the vector store (gRPC through `qdrant-client`), for the
//! scale-out mode: any number of Enclave processes on any machines share one Qdrant server or
//! cluster.
//!
//! Same points as the embedded backend: one Qdrant collection holds every Enclave collection,
//! each point a named cosine `dense` vector, a `bm25` sparse vector with the IDF modifier and
//! the [`PointPayload`]. Every field a filter runs on has a payload index (`collection_id` as
//! the tenant key). Writes wait for the server's acknowledgement (`wait`), from as many
//! replicas as the collection's `write_consistency_factor` asks, in the configured ordering;
//! so [`VectorStore::flush`] has nothing left to do, and the server builds its indexes by
//! itself ([`VectorStore::optimize`] only reports). A server that cannot be reached, or does
//! not answer within the time-out, is [`StorageError::Unavailable`]: callers answer 503 or
//! retry, nothing hangs.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use qdrant_client::qdrant::{
    self, BoolIndexParamsBuilder, Condition as QCondition, CountPointsBuilder,
    CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance,
    FieldType, Filter, GetPointsBuilder, IntegerIndexParamsBuilder, KeywordIndexParamsBuilder,
    Modifier, NamedVectors, PointId, PointStruct, PointsIdsList, QueryPointsBuilder, Range,
    ScrollPointsBuilder, SetPayloadPointsBuilder, SparseVectorParamsBuilder,
    SparseVectorsConfigBuilder, UpsertPointsBuilder, VectorInput, VectorParamsBuilder,
    VectorsConfigBuilder, WriteOrderingType, point_id::PointIdOptions,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use tokio::sync::OnceCell;

use crate::vectors::{Condition, decode_payload};
use crate::{
    ChunkPoint, PayloadUpdate, PointPayload, Result, StorageError, VectorFilter, VectorHit,
    VectorQuery, VectorStore,
};

const DENSE: &str = "dense";
const BM25: &str = "bm25";

/// How writes are ordered among a shard's replicas (see Qdrant's write ordering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOrdering {
    Weak,
    Medium,
    Strong,
}

/// Where the Qdrant server is and how Enclave's collection is laid out on it.
#[derive(Debug, Clone)]
pub struct QdrantServerConfig {
    /// gRPC endpoint, `http://host:6334` (or `https://`).
    pub url: String,
    pub api_key: Option<String>,
    /// The Qdrant collection holding Enclave's points.
    pub collection: String,
    /// Dense vector dimension (the embedding model's).
    pub dimension: usize,
    /// Used when Enclave creates the collection.
    pub shard_number: u32,
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
    pub write_ordering: WriteOrdering,
    /// Deadline of one request.
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

/// The vector store on a Qdrant server or cluster.
pub struct QdrantServerStore {
    client: Qdrant,
    config: QdrantServerConfig,
    /// Set once the collection and its payload indexes are known to exist; retried by the
    /// next operation while the server cannot be reached.
    ready: OnceCell<()>,
}

impl std::fmt::Debug for QdrantServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantServerStore")
            .field("url", &self.config.url)
            .field("collection", &self.config.collection)
            .finish()
    }
}

/// Payload fields with an index, and their kinds: every field [`VectorFilter`] and the
/// deletions filter on.
const INDEXED: [(&str, FieldType); 9] = [
    ("collection_id", FieldType::Keyword),
    ("document_id", FieldType::Keyword),
    ("version", FieldType::Integer),
    ("mime_type", FieldType::Keyword),
    ("tags", FieldType::Keyword),
    ("access", FieldType::Keyword),
    ("authors", FieldType::Keyword),
    ("date", FieldType::Integer),
    ("disabled", FieldType::Bool),
];

/// Classifies a client error: unreachable, timed out or overloaded servers are
/// `Unavailable`; anything else is the server refusing the request.
fn qdrant_err(e: QdrantError) -> StorageError {
    use tonic::Code;
    match &e {
        QdrantError::ResponseError { status } => {
            let connect_failed = status.code() == Code::Internal
                && status.message().starts_with("Failed to connect");
            match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                    StorageError::vectors_unavailable(describe_status(status))
                }
                _ if connect_failed => StorageError::vectors_unavailable(describe_status(status)),
                _ => StorageError::Vector(describe_status(status)),
            }
        }
        QdrantError::ResourceExhaustedError {
            status,
            retry_after_seconds,
        } => StorageError::vectors_unavailable(format!(
            "{} (retry after {retry_after_seconds} s)",
            describe_status(status)
        )),
        QdrantError::Io(_) => StorageError::vectors_unavailable(e.to_string()),
        _ => StorageError::Vector(e.to_string()),
    }
}

fn describe_status(status: &tonic::Status) -> String {
    let message = status.message().trim();
    // The client reports a failed connect as `Failed to connect to URL: <transport error>`.
    if let Some(rest) = message.strip_prefix("Failed to connect to ") {
        let url = rest.split(':').take(3).collect::<Vec<_>>().join(":");
        let url = url.trim_end_matches('/');
        let why = if rest.contains("Connection refused") {
            "connection refused"
        } else if rest.contains("timed out") || rest.contains("Timeout") {
            "timed out"
        } else {
            rest
        };
        return format!("cannot connect to {url}: {why}");
    }
    let code = match status.code() {
        tonic::Code::DeadlineExceeded => "timed out".to_string(),
        tonic::Code::Unavailable => "unreachable".to_string(),
        other => format!("{other:?}"),
    };
    if message.is_empty() {
        code
    } else {
        format!("{code}: {message}")
    }
}

fn point_id(id: &str) -> PointId {
    PointId::from(id.to_string())
}

fn id_string(id: Option<&PointId>) -> String {
    match id.and_then(|p| p.point_id_options.as_ref()) {
        Some(PointIdOptions::Uuid(u)) => u.clone(),
        Some(PointIdOptions::Num(n)) => n.to_string(),
        None => String::new(),
    }
}

fn to_filter(f: &VectorFilter) -> Option<Filter> {
    let (conditions, exclude_disabled) = f.conditions();
    let must: Vec<QCondition> = conditions
        .into_iter()
        .map(|c| match c {
            Condition::AnyOf(key, values) => QCondition::matches(key, values),
            Condition::Between(key, from, to) => QCondition::range(
                key,
                Range {
                    gte: from.map(|t| t as f64),
                    lte: to.map(|t| t as f64),
                    lt: None,
                    gt: None,
                },
            ),
        })
        .collect();
    let must_not: Vec<QCondition> = if exclude_disabled {
        vec![QCondition::matches("disabled", true)]
    } else {
        Vec::new()
    };
    if must.is_empty() && must_not.is_empty() {
        return None;
    }
    Some(Filter {
        must,
        must_not,
        ..Default::default()
    })
}

fn document_filter(document_id: &str) -> Filter {
    Filter::must([QCondition::matches("document_id", document_id.to_string())])
}

fn payload_of(p: &PointPayload) -> Result<Payload> {
    let value = serde_json::to_value(p).map_err(|e| StorageError::Vector(e.to_string()))?;
    Payload::try_from(value).map_err(|e| StorageError::Vector(e.to_string()))
}

fn payload_json(payload: HashMap<String, qdrant::Value>) -> serde_json::Value {
    serde_json::Value::Object(
        payload
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::from(v)))
            .collect(),
    )
}

/// A point read back, with both vectors.
fn read_point(
    id: Option<&PointId>,
    payload: HashMap<String, qdrant::Value>,
    vectors: Option<qdrant::VectorsOutput>,
) -> Result<ChunkPoint> {
    use qdrant::vector_output::Vector as V;
    use qdrant::vectors_output::VectorsOptions;
    let id = id_string(id);
    let payload = decode_payload(payload_json(payload))?;
    let mut dense = None;
    let mut sparse = None;
    if let Some(VectorsOptions::Vectors(named)) = vectors.and_then(|v| v.vectors_options) {
        for (name, v) in named.vectors {
            match (name.as_str(), v.into_vector()) {
                (DENSE, V::Dense(d)) => dense = Some(d.data),
                (BM25, V::Sparse(s)) => sparse = Some((s.indices, s.values)),
                _ => {}
            }
        }
    }
    Ok(ChunkPoint {
        dense: dense
            .ok_or_else(|| StorageError::Corrupt(format!("point {id} has no '{DENSE}' vector")))?,
        sparse: sparse.unwrap_or_default(),
        payload,
        id,
    })
}

impl QdrantServerStore {
    /// A client for the server; nothing is sent yet. The collection is created (or checked)
    /// by the first operation, so that a process can start while the server is still down
    /// and be ready as soon as it answers.
    pub fn new(config: QdrantServerConfig) -> Result<Self> {
        let client = Qdrant::from_url(&config.url)
            .api_key(config.api_key.clone())
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // The client's own check prints to standard output; `check` reports the version.
            .skip_compatibility_check()
            .build()
            .map_err(|e| StorageError::Vector(format!("vectors.url '{}': {e}", config.url)))?;
        Ok(Self {
            client,
            config,
            ready: OnceCell::new(),
        })
    }

    /// The collection this store writes to.
    pub fn collection(&self) -> &str {
        &self.config.collection
    }

    fn ordering(&self) -> qdrant::WriteOrdering {
        let kind = match self.config.write_ordering {
            WriteOrdering::Weak => WriteOrderingType::Weak,
            WriteOrdering::Medium => WriteOrderingType::Medium,
            WriteOrdering::Strong => WriteOrderingType::Strong,
        };
        qdrant::WriteOrdering {
            r#type: kind as i32,
        }
    }

    /// Makes sure the collection exists with the right vectors and its payload indexes.
    async fn ensure(&self) -> Result<()> {
        self.ready
            .get_or_try_init(|| self.create_collection())
            .await
            .map(|_| ())
    }

    async fn create_collection(&self) -> Result<()> {
        let name = &self.config.collection;
        let exists = self
            .client
            .collection_exists(name)
            .await
            .map_err(qdrant_err)?;
        if !exists {
            let mut vectors = VectorsConfigBuilder::default();
            vectors.add_named_vector_params(
                DENSE,
                VectorParamsBuilder::new(self.config.dimension as u64, Distance::Cosine),
            );
            let mut sparse = SparseVectorsConfigBuilder::default();
            sparse.add_named_vector_params(
                BM25,
                SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
            );
            let created = self
                .client
                .create_collection(
                    CreateCollectionBuilder::new(name)
                        .vectors_config(vectors)
                        .sparse_vectors_config(sparse)
                        .shard_number(self.config.shard_number)
                        .replication_factor(self.config.replication_factor)
                        .write_consistency_factor(self.config.write_consistency_factor)
                        .on_disk_payload(true),
                )
                .await;
            if let Err(e) = created {
                // Another Enclave process may have created it meanwhile.
                let now_exists = self
                    .client
                    .collection_exists(name)
                    .await
                    .map_err(qdrant_err)?;
                if !now_exists {
                    return Err(qdrant_err(e));
                }
            }
        }
        let info = self
            .client
            .collection_info(name)
            .await
            .map_err(qdrant_err)?
            .result
            .ok_or_else(|| StorageError::Vector(format!("collection '{name}': no info")))?;
        let dense_size = info
            .config
            .as_ref()
            .and_then(|c| c.params.as_ref())
            .and_then(|p| p.vectors_config.as_ref())
            .and_then(|v| v.config.as_ref())
            .and_then(|c| match c {
                qdrant::vectors_config::Config::ParamsMap(m) => m.map.get(DENSE).map(|p| p.size),
                qdrant::vectors_config::Config::Params(_) => None,
            })
            .ok_or_else(|| {
                StorageError::Vector(format!(
                    "the Qdrant collection '{name}' has no '{DENSE}' vector: it was not made \
                     by Enclave (choose another vectors.collection)"
                ))
            })?;
        if dense_size as usize != self.config.dimension {
            return Err(StorageError::Dimension {
                got: self.config.dimension,
                want: dense_size as usize,
            });
        }
        for (field, kind) in INDEXED {
            if info.payload_schema.contains_key(field) {
                continue;
            }
            let mut request = CreateFieldIndexCollectionBuilder::new(name, field, kind).wait(true);
            // No extra HNSW links per payload value: the graph is the one the embedded store
            // builds (same recall@10 at 100k chunks in benches/search.rs); filters still use
            // the payload index.
            request = match kind {
                FieldType::Keyword => request.field_index_params(
                    KeywordIndexParamsBuilder::default()
                        .is_tenant(field == "collection_id")
                        .enable_hnsw(false),
                ),
                FieldType::Integer => request.field_index_params(
                    IntegerIndexParamsBuilder::new(true, true).enable_hnsw(false),
                ),
                FieldType::Bool => {
                    request.field_index_params(BoolIndexParamsBuilder::new().enable_hnsw(false))
                }
                _ => request,
            };
            self.client
                .create_field_index(request)
                .await
                .map_err(qdrant_err)?;
        }
        Ok(())
    }

    async fn delete_by_filter(&self, filter: Filter) -> Result<()> {
        self.ensure().await?;
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.config.collection)
                    .points(filter)
                    .wait(true)
                    .ordering(self.ordering()),
            )
            .await
            .map_err(qdrant_err)?;
        Ok(())
    }
}

#[async_trait]
impl VectorStore for QdrantServerStore {
    async fn upsert(&self, points: Vec<ChunkPoint>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        self.ensure().await?;
        let mut structs = Vec::with_capacity(points.len());
        for p in points {
            if p.dense.len() != self.config.dimension {
                return Err(StorageError::Dimension {
                    got: p.dense.len(),
                    want: self.config.dimension,
                });
            }
            let mut vectors = NamedVectors::default().add_vector(DENSE, p.dense);
            if !p.sparse.0.is_empty() {
                vectors =
                    vectors.add_vector(BM25, qdrant::Vector::new_sparse(p.sparse.0, p.sparse.1));
            }
            structs.push(PointStruct::new(
                point_id(&p.id),
                vectors,
                payload_of(&p.payload)?,
            ));
        }
        self.client
            .upsert_points(
                UpsertPointsBuilder::new(&self.config.collection, structs)
                    .wait(true)
                    .ordering(self.ordering()),
            )
            .await
            .map_err(qdrant_err)?;
        Ok(())
    }

    async fn delete_version(&self, document_id: &str, version: i64) -> Result<()> {
        self.delete_by_filter(Filter::must([
            QCondition::matches("document_id", document_id.to_string()),
            QCondition::matches("version", version),
        ]))
        .await
    }

    async fn delete_document(&self, document_id: &str) -> Result<()> {
        self.delete_by_filter(document_filter(document_id)).await
    }

    async fn update_payload(
        &self,
        document_id: &str,
        points: Option<&[String]>,
        update: &PayloadUpdate,
    ) -> Result<()> {
        let payload = update.to_json();
        if payload.is_empty() || points.is_some_and(<[String]>::is_empty) {
            return Ok(());
        }
        self.ensure().await?;
        let request = SetPayloadPointsBuilder::new(&self.config.collection, Payload::from(payload))
            .wait(true)
            .ordering(self.ordering());
        let request = match points {
            Some(ids) => request.points_selector(PointsIdsList {
                ids: ids.iter().map(|i| point_id(i)).collect(),
            }),
            None => request.points_selector(document_filter(document_id)),
        };
        self.client.set_payload(request).await.map_err(qdrant_err)?;
        Ok(())
    }

    async fn count(&self, filter: &VectorFilter) -> Result<usize> {
        self.ensure().await?;
        let mut request = CountPointsBuilder::new(&self.config.collection).exact(true);
        if let Some(f) = to_filter(filter) {
            request = request.filter(f);
        }
        let counted = self.client.count(request).await.map_err(qdrant_err)?;
        Ok(counted.result.map_or(0, |r| r.count as usize))
    }

    async fn point_ids(&self) -> Result<Vec<String>> {
        self.ensure().await?;
        let mut ids = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.config.collection)
                .limit(1000)
                .with_payload(false)
                .with_vectors(false);
            if let Some(o) = offset.take() {
                request = request.offset(o);
            }
            let page = self.client.scroll(request).await.map_err(qdrant_err)?;
            ids.extend(page.result.iter().map(|p| id_string(p.id.as_ref())));
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        ids.sort();
        Ok(ids)
    }

    async fn search(
        &self,
        query: VectorQuery,
        filter: &VectorFilter,
        limit: usize,
    ) -> Result<Vec<VectorHit>> {
        let (using, input) = match query {
            VectorQuery::Dense(v) => {
                if v.len() != self.config.dimension {
                    return Err(StorageError::Dimension {
                        got: v.len(),
                        want: self.config.dimension,
                    });
                }
                (DENSE, VectorInput::new_dense(v))
            }
            VectorQuery::Bm25(indices, values) => {
                if indices.is_empty() {
                    // No query term is in the BM25 vocabulary: nothing can match.
                    return Ok(Vec::new());
                }
                (BM25, VectorInput::new_sparse(indices, values))
            }
        };
        self.ensure().await?;
        let mut request = QueryPointsBuilder::new(&self.config.collection)
            .query(input)
            .using(using)
            .limit(limit as u64)
            .with_payload(true);
        if let Some(f) = to_filter(filter) {
            request = request.filter(f);
        }
        let found = self.client.query(request).await.map_err(qdrant_err)?;
        found
            .result
            .into_iter()
            .map(|p| {
                Ok(VectorHit {
                    id: id_string(p.id.as_ref()),
                    score: p.score,
                    payload: decode_payload(payload_json(p.payload))?,
                })
            })
            .collect()
    }

    async fn points_page(
        &self,
        offset: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ChunkPoint>, Option<String>)> {
        self.ensure().await?;
        let mut request = ScrollPointsBuilder::new(&self.config.collection)
            .limit(limit.max(1) as u32)
            .with_payload(true)
            .with_vectors(true);
        if let Some(o) = offset {
            request = request.offset(point_id(&o));
        }
        let page = self.client.scroll(request).await.map_err(qdrant_err)?;
        let points = page
            .result
            .into_iter()
            .map(|p| read_point(p.id.as_ref(), p.payload, p.vectors))
            .collect::<Result<Vec<_>>>()?;
        Ok((points, page.next_page_offset.map(|n| id_string(Some(&n)))))
    }

    async fn get_points(&self, ids: &[String]) -> Result<Vec<ChunkPoint>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure().await?;
        let found = self
            .client
            .get_points(
                GetPointsBuilder::new(
                    &self.config.collection,
                    ids.iter().map(|i| point_id(i)).collect::<Vec<_>>(),
                )
                .with_payload(true)
                .with_vectors(true),
            )
            .await
            .map_err(qdrant_err)?;
        found
            .result
            .into_iter()
            .map(|p| read_point(p.id.as_ref(), p.payload, p.vectors))
            .collect()
    }

    async fn check(&self) -> Result<String> {
        let health = self.client.health_check().await.map_err(qdrant_err)?;
        self.ensure().await?;
        Ok(format!(
            "Qdrant {} at {}, collection {}",
            health.version, self.config.url, self.config.collection
        ))
    }

    fn describe(&self) -> String {
        format!(
            "Qdrant server {}, collection {}",
            self.config.url, self.config.collection
        )
    }

    async fn flush(&self) -> Result<()> {
        // Every write already waited for the server's acknowledgement.
        Ok(())
    }

    async fn optimize(&self) -> Result<bool> {
        // The server's optimizers index and merge segments by themselves.
        Ok(false)
    }
}
