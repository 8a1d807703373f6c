//! The corpus changes every front end shares: each one authorizes, acts on both stores and
//! writes its audit entry. Uploads, re-index requests and bulk actions, which queue work for
//! the ingest workers, are in `documents`.

use enclave_ingest::uploads::UploadStore;
use enclave_storage::{ChunkRecord, Collection, Document};

use crate::actor::{Action, Actor};
use crate::error::{CorpusError, Result};
use crate::{Corpus, Readers};

/// A change to a document that needs no re-processing; a field left out stays as it is.
#[derive(Debug, Clone, Default)]
pub struct DocumentChange {
    pub title: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Replaces the metadata (a JSON object).
    pub metadata: Option<serde_json::Value>,
    /// Leave the document (and its attachments) out of retrieval, or take it back in.
    pub disabled: Option<bool>,
    /// Move the document (and its attachments) to this collection (by name).
    pub collection: Option<String>,
    /// Who may read it (empty: everyone who reads the collection).
    pub readers: Option<Readers>,
}

/// Checks a collection name (also used as part of model names on `/v1`).
pub fn check_collection_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CorpusError::Invalid(format!(
            "invalid collection name '{name}': 1 to 64 letters, digits, '.', '_' or '-', \
             starting with a letter or digit"
        )))
    }
}

/// Tags as given by a curator: trimmed, de-duplicated, each at most 64 characters.
pub fn clean_tags(tags: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        if t.chars().count() > 64 {
            return Err(CorpusError::Invalid(format!("tag '{t}' is longer than 64")));
        }
        if !out.iter().any(|x| x == t) {
            out.push(t.to_string());
        }
    }
    Ok(out)
}

impl Corpus {
    pub(crate) fn uploads(&self) -> Result<&UploadStore> {
        self.uploads.as_ref().ok_or_else(|| {
            CorpusError::Invalid("this command does not open the uploads folder".into())
        })
    }

    async fn collection_name(&self, id: &str) -> Result<Option<String>> {
        Ok(self.meta.collection(id).await?.map(|c| c.name))
    }

    /// Creates a collection (administrators of every collection).
    pub async fn create_collection(&self, actor: &Actor, name: &str) -> Result<Collection> {
        actor.require_everywhere(Action::Administer)?;
        check_collection_name(name)?;
        let c = self.meta.create_collection(name).await?;
        self.audit(
            actor,
            "create_collection",
            Some(&c.name),
            None,
            serde_json::json!({}),
        )
        .await?;
        Ok(c)
    }

    /// Deletes a collection with its documents from both stores, its grants and its unused
    /// originals (administrators of the collection).
    pub async fn remove_collection(&self, actor: &Actor, name: &str) -> Result<usize> {
        let c = self.collection(actor, name, Action::Administer).await?;
        let vectors = self.vectors()?;
        let docs = self.meta.documents(Some(&c.id)).await?;
        for d in docs.iter().filter(|d| d.parent_id.is_none()) {
            enclave_ingest::delete_document(&self.meta, vectors, &d.id).await?;
        }
        // Attachments whose parent was elsewhere (none today) would remain: delete what is left.
        for d in self.meta.documents(Some(&c.id)).await? {
            enclave_ingest::delete_document(&self.meta, vectors, &d.id).await?;
        }
        self.meta.delete_collection_row(&c.id).await?;
        self.meta.remove_collection_grants(&c.id).await?;
        if let Some(uploads) = &self.uploads {
            for d in &docs {
                uploads.release(&self.meta, &d.sha256).await;
            }
        }
        self.audit(
            actor,
            "delete_collection",
            Some(&c.name),
            None,
            serde_json::json!({"documents": docs.len()}),
        )
        .await?;
        Ok(docs.len())
    }

    /// Deletes a document (and its attachments) from both stores, releases its original if no
    /// other document uses it, and records who did it. The document must be one the actor
    /// may change.
    pub async fn remove_document(&self, actor: &Actor, d: &Document) -> Result<()> {
        let d = self.document(actor, &d.id, Action::Write).await?;
        enclave_ingest::delete_document(&self.meta, self.vectors()?, &d.id).await?;
        self.uploads()?.release(&self.meta, &d.sha256).await;
        let collection = self.collection_name(&d.collection_id).await?;
        self.audit(
            actor,
            "delete",
            collection.as_deref(),
            Some(&d.id),
            serde_json::json!({"title": d.title, "source_uri": d.source_uri}),
        )
        .await
    }

    /// Applies a [`DocumentChange`] to both stores and records each part; returns the
    /// document as the actor now sees it (not found if it took itself off the access list).
    pub async fn change_document(
        &self,
        actor: &Actor,
        d: &Document,
        change: &DocumentChange,
    ) -> Result<Document> {
        let d = self.document(actor, &d.id, Action::Write).await?;
        let vectors = self.vectors()?;
        let from = self
            .collection_name(&d.collection_id)
            .await?
            .unwrap_or_default();
        if change.title.is_some() || change.tags.is_some() || change.metadata.is_some() {
            let title = change.title.clone().unwrap_or_else(|| d.title.clone());
            let tags = match &change.tags {
                Some(t) => clean_tags(t)?,
                None => d.tags.clone(),
            };
            let metadata = change
                .metadata
                .clone()
                .unwrap_or_else(|| d.metadata.clone());
            enclave_ingest::curation::update_document_details(
                &self.meta, vectors, &d.id, &title, &tags, &metadata,
            )
            .await?;
            self.audit(
                actor,
                "edit",
                Some(&from),
                Some(&d.id),
                serde_json::json!({"title": title, "tags": tags, "metadata": metadata}),
            )
            .await?;
        }
        if let Some(disabled) = change.disabled.filter(|x| *x != d.disabled) {
            enclave_ingest::curation::set_document_disabled(&self.meta, vectors, &d.id, disabled)
                .await?;
            self.audit(
                actor,
                if disabled { "disable" } else { "enable" },
                Some(&from),
                Some(&d.id),
                serde_json::json!({}),
            )
            .await?;
        }
        if let Some(readers) = &change.readers {
            self.set_readers(actor, &d, readers).await?;
        }
        if let Some(target) = &change.collection {
            let c = self.collection(actor, target, Action::Write).await?;
            if c.id != d.collection_id {
                enclave_ingest::curation::move_document(&self.meta, vectors, &d.id, &c.id).await?;
                self.audit(
                    actor,
                    "move",
                    Some(&c.name),
                    Some(&d.id),
                    serde_json::json!({"from": from, "to": c.name}),
                )
                .await?;
            }
        }
        self.document(actor, &d.id, Action::Read).await
    }

    /// Takes one chunk of a document out of retrieval or back in, in both stores, and records
    /// it.
    pub async fn change_chunk(
        &self,
        actor: &Actor,
        d: &Document,
        chunk_id: &str,
        disabled: bool,
    ) -> Result<ChunkRecord> {
        let d = self.document(actor, &d.id, Action::Write).await?;
        match self.meta.chunk(chunk_id).await? {
            Some(c) if c.document_id == d.id => {}
            _ => {
                return Err(CorpusError::NotFound(format!(
                    "document {} has no chunk '{chunk_id}'",
                    d.id
                )));
            }
        }
        let c = enclave_ingest::curation::set_chunk_disabled(
            &self.meta,
            self.vectors()?,
            chunk_id,
            disabled,
        )
        .await?;
        let collection = self.collection_name(&d.collection_id).await?;
        self.audit(
            actor,
            if disabled {
                "disable_chunk"
            } else {
                "enable_chunk"
            },
            collection.as_deref(),
            Some(&d.id),
            serde_json::json!({"chunk": c.id, "ordinal": c.ordinal,
                "pages": [c.page_start, c.page_end]}),
        )
        .await?;
        Ok(c)
    }

    /// A job of a document the actor may change (any other is not found).
    pub async fn job(&self, actor: &Actor, id: &str) -> Result<enclave_storage::JobRecord> {
        let not_found = || CorpusError::NotFound(format!("job '{id}' not found"));
        actor.require_somewhere(Action::Write)?;
        let job = self.meta.job(id).await?.ok_or_else(not_found)?;
        if !actor.reads_every_document() {
            let Some(document) = &job.document_id else {
                return Err(not_found());
            };
            match self.document(actor, document, Action::Write).await {
                Ok(_) => {}
                Err(CorpusError::NotFound(_)) => return Err(not_found()),
                Err(e) => return Err(e),
            }
        }
        Ok(job)
    }

    /// Queues a dead or cancelled job again and records who did; returns the job as it is
    /// now. The caller wakes its workers.
    pub async fn retry_job(&self, actor: &Actor, id: &str) -> Result<enclave_storage::JobRecord> {
        let job = self.job(actor, id).await?;
        if !self.meta.retry_job(&job.id).await? {
            return Err(CorpusError::Conflict(format!(
                "job '{}' is {}: only dead or cancelled jobs are retried",
                job.id,
                job.status.as_str()
            )));
        }
        self.audit(
            actor,
            "retry_job",
            None,
            job.document_id.as_deref(),
            serde_json::json!({"job": job.id}),
        )
        .await?;
        self.job(actor, id).await
    }

    /// Puts a webhook delivery back in the outbox and records who did (administrators of
    /// every collection); returns it as it is now.
    pub async fn redeliver(&self, actor: &Actor, id: &str) -> Result<enclave_storage::Delivery> {
        actor.require_everywhere(Action::Administer)?;
        let not_found = || CorpusError::NotFound(format!("delivery '{id}' not found"));
        let d = self.meta.delivery(id).await?.ok_or_else(not_found)?;
        if !self.meta.redeliver(&d.id).await? {
            return Err(CorpusError::Conflict(format!(
                "delivery '{}' is {}: only failed or delivered ones are sent again",
                d.id,
                d.status.as_str()
            )));
        }
        self.audit(
            actor,
            "redeliver",
            None,
            None,
            serde_json::json!({"delivery": d.id}),
        )
        .await?;
        self.meta.delivery(id).await?.ok_or_else(not_found)
    }
}
