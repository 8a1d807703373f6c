//! What curators change on stored documents without re-processing them: title, tags and
//! metadata, whether a document or one chunk takes part in retrieval, which collection a
//! document belongs to, and a collection's name.
//!
//! These are metadata writes only; the caller mirrors the fields that filters run on (tags,
//! collection, disabled) into the vector store's payload. Readers check `disabled` here too,
//! so a chunk a curator turned off is never shown even while the payload write is pending.

use sqlx::Row;

use crate::meta::{ChunkRecord, MetaStore, json_text, now};
use crate::{Result, StorageError};

/// Whether a sqlx error is a unique-constraint violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation()
                || d.message().contains("UNIQUE constraint failed")
                || d.code().as_deref() == Some("23505")
        }
        _ => false,
    }
}

/// SQL that holds for the document `$3` and its attachments at any depth (a message attached
/// to a message has the message as its parent).
const FAMILY: &str = "id IN (WITH RECURSIVE fam(id) AS (SELECT CAST($3 AS TEXT) UNION ALL \
     SELECT d.id FROM documents d JOIN fam ON d.parent_id = fam.id) SELECT id FROM fam)";

impl MetaStore {
    /// Sets a document's title, tags and metadata (a JSON object). Tags also go to its
    /// attachments, which inherit them at ingest. Title and metadata are remembered as set by
    /// hand: a re-index keeps them over what it reads from the content.
    pub async fn update_document_details(
        &self,
        document_id: &str,
        title: &str,
        tags: &[String],
        metadata: &serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let at = now();
        let done = sqlx::query(
            "UPDATE documents SET title = $1, tags = $2, metadata = $3, updated_at = $4, \
             curated = $6 WHERE id = $5",
        )
        .bind(title)
        .bind(json_text(&tags))
        .bind(metadata.to_string())
        .bind(&at)
        .bind(document_id)
        .bind(serde_json::json!({"title": title, "metadata": metadata}).to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(format!("document {document_id}")));
        }
        sqlx::query(&format!(
            "UPDATE documents SET tags = $1, updated_at = $2 WHERE {FAMILY} AND id <> $3"
        ))
        .bind(json_text(&tags))
        .bind(&at)
        .bind(document_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes a document and its attachments out of retrieval (`disabled`) or back in.
    pub async fn set_document_disabled(&self, document_id: &str, disabled: bool) -> Result<()> {
        let done = sqlx::query(&format!(
            "UPDATE documents SET disabled = $1, updated_at = $2 WHERE {FAMILY}"
        ))
        .bind(i64::from(disabled))
        .bind(now())
        .bind(document_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(format!("document {document_id}")));
        }
        Ok(())
    }

    /// Sets who may read these documents (a document and all its attachments, at any
    /// depth), in one transaction.
    pub async fn set_document_access(
        &self,
        document_ids: &[String],
        access: &[String],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let ts = now();
        for id in document_ids {
            let done =
                sqlx::query("UPDATE documents SET access = $1, updated_at = $2 WHERE id = $3")
                    .bind(crate::meta::json_text(&access))
                    .bind(&ts)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            if done.rows_affected() == 0 {
                return Err(StorageError::NotFound(format!("document {id}")));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets one key of a document's metadata (what the pipeline records about a version).
    pub async fn set_metadata_value(
        &self,
        document_id: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<()> {
        let Some(doc) = self.document(document_id).await? else {
            return Err(StorageError::NotFound(format!("document {document_id}")));
        };
        let mut metadata = match doc.metadata {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        metadata.insert(key.to_string(), value.clone());
        sqlx::query("UPDATE documents SET metadata = $1 WHERE id = $2")
            .bind(serde_json::Value::Object(metadata).to_string())
            .bind(document_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes one chunk out of retrieval (`disabled`) or back in; returns the chunk.
    pub async fn set_chunk_disabled(&self, chunk_id: &str, disabled: bool) -> Result<ChunkRecord> {
        let done = sqlx::query("UPDATE chunks SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(chunk_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(format!("chunk {chunk_id}")));
        }
        self.chunk(chunk_id)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("chunk {chunk_id}")))
    }

    /// One chunk by id, any version.
    pub async fn chunk(&self, chunk_id: &str) -> Result<Option<ChunkRecord>> {
        let row = sqlx::query("SELECT * FROM chunks WHERE id = $1")
            .bind(chunk_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(crate::meta::chunk_from_row).transpose()
    }

    /// Chunks of the active version that curators turned off, per document id given.
    pub async fn disabled_chunk_count(&self, document_id: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM chunks c JOIN documents d ON d.id = c.document_id \
             AND d.version = c.version WHERE c.document_id = $1 AND c.disabled <> 0",
        )
        .bind(document_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Moves a document and its attachments to another collection. [`StorageError::Conflict`]
    /// when the target already holds a document with the same source or external id.
    pub async fn move_document(&self, document_id: &str, collection_id: &str) -> Result<()> {
        let done = sqlx::query(&format!(
            "UPDATE documents SET collection_id = $1, updated_at = $2 WHERE {FAMILY}"
        ))
        .bind(collection_id)
        .bind(now())
        .bind(document_id)
        .execute(&self.pool)
        .await;
        match done {
            Ok(d) if d.rows_affected() == 0 => {
                Err(StorageError::NotFound(format!("document {document_id}")))
            }
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StorageError::Conflict(format!(
                "a document with the same source or external id as {document_id} in the target \
                 collection"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Renames a collection. [`StorageError::Conflict`] when the name is taken.
    pub async fn rename_collection(&self, id: &str, name: &str) -> Result<()> {
        let done = sqlx::query("UPDATE collections SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(&self.pool)
            .await;
        match done {
            Ok(d) if d.rows_affected() == 0 => {
                Err(StorageError::NotFound(format!("collection {id}")))
            }
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StorageError::Conflict(format!("collection '{name}'")))
            }
            Err(e) => Err(e.into()),
        }
    }
}
