//! `enclave users`, `enclave groups`, `enclave grants` and `enclave keys`: who may use the
//! server, and where. Every change goes through the application layer (`enclave-corpus`) as
//! the command line, which records it in the audit log.

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use enclave_corpus::{Actor, Corpus, Role};
use enclave_settings::Settings;
use enclave_storage::SubjectKind;

use crate::app;

/// A role on every collection, or `none` (grants only).
#[derive(Debug, Clone, Copy)]
struct GlobalRole(Option<Role>);

fn global_role(s: &str) -> Result<GlobalRole, String> {
    Role::parse_global(s).map(GlobalRole)
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a person who signs in to the web UI. Without --password-stdin, a random password
    /// is generated and printed.
    Add {
        name: String,
        /// Role on every collection: none (only what grants give), reader (search, ask),
        /// editor (also change documents) or admin.
        #[arg(long, default_value = "reader", value_parser = global_role)]
        role: GlobalRole,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (from standard input, or a random one that is printed); their
    /// sessions end.
    Password {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users with their role, groups, grants and state.
    List,
    /// Change a user's role on every collection (none, reader, editor, admin).
    Role {
        name: String,
        #[arg(value_parser = global_role)]
        role: GlobalRole,
    },
    /// Disable a user: no sign-in; their sessions end and keys acting for them stop working.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Delete a user with their sessions, memberships and grants (their keys are revoked).
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(subcommand)]
    command: GroupsCommand,
}

/// A user or an API key, named on the command line.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Member {
    /// A user, by name.
    #[arg(long)]
    user: Option<String>,
    /// An API key, by name, id or prefix.
    #[arg(long)]
    key: Option<String>,
}

impl Member {
    fn subject(&self) -> (SubjectKind, &str) {
        match (&self.user, &self.key) {
            (Some(u), _) => (SubjectKind::User, u),
            (_, Some(k)) => (SubjectKind::Key, k),
            _ => unreachable!("clap requires one"),
        }
    }
}

#[derive(Debug, Subcommand)]
enum GroupsCommand {
    /// Create a group.
    Create { name: String },
    /// Delete a group with its memberships and grants.
    Delete { name: String },
    /// List groups with their members.
    List,
    /// Put a user or key in a group.
    Add {
        group: String,
        #[command(flatten)]
        member: Member,
    },
    /// Take a user or key out of a group.
    Remove {
        group: String,
        #[command(flatten)]
        member: Member,
    },
}

#[derive(Debug, Args)]
pub struct GrantsArgs {
    #[command(subcommand)]
    command: GrantsCommand,
}

/// Who a grant is for.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Subject {
    /// A user, by name.
    #[arg(long)]
    user: Option<String>,
    /// A group, by name.
    #[arg(long)]
    group: Option<String>,
    /// An API key, by name, id or prefix.
    #[arg(long)]
    key: Option<String>,
}

impl Subject {
    fn subject(&self) -> (SubjectKind, &str) {
        match (&self.user, &self.group, &self.key) {
            (Some(u), _, _) => (SubjectKind::User, u),
            (_, Some(g), _) => (SubjectKind::Group, g),
            (_, _, Some(k)) => (SubjectKind::Key, k),
            _ => unreachable!("clap requires one"),
        }
    }
}

#[derive(Debug, Subcommand)]
enum GrantsCommand {
    /// Give a user, group or key a role on one collection (or on all without --collection).
    Add {
        #[command(flatten)]
        subject: Subject,
        /// The collection (default: every collection).
        #[arg(long)]
        collection: Option<String>,
        /// reader, editor or admin.
        #[arg(long)]
        role: Role,
    },
    /// Withdraw a grant.
    Remove {
        #[command(flatten)]
        subject: Subject,
        #[arg(long)]
        collection: Option<String>,
    },
    /// List every grant.
    List,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create an API key for /api/v1 and /v1. The key is printed once; only its hash is kept.
    Create {
        name: String,
        /// Role on every collection: none, reader (search, ask), editor (also change
        /// documents) or admin. A key acting for a user never has more than this.
        #[arg(long, default_value = "reader", value_parser = global_role)]
        role: GlobalRole,
        /// The user the key acts for: it reads what that user reads.
        #[arg(long)]
        user: Option<String>,
    },
    /// List keys (prefix, name, role, user, revoked).
    List,
    /// Revoke a key by id or prefix.
    Revoke { key: String },
}

fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok((line.trim_end_matches(['\r', '\n']).to_string(), false))
    } else {
        Ok((enclave_corpus::credentials::new_password(), true))
    }
}

async fn corpus(settings: &Settings) -> anyhow::Result<Corpus> {
    // People management never touches vectors, so these commands work beside a running server
    // that holds the embedded vector store.
    Ok(Corpus::metadata_only(app::meta_store(settings).await?))
}

pub async fn users(settings: &Settings, args: UsersArgs) -> anyhow::Result<ExitCode> {
    let corpus = corpus(settings).await?;
    let me = Actor::command_line();
    match args.command {
        UsersCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            let (pw, generated) = password(password_stdin)?;
            let role = role.0;
            corpus.create_user(&me, &name, &pw, role).await?;
            let role = Role::global_str(role);
            if generated {
                println!("added {name} ({role}) with password {pw}");
            } else {
                println!("added {name} ({role})");
            }
        }
        UsersCommand::Password {
            name,
            password_stdin,
        } => {
            let (pw, generated) = password(password_stdin)?;
            corpus.set_password(&me, &name, &pw).await?;
            if generated {
                println!("new password for {name}: {pw}");
            } else {
                println!("password of {name} changed");
            }
        }
        UsersCommand::List => {
            let collections = corpus.meta.collections().await?;
            for u in corpus.meta.users().await? {
                let member_of: Vec<String> = corpus
                    .meta
                    .groups_of(SubjectKind::User, &u.id)
                    .await?
                    .into_iter()
                    .map(|g| g.name)
                    .collect();
                let grants = grant_list(
                    &corpus.meta.grants_of(SubjectKind::User, &u.id).await?,
                    &collections,
                );
                println!(
                    "{:<20} {:<7} {:<9} groups: {}  grants: {}",
                    u.username,
                    u.role,
                    if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    },
                    if member_of.is_empty() {
                        "-".to_string()
                    } else {
                        member_of.join(", ")
                    },
                    if grants.is_empty() {
                        "-".to_string()
                    } else {
                        grants
                    }
                );
            }
        }
        UsersCommand::Role { name, role } => {
            let role = role.0;
            corpus.set_user_role(&me, &name, role).await?;
            println!(
                "{name} is now {} on every collection",
                Role::global_str(role)
            );
        }
        UsersCommand::Disable { name } => {
            corpus.set_user_disabled(&me, &name, true).await?;
            println!("disabled {name}; their sessions ended");
        }
        UsersCommand::Enable { name } => {
            corpus.set_user_disabled(&me, &name, false).await?;
            println!("enabled {name}");
        }
        UsersCommand::Delete { name } => {
            corpus.delete_user(&me, &name).await?;
            println!("deleted {name}");
        }
    }
    corpus.meta.close().await;
    Ok(ExitCode::SUCCESS)
}

fn grant_list(
    grants: &[enclave_storage::GrantRecord],
    collections: &[enclave_storage::Collection],
) -> String {
    grants
        .iter()
        .map(|g| {
            let on = match &g.collection_id {
                None => "*".to_string(),
                Some(id) => collections
                    .iter()
                    .find(|c| &c.id == id)
                    .map_or_else(|| id.clone(), |c| c.name.clone()),
            };
            format!("{}={}", on, g.role)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn groups(settings: &Settings, args: GroupsArgs) -> anyhow::Result<ExitCode> {
    let corpus = corpus(settings).await?;
    let me = Actor::command_line();
    match args.command {
        GroupsCommand::Create { name } => {
            corpus.create_group(&me, &name).await?;
            println!("created group {name}");
        }
        GroupsCommand::Delete { name } => {
            corpus.delete_group(&me, &name).await?;
            println!("deleted group {name}");
        }
        GroupsCommand::List => {
            for g in corpus.group_views().await? {
                println!("{:<20} {}", g.name, g.members.join(", "));
            }
        }
        GroupsCommand::Add { group, member } => {
            let (kind, name) = member.subject();
            corpus.set_membership(&me, &group, kind, name, true).await?;
            println!("{} '{name}' is in group {group}", kind.as_str());
        }
        GroupsCommand::Remove { group, member } => {
            let (kind, name) = member.subject();
            corpus
                .set_membership(&me, &group, kind, name, false)
                .await?;
            println!("{} '{name}' left group {group}", kind.as_str());
        }
    }
    corpus.meta.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn grants(settings: &Settings, args: GrantsArgs) -> anyhow::Result<ExitCode> {
    let corpus = corpus(settings).await?;
    let me = Actor::command_line();
    match args.command {
        GrantsCommand::Add {
            subject,
            collection,
            role,
        } => {
            let (kind, name) = subject.subject();
            corpus
                .grant(&me, kind, name, collection.as_deref(), Some(role))
                .await?;
            println!(
                "{} '{name}' is {} on {}",
                kind.as_str(),
                role.as_str(),
                collection.map_or("every collection".to_string(), |c| format!(
                    "collection {c}"
                ))
            );
        }
        GrantsCommand::Remove {
            subject,
            collection,
        } => {
            let (kind, name) = subject.subject();
            corpus
                .grant(&me, kind, name, collection.as_deref(), None)
                .await?;
            println!("withdrew the grant of {} '{name}'", kind.as_str());
        }
        GrantsCommand::List => {
            for g in corpus.grant_views().await? {
                println!(
                    "{:<5} {:<20} {:<7} {}",
                    g.kind.as_str(),
                    g.name,
                    g.role,
                    g.collection.as_deref().unwrap_or("*")
                );
            }
        }
    }
    corpus.meta.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn keys(settings: &Settings, args: KeysArgs) -> anyhow::Result<ExitCode> {
    let corpus = corpus(settings).await?;
    let me = Actor::command_line();
    let code = match args.command {
        KeysCommand::Create { name, role, user } => {
            let role = role.0;
            let created = corpus.create_key(&me, &name, role, user.as_deref()).await?;
            eprintln!(
                "created the {} key '{name}' ({}…){}; it is shown only now:",
                Role::global_str(role),
                created.record.prefix,
                user.map_or_else(String::new, |u| format!(" acting for {u}"))
            );
            println!("{}", created.key);
            ExitCode::SUCCESS
        }
        KeysCommand::List => {
            let users = corpus.meta.users().await?;
            for k in corpus.meta.api_keys().await? {
                let state = k
                    .revoked_at
                    .as_deref()
                    .map_or_else(|| "active".to_string(), |t| format!("revoked {t}"));
                let user = k
                    .user_id
                    .as_ref()
                    .map(|id| {
                        users
                            .iter()
                            .find(|u| &u.id == id)
                            .map_or_else(|| id.clone(), |u| u.username.clone())
                    })
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{}…  {:<20} {:<7} {:<12} {}  {}",
                    k.prefix, k.name, k.role, user, k.created_at, state
                );
            }
            ExitCode::SUCCESS
        }
        KeysCommand::Revoke { key } => {
            let n = corpus.revoke_key(&me, &key).await?;
            if n == 0 {
                eprintln!("no active key with id or prefix '{key}'");
                ExitCode::FAILURE
            } else {
                println!("revoked {n} key(s)");
                ExitCode::SUCCESS
            }
        }
    };
    corpus.meta.close().await;
    Ok(code)
}
