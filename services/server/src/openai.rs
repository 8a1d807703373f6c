//! `/v1`: the OpenAI chat API, so that tools which speak it get grounded answers.
//!
//! The model name picks the corpus: `enclave` searches every collection, `enclave/NAME` one
//! collection. The last user message is the question; the user and assistant messages before it
//! are the conversation, so a follow-up that does not stand alone is rewritten with them before
//! retrieval. The answer's citations travel in the extension field `enclave` of the response,
//! and of the final chunk of a stream: `{"refused": bool, "refusal": "retrieval"|"model"|null,
//! "standalone_question": string|null,
//! "citations": [{number, document_id, title, page_start, page_end, char_start, char_end,
//! quote, url}]}`.

use actix_web::{HttpResponse, web};
use enclave_answer::{Answer, AskEvent};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{InFlight, check_collection_name, collection, sse_response, start_answer};
use crate::auth::{Action, OpenAiCaller};
use crate::dto::CitationOut;
use crate::error::{ApiError, OpenAiError};
use crate::state::AppState;

type Result<T> = std::result::Result<T, OpenAiError>;

/// The model name that searches every collection.
pub const ALL_COLLECTIONS: &str = "enclave";

/// A model as listed by `/v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelOut {
    /// `enclave` (all collections) or `enclave/COLLECTION`.
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub owned_by: &'static str,
}

/// The models.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelOut>,
}

/// One message of a chat. `content` is a string or a list of `{"type": "text", "text"}` parts.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessageIn {
    pub role: String,
    #[schema(value_type = Object)]
    pub content: Option<serde_json::Value>,
}

/// A chat completion request (fields not listed are accepted and ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessageIn>,
    #[serde(default)]
    pub stream: bool,
}

/// The extension field with the answer's grounding.
#[derive(Debug, Serialize, ToSchema)]
pub struct Grounding {
    /// True when the answer is a refusal: the documents do not contain the answer.
    pub refused: bool,
    /// Who refused: `retrieval` (the model was not asked) or `model`; `null` when answered.
    #[schema(value_type = Option<String>, example = "retrieval")]
    pub refusal: Option<enclave_answer::Refusal>,
    /// What was searched and answered when the last message was a follow-up.
    pub standalone_question: Option<String>,
    pub citations: Vec<CitationOut>,
    /// Words of the question that no passage the caller may read holds (stop words aside).
    pub unmatched_terms: Vec<String>,
    /// The question's names when no one document found mentions them all.
    pub names_apart: Vec<String>,
}

impl Grounding {
    fn of(a: &Answer) -> Self {
        Self {
            refused: a.refused,
            refusal: a.refusal,
            standalone_question: a.rewrite.as_ref().map(|r| r.question.clone()),
            citations: a
                .citations
                .iter()
                .map(|c| CitationOut::new(c, &a.passages))
                .collect(),
            unmatched_terms: a.unmatched_terms.clone(),
            names_apart: a.names_apart.clone(),
        }
    }
}

fn text_of(content: &Option<serde_json::Value>) -> String {
    match content {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

async fn collections_of(
    state: &AppState,
    caller: &crate::auth::Principal,
    model: &str,
) -> std::result::Result<Vec<String>, ApiError> {
    if model == ALL_COLLECTIONS {
        return Ok(Vec::new());
    }
    let not_found = || {
        ApiError::NotFound(format!(
            "the model '{model}' does not exist: use 'enclave' or 'enclave/COLLECTION' \
             (GET /v1/models lists them)"
        ))
    };
    let name = model
        .strip_prefix("enclave/")
        .filter(|n| check_collection_name(n).is_ok())
        .ok_or_else(not_found)?;
    // A collection the caller may not read is a model that does not exist.
    collection(state, caller, name, Action::Read)
        .await
        .map_err(|_| not_found())?;
    Ok(vec![name.to_string()])
}

/// Cuts `text` to `max` characters.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// The last user message, and the turns before it (each user message with the assistant's
/// reply after it), the most recent [`enclave_answer::REWRITE_TURNS`] of them, cut to the
/// lengths a history may have.
fn question_and_history(messages: &[ChatMessageIn]) -> Option<(String, Vec<enclave_answer::Turn>)> {
    let last = messages.iter().rposition(|m| m.role == "user")?;
    let mut turns: Vec<enclave_answer::Turn> = Vec::new();
    let mut pending: Option<String> = None;
    for m in &messages[..last] {
        match m.role.as_str() {
            "user" => {
                if let Some(q) = pending.take() {
                    turns.push(enclave_answer::Turn {
                        question: q,
                        answer: String::new(),
                        searched: None,
                    });
                }
                pending = Some(text_of(&m.content));
            }
            "assistant" => {
                if let Some(q) = pending.take() {
                    turns.push(enclave_answer::Turn {
                        question: q,
                        answer: text_of(&m.content),
                        searched: None,
                    });
                }
            }
            _ => {}
        }
    }
    if let Some(q) = pending {
        turns.push(enclave_answer::Turn {
            question: q,
            answer: String::new(),
            searched: None,
        });
    }
    let keep = turns.len().saturating_sub(enclave_answer::REWRITE_TURNS);
    let history = turns
        .into_iter()
        .skip(keep)
        .filter(|t| !t.question.trim().is_empty())
        .map(|t| enclave_answer::Turn {
            question: cut(&t.question, enclave_corpus::MAX_QUESTION_CHARS),
            answer: cut(&t.answer, enclave_corpus::MAX_HISTORY_ANSWER_CHARS),
            searched: None,
        })
        .collect();
    Some((text_of(&messages[last].content), history))
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// List the models: one per collection, and `enclave` for all of them.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, body = ModelList)), security(("api_key" = [])))]
pub async fn models(
    state: web::Data<AppState>,
    OpenAiCaller(caller): OpenAiCaller,
) -> Result<HttpResponse> {
    let mut data = vec![ModelOut {
        id: ALL_COLLECTIONS.into(),
        object: "model",
        created: 0,
        owned_by: "enclave",
    }];
    for c in state
        .corpus
        .collections(&caller, Action::Read)
        .await
        .map_err(ApiError::from)?
    {
        let created =
            chrono::DateTime::parse_from_rfc3339(&c.created_at).map_or(0, |t| t.timestamp());
        data.push(ModelOut {
            id: format!("enclave/{}", c.name),
            object: "model",
            created,
            owned_by: "enclave",
        });
    }
    Ok(HttpResponse::Ok().json(ModelList {
        object: "list",
        data,
    }))
}

/// A grounded chat completion (streaming or not), citations in the `enclave` field.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatRequest,
    responses((status = 200, description = "An OpenAI chat.completion (or a stream of \
        chat.completion.chunk) with the extension field `enclave`", body = Grounding),
        (status = 400), (status = 401), (status = 404), (status = 429), (status = 503)),
    security(("api_key" = [])))]
pub async fn chat_completions(
    state: web::Data<AppState>,
    OpenAiCaller(caller): OpenAiCaller,
    body: web::Json<ChatRequest>,
) -> Result<HttpResponse> {
    let (question, history) = question_and_history(&body.messages)
        .ok_or_else(|| ApiError::BadRequest("the messages hold no user message".into()))?;
    let collections = collections_of(&state, &caller, &body.model).await?;
    let question = enclave_corpus::Question {
        text: question,
        collections,
        history,
        ..Default::default()
    };
    let guard = InFlight::start(&state.metrics);
    let mut rx = start_answer(&state, &caller, &question, "openai.chat").await?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_secs();
    let model = body.model.clone();
    if !body.stream {
        while let Some(event) = rx.next().await {
            match event {
                AskEvent::Done(answer) => {
                    state.metrics.answer_done(&answer);
                    drop(guard);
                    let prompt = answer.timings.prompt_tokens;
                    let completion = answer.timings.generated_tokens;
                    return Ok(HttpResponse::Ok().json(serde_json::json!({
                        "id": id,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [{
                            "index": 0,
                            "message": {"role": "assistant", "content": answer.text},
                            "finish_reason": "stop",
                        }],
                        "usage": {
                            "prompt_tokens": prompt,
                            "completion_tokens": completion.max(usize::from(answer.refused)),
                            "total_tokens": prompt + completion,
                        },
                        "enclave": Grounding::of(&answer),
                    })));
                }
                AskEvent::Failed(e) => {
                    state.metrics.answers.with_label_values(&["failed"]).inc();
                    return Err(ApiError::Internal(format!("generation failed: {e}")).into());
                }
                AskEvent::Sources(_) | AskEvent::Token(_) => {}
            }
        }
        return Err(ApiError::Internal("the answer stream ended early".into()).into());
    }
    let metrics = state.metrics.clone();
    let chunk = move |delta: serde_json::Value, finish: Option<&str>, extra: Option<Grounding>| {
        let mut c = serde_json::json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if let Some(g) = extra {
            c["enclave"] = serde_json::to_value(g).unwrap_or_default();
        }
        bytes::Bytes::from(format!("data: {c}\n\n"))
    };
    let first = chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        None,
        None,
    );
    let stream = futures::stream::unfold(
        (rx, guard, metrics, chunk, Some(first), false, false),
        |(mut rx, guard, metrics, chunk, pending, streamed, finished)| async move {
            if let Some(first) = pending {
                return Some((
                    Ok::<_, actix_web::Error>(first),
                    (rx, guard, metrics, chunk, None, streamed, finished),
                ));
            }
            if finished {
                return None;
            }
            loop {
                match rx.next().await {
                    Some(AskEvent::Sources(_)) => continue,
                    Some(AskEvent::Token(t)) => {
                        let b = chunk(serde_json::json!({"content": t}), None, None);
                        return Some((Ok(b), (rx, guard, metrics, chunk, None, true, false)));
                    }
                    Some(AskEvent::Done(answer)) => {
                        metrics.answer_done(&answer);
                        let mut out = Vec::new();
                        if !streamed {
                            // A refusal has no tokens: its text comes in one piece.
                            out.extend_from_slice(&chunk(
                                serde_json::json!({"content": answer.text}),
                                None,
                                None,
                            ));
                        }
                        out.extend_from_slice(&chunk(
                            serde_json::json!({}),
                            Some("stop"),
                            Some(Grounding::of(&answer)),
                        ));
                        out.extend_from_slice(b"data: [DONE]\n\n");
                        return Some((
                            Ok(bytes::Bytes::from(out)),
                            (rx, guard, metrics, chunk, None, streamed, true),
                        ));
                    }
                    Some(AskEvent::Failed(e)) => {
                        metrics.answers.with_label_values(&["failed"]).inc();
                        let b = bytes::Bytes::from(format!(
                            "data: {}\n\n",
                            serde_json::json!({"error": {"message": format!("generation failed: {e}"),
                                "type": "server_error", "code": "internal"}})
                        ));
                        return Some((Ok(b), (rx, guard, metrics, chunk, None, streamed, true)));
                    }
                    None => return None,
                }
            }
        },
    );
    Ok(sse_response(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str, text: &str) -> ChatMessageIn {
        ChatMessageIn {
            role: role.into(),
            content: Some(serde_json::Value::String(text.into())),
        }
    }

    #[test]
    fn earlier_messages_become_the_history() {
        let messages = vec![
            m("system", "be brief"),
            m("user", "q1"),
            m("assistant", "a1"),
            m("user", "q2 unanswered"),
            m("user", "q3"),
            m("assistant", "a3"),
            m("user", "q4"),
            m("assistant", "a4"),
            m("user", "and then?"),
        ];
        let (q, h) = question_and_history(&messages).unwrap();
        assert_eq!(q, "and then?");
        // The most recent three turns; a question without a reply keeps an empty answer.
        let pairs: Vec<(&str, &str)> = h
            .iter()
            .map(|t| (t.question.as_str(), t.answer.as_str()))
            .collect();
        assert_eq!(pairs, [("q2 unanswered", ""), ("q3", "a3"), ("q4", "a4")]);
        let (q, h) = question_and_history(&[m("user", "alone")]).unwrap();
        assert_eq!((q.as_str(), h.len()), ("alone", 0));
        assert!(question_and_history(&[m("assistant", "x")]).is_none());
    }
}
