//! The administrators' pages: people (users, groups, grants, API keys) and the question audit.
//! Every change is one use case of `enclave-corpus`, the same the command line calls.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use enclave_corpus::{Action, Actor, Role};
use enclave_storage::{QuestionFilter, SubjectKind};
use serde::Deserialize;

use crate::admin::{Fields, same_origin, see_other, with_notice};
use crate::error::ApiError;
use crate::state::AppState;
use crate::ui::{Result, base_context, caller, page, short_time};

async fn administrator(req: &HttpRequest) -> Result<Actor> {
    let p = caller(req).await?;
    p.require_everywhere(Action::Administer)
        .map_err(ApiError::from)?;
    Ok(p)
}

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

fn role_of(text: &str) -> std::result::Result<Option<Role>, ApiError> {
    Role::parse_global(text).map_err(ApiError::Invalid)
}

fn subject(fields: &Fields) -> std::result::Result<(SubjectKind, String), ApiError> {
    let kind = match fields.get("kind").unwrap_or_default() {
        "user" => SubjectKind::User,
        "group" => SubjectKind::Group,
        "key" => SubjectKind::Key,
        other => {
            return Err(ApiError::Invalid(format!(
                "unknown kind '{other}': user, group or key"
            )));
        }
    };
    let name = fields.get("name").unwrap_or_default().trim().to_string();
    if name.is_empty() {
        return Err(ApiError::Invalid("name the user, group or key".into()));
    }
    Ok((kind, name))
}

/// Users, groups, grants and keys, with the forms that change them.
pub async fn people_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse> {
    let principal = administrator(&req).await?;
    render(&state, &principal, &query.notice, None).await
}

async fn render(
    state: &AppState,
    principal: &Actor,
    notice: &str,
    secret: Option<String>,
) -> Result<HttpResponse> {
    let meta = &state.meta;
    let collections = meta.collections().await.map_err(ApiError::from)?;
    let users = meta.users().await.map_err(ApiError::from)?;
    let keys = meta.api_keys().await.map_err(ApiError::from)?;
    let mut user_rows = Vec::new();
    for u in &users {
        let member_of: Vec<String> = meta
            .groups_of(SubjectKind::User, &u.id)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|g| g.name)
            .collect();
        user_rows.push(serde_json::json!({
            "name": u.username, "role": u.role, "disabled": u.disabled_at.is_some(),
            "groups": member_of.join(", "), "created": short_time(&u.created_at),
        }));
    }
    let group_rows: Vec<_> = state
        .corpus
        .group_views()
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|g| serde_json::json!({"name": g.name, "members": g.members.join(", ")}))
        .collect();
    let grant_rows: Vec<_> = state
        .corpus
        .grant_views()
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|g| {
            serde_json::json!({
                "kind": g.kind.as_str(), "name": g.name, "role": g.role,
                "collection": g.collection,
                "on": g.collection.clone().unwrap_or_else(|| "every collection".into()),
            })
        })
        .collect();
    let key_rows: Vec<_> = keys
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| {
            let user = k.user_id.as_ref().map(|id| {
                users
                    .iter()
                    .find(|u| &u.id == id)
                    .map_or_else(|| id.clone(), |u| u.username.clone())
            });
            serde_json::json!({"name": k.name, "prefix": k.prefix, "role": k.role, "user": user,
                "created": short_time(&k.created_at)})
        })
        .collect();
    let mut ctx = base_context(principal);
    ctx.insert("users", &user_rows);
    ctx.insert("groups", &group_rows);
    ctx.insert("grants", &grant_rows);
    ctx.insert("keys", &key_rows);
    ctx.insert(
        "collections",
        &collections
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>(),
    );
    ctx.insert("notice", notice);
    ctx.insert("secret", &secret);
    Ok(page(StatusCode::OK, "admin_people.html", &ctx))
}

/// One change from the people page (`action`), then the page again.
pub async fn people_change(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    same_origin(&req)?;
    let principal = administrator(&req).await?;
    let fields = Fields::parse(&body);
    let corpus = &state.corpus;
    let name = fields.get("name").unwrap_or_default().trim().to_string();
    let action = fields.get("action").unwrap_or_default().to_string();
    let done: std::result::Result<(String, Option<String>), ApiError> = async {
        Ok(match action.as_str() {
            "create_user" => {
                let password = enclave_corpus::credentials::new_password();
                let role = role_of(fields.get("role").unwrap_or("reader"))?;
                corpus
                    .create_user(&principal, &name, &password, role)
                    .await?;
                (
                    format!("Added {name}. Their password is shown once below."),
                    Some(password),
                )
            }
            "reset_password" => {
                let password = enclave_corpus::credentials::new_password();
                corpus.set_password(&principal, &name, &password).await?;
                (
                    format!("New password for {name}, shown once below; their sessions ended."),
                    Some(password),
                )
            }
            "set_role" => {
                let role = role_of(fields.get("role").unwrap_or_default())?;
                corpus.set_user_role(&principal, &name, role).await?;
                (format!("{name} is now {}.", Role::global_str(role)), None)
            }
            "disable_user" => {
                corpus.set_user_disabled(&principal, &name, true).await?;
                (format!("Disabled {name}; their sessions ended."), None)
            }
            "enable_user" => {
                corpus.set_user_disabled(&principal, &name, false).await?;
                (format!("Enabled {name}."), None)
            }
            "delete_user" => {
                if fields.get("confirm") != Some(name.as_str()) {
                    return Err(ApiError::Invalid(format!(
                        "type the name '{name}' again to delete the user"
                    )));
                }
                corpus.delete_user(&principal, &name).await?;
                (format!("Deleted {name}."), None)
            }
            "create_group" => {
                corpus.create_group(&principal, &name).await?;
                (format!("Created group {name}."), None)
            }
            "delete_group" => {
                corpus.delete_group(&principal, &name).await?;
                (format!("Deleted group {name}."), None)
            }
            "add_member" | "remove_member" => {
                let group = fields.get("group").unwrap_or_default().to_string();
                let (kind, member) = subject(&fields)?;
                corpus
                    .set_membership(&principal, &group, kind, &member, action == "add_member")
                    .await?;
                (format!("Group {group} changed."), None)
            }
            "grant" | "revoke_grant" => {
                let (kind, who) = subject(&fields)?;
                let collection = fields.get("collection").filter(|c| !c.is_empty());
                let role = if action == "grant" {
                    Some(
                        fields
                            .get("role")
                            .unwrap_or_default()
                            .parse::<Role>()
                            .map_err(ApiError::Invalid)?,
                    )
                } else {
                    None
                };
                corpus
                    .grant(&principal, kind, &who, collection, role)
                    .await?;
                (
                    format!("Grants of {} '{who}' changed.", kind.as_str()),
                    None,
                )
            }
            "create_key" => {
                let role = role_of(fields.get("role").unwrap_or("reader"))?;
                let user = fields.get("user").filter(|u| !u.is_empty());
                let created = corpus.create_key(&principal, &name, role, user).await?;
                (
                    format!("Created the key {name}. It is shown once below."),
                    Some(created.key),
                )
            }
            "revoke_key" => {
                let n = corpus.revoke_key(&principal, &name).await?;
                (format!("Revoked {n} key(s)."), None)
            }
            other => {
                return Err(ApiError::Invalid(format!("unknown action '{other}'")));
            }
        })
    }
    .await;
    match done {
        // A secret is shown on the page itself, never in a URL.
        Ok((notice, Some(secret))) => render(&state, &principal, &notice, Some(secret)).await,
        Ok((notice, None)) => Ok(see_other(&with_notice("/admin/people", &notice))),
        Err(e) => Ok(see_other(&with_notice("/admin/people", &e.to_string()))),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct QuestionsQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    since: String,
}

async fn question_filter(
    state: &AppState,
    query: &QuestionsQuery,
) -> std::result::Result<QuestionFilter, ApiError> {
    let actor_id = match query.user.trim() {
        "" => None,
        name => Some(state.corpus.subject_id(SubjectKind::User, name).await?),
    };
    let since = match query.since.trim() {
        "" => None,
        day if day.len() == 10 => Some(format!("{day}T00:00:00.000Z")),
        t => Some(t.to_string()),
    };
    Ok(QuestionFilter {
        actor_id,
        endpoint: Some(query.endpoint.trim().to_string()).filter(|e| !e.is_empty()),
        since,
        ..Default::default()
    })
}

/// The question audit: who asked what, where, what was cited; filters and an export.
pub async fn questions_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<QuestionsQuery>,
) -> Result<HttpResponse> {
    let principal = administrator(&req).await?;
    let mut ctx = base_context(&principal);
    let rows = match question_filter(&state, &query).await {
        Ok(filter) => state
            .questions
            .list(&principal, &filter, 200, 0)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|e| {
                serde_json::json!({
                    "at": short_time(&e.at), "actor": e.actor, "endpoint": e.endpoint,
                    "question": e.question.clone().or(e.question_sha256.clone().map(|h| format!("sha256 {}", &h[..12]))).unwrap_or_default(),
                    "collections": e.collections.join(", "), "retrieved": e.retrieved.len(),
                    "cited": e.cited.len(),
                    "refused": e.refused.map(|r| if r { "refused" } else { "answered" }).unwrap_or("search"),
                    "took": e.took_ms,
                })
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            ctx.insert("error", &e.to_string());
            Vec::new()
        }
    };
    ctx.insert("questions", &rows);
    ctx.insert("user_filter", &query.user);
    ctx.insert("endpoint", &query.endpoint);
    ctx.insert("since", &query.since);
    ctx.insert(
        "export",
        &format!(
            "/admin/questions/export?user={}&endpoint={}&since={}",
            crate::ui::encode(&query.user),
            crate::ui::encode(&query.endpoint),
            crate::ui::encode(&query.since)
        ),
    );
    Ok(page(StatusCode::OK, "admin_questions.html", &ctx))
}

/// The question audit as JSON Lines (the page's filters), for download.
pub async fn questions_export(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<QuestionsQuery>,
) -> Result<HttpResponse> {
    let principal = administrator(&req).await?;
    let filter = question_filter(&state, &query).await?;
    let entries = state
        .questions
        .list(&principal, &filter, 100_000, 0)
        .await
        .map_err(ApiError::from)?;
    Ok(crate::api::questions_jsonl(entries)?)
}
