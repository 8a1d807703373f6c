//! Enclave's application layer: who may do what, decided once, without HTTP.
//!
//! Every front end (the REST API, the OpenAI-compatible API, the web UI, the curators' pages
//! and the command line) turns its caller into an [`Actor`] and calls [`Corpus`]: it finds the
//! collections and documents the actor may see (anything else is "not found", never
//! "forbidden"), narrows listings, counts and searches to them (as filters inside the stores,
//! so nothing is dropped from a page or a top-k afterwards), resolves document access lists,
//! and writes the audit entries. The rules themselves are in [`actor`].

pub mod actor;
mod asking;
mod calibration;
mod changes;
mod collection_settings;
mod conversations;
pub mod credentials;
mod documents;
pub mod error;
mod eval_sets;
mod people;
pub mod questions;
pub mod queue;

use std::collections::HashMap;
use std::sync::Arc;

use enclave_storage::{
    Collection, CollectionStats, Document, DocumentFilter, MetaStore, SubjectKind, VectorStore,
};

pub use actor::{Action, Actor, ActorKind, NOBODY, PUBLIC, Role};
pub use asking::{
    Answering, MAX_HISTORY_ANSWER_CHARS, MAX_QUESTION_CHARS, MAX_SEARCH_LIMIT, Query, Question,
    check_question,
};
pub use calibration::{FusionCalibration, MAX_CALIBRATION_SAMPLES};
pub use changes::{DocumentChange, check_collection_name, clean_tags};
pub use collection_settings::{CollectionChange, SettingsBounds, parse_mode};
pub use conversations::{
    Keep, MAX_COMMENT_CHARS, MAX_HISTORY_TURNS, MAX_TITLE_CHARS, Thread, TurnView, Verdict,
    WITHHELD, settings_json, title_of,
};
pub use documents::{
    BULK_LIMIT, BulkAction, BulkOutcome, BulkTarget, DocumentCriteria, ReceivedFile, UploadFields,
    Uploaded,
};
pub use error::{CorpusError, Result};
pub use eval_sets::{EvalRun, MAX_EVAL_CASES, NewEvalCase};
pub use people::{GrantView, GroupView, NewKey};
pub use questions::{Asked, QuestionRecorder};
pub use queue::IngestQueue;

/// The stores a use case works on.
#[derive(Clone)]
pub struct Corpus {
    pub meta: MetaStore,
    /// `None` for the commands that only manage people ([`Corpus::metadata_only`]).
    vectors: Option<Arc<dyn VectorStore>>,
    /// Uploaded originals, released when their last document goes.
    uploads: Option<enclave_ingest::uploads::UploadStore>,
    /// Where uploads and re-index requests go (`None`: this front end queues nothing).
    queue: Option<IngestQueue>,
    /// What collection settings are checked against.
    bounds: SettingsBounds,
    /// The question audit (`None`: searches and questions are not recorded).
    questions: Option<QuestionRecorder>,
}

/// What a search may look at: the collections (names; empty: all) and the access tokens
/// (empty: every document) that become filters inside the vector search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchScope {
    pub collections: Vec<String>,
    pub access: Vec<String>,
}

/// Who may read a document, by name: users and groups (both empty: everyone who reads the
/// collection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readers {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// API keys by name (keys without a user that a DMS uses for itself).
    pub keys: Vec<String>,
}

impl Readers {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.keys.is_empty()
    }
}

fn not_found_collection(name: &str) -> CorpusError {
    CorpusError::NotFound(format!("collection '{name}' does not exist"))
}

fn not_found_document(id: &str) -> CorpusError {
    CorpusError::NotFound(format!("document '{id}' does not exist"))
}

impl Corpus {
    pub fn new(meta: MetaStore, vectors: Arc<dyn VectorStore>) -> Self {
        Self {
            meta,
            vectors: Some(vectors),
            uploads: None,
            queue: None,
            bounds: SettingsBounds::default(),
            questions: None,
        }
    }

    /// The same corpus, queueing uploads and re-index requests on `queue`.
    pub fn with_queue(mut self, queue: IngestQueue) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The same corpus, checking collection settings against `bounds`.
    pub fn with_bounds(mut self, bounds: SettingsBounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// The same corpus, recording searches and questions in `questions`.
    pub fn with_questions(mut self, questions: QuestionRecorder) -> Self {
        self.questions = Some(questions);
        self
    }

    /// The same corpus, releasing uploaded originals from `uploads` when documents go.
    pub fn with_uploads(mut self, uploads: enclave_ingest::uploads::UploadStore) -> Self {
        self.uploads = Some(uploads);
        self
    }

    /// A corpus for managing people and reading metadata only: use cases that change
    /// documents' vectors refuse with a clear error.
    pub fn metadata_only(meta: MetaStore) -> Self {
        Self {
            meta,
            vectors: None,
            uploads: None,
            queue: None,
            bounds: SettingsBounds::default(),
            questions: None,
        }
    }

    fn vectors(&self) -> Result<&dyn VectorStore> {
        self.vectors.as_deref().ok_or_else(|| {
            CorpusError::Invalid("this command does not open the vector store".into())
        })
    }

    // ------------------------------------------------------------ actors

    /// The actor of an API key digest; `None` for an unknown or revoked key.
    pub async fn actor_for_key(&self, key_hash: &str) -> Result<Option<Actor>> {
        match self.meta.api_key_by_hash(key_hash).await? {
            Some(k) => match Actor::for_key(&self.meta, &k).await {
                Ok(a) => Ok(Some(a)),
                Err(CorpusError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    /// The actor of a session token digest; `None` when the session is over.
    pub async fn actor_for_session(&self, token_hash: &str) -> Result<Option<Actor>> {
        match self.meta.session_user(token_hash).await? {
            Some(u) => Ok(Some(Actor::for_user(&self.meta, &u).await?)),
            None => Ok(None),
        }
    }

    // ------------------------------------------------------------ collections

    /// The collection with this name, if the actor may do `action` there. A collection the
    /// actor may not read is not found; one it reads but may not change is forbidden.
    pub async fn collection(
        &self,
        actor: &Actor,
        name: &str,
        action: Action,
    ) -> Result<Collection> {
        let c = self
            .meta
            .collection_by_name(name)
            .await?
            .filter(|c| actor.may(Action::Read, &c.id))
            .ok_or_else(|| not_found_collection(name))?;
        if !actor.may(action, &c.id) {
            return Err(CorpusError::Forbidden(format!(
                "'{}' may not {} in collection '{}': this needs the {} role there",
                actor.name,
                match action {
                    Action::Read => "read",
                    Action::Write => "change documents",
                    Action::Administer => "change the collection",
                },
                c.name,
                action.needs().as_str()
            )));
        }
        Ok(c)
    }

    /// The collections the actor may do `action` in, by name.
    pub async fn collections(&self, actor: &Actor, action: Action) -> Result<Vec<Collection>> {
        Ok(self
            .meta
            .collections()
            .await?
            .into_iter()
            .filter(|c| actor.may(action, &c.id))
            .collect())
    }

    /// Collection id -> name of the collections the actor reads.
    pub async fn collection_names(&self, actor: &Actor) -> Result<HashMap<String, String>> {
        Ok(self
            .collections(actor, Action::Read)
            .await?
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect())
    }

    /// Counts per collection the actor reads, of the documents it may read.
    pub async fn collection_stats(&self, actor: &Actor) -> Result<Vec<CollectionStats>> {
        let names = self.collection_names(actor).await?;
        let readable: Vec<&String> = names.values().collect();
        Ok(self
            .meta
            .collection_stats(&actor.access_tokens())
            .await?
            .into_iter()
            .filter(|s| readable.contains(&&s.collection))
            .collect())
    }

    // ------------------------------------------------------------ documents

    /// The document with this id (or external id) if the actor may do `action` on it. One it
    /// may not read is not found; one it reads but may not change is forbidden.
    pub async fn document(&self, actor: &Actor, id: &str, action: Action) -> Result<Document> {
        let d = match self.meta.document(id).await?.filter(|d| actor.can_read(d)) {
            Some(d) => d,
            None => {
                let mut readable: Vec<Document> = self
                    .meta
                    .documents_by_external_id(id)
                    .await?
                    .into_iter()
                    .filter(|d| actor.can_read(d))
                    .collect();
                match readable.len() {
                    0 => return Err(not_found_document(id)),
                    1 => readable.remove(0),
                    n => {
                        return Err(CorpusError::Conflict(format!(
                            "external id '{id}' is used in {n} collections: use the document id"
                        )));
                    }
                }
            }
        };
        if !actor.may(action, &d.collection_id) {
            return Err(CorpusError::Forbidden(format!(
                "'{}' may read document {} but not change it: this needs the {} role in its \
                 collection",
                actor.name,
                d.id,
                action.needs().as_str()
            )));
        }
        Ok(d)
    }

    /// Narrows a listing's filter to what the actor may do `action` on: its collections (the
    /// one named must be among them) and the documents whose access list admits it.
    pub async fn narrow(
        &self,
        actor: &Actor,
        mut filter: DocumentFilter,
        action: Action,
    ) -> Result<DocumentFilter> {
        if let Some(id) = &filter.collection_id
            && !actor.may(action, id)
        {
            return Err(match self.meta.collection(id).await? {
                Some(c) if actor.may(Action::Read, &c.id) => CorpusError::Forbidden(format!(
                    "'{}' needs the {} role in collection '{}'",
                    actor.name,
                    action.needs().as_str(),
                    c.name
                )),
                Some(c) => not_found_collection(&c.name),
                None => not_found_collection(id),
            });
        }
        if actor.role < Some(action.needs()) {
            filter.collection_ids = Some(
                self.collections(actor, action)
                    .await?
                    .into_iter()
                    .map(|c| c.id)
                    .collect(),
            );
        }
        filter.access_any = actor.access_tokens();
        if action == Action::Read && actor.role < Some(Role::Editor) {
            // What curators took out of retrieval is listed only in the collections where
            // the actor is a curator itself.
            filter.disabled_only_in = Some(
                self.collections(actor, Action::Write)
                    .await?
                    .into_iter()
                    .map(|c| c.id)
                    .collect(),
            );
        }
        Ok(filter)
    }

    /// The attachments of a document that the actor may read.
    pub async fn children(&self, actor: &Actor, document: &Document) -> Result<Vec<Document>> {
        Ok(self
            .meta
            .children(&document.id)
            .await?
            .into_iter()
            .filter(|d| actor.can_read(d))
            .collect())
    }

    /// The parent of an attachment, if the actor may read it.
    pub async fn parent(&self, actor: &Actor, document: &Document) -> Result<Option<Document>> {
        Ok(match &document.parent_id {
            Some(p) => self.meta.document(p).await?.filter(|d| actor.can_read(d)),
            None => None,
        })
    }

    // ------------------------------------------------------------ search

    /// What a search or question of the actor may look at. Named collections must be readable
    /// (else not found); no name means every collection it reads. An actor that reads no
    /// collection gets a scope that matches nothing.
    pub async fn search_scope(&self, actor: &Actor, collections: &[String]) -> Result<SearchScope> {
        let access = actor.access_tokens();
        if !collections.is_empty() {
            for name in collections {
                self.collection(actor, name, Action::Read).await?;
            }
            return Ok(SearchScope {
                collections: collections.to_vec(),
                access,
            });
        }
        if actor.role >= Some(Role::Reader) {
            return Ok(SearchScope {
                collections: Vec::new(),
                access,
            });
        }
        let names: Vec<String> = self
            .collections(actor, Action::Read)
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect();
        if names.is_empty() {
            return Ok(SearchScope {
                collections: Vec::new(),
                access: vec![NOBODY.to_string()],
            });
        }
        Ok(SearchScope {
            collections: names,
            access,
        })
    }

    // ------------------------------------------------------------ access lists

    /// The access tokens for a list of readers by name (empty: public). Unknown names are an
    /// error that lists them.
    pub async fn access_tokens(&self, readers: &Readers) -> Result<Vec<String>> {
        if readers.is_empty() {
            return Ok(vec![PUBLIC.to_string()]);
        }
        let mut tokens = Vec::new();
        let mut unknown = Vec::new();
        for name in &readers.users {
            match self.meta.user_by_name(name).await? {
                Some(u) => tokens.push(format!("user:{}", u.id)),
                None => unknown.push(format!("user '{name}'")),
            }
        }
        for name in &readers.groups {
            match self.meta.group_by_name(name).await? {
                Some(g) => tokens.push(format!("group:{}", g.id)),
                None => unknown.push(format!("group '{name}'")),
            }
        }
        if !readers.keys.is_empty() {
            let keys = self.meta.api_keys().await?;
            for name in &readers.keys {
                match keys
                    .iter()
                    .find(|k| &k.name == name && k.revoked_at.is_none())
                {
                    Some(k) => tokens.push(format!("key:{}", k.id)),
                    None => unknown.push(format!("API key '{name}'")),
                }
            }
        }
        if !unknown.is_empty() {
            return Err(CorpusError::Invalid(format!(
                "the access list names {} that do not exist: {}",
                if unknown.len() == 1 {
                    "one reader"
                } else {
                    "readers"
                },
                unknown.join(", ")
            )));
        }
        tokens.sort();
        tokens.dedup();
        Ok(tokens)
    }

    /// The readers a list of access tokens names, by name (ids of deleted readers are shown
    /// as they are).
    pub async fn readers(&self, tokens: &[String]) -> Result<Readers> {
        let mut out = Readers::default();
        let mut keys = None;
        let mut groups = None;
        for t in tokens {
            if let Some(id) = t.strip_prefix("user:") {
                out.users.push(match self.meta.user(id).await? {
                    Some(u) => u.username,
                    None => t.clone(),
                });
            } else if let Some(id) = t.strip_prefix("group:") {
                if groups.is_none() {
                    groups = Some(self.meta.groups().await?);
                }
                out.groups.push(
                    groups
                        .iter()
                        .flatten()
                        .find(|g| g.id == id)
                        .map_or_else(|| t.clone(), |g| g.name.clone()),
                );
            } else if let Some(id) = t.strip_prefix("key:") {
                if keys.is_none() {
                    keys = Some(self.meta.api_keys().await?);
                }
                out.keys.push(
                    keys.iter()
                        .flatten()
                        .find(|k| k.id == id)
                        .map_or_else(|| t.clone(), |k| k.name.clone()),
                );
            }
        }
        Ok(out)
    }

    /// Changes who may read a document (and its attachments), in both stores, and records it.
    pub async fn set_readers(
        &self,
        actor: &Actor,
        document: &Document,
        readers: &Readers,
    ) -> Result<Vec<String>> {
        let tokens = self.access_tokens(readers).await?;
        if tokens != document.access {
            enclave_ingest::curation::set_document_access(
                &self.meta,
                self.vectors()?,
                &document.id,
                &tokens,
            )
            .await?;
            let names = self.meta.collection(&document.collection_id).await?;
            self.audit(
                actor,
                "access",
                names.as_ref().map(|c| c.name.as_str()),
                Some(&document.id),
                serde_json::json!({
                    "users": readers.users,
                    "groups": readers.groups,
                    "keys": readers.keys,
                }),
            )
            .await?;
        }
        Ok(tokens)
    }

    // ------------------------------------------------------------ people

    /// The id of a user or key named by its name (keys also by id or prefix), or of a group.
    pub async fn subject_id(&self, kind: SubjectKind, name: &str) -> Result<String> {
        let found = match kind {
            SubjectKind::User => self.meta.user_by_name(name).await?.map(|u| u.id),
            SubjectKind::Group => self.meta.group_by_name(name).await?.map(|g| g.id),
            SubjectKind::Key => match self.meta.api_key(name).await? {
                Some(k) => Some(k.id),
                None => self
                    .meta
                    .api_keys()
                    .await?
                    .into_iter()
                    .find(|k| k.name == name && k.revoked_at.is_none())
                    .map(|k| k.id),
            },
        };
        found.ok_or_else(|| {
            CorpusError::NotFound(format!("{} '{name}' does not exist", kind.as_str()))
        })
    }

    /// Gives a user, group or key a role on one collection (by name) or on all (`None`);
    /// `role = None` withdraws it. Needs `admin` on every collection.
    pub async fn grant(
        &self,
        actor: &Actor,
        kind: SubjectKind,
        subject: &str,
        collection: Option<&str>,
        role: Option<Role>,
    ) -> Result<()> {
        actor.require_everywhere(Action::Administer)?;
        let id = self.subject_id(kind, subject).await?;
        let collection_id = match collection {
            Some(name) => Some(
                self.meta
                    .collection_by_name(name)
                    .await?
                    .ok_or_else(|| not_found_collection(name))?
                    .id,
            ),
            None => None,
        };
        match role {
            Some(r) => {
                self.meta
                    .set_grant(kind, &id, collection_id.as_deref(), r.as_str())
                    .await?
            }
            None => {
                if !self
                    .meta
                    .remove_grant(kind, &id, collection_id.as_deref())
                    .await?
                {
                    return Err(CorpusError::NotFound(format!(
                        "{} '{subject}' has no grant on {}",
                        kind.as_str(),
                        collection.map_or("every collection".to_string(), |c| format!(
                            "collection '{c}'"
                        ))
                    )));
                }
            }
        }
        self.audit(
            actor,
            if role.is_some() {
                "grant"
            } else {
                "revoke_grant"
            },
            collection,
            None,
            serde_json::json!({
                "subject": format!("{} '{subject}'", kind.as_str()),
                "role": role.map(Role::as_str),
            }),
        )
        .await
    }

    /// Puts a user or key in a group, or takes it out. Needs `admin` on every collection.
    pub async fn set_membership(
        &self,
        actor: &Actor,
        group: &str,
        kind: SubjectKind,
        member: &str,
        member_of: bool,
    ) -> Result<()> {
        actor.require_everywhere(Action::Administer)?;
        if kind == SubjectKind::Group {
            return Err(CorpusError::Invalid(
                "groups hold users and keys, not other groups".into(),
            ));
        }
        let group_id = self.subject_id(SubjectKind::Group, group).await?;
        let member_id = self.subject_id(kind, member).await?;
        if member_of {
            self.meta.add_member(&group_id, kind, &member_id).await?;
        } else if !self.meta.remove_member(&group_id, kind, &member_id).await? {
            return Err(CorpusError::NotFound(format!(
                "{} '{member}' is not in group '{group}'",
                kind.as_str()
            )));
        }
        self.audit(
            actor,
            if member_of {
                "add_member"
            } else {
                "remove_member"
            },
            None,
            None,
            serde_json::json!({"group": group, "member": format!("{} '{member}'", kind.as_str())}),
        )
        .await
    }

    // ------------------------------------------------------------ audit

    /// Adds a corpus change to the audit log.
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        collection: Option<&str>,
        document_id: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.meta
            .record_audit(
                &actor.audit_name(),
                action,
                collection,
                document_id,
                &detail,
            )
            .await?;
        Ok(())
    }

    /// Whether an audit entry may be shown to the actor: administrators of every collection
    /// see all; an administrator of some collections sees the entries of those collections
    /// whose document (if any) it may read.
    pub async fn may_see_audit_entry(
        &self,
        actor: &Actor,
        collection: Option<&str>,
        document_id: Option<&str>,
        admin_collections: &[String],
    ) -> Result<bool> {
        if actor.role >= Some(Role::Admin) {
            return Ok(true);
        }
        let Some(c) = collection else {
            return Ok(false);
        };
        if !admin_collections.iter().any(|n| n == c) {
            return Ok(false);
        }
        Ok(match document_id {
            Some(id) => match self.meta.document(id).await? {
                Some(d) => actor.can_read(&d),
                // A deleted document: its entry shows what it was, only to administrators
                // of every collection.
                None => false,
            },
            None => true,
        })
    }
}
