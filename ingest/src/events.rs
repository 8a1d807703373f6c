//! Document events for the webhook outbox. The engine only records them, in the metadata
//! database and in the same transaction as the change they report; the server delivers them.
//! Whether an event is recorded is the store's setting ([`MetaStore::records_event`]), so that
//! every process that changes documents (server, workers, command line) records the same ones.

use enclave_storage::{Document, MetaStore, NewEvent};

use crate::IngestError;

/// A document's new content is ingested (a new version is active).
pub const DOCUMENT_INGESTED: &str = "document.ingested";
/// A document's content could not be ingested (`status` `failed` or `no_text`, with `error`).
pub const DOCUMENT_FAILED: &str = "document.failed";
/// A document (with its attachments) is deleted.
pub const DOCUMENT_DELETED: &str = "document.deleted";

/// The event `event` about `doc`, or `None` when the store does not record it. `status`
/// replaces the document's own status in the payload (`deleted`).
pub async fn document_event(
    meta: &MetaStore,
    event: &str,
    doc: &Document,
    status: Option<&str>,
) -> Result<Option<NewEvent>, IngestError> {
    if !meta.records_event(event) {
        return Ok(None);
    }
    let collection = meta.collection(&doc.collection_id).await?.map(|c| c.name);
    Ok(Some(NewEvent {
        event: event.to_string(),
        document_id: Some(doc.id.clone()),
        collection: collection.clone(),
        document: serde_json::json!({
            "id": doc.id,
            "collection": collection,
            "external_id": doc.external_id,
            "title": doc.title,
            "status": status.unwrap_or(&doc.status),
            "version": doc.version,
            "error": doc.error,
            "page_count": doc.page_count,
            "chunk_count": doc.chunk_count,
        }),
    }))
}
