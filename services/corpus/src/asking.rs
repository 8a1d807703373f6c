//! Search and ask as use cases: what the actor may read becomes filters inside the vector
//! search (so the model's prompt only ever holds passages the actor may read), the search or
//! answer runs, and the question audit records it, whichever front end asked.

use std::time::Instant;

use enclave_answer::{Answer, AskEvent, AskRequest, Asker, Turn};
use enclave_retrieval::{Retriever, Scope, SearchRequest, SearchResults};
use tokio::sync::mpsc;

use crate::Corpus;
use crate::actor::Actor;
use crate::collection_settings::parse_mode;
use crate::conversations::{Keep, MAX_HISTORY_TURNS};
use crate::error::{CorpusError, Result};
use crate::questions::{Asked, QuestionRecorder};
use enclave_storage::TurnRecord;

/// The longest earlier answer a caller may give in a history, in characters.
pub const MAX_HISTORY_ANSWER_CHARS: usize = 20_000;

/// The longest question or query, in characters.
pub const MAX_QUESTION_CHARS: usize = 4000;

/// The most passages one search returns.
pub const MAX_SEARCH_LIMIT: usize = 100;

/// Checks the length of a question or query.
pub fn check_question(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(CorpusError::Invalid("the question is empty".into()));
    }
    let n = text.chars().count();
    if n > MAX_QUESTION_CHARS {
        return Err(CorpusError::Invalid(format!(
            "the question has {n} characters, at most {MAX_QUESTION_CHARS}"
        )));
    }
    Ok(())
}

/// A question or a query as a front end receives it.
#[derive(Debug, Clone, Default)]
pub struct Question {
    pub text: String,
    /// Collection names (empty: every collection the actor reads).
    pub collections: Vec<String>,
    /// `hybrid`, `dense` or `bm25` (`None`: the collections' own setting, else hybrid).
    pub mode: Option<String>,
    /// Which documents the passages may come from (types, tags, dates, authors).
    pub scope: Scope,
    /// Earlier turns given by the caller (a stateless conversation), oldest first.
    pub history: Vec<Turn>,
    /// Where the answer is kept (a thread's turns are its history).
    pub keep: Keep,
}

/// Checks a history given by a caller.
fn check_history(history: &[Turn]) -> Result<()> {
    if history.len() > MAX_HISTORY_TURNS {
        return Err(CorpusError::Invalid(format!(
            "the history has {} turns, at most {MAX_HISTORY_TURNS}",
            history.len()
        )));
    }
    for (i, t) in history.iter().enumerate() {
        check_question(&t.question)
            .map_err(|e| CorpusError::Invalid(format!("history turn {}: {e}", i + 1)))?;
        let n = t.answer.chars().count();
        if n > MAX_HISTORY_ANSWER_CHARS {
            return Err(CorpusError::Invalid(format!(
                "history turn {}: the answer has {n} characters, at most \
                 {MAX_HISTORY_ANSWER_CHARS}",
                i + 1
            )));
        }
    }
    Ok(())
}

/// A search: a question, how many passages, and whether to widen them with their neighbours.
#[derive(Debug, Clone)]
pub struct Query {
    pub question: Question,
    /// 1 to [`MAX_SEARCH_LIMIT`].
    pub limit: usize,
    pub expand_neighbours: bool,
}

/// An answer on its way: the events of [`Asker::ask`], recorded in the question audit when the
/// answer is done.
pub struct Answering {
    events: mpsc::Receiver<AskEvent>,
    record: Option<Recording>,
    keeping: Option<Keeping>,
    kept: Option<TurnRecord>,
}

/// Where the finished answer is saved.
struct Keeping {
    corpus: Corpus,
    owner: String,
    /// `None`: a new thread, made when the answer is done (a failed answer leaves none).
    conversation_id: Option<String>,
    collections: Vec<String>,
}

struct Recording {
    recorder: QuestionRecorder,
    actor: Actor,
    endpoint: String,
    collections: Vec<String>,
    started: Instant,
}

impl Answering {
    /// The next event (`None` when the stream ends); the finished answer is recorded and
    /// kept in its thread before it is handed on.
    pub async fn next(&mut self) -> Option<AskEvent> {
        let event = self.events.recv().await?;
        if let AskEvent::Done(answer) = &event {
            if let Some(r) = self.record.take() {
                let took = r.started.elapsed().as_secs_f64() * 1000.0;
                r.recorder
                    .answered(&r.actor, &r.endpoint, &r.collections, answer, took)
                    .await;
            }
            if let Some(k) = self.keeping.take() {
                match k
                    .corpus
                    .save_turn(
                        &k.owner,
                        k.conversation_id.as_deref(),
                        &k.collections,
                        answer,
                    )
                    .await
                {
                    Ok(turn) => self.kept = Some(turn),
                    Err(e) => tracing::warn!(
                        error = %e,
                        conversation = ?k.conversation_id,
                        "cannot keep an answer in its conversation"
                    ),
                }
            }
        }
        Some(event)
    }

    /// The thread the answer goes to, when it is kept (a new thread has its id once the
    /// answer is done).
    pub fn conversation_id(&self) -> Option<&str> {
        self.kept
            .as_ref()
            .map(|t| t.conversation_id.as_str())
            .or(self
                .keeping
                .as_ref()
                .and_then(|k| k.conversation_id.as_deref()))
    }

    /// The answer as kept in its thread, once it is done.
    pub fn kept(&self) -> Option<&TurnRecord> {
        self.kept.as_ref()
    }
}

impl QuestionRecorder {
    /// Records a search (a failure to record is logged, not shown).
    pub async fn searched(
        &self,
        actor: &Actor,
        endpoint: &str,
        query: &str,
        collections: &[String],
        results: &SearchResults,
    ) {
        let asked = Asked {
            endpoint,
            question: query,
            collections,
            retrieved: results
                .passages
                .iter()
                .map(|p| p.chunk.id.clone())
                .collect(),
            cited: Vec::new(),
            refused: None,
            took_ms: results.took_ms,
        };
        if let Err(e) = self.record(actor, asked).await {
            tracing::warn!(error = %e, "cannot record a search in the question audit");
        }
    }

    /// Records an answer with the chunks it cited (a failure to record is logged, not shown).
    pub async fn answered(
        &self,
        actor: &Actor,
        endpoint: &str,
        collections: &[String],
        answer: &Answer,
        took_ms: f64,
    ) {
        let asked = Asked {
            endpoint,
            question: &answer.question,
            collections,
            retrieved: answer.passages.iter().map(|p| p.chunk.id.clone()).collect(),
            cited: answer
                .citations
                .iter()
                .filter_map(|c| answer.passages.get(c.number.saturating_sub(1)))
                .map(|p| p.chunk.id.clone())
                .collect(),
            refused: Some(answer.refused),
            took_ms,
        };
        if let Err(e) = self.record(actor, asked).await {
            tracing::warn!(error = %e, "cannot record an answer in the question audit");
        }
    }
}

impl Corpus {
    /// A retrieval request for the actor's query: the collections named must be readable
    /// (else not found), and collections and access lists become filters inside the search.
    pub async fn search_request(&self, actor: &Actor, query: &Query) -> Result<SearchRequest> {
        if !(1..=MAX_SEARCH_LIMIT).contains(&query.limit) {
            return Err(CorpusError::Invalid(format!(
                "limit must be between 1 and {MAX_SEARCH_LIMIT}"
            )));
        }
        let q = &query.question;
        check_question(&q.text)?;
        let allowed = self.search_scope(actor, &q.collections).await?;
        Ok(SearchRequest {
            query: q.text.clone(),
            collections: allowed.collections,
            mode: parse_mode(q.mode.as_deref())?,
            limit: query.limit,
            scope: q.scope.clone(),
            access: allowed.access,
            expand_neighbours: query.expand_neighbours,
            fusion: None,
            expansion: None,
        })
    }

    /// Searches what the actor may read and records the search as coming from `endpoint`.
    pub async fn search(
        &self,
        actor: &Actor,
        retriever: &Retriever,
        query: &Query,
        endpoint: &str,
    ) -> Result<SearchResults> {
        let request = self.search_request(actor, query).await?;
        let results = retriever.search(&request).await?;
        if let Some(questions) = &self.questions {
            questions
                .searched(
                    actor,
                    endpoint,
                    &query.question.text,
                    &query.question.collections,
                    &results,
                )
                .await;
        }
        Ok(results)
    }

    /// An answer request for the actor's question, restricted like [`Corpus::search_request`].
    pub async fn ask_request(&self, actor: &Actor, question: &Question) -> Result<AskRequest> {
        check_question(&question.text)?;
        check_history(&question.history)?;
        if !question.history.is_empty() && question.keep != Keep::Nothing {
            return Err(CorpusError::Invalid(
                "give either a history or a conversation, not both".into(),
            ));
        }
        let allowed = self.search_scope(actor, &question.collections).await?;
        Ok(AskRequest {
            question: question.text.trim().to_string(),
            history: question.history.clone(),
            collections: allowed.collections,
            mode: parse_mode(question.mode.as_deref())?,
            access: allowed.access,
            scope: question.scope.clone(),
        })
    }

    /// Starts answering the actor's question from what it may read; the answer is recorded in
    /// the question audit as coming from `endpoint` when it is done, and kept where the
    /// question says (a thread's shown turns are then the history of a follow-up).
    pub async fn ask(
        &self,
        actor: &Actor,
        asker: &Asker,
        question: &Question,
        endpoint: &str,
    ) -> Result<Answering> {
        let mut request = self.ask_request(actor, question).await?;
        if let Keep::Conversation(_) = &question.keep {
            request.history = self.keep_history(actor, &question.keep).await?;
        }
        let started = Instant::now();
        let events = asker.ask(&request).await?;
        let keeping = match &question.keep {
            Keep::Nothing => None,
            Keep::NewConversation => Some(None),
            Keep::Conversation(id) => Some(Some(id.clone())),
        };
        Ok(Answering {
            events,
            keeping: keeping.map(|conversation_id| Keeping {
                corpus: self.clone(),
                owner: actor.owner(),
                conversation_id,
                collections: question.collections.clone(),
            }),
            kept: None,
            record: self.questions.clone().map(|recorder| Recording {
                recorder,
                actor: actor.clone(),
                endpoint: endpoint.to_string(),
                collections: question.collections.clone(),
                started,
            }),
        })
    }
}
