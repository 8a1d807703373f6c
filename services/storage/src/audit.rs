//! The audit log of corpus changes: who did what to which collection or document, and when.
//! Entries are only ever added.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::meta::{MetaStore, Timestamp, now};
use crate::{Result, StorageError};

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub at: Timestamp,
    /// Who: `user 'alice'`, `API key 'dms'`, `command line`, ...
    pub actor: String,
    /// What: `upload`, `replace`, `delete`, `reindex`, `create_collection`, ...
    pub action: String,
    /// The collection's name, when the change concerns one.
    pub collection: Option<String>,
    pub document_id: Option<String>,
    /// Particulars (file name, content hash, settings...).
    pub detail: serde_json::Value,
}

fn entry_from_row(r: &AnyRow) -> Result<AuditEntry> {
    let detail: String = r.try_get("detail")?;
    Ok(AuditEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        collection: r.try_get("collection")?,
        document_id: r.try_get("document_id")?,
        detail: serde_json::from_str(&detail)
            .map_err(|e| StorageError::Corrupt(format!("audit detail: {e}")))?,
    })
}

impl MetaStore {
    /// Adds an entry to the audit log.
    pub async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        collection: Option<&str>,
        document_id: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, action, collection, document_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(now())
        .bind(actor)
        .bind(action)
        .bind(collection)
        .bind(document_id)
        .bind(detail.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Audit entries, newest first, optionally those of one document.
    pub async fn audit_entries(
        &self,
        document_id: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<AuditEntry>> {
        const COLUMNS: &str = "id, at, actor, action, collection, document_id, detail";
        let rows = match document_id {
            Some(d) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM audit_log WHERE document_id = $1 \
                     ORDER BY at DESC, id LIMIT $2 OFFSET $3"
                ))
                .bind(d)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM audit_log ORDER BY at DESC, id LIMIT $1 OFFSET $2"
                ))
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(entry_from_row).collect()
    }
}
