//! The webhook outbox: events about documents, recorded in the metadata database by whatever
//! process changes the documents, and delivered by a server that claims them.
//!
//! Recording is an insert, in the same transaction as the change where it matters (a job's
//! completion, a document marked for deletion), so that an event exists exactly when its
//! change does. A store records only the events it was told to ([`MetaStore::with_webhook_events`]):
//! none by default. Delivery claims due rows with a lease, like the job queue: PostgreSQL claims
//! with `FOR UPDATE SKIP LOCKED`, so that several servers never send the same row at once;
//! SQLite has one writer at a time. A failed attempt comes back after an exponential backoff;
//! after the last allowed attempt the delivery is `failed` until someone redelivers it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::jobs::{backoff, later};
use crate::meta::{Backend, MetaStore, Timestamp, now};
use crate::{Result, StorageError};

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being sent, while a deliverer holds its lease).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Gave up after the allowed attempts; `last_error` and `last_status_code` say why.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            other => return Err(StorageError::Corrupt(format!("delivery status '{other}'"))),
        })
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// `document.ingested`, `document.failed`, `document.deleted`.
    pub event: String,
    pub document_id: Option<String>,
    /// The collection's name.
    pub collection: Option<String>,
    /// What the event says of the document (the `document` member of the payload).
    pub document: serde_json::Value,
}

/// One event and its delivery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// Also the `id` of the payload and the `X-Enclave-Delivery` header.
    pub id: String,
    pub event: String,
    pub document_id: Option<String>,
    pub collection: Option<String>,
    /// The JSON body sent, exactly as signed: `{"id", "event", "occurred_at", "document"}`.
    pub payload: String,
    pub status: DeliveryStatus,
    /// Attempts started so far (a claim starts one).
    pub attempts: i64,
    /// Not tried before this time.
    pub next_attempt_at: Timestamp,
    /// The deliverer sending it, while one holds its lease.
    pub lease_owner: Option<String>,
    pub lease_expires: Option<Timestamp>,
    /// Why the last attempt failed (connection error, time-out, or the answer's status).
    pub last_error: Option<String>,
    /// The HTTP status of the last answer, if the receiver answered.
    pub last_status_code: Option<i64>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// Deliveries by status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeliveryCounts {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

const DELIVERY_COLUMNS: &str = "id, event, document_id, collection, payload, status, attempts, \
    next_attempt_at, lease_owner, lease_expires, last_error, last_status_code, created_at, \
    delivered_at";

fn delivery_from_row(r: &AnyRow) -> Result<Delivery> {
    let status: String = r.try_get("status")?;
    Ok(Delivery {
        id: r.try_get("id")?,
        event: r.try_get("event")?,
        document_id: r.try_get("document_id")?,
        collection: r.try_get("collection")?,
        payload: r.try_get("payload")?,
        status: DeliveryStatus::parse(&status)?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires: r.try_get("lease_expires")?,
        last_error: r.try_get("last_error")?,
        last_status_code: r.try_get("last_status_code")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
    })
}

/// Inserts an event's delivery through `executor` (the pool, or the transaction of the change
/// it reports). Returns its id.
pub(crate) async fn insert_event<'e, E>(executor: E, new: &NewEvent) -> Result<String>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let id = uuid::Uuid::new_v4().to_string();
    let ts = now();
    let payload = serde_json::json!({
        "id": id,
        "event": new.event,
        "occurred_at": ts,
        "document": new.document,
    });
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, event, document_id, collection, payload, status, \
         attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
    )
    .bind(&id)
    .bind(&new.event)
    .bind(&new.document_id)
    .bind(&new.collection)
    .bind(payload.to_string())
    .bind(&ts)
    .execute(executor)
    .await?;
    Ok(id)
}

impl MetaStore {
    /// This store records `events` (names such as `document.ingested`) in the webhook outbox
    /// from now on; an empty list records none, the default.
    pub fn with_webhook_events(mut self, events: &[String]) -> Self {
        self.webhook_events = Arc::new(events.to_vec());
        self
    }

    /// Whether this store records `event` in the webhook outbox.
    pub fn records_event(&self, event: &str) -> bool {
        self.webhook_events.iter().any(|e| e == event)
    }

    /// Adds an event to the outbox, due now, whatever [`MetaStore::records_event`] says (the
    /// caller decides). Returns the delivery's id.
    pub async fn record_event(&self, new: &NewEvent) -> Result<String> {
        insert_event(&self.pool, new).await
    }

    /// Claims up to `limit` due deliveries for `worker` with a lease of `lease`, oldest first;
    /// each claim starts an attempt. Deliveries whose lease ran out on their last allowed
    /// attempt (`max_attempts`: their deliverer stopped) are given up first.
    pub async fn claim_deliveries(
        &self,
        worker: &str,
        lease: Duration,
        max_attempts: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let ts = now();
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', lease_owner = NULL, \
             lease_expires = NULL, last_error = COALESCE(last_error || '; ', '') || \
             'the deliverer stopped (lease expired) on the last allowed attempt' \
             WHERE status = 'pending' AND lease_expires < $1 AND attempts >= $2",
        )
        .bind(&ts)
        .bind(max_attempts)
        .execute(&self.pool)
        .await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, lease_owner = $1, \
             lease_expires = $2 \
             WHERE id IN (SELECT d.id FROM webhook_deliveries d \
             WHERE d.status = 'pending' AND d.next_attempt_at <= $3 \
             AND (d.lease_expires IS NULL OR d.lease_expires < $3) \
             ORDER BY d.next_attempt_at, d.created_at, d.id LIMIT $4{lock}) \
             RETURNING {DELIVERY_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(worker)
            .bind(later(lease))
            .bind(&ts)
            .bind(limit.max(1))
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>>>()?;
        claimed.sort_by(|a, b| {
            (&a.next_attempt_at, &a.created_at).cmp(&(&b.next_attempt_at, &b.created_at))
        });
        Ok(claimed)
    }

    /// Records that the receiver accepted a delivery `worker` claimed. False if the worker had
    /// lost its lease (the delivery is another's now).
    pub async fn delivery_succeeded(
        &self,
        id: &str,
        worker: &str,
        status_code: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'delivered', lease_owner = NULL, \
             lease_expires = NULL, last_status_code = $1, last_error = NULL, delivered_at = $2 \
             WHERE id = $3 AND lease_owner = $4 AND status = 'pending'",
        )
        .bind(status_code)
        .bind(now())
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failed attempt at `delivery` (as claimed by `worker`): tried again after
    /// `backoff(base, attempts)`, or given up (`failed`) once it has had `max_attempts`.
    /// Returns its new status, `None` if the worker had lost its lease.
    pub async fn delivery_failed(
        &self,
        delivery: &Delivery,
        worker: &str,
        error: &str,
        status_code: Option<i64>,
        max_attempts: i64,
        base: Duration,
    ) -> Result<Option<DeliveryStatus>> {
        let status = if delivery.attempts >= max_attempts {
            DeliveryStatus::Failed
        } else {
            DeliveryStatus::Pending
        };
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, lease_owner = NULL, lease_expires = NULL, \
             last_error = $2, last_status_code = $3, next_attempt_at = $4 \
             WHERE id = $5 AND lease_owner = $6 AND status = 'pending' AND attempts = $7",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(status_code)
        .bind(later(backoff(base, delivery.attempts)))
        .bind(&delivery.id)
        .bind(worker)
        .bind(delivery.attempts)
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() == 1).then_some(status))
    }

    /// Sends a delivery again: a failed (or delivered) one becomes pending, due now, with its
    /// attempts reset. False if it is pending already (or does not exist).
    pub async fn redeliver(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, \
             next_attempt_at = $1, lease_owner = NULL, lease_expires = NULL, delivered_at = NULL \
             WHERE id = $2 AND status IN ('failed', 'delivered')",
        )
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One delivery.
    pub async fn delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    /// Deliveries, newest first, optionally of one status.
    pub async fn deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Delivery>> {
        let rows = match status {
            Some(s) => {
                sqlx::query(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE status = $1 \
                     ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
                ))
                .bind(s.as_str())
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                     ORDER BY created_at DESC, id LIMIT $1 OFFSET $2"
                ))
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(delivery_from_row).collect()
    }

    /// How many deliveries there are in each status.
    pub async fn delivery_counts(&self) -> Result<DeliveryCounts> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        let mut c = DeliveryCounts::default();
        for r in &rows {
            let status: String = r.try_get("status")?;
            let n: i64 = r.try_get("n")?;
            match DeliveryStatus::parse(&status)? {
                DeliveryStatus::Pending => c.pending = n,
                DeliveryStatus::Delivered => c.delivered = n,
                DeliveryStatus::Failed => c.failed = n,
            }
        }
        Ok(c)
    }
}
