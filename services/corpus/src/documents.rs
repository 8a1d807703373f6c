//! The use cases that queue work for the ingest workers: upload (and upsert by external id),
//! re-index, and the bulk actions over many documents. Each one authorizes, acts and writes
//! its audit entry; the front end only reads its request and shows the outcome.

use std::path::{Path, PathBuf};

use enclave_ingest::StoredContent;
use enclave_ingest::parse::DocumentKind;
use enclave_ingest::uploads::UPLOAD_SCHEME;
use enclave_storage::{Document, DocumentFilter, DocumentSort, NewVersion};

use crate::actor::{Action, Actor};
use crate::changes::{DocumentChange, clean_tags};
use crate::error::{CorpusError, Result};
use crate::queue::{IngestQueue, Job, reindex_job};
use crate::{Corpus, PUBLIC, Readers};

/// The longest external id, in bytes.
pub const MAX_EXTERNAL_ID: usize = 256;

/// The most documents one bulk action applies to.
pub const BULK_LIMIT: i64 = 10_000;

/// A file a front end has received and stored in a temporary file (the upload store's
/// `temp_path`), with its content hash.
#[derive(Debug, Clone)]
pub struct ReceivedFile {
    /// The file name as the caller gave it (without folders).
    pub name: String,
    pub temp: PathBuf,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    pub size: u64,
    /// The first bytes, for type detection.
    pub head: Vec<u8>,
}

/// What an upload says besides its file.
#[derive(Debug, Clone, Default)]
pub struct UploadFields {
    /// Overrides the title found in the document.
    pub title: Option<String>,
    pub tags: Vec<String>,
    /// The caller's own id: the upload creates or replaces the document with this id.
    pub external_id: Option<String>,
    /// Who may read the document; `None`: a new document is public in its collection and a
    /// replacement keeps its list.
    pub readers: Option<Readers>,
}

/// How an upload ended.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The document as queued (or as it is, when unchanged).
    pub document: Document,
    pub collection: String,
    /// Same content, title, tags and readers as the document already there: nothing queued.
    pub unchanged: bool,
    pub job_id: Option<String>,
}

/// A listing's or a bulk action's criteria, as a caller gives them (empty ones are ignored).
#[derive(Debug, Clone, Default)]
pub struct DocumentCriteria {
    /// Collection name.
    pub collection: Option<String>,
    pub status: Option<String>,
    pub mime_type: Option<String>,
    pub tag: Option<String>,
    /// Words in the title, source or external id.
    pub q: Option<String>,
    pub disabled: Option<bool>,
}

/// One action applied to many documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkAction {
    Delete,
    Reindex,
    Disable,
    Enable,
    /// To the collection with this name.
    Move(String),
}

impl BulkAction {
    /// `delete`, `reindex`, `disable`, `enable` or `move` (which needs the target collection).
    pub fn parse(action: &str, collection: Option<&str>) -> Result<Self> {
        Ok(match action {
            "delete" => Self::Delete,
            "reindex" => Self::Reindex,
            "disable" => Self::Disable,
            "enable" => Self::Enable,
            "move" => Self::Move(
                collection
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| {
                        CorpusError::Invalid("'move' needs the target 'collection'".into())
                    })?
                    .to_string(),
            ),
            other => {
                return Err(CorpusError::Invalid(format!(
                    "unknown action '{other}': delete, reindex, disable, enable or move"
                )));
            }
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Reindex => "reindex",
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::Move(_) => "move",
        }
    }
}

/// Which documents a bulk action applies to.
#[derive(Debug, Clone)]
pub enum BulkTarget {
    /// Document ids or external ids.
    Ids(Vec<String>),
    /// Every top-level document matching these (at least one criterion).
    Matching(DocumentCriteria),
}

/// What a bulk action did: each document succeeds or fails on its own.
#[derive(Debug, Clone)]
pub struct BulkOutcome {
    pub action: &'static str,
    /// Documents the ids or the criteria named.
    pub matched: usize,
    pub succeeded: usize,
    /// Document id and the reason, for each failure.
    pub failed: Vec<(String, String)>,
}

impl Corpus {
    fn queue(&self) -> Result<&IngestQueue> {
        self.queue.as_ref().ok_or_else(|| {
            CorpusError::Invalid("this command does not queue documents for the workers".into())
        })
    }

    /// Stores a received file as the original of a document in `collection` and queues it;
    /// with an external id, creates or replaces the document with that id. Needs `editor` in
    /// the collection. The temporary file is moved into the upload store, or left for the
    /// caller to remove when nothing was queued.
    pub async fn upload(
        &self,
        actor: &Actor,
        collection: &str,
        file: &ReceivedFile,
        fields: &UploadFields,
    ) -> Result<Uploaded> {
        let collection = self.collection(actor, collection, Action::Write).await?;
        let tags = clean_tags(&fields.tags)?;
        let title = fields
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        let Some(kind) = DocumentKind::detect(Path::new(&file.name), &file.head) else {
            return Err(CorpusError::Unsupported(format!(
                "'{}' is not a supported type ({})",
                file.name,
                DocumentKind::supported()
            )));
        };
        if file.size == 0 {
            return Err(CorpusError::Invalid(format!("'{}' is empty", file.name)));
        }
        let external_id = fields
            .external_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string);
        if let Some(id) = &external_id
            && (id.len() > MAX_EXTERNAL_ID || id.chars().any(char::is_control))
        {
            return Err(CorpusError::Invalid(format!(
                "an external id is at most {MAX_EXTERNAL_ID} characters, without control \
                 characters"
            )));
        }
        let source_uri = match &external_id {
            Some(id) => format!("{UPLOAD_SCHEME}{}/external/{id}", collection.name),
            None => format!(
                "{UPLOAD_SCHEME}{}/{}/{}",
                collection.name,
                uuid::Uuid::new_v4(),
                file.name
            ),
        };
        let existing = self
            .meta
            .document_by_source(&collection.id, &source_uri)
            .await?;
        if let Some(doc) = &existing
            && !actor.can_read(doc)
        {
            // Replacing a document the actor may not read would tell it the document exists.
            return Err(CorpusError::NotFound(format!(
                "document '{}' does not exist for '{}' (a document it may not read cannot be \
                 replaced by it)",
                external_id.as_deref().unwrap_or(&file.name),
                actor.name
            )));
        }
        let access = match &fields.readers {
            Some(readers) => self.access_tokens(readers).await?,
            None => existing
                .as_ref()
                .map(|d| d.access.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| vec![PUBLIC.to_string()]),
        };
        if let Some(doc) = &existing
            && doc.sha256 == file.sha256
            && doc.status == "ready"
            && doc.tags == tags
            && doc.access == access
            && title.as_ref().is_none_or(|t| t == &doc.title)
        {
            return Ok(Uploaded {
                document: doc.clone(),
                collection: collection.name,
                unchanged: true,
                job_id: None,
            });
        }
        let queue = self.queue()?;
        let path = self
            .uploads()?
            .keep(&file.temp, &file.sha256, kind.extension())
            .await?;
        let new = NewVersion {
            collection_id: collection.id.clone(),
            source_uri: source_uri.clone(),
            external_id: external_id.clone(),
            parent_id: None,
            title: title.clone().unwrap_or_else(|| file.name.clone()),
            mime_type: Some(kind.mime_type().to_string()),
            sha256: file.sha256.clone(),
            byte_size: file.size as i64,
            metadata: serde_json::json!({}),
            tags: tags.clone(),
            access,
        };
        let document_id = self.meta.queue_document(&new).await?;
        let previous_sha = existing
            .as_ref()
            .map(|d| d.sha256.clone())
            .filter(|s| s != &file.sha256);
        // Read before a worker can start on it: the caller sees the document as queued.
        let document = self.meta.document(&document_id).await?.ok_or_else(|| {
            CorpusError::NotFound(format!("document '{document_id}' does not exist"))
        })?;
        self.audit(
            actor,
            if existing.is_some() {
                "replace"
            } else {
                "upload"
            },
            Some(&collection.name),
            Some(&document_id),
            serde_json::json!({
                "file": file.name,
                "sha256": file.sha256,
                "bytes": file.size,
                "external_id": external_id,
            }),
        )
        .await?;
        let job = queue
            .submit(Job {
                document_id: document_id.clone(),
                content: StoredContent {
                    collection: collection.name.clone(),
                    path,
                    file_name: file.name.clone(),
                    source_uri,
                    external_id,
                    title,
                    tags,
                    access: new.access,
                    force: existing.is_some(),
                },
                previous_sha,
            })
            .await?;
        Ok(Uploaded {
            document,
            collection: collection.name,
            unchanged: false,
            job_id: Some(job.id),
        })
    }

    /// Queues a document to be processed again from its original (`editor` in its
    /// collection); returns its collection's name.
    pub async fn reindex(&self, actor: &Actor, d: &Document) -> Result<String> {
        if !actor.can_read(d) {
            return Err(CorpusError::NotFound(format!(
                "document '{}' does not exist",
                d.id
            )));
        }
        if !actor.may(Action::Write, &d.collection_id) {
            return Err(CorpusError::Forbidden(format!(
                "'{}' may not re-index document {}: this needs the editor role in its collection",
                actor.name, d.id
            )));
        }
        let queue = self.queue()?;
        let name = self
            .meta
            .collection(&d.collection_id)
            .await?
            .map(|c| c.name)
            .unwrap_or_default();
        let Some(job) = reindex_job(d, self.uploads()?, &name) else {
            return Err(CorpusError::Conflict(format!(
                "the original of document {} is not available ({}): re-index its parent or \
                 upload it again",
                d.id, d.source_uri
            )));
        };
        self.meta
            .queue_document(&NewVersion {
                collection_id: d.collection_id.clone(),
                source_uri: d.source_uri.clone(),
                external_id: d.external_id.clone(),
                parent_id: d.parent_id.clone(),
                title: d.title.clone(),
                mime_type: d.mime_type.clone(),
                sha256: d.sha256.clone(),
                byte_size: d.byte_size,
                metadata: d.metadata.clone(),
                tags: d.tags.clone(),
                access: d.access.clone(),
            })
            .await?;
        queue.submit(job).await?;
        self.audit(
            actor,
            "reindex",
            Some(&name),
            Some(&d.id),
            serde_json::json!({}),
        )
        .await?;
        Ok(name)
    }

    /// The storage filter of a listing or a bulk action, narrowed to the documents the actor
    /// may do `action` on (a collection named must allow it).
    pub async fn document_filter(
        &self,
        actor: &Actor,
        criteria: &DocumentCriteria,
        top_level_only: bool,
        action: Action,
    ) -> Result<DocumentFilter> {
        let some = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let collection_id = match some(&criteria.collection) {
            Some(name) => Some(self.collection(actor, &name, action).await?.id),
            None => None,
        };
        let filter = DocumentFilter {
            collection_id,
            status: some(&criteria.status),
            mime_type: some(&criteria.mime_type),
            tag: some(&criteria.tag),
            top_level_only,
            query: some(&criteria.q),
            disabled: criteria.disabled,
            ..Default::default()
        };
        self.narrow(actor, filter, action).await
    }

    /// Applies one action to many documents (`editor` where each one is). Documents the
    /// actor may not read are not found; each document succeeds or fails on its own.
    pub async fn bulk(
        &self,
        actor: &Actor,
        action: &BulkAction,
        target: &BulkTarget,
    ) -> Result<BulkOutcome> {
        actor.require_somewhere(Action::Write)?;
        if let BulkAction::Move(name) = action {
            self.collection(actor, name, Action::Write).await?;
        }
        let documents: Vec<Document> = match target {
            BulkTarget::Ids(ids) => {
                let mut docs = Vec::new();
                for id in ids {
                    docs.push(self.document(actor, id, Action::Write).await?);
                }
                docs
            }
            BulkTarget::Matching(criteria) => {
                let filter = self
                    .document_filter(actor, criteria, true, Action::Write)
                    .await?;
                let named = DocumentFilter {
                    collection_ids: None,
                    access_any: Vec::new(),
                    disabled_only_in: None,
                    ..filter.clone()
                };
                if named
                    == (DocumentFilter {
                        top_level_only: true,
                        ..Default::default()
                    })
                {
                    return Err(CorpusError::Invalid(
                        "the filter names no criterion: give at least one (collection, status, \
                         type, tag, q, disabled)"
                            .into(),
                    ));
                }
                let page = self
                    .meta
                    .list_documents(&filter, DocumentSort::Created, false, BULK_LIMIT, 0)
                    .await?;
                if page.total > BULK_LIMIT {
                    return Err(CorpusError::Invalid(format!(
                        "the filter matches {} documents, more than {BULK_LIMIT} at once: narrow it",
                        page.total
                    )));
                }
                page.documents
            }
        };
        let mut out = BulkOutcome {
            action: action.as_str(),
            matched: documents.len(),
            succeeded: 0,
            failed: Vec::new(),
        };
        for d in documents {
            let id = d.id.clone();
            let result = match action {
                BulkAction::Delete => self.remove_document(actor, &d).await,
                BulkAction::Reindex => self.reindex(actor, &d).await.map(drop),
                BulkAction::Disable | BulkAction::Enable => {
                    let change = DocumentChange {
                        disabled: Some(*action == BulkAction::Disable),
                        ..Default::default()
                    };
                    self.change_document(actor, &d, &change).await.map(drop)
                }
                BulkAction::Move(target) => {
                    let change = DocumentChange {
                        collection: Some(target.clone()),
                        ..Default::default()
                    };
                    self.change_document(actor, &d, &change).await.map(drop)
                }
            };
            match result {
                Ok(()) => out.succeeded += 1,
                Err(e) => out.failed.push((id, e.to_string())),
            }
        }
        Ok(out)
    }
}
