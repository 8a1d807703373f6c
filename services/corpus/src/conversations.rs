//! Conversations and feedback as use cases. A thread belongs to the actor that started it
//! and exists for nobody else (not found). A saved answer shows only while its reader may
//! still read every document it was made from: an answer built on a document whose access
//! was withdrawn since is withheld, in the thread, in its export and in the history a
//! follow-up is rewritten with.

use std::collections::{BTreeSet, HashMap};

use enclave_answer::{Answer, Turn};
use enclave_storage::{ConversationRecord, FeedbackRecord, TurnRecord, now};
use serde::Serialize;

use crate::Corpus;
use crate::actor::{Action, Actor};
use crate::error::{CorpusError, Result};

/// The longest conversation title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// The longest feedback comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 4000;

/// Turns one history given by a caller may hold.
pub const MAX_HISTORY_TURNS: usize = 50;

/// What [`Corpus::curates`] found out so far: collections the actor edits, documents it reads.
#[derive(Debug, Default)]
pub(crate) struct Curation {
    collections: HashMap<String, bool>,
    documents: HashMap<String, bool>,
}

/// `check()` run once per key: the verdict kept in `seen`, else the check's, then kept.
async fn once<F: std::future::Future<Output = bool>>(
    seen: &mut HashMap<String, bool>,
    key: &str,
    check: impl FnOnce() -> F,
) -> bool {
    if let Some(ok) = seen.get(key) {
        return *ok;
    }
    let ok = check().await;
    seen.insert(key.to_string(), ok);
    ok
}

/// What a withheld answer says instead of itself.
pub const WITHHELD: &str =
    "This answer was made from a document you may no longer read, so it is not shown.";

/// Where an answer is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Keep {
    /// Not kept.
    #[default]
    Nothing,
    /// In a new thread of the asker's, titled by the question.
    NewConversation,
    /// At the end of the asker's thread with this id (its turns are the history).
    Conversation(String),
}

impl Keep {
    /// Where a front end's `conversation` value keeps the answer: nothing when absent or
    /// empty, a new thread for `new`, else the thread with that id.
    pub fn named(conversation: Option<&str>) -> Self {
        match conversation.map(str::trim) {
            None | Some("") => Self::Nothing,
            Some("new") => Self::NewConversation,
            Some(id) => Self::Conversation(id.to_string()),
        }
    }
}

/// One turn as its owner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct TurnView {
    pub turn: TurnRecord,
    /// The answer, when it is shown.
    pub answer: Option<Answer>,
    /// True when the answer was made from a document the owner may no longer read.
    pub withheld: bool,
    /// The owner's verdict on it.
    pub feedback: Option<FeedbackRecord>,
}

/// A thread with its turns.
#[derive(Debug, Clone, Serialize)]
pub struct Thread {
    pub conversation: ConversationRecord,
    pub turns: Vec<TurnView>,
}

impl Thread {
    /// The history a follow-up is rewritten with: the shown turns, oldest first.
    pub fn history(&self) -> Vec<Turn> {
        self.turns
            .iter()
            .filter(|t| !t.withheld)
            .map(|t| Turn {
                question: t.turn.question.clone(),
                answer: t.turn.answer_text.clone(),
                searched: t.turn.standalone.clone(),
            })
            .collect()
    }
}

/// A reader's verdict on an answer.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub helpful: bool,
    pub comment: Option<String>,
    /// The document (id or external id) that holds the answer, and its page.
    pub right_document: Option<String>,
    pub right_page: Option<i64>,
}

/// Checks a title: not blank, at most [`MAX_TITLE_CHARS`].
fn clean_title(title: &str) -> Result<String> {
    let t = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.is_empty() {
        return Err(CorpusError::Invalid("the title is empty".into()));
    }
    if t.chars().count() > MAX_TITLE_CHARS {
        return Err(CorpusError::Invalid(format!(
            "the title has {} characters, at most {MAX_TITLE_CHARS}",
            t.chars().count()
        )));
    }
    Ok(t)
}

/// A title made from a question: its first 80 characters.
pub fn title_of(question: &str) -> String {
    let flat = question.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

fn not_found_conversation(id: &str) -> CorpusError {
    CorpusError::NotFound(format!("conversation '{id}' does not exist"))
}

/// The ids of the documents an answer was made from (its passages).
fn documents_of(answer: &Answer) -> Vec<&str> {
    let mut ids: Vec<&str> = answer
        .passages
        .iter()
        .map(|p| p.chunk.document_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl Corpus {
    /// Starts a thread of the actor's.
    pub async fn start_conversation(
        &self,
        actor: &Actor,
        title: Option<&str>,
    ) -> Result<ConversationRecord> {
        actor.require_somewhere(Action::Read)?;
        let title = match title {
            Some(t) => clean_title(t)?,
            None => String::new(),
        };
        Ok(self
            .meta
            .create_conversation(&actor.owner(), &title)
            .await?)
    }

    /// The actor's thread `id` (not found when it is someone else's).
    pub async fn conversation_record(&self, actor: &Actor, id: &str) -> Result<ConversationRecord> {
        self.meta
            .conversation(id)
            .await?
            .filter(|c| c.owner == actor.owner())
            .ok_or_else(|| not_found_conversation(id))
    }

    /// The actor's threads, most recently active first; with `text`, those whose title,
    /// questions or answers contain it.
    pub async fn conversations(
        &self,
        actor: &Actor,
        text: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<ConversationRecord>> {
        Ok(self
            .meta
            .conversations(&actor.owner(), text, limit.clamp(1, 500), offset.max(0))
            .await?)
    }

    /// The actor's thread with its turns; answers made from documents the actor may no
    /// longer read are withheld.
    pub async fn conversation(&self, actor: &Actor, id: &str) -> Result<Thread> {
        let conversation = self.conversation_record(actor, id).await?;
        let records = self.meta.turns(id).await?;
        let mut feedback: HashMap<String, FeedbackRecord> = self
            .meta
            .feedback_of_turns(id, &actor.owner())
            .await?
            .into_iter()
            .map(|f| (f.turn_id.clone(), f))
            .collect();
        let mut readable: HashMap<String, bool> = HashMap::new();
        let mut turns = Vec::with_capacity(records.len());
        for turn in records {
            let answer: Option<Answer> = serde_json::from_value(turn.answer.clone()).ok();
            let mut withheld = answer.is_none();
            if let Some(a) = &answer {
                for doc in documents_of(a) {
                    let ok = once(&mut readable, doc, || async {
                        self.document(actor, doc, Action::Read).await.is_ok()
                    })
                    .await;
                    withheld |= !ok;
                }
            }
            let mut turn = turn;
            if withheld {
                turn.answer_text = WITHHELD.to_string();
                turn.answer = serde_json::Value::Null;
            }
            turns.push(TurnView {
                feedback: feedback.remove(&turn.id),
                answer: if withheld { None } else { answer },
                withheld,
                turn,
            });
        }
        Ok(Thread {
            conversation,
            turns,
        })
    }

    /// Renames the actor's thread.
    pub async fn rename_conversation(
        &self,
        actor: &Actor,
        id: &str,
        title: &str,
    ) -> Result<ConversationRecord> {
        self.conversation_record(actor, id).await?;
        let title = clean_title(title)?;
        self.meta.rename_conversation(id, &title).await?;
        self.conversation_record(actor, id).await
    }

    /// Deletes the actor's thread and its answers (verdicts given on them stay with the
    /// curators).
    pub async fn delete_conversation(&self, actor: &Actor, id: &str) -> Result<()> {
        self.conversation_record(actor, id).await?;
        self.meta.delete_conversation(id).await?;
        Ok(())
    }

    /// The history an answer kept in `keep` is asked with: an existing thread's shown turns
    /// (the thread must be the actor's).
    pub(crate) async fn keep_history(&self, actor: &Actor, keep: &Keep) -> Result<Vec<Turn>> {
        match keep {
            Keep::Nothing | Keep::NewConversation => Ok(Vec::new()),
            Keep::Conversation(id) => Ok(self.conversation(actor, id).await?.history()),
        }
    }

    /// Saves a finished answer at the end of the owner's thread `conversation_id`, or of a
    /// new one titled by the question (`None`), titling an untitled thread by its first
    /// question.
    pub(crate) async fn save_turn(
        &self,
        owner: &str,
        conversation_id: Option<&str>,
        collections: &[String],
        answer: &Answer,
    ) -> Result<TurnRecord> {
        let conversation_id = match conversation_id {
            Some(id) => id.to_string(),
            None => {
                self.meta
                    .create_conversation(owner, &title_of(&answer.question))
                    .await?
                    .id
            }
        };
        let conversation_id = conversation_id.as_str();
        let json = serde_json::to_value(answer)
            .map_err(|e| CorpusError::Invalid(format!("the answer cannot be kept: {e}")))?;
        let turn = self
            .meta
            .add_turn(
                conversation_id,
                &answer.question,
                answer.rewrite.as_ref().map(|r| r.question.as_str()),
                &answer.text,
                answer.refused,
                collections,
                &json,
            )
            .await?;
        self.meta
            .title_untitled_conversation(conversation_id, &title_of(&answer.question))
            .await?;
        Ok(turn)
    }

    /// Records the actor's verdict on an answer of one of its threads (a second verdict
    /// replaces the first), with what the answer was made of.
    pub async fn give_feedback(
        &self,
        actor: &Actor,
        turn_id: &str,
        verdict: &Verdict,
    ) -> Result<FeedbackRecord> {
        let not_found = || CorpusError::NotFound(format!("answer '{turn_id}' does not exist"));
        let turn = self.meta.turn(turn_id).await?.ok_or_else(not_found)?;
        let thread = self
            .conversation(actor, &turn.conversation_id)
            .await
            .map_err(|_| not_found())?;
        let shown = thread
            .turns
            .into_iter()
            .find(|t| t.turn.id == turn_id)
            .ok_or_else(not_found)?;
        let Some(answer) = shown.answer else {
            return Err(CorpusError::Invalid(
                "this answer is withheld: it cannot be judged".into(),
            ));
        };
        let comment = verdict
            .comment
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        if let Some(c) = &comment
            && c.chars().count() > MAX_COMMENT_CHARS
        {
            return Err(CorpusError::Invalid(format!(
                "the comment has {} characters, at most {MAX_COMMENT_CHARS}",
                c.chars().count()
            )));
        }
        let right = match verdict
            .right_document
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            Some(d) => Some(self.document(actor, d, Action::Read).await?),
            None => None,
        };
        if let Some(p) = verdict.right_page {
            let last = right.as_ref().map_or(0, |d| d.page_count.max(1));
            if !(1..=last).contains(&p) {
                return Err(CorpusError::Invalid(format!(
                    "right_page needs right_document and must be between 1 and its last page \
                     ({last})"
                )));
            }
        }
        let right_document_id = right.map(|d| d.id);
        let record = FeedbackRecord {
            id: uuid::Uuid::new_v4().to_string(),
            turn_id: turn_id.to_string(),
            at: now(),
            actor: actor.audit_name(),
            owner: actor.owner(),
            helpful: verdict.helpful,
            comment,
            right_document_id,
            right_page: verdict.right_page,
            question: shown.turn.question.clone(),
            answer_text: answer.text.clone(),
            refused: answer.refused,
            collections: shown.turn.collections.clone(),
            retrieved: answer.passages.iter().map(|p| p.chunk.id.clone()).collect(),
            cited: answer
                .citations
                .iter()
                .filter_map(|c| answer.passages.get(c.number.saturating_sub(1)))
                .map(|p| p.chunk.id.clone())
                .collect(),
            model: answer.model.clone(),
            settings: answer.settings.as_ref().and_then(settings_json),
        };
        self.meta.record_feedback(&record).await?;
        Ok(record)
    }

    /// Verdicts for the curators, newest first (all, or only the unhelpful ones).
    /// Administrators of every collection see every verdict; an editor sees the verdicts on
    /// answers asked in collections they edit, and only those whose every retrieved and cited
    /// passage and picked source they may read (an answer quotes its passages).
    pub async fn feedback(
        &self,
        actor: &Actor,
        unhelpful_only: bool,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<FeedbackRecord>> {
        let (limit, offset) = (limit.clamp(1, 500) as usize, offset.max(0) as usize);
        if actor.require_everywhere(Action::Administer).is_ok() {
            return Ok(self
                .meta
                .feedback(unhelpful_only, limit as i64, offset as i64)
                .await?);
        }
        actor.require_somewhere(Action::Write)?;
        let mut checks = Curation::default();
        let (mut shown, mut skipped, mut read) = (Vec::new(), 0, 0);
        loop {
            let batch = self.meta.feedback(unhelpful_only, 500, read as i64).await?;
            if batch.is_empty() {
                return Ok(shown);
            }
            read += batch.len();
            for f in batch {
                if !self.curates(actor, &f, &mut checks).await? {
                    continue;
                }
                if skipped < offset {
                    skipped += 1;
                    continue;
                }
                shown.push(f);
                if shown.len() == limit {
                    return Ok(shown);
                }
            }
        }
    }

    /// Whether `actor` may see verdict `f` as one of its curators (see [`Corpus::feedback`]).
    pub(crate) async fn curates(
        &self,
        actor: &Actor,
        f: &FeedbackRecord,
        checks: &mut Curation,
    ) -> Result<bool> {
        if actor.require_everywhere(Action::Administer).is_ok() {
            return Ok(true);
        }
        // A question over every collection may have drawn from any of them.
        if f.collections.is_empty() {
            return Ok(false);
        }
        for name in &f.collections {
            let edits = once(&mut checks.collections, name, || async {
                self.collection(actor, name, Action::Write).await.is_ok()
            })
            .await;
            if !edits {
                return Ok(false);
            }
        }
        // Cited passages are among the retrieved ones: each chunk is read once.
        let chunks: BTreeSet<&String> = f.retrieved.iter().chain(&f.cited).collect();
        let mut documents: BTreeSet<String> = f.right_document_id.iter().cloned().collect();
        for chunk in chunks {
            match self.meta.chunk(chunk).await? {
                Some(c) => documents.insert(c.document_id),
                // A passage since deleted: what it said cannot be checked.
                None => return Ok(false),
            };
        }
        for doc in &documents {
            let reads = once(&mut checks.documents, doc, || async {
                self.document(actor, doc, Action::Read).await.is_ok()
            })
            .await;
            if !reads {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// An answer's settings as JSON, its decimals as written (0.05, not the f32's 0.0500000007).
pub fn settings_json(settings: &enclave_answer::AnswerSettings) -> Option<serde_json::Value> {
    serde_json::to_string(settings)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_cleaned_and_bounded() {
        assert_eq!(clean_title("  a \n b ").unwrap(), "a b");
        assert!(clean_title("   ").is_err());
        assert!(clean_title(&"x".repeat(MAX_TITLE_CHARS + 1)).is_err());
        assert_eq!(title_of("short  question?"), "short question?");
        assert_eq!(title_of(&"y".repeat(100)), format!("{}…", "y".repeat(80)));
    }
}
