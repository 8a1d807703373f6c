//! Curators' changes to stored documents that need no re-processing: the metadata store is
//! written first (it is the source of truth, and readers check it), then the same fields are
//! mirrored into the points' payload so that searches filter inside the vector index.
//!
//! A failure between the two writes leaves the payload behind; repeating the operation repairs
//! it. Until then a disabled chunk stays hidden (readers check the metadata store), and an
//! enabled one is merely missing from results.

use enclave_storage::{ChunkRecord, MetaStore, PayloadUpdate, StorageError, VectorStore};

use crate::IngestError;

/// Takes a document and its attachments out of retrieval, or back in.
pub async fn set_document_disabled(
    meta: &MetaStore,
    vectors: &dyn VectorStore,
    document_id: &str,
    disabled: bool,
) -> Result<(), IngestError> {
    meta.set_document_disabled(document_id, disabled).await?;
    let update = PayloadUpdate {
        disabled: Some(disabled),
        ..Default::default()
    };
    for id in family(meta, document_id).await? {
        vectors.update_payload(&id, None, &update).await?;
        if !disabled {
            // Chunks a curator turned off one by one stay off.
            let off: Vec<String> = meta
                .active_chunks(&id)
                .await?
                .into_iter()
                .filter(|c| c.disabled)
                .map(|c| c.id)
                .collect();
            let keep_off = PayloadUpdate {
                disabled: Some(true),
                ..Default::default()
            };
            vectors.update_payload(&id, Some(&off), &keep_off).await?;
        }
    }
    vectors.flush().await?;
    Ok(())
}

/// Takes one chunk out of retrieval, or back in. Enabling a chunk of a disabled document
/// leaves it out until the document is enabled.
pub async fn set_chunk_disabled(
    meta: &MetaStore,
    vectors: &dyn VectorStore,
    chunk_id: &str,
    disabled: bool,
) -> Result<ChunkRecord, IngestError> {
    let chunk = meta.set_chunk_disabled(chunk_id, disabled).await?;
    let document_disabled = meta
        .document(&chunk.document_id)
        .await?
        .is_some_and(|d| d.disabled);
    let update = PayloadUpdate {
        disabled: Some(disabled || document_disabled),
        ..Default::default()
    };
    vectors
        .update_payload(
            &chunk.document_id,
            Some(std::slice::from_ref(&chunk.id)),
            &update,
        )
        .await?;
    vectors.flush().await?;
    Ok(chunk)
}

/// Sets a document's title, tags and metadata; tags are also what searches filter on.
pub async fn update_document_details(
    meta: &MetaStore,
    vectors: &dyn VectorStore,
    document_id: &str,
    title: &str,
    tags: &[String],
    metadata: &serde_json::Value,
) -> Result<(), IngestError> {
    if title.trim().is_empty() {
        return Err(IngestError::Invalid(
            "a document's title cannot be empty".into(),
        ));
    }
    if !metadata.is_object() {
        return Err(IngestError::Invalid(
            "a document's metadata is a JSON object".into(),
        ));
    }
    meta.update_document_details(document_id, title.trim(), tags, metadata)
        .await?;
    let update = PayloadUpdate {
        tags: Some(tags.to_vec()),
        ..Default::default()
    };
    for id in family(meta, document_id).await? {
        vectors.update_payload(&id, None, &update).await?;
    }
    vectors.flush().await?;
    Ok(())
}

/// Moves a document and its attachments to another collection (by id). A document being
/// processed cannot move: its job would write to the old collection.
pub async fn move_document(
    meta: &MetaStore,
    vectors: &dyn VectorStore,
    document_id: &str,
    collection_id: &str,
) -> Result<(), IngestError> {
    let doc = meta
        .document(document_id)
        .await?
        .ok_or_else(|| StorageError::NotFound(format!("document {document_id}")))?;
    if doc.parent_id.is_some() {
        return Err(IngestError::Invalid(format!(
            "document {document_id} is an attachment: move its parent"
        )));
    }
    if doc.collection_id == collection_id {
        return Ok(());
    }
    if !doc.is_settled() {
        return Err(IngestError::Busy(format!(
            "document {document_id} is {}: move it when its processing has ended",
            doc.status
        )));
    }
    meta.move_document(document_id, collection_id).await?;
    let update = PayloadUpdate {
        collection_id: Some(collection_id.to_string()),
        ..Default::default()
    };
    for id in family(meta, document_id).await? {
        vectors.update_payload(&id, None, &update).await?;
    }
    vectors.flush().await?;
    Ok(())
}

/// The document and its attachments, at any depth (a message attached to a message).
async fn family(meta: &MetaStore, document_id: &str) -> Result<Vec<String>, IngestError> {
    let mut ids = vec![document_id.to_string()];
    let mut i = 0;
    while i < ids.len() {
        let children = meta.children(&ids[i]).await?;
        ids.extend(children.into_iter().map(|d| d.id));
        i += 1;
    }
    Ok(ids)
}

/// Sets who may read a document and its attachments (access tokens: `public`, `user:ID`,
/// `group:ID`, `key:ID`), in the metadata store and then in the points' payload, where the
/// searches filter on it.
pub async fn set_document_access(
    meta: &MetaStore,
    vectors: &dyn VectorStore,
    document_id: &str,
    access: &[String],
) -> Result<(), IngestError> {
    if access.is_empty() {
        return Err(IngestError::Invalid(
            "a document's access list cannot be empty (use \"public\")".into(),
        ));
    }
    let ids = family(meta, document_id).await?;
    meta.set_document_access(&ids, access).await?;
    let update = PayloadUpdate {
        access: Some(access.to_vec()),
        ..Default::default()
    };
    for id in ids {
        vectors.update_payload(&id, None, &update).await?;
    }
    vectors.flush().await?;
    Ok(())
}
