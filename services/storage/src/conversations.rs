//! Conversations (threads of questions and answers, each seen only by its owner) and readers'
//! feedback on answers.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::meta::{MetaStore, Timestamp, now};
use crate::{Result, StorageError};

/// A thread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationRecord {
    pub id: String,
    /// `user:ID`, `key:ID` or `local`.
    pub owner: String,
    pub title: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Questions asked in it.
    pub turns: i64,
}

/// One question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnRecord {
    pub id: String,
    pub conversation_id: String,
    /// 1 for the first question.
    pub position: i64,
    pub at: Timestamp,
    pub question: String,
    /// What was searched and answered, when the question was a follow-up.
    pub standalone: Option<String>,
    pub answer_text: String,
    pub refused: bool,
    pub collections: Vec<String>,
    /// The whole answer (citations, passages, rewrite, timings, model).
    pub answer: serde_json::Value,
}

/// A reader's verdict on an answer, with what the answer was made of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackRecord {
    pub id: String,
    pub turn_id: String,
    pub at: Timestamp,
    /// Who gave it, as the audit names them.
    pub actor: String,
    /// The owner token of whoever gave it (one verdict per answer and owner).
    pub owner: String,
    pub helpful: bool,
    pub comment: Option<String>,
    /// The source the reader says holds the answer.
    pub right_document_id: Option<String>,
    pub right_page: Option<i64>,
    pub question: String,
    pub answer_text: String,
    pub refused: bool,
    pub collections: Vec<String>,
    /// Chunk ids retrieved, best first, and cited.
    pub retrieved: Vec<String>,
    pub cited: Vec<String>,
    pub model: String,
    /// The settings the answer was made under (a JSON object; `None` for verdicts recorded
    /// before they were kept).
    pub settings: Option<serde_json::Value>,
}

fn json_list(r: &AnyRow, column: &str) -> Result<Vec<String>> {
    let raw: String = r.try_get(column)?;
    serde_json::from_str(&raw).map_err(|e| StorageError::Corrupt(format!("{column}: {e}")))
}

fn list_text(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

fn conversation_from_row(r: &AnyRow) -> Result<ConversationRecord> {
    Ok(ConversationRecord {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        title: r.try_get("title")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        turns: r.try_get("turns")?,
    })
}

fn turn_from_row(r: &AnyRow) -> Result<TurnRecord> {
    let answer: String = r.try_get("answer")?;
    let refused: i64 = r.try_get("refused")?;
    Ok(TurnRecord {
        id: r.try_get("id")?,
        conversation_id: r.try_get("conversation_id")?,
        position: r.try_get("position")?,
        at: r.try_get("at")?,
        question: r.try_get("question")?,
        standalone: r.try_get("standalone")?,
        answer_text: r.try_get("answer_text")?,
        refused: refused != 0,
        collections: json_list(r, "collections")?,
        answer: serde_json::from_str(&answer)
            .map_err(|e| StorageError::Corrupt(format!("turn answer: {e}")))?,
    })
}

fn feedback_from_row(r: &AnyRow) -> Result<FeedbackRecord> {
    let helpful: i64 = r.try_get("helpful")?;
    let refused: i64 = r.try_get("refused")?;
    Ok(FeedbackRecord {
        id: r.try_get("id")?,
        turn_id: r.try_get("turn_id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        owner: r.try_get("owner")?,
        helpful: helpful != 0,
        comment: r.try_get("comment")?,
        right_document_id: r.try_get("right_document_id")?,
        right_page: r.try_get("right_page")?,
        question: r.try_get("question")?,
        answer_text: r.try_get("answer_text")?,
        refused: refused != 0,
        collections: json_list(r, "collections")?,
        retrieved: json_list(r, "retrieved")?,
        cited: json_list(r, "cited")?,
        model: r.try_get("model")?,
        settings: crate::eval_sets::optional_json(r, "settings")?,
    })
}

const CONVERSATION_COLUMNS: &str = "c.id, c.owner, c.title, c.created_at, c.updated_at, \
     (SELECT COUNT(*) FROM conversation_turns t WHERE t.conversation_id = c.id) AS turns";

/// `%text%` for a case-insensitive LIKE, with the pattern characters of `text` escaped.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

impl MetaStore {
    /// Starts a thread.
    pub async fn create_conversation(
        &self,
        owner: &str,
        title: &str,
    ) -> Result<ConversationRecord> {
        let id = uuid::Uuid::new_v4().to_string();
        let at = now();
        sqlx::query(
            "INSERT INTO conversations (id, owner, title, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&id)
        .bind(owner)
        .bind(title)
        .bind(&at)
        .execute(&self.pool)
        .await?;
        Ok(ConversationRecord {
            id,
            owner: owner.to_string(),
            title: title.to_string(),
            created_at: at.clone(),
            updated_at: at,
            turns: 0,
        })
    }

    /// A thread by id, whoever owns it.
    pub async fn conversation(&self, id: &str) -> Result<Option<ConversationRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(conversation_from_row).transpose()
    }

    /// An owner's threads, most recently active first; with `text`, those whose title,
    /// questions or answers contain it (any case).
    pub async fn conversations(
        &self,
        owner: &str,
        text: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<ConversationRecord>> {
        let pattern = text
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(like_pattern)
            .unwrap_or_default();
        let rows = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.owner = $1 \
             AND ($2 = '' OR LOWER(c.title) LIKE $2 ESCAPE '\\' OR EXISTS (\
               SELECT 1 FROM conversation_turns t WHERE t.conversation_id = c.id \
               AND (LOWER(t.question) LIKE $2 ESCAPE '\\' \
                 OR LOWER(t.answer_text) LIKE $2 ESCAPE '\\'))) \
             ORDER BY c.updated_at DESC, c.id LIMIT $3 OFFSET $4"
        ))
        .bind(owner)
        .bind(pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(conversation_from_row).collect()
    }

    /// Renames a thread; false when it does not exist.
    pub async fn rename_conversation(&self, id: &str, title: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE conversations SET title = $1 WHERE id = $2")
            .bind(title)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Titles a thread that has no title yet (one started without one).
    pub async fn title_untitled_conversation(&self, id: &str, title: &str) -> Result<()> {
        sqlx::query("UPDATE conversations SET title = $1 WHERE id = $2 AND title = ''")
            .bind(title)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a thread and its turns (feedback given on them stays); false when it did not
    /// exist.
    pub async fn delete_conversation(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM conversation_turns WHERE conversation_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM conversations WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// The turns of a thread, in order.
    pub async fn turns(&self, conversation_id: &str) -> Result<Vec<TurnRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM conversation_turns WHERE conversation_id = $1 ORDER BY position",
        )
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(turn_from_row).collect()
    }

    /// One turn by id.
    pub async fn turn(&self, id: &str) -> Result<Option<TurnRecord>> {
        let row = sqlx::query("SELECT * FROM conversation_turns WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(turn_from_row).transpose()
    }

    /// Adds a turn at the end of a thread (its position is the next one, whoever else adds
    /// a turn at the same time) and marks the thread active; the turn as stored.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_turn(
        &self,
        conversation_id: &str,
        question: &str,
        standalone: Option<&str>,
        answer_text: &str,
        refused: bool,
        collections: &[String],
        answer: &serde_json::Value,
    ) -> Result<TurnRecord> {
        let id = uuid::Uuid::new_v4().to_string();
        let at = now();
        // Two answers finishing together race for the same position: the unique key refuses
        // the second, which takes the next one.
        for _ in 0..5 {
            let mut tx = self.pool.begin().await?;
            let next: i64 = sqlx::query(
                "SELECT COALESCE(MAX(position), 0) + 1 AS next FROM conversation_turns \
                 WHERE conversation_id = $1",
            )
            .bind(conversation_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("next")?;
            let inserted = sqlx::query(
                "INSERT INTO conversation_turns (id, conversation_id, position, at, question, \
                 standalone, answer_text, refused, collections, answer) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&id)
            .bind(conversation_id)
            .bind(next)
            .bind(&at)
            .bind(question)
            .bind(standalone)
            .bind(answer_text)
            .bind(i64::from(refused))
            .bind(list_text(collections))
            .bind(answer.to_string())
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {
                    sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
                        .bind(&at)
                        .bind(conversation_id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Ok(TurnRecord {
                        id,
                        conversation_id: conversation_id.to_string(),
                        position: next,
                        at,
                        question: question.to_string(),
                        standalone: standalone.map(str::to_string),
                        answer_text: answer_text.to_string(),
                        refused,
                        collections: collections.to_vec(),
                        answer: answer.clone(),
                    });
                }
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    tx.rollback().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StorageError::Conflict(format!(
            "could not add a turn to conversation {conversation_id}: too many at once"
        )))
    }

    /// Removes threads not active since `cutoff` (RFC 3339); how many.
    pub async fn purge_conversations(&self, cutoff: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM conversation_turns WHERE conversation_id IN \
             (SELECT id FROM conversations WHERE updated_at < $1)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM conversations WHERE updated_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    // ------------------------------------------------------------ feedback

    /// Records a verdict; a second one by the same owner on the same answer replaces the
    /// first.
    pub async fn record_feedback(&self, f: &FeedbackRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM answer_feedback WHERE turn_id = $1 AND owner = $2")
            .bind(&f.turn_id)
            .bind(&f.owner)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO answer_feedback (id, turn_id, at, actor, owner, helpful, comment, \
             right_document_id, right_page, question, answer_text, refused, collections, \
             retrieved, cited, model, settings) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17)",
        )
        .bind(&f.id)
        .bind(&f.turn_id)
        .bind(&f.at)
        .bind(&f.actor)
        .bind(&f.owner)
        .bind(i64::from(f.helpful))
        .bind(&f.comment)
        .bind(&f.right_document_id)
        .bind(f.right_page)
        .bind(&f.question)
        .bind(&f.answer_text)
        .bind(i64::from(f.refused))
        .bind(list_text(&f.collections))
        .bind(list_text(&f.retrieved))
        .bind(list_text(&f.cited))
        .bind(&f.model)
        .bind(f.settings.as_ref().map(serde_json::Value::to_string))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One verdict by id.
    pub async fn feedback_entry(&self, id: &str) -> Result<Option<FeedbackRecord>> {
        let row = sqlx::query("SELECT * FROM answer_feedback WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(feedback_from_row).transpose()
    }

    /// Verdicts, newest first: all, or only the unhelpful ones.
    pub async fn feedback(
        &self,
        unhelpful_only: bool,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<FeedbackRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM answer_feedback WHERE ($1 = 0 OR helpful = 0) \
             ORDER BY at DESC, id LIMIT $2 OFFSET $3",
        )
        .bind(i64::from(unhelpful_only))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(feedback_from_row).collect()
    }

    /// The verdicts given on a thread's answers by its owner, by turn id.
    pub async fn feedback_of_turns(
        &self,
        conversation_id: &str,
        owner: &str,
    ) -> Result<Vec<FeedbackRecord>> {
        let rows = sqlx::query(
            "SELECT f.* FROM answer_feedback f JOIN conversation_turns t ON t.id = f.turn_id \
             WHERE t.conversation_id = $1 AND f.owner = $2",
        )
        .bind(conversation_id)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(feedback_from_row).collect()
    }
}
