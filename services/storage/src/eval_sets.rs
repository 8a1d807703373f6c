//! A collection's own evaluation set (questions with where their answers are) and the runs of
//! it, each with the settings it ran with.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::meta::{MetaStore, Timestamp};
use crate::{Result, StorageError};

/// One question of a collection's evaluation set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalCaseRecord {
    pub id: String,
    pub collection_id: String,
    pub question: String,
    /// The document that answers it (`None` when unanswerable).
    pub document_id: Option<String>,
    /// 1-based pages where the answer is.
    pub pages: Vec<i64>,
    pub unanswerable: bool,
    /// The verdict it was made from.
    pub feedback_id: Option<String>,
    pub created_at: Timestamp,
    pub created_by: String,
}

/// One run of a collection's evaluation set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalRunRecord {
    pub id: String,
    pub collection_id: String,
    pub at: Timestamp,
    pub actor: String,
    pub cases: i64,
    /// The settings it ran with.
    pub settings: serde_json::Value,
    /// Figures per retrieval mode.
    pub report: serde_json::Value,
    /// The answers' figures when the run also asked the model (a JSON object).
    pub answers: Option<serde_json::Value>,
}

fn json(r: &AnyRow, column: &str) -> Result<serde_json::Value> {
    let raw: String = r.try_get(column)?;
    serde_json::from_str(&raw).map_err(|e| StorageError::Corrupt(format!("{column}: {e}")))
}

/// A nullable JSON column.
pub(crate) fn optional_json(r: &AnyRow, column: &str) -> Result<Option<serde_json::Value>> {
    let raw: Option<String> = r.try_get(column)?;
    raw.map(|raw| {
        serde_json::from_str(&raw).map_err(|e| StorageError::Corrupt(format!("{column}: {e}")))
    })
    .transpose()
}

fn case_from_row(r: &AnyRow) -> Result<EvalCaseRecord> {
    let unanswerable: i64 = r.try_get("unanswerable")?;
    let pages: String = r.try_get("pages")?;
    Ok(EvalCaseRecord {
        id: r.try_get("id")?,
        collection_id: r.try_get("collection_id")?,
        question: r.try_get("question")?,
        document_id: r.try_get("document_id")?,
        pages: serde_json::from_str(&pages)
            .map_err(|e| StorageError::Corrupt(format!("eval case pages: {e}")))?,
        unanswerable: unanswerable != 0,
        feedback_id: r.try_get("feedback_id")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

fn run_from_row(r: &AnyRow) -> Result<EvalRunRecord> {
    Ok(EvalRunRecord {
        id: r.try_get("id")?,
        collection_id: r.try_get("collection_id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        cases: r.try_get("cases")?,
        settings: json(r, "settings")?,
        report: json(r, "report")?,
        answers: optional_json(r, "answers")?,
    })
}

impl MetaStore {
    /// Adds a case to a collection's evaluation set.
    pub async fn add_eval_case(&self, c: &EvalCaseRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO eval_cases (id, collection_id, question, document_id, pages, \
             unanswerable, feedback_id, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&c.id)
        .bind(&c.collection_id)
        .bind(&c.question)
        .bind(&c.document_id)
        .bind(serde_json::to_string(&c.pages).unwrap_or_else(|_| "[]".into()))
        .bind(i64::from(c.unanswerable))
        .bind(&c.feedback_id)
        .bind(&c.created_at)
        .bind(&c.created_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A collection's evaluation set, oldest case first.
    pub async fn eval_cases(&self, collection_id: &str) -> Result<Vec<EvalCaseRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM eval_cases WHERE collection_id = $1 ORDER BY created_at, id",
        )
        .bind(collection_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(case_from_row).collect()
    }

    /// Removes a case of a collection's set; false when it was not there.
    pub async fn delete_eval_case(&self, collection_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM eval_cases WHERE id = $1 AND collection_id = $2")
            .bind(id)
            .bind(collection_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a run of a collection's evaluation set.
    pub async fn add_eval_run(&self, r: &EvalRunRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO eval_runs (id, collection_id, at, actor, cases, settings, report, \
             answers) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&r.id)
        .bind(&r.collection_id)
        .bind(&r.at)
        .bind(&r.actor)
        .bind(r.cases)
        .bind(r.settings.to_string())
        .bind(r.report.to_string())
        .bind(r.answers.as_ref().map(serde_json::Value::to_string))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A collection's evaluation runs, newest first.
    pub async fn eval_runs(&self, collection_id: &str, limit: i64) -> Result<Vec<EvalRunRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM eval_runs WHERE collection_id = $1 ORDER BY at DESC, id LIMIT $2",
        )
        .bind(collection_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }
}
