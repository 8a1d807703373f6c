//! Managing who may use Enclave: users, groups and API keys. Every change needs `admin` on
//! every collection and leaves an audit entry; disabling a user or changing a password ends
//! their sessions.

use enclave_storage::{ApiKeyRecord, GroupRecord, SubjectKind, UserRecord};

use crate::Corpus;
use crate::actor::{Action, Actor, Role};
use crate::credentials;
use crate::error::{CorpusError, Result};

/// A grant as people read it: names instead of ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantView {
    pub kind: SubjectKind,
    /// The user's, group's or key's name (its id if it no longer exists).
    pub name: String,
    pub role: String,
    /// The collection's name; `None`: every collection.
    pub collection: Option<String>,
}

/// A group as people read it: its members by name (keys as `key NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub name: String,
    pub members: Vec<String>,
}

/// A new API key, shown once.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key: String,
    pub record: ApiKeyRecord,
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.trim().is_empty()
        || name.chars().count() > 128
        || name.chars().any(|c| c.is_control() || c == ',')
    {
        return Err(CorpusError::Invalid(format!(
            "a {what} name is 1 to 128 characters, without commas or control characters: '{name}'"
        )));
    }
    Ok(())
}

impl Corpus {
    async fn user_named(&self, name: &str) -> Result<UserRecord> {
        self.meta
            .user_by_name(name)
            .await?
            .ok_or_else(|| CorpusError::NotFound(format!("user '{name}' does not exist")))
    }

    /// Adds a user with a password and a role on every collection (`None`: grants only).
    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &str,
        password: &str,
        role: Option<Role>,
    ) -> Result<UserRecord> {
        actor.require_everywhere(Action::Administer)?;
        check_name("user", name)?;
        credentials::add_user(&self.meta, name, password, role).await?;
        self.audit(
            actor,
            "create_user",
            None,
            None,
            serde_json::json!({"user": name, "role": Role::global_str(role)}),
        )
        .await?;
        self.user_named(name).await
    }

    /// Sets a user's password; their sessions end.
    pub async fn set_password(&self, actor: &Actor, name: &str, password: &str) -> Result<()> {
        actor.require_everywhere(Action::Administer)?;
        credentials::check_password(password)?;
        let hash = {
            let password = password.to_string();
            tokio::task::spawn_blocking(move || credentials::hash_password(&password))
                .await
                .map_err(|e| CorpusError::Invalid(format!("hashing a password: {e}")))??
        };
        self.meta.set_password(name, &hash).await?;
        self.audit(
            actor,
            "set_password",
            None,
            None,
            serde_json::json!({"user": name}),
        )
        .await
    }

    /// Changes a user's role on every collection.
    pub async fn set_user_role(&self, actor: &Actor, name: &str, role: Option<Role>) -> Result<()> {
        actor.require_everywhere(Action::Administer)?;
        let user = self.user_named(name).await?;
        self.meta
            .set_user_role(&user.id, Role::global_str(role))
            .await?;
        self.audit(
            actor,
            "set_role",
            None,
            None,
            serde_json::json!({"user": name, "role": Role::global_str(role)}),
        )
        .await
    }

    /// Disables a user (sessions end, keys acting for them stop working) or enables them.
    pub async fn set_user_disabled(&self, actor: &Actor, name: &str, disabled: bool) -> Result<()> {
        actor.require_everywhere(Action::Administer)?;
        let user = self.user_named(name).await?;
        if actor.id() == Some(user.id.as_str()) && disabled {
            return Err(CorpusError::Invalid(
                "an administrator cannot disable themselves".into(),
            ));
        }
        self.meta.set_user_disabled(&user.id, disabled).await?;
        self.audit(
            actor,
            if disabled {
                "disable_user"
            } else {
                "enable_user"
            },
            None,
            None,
            serde_json::json!({"user": name}),
        )
        .await
    }

    /// Deletes a user with their sessions, memberships and grants; keys acting for them are
    /// revoked.
    pub async fn delete_user(&self, actor: &Actor, name: &str) -> Result<()> {
        actor.require_everywhere(Action::Administer)?;
        let user = self.user_named(name).await?;
        if actor.id() == Some(user.id.as_str()) {
            return Err(CorpusError::Invalid(
                "an administrator cannot delete themselves".into(),
            ));
        }
        self.meta.delete_user(&user.id).await?;
        self.audit(
            actor,
            "delete_user",
            None,
            None,
            serde_json::json!({"user": name}),
        )
        .await
    }

    /// Creates a group.
    pub async fn create_group(&self, actor: &Actor, name: &str) -> Result<GroupRecord> {
        actor.require_everywhere(Action::Administer)?;
        check_name("group", name)?;
        let g = self.meta.create_group(name).await?;
        self.audit(
            actor,
            "create_group",
            None,
            None,
            serde_json::json!({"group": name}),
        )
        .await?;
        Ok(g)
    }

    /// Deletes a group with its memberships and grants.
    pub async fn delete_group(&self, actor: &Actor, name: &str) -> Result<()> {
        actor.require_everywhere(Action::Administer)?;
        let id = self.subject_id(SubjectKind::Group, name).await?;
        self.meta.delete_group(&id).await?;
        self.audit(
            actor,
            "delete_group",
            None,
            None,
            serde_json::json!({"group": name}),
        )
        .await
    }

    /// Creates an API key with a role on every collection, acting for a user (never more than
    /// that user may) or for itself.
    pub async fn create_key(
        &self,
        actor: &Actor,
        name: &str,
        role: Option<Role>,
        for_user: Option<&str>,
    ) -> Result<NewKey> {
        actor.require_everywhere(Action::Administer)?;
        check_name("key", name)?;
        let user_id = match for_user {
            Some(u) => Some(self.user_named(u).await?.id),
            None => None,
        };
        let (key, prefix, hash) = credentials::new_api_key();
        let record = self
            .meta
            .create_api_key(
                name,
                &prefix,
                &hash,
                Role::global_str(role),
                user_id.as_deref(),
            )
            .await?;
        self.audit(
            actor,
            "create_key",
            None,
            None,
            serde_json::json!({"key": name, "prefix": prefix, "role": Role::global_str(role),
                "user": for_user}),
        )
        .await?;
        Ok(NewKey { key, record })
    }

    /// Every group with its members' names.
    pub async fn group_views(&self) -> Result<Vec<GroupView>> {
        let users = self.meta.users().await?;
        let keys = self.meta.api_keys().await?;
        let mut out = Vec::new();
        for g in self.meta.groups().await? {
            let members = self
                .meta
                .members(&g.id)
                .await?
                .into_iter()
                .map(|(kind, id)| match kind {
                    SubjectKind::User => users
                        .iter()
                        .find(|u| u.id == id)
                        .map_or(id, |u| u.username.clone()),
                    _ => keys
                        .iter()
                        .find(|k| k.id == id)
                        .map_or(id, |k| format!("key {}", k.name)),
                })
                .collect();
            out.push(GroupView {
                name: g.name,
                members,
            });
        }
        Ok(out)
    }

    /// Every grant, with the names of whom it is for and where.
    pub async fn grant_views(&self) -> Result<Vec<GrantView>> {
        let collections = self.meta.collections().await?;
        let users = self.meta.users().await?;
        let groups = self.meta.groups().await?;
        let keys = self.meta.api_keys().await?;
        Ok(self
            .meta
            .grants()
            .await?
            .into_iter()
            .map(|g| {
                let name = match g.subject_kind {
                    SubjectKind::User => users
                        .iter()
                        .find(|u| u.id == g.subject_id)
                        .map(|u| u.username.clone()),
                    SubjectKind::Group => groups
                        .iter()
                        .find(|x| x.id == g.subject_id)
                        .map(|x| x.name.clone()),
                    SubjectKind::Key => keys
                        .iter()
                        .find(|k| k.id == g.subject_id)
                        .map(|k| k.name.clone()),
                }
                .unwrap_or_else(|| g.subject_id.clone());
                let collection = g.collection_id.as_ref().map(|id| {
                    collections
                        .iter()
                        .find(|c| &c.id == id)
                        .map_or_else(|| id.clone(), |c| c.name.clone())
                });
                GrantView {
                    kind: g.subject_kind,
                    name,
                    role: g.role,
                    collection,
                }
            })
            .collect())
    }

    /// Revokes a key by id or prefix; how many were revoked.
    pub async fn revoke_key(&self, actor: &Actor, id_or_prefix: &str) -> Result<u64> {
        actor.require_everywhere(Action::Administer)?;
        let n = self.meta.revoke_api_key(id_or_prefix).await?;
        if n > 0 {
            self.audit(
                actor,
                "revoke_key",
                None,
                None,
                serde_json::json!({"key": id_or_prefix}),
            )
            .await?;
        }
        Ok(n)
    }
}
