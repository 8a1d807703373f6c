//! Groups, grants, the question audit and sign-in failures. What a role allows is decided by
//! the application layer (`enclave-corpus`); this module only keeps the records.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::meta::{MetaStore, Timestamp, json_text, now};
use crate::{Result, StorageError};

/// Who a grant or a membership is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    User,
    Group,
    Key,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::Key => "key",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "user" => Ok(Self::User),
            "group" => Ok(Self::Group),
            "key" => Ok(Self::Key),
            other => Err(StorageError::Corrupt(format!("subject kind '{other}'"))),
        }
    }
}

/// A group of users and keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRecord {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
}

/// A role on one collection (`collection_id` set) or on all of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantRecord {
    pub subject_kind: SubjectKind,
    pub subject_id: String,
    /// `None`: every collection.
    pub collection_id: Option<String>,
    pub role: String,
    pub created_at: Timestamp,
}

fn group_from_row(r: &AnyRow) -> Result<GroupRecord> {
    Ok(GroupRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
    })
}

fn grant_from_row(r: &AnyRow) -> Result<GrantRecord> {
    let kind: String = r.try_get("subject_kind")?;
    let collection: String = r.try_get("collection_id")?;
    Ok(GrantRecord {
        subject_kind: SubjectKind::parse(&kind)?,
        subject_id: r.try_get("subject_id")?,
        collection_id: Some(collection).filter(|c| !c.is_empty()),
        role: r.try_get("role")?,
        created_at: r.try_get("created_at")?,
    })
}

/// One question or search, as the question audit keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuestionEntry {
    pub id: String,
    pub at: Timestamp,
    /// How the audit names the caller (`user 'alice'`).
    pub actor: String,
    /// The user's or key's id.
    pub actor_id: Option<String>,
    /// `api.search`, `api.ask`, `openai.chat`, `ui.ask`, `ui.search`, `cli.ask`, ...
    pub endpoint: String,
    /// Collection names the question was asked of (empty: all the caller may read).
    pub collections: Vec<String>,
    /// The text, when `audit.questions = "text"`.
    pub question: Option<String>,
    /// SHA-256 of the text, when `audit.questions` is `text` or `hash`.
    pub question_sha256: Option<String>,
    /// Chunk ids retrieved, best first.
    pub retrieved: Vec<String>,
    /// Chunk ids the answer cites (empty for a search).
    pub cited: Vec<String>,
    /// Whether the answer was a refusal (`None` for a search).
    pub refused: Option<bool>,
    pub took_ms: i64,
}

/// Which question audit entries to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuestionFilter {
    pub actor_id: Option<String>,
    pub endpoint: Option<String>,
    /// Only entries from this time on (RFC 3339).
    pub since: Option<String>,
    /// Only entries before this time (RFC 3339).
    pub until: Option<String>,
    /// Only questions asked of this collection (by name).
    pub collection: Option<String>,
}

fn question_from_row(r: &AnyRow) -> Result<QuestionEntry> {
    let list = |c: &str| -> Result<Vec<String>> {
        let raw: String = r.try_get(c)?;
        serde_json::from_str(&raw).map_err(|e| StorageError::Corrupt(format!("{c}: {e}")))
    };
    let refused: Option<i64> = r.try_get("refused")?;
    Ok(QuestionEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        actor_id: r.try_get("actor_id")?,
        endpoint: r.try_get("endpoint")?,
        collections: list("collections")?,
        question: r.try_get("question")?,
        question_sha256: r.try_get("question_sha256")?,
        retrieved: list("retrieved")?,
        cited: list("cited")?,
        refused: refused.map(|r| r != 0),
        took_ms: r.try_get("took_ms")?,
    })
}

impl MetaStore {
    // ------------------------------------------------------------ groups

    /// Adds a group; [`StorageError::Conflict`] if the name is taken.
    pub async fn create_group(&self, name: &str) -> Result<GroupRecord> {
        let done = sqlx::query(
            "INSERT INTO groups (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(name)
        .bind(now())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::Conflict(format!("group '{name}'")));
        }
        self.group_by_name(name)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("group '{name}'")))
    }

    /// The group with this name.
    pub async fn group_by_name(&self, name: &str) -> Result<Option<GroupRecord>> {
        let row = sqlx::query("SELECT * FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    /// Every group, by name.
    pub async fn groups(&self) -> Result<Vec<GroupRecord>> {
        let rows = sqlx::query("SELECT * FROM groups ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(group_from_row).collect()
    }

    /// Deletes a group with its memberships and grants.
    pub async fn delete_group(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM group_members WHERE group_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM grants WHERE subject_kind = 'group' AND subject_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM groups WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound(format!("group {id}")));
        }
        Ok(())
    }

    /// Puts a user or key in a group (no change if it is already in).
    pub async fn add_member(&self, group_id: &str, kind: SubjectKind, id: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO group_members (group_id, member_kind, member_id) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(group_id)
        .bind(kind.as_str())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes a user or key out of a group; whether it was in.
    pub async fn remove_member(&self, group_id: &str, kind: SubjectKind, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM group_members WHERE group_id = $1 AND member_kind = $2 AND member_id = $3",
        )
        .bind(group_id)
        .bind(kind.as_str())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The groups a user or key belongs to, by name.
    pub async fn groups_of(&self, kind: SubjectKind, id: &str) -> Result<Vec<GroupRecord>> {
        let rows = sqlx::query(
            "SELECT g.* FROM groups g JOIN group_members m ON m.group_id = g.id \
             WHERE m.member_kind = $1 AND m.member_id = $2 ORDER BY g.name",
        )
        .bind(kind.as_str())
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(group_from_row).collect()
    }

    /// The members of a group: `(kind, id)`.
    pub async fn members(&self, group_id: &str) -> Result<Vec<(SubjectKind, String)>> {
        let rows = sqlx::query(
            "SELECT member_kind, member_id FROM group_members WHERE group_id = $1 \
             ORDER BY member_kind, member_id",
        )
        .bind(group_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("member_kind")?;
                Ok((SubjectKind::parse(&kind)?, r.try_get("member_id")?))
            })
            .collect()
    }

    // ------------------------------------------------------------ grants

    /// Gives a subject a role on one collection or on all (`None`), replacing its role there.
    pub async fn set_grant(
        &self,
        kind: SubjectKind,
        subject_id: &str,
        collection_id: Option<&str>,
        role: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO grants (subject_kind, subject_id, collection_id, role, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject_kind, subject_id, collection_id) \
             DO UPDATE SET role = excluded.role",
        )
        .bind(kind.as_str())
        .bind(subject_id)
        .bind(collection_id.unwrap_or(""))
        .bind(role)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Withdraws a grant; whether there was one.
    pub async fn remove_grant(
        &self,
        kind: SubjectKind,
        subject_id: &str,
        collection_id: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM grants WHERE subject_kind = $1 AND subject_id = $2 AND collection_id = $3",
        )
        .bind(kind.as_str())
        .bind(subject_id)
        .bind(collection_id.unwrap_or(""))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The grants of a subject.
    pub async fn grants_of(&self, kind: SubjectKind, subject_id: &str) -> Result<Vec<GrantRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM grants WHERE subject_kind = $1 AND subject_id = $2 \
             ORDER BY collection_id",
        )
        .bind(kind.as_str())
        .bind(subject_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// The grants that apply to a user or key: its own and its groups'.
    pub async fn effective_grants(
        &self,
        kind: SubjectKind,
        subject_id: &str,
    ) -> Result<Vec<GrantRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM grants WHERE (subject_kind = $1 AND subject_id = $2) \
             OR (subject_kind = 'group' AND subject_id IN (SELECT group_id FROM group_members \
                 WHERE member_kind = $1 AND member_id = $2)) ORDER BY collection_id",
        )
        .bind(kind.as_str())
        .bind(subject_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// Every grant, for listings.
    pub async fn grants(&self) -> Result<Vec<GrantRecord>> {
        let rows =
            sqlx::query("SELECT * FROM grants ORDER BY subject_kind, subject_id, collection_id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(grant_from_row).collect()
    }

    // ------------------------------------------------------------ question audit

    /// Adds a question audit entry.
    pub async fn record_question(&self, e: &QuestionEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO question_audit (id, at, actor, actor_id, endpoint, collections, \
             question, question_sha256, retrieved, cited, refused, took_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&e.id)
        .bind(&e.at)
        .bind(&e.actor)
        .bind(&e.actor_id)
        .bind(&e.endpoint)
        .bind(json_text(&e.collections))
        .bind(&e.question)
        .bind(&e.question_sha256)
        .bind(json_text(&e.retrieved))
        .bind(json_text(&e.cited))
        .bind(e.refused.map(i64::from))
        .bind(e.took_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Question audit entries matching `filter`, newest first.
    pub async fn questions(
        &self,
        filter: &QuestionFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<QuestionEntry>> {
        let collection = filter
            .collection
            .as_ref()
            .map(|c| format!("%{}%", json_text(c)))
            .unwrap_or_default();
        let rows = sqlx::query(
            "SELECT * FROM question_audit WHERE ($1 = '' OR actor_id = $1) \
             AND ($2 = '' OR endpoint = $2) AND ($3 = '' OR at >= $3) \
             AND ($4 = '' OR at < $4) AND ($5 = '' OR collections LIKE $5) \
             ORDER BY at DESC, id LIMIT $6 OFFSET $7",
        )
        .bind(filter.actor_id.clone().unwrap_or_default())
        .bind(filter.endpoint.clone().unwrap_or_default())
        .bind(filter.since.clone().unwrap_or_default())
        .bind(filter.until.clone().unwrap_or_default())
        .bind(collection)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(question_from_row).collect()
    }

    /// Removes question audit entries older than `cutoff` (RFC 3339); how many.
    pub async fn purge_questions(&self, cutoff: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM question_audit WHERE at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    // ------------------------------------------------------------ sign-in failures

    /// Failed sign-ins recorded for `key` and when the last one was.
    pub async fn login_failures(&self, key: &str) -> Result<Option<(i64, String)>> {
        let row = sqlx::query("SELECT failures, last_at FROM login_failures WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("failures")?, r.try_get("last_at")?)))
            .transpose()
    }

    /// Counts one more failed sign-in for `key`.
    pub async fn record_login_failure(&self, key: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO login_failures (key, failures, last_at) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET failures = login_failures.failures + 1, \
             last_at = excluded.last_at",
        )
        .bind(key)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets the failures of `key` (after a successful sign-in).
    pub async fn clear_login_failures(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl MetaStore {
    /// Withdraws every grant on a collection (when it is deleted).
    pub async fn remove_collection_grants(&self, collection_id: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM grants WHERE collection_id = $1")
            .bind(collection_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
