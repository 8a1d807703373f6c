//! A collection's own evaluation set as use cases: curators (editors of the collection) add
//! cases by hand, administrators turn readers' verdicts into cases, and a run scores the set in
//! every retrieval mode and is kept with the settings it ran with, so that a change of chunking,
//! mode, model or settings shows its effect next to the run before it.

use enclave_retrieval::eval::{EvalItem, ModeReport, ModeSummary, evaluate};
use enclave_retrieval::{Retriever, SearchMode};
use enclave_storage::{EvalCaseRecord, EvalRunRecord, now};

use crate::Corpus;
use crate::actor::{Action, Actor};
use crate::asking::check_question;
use crate::error::{CorpusError, Result};

/// The most cases one collection's set holds.
pub const MAX_EVAL_CASES: usize = 2000;

/// A case as a curator gives it.
#[derive(Debug, Clone, Default)]
pub struct NewEvalCase {
    pub question: String,
    /// The document (id or external id) that answers it.
    pub document: Option<String>,
    /// 1-based pages where the answer is.
    pub pages: Vec<i64>,
    /// The collection does not answer it.
    pub unanswerable: bool,
}

/// A run as its collection's page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalRun {
    pub record: EvalRunRecord,
    pub modes: Vec<ModeSummary>,
}

impl EvalRun {
    fn of(record: EvalRunRecord) -> Self {
        let modes = serde_json::from_value(record.report.clone()).unwrap_or_default();
        Self { record, modes }
    }
}

impl Corpus {
    /// Checks and stores a case of `collection`'s set (whose id is given).
    async fn store_case(
        &self,
        actor: &Actor,
        collection_id: &str,
        case: &NewEvalCase,
        feedback_id: Option<String>,
    ) -> Result<EvalCaseRecord> {
        check_question(&case.question)?;
        if self.meta.eval_cases(collection_id).await?.len() >= MAX_EVAL_CASES {
            return Err(CorpusError::Invalid(format!(
                "the collection's evaluation set holds {MAX_EVAL_CASES} cases already"
            )));
        }
        let document_id = if case.unanswerable {
            if case.document.is_some() || !case.pages.is_empty() {
                return Err(CorpusError::Invalid(
                    "an unanswerable case names no document or pages".into(),
                ));
            }
            None
        } else {
            let name = case.document.as_deref().ok_or_else(|| {
                CorpusError::Invalid(
                    "name the document that answers the question, or mark it unanswerable".into(),
                )
            })?;
            let d = self.document(actor, name, Action::Read).await?;
            if d.collection_id != collection_id {
                return Err(CorpusError::Invalid(format!(
                    "document '{name}' is in another collection"
                )));
            }
            if case.pages.is_empty() || case.pages.iter().any(|&p| p < 1 || p > d.page_count.max(1))
            {
                return Err(CorpusError::Invalid(format!(
                    "pages must be between 1 and {} (the document's pages)",
                    d.page_count.max(1)
                )));
            }
            Some(d.id)
        };
        let record = EvalCaseRecord {
            id: uuid::Uuid::new_v4().to_string(),
            collection_id: collection_id.to_string(),
            question: case.question.trim().to_string(),
            document_id,
            pages: if case.unanswerable {
                Vec::new()
            } else {
                case.pages.clone()
            },
            unanswerable: case.unanswerable,
            feedback_id,
            created_at: now(),
            created_by: actor.audit_name(),
        };
        self.meta.add_eval_case(&record).await?;
        Ok(record)
    }

    /// Adds a case to the collection's set (editors of the collection).
    pub async fn add_eval_case(
        &self,
        actor: &Actor,
        collection: &str,
        case: &NewEvalCase,
    ) -> Result<EvalCaseRecord> {
        let c = self.collection(actor, collection, Action::Write).await?;
        self.store_case(actor, &c.id, case, None).await
    }

    /// Turns a reader's verdict into a case of `collection`'s set: its question, with the
    /// source the reader picked as the expected one, or unanswerable (those who may see the
    /// verdict, see [`Corpus::feedback`], and edit `collection`).
    pub async fn eval_case_from_feedback(
        &self,
        actor: &Actor,
        feedback_id: &str,
        collection: &str,
        unanswerable: bool,
    ) -> Result<EvalCaseRecord> {
        actor.require_somewhere(Action::Write)?;
        let not_found =
            || CorpusError::NotFound(format!("feedback '{feedback_id}' does not exist"));
        let f = self
            .meta
            .feedback_entry(feedback_id)
            .await?
            .ok_or_else(not_found)?;
        // Only a verdict its curators may see (an administrator of every collection sees all).
        if !self
            .curates(actor, &f, &mut crate::conversations::Curation::default())
            .await?
        {
            return Err(not_found());
        }
        let c = self.collection(actor, collection, Action::Write).await?;
        let case = if unanswerable {
            NewEvalCase {
                question: f.question.clone(),
                unanswerable: true,
                ..Default::default()
            }
        } else {
            let document = f.right_document_id.clone().ok_or_else(|| {
                CorpusError::Invalid(
                    "the reader named no right source: mark the case unanswerable, or add it \
                     by hand with its document and pages"
                        .into(),
                )
            })?;
            let pages = match f.right_page {
                Some(p) => vec![p],
                None => {
                    return Err(CorpusError::Invalid(
                        "the reader named the right document but not its page: add the case \
                         by hand with its pages"
                            .into(),
                    ));
                }
            };
            NewEvalCase {
                question: f.question.clone(),
                document: Some(document),
                pages,
                unanswerable: false,
            }
        };
        self.store_case(actor, &c.id, &case, Some(f.id.clone()))
            .await
    }

    /// The collection's set (editors of the collection).
    pub async fn eval_cases(&self, actor: &Actor, collection: &str) -> Result<Vec<EvalCaseRecord>> {
        let c = self.collection(actor, collection, Action::Write).await?;
        Ok(self.meta.eval_cases(&c.id).await?)
    }

    /// Removes a case (editors of the collection).
    pub async fn delete_eval_case(&self, actor: &Actor, collection: &str, id: &str) -> Result<()> {
        let c = self.collection(actor, collection, Action::Write).await?;
        if !self.meta.delete_eval_case(&c.id, id).await? {
            return Err(CorpusError::NotFound(format!(
                "eval case '{id}' does not exist"
            )));
        }
        Ok(())
    }

    /// The collection's set as evaluation items (editors of the collection); refused when
    /// it is empty.
    pub async fn eval_items(&self, actor: &Actor, collection: &str) -> Result<Vec<EvalItem>> {
        let c = self.collection(actor, collection, Action::Write).await?;
        let cases = self.meta.eval_cases(&c.id).await?;
        if cases.is_empty() {
            return Err(CorpusError::Invalid(format!(
                "collection '{collection}' has no evaluation cases yet: add some, or turn \
                 readers' feedback into cases"
            )));
        }
        Ok(cases
            .iter()
            .map(|k| EvalItem {
                id: k.id.clone(),
                question: k.question.clone(),
                document: None,
                document_id: k.document_id.clone(),
                pages: k.pages.clone(),
                answer: None,
                unanswerable: k.unanswerable,
            })
            .collect())
    }

    /// Keeps a run of the collection's set: its figures per mode, the settings it ran with
    /// and, when it asked the model too, the answers' figures (editors of the collection).
    pub async fn record_eval(
        &self,
        actor: &Actor,
        retriever: &Retriever,
        collection: &str,
        reports: &[(SearchMode, ModeReport)],
        answers: Option<serde_json::Value>,
    ) -> Result<EvalRun> {
        let c = self.collection(actor, collection, Action::Write).await?;
        let modes: Vec<ModeSummary> = reports.iter().map(|(m, r)| r.summary(*m)).collect();
        let cases = reports
            .first()
            .map_or(0, |(_, r)| r.answerable + r.unanswerable);
        let record = EvalRunRecord {
            id: uuid::Uuid::new_v4().to_string(),
            collection_id: c.id.clone(),
            at: now(),
            actor: actor.audit_name(),
            cases: cases as i64,
            settings: serde_json::json!({
                "collection": c.settings,
                "retrieval": retriever.options(),
            }),
            report: serde_json::to_value(&modes)
                .map_err(|e| CorpusError::Invalid(format!("the report cannot be kept: {e}")))?,
            answers,
        };
        self.meta.add_eval_run(&record).await?;
        Ok(EvalRun { record, modes })
    }

    /// Scores the collection's set in every retrieval mode over all its documents, and keeps
    /// the run with the settings it ran with (editors of the collection).
    pub async fn run_eval(
        &self,
        actor: &Actor,
        retriever: &Retriever,
        collection: &str,
    ) -> Result<EvalRun> {
        let items = self.eval_items(actor, collection).await?;
        let reports = evaluate(retriever, &items, &[collection.to_string()]).await?;
        self.record_eval(actor, retriever, collection, &reports, None)
            .await
    }

    /// The collection's runs, newest first (editors of the collection).
    pub async fn eval_runs(
        &self,
        actor: &Actor,
        collection: &str,
        limit: i64,
    ) -> Result<Vec<EvalRun>> {
        let c = self.collection(actor, collection, Action::Write).await?;
        Ok(self
            .meta
            .eval_runs(&c.id, limit.clamp(1, 200))
            .await?
            .into_iter()
            .map(EvalRun::of)
            .collect())
    }
}
