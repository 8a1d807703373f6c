//! The question audit: who asked or searched what, through which endpoint, what was retrieved
//! and cited, and whether the answer was a refusal.

use enclave_settings::{AuditSettings, QuestionRecord};
use enclave_storage::{MetaStore, QuestionEntry, QuestionFilter, now};
use sha2::{Digest, Sha256};

use crate::actor::{Action, Actor};
use crate::error::{CorpusError, Result};

/// Records questions as the settings say, and reads them back for administrators.
#[derive(Clone)]
pub struct QuestionRecorder {
    meta: MetaStore,
    settings: AuditSettings,
}

/// One question or search to record.
#[derive(Debug, Clone, Default)]
pub struct Asked<'a> {
    /// `api.search`, `api.ask`, `openai.chat`, `ui.ask`, `ui.search`, `admin.retrieval`...
    pub endpoint: &'a str,
    pub question: &'a str,
    pub collections: &'a [String],
    /// Chunk ids retrieved, best first.
    pub retrieved: Vec<String>,
    /// Chunk ids cited by the answer.
    pub cited: Vec<String>,
    /// For answers: whether it refused.
    pub refused: Option<bool>,
    pub took_ms: f64,
}

impl QuestionRecorder {
    pub fn new(meta: MetaStore, settings: AuditSettings) -> Self {
        Self { meta, settings }
    }

    /// Adds an entry for a question of `actor`.
    pub async fn record(&self, actor: &Actor, asked: Asked<'_>) -> Result<()> {
        let digest = hex::encode(Sha256::digest(asked.question.as_bytes()));
        let (question, question_sha256) = match self.settings.questions {
            QuestionRecord::Text => (Some(asked.question.to_string()), Some(digest)),
            QuestionRecord::Hash => (None, Some(digest)),
            QuestionRecord::None => (None, None),
        };
        self.meta
            .record_question(&QuestionEntry {
                id: uuid::Uuid::new_v4().to_string(),
                at: now(),
                actor: actor.audit_name(),
                actor_id: actor.id().map(str::to_string),
                endpoint: asked.endpoint.to_string(),
                collections: asked.collections.to_vec(),
                question,
                question_sha256,
                retrieved: asked.retrieved,
                cited: asked.cited,
                refused: asked.refused,
                took_ms: asked.took_ms.round() as i64,
            })
            .await?;
        Ok(())
    }

    /// Entries matching `filter`, newest first; administrators of every collection only
    /// (questions name documents of every collection).
    pub async fn list(
        &self,
        actor: &Actor,
        filter: &QuestionFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<QuestionEntry>> {
        actor.require_everywhere(Action::Administer)?;
        for (what, t) in [("since", &filter.since), ("until", &filter.until)] {
            if let Some(t) = t
                && chrono::DateTime::parse_from_rfc3339(t).is_err()
            {
                return Err(CorpusError::Invalid(format!(
                    "{what} = '{t}' is not an RFC 3339 time (2026-01-31T00:00:00Z)"
                )));
            }
        }
        Ok(self.meta.questions(filter, limit, offset).await?)
    }

    /// Removes conversations not asked in for longer than their retention; how many.
    pub async fn purge_expired_conversations(&self) -> Result<u64> {
        if self.settings.conversation_retention_days == 0 {
            return Ok(0);
        }
        let cutoff = chrono::Utc::now()
            - chrono::Duration::days(self.settings.conversation_retention_days as i64);
        let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Ok(self.meta.purge_conversations(&cutoff).await?)
    }

    /// Removes entries older than the retention; how many.
    pub async fn purge_expired(&self) -> Result<u64> {
        if self.settings.question_retention_days == 0 {
            return Ok(0);
        }
        let cutoff = chrono::Utc::now()
            - chrono::Duration::days(self.settings.question_retention_days as i64);
        let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Ok(self.meta.purge_questions(&cutoff).await?)
    }
}
