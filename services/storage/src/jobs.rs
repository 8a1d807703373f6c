//! The durable job queue: work (ingest an upload, re-index a document) that any number of
//! workers, in any process that reaches the metadata database, claim and run.
//!
//! A claim takes a lease (`lease_owner`, `lease_expires`); the worker renews it by heartbeat
//! while it works. A job whose lease ran out (its worker died or hung) is claimed again by the
//! next worker that asks. A failed attempt comes back after an exponential backoff until the
//! job has used `max_attempts`, then it is dead-lettered (`dead`) with its last error, where a
//! curator sees it and can retry it. PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so that
//! concurrent workers never wait on nor take the same row; SQLite has one writer at a time, so
//! its single `UPDATE ... RETURNING` is already exclusive.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::meta::{Backend, DocumentFilter, MetaStore, Timestamp, now};
use crate::{Result, StorageError};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker (possibly until `run_after`, after a failed attempt).
    Queued,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Finished (the document itself may have failed to parse: that is its outcome).
    Done,
    /// Gave up after `max_attempts`; `last_error` says why.
    Dead,
    /// Withdrawn before it ran (its document was deleted).
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "done" => Self::Done,
            "dead" => Self::Dead,
            "cancelled" => Self::Cancelled,
            other => return Err(StorageError::Corrupt(format!("job status '{other}'"))),
        })
    }
}

impl std::str::FromStr for JobStatus {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// A job to add.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What to do, for the worker (`ingest`).
    pub kind: String,
    /// The document the job is about, if any.
    pub document_id: Option<String>,
    /// What the worker needs, as JSON.
    pub payload: serde_json::Value,
    /// Attempts before the job is dead-lettered (at least 1).
    pub max_attempts: i64,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub kind: String,
    pub document_id: Option<String>,
    pub payload: serde_json::Value,
    pub status: JobStatus,
    /// Attempts started so far (a claim starts one).
    pub attempts: i64,
    pub max_attempts: i64,
    /// Not claimed before this time.
    pub run_after: Timestamp,
    /// The worker holding the lease, while running.
    pub lease_owner: Option<String>,
    pub lease_expires: Option<Timestamp>,
    /// Progress reported by the worker (pages done, pages in all; 0 when unknown).
    pub progress_done: i64,
    pub progress_total: i64,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// The worker that claimed the job last (kept after it ends: who ran it).
    pub last_worker: Option<String>,
}

/// Job counts by status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub dead: i64,
    pub cancelled: i64,
}

const JOB_COLUMNS: &str = "id, kind, document_id, payload, status, attempts, max_attempts, \
    run_after, lease_owner, lease_expires, progress_done, progress_total, last_error, \
    created_at, updated_at, finished_at, last_worker";

/// The time `after` from now, in the stored format.
pub(crate) fn later(after: Duration) -> Timestamp {
    let at = chrono::Utc::now()
        + chrono::Duration::from_std(after).unwrap_or_else(|_| chrono::Duration::days(3650));
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn job_from_row(r: &AnyRow) -> Result<JobRecord> {
    let payload: String = r.try_get("payload")?;
    let status: String = r.try_get("status")?;
    Ok(JobRecord {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        document_id: r.try_get("document_id")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StorageError::Corrupt(format!("job payload: {e}")))?,
        status: JobStatus::parse(&status)?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        run_after: r.try_get("run_after")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires: r.try_get("lease_expires")?,
        progress_done: r.try_get("progress_done")?,
        progress_total: r.try_get("progress_total")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        finished_at: r.try_get("finished_at")?,
        last_worker: r.try_get("last_worker")?,
    })
}

/// The delay before attempt `attempts + 1`: `base` doubled per failed attempt, at most an hour.
pub fn backoff(base: Duration, attempts: i64) -> Duration {
    let doublings = attempts.clamp(1, 20) as u32 - 1;
    base.saturating_mul(1u32 << doublings.min(16))
        .min(Duration::from_secs(3600))
}

impl MetaStore {
    /// Adds a job, ready to run now.
    pub async fn enqueue_job(&self, new: &NewJob) -> Result<JobRecord> {
        let id = uuid::Uuid::new_v4().to_string();
        let ts = now();
        sqlx::query(
            "INSERT INTO jobs (id, kind, document_id, payload, status, attempts, max_attempts, \
             run_after, progress_done, progress_total, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, 0, 0, $6, $6)",
        )
        .bind(&id)
        .bind(&new.kind)
        .bind(&new.document_id)
        .bind(new.payload.to_string())
        .bind(new.max_attempts.max(1))
        .bind(&ts)
        .execute(&self.pool)
        .await?;
        self.job(&id)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("job {id}")))
    }

    /// Claims the job that has waited longest among those ready (queued and due, or running
    /// with an expired lease) whose document has no other job running, for `worker`, with a
    /// lease of `lease`. Jobs whose lease expired on their last allowed attempt are
    /// dead-lettered first.
    pub async fn claim_job(&self, worker: &str, lease: Duration) -> Result<Option<JobRecord>> {
        let ts = now();
        sqlx::query(
            "UPDATE jobs SET status = 'dead', lease_owner = NULL, lease_expires = NULL, \
             last_error = COALESCE(last_error || '; ', '') || 'the worker stopped (lease \
             expired) on the last allowed attempt', finished_at = $1, updated_at = $1 \
             WHERE status = 'running' AND lease_expires < $1 AND attempts >= max_attempts",
        )
        .bind(&ts)
        .execute(&self.pool)
        .await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $1, \
             last_worker = $1, lease_expires = $2, updated_at = $3 \
             WHERE id = (SELECT j.id FROM jobs j \
             WHERE ((j.status = 'queued' AND j.run_after <= $3) \
                 OR (j.status = 'running' AND j.lease_expires < $3)) \
             AND (j.document_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs r \
                 WHERE r.document_id = j.document_id AND r.id <> j.id \
                 AND r.status = 'running' AND r.lease_expires >= $3)) \
             ORDER BY j.run_after, j.created_at, j.id LIMIT 1{lock}) \
             RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(worker)
            .bind(later(lease))
            .bind(&ts)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Renews `worker`'s lease on a job it runs. False when the worker no longer holds it (it
    /// expired and another worker claimed the job): the worker must then stop.
    pub async fn heartbeat_job(&self, id: &str, worker: &str, lease: Duration) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires = $1, updated_at = $2 \
             WHERE id = $3 AND lease_owner = $4 AND status = 'running'",
        )
        .bind(later(lease))
        .bind(now())
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records progress on a job `worker` runs (ignored if it no longer holds the lease).
    pub async fn job_progress(&self, id: &str, worker: &str, done: i64, total: i64) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET progress_done = $1, progress_total = $2, updated_at = $3 \
             WHERE id = $4 AND lease_owner = $5 AND status = 'running'",
        )
        .bind(done)
        .bind(total)
        .bind(now())
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a job `worker` runs as done, with a note on its outcome (why its document failed,
    /// say) kept in `last_error`. False if the worker had lost the lease.
    pub async fn complete_job(&self, id: &str, worker: &str, note: Option<&str>) -> Result<bool> {
        self.complete_job_with_event(id, worker, note, None).await
    }

    /// [`MetaStore::complete_job`], recording `event` in the webhook outbox in the same
    /// transaction: the event exists if and only if the job was completed.
    pub async fn complete_job_with_event(
        &self,
        id: &str,
        worker: &str,
        note: Option<&str>,
        event: Option<&crate::NewEvent>,
    ) -> Result<bool> {
        let ts = now();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires = NULL, \
             progress_done = progress_total, last_error = $1, finished_at = $2, updated_at = $2 \
             WHERE id = $3 AND lease_owner = $4 AND status = 'running'",
        )
        .bind(note)
        .bind(&ts)
        .bind(id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(event) = event {
            crate::webhooks::insert_event(&mut *tx, event).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records a failed attempt: the job is queued again after `backoff(base, attempts)`, or
    /// dead-lettered when it has used its attempts. Returns its new status (`None` if the
    /// worker had lost the lease, which leaves the job alone).
    pub async fn fail_job(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        base: Duration,
    ) -> Result<Option<JobStatus>> {
        self.fail_job_with_event(id, worker, error, base, None)
            .await
    }

    /// [`fail_job`](Self::fail_job), also recording `if_dead` in the webhook outbox, in the same
    /// transaction, when this attempt dead-letters the job.
    pub async fn fail_job_with_event(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        base: Duration,
        if_dead: Option<&crate::NewEvent>,
    ) -> Result<Option<JobStatus>> {
        let Some(job) = self.job(id).await? else {
            return Ok(None);
        };
        if job.lease_owner.as_deref() != Some(worker) || job.status != JobStatus::Running {
            return Ok(None);
        }
        let ts = now();
        let dead = job.attempts >= job.max_attempts;
        let status = if dead {
            JobStatus::Dead
        } else {
            JobStatus::Queued
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, lease_owner = NULL, lease_expires = NULL, \
             last_error = $2, run_after = $3, finished_at = $4, updated_at = $5 \
             WHERE id = $6 AND lease_owner = $7 AND status = 'running'",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(later(backoff(base, job.attempts)))
        .bind(dead.then(|| ts.clone()))
        .bind(&ts)
        .bind(id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        if let (true, Some(event)) = (dead, if_dead) {
            crate::webhooks::insert_event(&mut *tx, event).await?;
        }
        tx.commit().await?;
        Ok(Some(status))
    }

    /// Puts a dead (or cancelled) job back in the queue with its attempts reset. False if the
    /// job is not dead or cancelled.
    pub async fn retry_job(&self, id: &str) -> Result<bool> {
        let ts = now();
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts = 0, run_after = $1, \
             finished_at = NULL, updated_at = $1 \
             WHERE id = $2 AND status IN ('dead', 'cancelled')",
        )
        .bind(&ts)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives back every running job at once: for a process that is the only worker (the
    /// embedded default, whose vector store one process holds) starting after a crash. Jobs
    /// that were on their last attempt are dead-lettered. Returns how many were running.
    pub async fn release_running_jobs(&self) -> Result<u64> {
        let ts = now();
        sqlx::query(
            "UPDATE jobs SET status = 'dead', lease_owner = NULL, lease_expires = NULL, \
             last_error = COALESCE(last_error || '; ', '') || 'the worker stopped on the last \
             allowed attempt', finished_at = $1, updated_at = $1 \
             WHERE status = 'running' AND attempts >= max_attempts",
        )
        .bind(&ts)
        .execute(&self.pool)
        .await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, \
             run_after = $1, updated_at = $1 WHERE status = 'running'",
        )
        .bind(&ts)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Withdraws a document's waiting jobs (it was deleted). Returns how many.
    pub async fn cancel_document_jobs(&self, document_id: &str) -> Result<u64> {
        let ts = now();
        let done = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', finished_at = $1, updated_at = $1 \
             WHERE document_id = $2 AND status = 'queued'",
        )
        .bind(&ts)
        .bind(document_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Jobs, newest first, optionally of one status or one document, and only of documents
    /// within `scope` (its collection ids and access tokens) when given.
    pub async fn jobs(
        &self,
        status: Option<JobStatus>,
        document_id: Option<&str>,
        scope: Option<&DocumentFilter>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<JobRecord>> {
        let mut conditions = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        if let Some(s) = status {
            binds.push(s.as_str().to_string());
            conditions.push(format!("status = ${}", binds.len()));
        }
        if let Some(d) = document_id {
            binds.push(d.to_string());
            conditions.push(format!("document_id = ${}", binds.len()));
        }
        if let Some(scope) = scope {
            let (c, b) = scope_condition(scope, binds.len() + 1);
            conditions.push(c);
            binds.extend(b);
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let n = binds.len();
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs {filter} ORDER BY created_at DESC, id \
             LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.bind(limit).bind(offset).fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    /// How many jobs there are in each status (of documents within `scope`, when given).
    pub async fn job_counts(&self, scope: Option<&DocumentFilter>) -> Result<JobCounts> {
        let (condition, binds) = match scope {
            Some(scope) => scope_condition(scope, 1),
            None => ("1 = 1".to_string(), Vec::new()),
        };
        let sql =
            format!("SELECT status, COUNT(*) AS n FROM jobs WHERE {condition} GROUP BY status");
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut c = JobCounts::default();
        for r in &rows {
            let status: String = r.try_get("status")?;
            let n: i64 = r.try_get("n")?;
            match JobStatus::parse(&status)? {
                JobStatus::Queued => c.queued = n,
                JobStatus::Running => c.running = n,
                JobStatus::Done => c.done = n,
                JobStatus::Dead => c.dead = n,
                JobStatus::Cancelled => c.cancelled = n,
            }
        }
        Ok(c)
    }
}

/// SQL restricting jobs to documents of `scope`'s collections and access tokens, with its
/// parameters numbered from `$first`.
fn scope_condition(scope: &DocumentFilter, first: usize) -> (String, Vec<String>) {
    let mut binds = Vec::new();
    let mut parts = Vec::new();
    if let Some(ids) = &scope.collection_ids {
        if ids.is_empty() {
            parts.push("1 = 0".to_string());
        } else {
            let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", first + i)).collect();
            parts.push(format!("collection_id IN ({})", marks.join(", ")));
            binds.extend(ids.iter().cloned());
        }
    }
    let (access, b) =
        crate::meta::access_condition("access", first + binds.len(), &scope.access_any);
    parts.push(access);
    binds.extend(b);
    (
        format!(
            "document_id IN (SELECT id FROM documents WHERE {})",
            parts.join(" AND ")
        ),
        binds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let base = Duration::from_secs(5);
        assert_eq!(backoff(base, 1), Duration::from_secs(5));
        assert_eq!(backoff(base, 2), Duration::from_secs(10));
        assert_eq!(backoff(base, 4), Duration::from_secs(40));
        assert_eq!(backoff(base, 30), Duration::from_secs(3600));
        assert_eq!(backoff(base, 0), Duration::from_secs(5));
    }

    #[test]
    fn leases_are_stored_in_the_comparable_format() {
        let a = now();
        let b = later(Duration::from_millis(1500));
        assert_eq!(a.len(), b.len());
        assert!(b > a, "{b} > {a}");
    }
}
