//! The ingest pipeline: files (and the attachments inside them) become versions of documents
//! with pages, chunks, dense + BM25 vectors, written so that any interruption is repaired by
//! the next run.
//!
//! Order of writes for one document, each step idempotent:
//! 1. `begin_version`: the document row (status `indexing`) and a version in state `indexing`.
//! 2. parse (PDF in a child process), chunk, embed: nothing written.
//! 3. page and chunk rows of the version (one transaction).
//! 4. points in the vector store, ids derived from (document, version, ordinal); flushed.
//! 5. `activate_version`: one transaction flips the active version; the old one is `superseded`.
//! 6. the superseded version's points are deleted and flushed, then its rows.
//!
//! [`Ingestor::recover`] (run at the start of every ingest) finishes or undoes whatever an
//! interrupted run left: versions still `indexing` and `superseded` ones lose their points and
//! rows, documents marked `deleting` are removed. Readers only see active versions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave_embed::{Embedder, OnnxEmbedder};
use enclave_storage::{
    Bm25Encoder, ChunkPoint, ChunkRecord, MetaStore, NewVersion, PageRecord, PointPayload,
    PurgeTask, RunCounts, StorageError, VectorStore, VersionState, chunk_point_id,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::IngestError;
use crate::chunk::Chunker;
use crate::parse::ocr::OcrOptions;
use crate::parse::pdf::PdfIsolation;
use crate::parse::sheet::WorkbookFormat;
use crate::parse::{self, DocumentKind, ParseError, ParsedDocument};
use crate::provenance::Provenance;
use crate::source::{Found, discover, file_uri};

/// Limits and knobs of the pipeline.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// How PDF extraction is isolated (child process command and time-out).
    pub pdf: PdfIsolation,
    /// OCR of images and scanned PDF pages, and recovery of PDFs the first extractor cannot read.
    pub ocr: OcrOptions,
    /// Files larger than this fail with "file too large".
    pub max_file_bytes: u64,
    /// Documents with more extracted characters than this fail with "text too long".
    pub max_text_chars: usize,
    /// Documents processed at once.
    pub parallel_documents: usize,
    /// Texts per embedding call.
    pub embed_batch: usize,
    /// `None` when this process holds the stores alone (the embedded mode): a repair may take
    /// every version still `indexing` for interrupted. `Some(lease)` when other processes
    /// write to the same stores: each version's writer shows it is alive every quarter of the
    /// lease, and a repair gives up only versions whose writer was silent for longer.
    pub writer_lease: Option<Duration>,
}

/// What to ingest, and into which collection.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub paths: Vec<PathBuf>,
    pub collection: String,
    /// Access tags stored on every chunk (filters inside the search).
    pub access: Vec<String>,
    pub tags: Vec<String>,
    /// Process documents whose last attempt failed even when their content is unchanged.
    pub retry_failed: bool,
    /// Process every document again, even when its content is unchanged (re-index).
    pub force: bool,
}

/// Content already kept by the caller (an upload, or a document to re-index), ingested as
/// one document with the identity the caller gives it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredContent {
    pub collection: String,
    /// Where the bytes are.
    pub path: PathBuf,
    /// The original file name: type detection and the fallback title.
    pub file_name: String,
    /// The document's identity in its collection.
    pub source_uri: String,
    pub external_id: Option<String>,
    /// Overrides the title found in the document.
    pub title: Option<String>,
    pub tags: Vec<String>,
    pub access: Vec<String>,
    /// Make a new version even when the content is unchanged.
    pub force: bool,
}

/// How one file (or attachment) ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FileOutcome {
    /// A new version is active.
    Ingested { pages: usize, chunks: usize },
    /// Same content as the version already processed.
    Unchanged,
    /// Could not be ingested; the reason is recorded on the document.
    Failed { reason: String },
}

/// Progress reports from a running ingest.
pub trait IngestObserver: Send + Sync {
    /// Files found (before processing starts).
    fn discovered(&self, _files: usize) {}
    /// One file done (attachments are reported under their parent's source, after it).
    fn finished(&self, _source: &str, _outcome: &FileOutcome) {}
}

/// An observer that ignores everything.
impl IngestObserver for () {}

/// Totals of one ingest run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestSummary {
    pub counts: RunCounts,
    /// (source, reason) of every failure in this run.
    pub failures: Vec<(String, String)>,
    pub elapsed: Duration,
}

impl IngestSummary {
    /// Pages of ingested documents per second of the run.
    pub fn pages_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.counts.pages as f64 / secs
        } else {
            0.0
        }
    }

    fn add(&mut self, source: &str, outcome: &FileOutcome) {
        match outcome {
            FileOutcome::Ingested { pages, chunks } => {
                self.counts.ingested += 1;
                self.counts.pages += *pages as i64;
                self.counts.chunks += *chunks as i64;
            }
            FileOutcome::Unchanged => self.counts.unchanged += 1,
            FileOutcome::Failed { reason } => {
                self.counts.failed += 1;
                self.failures.push((source.to_string(), reason.clone()));
            }
        }
    }
}

/// One unit of content to ingest: a file's bytes or an attachment's.
struct Blob {
    source_uri: String,
    /// Name used for type detection and as the fallback title.
    name: PathBuf,
    bytes: Vec<u8>,
    parent_id: Option<String>,
    external_id: Option<String>,
    /// Set by the caller: wins over the title found in the document.
    title: Option<String>,
    /// Date and authors of the containing document, for an attachment that has none.
    inherited: Provenance,
    /// Told (pages done, pages in all) as the document's chunks are embedded.
    progress: Option<Arc<ProgressFn>>,
    /// 0 for a file; attachments are one deeper than their parent.
    depth: usize,
}

/// Attachments nested deeper than this (a message in a message in a message...) are not
/// ingested; their parent records how many were left out (`skipped_deeper_attachments`).
pub const MAX_ATTACHMENT_DEPTH: usize = 3;

/// The document metadata key naming what a citation calls one of its pages.
pub const PAGE_NOUN: &str = "page_noun";

/// A progress callback: (pages done, pages in all).
pub type ProgressFn = dyn Fn(usize, usize) + Send + Sync;

/// Everything the pipeline needs; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    meta: MetaStore,
    vectors: Arc<dyn VectorStore>,
    embedder: OnnxEmbedder,
    chunker: Chunker,
    bm25: Bm25Encoder,
    options: IngestOptions,
}

/// Why processing stopped early; failures are recorded on the document, storage errors abort.
enum Stop {
    Failed {
        status: &'static str,
        reason: String,
    },
    Storage(IngestError),
}

impl From<enclave_storage::StorageError> for Stop {
    fn from(e: enclave_storage::StorageError) -> Self {
        Stop::Storage(e.into())
    }
}

impl From<enclave_embed::EmbedError> for Stop {
    fn from(e: enclave_embed::EmbedError) -> Self {
        Stop::Storage(e.into())
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn parse_failure(e: ParseError) -> Stop {
    let status = if matches!(e, ParseError::NoText) {
        "no_text"
    } else {
        "failed"
    };
    Stop::Failed {
        status,
        reason: e.to_string(),
    }
}

impl Ingestor {
    /// Assembles a pipeline from its parts.
    pub fn new(
        meta: MetaStore,
        vectors: Arc<dyn VectorStore>,
        embedder: OnnxEmbedder,
        chunker: Chunker,
        options: IngestOptions,
    ) -> Result<Self, IngestError> {
        Ok(Self {
            meta,
            vectors,
            embedder,
            chunker,
            bm25: Bm25Encoder::new()?,
            options,
        })
    }

    /// The metadata store.
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// The vector store.
    pub fn vectors(&self) -> &Arc<dyn VectorStore> {
        &self.vectors
    }

    /// Repairs what an interrupted run left behind (see [`recover`]).
    pub async fn recover(&self) -> Result<usize, IngestError> {
        recover(&self.meta, self.vectors.as_ref(), self.options.writer_lease).await
    }

    /// Ingests files and folders into a collection. One bad file fails alone; only store
    /// errors abort the run.
    pub async fn ingest(
        &self,
        request: &IngestRequest,
        observer: &dyn IngestObserver,
    ) -> Result<IngestSummary, IngestError> {
        let started = Instant::now();
        for p in &request.paths {
            if std::fs::symlink_metadata(p).is_err() {
                return Err(IngestError::MissingPath(p.display().to_string()));
            }
        }
        let collection = self.meta.ensure_collection(&request.collection).await?;
        self.recover().await?;
        let run_id = self.meta.start_run(&collection.id).await?;
        let found = {
            let paths = request.paths.clone();
            tokio::task::spawn_blocking(move || discover(&paths))
                .await
                .map_err(|e| IngestError::Config(format!("walking the paths failed: {e}")))?
        };
        observer.discovered(found.len());
        let mut summary = IngestSummary::default();
        summary.counts.files = found.len() as i64;
        let collection_id = collection.id.clone();
        let mut results = futures::stream::iter(found.into_iter().map(|f| {
            let collection_id = collection_id.clone();
            async move {
                match f {
                    Found::File(path) => {
                        let uri = file_uri(&path);
                        let outcome = self.ingest_file(&path, &uri, &collection_id, request).await;
                        (uri, outcome)
                    }
                    Found::Unwalkable { path, reason } => {
                        let uri = file_uri(&path);
                        let outcome = self
                            .fail_early(&collection_id, &uri, &path, &reason)
                            .await
                            .map(|()| FileOutcome::Failed { reason });
                        (uri, outcome)
                    }
                }
            }
        }))
        .buffer_unordered(self.options.parallel_documents.max(1));
        let mut fatal = None;
        while let Some((uri, outcome)) = results.next().await {
            match outcome {
                Ok(outcome) => {
                    summary.add(&uri, &outcome);
                    observer.finished(&uri, &outcome);
                }
                Err(e) => {
                    fatal.get_or_insert(e);
                }
            }
        }
        drop(results);
        // Index what was written, so that searches do not scan the new points one by one.
        if fatal.is_none() && summary.counts.ingested > 0 {
            self.vectors.optimize().await?;
        }
        summary.elapsed = started.elapsed();
        self.meta.finish_run(&run_id, &summary.counts).await?;
        match fatal {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    async fn fail_early(
        &self,
        collection_id: &str,
        uri: &str,
        path: &Path,
        reason: &str,
    ) -> Result<(), IngestError> {
        self.meta
            .record_failure(collection_id, uri, &file_name(path), reason)
            .await?;
        Ok(())
    }

    /// Reads one file and ingests it. `Err` only for store failures.
    async fn ingest_file(
        &self,
        path: &Path,
        uri: &str,
        collection_id: &str,
        request: &IngestRequest,
    ) -> Result<FileOutcome, IngestError> {
        let size = match tokio::fs::metadata(path).await {
            Ok(m) => m.len(),
            Err(e) => {
                let reason = format!("cannot read: {e}");
                self.fail_early(collection_id, uri, path, &reason).await?;
                return Ok(FileOutcome::Failed { reason });
            }
        };
        if size > self.options.max_file_bytes {
            let reason = ParseError::TooLarge {
                size,
                limit: self.options.max_file_bytes,
            }
            .to_string();
            self.fail_early(collection_id, uri, path, &reason).await?;
            return Ok(FileOutcome::Failed { reason });
        }
        let bytes = match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(e) => {
                let reason = format!("cannot read: {e}");
                self.fail_early(collection_id, uri, path, &reason).await?;
                return Ok(FileOutcome::Failed { reason });
            }
        };
        let blob = Blob {
            source_uri: uri.to_string(),
            name: path.to_path_buf(),
            bytes,
            parent_id: None,
            external_id: None,
            title: None,
            inherited: Provenance::default(),
            progress: None,
            depth: 0,
        };
        self.ingest_blob(blob, collection_id, request).await
    }

    /// Ingests content the caller keeps (see [`StoredContent`]). Unlike [`Ingestor::ingest`],
    /// runs no recovery: the caller must be the only writer, as an ingest worker is. A bad
    /// document fails alone (`Ok(Failed)`); `Err` only for store failures.
    pub async fn ingest_stored(&self, item: &StoredContent) -> Result<FileOutcome, IngestError> {
        self.ingest_stored_with_progress(item, None).await
    }

    /// [`Ingestor::ingest_stored`], telling `progress` (pages done, pages in all) as the
    /// document's chunks are embedded.
    pub async fn ingest_stored_with_progress(
        &self,
        item: &StoredContent,
        progress: Option<Arc<ProgressFn>>,
    ) -> Result<FileOutcome, IngestError> {
        let collection = self.meta.ensure_collection(&item.collection).await?;
        let request = IngestRequest {
            paths: Vec::new(),
            collection: item.collection.clone(),
            access: item.access.clone(),
            tags: item.tags.clone(),
            retry_failed: true,
            force: item.force,
        };
        let bytes = match tokio::fs::read(&item.path).await {
            Ok(b) => b,
            Err(e) => {
                let reason = format!("cannot read the stored content: {e}");
                self.meta
                    .record_failure(&collection.id, &item.source_uri, &item.file_name, &reason)
                    .await?;
                return Ok(FileOutcome::Failed { reason });
            }
        };
        if bytes.len() as u64 > self.options.max_file_bytes {
            let reason = ParseError::TooLarge {
                size: bytes.len() as u64,
                limit: self.options.max_file_bytes,
            }
            .to_string();
            self.meta
                .record_failure(&collection.id, &item.source_uri, &item.file_name, &reason)
                .await?;
            return Ok(FileOutcome::Failed { reason });
        }
        let blob = Blob {
            source_uri: item.source_uri.clone(),
            name: PathBuf::from(&item.file_name),
            bytes,
            parent_id: None,
            external_id: item.external_id.clone(),
            title: item.title.clone(),
            inherited: Provenance::default(),
            progress,
            depth: 0,
        };
        self.ingest_blob(blob, &collection.id, &request).await
    }

    /// Ingests one unit of content, then its attachments.
    fn ingest_blob<'a>(
        &'a self,
        blob: Blob,
        collection_id: &'a str,
        request: &'a IngestRequest,
    ) -> futures::future::BoxFuture<'a, Result<FileOutcome, IngestError>> {
        Box::pin(async move {
            let sha = {
                let bytes = blob.bytes.clone();
                tokio::task::spawn_blocking(move || sha256_hex(&bytes))
                    .await
                    .map_err(|e| IngestError::Config(format!("hashing failed: {e}")))?
            };
            let existing = self
                .meta
                .document_by_source(collection_id, &blob.source_uri)
                .await?;
            if let Some(doc) = &existing {
                let failed = doc.status != "ready";
                if doc.sha256 == sha
                    && doc.is_settled()
                    && !(failed && request.retry_failed)
                    && !request.force
                {
                    return Ok(FileOutcome::Unchanged);
                }
            }
            let kind = DocumentKind::detect(&blob.name, &blob.bytes[..blob.bytes.len().min(8)]);
            let new = NewVersion {
                collection_id: collection_id.to_string(),
                source_uri: blob.source_uri.clone(),
                external_id: blob.external_id.clone(),
                parent_id: blob.parent_id.clone(),
                title: blob.title.clone().unwrap_or_else(|| file_name(&blob.name)),
                mime_type: kind.map(|k| k.mime_type().to_string()),
                sha256: sha,
                byte_size: blob.bytes.len() as i64,
                metadata: serde_json::json!({}),
                tags: request.tags.clone(),
                access: request.access.clone(),
            };
            let (doc_id, version) = self.meta.begin_version(&new).await?;
            let alive = self
                .options
                .writer_lease
                .map(|lease| KeepAlive::start(&self.meta, &doc_id, version, lease / 4));
            let result = self
                .index_version(&blob, kind, &new, &doc_id, version)
                .await;
            drop(alive);
            match result {
                Ok((pages, chunks, mut attachments, provenance)) => {
                    let mut outcome = FileOutcome::Ingested { pages, chunks };
                    if blob.depth >= MAX_ATTACHMENT_DEPTH && !attachments.is_empty() {
                        tracing::warn!(
                            source = %blob.source_uri,
                            left_out = attachments.len(),
                            "attachments nested deeper than {MAX_ATTACHMENT_DEPTH} levels are not ingested"
                        );
                        self.meta
                            .set_metadata_value(
                                &doc_id,
                                "skipped_deeper_attachments",
                                &serde_json::json!(attachments.len()),
                            )
                            .await?;
                        attachments.clear();
                    }
                    for (i, att) in attachments.into_iter().enumerate() {
                        let child = Blob {
                            source_uri: format!(
                                "{}#attachment/{}/{}",
                                blob.source_uri,
                                i + 1,
                                att.file_name
                            ),
                            name: PathBuf::from(&att.file_name),
                            bytes: att.bytes,
                            parent_id: Some(doc_id.clone()),
                            external_id: None,
                            title: None,
                            inherited: provenance.clone(),
                            progress: None,
                            depth: blob.depth + 1,
                        };
                        let child_uri = child.source_uri.clone();
                        let child_outcome = self.ingest_blob(child, collection_id, request).await?;
                        if let FileOutcome::Failed { reason } = &child_outcome {
                            tracing::warn!(source = %child_uri, %reason, "attachment failed");
                        }
                        if let (
                            FileOutcome::Ingested { pages, chunks },
                            FileOutcome::Ingested {
                                pages: p,
                                chunks: c,
                            },
                        ) = (&mut outcome, &child_outcome)
                        {
                            *pages += p;
                            *chunks += c;
                        }
                    }
                    Ok(outcome)
                }
                Err(Stop::Failed { status, reason }) => {
                    self.abort_version(&doc_id, version).await?;
                    self.meta
                        .fail_version(&doc_id, version, status, &reason)
                        .await?;
                    Ok(FileOutcome::Failed { reason })
                }
                Err(Stop::Storage(IngestError::Storage(StorageError::Conflict(reason)))) => {
                    // A repair gave this version up while it was being written (its writer
                    // looked dead): remove what may have been written since, and retry.
                    self.vectors.delete_version(&doc_id, version).await?;
                    self.vectors.flush().await?;
                    self.meta
                        .finish_purge(&PurgeTask {
                            document_id: doc_id.clone(),
                            version,
                            state: VersionState::Abandoned,
                        })
                        .await?;
                    Err(IngestError::Storage(StorageError::Conflict(reason)))
                }
                Err(Stop::Storage(e)) => {
                    // Leave the version 'indexing': the next run's recovery removes it.
                    Err(e)
                }
            }
        })
    }

    /// Removes whatever a version that is being failed may already have stored.
    async fn abort_version(&self, doc_id: &str, version: i64) -> Result<(), IngestError> {
        self.vectors.delete_version(doc_id, version).await?;
        self.vectors.flush().await?;
        self.meta
            .finish_purge(&PurgeTask {
                document_id: doc_id.to_string(),
                version,
                state: VersionState::Failed,
            })
            .await?;
        Ok(())
    }

    async fn parse(&self, blob: &Blob, kind: Option<DocumentKind>) -> Result<ParsedDocument, Stop> {
        let Some(kind) = kind else {
            let ext = blob.name.extension().map_or_else(
                || "no extension".to_string(),
                |e| format!(".{}", e.to_string_lossy()),
            );
            return Err(parse_failure(ParseError::Unsupported(format!(
                "{ext} (supported: {})",
                DocumentKind::supported()
            ))));
        };
        if blob.bytes.is_empty() {
            return Err(parse_failure(ParseError::Empty));
        }
        let bytes = blob.bytes.clone();
        let ocr = self.options.ocr.clone();
        let progress = blob.progress.clone();
        let report = move |done: usize, total: usize| {
            if let Some(p) = &progress {
                p(done, total);
            }
        };
        if kind == DocumentKind::Pdf {
            let extracted = parse::pdf::extract_isolated(&blob.bytes, &self.options.pdf).await;
            return tokio::task::spawn_blocking(move || {
                parse::ocr::complete_pdf(&bytes, extracted, &ocr, &report)
            })
            .await
            .map_err(|e| Stop::Failed {
                status: "failed",
                reason: format!("OCR crashed: {e}"),
            })?
            .map_err(parse_failure);
        }
        let parsed = tokio::task::spawn_blocking(move || match kind {
            DocumentKind::Text => parse::text::parse_text(&bytes),
            DocumentKind::Markdown => parse::text::parse_markdown(&bytes),
            DocumentKind::Html => parse::html::parse(&bytes),
            DocumentKind::Email => parse::email::parse(&bytes),
            DocumentKind::Msg => parse::msg::parse(&bytes),
            DocumentKind::Docx => parse::office::parse(&bytes, parse::office::OfficeFormat::Docx),
            DocumentKind::Odt => parse::office::parse(&bytes, parse::office::OfficeFormat::Odt),
            DocumentKind::Pptx => parse::office::parse(&bytes, parse::office::OfficeFormat::Pptx),
            DocumentKind::Odp => parse::office::parse(&bytes, parse::office::OfficeFormat::Odp),
            DocumentKind::Xlsx => parse::sheet::parse_workbook(&bytes, WorkbookFormat::Xlsx),
            DocumentKind::Xls => parse::sheet::parse_workbook(&bytes, WorkbookFormat::Xls),
            DocumentKind::Ods => parse::sheet::parse_workbook(&bytes, WorkbookFormat::Ods),
            DocumentKind::Csv => parse::sheet::parse_csv(&bytes),
            DocumentKind::Rtf => parse::rtf::parse(&bytes),
            DocumentKind::Png | DocumentKind::Jpeg | DocumentKind::Tiff => {
                report(0, 1);
                parse::ocr::parse_image(&bytes, &ocr)
            }
            DocumentKind::Pdf => unreachable!("PDFs are parsed in a child process"),
        })
        .await
        .map_err(|e| Stop::Failed {
            status: "failed",
            reason: format!("parser crashed: {e}"),
        })?;
        parsed.map_err(parse_failure)
    }

    /// The chunker for a collection: its own `chunk_tokens` / `chunk_overlap` settings where it
    /// has them, else the configured sizes.
    async fn collection_chunker(&self, collection_id: &str) -> Result<Chunker, IngestError> {
        let settings = self
            .meta
            .collection(collection_id)
            .await?
            .map(|c| c.settings)
            .unwrap_or_default();
        match chunk_sizes(
            &settings,
            self.chunker.max_tokens(),
            self.chunker.overlap_tokens(),
        )? {
            Some((max, overlap)) => self.chunker.with_sizes(max, overlap),
            None => Ok(self.chunker.clone()),
        }
    }

    /// Parses, chunks, embeds and stores one version, then makes it active. Returns pages,
    /// chunks and the attachments to ingest as children.
    async fn index_version(
        &self,
        blob: &Blob,
        kind: Option<DocumentKind>,
        new: &NewVersion,
        doc_id: &str,
        version: i64,
    ) -> Result<(usize, usize, Vec<parse::Attachment>, Provenance), Stop> {
        let mut parsed = self.parse(blob, kind).await?;
        let provenance = Provenance::of(&parsed.metadata).or(&blob.inherited);
        let attachments = std::mem::take(&mut parsed.attachments);
        let chars: usize = parsed.pages.iter().map(|p| p.chars().count()).sum();
        if chars > self.options.max_text_chars {
            return Err(Stop::Failed {
                status: "failed",
                reason: format!(
                    "text too long: {chars} characters, the limit is {} (ingest.max_text_chars)",
                    self.options.max_text_chars
                ),
            });
        }
        let title = blob
            .title
            .clone()
            .or_else(|| parsed.title.clone().filter(|t| !t.trim().is_empty()))
            .unwrap_or_else(|| new.title.clone());
        let (parsed, chunks, chunker) = {
            let chunker = self
                .collection_chunker(&new.collection_id)
                .await
                .map_err(|e| Stop::Failed {
                    status: "failed",
                    reason: e.to_string(),
                })?;
            tokio::task::spawn_blocking(move || {
                let chunks = chunker.chunk(&parsed);
                (parsed, chunks, chunker)
            })
            .await
            .map_err(|e| Stop::Failed {
                status: "failed",
                reason: format!("chunking crashed: {e}"),
            })?
        };
        if chunks.is_empty() && attachments.is_empty() {
            return Err(parse_failure(ParseError::NoText));
        }

        // Embed: the title and heading path give each chunk the context its text may lack.
        let inputs: Vec<String> = chunks
            .iter()
            .map(|c| chunker.indexed_text(&title, c))
            .collect();
        let mut dense = Vec::with_capacity(inputs.len());
        let page_count = parsed.pages.len();
        if let Some(p) = &blob.progress {
            p(0, page_count);
        }
        for batch in inputs.chunks(self.options.embed_batch.max(1) * 4) {
            dense.extend(self.embedder.embed(batch.to_vec()).await?);
            if let (Some(p), Some(last)) = (&blob.progress, chunks.get(dense.len() - 1)) {
                let done = if dense.len() == chunks.len() {
                    page_count
                } else {
                    last.page_end.saturating_sub(1)
                };
                p(done.min(page_count), page_count);
            }
        }
        let sparse: Vec<_> = inputs.iter().map(|t| self.bm25.document(t)).collect();

        let page_starts = parsed.page_starts();
        let pages: Vec<PageRecord> = parsed
            .pages
            .iter()
            .zip(&page_starts)
            .enumerate()
            .map(|(i, (text, start))| PageRecord {
                page_number: i as i64 + 1,
                char_start: *start as i64,
                text: text.clone(),
            })
            .collect();
        let records: Vec<ChunkRecord> = chunks
            .iter()
            .map(|c| ChunkRecord {
                id: chunk_point_id(doc_id, version, c.ordinal as i64),
                document_id: doc_id.to_string(),
                version,
                ordinal: c.ordinal as i64,
                text: c.text.clone(),
                page_start: c.page_start as i64,
                page_end: c.page_end as i64,
                char_start: c.char_start as i64,
                char_end: c.char_end as i64,
                token_count: c.token_count as i64,
                section: c.section.clone(),
                disabled: false,
            })
            .collect();
        self.meta
            .store_chunks(doc_id, version, &pages, &records)
            .await?;
        // A document a curator took out of retrieval stays out in its new version, and who
        // may read it is what the metadata store says now (an ACL may have changed since the
        // job was queued).
        let current = self.meta.document(doc_id).await?;
        let disabled = current.as_ref().is_some_and(|d| d.disabled);
        let access = current
            .map(|d| d.access)
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| new.access.clone());
        let points: Vec<ChunkPoint> = records
            .iter()
            .zip(dense)
            .zip(sparse)
            .map(|((r, dense), sparse)| ChunkPoint {
                id: r.id.clone(),
                dense,
                sparse,
                payload: PointPayload {
                    collection_id: new.collection_id.clone(),
                    document_id: doc_id.to_string(),
                    version,
                    ordinal: r.ordinal,
                    access: access.clone(),
                    tags: new.tags.clone(),
                    mime_type: new.mime_type.clone().unwrap_or_default(),
                    date: provenance.date,
                    authors: provenance.authors.clone(),
                    disabled,
                },
            })
            .collect();
        for batch in points.chunks(256) {
            self.vectors.upsert(batch.to_vec()).await?;
        }
        self.vectors.flush().await?;
        let mut metadata = parsed.metadata.clone();
        // What a citation calls a page of this document (a slide, a sheet, a section).
        if let Some(noun) = kind.map(DocumentKind::page_noun).filter(|n| *n != "page") {
            metadata.insert(PAGE_NOUN.into(), noun.into());
        }
        let metadata = serde_json::Value::Object(metadata);
        let superseded = self
            .meta
            .activate_version(
                doc_id,
                version,
                &title,
                &metadata,
                pages.len() as i64,
                records.len() as i64,
            )
            .await?;
        if let Some(old) = superseded {
            self.vectors.delete_version(doc_id, old).await?;
            self.vectors.flush().await?;
            self.meta
                .finish_purge(&PurgeTask {
                    document_id: doc_id.to_string(),
                    version: old,
                    state: VersionState::Superseded,
                })
                .await?;
        }
        Ok((pages.len(), records.len(), attachments, provenance))
    }
}

/// Shows that the writer of a version is alive, every `every`, until dropped.
struct KeepAlive(tokio::task::JoinHandle<()>);

impl KeepAlive {
    fn start(meta: &MetaStore, document_id: &str, version: i64, every: Duration) -> Self {
        let (meta, document_id) = (meta.clone(), document_id.to_string());
        let every = every.max(Duration::from_millis(100));
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = meta.keep_version_alive(&document_id, version).await {
                    tracing::warn!(document = %document_id, version, error = %e,
                        "cannot record that this version's writer is alive");
                }
            }
        }))
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Repairs what an interrupted run left behind (see the module documentation): versions left
/// `indexing` or `superseded` lose their points and rows, documents marked `deleting` are
/// removed. With `writer_lease` unset the caller must be the only writer (every `indexing`
/// version is then an interrupted one); with `Some(lease)` other processes may be writing, and
/// only versions whose writer has been silent for longer than the lease are given up (the
/// other repairs are idempotent, so they may run beside the process that started them).
/// Returns the repairs made.
pub async fn recover(
    meta: &MetaStore,
    vectors: &dyn VectorStore,
    writer_lease: Option<Duration>,
) -> Result<usize, IngestError> {
    let tasks = match writer_lease {
        None => meta.pending_purges(true).await?,
        Some(lease) => {
            let cutoff = chrono::Utc::now()
                - chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
            let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            meta.orphaned_purges(&cutoff).await?
        }
    };
    let deleting = meta.deleting_documents().await?;
    if tasks.is_empty() && deleting.is_empty() {
        return Ok(0);
    }
    for t in &tasks {
        vectors.delete_version(&t.document_id, t.version).await?;
    }
    for id in &deleting {
        vectors.delete_document(id).await?;
    }
    vectors.flush().await?;
    for t in &tasks {
        meta.finish_purge(t).await?;
    }
    for id in &deleting {
        meta.delete_document_row(id).await?;
    }
    tracing::info!(
        versions = tasks.len(),
        deleted = deleting.len(),
        "repaired an interrupted ingest"
    );
    Ok(tasks.len() + deleting.len())
}

/// Repairs what an interrupted ingest of one document (and its attachments) left behind:
/// versions still `indexing` lose their points and rows. Unlike [`recover`], safe while other
/// documents are being ingested; the caller must be the only one working on this document (a
/// worker holding the job's lease is). Returns the versions repaired.
pub async fn recover_document(
    meta: &MetaStore,
    vectors: &dyn VectorStore,
    document_id: &str,
) -> Result<usize, IngestError> {
    let mut ids: Vec<String> = meta
        .children(document_id)
        .await?
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.push(document_id.to_string());
    let tasks: Vec<PurgeTask> = meta
        .pending_purges(true)
        .await?
        .into_iter()
        .filter(|t| t.state == VersionState::Indexing && ids.contains(&t.document_id))
        .collect();
    if tasks.is_empty() {
        return Ok(0);
    }
    for t in &tasks {
        vectors.delete_version(&t.document_id, t.version).await?;
    }
    vectors.flush().await?;
    for t in &tasks {
        meta.finish_purge(t).await?;
    }
    tracing::info!(
        document = document_id,
        versions = tasks.len(),
        "repaired an interrupted ingest of this document"
    );
    Ok(tasks.len())
}

/// Deletes a document and its attachments: marked `deleting` (with its `document.deleted`
/// event, when the store records it), vectors removed and flushed, then rows; an interruption
/// is finished by [`recover`].
pub async fn delete_document(
    meta: &MetaStore,
    vectors: &dyn VectorStore,
    document_id: &str,
) -> Result<(), IngestError> {
    let Some(doc) = meta.document(document_id).await? else {
        return Err(IngestError::Storage(
            enclave_storage::StorageError::NotFound(format!("document {document_id}")),
        ));
    };
    let mut ids = vec![document_id.to_string()];
    ids.extend(meta.children(document_id).await?.into_iter().map(|d| d.id));
    meta.cancel_document_jobs(document_id).await?;
    let event =
        crate::events::document_event(meta, crate::events::DOCUMENT_DELETED, &doc, Some("deleted"))
            .await?;
    meta.mark_deleting_with_event(document_id, event.as_ref())
        .await?;
    for id in &ids {
        vectors.delete_document(id).await?;
    }
    vectors.flush().await?;
    for id in ids.iter().rev() {
        meta.delete_document_row(id).await?;
    }
    Ok(())
}

/// A collection's chunk sizes (`chunk_tokens`, `chunk_overlap` in its settings), each
/// defaulting to the configured one; `None` when the collection sets neither.
pub fn chunk_sizes(
    settings: &serde_json::Value,
    default_max: usize,
    default_overlap: usize,
) -> Result<Option<(usize, usize)>, IngestError> {
    let read = |key: &str| -> Result<Option<usize>, IngestError> {
        match settings.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                IngestError::Config(format!(
                    "collection setting {key} = {v}: a whole number of tokens"
                ))
            }),
        }
    };
    let (max, overlap) = (read("chunk_tokens")?, read("chunk_overlap")?);
    if max.is_none() && overlap.is_none() {
        return Ok(None);
    }
    let max = max.unwrap_or(default_max);
    let overlap = overlap.unwrap_or(default_overlap.min(max / 2));
    if max < 16 || overlap >= max {
        return Err(IngestError::Config(format!(
            "collection chunking: {max} tokens with {overlap} overlap (at least 16 tokens, \
             overlap smaller than the chunk)"
        )));
    }
    Ok(Some((max, overlap)))
}

#[cfg(test)]
mod tests {
    use super::chunk_sizes;
    use serde_json::json;

    #[test]
    fn a_collection_sets_its_own_chunk_sizes() {
        assert_eq!(chunk_sizes(&json!({}), 200, 40).unwrap(), None);
        assert_eq!(
            chunk_sizes(&json!({"chunk_tokens": 64}), 200, 40).unwrap(),
            Some((64, 32)),
            "the default overlap shrinks to half a smaller chunk"
        );
        assert_eq!(
            chunk_sizes(&json!({"chunk_tokens": 64, "chunk_overlap": 8}), 200, 40).unwrap(),
            Some((64, 8))
        );
        assert_eq!(
            chunk_sizes(&json!({"chunk_overlap": 0}), 200, 40).unwrap(),
            Some((200, 0))
        );
        assert!(chunk_sizes(&json!({"chunk_tokens": 8}), 200, 40).is_err());
        assert!(chunk_sizes(&json!({"chunk_tokens": 64, "chunk_overlap": 64}), 200, 40).is_err());
        assert!(chunk_sizes(&json!({"chunk_tokens": "big"}), 200, 40).is_err());
    }
}
