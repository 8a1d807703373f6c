//! Who is acting, and what their roles, grants and groups allow.
//!
//! The rules, in one place:
//! - A role (reader < editor < admin) applies to every collection (the user's or key's own
//!   `role`, or a grant with no collection) or to one collection (a grant). An actor's role in a
//!   collection is the highest of its own, its grants' and its groups' grants there.
//! - Reading a collection needs `reader`; changing its documents `editor`; changing the
//!   collection itself `admin` there. Creating collections, managing people, webhooks and the
//!   question audit need `admin` on every collection.
//! - A document may restrict its readers further (its access list: `public`, or `user:ID`,
//!   `group:ID`, `key:ID` tokens). An actor reads a document when it reads its collection and
//!   the document is public or names the actor, one of its groups, or (for a key acting for a
//!   user) that user. Administrators of every collection, the trusted mode and the command
//!   line read every document.
//! - An API key acting for a user has that user's roles, grants and groups, never more than the
//!   key's own role.
//! - A collection or document the actor may not read does not exist for it (not found, never
//!   forbidden); one it reads but may not change is forbidden.

use std::collections::HashMap;

use enclave_storage::{ApiKeyRecord, Document, MetaStore, SubjectKind, UserRecord};
use serde::{Deserialize, Serialize};

use crate::error::{CorpusError, Result};

/// The access token of a document anyone who reads its collection may read.
pub const PUBLIC: &str = "public";

/// An access token that no document carries: a search restricted to it finds nothing.
pub const NOBODY: &str = "nobody";

/// What a caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Search, ask, read documents.
    Reader,
    /// Also upload, replace, re-index, edit and delete documents.
    Editor,
    /// Also change and delete the collection (on every collection: create collections,
    /// manage people, webhooks and the audit).
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "reader" => Ok(Self::Reader),
            "editor" => Ok(Self::Editor),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown role '{other}' (reader, editor, admin)")),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Editor => "editor",
            Self::Admin => "admin",
        }
    }

    /// A stored role on every collection: a role, or `none` (grants only).
    pub fn parse_global(s: &str) -> std::result::Result<Option<Self>, String> {
        match s {
            "none" => Ok(None),
            other => other
                .parse()
                .map(Some)
                .map_err(|_| format!("unknown role '{other}' (none, reader, editor, admin)")),
        }
    }

    /// How a role on every collection is stored.
    pub fn global_str(role: Option<Self>) -> &'static str {
        role.map_or("none", Self::as_str)
    }
}

/// Something an actor wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Search, ask, read documents and pages.
    Read,
    /// Change documents.
    Write,
    /// Change collections, people, webhooks; read the audit.
    Administer,
}

impl Action {
    /// The role this action needs.
    pub fn needs(self) -> Role {
        match self {
            Self::Read => Role::Reader,
            Self::Write => Role::Editor,
            Self::Administer => Role::Admin,
        }
    }
}

/// How the actor proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorKind {
    /// A signed-in person.
    User { id: String },
    /// An API key, possibly acting for a user.
    ApiKey { id: String, user_id: Option<String> },
    /// Authentication is off: every request is trusted.
    Trusted,
    /// The command line, run by whoever may read the stores.
    CommandLine,
}

/// The caller of a use case, with everything its permissions depend on.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub kind: ActorKind,
    /// Role on every collection.
    pub role: Option<Role>,
    /// Roles on single collections (by collection id), from grants.
    pub collection_roles: HashMap<String, Role>,
    /// Ids of the groups the actor (or the user a key acts for) belongs to.
    pub groups: Vec<String>,
}

impl Actor {
    /// The trusted single-user mode (authentication off): an administrator of everything.
    pub fn trusted() -> Self {
        Self {
            name: "local".into(),
            kind: ActorKind::Trusted,
            role: Some(Role::Admin),
            collection_roles: HashMap::new(),
            groups: Vec::new(),
        }
    }

    /// The command line (`enclave delete`, `enclave ingest`...).
    pub fn command_line() -> Self {
        Self {
            name: "command line".into(),
            kind: ActorKind::CommandLine,
            role: Some(Role::Admin),
            collection_roles: HashMap::new(),
            groups: Vec::new(),
        }
    }

    /// A user with their grants and groups.
    pub async fn for_user(meta: &MetaStore, user: &UserRecord) -> Result<Self> {
        let (role, collection_roles, groups) =
            load_permissions(meta, SubjectKind::User, &user.id, &user.role).await?;
        Ok(Self {
            name: user.username.clone(),
            kind: ActorKind::User {
                id: user.id.clone(),
            },
            role,
            collection_roles,
            groups,
        })
    }

    /// An API key: the user it acts for, capped at the key's role, or its own grants.
    pub async fn for_key(meta: &MetaStore, key: &ApiKeyRecord) -> Result<Self> {
        let kind = ActorKind::ApiKey {
            id: key.id.clone(),
            user_id: key.user_id.clone(),
        };
        let (mut role, mut collection_roles, mut groups) =
            load_permissions(meta, SubjectKind::Key, &key.id, &key.role).await?;
        if let Some(user_id) = &key.user_id {
            let user = meta
                .user(user_id)
                .await?
                .filter(|u| u.disabled_at.is_none())
                .ok_or_else(|| {
                    CorpusError::NotFound(format!(
                        "the user API key '{}' acts for is disabled or deleted",
                        key.name
                    ))
                })?;
            let cap = role;
            let (user_role, user_roles, user_groups) =
                load_permissions(meta, SubjectKind::User, &user.id, &user.role).await?;
            role = user_role.min(cap);
            collection_roles = user_roles
                .into_iter()
                .filter_map(|(c, r)| cap.map(|cap| (c, r.min(cap))))
                .collect();
            groups.extend(user_groups);
        }
        Ok(Self {
            name: key.name.clone(),
            kind,
            role,
            collection_roles,
            groups,
        })
    }

    /// How the audit log names this actor.
    pub fn audit_name(&self) -> String {
        match &self.kind {
            ActorKind::ApiKey { .. } => format!("API key '{}'", self.name),
            ActorKind::User { .. } => format!("user '{}'", self.name),
            ActorKind::Trusted => "local (authentication off)".to_string(),
            ActorKind::CommandLine => "command line".to_string(),
        }
    }

    /// The user's or key's id, for the audit.
    pub fn id(&self) -> Option<&str> {
        match &self.kind {
            ActorKind::User { id } | ActorKind::ApiKey { id, .. } => Some(id),
            ActorKind::Trusted | ActorKind::CommandLine => None,
        }
    }

    /// Who owns what this actor keeps for itself (its conversations): `user:ID`, `key:ID`,
    /// `local` (authentication off) or `cli` (the command line).
    pub fn owner(&self) -> String {
        match &self.kind {
            ActorKind::User { id } => format!("user:{id}"),
            ActorKind::ApiKey { id, .. } => format!("key:{id}"),
            ActorKind::Trusted => "local".to_string(),
            ActorKind::CommandLine => "cli".to_string(),
        }
    }

    /// Whether this is a signed-in person.
    pub fn is_user(&self) -> bool {
        matches!(self.kind, ActorKind::User { .. })
    }

    /// The actor's role in a collection (by id).
    pub fn role_in(&self, collection_id: &str) -> Option<Role> {
        self.role
            .max(self.collection_roles.get(collection_id).copied())
    }

    /// The highest role the actor has anywhere.
    pub fn highest_role(&self) -> Option<Role> {
        self.collection_roles.values().copied().max().max(self.role)
    }

    /// Whether the actor may do `action` in the collection with this id.
    pub fn may(&self, action: Action, collection_id: &str) -> bool {
        self.role_in(collection_id) >= Some(action.needs())
    }

    /// Whether the actor may do `action` in at least one collection (who sees the curators'
    /// pages, say); what it then sees is narrowed per collection.
    pub fn may_somewhere(&self, action: Action) -> bool {
        self.highest_role() >= Some(action.needs())
    }

    /// Allows `action` on every collection (creating collections, people, webhooks) or says
    /// why not.
    pub fn require_everywhere(&self, action: Action) -> Result<()> {
        if self.role >= Some(action.needs()) {
            return Ok(());
        }
        Err(CorpusError::Forbidden(format!(
            "'{}' has the {} role on every collection; this needs {} on every collection",
            self.name,
            Role::global_str(self.role),
            action.needs().as_str()
        )))
    }

    /// Allows `action` somewhere, or says why not.
    pub fn require_somewhere(&self, action: Action) -> Result<()> {
        if self.may_somewhere(action) {
            return Ok(());
        }
        Err(CorpusError::Forbidden(format!(
            "'{}' has no collection where it is {}",
            self.name,
            action.needs().as_str()
        )))
    }

    /// Whether document access lists apply to this actor (not to administrators of every
    /// collection, the trusted mode and the command line).
    pub fn reads_every_document(&self) -> bool {
        self.role == Some(Role::Admin)
    }

    /// The access tokens a document must carry one of for this actor to read it; empty when
    /// access lists do not apply to it.
    pub fn access_tokens(&self) -> Vec<String> {
        if self.reads_every_document() {
            return Vec::new();
        }
        let mut tokens = vec![PUBLIC.to_string()];
        match &self.kind {
            ActorKind::User { id } => tokens.push(format!("user:{id}")),
            ActorKind::ApiKey { id, user_id } => {
                tokens.push(format!("key:{id}"));
                if let Some(u) = user_id {
                    tokens.push(format!("user:{u}"));
                }
            }
            ActorKind::Trusted | ActorKind::CommandLine => {}
        }
        tokens.extend(self.groups.iter().map(|g| format!("group:{g}")));
        tokens.sort();
        tokens.dedup();
        tokens
    }

    /// Whether the document's access list lets this actor read it (its collection aside).
    pub fn passes_access_list(&self, document: &Document) -> bool {
        if self.reads_every_document() {
            return true;
        }
        let tokens = self.access_tokens();
        document.access.iter().any(|t| tokens.contains(t))
    }

    /// Whether the actor may read this document: its collection and its access list; a
    /// document a curator took out of retrieval is hidden from those who may not change it.
    pub fn can_read(&self, document: &Document) -> bool {
        self.may(Action::Read, &document.collection_id)
            && self.passes_access_list(document)
            && (!document.disabled || self.may(Action::Write, &document.collection_id))
    }
}

type Permissions = (Option<Role>, HashMap<String, Role>, Vec<String>);

async fn load_permissions(
    meta: &MetaStore,
    kind: SubjectKind,
    id: &str,
    own_role: &str,
) -> Result<Permissions> {
    let mut role = Role::parse_global(own_role).map_err(CorpusError::Invalid)?;
    let mut per_collection: HashMap<String, Role> = HashMap::new();
    for g in meta.effective_grants(kind, id).await? {
        let r: Role = g.role.parse().map_err(CorpusError::Invalid)?;
        match g.collection_id {
            None => role = role.max(Some(r)),
            Some(c) => {
                let e = per_collection.entry(c).or_insert(r);
                *e = (*e).max(r);
            }
        }
    }
    let groups = meta
        .groups_of(kind, id)
        .await?
        .into_iter()
        .map(|g| g.id)
        .collect();
    Ok((role, per_collection, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Option<Role>, grants: &[(&str, Role)], groups: &[&str]) -> Actor {
        Actor {
            name: "a".into(),
            kind: ActorKind::User { id: "u1".into() },
            role,
            collection_roles: grants.iter().map(|(c, r)| (c.to_string(), *r)).collect(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn doc(collection: &str, access: &[&str]) -> Document {
        Document {
            collection_id: collection.into(),
            access: access.iter().map(|a| a.to_string()).collect(),
            ..Document::default()
        }
    }

    #[test]
    fn roles_combine_per_collection() {
        let a = actor(Some(Role::Reader), &[("legal", Role::Editor)], &[]);
        assert!(a.may(Action::Write, "legal"));
        assert!(!a.may(Action::Write, "hr"));
        assert!(a.may(Action::Read, "hr"));
        assert!(a.require_everywhere(Action::Administer).is_err());
        let none = actor(None, &[("legal", Role::Reader)], &[]);
        assert!(!none.may(Action::Read, "hr"));
        assert!(none.may_somewhere(Action::Read));
        assert!(!none.may_somewhere(Action::Write));
    }

    #[test]
    fn access_lists_name_users_groups_or_everyone() {
        let a = actor(Some(Role::Reader), &[], &["g1"]);
        assert!(a.can_read(&doc("c", &["public"])));
        assert!(a.can_read(&doc("c", &["user:u1"])));
        assert!(a.can_read(&doc("c", &["group:g1", "user:u9"])));
        assert!(!a.can_read(&doc("c", &["group:g2", "user:u9"])));
        assert!(!a.can_read(&doc("c", &[])));
        assert_eq!(a.access_tokens(), vec!["group:g1", "public", "user:u1"]);
        let admin = actor(Some(Role::Admin), &[], &[]);
        assert!(admin.can_read(&doc("c", &["user:u9"])));
        assert!(admin.access_tokens().is_empty());
        // An administrator of one collection is still bound by access lists.
        let local_admin = actor(None, &[("c", Role::Admin)], &[]);
        assert!(!local_admin.can_read(&doc("c", &["user:u9"])));
        assert!(!local_admin.can_read(&doc("d", &["public"])));
        // Disabled documents: only for those who may change them.
        let mut off = doc("c", &["public"]);
        off.disabled = true;
        assert!(!a.can_read(&off));
        assert!(admin.can_read(&off));
    }
}
