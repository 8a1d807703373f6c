//! Copying a metadata store into another one (the embedded SQLite file into PostgreSQL when a
//! deployment moves to the scale-out mode). Every row keeps its id; a row already in the
//! target is overwritten with the source's, so that a copy interrupted part-way is finished by
//! running it again.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::meta::{Backend, MetaStore};
use crate::{Result, StorageError};

/// Every table of the schema, parents before children, with its primary key.
pub const TABLES: [(&str, &[&str]); 22] = [
    ("collections", &["id"]),
    ("documents", &["id"]),
    ("document_versions", &["document_id", "version"]),
    ("pages", &["document_id", "version", "page_number"]),
    ("chunks", &["id"]),
    ("ingest_runs", &["id"]),
    ("users", &["id"]),
    ("api_keys", &["id"]),
    ("sessions", &["token_hash"]),
    ("jobs", &["id"]),
    ("audit_log", &["id"]),
    ("webhook_deliveries", &["id"]),
    ("groups", &["id"]),
    ("group_members", &["group_id", "member_kind", "member_id"]),
    ("grants", &["subject_kind", "subject_id", "collection_id"]),
    ("question_audit", &["id"]),
    ("login_failures", &["key"]),
    ("conversations", &["id"]),
    ("conversation_turns", &["id"]),
    ("answer_feedback", &["id"]),
    ("eval_cases", &["id"]),
    ("eval_runs", &["id"]),
];

/// Rows per insert statement (PostgreSQL takes at most 65,535 parameters in one).
const BATCH: usize = 200;

/// A column's value as read from the source.
#[derive(Debug, Clone)]
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl MetaStore {
    /// Rows of every table, in [`TABLES`] order.
    pub async fn table_counts(&self) -> Result<Vec<(&'static str, i64)>> {
        let mut counts = Vec::with_capacity(TABLES.len());
        for (table, _) in TABLES {
            let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
            counts.push((table, n));
        }
        Ok(counts)
    }

    /// The columns of `table` and whether each holds integers, as the schema declares them.
    async fn columns(&self, table: &str) -> Result<Vec<(String, bool)>> {
        let rows = match self.backend {
            Backend::Postgres => {
                sqlx::query(
                    "SELECT column_name::text AS name, data_type::text AS kind \
                     FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 \
                     ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(&self.pool)
                .await?
            }
            Backend::Sqlite => {
                sqlx::query(&format!(
                    "SELECT name, type AS kind FROM pragma_table_info('{table}') ORDER BY cid"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                let kind: String = r.try_get("kind")?;
                let kind = kind.to_ascii_lowercase();
                Ok((name, kind.contains("int")))
            })
            .collect()
    }

    /// Copies every row of every table into `target` (same schema version, both migrated),
    /// calling `progress(table, rows copied so far)` as it goes. Returns the rows copied per
    /// table.
    pub async fn copy_into(
        &self,
        target: &MetaStore,
        progress: &(dyn Fn(&str, usize) + Sync),
    ) -> Result<Vec<(&'static str, usize)>> {
        let mut copied = Vec::with_capacity(TABLES.len());
        for (table, key) in TABLES {
            let columns = target.columns(table).await?;
            if columns.is_empty() {
                return Err(StorageError::Corrupt(format!(
                    "the target database has no table '{table}'"
                )));
            }
            let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            let source_columns: Vec<String> = self
                .columns(table)
                .await?
                .into_iter()
                .map(|c| c.0)
                .collect();
            if let Some(missing) = names
                .iter()
                .find(|n| !source_columns.iter().any(|s| s == *n))
            {
                return Err(StorageError::Corrupt(format!(
                    "the source table '{table}' has no column '{missing}': its schema is older; \
                     start the source once with this version of Enclave to migrate it"
                )));
            }
            let rows = sqlx::query(&format!("SELECT {} FROM {table}", names.join(", ")))
                .fetch_all(&self.pool)
                .await?;
            let mut values: Vec<Vec<Value>> = rows
                .iter()
                .map(|row| read_row(row, &columns))
                .collect::<Result<_>>()?;
            if table == "documents" {
                parents_first(&names, &mut values)?;
            }
            let mut done = 0;
            for batch in values.chunks(BATCH) {
                target.upsert_rows(table, key, &names, batch).await?;
                done += batch.len();
                progress(table, done);
            }
            copied.push((table, done));
        }
        Ok(copied)
    }

    async fn upsert_rows(
        &self,
        table: &str,
        key: &[&str],
        names: &[&str],
        rows: &[Vec<Value>],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let width = names.len();
        let placeholders: Vec<String> = (0..rows.len())
            .map(|r| {
                let cells: Vec<String> =
                    (1..=width).map(|c| format!("${}", r * width + c)).collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        let updates: Vec<String> = names
            .iter()
            .filter(|n| !key.contains(n))
            .map(|n| format!("{n} = EXCLUDED.{n}"))
            .collect();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {} ON CONFLICT ({}) {on_conflict}",
            names.join(", "),
            placeholders.join(", "),
            key.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for row in rows {
            for v in row {
                query = match v {
                    Value::Int(i) => query.bind(*i),
                    Value::Text(t) => query.bind(t.clone()),
                };
            }
        }
        query.execute(&self.pool).await.map_err(|e| match e {
            sqlx::Error::Database(d) => StorageError::Conflict(format!(
                "copying {table}: {} (does the target hold another deployment's data?)",
                d.message()
            )),
            other => other.into(),
        })?;
        Ok(())
    }
}

fn read_row(row: &AnyRow, columns: &[(String, bool)]) -> Result<Vec<Value>> {
    columns
        .iter()
        .map(|(name, int)| {
            Ok(if *int {
                Value::Int(row.try_get(name.as_str())?)
            } else {
                Value::Text(row.try_get(name.as_str())?)
            })
        })
        .collect()
}

/// Orders document rows so that every attachment comes after the document it belongs to
/// (its `parent_id` references it).
fn parents_first(names: &[&str], rows: &mut [Vec<Value>]) -> Result<()> {
    let column = |n: &str| {
        names
            .iter()
            .position(|c| *c == n)
            .ok_or_else(|| StorageError::Corrupt(format!("documents has no column '{n}'")))
    };
    let (id, parent) = (column("id")?, column("parent_id")?);
    let text = |row: &[Value], i: usize| match &row[i] {
        Value::Text(t) => t.clone(),
        Value::Int(_) => None,
    };
    let parents: HashMap<String, Option<String>> = rows
        .iter()
        .filter_map(|r| text(r, id).map(|i| (i, text(r, parent))))
        .collect();
    let depth = |start: Option<String>| {
        let mut d = 0usize;
        let mut at = start;
        while let Some(p) = at {
            d += 1;
            if d > parents.len() {
                break; // a cycle cannot be stored, but never loop on one
            }
            at = parents.get(&p).cloned().flatten();
        }
        d
    };
    rows.sort_by_cached_key(|r| depth(text(r, parent)));
    Ok(())
}
